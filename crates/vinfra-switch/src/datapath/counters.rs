//! Counters: plain integers owned by the datapath thread, read through [`super::Switch::snapshot`].

use super::ids::{NetworkId, PortId};
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
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 39;

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
}

/// A copy of every counter.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Snapshot {
    /// Per port, by port number.
    pub ports: Vec<(PortId, Counters)>,
    /// Per network, by network number.
    pub networks: Vec<(NetworkId, SegmentCounters)>,
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
