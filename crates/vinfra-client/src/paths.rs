//! Every path of the REST API, written once (docs/design.md "REST API", docs/openapi.json).
//!
//! The typed methods of [`crate::Client`] use these; a test that sends a malformed request on
//! purpose through [`crate::Client::raw`] takes its path from here too. Names and other
//! parameters are percent-encoded as one path segment, so a name can never reach another route.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use vinfra_types::filter::ListFilter;
use vinfra_types::task::{TaskFilter, TaskKind, TaskState};

/// Prefix of every versioned endpoint.
pub const API_V1: &str = "/api/v1";
/// The OpenAPI document (no token needed).
pub const OPENAPI: &str = "/api/openapi.json";

/// What is escaped in a path segment: controls, space, the characters URLs reserve for
/// delimiters, `/` and `%`.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// What is escaped in a query value: as in a path segment, and `&`, `=` and `+`, which would
/// end the value or change it.
const QUERY_VALUE: &AsciiSet = &SEGMENT.add(b'&').add(b'=').add(b'+');

/// `/api/v1/<collection>/<name><rest>`, the name escaped.
fn item(collection: &str, name: &str, rest: &str) -> String {
    format!(
        "{API_V1}/{collection}/{}{rest}",
        utf8_percent_encode(name, SEGMENT)
    )
}

/// `/api/v1/hosts`.
pub fn hosts() -> String {
    format!("{API_V1}/hosts")
}

/// `/api/v1/hosts/{name}`.
pub fn host(name: &str) -> String {
    item("hosts", name, "")
}

/// `/api/v1/hosts/{name}/switch`.
pub fn host_switch(name: &str) -> String {
    item("hosts", name, "/switch")
}

/// `/api/v1/hosts/{name}/fence`, with `?force=true` when `force`.
pub fn host_fence(name: &str, force: bool) -> String {
    item(
        "hosts",
        name,
        if force { "/fence?force=true" } else { "/fence" },
    )
}

/// `/api/v1/settings`.
pub fn settings() -> String {
    format!("{API_V1}/settings")
}

/// `/api/v1/join-tokens`.
pub fn join_tokens() -> String {
    format!("{API_V1}/join-tokens")
}

/// `/api/v1/token/rotate`.
pub fn token_rotate() -> String {
    format!("{API_V1}/token/rotate")
}

/// `/api/v1/tokens`.
pub fn tokens() -> String {
    format!("{API_V1}/tokens")
}

/// `/api/v1/tokens/{name}`.
pub fn token(name: &str) -> String {
    item("tokens", name, "")
}

/// `/api/v1/vms`.
pub fn vms() -> String {
    format!("{API_V1}/vms")
}

/// `/api/v1/vms/{name}`, with `?force=true` when `force`.
pub fn vm(name: &str, force: bool) -> String {
    item("vms", name, if force { "?force=true" } else { "" })
}

/// A power action of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    /// `POST /api/v1/vms/{name}/start`.
    Start,
    /// `POST /api/v1/vms/{name}/stop`.
    Stop,
    /// `POST /api/v1/vms/{name}/reboot`.
    Reboot,
    /// `POST /api/v1/vms/{name}/migrate`.
    Migrate,
}

impl VmAction {
    /// The last segment of the action's path.
    pub fn as_str(self) -> &'static str {
        match self {
            VmAction::Start => "start",
            VmAction::Stop => "stop",
            VmAction::Reboot => "reboot",
            VmAction::Migrate => "migrate",
        }
    }
}

/// `/api/v1/vms/{name}/{start|stop|reboot|migrate}`.
pub fn vm_action(name: &str, action: VmAction) -> String {
    item("vms", name, &format!("/{}", action.as_str()))
}

/// `/api/v1/vms/{name}/migration`.
pub fn vm_migration(name: &str) -> String {
    item("vms", name, "/migration")
}

/// `/api/v1/vms/{name}/console`, with `?bytes=N` when given.
pub fn vm_console(name: &str, bytes: Option<u64>) -> String {
    vm_console_from(name, bytes, None)
}

