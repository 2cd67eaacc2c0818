//! Arbitrary bytes as frames from every port kind into a configured switch, and into every wire
//! parser. Nothing may panic; every frame sent must fit its port's MTU; every frame forwarded
//! from the VM port with port security has that port's MAC as its source (or a gateway's: what
//! the router sends for it). The host port has a
//! firewall (a few rules of every kind, a small connection table): a frame is checked at most
//! once at that port (one hit, one drop, one log record at most), the table stays within its
//! limits, and the port's connections come back whole from an export and import. Router 1 has
//! gateways on both networks (a default route via a next hop it must ask for, another via a
//! known one): frames to a gateway are routed or answered on the sender's host only, a gateway
//! MAC is never learned, every IPv4 packet from a gateway has a valid header, and one frame
//! makes at most one routed packet, echo reply or ICMP error. Router 1 has an uplink on VLAN 82
//! whose edge this switch is (a floating IP, 198.51.100.0/24 through it): packets to it are
//! source-NATed out of the trunk, replies and transit packets translated and routed; only the
//! edge sends from the uplink's MAC, only on the trunk, with valid headers; the session table
//! stays within its size.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, PortRange, Prefix, Protocol,
};
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, DhcpConfig, DropReason, Edge, IcmpError, Location, NetworkId,
    PortConfig, PortId, PortKind, PortPolicy, RouterCounters, RouterId, Segment, StormControl,
    Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{self, arp, dhcp, ethernet, icmp, ipv4, udp, vlan, vxlan};
use vinfra_switch::wire::{
    ArpRepr, DhcpRepr, EthernetRepr, IcmpRepr, Ipv4Repr, MacAddr, UdpRepr, VlanId, Vni, VxlanRepr,
};

const UPLINK: PortId = PortId(100);
const TRUNK: PortId = PortId(101);
/// The VM port with port security (and a MAC limit and storm control).
const SECURED: PortId = PortId(1);
/// Its MAC: the only source it may send from.
const SECURED_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
/// The DSCP of the secured port's IPv4 packets.
const MARK: u8 = 46;
/// The host port with a firewall.
const FIREWALLED: PortId = PortId(2);
/// The router of both networks.
const ROUTER: RouterId = RouterId(1);
/// The gateways of network 1 (10.0.0.254/24) and network 2 (10.0.1.254/24): MAC, address.
const GATEWAYS: [(NetworkId, MacAddr, Ipv4Addr); 2] = [
    (
        NetworkId(1),
        MacAddr([0x02, 0x76, 0x72, 0, 0, 1]),
        Ipv4Addr::new(10, 0, 0, 254),
    ),
    (
        NetworkId(2),
        MacAddr([0x02, 0x76, 0x72, 0, 0, 2]),
        Ipv4Addr::new(10, 0, 1, 254),
    ),
];
/// The external network (VLAN 82, 203.0.113.0/24) of router 1's uplink, of which this switch
/// is the edge.
const EXTERNAL: NetworkId = NetworkId(3);
/// The uplink's MAC and address.
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0x76, 0x72, 0x01, 0, 1]);
const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Router 1's transit VNI.
const TRANSIT: u32 = 0xff_0001;
/// The NAT table's size.
const MAX_SESSIONS: usize = 16;

/// Port number, and the largest frame it may send.
const PORTS: [(PortId, usize); 6] = [
    (PortId(1), 1450 + 14),
    (PortId(2), 1450 + 14),
    (PortId(3), 1500 + 14),
    (UPLINK, 1500 + 14),
    (TRUNK, 1500 + 18),
    (PortId(7), 0), // not a port
];

