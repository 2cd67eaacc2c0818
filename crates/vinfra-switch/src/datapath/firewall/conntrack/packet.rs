//! What connection tracking reads from an IPv4 packet ([`PacketInfo`]): addresses, protocol,
//! ports, TCP flags, ICMP type, code and identifier, where a fragment lies, and for an ICMP
//! error the connection the packet it quotes belongs to.

use core::net::Ipv4Addr;

use crate::wire::ipv4::{self, protocol};
use crate::wire::{self, Ipv4Repr};

/// ICMP types connection tracking knows (RFC 792).
pub mod icmp_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (an error).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (an error, deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (an error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (an error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (an error).
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP_REQUEST: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Information request (obsolete).
    pub const INFO_REQUEST: u8 = 15;
    /// Information reply (obsolete).
    pub const INFO_REPLY: u8 = 16;
    /// Address mask request (obsolete).
    pub const ADDRESS_MASK_REQUEST: u8 = 17;
    /// Address mask reply (obsolete).
    pub const ADDRESS_MASK_REPLY: u8 = 18;
}

/// The answer to an ICMP query type (echo ↔ echo reply, timestamp, information, address
/// mask), in both directions; `None` for other types.
pub const fn icmp_query_peer(ty: u8) -> Option<u8> {
    use icmp_type::*;
    Some(match ty {
        ECHO_REQUEST => ECHO_REPLY,
        ECHO_REPLY => ECHO_REQUEST,
        TIMESTAMP_REQUEST => TIMESTAMP_REPLY,
        TIMESTAMP_REPLY => TIMESTAMP_REQUEST,
        INFO_REQUEST => INFO_REPLY,
        INFO_REPLY => INFO_REQUEST,
        ADDRESS_MASK_REQUEST => ADDRESS_MASK_REPLY,
        ADDRESS_MASK_REPLY => ADDRESS_MASK_REQUEST,
        _ => return None,
    })
}

/// Whether an ICMP type is a query request (echo, timestamp, information, address mask), the
/// only ICMP that starts a connection.
pub const fn icmp_is_request(ty: u8) -> bool {
    use icmp_type::*;
    matches!(
        ty,
        ECHO_REQUEST | TIMESTAMP_REQUEST | INFO_REQUEST | ADDRESS_MASK_REQUEST
    )
}

/// Whether an ICMP type is an error that quotes the packet it is about (the kernel's
/// `icmp_is_err`): destination unreachable, source quench, redirect, time exceeded, parameter
/// problem.
pub const fn icmp_is_error(ty: u8) -> bool {
    use icmp_type::*;
    matches!(
        ty,
        DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// One direction of a connection, as the packets going that way carry it. The two directions
/// of a connection are its original tuple (of the packet that created it) and its reply tuple
/// ([`ConnTuple::reply`]).
///
/// For TCP and UDP the ports are the ports. For ICMP queries `src_port` is the identifier and
/// `dst_port` the type (echo request 8 one way, echo reply 0 the other); for other ICMP types
/// `src_port` is 0 and `dst_port` the type. For other protocols both are 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnTuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port, or the ICMP identifier.
    pub src_port: u16,
    /// Destination port, or the ICMP type.
    pub dst_port: u16,
}

impl ConnTuple {
    /// The tuple of the packets going the other way: addresses and ports swapped; for an ICMP
    /// query the same identifier with the answering type (echo request ↔ echo reply).
    pub fn reply(&self) -> ConnTuple {
        if self.protocol == protocol::ICMP {
            let ty = u8::try_from(self.dst_port).unwrap_or(u8::MAX);
            let peer = icmp_query_peer(ty).map_or(self.dst_port, u16::from);
            return ConnTuple {
                src: self.dst,
                dst: self.src,
                protocol: self.protocol,
                src_port: self.src_port,
                dst_port: peer,
            };
        }
        ConnTuple {
            src: self.dst,
            dst: self.src,
            protocol: self.protocol,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// TCP header flags (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers (opens a connection).
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is valid.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is valid.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// Where a packet lies in its datagram.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Fragment {
    /// Not a fragment.
    Whole,
    /// The first fragment (offset 0, more fragments): it has the transport header.
    First,
    /// A later fragment, at this offset in bytes: no transport header.
    Later {
        /// Fragment offset in bytes (a multiple of 8, at least 8).
        offset: u16,
    },
}

/// What an ICMP message says, for connection tracking.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Icmp {
    /// A query or its answer (echo, timestamp, information, address mask), keyed by its
    /// identifier.
    Query {
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
        /// Identifier.
        id: u16,
    },
    /// An error (destination unreachable, source quench, redirect, time exceeded, parameter
    /// problem) and the tuple of the packet it quotes, as that packet travelled; `None` when
    /// the quoted packet is too short, not IPv4, a later fragment, or itself an ICMP message
    /// other than a query.
    Error {
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
        /// The quoted packet's tuple.
        about: Option<ConnTuple>,
    },
    /// Any other type.
    Other {
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
    },
}

/// The transport layer of a packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum L4 {
    /// TCP.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Flags.
        flags: TcpFlags,
    },
    /// UDP.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP.
    Icmp(Icmp),
    /// Another protocol, or a later fragment (its transport header is in the first one).
    Other,
}

/// Why [`PacketInfo::parse`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PacketError {
    /// The IPv4 header is malformed (version, lengths, checksum) or truncated.
    #[error("malformed IPv4 packet")]
    Ipv4(#[source] wire::Error),
    /// An unfragmented packet or a first fragment too short for its TCP (20 bytes and its data
    /// offset), UDP (8 bytes) or ICMP (8 bytes) header; the protocol number is given. A first
    /// fragment that does not hold the whole TCP header is refused as RFC 1858 advises (a
    /// later fragment could otherwise change the flags).
    #[error("transport header of protocol {0} is truncated")]
    Truncated(u8),
    /// A TCP data offset below 5 words.
    #[error("TCP data offset below 20 bytes")]
    BadTcpOffset,
}

/// The fields of an IPv4 packet connection tracking needs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PacketInfo {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Where the packet lies in its datagram.
    pub fragment: Fragment,
    /// The transport header ([`L4::Other`] for a later fragment).
    pub l4: L4,
}

const TCP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const ICMP_HEADER_LEN: usize = 8;

/// Reads a big-endian `u16` at `at`; `None` past the end.
fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let hi = *buf.get(at)?;
    let lo = *buf.get(at.checked_add(1)?)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// Reads the two ports at the start of a TCP or UDP header.
fn ports(buf: &[u8]) -> Option<(u16, u16)> {
    Some((be16(buf, 0)?, be16(buf, 2)?))
}

/// Reads 4 bytes at `at` as an address.
fn addr(buf: &[u8], at: usize) -> Option<Ipv4Addr> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(bytes).ok().map(Ipv4Addr::from)
}

