//! One handler per endpoint: parse the request into a [`Command`], hand it to the console
//! ([`ConsoleApi::execute`]), render the [`Reply`]. No logic lives here beyond HTTP's own (a
//! task's answer held for `Prefer: wait`, in [`submit`]). The VMs' handlers are in
//! [`super::vm_routes`].

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use vinfra_types::api::{ClusterSettings, JoinTokenResponse, TokenResponse, UpdateHostRequest};
use vinfra_types::balancing::{DrsStatus, PlacementRule};
use vinfra_types::ha::HaStatus;
use vinfra_types::network::{
    CreateNetworkRequest, HostSwitchCounters, NetworkCounters, NetworkSummary,
};
use vinfra_types::router::{
    AddFloatingIpRequest, AttachNetworkRequest, CreateRouterRequest, FloatingIpSummary,
    RouterAttachment, RouterStaticRoute, RouterSummary, SetUplinkRequest, UplinkSummary,
};
use vinfra_types::security_group::{
    SecurityGroup, SecurityGroupCounters, SecurityGroupSummary, SgRule,
};
use vinfra_types::task::Task;
use vinfra_types::usage::UsageHistory;
use vinfra_types::{HostSummary, Problem};

use super::extract::{
    ApiJson, ApiQuery, Caller, IdPath, NameAddressPath, NameNumberPath, NamePath, NamePrefixPath,
    PreferWait, TwoNamesPath,
};
use super::pages::{self, PageQuery};
use super::problem::ApiError;
use crate::interface::{Command, ConsoleApi, Reply, Submitted};

/// The content type of the metrics (`GET /metrics`): the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Runs one command and renders its reply: 200 with the body, 201 for what was created, 202 for
/// a migration started, 204 when there is nothing to show.
pub(super) async fn run<A: ConsoleApi>(
    caller: &Caller<A>,
    command: Command,
) -> Result<Response, ApiError> {
    let Caller(console, actor) = caller;
    let reply = console.execute(actor.clone(), command).await?;
    Ok(render(reply))
}

/// Runs a command that may be answered with a task ([`ConsoleApi::submit`]): 202 Accepted
/// with the task and its `Location`, or its refusal; a command that is not a task renders as
/// [`run`] renders it. With a `wait` preference (`Prefer: wait=N`, [`PreferWait`]) the answer
/// waits up to N s for the task's end and is the task as it is then (still 202, with
/// `Preference-Applied: wait=N`): a client whose task ends within that needs no long poll.
pub(super) async fn submit<A: ConsoleApi>(
    caller: &Caller<A>,
    PreferWait(wait): PreferWait,
    command: Command,
) -> Result<Response, ApiError> {
    let Caller(console, actor) = caller;
    Ok(match console.submit(actor.clone(), command).await? {
        Submitted::Done(reply) => render(reply),
        Submitted::Task(mut task) => {
            let wait = wait.filter(|s| *s > 0);
            // Applied when the task had ended at once, or the wait ran.
            let mut applied = wait.is_some() && task.state.is_final();
            if let Some(wait_s) = wait.filter(|_| !applied) {
                let show = Command::ShowTask {
                    id: task.id,
                    wait_s: Some(wait_s),
                };
                match console.execute(actor.clone(), show).await {
                    Ok(Reply::Task(now)) => {
                        task = now;
                        applied = true;
                    }
                    // Gone meanwhile (pruned: a thousand tasks ended since): as accepted.
                    Err(e) => tracing::debug!(
                        task = task.id,
                        "no wait for the task's end: {}",
                        vinfra_types::error::Chain(&e)
                    ),
                    Ok(_) => tracing::warn!(task = task.id, "a task's wait answered no task"),
                }
            }
            let location = format!("/api/v1/tasks/{}", task.id);
            let mut resp = (StatusCode::ACCEPTED, Json(task)).into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            if let Some(wait_s) = wait.filter(|_| applied) {
                if let Ok(v) = axum::http::HeaderValue::from_str(&format!("wait={wait_s}")) {
                    resp.headers_mut().insert(PREFERENCE_APPLIED, v);
                }
            }
            resp
        }
    })
}

