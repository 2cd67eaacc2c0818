//! Errors as RFC 9457 problem+json responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vinfra_placement::PlacementError;
use vinfra_types::api::PROBLEM_JSON;
use vinfra_types::Problem;

use crate::agents::RequestError;
use crate::core::CoreError;

/// An error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// the core refused or failed
    #[error(transparent)]
    Core(#[from] CoreError),
    /// the request body or query could not be parsed
    #[error("{0}")]
    BadRequest(String),
    /// the body is larger than allowed
    #[error("request body too large")]
    TooLarge,
    /// the bearer token is missing or wrong
    #[error("{0}")]
    Unauthorized(&'static str),
    /// no such route
    #[error("no such endpoint")]
    NoRoute,
    /// the route exists but not for this method
    #[error("method not allowed on this endpoint")]
    Method,
}

/// Builds a problem+json response.
pub fn problem(status: StatusCode, kind: &str, detail: String) -> Response {
    let body = Problem {
        kind: format!("/problems/{kind}"),
        title: status.canonical_reason().unwrap_or("error").to_string(),
        status: status.as_u16(),
        detail,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

fn core_status(e: &CoreError) -> (StatusCode, &'static str) {
    match e {
        CoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid-request"),
        CoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
        CoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        CoreError::RuleConflict(_) => (StatusCode::CONFLICT, "rule-conflict"),
        CoreError::NoTrunk(_) => (StatusCode::CONFLICT, "host-unavailable"),
        CoreError::UnderlayMtu(_) => (StatusCode::CONFLICT, "host-unavailable"),
        CoreError::InvalidRule(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-rule"),
        CoreError::Placement(p) => match p {
            PlacementError::UnknownHost { .. } => (StatusCode::NOT_FOUND, "not-found"),
            PlacementError::InsufficientCapacity { .. } | PlacementError::NoCapacity { .. } => {
                (StatusCode::CONFLICT, "insufficient-capacity")
            }
            PlacementError::HostUnavailable { .. } | PlacementError::NoEligibleHost => {
                (StatusCode::CONFLICT, "host-unavailable")
            }
            PlacementError::EmptyRequest { .. } => (StatusCode::BAD_REQUEST, "invalid-request"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        },
        CoreError::Agent(a) => match a {
            RequestError::NotConnected { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "host-disconnected")
            }
            RequestError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "agent-timeout"),
            RequestError::ConnectionLost { .. } => {
                (StatusCode::BAD_GATEWAY, "agent-connection-lost")
            }
            RequestError::Agent { .. } => (StatusCode::BAD_GATEWAY, "agent-error"),
        },
        CoreError::Store(_) | CoreError::Pki(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::Core(e) => core_status(e),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid-request"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "no-such-endpoint"),
            ApiError::Method => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
        };
        if status.is_server_error() {
            tracing::warn!("API error: {self}");
        }
        let mut resp = problem(status, kind, self.to_string());
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
