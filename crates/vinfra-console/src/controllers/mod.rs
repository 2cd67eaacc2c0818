//! Controllers: reconcile loops that bring observed state to desired state.
//!
//! A [`Controller`] names a store prefix to watch, maps a changed store key to a reconcile key, lists
//! every key for the periodic resync, and reconciles one key. [`run`] drives it: keys arrive from the
//! store watch, from an extra trigger channel (e.g. agent connections) and from the resync timer; a
//! key is reconciled by at most one task at a time, and reconciled again if it changed meanwhile.
//!
//! The resync takes every key once at start, then every key once per resync period in
//! [`RESYNC_SLICES`] slices, one slice at a time (each key always in the same slice): a console
//! with 10,000 hosts does not reconcile all of them in one burst every period, which held up
//! whatever else it did in that moment (creates waited behind 10,000 reconciles).

pub mod edge;
pub mod switch;
pub mod vm;

use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use vinfra_store::Store;

/// Why a reconcile failed (it is retried at the next trigger or resync).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// the store failed
    #[error("store")]
    Store(#[from] vinfra_store::StoreError),
    /// a command to an agent failed
    #[error(transparent)]
    Agent(#[from] crate::agents::RequestError),
    /// a console operation failed
    #[error(transparent)]
    Console(#[from] crate::error::Error),
}

/// A reconcile loop over one kind of key.
pub trait Controller: Send + Sync + 'static {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Store prefix whose changes trigger reconciles.
    fn prefix(&self) -> &'static str;
    /// Waits, before a change the store's watch told of is mapped to a key, until the
    /// console's mirrors that [`Controller::key_for`] and the reconcile read hold it (the
    /// store has a write before the mirror does).
    fn settle(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Reconcile key for a changed store key (`None`: nothing to do).
    fn key_for(&self, store_key: &str) -> Option<String>;
    /// Every key, for the periodic resync.
    fn all_keys(&self) -> Vec<String>;
    /// Brings one key's observed state towards its desired state.
    fn reconcile(&self, key: &str) -> impl Future<Output = Result<(), ControllerError>> + Send;
}

/// The periodic resync goes through every key in this many slices, one per
/// `resync / RESYNC_SLICES`.
pub const RESYNC_SLICES: u64 = 10;

/// The resync slice `key` belongs to: the same every time (a fixed hash).
fn slice_of(key: &str) -> u64 {
    // `DefaultHasher::new` has fixed keys: the same slice for a key on every call.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish() % RESYNC_SLICES
}

/// Drives a controller until the store watch ends.
pub async fn run<C: Controller>(
    controller: Arc<C>,
    store: Arc<dyn Store>,
    mut triggers: mpsc::UnboundedReceiver<String>,
    resync: Duration,
) -> Result<(), ControllerError> {
    let from = store.revision()?;
    let mut watch = store.watch(controller.prefix(), from)?;
    let slices = u32::try_from(RESYNC_SLICES).unwrap_or(1);
    let mut tick = tokio::time::interval((resync / slices).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The slice the next tick resyncs; `None`: every key (the first tick).
    let mut slice: Option<u64> = None;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut running: HashSet<String> = HashSet::new();
    let mut again: HashSet<String> = HashSet::new();
    loop {
        let keys: Vec<String> = tokio::select! {
            ev = watch.recv() => match ev {
                Some(ev) => {
                    controller.settle().await;
                    controller.key_for(ev.key()).into_iter().collect()
                }
                None => return Ok(()),
            },
            Some(k) = triggers.recv() => vec![k],
            _ = tick.tick() => {
                let keys = controller.all_keys();
                match slice {
                    None => {
                        slice = Some(0);
                        keys
                    }
                    Some(n) => {
                        slice = Some((n + 1) % RESYNC_SLICES);
                        keys.into_iter().filter(|k| slice_of(k) == n).collect()
                    }
                }
            }
            Some(k) = done_rx.recv() => {
                running.remove(&k);
                if again.remove(&k) { vec![k] } else { vec![] }
            }
        };
        for key in keys {
            if running.contains(&key) {
                again.insert(key);
                continue;
            }
            running.insert(key.clone());
            let c = controller.clone();
            let done = done_tx.clone();
            tokio::spawn(crate::state::events::inherit(async move {
                if let Err(e) = c.reconcile(&key).await {
                    tracing::warn!(
                        controller = c.name(),
                        key,
                        "reconcile failed: {}",
                        vinfra_types::error::Chain(&e)
                    );
                }
                let _ = done.send(key);
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_slice_and_the_slices_share_the_keys_about_evenly() {
        let mut sizes = [0usize; RESYNC_SLICES as usize];
        for i in 0..10_000 {
            let key = format!("h{i}");
            let s = slice_of(&key);
            assert_eq!(s, slice_of(&key), "{key}");
            sizes[s as usize] += 1;
        }
        // 1,000 each on average: a slice is never more than a quarter off.
        assert!(
            sizes.iter().all(|&n| (750..=1250).contains(&n)),
            "{sizes:?}"
        );
    }
}
