//! What is in flight, in memory only: which VMs have an operation running, the locks that
//! serialize placement (with what placement keeps between its decisions, and the names whose
//! records changed since), network changes, changes of start-after orderings, security groups and routers, each host's
//! switch pushes, the migrations running, the hosts being fenced, and the balancer's wake-up and
//! last results.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vinfra_types::balancing::{PlanSummary, Recommendation};
use vinfra_types::MigrationProgress;

use vinfra_proto::HostSwitchConfig;

use super::locks::lock;
use crate::error::Error;

/// Marks a VM as having an operation in flight; released on drop.
pub struct BusyGuard {
    set: Arc<Mutex<HashSet<String>>>,
    last_op: Arc<Mutex<LastOps>>,
    name: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.name);
        lock(&self.last_op).ended(&self.name, Instant::now());
    }
}

/// How long the end of a VM's last operation is remembered: [`Inflight::recently_busy`] looks
/// no further back.
pub const LAST_OP_KEPT: Duration = Duration::from_secs(60);

/// When each VM's last operation ended, for the last [`LAST_OP_KEPT`] at least: older ends are
/// dropped whenever the map has doubled since the last time (a console that ran a million
/// operations does not keep a million names).
#[derive(Default)]
struct LastOps {
    at: HashMap<String, Instant>,
    /// The size at which older ends are dropped next.
    prune_at: usize,
}

impl LastOps {
    /// At least this many names before the first pruning.
    const PRUNE_FLOOR: usize = 1024;

    fn ended(&mut self, name: &str, now: Instant) {
        match self.at.get_mut(name) {
            Some(at) => *at = now,
            None => {
                self.at.insert(name.to_string(), now);
            }
        }
        if self.at.len() >= self.prune_at.max(Self::PRUNE_FLOOR) {
            self.at
                .retain(|_, at| now.saturating_duration_since(*at) < LAST_OP_KEPT);
            self.prune_at = 2 * self.at.len();
        }
    }

    fn within(&self, name: &str, settle: Duration) -> bool {
        self.at
            .get(name)
            .is_some_and(|t| t.elapsed() < settle.min(LAST_OP_KEPT))
    }
}

/// Marks a host as being fenced; released on drop.
pub struct FenceGuard {
    set: Arc<Mutex<HashSet<String>>>,
    host: String,
}

impl Drop for FenceGuard {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.host);
    }
}

/// A migration in flight.
pub struct ActiveMigration {
    /// The VM.
    pub vm: String,
    /// The host it leaves.
    pub source: String,
    /// The host it goes to.
    pub destination: String,
    progress: Mutex<MigrationProgress>,
    cancel: AtomicBool,
    /// The task that follows it, once one does.
    task: Mutex<Option<u64>>,
    /// When this console began following it, and the end of each step since.
    started: Instant,
    steps: Mutex<Vec<(&'static str, Instant)>>,
}

impl ActiveMigration {
    /// A migration of `progress.vm` from `progress.source` to `progress.destination`.
    pub fn new(progress: MigrationProgress) -> Self {
        ActiveMigration {
            vm: progress.vm.clone(),
            source: progress.source.clone(),
            destination: progress.destination.clone(),
            progress: Mutex::new(progress),
            cancel: AtomicBool::new(false),
            task: Mutex::new(None),
            started: Instant::now(),
            steps: Mutex::new(Vec::new()),
        }
    }

    /// The time since the migration began here (its start, or this console's taking it up
    /// after a restart).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Notes that the step `name` ended now (it began where the previous one ended).
    pub fn step_done(&self, name: &'static str) {
        lock(&self.steps).push((name, Instant::now()));
    }

    /// The time since the migration began here, and each step's share of it, in the order they
    /// ended: `1.03 s (destination's switch 12 ms, destination's QEMU 190 ms, …)`.
    pub fn timeline(&self) -> String {
        let steps = lock(&self.steps);
        let mut from = self.started;
        let parts: Vec<String> = steps
            .iter()
            .map(|(name, at)| {
                let d = at.saturating_duration_since(from);
                from = *at;
                format!("{name} {} ms", d.as_millis())
            })
            .collect();
        let total = from.saturating_duration_since(self.started);
        format!("{:.2} s ({})", total.as_secs_f64(), parts.join(", "))
    }

