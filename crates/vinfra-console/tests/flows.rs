//! Flow visibility in the console, with fake agents speaking the real protocol: flows sent as
//! `AgentMessage::Flows` are kept, named by the VMs' NIC addresses and grouped by
//! `GET /api/v1/flows`; bad queries are refused with problem+json; the IPFIX collector reaches
//! every agent; and the balancer co-locates a chatty pair from the flows.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vinfra_proto::{AgentMessage, HostFlow};
use vinfra_types::flows::TrafficDirection;
use vinfra_types::HostCapacity;

const HOST: HostCapacity = HostCapacity {
    cores: 4,
    memory_mib: 8 * GIB,
};

async fn create_vm_on(c: &TestConsole, name: &str, host: &str, network: &str) -> Ipv4Addr {
    let mut v: Value = serde_json::from_str(&vm_json(name, 1, 512)).unwrap();
    v["nics"] = json!([{"network": network}]);
    v["host"] = json!(host);
    let r = c.call("POST", "/api/v1/vms", Some(&v.to_string())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["spec"]["nics"][0]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn flow(src: Ipv4Addr, dst: Ipv4Addr, bytes: u64, direction: TrafficDirection) -> HostFlow {
    HostFlow {
        network: "blue".into(),
        router: None,
        src,
        dst,
        protocol: 6,
        src_port: 40000,
        dst_port: 5201,
        packets: bytes.div_ceil(1500),
        bytes,
        direction,
    }
}

fn send(agent: &FakeAgent, flows: Vec<HostFlow>) {
    agent
        .state
        .lock()
        .unwrap()
        .outbox
        .push(AgentMessage::Flows {
            host: agent.host.clone(),
            interval_ms: 10_000,
            flows,
            untracked_packets: 3,
        });
}

async fn flows(c: &TestConsole, query: &str) -> Resp {
    c.call("GET", &format!("/api/v1/flows{query}"), None).await
}

/// Waits until `GET /api/v1/flows?by=direction` shows `bytes` in all.
async fn wait_bytes(c: &TestConsole, bytes: u64) {
    for _ in 0..100 {
        let r = flows(c, "?by=direction").await;
        let total: u64 = r.body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["bytes"].as_u64().unwrap())
            .sum();
        if total == bytes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the console never showed {bytes} bytes of flows");
}

async fn setup() -> (TestConsole, tempfile::TempDir, FakeAgent, FakeAgent) {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    let r = c
        .call(
            "POST",
            "/api/v1/networks",
            Some(
                &json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24",
                        "gateway": "10.80.1.1"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (c, dir, h1, h2)
}

#[tokio::test]
async fn flows_from_agents_are_named_grouped_and_ranked() {
    let (c, _dir, h1, h2) = setup().await;
    let web = create_vm_on(&c, "web", "h1", "blue").await;
    let db = create_vm_on(&c, "db", "h2", "blue").await;
    let outside = Ipv4Addr::new(198, 51, 100, 7);
    // web -> db counted on h1, db -> web on h2 (each where it entered), web -> outside on h1.
    send(
        &h1,
        vec![
            flow(web, db, 1_000_000, TrafficDirection::EastWest),
            flow(web, outside, 50_000, TrafficDirection::NorthSouth),
        ],
    );
    send(&h2, vec![flow(db, web, 20_000, TrafficDirection::EastWest)]);
    wait_bytes(&c, 1_070_000).await;

    let r = flows(&c, "").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["minutes"].as_u64(), r.body["by"].as_str()),
        (Some(5), Some("vm-pair"))
    );
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["key"], "db <-> web");
    assert_eq!(rows[0]["direction"], "east_west");
    assert_eq!(rows[0]["bytes"], 1_020_000, "both directions of the pair");
    assert_eq!(rows[0]["flows"], 2);
    assert_eq!(rows[1]["key"], "198.51.100.7 <-> web");
    assert_eq!(rows[1]["direction"], "north_south");
    assert_eq!(rows[1]["bytes"], 50_000);
    assert_eq!(r.body["untracked_packets"], 6);

    let r = flows(&c, "?by=network&top=1").await;
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["key"].as_str(), rows[0]["bytes"].as_u64()),
        (Some("blue"), Some(1_020_000))
    );
    let r = flows(&c, "?by=router").await;
    assert_eq!(r.body["rows"][0]["key"], "-");
    let r = flows(&c, "?by=direction&minutes=60").await;
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["key"], "north-south");

    // Bad input: problem+json, 400.
    for q in [
        "?minutes=0",
        "?minutes=61",
        "?top=0",
        "?top=1001",
        "?by=host",
        "?minutes=x",
        "?nope=1",
    ] {
        let r = flows(&c, q).await;
        assert_problem(&r, 400);
    }
    c.shutdown().await;
}

#[tokio::test]
async fn a_flows_message_naming_another_host_ends_the_connection() {
    let (c, _dir, h1, _h2) = setup().await;
    h1.state.lock().unwrap().outbox.push(AgentMessage::Flows {
        host: "h2".into(),
        interval_ms: 10_000,
        flows: vec![],
        untracked_packets: 0,
    });
    c.wait_host_status("h1", "disconnected").await;
    let r = flows(&c, "").await;
    assert_eq!(r.body["rows"], json!([]));
    c.shutdown().await;
}

