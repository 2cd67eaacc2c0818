//! The pages and forms: each reads or acts through [`ConsoleApi`] with the session's token,
//! after the role check its API route would make ([`Signed::require`]). A form's CSRF token
//! is checked before anything else it asks; an action that is a task goes to the task's page.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use vinfra_types::api::{CreateVmRequest, MigrateVmRequest, StopVmRequest, VmFilter};
use vinfra_types::filter::{EventFilter, HostFilter};
use vinfra_types::vm::{BootSource, DiskSpec, VmSpec};
use vinfra_types::{HostStatus, HostSummary, VmSummary};

use super::graphs::{usage_box, Graphed};
use super::guard::Signed;
use super::state::CsrfForm;
use super::views::{
    bad_name, error_page, render, when, ConsolePage, CreateForm, DeletePage, EventRow, HostRow,
    InventoryPage, Nav, NewVmPage, TaskBox, TaskPage, TaskView, VmPage, VmRow, INVENTORY_PAGE,
};
use crate::interface::{Command, ConsoleApi, Error, Reply, Submitted};

/// Most events a VM's page shows (the newest).
const VM_EVENTS: usize = 50;

/// Longest a task's box waits for its task's end (`?wait_s=`), seconds.
const MAX_WAIT_S: u64 = 20;

/// A console error as its page: the status and the detail the API would answer with.
pub fn failed(e: &Error) -> Response {
    let status =
        StatusCode::from_u16(e.kind().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_page(status, &vinfra_types::error::chain(e))
}

/// A reply a page did not expect.
pub fn unexpected() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the console answered with something this page does not show",
    )
}

impl<A: ConsoleApi> Signed<A> {
    /// The navigation bar's values.
    pub fn nav(&self) -> Option<Nav> {
        Some(Nav {
            name: self.holder.name.to_string(),
            role: self.holder.role.to_string(),
            csrf: self.session.csrf.clone(),
        })
    }

    /// Runs `command` (its role checked by the caller); a refusal is its error page.
    pub async fn run(&self, command: Command) -> Result<Reply, Response> {
        self.console
            .execute(self.actor(), command)
            .await
            .map_err(|e| failed(&e))
    }

    async fn vm(&self, name: &str) -> Result<VmSummary, Response> {
        if let Some(r) = bad_name(name) {
            return Err(r);
        }
        match self.run(Command::ShowVm { name: name.into() }).await? {
            Reply::Vm(vm) => Ok(vm),
            _ => Err(unexpected()),
        }
    }

    /// Every host's summary.
    pub async fn hosts(&self) -> Result<Vec<HostSummary>, Response> {
        let filter = HostFilter::default();
        match self.run(Command::ListHosts { filter }).await? {
            Reply::Hosts(hosts) => Ok(hosts),
            _ => Err(unexpected()),
        }
    }

    async fn host_names(&self) -> Result<Vec<String>, Response> {
        let filter = HostFilter::default();
        match self.run(Command::ListHosts { filter }).await? {
            Reply::Hosts(hosts) => Ok(hosts.into_iter().map(|h| h.name).collect()),
            _ => Err(unexpected()),
        }
    }

    /// Submits `command` (the role of `method` `route` checked first): a task goes to its
    /// page, another answer to `done`.
    pub async fn act(&self, method: &str, route: &str, command: Command, done: &str) -> Response {
        if let Err(refused) = self.require(method, route) {
            return refused.into_response();
        }
        match self.console.submit(self.actor(), command).await {
            Ok(Submitted::Task(task)) => {
                Redirect::to(&format!("/tasks/{}", task.id)).into_response()
            }
            Ok(Submitted::Done(_)) => Redirect::to(done).into_response(),
            Err(e) => failed(&e),
        }
    }
}

/// `?after=` of the inventory: the page of VMs after this name.
#[derive(Debug, Default, Deserialize)]
pub struct InventoryQuery {
    /// The VM the page starts after.
    #[serde(default)]
    pub after: Option<String>,
}

