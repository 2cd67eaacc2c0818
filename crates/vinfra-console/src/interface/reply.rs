//! Every answer of the console, as one [`Reply`], and what a submitted command gives back.

use vinfra_types::api::{ClusterSettings, ConsoleLog, Event, JoinTokenResponse, TokenResponse};
use vinfra_types::auth::{NewToken, TokenSummary};
use vinfra_types::balancing::{DrsStatus, PlacementRule, Recommendation};
use vinfra_types::ha::{FenceOutcome, HaStatus};
use vinfra_types::network::{HostSwitchCounters, NetworkCounters, NetworkSummary, VmCounters};
use vinfra_types::router::{
    FloatingIpSummary, RouterAttachment, RouterStaticRoute, RouterSummary, UplinkSummary,
};
use vinfra_types::security_group::{SecurityGroupCounters, SecurityGroupSummary, SgRule};
use vinfra_types::task::Task;
use vinfra_types::usage::UsageHistory;
use vinfra_types::{HostSummary, MigrationProgress, VmSummary};

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
    /// VMs were created (`CreateVm` with a count).
    VmsCreated(Vec<VmSummary>),
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
    /// A VM's or a host's last hour of use (`VmUsage`, `HostUsage`).
    Usage(UsageHistory),
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
    /// The metrics in the Prometheus text format (`Metrics`).
    Metrics(String),
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
