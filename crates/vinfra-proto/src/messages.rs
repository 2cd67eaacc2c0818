//! Messages exchanged on the agent connection.

pub use crate::switch_config::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
pub use vinfra_ha::HaTimings;
pub use vinfra_switch_control::{ConnTupleSpec, ConnectionSpec, SideSpec, TcpStateSpec};
pub use vinfra_types::ha::IsolationResponse;
use vinfra_types::network::HostSwitchCounters;
pub use vinfra_types::qos::NicQos;
pub use vinfra_types::security_group::{SgAction, SgDirection};
use vinfra_types::{
    Accel, GuardView, HostCapacity, HostPlatform, HostUsage, VmObserved, VmPlatform, VmSpec,
};

/// Version of this protocol; the console refuses a Hello with another version. 2: heartbeats
/// ([`AgentMessage::Heartbeat`], [`ConsoleMessage::HeartbeatAck`]) carry the connection's
/// liveness, reports only the host's state. 3: the cluster's HA settings for the host's guard
/// ([`AgentCommand::SetHa`], sent after every Hello), and the guard in reports
/// ([`HostReport::guard`]). 4: a VM's HA policy changed while it runs
/// ([`AgentCommand::SetVmHa`]), and as the host took it in reports (`VmObserved::ha`). 5: the
/// switch configuration's underlay peers and expected MAC moves ([`HostSwitchConfig`]), NICs'
/// port security (`NicSpec::port_security`, `allowed_addresses`). 6: the NICs' firewalls
/// ([`HostSwitchConfig::firewalls`]) are enforced, so an agent that ignores them must not join,
/// and a migration carries the VM's tracked connections from the source's switch to the
/// destination's ([`AgentCommand::ExportConnections`], [`AgentCommand::ImportConnections`]). 7:
/// the NICs' QoS ([`HostSwitchConfig::qos`]) is applied to their ports, so an agent that
/// ignores it must not join. 8: the NICs' port security in the configuration
/// ([`HostSwitchConfig::port_security`]), so a change reaches a running VM's port. 9: routers
/// ([`HostSwitchConfig::routers`]): an agent that ignores them would leave the VMs of routed
/// networks without their gateway. 10: edges, floating IPs and flow export. 11: a migration's
/// status may wait for its end ([`AgentCommand::MigrationStatus`] `wait_ms`): an agent that
/// answers at once would make the console ask in a tight loop. 12: certificate renewal over the
/// session ([`AgentMessage::Renew`], [`ConsoleMessage::Renewed`],
/// [`ConsoleMessage::RenewCertificate`]): an agent that cannot renew is cut off when its
/// certificate expires. 13: a VM's CPU model and machine type ([`VmInstance::platform`]) and
/// the host's ([`AgentMessage::Hello`] `platform`): an agent that ignores them would start a
/// VM with other virtual hardware than the one it migrates with. 14: the serial console read
/// from an offset ([`AgentCommand::ConsoleRead`]) and typed on ([`AgentCommand::ConsoleWrite`]):
/// the web console's terminal polls the one and sends keystrokes with the other. 15: a VM's
/// state may wait for its guest to arrive ([`AgentCommand::ObserveVm`] `wait_ms`): after a
/// migration's switchover the console asks the destination once and is answered when the guest
/// runs there, not asked again and again.
pub const PROTOCOL_VERSION: u32 = 15;

/// Most bytes one [`AgentCommand::ConsoleWrite`] types.
pub const MAX_CONSOLE_INPUT: usize = 4096;

