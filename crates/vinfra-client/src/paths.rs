//! Every path of the REST API, written once (docs/design.md "REST API", docs/openapi.json).
//!
//! The typed methods of [`crate::Client`] use these; a test that sends a malformed request on
//! purpose through [`crate::Client::raw`] takes its path from here too. Names and other
//! parameters are percent-encoded as one path segment, so a name can never reach another route.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

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
    match bytes {
        Some(n) => item("vms", name, &format!("/console?bytes={n}")),
        None => item("vms", name, "/console"),
    }
}

/// `/api/v1/events`.
pub fn events() -> String {
    format!("{API_V1}/events")
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
        assert_eq!(join_tokens(), "/api/v1/join-tokens");
    }
}
