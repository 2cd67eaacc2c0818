//! What the pages show: one askama template per page (`templates/web/`, compiled into the
//! binary), the rows they list, and the error page. Values are formatted here; the templates
//! only lay them out (and escape them).

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vinfra_types::api::Event;
use vinfra_types::task::Task;
use vinfra_types::{HostStatus, HostSummary, VmSummary};

/// Who is logged in, for the navigation bar (and the logout form's CSRF token).
pub struct Nav {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The session's CSRF token.
    pub csrf: String,
}

/// Mebibytes in words: `512 MiB`, `2.0 GiB`.
pub fn mib(v: u64) -> String {
    if v >= 1024 {
        format!("{:.1} GiB", v as f64 / 1024.0)
    } else {
        format!("{v} MiB")
    }
}

/// Seconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn when(secs: u64) -> String {
    vinfra_types::utc_timestamp(secs)
}

/// One host of the inventory.
pub struct HostRow {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Whether its agent is connected.
    pub connected: bool,
    /// In maintenance.
    pub maintenance: bool,
    /// VMs placed on it.
    pub vm_count: u32,
    /// Logical CPUs.
    pub cores: u32,
    /// vCPUs of the VMs placed on it that should run.
    pub vcpus_allocated: u32,
    /// vCPUs placement may hand out (at least 1: a bar's maximum).
    pub vcpus_allocatable: u32,
    /// CPU in use, in cores (`1.25`).
    pub cpu_used: String,
    /// CPU in use, hundredths of a core (the bar's value).
    pub cpu_used_centi: u64,
    /// Physical memory, in words.
    pub memory_physical: String,
    /// Physical memory, MiB (at least 1).
    pub memory_physical_mib: u64,
    /// Memory of its VMs that should run, in words.
    pub memory_allocated: String,
    /// The same, MiB.
    pub memory_allocated_mib: u64,
    /// Memory placement may hand out, MiB (at least 1).
    pub memory_allocatable_mib: u64,
    /// Memory in use, in words.
    pub memory_used: String,
    /// The same, MiB.
    pub memory_used_mib: u64,
}

impl From<&HostSummary> for HostRow {
    fn from(h: &HostSummary) -> Self {
        HostRow {
            name: h.name.clone(),
            address: h.address.clone(),
            connected: h.status == HostStatus::Connected,
            maintenance: h.maintenance,
            vm_count: h.vm_count,
            cores: h.capacity.cores,
            vcpus_allocated: h.allocated_vcpus,
            vcpus_allocatable: h.allocatable_vcpus.max(1),
            cpu_used: format!("{:.2}", h.usage.cpu_cores),
            cpu_used_centi: (h.usage.cpu_cores.max(0.0) * 100.0) as u64,
            memory_physical: mib(h.capacity.memory_mib),
            memory_physical_mib: h.capacity.memory_mib.max(1),
            memory_allocated: mib(h.allocated_memory_mib),
            memory_allocated_mib: h.allocated_memory_mib,
            memory_allocatable_mib: h.allocatable_memory_mib.max(1),
            memory_used: mib(h.usage.memory_used_mib),
            memory_used_mib: h.usage.memory_used_mib,
        }
    }
}

/// One VM of the inventory.
pub struct VmRow {
    /// Its name.
    pub name: String,
    /// Its state (as reported).
    pub state: String,
    /// The state asked for.
    pub desired: String,
    /// Its host.
    pub host: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, in words.
    pub memory: String,
    /// CPU in use, in cores.
    pub cpu_used: String,
    /// Memory in use, in words.
    pub rss: String,
    /// Its QEMU did not answer in time.
    pub unresponsive: bool,
}

impl From<&VmSummary> for VmRow {
    fn from(v: &VmSummary) -> Self {
        VmRow {
            name: v.name.clone(),
            state: v.state.as_str().to_string(),
            desired: v.desired.as_str().to_string(),
            host: v.host.clone(),
            vcpus: v.vcpus,
            memory: mib(v.memory_mib),
            cpu_used: format!("{:.2}", v.usage.cpu_cores),
            rss: mib(v.usage.rss_mib),
            unresponsive: v.unresponsive,
        }
    }
}

/// One event of a VM's history.
pub struct EventRow {
    /// When (UTC).
    pub at: String,
    /// Its kind.
    pub kind: String,
    /// What it is about (a VM's or host's name).
    pub object: String,
    /// What happened or happens, in words.
    pub message: String,
    /// Who asked.
    pub actor: String,
}

