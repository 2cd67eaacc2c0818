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
//!
//! Certificate renewal: once [`pki::RENEW_AT`] of the host certificate's lifetime passed (or
//! when the console asks, during a CA rotation), the session sends `Renew` with a CSR for a
//! fresh key; the console's `Renewed` certificate is checked, stored with its key and the CA
//! bundle ([`store_renewed`]: staged, then renamed, a crash leaves the old set or the new) and
//! used from the next connection on. The open connection goes on with the old certificate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;
use vinfra_proto::frame::{FrameError, FramedJson};
use vinfra_proto::pki::{self, JoinToken, PkiError};
use vinfra_proto::{
    AgentMessage, CommandError, CommandReply, ConsoleMessage, HostReport, PROTOCOL_VERSION,
};
use vinfra_types::error::Chain;
use vinfra_types::vm::VmNetBytes;
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
    /// The cluster CA (during a CA rotation, a bundle of the old and the new).
    pub ca_pem: String,
    /// This host's certificate.
    pub cert_pem: String,
    /// This host's key.
    pub key_pem: String,
    /// The data directory they are stored in (renewals are written there); `None`: kept in
    /// memory only.
    pub dir: Option<PathBuf>,
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
    /// What the host's QEMU runs (said in the Hello); `None` when QEMU could not say.
    pub platform: Option<vinfra_types::HostPlatform>,
    /// The host's guard (`vinfra agent --guard`), asked for its state in every report.
    pub guard: Option<Arc<GuardLink>>,
}

const CA_FILE: &str = "ca.crt";
const CERT_FILE: &str = "host.crt";
const KEY_FILE: &str = "host.key";
/// A renewal is staged in these before they replace the three above; the staged certificate,
/// written last, is the mark that the set is complete.
const STAGED_CA: &str = "renew-ca.crt";
const STAGED_CERT: &str = "renew-host.crt";
const STAGED_KEY: &str = "renew-host.key";

/// Writes `text` to `path` with `mode` through a temporary file, an fsync, a rename and an
/// fsync of the directory.
fn store_file(path: &Path, text: &str, mode: u32) -> Result<(), ConnectionError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    // `<name>.tmp`, its own for each file (`host.key` and `host.crt` must not share one), made
    // anew: a leftover of a crash, perhaps with a looser mode, is never written into.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConnectionError::Io { path, source }
    };
    crate::files::blocking(|| {
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(path)
    })
}

fn sync_dir(path: &Path) -> Result<(), ConnectionError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ConnectionError::Io {
            path: dir.into(),
            source,
        })
}

/// Finishes a renewal a crash interrupted: when the staged certificate (written last) is
/// there, the staged files replace the live ones; otherwise stray staged files go.
fn finish_staged(data_dir: &Path) -> Result<(), ConnectionError> {
    let staged_cert = data_dir.join(STAGED_CERT);
    let pairs = [
        (data_dir.join(STAGED_KEY), data_dir.join(KEY_FILE)),
        (data_dir.join(STAGED_CA), data_dir.join(CA_FILE)),
        (staged_cert.clone(), data_dir.join(CERT_FILE)),
    ];
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConnectionError::Io { path, source }
    };
    if staged_cert.exists() {
        for (from, to) in &pairs {
            if from.exists() {
                std::fs::rename(from, to).map_err(io(to))?;
            }
        }
        sync_dir(&staged_cert)?;
        tracing::info!("a renewed certificate staged before a restart is now in use");
    } else {
        for (from, _) in &pairs {
            match std::fs::remove_file(from) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io(from)(source)),
            }
        }
    }
    Ok(())
}

