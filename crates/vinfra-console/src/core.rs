//! The console core: every operation the API offers, as one typed [`Command`] enum handled by
//! [`Console::execute`]. The REST layer only parses requests into commands and renders replies.
//!
//! Desired state lives in the store; the core keeps an in-memory mirror of the VM and host records
//! (every write goes through the core, store first, then the mirror), so that listing 10,000 VMs
//! reads no store at all. Observed state lives in the [`AgentRegistry`].
//!
//! Nothing is left behind unknown to the console. A VM whose creation failed is removed again;
//! when the host gave a clear refusal (and confirms the VM is gone) its addresses and MACs are
//! released at once. When the outcome is uncertain (no answer in time, connection lost, or the
//! removal after a refusal failed) and when a VM is deleted with `force` while its host is
//! disconnected, the host may still run it: the record goes, but a cleanup marker
//! ([`crate::store_keys::CleanupRecord`]) takes its place in the same transaction, its
//! addresses and MACs stay claimed and its name stays taken, until the VM controller has
//! removed the VM from the host (or the host, connected, confirms it has no such VM).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_placement::{Eligibility, HostInput, PlacementError};
use vinfra_proto::pki::{ClusterCa, JoinToken};
use vinfra_proto::{AgentCommand, AgentError, CommandReply};
use vinfra_store::{Compare, Op, Store, Txn};
use vinfra_types::api::{
    ClusterSettings, ConsoleLog, CreateVmRequest, Event, JoinTokenResponse, MigrateVmRequest,
    StopVmRequest, TokenResponse, UpdateHostRequest,
};
use vinfra_types::balancing::{DrsStatus, PlacementRule, Recommendation};
use vinfra_types::network::{
    underlay_mtu_for_overlay, CreateNetworkRequest, HostSwitchCounters, NetworkCounters,
    NetworkKind, NetworkSummary, UNDERLAY_MTU, VXLAN_OVERHEAD,
};
use vinfra_types::{
    AllocationRatios, HostCapacity, HostStatus, HostSummary, HostUsage, MigrationProgress,
    PowerState, VmObserved, VmSpec, VmSummary, VmUsage,
};

use crate::agents::{AgentRegistry, RequestError};
use crate::balancing;
use crate::migration::ActiveMigration;
use crate::networks::NicPlan;
use crate::store_keys::{
    self as keys, now_s, ApiTokenRecord, CleanupReason, CleanupRecord, Desired, HostRecord,
    JoinTokenRecord, RecordError, Versioned, VmRecord,
};

/// How long a join token stays valid.
pub const JOIN_TOKEN_TTL_S: u64 = 24 * 3600;
/// Default and largest console log size.
pub const CONSOLE_LOG_DEFAULT: u64 = 64 * 1024;
pub const CONSOLE_LOG_MAX: u64 = 1024 * 1024;
/// Default and largest graceful stop timeout.
pub const STOP_TIMEOUT_DEFAULT_S: u64 = 30;
pub const STOP_TIMEOUT_MAX_S: u64 = 3600;
/// How long the console waits for an agent to create or start a VM (the default of
/// `ConsoleConfig::create_timeout` for `POST /vms`).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the console waits for short agent commands.
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the console can be asked to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Every registered host with capacity, allocation and status.
    ListHosts,
    /// One host.
    ShowHost { name: String },
    /// Change a host's ratio override or maintenance flag.
    UpdateHost {
        name: String,
        update: UpdateHostRequest,
    },
    /// Remove a host (refused while VMs are placed on it).
    DeleteHost { name: String },
    /// Cluster settings.
    GetSettings,
    /// Replace the cluster settings.
    PutSettings { settings: ClusterSettings },
    /// Issue a one-time join token.
    CreateJoinToken,
    /// Replace the API token.
    RotateToken,
    /// Every VM.
    ListVms,
    /// Create (and by default start) a VM.
    CreateVm { request: CreateVmRequest },
    /// One VM.
    ShowVm { name: String },
    /// Delete a VM and its disks; `force` also when its host is disconnected.
    DeleteVm { name: String, force: bool },
    /// Start a stopped VM.
    StartVm { name: String },
    /// Stop a VM.
    StopVm {
        name: String,
        request: StopVmRequest,
    },
    /// Reset a running VM.
    RebootVm { name: String },
    /// Start a live migration.
    MigrateVm {
        name: String,
        request: MigrateVmRequest,
    },
    /// Progress of the current (or last) migration of a VM.
    ShowMigration { name: String },
    /// Cancel a VM's migration.
    CancelMigration { name: String },
    /// Tail of a VM's serial console.
    ConsoleLog { name: String, bytes: Option<u64> },
    /// The event history, oldest first.
    ListEvents,
    /// Every placement rule.
    ListRules,
    /// Create a placement rule (refused when it contradicts the others).
    CreateRule { rule: PlacementRule },
    /// One placement rule.
    ShowRule { name: String },
    /// Delete a placement rule.
    DeleteRule { name: String },
    /// The balancer's status.
    DrsStatus,
    /// Run a balancing pass now.
    DrsRun,
    /// The recommendations waiting (manual mode).
    ListRecommendations,
    /// Start the migration a recommendation proposes.
    ApplyRecommendation { id: u64 },
    /// Every logical network with its ports.
    ListNetworks,
    /// Create a logical network.
    CreateNetwork { request: CreateNetworkRequest },
    /// One logical network with its ports.
    ShowNetwork { name: String },
    /// Delete a logical network (refused while a VM has a NIC on it).
    DeleteNetwork { name: String },
    /// A network's traffic, per port and per host, read from the hosts' switches now.
    NetworkCounters { name: String },
    /// A host's switch counters, read now.
    HostSwitch { name: String },
}

/// What a command returns.
#[derive(Debug, Clone)]
pub enum Reply {
    Hosts(Vec<HostSummary>),
    Host(HostSummary),
    Settings(ClusterSettings),
    JoinToken(JoinTokenResponse),
    Token(TokenResponse),
    Vms(Vec<VmSummary>),
    Vm(VmSummary),
    /// A VM was created.
    VmCreated(VmSummary),
    Migration(MigrationProgress),
    /// A migration was accepted and runs in the background.
    MigrationStarted(MigrationProgress),
    Console(ConsoleLog),
    Events(Vec<Event>),
    Rules(Vec<PlacementRule>),
    Rule(PlacementRule),
    /// A rule was created.
    RuleCreated(PlacementRule),
    Drs(DrsStatus),
    Recommendations(Vec<Recommendation>),
    Networks(Vec<NetworkSummary>),
    Network(NetworkSummary),
    /// A network was created.
    NetworkCreated(NetworkSummary),
    NetworkCounters(NetworkCounters),
    HostSwitch(HostSwitchCounters),
    /// The object is gone (or the action was carried out) and there is nothing to show.
    Done,
}

