//! Live-migration orchestration (docs/design.md, "Live migration").
//!
//! One task per migration: `PrepareIncoming` on the destination, `MigrateOut` on the source, then
//! `MigrationStatus` every 200 ms with the progress stored under `/vinfra/migrations/<vm>`. On
//! completion the VM record's host changes (compare-and-swap), the source quits its paused QEMU, and
//! the destination is asked (at most 5 s) until it reports the VM running; only then is the
//! migration recorded as completed.
//! Any other ending goes through `settle` first: it finds out whether the switchover happened
//! after all (source says `completed`, or a silent source and a destination that runs the VM) and
//! only then aborts the destination's incoming QEMU. While a migration runs the VM counts against
//! both hosts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vinfra_placement::Request;
use vinfra_proto::{AgentCommand, AgentError, CommandReply, MigrationStatus};
use vinfra_types::api::MigrateVmRequest;
use vinfra_types::{HostStatus, MigrationPhase, MigrationProgress, PowerState};

use crate::agents::RequestError;
use crate::core::{lock, BusyGuard, Console, CoreError, CREATE_TIMEOUT, SHORT_TIMEOUT};
use crate::store_keys::{self as keys, now_s, Desired};

/// How often the source is asked for progress.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long the source may stay unreachable during a migration before the outcome is decided
/// without it (default of `ConsoleConfig::migration_source_timeout`).
pub const SOURCE_LOST_AFTER: Duration = Duration::from_secs(30);

/// Longest wait, after a completed migration, for the destination to report the VM running.
pub const DESTINATION_RUNNING_WAIT: Duration = Duration::from_secs(5);
/// How often the destination is asked meanwhile.
const DESTINATION_POLL: Duration = Duration::from_millis(100);

/// How long after a cancel the source has to confirm it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// A migration in flight.
pub struct ActiveMigration {
    pub vm: String,
    pub source: String,
    pub destination: String,
    progress: Mutex<MigrationProgress>,
    cancel: AtomicBool,
}

impl ActiveMigration {
    /// Current progress.
    pub fn progress(&self) -> MigrationProgress {
        lock(&self.progress).clone()
    }
}

/// How a migration ended badly.
enum Outcome {
    Completed,
    Failed(String),
    Cancelled,
}

/// Validates and starts a migration; returns its first progress (phase `preparing`).
pub async fn start(
    console: &Arc<Console>,
    name: &str,
    request: MigrateVmRequest,
) -> Result<MigrationProgress, CoreError> {
    if let Some(to) = &request.to {
        vinfra_types::validate_name(to).map_err(|e| CoreError::Invalid(format!("to: {e}")))?;
    }
    let rec = console.vm(name)?.value;
    if lock(&console.migrations).contains_key(name) {
        return Err(CoreError::Conflict(format!(
            "VM '{name}' is already being migrated"
        )));
    }
    let busy = console.busy(name)?;
    if rec.desired != Desired::Running {
        return Err(CoreError::Conflict(format!(
            "VM '{name}' is not running; only running VMs migrate live"
        )));
    }
    if console.agents().status(&rec.host) != HostStatus::Connected {
        return Err(CoreError::Conflict(format!(
            "source host '{}' is disconnected",
            rec.host
        )));
    }
    if let Some(to) = &request.to {
        console.host(to)?;
        if *to == rec.host {
            return Err(CoreError::Conflict(format!(
                "VM '{name}' already runs on host '{to}'"
            )));
        }
    }
    let active = {
        let _placement = console.placement_lock().await;
        let inputs = console.network_filter(
            name,
            &rec.spec,
            console.placement_inputs(Some(&rec.host)),
            request.to.as_deref(),
        )?;
        let req = Request {
            vm: name.to_string(),
            vcpus: rec.spec.vcpus,
            memory_mib: rec.spec.memory_mib,
        };
        let placed = vinfra_placement::place(&inputs, &req, request.to.as_deref())?;
        let progress = MigrationProgress {
            vm: name.to_string(),
            source: rec.host.clone(),
            destination: placed.host.clone(),
            phase: MigrationPhase::Preparing,
            transferred_bytes: 0,
            remaining_bytes: 0,
            total_bytes: 0,
            rate_bps: 0,
            dirty_pages_rate: 0,
            total_time_ms: 0,
            downtime_ms: None,
            error: None,
            started_at: now_s(),
        };
        keys::put(
            console.store.as_ref(),
            &keys::migration_key(name),
            &progress,
        )?;
        let active = Arc::new(ActiveMigration {
            vm: name.to_string(),
            source: rec.host.clone(),
            destination: placed.host.clone(),
            progress: Mutex::new(progress),
            cancel: AtomicBool::new(false),
        });
        lock(&console.migrations).insert(name.to_string(), active.clone());
        active
    };
    console.event(
        "migration",
        name,
        format!(
            "migration from {} to {} started",
            active.source, active.destination
        ),
    );
    let first = active.progress();
    let console = console.clone();
    tokio::spawn(async move {
        let outcome = drive(&console, &active, true).await;
        finish(&console, &active, outcome).await;
        drop(busy);
    });
    Ok(first)
}

