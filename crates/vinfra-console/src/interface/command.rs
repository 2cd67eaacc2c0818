//! Everything the console can be asked to do, as one [`Command`].

use vinfra_types::api::{
    ClusterSettings, CreateVmRequest, MigrateVmRequest, StopVmRequest, UpdateHostRequest,
    UpdateNicRequest, UpdateVmRequest,
};
use vinfra_types::auth::CreateTokenRequest;
use vinfra_types::balancing::PlacementRule;
use vinfra_types::filter::{
    EventFilter, FloatingIpFilter, HostFilter, NetworkFilter, RecommendationFilter,
    RevokedCertificateFilter, RouterFilter, RuleFilter, SecurityGroupFilter, TokenFilter,
};
use vinfra_types::network::CreateNetworkRequest;
use vinfra_types::router::{
    AddFloatingIpRequest, AttachNetworkRequest, CreateRouterRequest, RouterStaticRoute,
    SetUplinkRequest,
};
use vinfra_types::security_group::{SecurityGroup, SgRule};
use vinfra_types::task::TaskFilter;

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
    /// A VM's serial console: its tail, or its log from an offset.
    ConsoleLog {
        /// The VM.
        name: String,
        /// How many bytes at most (default 64 KiB).
        bytes: Option<u64>,
        /// The log offset to start at (a previous answer's `end`); `None`: the tail.
        from: Option<u64>,
    },
    /// Type on a VM's serial console.
    ConsoleInput {
        /// The VM.
        name: String,
        /// What to type.
        text: String,
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
    /// A VM's CPU and memory over the last hour.
    VmUsage {
        /// The VM.
        name: String,
    },
    /// A host's CPU and memory over the last hour.
    HostUsage {
        /// The host.
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
    /// The console's metrics, the gauges computed now (`GET /metrics`).
    Metrics,
}
