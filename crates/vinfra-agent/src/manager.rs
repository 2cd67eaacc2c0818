//! The VM table of one host: define, start, stop, reboot, delete, migrate, and re-adopt QEMUs that
//! kept running while the agent was away.
//!
//! Each VM has a directory `<data_dir>/vms/<id>/` with `vm.json` (a [`VmRecord`]), `qemu.pid`,
//! `qmp.sock` and `serial.log`. Disks live in the datastore (see [`crate::disks`]).
//! Operations on one VM are serialized by a per-VM lock; different VMs proceed in parallel.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;
use vinfra_proto::{HostSwitchConfig, MigrationSettings, MigrationStatus, VmInstance};
use vinfra_qmp::{MigrateParameters, Qmp, QmpError};
use vinfra_types::network::HostSwitchCounters;
use vinfra_types::{Accel, BootSource, PowerState, VmObserved, VmUsage};

use crate::disks::{cache_mode_for, Datastore, DiskError};
use crate::network::{NetworkError, Outcome, SwitchLink, SwitchSettings, VmNic};
use crate::qemu::{is_our_qemu, kill, DiskArg, Launch, NicArg, QemuError, VmRunner};
use crate::usage::Sampler;

/// Bandwidth used for "unlimited" migrations, bytes per second.
pub const UNLIMITED_BANDWIDTH: u64 = 1 << 40;
/// Largest console log tail returned.
pub const MAX_CONSOLE_BYTES: u64 = 1 << 20;
const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of VM operations.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// no VM with this id here
    #[error("no VM {0} on this host")]
    NoSuchVm(Uuid),
    /// the VM is in a state where the operation makes no sense
    #[error("VM {id} is {state:?}: {detail}")]
    BadState {
        /// The VM.
        id: Uuid,
        /// Its state.
        state: PowerState,
        /// What was refused.
        detail: String,
    },
    /// the VM specification is invalid
    #[error("invalid VM specification: {0}")]
    Spec(String),
    /// a disk or datastore file problem
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// QEMU could not be started or signalled
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// QMP failed
    #[error("QMP: {0}")]
    Qmp(#[from] QmpError),
    /// the virtual switch is missing or refused the VM's ports or the configuration
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// a file in the agent's data directory could not be read or written
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<ManagerError> for vinfra_proto::AgentError {
    fn from(e: ManagerError) -> Self {
        use vinfra_proto::AgentError as A;
        match e {
            ManagerError::NoSuchVm(id) => A::NoSuchVm { id },
            ManagerError::BadState { id, state, detail } => A::BadState {
                id,
                state: format!("{state:?}").to_lowercase(),
                detail,
            },
            ManagerError::Disk(DiskError::Missing(p)) => A::MissingFile {
                path: p.display().to_string(),
            },
            ManagerError::Network(e) => A::Network {
                detail: error_chain(&e),
            },
            e @ (ManagerError::Qemu(_)
            | ManagerError::Qmp(_)
            | ManagerError::Disk(DiskError::QemuImg { .. })) => A::Qemu {
                detail: e.to_string(),
            },
            e => A::Host {
                detail: e.to_string(),
            },
        }
    }
}

type Result<T, E = ManagerError> = std::result::Result<T, E>;

/// An error and its sources, joined with ": ".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// What the agent keeps about a VM on the host (`vm.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// Identity and specification.
    pub instance: VmInstance,
    /// Its QEMU waits for (or is receiving) an incoming migration.
    #[serde(default)]
    pub incoming: bool,
    /// URI the incoming QEMU listens on.
    #[serde(default)]
    pub incoming_uri: Option<String>,
    /// The VM should run: a QEMU that disappears while this is set has crashed.
    #[serde(default)]
    pub want_running: bool,
    /// An outgoing migration was started.
    #[serde(default)]
    pub migrating_out: bool,
    /// Seconds since the Unix epoch when the guest was started (kept across migration).
    #[serde(default)]
    pub started_at: Option<u64>,
    /// The NICs' switch ports while the VM has them (from before its QEMU starts until after
    /// it is gone).
    #[serde(default)]
    pub nics: Vec<VmNic>,
}

