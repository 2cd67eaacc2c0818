//! Key layout of the console's store and the JSON records kept under each key, with the helpers
//! that read and write them.
//!
//! | key | record |
//! |---|---|
//! | `/vinfra/hosts/<name>` | [`HostRecord`] |
//! | `/vinfra/vms/<name>` | [`VmRecord`] |
//! | `/vinfra/settings` | [`vinfra_types::api::ClusterSettings`] |
//! | `/vinfra/migrations/<vm>` | [`MigrationRecord`] |
//! | `/vinfra/events/<seq, 20 digits>` | [`vinfra_types::api::Event`] |
//! | `/vinfra/rules/<name>` | [`vinfra_types::balancing::PlacementRule`] |
//! | `/vinfra/security-groups/<name>` | [`SecurityGroupRecord`] |
//! | `/vinfra/routers/<name>` | [`RouterRecord`] |
//! | `/vinfra/networks/<name>` | [`NetworkRecord`] (definition and IPAM) |
//! | `/vinfra/segments/{vni,vlan,switch,router}/<n>` | [`SegmentClaim`] |
//! | `/vinfra/macs/<mac>` | [`MacClaim`] |
//! | `/vinfra/cleanups/<host>/<vm>/<id>` | [`CleanupRecord`]: a VM that may still exist on a host |
//! | `/vinfra/auth/tokens/<name>` | [`ApiTokenRecord`] (hash, role, expiry, revocation) |
//! | `/vinfra/auth/api-token` | [`ApiTokenRecord`] of a cluster from before named tokens: moved to `/vinfra/auth/tokens/bootstrap` at start |
//! | `/vinfra/auth/join-tokens/<secret hash>` | [`JoinTokenRecord`] |
//! | `/vinfra/revoked-certificates/<serial>` | [`RevokedCertRecord`]: a removed host's certificate, until it expires |
//! | `/vinfra/vm-slot-next` | the next VM slot to hand out (a JSON number; [`VmRecord::slot`]) |

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;
use vinfra_store::{KeyValue, Revision, Store};
use vinfra_types::auth::Role;
use vinfra_types::{Accel, AllocationRatios, HostCapacity, VmSpec};

use crate::error::RecordError;

/// Prefix of every host record.
pub const HOSTS: &str = "/vinfra/hosts/";
/// Prefix of every VM record.
pub const VMS: &str = "/vinfra/vms/";
/// The next VM slot to hand out ([`VmRecord::slot`]): slots are never reused, also not those
/// of deleted VMs, whose disks may outlive them.
pub const VM_SLOT_NEXT: &str = "/vinfra/vm-slot-next";
/// Prefix of every migration record.
pub const MIGRATIONS: &str = "/vinfra/migrations/";
/// Prefix of the event history.
pub const EVENTS: &str = "/vinfra/events/";
/// Prefix of the placement rules.
pub const RULES: &str = "/vinfra/rules/";
/// Prefix of the security groups.
pub const SECURITY_GROUPS: &str = "/vinfra/security-groups/";
/// Prefix of the routers.
pub const ROUTERS: &str = "/vinfra/routers/";
/// Prefix of the logical networks (definition and IPAM).
pub const NETWORKS: &str = "/vinfra/networks/";
/// Prefix of the VNI and VLAN ID claims (one network each).
pub const SEGMENTS: &str = "/vinfra/segments/";
/// Prefix of the MAC claims (one NIC each, cluster-wide).
pub const MACS: &str = "/vinfra/macs/";
/// Prefix of the cleanup markers: VMs the console no longer has a record of that may still
/// exist on a host (see [`CleanupRecord`]).
pub const CLEANUPS: &str = "/vinfra/cleanups/";
/// Cluster settings.
pub const SETTINGS: &str = "/vinfra/settings";
/// The single API token of a cluster from before named tokens (moved to
/// [`api_token_key`]`(`[`BOOTSTRAP_TOKEN`]`)` at start).
pub const API_TOKEN: &str = "/vinfra/auth/api-token";
/// Prefix of the named API tokens.
pub const API_TOKENS: &str = "/vinfra/auth/tokens/";
/// Name of the admin token the console creates at first start (or moves a cluster's single
/// token of before named tokens to).
pub const BOOTSTRAP_TOKEN: &str = "bootstrap";
/// Prefix of the outstanding join tokens.
pub const JOIN_TOKENS: &str = "/vinfra/auth/join-tokens/";
/// Prefix of the revoked host certificates ([`RevokedCertRecord`]).
pub const REVOKED_CERTS: &str = "/vinfra/revoked-certificates/";

