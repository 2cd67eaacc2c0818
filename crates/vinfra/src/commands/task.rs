//! `vinfra task …`: the console's tasks (docs/design.md "Tasks"), what create, start, stop,
//! reboot, delete, migrate, a recommendation applied and a fence answer: list them, show one,
//! wait for one to end, cancel one.

use std::time::Duration;

use clap::Subcommand;
use vinfra_client::task_result;
use vinfra_types::api::CreatedVms;
use vinfra_types::ha::FenceOutcome;
use vinfra_types::task::{Task, TaskFilter, TaskKind, TaskState};
use vinfra_types::{MigrationPhase, MigrationProgress, VmSummary};

use crate::config::ConnectionOverrides;
use crate::follow::{self, task_name};
use crate::output::{self, pairs, render, table, timestamp, Output};
use crate::parse::{self, ParseError};
use crate::rest::{show, RestCommandError};

/// Longest `vinfra task wait --timeout`.
const WAIT_MAX: Duration = Duration::from_secs(24 * 3600);

/// `vinfra task …`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List the tasks the console keeps (those under way, and the last 1,000 that ended within
    /// 24 h), oldest first.
    List {
        /// Only the tasks in this state: queued, running, succeeded, failed or cancelled.
        #[arg(long, value_parser = parse_state)]
        state: Option<TaskState>,
        /// Only the tasks of this kind: vm_create, vm_create_many, vm_start, vm_stop, vm_reboot, vm_delete,
        /// vm_migrate, recommendation_apply, host_fence or host_evacuate.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<TaskKind>,
        /// Only the tasks acting on this object: a VM's or host's name, a recommendation's
        /// number.
        #[arg(long, value_parser = parse_target)]
        target: Option<String>,
    },
    /// Show a task: what it does, where it is, what it answered or why it failed.
    Show {
        /// The task's number.
        #[arg(value_parser = parse_id)]
        id: u64,
    },
    /// Wait for a task to end (progress on a terminal): success when it succeeded, else its
    /// error.
    Wait {
        /// The task's number.
        #[arg(value_parser = parse_id)]
        id: u64,
        /// Give up after this long (e.g. 30s, 10m; 0 looks once; at most 24h); without it,
        /// until the task ends.
        #[arg(long, value_parser = parse_timeout, allow_hyphen_values = true)]
        timeout: Option<Duration>,
    },
    /// Cancel a task, where its operation allows it (a migration before its switchover).
    Cancel {
        /// The task's number.
        #[arg(value_parser = parse_id)]
        id: u64,
    },
}

/// A task's number.
fn parse_id(v: &str) -> Result<u64, ParseError> {
    parse::bounded(v, "task id", 0, u64::MAX)
}

/// `--state`: a task state as the API names it.
fn parse_state(s: &str) -> Result<TaskState, String> {
    TaskState::parse(s.trim()).ok_or_else(|| {
        format!("expected queued, running, succeeded, failed or cancelled, got '{s}'")
    })
}

/// `--kind`: a task kind as the API names it.
fn parse_kind(s: &str) -> Result<TaskKind, String> {
    TaskKind::parse(s.trim()).ok_or_else(|| {
        let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("expected one of {}, got '{s}'", all.join(", "))
    })
}

/// `--target`: a name or a number, not empty.
fn parse_target(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.chars().any(char::is_control) {
        return Err(format!("'{s}' is not a VM's or host's name or a number"));
    }
    Ok(t.to_string())
}

/// `--timeout`: `30s`, `10m`, a plain number of seconds; 0 to 24 h.
fn parse_timeout(v: &str) -> Result<Duration, ParseError> {
    parse::duration_within("timeout", v, (Duration::ZERO, "0s"), (WAIT_MAX, "24h"))
}

/// Seconds since the epoch, now.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a task says it does or did: its message, else its error's detail.
fn message(t: &Task) -> Option<String> {
    t.message
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| t.error.as_ref().map(|p| p.detail.clone()))
}

/// `vinfra task list`: one task a row, `now` the time the ages are counted to.
pub fn tasks_text(tasks: &[Task], now: u64) -> String {
    if tasks.is_empty() {
        return "no tasks".into();
    }
    let mut t = table(&[
        "ID", "KIND", "TARGET", "STATE", "PROGRESS", "AGE", "ENDED", "MESSAGE",
    ]);
    for task in tasks {
        t.add_row(vec![
            task.id.to_string(),
            task.kind.to_string(),
            task.target.clone(),
            task.state.to_string(),
            task.progress.map_or("-".into(), |p| format!("{p}%")),
            output::duration_s(now.saturating_sub(task.created_at)),
            task.ended_at.map_or("-".into(), |e| {
                format!("{} ago", output::duration_s(now.saturating_sub(e)))
            }),
            message(task).unwrap_or_else(|| "-".into()),
        ]);
    }
    render(t)
}

