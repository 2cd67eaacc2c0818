//! VMs a host may still run unknown to the console: an unanswered create keeps its NICs'
//! addresses until the VM is removed from its host; VMs the console let go of (and strays) are
//! removed when their host comes back.

mod common;

use common::network::{create_net, create_vm};
use common::*;
use serde_json::json;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// Polls `f` every 100 ms for up to 20 s.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// The cleanup markers: (VM, host).
fn markers(c: &TestConsole) -> Vec<(String, String)> {
    c.running
        .console
        .cleanups(None)
        .unwrap()
        .into_iter()
        .map(|(_, m)| (m.value.vm, m.value.host))
        .collect()
}

fn agent_vm(agent: &FakeAgent, name: &str) -> Option<uuid::Uuid> {
    let st = agent.state.lock().unwrap();
    st.vms
        .values()
        .find(|(v, _)| v.spec.name == name)
        .map(|(v, _)| v.id)
}

async fn events_text(c: &TestConsole) -> String {
    c.call("GET", "/api/v1/events", None).await.body.to_string()
}

#[tokio::test]
async fn an_unanswered_create_keeps_the_addresses_until_the_vm_is_removed_from_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, false, |cfg| {
        cfg.create_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = create_net(
        &c,
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201);

    // The host creates `orphan` but its answer never comes; it never even starts on `ghost`.
    // Its deletions fail for now.
    {
        let mut st = agent.state.lock().unwrap();
        st.behaviour.lose_create_reply = true;
        st.behaviour.fail_delete = true;
    }
    let r = create_vm(
        &c,
        "orphan",
        json!([{"network": "blue", "ip": "10.80.1.5"}]),
    )
    .await;
    assert_problem(&r, 504);
    {
        let mut st = agent.state.lock().unwrap();
        st.behaviour.lose_create_reply = false;
        st.behaviour.ignore_create = true;
    }
    let r = create_vm(&c, "ghost", json!([{"network": "blue", "ip": "10.80.1.6"}])).await;
    assert_problem(&r, 504);
    agent.state.lock().unwrap().behaviour.ignore_create = false;
    let orphan = agent_vm(&agent, "orphan").expect("the host created orphan");
    assert!(agent_vm(&agent, "ghost").is_none());

    // The records are gone, the markers are there, and addresses and names stay taken.
    assert_problem(&c.call("GET", "/api/v1/vms/orphan", None).await, 404);
    assert_problem(&c.call("GET", "/api/v1/vms/ghost", None).await, 404);
    let mut m = markers(&c);
    m.sort();
    assert_eq!(
        m,
        [
            ("ghost".to_string(), "h1".to_string()),
            ("orphan".to_string(), "h1".to_string())
        ]
    );
    let r = create_vm(&c, "taker", json!([{"network": "blue", "ip": "10.80.1.5"}])).await;
    assert_problem(&r, 409);
    assert!(
        r.body["detail"].as_str().unwrap().contains("'orphan'"),
        "{:?}",
        r.body
    );
    let r = create_vm(&c, "taker", json!([{"network": "blue", "ip": "10.80.1.6"}])).await;
    assert_problem(&r, 409);
    let r = create_vm(&c, "orphan", json!([{"network": "blue"}])).await;
    assert_problem(&r, 409);
    assert!(
        r.body["detail"].as_str().unwrap().contains("'h1'"),
        "{:?}",
        r.body
    );
    let blue = c.call("GET", "/api/v1/networks/blue", None).await;
    let held = blue.body["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vm"] == "orphan")
        .cloned();
    assert_eq!(held.map(|p| p["host"].clone()), Some(json!("h1")));

    // The controller tries to remove the VM the host reports, and fails for now.
    until("a failed removal is recorded", || async {
        events_text(&c).await.contains("could not remove VM")
    })
    .await;
    assert_eq!(
        agent.vm_state(orphan),
        Some(vinfra_types::PowerState::Running)
    );
    assert_eq!(markers(&c).len(), 2);

    // Once the host lets it, both are settled: orphan removed, ghost confirmed absent.
    agent.state.lock().unwrap().behaviour.fail_delete = false;
    until("the markers are settled", || async {
        markers(&c).is_empty()
    })
    .await;
    assert!(agent.vm_state(orphan).is_none());
    let events = events_text(&c).await;
    assert!(events.contains("removed from h1"), "{events}");
    assert!(events.contains("confirmed absent on h1"), "{events}");
    let r = create_vm(&c, "taker", json!([{"network": "blue", "ip": "10.80.1.5"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = create_vm(&c, "ghost", json!([{"network": "blue", "ip": "10.80.1.6"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = create_vm(&c, "orphan", json!([{"network": "blue"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    c.shutdown().await;
}

#[tokio::test]
async fn vms_the_console_let_go_of_are_removed_when_their_host_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = create_net(
        &c,
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = create_vm(&c, "gone", json!([{"network": "blue", "ip": "10.80.1.5"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let gone: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();

    // Deleted with force while its host is away: it may still run there.
    agent.disconnect();
    c.wait_host_status("h1", "disconnected").await;
    // Meanwhile the host also runs a VM the console never knew.
    let stray = vinfra_proto::VmInstance {
        id: uuid::Uuid::new_v4(),
        spec: serde_json::from_str(&vm_json("stray", 1, 128)).unwrap(),
        started_at: None,
        slot: None,
        platform: None,
    };
    agent
        .state
        .lock()
        .unwrap()
        .vms
        .insert(stray.id, (stray.clone(), vinfra_types::PowerState::Running));
    let r = c.call("DELETE", "/api/v1/vms/gone?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(markers(&c), [("gone".to_string(), "h1".to_string())]);
    let r = create_vm(&c, "taker", json!([{"network": "blue", "ip": "10.80.1.5"}])).await;
    assert_problem(&r, 409);
    let r = c.call("DELETE", "/api/v1/networks/blue", None).await;
    assert_problem(&r, 409);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("gone (being removed from host h1)"),
        "{:?}",
        r.body
    );

    // The host comes back: the VM goes, its address is free; the unknown one is left alone.
    agent.connect(c.running.agent_addr).await;
    c.wait_host_status("h1", "connected").await;
    until("the forgotten VM is removed", || async {
        markers(&c).is_empty() && agent.vm_state(gone).is_none()
    })
    .await;
    let r = create_vm(&c, "taker", json!([{"network": "blue", "ip": "10.80.1.5"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        agent.vm_state(stray.id),
        Some(vinfra_types::PowerState::Running)
    );
    until("the unknown VM is reported", || async {
        events_text(&c).await.contains("does not know")
    })
    .await;

    // The connection breaks right after the host created a VM: the same.
    agent.state.lock().unwrap().behaviour.drop_after_create = true;
    let r = create_vm(&c, "cut", json!([{"network": "blue", "ip": "10.80.1.7"}])).await;
    assert_problem(&r, 502);
    agent.state.lock().unwrap().behaviour.drop_after_create = false;
    let cut = agent_vm(&agent, "cut").expect("the host created cut");
    assert_eq!(markers(&c), [("cut".to_string(), "h1".to_string())]);
    let r = create_vm(&c, "other", json!([{"network": "blue", "ip": "10.80.1.7"}])).await;
    assert_problem(&r, 409);
    agent.connect(c.running.agent_addr).await;
    c.wait_host_status("h1", "connected").await;
    until("the cut VM is removed", || async {
        markers(&c).is_empty() && agent.vm_state(cut).is_none()
    })
    .await;
    let r = create_vm(&c, "other", json!([{"network": "blue", "ip": "10.80.1.7"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(agent.vm_count(), 3, "taker, other and the stray VM");
    c.shutdown().await;
}
