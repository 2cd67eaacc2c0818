//! The VXLAN underlay encapsulation: outer Ethernet / IPv4 / UDP (port 4789) / VXLAN.
//!
//! The outer IPv4 header carries the inner packet's DSCP (the uniform model of RFC 2983, so the
//! physical network can prioritise the tunnelled traffic: [`inner_dscp`]) and ECN 0.

use core::net::Ipv4Addr;

use super::error::Error;
use super::ether_type::EtherType;
use super::ethernet::{self, EthernetRepr, MacAddr};
use super::ipv4::{self, protocol, Ipv4Repr};
use super::udp::{self, UdpRepr};
use super::vxlan::{self, Vni, VxlanRepr};

/// The IANA UDP port for VXLAN.
pub const VXLAN_PORT: u16 = 4789;

/// Bytes the encapsulation adds in front of the inner frame: Ethernet 14 + IPv4 20 + UDP 8 +
/// VXLAN 8.
pub const OVERHEAD: usize =
    ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;

/// Offset of the UDP payload (the VXLAN header) in an encapsulated frame; an I/O layer that sends
/// through a UDP socket sends the bytes from here.
pub const UDP_PAYLOAD_OFFSET: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;

/// Bytes on the underlay's IP MTU budget taken by the encapsulation and the inner Ethernet
/// header: IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const MTU_OVERHEAD: u16 = 50;

/// The largest guest (inner IP) MTU an overlay network can carry over an underlay with
/// `underlay_mtu`: the underlay MTU less 50 bytes (0 when the underlay is smaller).
pub const fn overlay_guest_mtu(underlay_mtu: u16) -> u16 {
    underlay_mtu.saturating_sub(MTU_OVERHEAD)
}

const TTL: u8 = 64;

/// The outer headers for one encapsulated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// Underlay source MAC (the uplink's).
    pub src_mac: MacAddr,
    /// Underlay destination MAC (the remote VTEP's or the gateway's).
    pub dst_mac: MacAddr,
    /// Local VTEP address.
    pub src_ip: Ipv4Addr,
    /// Remote VTEP address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port, for ECMP entropy (see [`entropy_port`]).
    pub src_port: u16,
    /// Network identifier.
    pub vni: Vni,
    /// DSCP of the outer IPv4 header (its low six bits; ECN is 0): the inner packet's, from
    /// [`inner_dscp`].
    pub dscp: u8,
}

impl Encap {
    /// Writes the [`OVERHEAD`] bytes of outer headers at the start of `buf` for an inner frame
    /// of `inner_len` bytes (the inner frame itself goes at `buf[OVERHEAD..]`).
    pub fn emit_headers(&self, buf: &mut [u8], inner_len: usize) -> Result<(), Error> {
        if buf.len() < OVERHEAD {
            return Err(Error::Exhausted);
        }
        EthernetRepr {
            dst: self.dst_mac,
            src: self.src_mac,
            vlan: None,
            ethertype: EtherType::IPV4,
        }
        .emit(buf)?;
        let udp_payload_len = vxlan::HEADER_LEN + inner_len;
        let ip_buf = buf
            .get_mut(ethernet::HEADER_LEN..)
            .ok_or(Error::Exhausted)?;
        let mut ip = ipv4::Packet::new_unchecked(ip_buf);
        Ipv4Repr {
            src_addr: self.src_ip,
            dst_addr: self.dst_ip,
            protocol: protocol::UDP,
            payload_len: udp::HEADER_LEN + udp_payload_len,
            ttl: TTL,
            dscp_ecn: (self.dscp & 0x3f) << 2,
        }
        .emit(&mut ip)?;
        let udp_buf = buf
            .get_mut(ethernet::HEADER_LEN + ipv4::HEADER_LEN..)
            .ok_or(Error::Exhausted)?;
        UdpRepr {
            src_port: self.src_port,
            dst_port: VXLAN_PORT,
        }
        .emit(&mut udp::Packet::new_unchecked(udp_buf), udp_payload_len)?;
        let vx_buf = buf.get_mut(UDP_PAYLOAD_OFFSET..).ok_or(Error::Exhausted)?;
        VxlanRepr { vni: self.vni }.emit(&mut vxlan::Packet::new_unchecked(vx_buf))
    }