impl From<&Event> for EventRow {
    fn from(e: &Event) -> Self {
        EventRow {
            at: when(e.at),
            kind: e.kind.clone(),
            object: e.object.clone(),
            message: e.message.clone(),
            actor: e.actor.as_ref().map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}

/// A task as its page and its fragment show it.
pub struct TaskView {
    /// Its number.
    pub id: u64,
    /// Its kind.
    pub kind: String,
    /// What it acts on.
    pub target: String,
    /// Its state (as reported).
    pub state: String,
    /// Whether it has ended.
    pub ended: bool,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// What happened or happens, in words.
    pub message: String,
    /// How far it is (`40 %`), if told.
    pub progress: String,
    /// Why it failed, the API's words.
    pub error: String,
    /// Who asked.
    pub actor: String,
    /// When it was created (UTC).
    pub created: String,
    /// Where its object is shown (the VM's page), if it is one.
    pub object_link: String,
    /// It is a live migration (a VM's, or a recommendation's): its page shows a bar.
    pub migration: bool,
    /// How far it is, 0–100 (the bar's value).
    pub percent: u8,
    /// The host a migration brought the VM to, once it succeeded.
    pub new_host: String,
    /// The box's long poll: until the end, or for a migration a second (its bar moves).
    pub follow_wait_s: u64,
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        let kind = t.kind.to_string();
        let migration = kind == "vm_migrate" || kind == "recommendation_apply";
        let result = |field: &str| {
            t.result
                .as_ref()
                .and_then(|r| r.get(field))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let object_link = if t.kind == vinfra_types::task::TaskKind::VmCreateMany {
            // The first of the VMs it creates.
            format!("/vms/{}-1", t.target)
        } else if kind.starts_with("vm_") && kind != "vm_delete" {
            format!("/vms/{}", t.target)
        } else if kind.starts_with("host_") {
            format!("/hosts/{}", t.target)
        } else if migration && !result("vm").is_empty() {
            format!("/vms/{}", result("vm"))
        } else {
            String::new()
        };
        let succeeded = t.state == vinfra_types::task::TaskState::Succeeded;
        let new_host = if migration && succeeded {
            result("destination")
        } else {
            String::new()
        };
        let percent = if succeeded {
            100
        } else {
            t.progress.unwrap_or(0).min(100)
        };
        TaskView {
            id: t.id,
            kind,
            target: t.target.clone(),
            state: t.state.as_str().to_string(),
            ended: t.state.is_final(),
            succeeded,
            message: t.message.clone().unwrap_or_default(),
            progress: t.progress.map(|p| format!("{p} %")).unwrap_or_default(),
            error: t
                .error
                .as_ref()
                .map(|p| p.detail.clone())
                .unwrap_or_default(),
            actor: t.actor.to_string(),
            created: when(t.created_at),
            object_link,
            migration,
            percent,
            new_host,
            follow_wait_s: if migration { 1 } else { 20 },
        }
    }
}

/// `GET /login`.
#[derive(Template)]
#[template(path = "web/login.html")]
pub struct LoginPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// Whether a token was just refused.
    pub refused: bool,
}

/// `GET /`.
#[derive(Template)]
#[template(path = "web/inventory.html")]
pub struct InventoryPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The hosts.
    pub hosts: Vec<HostRow>,
    /// The VMs of this page (at most [`INVENTORY_PAGE`], in name order).
    pub vms: Vec<VmRow>,
    /// Whether the session may create a VM.
    pub may_create: bool,
    /// The page starts after this VM (`?after=`; `None`: the first page).
    pub after: Option<String>,
    /// The name the next page starts after, when there are more VMs.
    pub next: Option<String>,
}

/// VMs on one page of the inventory.
pub const INVENTORY_PAGE: usize = 200;

