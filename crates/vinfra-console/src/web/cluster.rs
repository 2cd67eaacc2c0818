//! The cluster's pages: the networks and a network's ports and counters, the placement rules
//! (created and deleted), the balancer (its status, last pass and recommendations, applied
//! from the page) and the cluster settings (shown and replaced).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use vinfra_types::api::ClusterSettings;
use vinfra_types::balancing::PlacementRule;
use vinfra_types::filter::{NetworkFilter, RecommendationFilter, RuleFilter};

use super::guard::Signed;
use super::pages::unexpected;
use super::state::CsrfForm;
use super::views::{bad_name, error_page, render};
use super::views_more::{
    BalancerPage, CounterRow, NetworkPage, NetworkRow, NetworksPage, PlanView, PortRow,
    RecommendationRow, RuleForm, RuleRow, RulesPage, SettingsPage,
};
use crate::interface::{Command, ConsoleApi, Reply, Submitted};

/// `GET /networks`.
pub async fn networks<A: ConsoleApi>(s: Signed<A>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/networks") {
        return r.into_response();
    }
    let filter = NetworkFilter::default();
    let networks = match s.run(Command::ListNetworks { filter }).await {
        Ok(Reply::Networks(n)) => n,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let networks = networks.iter().map(NetworkRow::from).collect();
    render(
        StatusCode::OK,
        &NetworksPage {
            nav: s.nav(),
            networks,
        },
    )
}

/// `GET /networks/{name}`: the network, its ports, their counters (read from the hosts now).
pub async fn network<A: ConsoleApi>(s: Signed<A>, Path(name): Path<String>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/networks/{name}") {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let network = match s.run(Command::ShowNetwork { name: name.clone() }).await {
        Ok(Reply::Network(n)) => n,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let (mut ports, mut hosts, mut counters_error) = (vec![], vec![], String::new());
    if s.may("GET", "/api/v1/networks/{name}/counters") {
        let read = Command::NetworkCounters { name };
        match s.console.execute(s.actor(), read).await {
            Ok(Reply::NetworkCounters(c)) => {
                ports = c.ports.iter().map(PortRow::from).collect();
                hosts = c.hosts.iter().map(CounterRow::from).collect();
            }
            Ok(_) => {}
            Err(e) => counters_error = vinfra_types::error::chain(&e),
        }
    }
    if ports.is_empty() {
        ports = network.ports.iter().map(PortRow::from).collect();
    }
    let page = NetworkPage {
        nav: s.nav(),
        network: NetworkRow::from(&network),
        ports,
        hosts,
        counters_error,
    };
    render(StatusCode::OK, &page)
}

/// The rules page, with `form` as typed and `problem` (the console's words) if any.
async fn rules_page<A: ConsoleApi>(
    s: &Signed<A>,
    status: StatusCode,
    form: RuleForm,
    problem: String,
) -> Response {
    let filter = RuleFilter::default();
    let rules = match s.run(Command::ListRules { filter }).await {
        Ok(Reply::Rules(r)) => r,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let page = RulesPage {
        nav: s.nav(),
        csrf: s.session.csrf.clone(),
        rules: rules.iter().map(RuleRow::from).collect(),
        may_edit: s.may("POST", "/api/v1/rules"),
        form,
        problem,
    };
    render(status, &page)
}

/// `GET /rules`.
pub async fn rules<A: ConsoleApi>(s: Signed<A>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/rules") {
        return r.into_response();
    }
    let form = RuleForm {
        strength: "must".into(),
        kind: "anti_affinity".into(),
        ..RuleForm::default()
    };
    rules_page(&s, StatusCode::OK, form, String::new()).await
}

/// A comma- or space-separated list.
fn names(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// `POST /rules`: the rule created, or the form again with the console's words.
pub async fn create_rule<A: ConsoleApi>(s: Signed<A>, Form(form): Form<RuleForm>) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Err(r) = s.require("POST", "/api/v1/rules") {
        return r.into_response();
    }
    let rule = serde_json::json!({
        "name": form.name.trim(),
        "strength": form.strength,
        "kind": form.kind,
        "vms": names(&form.vms),
        "hosts": names(&form.hosts),
    });
    let problem = match serde_json::from_value::<PlacementRule>(rule) {
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
        Ok(rule) => match s
            .console
            .execute(s.actor(), Command::CreateRule { rule })
            .await
        {
            Ok(_) => return Redirect::to("/rules").into_response(),
            Err(e) => (
                StatusCode::from_u16(e.kind().status()).unwrap_or(StatusCode::BAD_REQUEST),
                vinfra_types::error::chain(&e),
            ),
        },
    };
    let form = RuleForm {
        csrf: String::new(),
        ..form
    };
    rules_page(&s, problem.0, form, problem.1).await
}

