//! Rewriting a packet for NAT in place: an address of the IPv4 header and the port (or ICMP
//! echo identifier) on the same side, with the IPv4, TCP, UDP and ICMP checksums updated
//! incrementally (RFC 1624, equation 3) from the words that changed, never summed again. A UDP
//! checksum of 0 (none) stays 0. With a partial checksum (an offload tap's, which the port
//! taking the frame or the switch completes later) the transport checksum field holds only the
//! pseudo-header's sum: only the address change goes into it.

use core::net::Ipv4Addr;

use crate::wire::checksum;
use crate::wire::icmp::msg_type;
use crate::wire::ipv4::{self, protocol};

/// Offset of the source address in the IPv4 header.
const SRC: usize = 12;
/// Offset of the destination address.
const DST: usize = 16;
/// Offset of the header checksum.
const IP_CHECKSUM: usize = 10;

/// The side of a packet a rewrite changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    /// The source address and port: a packet on its way out.
    Src,
    /// The destination address and port: a packet on its way in.
    Dst,
}

/// What NAT reads of an IPv4 packet's transport header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flow {
    /// TCP or UDP with its ports (and the TCP flags; 0 for UDP).
    Ports {
        /// `protocol::TCP` or `protocol::UDP`.
        proto: u8,
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// TCP flags.
        flags: u8,
    },
    /// An ICMP echo request with its identifier.
    EchoRequest(u16),
    /// An ICMP echo reply with its identifier.
    EchoReply(u16),
    /// An ICMP error message.
    IcmpError,
    /// Anything else: another protocol, other ICMP, a later fragment, a header cut short.
    Other,
}

