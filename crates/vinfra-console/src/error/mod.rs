//! Why a console operation failed.
//!
//! [`Error`] is what every command answers with when it fails: one typed variant per failure,
//! each of one [`ErrorKind`] (the problem+json `type` the REST API answers with, see
//! docs/design.md "REST API"). A variant's message never repeats its `#[source]`: whoever shows
//! an error to an operator prints the chain ([`vinfra_types::error::chain`]).
//! [`JoinError`] is why a host's join was refused; [`RecordError`] why a stored record could not
//! be read or written; [`FenceCommandError`] why a host's fence command could not be run;
//! [`RouterRefusal`] (in `routers.rs`) why a router operation was refused.

use std::fmt;
use std::net::Ipv4Addr;

use vinfra_placement::{FitError, ModelError, RuleError, Unfit};
use vinfra_proto::pki::PkiError;
use vinfra_store::StoreError;
use vinfra_types::ha::{FenceOutcome, HaError};
use vinfra_types::network::{Ipv4Subnet, NetworkError};
use vinfra_types::security_group::SecurityGroupError;
use vinfra_types::vm::SpecError;
use vinfra_types::{NameError, PowerState};

use crate::agents::RequestError;

mod routers;

pub use routers::RouterRefusal;

/// What kind of object a message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A VM.
    Vm,
    /// A host.
    Host,
    /// A logical network.
    Network,
    /// A placement rule.
    Rule,
    /// A balancer recommendation.
    Recommendation,
    /// The migration of a VM.
    Migration,
    /// A security group.
    SecurityGroup,
    /// A router.
    Router,
    /// An API token.
    Token,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Object::Vm => "VM",
            Object::Host => "host",
            Object::Network => "network",
            Object::Rule => "rule",
            Object::Recommendation => "recommendation",
            Object::Migration => "migration of VM",
            Object::SecurityGroup => "security group",
            Object::Router => "router",
            Object::Token => "token",
        })
    }
}

/// The kind of a failure: one problem type of the REST API each (`/problems/<kind>`), and with
/// it one HTTP status (docs/design.md, "REST API").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range (400).
    InvalidRequest,
    /// The named object does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// No host has room for the VM (409).
    InsufficientCapacity,
    /// The host (or every host) cannot take the VM: disconnected, in maintenance, or without
    /// what the VM's networks need (409).
    HostUnavailable,
    /// Rules contradict each other, or must-rules leave a VM no host (409).
    RuleConflict,
    /// A rule names something that does not exist (422).
    InvalidRule,
    /// A VM's start-after names a VM that does not exist, the VM itself, or closes a circle of
    /// start-afters (422).
    InvalidStartAfter,
    /// The host's agent refused the command (502).
    AgentError,
    /// The connection to the host's agent broke before it answered (502).
    AgentConnectionLost,
    /// The host's agent is not connected (503).
    HostDisconnected,
    /// The host's agent did not answer in time (504).
    AgentTimeout,
    /// A host's fence command failed, timed out or could not be run (502).
    FenceFailed,
    /// Powering the VM on would break the HA admission reserve: some failure of the tolerated
    /// number of hosts would leave an HA VM nowhere to restart (409).
    HaReserve,
    /// The store or the PKI failed (500).
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::InvalidRequest,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::InsufficientCapacity,
        ErrorKind::HostUnavailable,
        ErrorKind::RuleConflict,
        ErrorKind::InvalidRule,
        ErrorKind::InvalidStartAfter,
        ErrorKind::AgentError,
        ErrorKind::AgentConnectionLost,
        ErrorKind::HostDisconnected,
        ErrorKind::AgentTimeout,
        ErrorKind::FenceFailed,
        ErrorKind::HaReserve,
        ErrorKind::Internal,
    ];

    /// The problem type's last path segment (`/problems/<this>`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid-request",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InsufficientCapacity => "insufficient-capacity",
            ErrorKind::HostUnavailable => "host-unavailable",
            ErrorKind::RuleConflict => "rule-conflict",
            ErrorKind::InvalidRule => "invalid-rule",
            ErrorKind::InvalidStartAfter => "invalid-start-after",
            ErrorKind::AgentError => "agent-error",
            ErrorKind::AgentConnectionLost => "agent-connection-lost",
            ErrorKind::HostDisconnected => "host-disconnected",
            ErrorKind::AgentTimeout => "agent-timeout",
            ErrorKind::FenceFailed => "fence-failed",
            ErrorKind::HaReserve => "ha-reserve",
            ErrorKind::Internal => "internal",
        }
    }
}

