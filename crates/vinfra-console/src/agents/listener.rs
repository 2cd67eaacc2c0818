//! The agent endpoint: accepts TLS connections, handles joins, and runs one task per connected
//! agent (a reader routing responses, storing reports and acknowledging heartbeats, a writer fed
//! by a channel).
//!
//! Liveness: every message from the agent (a heartbeat every second, a report, a response)
//! resets the connection's silence timer; after the registry's heartbeat timeout (3 s by
//! default) without one the connection is closed and the host is disconnected. Each heartbeat
//! is acknowledged at once, ahead of any queued request, so the agent's console contact (the
//! round trip) does not wait on the console's work either.
//!
//! What the endpoint needs of the console (joins, Hellos) is the [`Membership`] trait, which
//! `hosts::joins` implements for the console: the endpoint imports nothing above it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vinfra_proto::frame::{FrameError, FramedJson};
use vinfra_proto::{AgentCommand, AgentMessage, ConsoleMessage, HostReport, PROTOCOL_VERSION};
use vinfra_types::error::{chain, Chain};
use vinfra_types::HostPlatform;

use super::registry::AgentRegistry;

/// What the agent endpoint asks of the console.
pub trait Membership: Send + Sync + 'static {
    /// Why a join was refused (its chain goes back to the agent).
    type JoinRefused: std::error::Error;
    /// Joins a host: burns the token, registers the host and signs its certificate. Returns
    /// `(cert_pem, ca_pem)`.
    fn join(
        &self,
        token: &str,
        host: &str,
        csr_pem: &str,
        peer: IpAddr,
    ) -> Result<(String, String), Self::JoinRefused>;
    /// True when `host` is registered (a valid certificate of a removed host is refused).
    fn registered(&self, host: &str) -> bool;
    /// Checks what a host says in its Hello (its address, its capacity): a refusal closes the
    /// connection.
    fn check_hello(
        &self,
        report: &HostReport,
        platform: Option<&HostPlatform>,
    ) -> Result<(), String>;
    /// Makes a report (the Hello's too) claim only what its host may: `hello` is the one its
    /// connection began with.
    fn screen_report(&self, hello: &HostReport, report: &mut HostReport);
    /// Renews a registered host's certificate for the key of `csr_pem` (the host is the
    /// session's, `using` the certificate it connected with). Returns `(cert_pem,
    /// ca_bundle_pem)`; refused for a host not registered, and long before the certificate it
    /// uses is due unless the console `asked` for the renewal.
    fn renew(
        &self,
        host: &str,
        csr_pem: &str,
        using: Option<&vinfra_proto::pki::CertInfo>,
        asked: bool,
    ) -> Result<(String, String), Self::JoinRefused>;
    /// True when the certificate with this serial (lower-case hex) was revoked.
    fn certificate_revoked(&self, serial: &str) -> bool;
    /// A registered host connected with `cert` (DER `der`). True when it should renew at once
    /// (a CA rotation).
    fn certificate_seen(&self, host: &str, cert: &vinfra_proto::pki::CertInfo, der: &[u8]) -> bool;
    /// Remembers what a host said in its Hello.
    fn hello(&self, report: &HostReport, platform: Option<HostPlatform>);
    /// The cluster's HA settings for a host's guard ([`AgentCommand::SetHa`]), sent to every
    /// agent after its Hello.
    fn ha_command(&self) -> AgentCommand;
    /// The cluster's IPFIX collector for a host's agent ([`AgentCommand::SetFlowExport`]), sent
    /// to every agent after its Hello.
    fn flow_export_command(&self) -> AgentCommand;
    /// Takes the flows a host's switch counted ([`AgentMessage::Flows`]).
    fn flows(&self, host: &str, flows: &[vinfra_proto::HostFlow], untracked_packets: u64);
    /// The registry the connection joins.
    fn registry(&self) -> &AgentRegistry;
}

/// How long a fresh connection has to complete TLS and send its first message.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Most connections from one address that are not authenticated yet (in their TLS handshake,
/// or joining): past it a new one from that address is closed at once.
pub const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 8;
/// Most connections not authenticated yet, from all addresses together.
pub const MAX_UNAUTHENTICATED: usize = 256;
/// Longest frame from a peer without a client certificate (a `Join` is a few KiB).
pub const MAX_JOIN_FRAME: usize = 64 * 1024;

