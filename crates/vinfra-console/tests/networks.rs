//! Logical networks end to end: the REST API over a real console and store (networks created,
//! listed, shown, deleted, refused, kept across a restart), VM NICs through fake agents over real
//! mutual TLS (their addresses and MACs given and taken back).

mod common;

use common::network::{create_net, create_vm, nic, vm_with_nics};
use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

async fn networks(c: &TestConsole) -> Value {
    let r = c.call("GET", "/api/v1/networks", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
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
