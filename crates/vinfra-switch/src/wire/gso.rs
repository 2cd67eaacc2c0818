//! Software segmentation and checksum completion for frames that carry offload metadata
//! ([`super::virtio_net::Offload`]), for ports that cannot take it.
//!
//! Both work on the L3 packet (IPv4 or IPv6 and what follows), so the caller writes whatever L2
//! header the egress needs (untagged, 802.1Q-tagged, or VXLAN-encapsulated) in front.
//!
//! Segmentation cuts one large TCP segment into segments of at most `gso_size` payload bytes, as
//! the kernel's TSO/GSO would: every segment has a copy of the IP and TCP headers (options
//! included) with the IPv4 total length, identification (+1 per segment) and header checksum,
//! or the IPv6 payload length, fixed; the TCP sequence number advanced; FIN and PSH only on the
//! last segment, CWR only on the first; and the TCP checksum computed.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::error::{Error, Layer};
use super::ether_type::EtherType;
use super::field::{get_u16, get_u8, set_u16, set_u8};
use super::virtio_net::{Gso, GsoKind};

/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;
/// Most segments one GSO frame may be cut into (a 64 KiB segment with a 32-byte MSS).
pub const MAX_SEGMENTS: usize = 2048;

const IP_PROTO_TCP: u8 = 6;
const TCP_MIN_HEADER_LEN: usize = 20;
const TCP_SEQ: core::ops::Range<usize> = 4..8;
const TCP_DATA_OFFSET: usize = 12;
const TCP_FLAGS: usize = 13;
const TCP_CHECKSUM: core::ops::Range<usize> = 16..18;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// One large TCP segment, checked, ready to be cut.
#[derive(Clone, Copy, Debug)]
pub struct Segmenter<'a> {
    /// The IP packet, exactly as long as its header announces.
    packet: &'a [u8],
    kind: GsoKind,
    ip_header_len: usize,
    tcp_header_len: usize,
    mss: usize,
    count: usize,
}

impl<'a> Segmenter<'a> {
    /// Checks that `l3` (the payload of a frame of type `ethertype`, Ethernet padding allowed)
    /// is the kind of TCP packet `gso` says: IPv4 (unfragmented, valid lengths) or IPv6 (TCP as
    /// the next header, no extension headers, no jumbogram), with a whole TCP header, and that
    /// it cuts into at most [`MAX_SEGMENTS`] segments.
    pub fn new(ethertype: EtherType, l3: &'a [u8], gso: &Gso) -> Result<Segmenter<'a>, Error> {
        let (packet, ip_header_len) = match (gso.kind, ethertype) {
            (GsoKind::Tcpv4, EtherType::IPV4) => ipv4_tcp(l3)?,
            (GsoKind::Tcpv6, EtherType::IPV6) => ipv6_tcp(l3)?,
            _ => return Err(Error::BadGso),
        };
        let tcp = packet.get(ip_header_len..).ok_or(Error::BadGso)?;
        if tcp.len() < TCP_MIN_HEADER_LEN {
            return Err(Error::Truncated(Layer::Tcp));
        }
        let tcp_header_len = usize::from(get_u8(tcp, TCP_DATA_OFFSET) >> 4) * 4;
        if tcp_header_len < TCP_MIN_HEADER_LEN || tcp_header_len > tcp.len() {
            return Err(Error::BadGso);
        }
        let mss = usize::from(gso.size);
        if mss == 0 {
            return Err(Error::BadGso);
        }
        let payload = tcp.len() - tcp_header_len;
        let count = payload.div_ceil(mss).max(1);
        if count > MAX_SEGMENTS {
            return Err(Error::BadGso);
        }
        Ok(Segmenter {
            packet,
            kind: gso.kind,
            ip_header_len,
            tcp_header_len,
            mss,
            count,
        })
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.count
    }

    fn headers_len(&self) -> usize {
        self.ip_header_len + self.tcp_header_len
    }

    fn payload(&self) -> &'a [u8] {
        self.packet.get(self.headers_len()..).unwrap_or(&[])
    }

    /// Length of the largest segment's IP packet: what must fit the MTU.
    pub fn max_segment_len(&self) -> usize {
        self.headers_len() + self.mss.min(self.payload().len())
    }

