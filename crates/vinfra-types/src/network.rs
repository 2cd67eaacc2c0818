//! Logical networks: what an operator creates ([`CreateNetworkRequest`]), what the console keeps
//! ([`Network`]) and where each VM NIC on it lives ([`NetworkPort`]). Address rules
//! ([`Ipv4Subnet`], [`parse_mac`]) are here too, so the console and the CLI check them the same
//! way. What a host's switch is told is in `vinfra-proto` (`HostSwitchConfig`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::router::GATEWAY_MAC_PREFIX;

/// IP MTU of the underlay (and of the VLAN trunk) the network limits are set for, and of a
/// host whose agent does not report its own (`vinfra agent --underlay-mtu`, absent from older
/// agents).
pub const UNDERLAY_MTU: u32 = 1500;
/// Bytes a VXLAN encapsulation adds (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Default MTU of an overlay network: what a 1500-byte underlay carries (minus VXLAN).
pub const DEFAULT_OVERLAY_MTU: u32 = UNDERLAY_MTU - VXLAN_OVERHEAD;
/// Largest MTU of an overlay network (jumbo frames). Only hosts whose underlay MTU is at least
/// the network's MTU + [`VXLAN_OVERHEAD`] take VMs with a NIC on it.
pub const MAX_OVERLAY_MTU: u32 = 9000;
/// Largest (and default) MTU of a VLAN network: the trunk's.
pub const MAX_VLAN_MTU: u32 = UNDERLAY_MTU;
/// The underlay IP MTU a host needs to carry an overlay network of MTU `mtu`: `mtu` plus the
/// VXLAN encapsulation.
pub const fn underlay_mtu_for_overlay(mtu: u32) -> u32 {
    mtu.saturating_add(VXLAN_OVERHEAD)
}

/// [`UNDERLAY_MTU`], for `#[serde(default = ...)]` of an underlay MTU not sent.
pub const fn default_underlay_mtu() -> u32 {
    UNDERLAY_MTU
}

/// Smallest MTU accepted (the IPv4 minimum datagram every host must take).
pub const MIN_MTU: u32 = 576;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// First VNI reserved for routers' transit traffic ([`crate::router::TRANSIT_VNI_BASE`]): a
/// network may not have a VNI from here up.
pub use crate::router::TRANSIT_VNI_BASE;
/// Largest VNI a network may have (the ones above are reserved for routers).
pub const MAX_NETWORK_VNI: u32 = TRANSIT_VNI_BASE - 1;
/// Largest usable 802.1Q VLAN ID (4095 is reserved).
pub const MAX_VLAN_ID: u32 = 4094;
/// Automatic VNIs are the lowest free from here up.
pub const AUTO_VNI_START: u32 = 10_000;
/// Automatic VLAN IDs are the lowest free from here up.
pub const AUTO_VLAN_START: u32 = 100;
/// Shortest subnet prefix accepted.
pub const MIN_PREFIX: u8 = 8;
/// Longest subnet prefix accepted (a /30 still has two usable addresses).
pub const MAX_PREFIX: u8 = 30;
/// First three bytes of the MACs the console assigns: locally administered, unicast (`02`),
/// then `76:66` ("vf").
pub const MAC_PREFIX: [u8; 3] = [0x02, 0x76, 0x66];
/// Source MAC of the virtual switch's DHCP replies when the server address has no registered
/// owner (locally administered). The switch (`vinfra-switch`, `DHCP_SERVER_MAC`) uses the same
/// value; a NIC may not have it.
pub const DHCP_SERVER_MAC: [u8; 6] = [0x02, 0x76, 0x69, 0x6e, 0x00, 0x67];

/// How a network reaches the other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// VXLAN between the hosts' underlay addresses (a VNI).
    Overlay,
    /// An 802.1Q VLAN on the hosts' trunk to the physical network (a VLAN ID).
    Vlan,
}

impl NetworkKind {
    /// The kind as the API writes it: `overlay` or `vlan`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkKind::Overlay => "overlay",
            NetworkKind::Vlan => "vlan",
        }
    }
}

