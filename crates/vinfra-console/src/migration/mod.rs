//! Live-migration orchestration (docs/design.md, "Live migration").
//!
//! One task per migration: `PrepareIncoming` on the destination, `MigrateOut` on the source,
//! then `MigrationStatus` every 200 ms with the progress stored under
//! `/vinfra/migrations/<vm>` ([`drive`]). On completion the connections the source's switch
//! tracks for the VM's NICs go to the destination's (so its firewall lets them on), the VM
//! record's host changes (compare-and-swap), then at the same time the switches get the new
//! configuration, the source quits its paused QEMU and the destination is asked (at most 5 s)
//! until it reports the VM running; only then is the migration recorded as completed, with an
//! event that tells each step's time ([`finish`]). Any other ending goes through `settle` first: it finds out whether the
//! switchover happened after all (source says `completed`, or a silent source and a
//! destination that runs the VM) and only then aborts the destination's incoming QEMU. While a
//! migration runs the VM counts against both hosts.
//!
//! - `mod.rs`: the entry points: [`start`] (the operator's), [`start_planned`] (a move of a
//!   balancing plan), [`show`], [`in_flight`] (the migration a cancel asks to stop; the
//!   request is answered with the task that follows it, `crate::tasks`), [`resume_all`];
//! - [`drive`]: from the destination's preparation to the source's last status;
//! - [`finish`]: settling an unclear end, and recording the outcome.

pub mod drive;
pub mod finish;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vinfra_types::api::MigrateVmRequest;
use vinfra_types::{HostStatus, MigrationPhase, MigrationProgress, PowerState};

use crate::error::{Error, Object};
use crate::fit::{self, Target};
use crate::state::records::{self as keys, now_s, DesiredPower};
use crate::state::{ActiveMigration, BusyGuard, Console};
use drive::MigrationOutcome;

pub use crate::state::SOURCE_LOST_AFTER;

/// Validates and starts a migration, to `request.to` or to the host placement picks; either
/// way under the must-rules (a destination that would break one is refused, rule-conflict).
/// Returns its first progress (phase `preparing`).
pub async fn start(
    console: &Arc<Console>,
    name: &str,
    request: MigrateVmRequest,
) -> Result<MigrationProgress, Error> {
    if let Some(to) = &request.to {
        vinfra_types::validate_name(to).map_err(|source| Error::BadName {
            field: "to",
            source,
        })?;
    }
    begin(
        console,
        name,
        request.to.as_deref(),
        Target::Migrate(request.to.as_deref()),
    )
    .await
}

/// Starts a migration to `to` as one move of a balancing plan: host fit is checked, the
/// must-rules are not (the plan keeps them as a whole; a must-affinity group moves one VM at a
/// time). Returns its first progress (phase `preparing`).
pub async fn start_planned(
    console: &Arc<Console>,
    name: &str,
    to: &str,
) -> Result<MigrationProgress, Error> {
    begin(console, name, Some(to), Target::Planned(to)).await
}

/// Checks the VM and the destination `to` (if named), places it for `target`, stores the
/// migration and starts its task.
async fn begin(
    console: &Arc<Console>,
    name: &str,
    to: Option<&str>,
    target: Target<'_>,
) -> Result<MigrationProgress, Error> {
    let rec = console.vm(name)?.value;
    if console.inflight().migrating(name) {
        return Err(Error::Migrating {
            vm: name.to_string(),
        });
    }
    let busy = console.inflight().busy(name)?;
    if rec.desired != DesiredPower::Running {
        return Err(Error::WrongState {
            vm: name.to_string(),
            state: rec.desired.power_state(),
            wanted: PowerState::Running,
            op: "migrate live",
        });
    }
    if console.agents().status(&rec.host) != HostStatus::Connected {
        return Err(Error::SourceDisconnected {
            host: rec.host.clone(),
        });
    }
    if let Some(to) = to {
        console.host(to)?;
        if to == rec.host {
            return Err(Error::AlreadyOn {
                vm: name.to_string(),
                host: to.to_string(),
            });
        }
    }
    let active = {
        // The placement lock comes with the answer: held until the migration is registered
        // (placement counts the VM on its destination from then on).
        let placed = fit::place(console, name, &rec.spec, rec.platform.as_ref(), target).await?;
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
            encrypted: console.settings().effective_migration_encrypted(),
            started_at: now_s(),
        };
        keys::put(
            console.store().as_ref(),
            &keys::migration_key(name),
            &progress,
        )?;
        let active = Arc::new(ActiveMigration::new(progress));
        if !console.inflight().begin_migration(active.clone()) {
            return Err(Error::Migrating {
                vm: name.to_string(),
            });
        }
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
    console.metrics().migration_started();
    let first = active.progress();
    let console = console.clone();
    tokio::spawn(crate::state::events::inherit(async move {
        let outcome = drive::drive(&console, &active, true).await;
        finish::finish(&console, &active, outcome).await;
        drop(busy);
    }));
    Ok(first)
}

/// Progress of the current (or last) migration of a VM.
pub fn show(console: &Console, name: &str) -> Result<MigrationProgress, Error> {
    console.vm(name)?;
    if let Some(m) = console.inflight().migration(name) {
        return Ok(m.progress());
    }
    keys::get::<MigrationProgress>(console.store().as_ref(), &keys::migration_key(name))?
        .map(|v| v.value)
        .ok_or_else(|| Error::not_found(Object::Migration, name))
}

/// The migration of VM `name` in flight, to be cancelled ([`ActiveMigration::cancel`]): an
/// unknown VM is [`Error::NotFound`], one that is not migrating [`Error::NotMigrating`].
pub fn in_flight(console: &Console, name: &str) -> Result<Arc<ActiveMigration>, Error> {
    console.vm(name)?;
    console
        .inflight()
        .migration(name)
        .ok_or_else(|| Error::NotMigrating {
            vm: name.to_string(),
        })
}

/// After a console restart: picks up every migration the store says is still running. Waits
/// for the source to reconnect, then follows it to its end (or cleans up when it has none).
pub fn resume_all(console: &Arc<Console>) -> Result<(), Error> {
    let records = keys::range::<MigrationProgress>(console.store().as_ref(), keys::MIGRATIONS)?;
    for (vm, rec) in records {
        let progress = rec.value;
        if progress.phase.is_final() || console.inflight().migrating(&vm) {
            continue;
        }
        let Ok(busy) = console.inflight().busy(&vm) else {
            continue;
        };
        let active = Arc::new(ActiveMigration::new(progress));
        if !console.inflight().begin_migration(active.clone()) {
            continue;
        }
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
        MigrationOutcome::Failed("the VM was deleted".into())
    } else if active.progress().phase == MigrationPhase::Preparing {
        // The console stopped before the source started sending: nothing to follow.
        MigrationOutcome::Failed("the console restarted before the migration began".into())
    } else {
        drive::drive(console, active, false).await
    };
    finish::finish(console, active, outcome).await;
    drop(busy);
}
