//! DSCP marking through the core: the IPv4 packets of a port with a mark leave with that DSCP
//! (ECN kept, header checksum valid) on every copy, segments of a large TCP segment included;
//! other ports' packets keep theirs; an encapsulated overlay frame's outer header copies the
//! inner packet's DSCP with ECN 0.

mod common;

use std::time::Duration;

use common::*;
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, ConfigError, DropReason, Location, NetworkId, PortId, PortKind,
    PortPolicy, Segment, Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{decapsulate, ethernet, ipv4, EtherType, MacAddr, Offload, VlanId, Vni};

const BLUE: NetworkId = NetworkId(1);
/// A VM port marked with [`EF`].
const MARKED: PortId = PortId(1);
/// A VM port without a mark.
const PLAIN: PortId = PortId(2);
/// A host tap with offloads.
const TAP: PortId = PortId(3);
/// Another host tap with offloads.
const TAP_2: PortId = PortId(4);
const NOW: Duration = Duration::from_secs(1);
/// Expedited forwarding.
const EF: u8 = 46;
/// AF11, what the guests send.
const AF11: u8 = 10;
/// ECN: ECT(1).
const ECT1: u8 = 0b01;

/// Blue (overlay): MARKED (EF), PLAIN, TAP and TAP_2 (offloads) with MACs 1, 2, 3 and 5; MAC 4
/// at VTEP B, which is in the flood list.
fn switch() -> Switch {
    let mut s = Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Overlay {
                    vni: Vni::new(5001).unwrap(),
                },
            },
            add_port(
                UPLINK,
                PortKind::VxlanUplink {
                    local_ip: VTEP_A,
                    local_mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
                    gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xb])),
                },
                1550,
            ),
            add_port(MARKED, PortKind::Vm { network: BLUE }, 1450),
            add_port(PLAIN, PortKind::Vm { network: BLUE }, 1450),
            add_port(TAP, PortKind::Host { network: BLUE }, 1500),
            add_port(TAP_2, PortKind::Host { network: BLUE }, 1500),
            ConfigCommand::SetFloodList {
                network: BLUE,
                vteps: vec![VTEP_B],
            },
            ConfigCommand::SetPortDscp {
                port: MARKED,
                mark: Some(EF),
            },
        ],
    )
    .unwrap();
    for (m, location) in [
        (1, Location::Port(MARKED)),
        (2, Location::Port(PLAIN)),
        (3, Location::Port(TAP)),
        (4, Location::Vtep(VTEP_B)),
        (5, Location::Port(TAP_2)),
    ] {
        s.apply(ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(m),
            location,
        })
        .unwrap();
    }
    for p in [TAP, TAP_2] {
        s.set_port_offloads(p, true).unwrap();
    }
    s
}

/// `frame` (an IPv4 frame) with its DSCP and ECN byte set to `dscp` and `ecn`, checksum filled.
fn with_tos(mut frame: Vec<u8>, dscp: u8, ecn: u8) -> Vec<u8> {
    let mut p = ipv4::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    p.set_dscp_ecn(dscp << 2 | ecn);
    p.fill_checksum();
    frame
}

/// A UDP frame from MAC `from` to MAC `to` (addresses 10.0.0.x of the same numbers), DSCP AF11,
/// ECT(1).
fn udp(from: u8, to: u8) -> Vec<u8> {
    with_tos(
        udp_frame(mac(to), mac(from), ip(from), ip(to), b"quality of service"),
        AF11,
        ECT1,
    )
}

/// The DSCP and ECN of an untagged IPv4 frame, after checking its header checksum (summed
/// independently).
fn tos(frame: &[u8]) -> (u8, u8) {
    let ip = &frame[ethernet::HEADER_LEN..];
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    assert_eq!(ones_sum(&ip[..header_len]), 0xffff, "IPv4 header checksum");
    (ip[1] >> 2, ip[1] & 0x03)
}

/// `got` is `sent` but for the DSCP and the header checksum.
fn same_but_tos(got: &[u8], sent: &[u8]) {
    let mut a = got.to_vec();
    let mut b = sent.to_vec();
    for f in [&mut a, &mut b] {
        f[15] = 0;
        f[24..26].copy_from_slice(&[0, 0]);
    }
    assert_eq!(a, b);
}

