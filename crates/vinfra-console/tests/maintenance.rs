//! Maintenance as a task (docs/design.md, "Tasks"), with fake agents: `PATCH /hosts/{name}`
//! with `maintenance: true` answers 202 with a `host_evacuate` task at once, which says how
//! many running VMs are left and ends when the host has none; taking the host out of
//! maintenance ends it cancelled; it is not cancellable itself; other host changes answer 200
//! as before.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST: HostCapacity = HostCapacity {
    cores: 4,
    memory_mib: 8 * GIB,
};

async fn task(c: &TestConsole, id: u64) -> Value {
    let r = c
        .call_raw("GET", &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// `PATCH /hosts/{host}` with maintenance on, answered at once: the task.
async fn enter_maintenance(c: &TestConsole, host: &str) -> Value {
    let asked = Instant::now();
    let r = c
        .call_raw(
            "PATCH",
            &format!("/api/v1/hosts/{host}"),
            Some(r#"{"maintenance": true}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(r.body["kind"], "host_evacuate", "{:?}", r.body);
    assert_eq!(r.body["target"], host, "{:?}", r.body);
    r.body
}

#[tokio::test]
async fn maintenance_is_a_task_that_ends_when_balancing_has_moved_the_running_vms_away() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    for vm in ["m1", "m2"] {
        create_vm_on(&c, vm, "h1", 512).await;
    }
    put_balancing(
        &c,
        json!({"mode": "automatic", "interval_s": 3600, "level": 1}),
    )
    .await;
    let t = enter_maintenance(&c, "h1").await;
    let id = t["id"].as_u64().unwrap();
    let host = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(
        host.body["maintenance"], true,
        "set at once: {:?}",
        host.body
    );

    let done = c.wait_task(id, None).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["name"], "h1", "{done}");
    assert_eq!(done["result"]["maintenance"], true, "{done}");
    for vm in ["m1", "m2"] {
        let r = c.call("GET", &format!("/api/v1/vms/{vm}"), None).await;
        assert_eq!(r.body["host"], "h2", "{vm}: {:?}", r.body);
    }

    // Already empty: the task ends at once; maintenance off is a plain 200.
    let again = enter_maintenance(&c, "h1").await;
    let ended = c.wait_task(again["id"].as_u64().unwrap(), None).await;
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let off = c
        .call_raw(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance": false}"#),
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    assert_eq!(off.body["maintenance"], false, "{:?}", off.body);
    c.shutdown().await;
}

#[tokio::test]
async fn an_evacuation_waits_for_the_operator_and_ends_cancelled_when_maintenance_is_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    create_vm_on(&c, "stay", "h1", 512).await;
    let t = enter_maintenance(&c, "h1").await;
    let id = t["id"].as_u64().unwrap();
    assert_eq!(t["cancellable"], false, "{t}");

    // Balancing is off: the task waits, saying so.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let now = task(&c, id).await;
    assert_eq!(now["state"], "running", "{now}");
    let said = now["message"].as_str().unwrap_or_default();
    assert!(
        said.contains("1 of 1") && said.contains("balancing is off"),
        "{now}"
    );
    // Not through the task (an operator's), which would change a host (an admin's).
    let r = c
        .call_raw("DELETE", &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_problem(&r, 409);
    assert_eq!(task(&c, id).await["state"], "running");

    // Out of maintenance: the evacuation ends cancelled, the VM where it was.
    let off = c
        .call_raw(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance": false}"#),
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    let done = c.wait_task(id, None).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert!(
        done["error"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("taken out of maintenance"),
        "{done}"
    );
    let vm = c.call("GET", "/api/v1/vms/stay", None).await;
    assert_eq!(vm.body["host"], "h1", "{:?}", vm.body);

    // A refused update (bad ratios) leaves no task.
    let bad = c
        .call_raw(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance": true, "ratios": {"cpu": -1.0, "memory": 1.0}}"#),
        )
        .await;
    assert_problem(&bad, 400);
    let host = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(host.body["maintenance"], false, "{:?}", host.body);
    c.shutdown().await;
}
