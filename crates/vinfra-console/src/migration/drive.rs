//! Driving a migration: the destination's switch and incoming QEMU (side by side for a VM
//! without NICs), the source's `MigrateOut`,
//! then the source's status until QEMU ends it, the operator cancels, the destination
//! disconnects or the source stays silent too long. Each status request waits on the source up
//! to [`POLL_INTERVAL`] and comes back as soon as QEMU reports the end (its `MIGRATION` event),
//! so the switchover is seen within milliseconds, not up to a polling interval later.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vinfra_proto::{AgentCommand, CommandReply, MigrationStatus, MigrationTls};
use vinfra_types::error::Chain;
use vinfra_types::{HostStatus, MigrationPhase, MigrationProgress, PowerState};

use crate::agents::RequestError;
use crate::networks::push;
use crate::state::records::{self as keys, VmRecord};
use crate::state::{ActiveMigration, Console, CREATE_TIMEOUT, SHORT_TIMEOUT};

/// How often the source reports progress: the longest a status request waits there for the
/// migration's end.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long after a cancel the source has to confirm it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How a migration ended, as far as the console saw it.
pub enum MigrationOutcome {
    /// The source reported `completed`: the switchover happened.
    Completed,
    /// It failed, with why.
    Failed(String),
    /// The operator cancelled it.
    Cancelled,
}

/// What an outgoing migration is tuned with, from the cluster settings.
fn migration_settings(console: &Console) -> vinfra_proto::MigrationSettings {
    let s = console.settings();
    vinfra_proto::MigrationSettings {
        max_bandwidth: s.migration_bandwidth_bytes_per_s(),
        downtime_limit_ms: s.effective_downtime_limit_ms(),
        auto_converge: s.effective_auto_converge(),
    }
}

