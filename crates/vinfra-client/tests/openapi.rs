//! The client against the API's description: every typed method sends the method and path of
//! one operation of `docs/openapi.json`, with the token and, where the operation takes one, a
//! JSON body; and every operation there has a method here (but the tasks' event stream, which
//! the client does not follow). Lists ask for their first page (`?limit=1000`, after the filter's
//! query when one is given).
//!
//! A small HTTP server on 127.0.0.1 records each request and answers it with an empty 200.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use vinfra_client::{Client, Method, RawBody};
use vinfra_types::api::{
    ClusterSettings, CreateVmRequest, MigrateVmRequest, StopVmRequest, UpdateHostRequest,
    UpdateNicRequest, UpdateVmRequest,
};
use vinfra_types::auth::{CreateTokenRequest, Role};
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
use vinfra_types::filter;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::router::{AttachNetworkRequest, CreateRouterRequest, RouterStaticRoute};
use vinfra_types::security_group::{SecurityGroup, SgRule};
use vinfra_types::{BootSource, VmSpec};

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Serves requests on a free port until the test ends; returns its URL and what it saw.
fn recorder() -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            );
            let (mut authorization, mut content_type, mut length) = (None, None, 0usize);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or((&header, ""));
                let value = value.trim().to_string();
                match name.to_ascii_lowercase().as_str() {
                    "authorization" => authorization = Some(value),
                    "content-type" => content_type = Some(value),
                    "content-length" => length = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(Seen {
                method,
                path,
                authorization,
                content_type,
                body,
            });
        }
    });
    (url, rx)
}

/// `(METHOD, path template)` of every operation in docs/openapi.json, and whether it takes a
/// body.
fn operations() -> BTreeSet<(String, String, bool)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("openapi.json"))
        .expect("openapi.json is JSON");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            ops.insert((
                method.to_ascii_uppercase(),
                path.clone(),
                op.get("requestBody").is_some(),
            ));
        }
    }
    ops
}

fn vm_request() -> CreateVmRequest {
    CreateVmRequest {
        spec: VmSpec {
            name: "n".into(),
            vcpus: 1,
            memory_mib: 128,
            boot: BootSource::Disk,
            disks: Vec::new(),
            nics: Vec::new(),
            ha: Default::default(),
        },
        host: None,
        start: true,
        count: None,
    }
}

