//! The VM controller: per host, compares the VMs placed there with what the host reports.
//!
//! - desired running, unknown to the agent → `CreateVm{start: true}`;
//! - desired running, reported stopped → `StartVm` (a crashed VM is left alone, with an event);
//! - desired stopped, reported running → `StopVm`;
//! - a cleanup marker on the host (a VM whose creation got no clear answer, or that was deleted
//!   with `force` while the host was disconnected) → `DeleteVm`, once the host reports the VM,
//!   or, when it does not, once a creation still running there would have ended
//!   ([`cleanup_grace`]); when the host confirms (done, or no such VM) the marker goes and the
//!   VM's addresses and MACs are released with it. See `VmController::clean_up`;
//! - reported but unknown to the store, without a marker → left alone (never killed), with a
//!   warning and an event, once;
//! - reported on a host other than the one the store places it on → see
//!   `VmController::misplaced` (what is left of a migration whose end the console did not see);
//! - a VM is never created or started on its host while another host reports it live;
//! - a VM whose HA policy the host reports otherwise than its record (turned on or off since
//!   it was defined there) → `SetVmHa`, so the host's guard acts on the policy in force.
//!
//! It runs for a host when a record placed there is written, when the host connects or
//! disconnects, when the host's report shows a VM that came, went, or changed its power state
//! or HA flag (so a crash is acted on at once), and every resync.
//!
//! VMs with an operation in flight (or that just finished one) and VMs being migrated are skipped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_proto::{AgentCommand, CommandError};
use vinfra_types::{HostStatus, PowerState};

use super::{Controller, ControllerError};
use crate::agents::RequestError;
use crate::networks::ipam;
use crate::state::records::{
    self as keys, now_s, CleanupReason, CleanupRecord, DesiredPower, VmRecord,
};
use crate::state::{lock, Console, CREATE_TIMEOUT, SHORT_TIMEOUT};
use crate::vms::power::STOP_TIMEOUT_DEFAULT_S;

/// How long after an API operation on a VM the controller leaves it alone (reports lag).
pub const SETTLE: Duration = Duration::from_secs(3);

/// Store prefix watched (filtered by [`VmController::key_for`]): VM records and cleanup markers.
const ROOT: &str = "/vinfra/";

/// How long after a cleanup marker was written a host's silence about the VM counts as "no such
/// VM": a creation the console stopped waiting for may still be running on the host (it only
/// lists the VM once it is done), so twice the time the console waits for one. A VM deleted with
/// `force` was created long before: no wait.
pub fn cleanup_grace(reason: CleanupReason, create_timeout: Duration) -> Duration {
    match reason {
        CleanupReason::CreateUnconfirmed => create_timeout.saturating_mul(2),
        CleanupReason::ForcedDelete => Duration::ZERO,
    }
}

/// Reconciles VMs per host.
pub struct VmController {
    console: Arc<Console>,
    /// (host, VM id, what) already reported as an event, so it is recorded once.
    noted: Mutex<HashSet<(String, Uuid, &'static str)>>,
    /// HA VMs restarted after a crash: attempts so far, when the last one was made.
    crashes: Mutex<HashMap<Uuid, (u32, Instant)>>,
}

/// The wait before the next restart of an HA VM that crashed again: 1 s after the first
/// restart, doubling up to a minute.
pub fn crash_backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// How long an HA VM must run after its last crash restart before its backoff starts again.
const CRASH_RESET: Duration = Duration::from_secs(120);

impl VmController {
    /// A controller over `console`.
    pub fn new(console: Arc<Console>) -> Self {
        VmController {
            console,
            noted: Mutex::default(),
            crashes: Mutex::default(),
        }
    }

    fn note_once(&self, host: &str, id: Uuid, what: &'static str, object: &str, message: String) {
        if lock(&self.noted).insert((host.to_string(), id, what)) {
            tracing::warn!(host, object, "{message}");
            self.console.event("vm", object, message);
        }
    }

    /// Whether HA VM `id`, crashed, is due for a restart now: the attempt's number when it is,
    /// `None` while its backoff ([`crash_backoff`]) runs.
    fn crash_restart(&self, id: Uuid) -> Option<u32> {
        let mut crashes = lock(&self.crashes);
        let now = Instant::now();
        let entry = crashes.entry(id).or_insert((0, now));
        if entry.0 > 0 && now.duration_since(entry.1) < crash_backoff(entry.0) {
            return None;
        }
        *entry = (entry.0 + 1, now);
        Some(entry.0)
    }

    fn forget_note(&self, host: &str, id: Uuid, what: &'static str) {
        lock(&self.noted).remove(&(host.to_string(), id, what));
    }

