//! The list endpoints (but the tokens' and the tasks', with their resources): each parses its
//! query ([`super::list_queries`]: a page and a filter) into the list's command, the filter in
//! it, and answers the page ([`super::routes::list`]) with a next-page link that keeps the
//! filter. No logic lives here: the console filters.

use axum::response::Response;
use vinfra_types::api::{Event, RevokedCertificate};
use vinfra_types::balancing::{PlacementRule, Recommendation};
use vinfra_types::network::NetworkSummary;
use vinfra_types::router::{FloatingIpSummary, RouterSummary};
use vinfra_types::security_group::SecurityGroupSummary;
use vinfra_types::{HostSummary, VmSummary};

use super::extract::{ApiQuery, Caller};
use super::list_queries::{
    split, EventListQuery, FloatingIpListQuery, HostListQuery, NetworkListQuery,
    RecommendationListQuery, RevokedCertificateListQuery, RouterListQuery, RuleListQuery,
    SecurityGroupListQuery, VmListQuery,
};
use super::problem::ApiError;
use super::routes::list;
use crate::interface::{Command, ConsoleApi};

/// Every host with its capacity, allocation, usage and connection status, or those a filter
/// lets through (`status`, `maintenance`: all that are given).
#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts", params(HostListQuery),
    responses((status = 200, description = "the hosts", body = [HostSummary],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/hosts?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_hosts<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<HostListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListHosts { filter }, &page, &path).await
}

/// Every VM with its desired and observed state, or those a filter lets through (`host`,
/// `state`, `network`: all that are given).
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms", params(VmListQuery),
    responses((status = 200, description = "the VMs", body = [VmSummary],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/vms?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_vms<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<VmListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    // The console reads only the page (and one more VM, for the next page's link).
    let cut = page.page()?;
    let command = Command::ListVms {
        filter,
        after: cut.as_ref().and_then(|p| p.after().map(str::to_string)),
        limit: cut.as_ref().map(|p| p.limit() + 1),
    };
    list(&c, command, &page, &path).await
}

/// The last 1000 events, oldest first, or those a filter lets through (`kind`, `vm`, `host`:
/// all that are given).
#[utoipa::path(get, path = "/api/v1/events", tag = "cluster", params(EventListQuery),
    responses((status = 200, description = "the events", body = [Event],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/events?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_events<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<EventListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListEvents { filter }, &page, &path).await
}

/// The certificates of removed hosts, revoked until they expire (refused by the agent
/// endpoint even if a host of the same name joins again), oldest revocation first; or those
/// of one host (`host`).
#[utoipa::path(get, path = "/api/v1/revoked-certificates", tag = "hosts", params(RevokedCertificateListQuery),
    responses((status = 200, description = "the revoked certificates that have not expired", body = [RevokedCertificate],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/revoked-certificates?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_revoked_certificates<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<RevokedCertificateListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(
        &c,
        Command::ListRevokedCertificates { filter },
        &page,
        &path,
    )
    .await
}

/// Every placement rule, in name order, or those a filter lets through (`vm`, `host`, `kind`,
/// `strength`: all that are given).
#[utoipa::path(get, path = "/api/v1/rules", tag = "balancing", params(RuleListQuery),
    responses((status = 200, description = "the rules", body = [PlacementRule],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/rules?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_rules<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<RuleListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListRules { filter }, &page, &path).await
}

/// The recommendations of the latest pass (manual mode), in plan order, or those a filter
/// lets through (`vm`, `host`: all that are given).
#[utoipa::path(get, path = "/api/v1/drs/recommendations", tag = "balancing", params(RecommendationListQuery),
    responses((status = 200, description = "the recommendations", body = [Recommendation],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/drs/recommendations?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_recommendations<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<RecommendationListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListRecommendations { filter }, &page, &path).await
}

/// Every logical network with its ports, in name order, or those a filter lets through
/// (`kind`, `host`, `vm`: all that are given).
#[utoipa::path(get, path = "/api/v1/networks", tag = "networks", params(NetworkListQuery),
    responses((status = 200, description = "the networks", body = [NetworkSummary],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/networks?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_networks<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<NetworkListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListNetworks { filter }, &page, &path).await
}

/// Every security group, in name order, with the NICs in it and the groups whose rules name
/// it; or those a filter lets through (`vm`, `network`: all that are given).
#[utoipa::path(get, path = "/api/v1/security-groups", tag = "security-groups", params(SecurityGroupListQuery),
    responses((status = 200, description = "the security groups", body = [SecurityGroupSummary],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/security-groups?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_security_groups<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<SecurityGroupListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListSecurityGroups { filter }, &page, &path).await
}

/// Every router, in name order, with its interfaces and static routes; or those a filter lets
/// through (`network`, `edge`: all that are given).
#[utoipa::path(get, path = "/api/v1/routers", tag = "routers", params(RouterListQuery),
    responses((status = 200, description = "the routers", body = [RouterSummary],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/routers?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_routers<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<RouterListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListRouters { filter }, &page, &path).await
}

/// Every floating IP, by address: the VM and NIC it translates to, the NIC's address, the
/// router; or those a filter lets through (`vm`, `router`, `network`: all that are given).
#[utoipa::path(get, path = "/api/v1/floating-ips", tag = "routers", params(FloatingIpListQuery),
    responses((status = 200, description = "the floating IPs", body = [FloatingIpSummary],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/floating-ips?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_floating_ips<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<FloatingIpListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListFloatingIps { filter }, &page, &path).await
}
