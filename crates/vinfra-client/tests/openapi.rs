//! The client against the API's description: every typed method sends the method and path of
//! one operation of `docs/openapi.json`, with the token and, where the operation takes one, a
//! JSON body; and every operation there has a method here.
//!
//! A small HTTP server on 127.0.0.1 records each request and answers it with an empty 200.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::Value;
use vinfra_client::{Client, Method, RawBody};
use vinfra_types::api::{
    ClusterSettings, CreateVmRequest, MigrateVmRequest, StopVmRequest, UpdateHostRequest,
    UpdateVmRequest,
};
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
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
    }
}

#[test]
fn every_method_is_one_documented_operation_and_every_operation_has_a_method() {
    let (url, seen) = recorder();
    let c = Client::new(&url, "tok", None).expect("client");
    // Each call gets an empty answer: the typed ones fail to decode it, which is not what is
    // tested here. Names are `n`, the recommendation id is 7.
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
    let _ = c.vms();
    let _ = c.vm("n");
    let _ = c.create_vm(&vm_request());
    let _ = c.update_vm("n", &UpdateVmRequest::default());
    let _ = c.delete_vm("n", false);
    let _ = c.start_vm("n");
    let _ = c.stop_vm("n", &StopVmRequest::default());
    let _ = c.reboot_vm("n");
    let _ = c.console_log("n", None);
    let _ = c.migrate_vm("n", &MigrateVmRequest::default());
    let _ = c.migration("n");
    let _ = c.cancel_migration("n");
    let _ = c.events();
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
    let _ = c.apply_recommendation(7);
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
    let _ = c.openapi();
    // The query parameters documented on three operations.
    let _ = c.delete_vm("n", true);
    let _ = c.console_log("n", Some(100));
    let _ = c.fence_host("n", true);
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

    let requests: Vec<Seen> = seen.iter().take(42).collect();
    let mut called = BTreeSet::new();
    let mut queries = Vec::new();
    for r in &requests[..38] {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer tok"),
            "{} {}",
            r.method,
            r.path
        );
        let template: Vec<String> = r
            .path
            .split('/')
            .map(|s| match s {
                "n" => "{name}".to_string(),
                "7" => "{id}".to_string(),
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
    for r in &requests[38..41] {
        queries.push(format!("{} {}", r.method, r.path));
    }
    assert_eq!(called, operations(), "the client vs docs/openapi.json");
    assert_eq!(
        queries,
        [
            "DELETE /api/v1/vms/n?force=true",
            "GET /api/v1/vms/n/console?bytes=100",
            "POST /api/v1/hosts/n/fence?force=true"
        ]
    );
    let raw = &requests[41];
    assert_eq!(
        (raw.method.as_str(), raw.path.as_str(), raw.body.as_slice()),
        ("POST", "/api/v1/vms", &b"{not json"[..])
    );
}
