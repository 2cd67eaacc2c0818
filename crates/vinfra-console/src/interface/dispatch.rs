//! The one match from a [`Command`] to the console's operation, and which commands run as a
//! task.

use std::sync::Arc;

use vinfra_types::api::{CreatedVms, UpdateHostRequest};
use vinfra_types::auth::Actor;
use vinfra_types::task::TaskKind;

use super::command::Command;
use super::reply::Reply;
use crate::error::Error;
use crate::state::Console;
use crate::{
    balancing, ha, hosts, migration, networks, routers, rules, scrape, security_groups, tasks, vms,
};

/// True when a host update puts it in maintenance: its evacuation follows, as a task.
fn evacuates(update: &UpdateHostRequest) -> bool {
    update.maintenance == Some(true)
}

/// The task a command runs as (its kind, target and how long a restarted console follows
/// it), if it is one of the long operations.
pub(super) fn task_of(command: &Command) -> Option<(TaskKind, String, u64)> {
    const DEFAULT: u64 = crate::state::tasks::FOLLOW_AFTER_RESTART.as_secs();
    const MIGRATION: u64 = tasks::MIGRATION_FOLLOW_S;
    Some(match command {
        Command::CreateVm { request } if request.count.is_some() => {
            (TaskKind::VmCreateMany, request.spec.name.clone(), DEFAULT)
        }
        Command::CreateVm { request } => (TaskKind::VmCreate, request.spec.name.clone(), DEFAULT),
        Command::StartVm { name } => (TaskKind::VmStart, name.clone(), DEFAULT),
        Command::StopVm { name, request } => (
            TaskKind::VmStop,
            name.clone(),
            request
                .timeout_s
                .unwrap_or(vinfra_types::vm::STOP_TIMEOUT_DEFAULT_S)
                .saturating_add(30),
        ),
        Command::RebootVm { name } => (TaskKind::VmReboot, name.clone(), DEFAULT),
        Command::DeleteVm { name, .. } => (TaskKind::VmDelete, name.clone(), DEFAULT),
        Command::MigrateVm { name, .. } => (TaskKind::VmMigrate, name.clone(), MIGRATION),
        Command::ApplyRecommendation { id } => {
            (TaskKind::RecommendationApply, id.to_string(), MIGRATION)
        }
        Command::FenceHost { name, .. } => (TaskKind::HostFence, name.clone(), DEFAULT),
        Command::UpdateHost { name, update } if evacuates(update) => (
            TaskKind::HostEvacuate,
            name.clone(),
            hosts::evacuate::EVACUATION_LIMIT.as_secs(),
        ),
        _ => return None,
    })
}

/// A task's `result`: the reply of its operation as JSON (none for a delete).
pub(super) fn result_of(reply: &Reply) -> Option<serde_json::Value> {
    match reply {
        Reply::Vm(v) | Reply::VmCreated(v) => serde_json::to_value(v).ok(),
        Reply::VmsCreated(vms) => serde_json::to_value(CreatedVms {
            vms: vms.iter().map(Into::into).collect(),
        })
        .ok(),
        Reply::Migration(p) | Reply::MigrationStarted(p) => serde_json::to_value(p).ok(),
        Reply::Fenced(f) => serde_json::to_value(f).ok(),
        Reply::Host(h) => serde_json::to_value(h).ok(),
        _ => None,
    }
}

