//! The methods of the operations that answer a task (docs/design.md "Tasks") and of the tasks
//! themselves.
//!
//! Each operation has a `*_task` method that returns the task as accepted (`202 Accepted`;
//! a refusal is its error at once, as before) and a plain one that follows the task to its end
//! and answers what the request answered before tasks existed, a task that failed or was
//! cancelled being the error its problem stands for ([`crate::task_result`]).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::de::DeserializeOwned;
use vinfra_types::api::{
    CreateVmRequest, CreatedVms, MigrateVmRequest, StopVmRequest, UpdateHostRequest,
};
use vinfra_types::ha::FenceOutcome;
use vinfra_types::task::{Task, TaskFilter, TaskState};
use vinfra_types::{HostSummary, MigrationProgress, VmSummary};

use crate::error::RestError;
use crate::outcome::{
    self, migration_is_current, task_result, task_succeeded, PREFER_WAIT_MAX, TASK_POLL_MAX,
};
use crate::paths::{self, VmAction};
use crate::Client;

/// How often [`Client::migrate_vm`] reads a migration's record again while its task has not
/// registered it yet.
const MIGRATION_RECORD_POLL: Duration = Duration::from_millis(100);
/// How long [`Client::migrate_vm`] reads the record again before it follows the task instead.
const MIGRATION_RECORD_WAIT: Duration = Duration::from_secs(30);

impl Client {
    // Tasks.

    /// `GET /tasks/{id}`: the task as it is now.
    pub fn task(&self, id: u64) -> Result<Task, RestError> {
        self.fetch(Method::GET, &paths::task(id))
    }

    /// `GET /tasks/{id}?wait_s=N`: the task once it has ended, or as it is after `wait_s` s
    /// (at most [`TASK_POLL_MAX`], well within the request's timeout).
    pub fn poll_task(&self, id: u64, wait_s: u64) -> Result<Task, RestError> {
        let wait_s = wait_s.min(TASK_POLL_MAX.as_secs());
        self.fetch(Method::GET, &paths::task_wait(id, wait_s))
    }

    /// Waits for task `id` to end, with long polls of [`TASK_POLL_MAX`], and returns it as it
    /// ended (succeeded, failed or cancelled: see [`crate::task_succeeded`]); past `timeout`,
    /// [`RestError::TaskNotEnded`].
    pub fn wait_task(&self, id: u64, timeout: Option<Duration>) -> Result<Task, RestError> {
        outcome::follow(
            None,
            timeout,
            TASK_POLL_MAX,
            |wait_s| self.poll_task(id, wait_s),
            |_| {},
        )
    }

    /// Follows `task` to its end as [`Client::wait_task`] does, each poll waiting `poll` at
    /// most (1 s for a display that shows progress), `on_change` called with the task each
    /// time it has changed. A task that has ended is returned at once.
    pub fn follow_task(
        &self,
        task: Task,
        timeout: Option<Duration>,
        poll: Duration,
        on_change: impl FnMut(&Task),
    ) -> Result<Task, RestError> {
        let id = task.id;
        outcome::follow(
            Some(task),
            timeout,
            poll,
            |wait_s| self.poll_task(id, wait_s),
            on_change,
        )
    }

    /// `GET /tasks?state=…&kind=…&target=…`: the tasks kept that `filter` lets through, oldest
    /// first.
    pub fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, RestError> {
        self.list(&paths::tasks_where(filter))
    }

    /// `DELETE /tasks/{id}`: cancels the task where its operation allows it; returns the task
    /// (a task that has ended or cannot be cancelled is a 409 problem).
    pub fn cancel_task(&self, id: u64) -> Result<Task, RestError> {
        self.fetch(Method::DELETE, &paths::task(id))
    }

    /// Follows `task` to its end; its result as `T`, or the error it ended with.
    fn finish<T: DeserializeOwned>(&self, task: Task) -> Result<T, RestError> {
        let task = self.follow_task(task, None, TASK_POLL_MAX, |_| {})?;
        task_result(&task)
    }

    // VMs.

    /// `POST /vms`: places and creates a VM (and starts it unless `start` is false); the task.
    pub fn create_vm_task(&self, request: &CreateVmRequest) -> Result<Task, RestError> {
        self.send(Method::POST, &paths::vms(), request)
    }

    /// `POST /vms` with `Prefer: wait=N` (`wait` in whole seconds, at most
    /// [`PREFER_WAIT_MAX`]; under a second, none): the task once it has ended or `wait` has
    /// passed, so that a create that ends within `wait` takes one request.
    pub fn create_vm_task_within(
        &self,
        request: &CreateVmRequest,
        wait: Duration,
    ) -> Result<Task, RestError> {
        let wait_s = wait.min(PREFER_WAIT_MAX).as_secs();
        let prefer = (wait_s > 0).then_some(wait_s);
        self.send_preferring(Method::POST, &paths::vms(), request, prefer)
    }

