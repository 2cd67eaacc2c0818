//! What a switch answers about itself: its flows and its counters.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

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
    /// Frames from another host sent on to the host a migrating VM's address is redirected to
    /// ([`crate::Request::RedirectMac`]). Zero from older switches.
    #[serde(default)]
    pub mac_redirected: u64,
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
    /// The kernel fast path; absent when the switch runs without one (and from older
    /// switches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<Box<FastPathView>>,
}

/// The kernel fast path's counters: flows established between local ports that the kernel
/// forwards without the switch's datapath thread (their frames are also in the ports'
/// counters).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FastPathView {
    /// Flows the kernel holds now.
    pub flows: u64,
    /// Flows handed to it since the switch started.
    pub installed: u64,
    /// Times every flow was taken back (the switch's state changed, or revalidation).
    pub flushes: u64,
    /// Flows not handed over (the kernel's table full or refusing).
    pub refused: u64,
    /// Frames the kernel forwarded.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
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