impl PacketInfo {
    /// Parses an IPv4 packet (from its IP header; Ethernet padding after the total length is
    /// allowed): checks the header (version, lengths, checksum), reads the transport header of
    /// an unfragmented packet or first fragment, and for an ICMP error the header of the packet
    /// it quotes (which only needs its IPv4 header and 8 bytes, as RFC 792 guarantees; its
    /// lengths and checksum are not checked, routers quote truncated packets).
    pub fn parse(ipv4_packet: &[u8]) -> Result<PacketInfo, PacketError> {
        let packet = ipv4::Packet::new_checked(ipv4_packet).map_err(PacketError::Ipv4)?;
        let repr = Ipv4Repr::parse(&packet).map_err(PacketError::Ipv4)?;
        let offset = packet.frag_offset();
        let fragment = if offset != 0 {
            Fragment::Later { offset }
        } else if packet.more_frags() {
            Fragment::First
        } else {
            Fragment::Whole
        };
        let payload = packet.payload();
        let l4 = match (fragment, repr.protocol) {
            (Fragment::Later { .. }, _) => L4::Other,
            (_, protocol::TCP) => tcp(payload)?,
            (_, protocol::UDP) => {
                if payload.len() < UDP_HEADER_LEN {
                    return Err(PacketError::Truncated(protocol::UDP));
                }
                let (src_port, dst_port) =
                    ports(payload).ok_or(PacketError::Truncated(protocol::UDP))?;
                L4::Udp { src_port, dst_port }
            }
            (_, protocol::ICMP) => L4::Icmp(icmp(payload)?),
            _ => L4::Other,
        };
        Ok(PacketInfo {
            src: repr.src_addr,
            dst: repr.dst_addr,
            protocol: repr.protocol,
            fragment,
            l4,
        })
    }

    /// The tuple of this packet's direction: `None` for a later fragment and an ICMP error
    /// (which are looked up otherwise).
    pub fn tuple(&self) -> Option<ConnTuple> {
        let (src_port, dst_port) = match self.l4 {
            L4::Tcp {
                src_port, dst_port, ..
            }
            | L4::Udp { src_port, dst_port } => (src_port, dst_port),
            L4::Icmp(Icmp::Query { ty, id, .. }) => (id, u16::from(ty)),
            L4::Icmp(Icmp::Other { ty, .. }) => (0, u16::from(ty)),
            L4::Icmp(Icmp::Error { .. }) => return None,
            L4::Other => {
                if matches!(self.fragment, Fragment::Later { .. }) {
                    return None;
                }
                (0, 0)
            }
        };
        Some(ConnTuple {
            src: self.src,
            dst: self.dst,
            protocol: self.protocol,
            src_port,
            dst_port,
        })
    }
}

