//! The OpenAPI document, generated from the handlers and the `vinfra-types` schemas. A copy is
//! kept in `docs/openapi.json`; a console test fails when the two differ.

use axum::Json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use vinfra_types::api::PROBLEM_JSON;
use vinfra_types::auth::Role;

use super::flow_routes;
use super::list_routes;
use super::routes;
use super::task_routes;
use super::token_routes;
use super::vm_routes;
use crate::interface::access;

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

/// What an error status means, with the problem kinds (`type` `/problems/<kind>`) it carries.
fn problem_description(status: &str) -> Option<&'static str> {
    Some(match status {
        "400" => {
            "invalid-request: malformed body or query, unknown field, bad name, value out of range"
        }
        "401" => "unauthorized: missing or unknown bearer token, or one expired or revoked",
        "403" => {
            "forbidden: the token's role does not allow this action (viewer: reads; operator: \
             also VMs, networks, security groups, routers, floating IPs; admin: everything)"
        }
        "404" => {
            "not-found: no such VM, host, rule, recommendation, network, security group, NIC, \
             security group rule, router, router interface or route; a NIC's security group or a \
             rule's remote_group that does not exist"
        }
        "409" => {
            "conflict, insufficient-capacity, host-unavailable, rule-conflict or ha-reserve: busy VM (an \
             operation or a migration in progress), wrong state, name taken, no host fits, VM \
             live on another host, rules that contradict each other or leave a VM no host, a VNI, \
             VLAN ID, address or MAC taken, a network, security group or router still in use, a \
             network attached to a router already, subnets of one router that overlap, a gateway \
             other than the network's or held by a VM, a route that exists or whose next hop is on \
             none of the router's subnets, a VM with a NIC on a VLAN \
             network and no host with a VLAN trunk to take it, a VM with a NIC on an overlay \
             network and no host whose underlay MTU carries it, a fence of a host without a \
             fence command, of a connected host without force, or while one runs; a power-on \
             that would break the HA reserve (the detail names the reserve, the hosts whose \
             failure, the shortfall and the VMs left unplaced)"
        }
        "422" => {
            "invalid-rule or invalid-start-after: the rule names a VM or host that does not \
             exist; a VM's start_after names a VM that does not exist, the VM itself, or makes a \
             start-after cycle"
        }
        "408" => "request-timeout: the request body did not arrive within the body timeout",
        "413" => "too-large: request body larger than 1 MiB",
        "429" => {
            "too-many-requests: the token sent more requests than its rate limit allows, or \
             the client's address (an IPv6 /64) sent 10 refused tokens within a minute (its \
             token is then not tried); retry after the Retry-After header's seconds"
        }
        "500" => "internal: store or PKI failure",
        "502" => {
            "agent-error, agent-connection-lost or fence-failed: the host's agent refused, or \
             the connection broke; the host's fence command did not exit 0, timed out or could \
             not be run"
        }
        "503" => "host-disconnected: the host's agent is not connected",
        "504" => "agent-timeout: the host's agent did not answer in time",
        _ => return None,
    })
}

/// Documents every error an operation can answer as RFC 9457 problem+json: 401, 429 (with
/// its `Retry-After` header) and 500 on every operation, 403 on those a viewer may not run,
/// 400 and 404 where a `{name}` is in the path, 400, 408 and 413 where a body is read, 400
/// where a query is; and gives every error response (also those declared on the
/// handler) the `application/problem+json` content and its description.
struct ProblemResponses;

impl ProblemResponses {
    fn fix(op: &mut Operation, needed: Option<Role>) {
        let params = op.parameters.as_deref().unwrap_or_default();
        let has_name = params
            .iter()
            .any(|p| p.name == "name" && matches!(p.parameter_in, ParameterIn::Path));
        let has_query = params
            .iter()
            .any(|p| matches!(p.parameter_in, ParameterIn::Query));
        let has_body = op.request_body.is_some();
        let mut add = vec!["401", "429", "500"];
        if needed != Some(Role::Viewer) {
            add.push("403");
        }
        if has_name {
            add.extend(["400", "404"]);
        }
        if has_body {
            add.extend(["400", "408", "413"]);
        }
        if has_query {
            add.push("400");
        }
        for status in add {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::T(ResponseBuilder::new().build()));
        }
        for (status, response) in op.responses.responses.iter_mut() {
            let Some(description) = problem_description(status) else {
                continue;
            };
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let mut built = ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_JSON, content);
            if status == "429" {
                built = built.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(1)),
                        )
                        .description(Some("seconds until the token may send again"))
                        .build(),
                );
            }
            *response = RefOr::T(built.build());
        }
    }
}

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in [
                ("GET", &mut item.get),
                ("PUT", &mut item.put),
                ("POST", &mut item.post),
                ("DELETE", &mut item.delete),
                ("PATCH", &mut item.patch),
            ] {
                let Some(op) = op else { continue };
                // The document itself needs no token and reads nothing.
                if op.operation_id.as_deref() == Some("openapi_json") {
                    continue;
                }
                let needed = access::required_role(method, path);
                let role = needed.unwrap_or(Role::Admin);
                let role = format!("Needs a token of role `{role}` or above.");
                op.description = Some(match op.description.take() {
                    Some(said) if !said.is_empty() => format!("{said}\n\n{role}"),
                    _ => role,
                });
                Self::fix(op, needed);
            }
        }
    }
}

