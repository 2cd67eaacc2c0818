//! The QMP connection: greeting, capabilities, id-matched commands, buffered events, and events
//! broadcast to subscribers ([`Qmp::subscribe`]).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, oneshot, Mutex, Notify};

/// How long a command waits for its answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Events kept for [`Qmp::next_event`]; older ones are dropped first.
const EVENT_BUFFER: usize = 1024;

/// Events a subscriber may fall behind by before it misses some ([`Qmp::subscribe`]).
const SUBSCRIBER_BUFFER: usize = 64;

/// Longest line accepted from QEMU (QMP replies are small; this guards against a runaway peer).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Most events read before the greeting (left over from the connection before) before the
/// connection is given up on.
const MAX_EVENTS_BEFORE_GREETING: usize = 64;

/// What can go wrong talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// the socket could not be opened, read or written
    #[error("QMP socket")]
    Io(#[from] std::io::Error),
    /// QEMU sent something that is not QMP
    #[error("QMP protocol: {0}")]
    Protocol(String),
    /// QEMU refused the command
    #[error("QMP {class}: {desc}")]
    Qmp {
        /// QMP error class, e.g. `GenericError`, `CommandNotFound`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },
    /// the connection closed (QEMU exited or closed the socket)
    #[error("QMP connection closed")]
    Closed,
    /// the socket is served by another process than the QEMU expected
    #[error("QMP socket is served by process {found:?}, not by QEMU {expected}")]
    WrongPeer {
        /// The QEMU's pid.
        expected: u32,
        /// The pid the kernel gives for the socket's listener, if any.
        found: Option<i32>,
    },
    /// no answer within the time allowed
    #[error("QMP command '{command}' got no answer within {timeout:?}")]
    Timeout {
        /// The command that timed out.
        command: String,
        /// How long it waited.
        timeout: Duration,
    },
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QmpEvent {
    /// Event name, e.g. `STOP`, `SHUTDOWN`, `MIGRATION`.
    pub event: String,
    /// Event payload (`null` when the event has none).
    #[serde(default)]
    pub data: Value,
    /// QEMU's timestamp of the event.
    #[serde(default)]
    pub timestamp: Value,
}

type Reply = Result<Value, QmpError>;

#[derive(Default)]
struct Shared {
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    events: VecDeque<QmpEvent>,
    closed: bool,
    /// Every event also goes here; `None` once the connection closed (so subscribers see the
    /// channel close).
    subscribers: Option<broadcast::Sender<QmpEvent>>,
}

/// A connected QMP client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Qmp {
    writer: Mutex<OwnedWriteHalf>,
    shared: Arc<StdMutex<Shared>>,
    event_notify: Arc<Notify>,
    next_id: AtomicU64,
    greeting: Value,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock(shared: &StdMutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A poisoned lock only means another task panicked while holding it; the data stays usable.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Qmp {
    /// Connects to QEMU's QMP socket at `path`, reads the greeting and sends `qmp_capabilities`.
    /// Gives up after `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let fut = async {
            let stream = UnixStream::connect(path).await?;
            Self::handshake(stream).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(QmpError::Timeout {
                command: "connect".into(),
                timeout,
            }),
        }
    }

    /// [`Qmp::connect`] to the QMP socket of process `pid` only: a socket whose listener is
    /// another process (the kernel's peer credentials) is refused before a byte is sent. The
    /// socket's directory may be writable by a confined QEMU, which could put another VM's
    /// socket in its place.
    pub async fn connect_to(path: &Path, pid: u32, timeout: Duration) -> Result<Qmp, QmpError> {
        let fut = async {
            let stream = UnixStream::connect(path).await?;
            let found = stream.peer_cred()?.pid();
            if found != i32::try_from(pid).ok() {
                return Err(QmpError::WrongPeer {
                    expected: pid,
                    found,
                });
            }
            Self::handshake(stream).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(QmpError::Timeout {
                command: "connect".into(),
                timeout,
            }),
        }
    }

    /// Speaks QMP over an already connected stream (greeting, then `qmp_capabilities`).
    pub async fn handshake(stream: UnixStream) -> Result<Qmp, QmpError> {
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        // QEMU may first flush what it had queued for the client before (its events, seen on a
        // lab host as a `RESUME` ahead of the greeting when one connection closed as the next
        // one came): events before the greeting are skipped, a few of them.
        let mut skipped = 0;
        let greeting = loop {
            let msg = match read_json_line(&mut reader).await? {
                Some(v) => v,
                None => return Err(QmpError::Closed),
            };
            if msg.get("QMP").is_some() {
                break msg;
            }
            if msg.get("event").is_none() || skipped >= MAX_EVENTS_BEFORE_GREETING {
                return Err(QmpError::Protocol(format!(
                    "expected a QMP greeting, got {msg}"
                )));
            }
            skipped += 1;
        };
        let (subscribers, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let shared = Arc::new(StdMutex::new(Shared {
            subscribers: Some(subscribers),
            ..Shared::default()
        }));
        let event_notify = Arc::new(Notify::new());
        let reader = tokio::spawn(read_loop(reader, shared.clone(), event_notify.clone()));
        let qmp = Qmp {
            writer: Mutex::new(write),
            shared,
            event_notify,
            next_id: AtomicU64::new(1),
            greeting,
            reader,
        };
        qmp.execute("qmp_capabilities", Value::Null).await?;
        Ok(qmp)
    }

    /// QEMU's greeting (`{"QMP": {"version": …, "capabilities": …}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Every event from now on, independently of [`Qmp::next_event`] (which takes each event
    /// once): a receiver that falls more than 64 events behind gets `Lagged`; the channel
    /// closes with the connection (at once when it is closed already).
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        match &lock(&self.shared).subscribers {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// True once the connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).closed
    }

    /// Runs `command` with `args` (an object, or `null` for none) and returns its `return` value.
    /// Waits at most [`DEFAULT_TIMEOUT`].
    pub async fn execute(&self, command: &str, args: Value) -> Result<Value, QmpError> {
        self.execute_timeout(command, args, DEFAULT_TIMEOUT).await
    }

    /// Like [`Qmp::execute`] with an explicit timeout.
    pub async fn execute_timeout(
        &self,
        command: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        if !(args.is_null() || args.is_object()) {
            return Err(QmpError::Protocol(format!(
                "arguments of '{command}' must be an object, got {args}"
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut shared = lock(&self.shared);
            if shared.closed {
                return Err(QmpError::Closed);
            }
            shared.pending.insert(id, tx);
        }
        let mut msg = json!({ "execute": command, "id": id });
        if !args.is_null() {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let sent = {
            let mut w = self.writer.lock().await;
            match tokio::time::timeout(timeout, w.write_all(line.as_bytes())).await {
                Ok(r) => r.map_err(QmpError::from),
                Err(_) => Err(QmpError::Timeout {
                    command: command.into(),
                    timeout,
                }),
            }
        };
        if let Err(e) = sent {
            lock(&self.shared).pending.remove(&id);
            return Err(match e {
                QmpError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe => QmpError::Closed,
                e => e,
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(QmpError::Closed),
            Err(_) => {
                lock(&self.shared).pending.remove(&id);
                Err(QmpError::Timeout {
                    command: command.into(),
                    timeout,
                })
            }
        }
    }

    /// The oldest buffered event, if any, without waiting.
    pub fn try_next_event(&self) -> Option<QmpEvent> {
        lock(&self.shared).events.pop_front()
    }

    /// Waits for the next event. `None` once the connection is closed and no events are left.
    pub async fn next_event(&self) -> Option<QmpEvent> {
        loop {
            let notified = self.event_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut shared = lock(&self.shared);
                if let Some(e) = shared.events.pop_front() {
                    return Some(e);
                }
                if shared.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Waits up to `timeout` for an event named `name`, discarding the others.
    pub async fn wait_event(&self, name: &str, timeout: Duration) -> Result<QmpEvent, QmpError> {
        let fut = async {
            while let Some(e) = self.next_event().await {
                if e.event == name {
                    return Ok(e);
                }
            }
            Err(QmpError::Closed)
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(QmpError::Timeout {
                command: format!("wait for event {name}"),
                timeout,
            }),
        }
    }

    /// Waits until QEMU closes the connection (e.g. after `quit`), at most `timeout`.
    pub async fn wait_closed(&self, timeout: Duration) -> Result<(), QmpError> {
        let fut = async { while self.next_event().await.is_some() {} };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| QmpError::Timeout {
                command: "wait for close".into(),
                timeout,
            })
    }
}

async fn read_json_line(reader: &mut BufReader<OwnedReadHalf>) -> Result<Option<Value>, QmpError> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut *reader)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with('\n') && n >= MAX_LINE {
            return Err(QmpError::Protocol(format!(
                "line longer than {MAX_LINE} bytes"
            )));
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        return serde_json::from_str(trimmed)
            .map(Some)
            .map_err(|e| QmpError::Protocol(format!("not JSON ({e}): {}", shorten(trimmed))));
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(200).collect()
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    shared: Arc<StdMutex<Shared>>,
    notify: Arc<Notify>,
) {
    let end: Option<QmpError> = loop {
        let msg = match read_json_line(&mut reader).await {
            Ok(Some(v)) => v,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        if msg.get("event").is_some() {
            match serde_json::from_value::<QmpEvent>(msg) {
                Ok(ev) => {
                    let mut s = lock(&shared);
                    if s.events.len() >= EVENT_BUFFER {
                        s.events.pop_front();
                    }
                    if let Some(tx) = &s.subscribers {
                        // No subscriber is not an error.
                        let _ = tx.send(ev.clone());
                    }
                    s.events.push_back(ev);
                    drop(s);
                    notify.notify_waiters();
                }
                Err(e) => tracing::warn!("malformed QMP event: {e}"),
            }
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::warn!(
                "QMP message without a known id ignored: {}",
                shorten(&msg.to_string())
            );
            continue;
        };
        let reply = if let Some(ret) = msg.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = msg.get("error") {
            Err(QmpError::Qmp {
                class: err
                    .get("class")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown")
                    .to_string(),
                desc: err
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            })
        } else {
            Err(QmpError::Protocol(format!(
                "reply without return or error: {}",
                shorten(&msg.to_string())
            )))
        };
        let waiter = lock(&shared).pending.remove(&id);
        if let Some(tx) = waiter {
            let _ = tx.send(reply);
        }
    };
    if let Some(e) = &end {
        // The error and its sources on one line (this crate stands alone: no shared printer).
        let chain: Vec<String> =
            std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect();
        tracing::warn!("QMP connection dropped: {}", chain.join(": "));
    }
    let pending = {
        let mut s = lock(&shared);
        s.closed = true;
        s.subscribers = None;
        std::mem::take(&mut s.pending)
    };
    for (_, tx) in pending {
        let _ = tx.send(Err(match &end {
            Some(QmpError::Protocol(p)) => QmpError::Protocol(p.clone()),
            _ => QmpError::Closed,
        }));
    }
    notify.notify_waiters();
}