    /// `POST /vms`, followed to its end: the VM created (and running unless `start` is false).
    /// A request with `count` is [`Client::create_vms`]'s.
    pub fn create_vm(&self, request: &CreateVmRequest) -> Result<VmSummary, RestError> {
        self.finish(self.create_vm_task_within(request, PREFER_WAIT_MAX)?)
    }

    /// `POST /vms` with `count`, followed to its end: the VMs created.
    pub fn create_vms(&self, request: &CreateVmRequest) -> Result<CreatedVms, RestError> {
        self.finish(self.create_vm_task_within(request, PREFER_WAIT_MAX)?)
    }

    /// `DELETE /vms/{name}`: stops the VM and deletes it with its disks; with `force` also when
    /// its host is disconnected (`?force=true`); the task.
    pub fn delete_vm_task(&self, name: &str, force: bool) -> Result<Task, RestError> {
        self.fetch(Method::DELETE, &paths::vm(name, force))
    }

    /// `DELETE /vms/{name}`, followed to its end.
    pub fn delete_vm(&self, name: &str, force: bool) -> Result<(), RestError> {
        let task = self.delete_vm_task(name, force)?;
        task_succeeded(&self.follow_task(task, None, TASK_POLL_MAX, |_| {})?)
    }

    /// `POST /vms/{name}/start`; the task.
    pub fn start_vm_task(&self, name: &str) -> Result<Task, RestError> {
        self.fetch(Method::POST, &paths::vm_action(name, VmAction::Start))
    }

    /// `POST /vms/{name}/start`, followed to its end: the VM, running.
    pub fn start_vm(&self, name: &str) -> Result<VmSummary, RestError> {
        self.finish(self.start_vm_task(name)?)
    }

    /// `POST /vms/{name}/stop`: ACPI power-off, forced after the timeout (or at once); the
    /// task.
    pub fn stop_vm_task(&self, name: &str, request: &StopVmRequest) -> Result<Task, RestError> {
        self.send(
            Method::POST,
            &paths::vm_action(name, VmAction::Stop),
            request,
        )
    }

    /// `POST /vms/{name}/stop`, followed to its end: the VM, stopped.
    pub fn stop_vm(&self, name: &str, request: &StopVmRequest) -> Result<VmSummary, RestError> {
        self.finish(self.stop_vm_task(name, request)?)
    }

    /// `POST /vms/{name}/reboot`; the task.
    pub fn reboot_vm_task(&self, name: &str) -> Result<Task, RestError> {
        self.fetch(Method::POST, &paths::vm_action(name, VmAction::Reboot))
    }

    /// `POST /vms/{name}/reboot`, followed to its end: the VM, running again.
    pub fn reboot_vm(&self, name: &str) -> Result<VmSummary, RestError> {
        self.finish(self.reboot_vm_task(name)?)
    }

    // Migration.

    /// `POST /vms/{name}/migrate`: starts a live migration (to `to`, else where placement
    /// picks); the task, which ends with the migration (its result: the last progress).
    pub fn migrate_vm_task(
        &self,
        name: &str,
        request: &MigrateVmRequest,
    ) -> Result<Task, RestError> {
        self.send(
            Method::POST,
            &paths::vm_action(name, VmAction::Migrate),
            request,
        )
    }

    /// `POST /vms/{name}/migrate`: starts a live migration and returns its first progress at
    /// once, the migration running on (follow it with [`Client::migration`]); a migration that
    /// ended already answers its last progress, or the error it failed with.
    pub fn migrate_vm(
        &self,
        name: &str,
        request: &MigrateVmRequest,
    ) -> Result<MigrationProgress, RestError> {
        let task = self.migrate_vm_task(name, request)?;
        self.migration_of(task, Some(name))
    }