fn configured() -> Switch {
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let mac = |b| MacAddr([0x52, 0x54, 0, 0, 0, b]);
    let commands = vec![
        ConfigCommand::SetSettings(SwitchSettings {
            mac_ageing: Duration::from_secs(5),
            mac_learn_limit: 64,
            conntrack_max_entries: 64,
            conntrack_zone_max_entries: 32,
            nat_max_sessions: MAX_SESSIONS,
        }),
        ConfigCommand::AddNetwork {
            id: NetworkId(1),
            segment: Segment::Overlay {
                vni: Vni::new(5001).unwrap(),
            },
        },
        ConfigCommand::AddNetwork {
            id: NetworkId(2),
            segment: Segment::Vlan {
                vid: VlanId::new(100).unwrap(),
            },
        },
        ConfigCommand::AddPort(PortConfig {
            id: UPLINK,
            kind: PortKind::VxlanUplink {
                local_ip: local,
                local_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
            },
            mtu: 1500,
        }),
        ConfigCommand::AddPort(PortConfig {
            id: TRUNK,
            kind: PortKind::VlanTrunk,
            mtu: 1500,
        }),
        ConfigCommand::AddPort(PortConfig {
            id: PortId(1),
            kind: PortKind::Vm {
                network: NetworkId(1),
            },
            mtu: 1450,
        }),
        ConfigCommand::AddPort(PortConfig {
            id: PortId(2),
            kind: PortKind::Host {
                network: NetworkId(1),
            },
            mtu: 1450,
        }),
        ConfigCommand::AddPort(PortConfig {
            id: PortId(3),
            kind: PortKind::Vm {
                network: NetworkId(2),
            },
            mtu: 1500,
        }),
        ConfigCommand::SetFloodList {
            network: NetworkId(1),
            vteps: vec![
                local,
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(192, 0, 2, 3),
            ],
        },
        ConfigCommand::AddMacEntry {
            network: NetworkId(1),
            mac: mac(1),
            location: Location::Port(PortId(1)),
        },
        ConfigCommand::AddMacEntry {
            network: NetworkId(1),
            mac: mac(9),
            location: Location::Vtep(Ipv4Addr::new(192, 0, 2, 2)),
        },
        ConfigCommand::AddArpEntry {
            network: NetworkId(1),
            ip: Ipv4Addr::new(10, 0, 0, 9),
            mac: mac(9),
        },
        ConfigCommand::AddArpEntry {
            network: NetworkId(2),
            ip: Ipv4Addr::new(10, 0, 0, 3),
            mac: mac(3),
        },
        ConfigCommand::AddArpEntry {
            network: NetworkId(1),
            ip: Ipv4Addr::new(10, 0, 0, 1),
            mac: mac(1),
        },
        // VM port 1: port security (its address, an allowed pair, a prefix), a MAC limit that
        // leaves room for nothing else, storm control that the 100-ms clock overruns.
        ConfigCommand::SetPortPolicy {
            port: SECURED,
            policy: PortPolicy {
                allowed: Some(vec![
                    AllowedAddress {
                        mac: SECURED_MAC,
                        ip: Ipv4Addr::new(10, 0, 0, 1),
                        prefix_len: 32,
                    },
                    AllowedAddress {
                        mac: SECURED_MAC,
                        ip: Ipv4Addr::new(10, 0, 0, 100),
                        prefix_len: 32,
                    },
                    AllowedAddress {
                        mac: SECURED_MAC,
                        ip: Ipv4Addr::new(10, 1, 0, 0),
                        prefix_len: 16,
                    },
                ]),
                mac_limit: Some(1),
                storm: Some(StormControl {
                    frames_per_sec: 5,
                    burst: 3,
                }),
            },
        },
        // VM port 3 (VLAN): a MAC limit and storm control, no port security.
        ConfigCommand::SetPortPolicy {
            port: PortId(3),
            policy: PortPolicy {
                allowed: None,
                mac_limit: Some(3),
                storm: Some(StormControl {
                    frames_per_sec: 2,
                    burst: 1,
                }),
            },
        },
        // VM port 1 marks its IPv4 packets with DSCP 46 (expedited forwarding).
        ConfigCommand::SetPortDscp {
            port: SECURED,
            mark: Some(MARK),
        },
        // The host port: a firewall with rules of every kind (an allowed TCP range, UDP from a
        // prefix, ICMP, an overriding deny, an egress deny, another protocol).
        ConfigCommand::SetPortFirewall {
            port: FIREWALLED,
            rules: Some(firewall_rules()),
        },
        // VXLAN only from two of the hosts (the seeds come from 192.0.2.2); mac 9 may move to
        // the other.
        ConfigCommand::SetUnderlayPeers(Some(vec![
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 3),
        ])),
        ConfigCommand::ExpectMacMove {
            network: NetworkId(1),
            mac: mac(9),
            to: Some(Ipv4Addr::new(192, 0, 2, 3)),
        },
        // Router 1: gateways on both networks, a default route via a next hop nobody
        // registered (the router asks for it) and 192.0.2.0/24 via VM 9 on another host.
        ConfigCommand::AddRouter(ROUTER),
        ConfigCommand::AddRoute {
            router: ROUTER,
            prefix: Prefix::ANY,
            via: Ipv4Addr::new(10, 0, 1, 9),
        },
        ConfigCommand::AddRoute {
            router: ROUTER,
            prefix: Prefix {
                addr: Ipv4Addr::new(192, 0, 2, 0),
                len: 24,
            },
            via: Ipv4Addr::new(10, 0, 0, 9),
        },
        ConfigCommand::AddArpEntry {
            network: NetworkId(2),
            ip: Ipv4Addr::new(10, 0, 1, 3),
            mac: mac(3),
        },
        // The switch answers DHCP on network 1.
        ConfigCommand::SetDhcp {
            network: NetworkId(1),
            config: Some(DhcpConfig {
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
                server: None,
                mtu: None,
                lease_secs: 600,
            }),
        },
    ];
    let interfaces =
        GATEWAYS
            .iter()
            .map(|&(network, mac, addr)| ConfigCommand::SetRouterInterface {
                router: ROUTER,
                network,
                addr,
                prefix_len: 24,
                mac,
                mtu: None,
            });
    // Router 1's uplink on VLAN 82, this switch its edge: 198.51.100.0/24 through the
    // upstream router at 203.0.113.254 (registered), a floating IP for 10.0.0.5.
    let uplink = [
        ConfigCommand::AddNetwork {
            id: EXTERNAL,
            segment: Segment::Vlan {
                vid: VlanId::new(82).unwrap(),
            },
        },
        ConfigCommand::SetRouterUplink {
            router: ROUTER,
            network: EXTERNAL,
            addr: UPLINK_IP,
            prefix_len: 24,
            mac: UPLINK_MAC,
            edge: Edge::Local,
            transit_vni: TRANSIT,
            mtu: None,
        },
        ConfigCommand::AddRoute {
            router: ROUTER,
            prefix: Prefix {
                addr: Ipv4Addr::new(198, 51, 100, 0),
                len: 24,
            },
            via: Ipv4Addr::new(203, 0, 113, 254),
        },
        ConfigCommand::AddArpEntry {
            network: EXTERNAL,
            ip: Ipv4Addr::new(203, 0, 113, 254),
            mac: mac(0xfe),
        },
        ConfigCommand::AddFloatingIp {
            router: ROUTER,
            external: Ipv4Addr::new(203, 0, 113, 50),
            internal: Ipv4Addr::new(10, 0, 0, 5),
        },
    ];
    Switch::with_commands(
        SwitchSettings::default(),
        commands.into_iter().chain(interfaces).chain(uplink),
    )
    .unwrap()
}