/// `/api/v1/vms/{name}/console[?bytes=N][&from=OFFSET]`.
pub fn vm_console_from(name: &str, bytes: Option<u64>, from: Option<u64>) -> String {
    let params: Vec<String> = [("bytes", bytes), ("from", from)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    if params.is_empty() {
        item("vms", name, "/console")
    } else {
        item("vms", name, &format!("/console?{}", params.join("&")))
    }
}

/// `/api/v1/vms/{name}/console/input`.
pub fn vm_console_input(name: &str) -> String {
    item("vms", name, "/console/input")
}

/// `/api/v1/flows?minutes=N&by=…&top=K`, without the parameters that are the defaults.
pub fn flows(query: &vinfra_types::flows::FlowQuery) -> String {
    let d = vinfra_types::flows::FlowQuery::default();
    let mut params = Vec::new();
    if query.minutes != d.minutes {
        params.push(format!("minutes={}", query.minutes));
    }
    if query.by != d.by {
        params.push(format!("by={}", query.by.as_str()));
    }
    if query.top != d.top {
        params.push(format!("top={}", query.top));
    }
    if params.is_empty() {
        format!("{API_V1}/flows")
    } else {
        format!("{API_V1}/flows?{}", params.join("&"))
    }
}

/// `/api/v1/events`.
pub fn events() -> String {
    format!("{API_V1}/events")
}

/// `path` with the query `?k=v&…` of the pairs whose value is given, each value escaped.
fn with_query(mut path: String, pairs: &[(&str, Option<&str>)]) -> String {
    let mut sep = '?';
    for (k, v) in pairs {
        if let Some(v) = v {
            path.push(sep);
            path.push_str(k);
            path.push('=');
            path.push_str(&utf8_percent_encode(v, QUERY_VALUE).to_string());
            sep = '&';
        }
    }
    path
}

/// `path` with the query of the tests `filter` gives (`?status=…&maintenance=…`, each value
/// escaped): a list's path with its filter; `path` alone when it gives none.
pub fn filtered<F: ListFilter>(path: String, filter: &F) -> String {
    let pairs = filter.pairs();
    let given: Vec<(&str, Option<&str>)> =
        pairs.iter().map(|(k, v)| (*k, Some(v.as_str()))).collect();
    with_query(path, &given)
}

/// `/api/v1/vms` with the filter's query (`?host=…&state=…&network=…`, each escaped).
pub fn vms_where(filter: &vinfra_types::api::VmFilter) -> String {
    filtered(vms(), filter)
}

/// `/api/v1/tasks`.
pub fn tasks() -> String {
    format!("{API_V1}/tasks")
}

/// `/api/v1/tasks` with the filter's query (`?state=…&kind=…&target=…`, each escaped).
pub fn tasks_where(filter: &TaskFilter) -> String {
    with_query(
        tasks(),
        &[
            ("state", filter.state.map(TaskState::as_str)),
            ("kind", filter.kind.map(TaskKind::as_str)),
            ("target", filter.target.as_deref()),
        ],
    )
}

/// `/api/v1/tasks/{id}`.
pub fn task(id: u64) -> String {
    format!("{API_V1}/tasks/{id}")
}

/// `/api/v1/tasks/{id}?wait_s=N`: the task once it has ended, or after `N` s.
pub fn task_wait(id: u64, wait_s: u64) -> String {
    format!("{API_V1}/tasks/{id}?wait_s={wait_s}")
}

/// `/api/v1/revoked-certificates`.
pub fn revoked_certificates() -> String {
    format!("{API_V1}/revoked-certificates")
}

/// `/api/v1/rules`.
pub fn rules() -> String {
    format!("{API_V1}/rules")
}

/// `/api/v1/rules/{name}`.
pub fn rule(name: &str) -> String {
    item("rules", name, "")
}

/// `/api/v1/ha`.
pub fn ha() -> String {
    format!("{API_V1}/ha")
}

/// `/api/v1/drs`.
pub fn drs() -> String {
    format!("{API_V1}/drs")
}

/// `/api/v1/drs/run`.
pub fn drs_run() -> String {
    format!("{API_V1}/drs/run")
}

/// `/api/v1/drs/recommendations`.
pub fn recommendations() -> String {
    format!("{API_V1}/drs/recommendations")
}

/// `/api/v1/drs/recommendations/{id}/apply`.
pub fn apply_recommendation(id: u64) -> String {
    format!("{API_V1}/drs/recommendations/{id}/apply")
}

/// `/api/v1/networks`.
pub fn networks() -> String {
    format!("{API_V1}/networks")
}

/// `/api/v1/networks/{name}`.
pub fn network(name: &str) -> String {
    item("networks", name, "")
}

/// `/api/v1/networks/{name}/counters`.
pub fn network_counters(name: &str) -> String {
    item("networks", name, "/counters")
}

/// `/api/v1/vms/{name}/counters`.
pub fn vm_counters(name: &str) -> String {
    item("vms", name, "/counters")
}

/// `/api/v1/vms/{name}/usage`.
pub fn vm_usage(name: &str) -> String {
    item("vms", name, "/usage")
}

/// `/api/v1/hosts/{name}/usage`.
pub fn host_usage(name: &str) -> String {
    item("hosts", name, "/usage")
}

/// `/api/v1/vms/{name}/nics/{index}`.
pub fn vm_nic(name: &str, index: usize) -> String {
    item("vms", name, &format!("/nics/{index}"))
}

/// `/api/v1/security-groups`.
pub fn security_groups() -> String {
    format!("{API_V1}/security-groups")
}

/// `/api/v1/security-groups/{name}`.
pub fn security_group(name: &str) -> String {
    item("security-groups", name, "")
}

/// `/api/v1/security-groups/{name}/counters`.
pub fn security_group_counters(name: &str) -> String {
    item("security-groups", name, "/counters")
}

/// `/api/v1/security-groups/{name}/rules`.
pub fn security_group_rules(name: &str) -> String {
    item("security-groups", name, "/rules")
}

/// `/api/v1/security-groups/{name}/rules/{id}`.
pub fn security_group_rule(name: &str, id: u32) -> String {
    item("security-groups", name, &format!("/rules/{id}"))
}

/// `/api/v1/routers`.
pub fn routers() -> String {
    format!("{API_V1}/routers")
}

/// `/api/v1/routers/{name}`.
pub fn router(name: &str) -> String {
    item("routers", name, "")
}

/// `/api/v1/routers/{name}/interfaces`.
pub fn router_interfaces(name: &str) -> String {
    item("routers", name, "/interfaces")
}

/// `/api/v1/routers/{name}/interfaces/{network}`, the network escaped too.
pub fn router_interface(name: &str, network: &str) -> String {
    item(
        "routers",
        name,
        &format!("/interfaces/{}", utf8_percent_encode(network, SEGMENT)),
    )
}

/// `/api/v1/routers/{name}/routes`.
pub fn router_routes(name: &str) -> String {
    item("routers", name, "/routes")
}

/// `/api/v1/routers/{name}/routes/{addr}/{len}`: the route to `addr/len`.
pub fn router_route(name: &str, addr: std::net::Ipv4Addr, len: u8) -> String {
    item("routers", name, &format!("/routes/{addr}/{len}"))
}

/// `/api/v1/routers/{name}/uplink`.
pub fn router_uplink(name: &str) -> String {
    item("routers", name, "/uplink")
}

/// `/api/v1/floating-ips`.
pub fn floating_ips() -> String {
    format!("{API_V1}/floating-ips")
}

/// `/api/v1/vms/{name}/floating-ips`.
pub fn vm_floating_ips(vm: &str) -> String {
    item("vms", vm, "/floating-ips")
}

/// `/api/v1/vms/{name}/floating-ips/{ip}`.
pub fn vm_floating_ip(vm: &str, ip: std::net::Ipv4Addr) -> String {
    item("vms", vm, &format!("/floating-ips/{ip}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_one_segment() {
        assert_eq!(vm("web-1", false), "/api/v1/vms/web-1");
        assert_eq!(vm("web-1", true), "/api/v1/vms/web-1?force=true");
        assert_eq!(vm("../hosts", false), "/api/v1/vms/..%2Fhosts");
        assert_eq!(
            vm_action("a?b#c d", VmAction::Stop),
            "/api/v1/vms/a%3Fb%23c%20d/stop"
        );
        assert_eq!(vm("100%", false), "/api/v1/vms/100%25");
    }

    #[test]
    fn filters_become_escaped_queries() {
        use vinfra_types::api::VmFilter;
        assert_eq!(vms_where(&VmFilter::default()), "/api/v1/vms");
        assert_eq!(
            vms_where(&VmFilter {
                host: Some("h1".into()),
                state: Some(vinfra_types::PowerState::Running),
                network: Some("a&b=c+d".into()),
            }),
            "/api/v1/vms?host=h1&state=running&network=a%26b%3Dc%2Bd"
        );
        assert_eq!(tasks_where(&TaskFilter::default()), "/api/v1/tasks");
        assert_eq!(
            tasks_where(&TaskFilter {
                state: Some(TaskState::Running),
                kind: Some(TaskKind::RecommendationApply),
                target: Some("web 1".into()),
            }),
            "/api/v1/tasks?state=running&kind=recommendation_apply&target=web%201"
        );
        assert_eq!(
            tasks_where(&TaskFilter {
                target: Some("7".into()),
                ..TaskFilter::default()
            }),
            "/api/v1/tasks?target=7"
        );
        use vinfra_types::filter::{EventFilter, HostFilter, RuleFilter};
        assert_eq!(filtered(hosts(), &HostFilter::default()), "/api/v1/hosts");
        assert_eq!(
            filtered(
                hosts(),
                &HostFilter {
                    status: Some(vinfra_types::HostStatus::Connected),
                    maintenance: Some(true),
                }
            ),
            "/api/v1/hosts?status=connected&maintenance=true"
        );
        assert_eq!(
            filtered(
                events(),
                &EventFilter {
                    vm: Some("a b".into()),
                    ..Default::default()
                }
            ),
            "/api/v1/events?vm=a%20b"
        );
        assert_eq!(
            filtered(
                rules(),
                &RuleFilter {
                    kind: Some(vinfra_types::balancing::RuleKind::RunOn),
                    host: Some("h1".into()),
                    ..Default::default()
                }
            ),
            "/api/v1/rules?host=h1&kind=run_on"
        );
        assert_eq!(task(42), "/api/v1/tasks/42");
        assert_eq!(task_wait(42, 30), "/api/v1/tasks/42?wait_s=30");
    }

    #[test]
    fn paths_match_the_routes() {
        assert_eq!(host_switch("h1"), "/api/v1/hosts/h1/switch");
        assert_eq!(host_fence("h1", false), "/api/v1/hosts/h1/fence");
        assert_eq!(host_fence("h1", true), "/api/v1/hosts/h1/fence?force=true");
        assert_eq!(
            vm_console("a", Some(100)),
            "/api/v1/vms/a/console?bytes=100"
        );
        assert_eq!(vm_console("a", None), "/api/v1/vms/a/console");
        assert_eq!(vm_migration("a"), "/api/v1/vms/a/migration");
        assert_eq!(
            apply_recommendation(7),
            "/api/v1/drs/recommendations/7/apply"
        );
        assert_eq!(network_counters("blue"), "/api/v1/networks/blue/counters");
        assert_eq!(token_rotate(), "/api/v1/token/rotate");
        assert_eq!(tokens(), "/api/v1/tokens");
        assert_eq!(token("a/b"), "/api/v1/tokens/a%2Fb");
        assert_eq!(join_tokens(), "/api/v1/join-tokens");
        assert_eq!(vm_nic("a", 1), "/api/v1/vms/a/nics/1");
        assert_eq!(vm_counters("a"), "/api/v1/vms/a/counters");
        assert_eq!(
            security_group_rule("web", 3),
            "/api/v1/security-groups/web/rules/3"
        );
        assert_eq!(
            security_group_rules("web"),
            "/api/v1/security-groups/web/rules"
        );
        assert_eq!(router("r1"), "/api/v1/routers/r1");
        assert_eq!(router_interfaces("r1"), "/api/v1/routers/r1/interfaces");
        assert_eq!(
            router_interface("r1", "a/b"),
            "/api/v1/routers/r1/interfaces/a%2Fb"
        );
        assert_eq!(router_routes("r1"), "/api/v1/routers/r1/routes");
        assert_eq!(
            router_route("r1", std::net::Ipv4Addr::new(10, 9, 0, 0), 16),
            "/api/v1/routers/r1/routes/10.9.0.0/16"
        );
        assert_eq!(router_uplink("r1"), "/api/v1/routers/r1/uplink");
        assert_eq!(floating_ips(), "/api/v1/floating-ips");
        assert_eq!(vm_floating_ips("a"), "/api/v1/vms/a/floating-ips");
        assert_eq!(
            vm_floating_ip("a", std::net::Ipv4Addr::new(10, 82, 0, 20)),
            "/api/v1/vms/a/floating-ips/10.82.0.20"
        );
    }
}
