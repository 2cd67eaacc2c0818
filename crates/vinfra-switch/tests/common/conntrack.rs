//! A bare connection table and the packets of a VM (10.0.0.5) talking to a peer (10.0.0.9).

use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_switch::datapath::firewall::conntrack::{
    Conntrack, ConntrackConfig, PacketInfo, Side, TcpState, Timeouts, Tracked,
};
use vinfra_switch::wire::ipv4::protocol;

use super::{icmp_echo, ipv4_packet, tcp_header, ACK, SYN, SYN_ACK};

/// The VM.
pub const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
/// Its peer.
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
/// A router on the way.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The VM port's zone.
pub const ZONE: u32 = 1;
/// A packet of a known connection, the original way.
pub const EST: Tracked = Tracked::Established { reply: false };
/// A packet of a known connection, the reply way.
pub const EST_REPLY: Tracked = Tracked::Established { reply: true };

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The IPv4 packet of a TCP segment (no data).
pub fn tcp_bytes(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    ipv4_packet(src, dst, protocol::TCP, 0, &tcp_header(sport, dport, flags))
}

pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> PacketInfo {
    PacketInfo::parse(&tcp_bytes(src, sport, dst, dport, flags)).unwrap()
}

/// The IPv4 packet of a UDP datagram with 4 bytes of data (checksum 0).
pub fn udp_bytes(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&12u16.to_be_bytes());
    ipv4_packet(src, dst, protocol::UDP, 0, &h)
}

pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> PacketInfo {
    PacketInfo::parse(&udp_bytes(src, sport, dst, dport)).unwrap()
}

/// The IPv4 packet of an ICMP echo request (type 8) or reply (0).
pub fn icmp_echo_bytes(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, id: u16) -> Vec<u8> {
    ipv4_packet(src, dst, protocol::ICMP, 0, &icmp_echo(ty, id))
}

pub fn echo(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, id: u16) -> PacketInfo {
    PacketInfo::parse(&icmp_echo_bytes(src, dst, ty, id)).unwrap()
}

/// An ICMP error quoting the first 28 bytes of `quoted`.
pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8, quoted: &[u8]) -> PacketInfo {
    let mut h = vec![ty, code, 0, 0, 0, 0, 0, 0];
    h.extend_from_slice(&quoted[..28]);
    PacketInfo::parse(&ipv4_packet(src, dst, protocol::ICMP, 0, &h)).unwrap()
}

/// A table of at most `max_entries` connections, no zone limit, the default timeouts.
pub fn table(max_entries: usize) -> Conntrack {
    Conntrack::new(ConntrackConfig {
        max_entries,
        zone_max_entries: None,
        timeouts: Timeouts::default(),
    })
}

/// The VM opens a TCP connection to PEER:80 at `now` and completes the handshake.
pub fn handshake(ct: &mut Conntrack, zone: u32, now: Duration) {
    let syn = tcp(VM, 40000, PEER, 80, SYN);
    assert_eq!(ct.track(zone, Side::FromVm, &syn, now), Tracked::New);
    ct.commit(zone, Side::FromVm, &syn, now).unwrap();
    let synack = tcp(PEER, 80, VM, 40000, SYN_ACK);
    assert_eq!(ct.track(zone, Side::ToVm, &synack, now), EST_REPLY);
    let ack = tcp(VM, 40000, PEER, 80, ACK);
    assert_eq!(ct.track(zone, Side::FromVm, &ack, now), EST);
}

/// The TCP state of the zone's first connection.
pub fn state_of(ct: &Conntrack, zone: u32, now: Duration) -> Option<TcpState> {
    ct.export(zone, now).first().and_then(|e| e.tcp_state)
}
