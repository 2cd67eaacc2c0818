//! Controllers: reconcile loops that bring observed state to desired state.
//!
//! A [`Controller`] names a store prefix to watch, maps a changed store key to a reconcile key, lists
//! every key for the periodic resync, and reconciles one key. [`run`] drives it: keys arrive from the
//! store watch, from an extra trigger channel (e.g. agent connections) and from the resync timer; a
//! key is reconciled by at most one task at a time, and reconciled again if it changed meanwhile.

pub mod edge;
pub mod switch;
pub mod vm;

use std::collections::HashSet;
use std::future::Future;
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

/// Drives a controller until the store watch ends.
pub async fn run<C: Controller>(
    controller: Arc<C>,
    store: Arc<dyn Store>,
    mut triggers: mpsc::UnboundedReceiver<String>,
    resync: Duration,
) -> Result<(), ControllerError> {
    let from = store.revision()?;
    let mut watch = store.watch(controller.prefix(), from)?;
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            _ = tick.tick() => controller.all_keys(),
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
