//! The connection to the console: joining (once), then a mutual-TLS session that sends `Hello`,
//! a `Heartbeat` every heartbeat interval, a `Report` every report interval (and one right after
//! each command that may change a VM), the switch's `Flows` every 10 s, and answers `Request`s; retries the join and reconnects
//! forever with backoff capped at [`BACKOFF_MAX`].
//!
//! The heartbeat is the host's liveness at the console, so it waits on nothing a VM, QMP or the
//! datastore can hold up: its own task, which takes neither the reporter's order lock nor
//! anything of the manager, queues it on the session's writer. The console acknowledges each at
//! once; the reader notes the acknowledgement in the manager's [`ConsoleContact`]
//! ([`Manager::contact`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use vinfra_proto::frame::{FrameError, FramedJson};
use vinfra_proto::pki::{self, JoinToken, PkiError};
use vinfra_proto::{
    AgentMessage, CommandError, CommandReply, ConsoleMessage, HostReport, PROTOCOL_VERSION,
};
use vinfra_types::error::Chain;
use vinfra_types::HostCapacity;

use crate::contact::{ConsoleContact, Heartbeats};
use crate::guard::GuardLink;
use crate::manager::Manager;

/// Default time between two reports (`vinfra agent --report-interval`).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Default time between two heartbeats (`vinfra agent --heartbeat`): the `heartbeat` of
/// `vinfra_ha::HaTimings`; the console's default heartbeat timeout is three of them.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How often a session reports and sends heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTiming {
    /// Time between two periodic reports.
    pub report_interval: Duration,
    /// Time between two heartbeats.
    pub heartbeat: Duration,
}

impl Default for SessionTiming {
    fn default() -> Self {
        SessionTiming {
            report_interval: REPORT_INTERVAL,
            heartbeat: HEARTBEAT,
        }
    }
}

/// Errors of the console connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// TCP or TLS failed
    #[error("cannot reach the console at {addr}")]
    Connect {
        /// Console address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// certificates, keys or the join token were refused
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// the framed connection failed
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// the console refused to let this host join
    #[error("the console refused the join: {0}")]
    JoinRefused(String),
    /// the console answered something unexpected
    #[error("unexpected message from the console: {0}")]
    Unexpected(String),
    /// the host has no certificate yet and no join token was given
    #[error("this host has not joined a cluster yet: give it a join token")]
    NotJoined,
    /// credentials could not be stored or read
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The host's TLS identity, PEM.
#[derive(Clone)]
pub struct Credentials {
    /// The cluster CA.
    pub ca_pem: String,
    /// This host's certificate.
    pub cert_pem: String,
    /// This host's key.
    pub key_pem: String,
}

/// What every report carries besides the VMs and usage.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Host name.
    pub host: String,
    /// Address migrations reach this host at.
    pub address: String,
    /// QEMU version.
    pub qemu_version: String,
    /// Capacity (with overrides applied).
    pub capacity: HostCapacity,
    /// The host's guard (`vinfra agent --guard`), asked for its state in every report.
    pub guard: Option<Arc<GuardLink>>,
}

const CA_FILE: &str = "ca.crt";
const CERT_FILE: &str = "host.crt";
const KEY_FILE: &str = "host.key";

fn read_opt(path: &Path) -> Result<Option<String>, ConnectionError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConnectionError::Io {
            path: path.into(),
            source,
        }),
    }
}

fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// The stored credentials, or joins with `join_token` and stores them.
pub async fn ensure_credentials(
    data_dir: &Path,
    console: &str,
    host: &str,
    join_token: Option<&str>,
) -> Result<Credentials, ConnectionError> {
    let (ca, cert, key) = (
        data_dir.join(CA_FILE),
        data_dir.join(CERT_FILE),
        data_dir.join(KEY_FILE),
    );
    if let (Some(ca_pem), Some(cert_pem), Some(key_pem)) =
        (read_opt(&ca)?, read_opt(&cert)?, read_opt(&key)?)
    {
        return Ok(Credentials {
            ca_pem,
            cert_pem,
            key_pem,
        });
    }
    let token = JoinToken::parse(join_token.ok_or(ConnectionError::NotJoined)?)?;
    let ca_pem = pki::fetch_pinned_ca(console, host_of(console), &token.ca_fingerprint).await?;
    let (key_pem, csr_pem) = pki::generate_host_key_and_csr(host)?;
    let config = pki::client_config(&ca_pem, None)?;
    let mut conn = FramedJson::new(tls_connect(console, config).await?);
    conn.send(&AgentMessage::Join {
        token: token.to_string(),
        host: host.into(),
        csr_pem,
    })
    .await?;
    let cert_pem = match conn.recv::<ConsoleMessage>().await? {
        ConsoleMessage::Joined {
            cert_pem,
            ca_pem: _,
        } => cert_pem,
        ConsoleMessage::JoinRefused { reason } => return Err(ConnectionError::JoinRefused(reason)),
        other => return Err(ConnectionError::Unexpected(format!("{other:?}"))),
    };
    let store = |path: &Path, text: &str, mode: u32| -> Result<(), ConnectionError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|source| ConnectionError::Io {
                path: tmp.clone(),
                source,
            })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| ConnectionError::Io {
                path: path.into(),
                source,
            })
    };
    store(&key, &key_pem, 0o600)?;
    store(&cert, &cert_pem, 0o644)?;
    store(&ca, &ca_pem, 0o644)?;
    tracing::info!("joined the cluster as {host}");
    Ok(Credentials {
        ca_pem,
        cert_pem,
        key_pem,
    })
}

