//! The [`Console`]: the store, the agent registry, the CA, the in-memory mirrors of the VM
//! (by name, by host and by id), host and network records and of the VM names the cleanup
//! markers hold, the settings, what is in flight and the event log; and the reads every
//! resource module stands on. Writes of mirrored records are in `writes.rs`; each marks what
//! placement reads again at its next decision.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use vinfra_proto::pki::ClusterCa;
use vinfra_store::Store;
use vinfra_types::api::{ClusterSettings, Event};
use vinfra_types::balancing::PlacementRule;
use vinfra_types::filter::{EventFilter, ListFilter};
use vinfra_types::{AllocationRatios, HostCapacity};

use super::events::{self, EventLog};
use super::inflight::Inflight;
use super::locks::{read, write};
use super::records::{
    self as keys, CleanupRecord, DesiredPower, HostRecord, NetworkRecord, RouterRecord,
    SecurityGroupRecord, Versioned, VmRecord,
};
use super::underlay::UnderlayIndex;
pub(super) use super::vm_mirror::VmMirror;
use crate::agents::AgentRegistry;
use crate::error::{Error, Object, RecordError};
use crate::metrics::Metrics;

/// How long the console waits for an agent to create or start a VM (the default of
/// `ConsoleConfig::create_timeout` for `POST /vms`).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the console waits for short agent commands.
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a request answered at once (not with a task) waits for an agent: such a
/// request answers within 1 s, a host slower than that counting as one that did not answer
/// (docs/design.md "REST API").
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// How long the source of a migration may stay unreachable before the outcome is decided
/// without it (default of `ConsoleConfig::migration_source_timeout`).
pub const SOURCE_LOST_AFTER: Duration = Duration::from_secs(30);
/// How long a host's fence command may run before it is killed and counts as failed (default
/// of `ConsoleConfig::fence_timeout`).
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(60);

/// vCPUs, memory (MiB) and VMs placed on one host, as [`Console::allocations`] counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocation {
    /// vCPUs of the VMs that should run there (and of VMs migrating there).
    pub vcpus: u32,
    /// Memory of the same VMs, MiB.
    pub memory_mib: u64,
    /// VMs placed there, whatever their power state.
    pub vms: u32,
}

/// The console's state (see the module doc). Every write of a mirrored record goes through it,
/// store first, then the mirror, so that listing 10,000 VMs reads no store at all.
pub struct Console {
    pub(super) store: Arc<dyn Store>,
    agents: AgentRegistry,
    ca: ClusterCa,
    /// The CA certificates hosts are to trust, PEM: the issuing CA first, then any other CA
    /// still trusted during a rotation.
    ca_bundle: String,
    pub(super) vms: RwLock<VmMirror>,
    /// Held through each write of a VM record (the store's transaction, then the mirror's
    /// change), so that the mirror's write lock is held only to apply it: readers of the
    /// mirror never wait for the store.
    pub(super) vm_writes: Mutex<()>,
    /// The number of VM writes begun (counted under `vm_writes`), read without waiting for it.
    pub(super) vm_writes_begun: AtomicU64,
    /// The number of VM writes begun whose outcome the mirror holds:
    /// [`Console::vm_writes_mirrored`] waits on it.
    pub(super) vm_writes_mirrored: tokio::sync::watch::Sender<u64>,
    pub(super) hosts: RwLock<BTreeMap<String, Versioned<HostRecord>>>,
    /// The hosts' underlay addresses, built from `hosts` when first asked for and dropped by
    /// every write of a host record (under `hosts`' write lock).
    pub(super) underlay: RwLock<Option<Arc<UnderlayIndex>>>,
    pub(super) networks: RwLock<BTreeMap<String, Versioned<NetworkRecord>>>,
    pub(super) settings: RwLock<ClusterSettings>,
    /// The keys of the cleanup markers, by the VM name each holds (kept with every
    /// transaction that writes or removes one).
    pub(super) markers: RwLock<HashMap<String, BTreeSet<String>>>,
    /// The API tokens, by name and by the hash of their secret.
    pub(super) tokens: RwLock<super::token_mirror::TokenMirror>,
    inflight: Inflight,
    slots: super::slots::SlotCounter,
    pub(super) events: EventLog,
    ha: super::ha::HaBoard,
    flows: super::flows::FlowStore,
    report_refusals: super::refusals::ReportRefusals,
    tasks: Arc<super::tasks::TaskBoard>,
    /// The tasks the store held unended at load (the console stopped while they ran), until
    /// the follower takes them.
    unended_tasks: std::sync::Mutex<Vec<super::tasks::TaskRecord>>,
    source_lost_after: Duration,
    create_timeout: Duration,
    fence_timeout: Duration,
    metrics: Metrics,
}