/// RFC 7240's answer header: the preferences the answer followed.
const PREFERENCE_APPLIED: header::HeaderName =
    header::HeaderName::from_static("preference-applied");

/// Runs a list command and renders the page `query` asks for ([`pages`]): the whole list
/// without `limit` or `page_token`. A bad page request is refused before the command runs.
pub(super) async fn list<A: ConsoleApi>(
    caller: &Caller<A>,
    command: Command,
    query: &PageQuery,
    path: &str,
) -> Result<Response, ApiError> {
    let page = query.page()?;
    let Caller(console, actor) = caller;
    let reply = console.execute(actor.clone(), command).await?;
    let name = |n: &String| n.clone();
    Ok(match reply {
        Reply::Hosts(v) => pages::answer(v, |h| name(&h.name), page, path),
        Reply::Tokens(v) => pages::answer(v, |t| name(&t.name), page, path),
        Reply::Vms(v) => pages::answer(v, |m| name(&m.name), page, path),
        Reply::Events(v) => pages::answer(v, |e| pages::number_key(e.seq), page, path),
        Reply::Rules(v) => pages::answer(v, |r| name(&r.name), page, path),
        Reply::Recommendations(v) => pages::answer(v, |r| pages::number_key(r.id), page, path),
        Reply::Networks(v) => pages::answer(v, |n| name(&n.network.name), page, path),
        Reply::SecurityGroups(v) => pages::answer(v, |g| name(&g.group.name), page, path),
        Reply::Routers(v) => pages::answer(v, |r| name(&r.name), page, path),
        Reply::FloatingIps(v) => pages::answer(v, |f| pages::address_key(&f.ip), page, path),
        Reply::RevokedCertificates(v) => {
            let key = |r: &vinfra_types::api::RevokedCertificate| {
                pages::number_key(r.revoked_at) + &r.serial
            };
            pages::answer(v, key, page, path)
        }
        Reply::Tasks(v) => pages::answer(v, |t| pages::number_key(t.id), page, path),
        other => render(other),
    })
}

/// Renders a reply: 200 with the body, 201 for what was created, 202 for a migration started,
/// 204 when there is nothing to show.
fn render(reply: Reply) -> Response {
    match reply {
        Reply::Hosts(v) => Json(v).into_response(),
        Reply::Host(v) => Json(v).into_response(),
        Reply::Fenced(v) => Json(v).into_response(),
        Reply::Settings(v) => Json(v).into_response(),
        Reply::JoinToken(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Token(v) => Json(v).into_response(),
        Reply::Tokens(v) => Json(v).into_response(),
        Reply::TokenCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Vms(v) => Json(v).into_response(),
        Reply::Vm(v) => Json(v).into_response(),
        Reply::VmCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::VmsCreated(vms) => (
            StatusCode::CREATED,
            Json(vinfra_types::api::CreatedVms {
                vms: vms.iter().map(Into::into).collect(),
            }),
        )
            .into_response(),
        Reply::Migration(v) => Json(v).into_response(),
        Reply::MigrationStarted(v) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Reply::Console(v) => Json(v).into_response(),
        Reply::Events(v) => Json(v).into_response(),
        Reply::RevokedCertificates(v) => Json(v).into_response(),
        Reply::Flows(v) => Json(v).into_response(),
        Reply::Rules(v) => Json(v).into_response(),
        Reply::Rule(v) => Json(v).into_response(),
        Reply::RuleCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Drs(v) => Json(v).into_response(),
        Reply::Ha(v) => Json(v).into_response(),
        Reply::Recommendations(v) => Json(v).into_response(),
        Reply::Networks(v) => Json(v).into_response(),
        Reply::Network(v) => Json(v).into_response(),
        Reply::NetworkCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::NetworkCounters(v) => Json(v).into_response(),
        Reply::HostSwitch(v) => Json(v).into_response(),
        Reply::VmCounters(v) => Json(v).into_response(),
        Reply::Usage(v) => Json(v).into_response(),
        Reply::SecurityGroups(v) => Json(v).into_response(),
        Reply::SecurityGroup(v) => Json(v).into_response(),
        Reply::SecurityGroupCounters(v) => Json(v).into_response(),
        Reply::SecurityGroupCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::SgRuleCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Routers(v) => Json(v).into_response(),
        Reply::Router(v) => Json(v).into_response(),
        Reply::RouterCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::NetworkAttached(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::RouteCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Uplink(v) => Json(v).into_response(),
        Reply::FloatingIps(v) => Json(v).into_response(),
        Reply::FloatingIpCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Tasks(v) => Json(v).into_response(),
        Reply::Task(v) => Json(v).into_response(),
        Reply::Metrics(text) => {
            ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
        }
        // No API route asks for it (the web console's graphs do); shown as JSON all the same.
        Reply::Done => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `?force=true` on a host's fence.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FenceQuery {
    /// Also while the host's agent is connected (the fence powers off a running host).
    #[serde(default)]
    #[param(required = false)]
    pub force: bool,
}

/// One host.
#[utoipa::path(get, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, description = "the host", body = HostSummary)))]
pub async fn show_host<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowHost { name }).await
}

/// Sets or removes (`null`) the host's ratio override or fence command, or its maintenance
/// flag. The fence command is never shown again: the host's view says `fence_command_set`.
/// `maintenance: true` answers 202 with a `host_evacuate` task: the flag is set at once, and the
/// task ends when no running VM is left on the host (moved by balancing, or by hand), its
/// result the host; taking the host out of maintenance meanwhile ends it `cancelled` (the task
/// itself cannot be cancelled).
#[utoipa::path(patch, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")),
    request_body = UpdateHostRequest,
    responses((status = 200, description = "the updated host", body = HostSummary),
        (status = 202, description = "maintenance on: the evacuation's task, followed at its `Location`", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))),
        (status = 409, body = Problem)))]