    /// Removes from `host` (connected, its latest report's VMs in `seen`) the VMs its cleanup
    /// markers name, and releases their addresses once the host confirms each is gone. A VM
    /// the report does not list is asked for only after [`cleanup_grace`]. Returns the ids the
    /// markers name (the report's VMs among them are not "unknown").
    async fn clean_up(
        &self,
        host: &str,
        seen: &HashMap<Uuid, PowerState>,
    ) -> Result<HashSet<Uuid>, ControllerError> {
        let console = &self.console;
        let markers = console.cleanups(Some(host))?;
        let ids = markers.iter().map(|(_, m)| m.value.id).collect();
        for (key, m) in markers {
            let CleanupRecord {
                vm,
                id,
                reason,
                since,
                ..
            } = &m.value;
            let grace = cleanup_grace(*reason, console.create_timeout());
            let waited = Duration::from_secs(now_s().saturating_sub(*since));
            if !seen.contains_key(id) && waited < grace {
                continue;
            }
            let del = AgentCommand::DeleteVm {
                id: *id,
                delete_disks: true,
            };
            let gone = match console.agents().request(host, del, SHORT_TIMEOUT).await {
                Ok(_) => true,
                Err(RequestError::Agent {
                    source: CommandError::NoSuchVm { .. },
                    ..
                }) => false,
                Err(e) => {
                    self.note_once(
                        host,
                        *id,
                        "cleanup",
                        vm,
                        format!(
                            "could not remove VM {id} from {host} (its record is gone, its \
                             addresses stay reserved); retried: {}",
                            vinfra_types::error::Chain(&e)
                        ),
                    );
                    continue;
                }
            };
            if ipam::release_cleanup(console, &key, &m).await? {
                self.forget_note(host, *id, "cleanup");
                let what = if gone {
                    "removed from"
                } else {
                    "confirmed absent on"
                };
                console.event(
                    "vm",
                    vm,
                    format!("VM {id} {what} {host}; its addresses and MACs are released"),
                );
            }
        }
        Ok(ids)
    }
}

impl VmController {
    /// A copy of VM `rec` on `host`, the host HA restarted it from: stale. It is removed there
    /// (its QEMU killed if it runs, the agent's files of it deleted, never its disks, which the
    /// restarted VM uses), with an event.
    async fn stale(&self, host: &str, state: PowerState, rec: &VmRecord) {
        let console = &self.console;
        let name = rec.spec.name.as_str();
        if console.inflight().recently_busy(name, SETTLE) {
            return;
        }
        let Ok(_busy) = console.inflight().busy(name) else {
            return;
        };
        let cmd = AgentCommand::DeleteVm {
            id: rec.id,
            delete_disks: false,
        };
        match console.agents().request(host, cmd, SHORT_TIMEOUT).await {
            Ok(_) => console.event(
                "vm",
                name,
                format!(
                    "stale copy on {host} ({state:?}) removed: HA restarted the VM on {}, its \
                     disks stay",
                    rec.host
                ),
            ),
            Err(e) => tracing::warn!(
                vm = name,
                host,
                "stale copy not removed: {}",
                vinfra_types::error::Chain(&e)
            ),
        }
    }

    /// Clears the HA restart marks naming `host` of the VMs it does not report (`seen`): it
    /// holds no stale copy of them any more.
    fn forget_failovers(&self, host: &str, seen: &HashMap<Uuid, PowerState>) {
        let console = &self.console;
        let marked = console.failed_over_from(host);
        for (name, _) in marked.into_iter().filter(|(_, id)| !seen.contains_key(id)) {
            if let Err(e) = console.update_vm(&name, |r| {
                if r.failed_over.as_ref().is_some_and(|f| f.from == host) {
                    r.failed_over = None;
                }
            }) {
                tracing::warn!(vm = name, "{}", vinfra_types::error::Chain(&e));
            }
        }
    }

