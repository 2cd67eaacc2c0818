//! Arbitrary bytes as frames from every port kind into a configured switch, and into every wire
//! parser. Nothing may panic; every frame sent must fit its port's MTU; every frame forwarded
//! from the VM port with port security has that port's MAC as its source. The host port has a
//! firewall (a few rules of every kind, a small connection table): a frame is checked at most
//! once at that port (one hit, one drop, one log record at most), the table stays within its
//! limits, and the port's connections come back whole from an export and import.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, PortRange, Prefix, Protocol,
};
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, DhcpConfig, DropReason, Location, NetworkId, PortConfig, PortId,
    PortKind, PortPolicy, Segment, StormControl, Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{self, arp, dhcp, ethernet, ipv4, udp, vlan, vxlan};
use vinfra_switch::wire::{
    ArpRepr, DhcpRepr, EthernetRepr, Ipv4Repr, MacAddr, UdpRepr, VlanId, Vni, VxlanRepr,
};

const UPLINK: PortId = PortId(100);
const TRUNK: PortId = PortId(101);
/// The VM port with port security (and a MAC limit and storm control).
const SECURED: PortId = PortId(1);
/// Its MAC: the only source it may send from.
const SECURED_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
/// The host port with a firewall.
const FIREWALLED: PortId = PortId(2);
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
    Switch::with_commands(SwitchSettings::default(), commands).unwrap()
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
    // Unchecked views on any buffer must not panic either.
    let _ = ipv4::Packet::new_unchecked(data).payload();
    let _ = udp::Packet::new_unchecked(data).payload();
    let _ = ethernet::Frame::new_unchecked(data).payload();
    let d = dhcp::Packet::new_unchecked(data);
    let _ = (d.xid(), d.client_mac(), d.options(), d.magic());
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
    switch.process(now, [(port, frame)], tx);
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
            d.inner
        } else {
            &bytes[..]
        };
        if port == SECURED && out.port != port {
            let (eth, _) = EthernetRepr::parse(inner).expect("valid frame");
            assert_eq!(
                eth.src, SECURED_MAC,
                "port security lets only its MAC through"
            );
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