/// What a console sends to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// A message is made, serialized and dropped, one at a time: boxing its command would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
pub enum ConsoleMessage {
    /// A command; the agent answers with a [`AgentMessage::Response`] with the same id.
    Request {
        /// Chosen by the console, unique on the connection.
        id: u64,
        /// What to do.
        command: AgentCommand,
    },
    /// Answer to [`AgentMessage::Join`]: the host's client certificate and the cluster CA, PEM.
    Joined {
        /// The host's client certificate, signed by the cluster CA.
        cert_pem: String,
        /// The cluster CA certificate.
        ca_pem: String,
    },
    /// Answer to [`AgentMessage::Join`] when the token or host name is refused.
    JoinRefused {
        /// Why, for the operator.
        reason: String,
    },
    /// Answer to [`AgentMessage::Heartbeat`] `seq`, sent at once by the connection's reader
    /// (never behind a command or a store write). The agent's console contact is the send time
    /// of the last heartbeat acknowledged: a round trip, so a failure in either direction is
    /// lost contact.
    HeartbeatAck {
        /// The `seq` of the heartbeat acknowledged.
        seq: u64,
    },
    /// Answer to [`AgentMessage::Renew`]: the host's new client certificate and the CA bundle
    /// the host is to trust from now on (the issuing CA first; during a CA rotation also the
    /// other CA), PEM. The agent uses them for its next connection.
    Renewed {
        /// The new client certificate, for the CSR's key.
        cert_pem: String,
        /// The cluster's CA bundle.
        ca_pem: String,
    },
    /// Answer to [`AgentMessage::Renew`] when the console will not renew (host removed, bad
    /// CSR); a removed host's connection is closed right after.
    RenewRefused {
        /// Why, for the operator.
        reason: String,
    },
    /// The console asks the agent to renew its certificate now (a CA rotation: its certificate
    /// is of the old CA, or it has not got the current CA bundle yet).
    RenewCertificate,
}

/// What an agent sends to the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// Only message of a join connection (TLS without a client certificate, after the agent checked
    /// the CA against the token's pin): a one-time join token, the host name, and a CSR (PEM).
    Join {
        /// The join token (`vinfra join-token create`).
        token: String,
        /// The name the host joins as.
        host: String,
        /// Certificate signing request for the host's key.
        csr_pem: String,
    },
    /// A request for a new client certificate over the authenticated session, for a fresh key
    /// (the agent renews once [`crate::pki::RENEW_AT`] of its certificate's lifetime passed, or
    /// when asked with [`ConsoleMessage::RenewCertificate`]). The console signs it for the host
    /// of the session's certificate (whatever the CSR names) while the host is registered, and
    /// answers [`ConsoleMessage::Renewed`] or [`ConsoleMessage::RenewRefused`].
    Renew {
        /// Certificate signing request for the new key.
        csr_pem: String,
    },
    /// First message on a connection.
    Hello {
        /// The agent's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The host as it is now.
        report: HostReport,
        /// The host's CPU and what its QEMU offers (found out once, at the agent's start);
        /// `None` when QEMU could not say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<HostPlatform>,
    },
    /// The host's state with fresh usage, every report interval and after each command that
    /// may change a VM. It may lag behind (a report waits up to a bound on each VM's QEMU); the
    /// host's liveness is its heartbeats.
    Report {
        /// The host as it is now.
        report: HostReport,
    },
    /// Liveness, every heartbeat interval (1 s by default), from a task that waits on no VM,
    /// QMP or datastore. The console answers each with [`ConsoleMessage::HeartbeatAck`] and
    /// counts the host disconnected after its heartbeat timeout (3 s by default) without any
    /// message.
    Heartbeat {
        /// Increases by one per heartbeat on a connection, from 1.
        seq: u64,
    },
    /// The answer to request `id`.
    Response {
        /// The id of the [`ConsoleMessage::Request`] answered.
        id: u64,
        /// The command's reply, or why it failed.
        result: Result<CommandReply, CommandError>,
    },
    /// The flows the host's switch counted since the previous `Flows` (deltas), every 10 s
    /// while the switch counts flows; an agent whose switch does not sends none.
    Flows {
        /// The host (equals the certificate's common name).
        host: String,
        /// Milliseconds the counts cover (0 for the switch's first take).
        interval_ms: u64,
        /// The flows with traffic in the interval.
        flows: Vec<crate::flows::HostFlow>,
        /// Packets the switch could not count in a flow (its flow table was full).
        #[serde(default)]
        untracked_packets: u64,
    },
}