    fn chunk(&self, index: usize) -> &'a [u8] {
        let payload = self.payload();
        let start = index.saturating_mul(self.mss).min(payload.len());
        let end = start.saturating_add(self.mss).min(payload.len());
        payload.get(start..end).unwrap_or(&[])
    }

    /// The payload of segment `index`: a slice of the large segment (empty past the last).
    pub fn segment_payload(&self, index: usize) -> &'a [u8] {
        if index >= self.count {
            return &[];
        }
        self.chunk(index)
    }

    /// Length of segment `index`'s IP packet.
    pub fn segment_len(&self, index: usize) -> usize {
        self.headers_len() + self.chunk(index).len()
    }

    /// Appends segment `index` (an IP packet) to `out`. False, appending nothing, when `index`
    /// is not below [`Segmenter::count`].
    pub fn write(&self, index: usize, out: &mut Vec<u8>) -> bool {
        match self.write_headers(index, out) {
            Some(chunk) => {
                out.extend_from_slice(chunk);
                true
            }
            None => false,
        }
    }

    /// Appends the IP and TCP headers of segment `index` to `out`, complete (lengths, IPv4
    /// identification and header checksum, sequence number, flags, and the TCP checksum over
    /// the headers and the segment's payload), and returns that payload: the slice of the
    /// large segment the headers must be followed by. What [`Segmenter::write`] writes, without
    /// copying the payload (a sender may gather the two). `None`, appending nothing, when
    /// `index` is not below [`Segmenter::count`].
    pub fn write_headers(&self, index: usize, out: &mut Vec<u8>) -> Option<&'a [u8]> {
        if index >= self.count {
            return None;
        }
        let chunk = self.chunk(index);
        let headers = self.packet.get(..self.headers_len()).unwrap_or(&[]);
        let start = out.len();
        out.extend_from_slice(headers);
        let seg = out.get_mut(start..)?;
        let ip_len = seg.len() + chunk.len();
        let tcp_len = ip_len.saturating_sub(self.ip_header_len);
        let (ip, tcp) = seg.split_at_mut_checked(self.ip_header_len)?;
        let pseudo = match self.kind {
            GsoKind::Tcpv4 => {
                set_u16(ip, 2..4, u16::try_from(ip_len).unwrap_or(u16::MAX));
                let ident = get_u16(ip, 4..6).wrapping_add(u16::try_from(index).unwrap_or(0));
                set_u16(ip, 4..6, ident);
                set_u16(ip, 10..12, 0);
                set_u16(ip, 10..12, !checksum::sum(ip));
                let src = Ipv4Addr::from(super::get_array::<4>(ip, 12..16));
                let dst = Ipv4Addr::from(super::get_array::<4>(ip, 16..20));
                checksum::pseudo_header(
                    src,
                    dst,
                    IP_PROTO_TCP,
                    u16::try_from(tcp_len).unwrap_or(u16::MAX),
                )
            }
            GsoKind::Tcpv6 => {
                set_u16(ip, 4..6, u16::try_from(tcp_len).unwrap_or(u16::MAX));
                let src = Ipv6Addr::from(super::get_array::<16>(ip, 8..24));
                let dst = Ipv6Addr::from(super::get_array::<16>(ip, 24..40));
                checksum::pseudo_header_v6(
                    src,
                    dst,
                    IP_PROTO_TCP,
                    u32::try_from(tcp_len).unwrap_or(u32::MAX),
                )
            }
        };
        let seq = u32::from_be_bytes(super::get_array::<4>(tcp, TCP_SEQ));
        let offset = u32::try_from(index.saturating_mul(self.mss)).unwrap_or(0);
        super::set_bytes(tcp, TCP_SEQ, &seq.wrapping_add(offset).to_be_bytes());
        let mut flags = get_u8(tcp, TCP_FLAGS);
        if index + 1 < self.count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if index > 0 {
            flags &= !TCP_CWR;
        }
        set_u8(tcp, TCP_FLAGS, flags);
        set_u16(tcp, TCP_CHECKSUM, 0);
        // The TCP header is a whole number of 32-bit words: the payload's sum adds to it.
        let sum = checksum::combine(&[pseudo, checksum::sum(tcp), checksum::sum(chunk)]);
        set_u16(tcp, TCP_CHECKSUM, !sum);
        Some(chunk)
    }
}

/// An IPv4 packet carrying TCP: the packet to its total length and its header length.
fn ipv4_tcp(l3: &[u8]) -> Result<(&[u8], usize), Error> {
    let packet = super::ipv4::Packet::new_checked(l3)?;
    if packet.version() != 4 {
        return Err(Error::BadIpv4Header);
    }
    if packet.protocol() != IP_PROTO_TCP || packet.is_fragment() {
        return Err(Error::BadGso);
    }
    let total = usize::from(packet.total_len());
    let header = usize::from(packet.header_len());
    Ok((
        l3.get(..total).ok_or(Error::Truncated(Layer::Ipv4))?,
        header,
    ))
}

