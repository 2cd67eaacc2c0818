//! Running operations as tasks, and following after a restart the tasks that had not ended
//! (docs/design.md, "Tasks"). The records and what an operation tells its task are in
//! [`crate::state::tasks`].
//!
//! [`run`] begins a task, spawns its operation (within the actor's scope and the task's) and
//! answers as soon as the operation has passed its checks ([`tasks::accepted`]), has ended, or
//! after [`ACCEPT_WAIT`]: a refusal before that is the request's error and leaves no task; any
//! other answer is the task, published. The operation runs on whatever the request does (a
//! client that goes away no longer cuts it short).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use vinfra_types::auth::Actor;
use vinfra_types::task::{Task, TaskFilter, TaskKind, TASK_WAIT_MAX_S};
use vinfra_types::{HostStatus, MigrationPhase, MigrationProgress, PowerState};

use crate::error::{Error, Object};
use crate::migration;
use crate::state::events;
use crate::state::records::{self as keys, DesiredPower};
use crate::state::tasks::{self, CancelRefusal, TaskRecord};
use crate::state::{ActiveMigration, Console};

/// How long a request waits for its operation to pass its checks before it answers with the
/// task as it is (`running`).
pub const ACCEPT_WAIT: Duration = Duration::from_secs(1);

/// [`ACCEPT_WAIT`] for a create of many VMs: every one of them is placed and written before it
/// is accepted (a refusal of one is the request's refusal), which may take longer than a
/// second for a thousand on a busy console.
pub const MANY_ACCEPT_WAIT: Duration = Duration::from_secs(60);

/// How long a console that restarted follows a migration's task.
pub const MIGRATION_FOLLOW_S: u64 = 600;

/// Runs `work` as a task of `kind` on `target` for `actor` (see the module doc); a restarted
/// console follows it for `follow_s` seconds.
pub async fn run<F>(
    console: &Arc<Console>,
    actor: Actor,
    kind: TaskKind,
    target: String,
    follow_s: u64,
    work: F,
) -> Result<Task, Error>
where
    F: Future<Output = Result<Option<serde_json::Value>, Error>> + Send + 'static,
{
    let accept_wait = if kind == TaskKind::VmCreateMany {
        MANY_ACCEPT_WAIT
    } else {
        ACCEPT_WAIT
    };
    let board = console.tasks().clone();
    let (handle, accepted) = board.begin(kind, target, actor.clone(), follow_s)?;
    let id = handle.id();
    let (early_tx, mut early_rx) = tokio::sync::oneshot::channel::<Option<Error>>();
    let b = board.clone();
    tokio::spawn(events::acting(
        actor,
        tasks::scope(handle, async move {
            // A panic ends the task failed (it would otherwise run on for ever).
            let outcome = std::panic::AssertUnwindSafe(work).catch_unwind().await;
            let (recorded, error) = match outcome {
                Ok(Ok(v)) => (Ok(v), None),
                Ok(Err(e)) => (Err(e.problem()), Some(e)),
                Err(_) => (Err(panicked()), None),
            };
            b.finish(id, recorded);
            if early_tx.send(error).is_err() {
                // The request went away before it was answered (its client hung up): the task
                // is listed all the same.
                if let Err(e) = b.publish(id) {
                    tracing::warn!(
                        task = id,
                        "task not recorded: {}",
                        vinfra_types::error::Chain(&e)
                    );
                }
            }
        }),
    ));
    // Acceptance first: an operation accepted that fails at once is a task that failed, not a
    // refusal. The operation dropping its side of `accepted` unsent means it has ended: its
    // outcome follows on `early_rx`.
    let mut dropped = false;
    let mut early = tokio::select! {
        biased;
        a = accepted => {
            dropped = a.is_err();
            None
        }
        r = &mut early_rx => r.ok(),
        _ = tokio::time::sleep(accept_wait) => None,
    };
    if dropped {
        early = early_rx.await.ok();
    }
    if let Some(Some(e)) = early {
        board.discard(id);
        return Err(e);
    }
    Ok(board.publish(id)?)
}

/// The problem of an operation that panicked.
fn panicked() -> vinfra_types::Problem {
    vinfra_types::Problem {
        kind: "/problems/internal".into(),
        title: "Internal Server Error".into(),
        status: 500,
        detail: "the operation failed unexpectedly (see the console's log)".into(),
    }
}

/// The tasks `filter` lets through, oldest first.
pub fn list(console: &Console, filter: &TaskFilter) -> Vec<Task> {
    console.tasks().list(filter)
}

