//! The REST API alone, in process, against a stub console (no store, no agents): every route
//! parses into the right command, every error kind renders as problem+json with its status, and
//! random requests never panic the router, get a problem+json whenever they are refused, and
//! reach the stub (with exactly the command the request means) only when well formed.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::de::DeserializeOwned;
use tower::ServiceExt;
use vinfra_console::api::{router, MAX_BODY};
use vinfra_console::error::Object;
use vinfra_console::interface::{
    Command, ConsoleApi, Error, ErrorKind, Reply, TokenHolder, TokenRefusal,
};
use vinfra_placement::fit::{MemoryShort, Shortfall};
use vinfra_placement::{FitError, NoHost, Quoted, Unfit, VmRequest};
use vinfra_types::api::{
    ClusterSettings, CreateVmRequest, JoinTokenResponse, MigrateVmRequest, StopVmRequest,
    UpdateHostRequest, UpdateNicRequest, UpdateVmRequest,
};
use vinfra_types::auth::{Actor, CreateTokenRequest, Role};
use vinfra_types::balancing::PlacementRule;
use vinfra_types::ha::FenceOutcome;
use vinfra_types::network::CreateNetworkRequest;
use vinfra_types::router::{
    AddFloatingIpRequest, AttachNetworkRequest, CreateRouterRequest, RouterStaticRoute,
    SetUplinkRequest,
};
use vinfra_types::security_group::{SecurityGroup, SgRule};

const TOKEN: &str = "the-token";
/// The stub's viewer and operator tokens (TOKEN is its admin token, `stub`).
const VIEWER: &str = "the-viewer";
const OPERATOR: &str = "the-operator";

/// A console that records every command and answers [`Reply::Done`], or the error or reply set
/// for the next command.
#[derive(Default)]
struct Stub {
    calls: Mutex<Vec<Command>>,
    actors: Mutex<Vec<Actor>>,
    fail: Mutex<Option<Error>>,
    reply: Mutex<Option<Reply>>,
}

impl ConsoleApi for Stub {
    async fn execute(self: &Arc<Self>, actor: Actor, command: Command) -> Result<Reply, Error> {
        self.actors.lock().unwrap().push(actor);
        self.calls.lock().unwrap().push(command);
        if let Some(e) = self.fail.lock().unwrap().take() {
            return Err(e);
        }
        Ok(self.reply.lock().unwrap().take().unwrap_or(Reply::Done))
    }

    fn authenticate(&self, token: &str) -> Result<TokenHolder, TokenRefusal> {
        let (name, role) = match token {
            TOKEN => ("stub", Role::Admin),
            VIEWER => ("viewer", Role::Viewer),
            OPERATOR => ("operator", Role::Operator),
            _ => return Err(TokenRefusal::Unknown),
        };
        Ok(TokenHolder {
            name: name.into(),
            role,
        })
    }
}

impl Stub {
    fn take_actors(&self) -> Vec<Actor> {
        std::mem::take(&mut *self.actors.lock().unwrap())
    }

    fn take_calls(&self) -> Vec<Command> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

struct Answer {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    body: Vec<u8>,
}

async fn send(
    stub: &Arc<Stub>,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    auth: Option<&str>,
) -> Option<Answer> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let req = req.body(Body::from(body)).ok()?;
    let resp = router(stub.clone()).oneshot(req).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    };
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Some(Answer {
        status,
        content_type,
        www_authenticate,
        body,
    })
}

/// The answer is an RFC 9457 problem: content type, status, a `/problems/` type, one line of
/// detail.
fn check_problem(a: &Answer) -> Result<serde_json::Value, String> {
    if a.content_type != "application/problem+json" {
        return Err(format!("{}: content type {:?}", a.status, a.content_type));
    }
    let p: serde_json::Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("problem body: {e}"))?;
    let detail = p["detail"].as_str().unwrap_or_default();
    let ok = p["status"] == a.status
        && p["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/"))
        && p["title"].as_str().is_some_and(|t| !t.is_empty())
        && !detail.is_empty()
        && !detail.contains('\n');
    if !ok {
        return Err(format!("bad problem {p}"));
    }
    Ok(p)
}

// ----- the route table, written from docs/design.md "REST API" -----

/// How a route reads its query.
#[derive(Clone, Copy, PartialEq)]
enum QueryKind {
    Ignored,
    /// `limit` (1 to 1000) and `page_token` (hex of UTF-8) on a list.
    Page,
    Force,
    Bytes,
    Flows,
}

