//! The switch controller: keeps every connected host's virtual switch configuration
//! ([`Console::switch_config`]) pushed to its agent (`ApplySwitchConfig`).
//!
//! A host gets its configuration when its agent connects (after `Hello`). Any change of a VM or
//! network record recomputes and pushes the configuration of every connected host (configurations
//! are small), in the background; the periodic resync does the same. Where ordering matters the
//! console pushes synchronously with [`push`]: to a VM's host before `CreateVm` of a VM with NICs,
//! to a migration's destination before `PrepareIncoming`, and to every host right after a
//! migration's switchover moved the record ([`push_all`]).
//!
//! Pushes to one host are serialized (computed and sent under a per-host lock), so a host never
//! gets an older configuration after a newer one.

use std::sync::Arc;

use vinfra_proto::AgentCommand;
use vinfra_types::HostStatus;

use super::{Controller, ControllerError};
use crate::core::{lock, Console, SHORT_TIMEOUT};
use crate::store_keys as keys;

/// The reconcile key that stands for "every connected host".
const ALL: &str = "*";

/// Store prefix watched (filtered by [`SwitchController::key_for`]).
const ROOT: &str = "/vinfra/";

/// Computes `host`'s switch configuration and sends it to its agent, waiting for the answer.
pub async fn push(console: &Console, host: &str) -> Result<(), ControllerError> {
    let gate = {
        let mut locks = lock(&console.switch_pushes);
        locks.entry(host.to_string()).or_default().clone()
    };
    let _serial = gate.lock().await;
    let config = console.switch_config(host)?;
    let cmd = AgentCommand::ApplySwitchConfig { config };
    console.agents().request(host, cmd, SHORT_TIMEOUT).await?;
    Ok(())
}

/// Pushes the configuration of every connected host, concurrently; failures are logged.
pub async fn push_all(console: &Console) {
    let hosts: Vec<String> = console
        .host_names()
        .into_iter()
        .filter(|h| console.agents().status(h) == HostStatus::Connected)
        .collect();
    let pushes = hosts.iter().map(|h| async move {
        if let Err(e) = push(console, h).await {
            tracing::warn!(host = h.as_str(), "switch configuration not applied: {e}");
        }
    });
    futures::future::join_all(pushes).await;
}

/// Pushes every connected host's configuration in a background task.
pub fn push_all_later(console: &Arc<Console>) {
    let console = console.clone();
    tokio::spawn(async move { push_all(&console).await });
}

/// Pushes switch configurations on agent connections and record changes.
pub struct SwitchController {
    console: Arc<Console>,
}

impl SwitchController {
    pub fn new(console: Arc<Console>) -> Self {
        SwitchController { console }
    }
}

impl Controller for SwitchController {
    fn name(&self) -> &'static str {
        "switch"
    }

    fn prefix(&self) -> &'static str {
        ROOT
    }

    fn key_for(&self, store_key: &str) -> Option<String> {
        [keys::VMS, keys::NETWORKS, keys::HOSTS]
            .iter()
            .any(|p| store_key.starts_with(p))
            .then(|| ALL.to_string())
    }

    fn all_keys(&self) -> Vec<String> {
        vec![ALL.to_string()]
    }

    async fn reconcile(&self, key: &str) -> Result<(), ControllerError> {
        if key == ALL {
            push_all(&self.console).await;
            return Ok(());
        }
        // An agent connection came up or went down.
        if self.console.agents().status(key) != HostStatus::Connected
            || !self.console.host_registered(key)
        {
            return Ok(());
        }
        push(&self.console, key).await
    }
}
