//! Router 1 with an uplink: the external VLAN network (VLAN 82, 203.0.113.0/24, the upstream
//! router at .254), host A as the edge and host B sending to it; packet builders with their
//! transport checksums and an independent check of every checksum.

use std::net::Ipv4Addr;

use vinfra_switch::datapath::{ConfigCommand, Edge, NetworkId, PortId, Segment, Switch, TxBatch};
use vinfra_switch::wire::{ipv4, EtherType, MacAddr, VlanId};

use super::routing::{addr, gw_mac, host_a, host_b, NOW, R1};
use super::{add_port, eth, ones_sum, tagged, untag, TRUNK, VTEP_A};
use vinfra_switch::datapath::PortKind;

/// The external network: VLAN 82.
pub const EXT: NetworkId = NetworkId(9);
/// Its VLAN ID.
pub const EXT_VID: u16 = 82;
/// Router 1's uplink address.
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The upstream router, the default route's next hop.
pub const UPSTREAM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// Its MAC.
pub const UPSTREAM_MAC: MacAddr = MacAddr([0x00, 0x1b, 0x21, 0, 0, 0xfe]);
/// Router 1's uplink MAC, as the console derives it: 02:76:72:01:RR:LL.
pub const UPLINK_MAC: MacAddr = MacAddr([0x02, 0x76, 0x72, 0x01, 0, 1]);
/// Router 1's transit VNI: 0xFF0000 | 1.
pub const TRANSIT: u32 = 0xff_0001;
/// A host on the Internet.
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// A floating IP.
pub const FLOATING: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);

/// Router 1's uplink with its edge.
pub fn uplink(edge: Edge) -> ConfigCommand {
    ConfigCommand::SetRouterUplink {
        router: R1,
        network: EXT,
        addr: UPLINK_IP,
        prefix_len: 24,
        mac: UPLINK_MAC,
        edge,
        transit_vni: TRANSIT,
        mtu: None,
    }
}

/// The external network, the uplink, the default route and (`upstream_known`) the upstream
/// router's ARP entry.
pub fn add_uplink(s: &mut Switch, edge: Edge, upstream_known: bool) {
    s.apply(ConfigCommand::AddNetwork {
        id: EXT,
        segment: Segment::Vlan {
            vid: VlanId::new(EXT_VID).unwrap(),
        },
    })
    .unwrap();
    s.apply(uplink(edge)).unwrap();
    s.apply(ConfigCommand::AddRoute {
        router: R1,
        prefix: vinfra_switch::datapath::firewall::rules::Prefix {
            addr: Ipv4Addr::UNSPECIFIED,
            len: 0,
        },
        via: UPSTREAM,
    })
    .unwrap();
    if upstream_known {
        s.apply(ConfigCommand::AddArpEntry {
            network: EXT,
            ip: UPSTREAM,
            mac: UPSTREAM_MAC,
        })
        .unwrap();
    }
}

/// Host A as router 1's edge, the upstream router known, its gratuitous ARP sent.
pub fn edge_a() -> Switch {
    let mut s = host_a();
    add_uplink(&mut s, Edge::Local, true);
    assert_eq!(s.announce(&mut TxBatch::new()), 1);
    s
}

/// Host B with router 1's edge on host A, a trunk and the external network.
pub fn host_b_remote() -> Switch {
    let mut s = host_b();
    s.apply(add_port(TRUNK, PortKind::VlanTrunk, 1500)).unwrap();
    add_uplink(&mut s, Edge::Remote { vtep: VTEP_A }, false);
    s
}

/// A UDP packet with its checksum (`csum`) or none.
pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), csum: bool, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&src.1.to_be_bytes());
    body.extend_from_slice(&dst.1.to_be_bytes());
    body.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(data);
    let mut p = super::ipv4_payload(src.0, dst.0, 17, &body);
    if csum {
        let c = !l4_sum(&p);
        let c = if c == 0 { 0xffff } else { c };
        p[26..28].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// A TCP segment (no options) with `flags` and its checksum.
pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
    let mut body = super::tcp_header(src.1, dst.1, flags);
    body.extend_from_slice(b"hello");
    let mut p = super::ipv4_payload(src.0, dst.0, 6, &body);
    p[36..38].copy_from_slice(&[0, 0]);
    let c = !l4_sum(&p);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// An ICMP echo request or reply (`ty` 8 or 0) with identifier `id`.
pub fn echo(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, id: u16) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
    let c = !ones_sum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    super::ipv4_payload(src, dst, 1, &m)
}

