//! One handler per endpoint: parse the request into a [`Command`], hand it to the console
//! ([`ConsoleApi::execute`]), render the [`Reply`]. No logic lives here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use vinfra_types::api::{
    ClusterSettings, ConsoleLog, CreateVmRequest, Event, JoinTokenResponse, MigrateVmRequest,
    StopVmRequest, TokenResponse, UpdateHostRequest, UpdateVmRequest,
};
use vinfra_types::balancing::{DrsStatus, PlacementRule, Recommendation};
use vinfra_types::ha::{FenceOutcome, HaStatus};
use vinfra_types::network::{
    CreateNetworkRequest, HostSwitchCounters, NetworkCounters, NetworkSummary,
};
use vinfra_types::{HostSummary, MigrationProgress, Problem, VmSummary};

use super::extract::{ApiJson, ApiQuery, IdPath, NamePath, OptionalJson};
use super::problem::ApiError;
use crate::interface::{Command, ConsoleApi, Reply};

/// The console (or a stub) the handlers hand their commands to.
type Shared<A> = State<Arc<A>>;

/// Runs one command and renders its reply: 200 with the body, 201 for what was created, 202 for
/// a migration started, 204 when there is nothing to show.
async fn run<A: ConsoleApi>(console: &Arc<A>, command: Command) -> Result<Response, ApiError> {
    let reply = console.execute(command).await?;
    Ok(match reply {
        Reply::Hosts(v) => Json(v).into_response(),
        Reply::Host(v) => Json(v).into_response(),
        Reply::Fenced(v) => Json(v).into_response(),
        Reply::Settings(v) => Json(v).into_response(),
        Reply::JoinToken(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Token(v) => Json(v).into_response(),
        Reply::Vms(v) => Json(v).into_response(),
        Reply::Vm(v) => Json(v).into_response(),
        Reply::VmCreated(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Reply::Migration(v) => Json(v).into_response(),
        Reply::MigrationStarted(v) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Reply::Console(v) => Json(v).into_response(),
        Reply::Events(v) => Json(v).into_response(),
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
        Reply::Done => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `?force=true` on deletes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Also when the VM's host is disconnected (its disks are then left behind).
    #[serde(default)]
    #[param(required = false)]
    pub force: bool,
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

/// `?bytes=N` on the console log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// How many bytes of the tail to return (1..=1 MiB, default 64 KiB).
    pub bytes: Option<u64>,
}

/// Every host with its capacity, allocation, usage and connection status.
#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts",
    responses((status = 200, description = "all hosts", body = [HostSummary])))]
pub async fn list_hosts<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::ListHosts).await
}

/// One host.
#[utoipa::path(get, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, description = "the host", body = HostSummary)))]
pub async fn show_host<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowHost { name }).await
}

/// Sets or removes (`null`) the host's ratio override or fence command, or its maintenance
/// flag. The fence command is never shown again: the host's view says `fence_command_set`.
#[utoipa::path(patch, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")),
    request_body = UpdateHostRequest,
    responses((status = 200, description = "the updated host", body = HostSummary), (status = 409, body = Problem)))]
pub async fn update_host<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
    ApiJson(update): ApiJson<UpdateHostRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::UpdateHost { name, update }).await
}

/// Runs the host's fence command (`sh -c`, `VINFRA_HOST` set, at most 60 s, then its process
/// group is killed): exit 0 means the host is off, and its `fenced_at` is set until its agent
/// connects again. Refused (409) when the host has no fence command, while another fence of it
/// runs, and while its agent is connected unless `force`. A command that exits otherwise or runs
/// out of time is 502 (`fence-failed`, with the tail of its output). Every fence is in the
/// event log.
#[utoipa::path(post, path = "/api/v1/hosts/{name}/fence", tag = "hosts", params(("name" = String, Path, description = "host name"), FenceQuery),
    responses((status = 200, description = "the host is fenced", body = FenceOutcome), (status = 409, body = Problem), (status = 502, body = Problem)))]
