//! [`Error`]: why a buffer is not a valid packet, and the [`Layer`] it failed at.

/// The protocol layer a [`Error::Truncated`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II header (14 bytes).
    Ethernet,
    /// 802.1Q tag (4 bytes after the addresses).
    Vlan,
    /// ARP for Ethernet/IPv4 (28 bytes).
    Arp,
    /// IPv4 header or the packet its total length announces.
    Ipv4,
    /// UDP header or the datagram its length announces.
    Udp,
    /// VXLAN header (8 bytes).
    Vxlan,
    /// BOOTP/DHCP fixed part (240 bytes with the magic cookie) or its options.
    Dhcp,
    /// virtio-net header (10 bytes).
    VirtioNet,
    /// IPv6 fixed header (40 bytes) or the packet its payload length announces.
    Ipv6,
    /// TCP header (20 bytes, or its data offset).
    Tcp,
    /// ICMPv4 header (8 bytes).
    Icmp,
}

impl core::fmt::Display for Layer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet",
            Layer::Vlan => "802.1Q",
            Layer::Arp => "ARP",
            Layer::Ipv4 => "IPv4",
            Layer::Udp => "UDP",
            Layer::Vxlan => "VXLAN",
            Layer::Dhcp => "DHCP",
            Layer::VirtioNet => "virtio-net",
            Layer::Ipv6 => "IPv6",
            Layer::Tcp => "TCP",
            Layer::Icmp => "ICMP",
        })
    }
}

/// Why a buffer is not a valid packet of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or the length it announces) of this layer.
    #[error("truncated {0} header")]
    Truncated(Layer),
    /// The frame carries an 802.1ad (QinQ) tag or two stacked 802.1Q tags.
    #[error("802.1ad (QinQ) and stacked VLAN tags are not supported")]
    QinqUnsupported,
    /// ARP for a hardware type other than Ethernet or a protocol other than IPv4.
    #[error("ARP packet is not Ethernet/IPv4")]
    UnsupportedArp,
    /// An IPv4 header with a version other than 4, a header length below 20 bytes, or a total
    /// length shorter than its header.
    #[error("malformed IPv4 header")]
    BadIpv4Header,
    /// The IPv4 header checksum does not match.
    #[error("bad IPv4 header checksum")]
    BadIpv4Checksum,
    /// A UDP length field below the 8-byte header.
    #[error("bad UDP length")]
    BadUdpLength,
    /// A VXLAN header whose I flag (valid VNI) is clear.
    #[error("VXLAN header without the I flag")]
    BadVxlanFlags,
    /// An IPv4 fragment where a whole datagram is required (VXLAN underlay).
    #[error("fragmented IPv4 packet")]
    Ipv4Fragment,
    /// An underlay frame that is not IPv4/UDP to the VXLAN port.
    #[error("not a VXLAN packet")]
    NotVxlan,
    /// A UDP payload on the DHCP ports that is not a BOOTP/DHCP message of an Ethernet client:
    /// an unknown operation, a hardware type other than Ethernet or a wrong magic cookie.
    #[error("not a DHCP message")]
    NotDhcp,
    /// A DHCP option with the wrong length for its code, or a message without a message type.
    #[error("malformed DHCP option")]
    BadDhcpOption,
    /// A virtio-net header with a GSO type other than TCPv4/TCPv6, or a GSO size of zero.
    #[error("unsupported virtio-net header")]
    BadVnetHeader,
    /// Offload metadata that does not match the frame: a GSO frame that is not a whole TCP
    /// segment of the announced IP version (or would cut into too many segments), or a partial
    /// checksum outside the packet.
    #[error("offload metadata does not match the frame")]
    BadGso,
    /// An ICMP message whose checksum does not match.
    #[error("bad ICMP checksum")]
    BadIcmpChecksum,
    /// An ICMP message of a type (or an echo code) the switch does not handle.
    #[error("unsupported ICMP message")]
    UnsupportedIcmp,
    /// A value does not fit its field (a buffer too small to emit into, a VNI over 24 bits).
    #[error("value does not fit the buffer or field")]
    Exhausted,
}
