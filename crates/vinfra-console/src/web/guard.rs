//! What keeps another site from acting through a logged-in browser, and a page from being
//! shown to someone who is not logged in.
//!
//! - [`same_site_only`]: a request that changes something (any method but `GET`/`HEAD`) whose
//!   `Sec-Fetch-Site` says it comes from another site, or whose `Origin` is not this console, is
//!   403 before its handler runs;
//! - [`Signed`]: the session of a page's request, with its token checked again; without one a
//!   page redirects to `/login`;
//! - [`Signed::check_csrf`]: the session's CSRF token every state-changing form carries.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use vinfra_types::auth::{Actor, Role};

use super::session::{cookie_value, same_secret, Session, COOKIE};
use super::state::WebState;
use super::views::{self, PageRefusal};
use crate::interface::access::required_role;
use crate::interface::{ConsoleApi, TokenHolder};

/// The pages' `Content-Security-Policy`: nothing from another site, no inline script or
/// style, not in a frame.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The serial console page's: [`PAGE_CSP`] with inline styles allowed (xterm.js writes its
/// layout and colours in `<style>` elements), scripts still this console's own only.
pub const TERMINAL_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self'; connect-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Refuses (403) a state-changing request that a browser says comes from another site.
/// Requests without `Sec-Fetch-Site` and `Origin` (not a browser's) pass: the CSRF token of
/// the form still has to match.
pub async fn same_site_only(req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    if cross_site(req.headers(), req.uri()) {
        return views::error_page(
            StatusCode::FORBIDDEN,
            "cross-site request refused: the web console takes forms from its own pages only",
        );
    }
    next.run(req).await
}

/// True when a browser says the request comes from another site: its `Sec-Fetch-Site` is
/// neither `same-origin` nor `none`, or its `Origin` is not this console (its `Host`). A
/// request with neither header (not a browser's) is not.
pub fn cross_site(headers: &HeaderMap, uri: &Uri) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or("cross-site"));
    let cross_fetch = fetch_site.is_some_and(|s| s != "same-origin" && s != "none");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()));
    let cross_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        match (authority, &host) {
            (Some(a), Some(h)) => !a.eq_ignore_ascii_case(h),
            _ => true,
        }
    });
    cross_fetch || cross_origin
}

/// The session a page's request comes with: its id, its CSRF token and who it acts for.
pub struct Signed<A> {
    /// The console.
    pub console: Arc<A>,
    /// The session's id (its cookie's value).
    pub id: String,
    /// The session.
    pub session: Session,
    /// Its token, checked at this request.
    pub holder: TokenHolder,
}

impl<A: ConsoleApi> FromRequestParts<WebState<A>> for Signed<A> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState<A>,
    ) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| cookie_value(h, COOKIE))
            .map(str::to_string);
        // What a page's script asks by itself (`/ui/…`: a task followed, graphs refreshed)
        // does not count as the user's use of the session.
        let used = !parts.uri.path().starts_with("/ui/");
        let found = id.and_then(|id| {
            let (holder, session) = state.sessions.holder(&*state.console, &id, used)?;
            Some((id, holder, session))
        });
        match found {
            Some((id, holder, session)) => Ok(Signed {
                console: state.console.clone(),
                id,
                session,
                holder,
            }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

impl<A> Signed<A> {
    /// Who the console's events name for what this session does.
    pub fn actor(&self) -> Actor {
        Actor::token(&*self.holder.name)
    }

    /// 403 unless `csrf` (the form's) is this session's CSRF token.
    pub fn check_csrf(&self, csrf: &str) -> Result<(), PageRefusal> {
        if same_secret(csrf, &self.session.csrf) {
            Ok(())
        } else {
            Err(PageRefusal {
                status: StatusCode::FORBIDDEN,
                detail: "the form's CSRF token is missing or not this session's: reload the page \
                         and try again"
                    .into(),
            })
        }
    }

    /// Whether the session's token has the role the API route `method` `route` needs
    /// ([`required_role`], `admin` for one it does not know).
    pub fn may(&self, method: &str, route: &str) -> bool {
        self.holder.role >= required_role(method, route).unwrap_or(Role::Admin)
    }

    /// 403 unless [`Self::may`].
    pub fn require(&self, method: &str, route: &str) -> Result<(), PageRefusal> {
        if self.may(method, route) {
            return Ok(());
        }
        let needed = required_role(method, route).unwrap_or(Role::Admin);
        Err(PageRefusal {
            status: StatusCode::FORBIDDEN,
            detail: format!(
                "token '{}' has role {}; this action needs role {needed}",
                self.holder.name, self.holder.role
            ),
        })
    }
}
