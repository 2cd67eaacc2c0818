//! The VMs' endpoints (`/api/v1/vms/…`): list, create, show, change, delete, power actions,
//! live migration and its cancel, the serial console (read, typed on), NIC settings and counters. Each parses
//! its request into a [`Command`] and hands it to the console as every handler of
//! [`super::routes`] does ([`run`], [`submit`] for those answered with a task, [`list`]).

use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use vinfra_types::api::{
    ConsoleInput, ConsoleLog, CreateVmRequest, MigrateVmRequest, StopVmRequest, UpdateNicRequest,
    UpdateVmRequest,
};
use vinfra_types::network::VmCounters;
use vinfra_types::task::Task;
use vinfra_types::usage::UsageHistory;
use vinfra_types::{MigrationProgress, Problem, VmSummary};

use super::extract::{
    ApiJson, ApiQuery, Caller, NameNumberPath, NamePath, OptionalJson, PreferWait,
};
use super::problem::ApiError;
use super::routes::{run, submit};
use crate::interface::{Command, ConsoleApi};

/// `?force=true` on a VM's delete.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Also when the VM runs (it is stopped at once, without waiting for its guest), and when
    /// its host is disconnected (the VM is then removed there when the host comes back).
    #[serde(default)]
    #[param(required = false)]
    pub force: bool,
}

/// `?bytes=N&from=OFFSET` on the console log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// How many bytes to return at most (1..=1 MiB, default 64 KiB).
    pub bytes: Option<u64>,
    /// The log offset to start at: the `end` of the previous answer (for the same `host`), so
    /// that each byte comes once. Without it, the tail.
    pub from: Option<u64>,
}

/// Places and creates a VM (and starts it unless `start` is false); with `count`, that many
/// VMs alike (`{name}-1` …), all placed or none, in one task.
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms", request_body = CreateVmRequest,
    responses((status = 202, description = "accepted: the task, followed at its `Location`; its result: the VM (with `count`: `CreatedVms`)", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn create_vm<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    ApiJson(request): ApiJson<CreateVmRequest>,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::CreateVm { request }).await
}

/// One VM.
#[utoipa::path(get, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the VM", body = VmSummary)))]
pub async fn show_vm<A: ConsoleApi>(
    c: Caller<A>,
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
    c: Caller<A>,
    NamePath(name): NamePath,
    ApiJson(update): ApiJson<UpdateVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::UpdateVm { name, update }).await
}

/// Deletes a stopped VM with its disks. A VM that should run is refused (409) unless
/// `force=true`, which stops it at once first.
#[utoipa::path(delete, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path, description = "VM name"), ForceQuery),
    responses((status = 202, description = "accepted: the task, followed at its `Location`; it ends when the VM and its disks are deleted", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn delete_vm<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
    ApiQuery(q): ApiQuery<ForceQuery>,
) -> Result<Response, ApiError> {
    submit(
        &c,
        prefer,
        Command::DeleteVm {
            name,
            force: q.force,
        },
    )
    .await
}

/// Starts a stopped VM on its host.
#[utoipa::path(post, path = "/api/v1/vms/{name}/start", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 202, description = "accepted: the task, followed at its `Location`; its result: the VM as its host left it", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn start_vm<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::StartVm { name }).await
}

/// Stops a VM: ACPI power-off, then kill after `timeout_s`; at once with `force`.
#[utoipa::path(post, path = "/api/v1/vms/{name}/stop", tag = "vms", params(("name" = String, Path, description = "VM name")),
    request_body(content = Option<StopVmRequest>, description = "optional; an empty body stops gracefully with the default timeout"),
    responses((status = 202, description = "accepted: the task, followed at its `Location`; its result: the VM as its host left it", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn stop_vm<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
    OptionalJson(request): OptionalJson<StopVmRequest>,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::StopVm { name, request }).await
}

/// Resets a running VM.
#[utoipa::path(post, path = "/api/v1/vms/{name}/reboot", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 202, description = "accepted: the task, followed at its `Location`; its result: the VM as its host left it", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn reboot_vm<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::RebootVm { name }).await
}

/// Starts a live migration (to the host in `to`, else one placement picks); follow it with
/// `GET /api/v1/vms/{name}/migration`.
#[utoipa::path(post, path = "/api/v1/vms/{name}/migrate", tag = "migration", params(("name" = String, Path, description = "VM name")),
    request_body(content = Option<MigrateVmRequest>, description = "optional; an empty body lets placement pick the destination"),
    responses((status = 202, description = "accepted: the task, followed at its `Location`; it ends with the migration; its result: the last progress", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 409, body = Problem)))]
pub async fn migrate_vm<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
    OptionalJson(request): OptionalJson<MigrateVmRequest>,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::MigrateVm { name, request }).await
}

/// Progress of the VM's current or last migration.
#[utoipa::path(get, path = "/api/v1/vms/{name}/migration", tag = "migration", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the progress", body = MigrationProgress)))]
pub async fn show_migration<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowMigration { name }).await
}

