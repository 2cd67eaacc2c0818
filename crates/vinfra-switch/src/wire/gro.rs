//! Receive coalescing (GRO) of TCP/IPv4 segments into one large segment, for ports that take
//! large segments (a tap with virtio-net headers).
//!
//! Frames that reach such a port one MSS at a time (from the VXLAN uplink, the trunk or a VM
//! port) would each cost a write and a pass through the receiving stack. Consecutive in-order
//! segments of one flow are instead joined into one frame with GSO metadata, as the kernel's GRO
//! does: the receiver sees one large segment, and a port without offloads would cut it back into
//! the same segments ([`super::gso::Segmenter`]).
//!
//! The rules follow the kernel's `tcp_gro_receive`: the same Ethernet header, the same IPv4
//! header apart from identification, length and checksum (no options, not a fragment), the same
//! ports, acknowledgment number, window and TCP options; only ACK (and PSH, which ends the
//! frame) set; the next sequence number; every segment but the last exactly the first one's
//! payload length (the MSS), and at most 64 KiB of IP packet. Every segment's IPv4 header and
//! TCP checksums are verified before it is joined, since the joined frame's checksum is left to
//! the receiver as a partial one (`NEEDS_CSUM`) that it trusts.

use core::net::Ipv4Addr;

use super::checksum;
use super::field::{get_array, get_u16, get_u8, set_u16, set_u8};
use super::virtio_net::Offload;
use super::virtio_net::{Gso, GsoKind, PartialCsum};

const ETH_HEADER_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPV4_HEADER_LEN: usize = 20;
const IP_PROTO_TCP: u8 = 6;
const TCP_MIN_HEADER_LEN: usize = 20;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// The largest IPv4 packet a joined frame may become.
const MAX_IP_LEN: usize = 65_535;

/// Offsets from the start of the frame.
mod field {
    use core::ops::Range;

    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const IP: usize = 14;
    pub const IP_VER_IHL: usize = IP;
    pub const IP_TOS: usize = IP + 1;
    pub const IP_TOTAL_LEN: Range<usize> = IP + 2..IP + 4;
    pub const IP_FRAG: Range<usize> = IP + 6..IP + 8;
    pub const IP_TTL: usize = IP + 8;
    pub const IP_PROTOCOL: usize = IP + 9;
    pub const IP_CHECKSUM: Range<usize> = IP + 10..IP + 12;
    pub const IP_SRC: Range<usize> = IP + 12..IP + 16;
    pub const IP_DST: Range<usize> = IP + 16..IP + 20;
    pub const TCP: usize = IP + 20;
    pub const TCP_SEQ: Range<usize> = TCP + 4..TCP + 8;
    pub const TCP_ACK: Range<usize> = TCP + 8..TCP + 12;
    pub const TCP_DATA_OFFSET: usize = TCP + 12;
    pub const TCP_FLAGS: usize = TCP + 13;
    pub const TCP_WINDOW: Range<usize> = TCP + 14..TCP + 16;
    pub const TCP_CHECKSUM: Range<usize> = TCP + 16..TCP + 18;
    pub const TCP_OPTIONS: usize = TCP + 20;
}

/// The IPv4 "don't fragment" flag in the flags/fragment-offset field.
const IP_DF: u16 = 0x4000;

/// A TCP/IPv4 flow: addresses and ports, as they are in the frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Flow {
    addresses: [u8; 8],
    ports: [u8; 4],
}

impl Flow {
    /// The flow of a TCP/IPv4 frame (untagged Ethernet, any IPv4 header length, a TCP header's
    /// ports present); `None` for any other frame.
    pub fn of(frame: &[u8]) -> Option<Flow> {
        if get_u16(frame, field::ETHERTYPE) != ETHERTYPE_IPV4
            || get_u8(frame, field::IP_VER_IHL) >> 4 != 4
            || get_u8(frame, field::IP_PROTOCOL) != IP_PROTO_TCP
        {
            return None;
        }
        let ip_header_len = usize::from(get_u8(frame, field::IP_VER_IHL) & 0xf) * 4;
        let tcp = field::IP + ip_header_len;
        Some(Flow {
            addresses: get_array::<8>(frame, field::IP_SRC.start..field::IP_DST.end),
            ports: frame.get(tcp..tcp + 4)?.try_into().ok()?,
        })
    }
}

