//! Routed networks: host A's switch with router 1 on three networks (two overlays and a VLAN),
//! VM and offload host ports, a VM of the red network on host B; host B's switch with the same
//! router; packet builders and readers for routed frames.

use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_switch::datapath::{
    ConfigCommand, DropReason, Location, NetworkId, PortId, PortKind, RouterId, Segment, Switch,
    SwitchSettings,
};
use vinfra_switch::wire::{ipv4, EtherType, MacAddr, VlanId, Vni};

use super::{add_port, eth, mac, ones_sum, TRUNK, UPLINK, VTEP_A, VTEP_B};

/// Blue: overlay VNI 5001, 10.1.0.0/24.
pub const BLUE: NetworkId = NetworkId(1);
/// Red: overlay VNI 5002, 10.2.0.0/24.
pub const RED: NetworkId = NetworkId(2);
/// Green: VLAN 30 on the trunk, 10.3.0.0/24.
pub const GREEN: NetworkId = NetworkId(3);
/// The router of blue, red and green.
pub const R1: RouterId = RouterId(1);
/// VM 11 (blue), VM 12 (red), offload taps 13 (blue) and 14 (red), VM 15 (green).
pub const VM_BLUE: PortId = PortId(1);
/// VM 12's port.
pub const VM_RED: PortId = PortId(2);
/// Tap 13's port (offloads).
pub const TAP_BLUE: PortId = PortId(3);
/// Tap 14's port (offloads).
pub const TAP_RED: PortId = PortId(4);
/// VM 15's port.
pub const VM_GREEN: PortId = PortId(5);
/// Host B's port of VM 22 (red).
pub const VM_B: PortId = PortId(22);
/// When the tests' frames arrive.
pub const NOW: Duration = Duration::from_secs(10);

/// Address `last` in network `net`'s subnet: 10.`net`.0.`last`.
pub fn addr(net: NetworkId, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net.0 as u8, 0, last)
}

/// A network's gateway address: .1 of its subnet.
pub fn gw_ip(net: NetworkId) -> Ipv4Addr {
    addr(net, 1)
}

/// A network's gateway MAC, as the console derives it: 02:76:72:00:HH:LL.
pub fn gw_mac(net: NetworkId) -> MacAddr {
    let [hh, ll] = (net.0 as u16).to_be_bytes();
    MacAddr([0x02, 0x76, 0x72, 0, hh, ll])
}

/// The router's interface on `net`: .1/24.
pub fn interface(router: RouterId, net: NetworkId) -> ConfigCommand {
    ConfigCommand::SetRouterInterface {
        router,
        network: net,
        addr: gw_ip(net),
        prefix_len: 24,
        mac: gw_mac(net),
        mtu: None,
    }
}

fn overlay(id: NetworkId, vni: u32) -> ConfigCommand {
    ConfigCommand::AddNetwork {
        id,
        segment: Segment::Overlay {
            vni: Vni::new(vni).unwrap(),
        },
    }
}

/// A VM `last` registered on `net` behind `location`: its MAC entry and its address.
pub fn registered(net: NetworkId, last: u8, location: Location) -> [ConfigCommand; 2] {
    [
        ConfigCommand::AddMacEntry {
            network: net,
            mac: mac(last),
            location,
        },
        ConfigCommand::AddArpEntry {
            network: net,
            ip: addr(net, last),
            mac: mac(last),
        },
    ]
}

/// Host A: blue (VM 11 on port 1, tap 13 on port 3), red (VM 12 on port 2, tap 14 on port 4,
/// VM 22 on host B), green on VLAN 30 (VM 15 on port 5, the trunk); router 1 on all three.
/// Overlay ports have MTU 1450 (uplink 1500), green's 1500. Taps take offloads.
pub fn host_a() -> Switch {
    let mut commands = vec![
        overlay(BLUE, 5001),
        overlay(RED, 5002),
        ConfigCommand::AddNetwork {
            id: GREEN,
            segment: Segment::Vlan {
                vid: VlanId::new(30).unwrap(),
            },
        },
        add_port(
            UPLINK,
            PortKind::VxlanUplink {
                local_ip: VTEP_A,
                local_mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
                gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
            },
            1500,
        ),
        add_port(TRUNK, PortKind::VlanTrunk, 1500),
        add_port(VM_BLUE, PortKind::Vm { network: BLUE }, 1450),
        add_port(VM_RED, PortKind::Vm { network: RED }, 1450),
        add_port(TAP_BLUE, PortKind::Host { network: BLUE }, 1450),
        add_port(TAP_RED, PortKind::Host { network: RED }, 1450),
        add_port(VM_GREEN, PortKind::Vm { network: GREEN }, 1500),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_B],
        },
        ConfigCommand::SetFloodList {
            network: RED,
            vteps: vec![VTEP_B],
        },
        ConfigCommand::AddRouter(R1),
        interface(R1, BLUE),
        interface(R1, RED),
        interface(R1, GREEN),
    ];
    commands.extend(registered(BLUE, 11, Location::Port(VM_BLUE)));
    commands.extend(registered(BLUE, 13, Location::Port(TAP_BLUE)));
    commands.extend(registered(RED, 12, Location::Port(VM_RED)));
    commands.extend(registered(RED, 14, Location::Port(TAP_RED)));
    commands.extend(registered(RED, 22, Location::Vtep(VTEP_B)));
    commands.extend(registered(GREEN, 15, Location::Port(VM_GREEN)));
    let mut s = Switch::with_commands(SwitchSettings::default(), commands).unwrap();
    s.set_port_offloads(TAP_BLUE, true).unwrap();
    s.set_port_offloads(TAP_RED, true).unwrap();
    s
}