    /// Current progress.
    pub fn progress(&self) -> MigrationProgress {
        lock(&self.progress).clone()
    }

    /// Changes the progress; returns the new one.
    pub fn update(&self, f: impl FnOnce(&mut MigrationProgress)) -> MigrationProgress {
        let mut p = lock(&self.progress);
        f(&mut p);
        p.clone()
    }

    /// Asks the migration's task to cancel it.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// True once a cancel was asked for.
    pub fn cancel_asked(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Task `id` follows the migration from now on (a cancel through the VM's migration
    /// answers with it).
    pub fn followed_by(&self, id: u64) {
        *lock(&self.task) = Some(id);
    }

    /// The task that follows the migration, if one does.
    pub fn task(&self) -> Option<u64> {
        *lock(&self.task)
    }
}

/// The balancer's last pass and the recommendations waiting.
#[derive(Debug, Default)]
pub struct BalancerResults {
    /// When the last pass ran, seconds since the Unix epoch.
    pub last_run_at: Option<u64>,
    /// What the last successful pass planned.
    pub last_plan: Option<PlanSummary>,
    /// Why the last pass failed, if it did.
    pub last_error: Option<String>,
    /// The moves of the last plan (manual mode).
    pub recommendations: Vec<Recommendation>,
    /// The last recommendation id given out (ids are never reused).
    pub next_id: u64,
}

/// The balancer's state: wake-up, the locks of passes and rule changes, the last results.
#[derive(Default)]
pub struct BalancerState {
    results: Mutex<BalancerResults>,
    wake: tokio::sync::Notify,
    pass: tokio::sync::Mutex<()>,
    rules: tokio::sync::Mutex<()>,
}

impl BalancerState {
    /// Asks for a pass soon (an event changed the cluster).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when [`BalancerState::wake`] was called.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The last results, locked.
    pub fn results(&self) -> std::sync::MutexGuard<'_, BalancerResults> {
        lock(&self.results)
    }

    /// Serializes passes: hold it for a whole pass.
    pub async fn pass_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.pass.lock().await
    }

    /// Serializes rule checks with rule writes.
    pub async fn rules_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.rules.lock().await
    }
}

/// What placement keeps between its decisions, under the placement lock: `crate::fit` keeps
/// its index of the cluster here. The type is fit's own; the state below fit does not name it.
#[derive(Default)]
pub struct PlacementMemo(pub Option<Box<dyn Any + Send>>);

/// What changed since placement last caught up, by name: VMs whose record or migration
/// changed, hosts whose record changed or whose migrations away began or ended; `all` when
/// everything is to be read again (at start, after a rule or the cluster's ratios changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementChanges {
    /// Read everything again.
    pub all: bool,
    /// VM names.
    pub vms: HashSet<String>,
    /// Host names.
    pub hosts: HashSet<String>,
}

impl Default for PlacementChanges {
    /// Nothing read yet: everything.
    fn default() -> Self {
        PlacementChanges {
            all: true,
            vms: HashSet::new(),
            hosts: HashSet::new(),
        }
    }
}

/// The switch configuration a host's agent last applied on its current connection (the
/// connection's id and the configuration), kept under the host's push lock: a push of an equal
/// configuration to the same connection is not sent again.
pub type LastPush = Option<(u64, HostSwitchConfig)>;