/// A checked TCP/IPv4 segment with data, in an untagged Ethernet frame with no padding: a
/// candidate for coalescing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TcpSegment {
    flow: Flow,
    tcp_header_len: usize,
    seq: u32,
    payload_len: usize,
    flags: u8,
}

impl TcpSegment {
    /// Checks `frame`: Ethernet II carrying IPv4 with a 20-byte header, not a fragment, total
    /// length exactly the rest of the frame, a valid header checksum; TCP with a whole header,
    /// only ACK or ACK+PSH set, some payload and a valid checksum. `None` for anything else
    /// (such frames are sent as they are).
    pub fn parse(frame: &[u8]) -> Option<TcpSegment> {
        TcpSegment::parse_parts(frame, &[])
    }

    /// [`TcpSegment::parse`] of the frame `head` followed by `rest`, where `head` holds at
    /// least the Ethernet, IPv4 and TCP headers: the frame need not be in one piece (its
    /// payload may stay where it was received until it is joined).
    pub fn parse_parts(head: &[u8], rest: &[u8]) -> Option<TcpSegment> {
        let len = head.len() + rest.len();
        if head.len() < field::TCP + TCP_MIN_HEADER_LEN
            || get_u16(head, field::ETHERTYPE) != ETHERTYPE_IPV4
            || get_u8(head, field::IP_VER_IHL) != 0x45
            || get_u8(head, field::IP_PROTOCOL) != IP_PROTO_TCP
            || get_u16(head, field::IP_FRAG) & !IP_DF != 0
            || usize::from(get_u16(head, field::IP_TOTAL_LEN)) != len - ETH_HEADER_LEN
        {
            return None;
        }
        let flags = get_u8(head, field::TCP_FLAGS);
        if flags != TCP_ACK && flags != TCP_ACK | TCP_PSH {
            return None;
        }
        let tcp_header_len = usize::from(get_u8(head, field::TCP_DATA_OFFSET) >> 4) * 4;
        let tcp_head = head.get(field::TCP..)?;
        let tcp_len = tcp_head.len() + rest.len();
        if tcp_header_len < TCP_MIN_HEADER_LEN
            || tcp_header_len >= tcp_len
            || tcp_header_len > tcp_head.len()
        {
            return None;
        }
        let ip_header = head.get(field::IP..field::TCP)?;
        if checksum::sum(ip_header) != 0xffff {
            return None;
        }
        let pseudo = checksum::pseudo_header(
            src(head),
            dst(head),
            IP_PROTO_TCP,
            u16::try_from(tcp_len).ok()?,
        );
        // The sums of the two pieces add when the first is a whole number of 16-bit words (a
        // head cut after the TCP header always is).
        if !rest.is_empty() && tcp_head.len() % 2 != 0 {
            return None;
        }
        if checksum::combine(&[pseudo, checksum::sum(tcp_head), checksum::sum(rest)]) != 0xffff {
            return None;
        }
        Some(TcpSegment {
            flow: Flow::of(head)?,
            tcp_header_len,
            seq: u32::from_be_bytes(get_array::<4>(head, field::TCP_SEQ)),
            payload_len: tcp_len - tcp_header_len,
            flags,
        })
    }

    /// Length of the headers, Ethernet to TCP: where the payload starts.
    pub fn headers_len(&self) -> usize {
        field::TCP + self.tcp_header_len
    }

    /// Length of the TCP payload.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// The segment's flow.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    fn push(&self) -> bool {
        self.flags & TCP_PSH != 0
    }
}

fn src(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(get_array::<4>(frame, field::IP_SRC))
}

fn dst(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(get_array::<4>(frame, field::IP_DST))
}