pub async fn update_host<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
    ApiJson(update): ApiJson<UpdateHostRequest>,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::UpdateHost { name, update }).await
}

/// Runs the host's fence command (`sh -c`, `VINFRA_HOST` set, at most 60 s, then its process
/// group is killed): exit 0 means the host is off, and its `fenced_at` is set until its agent
/// connects again. Refused (409) when the host has no fence command, while another fence of it
/// runs, and while its agent is connected unless `force`. A command that exits otherwise or runs
/// out of time is 502 (`fence-failed`, with the tail of its output). Every fence is in the
/// event log.
#[utoipa::path(post, path = "/api/v1/hosts/{name}/fence", tag = "hosts", params(("name" = String, Path, description = "host name"), FenceQuery),
    responses((status = 202, description = "accepted: the task, followed at its `Location`; its result: the fence's outcome", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 409, body = Problem), (status = 502, body = Problem)))]
pub async fn fence_host<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
    ApiQuery(q): ApiQuery<FenceQuery>,
) -> Result<Response, ApiError> {
    submit(
        &c,
        prefer,
        Command::FenceHost {
            name,
            force: q.force,
        },
    )
    .await
}

/// Removes a host that has no VMs; its open connection is closed.
#[utoipa::path(delete, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 204, description = "removed"), (status = 409, body = Problem)))]
pub async fn delete_host<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteHost { name }).await
}

/// The cluster settings.
#[utoipa::path(get, path = "/api/v1/settings", tag = "cluster",
    responses((status = 200, description = "the settings", body = ClusterSettings)))]
pub async fn get_settings<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    run(&c, Command::GetSettings).await
}

/// Replaces the cluster settings.
#[utoipa::path(put, path = "/api/v1/settings", tag = "cluster", request_body = ClusterSettings,
    responses((status = 200, description = "the stored settings", body = ClusterSettings)))]
pub async fn put_settings<A: ConsoleApi>(
    c: Caller<A>,
    ApiJson(settings): ApiJson<ClusterSettings>,
) -> Result<Response, ApiError> {
    run(&c, Command::PutSettings { settings }).await
}

/// A one-time join token for a new host, valid 24 h.
#[utoipa::path(post, path = "/api/v1/join-tokens", tag = "cluster",
    responses((status = 201, description = "a new join token", body = JoinTokenResponse)))]
pub async fn create_join_token<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    run(&c, Command::CreateJoinToken).await
}