/// `GET /vms/{name}`.
#[derive(Template)]
#[template(path = "web/vm.html")]
pub struct VmPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The session's CSRF token.
    pub csrf: String,
    /// The VM.
    pub vm: VmRow,
    /// Its number.
    pub id: String,
    /// When it was created (UTC).
    pub created: String,
    /// Seconds since its guest started.
    pub uptime_s: u64,
    /// How it boots, in words.
    pub boot: String,
    /// Its disks, in words.
    pub disks: Vec<String>,
    /// Its NICs, in words.
    pub nics: Vec<String>,
    /// Its CPU model and machine type.
    pub platform: String,
    /// Whether the session may start, stop, reboot it.
    pub may_power: bool,
    /// Whether the session may delete it.
    pub may_delete: bool,
    /// Whether the session may migrate it.
    pub may_migrate: bool,
    /// The hosts it may be migrated to (connected, not in maintenance, not its own).
    pub migrate_hosts: Vec<String>,
    /// Its use over the last hour, as graphs.
    pub usage: super::graphs::UsageBox,
    /// Whether the session may see its serial console.
    pub may_console: bool,
    /// Its events, newest first.
    pub events: Vec<EventRow>,
}

/// `GET /vms/{name}/console`: the serial console in a terminal (`assets/console.js` connects
/// it to `/vms/{name}/console/ws`).
#[derive(Template)]
#[template(path = "web/console.html")]
pub struct ConsolePage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The VM.
    pub vm: VmRow,
    /// Whether the session may type on it.
    pub may_type: bool,
}

/// `GET /vms/{name}/delete`: the confirmation.
#[derive(Template)]
#[template(path = "web/delete.html")]
pub struct DeletePage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The session's CSRF token.
    pub csrf: String,
    /// Its name.
    pub name: String,
    /// Its host.
    pub host: String,
    /// Whether it is set to run (then the delete has to stop it at once).
    pub running: bool,
}

/// `GET /tasks/{id}`.
#[derive(Template)]
#[template(path = "web/task.html")]
pub struct TaskPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The task.
    pub task: TaskView,
}

/// `GET /ui/tasks/{id}`: the task's box alone, which the task page's script swaps in.
#[derive(Template)]
#[template(path = "web/task_box.html")]
pub struct TaskBox {
    /// The task.
    pub task: TaskView,
}

/// The create form's values, as typed (shown again with a refusal).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct CreateForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// Its name.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: String,
    /// Memory, MiB (as typed).
    pub memory_mib: String,
    /// How it boots, in words.
    pub boot: String,
    /// Kernel file name.
    pub kernel: String,
    /// Initrd file name.
    pub initrd: String,
    /// Kernel command line.
    pub cmdline: String,
    /// Size of the root disk, GiB.
    pub disk_gib: String,
    /// Base image of the root disk.
    pub image: String,
    /// Its host.
    pub host: String,
    /// Start it once created (`on`).
    pub start: Option<String>,
    /// How many alike (empty: one, named as given; N: `{name}-1` … `{name}-N`).
    pub count: String,
}

/// `GET /new-vm` (and the form again with the console's refusal).
#[derive(Template)]
#[template(path = "web/new_vm.html")]
pub struct NewVmPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The session's CSRF token.
    pub csrf: String,
    /// The values as typed.
    pub form: CreateForm,
    /// The hosts.
    pub hosts: Vec<String>,
    /// Why the console refused them, in the API's words.
    pub problem: String,
}

/// An error: its status and the console's words.
#[derive(Template)]
#[template(path = "web/error.html")]
pub struct ErrorPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The HTTP status.
    pub status: u16,
    /// Its reason phrase.
    pub title: String,
    /// What went wrong, in the API's words.
    pub detail: String,
}

/// A page rendered with `status` (500 if the template fails).
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, html).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        }
        Err(e) => {
            tracing::warn!("web page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

/// Why an action is refused before it runs (its role, its CSRF token): the error page's
/// status and words.
#[derive(Debug)]
pub struct PageRefusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// Why, in words.
    pub detail: String,
}

impl IntoResponse for PageRefusal {
    fn into_response(self) -> Response {
        error_page(self.status, &self.detail)
    }
}

impl From<PageRefusal> for Response {
    fn from(r: PageRefusal) -> Response {
        r.into_response()
    }
}

/// A name from a page's path checked as the API checks it: a bad one's 400 page, with the
/// API's words.
pub fn bad_name(name: &str) -> Option<Response> {
    vinfra_types::validate_name(name)
        .err()
        .map(|e| error_page(StatusCode::BAD_REQUEST, &vinfra_types::error::chain(&e)))
}

/// The error page.
pub fn error_page(status: StatusCode, detail: &str) -> Response {
    render(
        status,
        &ErrorPage {
            nav: None,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            detail: detail.to_string(),
        },
    )
}