/// Parses a TCP header: ports and flags; the whole header (its data offset) must be there.
fn tcp(payload: &[u8]) -> Result<L4, PacketError> {
    if payload.len() < TCP_HEADER_LEN {
        return Err(PacketError::Truncated(protocol::TCP));
    }
    let data_offset = usize::from(payload.get(12).copied().unwrap_or(0) >> 4) * 4;
    if data_offset < TCP_HEADER_LEN {
        return Err(PacketError::BadTcpOffset);
    }
    if data_offset > payload.len() {
        return Err(PacketError::Truncated(protocol::TCP));
    }
    let (src_port, dst_port) = ports(payload).ok_or(PacketError::Truncated(protocol::TCP))?;
    let flags = TcpFlags(payload.get(13).copied().unwrap_or(0));
    Ok(L4::Tcp {
        src_port,
        dst_port,
        flags,
    })
}

/// Parses an ICMP header: type and code; the identifier of a query; the quoted packet's tuple
/// of an error.
fn icmp(payload: &[u8]) -> Result<Icmp, PacketError> {
    let header = payload
        .get(..ICMP_HEADER_LEN)
        .ok_or(PacketError::Truncated(protocol::ICMP))?;
    let ty = header.first().copied().unwrap_or(0);
    let code = header.get(1).copied().unwrap_or(0);
    if icmp_query_peer(ty).is_some() {
        let id = be16(header, 4).unwrap_or(0);
        return Ok(Icmp::Query { ty, code, id });
    }
    if icmp_is_error(ty) {
        let about = payload.get(ICMP_HEADER_LEN..).and_then(quoted);
        return Ok(Icmp::Error { ty, code, about });
    }
    Ok(Icmp::Other { ty, code })
}

