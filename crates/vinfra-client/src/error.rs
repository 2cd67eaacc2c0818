//! Why a call to the console failed.

use reqwest::Method;
use vinfra_types::task::Task;
use vinfra_types::Problem;

/// Why a REST call, or setting up the client, failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The base URL given to [`crate::Client::new`] is not an `http://` or `https://` URL.
    #[error(
        "bad console URL '{0}': it must start with https:// (or http:// for a console without TLS)"
    )]
    Url(String),
    /// An `https://` URL was given without a CA certificate to trust.
    #[error("no CA certificate to trust for {0}")]
    NoCa(String),
    /// The CA certificate is not valid PEM.
    #[error("the CA certificate is not a valid PEM certificate")]
    CaPem(#[source] rustls::pki_types::pem::Error),
    /// The CA PEM holds no `CERTIFICATE` block.
    #[error("the CA certificate is not a valid PEM certificate: no CERTIFICATE block found")]
    CaEmpty,
    /// A certificate of the CA PEM cannot be used as a trust anchor.
    #[error("the CA certificate cannot be trusted")]
    CaCertificate(#[source] rustls::Error),
    /// TLS cannot be set up with the crypto provider.
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
    /// The request got no answer (connection refused, TLS failure, timeout).
    #[error("cannot reach the console at {url}")]
    Transport {
        /// The console's base URL.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The body of the answer could not be read.
    #[error("cannot read the answer to {method} {path}")]
    Body {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The API refused the request with a problem+json body; shown by its `detail`.
    #[error("{problem}")]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The RFC 9457 body.
        problem: Problem,
    },
    /// The API answered an error status without a problem+json body (a proxy, say).
    #[error("the console answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body on one line, cut at 200 characters (the status's reason when empty).
        body: String,
    },
    /// A request body could not be encoded as JSON.
    #[error("cannot encode the body of {method} {path}")]
    Encode {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is not the JSON the endpoint documents.
    #[error("unexpected answer to {method} {path}")]
    Decode {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A page of a list names a next page the client does not follow: one not on this
    /// console's API, or the page it came from again.
    #[error("the answer to GET {path} names a next page {link:?} {reason}")]
    NextPage {
        /// The page's path.
        path: String,
        /// The `Link` target of relation `next`.
        link: String,
        /// Why it is not followed.
        reason: &'static str,
    },
    /// A task ended failed or cancelled without a problem saying why (a task with one is
    /// [`RestError::Problem`], as the refusal of the request would have been).
    #[error("task {} ({} {}) {}{}", .0.id, .0.kind, .0.target, .0.state, message(.0))]
    TaskEnded(Box<Task>),
    /// A task had not ended when its wait ran out.
    #[error(
        "task {} ({} {}) has not ended after {waited_s} s: {}{}",
        task.id, task.kind, task.target, task.state, message(task)
    )]
    TaskNotEnded {
        /// The task as last seen.
        task: Box<Task>,
        /// How long it was waited for, in seconds.
        waited_s: u64,
    },
    /// A task succeeded with a result that is not what its kind answers.
    #[error("unexpected result of task {} ({} {})", task.id, task.kind, task.target)]
    TaskResult {
        /// The task.
        task: Box<Task>,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// `: <message>` of a task, or nothing.
fn message(task: &Task) -> String {
    task.message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl RestError {
    /// The HTTP status of an answered request, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            RestError::Problem { status, .. } | RestError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem+json body of a refusal, if that is what the console answered.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RestError::Problem { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// True when the request itself was at fault (a 4xx answer or a bad URL or CA), false when
    /// the console failed or could not be reached.
    pub fn is_client_error(&self) -> bool {
        match self {
            RestError::Url(_)
            | RestError::NoCa(_)
            | RestError::CaPem(_)
            | RestError::CaEmpty
            | RestError::CaCertificate(_) => true,
            RestError::Problem { status, .. } | RestError::Status { status, .. } => {
                (400..500).contains(status)
            }
            RestError::Tls(_)
            | RestError::Http(_)
            | RestError::Transport { .. }
            | RestError::Body { .. }
            | RestError::Encode { .. }
            | RestError::Decode { .. }
            | RestError::NextPage { .. }
            | RestError::TaskEnded(_)
            | RestError::TaskNotEnded { .. }
            | RestError::TaskResult { .. } => false,
        }
    }
}
