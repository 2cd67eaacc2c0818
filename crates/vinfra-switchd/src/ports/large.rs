//! VXLAN packets from the uplink that carry one large TCP segment whole: a sending host's
//! kernel fast path encapsulates a flow's large segments as one packet, which its NIC (or the
//! kernel, before a NIC that cannot) cuts into packets of the underlay's MTU; a veth underlay
//! cuts nothing, and the UDP socket receives the packet whole, its inner checksum left to
//! complete. Cut here as that NIC would have, each segment in a VXLAN packet of its own with
//! its checksums complete, before the switch sees them.

use vinfra_switch::wire::encap::{self, MTU_OVERHEAD};
use vinfra_switch::wire::gso::Segmenter;
use vinfra_switch::wire::virtio_net::{Gso, GsoKind};
use vinfra_switch::wire::{ethernet, EtherType};

use super::rebuild_underlay;

/// Hands each segment of `frame` (an underlay frame whose IP packet is over the uplink's MTU
/// `mtu`) to `f` as an underlay frame within it, cut in `scratch`; how many. Zero, handing
/// nothing, when the frame is not a VXLAN packet carrying one IPv4 TCP segment that fills it.
pub(crate) fn cut(
    frame: &[u8],
    mtu: u16,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]),
) -> usize {
    let Ok(d) = encap::decapsulate(frame) else {
        return 0;
    };
    let inner = d.inner;
    let Some(l3) = inner.get(ethernet::HEADER_LEN..) else {
        return 0;
    };
    if inner.get(12..14) != Some(&[0x08, 0x00][..]) || l3.first().map(|b| b >> 4) != Some(4) {
        return 0;
    }
    // The segments' size: what the overlay's MTU leaves after the IP and TCP headers.
    let ip_header = usize::from(l3.first().map_or(0, |b| b & 0x0f)) * 4;
    let tcp_header = usize::from(l3.get(ip_header + 12).map_or(0, |b| b >> 4)) * 4;
    let total = l3
        .get(2..4)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let room = usize::from(mtu.saturating_sub(MTU_OVERHEAD));
    if total != l3.len() || total <= room {
        return 0;
    }
    let Some(size) = room
        .checked_sub(ip_header + tcp_header)
        .filter(|s| *s > 0)
        .and_then(|s| u16::try_from(s).ok())
    else {
        return 0;
    };
    let gso = Gso {
        kind: GsoKind::Tcpv4,
        size,
        hdr_len: 0,
        ecn: false,
    };
    let Ok(segmenter) = Segmenter::new(EtherType::IPV4, l3, &gso) else {
        return 0;
    };
    // Each: the received frame's outer headers and inner Ethernet header, the segment.
    let head = frame.len() - inner.len() + ethernet::HEADER_LEN;
    let Some(headers) = frame.get(..head) else {
        return 0;
    };
    for i in 0..segmenter.count() {
        scratch.clear();
        scratch.extend_from_slice(headers);
        if !segmenter.write(i, scratch) {
            break;
        }
        let payload = scratch.len() - encap::UDP_PAYLOAD_OFFSET;
        rebuild_underlay(scratch, payload, d.src_ip, d.src_port, d.dst_ip);
        f(scratch);
    }
    segmenter.count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use vinfra_switch::wire::encap::Encap;
    use vinfra_switch::wire::vxlan::Vni;
    use vinfra_switch::wire::MacAddr;

    /// An IPv4 TCP packet with `data` bytes of payload, its checksum left partial.
    fn tcp_packet(data: usize) -> Vec<u8> {
        let total = 20 + 20 + data;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let sum = vinfra_switch::wire::checksum::sum(&p[..20]);
        p[10..12].copy_from_slice(&(!sum).to_be_bytes());
        p[32] = 0x50;
        p[33] = 0x18;
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn underlay(inner_l3: &[u8]) -> Vec<u8> {
        let mut inner = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        inner.extend_from_slice(inner_l3);
        let mut out = Vec::new();
        Encap {
            src_mac: MacAddr([2, 0, 0, 0, 0, 0xb]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
            src_ip: Ipv4Addr::new(10, 9, 0, 2),
            dst_ip: Ipv4Addr::new(10, 9, 0, 1),
            src_port: 4789,
            vni: Vni::new(5000).unwrap(),
            dscp: 0,
        }
        .encapsulate_into(&inner, &mut out)
        .unwrap();
        out
    }

    #[test]
    fn a_large_segment_is_cut_into_packets_of_the_underlays_mtu_with_checksums() {
        let frame = underlay(&tcp_packet(4000));
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        let n = cut(&frame, 1500, &mut scratch, |f| got.push(f.to_vec()));
        // 1,450 inner bytes each: 1,410 of payload.
        assert_eq!(n, 3);
        assert_eq!(got.len(), 3);
        let mut data = Vec::new();
        for (i, f) in got.iter().enumerate() {
            assert!(f.len() <= 14 + 1500, "{}", f.len());
            let d = encap::decapsulate(f).expect("a VXLAN packet");
            assert_eq!(d.vni.get(), 5000);
            assert_eq!(
                (d.src_ip, d.dst_ip),
                (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 1))
            );
            let l3 = &d.inner[14..];
            let tcp_len = l3.len() - 20;
            let pseudo = vinfra_switch::wire::checksum::pseudo_header(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                6,
                tcp_len as u16,
            );
            let sum = vinfra_switch::wire::checksum::combine(&[
                pseudo,
                vinfra_switch::wire::checksum::sum(&l3[20..]),
            ]);
            assert_eq!(sum, 0xffff, "segment {i}'s TCP checksum");
            data.extend_from_slice(&l3[40..]);
        }
        assert_eq!(data, tcp_packet(4000)[40..]);
    }

    #[test]
    fn what_is_no_large_tcp_segment_is_left_alone() {
        let mut scratch = Vec::new();
        // Within the MTU already.
        assert_eq!(
            cut(&underlay(&tcp_packet(1000)), 1500, &mut scratch, |_| ()),
            0
        );
        // Not TCP.
        let mut udp = tcp_packet(4000);
        udp[9] = 17;
        assert_eq!(cut(&underlay(&udp), 1500, &mut scratch, |_| ()), 0);
        // A total length that does not fill the packet.
        let mut short = tcp_packet(4000);
        short[2..4].copy_from_slice(&3000u16.to_be_bytes());
        assert_eq!(cut(&underlay(&short), 1500, &mut scratch, |_| ()), 0);
        // No VXLAN packet at all.
        assert_eq!(cut(&[0u8; 3000], 1500, &mut scratch, |_| ()), 0);
    }
}
