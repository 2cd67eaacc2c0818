//! Following what a command asked the console to do: a task to its end (docs/design.md
//! "Tasks"), with a progress line on stderr while it runs when stderr is a terminal; the line
//! `--no-wait` prints instead; a live migration with its progress bar; how a migration's
//! cancel ended.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::de::DeserializeOwned;
use vinfra_client::{task_result, Client, PREFER_WAIT_MAX, TASK_POLL_MAX};
use vinfra_types::task::Task;
use vinfra_types::{MigrationPhase, MigrationProgress};

use crate::output::{self, Output};
use crate::rest::{show, RestCommandError};

/// A task by its number and what it does: `task 42 (vm_stop web1)`.
pub fn task_name(task: &Task) -> String {
    format!("task {} ({} {})", task.id, task.kind, task.target)
}

/// A running task in one line: `task 42 vm_stop web1: running — waiting up to 30 s for the
/// guest to shut down (40%)`, the message and the progress when known.
pub fn progress_line(task: &Task) -> String {
    let mut line = format!(
        "task {} {} {}: {}",
        task.id, task.kind, task.target, task.state
    );
    if let Some(m) = task.message.as_deref().filter(|m| !m.is_empty()) {
        line.push_str(" — ");
        line.push_str(m);
    }
    if let Some(p) = task.progress {
        line.push_str(&format!(" ({p}%)"));
    }
    output::terminal_safe(&line).into_owned()
}

/// What `--no-wait` prints: `task 42 (vm_stop web1) accepted` (with `, already succeeded`
/// and the like when it had ended by then), or the task's JSON.
pub fn accepted(out: Output, task: &Task) -> Result<(), RestCommandError> {
    show(out, task, |t| {
        let mut line = format!("{} accepted", task_name(t));
        if t.state.is_final() {
            line.push_str(&format!(", already {}", t.state));
        }
        line
    })
}

/// How long the request that starts a task may wait for its end (`Prefer: wait`): 1 s on a
/// terminal, whose progress line would otherwise stay unshown longer; elsewhere
/// [`PREFER_WAIT_MAX`] (a task that takes longer is followed with long polls, as before).
pub fn first_wait() -> Duration {
    if std::io::stderr().is_terminal() {
        Duration::from_secs(1)
    } else {
        PREFER_WAIT_MAX
    }
}

/// Follows `task` to its end (past `timeout`, an error) and returns it as it ended. On a
/// terminal, its progress line is shown on stderr and refreshed (a poll a second) until it
/// ends, then cleared; elsewhere it is followed with long polls and nothing is shown.
pub fn task(api: &Client, task: Task, timeout: Option<Duration>) -> Result<Task, RestCommandError> {
    if task.state.is_final() {
        return Ok(task);
    }
    let terminal = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if !terminal {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(progress_line(&task));
    if terminal {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    let poll = if terminal {
        Duration::from_secs(1)
    } else {
        TASK_POLL_MAX
    };
    let ended = api.follow_task(task, timeout, poll, |t| bar.set_message(progress_line(t)));
    bar.finish_and_clear();
    Ok(ended?)
}

/// Follows `task` to its end: its result as `T`, or the error it ended with (the refusal its
/// problem stands for: one line, the exit code of a refusal).
pub fn result<T: DeserializeOwned>(api: &Client, task: Task) -> Result<T, RestCommandError> {
    let ended = self::task(api, task, None)?;
    Ok(task_result(&ended)?)
}

/// Polls the migration of VM `name` every 200 ms from its progress `first`, drawing a progress
/// bar on a terminal, until it ends; returns its last progress.
pub fn migration(
    api: &Client,
    name: &str,
    first: MigrationProgress,
) -> Result<MigrationProgress, RestCommandError> {
    let bar =
        ProgressBar::with_draw_target(Some(first.total_bytes.max(1)), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!(
        "{} {} → {}",
        first.vm, first.source, first.destination
    ));
    let mut p = first;
    let mut failures = 0u32;
    loop {
        bar.set_length(p.total_bytes.max(1));
        bar.set_position(p.transferred_bytes.min(p.total_bytes.max(1)));
        bar.set_message(format!(
            "{}, {}, {} left, dirtying {} pages/s",
            output::snake(&p.phase),
            output::rate_bps(p.rate_bps),
            output::bytes(p.remaining_bytes),
            p.dirty_pages_rate
        ));
        if p.phase.is_final() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        match api.migration(name) {
            Ok(next) => {
                failures = 0;
                p = next;
            }
            // A lost poll or two (console busy) is not the migration failing.
            Err(e) if !e.is_client_error() && failures < 25 => failures += 1,
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        }
    }
    bar.finish_and_clear();
    Ok(p)
}

/// Prints how a migration ended (its total time and downtime once completed, or its JSON);
/// an end other than completed is an error.
pub fn migration_end(out: Output, last: MigrationProgress) -> Result<(), RestCommandError> {
    show(out, &last, |p| {
        if p.phase == MigrationPhase::Completed {
            output::migration_done(p)
        } else {
            String::new()
        }
    })?;
    match last.phase {
        MigrationPhase::Completed => Ok(()),
        phase => Err(RestCommandError::Migration {
            vm: last.vm,
            cancelled: phase == MigrationPhase::Cancelled,
            reason: last
                .error
                .unwrap_or_else(|| "the VM still runs on the source".into()),
        }),
    }
}

/// Prints how a cancelled migration ended (`migration of VM web1 cancelled: it stays on h1`,
/// or its JSON); a migration that switched over before the cancel took, or failed, is an
/// error.
pub fn cancel_end(out: Output, last: MigrationProgress) -> Result<(), RestCommandError> {
    show(out, &last, |p| {
        if p.phase == MigrationPhase::Cancelled {
            format!(
                "migration of VM {} cancelled: it stays on {}",
                p.vm, p.source
            )
        } else {
            String::new()
        }
    })?;
    match last.phase {
        MigrationPhase::Cancelled => Ok(()),
        MigrationPhase::Completed => Err(RestCommandError::CancelTooLate {
            vm: last.vm,
            host: last.destination,
        }),
        _ => Err(RestCommandError::Migration {
            vm: last.vm,
            cancelled: false,
            reason: last
                .error
                .unwrap_or_else(|| "the VM still runs on the source".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use vinfra_types::auth::Actor;
    use vinfra_types::task::{TaskKind, TaskState};

    use super::*;

    #[test]
    fn tasks_read_as_one_line() {
        let mut t = Task {
            id: 42,
            kind: TaskKind::VmStop,
            target: "web1".into(),
            state: TaskState::Running,
            progress: None,
            message: None,
            cancellable: false,
            created_at: 0,
            ended_at: None,
            actor: Actor::token("ops"),
            result: None,
            error: None,
        };
        assert_eq!(task_name(&t), "task 42 (vm_stop web1)");
        assert_eq!(progress_line(&t), "task 42 vm_stop web1: running");
        t.message = Some("waiting up to 30 s for the guest to shut down\u{1b}[2J".into());
        t.progress = Some(40);
        assert_eq!(
            progress_line(&t),
            "task 42 vm_stop web1: running — waiting up to 30 s for the guest to shut down?[2J \
             (40%)"
        );
    }
}
