//! The tasks (`/vinfra/tasks/<id>`, docs/design.md "Tasks"): the board of every task kept, and
//! what the operation a task runs tells it from inside ([`accepted`], [`say`], [`progress`],
//! [`on_cancel`]).
//!
//! A task is begun in memory ([`TaskBoard::begin`]); it is published (written, listed, sent to
//! the watchers) only once the request is answered with it ([`TaskBoard::publish`]), so that a
//! request refused by its checks leaves no record ([`TaskBoard::discard`]). An operation that
//! writes a record of its own once its checks passed may write its task's with it, in the same
//! transaction ([`publishing`], then [`published`] once that is on disk): one write for both
//! (a VM's create does). Its end is written too ([`TaskBoard::finish`]); progress and messages
//! in between stay in memory. Neither write holds the request (nor the board) until the disk
//! has synced ([`settle`]): the operation's own changes are on disk before it goes on, as
//! before tasks; the task record follows with the next sync. The operation
//! runs within [`scope`], and the free functions here reach its task from there, as
//! [`super::events`] reaches the actor: no resource function carries it. Outside of a task they
//! do nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, Notify};
use vinfra_store::{Op, PendingWrite, Store, Txn};
use vinfra_types::auth::Actor;
use vinfra_types::task::{Task, TaskFilter, TaskKind, TaskState};
use vinfra_types::Problem;

use super::locks::lock;
use super::records::{self as keys, now_s};
use crate::error::RecordError;
use crate::metrics::Metrics;

/// Ended tasks kept beyond the unended ones (the oldest go first).
pub const MAX_ENDED_TASKS: usize = 1000;
/// How long an ended task is kept.
pub const ENDED_TASK_KEPT: Duration = Duration::from_secs(24 * 3600);
/// Task ids reserved on disk at a time.
const ID_BLOCK: u64 = 1000;
/// How long a console that restarted follows a task it finds unended, unless the task says.
pub const FOLLOW_AFTER_RESTART: Duration = Duration::from_secs(120);

/// A task as stored: the task and how long a restarted console follows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task as the API shows it.
    #[serde(flatten)]
    pub task: Task,
    /// Seconds a console that restarted while the task ran follows it before it ends it
    /// `failed`.
    pub follow_s: u64,
    /// How many VMs a create of many (`vm_create_many`) makes: a restarted console checks
    /// each of `{target}-1` … `{target}-{count}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// What cancels a task's operation (it asks; the operation ends the task).
pub type CancelHook = Arc<dyn Fn() + Send + Sync>;

struct Entry {
    record: TaskRecord,
    published: bool,
    cancel: Option<CancelHook>,
    cancel_asked: Option<Actor>,
    /// Wakes those waiting for this task's end ([`TaskBoard::wait`]): when it ends, and when
    /// it is no longer kept.
    ended: Arc<Notify>,
}

struct Board {
    next: u64,
    /// The ids below it are reserved on disk ([`keys::TASK_NEXT`]): a console that restarts
    /// numbers on from it, whatever records its last moments did not get to the disk.
    reserved: u64,
    tasks: BTreeMap<u64, Entry>,
    /// The published tasks that have ended, by id, with when they ended (what [`prune`] picks
    /// from).
    ended: BTreeMap<u64, u64>,
    /// The same, by when they ended.
    by_end: BTreeSet<(u64, u64)>,
}

impl Board {
    /// Published task `id` ended at `ended_at` (again, when its end is set once more).
    fn index_end(&mut self, id: u64, ended_at: u64) {
        if let Some(before) = self.ended.insert(id, ended_at) {
            self.by_end.remove(&(before, id));
        }
        self.by_end.insert((ended_at, id));
    }
}

/// Why a task cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRefusal {
    /// No task has that id (or it is not kept any more).
    Unknown,
    /// The task has ended.
    Ended(TaskState),
    /// Its operation cannot be cancelled (now).
    NotCancellable(TaskKind),
}

/// Every task kept, in memory and in the store.
pub struct TaskBoard {
    store: Arc<dyn Store>,
    board: Mutex<Board>,
    changes: broadcast::Sender<Task>,
    metrics: Metrics,
}

