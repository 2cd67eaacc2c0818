//! The messages: one JSON object per line, a [`Request`] from the agent, a [`Response`] from
//! the switch, in order.
//!
//! The requests are the switch core's configuration commands (`ConfigCommand` in
//! `vinfra-switch`), with ports carrying what the daemon needs to open them (a socket path, a tap
//! name, an interface), plus `ping`, `get_config`, `get_counters` and `export_connections` (a
//! port's tracked connections, for a migrating VM's new host, which takes them with
//! `import_connections`). The types here are the wire's own: plain numbers and addresses,
//! checked and converted by the daemon. Example:
//!
//! ```text
//! {"op":"add_network","id":1,"kind":{"overlay":{"vni":5001}}}
//! {"status":"ok"}
//! {"op":"add_port","id":3,"mtu":1450,"attach":{"kind":"host","network":1,"tap":"sw-tap3"}}
//! {"status":"ok"}
//! {"op":"get_counters"}
//! {"status":"counters","ports":[…],"networks":[…],"switch_drops":{}}
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A MAC address, written `52:54:00:12:34:56`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A MAC address that does not parse: not six two-digit hex bytes separated by `:`.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("bad MAC address {0:?}")]
pub struct BadMac(pub String);

impl std::str::FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl Mac {
    /// True for a group (multicast or broadcast) address: the low bit of the first octet.
    pub fn is_group(self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A network's kind: `{"overlay":{"vni":5001}}` or `{"vlan":{"vid":100}}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum NetworkSpec {
    /// A VXLAN overlay.
    Overlay {
        /// VXLAN network identifier, 0 to 2^24 - 1.
        vni: u32,
    },
    /// A VLAN on the trunk.
    Vlan {
        /// VLAN ID, 1 to 4094.
        vid: u16,
    },
}

/// What a port is attached to and how the daemon reaches it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attachment {
    /// A VM's vNIC through QEMU's `-netdev dgram` over Unix sockets: the switch binds `socket`
    /// (QEMU's `remote.path`) and sends to `peer` (QEMU's `local.path`).
    Vm {
        /// The network.
        network: u32,
        /// The switch's socket path.
        socket: PathBuf,
        /// QEMU's socket path.
        peer: PathBuf,
        /// The user QEMU runs as: the switch's socket is made its (mode 0600), so that QEMU
        /// may send to it. `None`: root's, mode as bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<u32>,
    },
    /// A VM's vNIC through a tap that QEMU opens by name (`-netdev tap,ifname=…`, virtio-net
    /// headers, so the guest's checksum and TCP segmentation offloads reach the switch and back).
    /// The switch creates the tap (persistent) unless it exists, keeps it out of the host's own
    /// stack and reads and writes its frames through an AF_PACKET socket; it deletes the tap
    /// when the port goes, once QEMU has let go of it.
    VmTap {
        /// The network.
        network: u32,
        /// Interface name (1 to 15 bytes).
        tap: String,
        /// The user QEMU runs as: the tap is made its (`TUNSETOWNER`), so that QEMU may open
        /// it without privileges. `None`: only a privileged process may.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<u32>,
    },
    /// An 802.1Q sub-interface of a VM's vNIC: the frames tagged `vid` (1 to 4094) on VM port
    /// `parent`, in network `network`. No socket of its own: its frames travel through the
    /// parent's, tagged. Removed with the parent.
    VmVlan {
        /// The network.
        network: u32,
        /// The vNIC's port.
        parent: u32,
        /// The tag.
        vid: u16,
    },
    /// A tap interface the switch creates (or opens) in its network namespace.
    Host {
        /// The network.
        network: u32,
        /// Interface name.
        tap: String,
    },
    /// The VXLAN uplink: a UDP socket on `local_ip`:4789.
    VxlanUplink {
        /// This host's underlay (VTEP) address.
        local_ip: Ipv4Addr,
    },
    /// The 802.1Q trunk: an AF_PACKET socket on an interface.
    VlanTrunk {
        /// Interface name.
        interface: String,
    },
}

/// A port to add.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct PortSpec {
    /// Port number (below 65536).
    pub id: u32,
    /// IP MTU.
    pub mtu: u16,
    /// Where it goes.
    pub attach: Attachment,
}

/// Where a MAC address lives: `{"port":3}` or `{"vtep":"10.1.0.2"}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LocationSpec {
    /// Behind a local port.
    Port(u32),
    /// On another host.
    Vtep(Ipv4Addr),
}

/// The switch's DHCP responder on a network (the core's `DhcpConfig`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct DhcpSpec {
    /// Prefix length of the subnet (1 to 32).
    pub prefix_len: u8,
    /// Default gateway, also the server identifier when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Server identifier when there is no gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Ipv4Addr>,
    /// Interface MTU to send; absent sends the client port's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Lease time, seconds.
    pub lease_secs: u32,
}