impl Console {
    /// Loads the mirrors from the store (the API tokens too: the caller creates the first one
    /// on first start). The console's metrics get a recorder of their own, and every write
    /// through `store` from here on is timed ([`Metrics::timed`]).
    pub fn load(
        store: Arc<dyn Store>,
        agents: AgentRegistry,
        ca: ClusterCa,
    ) -> Result<Self, RecordError> {
        let metrics = Metrics::new();
        let store = metrics.timed(store);
        let slots = super::slots::SlotCounter::load(store.as_ref())?;
        let mut vms = VmMirror::default();
        for (name, rec) in keys::range::<VmRecord>(store.as_ref(), keys::VMS)? {
            vms.insert(name, rec);
        }
        let hosts = keys::range::<HostRecord>(store.as_ref(), keys::HOSTS)?
            .into_iter()
            .collect();
        let networks = keys::range::<NetworkRecord>(store.as_ref(), keys::NETWORKS)?
            .into_iter()
            .collect();
        let settings = keys::get::<ClusterSettings>(store.as_ref(), keys::SETTINGS)?
            .map(|v| v.value)
            .unwrap_or_default();
        let events = EventLog::load(store.as_ref())?;
        let tokens = super::token_mirror::TokenMirror::load(store.as_ref())?;
        let (tasks, unended_tasks) = super::tasks::TaskBoard::load(store.clone(), metrics.clone())?;
        let mut markers: HashMap<String, BTreeSet<String>> = HashMap::new();
        for kv in store.range(keys::CLEANUPS)?.0 {
            if let Some(vm) = keys::cleanup_vm(&kv.key) {
                markers.entry(vm.to_string()).or_default().insert(kv.key);
            }
        }
        Ok(Console {
            store,
            agents,
            ca_bundle: ca.cert_pem().to_string(),
            ca,
            vms: RwLock::new(vms),
            vm_writes: Mutex::new(()),
            vm_writes_begun: AtomicU64::new(0),
            vm_writes_mirrored: tokio::sync::watch::Sender::new(0),
            hosts: RwLock::new(hosts),
            underlay: RwLock::new(None),
            networks: RwLock::new(networks),
            settings: RwLock::new(settings),
            markers: RwLock::new(markers),
            tokens: RwLock::new(tokens),
            inflight: Inflight::default(),
            slots,
            events,
            ha: super::ha::HaBoard::default(),
            flows: super::flows::FlowStore::default(),
            report_refusals: Default::default(),
            tasks: Arc::new(tasks),
            unended_tasks: std::sync::Mutex::new(unended_tasks),
            source_lost_after: SOURCE_LOST_AFTER,
            create_timeout: CREATE_TIMEOUT,
            fence_timeout: FENCE_TIMEOUT,
            metrics,
        })
    }

    /// The same console handing hosts `bundle` (PEM, the issuing CA first) as the CAs to trust.
    pub fn with_ca_bundle(mut self, bundle: String) -> Self {
        self.ca_bundle = bundle;
        self
    }

    /// The CA certificates hosts are to trust (PEM; the issuing CA first).
    pub fn ca_bundle(&self) -> &str {
        &self.ca_bundle
    }