/// Stores a change of the migration's progress.
pub fn set_progress(
    console: &Console,
    active: &ActiveMigration,
    f: impl FnOnce(&mut MigrationProgress),
) {
    let snapshot = active.update(f);
    if let Err(e) = keys::put(
        console.store().as_ref(),
        &keys::migration_key(&active.vm),
        &snapshot,
    ) {
        tracing::warn!(
            vm = active.vm,
            "migration progress not stored: {}",
            Chain(&e)
        );
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
pub async fn drive(
    console: &Arc<Console>,
    active: &ActiveMigration,
    begin: bool,
) -> MigrationOutcome {
    let agents = console.agents().clone();
    let rec = match console.vm(&active.vm) {
        Ok(v) => v.value,
        Err(e) => return MigrationOutcome::Failed(vinfra_types::error::chain(&e)),
    };
    if begin {
        // The destination's switch must have the VM's networks before it adds the VM's ports
        // (the agent refuses NICs on networks its switch does not have). A VM without NICs
        // gets no ports there: its switch configuration goes beside its QEMU's start.
        let prepared = if rec.spec.nics.is_empty() {
            let (switched, prepared) = tokio::join!(
                switch_destination(console, active, &rec),
                prepare_destination(console, active, &rec)
            );
            switched.and(prepared)
        } else {
            match switch_destination(console, active, &rec).await {
                Ok(()) => prepare_destination(console, active, &rec).await,
                Err(e) => Err(e),
            }
        };
        let (uri, tls) = match prepared {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        if active.cancel_asked() {
            return MigrationOutcome::Cancelled;
        }
        let out = AgentCommand::MigrateOut {
            id: rec.id,
            uri,
            settings: migration_settings(console),
            tls,
            redirect_to: redirect_to(console, active, &rec),
        };
        if let Err(e) = agents.request(&active.source, out, SHORT_TIMEOUT).await {
            return MigrationOutcome::Failed(format!(
                "starting the migration on the source: {}",
                Chain(&e)
            ));
        }
        active.step_done("migrate command");
        set_progress(console, active, |p| p.phase = MigrationPhase::Active);
    }
    let mut cancel_sent: Option<Instant> = None;
    let mut source_lost_since: Option<Instant> = None;
    // The first status right away (a short migration may have ended already), then each
    // request waits up to `POLL_INTERVAL` on the source for the end.
    let mut wait = Duration::ZERO;
    loop {
        if active.cancel_asked() && cancel_sent.is_none() {
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
            return MigrationOutcome::Cancelled;
        }
        if agents.status(&active.destination) != HostStatus::Connected {
            return MigrationOutcome::Failed(format!(
                "destination host '{}' disconnected",
                active.destination
            ));
        }
        let asked = Instant::now();
        let status = agents
            .request(
                &active.source,
                AgentCommand::MigrationStatus {
                    id: rec.id,
                    wait_ms: wait.as_millis() as u64,
                },
                SHORT_TIMEOUT + wait,
            )
            .await;
        // An answer before the wait is over that is not the end (or no answer) is followed by
        // a pause for the rest of it: never a tight loop.
        let rest = wait.saturating_sub(asked.elapsed());
        wait = POLL_INTERVAL;
        let status = match status {
            Ok(CommandReply::Migration { status }) => status,
            Ok(other) => return MigrationOutcome::Failed(format!("source answered {other:?}")),
            Err(RequestError::Agent { source, .. }) => {
                return MigrationOutcome::Failed(format!("source: {}", Chain(&source)));
            }
            Err(e) => {
                tokio::time::sleep(rest).await;
                let since = *source_lost_since.get_or_insert_with(Instant::now);
                // The destination running the VM settles it at once (see `settle`).
                if since.elapsed() > console.source_lost_after()
                    || runs_on(console, &active.destination, rec.id)
                {
                    return MigrationOutcome::Failed(format!("source unreachable: {}", Chain(&e)));
                }
                continue;
            }
        };
        source_lost_since = None;
        if status.qemu_status == "completed" {
            active.step_done("memory copy and switchover");
        }
        set_progress(console, active, |p| {
            apply_status(p, &status);
            if p.phase == MigrationPhase::Preparing {
                p.phase = MigrationPhase::Active;
            }
        });
        match status.qemu_status.as_str() {
            "completed" => return MigrationOutcome::Completed,
            "failed" => {
                return MigrationOutcome::Failed(
                    status
                        .error
                        .unwrap_or_else(|| "QEMU reported failure".into()),
                )
            }
            "cancelled" => {
                return if cancel_sent.is_some() {
                    MigrationOutcome::Cancelled
                } else {
                    MigrationOutcome::Failed("cancelled on the source".into())
                }
            }
            _ => tokio::time::sleep(rest).await,
        }
    }
}

/// Where the source's switch sends the VM's frames from its switchover on
/// ([`AgentCommand::MigrateOut`] `redirect_to`): the destination's underlay address, for a VM
/// with NICs, unless the source has the same one.
fn redirect_to(console: &Console, active: &ActiveMigration, rec: &VmRecord) -> Option<Ipv4Addr> {
    if rec.spec.nics.is_empty() {
        return None;
    }
    let underlay = console.underlay();
    underlay
        .address(&active.destination)
        .filter(|to| underlay.address(&active.source) != Some(*to))
}

/// The destination's switch configuration pushed (a failure ends the migration only for a VM
/// with NICs: one without needs no ports there); then every other host learns where the VM's
/// MACs may move (`moving_to`): its switch follows the VM's announcements from the destination
/// at the switchover and refuses any other. That in the background: a silent host must not
/// hold the migration up, and the memory copy takes longer than a push.
async fn switch_destination(
    console: &Arc<Console>,
    active: &ActiveMigration,
    rec: &VmRecord,
) -> Result<(), MigrationOutcome> {
    if let Err(e) = push::push(console, &active.destination).await {
        if !rec.spec.nics.is_empty() {
            return Err(MigrationOutcome::Failed(format!(
                "configuring the destination's switch: {}",
                Chain(&e)
            )));
        }
        tracing::warn!(
            host = active.destination,
            "switch configuration: {}",
            Chain(&e)
        );
    }
    active.step_done("destination's switch");
    push::push_all_later(console);
    Ok(())
}

/// The destination's incoming QEMU (`PrepareIncoming`): the URI it listens on, and for an
/// encrypted migration the source's credentials. Encrypted: credentials for this migration
/// alone (the destination accepts this source's certificate and no other; the source sends
/// only to this destination's).
async fn prepare_destination(
    console: &Console,
    active: &ActiveMigration,
    rec: &VmRecord,
) -> Result<(String, Option<MigrationTls>), MigrationOutcome> {
    let tls = if active.progress().encrypted {
        match console.ca().issue_migration_tls() {
            Ok(c) => Some(c),
            Err(e) => {
                return Err(MigrationOutcome::Failed(format!(
                    "issuing the migration's certificates: {}",
                    Chain(&e)
                )))
            }
        }
    } else {
        None
    };
    let prep = AgentCommand::PrepareIncoming {
        vm: rec.instance(),
        tls: tls.as_ref().map(|c| c.destination.clone()),
    };
    let uri = match console
        .agents()
        .request(&active.destination, prep, CREATE_TIMEOUT)
        .await
    {
        // Never in plain text when encryption was asked for: an agent that does not know TLS
        // answers without `encrypted`.
        Ok(CommandReply::Incoming { encrypted, .. }) if tls.is_some() && !encrypted => {
            return Err(MigrationOutcome::Failed(format!(
                "destination host '{}' cannot receive an encrypted migration (upgrade its \
                 agent, or turn the migration_encrypted setting off)",
                active.destination
            )))
        }
        Ok(CommandReply::Incoming { uri, .. }) => uri,
        Ok(other) => {
            return Err(MigrationOutcome::Failed(format!(
                "destination answered {other:?}"
            )))
        }
        Err(e) => {
            return Err(MigrationOutcome::Failed(format!(
                "preparing the destination: {}",
                Chain(&e)
            )))
        }
    };
    active.step_done("destination's QEMU");
    Ok((uri, tls.map(|c| c.source)))
}

/// True when the host's latest report (connected or not) shows the VM with its guest there:
/// running or paused, not waiting for an incoming migration.
pub fn runs_on(console: &Console, host: &str, id: uuid::Uuid) -> bool {
    matches!(
        console.agents().reported_state(host, id),
        Some(PowerState::Running | PowerState::Paused)
    )
}
