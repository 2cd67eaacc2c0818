//! The north-south edge's control plane end to end (docs/design.md, "North-south: where NAT
//! runs"): router uplinks and floating IPs through the REST API over a real console and store,
//! every refusal, the addresses they reserve, the edge election and its move when the edge
//! host is lost, and what the fake agents receive in their switch configurations.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

async fn post(c: &TestConsole, path: &str, body: Value) -> Resp {
    c.call("POST", path, Some(&body.to_string())).await
}

async fn put(c: &TestConsole, path: &str, body: Value) -> Resp {
    c.call("PUT", path, Some(&body.to_string())).await
}

async fn get(c: &TestConsole, path: &str) -> Value {
    let r = c.call("GET", path, None).await;
    assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
    r.body
}

async fn delete(c: &TestConsole, path: &str) -> Resp {
    c.call("DELETE", path, None).await
}

/// A network `{name, kind, subnet, gateway?}`; created or the test fails.
async fn net(c: &TestConsole, name: &str, kind: &str, subnet: &str, gateway: Option<&str>) {
    let mut body = json!({"name": name, "kind": kind, "subnet": subnet});
    if let Some(g) = gateway {
        body["gateway"] = json!(g);
    }
    let r = post(c, "/api/v1/networks", body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

async fn router(c: &TestConsole, name: &str) {
    let r = post(c, "/api/v1/routers", json!({"name": name})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

async fn attach(c: &TestConsole, router: &str, network: &str) -> Resp {
    post(
        c,
        &format!("/api/v1/routers/{router}/interfaces"),
        json!({"network": network}),
    )
    .await
}

async fn uplink(c: &TestConsole, router: &str, network: &str, ip: &str) -> Resp {
    put(
        c,
        &format!("/api/v1/routers/{router}/uplink"),
        json!({"network": network, "ip": ip}),
    )
    .await
}

async fn fip(c: &TestConsole, vm: &str, ip: &str, nic: Option<usize>) -> Resp {
    let mut body = json!({ "ip": ip });
    if let Some(n) = nic {
        body["nic"] = json!(n);
    }
    post(c, &format!("/api/v1/vms/{vm}/floating-ips"), body).await
}

/// A VM with NICs (`[{network, ip?}]`), created stopped, on `host` when given.
async fn create_vm(c: &TestConsole, name: &str, host: Option<&str>, nics: Value) -> Resp {
    let mut v: Value = serde_json::from_str(&vm_json(name, 1, 128)).unwrap();
    v["nics"] = nics;
    v["start"] = json!(false);
    if let Some(h) = host {
        v["host"] = json!(h);
    }
    c.call("POST", "/api/v1/vms", Some(&v.to_string())).await
}

/// A problem of `status` and `kind` whose detail contains `detail`.
fn assert_refused(r: &Resp, status: u16, kind: &str, detail: &str) {
    assert_problem(r, status);
    assert_eq!(r.body["type"], format!("/problems/{kind}"), "{:?}", r.body);
    let d = r.body["detail"].as_str().unwrap();
    assert!(d.contains(detail), "detail {d:?} lacks {detail:?}");
}

/// A host with a VLAN trunk at `address`.
async fn trunk_host(c: &TestConsole, name: &str, address: &str) -> FakeAgent {
    let state = FakeState {
        address: Some(address.into()),
        trunk: Some("eth1".into()),
        ..FakeState::default()
    };
    FakeAgent::join_and_connect_with(c, name, HOST16, state).await
}

/// The messages of the events of `kind` about `object`.
async fn told(c: &TestConsole, kind: &str, object: &str) -> Vec<String> {
    get(c, "/api/v1/events")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind && e["object"] == object)
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// The router `name` of a switch configuration.
fn switch_router<'a>(
    cfg: &'a vinfra_proto::HostSwitchConfig,
    name: &str,
) -> Option<&'a vinfra_proto::SwitchRouter> {
    cfg.routers.iter().find(|r| r.name == name)
}

#[tokio::test]
async fn an_uplink_is_set_checked_reserved_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = trunk_host(&c, "h1", "10.77.0.11").await;
    let _h2 = trunk_host(&c, "h2", "10.77.0.12").await;
    net(&c, "external", "vlan", "10.82.0.0/24", Some("10.82.0.254")).await;
    net(&c, "blue", "overlay", "10.80.1.0/24", None).await;
    net(&c, "near", "overlay", "10.82.0.0/25", None).await;
    net(&c, "dmz", "vlan", "10.84.0.0/24", None).await;
    router(&c, "r1").await;
    router(&c, "r2").await;
    assert_eq!(attach(&c, "r1", "blue").await.status, 201);
    assert_eq!(attach(&c, "r1", "dmz").await.status, 201);
    // A VM straight on the external network holds its first address.
    let e = create_vm(&c, "e", None, json!([{"network": "external"}])).await;
    assert_eq!(e.body["spec"]["nics"][0]["ip"], "10.82.0.1", "{:?}", e.body);

    for (r, status, kind, detail) in [
        (
            uplink(&c, "nope", "external", "10.82.0.10").await,
            404,
            "not-found",
            "router 'nope' not found",
        ),
        (
            uplink(&c, "r1", "nope", "10.82.0.10").await,
            404,
            "not-found",
            "network 'nope' not found",
        ),
        (
            uplink(&c, "r1", "near", "10.82.0.10").await,
            409,
            "conflict",
            "network 'near' is an overlay network; an uplink needs a VLAN network",
        ),
        (
            uplink(&c, "r2", "dmz", "10.84.0.10").await,
            409,
            "conflict",
            "network 'dmz' is attached to router 'r1'; detach it first",
        ),
        (
            uplink(&c, "r1", "external", "10.82.1.10").await,
            400,
            "invalid-request",
            "10.82.1.10 is not a usable address of network 'external' (10.82.0.0/24)",
        ),
        (
            uplink(&c, "r1", "external", "10.82.0.255").await,
            400,
            "invalid-request",
            "10.82.0.255 is not a usable address",
        ),
        (
            uplink(&c, "r1", "external", "10.82.0.254").await,
            409,
            "conflict",
            "10.82.0.254 on network 'external' is taken by the network's gateway",
        ),
        (
            uplink(&c, "r1", "external", "10.82.0.1").await,
            409,
            "conflict",
            "10.82.0.1 on network 'external' is taken by VM 'e'",
        ),
        (
            uplink(&c, "r1", "external", "10.82.0").await,
            400,
            "invalid-request",
            "ip '10.82.0' is not an IPv4 address",
        ),
        (
            put(
                &c,
                "/api/v1/routers/r1/uplink",
                json!({"network": "external", "ip": "10.82.0.10", "mac": "x"}),
            )
            .await,
            400,
            "invalid-request",
            "invalid JSON body",
        ),
    ] {
        assert_refused(&r, status, kind, detail);
    }
    assert_eq!(get(&c, "/api/v1/routers/r1").await.get("uplink"), None);

    // Set: the MAC and transit VNI from the router's number, an edge and a standby at once.
    let r = uplink(&c, "r1", "external", "10.82.0.10").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let expected = json!({
        "network": "external", "subnet": "10.82.0.0/24", "ip": "10.82.0.10",
        "mac": "02:76:72:01:00:01", "edge": "h1", "standby": "h2",
        "transit_vni": 16_711_681, "floating_ips": []
    });
    assert_eq!(r.body, expected);
    assert_eq!(get(&c, "/api/v1/routers/r1").await["uplink"], expected);
    assert!(told(&c, "router", "r1").await.contains(
        &"uplink set: 10.82.0.10/24 on network external (02:76:72:01:00:01), edge h1, standby h2"
            .to_string()
    ));
    assert_refused(
        &uplink(&c, "r1", "external", "10.82.0.11").await,
        409,
        "conflict",
        "router 'r1' has an uplink already (10.82.0.10 on network 'external'); remove it first",
    );
    // Another router's uplink on the same network: not on r1's address.
    assert_refused(
        &uplink(&c, "r2", "external", "10.82.0.10").await,
        409,
        "conflict",
        "10.82.0.10 on network 'external' is taken by the uplink of router 'r1'",
    );

    // The address is reserved: no NIC may ask for it, none is given it.
    assert_refused(
        &create_vm(
            &c,
            "x",
            None,
            json!([{"network": "external", "ip": "10.82.0.10"}]),
        )
        .await,
        409,
        "conflict",
        "nic 0: 10.82.0.10 on network 'external' is reserved for the uplink of router 'r1'",
    );
    // The external network is not a gateway interface, not deleted, and one router's subnets
    // (its uplink's included) never overlap.
    assert_refused(
        &attach(&c, "r2", "external").await,
        409,
        "conflict",
        "network 'external' is the uplink network of router (r1); remove its uplink first",
    );
    assert_eq!(delete(&c, "/api/v1/vms/e").await.status, 204);
    assert_refused(
        &delete(&c, "/api/v1/networks/external").await,
        409,
        "conflict",
        "network 'external' is the uplink network of router (r1)",
    );
    assert_refused(
        &attach(&c, "r1", "near").await,
        409,
        "conflict",
        "network 'near' (10.82.0.0/25) overlaps network 'external' (10.82.0.0/24) of router 'r1'",
    );
    assert_refused(
        &delete(&c, "/api/v1/routers/r1").await,
        409,
        "conflict",
        "router 'r1' has networks attached (blue, dmz, external (uplink))",
    );

    // The default route's next hop is on the uplink's subnet; not the uplink itself.
    let route = |via: &str| {
        post(
            &c,
            "/api/v1/routers/r1/routes",
            json!({"prefix": "0.0.0.0/0", "via": via}),
        )
    };
    assert_refused(
        &route("10.82.0.10").await,
        409,
        "conflict",
        "next hop 10.82.0.10 is the gateway of router 'r1' on network 'external'",
    );
    assert_eq!(route("10.82.0.254").await.status, 201);
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/uplink").await,
        409,
        "conflict",
        "router 'r1' has route via network 'external' (0.0.0.0/0 via 10.82.0.254)",
    );
    assert_eq!(
        delete(&c, "/api/v1/routers/r1/routes/0.0.0.0/0")
            .await
            .status,
        204
    );

    // Removed: the address is free again.
    assert_eq!(delete(&c, "/api/v1/routers/r1/uplink").await.status, 204);
    assert_eq!(get(&c, "/api/v1/routers/r1").await.get("uplink"), None);
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/uplink").await,
        404,
        "not-found",
        "router 'r1' has no uplink",
    );
    let x = create_vm(
        &c,
        "x",
        None,
        json!([{"network": "external", "ip": "10.82.0.10"}]),
    )
    .await;
    assert_eq!(x.status, 201, "{:?}", x.body);
    assert!(told(&c, "router", "r1")
        .await
        .contains(&"uplink removed (10.82.0.10 on network external)".to_string()));

    // Uplinks survive a console restart.
    assert_eq!(uplink(&c, "r2", "external", "10.82.0.20").await.status, 200);
    let token = c.token.clone();
    c.shutdown().await;
    let c = start_console(dir.path(), Some(token), true).await;
    assert_eq!(
        get(&c, "/api/v1/routers/r2").await["uplink"]["ip"],
        "10.82.0.20"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn floating_ips_are_added_checked_shown_to_the_switches_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = trunk_host(&c, "h1", "10.77.0.11").await;
    let h2 = trunk_host(&c, "h2", "10.77.0.12").await;
    net(&c, "external", "vlan", "10.82.0.0/24", Some("10.82.0.254")).await;
    net(&c, "blue", "overlay", "10.80.1.0/24", None).await;
    net(&c, "lone", "overlay", "10.80.2.0/24", None).await;
    net(&c, "green", "overlay", "10.80.3.0/24", None).await;
    router(&c, "r1").await;
    router(&c, "r2").await;
    assert_eq!(attach(&c, "r1", "blue").await.status, 201);
    assert_eq!(attach(&c, "r2", "green").await.status, 201);
    assert_eq!(
        uplink(&c, "r1", "external", "10.82.0.10").await.body["edge"],
        "h1"
    );
    // a on h2 (blue, r1); n on an unrouted network; g on r2's network (no uplink); e on the
    // external network itself.
    let a = create_vm(&c, "a", Some("h2"), json!([{"network": "blue"}])).await;
    assert_eq!(a.body["spec"]["nics"][0]["ip"], "10.80.1.2", "{:?}", a.body);
    assert_eq!(
        create_vm(&c, "n", None, json!([{"network": "lone"}]))
            .await
            .status,
        201
    );
    assert_eq!(
        create_vm(&c, "g", None, json!([{"network": "green"}]))
            .await
            .status,
        201
    );
    let e = create_vm(&c, "e", None, json!([{"network": "external"}])).await;
    assert_eq!(e.body["spec"]["nics"][0]["ip"], "10.82.0.1");

    for (r, status, kind, detail) in [
        (
            fip(&c, "nope", "10.82.0.20", None).await,
            404,
            "not-found",
            "VM 'nope' not found",
        ),
        (
            fip(&c, "a", "10.82.0.20", Some(3)).await,
            404,
            "not-found",
            "VM 'a' has no nic 3 (it has 1)",
        ),
        (
            fip(&c, "n", "10.82.0.20", None).await,
            409,
            "conflict",
            "network 'lone' of nic 0 of VM 'n' is attached to no router",
        ),
        (
            fip(&c, "g", "10.82.0.20", None).await,
            409,
            "conflict",
            "network 'green' of nic 0 of VM 'g' is attached to router 'r2', which has no uplink",
        ),
        (
            fip(&c, "a", "10.82.1.20", None).await,
            400,
            "invalid-request",
            "10.82.1.20 is not a usable address of network 'external' (10.82.0.0/24)",
        ),
        (
            fip(&c, "a", "10.82.0.10", None).await,
            409,
            "conflict",
            "10.82.0.10 on network 'external' is taken by the uplink of router 'r1'",
        ),
        (
            fip(&c, "a", "10.82.0.254", None).await,
            409,
            "conflict",
            "taken by the network's gateway",
        ),
        (
            fip(&c, "a", "10.82.0.1", None).await,
            409,
            "conflict",
            "10.82.0.1 on network 'external' is taken by VM 'e'",
        ),
        (
            fip(&c, "a", "ten", None).await,
            400,
            "invalid-request",
            "ip 'ten' is not an IPv4 address",
        ),
        (
            post(
                &c,
                "/api/v1/vms/a/floating-ips",
                json!({"ip": "10.82.0.20", "port": 1}),
            )
            .await,
            400,
            "invalid-request",
            "invalid JSON body",
        ),
    ] {
        assert_refused(&r, status, kind, detail);
    }
    assert_eq!(get(&c, "/api/v1/floating-ips").await, json!([]));

    let r = fip(&c, "a", "10.82.0.20", None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let added = json!({"ip": "10.82.0.20", "vm": "a", "nic": 0, "network": "blue",
        "internal": "10.80.1.2", "router": "r1"});
    assert_eq!(r.body, added);
    assert_eq!(
        get(&c, "/api/v1/floating-ips").await,
        json!([added.clone()])
    );
    assert_eq!(
        get(&c, "/api/v1/routers/r1").await["uplink"]["floating_ips"],
        json!([added.clone()])
    );
    assert!(told(&c, "vm", "a").await.contains(
        &"floating IP 10.82.0.20 added: nic 0 (10.80.1.2 on blue), router r1".to_string()
    ));
    // One per NIC; the address is taken for everyone else.
    assert_refused(
        &fip(&c, "a", "10.82.0.21", Some(0)).await,
        409,
        "conflict",
        "nic 0 of VM 'a' has the floating IP 10.82.0.20 already; delete it first",
    );
    assert_refused(
        &create_vm(
            &c,
            "x",
            None,
            json!([{"network": "external", "ip": "10.82.0.20"}]),
        )
        .await,
        409,
        "conflict",
        "nic 0: 10.82.0.20 on network 'external' is reserved for a floating IP of VM 'a' \
         (router 'r1')",
    );
    // What holds on to it is refused.
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/uplink").await,
        409,
        "conflict",
        "router 'r1' has floating IP on its uplink (10.82.0.20 (VM 'a')); delete it first \
         (vinfra vm floating-ip del VM IP)",
    );
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/interfaces/blue").await,
        409,
        "conflict",
        "NICs on network 'blue' have floating IP of router 'r1' (10.82.0.20 (VM 'a')); delete \
         it first",
    );

    // Every host of the router gets its uplink with the floating IP and h1 as the edge: h2
    // (a's host) and h1 (the edge, no VM of its own) with the external network.
    let expected = vinfra_proto::SwitchRouterUplink {
        network: "external".into(),
        ip: "10.82.0.10".parse().unwrap(),
        prefix_len: 24,
        mac: "02:76:72:01:00:01".into(),
        edge_vtep: "10.77.0.11".parse().unwrap(),
        transit_vni: 0xFF_0001,
        floating_ips: vec![vinfra_proto::SwitchFloatingIp {
            external: "10.82.0.20".parse().unwrap(),
            internal: "10.80.1.2".parse().unwrap(),
        }],
    };
    for agent in [&h1, &h2] {
        let cfg = wait_config(agent, "r1's uplink with its floating IP", |cfg| {
            switch_router(cfg, "r1").and_then(|r| r.uplink.as_ref()) == Some(&expected)
        })
        .await;
        let nets: Vec<&str> = cfg.networks.iter().map(|n| n.name.as_str()).collect();
        assert!(
            nets.contains(&"external") && nets.contains(&"blue"),
            "{nets:?}"
        );
    }

    // Deleted: gone from the list, the router and the switches; a second delete is 404.
    assert_eq!(
        delete(&c, "/api/v1/vms/a/floating-ips/10.82.0.20")
            .await
            .status,
        204
    );
    assert_refused(
        &delete(&c, "/api/v1/vms/a/floating-ips/10.82.0.20").await,
        404,
        "not-found",
        "VM 'a' has no floating IP 10.82.0.20",
    );
    assert_refused(
        &delete(&c, "/api/v1/vms/a/floating-ips/10.82.0").await,
        400,
        "invalid-request",
        "ip '10.82.0' is not an IPv4 address",
    );
    assert_eq!(get(&c, "/api/v1/floating-ips").await, json!([]));
    wait_config(&h2, "no floating IP", |cfg| {
        switch_router(cfg, "r1")
            .and_then(|r| r.uplink.as_ref())
            .is_some_and(|u| u.floating_ips.is_empty())
    })
    .await;

    // Deleting the VM releases its floating IPs, and the address is free again.
    assert_eq!(fip(&c, "a", "10.82.0.21", Some(0)).await.status, 201);
    assert_eq!(delete(&c, "/api/v1/vms/a").await.status, 204);
    assert_eq!(get(&c, "/api/v1/floating-ips").await, json!([]));
    assert!(told(&c, "vm", "a")
        .await
        .contains(&"floating IP 10.82.0.21 released with the VM (router r1)".to_string()));
    let x = create_vm(
        &c,
        "x",
        None,
        json!([{"network": "external", "ip": "10.82.0.21"}]),
    )
    .await;
    assert_eq!(x.status, 201, "{:?}", x.body);
    // With no floating IP left, the uplink goes.
    assert_eq!(delete(&c, "/api/v1/routers/r1/uplink").await.status, 204);
    c.shutdown().await;
}

