//! Extractors whose rejections are problem+json (axum's own answer in text/plain).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use vinfra_types::auth::Actor;

use super::problem::ApiError;
use crate::interface::{ConsoleApi, TokenHolder};

/// The console a handler hands its command to, and the actor it runs it for: the token the
/// auth middleware ([`super::auth`]) accepted. A request that did not pass it (which routing
/// never lets happen) is 401.
pub struct Caller<A>(
    /// The console (or a stub).
    pub Arc<A>,
    /// The request's token.
    pub Actor,
);

impl<A: ConsoleApi> FromRequestParts<Arc<A>> for Caller<A> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<A>,
    ) -> Result<Self, Self::Rejection> {
        let holder = parts
            .extensions
            .get::<TokenHolder>()
            .ok_or(ApiError::Unauthorized(
                "missing bearer token (Authorization: Bearer <token>)",
            ))?;
        Ok(Caller(Arc::clone(state), Actor::token(&*holder.name)))
    }
}

/// A JSON body: malformed JSON, unknown fields and wrong types are 400 problems.
pub struct ApiJson<T>(
    /// The body.
    pub T,
);

/// An optional JSON body: empty means `T::default()`.
pub struct OptionalJson<T>(
    /// The body, or the default.
    pub T,
);

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::Body(e)
        }
    })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(ApiError::Json)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::NoBody);
        }
        parse(&bytes).map(ApiJson)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalJson(T::default()));
        }
        parse(&bytes).map(OptionalJson)
    }
}

/// The `{name}` path segment, checked to be a valid name (400 otherwise).
pub struct NamePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for NamePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(ApiError::Path)?;
        vinfra_types::validate_name(&name)?;
        Ok(NamePath(name))
    }
}

/// The `{id}` path segment, a decimal number (400 otherwise).
pub struct IdPath(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(ApiError::Path)?;
        id.parse::<u64>()
            .map(IdPath)
            .map_err(|_| ApiError::Id { text: id })
    }
}

/// A `{name}` path segment followed by a number (`/vms/{name}/nics/{index}`,
/// `/security-groups/{name}/rules/{id}`): the name checked (400 otherwise), the number decimal
/// (400 otherwise).
pub struct NameNumberPath(pub String, pub u64);

impl<S: Send + Sync> FromRequestParts<S> for NameNumberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((name, number)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(ApiError::Path)?;
        vinfra_types::validate_name(&name)?;
        let n = number
            .parse::<u64>()
            .map_err(|_| ApiError::Id { text: number })?;
        Ok(NameNumberPath(name, n))
    }
}

/// A query string: unknown or malformed parameters are 400 problems.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(ApiError::Query)
    }
}

/// A `{name}` path segment followed by another name (`/routers/{name}/interfaces/{network}`):
/// both checked (400 otherwise).
pub struct TwoNamesPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for TwoNamesPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((name, other)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(ApiError::Path)?;
        vinfra_types::validate_name(&name)?;
        vinfra_types::validate_name(&other)?;
        Ok(TwoNamesPath(name, other))
    }
}

/// A `{name}` path segment followed by an IPv4 prefix as two segments
/// (`/routers/{name}/routes/{addr}/{len}`): the name checked, the prefix parsed (host bits
/// zero; 400 otherwise) and given back as `A.B.C.D/L`.
pub struct NamePrefixPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for NamePrefixPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((name, addr, len)) =
            Path::<(String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(ApiError::Path)?;
        vinfra_types::validate_name(&name)?;
        let (addr, len) = vinfra_types::router::parse_route_prefix(&format!("{addr}/{len}"))?;
        Ok(NamePrefixPath(name, format!("{addr}/{len}")))
    }
}

/// A `{name}` path segment followed by an IPv4 address (`/vms/{name}/floating-ips/{ip}`): the
/// name checked, the address parsed (400 otherwise) and given back as `A.B.C.D`.
pub struct NameAddressPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for NameAddressPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((name, addr)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(ApiError::Path)?;
        vinfra_types::validate_name(&name)?;
        let ip = vinfra_types::router::parse_ip(&addr)?;
        Ok(NameAddressPath(name, ip.to_string()))
    }
}

/// The `wait` preference of a request answered with a task (RFC 7240 `Prefer: wait=N`): how
/// many seconds the client would wait for the task's end in this answer, at most
/// [`vinfra_types::task::TASK_WAIT_MAX_S`]; `None` without one (or with one that does not
/// parse: a preference is a wish, and one not understood is ignored, as RFC 7240 asks).
pub struct PreferWait(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for PreferWait {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let values = parts
            .headers
            .get_all(axum::http::header::HeaderName::from_static("prefer"));
        Ok(PreferWait(prefer_wait(
            values.iter().filter_map(|v| v.to_str().ok()),
        )))
    }
}

/// The first `wait` preference among `Prefer` header values (`respond-async, wait=10`,
/// `wait="5"; x=y`): its seconds, at most [`vinfra_types::task::TASK_WAIT_MAX_S`]; `None` when
/// there is none, or the first is not a number of seconds (RFC 7240: only a preference's first
/// instance counts). Commas and semicolons inside quoted strings separate nothing.
pub fn prefer_wait<'a>(values: impl Iterator<Item = &'a str>) -> Option<u64> {
    let first = values
        .flat_map(|v| split_unquoted(v, ','))
        .map(|pref| split_unquoted(pref, ';').next().unwrap_or_default())
        .find_map(|pref| {
            let (name, value) = pref.split_once('=').unwrap_or((pref, ""));
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim())
        })?;
    let digits = match first.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => first,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits past u64 are a very long wait: the bound.
    Some(
        digits
            .parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(vinfra_types::task::TASK_WAIT_MAX_S),
    )
}

/// `s` split at each `sep` outside a quoted string (`"…"`, with `\` escapes).
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::prefer_wait;

    fn wait(values: &[&str]) -> Option<u64> {
        prefer_wait(values.iter().copied())
    }

    #[test]
    fn the_first_wait_preference_is_taken_and_bounded() {
        assert_eq!(wait(&["wait=10"]), Some(10));
        assert_eq!(wait(&["respond-async, wait=5"]), Some(5));
        assert_eq!(wait(&["return=minimal; x=1", "WAIT = \"7\"; y=2"]), Some(7));
        assert_eq!(wait(&["wait=3", "wait=9"]), Some(3));
        assert_eq!(wait(&["wait=0"]), Some(0));
        assert_eq!(wait(&["wait=600"]), Some(60));
        assert_eq!(wait(&["wait=99999999999999999999999"]), Some(60));
    }

    #[test]
    fn no_or_a_malformed_wait_is_none() {
        assert_eq!(wait(&[]), None);
        assert_eq!(wait(&["respond-async"]), None);
        assert_eq!(wait(&["wait"]), None);
        assert_eq!(wait(&["wait="]), None);
        assert_eq!(wait(&["wait=-1"]), None);
        assert_eq!(wait(&["wait=1.5"]), None);
        assert_eq!(wait(&["waiting=4"]), None);
        // The first `wait` counts, even when it does not parse or has no value.
        assert_eq!(wait(&["wait=soon, wait=4"]), None);
        assert_eq!(wait(&["wait, wait=4"]), None);
        assert_eq!(wait(&["wait=\"5"]), None);
        // A quoted comma or semicolon separates nothing.
        assert_eq!(wait(&["foo=\"a,wait=5\""]), None);
        assert_eq!(wait(&["foo=\"a;b\\\",wait=5\", wait=2"]), Some(2));
    }
}
