//! The end of a completed migration through the console: the destination is asked whether
//! the VM runs there with a wait (`ObserveVm` `wait_ms`) and answers once the guest has
//! arrived, so it is asked once; the migration's event says where the time went.

mod common;

use std::time::Duration;

use common::*;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

#[tokio::test]
async fn the_destination_is_asked_once_and_answers_when_the_guest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    create_vm_on(&c, "w", "src", GIB).await;
    // Only the answers bring the destination's state (no reports), the guest resumes there
    // 30 ms after it is asked, and an answer at once would show it waiting three more times.
    src.state.lock().unwrap().reports_stalled = true;
    {
        let mut st = dst.state.lock().unwrap();
        st.reports_stalled = true;
        st.behaviour.resume_after_observes = 3;
        st.behaviour.observe_waits = true;
        st.behaviour
            .slow
            .insert("ObserveVm", Duration::from_millis(30));
    }
    // Let a report that was already on its way arrive first.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let observed = || {
        dst.state
            .lock()
            .unwrap()
            .commands
            .iter()
            .filter(|c| *c == "ObserveVm")
            .count()
    };
    let before = observed();

    let r = c
        .call("POST", "/api/v1/vms/w/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_migration(&c, "w").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    assert_eq!(observed() - before, 1, "the destination is asked once");
    let vm = c.call("GET", "/api/v1/vms/w", None).await.body;
    assert_eq!(vm["host"], "dst", "{vm:?}");
    assert_eq!(vm["state"], "running", "{vm:?}");

    let events = c.call("GET", "/api/v1/events", None).await.body;
    let moved = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .find(|m| m.starts_with("migrated from src to dst"))
        .unwrap_or_else(|| panic!("no migration event: {events:?}"))
        .to_string();
    for step in [
        "destination running",
        "connections carried",
        "record",
        "switches",
        "source released",
    ] {
        assert!(moved.contains(step), "{step} missing: {moved}");
    }
    c.shutdown().await;
}
