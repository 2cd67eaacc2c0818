//! What a host's Hello and reports may claim: not another host's VM, not another host's
//! address, not an absurd capacity.

mod common;

use std::time::Duration;

use common::*;
use vinfra_types::{HostCapacity, PowerState};

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

async fn events(c: &TestConsole) -> String {
    c.call("GET", "/api/v1/events", None).await.body.to_string()
}

#[tokio::test]
async fn a_report_claiming_another_hosts_vm_is_refused_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    let b = FakeAgent::join_and_connect(&c, "b", HOST16).await;
    let body = vm_json("x", 1, GIB).replace("\"name\":\"x\"", "\"name\":\"x\",\"host\":\"a\"");
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call("POST", "/api/v1/vms/x/stop", Some(r#"{"force":true}"#))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // b, taken over, claims x runs on it: believed, the VM controller would move x's record to
    // b (a stopped it) and a start on a would be refused as "live elsewhere".
    let vm = a
        .state
        .lock()
        .unwrap()
        .vms
        .values()
        .next()
        .unwrap()
        .0
        .clone();
    b.state
        .lock()
        .unwrap()
        .vms
        .insert(vm.id, (vm.clone(), PowerState::Running));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !events(&c).await.contains("not believed") {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal: {}",
            events(&c).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the VM controller its rounds: the record stays on a.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = c.call("GET", "/api/v1/vms/x", None).await;
    assert_eq!(r.body["host"], "a", "{:?}", r.body);
    let r = c.call("POST", "/api/v1/vms/x/start", None).await;
    assert_eq!(r.status, 200, "start refused: {:?}", r.body);
    assert_eq!(
        a.state.lock().unwrap().vms.get(&vm.id).map(|v| v.1),
        Some(PowerState::Running)
    );
    let ev = events(&c).await;
    assert_eq!(ev.matches("not believed").count(), 1, "one event: {ev}");
    drop((a, b));
    c.shutdown().await;
}

#[tokio::test]
async fn a_hello_with_another_hosts_address_or_an_absurd_capacity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _a = FakeAgent::join_and_connect_at(&c, "a", HOST16, "10.9.0.1").await;
    let thief = FakeState {
        address: Some("10.9.0.1".into()),
        ..FakeState::default()
    };
    let _t = FakeAgent::join_and_try_connect(&c, "thief", HOST16, thief).await;
    let absurd = HostCapacity {
        cores: 0,
        memory_mib: 16 * GIB,
    };
    let _z = FakeAgent::join_and_try_connect(&c, "zero", absurd, FakeState::default()).await;
    // The same address written as IPv4-mapped IPv6, and an address no host has.
    let mapped = FakeState {
        address: Some("::ffff:10.9.0.1".into()),
        ..FakeState::default()
    };
    let _m = FakeAgent::join_and_try_connect(&c, "mapped", HOST16, mapped).await;
    let nowhere = FakeState {
        address: Some("0.0.0.0".into()),
        ..FakeState::default()
    };
    let _n = FakeAgent::join_and_try_connect(&c, "nowhere", HOST16, nowhere).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = events(&c).await;
        if ev.matches("address 10.9.0.1 is host 'a''s").count() == 2
            && ev.contains("capacity of 0 CPUs")
            && ev.contains("address '0.0.0.0' is not an IP address of a host")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ev}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for host in ["thief", "zero", "mapped", "nowhere"] {
        let r = c.call("GET", &format!("/api/v1/hosts/{host}"), None).await;
        assert_ne!(r.body["status"], "connected", "{host}: {:?}", r.body);
    }
    // Loopback is anybody's: two hosts on 127.0.0.1 both connect.
    let _l1 = FakeAgent::join_and_connect(&c, "l1", HOST16).await;
    let _l2 = FakeAgent::join_and_connect(&c, "l2", HOST16).await;
    c.shutdown().await;
}
