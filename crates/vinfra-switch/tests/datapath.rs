//! The forwarding core end to end: switches connected by passing their frames to each other.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, DropReason, Location, NetworkId, PortConfig, PortId, PortKind,
    Segment, Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{
    self, arp, decapsulate, ArpOperation, ArpRepr, Encap, EtherType, MacAddr, VlanId, Vni,
};

const UPLINK: PortId = PortId(100);
const TRUNK: PortId = PortId(101);
const BLUE: NetworkId = NetworkId(10);
const RED: NetworkId = NetworkId(20);
const VTEP_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VTEP_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const VTEP_C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const UNDERLAY_MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const UNDERLAY_MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const UNDERLAY_MAC_C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn t(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn vni(n: u32) -> Vni {
    Vni::new(n).unwrap()
}

fn vid(n: u16) -> VlanId {
    VlanId::new(n).unwrap()
}

fn vm(id: u32, network: NetworkId) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig {
        id: PortId(id),
        kind: PortKind::Vm { network },
        mtu: 1450,
    })
}

fn host_port(id: u32, network: NetworkId, mtu: u16) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig {
        id: PortId(id),
        kind: PortKind::Host { network },
        mtu,
    })
}

fn uplink(local_ip: Ipv4Addr, local_mac: MacAddr) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig {
        id: UPLINK,
        kind: PortKind::VxlanUplink {
            local_ip,
            local_mac,
            gateway_mac: None,
        },
        mtu: 1500,
    })
}

fn vtep_macs() -> Vec<ConfigCommand> {
    vec![
        ConfigCommand::SetVtepMac {
            vtep: VTEP_A,
            mac: UNDERLAY_MAC_A,
        },
        ConfigCommand::SetVtepMac {
            vtep: VTEP_B,
            mac: UNDERLAY_MAC_B,
        },
        ConfigCommand::SetVtepMac {
            vtep: VTEP_C,
            mac: UNDERLAY_MAC_C,
        },
    ]
}

fn overlay_networks() -> Vec<ConfigCommand> {
    vec![
        ConfigCommand::AddNetwork {
            id: BLUE,
            segment: Segment::Overlay { vni: vni(5001) },
        },
        ConfigCommand::AddNetwork {
            id: RED,
            segment: Segment::Overlay { vni: vni(5002) },
        },
    ]
}

/// Host A: VM 1 on blue, VM 3 on red (same IP range). Host B: VM 2 on blue, VM 4 on red.
/// The control plane programs both VM MACs of blue as static entries and each other as the
/// flood list of both networks.
fn two_hosts() -> (Switch, Switch) {
    let mut a = overlay_networks();
    a.extend(vtep_macs());
    a.extend([
        uplink(VTEP_A, UNDERLAY_MAC_A),
        vm(1, BLUE),
        vm(3, RED),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_A, VTEP_B],
        },
        ConfigCommand::SetFloodList {
            network: RED,
            vteps: vec![VTEP_B],
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(1),
            location: Location::Port(PortId(1)),
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(2),
            location: Location::Vtep(VTEP_B),
        },
    ]);
    let mut b = overlay_networks();
    b.extend(vtep_macs());
    b.extend([
        uplink(VTEP_B, UNDERLAY_MAC_B),
        vm(2, BLUE),
        vm(4, RED),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_A],
        },
        ConfigCommand::SetFloodList {
            network: RED,
            vteps: vec![VTEP_A],
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(2),
            location: Location::Port(PortId(2)),
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(1),
            location: Location::Vtep(VTEP_A),
        },
    ]);
    (
        Switch::with_commands(SwitchSettings::default(), a).unwrap(),
        Switch::with_commands(SwitchSettings::default(), b).unwrap(),
    )
}

/// Output of one frame: (port, vtep, bytes).
type Out = Vec<(PortId, Option<Ipv4Addr>, Vec<u8>)>;

fn run(switch: &mut Switch, now: Duration, port: PortId, frame: &[u8]) -> Out {
    let mut tx = TxBatch::new();
    switch.process(now, [(port, frame)], &mut tx);
    tx.iter()
        .map(|(f, bytes)| (f.port, f.vtep, bytes.to_vec()))
        .collect()
}