/// Reads a 16-bit big-endian word at `at`.
pub(crate) fn word(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// Writes a 16-bit big-endian word at `at` (nothing if out of bounds).
pub(crate) fn set_word(buf: &mut [u8], at: usize, value: u16) {
    if let Some(b) = buf.get_mut(at..at + 2) {
        b.copy_from_slice(&value.to_be_bytes());
    }
}

/// The IPv4 header length of a packet (its IHL, in bytes).
pub(crate) fn header_len(ip: &[u8]) -> usize {
    usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4
}

/// The transport header NAT acts on, of an IPv4 packet whose header was checked.
pub(crate) fn flow(ip: &[u8]) -> Flow {
    let packet = ipv4::Packet::new_unchecked(ip);
    if packet.frag_offset() != 0 {
        return Flow::Other;
    }
    let l4 = packet.payload();
    match packet.protocol() {
        protocol::TCP if l4.len() >= 20 => Flow::Ports {
            proto: protocol::TCP,
            src: word(l4, 0).unwrap_or(0),
            dst: word(l4, 2).unwrap_or(0),
            flags: l4.get(13).copied().unwrap_or(0),
        },
        protocol::UDP if l4.len() >= 8 => Flow::Ports {
            proto: protocol::UDP,
            src: word(l4, 0).unwrap_or(0),
            dst: word(l4, 2).unwrap_or(0),
            flags: 0,
        },
        protocol::ICMP if l4.len() >= 8 => match l4.first().copied().unwrap_or(0xff) {
            msg_type::ECHO_REQUEST => Flow::EchoRequest(word(l4, 4).unwrap_or(0)),
            msg_type::ECHO_REPLY => Flow::EchoReply(word(l4, 4).unwrap_or(0)),
            t if msg_type::is_error(t) => Flow::IcmpError,
            _ => Flow::Other,
        },
        _ => Flow::Other,
    }
}

/// A ones' complement sum (not complemented: a partial checksum) after a word it covers
/// changed from `old` to `new`.
fn sum_update(sum: u16, old: u16, new: u16) -> u16 {
    !checksum::update(!sum, old, new)
}

/// Replaces the word at `at` with `new`, updating the checksum at `csum` for it (a complete
/// checksum, or with `partial` a pseudo-header sum); nothing when either is out of bounds.
pub(crate) fn put_word(buf: &mut [u8], at: usize, new: u16, csum: Option<usize>, partial: bool) {
    let Some(old) = word(buf, at) else {
        return;
    };
    set_word(buf, at, new);
    if let Some(c) = csum {
        if let Some(sum) = word(buf, c) {
            let updated = if partial {
                sum_update(sum, old, new)
            } else {
                checksum::update(sum, old, new)
            };
            set_word(buf, c, updated);
        }
    }
}

/// Rewrites one side of the IPv4 packet in `ip` (header checked, at least its header long):
/// the address to `addr`, and the TCP/UDP port or the ICMP echo identifier to `port` when
/// given, with every checksum updated. Later fragments carry no transport header: only their
/// address changes. `partial`: the transport checksum is a partial one (pseudo-header only).
pub(crate) fn rewrite(ip: &mut [u8], side: Side, addr: Ipv4Addr, port: Option<u16>, partial: bool) {
    let hl = header_len(ip);
    let at = match side {
        Side::Src => SRC,
        Side::Dst => DST,
    };
    let [a, b, c, d] = addr.octets();
    let new_words = [u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])];
    let old_words = [word(ip, at).unwrap_or(0), word(ip, at + 2).unwrap_or(0)];
    for (i, &w) in new_words.iter().enumerate() {
        put_word(ip, at + 2 * i, w, Some(IP_CHECKSUM), false);
    }
    let packet = ipv4::Packet::new_unchecked(&*ip);
    if packet.frag_offset() != 0 {
        return;
    }
    let proto = packet.protocol();
    let Some(l4) = ip.get_mut(hl..) else {
        return;
    };
    let port_at = match side {
        Side::Src => 0,
        Side::Dst => 2,
    };
    match proto {
        protocol::TCP | protocol::UDP => {
            let csum_at = if proto == protocol::TCP { 16 } else { 6 };
            // A UDP datagram without a checksum keeps none.
            let has_csum = proto == protocol::TCP || word(l4, csum_at).is_some_and(|c| c != 0);
            let csum = (has_csum && l4.len() >= csum_at + 2).then_some(csum_at);
            // The pseudo-header's address words: in a partial checksum too.
            if let Some(c) = csum {
                for (&old, &new) in old_words.iter().zip(&new_words) {
                    let Some(sum) = word(l4, c) else { break };
                    let updated = if partial {
                        sum_update(sum, old, new)
                    } else {
                        checksum::update(sum, old, new)
                    };
                    set_word(l4, c, updated);
                }
            }
            if let Some(p) = port {
                // The port is data: a partial checksum does not cover it yet.
                put_word(l4, port_at, p, if partial { None } else { csum }, false);
            }
            if proto == protocol::UDP && has_csum && !partial && word(l4, csum_at) == Some(0) {
                // A computed 0 goes as all ones (RFC 768): 0 means "no checksum".
                set_word(l4, csum_at, 0xffff);
            }
        }
        protocol::ICMP => {
            // The echo identifier (no pseudo-header in ICMPv4's checksum).
            if let Some(p) = port {
                put_word(l4, 4, p, Some(2), partial);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum of `data` summed from scratch.
    fn full(data: &[u8]) -> u16 {
        !checksum::sum(data)
    }

    fn packet(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 10, 1, 0, 5, 8, 8, 8, 8,
        ];
        p.extend_from_slice(l4);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let c = full(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn l4_checksum_ok(p: &[u8]) -> bool {
        let l4 = &p[20..];
        let pseudo = checksum::pseudo_header(
            Ipv4Addr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap()),
            Ipv4Addr::from(<[u8; 4]>::try_from(&p[16..20]).unwrap()),
            p[9],
            l4.len() as u16,
        );
        checksum::combine(&[pseudo, checksum::sum(l4)]) == 0xffff
    }

    fn with_l4_checksum(proto: u8, mut l4: Vec<u8>, at: usize) -> Vec<u8> {
        let p = packet(proto, &l4);
        let pseudo = checksum::pseudo_header(
            Ipv4Addr::new(10, 1, 0, 5),
            Ipv4Addr::new(8, 8, 8, 8),
            proto,
            l4.len() as u16,
        );
        let c = !checksum::combine(&[pseudo, checksum::sum(&l4)]);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        let _ = p;
        packet(proto, &l4)
    }

    #[test]
    fn tcp_and_udp_checksums_follow_the_rewrite() {
        let mut tcp = vec![0u8; 24];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        tcp[20..].copy_from_slice(b"abcd");
        let mut p = with_l4_checksum(protocol::TCP, tcp, 16);
        assert!(l4_checksum_ok(&p));
        rewrite(
            &mut p,
            Side::Src,
            Ipv4Addr::new(203, 0, 113, 7),
            Some(1025),
            false,
        );
        assert_eq!(full(&p[..20]), 0);
        assert!(l4_checksum_ok(&p));
        assert_eq!(&p[12..16], &[203, 0, 113, 7]);
        assert_eq!(word(&p, 20), Some(1025));
        rewrite(
            &mut p,
            Side::Dst,
            Ipv4Addr::new(10, 2, 0, 9),
            Some(8080),
            false,
        );
        assert!(l4_checksum_ok(&p) && full(&p[..20]) == 0);

        let udp = vec![0x13, 0x88, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4];
        let mut p = with_l4_checksum(protocol::UDP, udp.clone(), 6);
        rewrite(
            &mut p,
            Side::Src,
            Ipv4Addr::new(203, 0, 113, 7),
            Some(2000),
            false,
        );
        assert!(l4_checksum_ok(&p));
        // No checksum stays none.
        let mut p = packet(protocol::UDP, &udp);
        rewrite(
            &mut p,
            Side::Src,
            Ipv4Addr::new(203, 0, 113, 7),
            Some(2000),
            false,
        );
        assert_eq!(word(&p, 26), Some(0));
        assert_eq!(full(&p[..20]), 0);
    }

    #[test]
    fn a_partial_checksum_takes_only_the_address() {
        let mut tcp = vec![0u8; 20];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        tcp[12] = 0x50;
        let mut p = packet(protocol::TCP, &tcp);
        let pseudo = |p: &[u8]| {
            checksum::pseudo_header(
                Ipv4Addr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap()),
                Ipv4Addr::from(<[u8; 4]>::try_from(&p[16..20]).unwrap()),
                protocol::TCP,
                20,
            )
        };
        let s = pseudo(&p);
        p[36..38].copy_from_slice(&s.to_be_bytes());
        rewrite(
            &mut p,
            Side::Src,
            Ipv4Addr::new(203, 0, 113, 7),
            Some(7),
            true,
        );
        assert_eq!(word(&p, 36), Some(pseudo(&p)));
        assert_eq!(word(&p, 20), Some(7));
    }

    #[test]
    fn echo_identifiers_and_flows() {
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, 9, 9];
        let c = full(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = packet(protocol::ICMP, &icmp);
        assert_eq!(flow(&p), Flow::EchoRequest(0x1234));
        rewrite(
            &mut p,
            Side::Src,
            Ipv4Addr::new(203, 0, 113, 7),
            Some(0x4321),
            false,
        );
        assert_eq!(full(&p[20..]), 0);
        assert_eq!(flow(&p), Flow::EchoRequest(0x4321));
        assert_eq!(flow(&packet(47, &[0; 8])), Flow::Other);
        assert_eq!(
            flow(&packet(protocol::ICMP, &[3, 3, 0, 0, 0, 0, 0, 0])),
            Flow::IcmpError
        );
    }
}
