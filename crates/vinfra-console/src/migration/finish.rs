//! The end of a migration: settling an end the source did not report as `completed` (did the
//! switchover happen after all?), then recording the outcome: the record follows the VM to the
//! destination, or the VM stays on the source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vinfra_proto::{AgentCommand, CommandError, CommandReply};
use vinfra_types::error::Chain;
use vinfra_types::{HostStatus, MigrationPhase, PowerState};

use super::drive::{runs_on, set_progress, MigrationOutcome};
use crate::agents::RequestError;
use crate::networks::push;
use crate::state::{ActiveMigration, Console, SHORT_TIMEOUT};

/// Longest wait, after a completed migration, for the destination to report the VM running.
pub const DESTINATION_RUNNING_WAIT: Duration = Duration::from_secs(5);
/// How much sooner than the console's own deadline the destination is asked to answer a
/// waiting `ObserveVm`, so that its answer arrives before the console stops waiting.
const DESTINATION_ANSWER_MARGIN: Duration = Duration::from_millis(100);
/// After an answer that came before its wait was over without the VM running (an agent that
/// answers at once, or a guest that is there but not running), the next question follows
/// 5 ms after the last one, then twice as long each time up to 100 ms: never a tight loop.
const DESTINATION_POLL_FIRST: Duration = Duration::from_millis(5);
const DESTINATION_POLL: Duration = Duration::from_millis(100);

/// Decides what a migration that did not end with the source reporting `completed` really did,
/// and cleans up the side that does not hold the VM. Never kills the only running copy:
///
/// 1. When the source answers, it is told to cancel and then asked: `completed` means the
///    switchover happened (the cancel came too late) and the outcome is [`MigrationOutcome::Completed`].
///    Anything else: the source keeps the VM.
/// 2. When the source does not answer, the destination's latest report decides: a VM running
///    (or paused) there, not incoming, means the switchover happened.
/// 3. Otherwise the destination's incoming QEMU is aborted. The agent refuses when the guest
///    already runs there; with a silent source that too means the switchover happened.
async fn settle(
    console: &Console,
    active: &ActiveMigration,
    id: uuid::Uuid,
    failure: MigrationOutcome,
) -> MigrationOutcome {
    let agents = console.agents();
    let mut source_status: Option<String> = None;
    if agents.status(&active.source) == HostStatus::Connected {
        let cancel = AgentCommand::CancelMigration { id };
        match agents.request(&active.source, cancel, SHORT_TIMEOUT).await {
            Ok(_)
            | Err(RequestError::Agent {
                source: CommandError::BadState { .. },
                ..
            }) => {}
            Err(e) => tracing::debug!(vm = active.vm, "cancel on source: {}", Chain(&e)),
        }
        let status = AgentCommand::MigrationStatus { id, wait_ms: 0 };
        if let Ok(CommandReply::Migration { status }) =
            agents.request(&active.source, status, SHORT_TIMEOUT).await
        {
            source_status = Some(status.qemu_status);
        }
    }
    match source_status.as_deref() {
        Some("completed") => return MigrationOutcome::Completed,
        None if runs_on(console, &active.destination, id) => {
            console.event(
                "migration",
                &active.vm,
                format!(
                    "source {} unreachable, but destination {} runs the VM: the migration completed",
                    active.source, active.destination
                ),
            );
            return MigrationOutcome::Completed;
        }
        Some(_) if runs_on(console, &active.destination, id) => {
            // The source says it still has the VM and the destination reports it too: leave both
            // alone rather than guess which copy to kill.
            let msg = format!(
                "both {} and {} report the VM after a failed migration; neither is touched",
                active.source, active.destination
            );
            console.event("migration", &active.vm, msg.clone());
            return MigrationOutcome::Failed(msg);
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
            source: CommandError::BadState { .. },
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
            MigrationOutcome::Completed
        }
        Err(e) => {
            tracing::debug!(vm = active.vm, "abort on destination: {}", Chain(&e));
            failure
        }
    }
}