/// Gives the token that asks a new secret (same name, role and expiry); the old secret stops
/// working at once.
#[utoipa::path(post, path = "/api/v1/token/rotate", tag = "cluster",
    responses((status = 200, description = "the token's new secret", body = TokenResponse)))]
pub async fn rotate_token<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    run(&c, Command::RotateToken).await
}

/// Creates a placement rule. It is checked against the cluster and the other rules first:
/// contradictory rules are refused (409 `rule-conflict`), and so are rules naming VMs or hosts
/// that do not exist (422 `invalid-rule`); nothing is stored then.
#[utoipa::path(post, path = "/api/v1/rules", tag = "balancing", request_body = PlacementRule,
    responses((status = 201, description = "the created rule", body = PlacementRule), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_rule<A: ConsoleApi>(
    c: Caller<A>,
    ApiJson(rule): ApiJson<PlacementRule>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateRule { rule }).await
}

/// One placement rule.
#[utoipa::path(get, path = "/api/v1/rules/{name}", tag = "balancing", params(("name" = String, Path, description = "rule name")),
    responses((status = 200, description = "the rule", body = PlacementRule)))]
pub async fn show_rule<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowRule { name }).await
}

/// Deletes a placement rule.
#[utoipa::path(delete, path = "/api/v1/rules/{name}", tag = "balancing", params(("name" = String, Path, description = "rule name")),
    responses((status = 204, description = "deleted")))]
pub async fn delete_rule<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteRule { name }).await
}

/// High availability: the cluster's HA settings, each host's HA state (as the HA controller
/// last assessed it: state, detail, seconds in it, its lease), and the admission reserve (per
/// failure scenario: the hosts that fail, their HA VMs with their size and where each would
/// restart, the shortfall). Above 64 scenarios only the failing ones are listed.
#[utoipa::path(get, path = "/api/v1/ha", tag = "cluster",
    responses((status = 200, description = "the cluster's HA status", body = HaStatus)))]
pub async fn show_ha<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    run(&c, Command::ShowHa).await
}

/// The balancer: mode, level, interval, and its last pass.
#[utoipa::path(get, path = "/api/v1/drs", tag = "balancing",
    responses((status = 200, description = "the balancer's status", body = DrsStatus)))]
pub async fn drs_status<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    run(&c, Command::DrsStatus).await
}

/// Runs a balancing pass now (manual: new recommendations; automatic: moves started).
#[utoipa::path(post, path = "/api/v1/drs/run", tag = "balancing",
    responses((status = 200, description = "the status after the pass", body = DrsStatus), (status = 409, body = Problem)))]
pub async fn drs_run<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    run(&c, Command::DrsRun).await
}

/// Starts the live migration a recommendation proposes; follow it with
/// `GET /api/v1/vms/{vm}/migration`.
#[utoipa::path(post, path = "/api/v1/drs/recommendations/{id}/apply", tag = "balancing",
    params(("id" = u64, Path, description = "recommendation id")),
    responses((status = 202, description = "accepted: the task, followed at its `Location`; it ends with the migration; its result: the last progress", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn apply_recommendation<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::ApplyRecommendation { id }).await
}

/// Creates a logical network: `overlay` (a VNI, the lowest free from 10000 up when absent) or
/// `vlan` (a VLAN ID, the lowest free from 100 up), with an IPv4 subnet whose addresses are given
/// to VM NICs. A taken name, VNI or VLAN ID is 409; nothing is stored on refusal.
#[utoipa::path(post, path = "/api/v1/networks", tag = "networks", request_body = CreateNetworkRequest,
    responses((status = 201, description = "the created network", body = NetworkSummary), (status = 409, body = Problem)))]
pub async fn create_network<A: ConsoleApi>(
    c: Caller<A>,
    ApiJson(request): ApiJson<CreateNetworkRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateNetwork { request }).await
}

/// One logical network with its ports: for each VM NIC on it, the VM, its host, MAC and address.
#[utoipa::path(get, path = "/api/v1/networks/{name}", tag = "networks", params(("name" = String, Path, description = "network name")),
    responses((status = 200, description = "the network", body = NetworkSummary)))]
pub async fn show_network<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowNetwork { name }).await
}