/// A frame open for coalescing: the segments joined so far.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Coalesced {
    flow: Flow,
    tcp_header_len: usize,
    mss: usize,
    next_seq: u32,
    segments: usize,
    len: usize,
}

impl Coalesced {
    /// Opens a frame with its first segment; `None` when nothing may follow it (PSH set).
    pub fn start(first: &TcpSegment) -> Option<Coalesced> {
        if first.push() {
            return None;
        }
        Some(Coalesced {
            flow: first.flow,
            tcp_header_len: first.tcp_header_len,
            mss: first.payload_len,
            next_seq: first
                .seq
                .wrapping_add(u32::try_from(first.payload_len).ok()?),
            segments: 1,
            len: first.headers_len() + first.payload_len,
        })
    }

    /// The flow of the frame's segments.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// How many segments the frame holds.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Whether segment `next` (in `next_frame`) continues `open`, the frame's bytes so far.
    pub fn accepts(&self, open: &[u8], next: &TcpSegment, next_frame: &[u8]) -> bool {
        let same =
            |range: core::ops::Range<usize>| open.get(range.clone()) == next_frame.get(range);
        let same_byte = |at: usize| get_u8(open, at) == get_u8(next_frame, at);
        open.len() == self.len
            && next.flow == self.flow
            && next.tcp_header_len == self.tcp_header_len
            && next.seq == self.next_seq
            && next.payload_len <= self.mss
            && self.len + next.payload_len <= ETH_HEADER_LEN + MAX_IP_LEN
            && same(0..ETH_HEADER_LEN)
            && same_byte(field::IP_TOS)
            && same_byte(field::IP_TTL)
            && get_u16(open, field::IP_FRAG) == get_u16(next_frame, field::IP_FRAG)
            && same(field::TCP_ACK)
            && same(field::TCP_WINDOW)
            && same(field::TCP_OPTIONS..field::TCP + self.tcp_header_len)
    }

    /// Completes the join: `frame` is the open frame with `next`'s payload already appended.
    /// Fixes the IPv4 total length and header checksum, carries PSH over, leaves the pseudo
    /// header sum in the TCP checksum, and returns the frame's offload metadata and whether
    /// more segments may follow (not after PSH or a short segment).
    pub fn join(&mut self, frame: &mut [u8], next: &TcpSegment) -> (Offload, bool) {
        self.len += next.payload_len;
        self.segments += 1;
        self.next_seq = self
            .next_seq
            .wrapping_add(u32::try_from(next.payload_len).unwrap_or(0));
        let ip_len = u16::try_from(frame.len().saturating_sub(ETH_HEADER_LEN)).unwrap_or(u16::MAX);
        set_u16(frame, field::IP_TOTAL_LEN, ip_len);
        set_u16(frame, field::IP_CHECKSUM, 0);
        let ip_sum = frame.get(field::IP..field::TCP).map_or(0, checksum::sum);
        set_u16(frame, field::IP_CHECKSUM, !ip_sum);
        if next.push() {
            let flags = get_u8(frame, field::TCP_FLAGS);
            set_u8(frame, field::TCP_FLAGS, flags | TCP_PSH);
        }
        let tcp_len = ip_len.saturating_sub(IPV4_HEADER_LEN as u16);
        let pseudo = checksum::pseudo_header(src(frame), dst(frame), IP_PROTO_TCP, tcp_len);
        set_u16(frame, field::TCP_CHECKSUM, pseudo);
        let headers = field::TCP + self.tcp_header_len;
        let offload = Offload {
            csum: Some(PartialCsum {
                start: field::TCP as u16,
                offset: (field::TCP_CHECKSUM.start - field::TCP) as u16,
            }),
            gso: Some(Gso {
                kind: GsoKind::Tcpv4,
                size: u16::try_from(self.mss).unwrap_or(u16::MAX),
                hdr_len: u16::try_from(headers).unwrap_or(u16::MAX),
                ecn: false,
            }),
            data_valid: false,
        };
        let more = !next.push() && next.payload_len == self.mss;
        (offload, more)
    }
}

