//! The events page and its live part: the event history and the tasks, and the stream of
//! task changes (`GET /ui/events/stream`, server-sent events for the session's cookie) that
//! the page's script adds to its table. Without the script the page is reloaded by hand.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vinfra_types::filter::EventFilter;
use vinfra_types::task::{Task, TaskFilter};

use super::guard::Signed;
use super::pages::unexpected;
use super::state::WebState;
use super::views::{render, EventRow, TaskView};
use super::views_more::EventsPage;
use crate::interface::{Command, ConsoleApi, Reply};

/// Most events and tasks the page lists (the newest).
const SHOWN: usize = 100;

/// How long the stream waits for a change before it checks the session again and sends a
/// keep-alive comment: well within the listener's idle close (15 s by default), which counts a
/// streaming answer's connection as idle when nothing crosses it.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// `GET /events`: the newest events and tasks; the script follows the tasks live.
pub async fn events<A: ConsoleApi>(s: Signed<A>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/events") {
        return r.into_response();
    }
    if let Err(r) = s.require("GET", "/api/v1/tasks") {
        return r.into_response();
    }
    let filter = EventFilter::default();
    let events = match s.run(Command::ListEvents { filter }).await {
        Ok(Reply::Events(e)) => e,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let filter = TaskFilter::default();
    let tasks = match s.run(Command::ListTasks { filter }).await {
        Ok(Reply::Tasks(t)) => t,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let page = EventsPage {
        nav: s.nav(),
        events: events
            .iter()
            .rev()
            .take(SHOWN)
            .map(EventRow::from)
            .collect(),
        tasks: tasks.iter().rev().take(SHOWN).map(TaskView::from).collect(),
    };
    render(StatusCode::OK, &page)
}

/// A task as the stream sends it: what its row shows.
#[derive(Serialize)]
struct TaskLine {
    id: u64,
    kind: String,
    target: String,
    state: String,
    progress: String,
    message: String,
    link: String,
}

impl From<&Task> for TaskLine {
    fn from(t: &Task) -> Self {
        let v = TaskView::from(t);
        TaskLine {
            link: format!("/tasks/{}", v.id),
            id: v.id,
            kind: v.kind,
            target: v.target,
            state: v.state,
            progress: v.progress,
            message: if v.error.is_empty() {
                v.message
            } else {
                v.error
            },
        }
    }
}

/// `GET /ui/events/stream`: every change of a task from now on, one `task` event (the row's
/// JSON) each; a comment every 15 s without one. The stream ends with its session (logout,
/// expiry, the token revoked): the browser's reconnection then meets the login's redirect.
pub async fn stream<A: ConsoleApi>(s: Signed<A>, State(state): State<WebState<A>>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/tasks/stream") {
        return r.into_response();
    }
    let Some(rx) = s.console.task_changes() else {
        return super::views::error_page(StatusCode::NOT_FOUND, "this console has no tasks");
    };
    let id = s.id.clone();
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let state = state.clone();
        let id = id.clone();
        async move {
            let event = match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                Ok(Ok(task)) => SseEvent::default()
                    .event("task")
                    .id(task.id.to_string())
                    .json_data(TaskLine::from(&task))
                    .unwrap_or_else(|_| SseEvent::default().comment("a task that does not encode")),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    SseEvent::default().comment(format!("{n} changes skipped"))
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                Err(_) => SseEvent::default().comment("keep-alive"),
            };
            // The session is checked again before each event.
            state.sessions.holder(&*state.console, &id, false)?;
            Some((Ok::<_, Infallible>(event), rx))
        }
    });
    Sse::new(stream).into_response()
}