/// `POST /api/v1/networks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetworkRequest {
    /// Cluster-unique name, a DNS label.
    pub name: String,
    /// `overlay` or `vlan`.
    pub kind: NetworkKind,
    /// Overlay only: the VNI (1..=16777215); the lowest free from 10000 up when absent.
    #[serde(default)]
    pub vni: Option<u32>,
    /// VLAN only: the VLAN ID (1..=4094); the lowest free from 100 up when absent.
    #[serde(default)]
    pub vlan_id: Option<u32>,
    /// IPv4 subnet in CIDR form, prefix 8..=30, e.g. `10.80.1.0/24`; host bits must be zero.
    pub subnet: String,
    /// An address of the subnet reserved for a gateway (never given to a VM).
    #[serde(default)]
    pub gateway: Option<String>,
    /// Guest MTU, at least 576. Overlay: default 1450 (a 1500-byte underlay − 50 for VXLAN), at
    /// most 9000; VMs on it go only to hosts whose underlay MTU is at least this + 50. VLAN:
    /// default and at most 1500 (the trunk's MTU).
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// A logical network as the console keeps and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Network {
    /// The network's name.
    pub name: String,
    /// Overlay (VXLAN) or VLAN.
    pub kind: NetworkKind,
    /// The VXLAN network identifier (overlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// The 802.1Q VLAN ID (vlan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u32>,
    /// The subnet, `A.B.C.D/P`.
    pub subnet: String,
    /// The reserved gateway address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Guest MTU.
    pub mtu: u32,
    /// Seconds since the Unix epoch when the network was created.
    pub created_at: u64,
}

/// One VM NIC on a network, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkPort {
    /// The VM.
    pub vm: String,
    /// Index of the NIC in the VM's spec.
    pub nic: usize,
    /// The host the VM is placed on.
    pub host: String,
    /// The NIC's MAC address.
    pub mac: String,
    /// The NIC's IPv4 address.
    pub ip: String,
}

/// A network with its ports (`GET /api/v1/networks[/{name}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkSummary {
    /// The network.
    #[serde(flatten)]
    pub network: Network,
    /// Every VM NIC on the network, by VM name and NIC index.
    pub ports: Vec<NetworkPort>,
}

/// Traffic counters of one switch port or of one network on a switch, since the switch started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrafficCounters {
    /// Frames received (from the guest, for a VM port).
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent (to the guest, for a VM port).
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped, by reason (`runt`, `bad_vxlan_flags`, `unknown_vni`, `no_network`, …).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
}

impl TrafficCounters {
    /// Every drop, whatever the reason.
    pub fn drops_total(&self) -> u64 {
        self.drops.values().sum()
    }

    /// Adds `other` to these counters (saturating).
    pub fn add(&mut self, other: &TrafficCounters) {
        self.rx_packets = self.rx_packets.saturating_add(other.rx_packets);
        self.rx_bytes = self.rx_bytes.saturating_add(other.rx_bytes);
        self.tx_packets = self.tx_packets.saturating_add(other.tx_packets);
        self.tx_bytes = self.tx_bytes.saturating_add(other.tx_bytes);
        for (reason, n) in &other.drops {
            let e = self.drops.entry(reason.clone()).or_insert(0);
            *e = e.saturating_add(*n);
        }
    }
}

/// One logical network on a host's switch: the inner frames that entered and left it there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwitchNetworkCounters {
    /// The network's name.
    pub network: String,
    /// Frames in and out, bytes, drops.
    #[serde(flatten)]
    pub traffic: TrafficCounters,
    /// ARP requests the switch answered itself (ARP suppression).
    #[serde(default)]
    pub arp_suppressed: u64,
    /// Frames flooded (broadcast, unknown unicast, multicast).
    #[serde(default)]
    pub flooded: u64,
    /// Source MACs not learned because the network's MAC table was full.
    #[serde(default)]
    pub learning_refused: u64,
}