    /// `host` reports a VM that the store places on another host (with no migration in flight):
    /// what is left of a migration whose end the console did not see.
    ///
    /// - running there (and not running on its placed host): the migration completed; the record
    ///   follows the VM;
    /// - waiting for an incoming migration: the leftover incoming QEMU is aborted (the agent
    ///   refuses if the guest runs there);
    /// - paused there while its placed host runs it: the paused source of a completed migration
    ///   is released (the agent refuses unless QEMU says the migration completed);
    /// - anything else: left alone, with an event.
    async fn misplaced(&self, host: &str, state: PowerState, rec: &VmRecord) {
        let console = &self.console;
        let name = rec.spec.name.as_str();
        if console.inflight().recently_busy(name, SETTLE) {
            return;
        }
        let Ok(_busy) = console.inflight().busy(name) else {
            return;
        };
        let placed = console.agents().observed(&rec.host);
        let placed_connected = placed.0 == HostStatus::Connected;
        let placed_state = placed.1.and_then(|o| {
            o.report
                .vms
                .iter()
                .find(|v| v.id == rec.id)
                .map(|v| v.state)
        });
        let timeout = SHORT_TIMEOUT;
        match state {
            PowerState::Running => {
                if placed_connected
                    && matches!(
                        placed_state,
                        Some(PowerState::Running | PowerState::Migrating)
                    )
                {
                    self.note_once(
                        host,
                        rec.id,
                        "split",
                        name,
                        format!(
                            "VM runs on both {host} and {}; neither is touched",
                            rec.host
                        ),
                    );
                    return;
                }
                let from = rec.host.clone();
                let to = host.to_string();
                match console.update_vm(name, |r| r.host = to) {
                    Ok(_) => console.event(
                        "vm",
                        name,
                        format!(
                            "found running on {host} after a migration whose end was not seen; \
                             record moved from {from}"
                        ),
                    ),
                    Err(e) => tracing::warn!(
                        vm = name,
                        "record not moved to {host}: {}",
                        vinfra_types::error::Chain(&e)
                    ),
                }
            }
            PowerState::Incoming => {
                let abort = AgentCommand::AbortIncoming { id: rec.id };
                match console.agents().request(host, abort, timeout).await {
                    Ok(_) => console.event(
                        "vm",
                        name,
                        format!("leftover incoming QEMU on {host} aborted"),
                    ),
                    Err(e) => tracing::info!(
                        vm = name,
                        host,
                        "leftover incoming QEMU: {}",
                        vinfra_types::error::Chain(&e)
                    ),
                }
            }
            PowerState::Paused
                if placed_connected && placed_state == Some(PowerState::Running) =>
            {
                let fin = AgentCommand::FinishMigrationSource { id: rec.id };
                match console.agents().request(host, fin, timeout).await {
                    Ok(_) => console.event(
                        "vm",
                        name,
                        format!(
                            "paused source copy on {host} released (the VM runs on {})",
                            rec.host
                        ),
                    ),
                    Err(e) => self.note_once(
                        host,
                        rec.id,
                        "paused",
                        name,
                        format!(
                            "paused copy on {host} not released: {}",
                            vinfra_types::error::Chain(&e)
                        ),
                    ),
                }
            }
            other => self.note_once(
                host,
                rec.id,
                "misplaced",
                name,
                format!(
                    "host {host} reports the VM ({other:?}) although it is placed on {}; left alone",
                    rec.host
                ),
            ),
        }
    }
}

impl VmController {
    /// VM `rec`'s HA policy, changed since its host took it, passed to the host
    /// (`SetVmHa`): its guard's isolation response then acts on the VM, or no longer does.
    async fn pass_ha(&self, host: &str, rec: &VmRecord) {
        let name = rec.spec.name.as_str();
        let ha = rec.spec.ha.enabled;
        let command = AgentCommand::SetVmHa { id: rec.id, ha };
        match self
            .console
            .agents()
            .request(host, command, SHORT_TIMEOUT)
            .await
        {
            Ok(_) => {
                self.forget_note(host, rec.id, "ha");
                self.console.event(
                    "vm",
                    name,
                    format!(
                        "HA {} passed to {host}'s guard",
                        if ha { "on" } else { "off" }
                    ),
                );
            }
            Err(e) => self.note_once(
                host,
                rec.id,
                "ha",
                name,
                format!(
                    "could not pass the HA policy to {host}: {}",
                    vinfra_types::error::Chain(&e)
                ),
            ),
        }
    }
}

impl Controller for VmController {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn prefix(&self) -> &'static str {
        ROOT
    }

    async fn settle(&self) {
        // The VM records read below hold the write the watch told of.
        self.console.vm_writes_mirrored().await;
    }