/// The tuple of the packet an ICMP error quotes: its IPv4 header and the first 8 bytes of its
/// payload (ports, or an ICMP query's type and identifier).
fn quoted(inner: &[u8]) -> Option<ConnTuple> {
    let ver_ihl = *inner.first()?;
    if ver_ihl >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if header_len < ipv4::HEADER_LEN {
        return None;
    }
    // A quoted later fragment has no transport header.
    if be16(inner, 6)? & 0x1fff != 0 {
        return None;
    }
    let proto = *inner.get(9)?;
    let src = addr(inner, 12)?;
    let dst = addr(inner, 16)?;
    let l4 = inner.get(header_len..)?;
    let (src_port, dst_port) = match proto {
        protocol::TCP | protocol::UDP => ports(l4.get(..8)?)?,
        protocol::ICMP => {
            let ty = *l4.first()?;
            // No error is ever about an ICMP error, nor about ICMP other than queries.
            icmp_query_peer(ty)?;
            (be16(l4.get(..8)?, 4)?, u16::from(ty))
        }
        _ => (0, 0),
    };
    Some(ConnTuple {
        src,
        dst,
        protocol: proto,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Packet;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn ip(proto: u8, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 20 + payload.len()];
        let repr = Ipv4Repr {
            src_addr: A,
            dst_addr: B,
            protocol: proto,
            payload_len: payload.len(),
            ttl: 64,
            dscp_ecn: 0,
        };
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p).unwrap();
        buf[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        buf[20..].copy_from_slice(payload);
        buf
    }

    fn tcp_header(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h
    }

    #[test]
    fn tcp_udp_and_fragments() {
        let info = PacketInfo::parse(&ip(6, 0, &tcp_header(1000, 80, 0x12))).unwrap();
        assert_eq!(
            info.l4,
            L4::Tcp {
                src_port: 1000,
                dst_port: 80,
                flags: TcpFlags::SYN | TcpFlags::ACK
            }
        );
        assert_eq!(info.fragment, Fragment::Whole);
        assert_eq!(info.tuple().unwrap().reply().src_port, 80);

        let udp = [0, 53, 0x30, 0x39, 0, 8, 0, 0];
        let info = PacketInfo::parse(&ip(17, 0x2000, &udp)).unwrap();
        assert_eq!(info.fragment, Fragment::First);
        assert_eq!(
            info.l4,
            L4::Udp {
                src_port: 53,
                dst_port: 12345
            }
        );
        let info = PacketInfo::parse(&ip(17, 3, &[1, 2, 3])).unwrap();
        assert_eq!(info.fragment, Fragment::Later { offset: 24 });
        assert_eq!(info.l4, L4::Other);
        assert_eq!(info.tuple(), None);
    }

    #[test]
    fn truncated_and_bad_headers() {
        let h = tcp_header(1, 2, 2);
        for len in 0..20 {
            assert_eq!(
                PacketInfo::parse(&ip(6, 0, &h[..len])),
                Err(PacketError::Truncated(6)),
                "{len}"
            );
        }
        let mut h = tcp_header(1, 2, 2);
        h[12] = 4 << 4;
        assert_eq!(
            PacketInfo::parse(&ip(6, 0, &h)),
            Err(PacketError::BadTcpOffset)
        );
        h[12] = 6 << 4;
        assert_eq!(
            PacketInfo::parse(&ip(6, 0x2000, &h)),
            Err(PacketError::Truncated(6))
        );
        assert_eq!(
            PacketInfo::parse(&ip(17, 0, &[0; 7])),
            Err(PacketError::Truncated(17))
        );
        assert_eq!(
            PacketInfo::parse(&ip(1, 0, &[8, 0, 0, 0, 0, 1, 0])),
            Err(PacketError::Truncated(1))
        );
        let mut bad = ip(17, 0, &[0; 8]);
        bad[10] ^= 1;
        assert_eq!(
            PacketInfo::parse(&bad),
            Err(PacketError::Ipv4(wire::Error::BadIpv4Checksum))
        );
        // Other protocols need nothing after the IP header.
        let info = PacketInfo::parse(&ip(47, 0, &[])).unwrap();
        assert_eq!(info.l4, L4::Other);
        assert_eq!(info.tuple().unwrap().dst_port, 0);
    }

    #[test]
    fn icmp_query_and_error() {
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let info = PacketInfo::parse(&ip(1, 0, &echo)).unwrap();
        assert_eq!(
            info.l4,
            L4::Icmp(Icmp::Query {
                ty: 8,
                code: 0,
                id: 0x1234
            })
        );
        let t = info.tuple().unwrap();
        assert_eq!((t.src_port, t.dst_port), (0x1234, 8));
        let r = t.reply();
        assert_eq!((r.src, r.dst, r.src_port, r.dst_port), (B, A, 0x1234, 0));
        assert_eq!(r.reply(), t);

        // Port unreachable quoting a UDP datagram B:5000 -> A:53.
        let mut quoted_ip = ip(17, 0, &[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        quoted_ip[12..16].copy_from_slice(&B.octets());
        quoted_ip[16..20].copy_from_slice(&A.octets());
        let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quoted_ip);
        let info = PacketInfo::parse(&ip(1, 0, &err)).unwrap();
        let L4::Icmp(Icmp::Error {
            ty: 3,
            code: 3,
            about: Some(about),
        }) = info.l4
        else {
            panic!("{info:?}");
        };
        assert_eq!(
            about,
            ConnTuple {
                src: B,
                dst: A,
                protocol: 17,
                src_port: 5000,
                dst_port: 53
            }
        );
        assert_eq!(info.tuple(), None);
        // Quoting too little: related to nothing, but a valid ICMP message.
        let short = &err[..8 + 20 + 3];
        let info = PacketInfo::parse(&ip(1, 0, short)).unwrap();
        assert_eq!(
            info.l4,
            L4::Icmp(Icmp::Error {
                ty: 3,
                code: 3,
                about: None
            })
        );
        // Quoting a later fragment, or an ICMP error: related to nothing.
        let mut frag = err.clone();
        frag[8 + 7] = 1;
        assert!(matches!(
            PacketInfo::parse(&ip(1, 0, &frag)).unwrap().l4,
            L4::Icmp(Icmp::Error { about: None, .. })
        ));
        let mut nested = vec![11, 0, 0, 0, 0, 0, 0, 0];
        nested.extend_from_slice(&ip(1, 0, &err[..8]));
        assert!(matches!(
            PacketInfo::parse(&ip(1, 0, &nested)).unwrap().l4,
            L4::Icmp(Icmp::Error { about: None, .. })
        ));
        let info = PacketInfo::parse(&ip(1, 0, &[10, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(info.l4, L4::Icmp(Icmp::Other { ty: 10, code: 0 }));
    }

    #[test]
    fn no_panic_on_any_prefix() {
        let mut quoted_ip = ip(6, 0, &tcp_header(1, 2, 2));
        quoted_ip.truncate(28);
        let mut err = vec![3, 1, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quoted_ip);
        let full = ip(1, 0, &err);
        for len in 0..=full.len() {
            let _ = PacketInfo::parse(&full[..len]);
        }
        for b in 0..=255u8 {
            let mut p = full.clone();
            p[28] = b;
            let _ = PacketInfo::parse(&p);
        }
    }
}