pub async fn fence_host<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
    ApiQuery(q): ApiQuery<FenceQuery>,
) -> Result<Response, ApiError> {
    run(
        &c,
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
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteHost { name }).await
}

/// The cluster settings.
#[utoipa::path(get, path = "/api/v1/settings", tag = "cluster",
    responses((status = 200, description = "the settings", body = ClusterSettings)))]
pub async fn get_settings<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::GetSettings).await
}

/// Replaces the cluster settings.
#[utoipa::path(put, path = "/api/v1/settings", tag = "cluster", request_body = ClusterSettings,
    responses((status = 200, description = "the stored settings", body = ClusterSettings)))]
pub async fn put_settings<A: ConsoleApi>(
    State(c): Shared<A>,
    ApiJson(settings): ApiJson<ClusterSettings>,
) -> Result<Response, ApiError> {
    run(&c, Command::PutSettings { settings }).await
}

/// A one-time join token for a new host, valid 24 h.
#[utoipa::path(post, path = "/api/v1/join-tokens", tag = "cluster",
    responses((status = 201, description = "a new join token", body = JoinTokenResponse)))]
pub async fn create_join_token<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::CreateJoinToken).await
}

/// Replaces the API token; the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/token/rotate", tag = "cluster",
    responses((status = 200, description = "the new API token", body = TokenResponse)))]
pub async fn rotate_token<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::RotateToken).await
}

/// Every VM with its desired and observed state.
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms",
    responses((status = 200, description = "all VMs", body = [VmSummary])))]
pub async fn list_vms<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::ListVms).await
}

/// Places and creates a VM (and starts it unless `start` is false).
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms", request_body = CreateVmRequest,
    responses((status = 201, description = "the created VM", body = VmSummary), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn create_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    ApiJson(request): ApiJson<CreateVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateVm { request }).await
}

/// One VM.
#[utoipa::path(get, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the VM", body = VmSummary)))]
pub async fn show_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowVm { name }).await
}

/// Changes the VM's HA policy: only the fields given change (`start_after: null` removes the
/// ordering). A start_after naming a VM that does not exist, the VM itself, or making a
/// start-after cycle is refused (422 `invalid-start-after`) and nothing is written.
#[utoipa::path(patch, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path, description = "VM name")),
    request_body = UpdateVmRequest,
    responses((status = 200, description = "the updated VM", body = VmSummary), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
    ApiJson(update): ApiJson<UpdateVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::UpdateVm { name, update }).await
}

/// Stops the VM and deletes it with its disks.
#[utoipa::path(delete, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path, description = "VM name"), ForceQuery),
    responses((status = 204, description = "deleted"), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn delete_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
    ApiQuery(q): ApiQuery<ForceQuery>,
) -> Result<Response, ApiError> {
    run(
        &c,
        Command::DeleteVm {
            name,
            force: q.force,
        },
    )
    .await
}

/// Starts a stopped VM on its host.
#[utoipa::path(post, path = "/api/v1/vms/{name}/start", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the VM as its host left it", body = VmSummary), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn start_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::StartVm { name }).await
}

/// Stops a VM: ACPI power-off, then kill after `timeout_s`; at once with `force`.
#[utoipa::path(post, path = "/api/v1/vms/{name}/stop", tag = "vms", params(("name" = String, Path, description = "VM name")),
    request_body(content = Option<StopVmRequest>, description = "optional; an empty body stops gracefully with the default timeout"),
    responses((status = 200, description = "the VM as its host left it", body = VmSummary), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn stop_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
    OptionalJson(request): OptionalJson<StopVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::StopVm { name, request }).await
}

/// Resets a running VM.
#[utoipa::path(post, path = "/api/v1/vms/{name}/reboot", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the VM as its host left it", body = VmSummary), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn reboot_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::RebootVm { name }).await
}