/// The desired power state in a message.
fn state_word(s: &PowerState) -> &'static str {
    match s {
        PowerState::Running => "running",
        PowerState::Paused => "paused",
        PowerState::Stopped => "stopped",
        PowerState::Incoming => "incoming",
        PowerState::Migrating => "migrating",
        PowerState::Crashed => "crashed",
        PowerState::Unknown => "unknown",
    }
}

/// `: <the output's tail on one line>`, or nothing when the command wrote nothing.
fn fence_tail(o: &FenceOutcome) -> String {
    let tail = o.tail_line();
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// `VMs a, b` or `VM a`, at most the names given, and how many more.
fn vm_list(users: &[String], more: &usize) -> String {
    let total = users.len() + more;
    let mut s = format!(
        "VM{} {}",
        if total == 1 { "" } else { "s" },
        users.join(", ")
    );
    if *more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// `NICs vm nic 0, … and N more; rules of groups a, b`.
fn sg_users(nics: &[String], more: &usize, groups: &[String]) -> String {
    let mut parts = Vec::new();
    if !nics.is_empty() {
        let total = nics.len() + more;
        let mut s = format!(
            "NIC{} {}",
            if total == 1 { "" } else { "s" },
            nics.join(", ")
        );
        if *more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        parts.push(s);
    }
    if !groups.is_empty() {
        parts.push(format!(
            "the rules of group{} {}",
            if groups.len() == 1 { "" } else { "s" },
            groups.join(", ")
        ));
    }
    parts.join(" and ")
}

/// Why a console operation failed. Each variant is of one [`ErrorKind`] (see [`Error::kind`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ----- invalid-request (400) -----
    /// A name in the request is not a valid name.
    #[error("{field}")]
    BadName {
        /// Which field (`host`, `to`, `rule name`, …).
        field: &'static str,
        /// Why the name is invalid.
        #[source]
        source: NameError,
    },
    /// The VM specification is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The network definition is invalid.
    #[error(transparent)]
    NetworkDefinition(#[from] NetworkError),
    /// The settings or allocation ratios are invalid (the validators of vinfra-types say why).
    #[error("{reason}")]
    Settings {
        /// Why, in the validator's words.
        reason: String,
    },
    /// A flows query is out of range (`GET /api/v1/flows`).
    #[error("{reason}")]
    FlowQuery {
        /// Why, in the validator's words.
        reason: String,
    },
    /// A number in the request is out of range.
    #[error("{field} must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// What the request asked for.
        got: u64,
    },
    /// A run-on or not-on rule without VMs or without hosts.
    #[error("a {kind} rule names at least one VM (vms) and one host (hosts)")]
    RuleNeedsVmsAndHosts {
        /// The rule's kind.
        kind: &'static str,
    },
    /// An affinity or anti-affinity rule that names hosts.
    #[error("a {kind} rule names no hosts; use run_on or not_on to tie VMs to hosts")]
    RuleNamesHosts {
        /// The rule's kind.
        kind: &'static str,
    },
    /// An affinity or anti-affinity rule with fewer than two distinct VMs.
    #[error("a {kind} rule names at least two distinct VMs")]
    RuleNeedsTwoVms {
        /// The rule's kind.
        kind: &'static str,
    },
    /// A NIC's address does not parse.
    #[error("nic {index}: '{text}' is not an IPv4 address")]
    NicAddress {
        /// The NIC's index in the spec.
        index: usize,
        /// What was given.
        text: String,
    },
    /// A NIC's address is outside its network's subnet.
    #[error("nic {index}: {ip} is outside the subnet {subnet} of network '{network}'")]
    NicOutsideSubnet {
        /// The NIC's index in the spec.
        index: usize,
        /// The address.
        ip: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Subnet,
        /// The network.
        network: String,
    },
    /// A NIC's address is its subnet's network or broadcast address.
    #[error("nic {index}: {ip} is the network or broadcast address of {subnet}")]
    NicSubnetAddress {
        /// The NIC's index in the spec.
        index: usize,
        /// The address.
        ip: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Subnet,
    },
    /// A NIC's address is its network's gateway.
    #[error("nic {index}: {ip} is reserved for the gateway of network '{network}'")]
    NicGateway {
        /// The NIC's index in the spec.
        index: usize,
        /// The address.
        ip: Ipv4Addr,
        /// The network.
        network: String,
    },
    /// A NIC's MAC does not parse or is not a unicast address.
    #[error("nic {index}")]
    NicMac {
        /// The NIC's index in the spec.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: NetworkError,
    },
    /// A fence command (or another HA value) is not acceptable.
    #[error(transparent)]
    Ha(#[from] HaError),
    /// A security group or one of its rules is not acceptable.
    #[error(transparent)]
    SecurityGroup(#[from] SecurityGroupError),

    // ----- not-found (404) -----
    /// The named object does not exist.
    #[error("{kind} '{name}' not found")]
    NotFound {
        /// What kind of object.
        kind: Object,
        /// Its name.
        name: String,
    },

    /// A VM has no NIC of that index.
    #[error("VM '{vm}' has no nic {index} (it has {count})")]
    NoSuchNic {
        /// The VM.
        vm: String,
        /// The index asked for.
        index: usize,
        /// How many NICs it has.
        count: usize,
    },
    /// A security group has no rule of that id.
    #[error("security group '{group}' has no rule {id}")]
    NoSuchSgRule {
        /// The group.
        group: String,
        /// The rule id asked for.
        id: u32,
    },
    /// A rule's remote_group names a security group that does not exist.
    #[error("remote_group: security group '{remote}' not found")]
    UnknownRemoteGroup {
        /// The group named.
        remote: String,
    },
    /// A NIC names a security group that does not exist.
    #[error("nic {index}: security group '{group}' not found")]
    UnknownNicGroup {
        /// The NIC's index in the spec.
        index: usize,
        /// The group named.
        group: String,
    },

    // ----- conflict (409) -----
    /// The name is taken.
    #[error("a {kind} named '{name}' already exists")]
    NameTaken {
        /// What kind of object.
        kind: Object,
        /// The name.
        name: String,
    },
    /// The name is held by an earlier VM that may still exist on a host.
    #[error(
        "an earlier VM named '{vm}' may still exist on host '{host}' and holds its addresses \
         until that host confirms its removal; try again later"
    )]
    NameReserved {
        /// The VM name.
        vm: String,
        /// The host that may still have it.
        host: String,
    },
    /// Revoking the token would leave no active admin token.
    #[error(
        "token '{name}' is the last active admin token; create another admin token before \
         revoking it"
    )]
    LastAdminToken {
        /// The token.
        name: String,
    },
    /// The record changed between the read and the write.
    #[error("{kind} '{name}' was changed concurrently; try again")]
    Concurrent {
        /// What kind of object.
        kind: Object,
        /// Its name.
        name: String,
    },
    /// Another operation on the VM is in flight.
    #[error("another operation on VM '{vm}' is in progress; try again when it has finished")]
    VmBusy {
        /// The VM.
        vm: String,
    },
    /// The VM is being migrated.
    #[error("VM '{vm}' is being migrated")]
    Migrating {
        /// The VM.
        vm: String,
    },
    /// The VM has no migration to cancel.
    #[error("VM '{vm}' has no migration in progress")]
    NotMigrating {
        /// The VM.
        vm: String,
    },
    /// The VM's desired power state does not allow the operation.
    #[error("VM '{vm}' is {}; only {} VMs {op}", state_word(.state), state_word(.wanted))]
    WrongState {
        /// The VM.
        vm: String,
        /// Its desired power state.
        state: PowerState,
        /// The state the operation needs.
        wanted: PowerState,
        /// The operation (`reboot`, `migrate live`).
        op: &'static str,
    },
    /// Another host reports the VM live: it is not started a second time.
    #[error(
        "VM '{vm}' is {state:?} on host '{host}' although it is placed on '{placed}'; it is not \
         started a second time"
    )]
    LiveElsewhere {
        /// The VM.
        vm: String,
        /// Its state there.
        state: PowerState,
        /// The host that reports it.
        host: String,
        /// The host its record names.
        placed: String,
    },
    /// A migration to the host the VM already runs on.
    #[error("VM '{vm}' already runs on host '{host}'")]
    AlreadyOn {
        /// The VM.
        vm: String,
        /// Its host.
        host: String,
    },
    /// The source host of a migration is disconnected.
    #[error("source host '{host}' is disconnected")]
    SourceDisconnected {
        /// The host.
        host: String,
    },
    /// A delete (without `force`) of a VM that should run.
    #[error(
        "VM '{vm}' is running on '{host}'; stop it first, or delete it with ?force=true \
         (`vinfra vm delete --force`) to stop it at once and delete it"
    )]
    DeleteRunning {
        /// The VM.
        vm: String,
        /// Its host.
        host: String,
    },
    /// A delete (without `force`) of a VM whose host is disconnected.
    #[error(
        "host '{host}' of VM '{vm}' is disconnected; its disks cannot be deleted now (use \
         ?force=true to forget the VM anyway)"
    )]
    DisksUnreachable {
        /// The VM.
        vm: String,
        /// Its host.
        host: String,
    },
    /// A host that still has VMs placed on it cannot be removed.
    #[error(
        "host '{host}' still has VMs placed on it ({}); delete or migrate them first",
        .vms.join(", ")
    )]
    HostInUse {
        /// The host.
        host: String,
        /// Some of its VMs (at most five).
        vms: Vec<String>,
    },
    /// A balancer move whose VM is no longer on the source the plan saw.
    #[error("VM '{vm}' is on host {host} now, not {expected}; run the balancer again")]
    MovedMeanwhile {
        /// The VM.
        vm: String,
        /// Where it is now.
        host: String,
        /// Where the plan saw it.
        expected: String,
    },
    /// A balancing pass asked for while balancing is off.
    #[error("balancing is off; set balancing.mode to manual or automatic first")]
    BalancingOff,
    /// The VNI or VLAN ID asked for belongs to another network.
    #[error("{label} {segment} is already used by network '{network}'")]
    SegmentTaken {
        /// `vni` or `vlan_id`.
        label: &'static str,
        /// The number.
        segment: u32,
        /// The network holding it.
        network: String,
    },
    /// Every VNI or VLAN ID of the automatic range is taken.
    #[error("no free {label} left from {first} to {last}")]
    NoFreeSegment {
        /// `vni` or `vlan_id`.
        label: &'static str,
        /// Start of the range.
        first: u32,
        /// End of the range.
        last: u32,
    },
    /// Every switch network number is taken.
    #[error("no free switch network number left")]
    NoFreeSwitchId,
    /// The network's name or number was taken between the check and the write.
    #[error("network '{network}' or {label} {segment} was taken meanwhile; try again")]
    NetworkRaced {
        /// The network.
        network: String,
        /// `vni` or `vlan_id`.
        label: &'static str,
        /// The number.
        segment: u32,
    },
    /// A network with NICs on it cannot be deleted.
    #[error("network '{network}' is in use by {}; delete them first", vm_list(.users, .more))]
    NetworkInUse {
        /// The network.
        network: String,
        /// The first VMs with a NIC on it (with a note when being removed from a host).
        users: Vec<String>,
        /// How many more.
        more: usize,
    },
    /// A security group that NICs are in, or that other groups' rules name as their remote,
    /// cannot be deleted.
    #[error(
        "security group '{group}' is in use by {}; detach it and change those rules first",
        sg_users(.nics, .more, .groups)
    )]
    SecurityGroupInUse {
        /// The group.
        group: String,
        /// The first NICs in it, `vm nic N`.
        nics: Vec<String>,
        /// How many more NICs.
        more: usize,
        /// The other groups whose rules name it as remote_group.
        groups: Vec<String>,
    },
    /// Two NICs of the VM ask for the same address.
    #[error("nic {index}: {ip} is given to two NICs of this VM")]
    NicAddressTwice {
        /// The NIC's index in the spec.
        index: usize,
        /// The address.
        ip: Ipv4Addr,
    },
    /// The address is held by another VM.
    #[error("nic {index}: {ip} on network '{network}' is taken by VM '{holder}'")]
    NicAddressTaken {
        /// The NIC's index in the spec.
        index: usize,
        /// The address.
        ip: Ipv4Addr,
        /// The network.
        network: String,
        /// The VM holding it.
        holder: String,
    },
    /// The network's subnet has no free address.
    #[error("network '{network}' ({subnet}) has no free address left")]
    NetworkFull {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Subnet,
    },
    /// Two NICs of the VM ask for the same MAC.
    #[error("nic {index}: MAC {mac} is given to two NICs of this VM")]
    NicMacTwice {
        /// The NIC's index in the spec.
        index: usize,
        /// The MAC.
        mac: String,
    },
    /// The MAC is held by another VM.
    #[error("nic {index}: MAC {mac} is taken by VM '{holder}'")]
    NicMacTaken {
        /// The NIC's index in the spec.
        index: usize,
        /// The MAC.
        mac: String,
        /// The VM holding it.
        holder: String,
    },
    /// Every MAC of the console's range is taken.
    #[error("no free MAC address left in 02:76:66:00:00:00/24")]
    NoFreeMac,
    /// The cluster model could not be built (to check a rule, to place a VM).
    #[error("the cluster model cannot be built")]
    Model(#[source] ModelError),
    /// The HA restart plan could not be made (a VM listed twice, or still counted running).
    #[error("the restart plan cannot be made")]
    Restart(#[source] vinfra_ha::RestartError),
    /// A power-on (create with start, start, HA turned on for a running VM) refused by
    /// admission control: with it, some failure scenario would leave HA VMs unplaced. The
    /// message names the reserve, the hosts whose failure, the shortfall and the VMs.
    #[error("{0}")]
    HaReserve(Box<vinfra_ha::Refusal>),
    /// A fence of a host without a fence command.
    #[error(
        "host '{host}' has no fence command; set one with `vinfra host set {host} \
         --fence-command CMD`"
    )]
    NoFenceCommand {
        /// The host.
        host: String,
    },
    /// A fence (without `force`) of a host whose agent is connected.
    #[error(
        "host '{host}' is connected; fencing it powers off a running host (use ?force=true, \
         `vinfra host fence {host} --force`, to fence it anyway)"
    )]
    FenceConnected {
        /// The host.
        host: String,
    },
    /// A fence of a host whose fence command runs already.
    #[error("host '{host}' is being fenced already; wait for that fence to end")]
    FenceInProgress {
        /// The host.
        host: String,
    },

    // ----- invalid-start-after (422) -----
    /// A VM's start-after names a VM that does not exist.
    #[error("VM '{vm}': start_after names VM '{start_after}', which does not exist")]
    StartAfterUnknown {
        /// The VM.
        vm: String,
        /// The VM it names.
        start_after: String,
    },
    /// A VM's start-after names the VM itself.
    #[error("VM '{vm}': start_after names the VM itself")]
    StartAfterSelf {
        /// The VM.
        vm: String,
    },
    /// A VM's start-after closes a circle of start-afters.
    #[error(
        "VM '{vm}': start_after '{start_after}' makes a start-after cycle: {}",
        .cycle.join(" -> ")
    )]
    StartAfterCycle {
        /// The VM.
        vm: String,
        /// The VM it names.
        start_after: String,
        /// The circle, from the VM back to it.
        cycle: Vec<String>,
    },

    // ----- fence-failed (502) -----
    /// A host's fence command ran and did not exit 0 (or ran out of time).
    #[error(
        "fencing host '{}' failed: {}{}",
        .outcome.host,
        .outcome.ending(),
        fence_tail(.outcome)
    )]
    FenceFailed {
        /// What the command did.
        outcome: Box<FenceOutcome>,
    },
    /// A host's fence command could not be run.
    #[error("fencing host '{host}' failed")]
    FenceNotRun {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: FenceCommandError,
    },

    // ----- insufficient-capacity, host-unavailable, rule-conflict (409); not-found (404) -----
    /// The host named cannot take the VM, or no host can (the explanation names every host
    /// and why). Its kind follows the reason (see [`fit_kind`]).
    #[error(transparent)]
    Fit(FitError),

    // ----- rule-conflict (409), invalid-rule (422) -----
    /// The rules refuse: they contradict each other (rule-conflict), or name something that
    /// does not exist (invalid-rule).
    #[error(transparent)]
    Rules(RuleError),
    /// A rule names a host that is not registered.
    #[error("rule '{rule}' names host '{host}', which is not registered")]
    RuleUnknownHost {
        /// The rule.
        rule: String,
        /// The host.
        host: String,
    },

    // ----- invalid-request (400), not-found (404), conflict (409) -----
    /// A router operation was refused (its kind by the refusal, see [`Error::kind`]).
    #[error(transparent)]
    Router(#[from] RouterRefusal),

    // ----- agent-error, agent-connection-lost, host-disconnected, agent-timeout -----
    /// The host's agent failed or could not be reached.
    #[error(transparent)]
    Agent(#[from] RequestError),

    // ----- internal (500) -----
    /// The store failed.
    #[error("store")]
    Store(#[from] RecordError),
    /// Certificate or token handling failed.
    #[error("PKI")]
    Pki(#[from] PkiError),
    /// A stored network record cannot be used.
    #[error("network '{network}' is stored with a bad {field}")]
    CorruptNetwork {
        /// The network.
        network: String,
        /// The field.
        field: &'static str,
    },
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(RecordError::Store(e))
    }
}

impl From<vinfra_types::router::RouterRequestError> for Error {
    fn from(e: vinfra_types::router::RouterRequestError) -> Self {
        Error::Router(RouterRefusal::Definition(e))
    }
}

impl From<ModelError> for Error {
    /// A refused rule set: a taken name is [`Error::NameTaken`], a rule problem
    /// [`Error::Rules`], anything else [`Error::Model`].
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Rule(RuleError::DuplicateRule { rule }) => Error::NameTaken {
                kind: Object::Rule,
                name: rule,
            },
            ModelError::Rule(e) => Error::Rules(e),
            other => Error::Model(other),
        }
    }
}