/// Where a manager keeps things and how it runs QEMU.
#[derive(Clone)]
pub struct ManagerConfig {
    /// Agent data directory (`vms/<id>/` below it).
    pub data_dir: PathBuf,
    /// Shared datastore root.
    pub datastore: PathBuf,
    /// This host's address: incoming migrations listen here.
    pub address: IpAddr,
    /// Starts QEMU.
    pub runner: Arc<dyn VmRunner>,
    /// The host's virtual switch; `None` when the host has none (VMs with NICs are refused).
    pub switch: Option<SwitchSettings>,
}

struct Vm {
    record: VmRecord,
    dir: PathBuf,
    pid: Option<u32>,
    qmp: Option<Arc<Qmp>>,
    shutdown_seen: bool,
}

struct Entry {
    vm: Mutex<Vm>,
    last: StdMutex<Option<VmObserved>>,
}

/// The VMs of this host.
pub struct Manager {
    cfg: ManagerConfig,
    ds: Datastore,
    vms: Mutex<HashMap<Uuid, Arc<Entry>>>,
    sampler: StdMutex<Sampler>,
    switch: Option<Arc<SwitchLink>>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `data` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ManagerError + '_ {
    move |source| ManagerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Vm {
    fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    fn id(&self) -> Uuid {
        self.record.instance.id
    }

    fn save(&self) -> Result<()> {
        let path = self.dir.join("vm.json");
        let text = serde_json::to_vec_pretty(&self.record).map_err(|e| ManagerError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        write_atomic(&path, &text).map_err(io_err(&path))
    }

    /// The QEMU pid if that process is alive and is this VM's QEMU.
    fn live_pid(&mut self) -> Option<u32> {
        let pid = self
            .pid
            .or_else(|| crate::qemu::read_pidfile(&self.pidfile()))?;
        if is_our_qemu(pid, &self.qmp_socket()) {
            self.pid = Some(pid);
            Some(pid)
        } else {
            self.pid = None;
            None
        }
    }

    fn drain_events(&mut self) {
        if let Some(q) = &self.qmp {
            while let Some(e) = q.try_next_event() {
                if e.event == "SHUTDOWN" {
                    self.shutdown_seen = true;
                }
            }
        }
    }

    async fn qmp(&mut self) -> Result<Arc<Qmp>> {
        if let Some(q) = &self.qmp {
            if !q.is_closed() {
                return Ok(q.clone());
            }
        }
        self.drain_events();
        let q = Arc::new(Qmp::connect(&self.qmp_socket(), QMP_CONNECT_TIMEOUT).await?);
        self.qmp = Some(q.clone());
        Ok(q)
    }

    /// Forgets the (gone) process and its runtime files.
    fn process_gone(&mut self) {
        self.drain_events();
        self.pid = None;
        self.qmp = None;
        let _ = std::fs::remove_file(self.pidfile());
        let _ = std::fs::remove_file(self.qmp_socket());
    }

    /// The current power state, asking QEMU when it runs.
    async fn state(&mut self) -> PowerState {
        if self.live_pid().is_none() {
            self.process_gone();
            if self.shutdown_seen && self.record.want_running {
                // The guest powered itself off: a stop, not a crash.
                self.record.want_running = false;
                self.record.started_at = None;
                let _ = self.save();
            }
            return if self.record.want_running {
                PowerState::Crashed
            } else {
                PowerState::Stopped
            };
        }
        let q = match self.qmp().await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!("VM {}: QMP unavailable: {e}", self.id());
                return PowerState::Unknown;
            }
        };
        self.drain_events();
        let status = match q.query_status().await {
            Ok(s) => s.status,
            Err(e) => {
                tracing::warn!("VM {}: query-status failed: {e}", self.id());
                return PowerState::Unknown;
            }
        };
        if self.record.incoming && status == "running" {
            self.record.incoming = false;
            self.record.incoming_uri = None;
            self.record.want_running = true;
            let _ = self.save();
        }
        if self.record.migrating_out {
            if let Ok(info) = q.query_migrate().await {
                match info.status() {
                    "setup" | "active" | "device" | "pre-switchover" | "cancelling"
                    | "postcopy-active" | "wait-unplug" => return PowerState::Migrating,
                    "failed" | "cancelled" => {
                        self.record.migrating_out = false;
                        let _ = self.save();
                    }
                    _ => {}
                }
            }
        }
        map_status(&status)
    }