/// A source a port may send from (the core's `AllowedAddress`): a MAC and the IPv4 prefix it
/// may use; `prefix_len` 0 allows any IPv4 source from that MAC.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct AllowedAddressSpec {
    /// A unicast MAC address.
    pub mac: Mac,
    /// The prefix's address.
    pub ip: Ipv4Addr,
    /// The prefix's length, 0 to 32.
    pub prefix_len: u8,
}

/// Storm control (the core's `StormControl`): flooded frames a port may send.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct StormSpec {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Bucket depth, frames.
    pub burst: u32,
}

/// An access port's policy (the core's `PortPolicy`); absent fields are off.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct PortPolicySpec {
    /// Port security: the sources the port may send from; absent or `null` is off, `[]` sends
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<AllowedAddressSpec>>,
    /// Most learned MAC entries pointing at the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit: Option<u32>,
    /// Storm control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormSpec>,
}

/// A rate and the burst it allows: a token bucket.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct RateSpec {
    /// Sustained rate, bits per second (Ethernet frames, headers included), at least 1.
    pub bits_per_sec: u64,
    /// Bytes that may pass at once above the rate (the bucket's depth), at least 1.
    pub burst_bytes: u64,
}

/// A port's priority class at every place its frames wait behind others (the datapath's
/// reading order, a port's output queue): a higher class goes first.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrioritySpec {
    /// After the others.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before the others.
    High,
}

/// The default [`QosSpec::weight`].
pub const DEFAULT_QOS_WEIGHT: u16 = 10;

fn default_qos_weight() -> u16 {
    DEFAULT_QOS_WEIGHT
}

/// A VM or host port's QoS, seen from the VM (`egress` is what it sends). Absent fields are
/// off.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct QosSpec {
    /// What the VM sends: the switch takes its frames no faster than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<RateSpec>,
    /// What goes to the VM: queued and sent no faster than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<RateSpec>,
    /// The port's priority class.
    #[serde(default)]
    pub priority: PrioritySpec,
    /// The port's share against ports of the same class under contention, 1 to 100.
    #[serde(default = "default_qos_weight")]
    pub weight: u16,
    /// DSCP (0 to 63) written into every IPv4 packet the VM sends; absent: the guest's own
    /// DSCP is kept (trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp_mark: Option<u8>,
}

impl Default for QosSpec {
    fn default() -> QosSpec {
        QosSpec {
            egress: None,
            ingress: None,
            priority: PrioritySpec::Normal,
            weight: DEFAULT_QOS_WEIGHT,
            dscp_mark: None,
        }
    }
}

/// Which way a firewall rule looks, seen from the VM.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSpec {
    /// To the VM; the remote end is the packet's source.
    Ingress,
    /// From the VM; the remote end is the packet's destination.
    Egress,
}

/// What a matching firewall rule does.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ActionSpec {
    /// The packet (and its connection) passes, unless a deny rule matches too.
    Allow,
    /// The packet is dropped, whatever allow rules match.
    Deny,
}

/// An IPv4 prefix: `{"ip":"10.0.0.0","prefix_len":24}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct PrefixSpec {
    /// The prefix's address.
    pub ip: Ipv4Addr,
    /// Its length, 0 to 32.
    pub prefix_len: u8,
}

/// A security-group rule of a port's firewall (the core's `FirewallRule`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct FirewallRuleSpec {
    /// The packets' direction.
    pub direction: DirectionSpec,
    /// Their IP protocol number; absent or `null`: every protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Their destination ports `[first, last]` (TCP and UDP only); absent or `null`: every
    /// port, and packets without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<(u16, u16)>,
    /// The remote end's prefixes; empty matches nothing.
    pub remote: Vec<PrefixSpec>,
    /// What the rule does.
    pub action: ActionSpec,
}

/// Which way the packet that created a connection went through the port.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum SideSpec {
    /// Sent by the VM.
    FromVm,
    /// Sent to the VM.
    ToVm,
}

/// A tracked TCP connection's state (the core's `TcpState`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum TcpStateSpec {
    /// A SYN from the originator seen.
    SynSent,
    /// SYNs seen both ways.
    SynSent2,
    /// The SYN+ACK seen.
    SynRecv,
    /// Data flows.
    Established,
    /// A FIN seen.
    FinWait,
    /// The first FIN acknowledged.
    CloseWait,
    /// The second FIN seen.
    LastAck,
    /// The second FIN acknowledged.
    TimeWait,
    /// A RST seen.
    Close,
}