/// The outer DSCP and ECN of an underlay frame (its IPv4 header checked by decapsulation) and
/// the inner frame.
fn outer(frame: &[u8]) -> ((u8, u8), Vec<u8>) {
    let inner = decapsulate(frame).expect("valid VXLAN").inner.to_vec();
    let tos = frame[ethernet::HEADER_LEN + 1];
    ((tos >> 2, tos & 0x03), inner)
}

#[test]
fn a_marked_port_s_ipv4_gets_its_dscp_with_ecn_kept() {
    let mut s = switch();
    let sent = udp(1, 2);
    let out = run_offload(&mut s, MARKED, &sent, Offload::NONE);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PLAIN);
    assert_eq!(tos(&out[0].3), (EF, ECT1));
    same_but_tos(&out[0].3, &sent);
    // The checksum is the one a full sum gives.
    let mut full = out[0].3.clone();
    ipv4::Packet::new_unchecked(&mut full[14..]).fill_checksum();
    assert_eq!(full, out[0].3);

    // Every ECN value is kept, whatever DSCP the guest sent.
    for (dscp, ecn) in [(0, 0), (63, 3), (EF, 2), (1, 1)] {
        let out = run_offload(
            &mut s,
            MARKED,
            &with_tos(udp(1, 2), dscp, ecn),
            Offload::NONE,
        );
        assert_eq!(tos(&out[0].3), (EF, ecn));
    }

    // An IPv4 header with options.
    let mut opts = udp(1, 2);
    opts.splice(34..34, [0x94, 0x04, 0, 0]);
    opts[14] = 0x46;
    let total = u16::from_be_bytes([opts[16], opts[17]]) + 4;
    opts[16..18].copy_from_slice(&total.to_be_bytes());
    let opts = with_tos(opts, AF11, ECT1);
    let out = run_offload(&mut s, MARKED, &opts, Offload::NONE);
    assert_eq!(out.len(), 1, "{:?}", s.port_counters(MARKED));
    assert_eq!(tos(&out[0].3), (EF, ECT1));
    same_but_tos(&out[0].3, &opts);
}

#[test]
fn other_ports_keep_the_guest_s_dscp() {
    let mut s = switch();
    let sent = udp(2, 1);
    let out = run_offload(&mut s, PLAIN, &sent, Offload::NONE);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, MARKED);
    // Marking is on what the port sends, not on what it receives.
    assert_eq!(out[0].3, sent);
    assert_eq!(tos(&out[0].3), (AF11, ECT1));
}

#[test]
fn every_copy_of_a_flooded_frame_is_marked() {
    let mut s = switch();
    let sent = with_tos(
        udp_frame(MacAddr::BROADCAST, mac(1), ip(1), ip(255), b"everyone"),
        AF11,
        0,
    );
    let out = run_offload(&mut s, MARKED, &sent, Offload::NONE);
    let ports: Vec<_> = out.iter().map(|o| (o.0, o.1)).collect();
    assert_eq!(
        ports,
        [
            (PLAIN, None),
            (TAP, None),
            (TAP_2, None),
            (UPLINK, Some(VTEP_B))
        ]
    );
    for o in &out[..3] {
        assert_eq!(tos(&o.3), (EF, 0));
        same_but_tos(&o.3, &sent);
    }
    let (outer_tos, inner) = outer(&out[3].3);
    assert_eq!(outer_tos, (EF, 0));
    assert_eq!(tos(&inner), (EF, 0));
    same_but_tos(&inner, &sent);
}

#[test]
fn the_outer_header_copies_the_inner_dscp_with_ecn_zero() {
    let mut s = switch();
    // Marked: the outer header has the mark.
    let out = run_offload(&mut s, MARKED, &udp(1, 4), Offload::NONE);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Some(VTEP_B));
    let (outer_tos, inner) = outer(&out[0].3);
    assert_eq!(outer_tos, (EF, 0));
    assert_eq!(tos(&inner), (EF, ECT1));

    // Trusted: the outer header has the guest's DSCP, ECN 0.
    for (dscp, ecn) in [(AF11, ECT1), (63, 3), (0, 3)] {
        let sent = with_tos(udp(2, 4), dscp, ecn);
        let out = run_offload(&mut s, PLAIN, &sent, Offload::NONE);
        let (outer_tos, inner) = outer(&out[0].3);
        assert_eq!(outer_tos, (dscp, 0));
        assert_eq!(inner, sent);
    }

    // Not IPv4: outer DSCP 0.
    let arp = arp_request(mac(2), ip(2), ip(9));
    let out = run_offload(&mut s, PLAIN, &arp, Offload::NONE);
    assert_eq!(out.last().unwrap().1, Some(VTEP_B));
    let (outer_tos, inner) = outer(&out.last().unwrap().3);
    assert_eq!((outer_tos, inner), ((0, 0), arp));
}

