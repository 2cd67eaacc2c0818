//! Counters: plain integers owned by the datapath thread, read through [`super::Switch::snapshot`].

use super::ids::{NetworkId, PortId, RouterId};
use crate::wire;

/// Why a frame (or one copy of it) was dropped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes).
    Runt,
    /// An 802.1Q, ARP, IPv4, UDP or VXLAN header (or an inner Ethernet header) cut short.
    TruncatedHeader,
    /// A VXLAN header without the I flag.
    BadVxlanFlags,
    /// A VXLAN frame whose VNI names no network here.
    UnknownVni,
    /// A frame from the trunk whose VID names no network here.
    UnknownVlan,
    /// Larger than the MTU of the port it came in on or would go out of.
    Oversized,
    /// An 802.1ad (QinQ) or double 802.1Q tag.
    QinqUnsupported,
    /// The port is not (or no longer) attached to an existing network.
    NoNetwork,
    /// An IPv4 header with a bad checksum.
    BadIpChecksum,
    /// An IPv4 header with a bad version or inconsistent lengths.
    BadIpHeader,
    /// A UDP length field below the header size.
    BadUdpLength,
    /// ARP that is not Ethernet/IPv4.
    BadArp,
    /// A received frame for a port number the switch does not have.
    NoPort,
    /// An untagged frame on the trunk.
    UntaggedOnTrunk,
    /// An 802.1Q-tagged frame on an access port or inside the overlay.
    UnexpectedVlanTag,
    /// A group (multicast) source MAC address.
    BadSourceMac,
    /// An underlay frame that is not IPv4/UDP to port 4789.
    NotVxlan,
    /// A fragmented underlay IPv4 packet.
    IpFragment,
    /// A VXLAN frame addressed to another VTEP.
    WrongVtep,
    /// Unicast whose destination lives behind the port it came in on.
    SamePort,
    /// Unicast from one remote VTEP whose destination is at another remote VTEP (split horizon).
    SplitHorizon,
    /// A copy for a remote VTEP with no VXLAN uplink configured.
    NoUplink,
    /// A copy for a remote VTEP whose underlay MAC is unknown.
    NoVtepMac,
    /// A DHCP client message (UDP 68 to 67) that is not valid BOOTP/DHCP, on a network whose
    /// DHCP the switch answers.
    BadDhcp,
    /// A DHCPDISCOVER or DHCPREQUEST from a MAC address with no address registered for it (or
    /// whose client hardware address is not the frame's source).
    DhcpUnknownClient,
    /// A DHCP client message the switch does not answer: DECLINE, RELEASE, INFORM, a REQUEST
    /// for another server, a relayed message.
    DhcpIgnored,
    /// Offload metadata (virtio-net header) that does not match the frame, or an unsupported
    /// kind of offload.
    BadOffload,
    /// Port security: a source MAC the port may not use.
    SpoofedMac,
    /// Port security: an IPv4 source the frame's MAC may not use.
    SpoofedIp,
    /// Port security: ARP whose sender is not the frame's source MAC or an address it may use.
    SpoofedArp,
    /// Port security: a DHCP server message (UDP from port 67) from a VM port.
    DhcpServer,
    /// Port security: an EtherType other than IPv4, ARP and RARP.
    EthertypeNotAllowed,
    /// A new source MAC on a port that holds its limit of learned entries.
    PortMacLimit,
    /// A frame to flood from a port over its storm-control rate.
    StormControl,
    /// A VXLAN packet from an underlay address that is not one of the cluster's hosts.
    UnknownVtep,
    /// Firewall: the first packet of a connection, denied by a rule of the port's security
    /// groups.
    FirewallDenied,
    /// Firewall: the first packet of a connection to a firewalled port that no rule allows
    /// (ingress default deny).
    FirewallDefaultDeny,
    /// Firewall: an IPv4 packet no connection may carry (a TCP segment other than a SYN with
    /// no connection, an unmatched ICMP reply or error, a later fragment of no connection, …)
    /// or whose transport header is malformed.
    ConntrackInvalid,
    /// Firewall: the first packet of an allowed connection, and the connection table (or the
    /// port's share of it) is full.
    ConntrackFull,
    /// Routing: a frame for the gateway (its MAC) that the router neither routes nor answers:
    /// an IPv4 packet to a gateway address other than an echo request, an ARP packet other
    /// than a request for the gateway's address, another EtherType.
    ToGateway,
    /// Routing: an IPv4 packet with a time to live of 1 or 0 (answered with ICMP time
    /// exceeded).
    TtlExceeded,
    /// Routing: no route to the destination in the ingress network's router (answered with
    /// ICMP net unreachable).
    NoRoute,
    /// Routing: the MAC of the destination or next hop is not known yet (the router asks with
    /// ARP; after 3 s without an answer a connected destination gets ICMP host unreachable).
    NeighbourUnknown,
    /// Routing: larger than the egress MTU with DF set (answered with ICMP fragmentation
    /// needed and the egress MTU).
    FragmentationNeeded,
    /// A frame from a VM or host port with the network's gateway MAC as its source, or ARP
    /// from such a port that claims the gateway's address.
    SpoofedGateway,
    /// A frame addressed to the gateway MAC from the trunk or another host: only the host of
    /// the sender routes.
    NotRoutedRemote,
    /// Routing: an IPv4 packet for the gateway MAC with a source or destination a router never
    /// forwards (0.0.0.0/8, 127.0.0.0/8, multicast, broadcast, 240.0.0.0/4, a connected
    /// subnet's network or broadcast address), or a source that is one of the router's own
    /// addresses.
    Martian,
    /// Routing: an ICMP message to a gateway address that is malformed (bad checksum, cut
    /// short, fragmented, an unknown echo code).
    BadIcmp,
    /// North-south: a frame for a router's uplink (its MAC from the trunk, or a packet from
    /// its transit VNI) on a switch that is not the router's edge.
    NotEdge,
    /// North-south: a packet the edge cannot source-NAT (a protocol other than TCP, UDP and
    /// ICMP echo, an ICMP message other than an echo request, a fragment) from an address
    /// without a floating IP.
    NatUnsupported,
    /// North-south: a packet from outside to the uplink's address that no session or floating
    /// IP translates (nor an echo request the edge answers).
    NoNatSession,
    /// North-south: a new session and the NAT table is full (after freeing expired sessions).
    NatTableFull,
    /// North-south: a new session and every outer port of the router and protocol is taken.
    NatPortsExhausted,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 53;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::TruncatedHeader,
        DropReason::BadVxlanFlags,
        DropReason::UnknownVni,
        DropReason::UnknownVlan,
        DropReason::Oversized,
        DropReason::QinqUnsupported,
        DropReason::NoNetwork,
        DropReason::BadIpChecksum,
        DropReason::BadIpHeader,
        DropReason::BadUdpLength,
        DropReason::BadArp,
        DropReason::NoPort,
        DropReason::UntaggedOnTrunk,
        DropReason::UnexpectedVlanTag,
        DropReason::BadSourceMac,
        DropReason::NotVxlan,
        DropReason::IpFragment,
        DropReason::WrongVtep,
        DropReason::SamePort,
        DropReason::SplitHorizon,
        DropReason::NoUplink,
        DropReason::NoVtepMac,
        DropReason::BadDhcp,
        DropReason::DhcpUnknownClient,
        DropReason::DhcpIgnored,
        DropReason::BadOffload,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::SpoofedArp,
        DropReason::DhcpServer,
        DropReason::EthertypeNotAllowed,
        DropReason::PortMacLimit,
        DropReason::StormControl,
        DropReason::UnknownVtep,
        DropReason::FirewallDenied,
        DropReason::FirewallDefaultDeny,
        DropReason::ConntrackInvalid,
        DropReason::ConntrackFull,
        DropReason::ToGateway,
        DropReason::TtlExceeded,
        DropReason::NoRoute,
        DropReason::NeighbourUnknown,
        DropReason::FragmentationNeeded,
        DropReason::SpoofedGateway,
        DropReason::NotRoutedRemote,
        DropReason::Martian,
        DropReason::BadIcmp,
        DropReason::NotEdge,
        DropReason::NatUnsupported,
        DropReason::NoNatSession,
        DropReason::NatTableFull,
        DropReason::NatPortsExhausted,
    ];

    /// The snake_case name used in APIs and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::TruncatedHeader => "truncated_header",
            DropReason::BadVxlanFlags => "bad_vxlan_flags",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::UnknownVlan => "unknown_vlan",
            DropReason::Oversized => "oversized",
            DropReason::QinqUnsupported => "qinq_unsupported",
            DropReason::NoNetwork => "no_network",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadUdpLength => "bad_udp_length",
            DropReason::BadArp => "bad_arp",
            DropReason::NoPort => "no_port",
            DropReason::UntaggedOnTrunk => "untagged_on_trunk",
            DropReason::UnexpectedVlanTag => "unexpected_vlan_tag",
            DropReason::BadSourceMac => "bad_source_mac",
            DropReason::NotVxlan => "not_vxlan",
            DropReason::IpFragment => "ip_fragment",
            DropReason::WrongVtep => "wrong_vtep",
            DropReason::SamePort => "same_port",
            DropReason::SplitHorizon => "split_horizon",
            DropReason::NoUplink => "no_uplink",
            DropReason::NoVtepMac => "no_vtep_mac",
            DropReason::BadDhcp => "bad_dhcp",
            DropReason::DhcpUnknownClient => "dhcp_unknown_client",
            DropReason::DhcpIgnored => "dhcp_ignored",
            DropReason::BadOffload => "bad_offload",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::DhcpServer => "dhcp_server",
            DropReason::EthertypeNotAllowed => "ethertype_not_allowed",
            DropReason::PortMacLimit => "port_mac_limit",
            DropReason::StormControl => "storm_control",
            DropReason::UnknownVtep => "unknown_vtep",
            DropReason::FirewallDenied => "firewall_denied",
            DropReason::FirewallDefaultDeny => "firewall_default_deny",
            DropReason::ConntrackInvalid => "conntrack_invalid",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::ToGateway => "to_gateway",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::NeighbourUnknown => "neighbour_unknown",
            DropReason::FragmentationNeeded => "fragmentation_needed",
            DropReason::SpoofedGateway => "spoofed_gateway",
            DropReason::NotRoutedRemote => "not_routed_remote",
            DropReason::Martian => "martian",
            DropReason::BadIcmp => "bad_icmp",
            DropReason::NotEdge => "not_edge",
            DropReason::NatUnsupported => "nat_unsupported",
            DropReason::NoNatSession => "no_nat_session",
            DropReason::NatTableFull => "nat_table_full",
            DropReason::NatPortsExhausted => "nat_ports_exhausted",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<wire::Error> for DropReason {
    fn from(e: wire::Error) -> DropReason {
        match e {
            wire::Error::Truncated(wire::Layer::Ethernet) => DropReason::Runt,
            wire::Error::Truncated(_) | wire::Error::Exhausted => DropReason::TruncatedHeader,
            wire::Error::QinqUnsupported => DropReason::QinqUnsupported,
            wire::Error::UnsupportedArp => DropReason::BadArp,
            wire::Error::BadIpv4Header => DropReason::BadIpHeader,
            wire::Error::BadIpv4Checksum => DropReason::BadIpChecksum,
            wire::Error::BadUdpLength => DropReason::BadUdpLength,
            wire::Error::BadVxlanFlags => DropReason::BadVxlanFlags,
            wire::Error::Ipv4Fragment => DropReason::IpFragment,
            wire::Error::NotVxlan => DropReason::NotVxlan,
            wire::Error::NotDhcp | wire::Error::BadDhcpOption => DropReason::BadDhcp,
            wire::Error::BadVnetHeader | wire::Error::BadGso => DropReason::BadOffload,
            wire::Error::BadIcmpChecksum | wire::Error::UnsupportedIcmp => DropReason::BadIcmp,
        }
    }
}

