//! Why a console operation failed.
//!
//! [`Error`] is what every command answers with when it fails: one typed variant per failure,
//! each of one [`ErrorKind`] (the problem+json `type` the REST API answers with, see
//! docs/design.md "REST API"). A variant's message never repeats its `#[source]`: whoever shows
//! an error to an operator prints the chain ([`vinfra_types::error::chain`]).
//! [`JoinError`] is why a host's join was refused; [`RecordError`] why a stored record could not
//! be read or written; [`FenceCommandError`] why a host's fence command could not be run;
//! [`RouterRefusal`] (in `routers.rs`) why a router operation was refused.

use std::net::Ipv4Addr;

use vinfra_placement::{FitError, ModelError, RuleError};
use vinfra_proto::pki::PkiError;
use vinfra_store::StoreError;
use vinfra_types::ha::{FenceOutcome, HaError};
use vinfra_types::network::{Ipv4Subnet, NetworkError};
use vinfra_types::security_group::SecurityGroupError;
use vinfra_types::vm::SpecError;
use vinfra_types::{NameError, PowerState};

use crate::agents::RequestError;

mod classify;
mod join;
mod kind;
mod routers;
mod words;

pub use join::{FenceCommandError, JoinError, RecordError};
pub use kind::{fit_kind, ErrorKind, Object};
pub use routers::RouterRefusal;
use words::{fence_tail, not_created, sg_users, state_word, vm_list};

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

    /// A create of many VMs (`count`) with a NIC whose address or MAC is fixed: the VMs
    /// would share it.
    #[error(
        "nic {nic} has a fixed ip or mac, which VMs created with a count would share; leave \
         them out (the pool gives each VM its own)"
    )]
    FixedNicInMany {
        /// The NIC's index.
        nic: usize,
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
    /// One VM of a create with `count` was refused (placement, checks, its write): none of
    /// them was created. Its problem kind is that of the refusal.
    #[error("VM '{vm}', one of the {count} asked for, was refused, so none was created")]
    OneOfMany {
        /// The VM refused.
        vm: String,
        /// How many were asked for.
        count: u32,
        /// Why it was refused.
        #[source]
        source: Box<Error>,
    },
    /// Some VMs of a create with `count` were not created by their hosts (each went again, as
    /// a VM created alone does); the others were. Its problem kind is the first failure's.
    #[error("{}", not_created(*.count, .failed))]
    VmsNotCreated {
        /// How many were asked for.
        count: u32,
        /// Each VM not created, and why.
        failed: Vec<(String, Error)>,
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
    /// The VM's migration was cancelled before its switchover.
    #[error("the migration of VM '{vm}' was cancelled; it runs on {host}")]
    MigrationCancelled {
        /// The VM.
        vm: String,
        /// Where it runs (the migration's source).
        host: String,
    },
    /// The host's evacuation was cancelled: it was taken out of maintenance.
    #[error("the evacuation of host '{host}' was cancelled: it was taken out of maintenance")]
    EvacuationCancelled {
        /// The host.
        host: String,
    },
    /// The host's evacuation ended before its running VMs had left it.
    #[error("host '{host}' still has {left} running VM(s) on it: {why}")]
    EvacuationUnfinished {
        /// The host.
        host: String,
        /// How many.
        left: usize,
        /// Why it ended.
        why: String,
    },
    /// The VM's migration failed.
    #[error("the migration of VM '{vm}' from {source_host} to {destination} failed: {reason}")]
    MigrationFailed {
        /// The VM.
        vm: String,
        /// The migration's source.
        source_host: String,
        /// The migration's destination.
        destination: String,
        /// Why, in words.
        reason: String,
    },
    /// The task has ended.
    #[error("task {id} has ended ({state}); there is nothing to cancel")]
    TaskEnded {
        /// The task.
        id: u64,
        /// How it ended.
        state: vinfra_types::task::TaskState,
    },
    /// The console restarted while the task ran, and what the cluster shows since does not
    /// tell that it succeeded.
    #[error("task {task}: the console restarted while it ran; {what}")]
    TaskInterrupted {
        /// The task.
        task: u64,
        /// What the cluster shows.
        what: String,
    },
    /// The task's operation cannot be cancelled.
    #[error("task {id} ({kind}) cannot be cancelled: only a migration can, before its switchover")]
    TaskNotCancellable {
        /// The task.
        id: u64,
        /// What it does.
        kind: vinfra_types::task::TaskKind,
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
        "VM '{vm}' is set to run (on '{host}'); stop it first, or delete it with ?force=true \
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

#[cfg(test)]
mod tests;