/// Cancels the running migration: asks it to stop and answers at once (within 1 s) with the
/// task that follows it, the one its `POST /migrate` answered (cancelled as
/// `DELETE /api/v1/tasks/{id}` cancels it), or, for a migration no task follows (a move of the
/// balancer, one a restarted console resumed), a `vm_migrate` task of its own. The task ends
/// with the migration: `cancelled` when the cancel took (the VM stays on its source),
/// `succeeded` when it came too late (the VM switched over; its result: the last progress).
/// A VM that is not migrating is 409.
#[utoipa::path(delete, path = "/api/v1/vms/{name}/migration", tag = "migration", params(("name" = String, Path, description = "VM name")),
    responses((status = 202, description = "the cancel is asked: the migration's task, followed at its `Location`; `cancelled` once the VM stays on its source, `succeeded` when the migration switched over first", body = Task, headers(("Location" = String, description = "the task, `/api/v1/tasks/{id}`"))), (status = 409, body = Problem)))]
pub async fn cancel_migration<A: ConsoleApi>(
    c: Caller<A>,
    prefer: PreferWait,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    submit(&c, prefer, Command::CancelMigration { name }).await
}

/// The VM's serial console, read through its host's agent within 1 s (a host that does not
/// answer in time is 504 `agent-timeout`): its tail, or with `from` what its log holds from
/// that offset on (`end` is where the next read starts; `host` and the offsets say where a
/// moved VM's log starts over).
#[utoipa::path(get, path = "/api/v1/vms/{name}/console", tag = "vms", params(("name" = String, Path, description = "VM name"), ConsoleQuery),
    responses((status = 200, description = "the console text", body = ConsoleLog), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn console_log<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
) -> Result<Response, ApiError> {
    run(
        &c,
        Command::ConsoleLog {
            name,
            bytes: q.bytes,
            from: q.from,
        },
    )
    .await
}

/// Types `text` on the VM's serial console, through its host's agent within 1 s. A VM that
/// should not run is 409; one whose QEMU an older agent started (no serial socket until it
/// restarts) is 502 `agent-error` with the agent's words.
#[utoipa::path(post, path = "/api/v1/vms/{name}/console/input", tag = "vms", params(("name" = String, Path, description = "VM name")),
    request_body = ConsoleInput,
    responses((status = 204, description = "typed"), (status = 400, body = Problem), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn console_input<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
    ApiJson(input): ApiJson<ConsoleInput>,
) -> Result<Response, ApiError> {
    run(
        &c,
        Command::ConsoleInput {
            name,
            text: input.text,
        },
    )
    .await
}

/// A VM's NIC ports on its host's switch, read now through its agent: per NIC, rx/tx packets
/// and bytes and drops by reason (port security, firewall, storm control, QoS, …). Answered
/// within 1 s: a NIC without a port there (the VM does not run) or a host that does not answer
/// within 1 s has no counters (`null`) and an `error` (`host 'h1' did not answer within 1 s`);
/// the call still succeeds.
#[utoipa::path(get, path = "/api/v1/vms/{name}/counters", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the VM's NIC counters", body = VmCounters)))]
pub async fn vm_counters<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::VmCounters { name }).await
}

/// The VM's CPU (cores busy, the mean of each 10 s) and memory (its QEMU's resident memory)
/// over the last hour, from its hosts' reports: kept by the console in memory (a restarted
/// console starts again), across migrations; no samples while it does not run.
#[utoipa::path(get, path = "/api/v1/vms/{name}/usage", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "the VM's last hour", body = UsageHistory), (status = 404, body = Problem)))]
pub async fn vm_usage<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::VmUsage { name }).await
}

/// Changes a NIC's settings: its security groups (the whole list; `[]` leaves it unfiltered),
/// port security, allowed address pairs, QoS (the whole of it; `null` removes it); only the
/// fields given change. The NIC is checked as at create: security groups and allowed addresses
/// need port security on (400), each group must exist (404), QoS within its bounds (400). The
/// new firewall goes to every host's switch at once, the new QoS to the switch of the VM's host
/// (and of a migration's destination) before the answer, which waits for those hosts 1 s at
/// most (one slower gets it in the background, as the switch controller pushes every change);
/// port security and allowed addresses are in force from the VM's next attachment on a host (a
/// migration, an HA restart).
#[utoipa::path(patch, path = "/api/v1/vms/{name}/nics/{index}", tag = "vms",
    params(("name" = String, Path, description = "VM name"), ("index" = usize, Path, description = "NIC index in the VM's spec, from 0")),
    request_body = UpdateNicRequest,
    responses((status = 200, description = "the updated VM", body = VmSummary), (status = 409, body = Problem)))]
pub async fn update_nic<A: ConsoleApi>(
    c: Caller<A>,
    NameNumberPath(vm, index): NameNumberPath,
    ApiJson(update): ApiJson<UpdateNicRequest>,
) -> Result<Response, ApiError> {
    let index = usize::try_from(index).map_err(|_| ApiError::Id {
        text: index.to_string(),
    })?;
    run(&c, Command::UpdateNic { vm, index, update }).await
}