/// The running task's side: what [`scope`] makes reachable to its operation.
#[derive(Clone)]
pub struct TaskHandle {
    id: u64,
    board: Arc<TaskBoard>,
    accepted: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

tokio::task_local! {
    static TASK: TaskHandle;
}

/// Runs `work` as the operation of the task `handle` is for.
pub async fn scope<F: Future>(handle: TaskHandle, work: F) -> F::Output {
    TASK.scope(handle, work).await
}

/// The running task's id, when the code runs within one.
pub fn current() -> Option<u64> {
    TASK.try_with(|t| t.id).ok()
}

/// The operation has passed its checks: the request is answered with its task now.
pub fn accepted() {
    let _ = TASK.try_with(|t| {
        if let Some(tx) = lock(&t.accepted).take() {
            let _ = tx.send(());
        }
    });
}

/// What the operation does now, in words (shown as the task's `message`).
pub fn say(message: impl Into<String>) {
    let message = message.into();
    let _ = TASK.try_with(|t| t.board.update(t.id, |r| r.task.message = Some(message)));
}

/// How far the operation is, 0–100.
pub fn progress(percent: u8) {
    let _ = TASK.try_with(|t| {
        t.board
            .update(t.id, |r| r.task.progress = Some(percent.min(100)))
    });
}

/// From now on the task may be cancelled: `hook` asks its operation to stop. `None`: no longer.
pub fn on_cancel(hook: Option<CancelHook>) {
    let _ = TASK.try_with(|t| {
        let mut b = lock(&t.board.board);
        if let Some(e) = b.tasks.get_mut(&t.id) {
            e.record.task.cancellable = hook.is_some();
            e.cancel = hook;
            if e.published {
                // Sent under the lock: watchers get a task's changes in the order they were made.
                let _ = t.board.changes.send(e.record.task.clone());
            }
        }
    });
}

/// Within a task not yet published: the write that publishes it (its record as it is now), for
/// the operation to put in the transaction of its own record; [`published`] once that
/// transaction is on disk. `None` outside of a task, or when it is published already.
pub fn publishing() -> Option<Op> {
    TASK.try_with(|t| t.board.publishing(t.id)).ok().flatten()
}

/// The running task creates `n` VMs (`vm_create_many`): kept in its record for a console
/// that restarts while it runs.
pub fn creates(n: u32) {
    let _ = TASK.try_with(|t| t.board.update(t.id, |r| r.count = Some(n)));
}

/// The running task's record, written with [`publishing`] but not published, goes again (its
/// operation was refused after that write): the store forgets it, and the request's refusal
/// leaves no task. Nothing happens to a task that was published meanwhile.
pub fn unwrite() {
    let _ = TASK.try_with(|t| t.board.unwrite(t.id));
}

/// The write [`publishing`] gave is on disk: the running task is published (listed, sent to
/// the watchers) without another write.
pub fn published() {
    let _ = TASK.try_with(|t| t.board.published(t.id));
}

/// The running task's operation was cancelled other than through the task (a migration's own
/// cancel): the task ends `cancelled`, not `failed`.
pub fn mark_cancelled() {
    let _ = TASK.try_with(|t| t.board.mark_cancelled(t.id));
}

impl TaskHandle {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl TaskBoard {
    /// Loads the stored tasks; returns the board and the tasks that had not ended (the console
    /// stopped while they ran). Each task's end counts in `metrics`.
    pub fn load(
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<(Self, Vec<TaskRecord>), RecordError> {
        let mut tasks = BTreeMap::new();
        let mut ended = BTreeMap::new();
        let mut unended = Vec::new();
        for (_, rec) in keys::range::<TaskRecord>(store.as_ref(), keys::TASKS)? {
            let record = rec.value;
            if record.task.state.is_final() {
                ended.insert(record.task.id, record.task.ended_at.unwrap_or(0));
            } else {
                unended.push(record.clone());
            }
            tasks.insert(
                record.task.id,
                Entry {
                    record,
                    published: true,
                    cancel: None,
                    cancel_asked: None,
                    ended: Arc::default(),
                },
            );
        }
        let reserved = keys::get::<u64>(store.as_ref(), keys::TASK_NEXT)?.map_or(1, |v| v.value);
        let next = tasks
            .keys()
            .next_back()
            .map_or(1, |id| id + 1)
            .max(reserved);
        let (changes, _) = broadcast::channel(1024);
        let by_end = ended.iter().map(|(id, at)| (*at, *id)).collect();
        let board = Board {
            next,
            reserved: next,
            tasks,
            ended,
            by_end,
        };
        // What ended longer ago than the console keeps tasks goes now.
        let pruned = prune(&board);
        let board = TaskBoard {
            store,
            board: Mutex::new(board),
            changes,
            metrics,
        };
        if !pruned.is_empty() {
            let ops = pruned
                .iter()
                .map(|id| Op::Delete {
                    key: keys::task_key(*id),
                })
                .collect();
            settle(board.write(ops)?, 0);
            let mut b = lock(&board.board);
            for id in pruned {
                forget(&mut b, id);
            }
        }
        Ok((board, unended))
    }

    /// Begins a task in memory (not listed, not written: see [`Self::publish`]); returns its
    /// handle and what fires when its operation calls [`accepted`].
    pub fn begin(
        self: &Arc<Self>,
        kind: TaskKind,
        target: String,
        actor: Actor,
        follow_s: u64,
    ) -> Result<(TaskHandle, oneshot::Receiver<()>), RecordError> {
        let (tx, rx) = oneshot::channel();
        let mut b = lock(&self.board);
        if b.next >= b.reserved {
            // One disk sync per thousand tasks, so that no id is given twice.
            let reserved = b.next + ID_BLOCK;
            keys::put(self.store.as_ref(), keys::TASK_NEXT, &reserved)?;
            b.reserved = reserved;
        }
        let id = b.next;
        b.next += 1;
        let task = Task {
            id,
            kind,
            target,
            state: TaskState::Running,
            progress: None,
            message: None,
            cancellable: false,
            created_at: now_s(),
            ended_at: None,
            actor,
            result: None,
            error: None,
        };
        b.tasks.insert(
            id,
            Entry {
                record: TaskRecord {
                    task,
                    follow_s,
                    count: None,
                },
                published: false,
                cancel: None,
                cancel_asked: None,
                ended: Arc::default(),
            },
        );
        let handle = TaskHandle {
            id,
            board: self.clone(),
            accepted: Arc::new(Mutex::new(Some(tx))),
        };
        Ok((handle, rx))
    }

    /// Publishes a task: written (as it is now, ended or not), listed, sent to the watchers.
    pub fn publish(&self, id: u64) -> Result<Task, RecordError> {
        let mut b = lock(&self.board);
        let Some(e) = b.tasks.get_mut(&id) else {
            return Err(RecordError::TaskGone(id));
        };
        if e.published {
            // Written already (with its operation's record, or when its request was answered);
            // its end is written by `finish`.
            return Ok(e.record.task.clone());
        }
        let record = e.record.clone();
        let ended = record.task.state.is_final();
        // A task that ended unpublished is counted now (finish counts the published ones).
        let ended_unpublished = ended && !e.published;
        let mut ops = vec![Op::Put {
            key: keys::task_key(id),
            value: keys::encode(&record)?,
            lease: 0,
        }];
        let pruned = if ended { prune(&b) } else { vec![] };
        ops.extend(pruned.iter().map(|old| Op::Delete {
            key: keys::task_key(*old),
        }));
        let pending = self.write(ops)?;
        if let Some(e) = b.tasks.get_mut(&id) {
            e.published = true;
        }
        if ended {
            b.index_end(id, record.task.ended_at.unwrap_or(0));
        }
        if ended_unpublished {
            self.metrics.task_ended(record.task.kind, record.task.state);
        }
        for old in pruned {
            forget(&mut b, old);
        }
        let _ = self.changes.send(record.task.clone());
        drop(b);
        settle(pending, id);
        Ok(record.task)
    }

    /// Forgets a task that was never published (its request was refused by its checks).
    pub fn discard(&self, id: u64) {
        let mut b = lock(&self.board);
        if b.tasks.get(&id).is_some_and(|e| !e.published) {
            b.tasks.remove(&id);
        }
    }

    /// Ends a task: `Ok` with the operation's answer, `Err` with the problem it failed with
    /// (cancelled when someone asked to cancel it). Written when published; a write that
    /// fails is logged (the task stays ended in memory).
    pub fn finish(&self, id: u64, outcome: Result<Option<serde_json::Value>, Problem>) {
        let mut b = lock(&self.board);
        let Some(e) = b.tasks.get_mut(&id) else {
            return;
        };
        // Those waiting for its end look again once the board is unlocked (they read it
        // under the lock).
        e.ended.notify_waiters();
        let t = &mut e.record.task;
        let ends_now = !t.state.is_final();
        t.ended_at = Some(now_s());
        t.cancellable = false;
        e.cancel = None;
        match outcome {
            Ok(result) => {
                t.state = TaskState::Succeeded;
                t.result = result;
                t.progress = Some(100);
            }
            Err(problem) => {
                t.state = if e.cancel_asked.is_some() {
                    TaskState::Cancelled
                } else {
                    TaskState::Failed
                };
                t.message = Some(problem.detail.clone());
                t.error = Some(problem);
            }
        }
        if !e.published {
            // Counted once published, if it ever is (a refusal before that is no task).
            return;
        }
        if ends_now {
            self.metrics.task_ended(t.kind, t.state);
        }
        let record = e.record.clone();
        b.index_end(id, record.task.ended_at.unwrap_or(0));
        let pruned = prune(&b);
        let encoded = keys::encode(&record);
        let mut ops = Vec::new();
        match encoded {
            Ok(value) => ops.push(Op::Put {
                key: keys::task_key(id),
                value,
                lease: 0,
            }),
            Err(e) => tracing::warn!(
                task = id,
                "task not written: {}",
                vinfra_types::error::Chain(&e)
            ),
        }
        ops.extend(pruned.iter().map(|old| Op::Delete {
            key: keys::task_key(*old),
        }));
        let pending = match self.write(ops) {
            Ok(pending) => {
                for old in pruned {
                    forget(&mut b, old);
                }
                Some(pending)
            }
            Err(e) => {
                tracing::warn!(
                    task = id,
                    "task end not written: {}",
                    vinfra_types::error::Chain(&e)
                );
                None
            }
        };
        let _ = self.changes.send(record.task);
        drop(b);
        if let Some(pending) = pending {
            settle(pending, id);
        }
    }

    /// The write that publishes task `id` (its record as it is now), for its operation's own
    /// transaction ([`publishing`]); `None` when it is published already or gone (or its
    /// record cannot be encoded: [`Self::publish`] then writes it as usual).
    fn publishing(&self, id: u64) -> Option<Op> {
        let b = lock(&self.board);
        let e = b.tasks.get(&id).filter(|e| !e.published)?;
        let value = keys::encode(&e.record).ok()?;
        Some(Op::Put {
            key: keys::task_key(id),
            value,
            lease: 0,
        })
    }

    /// Task `id`'s record, written by its operation but not published, is deleted (see
    /// [`unwrite`]); a failed delete is logged.
    fn unwrite(&self, id: u64) {
        let b = lock(&self.board);
        if b.tasks.get(&id).is_none_or(|e| e.published) {
            return;
        }
        let deleted = self
            .write(vec![Op::Delete {
                key: keys::task_key(id),
            }])
            .and_then(|p| p.wait().map_err(Into::into));
        if let Err(e) = deleted {
            tracing::warn!(
                task = id,
                "a refused task's record not deleted: {}",
                vinfra_types::error::Chain(&e)
            );
        }
    }

    /// Task `id`, not ended, was written with its operation's transaction ([`published`]):
    /// listed and sent to the watchers.
    fn published(&self, id: u64) {
        let mut b = lock(&self.board);
        let Some(e) = b.tasks.get_mut(&id) else {
            return;
        };
        if e.published || e.record.task.state.is_final() {
            return;
        }
        e.published = true;
        // Sent under the lock: watchers get a task's changes in the order they were made.
        let _ = self.changes.send(e.record.task.clone());
    }

    /// Task `id`'s operation was cancelled other than through the task (a migration's own
    /// cancel): it ends `cancelled`, not `failed`.
    pub fn mark_cancelled(&self, id: u64) {
        if let Some(e) = lock(&self.board).tasks.get_mut(&id) {
            e.cancel_asked
                .get_or_insert_with(|| Actor::controller("migration"));
        }
    }

    /// Changes a task in memory (sent to the watchers when published).
    fn update(&self, id: u64, f: impl FnOnce(&mut TaskRecord)) {
        let mut b = lock(&self.board);
        let Some(e) = b.tasks.get_mut(&id) else {
            return;
        };
        if e.record.task.state.is_final() {
            return;
        }
        let before = e.record.task.clone();
        f(&mut e.record);
        // Only a change is sent (a migration's progress is set every 100 ms).
        if e.published && e.record.task != before {
            let _ = self.changes.send(e.record.task.clone());
        }
    }

    /// One published task.
    pub fn get(&self, id: u64) -> Option<Task> {
        lock(&self.board)
            .tasks
            .get(&id)
            .filter(|e| e.published)
            .map(|e| e.record.task.clone())
    }

    /// The published tasks `filter` lets through, oldest first.
    pub fn list(&self, filter: &TaskFilter) -> Vec<Task> {
        lock(&self.board)
            .tasks
            .values()
            .filter(|e| e.published && filter.lets(&e.record.task))
            .map(|e| e.record.task.clone())
            .collect()
    }

    /// The published tasks under way, by kind (in [`TaskKind::ALL`]'s order, zeros too).
    pub fn running_by_kind(&self) -> Vec<(TaskKind, u64)> {
        let mut counts: Vec<(TaskKind, u64)> = TaskKind::ALL.iter().map(|k| (*k, 0)).collect();
        let b = lock(&self.board);
        for e in b.tasks.values() {
            let task = &e.record.task;
            if e.published && !task.state.is_final() {
                if let Some(c) = counts.iter_mut().find(|(k, _)| *k == task.kind) {
                    c.1 += 1;
                }
            }
        }
        counts
    }

    /// Every change of a published task from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Task> {
        self.changes.subscribe()
    }