struct Route {
    method: &'static str,
    path: &'static str,
    query: QueryKind,
    /// A body the route takes.
    sample: &'static str,
    /// The command a well-formed request means: `(segment, body, query) -> Command`; `None`
    /// when the body or the query does not parse.
    command: fn(&str, &[u8], &Query) -> Option<Command>,
}

/// The parsed query: `force`, `bytes`.
#[derive(Default)]
struct Query {
    force: bool,
    bytes: Option<u64>,
    flows: vinfra_types::flows::FlowQuery,
    /// `page_token`, decoded.
    after: Option<String>,
    /// `limit` (1000 with only `page_token`); `None` without either.
    limit: Option<usize>,
}

/// Parses an optional body the way the API's extractor does: empty (or whitespace) means the
/// default.
fn optional<T: DeserializeOwned + Default>(body: &[u8]) -> Option<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(T::default());
    }
    serde_json::from_slice(body).ok()
}

fn required<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    if body.is_empty() {
        return None;
    }
    serde_json::from_slice(body).ok()
}

const VM: &str = r#"{"name":"web","vcpus":1,"memory_mib":512,"boot":{"kind":"kernel","kernel":"vmlinuz","cmdline":"console=ttyS0"},"disks":[]}"#;
const RULE: &str = r#"{"name":"r","strength":"must","kind":"affinity","vms":["a","b"]}"#;
const NETWORK: &str = r#"{"name":"blue","kind":"overlay","subnet":"10.0.0.0/24"}"#;
const SECURITY_GROUP: &str = r#"{"name":"web","rules":[{"direction":"ingress","protocol":"tcp","ports":"80","remote_cidr":"0.0.0.0/0"}]}"#;
const SG_RULE: &str = r#"{"direction":"egress","remote_group":"db","action":"deny"}"#;
const ROUTER: &str = r#"{"name":"r1"}"#;
const ATTACH: &str = r#"{"network":"blue","gateway":"10.0.0.1"}"#;
const ROUTE: &str = r#"{"prefix":"10.9.0.0/16","via":"10.0.0.5"}"#;
const UPLINK: &str = r#"{"network":"external","ip":"10.82.0.10"}"#;
const FLOATING_IP: &str = r#"{"ip":"10.82.0.20","nic":1}"#;