/// `GET /`: the hosts and the VMs, [`INVENTORY_PAGE`] at a time in name order (`?after=NAME`).
pub async fn inventory<A: ConsoleApi>(s: Signed<A>, Query(q): Query<InventoryQuery>) -> Response {
    let after = q.after.filter(|a| !a.is_empty());
    if let Some(a) = &after {
        if let Some(r) = bad_name(a) {
            return r;
        }
    }
    if let Err(r) = s.require("GET", "/api/v1/hosts") {
        return r.into_response();
    }
    if let Err(r) = s.require("GET", "/api/v1/vms") {
        return r.into_response();
    }
    let hosts = match s
        .run(Command::ListHosts {
            filter: HostFilter::default(),
        })
        .await
    {
        Ok(Reply::Hosts(h)) => h,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    // One more than a page: whether there is a next one.
    let list = Command::ListVms {
        filter: VmFilter::default(),
        after: after.clone(),
        limit: Some(INVENTORY_PAGE + 1),
    };
    let mut vms = match s.run(list).await {
        Ok(Reply::Vms(v)) => v,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let next = (vms.len() > INVENTORY_PAGE).then(|| {
        vms.truncate(INVENTORY_PAGE);
        vms.last().map(|v| v.name.clone()).unwrap_or_default()
    });
    render(
        StatusCode::OK,
        &InventoryPage {
            nav: s.nav(),
            hosts: hosts.iter().map(HostRow::from).collect(),
            vms: vms.iter().map(VmRow::from).collect(),
            may_create: s.may("POST", "/api/v1/vms"),
            after,
            next,
        },
    )
}

/// `GET /vms/{name}`: the VM, its actions (for an operator), its events.
pub async fn show_vm<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/vms/{name}") {
        return r.into_response();
    }
    let vm = match s.vm(&name).await {
        Ok(vm) => vm,
        Err(r) => return r,
    };
    let mut events = vec![];
    if s.may("GET", "/api/v1/events") {
        let filter = EventFilter {
            vm: Some(name.clone()),
            ..EventFilter::default()
        };
        events = match s.run(Command::ListEvents { filter }).await {
            Ok(Reply::Events(e)) => e,
            Ok(_) => return unexpected(),
            Err(r) => return r,
        };
    }
    let events: Vec<EventRow> = events
        .iter()
        .rev()
        .take(VM_EVENTS)
        .map(EventRow::from)
        .collect();
    let boot = vm.spec.boot.to_string();
    let disks = vm
        .spec
        .disks
        .iter()
        .map(|d| {
            let image = d
                .image
                .as_deref()
                .map(|i| format!(" on {i}"))
                .unwrap_or_default();
            let size = d.size_gib.map(|g| format!(" {g} GiB")).unwrap_or_default();
            format!("{}{image}{size}", d.name)
        })
        .collect();
    let nics = vm
        .spec
        .nics
        .iter()
        .map(|n| match &n.mac {
            Some(mac) => format!("{} ({mac})", n.network),
            None => n.network.clone(),
        })
        .collect();
    let usage = match s.run(Command::VmUsage { name: name.clone() }).await {
        Ok(Reply::Usage(history)) => usage_box(
            Graphed::Vm {
                name: &name,
                vcpus: vm.vcpus,
                memory_mib: vm.memory_mib,
            },
            &history,
            vinfra_types::unix_now_s(),
        ),
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let may_migrate = s.may("POST", "/api/v1/vms/{name}/migrate");
    let mut migrate_hosts = vec![];
    if may_migrate {
        migrate_hosts = match s.hosts().await {
            Ok(hosts) => hosts
                .into_iter()
                .filter(|h| {
                    h.status == HostStatus::Connected && !h.maintenance && h.name != vm.host
                })
                .map(|h| h.name)
                .collect(),
            Err(r) => return r,
        };
    }
    let platform = vm
        .platform
        .as_ref()
        .map(|p| format!("{}, {}", p.cpu_model, p.machine_type))
        .unwrap_or_default();
    render(
        StatusCode::OK,
        &VmPage {
            nav: s.nav(),
            csrf: s.session.csrf.clone(),
            vm: VmRow::from(&vm),
            id: vm.id.to_string(),
            created: when(vm.created_at),
            uptime_s: vm.uptime_s,
            boot,
            disks,
            nics,
            platform,
            may_power: s.may("POST", "/api/v1/vms/{name}/start"),
            may_delete: s.may("DELETE", "/api/v1/vms/{name}"),
            may_migrate,
            migrate_hosts,
            usage,
            may_console: s.may("GET", "/api/v1/vms/{name}/console"),
            events,
        },
    )
}

/// `GET /vms/{name}/console`: the VM's serial console, live, in a terminal. Its style sheet
/// policy also allows inline styles: the terminal (xterm.js) lays out its rows and colours
/// with `<style>` elements it writes; scripts stay this console's own.
pub async fn console_page<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(refused) = s.require("GET", "/api/v1/vms/{name}/console") {
        return refused.into_response();
    }
    let vm = match s.vm(&name).await {
        Ok(vm) => vm,
        Err(page) => return page,
    };
    let mut resp = render(
        StatusCode::OK,
        &ConsolePage {
            nav: s.nav(),
            vm: VmRow::from(&vm),
            may_type: s.may("POST", "/api/v1/vms/{name}/console/input"),
        },
    );
    resp.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(super::guard::TERMINAL_CSP),
    );
    resp
}

