//! Placement and balancing by what a VM's networks need of its host: VLAN networks only on hosts
//! with a trunk, overlay networks only where the underlay carries their MTU; the balancer moves
//! such VMs to hosts that can carry them and never away.

mod common;

use common::network::{create_net, create_vm, on_host, vm_with_nics};
use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// Runs a manual balancing pass and checks that it recommends exactly one move, `vm` from
/// `from` to `to`; returns its reason.
async fn only_recommendation(c: &TestConsole, vm: &str, from: &str, to: &str) -> String {
    let body = json!({"ratios": {"cpu": 4.0, "memory": 1.0},
        "balancing": {"mode": "manual", "interval_s": 3600}});
    let r = c
        .call("PUT", "/api/v1/settings", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/drs/run", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["last_error"], Value::Null, "{:?}", r.body);
    let r = c.call("GET", "/api/v1/drs/recommendations", None).await;
    let recs = r.body.as_array().unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        (&recs[0]["vm"], &recs[0]["from"], &recs[0]["to"]),
        (&json!(vm), &json!(from), &json!(to)),
        "{recs:?}"
    );
    recs[0]["reason"].as_str().unwrap().to_string()
}

/// Maintenance on (its evacuation's task not followed: answered 202) or off (200; an
/// evacuation still waiting ends cancelled).
async fn set_maintenance(c: &TestConsole, host: &str, on: bool) {
    let body = json!({ "maintenance": on }).to_string();
    let r = c
        .call_raw("PATCH", &format!("/api/v1/hosts/{host}"), Some(&body))
        .await;
    assert_eq!(r.status, if on { 202 } else { 200 }, "{:?}", r.body);
}

/// Creates VM `name` with `nics`, not started.
async fn create_stopped(c: &TestConsole, name: &str, nics: Value) -> Resp {
    let mut v: Value = serde_json::from_str(&vm_with_nics(name, nics)).unwrap();
    v["start"] = json!(false);
    c.call("POST", "/api/v1/vms", Some(&v.to_string())).await
}

/// Disconnects `agent` (host `name`), changes what it will report, and connects it again.
async fn reconnect_changed(
    c: &TestConsole,
    agent: &mut FakeAgent,
    name: &str,
    change: impl FnOnce(&mut FakeState),
) {
    agent.disconnect();
    c.wait_host_status(name, "disconnected").await;
    change(&mut agent.state.lock().unwrap());
    agent.connect(c.running.agent_addr).await;
    c.wait_host_status(name, "connected").await;
}