    /// What [`Client::migrate_vm`] and [`Client::apply_recommendation`] answer for the
    /// migration `task` of VM `vm`: the task's result or error once it has ended, else the
    /// progress of the migration it started; without the VM's name, the task's end.
    ///
    /// A task answered running (at the console's 1 s limit) may not have registered its
    /// migration yet: the VM's record is then a previous migration's (started before the task
    /// was created: [`migration_is_current`]), or none. It is read again, every
    /// [`MIGRATION_RECORD_POLL`], until this migration's record is there or the task has ended
    /// (refused after all); after [`MIGRATION_RECORD_WAIT`], the task is followed to its end.
    /// A record of this migration that has ended already answers the task's end.
    fn migration_of(&self, task: Task, vm: Option<&str>) -> Result<MigrationProgress, RestError> {
        let Some(vm) = vm else {
            return self.finish(task);
        };
        let began = Instant::now();
        let mut task = task;
        while !task.state.is_final() && began.elapsed() < MIGRATION_RECORD_WAIT {
            match self.migration(vm) {
                Ok(p) if migration_is_current(&p, &task) => {
                    if p.phase.is_final() {
                        break;
                    }
                    return Ok(p);
                }
                // A previous migration's record, or none yet.
                Ok(_) => {}
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e),
            }
            std::thread::sleep(MIGRATION_RECORD_POLL);
            task = self.task(task.id)?;
        }
        self.finish(task)
    }

    /// `DELETE /vms/{name}/migration`: asks the VM's migration to stop; the task that follows
    /// the migration (its own, or one of the cancel's when none did), which ends `cancelled`
    /// when the cancel took (the VM stays on its source) or `succeeded` when it came too late.
    pub fn cancel_migration_task(&self, name: &str) -> Result<Task, RestError> {
        self.fetch(Method::DELETE, &paths::vm_migration(name))
    }

    /// `DELETE /vms/{name}/migration`, followed to the migration's end: its last progress
    /// (phase `cancelled`, or `completed` when the cancel came too late, `failed` when it
    /// failed meanwhile), as [`Client::migration_ended`] reads it.
    pub fn cancel_migration(&self, name: &str) -> Result<MigrationProgress, RestError> {
        let task = self.cancel_migration_task(name)?;
        let ended = self.follow_task(task, None, TASK_POLL_MAX, |_| {})?;
        self.migration_ended(name, &ended)
    }

    /// The last progress of VM `name`'s migration, whose task has `ended`: the task's result
    /// when it succeeded (it switched over), else the VM's migration record once that has
    /// ended (cancelled or failed), or the error the task ended with.
    pub fn migration_ended(
        &self,
        name: &str,
        ended: &Task,
    ) -> Result<MigrationProgress, RestError> {
        if ended.state == TaskState::Succeeded {
            return task_result(ended);
        }
        match self.migration(name) {
            Ok(p) if p.phase.is_final() => Ok(p),
            _ => task_result(ended),
        }
    }

    // Balancing.

    /// `POST /drs/recommendations/{id}/apply`: starts the recommended migration; the task
    /// (its target: the recommendation's number).
    pub fn apply_recommendation_task(&self, id: u64) -> Result<Task, RestError> {
        self.fetch(Method::POST, &paths::apply_recommendation(id))
    }

    /// `POST /drs/recommendations/{id}/apply`: starts the recommended migration and returns its
    /// first progress, as [`Client::migrate_vm`]. The VM is read from the recommendations
    /// first; when that fails (or the recommendation is not listed), the answer is the
    /// migration's end.
    pub fn apply_recommendation(&self, id: u64) -> Result<MigrationProgress, RestError> {
        let vm = self
            .recommendations()
            .ok()
            .and_then(|recs| recs.into_iter().find(|r| r.id == id))
            .map(|r| r.vm);
        let task = self.apply_recommendation_task(id)?;
        self.migration_of(task, vm.as_deref())
    }

    // Hosts.

    /// `PATCH /hosts/{name}`: the ratio override or the fence command (`Some(None)` removes
    /// either), or maintenance; maintenance on is followed to the end of the host's evacuation
    /// ([`Client::update_host_task`]).
    pub fn update_host(
        &self,
        name: &str,
        update: &UpdateHostRequest,
    ) -> Result<HostSummary, RestError> {
        if update.maintenance == Some(true) {
            return self.finish(self.update_host_task(name, update)?);
        }
        self.send(Method::PATCH, &paths::host(name), update)
    }

    /// `PATCH /hosts/{name}` with maintenance on: the task of the host's evacuation, which ends
    /// when no running VM is left on it.
    pub fn update_host_task(
        &self,
        name: &str,
        update: &UpdateHostRequest,
    ) -> Result<Task, RestError> {
        self.send(Method::PATCH, &paths::host(name), update)
    }

    /// `POST /hosts/{name}/fence`: runs the host's fence command; with `force` also while its
    /// agent is connected (`?force=true`); the task.
    pub fn fence_host_task(&self, name: &str, force: bool) -> Result<Task, RestError> {
        self.fetch(Method::POST, &paths::host_fence(name, force))
    }

    /// `POST /hosts/{name}/fence`, followed to its end: the command's outcome. A command that
    /// fails is a 502 problem.
    pub fn fence_host(&self, name: &str, force: bool) -> Result<FenceOutcome, RestError> {
        self.finish(self.fence_host_task(name, force)?)
    }
}