/// The connections not authenticated yet, by source address; a [`Preauth`] is one of them.
#[derive(Debug, Default)]
struct Unauthenticated {
    by_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection counted in [`Unauthenticated`] until it is dropped.
struct Preauth {
    table: Arc<Unauthenticated>,
    address: std::net::IpAddr,
}

impl Unauthenticated {
    /// Counts a new connection from `address`, unless that address or everybody is at the cap.
    fn admit(table: &Arc<Unauthenticated>, address: std::net::IpAddr) -> Option<Preauth> {
        let mut by = table.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = by.values().sum();
        let n = by.entry(address).or_insert(0);
        if *n >= MAX_UNAUTHENTICATED_PER_ADDRESS || total >= MAX_UNAUTHENTICATED {
            return None;
        }
        *n += 1;
        Some(Preauth {
            table: table.clone(),
            address,
        })
    }
}

impl Drop for Preauth {
    fn drop(&mut self) {
        let mut by = self
            .table
            .by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.address);
            }
        }
    }
}

/// Heartbeat acknowledgements waiting for the writer, at most.
const ACK_QUEUE: usize = 16;
/// How long an agent has to take the HA settings sent after its Hello.
const SET_HA_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection to the agent endpoint ended (the agent side of it has its own error).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// TLS handshake failed
    #[error("TLS handshake")]
    Tls(#[source] std::io::Error),
    /// the peer did not finish the handshake or its first message in time
    #[error("no first message within {} s", HANDSHAKE_TIMEOUT.as_secs())]
    HandshakeTimeout,
    /// framing or decoding failed
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// a connection without a client certificate sent something else than a join
    #[error("protocol violation: a connection without a client certificate may only join")]
    NotJoin,
    /// the first message of an agent was not its Hello
    #[error("protocol violation: the first message must be hello")]
    NotHello,
    /// the agent speaks another protocol version
    #[error("protocol violation: protocol version {got} is not supported (console speaks {PROTOCOL_VERSION})")]
    Version {
        /// The agent's version.
        got: u32,
    },
    /// a report names another host than the certificate
    #[error(
        "protocol violation: report names host '{report}' but the certificate is for '{cert}'"
    )]
    WrongHost {
        /// The host the report names.
        report: String,
        /// The host of the certificate.
        cert: String,
    },
    /// a message the console does not expect from an agent
    #[error("protocol violation: unexpected message {0}")]
    Unexpected(&'static str),
    /// the certificate names a host that is not (or no longer) registered
    #[error("host '{0}' is not registered (removed from the cluster?)")]
    UnknownHost(String),
    /// The Hello claims what the host may not (another host's address, an absurd capacity)
    #[error("hello refused: {0}")]
    HelloRefused(String),
    /// the certificate was revoked (its host was removed)
    #[error("the certificate {serial} of host '{host}' was revoked")]
    Revoked {
        /// The host it names.
        host: String,
        /// Its serial.
        serial: String,
    },
    /// the host asked to renew its certificate but may not
    #[error("certificate renewal refused: {0}")]
    RenewRefused(String),
    /// the connection stayed open but no message arrived within the heartbeat timeout
    #[error("no message for {} s", .0.as_secs_f64())]
    Silent(Duration),
}

/// Accepts agent connections until the task is aborted (which also ends every connection).
pub async fn serve<M: Membership>(console: Arc<M>, listener: TcpListener, acceptor: TlsAcceptor) {
    let mut conns = tokio::task::JoinSet::new();
    let unauthenticated = Arc::new(Unauthenticated::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("agent endpoint accept: {}", Chain(&e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Closed at once past the caps: connections that never authenticate cannot pile up.
        let Some(preauth) = Unauthenticated::admit(&unauthenticated, peer.ip()) else {
            tracing::debug!(%peer, "too many unauthenticated connections: closed");
            drop(tcp);
            continue;
        };
        let console = console.clone();
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            if let Err(e) = handle(console, acceptor, tcp, peer, preauth).await {
                tracing::info!(%peer, "agent connection ended: {}", Chain(&e));
            }
        });
    }
}