/// `POST /vms/{name}/{start,stop,reboot}`: the action as its task.
pub async fn power<A: ConsoleApi>(
    s: Signed<A>,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let (route, command) = match action.as_str() {
        "start" => (
            "/api/v1/vms/{name}/start",
            Command::StartVm { name: name.clone() },
        ),
        "stop" => (
            "/api/v1/vms/{name}/stop",
            Command::StopVm {
                name: name.clone(),
                request: StopVmRequest::default(),
            },
        ),
        "reboot" => (
            "/api/v1/vms/{name}/reboot",
            Command::RebootVm { name: name.clone() },
        ),
        _ => return error_page(StatusCode::NOT_FOUND, "no such action"),
    };
    s.act("POST", route, command, &format!("/vms/{name}")).await
}

/// The migrate form: where to (empty: placement chooses).
#[derive(Deserialize)]
pub struct MigrateForm {
    /// The session's CSRF token.
    #[serde(default)]
    csrf: String,
    /// The destination host, or empty.
    #[serde(default)]
    to: String,
}

/// `POST /vms/{name}/migrate`: the live migration, as its task (whose page shows its
/// progress).
pub async fn migrate<A: ConsoleApi>(
    s: Signed<A>,
    Path(name): Path<String>,
    Form(form): Form<MigrateForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let to = Some(form.to.trim().to_string()).filter(|t| !t.is_empty());
    let command = Command::MigrateVm {
        name: name.clone(),
        request: MigrateVmRequest { to },
    };
    let route = "/api/v1/vms/{name}/migrate";
    s.act("POST", route, command, &format!("/vms/{name}")).await
}

/// `GET /vms/{name}/delete`: the confirmation.
pub async fn confirm_delete<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(r) = s.require("DELETE", "/api/v1/vms/{name}") {
        return r.into_response();
    }
    let vm = match s.vm(&name).await {
        Ok(vm) => vm,
        Err(r) => return r,
    };
    render(
        StatusCode::OK,
        &DeletePage {
            nav: s.nav(),
            csrf: s.session.csrf.clone(),
            running: vm.desired == vinfra_types::PowerState::Running,
            name: vm.name,
            host: vm.host,
        },
    )
}

/// The delete's confirmation.
#[derive(Deserialize)]
pub struct DeleteForm {
    /// The session's CSRF token.
    #[serde(default)]
    csrf: String,
    /// `on`: stop it at once if it runs (the API's `?force=true`).
    #[serde(default)]
    force: Option<String>,
}

/// `POST /vms/{name}/delete`: the delete, as its task.
pub async fn delete_vm<A: ConsoleApi>(
    s: Signed<A>,
    Path(name): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let command = Command::DeleteVm {
        name,
        force: form.force.is_some(),
    };
    s.act("DELETE", "/api/v1/vms/{name}", command, "/").await
}

/// `?wait_s=` of a task's box.
#[derive(Deserialize)]
pub struct WaitQuery {
    /// Seconds to wait for the task's end (at most [`MAX_WAIT_S`]).
    #[serde(default)]
    wait_s: Option<u64>,
}

async fn task_view<A: ConsoleApi>(
    s: &Signed<A>,
    id: &str,
    wait_s: Option<u64>,
) -> Result<TaskView, Response> {
    s.require("GET", "/api/v1/tasks/{id}")?;
    let id: u64 = id.parse().map_err(|_| {
        error_page(
            StatusCode::BAD_REQUEST,
            &format!("id must be a number, got '{id}'"),
        )
    })?;
    let wait_s = wait_s.map(|w| w.min(MAX_WAIT_S));
    match s.run(Command::ShowTask { id, wait_s }).await? {
        Reply::Task(task) => Ok(TaskView::from(&task)),
        _ => Err(unexpected()),
    }
}