/// A gateway's MAC or the uplink's: what only the router sends from.
fn is_gateway(mac: MacAddr) -> bool {
    mac == UPLINK_MAC || GATEWAYS.iter().any(|&(_, m, _)| m == mac)
}

/// The NAT counters that let a frame from the trunk or the uplink be routed here: packets
/// translated back, transit packets.
fn nat_inbound(c: &RouterCounters) -> u64 {
    c.nat.map_or(0, |n| n.dnat_packets + n.from_transit_packets)
}

/// What one frame may add to the router's counters: one routed packet, echo reply or ICMP
/// error (sent or over the rate) at most.
fn router_events(c: &RouterCounters) -> u64 {
    let icmp: u64 = IcmpError::ALL.iter().map(|&k| c.icmp(k)).sum();
    c.routed_packets + c.echo_replies + icmp + c.icmp_rate_limited
}

/// Checks a frame from a gateway: IPv4 with a valid header (routed: the TTL decremented with
/// its checksum; written by the router: ICMP with a valid checksum), or ARP.
fn check_from_gateway(frame: &[u8]) {
    let (eth, offset) = EthernetRepr::parse(frame).expect("valid frame");
    let payload = &frame[offset..];
    match eth.ethertype {
        wire::EtherType::IPV4 => {
            let ip = ipv4::Packet::new_checked(payload).expect("valid IPv4");
            let repr = Ipv4Repr::parse(&ip).expect("a valid IPv4 header");
            // What the router writes from its addresses; from the uplink's also the echo
            // requests of VMs it translated, whose checksums stay as the VMs wrote them.
            let from_router = GATEWAYS.iter().any(|&(_, _, a)| a == repr.src_addr)
                || (repr.src_addr == UPLINK_IP
                    && ip.payload().first() != Some(&icmp::msg_type::ECHO_REQUEST));
            if repr.protocol == ipv4::protocol::ICMP && from_router {
                let m = icmp::Packet::new_checked(ip.payload()).expect("ICMP header");
                assert!(m.verify_checksum(), "the router's ICMP checksum");
                assert!(IcmpRepr::parse(&m).is_ok());
            }
        }
        wire::EtherType::ARP => {
            ArpRepr::parse(&arp::Packet::new_checked(payload).expect("room")).expect("valid ARP");
        }
        other => panic!("EtherType {other:?} from a gateway"),
    }
}

