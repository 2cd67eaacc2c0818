//! Logical networks end to end: the REST API over a real console and store, VM NICs through
//! fake agents over real mutual TLS.

mod common;

use common::*;
use serde_json::{json, Value};
use vinfra_console::networks::push::push;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

async fn create_net(c: &TestConsole, body: Value) -> Resp {
    c.call("POST", "/api/v1/networks", Some(&body.to_string()))
        .await
}

async fn networks(c: &TestConsole) -> Value {
    let r = c.call("GET", "/api/v1/networks", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// A VM with NICs (`[{network, ip?, mac?}]`).
fn vm_with_nics(name: &str, nics: Value) -> String {
    let mut v: Value = serde_json::from_str(&vm_json(name, 1, 128)).unwrap();
    v["nics"] = nics;
    v.to_string()
}

async fn create_vm(c: &TestConsole, name: &str, nics: Value) -> Resp {
    c.call("POST", "/api/v1/vms", Some(&vm_with_nics(name, nics)))
        .await
}

fn nic(r: &Resp, i: usize) -> (String, String) {
    let n = &r.body["spec"]["nics"][i];
    (
        n["ip"].as_str().unwrap().to_string(),
        n["mac"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn networks_are_created_listed_shown_and_deleted_without_clashes() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;

    let r = create_net(
        &c,
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24", "gateway": "10.80.1.1"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["vni"], 10000);
    assert_eq!(r.body["mtu"], 1450);
    assert_eq!(r.body["subnet"], "10.80.1.0/24");
    assert_eq!(r.body["gateway"], "10.80.1.1");
    assert_eq!(r.body["ports"], json!([]));
    assert!(r.body.get("vlan_id").is_none());

    // Automatic VNIs: the lowest free one, never one taken explicitly.
    let r = create_net(
        &c,
        json!({"name": "red", "kind": "overlay", "vni": 10001, "subnet": "10.80.2.0/24", "mtu": 1400}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["mtu"], 1400);
    let r = create_net(
        &c,
        json!({"name": "green", "kind": "overlay", "subnet": "10.80.3.0/24"}),
    )
    .await;
    assert_eq!(r.body["vni"], 10002, "10000 and 10001 are taken");

    // VLANs likewise, from 100 up.
    let r = create_net(
        &c,
        json!({"name": "v100", "kind": "vlan", "subnet": "192.168.10.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        (r.body["vlan_id"].clone(), r.body["mtu"].clone()),
        (json!(100), json!(1500))
    );
    assert!(r.body.get("vni").is_none());
    let r = create_net(
        &c,
        json!({"name": "v101", "kind": "vlan", "vlan_id": 101, "subnet": "192.168.11.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = create_net(
        &c,
        json!({"name": "v102", "kind": "vlan", "subnet": "192.168.12.0/24"}),
    )
    .await;
    assert_eq!(r.body["vlan_id"], 102);
    // A VLAN ID and a VNI of the same number do not clash.
    let r = create_net(
        &c,
        json!({"name": "ov100", "kind": "overlay", "vni": 100, "subnet": "10.90.0.0/16"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Clashes: 409 naming the holder, nothing stored.
    let before = networks(&c).await;
    for (body, holder) in [
        (
            json!({"name": "x", "kind": "overlay", "vni": 10001, "subnet": "10.1.0.0/24"}),
            "red",
        ),
        (
            json!({"name": "x", "kind": "vlan", "vlan_id": 100, "subnet": "10.1.0.0/24"}),
            "v100",
        ),
        (
            json!({"name": "blue", "kind": "vlan", "subnet": "10.1.0.0/24"}),
            "blue",
        ),
    ] {
        let r = create_net(&c, body).await;
        assert_problem(&r, 409);
        assert!(
            r.body["detail"].as_str().unwrap().contains(holder),
            "{:?}",
            r.body
        );
    }
    assert_eq!(networks(&c).await, before);

    let list = networks(&c).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["blue", "green", "ov100", "red", "v100", "v101", "v102"]
    );
    let r = c.call("GET", "/api/v1/networks/red", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["vni"], 10001);
    assert_problem(&c.call("GET", "/api/v1/networks/nope", None).await, 404);

    // Deleting frees the name and the VNI.
    let r = c.call("DELETE", "/api/v1/networks/blue", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_problem(&c.call("GET", "/api/v1/networks/blue", None).await, 404);
    assert_problem(&c.call("DELETE", "/api/v1/networks/blue", None).await, 404);
    let r = create_net(
        &c,
        json!({"name": "blue2", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    )
    .await;
    assert_eq!(
        r.body["vni"], 10000,
        "the freed VNI is the lowest free again"
    );
    let events = c.call("GET", "/api/v1/events", None).await;
    assert!(events
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "network" && e["object"] == "blue"));
    c.shutdown().await;
}

#[tokio::test]
async fn bad_network_definitions_are_400_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let ok = json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b.to_string()
    };
    let mut bodies: Vec<(String, &str)> = vec![
        (with("name", json!("Bad_Name")), "name"),
        (with("name", json!("../x")), "name"),
        (with("name", json!("")), "name"),
        (with("kind", json!("bridge")), "bridge"),
        (with("subnet", json!("garbage")), "subnet"),
        (with("subnet", json!("10.80.1.0")), "subnet"),
        (with("subnet", json!("10.80.1.0/24/1")), "subnet"),
        (with("subnet", json!("0.0.0.0/0")), "prefix"),
        (with("subnet", json!("10.80.1.0/31")), "prefix"),
        (with("subnet", json!("10.80.1.1/32")), "prefix"),
        (with("subnet", json!("10.0.0.0/7")), "prefix"),
        (with("subnet", json!("10.80.1.7/24")), "10.80.1.0/24"),
        (with("vni", json!(0)), "vni"),
        (with("vni", json!(1 << 24)), "vni"),
        (with("vni", json!(-1)), "-1"),
        (with("vlan_id", json!(5)), "vlan_id"),
        (with("gateway", json!("10.80.2.1")), "gateway"),
        (with("gateway", json!("10.80.1.0")), "gateway"),
        (with("gateway", json!("10.80.1.255")), "gateway"),
        (with("gateway", json!("nope")), "nope"),
        (with("mtu", json!(9001)), "largest overlay MTU, 9000"),
        (with("mtu", json!(65_000)), "VXLAN"),
        (with("mtu", json!(100)), "mtu"),
        (with("bogus", json!(1)), "bogus"),
        ("{\"name\": \"blue\", \"kind\": ".into(), "JSON"),
        ("[]".into(), "JSON"),
        (
            json!({"name": "blue", "kind": "overlay"}).to_string(),
            "subnet",
        ),
    ];
    let vlan = json!({"name": "v", "kind": "vlan", "subnet": "10.80.1.0/24"});
    for (k, v, what) in [
        ("vlan_id", json!(0), "vlan_id"),
        ("vlan_id", json!(4095), "vlan_id"),
        ("vlan_id", json!(4096), "vlan_id"),
        ("vni", json!(5000), "vni"),
        ("mtu", json!(1501), "trunk"),
    ] {
        let mut b = vlan.clone();
        b[k] = v;
        bodies.push((b.to_string(), what));
    }
    for (body, what) in &bodies {
        let r = c.call("POST", "/api/v1/networks", Some(body)).await;
        assert_problem(&r, 400);
        assert!(
            r.body["detail"].as_str().unwrap().contains(what),
            "{body}: {:?}",
            r.body
        );
        assert!(!r.body["detail"].as_str().unwrap().contains('\n'));
    }
    assert_problem(&c.call("POST", "/api/v1/networks", None).await, 400);
    assert_problem(&c.call("GET", "/api/v1/networks/Bad_Name", None).await, 400);
    assert_eq!(networks(&c).await, json!([]));
    // The good definition still goes in afterwards: nothing was half-claimed.
    let r = create_net(&c, ok).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["vni"], 10000);
    c.shutdown().await;
}

#[tokio::test]
async fn vm_nics_get_unique_addresses_and_macs_and_give_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = create_net(
        &c,
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/29", "gateway": "10.80.1.1"}),
    )
    .await;
    assert_eq!(r.status, 201);
    // The same range on another network (tenants reuse ranges).
    let r = create_net(
        &c,
        json!({"name": "red", "kind": "overlay", "subnet": "10.80.1.0/29"}),
    )
    .await;
    assert_eq!(r.status, 201);

    // Automatic: the lowest free address (the gateway is reserved), a 02:76:66 MAC.
    let a = create_vm(&c, "a", json!([{"network": "blue"}, {"network": "red"}])).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let (a_ip0, a_mac0) = nic(&a, 0);
    let (a_ip1, a_mac1) = nic(&a, 1);
    assert_eq!(a_ip0, "10.80.1.2");
    assert_eq!(
        a_ip1, "10.80.1.1",
        "red has no gateway; same range, own addresses"
    );
    assert!(a_mac0.starts_with("02:76:66:") && a_mac1.starts_with("02:76:66:"));
    assert_ne!(a_mac0, a_mac1);
    // The kernel command line is the operator's: the console adds nothing to it (guests get
    // their address from the switch's DHCP responder).
    assert_eq!(a.body["spec"]["boot"]["cmdline"], "console=ttyS0");
    // The agent got the final addresses.
    {
        let st = agent.state.lock().unwrap();
        let (inst, _) = st.vms.values().find(|(v, _)| v.spec.name == "a").unwrap();
        assert_eq!(inst.spec.nics[0].ip.as_deref(), Some("10.80.1.2"));
        assert_eq!(inst.spec.nics[0].mac.as_deref(), Some(a_mac0.as_str()));
    }

    // Explicit address and MAC (upper case is normalised); the command line stays as given.
    let mut body: Value = serde_json::from_str(&vm_with_nics(
        "b",
        json!([{"network": "blue", "ip": "10.80.1.5", "mac": "02:AA:00:00:00:01"}]),
    ))
    .unwrap();
    body["boot"]["cmdline"] = json!("console=ttyS0 vinfra.ip=10.80.1.5/24");
    let b = c.call("POST", "/api/v1/vms", Some(&body.to_string())).await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    assert_eq!(nic(&b, 0), ("10.80.1.5".into(), "02:aa:00:00:00:01".into()));
    assert_eq!(
        b.body["spec"]["boot"]["cmdline"],
        "console=ttyS0 vinfra.ip=10.80.1.5/24"
    );
    let c3 = create_vm(&c, "c", json!([{"network": "blue"}])).await;
    assert_eq!(nic(&c3, 0).0, "10.80.1.3");

    // `vinfra net show`: where each port lives.
    let r = c.call("GET", "/api/v1/networks/blue", None).await;
    let ports = r.body["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 3);
    assert_eq!(
        ports[0],
        json!({"vm": "a", "nic": 0, "host": "h1", "mac": a_mac0, "ip": "10.80.1.2"})
    );
    assert_eq!(ports[1]["vm"], "b");
    let red = c.call("GET", "/api/v1/networks/red", None).await;
    assert_eq!(red.body["ports"][0]["ip"], "10.80.1.1");
    assert_eq!(red.body["ports"][0]["nic"], 1);

    // Refusals leave nothing behind: no VM, no address, no MAC.
    let before = networks(&c).await;
    let vms_before = agent.vm_count();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!([{"network": "blue", "ip": "10.80.1.5"}]), 409, "'b'"),
        (json!([{"network": "blue", "mac": a_mac1}]), 409, "'a'"),
        (
            json!([{"network": "blue", "ip": "10.80.1.4", "mac": "02:aa:00:00:00:01"}]),
            409,
            "MAC",
        ),
        (
            json!([{"network": "blue", "ip": "10.80.1.4"}, {"network": "red", "ip": "10.80.1.4"}, {"network": "blue", "ip": "10.80.1.4"}]),
            409,
            "two NICs",
        ),
        (
            json!([{"network": "blue"}, {"network": "blue", "mac": "02:aa:00:00:00:02"}, {"network": "red", "mac": "02:aa:00:00:00:02"}]),
            409,
            "two NICs",
        ),
        (
            json!([{"network": "blue", "ip": "10.80.2.4"}]),
            400,
            "outside",
        ),
        (
            json!([{"network": "blue", "ip": "10.80.1.0"}]),
            400,
            "broadcast",
        ),
        (
            json!([{"network": "blue", "ip": "10.80.1.7"}]),
            400,
            "broadcast",
        ),
        (
            json!([{"network": "blue", "ip": "10.80.1.1"}]),
            400,
            "gateway",
        ),
        (json!([{"network": "blue", "ip": "10.80.1"}]), 400, "IPv4"),
        (
            json!([{"network": "blue", "mac": "01:00:5e:00:00:01"}]),
            400,
            "multicast",
        ),
        (
            json!([{"network": "blue", "mac": "02:00:00:00:00"}]),
            400,
            "MAC",
        ),
        (
            json!([{"network": "blue", "mac": "00:00:00:00:00:00"}]),
            400,
            "00:00:00:00:00:00",
        ),
        // The switch's DHCP server replies from this MAC.
        (
            json!([{"network": "blue", "mac": "02:76:69:6E:00:67"}]),
            400,
            "DHCP server",
        ),
        (json!([{"network": "nope"}]), 404, "nope"),
        (
            json!([{"network": "blue"}, {"network": "nope"}]),
            404,
            "nope",
        ),
        (json!([{"network": "blue", "vlan": 3}]), 400, "NicVlan"),
    ];
    for (nics, status, what) in cases {
        let r = create_vm(&c, "x", nics.clone()).await;
        assert_problem(&r, status);
        assert!(
            r.body["detail"].as_str().unwrap().contains(what),
            "{nics}: {:?}",
            r.body
        );
        assert_problem(&c.call("GET", "/api/v1/vms/x", None).await, 404);
    }
    assert_eq!(networks(&c).await, before, "address management unchanged");
    assert_eq!(agent.vm_count(), vms_before);

    // The agent refusing the VM rolls the addresses back too.
    agent.state.lock().unwrap().behaviour.fail_create = true;
    let r = create_vm(&c, "x", json!([{"network": "blue"}])).await;
    assert_problem(&r, 502);
    assert_eq!(networks(&c).await, before);
    agent.state.lock().unwrap().behaviour.fail_create = false;

    // Fill blue (usable .2-.6, .1 is the gateway): a, b, c hold .2, .5, .3.
    let d = create_vm(&c, "d", json!([{"network": "blue"}])).await;
    assert_eq!(nic(&d, 0).0, "10.80.1.4");
    let e = create_vm(&c, "e", json!([{"network": "blue"}])).await;
    assert_eq!(nic(&e, 0).0, "10.80.1.6");
    let r = create_vm(&c, "f", json!([{"network": "blue"}])).await;
    assert_problem(&r, 409);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("no free address"));

    // Deleting a network in use is refused, naming the VMs.
    let r = c.call("DELETE", "/api/v1/networks/red", None).await;
    assert_problem(&r, 409);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("'red' is in use by VM a"));

    // Deleting a VM gives its addresses and MACs back.
    assert_eq!(
        c.call("DELETE", "/api/v1/vms/a?force=true", None)
            .await
            .status,
        204
    );
    let f = create_vm(
        &c,
        "f",
        json!([{"network": "blue"}, {"network": "red", "mac": a_mac1}]),
    )
    .await;
    assert_eq!(f.status, 201, "{:?}", f.body);
    assert_eq!(nic(&f, 0).0, "10.80.1.2", "a's address is free again");
    assert_eq!(nic(&f, 1), ("10.80.1.1".into(), a_mac1.clone()));
    assert_eq!(
        c.call("DELETE", "/api/v1/vms/f?force=true", None)
            .await
            .status,
        204
    );
    let r = c.call("DELETE", "/api/v1/networks/red", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    c.shutdown().await;
}

#[tokio::test]
async fn a_restarted_console_keeps_networks_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let trunked = FakeState {
        trunk: Some("trunk0".into()),
        ..FakeState::default()
    };
    let mut agent = FakeAgent::join_and_connect_with(&c, "h1", HOST16, trunked).await;
    assert_eq!(
        create_net(
            &c,
            json!({"name": "blue", "kind": "vlan", "vlan_id": 42, "subnet": "10.80.1.0/24"})
        )
        .await
        .status,
        201
    );
    let a = create_vm(&c, "a", json!([{"network": "blue"}])).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let (ip, mac) = nic(&a, 0);
    let before = networks(&c).await;
    let token = c.token.clone();
    agent.disconnect();
    c.shutdown().await;

    let c = start_console(dir.path(), Some(token), true).await;
    agent.connect(c.running.agent_addr).await;
    c.wait_host_status("h1", "connected").await;
    assert_eq!(networks(&c).await, before);
    // The address, the MAC and the VLAN ID are still taken.
    let r = create_vm(&c, "b", json!([{"network": "blue", "ip": ip}])).await;
    assert_problem(&r, 409);
    let r = create_vm(&c, "b", json!([{"network": "blue", "mac": mac}])).await;
    assert_problem(&r, 409);
    let r = create_net(
        &c,
        json!({"name": "red", "kind": "vlan", "vlan_id": 42, "subnet": "10.80.1.0/24"}),
    )
    .await;
    assert_problem(&r, 409);
    let b = create_vm(&c, "b", json!([{"network": "blue"}])).await;
    assert_eq!(nic(&b, 0).0, "10.80.1.2");
    assert_problem(&c.call("DELETE", "/api/v1/networks/blue", None).await, 409);
    c.shutdown().await;
}

fn mac_entry(cfg: &vinfra_proto::HostSwitchConfig, mac: &str) -> Option<String> {
    cfg.macs
        .iter()
        .find(|m| m.network == "blue" && m.mac == mac)
        .map(|m| m.host_ip.to_string())
}

#[tokio::test]
async fn a_host_without_ports_accepts_the_underlay_of_every_other_host_as_hosts_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let peers = |cfg: &vinfra_proto::HostSwitchConfig| {
        cfg.underlay_peers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let cfg = wait_config(&h1, "no peer", |cfg| cfg.underlay_peers.is_empty()).await;
    assert!(cfg.networks.is_empty(), "{cfg:?}");
    let h2 = FakeAgent::join_and_connect_at(&c, "h2", HOST16, "10.77.0.12").await;
    wait_config(&h1, "h2 as a peer", |cfg| peers(cfg) == ["10.77.0.12"]).await;
    wait_config(&h2, "h1 as a peer", |cfg| peers(cfg) == ["10.77.0.11"]).await;
    let _h3 = FakeAgent::join_and_connect_at(&c, "h3", HOST16, "10.77.0.9").await;
    wait_config(&h1, "h2 and h3 as peers, sorted", |cfg| {
        peers(cfg) == ["10.77.0.9", "10.77.0.12"]
    })
    .await;
    wait_config(&h2, "h1 and h3 as peers, sorted", |cfg| {
        peers(cfg) == ["10.77.0.9", "10.77.0.11"]
    })
    .await;
    c.shutdown().await;
}

/// A push of the configuration a host's agent already applied on its connection sends nothing
/// (the resync of every host every 30 s costs no message); a change, or a new connection (its
/// agent may have restarted), sends it.
#[tokio::test]
async fn an_unchanged_switch_configuration_goes_once_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    wait_config(&h1, "a first configuration", |_| true).await;
    let console = c.running.console.clone();
    let pushes = |h: &FakeAgent| h.state.lock().unwrap().switch_pushes;
    push(&console, "h1").await.unwrap();
    let sent = pushes(&h1);
    for _ in 0..3 {
        push(&console, "h1").await.unwrap();
    }
    assert_eq!(
        pushes(&h1),
        sent,
        "an unchanged configuration was sent again"
    );
    // A change: h2 joins, h1's uplink accepts its address.
    let _h2 = FakeAgent::join_and_connect_at(&c, "h2", HOST16, "10.77.0.12").await;
    wait_config(&h1, "h2 as a peer", |cfg| cfg.underlay_peers.len() == 1).await;
    push(&console, "h1").await.unwrap();
    let sent = pushes(&h1);
    assert!(sent > 1, "{sent}");
    // The same configuration on a new connection goes again.
    h1.disconnect();
    c.wait_host_status("h1", "disconnected").await;
    h1.connect(c.running.agent_addr).await;
    c.wait_host_status("h1", "connected").await;
    push(&console, "h1").await.unwrap();
    assert!(
        pushes(&h1) > sent,
        "a new connection did not get its configuration"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn switch_configurations_follow_vms_networks_and_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let h2 = FakeAgent::join_and_connect_at(&c, "h2", HOST16, "10.77.0.12").await;
    // A host gets its (empty) configuration when it connects.
    let first = wait_config(&h1, "a first configuration", |_| true).await;
    assert!(first.networks.is_empty(), "{first:?}");
    wait_config(&h2, "a first configuration", |_| true).await;

    assert_eq!(
        create_net(
            &c,
            json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"})
        )
        .await
        .status,
        201
    );
    // b on h2 first: h2's switch has blue before the VM is created (the fake agent refuses
    // NICs on networks its switch lacks, like the real one).
    let b = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(
                &vm_with_nics("b", json!([{"network": "blue"}]))
                    .replace("\"name\":\"b\"", "\"name\":\"b\",\"host\":\"h2\""),
            ),
        )
        .await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    let (_, b_mac) = nic(&b, 0);
    let a = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(
                &vm_with_nics("a", json!([{"network": "blue"}]))
                    .replace("\"name\":\"a\"", "\"name\":\"a\",\"host\":\"h1\""),
            ),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let (_, a_mac) = nic(&a, 0);

    // h2 learns where a lives, and floods blue to h1; h1 learns where b lives.
    let cfg = wait_config(&h2, "a's MAC on h1", |cfg| {
        mac_entry(cfg, &a_mac).as_deref() == Some("10.77.0.11")
    })
    .await;
    let blue = cfg.networks.iter().find(|n| n.name == "blue").unwrap();
    assert_eq!(
        blue.flood,
        vec!["10.77.0.11".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    wait_config(&h1, "b's MAC on h2", |cfg| {
        mac_entry(cfg, &b_mac).as_deref() == Some("10.77.0.12")
    })
    .await;

    // A third host with no VM gets blue only while a migration brings one there, and the MAC
    // entries follow the VM to it.
    let h3 = FakeAgent::join_and_connect_at(&c, "h3", HOST16, "10.77.0.13").await;
    wait_config(&h3, "no networks", |cfg| cfg.networks.is_empty()).await;
    let r = c
        .call("POST", "/api/v1/vms/b/migrate", Some(r#"{"to":"h3"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_migration(&c, "b").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    assert!(h3
        .state
        .lock()
        .unwrap()
        .commands
        .contains(&"PrepareIncoming".to_string()));
    // The source was told where to send b's frames from the switchover on: h3's underlay.
    assert_eq!(
        h2.state.lock().unwrap().redirects,
        vec![Some("10.77.0.13".parse().unwrap())]
    );
    wait_config(&h1, "b's MAC on h3", |cfg| {
        mac_entry(cfg, &b_mac).as_deref() == Some("10.77.0.13")
    })
    .await;
    wait_config(&h3, "a's MAC on h1", |cfg| {
        mac_entry(cfg, &a_mac).as_deref() == Some("10.77.0.11")
    })
    .await;
    // h2 has no VM on blue any more: the network is gone from its switch.
    wait_config(&h2, "no networks", |cfg| cfg.networks.is_empty()).await;

    // Deleting a VM takes its entries away everywhere.
    assert_eq!(
        c.call("DELETE", "/api/v1/vms/b?force=true", None)
            .await
            .status,
        204
    );
    wait_config(&h1, "no entry for b", |cfg| {
        mac_entry(cfg, &b_mac).is_none()
    })
    .await;
    wait_config(&h3, "no networks", |cfg| cfg.networks.is_empty()).await;
    c.shutdown().await;
}

fn on_host(name: &str, host: &str, nics: Value) -> String {
    vm_with_nics(name, nics).replace(
        &format!("\"name\":\"{name}\""),
        &format!("\"name\":\"{name}\",\"host\":\"{host}\""),
    )
}

fn port<'a>(body: &'a Value, vm: &str, nic: u64) -> &'a Value {
    body["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vm"] == vm && p["nic"] == nic)
        .unwrap_or_else(|| panic!("no port {vm}/{nic} in {body:?}"))
}

fn host_entry<'a>(body: &'a Value, host: &str) -> &'a Value {
    body["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("no host {host} in {body:?}"))
}

#[tokio::test]
async fn network_and_host_switch_counters_come_from_the_agents() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let mut h2 = FakeAgent::join_and_connect_at(&c, "h2", HOST16, "10.77.0.12").await;
    for body in [
        json!({"name": "ctr-blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
        json!({"name": "ctr-red", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    ] {
        assert_eq!(create_net(&c, body).await.status, 201);
    }
    // a: two NICs on blue (h1); b: blue and red (h2); s: blue, stopped (h2: no port).
    for (vm, host, nics) in [
        (
            "a",
            "h1",
            json!([{"network": "ctr-blue"}, {"network": "ctr-blue"}]),
        ),
        (
            "b",
            "h2",
            json!([{"network": "ctr-blue"}, {"network": "ctr-red"}]),
        ),
        ("s", "h2", json!([{"network": "ctr-blue"}])),
    ] {
        let r = c
            .call("POST", "/api/v1/vms", Some(&on_host(vm, host, nics)))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = c
        .call("POST", "/api/v1/vms/s/stop", Some(r#"{"force":true}"#))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let r = c
        .call("GET", "/api/v1/networks/ctr-blue/counters", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = &r.body;
    assert_eq!(body["network"], "ctr-blue");
    assert_eq!(body["ports"].as_array().unwrap().len(), 4, "{body:?}");
    let a0 = port(body, "a", 0);
    assert_eq!(a0["host"], "h1");
    assert!(a0["mac"].as_str().is_some_and(|m| m.len() == 17));
    assert!(a0["ip"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.80.1.")));
    assert_eq!(
        a0["counters"],
        serde_json::to_value(fake_port_traffic(0)).unwrap()
    );
    assert!(a0.get("error").is_none(), "{a0:?}");
    let a1 = port(body, "a", 1);
    assert_eq!(a1["counters"]["rx_packets"], 11);
    assert_eq!(a1["counters"]["tx_bytes"], 2100);
    assert_eq!(a1["counters"]["drops"]["runt"], 1);
    assert_eq!(port(body, "b", 0)["counters"]["tx_packets"], 20);
    // The stopped VM has no port on its host's switch.
    let s0 = port(body, "s", 0);
    assert!(s0["counters"].is_null(), "{s0:?}");
    assert!(
        s0["error"].as_str().is_some_and(|e| e.contains("h2")),
        "{s0:?}"
    );
    // Per host: the network's counters on each switch (b's red NIC is not in blue's).
    assert_eq!(body["hosts"].as_array().unwrap().len(), 2, "{body:?}");
    let h1e = host_entry(body, "h1");
    let h1 = &h1e["counters"];
    assert_eq!(h1["rx_packets"], 21);
    assert_eq!(h1["tx_packets"], 41);
    assert_eq!(h1["drops"]["runt"], 1);
    // The switch's own counters of the network come through (two ports on h1).
    assert_eq!(
        (
            &h1e["arp_suppressed"],
            &h1e["flooded"],
            &h1e["learning_refused"]
        ),
        (&json!(6), &json!(10), &json!(2)),
        "{h1e:?}"
    );
    let h2e = host_entry(body, "h2");
    let h2c = &h2e["counters"];
    assert_eq!(h2c["rx_packets"], 10);
    assert_eq!(h2c["tx_bytes"], 2000);
    assert_eq!(
        (&h2e["arp_suppressed"], &h2e["flooded"]),
        (&json!(3), &json!(5))
    );
    // The cluster-wide total: the sum over the hosts.
    let total = &body["total"];
    assert_eq!(total["rx_packets"], 21 + 10, "{total:?}");
    assert_eq!(total["tx_bytes"], 4100 + 2000);
    assert_eq!(total["drops"]["runt"], 1);
    assert_eq!(
        (
            &total["arp_suppressed"],
            &total["flooded"],
            &total["learning_refused"]
        ),
        (&json!(9), &json!(15), &json!(3))
    );
    assert_eq!(
        (&total["hosts_counted"], &total["hosts_missing"]),
        (&json!(2), &json!(0))
    );

    // The raw counters of one host, uplink included.
    let r = c.call("GET", "/api/v1/hosts/h2/switch", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ports"].as_array().unwrap().len(), 2, "{:?}", r.body);
    assert_eq!(r.body["uplink"]["rx_packets"], 10 + 11);
    let red = r.body["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["network"] == "ctr-red")
        .unwrap();
    assert_eq!(red["rx_packets"], 11);
    assert_eq!(
        (
            &red["arp_suppressed"],
            &red["flooded"],
            &red["learning_refused"]
        ),
        (&json!(3), &json!(5), &json!(1))
    );

    // One VM's NIC ports on its host, by NIC index.
    let r = c.call("GET", "/api/v1/vms/a/counters", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.body["vm"], &r.body["host"]),
        (&json!("a"), &json!("h1"))
    );
    let a_nics = r.body["nics"].as_array().unwrap();
    assert_eq!(a_nics.len(), 2, "{:?}", r.body);
    assert_eq!(a_nics[1]["nic"], 1);
    assert_eq!(a_nics[1]["network"], "ctr-blue");
    assert_eq!(a_nics[1]["counters"]["drops"]["runt"], 1);
    assert!(a_nics[0].get("error").is_none(), "{:?}", a_nics[0]);
    let r = c.call("GET", "/api/v1/vms/s/counters", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["nics"][0]["counters"].is_null(), "{:?}", r.body);
    assert!(
        r.body["nics"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not run")),
        "{:?}",
        r.body
    );
    assert_problem(
        &c.call("GET", "/api/v1/vms/nobody/counters", None).await,
        404,
    );
    assert_problem(
        &c.call("GET", "/api/v1/networks/ctr-none/counters", None)
            .await,
        404,
    );
    assert_problem(&c.call("GET", "/api/v1/hosts/h9/switch", None).await, 404);

    // A disconnected host: its ports and itself show without counters; the call still works.
    h2.disconnect();
    c.wait_host_status("h2", "disconnected").await;
    let r = c
        .call("GET", "/api/v1/networks/ctr-blue/counters", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let b0 = port(&r.body, "b", 0);
    assert!(b0["counters"].is_null(), "{b0:?}");
    assert!(
        b0["error"]
            .as_str()
            .is_some_and(|e| e.contains("not connected")),
        "{b0:?}"
    );
    let h2e = host_entry(&r.body, "h2");
    assert!(
        h2e["counters"].is_null() && h2e["error"].is_string(),
        "{h2e:?}"
    );
    assert!(h2e.get("arp_suppressed").is_none(), "{h2e:?}");
    assert_eq!(port(&r.body, "a", 1)["counters"]["rx_packets"], 11);
    // The total leaves the silent host out, and says so.
    let total = &r.body["total"];
    assert_eq!(
        (&total["rx_packets"], &total["flooded"]),
        (&json!(21), &json!(10))
    );
    assert_eq!(
        (&total["hosts_counted"], &total["hosts_missing"]),
        (&json!(1), &json!(1))
    );
    assert_problem(&c.call("GET", "/api/v1/hosts/h2/switch", None).await, 503);
    c.shutdown().await;
}

#[tokio::test]
async fn nic_qos_is_checked_set_live_and_follows_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let h2 = FakeAgent::join_and_connect_at(&c, "h2", HOST16, "10.77.0.12").await;
    wait_config(&h1, "a first configuration", |_| true).await;
    wait_config(&h2, "a first configuration", |_| true).await;
    let blue = json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"});
    assert_eq!(create_net(&c, blue).await.status, 201);

    // Out of bounds at create: refused, nothing written.
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&on_host(
                "q",
                "h1",
                json!([{"network": "blue", "qos": {"egress": {"bits_per_sec": 10}}}]),
            )),
        )
        .await;
    assert_problem(&r, 400);
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nic 0: qos: egress rate 10 bit/s is out of range")),
        "{:?}",
        r.body
    );
    assert_eq!(c.call("GET", "/api/v1/vms", None).await.body, json!([]));

    let qos = json!({"egress": {"bits_per_sec": 100000000}, "ingress": {"bits_per_sec": 100000000, "burst_bytes": 1048576}, "priority": "high"});
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&on_host(
                "q",
                "h1",
                json!([{"network": "blue", "qos": qos}]),
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["spec"]["nics"][0]["qos"], qos);
    let (_, mac) = nic(&r, 0);
    let cfg = wait_config(&h1, "q's QoS", |cfg| cfg.qos.len() == 1).await;
    assert_eq!(
        (cfg.qos[0].network.as_str(), cfg.qos[0].mac.as_str()),
        ("blue", mac.as_str())
    );
    assert_eq!(
        cfg.qos[0].qos.priority,
        vinfra_types::qos::NicPriority::High
    );
    assert!(h2.switch_config().is_some_and(|c| c.qos.is_empty()));

    // Live: the host has the new QoS when the PATCH answers.
    let r = c
        .call(
            "PATCH",
            "/api/v1/vms/q/nics/0",
            Some(r#"{"qos":{"egress":{"bits_per_sec":8000000},"priority":"low","dscp":46}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let cfg = h1.switch_config().unwrap();
    assert_eq!(cfg.qos.len(), 1, "{cfg:?}");
    let q = &cfg.qos[0].qos;
    assert_eq!(
        (
            q.egress.map(|r| r.bits_per_sec),
            q.ingress,
            q.priority,
            q.dscp
        ),
        (
            Some(8_000_000),
            None,
            vinfra_types::qos::NicPriority::Low,
            Some(46)
        )
    );
    let events = c.call("GET", "/api/v1/events", None).await;
    assert!(
        events
            .body
            .to_string()
            .contains("nic 0: qos egress 8M burst 16K (default), priority low"),
        "{:?}",
        events.body
    );

    // Bad QoS is refused and changes nothing.
    for (body, detail) in [
        (
            json!({"qos": {"weight": 0}}),
            "nic 0: qos: weight 0 is out of range (1 to 100)",
        ),
        (
            json!({"qos": {"dscp": 64}}),
            "nic 0: qos: dscp 64 is out of range (0 to 63)",
        ),
        (
            json!({"qos": {"ingress": {"bits_per_sec": 8000000, "burst_bytes": 100}}}),
            "ingress burst 100 bytes is out of range",
        ),
        (json!({"qos": {"rate": 5}}), "unknown field"),
    ] {
        let r = c
            .call("PATCH", "/api/v1/vms/q/nics/0", Some(&body.to_string()))
            .await;
        assert_problem(&r, 400);
        let d = r.body["detail"].as_str().unwrap_or_default();
        assert!(d.contains(detail), "{d:?} lacks {detail:?}");
    }
    let r = c.call("GET", "/api/v1/vms/q", None).await;
    assert_eq!(r.body["spec"]["nics"][0]["qos"]["priority"], "low");

    // A migration's destination has it; afterwards the source does not.
    let r = c
        .call("POST", "/api/v1/vms/q/migrate", Some(r#"{"to":"h2"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_migration(&c, "q").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    let cfg = wait_config(&h2, "q's QoS", |cfg| cfg.qos.len() == 1).await;
    assert_eq!(cfg.qos[0].qos.dscp, Some(46));
    wait_config(&h1, "no QoS", |cfg| cfg.qos.is_empty()).await;

    // null removes it.
    let r = c
        .call("PATCH", "/api/v1/vms/q/nics/0", Some(r#"{"qos":null}"#))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body["spec"]["nics"][0].get("qos").is_none(),
        "{:?}",
        r.body
    );
    assert!(h2.switch_config().is_some_and(|c| c.qos.is_empty()));
    c.shutdown().await;
}

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