#[test]
fn every_method_is_one_documented_operation_and_every_operation_has_a_method() {
    let (url, seen) = recorder();
    let c = Client::new(&url, "tok", None).expect("client");
    // Each call gets an empty answer: the typed ones fail to decode it, which is not what is
    // tested here. Names are `n` (a router's network `net`), the recommendation id is 7, a
    // route's prefix 10.9.0.0/16.
    let _ = c.hosts();
    let _ = c.host("n");
    let _ = c.update_host("n", &UpdateHostRequest::default());
    let _ = c.delete_host("n");
    let _ = c.host_switch("n");
    let _ = c.fence_host("n", false);
    let _ = c.settings();
    let _ = c.put_settings(&ClusterSettings::default());
    let _ = c.create_join_token();
    let _ = c.rotate_token();
    let _ = c.tokens();
    let _ = c.create_token(&CreateTokenRequest {
        name: "n".into(),
        role: Role::Viewer,
        expires_in_s: None,
    });
    let _ = c.revoke_token("n");
    let _ = c.vms();
    let _ = c.vm("n");
    let _ = c.create_vm(&vm_request());
    let _ = c.update_vm("n", &UpdateVmRequest::default());
    let _ = c.delete_vm("n", false);
    let _ = c.start_vm("n");
    let _ = c.stop_vm("n", &StopVmRequest::default());
    let _ = c.reboot_vm("n");
    let _ = c.console_log("n", None);
    let _ = c.console_from("n", Some(0));
    let _ = c.console_input("n", "ls\r");
    let _ = c.migrate_vm("n", &MigrateVmRequest::default());
    let _ = c.migration("n");
    let _ = c.cancel_migration("n");
    let _ = c.events();
    let _ = c.revoked_certificates();
    let _ = c.flows(&vinfra_types::flows::FlowQuery::default());
    let _ = c.set_uplink(
        "n",
        &vinfra_types::router::SetUplinkRequest {
            network: "n".into(),
            ip: "10.0.0.1".into(),
        },
    );
    let _ = c.remove_uplink("n");
    let _ = c.floating_ips();
    let _ = c.add_floating_ip(
        "n",
        &vinfra_types::router::AddFloatingIpRequest {
            ip: "10.0.0.2".into(),
            nic: None,
        },
    );
    let _ = c.delete_floating_ip("n", std::net::Ipv4Addr::new(10, 0, 0, 2));
    let _ = c.rules();
    let _ = c.rule("n");
    let _ = c.create_rule(&PlacementRule {
        name: "n".into(),
        strength: RuleStrength::Must,
        kind: RuleKind::AntiAffinity,
        vms: vec!["a".into(), "b".into()],
        hosts: Vec::new(),
    });
    let _ = c.delete_rule("n");
    let _ = c.ha();
    let _ = c.drs();
    let _ = c.run_drs();
    let _ = c.recommendations();
    // Reads the recommendations (for the VM it moves), then applies.
    let _ = c.apply_recommendation(7);
    let _ = c.apply_recommendation_task(7);
    let _ = c.networks();
    let _ = c.network("n");
    let _ = c.create_network(&CreateNetworkRequest {
        name: "n".into(),
        kind: NetworkKind::Overlay,
        vni: None,
        vlan_id: None,
        subnet: "10.0.0.0/24".into(),
        gateway: None,
        mtu: None,
    });
    let _ = c.delete_network("n");
    let _ = c.network_counters("n");
    let _ = c.vm_counters("n");
    let _ = c.vm_usage("n");
    let _ = c.host_usage("n");
    let _ = c.update_nic("n", 3, &UpdateNicRequest::default());
    let _ = c.security_groups();
    let _ = c.security_group("n");
    let _ = c.security_group_counters("n");
    let _ = c.create_security_group(&SecurityGroup {
        name: "n".into(),
        description: None,
        rules: Vec::new(),
    });
    let _ = c.delete_security_group("n");
    let rule: SgRule = serde_json::from_str(r#"{"direction":"ingress","remote_cidr":"0.0.0.0/0"}"#)
        .expect("a rule");
    let _ = c.add_security_group_rule("n", &rule);
    let _ = c.delete_security_group_rule("n", 7);
    let _ = c.routers();
    let _ = c.router("n");
    let _ = c.create_router(&CreateRouterRequest { name: "n".into() });
    let _ = c.delete_router("n");
    let _ = c.attach_network(
        "n",
        &AttachNetworkRequest {
            network: "net".into(),
            gateway: None,
        },
    );
    let _ = c.detach_network("n", "net");
    let _ = c.add_route(
        "n",
        &RouterStaticRoute {
            prefix: "10.9.0.0/16".into(),
            via: "10.0.0.5".into(),
        },
    );
    let _ = c.delete_route("n", std::net::Ipv4Addr::new(10, 9, 0, 0), 16);
    let _ = c.openapi();
    let _ = c.tasks(&vinfra_types::task::TaskFilter::default());
    let _ = c.tasks(&vinfra_types::task::TaskFilter {
        state: Some(vinfra_types::task::TaskState::Running),
        kind: Some(vinfra_types::task::TaskKind::VmStop),
        target: Some("n".into()),
    });
    // Each list's filter, as the first page's query.
    let name = || Some("n".to_string());
    let _ = c.vms_where(&vinfra_types::api::VmFilter {
        host: name(),
        state: Some(vinfra_types::PowerState::Stopped),
        network: name(),
    });
    let _ = c.hosts_where(&filter::HostFilter {
        status: Some(vinfra_types::HostStatus::Disconnected),
        maintenance: Some(true),
    });
    let _ = c.tokens_where(&filter::TokenFilter {
        role: Some(Role::Admin),
        state: Some(vinfra_types::auth::TokenState::Expired),
    });
    let _ = c.events_where(&filter::EventFilter {
        kind: Some("vm".into()),
        vm: name(),
        host: name(),
    });
    let _ = c.revoked_certificates_where(&filter::RevokedCertificateFilter { host: name() });
    let _ = c.rules_where(&filter::RuleFilter {
        vm: name(),
        host: name(),
        kind: Some(RuleKind::NotOn),
        strength: Some(RuleStrength::Should),
    });
    let _ = c.recommendations_where(&filter::RecommendationFilter {
        vm: name(),
        host: name(),
    });
    let _ = c.networks_where(&filter::NetworkFilter {
        kind: Some(NetworkKind::Vlan),
        host: name(),
        vm: name(),
    });
    let _ = c.security_groups_where(&filter::SecurityGroupFilter {
        vm: name(),
        network: name(),
    });
    let _ = c.routers_where(&filter::RouterFilter {
        network: name(),
        edge: name(),
    });
    let _ = c.floating_ips_where(&filter::FloatingIpFilter {
        vm: name(),
        router: name(),
        network: name(),
    });
    let _ = c.task(7);
    let _ = c.poll_task(7, 5);
    let _ = c.wait_task(7, None);
    let _ = c.cancel_task(7);
    // The query parameters documented on four operations.
    let _ = c.delete_vm("n", true);
    let _ = c.console_log("n", Some(100));
    let _ = c.fence_host("n", true);
    let _ = c.flows(&vinfra_types::flows::FlowQuery {
        minutes: 60,
        by: vinfra_types::flows::FlowGrouping::Router,
        top: 3,
    });
    // A raw request goes out as it is.
    let _ = c.raw(
        Method::POST,
        &vinfra_client::paths::vms(),
        RawBody::Bytes {
            content_type: "application/json",
            bytes: b"{not json",
        },
    );
    drop(c);

    // The recorder answers each request before it reports it, so two quiet seconds mean all
    // are in; the raw request came last.
    let mut requests: Vec<Seen> =
        std::iter::from_fn(|| seen.recv_timeout(Duration::from_secs(2)).ok()).collect();
    let raw = requests.pop().expect("requests");
    assert_eq!(
        (raw.method.as_str(), raw.path.as_str(), raw.body.as_slice()),
        ("POST", "/api/v1/vms", &b"{not json"[..])
    );
    let mut called = BTreeSet::new();
    let mut queries = BTreeSet::new();
    for r in &requests {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer tok"),
            "{} {}",
            r.method,
            r.path
        );
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        if !query.is_empty() {
            queries.insert(format!("{} {}", r.method, r.path));
        }
        let template: Vec<String> = path
            .split('/')
            .map(|s| match s {
                "n" => "{name}".to_string(),
                "7" => "{id}".to_string(),
                "3" => "{index}".to_string(),
                "net" => "{network}".to_string(),
                "10.9.0.0" => "{addr}".to_string(),
                "16" => "{len}".to_string(),
                "10.0.0.2" => "{ip}".to_string(),
                s => s.to_string(),
            })
            .collect();
        let with_body = !r.body.is_empty();
        if with_body {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/json"),
                "{} {}",
                r.method,
                r.path
            );
            serde_json::from_slice::<Value>(&r.body).expect("a JSON body");
        }
        called.insert((r.method.clone(), template.join("/"), with_body));
    }
    // The tasks' operations, documented once the console serves them; their event stream is
    // for clients that watch every task, not this one.
    let mut documented = operations();
    for (method, path) in [
        ("GET", "/api/v1/tasks"),
        ("GET", "/api/v1/tasks/{id}"),
        ("DELETE", "/api/v1/tasks/{id}"),
    ] {
        documented.insert((method.to_string(), path.to_string(), false));
    }
    documented.remove(&("GET".to_string(), "/api/v1/tasks/stream".to_string(), false));
    assert_eq!(called, documented, "the client vs docs/openapi.json");
    let lists = [
        "hosts",
        "tokens",
        "vms",
        "events",
        "rules",
        "drs/recommendations",
        "networks",
        "security-groups",
        "routers",
        "floating-ips",
        "tasks",
        "revoked-certificates",
    ];
    let mut expected: BTreeSet<String> = lists
        .iter()
        .map(|l| format!("GET /api/v1/{l}?limit=1000"))
        .collect();
    expected.extend(
        [
            "DELETE /api/v1/vms/n?force=true",
            "GET /api/v1/vms/n/console?bytes=100",
            "GET /api/v1/vms/n/console?from=0",
            "POST /api/v1/hosts/n/fence?force=true",
            "GET /api/v1/flows?minutes=60&by=router&top=3",
            "GET /api/v1/tasks?state=running&kind=vm_stop&target=n&limit=1000",
            "GET /api/v1/tasks/7?wait_s=5",
            "GET /api/v1/tasks/7?wait_s=30",
            "GET /api/v1/vms?host=n&state=stopped&network=n&limit=1000",
            "GET /api/v1/hosts?status=disconnected&maintenance=true&limit=1000",
            "GET /api/v1/tokens?role=admin&state=expired&limit=1000",
            "GET /api/v1/events?kind=vm&vm=n&host=n&limit=1000",
            "GET /api/v1/revoked-certificates?host=n&limit=1000",
            "GET /api/v1/rules?vm=n&host=n&kind=not_on&strength=should&limit=1000",
            "GET /api/v1/drs/recommendations?vm=n&host=n&limit=1000",
            "GET /api/v1/networks?kind=vlan&host=n&vm=n&limit=1000",
            "GET /api/v1/security-groups?vm=n&network=n&limit=1000",
            "GET /api/v1/routers?network=n&edge=n&limit=1000",
            "GET /api/v1/floating-ips?vm=n&router=n&network=n&limit=1000",
        ]
        .map(String::from),
    );
    assert_eq!(queries, expected);
}