/// Drop counts by reason.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Drops([u64; DropReason::COUNT]);

impl Default for Drops {
    fn default() -> Self {
        Drops([0; DropReason::COUNT])
    }
}

impl Drops {
    /// Count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Reasons with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n != 0)
    }

    #[inline]
    pub(crate) fn add(&mut self, reason: DropReason) {
        if let Some(n) = self.0.get_mut(reason.index()) {
            *n += 1;
        }
    }
}

/// Traffic counters of a port or a network.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Counters {
    /// Frames received (on a port: every frame, dropped or not; on a network: frames
    /// classified into it).
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames sent (on a network: copies sent out of it).
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames or copies dropped, by reason.
    pub drops: Drops,
}

impl Counters {
    #[inline]
    pub(crate) fn rx(&mut self, len: usize) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
    }

    #[inline]
    pub(crate) fn tx(&mut self, len: usize) {
        self.tx_packets += 1;
        self.tx_bytes += len as u64;
    }
}

/// A network's counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SegmentCounters {
    /// Inner (tenant) frames in and out of the network.
    pub traffic: Counters,
    /// ARP requests answered by the switch instead of being flooded.
    pub arp_suppressed: u64,
    /// Frames flooded (broadcast, multicast or unknown unicast).
    pub flooded: u64,
    /// Source addresses not learned because the table was full.
    pub learning_refused: u64,
    /// DHCP offers, acknowledgements and refusals sent by the switch's DHCP responder.
    pub dhcp_replies: u64,
    /// Announcements that would have moved a static entry to another host without the control
    /// plane expecting that move (see [`super::ConfigCommand::ExpectMacMove`]); the entry stayed.
    pub mac_moves_refused: u64,
    /// Frames from another host sent on to the host a migrating VM's address is redirected to
    /// (see [`super::ConfigCommand::RedirectMac`]).
    pub mac_redirected: u64,
}

