//! The committer: the store's thread that commits the open batch and syncs the WAL, and tells
//! those waiting for its writes (module doc of [`super`]).
//!
//! A write is numbered when it is made; whoever wants it on disk asks for its number
//! ([`Committer::ask`]): the committer, woken if it sleeps, runs the store's commit and sync
//! once for every write made up to then (it feeds the watchers too), wakes those blocked on
//! the sync ([`Committer::wait_durable`]) and calls those who asked to be told
//! ([`Committer::then`]). Writes asked for while a sync runs go with the next one. When the
//! store is dropped ([`Committer::close`]), the committer commits and syncs what was written
//! and ends.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};

use crate::kv::{Durability, PendingWrite, StoreError};

/// Called once a write is on disk (or cannot be).
type Told = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The committer's side of a store: its state, and what wakes whom.
#[derive(Default)]
pub(super) struct Committer {
    sync: Mutex<SyncState>,
    /// Signalled when a sync ends.
    synced: Condvar,
    /// Signalled when the committer has work (a sync asked for, or the store closing).
    wanted: Condvar,
    /// The committer's thread: a write waited for there could never be synced.
    thread: OnceLock<ThreadId>,
}

/// The committer's state, under [`Committer::sync`].
#[derive(Default)]
struct SyncState {
    /// Every commit up to this number is on disk.
    synced: u64,
    /// Commits up to this number were asked to be on disk.
    wanted: u64,
    /// The committer sleeps until it is asked for more.
    idle: bool,
    /// The store was dropped: the committer syncs what was written and ends.
    closing: bool,
    /// A sync failed (what the OS said): the store refuses every call.
    failed: Option<String>,
    /// Syncs made so far.
    syncs: u64,
    /// Those to tell when their commit is on disk: its number, and what to call.
    told: Vec<(u64, Told)>,
}

/// Starts the thread of `committer`: `commit` commits the batch and syncs it, and answers the
/// number of the last write now on disk (or why none is).
pub(super) fn spawn(
    committer: Arc<Committer>,
    mut commit: impl FnMut() -> Result<u64, String> + Send + 'static,
) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("store-commit".into())
        .spawn(move || {
            let _ = committer.thread.set(std::thread::current().id());
            let ran = catch_unwind(AssertUnwindSafe(|| committer.run(&mut commit)));
            if ran.is_err() {
                // Nothing would sync again: the store refuses every call from now on, and
                // whoever waits is told.
                committer.fail("the store's committer failed unexpectedly".into());
            }
        })
        .map_err(|e| StoreError::NotDurable(format!("starting the store's committer: {e}")))
}

/// Commit `seq` of a store, on disk once its committer says so.
struct Durable {
    committer: Arc<Committer>,
    seq: u64,
}

impl Durability for Durable {
    fn wait(self: Box<Self>) -> Result<(), StoreError> {
        self.committer.wait_durable(self.seq)
    }

    fn then(self: Box<Self>, done: Told) {
        self.committer.then(self.seq, done);
    }
}