impl From<FitError> for Error {
    /// A refused model is what [`From<ModelError>`] makes of it; any other refusal
    /// [`Error::Fit`].
    fn from(e: FitError) -> Self {
        match e {
            FitError::Model(m) => m.into(),
            other => Error::Fit(other),
        }
    }
}

/// The kind of a placement refusal, by its reason: a host that is not registered is
/// not-found, a request for nothing invalid-request, a VM placed already or not running a
/// conflict. A host named that cannot take the VM: by why (capacity: insufficient-capacity; a
/// must-rule: rule-conflict; anything else, such as no trunk, too small an underlay MTU,
/// disconnected, maintenance: host-unavailable). No host at all: rule-conflict when a
/// must-rule keeps the VM off a host, else insufficient-capacity when a host short of
/// capacity would otherwise take it, else host-unavailable.
pub fn fit_kind(e: &FitError) -> ErrorKind {
    let by_reason = |u: &Unfit| match u {
        Unfit::Capacity(_) => ErrorKind::InsufficientCapacity,
        Unfit::MustRule { .. } => ErrorKind::RuleConflict,
        _ => ErrorKind::HostUnavailable,
    };
    match e {
        FitError::UnknownHost { .. } => ErrorKind::NotFound,
        FitError::EmptyRequest { .. } => ErrorKind::InvalidRequest,
        FitError::AlreadyPlaced { .. } | FitError::NotRunning { .. } | FitError::Model(_) => {
            ErrorKind::Conflict
        }
        FitError::HostUnfit { unfit, .. } => by_reason(unfit),
        FitError::NoHost(n) => {
            let has = |f: fn(&Unfit) -> bool| n.groups.iter().any(|g| f(&g.reason));
            if has(|u| matches!(u, Unfit::MustRule { .. })) {
                ErrorKind::RuleConflict
            } else if has(|u| matches!(u, Unfit::Capacity(_))) {
                ErrorKind::InsufficientCapacity
            } else {
                ErrorKind::HostUnavailable
            }
        }
    }
}

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(kind: Object, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// The problem kind (and so the HTTP status) of this failure.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::BadName { .. }
            | Error::Spec(_)
            | Error::NetworkDefinition(_)
            | Error::Settings { .. }
            | Error::FlowQuery { .. }
            | Error::OutOfRange { .. }
            | Error::RuleNeedsVmsAndHosts { .. }
            | Error::RuleNamesHosts { .. }
            | Error::RuleNeedsTwoVms { .. }
            | Error::NicAddress { .. }
            | Error::NicOutsideSubnet { .. }
            | Error::NicSubnetAddress { .. }
            | Error::NicGateway { .. }
            | Error::NicMac { .. }
            | Error::Ha(_)
            | Error::SecurityGroup(_) => K::InvalidRequest,
            Error::NotFound { .. }
            | Error::NoSuchNic { .. }
            | Error::NoSuchSgRule { .. }
            | Error::UnknownRemoteGroup { .. }
            | Error::UnknownNicGroup { .. } => K::NotFound,
            Error::NameTaken { .. }
            | Error::NameReserved { .. }
            | Error::LastAdminToken { .. }
            | Error::Concurrent { .. }
            | Error::VmBusy { .. }
            | Error::Migrating { .. }
            | Error::NotMigrating { .. }
            | Error::WrongState { .. }
            | Error::LiveElsewhere { .. }
            | Error::AlreadyOn { .. }
            | Error::SourceDisconnected { .. }
            | Error::DisksUnreachable { .. }
            | Error::DeleteRunning { .. }
            | Error::HostInUse { .. }
            | Error::MovedMeanwhile { .. }
            | Error::BalancingOff
            | Error::SegmentTaken { .. }
            | Error::NoFreeSegment { .. }
            | Error::NoFreeSwitchId
            | Error::NetworkRaced { .. }
            | Error::NetworkInUse { .. }
            | Error::SecurityGroupInUse { .. }
            | Error::NicAddressTwice { .. }
            | Error::NicAddressTaken { .. }
            | Error::NetworkFull { .. }
            | Error::NicMacTwice { .. }
            | Error::NicMacTaken { .. }
            | Error::NoFreeMac
            | Error::Model(_)
            | Error::NoFenceCommand { .. }
            | Error::FenceConnected { .. }
            | Error::FenceInProgress { .. } => K::Conflict,
            Error::StartAfterUnknown { .. }
            | Error::StartAfterSelf { .. }
            | Error::StartAfterCycle { .. } => K::InvalidStartAfter,
            Error::FenceFailed { .. } | Error::FenceNotRun { .. } => K::FenceFailed,
            Error::Fit(e) => fit_kind(e),
            Error::HaReserve(_) => K::HaReserve,
            Error::Rules(e) => match e {
                RuleError::EmptyRule { .. } | RuleError::UnknownHost { .. } => K::InvalidRule,
                RuleError::DuplicateRule { .. } => K::Conflict,
                _ => K::RuleConflict,
            },
            Error::RuleUnknownHost { .. } => K::InvalidRule,
            Error::Router(r) => match r {
                RouterRefusal::Definition(_) | RouterRefusal::OutsideSubnet { .. } => {
                    K::InvalidRequest
                }
                RouterRefusal::NoInterface { .. }
                | RouterRefusal::NoRoute { .. }
                | RouterRefusal::NoUplink { .. }
                | RouterRefusal::NoFloatingIp { .. } => K::NotFound,
                RouterRefusal::InUse { .. }
                | RouterRefusal::NetworkAttached { .. }
                | RouterRefusal::SubnetOverlap { .. }
                | RouterRefusal::GatewayMismatch { .. }
                | RouterRefusal::GatewayTaken { .. }
                | RouterRefusal::RouteExists { .. }
                | RouterRefusal::ViaUnreachable { .. }
                | RouterRefusal::ViaGateway { .. }
                | RouterRefusal::RoutesVia { .. }
                | RouterRefusal::NoFreeId
                | RouterRefusal::UplinkExists { .. }
                | RouterRefusal::UplinkNotVlan { .. }
                | RouterRefusal::NetworkIsUplink { .. }
                | RouterRefusal::AddressTaken { .. }
                | RouterRefusal::NicAddressReserved { .. }
                | RouterRefusal::UplinkFloatingIps { .. }
                | RouterRefusal::FloatingIpsOn { .. }
                | RouterRefusal::NicNoAddress { .. }
                | RouterRefusal::NicNoUplink { .. }
                | RouterRefusal::NicHasFloatingIp { .. } => K::Conflict,
            },
            Error::Agent(a) => match a {
                RequestError::NotConnected { .. } => K::HostDisconnected,
                RequestError::Timeout { .. } => K::AgentTimeout,
                RequestError::ConnectionLost { .. } => K::AgentConnectionLost,
                RequestError::Agent { .. } => K::AgentError,
            },
            Error::Store(_) | Error::Pki(_) | Error::CorruptNetwork { .. } | Error::Restart(_) => {
                K::Internal
            }
        }
    }
}