/// Deletes a logical network; refused (409, naming the VMs) while a VM has a NIC on it.
#[utoipa::path(delete, path = "/api/v1/networks/{name}", tag = "networks", params(("name" = String, Path, description = "network name")),
    responses((status = 204, description = "deleted"), (status = 409, body = Problem)))]
pub async fn delete_network<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteNetwork { name }).await
}

/// A network's traffic, read now from the switches of every host with a VM NIC on it (in
/// parallel): per port (VM, NIC, host, MAC, address, rx/tx packets and bytes, drops by reason)
/// and per host (the network's counters on that host's switch). Answered within 1 s: a host
/// that is disconnected or does not answer within 1 s has its ports and itself without
/// counters (`null`) and an `error`; the call still succeeds.
#[utoipa::path(get, path = "/api/v1/networks/{name}/counters", tag = "networks", params(("name" = String, Path, description = "network name")),
    responses((status = 200, description = "the network's counters", body = NetworkCounters)))]
pub async fn network_counters<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::NetworkCounters { name }).await
}

/// A host's virtual switch counters, read now through its agent: per network, per VM NIC port
/// (VM id and NIC index), the uplink, and drops that belong to no port. Answered within 1 s: a
/// host that does not answer in time is 504 `agent-timeout`.
#[utoipa::path(get, path = "/api/v1/hosts/{name}/switch", tag = "networks", params(("name" = String, Path, description = "host name")),
    responses((status = 200, description = "the host's switch counters", body = HostSwitchCounters),
        (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn host_switch<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::HostSwitch { name }).await
}

/// The host's CPU (cores busy, the mean of each 10 s) and used memory over the last hour, from
/// its agent's reports (kept by the console in memory; no samples while it is disconnected).
#[utoipa::path(get, path = "/api/v1/hosts/{name}/usage", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, description = "the host's last hour", body = UsageHistory), (status = 404, body = Problem)))]
pub async fn host_usage<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::HostUsage { name }).await
}

/// Creates a security group with its initial rules (ids assigned from 1; ids in the request are
/// ignored). A rule's remote_group must exist or be the group itself (404). A NIC in no group
/// is not filtered; a NIC in groups gets the union of their rules: deny wins over allow, then
/// ingress is denied and egress allowed; replies to allowed connections pass.
#[utoipa::path(post, path = "/api/v1/security-groups", tag = "security-groups", request_body = SecurityGroup,
    responses((status = 201, description = "the created group", body = SecurityGroupSummary), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_security_group<A: ConsoleApi>(
    c: Caller<A>,
    ApiJson(group): ApiJson<SecurityGroup>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateSecurityGroup { group }).await
}

/// One security group: its rules with their ids, the NICs in it, the groups whose rules name
/// it as their remote.
#[utoipa::path(get, path = "/api/v1/security-groups/{name}", tag = "security-groups", params(("name" = String, Path, description = "security group name")),
    responses((status = 200, description = "the group", body = SecurityGroupSummary)))]
pub async fn show_security_group<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowSecurityGroup { name }).await
}

/// A security group's rule hits (first packets each rule decided, summed over the group's NICs)
/// and each NIC's tracked connections, read now from the switches of the hosts running its
/// NICs' VMs, in parallel. Answered within 1 s: a NIC whose host does not answer within 1 s or
/// whose VM does not run is listed with the reason (`error`, no `connections`) and adds
/// nothing.
#[utoipa::path(get, path = "/api/v1/security-groups/{name}/counters", tag = "security-groups", params(("name" = String, Path, description = "security group name")),
    responses((status = 200, description = "the group's counters", body = SecurityGroupCounters)))]
pub async fn security_group_counters<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::SecurityGroupCounters { name }).await
}

/// Deletes a security group; refused (409, naming them) while NICs are in it or other groups'
/// rules name it as their remote.
#[utoipa::path(delete, path = "/api/v1/security-groups/{name}", tag = "security-groups", params(("name" = String, Path, description = "security group name")),
    responses((status = 204, description = "deleted"), (status = 409, body = Problem)))]
pub async fn delete_security_group<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteSecurityGroup { name }).await
}

