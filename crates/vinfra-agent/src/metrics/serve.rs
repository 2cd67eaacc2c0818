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

/// Binds the metrics listener on `addr` (refused when it is unspecified, also as an
/// IPv4-mapped IPv6 address: `[::ffff:0.0.0.0]` listens on every IPv4 address).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    if unspecified(addr.ip()) {
        return Err(MetricsError::Unspecified(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Whether `ip` means every address: `0.0.0.0`, `::`, or `::ffff:0.0.0.0`.
fn unspecified(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => {
            v6.is_unspecified() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified())
        }
        std::net::IpAddr::V4(v4) => v4.is_unspecified(),
    }
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
