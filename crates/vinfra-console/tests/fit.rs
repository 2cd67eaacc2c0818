//! Placement through the console, with fake agents: the one placer kept in memory follows
//! creates, deletes, stops, starts, migrations, maintenance and connections; a VM no host can
//! take is refused with every host and its reason.

mod common;

use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

/// 4 cores, 4 GiB: with ratios 1 and 1, room for 4 vCPU and 4096 MiB.
const SMALL: HostCapacity = HostCapacity {
    cores: 4,
    memory_mib: 4 * GIB,
};

async fn console() -> (TestConsole, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let r = c
        .call(
            "PUT",
            "/api/v1/settings",
            Some(r#"{"ratios":{"cpu":1.0,"memory":1.0}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (c, dir)
}

/// The body of a VM `name` with `vcpus` and `memory_mib`, on `host` when given, with `nics`.
fn body(name: &str, vcpus: u32, memory_mib: u64, host: Option<&str>, nics: Value) -> String {
    let mut v: Value = serde_json::from_str(&vm_json(name, vcpus, memory_mib)).unwrap();
    if let Some(h) = host {
        v["host"] = json!(h);
    }
    v["nics"] = nics;
    v.to_string()
}

async fn create(
    c: &TestConsole,
    name: &str,
    vcpus: u32,
    memory_mib: u64,
    host: Option<&str>,
) -> Resp {
    let b = body(name, vcpus, memory_mib, host, json!([]));
    c.call("POST", "/api/v1/vms", Some(&b)).await
}

/// A 409 problem of `kind` whose detail contains every one of `needles`; returns the detail.
fn refused(r: &Resp, kind: &str, needles: &[&str]) -> String {
    assert_problem(r, 409);
    assert_eq!(r.body["type"], format!("/problems/{kind}"), "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap().to_string();
    for n in needles {
        assert!(detail.contains(n), "'{n}' not in: {detail}");
    }
    detail
}

async fn set_maintenance(c: &TestConsole, host: &str, on: bool) {
    let b = json!({ "maintenance": on }).to_string();
    let r = c
        .call("PATCH", &format!("/api/v1/hosts/{host}"), Some(&b))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_vm_no_host_can_take_is_refused_naming_every_host_and_why() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", SMALL).await;
    let trunk = |mtu| FakeState {
        trunk: Some("trunk0".into()),
        underlay_mtu: Some(mtu),
        ..FakeState::default()
    };
    let _h2 = FakeAgent::join_and_connect_with(&c, "h2", SMALL, trunk(1500)).await;
    let _h3 = FakeAgent::join_and_connect_with(&c, "h3", SMALL, trunk(9000)).await;
    set_maintenance(&c, "h3", true).await;
    for net in [
        json!({"name": "v100", "kind": "vlan", "vlan_id": 100, "subnet": "10.81.0.0/24"}),
        json!({"name": "jumbo", "kind": "overlay", "subnet": "10.80.3.0/24", "mtu": 8950}),
    ] {
        let r = c
            .call("POST", "/api/v1/networks", Some(&net.to_string()))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let nics = json!([{"network": "v100"}, {"network": "jumbo"}]);

    // h1 has no trunk, h2 too small an underlay, h3 is in maintenance: one line, each host.
    let b = body("both", 1, 512, None, nics.clone());
    let r = c.call("POST", "/api/v1/vms", Some(&b)).await;
    let detail = refused(&r, "host-unavailable", &[]);
    assert_eq!(
        detail,
        "no host can take VM 'both' (1 vCPU, 512 MiB): h1: it has no VLAN trunk for VLAN \
         network 'v100' (its agent runs without --trunk-interface); h2: its underlay MTU is \
         1500, and overlay network 'jumbo' (MTU 8950) needs at least 9000 (8950 + 50 bytes of \
         VXLAN encapsulation; its agent's --underlay-mtu); h3: it is in maintenance"
    );
    // Nothing stored, no address held.
    assert_problem(&c.call("GET", "/api/v1/vms/both", None).await, 404);
    for net in ["v100", "jumbo"] {
        let r = c
            .call("GET", &format!("/api/v1/networks/{net}"), None)
            .await;
        assert_eq!(r.body["ports"], json!([]), "{:?}", r.body);
    }
    // A named host says why it alone cannot.
    let b = body("both", 1, 512, Some("h2"), nics.clone());
    let r = c.call("POST", "/api/v1/vms", Some(&b)).await;
    refused(
        &r,
        "host-unavailable",
        &["host h2 cannot take VM 'both'", "underlay MTU is 1500"],
    );

    // With h3 out of maintenance, it takes the VM.
    set_maintenance(&c, "h3", false).await;
    let b = body("both", 1, 512, None, nics);
    let r = c.call("POST", "/api/v1/vms", Some(&b)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h3");
    c.shutdown().await;
}

#[tokio::test]
async fn deleted_stopped_and_migrated_vms_free_their_share() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", SMALL).await;
    for vm in ["a", "b"] {
        let r = create(&c, vm, 2, 2 * GIB, None).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // h1 is full.
    let r = create(&c, "c", 1, GIB, None).await;
    refused(
        &r,
        "insufficient-capacity",
        &["no host can take VM 'c'", "h1: memory short by 1024 MiB"],
    );

    // A deleted VM frees its share at once.
    let r = c.call("DELETE", "/api/v1/vms/a?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = create(&c, "c", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // A stopped VM too; started again, it needs room again.
    let r = c
        .call("POST", "/api/v1/vms/b/stop", Some(r#"{"force":true}"#))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = create(&c, "d", 2, 2 * GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/vms/b/start", None).await;
    refused(
        &r,
        "insufficient-capacity",
        &["host h1 cannot take VM 'b'", "memory short by 1024 MiB"],
    );

    // A VM migrated away frees its share on its source once it arrived.
    let _h2 = FakeAgent::join_and_connect(&c, "h2", SMALL).await;
    let r = c
        .call("POST", "/api/v1/vms/d/migrate", Some(r#"{"to":"h2"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "d").await["phase"], "completed");
    let r = c.call("POST", "/api/v1/vms/b/start", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c.call("GET", "/api/v1/vms/b", None).await;
    assert_eq!(r.body["host"], "h1");
    // h1 holds c and b (3 GiB), h2 holds d (2 GiB): 2 GiB more fit on h2 only.
    let r = create(&c, "e", 1, 2 * GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h2");
    c.shutdown().await;
}

#[tokio::test]
async fn a_migrating_vm_counts_on_its_destination_and_holds_its_share_on_its_source() {
    let (c, _dir) = console().await;
    let src = FakeAgent::join_and_connect(&c, "src", SMALL).await;
    let _dst = FakeAgent::join_and_connect(&c, "dst", SMALL).await;
    let r = create(&c, "m", 1, 3 * GIB, Some("src")).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    src.state.lock().unwrap().behaviour.active_polls = 100_000;
    let r = c
        .call("POST", "/api/v1/vms/m/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);

    // While it moves, neither host has room for 2 GiB more.
    let r = create(&c, "n", 1, 2 * GIB, Some("dst")).await;
    refused(&r, "insufficient-capacity", &["host dst", "allocated 3072"]);
    let r = create(&c, "n", 1, 2 * GIB, Some("src")).await;
    refused(
        &r,
        "insufficient-capacity",
        &["host src", "3072 MiB of it reserved"],
    );
    let r = create(&c, "n", 1, 2 * GIB, None).await;
    refused(&r, "insufficient-capacity", &["no host can take VM 'n'"]);

    // Cancelled, it stays on its source: the destination has room again.
    let r = c.call("DELETE", "/api/v1/vms/m/migration", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["phase"], "cancelled");
    let r = create(&c, "n", 1, 2 * GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "dst");
    c.shutdown().await;
}

#[tokio::test]
async fn hosts_in_maintenance_or_disconnected_are_not_chosen() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", SMALL).await;
    let mut h2 = FakeAgent::join_and_connect(&c, "h2", SMALL).await;
    let _h3 = FakeAgent::join_and_connect(&c, "h3", SMALL).await;
    let host_of = |r: &Resp| r.body["host"].as_str().unwrap().to_string();

    // Equal hosts: the first by name, unless it is in maintenance.
    set_maintenance(&c, "h1", true).await;
    let r = create(&c, "x", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(host_of(&r), "h2");
    let r = create(&c, "x1", 1, GIB, Some("h1")).await;
    refused(&r, "host-unavailable", &["host h1", "it is in maintenance"]);

    // h2's agent goes away: neither h1 nor h2.
    h2.disconnect();
    c.wait_host_status("h2", "disconnected").await;
    let r = create(&c, "y", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(host_of(&r), "h3");
    let r = create(&c, "y1", 1, GIB, Some("h2")).await;
    refused(
        &r,
        "host-unavailable",
        &["host h2", "its agent is disconnected"],
    );
    // h3 full (y and 3 GiB more): no host, each for its reason.
    let r = create(&c, "full", 1, 3 * GIB, Some("h3")).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = create(&c, "z", 1, GIB, None).await;
    refused(
        &r,
        "insufficient-capacity",
        &[
            "h2: its agent is disconnected",
            "h1: it is in maintenance",
            "h3: memory short by 1024 MiB",
        ],
    );

    // Back: out of maintenance, reconnected.
    set_maintenance(&c, "h1", false).await;
    let r = create(&c, "z", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(host_of(&r), "h1");
    h2.connect(c.running.agent_addr).await;
    c.wait_host_status("h2", "connected").await;
    // h2, back and emptied, has the most room: chosen again.
    let r = c.call("DELETE", "/api/v1/vms/x?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = create(&c, "w", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(host_of(&r), "h2");
    c.shutdown().await;
}

#[tokio::test]
async fn rules_that_no_longer_fit_the_cluster_hold_only_the_vms_they_name() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", SMALL).await;
    let mut h2 = FakeAgent::join_and_connect(&c, "h2", SMALL).await;
    let rule =
        json!({"name": "pin", "strength": "must", "kind": "run_on", "vms": ["p"], "hosts": ["h2"]});
    let r = c
        .call("POST", "/api/v1/rules", Some(&rule.to_string()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = create(&c, "a", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h1");

    // The host the rule names is removed: the rule names a host the cluster no longer has.
    h2.disconnect();
    let r = c.call("DELETE", "/api/v1/hosts/h2", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = create(&c, "p", 1, GIB, None).await;
    assert_problem(&r, 422);
    assert_eq!(r.body["type"], "/problems/invalid-rule", "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("'pin'"),
        "{:?}",
        r.body
    );
    // Every other VM is placed as before.
    let r = create(&c, "q", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h1");
    // Without the rule, p too.
    let r = c.call("DELETE", "/api/v1/rules/pin", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = create(&c, "p", 1, GIB, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    c.shutdown().await;
}
