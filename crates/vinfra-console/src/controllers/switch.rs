//! The switch controller: keeps every connected host's virtual switch configuration
//! ([`crate::networks::config`]) pushed to its agent (`ApplySwitchConfig`, through
//! [`crate::networks::push`]).
//!
//! A host gets its configuration when its agent connects (after `Hello`). Any change of a VM,
//! network, host, security group or router record recomputes and pushes the configuration of every connected host (configurations
//! are small), in the background; the periodic resync does the same. Where ordering matters the
//! console pushes synchronously with [`push`]: to a VM's host before `CreateVm` of a VM with NICs,
//! to a migration's destination before `PrepareIncoming`, and to every host right after a
//! migration's switchover moved the record ([`push_all`]).

use std::sync::Arc;

use vinfra_types::HostStatus;

use super::{Controller, ControllerError};
use crate::networks::push::{push, push_all};
use crate::state::records as keys;
use crate::state::Console;

/// The reconcile key that stands for "every connected host".
const ALL: &str = "*";

/// Store prefix watched (filtered by [`SwitchController::key_for`]).
const ROOT: &str = "/vinfra/";

/// Pushes switch configurations on agent connections and record changes.
pub struct SwitchController {
    console: Arc<Console>,
}

impl SwitchController {
    /// A controller over `console`.
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

    async fn settle(&self) {
        // The VM records read below hold the write the watch told of.
        self.console.vm_writes_mirrored().await;
    }

    fn key_for(&self, store_key: &str) -> Option<String> {
        if let Some(vm) = store_key.strip_prefix(keys::VMS) {
            // A VM without NICs is on no switch configuration.
            if self
                .console
                .vm(vm)
                .is_ok_and(|v| v.value.spec.nics.is_empty())
            {
                return None;
            }
        }
        [
            keys::VMS,
            keys::NETWORKS,
            keys::HOSTS,
            keys::SECURITY_GROUPS,
            keys::ROUTERS,
        ]
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
        Ok(push(&self.console, key).await?)
    }
}