/// Starts a live migration (to the host in `to`, else one placement picks); follow it with
/// `GET /api/v1/vms/{name}/migration`.
#[utoipa::path(post, path = "/api/v1/vms/{name}/migrate", tag = "migration", params(("name" = String, Path, description = "VM name")),
    request_body(content = Option<MigrateVmRequest>, description = "optional; an empty body lets placement pick the destination"),
    responses((status = 202, description = "the migration started", body = MigrationProgress), (status = 409, body = Problem)))]
pub async fn migrate_vm<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
    OptionalJson(request): OptionalJson<MigrateVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::MigrateVm { name, request }).await
}

/// Progress of the VM's current or last migration.
#[utoipa::path(get, path = "/api/v1/vms/{name}/migration", tag = "migration", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the progress", body = MigrationProgress)))]
pub async fn show_migration<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowMigration { name }).await
}

/// Cancels the running migration and waits (up to 30 s) for it to end.
#[utoipa::path(delete, path = "/api/v1/vms/{name}/migration", tag = "migration", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the final progress", body = MigrationProgress), (status = 409, body = Problem)))]
pub async fn cancel_migration<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::CancelMigration { name }).await
}

/// The tail of the VM's serial console.
#[utoipa::path(get, path = "/api/v1/vms/{name}/console", tag = "vms", params(("name" = String, Path, description = "VM name"), ConsoleQuery),
    responses((status = 200, description = "the console text", body = ConsoleLog), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn console_log<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
) -> Result<Response, ApiError> {
    run(
        &c,
        Command::ConsoleLog {
            name,
            bytes: q.bytes,
        },
    )
    .await
}

/// The last 1000 events, oldest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "cluster",
    responses((status = 200, description = "the events", body = [Event])))]
pub async fn list_events<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::ListEvents).await
}

/// Every placement rule, in name order.
#[utoipa::path(get, path = "/api/v1/rules", tag = "balancing",
    responses((status = 200, description = "all rules", body = [PlacementRule])))]
pub async fn list_rules<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::ListRules).await
}

/// Creates a placement rule. It is checked against the cluster and the other rules first:
/// contradictory rules are refused (409 `rule-conflict`), and so are rules naming VMs or hosts
/// that do not exist (422 `invalid-rule`); nothing is stored then.
#[utoipa::path(post, path = "/api/v1/rules", tag = "balancing", request_body = PlacementRule,
    responses((status = 201, description = "the created rule", body = PlacementRule), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_rule<A: ConsoleApi>(
    State(c): Shared<A>,
    ApiJson(rule): ApiJson<PlacementRule>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateRule { rule }).await
}

/// One placement rule.
#[utoipa::path(get, path = "/api/v1/rules/{name}", tag = "balancing", params(("name" = String, Path, description = "rule name")),
    responses((status = 200, description = "the rule", body = PlacementRule)))]
pub async fn show_rule<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowRule { name }).await
}

/// Deletes a placement rule.
#[utoipa::path(delete, path = "/api/v1/rules/{name}", tag = "balancing", params(("name" = String, Path, description = "rule name")),
    responses((status = 204, description = "deleted")))]
pub async fn delete_rule<A: ConsoleApi>(
    State(c): Shared<A>,
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
pub async fn show_ha<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::ShowHa).await
}

/// The balancer: mode, level, interval, and its last pass.
#[utoipa::path(get, path = "/api/v1/drs", tag = "balancing",
    responses((status = 200, description = "the balancer's status", body = DrsStatus)))]
pub async fn drs_status<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::DrsStatus).await
}

/// Runs a balancing pass now (manual: new recommendations; automatic: moves started).
#[utoipa::path(post, path = "/api/v1/drs/run", tag = "balancing",
    responses((status = 200, description = "the status after the pass", body = DrsStatus), (status = 409, body = Problem)))]
pub async fn drs_run<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::DrsRun).await
}