/// `POST /rules/{name}/delete`.
pub async fn delete_rule<A: ConsoleApi>(
    s: Signed<A>,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let command = Command::DeleteRule { name };
    s.act("DELETE", "/api/v1/rules/{name}", command, "/rules")
        .await
}

/// `GET /balancer`: the balancer's status, its last pass, the recommendations waiting.
pub async fn balancer<A: ConsoleApi>(s: Signed<A>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/drs") {
        return r.into_response();
    }
    let status = match s.run(Command::DrsStatus).await {
        Ok(Reply::Drs(d)) => d,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let filter = RecommendationFilter::default();
    let recommendations = match s.run(Command::ListRecommendations { filter }).await {
        Ok(Reply::Recommendations(r)) => r,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let page = BalancerPage {
        nav: s.nav(),
        csrf: s.session.csrf.clone(),
        mode: super::views_more::words(&status.mode),
        level: status.level,
        interval_s: status.interval_s,
        last_run: status
            .last_run_at
            .map(super::views::when)
            .unwrap_or_else(|| "never".into()),
        last_plan: status.last_plan.as_ref().map(PlanView::from),
        last_error: status.last_error.clone().unwrap_or_default(),
        recommendations: recommendations
            .iter()
            .map(RecommendationRow::from)
            .collect(),
        may_apply: s.may("POST", "/api/v1/drs/recommendations/{id}/apply"),
        may_run: s.may("POST", "/api/v1/drs/run"),
    };
    render(StatusCode::OK, &page)
}

/// `POST /balancer/recommendations/{id}/apply`: its migration, as its task.
pub async fn apply<A: ConsoleApi>(
    s: Signed<A>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    let Ok(id) = id.parse::<u64>() else {
        let detail = format!("id must be a number, got '{id}'");
        return error_page(StatusCode::BAD_REQUEST, &detail);
    };
    let route = "/api/v1/drs/recommendations/{id}/apply";
    let command = Command::ApplyRecommendation { id };
    s.act("POST", route, command, "/balancer").await
}

/// `POST /balancer/run`: a balancing pass now, then the balancer's page.
pub async fn run_pass<A: ConsoleApi>(s: Signed<A>, Form(form): Form<CsrfForm>) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    s.act("POST", "/api/v1/drs/run", Command::DrsRun, "/balancer")
        .await
}

/// The settings page with `text` in its editor and `problem` (the console's words) if any.
fn settings_page<A: ConsoleApi>(
    s: &Signed<A>,
    status: StatusCode,
    text: String,
    problem: String,
) -> Response {
    let page = SettingsPage {
        nav: s.nav(),
        csrf: s.session.csrf.clone(),
        text,
        may_edit: s.may("PUT", "/api/v1/settings"),
        problem,
    };
    render(status, &page)
}

/// `GET /settings`: the cluster settings, as `PUT /api/v1/settings` takes them.
pub async fn settings<A: ConsoleApi>(s: Signed<A>) -> Response {
    if let Err(r) = s.require("GET", "/api/v1/settings") {
        return r.into_response();
    }
    let current = match s.run(Command::GetSettings).await {
        Ok(Reply::Settings(c)) => c,
        Ok(_) => return unexpected(),
        Err(r) => return r,
    };
    let text = serde_json::to_string_pretty(&current).unwrap_or_default();
    settings_page(&s, StatusCode::OK, text, String::new())
}

/// The settings form.
#[derive(Deserialize)]
pub struct SettingsForm {
    /// The session's CSRF token.
    #[serde(default)]
    csrf: String,
    /// The settings, JSON.
    #[serde(default)]
    settings: String,
}

/// `POST /settings`: the settings replaced, or the form again with the console's words.
pub async fn put_settings<A: ConsoleApi>(s: Signed<A>, Form(form): Form<SettingsForm>) -> Response {
    if let Err(r) = s.check_csrf(&form.csrf) {
        return r.into_response();
    }
    if let Err(r) = s.require("PUT", "/api/v1/settings") {
        return r.into_response();
    }
    let (status, problem) = match serde_json::from_str::<ClusterSettings>(&form.settings) {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("the settings are not valid: {e}"),
        ),
        Ok(settings) => match s
            .console
            .submit(s.actor(), Command::PutSettings { settings })
            .await
        {
            Ok(Submitted::Done(_)) => return Redirect::to("/settings").into_response(),
            Ok(Submitted::Task(t)) => {
                return Redirect::to(&format!("/tasks/{}", t.id)).into_response()
            }
            Err(e) => (
                StatusCode::from_u16(e.kind().status()).unwrap_or(StatusCode::BAD_REQUEST),
                vinfra_types::error::chain(&e),
            ),
        },
    };
    settings_page(&s, status, form.settings, problem)
}
