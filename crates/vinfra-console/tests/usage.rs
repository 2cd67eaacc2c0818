//! A VM's and a host's last hour of CPU and memory (`GET /vms/{name}/usage`,
//! `GET /hosts/{name}/usage`), kept from the agents' reports.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// Polls `path` until `ok` holds for its body (10 s at most).
async fn until(c: &TestConsole, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let r = c.call("GET", path, None).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        if ok(&r.body) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never showed what was awaited");
}

fn last(history: &Value) -> &Value {
    history["samples"].as_array().unwrap().last().unwrap()
}

#[tokio::test]
async fn the_usage_a_host_reports_becomes_the_history_of_the_vm_and_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    create_vm_on(&c, "usage-vm", "h1", GIB).await;
    set_vm_usage("usage-vm", 0.75, 300);

    let vm = until(&c, "/api/v1/vms/usage-vm/usage", |b| {
        b["samples"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["memory_mib"] == 300)
    })
    .await;
    assert_eq!(vm["interval_s"], 10, "{vm}");
    let s = last(&vm);
    assert_eq!(s["at"].as_u64().unwrap() % 10, 0, "{vm}");
    // The interval's mean: reports of the interval before the usage was set count too.
    let cpu = s["cpu_cores"].as_f64().unwrap();
    assert!(cpu > 0.0 && cpu <= 0.75, "{vm}");

    let host = until(&c, "/api/v1/hosts/h1/usage", |b| {
        b["samples"].as_array().is_some_and(|s| !s.is_empty())
    })
    .await;
    assert_eq!(last(&host)["cpu_cores"], 0.5, "{host}");

    for path in ["/api/v1/vms/nope/usage", "/api/v1/hosts/nope/usage"] {
        let r = c.call_raw("GET", path, None).await;
        assert_problem(&r, 404);
    }
    c.shutdown().await;
}