/// The recommendations of the latest pass (manual mode), in plan order.
#[utoipa::path(get, path = "/api/v1/drs/recommendations", tag = "balancing",
    responses((status = 200, description = "the recommendations", body = [Recommendation])))]
pub async fn list_recommendations<A: ConsoleApi>(
    State(c): Shared<A>,
) -> Result<Response, ApiError> {
    run(&c, Command::ListRecommendations).await
}

/// Starts the live migration a recommendation proposes; follow it with
/// `GET /api/v1/vms/{vm}/migration`.
#[utoipa::path(post, path = "/api/v1/drs/recommendations/{id}/apply", tag = "balancing",
    params(("id" = u64, Path, description = "recommendation id")),
    responses((status = 202, description = "the migration started", body = MigrationProgress), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn apply_recommendation<A: ConsoleApi>(
    State(c): Shared<A>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    run(&c, Command::ApplyRecommendation { id }).await
}

/// Every logical network with its ports, in name order.
#[utoipa::path(get, path = "/api/v1/networks", tag = "networks",
    responses((status = 200, description = "all networks", body = [NetworkSummary])))]
pub async fn list_networks<A: ConsoleApi>(State(c): Shared<A>) -> Result<Response, ApiError> {
    run(&c, Command::ListNetworks).await
}

/// Creates a logical network: `overlay` (a VNI, the lowest free from 10000 up when absent) or
/// `vlan` (a VLAN ID, the lowest free from 100 up), with an IPv4 subnet whose addresses are given
/// to VM NICs. A taken name, VNI or VLAN ID is 409; nothing is stored on refusal.
#[utoipa::path(post, path = "/api/v1/networks", tag = "networks", request_body = CreateNetworkRequest,
    responses((status = 201, description = "the created network", body = NetworkSummary), (status = 409, body = Problem)))]
pub async fn create_network<A: ConsoleApi>(
    State(c): Shared<A>,
    ApiJson(request): ApiJson<CreateNetworkRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateNetwork { request }).await
}

/// One logical network with its ports: for each VM NIC on it, the VM, its host, MAC and address.
#[utoipa::path(get, path = "/api/v1/networks/{name}", tag = "networks", params(("name" = String, Path, description = "network name")),
    responses((status = 200, description = "the network", body = NetworkSummary)))]
pub async fn show_network<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowNetwork { name }).await
}

/// Deletes a logical network; refused (409, naming the VMs) while a VM has a NIC on it.
#[utoipa::path(delete, path = "/api/v1/networks/{name}", tag = "networks", params(("name" = String, Path, description = "network name")),
    responses((status = 204, description = "deleted"), (status = 409, body = Problem)))]
pub async fn delete_network<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::DeleteNetwork { name }).await
}

/// A network's traffic, read now from the switches of every host with a VM NIC on it (in
/// parallel, 5 s each): per port (VM, NIC, host, MAC, address, rx/tx packets and bytes, drops by
/// reason) and per host (the network's counters on that host's switch). A host that is
/// disconnected or does not answer has its ports and itself without counters (`null`) and an
/// `error`; the call still succeeds.
#[utoipa::path(get, path = "/api/v1/networks/{name}/counters", tag = "networks", params(("name" = String, Path, description = "network name")),
    responses((status = 200, description = "the network's counters", body = NetworkCounters)))]
pub async fn network_counters<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::NetworkCounters { name }).await
}

/// A host's virtual switch counters, read now through its agent: per network, per VM NIC port
/// (VM id and NIC index), the uplink, and drops that belong to no port.
#[utoipa::path(get, path = "/api/v1/hosts/{name}/switch", tag = "networks", params(("name" = String, Path, description = "host name")),
    responses((status = 200, description = "the host's switch counters", body = HostSwitchCounters),
        (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn host_switch<A: ConsoleApi>(
    State(c): Shared<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::HostSwitch { name }).await
}
