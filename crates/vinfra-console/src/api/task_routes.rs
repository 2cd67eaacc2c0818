//! The tasks' endpoints (`/api/v1/tasks`, docs/design.md "Tasks"): parse into
//! [`Command::ListTasks`], [`Command::ShowTask`], [`Command::CancelTask`], like every handler of
//! [`super::routes`]; and the stream of task changes (server-sent events).

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use vinfra_types::task::{Task, TaskFilter, TaskKind, TaskState};
use vinfra_types::Problem;

use super::extract::{ApiQuery, Caller, IdPath};
use super::pages::PageQuery;
use super::problem::ApiError;
use super::routes::{list, run};
use crate::interface::{Command, ConsoleApi};

/// How often the stream sends a keep-alive comment: well within the listener's idle close (15 s
/// by default), which counts a streaming answer's connection as idle when nothing crosses it.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// `GET /api/v1/tasks`: a page ([`PageQuery`]) of the tasks a filter lets through.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// At most this many tasks (1 to 1000); without it and without `page_token`, every one.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where to go on: the token of the previous answer's `Link: <…>; rel="next"` header.
    pub page_token: Option<String>,
    /// Only the tasks in this state.
    pub state: Option<TaskState>,
    /// Only the tasks of this kind.
    pub kind: Option<TaskKind>,
    /// Only the tasks acting on this object (a VM's or host's name, a recommendation's
    /// number).
    pub target: Option<String>,
}

impl TaskListQuery {
    /// The page, the filter, and the path with the filter for the next page's link; or why
    /// the query is refused (400).
    fn split(self) -> Result<(PageQuery, TaskFilter, String), ApiError> {
        if let Some(t) = &self.target {
            if vinfra_types::validate_name(t).is_err() && t.parse::<u64>().is_err() {
                return Err(ApiError::Page("target must be a name or a number"));
            }
        }
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(format!("state={s}"));
        }
        if let Some(k) = self.kind {
            parts.push(format!("kind={k}"));
        }
        if let Some(t) = &self.target {
            parts.push(format!("target={t}"));
        }
        let mut path = String::from("/api/v1/tasks");
        if !parts.is_empty() {
            path.push('?');
            path.push_str(&parts.join("&"));
        }
        let filter = TaskFilter {
            state: self.state,
            kind: self.kind,
            target: self.target,
        };
        let page = PageQuery {
            limit: self.limit,
            page_token: self.page_token,
        };
        Ok((page, filter, path))
    }
}

/// `?wait_s=N` on one task.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskWaitQuery {
    /// Answer once the task has ended, or after this many seconds (0 to 60; without it, at
    /// once).
    #[param(minimum = 0, maximum = 60)]
    pub wait_s: Option<u64>,
}

/// The tasks kept (every unended one, the last 1,000 ended within 24 h), oldest first, or those
/// a filter lets through (`state`, `kind`, `target`: all that are given).
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskListQuery),
    responses((status = 200, description = "the tasks", body = [Task],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/tasks?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_tasks<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<TaskListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = q.split()?;
    list(&c, Command::ListTasks { filter }, &page, &path).await
}

/// One task; with `wait_s`, the answer waits until the task has ended or that many seconds
/// have passed (a long poll).
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = u64, Path, description = "task id"), TaskWaitQuery),
    responses((status = 200, description = "the task", body = Task), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn show_task<A: ConsoleApi>(
    c: Caller<A>,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<TaskWaitQuery>,
) -> Result<Response, ApiError> {
    run(
        &c,
        Command::ShowTask {
            id,
            wait_s: q.wait_s,
        },
    )
    .await
}

/// Cancels a task where its operation allows it (`cancellable`: a migration before its
/// switchover); the task ends `cancelled` once its operation has stopped. A task that has
/// ended or cannot be cancelled is 409.
#[utoipa::path(delete, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = u64, Path, description = "task id")),
    responses((status = 200, description = "the task, its cancel asked", body = Task), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel_task<A: ConsoleApi>(
    c: Caller<A>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    run(&c, Command::CancelTask { id }).await
}

/// Every change of a task from now on, as server-sent events (`text/event-stream`): one
/// `task` event with the task's JSON each time a task is accepted or changes; a keep-alive
/// comment every 15 s.
#[utoipa::path(get, path = "/api/v1/tasks/stream", tag = "tasks",
    responses((status = 200, description = "server-sent events, one `task` event (the task's JSON) per change", content_type = "text/event-stream", body = String)))]
pub async fn stream_tasks<A: ConsoleApi>(c: Caller<A>) -> Result<Response, ApiError> {
    let Caller(console, _) = c;
    let Some(rx) = console.task_changes() else {
        return Err(ApiError::NoRoute);
    };
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(task) => Event::default()
                .event("task")
                .id(task.id.to_string())
                .json_data(&task)
                .unwrap_or_else(|_| Event::default().comment("a task that does not encode")),
            // A watcher that fell behind is told so; it may read the list again.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                Event::default().comment(format!("{n} changes skipped"))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
