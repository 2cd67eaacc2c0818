//! Routers end to end: the REST API over a real console and store (every rule and refusal of
//! docs/design.md "Routers"), VM NICs through fake agents over real mutual TLS, and the
//! routers in each host's switch configuration as the agents receive it.

mod common;

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

async fn get(c: &TestConsole, path: &str) -> Value {
    let r = c.call("GET", path, None).await;
    assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
    r.body
}

async fn delete(c: &TestConsole, path: &str) -> Resp {
    c.call("DELETE", path, None).await
}

async fn net(c: &TestConsole, name: &str, subnet: &str, gateway: Option<&str>) {
    let mut body = json!({"name": name, "kind": "overlay", "subnet": subnet});
    if let Some(g) = gateway {
        body["gateway"] = json!(g);
    }
    let r = post(c, "/api/v1/networks", body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

async fn router(c: &TestConsole, name: &str) -> Value {
    let r = post(c, "/api/v1/routers", json!({"name": name})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn attach(c: &TestConsole, router: &str, body: Value) -> Resp {
    post(c, &format!("/api/v1/routers/{router}/interfaces"), body).await
}

async fn add_route(c: &TestConsole, router: &str, prefix: &str, via: &str) -> Resp {
    post(
        c,
        &format!("/api/v1/routers/{router}/routes"),
        json!({"prefix": prefix, "via": via}),
    )
    .await
}

/// A VM with NICs (`[{network, ip?, mac?}]`), created stopped, on `host` when given.
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

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn routers_are_created_numbered_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;

    let r1 = router(&c, "r1").await;
    assert_eq!(
        r1,
        json!({"name": "r1", "id": 1, "interfaces": [], "routes": [], "created_at": r1["created_at"]})
    );
    assert!(r1["created_at"].as_u64().unwrap() > 0);
    assert_eq!(router(&c, "r2").await["id"], 2);
    assert_refused(
        &post(&c, "/api/v1/routers", json!({"name": "r1"})).await,
        409,
        "conflict",
        "a router named 'r1' already exists",
    );
    assert_refused(
        &post(&c, "/api/v1/routers", json!({"name": "R_1"})).await,
        400,
        "invalid-request",
        "router name: name 'R_1' has a character that is not allowed",
    );
    assert_refused(
        &post(&c, "/api/v1/routers", json!({"name": "r9", "vrf": 1})).await,
        400,
        "invalid-request",
        "invalid JSON body",
    );

    // A deleted router's number is free again: the lowest free is taken.
    assert_eq!(delete(&c, "/api/v1/routers/r1").await.status, 204);
    assert_eq!(router(&c, "r3").await["id"], 1);
    assert_eq!(
        names(&get(&c, "/api/v1/routers").await, "name"),
        ["r2", "r3"]
    );
    assert_eq!(get(&c, "/api/v1/routers/r3").await["id"], 1);
    for (method, path) in [
        ("GET", "/api/v1/routers/r1"),
        ("DELETE", "/api/v1/routers/r1"),
    ] {
        assert_refused(
            &c.call(method, path, None).await,
            404,
            "not-found",
            "router 'r1' not found",
        );
    }
    let events = get(&c, "/api/v1/events").await;
    let told: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "router")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(told.contains(&"created: router number 2"), "{told:?}");
    assert!(told.contains(&"deleted"), "{told:?}");

    // Routers and their numbers survive a restart of the console.
    let token = c.token.clone();
    c.shutdown().await;
    let c = start_console(dir.path(), Some(token), true).await;
    assert_eq!(
        names(&get(&c, "/api/v1/routers").await, "name"),
        ["r2", "r3"]
    );
    assert_eq!(router(&c, "r4").await["id"], 3);
    c.shutdown().await;
}

#[tokio::test]
async fn attaching_a_network_makes_the_routers_interface_its_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    net(&c, "blue", "10.80.1.0/24", None).await;
    net(&c, "red", "10.80.2.0/24", Some("10.80.2.254")).await;
    net(&c, "green", "10.80.1.128/25", None).await;
    net(&c, "tenant", "10.80.1.0/24", None).await;
    net(&c, "busy", "10.80.4.0/24", None).await;
    router(&c, "r1").await;
    router(&c, "r2").await;

    // No gateway on the network: the subnet's first usable address, written as the network's.
    let r = attach(&c, "r1", json!({"network": "blue"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Its MAC from blue's switch number, 1 (the first network).
    assert_eq!(
        r.body,
        json!({"network": "blue", "subnet": "10.80.1.0/24", "gateway": "10.80.1.1", "gateway_mac": "02:76:72:00:00:01"})
    );
    assert_eq!(
        get(&c, "/api/v1/networks/blue").await["gateway"],
        "10.80.1.1"
    );
    // So it is reserved: a NIC never gets it, and may not ask for it.
    let a = create_vm(&c, "a", None, json!([{"network": "blue"}])).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["spec"]["nics"][0]["ip"], "10.80.1.2");
    assert_refused(
        &create_vm(
            &c,
            "b",
            None,
            json!([{"network": "blue", "ip": "10.80.1.1"}]),
        )
        .await,
        400,
        "invalid-request",
        "nic 0: 10.80.1.1 is reserved for the gateway of network 'blue'",
    );

    // A network attaches to one router at most, this one or another.
    for r in ["r1", "r2"] {
        assert_refused(
            &attach(&c, r, json!({"network": "blue"})).await,
            409,
            "conflict",
            "network 'blue' is attached to router 'r1'; detach it first",
        );
    }
    // One router's subnets never overlap; another router may reuse them (tenants).
    assert_refused(
        &attach(&c, "r1", json!({"network": "green"})).await,
        409,
        "conflict",
        "network 'green' (10.80.1.128/25) overlaps network 'blue' (10.80.1.0/24) of router 'r1'",
    );
    let r = attach(
        &c,
        "r2",
        json!({"network": "tenant", "gateway": "10.80.1.254"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["gateway"], "10.80.1.254");

    // A network with a gateway keeps it: asking for another is refused, for the same is fine.
    assert_refused(
        &attach(&c, "r1", json!({"network": "red", "gateway": "10.80.2.1"})).await,
        409,
        "conflict",
        "network 'red' has the gateway 10.80.2.254, not 10.80.2.1",
    );
    let r = attach(
        &c,
        "r1",
        json!({"network": "red", "gateway": "10.80.2.254"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["gateway"], "10.80.2.254");

    // The gateway must be free: a VM's address is not taken from it.
    let v = create_vm(&c, "v1", None, json!([{"network": "busy"}])).await;
    assert_eq!(v.body["spec"]["nics"][0]["ip"], "10.80.4.1");
    for body in [
        json!({"network": "busy"}),
        json!({"network": "busy", "gateway": "10.80.4.1"}),
    ] {
        assert_refused(
            &attach(&c, "r1", body).await,
            409,
            "conflict",
            "10.80.4.1 on network 'busy' is taken by VM 'v1'",
        );
    }
    assert_eq!(get(&c, "/api/v1/networks/busy").await.get("gateway"), None);
    for (body, detail) in [
        (
            json!({"network": "busy", "gateway": "10.80.5.1"}),
            "gateway '10.80.5.1' is not a usable address of 10.80.4.0/24",
        ),
        (
            json!({"network": "busy", "gateway": "10.80.4.255"}),
            "gateway '10.80.4.255' is not a usable address of 10.80.4.0/24",
        ),
        (
            json!({"network": "busy", "gateway": "ten"}),
            "gateway 'ten' is not an IPv4 address",
        ),
        (json!({"network": "Busy"}), "network name: "),
        (json!({"gateway": "10.80.4.9"}), "invalid JSON body"),
    ] {
        assert_refused(
            &attach(&c, "r1", body).await,
            400,
            "invalid-request",
            detail,
        );
    }
    assert_refused(
        &attach(&c, "r1", json!({"network": "nope"})).await,
        404,
        "not-found",
        "network 'nope' not found",
    );
    assert_refused(
        &attach(&c, "nope", json!({"network": "busy"})).await,
        404,
        "not-found",
        "router 'nope' not found",
    );
    let r = attach(
        &c,
        "r1",
        json!({"network": "busy", "gateway": "10.80.4.200"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        get(&c, "/api/v1/networks/busy").await["gateway"],
        "10.80.4.200"
    );

    let r1 = get(&c, "/api/v1/routers/r1").await;
    assert_eq!(names(&r1["interfaces"], "network"), ["blue", "busy", "red"]);
    // Neither an attached network nor a router with networks is deleted.
    assert_refused(
        &delete(&c, "/api/v1/networks/tenant").await,
        409,
        "conflict",
        "network 'tenant' is attached to router 'r2'; detach it first",
    );
    assert_refused(
        &delete(&c, "/api/v1/routers/r1").await,
        409,
        "conflict",
        "router 'r1' has networks attached (blue, busy, red); detach them first",
    );
    // Detaching: 404 for a network the router does not have; the network keeps its gateway.
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/interfaces/tenant").await,
        404,
        "not-found",
        "router 'r1' has no interface on network 'tenant'",
    );
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/interfaces/Bad_Name").await,
        400,
        "invalid-request",
        "name 'Bad_Name'",
    );
    assert_eq!(
        delete(&c, "/api/v1/routers/r2/interfaces/tenant")
            .await
            .status,
        204
    );
    assert_eq!(
        get(&c, "/api/v1/networks/tenant").await["gateway"],
        "10.80.1.254"
    );
    assert_eq!(delete(&c, "/api/v1/networks/tenant").await.status, 204);
    assert_eq!(delete(&c, "/api/v1/routers/r2").await.status, 204);
    // Detached, a network may join another router.
    assert_eq!(
        delete(&c, "/api/v1/routers/r1/interfaces/blue")
            .await
            .status,
        204
    );
    router(&c, "r5").await;
    let r = attach(&c, "r5", json!({"network": "blue"})).await;
    assert_eq!(r.body["gateway"], "10.80.1.1", "its own gateway, kept");

    // A NIC may not take a gateway's MAC (prefix 02:76:72).
    assert_refused(
        &create_vm(
            &c,
            "m",
            None,
            json!([{"network": "red", "mac": "02:76:72:00:00:01"}]),
        )
        .await,
        400,
        "invalid-request",
        "reserved for the routers' gateways",
    );
    c.shutdown().await;
}

#[tokio::test]
async fn static_routes_need_a_next_hop_on_the_routers_subnets() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    net(&c, "blue", "10.80.1.0/24", None).await;
    net(&c, "red", "10.80.2.0/24", Some("10.80.2.254")).await;
    router(&c, "r1").await;
    router(&c, "empty").await;
    for n in ["blue", "red"] {
        assert_eq!(attach(&c, "r1", json!({"network": n})).await.status, 201);
    }

    let r = add_route(&c, "r1", " 10.90.0.0/16", "10.80.1.10").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"prefix": "10.90.0.0/16", "via": "10.80.1.10"})
    );
    assert_refused(
        &add_route(&c, "r1", "10.90.0.0/16", "10.80.2.5").await,
        409,
        "conflict",
        "router 'r1' has a route to 10.90.0.0/16 already (via 10.80.1.10); delete it first",
    );
    for (prefix, via, detail) in [
        (
            "10.90.0.1/16",
            "10.80.1.10",
            "prefix '10.90.0.1/16' has host bits set; the network address is 10.90.0.0/16",
        ),
        (
            "10.90.0.0",
            "10.80.1.10",
            "prefix '10.90.0.0' is not an IPv4 prefix",
        ),
        (
            "10.90.0.0/33",
            "10.80.1.10",
            "prefix '10.90.0.0/33' is not an IPv4 prefix",
        ),
        ("10.91.0.0/16", "ten", "via 'ten' is not an IPv4 address"),
    ] {
        assert_refused(
            &add_route(&c, "r1", prefix, via).await,
            400,
            "invalid-request",
            detail,
        );
    }
    for (via, detail) in [
        (
            "10.99.0.1",
            "next hop 10.99.0.1 is not an address of the subnets of router 'r1' \
             (10.80.1.0/24, 10.80.2.0/24)",
        ),
        (
            "10.80.1.255",
            "next hop 10.80.1.255 is not an address of the subnets of router 'r1'",
        ),
        (
            "10.80.2.254",
            "next hop 10.80.2.254 is the gateway of router 'r1' on network 'red'",
        ),
    ] {
        assert_refused(
            &add_route(&c, "r1", "10.91.0.0/16", via).await,
            409,
            "conflict",
            detail,
        );
    }
    assert_refused(
        &add_route(&c, "empty", "10.91.0.0/16", "10.80.1.10").await,
        409,
        "conflict",
        "(it has no network attached)",
    );
    assert_refused(
        &add_route(&c, "nope", "10.91.0.0/16", "10.80.1.10").await,
        404,
        "not-found",
        "router 'nope' not found",
    );
    let r = add_route(&c, "r1", "0.0.0.0/0", "10.80.2.5").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        get(&c, "/api/v1/routers/r1").await["routes"],
        json!([
            {"prefix": "0.0.0.0/0", "via": "10.80.2.5"},
            {"prefix": "10.90.0.0/16", "via": "10.80.1.10"},
        ])
    );

    // A network whose subnet holds a route's next hop stays attached until the route goes.
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/interfaces/blue").await,
        409,
        "conflict",
        "router 'r1' has route via network 'blue' (10.90.0.0/16 via 10.80.1.10); delete it first",
    );
    for (path, status, detail) in [
        (
            "/api/v1/routers/r1/routes/10.90.0.1/16",
            400,
            "prefix '10.90.0.1/16' has host bits set",
        ),
        (
            "/api/v1/routers/r1/routes/x/16",
            400,
            "is not an IPv4 prefix",
        ),
        (
            "/api/v1/routers/r1/routes/10.90.0.0/40",
            400,
            "is not an IPv4 prefix",
        ),
        (
            "/api/v1/routers/r1/routes/10.92.0.0/16",
            404,
            "router 'r1' has no route to 10.92.0.0/16",
        ),
    ] {
        let kind = if status == 400 {
            "invalid-request"
        } else {
            "not-found"
        };
        assert_refused(&delete(&c, path).await, status, kind, detail);
    }
    assert_eq!(
        delete(&c, "/api/v1/routers/r1/routes/10.90.0.0/16")
            .await
            .status,
        204
    );
    assert_refused(
        &delete(&c, "/api/v1/routers/r1/routes/10.90.0.0/16").await,
        404,
        "not-found",
        "router 'r1' has no route to 10.90.0.0/16",
    );
    assert_eq!(
        delete(&c, "/api/v1/routers/r1/interfaces/blue")
            .await
            .status,
        204
    );
    let r1 = get(&c, "/api/v1/routers/r1").await;
    assert_eq!(names(&r1["interfaces"], "network"), ["red"]);
    assert_eq!(
        get(&c, "/api/v1/networks/blue").await["gateway"],
        "10.80.1.1",
        "a detached network keeps its gateway address"
    );
    let events = get(&c, "/api/v1/events").await;
    let told: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "router" && e["object"] == "r1")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    for want in [
        "network blue attached: gateway 10.80.1.1 (02:76:72:00:00:01), now the network's gateway",
        "network red attached: gateway 10.80.2.254 (02:76:72:00:00:02)",
        "route added: 10.90.0.0/16 via 10.80.1.10",
        "route deleted: 10.90.0.0/16 via 10.80.1.10",
        "network blue detached",
    ] {
        assert!(told.contains(&want), "{want:?} not in {told:?}");
    }
    c.shutdown().await;
}

