//! A task's end as the answer of the request that started it (docs/design.md "Tasks"), and
//! the loop that follows a task to its end.
//!
//! A task that succeeded answers its `result` (the VM, the migration's last progress, the
//! fence's outcome); one that failed or was cancelled is the error its `error` problem stands
//! for, [`RestError::Problem`], exactly as the refusal of the request would have been, so a
//! caller that matches on the status or the problem's kind sees no difference. [`follow`] asks
//! for the task with long polls (`GET /tasks/{id}?wait_s=N`) until it has ended.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use vinfra_types::task::{Task, TaskState};

use crate::error::RestError;

/// Longest wait of one long poll of a task: well under the client's request timeout (120 s),
/// within the API's bound (`vinfra_types::task::TASK_WAIT_MAX_S`).
pub const TASK_POLL_MAX: Duration = Duration::from_secs(30);
/// Longest `Prefer: wait` a request that starts a task asks for ([`crate::Client::create_vm`]):
/// within the 5 s a stopping console gives the requests in flight, so that a console restarting
/// still answers it with the task (a request cut off would leave the caller without one), and
/// long polls, asked again when unanswered, follow a task that takes longer.
pub const PREFER_WAIT_MAX: Duration = Duration::from_secs(4);
/// Polls in a row that may go unanswered (no answer, or 502, 503, 504: a console restarting)
/// before following a task fails.
const LOST_POLLS: u32 = 10;
/// Pause after a poll that went unanswered.
const LOST_POLL_PAUSE: Duration = Duration::from_secs(1);

/// `Ok` when `task` succeeded; the error it ended with when it failed or was cancelled (the
/// refusal its problem stands for); [`RestError::TaskNotEnded`] while it runs.
pub fn task_succeeded(task: &Task) -> Result<(), RestError> {
    match task.state {
        TaskState::Succeeded => Ok(()),
        TaskState::Failed | TaskState::Cancelled => Err(match &task.error {
            Some(problem) => RestError::Problem {
                status: problem.status,
                problem: problem.clone(),
            },
            None => RestError::TaskEnded(Box::new(task.clone())),
        }),
        TaskState::Queued | TaskState::Running => Err(RestError::TaskNotEnded {
            task: Box::new(task.clone()),
            waited_s: 0,
        }),
    }
}

/// The `result` of a task that succeeded, decoded as `T`; else as [`task_succeeded`].
pub fn task_result<T: DeserializeOwned>(task: &Task) -> Result<T, RestError> {
    task_succeeded(task)?;
    let value = task.result.clone().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(value).map_err(|source| RestError::TaskResult {
        task: Box::new(task.clone()),
        source,
    })
}

/// Whether the migration record `p` is the one of the migration `task` started (or followed),
/// not a previous migration's: it started once the task had been created. Both times are the
/// console's, in whole seconds, so a previous migration that started and ended within the
/// second the task was created counts as current (it has ended: the caller then follows the
/// task to its end, which answers right).
pub fn migration_is_current(p: &vinfra_types::MigrationProgress, task: &Task) -> bool {
    p.started_at >= task.created_at
}

