//! A VM's serial console over a WebSocket (`GET /vms/{name}/console/ws`), for the terminal of
//! its page (`assets/console.js`, xterm.js).
//!
//! The socket is the page's session's: refused (403) when the browser says it comes from
//! another site (its `Origin`), and when the session's token may not read the console (the
//! role of `GET /api/v1/vms/{name}/console`). Then the console is polled through
//! [`ConsoleApi`] every [`POLL`] from the offset the last answer ended at (each byte comes
//! once), and what the browser sends is typed on the serial port (when the token has the role
//! of `POST /api/v1/vms/{name}/console/input`). The session is checked again every
//! [`RECHECK`]: a logout or a revoked token ends the socket.
//!
//! What the server sends, text frames with one JSON object each:
//! - `{"type":"output","text":"…"}`: the console's next bytes;
//! - `{"type":"status","input":true|false,"message":"…"}`: whether typing works now (and
//!   why not);
//! - `{"type":"error","message":"…"}`: a read or a keystroke failed (the socket stays).
//!
//! What the browser sends: text frames, the keystrokes as a terminal sends them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use vinfra_types::auth::{Actor, Role};
use vinfra_types::{PowerState, VmSummary};

use super::guard::{cross_site, Signed};
use super::session::Sessions;
use super::state::WebState;
use super::views::{bad_name, error_page};
use crate::interface::access::required_role;
use crate::interface::{Command, ConsoleApi, Reply};

/// How often the console is read.
pub const POLL: Duration = Duration::from_millis(200);

/// How often the session is checked again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Most bytes one read returns (a slow browser catches up over several).
const CHUNK: u64 = 64 * 1024;

/// Largest message the browser may send (a paste is typed in pieces the agent takes).
const MAX_MESSAGE: usize = 64 * 1024;

/// The role reading the console needs (the API's route's).
const READ_ROUTE: (&str, &str) = ("GET", "/api/v1/vms/{name}/console");

/// The role typing on it needs.
const TYPE_ROUTE: (&str, &str) = ("POST", "/api/v1/vms/{name}/console/input");

/// `GET /vms/{name}/console/ws`: the WebSocket of the VM's serial console.
pub async fn socket<A: ConsoleApi>(
    s: Signed<A>,
    State(state): State<WebState<A>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if cross_site(&headers, &uri) {
        return error_page(
            StatusCode::FORBIDDEN,
            "cross-site WebSocket refused: the serial console opens from this console's pages only",
        );
    }
    if let Err(refused) = s.require(READ_ROUTE.0, READ_ROUTE.1) {
        return refused.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    if let Err((status, detail)) = vm(&s.console, &s.actor(), &name).await {
        return error_page(status, &detail);
    }
    let link = Link {
        console: s.console.clone(),
        sessions: state.sessions.clone(),
        session: s.id.clone(),
        actor: s.actor(),
        name,
        may_type: s.may(TYPE_ROUTE.0, TYPE_ROUTE.1),
    };
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| link.run(socket))
}

/// The VM `name`, as the session sees it; or the status and the words of the refusal.
async fn vm<A: ConsoleApi>(
    console: &Arc<A>,
    actor: &Actor,
    name: &str,
) -> Result<VmSummary, (StatusCode, String)> {
    let command = Command::ShowVm { name: name.into() };
    match console.execute(actor.clone(), command).await {
        Ok(Reply::Vm(vm)) => Ok(vm),
        Ok(other) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected reply {other:?}"),
        )),
        Err(e) => Err((
            StatusCode::from_u16(e.kind().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            vinfra_types::error::chain(&e),
        )),
    }
}

/// One open socket: whose, and for which VM.
struct Link<A> {
    console: Arc<A>,
    sessions: Arc<Sessions>,
    session: String,
    actor: Actor,
    name: String,
    may_type: bool,
}

/// Where the reading is: the host whose log it reads and the offset it ends at.
#[derive(Default)]
struct Cursor {
    host: Option<String>,
    from: Option<u64>,
    input: Option<bool>,
    error: Option<String>,
}