/// Most events kept in the history.
pub const MAX_EVENTS: usize = 1000;
/// Prefix of the tasks, by their id (20 digits, so that keys sort as numbers).
pub const TASKS: &str = "/vinfra/tasks/";
/// The task ids below this one are reserved (given out, or skipped after a restart).
pub const TASK_NEXT: &str = "/vinfra/task-next";

/// The record of host `name`.
pub fn host_key(name: &str) -> String {
    format!("{HOSTS}{name}")
}
/// The API token `name`.
pub fn api_token_key(name: &str) -> String {
    format!("{API_TOKENS}{name}")
}
/// The record of VM `name`.
pub fn vm_key(name: &str) -> String {
    format!("{VMS}{name}")
}
/// The migration record of VM `vm`.
pub fn migration_key(vm: &str) -> String {
    format!("{MIGRATIONS}{vm}")
}
/// Event number `seq` (20 digits, so keys sort by number).
pub fn event_key(seq: u64) -> String {
    format!("{EVENTS}{seq:020}")
}
/// The task `id`.
pub fn task_key(id: u64) -> String {
    format!("{TASKS}{id:020}")
}
/// The placement rule `name`.
pub fn rule_key(name: &str) -> String {
    format!("{RULES}{name}")
}
/// The security group `name`.
pub fn security_group_key(name: &str) -> String {
    format!("{SECURITY_GROUPS}{name}")
}
/// The router `name`.
pub fn router_key(name: &str) -> String {
    format!("{ROUTERS}{name}")
}
/// The record of network `name`.
pub fn network_key(name: &str) -> String {
    format!("{NETWORKS}{name}")
}
/// The claim of a number in one of the spaces `vni`, `vlan`, `switch` (a network's switch id) or
/// `router` (a router's switch id).
pub fn segment_key(space: &str, id: u32) -> String {
    format!("{SEGMENTS}{space}/{id}")
}
/// The claim of a MAC address (lower case).
pub fn mac_key(mac: &str) -> String {
    format!("{MACS}{mac}")
}
/// The cleanup marker of VM `vm` (id `id`) on `host`.
pub fn cleanup_key(host: &str, vm: &str, id: Uuid) -> String {
    format!("{CLEANUPS}{host}/{vm}/{id}")
}
/// The prefix of every cleanup marker on `host`.
pub fn cleanup_prefix(host: &str) -> String {
    format!("{CLEANUPS}{host}/")
}
/// The host a cleanup marker key names.
pub fn cleanup_host(key: &str) -> Option<&str> {
    key.strip_prefix(CLEANUPS)?.split('/').next()
}
/// The VM a cleanup marker key names.
pub fn cleanup_vm(key: &str) -> Option<&str> {
    key.strip_prefix(CLEANUPS)?.split('/').nth(1)
}
/// The revoked certificate with this serial (lower-case hex).
pub fn revoked_cert_key(serial: &str) -> String {
    format!("{REVOKED_CERTS}{serial}")
}
/// The outstanding join token whose secret hashes to `secret_hash`.
pub fn join_token_key(secret_hash: &str) -> String {
    format!("{JOIN_TOKENS}{secret_hash}")
}

/// The desired power state of a VM: what the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredPower {
    /// The VM should run.
    Running,
    /// The VM should not run.
    Stopped,
}

impl DesiredPower {
    /// The same state in the API's vocabulary.
    pub fn power_state(self) -> vinfra_types::PowerState {
        match self {
            DesiredPower::Running => vinfra_types::PowerState::Running,
            DesiredPower::Stopped => vinfra_types::PowerState::Stopped,
        }
    }
}