/// Everything in flight (see the module doc).
#[derive(Default)]
pub struct Inflight {
    busy: Arc<Mutex<HashSet<String>>>,
    last_op: Arc<Mutex<LastOps>>,
    /// Serializes placement decisions with the record writes that claim capacity, and holds
    /// what placement keeps between them.
    placement: tokio::sync::Mutex<PlacementMemo>,
    /// What changed since placement last caught up (a std lock: marked by record writes,
    /// also under the placement lock).
    placement_changes: Mutex<PlacementChanges>,
    /// Serializes changes of networks and their address management, from the read to the write.
    networks: tokio::sync::Mutex<()>,
    migrations: Mutex<HashMap<String, Arc<ActiveMigration>>>,
    /// Per host: held while its switch configuration is computed and sent.
    switch_pushes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<LastPush>>>>,
    /// Serializes the checks of VMs' start-after orderings with the writes that change them.
    start_after: tokio::sync::Mutex<()>,
    /// Serializes the checks that security groups exist (or are unused) with the writes that
    /// depend on them.
    security_groups: tokio::sync::Mutex<()>,
    /// Serializes router changes, from the checks (attachments, routes) to the write. Taken
    /// before the networks lock when both are held.
    routers: tokio::sync::Mutex<()>,
    /// The hosts whose fence command runs.
    fencing: Arc<Mutex<HashSet<String>>>,
    /// The balancer's wake-up and results.
    pub balancer: BalancerState,
}

impl Inflight {
    /// Marks a VM busy (an operation in flight); [`Error::VmBusy`] when it already is.
    pub fn busy(&self, name: &str) -> Result<BusyGuard, Error> {
        if !lock(&self.busy).insert(name.to_string()) {
            return Err(Error::VmBusy {
                vm: name.to_string(),
            });
        }
        Ok(BusyGuard {
            set: self.busy.clone(),
            last_op: self.last_op.clone(),
            name: name.to_string(),
        })
    }

    /// True while an operation on the VM is in flight.
    pub fn in_flight(&self, name: &str) -> bool {
        lock(&self.busy).contains(name)
    }

    /// True while an operation on the VM is in flight or finished less than `settle` ago
    /// (at most [`LAST_OP_KEPT`]).
    pub fn recently_busy(&self, name: &str, settle: Duration) -> bool {
        lock(&self.busy).contains(name) || lock(&self.last_op).within(name, settle)
    }

