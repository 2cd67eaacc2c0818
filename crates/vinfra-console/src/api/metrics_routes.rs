//! `GET /metrics` (docs/design.md, "Metrics"): the console's metrics in the Prometheus text
//! format, behind the same token check and limits as `/api/v1` (any role may read them); and
//! [`observe`], the middleware that counts every answered request of a route with its
//! template, method, status and time.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::extract::Caller;
use super::problem::ApiError;
use super::routes::run;
use crate::interface::{Command, ConsoleApi};

/// The console's metrics, the gauges computed now (`Command::Metrics`), as
/// `text/plain; version=0.0.4`.
pub async fn scrape<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    run(&c, Command::Metrics).await
}

/// Counts the request once answered ([`ConsoleApi::request_answered`]): the matched route's
/// template (`/api/v1/vms/{name}`, never the path asked for), the method, the status and the
/// time until the answer's head. The outermost layer of the routes, so refusals (401, 403,
/// 429, 413, …) count too; a path that matches no route is not counted.
pub async fn observe<A: ConsoleApi>(
    State(console): State<Arc<A>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    if let Some(route) = route {
        console.request_answered(
            route.as_str(),
            method.as_str(),
            resp.status().as_u16(),
            start.elapsed(),
        );
    }
    resp
}