/// Documents the `wait` preference (RFC 7240) on every operation answered with a task (a 202
/// response): the optional `Prefer` request header, and the `Preference-Applied` header of the
/// 202 answer ([`super::routes`]'s `submit`).
struct TaskPreferences;

impl Modify for TaskPreferences {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let Some(RefOr::T(accepted)) = op.responses.responses.get_mut("202") else {
                    continue;
                };
                accepted.headers.insert(
                    "Preference-Applied".into(),
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String))
                        .description(Some(
                            "`wait=N` when the request preferred a wait of N > 0 s: the task \
                             is as it was once it had ended or N s had passed",
                        ))
                        .build(),
                );
                let prefer = ParameterBuilder::new()
                    .name("Prefer")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some(
                        "RFC 7240 preferences; `wait=N` (seconds, at most 60): the answer waits \
                         until the task has ended or N s have passed, so that a task that ends \
                         within N s needs no long poll. Other preferences, and a `wait` that is \
                         not a number, are ignored.",
                    ))
                    .build();
                op.parameters.get_or_insert_with(Vec::new).push(prefer);
            }
        }
    }
}

/// Inlines the parts of a flattened struct (`#[serde(flatten)]`, an `allOf` of a `$ref` and
/// the struct's own fields) whose schema forbids other properties (`deny_unknown_fields`): with
/// the `$ref` the document would say that no object has both the part's fields and the
/// struct's, so a `SecurityGroupSummary` or a `CreateVmRequest` could never be valid. The
/// part's copy keeps its fields and drops the ban; the struct's own schema says the rest.
struct FlattenedParts;

impl Modify for FlattenedParts {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let closed: std::collections::BTreeMap<String, Schema> = components
            .schemas
            .iter()
            .filter_map(|(name, schema)| match schema {
                RefOr::T(Schema::Object(o)) if o.additional_properties.is_some() => {
                    let mut open = o.clone();
                    open.additional_properties = None;
                    Some((format!("#/components/schemas/{name}"), Schema::Object(open)))
                }
                _ => None,
            })
            .collect();
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::AllOf(all)) = schema else {
                continue;
            };
            for item in all.items.iter_mut() {
                if let RefOr::Ref(r) = item {
                    if let Some(open) = closed.get(&r.ref_location) {
                        *item = RefOr::T(open.clone());
                    }
                }
            }
        }
    }
}