#[test]
fn a_tagged_copy_for_the_trunk_is_marked() {
    let green = NetworkId(2);
    let vlan_vm = PortId(6);
    let mut s = switch();
    for c in [
        ConfigCommand::AddNetwork {
            id: green,
            segment: Segment::Vlan {
                vid: VlanId::new(7).unwrap(),
            },
        },
        add_port(TRUNK, PortKind::VlanTrunk, 1500),
        add_port(vlan_vm, PortKind::Vm { network: green }, 1500),
        ConfigCommand::SetPortDscp {
            port: vlan_vm,
            mark: Some(EF),
        },
    ] {
        s.apply(c).unwrap();
    }
    // To an unknown MAC: flooded to the trunk, tagged, the mark behind the tag.
    let sent = udp(6, 7);
    let out = run_offload(&mut s, vlan_vm, &sent, Offload::NONE);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, TRUNK);
    let untagged = untag(&out[0].3);
    assert_eq!(tos(&untagged), (EF, ECT1));
    same_but_tos(&untagged, &sent);
}

#[test]
fn frames_other_than_ipv4_are_not_touched() {
    let mut s = switch();
    // ARP from the marked port, flooded: every copy as sent; the VTEP's outer DSCP 0.
    let arp = arp_request(mac(1), ip(1), ip(9));
    let out = run_offload(&mut s, MARKED, &arp, Offload::NONE);
    assert_eq!(out.len(), 4);
    for o in &out[..3] {
        assert_eq!(o.3, arp);
    }
    assert_eq!(outer(&out[3].3), ((0, 0), arp.clone()));
    // Another EtherType (IPv6) whose second byte would be the TOS in IPv4.
    let v6 = eth(
        mac(2),
        mac(1),
        EtherType(0x86dd),
        &[0x60, 0xab, 0xcd, 0xef, 0, 0, 0, 0],
    );
    let out = run_offload(&mut s, MARKED, &v6, Offload::NONE);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].3, v6);
}

#[test]
fn a_gso_frame_s_segments_and_the_whole_frame_carry_the_mark() {
    let mut s = switch();
    s.apply(ConfigCommand::SetPortDscp {
        port: TAP,
        mark: Some(EF),
    })
    .unwrap();
    let body = data(4000);
    let gso = |to: u8| {
        let frame = offload_tcp_frame(mac(to), mac(3), (ip(3), 43210), (ip(to), 5201), 0x18, &body);
        with_tos(frame, AF11, ECT1)
    };

    // Cut for a VM port: every segment marked, ECN kept, checksums valid.
    let sent = gso(2);
    let out = run_offload(&mut s, TAP, &sent, tcp_gso(1398));
    assert_eq!(out.len(), 3);
    let expected = cut(&sent, 1398);
    for (o, segment) in out.iter().zip(&expected) {
        assert_eq!((o.0, o.2), (PLAIN, Offload::NONE));
        assert_eq!(tos(&o.3), (EF, ECT1));
        same_but_tos(&o.3, segment);
    }

    // Whole to an offload tap: the header marked, the metadata kept.
    let sent = gso(5);
    let out = run_offload(&mut s, TAP, &sent, tcp_gso(1398));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].2), (TAP_2, tcp_gso(1398)));
    assert_eq!(tos(&out[0].3), (EF, ECT1));
    same_but_tos(&out[0].3, &sent);
    // Cut later (by the receiving stack), its segments inherit the header.
    for segment in cut(&out[0].3, 1398) {
        assert_eq!(tos(&segment), (EF, ECT1));
    }

    // Cut and encapsulated for a VTEP: each segment and its outer header.
    let sent = gso(4);
    let out = run_offload(&mut s, TAP, &sent, tcp_gso(1398));
    assert_eq!(out.len(), 3);
    for (o, segment) in out.iter().zip(cut(&sent, 1398)) {
        let (outer_tos, inner) = outer(&o.3);
        assert_eq!(outer_tos, (EF, 0));
        assert_eq!(tos(&inner), (EF, ECT1));
        same_but_tos(&inner, &segment);
    }
}