#[tokio::test]
async fn the_ipfix_collector_reaches_every_agent_and_is_shown() {
    let (c, _dir, h1, h2) = setup().await;
    // After its Hello each agent got the setting: none.
    for a in [&h1, &h2] {
        for _ in 0..100 {
            if a.state.lock().unwrap().collector.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.state.lock().unwrap().collector, Some(None));
    }
    let r = c.call("GET", "/api/v1/settings", None).await;
    let mut s = r.body.clone();
    assert_eq!(s["flows"]["ipfix_collector"], Value::Null);
    assert_eq!(s["flows"]["traffic_minutes"], 10);
    s["flows"]["ipfix_collector"] = json!("192.0.2.10:4739");
    let r = c
        .call("PUT", "/api/v1/settings", Some(&s.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let want = Some(Some("192.0.2.10:4739".parse().unwrap()));
    for a in [&h1, &h2] {
        for _ in 0..100 {
            if a.state.lock().unwrap().collector == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.state.lock().unwrap().collector, want);
    }
    // Out of range or malformed: refused, nothing changes.
    for bad in [json!("192.0.2.10"), json!("0.0.0.0:4739"), json!("x")] {
        let mut b = s.clone();
        b["flows"]["ipfix_collector"] = bad;
        let r = c
            .call("PUT", "/api/v1/settings", Some(&b.to_string()))
            .await;
        assert_problem(&r, 400);
    }
    let mut b = s.clone();
    b["flows"]["traffic_minutes"] = json!(0);
    let r = c
        .call("PUT", "/api/v1/settings", Some(&b.to_string()))
        .await;
    assert_problem(&r, 400);
    let r = c.call("GET", "/api/v1/settings", None).await;
    assert_eq!(r.body["flows"]["ipfix_collector"], "192.0.2.10:4739");
    c.shutdown().await;
}

#[tokio::test]
async fn the_balancer_co_locates_a_chatty_pair_from_the_flows() {
    let (c, _dir, h1, h2) = setup().await;
    let web = create_vm_on(&c, "web", "h1", "blue").await;
    let db = create_vm_on(&c, "db", "h2", "blue").await;
    let body = json!({"ratios": {"cpu": 4.0, "memory": 1.0},
                      "balancing": {"mode": "manual", "level": 3}});
    let r = c
        .call("PUT", "/api/v1/settings", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Without traffic: nothing to do.
    let r = c.call("POST", "/api/v1/drs/run", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c.call("GET", "/api/v1/drs/recommendations", None).await;
    assert_eq!(r.body, json!([]), "no traffic, no move");
    // 10 GB each way in the window (10 minutes): 33 MB/s between them, which pays for a
    // move at level 3 (score 0.001 per MiB/s against a minimum gain of 0.01).
    send(
        &h1,
        vec![flow(web, db, 10_000_000_000, TrafficDirection::EastWest)],
    );
    send(
        &h2,
        vec![flow(db, web, 10_000_000_000, TrafficDirection::EastWest)],
    );
    wait_bytes(&c, 20_000_000_000).await;
    let r = c.call("POST", "/api/v1/drs/run", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let plan = &r.body["last_plan"];
    assert_eq!(plan["cross_host_traffic_before"], 33_333_333, "{plan:?}");
    assert_eq!(plan["cross_host_traffic_after"], 0, "{plan:?}");
    let r = c.call("GET", "/api/v1/drs/recommendations", None).await;
    let recs = r.body.as_array().unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let (vm, to) = (
        recs[0]["vm"].as_str().unwrap(),
        recs[0]["to"].as_str().unwrap(),
    );
    let other_host = if vm == "web" { "h2" } else { "h1" };
    assert_eq!(to, other_host, "{recs:?}");
    c.shutdown().await;
}

#[tokio::test]
async fn a_flow_to_a_floating_ip_is_named_by_its_vm() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut hosts = Vec::new();
    for (name, address) in [("h1", "10.77.0.11"), ("h2", "10.77.0.12")] {
        let state = FakeState {
            address: Some(address.into()),
            trunk: Some("eth1".into()),
            ..FakeState::default()
        };
        hosts.push(FakeAgent::join_and_connect_with(&c, name, HOST, state).await);
    }
    for (path, body) in [
        (
            "/api/v1/networks",
            json!({"name": "external", "kind": "vlan", "subnet": "10.82.0.0/24",
                   "gateway": "10.82.0.254"}),
        ),
        (
            "/api/v1/networks",
            json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
        ),
        ("/api/v1/routers", json!({"name": "r1"})),
        ("/api/v1/routers/r1/interfaces", json!({"network": "blue"})),
    ] {
        let r = c.call("POST", path, Some(&body.to_string())).await;
        assert_eq!(r.status, 201, "{path}: {:?}", r.body);
    }
    let body = json!({"network": "external", "ip": "10.82.0.10"});
    let r = c
        .call("PUT", "/api/v1/routers/r1/uplink", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let web = create_vm_on(&c, "web", "h2", "blue").await;
    let body = json!({"ip": "10.82.0.20"});
    let r = c
        .call(
            "POST",
            "/api/v1/vms/web/floating-ips",
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // The edge (h1) counts a client's flow to the floating IP on the external network, before
    // translating it; web's host counts web's own flow out by its NIC address.
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let floating = Ipv4Addr::new(10, 82, 0, 20);
    let inbound = HostFlow {
        network: "external".into(),
        router: Some("r1".into()),
        ..flow(client, floating, 40_000, TrafficDirection::NorthSouth)
    };
    send(&hosts[0], vec![inbound]);
    send(
        &hosts[1],
        vec![flow(web, client, 2_000, TrafficDirection::NorthSouth)],
    );
    wait_bytes(&c, 42_000).await;
    let r = flows(&c, "").await;
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one pair, both ways: {rows:?}");
    assert_eq!(rows[0]["key"], "198.51.100.7 <-> web");
    assert_eq!(rows[0]["bytes"], 42_000);
    c.shutdown().await;
}