/// The addresses, protocol and ports of a connection's first packet (for ICMP queries the
/// identifier and type in the port fields; 0 for other protocols).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnTupleSpec {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port, or the ICMP identifier.
    pub src_port: u16,
    /// Destination port, or the ICMP type.
    pub dst_port: u16,
}

/// A tracked connection of a port (the core's `ConnEntry`), exported from one switch and
/// imported into another when its VM migrates.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectionSpec {
    /// The tuple of the packet that created it (its replies go the reverse way).
    pub original: ConnTupleSpec,
    /// The side of the port that packet came from.
    pub origin: SideSpec,
    /// The TCP state; absent for other protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_state: Option<TcpStateSpec>,
    /// Whether a packet went the reply way.
    pub replied: bool,
    /// How long it lives without a further packet, milliseconds.
    pub remaining_ms: u64,
}

/// A request to the switch.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answered with `pong`.
    Ping,
    /// Answered with `config`: requests that rebuild the current configuration.
    GetConfig,
    /// Answered with `counters`.
    GetCounters,
    /// Answered with `flows`: the flows counted since the previous `take_flows` and their
    /// packets and bytes since then (deltas), and the flow table's counters. A query, never in
    /// `get_config`.
    TakeFlows,
    /// Answered with `connections`: the port's tracked connections, for a migrating VM's new
    /// host (the core's `Switch::export_connections`). An action: `get_config` never lists it.
    ExportConnections {
        /// A VM or host port.
        port: u32,
    },
    /// The core's `ConfigCommand::AddNetwork`.
    AddNetwork {
        /// Network number.
        id: u32,
        /// Overlay or VLAN.
        kind: NetworkSpec,
    },
    /// The core's `ConfigCommand::RemoveNetwork`.
    RemoveNetwork {
        /// Network number.
        id: u32,
    },
    /// The core's `ConfigCommand::AddPort`, after opening the port's socket or device.
    AddPort(PortSpec),
    /// The core's `ConfigCommand::RemovePort`, then closes the port.
    RemovePort {
        /// Port number.
        id: u32,
    },
    /// The core's `ConfigCommand::SetFloodList`.
    SetFloodList {
        /// Overlay network.
        network: u32,
        /// Remote VTEPs.
        vteps: Vec<Ipv4Addr>,
    },
    /// The core's `ConfigCommand::AddMacEntry`.
    AddMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// Where it lives.
        location: LocationSpec,
    },
    /// The core's `ConfigCommand::RemoveMacEntry`.
    RemoveMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
    },
    /// The core's `ConfigCommand::RevertMacMoves`: every static MAC entry that MAC mobility moved
    /// to another host goes back where `add_mac_entry` put it. An action, not configuration:
    /// `get_config` never lists it.
    RevertMacMoves,
    /// The core's `ConfigCommand::AddArpEntry`.
    AddArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
        /// Its owner.
        mac: Mac,
    },
    /// The core's `ConfigCommand::RemoveArpEntry`.
    RemoveArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
    },
    /// The core's `ConfigCommand::SetVtepMac`. Accepted and kept for completeness: the UDP uplink lets the
    /// kernel resolve underlay MACs.
    SetVtepMac {
        /// Remote VTEP.
        vtep: Ipv4Addr,
        /// Its underlay MAC.
        mac: Mac,
    },
    /// The core's `ConfigCommand::SetSettings`.
    SetSettings {
        /// Learned MAC ageing, seconds.
        mac_ageing_secs: u64,
        /// Most learned MACs per network.
        mac_learn_limit: usize,
    },
    /// The core's `ConfigCommand::SetFlowAccounting`: flow counting on or off (on until set;
    /// off empties the flow table, so `take_flows` answers no flows), and optionally the flow
    /// table's bound (default 65,536 flows). A setting: `get_config` lists it once set.
    SetFlowAccounting {
        /// Whether the switch counts flows.
        enabled: bool,
        /// Most flows in the table; absent: 65,536.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_flows: Option<u64>,
    },
    /// The core's `ConfigCommand::SetPortPolicy`; a port's policy goes with the port.
    SetPortPolicy {
        /// A VM or host port.
        port: u32,
        /// Its policy.
        policy: PortPolicySpec,
    },
    /// The core's `ConfigCommand::SetPortFirewall`: a port's security-group rules; absent or
    /// `null`: no firewall. Goes with the port.
    SetPortFirewall {
        /// A VM or host port.
        port: u32,
        /// Its rules.
        #[serde(default)]
        rules: Option<Vec<FirewallRuleSpec>>,
    },
    /// A port's QoS (rate limits, priority class, weight, DSCP marking); absent or `null`:
    /// none. Goes with the port.
    SetPortQos {
        /// A VM or host port.
        port: u32,
        /// Its QoS.
        #[serde(default)]
        qos: Option<QosSpec>,
    },
    /// The core's `ConfigCommand::ImportConnections`: connections exported from the switch a
    /// VM leaves, given to its port here. An action: `get_config` never lists it.
    ImportConnections {
        /// A VM or host port.
        port: u32,
        /// The connections.
        entries: Vec<ConnectionSpec>,
    },
    /// The core's `ConfigCommand::SetUnderlayPeers`: the VXLAN uplink accepts packets from
    /// these underlay addresses only; absent or `null` accepts any.
    SetUnderlayPeers {
        /// The other hosts' underlay addresses.
        #[serde(default)]
        peers: Option<Vec<Ipv4Addr>>,
    },
    /// The core's `ConfigCommand::ExpectMacMove`: a static entry for a remote host may move to
    /// VTEP `to` on an announcement from there; absent or `null` withdraws that.
    ExpectMacMove {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// The VTEP it may move to.
        #[serde(default)]
        to: Option<Ipv4Addr>,
    },
    /// The core's `ConfigCommand::SetDhcp`: enables (`config` set) or disables the DHCP responder.
    SetDhcp {
        /// Network.
        network: u32,
        /// The responder's parameters; absent or `null` disables it.
        #[serde(default)]
        config: Option<DhcpSpec>,
    },
    /// The core's `ConfigCommand::AddRouter`: a routing domain (VRF) with its own table, empty.
    AddRouter {
        /// Router number (1 to 65535), the same on every host.
        id: u32,
    },
    /// The core's `ConfigCommand::RemoveRouter`: the router, its interfaces and routes.
    RemoveRouter {
        /// Router number.
        id: u32,
    },
    /// The core's `ConfigCommand::SetRouterInterface`: the router's virtual interface on a
    /// network (the network's distributed gateway: the same address and MAC on every host);
    /// gives the router the connected route of `ip/prefix_len`. A network has at most one
    /// interface; setting it again replaces it (on another router too).
    SetRouterInterface {
        /// Router number.
        router: u32,
        /// Network number.
        network: u32,
        /// The gateway's address on the network.
        ip: Ipv4Addr,
        /// The network's prefix length (1 to 32).
        prefix_len: u8,
        /// The gateway's MAC (unicast).
        mac: Mac,
        /// The network's IP MTU: a routed packet larger than it is not sent on the network
        /// (fragmentation needed when it says DF, else dropped); absent: only the ports' and
        /// the underlay's MTUs count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u16>,
    },
    /// The core's `ConfigCommand::RemoveRouterInterface`: the network's gateway and its
    /// connected route go.
    RemoveRouterInterface {
        /// Network number.
        network: u32,
    },
    /// The core's `ConfigCommand::AddRoute`: a static route of the router; replaces a route to
    /// the same prefix.
    AddRoute {
        /// Router number.
        router: u32,
        /// Destination prefix (host bits zero).
        prefix: PrefixSpec,
        /// Next hop, an address on one of the router's networks.
        via: Ipv4Addr,
    },
    /// The core's `ConfigCommand::RemoveRoute`.
    RemoveRoute {
        /// Router number.
        router: u32,
        /// Destination prefix.
        prefix: PrefixSpec,
    },
    /// The core's `ConfigCommand::SetRouterUplink`: the router's uplink on an external network
    /// (a VLAN network of the trunk, towards the physical network): the router's own address
    /// and MAC there (not a distributed gateway: only the edge answers for them), a connected
    /// route of `ip/prefix_len`, and where its north-south traffic is translated. What the
    /// router sends out through the uplink leaves with the source address of the uplink (source
    /// NAT) or of the sender's floating IP; what comes in to those addresses is translated back.
    /// On the edge (`edge` is `Local`) the switch does that and announces the uplink's and the
    /// floating IPs' addresses with gratuitous ARP; on every other host a packet the router
    /// would send out through the uplink goes, as the sender sent it, to the edge's VTEP in
    /// VXLAN with `transit_vni`, and the edge routes it. Replaces the router's uplink. The
    /// network must not carry a router interface.
    SetRouterUplink {
        /// Router number.
        router: u32,
        /// Network number of the external network.
        network: u32,
        /// The router's address on it.
        ip: Ipv4Addr,
        /// The external network's prefix length (1 to 32).
        prefix_len: u8,
        /// The router's MAC on it (unicast; the same on every host, used only by the edge).
        mac: Mac,
        /// Where the router's north-south traffic is translated.
        edge: EdgeSpec,
        /// The VNI that carries north-south packets from the router's other hosts to its edge
        /// (one per router, no network's).
        transit_vni: u32,
        /// The external network's IP MTU, as for [`Request::SetRouterInterface`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u16>,
    },
    /// The core's `ConfigCommand::RemoveRouterUplink`: the uplink, its floating IPs and its NAT
    /// state go.
    RemoveRouterUplink {
        /// Router number.
        router: u32,
    },
    /// The core's `ConfigCommand::AddFloatingIp`: 1:1 NAT between `external` (in the uplink's
    /// subnet, not the uplink's own address) and `internal` (an address on one of the router's
    /// other networks): inbound to `external` goes to `internal`, and what `internal` sends out
    /// leaves from `external`. Replaces a floating IP of the same external address.
    AddFloatingIp {
        /// Router number (it has an uplink).
        router: u32,
        /// The address on the external network.
        external: Ipv4Addr,
        /// The VM NIC's address behind it.
        internal: Ipv4Addr,
    },
    /// The core's `ConfigCommand::RemoveFloatingIp`.
    RemoveFloatingIp {
        /// Router number.
        router: u32,
        /// The address on the external network.
        external: Ipv4Addr,
    },
}