    async fn observe(&mut self, sampler: &StdMutex<Sampler>) -> VmObserved {
        let state = self.state().await;
        let pid = self.pid;
        let usage = match pid {
            Some(pid) => sampler
                .lock()
                .map(|mut s| s.vm_usage(pid))
                .unwrap_or_default(),
            None => VmUsage::default(),
        };
        let uptime_s = match (pid, self.record.started_at) {
            (Some(_), Some(t)) => now_s().saturating_sub(t),
            _ => 0,
        };
        VmObserved {
            id: self.id(),
            name: self.record.instance.spec.name.clone(),
            state,
            pid,
            uptime_s,
            usage,
        }
    }

    /// Waits until the QEMU process is gone, at most `timeout`. True when it is.
    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.live_pid().is_none() {
                self.process_gone();
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends QEMU now: `quit`, then SIGKILL if it lingers.
    async fn kill_now(&mut self) -> Result<()> {
        let Some(pid) = self.live_pid() else {
            self.process_gone();
            return Ok(());
        };
        if let Ok(q) = self.qmp().await {
            let _ = q.quit().await;
        }
        if self.wait_exit(Duration::from_secs(3)).await {
            return Ok(());
        }
        kill(pid, Signal::SIGKILL)?;
        if self.wait_exit(EXIT_TIMEOUT).await {
            Ok(())
        } else {
            Err(ManagerError::BadState {
                id: self.id(),
                state: PowerState::Unknown,
                detail: format!("QEMU pid {pid} does not exit after SIGKILL"),
            })
        }
    }
}

/// Maps QEMU's run state to a [`PowerState`].
pub fn map_status(status: &str) -> PowerState {
    match status {
        "running" => PowerState::Running,
        "inmigrate" => PowerState::Incoming,
        "finish-migrate" => PowerState::Migrating,
        "shutdown" => PowerState::Stopped,
        "internal-error" | "guest-panicked" => PowerState::Crashed,
        // paused, postmigrate, prelaunch, suspended, io-error, watchdog, debug, restore-vm, save-vm…
        _ => PowerState::Paused,
    }
}

impl Manager {
    /// Opens the VM table in `cfg.data_dir`, re-adopting QEMUs that still run and removing
    /// incoming VMs whose QEMU is gone.
    pub async fn open(cfg: ManagerConfig) -> Result<Manager> {
        let vms_dir = cfg.data_dir.join("vms");
        std::fs::create_dir_all(&vms_dir).map_err(io_err(&vms_dir))?;
        let mut table = HashMap::new();
        let mut attached = Vec::new();
        for entry in std::fs::read_dir(&vms_dir).map_err(io_err(&vms_dir))? {
            let dir = entry.map_err(io_err(&vms_dir))?.path();
            let json = dir.join("vm.json");
            let record: VmRecord = match std::fs::read(&json).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!("{}: unreadable VM record ({e}), ignored", json.display());
                    continue;
                }
                Err(_) => continue,
            };
            if dir.file_name().and_then(|n| n.to_str()) != Some(&record.instance.id.to_string()) {
                tracing::warn!(
                    "{}: VM record does not match its directory, ignored",
                    json.display()
                );
                continue;
            }
            let mut vm = Vm {
                record,
                dir: dir.clone(),
                pid: None,
                qmp: None,
                shutdown_seen: false,
            };
            match vm.live_pid() {
                Some(pid) => tracing::info!(
                    "VM {} ({}): adopted QEMU pid {pid}",
                    vm.record.instance.spec.name,
                    vm.id()
                ),
                None if vm.record.incoming => {
                    tracing::info!("VM {}: incoming QEMU is gone, removing it", vm.id());
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
                None => vm.process_gone(),
            }
            let id = vm.id();
            attached.push((id, vm.record.nics.clone()));
            table.insert(
                id,
                Arc::new(Entry {
                    vm: Mutex::new(vm),
                    last: StdMutex::new(None),
                }),
            );
        }
        let ds = Datastore {
            root: cfg.datastore.clone(),
        };
        let switch = match &cfg.switch {
            Some(settings) => {
                let link = Arc::new(SwitchLink::open(settings.clone(), &cfg.data_dir)?);
                for (id, nics) in attached {
                    link.restore(id, nics);
                }
                crate::network::spawn_reconciler(&link);
                Some(link)
            }
            None => None,
        };
        Ok(Manager {
            cfg,
            ds,
            vms: Mutex::new(table),
            sampler: StdMutex::new(Sampler::default()),
            switch,
        })
    }

