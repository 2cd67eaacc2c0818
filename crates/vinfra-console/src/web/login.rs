//! `GET /login`, `POST /login`, `POST /logout`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum::Form;
use serde::Deserialize;

use super::guard::Signed;
use super::session;
use super::state::{CsrfForm, WebState};
use super::views::{error_page, render, LoginPage};
use crate::interface::ConsoleApi;

/// `GET /login`.
pub async fn form() -> Response {
    render(
        StatusCode::OK,
        &LoginPage {
            nav: None,
            refused: false,
        },
    )
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    /// The API token.
    #[serde(default)]
    token: String,
}

/// `POST /login`: a token the console accepts opens a session (its cookie) and goes to `/`;
/// another is the form again, 401, "token refused" (which of unknown, expired or revoked is
/// not said). Past [`crate::api::throttle::MAX_FAILURES`] refused tokens from one client (an
/// address, an IPv6 /64) in a minute, 429 with `Retry-After` (the token not tried).
pub async fn login<A: ConsoleApi>(
    State(state): State<WebState<A>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    // Without the connection's address (a router served without it), one shared limit.
    let addr = peer
        .map(|Extension(ConnectInfo(a))| a.ip())
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let now = Instant::now();
    if let Some(wait_s) = state.logins.blocked(addr, now) {
        let mut resp = error_page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many refused logins from this address: try again in {wait_s} s"),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
        return resp;
    }
    let token = form.token.trim();
    if token.is_empty() || state.console.authenticate(token).is_err() {
        state.logins.failed(addr, now);
        return render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                nav: None,
                refused: true,
            },
        );
    }
    let id = state.sessions.open(token);
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /logout`: ends the session, clears its cookie, goes to `/login`.
pub async fn logout<A: ConsoleApi>(
    State(state): State<WebState<A>>,
    signed: Signed<A>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&form.csrf) {
        return refused.into_response();
    }
    state.sessions.close(&signed.id);
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