/// One task; with `wait_s`, once it has ended or after that many seconds (at most
/// [`TASK_WAIT_MAX_S`]).
pub async fn show(console: &Console, id: u64, wait_s: Option<u64>) -> Result<Task, Error> {
    let gone = || Error::not_found(Object::Task, id.to_string());
    match wait_s {
        Some(s) if s > TASK_WAIT_MAX_S => Err(Error::OutOfRange {
            field: "wait_s",
            min: 0,
            max: TASK_WAIT_MAX_S,
            got: s,
        }),
        Some(s) if s > 0 => console
            .tasks()
            .wait(id, Duration::from_secs(s))
            .await
            .ok_or_else(gone),
        _ => console.tasks().get(id).ok_or_else(gone),
    }
}

/// Asks a task's operation to stop (`DELETE /tasks/{id}`); the task as it is then.
pub fn cancel(console: &Console, id: u64, by: Actor) -> Result<Task, Error> {
    console.tasks().cancel(id, by).map_err(|r| match r {
        CancelRefusal::Unknown => Error::not_found(Object::Task, id.to_string()),
        CancelRefusal::Ended(state) => Error::TaskEnded { id, state },
        CancelRefusal::NotCancellable(kind) => Error::TaskNotCancellable { id, kind },
    })
}

/// Within a migration's task: the migration of `vm` just started, which the task follows;
/// the task may cancel it from now on (set before the task is answered, so that its first
/// answer says it can be).
pub fn arm_cancel(console: &Console, vm: &str) -> Option<Arc<ActiveMigration>> {
    let active = console.inflight().migration(vm)?;
    if let Some(id) = tasks::current() {
        active.followed_by(id);
    }
    let hook = active.clone();
    tasks::on_cancel(Some(Arc::new(move || hook.cancel())));
    Some(active)
}

/// `DELETE /vms/{name}/migration`: asks VM `vm`'s migration to stop and answers at once with
/// the task that follows it, whose end says whether the cancel took (`cancelled`: the VM
/// stays on its source) or came too late (`succeeded`: it switched over). The migration's own
/// task is cancelled as `DELETE /tasks/{id}` cancels it; a migration no task follows (a move
/// of the balancer, one a restarted console resumed) gets a task of its own, `vm_migrate`,
/// that follows it to its end. An unknown VM or one that is not migrating is refused.
pub async fn cancel_migration(
    console: &Arc<Console>,
    actor: Actor,
    vm: &str,
) -> Result<Task, Error> {
    let active = migration::in_flight(console, vm)?;
    let board = console.tasks();
    if let Some(id) = active.task() {
        match board.cancel(id, actor.clone()) {
            Ok(task) => return Ok(task),
            // Past its switchover (nothing left to cancel), or followed by a console that
            // restarted: asked all the same, its end tells.
            Err(CancelRefusal::NotCancellable(_)) => {
                active.cancel();
                if let Some(task) = board.get(id) {
                    return Ok(task);
                }
            }
            // Ended while the migration goes on (a follower's bound ran out): a new one.
            Err(CancelRefusal::Ended(_) | CancelRefusal::Unknown) => {}
        }
    }
    let c = console.clone();
    let name = vm.to_string();
    let by = actor.clone();
    let work = async move {
        let armed = arm_cancel(&c, &name);
        active.cancel();
        tasks::say(format!("cancel asked by {by}"));
        tasks::accepted();
        let last = follow_migration(&c, armed, &name).await?;
        Ok(serde_json::to_value(last).ok())
    };
    run(
        console,
        actor,
        TaskKind::VmMigrate,
        vm.to_string(),
        MIGRATION_FOLLOW_S,
        work,
    )
    .await
}

