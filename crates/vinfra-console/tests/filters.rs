//! The lists' filters against a real console (docs/design.md "Pages" and "Filters"): each
//! filter lets through exactly the items it names (checked against the whole list), combines
//! with pages (every `Link` keeps the filter, every item comes exactly once, in key order), and
//! a value that is not of its parameter (a state, a kind, a name) or an unknown parameter is a
//! 400 problem.

mod common;

use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// `GET path`: status, body and the `rel="next"` link's target, if any.
async fn get(c: &TestConsole, path: &str) -> (u16, Value, Option<String>) {
    let r = c
        .client
        .get(format!("{}{path}", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let next = r.headers().get("link").map(|v| {
        let v = v.to_str().unwrap();
        assert!(v.ends_with(">; rel=\"next\""), "{v}");
        v.trim_start_matches('<')
            .trim_end_matches(">; rel=\"next\"")
            .to_string()
    });
    (status, r.json().await.unwrap(), next)
}

/// The whole answer to `GET path` (no pages asked for).
async fn all(c: &TestConsole, path: &str) -> Vec<Value> {
    let (status, body, next) = get(c, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(next, None, "{path}: a whole list links nothing");
    body.as_array().unwrap().clone()
}

/// `field` of each item (a string, or a number as text).
fn keys(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| match &i[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// `list?query` in pages of `limit`: every link keeps the query, and the pages together are
/// the unpaged answer, each item once, in its order.
async fn paged(c: &TestConsole, list: &str, query: &str, limit: usize) -> Vec<Value> {
    let whole = all(c, &format!("{list}?{query}")).await;
    let mut items = Vec::new();
    let mut pages = 0;
    let mut path = Some(format!("{list}?{query}&limit={limit}"));
    while let Some(p) = path {
        let (status, body, next) = get(c, &p).await;
        assert_eq!(status, 200, "{p}: {body}");
        let page = body.as_array().unwrap();
        assert!(page.len() <= limit, "{p}: {body}");
        items.extend(page.iter().cloned());
        pages += 1;
        if let Some(n) = &next {
            let kept = format!("{list}?{query}&limit={limit}&page_token=");
            assert!(n.starts_with(&kept), "{n} does not keep {query}");
        }
        path = next;
    }
    assert_eq!(items, whole, "{list}?{query}: the pages are the whole list");
    assert_eq!(pages, whole.len().div_ceil(limit).max(1), "{list}?{query}");
    items
}

/// Each of `bad` is a 400 `invalid-request` problem.
async fn refused(c: &TestConsole, bad: &[&str]) {
    for path in bad {
        let r = c.call("GET", path, None).await;
        assert_problem(&r, 400);
        assert_eq!(r.body["type"], "/problems/invalid-request", "{path}");
    }
}

async fn post(c: &TestConsole, path: &str, body: Value) {
    let r = c.call("POST", path, Some(&body.to_string())).await;
    assert!(r.status == 201 || r.status == 200, "{path}: {:?}", r.body);
}

/// A VM of 1 vCPU and 128 MiB on `host`, with `nics`, started or not.
async fn vm(c: &TestConsole, name: &str, host: &str, start: bool, nics: Value) {
    let mut v: Value = serde_json::from_str(&vm_json(name, 1, 128)).unwrap();
    v["host"] = json!(host);
    v["start"] = json!(start);
    v["nics"] = nics;
    let r = c.call("POST", "/api/v1/vms", Some(&v.to_string())).await;
    assert_eq!(r.status, 201, "{name}: {:?}", r.body);
}

#[tokio::test]
async fn hosts_tokens_and_revoked_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    let mut h3 = FakeAgent::join_and_connect(&c, "h3", HOST).await;
    let _h4 = FakeAgent::join_and_connect(&c, "h4", HOST).await;
    for h in ["h2", "h4"] {
        let r = c
            .call(
                "PATCH",
                &format!("/api/v1/hosts/{h}"),
                Some(r#"{"maintenance": true}"#),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    h3.disconnect();
    c.wait_host_status("h3", "disconnected").await;

    // Hosts: by the status the list shows, by maintenance, by both.
    for (query, want) in [
        ("status=connected", vec!["h1", "h2", "h4"]),
        ("status=disconnected", vec!["h3"]),
        ("maintenance=true", vec!["h2", "h4"]),
        ("maintenance=false", vec!["h1", "h3"]),
        ("status=connected&maintenance=false", vec!["h1"]),
        ("maintenance=true&status=disconnected", vec![]),
    ] {
        let got = all(&c, &format!("/api/v1/hosts?{query}")).await;
        assert_eq!(keys(&got, "name"), want, "{query}");
    }
    let pages = paged(&c, "/api/v1/hosts", "status=connected", 2).await;
    assert_eq!(keys(&pages, "name"), ["h1", "h2", "h4"]);
    // The link writes the filter its own way: the order of the parameters is the API's.
    let (_, _, next) = get(
        &c,
        "/api/v1/hosts?maintenance=true&status=connected&limit=1",
    )
    .await;
    assert!(
        next.as_deref().is_some_and(|n| n
            .starts_with("/api/v1/hosts?status=connected&maintenance=true&limit=1&page_token=")),
        "{next:?}"
    );
    refused(
        &c,
        &[
            "/api/v1/hosts?status=online",
            "/api/v1/hosts?status=Connected",
            "/api/v1/hosts?maintenance=on",
            "/api/v1/hosts?state=connected",
            "/api/v1/hosts?status=connected&limit=0",
        ],
    )
    .await;

    // Tokens: by role, by state.
    for (name, role) in [("ci", "viewer"), ("ops", "operator"), ("old", "viewer")] {
        post(&c, "/api/v1/tokens", json!({"name": name, "role": role})).await;
    }
    assert_eq!(
        c.call("DELETE", "/api/v1/tokens/old", None).await.status,
        204
    );
    for (query, want) in [
        ("role=viewer", vec!["ci", "old"]),
        ("role=operator", vec!["ops"]),
        ("role=admin", vec!["bootstrap"]),
        ("state=revoked", vec!["old"]),
        ("state=active&role=viewer", vec!["ci"]),
        ("state=expired", vec![]),
    ] {
        let got = all(&c, &format!("/api/v1/tokens?{query}")).await;
        assert_eq!(keys(&got, "name"), want, "{query}");
    }
    let pages = paged(&c, "/api/v1/tokens", "state=active", 1).await;
    assert_eq!(keys(&pages, "name"), ["bootstrap", "ci", "ops"]);
    refused(
        &c,
        &[
            "/api/v1/tokens?role=root",
            "/api/v1/tokens?state=valid",
            "/api/v1/tokens?name=ci",
        ],
    )
    .await;

    // Revoked certificates: those of one removed host.
    for h in ["h3", "h1"] {
        let r = c.call("DELETE", &format!("/api/v1/hosts/{h}"), None).await;
        assert_eq!(r.status, 204, "{h}: {:?}", r.body);
    }
    let every = all(&c, "/api/v1/revoked-certificates").await;
    for h in ["h1", "h3"] {
        let got = all(&c, &format!("/api/v1/revoked-certificates?host={h}")).await;
        let want: Vec<Value> = every.iter().filter(|r| r["host"] == h).cloned().collect();
        assert!(!want.is_empty(), "{h}'s certificate is revoked: {every:?}");
        assert_eq!(got, want, "{h}");
        assert!(got.len() < every.len());
    }
    assert!(all(&c, "/api/v1/revoked-certificates?host=h2")
        .await
        .is_empty());
    // Every list pages now, this one too: by revocation, each certificate once.
    let pages = paged(&c, "/api/v1/revoked-certificates", "host=h1", 1).await;
    assert!(pages.iter().all(|r| r["host"] == "h1"));
    let mut seen = Vec::new();
    let mut path = Some("/api/v1/revoked-certificates?limit=1".to_string());
    while let Some(p) = path {
        let (status, body, next) = get(&c, &p).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(body.as_array().unwrap().iter().cloned());
        path = next;
    }
    assert_eq!(seen, every);
    refused(
        &c,
        &[
            "/api/v1/revoked-certificates?host=H1",
            "/api/v1/revoked-certificates?host=",
            "/api/v1/revoked-certificates?serial=1",
            "/api/v1/revoked-certificates?limit=1001",
        ],
    )
    .await;
    c.shutdown().await;
}

#[tokio::test]
async fn events_rules_and_recommendations_by_vm_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    let _h3 = FakeAgent::join_and_connect(&c, "h3", HOST).await;
    for (name, host) in [("a", "h1"), ("b", "h1"), ("c", "h2")] {
        set_vm_usage(name, 0.5, 100);
        vm(&c, name, host, true, json!([])).await;
    }
    // Objects named as a VM and as a host, of other kinds: a network `a`, a security group
    // `h1`.
    post(
        &c,
        "/api/v1/networks",
        json!({"name": "a", "kind": "overlay", "subnet": "10.80.9.0/24"}),
    )
    .await;
    post(&c, "/api/v1/security-groups", json!({"name": "h1"})).await;

    // Rules.
    for rule in [
        json!({"name": "keep-ab", "strength": "should", "kind": "affinity", "vms": ["a", "b"]}),
        json!({"name": "spread", "strength": "should", "kind": "anti_affinity", "vms": ["a", "c"]}),
        json!({"name": "pin", "strength": "must", "kind": "run_on", "vms": ["c"], "hosts": ["h2"]}),
        json!({"name": "avoid", "strength": "should", "kind": "not_on", "vms": ["a", "b"],
            "hosts": ["h3"]}),
    ] {
        post(&c, "/api/v1/rules", rule).await;
    }
    for (query, want) in [
        ("vm=a", vec!["avoid", "keep-ab", "spread"]),
        ("vm=c", vec!["pin", "spread"]),
        ("host=h2", vec!["pin"]),
        ("host=h3", vec!["avoid"]),
        ("host=h1", vec![]),
        ("kind=anti_affinity", vec!["spread"]),
        ("strength=must", vec!["pin"]),
        ("vm=b&strength=should&kind=not_on", vec!["avoid"]),
        ("vm=d", vec![]),
    ] {
        let got = all(&c, &format!("/api/v1/rules?{query}")).await;
        assert_eq!(keys(&got, "name"), want, "{query}");
    }
    let pages = paged(&c, "/api/v1/rules", "vm=a&strength=should", 2).await;
    assert_eq!(keys(&pages, "name"), ["avoid", "keep-ab", "spread"]);
    refused(
        &c,
        &[
            "/api/v1/rules?kind=near",
            "/api/v1/rules?kind=anti-affinity",
            "/api/v1/rules?strength=hard",
            "/api/v1/rules?vm=A",
            "/api/v1/rules?hosts=h1",
        ],
    )
    .await;

    // Recommendations: h1 in maintenance, manual mode: a and b are to leave it.
    let settings = json!({"ratios": {"cpu": 4.0, "memory": 1.0},
        "balancing": {"mode": "manual", "interval_s": 3600, "level": 1}});
    let r = c
        .call("PUT", "/api/v1/settings", Some(&settings.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Its evacuation's task waits for the recommendations to be applied: not followed.
    let r = c
        .call_raw(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance": true}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/drs/run", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let recs = all(&c, "/api/v1/drs/recommendations").await;
    let moved: Vec<String> = keys(&recs, "vm");
    assert!(
        moved.contains(&"a".to_string()) && moved.contains(&"b".to_string()),
        "{recs:?}"
    );
    let names_vm = |r: &Value, vm: &str| {
        r["vm"] == vm || r["with"].as_array().unwrap().iter().any(|w| w == vm)
    };
    for vm in ["a", "b", "c"] {
        let got = all(&c, &format!("/api/v1/drs/recommendations?vm={vm}")).await;
        let want: Vec<Value> = recs.iter().filter(|r| names_vm(r, vm)).cloned().collect();
        assert_eq!(got, want, "vm={vm}");
    }
    for host in ["h1", "h2", "h3"] {
        let got = all(&c, &format!("/api/v1/drs/recommendations?host={host}")).await;
        let want: Vec<Value> = recs
            .iter()
            .filter(|r| r["from"] == host || r["to"] == host)
            .cloned()
            .collect();
        assert_eq!(got, want, "host={host}");
    }
    assert_eq!(
        all(&c, "/api/v1/drs/recommendations?host=h1").await.len(),
        recs.len(),
        "every move leaves h1"
    );
    let one = all(&c, "/api/v1/drs/recommendations?vm=a&host=h1").await;
    assert!(!one.is_empty() && one.len() < recs.len(), "{one:?}");
    paged(&c, "/api/v1/drs/recommendations", "host=h1", 1).await;
    refused(
        &c,
        &[
            "/api/v1/drs/recommendations?vm=A",
            "/api/v1/drs/recommendations?from=h1",
        ],
    )
    .await;

    // Events: about a VM (its own, its migrations, the balancer's), about a host, of a kind.
    let events = all(&c, "/api/v1/events").await;
    let about = |e: &Value, kinds: &[&str], object: &str| {
        e["object"] == object && kinds.iter().any(|k| e["kind"] == *k)
    };
    for (query, kinds, object) in [
        ("vm=a", &["vm", "migration", "drs"][..], "a"),
        ("vm=c", &["vm", "migration", "drs"], "c"),
        ("host=h1", &["host"], "h1"),
        ("kind=network", &["network"], "a"),
        ("kind=rule&vm=a", &[], ""),
        ("kind=vm&vm=b", &["vm"], "b"),
    ] {
        let got = all(&c, &format!("/api/v1/events?{query}")).await;
        let want: Vec<Value> = events
            .iter()
            .filter(|e| about(e, kinds, object))
            .cloned()
            .collect();
        assert_eq!(got, want, "{query}");
        if !kinds.is_empty() {
            assert!(!got.is_empty(), "{query}: {events:?}");
        }
    }
    // The objects that share a name with the VM and the host are left out.
    assert!(events
        .iter()
        .any(|e| e["kind"] == "network" && e["object"] == "a"));
    assert!(events
        .iter()
        .any(|e| e["kind"] == "security-group" && e["object"] == "h1"));
    let pages = paged(&c, "/api/v1/events", "vm=a", 1).await;
    assert!(!pages.is_empty());
    let pages = paged(&c, "/api/v1/events", "kind=host", 2).await;
    assert!(pages.len() > 2, "{pages:?}");
    refused(
        &c,
        &[
            "/api/v1/events?kind=VM",
            "/api/v1/events?vm=",
            "/api/v1/events?host=h%2F1",
            "/api/v1/events?object=a",
        ],
    )
    .await;
    c.shutdown().await;
}

/// A host with a VLAN trunk at `address`.
async fn trunk_host(c: &TestConsole, name: &str, address: &str) -> FakeAgent {
    let state = FakeState {
        address: Some(address.into()),
        trunk: Some("eth1".into()),
        ..FakeState::default()
    };
    FakeAgent::join_and_connect_with(c, name, HOST, state).await
}

#[tokio::test]
async fn networks_security_groups_routers_and_floating_ips() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = trunk_host(&c, "h1", "10.77.0.11").await;
    let _h2 = trunk_host(&c, "h2", "10.77.0.12").await;
    for (name, kind, subnet) in [
        ("blue", "overlay", "10.80.1.0/24"),
        ("green", "overlay", "10.80.2.0/24"),
        ("red", "vlan", "10.83.0.0/24"),
        ("spare", "overlay", "10.80.3.0/24"),
    ] {
        post(
            &c,
            "/api/v1/networks",
            json!({"name": name, "kind": kind, "subnet": subnet}),
        )
        .await;
    }
    post(
        &c,
        "/api/v1/networks",
        json!({"name": "external", "kind": "vlan", "subnet": "10.82.0.0/24",
            "gateway": "10.82.0.254"}),
    )
    .await;
    for g in ["db", "idle", "web"] {
        post(&c, "/api/v1/security-groups", json!({"name": g})).await;
    }
    // Routers: r1 on blue with an uplink, r2 on green with an uplink, r3 on spare.
    for r in ["r1", "r2", "r3"] {
        post(&c, "/api/v1/routers", json!({"name": r})).await;
    }
    for (r, n) in [("r1", "blue"), ("r2", "green"), ("r3", "spare")] {
        post(
            &c,
            &format!("/api/v1/routers/{r}/interfaces"),
            json!({"network": n}),
        )
        .await;
    }
    for (r, ip) in [("r1", "10.82.0.10"), ("r2", "10.82.0.11")] {
        let body = json!({"network": "external", "ip": ip}).to_string();
        let u = c
            .call("PUT", &format!("/api/v1/routers/{r}/uplink"), Some(&body))
            .await;
        assert_eq!(u.status, 200, "{:?}", u.body);
    }
    // a on h1: blue (web), green; b on h2: blue (db); c on h2: red (db, web).
    vm(
        &c,
        "a",
        "h1",
        false,
        json!([{"network": "blue", "security_groups": ["web"]}, {"network": "green"}]),
    )
    .await;
    vm(
        &c,
        "b",
        "h2",
        false,
        json!([{"network": "blue", "security_groups": ["db"]}]),
    )
    .await;
    vm(
        &c,
        "c",
        "h2",
        false,
        json!([{"network": "red", "security_groups": ["db", "web"]}]),
    )
    .await;

    // Networks: by kind, by the hosts and VMs of their ports.
    for (query, want) in [
        ("kind=vlan", vec!["external", "red"]),
        ("kind=overlay", vec!["blue", "green", "spare"]),
        ("host=h2", vec!["blue", "red"]),
        ("host=h1", vec!["blue", "green"]),
        ("vm=a", vec!["blue", "green"]),
        ("vm=c", vec!["red"]),
        ("kind=overlay&host=h2", vec!["blue"]),
        ("kind=vlan&vm=a", vec![]),
        ("host=h3", vec![]),
    ] {
        let got = all(&c, &format!("/api/v1/networks?{query}")).await;
        assert_eq!(keys(&got, "name"), want, "{query}");
    }
    paged(&c, "/api/v1/networks", "kind=overlay", 2).await;
    paged(&c, "/api/v1/networks", "host=h2&vm=b", 1).await;

    // Security groups: by the VMs and networks of their NICs.
    for (query, want) in [
        ("vm=a", vec!["web"]),
        ("vm=b", vec!["db"]),
        ("vm=c", vec!["db", "web"]),
        ("network=red", vec!["db", "web"]),
        ("network=blue", vec!["db", "web"]),
        ("network=green", vec![]),
        ("vm=a&network=blue", vec!["web"]),
        ("vm=b&network=red", vec!["db"]),
    ] {
        let got = all(&c, &format!("/api/v1/security-groups?{query}")).await;
        assert_eq!(keys(&got, "name"), want, "{query}");
    }
    paged(&c, "/api/v1/security-groups", "network=blue", 1).await;

    let routers = all(&c, "/api/v1/routers").await;
    for (query, want) in [
        ("network=blue", vec!["r1"]),
        ("network=spare", vec!["r3"]),
        ("network=external", vec!["r1", "r2"]),
        ("network=red", vec![]),
    ] {
        let got = all(&c, &format!("/api/v1/routers?{query}")).await;
        assert_eq!(keys(&got, "name"), want, "{query}");
    }
    for edge in ["h1", "h2"] {
        let got = all(&c, &format!("/api/v1/routers?edge={edge}")).await;
        let want: Vec<Value> = routers
            .iter()
            .filter(|r| r["uplink"]["edge"] == edge)
            .cloned()
            .collect();
        assert_eq!(got, want, "edge={edge}");
    }
    let edged = all(&c, "/api/v1/routers?edge=h1").await.len()
        + all(&c, "/api/v1/routers?edge=h2").await.len();
    assert_eq!(edged, 2, "r1 and r2 have an edge, r3 none: {routers:?}");
    paged(&c, "/api/v1/routers", "network=external", 1).await;

    // Floating IPs: a's blue NIC and b's through r1, a's green NIC through r2.
    for (vm, ip, nic) in [
        ("a", "10.82.0.20", 0),
        ("b", "10.82.0.21", 0),
        ("a", "10.82.0.22", 1),
    ] {
        post(
            &c,
            &format!("/api/v1/vms/{vm}/floating-ips"),
            json!({"ip": ip, "nic": nic}),
        )
        .await;
    }
    for (query, want) in [
        ("vm=a", vec!["10.82.0.20", "10.82.0.22"]),
        ("vm=c", vec![]),
        ("router=r1", vec!["10.82.0.20", "10.82.0.21"]),
        ("router=r2", vec!["10.82.0.22"]),
        ("router=r3", vec![]),
        ("network=green", vec!["10.82.0.22"]),
        ("network=blue", vec!["10.82.0.20", "10.82.0.21"]),
        ("vm=a&router=r1", vec!["10.82.0.20"]),
        ("vm=b&network=green", vec![]),
    ] {
        let got = all(&c, &format!("/api/v1/floating-ips?{query}")).await;
        assert_eq!(keys(&got, "ip"), want, "{query}");
    }
    let pages = paged(&c, "/api/v1/floating-ips", "router=r1", 1).await;
    assert_eq!(keys(&pages, "ip"), ["10.82.0.20", "10.82.0.21"]);

    refused(
        &c,
        &[
            "/api/v1/networks?kind=vxlan",
            "/api/v1/networks?host=H1",
            "/api/v1/networks?subnet=10.80.1.0",
            "/api/v1/security-groups?vm=",
            "/api/v1/security-groups?group=web",
            "/api/v1/routers?edge=h_1",
            "/api/v1/routers?network=a.b",
            "/api/v1/floating-ips?router=R1",
            "/api/v1/floating-ips?ip=10.82.0.20",
            "/api/v1/floating-ips?vm=a&limit=x",
        ],
    )
    .await;
    c.shutdown().await;
}