/// Locks `m`; a panic while holding the sync state cannot leave it wrong (it is set only after
/// a sync returned), so the lock is safe to reuse when poisoned.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Committer {
    /// Waiting for commit `seq` to be on disk.
    pub(super) fn pending(self: &Arc<Self>, seq: u64) -> PendingWrite {
        PendingWrite::new(Durable {
            committer: Arc::clone(self),
            seq,
        })
    }

    /// Why the store refuses every call, when a sync failed.
    pub(super) fn failed(&self) -> Option<String> {
        lock(&self.sync).failed.clone()
    }

    /// Syncs made so far.
    pub(super) fn syncs(&self) -> u64 {
        lock(&self.sync).syncs
    }

    /// Asks the committer for every commit up to `seq` (under the sync state's lock).
    fn ask(&self, state: &mut SyncState, seq: u64) {
        if seq > state.wanted {
            state.wanted = seq;
            if state.idle {
                self.wanted.notify_one();
            }
        }
    }

    /// Returns once commit `seq` is on disk. Refused on the committer's own thread (a
    /// callback of [`Committer::then`] that waited for a write would wait for itself).
    pub(super) fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        if self.thread.get() == Some(&std::thread::current().id()) {
            return Err(StoreError::NotDurable(
                "a write waited for on the store's committer thread (in a `then` callback)".into(),
            ));
        }
        let mut state = lock(&self.sync);
        if state.synced < seq && state.failed.is_none() {
            self.ask(&mut state, seq);
        }
        loop {
            if let Some(e) = &state.failed {
                return Err(StoreError::NotDurable(e.clone()));
            }
            if state.synced >= seq {
                return Ok(());
            }
            state = self
                .synced
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Calls `done` once commit `seq` is on disk (at once when it is, or when a sync failed).
    fn then(&self, seq: u64, done: Told) {
        let mut state = lock(&self.sync);
        let now = match &state.failed {
            Some(e) => Some(Err(StoreError::NotDurable(e.clone()))),
            None if state.synced >= seq => Some(Ok(())),
            None => None,
        };
        match now {
            Some(result) => {
                drop(state);
                done(result);
            }
            None => {
                self.ask(&mut state, seq);
                state.told.push((seq, done));
            }
        }
    }

    /// The committer's loop: one commit and sync for everything written whenever a write is
    /// asked for; ends once the store is dropped (after syncing what was written).
    fn run(&self, commit: &mut dyn FnMut() -> Result<u64, String>) {
        let mut state = lock(&self.sync);
        loop {
            let closing = state.closing;
            if state.failed.is_none() && (state.wanted > state.synced || closing) {
                drop(state);
                let done = catch_unwind(AssertUnwindSafe(&mut *commit))
                    .unwrap_or_else(|_| Err("the store's commit failed unexpectedly".into()));
                state = lock(&self.sync);
                match done {
                    Ok(upto) => {
                        state.synced = state.synced.max(upto);
                        state.syncs += 1;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store database: a batch of writes is not on disk");
                        state.failed = Some(e);
                    }
                }
                self.synced.notify_all();
                let ready = take_ready(&mut state);
                drop(state);
                tell(ready);
                state = lock(&self.sync);
                if closing {
                    return;
                }
                continue;
            }
            if closing {
                return;
            }
            state.idle = true;
            state = self
                .wanted
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle = false;
        }
    }

    /// The committer cannot go on: the store refuses every call, those blocked on a sync and
    /// those waiting to be told get `error`.
    fn fail(&self, error: String) {
        let mut state = lock(&self.sync);
        if state.failed.is_none() {
            tracing::error!(error = %error, "store database: no more writes go to disk");
            state.failed = Some(error);
        }
        self.synced.notify_all();
        let ready = take_ready(&mut state);
        drop(state);
        tell(ready);
    }

    /// Tells the committer to sync what was written and end.
    pub(super) fn close(&self) {
        let mut state = lock(&self.sync);
        state.closing = true;
        self.wanted.notify_one();
    }
}

/// Those to tell now, with what: every one on a failed store, else those whose commit is on
/// disk.
fn take_ready(state: &mut SyncState) -> Vec<(Told, Result<(), StoreError>)> {
    let failed = state.failed.clone();
    let synced = state.synced;
    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.told)
        .into_iter()
        .partition(|(seq, _)| failed.is_some() || *seq <= synced);
    state.told = waiting;
    ready
        .into_iter()
        .map(|(_, done)| {
            let result = match &failed {
                Some(e) => Err(StoreError::NotDurable(e.clone())),
                None => Ok(()),
            };
            (done, result)
        })
        .collect()
}

/// Calls each of `ready`; one that panics is logged and does not keep the others from being
/// told.
fn tell(ready: Vec<(Told, Result<(), StoreError>)>) {
    for (done, result) in ready {
        if catch_unwind(AssertUnwindSafe(move || done(result))).is_err() {
            tracing::error!("a store write's `then` callback panicked");
        }
    }
}
