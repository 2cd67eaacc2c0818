//! The stub console of the REST API tests (`api*.rs`): it records every command and answers
//! [`Reply::Done`] (or the error or reply it is told); a request sent to it through the API's
//! router; the problem+json check; the command a request means, by the route table
//! ([`super::routes`]).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;
use vinfra_console::api::{router, MAX_BODY};
use vinfra_console::interface::{Command, ConsoleApi, Error, Reply, TokenHolder, TokenRefusal};
use vinfra_types::auth::{Actor, Role};

use super::routes::{routes, Query, QueryKind};

pub const TOKEN: &str = "the-token";
/// The stub's viewer and operator tokens (TOKEN is its admin token, `stub`).
pub const VIEWER: &str = "the-viewer";
pub const OPERATOR: &str = "the-operator";

/// A console that records every command and answers [`Reply::Done`], or the error or reply set
/// for the next command.
#[derive(Default)]
pub struct Stub {
    pub calls: Mutex<Vec<Command>>,
    pub actors: Mutex<Vec<Actor>>,
    pub fail: Mutex<Option<Error>>,
    pub reply: Mutex<Option<Reply>>,
}

impl ConsoleApi for Stub {
    async fn execute(self: &Arc<Self>, actor: Actor, command: Command) -> Result<Reply, Error> {
        self.actors.lock().unwrap().push(actor);
        self.calls.lock().unwrap().push(command);
        if let Some(e) = self.fail.lock().unwrap().take() {
            return Err(e);
        }
        Ok(self.reply.lock().unwrap().take().unwrap_or(Reply::Done))
    }

    fn authenticate(&self, token: &str) -> Result<TokenHolder, TokenRefusal> {
        let (name, role) = match token {
            TOKEN => ("stub", Role::Admin),
            VIEWER => ("viewer", Role::Viewer),
            OPERATOR => ("operator", Role::Operator),
            _ => return Err(TokenRefusal::Unknown),
        };
        Ok(TokenHolder {
            name: name.into(),
            role,
        })
    }
}

impl Stub {
    pub fn take_actors(&self) -> Vec<Actor> {
        std::mem::take(&mut *self.actors.lock().unwrap())
    }

    pub fn take_calls(&self) -> Vec<Command> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub www_authenticate: Option<String>,
    pub body: Vec<u8>,
}

pub async fn send(
    stub: &Arc<Stub>,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    auth: Option<&str>,
) -> Option<Answer> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let req = req.body(Body::from(body)).ok()?;
    let resp = router(stub.clone()).oneshot(req).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    };
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Some(Answer {
        status,
        content_type,
        www_authenticate,
        body,
    })
}

/// The answer is an RFC 9457 problem: content type, status, a `/problems/` type, one line of
/// detail.
pub fn check_problem(a: &Answer) -> Result<serde_json::Value, String> {
    if a.content_type != "application/problem+json" {
        return Err(format!("{}: content type {:?}", a.status, a.content_type));
    }
    let p: serde_json::Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("problem body: {e}"))?;
    let detail = p["detail"].as_str().unwrap_or_default();
    let ok = p["status"] == a.status
        && p["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/"))
        && p["title"].as_str().is_some_and(|t| !t.is_empty())
        && !detail.is_empty()
        && !detail.contains('\n');
    if !ok {
        return Err(format!("bad problem {p}"));
    }
    Ok(p)
}

/// Decodes `%XX` the way the router's path extraction does; `None` when the result is not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query string as the two query-reading routes parse it; `None` when refused.
fn parse_query(q: &str, kind: QueryKind) -> Option<Query> {
    let mut out = Query::default();
    if q.is_empty() {
        return Some(out);
    }
    let mut seen = std::collections::HashSet::new();
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=')?;
        match (kind, k) {
            (QueryKind::Force, "force") => out.force = v.parse().ok()?,
            (QueryKind::Bytes, "bytes") => out.bytes = Some(v.parse().ok()?),
            (QueryKind::Page, "limit" | "page_token") => {
                if !seen.insert(k) {
                    return None;
                }
                if k == "limit" {
                    let n: u32 = v.parse().ok()?;
                    if !(1..=1000).contains(&n) {
                        return None;
                    }
                    out.limit = Some(n as usize);
                } else {
                    let v = percent_decode(v)?;
                    if v.is_empty() || v.len() > 1024 {
                        return None;
                    }
                    out.after = Some(String::from_utf8(hex::decode(v).ok()?).ok()?);
                    out.limit = out.limit.or(Some(1000));
                }
            }
            (QueryKind::Flows, "minutes" | "by" | "top") => {
                if !seen.insert(k) {
                    return None;
                }
                match k {
                    "minutes" => out.flows.minutes = v.parse().ok()?,
                    "top" => out.flows.top = v.parse().ok()?,
                    _ => {
                        out.flows.by =
                            serde_json::from_value(serde_json::Value::String(v.into())).ok()?
                    }
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The command a request means, or `None` when the API must refuse it (or it is not a console
/// command at all).
pub fn expected(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    auth: Option<&str>,
) -> Option<Command> {
    let token = auth?
        .strip_prefix("Bearer ")
        .or_else(|| auth?.strip_prefix("bearer "))?
        .trim();
    if token != TOKEN {
        return None;
    }
    let have: Vec<&str> = path.split('/').collect();
    for r in routes() {
        let want: Vec<&str> = r.path.split('/').collect();
        if want.len() != have.len() || r.method != method {
            continue;
        }
        let mut segments = vec![];
        let matched = want.iter().zip(&have).all(|(w, h)| {
            if w.starts_with('{') {
                segments.push((*w, *h));
                !h.is_empty()
            } else {
                w == h
            }
        });
        if !matched {
            continue;
        }
        // The segments decoded, `/`-joined (a name cannot hold a `/`; a number with one does
        // not parse).
        let mut decoded = vec![];
        for (w, h) in segments {
            let s = percent_decode(h)?;
            if w == "{name}" || w == "{network}" {
                vinfra_types::validate_name(&s).ok()?;
            }
            decoded.push(s);
        }
        let segment = decoded.join("/");
        let q = match r.query {
            QueryKind::Ignored => Query::default(),
            kind => parse_query(query, kind)?,
        };
        // Every body is read (and bounded) before routing: past the limit nothing arrives,
        // whether or not the route takes a body.
        if body.len() > MAX_BODY {
            return None;
        }
        return (r.command)(&segment, body, &q);
    }
    None
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