    /// The console's metrics (`GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The hosts' flows of the last hour.
    pub fn flow_store(&self) -> &super::flows::FlowStore {
        &self.flows
    }

    /// The tasks kept.
    pub fn tasks(&self) -> &Arc<super::tasks::TaskBoard> {
        &self.tasks
    }

    /// The tasks the store held unended when the console loaded (once: the follower takes
    /// them).
    pub fn take_unended_tasks(&self) -> Vec<super::tasks::TaskRecord> {
        std::mem::take(&mut *super::locks::lock(&self.unended_tasks))
    }

    /// What the HA controller last concluded about each host.
    pub fn ha_board(&self) -> &super::ha::HaBoard {
        &self.ha
    }

    /// Sets how long a migration's source may stay unreachable (default
    /// [`SOURCE_LOST_AFTER`]).
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

    /// Sets how long a host's fence command may run (default [`FENCE_TIMEOUT`]).
    pub fn with_fence_timeout(mut self, timeout: Duration) -> Self {
        self.fence_timeout = timeout;
        self
    }

    /// How long a host's fence command may run before it is killed.
    pub fn fence_timeout(&self) -> Duration {
        self.fence_timeout
    }

    /// How long a migration's source may stay unreachable.
    pub fn source_lost_after(&self) -> Duration {
        self.source_lost_after
    }

    /// The store under the console.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The connected agents and their latest reports.
    pub fn agents(&self) -> &AgentRegistry {
        &self.agents
    }

    /// The cluster CA.
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// What is in flight.
    pub fn inflight(&self) -> &Inflight {
        &self.inflight
    }

    /// The VM slots handed out.
    pub fn slots(&self) -> &super::slots::SlotCounter {
        &self.slots
    }

    /// The cluster settings in force.
    pub fn settings(&self) -> ClusterSettings {
        read(&self.settings).clone()
    }

    /// The cluster's CPU baseline (`settings().cpu_baseline` without the rest).
    pub fn cpu_baseline(&self) -> Option<String> {
        read(&self.settings).cpu_baseline.clone()
    }

    // ----- events -----

    /// Records an event (kept: the last [`keys::MAX_EVENTS`]). Failures are logged, not
    /// returned.
    pub fn event(&self, kind: &str, object: &str, message: impl Into<String>) {
        self.events
            .record(self.store.as_ref(), events::event(kind, object, message));
    }

