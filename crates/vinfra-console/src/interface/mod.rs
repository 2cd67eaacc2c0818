//! The console's whole interface: every operation as one [`Command`], every answer as one
//! [`Reply`], and the [`ConsoleApi`] trait a transport drives them through. The REST API (and
//! any other transport) depends on this module only; nothing under it imports it.
//!
//! `impl ConsoleApi for Console` is one match handing each command to one resource function
//! (`hosts`, `vms`, `migration`, `rules`, `balancing`, `networks`, `security_groups`,
//! `routers`, `flows`, `scrape`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use vinfra_types::auth::Actor;
use vinfra_types::task::Task;

pub use crate::error::{Error, ErrorKind};
pub use crate::state::{TokenHolder, TokenRefusal};

pub mod access;
mod command;
mod dispatch;
mod reply;

pub use command::Command;
pub use reply::{Reply, Submitted};

use dispatch::{dispatch, result_of, task_of};

use crate::state::{events, Console};
use crate::tasks;

/// What a transport needs of the console: find who a bearer token is, run a command on their
/// behalf. The REST API is generic over it, so its routes are tested (and fuzzed) against a
/// stub. Which role may run which command is the transport's to check (the REST API checks
/// the route, `interface::access`) before it calls [`ConsoleApi::execute`].
pub trait ConsoleApi: Send + Sync + 'static {
    /// Runs one command on behalf of `actor`, whom every event it records names.
    fn execute(
        self: &Arc<Self>,
        actor: Actor,
        command: Command,
    ) -> impl Future<Output = Result<Reply, Error>> + Send;

    /// The token whose secret `token` is, with its role; or why it is refused (unknown,
    /// expired, revoked).
    fn authenticate(&self, token: &str) -> Result<TokenHolder, TokenRefusal>;

    /// Runs one command on behalf of `actor`, as a task when it is one of the long operations
    /// (docs/design.md, "Tasks"): answers once the operation has passed its checks, with its
    /// task; a refusal before that is the error. Other commands run as [`Self::execute`]
    /// runs them (the default, for a console without tasks).
    fn submit(
        self: &Arc<Self>,
        actor: Actor,
        command: Command,
    ) -> impl Future<Output = Result<Submitted, Error>> + Send {
        async move { self.execute(actor, command).await.map(Submitted::Done) }
    }

    /// Every change of a task from now on (`GET /api/v1/tasks/stream`); `None` for a console
    /// without tasks.
    fn task_changes(&self) -> Option<tokio::sync::broadcast::Receiver<Task>> {
        None
    }

    /// An API request was answered with `status` after `took`; `route` is the matched route's
    /// template (`/api/v1/vms/{name}`). Counted in the metrics ([`Command::Metrics`]); a
    /// console without metrics ignores it (the default).
    fn request_answered(&self, route: &str, method: &str, status: u16, took: Duration) {
        let _ = (route, method, status, took);
    }
}

impl ConsoleApi for Console {
    async fn execute(self: &Arc<Self>, actor: Actor, command: Command) -> Result<Reply, Error> {
        events::acting(actor.clone(), dispatch(self, &actor, command)).await
    }

    fn authenticate(&self, token: &str) -> Result<TokenHolder, TokenRefusal> {
        self.authenticate_token(token)
    }

    async fn submit(self: &Arc<Self>, actor: Actor, command: Command) -> Result<Submitted, Error> {
        let Some((kind, target, follow_s)) = task_of(&command) else {
            // A migration's cancel answers with the task that follows the migration.
            let answers_task = matches!(command, Command::CancelMigration { .. });
            return self.execute(actor, command).await.map(|reply| match reply {
                Reply::Task(task) if answers_task => Submitted::Task(task),
                reply => Submitted::Done(reply),
            });
        };
        let c = self.clone();
        let a = actor.clone();
        let work = async move { dispatch(&c, &a, command).await.map(|r| result_of(&r)) };
        tasks::run(self, actor, kind, target, follow_s, work)
            .await
            .map(Submitted::Task)
    }

    fn task_changes(&self) -> Option<tokio::sync::broadcast::Receiver<Task>> {
        Some(self.tasks().subscribe())
    }

    fn request_answered(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.metrics().http_request(route, method, status, took);
    }
}