    /// The link to the host's virtual switch, when the host has one.
    pub fn switch(&self) -> Option<&Arc<SwitchLink>> {
        self.switch.as_ref()
    }

    /// Keeps `config` as this host's switch configuration (saved in the data directory) and
    /// programs the switch with it now. The configuration stays desired (and is replayed on
    /// every reconnect) even when the switch cannot be programmed now.
    pub async fn apply_switch_config(&self, config: HostSwitchConfig) -> Result<()> {
        let Some(link) = &self.switch else {
            if config.networks.is_empty() {
                return Ok(());
            }
            return Err(NetworkError::NoSwitch.into());
        };
        link.set_config(config)?;
        reconcile_now(link).await?.into_result()?;
        Ok(())
    }

    /// This host's switch counters, read now (see [`SwitchLink::counters`]).
    pub async fn switch_counters(&self) -> Result<HostSwitchCounters> {
        let link = self.switch.clone().ok_or(NetworkError::NoSwitch)?;
        let control = link.settings().control.clone();
        Ok(tokio::task::spawn_blocking(move || link.counters())
            .await
            .map_err(|e| NetworkError::Io {
                path: control,
                source: std::io::Error::other(e.to_string()),
            })??)
    }

    /// Refuses a VM with NICs on a host without a switch, before anything is created.
    fn check_nics(&self, instance: &VmInstance) -> Result<()> {
        if !instance.spec.nics.is_empty() && self.switch.is_none() {
            return Err(NetworkError::NoSwitch.into());
        }
        Ok(())
    }

    /// Gives the VM's NICs their switch ports and waits until the switch has them (before its
    /// QEMU starts). On failure the VM has no ports.
    async fn attach_nics(&self, vm: &mut Vm) -> Result<()> {
        if vm.record.instance.spec.nics.is_empty() {
            return Ok(());
        }
        let link = self.switch.as_ref().ok_or(NetworkError::NoSwitch)?;
        let id = vm.id();
        let nics = link.attach(id, &vm.dir, &vm.record.instance.spec.nics)?;
        let ports: Vec<u32> = nics.iter().map(|n| n.port).collect();
        let checked = reconcile_now(link).await.and_then(|o| {
            let mine: Vec<(vinfra_switch_control::Request, String)> = o
                .refused
                .into_iter()
                .filter(|(r, _)| {
                    matches!(r, vinfra_switch_control::Request::AddPort(p) if ports.contains(&p.id))
                })
                .collect();
            Outcome {
                applied: o.applied,
                refused: mine,
            }
            .into_result()
        });
        if let Err(e) = checked {
            link.detach(id);
            if let Err(e) = reconcile_now(link).await {
                tracing::warn!("VM {id}: {}", error_chain(&e));
            }
            return Err(e.into());
        }
        vm.record.nics = nics;
        vm.save()
    }