    /// The task once it has ended, or as it is after `wait`. Woken by this task's end alone
    /// (not by every change of every task: many clients follow their tasks at once).
    pub async fn wait(&self, id: u64, wait: Duration) -> Option<Task> {
        let deadline = tokio::time::Instant::now() + wait;
        let ended = lock(&self.board)
            .tasks
            .get(&id)
            .filter(|e| e.published)
            .map(|e| e.ended.clone())?;
        loop {
            // Registered before the task is read: an end in between still wakes it.
            let woken = ended.notified();
            let task = self.get(id)?;
            if task.state.is_final() {
                return Some(task);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return self.get(id);
            }
        }
    }

    /// Asks a task's operation to stop (its hook); the operation ends the task (`cancelled`
    /// unless it got to its end first). Returns the task as it is now.
    pub fn cancel(&self, id: u64, by: Actor) -> Result<Task, CancelRefusal> {
        let mut b = lock(&self.board);
        let Some(e) = b.tasks.get_mut(&id).filter(|e| e.published) else {
            return Err(CancelRefusal::Unknown);
        };
        let state = e.record.task.state;
        if state.is_final() {
            return Err(CancelRefusal::Ended(state));
        }
        let Some(hook) = e.cancel.clone() else {
            return Err(CancelRefusal::NotCancellable(e.record.task.kind));
        };
        e.cancel_asked = Some(by.clone());
        e.record.task.message = Some(format!("cancel asked by {by}"));
        let task = e.record.task.clone();
        let _ = self.changes.send(task.clone());
        drop(b);
        hook();
        Ok(task)
    }