/// Everything a host reports: identity, capacity, usage and every VM it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// Host name (equals the certificate's common name).
    pub host: String,
    /// Address other hosts reach this one at (migrations).
    pub address: String,
    /// How the host runs guests (KVM or TCG).
    pub accel: Accel,
    /// QEMU's version, `major.minor.micro`.
    pub qemu_version: String,
    /// What the host offers VMs.
    pub capacity: HostCapacity,
    /// What it uses now.
    pub usage: HostUsage,
    /// Every VM the agent knows, including stopped ones whose definition it keeps.
    pub vms: Vec<VmObserved>,
    /// The interface of the host's VLAN trunk (`vinfra agent --trunk-interface`), if it has
    /// one: VMs with NICs on VLAN networks are placed only on hosts that have one. Absent in
    /// reports of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// IP MTU of the host's underlay (`vinfra agent --underlay-mtu`): VMs with NICs on overlay
    /// networks are placed only on hosts whose underlay carries the network's MTU plus the VXLAN
    /// encapsulation. Absent in reports of older agents, meaning 1500.
    #[serde(default = "vinfra_types::network::default_underlay_mtu")]
    pub underlay_mtu: u32,
    /// The host's guard as the agent asked it for this report (within a second); `None` when
    /// the agent runs without one (`vinfra agent` without `--guard`) or it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardView>,
}

/// A VM as the console hands it to an agent: identity plus specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmInstance {
    /// Cluster-unique, never reused; names the VM's directory in the datastore.
    pub id: Uuid,
    /// What the VM is made of.
    pub spec: VmSpec,
    /// Seconds since the Unix epoch when the guest was first started (uptime survives migration).
    pub started_at: Option<u64>,
    /// The VM's cluster-unique number, never reused: every host runs its QEMU as the user
    /// `uid base + slot`, so two VMs never share a user and neither can open the other's files.
    /// `None` from a console that assigns none: a host that confines QEMU refuses to run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    /// The CPU model and machine type it runs with, on every host; `None` for a VM created
    /// before they were recorded: QEMU's `q35` and, under KVM, the host's CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<VmPlatform>,
}

