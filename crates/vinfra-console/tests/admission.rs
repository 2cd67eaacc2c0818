//! HA admission control with fake agents: a power-on (create that starts, start, HA turned on
//! for a running VM) that would break the reserve is refused with 409 `ha-reserve` naming the
//! scenario, and nothing changes; with `tolerate_host_failures` 0 it is admitted. `GET /ha`
//! shows each host's HA state (a lost host whose lease froze is `failed`) and the reserve.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use vinfra_types::{HostCapacity, PowerState};

/// 4 cores, 4 GiB.
const HOST4: HostCapacity = HostCapacity {
    cores: 4,
    memory_mib: 4 * GIB,
};

/// `POST /vms`: VM `name` of `gib` GiB on `host`, HA on or off, started or not.
async fn create(c: &TestConsole, name: &str, host: &str, gib: u64, ha: bool, start: bool) -> Resp {
    let mut body: Value = serde_json::from_str(&vm_json(name, 1, gib * GIB)).unwrap();
    body["host"] = host.into();
    body["start"] = start.into();
    body["ha"] = json!({ "enabled": ha });
    c.call("POST", "/api/v1/vms", Some(&body.to_string())).await
}

async fn set_tolerate(c: &TestConsole, n: u32) {
    let mut s = c.call("GET", "/api/v1/settings", None).await.body;
    s["ha"]["tolerate_host_failures"] = n.into();
    let r = c
        .call("PUT", "/api/v1/settings", Some(&s.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Asserts `r` is a 409 `ha-reserve` whose detail has every one of `words`.
fn assert_refused(r: &Resp, words: &[&str]) {
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["type"], "/problems/ha-reserve", "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap();
    for w in words {
        assert!(detail.contains(w), "{w:?} not in {detail}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_that_breaks_the_reserve_is_refused_and_admitted_with_tolerate_0() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST4).await;
    let h2 = FakeAgent::join_and_connect(&c, "h2", HOST4).await;
    let r = create(&c, "web", "h1", 2, true, true).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // With db (3 GiB) on h2, web (2 GiB) would have 1 GiB left there if h1 failed.
    let r = create(&c, "db", "h2", 3, true, true).await;
    assert_refused(
        &r,
        &[
            "tolerate 1 host failure",
            "if host h1 failed",
            "'web'",
            "2048 MiB",
        ],
    );
    // Nothing written, nothing sent.
    assert_eq!(c.call("GET", "/api/v1/vms/db", None).await.status, 404);
    assert!(h2.state.lock().unwrap().vms.is_empty());
    // A VM created stopped is not a power-on.
    let r = create(&c, "db", "h2", 3, true, false).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(c.call("DELETE", "/api/v1/vms/db", None).await.status, 204);
    // Tolerating no failure, the same create is admitted.
    set_tolerate(&c, 0).await;
    let r = create(&c, "db", "h2", 3, true, true).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let ha = c.call("GET", "/api/v1/ha", None).await;
    assert_eq!(ha.status, 200);
    assert_eq!(ha.body["reserve"]["enforced"], false, "{}", ha.body);
    // Back to 1: the reserve is broken, both scenarios fail, each naming its VM.
    set_tolerate(&c, 1).await;
    let ha = c.call("GET", "/api/v1/ha", None).await.body;
    let reserve = &ha["reserve"];
    assert_eq!(reserve["enforced"], true, "{ha}");
    assert_eq!(reserve["holds"], false, "{ha}");
    assert_eq!(reserve["ha_vms"], 2, "{ha}");
    assert_eq!(reserve["scenarios_total"], 2, "{ha}");
    assert_eq!(reserve["scenarios_holding"], 0, "{ha}");
    let h1 = &reserve["scenarios"][0];
    assert_eq!(h1["failed"], json!(["h1"]), "{ha}");
    assert_eq!(
        h1["vms"],
        json!([{"vm": "web", "vcpus": 1, "memory_mib": 2048, "restarts_on": null}])
    );
    assert_eq!(h1["shortfall_memory_mib"], 2048);
    assert_eq!(reserve["scenarios"][1]["failed"], json!(["h2"]));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_and_ha_turned_on_that_break_the_reserve_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST4).await;
    let h2 = FakeAgent::join_and_connect(&c, "h2", HOST4).await;
    // h1: web (HA, 1 GiB) and filler (2 GiB): 1 GiB free. h2: batch (2 GiB): 2 GiB free.
    for (name, host, gib, ha) in [
        ("web", "h1", 1, true),
        ("filler", "h1", 2, false),
        ("batch", "h2", 2, false),
    ] {
        let r = create(&c, name, host, gib, ha, true).await;
        assert_eq!(r.status, 201, "{name}: {:?}", r.body);
    }
    let r = create(&c, "app", "h2", 2, true, false).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let app_id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    // Starting app (2 GiB) fills h2: web could not restart there if h1 failed.
    let r = c.call("POST", "/api/v1/vms/app/start", None).await;
    assert_refused(&r, &["VM 'app'", "if host h1 failed", "'web'"]);
    let app = c.call("GET", "/api/v1/vms/app", None).await.body;
    assert_eq!(app["state"], "stopped", "{app}");
    assert_eq!(h2.vm_state(app_id), Some(PowerState::Stopped));
    // HA on for batch: if h2 failed, batch (2 GiB) would find 1 GiB on h1.
    let patch = json!({"ha": {"enabled": true}}).to_string();
    let r = c.call("PATCH", "/api/v1/vms/batch", Some(&patch)).await;
    assert_refused(&r, &["VM 'batch'", "if host h2 failed", "'batch'"]);
    let batch = c.call("GET", "/api/v1/vms/batch", None).await.body;
    assert_eq!(batch["spec"]["ha"]["enabled"], false, "{batch}");
    let ev = c.call("GET", "/api/v1/events", None).await.body.to_string();
    assert!(!ev.contains("HA on"), "{ev}");
    // Tolerating no failure, both go through.
    set_tolerate(&c, 0).await;
    let r = c.call("PATCH", "/api/v1/vms/batch", Some(&patch)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/vms/app/start", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ha_status_shows_each_hosts_state_and_the_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tempfile::tempdir().unwrap();
    let c = start_ha_console(dir.path(), ds.path()).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST4).await;
    let mut h2 = FakeAgent::join_and_connect(&c, "h2", HOST4).await;
    let _h3 = FakeAgent::join_and_connect(&c, "h3", HOST4).await;
    for (name, host) in [("web", "h1"), ("db", "h2")] {
        let r = create(&c, name, host, 1, true, true).await;
        assert_eq!(r.status, 201, "{name}: {:?}", r.body);
    }
    let ha = c.call("GET", "/api/v1/ha", None).await.body;
    assert_eq!(ha["settings"]["tolerate_host_failures"], 1, "{ha}");
    let reserve = &ha["reserve"];
    assert_eq!(
        (
            &reserve["enforced"],
            &reserve["holds"],
            &reserve["scenarios_holding"]
        ),
        (&json!(true), &json!(true), &json!(2)),
        "{ha}"
    );
    assert_eq!(reserve["scenarios"][0]["failed"], json!(["h1"]));
    assert!(
        reserve["scenarios"][0]["vms"][0]["restarts_on"].is_string(),
        "{ha}"
    );
    // h2 is lost and its lease froze: failed after the expiry.
    write_lease(ds.path(), "h2", 41);
    h2.disconnect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ha = loop {
        let ha = c.call("GET", "/api/v1/ha", None).await.body;
        let h2 = ha["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "h2");
        if h2.is_some_and(|h| h["state"] == "failed") {
            break ha;
        }
        assert!(Instant::now() < deadline, "h2 never failed: {ha}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let hosts = ha["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{ha}");
    for h in hosts {
        let want = if h["name"] == "h2" {
            "failed"
        } else {
            "connected"
        };
        assert_eq!(h["state"], want, "{ha}");
        assert!(h["for_s"].is_u64() && h["detail"].is_string(), "{ha}");
    }
    let h2 = hosts.iter().find(|h| h["name"] == "h2").unwrap();
    assert_eq!(
        h2["lease"],
        json!({"incarnation": LEASE_INCARNATION, "counter": 41}),
        "{ha}"
    );
    // The reserve as it is now: h2 takes no restart.
    assert_eq!(ha["reserve"]["enforced"], true, "{ha}");
    c.shutdown().await;
}
