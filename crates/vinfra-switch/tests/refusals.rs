//! What the switch refuses: every kind of malformed frame, dropped and counted with its reason
//! (and every prefix of valid frames, on every port kind, handled without a panic), and
//! configuration commands that would break what it relies on, each refused with its error and
//! changing nothing.

mod common;

use common::firewall::{allow_tcp_in, connect_to_web, rule, set_firewall, switch, PLAIN, WEB};
use common::hosts::*;
use common::*;
use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRuleError, PortRange, Prefix, Protocol,
};
use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, DropReason, Location, NetworkId, PortConfig, PortId, PortKind,
    Segment, Switch, TxBatch,
};
use vinfra_switch::wire::{self, ArpOperation, EtherType, MacAddr};

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let (mut a, _) = two_hosts();
    let good_ip = ipv4_frame(mac(2), mac(1), ip(1), ip(2), 20);
    let good_udp = udp_frame(mac(2), mac(1), ip(1), ip(2), b"data");

    let mut bad_checksum = good_ip.clone();
    bad_checksum[14 + 10] ^= 0x55;
    let mut bad_version = good_ip.clone();
    bad_version[14] = 0x65;
    let mut bad_udp_len = good_udp.clone();
    bad_udp_len[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&3u16.to_be_bytes());
    let mut bad_arp = arp_request(mac(1), ip(1), ip(2));
    bad_arp[14 + 1] = 6; // hardware type 6
    let mut qinq = good_ip.clone();
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    let mut multicast_src = good_ip.clone();
    multicast_src[6] = 0x01;
    let oversized = ipv4_frame(mac(2), mac(1), ip(1), ip(2), 1431);

    let vm_cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty", vec![], DropReason::Runt),
        ("runt", good_ip[..13].to_vec(), DropReason::Runt),
        (
            "truncated ipv4",
            good_ip[..14 + 19].to_vec(),
            DropReason::TruncatedHeader,
        ),
        (
            "ipv4 shorter than total length",
            good_ip[..good_ip.len() - 1].to_vec(),
            DropReason::TruncatedHeader,
        ),
        (
            "truncated udp",
            good_udp[..14 + 20 + 7].to_vec(),
            DropReason::TruncatedHeader,
        ),
        (
            "truncated arp",
            arp_request(mac(1), ip(1), ip(2))[..40].to_vec(),
            DropReason::TruncatedHeader,
        ),
        ("bad ip checksum", bad_checksum, DropReason::BadIpChecksum),
        ("bad ip version", bad_version, DropReason::BadIpHeader),
        ("bad udp length", bad_udp_len, DropReason::BadUdpLength),
        ("bad arp", bad_arp, DropReason::BadArp),
        ("qinq", qinq, DropReason::QinqUnsupported),
        (
            "802.1q on access",
            tagged(mac(2), mac(1), 5, EtherType::IPV4, &good_ip[14..]),
            DropReason::UnexpectedVlanTag,
        ),
        (
            "truncated 802.1q",
            tagged(mac(2), mac(1), 5, EtherType::IPV4, &[])[..16].to_vec(),
            DropReason::TruncatedHeader,
        ),
        ("multicast source", multicast_src, DropReason::BadSourceMac),
        ("oversized", oversized, DropReason::Oversized),
    ];
    for (name, frame, reason) in &vm_cases {
        let before = a.port_counters(PortId(1)).unwrap().drops.get(*reason);
        let out = run(&mut a, t(0), PortId(1), frame);
        assert!(out.is_empty(), "{name}: forwarded");
        let after = a.port_counters(PortId(1)).unwrap().drops.get(*reason);
        assert_eq!(after, before + 1, "{name}: not counted as {reason}");
    }
    assert_eq!(
        a.port_counters(PortId(1)).unwrap().drops.total(),
        vm_cases.len() as u64
    );
    assert_eq!(a.port_counters(UPLINK).unwrap().tx_packets, 0);

    // Underlay frames.
    let encap = |src_ip, dst_ip, v: u32, inner: &[u8]| vxlan(src_ip, dst_ip, v, inner);
    let good = encap(VTEP_B, VTEP_A, 5001, &good_ip);
    let mut bad_flags = good.clone();
    bad_flags[wire::encap::UDP_PAYLOAD_OFFSET] = 0x00;
    let mut bad_outer_checksum = good.clone();
    bad_outer_checksum[14 + 11] ^= 1;
    let mut not_vxlan = good.clone();
    not_vxlan[34 + 2..34 + 4].copy_from_slice(&53u16.to_be_bytes());
    let mut fragment = good.clone();
    fragment[14 + 6] = 0x20;
    wire::ipv4::Packet::new_unchecked(&mut fragment[14..]).fill_checksum();
    let mut bad_udp_length = good.clone();
    bad_udp_length[34 + 4..34 + 6].copy_from_slice(&4u16.to_be_bytes());
    let mut oversized_outer = encap(
        VTEP_B,
        VTEP_A,
        5001,
        &ipv4_frame(mac(1), mac(2), ip(2), ip(1), 1431),
    );
    oversized_outer.truncate(1515);

    let uplink_cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("runt", good[..10].to_vec(), DropReason::Runt),
        (
            "truncated outer ipv4",
            good[..14 + 12].to_vec(),
            DropReason::TruncatedHeader,
        ),
        (
            "truncated outer udp",
            good[..34 + 5].to_vec(),
            DropReason::TruncatedHeader,
        ),
        ("bad vxlan flags", bad_flags, DropReason::BadVxlanFlags),
        (
            "unknown vni",
            encap(VTEP_B, VTEP_A, 7777, &good_ip),
            DropReason::UnknownVni,
        ),
        (
            "wrong vtep",
            encap(VTEP_B, VTEP_C, 5001, &good_ip),
            DropReason::WrongVtep,
        ),
        (
            "bad outer checksum",
            bad_outer_checksum,
            DropReason::BadIpChecksum,
        ),
        ("not vxlan", not_vxlan, DropReason::NotVxlan),
        ("fragment", fragment, DropReason::IpFragment),
        ("bad udp length", bad_udp_length, DropReason::BadUdpLength),
        (
            "truncated inner ethernet",
            encap(VTEP_B, VTEP_A, 5001, &good_ip[..8]),
            DropReason::TruncatedHeader,
        ),
        (
            "truncated inner ipv4",
            encap(VTEP_B, VTEP_A, 5001, &good_ip[..20]),
            DropReason::TruncatedHeader,
        ),
        (
            "tagged inner",
            encap(
                VTEP_B,
                VTEP_A,
                5001,
                &tagged(mac(1), mac(2), 3, EtherType::IPV4, &good_ip[14..]),
            ),
            DropReason::UnexpectedVlanTag,
        ),
        ("oversized", oversized_outer, DropReason::Oversized),
    ];
    for (name, frame, reason) in &uplink_cases {
        let before = a.port_counters(UPLINK).unwrap().drops.get(*reason);
        let out = run(&mut a, t(0), UPLINK, frame);
        assert!(out.is_empty(), "{name}: forwarded");
        let after = a.port_counters(UPLINK).unwrap().drops.get(*reason);
        assert_eq!(after, before + 1, "{name}: not counted as {reason}");
    }
    // A good one still goes through.
    let to_vm1 = ipv4_frame(mac(1), mac(2), ip(2), ip(1), 20);
    let out = run(&mut a, t(0), UPLINK, &encap(VTEP_B, VTEP_A, 5001, &to_vm1));
    assert_eq!(out, vec![(PortId(1), None, to_vm1)]);
    // Errors inside a known VNI are counted on its network too.
    let blue = a.network_counters(BLUE).unwrap().traffic.drops;
    assert_eq!(blue.get(DropReason::UnexpectedVlanTag), 2);
    assert_eq!(blue.get(DropReason::UnknownVni), 0);

    // A frame for a port the switch does not have.
    assert!(run(&mut a, t(0), PortId(4242), &good_ip).is_empty());
    assert_eq!(a.switch_drops().get(DropReason::NoPort), 1);
    // The snapshot carries every counter.
    let snap = a.snapshot();
    assert_eq!(snap.ports.len(), 3);
    assert_eq!(snap.networks.len(), 2);
    assert_eq!(snap.switch_drops.get(DropReason::NoPort), 1);
}