    /// Appends the encapsulated `inner` frame to `out`.
    pub fn encapsulate_into(&self, inner: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.resize(start + OVERHEAD, 0);
        let headers = out.get_mut(start..).ok_or(Error::Exhausted)?;
        if let Err(e) = self.emit_headers(headers, inner.len()) {
            out.truncate(start);
            return Err(e);
        }
        out.extend_from_slice(inner);
        Ok(())
    }
}

/// A decapsulated underlay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap<'a> {
    /// Underlay source MAC.
    pub src_mac: MacAddr,
    /// Underlay destination MAC.
    pub dst_mac: MacAddr,
    /// Remote VTEP address.
    pub src_ip: Ipv4Addr,
    /// Destination VTEP address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// Network identifier.
    pub vni: Vni,
    /// The inner Ethernet frame.
    pub inner: &'a [u8],
}

/// Parses an underlay frame: untagged Ethernet, IPv4 (checksum verified, no fragments, options
/// allowed), UDP to port 4789 (UDP checksum not verified: RFC 7348 allows zero), VXLAN (I flag).
pub fn decapsulate(frame: &[u8]) -> Result<Decap<'_>, Error> {
    let eth = ethernet::Frame::new_checked(frame)?;
    if eth.ethertype() != EtherType::IPV4 {
        return Err(Error::NotVxlan);
    }
    let ip = ipv4::Packet::new_checked(eth.payload())?;
    let ip_repr = Ipv4Repr::parse(&ip)?;
    if ip_repr.protocol != protocol::UDP {
        return Err(Error::NotVxlan);
    }
    if ip.is_fragment() {
        return Err(Error::Ipv4Fragment);
    }
    let udp = udp::Packet::new_checked(ip.payload())?;
    let udp_repr = UdpRepr::parse(&udp)?;
    if udp_repr.dst_port != VXLAN_PORT {
        return Err(Error::NotVxlan);
    }
    let vx_repr = VxlanRepr::parse(&vxlan::Packet::new_checked(udp.payload())?)?;
    let inner_start =
        ethernet::HEADER_LEN + usize::from(ip.header_len()) + udp::HEADER_LEN + vxlan::HEADER_LEN;
    let inner_end = ethernet::HEADER_LEN + usize::from(ip.header_len()) + usize::from(udp.len());
    Ok(Decap {
        src_mac: eth.src_addr(),
        dst_mac: eth.dst_addr(),
        src_ip: ip_repr.src_addr,
        dst_ip: ip_repr.dst_addr,
        src_port: udp_repr.src_port,
        vni: vx_repr.vni,
        inner: frame.get(inner_start..inner_end).unwrap_or(&[]),
    })
}

/// The DSCP the outer header copies from an inner frame's L3 packet `l3` of type `ethertype`:
/// an IPv4 packet's, 0 for anything else.
pub fn inner_dscp(ethertype: EtherType, l3: &[u8]) -> u8 {
    if ethertype == EtherType::IPV4 {
        ipv4::Packet::new_unchecked(l3).dscp()
    } else {
        0
    }
}