fn firewall_rules() -> Vec<FirewallRule> {
    let rule = |direction, action, protocol, first, last, remote: &[(u8, u8)]| FirewallRule {
        direction,
        protocol,
        ports: PortRange { first, last },
        remote: remote
            .iter()
            .map(|&(last_octet, len)| Prefix {
                addr: Ipv4Addr::new(10, 0, 0, last_octet),
                len,
            })
            .collect(),
        action,
    };
    use Action::{Allow, Deny};
    use Direction::{Egress, Ingress};
    vec![
        rule(Ingress, Allow, Protocol::Tcp, 20, 443, &[(0, 0)]),
        rule(Ingress, Allow, Protocol::Udp, 0, u16::MAX, &[(0, 24)]),
        rule(
            Ingress,
            Allow,
            Protocol::Icmp,
            0,
            u16::MAX,
            &[(1, 32), (9, 32)],
        ),
        rule(Ingress, Deny, Protocol::Tcp, 22, 22, &[(1, 32)]),
        rule(Egress, Deny, Protocol::Udp, 53, 53, &[(0, 0)]),
        rule(Ingress, Allow, Protocol::Other(47), 0, u16::MAX, &[(0, 16)]),
    ]
}

/// The firewall's drops on the firewalled port, all reasons.
fn firewall_drops(switch: &Switch) -> u64 {
    let drops = switch
        .port_counters(FIREWALLED)
        .expect("the port exists")
        .drops;
    [
        DropReason::FirewallDenied,
        DropReason::FirewallDefaultDeny,
        DropReason::ConntrackInvalid,
        DropReason::ConntrackFull,
    ]
    .iter()
    .map(|&r| drops.get(r))
    .sum()
}

static STATE: Mutex<Option<(Switch, TxBatch, u64)>> = Mutex::new(None);

fn parsers(data: &[u8]) {
    let _ = EthernetRepr::parse(data);
    if let Ok(f) = ethernet::Frame::new_checked(data) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload());
    }
    if let Ok(t) = vlan::Packet::new_checked(data) {
        let _ = (t.tci(), t.ethertype(), t.payload());
    }
    if let Ok(p) = arp::Packet::new_checked(data) {
        let _ = ArpRepr::parse(&p);
    }
    if let Ok(p) = ipv4::Packet::new_checked(data) {
        let _ = (Ipv4Repr::parse(&p), p.payload());
    }
    if let Ok(p) = udp::Packet::new_checked(data) {
        let _ = (
            UdpRepr::parse(&p),
            p.payload(),
            p.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
        );
    }
    if let Ok(p) = vxlan::Packet::new_checked(data) {
        let _ = (VxlanRepr::parse(&p), p.payload());
    }
    if let Ok(d) = wire::decapsulate(data) {
        assert!(d.inner.len() <= data.len());
    }
    if let Ok(p) = dhcp::Packet::new_checked(data) {
        if let Ok(repr) = DhcpRepr::parse(&p) {
            // What parses re-emits and parses to the same message.
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut dhcp::Packet::new_unchecked(&mut buf[..]))
                .expect("room");
            let again = DhcpRepr::parse(&dhcp::Packet::new_checked(&buf[..]).expect("room"));
            assert_eq!(again, Ok(repr));
        }
    }
    for opt in dhcp::Options::new(data) {
        let _ = opt;
    }
    if let Ok(p) = icmp::Packet::new_checked(data) {
        let _ = (p.echo_ident(), p.next_hop_mtu(), p.data());
        if let Ok(repr) = IcmpRepr::parse(&p) {
            // What parses re-emits to a message that parses the same.
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut icmp::Packet::new_unchecked(&mut buf[..]))
                .expect("room");
            let again = icmp::Packet::new_checked(&buf[..]).expect("room");
            assert_eq!(IcmpRepr::parse(&again), Ok(repr));
        }
    }
    // Unchecked views on any buffer must not panic either.
    let _ = ipv4::Packet::new_unchecked(data).payload();
    let _ = udp::Packet::new_unchecked(data).payload();
    let _ = ethernet::Frame::new_unchecked(data).payload();
    let d = dhcp::Packet::new_unchecked(data);
    let _ = (d.xid(), d.client_mac(), d.options(), d.magic());
}