/// `vinfra task show`: the task's fields, its result or its error.
pub fn task_text(t: &Task) -> String {
    let mut rows = vec![
        ("Task", t.id.to_string()),
        ("Kind", t.kind.to_string()),
        ("Target", t.target.clone()),
        ("State", t.state.to_string()),
    ];
    if let Some(p) = t.progress {
        rows.push(("Progress", format!("{p}%")));
    }
    if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
        rows.push(("Message", m.to_string()));
    }
    rows.push((
        "Cancellable",
        if t.cancellable { "yes" } else { "no" }.into(),
    ));
    rows.push(("By", t.actor.to_string()));
    rows.push(("Created (UTC)", timestamp(t.created_at)));
    if let Some(e) = t.ended_at {
        rows.push((
            "Ended (UTC)",
            format!(
                "{} (after {})",
                timestamp(e),
                output::duration_s(e.saturating_sub(t.created_at))
            ),
        ));
    }
    if let Some(p) = &t.error {
        rows.push(("Error", format!("{} ({} {})", p.detail, p.status, p.kind)));
    }
    if let Some(r) = result_text(t) {
        rows.push(("Result", r));
    }
    pairs(&rows)
}

/// A succeeded task's result in a few words (its JSON when it is not what its kind answers);
/// `None` without a result.
fn result_text(t: &Task) -> Option<String> {
    let value = t.result.as_ref()?;
    let text = match t.kind {
        TaskKind::VmCreate | TaskKind::VmStart | TaskKind::VmStop | TaskKind::VmReboot => {
            task_result::<VmSummary>(t).ok().map(|v| {
                format!(
                    "VM {} on {}, {}",
                    v.name,
                    output::host_cell(&v.host),
                    output::snake(&v.state)
                )
            })
        }
        TaskKind::VmCreateMany => task_result::<CreatedVms>(t).ok().map(|c| {
            let hosts: std::collections::BTreeSet<&str> =
                c.vms.iter().map(|v| v.host.as_str()).collect();
            format!("{} VMs on {} hosts", c.vms.len(), hosts.len())
        }),
        TaskKind::VmMigrate | TaskKind::RecommendationApply => {
            task_result::<MigrationProgress>(t).ok().map(|p| {
                if p.phase == MigrationPhase::Completed {
                    output::migration_done(&p)
                } else {
                    format!("migration of {}: {}", p.vm, output::snake(&p.phase))
                }
            })
        }
        TaskKind::HostFence => task_result::<FenceOutcome>(t).ok().map(|o| {
            format!(
                "host {} {} ({}, {} ms)",
                o.host,
                if o.fenced { "fenced" } else { "not fenced" },
                o.ending(),
                o.duration_ms
            )
        }),
        TaskKind::HostEvacuate => task_result::<vinfra_types::HostSummary>(t)
            .ok()
            .map(|h| format!("host {} in maintenance, evacuated", h.name)),
        TaskKind::VmDelete => None,
    };
    Some(text.unwrap_or_else(|| value.to_string()))
}

