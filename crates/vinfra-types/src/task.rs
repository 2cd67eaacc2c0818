//! Tasks: how the API answers an operation that may take longer than a second (start, stop,
//! reboot, delete, create, live migration, a recommendation applied, a fence). The request is
//! checked at once (a refusal is its problem+json answer, and nothing is recorded); what was
//! accepted answers `202 Accepted` with a [`Task`] and its `Location`
//! (`/api/v1/tasks/{id}`), which is then followed to its end: `GET /api/v1/tasks/{id}?wait_s=N`
//! answers as soon as the task has ended (or after `N` s), `GET /api/v1/tasks/stream` sends
//! every change as a server-sent event, `DELETE /api/v1/tasks/{id}` cancels where the operation
//! allows it ([`Task::cancellable`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::Problem;
use crate::auth::Actor;

/// Longest `wait_s` of `GET /api/v1/tasks/{id}`.
pub const TASK_WAIT_MAX_S: u64 = 60;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// `POST /api/v1/vms`: a VM created (and started unless asked otherwise).
    VmCreate,
    /// `POST /api/v1/vms` with `count`: VMs `{target}-1` … `{target}-{count}` created (and
    /// started unless asked otherwise); its result: [`crate::api::CreatedVms`].
    VmCreateMany,
    /// `POST /api/v1/vms/{name}/start`.
    VmStart,
    /// `POST /api/v1/vms/{name}/stop`.
    VmStop,
    /// `POST /api/v1/vms/{name}/reboot`.
    VmReboot,
    /// `DELETE /api/v1/vms/{name}`.
    VmDelete,
    /// `POST /api/v1/vms/{name}/migrate`: a live migration, to its end.
    VmMigrate,
    /// `POST /api/v1/drs/recommendations/{id}/apply`: the migration it proposes, to its end.
    RecommendationApply,
    /// `POST /api/v1/hosts/{name}/fence`: the host's fence command.
    HostFence,
    /// `PATCH /api/v1/hosts/{name}` putting the host in maintenance: until no running VM is
    /// left on it.
    HostEvacuate,
}

impl TaskKind {
    /// Its name in the API (`vm_stop`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::VmCreate => "vm_create",
            TaskKind::VmCreateMany => "vm_create_many",
            TaskKind::VmStart => "vm_start",
            TaskKind::VmStop => "vm_stop",
            TaskKind::VmReboot => "vm_reboot",
            TaskKind::VmDelete => "vm_delete",
            TaskKind::VmMigrate => "vm_migrate",
            TaskKind::RecommendationApply => "recommendation_apply",
            TaskKind::HostFence => "host_fence",
            TaskKind::HostEvacuate => "host_evacuate",
        }
    }

    /// Every kind, for the CLI's and the query's parsers.
    pub const ALL: [TaskKind; 10] = [
        TaskKind::VmCreate,
        TaskKind::VmCreateMany,
        TaskKind::VmStart,
        TaskKind::VmStop,
        TaskKind::VmReboot,
        TaskKind::VmDelete,
        TaskKind::VmMigrate,
        TaskKind::RecommendationApply,
        TaskKind::HostFence,
        TaskKind::HostEvacuate,
    ];

    /// The kind named `s` (`vm_stop`, …).
    pub fn parse(s: &str) -> Option<TaskKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Accepted, not begun (waiting for the object another operation holds).
    Queued,
    /// Under way.
    Running,
    /// Ended as asked: `result` holds the answer.
    Succeeded,
    /// Ended in failure: `error` says why.
    Failed,
    /// Ended because it was cancelled: `error` says by whom and where it stopped.
    Cancelled,
}

impl TaskState {
    /// True once the task has ended, one way or another.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// Its name in the API (`running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// The state named `s` (`running`, …).
    pub fn parse(s: &str) -> Option<TaskState> {
        [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Cancelled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One long operation, from its acceptance to its end (`GET /api/v1/tasks/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// Its number: each task's is higher than the one before, and never used again.
    pub id: u64,
    /// What it does.
    pub kind: TaskKind,
    /// The object it acts on: the VM's or host's name, the recommendation's number.
    pub target: String,
    /// Where it is.
    pub state: TaskState,
    /// How far it is, 0–100, when the operation can tell (a migration's bytes sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// What it does now, or (once ended) what happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether `DELETE /api/v1/tasks/{id}` may cancel it now.
    pub cancellable: bool,
    /// When it was accepted (seconds since the Unix epoch).
    pub created_at: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// Who asked.
    pub actor: Actor,
    /// The operation's answer once it succeeded: the VM (create, start, stop, reboot), the
    /// migration's last progress (migrate, recommendation), the fence's outcome; absent for a
    /// delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why it failed or what cancelled it, as the problem+json the request would have been
    /// answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// What `GET /api/v1/tasks` lists: every task kept, or those in a state, of a kind, acting on
/// an object (all that are given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks of this kind.
    pub kind: Option<TaskKind>,
    /// Only tasks acting on this object (a VM's or host's name).
    pub target: Option<String>,
}

impl TaskFilter {
    /// Whether `task` passes.
    pub fn lets(&self, task: &Task) -> bool {
        self.state.is_none_or(|s| s == task.state)
            && self.kind.is_none_or(|k| k == task.kind)
            && self.target.as_deref().is_none_or(|t| t == task.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_state_names_are_the_serialized_ones_and_parse_back() {
        for k in TaskKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(TaskKind::parse(k.as_str()), Some(k));
        }
        for s in [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Cancelled,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskKind::parse("vm_explode"), None);
        assert_eq!(TaskState::parse("done"), None);
    }
}