/// Joins a sequence of frames for one port as the switch's transmit batch does, each result
/// with its offload metadata ([`Offload::NONE`] for a frame left alone): a plain reference for
/// tests and tools.
pub fn join_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Vec<(Vec<u8>, Offload)> {
    let mut out: Vec<(Vec<u8>, Offload)> = Vec::new();
    let mut open: Option<Coalesced> = None;
    for frame in frames {
        let segment = TcpSegment::parse(frame);
        if let (Some(state), Some(segment), Some((last, offload))) =
            (open.as_mut(), segment, out.last_mut())
        {
            if state.accepts(last, &segment, frame) {
                last.extend_from_slice(frame.get(segment.headers_len()..).unwrap_or(&[]));
                let (joined, more) = state.join(last, &segment);
                *offload = joined;
                if !more {
                    open = None;
                }
                continue;
            }
        }
        open = segment.as_ref().and_then(Coalesced::start);
        out.push((frame.to_vec(), Offload::NONE));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gso::{self, Segmenter};
    use crate::wire::EtherType;

    /// A TCP/IPv4 frame with `payload` bytes, headers with a timestamp option, checksums valid.
    fn large_segment(payload: usize, flags: u8) -> Vec<u8> {
        large_segment_at(payload, flags, 0x1000)
    }

    /// The same with the sequence number `seq`.
    fn large_segment_at(payload: usize, flags: u8, seq: u32) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let ip_len = 20 + 32 + payload;
        f.extend_from_slice(&[
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0x12,
            0x34,
            0x40,
            0,
        ]);
        f.extend_from_slice(&[64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x20, 0]);
        f.extend_from_slice(&[0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
        f.extend((0..payload).map(|i| (i * 7 + 3) as u8));
        let sum = checksum::sum(&f[14..34]);
        set_u16(&mut f, field::IP_CHECKSUM, !sum);
        fix_tcp_checksum(&mut f);
        f
    }

    fn fix_tcp_checksum(f: &mut [u8]) {
        set_u16(f, field::TCP_CHECKSUM, 0);
        let pseudo = checksum::pseudo_header(src(f), dst(f), 6, (f.len() - 34) as u16);
        let sum = checksum::combine(&[pseudo, checksum::sum(&f[34..])]);
        set_u16(f, field::TCP_CHECKSUM, !sum);
    }

    /// Cuts a large segment into MSS-sized frames, as a sender's TSO would.
    fn cut(frame: &[u8], mss: u16) -> Vec<Vec<u8>> {
        let gso = Gso {
            kind: GsoKind::Tcpv4,
            size: mss,
            hdr_len: 0,
            ecn: false,
        };
        let s = Segmenter::new(EtherType::IPV4, &frame[14..], &gso).unwrap();
        (0..s.count())
            .map(|i| {
                let mut out = frame[..14].to_vec();
                assert!(s.write(i, &mut out));
                out
            })
            .collect()
    }

    fn join_all(frames: &[Vec<u8>]) -> Vec<(Vec<u8>, Offload)> {
        join_frames(frames.iter().map(Vec::as_slice))
    }

    #[test]
    fn segments_join_into_the_original_and_cut_back_into_the_same_segments() {
        let original = large_segment(10_000, TCP_ACK | TCP_PSH);
        let segments = cut(&original, 1398);
        assert_eq!(segments.len(), 8);
        let joined = join_all(&segments);
        assert_eq!(joined.len(), 1);
        let (frame, offload) = &joined[0];
        assert_eq!(frame.len(), original.len());
        // Same headers apart from the checksums, same payload.
        let mut expect = original.clone();
        let mut got = frame.clone();
        for f in [&mut expect, &mut got] {
            set_u16(f, field::TCP_CHECKSUM, 0);
        }
        assert_eq!(got, expect);
        // The partial checksum completes to the original's.
        let mut completed = frame.clone();
        let csum = offload.csum.unwrap();
        gso::complete_checksum(
            &mut completed,
            usize::from(csum.start),
            usize::from(csum.offset),
        )
        .unwrap();
        assert_eq!(completed, original);
        let g = offload.gso.unwrap();
        assert_eq!((g.kind, g.size, g.hdr_len), (GsoKind::Tcpv4, 1398, 66));
        // Cut again: the same segments.
        assert_eq!(cut(frame, g.size), segments);
    }

    #[test]
    fn joins_stop_at_64k_a_gap_a_short_segment_and_foreign_flows() {
        let segments = cut(&large_segment_at(60_000, TCP_ACK, 0), 1000);
        assert_eq!(join_all(&segments).len(), 1);
        // 80 in-order segments do not fit one 64 KiB IP packet: two frames.
        let mut long = segments.clone();
        long.extend(cut(&large_segment_at(20_000, TCP_ACK, 60_000), 1000));
        let joined = join_all(&long);
        assert!(joined.iter().all(|(f, _)| f.len() <= 14 + 65_535));
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].0.len(), 66 + 65_000);
        assert_eq!(joined[1].0.len(), 66 + 15_000);
        // A retransmission (the same sequence numbers again) starts a new frame.
        let mut twice = segments.clone();
        twice.extend(segments.iter().take(3).cloned());
        assert_eq!(join_all(&twice).len(), 2);
        // A missing segment ends the frame.
        let mut gap = segments.clone();
        gap.remove(3);
        assert_eq!(join_all(&gap).len(), 2);
        // A short segment ends it even if the next one follows in sequence.
        let mut short = cut(&large_segment_at(2500, TCP_ACK, 0), 1000);
        short.extend(cut(&large_segment_at(1000, TCP_ACK, 2500), 1000));
        assert_eq!(join_all(&short).len(), 2);
        // Another flow (ports differ) is not joined.
        let mut other = segments[1].clone();
        other[field::TCP] ^= 1;
        fix_tcp_checksum(&mut other);
        assert!(TcpSegment::parse(&other).is_some());
        let mixed = vec![segments[0].clone(), other];
        assert_eq!(join_all(&mixed).len(), 2);
    }

    #[test]
    fn refuses_bad_checksums_flags_fragments_and_padding() {
        let good = cut(&large_segment(3000, TCP_ACK), 1000);
        assert!(TcpSegment::parse(&good[1]).is_some());
        let headers = TcpSegment::parse(&good[1]).unwrap().headers_len();
        for at in [headers, headers + 2, headers + 100, good[1].len()] {
            let (head, rest) = good[1].split_at(at);
            assert_eq!(
                TcpSegment::parse_parts(head, rest),
                TcpSegment::parse(&good[1]),
                "cut at {at}"
            );
        }
        // Not after the TCP header, or not on a 16-bit word.
        let (head, rest) = good[1].split_at(headers - 4);
        assert!(TcpSegment::parse_parts(head, rest).is_none());
        let (head, rest) = good[1].split_at(headers + 1);
        assert!(TcpSegment::parse_parts(head, rest).is_none());
        assert!(TcpSegment::parse_parts(&good[1][..40], &good[1][40..]).is_none());
        let mut corrupt = good[1].clone();
        *corrupt.last_mut().unwrap() ^= 0xff;
        assert!(TcpSegment::parse(&corrupt).is_none());
        let mut ip_bad = good[1].clone();
        ip_bad[field::IP_TTL] = 1;
        assert!(TcpSegment::parse(&ip_bad).is_none());
        let mut padded = good[1].clone();
        padded.push(0);
        assert!(TcpSegment::parse(&padded).is_none());
        for flags in [0x11u8, 0x12, 0x14, 0x30, 0x50, 0x90] {
            let f = cut(&large_segment(100, flags), 1000);
            assert!(TcpSegment::parse(&f[0]).is_none(), "flags {flags:#x}");
        }
        let joined = join_all(&[good[0].clone(), corrupt, good[2].clone()]);
        assert_eq!(joined.len(), 3);
        for len in 0..good[0].len() {
            let _ = TcpSegment::parse(&good[0][..len]);
        }
    }
}