/// Asks a running migration to stop and waits (up to 30 s) for it to end.
pub async fn cancel(console: &Arc<Console>, name: &str) -> Result<MigrationProgress, CoreError> {
    console.vm(name)?;
    let active = lock(&console.migrations).get(name).cloned();
    let Some(active) = active else {
        return Err(CoreError::Conflict(format!(
            "VM '{name}' has no migration in progress"
        )));
    };
    active.cancel.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !lock(&console.migrations).contains_key(name) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(active.progress())
}

fn set_progress(
    console: &Console,
    active: &ActiveMigration,
    f: impl FnOnce(&mut MigrationProgress),
) {
    let snapshot = {
        let mut p = lock(&active.progress);
        f(&mut p);
        p.clone()
    };
    if let Err(e) = keys::put(
        console.store.as_ref(),
        &keys::migration_key(&active.vm),
        &snapshot,
    ) {
        tracing::warn!(vm = active.vm, "migration progress not stored: {e}");
    }
}

fn apply_status(p: &mut MigrationProgress, s: &MigrationStatus) {
    p.transferred_bytes = s.transferred_bytes;
    p.remaining_bytes = s.remaining_bytes;
    p.total_bytes = s.total_bytes;
    p.rate_bps = s.rate_bps;
    p.dirty_pages_rate = s.dirty_pages_rate;
    p.total_time_ms = s.total_time_ms;
    p.downtime_ms = s.downtime_ms;
    if s.error.is_some() {
        p.error.clone_from(&s.error);
    }
}

