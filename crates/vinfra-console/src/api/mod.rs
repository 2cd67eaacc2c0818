//! The REST API: axum routes that parse requests into [`crate::core::Command`]s, bearer-token
//! authentication, problem+json errors and the OpenAPI document.

pub mod extract;
pub mod openapi;
pub mod problem;
pub mod routes;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::core::Console;
use problem::ApiError;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// The whole API.
pub fn router(console: Arc<Console>) -> Router {
    let v1 = Router::new()
        .route("/hosts", get(routes::list_hosts))
        .route(
            "/hosts/{name}",
            get(routes::show_host)
                .patch(routes::update_host)
                .delete(routes::delete_host),
        )
        .route(
            "/settings",
            get(routes::get_settings).put(routes::put_settings),
        )
        .route("/join-tokens", post(routes::create_join_token))
        .route("/token/rotate", post(routes::rotate_token))
        .route("/vms", get(routes::list_vms).post(routes::create_vm))
        .route(
            "/vms/{name}",
            get(routes::show_vm).delete(routes::delete_vm),
        )
        .route("/vms/{name}/start", post(routes::start_vm))
        .route("/vms/{name}/stop", post(routes::stop_vm))
        .route("/vms/{name}/reboot", post(routes::reboot_vm))
        .route("/vms/{name}/migrate", post(routes::migrate_vm))
        .route(
            "/vms/{name}/migration",
            get(routes::show_migration).delete(routes::cancel_migration),
        )
        .route("/vms/{name}/console", get(routes::console_log))
        .route("/events", get(routes::list_events))
        .route("/rules", get(routes::list_rules).post(routes::create_rule))
        .route(
            "/rules/{name}",
            get(routes::show_rule).delete(routes::delete_rule),
        )
        .route("/drs", get(routes::drs_status))
        .route("/drs/run", post(routes::drs_run))
        .route("/drs/recommendations", get(routes::list_recommendations))
        .route(
            "/drs/recommendations/{id}/apply",
            post(routes::apply_recommendation),
        )
        .route(
            "/networks",
            get(routes::list_networks).post(routes::create_network),
        )
        .route(
            "/networks/{name}",
            get(routes::show_network).delete(routes::delete_network),
        )
        .route("/networks/{name}/counters", get(routes::network_counters))
        .route("/hosts/{name}/switch", get(routes::host_switch))
        .method_not_allowed_fallback(|| async { ApiError::Method })
        .route_layer(axum::middleware::from_fn_with_state(console.clone(), auth));
    Router::new()
        .route("/api/openapi.json", get(openapi::openapi_json))
        .nest("/api/v1", v1)
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::Method })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

/// Bearer-token check: 401 problem+json when missing or wrong.
async fn auth(State(console): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(value) = header else {
        return ApiError::Unauthorized("missing bearer token (Authorization: Bearer <token>)")
            .into_response();
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim);
    match token {
        Some(t) if console.verify_api_token(t) => next.run(req).await,
        _ => ApiError::Unauthorized("invalid bearer token").into_response(),
    }
}