#[test]
fn every_prefix_of_every_frame_on_every_port_is_safe() {
    let (mut a, _) = two_hosts();
    let mut v = vlan_switch();
    let mut frames = vec![
        arp_request(mac(1), ip(1), ip(2)),
        udp_frame(mac(2), mac(1), ip(1), ip(2), b"abc"),
        tagged(
            mac(6),
            mac(50),
            200,
            EtherType::ARP,
            &arp_payload(
                ArpOperation::Request,
                mac(50),
                ip(50),
                MacAddr([0; 6]),
                ip(6),
            ),
        ),
    ];
    let underlay = vxlan(VTEP_B, VTEP_A, 5001, &frames[1]);
    frames.push(underlay);
    let mut tx = TxBatch::new();
    for frame in &frames {
        for len in 0..=frame.len() {
            for port in [1, 3, 100, 999] {
                a.process(t(0), [(PortId(port), &frame[..len])], &mut tx);
            }
            for port in [5, 6, 101] {
                v.process(t(0), [(PortId(port), &frame[..len])], &mut tx);
            }
            tx.clear();
        }
    }
}

#[test]
fn configuration_is_checked() {
    let mut s = vlan_switch();
    let err = |s: &mut Switch, c| s.apply(c).unwrap_err();
    assert_eq!(
        err(
            &mut s,
            ConfigCommand::AddNetwork {
                id: NetworkId(3),
                segment: Segment::Vlan { vid: vid(100) }
            }
        ),
        ConfigError::VlanInUse {
            vid: vid(100),
            network: BLUE
        }
    );
    assert_eq!(
        err(
            &mut s,
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Overlay { vni: vni(1) }
            }
        ),
        ConfigError::NetworkExists(BLUE)
    );
    assert_eq!(
        err(&mut s, ConfigCommand::RemoveNetwork(BLUE)),
        ConfigError::NetworkInUse(BLUE)
    );
    assert_eq!(err(&mut s, vm(5, RED)), ConfigError::PortExists(PortId(5)));
    assert_eq!(
        err(&mut s, vm(7, NetworkId(99))),
        ConfigError::NoSuchNetwork(NetworkId(99))
    );
    assert_eq!(
        err(&mut s, vm(70_000, RED)),
        ConfigError::PortIdTooLarge(PortId(70_000))
    );
    assert_eq!(
        err(&mut s, host_port(8, RED, 60)),
        ConfigError::MtuTooSmall(60)
    );
    assert!(matches!(
        err(
            &mut s,
            ConfigCommand::AddPort(PortConfig {
                id: PortId(9),
                kind: PortKind::VlanTrunk,
                mtu: 1500
            })
        ),
        ConfigError::UplinkExists {
            existing: TRUNK,
            ..
        }
    ));
    assert_eq!(
        err(
            &mut s,
            ConfigCommand::SetFloodList {
                network: BLUE,
                vteps: vec![VTEP_A]
            }
        ),
        ConfigError::NotOverlay(BLUE)
    );
    assert_eq!(
        err(
            &mut s,
            ConfigCommand::AddMacEntry {
                network: BLUE,
                mac: mac(1),
                location: Location::Port(PortId(6))
            }
        ),
        ConfigError::PortNotInNetwork {
            port: PortId(6),
            network: BLUE
        }
    );
    assert_eq!(
        err(
            &mut s,
            ConfigCommand::AddMacEntry {
                network: BLUE,
                mac: MacAddr::BROADCAST,
                location: Location::Port(PortId(5))
            }
        ),
        ConfigError::NotUnicast(MacAddr::BROADCAST)
    );
    // The trunk is attached to every VLAN network.
    s.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(1),
        location: Location::Port(TRUNK),
    })
    .unwrap();

    let mut o = Switch::default();
    o.apply(ConfigCommand::AddNetwork {
        id: BLUE,
        segment: Segment::Overlay { vni: vni(9) },
    })
    .unwrap();
    assert_eq!(
        err(
            &mut o,
            ConfigCommand::AddNetwork {
                id: RED,
                segment: Segment::Overlay { vni: vni(9) }
            }
        ),
        ConfigError::VniInUse {
            vni: vni(9),
            network: BLUE
        }
    );
    // An overlay port of MTU 1500, then an uplink that cannot carry it.
    o.apply(host_port(1, BLUE, 1500)).unwrap();
    assert!(matches!(
        err(&mut o, uplink(VTEP_A, UNDERLAY_MAC_A)),
        ConfigError::MtuExceedsOverlay {
            port: PortId(1),
            max: 1450,
            ..
        }
    ));
    // After removing the port, the network can go too.
    o.apply(ConfigCommand::RemovePort(PortId(1))).unwrap();
    o.apply(ConfigCommand::RemoveNetwork(BLUE)).unwrap();
    o.apply(ConfigCommand::AddNetwork {
        id: RED,
        segment: Segment::Overlay { vni: vni(9) },
    })
    .unwrap();
}