/// This document (no token needed).
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The console's REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "vinfra console API", description = "Hosts, VMs, placement, live migration, balancing, networks, security groups, routers and high availability. \
        Every error is an RFC 9457 problem+json document (`application/problem+json`)."),
    paths(
        list_routes::list_hosts, routes::show_host, routes::update_host, routes::fence_host,
        routes::delete_host,
        routes::get_settings, routes::put_settings, routes::create_join_token, routes::rotate_token,
        token_routes::list_tokens, token_routes::create_token, token_routes::revoke_token,
        list_routes::list_vms, vm_routes::create_vm, vm_routes::show_vm, vm_routes::update_vm,
        vm_routes::delete_vm,
        vm_routes::start_vm, vm_routes::stop_vm, vm_routes::reboot_vm,
        vm_routes::migrate_vm, vm_routes::show_migration, vm_routes::cancel_migration,
        vm_routes::console_log, vm_routes::console_input, list_routes::list_events, list_routes::list_revoked_certificates,
        task_routes::list_tasks, task_routes::show_task, task_routes::cancel_task,
        task_routes::stream_tasks,
        flow_routes::top_flows,
        list_routes::list_rules, routes::create_rule, routes::show_rule, routes::delete_rule,
        routes::show_ha, routes::drs_status, routes::drs_run, list_routes::list_recommendations,
        routes::apply_recommendation,
        list_routes::list_networks, routes::create_network, routes::show_network, routes::delete_network,
        routes::network_counters, routes::host_switch,
        vm_routes::update_nic, vm_routes::vm_counters, vm_routes::vm_usage, routes::host_usage,
        list_routes::list_security_groups, routes::create_security_group, routes::show_security_group,
        routes::delete_security_group, routes::add_sg_rule, routes::delete_sg_rule,
        routes::security_group_counters,
        list_routes::list_routers, routes::create_router, routes::show_router, routes::delete_router,
        routes::attach_network, routes::detach_network, routes::add_route, routes::delete_route,
        routes::set_uplink, routes::remove_uplink, list_routes::list_floating_ips,
        routes::add_floating_ip, routes::delete_floating_ip,
        openapi_json,
    ),
    components(schemas(
        vinfra_types::api::RevokedCertificate,
        vinfra_types::Problem, vinfra_types::HostSummary, vinfra_types::HostStatus, vinfra_types::HostCapacity,
        vinfra_types::GuardView,
        vinfra_types::HostUsage, vinfra_types::AllocationRatios, vinfra_types::Accel,
        vinfra_types::VmSummary, vinfra_types::VmSpec, vinfra_types::BootSource, vinfra_types::DiskSpec,
        vinfra_types::NicSpec, vinfra_types::PowerState, vinfra_types::VmUsage,
        vinfra_types::MigrationProgress, vinfra_types::MigrationPhase,
        vinfra_types::api::CreateVmRequest, vinfra_types::api::CreatedVms, vinfra_types::api::CreatedVm, vinfra_types::api::StopVmRequest,
        vinfra_types::api::MigrateVmRequest, vinfra_types::api::ClusterSettings,
        vinfra_types::api::UpdateHostRequest, vinfra_types::api::JoinTokenResponse,
        vinfra_types::api::TokenResponse, vinfra_types::api::ConsoleLog, vinfra_types::api::ConsoleInput, vinfra_types::api::Event,
        vinfra_types::auth::Role, vinfra_types::auth::CreateTokenRequest,
        vinfra_types::auth::NewToken, vinfra_types::auth::TokenSummary,
        vinfra_types::auth::TokenState, vinfra_types::auth::Actor, vinfra_types::auth::ActorKind,
        vinfra_types::balancing::BalancingSettings, vinfra_types::balancing::BalancingMode,
        vinfra_types::balancing::PlacementRule, vinfra_types::balancing::RuleStrength,
        vinfra_types::balancing::RuleKind, vinfra_types::balancing::Recommendation,
        vinfra_types::balancing::ExpectedGain, vinfra_types::balancing::PlanSummary,
        vinfra_types::balancing::DrsStatus,
        vinfra_types::network::NetworkKind, vinfra_types::network::CreateNetworkRequest,
        vinfra_types::network::Network, vinfra_types::network::NetworkPort,
        vinfra_types::network::NetworkSummary, vinfra_types::network::TrafficCounters,
        vinfra_types::network::NetworkCounters, vinfra_types::network::NetworkPortCounters,
        vinfra_types::network::NetworkHostCounters, vinfra_types::network::NetworkTotal,
        vinfra_types::network::HostSwitchCounters, vinfra_types::network::SwitchRouterCounters,
        vinfra_types::network::SwitchNetworkCounters, vinfra_types::network::SwitchPortCounters,
        vinfra_types::api::UpdateVmRequest, vinfra_types::ha::VmHa, vinfra_types::ha::VmHaUpdate,
        vinfra_types::ha::HaPriority, vinfra_types::ha::HaSettings,
        vinfra_types::ha::IsolationResponse, vinfra_types::ha::FenceOutcome,
        vinfra_types::ha::HaStatus, vinfra_types::ha::HostHaStatus, vinfra_types::ha::LeaseStamp,
        vinfra_types::ha::HaReserve, vinfra_types::ha::HaScenario, vinfra_types::ha::HaRestartNeed,
        vinfra_types::AllowedAddressPair, vinfra_types::api::UpdateNicRequest,
        vinfra_types::security_group::SecurityGroup, vinfra_types::security_group::SgRule,
        vinfra_types::security_group::SgDirection, vinfra_types::security_group::SgAction,
        vinfra_types::security_group::SgMember,
        vinfra_types::security_group::SecurityGroupSummary,
        vinfra_types::security_group::SecurityGroupCounters,
        vinfra_types::security_group::SgMemberCounters, vinfra_types::security_group::SgRuleHits,
        vinfra_types::network::PortFirewallCounters, vinfra_types::network::PortRuleHits,
        vinfra_types::qos::NicQos, vinfra_types::qos::NicRate, vinfra_types::qos::NicPriority,
        vinfra_types::network::VmCounters, vinfra_types::network::VmNicCounters,
        vinfra_types::usage::UsageHistory, vinfra_types::usage::UsageSample,
        vinfra_types::router::CreateRouterRequest, vinfra_types::router::AttachNetworkRequest,
        vinfra_types::router::RouterStaticRoute, vinfra_types::router::RouterAttachment,
        vinfra_types::router::RouterSummary, vinfra_types::router::SetUplinkRequest,
        vinfra_types::router::UplinkSummary, vinfra_types::router::AddFloatingIpRequest,
        vinfra_types::router::FloatingIpSummary,
        vinfra_types::flows::FlowReport, vinfra_types::flows::FlowRow,
        vinfra_types::flows::FlowGrouping, vinfra_types::flows::TrafficDirection,
        vinfra_types::flows::FlowSettings,
        vinfra_types::task::Task, vinfra_types::task::TaskKind, vinfra_types::task::TaskState,
    )),
    modifiers(&BearerAuth, &ProblemResponses, &FlattenedParts, &TaskPreferences),
)]
pub struct ApiDoc;
