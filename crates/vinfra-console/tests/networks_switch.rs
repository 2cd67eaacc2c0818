//! Logical networks on the hosts' switches: each host's switch configuration (the underlay of
//! the other hosts, MAC entries following VMs and migrations, sent once per connection), the
//! networks' and hosts' switch counters from the agents, NIC QoS set live and after a migration.

mod common;

use common::network::{create_net, nic, on_host, vm_with_nics};
use common::*;
use serde_json::{json, Value};
use vinfra_console::networks::push::push;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

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