/// Adds a rule to a security group; returns it with its id (the group's next, never reused).
/// A remote_group that does not exist is 404.
#[utoipa::path(post, path = "/api/v1/security-groups/{name}/rules", tag = "security-groups", params(("name" = String, Path, description = "security group name")),
    request_body = SgRule,
    responses((status = 201, description = "the rule with its id", body = SgRule), (status = 409, body = Problem)))]
pub async fn add_sg_rule<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(group): NamePath,
    ApiJson(rule): ApiJson<SgRule>,
) -> Result<Response, ApiError> {
    run(&c, Command::AddSgRule { group, rule }).await
}

/// Deletes rule `id` of a security group.
#[utoipa::path(delete, path = "/api/v1/security-groups/{name}/rules/{id}", tag = "security-groups",
    params(("name" = String, Path, description = "security group name"), ("id" = u32, Path, description = "rule id")),
    responses((status = 204, description = "deleted"), (status = 409, body = Problem)))]
pub async fn delete_sg_rule<A: ConsoleApi>(
    c: Caller<A>,
    NameNumberPath(group, id): NameNumberPath,
) -> Result<Response, ApiError> {
    let id = u32::try_from(id).map_err(|_| ApiError::Id {
        text: id.to_string(),
    })?;
    run(&c, Command::DeleteSgRule { group, id }).await
}

/// Creates a router (a VRF: a routing domain with its own table), without interfaces or
/// routes; its number on the switches is the lowest free from 1. A taken name is 409.
#[utoipa::path(post, path = "/api/v1/routers", tag = "routers", request_body = CreateRouterRequest,
    responses((status = 201, description = "the created router", body = RouterSummary), (status = 409, body = Problem)))]
pub async fn create_router<A: ConsoleApi>(
    c: Caller<A>,
    ApiJson(request): ApiJson<CreateRouterRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateRouter { request }).await
}

/// One router: its interfaces (network, subnet, gateway address and MAC) and static routes.
#[utoipa::path(get, path = "/api/v1/routers/{name}", tag = "routers", params(("name" = String, Path, description = "router name")),
    responses((status = 200, description = "the router", body = RouterSummary)))]
pub async fn show_router<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowRouter { name }).await
}

/// Deletes a router; refused (409, naming them) while networks are attached to it.
#[utoipa::path(delete, path = "/api/v1/routers/{name}", tag = "routers", params(("name" = String, Path, description = "router name")),
    responses((status = 204, description = "deleted"), (status = 409, body = Problem)))]
pub async fn delete_router<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteRouter { name }).await
}

/// Attaches a network to the router: the router's interface on it is the network's gateway,
/// the same address and MAC (`02:76:72:00:HH:LL` from the network's switch number) on every
/// host. A network with a gateway keeps it (another `gateway` is 409); a network without one
/// gets `gateway` or its subnet's first usable address, which must not be held by a VM (409
/// naming it) and becomes the network's gateway (reserved, advertised by DHCP). Refused (409)
/// when the network is attached to a router already or its subnet overlaps the subnet of
/// another network of the router; an unknown network is 404.
#[utoipa::path(post, path = "/api/v1/routers/{name}/interfaces", tag = "routers", params(("name" = String, Path, description = "router name")),
    request_body = AttachNetworkRequest,
    responses((status = 201, description = "the router's interface on the network", body = RouterAttachment), (status = 409, body = Problem)))]
pub async fn attach_network<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(router): NamePath,
    ApiJson(request): ApiJson<AttachNetworkRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::AttachNetwork { router, request }).await
}

/// Detaches a network from the router (the network keeps its gateway address); refused (409,
/// naming them) while static routes have their next hop on it. A network not attached to the
/// router is 404.
#[utoipa::path(delete, path = "/api/v1/routers/{name}/interfaces/{network}", tag = "routers",
    params(("name" = String, Path, description = "router name"), ("network" = String, Path, description = "network name")),
    responses((status = 204, description = "detached"), (status = 409, body = Problem)))]
pub async fn detach_network<A: ConsoleApi>(
    c: Caller<A>,
    TwoNamesPath(router, network): TwoNamesPath,
) -> Result<Response, ApiError> {
    run(&c, Command::DetachNetwork { router, network }).await
}

