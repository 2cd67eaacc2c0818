//! The VM table of one host: define, start, stop, reboot, delete, migrate, and re-adopt QEMUs that
//! kept running while the agent was away.
//!
//! Each VM has a directory `<data_dir>/vms/<id>/` with `vm.json` (a [`LocalVm`]), `qemu.pid`,
//! `qmp.sock`, `serial.log` and `serial.sock`. Disks live in the datastore (see
//! [`crate::disks`]). QEMU is reached only through [`crate::qemu::VmRunner`] and
//! [`crate::qemu::QemuProcess`], the switch only through [`crate::network::SwitchLink`].
//! Operations on one VM are serialized by a per-VM lock; different VMs proceed in parallel.
//!
//! Files (a call goes down this list, never up):
//! - `migration.rs`: incoming (through `lifecycle.rs`'s admission, new VM and launch),
//!   outgoing, status, cancel, finish, abort;
//! - `console.rs`: the serial console live: its log from an offset, input on its socket
//!   (`console_chunk.rs`: what a read answers);
//! - `lifecycle.rs`: create, start, stop, reboot, delete, the console log; a new VM's
//!   directory and record, QEMU's launch description (built there only) and the launch;
//! - `switch.rs`: the VMs' NIC ports, the host's switch configuration and counters;
//! - this file: [`Manager`] and its table (look up, insert, forget), [`Manager::open`],
//!   observing (a report's observation of every VM is bounded: see [`Manager::observe_all`]);
//! - `adoption.rs`: the VMs found on disk at open, with their QEMUs;
//! - `vm.rs`: one VM: its power state from QEMU, waiting for and forcing QEMU's end;
//! - `records.rs`: [`LocalVm`] on disk;
//! - `early_passes.rs`: a migration's early passes' downtime limit (pure);
//! - `error.rs`: [`ManagerError`].
//!
//! Rules the manager keeps, whatever the console asks: it never resumes a paused QEMU whose
//! outgoing migration completed (the guest runs on the destination), never aborts an incoming
//! QEMU whose guest arrived (it may be the only copy), and never quits a source whose migration
//! did not complete.

mod adoption;
mod console;
mod console_chunk;
mod early_passes;
mod error;
mod lifecycle;
pub mod metrics;
mod migration;
mod records;
mod switch;
mod vm;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use uuid::Uuid;
use vinfra_proto::VmInstance;
use vinfra_types::{Accel, PowerState, VmObserved, VmUsage};

pub use console_chunk::ConsoleChunk;
pub use error::{ManagerError, Result, StateConflict};
pub use records::LocalVm;

use crate::contact::ConsoleContact;
use crate::disks::Datastore;
use crate::ha::{GuardSettings, GuardSettingsStore};
use crate::network::{spawn_reconciler, SwitchAttachment, SwitchLink};
use crate::usage::Sampler;
use error::io_err;
use vm::Vm;

/// Bandwidth used for "unlimited" migrations, bytes per second.
pub const UNLIMITED_BANDWIDTH: u64 = 1 << 40;
/// Largest console log tail returned.
pub const MAX_CONSOLE_BYTES: u64 = 1 << 20;
/// How long a report waits for one VM's QEMU to answer before it shows the VM's last known
/// state marked unresponsive ([`Manager::observe_all`]).
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a manager keeps things and how it runs QEMU.
#[derive(Clone)]
pub struct ManagerConfig {
    /// Agent data directory (`vms/<id>/` below it).
    pub data_dir: PathBuf,
    /// Shared datastore root.
    pub datastore: PathBuf,
    /// This host's address: incoming migrations listen here.
    pub address: IpAddr,
    /// Starts (and finds again) QEMUs.
    pub runner: Arc<dyn crate::qemu::VmRunner>,
    /// The host's virtual switch; `None` when the host has none (VMs with NICs are refused).
    pub switch: Option<SwitchAttachment>,
}

/// One VM in the table: the VM behind its lock, and its last observation for readers that do
/// not wait for the lock.
struct Entry {
    /// The VM's id and name (they never change), for a report that cannot take the lock.
    id: Uuid,
    name: String,
    /// Its vCPUs and memory as defined (they never change either), for the metrics.
    vcpus: u32,
    memory_mib: u64,
    /// Whether its HA policy is on (as the console defined the VM here, or changed it since
    /// with `SetVmHa`): read without the VM's lock.
    ha: AtomicBool,
    vm: Mutex<Vm>,
    last: StdMutex<Option<VmObserved>>,
    /// When the report's observation under way (holding the lock) began.
    observing: StdMutex<Option<Instant>>,
}