/// An IPv6 packet whose next header is TCP: the packet to its payload length and 40.
fn ipv6_tcp(l3: &[u8]) -> Result<(&[u8], usize), Error> {
    if l3.len() < IPV6_HEADER_LEN {
        return Err(Error::Truncated(Layer::Ipv6));
    }
    if get_u8(l3, 0) >> 4 != 6 {
        return Err(Error::BadGso);
    }
    if get_u8(l3, 6) != IP_PROTO_TCP {
        return Err(Error::BadGso);
    }
    let payload_len = usize::from(get_u16(l3, 4..6));
    if payload_len == 0 {
        return Err(Error::BadGso);
    }
    let total = IPV6_HEADER_LEN + payload_len;
    Ok((
        l3.get(..total).ok_or(Error::Truncated(Layer::Ipv6))?,
        IPV6_HEADER_LEN,
    ))
}

/// Length of the IP packet at the start of `l3` as its header announces (IPv4 total length,
/// IPv6 40 + payload length), bounded by `l3`; all of `l3` for other frames or headers that do
/// not parse. Bytes after it are Ethernet padding, outside any L4 checksum.
pub fn ip_packet_len(ethertype: EtherType, l3: &[u8]) -> usize {
    let announced = match ethertype {
        EtherType::IPV4 if l3.len() >= 4 && get_u8(l3, 0) >> 4 == 4 => {
            usize::from(get_u16(l3, 2..4))
        }
        EtherType::IPV6 if l3.len() >= IPV6_HEADER_LEN && get_u8(l3, 0) >> 4 == 6 => {
            IPV6_HEADER_LEN + usize::from(get_u16(l3, 4..6))
        }
        _ => l3.len(),
    };
    announced.min(l3.len())
}

/// Checks that a partial checksum at `start` / `offset` (from the start of `packet`) lies in
/// `packet`, with room for the 2-byte checksum.
pub fn check_partial_csum(packet_len: usize, start: usize, offset: usize) -> Result<(), Error> {
    let at = start.checked_add(offset).ok_or(Error::BadGso)?;
    if at.checked_add(2).is_none_or(|end| end > packet_len) {
        return Err(Error::BadGso);
    }
    Ok(())
}

