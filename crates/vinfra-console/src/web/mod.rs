//! The web console: server-rendered pages on the API's listener (`/`, `/login`, `/vms/…`,
//! `/tasks/…`), for a browser logged in with an API token.
//!
//! Like [`crate::api`], it drives the console through [`crate::interface`] only (the
//! [`ConsoleApi`] trait, typed [`Command`](crate::interface::Command)s); of the API it takes
//! the role table ([`crate::interface::access::required_role`]): each action of a page needs the role
//! its API route needs. Its files:
//!
//! - [`session`]: the sessions (a random id in a cookie, the token kept server-side);
//! - [`state`]: what the handlers share;
//! - [`login`]: the login form, login and logout;
//! - [`guard`]: cross-site requests refused, the session of a page, its CSRF token, roles;
//! - [`pages`]: the handlers of the pages and forms;
//! - [`hosts`]: a host's page and its maintenance;
//! - [`cluster`]: the networks, the placement rules, the balancer, the settings;
//! - [`live`]: the events and tasks, and the stream of task changes its script follows;
//! - [`graphs`], [`usage`]: a VM's use over the last hour as inline SVG, and its box;
//! - [`terminal`]: a VM's serial console over a WebSocket (output polled, keystrokes typed);
//! - [`views`], [`views_more`]: the askama templates (`templates/web/`) and what they show.
//!
//! Its assets (a style sheet, two small scripts, an icon, and xterm.js for the serial
//! console) are compiled into the binary; the pages load nothing from another site
//! (`Content-Security-Policy` says so to the browser).

pub mod cluster;
pub mod graphs;
pub mod guard;
pub mod hosts;
pub mod live;
pub mod login;
pub mod pages;
pub mod session;
pub mod state;
pub mod terminal;
pub mod usage;
pub mod views;
pub mod views_more;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::throttle::RefusalThrottle;
use crate::interface::ConsoleApi;
use session::Sessions;
use state::WebState;

/// The style sheet, `GET /assets/style.css`.
const STYLE: &str = include_str!("assets/style.css");
/// The script, `GET /assets/app.js`.
const SCRIPT: &str = include_str!("assets/app.js");
/// The pages' icon, `GET /assets/icon.svg` (named by every page, so that a browser does not ask
/// for `/favicon.ico`, which is the API's 404).
const ICON: &str = include_str!("assets/icon.svg");

/// The serial console's script, `GET /assets/console.js`.
const CONSOLE_SCRIPT: &str = include_str!("assets/console.js");
/// xterm.js (vendored from npm `@xterm/xterm`, MIT: `assets/xterm/LICENSE`).
const XTERM_SCRIPT: &str = include_str!("assets/xterm/xterm.js");
/// xterm.js's style sheet.
const XTERM_STYLE: &str = include_str!("assets/xterm/xterm.css");
/// xterm.js's licence, served beside it.
const XTERM_LICENSE: &str = include_str!("assets/xterm/LICENSE");

/// Largest form a page posts.
const MAX_FORM: usize = 64 * 1024;

/// The web console's routes, over `console`, to be merged with the API's router (it has no
/// fallback of its own: an unknown path is the API's 404), with a limit on refused logins of
/// its own.
pub fn router<A: ConsoleApi>(console: Arc<A>) -> Router {
    router_with(console, Arc::new(RefusalThrottle::default()))
}

/// The same, the refused logins counted in `refusals` (the API's refused bearer tokens, so
/// that a client has one budget for both: [`crate::api::limits::RequestLimits::refusals`]).
pub fn router_with<A: ConsoleApi>(console: Arc<A>, refusals: Arc<RefusalThrottle>) -> Router {
    let state = WebState {
        console,
        sessions: Arc::new(Sessions::default()),
        logins: refusals,
    };
    Router::new()
        .route("/", get(pages::inventory::<A>))
        .route("/login", get(login::form).post(login::login::<A>))
        .route("/logout", post(login::logout::<A>))
        .route(
            "/new-vm",
            get(pages::new_vm::<A>).post(pages::create_vm::<A>),
        )
        .route("/vms/{name}", get(pages::show_vm::<A>))
        .route("/vms/{name}/migrate", post(pages::migrate::<A>))
        .route("/ui/vms/{name}/usage", get(usage::vm_usage::<A>))
        .route("/ui/hosts/{name}/usage", get(usage::host_usage::<A>))
        .route("/vms/{name}/console", get(pages::console_page::<A>))
        .route("/vms/{name}/console/ws", get(terminal::socket::<A>))
        .route("/vms/{name}/{action}", post(pages::power::<A>))
        .route(
            "/vms/{name}/delete",
            get(pages::confirm_delete::<A>).post(pages::delete_vm::<A>),
        )
        .route("/hosts/{name}", get(hosts::show_host::<A>))
        .route("/hosts/{name}/maintenance", post(hosts::maintenance::<A>))
        .route("/networks", get(cluster::networks::<A>))
        .route("/networks/{name}", get(cluster::network::<A>))
        .route(
            "/rules",
            get(cluster::rules::<A>).post(cluster::create_rule::<A>),
        )
        .route("/rules/{name}/delete", post(cluster::delete_rule::<A>))
        .route("/balancer", get(cluster::balancer::<A>))
        .route("/balancer/run", post(cluster::run_pass::<A>))
        .route(
            "/balancer/recommendations/{id}/apply",
            post(cluster::apply::<A>),
        )
        .route(
            "/settings",
            get(cluster::settings::<A>).post(cluster::put_settings::<A>),
        )
        .route("/events", get(live::events::<A>))
        .route("/ui/events/stream", get(live::stream::<A>))
        .route("/tasks/{id}", get(pages::show_task::<A>))
        .route("/ui/tasks/{id}", get(pages::task_box::<A>))
        .route("/assets/style.css", get(|| asset(STYLE, "text/css")))
        .route(
            "/assets/app.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/console.js",
            get(|| asset(CONSOLE_SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/xterm/xterm.js",
            get(|| asset(XTERM_SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/xterm/xterm.css",
            get(|| asset(XTERM_STYLE, "text/css")),
        )
        .route(
            "/assets/xterm/LICENSE",
            get(|| asset(XTERM_LICENSE, "text/plain; charset=utf-8")),
        )
        .route("/assets/icon.svg", get(|| asset(ICON, "image/svg+xml")))
        .layer(axum::middleware::from_fn(guard::same_site_only))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .with_state(state)
}

/// An embedded asset.
async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// Every answer of the web console: nothing from another site, not in a frame, no sniffing,
/// no referrer to another site; pages are not cached.
///
/// The referrer policy is `same-origin`, not `no-referrer`: under `no-referrer` a browser sends
/// `Origin: null` with the console's own forms, which [`guard::same_site_only`] refuses.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(guard::PAGE_CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
