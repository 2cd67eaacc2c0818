//! The route table of the REST API tests (`api*.rs`), written from docs/design.md "REST API":
//! each route's method, path, query and a body it takes, and the command a well-formed request
//! means.

use serde::de::DeserializeOwned;
use vinfra_console::interface::Command;
use vinfra_types::api::{
    ClusterSettings, CreateVmRequest, MigrateVmRequest, StopVmRequest, UpdateHostRequest,
    UpdateNicRequest, UpdateVmRequest,
};
use vinfra_types::auth::CreateTokenRequest;
use vinfra_types::balancing::PlacementRule;
use vinfra_types::network::CreateNetworkRequest;
use vinfra_types::router::{
    AddFloatingIpRequest, AttachNetworkRequest, CreateRouterRequest, RouterStaticRoute,
    SetUplinkRequest,
};
use vinfra_types::security_group::{SecurityGroup, SgRule};

/// How a route reads its query.
#[derive(Clone, Copy, PartialEq)]
pub enum QueryKind {
    Ignored,
    /// `limit` (1 to 1000) and `page_token` (hex of UTF-8) on a list.
    Page,
    Force,
    Bytes,
    Flows,
}

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub query: QueryKind,
    /// A body the route takes.
    pub sample: &'static str,
    /// The command a well-formed request means: `(segment, body, query) -> Command`; `None`
    /// when the body or the query does not parse.
    pub command: fn(&str, &[u8], &Query) -> Option<Command>,
}

/// The parsed query: `force`, `bytes`.
#[derive(Default)]
pub struct Query {
    pub force: bool,
    pub bytes: Option<u64>,
    pub flows: vinfra_types::flows::FlowQuery,
    /// `page_token`, decoded.
    pub after: Option<String>,
    /// `limit` (1000 with only `page_token`); `None` without either.
    pub limit: Option<usize>,
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

pub fn routes() -> Vec<Route> {
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
