//! The vinfra console: REST API, desired-state store, controllers, placement, agent connections.
//!
//! Modules, top to bottom (an import only ever goes down this list):
//!
//! - `lib.rs`: process wiring only: [`ConsoleConfig`], [`start`], [`run`], the tasks;
//! - [`web`]: the web console: server-rendered pages over [`interface`] (and the API's role
//!   table), sessions, CSRF;
//! - [`api`]: axum routes that parse requests into [`interface::Command`]s and render
//!   [`interface::Reply`]s; problem+json errors; bearer-token auth; the OpenAPI document;
//! - [`interface`]: [`interface::Command`], [`interface::Reply`], the
//!   [`interface::ConsoleApi`] trait and its implementation for the console;
//! - [`tasks`]: long operations run as tasks, and the tasks a restart interrupted followed
//!   to their end;
//! - [`controllers`]: reconcile loops (the VM controller, the switch controller);
//! - [`balancing`]: the balancer task, its passes, recommendations;
//! - [`migration`]: live-migration orchestration;
//! - [`scrape`]: `GET /metrics`: the gauges computed now, then the recorder's text;
//! - [`vms`]: create, power, delete, views, HA policy, NIC settings, cleanups;
//! - [`hosts`]: host records, their out-of-band fence, settings, tokens, joins;
//! - [`networks`]: logical networks, NIC address management, each host's switch
//!   configuration and its push, counters;
//! - [`routers`]: routers (VRFs): their interfaces (the networks' gateways) and static routes;
//! - [`rules`]: placement rules;
//! - [`security_groups`]: security groups and their rules (the distributed firewall's API);
//! - [`flows`]: the hosts' flows: kept, grouped for `GET /api/v1/flows`, the balancer's
//!   traffic matrix;
//! - [`fit`]: which hosts can take a VM (the adapter to `vinfra-placement`);
//! - [`state`]: the [`state::Console`] (store, mirrors, settings), its reads and writes, the
//!   records, what is in flight, the event history;
//! - [`metrics`]: the metric names and the console's own Prometheus recorder, what records
//!   into it (each event one call where it happens) and the store's writes timed;
//! - [`error`]: [`error::Error`], [`error::JoinError`], [`error::RecordError`],
//!   [`error::RouterRefusal`];
//! - [`agents`]: the endpoint agents dial (mutual TLS, joins) and the registry of connections;
//! - [`pki`]: the cluster CA, the server certificate and the API token on disk.
//!
//! Nothing is left running unknown to the console: a VM whose creation got no clear answer, or
//! that was deleted with `force` while its host was disconnected, leaves a cleanup marker
//! (`/vinfra/cleanups/<host>/<vm>/<id>`) that keeps its addresses, MACs and name reserved; the VM
//! controller removes the VM from the host when the host is connected and then releases them.
//! A VM a host reports that the console knows nothing about (no record, no marker) is never
//! touched, only reported once (log and event).
//!
//! [`start`] brings everything up and reports the bound addresses; [`run`] does that and waits for
//! SIGINT/SIGTERM.
#![deny(unsafe_code)]

pub mod agents;
pub mod api;
pub mod balancing;
pub mod controllers;
pub mod error;
pub mod fit;
pub mod flows;
pub mod ha;
pub mod hosts;
pub mod interface;
pub mod metrics;
pub mod migration;
pub mod networks;
pub mod pki;
pub mod routers;
pub mod rules;
pub mod scrape;
pub mod security_groups;
pub mod state;
pub mod tasks;
pub mod vms;
pub mod web;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use vinfra_store::{SqliteStore, Store};

use vinfra_types::error::Chain;

use crate::agents::AgentRegistry;
use crate::error::RecordError;
use crate::state::events::acting;
use crate::state::records::{self as keys, ApiTokenRecord};
use crate::state::Console;
use vinfra_types::auth::Actor;

/// Default interval between compactions of the store's watch history.
pub const COMPACTION_INTERVAL: Duration = Duration::from_secs(300);
/// Default number of revisions of watch history kept by compaction.
pub const HISTORY_REVISIONS: i64 = 10_000;

