//! The REST API: axum routes that parse requests into [`Command`](crate::interface::Command)s
//! and render their [`Reply`](crate::interface::Reply)s, bearer-token authentication (refused
//! tokens limited per client: [`throttle`]) and the role check ([`access`]), problem+json
//! errors and the OpenAPI document.
//!
//! It depends on [`crate::interface`] only (and `vinfra-types`): the router is generic over
//! [`ConsoleApi`], so the routes are tested against a stub as they are against the console.

use crate::interface::access;
pub mod connections;
pub mod extract;
pub mod flow_routes;
pub mod limits;
pub mod list_queries;
pub mod list_routes;
pub mod metrics_routes;
pub mod openapi;
pub mod pages;
pub mod problem;
pub mod routes;
pub mod task_routes;
pub mod throttle;
pub mod token_routes;
pub mod vm_routes;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::Router;

use vinfra_types::auth::Role;

use crate::interface::{ConsoleApi, TokenRefusal};
use problem::ApiError;

pub use limits::MAX_BODY;

/// The whole API, over `console`, with the default limits ([`limits::RequestLimits`]).
pub fn router<A: ConsoleApi>(console: Arc<A>) -> Router {
    router_with(console, Arc::new(limits::RequestLimits::default()))
}

/// The whole API, over `console`, each request held to `limits`.
pub fn router_with<A: ConsoleApi>(console: Arc<A>, limits: Arc<limits::RequestLimits>) -> Router {
    let v1 = Router::new()
        .route("/hosts", get(list_routes::list_hosts::<A>))
        .route(
            "/hosts/{name}",
            get(routes::show_host::<A>)
                .patch(routes::update_host::<A>)
                .delete(routes::delete_host::<A>),
        )
        .route(
            "/settings",
            get(routes::get_settings::<A>).put(routes::put_settings::<A>),
        )
        .route("/join-tokens", post(routes::create_join_token::<A>))
        .route("/token/rotate", post(routes::rotate_token::<A>))
        .route(
            "/tokens",
            get(token_routes::list_tokens::<A>).post(token_routes::create_token::<A>),
        )
        .route("/tokens/{name}", delete(token_routes::revoke_token::<A>))
        .route(
            "/vms",
            get(list_routes::list_vms::<A>).post(vm_routes::create_vm::<A>),
        )
        .route(
            "/vms/{name}",
            get(vm_routes::show_vm::<A>)
                .patch(vm_routes::update_vm::<A>)
                .delete(vm_routes::delete_vm::<A>),
        )
        .route("/vms/{name}/start", post(vm_routes::start_vm::<A>))
        .route("/vms/{name}/stop", post(vm_routes::stop_vm::<A>))
        .route("/vms/{name}/reboot", post(vm_routes::reboot_vm::<A>))
        .route("/vms/{name}/migrate", post(vm_routes::migrate_vm::<A>))
        .route(
            "/vms/{name}/migration",
            get(vm_routes::show_migration::<A>).delete(vm_routes::cancel_migration::<A>),
        )
        .route("/vms/{name}/console", get(vm_routes::console_log::<A>))
        .route(
            "/vms/{name}/console/input",
            post(vm_routes::console_input::<A>),
        )
        .route("/events", get(list_routes::list_events::<A>))
        .route("/tasks", get(task_routes::list_tasks::<A>))
        .route("/tasks/stream", get(task_routes::stream_tasks::<A>))
        .route(
            "/tasks/{id}",
            get(task_routes::show_task::<A>).delete(task_routes::cancel_task::<A>),
        )
        .route(
            "/revoked-certificates",
            get(list_routes::list_revoked_certificates::<A>),
        )
        .route("/flows", get(flow_routes::top_flows::<A>))
        .route(
            "/rules",
            get(list_routes::list_rules::<A>).post(routes::create_rule::<A>),
        )
        .route(
            "/rules/{name}",
            get(routes::show_rule::<A>).delete(routes::delete_rule::<A>),
        )
        .route("/ha", get(routes::show_ha::<A>))
        .route("/drs", get(routes::drs_status::<A>))
        .route("/drs/run", post(routes::drs_run::<A>))
        .route(
            "/drs/recommendations",
            get(list_routes::list_recommendations::<A>),
        )
        .route(
            "/drs/recommendations/{id}/apply",
            post(routes::apply_recommendation::<A>),
        )
        .route(
            "/networks",
            get(list_routes::list_networks::<A>).post(routes::create_network::<A>),
        )
        .route(
            "/networks/{name}",
            get(routes::show_network::<A>).delete(routes::delete_network::<A>),
        )
        .route(
            "/networks/{name}/counters",
            get(routes::network_counters::<A>),
        )
        .route("/hosts/{name}/switch", get(routes::host_switch::<A>))
        .route("/hosts/{name}/fence", post(routes::fence_host::<A>))
        .route(
            "/vms/{name}/nics/{index}",
            patch(vm_routes::update_nic::<A>),
        )
        .route("/vms/{name}/counters", get(vm_routes::vm_counters::<A>))
        .route("/vms/{name}/usage", get(vm_routes::vm_usage::<A>))
        .route("/hosts/{name}/usage", get(routes::host_usage::<A>))
        .route(
            "/security-groups",
            get(list_routes::list_security_groups::<A>).post(routes::create_security_group::<A>),
        )
        .route(
            "/security-groups/{name}",
            get(routes::show_security_group::<A>).delete(routes::delete_security_group::<A>),
        )
        .route(
            "/security-groups/{name}/counters",
            get(routes::security_group_counters::<A>),
        )
        .route(
            "/security-groups/{name}/rules",
            post(routes::add_sg_rule::<A>),
        )
        .route(
            "/security-groups/{name}/rules/{id}",
            delete(routes::delete_sg_rule::<A>),
        )
        .route(
            "/routers",
            get(list_routes::list_routers::<A>).post(routes::create_router::<A>),
        )
        .route(
            "/routers/{name}",
            get(routes::show_router::<A>).delete(routes::delete_router::<A>),
        )
        .route(
            "/routers/{name}/interfaces",
            post(routes::attach_network::<A>),
        )
        .route(
            "/routers/{name}/interfaces/{network}",
            delete(routes::detach_network::<A>),
        )
        .route("/routers/{name}/routes", post(routes::add_route::<A>))
        .route(
            "/routers/{name}/routes/{addr}/{len}",
            delete(routes::delete_route::<A>),
        )
        .route(
            "/routers/{name}/uplink",
            put(routes::set_uplink::<A>).delete(routes::remove_uplink::<A>),
        )
        .route("/floating-ips", get(list_routes::list_floating_ips::<A>))
        .route(
            "/vms/{name}/floating-ips",
            post(routes::add_floating_ip::<A>),
        )
        .route(
            "/vms/{name}/floating-ips/{ip}",
            delete(routes::delete_floating_ip::<A>),
        )
        .method_not_allowed_fallback(|| async { ApiError::Method });
    // The metrics, outside `/api/v1` where Prometheus looks for them, behind the same layers.
    let metrics = Router::new()
        .route("/metrics", get(metrics_routes::scrape::<A>))
        .method_not_allowed_fallback(|| async { ApiError::Method });
    Router::new()
        .route("/api/openapi.json", get(openapi::openapi_json))
        .merge(guarded(metrics, &console, &limits))
        .nest("/api/v1", guarded(v1, &console, &limits))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::Method })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