impl Entry {
    fn new(vm: Vm, last: Option<VmObserved>) -> Arc<Entry> {
        Arc::new(Entry {
            id: vm.id(),
            name: vm.record.instance.spec.name.clone(),
            vcpus: vm.record.instance.spec.vcpus,
            memory_mib: vm.record.instance.spec.memory_mib,
            ha: AtomicBool::new(vm.record.instance.spec.ha.enabled),
            vm: Mutex::new(vm),
            last: StdMutex::new(last),
            observing: StdMutex::new(None),
        })
    }

    fn remember(&self, obs: &VmObserved) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(obs.clone());
        }
    }

    /// True while a report's observation of this VM has waited on QEMU for `bound` or longer.
    fn stuck(&self, bound: Duration) -> bool {
        self.observing
            .lock()
            .ok()
            .and_then(|o| *o)
            .is_some_and(|since| since.elapsed() >= bound)
    }

    /// The last observation, marked unresponsive when `unresponsive` (a VM never observed
    /// shows in state `unknown`); `None` for a VM never observed that is merely busy.
    fn last_known(&self, unresponsive: bool) -> Option<VmObserved> {
        let last = self.last.lock().ok().and_then(|l| l.clone());
        match (last, unresponsive) {
            (Some(mut o), _) => {
                o.unresponsive = unresponsive;
                Some(o)
            }
            (None, true) => Some(VmObserved {
                id: self.id,
                name: self.name.clone(),
                state: PowerState::Unknown,
                pid: None,
                uptime_s: 0,
                usage: VmUsage::default(),
                unresponsive: true,
                ha: self.ha.load(Ordering::Relaxed),
                net: None,
            }),
            (None, false) => None,
        }
    }
}

/// The VMs of this host.
pub struct Manager {
    cfg: ManagerConfig,
    ds: Datastore,
    vms: Mutex<HashMap<Uuid, Arc<Entry>>>,
    sampler: Arc<StdMutex<Sampler>>,
    switch: Option<Arc<SwitchLink>>,
    contact: ConsoleContact,
    ha: GuardSettingsStore,
    observe_timeout: Duration,
    /// Migrations end in as few passes as they can (the early passes under 50 ms, the
    /// operator's limit from the second, [`early_passes::FEWEST_EARLY_DOWNTIME_MS`]): for a
    /// QEMU that loses writes under TCG.
    fewest_migration_passes: bool,
    /// QEMUs start with their guest's memory padded ([`crate::qemu::cmdline::ram_size`]): for
    /// a QEMU that loses writes under TCG.
    pad_ram: bool,
    /// QEMU's virtio-net offers the guest UDP segmentation offload
    /// ([`crate::qemu::process::virtio_net_offers_uso`]).
    nic_uso: bool,
    /// What this host's QEMU runs (`None`: not known, nothing is checked).
    platform: Option<vinfra_types::HostPlatform>,
    /// How QEMUs are confined; `None`: they run as the agent (`--unconfined`).
    confiner: Option<Arc<crate::confine::Confiner>>,
    flows: Arc<crate::flows::FlowExport>,
    flow_sink: Arc<crate::flows::FlowSink>,
}

impl Manager {
    /// Opens the VM table in `cfg.data_dir`, re-adopting QEMUs that still run and removing
    /// incoming VMs whose QEMU is gone. With a switch, starts its reconciler (needs a tokio
    /// runtime).
    pub async fn open(cfg: ManagerConfig) -> Result<Manager> {
        let vms_dir = cfg.data_dir.join("vms");
        std::fs::create_dir_all(&vms_dir).map_err(io_err(&vms_dir))?;
        let found = adoption::adopt_all(&vms_dir, cfg.runner.as_ref())?;
        let switch = match &cfg.switch {
            Some(attachment) => {
                let link = Arc::new(SwitchLink::open(attachment.clone(), &cfg.data_dir)?);
                for vm in &found {
                    link.restore(vm.id(), vm.record.nics.clone());
                }
                spawn_reconciler(&link);
                Some(link)
            }
            None => None,
        };
        let table = found
            .into_iter()
            .map(|vm| (vm.id(), Entry::new(vm, None)))
            .collect();
        let ha = GuardSettingsStore::open(&cfg.data_dir);
        Ok(Manager {
            ds: Datastore {
                root: cfg.datastore.clone(),
            },
            ha,
            cfg,
            vms: Mutex::new(table),
            sampler: Arc::default(),
            switch,
            contact: ConsoleContact::new(),
            observe_timeout: OBSERVE_TIMEOUT,
            fewest_migration_passes: false,
            pad_ram: false,
            nic_uso: false,
            platform: None,
            confiner: None,
            flows: Arc::default(),
            flow_sink: Arc::default(),
        })
    }

