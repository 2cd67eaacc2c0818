//! Errors as RFC 9457 problem+json responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vinfra_types::api::PROBLEM_JSON;
use vinfra_types::error::chain;
use vinfra_types::Problem;

use crate::interface::{Error, ErrorKind};

/// An error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// the console refused or failed
    #[error(transparent)]
    Console(#[from] Error),
    /// the body could not be read
    #[error("reading the body")]
    Body(#[source] axum::extract::rejection::BytesRejection),
    /// the body is not the JSON the endpoint takes (malformed, unknown field, wrong type)
    #[error("invalid JSON body")]
    Json(#[source] serde_json::Error),
    /// the endpoint takes a JSON body and got none
    #[error("a JSON body is required")]
    NoBody,
    /// a path segment could not be read
    #[error("path")]
    Path(#[source] axum::extract::rejection::PathRejection),
    /// the `{name}` in the path is not a valid name
    #[error(transparent)]
    Name(#[from] vinfra_types::NameError),
    /// the `{addr}/{len}` in the path is not an IPv4 prefix, or the `{ip}` not an address
    #[error(transparent)]
    Prefix(#[from] vinfra_types::router::RouterRequestError),
    /// the `{id}` in the path is not a number
    #[error("id must be a number, got '{text}'")]
    Id {
        /// What the path has.
        text: String,
    },
    /// the query string is malformed or has an unknown parameter
    #[error("query")]
    Query(#[source] axum::extract::rejection::QueryRejection),
    /// the body is larger than allowed
    #[error("request body too large")]
    TooLarge,
    /// `limit` or `page_token` of a list request is not valid
    #[error("{0}")]
    Page(&'static str),
    /// a list's filter names something with a name that is not one
    #[error(transparent)]
    Filter(#[from] vinfra_types::filter::FilterError),
    /// the body did not arrive in time
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// the body could not be read to its end (the client broke off)
    #[error("reading the request body")]
    BodyRead(#[source] axum::Error),
    /// the token asked too often
    #[error("token '{token}' sent too many requests; retry in {retry_after_s} s")]
    RateLimited {
        /// The token's name.
        token: String,
        /// Seconds until the token may ask again (the `Retry-After` header).
        retry_after_s: u64,
    },
    /// the client's tokens were refused too often
    #[error("too many refused bearer tokens from this address; retry in {retry_after_s} s")]
    Refused {
        /// Seconds until the client's token is tried again (the `Retry-After` header).
        retry_after_s: u64,
    },
    /// the bearer token is missing or wrong
    #[error("{0}")]
    Unauthorized(&'static str),
    /// the token's role does not allow the action
    #[error("token '{token}' has role {role}; this action needs role {needed}")]
    Forbidden {
        /// The token's name.
        token: String,
        /// Its role.
        role: vinfra_types::auth::Role,
        /// The role the route needs.
        needed: vinfra_types::auth::Role,
    },
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

/// The HTTP status of a problem kind (docs/design.md, "REST API"; [`ErrorKind::status`]).
pub fn http_status(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::Console(e) => (http_status(e.kind()), e.kind().as_str()),
            ApiError::Body(_)
            | ApiError::Json(_)
            | ApiError::NoBody
            | ApiError::Path(_)
            | ApiError::Name(_)
            | ApiError::Prefix(_)
            | ApiError::Id { .. }
            | ApiError::Query(_)
            | ApiError::BodyRead(_)
            | ApiError::Page(_)
            | ApiError::Filter(_) => (StatusCode::BAD_REQUEST, "invalid-request"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request-timeout"),
            ApiError::RateLimited { .. } | ApiError::Refused { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too-many-requests")
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "no-such-endpoint"),
            ApiError::Method => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
        };
        let detail = chain(&self);
        if status.is_server_error() {
            tracing::warn!("API error: {detail}");
        }
        let mut resp = problem(status, kind, detail);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited { retry_after_s, .. } | ApiError::Refused { retry_after_s } =
            &self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        resp
    }
}