/// An ICMP error a router sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IcmpError {
    /// Time exceeded, TTL expired in transit (11/0).
    TimeExceeded,
    /// Destination unreachable, net unreachable (3/0): no route.
    NetUnreachable,
    /// Destination unreachable, host unreachable (3/1): a connected destination that did not
    /// answer ARP.
    HostUnreachable,
    /// Destination unreachable, fragmentation needed and DF set (3/4), with the next-hop MTU.
    FragmentationNeeded,
}

impl IcmpError {
    /// Number of kinds.
    pub const COUNT: usize = 4;

    /// Every kind, in counter order.
    pub const ALL: [IcmpError; Self::COUNT] = [
        IcmpError::TimeExceeded,
        IcmpError::NetUnreachable,
        IcmpError::HostUnreachable,
        IcmpError::FragmentationNeeded,
    ];

    /// The snake_case name used in APIs and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            IcmpError::TimeExceeded => "time_exceeded",
            IcmpError::NetUnreachable => "net_unreachable",
            IcmpError::HostUnreachable => "host_unreachable",
            IcmpError::FragmentationNeeded => "fragmentation_needed",
        }
    }
}

/// A router's counters: what it did with the packets sent to its gateways from this host's
/// ports.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RouterCounters {
    /// Packets routed (a large TCP segment counts once, whatever it is cut into).
    pub routed_packets: u64,
    /// Their bytes, Ethernet frames as received.
    pub routed_bytes: u64,
    /// Routed packets that were IPv4 fragments (routed as they are: the router does not
    /// reassemble).
    pub routed_fragments: u64,
    /// Routed packets with IPv4 options (kept as they are).
    pub routed_options: u64,
    /// Echo requests to a gateway address answered.
    pub echo_replies: u64,
    /// ICMP errors sent, by kind (index of [`IcmpError::ALL`]).
    pub icmp_sent: [u64; IcmpError::COUNT],
    /// ICMP errors not sent because the switch's ICMP rate was exceeded.
    pub icmp_rate_limited: u64,
    /// ARP requests sent for destinations and next hops without a known MAC.
    pub arp_requests: u64,
    /// Neighbours learned or refreshed from ARP replies to a gateway.
    pub neighbours_learned: u64,
    /// Packets not routed, by reason (also counted on the ingress port and network).
    pub drops: Drops,
    /// The NAT of the router's uplink on this switch; `None` when it has no uplink.
    pub nat: Option<NatCounters>,
}