/// Where a router's north-south traffic is translated (its edge).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EdgeSpec {
    /// On this switch.
    Local,
    /// On the switch of the host with this underlay (VTEP) address.
    Remote {
        /// The edge host's VTEP address.
        vtep: Ipv4Addr,
    },
}

/// A response.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// The request was applied.
    Ok,
    /// The answer to `ping`.
    Pong,
    /// The answer to `get_config`.
    Config {
        /// Requests that rebuild the configuration, in order.
        requests: Vec<Request>,
    },
    /// The answer to `get_counters`.
    Counters(CountersView),
    /// The answer to `take_flows`.
    Flows(FlowsView),
    /// The answer to `export_connections`.
    Connections {
        /// The port's live connections.
        entries: Vec<ConnectionSpec>,
    },
    /// The request was refused and changed nothing.
    Error {
        /// Why.
        message: String,
    },
}

/// The flows a switch counted since the previous `take_flows`.
///
/// A flow is an IPv4 5-tuple (ports 0 for protocols without them; ICMP echo: the identifier
/// as both ports) counted once in the cluster: where it enters the switches, i.e. on the
/// switch of the host whose local port (VM NIC or host port) sent it, or, for what comes in
/// from the physical network through a router's uplink, on the router's edge. Frames received
/// from another host (VXLAN, the trunk) are not counted again.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct FlowsView {
    /// The flows with traffic since the previous take (packets > 0).
    pub flows: Vec<FlowView>,
    /// Flows in the table now (idle flows are dropped after a while).
    pub entries: u64,
    /// The table's bound.
    pub capacity: u64,
    /// Packets not counted in a flow since the previous take because the table was full.
    pub untracked_packets: u64,
    /// Milliseconds since the previous take (0 for the first).
    pub interval_ms: u64,
}