/// Within a migration's task: follows `active` (the migration [`arm_cancel`] found) to its
/// end, the task's progress with it; cancellable until the switchover. The last progress when
/// it completed; [`Error::MigrationCancelled`] (the task ends `cancelled`, whoever cancelled
/// it) or [`Error::MigrationFailed`] otherwise.
pub async fn follow_migration(
    console: &Console,
    active: Option<Arc<ActiveMigration>>,
    vm: &str,
) -> Result<MigrationProgress, Error> {
    let Some(active) = active else {
        // Ended before it could be followed: its record says how.
        let last =
            keys::get::<MigrationProgress>(console.store().as_ref(), &keys::migration_key(vm))?
                .map(|v| v.value)
                .ok_or_else(|| Error::not_found(Object::Migration, vm))?;
        return migration_outcome(last);
    };
    let mut said = None;
    let still_ours = || {
        console
            .inflight()
            .migration(vm)
            .is_some_and(|a| Arc::ptr_eq(&a, &active))
    };
    while still_ours() {
        let p = active.progress();
        if p.phase.is_final() {
            // Switched over (or ended): nothing left to cancel.
            tasks::on_cancel(None);
        } else if p.phase != MigrationPhase::Preparing && p.total_bytes > 0 {
            let pct = p.transferred_bytes.saturating_mul(100) / p.total_bytes.max(1);
            tasks::progress(pct.min(99) as u8);
        }
        // Once a cancel is asked, the message says so (and still names the VM: see
        // [`migrating`]).
        let cancel = active.cancel_asked();
        if said != Some((p.phase, cancel)) {
            said = Some((p.phase, cancel));
            tasks::say(format!(
                "{}: {}{}",
                migrating(&p),
                match p.phase {
                    MigrationPhase::Preparing => "preparing the destination",
                    MigrationPhase::Active => "copying memory",
                    _ => "switching over",
                },
                if cancel { " (cancel asked)" } else { "" }
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tasks::on_cancel(None);
    let last = active.progress();
    if last.phase == MigrationPhase::Cancelled {
        // Cancelled through the VM's migration rather than through the task.
        tasks::mark_cancelled();
    }
    migration_outcome(last)
}

/// What a migration's task says it does (a restarted console finds the VM of a
/// recommendation's task in these words: the recommendation is gone once applied).
pub fn migrating(p: &MigrationProgress) -> String {
    format!(
        "migrating VM '{}' from {} to {}",
        p.vm, p.source, p.destination
    )
}

/// A migration's last progress as a task's outcome.
fn migration_outcome(last: MigrationProgress) -> Result<MigrationProgress, Error> {
    match last.phase {
        MigrationPhase::Completed => {
            tasks::say(format!(
                "moved to {} (downtime {} ms)",
                last.destination,
                last.downtime_ms.unwrap_or(0)
            ));
            Ok(last)
        }
        MigrationPhase::Cancelled => Err(Error::MigrationCancelled {
            vm: last.vm,
            host: last.source,
        }),
        _ => Err(Error::MigrationFailed {
            reason: last
                .error
                .clone()
                .unwrap_or_else(|| "no reason given".to_string()),
            vm: last.vm,
            source_host: last.source,
            destination: last.destination,
        }),
    }
}

/// After a console restart: follows each task the store held unended (see the module doc of
/// docs/design.md "Tasks" for what ends each).
pub fn follow_unended(console: &Arc<Console>) {
    for record in console.take_unended_tasks() {
        let console = console.clone();
        let handle = console.tasks().clone();
        tokio::spawn(async move {
            let id = record.task.id;
            let outcome = follow(&console, &record).await;
            if let Err(Error::MigrationCancelled { .. }) = &outcome {
                // Cancelled through the VM's migration: the task ends cancelled.
                handle.mark_cancelled(id);
            }
            handle.finish(id, outcome.map_err(|e| e.problem()));
        });
    }
}

/// What a restarted console concludes about one unended task, once the cluster shows it (or
/// its bound has passed).
async fn follow(
    console: &Console,
    record: &TaskRecord,
) -> Result<Option<serde_json::Value>, Error> {
    let task = &record.task;
    let bound = Duration::from_secs(record.follow_s);
    let deadline = Instant::now() + bound;
    let restarted = |what: &str| Error::TaskInterrupted {
        task: task.id,
        what: what.to_string(),
    };
    let vm = task.target.as_str();
    if task.kind == TaskKind::VmCreateMany {
        return follow_many(console, task, record.count, deadline).await;
    }
    loop {
        let rec = console.vm(vm).ok().map(|v| v.value);
        let observed = rec
            .as_ref()
            .and_then(|r| console.agents().observed_state(&r.host, r.id));
        let summary = || {
            crate::vms::views::show(console, vm)
                .ok()
                .and_then(|s| serde_json::to_value(s).ok())
        };
        match task.kind {
            TaskKind::VmCreate | TaskKind::VmStart => {
                let Some(r) = &rec else {
                    return Err(restarted("the VM is gone"));
                };
                if created(console, r, observed) {
                    return Ok(summary());
                }
            }
            // Followed by `follow_many`.
            TaskKind::VmCreateMany => {}
            TaskKind::VmReboot => {
                return Err(restarted("whether the VM was reset is not known"));
            }
            TaskKind::VmStop => {
                if rec.is_none() {
                    return Err(restarted("the VM is gone"));
                }
                let gone = rec.as_ref().is_some_and(|r| {
                    console.agents().status(&r.host) == HostStatus::Connected
                        && !console.agents().host_knows(&r.host, r.id)
                });
                if observed == Some(PowerState::Stopped) || gone {
                    return Ok(summary());
                }
            }
            TaskKind::VmDelete => {
                return if rec.is_none() {
                    Ok(None)
                } else {
                    Err(restarted("the VM was not deleted; delete it again"))
                };
            }
            TaskKind::VmMigrate | TaskKind::RecommendationApply => {
                let Some(vm) = migrating_vm(console, task) else {
                    return Err(restarted("its migration is not known"));
                };
                if let Some(active) = console.inflight().migration(&vm) {
                    // A cancel through the VM's migration answers with this task.
                    if active.task().is_none() {
                        active.followed_by(task.id);
                    }
                } else {
                    let last = keys::get::<MigrationProgress>(
                        console.store().as_ref(),
                        &keys::migration_key(&vm),
                    )?
                    .map(|v| v.value);
                    match last {
                        Some(p) if p.phase.is_final() => {
                            return migration_outcome(p).map(|p| serde_json::to_value(p).ok());
                        }
                        // Not resumed yet (or never to be).
                        _ => {}
                    }
                }
            }
            TaskKind::HostFence => {
                return Err(restarted("its fence command ended with the console"));
            }
            TaskKind::HostEvacuate => {
                let host = task.target.as_str();
                if crate::hosts::evacuate::running_on(console, host) == 0 {
                    return Ok(crate::hosts::crud::show(console, host)
                        .ok()
                        .and_then(|s| serde_json::to_value(s).ok()));
                }
                if !console.host(host).is_ok_and(|h| h.value.maintenance) {
                    return Err(restarted("the host is out of maintenance, VMs still on it"));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(restarted(&format!(
                "it had not ended {} s after the console started again",
                bound.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether VM `r` (its host reporting it `observed`) is as its create left it: running, or
/// for a VM created without a start, known to its host.
fn created(
    console: &Console,
    r: &crate::state::records::VmRecord,
    observed: Option<PowerState>,
) -> bool {
    match r.desired {
        DesiredPower::Running => observed == Some(PowerState::Running),
        _ => console.agents().host_knows(&r.host, r.id),
    }
}

/// What a restarted console concludes about an unended create of many VMs
/// (`{target}-1` … `{target}-{count}`; `count` unknown: while they exist): succeeded with
/// them once every one is created on its host; failed, naming them, when some do not exist
/// (refused, or never written) once the others are created, or at `deadline` with some not
/// created.
async fn follow_many(
    console: &Console,
    task: &Task,
    count: Option<u32>,
    deadline: Instant,
) -> Result<Option<serde_json::Value>, Error> {
    let interrupted = |what: String| Error::TaskInterrupted {
        task: task.id,
        what,
    };
    loop {
        let mut vms = Vec::new();
        let mut waiting = Vec::new();
        let mut missing = Vec::new();
        for i in 1..=count.unwrap_or(vinfra_types::api::CREATE_COUNT_MAX) {
            let name = format!("{}-{i}", task.target);
            let Ok(rec) = console.vm(&name).map(|v| v.value) else {
                if count.is_none() {
                    break;
                }
                missing.push(name);
                continue;
            };
            let observed = console.agents().observed_state(&rec.host, rec.id);
            if created(console, &rec, observed) {
                vms.push((&crate::vms::views::summary(console, &rec)).into());
            } else {
                waiting.push(name);
            }
        }
        if vms.is_empty() && waiting.is_empty() {
            return Err(interrupted("none of its VMs exists".to_string()));
        }
        if waiting.is_empty() && missing.is_empty() {
            return Ok(serde_json::to_value(vinfra_types::api::CreatedVms { vms }).ok());
        }
        if waiting.is_empty() {
            return Err(interrupted(format!(
                "VMs {} do not exist (the others were created)",
                missing.join(", ")
            )));
        }
        if Instant::now() >= deadline {
            return Err(interrupted(format!(
                "VMs {} had not been created when the console started again",
                waiting.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The VM a migration task moves: its target, or for a recommendation the VM its last
/// message or result names (the recommendation itself is gone once applied).
fn migrating_vm(console: &Console, task: &Task) -> Option<String> {
    match task.kind {
        TaskKind::VmMigrate => Some(task.target.clone()),
        _ => task
            .result
            .as_ref()
            .and_then(|r| r.get("vm"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| {
                task.message
                    .as_deref()
                    .and_then(|m| m.strip_prefix("migrating VM "))
                    .and_then(|m| m.split('\'').nth(1))
                    .map(str::to_string)
            })
            .filter(|vm| console.vm(vm).is_ok()),
    }
}