/// Commands an agent carries out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AgentCommand {
    /// Define the VM on this host: create its disks (qcow2 overlays in the datastore) if missing, and
    /// start it when `start`. Idempotent: an existing VM with this id is left as it is (and started
    /// when `start` and it is stopped). Replies [`CommandReply::Vm`].
    CreateVm {
        /// The VM.
        vm: VmInstance,
        /// Start it once defined.
        start: bool,
    },
    /// Start a defined, stopped VM. Replies `Vm`.
    StartVm {
        /// The VM.
        id: Uuid,
        /// Its slot ([`VmInstance::slot`]): a VM defined on the host before slots learns it
        /// here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<u32>,
    },
    /// Stop: ACPI power-off, then kill after `timeout_s`; at once when `force`. Replies
    /// `Stopped` (an older agent replies `Vm`).
    StopVm {
        /// The VM.
        id: Uuid,
        /// Kill at once, without asking the guest.
        force: bool,
        /// Seconds the guest has to power off before it is killed.
        timeout_s: u64,
    },
    /// Reboot (system_reset). Replies `Vm`.
    RebootVm {
        /// The VM.
        id: Uuid,
    },
    /// Stop the VM if it runs, forget it, and delete its disks when `delete_disks`. Replies `Done`.
    DeleteVm {
        /// The VM.
        id: Uuid,
        /// Delete its disks too.
        delete_disks: bool,
    },
    /// Start a QEMU for `vm` waiting for an incoming migration on this host's address.
    /// Replies [`CommandReply::Incoming`] with the `tcp:ADDR:PORT` URI to send to.
    PrepareIncoming {
        /// The VM that will arrive.
        vm: VmInstance,
        /// Encrypt the stream: the destination's credentials and the one source identity it
        /// accepts ([`MigrationTls::peer`]). Absent: plain TCP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls: Option<MigrationTls>,
    },
    /// Begin sending VM `id` to `uri` (returns at once). Replies `Done`.
    MigrateOut {
        /// The VM.
        id: Uuid,
        /// Where the destination's QEMU listens ([`CommandReply::Incoming`]).
        uri: String,
        /// Bandwidth and downtime limits.
        settings: MigrationSettings,
        /// Encrypt the stream: the source's credentials and the name the destination's
        /// certificate must carry ([`MigrationTls::peer`]). Absent: plain TCP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls: Option<MigrationTls>,
        /// The destination's VTEP (its underlay address): from the moment the source's QEMU
        /// stops for the switchover, the source's switch sends the frames for the VM's
        /// addresses on overlay networks there, where its new ports hold them until the guest
        /// resumes. Absent: not redirected (no overlay underlay, or a console before it; an
        /// agent before it ignores it, which only loses that).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redirect_to: Option<std::net::Ipv4Addr>,
    },
    /// Progress of the outgoing migration of `id`. Replies [`CommandReply::Migration`]: at
    /// once, or with `wait_ms`, as soon as the migration has ended (QEMU's event) or after
    /// `wait_ms`, whichever comes first.
    MigrationStatus {
        /// The VM.
        id: Uuid,
        /// Longest wait for the migration's end, milliseconds; 0: answer at once.
        #[serde(default)]
        wait_ms: u64,
    },
    /// Cancel the outgoing migration of `id`; the VM keeps running here. Replies `Done`.
    CancelMigration {
        /// The VM.
        id: Uuid,
    },
    /// After a completed migration: quit the paused source QEMU and forget the VM, keeping disks.
    /// Replies `Done`.
    FinishMigrationSource {
        /// The VM.
        id: Uuid,
    },
    /// Kill an incoming QEMU that will not receive its VM and forget it, keeping disks. Replies `Done`.
    AbortIncoming {
        /// The VM.
        id: Uuid,
    },
    /// The last `max_bytes` of the VM's serial console. Replies [`CommandReply::Console`].
    ConsoleLog {
        /// The VM.
        id: Uuid,
        /// At most this many bytes, from the end.
        max_bytes: u64,
    },
    /// The VM's serial console from byte `from` of its log: at most `max_bytes` (bounded by
    /// the agent), ending before a UTF-8 sequence the log does not hold whole yet. Without
    /// `from`, or with one past the log's end (the log was rotated, or the VM moved here), the
    /// last `max_bytes`. Replies [`CommandReply::ConsoleChunk`]: a poller that asks again
    /// from its `end` gets each byte once.
    ConsoleRead {
        /// The VM.
        id: Uuid,
        /// Where to start, a byte offset of the log; `None`: the tail.
        #[serde(default)]
        from: Option<u64>,
        /// At most this many bytes.
        max_bytes: u64,
    },
    /// Types `text` on the VM's serial port (the agent connects to the port's socket, writes,
    /// and hangs up once QEMU took it all, or after 1 s). Refused ([`CommandError::BadState`])
    /// for a VM that does not run, and for one whose QEMU an older agent started (it has no
    /// socket until it restarts). Replies `Done`.
    ConsoleWrite {
        /// The VM.
        id: Uuid,
        /// What to type (at most [`MAX_CONSOLE_INPUT`] bytes; a newline is `\r`, as a
        /// terminal's Enter).
        text: String,
    },
    /// The VM's current state, read now (not from the last report). Replies `Vm`: at once,
    /// or with `wait_ms`, for a VM whose guest has not arrived yet (an incoming QEMU), as soon
    /// as its QEMU's events show it no longer waiting (`RESUME`: the guest runs here) or after
    /// `wait_ms`, whichever comes first.
    ObserveVm {
        /// The VM.
        id: Uuid,
        /// Longest wait for an incoming guest to arrive, milliseconds; 0: answer at once.
        #[serde(default)]
        wait_ms: u64,
    },
    /// Replace this host's virtual switch configuration. The agent keeps it (in memory and in
    /// its data directory), programs the switch with the difference, and replays it whenever it
    /// reconnects to a (restarted) switch. Refused when the host has no switch and `config` has
    /// networks. Replies `Done`.
    ApplySwitchConfig {
        /// The whole configuration (not a difference).
        config: HostSwitchConfig,
    },
    /// Read this host's switch counters now, per network (by name), per VM NIC port (VM id and
    /// NIC index) and of the uplink. Read-only. Replies [`CommandReply::SwitchCounters`].
    SwitchCounters,
    /// The cluster's HA settings the host's guard acts on, sent after every Hello: the agent
    /// keeps them (in its data directory, so that a restarted agent that cannot reach the
    /// console passes them on still) and passes them to its guard in every pet. Replies `Done`.
    SetHa {
        /// What the guard does to the host's HA VMs when the host is isolated.
        isolation_response: IsolationResponse,
        /// The cluster's HA timings (renewal, self-fence deadline, agent grace, …).
        timings: HaTimings,
    },
    /// After a completed migration, on the source: the connections its switch tracks for VM
    /// `id`'s NIC ports (the ports of its paused QEMU), for the destination. Read-only; a VM
    /// without ports here has none. Replies [`CommandReply::Connections`].
    ExportConnections {
        /// The VM.
        id: Uuid,
    },
    /// After a completed migration, on the destination: gives VM `id`'s NIC ports the
    /// connections the source's switch tracked for them (a NIC is matched by network and MAC;
    /// connections a port already has are kept), so that the VM's established connections
    /// pass its firewall here. Replies `Done`.
    ImportConnections {
        /// The VM.
        id: Uuid,
        /// The connections, per NIC.
        nics: Vec<NicConnections>,
    },
    /// VM `id`'s HA policy was turned on or off: the host's guard counts it as HA (its
    /// isolation response acts on it) or not from now on, and the agent keeps the policy
    /// with the VM. The VM's report carries the flag as taken (`VmObserved::ha`), so the
    /// console sends this again until the host agrees. Replies `Done`.
    SetVmHa {
        /// The VM.
        id: Uuid,
        /// Its HA policy is on.
        ha: bool,
    },
    /// The cluster's IPFIX collector (`flows.ipfix_collector`), sent after every Hello and
    /// when the setting changes: the agent exports its host's flows there (UDP), or stops
    /// when `None`. Replies `Done`.
    SetFlowExport {
        /// Where to send IPFIX messages.
        #[serde(default)]
        collector: Option<std::net::SocketAddr>,
    },
}

