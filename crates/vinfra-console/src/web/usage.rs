//! `GET /ui/vms/{name}/usage` and `GET /ui/hosts/{name}/usage`: a VM's or a host's graphs
//! alone, which its page's script swaps in every few seconds.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::graphs::{usage_box, Graphed, UsageBox, UsageFragment};
use super::guard::Signed;
use super::pages::unexpected;
use super::views::{bad_name, render};
use crate::interface::{Command, ConsoleApi, Reply};

/// `GET /ui/vms/{name}/usage`.
pub async fn vm_usage<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/vms/{name}/usage") {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let vm = match s.run(Command::ShowVm { name: name.clone() }).await {
        Ok(Reply::Vm(vm)) => vm,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let what = Graphed::Vm {
        name: &name,
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
    };
    match graphs(&s, Command::VmUsage { name: name.clone() }, what).await {
        Ok(usage) => render(StatusCode::OK, &UsageFragment { usage }),
        Err(r) => r,
    }
}

/// `GET /ui/hosts/{name}/usage`.
pub async fn host_usage<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/hosts/{name}/usage") {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let host = match s.run(Command::ShowHost { name: name.clone() }).await {
        Ok(Reply::Host(h)) => h,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let what = Graphed::Host {
        name: &name,
        cores: host.capacity.cores,
        memory_mib: host.capacity.memory_mib,
    };
    match graphs(&s, Command::HostUsage { name: name.clone() }, what).await {
        Ok(usage) => render(StatusCode::OK, &UsageFragment { usage }),
        Err(r) => r,
    }
}

/// The box of `what`, its history read with `command` (`VmUsage`, `HostUsage`).
pub async fn graphs<A: ConsoleApi>(
    s: &Signed<A>,
    command: Command,
    what: Graphed<'_>,
) -> Result<UsageBox, Response> {
    match s.run(command).await {
        Ok(Reply::Usage(history)) => Ok(usage_box(what, &history, vinfra_types::unix_now_s())),
        Ok(_) => Err(unexpected()),
        Err(r) => Err(r),
    }
}