/// `GET /tasks/{id}`: the task, followed by the page's script.
pub async fn show_task<A: ConsoleApi>(s: Signed<A>, Path(id): Path<String>) -> Response {
    match task_view(&s, &id, None).await {
        Ok(task) => render(StatusCode::OK, &TaskPage { nav: s.nav(), task }),
        Err(r) => r,
    }
}

/// `GET /ui/tasks/{id}?wait_s=`: the task's box, once it has ended or `wait_s` has passed.
pub async fn task_box<A: ConsoleApi>(
    s: Signed<A>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<WaitQuery>,
) -> Response {
    match task_view(&s, &id, q.wait_s).await {
        Ok(task) => render(StatusCode::OK, &TaskBox { task }),
        Err(r) => r,
    }
}

/// `GET /new-vm`: the create form.
pub async fn new_vm<A: ConsoleApi>(s: Signed<A>) -> Response {
    if let Err(r) = s.require("POST", "/api/v1/vms") {
        return r.into_response();
    }
    let hosts = match s.host_names().await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let form = CreateForm {
        vcpus: "1".into(),
        memory_mib: "512".into(),
        boot: "kernel".into(),
        kernel: "vmlinuz".into(),
        disk_gib: "1".into(),
        start: Some("on".into()),
        ..CreateForm::default()
    };
    let page = NewVmPage {
        nav: s.nav(),
        csrf: s.session.csrf.clone(),
        form,
        hosts,
        problem: String::new(),
    };
    render(StatusCode::OK, &page)
}

/// The create request a form asks for, or what is wrong with a number of it.
fn request_of(form: &CreateForm) -> Result<CreateVmRequest, String> {
    let number = |field: &str, value: &str| -> Result<u64, String> {
        value
            .trim()
            .parse()
            .map_err(|_| format!("{field} must be a whole number, got '{value}'"))
    };
    let vcpus = number("vcpus", &form.vcpus)?;
    let vcpus = u32::try_from(vcpus).map_err(|_| format!("vcpus is too large: {vcpus}"))?;
    let memory_mib = number("memory_mib", &form.memory_mib)?;
    let text = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let boot = if form.boot == "disk" {
        BootSource::Disk
    } else {
        BootSource::Kernel {
            kernel: form.kernel.trim().to_string(),
            initrd: text(&form.initrd),
            cmdline: form.cmdline.trim().to_string(),
        }
    };
    let size_gib = match text(&form.disk_gib) {
        Some(v) => Some(number("disk size", &v)?),
        None => None,
    };
    let count = match text(&form.count) {
        Some(v) => {
            let n = number("count", &v)?;
            Some(u32::try_from(n).map_err(|_| format!("count is too large: {n}"))?)
        }
        None => None,
    };
    let image = text(&form.image);
    let disks = if size_gib.is_some() || image.is_some() {
        vec![DiskSpec {
            name: "root".into(),
            image,
            size_gib,
        }]
    } else {
        vec![]
    };
    Ok(CreateVmRequest {
        spec: VmSpec {
            name: form.name.trim().to_string(),
            vcpus,
            memory_mib,
            boot,
            disks,
            nics: vec![],
            ha: Default::default(),
        },
        host: text(&form.host),
        start: form.start.is_some(),
        count,
    })
}

/// `POST /new-vm`: the create, as its task; a value the console refuses is the form again
/// with the API's words for it (and its status).
pub async fn create_vm<A: ConsoleApi>(s: Signed<A>, Form(form): Form<CreateForm>) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Err(r) = s.require("POST", "/api/v1/vms") {
        return r.into_response();
    }
    let (status, problem) = match request_of(&form) {
        Err(words) => (StatusCode::BAD_REQUEST, words),
        Ok(request) => match s
            .console
            .submit(s.actor(), Command::CreateVm { request })
            .await
        {
            Ok(Submitted::Task(task)) => {
                return Redirect::to(&format!("/tasks/{}", task.id)).into_response()
            }
            Ok(Submitted::Done(_)) => return Redirect::to("/").into_response(),
            Err(e) => (
                StatusCode::from_u16(e.kind().status()).unwrap_or(StatusCode::BAD_REQUEST),
                vinfra_types::error::chain(&e),
            ),
        },
    };
    let hosts = s.host_names().await.unwrap_or_default();
    let page = NewVmPage {
        nav: s.nav(),
        csrf: s.session.csrf.clone(),
        form: CreateForm {
            csrf: String::new(),
            ..form
        },
        hosts,
        problem,
    };
    render(status, &page)
}