/// The (network, gateway, MAC) of each interface of the router `name` in `cfg`.
fn interfaces(cfg: &vinfra_proto::HostSwitchConfig, name: &str) -> Vec<(String, String, String)> {
    cfg.routers
        .iter()
        .find(|r| r.name == name)
        .map(|r| {
            r.interfaces
                .iter()
                .map(|i| {
                    (
                        i.network.clone(),
                        format!("{}/{}", i.ip, i.prefix_len),
                        i.mac.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn network_names(cfg: &vinfra_proto::HostSwitchConfig) -> Vec<&str> {
    cfg.networks.iter().map(|n| n.name.as_str()).collect()
}

#[tokio::test]
async fn every_host_of_a_routers_network_gets_the_router_and_all_its_networks() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let h2 = FakeAgent::join_and_connect_at(&c, "h2", HOST16, "10.77.0.12").await;
    let h3 = FakeAgent::join_and_connect_at(&c, "h3", HOST16, "10.77.0.13").await;
    net(&c, "front", "10.1.0.0/24", None).await;
    net(&c, "back", "10.2.0.0/24", None).await;
    net(&c, "lone", "10.3.0.0/24", None).await;
    // Addresses of their own: the subnets' first addresses stay free for the gateways.
    let a = create_vm(
        &c,
        "a",
        Some("h1"),
        json!([{"network": "front", "ip": "10.1.0.10"}]),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let b = create_vm(
        &c,
        "b",
        Some("h2"),
        json!([{"network": "back", "ip": "10.2.0.10"}]),
    )
    .await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    let d = create_vm(&c, "d", Some("h3"), json!([{"network": "lone"}])).await;
    assert_eq!(d.status, 201, "{:?}", d.body);
    let mac_of = |r: &Resp| {
        r.body["spec"]["nics"][0]["mac"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a_mac, b_mac) = (mac_of(&a), mac_of(&b));
    wait_config(&h1, "front alone", |cfg| network_names(cfg) == ["front"]).await;

    // The router comes to every host with a port on one of its networks, with all of them.
    router(&c, "r1").await;
    for n in ["front", "back"] {
        assert_eq!(attach(&c, "r1", json!({"network": n})).await.status, 201);
    }
    let want = vec![
        (
            "back".to_string(),
            "10.2.0.1/24".to_string(),
            "02:76:72:00:00:02".to_string(),
        ),
        (
            "front".to_string(),
            "10.1.0.1/24".to_string(),
            "02:76:72:00:00:01".to_string(),
        ),
    ];
    let cfg = wait_config(&h1, "r1 with front and back", |cfg| {
        interfaces(cfg, "r1") == want
    })
    .await;
    assert_eq!(network_names(&cfg), ["back", "front"]);
    assert_eq!(cfg.routers.len(), 1);
    assert_eq!(cfg.routers[0].id, 1);
    // back on h1, where nothing runs on it: sent straight to b's host.
    let back = &cfg.networks[0];
    assert_eq!(
        back.flood,
        ["10.77.0.12".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(cfg
        .macs
        .iter()
        .any(|m| m.network == "back" && m.mac == b_mac && m.host_ip.to_string() == "10.77.0.12"));
    assert!(cfg
        .arps
        .iter()
        .any(|e| e.network == "back" && e.mac == b_mac));
    // The DHCP responders hand out the router's gateway.
    let front = &cfg.networks[1];
    assert_eq!(
        front.dhcp.and_then(|d| d.gateway).map(|g| g.to_string()),
        Some("10.1.0.1".into())
    );
    let cfg = wait_config(&h2, "r1 with front and back", |cfg| {
        interfaces(cfg, "r1") == want
    })
    .await;
    assert!(cfg
        .macs
        .iter()
        .any(|m| m.network == "front" && m.mac == a_mac && m.host_ip.to_string() == "10.77.0.11"));
    // h3 has no port on r1's networks: neither the router nor its networks.
    wait_config(&h3, "lone alone", |cfg| {
        network_names(cfg) == ["lone"] && cfg.routers.is_empty()
    })
    .await;

    // Routes follow at once.
    assert_eq!(
        add_route(&c, "r1", "10.9.0.0/16", "10.2.0.10").await.status,
        201
    );
    let cfg = wait_config(&h2, "the route", |cfg| {
        cfg.routers.first().is_some_and(|r| !r.routes.is_empty())
    })
    .await;
    assert_eq!(cfg.routers[0].routes[0].prefix, "10.9.0.0/16");
    assert_eq!(cfg.routers[0].routes[0].via.to_string(), "10.2.0.10");

    // Detached, back leaves h1; the router stays with front.
    assert_eq!(
        delete(&c, "/api/v1/routers/r1/routes/10.9.0.0/16")
            .await
            .status,
        204
    );
    assert_eq!(
        delete(&c, "/api/v1/routers/r1/interfaces/back")
            .await
            .status,
        204
    );
    wait_config(&h1, "front alone with r1", |cfg| {
        network_names(cfg) == ["front"] && interfaces(cfg, "r1").len() == 1
    })
    .await;
    wait_config(&h2, "back alone, no router", |cfg| {
        network_names(cfg) == ["back"] && cfg.routers.is_empty()
    })
    .await;
    c.shutdown().await;
}