#[test]
fn marked_segments_still_join_for_an_offload_port() {
    let mut s = switch();
    let body = data(6000);
    let frame = offload_tcp_frame(mac(3), mac(1), (ip(1), 43210), (ip(3), 5201), 0x18, &body);
    let segments = cut(&with_tos(frame, AF11, ECT1), 1000);
    let mut tx = TxBatch::new();
    s.process(
        NOW,
        segments.iter().map(|f| (MARKED, f.as_slice())),
        &mut tx,
    );
    let out: Vec<_> = tx
        .iter()
        .map(|(f, b)| (f.port, f.offload, b.to_vec()))
        .collect();
    assert_eq!(out.len(), 1, "one joined frame");
    assert_eq!((out[0].0, out[0].1), (TAP, tcp_gso(1000)));
    assert_eq!(tos(&out[0].2), (EF, ECT1));
    assert_eq!(&out[0].2[66..], &body[..]);
}

#[test]
fn the_mark_comes_after_port_security() {
    let mut s = switch();
    s.apply(ConfigCommand::SetPortPolicy {
        port: MARKED,
        policy: PortPolicy {
            allowed: Some(vec![AllowedAddress {
                mac: mac(1),
                ip: ip(1),
                prefix_len: 32,
            }]),
            ..PortPolicy::default()
        },
    })
    .unwrap();
    // Port security checks what the guest sent; the mark changes nothing it decides.
    let out = run_offload(&mut s, MARKED, &udp(1, 2), Offload::NONE);
    assert_eq!(tos(&out[0].3), (EF, ECT1));
    let spoofed = with_tos(udp_frame(mac(2), mac(1), ip(7), ip(2), b"x"), AF11, 0);
    assert!(run_offload(&mut s, MARKED, &spoofed, Offload::NONE).is_empty());
    let drops = s.port_counters(MARKED).unwrap().drops;
    assert_eq!(drops.get(DropReason::SpoofedIp), 1);
}

#[test]
fn the_mark_is_configured_per_access_port_and_goes_with_it() {
    let mut s = switch();
    assert_eq!(s.port_dscp(MARKED), Some(EF));
    assert_eq!(s.port_dscp(PLAIN), None);
    let set = |s: &mut Switch, port: PortId, mark: Option<u8>| {
        s.apply(ConfigCommand::SetPortDscp { port, mark })
    };
    // Above 63: refused, the mark stays.
    assert_eq!(set(&mut s, MARKED, Some(64)), Err(ConfigError::BadDscp(64)));
    assert_eq!(
        set(&mut s, MARKED, Some(255)),
        Err(ConfigError::BadDscp(255))
    );
    assert_eq!(s.port_dscp(MARKED), Some(EF));
    // Only VM and host ports, existing ones.
    assert_eq!(
        set(&mut s, UPLINK, Some(EF)),
        Err(ConfigError::NotAccessPort(UPLINK))
    );
    assert_eq!(
        set(&mut s, PortId(77), Some(EF)),
        Err(ConfigError::NoSuchPort(PortId(77)))
    );
    assert_eq!(
        set(&mut s, PortId(77), None),
        Err(ConfigError::NoSuchPort(PortId(77)))
    );
    // 0 and 63 are marks like any other.
    set(&mut s, PLAIN, Some(0)).unwrap();
    let out = run_offload(&mut s, PLAIN, &udp(2, 1), Offload::NONE);
    assert_eq!(tos(&out[0].3), (0, ECT1));
    set(&mut s, PLAIN, Some(63)).unwrap();
    let out = run_offload(&mut s, PLAIN, &udp(2, 1), Offload::NONE);
    assert_eq!(tos(&out[0].3), (63, ECT1));
    // None trusts the guest again.
    set(&mut s, PLAIN, None).unwrap();
    assert_eq!(s.port_dscp(PLAIN), None);
    let sent = udp(2, 1);
    assert_eq!(run_offload(&mut s, PLAIN, &sent, Offload::NONE)[0].3, sent);

    // Removed and added again, the port has no mark.
    s.apply(ConfigCommand::RemovePort(MARKED)).unwrap();
    assert_eq!(s.port_dscp(MARKED), None);
    s.apply(add_port(MARKED, PortKind::Vm { network: BLUE }, 1450))
        .unwrap();
    s.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(1),
        location: Location::Port(MARKED),
    })
    .unwrap();
    assert_eq!(s.port_dscp(MARKED), None);
    let sent = udp(1, 2);
    assert_eq!(run_offload(&mut s, MARKED, &sent, Offload::NONE)[0].3, sent);
}