async fn tls_connect(
    console: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ConnectionError> {
    let name = pki::server_name_for(console)?;
    let err = |source| ConnectionError::Connect {
        addr: console.into(),
        source,
    };
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(console).await.map_err(err)?;
        // Replies are small and follow other small messages (reports, events): with Nagle's
        // algorithm one waits for the console's delayed ACK of the one before, 40 ms, on the
        // path of every request (a migration's end was seen 40 ms late). The console's side
        // sets the same.
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(err)
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| {
            err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        })?
}

/// A full report now: the VMs (each QEMU waited on for a bound) and the guard (a second at
/// most), asked at once.
pub async fn host_report(m: &Manager, info: &HostInfo) -> HostReport {
    let guard = async {
        match &info.guard {
            Some(link) => link.view().await,
            None => None,
        }
    };
    let (vms, guard) = tokio::join!(m.observe_all(), guard);
    let usage = m
        .sampler()
        .lock()
        .ok()
        .and_then(|mut s| s.host_usage(info.capacity.cores).ok())
        .unwrap_or_default();
    HostReport {
        host: info.host.clone(),
        address: info.address.clone(),
        accel: m.accel(),
        qemu_version: info.qemu_version.clone(),
        capacity: info.capacity,
        usage,
        vms,
        trunk: m
            .switch()
            .and_then(|l| l.attachment().trunk_interface.clone()),
        underlay_mtu: m.switch().map_or(vinfra_types::network::UNDERLAY_MTU, |l| {
            u32::from(l.underlay_mtu())
        }),
        guard,
    }
}

/// Sends reports in the order their contents were read: a report taken before a command finished
/// can never overtake (and so overwrite at the console) one taken after it.
#[derive(Clone)]
struct Reporter {
    m: Arc<Manager>,
    info: HostInfo,
    out: mpsc::Sender<AgentMessage>,
    order: Arc<tokio::sync::Mutex<()>>,
}

impl Reporter {
    /// Reads a full report now and queues it; false when the connection is gone.
    async fn send(&self) -> bool {
        let _order = self.order.lock().await;
        let report = host_report(&self.m, &self.info).await;
        self.out.send(AgentMessage::Report { report }).await.is_ok()
    }
}

/// True when, after `command` answered `result`, the console should get a fresh report: the
/// command may have changed a VM, or an outgoing migration was seen reaching its end.
fn report_after(changes_state: bool, result: &Result<CommandReply, CommandError>) -> bool {
    changes_state || matches!(result, Ok(CommandReply::Migration { status }) if status.is_final())
}

/// Sends a heartbeat every `period` through `out`, noting each in `beats`, until the session's
/// writer is gone. Waits on nothing else.
async fn send_heartbeats(
    out: mpsc::Sender<AgentMessage>,
    beats: Arc<Heartbeats>,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        tick.tick().await;
        seq += 1;
        beats.sent(seq, Instant::now());
        if out.send(AgentMessage::Heartbeat { seq }).await.is_err() {
            return;
        }
    }
}

