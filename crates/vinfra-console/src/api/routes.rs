//! One handler per endpoint: parse the request into a [`Command`], hand it to the core, render the
//! [`Reply`]. No logic lives here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use vinfra_types::api::{
    ClusterSettings, ConsoleLog, CreateVmRequest, Event, JoinTokenResponse, MigrateVmRequest,
    StopVmRequest, TokenResponse, UpdateHostRequest,
};
use vinfra_types::{HostSummary, MigrationProgress, Problem, VmSummary};

use super::extract::{ApiJson, ApiQuery, NamePath, OptionalJson};
use super::problem::ApiError;
use crate::core::{Command, Console, Reply};

type Shared = State<Arc<Console>>;

async fn run(console: &Arc<Console>, command: Command) -> Result<Response, ApiError> {
    let reply = console.execute(command).await?;
    Ok(match reply {
        Reply::Hosts(v) => Json(v).into_response(),
        Reply::Host(v) => Json(v).into_response(),
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
        Reply::Done => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `?force=true` on deletes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    /// Also when the VM's host is disconnected (its disks are then left behind).
    #[serde(default)]
    pub force: bool,
}

/// `?bytes=N` on the console log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// How many bytes of the tail to return (1..=1 MiB, default 64 KiB).
    pub bytes: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts",
    responses((status = 200, body = [HostSummary]), (status = 401, body = Problem)))]
pub async fn list_hosts(State(c): Shared) -> Result<Response, ApiError> {
    run(&c, Command::ListHosts).await
}

#[utoipa::path(get, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path)),
    responses((status = 200, body = HostSummary), (status = 404, body = Problem)))]
pub async fn show_host(State(c): Shared, NamePath(name): NamePath) -> Result<Response, ApiError> {
    run(&c, Command::ShowHost { name }).await
}

#[utoipa::path(patch, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path)),
    request_body = UpdateHostRequest,
    responses((status = 200, body = HostSummary), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn update_host(
    State(c): Shared,
    NamePath(name): NamePath,
    ApiJson(update): ApiJson<UpdateHostRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::UpdateHost { name, update }).await
}

#[utoipa::path(delete, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_host(State(c): Shared, NamePath(name): NamePath) -> Result<Response, ApiError> {
    run(&c, Command::DeleteHost { name }).await
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "cluster",
    responses((status = 200, body = ClusterSettings)))]
pub async fn get_settings(State(c): Shared) -> Result<Response, ApiError> {
    run(&c, Command::GetSettings).await
}

#[utoipa::path(put, path = "/api/v1/settings", tag = "cluster", request_body = ClusterSettings,
    responses((status = 200, body = ClusterSettings), (status = 400, body = Problem)))]
pub async fn put_settings(
    State(c): Shared,
    ApiJson(settings): ApiJson<ClusterSettings>,
) -> Result<Response, ApiError> {
    run(&c, Command::PutSettings { settings }).await
}

#[utoipa::path(post, path = "/api/v1/join-tokens", tag = "cluster",
    responses((status = 201, body = JoinTokenResponse)))]
pub async fn create_join_token(State(c): Shared) -> Result<Response, ApiError> {
    run(&c, Command::CreateJoinToken).await
}

#[utoipa::path(post, path = "/api/v1/token/rotate", tag = "cluster",
    responses((status = 200, body = TokenResponse)))]
pub async fn rotate_token(State(c): Shared) -> Result<Response, ApiError> {
    run(&c, Command::RotateToken).await
}

#[utoipa::path(get, path = "/api/v1/vms", tag = "vms", responses((status = 200, body = [VmSummary])))]
pub async fn list_vms(State(c): Shared) -> Result<Response, ApiError> {
    run(&c, Command::ListVms).await
}

#[utoipa::path(post, path = "/api/v1/vms", tag = "vms", request_body = CreateVmRequest,
    responses((status = 201, body = VmSummary), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem)))]
pub async fn create_vm(
    State(c): Shared,
    ApiJson(request): ApiJson<CreateVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateVm { request }).await
}

#[utoipa::path(get, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = VmSummary), (status = 404, body = Problem)))]
pub async fn show_vm(State(c): Shared, NamePath(name): NamePath) -> Result<Response, ApiError> {
    run(&c, Command::ShowVm { name }).await
}

#[utoipa::path(delete, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path), ForceQuery),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_vm(
    State(c): Shared,
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

#[utoipa::path(post, path = "/api/v1/vms/{name}/start", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = VmSummary), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn start_vm(State(c): Shared, NamePath(name): NamePath) -> Result<Response, ApiError> {
    run(&c, Command::StartVm { name }).await
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/stop", tag = "vms", params(("name" = String, Path)),
    request_body(content = Option<StopVmRequest>),
    responses((status = 200, body = VmSummary), (status = 404, body = Problem)))]
pub async fn stop_vm(
    State(c): Shared,
    NamePath(name): NamePath,
    OptionalJson(request): OptionalJson<StopVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::StopVm { name, request }).await
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/reboot", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = VmSummary), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reboot_vm(State(c): Shared, NamePath(name): NamePath) -> Result<Response, ApiError> {
    run(&c, Command::RebootVm { name }).await
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/migrate", tag = "migration", params(("name" = String, Path)),
    request_body(content = Option<MigrateVmRequest>),
    responses((status = 202, body = MigrationProgress), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn migrate_vm(
    State(c): Shared,
    NamePath(name): NamePath,
    OptionalJson(request): OptionalJson<MigrateVmRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::MigrateVm { name, request }).await
}

#[utoipa::path(get, path = "/api/v1/vms/{name}/migration", tag = "migration", params(("name" = String, Path)),
    responses((status = 200, body = MigrationProgress), (status = 404, body = Problem)))]
pub async fn show_migration(
    State(c): Shared,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::ShowMigration { name }).await
}

#[utoipa::path(delete, path = "/api/v1/vms/{name}/migration", tag = "migration", params(("name" = String, Path)),
    responses((status = 200, body = MigrationProgress), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel_migration(
    State(c): Shared,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::CancelMigration { name }).await
}

#[utoipa::path(get, path = "/api/v1/vms/{name}/console", tag = "vms", params(("name" = String, Path), ConsoleQuery),
    responses((status = 200, body = ConsoleLog), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn console_log(
    State(c): Shared,
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

#[utoipa::path(get, path = "/api/v1/events", tag = "cluster", responses((status = 200, body = [Event])))]
pub async fn list_events(State(c): Shared) -> Result<Response, ApiError> {
    run(&c, Command::ListEvents).await
}
