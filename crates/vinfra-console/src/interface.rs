//! The console's whole interface: every operation as one [`Command`], every answer as one
//! [`Reply`], and the [`ConsoleApi`] trait a transport drives them through. The REST API (and
//! any other transport) depends on this module only; nothing under it imports it.
//!
//! `impl ConsoleApi for Console` is one match handing each command to one resource function
//! (`hosts`, `vms`, `migration`, `rules`, `balancing`, `networks`, `security_groups`,
//! `routers`, `flows`).

use std::future::Future;
use std::sync::Arc;

use vinfra_types::api::{
    ClusterSettings, ConsoleLog, CreateVmRequest, Event, JoinTokenResponse, MigrateVmRequest,
    StopVmRequest, TokenResponse, UpdateHostRequest, UpdateNicRequest, UpdateVmRequest,
};
use vinfra_types::auth::{Actor, CreateTokenRequest, NewToken, TokenSummary};
use vinfra_types::balancing::{DrsStatus, PlacementRule, Recommendation};
use vinfra_types::filter::{
    EventFilter, FloatingIpFilter, HostFilter, NetworkFilter, RecommendationFilter,
    RevokedCertificateFilter, RouterFilter, RuleFilter, SecurityGroupFilter, TokenFilter,
};
use vinfra_types::ha::{FenceOutcome, HaStatus};
use vinfra_types::network::{
    CreateNetworkRequest, HostSwitchCounters, NetworkCounters, NetworkSummary, VmCounters,
};
use vinfra_types::router::{
    AddFloatingIpRequest, AttachNetworkRequest, CreateRouterRequest, FloatingIpSummary,
    RouterAttachment, RouterStaticRoute, RouterSummary, SetUplinkRequest, UplinkSummary,
};
use vinfra_types::security_group::{
    SecurityGroup, SecurityGroupCounters, SecurityGroupSummary, SgRule,
};
use vinfra_types::task::{Task, TaskFilter, TaskKind};
use vinfra_types::{HostSummary, MigrationProgress, VmSummary};

pub use crate::error::{Error, ErrorKind};
pub use crate::state::{TokenHolder, TokenRefusal};

use crate::state::{events, Console};
use crate::{
    balancing, ha, hosts, migration, networks, routers, rules, security_groups, tasks, vms,
};