    /// Takes the placement lock, with what placement keeps between decisions: hold it from
    /// the placement decision until the record that claims the capacity is written.
    pub async fn placement_lock(&self) -> tokio::sync::MutexGuard<'_, PlacementMemo> {
        self.placement.lock().await
    }

    /// Notes that VM `vm`'s record or migration changed (placement reads it again).
    pub fn placement_changed_vm(&self, vm: &str) {
        let mut c = lock(&self.placement_changes);
        if !c.all && !c.vms.contains(vm) {
            c.vms.insert(vm.to_string());
        }
    }

    /// Notes that host `host`'s record changed or a migration away from it began or ended.
    pub fn placement_changed_host(&self, host: &str) {
        let mut c = lock(&self.placement_changes);
        if !c.all && !c.hosts.contains(host) {
            c.hosts.insert(host.to_string());
        }
    }

    /// Notes that placement must read everything again (rules or cluster ratios changed).
    pub fn placement_changed_all(&self) {
        let mut c = lock(&self.placement_changes);
        c.all = true;
        c.vms.clear();
        c.hosts.clear();
    }

    /// What changed since the last call (everything, at the first).
    pub fn take_placement_changes(&self) -> PlacementChanges {
        std::mem::replace(
            &mut *lock(&self.placement_changes),
            PlacementChanges {
                all: false,
                vms: HashSet::new(),
                hosts: HashSet::new(),
            },
        )
    }

    /// Takes the networks lock: hold it from reading the address management until the write.
    pub async fn networks_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.networks.lock().await
    }

    /// The migration of VM `vm` in flight.
    pub fn migration(&self, vm: &str) -> Option<Arc<ActiveMigration>> {
        lock(&self.migrations).get(vm).cloned()
    }

    /// True while VM `vm` is being migrated.
    pub fn migrating(&self, vm: &str) -> bool {
        lock(&self.migrations).contains_key(vm)
    }

    /// Every migration in flight.
    pub fn migrations(&self) -> Vec<Arc<ActiveMigration>> {
        lock(&self.migrations).values().cloned().collect()
    }

    /// Registers a migration in flight; false (and nothing registered) when the VM already has
    /// one. Placement counts the VM on its destination from now on, and its share on the source
    /// as held back.
    pub fn begin_migration(&self, active: Arc<ActiveMigration>) -> bool {
        {
            let mut all = lock(&self.migrations);
            if all.contains_key(&active.vm) {
                return false;
            }
            all.insert(active.vm.clone(), active.clone());
        }
        self.placement_changed_vm(&active.vm);
        self.placement_changed_host(&active.source);
        true
    }

    /// Forgets VM `vm`'s migration (it ended).
    pub fn end_migration(&self, vm: &str) {
        let ended = lock(&self.migrations).remove(vm);
        if let Some(m) = ended {
            self.placement_changed_vm(vm);
            self.placement_changed_host(&m.source);
        }
    }

    /// Takes the start-after lock: hold it from checking a VM's start-after (the VM it names
    /// exists, no cycle) until the record is written, and while clearing the start-afters that
    /// name a deleted VM.
    pub async fn start_after_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.start_after.lock().await
    }

    /// Takes the security-group lock: hold it from checking that the groups a NIC or a rule
    /// names exist (or that no NIC or rule names a group) until the record is written.
    pub async fn security_groups_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.security_groups.lock().await
    }

    /// Takes the router lock: hold it from reading the routers (which network is attached
    /// where, which routes a router has) until the router record is written. An attachment
    /// takes the networks lock after it.
    pub async fn routers_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.routers.lock().await
    }

    /// Marks `host` as being fenced; [`Error::FenceInProgress`] when its fence command runs
    /// already.
    pub fn fencing(&self, host: &str) -> Result<FenceGuard, Error> {
        if !lock(&self.fencing).insert(host.to_string()) {
            return Err(Error::FenceInProgress {
                host: host.to_string(),
            });
        }
        Ok(FenceGuard {
            set: self.fencing.clone(),
            host: host.to_string(),
        })
    }

    /// The lock that serializes the switch pushes to `host`, with what the last one sent.
    pub fn switch_push_gate(&self, host: &str) -> Arc<tokio::sync::Mutex<LastPush>> {
        lock(&self.switch_pushes)
            .entry(host.to_string())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_older_than_kept_go_once_the_map_has_grown_enough() {
        let mut ops = LastOps::default();
        let t0 = Instant::now();
        for i in 0..LastOps::PRUNE_FLOOR - 1 {
            ops.ended(&format!("old-{i}"), t0);
        }
        ops.ended("old-0", t0);
        assert_eq!(
            ops.at.len(),
            LastOps::PRUNE_FLOOR - 1,
            "a name is kept once"
        );
        let later = t0 + LAST_OP_KEPT + Duration::from_secs(1);
        ops.ended("new", later);
        assert_eq!(ops.at.len(), 1, "the old ends went at the floor");
        assert_eq!(ops.at.get("new"), Some(&later));
        // Recent ends stay, however many.
        for i in 0..3 * LastOps::PRUNE_FLOOR {
            ops.ended(&format!("recent-{i}"), later);
        }
        assert_eq!(ops.at.len(), 3 * LastOps::PRUNE_FLOOR + 1);
    }

    #[test]
    fn recently_busy_looks_back_settle_but_no_further_than_kept() {
        let inflight = Inflight::default();
        let guard = inflight.busy("vm1").expect("free");
        assert!(inflight.recently_busy("vm1", Duration::ZERO), "in flight");
        drop(guard);
        assert!(inflight.recently_busy("vm1", Duration::from_secs(3)));
        assert!(!inflight.recently_busy("vm1", Duration::ZERO));
        assert!(!inflight.recently_busy("vm2", Duration::from_secs(3)));
        let long_ago = Instant::now()
            .checked_sub(LAST_OP_KEPT + Duration::from_secs(1))
            .expect("the clock has run longer than that");
        lock(&inflight.last_op).ended("vm3", long_ago);
        assert!(!inflight.recently_busy("vm3", 2 * LAST_OP_KEPT));
    }
}