/// How the console runs.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Store, CA and keys live here.
    pub data_dir: PathBuf,
    /// REST API address, e.g. `127.0.0.1:7443`.
    pub api_listen: SocketAddr,
    /// Agent endpoint address.
    pub agent_listen: SocketAddr,
    /// Bind the agent endpoint inside this named network namespace (`/var/run/netns/NAME`).
    pub agent_listen_netns: Option<String>,
    /// Extra names (DNS or IP) for the server certificate.
    pub advertise_names: Vec<String>,
    /// On first start, also write the API token to this file (mode 0600).
    pub token_file: Option<PathBuf>,
    /// Serve the REST API over TLS (default). Off only for benchmarks and tests on loopback; the
    /// agent endpoint always uses mutual TLS.
    pub tls: bool,
    /// A host whose agent sends no message for this long is disconnected (and its connection
    /// closed). Default 3 s ([`agents::HEARTBEAT_TIMEOUT`]); agents send a heartbeat every second
    /// and a report when their state changed (read every 2 s) or every 8 s, and a report that
    /// lags does not count against the host.
    pub heartbeat_timeout: Duration,
    /// How long the source host of a migration may stay unreachable before the console decides
    /// the migration's outcome without it. Default 30 s.
    pub migration_source_timeout: Duration,
    /// How long `POST /vms` waits for the host to create the VM. Default 60 s
    /// ([`state::CREATE_TIMEOUT`]).
    pub create_timeout: Duration,
    /// How long a host's fence command may run before its process group is killed and the
    /// fence counts as failed. Default 60 s ([`state::FENCE_TIMEOUT`]).
    pub fence_timeout: Duration,
    /// How often the store's watch history is compacted. Default 5 min.
    pub compaction_interval: Duration,
    /// How many revisions of watch history compaction keeps. Default 10,000.
    pub history_revisions: i64,
    /// The shared datastore, where the console reads host leases (`<datastore>/ha/hosts/`) to
    /// tell a failed host from an isolated one. Without it no host is ever failed over
    /// automatically (every lost host is `unprotected`).
    pub datastore: Option<PathBuf>,
    /// Validity of the host certificates and of the console's server certificate it issues
    /// (one year each by default). Each is renewed once 2/3 of it passed.
    pub cert_validity: pki::Validity,
    /// The REST API's connection and request limits.
    pub api_limits: ApiLimits,
}

/// Limits of the REST API (docs/design.md, "Limits").
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// A connection's TLS handshake, and each request's head, must arrive within this; a
    /// connection with nothing in flight and no byte moved for this long is closed. Default
    /// [`API_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this (408 otherwise). Default
    /// [`api::limits::BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// Connections served at once; as many more wait for a slot, up to the header timeout;
    /// past those a new connection is closed at once. Default [`API_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Each token's request rate (429 past it); `None`: no limit. Default
    /// [`api::limits::RateLimit::default`].
    pub rate: Option<api::limits::RateLimit>,
}

/// Default header (and idle) timeout of the REST API.
pub const API_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Default number of REST API connections served at once.
pub const API_MAX_CONNECTIONS: usize = 256;
/// Requests one HTTP/2 connection may have in flight at once (its `SETTINGS_MAX_CONCURRENT_
/// STREAMS`; hyper's own default is 200): one connection has at most this many requests open
/// at a time (256 × 32 over the connection cap, not 256 × 200). Work a handler started goes on
/// after its client resets the stream, so this bounds open requests, not the work behind them.
pub const API_MAX_STREAMS: u32 = 32;

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            header_timeout: API_HEADER_TIMEOUT,
            body_timeout: api::limits::BODY_TIMEOUT,
            max_connections: API_MAX_CONNECTIONS,
            rate: Some(api::limits::RateLimit::default()),
        }
    }
}

impl ConsoleConfig {
    /// Defaults: API on 127.0.0.1:7443, agents on 127.0.0.1:7444, TLS on.
    pub fn new(data_dir: PathBuf) -> Self {
        ConsoleConfig {
            data_dir,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            agent_listen: SocketAddr::from(([127, 0, 0, 1], 7444)),
            agent_listen_netns: None,
            advertise_names: vec![],
            token_file: None,
            tls: true,
            heartbeat_timeout: agents::HEARTBEAT_TIMEOUT,
            migration_source_timeout: state::SOURCE_LOST_AFTER,
            create_timeout: state::CREATE_TIMEOUT,
            fence_timeout: state::FENCE_TIMEOUT,
            compaction_interval: COMPACTION_INTERVAL,
            history_revisions: HISTORY_REVISIONS,
            datastore: None,
            cert_validity: pki::Validity::default(),
            api_limits: ApiLimits::default(),
        }
    }
}