/// The sum of a TCP/UDP packet's pseudo-header and transport bytes (checksum field included).
fn l4_sum(ip: &[u8]) -> u16 {
    let hl = usize::from(ip[0] & 0xf) * 4;
    let l4 = &ip[hl..];
    let mut all = ip[12..20].to_vec();
    all.extend_from_slice(&[0, ip[9]]);
    all.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    all.extend_from_slice(l4);
    ones_sum(&all)
}

/// Checks every checksum of an IPv4 packet, summed from scratch: the header's, TCP's and
/// UDP's with their pseudo-header (a UDP checksum of 0 is none), ICMP's.
pub fn check_sums(ip: &[u8]) {
    let hl = usize::from(ip[0] & 0xf) * 4;
    assert_eq!(ones_sum(&ip[..hl]), 0xffff, "IPv4 header checksum");
    match ip[9] {
        6 => assert_eq!(l4_sum(ip), 0xffff, "TCP checksum"),
        17 if ip[hl + 6..hl + 8] != [0, 0] => assert_eq!(l4_sum(ip), 0xffff, "UDP checksum"),
        1 => assert_eq!(ones_sum(&ip[hl..]), 0xffff, "ICMP checksum"),
        _ => {}
    }
}

/// A packet from VM `last` of `net` to its gateway.
pub fn from_vm(net: NetworkId, last: u8, ip: &[u8]) -> Vec<u8> {
    eth(gw_mac(net), super::mac(last), EtherType::IPV4, ip)
}

/// A packet from the upstream router to the uplink, on the trunk.
pub fn from_outside(ip: &[u8]) -> Vec<u8> {
    tagged(UPLINK_MAC, UPSTREAM_MAC, EXT_VID, EtherType::IPV4, ip)
}

/// The one frame sent out of `port`; panics unless there is exactly one copy and it went there.
pub fn only(out: &super::Out, port: PortId) -> Vec<u8> {
    assert_eq!(out.len(), 1, "one copy: {:?}", super::reached(out));
    assert_eq!(out[0].0, port);
    out[0].2.clone()
}

/// A frame out of the trunk on the external network: from the uplink MAC to the upstream
/// router, VLAN 82; its IPv4 packet, checksums checked.
pub fn to_upstream(frame: &[u8]) -> Vec<u8> {
    assert_eq!(&frame[12..14], &[0x81, 0x00]);
    assert_eq!(u16::from_be_bytes([frame[14], frame[15]]) & 0xfff, EXT_VID);
    let f = untag(frame);
    assert_eq!(&f[..6], &UPSTREAM_MAC.0, "to the upstream router");
    assert_eq!(&f[6..12], &UPLINK_MAC.0, "from the uplink's MAC");
    let ip = f[14..].to_vec();
    check_sums(&ip);
    ip
}

/// Source address and port (or echo identifier) of an IPv4 packet.
pub fn source(ip: &[u8]) -> (Ipv4Addr, u16) {
    let a = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap());
    let off = if ip[9] == 1 { 24 } else { 20 };
    (a, u16::from_be_bytes([ip[off], ip[off + 1]]))
}

/// Destination address and port (or echo identifier) of an IPv4 packet.
pub fn destination(ip: &[u8]) -> (Ipv4Addr, u16) {
    let a = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap());
    let off = if ip[9] == 1 { 24 } else { 22 };
    (a, u16::from_be_bytes([ip[off], ip[off + 1]]))
}

/// The IPv4 packet of a frame to VM `last` of `net` from its gateway, checksums checked.
pub fn to_vm(frame: &[u8], net: NetworkId, last: u8) -> Vec<u8> {
    assert_eq!(&frame[..6], &super::mac(last).0, "to the VM");
    assert_eq!(&frame[6..12], &gw_mac(net).0, "from its gateway");
    let ip = frame[14..].to_vec();
    check_sums(&ip);
    assert_eq!(&ip[16..20], &addr(net, last).octets());
    ip
}

/// Runs a frame at `NOW`.
pub fn at_now(s: &mut Switch, port: PortId, frame: &[u8]) -> super::Out {
    super::run(s, NOW, port, frame)
}

/// Sets an IPv4 packet's TTL (the header checksum filled again).
pub fn with_ttl(mut ip: Vec<u8>, ttl: u8) -> Vec<u8> {
    ip[8] = ttl;
    ipv4::Packet::new_unchecked(&mut ip[..]).fill_checksum();
    ip
}