/// Hands every underlay frame addressed to `to_ip` to `to`'s uplink; returns what `to` sends.
fn carry(out: &Out, to: &mut Switch, to_ip: Ipv4Addr, now: Duration) -> Out {
    let mut result = Vec::new();
    for (port, vtep, bytes) in out {
        if *port == UPLINK && *vtep == Some(to_ip) {
            result.extend(run(to, now, UPLINK, bytes));
        }
    }
    result
}

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
    let encap_from_a = |inner: &[u8]| {
        let mut f = Vec::new();
        Encap {
            src_mac: UNDERLAY_MAC_A,
            dst_mac: UNDERLAY_MAC_B,
            src_ip: VTEP_A,
            dst_ip: VTEP_B,
            src_port: 50000,
            vni: vni(5001),
        }
        .encapsulate_into(inner, &mut f)
        .unwrap();
        f
    };

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

/// Host C, where VM 3 pings VM 2: VM 2's entry is static, at host A (its host), as the control
/// plane put it.
fn peer_host() -> Switch {
    let mut cmds = overlay_networks();
    cmds.extend(vtep_macs());
    cmds.extend([
        uplink(VTEP_C, UNDERLAY_MAC_C),
        vm(3, BLUE),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_A, VTEP_B],
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(3),
            location: Location::Port(PortId(3)),
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(2),
            location: Location::Vtep(VTEP_A),
        },
    ]);
    Switch::with_commands(SwitchSettings::default(), cmds).unwrap()
}

/// `inner` on blue as host `from`'s switch sends it to host C.
fn to_c_from(from: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    Encap {
        src_mac: UNDERLAY_MAC_A,
        dst_mac: UNDERLAY_MAC_C,
        src_ip: from,
        dst_ip: VTEP_C,
        src_port: 50000,
        vni: vni(5001),
    }
    .encapsulate_into(inner, &mut f)
    .unwrap();
    f
}

/// Where host C sends VM 3's ping of VM 2.
fn ping_of_vm2_goes_to(c: &mut Switch, now: Duration) -> Vec<Option<Ipv4Addr>> {
    let ping = ipv4_frame(mac(2), mac(3), ip(3), ip(2), 8);
    run(c, now, PortId(3), &ping)
        .iter()
        .map(|(_, vtep, _)| *vtep)
        .collect()
}

/// QEMU's announcement of a migrated VM: a broadcast RARP request for its own MAC.
fn rarp(of: MacAddr) -> Vec<u8> {
    let mut p = arp_payload(
        ArpOperation::Request,
        of,
        Ipv4Addr::UNSPECIFIED,
        of,
        Ipv4Addr::UNSPECIFIED,
    );
    p[6..8].copy_from_slice(&3u16.to_be_bytes());
    eth(MacAddr::BROADCAST, of, EtherType::RARP, &p)
}

/// A guest's announcement of its address: a gratuitous ARP request.
fn gratuitous_arp(of: MacAddr, addr: Ipv4Addr) -> Vec<u8> {
    arp_request(of, addr, addr)
}