/// A VM's desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// The VM's identity on every host (stays the same across migrations).
    pub id: Uuid,
    /// What the operator asked for, with the NICs' addresses and MACs filled in.
    pub spec: VmSpec,
    /// Host it is placed on; changes only when a migration completes.
    pub host: String,
    /// Whether it should run.
    pub desired: DesiredPower,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// When the guest was first started (uptime survives migration).
    pub started_at: Option<u64>,
    /// The last time HA restarted it on another host: a copy of it that its old host still
    /// reports is stale (see `controllers::vm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_over: Option<FailedOver>,
    /// How many times HA restarted it on its host after a crash.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// Its cluster-unique number, never reused: hosts run its QEMU as the user `uid base +
    /// slot` (`vinfra_proto::VmInstance::slot`). Given at create; a record from before slots
    /// gets one when the console loads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    /// Its CPU model and machine type, chosen at create and the same on every host it runs
    /// on; `None` for a VM created before they were recorded, or on a host that did not say
    /// what it runs (not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<vinfra_types::VmPlatform>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An HA restart of a VM on another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedOver {
    /// The host it ran on, lost.
    pub from: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

impl VmRecord {
    /// Identity and specification as an agent takes it.
    pub fn instance(&self) -> vinfra_proto::VmInstance {
        vinfra_proto::VmInstance {
            id: self.id,
            spec: self.spec.clone(),
            started_at: self.started_at,
            slot: self.slot,
            platform: self.platform.clone(),
        }
    }
}

/// A registered host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's name (from its certificate).
    pub name: String,
    /// Address the agent reported (at join: the address it connected from).
    pub address: String,
    /// Seconds since the Unix epoch.
    pub joined_at: u64,
    /// Allocation ratios of this host instead of the cluster's.
    pub ratio_override: Option<AllocationRatios>,
    /// In maintenance: takes no new VMs, and the balancer evacuates it.
    pub maintenance: bool,
    /// Last capacity the agent reported, kept across console restarts.
    #[serde(default)]
    pub capacity: Option<HostCapacity>,
    /// Last accelerator the agent reported.
    #[serde(default)]
    pub accel: Option<Accel>,
    /// Last QEMU version the agent reported.
    #[serde(default)]
    pub qemu_version: Option<String>,
    /// The host's CPU and what its QEMU offers, as its agent said at its last Hello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<vinfra_types::HostPlatform>,
    /// The host's VLAN trunk interface as its agent said at its last Hello.
    #[serde(default)]
    pub trunk: Option<String>,
    /// The host's underlay IP MTU as its agent said at its last Hello (1500 before that, and
    /// for agents that do not say).
    #[serde(default = "vinfra_types::network::default_underlay_mtu")]
    pub underlay_mtu: u32,
    /// The host's out-of-band fence command (run with `sh -c`); never shown by the API: it
    /// may hold credentials of the host's BMC.
    #[serde(default)]
    pub fence_command: Option<String>,
    /// When its fence command last succeeded, seconds since the Unix epoch; cleared at its
    /// agent's next Hello.
    #[serde(default)]
    pub fenced_at: Option<u64>,
    /// The host's certificates that have not expired: signed at its join and renewals, or
    /// first seen on a connection (a host that joined before they were kept). Removing the
    /// host revokes them all ([`RevokedCertRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<HostCertificate>,
    /// SHA-256 fingerprints of the CA bundle last handed to the host (at its join or last
    /// renewal), comma-separated; during a CA rotation a host whose bundle is not the
    /// console's current one is asked to renew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// One certificate of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCertificate {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: u64,
}

/// A revoked host certificate, at `/vinfra/revoked-certificates/<serial>` until it expires: the
/// agent endpoint refuses it even when a host of the same name joins again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCertRecord {
    /// The host it was issued to.
    pub host: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// End of validity, seconds since the Unix epoch (the record may go after it).
    pub not_after: u64,
    /// When it was revoked, seconds since the Unix epoch.
    pub revoked_at: u64,
    /// Why (`host removed`).
    pub reason: String,
}

/// A logical network and its address management: which address each VM NIC holds. Written in
/// the same transaction as the VM records whose NICs it lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// The definition as the API shows it.
    pub network: vinfra_types::network::Network,
    /// The network's number on every host's switch (`vinfra_proto::SwitchNetwork::id`).
    pub switch_id: u16,
    /// Allocated addresses (dotted quad) and who holds them.
    #[serde(default)]
    pub ipam: BTreeMap<String, IpamEntry>,
    /// Addresses (dotted quad) held by routers on this external network, never given to a NIC:
    /// an uplink's address or a floating IP, with what holds it (`the uplink of router 'r1'`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reserved: BTreeMap<String, String>,
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamEntry {
    /// The VM holding the address.
    pub vm: String,
    /// Index of the NIC in the VM's spec.
    pub nic: usize,
    /// The NIC's MAC.
    pub mac: String,
}

