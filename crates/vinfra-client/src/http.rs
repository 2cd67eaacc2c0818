//! One exchange with the console: the request with its bearer token, the answer's status,
//! body and next page (its `Link` header), a refusal turned into a [`RestError`].

use std::time::Duration;

use reqwest::blocking::Client as HttpClient;
use reqwest::{Method, StatusCode};
use vinfra_types::Problem;

use crate::error::RestError;
use crate::{pages, tls};

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole exchange may take (a VM create waits for its agent).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest part of a non-problem error body kept in [`RestError::Status`].
const MAX_ERROR_BODY: usize = 200;

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum RawBody<'a> {
    /// No body.
    Empty,
    /// A JSON body (`Content-Type: application/json`).
    Json(&'a serde_json::Value),
    /// Any bytes with their content type (malformed JSON, say).
    Bytes {
        /// The `Content-Type` header.
        content_type: &'a str,
        /// The body.
        bytes: &'a [u8],
    },
}

/// The console's base URL and token over one HTTP client.
#[derive(Debug, Clone)]
pub struct Transport {
    base: String,
    token: String,
    http: HttpClient,
}

impl Transport {
    /// Sets up the HTTP client for `base_url`; `ca_pem` is required for `https://`.
    pub fn new(base_url: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Self, RestError> {
        let base = base_url.trim_end_matches('/').to_string();
        let tls = if base.starts_with("https://") {
            let pem = ca_pem.ok_or_else(|| RestError::NoCa(base.clone()))?;
            tls::trusting(pem)?
        } else if base.starts_with("http://") {
            tls::trusting_nothing()?
        } else {
            return Err(RestError::Url(base));
        };
        let http = HttpClient::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(RestError::Http)?;
        Ok(Transport {
            base,
            token: token.to_string(),
            http,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with `body`; returns the body of a 2xx answer (empty for 204).
    pub fn exchange(
        &self,
        method: Method,
        path: &str,
        body: RawBody<'_>,
    ) -> Result<String, RestError> {
        self.exchange_linked(method, path, body)
            .map(|(text, _)| text)
    }

    /// As [`Transport::exchange`]; also returns the target of the answer's `Link` of relation
    /// `next` (a list's next page), as written.
    pub fn exchange_linked(
        &self,
        method: Method,
        path: &str,
        body: RawBody<'_>,
    ) -> Result<(String, Option<String>), RestError> {
        self.exchange_preferring(method, path, body, None)
    }

    /// As [`Transport::exchange_linked`], with `Prefer: wait=N` when `wait_s` is given (an
    /// operation answered with a task then answers once the task has ended or N s have
    /// passed).
    pub fn exchange_preferring(
        &self,
        method: Method,
        path: &str,
        body: RawBody<'_>,
        wait_s: Option<u64>,
    ) -> Result<(String, Option<String>), RestError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(n) = wait_s {
            req = req.header("prefer", format!("wait={n}"));
        }
        req = match body {
            RawBody::Empty => req,
            RawBody::Json(v) => req.json(v),
            RawBody::Bytes {
                content_type,
                bytes,
            } => req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes.to_vec()),
        };
        let resp = req.send().map_err(|source| RestError::Transport {
            url: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        let next = pages::next_link(
            resp.headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let text = resp.text().map_err(|source| RestError::Body {
            method,
            path: path.to_string(),
            source,
        })?;
        if status.is_success() {
            Ok((text, next))
        } else {
            Err(refusal(status, &text))
        }
    }
}

/// The error an answer with a non-2xx `status` and body `text` stands for.
pub fn refusal(status: StatusCode, text: &str) -> RestError {
    if let Ok(problem) = serde_json::from_str::<Problem>(text) {
        return RestError::Problem {
            status: status.as_u16(),
            problem,
        };
    }
    let mut body: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.chars().count() > MAX_ERROR_BODY {
        body = body.chars().take(MAX_ERROR_BODY).collect::<String>() + "…";
    }
    if body.is_empty() {
        body = status.canonical_reason().unwrap_or("error").to_string();
    }
    RestError::Status {
        status: status.as_u16(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_bodies_become_problems() {
        let e = refusal(
            StatusCode::NOT_FOUND,
            r#"{"type":"/problems/not-found","title":"Not found","status":404,"detail":"no VM named 'x'"}"#,
        );
        assert_eq!(e.to_string(), "no VM named 'x'");
        assert!(e.is_client_error());
        assert_eq!(e.status(), Some(404));
        assert_eq!(
            e.problem().map(|p| p.kind.as_str()),
            Some("/problems/not-found")
        );
        let e = refusal(StatusCode::BAD_GATEWAY, "<html>\n bad\n</html>");
        assert_eq!(
            e.to_string(),
            "the console answered 502: <html> bad </html>"
        );
        assert!(!e.is_client_error());
        assert!(e.problem().is_none());
        let e = refusal(StatusCode::SERVICE_UNAVAILABLE, "");
        assert_eq!(
            e.to_string(),
            "the console answered 503: Service Unavailable"
        );
        let long = "x".repeat(500);
        let RestError::Status { body, .. } = refusal(StatusCode::BAD_REQUEST, &long) else {
            panic!("a status error");
        };
        assert_eq!(body.chars().count(), MAX_ERROR_BODY + 1);
    }

    #[test]
    fn https_needs_a_usable_ca() {
        assert!(matches!(
            Transport::new("https://127.0.0.1:1", "t", None),
            Err(RestError::NoCa(_))
        ));
        assert!(matches!(
            Transport::new("ftp://x", "t", None),
            Err(RestError::Url(_))
        ));
        assert!(matches!(
            Transport::new("https://x", "t", Some(b"junk")),
            Err(RestError::CaEmpty)
        ));
        let t = Transport::new("http://127.0.0.1:1/", "t", None).expect("plain HTTP");
        assert_eq!(t.base_url(), "http://127.0.0.1:1");
    }
}