/// Stores a renewed certificate, its key and the CA bundle in `data_dir`: each staged (fsynced)
/// first, the certificate last, then all renamed over the live files. A crash before the
/// staged certificate is complete keeps the old set; after it, the next start finishes the
/// renames ([`ensure_credentials`]).
pub fn store_renewed(data_dir: &Path, creds: &Credentials) -> Result<(), ConnectionError> {
    store_file(&data_dir.join(STAGED_KEY), &creds.key_pem, 0o600)?;
    store_file(&data_dir.join(STAGED_CA), &creds.ca_pem, 0o644)?;
    store_file(&data_dir.join(STAGED_CERT), &creds.cert_pem, 0o644)?;
    crate::files::blocking(|| finish_staged(data_dir))
}

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
    finish_staged(data_dir)?;
    if let (Some(ca_pem), Some(cert_pem), Some(key_pem)) =
        (read_opt(&ca)?, read_opt(&cert)?, read_opt(&key)?)
    {
        return Ok(Credentials {
            ca_pem,
            cert_pem,
            key_pem,
            dir: Some(data_dir.to_path_buf()),
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
    store_file(&key, &key_pem, 0o600)?;
    store_file(&cert, &cert_pem, 0o644)?;
    store_file(&ca, &ca_pem, 0o644)?;
    tracing::info!("joined the cluster as {host}");
    Ok(Credentials {
        ca_pem,
        cert_pem,
        key_pem,
        dir: Some(data_dir.to_path_buf()),
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

/// Longest wait for the switch's counters in a report (past it the report's VMs have no `net`).
pub const REPORT_SWITCH_BOUND: Duration = Duration::from_millis(300);

/// Each VM's traffic through its NICs' ports, summed from the switch's counters (seen from the
/// VM: what the port sent is what the VM received); empty without a switch or an answer within
/// [`REPORT_SWITCH_BOUND`].
async fn vm_traffic(m: &Manager) -> HashMap<Uuid, VmNetBytes> {
    let Some(link) = m.switch().cloned() else {
        return HashMap::new();
    };
    let read = tokio::task::spawn_blocking(move || link.counters_with_view());
    let Ok(Ok(Ok((_, named)))) = tokio::time::timeout(REPORT_SWITCH_BOUND, read).await else {
        return HashMap::new();
    };
    let mut by_vm: HashMap<Uuid, VmNetBytes> = HashMap::new();
    for p in &named.ports {
        let t = by_vm.entry(p.vm_id).or_default();
        t.rx_bytes = t.rx_bytes.saturating_add(p.traffic.tx_bytes);
        t.tx_bytes = t.tx_bytes.saturating_add(p.traffic.rx_bytes);
    }
    by_vm
}

/// A full report now: the VMs (each QEMU waited on for a bound), their NICs' traffic (the
/// switch's counters, 300 ms at most) and the guard (a second at most), asked at once.
pub async fn host_report(m: &Manager, info: &HostInfo) -> HostReport {
    let guard = async {
        match &info.guard {
            Some(link) => link.view().await,
            None => None,
        }
    };
    let (mut vms, guard, traffic) = tokio::join!(m.observe_all(), guard, vm_traffic(m));
    for vm in &mut vms {
        vm.net = traffic.get(&vm.id).copied();
    }
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

    /// Sends `response` at once, then a full report read after it; false when the connection is
    /// gone. Under the order lock, so every report read before the command ended is sent
    /// before the response, and none read before it can follow it.
    async fn send_after(&self, response: AgentMessage) -> bool {
        let _order = self.order.lock().await;
        if self.out.send(response).await.is_err() {
            return false;
        }
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

/// Marks the console's session up while it lives.
struct SessionUp(ConsoleContact);

impl SessionUp {
    fn new(contact: ConsoleContact) -> SessionUp {
        contact.set_session(true);
        SessionUp(contact)
    }
}

impl Drop for SessionUp {
    fn drop(&mut self) {
        self.0.set_session(false);
    }
}

/// One session over an established stream: `Hello`, then heartbeats, reports and request
/// handling until the connection fails (or the session is dropped: its tasks end with it).
/// After every command that may change a VM the agent sends a fresh `Report`: before the
/// `Response`, so the console never holds an observed state older than the command; or, for
/// the commands whose answer carries the VM
/// ([`vinfra_proto::AgentCommand::answer_carries_vm`]), right after it. Heartbeat
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
    session_renewing(stream, m, info, timing, None).await
}

/// [`session`] that also renews the host's certificate held by `renewal` when it is due or the
/// console asks ([`Renewal`]).
pub async fn session_renewing<S>(
    stream: S,
    m: Arc<Manager>,
    info: &HostInfo,
    timing: SessionTiming,
    renewal: Option<Arc<Renewal>>,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = FramedJson::new(stream).split();
    let contact: ConsoleContact = m.contact().clone();
    tx.send(&AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        report: host_report(&m, info).await,
        platform: info.platform.clone(),
    })
    .await?;
    contact.report_sent();
    // Up until the session returns or is dropped (`vinfra_agent_console_connected`).
    let _up = SessionUp::new(contact.clone());
    // Dropped with the session (returned or cancelled): aborts every task below.
    let mut tasks = JoinSet::new();
    let (out_tx, mut out_rx) = mpsc::channel::<AgentMessage>(64);
    let writer_contact = contact.clone();
    tasks.spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if tx.send(&msg).await.is_err() {
                // The reader sees the connection fail.
                return;
            }
            if matches!(msg, AgentMessage::Report { .. }) {
                writer_contact.report_sent();
            }
        }
    });
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
    // The console's answers to `Renew`, for the renewal task; its requests to renew now.
    let (renew_tx, renew_rx) = mpsc::channel::<ConsoleMessage>(2);
    let renew_now = Arc::new(tokio::sync::Notify::new());
    if let Some(renewal) = &renewal {
        tasks.spawn(
            renewal
                .clone()
                .run(out_tx.clone(), renew_rx, renew_now.clone()),
        );
    }
    let result = loop {
        match rx.recv::<ConsoleMessage>().await {
            Ok(ConsoleMessage::HeartbeatAck { seq }) => heartbeats.acknowledged(seq),
            Ok(reply @ (ConsoleMessage::Renewed { .. } | ConsoleMessage::RenewRefused { .. })) => {
                if renew_tx.try_send(reply).is_err() {
                    tracing::warn!("an answer to a certificate renewal nobody waits for");
                }
            }
            Ok(ConsoleMessage::RenewCertificate) => {
                if renewal.is_some() {
                    tracing::info!("the console asks for a certificate renewal");
                    renew_now.notify_one();
                }
            }
            Ok(ConsoleMessage::Request { id, command }) => {
                let (m, out, reports) = (m.clone(), out_tx.clone(), reports.clone());
                tokio::spawn(async move {
                    let changes_state = command.changes_vm_state();
                    let first = command.answer_carries_vm();
                    let result = crate::handler::handle(&m, command).await;
                    let report = report_after(changes_state, &result);
                    let result_ok = result.is_ok();
                    let response = AgentMessage::Response { id, result };
                    if !report {
                        let _ = out.send(response).await;
                    } else if first && result_ok {
                        reports.send_after(response).await;
                    } else {
                        reports.send().await;
                        let _ = out.send(response).await;
                    }
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

/// How long the agent waits for the console's answer to a `Renew`.
pub const RENEW_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a certificate renewal did not happen (it is tried again later).
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    /// the key, the CSR or the certificate sent back was refused
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// the console refused the renewal
    #[error("the console refused: {0}")]
    Refused(String),
    /// the console did not answer in time or the session ended
    #[error("no answer from the console within {} s", RENEW_TIMEOUT.as_secs())]
    NoAnswer,
    /// the renewed certificate could not be stored
    #[error("storing the renewed certificate")]
    Store(#[source] Box<ConnectionError>),
}

/// The host's current credentials and how it renews them: shared by the sessions of one
/// [`connect_loop`], each connection made with the credentials current then.
pub struct Renewal {
    host: String,
    current: std::sync::Mutex<Credentials>,
    /// Renewals done since the start (for tests and logs).
    renewed: std::sync::atomic::AtomicU64,
}

impl Renewal {
    /// Renews `creds` of host `host` (stored in `creds.dir` when it has one).
    pub fn new(host: &str, creds: Credentials) -> Arc<Renewal> {
        Arc::new(Renewal {
            host: host.to_string(),
            current: std::sync::Mutex::new(creds),
            renewed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The credentials current now.
    pub fn current(&self) -> Credentials {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many renewals succeeded.
    pub fn renewed(&self) -> u64 {
        self.renewed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Renews whenever due or asked, for as long as the session lasts (its tasks are aborted
    /// with it): sends `Renew` through `out`, takes the answer from `answers`.
    async fn run(
        self: Arc<Self>,
        out: mpsc::Sender<AgentMessage>,
        mut answers: mpsc::Receiver<ConsoleMessage>,
        now: Arc<tokio::sync::Notify>,
    ) {
        loop {
            let wait = match pki::cert_info_of_pem(&self.current().cert_pem) {
                Ok(info) => info.until_renewal(),
                Err(e) => {
                    tracing::error!("host certificate unreadable: {}", Chain(&e));
                    return;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = now.notified() => {}
            }
            match self.renew_once(&out, &mut answers).await {
                Ok(info) => {
                    self.renewed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        serial = info.serial,
                        "host certificate renewed (used from the next connection on)"
                    );
                }
                Err(e) => {
                    let retry = pki::cert_info_of_pem(&self.current().cert_pem)
                        .map_or(Duration::from_secs(60), |i| i.retry_after());
                    tracing::warn!(
                        "certificate renewal failed: {}; trying again in {retry:?}",
                        Chain(&e)
                    );
                    if matches!(e, RenewalError::NoAnswer) && out.is_closed() {
                        return;
                    }
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// One renewal: a fresh key and CSR, `Renew`, the answer checked and stored.
    async fn renew_once(
        &self,
        out: &mpsc::Sender<AgentMessage>,
        answers: &mut mpsc::Receiver<ConsoleMessage>,
    ) -> Result<pki::CertInfo, RenewalError> {
        let (key_pem, csr_pem) = pki::generate_host_key_and_csr(&self.host)?;
        // An answer left over from an earlier request that timed out is not this one's.
        while answers.try_recv().is_ok() {}
        out.send(AgentMessage::Renew { csr_pem })
            .await
            .map_err(|_| RenewalError::NoAnswer)?;
        let answer = tokio::time::timeout(RENEW_TIMEOUT, answers.recv())
            .await
            .ok()
            .flatten()
            .ok_or(RenewalError::NoAnswer)?;
        let (cert_pem, ca_pem) = match answer {
            ConsoleMessage::Renewed { cert_pem, ca_pem } => (cert_pem, ca_pem),
            ConsoleMessage::RenewRefused { reason } => return Err(RenewalError::Refused(reason)),
            _ => return Err(RenewalError::NoAnswer),
        };
        // The bundle must hold a CA the new certificate verifies under, and the certificate
        // must be this host's, for this key.
        let info = pki::check_host_cert(&cert_pem, &key_pem, &ca_pem, &self.host)?;
        let dir = self.current().dir;
        let renewed = Credentials {
            ca_pem,
            cert_pem,
            key_pem,
            dir: dir.clone(),
        };
        if let Some(dir) = &dir {
            store_renewed(dir, &renewed).map_err(|e| RenewalError::Store(Box::new(e)))?;
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = renewed;
        Ok(info)
    }
}

/// Connects with `creds`, runs sessions, and reconnects forever: the first retry after
/// [`BACKOFF_START`], doubling up to [`BACKOFF_MAX`]; a successful connection resets the backoff.
/// The host's certificate is renewed during sessions when due ([`Renewal`]) and each
/// connection uses the certificate current then.
pub async fn connect_loop(
    console: &str,
    creds: &Credentials,
    m: Arc<Manager>,
    info: &HostInfo,
    timing: SessionTiming,
) -> Result<(), ConnectionError> {
    connect_loop_with(
        console,
        Renewal::new(&info.host, creds.clone()),
        m,
        info,
        timing,
    )
    .await
}

/// [`connect_loop`] with the credentials held by `renewal` (the caller can watch it).
pub async fn connect_loop_with(
    console: &str,
    renewal: Arc<Renewal>,
    m: Arc<Manager>,
    info: &HostInfo,
    timing: SessionTiming,
) -> Result<(), ConnectionError> {
    let mut backoff = BACKOFF_START;
    let mut failures: u64 = 0;
    loop {
        let creds = renewal.current();
        let config = pki::client_config(&creds.ca_pem, Some((&creds.cert_pem, &creds.key_pem)))?;
        match tls_connect(console, config).await {
            Ok(stream) => {
                tracing::info!("connected to the console at {console}");
                backoff = BACKOFF_START;
                failures = 0;
                match session_renewing(stream, m.clone(), info, timing, Some(renewal.clone())).await
                {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(tag: &str) -> Credentials {
        Credentials {
            ca_pem: format!("ca {tag}"),
            cert_pem: format!("cert {tag}"),
            key_pem: format!("key {tag}"),
            dir: None,
        }
    }

    fn live(dir: &Path) -> (String, String, String) {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        (read(CA_FILE), read(CERT_FILE), read(KEY_FILE))
    }

    fn write_live(dir: &Path, c: &Credentials) {
        std::fs::write(dir.join(CA_FILE), &c.ca_pem).unwrap();
        std::fs::write(dir.join(CERT_FILE), &c.cert_pem).unwrap();
        std::fs::write(dir.join(KEY_FILE), &c.key_pem).unwrap();
    }

    #[test]
    fn a_renewal_replaces_the_whole_set_and_keeps_the_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_live(dir.path(), &creds("old"));
        store_renewed(dir.path(), &creds("new")).unwrap();
        assert_eq!(
            live(dir.path()),
            ("ca new".into(), "cert new".into(), "key new".into())
        );
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for staged in [STAGED_CA, STAGED_CERT, STAGED_KEY] {
            assert!(!dir.path().join(staged).exists(), "{staged} left behind");
        }
    }

    #[test]
    fn an_interrupted_renewal_ends_with_the_old_set_or_the_new_never_a_mix() {
        // Crash before the staged certificate was complete: the old set stays.
        let dir = tempfile::tempdir().unwrap();
        write_live(dir.path(), &creds("old"));
        std::fs::write(dir.path().join(STAGED_KEY), "key new").unwrap();
        std::fs::write(dir.path().join(STAGED_CA), "ca new").unwrap();
        finish_staged(dir.path()).unwrap();
        assert_eq!(
            live(dir.path()),
            ("ca old".into(), "cert old".into(), "key old".into())
        );
        assert!(!dir.path().join(STAGED_KEY).exists());

        // Crash after the key was renamed, before the certificate: the next start finishes.
        let dir = tempfile::tempdir().unwrap();
        write_live(dir.path(), &creds("old"));
        std::fs::write(dir.path().join(KEY_FILE), "key new").unwrap();
        std::fs::write(dir.path().join(STAGED_CA), "ca new").unwrap();
        std::fs::write(dir.path().join(STAGED_CERT), "cert new").unwrap();
        finish_staged(dir.path()).unwrap();
        assert_eq!(
            live(dir.path()),
            ("ca new".into(), "cert new".into(), "key new".into())
        );
    }
}
