//! Host A's switch with firewalled VM ports: blue (overlay) with the web server (VM 1), the
//! database (VM 2), a VM never firewalled (VM 3) and a host port (4); the uplink to host B,
//! where VM 9 runs. Frames between them by VM number.

use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, PortRange, Prefix, Protocol,
};
use vinfra_switch::datapath::{
    ConfigCommand, DhcpConfig, Location, NetworkId, PortConfig, PortId, PortKind, Segment, Switch,
    SwitchSettings,
};
use vinfra_switch::wire::{ipv4, EtherType, MacAddr, Offload, Vni};

use super::{
    eth, icmp_echo, ip, ipv4_payload, mac, offload_tcp_frame, send, tcp_gso, tcp_header, udp_ports,
    vxlan, ACK, PSH_ACK, SYN, SYN_ACK, UPLINK, VTEP_A, VTEP_B,
};

pub const BLUE: NetworkId = NetworkId(1);
/// VM 1 (10.0.0.1, mac 1): the web server, firewalled in most tests.
pub const WEB: PortId = PortId(1);
/// VM 2 (10.0.0.2, mac 2): the database, firewalled in some tests.
pub const DB: PortId = PortId(2);
/// VM 3 (10.0.0.3, mac 3): never firewalled.
pub const PLAIN: PortId = PortId(3);
/// A host port (10.0.0.4, mac 4): never firewalled.
pub const HOST: PortId = PortId(4);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// A VM on host B: 10.0.0.9, mac 9.
pub const REMOTE: u8 = 9;

pub fn port(id: PortId, kind: PortKind) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig {
        id,
        kind,
        mtu: 1450,
    })
}

/// Host A's switch: blue (overlay) with the web VM at `web`, VMs 2 and 3 and the host port,
/// the uplink (VTEP B in the flood list, VM 9 there); static MAC and ARP entries for every VM,
/// the DHCP responder on. No firewall yet.
pub fn switch_with(settings: SwitchSettings, web: PortId) -> Switch {
    let mut commands = vec![
        ConfigCommand::AddNetwork {
            id: BLUE,
            segment: Segment::Overlay {
                vni: Vni::new(5001).unwrap(),
            },
        },
        ConfigCommand::AddPort(PortConfig {
            id: UPLINK,
            kind: PortKind::VxlanUplink {
                local_ip: VTEP_A,
                local_mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
                gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
            },
            mtu: 1500,
        }),
        port(web, PortKind::Vm { network: BLUE }),
        port(DB, PortKind::Vm { network: BLUE }),
        port(PLAIN, PortKind::Vm { network: BLUE }),
        port(HOST, PortKind::Host { network: BLUE }),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_B],
        },
        ConfigCommand::SetDhcp {
            network: BLUE,
            config: Some(DhcpConfig {
                prefix_len: 24,
                gateway: Some(GATEWAY),
                server: None,
                mtu: None,
                lease_secs: 600,
            }),
        },
    ];
    for (n, location) in [
        (1, Location::Port(web)),
        (2, Location::Port(DB)),
        (3, Location::Port(PLAIN)),
        (4, Location::Port(HOST)),
        (REMOTE, Location::Vtep(VTEP_B)),
    ] {
        commands.push(ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(n),
            location,
        });
        commands.push(ConfigCommand::AddArpEntry {
            network: BLUE,
            ip: ip(n),
            mac: mac(n),
        });
    }
    Switch::with_commands(settings, commands).unwrap()
}

pub fn switch() -> Switch {
    switch_with(SwitchSettings::default(), WEB)
}

pub fn rule(
    direction: Direction,
    action: Action,
    protocol: Protocol,
    ports: PortRange,
    remote: &[Prefix],
) -> FirewallRule {
    FirewallRule {
        direction,
        protocol,
        ports,
        remote: remote.to_vec(),
        action,
    }
}

/// Ingress: allow TCP to `port` from anywhere.
pub fn allow_tcp_in(port: u16) -> FirewallRule {
    rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Tcp,
        PortRange::single(port),
        &[Prefix::ANY],
    )
}

pub fn subnet() -> Prefix {
    Prefix {
        addr: ip(0),
        len: 24,
    }
}

pub fn set_firewall(sw: &mut Switch, port: PortId, rules: Option<Vec<FirewallRule>>) {
    sw.apply(ConfigCommand::SetPortFirewall { port, rules })
        .unwrap();
}

/// A TCP segment (20-byte header, no data) between VMs `from` and `to` (by MAC and address
/// number).
pub fn tcp(from: (u8, u16), to: (u8, u16), flags: u8) -> Vec<u8> {
    eth(
        mac(to.0),
        mac(from.0),
        EtherType::IPV4,
        &ipv4_payload(
            ip(from.0),
            ip(to.0),
            ipv4::protocol::TCP,
            &tcp_header(from.1, to.1, flags),
        ),
    )
}

/// A UDP datagram between VMs, to MAC `dst` (a VM's or broadcast) and address `dst_ip`.
pub fn udp_to(
    from: (u8, u16),
    dst: MacAddr,
    (dst_ip, dst_port): (Ipv4Addr, u16),
    src_ip: Ipv4Addr,
) -> Vec<u8> {
    udp_ports(
        dst,
        mac(from.0),
        (src_ip, from.1),
        (dst_ip, dst_port),
        b"datagram",
    )
}

pub fn udp(from: (u8, u16), to: (u8, u16)) -> Vec<u8> {
    udp_to(from, mac(to.0), (ip(to.0), to.1), ip(from.0))
}

/// An ICMP echo request (type 8) or reply (type 0) with identifier `id`.
pub fn echo(from: u8, to: u8, ty: u8, id: u16) -> Vec<u8> {
    eth(
        mac(to),
        mac(from),
        EtherType::IPV4,
        &ipv4_payload(ip(from), ip(to), ipv4::protocol::ICMP, &icmp_echo(ty, id)),
    )
}

/// `inner` on blue, encapsulated by host B's switch.
pub fn from_b(inner: &[u8]) -> Vec<u8> {
    vxlan(VTEP_B, VTEP_A, 5001, inner)
}

/// A TCP handshake from VM `client` (port `sport`) to VM 1's port `dport`, the client on
/// `client_port`; asserts every segment arrives.
pub fn connect_to_web(
    sw: &mut Switch,
    now: Duration,
    client_port: PortId,
    client: (u8, u16),
    dport: u16,
) {
    assert_eq!(
        send(sw, now, client_port, &tcp(client, (1, dport), SYN)),
        [(WEB, None)]
    );
    assert_eq!(
        send(sw, now, WEB, &tcp((1, dport), client, SYN_ACK)),
        [(client_port, None)]
    );
    assert_eq!(
        send(sw, now, client_port, &tcp(client, (1, dport), ACK)),
        [(WEB, None)]
    );
}

/// A TCP/IPv4 frame of 4000 bytes from the host port (43210) to VM 1 (5201) as a Linux
/// sender hands it to a tap with offloads: one large segment to cut at 1380 bytes.
pub fn gso_frame() -> (Vec<u8>, Offload) {
    let body: Vec<u8> = (0..4000).map(|i| i as u8).collect();
    let frame = offload_tcp_frame(
        mac(1),
        mac(4),
        (ip(4), 43210),
        (ip(1), 5201),
        PSH_ACK,
        &body,
    );
    (frame, tcp_gso(1380))
}