    /// Removes the VM's ports from the switch (its QEMU is gone). A switch that cannot be
    /// reached now loses them on the next reconcile.
    async fn detach_nics(&self, vm: &mut Vm) {
        let id = vm.id();
        if let Some(link) = &self.switch {
            link.detach(id);
            if !vm.record.nics.is_empty() {
                if let Err(e) = reconcile_now(link).await {
                    tracing::warn!("VM {id}: removing its switch ports: {}", error_chain(&e));
                }
            }
        }
        if !vm.record.nics.is_empty() {
            vm.record.nics.clear();
            if vm.dir.exists() {
                if let Err(e) = vm.save() {
                    tracing::warn!("VM {id}: {e}");
                }
            }
        }
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

    /// Ids of all VMs.
    pub async fn ids(&self) -> Vec<Uuid> {
        self.vms.lock().await.keys().copied().collect()
    }

    /// The VM's record (a copy).
    pub async fn record(&self, id: Uuid) -> Result<VmRecord> {
        Ok(self.entry(id).await?.vm.lock().await.record.clone())
    }

    /// Observes one VM now.
    pub async fn observe(&self, id: Uuid) -> Result<VmObserved> {
        let e = self.entry(id).await?;
        let obs = e.vm.lock().await.observe(&self.sampler).await;
        if let Ok(mut last) = e.last.lock() {
            *last = Some(obs.clone());
        }
        Ok(obs)
    }

    /// Observes every VM; a VM busy with a long operation reports its last observation.
    pub async fn observe_all(&self) -> Vec<VmObserved> {
        let entries: Vec<Arc<Entry>> = self.vms.lock().await.values().cloned().collect();
        let mut out = Vec::new();
        for e in entries {
            let obs = match e.vm.try_lock() {
                Ok(mut vm) => {
                    let o = vm.observe(&self.sampler).await;
                    if let Ok(mut last) = e.last.lock() {
                        *last = Some(o.clone());
                    }
                    Some(o)
                }
                Err(_) => e.last.lock().ok().and_then(|l| l.clone()),
            };
            out.extend(obs);
        }
        let pids: Vec<u32> = out.iter().filter_map(|o| o.pid).collect();
        if let Ok(mut s) = self.sampler.lock() {
            s.retain(&pids);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn launch_for(&self, vm: &Vm, incoming: bool) -> Result<Launch> {
        let spec = &vm.record.instance.spec;
        let kernel = match &spec.boot {
            BootSource::Kernel {
                kernel,
                initrd,
                cmdline,
            } => Some((
                self.ds.existing_image(kernel)?,
                initrd
                    .as_deref()
                    .map(|i| self.ds.existing_image(i))
                    .transpose()?,
                cmdline.clone(),
            )),
            BootSource::Disk => None,
        };
        let disks = self
            .ds
            .existing_disks(vm.id(), spec)?
            .into_iter()
            .map(|path| {
                let cache = cache_mode_for(&path);
                DiskArg { path, cache }
            })
            .collect();
        Ok(Launch {
            id: vm.id(),
            name: spec.name.clone(),
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            accel: self.cfg.runner.accel(),
            kernel,
            disks,
            serial_log: vm.serial_log(),
            qmp_socket: vm.qmp_socket(),
            pidfile: vm.pidfile(),
            incoming,
            nics: vm
                .record
                .nics
                .iter()
                .map(|n| NicArg {
                    mac: n.mac.clone(),
                    mtu: n.mtu,
                    qemu_socket: n.qemu_socket.clone(),
                    switch_socket: n.switch_socket.clone(),
                })
                .collect(),
        })
    }

    async fn launch(&self, vm: &mut Vm, incoming: bool) -> Result<()> {
        let launch = self.launch_for(vm, incoming)?;
        // QEMU binds its end of each NIC: a socket file left by an earlier run is in the way.
        for nic in &vm.record.nics {
            match std::fs::remove_file(&nic.qemu_socket) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&nic.qemu_socket)(e))
                }
                _ => {}
            }
        }
        vm.process_gone();
        vm.shutdown_seen = false;
        let runner = self.cfg.runner.clone();
        let pid = tokio::task::spawn_blocking(move || runner.launch(&launch))
            .await
            .map_err(|e| {
                ManagerError::Qemu(QemuError::Failed {
                    stderr: e.to_string(),
                })
            })??;
        vm.pid = Some(pid);
        vm.qmp().await?;
        Ok(())
    }

    fn new_vm(&self, instance: VmInstance, incoming: bool) -> Result<Vm> {
        instance
            .spec
            .validate()
            .map_err(|e| ManagerError::Spec(e.to_string()))?;
        let dir = self.cfg.data_dir.join("vms").join(instance.id.to_string());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let vm = Vm {
            record: VmRecord {
                instance,
                incoming,
                incoming_uri: None,
                want_running: false,
                migrating_out: false,
                started_at: None,
                nics: Vec::new(),
            },
            dir,
            pid: None,
            qmp: None,
            shutdown_seen: false,
        };
        vm.save()?;
        Ok(vm)
    }

    /// Defines the VM (creating its disks if missing) and starts it when `start`. Idempotent for an
    /// existing id. On failure nothing new is left behind.
    pub async fn create(&self, instance: VmInstance, start: bool) -> Result<VmObserved> {
        let id = instance.id;
        if self.vms.lock().await.contains_key(&id) {
            if start {
                return self.start(id).await;
            }
            return self.observe(id).await;
        }
        instance
            .spec
            .validate()
            .map_err(|e| ManagerError::Spec(e.to_string()))?;
        self.check_nics(&instance)?;
        if let BootSource::Kernel { kernel, initrd, .. } = &instance.spec.boot {
            self.ds.existing_image(kernel)?;
            if let Some(i) = initrd {
                self.ds.existing_image(i)?;
            }
        }
        let ds_dir_existed = self.ds.vm_dir(id).exists();
        self.ds.ensure_disks(id, &instance.spec)?;
        let mut vm = match self.new_vm(instance, false) {
            Ok(vm) => vm,
            Err(e) => {
                if !ds_dir_existed {
                    let _ = self.ds.delete_vm(id);
                }
                return Err(e);
            }
        };
        if start {
            if let Err(e) = self.do_start(&mut vm).await {
                let _ = vm.kill_now().await;
                self.detach_nics(&mut vm).await;
                let _ = std::fs::remove_dir_all(&vm.dir);
                if !ds_dir_existed {
                    let _ = self.ds.delete_vm(id);
                }
                return Err(e);
            }
        }
        let obs = vm.observe(&self.sampler).await;
        self.vms.lock().await.insert(
            id,
            Arc::new(Entry {
                vm: Mutex::new(vm),
                last: StdMutex::new(Some(obs.clone())),
            }),
        );
        Ok(obs)
    }

    async fn do_start(&self, vm: &mut Vm) -> Result<()> {
        if vm.live_pid().is_some() {
            let state = vm.state().await;
            if state == PowerState::Paused {
                let q = vm.qmp().await?;
                // A source paused by a completed migration must never run again: the guest
                // runs on the destination now.
                if q.query_migrate().await?.status() == "completed" {
                    return Err(ManagerError::BadState {
                        id: vm.id(),
                        state,
                        detail: "this copy was migrated to another host and stays paused".into(),
                    });
                }
                q.cont().await?;
            } else if state != PowerState::Running {
                return Err(ManagerError::BadState {
                    id: vm.id(),
                    state,
                    detail: "cannot start".into(),
                });
            }
            return Ok(());
        }
        self.attach_nics(vm).await?;
        if let Err(e) = self.launch(vm, false).await {
            let _ = vm.kill_now().await;
            self.detach_nics(vm).await;
            return Err(e);
        }
        vm.record.want_running = true;
        vm.record.started_at = Some(now_s());
        vm.save()
    }

    /// Starts a stopped VM (resumes a paused one).
    pub async fn start(&self, id: Uuid) -> Result<VmObserved> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.record.incoming {
            let state = vm.state().await;
            return Err(ManagerError::BadState {
                id,
                state,
                detail: "waits for an incoming migration".into(),
            });
        }
        self.do_start(&mut vm).await?;
        Ok(vm.observe(&self.sampler).await)
    }

    /// Stops the VM: ACPI power-off, then `quit`/kill after `timeout`; at once when `force`.
    pub async fn stop(&self, id: Uuid, force: bool, timeout: Duration) -> Result<VmObserved> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.record.migrating_out && vm.state().await == PowerState::Migrating {
            return Err(ManagerError::BadState {
                id,
                state: PowerState::Migrating,
                detail: "cancel the migration first".into(),
            });
        }
        vm.record.want_running = false;
        vm.save()?;
        if vm.live_pid().is_some() {
            let mut gone = false;
            if !force {
                match vm.qmp().await {
                    Ok(q) => match q.system_powerdown().await {
                        Ok(()) => gone = vm.wait_exit(timeout).await,
                        Err(e) => tracing::warn!("VM {id}: system_powerdown failed: {e}"),
                    },
                    Err(e) => tracing::warn!("VM {id}: QMP unavailable: {e}"),
                }
                if !gone {
                    tracing::info!("VM {id}: guest did not power off within {timeout:?}, forcing");
                }
            }
            if !gone {
                vm.kill_now().await?;
            }
        }
        vm.record.started_at = None;
        vm.record.migrating_out = false;
        vm.save()?;
        self.detach_nics(&mut vm).await;
        Ok(vm.observe(&self.sampler).await)
    }

    /// Resets the VM (`system_reset`).
    pub async fn reboot(&self, id: Uuid) -> Result<VmObserved> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let state = vm.state().await;
        if !matches!(state, PowerState::Running | PowerState::Paused) {
            return Err(ManagerError::BadState {
                id,
                state,
                detail: "only a running VM can reboot".into(),
            });
        }
        vm.qmp().await?.system_reset().await?;
        Ok(vm.observe(&self.sampler).await)
    }

    /// Stops the VM at once if it runs, forgets it, and deletes its disks when `delete_disks`.
    pub async fn delete(&self, id: Uuid, delete_disks: bool) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        vm.record.want_running = false;
        vm.kill_now().await?;
        self.detach_nics(&mut vm).await;
        std::fs::remove_dir_all(&vm.dir).map_err(io_err(&vm.dir))?;
        self.vms.lock().await.remove(&id);
        if delete_disks {
            self.ds.delete_vm(id)?;
        }
        Ok(())
    }

    /// Starts a QEMU for `instance` waiting for an incoming migration; returns the URI to send to.
    /// Repeating it for a VM already waiting returns the same URI.
    pub async fn prepare_incoming(&self, instance: VmInstance) -> Result<String> {
        let id = instance.id;
        if let Ok(e) = self.entry(id).await {
            let mut vm = e.vm.lock().await;
            let state = vm.state().await;
            return match (&vm.record.incoming_uri, state) {
                (Some(uri), PowerState::Incoming) => Ok(uri.clone()),
                _ => Err(ManagerError::BadState {
                    id,
                    state,
                    detail: "the VM is already on this host".into(),
                }),
            };
        }
        self.check_nics(&instance)?;
        let mut vm = self.new_vm(instance, true)?;
        vm.record.started_at = vm.record.instance.started_at;
        match self.start_incoming(&mut vm).await {
            Ok(uri) => {
                self.vms.lock().await.insert(
                    id,
                    Arc::new(Entry {
                        vm: Mutex::new(vm),
                        last: StdMutex::new(None),
                    }),
                );
                Ok(uri)
            }
            Err(e) => {
                let _ = vm.kill_now().await;
                self.detach_nics(&mut vm).await;
                let _ = std::fs::remove_dir_all(&vm.dir);
                Err(e)
            }
        }
    }

    async fn start_incoming(&self, vm: &mut Vm) -> Result<String> {
        // The port exists on this host's switch before the guest can arrive.
        self.attach_nics(vm).await?;
        self.launch(vm, true).await?;
        let q = vm.qmp().await?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port(self.cfg.address).map_err(io_err(Path::new("tcp port")))?;
            let uri = match self.cfg.address {
                IpAddr::V4(a) => format!("tcp:{a}:{port}"),
                IpAddr::V6(a) => format!("tcp:[{a}]:{port}"),
            };
            match q.migrate_incoming(&uri).await {
                Ok(()) => {
                    vm.record.incoming_uri = Some(uri.clone());
                    vm.save()?;
                    return Ok(uri);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(ManagerError::Qmp)
            .unwrap_or(ManagerError::Spec("no port".into())))
    }

    /// Starts sending the VM to `uri` and returns at once.
    pub async fn migrate_out(
        &self,
        id: Uuid,
        uri: &str,
        settings: MigrationSettings,
    ) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let state = vm.state().await;
        if !matches!(state, PowerState::Running | PowerState::Paused) || vm.record.incoming {
            return Err(ManagerError::BadState {
                id,
                state,
                detail: "only a running VM can migrate".into(),
            });
        }
        if !uri.starts_with("tcp:") {
            return Err(ManagerError::Spec(format!(
                "migration URI must be tcp:HOST:PORT, got '{uri}'"
            )));
        }
        let q = vm.qmp().await?;
        let max_bandwidth = if settings.max_bandwidth == 0 {
            UNLIMITED_BANDWIDTH
        } else {
            settings.max_bandwidth
        };
        q.migrate_set_parameters(&MigrateParameters {
            max_bandwidth: Some(max_bandwidth),
            downtime_limit: Some(settings.downtime_limit_ms),
        })
        .await?;
        q.migrate(uri).await?;
        vm.record.migrating_out = true;
        vm.save()
    }

    /// QEMU's view of the outgoing migration.
    pub async fn migration_status(&self, id: Uuid) -> Result<MigrationStatus> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.live_pid().is_none() {
            return Err(ManagerError::BadState {
                id,
                state: vm.state().await,
                detail: "QEMU is not running".into(),
            });
        }
        let info = vm.qmp().await?.query_migrate().await?;
        let ram = info.ram.clone().unwrap_or_default();
        Ok(MigrationStatus {
            qemu_status: info.status().to_string(),
            transferred_bytes: ram.transferred,
            remaining_bytes: ram.remaining,
            total_bytes: ram.total,
            rate_bps: (ram.mbps * 1_000_000.0) as u64,
            dirty_pages_rate: ram.dirty_pages_rate,
            total_time_ms: info.total_time.unwrap_or(0),
            downtime_ms: info.downtime,
            error: info.error_desc.clone(),
        })
    }

    /// Cancels the outgoing migration; the VM keeps running here.
    pub async fn cancel_migration(&self, id: Uuid) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let q = vm.qmp().await?;
        let info = q.query_migrate().await?;
        if info.status() == "completed" {
            return Err(ManagerError::BadState {
                id,
                state: PowerState::Paused,
                detail: "the migration already completed".into(),
            });
        }
        q.migrate_cancel().await?;
        vm.record.migrating_out = false;
        vm.save()
    }

    /// After a completed migration: quits the paused source QEMU and forgets the VM (disks stay).
    pub async fn finish_migration_source(&self, id: Uuid) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.live_pid().is_some() {
            let info = vm.qmp().await?.query_migrate().await?;
            if info.status() != "completed" {
                let state = vm.state().await;
                return Err(ManagerError::BadState {
                    id,
                    state,
                    detail: format!("migration is '{}', not completed", info.status()),
                });
            }
            vm.record.want_running = false;
            vm.kill_now().await?;
        }
        self.detach_nics(&mut vm).await;
        std::fs::remove_dir_all(&vm.dir).map_err(io_err(&vm.dir))?;
        self.vms.lock().await.remove(&id);
        Ok(())
    }

    /// Kills an incoming QEMU that will not receive its VM and forgets it (disks stay).
    pub async fn abort_incoming(&self, id: Uuid) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let state = vm.state().await;
        // Only a QEMU that still waits (or is gone) is killed: once the guest runs here (or is
        // paused after arriving) this may be the only copy of the VM.
        if !vm.record.incoming
            || !matches!(
                state,
                PowerState::Incoming | PowerState::Stopped | PowerState::Crashed
            )
        {
            return Err(ManagerError::BadState {
                id,
                state,
                detail: "the VM already runs here".into(),
            });
        }
        vm.kill_now().await?;
        self.detach_nics(&mut vm).await;
        std::fs::remove_dir_all(&vm.dir).map_err(io_err(&vm.dir))?;
        self.vms.lock().await.remove(&id);
        Ok(())
    }

    /// The last `max_bytes` (at most [`MAX_CONSOLE_BYTES`]) of the serial console.
    pub async fn console_log(&self, id: Uuid, max_bytes: u64) -> Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let e = self.entry(id).await?;
        let path = e.vm.lock().await.serial_log();
        let max = max_bytes.min(MAX_CONSOLE_BYTES);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(err) => return Err(io_err(&path)(err)),
        };
        let len = f.metadata().map_err(io_err(&path))?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max)))
            .map_err(io_err(&path))?;
        let mut buf = Vec::new();
        f.take(max).read_to_end(&mut buf).map_err(io_err(&path))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Path of the VM's serial log.
    pub async fn serial_log_path(&self, id: Uuid) -> Result<PathBuf> {
        Ok(self.entry(id).await?.vm.lock().await.serial_log())
    }
}

/// [`SwitchLink::reconcile`] on a blocking thread.
async fn reconcile_now(link: &Arc<SwitchLink>) -> Result<Outcome, NetworkError> {
    let l = link.clone();
    tokio::task::spawn_blocking(move || l.reconcile())
        .await
        .map_err(|e| NetworkError::Io {
            path: link.settings().control.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
}

fn free_port(addr: IpAddr) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::new(addr, 0))?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(map_status("running"), PowerState::Running);
        assert_eq!(map_status("paused"), PowerState::Paused);
        assert_eq!(map_status("postmigrate"), PowerState::Paused);
        assert_eq!(map_status("inmigrate"), PowerState::Incoming);
        assert_eq!(map_status("finish-migrate"), PowerState::Migrating);
        assert_eq!(map_status("shutdown"), PowerState::Stopped);
        assert_eq!(map_status("internal-error"), PowerState::Crashed);
    }
}
