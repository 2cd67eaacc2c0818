//! The flows endpoint (`GET /api/v1/flows`): parses the query into
//! [`Command::TopFlows`], like every handler of [`super::routes`].

use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use vinfra_types::flows::{
    FlowGrouping, FlowQuery, FlowReport, DEFAULT_FLOW_MINUTES, DEFAULT_FLOW_TOP,
};

use super::extract::{ApiQuery, Caller};
use super::problem::ApiError;
use super::routes::run;
use crate::interface::{Command, ConsoleApi};

/// `?minutes=N&by=…&top=K` of `GET /api/v1/flows`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FlowsQuery {
    /// The window: the last N minutes (1 to 60, default 5).
    pub minutes: Option<u32>,
    /// Rows per `vm-pair` (default), `network`, `router` or `direction`.
    #[param(value_type = Option<String>)]
    pub by: Option<FlowGrouping>,
    /// At most K rows, the largest by bytes first (1 to 1000, default 10).
    pub top: Option<u32>,
}

/// The flows of the last minutes, grouped, the largest first: bytes, packets and flows per
/// group and direction.
#[utoipa::path(get, path = "/api/v1/flows", tag = "cluster", params(FlowsQuery),
    responses((status = 200, description = "the flows", body = FlowReport)))]
pub async fn top_flows<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<FlowsQuery>,
) -> Result<Response, ApiError> {
    let query = FlowQuery {
        minutes: q.minutes.unwrap_or(DEFAULT_FLOW_MINUTES),
        by: q.by.unwrap_or_default(),
        top: q.top.unwrap_or(DEFAULT_FLOW_TOP),
    };
    run(&c, Command::TopFlows { query }).await
}