/// Everything the console can be asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Every registered host with capacity, allocation and status, or those `filter` lets
    /// through.
    ListHosts {
        /// Which hosts.
        filter: HostFilter,
    },
    /// One host.
    ShowHost {
        /// The host.
        name: String,
    },
    /// Change a host's ratio override, maintenance flag or fence command.
    UpdateHost {
        /// The host.
        name: String,
        /// What changes.
        update: UpdateHostRequest,
    },
    /// Run a host's fence command (refused while its agent is connected, unless `force`).
    FenceHost {
        /// The host.
        name: String,
        /// Also while the host's agent is connected.
        force: bool,
    },
    /// Remove a host (refused while VMs are placed on it).
    DeleteHost {
        /// The host.
        name: String,
    },
    /// The cluster settings.
    GetSettings,
    /// Replace the cluster settings.
    PutSettings {
        /// The new settings.
        settings: ClusterSettings,
    },
    /// Issue a one-time join token.
    CreateJoinToken,
    /// Give the token that asks a new secret (same name, role and expiry).
    RotateToken,
    /// Every API token (never a secret nor a hash), or those `filter` lets through.
    ListTokens {
        /// Which tokens.
        filter: TokenFilter,
    },
    /// Create an API token; its secret is in the reply, once.
    CreateToken {
        /// Its name, role and expiry.
        request: CreateTokenRequest,
    },
    /// Revoke an API token.
    RevokeToken {
        /// The token.
        name: String,
    },
    /// Every VM, or those `filter` lets through; with `limit`, at most that many whose names
    /// sort after `after` (a page reads only the records it shows).
    ListVms {
        /// Which VMs.
        filter: vinfra_types::api::VmFilter,
        /// Only the VMs whose names sort after this one.
        after: Option<String>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// Create (and by default start) a VM.
    CreateVm {
        /// The VM and where it goes.
        request: CreateVmRequest,
    },
    /// One VM.
    ShowVm {
        /// The VM.
        name: String,
    },
    /// Change a VM's HA policy (only the fields given).
    UpdateVm {
        /// The VM.
        name: String,
        /// What changes.
        update: UpdateVmRequest,
    },
    /// Delete a VM and its disks; `force` also when its host is disconnected.
    DeleteVm {
        /// The VM.
        name: String,
        /// Forget the VM even though its host is disconnected.
        force: bool,
    },
    /// Start a stopped VM.
    StartVm {
        /// The VM.
        name: String,
    },
    /// Stop a VM.
    StopVm {
        /// The VM.
        name: String,
        /// How (graceful with a timeout, or forced).
        request: StopVmRequest,
    },
    /// Reset a running VM.
    RebootVm {
        /// The VM.
        name: String,
    },
    /// Start a live migration.
    MigrateVm {
        /// The VM.
        name: String,
        /// Where to (placement picks when absent).
        request: MigrateVmRequest,
    },
    /// Progress of the current (or last) migration of a VM.
    ShowMigration {
        /// The VM.
        name: String,
    },
    /// Cancel a VM's migration: answered at once with the task that follows the migration
    /// (its end says whether the cancel took).
    CancelMigration {
        /// The VM.
        name: String,
    },
    /// Tail of a VM's serial console.
    ConsoleLog {
        /// The VM.
        name: String,
        /// How many bytes (default 64 KiB).
        bytes: Option<u64>,
    },
    /// The event history, oldest first, or the events `filter` lets through.
    ListEvents {
        /// Which events.
        filter: EventFilter,
    },
    /// The revoked host certificates that have not expired (those `filter` lets through).
    ListRevokedCertificates {
        /// Which certificates.
        filter: RevokedCertificateFilter,
    },
    /// The flows of the last minutes, grouped (`GET /api/v1/flows`).
    TopFlows {
        /// Window, grouping and number of rows.
        query: vinfra_types::flows::FlowQuery,
    },
    /// Every placement rule, or those `filter` lets through.
    ListRules {
        /// Which rules.
        filter: RuleFilter,
    },
    /// Create a placement rule (refused when it contradicts the others).
    CreateRule {
        /// The rule.
        rule: PlacementRule,
    },
    /// One placement rule.
    ShowRule {
        /// The rule.
        name: String,
    },
    /// Delete a placement rule.
    DeleteRule {
        /// The rule.
        name: String,
    },
    /// The cluster's HA status: settings, each host's HA state, the admission reserve.
    ShowHa,
    /// The balancer's status.
    DrsStatus,
    /// Run a balancing pass now.
    DrsRun,
    /// The recommendations waiting (manual mode), or those `filter` lets through.
    ListRecommendations {
        /// Which recommendations.
        filter: RecommendationFilter,
    },
    /// Start the migration a recommendation proposes.
    ApplyRecommendation {
        /// The recommendation's id.
        id: u64,
    },
    /// Every logical network with its ports, or those `filter` lets through.
    ListNetworks {
        /// Which networks.
        filter: NetworkFilter,
    },
    /// Create a logical network.
    CreateNetwork {
        /// The network.
        request: CreateNetworkRequest,
    },
    /// One logical network with its ports.
    ShowNetwork {
        /// The network.
        name: String,
    },
    /// Delete a logical network (refused while a VM has a NIC on it).
    DeleteNetwork {
        /// The network.
        name: String,
    },
    /// A network's traffic, per port and per host, read from the hosts' switches now.
    NetworkCounters {
        /// The network.
        name: String,
    },
    /// A host's switch counters, read now.
    HostSwitch {
        /// The host.
        name: String,
    },
    /// A VM's NIC ports' counters on its host's switch, read now.
    VmCounters {
        /// The VM.
        name: String,
    },
    /// Change a NIC's settings (security groups, port security, allowed addresses, QoS; only
    /// the fields given).
    UpdateNic {
        /// The VM.
        vm: String,
        /// The NIC's index in the VM's spec.
        index: usize,
        /// What changes.
        update: UpdateNicRequest,
    },
    /// Every security group, or those `filter` lets through.
    ListSecurityGroups {
        /// Which groups.
        filter: SecurityGroupFilter,
    },
    /// Create a security group (with its initial rules).
    CreateSecurityGroup {
        /// The group.
        group: SecurityGroup,
    },
    /// One security group, with the NICs in it.
    ShowSecurityGroup {
        /// The group.
        name: String,
    },
    /// A security group's rule hits and its NICs' connections, read from the switches now.
    SecurityGroupCounters {
        /// The group.
        name: String,
    },
    /// Delete a security group (refused while a NIC is in it or another group's rule names
    /// it).
    DeleteSecurityGroup {
        /// The group.
        name: String,
    },
    /// Add a rule to a security group (its id is assigned).
    AddSgRule {
        /// The group.
        group: String,
        /// The rule.
        rule: SgRule,
    },
    /// Delete a rule of a security group.
    DeleteSgRule {
        /// The group.
        group: String,
        /// The rule's id.
        id: u32,
    },
    /// Every router, or those `filter` lets through.
    ListRouters {
        /// Which routers.
        filter: RouterFilter,
    },
    /// Create a router (no interface, no route).
    CreateRouter {
        /// The router.
        request: CreateRouterRequest,
    },
    /// One router.
    ShowRouter {
        /// The router.
        name: String,
    },
    /// Delete a router (refused while a network is attached).
    DeleteRouter {
        /// The router.
        name: String,
    },
    /// Attach a network to a router (its interface: the network's gateway).
    AttachNetwork {
        /// The router.
        router: String,
        /// The network and the gateway asked for.
        request: AttachNetworkRequest,
    },
    /// Detach a network from a router (refused while static routes go through it).
    DetachNetwork {
        /// The router.
        router: String,
        /// The network.
        network: String,
    },
    /// Add a static route to a router.
    AddRoute {
        /// The router.
        router: String,
        /// The route.
        route: RouterStaticRoute,
    },
    /// Delete a router's static route.
    DeleteRoute {
        /// The router.
        router: String,
        /// Its destination prefix, `A.B.C.D/L`.
        prefix: String,
    },
    /// Give a router its uplink on an external network.
    SetUplink {
        /// The router.
        router: String,
        /// The network and the router's address on it.
        request: SetUplinkRequest,
    },
    /// Remove a router's uplink (refused while it has floating IPs or routes through it).
    RemoveUplink {
        /// The router.
        router: String,
    },
    /// Every floating IP, or those `filter` lets through.
    ListFloatingIps {
        /// Which floating IPs.
        filter: FloatingIpFilter,
    },
    /// Give a VM's NIC a floating IP.
    AddFloatingIp {
        /// The VM.
        vm: String,
        /// The address and the NIC.
        request: AddFloatingIpRequest,
    },
    /// Delete a VM's floating IP.
    DeleteFloatingIp {
        /// The VM.
        vm: String,
        /// The floating IP, `A.B.C.D`.
        ip: String,
    },
    /// The tasks kept, or those `filter` lets through.
    ListTasks {
        /// Which tasks.
        filter: TaskFilter,
    },
    /// One task; with `wait_s`, once it has ended or after that many seconds.
    ShowTask {
        /// The task.
        id: u64,
        /// Seconds to wait for its end (0–60).
        wait_s: Option<u64>,
    },
    /// Cancel a task (where its operation allows it).
    CancelTask {
        /// The task.
        id: u64,
    },
}