/// The switch port of one VM NIC on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwitchPortCounters {
    /// The VM's id.
    pub vm_id: Uuid,
    /// Index of the NIC in the VM's spec.
    pub nic: usize,
    /// The network's name.
    pub network: String,
    /// The NIC's MAC address.
    pub mac: String,
    /// The switch's port number.
    pub port: u32,
    /// Frames in and out, bytes, drops.
    #[serde(flatten)]
    pub traffic: TrafficCounters,
    /// Frames the switch could not send to the guest (QEMU gone, queue full).
    #[serde(default)]
    pub tx_errors: u64,
    /// Receive errors on the port.
    #[serde(default)]
    pub rx_errors: u64,
    /// The port's firewall (security groups), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<PortFirewallCounters>,
}

/// A VM NIC port's firewall as its switch runs it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortFirewallCounters {
    /// Connections the firewall tracks for the port.
    pub connections: u64,
    /// Each rule of the port (its groups' rules) with how many first packets it decided since
    /// the rules were last set.
    pub rules: Vec<PortRuleHits>,
}

/// One rule of a port's firewall and its hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortRuleHits {
    /// The security group the rule is from.
    pub group: String,
    /// The rule's id in that group.
    pub rule_id: u32,
    /// First packets it decided.
    pub hits: u64,
}

/// Every counter of one host's virtual switch, in the cluster's terms
/// (`GET /api/v1/hosts/{name}/switch`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostSwitchCounters {
    /// Per network, by name.
    #[serde(default)]
    pub networks: Vec<SwitchNetworkCounters>,
    /// Per VM NIC port, by VM id and NIC index.
    #[serde(default)]
    pub ports: Vec<SwitchPortCounters>,
    /// The VXLAN uplink (encapsulated frames to and from other hosts), when the switch has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<TrafficCounters>,
    /// The VLAN trunk (tagged frames to and from the physical network), when the host has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<TrafficCounters>,
    /// Drops that belong to no port, by reason.
    #[serde(default)]
    pub switch_drops: BTreeMap<String, u64>,
    /// Per router with an interface on one of the host's networks, by name. Absent (empty) from
    /// agents and switches without routers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<SwitchRouterCounters>,
}

/// One router (VRF) on a host's switch: the packets it routed there (routing happens on the
/// sender's host, so these are packets from the host's own ports) and what it did instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwitchRouterCounters {
    /// The router's name.
    pub router: String,
    /// Packets routed (each counted once as it came in, whatever it was cut into).
    #[serde(default)]
    pub routed_packets: u64,
    /// Their bytes (Ethernet frames as received).
    #[serde(default)]
    pub routed_bytes: u64,
    /// Echo requests to a gateway address answered.
    #[serde(default)]
    pub echo_replies: u64,
    /// ICMP errors sent, by kind (`time_exceeded`, `net_unreachable`, `host_unreachable`,
    /// `fragmentation_needed`).
    #[serde(default)]
    pub icmp_sent: BTreeMap<String, u64>,
    /// ICMP errors not sent because of the switch's rate limit.
    #[serde(default)]
    pub icmp_rate_limited: u64,
    /// ARP requests the router sent for a neighbour it did not know.
    #[serde(default)]
    pub arp_requests: u64,
    /// Packets addressed to a gateway that were not routed, by reason (`ttl_exceeded`,
    /// `no_route`, `neighbour_unknown`, …).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Routed packets that were IPv4 fragments (routed as they are).
    #[serde(default)]
    pub routed_fragments: u64,
    /// Routed packets with IPv4 options (kept).
    #[serde(default)]
    pub routed_options: u64,
    /// Neighbours learned or refreshed from ARP replies to a gateway.
    #[serde(default)]
    pub neighbours_learned: u64,
    /// The router's north-south NAT on the host's switch, when the router has an uplink;
    /// absent otherwise (and from agents and switches without uplinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub nat: Option<SwitchRouterNat>,
}