/// Hands one command to its resource function (within the actor's scope, see
/// [`ConsoleApi::execute`]).
pub(super) async fn dispatch(
    c: &Arc<Console>,
    actor: &Actor,
    command: Command,
) -> Result<Reply, Error> {
    Ok(match command {
        Command::ListHosts { filter } => Reply::Hosts(hosts::crud::list(c, &filter)),
        Command::ShowHost { name } => Reply::Host(hosts::crud::show(c, &name)?),
        Command::UpdateHost { name, update } if evacuates(&update) => {
            Reply::Host(hosts::evacuate::enter_maintenance(c, &name, update).await?)
        }
        Command::UpdateHost { name, update } => Reply::Host(hosts::crud::update(c, &name, update)?),
        Command::FenceHost { name, force } => {
            Reply::Fenced(hosts::fence::fence(c, &name, force).await?)
        }
        Command::DeleteHost { name } => {
            hosts::crud::delete(c, &name).await?;
            Reply::Done
        }
        Command::GetSettings => Reply::Settings(hosts::settings::get(c)),
        Command::PutSettings { settings } => Reply::Settings(hosts::settings::put(c, settings)?),
        Command::CreateJoinToken => Reply::JoinToken(hosts::tokens::create_join_token(c)?),
        Command::RotateToken => Reply::Token(hosts::tokens::rotate(c, actor)?),
        Command::ListTokens { filter } => Reply::Tokens(hosts::tokens::list(c, &filter)),
        Command::CreateToken { request } => Reply::TokenCreated(hosts::tokens::create(c, request)?),
        Command::RevokeToken { name } => {
            hosts::tokens::revoke(c, &name)?;
            Reply::Done
        }
        Command::ListVms {
            filter,
            after,
            limit,
        } => Reply::Vms(vms::views::list_from(
            c,
            &filter,
            after.as_deref(),
            limit.unwrap_or(usize::MAX),
        )),
        Command::CreateVm { request } if request.count.is_some() => {
            Reply::VmsCreated(vms::create::create_many(c, request).await?)
        }
        Command::CreateVm { request } => Reply::VmCreated(vms::create::create(c, request).await?),
        Command::ShowVm { name } => Reply::Vm(vms::views::show(c, &name)?),
        Command::UpdateVm { name, update } => Reply::Vm(vms::ha::update(c, &name, update).await?),
        Command::DeleteVm { name, force } => {
            vms::delete::delete(c, &name, force).await?;
            Reply::Done
        }
        Command::StartVm { name } => Reply::Vm(vms::power::start(c, &name).await?),
        Command::StopVm { name, request } => Reply::Vm(vms::power::stop(c, &name, request).await?),
        Command::RebootVm { name } => Reply::Vm(vms::power::reboot(c, &name).await?),
        Command::MigrateVm { name, request } => {
            let first = migration::start(c, &name, request).await?;
            if crate::state::tasks::current().is_none() {
                return Ok(Reply::MigrationStarted(first));
            }
            let active = tasks::arm_cancel(c, &name);
            crate::state::tasks::accepted();
            Reply::Migration(tasks::follow_migration(c, active, &name).await?)
        }
        Command::ShowMigration { name } => Reply::Migration(migration::show(c, &name)?),
        Command::CancelMigration { name } => {
            Reply::Task(tasks::cancel_migration(c, actor.clone(), &name).await?)
        }
        Command::ConsoleLog { name, bytes, from } => {
            Reply::Console(vms::views::console_log(c, &name, bytes, from).await?)
        }
        Command::ConsoleInput { name, text } => {
            vms::views::console_input(c, &name, text).await?;
            Reply::Done
        }
        Command::ListEvents { filter } => Reply::Events(c.events(&filter)?),
        Command::ListRevokedCertificates { filter } => {
            Reply::RevokedCertificates(hosts::certs::revoked_list(c, &filter)?)
        }
        Command::TopFlows { query } => Reply::Flows(crate::flows::top(c, query)?),
        Command::ListRules { filter } => Reply::Rules(rules::list(c, &filter)?),
        Command::CreateRule { rule } => Reply::RuleCreated(rules::create(c, rule).await?),
        Command::ShowRule { name } => Reply::Rule(rules::show(c, &name)?),
        Command::DeleteRule { name } => {
            rules::delete(c, &name).await?;
            Reply::Done
        }
        Command::ShowHa => Reply::Ha(Box::new(ha::status::status(c).await?)),
        Command::DrsStatus => Reply::Drs(balancing::status(c)),
        Command::DrsRun => Reply::Drs(balancing::run_now(c).await?),
        Command::ListRecommendations { filter } => {
            Reply::Recommendations(balancing::recommendations(c, &filter))
        }
        Command::ApplyRecommendation { id } => {
            let first = balancing::apply::apply_recommendation(c, id).await?;
            if crate::state::tasks::current().is_none() {
                return Ok(Reply::MigrationStarted(first));
            }
            crate::state::tasks::say(tasks::migrating(&first));
            let active = tasks::arm_cancel(c, &first.vm);
            crate::state::tasks::accepted();
            Reply::Migration(tasks::follow_migration(c, active, &first.vm).await?)
        }
        Command::ListNetworks { filter } => Reply::Networks(networks::crud::list(c, &filter)),
        Command::CreateNetwork { request } => {
            Reply::NetworkCreated(networks::crud::create(c, request).await?)
        }
        Command::ShowNetwork { name } => Reply::Network(networks::crud::show(c, &name)?),
        Command::DeleteNetwork { name } => {
            networks::crud::delete(c, &name).await?;
            Reply::Done
        }
        Command::NetworkCounters { name } => {
            Reply::NetworkCounters(networks::counters::counters(c, &name).await?)
        }
        Command::HostSwitch { name } => {
            Reply::HostSwitch(networks::counters::host_switch_counters(c, &name).await?)
        }
        Command::VmUsage { name } => Reply::Usage(vms::views::usage(c, &name)?),
        Command::HostUsage { name } => Reply::Usage(hosts::crud::usage(c, &name)?),
        Command::VmCounters { name } => {
            Reply::VmCounters(networks::counters::vm_counters(c, &name).await?)
        }
        Command::UpdateNic { vm, index, update } => {
            Reply::Vm(vms::nics::update(c, &vm, index, update).await?)
        }
        Command::ListSecurityGroups { filter } => {
            Reply::SecurityGroups(security_groups::list(c, &filter)?)
        }
        Command::CreateSecurityGroup { group } => {
            Reply::SecurityGroupCreated(security_groups::create(c, group).await?)
        }
        Command::ShowSecurityGroup { name } => {
            Reply::SecurityGroup(security_groups::show(c, &name)?)
        }
        Command::SecurityGroupCounters { name } => Reply::SecurityGroupCounters(
            networks::counters::security_group_counters(c, &name).await?,
        ),
        Command::DeleteSecurityGroup { name } => {
            security_groups::delete(c, &name).await?;
            Reply::Done
        }
        Command::AddSgRule { group, rule } => {
            Reply::SgRuleCreated(security_groups::add_rule(c, &group, rule).await?)
        }
        Command::DeleteSgRule { group, id } => {
            security_groups::delete_rule(c, &group, id).await?;
            Reply::Done
        }
        Command::ListRouters { filter } => Reply::Routers(routers::list(c, &filter)?),
        Command::CreateRouter { request } => {
            Reply::RouterCreated(routers::create(c, request).await?)
        }
        Command::ShowRouter { name } => Reply::Router(routers::show(c, &name)?),
        Command::DeleteRouter { name } => {
            routers::delete(c, &name).await?;
            Reply::Done
        }
        Command::AttachNetwork { router, request } => {
            Reply::NetworkAttached(routers::attach(c, &router, request).await?)
        }
        Command::DetachNetwork { router, network } => {
            routers::detach(c, &router, &network).await?;
            Reply::Done
        }
        Command::AddRoute { router, route } => {
            Reply::RouteCreated(routers::add_route(c, &router, route).await?)
        }
        Command::DeleteRoute { router, prefix } => {
            routers::delete_route(c, &router, &prefix).await?;
            Reply::Done
        }
        Command::SetUplink { router, request } => {
            Reply::Uplink(routers::uplink::set(c, &router, request).await?)
        }
        Command::RemoveUplink { router } => {
            routers::uplink::remove(c, &router).await?;
            Reply::Done
        }
        Command::ListFloatingIps { filter } => {
            Reply::FloatingIps(routers::floating::list(c, &filter)?)
        }
        Command::AddFloatingIp { vm, request } => {
            Reply::FloatingIpCreated(routers::floating::add(c, &vm, request).await?)
        }
        Command::DeleteFloatingIp { vm, ip } => {
            routers::floating::delete(c, &vm, &ip).await?;
            Reply::Done
        }
        Command::ListTasks { filter } => Reply::Tasks(tasks::list(c, &filter)),
        Command::ShowTask { id, wait_s } => Reply::Task(tasks::show(c, id, wait_s).await?),
        Command::CancelTask { id } => Reply::Task(tasks::cancel(c, id, actor.clone())?),
        Command::Metrics => Reply::Metrics(scrape::scrape(c)),
    })
}