/// Counters of a router's uplink on one switch: translations where it is the edge, packets
/// sent to the edge where it is not.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NatCounters {
    /// This switch is the router's edge.
    pub edge: bool,
    /// Sessions in the table now (expired ones not yet freed included).
    pub sessions: u64,
    /// Sessions made.
    pub sessions_created: u64,
    /// Sessions freed after their timeout.
    pub sessions_expired: u64,
    /// Packets sent out through the uplink with a translated source (source NAT or floating).
    pub snat_packets: u64,
    /// Packets from outside translated back to an inner address (replies of source NAT, to a
    /// floating IP, ICMP errors about either).
    pub dnat_packets: u64,
    /// Packets sent in VXLAN to the edge (on a switch that is not the edge).
    pub to_edge_packets: u64,
    /// Packets received from the router's other hosts on its transit VNI (on the edge).
    pub from_transit_packets: u64,
    /// Gratuitous ARPs sent for the uplink's and the floating IPs' addresses.
    pub garps_sent: u64,
}

impl RouterCounters {
    /// ICMP errors of one kind sent.
    pub fn icmp(&self, kind: IcmpError) -> u64 {
        self.icmp_sent.get(kind as usize).copied().unwrap_or(0)
    }

    /// Counts one ICMP error sent.
    pub(crate) fn icmp_sent(&mut self, kind: IcmpError) {
        if let Some(n) = self.icmp_sent.get_mut(kind as usize) {
            *n += 1;
        }
    }
}

/// A copy of every counter.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Snapshot {
    /// Per port, by port number.
    pub ports: Vec<(PortId, Counters)>,
    /// Per network, by network number.
    pub networks: Vec<(NetworkId, SegmentCounters)>,
    /// Per router, by router number.
    pub routers: Vec<(RouterId, RouterCounters)>,
    /// Drops that belong to no port (frames for an unknown port number).
    pub switch_drops: Drops,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_once_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, k) in IcmpError::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn drops_count() {
        let mut d = Drops::default();
        d.add(DropReason::UnknownVni);
        d.add(DropReason::UnknownVni);
        d.add(DropReason::Runt);
        assert_eq!(d.get(DropReason::UnknownVni), 2);
        assert_eq!(d.total(), 3);
        assert_eq!(d.iter().count(), 2);
    }
}
