//! The forwarding core end to end: switches connected by passing their frames to each other
//! (overlay, VLAN trunk, learning and ageing, split horizon, ARP suppression, MTU). MAC
//! mobility is in `mobility.rs`; malformed frames and refused configuration in `refusals.rs`.

mod common;

use std::net::Ipv4Addr;

use common::hosts::*;
use common::*;
use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, DropReason, Location, PortConfig, PortId, PortKind, Segment,
    Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{self, arp, decapsulate, ArpOperation, ArpRepr, EtherType, MacAddr};

#[test]
fn overlay_vms_on_two_hosts_exchange_arp_and_ipv4_and_red_sees_nothing() {
    let (mut a, mut b) = two_hosts();
    let now = t(1);

    // VM 1 asks for VM 2's address: broadcast, head-end replicated to host B only (A is
    // itself in its flood list and is skipped).
    let request = arp_request(mac(1), ip(1), ip(2));
    let out_a = run(&mut a, now, PortId(1), &request);
    assert_eq!(out_a.len(), 1);
    let (port, vtep, underlay) = &out_a[0];
    assert_eq!((*port, *vtep), (UPLINK, Some(VTEP_B)));
    let d = decapsulate(underlay).unwrap();
    assert_eq!(d.vni, vni(5001));
    assert_eq!((d.src_ip, d.dst_ip), (VTEP_A, VTEP_B));
    assert_eq!((d.src_mac, d.dst_mac), (UNDERLAY_MAC_A, UNDERLAY_MAC_B));
    assert_eq!(d.inner, &request[..]);

    // Host B delivers it to VM 2 only, unchanged, and does not send it back to any VTEP.
    let out_b = carry(&out_a, &mut b, VTEP_B, now);
    assert_eq!(out_b, vec![(PortId(2), None, request.clone())]);

    // VM 2 answers; the static entry sends it straight to host A, which delivers it to VM 1.
    let reply = eth(
        mac(1),
        mac(2),
        EtherType::ARP,
        &arp_payload(ArpOperation::Reply, mac(2), ip(2), mac(1), ip(1)),
    );
    let out_b = run(&mut b, now, PortId(2), &reply);
    assert_eq!(out_b.len(), 1);
    assert_eq!(out_b[0].1, Some(VTEP_A));
    let out_a = carry(&out_b, &mut a, VTEP_A, now);
    assert_eq!(out_a, vec![(PortId(1), None, reply.clone())]);

    // IPv4 both ways.
    let ping = ipv4_frame(mac(2), mac(1), ip(1), ip(2), 56);
    let at_b = carry(&run(&mut a, now, PortId(1), &ping), &mut b, VTEP_B, now);
    assert_eq!(at_b, vec![(PortId(2), None, ping.clone())]);
    let pong = ipv4_frame(mac(1), mac(2), ip(2), ip(1), 56);
    let at_a = carry(&run(&mut b, now, PortId(2), &pong), &mut a, VTEP_A, now);
    assert_eq!(at_a, vec![(PortId(1), None, pong.clone())]);

    // Red, with the same addresses, saw nothing on either host.
    for s in [&a, &b] {
        let red = s.network_counters(RED).unwrap();
        assert_eq!(red.traffic.rx_packets, 0);
        assert_eq!(red.traffic.tx_packets, 0);
    }
    assert_eq!(a.port_counters(PortId(3)).unwrap().tx_packets, 0);
    assert_eq!(b.port_counters(PortId(4)).unwrap().tx_packets, 0);

    // Blue counted everything: on A, 3 frames in from VM 1 and 2 from the uplink.
    let blue_a = a.network_counters(BLUE).unwrap().traffic;
    assert_eq!(blue_a.rx_packets, 4);
    assert_eq!(blue_a.tx_packets, 4);
    assert_eq!(blue_a.drops.total(), 0);
    let vm1 = a.port_counters(PortId(1)).unwrap();
    assert_eq!((vm1.rx_packets, vm1.tx_packets), (2, 2));
    assert_eq!(vm1.rx_bytes, (request.len() + ping.len()) as u64);
    let up = a.port_counters(UPLINK).unwrap();
    assert_eq!((up.rx_packets, up.tx_packets), (2, 2));
    assert_eq!(
        up.tx_bytes,
        (request.len() + ping.len() + 2 * wire::encap::OVERHEAD) as u64
    );
}