/// Completes a partial checksum (`NEEDS_CSUM`): the ones' complement sum of `packet[start..]`,
/// which includes the pseudo-header sum the sender left in the checksum field, complemented,
/// goes to `start + offset`. A result of zero is written as 0xffff (its equal in ones'
/// complement, and what UDP requires).
pub fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<(), Error> {
    check_partial_csum(packet.len(), start, offset)?;
    let at = start + offset;
    let sum = packet.get(start..).map_or(0, checksum::sum);
    let value = match !sum {
        0 => 0xffff,
        v => v,
    };
    set_u16(packet, at..at + 2, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward checksum: 16-bit words summed in a u64, folded at the end.
    fn reference_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let mut acc: u64 = 0;
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u64::from(b));
            acc += hi | lo;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn tcp_header(seq: u32, flags: u8, options: &[u8]) -> Vec<u8> {
        let len = 20 + options.len();
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&7u32.to_be_bytes());
        t[12] = ((len / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(options);
        t
    }

    fn v4_packet(payload: &[u8], flags: u8, options: &[u8]) -> Vec<u8> {
        let tcp = tcp_header(0xffff_f000, flags, options);
        let total = 20 + tcp.len() + payload.len();
        let mut p = vec![0x45, 0x02];
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[0xff, 0xfe, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = !reference_sum(&[&p]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&tcp);
        p.extend_from_slice(payload);
        p
    }

    fn v6_packet(payload: &[u8], flags: u8) -> Vec<u8> {
        let tcp = tcp_header(1000, flags, &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((tcp.len() + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&tcp);
        p.extend_from_slice(payload);
        p
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn gso(kind: GsoKind, size: u16) -> Gso {
        Gso {
            kind,
            size,
            hdr_len: 0,
            ecn: false,
        }
    }

    /// Checks every segment's IPv4 header and TCP checksum independently and returns the
    /// payload bytes in order.
    fn check_v4_segments(original: &[u8], s: &Segmenter<'_>, mss: usize) -> Vec<u8> {
        let mut data = Vec::new();
        let ihl = usize::from(original[0] & 0xf) * 4;
        let thl = usize::from(original[ihl + 12] >> 4) * 4;
        for i in 0..s.count() {
            let mut seg = Vec::new();
            assert!(s.write(i, &mut seg));
            assert_eq!(seg.len(), s.segment_len(i));
            assert!(seg.len() <= s.max_segment_len());
            assert_eq!(usize::from(u16::from_be_bytes([seg[2], seg[3]])), seg.len());
            assert_eq!(
                u16::from_be_bytes([seg[4], seg[5]]),
                0xfffeu16.wrapping_add(i as u16)
            );
            assert_eq!(
                reference_sum(&[&seg[..ihl]]),
                0xffff,
                "IPv4 header checksum"
            );
            let tcp_len = (seg.len() - ihl) as u16;
            let mut pseudo = seg[12..20].to_vec();
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&tcp_len.to_be_bytes());
            assert_eq!(
                reference_sum(&[&pseudo, &seg[ihl..]]),
                0xffff,
                "TCP checksum of segment {i}"
            );
            let seq = u32::from_be_bytes(seg[ihl + 4..ihl + 8].try_into().unwrap());
            assert_eq!(seq, 0xffff_f000u32.wrapping_add((i * mss) as u32));
            let flags = seg[ihl + 13];
            let last = i + 1 == s.count();
            assert_eq!(
                flags & TCP_FIN != 0,
                last && original[ihl + 13] & TCP_FIN != 0
            );
            assert_eq!(
                flags & TCP_PSH != 0,
                last && original[ihl + 13] & TCP_PSH != 0
            );
            assert_eq!(
                flags & TCP_CWR != 0,
                i == 0 && original[ihl + 13] & TCP_CWR != 0
            );
            assert_eq!(flags & 0x10, 0x10, "ACK kept");
            assert_eq!(&seg[ihl + 20..ihl + thl], &original[ihl + 20..ihl + thl]);
            data.extend_from_slice(&seg[ihl + thl..]);
        }
        data
    }

    #[test]
    fn ipv4_segments_carry_the_payload_with_valid_headers() {
        let options = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        for (len, mss) in [
            (65_000, 1448),
            (1448 * 3, 1448),
            (1, 1448),
            (0, 1448),
            (5000, 7),
        ] {
            let data = payload(len);
            let flags = TCP_FIN | TCP_PSH | TCP_CWR | 0x10;
            let p = v4_packet(&data, flags, &options);
            let s = Segmenter::new(EtherType::IPV4, &p, &gso(GsoKind::Tcpv4, mss as u16)).unwrap();
            assert_eq!(s.count(), len.div_ceil(mss).max(1));
            assert_eq!(check_v4_segments(&p, &s, mss), data, "len {len} mss {mss}");
            assert!(!s.write(s.count(), &mut Vec::new()));
        }
    }

    #[test]
    fn headers_and_payload_are_the_segment() {
        let data = payload(10_001);
        let p = v4_packet(
            &data,
            TCP_PSH | 0x10,
            &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        );
        let s = Segmenter::new(EtherType::IPV4, &p, &gso(GsoKind::Tcpv4, 1448)).unwrap();
        for i in 0..s.count() {
            let (mut whole, mut gathered) = (vec![7u8], vec![7u8]);
            assert!(s.write(i, &mut whole));
            let chunk = s.write_headers(i, &mut gathered).unwrap();
            assert_eq!(gathered.len(), 1 + 52);
            gathered.extend_from_slice(chunk);
            assert_eq!(gathered, whole, "segment {i}");
        }
        assert!(s.write_headers(s.count(), &mut Vec::new()).is_none());
    }

    #[test]
    fn ipv4_padding_after_the_packet_is_ignored() {
        let data = payload(3000);
        let mut p = v4_packet(&data, 0x18, &[]);
        p.extend_from_slice(&[0xaa; 6]);
        let s = Segmenter::new(EtherType::IPV4, &p, &gso(GsoKind::Tcpv4, 1000)).unwrap();
        assert_eq!(s.count(), 3);
        assert_eq!(check_v4_segments(&p, &s, 1000), data);
    }

    #[test]
    fn ipv6_segments_carry_the_payload_with_valid_checksums() {
        let data = payload(10_000);
        let p = v6_packet(&data, TCP_PSH | 0x10);
        let s = Segmenter::new(EtherType::IPV6, &p, &gso(GsoKind::Tcpv6, 1428)).unwrap();
        assert_eq!(s.count(), 8);
        let mut got = Vec::new();
        for i in 0..s.count() {
            let mut seg = Vec::new();
            assert!(s.write(i, &mut seg));
            let tcp_len = seg.len() - 40;
            assert_eq!(usize::from(u16::from_be_bytes([seg[4], seg[5]])), tcp_len);
            let mut pseudo = seg[8..40].to_vec();
            pseudo.extend_from_slice(&(tcp_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
            assert_eq!(reference_sum(&[&pseudo, &seg[40..]]), 0xffff, "segment {i}");
            assert_eq!(seg[40 + 13] & TCP_PSH != 0, i == 7);
            got.extend_from_slice(&seg[40 + 32..]);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn refuses_what_is_not_the_announced_tcp_packet() {
        let data = payload(3000);
        let v4 = v4_packet(&data, 0x10, &[]);
        let v6 = v6_packet(&data, 0x10);
        let g4 = gso(GsoKind::Tcpv4, 1000);
        let g6 = gso(GsoKind::Tcpv6, 1000);
        // Wrong version for the GSO type, wrong EtherType.
        assert!(Segmenter::new(EtherType::IPV4, &v6, &g4).is_err());
        assert!(Segmenter::new(EtherType::IPV6, &v4, &g4).is_err());
        assert!(Segmenter::new(EtherType::IPV4, &v4, &g6).is_err());
        assert!(Segmenter::new(EtherType::ARP, &v4, &g4).is_err());
        // UDP instead of TCP.
        let mut udp = v4.clone();
        udp[9] = 17;
        assert!(Segmenter::new(EtherType::IPV4, &udp, &g4).is_err());
        // A fragment.
        let mut frag = v4.clone();
        frag[6] = 0x20;
        assert!(Segmenter::new(EtherType::IPV4, &frag, &g4).is_err());
        // A TCP data offset below 5 words or past the packet.
        for doff in [0u8, 4] {
            let mut bad = v4.clone();
            bad[20 + 12] = doff << 4;
            assert!(Segmenter::new(EtherType::IPV4, &bad, &g4).is_err());
        }
        // Too many segments.
        assert!(Segmenter::new(EtherType::IPV4, &v4, &gso(GsoKind::Tcpv4, 1)).is_err());
        // Every truncation.
        for cut in 0..60 {
            assert!(
                Segmenter::new(EtherType::IPV4, &v4[..cut], &g4).is_err(),
                "{cut}"
            );
            assert!(
                Segmenter::new(EtherType::IPV6, &v6[..cut], &g6).is_err(),
                "{cut}"
            );
        }
        assert!(Segmenter::new(EtherType::IPV4, &v4[..v4.len() - 1], &g4).is_err());
        assert!(Segmenter::new(EtherType::IPV6, &v6[..v6.len() - 1], &g6).is_err());
    }

    #[test]
    fn completes_a_partial_tcp_checksum() {
        let data = payload(999);
        let mut p = v4_packet(&data, 0x18, &[]);
        let tcp_len = (p.len() - 20) as u16;
        // What a sender leaves: the pseudo-header sum in the checksum field.
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&tcp_len.to_be_bytes());
        let partial = reference_sum(&[&pseudo]);
        p[36..38].copy_from_slice(&partial.to_be_bytes());
        complete_checksum(&mut p, 20, 16).unwrap();
        assert_eq!(reference_sum(&[&pseudo, &p[20..]]), 0xffff);
        // Out of the packet.
        let len = p.len();
        assert!(complete_checksum(&mut p, len - 1, 0).is_err());
        assert!(complete_checksum(&mut p, 20, usize::MAX).is_err());
        assert!(complete_checksum(&mut p, usize::MAX, 1).is_err());
    }

    #[test]
    fn ip_packet_len_strips_padding() {
        let mut p = v4_packet(&[], 0x10, &[]);
        p.extend_from_slice(&[0; 6]);
        assert_eq!(ip_packet_len(EtherType::IPV4, &p), 40);
        assert_eq!(ip_packet_len(EtherType::IPV4, &p[..30]), 30);
        assert_eq!(ip_packet_len(EtherType::ARP, &p), 46);
        let v6 = v6_packet(&[1, 2, 3], 0x10);
        assert_eq!(ip_packet_len(EtherType::IPV6, &v6), v6.len());
    }
}
