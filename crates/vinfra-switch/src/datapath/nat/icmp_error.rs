//! ICMP errors from outside about a translated packet (RFC 5508): the error goes to the outer
//! address the packet left with, and quotes that packet (its source that address, its source
//! port or echo identifier the outer one). Translated back, the error's destination and the
//! quoted packet's source address and port become the inner endpoint's, with the quoted IPv4
//! header's checksum, the quoted transport checksum (when the quote holds it) and the ICMP
//! checksum updated incrementally.

use core::net::Ipv4Addr;

use super::rewrite::{header_len, put_word, rewrite, word, Side};
use crate::wire::icmp::{self, msg_type};
use crate::wire::ipv4::protocol;

/// The packet an ICMP error quotes, as far as NAT needs it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct QuotedPacket {
    /// Its protocol.
    pub(crate) proto: u8,
    /// Its source address.
    pub(crate) src: Ipv4Addr,
    /// Its source port (TCP, UDP) or echo identifier (an echo request); `None` for others.
    pub(crate) src_port: Option<u16>,
}

/// The quoted packet of the ICMP error in the IPv4 packet `ip` (its header checked).
pub(crate) fn quoted(ip: &[u8]) -> Option<QuotedPacket> {
    let hl = header_len(ip);
    let q = ip.get(hl + icmp::HEADER_LEN..)?;
    let qhl = header_len(q);
    if q.len() < qhl + 8 || qhl < 20 || q.first()? >> 4 != 4 {
        return None;
    }
    let proto = *q.get(9)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(q.get(12..16)?).ok()?);
    // Only a first fragment quotes a transport header.
    let first = word(q, 6)? & 0x1fff == 0;
    let l4 = q.get(qhl..)?;
    let src_port = match proto {
        protocol::TCP | protocol::UDP if first => word(l4, 0),
        protocol::ICMP if first && l4.first() == Some(&msg_type::ECHO_REQUEST) => word(l4, 4),
        _ => None,
    };
    Some(QuotedPacket {
        proto,
        src,
        src_port,
    })
}

/// Translates the ICMP error in `ip` back: its destination and the quoted packet's source
/// become `inner`, the quoted source port or echo identifier `inner_port` when given.
pub(crate) fn translate_back(ip: &mut [u8], inner: Ipv4Addr, inner_port: Option<u16>) {
    rewrite(ip, Side::Dst, inner, None, false);
    let hl = header_len(ip);
    let Some(message) = ip.get_mut(hl..) else {
        return;
    };
    let icmp_csum = Some(2);
    let q = icmp::HEADER_LEN;
    let qhl = header_len(message.get(q..).unwrap_or(&[]));
    let proto = message.get(q + 9).copied().unwrap_or(0);
    let first = word(message, q + 6).is_some_and(|f| f & 0x1fff == 0);
    let old = [word(message, q + 12), word(message, q + 14)];
    let [a, b, c, d] = inner.octets();
    let new = [u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])];
    let l4 = q + qhl;
    // The quoted transport checksum: TCP's and UDP's cover the quoted addresses.
    let l4_csum = match proto {
        protocol::TCP if first => Some(l4 + 16),
        protocol::UDP if first && word(message, l4 + 6).is_some_and(|c| c != 0) => Some(l4 + 6),
        protocol::ICMP if first => Some(l4 + 2),
        _ => None,
    }
    .filter(|&c| message.len() >= c + 2);
    for (i, (&o, &n)) in old.iter().zip(&new).enumerate() {
        let Some(o) = o else { return };
        // The quoted source address, its header checksum, and the ICMP checksum over both.
        let at = q + 12 + 2 * i;
        let ip_csum_before = word(message, q + 10).unwrap_or(0);
        put_word(message, at, n, Some(q + 10), false);
        // The ICMP checksum: the address word and the quoted header checksum changed.
        if let Some(s) = word(message, 2) {
            let s = crate::wire::checksum::update(s, o, n);
            let ip_csum_after = word(message, q + 10).unwrap_or(0);
            let s = crate::wire::checksum::update(s, ip_csum_before, ip_csum_after);
            super::rewrite::set_word(message, 2, s);
        }
        if proto != protocol::ICMP {
            if let Some(c) = l4_csum {
                let before = word(message, c).unwrap_or(0);
                let after = crate::wire::checksum::update(before, o, n);
                put_word(message, c, after, icmp_csum, false);
            }
        }
    }
    if let Some(p) = inner_port.filter(|_| first) {
        let port_at = match proto {
            protocol::ICMP => l4 + 4,
            _ => l4,
        };
        let Some(old_port) = word(message, port_at) else {
            return;
        };
        put_word(message, port_at, p, icmp_csum, false);
        if let Some(c) = l4_csum {
            let before = word(message, c).unwrap_or(0);
            let after = crate::wire::checksum::update(before, old_port, p);
            put_word(message, c, after, icmp_csum, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    fn full(data: &[u8]) -> u16 {
        !checksum::sum(data)
    }

    fn ip(src: [u8; 4], dst: [u8; 4], proto: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(body);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let c = full(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn an_error_about_a_udp_datagram_goes_back_inside() {
        let outer = [203, 0, 113, 2];
        // The datagram as it left: from the outer address, port 1024, a UDP checksum.
        let mut udp = vec![0x04, 0x00, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4];
        let pseudo =
            checksum::pseudo_header(Ipv4Addr::from(outer), Ipv4Addr::new(8, 8, 8, 8), 17, 12);
        let c = !checksum::combine(&[pseudo, checksum::sum(&udp)]);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        let sent = ip(outer, [8, 8, 8, 8], 17, &udp);
        let mut msg = vec![3, 3, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&sent);
        let c = full(&msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let mut error = ip([8, 8, 8, 8], outer, 1, &msg);
        let q = quoted(&error).unwrap();
        assert_eq!(
            q,
            QuotedPacket {
                proto: 17,
                src: Ipv4Addr::from(outer),
                src_port: Some(1024)
            }
        );
        translate_back(&mut error, Ipv4Addr::new(10, 1, 0, 5), Some(5000));
        assert_eq!(&error[16..20], &[10, 1, 0, 5]);
        assert_eq!(full(&error[..20]), 0);
        assert_eq!(full(&error[20..]), 0, "ICMP checksum");
        let inner = &error[28..];
        assert_eq!(full(&inner[..20]), 0, "quoted header checksum");
        assert_eq!(&inner[12..16], &[10, 1, 0, 5]);
        assert_eq!(word(inner, 20), Some(5000));
        let pseudo = checksum::pseudo_header(
            Ipv4Addr::new(10, 1, 0, 5),
            Ipv4Addr::new(8, 8, 8, 8),
            17,
            12,
        );
        assert_eq!(
            checksum::combine(&[pseudo, checksum::sum(&inner[20..])]),
            0xffff,
            "quoted UDP checksum"
        );
    }
}