#[test]
fn a_red_broadcast_stays_in_red() {
    let (mut a, mut b) = two_hosts();
    let request = arp_request(mac(3), ip(1), ip(2));
    let out_a = run(&mut a, t(1), PortId(3), &request);
    assert_eq!(out_a.len(), 1);
    assert_eq!(decapsulate(&out_a[0].2).unwrap().vni, vni(5002));
    let out_b = carry(&out_a, &mut b, VTEP_B, t(1));
    assert_eq!(out_b, vec![(PortId(4), None, request)]);
    assert_eq!(b.network_counters(BLUE).unwrap().traffic.rx_packets, 0);
    assert_eq!(b.port_counters(PortId(2)).unwrap().tx_packets, 0);
}

#[test]
fn learning_across_the_overlay() {
    let (mut a, mut b) = two_hosts();
    // A MAC the control plane does not know (say, a nested guest behind VM 2) is learned on A
    // as living at VTEP B, and VM 1's unicast to it goes to B alone.
    let stranger = MacAddr([0x02, 0x99, 0, 0, 0, 1]);
    let hello = ipv4_frame(MacAddr::BROADCAST, stranger, ip(9), ip(1), 8);
    let out_b = run(&mut b, t(1), PortId(2), &hello);
    carry(&out_b, &mut a, VTEP_A, t(1));
    assert_eq!(a.lookup(BLUE, stranger, t(1)), Some(Location::Vtep(VTEP_B)));
    let to_stranger = ipv4_frame(stranger, mac(1), ip(1), ip(9), 8);
    let out = run(&mut a, t(2), PortId(1), &to_stranger);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Some(VTEP_B));
    assert_eq!(
        a.network_counters(BLUE).unwrap().flooded,
        1,
        "only the broadcast flooded"
    );
}

#[test]
fn split_horizon() {
    // Host B with VTEPs A and C in its flood list.
    let mut cmds = overlay_networks();
    cmds.extend(vtep_macs());
    cmds.extend([
        uplink(VTEP_B, UNDERLAY_MAC_B),
        vm(2, BLUE),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_A, VTEP_C],
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(7),
            location: Location::Vtep(VTEP_C),
        },
    ]);
    let mut b = Switch::with_commands(SwitchSettings::default(), cmds).unwrap();
    let encap_from_a = |inner: &[u8]| vxlan(VTEP_A, VTEP_B, 5001, inner);

    // A broadcast from A reaches the local VM only, never C.
    let bcast = arp_request(mac(1), ip(1), ip(2));
    let out = run(&mut b, t(1), UPLINK, &encap_from_a(&bcast));
    assert_eq!(out, vec![(PortId(2), None, bcast)]);

    // Unicast from A to a MAC at C is dropped, not relayed.
    let to_c = ipv4_frame(mac(7), mac(1), ip(1), ip(7), 8);
    assert!(run(&mut b, t(1), UPLINK, &encap_from_a(&to_c)).is_empty());
    let drops = b.port_counters(UPLINK).unwrap().drops;
    assert_eq!(drops.get(DropReason::SplitHorizon), 1);
    assert_eq!(
        b.network_counters(BLUE)
            .unwrap()
            .traffic
            .drops
            .get(DropReason::SplitHorizon),
        1
    );

    // The same broadcast from the local VM goes to both A and C.
    let bcast = arp_request(mac(2), ip(2), ip(1));
    let out = run(&mut b, t(1), PortId(2), &bcast);
    let vteps: Vec<_> = out.iter().map(|o| o.1).collect();
    assert_eq!(vteps, vec![Some(VTEP_A), Some(VTEP_C)]);
}