    /// Writes `ops` in one transaction, in the store at once, on disk with the next sync
    /// ([`settle`]).
    fn write(&self, ops: Vec<Op>) -> Result<PendingWrite, RecordError> {
        let (_, pending) = self.store.txn_pending(Txn {
            compare: vec![],
            success: ops,
            failure: vec![],
        })?;
        Ok(pending)
    }
}

/// Lets a task's write reach the disk without the request waiting for it: the store's
/// committer syncs it and says when (a failure is logged). A request is answered with its task
/// once the record is in the store; the disk sync that follows (a few milliseconds, shared
/// with every write made meanwhile) is what a console that dies in between would miss.
fn settle(pending: PendingWrite, id: u64) {
    pending.then(move |durable| {
        if let Err(e) = durable {
            tracing::warn!(
                task = id,
                "task record not on disk: {}",
                vinfra_types::error::Chain(&e)
            );
        }
    });
}

/// Removes task `id` from the board, waking those waiting for it (it is gone).
fn forget(b: &mut Board, id: u64) {
    if let Some(e) = b.tasks.remove(&id) {
        e.ended.notify_waiters();
    }
    if let Some(at) = b.ended.remove(&id) {
        b.by_end.remove(&(at, id));
    }
}

/// The ended tasks to delete: beyond [`MAX_ENDED_TASKS`] (oldest first) or ended longer ago
/// than [`ENDED_TASK_KEPT`]; never the newest task, so that a restarted console numbers on
/// from it. Read from the board's index of ended tasks: the oldest ids, and those that ended
/// before the cutoff.
fn prune(b: &Board) -> Vec<u64> {
    let newest = b
        .tasks
        .iter()
        .rev()
        .find(|(_, e)| e.published)
        .map(|(id, _)| *id);
    let cutoff = now_s().saturating_sub(ENDED_TASK_KEPT.as_secs());
    let excess = b.ended.len().saturating_sub(MAX_ENDED_TASKS);
    let old = b.ended.keys().take(excess).copied();
    let expired = b.by_end.range(..(cutoff, 0)).map(|(_, id)| *id);
    let picked: BTreeSet<u64> = old
        .chain(expired)
        .filter(|id| Some(*id) != newest)
        .collect();
    picked.into_iter().collect()
}

#[cfg(test)]
mod tests;