/// A router's uplink on one host's switch: what its edge translated (on the edge host), or what
/// it sent to the edge (on every other host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwitchRouterNat {
    /// True on the router's edge host (the one whose switch translates).
    #[serde(default)]
    pub edge: bool,
    /// Translations (sessions) in the table now.
    #[serde(default)]
    pub sessions: u64,
    /// Sessions created.
    #[serde(default)]
    pub sessions_created: u64,
    /// Sessions freed after their timeout.
    #[serde(default)]
    pub sessions_expired: u64,
    /// Packets sent out through the uplink with a translated source (source NAT or a floating
    /// IP).
    #[serde(default)]
    pub snat_packets: u64,
    /// Packets received on the uplink translated back to an inner address.
    #[serde(default)]
    pub dnat_packets: u64,
    /// Packets sent to the edge host for translation (on a host that is not the edge).
    #[serde(default)]
    pub to_edge_packets: u64,
    /// Packets received from the router's other hosts for translation (on the edge).
    #[serde(default)]
    pub from_transit_packets: u64,
    /// Gratuitous ARPs sent for the uplink's and the floating IPs' addresses.
    #[serde(default)]
    pub garps_sent: u64,
}

/// One VM NIC on a network with its switch port's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkPortCounters {
    /// The NIC and where it lives.
    #[serde(flatten)]
    pub port: NetworkPort,
    /// The port's counters; `null` when they could not be read (see `error`).
    pub counters: Option<TrafficCounters>,
    /// Why the counters are missing: the host is disconnected, did not answer in time, or its
    /// switch has no such port (a VM that is stopped or not yet started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One host's share of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkHostCounters {
    /// The host.
    pub host: String,
    /// The network's counters on the host's switch (every frame in and out of the network
    /// there, the uplink's included); `null` when they could not be read (see `error`).
    pub counters: Option<TrafficCounters>,
    /// ARP requests the host's switch answered itself for the network (absent with `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_suppressed: Option<u64>,
    /// Frames the host's switch flooded on the network (absent with `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flooded: Option<u64>,
    /// Source MACs the host's switch did not learn, its table for the network being full
    /// (absent with `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_refused: Option<u64>,
    /// Why the counters are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A network's counters summed over the hosts whose switch answered. A frame between VMs on two
/// hosts counts on both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkTotal {
    /// Frames in and out, bytes, drops.
    #[serde(flatten)]
    pub traffic: TrafficCounters,
    /// ARP requests the switches answered themselves.
    pub arp_suppressed: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Source MACs not learned (MAC table full).
    pub learning_refused: u64,
    /// Hosts whose counters are in the sums.
    pub hosts_counted: u32,
    /// Hosts whose counters could not be read, left out of the sums (see `hosts`).
    pub hosts_missing: u32,
}

/// A network's traffic: per port, per host and in all (`GET /api/v1/networks/{name}/counters`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkCounters {
    /// The network's name.
    pub network: String,
    /// Every VM NIC on the network, by VM name and NIC index.
    pub ports: Vec<NetworkPortCounters>,
    /// Every host with a VM NIC on the network, by name.
    pub hosts: Vec<NetworkHostCounters>,
    /// The sum over `hosts`.
    #[serde(default)]
    pub total: NetworkTotal,
}

/// A VM's NIC ports and their counters on its host's switch, read now
/// (`GET /api/v1/vms/{name}/counters`): traffic and drops by reason (port security, firewall,
/// storm control, QoS, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmCounters {
    /// The VM's name.
    pub vm: String,
    /// The host it is placed on, whose switch was asked.
    pub host: String,
    /// Each NIC, by index.
    pub nics: Vec<VmNicCounters>,
}