/// Why a command failed. Each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// the request is invalid (400)
    #[error("{0}")]
    Invalid(String),
    /// the named object does not exist (404)
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    /// the request conflicts with the current state (409)
    #[error("{0}")]
    Conflict(String),
    /// a rule contradicts the other rules, or must-rules leave a VM no host (409)
    #[error("{0}")]
    RuleConflict(String),
    /// a rule names VMs or hosts that do not exist (422)
    #[error("{0}")]
    InvalidRule(String),
    /// placement found no host (409, 404 for an unknown host)
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// a VM with NICs on VLAN networks and a host without a VLAN trunk (409)
    #[error("{0}")]
    NoTrunk(String),
    /// a VM with NICs on overlay networks and a host whose underlay MTU is too small (409)
    #[error("{0}")]
    UnderlayMtu(String),
    /// the host's agent failed or could not be reached (502/503/504)
    #[error(transparent)]
    Agent(#[from] RequestError),
    /// the store failed (500)
    #[error("store: {0}")]
    Store(#[from] RecordError),
    /// certificate or token handling failed (500)
    #[error("PKI: {0}")]
    Pki(#[from] vinfra_proto::pki::PkiError),
}

impl From<vinfra_store::StoreError> for CoreError {
    fn from(e: vinfra_store::StoreError) -> Self {
        CoreError::Store(RecordError::Store(e))
    }
}

/// Why a host's join was refused; the text goes back to the agent.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// the join token is malformed, unknown, used or expired
    #[error("join token refused: {0}")]
    Token(String),
    /// the host name is invalid
    #[error("host name: {0}")]
    Name(#[from] vinfra_types::NameError),
    /// a host with this name is already registered
    #[error("a host named '{0}' is already registered")]
    HostExists(String),
    /// the CSR could not be signed
    #[error("certificate request: {0}")]
    Csr(#[source] vinfra_proto::pki::PkiError),
    /// the store failed
    #[error("store: {0}")]
    Store(#[from] RecordError),
}

impl From<vinfra_store::StoreError> for JoinError {
    fn from(e: vinfra_store::StoreError) -> Self {
        JoinError::Store(RecordError::Store(e))
    }
}

/// What a VM's overlay NICs need of a host's underlay: [`Console::overlay_need_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayNeed {
    /// The overlay network with the largest MTU among the VM's NICs.
    pub network: String,
    /// Its MTU.
    pub mtu: u32,
    /// The underlay MTU it needs: `mtu` + the VXLAN encapsulation.
    pub underlay_mtu: u32,
}

/// Marks a VM as having an operation in flight; released on drop.
pub struct BusyGuard {
    set: Arc<Mutex<HashSet<String>>>,
    last_op: Arc<Mutex<HashMap<String, Instant>>>,
    name: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.name);
        lock(&self.last_op).insert(self.name.clone(), Instant::now());
    }
}

/// Locks a std mutex, ignoring poisoning (state is replaced whole under these locks).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// The console core.
pub struct Console {
    pub(crate) store: Arc<dyn Store>,
    agents: AgentRegistry,
    ca: ClusterCa,
    vms: RwLock<BTreeMap<String, Versioned<VmRecord>>>,
    hosts: RwLock<BTreeMap<String, Versioned<HostRecord>>>,
    settings: RwLock<ClusterSettings>,
    api_token_hash: RwLock<String>,
    /// Serializes placement decisions with the record writes that claim capacity.
    placement: tokio::sync::Mutex<()>,
    busy: Arc<Mutex<HashSet<String>>>,
    last_op: Arc<Mutex<HashMap<String, Instant>>>,
    pub(crate) migrations: Mutex<HashMap<String, Arc<ActiveMigration>>>,
    events: Mutex<EventLog>,
    /// How long a migration's source may stay unreachable before the outcome is decided
    /// without it.
    pub(crate) source_lost_after: Duration,
    /// How long `POST /vms` waits for the host to create the VM.
    create_timeout: Duration,
    /// The balancer's last pass and recommendations.
    pub(crate) drs: crate::balancing::DrsState,
    /// Logical networks and their address management.
    pub(crate) networks: crate::networks::Networks,
    /// Per host: held while its switch configuration is computed and sent.
    pub(crate) switch_pushes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct EventLog {
    next: u64,
    keys: std::collections::VecDeque<String>,
}

impl Console {
    /// Loads the mirrors from the store. `api_token_hash` is the stored hash (created by the caller
    /// on first start).
    pub fn load(
        store: Arc<dyn Store>,
        agents: AgentRegistry,
        ca: ClusterCa,
        api_token_hash: String,
    ) -> Result<Self, RecordError> {
        let vms = keys::range::<VmRecord>(store.as_ref(), keys::VMS)?
            .into_iter()
            .collect();
        let hosts = keys::range::<HostRecord>(store.as_ref(), keys::HOSTS)?
            .into_iter()
            .collect();
        let settings = keys::get::<ClusterSettings>(store.as_ref(), keys::SETTINGS)?
            .map(|v| v.value)
            .unwrap_or_default();
        let networks = crate::networks::Networks::load(store.as_ref())?;
        let (events, _) = store.range(keys::EVENTS)?;
        let next = events
            .last()
            .and_then(|kv| kv.key[keys::EVENTS.len()..].parse::<u64>().ok())
            .map_or(1, |n| n + 1);
        Ok(Console {
            store,
            agents,
            ca,
            vms: RwLock::new(vms),
            hosts: RwLock::new(hosts),
            settings: RwLock::new(settings),
            api_token_hash: RwLock::new(api_token_hash),
            placement: tokio::sync::Mutex::new(()),
            busy: Arc::default(),
            last_op: Arc::default(),
            migrations: Mutex::default(),
            events: Mutex::new(EventLog {
                next,
                keys: events.into_iter().map(|kv| kv.key).collect(),
            }),
            source_lost_after: crate::migration::SOURCE_LOST_AFTER,
            create_timeout: CREATE_TIMEOUT,
            drs: crate::balancing::DrsState::default(),
            networks,
            switch_pushes: Mutex::default(),
        })
    }

    /// Sets how long a migration's source may stay unreachable (default
    /// [`crate::migration::SOURCE_LOST_AFTER`]).
    pub fn with_migration_source_timeout(mut self, timeout: Duration) -> Self {
        self.source_lost_after = timeout;
        self
    }

    /// Sets how long `POST /vms` waits for the host to create the VM (default
    /// [`CREATE_TIMEOUT`]).
    pub fn with_create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// How long `POST /vms` waits for the host to create the VM.
    pub fn create_timeout(&self) -> Duration {
        self.create_timeout
    }

    /// The store under the console.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The cluster settings in force.
    pub fn settings(&self) -> ClusterSettings {
        read(&self.settings).clone()
    }

    /// What an outgoing migration is tuned with, from the cluster settings.
    pub fn migration_settings(&self) -> vinfra_proto::MigrationSettings {
        let s = read(&self.settings);
        vinfra_proto::MigrationSettings {
            max_bandwidth: s.migration_bandwidth_bytes_per_s(),
            downtime_limit_ms: s.effective_downtime_limit_ms(),
        }
    }

    pub fn agents(&self) -> &AgentRegistry {
        &self.agents
    }

    /// The cluster CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Checks a bearer token in constant time.
    pub fn verify_api_token(&self, token: &str) -> bool {
        vinfra_proto::pki::verify_token(token, &read(&self.api_token_hash))
    }

    /// Runs one command.
    pub async fn execute(self: &Arc<Self>, command: Command) -> Result<Reply, CoreError> {
        match command {
            Command::ListHosts => Ok(Reply::Hosts(self.list_hosts())),
            Command::ShowHost { name } => Ok(Reply::Host(self.show_host(&name)?)),
            Command::UpdateHost { name, update } => {
                Ok(Reply::Host(self.update_host(&name, update)?))
            }
            Command::DeleteHost { name } => self.delete_host(&name).await.map(|()| Reply::Done),
            Command::GetSettings => Ok(Reply::Settings(read(&self.settings).clone())),
            Command::PutSettings { settings } => Ok(Reply::Settings(self.put_settings(settings)?)),
            Command::CreateJoinToken => Ok(Reply::JoinToken(self.create_join_token()?)),
            Command::RotateToken => Ok(Reply::Token(self.rotate_token()?)),
            Command::ListVms => Ok(Reply::Vms(self.list_vms())),
            Command::CreateVm { request } => Ok(Reply::VmCreated(self.create_vm(request).await?)),
            Command::ShowVm { name } => Ok(Reply::Vm(self.show_vm(&name)?)),
            Command::DeleteVm { name, force } => {
                self.delete_vm(&name, force).await.map(|()| Reply::Done)
            }
            Command::StartVm { name } => Ok(Reply::Vm(self.start_vm(&name).await?)),
            Command::StopVm { name, request } => Ok(Reply::Vm(self.stop_vm(&name, request).await?)),
            Command::RebootVm { name } => Ok(Reply::Vm(self.reboot_vm(&name).await?)),
            Command::MigrateVm { name, request } => Ok(Reply::MigrationStarted(
                crate::migration::start(self, &name, request).await?,
            )),
            Command::ShowMigration { name } => Ok(Reply::Migration(self.show_migration(&name)?)),
            Command::CancelMigration { name } => Ok(Reply::Migration(
                crate::migration::cancel(self, &name).await?,
            )),
            Command::ConsoleLog { name, bytes } => {
                Ok(Reply::Console(self.console_log(&name, bytes).await?))
            }
            Command::ListEvents => Ok(Reply::Events(self.list_events()?)),
            Command::ListRules => Ok(Reply::Rules(balancing::rules(self)?)),
            Command::CreateRule { rule } => Ok(Reply::RuleCreated(
                balancing::create_rule(self, rule).await?,
            )),
            Command::ShowRule { name } => Ok(Reply::Rule(balancing::rule(self, &name)?)),
            Command::DeleteRule { name } => balancing::delete_rule(self, &name)
                .await
                .map(|()| Reply::Done),
            Command::DrsStatus => Ok(Reply::Drs(balancing::status(self))),
            Command::DrsRun => Ok(Reply::Drs(balancing::run_now(self).await?)),
            Command::ListRecommendations => {
                Ok(Reply::Recommendations(balancing::recommendations(self)))
            }
            Command::ApplyRecommendation { id } => Ok(Reply::MigrationStarted(
                balancing::apply_recommendation(self, id).await?,
            )),
            Command::ListNetworks => Ok(Reply::Networks(crate::networks::list(self))),
            Command::CreateNetwork { request } => Ok(Reply::NetworkCreated(
                crate::networks::create(self, request).await?,
            )),
            Command::ShowNetwork { name } => {
                Ok(Reply::Network(crate::networks::show(self, &name)?))
            }
            Command::DeleteNetwork { name } => crate::networks::delete(self, &name)
                .await
                .map(|()| Reply::Done),
            Command::NetworkCounters { name } => Ok(Reply::NetworkCounters(
                crate::networks::counters(self, &name).await?,
            )),
            Command::HostSwitch { name } => Ok(Reply::HostSwitch(
                crate::networks::host_switch_counters(self, &name).await?,
            )),
        }
    }

    // ----- events -----

    /// Records an event (kept: the last [`keys::MAX_EVENTS`]). Failures are logged, not returned.
    pub fn event(&self, kind: &str, object: &str, message: impl Into<String>) {
        let event = Event {
            at: now_s(),
            kind: kind.into(),
            object: object.into(),
            message: message.into(),
        };
        tracing::info!(kind, object, "{}", event.message);
        let mut log = lock(&self.events);
        let key = keys::event_key(log.next);
        log.next += 1;
        let mut ops = vec![];
        match keys::encode(&event) {
            Ok(v) => ops.push(Op::Put {
                key: key.clone(),
                value: v,
                lease: 0,
            }),
            Err(e) => {
                tracing::warn!("event not recorded: {e}");
                return;
            }
        }
        log.keys.push_back(key);
        while log.keys.len() > keys::MAX_EVENTS {
            if let Some(old) = log.keys.pop_front() {
                ops.push(Op::Delete { key: old });
            }
        }
        if let Err(e) = self.store.txn(Txn {
            compare: vec![],
            success: ops,
            failure: vec![],
        }) {
            tracing::warn!("event not recorded: {e}");
        }
    }

    fn list_events(&self) -> Result<Vec<Event>, CoreError> {
        Ok(keys::range::<Event>(self.store.as_ref(), keys::EVENTS)?
            .into_iter()
            .map(|(_, v)| v.value)
            .collect())
    }

    // ----- mirrors and record writes -----

    /// A VM record from the mirror.
    pub fn vm(&self, name: &str) -> Result<Versioned<VmRecord>, CoreError> {
        read(&self.vms)
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::NotFound {
                kind: "VM",
                name: name.to_string(),
            })
    }

    /// Every VM record.
    pub fn vm_records(&self) -> Vec<VmRecord> {
        read(&self.vms).values().map(|v| v.value.clone()).collect()
    }

    /// A host record from the mirror.
    pub fn host(&self, name: &str) -> Result<Versioned<HostRecord>, CoreError> {
        read(&self.hosts)
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::NotFound {
                kind: "host",
                name: name.to_string(),
            })
    }

    /// Every host record.
    pub fn host_records(&self) -> Vec<HostRecord> {
        read(&self.hosts)
            .values()
            .map(|v| v.value.clone())
            .collect()
    }

    /// What the host's virtual switch needs (see [`crate::networks::switch_config`]).
    pub fn switch_config(&self, host: &str) -> Result<vinfra_proto::HostSwitchConfig, CoreError> {
        crate::networks::host_switch_config(self, host)
    }

    /// Every host name.
    pub fn host_names(&self) -> Vec<String> {
        read(&self.hosts).keys().cloned().collect()
    }

    pub fn host_registered(&self, name: &str) -> bool {
        read(&self.hosts).contains_key(name)
    }

    /// Runs one store transaction of `compare` and `success` with a NIC plan's comparisons and
    /// operations added, keeping the networks' mirror in step: the plan applied when it
    /// succeeds, the mirror reloaded when it does not (hold
    /// [`crate::networks::Networks::lock`] when there is a plan).
    fn txn_with_nics(
        &self,
        mut compare: Vec<Compare>,
        mut success: Vec<Op>,
        nics: Option<NicPlan>,
    ) -> Result<vinfra_store::TxnResponse, CoreError> {
        if let Some(plan) = &nics {
            compare.extend(plan.compare.iter().cloned());
            success.extend(plan.ops.iter().cloned());
        }
        let resp = self.store.txn(Txn {
            compare,
            success,
            failure: vec![],
        })?;
        match nics {
            Some(plan) if resp.succeeded => self.networks.applied(plan, resp.revision),
            Some(_) => self.networks.reload(self.store.as_ref()),
            None => {}
        }
        Ok(resp)
    }

    /// Writes a VM record (or deletes it with `None`) if the stored one is still `expected`
    /// (`None`: absent). Store first, then the mirror.
    pub fn write_vm(
        &self,
        name: &str,
        expected: Option<i64>,
        new: Option<&VmRecord>,
    ) -> Result<(), CoreError> {
        self.write_vm_with(name, expected, new, None)
    }

    /// [`Console::write_vm`], with the claims or releases of NIC addresses in the same
    /// transaction (hold [`crate::networks::Networks::lock`]).
    pub fn write_vm_with(
        &self,
        name: &str,
        expected: Option<i64>,
        new: Option<&VmRecord>,
        nics: Option<crate::networks::NicPlan>,
    ) -> Result<(), CoreError> {
        let key = keys::vm_key(name);
        let mut vms = write(&self.vms);
        let current = vms.get(name).map(|v| v.mod_revision);
        if current != expected {
            return Err(CoreError::Conflict(format!(
                "VM '{name}' was changed concurrently; try again"
            )));
        }
        let compare = match expected {
            None => Compare::absent(key.clone()),
            Some(rev) => Compare::mod_revision(key.clone(), rev),
        };
        let op = match new {
            Some(rec) => Op::Put {
                key: key.clone(),
                value: keys::encode(rec)?,
                lease: 0,
            },
            None => Op::Delete { key: key.clone() },
        };
        let resp = self.txn_with_nics(vec![compare], vec![op], nics)?;
        if !resp.succeeded {
            // Someone else wrote the store: reload this key.
            match keys::get::<VmRecord>(self.store.as_ref(), &key)? {
                Some(v) => vms.insert(name.to_string(), v),
                None => vms.remove(name),
            };
            return Err(if expected.is_none() {
                CoreError::Conflict(format!("a VM named '{name}' already exists"))
            } else {
                CoreError::Conflict(format!("VM '{name}' was changed concurrently; try again"))
            });
        }
        match new {
            Some(rec) => {
                vms.insert(
                    name.to_string(),
                    Versioned {
                        value: rec.clone(),
                        mod_revision: resp.revision,
                    },
                );
            }
            None => {
                vms.remove(name);
            }
        }
        Ok(())
    }

    /// Reads the current VM record, applies `f` and writes it back (compare-and-swap).
    pub fn update_vm(
        &self,
        name: &str,
        f: impl FnOnce(&mut VmRecord),
    ) -> Result<VmRecord, CoreError> {
        let cur = self.vm(name)?;
        let mut rec = cur.value;
        f(&mut rec);
        self.write_vm(name, Some(cur.mod_revision), Some(&rec))?;
        Ok(rec)
    }

    /// Reads the current host record, applies `f` and writes it back (compare-and-swap).
    fn update_host_record(
        &self,
        name: &str,
        f: impl FnOnce(&mut HostRecord),
    ) -> Result<HostRecord, CoreError> {
        let key = keys::host_key(name);
        let mut hosts = write(&self.hosts);
        let cur = hosts
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::NotFound {
                kind: "host",
                name: name.to_string(),
            })?;
        let mut rec = cur.value.clone();
        f(&mut rec);
        if rec == cur.value {
            return Ok(rec);
        }
        let resp = self.store.txn(Txn {
            compare: vec![Compare::mod_revision(key.clone(), cur.mod_revision)],
            success: vec![Op::Put {
                key,
                value: keys::encode(&rec)?,
                lease: 0,
            }],
            failure: vec![],
        })?;
        if !resp.succeeded {
            return Err(CoreError::Conflict(format!(
                "host '{name}' was changed concurrently; try again"
            )));
        }
        hosts.insert(
            name.to_string(),
            Versioned {
                value: rec.clone(),
                mod_revision: resp.revision,
            },
        );
        Ok(rec)
    }

    /// Marks a VM busy (an operation in flight); 409 when it already is.
    pub fn busy(&self, name: &str) -> Result<BusyGuard, CoreError> {
        if !lock(&self.busy).insert(name.to_string()) {
            return Err(CoreError::Conflict(format!(
                "another operation on VM '{name}' is in progress; try again when it has finished"
            )));
        }
        Ok(BusyGuard {
            set: self.busy.clone(),
            last_op: self.last_op.clone(),
            name: name.to_string(),
        })
    }

    /// True while an operation on the VM is in flight or finished less than `settle` ago.
    pub fn recently_busy(&self, name: &str, settle: Duration) -> bool {
        lock(&self.busy).contains(name)
            || lock(&self.last_op)
                .get(name)
                .is_some_and(|t| t.elapsed() < settle)
    }

    // ----- placement -----

    /// Ratios in force for a host.
    fn ratios_for(&self, host: &HostRecord) -> AllocationRatios {
        host.ratio_override.unwrap_or(read(&self.settings).ratios)
    }

    /// (vCPUs, memory MiB, VMs placed) per host: VMs that should run count on their host, VMs with
    /// a migration in progress also on the destination.
    fn allocations(&self) -> HashMap<String, (u32, u64, u32)> {
        let mut alloc: HashMap<String, (u32, u64, u32)> = HashMap::new();
        let vms = read(&self.vms);
        for v in vms.values() {
            let e = alloc.entry(v.value.host.clone()).or_default();
            e.2 += 1;
            if v.value.desired == Desired::Running {
                e.0 = e.0.saturating_add(v.value.spec.vcpus);
                e.1 = e.1.saturating_add(v.value.spec.memory_mib);
            }
        }
        for m in lock(&self.migrations).values() {
            if let Some(v) = vms.get(&m.vm) {
                let e = alloc.entry(m.destination.clone()).or_default();
                e.0 = e.0.saturating_add(v.value.spec.vcpus);
                e.1 = e.1.saturating_add(v.value.spec.memory_mib);
            }
        }
        alloc
    }

    /// Placement input for every registered host but `exclude`.
    pub fn placement_inputs(&self, exclude: Option<&str>) -> Vec<HostInput> {
        let alloc = self.allocations();
        let hosts = read(&self.hosts);
        let mut out = vec![];
        for (name, h) in hosts.iter() {
            if Some(name.as_str()) == exclude {
                continue;
            }
            let (status, observed) = self.agents.observed(name);
            let capacity = observed
                .map(|o| o.report.capacity)
                .or(h.value.capacity)
                .unwrap_or(HostCapacity {
                    cores: 0,
                    memory_mib: 0,
                });
            let (vcpus, mem, _) = alloc.get(name).copied().unwrap_or_default();
            let eligible = if status != HostStatus::Connected {
                Eligibility::Disconnected
            } else if h.value.maintenance {
                Eligibility::Maintenance
            } else {
                Eligibility::Ok
            };
            out.push(HostInput {
                name: name.clone(),
                capacity,
                ratios: self.ratios_for(&h.value),
                allocated_vcpus: vcpus,
                allocated_memory_mib: mem,
                eligible,
            });
        }
        out
    }

    /// The interface of `host`'s VLAN trunk: from its latest report, else from its record (what
    /// it said at its last Hello).
    pub fn host_trunk(&self, host: &str) -> Option<String> {
        match self.agents.observed(host).1 {
            Some(o) => o.report.trunk.clone(),
            None => read(&self.hosts)
                .get(host)
                .and_then(|h| h.value.trunk.clone()),
        }
    }

    /// The VLAN networks among `spec`'s NICs, in NIC order, each once.
    pub fn vlan_networks_of(&self, spec: &VmSpec) -> Vec<String> {
        let vlans: HashSet<String> = self
            .networks
            .records()
            .into_iter()
            .filter(|r| r.network.kind == NetworkKind::Vlan)
            .map(|r| r.network.name)
            .collect();
        let mut out: Vec<String> = Vec::new();
        for nic in &spec.nics {
            if vlans.contains(&nic.network) && !out.contains(&nic.network) {
                out.push(nic.network.clone());
            }
        }
        out
    }

    /// Restricts placement input to the hosts that can carry VM `vm`'s VLAN networks (hosts
    /// with a trunk); unchanged when it has no NIC on a VLAN. A `pinned` host without a trunk
    /// is refused naming the host and the network, and so is a restriction that leaves no
    /// host able to take VMs, saying why.
    pub fn trunk_filter(
        &self,
        vm: &str,
        spec: &VmSpec,
        inputs: Vec<HostInput>,
        pinned: Option<&str>,
    ) -> Result<Vec<HostInput>, CoreError> {
        let vlans = self.vlan_networks_of(spec);
        let Some(network) = vlans.first() else {
            return Ok(inputs);
        };
        if let Some(host) = pinned {
            if self.host_registered(host) && self.host_trunk(host).is_none() {
                return Err(CoreError::NoTrunk(format!(
                    "host '{host}' cannot take VM '{vm}': the VM has a NIC on VLAN network \
                     '{network}' and the host has no VLAN trunk (its agent runs without \
                     --trunk-interface)"
                )));
            }
        }
        let (with, without): (Vec<HostInput>, Vec<HostInput>) = inputs
            .into_iter()
            .partition(|h| self.host_trunk(&h.name).is_some());
        if pinned.is_none() && !with.iter().any(|h| h.eligible == Eligibility::Ok) {
            let skipped: Vec<&str> = without.iter().map(|h| h.name.as_str()).collect();
            let unfit =
                (!skipped.is_empty()).then(|| format!("{} without a trunk", skipped.join(", ")));
            let why = why_no_host(&with, unfit.as_slice());
            return Err(CoreError::NoTrunk(format!(
                "no host can take VM '{vm}': its NIC on VLAN network '{network}' needs a host \
                 with a VLAN trunk (an agent started with --trunk-interface), and {why}"
            )));
        }
        Ok(with)
    }

    /// `host`'s underlay IP MTU: from its latest report, else from its record (what it said at
    /// its last Hello; 1500 for a host never heard from or an agent that does not say).
    pub fn host_underlay_mtu(&self, host: &str) -> u32 {
        match self.agents.observed(host).1 {
            Some(o) => o.report.underlay_mtu,
            None => read(&self.hosts)
                .get(host)
                .map_or(UNDERLAY_MTU, |h| h.value.underlay_mtu),
        }
    }

    /// The overlay network among `spec`'s NICs with the largest MTU (the first in NIC order on
    /// a tie), with the underlay MTU it needs (its MTU + the VXLAN encapsulation); `None` when
    /// the VM has no NIC on an overlay network.
    pub fn overlay_need_of(&self, spec: &VmSpec) -> Option<OverlayNeed> {
        let overlays: HashMap<String, u32> = self
            .networks
            .records()
            .into_iter()
            .filter(|r| r.network.kind == NetworkKind::Overlay)
            .map(|r| (r.network.name, r.network.mtu))
            .collect();
        let mut out: Option<OverlayNeed> = None;
        for nic in &spec.nics {
            let Some(&mtu) = overlays.get(&nic.network) else {
                continue;
            };
            if out.as_ref().is_none_or(|o| mtu > o.mtu) {
                out = Some(OverlayNeed {
                    network: nic.network.clone(),
                    mtu,
                    underlay_mtu: underlay_mtu_for_overlay(mtu),
                });
            }
        }
        out
    }

    /// Restricts placement input to the hosts whose underlay carries VM `vm`'s overlay networks
    /// (underlay MTU at least the largest network MTU + the VXLAN encapsulation); unchanged when
    /// it has no NIC on an overlay. A `pinned` host with a smaller underlay is refused naming the
    /// host, its underlay MTU, the network and the MTU needed, and so is a restriction that
    /// leaves no host able to take VMs, saying why.
    pub fn underlay_filter(
        &self,
        vm: &str,
        spec: &VmSpec,
        inputs: Vec<HostInput>,
        pinned: Option<&str>,
    ) -> Result<Vec<HostInput>, CoreError> {
        let Some(need) = self.overlay_need_of(spec) else {
            return Ok(inputs);
        };
        let OverlayNeed {
            network,
            mtu,
            underlay_mtu: needed,
        } = &need;
        if let Some(host) = pinned {
            let has = self.host_underlay_mtu(host);
            if self.host_registered(host) && has < *needed {
                return Err(CoreError::UnderlayMtu(format!(
                    "host '{host}' cannot take VM '{vm}': its underlay MTU is {has}, and the VM's \
                     NIC on overlay network '{network}' (MTU {mtu}) needs an underlay MTU of at \
                     least {needed} ({mtu} + {VXLAN_OVERHEAD} bytes of VXLAN encapsulation; its \
                     agent's --underlay-mtu)"
                )));
            }
        }
        let (fit, small): (Vec<HostInput>, Vec<HostInput>) = inputs
            .into_iter()
            .partition(|h| self.host_underlay_mtu(&h.name) >= *needed);
        if pinned.is_none() && !fit.iter().any(|h| h.eligible == Eligibility::Ok) {
            let unfit: Vec<String> = small
                .iter()
                .map(|h| {
                    format!(
                        "{}: underlay MTU {}",
                        h.name,
                        self.host_underlay_mtu(&h.name)
                    )
                })
                .collect();
            let why = why_no_host(&fit, &unfit);
            return Err(CoreError::UnderlayMtu(format!(
                "no host can take VM '{vm}': its NIC on overlay network '{network}' (MTU {mtu}) \
                 needs a host with an underlay MTU of at least {needed} ({mtu} + \
                 {VXLAN_OVERHEAD} bytes of VXLAN encapsulation), and {why}"
            )));
        }
        Ok(fit)
    }

    /// Restricts placement input to the hosts that can carry VM `vm`'s networks:
    /// [`Console::trunk_filter`], then [`Console::underlay_filter`].
    pub fn network_filter(
        &self,
        vm: &str,
        spec: &VmSpec,
        inputs: Vec<HostInput>,
        pinned: Option<&str>,
    ) -> Result<Vec<HostInput>, CoreError> {
        let inputs = self.trunk_filter(vm, spec, inputs, pinned)?;
        self.underlay_filter(vm, spec, inputs, pinned)
    }

    /// Takes the placement lock: hold it from the placement decision until the record that claims
    /// the capacity is written.
    pub async fn placement_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.placement.lock().await
    }

    // ----- hosts -----

    fn host_summary(
        &self,
        rec: &HostRecord,
        alloc: &HashMap<String, (u32, u64, u32)>,
        settings: &ClusterSettings,
    ) -> HostSummary {
        let (status, observed) = self.agents.observed(&rec.name);
        let report = observed.as_ref().map(|o| o.report.clone());
        let capacity = report
            .as_ref()
            .map(|r| r.capacity)
            .or(rec.capacity)
            .unwrap_or(HostCapacity {
                cores: 0,
                memory_mib: 0,
            });
        let ratios = rec.ratio_override.unwrap_or(settings.ratios);
        let (vcpus, mem, count) = alloc.get(&rec.name).copied().unwrap_or_default();
        HostSummary {
            name: rec.name.clone(),
            address: rec.address.clone(),
            status,
            accel: report.as_ref().map(|r| r.accel).or(rec.accel),
            qemu_version: report
                .as_ref()
                .map(|r| r.qemu_version.clone())
                .or(rec.qemu_version.clone()),
            capacity,
            ratios,
            ratio_override: rec.ratio_override,
            allocated_vcpus: vcpus,
            allocated_memory_mib: mem,
            allocatable_vcpus: (f64::from(capacity.cores) * ratios.cpu).floor() as u32,
            allocatable_memory_mib: (capacity.memory_mib as f64 * ratios.memory).floor() as u64,
            usage: report
                .as_ref()
                .map(|r| r.usage)
                .unwrap_or(HostUsage::default()),
            vm_count: count,
            last_seen_s: observed.map(|o| o.received.elapsed().as_secs()),
            maintenance: rec.maintenance,
            trunk: report
                .as_ref()
                .map_or(rec.trunk.clone(), |r| r.trunk.clone()),
            underlay_mtu: report.map_or(rec.underlay_mtu, |r| r.underlay_mtu),
        }
    }

    fn list_hosts(&self) -> Vec<HostSummary> {
        let alloc = self.allocations();
        let settings = read(&self.settings).clone();
        let hosts: Vec<HostRecord> = read(&self.hosts)
            .values()
            .map(|h| h.value.clone())
            .collect();
        hosts
            .iter()
            .map(|h| self.host_summary(h, &alloc, &settings))
            .collect()
    }

    fn show_host(&self, name: &str) -> Result<HostSummary, CoreError> {
        let rec = self.host(name)?.value;
        let settings = read(&self.settings).clone();
        Ok(self.host_summary(&rec, &self.allocations(), &settings))
    }

    fn update_host(&self, name: &str, update: UpdateHostRequest) -> Result<HostSummary, CoreError> {
        if let Some(Some(r)) = &update.ratios {
            r.validate().map_err(CoreError::Invalid)?;
        }
        self.host(name)?;
        let rebalance = update.maintenance == Some(true) || update.ratios.is_some();
        let rec = self.update_host_record(name, |h| {
            if let Some(r) = update.ratios {
                h.ratio_override = r;
            }
            if let Some(m) = update.maintenance {
                h.maintenance = m;
            }
        })?;
        self.event(
            "host",
            name,
            format!(
                "updated: ratio override {:?}, maintenance {}",
                rec.ratio_override, rec.maintenance
            ),
        );
        if rebalance {
            // An evacuation or a capacity change: balance soon.
            self.drs.wake();
        }
        self.show_host(name)
    }

    async fn delete_host(&self, name: &str) -> Result<(), CoreError> {
        self.remove_host_record(name)?;
        // The host never gets in again: the VMs that may still exist there can no longer be
        // removed through it, so their addresses are not held any longer.
        for (key, m) in self.cleanups(Some(name))? {
            match self.finish_cleanup(&key, &m).await {
                Ok(true) => self.event(
                    "vm",
                    &m.value.vm,
                    format!(
                        "host {name} was removed before it confirmed the VM's removal; its \
                         addresses are released"
                    ),
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(host = name, vm = m.value.vm, "cleanup marker: {e}"),
            }
        }
        Ok(())
    }

    fn remove_host_record(&self, name: &str) -> Result<(), CoreError> {
        let cur = self.host(name)?;
        let placed: Vec<String> = read(&self.vms)
            .values()
            .filter(|v| v.value.host == name)
            .map(|v| v.value.spec.name.clone())
            .take(5)
            .collect();
        if !placed.is_empty() {
            return Err(CoreError::Conflict(format!(
                "host '{name}' still has VMs placed on it ({}); delete or migrate them first",
                placed.join(", ")
            )));
        }
        let key = keys::host_key(name);
        let mut hosts = write(&self.hosts);
        let resp = self.store.txn(Txn {
            compare: vec![Compare::mod_revision(key.clone(), cur.mod_revision)],
            success: vec![Op::Delete { key }],
            failure: vec![],
        })?;
        if !resp.succeeded {
            return Err(CoreError::Conflict(format!(
                "host '{name}' was changed concurrently; try again"
            )));
        }
        hosts.remove(name);
        drop(hosts);
        self.agents.forget(name);
        self.event("host", name, "removed from the cluster");
        Ok(())
    }

    /// Joins a host: burns the token, registers the host and signs its certificate.
    /// Returns `(cert_pem, ca_pem)`.
    pub fn join_host(
        &self,
        token: &str,
        host: &str,
        csr_pem: &str,
        peer: IpAddr,
    ) -> Result<(String, String), JoinError> {
        vinfra_types::validate_name(host)?;
        let token = JoinToken::parse(token).map_err(|e| JoinError::Token(e.to_string()))?;
        if token.ca_fingerprint != self.ca.fingerprint() {
            return Err(JoinError::Token("it was issued by another cluster".into()));
        }
        let key = keys::join_token_key(&token.secret_hash());
        let Some(stored) = keys::get::<JoinTokenRecord>(self.store.as_ref(), &key)? else {
            return Err(JoinError::Token("unknown or already used".into()));
        };
        if stored.value.expires_at < now_s() {
            let _ = self.store.delete(&key);
            return Err(JoinError::Token("expired".into()));
        }
        if self.host_registered(host) {
            return Err(JoinError::HostExists(host.to_string()));
        }
        let cert_pem = self
            .ca
            .sign_host_csr(csr_pem, host)
            .map_err(JoinError::Csr)?;
        let rec = HostRecord {
            name: host.to_string(),
            address: peer.to_string(),
            joined_at: now_s(),
            ratio_override: None,
            maintenance: false,
            capacity: None,
            accel: None,
            qemu_version: None,
            trunk: None,
            underlay_mtu: UNDERLAY_MTU,
        };
        let host_key = keys::host_key(host);
        let mut hosts = write(&self.hosts);
        let resp = self.store.txn(Txn {
            compare: vec![
                Compare::mod_revision(key.clone(), stored.mod_revision),
                Compare::absent(host_key.clone()),
            ],
            success: vec![
                Op::Delete { key },
                Op::Put {
                    key: host_key,
                    value: keys::encode(&rec)?,
                    lease: 0,
                },
            ],
            failure: vec![],
        })?;
        if !resp.succeeded {
            return Err(JoinError::Token(
                "already used, or the host name was registered meanwhile".into(),
            ));
        }
        hosts.insert(
            host.to_string(),
            Versioned {
                value: rec,
                mod_revision: resp.revision,
            },
        );
        drop(hosts);
        self.event("host", host, format!("joined from {peer}"));
        Ok((cert_pem, self.ca.cert_pem().to_string()))
    }

    /// Remembers what a host said in its Hello (address, capacity, accelerator, QEMU version,
    /// VLAN trunk, underlay MTU).
    pub fn host_hello(&self, report: &vinfra_proto::HostReport) {
        let res = self.update_host_record(&report.host, |h| {
            h.address = report.address.clone();
            h.capacity = Some(report.capacity);
            h.accel = Some(report.accel);
            h.qemu_version = Some(report.qemu_version.clone());
            h.trunk = report.trunk.clone();
            h.underlay_mtu = report.underlay_mtu;
        });
        if let Err(e) = res {
            tracing::warn!(host = report.host, "host record not updated: {e}");
        }
    }

    // ----- settings and tokens -----

    fn put_settings(&self, settings: ClusterSettings) -> Result<ClusterSettings, CoreError> {
        settings.validate().map_err(CoreError::Invalid)?;
        let mut cur = write(&self.settings);
        keys::put(self.store.as_ref(), keys::SETTINGS, &settings)?;
        *cur = settings.clone();
        drop(cur);
        let bandwidth = settings
            .migration_max_bandwidth_mib
            .map_or("unlimited".to_string(), |b| format!("{b} MiB/s"));
        self.event(
            "settings",
            "cluster",
            format!(
                "ratios cpu {} memory {}, migration bandwidth {bandwidth}, downtime limit {} ms",
                settings.ratios.cpu,
                settings.ratios.memory,
                settings.effective_downtime_limit_ms()
            ),
        );
        let b = &settings.balancing;
        self.event(
            "settings",
            "cluster",
            format!(
                "balancing {} level {} every {} s, at most {} moves per host and {} in all, \
                 hysteresis {} min",
                b.mode.as_str(),
                b.level,
                b.interval_s,
                b.max_moves_per_host,
                b.max_moves_total,
                b.hysteresis_minutes
            ),
        );
        self.drs.wake();
        Ok(settings)
    }

    fn create_join_token(&self) -> Result<JoinTokenResponse, CoreError> {
        let token = JoinToken::generate(&self.ca.fingerprint())?;
        let rec = JoinTokenRecord {
            expires_at: now_s() + JOIN_TOKEN_TTL_S,
        };
        keys::put(
            self.store.as_ref(),
            &keys::join_token_key(&token.secret_hash()),
            &rec,
        )?;
        self.event("token", "join", "join token issued");
        Ok(JoinTokenResponse {
            token: token.to_string(),
            expires_in_s: JOIN_TOKEN_TTL_S,
        })
    }

    fn rotate_token(&self) -> Result<TokenResponse, CoreError> {
        let token = vinfra_proto::pki::generate_api_token();
        let hash = vinfra_proto::pki::token_hash(&token);
        let mut cur = write(&self.api_token_hash);
        keys::put(
            self.store.as_ref(),
            keys::API_TOKEN,
            &ApiTokenRecord { hash: hash.clone() },
        )?;
        *cur = hash;
        drop(cur);
        self.event("token", "api", "API token rotated");
        Ok(TokenResponse { token })
    }

    // ----- VMs -----

    fn observed_index(&self) -> HashMap<String, (HostStatus, Arc<vinfra_proto::HostReport>)> {
        self.agents
            .snapshot()
            .into_iter()
            .map(|(h, (s, o))| (h, (s, o.report)))
            .collect()
    }

    fn vm_summary(
        rec: &VmRecord,
        observed: &HashMap<String, (HostStatus, Arc<vinfra_proto::HostReport>)>,
    ) -> VmSummary {
        let connected = matches!(observed.get(&rec.host), Some((HostStatus::Connected, _)));
        let seen = match observed.get(&rec.host) {
            Some((HostStatus::Connected, report)) => report.vms.iter().find(|v| v.id == rec.id),
            _ => None,
        };
        Self::merge_summary(rec, connected, seen)
    }

    /// A VM record merged with what its host last reported (`connected`: the host is; `seen`: its
    /// report lists the VM).
    fn merge_summary(rec: &VmRecord, connected: bool, seen: Option<&VmObserved>) -> VmSummary {
        let (state, uptime_s, usage) = match (connected, seen) {
            (false, _) => (PowerState::Unknown, 0, VmUsage::default()),
            (true, None) => (PowerState::Stopped, 0, VmUsage::default()),
            (true, Some(v)) => (v.state, v.uptime_s, v.usage.clone()),
        };
        VmSummary {
            id: rec.id,
            name: rec.spec.name.clone(),
            vcpus: rec.spec.vcpus,
            memory_mib: rec.spec.memory_mib,
            host: rec.host.clone(),
            desired: rec.desired.power_state(),
            state,
            uptime_s,
            usage,
            spec: rec.spec.clone(),
            created_at: rec.created_at,
        }
    }

    fn list_vms(&self) -> Vec<VmSummary> {
        let observed = self.observed_index();
        // Index reports by host and VM id once, so the merge is linear. Keyed by both: right
        // after a migration the paused source and the destination may both list the VM.
        let mut by_id: HashMap<(&str, Uuid), &VmObserved> = HashMap::new();
        for (host, (status, report)) in &observed {
            if *status == HostStatus::Connected {
                for v in &report.vms {
                    by_id.insert((host.as_str(), v.id), v);
                }
            }
        }
        let vms = read(&self.vms);
        vms.values()
            .map(|v| {
                let rec = &v.value;
                let connected = matches!(observed.get(&rec.host), Some((HostStatus::Connected, _)));
                let seen = by_id.get(&(rec.host.as_str(), rec.id)).copied();
                Self::merge_summary(rec, connected, seen)
            })
            .collect()
    }

    /// The API view of one VM.
    pub fn show_vm(&self, name: &str) -> Result<VmSummary, CoreError> {
        let rec = self.vm(name)?.value;
        Ok(Self::vm_summary(&rec, &self.observed_index()))
    }

    fn summary_after(
        &self,
        name: &str,
        reply: Option<CommandReply>,
    ) -> Result<VmSummary, CoreError> {
        let mut s = self.show_vm(name)?;
        if let Some(CommandReply::Vm { vm }) = reply {
            s.state = vm.state;
            s.uptime_s = vm.uptime_s;
            s.usage = vm.usage;
        }
        Ok(s)
    }

    async fn create_vm(&self, request: CreateVmRequest) -> Result<VmSummary, CoreError> {
        let mut spec = request.spec;
        spec.validate()
            .map_err(|e| CoreError::Invalid(e.to_string()))?;
        if let Some(h) = &request.host {
            vinfra_types::validate_name(h).map_err(|e| CoreError::Invalid(format!("host: {e}")))?;
        }
        let name = spec.name.clone();
        let _busy = self.busy(&name)?;
        if read(&self.vms).contains_key(&name) {
            return Err(CoreError::Conflict(format!(
                "a VM named '{name}' already exists"
            )));
        }
        if let Some((_, m)) = self
            .cleanups(None)?
            .into_iter()
            .find(|(_, m)| m.value.vm == name)
        {
            return Err(CoreError::Conflict(format!(
                "an earlier VM named '{name}' may still exist on host '{}' and holds its \
                 addresses until that host confirms its removal; try again later",
                m.value.host
            )));
        }
        let rec = {
            let _placement = self.placement_lock().await;
            // Addresses and MACs are settled first (their errors name the NIC) and claimed with
            // the record, in one transaction.
            let _networks = self.networks.lock().await;
            let id = Uuid::new_v4();
            let plan = self.networks.assign_nics(&name, id, &mut spec.nics)?;
            crate::networks::add_lab_guest_ip(&mut spec, &plan);
            spec.validate()
                .map_err(|e| CoreError::Invalid(e.to_string()))?;
            if let Some(h) = &request.host {
                if !self.host_registered(h) {
                    return Err(CoreError::NotFound {
                        kind: "host",
                        name: h.clone(),
                    });
                }
            }
            let hosts = self.network_filter(
                &name,
                &spec,
                self.placement_inputs(None),
                request.host.as_deref(),
            )?;
            let req = vinfra_placement::Request {
                vm: name.clone(),
                vcpus: spec.vcpus,
                memory_mib: spec.memory_mib,
            };
            let placed = balancing::place_new_vm(self, &hosts, &req, request.host.as_deref())?;
            let rec = VmRecord {
                id,
                spec,
                host: placed.host.clone(),
                desired: if request.start {
                    Desired::Running
                } else {
                    Desired::Stopped
                },
                created_at: now_s(),
                started_at: request.start.then(now_s),
            };
            self.write_vm_with(&name, None, Some(&rec), Some(plan))?;
            rec
        };
        if !rec.spec.nics.is_empty() {
            // The host's switch must know the VM's networks before the agent attaches its NICs.
            if let Err(e) = crate::controllers::switch::push(self, &rec.host).await {
                tracing::warn!(vm = name, host = rec.host, "switch configuration: {e}");
            }
        }
        let cmd = AgentCommand::CreateVm {
            vm: rec.instance(),
            start: request.start,
        };
        match self
            .agents
            .request(&rec.host, cmd, self.create_timeout)
            .await
        {
            Ok(reply) => {
                self.event("vm", &name, format!("created on {}", rec.host));
                self.summary_after(&name, Some(reply))
            }
            Err(e) => {
                // Nothing half-created: the record goes again; what the host may have made of
                // the VM is removed now, or by the VM controller when the outcome is unclear.
                let leave = self.unconfirmed_create(&rec, &e).await;
                if let Ok(cur) = self.vm(&name) {
                    if let Err(de) = self.forget_vm(&name, cur.mod_revision, &rec, leave).await {
                        tracing::error!(vm = name, "rolling back VM record: {de}");
                    }
                }
                let after = if leave.is_some() {
                    "; the VM may exist there: it is removed when the host answers, and its \
                     addresses stay reserved until then"
                } else {
                    ""
                };
                self.event(
                    "vm",
                    &name,
                    format!("creation on {} failed: {e}{after}", rec.host),
                );
                Err(e.into())
            }
        }
    }

    /// After a `CreateVm` that failed with `e`: `None` when the host certainly has nothing of
    /// the VM, else why it may have (a cleanup marker is then left).
    async fn unconfirmed_create(&self, rec: &VmRecord, e: &RequestError) -> Option<CleanupReason> {
        match e {
            // The command never left the console: the host has no connection to get it from.
            RequestError::NotConnected { .. } => None,
            // A clear refusal: the agent undoes its own partial work; the removal confirms it.
            RequestError::Agent { .. } => {
                let del = AgentCommand::DeleteVm {
                    id: rec.id,
                    delete_disks: true,
                };
                match self.agents.request(&rec.host, del, SHORT_TIMEOUT).await {
                    Ok(_)
                    | Err(RequestError::Agent {
                        source: AgentError::NoSuchVm { .. },
                        ..
                    }) => None,
                    Err(de) => {
                        tracing::warn!(
                            vm = rec.spec.name,
                            host = rec.host,
                            "removal after a refused creation: {de}"
                        );
                        Some(CleanupReason::CreateUnconfirmed)
                    }
                }
            }
            // No answer: the host may have created the VM, or may still be creating it.
            RequestError::Timeout { .. } | RequestError::ConnectionLost { .. } => {
                Some(CleanupReason::CreateUnconfirmed)
            }
        }
    }

    /// Deletes the record of VM `name` (stored at revision `expected`). `leave: None` releases
    /// its addresses and MACs in the same transaction; `Some(reason)` keeps them and writes a
    /// cleanup marker instead, so that the VM controller removes the VM from its host and
    /// releases them once the host confirms it is gone.
    async fn forget_vm(
        &self,
        name: &str,
        expected: i64,
        rec: &VmRecord,
        leave: Option<CleanupReason>,
    ) -> Result<(), CoreError> {
        let _networks = self.networks.lock().await;
        let plan = match leave {
            None => self.networks.release_nics(name)?,
            Some(reason) => {
                let key = keys::cleanup_key(&rec.host, name, rec.id);
                let marker = CleanupRecord {
                    vm: name.to_string(),
                    id: rec.id,
                    host: rec.host.clone(),
                    reason,
                    since: now_s(),
                };
                NicPlan::other_writes(
                    vec![Compare::absent(key.clone())],
                    vec![Op::Put {
                        key,
                        value: keys::encode(&marker)?,
                        lease: 0,
                    }],
                )
            }
        };
        self.write_vm_with(name, Some(expected), None, Some(plan))
    }

    /// The cleanup markers (full key, record), of `host` or of every host.
    pub fn cleanups(
        &self,
        host: Option<&str>,
    ) -> Result<Vec<(String, Versioned<CleanupRecord>)>, CoreError> {
        let prefix = host.map_or(keys::CLEANUPS.to_string(), keys::cleanup_prefix);
        Ok(keys::range::<CleanupRecord>(self.store.as_ref(), &prefix)?
            .into_iter()
            .map(|(rest, m)| (format!("{prefix}{rest}"), m))
            .collect())
    }

    /// The VM of a cleanup marker is gone from its host: removes the marker (if it is still
    /// the one read) and releases the VM's addresses and MACs, in one transaction. False when
    /// the marker changed or went meanwhile.
    pub async fn finish_cleanup(
        &self,
        key: &str,
        marker: &Versioned<CleanupRecord>,
    ) -> Result<bool, CoreError> {
        let _networks = self.networks.lock().await;
        let plan = self.networks.release_nics(&marker.value.vm)?;
        let compare = Compare::mod_revision(key.to_string(), marker.mod_revision);
        let delete = Op::Delete {
            key: key.to_string(),
        };
        Ok(self
            .txn_with_nics(vec![compare], vec![delete], Some(plan))?
            .succeeded)
    }

    fn refuse_while_migrating(&self, name: &str) -> Result<(), CoreError> {
        if lock(&self.migrations).contains_key(name) {
            return Err(CoreError::Conflict(format!(
                "VM '{name}' is being migrated"
            )));
        }
        Ok(())
    }

    async fn start_vm(&self, name: &str) -> Result<VmSummary, CoreError> {
        let _busy = self.busy(name)?;
        self.refuse_while_migrating(name)?;
        let cur = self.vm(name)?;
        let mut changed = false;
        if cur.value.desired != Desired::Running {
            let _placement = self.placement_lock().await;
            let inputs: Vec<HostInput> = self
                .network_filter(
                    name,
                    &cur.value.spec,
                    self.placement_inputs(None),
                    Some(&cur.value.host),
                )?
                .into_iter()
                .filter(|h| h.name == cur.value.host)
                .map(|mut h| {
                    // Maintenance keeps new VMs away, not the start of one already there.
                    if h.eligible == Eligibility::Maintenance {
                        h.eligible = Eligibility::Ok;
                    }
                    h
                })
                .collect();
            let req = vinfra_placement::Request {
                vm: name.to_string(),
                vcpus: cur.value.spec.vcpus,
                memory_mib: cur.value.spec.memory_mib,
            };
            vinfra_placement::place(&inputs, &req, Some(&cur.value.host))?;
            self.update_vm(name, |r| {
                r.desired = Desired::Running;
                r.started_at = Some(now_s());
            })?;
            changed = true;
        }
        let rec = self.vm(name)?.value;
        if !changed && self.observed_state(&rec.host, rec.id) == Some(PowerState::Running) {
            return self.show_vm(name);
        }
        if let Some((other, state)) = self.live_elsewhere(rec.id, &rec.host) {
            if changed {
                let _ = self.update_vm(name, |r| r.desired = Desired::Stopped);
            }
            return Err(CoreError::Conflict(format!(
                "VM '{name}' is {state:?} on host '{other}' although it is placed on '{}'; \
                 it is not started a second time",
                rec.host
            )));
        }
        let known = self.host_knows(&rec.host, rec.id);
        let cmd = if known {
            AgentCommand::StartVm { id: rec.id }
        } else {
            AgentCommand::CreateVm {
                vm: rec.instance(),
                start: true,
            }
        };
        match self.agents.request(&rec.host, cmd, CREATE_TIMEOUT).await {
            Ok(reply) => {
                self.event("vm", name, "started");
                self.summary_after(name, Some(reply))
            }
            Err(e) => {
                if changed {
                    let _ = self.update_vm(name, |r| r.desired = Desired::Stopped);
                }
                Err(e.into())
            }
        }
    }

    /// The VM's state in its host's latest report, while the host is connected.
    pub fn observed_state(&self, host: &str, id: Uuid) -> Option<PowerState> {
        match self.agents.observed(host) {
            (HostStatus::Connected, Some(o)) => {
                o.report.vms.iter().find(|v| v.id == id).map(|v| v.state)
            }
            _ => None,
        }
    }

    /// Another host (connected or not) whose latest report shows the VM live: running, paused,
    /// migrating or waiting for an incoming migration.
    pub fn live_elsewhere(&self, id: Uuid, host: &str) -> Option<(String, PowerState)> {
        self.agents
            .snapshot()
            .into_iter()
            .filter(|(h, _)| h != host)
            .find_map(|(h, (_, o))| {
                o.report
                    .vms
                    .iter()
                    .find(|v| {
                        v.id == id
                            && matches!(
                                v.state,
                                PowerState::Running
                                    | PowerState::Paused
                                    | PowerState::Migrating
                                    | PowerState::Incoming
                            )
                    })
                    .map(|v| (h.clone(), v.state))
            })
    }

    /// True when the host's latest report lists the VM.
    pub fn host_knows(&self, host: &str, id: Uuid) -> bool {
        self.agents
            .observed(host)
            .1
            .is_some_and(|o| o.report.vms.iter().any(|v| v.id == id))
    }

    async fn stop_vm(&self, name: &str, request: StopVmRequest) -> Result<VmSummary, CoreError> {
        let timeout_s = request.timeout_s.unwrap_or(STOP_TIMEOUT_DEFAULT_S);
        if timeout_s > STOP_TIMEOUT_MAX_S {
            return Err(CoreError::Invalid(format!(
                "timeout_s must be at most {STOP_TIMEOUT_MAX_S}, got {timeout_s}"
            )));
        }
        let _busy = self.busy(name)?;
        self.refuse_while_migrating(name)?;
        let cur = self.vm(name)?;
        let was = cur.value.desired;
        if was != Desired::Stopped {
            self.update_vm(name, |r| r.desired = Desired::Stopped)?;
        }
        let cmd = AgentCommand::StopVm {
            id: cur.value.id,
            force: request.force,
            timeout_s,
        };
        let wait = Duration::from_secs(timeout_s) + SHORT_TIMEOUT;
        match self.agents.request(&cur.value.host, cmd, wait).await {
            Ok(reply) => {
                self.event(
                    "vm",
                    name,
                    if request.force {
                        "powered off"
                    } else {
                        "stopped"
                    },
                );
                self.summary_after(name, Some(reply))
            }
            Err(RequestError::Agent {
                source: AgentError::NoSuchVm { .. },
                ..
            }) => self.summary_after(name, None),
            Err(e) => {
                if was != Desired::Stopped {
                    let _ = self.update_vm(name, |r| r.desired = was);
                }
                Err(e.into())
            }
        }
    }

    async fn reboot_vm(&self, name: &str) -> Result<VmSummary, CoreError> {
        let _busy = self.busy(name)?;
        self.refuse_while_migrating(name)?;
        let rec = self.vm(name)?.value;
        if rec.desired != Desired::Running {
            return Err(CoreError::Conflict(format!(
                "VM '{name}' is stopped; start it instead"
            )));
        }
        let reply = self
            .agents
            .request(
                &rec.host,
                AgentCommand::RebootVm { id: rec.id },
                SHORT_TIMEOUT,
            )
            .await?;
        self.event("vm", name, "rebooted");
        self.summary_after(name, Some(reply))
    }

    async fn delete_vm(&self, name: &str, force: bool) -> Result<(), CoreError> {
        let _busy = self.busy(name)?;
        self.refuse_while_migrating(name)?;
        let cur = self.vm(name)?;
        let rec = &cur.value;
        let leave = if self.agents.status(&rec.host) != HostStatus::Connected {
            if !force {
                return Err(CoreError::Conflict(format!(
                    "host '{}' of VM '{name}' is disconnected; its disks cannot be deleted now \
                     (use ?force=true to forget the VM anyway)",
                    rec.host
                )));
            }
            // The VM may still run there: it is removed when the host reconnects.
            Some(CleanupReason::ForcedDelete)
        } else {
            let ignore_missing = |r: Result<CommandReply, RequestError>| match r {
                Err(RequestError::Agent {
                    source: AgentError::NoSuchVm { .. },
                    ..
                }) => Ok(()),
                Err(e) => Err(e),
                Ok(_) => Ok(()),
            };
            let stop = AgentCommand::StopVm {
                id: rec.id,
                force: true,
                timeout_s: 0,
            };
            let stopped = ignore_missing(self.agents.request(&rec.host, stop, SHORT_TIMEOUT).await);
            if let Err(e) = stopped {
                // A VM that is already stopped may refuse a stop; deletion decides.
                tracing::debug!(vm = name, "stop before delete: {e}");
            }
            let del = AgentCommand::DeleteVm {
                id: rec.id,
                delete_disks: true,
            };
            ignore_missing(self.agents.request(&rec.host, del, CREATE_TIMEOUT).await)?;
            None
        };
        self.forget_vm(name, cur.mod_revision, rec, leave).await?;
        let _ = self.store.delete(&keys::migration_key(name));
        if leave.is_some() {
            self.event(
                "vm",
                name,
                format!(
                    "forgotten while host {} is disconnected; it is removed there when the host \
                     reconnects, and its addresses stay reserved until then",
                    rec.host
                ),
            );
        } else {
            self.event("vm", name, format!("deleted from {}", rec.host));
        }
        Ok(())
    }

    fn show_migration(&self, name: &str) -> Result<MigrationProgress, CoreError> {
        self.vm(name)?;
        if let Some(m) = lock(&self.migrations).get(name) {
            return Ok(m.progress());
        }
        keys::get::<MigrationProgress>(self.store.as_ref(), &keys::migration_key(name))?
            .map(|v| v.value)
            .ok_or_else(|| CoreError::NotFound {
                kind: "migration of VM",
                name: name.to_string(),
            })
    }

    async fn console_log(&self, name: &str, bytes: Option<u64>) -> Result<ConsoleLog, CoreError> {
        let max_bytes = bytes.unwrap_or(CONSOLE_LOG_DEFAULT);
        if max_bytes == 0 || max_bytes > CONSOLE_LOG_MAX {
            return Err(CoreError::Invalid(format!(
                "bytes must be between 1 and {CONSOLE_LOG_MAX}, got {max_bytes}"
            )));
        }
        let rec = self.vm(name)?.value;
        let reply = self
            .agents
            .request(
                &rec.host,
                AgentCommand::ConsoleLog {
                    id: rec.id,
                    max_bytes,
                },
                SHORT_TIMEOUT,
            )
            .await?;
        match reply {
            CommandReply::Console { text } => Ok(ConsoleLog { text }),
            other => Err(CoreError::Agent(RequestError::Agent {
                host: rec.host,
                source: AgentError::Host {
                    detail: format!("unexpected reply {other:?}"),
                },
            })),
        }
    }
}

/// Why a placement restriction left no host able to take a VM: there was no candidate, none
/// had what the VM needs (`unfit`: the hosts skipped, with why), or none of those that had it
/// (`fit`) can take VMs now.
fn why_no_host(fit: &[HostInput], unfit: &[String]) -> String {
    if fit.is_empty() && unfit.is_empty() {
        "there is no candidate host".to_string()
    } else if fit.is_empty() {
        format!("no candidate host has one ({})", unfit.join(", "))
    } else {
        let why: Vec<String> = fit
            .iter()
            .map(|h| format!("{}: {}", h.name, h.eligible))
            .collect();
        format!("none of those can take VMs now ({})", why.join("; "))
    }
}