impl AgentCommand {
    /// True for the commands whose answer, when they succeed, carries the VM's observed state
    /// (or its removal): the console takes it into the host's report itself
    /// (`agents::registry::request`), so the agent sends that answer before the fresh report
    /// that follows it. Other commands' answers, and failures (which may have changed something
    /// all the same), wait for their report.
    pub fn answer_carries_vm(&self) -> bool {
        matches!(
            self,
            AgentCommand::CreateVm { .. }
                | AgentCommand::StartVm { .. }
                | AgentCommand::StopVm { .. }
                | AgentCommand::RebootVm { .. }
                | AgentCommand::DeleteVm { .. }
        )
    }

    /// True for commands that may change a VM's state (or remove it): after one, the agent sends a
    /// fresh [`AgentMessage::Report`] before its [`AgentMessage::Response`], so the console's
    /// observed state is never older than the command.
    pub fn changes_vm_state(&self) -> bool {
        !matches!(
            self,
            AgentCommand::MigrationStatus { .. }
                | AgentCommand::ConsoleLog { .. }
                | AgentCommand::ConsoleRead { .. }
                | AgentCommand::ConsoleWrite { .. }
                | AgentCommand::ObserveVm { .. }
                | AgentCommand::ApplySwitchConfig { .. }
                | AgentCommand::SwitchCounters
                | AgentCommand::SetHa { .. }
                | AgentCommand::SetVmHa { .. }
                | AgentCommand::SetFlowExport { .. }
                | AgentCommand::ExportConnections { .. }
                | AgentCommand::ImportConnections { .. }
        )
    }
}

/// One end's credentials for one encrypted migration (QEMU's `tls-creds-x509`), issued by the
/// console for that migration alone ([`crate::pki::ClusterCa::issue_migration_tls`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationTls {
    /// The cluster CA both ends check the other's certificate against, PEM.
    pub ca_pem: String,
    /// This end's certificate, PEM.
    pub cert_pem: String,
    /// This end's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The other end. Destination: the one identity (`CN=…`, as QEMU's `authz-simple` compares
    /// it) a source's certificate must have. Source: the name the destination's certificate
    /// must carry (QEMU's `tls-hostname`).
    pub peer: String,
}

impl std::fmt::Debug for MigrationTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationTls")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Tuning applied to an outgoing migration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MigrationSettings {
    /// Bandwidth cap, bytes per second (0 = unlimited).
    pub max_bandwidth: u64,
    /// Longest acceptable pause at switchover, milliseconds.
    pub downtime_limit_ms: u64,
    /// QEMU's auto-converge (throttle a guest whose memory does not converge).
    #[serde(default = "auto_converge_default")]
    pub auto_converge: bool,
}

fn auto_converge_default() -> bool {
    true
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            max_bandwidth: 0,
            downtime_limit_ms: 300,
            auto_converge: true,
        }
    }
}