/// A problem+json 409 `host-unavailable` whose detail names every one of `needles`.
fn assert_host_unavailable(r: &Resp, needles: &[&str]) {
    assert_problem(r, 409);
    assert_eq!(r.body["type"], "/problems/host-unavailable", "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap();
    for n in needles {
        assert!(detail.contains(n), "'{n}' not in: {detail}");
    }
}

#[tokio::test]
async fn vms_on_vlan_networks_are_placed_only_on_hosts_with_a_trunk() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    // h1 sorts first and ties with h2 on free memory: plain placement would pick it.
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let trunked = FakeState {
        trunk: Some("trunk0".into()),
        ..FakeState::default()
    };
    let mut h2 = FakeAgent::join_and_connect_with(&c, "h2", HOST16, trunked).await;

    // Hosts show their trunk.
    let r = c.call("GET", "/api/v1/hosts", None).await;
    let trunk_of = |body: &Value, host: &str| {
        body.as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .map(|h| h["trunk"].clone())
            .unwrap()
    };
    assert_eq!(trunk_of(&r.body, "h1"), Value::Null, "{:?}", r.body);
    assert_eq!(trunk_of(&r.body, "h2"), json!("trunk0"), "{:?}", r.body);
    let r = c.call("GET", "/api/v1/hosts/h2", None).await;
    assert_eq!(r.body["trunk"], "trunk0", "{:?}", r.body);

    for body in [
        json!({"name": "v100", "kind": "vlan", "vlan_id": 100, "subnet": "10.81.0.0/24"}),
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    ] {
        assert_eq!(create_net(&c, body).await.status, 201);
    }

    // Named host without a trunk: 409 naming the host and the network, nothing stored.
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&on_host("a", "h1", json!([{"network": "v100"}]))),
        )
        .await;
    assert_host_unavailable(&r, &["host h1", "'v100'", "no VLAN trunk"]);
    assert_problem(&c.call("GET", "/api/v1/vms/a", None).await, 404);
    let r = c.call("GET", "/api/v1/networks/v100", None).await;
    assert_eq!(r.body["ports"], json!([]), "no address held: {:?}", r.body);

    // Automatic placement skips h1; a VM without VLAN NICs still goes there.
    let r = create_vm(&c, "a", json!([{"network": "blue"}, {"network": "v100"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h2");
    let r = create_vm(&c, "b", json!([{"network": "blue"}])).await;
    assert_eq!(r.body["host"], "h1", "{:?}", r.body);

    // Migration: not to h1 when named, and no other host with a trunk to pick otherwise.
    let r = c
        .call("POST", "/api/v1/vms/a/migrate", Some(r#"{"to":"h1"}"#))
        .await;
    assert_host_unavailable(&r, &["host h1", "'a'", "'v100'"]);
    let r = c.call("POST", "/api/v1/vms/a/migrate", Some("{}")).await;
    assert_host_unavailable(
        &r,
        &[
            "no host",
            "'a'",
            "h1: it has no VLAN trunk for VLAN network 'v100'",
        ],
    );
    assert_eq!(
        c.call("GET", "/api/v1/vms/a", None).await.body["host"],
        "h2"
    );

    // The only host with a trunk in maintenance: automatic placement says so.
    set_maintenance(&c, "h2", true).await;
    let r = create_vm(&c, "c", json!([{"network": "v100"}])).await;
    assert_host_unavailable(&r, &["'c'", "'v100'", "h2: it is in maintenance"]);
    set_maintenance(&c, "h2", false).await;

    // A stopped VM whose host comes back without its trunk is not started there.
    let r = create_stopped(&c, "d", json!([{"network": "v100"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h2");
    reconnect_changed(&c, &mut h2, "h2", |s| s.trunk = None).await;
    let r = c.call("GET", "/api/v1/hosts/h2", None).await;
    assert_eq!(r.body["trunk"], Value::Null, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/vms/d/start", None).await;
    assert_host_unavailable(&r, &["host h2", "'d'", "'v100'"]);
    // Now no host has a trunk at all.
    let r = create_vm(&c, "e", json!([{"network": "v100"}])).await;
    assert_host_unavailable(
        &r,
        &[
            "'e'",
            "h1, h2: it has no VLAN trunk for VLAN network 'v100'",
        ],
    );
    c.shutdown().await;
}

#[tokio::test]
async fn the_balancer_moves_vlan_vms_to_hosts_with_a_trunk_and_never_away() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let trunked = || FakeState {
        trunk: Some("trunk0".into()),
        ..FakeState::default()
    };
    let mut h1 = FakeAgent::join_and_connect_with(&c, "h1", HOST16, trunked()).await;
    let _h2 = FakeAgent::join_and_connect_with(&c, "h2", HOST16, trunked()).await;
    let r = create_net(
        &c,
        json!({"name": "v100", "kind": "vlan", "vlan_id": 100, "subnet": "10.81.0.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&on_host("w", "h1", json!([{"network": "v100"}]))),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // h1 comes back without its trunk: w may not stay there.
    reconnect_changed(&c, &mut h1, "h1", |s| s.trunk = None).await;
    let reason = only_recommendation(&c, "w", "h1", "h2").await;
    assert!(
        reason.contains("its host does not fit it: it has no VLAN trunk for VLAN network 'v100'"),
        "{reason}"
    );
    c.shutdown().await;
}

/// A fake agent's state reporting underlay MTU `mtu`.
fn underlay(mtu: u32) -> FakeState {
    FakeState {
        underlay_mtu: Some(mtu),
        ..FakeState::default()
    }
}

#[tokio::test]
async fn jumbo_overlay_networks_go_only_to_hosts_with_a_jumbo_underlay() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let _h2 = FakeAgent::join_and_connect_with(&c, "h2", HOST16, underlay(9000)).await;
    let r = create_net(
        &c,
        json!({"name": "jumbo", "kind": "overlay", "subnet": "10.80.3.0/24", "mtu": 8950}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["mtu"], 8950, "{:?}", r.body);
    // Placed on h2, the only host whose underlay carries 8950 + 50; several times over.
    for vm in ["j1", "j2", "j3"] {
        let r = create_vm(&c, vm, json!([{"network": "jumbo"}])).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["host"], "h2", "{:?}", r.body);
    }
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&on_host("j4", "h1", json!([{"network": "jumbo"}]))),
        )
        .await;
    assert_host_unavailable(
        &r,
        &[
            "host h1",
            "underlay MTU is 1500",
            "'jumbo' (MTU 8950)",
            "9000",
        ],
    );
    c.shutdown().await;
}

#[tokio::test]
async fn vms_on_overlay_networks_are_placed_only_where_the_underlay_carries_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    // h1 sorts first and ties with h2 on free memory: plain placement would pick it.
    let _h1 = FakeAgent::join_and_connect_with(&c, "h1", HOST16, underlay(1400)).await;
    let mut h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;

    // Hosts show their underlay MTU; an agent that does not set one reports 1500.
    let r = c.call("GET", "/api/v1/hosts", None).await;
    let mtu_of = |body: &Value, host: &str| {
        body.as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .map(|h| h["underlay_mtu"].clone())
            .unwrap()
    };
    assert_eq!(mtu_of(&r.body, "h1"), json!(1400), "{:?}", r.body);
    assert_eq!(mtu_of(&r.body, "h2"), json!(1500), "{:?}", r.body);
    let r = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(r.body["underlay_mtu"], 1400, "{:?}", r.body);

    // blue (MTU 1450) needs an underlay MTU of 1500, small (1350) one of 1400.
    for body in [
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
        json!({"name": "small", "kind": "overlay", "subnet": "10.80.2.0/24", "mtu": 1350}),
    ] {
        assert_eq!(create_net(&c, body).await.status, 201);
    }

    // Named host with too small an underlay: 409 naming the host, its underlay MTU, the
    // network and the MTU it needs; nothing stored, no address held.
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&on_host(
                "a",
                "h1",
                json!([{"network": "small"}, {"network": "blue"}]),
            )),
        )
        .await;
    assert_host_unavailable(
        &r,
        &[
            "host h1",
            "'a'",
            "underlay MTU is 1400",
            "'blue' (MTU 1450)",
            "at least 1500",
        ],
    );
    assert_problem(&c.call("GET", "/api/v1/vms/a", None).await, 404);
    for net in ["blue", "small"] {
        let r = c
            .call("GET", &format!("/api/v1/networks/{net}"), None)
            .await;
        assert_eq!(r.body["ports"], json!([]), "no address held: {:?}", r.body);
    }
    let r = c.call("GET", "/api/v1/vms", None).await;
    assert_eq!(r.body, json!([]), "nothing created");

    // Automatic placement skips h1 for blue; a VM on small only, or without NICs, still goes
    // there.
    let r = create_vm(&c, "a", json!([{"network": "small"}, {"network": "blue"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h2");
    for (vm, nics) in [("b", json!([{"network": "small"}])), ("n", json!([]))] {
        let r = create_vm(&c, vm, nics).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["host"], "h1", "{vm}: {:?}", r.body);
    }
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&on_host("s", "h1", json!([{"network": "small"}]))),
        )
        .await;
    assert_eq!(r.status, 201, "1350 + 50 fits 1400: {:?}", r.body);

    // Migration: not to h1 when named, and no other host large enough otherwise.
    let r = c
        .call("POST", "/api/v1/vms/a/migrate", Some(r#"{"to":"h1"}"#))
        .await;
    assert_host_unavailable(
        &r,
        &[
            "host h1",
            "'a'",
            "underlay MTU is 1400",
            "'blue'",
            "at least 1500",
        ],
    );
    let r = c.call("POST", "/api/v1/vms/a/migrate", Some("{}")).await;
    assert_host_unavailable(
        &r,
        &[
            "no host",
            "'a'",
            "h1: its underlay MTU is 1400, and overlay network 'blue' (MTU 1450) needs at \
             least 1500",
        ],
    );
    let r = c.call("GET", "/api/v1/vms/a", None).await;
    assert_eq!(r.body["host"], "h2");
    assert_problem(&c.call("GET", "/api/v1/vms/a/migration", None).await, 404);

    // The only host large enough in maintenance: automatic placement says so.
    set_maintenance(&c, "h2", true).await;
    let r = create_vm(&c, "c", json!([{"network": "blue"}])).await;
    assert_host_unavailable(&r, &["'c'", "'blue'", "h2: it is in maintenance"]);
    set_maintenance(&c, "h2", false).await;

    // A stopped VM whose host comes back with a smaller underlay is not started there.
    let r = create_stopped(&c, "d", json!([{"network": "blue"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["host"], "h2");
    reconnect_changed(&c, &mut h2, "h2", |s| s.underlay_mtu = Some(1400)).await;
    let r = c.call("GET", "/api/v1/hosts/h2", None).await;
    assert_eq!(r.body["underlay_mtu"], 1400, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/vms/d/start", None).await;
    assert_host_unavailable(&r, &["host h2", "'d'", "underlay MTU is 1400", "'blue'"]);
    // Now no host is large enough at all.
    let r = create_vm(&c, "e", json!([{"network": "blue"}])).await;
    assert_host_unavailable(
        &r,
        &[
            "'e'",
            "h1, h2: its underlay MTU is 1400, and overlay network 'blue' (MTU 1450) needs at \
             least 1500",
        ],
    );
    assert_problem(&c.call("GET", "/api/v1/vms/e", None).await, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn the_balancer_keeps_overlay_vms_off_hosts_with_too_small_an_underlay() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    for body in [
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
        json!({"name": "small", "kind": "overlay", "subnet": "10.80.2.0/24", "mtu": 1350}),
    ] {
        assert_eq!(create_net(&c, body).await.status, 201);
    }
    for (vm, net) in [("w", "blue"), ("s", "small")] {
        let r = c
            .call(
                "POST",
                "/api/v1/vms",
                Some(&on_host(vm, "h1", json!([{"network": net}]))),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    // h1 comes back with an underlay MTU of 1400: w (blue, 1450) may not stay there, s
    // (small, 1350) may.
    reconnect_changed(&c, &mut h1, "h1", |s| s.underlay_mtu = Some(1400)).await;
    let reason = only_recommendation(&c, "w", "h1", "h2").await;
    assert!(
        reason.contains("its host does not fit it: its underlay MTU is 1400, and overlay network 'blue' (MTU 1450) needs at least 1500"),
        "{reason}"
    );
    c.shutdown().await;
}