/// A frame without its 802.1Q tag.
fn untagged(frame: &[u8]) -> Vec<u8> {
    if frame.get(12..14) == Some(&[0x81, 0x00][..]) {
        let mut f = frame[..12].to_vec();
        f.extend_from_slice(&frame[16..]);
        return f;
    }
    frame.to_vec()
}

fuzz_target!(|data: &[u8]| {
    parsers(data);
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let (switch, tx, clock) = guard.get_or_insert_with(|| (configured(), TxBatch::new(), 0));
    // A persistent switch, so learning and ageing state carries across inputs.
    *clock += 1;
    let now = Duration::from_millis(*clock * 100);
    let (port, _) = PORTS[usize::from(selector) % PORTS.len()];
    tx.clear();
    let hits_before: u64 = switch
        .firewall_hits(FIREWALLED)
        .expect("the port has a firewall")
        .iter()
        .sum();
    let drops_before = firewall_drops(switch);
    let router_before = switch.router_counters(ROUTER).expect("the router");
    switch.process(now, [(port, frame)], tx);
    let router_after = switch.router_counters(ROUTER).expect("the router");
    assert!(router_events(&router_after) <= router_events(&router_before) + 1);
    if port == UPLINK || port == TRUNK {
        // Only the sender's host routes, but for what the edge translates back from the trunk
        // or takes from another host on the transit VNI; the edge answers pings to the uplink.
        let nat = nat_inbound(&router_after) - nat_inbound(&router_before);
        assert!(router_after.routed_packets <= router_before.routed_packets + nat);
        if port == UPLINK {
            assert_eq!(router_after.echo_replies, router_before.echo_replies);
        }
    }
    let nat = router_after.nat.expect("the uplink");
    assert!(nat.edge);
    assert!(switch.nat_sessions() <= MAX_SESSIONS);
    assert_eq!(nat.sessions, switch.nat_sessions() as u64);
    for &(network, gw, _) in &GATEWAYS {
        assert_eq!(
            switch.lookup(network, gw, now),
            None,
            "a gateway MAC learned"
        );
    }
    assert_eq!(switch.lookup(EXTERNAL, UPLINK_MAC, now), None, "the uplink MAC learned");
    let hits: Vec<u64> = switch
        .firewall_hits(FIREWALLED)
        .expect("the port has a firewall");
    assert_eq!(hits.len(), firewall_rules().len());
    // One frame is evaluated at most once per port: from the port, or to it.
    assert!(hits.iter().sum::<u64>() <= hits_before + 1);
    assert!(firewall_drops(switch) <= drops_before + 1);
    let log = switch.take_firewall_log();
    assert!(log.len() <= 1);
    for record in &log {
        assert_eq!(record.port, FIREWALLED);
    }
    let ct = switch.conntrack_counters();
    assert!(ct.entries <= 32);
    assert_eq!(switch.port_connections(FIREWALLED), ct.entries);
    for (out, bytes) in tx.iter() {
        let (_, max) = PORTS
            .iter()
            .find(|(p, _)| *p == out.port)
            .expect("sent to a real port");
        assert!(
            bytes.len() <= *max,
            "{} bytes to {:?}",
            bytes.len(),
            out.port
        );
        let inner = if out.port == UPLINK {
            let d = wire::decapsulate(bytes).expect("the switch emits valid VXLAN");
            assert_eq!(Some(d.dst_ip), out.vtep);
            // The outer header carries the inner IPv4 packet's DSCP (0 for anything else) and
            // ECN 0.
            let (eth, offset) = EthernetRepr::parse(d.inner).expect("valid inner frame");
            let inner_dscp = match eth.ethertype {
                wire::EtherType::IPV4 => ipv4::Packet::new_unchecked(&d.inner[offset..]).dscp(),
                _ => 0,
            };
            let outer_tos = ipv4::Packet::new_unchecked(&bytes[ethernet::HEADER_LEN..]).dscp_ecn();
            assert_eq!(outer_tos, inner_dscp << 2);
            d.inner
        } else {
            &bytes[..]
        };
        if port == SECURED && out.port != port {
            // Every IPv4 packet from the marked port leaves with the mark and a valid header.
            let (eth, offset) = EthernetRepr::parse(inner).expect("valid frame");
            if eth.ethertype == wire::EtherType::IPV4 {
                let ip = ipv4::Packet::new_checked(&inner[offset..]).expect("valid IPv4");
                assert!(Ipv4Repr::parse(&ip).is_ok(), "a valid IPv4 header");
                assert_eq!(ip.dscp(), MARK);
            }
        }
        let (eth, _) = EthernetRepr::parse(inner).expect("valid frame");
        if eth.src == UPLINK_MAC && port != UPLINK && port != TRUNK {
            // From a local port, only the edge sends from the uplink's MAC, only on the
            // external network. (Like a gateway MAC, the uplink's is the router's on every
            // host: another host's frames, from the uplink or the trunk, are forwarded as they
            // came.)
            assert_eq!(out.port, TRUNK);
            check_from_gateway(&untagged(inner));
        }
        if is_gateway(eth.src) && port != UPLINK && port != TRUNK {
            // From a local port, only the router sends from a gateway MAC (another host's
            // routed frames, from the uplink, are forwarded as they came).
            check_from_gateway(inner);
        }
        if port == SECURED && out.port != port {
            // Its own frames, or what the router sends for them.
            assert!(
                eth.src == SECURED_MAC || is_gateway(eth.src),
                "port security lets only its MAC through"
            );
        }
        if out.port == port && is_gateway(eth.src) {
            // What the router answers (ARP, echo replies, ICMP errors) or routes back into the
            // sender's network; checked above.
            continue;
        }
        if out.port == port {
            // Only the switch's own ARP and DHCP replies go back where the request came from.
            let (eth, offset) = EthernetRepr::parse(bytes).expect("valid reply");
            if eth.ethertype == wire::EtherType::IPV4 {
                let ip = ipv4::Packet::new_checked(&bytes[offset..]).expect("valid IPv4");
                let ip_repr = Ipv4Repr::parse(&ip).expect("valid IPv4 header");
                let u = udp::Packet::new_checked(ip.payload()).expect("valid UDP");
                assert_eq!((u.src_port(), u.dst_port()), (67, 68));
                assert!(u.verify_checksum(ip_repr.src_addr, ip_repr.dst_addr));
                let reply = DhcpRepr::parse(&dhcp::Packet::new_checked(u.payload()).expect("room"))
                    .expect("valid DHCP reply");
                assert_eq!(reply.op, wire::DhcpOp::Reply);
                assert_eq!(reply.client_mac, eth.dst);
                continue;
            }
            assert_eq!(eth.ethertype, wire::EtherType::ARP);
            let reply = ArpRepr::parse(&arp::Packet::new_checked(&bytes[offset..]).expect("room"));
            assert_eq!(reply.map(|r| r.operation), Ok(wire::ArpOperation::Reply));
        }
    }
    if selector & 0x80 != 0 {
        switch.expire(now);
    }
    if selector & 0x40 != 0 && selector & 0x3f == 0 {
        // Now and then the connections go to another switch and back (a migration).
        let entries = switch.export_connections(FIREWALLED, now);
        let count = entries.len();
        switch
            .apply(ConfigCommand::SetPortFirewall {
                port: FIREWALLED,
                rules: None,
            })
            .expect("a host port");
        assert_eq!(switch.port_connections(FIREWALLED), 0);
        switch
            .apply(ConfigCommand::SetPortFirewall {
                port: FIREWALLED,
                rules: Some(firewall_rules()),
            })
            .expect("valid rules");
        switch
            .apply(ConfigCommand::ImportConnections {
                port: FIREWALLED,
                entries,
            })
            .expect("room for what was there");
        assert_eq!(switch.port_connections(FIREWALLED), count);
    }
});