/// A security group with the next id its rules get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRecord {
    /// The group as the API shows it, rules by id.
    pub group: vinfra_types::security_group::SecurityGroup,
    /// The id the next rule gets (ids are never reused in a group).
    pub next_rule_id: u32,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// A router: its number, its interfaces (the gateways of the networks attached to it) and its
/// static routes. A network is attached to at most one router; attaching it writes the
/// network's gateway (when it had none) in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterRecord {
    /// The router as the API shows it: interfaces by network name, routes by prefix.
    pub router: vinfra_types::router::RouterSummary,
}

/// A VNI, VLAN ID or switch id taken by a network, or a switch id taken by a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentClaim {
    /// The network (or router) holding it.
    pub network: String,
}

/// A MAC address taken by a VM NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacClaim {
    /// The VM holding it.
    pub vm: String,
    /// The network of the NIC.
    pub network: String,
}

/// Why a VM that the console no longer has a record of may still exist on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupReason {
    /// Its creation failed without a clear answer (no answer in time, connection lost), or the
    /// removal after a refused creation failed: the host may have created it.
    CreateUnconfirmed,
    /// It was deleted with `force` while its host was disconnected.
    ForcedDelete,
}

/// A cleanup marker: VM `vm` (id `id`) may still exist on `host` although its record is gone.
/// The VM's addresses and MACs stay claimed (under its name) until the host confirms the VM is
/// gone, and no new VM may take its name meanwhile. Written in the same transaction that deletes
/// the VM record, removed in the one that releases the claims (`networks::ipam::release_cleanup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupRecord {
    /// The VM's name (its addresses and MACs are still claimed under it).
    pub vm: String,
    /// The VM's id.
    pub id: Uuid,
    /// The host that may still have it.
    pub host: String,
    /// Why it may.
    pub reason: CleanupReason,
    /// When the marker was written, seconds since the Unix epoch.
    pub since: u64,
}

/// A migration (in progress or the last finished one) of one VM.
pub type MigrationRecord = vinfra_types::MigrationProgress;

/// A named API token (the key holds its name), hashed. The record of a cluster from before
/// named tokens holds only `hash` and reads as an admin token that never expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// What it may do.
    #[serde(default = "admin")]
    pub role: Role,
    /// When it was created, seconds since the Unix epoch (0: before tokens had names).
    #[serde(default)]
    pub created_at: u64,
    /// Seconds since the Unix epoch from which it is refused; `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When it was revoked (refused for good from then on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

fn admin() -> Role {
    Role::Admin
}

/// An outstanding join token (the key holds the secret's hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// Seconds since the Unix epoch after which it is refused.
    pub expires_at: u64,
}

/// A record as read, with the revision to compare-and-swap against.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// The store revision that last wrote it.
    pub mod_revision: Revision,
}

/// Decodes one stored value.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Versioned<T>, RecordError> {
    let value = serde_json::from_slice(&kv.value).map_err(|source| RecordError::Corrupt {
        key: kv.key.clone(),
        source,
    })?;
    Ok(Versioned {
        value,
        mod_revision: kv.mod_revision,
    })
}

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(value).map_err(RecordError::Encode)
}

/// Reads and decodes one key.
pub fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<Versioned<T>>, RecordError> {
    store.get(key)?.map(|kv| decode(&kv)).transpose()
}

/// Reads and decodes every key under a prefix; returns (name after the prefix, record).
pub fn range<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(String, Versioned<T>)>, RecordError> {
    let (kvs, _) = store.range(prefix)?;
    kvs.iter()
        .map(|kv| Ok((kv.key[prefix.len()..].to_string(), decode(kv)?)))
        .collect()
}

/// Encodes and writes one key (no lease).
pub fn put<T: Serialize>(store: &dyn Store, key: &str, value: &T) -> Result<Revision, RecordError> {
    Ok(store.put(key, &encode(value)?, 0)?)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
