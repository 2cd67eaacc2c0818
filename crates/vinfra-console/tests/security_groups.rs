//! Security groups end to end: the REST API over a real console and store, VM NICs through
//! fake agents over real mutual TLS, and each NIC's firewall in its host's switch
//! configuration.

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

async fn patch(c: &TestConsole, path: &str, body: Value) -> Resp {
    c.call("PATCH", path, Some(&body.to_string())).await
}

/// A VM with NICs (`[{network, ip?, mac?, security_groups?}]`), created stopped.
async fn create_vm(c: &TestConsole, name: &str, nics: Value) -> Resp {
    let mut v: Value = serde_json::from_str(&vm_json(name, 1, 128)).unwrap();
    v["nics"] = nics;
    v["start"] = json!(false);
    c.call("POST", "/api/v1/vms", Some(&v.to_string())).await
}

/// A problem of `status` and `kind` whose detail contains `detail`.
fn assert_refused(r: &Resp, status: u16, kind: &str, detail: &str) {
    assert_problem(r, status);
    assert_eq!(r.body["type"], format!("/problems/{kind}"), "{:?}", r.body);
    let d = r.body["detail"].as_str().unwrap();
    assert!(d.contains(detail), "detail {d:?} lacks {detail:?}");
}

#[tokio::test]
async fn groups_and_rules_are_created_listed_shown_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;

    let r = post(
        &c,
        "/api/v1/security-groups",
        json!({"name": "web", "description": "front ends", "rules": [
            {"direction": "ingress", "protocol": "tcp", "ports": "443", "remote_cidr": "0.0.0.0/0", "id": 99},
            {"direction": "ingress", "remote_group": "web"},
        ]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["name"], "web");
    assert_eq!(r.body["description"], "front ends");
    let ids: Vec<u64> = r.body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2], "ids are assigned, not taken from the request");
    assert_eq!(r.body["rules"][0]["action"], "allow");
    assert_eq!(r.body["members"], json!([]));
    assert_eq!(r.body["referenced_by"], json!(["web"]));
    assert_refused(
        &post(&c, "/api/v1/security-groups", json!({"name": "web"})).await,
        409,
        "conflict",
        "a security group named 'web' already exists",
    );

    // Rules get the next id, never one used before.
    let r = post(
        &c,
        "/api/v1/security-groups/web/rules",
        json!({"direction": "egress", "protocol": "udp", "ports": "8000-8080", "remote_cidr": "10.0.0.0/8", "action": "deny"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["id"], 3);
    assert_eq!(r.body["ports"], "8000-8080");
    let r = c
        .call("DELETE", "/api/v1/security-groups/web/rules/3", None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_refused(
        &c.call("DELETE", "/api/v1/security-groups/web/rules/3", None)
            .await,
        404,
        "not-found",
        "security group 'web' has no rule 3",
    );
    let r = post(
        &c,
        "/api/v1/security-groups/web/rules",
        json!({"direction": "ingress", "protocol": "icmp", "remote_cidr": "10.0.0.0/8"}),
    )
    .await;
    assert_eq!(r.body["id"], 4, "{:?}", r.body);

    // Bad rules: 400 with the reason, 404 for a remote group that does not exist.
    for (rule, detail) in [
        (json!({"direction": "ingress"}), "a rule names its remote"),
        (
            json!({"direction": "ingress", "remote_cidr": "10.0.0.1/8"}),
            "remote_cidr '10.0.0.1/8' is not an IPv4 prefix",
        ),
        (
            json!({"direction": "ingress", "remote_cidr": "0.0.0.0/0", "remote_group": "web"}),
            "not both",
        ),
        (
            json!({"direction": "ingress", "protocol": "icmp", "ports": "80", "remote_cidr": "0.0.0.0/0"}),
            "ports are for tcp and udp rules only, not icmp",
        ),
        (
            json!({"direction": "ingress", "protocol": "tcp", "ports": "70000", "remote_cidr": "0.0.0.0/0"}),
            "'70000' is not a port",
        ),
        (
            json!({"direction": "ingress", "protocol": "sctp", "remote_cidr": "0.0.0.0/0"}),
            "'sctp' is not a protocol",
        ),
        (
            json!({"direction": "sideways", "remote_cidr": "0.0.0.0/0"}),
            "unknown variant",
        ),
    ] {
        let r = post(&c, "/api/v1/security-groups/web/rules", rule.clone()).await;
        assert_refused(&r, 400, "invalid-request", detail);
    }
    assert_refused(
        &post(
            &c,
            "/api/v1/security-groups/web/rules",
            json!({"direction": "ingress", "remote_group": "nobody"}),
        )
        .await,
        404,
        "not-found",
        "remote_group: security group 'nobody' not found",
    );
    assert_refused(
        &post(
            &c,
            "/api/v1/security-groups",
            json!({"name": "db", "rules": [{"direction": "ingress", "remote_group": "nobody"}]}),
        )
        .await,
        404,
        "not-found",
        "'nobody' not found",
    );
    assert_refused(
        &post(
            &c,
            "/api/v1/security-groups",
            json!({"name": "db", "rules": [{"direction": "ingress", "remote_cidr": "0.0.0.0/0"}, {"direction": "egress"}]}),
        )
        .await,
        400,
        "invalid-request",
        "rule 1: a rule names its remote",
    );
    assert_refused(
        &post(&c, "/api/v1/security-groups", json!({"name": "Bad_Name"})).await,
        400,
        "invalid-request",
        "security group name: ",
    );
    assert_refused(
        &post(
            &c,
            "/api/v1/security-groups/nobody/rules",
            json!({"direction": "ingress", "remote_cidr": "0.0.0.0/0"}),
        )
        .await,
        404,
        "not-found",
        "security group 'nobody' not found",
    );
    assert_refused(
        &c.call("DELETE", "/api/v1/security-groups/web/rules/x", None)
            .await,
        400,
        "invalid-request",
        "id must be a number",
    );
    // Nothing of the refused ones was stored.
    let r = c.call("GET", "/api/v1/security-groups", None).await;
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);
    assert_eq!(r.body[0]["rules"].as_array().unwrap().len(), 3);

    // A group named as another's remote is in use; its own rules do not count.
    let r = post(
        &c,
        "/api/v1/security-groups",
        json!({"name": "db", "rules": [{"direction": "ingress", "protocol": "tcp", "ports": 5432, "remote_group": "web"}]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c.call("GET", "/api/v1/security-groups/web", None).await;
    assert_eq!(r.body["referenced_by"], json!(["db", "web"]));
    assert_refused(
        &c.call("DELETE", "/api/v1/security-groups/web", None).await,
        409,
        "conflict",
        "security group 'web' is in use by the rules of group db",
    );
    assert_eq!(
        c.call("DELETE", "/api/v1/security-groups/db", None)
            .await
            .status,
        204
    );
    assert_eq!(
        c.call("DELETE", "/api/v1/security-groups/web", None)
            .await
            .status,
        204
    );
    assert_refused(
        &c.call("GET", "/api/v1/security-groups/web", None).await,
        404,
        "not-found",
        "security group 'web' not found",
    );

    let events = c.call("GET", "/api/v1/events", None).await.body;
    let told: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "security-group" && e["object"] == "web")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        told,
        [
            "created with 2 rules",
            "rule 3 added: deny egress udp 8000-8080 to 10.0.0.0/8",
            "rule 3 deleted: deny egress udp 8000-8080 to 10.0.0.0/8",
            "rule 4 added: allow ingress icmp from 10.0.0.0/8",
            "deleted",
        ]
    );
    c.shutdown().await;
}

#[tokio::test]
async fn nics_join_groups_at_create_and_by_patch_and_their_hosts_get_the_firewall() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let r = post(
        &c,
        "/api/v1/networks",
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = post(
        &c,
        "/api/v1/security-groups",
        json!({"name": "web", "rules": [{"direction": "ingress", "protocol": "tcp", "ports": "80", "remote_cidr": "0.0.0.0/0"}]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = post(
        &c,
        "/api/v1/security-groups",
        json!({"name": "db", "rules": [{"direction": "ingress", "protocol": "tcp", "ports": "5432", "remote_group": "web"}]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Create: every group must exist, and needs port security on.
    assert_refused(
        &create_vm(
            &c,
            "w1",
            json!([{"network": "blue", "security_groups": ["web", "nope"]}]),
        )
        .await,
        404,
        "not-found",
        "nic 0: security group 'nope' not found",
    );
    assert_refused(
        &create_vm(
            &c,
            "w1",
            json!([{"network": "blue", "security_groups": ["web"], "port_security": false}]),
        )
        .await,
        400,
        "invalid-request",
        "nic 0: security groups need port security on",
    );
    assert_refused(
        &create_vm(
            &c,
            "w1",
            json!([{"network": "blue", "security_groups": ["web", "web"]}]),
        )
        .await,
        400,
        "invalid-request",
        "nic 0: security group 'web' is given twice",
    );
    assert_eq!(
        c.call("GET", "/api/v1/vms", None).await.body,
        json!([]),
        "nothing written"
    );
    let r = create_vm(
        &c,
        "w1",
        json!([{"network": "blue", "ip": "10.80.1.11", "security_groups": ["web"]}]),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["spec"]["nics"][0]["security_groups"], json!(["web"]));
    let w1_mac = r.body["spec"]["nics"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let r = create_vm(
        &c,
        "d1",
        json!([{"network": "blue", "ip": "10.80.1.21"}, {"network": "blue", "ip": "10.80.1.22"}]),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let d1_mac = r.body["spec"]["nics"][1]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let d1_mac_0 = r.body["spec"]["nics"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();

    let cfg = wait_config(&h1, "w1's firewall", |cfg| cfg.firewalls.len() == 1).await;
    let fw = &cfg.firewalls[0];
    assert_eq!(
        (fw.network.as_str(), fw.mac.as_str()),
        ("blue", w1_mac.as_str())
    );
    assert_eq!(fw.rules.len(), 1);
    assert_eq!(fw.rules[0].protocol, Some(6));
    assert_eq!(fw.rules[0].ports, Some((80, 80)));
    assert_eq!(fw.rules[0].remotes, [(std::net::Ipv4Addr::UNSPECIFIED, 0)]);

    // PATCH: d1's second NIC joins db; w1's address is the remote of its rule.
    let r = patch(
        &c,
        "/api/v1/vms/d1/nics/1",
        json!({"security_groups": ["db"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["spec"]["nics"][1]["security_groups"], json!(["db"]));
    assert!(r.body["spec"]["nics"][0].get("security_groups").is_none());
    let cfg = wait_config(&h1, "d1's firewall", |cfg| cfg.firewalls.len() == 2).await;
    let d1 = cfg.firewalls.iter().find(|f| f.mac == d1_mac).unwrap();
    assert_eq!(d1.rules[0].remotes, [("10.80.1.11".parse().unwrap(), 32)]);
    assert_eq!((d1.rules[0].group.as_str(), d1.rules[0].rule_id), ("db", 1));
    let r = c.call("GET", "/api/v1/security-groups/db", None).await;
    assert_eq!(
        r.body["members"],
        json!([{"vm": "d1", "nic": 1, "network": "blue", "ip": "10.80.1.22"}])
    );

    // A new member of web is a new remote of db's rule on every host.
    let r = patch(
        &c,
        "/api/v1/vms/d1/nics/0",
        json!({"security_groups": ["web"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let cfg = wait_config(&h1, "web's new member", |cfg| {
        cfg.firewalls
            .iter()
            .any(|f| f.mac == d1_mac && f.rules[0].remotes.len() == 2)
    })
    .await;
    assert_eq!(cfg.firewalls.len(), 3);

    // In use: the NICs are named.
    assert_refused(
        &c.call("DELETE", "/api/v1/security-groups/web", None).await,
        409,
        "conflict",
        "NICs d1 nic 0, w1 nic 0 and the rules of group db",
    );

    // Bad PATCHes write nothing.
    for (path, body, status, kind, detail) in [
        (
            "/api/v1/vms/d1/nics/5",
            json!({"security_groups": []}),
            404,
            "not-found",
            "VM 'd1' has no nic 5 (it has 2)",
        ),
        (
            "/api/v1/vms/nobody/nics/0",
            json!({"security_groups": []}),
            404,
            "not-found",
            "VM 'nobody' not found",
        ),
        (
            "/api/v1/vms/d1/nics/x",
            json!({}),
            400,
            "invalid-request",
            "id must be a number",
        ),
        (
            "/api/v1/vms/d1/nics/0",
            json!({"security_groups": ["nope"]}),
            404,
            "not-found",
            "nic 0: security group 'nope' not found",
        ),
        (
            "/api/v1/vms/d1/nics/0",
            json!({"port_security": false}),
            400,
            "invalid-request",
            "nic 0: security groups need port security on",
        ),
        (
            "/api/v1/vms/d1/nics/1",
            json!({"security_groups": [], "port_security": false, "allowed_addresses": [{"ip": "10.80.1.99"}]}),
            400,
            "invalid-request",
            "nic 1: allowed addresses need port security on",
        ),
        (
            "/api/v1/vms/d1/nics/0",
            json!({"allowed_addresses": [{"ip": "10.80.1.99/24"}]}),
            400,
            "invalid-request",
            "allowed address '10.80.1.99/24'",
        ),
        (
            "/api/v1/vms/d1/nics/0",
            json!({"bogus": 1}),
            400,
            "invalid-request",
            "unknown field",
        ),
        (
            "/api/v1/vms/d1/nics/0",
            json!({"security_groups": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}),
            400,
            "invalid-request",
            "at most 8 security groups",
        ),
    ] {
        let r = patch(&c, path, body).await;
        assert_refused(&r, status, kind, detail);
    }

    // Off with the groups, port security may go off; allowed addresses come and go.
    let r = patch(
        &c,
        "/api/v1/vms/d1/nics/0",
        json!({"security_groups": [], "port_security": false}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["spec"]["nics"][0]["port_security"], false);
    let r = patch(
        &c,
        "/api/v1/vms/w1/nics/0",
        json!({"allowed_addresses": [{"ip": "10.80.1.200"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["spec"]["nics"][0]["allowed_addresses"],
        json!([{"ip": "10.80.1.200"}])
    );
    assert_eq!(r.body["spec"]["nics"][0]["security_groups"], json!(["web"]));
    let cfg = wait_config(&h1, "d1 nic 0 unfiltered", |cfg| cfg.firewalls.len() == 2).await;
    // Both changes are in the host's port security entries, for the running ports.
    let entry = |mac: &str| {
        cfg.port_security
            .iter()
            .find(|s| s.mac == mac)
            .cloned()
            .unwrap_or_else(|| panic!("no port security entry for {mac}: {cfg:?}"))
    };
    assert!(!entry(&d1_mac_0).port_security);
    let w1 = entry(&w1_mac);
    assert!(w1.port_security);
    assert_eq!(w1.ip.as_deref(), Some("10.80.1.11"));
    assert_eq!(
        w1.allowed_addresses,
        [vinfra_types::AllowedAddressPair {
            ip: "10.80.1.200".into(),
            mac: None
        }]
    );
    let d1 = cfg.firewalls.iter().find(|f| f.mac == d1_mac).unwrap();
    // w1's allowed address is a member of web too: its traffic may come from there.
    assert_eq!(
        d1.rules[0].remotes,
        [
            ("10.80.1.11".parse().unwrap(), 32),
            ("10.80.1.200".parse().unwrap(), 32)
        ]
    );

    let events = c.call("GET", "/api/v1/events", None).await.body;
    let told: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "vm" && e["object"] == "d1")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .filter(|m| m.starts_with("nic "))
        .collect();
    assert_eq!(
        told,
        [
            "nic 1: security groups db (were none)",
            "nic 0: security groups web (were none)",
            "nic 0: security groups none (were web); port security off",
        ]
    );

    // Once no NIC and no rule names them, the groups go.
    let r = patch(&c, "/api/v1/vms/d1/nics/1", json!({"security_groups": []})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        c.call("DELETE", "/api/v1/security-groups/db", None)
            .await
            .status,
        204
    );
    let r = patch(&c, "/api/v1/vms/w1/nics/0", json!({"security_groups": []})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        c.call("DELETE", "/api/v1/security-groups/web", None)
            .await
            .status,
        204
    );
    wait_config(&h1, "no firewall", |cfg| {
        cfg.firewalls.is_empty() && !cfg.networks.is_empty()
    })
    .await;
    c.shutdown().await;
}

#[tokio::test]
async fn a_migrating_nic_has_its_firewall_before_it_arrives_and_its_connections_after() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let h2 = FakeAgent::join_and_connect_at(&c, "h2", HOST16, "10.77.0.12").await;
    let r = post(
        &c,
        "/api/v1/networks",
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = post(
        &c,
        "/api/v1/security-groups",
        json!({"name": "web", "rules": [{"direction": "ingress", "protocol": "tcp", "ports": "8080", "remote_cidr": "10.80.1.0/24"}]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // A running VM on h1 (whose switch has blue first, as a real agent needs).
    wait_config(&h1, "a first configuration", |_| true).await;
    let mut v: Value = serde_json::from_str(&vm_json("m", 1, 128)).unwrap();
    v["host"] = json!("h1");
    v["nics"] = json!([{"network": "blue", "ip": "10.80.1.21", "security_groups": ["web"]}]);
    let r = c.call("POST", "/api/v1/vms", Some(&v.to_string())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let mac = r.body["spec"]["nics"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let has_firewall = |cfg: &vinfra_proto::HostSwitchConfig| {
        cfg.firewalls
            .iter()
            .any(|f| f.mac == mac && f.rules.iter().any(|r| r.ports == Some((8080, 8080))))
    };
    wait_config(&h1, "m's firewall", has_firewall).await;

    let r = c
        .call("POST", "/api/v1/vms/m/migrate", Some(r#"{"to":"h2"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "m").await["phase"], "completed");
    // The destination had the NIC's rules when it prepared the incoming VM.
    let at_prepare = h2
        .state
        .lock()
        .unwrap()
        .firewalls_at_prepare
        .get(&id)
        .cloned();
    let at_prepare = at_prepare.expect("h2 prepared m");
    assert!(
        at_prepare
            .iter()
            .any(|f| f.mac == mac && f.rules.iter().any(|r| r.ports == Some((8080, 8080)))),
        "h2's switch configuration at PrepareIncoming: {at_prepare:?}"
    );
    // The source's connections went to the destination, before the source let the VM go.
    let imported = h2.state.lock().unwrap().imported.clone();
    assert_eq!(
        imported,
        vec![(
            id,
            vec![vinfra_proto::NicConnections {
                network: "blue".into(),
                mac: mac.clone(),
                entries: vec![fake_connection()],
            }]
        )]
    );
    let commands = h1.state.lock().unwrap().commands.clone();
    let at = |name: &str| {
        commands
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("h1 got no {name}: {commands:?}"))
    };
    assert!(
        at("ExportConnections") < at("FinishMigrationSource"),
        "{commands:?}"
    );

    // A destination that cannot take them: the migration completes all the same, and says so.
    h1.state.lock().unwrap().behaviour.refuse_imports = true;
    let r = c
        .call("POST", "/api/v1/vms/m/migrate", Some(r#"{"to":"h1"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "m").await["phase"], "completed");
    assert_eq!(
        c.call("GET", "/api/v1/vms/m", None).await.body["host"],
        "h1"
    );
    let events = c.call("GET", "/api/v1/events", None).await.body.to_string();
    assert!(
        events.contains("connections not carried to h1")
            && events.contains("connection table full"),
        "{events}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn a_groups_rule_hits_are_summed_over_its_nics_from_their_hosts_switches() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let r = post(
        &c,
        "/api/v1/networks",
        json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = post(
        &c,
        "/api/v1/security-groups",
        json!({"name": "web", "rules": [
            {"direction": "ingress", "protocol": "tcp", "ports": "80", "remote_cidr": "0.0.0.0/0"},
            {"direction": "ingress", "protocol": "tcp", "ports": "443", "remote_cidr": "0.0.0.0/0"}
        ]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    for name in ["w1", "w2"] {
        let mut v: Value = serde_json::from_str(&vm_json(name, 1, 128)).unwrap();
        v["nics"] = json!([{"network": "blue", "security_groups": ["web"]}]);
        let r = c.call("POST", "/api/v1/vms", Some(&v.to_string())).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // w3 is in the group but stopped: listed, not counted.
    let r = create_vm(
        &c,
        "w3",
        json!([{"network": "blue", "security_groups": ["web"]}]),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    wait_config(&h1, "three firewalls", |cfg| cfg.firewalls.len() == 3).await;

    let r = c
        .call("GET", "/api/v1/security-groups/web/counters", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The fake switch counts rule k (id k) of each port 10 k + its position: two running NICs.
    assert_eq!(
        r.body["rules"],
        json!([{"rule_id": 1, "hits": 20}, {"rule_id": 2, "hits": 42}])
    );
    let members = r.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    for m in &members[..2] {
        assert_eq!((&m["host"], &m["connections"]), (&json!("h1"), &json!(2)));
        assert!(m.get("error").is_none(), "{m:?}");
    }
    assert_eq!(members[2]["vm"], "w3");
    assert_eq!(members[2]["connections"], Value::Null);
    let why = members[2]["error"].as_str().unwrap();
    assert!(why.contains("does not run there"), "{why}");

    let r = c
        .call("GET", "/api/v1/security-groups/nope/counters", None)
        .await;
    assert_refused(&r, 404, "not-found", "security group 'nope' not found");
}
