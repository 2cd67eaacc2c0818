//! What is in flight, in memory only: which VMs have an operation running, the locks that
//! serialize placement, network changes and each host's switch pushes, the migrations running,
//! and the balancer's wake-up and last results.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vinfra_types::balancing::{PlanSummary, Recommendation};
use vinfra_types::MigrationProgress;

use super::locks::lock;
use crate::error::Error;

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
        }
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

/// Everything in flight (see the module doc).
#[derive(Default)]
pub struct Inflight {
    busy: Arc<Mutex<HashSet<String>>>,
    last_op: Arc<Mutex<HashMap<String, Instant>>>,
    /// Serializes placement decisions with the record writes that claim capacity.
    placement: tokio::sync::Mutex<()>,
    /// Serializes changes of networks and their address management, from the read to the write.
    networks: tokio::sync::Mutex<()>,
    migrations: Mutex<HashMap<String, Arc<ActiveMigration>>>,
    /// Per host: held while its switch configuration is computed and sent.
    switch_pushes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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

    /// True while an operation on the VM is in flight or finished less than `settle` ago.
    pub fn recently_busy(&self, name: &str, settle: Duration) -> bool {
        lock(&self.busy).contains(name)
            || lock(&self.last_op)
                .get(name)
                .is_some_and(|t| t.elapsed() < settle)
    }

    /// Takes the placement lock: hold it from the placement decision until the record that
    /// claims the capacity is written.
    pub async fn placement_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.placement.lock().await
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
    /// one.
    pub fn begin_migration(&self, active: Arc<ActiveMigration>) -> bool {
        let mut all = lock(&self.migrations);
        if all.contains_key(&active.vm) {
            return false;
        }
        all.insert(active.vm.clone(), active);
        true
    }

    /// Forgets VM `vm`'s migration (it ended).
    pub fn end_migration(&self, vm: &str) {
        lock(&self.migrations).remove(vm);
    }

    /// The lock that serializes the switch pushes to `host`.
    pub fn switch_push_gate(&self, host: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.switch_pushes)
            .entry(host.to_string())
            .or_default()
            .clone()
    }
}