#[tokio::test]
async fn the_edge_moves_off_a_host_in_maintenance_or_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut h1 = trunk_host(&c, "h1", "10.77.0.11").await;
    let _h2 = trunk_host(&c, "h2", "10.77.0.12").await;
    let h3 = trunk_host(&c, "h3", "10.77.0.13").await;
    // h4 has no trunk: never an edge.
    let _h4 = FakeAgent::join_and_connect_at(&c, "h4", HOST16, "10.77.0.14").await;
    net(&c, "external", "vlan", "10.82.0.0/24", Some("10.82.0.254")).await;
    net(&c, "blue", "overlay", "10.80.1.0/24", None).await;
    router(&c, "r1").await;
    assert_eq!(attach(&c, "r1", "blue").await.status, 201);
    let a = create_vm(&c, "a", Some("h3"), json!([{"network": "blue"}])).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let up = uplink(&c, "r1", "external", "10.82.0.10").await;
    assert_eq!(
        (&up.body["edge"], &up.body["standby"]),
        (&json!("h1"), &json!("h2"))
    );
    let vtep = |ip: &str| -> std::net::Ipv4Addr { ip.parse().unwrap() };
    let edge_of = |cfg: &vinfra_proto::HostSwitchConfig| {
        switch_router(cfg, "r1")
            .and_then(|r| r.uplink.as_ref())
            .map(|u| u.edge_vtep)
    };
    wait_config(&h3, "edge h1", |cfg| {
        edge_of(cfg) == Some(vtep("10.77.0.11"))
    })
    .await;
    // A healthy edge stays: a while later nothing changed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&c, "/api/v1/routers/r1").await["uplink"]["edge"], "h1");

    // h1 goes into maintenance: the edge moves to h2, h3 becomes the standby.
    // Its evacuation's task is not followed.
    let r = c
        .call_raw(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(&json!({"maintenance": true}).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let uplink_of = |v: &Value| (v["edge"].clone(), v["standby"].clone());
    let mut now = Value::Null;
    for _ in 0..100 {
        now = get(&c, "/api/v1/routers/r1").await["uplink"].clone();
        if now["edge"] == "h2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(uplink_of(&now), (json!("h2"), json!("h3")), "{now:?}");
    assert!(told(&c, "router", "r1")
        .await
        .contains(&"edge moved from h1 to h2 (h1: in maintenance)".to_string()));
    wait_config(&h3, "edge h2", |cfg| {
        edge_of(cfg) == Some(vtep("10.77.0.12"))
    })
    .await;
    let r = c
        .call(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(&json!({"maintenance": false}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // h2, the edge, is lost (disconnected, then fenced): the edge moves to the ready host with
    // the fewest edges, h1 (back from maintenance), and every host is told.
    let mut h2 = _h2;
    h2.disconnect();
    c.wait_host_status("h2", "disconnected").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get(&c, "/api/v1/routers/r1").await["uplink"]["edge"],
        "h2",
        "a brief disconnection keeps the edge"
    );
    let r = c
        .call(
            "PATCH",
            "/api/v1/hosts/h2",
            Some(&json!({"fence_command": "echo off"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/hosts/h2/fence", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for _ in 0..100 {
        now = get(&c, "/api/v1/routers/r1").await["uplink"].clone();
        if now["edge"] != "h2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(uplink_of(&now), (json!("h1"), json!("h3")), "{now:?}");
    let events = told(&c, "router", "r1").await;
    assert!(
        events.contains(&"edge moved from h2 to h1 (h2: HA state fenced)".to_string()),
        "{events:?}"
    );
    wait_config(&h3, "edge h1", |cfg| {
        edge_of(cfg) == Some(vtep("10.77.0.11"))
    })
    .await;
    // h1, the edge without a VM, carries the router and the external network.
    let cfg = wait_config(&h1, "r1 as its edge", |cfg| {
        edge_of(cfg) == Some(vtep("10.77.0.11"))
    })
    .await;
    assert!(cfg.networks.iter().any(|n| n.name == "external"));
    h1.disconnect();
    c.shutdown().await;
}

#[tokio::test]
async fn network_vnis_from_0xff0000_are_reserved_for_router_transit() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    for vni in [0xFF_0000u32, 0xFF_0001, 0xFF_FFFF] {
        let r = post(
            &c,
            "/api/v1/networks",
            json!({"name": "t", "kind": "overlay", "vni": vni, "subnet": "10.9.0.0/24"}),
        )
        .await;
        assert_refused(
            &r,
            400,
            "invalid-request",
            &format!("vni {vni} is reserved for router transit (16711680 and up)"),
        );
    }
    let r = post(
        &c,
        "/api/v1/networks",
        json!({"name": "t", "kind": "overlay", "vni": 0xFF_0000 - 1, "subnet": "10.9.0.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // The OpenAPI document has the edge's paths.
    let doc = get(&c, "/api/openapi.json").await;
    for (path, method) in [
        ("/api/v1/routers/{name}/uplink", "put"),
        ("/api/v1/routers/{name}/uplink", "delete"),
        ("/api/v1/floating-ips", "get"),
        ("/api/v1/vms/{name}/floating-ips", "post"),
        ("/api/v1/vms/{name}/floating-ips/{ip}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    for schema in [
        "SetUplinkRequest",
        "UplinkSummary",
        "AddFloatingIpRequest",
        "FloatingIpSummary",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    c.shutdown().await;
}