    /// The event history, oldest first, or the events `filter` lets through.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, Error> {
        let mut all = EventLog::list(self.store.as_ref())?;
        all.retain(|e| filter.lets(e));
        Ok(all)
    }

    // ----- the mirrors -----

    /// A VM record.
    pub fn vm(&self, name: &str) -> Result<Versioned<VmRecord>, Error> {
        read(&self.vms)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(Object::Vm, name))
    }

    /// True when a VM record of this name exists.
    pub fn vm_exists(&self, name: &str) -> bool {
        read(&self.vms).by_name.contains_key(name)
    }

    /// Every VM record, in name order.
    pub fn vm_records(&self) -> Vec<VmRecord> {
        read(&self.vms)
            .by_name
            .values()
            .map(|v| v.value.clone())
            .collect()
    }

    /// The records of the VMs placed on `host`, in name order.
    pub fn vms_on(&self, host: &str) -> Vec<VmRecord> {
        self.map_vms_on(host, |r| Some(r.clone()))
    }

    /// `f` of each record of the VMs placed on `host` (in name order) where it gives one.
    fn map_vms_on<T>(&self, host: &str, f: impl Fn(&VmRecord) -> Option<T>) -> Vec<T> {
        let vms = read(&self.vms);
        vms.by_host
            .get(host)
            .into_iter()
            .flat_map(|on| on.keys())
            .filter_map(|name| f(&vms.by_name.get(name)?.value))
            .collect()
    }

    /// The names and ids of the VMs whose HA restart mark names `host` (an index: no scan).
    pub fn failed_over_from(&self, host: &str) -> Vec<(String, uuid::Uuid)> {
        let vms = read(&self.vms);
        vms.failed_over
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|name| Some((name.clone(), vms.by_name.get(name)?.value.id)))
            .collect()
    }

    /// The records, in name order, of the VMs named in `names`, of those with a NIC on one of
    /// `networks` and of those with a NIC in one of `groups` (from indexes: no scan).
    pub fn vms_with(
        &self,
        names: &BTreeSet<&str>,
        networks: &BTreeSet<&str>,
        groups: &BTreeSet<&str>,
    ) -> Vec<VmRecord> {
        let vms = read(&self.vms);
        let mut all: BTreeSet<&str> = names.clone();
        for index in [(&vms.by_network, networks), (&vms.by_group, groups)] {
            let (index, keys) = index;
            all.extend(
                keys.iter()
                    .filter_map(|k| index.get(*k))
                    .flatten()
                    .map(String::as_str),
            );
        }
        all.into_iter()
            .filter_map(|n| Some(vms.by_name.get(n)?.value.clone()))
            .collect()
    }

    /// What the VM controller checks of each VM placed on `host` (in name order), without
    /// copying records: its id, name, desired power state and HA flag.
    pub fn vm_briefs_on(&self, host: &str) -> Vec<VmBrief> {
        let vms = read(&self.vms);
        vms.by_host
            .get(host)
            .into_iter()
            .flatten()
            .map(|(name, on)| VmBrief {
                id: on.id,
                name: name.clone(),
                desired: on.desired,
                ha: on.ha,
            })
            .collect()
    }

    /// The id and HA flag of every VM placed on `host` that should run, without copying records.
    pub fn running_on(&self, host: &str) -> Vec<(uuid::Uuid, bool)> {
        let vms = read(&self.vms);
        vms.by_host
            .get(host)
            .into_iter()
            .flat_map(|on| on.values())
            .filter(|on| on.desired == DesiredPower::Running)
            .map(|on| (on.id, on.ha))
            .collect()
    }

    /// The record of the VM with this id.
    pub fn vm_by_id(&self, id: uuid::Uuid) -> Option<VmRecord> {
        let vms = read(&self.vms);
        let (name, _) = vms.by_id.get(&id)?;
        vms.by_name.get(name).map(|v| v.value.clone())
    }

    /// True when the VM with this id has a record placing it on `host` (no copy, no allocation:
    /// what most VMs of a host's report are).
    pub fn vm_placed_on(&self, id: uuid::Uuid, host: &str) -> bool {
        read(&self.vms)
            .by_id
            .get(&id)
            .is_some_and(|(_, placed)| placed == host)
    }

    /// True when every VM with these ids has a record placing it on `host` (one read of the
    /// mirror for a whole report: what nearly every report is).
    pub fn vms_placed_on(&self, ids: impl IntoIterator<Item = uuid::Uuid>, host: &str) -> bool {
        let vms = read(&self.vms);
        ids.into_iter()
            .all(|id| vms.by_id.get(&id).is_some_and(|(_, placed)| placed == host))
    }

    /// The name, host and HA restart origin (`failed_over.from`) of the VM with this id, without
    /// copying its record.
    pub fn vm_placement(&self, id: uuid::Uuid) -> Option<(String, String, Option<String>)> {
        let vms = read(&self.vms);
        let (name, _) = vms.by_id.get(&id)?;
        let r = &vms.by_name.get(name)?.value;
        Some((
            name.clone(),
            r.host.clone(),
            r.failed_over.as_ref().map(|f| f.from.clone()),
        ))
    }

    /// The (host, VM) pairs whose refused report has an event already.
    pub fn report_refusals(&self) -> &super::refusals::ReportRefusals {
        &self.report_refusals
    }

    /// Runs `f` over the VM records without copying them.
    pub fn with_vms<R>(&self, f: impl FnOnce(&BTreeMap<String, Versioned<VmRecord>>) -> R) -> R {
        f(&read(&self.vms).by_name)
    }

    /// A host record.
    pub fn host(&self, name: &str) -> Result<Versioned<HostRecord>, Error> {
        read(&self.hosts)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(Object::Host, name))
    }

    /// Runs `f` over the host records without copying them.
    pub fn with_hosts<R>(
        &self,
        f: impl FnOnce(&BTreeMap<String, Versioned<HostRecord>>) -> R,
    ) -> R {
        f(&read(&self.hosts))
    }

    /// Every host record, in name order.
    pub fn host_records(&self) -> Vec<HostRecord> {
        read(&self.hosts)
            .values()
            .map(|v| v.value.clone())
            .collect()
    }

    /// The underlay addresses of every host but `host`, sorted ([`UnderlayIndex::peers_of`]),
    /// from the index: a host without ports gets its configuration without a copy of every
    /// host record.
    pub fn underlay_peers_of(&self, host: &str) -> Vec<Ipv4Addr> {
        self.underlay().peers_of(host)
    }

    /// Every host's underlay address, from an index kept until a host record changes.
    pub fn underlay(&self) -> Arc<UnderlayIndex> {
        if let Some(u) = read(&self.underlay).as_ref() {
            return Arc::clone(u);
        }
        // Built and kept under the hosts' read lock: a host write (which drops the index under
        // the write lock) cannot come in between.
        let hosts = read(&self.hosts);
        let u = Arc::new(UnderlayIndex::new(
            hosts
                .values()
                .map(|h| (h.value.name.as_str(), h.value.address.as_str())),
        ));
        *write(&self.underlay) = Some(Arc::clone(&u));
        u
    }

    /// Every host name.
    pub fn host_names(&self) -> Vec<String> {
        read(&self.hosts).keys().cloned().collect()
    }

    /// True when a host of this name is registered.
    pub fn host_registered(&self, name: &str) -> bool {
        read(&self.hosts).contains_key(name)
    }

    /// A network record.
    pub fn network(&self, name: &str) -> Option<Versioned<NetworkRecord>> {
        read(&self.networks).get(name).cloned()
    }

    /// The records of the networks of `names` that exist, in name order.
    pub fn networks_named(&self, names: &BTreeSet<&str>) -> Vec<NetworkRecord> {
        let networks = read(&self.networks);
        names
            .iter()
            .filter_map(|n| Some(networks.get(*n)?.value.clone()))
            .collect()
    }

    /// Every network record, in name order.
    pub fn network_records(&self) -> Vec<NetworkRecord> {
        read(&self.networks)
            .values()
            .map(|v| v.value.clone())
            .collect()
    }

    /// Runs `f` over the network records without copying them.
    pub fn with_networks<R>(
        &self,
        f: impl FnOnce(&BTreeMap<String, Versioned<NetworkRecord>>) -> R,
    ) -> R {
        f(&read(&self.networks))
    }

    /// Ratios in force for a host: its override, else the cluster's.
    pub fn ratios_for(&self, host: &HostRecord) -> AllocationRatios {
        host.ratio_override.unwrap_or(read(&self.settings).ratios)
    }

    /// A host's capacity: from its latest report, else from its record (its last Hello), else
    /// zero.
    pub fn capacity_of(&self, host: &HostRecord) -> HostCapacity {
        self.agents
            .observed(&host.name)
            .1
            .map(|o| o.report.capacity)
            .or(host.capacity)
            .unwrap_or(HostCapacity {
                cores: 0,
                memory_mib: 0,
            })
    }

    /// The allocation per host: VMs that should run count on their host, VMs with a migration
    /// in flight also on the destination.
    pub fn allocations(&self) -> HashMap<String, Allocation> {
        let mut alloc: HashMap<String, Allocation> = HashMap::new();
        let vms = read(&self.vms);
        for v in vms.by_name.values() {
            let e = alloc.entry(v.value.host.clone()).or_default();
            e.vms += 1;
            if v.value.desired == DesiredPower::Running {
                e.vcpus = e.vcpus.saturating_add(v.value.spec.vcpus);
                e.memory_mib = e.memory_mib.saturating_add(v.value.spec.memory_mib);
            }
        }
        for m in self.inflight.migrations() {
            if let Some(v) = vms.get(&m.vm) {
                let e = alloc.entry(m.destination.clone()).or_default();
                e.vcpus = e.vcpus.saturating_add(v.value.spec.vcpus);
                e.memory_mib = e.memory_mib.saturating_add(v.value.spec.memory_mib);
            }
        }
        alloc
    }

    /// Every stored placement rule, in name order.
    pub fn rules(&self) -> Result<Vec<PlacementRule>, Error> {
        Ok(
            keys::range::<PlacementRule>(self.store.as_ref(), keys::RULES)?
                .into_iter()
                .map(|(_, v)| v.value)
                .collect(),
        )
    }

    /// One stored placement rule.
    pub fn rule(&self, name: &str) -> Result<PlacementRule, Error> {
        keys::get::<PlacementRule>(self.store.as_ref(), &keys::rule_key(name))?
            .map(|v| v.value)
            .ok_or_else(|| Error::not_found(Object::Rule, name))
    }

    /// Every stored security group, in name order, with its revision.
    pub fn security_groups(&self) -> Result<Vec<Versioned<SecurityGroupRecord>>, Error> {
        Ok(
            keys::range::<SecurityGroupRecord>(self.store.as_ref(), keys::SECURITY_GROUPS)?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
        )
    }

    /// One stored security group with its revision.
    pub fn security_group(&self, name: &str) -> Result<Versioned<SecurityGroupRecord>, Error> {
        keys::get::<SecurityGroupRecord>(self.store.as_ref(), &keys::security_group_key(name))?
            .ok_or_else(|| Error::not_found(Object::SecurityGroup, name))
    }

    /// Every stored router, in name order, with its revision.
    pub fn routers(&self) -> Result<Vec<Versioned<RouterRecord>>, Error> {
        Ok(
            keys::range::<RouterRecord>(self.store.as_ref(), keys::ROUTERS)?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
        )
    }

    /// One stored router with its revision.
    pub fn router(&self, name: &str) -> Result<Versioned<RouterRecord>, Error> {
        keys::get::<RouterRecord>(self.store.as_ref(), &keys::router_key(name))?
            .ok_or_else(|| Error::not_found(Object::Router, name))
    }

    /// The host of a cleanup marker that holds VM name `vm` (an earlier VM of that name may
    /// still exist there), if there is one.
    pub fn marker_host(&self, vm: &str) -> Option<String> {
        read(&self.markers)
            .get(vm)?
            .iter()
            .find_map(|key| keys::cleanup_host(key))
            .map(str::to_string)
    }

    /// The cleanup markers (full key, record), of `host` or of every host.
    pub fn cleanups(
        &self,
        host: Option<&str>,
    ) -> Result<Vec<(String, Versioned<CleanupRecord>)>, Error> {
        let prefix = host.map_or(keys::CLEANUPS.to_string(), keys::cleanup_prefix);
        // The mirror of the markers' keys is kept with every transaction that writes one: with
        // none under the prefix (nearly always), the store is not read.
        let any = read(&self.markers)
            .values()
            .flatten()
            .any(|key| key.starts_with(&prefix));
        if !any {
            return Ok(Vec::new());
        }
        Ok(keys::range::<CleanupRecord>(self.store.as_ref(), &prefix)?
            .into_iter()
            .map(|(rest, m)| (format!("{prefix}{rest}"), m))
            .collect())
    }
}

/// What [`Console::vm_briefs_on`] gives of a VM record.
#[derive(Debug, Clone)]
pub struct VmBrief {
    /// The VM's id.
    pub id: uuid::Uuid,
    /// Its name.
    pub name: String,
    /// Its desired power state.
    pub desired: DesiredPower,
    /// Whether its HA is on.
    pub ha: bool,
}