/// A successful command's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum CommandReply {
    /// Carried out; nothing to tell.
    Done,
    /// The VM's state after the command.
    Vm {
        /// The VM as observed now.
        vm: VmObserved,
    },
    /// The VM's state after a stop, and how it stopped.
    Stopped {
        /// The VM as observed now.
        vm: VmObserved,
        /// Whether the guest powered off or was killed.
        how: StopKind,
    },
    /// The incoming QEMU waits.
    Incoming {
        /// `tcp:ADDR:PORT` to migrate to.
        uri: String,
        /// It accepts only a TLS stream from the source [`AgentCommand::PrepareIncoming`]
        /// named (an agent that does not know TLS leaves this out: the console then refuses to
        /// migrate in plain text).
        #[serde(default)]
        encrypted: bool,
    },
    /// An outgoing migration's progress.
    Migration {
        /// QEMU's view of it.
        status: MigrationStatus,
    },
    /// The end of a VM's serial console.
    Console {
        /// The text (invalid UTF-8 replaced).
        text: String,
    },
    /// A part of a VM's serial console ([`AgentCommand::ConsoleRead`]).
    ConsoleChunk {
        /// The bytes from `start` to `end` of the log (invalid UTF-8 replaced).
        text: String,
        /// The log's offset `text` starts at: the `from` asked, or where the tail starts.
        start: u64,
        /// The log's offset after `text`: the next read's `from`.
        end: u64,
        /// The serial console takes input ([`AgentCommand::ConsoleWrite`]): the VM runs, with
        /// a serial socket.
        input: bool,
    },
    /// A VM's tracked connections ([`AgentCommand::ExportConnections`]).
    Connections {
        /// Per NIC.
        nics: Vec<NicConnections>,
    },
    /// The host's switch counters.
    SwitchCounters {
        /// Per network, VM NIC port and uplink.
        counters: HostSwitchCounters,
    },
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// The VM was not running.
    AlreadyStopped,
    /// The guest powered off when asked.
    Graceful,
    /// Killed at once, as the stop asked (`force`).
    Forced,
    /// The guest did not power off within the timeout and was killed.
    ForcedAfterTimeout,
}

/// QEMU's view of an outgoing migration (from `query-migrate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// QEMU's status string: `setup`, `active`, `device`, `completed`, `failed`, `cancelling`,
    /// `cancelled`, `pre-switchover`, …
    pub qemu_status: String,
    /// Guest memory sent so far, bytes.
    pub transferred_bytes: u64,
    /// Guest memory still to send, bytes.
    pub remaining_bytes: u64,
    /// Guest memory in all, bytes.
    pub total_bytes: u64,
    /// Bits per second (QEMU's `mbps` × 10⁶).
    pub rate_bps: u64,
    /// Pages the guest dirties per second.
    pub dirty_pages_rate: u64,
    /// Time since the migration began, milliseconds.
    pub total_time_ms: u64,
    /// The guest's pause at switchover, milliseconds, once known.
    pub downtime_ms: Option<u64>,
    /// QEMU's error text when the migration failed.
    pub error: Option<String>,
}

impl MigrationStatus {
    /// True once QEMU says the migration is over: `completed`, `failed` or `cancelled`.
    pub fn is_final(&self) -> bool {
        matches!(
            self.qemu_status.as_str(),
            "completed" | "failed" | "cancelled"
        )
    }
}