#[test]
fn arp_suppression_answers_locally() {
    let (mut a, _) = two_hosts();
    a.apply(ConfigCommand::AddArpEntry {
        network: BLUE,
        ip: ip(2),
        mac: mac(2),
    })
    .unwrap();
    let request = arp_request(mac(1), ip(1), ip(2));
    let out = run(&mut a, t(1), PortId(1), &request);
    assert_eq!(out.len(), 1, "answered, not flooded: {out:?}");
    let (port, vtep, reply) = &out[0];
    assert_eq!((*port, *vtep), (PortId(1), None));
    let eth = wire::ethernet::Frame::new_checked(&reply[..]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (mac(1), mac(2)));
    assert_eq!(eth.ethertype(), EtherType::ARP);
    let repr = ArpRepr::parse(&arp::Packet::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(
        repr,
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: mac(2),
            source_protocol_addr: ip(2),
            target_hardware_addr: mac(1),
            target_protocol_addr: ip(1),
        }
    );
    let blue = a.network_counters(BLUE).unwrap();
    assert_eq!(blue.arp_suppressed, 1);
    assert_eq!(blue.flooded, 0);
    assert_eq!(a.port_counters(UPLINK).unwrap().tx_packets, 0);

    // Not answered, flooded instead: an unregistered address, a gratuitous ARP, and a probe
    // from the address's owner (duplicate address detection).
    for frame in [
        arp_request(mac(1), ip(1), ip(77)),
        arp_request(mac(1), ip(1), ip(1)),
        arp_request(mac(2), Ipv4Addr::UNSPECIFIED, ip(2)),
    ] {
        let out = run(&mut a, t(1), PortId(1), &frame);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Some(VTEP_B));
    }
    assert_eq!(a.network_counters(BLUE).unwrap().arp_suppressed, 1);

    // Removed entry: flooded again.
    a.apply(ConfigCommand::RemoveArpEntry {
        network: BLUE,
        ip: ip(2),
    })
    .unwrap();
    assert_eq!(run(&mut a, t(1), PortId(1), &request)[0].1, Some(VTEP_B));
}

#[test]
fn vlan_trunk_tags_and_classifies() {
    let mut s = vlan_switch();
    // Port 5 (VLAN 100) broadcasts: the trunk gets it tagged 100; red's port 6 gets nothing.
    let bcast = arp_request(mac(5), ip(5), ip(1));
    let out = run(&mut s, t(1), PortId(5), &bcast);
    assert_eq!(out.len(), 1);
    let (port, _, frame) = &out[0];
    assert_eq!(*port, TRUNK);
    assert_eq!(&frame[12..16], &[0x81, 0x00, 0x00, 100]);
    assert_eq!(untag(frame), bcast);

    // From the trunk: VLAN 200 reaches port 6 untagged, VLAN 100 reaches port 5.
    let to6 = ipv4_frame(mac(6), mac(50), ip(50), ip(6), 20);
    let payload = &to6[14..];
    let in200 = tagged(mac(6), mac(50), 200, EtherType::IPV4, payload);
    let out = run(&mut s, t(1), TRUNK, &in200);
    // mac(6) is unknown: flooded within VLAN 200 only, i.e. to port 6, never back to the trunk.
    assert_eq!(out, vec![(PortId(6), None, to6.clone())]);
    let in100 = tagged(mac(5), mac(50), 100, EtherType::IPV4, payload);
    let out = run(&mut s, t(1), TRUNK, &in100);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PortId(5));

    // The trunk endpoint was learned per VLAN: port 6's reply goes back tagged 200.
    let reply = ipv4_frame(mac(50), mac(6), ip(6), ip(50), 20);
    let out = run(&mut s, t(1), PortId(6), &reply);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, TRUNK);
    assert_eq!(&out[0].2[12..16], &[0x81, 0x00, 0x00, 200]);
    assert_eq!(s.network_counters(RED).unwrap().flooded, 1);

    // Drops on the trunk.
    let trunk_drops = |s: &Switch, r| s.port_counters(TRUNK).unwrap().drops.get(r);
    assert!(run(
        &mut s,
        t(1),
        TRUNK,
        &tagged(mac(6), mac(50), 300, EtherType::IPV4, payload)
    )
    .is_empty());
    assert_eq!(trunk_drops(&s, DropReason::UnknownVlan), 1);
    assert!(run(
        &mut s,
        t(1),
        TRUNK,
        &tagged(mac(6), mac(50), 0, EtherType::IPV4, payload)
    )
    .is_empty());
    assert_eq!(trunk_drops(&s, DropReason::UnknownVlan), 2);
    assert!(run(&mut s, t(1), TRUNK, &to6).is_empty());
    assert_eq!(trunk_drops(&s, DropReason::UntaggedOnTrunk), 1);
    let mut qinq = in200.clone();
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    assert!(run(&mut s, t(1), TRUNK, &qinq).is_empty());
    let mut double = in200.clone();
    double[16..18].copy_from_slice(&[0x81, 0x00]);
    assert!(run(&mut s, t(1), TRUNK, &double).is_empty());
    assert_eq!(trunk_drops(&s, DropReason::QinqUnsupported), 2);
    assert!(run(&mut s, t(1), TRUNK, &in200[..16]).is_empty());
    assert_eq!(trunk_drops(&s, DropReason::TruncatedHeader), 1);
    // A truncated IPv4 header inside VLAN 200 is counted on red too.
    assert!(run(&mut s, t(1), TRUNK, &in200[..30]).is_empty());
    assert_eq!(trunk_drops(&s, DropReason::TruncatedHeader), 2);
    assert_eq!(
        s.network_counters(RED)
            .unwrap()
            .traffic
            .drops
            .get(DropReason::TruncatedHeader),
        1
    );
    // Tagged frames on an access port are refused.
    assert!(run(&mut s, t(1), PortId(6), &in200).is_empty());
    assert_eq!(
        s.port_counters(PortId(6))
            .unwrap()
            .drops
            .get(DropReason::UnexpectedVlanTag),
        1
    );
}