/// What a command returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Hosts (`ListHosts`).
    Hosts(Vec<HostSummary>),
    /// One host (`ShowHost`, `UpdateHost`).
    Host(HostSummary),
    /// A host was fenced (`FenceHost`).
    Fenced(FenceOutcome),
    /// The cluster settings (`GetSettings`, `PutSettings`).
    Settings(ClusterSettings),
    /// A new join token (`CreateJoinToken`).
    JoinToken(JoinTokenResponse),
    /// The asking token's new secret (`RotateToken`).
    Token(TokenResponse),
    /// API tokens (`ListTokens`).
    Tokens(Vec<TokenSummary>),
    /// A token was created, with its secret (`CreateToken`).
    TokenCreated(NewToken),
    /// VMs (`ListVms`).
    Vms(Vec<VmSummary>),
    /// One VM (`ShowVm`, `UpdateVm`, `StartVm`, `StopVm`, `RebootVm`).
    Vm(VmSummary),
    /// A VM was created (`CreateVm`).
    VmCreated(VmSummary),
    /// A migration's progress (`ShowMigration`).
    Migration(MigrationProgress),
    /// A migration was accepted and runs in the background (`MigrateVm`,
    /// `ApplyRecommendation`).
    MigrationStarted(MigrationProgress),
    /// A console log tail (`ConsoleLog`).
    Console(ConsoleLog),
    /// The event history (`ListEvents`).
    Events(Vec<Event>),
    /// The revoked host certificates (`ListRevokedCertificates`).
    RevokedCertificates(Vec<vinfra_types::api::RevokedCertificate>),
    /// The flows grouped (`TopFlows`).
    Flows(vinfra_types::flows::FlowReport),
    /// Placement rules (`ListRules`).
    Rules(Vec<PlacementRule>),
    /// One placement rule (`ShowRule`).
    Rule(PlacementRule),
    /// A rule was created (`CreateRule`).
    RuleCreated(PlacementRule),
    /// The cluster's HA status (`ShowHa`).
    Ha(Box<HaStatus>),
    /// The balancer's status (`DrsStatus`, `DrsRun`).
    Drs(DrsStatus),
    /// The recommendations waiting (`ListRecommendations`).
    Recommendations(Vec<Recommendation>),
    /// Networks (`ListNetworks`).
    Networks(Vec<NetworkSummary>),
    /// One network (`ShowNetwork`).
    Network(NetworkSummary),
    /// A network was created (`CreateNetwork`).
    NetworkCreated(NetworkSummary),
    /// A network's counters (`NetworkCounters`).
    NetworkCounters(NetworkCounters),
    /// A host's switch counters (`HostSwitch`).
    HostSwitch(HostSwitchCounters),
    /// A VM's NIC counters (`VmCounters`).
    VmCounters(VmCounters),
    /// Security groups (`ListSecurityGroups`).
    SecurityGroups(Vec<SecurityGroupSummary>),
    /// One security group (`ShowSecurityGroup`).
    SecurityGroup(SecurityGroupSummary),
    /// A security group's counters (`SecurityGroupCounters`).
    SecurityGroupCounters(SecurityGroupCounters),
    /// A security group was created (`CreateSecurityGroup`).
    SecurityGroupCreated(SecurityGroupSummary),
    /// A rule was added, with its id (`AddSgRule`).
    SgRuleCreated(SgRule),
    /// Routers (`ListRouters`).
    Routers(Vec<RouterSummary>),
    /// One router (`ShowRouter`).
    Router(RouterSummary),
    /// A router was created (`CreateRouter`).
    RouterCreated(RouterSummary),
    /// A network was attached to a router: the router's interface on it (`AttachNetwork`).
    NetworkAttached(RouterAttachment),
    /// A static route was added (`AddRoute`).
    RouteCreated(RouterStaticRoute),
    /// A router's uplink, with its edge and standby (`SetUplink`).
    Uplink(UplinkSummary),
    /// Floating IPs (`ListFloatingIps`).
    FloatingIps(Vec<FloatingIpSummary>),
    /// A floating IP was added (`AddFloatingIp`).
    FloatingIpCreated(FloatingIpSummary),
    /// Tasks (`ListTasks`).
    Tasks(Vec<Task>),
    /// One task (`ShowTask`, `CancelTask`, `CancelMigration`).
    Task(Task),
    /// The object is gone (or the action was carried out) and there is nothing to show.
    Done,
}

