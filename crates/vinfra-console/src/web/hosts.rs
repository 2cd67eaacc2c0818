//! A host's page: its state, its HA state, its capacity against what is allocated and used,
//! its VMs; and its maintenance switched on (the evacuation's task) or off.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use vinfra_types::api::{UpdateHostRequest, VmFilter};

use super::graphs::Graphed;
use super::guard::Signed;
use super::pages::unexpected;
use super::usage::graphs;
use super::views::{bad_name, error_page, render, HostRow, VmRow};
use super::views_more::HostPage;
use crate::interface::{Command, ConsoleApi, Reply};

/// `GET /hosts/{name}`.
pub async fn show_host<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/hosts/{name}") {
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
    let (mut ha_state, mut ha_detail) = (String::new(), String::new());
    if s.may("GET", "/api/v1/ha") {
        if let Ok(Reply::Ha(ha)) = s.run(Command::ShowHa).await {
            if let Some(h) = ha.hosts.iter().find(|h| h.name == name) {
                ha_state = h.state.clone();
                ha_detail = h.detail.clone();
            }
        }
    }
    let list = Command::ListVms {
        filter: VmFilter {
            host: Some(name.clone()),
            ..VmFilter::default()
        },
        after: None,
        limit: None,
    };
    let vms = match s.run(list).await {
        Ok(Reply::Vms(v)) => v,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let what = Graphed::Host {
        name: &name,
        cores: host.capacity.cores,
        memory_mib: host.capacity.memory_mib,
    };
    let usage = match graphs(&s, Command::HostUsage { name: name.clone() }, what).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let page = HostPage {
        nav: s.nav(),
        csrf: s.session.csrf.clone(),
        qemu: host.qemu_version.clone().unwrap_or_default(),
        accel: host.accel.map(|a| format!("{a:?}")).unwrap_or_default(),
        host: HostRow::from(&host),
        ha_state,
        ha_detail,
        vms: vms.iter().map(VmRow::from).collect(),
        may_maintain: s.may("PATCH", "/api/v1/hosts/{name}"),
        usage,
    };
    render(StatusCode::OK, &page)
}

/// The maintenance form.
#[derive(Deserialize)]
pub struct MaintenanceForm {
    /// The session's CSRF token.
    #[serde(default)]
    csrf: String,
    /// `on` or `off`.
    #[serde(default)]
    maintenance: String,
}

/// `POST /hosts/{name}/maintenance`: on is the evacuation's task (its page), off the host's
/// page again.
pub async fn maintenance<A: ConsoleApi>(
    s: Signed<A>,
    Path(name): Path<String>,
    Form(form): Form<MaintenanceForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let on = match form.maintenance.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("maintenance must be 'on' or 'off', got '{other}'"),
            )
        }
    };
    let command = Command::UpdateHost {
        name: name.clone(),
        update: UpdateHostRequest {
            maintenance: Some(on),
            ..UpdateHostRequest::default()
        },
    };
    let back = format!("/hosts/{name}");
    s.act("PATCH", "/api/v1/hosts/{name}", command, &back).await
}