#[test]
fn learning_ageing_and_moves() {
    let settings = SwitchSettings {
        mac_ageing: t(300),
        mac_learn_limit: 3,
        ..SwitchSettings::default()
    };
    let mut s = Switch::with_commands(
        settings,
        [
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Overlay { vni: vni(1) },
            },
            host_port(1, BLUE, 1500),
            host_port(2, BLUE, 1500),
            host_port(3, BLUE, 1500),
        ],
    )
    .unwrap();
    let ports = |out: &Out| out.iter().map(|o| o.0 .0).collect::<Vec<_>>();

    // Unknown destination: flooded to the other two ports; the source is learned.
    let f = ipv4_frame(mac(9), mac(1), ip(1), ip(9), 8);
    assert_eq!(ports(&run(&mut s, t(0), PortId(1), &f)), vec![2, 3]);
    assert_eq!(
        s.lookup(BLUE, mac(1), t(0)),
        Some(Location::Port(PortId(1)))
    );

    // Known destination: unicast to port 1 only.
    let back = ipv4_frame(mac(1), mac(2), ip(2), ip(1), 8);
    assert_eq!(ports(&run(&mut s, t(100), PortId(2), &back)), vec![1]);
    // Still known at exactly the ageing time, forgotten after it.
    assert_eq!(ports(&run(&mut s, t(300), PortId(2), &back)), vec![1]);
    assert_eq!(ports(&run(&mut s, t(301), PortId(2), &back)), vec![1, 3]);
    assert_eq!(s.lookup(BLUE, mac(1), t(301)), None);
    // Expiry frees mac(1) but keeps mac(2), refreshed at 301.
    assert_eq!(s.expire(t(301)), 1);
    assert_eq!(s.mac_entries(BLUE).len(), 1);

    // A move: mac(2) now shows up on port 3.
    let moved = ipv4_frame(mac(9), mac(2), ip(2), ip(9), 8);
    run(&mut s, t(302), PortId(3), &moved);
    let to2 = ipv4_frame(mac(2), mac(1), ip(1), ip(2), 8);
    assert_eq!(ports(&run(&mut s, t(303), PortId(1), &to2)), vec![3]);

    // Destination behind the ingress port: filtered and counted.
    let hairpin = ipv4_frame(mac(1), mac(4), ip(4), ip(1), 8);
    assert!(run(&mut s, t(304), PortId(1), &hairpin).is_empty());
    assert_eq!(
        s.port_counters(PortId(1))
            .unwrap()
            .drops
            .get(DropReason::SamePort),
        1
    );

    // The table holds 3 learned addresses (mac 1, 2, 4): a fourth source is not learned.
    let fifth = ipv4_frame(mac(1), mac(5), ip(5), ip(1), 8);
    run(&mut s, t(305), PortId(2), &fifth);
    assert_eq!(s.lookup(BLUE, mac(5), t(305)), None);
    assert_eq!(s.network_counters(BLUE).unwrap().learning_refused, 1);

    // Static entries beat learning and never age.
    s.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(8),
        location: Location::Port(PortId(2)),
    })
    .unwrap();
    run(
        &mut s,
        t(306),
        PortId(3),
        &ipv4_frame(mac(1), mac(8), ip(8), ip(1), 8),
    );
    assert_eq!(
        s.lookup(BLUE, mac(8), t(1_000_000)),
        Some(Location::Port(PortId(2)))
    );

    // Removing a port forgets what was behind it.
    s.apply(ConfigCommand::RemovePort(PortId(3))).unwrap();
    assert!(s
        .mac_entries(BLUE)
        .iter()
        .all(|(_, e)| e.location != Location::Port(PortId(3))));
}

