//! The OpenAPI document, generated from the handlers and the `vinfra-types` schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes;

/// Adds the bearer-token security scheme and requires it everywhere.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The console's REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "vinfra console API", description = "Hosts, VMs, placement and live migration."),
    paths(
        routes::list_hosts, routes::show_host, routes::update_host, routes::delete_host,
        routes::get_settings, routes::put_settings, routes::create_join_token, routes::rotate_token,
        routes::list_vms, routes::create_vm, routes::show_vm, routes::delete_vm,
        routes::start_vm, routes::stop_vm, routes::reboot_vm,
        routes::migrate_vm, routes::show_migration, routes::cancel_migration,
        routes::console_log, routes::list_events,
    ),
    components(schemas(
        vinfra_types::Problem, vinfra_types::HostSummary, vinfra_types::HostStatus, vinfra_types::HostCapacity,
        vinfra_types::HostUsage, vinfra_types::AllocationRatios, vinfra_types::Accel,
        vinfra_types::VmSummary, vinfra_types::VmSpec, vinfra_types::BootSource, vinfra_types::DiskSpec,
        vinfra_types::NicSpec, vinfra_types::PowerState, vinfra_types::VmUsage,
        vinfra_types::MigrationProgress, vinfra_types::MigrationPhase,
        vinfra_types::api::CreateVmRequest, vinfra_types::api::StopVmRequest,
        vinfra_types::api::MigrateVmRequest, vinfra_types::api::ClusterSettings,
        vinfra_types::api::UpdateHostRequest, vinfra_types::api::JoinTokenResponse,
        vinfra_types::api::TokenResponse, vinfra_types::api::ConsoleLog, vinfra_types::api::Event,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;