/// Host B: blue and red with router 1 as on host A, VM 22 (red) on port 22; VM 11 (blue) on
/// host A.
pub fn host_b() -> Switch {
    let mut commands = vec![
        overlay(BLUE, 5001),
        overlay(RED, 5002),
        add_port(
            UPLINK,
            PortKind::VxlanUplink {
                local_ip: VTEP_B,
                local_mac: MacAddr([2, 0, 0, 0, 0, 0xb]),
                gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
            },
            1500,
        ),
        add_port(VM_B, PortKind::Vm { network: RED }, 1450),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_A],
        },
        ConfigCommand::SetFloodList {
            network: RED,
            vteps: vec![VTEP_A],
        },
        ConfigCommand::AddRouter(R1),
        interface(R1, BLUE),
        interface(R1, RED),
    ];
    commands.extend(registered(BLUE, 11, Location::Vtep(VTEP_A)));
    commands.extend(registered(RED, 22, Location::Port(VM_B)));
    Switch::with_commands(SwitchSettings::default(), commands).unwrap()
}

/// An IPv4 packet with `ttl`, DF set, its checksum filled.
pub fn packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ttl: u8, body: &[u8]) -> Vec<u8> {
    let mut p = super::ipv4_payload(src, dst, protocol, body);
    p[8] = ttl;
    refill(&mut p);
    p
}

/// Fills an IPv4 header's checksum again.
pub fn refill(p: &mut [u8]) {
    ipv4::Packet::new_unchecked(p).fill_checksum();
}

/// A UDP datagram (ports 5000 to 6000, checksum 0) with `len` bytes of data.
pub fn udp_body(len: usize) -> Vec<u8> {
    let mut d = vec![0x13, 0x88, 0x17, 0x70, 0, 0, 0, 0];
    d[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    d.extend((0..len).map(|i| (i * 7) as u8));
    d
}

/// A UDP packet from `src` to `dst` with TTL 64, in a frame from `from` to `net`'s gateway.
pub fn routed_udp(net: NetworkId, from: u8, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    eth(
        gw_mac(net),
        mac(from),
        EtherType::IPV4,
        &packet(addr(net, from), dst, 17, 64, &udp_body(len)),
    )
}

/// An ICMP echo request with identifier `id`, sequence 1 and `data`, its checksum filled.
pub fn echo_request(id: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(data);
    let sum = !ones_sum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// The Ethernet addresses and the IPv4 packet of a frame.
pub fn split(frame: &[u8]) -> (MacAddr, MacAddr, &[u8]) {
    assert_eq!(&frame[12..14], &[0x08, 0x00], "an IPv4 frame");
    (
        MacAddr(frame[..6].try_into().unwrap()),
        MacAddr(frame[6..12].try_into().unwrap()),
        &frame[14..],
    )
}

/// Checks an ICMP message from the router: IPv4 from `from` to `to`, TTL 64, valid header and
/// ICMP checksums, the type and code given; returns the ICMP message.
pub fn icmp_from(frame: &[u8], from: Ipv4Addr, to: Ipv4Addr, ty: u8, code: u8) -> Vec<u8> {
    let (_, _, ip) = split(frame);
    assert_eq!(ones_sum(&ip[..20]), 0xffff, "IPv4 header checksum");
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(ip[8], 64, "TTL");
    assert_eq!(
        Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap()),
        from
    );
    assert_eq!(
        Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap()),
        to
    );
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(total, ip.len());
    let icmp = &ip[20..];
    assert_eq!(ones_sum(icmp), 0xffff, "ICMP checksum");
    assert_eq!((icmp[0], icmp[1]), (ty, code));
    icmp.to_vec()
}

/// Drops for `reason` on a router.
pub fn router_drops(s: &Switch, router: RouterId, reason: DropReason) -> u64 {
    s.router_counters(router).unwrap().drops.get(reason)
}