#[test]
fn mtu_is_enforced_both_ways() {
    let mut s = Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Vlan { vid: vid(7) },
            },
            host_port(1, BLUE, 1500),
            host_port(2, BLUE, 1000),
            host_port(3, BLUE, 1500),
        ],
    )
    .unwrap();
    let full = ipv4_frame(MacAddr::BROADCAST, mac(1), ip(1), ip(2), 1480);
    assert_eq!(full.len(), 1514);
    // 1500 fits port 3 but not port 2, whose copy is dropped.
    let out = run(&mut s, t(0), PortId(1), &full);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PortId(3));
    assert_eq!(
        s.port_counters(PortId(2))
            .unwrap()
            .drops
            .get(DropReason::Oversized),
        1
    );
    // 1501 does not fit the ingress port.
    let over = ipv4_frame(MacAddr::BROADCAST, mac(1), ip(1), ip(2), 1481);
    assert!(run(&mut s, t(0), PortId(1), &over).is_empty());
    assert_eq!(
        s.port_counters(PortId(1))
            .unwrap()
            .drops
            .get(DropReason::Oversized),
        1
    );
    // The network counts both: the copy refused by port 2 and the frame refused by port 1.
    assert_eq!(
        s.network_counters(BLUE)
            .unwrap()
            .traffic
            .drops
            .get(DropReason::Oversized),
        2
    );
}

#[test]
fn overlay_mtu_accounts_for_vxlan() {
    let (mut a, _) = two_hosts();
    // VM ports have MTU 1450 = overlay_guest_mtu(1500): the largest guest packet fits the
    // underlay exactly.
    let full = ipv4_frame(mac(2), mac(1), ip(1), ip(2), 1430);
    let out = run(&mut a, t(0), PortId(1), &full);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2.len(), 1500 + 14);
    // A port with a larger MTU on an overlay network is a configuration error.
    let err = a
        .apply(ConfigCommand::AddPort(PortConfig {
            id: PortId(9),
            kind: PortKind::Vm { network: BLUE },
            mtu: 1500,
        }))
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::MtuExceedsOverlay {
            port: PortId(9),
            mtu: 1500,
            underlay_mtu: 1500,
            max: 1450
        }
    );
    assert!(a.port(PortId(9)).is_none());
}

#[test]
fn vtep_without_underlay_mac_uses_the_gateway_or_drops() {
    let base = || {
        let mut c = overlay_networks();
        c.push(vm(1, BLUE));
        c.push(ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_B],
        });
        c
    };
    let bcast = arp_request(mac(1), ip(1), ip(2));

    let mut c = base();
    c.push(uplink(VTEP_A, UNDERLAY_MAC_A));
    let mut s = Switch::with_commands(SwitchSettings::default(), c).unwrap();
    assert!(run(&mut s, t(0), PortId(1), &bcast).is_empty());
    assert_eq!(
        s.port_counters(UPLINK)
            .unwrap()
            .drops
            .get(DropReason::NoVtepMac),
        1
    );

    let gateway = MacAddr([2, 0, 0, 0, 0, 0x99]);
    let mut c = base();
    c.push(ConfigCommand::AddPort(PortConfig {
        id: UPLINK,
        kind: PortKind::VxlanUplink {
            local_ip: VTEP_A,
            local_mac: UNDERLAY_MAC_A,
            gateway_mac: Some(gateway),
        },
        mtu: 1500,
    }));
    let mut s = Switch::with_commands(SwitchSettings::default(), c).unwrap();
    let out = run(&mut s, t(0), PortId(1), &bcast);
    assert_eq!(decapsulate(&out[0].2).unwrap().dst_mac, gateway);

    let mut s = Switch::with_commands(SwitchSettings::default(), base()).unwrap();
    assert!(run(&mut s, t(0), PortId(1), &bcast).is_empty());
    assert_eq!(
        s.network_counters(BLUE)
            .unwrap()
            .traffic
            .drops
            .get(DropReason::NoUplink),
        1
    );
}

#[test]
fn batches_reuse_the_output_buffer() {
    let (mut a, _) = two_hosts();
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|i| ipv4_frame(mac(2), mac(1), ip(1), ip(2), 10 + i))
        .collect();
    let mut tx = TxBatch::with_capacity(16, 4096);
    a.process(
        t(0),
        frames.iter().map(|f| (PortId(1), f.as_slice())),
        &mut tx,
    );
    assert_eq!(tx.len(), 8);
    for ((_, bytes), f) in tx.iter().zip(&frames) {
        assert_eq!(decapsulate(bytes).unwrap().inner, &f[..]);
    }
    tx.clear();
    assert!(tx.is_empty());
}