fn routes() -> Vec<Route> {
    use QueryKind as Q;
    vec![
        Route {
            method: "GET",
            path: "/api/v1/hosts",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListHosts {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/hosts/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::ShowHost { name: s.into() }),
        },
        Route {
            method: "PATCH",
            path: "/api/v1/hosts/{name}",
            query: Q::Ignored,
            sample: r#"{"maintenance":true}"#,
            command: |s, b, _| {
                Some(Command::UpdateHost {
                    name: s.into(),
                    update: required::<UpdateHostRequest>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/hosts/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::DeleteHost { name: s.into() }),
        },
        Route {
            method: "POST",
            path: "/api/v1/hosts/{name}/fence",
            query: Q::Force,
            sample: "",
            command: |s, _, q| {
                Some(Command::FenceHost {
                    name: s.into(),
                    force: q.force,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/settings",
            query: Q::Ignored,
            sample: "",
            command: |_, _, _| Some(Command::GetSettings),
        },
        Route {
            method: "PUT",
            path: "/api/v1/settings",
            query: Q::Ignored,
            sample: r#"{"ratios":{"cpu":4,"memory":1}}"#,
            command: |_, b, _| {
                Some(Command::PutSettings {
                    settings: required::<ClusterSettings>(b)?,
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/join-tokens",
            query: Q::Ignored,
            sample: "",
            command: |_, _, _| Some(Command::CreateJoinToken),
        },
        Route {
            method: "POST",
            path: "/api/v1/token/rotate",
            query: Q::Ignored,
            sample: "",
            command: |_, _, _| Some(Command::RotateToken),
        },
        Route {
            method: "GET",
            path: "/api/v1/tokens",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListTokens {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/tokens",
            query: Q::Ignored,
            sample: r#"{"name":"ci","role":"viewer","expires_in_s":3600}"#,
            command: |_, b, _| {
                Some(Command::CreateToken {
                    request: required::<CreateTokenRequest>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/tokens/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::RevokeToken { name: s.into() }),
        },
        Route {
            method: "GET",
            path: "/api/v1/vms",
            query: Q::Page,
            sample: "",
            command: |_, _, q| {
                Some(Command::ListVms {
                    filter: Default::default(),
                    after: q.after.clone(),
                    // One more than the page, for the next page's link.
                    limit: q.limit.map(|l| l + 1),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/vms",
            query: Q::Ignored,
            sample: VM,
            command: |_, b, _| {
                Some(Command::CreateVm {
                    request: required::<CreateVmRequest>(b)?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/vms/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::ShowVm { name: s.into() }),
        },
        Route {
            method: "PATCH",
            path: "/api/v1/vms/{name}",
            query: Q::Ignored,
            sample: r#"{"ha":{"enabled":true,"priority":"high","start_after":null}}"#,
            command: |s, b, _| {
                Some(Command::UpdateVm {
                    name: s.into(),
                    update: required::<UpdateVmRequest>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/vms/{name}",
            query: Q::Force,
            sample: "",
            command: |s, _, q| {
                Some(Command::DeleteVm {
                    name: s.into(),
                    force: q.force,
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/vms/{name}/start",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::StartVm { name: s.into() }),
        },
        Route {
            method: "POST",
            path: "/api/v1/vms/{name}/stop",
            query: Q::Ignored,
            sample: r#"{"force":true,"timeout_s":5}"#,
            command: |s, b, _| {
                Some(Command::StopVm {
                    name: s.into(),
                    request: optional::<StopVmRequest>(b)?,
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/vms/{name}/reboot",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::RebootVm { name: s.into() }),
        },
        Route {
            method: "POST",
            path: "/api/v1/vms/{name}/migrate",
            query: Q::Ignored,
            sample: r#"{"to":"h2"}"#,
            command: |s, b, _| {
                Some(Command::MigrateVm {
                    name: s.into(),
                    request: optional::<MigrateVmRequest>(b)?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/vms/{name}/migration",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::ShowMigration { name: s.into() }),
        },
        Route {
            method: "DELETE",
            path: "/api/v1/vms/{name}/migration",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::CancelMigration { name: s.into() }),
        },
        Route {
            method: "GET",
            path: "/api/v1/vms/{name}/console",
            query: Q::Bytes,
            sample: "",
            command: |s, _, q| {
                Some(Command::ConsoleLog {
                    name: s.into(),
                    bytes: q.bytes,
                    from: None,
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/vms/{name}/console/input",
            query: Q::Ignored,
            sample: r#"{"text":"ls\r"}"#,
            command: |s, b, _| {
                Some(Command::ConsoleInput {
                    name: s.into(),
                    text: required::<vinfra_types::api::ConsoleInput>(b)?.text,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/events",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListEvents {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/revoked-certificates",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListRevokedCertificates {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/flows",
            query: Q::Flows,
            sample: "",
            command: |_, _, q| Some(Command::TopFlows { query: q.flows }),
        },
        Route {
            method: "GET",
            path: "/api/v1/rules",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListRules {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/rules",
            query: Q::Ignored,
            sample: RULE,
            command: |_, b, _| {
                Some(Command::CreateRule {
                    rule: required::<PlacementRule>(b)?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/rules/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::ShowRule { name: s.into() }),
        },
        Route {
            method: "DELETE",
            path: "/api/v1/rules/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::DeleteRule { name: s.into() }),
        },
        Route {
            method: "GET",
            path: "/api/v1/drs",
            query: Q::Ignored,
            sample: "",
            command: |_, _, _| Some(Command::DrsStatus),
        },
        Route {
            method: "POST",
            path: "/api/v1/drs/run",
            query: Q::Ignored,
            sample: "",
            command: |_, _, _| Some(Command::DrsRun),
        },
        Route {
            method: "GET",
            path: "/api/v1/drs/recommendations",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListRecommendations {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/drs/recommendations/{id}/apply",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| {
                Some(Command::ApplyRecommendation {
                    id: s.parse().ok()?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/networks",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListNetworks {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/networks",
            query: Q::Ignored,
            sample: NETWORK,
            command: |_, b, _| {
                Some(Command::CreateNetwork {
                    request: required::<CreateNetworkRequest>(b)?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/networks/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::ShowNetwork { name: s.into() }),
        },
        Route {
            method: "DELETE",
            path: "/api/v1/networks/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::DeleteNetwork { name: s.into() }),
        },
        Route {
            method: "GET",
            path: "/api/v1/networks/{name}/counters",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::NetworkCounters { name: s.into() }),
        },
        Route {
            method: "GET",
            path: "/api/v1/hosts/{name}/switch",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::HostSwitch { name: s.into() }),
        },
        Route {
            method: "GET",
            path: "/api/v1/vms/{name}/counters",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::VmCounters { name: s.into() }),
        },
        Route {
            method: "PATCH",
            path: "/api/v1/vms/{name}/nics/{index}",
            query: Q::Ignored,
            sample: r#"{"security_groups":["web"],"port_security":true,"qos":{"egress":{"bits_per_sec":8000000},"priority":"high"}}"#,
            command: |s, b, _| {
                let (vm, index) = s.split_once('/')?;
                Some(Command::UpdateNic {
                    vm: vm.into(),
                    index: index.parse().ok()?,
                    update: required::<UpdateNicRequest>(b)?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/security-groups",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListSecurityGroups {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/security-groups",
            query: Q::Ignored,
            sample: SECURITY_GROUP,
            command: |_, b, _| {
                Some(Command::CreateSecurityGroup {
                    group: required::<SecurityGroup>(b)?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/security-groups/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::ShowSecurityGroup { name: s.into() }),
        },
        Route {
            method: "DELETE",
            path: "/api/v1/security-groups/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::DeleteSecurityGroup { name: s.into() }),
        },
        Route {
            method: "POST",
            path: "/api/v1/security-groups/{name}/rules",
            query: Q::Ignored,
            sample: SG_RULE,
            command: |s, b, _| {
                Some(Command::AddSgRule {
                    group: s.into(),
                    rule: required::<SgRule>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/security-groups/{name}/rules/{id}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| {
                let (group, id) = s.split_once('/')?;
                Some(Command::DeleteSgRule {
                    group: group.into(),
                    id: id.parse().ok()?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/routers",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListRouters {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/routers",
            query: Q::Ignored,
            sample: ROUTER,
            command: |_, b, _| {
                Some(Command::CreateRouter {
                    request: required::<CreateRouterRequest>(b)?,
                })
            },
        },
        Route {
            method: "GET",
            path: "/api/v1/routers/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::ShowRouter { name: s.into() }),
        },
        Route {
            method: "DELETE",
            path: "/api/v1/routers/{name}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::DeleteRouter { name: s.into() }),
        },
        Route {
            method: "POST",
            path: "/api/v1/routers/{name}/interfaces",
            query: Q::Ignored,
            sample: ATTACH,
            command: |s, b, _| {
                Some(Command::AttachNetwork {
                    router: s.into(),
                    request: required::<AttachNetworkRequest>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/routers/{name}/interfaces/{network}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| {
                let (router, network) = s.split_once('/')?;
                Some(Command::DetachNetwork {
                    router: router.into(),
                    network: network.into(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/routers/{name}/routes",
            query: Q::Ignored,
            sample: ROUTE,
            command: |s, b, _| {
                Some(Command::AddRoute {
                    router: s.into(),
                    route: required::<RouterStaticRoute>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/routers/{name}/routes/{addr}/{len}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| {
                // The name, then the prefix's two segments.
                let (router, prefix) = s.split_once('/')?;
                let (addr, len) = vinfra_types::router::parse_route_prefix(prefix).ok()?;
                Some(Command::DeleteRoute {
                    router: router.into(),
                    prefix: format!("{addr}/{len}"),
                })
            },
        },
        Route {
            method: "PUT",
            path: "/api/v1/routers/{name}/uplink",
            query: Q::Ignored,
            sample: UPLINK,
            command: |s, b, _| {
                Some(Command::SetUplink {
                    router: s.into(),
                    request: required::<SetUplinkRequest>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/routers/{name}/uplink",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| Some(Command::RemoveUplink { router: s.into() }),
        },
        Route {
            method: "GET",
            path: "/api/v1/floating-ips",
            query: Q::Page,
            sample: "",
            command: |_, _, _| {
                Some(Command::ListFloatingIps {
                    filter: Default::default(),
                })
            },
        },
        Route {
            method: "POST",
            path: "/api/v1/vms/{name}/floating-ips",
            query: Q::Ignored,
            sample: FLOATING_IP,
            command: |s, b, _| {
                Some(Command::AddFloatingIp {
                    vm: s.into(),
                    request: required::<AddFloatingIpRequest>(b)?,
                })
            },
        },
        Route {
            method: "DELETE",
            path: "/api/v1/vms/{name}/floating-ips/{ip}",
            query: Q::Ignored,
            sample: "",
            command: |s, _, _| {
                // The name, then the address (parsed, given back in its plain form).
                let (vm, ip) = s.split_once('/')?;
                let ip = vinfra_types::router::parse_ip(ip).ok()?;
                Some(Command::DeleteFloatingIp {
                    vm: vm.into(),
                    ip: ip.to_string(),
                })
            },
        },
    ]
}

/// Decodes `%XX` the way the router's path extraction does; `None` when the result is not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query string as the two query-reading routes parse it; `None` when refused.
fn parse_query(q: &str, kind: QueryKind) -> Option<Query> {
    let mut out = Query::default();
    if q.is_empty() {
        return Some(out);
    }
    let mut seen = std::collections::HashSet::new();
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=')?;
        match (kind, k) {
            (QueryKind::Force, "force") => out.force = v.parse().ok()?,
            (QueryKind::Bytes, "bytes") => out.bytes = Some(v.parse().ok()?),
            (QueryKind::Page, "limit" | "page_token") => {
                if !seen.insert(k) {
                    return None;
                }
                if k == "limit" {
                    let n: u32 = v.parse().ok()?;
                    if !(1..=1000).contains(&n) {
                        return None;
                    }
                    out.limit = Some(n as usize);
                } else {
                    let v = percent_decode(v)?;
                    if v.is_empty() || v.len() > 1024 {
                        return None;
                    }
                    out.after = Some(String::from_utf8(hex::decode(v).ok()?).ok()?);
                    out.limit = out.limit.or(Some(1000));
                }
            }
            (QueryKind::Flows, "minutes" | "by" | "top") => {
                if !seen.insert(k) {
                    return None;
                }
                match k {
                    "minutes" => out.flows.minutes = v.parse().ok()?,
                    "top" => out.flows.top = v.parse().ok()?,
                    _ => {
                        out.flows.by =
                            serde_json::from_value(serde_json::Value::String(v.into())).ok()?
                    }
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The command a request means, or `None` when the API must refuse it (or it is not a console
/// command at all).
fn expected(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    auth: Option<&str>,
) -> Option<Command> {
    let token = auth?
        .strip_prefix("Bearer ")
        .or_else(|| auth?.strip_prefix("bearer "))?
        .trim();
    if token != TOKEN {
        return None;
    }
    let have: Vec<&str> = path.split('/').collect();
    for r in routes() {
        let want: Vec<&str> = r.path.split('/').collect();
        if want.len() != have.len() || r.method != method {
            continue;
        }
        let mut segments = vec![];
        let matched = want.iter().zip(&have).all(|(w, h)| {
            if w.starts_with('{') {
                segments.push((*w, *h));
                !h.is_empty()
            } else {
                w == h
            }
        });
        if !matched {
            continue;
        }
        // The segments decoded, `/`-joined (a name cannot hold a `/`; a number with one does
        // not parse).
        let mut decoded = vec![];
        for (w, h) in segments {
            let s = percent_decode(h)?;
            if w == "{name}" || w == "{network}" {
                vinfra_types::validate_name(&s).ok()?;
            }
            decoded.push(s);
        }
        let segment = decoded.join("/");
        let q = match r.query {
            QueryKind::Ignored => Query::default(),
            kind => parse_query(query, kind)?,
        };
        // Every body is read (and bounded) before routing: past the limit nothing arrives,
        // whether or not the route takes a body.
        if body.len() > MAX_BODY {
            return None;
        }
        return (r.command)(&segment, body, &q);
    }
    None
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

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

#[test]
fn replies_render_with_their_status() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let auth = format!("Bearer {TOKEN}");
    let token = JoinTokenResponse {
        token: "t".into(),
        expires_in_s: 5,
    };
    for (method, path, reply, status) in [
        (
            "POST",
            "/api/v1/join-tokens",
            Reply::JoinToken(token.clone()),
            201,
        ),
        ("GET", "/api/v1/events", Reply::Events(vec![]), 200),
        (
            "GET",
            "/api/v1/flows",
            Reply::Flows(vinfra_types::flows::FlowReport {
                minutes: 5,
                by: Default::default(),
                rows: vec![],
                untracked_packets: 0,
            }),
            200,
        ),
        (
            "GET",
            "/api/v1/drs/recommendations",
            Reply::Recommendations(vec![]),
            200,
        ),
        ("DELETE", "/api/v1/rules/r", Reply::Done, 204),
        (
            "POST",
            "/api/v1/hosts/h2/fence",
            Reply::Fenced(FenceOutcome {
                host: "h2".into(),
                fenced: true,
                exit_code: Some(0),
                timed_out: false,
                duration_ms: 12,
                output_tail: "off\n".into(),
            }),
            200,
        ),
    ] {
        *stub.reply.lock().unwrap() = Some(reply);
        let a = rt
            .block_on(send(&stub, method, path, vec![], Some(&auth)))
            .unwrap();
        assert_eq!(a.status, status, "{method} {path}");
        if status == 204 {
            assert!(a.body.is_empty());
        } else {
            assert_eq!(a.content_type, "application/json");
        }
        stub.take_calls();
    }
    *stub.reply.lock().unwrap() = Some(Reply::JoinToken(token.clone()));
    let a = rt
        .block_on(send(
            &stub,
            "POST",
            "/api/v1/join-tokens",
            vec![],
            Some(&auth),
        ))
        .unwrap();
    let back: JoinTokenResponse = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(back, token);
}

/// Host h1 cannot take VM web, for `unfit`.
fn unfit_web(unfit: Unfit) -> Error {
    Error::Fit(FitError::HostUnfit {
        host: "h1".into(),
        vm: "web".into(),
        vcpus: 1,
        memory_mib: 512,
        unfit,
    })
}

/// An error of each kind.
fn sample(kind: ErrorKind) -> Error {
    use vinfra_console::agents::RequestError;
    match kind {
        ErrorKind::InvalidRequest => Error::OutOfRange {
            field: "bytes",
            min: 1,
            max: 10,
            got: 0,
        },
        ErrorKind::NotFound => Error::not_found(Object::Vm, "web"),
        ErrorKind::Conflict => Error::VmBusy { vm: "web".into() },
        ErrorKind::InsufficientCapacity => {
            let short = Shortfall {
                memory: Some(MemoryShort {
                    short_mib: 1,
                    allocated_mib: 1024,
                    allocatable_mib: 1024,
                    physical_mib: 1024,
                    ratio: 1.0,
                    reserved_mib: 0,
                }),
                vcpus: None,
            };
            let web = VmRequest {
                vm: "web".into(),
                vcpus: 1,
                memory_mib: 512,
            };
            Error::Fit(FitError::NoHost(NoHost::new(
                &web,
                [("h1".to_string(), Unfit::Capacity(Box::new(short)))],
            )))
        }
        ErrorKind::HostUnavailable => unfit_web(Unfit::NoTrunk {
            networks: Quoted::of(["v100"]),
        }),
        ErrorKind::RuleConflict => unfit_web(Unfit::MustRule {
            rules: Quoted::of(["r"]),
        }),
        ErrorKind::InvalidRule => Error::RuleUnknownHost {
            rule: "r".into(),
            host: "h9".into(),
        },
        ErrorKind::InvalidStartAfter => Error::StartAfterCycle {
            vm: "a".into(),
            start_after: "b".into(),
            cycle: vec!["a".into(), "b".into(), "a".into()],
        },
        ErrorKind::FenceFailed => Error::FenceFailed {
            outcome: Box::new(FenceOutcome {
                host: "h2".into(),
                fenced: false,
                exit_code: Some(1),
                timed_out: false,
                duration_ms: 5,
                output_tail: "no route to the BMC\nretrying\n".into(),
            }),
        },
        ErrorKind::HaReserve => Error::HaReserve(Box::new(vinfra_ha::Refusal {
            vm: "web".into(),
            host: "h1".into(),
            tolerate: 1,
            scenario: vinfra_ha::ScenarioReport {
                failed: vec!["h2".into()],
                ha_vms: 1,
                demand: vinfra_ha::Amount {
                    vcpus: 2,
                    memory_mib: 4096,
                },
                restarts: Vec::new(),
                unplaced: vec!["db".into()],
                shortfall: vinfra_ha::Amount {
                    vcpus: 2,
                    memory_mib: 4096,
                },
                why: None,
            },
            already: false,
        })),
        ErrorKind::AgentError => Error::Agent(RequestError::Agent {
            host: "h1".into(),
            source: vinfra_proto::CommandError::Host {
                detail: "the datastore is busy".into(),
            },
        }),
        ErrorKind::AgentConnectionLost => {
            Error::Agent(RequestError::ConnectionLost { host: "h1".into() })
        }
        ErrorKind::HostDisconnected => {
            Error::Agent(RequestError::NotConnected { host: "h1".into() })
        }
        ErrorKind::AgentTimeout => Error::Agent(RequestError::Timeout {
            host: "h1".into(),
            secs: 30,
        }),
        ErrorKind::Internal => Error::CorruptNetwork {
            network: "blue".into(),
            field: "subnet",
        },
    }
}

#[test]
fn every_error_kind_renders_as_its_problem() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let auth = format!("Bearer {TOKEN}");
    // The table of docs/design.md, "REST API".
    let status = |k: ErrorKind| match k {
        ErrorKind::InvalidRequest => 400,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict
        | ErrorKind::InsufficientCapacity
        | ErrorKind::HostUnavailable
        | ErrorKind::RuleConflict
        | ErrorKind::HaReserve => 409,
        ErrorKind::InvalidRule | ErrorKind::InvalidStartAfter => 422,
        ErrorKind::AgentError | ErrorKind::AgentConnectionLost | ErrorKind::FenceFailed => 502,
        ErrorKind::HostDisconnected => 503,
        ErrorKind::AgentTimeout => 504,
        ErrorKind::Internal => 500,
    };
    for kind in ErrorKind::ALL {
        let e = sample(kind);
        assert_eq!(e.kind(), kind);
        let detail = vinfra_types::error::chain(&e);
        *stub.fail.lock().unwrap() = Some(e);
        let a = rt
            .block_on(send(&stub, "GET", "/api/v1/vms", vec![], Some(&auth)))
            .unwrap();
        assert_eq!(a.status, status(kind), "{kind:?}");
        let p = check_problem(&a).unwrap();
        assert_eq!(p["type"], format!("/problems/{}", kind.as_str()));
        assert_eq!(p["detail"], detail, "the detail is the whole chain");
        stub.take_calls();
    }
    // The agent's own words are in the detail, once.
    *stub.fail.lock().unwrap() = Some(sample(ErrorKind::AgentError));
    let a = rt
        .block_on(send(&stub, "GET", "/api/v1/vms", vec![], Some(&auth)))
        .unwrap();
    let p = check_problem(&a).unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.starts_with("host 'h1': "), "{detail}");
    assert_eq!(
        detail.matches("the datastore is busy").count(),
        1,
        "{detail}"
    );
    stub.take_calls();

    // The transport's own refusals.
    type Refusal<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: [Refusal; 6] = [
        ("GET", "/api/v1/vms", vec![], None, 401, "unauthorized"),
        (
            "GET",
            "/api/v1/vms",
            vec![],
            Some("Bearer nope"),
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/api/v1/nothing",
            vec![],
            Some(&auth),
            404,
            "no-such-endpoint",
        ),
        (
            "PUT",
            "/api/v1/vms",
            vec![],
            Some(&auth),
            405,
            "method-not-allowed",
        ),
        (
            "POST",
            "/api/v1/vms",
            b"{".to_vec(),
            Some(&auth),
            400,
            "invalid-request",
        ),
        (
            "POST",
            "/api/v1/vms",
            vec![b' '; MAX_BODY + 1],
            Some(&auth),
            413,
            "too-large",
        ),
    ];
    for (method, path, body, auth, status, kind) in cases {
        let a = rt.block_on(send(&stub, method, path, body, auth)).unwrap();
        assert_eq!(a.status, status, "{method} {path}");
        let p = check_problem(&a).unwrap();
        assert_eq!(p["type"], format!("/problems/{kind}"));
        if status == 401 {
            assert_eq!(a.www_authenticate.as_deref(), Some("Bearer"));
        }
    }
    assert!(stub.take_calls().is_empty());
}

/// One random request.
#[derive(Debug, Clone)]
struct Case {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
    auth: Option<String>,
}

fn case() -> impl Strategy<Value = Case> {
    let templates: Vec<(&'static str, &'static str)> = routes()
        .iter()
        .map(|r| (r.method, r.path))
        .chain([
            ("GET", "/api/v1/vms/{name}/nope"),
            ("GET", "/api/v2/vms"),
            ("GET", "/api/openapi.json"),
            ("DELETE", "/api/v1/vms/{name}/"),
            ("GET", "/api/v1"),
            ("GET", "/"),
        ])
        .collect();
    let segment = prop_oneof![
        prop::sample::select(vec![
            "web-1", "7", "a", "0", "h1", "start", "a%2Db", "%77eb", "16", "32", "33", "08",
        ])
        .prop_map(str::to_string),
        prop::sample::select(vec![
            "Bad_Name",
            "-x",
            "x-",
            "..",
            "%2e%2e",
            "a%2Fb",
            "a%20b",
            "%ff",
            "%zz",
            "a.b",
            "18446744073709551616",
            "+5",
            "-1",
        ])
        .prop_map(str::to_string),
        "[a-z0-9-]{1,8}",
        "[a-zA-Z0-9._~%-]{0,70}",
    ];
    let any_method = prop::sample::select(vec![
        "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "BREW",
    ]);
    // Mostly the route's own method, sometimes any.
    let templated = (
        prop::sample::select(templates),
        segment,
        any_method.clone(),
        0..4u8,
    )
        .prop_map(|((m, t), s, other, dice)| {
            let method = if dice == 0 { other } else { m };
            (
                method.to_string(),
                t.replace("{name}", &s)
                    .replace("{id}", &s)
                    .replace("{index}", &s)
                    .replace("{network}", &s)
                    .replace("{addr}", "10.9.0.0")
                    .replace("{len}", &s),
            )
        });
    let words = prop::sample::select(vec![
        "api",
        "v1",
        "vms",
        "hosts",
        "rules",
        "drs",
        "networks",
        "settings",
        "x",
        "",
        "start",
        "stop",
        "run",
        "recommendations",
        "1",
        "apply",
        "openapi.json",
        "..",
        "Bad_Name",
        "migration",
        "console",
        "counters",
        "switch",
        "fence",
        "security-groups",
        "nics",
        "routers",
        "interfaces",
        "routes",
        "10.9.0.0",
        "%2F",
    ]);
    let random = (prop::collection::vec(words, 0..7), any_method)
        .prop_map(|(v, m)| (m.to_string(), format!("/{}", v.join("/"))));
    let target = prop_oneof![4 => templated, 1 => random];
    let query = prop::sample::select(vec![
        "",
        "",
        "force=true",
        "force=false",
        "force=yes",
        "bytes=10",
        "bytes=0",
        "bytes=-1",
        "junk=1",
        "force",
        "limit=3",
        "limit=0",
        "limit=1001",
        "limit=x",
        "page_token=766d2d37",
        "limit=2&page_token=766d2d37",
        "page_token=zz",
        "page_token=",
        "limit=2&limit=3",
    ])
    .prop_map(str::to_string);
    let samples: Vec<&'static str> = routes().iter().map(|r| r.sample).collect();
    let body = prop_oneof![
        4 => prop::sample::select(samples).prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::sample::select(vec![
            "", " ", "{", "{}", "[]", "null", "\"x\"", r#"{"unknown":1}"#, r#"{"force":"yes"}"#,
            r#"{"to":"Bad_Name"}"#, r#"{"maintenance":true,"ratios":null}"#,
            r#"{"ha":{"priority":"urgent"}}"#, r#"{"fence_command":null}"#, r#"{"ha":null}"#,
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(vec![b' '; MAX_BODY + 1]),
    ];
    let auth = prop_oneof![
        4 => Just(Some(format!("Bearer {TOKEN}"))),
        1 => Just(Some(format!("bearer  {TOKEN} "))),
        1 => Just(None),
        1 => Just(Some("Bearer wrong".to_string())),
        1 => Just(Some(format!("Basic {TOKEN}"))),
        1 => "[ -~]{0,20}".prop_map(Some),
    ];
    (target, query, body, auth).prop_map(|((method, path), query, body, auth)| Case {
        method,
        path,
        query,
        body,
        auth,
    })
}

async fn check(stub: &Arc<Stub>, c: Case) -> Result<(), TestCaseError> {
    let uri = if c.query.is_empty() {
        c.path.clone()
    } else {
        format!("{}?{}", c.path, c.query)
    };
    let Some(a) = send(stub, &c.method, &uri, c.body.clone(), c.auth.as_deref()).await else {
        // Not a request at all (the URI or a header does not parse): nothing to send.
        return Ok(());
    };
    let calls = stub.take_calls();
    if a.status >= 400 {
        check_problem(&a).map_err(TestCaseError::fail)?;
    }
    let want = expected(&c.method, &c.path, &c.query, &c.body, c.auth.as_deref());
    prop_assert_eq!(
        &calls,
        &want.clone().into_iter().collect::<Vec<_>>(),
        "{:?}",
        a.status
    );
    if want.is_some() {
        prop_assert_eq!(a.status, StatusCode::NO_CONTENT.as_u16());
    } else {
        prop_assert!(
            a.status >= 400 || c.path == "/api/openapi.json",
            "refused requests are problems: {}",
            a.status
        );
    }
    Ok(())
}

#[test]
fn random_requests_never_reach_the_console_unless_well_formed() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |c| rt.block_on(check(&stub, c)))
        .unwrap();
}