/// One NIC of a VM with its switch port's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmNicCounters {
    /// Index of the NIC in the VM's spec.
    pub nic: usize,
    /// The NIC's network.
    pub network: String,
    /// The NIC's MAC address.
    pub mac: String,
    /// The port's counters; `null` when they could not be read (see `error`).
    pub counters: Option<TrafficCounters>,
    /// Why there are no counters (the host is not connected, the VM does not run there, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a network definition or an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The network's name is not a valid name.
    #[error("network name: {0}")]
    Name(crate::NameError),
    /// The subnet is not `A.B.C.D/P`.
    #[error("subnet '{0}' is not an IPv4 CIDR like 10.80.1.0/24")]
    SubnetSyntax(String),
    /// The prefix length is out of range.
    #[error("subnet '{subnet}': prefix must be between /{MIN_PREFIX} and /{MAX_PREFIX}")]
    Prefix {
        /// The subnet as given.
        subnet: String,
    },
    /// The address has bits set beyond the prefix.
    #[error("subnet '{subnet}' has host bits set; the network address is {network}")]
    HostBits {
        /// The subnet as given.
        subnet: String,
        /// The network address meant, `A.B.C.D/P`.
        network: String,
    },
    /// The gateway is not a usable address of the subnet.
    #[error("gateway '{gateway}' is not a usable address of {subnet}")]
    Gateway {
        /// The gateway as given.
        gateway: String,
        /// The subnet.
        subnet: String,
    },
    /// An overlay network was given a VLAN ID.
    #[error("an overlay network has a vni, not a vlan_id")]
    VlanIdOnOverlay,
    /// A VLAN network was given a VNI.
    #[error("a VLAN network has a vlan_id, not a vni")]
    VniOnVlan,
    /// The VNI is out of range.
    #[error("vni must be between 1 and {MAX_VNI}, got {0}")]
    Vni(u32),
    /// The VNI is one of those reserved for routers' transit traffic.
    #[error(
        "vni {0} is reserved for router transit ({TRANSIT_VNI_BASE} and up); a network's vni is \
         at most {MAX_NETWORK_VNI}"
    )]
    VniReserved(u32),
    /// The VLAN ID is out of range.
    #[error("vlan_id must be between 1 and {MAX_VLAN_ID}, got {0}")]
    VlanId(u32),
    /// The MTU is below the smallest IPv4 MTU.
    #[error("mtu must be at least {MIN_MTU}, got {0}")]
    MtuTooSmall(u32),
    /// The MTU of an overlay is above what a jumbo underlay carries with the encapsulation.
    #[error(
        "mtu {0} is above the largest overlay MTU, {MAX_OVERLAY_MTU} (jumbo frames; hosts need \
         an underlay MTU of the network's MTU + {VXLAN_OVERHEAD} for VXLAN)"
    )]
    OverlayMtu(u32),
    /// The MTU of a VLAN network is above the trunk's.
    #[error("mtu {0} does not fit a VLAN network: the trunk MTU is {UNDERLAY_MTU}")]
    VlanMtu(u32),
    /// The IPv4 address does not parse.
    #[error("'{0}' is not an IPv4 address")]
    Address(String),
    /// The MAC address does not parse.
    #[error("'{0}' is not a MAC address like 02:76:66:00:00:01")]
    MacSyntax(String),
    /// The MAC address is a multicast (group) address.
    #[error("MAC '{0}' is a multicast address; a NIC needs a unicast one")]
    MacMulticast(String),
    /// The MAC address is all zeros.
    #[error("MAC 00:00:00:00:00:00 is not usable")]
    MacZero,
    /// The MAC address is the one the switch's DHCP server answers from.
    #[error(
        "MAC {} is reserved for the virtual switch's DHCP server",
        format_mac(DHCP_SERVER_MAC)
    )]
    MacReserved,
    /// The MAC address has the prefix of the routers' gateways.
    #[error(
        "MAC '{mac}' has the prefix {prefix} reserved for the routers' gateways",
        prefix = format_prefix(GATEWAY_MAC_PREFIX)
    )]
    MacGateway {
        /// The MAC address as given.
        mac: String,
    },
}

fn format_prefix(p: [u8; 3]) -> String {
    format!("{:02x}:{:02x}:{:02x}", p[0], p[1], p[2])
}

/// An IPv4 subnet with its network address aligned to the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Subnet {
    network: u32,
    prefix: u8,
}