#[test]
fn a_migrated_vm_is_found_by_its_announcement_and_not_taken_back_by_late_frames() {
    let mut c = peer_host();
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(1)), vec![Some(VTEP_A)]);

    // VM 2 migrates from A to B: the control plane says its entry may move there. Until it
    // announces itself there, frames from it that come from elsewhere move nothing (a static
    // entry is the control plane's, not learned).
    expect_move(&mut c, mac(2), Some(VTEP_B)).unwrap();
    let reply = ipv4_frame(mac(3), mac(2), ip(2), ip(3), 8);
    run(&mut c, t(2), UPLINK, &to_c_from(VTEP_B, &reply));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(2)), vec![Some(VTEP_A)]);
    // QEMU's RARP from B: the entry follows at once (MAC mobility).
    run(&mut c, t(3), UPLINK, &to_c_from(VTEP_B, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(3)), vec![Some(VTEP_B)]);
    // The control plane confirms: VM 2 is on B.
    c.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(2),
        location: Location::Vtep(VTEP_B),
    })
    .unwrap();

    // A's switch delivers, late, what VM 2 sent there before it paused (a ping reply, an IPv6
    // multicast report): VM 2 stays on B. Taken back to A, its pings would be lost for good:
    // nothing answers on A, and VM 2, unpinged, has nothing to send that would fix it.
    let mld = eth(
        MacAddr([0x33, 0x33, 0, 0, 0, 0x16]),
        mac(2),
        EtherType::IPV6,
        &[0x60, 0, 0, 0, 0, 8, 58, 1],
    );
    for late in [&reply, &mld] {
        run(&mut c, t(4), UPLINK, &to_c_from(VTEP_A, late));
        assert_eq!(ping_of_vm2_goes_to(&mut c, t(4)), vec![Some(VTEP_B)]);
    }
    assert_eq!(
        c.mac_entries(BLUE)
            .iter()
            .find(|(m, _)| *m == mac(2))
            .map(|(_, e)| (e.location, e.last_seen)),
        Some((Location::Vtep(VTEP_B), None)),
        "VM 2's entry is static, on B"
    );

    // The guest's own announcement (a gratuitous ARP) moves it too, when it moves again.
    expect_move(&mut c, mac(2), Some(VTEP_A)).unwrap();
    run(
        &mut c,
        t(5),
        UPLINK,
        &to_c_from(VTEP_A, &gratuitous_arp(mac(2), ip(2))),
    );
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(5)), vec![Some(VTEP_A)]);
    // An ARP request that is not gratuitous, or whose sender is not the frame's source, is no
    // announcement, even from the VTEP the entry may move to.
    expect_move(&mut c, mac(2), Some(VTEP_B)).unwrap();
    let request = arp_request(mac(2), ip(2), ip(3));
    let mut spoofed = gratuitous_arp(mac(9), ip(2));
    spoofed[6..12].copy_from_slice(&mac(2).0);
    for not_announcing in [&request, &spoofed] {
        run(&mut c, t(6), UPLINK, &to_c_from(VTEP_B, not_announcing));
        assert_eq!(ping_of_vm2_goes_to(&mut c, t(6)), vec![Some(VTEP_A)]);
    }
    assert_eq!(c.network_counters(BLUE).unwrap().mac_moves_refused, 0);
    // The announcement itself does.
    run(&mut c, t(7), UPLINK, &to_c_from(VTEP_B, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(7)), vec![Some(VTEP_B)]);
}

/// The control plane's word that VM `of`'s entry may move to `to` (its VM migrates there).
fn expect_move(c: &mut Switch, of: MacAddr, to: Option<Ipv4Addr>) -> Result<(), ConfigError> {
    c.apply(ConfigCommand::ExpectMacMove {
        network: BLUE,
        mac: of,
        to,
    })
}

fn expected_move_of(c: &Switch, of: MacAddr) -> Option<Ipv4Addr> {
    c.mac_entries(BLUE)
        .iter()
        .find(|(m, _)| *m == of)
        .and_then(|(_, e)| e.expected_move)
}

