//! `GET /ui/vms/{name}/usage`: a VM's graphs alone, which its page's script swaps in every
//! few seconds.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::graphs::{usage_box, UsageFragment};
use super::guard::Signed;
use super::pages::unexpected;
use super::views::{error_page, render};
use crate::interface::{Command, ConsoleApi, Reply};

/// `GET /ui/vms/{name}/usage`.
pub async fn usage<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/vms/{name}") {
        return r.into_response();
    }
    if let Err(e) = vinfra_types::validate_name(&name) {
        return error_page(StatusCode::BAD_REQUEST, &vinfra_types::error::chain(&e));
    }
    let vm = match s.run(Command::ShowVm { name: name.clone() }).await {
        Ok(Reply::Vm(vm)) => vm,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    match s.run(Command::VmUsage { name: name.clone() }).await {
        Ok(Reply::Usage(history)) => {
            let usage = usage_box(
                &name,
                &history,
                vm.vcpus,
                vm.memory_mib,
                vinfra_types::unix_now_s(),
            );
            render(StatusCode::OK, &UsageFragment { usage })
        }
        Ok(_) => unexpected(),
        Err(r) => r,
    }
}