impl<A: ConsoleApi> Link<A> {
    async fn run(mut self, socket: WebSocket) {
        let (mut tx, mut rx) = socket.split();
        let mut cursor = Cursor::default();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.tick().await;
        loop {
            let out = tokio::select! {
                _ = poll.tick() => self.read(&mut cursor).await,
                _ = recheck.tick() => match self.sessions.holder(&*self.console, &self.session, false) {
                    Some((holder, _)) => {
                        // A ping: traffic that keeps a quiet console's connection from the
                        // listener's idle close (the browser's pong answers it).
                        if tx.send(Message::Ping(Default::default())).await.is_err() {
                            return;
                        }
                        let role = |r: (&str, &str)| required_role(r.0, r.1).unwrap_or(Role::Admin);
                        if holder.role < role(READ_ROUTE) {
                            break;
                        }
                        let may_type = holder.role >= role(TYPE_ROUTE);
                        if may_type != self.may_type {
                            // The status says so with the next read.
                            self.may_type = may_type;
                            cursor.input = None;
                        }
                        Vec::new()
                    }
                    None => break,
                },
                msg = rx.next() => match msg {
                    Some(Ok(Message::Text(text))) => self.type_in(text.as_str()).await,
                    Some(Ok(Message::Binary(bytes))) => {
                        self.type_in(&String::from_utf8_lossy(&bytes)).await
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => Vec::new(),
                },
            };
            for m in out {
                if tx.send(Message::Text(m.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: 4001,
                reason: "the session ended: log in again".into(),
            })))
            .await;
    }

    /// The console's next bytes, and a status when typing starts or stops working.
    async fn read(&self, c: &mut Cursor) -> Vec<serde_json::Value> {
        let command = Command::ConsoleLog {
            name: self.name.clone(),
            bytes: Some(CHUNK),
            from: c.from,
        };
        let log = match self.console.execute(self.actor.clone(), command).await {
            Ok(Reply::Console(log)) => log,
            Ok(other) => return self.failed(c, format!("unexpected reply {other:?}")),
            Err(e) => return self.failed(c, vinfra_types::error::chain(&e)),
        };
        c.error = None;
        if c.host.as_ref().is_some_and(|h| *h != log.host) {
            // The VM moved: its new host's log starts over, from its tail.
            c.host = Some(log.host);
            c.from = None;
            return Vec::new();
        }
        c.host = Some(log.host);
        c.from = Some(log.end);
        let mut out = Vec::new();
        if !log.text.is_empty() {
            out.push(json!({"type": "output", "text": log.text}));
        }
        if c.input != Some(log.input) {
            c.input = Some(log.input);
            out.push(self.status(log.input).await);
        }
        out
    }

    /// An error, sent once until the reading works again.
    fn failed(&self, c: &mut Cursor, message: String) -> Vec<serde_json::Value> {
        if c.error.as_ref() == Some(&message) {
            return Vec::new();
        }
        c.error = Some(message.clone());
        vec![json!({"type": "error", "message": message})]
    }

    /// Whether typing works, and why not.
    async fn status(&self, input: bool) -> serde_json::Value {
        let message = if input && self.may_type {
            String::new()
        } else if input {
            "read only: typing on the serial console needs role operator".to_string()
        } else {
            match vm(&self.console, &self.actor, &self.name).await {
                Ok(vm) if vm.state != PowerState::Running => {
                    let state = format!("{:?}", vm.state).to_lowercase();
                    format!(
                        "VM '{}' is {state}: its serial console shows what it printed and takes \
                         no input until it runs",
                        self.name
                    )
                }
                Ok(_) => "this VM's serial console takes no input until it restarts (its QEMU \
                          was started by an older agent)"
                    .to_string(),
                Err((_, detail)) => detail,
            }
        };
        json!({"type": "status", "input": input && self.may_type, "message": message})
    }

    /// Types `text` (in pieces the agent takes at once).
    async fn type_in(&self, text: &str) -> Vec<serde_json::Value> {
        if !self.may_type {
            return vec![json!({"type": "error",
                "message": "typing on the serial console needs role operator"})];
        }
        for piece in pieces(text, vinfra_proto::MAX_CONSOLE_INPUT) {
            let command = Command::ConsoleInput {
                name: self.name.clone(),
                text: piece.to_string(),
            };
            if let Err(e) = self.console.execute(self.actor.clone(), command).await {
                let message = vinfra_types::error::chain(&e);
                return vec![json!({"type": "error", "message": message})];
            }
        }
        Vec::new()
    }
}

/// `text` in pieces of at most `max` bytes, cut between characters.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn long_input_is_cut_between_characters() {
        assert_eq!(pieces("", 4), Vec::<&str>::new());
        assert_eq!(pieces("abcdef", 4), vec!["abcd", "ef"]);
        assert_eq!(pieces("ab€", 4), vec!["ab", "€"]);
    }
}
