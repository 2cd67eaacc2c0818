//! The VM controller: per host, compares the VMs placed there with what the host reports.
//!
//! - desired running, unknown to the agent → `CreateVm{start: true}`;
//! - desired running, reported stopped → `StartVm` (a crashed VM is left alone, with an event);
//! - desired stopped, reported running → `StopVm`;
//! - reported but unknown to the store → left alone, with a warning and an event.
//!
//! VMs with an operation in flight (or that just finished one) and VMs being migrated are skipped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;
use vinfra_proto::AgentCommand;
use vinfra_types::{HostStatus, PowerState};

use super::{Controller, ControllerError};
use crate::core::{lock, Console, CREATE_TIMEOUT, SHORT_TIMEOUT, STOP_TIMEOUT_DEFAULT_S};
use crate::store_keys::{self as keys, Desired};

/// How long after an API operation on a VM the controller leaves it alone (reports lag).
pub const SETTLE: Duration = Duration::from_secs(3);

/// Reconciles VMs per host.
pub struct VmController {
    console: Arc<Console>,
    /// (host, VM id, what) already reported as an event, so it is recorded once.
    noted: Mutex<HashSet<(String, Uuid, &'static str)>>,
}

impl VmController {
    pub fn new(console: Arc<Console>) -> Self {
        VmController {
            console,
            noted: Mutex::default(),
        }
    }

    fn note_once(&self, host: &str, id: Uuid, what: &'static str, object: &str, message: String) {
        if lock(&self.noted).insert((host.to_string(), id, what)) {
            tracing::warn!(host, object, "{message}");
            self.console.event("vm", object, message);
        }
    }

    fn forget_note(&self, host: &str, id: Uuid, what: &'static str) {
        lock(&self.noted).remove(&(host.to_string(), id, what));
    }
}

impl Controller for VmController {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn prefix(&self) -> &'static str {
        keys::VMS
    }

    fn key_for(&self, store_key: &str) -> Option<String> {
        let name = store_key.strip_prefix(keys::VMS)?;
        self.console.vm(name).ok().map(|v| v.value.host)
    }

    fn all_keys(&self) -> Vec<String> {
        self.console.host_names()
    }

    async fn reconcile(&self, host: &str) -> Result<(), ControllerError> {
        let console = &self.console;
        let (status, observed) = console.agents().observed(host);
        let (HostStatus::Connected, Some(observed)) = (status, observed) else {
            return Ok(());
        };
        let report = observed.report;
        let seen: HashMap<Uuid, PowerState> = report.vms.iter().map(|v| (v.id, v.state)).collect();
        let records = console.vm_records();
        let migrating: HashSet<String> = lock(&console.migrations).keys().cloned().collect();
        let mut known: HashSet<Uuid> = HashSet::new();
        for rec in records.iter() {
            known.insert(rec.id);
            let name = rec.spec.name.as_str();
            if rec.host != host || migrating.contains(name) || console.recently_busy(name, SETTLE) {
                continue;
            }
            let state = seen.get(&rec.id).copied();
            let command = match (rec.desired, state) {
                (Desired::Running, None) => Some((
                    "defined and started",
                    AgentCommand::CreateVm {
                        vm: rec.instance(),
                        start: true,
                    },
                )),
                (Desired::Running, Some(PowerState::Stopped)) => {
                    Some(("started", AgentCommand::StartVm { id: rec.id }))
                }
                (Desired::Running, Some(PowerState::Crashed)) => {
                    self.note_once(
                        host,
                        rec.id,
                        "crashed",
                        name,
                        format!(
                            "VM crashed on {host}; not restarted automatically (start it to retry)"
                        ),
                    );
                    None
                }
                (Desired::Stopped, Some(PowerState::Running)) => Some((
                    "stopped",
                    AgentCommand::StopVm {
                        id: rec.id,
                        force: false,
                        timeout_s: STOP_TIMEOUT_DEFAULT_S,
                    },
                )),
                _ => {
                    self.forget_note(host, rec.id, "crashed");
                    None
                }
            };
            let Some((what, command)) = command else {
                continue;
            };
            let Ok(_busy) = console.busy(name) else {
                continue;
            };
            let timeout = CREATE_TIMEOUT + SHORT_TIMEOUT;
            match console.agents().request(host, command, timeout).await {
                Ok(_) => console.event(
                    "vm",
                    name,
                    format!("{what} on {host} to match the desired state"),
                ),
                Err(e) => self.note_once(
                    host,
                    rec.id,
                    "failed",
                    name,
                    format!("could not bring VM to its desired state on {host}: {e}"),
                ),
            }
        }
        for v in &report.vms {
            if !known.contains(&v.id) {
                self.note_once(
                    host,
                    v.id,
                    "unknown",
                    &v.name,
                    format!(
                        "host {host} runs VM '{}' ({}) that the console does not know; left alone",
                        v.name, v.id
                    ),
                );
            }
        }
        Ok(())
    }
}
