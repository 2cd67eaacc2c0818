//! The connection to the console: joining (once), then a mutual-TLS session that sends `Hello`,
//! a `Heartbeat` every heartbeat interval, a `Report` when one tells the console something new
//! (checked every report interval and after each command that may change a VM; the `reports`
//! module), the switch's `Flows` every 10 s, and answers `Request`s; retries the join and
//! reconnects forever with backoff capped at [`BACKOFF_MAX`].
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

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use vinfra_proto::frame::FramedJson;
use vinfra_proto::pki::{self, JoinToken, PkiError};
use vinfra_proto::{AgentMessage, ConsoleMessage, PROTOCOL_VERSION};
use vinfra_types::error::Chain;

use crate::contact::{ConsoleContact, Heartbeats};
use crate::manager::Manager;

mod error;
mod reports;
mod stored;
pub use error::ConnectionError;
use reports::{commit_usage, report_after, Reporter};
pub use reports::{host_report, HostInfo, REPORT_SWITCH_BOUND};
use stored::{finish_staged, read_opt, store_file, CA_FILE, CERT_FILE, KEY_FILE};
pub use stored::{store_renewed, Credentials};

/// Default time between two reports (`vinfra agent --report-interval`).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Default [`SessionTiming::unchanged_every`]: with the default report interval, a host whose
/// state did not change reports every 8 s.
pub const UNCHANGED_EVERY: u32 = vinfra_proto::UNCHANGED_REPORT_EVERY;
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
    /// A periodic report that tells the console nothing but the values that move all the time
    /// (use, uptimes, traffic, the guard's renewals) is sent only every this many report
    /// intervals (1: every report is sent; `reports` module).
    pub unchanged_every: u32,
}

impl Default for SessionTiming {
    fn default() -> Self {
        SessionTiming {
            report_interval: REPORT_INTERVAL,
            heartbeat: HEARTBEAT,
            unchanged_every: UNCHANGED_EVERY,
        }
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
/// After every command that may change a VM the agent reads a fresh report and sends it if it
/// tells the console something new: before the `Response`, so the console never holds an
/// observed state older than the command; or, for the commands whose answer carries the VM
/// ([`vinfra_proto::AgentCommand::answer_carries_vm`]) when they succeed, right after it (then
/// it is sent only when the host changed in more than the answer says). Heartbeat
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
    let hello = host_report(&m, info).await;
    tx.send(&AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        report: hello.clone(),
        platform: info.platform.clone(),
    })
    .await?;
    commit_usage(&m);
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
    let reports = Reporter::new(
        m.clone(),
        info.clone(),
        out_tx.clone(),
        timing.unchanged_every,
        hello,
    );
    {
        let reports = reports.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(timing.report_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if !reports.tick().await {
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
                let (m, reports) = (m.clone(), reports.clone());
                tokio::spawn(async move {
                    let changes_state = command.changes_vm_state();
                    let first = command.answer_carries_vm();
                    let effect = command.answer_effect();
                    let result = crate::handler::handle(&m, command).await;
                    let report = report_after(changes_state, &result);
                    let before = report && !(first && result.is_ok());
                    if before {
                        reports.before_answer().await;
                    }
                    let response = AgentMessage::Response { id, result };
                    reports.answer(effect, response, report && !before).await;
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