    /// The same manager, told whether this host's QEMU offers guests UDP segmentation offload
    /// on virtio-net (then a NIC on a tap turns it off: the switch takes TCP segments only).
    pub fn with_nic_uso(mut self, offered: bool) -> Manager {
        self.nic_uso = offered;
        self
    }

    /// The same manager, that refuses VMs whose CPU model or machine type `platform` (what
    /// this host's QEMU runs) does not offer.
    pub fn with_platform(mut self, platform: Option<vinfra_types::HostPlatform>) -> Manager {
        self.platform = platform;
        self
    }

    /// The same manager, whose QEMUs run confined by `confiner` (see [`crate::confine`]);
    /// `None`: as the agent itself.
    pub fn with_confinement(mut self, confiner: Option<crate::confine::Confiner>) -> Manager {
        self.confiner = confiner.map(Arc::new);
        self
    }

    /// How QEMUs are confined, if they are.
    pub fn confiner(&self) -> Option<&Arc<crate::confine::Confiner>> {
        self.confiner.as_ref()
    }

    /// The user VM `instance`'s QEMU runs as; `None` when QEMUs are not confined.
    pub(crate) fn qemu_user(&self, instance: &VmInstance) -> Result<Option<u32>> {
        let Some(c) = &self.confiner else {
            return Ok(None);
        };
        let slot = instance
            .slot
            .ok_or(crate::confine::ConfineError::NoSlot(instance.id))?;
        Ok(Some(c.uid(slot)?))
    }

    /// Every `interval`, forever: removes the cgroups of QEMUs that ended and rotates the
    /// serial logs past their limit (VMs busy with an operation wait for the next round).
    pub async fn tend_confinement(self: Arc<Self>, interval: Duration) {
        let Some(confiner) = self.confiner.clone() else {
            return;
        };
        loop {
            tokio::time::sleep(interval).await;
            let entries: Vec<Arc<Entry>> = self.vms.lock().await.values().cloned().collect();
            let mut logs = Vec::new();
            // A VM busy with an operation may be starting: its cgroup, still empty, stays.
            let mut busy = std::collections::HashSet::new();
            for e in entries {
                match e.vm.try_lock() {
                    Ok(vm) => {
                        if let Ok(Some(uid)) = self.qemu_user(&vm.record.instance) {
                            logs.push((vm.files.clone(), uid));
                        }
                    }
                    Err(_) => {
                        busy.insert(e.id);
                    }
                }
            }
            let c = confiner.clone();
            let tended = tokio::task::spawn_blocking(move || {
                for (files, uid) in logs {
                    match c.rotate_serial_log(&files, uid) {
                        Ok(true) => tracing::info!("rotated {}", files.serial_log().display()),
                        Ok(false) => {}
                        Err(e) => tracing::warn!("serial log: {}", vinfra_types::error::Chain(&e)),
                    }
                }
                c.sweep(&busy, crate::confine::SWEEP_MIN_AGE)
            })
            .await;
            if let Ok(n) = tended {
                if n > 0 {
                    tracing::debug!("{n} cgroups of ended QEMUs removed");
                }
            }
        }
    }

    /// The same manager, whose migrations end in as few passes as they can (`fewest`): the
    /// early passes under 50 ms and the operator's downtime limit from the second pass
    /// ([`early_passes::FEWEST_EARLY_DOWNTIME_MS`]). For a QEMU that loses a guest's writes
    /// during a migration under TCG (before 9.0): whatever the guest writes after a
    /// dirty-bitmap sync may be lost unless it stops there (a guest crashed on arrival in a lab
    /// test once, and a guest's TCP connection stalled for good once).
    pub fn with_fewest_migration_passes(mut self, fewest: bool) -> Manager {
        self.fewest_migration_passes = fewest;
        self
    }

