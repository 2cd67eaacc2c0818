//! What the web console's handlers share, and the form every action posts.

use std::sync::Arc;

use serde::Deserialize;

use super::session::Sessions;
use crate::api::throttle::RefusalThrottle;

/// What the handlers share: the console, the sessions, the login's limit.
pub struct WebState<A> {
    /// The console (or a stub).
    pub console: Arc<A>,
    /// The logged-in browsers.
    pub sessions: Arc<Sessions>,
    /// The refused tokens of each client (the login's and, in a console, the API's).
    pub logins: Arc<RefusalThrottle>,
}

impl<A> Clone for WebState<A> {
    fn clone(&self) -> Self {
        WebState {
            console: self.console.clone(),
            sessions: self.sessions.clone(),
            logins: self.logins.clone(),
        }
    }
}

/// The logout form (and every other form that only carries its CSRF token).
#[derive(Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}