/// Follows a task until it has ended and returns it as it ended: from `start` (asked first
/// when `None`), `ask(wait_s)` is one long poll (answered when the task has ended or after
/// `wait_s` s), each poll waiting `poll` at most (1 s to [`TASK_POLL_MAX`]); `on_change` is
/// called with the task each time it comes back different. Past `timeout` it is
/// [`RestError::TaskNotEnded`]; a poll that goes unanswered is asked again, a few times.
pub fn follow(
    start: Option<Task>,
    timeout: Option<Duration>,
    poll: Duration,
    mut ask: impl FnMut(u64) -> Result<Task, RestError>,
    mut on_change: impl FnMut(&Task),
) -> Result<Task, RestError> {
    let began = Instant::now();
    let mut task = start;
    let mut lost = 0;
    loop {
        let left = timeout.map(|t| t.saturating_sub(began.elapsed()));
        if let Some(t) = task.take() {
            if t.state.is_final() {
                return Ok(t);
            }
            if left == Some(Duration::ZERO) {
                return Err(RestError::TaskNotEnded {
                    task: Box::new(t),
                    waited_s: began.elapsed().as_secs(),
                });
            }
            task = Some(t);
        }
        match ask(wait_s(poll, left)) {
            Ok(next) => {
                lost = 0;
                if task.as_ref() != Some(&next) {
                    on_change(&next);
                }
                task = Some(next);
            }
            Err(e) if unanswered(&e) && lost < LOST_POLLS => {
                lost += 1;
                std::thread::sleep(LOST_POLL_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `wait_s` of the next poll: `poll` (1 s to [`TASK_POLL_MAX`]), no longer than what is
/// `left` of the timeout (rounded up: a poll never returns at once unless nothing is left).
fn wait_s(poll: Duration, left: Option<Duration>) -> u64 {
    let mut wait = poll.clamp(Duration::from_secs(1), TASK_POLL_MAX);
    if let Some(left) = left {
        wait = wait.min(left);
    }
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Whether a poll went unanswered rather than being refused: worth asking again.
fn unanswered(e: &RestError) -> bool {
    matches!(e, RestError::Transport { .. }) || matches!(e.status(), Some(502..=504))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use reqwest::StatusCode;
    use vinfra_types::auth::Actor;
    use vinfra_types::task::TaskKind;
    use vinfra_types::VmSummary;

    use super::*;
    use crate::http::refusal;

    fn task(state: TaskState) -> Task {
        Task {
            id: 42,
            kind: TaskKind::VmStop,
            target: "web1".into(),
            state,
            progress: None,
            message: None,
            cancellable: false,
            created_at: 1_700_000_000,
            ended_at: state.is_final().then_some(1_700_000_005),
            actor: Actor::token("ops"),
            result: None,
            error: None,
        }
    }

    const AGENT_ERROR: &str = r#"{"type":"/problems/agent-error","title":"Agent error","status":502,"detail":"host h1: the guest did not power off"}"#;

    #[test]
    fn a_failed_task_is_the_refusal_its_problem_stands_for() {
        let direct = refusal(StatusCode::BAD_GATEWAY, AGENT_ERROR);
        let mut t = task(TaskState::Failed);
        t.error = Some(serde_json::from_str(AGENT_ERROR).unwrap());
        let ended = task_result::<VmSummary>(&t).unwrap_err();
        assert!(matches!(ended, RestError::Problem { status: 502, .. }));
        assert_eq!(ended.to_string(), direct.to_string());
        assert_eq!(ended.status(), direct.status());
        assert_eq!(ended.problem(), direct.problem());
        assert_eq!(ended.is_client_error(), direct.is_client_error());

        let conflict = r#"{"type":"/problems/conflict","title":"Conflict","status":409,"detail":"migration of web1 cancelled by token:ops"}"#;
        let mut t = task(TaskState::Cancelled);
        t.error = Some(serde_json::from_str(conflict).unwrap());
        let e = task_succeeded(&t).unwrap_err();
        assert_eq!(e.status(), Some(409));
        assert!(e.is_client_error());
        assert_eq!(
            e.problem().map(|p| p.kind.as_str()),
            Some("/problems/conflict")
        );

        // Without a problem: still an error, naming the task.
        let mut t = task(TaskState::Failed);
        t.message = Some("the console restarted meanwhile".into());
        let e = task_succeeded(&t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task 42 (vm_stop web1) failed: the console restarted meanwhile"
        );
        assert!(!e.is_client_error());
    }

    #[test]
    fn a_succeeded_task_answers_its_result() {
        let t = task(TaskState::Succeeded);
        assert!(task_succeeded(&t).is_ok());
        task_result::<()>(&t).expect("a delete has no result");
        let e = task_result::<VmSummary>(&t).unwrap_err();
        assert!(matches!(e, RestError::TaskResult { .. }), "{e}");
        assert_eq!(e.to_string(), "unexpected result of task 42 (vm_stop web1)");
        let mut t = task(TaskState::Succeeded);
        t.result = Some(
            serde_json::json!({"host": "h1", "fenced": true, "exit_code": 0,
            "duration_ms": 12, "output_tail": ""}),
        );
        let o: vinfra_types::ha::FenceOutcome = task_result(&t).unwrap();
        assert!(o.fenced);
        let e = task_succeeded(&task(TaskState::Running)).unwrap_err();
        assert!(matches!(e, RestError::TaskNotEnded { .. }));
    }

    #[test]
    fn polls_wait_what_is_left_rounded_up() {
        let s = Duration::from_secs;
        assert_eq!(wait_s(s(30), None), 30);
        assert_eq!(wait_s(s(300), None), 30);
        assert_eq!(wait_s(Duration::ZERO, None), 1);
        assert_eq!(wait_s(s(30), Some(s(7))), 7);
        assert_eq!(wait_s(s(30), Some(Duration::from_millis(200))), 1);
        assert_eq!(wait_s(s(1), Some(s(7))), 1);
        assert_eq!(wait_s(s(30), Some(Duration::ZERO)), 0);
    }

    #[test]
    fn following_asks_until_the_end_and_tells_each_change() {
        let mut states = vec![
            task(TaskState::Succeeded),
            task(TaskState::Running),
            task(TaskState::Running),
            task(TaskState::Queued),
        ];
        let asked = RefCell::new(Vec::new());
        let mut seen = Vec::new();
        let end = follow(
            None,
            None,
            TASK_POLL_MAX,
            |w| {
                asked.borrow_mut().push(w);
                Ok(states.pop().unwrap())
            },
            |t| seen.push(t.state),
        )
        .unwrap();
        assert_eq!(end.state, TaskState::Succeeded);
        assert_eq!(*asked.borrow(), [30, 30, 30, 30]);
        assert_eq!(
            seen,
            [TaskState::Queued, TaskState::Running, TaskState::Succeeded]
        );

        // An ended task is not asked for; a failed one comes back as it is.
        let end = follow(
            Some(task(TaskState::Failed)),
            None,
            TASK_POLL_MAX,
            |_| panic!("asked"),
            |_| panic!("changed"),
        )
        .unwrap();
        assert_eq!(end.state, TaskState::Failed);
    }

    #[test]
    fn following_stops_at_the_timeout_and_outlasts_lost_polls() {
        let mut asked = Vec::new();
        let e = follow(
            Some(task(TaskState::Running)),
            Some(Duration::ZERO),
            TASK_POLL_MAX,
            |w| {
                asked.push(w);
                Ok(task(TaskState::Running))
            },
            |_| {},
        )
        .unwrap_err();
        assert!(asked.is_empty());
        assert!(matches!(e, RestError::TaskNotEnded { .. }));
        assert_eq!(
            e.to_string(),
            "task 42 (vm_stop web1) has not ended after 0 s: running"
        );
        // Nothing seen yet: asked once, at once.
        let e = follow(
            None,
            Some(Duration::ZERO),
            TASK_POLL_MAX,
            |w| {
                asked.push(w);
                Ok(task(TaskState::Running))
            },
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, RestError::TaskNotEnded { .. }));
        assert_eq!(asked, [0]);

        // A poll without an answer is asked again; a refusal ends the following.
        let mut answers = vec![
            Ok(task(TaskState::Succeeded)),
            Err(refusal(StatusCode::SERVICE_UNAVAILABLE, "")),
        ];
        let end = follow(
            Some(task(TaskState::Running)),
            None,
            TASK_POLL_MAX,
            |_| answers.pop().unwrap(),
            |_| {},
        )
        .unwrap();
        assert_eq!(end.state, TaskState::Succeeded);
        let e = follow(
            Some(task(TaskState::Running)),
            None,
            TASK_POLL_MAX,
            |_| Err(refusal(StatusCode::NOT_FOUND, "")),
            |_| {},
        )
        .unwrap_err();
        assert_eq!(e.status(), Some(404));
    }
}