async fn handle<M: Membership>(
    console: Arc<M>,
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    preauth: Preauth,
) -> Result<(), EndpointError> {
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| EndpointError::HandshakeTimeout)?
        .map_err(EndpointError::Tls)?;
    let host = crate::pki::peer_host_name(tls.get_ref().1);
    match host {
        // A joiner stays counted until its one answer, its frames small.
        None => {
            let mut framed = FramedJson::with_max_frame(tls, MAX_JOIN_FRAME);
            let joined = join(console.as_ref(), &mut framed, peer).await;
            drop(preauth);
            joined
        }
        // A certificate of the cluster CA: authenticated.
        Some(host) => {
            drop(preauth);
            let conn = tls.get_ref().1;
            let cert =
                vinfra_proto::pki::peer_cert_info(conn).zip(vinfra_proto::pki::peer_cert_der(conn));
            session(console, FramedJson::new(tls), host, cert).await
        }
    }
}

/// A connection without a client certificate: one `Join`, one answer.
async fn join<S: AsyncRead + AsyncWrite + Unpin, M: Membership>(
    console: &M,
    framed: &mut FramedJson<S>,
    peer: SocketAddr,
) -> Result<(), EndpointError> {
    let msg: AgentMessage = tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.recv())
        .await
        .map_err(|_| EndpointError::HandshakeTimeout)??;
    let AgentMessage::Join {
        token,
        host,
        csr_pem,
    } = msg
    else {
        let refused = EndpointError::NotJoin;
        let reason = "a connection without a client certificate may only join".to_string();
        framed.send(&ConsoleMessage::JoinRefused { reason }).await?;
        return Err(refused);
    };
    let reply = match console.join(&token, &host, &csr_pem, peer.ip()) {
        Ok((cert_pem, ca_pem)) => {
            tracing::info!(%peer, host, "host joined");
            ConsoleMessage::Joined { cert_pem, ca_pem }
        }
        Err(e) => {
            let reason = chain(&e);
            tracing::warn!(%peer, host, "join refused: {reason}");
            ConsoleMessage::JoinRefused { reason }
        }
    };
    framed.send(&reply).await?;
    Ok(())
}