/// Runs the migration up to an outcome. `begin`: prepare the destination and start sending;
/// otherwise (after a console restart) only follow what the source reports.
async fn drive(console: &Arc<Console>, active: &ActiveMigration, begin: bool) -> Outcome {
    let agents = console.agents().clone();
    let rec = match console.vm(&active.vm) {
        Ok(v) => v.value,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if begin {
        // The destination's switch must have the VM's networks before it adds the VM's ports
        // (the agent refuses NICs on networks its switch does not have).
        if let Err(e) = crate::controllers::switch::push(console, &active.destination).await {
            if !rec.spec.nics.is_empty() {
                return Outcome::Failed(format!("configuring the destination's switch: {e}"));
            }
            tracing::warn!(host = active.destination, "switch configuration: {e}");
        }
        let prep = AgentCommand::PrepareIncoming { vm: rec.instance() };
        let uri = match agents
            .request(&active.destination, prep, CREATE_TIMEOUT)
            .await
        {
            Ok(CommandReply::Incoming { uri }) => uri,
            Ok(other) => return Outcome::Failed(format!("destination answered {other:?}")),
            Err(e) => return Outcome::Failed(format!("preparing the destination: {e}")),
        };
        if active.cancel.load(Ordering::SeqCst) {
            return Outcome::Cancelled;
        }
        let out = AgentCommand::MigrateOut {
            id: rec.id,
            uri,
            settings: console.migration_settings(),
        };
        if let Err(e) = agents.request(&active.source, out, SHORT_TIMEOUT).await {
            return Outcome::Failed(format!("starting the migration on the source: {e}"));
        }
        set_progress(console, active, |p| p.phase = MigrationPhase::Active);
    }
    let mut cancel_sent: Option<Instant> = None;
    let mut source_lost_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        if active.cancel.load(Ordering::SeqCst) && cancel_sent.is_none() {
            cancel_sent = Some(Instant::now());
            let _ = agents
                .request(
                    &active.source,
                    AgentCommand::CancelMigration { id: rec.id },
                    SHORT_TIMEOUT,
                )
                .await;
        }
        if cancel_sent.is_some_and(|t| t.elapsed() > CANCEL_GRACE) {
            // The source never confirmed; the cleanup cancels again and aborts the destination.
            return Outcome::Cancelled;
        }
        if agents.status(&active.destination) != HostStatus::Connected {
            return Outcome::Failed(format!(
                "destination host '{}' disconnected",
                active.destination
            ));
        }
        let status = agents
            .request(
                &active.source,
                AgentCommand::MigrationStatus { id: rec.id },
                SHORT_TIMEOUT,
            )
            .await;
        let status = match status {
            Ok(CommandReply::Migration { status }) => status,
            Ok(other) => return Outcome::Failed(format!("source answered {other:?}")),
            Err(RequestError::Agent { source, .. }) => {
                return Outcome::Failed(format!("source: {source}"));
            }
            Err(e) => {
                let since = *source_lost_since.get_or_insert_with(Instant::now);
                // The destination running the VM settles it at once (see `settle`).
                if since.elapsed() > console.source_lost_after
                    || runs_on(console, &active.destination, rec.id)
                {
                    return Outcome::Failed(format!("source unreachable: {e}"));
                }
                continue;
            }
        };
        source_lost_since = None;
        set_progress(console, active, |p| {
            apply_status(p, &status);
            if p.phase == MigrationPhase::Preparing {
                p.phase = MigrationPhase::Active;
            }
        });
        match status.qemu_status.as_str() {
            "completed" => return Outcome::Completed,
            "failed" => {
                return Outcome::Failed(
                    status
                        .error
                        .unwrap_or_else(|| "QEMU reported failure".into()),
                )
            }
            "cancelled" => {
                return if cancel_sent.is_some() {
                    Outcome::Cancelled
                } else {
                    Outcome::Failed("cancelled on the source".into())
                }
            }
            _ => {}
        }
    }
}

/// True when the host's latest report (connected or not) shows the VM with its guest there:
/// running or paused, not waiting for an incoming migration.
fn runs_on(console: &Console, host: &str, id: uuid::Uuid) -> bool {
    matches!(
        reported_state(console, host, id),
        Some(PowerState::Running | PowerState::Paused)
    )
}

/// The VM's state in the host's latest report, also when the host is no longer connected.
fn reported_state(console: &Console, host: &str, id: uuid::Uuid) -> Option<PowerState> {
    console
        .agents()
        .observed(host)
        .1
        .and_then(|o| o.report.vms.iter().find(|v| v.id == id).map(|v| v.state))
}