/// Adds a static route: `prefix` (host bits zero, 400 otherwise) via `via`, a usable address
/// of one of the router's subnets other than its own gateways (409 otherwise). A route to the
/// same prefix is refused (409), not replaced. A connected route (an attached subnet) wins
/// over a static one of the same prefix.
#[utoipa::path(post, path = "/api/v1/routers/{name}/routes", tag = "routers", params(("name" = String, Path, description = "router name")),
    request_body = RouterStaticRoute,
    responses((status = 201, description = "the route as stored", body = RouterStaticRoute), (status = 409, body = Problem)))]
pub async fn add_route<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(router): NamePath,
    ApiJson(route): ApiJson<RouterStaticRoute>,
) -> Result<Response, ApiError> {
    run(&c, Command::AddRoute { router, route }).await
}

/// Deletes the router's static route to `{addr}/{len}` (404 when it has none).
#[utoipa::path(delete, path = "/api/v1/routers/{name}/routes/{addr}/{len}", tag = "routers",
    params(("name" = String, Path, description = "router name"), ("addr" = String, Path, description = "the prefix's address, A.B.C.D"),
        ("len" = u8, Path, description = "the prefix's length, 0 to 32")),
    responses((status = 204, description = "deleted")))]
pub async fn delete_route<A: ConsoleApi>(
    c: Caller<A>,
    NamePrefixPath(router, prefix): NamePrefixPath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteRoute { router, prefix }).await
}

/// Gives the router its uplink on an external network (a VLAN network on the hosts' trunks):
/// its address there (source NAT address), the MAC `02:76:72:01:RR:LL` from its number, and an
/// edge host elected at once. The network must be a VLAN network attached to no router, whose
/// subnet overlaps none of the router's (409), unknown is 404; the address a usable address of
/// its subnet (400), not its gateway nor held by a NIC, an uplink or a floating IP (409). A
/// router with an uplink is 409 (remove it first).
#[utoipa::path(put, path = "/api/v1/routers/{name}/uplink", tag = "routers", params(("name" = String, Path, description = "router name")),
    request_body = SetUplinkRequest,
    responses((status = 200, description = "the uplink with its edge and standby", body = UplinkSummary), (status = 409, body = Problem)))]
pub async fn set_uplink<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(router): NamePath,
    ApiJson(request): ApiJson<SetUplinkRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::SetUplink { router, request }).await
}

/// Removes the router's uplink (404 when it has none); refused (409) while it has floating IPs
/// or static routes' next hops are on its subnet. Its address is free again.
#[utoipa::path(delete, path = "/api/v1/routers/{name}/uplink", tag = "routers", params(("name" = String, Path, description = "router name")),
    responses((status = 204, description = "removed"), (status = 409, body = Problem)))]
pub async fn remove_uplink<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(router): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::RemoveUplink { router }).await
}

/// Gives one of the VM's NICs (`nic`, default 0) a floating IP: 1:1 NAT on the edge of the
/// router its network is attached to. The NIC needs an address and its router an uplink
/// (409); the address must be a usable address of the uplink's subnet (400), not the uplink's
/// address, the external network's gateway nor held by a NIC or floating IP (409). One per NIC.
#[utoipa::path(post, path = "/api/v1/vms/{name}/floating-ips", tag = "routers", params(("name" = String, Path, description = "VM name")),
    request_body = AddFloatingIpRequest,
    responses((status = 201, description = "the floating IP", body = FloatingIpSummary), (status = 409, body = Problem)))]
pub async fn add_floating_ip<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(vm): NamePath,
    ApiJson(request): ApiJson<AddFloatingIpRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::AddFloatingIp { vm, request }).await
}

/// Deletes the VM's floating IP `{ip}` (404 when it has none such).
#[utoipa::path(delete, path = "/api/v1/vms/{name}/floating-ips/{ip}", tag = "routers",
    params(("name" = String, Path, description = "VM name"), ("ip" = String, Path, description = "the floating IP, A.B.C.D")),
    responses((status = 204, description = "deleted")))]
pub async fn delete_floating_ip<A: ConsoleApi>(
    c: Caller<A>,
    NameAddressPath(vm, ip): NameAddressPath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteFloatingIp { vm, ip }).await
}
