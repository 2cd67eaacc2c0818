//! The agent's metrics listener (`vinfra agent --metrics-listen ADDR`): plain HTTP, `GET
//! /metrics` and nothing else, without authentication, so it binds a management or loopback
//! address only: an unspecified address (`0.0.0.0`, `::`), which would take every network of
//! the host, the VMs' included, is refused (docs/design.md, "Metrics").

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::manager::Manager;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// an unspecified address was given
    #[error(
        "--metrics-listen {0}: the metrics endpoint has no authentication; give a management \
         or loopback address (such as 127.0.0.1:9101), not an unspecified one"
    )]
    Unspecified(SocketAddr),
    /// the address could not be bound
    #[error("cannot listen on {addr} for metrics")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Binds the metrics listener on `addr` (refused when it is unspecified).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    if addr.ip().is_unspecified() {
        return Err(MetricsError::Unspecified(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// The routes: `GET /metrics`.
pub fn router(m: Arc<Manager>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = m.clone();
            async move {
                (
                    [(CONTENT_TYPE, CONTENT_TYPE_TEXT)],
                    super::scrape::scrape(&m).await,
                )
                    .into_response()
            }
        }),
    )
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, m: Arc<Manager>) {
    let addr = listener.local_addr().ok();
    if let Err(e) = axum::serve(listener, router(m)).await {
        tracing::warn!(
            "metrics listener {addr:?} stopped: {}",
            vinfra_types::error::Chain(&e)
        );
    }
}