/// Decides what a migration that did not end with the source reporting `completed` really did,
/// and cleans up the side that does not hold the VM. Never kills the only running copy:
///
/// 1. When the source answers, it is told to cancel and then asked: `completed` means the
///    switchover happened (the cancel came too late) and the outcome is [`Outcome::Completed`].
///    Anything else: the source keeps the VM.
/// 2. When the source does not answer, the destination's latest report decides: a VM running
///    (or paused) there, not incoming, means the switchover happened.
/// 3. Otherwise the destination's incoming QEMU is aborted. The agent refuses when the guest
///    already runs there; with a silent source that too means the switchover happened.
async fn settle(
    console: &Console,
    active: &ActiveMigration,
    id: uuid::Uuid,
    failure: Outcome,
) -> Outcome {
    let agents = console.agents();
    let mut source_status: Option<String> = None;
    if agents.status(&active.source) == HostStatus::Connected {
        let cancel = AgentCommand::CancelMigration { id };
        match agents.request(&active.source, cancel, SHORT_TIMEOUT).await {
            Ok(_)
            | Err(RequestError::Agent {
                source: AgentError::BadState { .. },
                ..
            }) => {}
            Err(e) => tracing::debug!(vm = active.vm, "cancel on source: {e}"),
        }
        let status = AgentCommand::MigrationStatus { id };
        if let Ok(CommandReply::Migration { status }) =
            agents.request(&active.source, status, SHORT_TIMEOUT).await
        {
            source_status = Some(status.qemu_status);
        }
    }
    match source_status.as_deref() {
        Some("completed") => return Outcome::Completed,
        None if runs_on(console, &active.destination, id) => {
            console.event(
                "migration",
                &active.vm,
                format!(
                    "source {} unreachable, but destination {} runs the VM: the migration completed",
                    active.source, active.destination
                ),
            );
            return Outcome::Completed;
        }
        Some(_) if runs_on(console, &active.destination, id) => {
            // The source says it still has the VM and the destination reports it too: leave both
            // alone rather than guess which copy to kill.
            let msg = format!(
                "both {} and {} report the VM after a failed migration; neither is touched",
                active.source, active.destination
            );
            console.event("migration", &active.vm, msg.clone());
            return Outcome::Failed(msg);
        }
        _ => {}
    }
    let abort = AgentCommand::AbortIncoming { id };
    match agents
        .request(&active.destination, abort, SHORT_TIMEOUT)
        .await
    {
        Ok(_) => failure,
        Err(RequestError::Agent {
            source: AgentError::BadState { .. },
            ..
        }) if source_status.is_none() => {
            console.event(
                "migration",
                &active.vm,
                format!(
                    "source {} unreachable and destination {} refused to abort: the VM runs there",
                    active.source, active.destination
                ),
            );
            Outcome::Completed
        }
        Err(e) => {
            tracing::debug!(vm = active.vm, "abort on destination: {e}");
            failure
        }
    }
}

/// Before a completed migration is recorded as such: asks the destination for the VM's state
/// (`ObserveVm`; the registry applies the answer to the host's observed VMs) until it runs there,
/// for at most [`DESTINATION_RUNNING_WAIT`], so that the VM shows as running on its new host as
/// soon as the migration shows as completed. QEMU resumes the guest on the destination a moment
/// after the source reports completion. Gives up early when the destination disconnects; the
/// next report brings the state in any case.
async fn await_destination_running(console: &Console, active: &ActiveMigration, id: uuid::Uuid) {
    let agents = console.agents();
    let deadline = Instant::now() + DESTINATION_RUNNING_WAIT;
    loop {
        if reported_state(console, &active.destination, id) == Some(PowerState::Running) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || agents.status(&active.destination) != HostStatus::Connected {
            tracing::debug!(
                vm = active.vm,
                "destination {} does not report the VM running yet",
                active.destination
            );
            return;
        }
        let observe = AgentCommand::ObserveVm { id };
        match agents
            .request(&active.destination, observe, left.min(SHORT_TIMEOUT))
            .await
        {
            Ok(CommandReply::Vm { vm }) if vm.state == PowerState::Running => return,
            Ok(_) => {}
            Err(e) => tracing::debug!(vm = active.vm, "observing on the destination: {e}"),
        }
        tokio::time::sleep(DESTINATION_POLL.min(left)).await;
    }
}