/// Why the console could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// the data directory could not be prepared
    #[error("data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// another console runs on the data directory
    #[error(transparent)]
    DataDirLock(#[from] vinfra_proto::datadir::DataDirLockError),
    /// the store could not be opened
    #[error("store")]
    Store(#[from] vinfra_store::StoreError),
    /// a stored record could not be read or written
    #[error(transparent)]
    Record(#[from] RecordError),
    /// key material could not be loaded or created
    #[error(transparent)]
    Pki(#[from] pki::ConsolePkiError),
    /// a listener could not be bound
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// the network namespace of the agent endpoint could not be entered
    #[error("network namespace '{name}'")]
    Netns {
        /// The namespace.
        name: String,
        /// What failed.
        #[source]
        source: NetnsError,
    },
    /// the API server failed
    #[error("API server")]
    Serve(#[source] std::io::Error),
    /// waiting for a signal failed
    #[error("signal handling")]
    Signal(#[source] std::io::Error),
    /// a background task failed
    #[error("console task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Why the agent endpoint could not be bound inside its network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name is empty, has a `/` or starts with `.`.
    #[error("not a valid namespace name")]
    BadName,
    /// `/var/run/netns/<name>` could not be opened.
    #[error("{path}")]
    Open {
        /// The path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Entering the namespace failed.
    #[error("setns")]
    Enter(#[source] nix::Error),
    /// Binding inside the namespace failed.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The thread that binds panicked.
    #[error("the binding thread panicked")]
    Panicked,
}

/// A started console.
pub struct RunningConsole {
    /// Where the REST API listens.
    pub api_addr: SocketAddr,
    /// Where the agent endpoint listens.
    pub agent_addr: SocketAddr,
    /// The API token, when it was created by this start (first start only).
    pub api_token: Option<String>,
    /// The cluster CA certificate, PEM (trust anchor for API clients).
    pub ca_pem: String,
    /// The core (for in-process callers and tests).
    pub console: Arc<Console>,
    handle: axum_server::Handle<SocketAddr>,
    server: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    /// The data directory's lock, held while the console runs.
    _dir_lock: nix::fcntl::Flock<std::fs::File>,
}

impl RunningConsole {
    /// Stops the API server (draining requests for up to 5 s) and every background task.
    pub async fn shutdown(self) -> Result<(), ConsoleError> {
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        for t in &self.tasks {
            t.abort();
        }
        let served = self.server.await;
        for t in self.tasks {
            let _ = t.await;
        }
        match served {
            Ok(r) => r.map_err(ConsoleError::Serve),
            Err(e) => Err(ConsoleError::Task(e)),
        }
    }

    /// Waits until the API server stops on its own (it fails).
    pub async fn wait(&mut self) -> Result<(), ConsoleError> {
        match (&mut self.server).await {
            Ok(r) => r.map_err(ConsoleError::Serve),
            Err(e) => Err(ConsoleError::Task(e)),
        }
    }
}

/// Turns transparent huge pages off for this process and what it starts, as `vinfra console`
/// does before its runtime starts (a failure is logged: the console runs all the same). The
/// allocator of the `vinfra` binary (mimalloc) gives each thread and size of allocation pages
/// of their own; with huge pages the first touch of each zeroed 2 MiB, 7-9% of the console's
/// CPU in a burst of creates, against 2% with 4-KiB pages (docs/benchmarks.md, 2026-12-06).
/// Not for the agent: its QEMUs would inherit it, and guest memory wants huge pages.
pub fn without_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!("transparent huge pages stay on for the console: {e}");
    }
}

/// Starts the console and runs it until SIGINT or SIGTERM.
pub async fn run(config: ConsoleConfig) -> Result<(), ConsoleError> {
    let mut running = start(config).await?;
    tracing::info!(api = %running.api_addr, agents = %running.agent_addr, "console running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ConsoleError::Signal)?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(ConsoleError::Signal)?,
        _ = term.recv() => {}
        r = running.wait() => return r,
    }
    tracing::info!("shutting down");
    running.shutdown().await
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ConsoleError> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| ConsoleError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    Ok(l)
}

/// Binds a listener inside a named network namespace: a short-lived thread enters the namespace,
/// binds, and ends; the socket stays in that namespace.
fn bind_in_netns(name: &str, addr: SocketAddr) -> Result<std::net::TcpListener, ConsoleError> {
    let err = |source: NetnsError| ConsoleError::Netns {
        name: name.to_string(),
        source,
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(err(NetnsError::BadName));
    }
    let path = Path::new("/var/run/netns").join(name);
    let thread = std::thread::spawn(move || -> Result<std::net::TcpListener, NetnsError> {
        let ns = std::fs::File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(NetnsError::Enter)?;
        let bind = |source| NetnsError::Bind { addr, source };
        let l = std::net::TcpListener::bind(addr).map_err(bind)?;
        l.set_nonblocking(true).map_err(bind)?;
        Ok(l)
    });
    thread
        .join()
        .map_err(|_| err(NetnsError::Panicked))?
        .map_err(err)
}

/// The API tokens at start: a cluster from before named tokens has its single token moved to
/// the admin token [`keys::BOOTSTRAP_TOKEN`] (same secret: clients keep working); a store
/// without any token gets that admin token, printed once and written to `token_file`, its hash
/// stored. Returns the token if created.
fn bootstrap_token(
    store: &dyn Store,
    token_file: Option<&Path>,
) -> Result<Option<String>, ConsoleError> {
    let key = keys::api_token_key(keys::BOOTSTRAP_TOKEN);
    if let Some(old) = keys::get::<ApiTokenRecord>(store, keys::API_TOKEN)? {
        // One transaction: the token is never in neither place nor in both.
        let rec = ApiTokenRecord {
            role: vinfra_types::auth::Role::Admin,
            ..old.value
        };
        let moved = store.txn(vinfra_store::Txn {
            compare: vec![
                vinfra_store::Compare::absent(&key),
                vinfra_store::Compare::mod_revision(keys::API_TOKEN, old.mod_revision),
            ],
            success: vec![
                vinfra_store::Op::Put {
                    key: key.clone(),
                    value: keys::encode(&rec)?,
                    lease: 0,
                },
                vinfra_store::Op::Delete {
                    key: keys::API_TOKEN.to_string(),
                },
            ],
            failure: vec![],
        });
        match moved.map_err(RecordError::from)? {
            r if r.succeeded => tracing::info!(
                "the API token is now the admin token '{}'",
                keys::BOOTSTRAP_TOKEN
            ),
            _ => tracing::warn!(
                "an API token from before named tokens is left at {} (token '{}' exists)",
                keys::API_TOKEN,
                keys::BOOTSTRAP_TOKEN
            ),
        }
        return Ok(None);
    }
    if !store.range(keys::API_TOKENS)?.0.is_empty() {
        return Ok(None);
    }
    let token = vinfra_proto::pki::generate_api_token();
    if let Some(path) = token_file {
        pki::write_file(path, format!("{token}\n").as_bytes(), 0o600)?;
    }
    keys::put(
        store,
        &key,
        &ApiTokenRecord {
            hash: vinfra_proto::pki::token_hash(&token),
            role: vinfra_types::auth::Role::Admin,
            created_at: keys::now_s(),
            expires_at: None,
            revoked_at: None,
        },
    )?;
    println!(
        "API token '{}' (role admin; shown once): {token}",
        keys::BOOTSTRAP_TOKEN
    );
    Ok(Some(token))
}

/// Compacts the store's watch history every `interval`, keeping the last `keep` revisions. The
/// live state and the event list (`/vinfra/events/`, bounded separately) are not touched: only
/// the history a watcher could replay from an old revision.
async fn compact_history(store: Arc<dyn Store>, interval: Duration, keep: i64) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut compacted: i64 = 0;
    loop {
        tick.tick().await;
        let store = store.clone();
        let done = tokio::task::spawn_blocking(
            move || -> Result<Option<i64>, vinfra_store::StoreError> {
                let target = store.revision()?.saturating_sub(keep.max(0));
                if target <= compacted {
                    return Ok(None);
                }
                store.compact(target)?;
                Ok(Some(target))
            },
        )
        .await;
        match done {
            Ok(Ok(Some(target))) => {
                tracing::debug!(revision = target, "store history compacted");
                compacted = target;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("store compaction failed: {}", Chain(&e)),
            Err(e) => tracing::warn!("store compaction task failed: {}", Chain(&e)),
        }
    }
}

/// Renews the console's server certificate (API and agent endpoint) once [`pki::RENEW_AT`] of
/// its validity passed, forever; a failed renewal is tried again after a tenth of what is left.
async fn renew_server_cert(console: Arc<Console>, server: pki::ServerCert) {
    loop {
        let wait = match server.info() {
            Ok(info) => info.until_renewal(),
            Err(e) => {
                tracing::error!("server certificate unreadable: {}", Chain(&e));
                return;
            }
        };
        tokio::time::sleep(wait).await;
        match server.renew(console.ca()) {
            Ok(info) => {
                tracing::info!(serial = info.serial, "server certificate renewed");
                console.event(
                    "certificate",
                    "console",
                    format!(
                        "server certificate renewed: serial {}, valid {} s",
                        info.serial,
                        info.not_after
                            .duration_since(std::time::SystemTime::now())
                            .unwrap_or_default()
                            .as_secs()
                    ),
                );
            }
            Err(e) => {
                let retry = server
                    .info()
                    .map_or(Duration::from_secs(60), |i| i.retry_after());
                tracing::error!(
                    "server certificate renewal failed: {}; trying again in {retry:?}",
                    Chain(&e)
                );
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Starts the console: store, key material, agent endpoint, API server, controllers.
pub async fn start(config: ConsoleConfig) -> Result<RunningConsole, ConsoleError> {
    let dir = &config.data_dir;
    let dir_err = |source| ConsoleError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
    // One console per data directory: a second would write the same store and keys.
    let dir_lock = vinfra_proto::datadir::lock(dir, "console", vinfra_proto::datadir::LOCK_WAIT)?;

    let sqlite = Arc::new(SqliteStore::open(&dir.join("console.db"))?);
    let reaper = sqlite.spawn_lease_reaper();
    let store: Arc<dyn Store> = sqlite;

    let agent_std = match &config.agent_listen_netns {
        Some(ns) => bind_in_netns(ns, config.agent_listen)?,
        None => bind(config.agent_listen)?,
    };
    let api_std = bind(config.api_listen)?;
    let agent_addr = agent_std
        .local_addr()
        .map_err(|source| ConsoleError::Bind {
            addr: config.agent_listen,
            source,
        })?;
    let api_addr = api_std.local_addr().map_err(|source| ConsoleError::Bind {
        addr: config.api_listen,
        source,
    })?;

    let names = pki::server_names(&[api_addr, agent_addr], &config.advertise_names);
    let keys = pki::ConsolePki::load_or_create(dir, &names, config.cert_validity)?;
    let api_token = bootstrap_token(store.as_ref(), config.token_file.as_deref())?;
    let ca_pem = keys.ca.cert_pem().to_string();

    let agents = AgentRegistry::new(config.heartbeat_timeout);
    let triggers = agents.subscribe_with_vms();
    let switch_triggers = agents.subscribe();
    let console = Arc::new(
        Console::load(store.clone(), agents, keys.ca)?
            .with_ca_bundle(keys.ca_bundle)
            .with_migration_source_timeout(config.migration_source_timeout)
            .with_create_timeout(config.create_timeout)
            .with_fence_timeout(config.fence_timeout),
    );

    let mut tasks = vec![reaper];
    tasks.push(tokio::spawn(acting(
        Actor::controller("certificates"),
        renew_server_cert(console.clone(), keys.server),
    )));
    tasks.push(tokio::spawn(
        console.metrics().clone().keep_up(metrics::UPKEEP_INTERVAL),
    ));
    tasks.push(tokio::spawn(compact_history(
        store.clone(),
        config.compaction_interval,
        config.history_revisions,
    )));
    let agent_listener =
        tokio::net::TcpListener::from_std(agent_std).map_err(|source| ConsoleError::Bind {
            addr: agent_addr,
            source,
        })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(keys.agent_tls);
    tasks.push(tokio::spawn(agents::listener::serve(
        console.clone(),
        agent_listener,
        acceptor,
    )));

    let vm_controller = Arc::new(controllers::vm::VmController::new(console.clone()));
    let store2 = store.clone();
    tasks.push(tokio::spawn(acting(
        Actor::controller("vm-controller"),
        async move {
            if let Err(e) =
                controllers::run(vm_controller, store2, triggers, Duration::from_secs(10)).await
            {
                tracing::error!("VM controller stopped: {}", Chain(&e));
            }
        },
    )));
    let switch_controller = Arc::new(controllers::switch::SwitchController::new(console.clone()));
    let store3 = store.clone();
    tasks.push(tokio::spawn(acting(
        Actor::controller("switch-controller"),
        async move {
            if let Err(e) = controllers::run(
                switch_controller,
                store3,
                switch_triggers,
                Duration::from_secs(30),
            )
            .await
            {
                tracing::error!("switch controller stopped: {}", Chain(&e));
            }
        },
    )));
    let leases: Arc<dyn ha::LeaseSource> = match &config.datastore {
        Some(d) => Arc::new(ha::DatastoreLeases::new(d)),
        None => Arc::new(ha::NoLeases),
    };
    if let Some(d) = &config.datastore {
        // The guards tell a console that is down from their host being cut off by it.
        tasks.push(tokio::spawn(ha::leases::write_heartbeat(d.clone())));
    }
    tasks.push(tokio::spawn(acting(
        Actor::controller("ha"),
        ha::HaController::new(console.clone(), leases).run(),
    )));
    tasks.push(tokio::spawn(acting(
        Actor::controller("edge"),
        controllers::edge::run(console.clone()),
    )));
    tasks.push(tokio::spawn(acting(
        Actor::controller("balancer"),
        balancing::run(console.clone(), console.agents().subscribe()),
    )));
    if let Err(e) = migration::resume_all(&console) {
        tracing::error!("resuming migrations: {}", Chain(&e));
    }
    crate::tasks::follow_unended(&console);

    let handle = axum_server::Handle::new();
    let limits = &config.api_limits;
    let request_limits = api::limits::RequestLimits::new(limits.body_timeout, limits.rate);
    // The web console's pages share the listener (docs/design.md, "Web console").
    let request_limits = Arc::new(request_limits);
    // The web console's forms are read within the API's body time too: a body sent slowly
    // (or never) must not hold one of the listener's connections.
    // One budget of refused tokens per client for the API and the login form.
    let web = web::router_with(console.clone(), request_limits.refusals()).layer(
        axum::middleware::from_fn_with_state(request_limits.clone(), api::limits::read_body),
    );
    let app = api::router_with(console.clone(), request_limits)
        .merge(web)
        // The peer's address, for the limit on refused tokens (API and login form).
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    // No Nagle: a response written in two parts would wait for the client's delayed ACK.
    let accept = api::connections::LimitedAcceptor::new(
        axum_server::accept::NoDelayAcceptor::new(),
        limits.max_connections,
        limits.header_timeout,
        limits.header_timeout,
    );
    let bind_err = |source| ConsoleError::Bind {
        addr: api_addr,
        source,
    };
    let server = if config.tls {
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(keys.api_tls);
        let header_timeout = limits.header_timeout;
        let mut server = axum_server::from_tcp_rustls(api_std, tls)
            .map_err(bind_err)?
            .map(|tls| tls.handshake_timeout(header_timeout).acceptor(accept))
            .first_request_timeout(header_timeout)
            .handle(handle.clone());
        server
            .http_builder()
            .http1()
            .header_read_timeout(header_timeout);
        server
            .http_builder()
            .http2()
            .max_concurrent_streams(API_MAX_STREAMS);
        tokio::spawn(server.serve(app))
    } else {
        let mut server = axum_server::from_tcp(api_std)
            .map_err(bind_err)?
            .acceptor(accept)
            .first_request_timeout(limits.header_timeout)
            .handle(handle.clone());
        server
            .http_builder()
            .http1()
            .header_read_timeout(limits.header_timeout);
        server
            .http_builder()
            .http2()
            .max_concurrent_streams(API_MAX_STREAMS);
        tokio::spawn(server.serve(app))
    };
    Ok(RunningConsole {
        api_addr,
        agent_addr,
        api_token,
        ca_pem,
        console,
        handle,
        server,
        tasks,
        _dir_lock: dir_lock,
    })
}