    fn key_for(&self, store_key: &str) -> Option<String> {
        if let Some(name) = store_key.strip_prefix(keys::VMS) {
            // No copy of the record: its host, id and HA flag.
            let (host, id, ha) = self.console.with_vms(|m| {
                m.get(name)
                    .map(|v| (v.value.host.clone(), v.value.id, v.value.spec.ha.enabled))
            })?;
            // The write of a VM whose operation is in flight sets off no reconcile of its host:
            // the reconcile leaves that VM alone (`recently_busy`) unless its HA flag differs
            // from what the host reported (then it is passed on), and the host's other VMs
            // did not change (each sets off its own). A burst of creates does not reconcile
            // every host it places a VM on.
            if self.console.inflight().in_flight(name)
                && self
                    .console
                    .agents()
                    .reported_ha(&host, id)
                    .is_none_or(|r| r == ha)
            {
                return None;
            }
            return Some(host);
        }
        keys::cleanup_host(store_key).map(str::to_string)
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
        // The VMs placed here, and the records of the VMs reported here but placed elsewhere
        // (read now, as before any command below).
        // What is checked of each VM placed here, without copying its record: the record is
        // read only for a VM that needs a command (most need none).
        let briefs = console.vm_briefs_on(host);
        let here: HashSet<Uuid> = briefs.iter().map(|b| b.id).collect();
        let elsewhere: HashMap<Uuid, VmRecord> = report
            .vms
            .iter()
            .filter(|v| !here.contains(&v.id))
            .filter_map(|v| Some((v.id, console.vm_by_id(v.id)?)))
            .collect();
        let migrating: HashSet<String> = console
            .inflight()
            .migrations()
            .iter()
            .map(|m| m.vm.clone())
            .collect();
        let ha_seen: HashMap<Uuid, bool> = report.vms.iter().map(|v| (v.id, v.ha)).collect();
        let mut known: HashSet<Uuid> = HashSet::new();
        for brief in &briefs {
            known.insert(brief.id);
            let name = brief.name.as_str();
            if migrating.contains(name) {
                continue;
            }
            let record = || {
                console
                    .vm(name)
                    .ok()
                    .map(|v| v.value)
                    .filter(|r| r.id == brief.id && r.host == host)
            };
            if ha_seen.get(&brief.id).is_some_and(|&ha| ha != brief.ha) {
                if let Some(rec) = record() {
                    self.pass_ha(host, &rec).await;
                }
            }
            if console.inflight().recently_busy(name, SETTLE) {
                continue;
            }
            let state = seen.get(&brief.id).copied();
            let acts = matches!(
                (brief.desired, state),
                (
                    DesiredPower::Running,
                    None | Some(PowerState::Stopped | PowerState::Crashed)
                ) | (DesiredPower::Stopped, Some(PowerState::Running))
            );
            let rec = match acts.then(record).flatten() {
                Some(rec) => rec,
                None => {
                    self.forget_note(host, brief.id, "crashed");
                    if state == Some(PowerState::Running) {
                        lock(&self.crashes)
                            .retain(|id, (_, at)| *id != brief.id || at.elapsed() < CRASH_RESET);
                    }
                    continue;
                }
            };
            let command = match (rec.desired, state) {
                (DesiredPower::Running, None) => Some((
                    "defined and started",
                    AgentCommand::CreateVm {
                        vm: rec.instance(),
                        start: true,
                    },
                )),
                (DesiredPower::Running, Some(PowerState::Stopped)) => Some((
                    "started",
                    AgentCommand::StartVm {
                        id: rec.id,
                        slot: rec.slot,
                    },
                )),
                (DesiredPower::Running, Some(PowerState::Crashed)) if rec.spec.ha.enabled => {
                    self.crash_restart(rec.id).map(|n| {
                        let _ = console.update_vm(name, |r| r.restarts += 1);
                        (
                            if n == 1 {
                                "restarted after a crash (HA, attempt 1)"
                            } else {
                                "restarted after another crash (HA)"
                            },
                            AgentCommand::StartVm {
                                id: rec.id,
                                slot: rec.slot,
                            },
                        )
                    })
                }
                (DesiredPower::Running, Some(PowerState::Crashed)) => {
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
                (DesiredPower::Stopped, Some(PowerState::Running)) => Some((
                    "stopped",
                    AgentCommand::StopVm {
                        id: rec.id,
                        force: false,
                        timeout_s: STOP_TIMEOUT_DEFAULT_S,
                    },
                )),
                _ => {
                    self.forget_note(host, rec.id, "crashed");
                    if state == Some(PowerState::Running) {
                        lock(&self.crashes)
                            .retain(|id, (_, at)| *id != rec.id || at.elapsed() < CRASH_RESET);
                    }
                    None
                }
            };
            let Some((what, command)) = command else {
                continue;
            };
            if let Some((other, state)) = console.agents().live_elsewhere(rec.id, host) {
                // Never a second copy: the VM (or a copy waiting for it) is on another host.
                self.note_once(
                    host,
                    rec.id,
                    "elsewhere",
                    name,
                    format!(
                        "VM is {state:?} on {other} although it is placed on {host}; not {what} on {host}"
                    ),
                );
                continue;
            }
            self.forget_note(host, rec.id, "elsewhere");
            let Ok(_busy) = console.inflight().busy(name) else {
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
                    format!(
                        "could not bring VM to its desired state on {host}: {}",
                        vinfra_types::error::Chain(&e)
                    ),
                ),
            }
        }
        known.extend(self.clean_up(host, &seen).await?);
        self.forget_failovers(host, &seen);
        for v in &report.vms {
            if here.contains(&v.id) {
                continue;
            }
            if let Some(rec) = elsewhere.get(&v.id) {
                if rec.host != host {
                    if rec.failed_over.as_ref().is_some_and(|f| f.from == host) {
                        self.stale(host, v.state, rec).await;
                    } else {
                        self.misplaced(host, v.state, rec).await;
                    }
                }
                continue;
            }
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