/// One session over an established stream: `Hello`, then heartbeats, reports and request
/// handling until the connection fails (or the session is dropped: its tasks end with it).
/// After every command that may change a VM the agent sends a fresh `Report` before the
/// `Response`, so the console never holds an observed state older than the command. Heartbeat
/// acknowledgements move the manager's [`ConsoleContact`].
pub async fn session<S>(
    stream: S,
    m: Arc<Manager>,
    info: &HostInfo,
    timing: SessionTiming,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = FramedJson::new(stream).split();
    tx.send(&AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        report: host_report(&m, info).await,
    })
    .await?;
    // Dropped with the session (returned or cancelled): aborts every task below.
    let mut tasks = JoinSet::new();
    let (out_tx, mut out_rx) = mpsc::channel::<AgentMessage>(64);
    tasks.spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if tx.send(&msg).await.is_err() {
                // The reader sees the connection fail.
                return;
            }
        }
    });
    let contact: ConsoleContact = m.contact().clone();
    let heartbeats = Arc::new(Heartbeats::new(contact));
    tasks.spawn(send_heartbeats(
        out_tx.clone(),
        heartbeats.clone(),
        timing.heartbeat,
    ));
    let reports = Reporter {
        m: m.clone(),
        info: info.clone(),
        out: out_tx.clone(),
        order: Arc::default(),
    };
    {
        let reports = reports.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(timing.report_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if !reports.send().await {
                    break;
                }
            }
        });
    }
    // The switch's flows (`flows::send_flows`, one task for the agent's life) come here while
    // this session lasts.
    let _flows = m.flow_sink().attach(out_tx.clone());
    let result = loop {
        match rx.recv::<ConsoleMessage>().await {
            Ok(ConsoleMessage::HeartbeatAck { seq }) => heartbeats.acknowledged(seq),
            Ok(ConsoleMessage::Request { id, command }) => {
                let (m, out, reports) = (m.clone(), out_tx.clone(), reports.clone());
                tokio::spawn(async move {
                    let changes_state = command.changes_vm_state();
                    let result = crate::handler::handle(&m, command).await;
                    if report_after(changes_state, &result) {
                        reports.send().await;
                    }
                    let _ = out.send(AgentMessage::Response { id, result }).await;
                });
            }
            Ok(other) => break Err(ConnectionError::Unexpected(format!("{other:?}"))),
            Err(e) => break Err(e.into()),
        }
    };
    tasks.abort_all();
    result
}

/// First wait before reconnecting.
pub const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Doubles a backoff, up to [`BACKOFF_MAX`].
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(BACKOFF_MAX)
}

impl ConnectionError {
    /// True when trying again later may succeed (the console is down or unreachable, or the
    /// connection broke); false when the answer will not change (refused join, wrong pin, bad
    /// credentials).
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectionError::Connect { .. } | ConnectionError::Frame(_) => true,
            ConnectionError::Pki(e) => {
                matches!(e, PkiError::Connect { .. } | PkiError::Timeout { .. })
            }
            _ => false,
        }
    }
}

/// Like [`ensure_credentials`], but waits for the console: while it cannot be reached the join
/// is retried with backoff (at most [`BACKOFF_MAX`] apart), forever. A refused join or a wrong
/// CA pin ends it.
pub async fn ensure_credentials_retrying(
    data_dir: &Path,
    console: &str,
    host: &str,
    join_token: Option<&str>,
) -> Result<Credentials, ConnectionError> {
    let mut backoff = BACKOFF_START;
    let mut attempts: u64 = 0;
    loop {
        match ensure_credentials(data_dir, console, host, join_token).await {
            Ok(c) => return Ok(c),
            Err(e) if e.is_transient() => {
                attempts += 1;
                tracing::warn!(
                    attempt = attempts,
                    "joining the cluster: {}; retrying in {backoff:?}",
                    Chain(&e)
                );
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}

/// Connects with `creds`, runs sessions, and reconnects forever: the first retry after
/// [`BACKOFF_START`], doubling up to [`BACKOFF_MAX`]; a successful connection resets the backoff.
pub async fn connect_loop(
    console: &str,
    creds: &Credentials,
    m: Arc<Manager>,
    info: &HostInfo,
    timing: SessionTiming,
) -> Result<(), ConnectionError> {
    let config = pki::client_config(&creds.ca_pem, Some((&creds.cert_pem, &creds.key_pem)))?;
    let mut backoff = BACKOFF_START;
    let mut failures: u64 = 0;
    loop {
        match tls_connect(console, config.clone()).await {
            Ok(stream) => {
                tracing::info!("connected to the console at {console}");
                backoff = BACKOFF_START;
                failures = 0;
                match session(stream, m.clone(), info, timing).await {
                    Ok(()) => tracing::warn!("console at {console} closed the connection"),
                    Err(e) => tracing::warn!("console connection lost: {}", Chain(&e)),
                }
            }
            Err(e) => {
                failures += 1;
                // Every failure while it is short, then one line in ten, so a long outage stays
                // visible without flooding the log.
                if failures <= 3 || failures.is_multiple_of(10) {
                    tracing::warn!(
                        attempt = failures,
                        "{}; retrying every {:?} at most",
                        Chain(&e),
                        BACKOFF_MAX
                    );
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}
