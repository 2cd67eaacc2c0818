//! The switch configuration the console computes for each host ([`HostSwitchConfig`]) and its
//! parts: networks, MAC and ARP entries, firewalls, QoS, port security, routers. Re-exported by
//! [`crate::messages`].

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use vinfra_switch_control::ConnectionSpec;
use vinfra_types::qos::NicQos;
use vinfra_types::security_group::{SgAction, SgDirection};
use vinfra_types::AllowedAddressPair;

/// What the switch of one host needs to know about the cluster's networks, computed by the
/// console. The agent adds what it knows itself: the ports of its VMs' NICs, static MAC entries
/// for them, and the VXLAN uplink on its underlay address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSwitchConfig {
    /// Networks this host has (or may soon have) VM ports on.
    #[serde(default)]
    pub networks: Vec<SwitchNetwork>,
    /// Static MAC entries for VM NICs on other hosts.
    #[serde(default)]
    pub macs: Vec<SwitchMacEntry>,
    /// Addresses the switch answers ARP requests for (ARP suppression).
    #[serde(default)]
    pub arps: Vec<SwitchArpEntry>,
    /// Underlay addresses of the cluster's hosts: the only sources the VXLAN uplink accepts.
    #[serde(default)]
    pub underlay_peers: Vec<Ipv4Addr>,
    /// The firewall of each VM NIC on this host (or arriving at it) that is in at least one
    /// security group, by network and MAC; a NIC not listed is not filtered. Absent (empty)
    /// from consoles without security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewalls: Vec<SwitchNicFirewall>,
    /// The QoS of each VM NIC on this host (or arriving at it) that has one, by network and
    /// MAC; a NIC not listed has none. Absent (empty) from consoles without QoS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qos: Vec<SwitchNicQos>,
    /// The port security of every VM NIC on this host (or arriving at it), by network and MAC:
    /// the agent sets its port's policy from it, so a change reaches the running VM. A NIC not
    /// listed keeps what its VM was started with. Absent (empty) from older consoles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_security: Vec<SwitchNicSecurity>,
    /// The routers (VRFs) with an interface on at least one of [`HostSwitchConfig::networks`]:
    /// each with its interfaces on those networks and its static routes. Every network a
    /// router attaches is in `networks` on a host where any of the router's networks is, so a
    /// packet is routed on its sender's host and goes straight to the destination's host.
    /// Absent (empty) from consoles without routers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<SwitchRouter>,
}

/// A router (VRF) as one host's switch needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRouter {
    /// The router's name.
    pub name: String,
    /// The switch's router number, the same on every host (1 to 65535).
    pub id: u16,
    /// Its virtual interfaces (distributed gateways), one per attached network.
    #[serde(default)]
    pub interfaces: Vec<SwitchRouterInterface>,
    /// Its static routes.
    #[serde(default)]
    pub routes: Vec<SwitchRoute>,
    /// Its uplink to the physical network, with its edge and floating IPs, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<SwitchRouterUplink>,
}

/// A router's uplink on an external network, as every host's switch needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRouterUplink {
    /// The external network's name (one of [`HostSwitchConfig::networks`], a VLAN network).
    pub network: String,
    /// The router's address on it.
    pub ip: Ipv4Addr,
    /// The external network's prefix length (1 to 32).
    pub prefix_len: u8,
    /// The router's MAC on it `xx:xx:xx:xx:xx:xx` (lower case).
    pub mac: String,
    /// The underlay (VTEP) address of the router's edge host: the host whose switch translates
    /// the router's north-south traffic. The host with that address is the edge; every other
    /// sends that traffic there.
    pub edge_vtep: Ipv4Addr,
    /// The VNI that carries the router's north-south packets to its edge.
    pub transit_vni: u32,
    /// Floating IPs: 1:1 NAT of a VM NIC's address.
    #[serde(default)]
    pub floating_ips: Vec<SwitchFloatingIp>,
}

/// A floating IP of a router's uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchFloatingIp {
    /// The address on the external network.
    pub external: Ipv4Addr,
    /// The VM NIC's address behind it.
    pub internal: Ipv4Addr,
}

/// A router's virtual interface on a network: the network's gateway, the same address and MAC
/// on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRouterInterface {
    /// The network's name (one of [`HostSwitchConfig::networks`]).
    pub network: String,
    /// The gateway's address.
    pub ip: Ipv4Addr,
    /// The network's prefix length (1 to 32).
    pub prefix_len: u8,
    /// The gateway's MAC `xx:xx:xx:xx:xx:xx` (lower case).
    pub mac: String,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRoute {
    /// Destination prefix, `a.b.c.d/len` (host bits zero).
    pub prefix: String,
    /// Next hop, an address on one of the router's networks.
    pub via: Ipv4Addr,
}

