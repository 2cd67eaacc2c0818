//! Per-request limits of the REST API: how large and how slow a body may be, how often a token
//! may ask, how many refused tokens a client may send.
//!
//! [`read_body`] reads every request's body before anything else looks at it: at most
//! [`MAX_BODY`] bytes, all of it within the body timeout. A body past the
//! limit is read on to its end and dropped (up to [`DRAIN_LIMIT`]), so the client, which sends
//! its whole body before it reads an answer, gets its 413 rather than a connection or an
//! HTTP/2 stream reset mid-send. A body that does not arrive within the timeout is 408 (the
//! slow-POST form of slowloris).
//!
//! Refused bearer tokens are limited per client before that ([`super::throttle`], applied by
//! the auth middleware). [`rate_limit`] runs after the bearer token is checked: each token name has a bucket of
//! `burst` requests refilled at `per_second` (GCRA, the `governor` crate); a request finding it
//! empty is 429 with `Retry-After`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::problem::ApiError;
use super::throttle::RefusalThrottle;
use crate::interface::TokenHolder;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A too-large body is read and dropped up to this many bytes, so its client gets the 413;
/// past it, the answer goes out at once and the connection or stream is reset.
pub const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Default time for a request's whole body to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A token's rate limit: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// Requests that may come at once.
    pub burst: NonZeroU32,
}

impl Default for RateLimit {
    /// 200 requests a second, 1,000 at once (docs/design.md, "Limits").
    fn default() -> Self {
        RateLimit {
            per_second: NonZeroU32::new(200).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Why a rate limit could not be read from its text.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// Not `RATE` or `RATE/BURST` with positive whole numbers.
    #[error(
        "'{0}' is not RATE[/BURST] (requests per second, then at once; positive numbers) or 'off'"
    )]
    Syntax(String),
}

impl RateLimit {
    /// Reads `RATE` (burst 5 × RATE) or `RATE/BURST`; `off` is `None`.
    pub fn parse(text: &str) -> Result<Option<RateLimit>, RateLimitError> {
        if text == "off" {
            return Ok(None);
        }
        let bad = || RateLimitError::Syntax(text.to_string());
        let number = |s: &str| s.parse::<NonZeroU32>().map_err(|_| bad());
        let (rate, burst) = match text.split_once('/') {
            Some((r, b)) => (number(r)?, number(b)?),
            None => {
                let r = number(text)?;
                (r, r.saturating_mul(NonZeroU32::new(5).ok_or_else(bad)?))
            }
        };
        Ok(Some(RateLimit {
            per_second: rate,
            burst,
        }))
    }
}

type Limiter = RateLimiter<Arc<str>, DefaultKeyedStateStore<Arc<str>>, DefaultClock>;

/// The limits the API's middleware applies to each request.
pub struct RequestLimits {
    body_timeout: Duration,
    rate: Option<Limiter>,
    refusals: Arc<RefusalThrottle>,
}

impl RequestLimits {
    /// A body must arrive within `body_timeout`; each token is held to `rate` (none: no limit).
    pub fn new(body_timeout: Duration, rate: Option<RateLimit>) -> Self {
        RequestLimits {
            body_timeout,
            rate: rate.map(|r| {
                RateLimiter::hashmap(Quota::per_second(r.per_second).allow_burst(r.burst))
            }),
            refusals: Arc::new(RefusalThrottle::default()),
        }
    }

    /// The refused bearer tokens of each client, also given to the web console's login so
    /// that a client has one budget for both.
    pub fn refusals(&self) -> Arc<RefusalThrottle> {
        self.refusals.clone()
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits::new(BODY_TIMEOUT, Some(RateLimit::default()))
    }
}

/// What reading a body gave.
enum Read {
    /// The whole body, within the limit.
    Body(Bytes),
    /// More than the limit.
    TooLarge,
}

/// Reads `body` to its end, keeping at most `MAX_BODY` bytes; `over` is set once the body is
/// larger (the rest is dropped, up to [`DRAIN_LIMIT`] in all).
async fn read(body: Body, over: &mut bool) -> Result<Read, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        total = total.saturating_add(chunk.len());
        if total > MAX_BODY {
            *over = true;
            kept = Vec::new();
            if total > DRAIN_LIMIT {
                return Ok(Read::TooLarge);
            }
        } else {
            kept.extend_from_slice(&chunk);
        }
    }
    Ok(if *over {
        Read::TooLarge
    } else {
        Read::Body(Bytes::from(kept))
    })
}

/// Reads the request's body within the limits (see the module's documentation), then passes
/// the request on with the body in memory.
pub async fn read_body(
    State(limits): State<Arc<RequestLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return ApiError::TooLarge.into_response();
    }
    let mut over = false;
    let read = tokio::time::timeout(limits.body_timeout, read(body, &mut over)).await;
    match read {
        Ok(Ok(Read::Body(bytes))) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Ok(Read::TooLarge)) => ApiError::TooLarge.into_response(),
        Err(_) if over => ApiError::TooLarge.into_response(),
        Err(_) => ApiError::BodyTimeout(limits.body_timeout).into_response(),
        Ok(Err(e)) => ApiError::BodyRead(e).into_response(),
    }
}

/// Holds each token to its rate: 429 with `Retry-After` (whole seconds, at least 1) when its
/// bucket is empty. Runs after the auth middleware, which puts the token in the extensions.
pub async fn rate_limit(
    State(limits): State<Arc<RequestLimits>>,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(limiter), Some(holder)) = (&limits.rate, req.extensions().get::<TokenHolder>()) {
        if let Err(not_until) = limiter.check_key(&holder.name) {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let retry_after_s = wait.as_secs_f64().ceil().max(1.0) as u64;
            return ApiError::RateLimited {
                token: holder.name.to_string(),
                retry_after_s,
            }
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit {
            per_second: NonZeroU32::new(rate).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn rate_limits_are_read_from_their_text() {
        assert_eq!(RateLimit::parse("200").unwrap(), limit(200, 1000));
        assert_eq!(RateLimit::parse("5/7").unwrap(), limit(5, 7));
        assert_eq!(RateLimit::parse("off").unwrap(), None);
        assert_eq!(Some(RateLimit::default()), limit(200, 1000));
        for bad in [
            "", "0", "0/5", "5/0", "-1", "a/b", "5/", "/5", "1.5", "5/7/9", "OFF",
        ] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }
}