/// One flow's traffic since the previous `take_flows`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct FlowView {
    /// The network it entered on (the sender's network).
    pub network: u32,
    /// The port it entered through.
    pub port: u32,
    /// The router that routed it on this switch, if it was routed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<u32>,
    /// Source address as sent (before any NAT).
    pub src: Ipv4Addr,
    /// Destination address as sent (before any NAT).
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (0 without one).
    pub src_port: u16,
    /// Destination port (0 without one).
    pub dst_port: u16,
    /// Packets since the previous take (a GSO frame counts as the packets it carries).
    pub packets: u64,
    /// Bytes since the previous take (IP bytes: headers and payload of every packet).
    pub bytes: u64,
    /// East-west (both ends inside the cluster's networks) or north-south (through an uplink).
    pub direction: FlowDirection,
}

/// Which way a flow goes.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FlowDirection {
    /// Between two endpoints of the cluster's networks.
    EastWest,
    /// In or out through a router's uplink.
    NorthSouth,
}

/// Traffic counters of a port or network.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct TrafficView {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops by reason (snake_case names of `DropReason`).
    pub drops: BTreeMap<String, u64>,
}

impl TrafficView {
    /// Drops for one reason.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }

    /// Every drop.
    pub fn drops_total(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// One port's counters.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct PortCountersView {
    /// Port number.
    pub id: u32,
    /// Traffic seen by the core.
    #[serde(flatten)]
    pub traffic: TrafficView,
    /// Frames the daemon could not send on the port (peer gone, queue full).
    pub tx_errors: u64,
    /// Receive errors other than "nothing to read".
    pub rx_errors: u64,
    /// The port's IP MTU as configured (for the uplink: the underlay's). Absent from older
    /// switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// For a port with a firewall: how many first packets each of its rules decided (by rule
    /// index), since the rules were last set. Absent without a firewall (and from older
    /// switches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_hits: Option<Vec<u64>>,
    /// Connections the firewall tracks for the port.
    #[serde(default)]
    pub connections: u64,
    /// Frames dropped because the port's queue was full under its ingress rate limit (QoS).
    /// 0 from older switches.
    #[serde(default)]
    pub qos_dropped: u64,
    /// Frames that waited in the port's queue (its ingress rate limit, or a full peer) rather
    /// than going out at once. 0 from older switches.
    #[serde(default)]
    pub qos_delayed: u64,
}

/// One network's counters.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct NetworkCountersView {
    /// Network number.
    pub id: u32,
    /// Inner frames in and out.
    #[serde(flatten)]
    pub traffic: TrafficView,
    /// ARP requests answered by the switch.
    pub arp_suppressed: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Sources not learned (table full).
    pub learning_refused: u64,
    /// Announcements that would have moved a remote VM's MAC entry without the control plane
    /// expecting it; the entry stayed.
    #[serde(default)]
    pub mac_moves_refused: u64,
}