/// Applies an outcome: switch the VM's host, or record that it stays on the source.
async fn finish(console: &Arc<Console>, active: &ActiveMigration, outcome: Outcome) {
    let agents = console.agents().clone();
    let id = console.vm(&active.vm).map(|v| v.value.id).ok();
    let outcome = match (outcome, id) {
        (Outcome::Completed, _) => Outcome::Completed,
        (failure, Some(id)) => settle(console, active, id, failure).await,
        (failure, None) => failure,
    };
    match outcome {
        Outcome::Completed => {
            let dest = active.destination.clone();
            match console.update_vm(&active.vm, |r| r.host = dest) {
                Ok(_) => {
                    // Every host's MAC entries now point at the destination.
                    crate::controllers::switch::push_all(console).await;
                    if let Some(id) = id {
                        let fin = AgentCommand::FinishMigrationSource { id };
                        if let Err(e) = agents.request(&active.source, fin, SHORT_TIMEOUT).await {
                            console.event(
                                "migration",
                                &active.vm,
                                format!(
                                    "source {} did not release the paused VM yet ({e}); it is \
                                     released when the host reports it again",
                                    active.source
                                ),
                            );
                        }
                    }
                    if let Some(id) = id {
                        await_destination_running(console, active, id).await;
                    }
                    set_progress(console, active, |p| {
                        p.phase = MigrationPhase::Completed;
                        p.error = None;
                    });
                    console.event(
                        "migration",
                        &active.vm,
                        format!("migrated from {} to {}", active.source, active.destination),
                    );
                }
                Err(e) => {
                    set_progress(console, active, |p| {
                        p.phase = MigrationPhase::Failed;
                        p.error =
                            Some(format!("switched over but the record was not updated: {e}"));
                    });
                    console.event(
                        "migration",
                        &active.vm,
                        format!("record not updated after switchover: {e}"),
                    );
                }
            }
        }
        Outcome::Failed(_) | Outcome::Cancelled => {
            let (phase, error) = match outcome {
                Outcome::Failed(e) => (MigrationPhase::Failed, Some(e)),
                _ => (MigrationPhase::Cancelled, None),
            };
            set_progress(console, active, |p| {
                p.phase = phase;
                if error.is_some() {
                    p.error.clone_from(&error);
                }
            });
            console.event(
                "migration",
                &active.vm,
                match &error {
                    Some(e) => format!(
                        "migration to {} failed, VM stays on {}: {e}",
                        active.destination, active.source
                    ),
                    None => format!(
                        "migration to {} cancelled, VM stays on {}",
                        active.destination, active.source
                    ),
                },
            );
        }
    }
    lock(&console.migrations).remove(&active.vm);
    // The destination keeps the VM's networks only if the VM arrived there.
    crate::controllers::switch::push_all_later(console);
}

/// After a console restart: picks up every migration the store says is still running. Waits for
/// the source to reconnect, then follows it to its end (or cleans up when it has none).
pub fn resume_all(console: &Arc<Console>) -> Result<(), CoreError> {
    let records = keys::range::<MigrationProgress>(console.store.as_ref(), keys::MIGRATIONS)?;
    for (vm, rec) in records {
        let progress = rec.value;
        if progress.phase.is_final() || lock(&console.migrations).contains_key(&vm) {
            continue;
        }
        let Ok(busy) = console.busy(&vm) else {
            continue;
        };
        let active = Arc::new(ActiveMigration {
            vm: vm.clone(),
            source: progress.source.clone(),
            destination: progress.destination.clone(),
            progress: Mutex::new(progress),
            cancel: AtomicBool::new(false),
        });
        lock(&console.migrations).insert(vm.clone(), active.clone());
        let console = console.clone();
        tokio::spawn(async move {
            resume(&console, &active, busy).await;
        });
    }
    Ok(())
}

async fn resume(console: &Arc<Console>, active: &Arc<ActiveMigration>, busy: BusyGuard) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && (console.agents().status(&active.source) != HostStatus::Connected
            || console.agents().status(&active.destination) != HostStatus::Connected)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let outcome = if console.vm(&active.vm).is_err() {
        Outcome::Failed("the VM was deleted".into())
    } else if active.progress().phase == MigrationPhase::Preparing {
        // The console stopped before the source started sending: nothing to follow.
        Outcome::Failed("the console restarted before the migration began".into())
    } else {
        drive(console, active, false).await
    };
    finish(console, active, outcome).await;
    drop(busy);
}