impl Ipv4Subnet {
    /// Parses `A.B.C.D/P` with a prefix of [`MIN_PREFIX`]..=[`MAX_PREFIX`]; an address with host
    /// bits set is refused (naming the network address meant).
    pub fn parse(s: &str) -> Result<Self, NetworkError> {
        let syntax = || NetworkError::SubnetSyntax(s.to_string());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 2 {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(syntax());
        }
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(NetworkError::Prefix {
                subnet: s.to_string(),
            });
        }
        let mask = u32::MAX << (32 - prefix);
        let bits = u32::from(addr);
        if bits & !mask != 0 {
            return Err(NetworkError::HostBits {
                subnet: s.to_string(),
                network: format!("{}/{prefix}", Ipv4Addr::from(bits & mask)),
            });
        }
        Ok(Ipv4Subnet {
            network: bits,
            prefix,
        })
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !(u32::MAX << (32 - self.prefix)))
    }

    /// True when the address is inside the subnet (network and broadcast included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.network
    }

    /// True when the address may be given to a host: inside, and neither the network nor the
    /// broadcast address.
    pub fn is_usable(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.broadcast()
    }

    /// True when the two subnets share an address (one holds the other).
    pub fn overlaps(&self, other: &Ipv4Subnet) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The usable addresses, lowest first.
    pub fn usable(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.network()) + 1..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// Parses a MAC address `xx:xx:xx:xx:xx:xx` (either case) that a NIC may have: unicast, not all
/// zeros, not [`DHCP_SERVER_MAC`] and not of the routers' gateways
/// (`02:76:72`, [`crate::router::GATEWAY_MAC_PREFIX`]).
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetworkError> {
    let bad = || NetworkError::MacSyntax(s.to_string());
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        // Exactly two hex digits: `from_str_radix` alone would also take a sign ("+2").
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if out[0] & 1 == 1 {
        return Err(NetworkError::MacMulticast(s.to_string()));
    }
    if out == [0; 6] {
        return Err(NetworkError::MacZero);
    }
    if out == DHCP_SERVER_MAC {
        return Err(NetworkError::MacReserved);
    }
    if out[..3] == GATEWAY_MAC_PREFIX {
        return Err(NetworkError::MacGateway { mac: s.to_string() });
    }
    Ok(out)
}

/// Formats a MAC address in lower case.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A network definition after checking: the subnet normalised, gateway and MTU settled. The VNI
/// or VLAN ID may still be `None` (allocated by the console).
pub fn check_request(
    r: &CreateNetworkRequest,
) -> Result<(Ipv4Subnet, Option<Ipv4Addr>, u32), NetworkError> {
    crate::validate_name(&r.name).map_err(NetworkError::Name)?;
    match r.kind {
        NetworkKind::Overlay => {
            if r.vlan_id.is_some() {
                return Err(NetworkError::VlanIdOnOverlay);
            }
            if let Some(v) = r.vni {
                if !(1..=MAX_VNI).contains(&v) {
                    return Err(NetworkError::Vni(v));
                }
                if v >= TRANSIT_VNI_BASE {
                    return Err(NetworkError::VniReserved(v));
                }
            }
        }
        NetworkKind::Vlan => {
            if r.vni.is_some() {
                return Err(NetworkError::VniOnVlan);
            }
            if let Some(v) = r.vlan_id {
                if !(1..=MAX_VLAN_ID).contains(&v) {
                    return Err(NetworkError::VlanId(v));
                }
            }
        }
    }
    let subnet = Ipv4Subnet::parse(&r.subnet)?;
    let gateway = match &r.gateway {
        None => None,
        Some(g) => {
            let ip: Ipv4Addr = g
                .trim()
                .parse()
                .map_err(|_| NetworkError::Address(g.clone()))?;
            if !subnet.is_usable(ip) {
                return Err(NetworkError::Gateway {
                    gateway: g.clone(),
                    subnet: subnet.to_string(),
                });
            }
            Some(ip)
        }
    };
    let (default, max) = match r.kind {
        NetworkKind::Overlay => (DEFAULT_OVERLAY_MTU, MAX_OVERLAY_MTU),
        NetworkKind::Vlan => (MAX_VLAN_MTU, MAX_VLAN_MTU),
    };
    let mtu = r.mtu.unwrap_or(default);
    if mtu < MIN_MTU {
        return Err(NetworkError::MtuTooSmall(mtu));
    }
    if mtu > max {
        return Err(match r.kind {
            NetworkKind::Overlay => NetworkError::OverlayMtu(mtu),
            NetworkKind::Vlan => NetworkError::VlanMtu(mtu),
        });
    }
    Ok((subnet, gateway, mtu))
}

#[cfg(test)]
mod tests;