/// The port security of one VM NIC, as its spec gives it: what its switch port may send from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchNicSecurity {
    /// The NIC's network.
    pub network: String,
    /// The NIC's MAC address `xx:xx:xx:xx:xx:xx` (lower case).
    pub mac: String,
    /// Port security on (the NIC sends only from its MAC and address and its allowed pairs).
    pub port_security: bool,
    /// The NIC's IPv4 address (none: any address from its MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Its allowed address pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_addresses: Vec<AllowedAddressPair>,
}

/// The QoS of one VM NIC, as its spec gives it (the switch's port gets it with the default
/// burst and weight filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchNicQos {
    /// The NIC's network.
    pub network: String,
    /// The NIC's MAC address `xx:xx:xx:xx:xx:xx` (lower case).
    pub mac: String,
    /// Its QoS.
    pub qos: NicQos,
}

/// The firewall of one VM NIC: the union of the rules of its security groups. A packet
/// matched by a `deny` rule is dropped; else one matched by an `allow` rule passes; else
/// ingress (to the NIC) is dropped and egress (from it) passes. Replies to a connection a rule
/// let through pass both ways (connection tracking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchNicFirewall {
    /// The NIC's network.
    pub network: String,
    /// The NIC's MAC address `xx:xx:xx:xx:xx:xx` (lower case).
    pub mac: String,
    /// Its rules, by group name and rule id.
    pub rules: Vec<SwitchFirewallRule>,
}

/// One rule of a NIC's firewall, its remote group (if any) resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchFirewallRule {
    /// Ingress (to the NIC; the remote is the source) or egress (from it; the remote is the
    /// destination).
    pub direction: SgDirection,
    /// The IP protocol number; `None` matches every protocol.
    pub protocol: Option<u8>,
    /// Destination ports, first and last inclusive (tcp and udp only); `None`: every port.
    pub ports: Option<(u16, u16)>,
    /// The remote prefixes (address, length), sorted; an empty list matches nothing (a remote
    /// group without NICs).
    pub remotes: Vec<(Ipv4Addr, u8)>,
    /// Allow or deny.
    pub action: SgAction,
    /// The security group the rule is from.
    pub group: String,
    /// The rule's id in its group.
    pub rule_id: u32,
}

/// The connections a host's switch tracks for one VM NIC (its firewall's), as they move with
/// the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicConnections {
    /// The NIC's network.
    pub network: String,
    /// The NIC's MAC address.
    pub mac: String,
    /// Its connections, each with the time it has left.
    pub entries: Vec<ConnectionSpec>,
}

/// One logical network on a host's switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchNetwork {
    /// The network's name (what a VM's NIC names).
    pub name: String,
    /// The switch's network number, the same on every host (1 to 65535).
    pub id: u16,
    /// Overlay (VNI) or VLAN (VID).
    pub kind: SwitchNetworkKind,
    /// IP MTU of the network's VM ports (and so of the guests' NICs). An overlay's must leave
    /// room for the 50 bytes of VXLAN encapsulation on the underlay.
    pub mtu: u16,
    /// Overlay only: underlay addresses of the other hosts with ports on this network, where
    /// broadcast, unknown unicast and multicast frames are replicated.
    #[serde(default)]
    pub flood: Vec<Ipv4Addr>,
    /// The switch's DHCP responder on this network, handing each VM NIC the address of its ARP
    /// entry; `None` leaves DHCP to the guests' network.
    #[serde(default)]
    pub dhcp: Option<SwitchDhcp>,
}

/// What the switch's DHCP responder tells the guests of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchDhcp {
    /// Prefix length of the network's subnet (1 to 32).
    pub prefix_len: u8,
    /// The default gateway, if the network has one.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// The responder's own address (server identifier), an address of the subnet.
    pub server: Ipv4Addr,
    /// Interface MTU sent to the guests.
    pub mtu: u16,
}

/// How a logical network reaches other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchNetworkKind {
    /// A VXLAN overlay between the hosts' underlay addresses.
    Overlay {
        /// VXLAN network identifier (below 2^24).
        vni: u32,
    },
    /// A VLAN on the physical network, through the host's trunk.
    Vlan {
        /// VLAN ID (1 to 4094).
        vid: u16,
    },
}

/// A VM NIC's MAC address on another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchMacEntry {
    /// Network name.
    pub network: String,
    /// MAC address `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// Underlay address of the host the NIC is on.
    pub host_ip: Ipv4Addr,
    /// Underlay address of the host its VM is migrating to: an announcement of the MAC from
    /// there (the VM resumed) moves the entry; from anywhere else it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<Ipv4Addr>,
}

/// An IPv4 address the switch answers ARP requests for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchArpEntry {
    /// Network name.
    pub network: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// Its owner's MAC address `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
}
