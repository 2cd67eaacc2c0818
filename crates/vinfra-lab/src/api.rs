//! A small blocking client for the console's REST API: bearer token, HTTPS trusting only the
//! cluster CA, problem+json errors turned into [`ApiError::Problem`].
//!
//! The lab, the `vinfra` CLI and the integration tests all talk to the console through it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use vinfra_types::Problem;

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The base URL is not an `http://` or `https://` URL.
    #[error(
        "bad console URL '{0}': it must start with https:// (or http:// for a console without TLS)"
    )]
    Url(String),
    /// An `https://` URL was given without a CA certificate to trust.
    #[error("no CA certificate for {0}: pass --ca, set VINFRA_CA or add ca = \"...\" to the config file")]
    NoCa(String),
    /// The CA certificate PEM holds no usable certificate.
    #[error("the CA certificate is not a valid PEM certificate: {0}")]
    Ca(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The request got no answer (connection refused, TLS failure, timeout).
    #[error("cannot reach the console at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API refused the request with a problem+json body.
    #[error("{problem}")]
    Problem { status: u16, problem: Problem },
    /// The API answered an error status without a problem+json body.
    #[error("the console answered {status}: {body}")]
    Status { status: u16, body: String },
    /// The response body could not be read or decoded.
    #[error("unexpected response body from {path}: {reason}")]
    Decode { path: String, reason: String },
}

impl ApiError {
    /// HTTP status of an answered request, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Problem { status, .. } | ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the request itself was at fault (a 4xx answer or a bad local setting),
    /// false when the console failed or could not be reached.
    pub fn is_client_error(&self) -> bool {
        match self {
            ApiError::Url(_) | ApiError::NoCa(_) | ApiError::Ca(_) => true,
            ApiError::Problem { status, .. } | ApiError::Status { status, .. } => {
                (400..500).contains(status)
            }
            _ => false,
        }
    }
}

/// A connection setting for the console's REST API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: Client,
}

impl ApiClient {
    /// A client for `base_url` (e.g. `https://127.0.0.1:7443`) sending `token`; `ca_pem` is the
    /// cluster CA certificate (required for `https://`).
    pub fn new(base_url: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Self, ApiError> {
        let base = base_url.trim_end_matches('/').to_string();
        let mut builder = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120));
        if base.starts_with("https://") {
            let pem = ca_pem.ok_or_else(|| ApiError::NoCa(base.clone()))?;
            builder = builder.tls_backend_preconfigured(tls_config(pem)?);
        } else if base.starts_with("http://") {
            // reqwest sets up TLS even for plain HTTP: give it one that trusts nothing.
            builder =
                builder.tls_backend_preconfigured(client_config(rustls::RootCertStore::empty())?);
        } else {
            return Err(ApiError::Url(base));
        }
        let http = builder.build().map_err(ApiError::Client)?;
        Ok(ApiClient {
            base,
            token: token.to_string(),
            http,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request; returns the JSON body (`None` for an empty body).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().map_err(|source| ApiError::Transport {
            url: self.base.clone(),
            source,
        })?;
        decode(path, resp)
    }

    /// `GET path`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        typed(path, self.request(Method::GET, path, None)?)
    }

    /// `POST path` with a JSON body, answer decoded as `T`.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let body = to_value(path, body)?;
        typed(path, self.request(Method::POST, path, Some(&body))?)
    }

    /// `PUT path` with a JSON body, answer decoded as `T`.
    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let body = to_value(path, body)?;
        typed(path, self.request(Method::PUT, path, Some(&body))?)
    }

    /// `PATCH path` with a JSON body, answer decoded as `T`.
    pub fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let body = to_value(path, body)?;
        typed(path, self.request(Method::PATCH, path, Some(&body))?)
    }

    /// `DELETE path`; returns the JSON body, if any.
    pub fn delete(&self, path: &str) -> Result<Option<serde_json::Value>, ApiError> {
        self.request(Method::DELETE, path, None)
    }
}

fn to_value<B: Serialize>(path: &str, body: &B) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(body).map_err(|e| ApiError::Decode {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

fn typed<T: DeserializeOwned>(path: &str, v: Option<serde_json::Value>) -> Result<T, ApiError> {
    serde_json::from_value(v.unwrap_or(serde_json::Value::Null)).map_err(|e| ApiError::Decode {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

fn decode(path: &str, resp: Response) -> Result<Option<serde_json::Value>, ApiError> {
    let status = resp.status();
    let text = resp.text().map_err(|e| ApiError::Decode {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok(None);
        }
        return serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ApiError::Decode {
                path: path.to_string(),
                reason: e.to_string(),
            });
    }
    Err(error_from(status, &text))
}

fn error_from(status: StatusCode, text: &str) -> ApiError {
    if let Ok(problem) = serde_json::from_str::<Problem>(text) {
        return ApiError::Problem {
            status: status.as_u16(),
            problem,
        };
    }
    let mut body: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.chars().count() > 200 {
        body = body.chars().take(200).collect::<String>() + "…";
    }
    if body.is_empty() {
        body = status.canonical_reason().unwrap_or("error").to_string();
    }
    ApiError::Status {
        status: status.as_u16(),
        body,
    }
}

/// A rustls client configuration (ring provider) that trusts only the certificates in `ca_pem`.
pub fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, ApiError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| ApiError::Ca(e.to_string()))?;
        roots.add(cert).map_err(|e| ApiError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ApiError::Ca("no CERTIFICATE block found".into()));
    }
    client_config(roots)
}

fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_bodies_become_problems() {
        let e = error_from(
            StatusCode::NOT_FOUND,
            r#"{"type":"/problems/not-found","title":"Not found","status":404,"detail":"no VM named 'x'"}"#,
        );
        assert_eq!(e.to_string(), "no VM named 'x'");
        assert!(e.is_client_error());
        let e = error_from(StatusCode::BAD_GATEWAY, "<html>\n bad\n</html>");
        assert_eq!(
            e.to_string(),
            "the console answered 502: <html> bad </html>"
        );
        assert!(!e.is_client_error());
    }

    #[test]
    fn https_needs_a_ca() {
        assert!(matches!(
            ApiClient::new("https://127.0.0.1:1", "t", None),
            Err(ApiError::NoCa(_))
        ));
        assert!(matches!(
            ApiClient::new("ftp://x", "t", None),
            Err(ApiError::Url(_))
        ));
        assert!(matches!(
            ApiClient::new("https://x", "t", Some(b"junk")),
            Err(ApiError::Ca(_))
        ));
        assert!(ApiClient::new("http://127.0.0.1:1/", "t", None).is_ok());
    }
}