/// Why a host's join was refused; the chain of it goes back to the agent.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The join token does not parse.
    #[error("join token refused")]
    TokenMalformed(#[source] PkiError),
    /// The join token was issued by another cluster's CA.
    #[error("join token refused: it was issued by another cluster")]
    OtherCluster,
    /// The join token is unknown or was used.
    #[error("join token refused: unknown or already used")]
    TokenUnknown,
    /// The join token expired.
    #[error("join token refused: expired")]
    TokenExpired,
    /// The token was used, or the host name registered, between the check and the write.
    #[error("join token refused: already used, or the host name was registered meanwhile")]
    TokenRaced,
    /// The host name is invalid.
    #[error("host name")]
    Name(#[from] NameError),
    /// A host with this name is already registered.
    #[error("a host named '{0}' is already registered")]
    HostExists(String),
    /// The CSR could not be signed.
    #[error("certificate request")]
    Csr(#[source] PkiError),
    /// A certificate renewal for a host that is not (or no longer) registered.
    #[error(
        "host '{0}' is not registered (removed from the cluster?): its certificate is not renewed"
    )]
    NotRegistered(String),
    /// A renewal long before the host's newest certificate is due.
    #[error("host '{host}' renews too early: its newest certificate is not due for {in_s} s")]
    RenewTooEarly {
        /// The host.
        host: String,
        /// Seconds until a renewal is taken.
        in_s: u64,
    },
    /// The store failed.
    #[error("store")]
    Store(#[from] RecordError),
}

impl From<StoreError> for JoinError {
    fn from(e: StoreError) -> Self {
        JoinError::Store(RecordError::Store(e))
    }
}

/// Why a host's fence command could not be run (it did not get to exit).
#[derive(Debug, thiserror::Error)]
pub enum FenceCommandError {
    /// The pipe for its output could not be made.
    #[error("cannot make a pipe for its output")]
    Pipe(#[source] std::io::Error),
    /// `sh` could not be started.
    #[error("cannot start sh")]
    Spawn(#[source] std::io::Error),
    /// Waiting for it failed.
    #[error("cannot wait for it")]
    Wait(#[source] std::io::Error),
    /// The thread that ran it panicked or was cancelled.
    #[error("the thread that ran it ended unexpectedly")]
    Thread(#[source] tokio::task::JoinError),
}

/// Why a stored record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be decoded.
    #[error("record {key} is corrupt")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("encoding a record")]
    Encode(#[source] serde_json::Error),
    /// Every VM slot (2^32) was handed out.
    #[error("every VM slot was handed out")]
    SlotsExhausted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_do_not_repeat_their_source() {
        let e = Error::BadName {
            field: "host",
            source: NameError::Empty,
        };
        assert_eq!(vinfra_types::error::chain(&e), "host: name is empty");
        let users = Error::NetworkInUse {
            network: "blue".into(),
            users: vec!["a".into()],
            more: 0,
        };
        assert_eq!(
            users.to_string(),
            "network 'blue' is in use by VM a; delete them first"
        );
        let many = Error::NetworkInUse {
            network: "blue".into(),
            users: vec!["a".into(), "b".into()],
            more: 3,
        };
        assert_eq!(
            many.to_string(),
            "network 'blue' is in use by VMs a, b and 3 more; delete them first"
        );
    }
}