/// Before a completed migration is recorded as such: asks the destination for the VM's state
/// (`ObserveVm`; the registry applies the answer to the host's observed VMs) until it runs there,
/// for at most [`DESTINATION_RUNNING_WAIT`], so that the VM shows as running on its new host as
/// soon as the migration shows as completed. QEMU resumes the guest on the destination a moment
/// after the source reports completion: the request carries `wait_ms`, and the agent answers
/// when its QEMU's `RESUME` event says the guest runs (one request, answered within a
/// `query-status` of the resumption). Gives up early when the destination disconnects; the
/// next report brings the state in any case.
async fn await_destination_running(console: &Console, active: &ActiveMigration, id: uuid::Uuid) {
    let agents = console.agents();
    let deadline = Instant::now() + DESTINATION_RUNNING_WAIT;
    let mut pause = DESTINATION_POLL_FIRST;
    loop {
        if agents.reported_state(&active.destination, id) == Some(PowerState::Running) {
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
        let asked = Instant::now();
        let wait = left.saturating_sub(DESTINATION_ANSWER_MARGIN);
        let observe = AgentCommand::ObserveVm {
            id,
            wait_ms: wait.as_millis() as u64,
        };
        match agents
            .request(&active.destination, observe, left.min(SHORT_TIMEOUT))
            .await
        {
            Ok(CommandReply::Vm { vm }) if vm.state == PowerState::Running => return,
            Ok(_) => {}
            Err(e) => tracing::debug!(
                vm = active.vm,
                "observing on the destination: {}",
                Chain(&e)
            ),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.saturating_sub(asked.elapsed()).min(left)).await;
        pause = (pause * 2).min(DESTINATION_POLL);
    }
}

/// Right after the switchover: carries the connections the source's switch tracks for the
/// VM's NICs to the destination's switch (`ExportConnections` on the source, then
/// `ImportConnections` on the destination), so that the VM's established connections pass its
/// firewall there; until they arrive, their packets are dropped as `conntrack_invalid` there
/// (TCP retransmits them). Never fails the migration: a failure is logged and evented.
async fn carry_connections(console: &Console, active: &ActiveMigration, id: uuid::Uuid) {
    let agents = console.agents();
    if agents.status(&active.source) != HostStatus::Connected {
        return;
    }
    let export = AgentCommand::ExportConnections { id };
    let nics = match agents.request(&active.source, export, SHORT_TIMEOUT).await {
        Ok(CommandReply::Connections { nics }) => nics,
        Ok(other) => {
            tracing::warn!(
                vm = active.vm,
                "source answered {other:?} for its connections"
            );
            return;
        }
        Err(e) => {
            console.event(
                "migration",
                &active.vm,
                format!(
                    "connections not read from {}: {}; the VM's established connections may \
                     not pass its firewall on {}",
                    active.source,
                    Chain(&e),
                    active.destination
                ),
            );
            return;
        }
    };
    let count: usize = nics.iter().map(|n| n.entries.len()).sum();
    if count == 0 {
        return;
    }
    let import = AgentCommand::ImportConnections { id, nics };
    match agents
        .request(&active.destination, import, SHORT_TIMEOUT)
        .await
    {
        Ok(_) => tracing::info!(
            vm = active.vm,
            "{count} connections carried from {} to {}",
            active.source,
            active.destination
        ),
        Err(e) => console.event(
            "migration",
            &active.vm,
            format!(
                "connections not carried to {}: {}; the VM's established connections may not \
                 pass its firewall there",
                active.destination,
                Chain(&e)
            ),
        ),
    }
}

/// Applies an outcome: switch the VM's host, or record that it stays on the source.
pub async fn finish(console: &Arc<Console>, active: &ActiveMigration, outcome: MigrationOutcome) {
    let agents = console.agents().clone();
    let id = console.vm(&active.vm).map(|v| v.value.id).ok();
    let outcome = match (outcome, id) {
        (MigrationOutcome::Completed, _) => MigrationOutcome::Completed,
        (failure, Some(id)) => settle(console, active, id, failure).await,
        (failure, None) => failure,
    };
    match outcome {
        MigrationOutcome::Completed => {
            // From the start, beside the rest: the destination answers as soon as the guest
            // runs there.
            let running = async {
                if let Some(id) = id {
                    await_destination_running(console, active, id).await;
                    active.step_done("destination running");
                }
            };
            let moved = async {
                // First: the guest runs on the destination already, its connections' packets
                // with it.
                if let Some(id) = id {
                    carry_connections(console, active, id).await;
                    active.step_done("connections carried");
                }
                let dest = active.destination.clone();
                let updated = console.update_vm(&active.vm, |r| r.host = dest);
                if updated.is_ok() {
                    active.step_done("record");
                    // At once: every host's MAC entries to the destination, the source's paused
                    // QEMU quit.
                    let switches = async {
                        push::push_all(console).await;
                        active.step_done("switches");
                    };
                    let release = async {
                        let Some(id) = id else { return };
                        let fin = AgentCommand::FinishMigrationSource { id };
                        if let Err(e) = agents.request(&active.source, fin, SHORT_TIMEOUT).await {
                            console.event(
                                "migration",
                                &active.vm,
                                format!(
                                    "source {} did not release the paused VM yet ({}); it is \
                                     released when the host reports it again",
                                    active.source,
                                    Chain(&e)
                                ),
                            );
                        }
                        active.step_done("source released");
                    };
                    tokio::join!(switches, release);
                }
                updated
            };
            let ((), updated) = tokio::join!(running, moved);
            match updated {
                Ok(_) => {
                    set_progress(console, active, |p| {
                        p.phase = MigrationPhase::Completed;
                        p.error = None;
                    });
                    console.event(
                        "migration",
                        &active.vm,
                        format!(
                            "migrated from {} to {} in {}",
                            active.source,
                            active.destination,
                            active.timeline()
                        ),
                    );
                }
                Err(e) => {
                    set_progress(console, active, |p| {
                        p.phase = MigrationPhase::Failed;
                        p.error = Some(format!(
                            "switched over but the record was not updated: {}",
                            Chain(&e)
                        ));
                    });
                    console.event(
                        "migration",
                        &active.vm,
                        format!("record not updated after switchover: {}", Chain(&e)),
                    );
                }
            }
        }
        MigrationOutcome::Failed(_) | MigrationOutcome::Cancelled => {
            let (phase, error) = match outcome {
                MigrationOutcome::Failed(e) => (MigrationPhase::Failed, Some(e)),
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
    console
        .metrics()
        .migration_ended(active.progress().phase, active.elapsed());
    console.inflight().end_migration(&active.vm);
    // The destination keeps the VM's networks only if the VM arrived there.
    push::push_all_later(console);
}