/// `routes` behind the layers every route but the OpenAPI document has. They run outside in:
/// the request is counted once answered ([`metrics_routes::observe`]), the token is checked,
/// then its rate, then the body is read (so that no body is held for a client without a
/// token).
fn guarded<A: ConsoleApi>(
    routes: Router<Arc<A>>,
    console: &Arc<A>,
    limits: &Arc<limits::RequestLimits>,
) -> Router<Arc<A>> {
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            limits::read_body,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            limits::rate_limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            (console.clone(), limits.refusals()),
            auth::<A>,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            metrics_routes::observe::<A>,
        ))
}

/// Bearer-token check, then the role check: 401 problem+json when the token is missing,
/// unknown, expired or revoked; 403 when its role is below what the route needs
/// ([`access::required_role`], `admin` for a route it does not know). The token's name and
/// role go to the handler in the request's extensions ([`extract::Caller`]). A client (an
/// address, an IPv6 /64) whose tokens were refused [`throttle::MAX_FAILURES`] times within
/// [`throttle::WINDOW`] is answered 429 with `Retry-After` before its token is tried; a
/// request without a token is not counted.
async fn auth<A: ConsoleApi>(
    State((console, refusals)): State<(Arc<A>, Arc<throttle::RefusalThrottle>)>,
    mut req: Request,
    next: Next,
) -> Response {
    // Without the connection's address (a router served without it), one shared limit.
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
    let now = Instant::now();
    if let Some(retry_after_s) = refusals.blocked(client, now) {
        return ApiError::Refused { retry_after_s }.into_response();
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(value) = header else {
        return ApiError::Unauthorized("missing bearer token (Authorization: Bearer <token>)")
            .into_response();
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
    else {
        refusals.failed(client, now);
        return ApiError::Unauthorized("invalid bearer token").into_response();
    };
    let holder = match console.authenticate(token) {
        Ok(holder) => holder,
        Err(refusal) => {
            refusals.failed(client, now);
            return ApiError::Unauthorized(match refusal {
                TokenRefusal::Unknown => "invalid bearer token",
                TokenRefusal::Expired => "the bearer token has expired",
                TokenRefusal::Revoked => "the bearer token has been revoked",
            })
            .into_response();
        }
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let needed = access::required_role(req.method().as_str(), route).unwrap_or(Role::Admin);
    if holder.role < needed {
        return ApiError::Forbidden {
            token: holder.name.to_string(),
            role: holder.role,
            needed,
        }
        .into_response();
    }
    req.extensions_mut().insert(holder);
    next.run(req).await
}