/// A UDP source port in 49152..=65535 derived from the inner frame's Ethernet header, so that one
/// flow keeps one underlay path and different flows spread over ECMP (RFC 7348 section 5).
pub fn entropy_port(inner: &[u8]) -> u16 {
    // FNV-1a over the addresses and EtherType.
    let mut hash: u32 = 0x811c_9dc5;
    for &b in inner.iter().take(ethernet::HEADER_LEN) {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let folded = (hash ^ (hash >> 16)) & 0x3fff;
    // `folded` has 14 bits: 49152 + 16383 = 65535.
    49152 + u16::try_from(folded).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Layer;

    fn encap() -> Encap {
        Encap {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src_ip: Ipv4Addr::new(192, 0, 2, 1),
            dst_ip: Ipv4Addr::new(192, 0, 2, 2),
            src_port: 50000,
            vni: Vni::new(5001).unwrap(),
            dscp: 0,
        }
    }

    fn inner() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0xab; 28]);
        f
    }

    #[test]
    fn round_trip() {
        let mut out = vec![0xee]; // appending keeps what was there
        encap().encapsulate_into(&inner(), &mut out).unwrap();
        assert_eq!(out.len(), 1 + OVERHEAD + inner().len());
        let d = decapsulate(&out[1..]).unwrap();
        assert_eq!(d.inner, &inner()[..]);
        assert_eq!(d.vni, encap().vni);
        assert_eq!((d.src_ip, d.dst_ip), (encap().src_ip, encap().dst_ip));
        assert_eq!((d.src_mac, d.dst_mac), (encap().src_mac, encap().dst_mac));
        assert_eq!(d.src_port, 50000);
        assert_eq!(
            &out[1 + UDP_PAYLOAD_OFFSET..1 + UDP_PAYLOAD_OFFSET + 2],
            &[0x08, 0]
        );
    }

    #[test]
    fn outer_dscp_with_ecn_zero() {
        let mut out = Vec::new();
        let e = Encap {
            dscp: 46,
            ..encap()
        };
        e.encapsulate_into(&inner(), &mut out).unwrap();
        let ip = ipv4::Packet::new_checked(&out[ethernet::HEADER_LEN..]).unwrap();
        assert_eq!(ip.dscp_ecn(), 46 << 2);
        assert!(ip.verify_checksum());
        assert!(decapsulate(&out).is_ok());
        let mut ipv4_inner = vec![0u8; 20];
        ipv4_inner[0] = 0x45;
        ipv4_inner[1] = 26 << 2 | 3;
        assert_eq!(inner_dscp(EtherType::IPV4, &ipv4_inner), 26);
        assert_eq!(inner_dscp(EtherType::ARP, &ipv4_inner), 0);
        assert_eq!(inner_dscp(EtherType::IPV4, &[]), 0);
    }

    #[test]
    fn guest_mtu() {
        assert_eq!(overlay_guest_mtu(1500), 1450);
        assert_eq!(overlay_guest_mtu(9000), 8950);
        assert_eq!(overlay_guest_mtu(20), 0);
        // A full-size guest packet fits the underlay exactly.
        let inner_frame = usize::from(overlay_guest_mtu(1500)) + ethernet::HEADER_LEN;
        assert_eq!(inner_frame + OVERHEAD - ethernet::HEADER_LEN, 1500);
    }

    #[test]
    fn truncation_at_every_length_is_an_error() {
        let mut out = Vec::new();
        encap().encapsulate_into(&inner(), &mut out).unwrap();
        // The outer lengths cover the whole inner frame: any cut is a truncation.
        for len in 0..out.len() {
            let err = decapsulate(&out[..len]).unwrap_err();
            assert!(matches!(err, Error::Truncated(_)), "length {len}: {err:?}");
        }
        assert_eq!(
            decapsulate(&out[..13]).unwrap_err(),
            Error::Truncated(Layer::Ethernet)
        );
    }

    #[test]
    fn rejections() {
        let mut good = Vec::new();
        encap().encapsulate_into(&inner(), &mut good).unwrap();

        let mut f = good.clone();
        f[12] = 0x86; // EtherType 0x8600
        assert_eq!(decapsulate(&f), Err(Error::NotVxlan));

        let mut f = good.clone();
        f[14 + 10] ^= 1; // IP checksum
        assert_eq!(decapsulate(&f), Err(Error::BadIpv4Checksum));

        let mut f = good.clone();
        f[14 + 6] = 0x20; // MF
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.fill_checksum();
        assert_eq!(decapsulate(&f), Err(Error::Ipv4Fragment));

        let mut f = good.clone();
        f[34 + 2..34 + 4].copy_from_slice(&4790u16.to_be_bytes());
        assert_eq!(decapsulate(&f), Err(Error::NotVxlan));

        let mut f = good.clone();
        f[42] = 0;
        assert_eq!(decapsulate(&f), Err(Error::BadVxlanFlags));
    }

    #[test]
    fn entropy_port_range_and_stability() {
        let a = entropy_port(&inner());
        assert!(a >= 49152);
        assert_eq!(a, entropy_port(&inner()));
        assert!(entropy_port(&[]) >= 49152);
    }
}