/// `vinfra task …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &TaskCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        TaskCommand::List {
            state,
            kind,
            target,
        } => {
            let filter = TaskFilter {
                state: *state,
                kind: *kind,
                target: target.clone(),
            };
            let tasks = conn.client()?.tasks(&filter)?;
            show(out, &tasks, |t| tasks_text(t, now()))
        }
        TaskCommand::Show { id } => show(out, &conn.client()?.task(*id)?, task_text),
        TaskCommand::Wait { id, timeout } => {
            let api = conn.client()?;
            let task = api.task(*id)?;
            let ended = follow::task(&api, task, *timeout)?;
            // A task that failed is its error line alone (but in JSON, the task first).
            if ended.state == TaskState::Succeeded || out == Output::Json {
                show(out, &ended, |t| {
                    let mut line = format!("{} {}", task_name(t), t.state);
                    if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
                        line.push_str(&format!(": {m}"));
                    }
                    line
                })?;
            }
            vinfra_client::task_succeeded(&ended).map_err(|source| RestCommandError::Task {
                task: task_name(&ended),
                state: ended.state,
                source,
            })
        }
        TaskCommand::Cancel { id } => {
            let task = conn.client()?.cancel_task(*id)?;
            show(out, &task, |t| match t.state {
                TaskState::Cancelled => format!("{} cancelled", task_name(t)),
                state => format!("{}: cancel asked, {state}", task_name(t)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use vinfra_types::auth::Actor;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: TaskCommand,
    }

    fn parse(argv: &[&str]) -> Result<TaskCommand, String> {
        let mut all = vec!["task"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all)
            .map(|c| c.cmd)
            .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
    }

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
            ended_at: None,
            actor: Actor::token("ops"),
            result: None,
            error: None,
        }
    }

    #[test]
    fn arguments() {
        match parse(&[
            "list",
            "--state",
            "running",
            "--kind",
            "vm_migrate",
            "--target",
            "web1",
        ]) {
            Ok(TaskCommand::List {
                state,
                kind,
                target,
            }) => {
                assert_eq!(state, Some(TaskState::Running));
                assert_eq!(kind, Some(TaskKind::VmMigrate));
                assert_eq!(target.as_deref(), Some("web1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["list"]),
            Ok(TaskCommand::List {
                state: None,
                kind: None,
                target: None
            })
        ));
        assert!(matches!(
            parse(&["show", "42"]),
            Ok(TaskCommand::Show { id: 42 })
        ));
        assert!(matches!(
            parse(&["cancel", "7"]),
            Ok(TaskCommand::Cancel { id: 7 })
        ));
        match parse(&["wait", "42", "--timeout", "2m"]) {
            Ok(TaskCommand::Wait { id: 42, timeout }) => {
                assert_eq!(timeout, Some(Duration::from_secs(120)));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["wait", "42", "--timeout", "0"]) {
            Ok(TaskCommand::Wait { timeout, .. }) => assert_eq!(timeout, Some(Duration::ZERO)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["wait", "42"]),
            Ok(TaskCommand::Wait { timeout: None, .. })
        ));
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        for (argv, says) in [
            (
                &["show", "x"][..],
                "task id must be a whole number, got 'x'",
            ),
            (&["show", "-1"], "unexpected argument '-1'"),
            (
                &["wait", "4.2"],
                "task id must be a whole number, got '4.2'",
            ),
            (
                &["cancel", "99999999999999999999999"],
                "task id must be between",
            ),
            (
                &["list", "--state", "done"],
                "expected queued, running, succeeded",
            ),
            (
                &["list", "--kind", "vm_pause"],
                "expected one of vm_create, vm_create_many, vm_start",
            ),
            (
                &["list", "--target", ""],
                "is not a VM's or host's name or a number",
            ),
            (
                &["wait", "1", "--timeout", "soon"],
                "'soon' is not a duration",
            ),
            (
                &["wait", "1", "--timeout", "25h"],
                "timeout must be between 0s and 24h",
            ),
            (
                &["wait", "1", "--timeout", "-5s"],
                "timeout must be positive, got '-5s'",
            ),
            (&["show"], "required"),
        ] {
            let e = parse(argv).expect_err(&format!("{argv:?}"));
            assert!(e.contains(says), "{argv:?}: {e}");
        }
    }

    #[test]
    fn tables_and_details() {
        let mut running = task(TaskState::Running);
        running.progress = Some(40);
        running.message = Some("waiting up to 30 s for the guest to shut down".into());
        let mut failed = task(TaskState::Failed);
        failed.id = 43;
        failed.ended_at = Some(1_700_000_030);
        failed.error = Some(vinfra_types::Problem {
            kind: "/problems/agent-error".into(),
            title: "Agent error".into(),
            status: 502,
            detail: "host h1: no answer".into(),
        });
        let text = tasks_text(&[running.clone(), failed.clone()], 1_700_000_090);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, cells) in lines.iter().zip([
            &[
                "ID", "KIND", "TARGET", "STATE", "PROGRESS", "AGE", "ENDED", "MESSAGE",
            ][..],
            &[
                "42", "vm_stop", "web1", "running", "40%", "1m30s", "-", "waiting",
            ],
            &[
                "43", "vm_stop", "web1", "failed", "-", "1m30s", "1m0s", "ago", "host",
            ],
        ]) {
            let got: Vec<&str> = line.split_whitespace().take(cells.len()).collect();
            assert_eq!(got, cells, "{text}");
        }
        assert_eq!(tasks_text(&[], 0), "no tasks");

        let detail = task_text(&failed);
        assert!(detail.contains("Error:"), "{detail}");
        assert!(
            detail.contains("host h1: no answer (502 /problems/agent-error)"),
            "{detail}"
        );
        assert!(detail.contains("(after 30s)"), "{detail}");
        let mut fenced = task(TaskState::Succeeded);
        fenced.kind = TaskKind::HostFence;
        fenced.result = Some(
            serde_json::json!({"host": "h2", "fenced": true, "exit_code": 0,
            "duration_ms": 12, "output_tail": ""}),
        );
        let detail = task_text(&fenced);
        assert!(
            detail.contains("Result:") && detail.contains("host h2 fenced (exit 0, 12 ms)"),
            "{detail}"
        );
        // A result that is not what the kind answers is shown as it came.
        fenced.result = Some(serde_json::json!({"odd": 1}));
        assert!(task_text(&fenced).contains(r#"{"odd":1}"#));
    }
}
