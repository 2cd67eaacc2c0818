//! The REST API alone, in process, against a stub console (no store, no agents): every route
//! parses into the right command, and each role reaches exactly its routes. The stub and the
//! route table: `common/api_stub.rs`, `common/api_routes.rs`; the errors: `api_errors.rs`; random
//! requests: `api_random.rs`.

mod api_common;

use std::sync::Arc;

use api_common::routes::{routes, QueryKind};
use api_common::stub::{check_problem, expected, runtime, send, Stub, OPERATOR, TOKEN, VIEWER};
use vinfra_console::interface::Command;
use vinfra_types::api::StopVmRequest;
use vinfra_types::auth::Actor;
use vinfra_types::router::AddFloatingIpRequest;

/// The role check is the middleware's, before any handler: a token below a route's role gets a
/// 403 problem and the console never sees the command; at or above it, the command arrives
/// with the token as its actor. Expected roles written from docs/design.md, "Roles and tokens".
#[test]
fn each_role_reaches_exactly_its_routes() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let operator_routes: &[(&str, &str)] = &[
        ("GET", "/api/v1/vms/{name}/console"),
        ("POST", "/api/v1/drs/recommendations/{id}/apply"),
    ];
    let admin_routes: &[(&str, &str)] = &[
        ("PATCH", "/api/v1/hosts/{name}"),
        ("DELETE", "/api/v1/hosts/{name}"),
        ("POST", "/api/v1/hosts/{name}/fence"),
        ("PUT", "/api/v1/settings"),
        ("POST", "/api/v1/join-tokens"),
        ("POST", "/api/v1/token/rotate"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{name}"),
        ("POST", "/api/v1/rules"),
        ("DELETE", "/api/v1/rules/{name}"),
        ("POST", "/api/v1/drs/run"),
    ];
    let mut allowed = [0usize; 3];
    for r in routes() {
        let route = (r.method, r.path);
        let needed = if admin_routes.contains(&route) {
            2
        } else if operator_routes.contains(&route) || r.method != "GET" {
            1
        } else {
            0
        };
        let path = r
            .path
            .replace("{name}", "web-1")
            .replace("{id}", "7")
            .replace("{index}", "7")
            .replace("{network}", "blue")
            .replace("{addr}", "10.9.0.0")
            .replace("{len}", "16")
            .replace("{ip}", "10.82.0.20");
        for (rank, (token, name)) in [(VIEWER, "viewer"), (OPERATOR, "operator"), (TOKEN, "stub")]
            .into_iter()
            .enumerate()
        {
            let a = rt
                .block_on(send(
                    &stub,
                    r.method,
                    &path,
                    r.sample.as_bytes().to_vec(),
                    Some(&format!("Bearer {token}")),
                ))
                .unwrap();
            let what = format!("{name}: {} {path}", r.method);
            if rank >= needed {
                assert_eq!(a.status, 204, "{what}");
                assert_eq!(stub.take_actors(), vec![Actor::token(name)], "{what}");
                allowed[rank] += 1;
            } else {
                assert_eq!(a.status, 403, "{what}");
                let p = check_problem(&a).unwrap();
                assert_eq!(p["type"], "/problems/forbidden", "{what}");
                assert!(stub.take_actors().is_empty(), "{what}: reached the console");
            }
            stub.take_calls();
        }
    }
    // The table's 23 reads for a viewer (its 25 GETs but the tokens and a VM's console), all
    // but the 12 admin routes for an operator, all 63 for an admin.
    assert_eq!(allowed, [23, 51, 63]);
}