/// A connection with a client certificate: `Hello`, then reports and responses.
async fn session<S: AsyncRead + AsyncWrite + Unpin + Send + 'static, M: Membership>(
    console: Arc<M>,
    mut framed: FramedJson<S>,
    host: String,
    cert: Option<(vinfra_proto::pki::CertInfo, Vec<u8>)>,
) -> Result<(), EndpointError> {
    if !console.registered(&host) {
        // The certificate is valid (it was signed by the cluster CA) but the host was removed,
        // or never finished joining: the name counts, not the certificate.
        tracing::warn!(
            host,
            "refusing a certificate of a host that is not registered"
        );
        return Err(EndpointError::UnknownHost(host));
    }
    // A certificate of a removed host stays refused when a host of that name joins again.
    let serial = cert
        .as_ref()
        .map(|c| c.0.serial.clone())
        .unwrap_or_default();
    if console.certificate_revoked(&serial) {
        tracing::warn!(host, serial, "refusing a revoked certificate");
        return Err(EndpointError::Revoked { host, serial });
    }
    let msg: AgentMessage = tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.recv())
        .await
        .map_err(|_| EndpointError::HandshakeTimeout)??;
    let AgentMessage::Hello {
        protocol,
        report,
        platform,
    } = msg
    else {
        return Err(EndpointError::NotHello);
    };
    if protocol != PROTOCOL_VERSION {
        return Err(EndpointError::Version { got: protocol });
    }
    if report.host != host {
        return Err(EndpointError::WrongHost {
            report: report.host,
            cert: host,
        });
    }
    console
        .check_hello(&report, platform.as_ref())
        .map_err(EndpointError::HelloRefused)?;
    let mut report = report;
    let hello = report.clone();
    console.screen_report(&hello, &mut report);
    console.hello(&report, platform);
    let renew_now = cert
        .as_ref()
        .is_some_and(|(info, der)| console.certificate_seen(&host, info, der));
    let registry = console.registry().clone();
    let reg = registry.connect(&host, report);
    tracing::info!(host, "agent connected");
    let (mut sender, mut receiver) = framed.split();
    let mut rx = reg.rx;
    // Answers to renewals, and the request to renew, go out through the writer too.
    let (control, mut control_rx) = tokio::sync::mpsc::channel::<ConsoleMessage>(4);
    // True from asking the host to renew until it did.
    let mut asked = renew_now;
    if renew_now {
        tracing::info!(
            host,
            "asking the host to renew its certificate (CA rotation)"
        );
        let _ = control.try_send(ConsoleMessage::RenewCertificate);
    }
    // Acknowledgements jump the queue of requests (a full queue drops one: the writer is stuck,
    // and the agent has lost contact either way).
    let (acks, mut ack_rx) = tokio::sync::mpsc::channel::<u64>(ACK_QUEUE);
    let writer = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                biased;
                Some(seq) = ack_rx.recv() => ConsoleMessage::HeartbeatAck { seq },
                Some(m) = control_rx.recv() => m,
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            if sender.send(&msg).await.is_err() {
                break;
            }
        }
    });
    // The HA settings go to every agent that says Hello (a restarted agent, a new console):
    // its guard acts on them while the console is unreachable.
    {
        let (registry, host, command) = (registry.clone(), host.clone(), console.ha_command());
        tokio::spawn(async move {
            if let Err(e) = registry.request(&host, command, SET_HA_TIMEOUT).await {
                tracing::warn!(host, "the HA settings were not taken: {}", Chain(&e));
            }
        });
    }
    // So does the IPFIX collector (`None` too: one removed while the agent was away).
    {
        let (registry, host, command) = (
            registry.clone(),
            host.clone(),
            console.flow_export_command(),
        );
        tokio::spawn(async move {
            if let Err(e) = registry.request(&host, command, SET_HA_TIMEOUT).await {
                tracing::debug!(host, "the IPFIX collector was not taken: {}", Chain(&e));
            }
        });
    }
    let mut closed = reg.closed;
    let heartbeat = registry.heartbeat_timeout();
    let silent = tokio::time::sleep(heartbeat);
    tokio::pin!(silent);
    let result = loop {
        let msg = tokio::select! {
            m = receiver.recv_with(AgentMessage::from_json) => m,
            _ = &mut closed => break Ok(()),
            () = &mut silent => {
                tracing::warn!(host, "no message within {heartbeat:?}: closing the connection");
                break Err(EndpointError::Silent(heartbeat));
            }
        };
        if msg.is_ok() {
            silent
                .as_mut()
                .reset(tokio::time::Instant::now() + heartbeat);
        }
        match msg {
            Ok(AgentMessage::Heartbeat { seq }) => {
                let _ = acks.try_send(seq);
                registry.heard(&host, reg.conn_id);
            }
            Ok(AgentMessage::Report { mut report }) => {
                if report.host != host {
                    break Err(EndpointError::WrongHost {
                        report: report.host,
                        cert: host.clone(),
                    });
                }
                console.screen_report(&hello, &mut report);
                registry.report(&host, reg.conn_id, report);
            }
            Ok(AgentMessage::Response { id, result }) => {
                registry.heard(&host, reg.conn_id);
                registry.answered(&host, reg.conn_id, &reg.pending, id, result);
            }
            Ok(AgentMessage::Flows {
                host: named,
                flows,
                untracked_packets,
                ..
            }) => {
                if named != host {
                    break Err(EndpointError::WrongHost {
                        report: named,
                        cert: host.clone(),
                    });
                }
                registry.heard(&host, reg.conn_id);
                console.flows(&host, &flows, untracked_packets);
            }
            Ok(AgentMessage::Renew { csr_pem }) => {
                registry.heard(&host, reg.conn_id);
                let using = cert.as_ref().map(|(info, _)| info);
                let renewed = console
                    .renew(&host, &csr_pem, using, asked)
                    .map_err(|e| chain(&e));
                match renewed {
                    Ok((cert_pem, ca_pem)) => {
                        asked = false;
                        tracing::info!(host, "certificate renewed");
                        let _ = control
                            .send(ConsoleMessage::Renewed { cert_pem, ca_pem })
                            .await;
                    }
                    Err(reason) => {
                        tracing::warn!(host, "certificate renewal refused: {reason}");
                        let _ = control
                            .send(ConsoleMessage::RenewRefused {
                                reason: reason.clone(),
                            })
                            .await;
                        if !console.registered(&host) {
                            // Give the writer a moment to send the refusal, then close.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            break Err(EndpointError::RenewRefused(reason));
                        }
                    }
                }
            }
            Ok(AgentMessage::Join { .. }) => break Err(EndpointError::Unexpected("join")),
            Ok(AgentMessage::Hello { .. }) => break Err(EndpointError::Unexpected("hello")),
            Err(e) => break Err(e.into()),
        }
    };
    writer.abort();
    registry.disconnect(&host, reg.conn_id);
    tracing::info!(host, "agent disconnected");
    result
}
