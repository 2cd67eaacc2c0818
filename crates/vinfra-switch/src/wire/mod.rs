//! Wire formats: checked views over byte buffers and their parsed (`Repr`) forms.
//!
//! Each protocol has a `Packet<T: AsRef<[u8]>>` view (named `Frame` for Ethernet) built with
//! `new_checked`, which verifies that every field the accessors read lies inside the buffer, or
//! `new_unchecked`. Accessors never panic: on a buffer that is too short (possible only through
//! `new_unchecked`) a getter reads zeros and a setter does nothing. The `Repr` types are the
//! parsed, validated form; `Repr::parse` takes a checked view, `Repr::emit` writes into one.

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod encap;
pub mod ethernet;
pub mod gro;
pub mod gso;
pub mod ipv4;
pub mod udp;
pub mod virtio_net;
pub mod vlan;
pub mod vxlan;

pub use arp::{ArpOperation, ArpRepr};
pub use dhcp::{DhcpMessageType, DhcpOp, DhcpRepr};
pub use encap::{decapsulate, overlay_guest_mtu, Decap, Encap};
pub use ethernet::{EtherType, EthernetRepr, MacAddr};
pub use ipv4::Ipv4Repr;
pub use udp::UdpRepr;
pub use virtio_net::Offload;
pub use vlan::{VlanId, VlanTci};
pub use vxlan::{Vni, VxlanRepr};

/// A range of bytes holding one header field.
pub type Field = core::ops::Range<usize>;
/// The bytes from an offset to the end of the buffer.
pub type Rest = core::ops::RangeFrom<usize>;

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
    /// A value does not fit its field (a buffer too small to emit into, a VNI over 24 bits).
    #[error("value does not fit the buffer or field")]
    Exhausted,
}

/// Reads a big-endian `u16` at `field`; zero when out of bounds.
#[inline]
pub(crate) fn get_u16(buf: &[u8], field: Field) -> u16 {
    buf.get(field)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_be_bytes)
}

/// Reads one byte; zero when out of bounds.
#[inline]
pub(crate) fn get_u8(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// Reads a fixed-size array at `field`; zeros when out of bounds.
#[inline]
pub(crate) fn get_array<const N: usize>(buf: &[u8], field: Field) -> [u8; N] {
    buf.get(field)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

/// Writes `value` into `field`; does nothing when out of bounds.
#[inline]
pub(crate) fn set_bytes(buf: &mut [u8], field: Field, value: &[u8]) {
    if let Some(dst) = buf.get_mut(field) {
        for (d, s) in dst.iter_mut().zip(value) {
            *d = *s;
        }
    }
}

/// Writes a big-endian `u16` into `field`; does nothing when out of bounds.
#[inline]
pub(crate) fn set_u16(buf: &mut [u8], field: Field, value: u16) {
    set_bytes(buf, field, &value.to_be_bytes());
}

/// Writes one byte; does nothing when out of bounds.
#[inline]
pub(crate) fn set_u8(buf: &mut [u8], at: usize, value: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = value;
    }
}