#[test]
fn firewall_configuration_is_checked() {
    let mut sw = switch();
    set_firewall(&mut sw, WEB, Some(vec![allow_tcp_in(80)]));
    assert_eq!(
        sw.apply(ConfigCommand::SetPortFirewall {
            port: UPLINK,
            rules: Some(vec![]),
        }),
        Err(ConfigError::NotAccessPort(UPLINK))
    );
    assert_eq!(
        sw.apply(ConfigCommand::SetPortFirewall {
            port: PortId(55),
            rules: None,
        }),
        Err(ConfigError::NoSuchPort(PortId(55)))
    );
    let bad = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Tcp,
        PortRange {
            first: 90,
            last: 80,
        },
        &[Prefix::ANY],
    );
    let refused = sw.apply(ConfigCommand::SetPortFirewall {
        port: WEB,
        rules: Some(vec![allow_tcp_in(443), bad]),
    });
    assert_eq!(
        refused,
        Err(ConfigError::BadFirewallRules {
            port: WEB,
            source: FirewallRuleError::PortRange {
                rule: 1,
                first: 90,
                last: 80
            },
        })
    );
    let err = refused.unwrap_err();
    assert!(std::error::Error::source(&err).is_some());
    assert!(!err.to_string().contains("90-80"), "{err}");
    // The refused command changed nothing.
    assert_eq!(sw.firewall_rules(WEB), Some(&[allow_tcp_in(80)][..]));
    connect_to_web(&mut sw, t(1), PLAIN, (3, 40000), 80);
    assert_eq!(sw.port_connections(WEB), 1);
    // Removing the port removes its connections.
    sw.apply(ConfigCommand::RemovePort(WEB)).unwrap();
    assert_eq!(sw.port_connections(WEB), 0);
    assert_eq!(sw.conntrack_counters().removed, 1);
}