#[test]
fn announcements_move_an_entry_only_where_the_control_plane_expects_it() {
    let mut c = peer_host();
    let refused = |c: &Switch| c.network_counters(BLUE).unwrap().mac_moves_refused;
    // No move expected: VM 2's announcements from B (RARP, gratuitous ARP) move nothing, and
    // are counted; they are still forwarded (broadcast: to VM 3).
    for (i, announcement) in [rarp(mac(2)), gratuitous_arp(mac(2), ip(2))]
        .iter()
        .enumerate()
    {
        let out = run(&mut c, t(1), UPLINK, &to_c_from(VTEP_B, announcement));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, &out[0].2), (PortId(3), announcement));
        assert_eq!(ping_of_vm2_goes_to(&mut c, t(1)), vec![Some(VTEP_A)]);
        assert_eq!(refused(&c), i as u64 + 1);
    }
    // A move to B expected: an announcement from C is refused, and the expectation stays.
    expect_move(&mut c, mac(2), Some(VTEP_B)).unwrap();
    assert_eq!(expected_move_of(&c, mac(2)), Some(VTEP_B));
    run(&mut c, t(2), UPLINK, &to_c_from(VTEP_C, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(2)), vec![Some(VTEP_A)]);
    assert_eq!(refused(&c), 3);
    assert_eq!(expected_move_of(&c, mac(2)), Some(VTEP_B));
    // The announcement from B moves it, and uses the expectation up: an announcement from A
    // (VM 2 did not go back) is refused.
    run(&mut c, t(3), UPLINK, &to_c_from(VTEP_B, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(3)), vec![Some(VTEP_B)]);
    assert_eq!(expected_move_of(&c, mac(2)), None);
    run(&mut c, t(4), UPLINK, &to_c_from(VTEP_A, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(4)), vec![Some(VTEP_B)]);
    assert_eq!(refused(&c), 4);

    // A withdrawn expectation, or one replaced by setting the entry again, moves nothing.
    expect_move(&mut c, mac(2), Some(VTEP_C)).unwrap();
    expect_move(&mut c, mac(2), None).unwrap();
    run(&mut c, t(5), UPLINK, &to_c_from(VTEP_C, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(5)), vec![Some(VTEP_B)]);
    expect_move(&mut c, mac(2), Some(VTEP_C)).unwrap();
    c.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(2),
        location: Location::Vtep(VTEP_B),
    })
    .unwrap();
    assert_eq!(expected_move_of(&c, mac(2)), None);
    run(&mut c, t(6), UPLINK, &to_c_from(VTEP_C, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(6)), vec![Some(VTEP_B)]);
    assert_eq!(refused(&c), 6);

    // Only a static entry at a remote host can be expected to move: not a local VM's, not a
    // learned one, not an unknown address (withdrawing nothing is fine), not in a network
    // that does not exist.
    let learned = ipv4_frame(mac(3), mac(7), ip(7), ip(3), 8);
    run(&mut c, t(7), UPLINK, &to_c_from(VTEP_A, &learned));
    assert_eq!(c.lookup(BLUE, mac(7), t(7)), Some(Location::Vtep(VTEP_A)));
    for not_remote in [mac(3), mac(7), mac(8)] {
        assert_eq!(
            expect_move(&mut c, not_remote, Some(VTEP_B)),
            Err(ConfigError::NoRemoteMacEntry {
                network: BLUE,
                mac: not_remote
            })
        );
        assert_eq!(expect_move(&mut c, not_remote, None), Ok(()));
        assert_eq!(expected_move_of(&c, not_remote), None);
    }
    assert_eq!(
        c.apply(ConfigCommand::ExpectMacMove {
            network: NetworkId(99),
            mac: mac(2),
            to: Some(VTEP_B),
        }),
        Err(ConfigError::NoSuchNetwork(NetworkId(99)))
    );
}

#[test]
fn moves_the_control_plane_did_not_confirm_are_reverted() {
    let mut c = peer_host();
    // An announcement from B that the control plane never confirms (VM 2 is on A: its
    // migration to B failed after the move was expected).
    expect_move(&mut c, mac(2), Some(VTEP_B)).unwrap();
    run(&mut c, t(1), UPLINK, &to_c_from(VTEP_B, &rarp(mac(2))));
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(1)), vec![Some(VTEP_B)]);
    c.apply(ConfigCommand::RevertMacMoves).unwrap();
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(2)), vec![Some(VTEP_A)]);
    // Local ports' entries are never moved, and stay.
    let to_vm3 = ipv4_frame(mac(3), mac(2), ip(2), ip(3), 8);
    let out = run(&mut c, t(3), UPLINK, &to_c_from(VTEP_A, &to_vm3));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PortId(3));
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

fn vlan_switch() -> Switch {
    Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Vlan { vid: vid(100) },
            },
            ConfigCommand::AddNetwork {
                id: RED,
                segment: Segment::Vlan { vid: vid(200) },
            },
            ConfigCommand::AddPort(PortConfig {
                id: TRUNK,
                kind: PortKind::VlanTrunk,
                mtu: 1500,
            }),
            host_port(5, BLUE, 1500),
            vm(6, RED),
        ],
    )
    .unwrap()
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
    let encap = |src_ip, dst_ip, v: u32, inner: &[u8]| {
        let mut f = Vec::new();
        Encap {
            src_mac: UNDERLAY_MAC_B,
            dst_mac: UNDERLAY_MAC_A,
            src_ip,
            dst_ip,
            src_port: 50000,
            vni: vni(v),
        }
        .encapsulate_into(inner, &mut f)
        .unwrap();
        f
    };
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
    let mut underlay = Vec::new();
    Encap {
        src_mac: UNDERLAY_MAC_B,
        dst_mac: UNDERLAY_MAC_A,
        src_ip: VTEP_B,
        dst_ip: VTEP_A,
        src_port: 50000,
        vni: vni(5001),
    }
    .encapsulate_into(&frames[1], &mut underlay)
    .unwrap();
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