/// What [`ConsoleApi::submit`] answers: the reply of a command that is not run as a task, or
/// the task of one that is (accepted; maybe ended already).
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// The command ran to its end.
    Done(Reply),
    /// The command was accepted and runs (or ran) as this task.
    Task(Task),
}

/// What a transport needs of the console: find who a bearer token is, run a command on their
/// behalf. The REST API is generic over it, so its routes are tested (and fuzzed) against a
/// stub. Which role may run which command is the transport's to check (the REST API checks
/// the route, `api::access`) before it calls [`ConsoleApi::execute`].
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
}

/// True when a host update puts it in maintenance: its evacuation follows, as a task.
fn evacuates(update: &UpdateHostRequest) -> bool {
    update.maintenance == Some(true)
}

/// The task a command runs as (its kind, target and how long a restarted console follows
/// it), if it is one of the long operations.
fn task_of(command: &Command) -> Option<(TaskKind, String, u64)> {
    const DEFAULT: u64 = crate::state::tasks::FOLLOW_AFTER_RESTART.as_secs();
    const MIGRATION: u64 = tasks::MIGRATION_FOLLOW_S;
    Some(match command {
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
fn result_of(reply: &Reply) -> Option<serde_json::Value> {
    match reply {
        Reply::Vm(v) | Reply::VmCreated(v) => serde_json::to_value(v).ok(),
        Reply::Migration(p) | Reply::MigrationStarted(p) => serde_json::to_value(p).ok(),
        Reply::Fenced(f) => serde_json::to_value(f).ok(),
        _ => None,
    }
}

/// Hands one command to its resource function (within the actor's scope, see
/// [`ConsoleApi::execute`]).
async fn dispatch(c: &Arc<Console>, actor: &Actor, command: Command) -> Result<Reply, Error> {
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
        Command::ConsoleLog { name, bytes } => {
            Reply::Console(vms::views::console_log(c, &name, bytes).await?)
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
    })
}