    /// The same manager, whose QEMUs get their guest's memory padded (`pad`,
    /// [`crate::qemu::cmdline::ram_size`]) so that QEMU resets its TCG TLB entries whenever it
    /// clears the migration's dirty bitmap: for a QEMU that loses a guest's writes during a
    /// migration under TCG (before 9.0). Every host with such a QEMU pads the same.
    pub fn with_padded_ram(mut self, pad: bool) -> Manager {
        self.pad_ram = pad;
        self
    }

    /// The same manager, whose reports wait `bound` for each VM's QEMU instead of
    /// [`OBSERVE_TIMEOUT`].
    pub fn with_observe_timeout(mut self, bound: Duration) -> Manager {
        self.observe_timeout = bound;
        self
    }

    /// The link to the host's virtual switch, when the host has one.
    pub fn switch(&self) -> Option<&Arc<SwitchLink>> {
        self.switch.as_ref()
    }

    /// The host's IPFIX exporter (its collector as the console last sent it).
    pub fn flow_export(&self) -> &Arc<crate::flows::FlowExport> {
        &self.flows
    }

    /// Where the host's flows go to the console: the current session's messages, if any.
    pub fn flow_sink(&self) -> &Arc<crate::flows::FlowSink> {
        &self.flow_sink
    }

    /// Takes the cluster's IPFIX collector (`SetFlowExport`): the next take of the switch's
    /// flows is exported there (`None`: no more).
    pub fn set_flow_collector(&self, collector: Option<std::net::SocketAddr>) {
        self.flows.set_collector(collector);
    }

    /// The host's contact with the console: the send time of the last heartbeat the console
    /// acknowledged, on any session (the connection's heartbeat path keeps it; anything on the
    /// host may read it, e.g. to tell its guard how old the contact is).
    pub fn contact(&self) -> &ConsoleContact {
        &self.contact
    }

    /// The cluster's HA settings for the host's guard, as the console last sent them (kept in
    /// the data directory; the defaults until it first does).
    pub fn ha_settings(&self) -> GuardSettings {
        self.ha.get()
    }

    /// Takes the cluster's HA settings the console sent (checked, then kept in the data
    /// directory); the next pet passes them to the guard.
    pub fn set_ha_settings(&self, settings: GuardSettings) -> Result<()> {
        Ok(self.ha.set(settings)?)
    }

    /// The VMs of this host whose HA policy is on: the guard's isolation response stops these
    /// and no others. Read without waiting on any VM's lock. The policy is the one the VM was
    /// defined with here (created, or arrived by migration), or the last [`Manager::set_vm_ha`].
    pub async fn ha_vm_ids(&self) -> Vec<Uuid> {
        let table = self.vms.lock().await;
        table
            .values()
            .filter(|e| e.ha.load(Ordering::Relaxed))
            .map(|e| e.id)
            .collect()
    }

    /// VM `id`'s HA policy was turned on or off (`SetVmHa`): the next pet tells the guard at
    /// once (the flag is read without the VM's lock); then the VM's record here is written
    /// with it, once the VM's lock is free, so that a restarted agent keeps it.
    pub async fn set_vm_ha(&self, id: Uuid, ha: bool) -> Result<()> {
        let e = self.entry(id).await?;
        e.ha.store(ha, Ordering::Relaxed);
        let mut vm = e.vm.lock().await;
        if vm.record.instance.spec.ha.enabled != ha {
            vm.record.instance.spec.ha.enabled = ha;
            vm.save()?;
        }
        Ok(())
    }

    /// The accelerator VMs run with.
    pub fn accel(&self) -> Accel {
        self.cfg.runner.accel()
    }

    /// The host-usage sampler shared with the VM usage.
    pub fn sampler(&self) -> &StdMutex<Sampler> {
        &self.sampler
    }

    async fn entry(&self, id: Uuid) -> Result<Arc<Entry>> {
        self.vms
            .lock()
            .await
            .get(&id)
            .cloned()
            .ok_or(ManagerError::NoSuchVm(id))
    }

