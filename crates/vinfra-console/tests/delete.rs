//! Deleting a VM: a running one only with `force` (stopped at once, then deleted); a refusal
//! changes nothing.

mod common;

use common::*;
use vinfra_types::{HostCapacity, PowerState};

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

async fn create(c: &TestConsole, name: &str, start: bool) {
    let body = vm_json(name, 1, GIB).replace(
        &format!("\"name\":\"{name}\""),
        &format!("\"name\":\"{name}\",\"start\":{start}"),
    );
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn a_running_vm_is_deleted_only_with_force_and_a_refusal_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    create(&c, "x", true).await;
    let id = a.state.lock().unwrap().vms.keys().next().copied().unwrap();

    let r = c.call("DELETE", "/api/v1/vms/x", None).await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("VM 'x' is set to run (on 'a')") && detail.contains("force=true"),
        "{detail}"
    );
    let r = c.call("GET", "/api/v1/vms/x", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["desired"], "running", "{:?}", r.body);
    assert_eq!(a.vm_state(id), Some(PowerState::Running));
    assert!(!a
        .state
        .lock()
        .unwrap()
        .commands
        .iter()
        .any(|c| c == "DeleteVm" || c == "StopVm"));

    let r = c.call("DELETE", "/api/v1/vms/x?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(a.vm_state(id), None, "deleted on its host");
    assert_eq!(c.call("GET", "/api/v1/vms/x", None).await.status, 404);

    // A stopped VM, or one never started, needs no force.
    create(&c, "y", false).await;
    assert_eq!(c.call("DELETE", "/api/v1/vms/y", None).await.status, 204);
    create(&c, "z", true).await;
    let r = c
        .call("POST", "/api/v1/vms/z/stop", Some(r#"{"force":true}"#))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(c.call("DELETE", "/api/v1/vms/z", None).await.status, 204);
    assert_eq!(a.vm_count(), 0);
    c.shutdown().await;
}