/// Every counter.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct CountersView {
    /// Per port.
    pub ports: Vec<PortCountersView>,
    /// Per network.
    pub networks: Vec<NetworkCountersView>,
    /// Drops that belong to no port.
    pub switch_drops: BTreeMap<String, u64>,
    /// The firewall's connection table, all ports. Absent from older switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConntrackView>,
    /// Per router. Empty from older switches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<RouterCountersView>,
    /// The datapath's reads by size: element `n` counts the reads of a port that brought `n`
    /// frames (from 1 to the daemon's batch size; element 0 stays 0), since the daemon
    /// started. Empty from older switches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rx_batches: Vec<u64>,
}

/// One router's counters (packets routed on this host, from its local ports).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct RouterCountersView {
    /// Router number.
    pub id: u32,
    /// Packets routed (each a frame in, whatever it was cut into).
    pub routed_packets: u64,
    /// Their bytes (Ethernet frame bytes as received).
    pub routed_bytes: u64,
    /// Echo requests to a gateway address answered.
    pub echo_replies: u64,
    /// ICMP errors sent, by kind: `time_exceeded`, `net_unreachable`, `host_unreachable`,
    /// `fragmentation_needed`.
    pub icmp_sent: BTreeMap<String, u64>,
    /// ICMP errors not sent: over the rate limit.
    pub icmp_rate_limited: u64,
    /// ARP requests the router sent for a next hop it did not know.
    pub arp_requests: u64,
    /// Packets that were not routed, by reason (the same names as the ports' and networks'
    /// drops: `ttl_exceeded`, `no_route`, `neighbour_unknown`, …).
    pub drops: BTreeMap<String, u64>,
    /// Routed packets that were IPv4 fragments (routed as they are). 0 from older switches.
    #[serde(default)]
    pub routed_fragments: u64,
    /// Routed packets with IPv4 options (kept). 0 from older switches.
    #[serde(default)]
    pub routed_options: u64,
    /// Neighbours learned or refreshed from ARP replies to a gateway. 0 from older switches.
    #[serde(default)]
    pub neighbours_learned: u64,
    /// The router's NAT on this switch; absent when it has no uplink (and from older switches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatCountersView>,
}

/// Counters of a router's uplink on one switch: translations where it is the edge, packets
/// sent to the edge where it is not.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct NatCountersView {
    /// True when this switch is the router's edge.
    pub edge: bool,
    /// Translations (sessions) in the table now.
    pub sessions: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions freed after their timeout.
    pub sessions_expired: u64,
    /// Packets sent out through the uplink with a translated source (source NAT or floating).
    pub snat_packets: u64,
    /// Packets received on the uplink translated back to an inner address (replies of source
    /// NAT, or to a floating IP).
    pub dnat_packets: u64,
    /// Packets sent in VXLAN to the edge (on a switch that is not the edge).
    pub to_edge_packets: u64,
    /// Packets received from the router's other hosts for translation (on the edge).
    pub from_transit_packets: u64,
    /// Gratuitous ARPs sent for the uplink's and the floating IPs' addresses.
    pub garps_sent: u64,
}

/// Counters of the firewall's connection table and drop log. Each connection freed is counted
/// once, in `expired`, `evicted` or `removed`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct ConntrackView {
    /// Connections in the table now.
    pub entries: u64,
    /// Connections created by a first packet a rule (or the egress default) allowed.
    pub created: u64,
    /// Connections imported (a VM that migrated here).
    pub imported: u64,
    /// Connections freed after their timeout.
    pub expired: u64,
    /// Expired connections freed to make room.
    pub evicted: u64,
    /// Connections removed with their port, or ended by a SYN reopening them.
    pub removed: u64,
    /// Connections refused: the table (or the port's share) was full.
    pub refused: u64,
    /// Invalid packets by reason (`tcp_not_syn`, `wrong_side`, …).
    pub invalid: BTreeMap<String, u64>,
    /// Drops recorded in the drop log (the daemon logs each).
    pub log_recorded: u64,
    /// Drops not recorded: over the log's rate.
    pub log_suppressed: u64,
    /// Records overwritten before the daemon took them.
    pub log_overwritten: u64,
}