    /// Runs a datastore call (qemu-img, file work on shared storage, either of which can hang
    /// as long as the storage does) on a blocking thread, never on the runtime's.
    async fn on_datastore<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Datastore) -> std::result::Result<T, crate::disks::DiskError>
            + Send
            + 'static,
    ) -> Result<T> {
        let ds = self.ds.clone();
        Ok(tokio::task::spawn_blocking(move || call(&ds)).await??)
    }

    /// Puts a VM into the table.
    async fn insert(&self, vm: Vm, last: Option<VmObserved>) {
        self.vms.lock().await.insert(vm.id(), Entry::new(vm, last));
    }

    /// Removes a VM whose QEMU and ports are gone: its directory and its table entry (its disks
    /// stay).
    async fn forget(&self, vm: &Vm) -> Result<()> {
        std::fs::remove_dir_all(&vm.files.dir).map_err(io_err(&vm.files.dir))?;
        self.vms.lock().await.remove(&vm.id());
        Ok(())
    }

    /// Ids of all VMs.
    pub async fn ids(&self) -> Vec<Uuid> {
        self.vms.lock().await.keys().copied().collect()
    }

    /// The VM's record (a copy).
    pub async fn record(&self, id: Uuid) -> Result<LocalVm> {
        Ok(self.entry(id).await?.vm.lock().await.record.clone())
    }

    /// Observes one VM now (waiting for its lock and its QEMU).
    pub async fn observe(&self, id: Uuid) -> Result<VmObserved> {
        let e = self.entry(id).await?;
        let obs = e.vm.lock().await.observe(&self.sampler).await;
        if let Ok(mut last) = e.last.lock() {
            *last = Some(obs.clone());
        }
        Ok(obs)
    }

    /// Observes every VM for a report, within the observe timeout ([`OBSERVE_TIMEOUT`]) in
    /// all: the VMs' QEMUs are asked at once, each in a task of its own. A VM busy with a long
    /// operation reports its last observation. A VM whose QEMU does not answer in time (stopped,
    /// wedged, overloaded), or answers with an error, reports its last observation marked
    /// [`VmObserved::unresponsive`]; its task goes on waiting (holding the VM's lock, so there
    /// is never more than one) and its answer, when it comes, is the next report's.
    pub async fn observe_all(&self) -> Vec<VmObserved> {
        let entries: Vec<Arc<Entry>> = self.vms.lock().await.values().cloned().collect();
        let bound = self.observe_timeout;
        let deadline = tokio::time::Instant::now() + bound;
        let tasks: Vec<_> = entries
            .into_iter()
            .map(|e| {
                let task = tokio::spawn(observe_entry(e.clone(), self.sampler.clone()));
                (e, task)
            })
            .collect();
        let mut out = Vec::new();
        for (e, mut task) in tasks {
            let obs = match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Observation::Answered(o))) => Some(o),
                Ok(Ok(Observation::NoAnswer)) => e.last_known(true),
                Ok(Ok(Observation::Busy) | Err(_)) => e.last_known(e.stuck(bound)),
                // Still waiting: the task goes on alone.
                Err(_) => e.last_known(true),
            };
            out.extend(obs.map(|mut o| {
                // The flag the guard is given, which a `SetVmHa` may have changed meanwhile.
                o.ha = e.ha.load(Ordering::Relaxed);
                o
            }));
        }
        let pids: Vec<u32> = out.iter().filter_map(|o| o.pid).collect();
        if let Ok(mut s) = self.sampler.lock() {
            s.retain(&pids);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// What a report's observation of one VM found.
enum Observation {
    /// QEMU answered (or none runs).
    Answered(VmObserved),
    /// QEMU runs and answered with an error.
    NoAnswer,
    /// Another operation (or observation) holds the VM.
    Busy,
}

/// Observes the VM of `e` unless something else holds it, noting when the observation began
/// (see [`Entry::stuck`]) and remembering what QEMU answered.
async fn observe_entry(e: Arc<Entry>, sampler: Arc<StdMutex<Sampler>>) -> Observation {
    let Ok(mut vm) = e.vm.try_lock() else {
        return Observation::Busy;
    };
    if let Ok(mut o) = e.observing.lock() {
        *o = Some(Instant::now());
    }
    let answer = vm.try_observe(&sampler).await;
    if let Ok(mut o) = e.observing.lock() {
        *o = None;
    }
    match answer {
        Ok(obs) => {
            e.remember(&obs);
            Observation::Answered(obs)
        }
        Err(err) => {
            tracing::warn!(
                "VM {}: QEMU does not answer: {}",
                e.id,
                vinfra_types::error::Chain(&err)
            );
            Observation::NoAnswer
        }
    }
}