#[test]
fn every_route_parses_into_its_command() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let auth = format!("Bearer {TOKEN}");
    let table = routes();
    assert_eq!(table.len(), 63, "every endpoint");
    for r in &table {
        let path = r
            .path
            .replace("{name}", "web-1")
            .replace("{id}", "7")
            .replace("{index}", "7")
            .replace("{network}", "blue")
            .replace("{addr}", "10.9.0.0")
            .replace("{len}", "16")
            .replace("{ip}", "10.82.0.20");
        let query = match r.query {
            QueryKind::Force => "force=true",
            QueryKind::Bytes => "bytes=100",
            QueryKind::Flows => "minutes=7&by=router&top=3",
            QueryKind::Page => "limit=5&page_token=766d2d37",
            QueryKind::Ignored => "",
        };
        let uri = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{query}")
        };
        let body = r.sample.as_bytes().to_vec();
        let a = rt
            .block_on(send(&stub, r.method, &uri, body.clone(), Some(&auth)))
            .unwrap();
        assert_eq!(a.status, 204, "{} {uri}", r.method);
        let want = expected(r.method, &path, query, &body, Some(&auth)).expect("well formed");
        assert_eq!(stub.take_calls(), vec![want.clone()], "{} {uri}", r.method);
        // Spot checks of what the table computes.
        match (r.method, r.path) {
            ("DELETE", "/api/v1/vms/{name}") => assert_eq!(
                want,
                Command::DeleteVm {
                    name: "web-1".into(),
                    force: true
                }
            ),
            ("GET", "/api/v1/vms/{name}/console") => assert_eq!(
                want,
                Command::ConsoleLog {
                    name: "web-1".into(),
                    bytes: Some(100),
                    from: None,
                }
            ),
            ("POST", "/api/v1/drs/recommendations/{id}/apply") => {
                assert_eq!(want, Command::ApplyRecommendation { id: 7 })
            }
            ("DELETE", "/api/v1/security-groups/{name}/rules/{id}") => assert_eq!(
                want,
                Command::DeleteSgRule {
                    group: "web-1".into(),
                    id: 7
                }
            ),
            ("DELETE", "/api/v1/routers/{name}/interfaces/{network}") => assert_eq!(
                want,
                Command::DetachNetwork {
                    router: "web-1".into(),
                    network: "blue".into()
                }
            ),
            ("DELETE", "/api/v1/routers/{name}/routes/{addr}/{len}") => assert_eq!(
                want,
                Command::DeleteRoute {
                    router: "web-1".into(),
                    prefix: "10.9.0.0/16".into()
                }
            ),
            ("DELETE", "/api/v1/vms/{name}/floating-ips/{ip}") => assert_eq!(
                want,
                Command::DeleteFloatingIp {
                    vm: "web-1".into(),
                    ip: "10.82.0.20".into()
                }
            ),
            ("POST", "/api/v1/vms/{name}/floating-ips") => assert_eq!(
                want,
                Command::AddFloatingIp {
                    vm: "web-1".into(),
                    request: AddFloatingIpRequest {
                        ip: "10.82.0.20".into(),
                        nic: Some(1)
                    }
                }
            ),
            ("PATCH", "/api/v1/vms/{name}/nics/{index}") => {
                let Command::UpdateNic { vm, index, update } = &want else {
                    panic!("{want:?}");
                };
                assert_eq!((vm.as_str(), *index), ("web-1", 7));
                assert_eq!(update.security_groups, Some(vec!["web".to_string()]));
            }
            ("POST", "/api/v1/hosts/{name}/fence") => assert_eq!(
                want,
                Command::FenceHost {
                    name: "web-1".into(),
                    force: true
                }
            ),
            ("PATCH", "/api/v1/vms/{name}") => {
                let Command::UpdateVm { update, .. } = &want else {
                    panic!("{want:?}");
                };
                let ha = update.ha.clone().unwrap();
                assert_eq!(
                    (ha.enabled, ha.priority.map(|p| p.as_str()), ha.start_after),
                    (Some(true), Some("high"), Some(None))
                );
            }
            _ => {}
        }
    }
    // Optional bodies: empty means the defaults.
    let a = rt
        .block_on(send(
            &stub,
            "POST",
            "/api/v1/vms/web-1/stop",
            vec![],
            Some(&auth),
        ))
        .unwrap();
    assert_eq!(a.status, 204);
    assert_eq!(
        stub.take_calls(),
        vec![Command::StopVm {
            name: "web-1".into(),
            request: StopVmRequest::default()
        }]
    );
}