/// Why an agent could not carry out a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CommandError {
    /// no VM with this id on this host
    #[error("no VM {id} on this host")]
    NoSuchVm {
        /// The VM asked for.
        id: Uuid,
    },
    /// the VM is in a state where the command makes no sense
    #[error("VM {id} is {state}: {detail}")]
    BadState {
        /// The VM.
        id: Uuid,
        /// Its power state.
        state: String,
        /// Why the command does not apply.
        detail: String,
    },
    /// a file the VM needs is missing from the datastore
    #[error("missing in the datastore: {path}")]
    MissingFile {
        /// The file, relative to the datastore or absolute.
        path: String,
    },
    /// QEMU (or qemu-img) failed
    #[error("QEMU failed: {detail}")]
    Qemu {
        /// What failed, with QEMU's words (and its causes).
        detail: String,
    },
    /// anything else on the host
    #[error("host error: {detail}")]
    Host {
        /// What failed, with its causes.
        detail: String,
    },
    /// the host's virtual switch is missing, unreachable, or refused the configuration
    #[error("network: {detail}")]
    Network {
        /// What failed, with its causes.
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_report_without_an_underlay_mtu_means_1500() {
        let report = HostReport {
            host: "h1".into(),
            address: "10.0.0.1".into(),
            accel: Accel::Tcg,
            qemu_version: "9.2.0".into(),
            capacity: HostCapacity {
                cores: 2,
                memory_mib: 2048,
            },
            usage: HostUsage::default(),
            vms: Vec::new(),
            trunk: None,
            underlay_mtu: 9000,
            guard: None,
        };
        let mut json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["underlay_mtu"], 9000);
        let back: HostReport = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, report);
        json.as_object_mut().unwrap().remove("underlay_mtu");
        let old: HostReport = serde_json::from_value(json).unwrap();
        assert_eq!(old.underlay_mtu, 1500);
    }

    #[test]
    fn ha_settings_and_the_guard_on_the_wire() {
        let set = AgentCommand::SetHa {
            isolation_response: IsolationResponse::PowerOff,
            timings: HaTimings::default(),
        };
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["command"], "set_ha");
        assert_eq!(json["isolation_response"], "power-off");
        assert_eq!(serde_json::from_value::<AgentCommand>(json).unwrap(), set);
        assert!(!set.changes_vm_state());
        let guard = GuardView {
            incarnation: 9,
            lease_counter: 40,
            renewal_age_ms: Some(120),
            self_fences: 0,
            isolated: false,
        };
        let json = serde_json::json!({
            "host": "h1", "address": "10.0.0.1", "accel": "tcg", "qemu_version": "9.2.0",
            "capacity": {"cores": 2, "memory_mib": 2048},
            "usage": {"cpu_cores": 0.0, "memory_used_mib": 0}, "vms": [],
            "guard": {"incarnation": 9, "lease_counter": 40, "renewal_age_ms": 120,
                      "self_fences": 0, "isolated": false}
        });
        let report: HostReport = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(report.guard, Some(guard));
        let mut json = json;
        json.as_object_mut().unwrap().remove("guard");
        let unguarded: HostReport = serde_json::from_value(json).unwrap();
        assert_eq!(unguarded.guard, None);
        assert!(!serde_json::to_string(&unguarded).unwrap().contains("guard"));
    }

    #[test]
    fn connections_move_on_the_wire() {
        use vinfra_switch_control::{ConnTupleSpec, SideSpec, TcpStateSpec};
        let nics = vec![NicConnections {
            network: "blue".into(),
            mac: "52:54:00:00:00:01".into(),
            entries: vec![ConnectionSpec {
                original: ConnTupleSpec {
                    src: Ipv4Addr::new(10, 0, 0, 2),
                    dst: Ipv4Addr::new(10, 0, 0, 1),
                    protocol: 6,
                    src_port: 40000,
                    dst_port: 8080,
                },
                origin: SideSpec::ToVm,
                tcp_state: Some(TcpStateSpec::Established),
                replied: true,
                remaining_ms: 1000,
            }],
        }];
        let id = Uuid::from_u128(7);
        let import = AgentCommand::ImportConnections {
            id,
            nics: nics.clone(),
        };
        let json = serde_json::to_value(&import).unwrap();
        assert_eq!(json["command"], "import_connections");
        assert_eq!(json["nics"][0]["entries"][0]["original"]["dst_port"], 8080);
        assert_eq!(
            serde_json::from_value::<AgentCommand>(json).unwrap(),
            import
        );
        let export = AgentCommand::ExportConnections { id };
        assert_eq!(
            serde_json::to_value(&export).unwrap()["command"],
            "export_connections"
        );
        // Neither changes a VM's state: no report before the answer.
        assert!(!export.changes_vm_state() && !import.changes_vm_state());
        let reply = CommandReply::Connections { nics };
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(json["reply"], "connections");
        assert_eq!(serde_json::from_value::<CommandReply>(json).unwrap(), reply);
    }

    #[test]
    fn heartbeats_on_the_wire() {
        let hb = AgentMessage::Heartbeat { seq: 7 };
        let json = serde_json::to_value(&hb).unwrap();
        assert_eq!(json, serde_json::json!({"type": "heartbeat", "seq": 7}));
        assert_eq!(serde_json::from_value::<AgentMessage>(json).unwrap(), hb);
        let ack = ConsoleMessage::HeartbeatAck { seq: 7 };
        let json = serde_json::to_value(&ack).unwrap();
        assert_eq!(json, serde_json::json!({"type": "heartbeat_ack", "seq": 7}));
        assert_eq!(serde_json::from_value::<ConsoleMessage>(json).unwrap(), ack);
    }
}