impl CountersView {
    /// A port's counters.
    pub fn port(&self, id: u32) -> Option<&PortCountersView> {
        self.ports.iter().find(|p| p.id == id)
    }

    /// A network's counters.
    pub fn network(&self, id: u32) -> Option<&NetworkCountersView> {
        self.networks.iter().find(|n| n.id == id)
    }

    /// A router's counters.
    pub fn router(&self, id: u32) -> Option<&RouterCountersView> {
        self.routers.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        let requests = vec![
            Request::Ping,
            Request::AddNetwork {
                id: 1,
                kind: NetworkSpec::Overlay { vni: 5001 },
            },
            Request::AddPort(PortSpec {
                id: 2,
                mtu: 1450,
                attach: Attachment::Vm {
                    network: 1,
                    socket: "/run/x/sw.sock".into(),
                    peer: "/run/x/vm.sock".into(),
                    owner: None,
                },
            }),
            Request::AddMacEntry {
                network: 1,
                mac: "52:54:00:00:00:01".parse().unwrap(),
                location: LocationSpec::Vtep(Ipv4Addr::new(10, 0, 0, 2)),
            },
            Request::SetDhcp {
                network: 1,
                config: Some(DhcpSpec {
                    prefix_len: 24,
                    gateway: None,
                    server: Some(Ipv4Addr::new(10, 0, 0, 254)),
                    mtu: Some(1450),
                    lease_secs: 3600,
                }),
            },
            Request::SetDhcp {
                network: 1,
                config: None,
            },
            Request::RevertMacMoves,
            Request::SetPortFirewall {
                port: 2,
                rules: Some(vec![
                    FirewallRuleSpec {
                        direction: DirectionSpec::Ingress,
                        protocol: Some(6),
                        ports: Some((8080, 8080)),
                        remote: vec![PrefixSpec {
                            ip: Ipv4Addr::new(10, 0, 0, 0),
                            prefix_len: 24,
                        }],
                        action: ActionSpec::Allow,
                    },
                    FirewallRuleSpec {
                        direction: DirectionSpec::Egress,
                        protocol: None,
                        ports: None,
                        remote: vec![],
                        action: ActionSpec::Deny,
                    },
                ]),
            },
            Request::SetPortFirewall {
                port: 2,
                rules: None,
            },
            Request::ExportConnections { port: 2 },
            Request::ImportConnections {
                port: 3,
                entries: vec![connection()],
            },
        ];
        for r in requests {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::RevertMacMoves).unwrap(),
            r#"{"op":"revert_mac_moves"}"#
        );
        let r: Request = serde_json::from_str(
            r#"{"op":"set_port_qos","port":5,"qos":{"ingress":{"bits_per_sec":100000000,"burst_bytes":1000000},"priority":"high"}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::SetPortQos {
                port: 5,
                qos: Some(QosSpec {
                    ingress: Some(RateSpec {
                        bits_per_sec: 100_000_000,
                        burst_bytes: 1_000_000
                    }),
                    priority: PrioritySpec::High,
                    ..QosSpec::default()
                }),
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::SetPortQos { port: 5, qos: None }).unwrap(),
            r#"{"op":"set_port_qos","port":5,"qos":null}"#
        );
        let r: Request = serde_json::from_str(
            r#"{"op":"add_port","id":3,"mtu":1450,"attach":{"kind":"host","network":1,"tap":"t"}}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::AddPort(PortSpec { id: 3, .. })));
        let r: Request = serde_json::from_str(
            r#"{"op":"set_dhcp","network":1,"config":{"prefix_len":24,"gateway":"10.0.0.1","lease_secs":60}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::SetDhcp {
                network: 1,
                config: Some(DhcpSpec {
                    prefix_len: 24,
                    gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                    server: None,
                    mtu: None,
                    lease_secs: 60
                })
            }
        );
    }

    fn connection() -> ConnectionSpec {
        ConnectionSpec {
            original: ConnTupleSpec {
                src: Ipv4Addr::new(10, 0, 0, 5),
                dst: Ipv4Addr::new(10, 0, 0, 9),
                protocol: 6,
                src_port: 40000,
                dst_port: 8080,
            },
            origin: SideSpec::ToVm,
            tcp_state: Some(TcpStateSpec::Established),
            replied: true,
            remaining_ms: 431_999_000,
        }
    }

    #[test]
    fn firewall_requests_and_connections_on_the_wire() {
        let r: Request = serde_json::from_str(
            r#"{"op":"set_port_firewall","port":4,"rules":[{"direction":"ingress","protocol":17,"ports":[53,53],"remote":[{"ip":"0.0.0.0","prefix_len":0}],"action":"deny"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::SetPortFirewall {
                port: 4,
                rules: Some(vec![FirewallRuleSpec {
                    direction: DirectionSpec::Ingress,
                    protocol: Some(17),
                    ports: Some((53, 53)),
                    remote: vec![PrefixSpec {
                        ip: Ipv4Addr::UNSPECIFIED,
                        prefix_len: 0
                    }],
                    action: ActionSpec::Deny,
                }]),
            }
        );
        // Without rules: no firewall.
        let r: Request = serde_json::from_str(r#"{"op":"set_port_firewall","port":4}"#).unwrap();
        assert_eq!(
            r,
            Request::SetPortFirewall {
                port: 4,
                rules: None
            }
        );
        let answer = Response::Connections {
            entries: vec![connection()],
        };
        let line = serde_json::to_string(&answer).unwrap();
        assert!(line.starts_with(r#"{"status":"connections","entries":[{"original":"#));
        assert!(line.contains(r#""origin":"to_vm","tcp_state":"established""#));
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), answer);
        // A UDP connection has no TCP state.
        let udp = ConnectionSpec {
            tcp_state: None,
            ..connection()
        };
        let json = serde_json::to_string(&udp).unwrap();
        assert!(!json.contains("tcp_state"));
        assert_eq!(serde_json::from_str::<ConnectionSpec>(&json).unwrap(), udp);
    }

    #[test]
    fn macs_parse_print_and_refuse_bad_text() {
        let mac: Mac = "52:54:00:0A:bc:01".parse().unwrap();
        assert_eq!(mac, Mac([0x52, 0x54, 0, 0x0a, 0xbc, 1]));
        assert_eq!(mac.to_string(), "52:54:00:0a:bc:01");
        assert!(!mac.is_group());
        assert!(Mac([1, 0, 0x5e, 0, 0, 1]).is_group());
        for bad in [
            "52:54:00:00:00",
            "52:54:00:00:00:0g",
            "52:54:00:00:00:01:02",
            "5254.0000.0001",
        ] {
            assert_eq!(bad.parse::<Mac>(), Err(BadMac(bad.into())), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"52:54:00:0a:bc:01\""
        );
        assert!(serde_json::from_str::<Mac>("\"52:54\"").is_err());
    }

    #[test]
    fn counters_are_found_by_number() {
        let view = CountersView {
            ports: vec![PortCountersView {
                id: 3,
                traffic: TrafficView {
                    drops: [("runt".to_string(), 2), ("mtu".to_string(), 1)].into(),
                    ..Default::default()
                },
                ..Default::default()
            }],
            networks: vec![NetworkCountersView {
                id: 7,
                flooded: 4,
                ..Default::default()
            }],
            switch_drops: BTreeMap::new(),
            conntrack: None,
            routers: Vec::new(),
            rx_batches: Vec::new(),
        };
        let port = view.port(3).unwrap();
        assert_eq!(
            (port.traffic.dropped("runt"), port.traffic.drops_total()),
            (2, 3)
        );
        assert_eq!(port.traffic.dropped("other"), 0);
        assert!(view.port(4).is_none());
        assert_eq!(view.network(7).map(|n| n.flooded), Some(4));
        // Counters from a switch without port MTUs still parse.
        let line = r#"{"status":"counters","ports":[{"id":0,"rx_packets":1,"rx_bytes":2,"tx_packets":3,"tx_bytes":4,"drops":{},"tx_errors":0,"rx_errors":0}],"networks":[],"switch_drops":{}}"#;
        let Response::Counters(c) = serde_json::from_str(line).unwrap() else {
            panic!("not counters");
        };
        assert_eq!(c.ports[0].mtu, None);
        assert!(
            c.rx_batches.is_empty(),
            "no batch sizes from an older switch"
        );
        assert_eq!(c.ports[0].traffic.tx_packets, 3);
        // … and without the firewall's counters.
        assert_eq!(c.ports[0].firewall_hits, None);
        assert_eq!(c.ports[0].connections, 0);
        assert_eq!(c.conntrack, None);
        // … and without QoS counters.
        assert_eq!((c.ports[0].qos_dropped, c.ports[0].qos_delayed), (0, 0));
        let view = CountersView {
            ports: vec![PortCountersView {
                id: 2,
                firewall_hits: Some(vec![3, 0]),
                connections: 1,
                ..Default::default()
            }],
            conntrack: Some(ConntrackView {
                entries: 1,
                created: 4,
                invalid: [("tcp_not_syn".to_string(), 2)].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let line = serde_json::to_string(&Response::Counters(view.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<Response>(&line).unwrap(),
            Response::Counters(view)
        );
    }
}
