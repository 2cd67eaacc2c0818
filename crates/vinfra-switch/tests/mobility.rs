//! What follows a VM that moves to another host: its MAC entry, which other hosts' switches
//! move on its announcements when the control plane expects the move (and only then), and its
//! connections, exported from the source switch's table and imported into the destination's,
//! where established streams go on through the VM port's firewall.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::conntrack::{
    echo, handshake, secs, table, tcp as tcp_info, udp, EST, EST_REPLY, PEER, VM,
};
use common::firewall::{
    allow_tcp_in, connect_to_web, set_firewall, switch, switch_with, tcp, PLAIN, WEB,
};
use common::hosts::*;
use common::*;
use vinfra_switch::datapath::firewall::conntrack::{
    ConnEntry, ConnTuple, ConntrackFull, InvalidReason, Side, TcpState, Timeouts, Tracked,
};
use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, DropReason, Location, NetworkId, PortId, Switch, SwitchSettings,
    MAC_REDIRECT_GRACE, MAC_REDIRECT_HOLD,
};
use vinfra_switch::wire::ipv4::protocol;
use vinfra_switch::wire::{EtherType, MacAddr};

// MAC mobility: host C's view of VM 2, which moves from host A to host B.

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
    vxlan(from, VTEP_C, 5001, inner)
}

/// Where host C sends VM 3's ping of VM 2.
fn ping_of_vm2_goes_to(c: &mut Switch, now: Duration) -> Vec<Option<Ipv4Addr>> {
    let ping = ipv4_frame(mac(2), mac(3), ip(3), ip(2), 8);
    run(c, now, PortId(3), &ping)
        .iter()
        .map(|(_, vtep, _)| *vtep)
        .collect()
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
    run(
        &mut c,
        t(3),
        UPLINK,
        &to_c_from(VTEP_B, &rarp(mac(2), mac(2))),
    );
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
    run(
        &mut c,
        t(7),
        UPLINK,
        &to_c_from(VTEP_B, &rarp(mac(2), mac(2))),
    );
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
    for (i, announcement) in [rarp(mac(2), mac(2)), gratuitous_arp(mac(2), ip(2))]
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
    run(
        &mut c,
        t(2),
        UPLINK,
        &to_c_from(VTEP_C, &rarp(mac(2), mac(2))),
    );
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(2)), vec![Some(VTEP_A)]);
    assert_eq!(refused(&c), 3);
    assert_eq!(expected_move_of(&c, mac(2)), Some(VTEP_B));
    // The announcement from B moves it, and uses the expectation up: an announcement from A
    // (VM 2 did not go back) is refused.
    run(
        &mut c,
        t(3),
        UPLINK,
        &to_c_from(VTEP_B, &rarp(mac(2), mac(2))),
    );
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(3)), vec![Some(VTEP_B)]);
    assert_eq!(expected_move_of(&c, mac(2)), None);
    run(
        &mut c,
        t(4),
        UPLINK,
        &to_c_from(VTEP_A, &rarp(mac(2), mac(2))),
    );
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(4)), vec![Some(VTEP_B)]);
    assert_eq!(refused(&c), 4);

    // A withdrawn expectation, or one replaced by setting the entry again, moves nothing.
    expect_move(&mut c, mac(2), Some(VTEP_C)).unwrap();
    expect_move(&mut c, mac(2), None).unwrap();
    run(
        &mut c,
        t(5),
        UPLINK,
        &to_c_from(VTEP_C, &rarp(mac(2), mac(2))),
    );
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(5)), vec![Some(VTEP_B)]);
    expect_move(&mut c, mac(2), Some(VTEP_C)).unwrap();
    c.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(2),
        location: Location::Vtep(VTEP_B),
    })
    .unwrap();
    assert_eq!(expected_move_of(&c, mac(2)), None);
    run(
        &mut c,
        t(6),
        UPLINK,
        &to_c_from(VTEP_C, &rarp(mac(2), mac(2))),
    );
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

// The source host's view of a migration: VM 2 leaves host A for host B.

/// Host A, VM 2's host: VM 2 (port 2) and VM 4 (port 4) on blue, VM 3 at host C and VM 5 at
/// host B, as the control plane put them.
fn source_host() -> Switch {
    let mut cmds = overlay_networks();
    cmds.extend(vtep_macs());
    cmds.extend([
        uplink(VTEP_A, UNDERLAY_MAC_A),
        vm(2, BLUE),
        vm(4, BLUE),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_B, VTEP_C],
        },
    ]);
    for (m, location) in [
        (2, Location::Port(PortId(2))),
        (4, Location::Port(PortId(4))),
        (3, Location::Vtep(VTEP_C)),
        (5, Location::Vtep(VTEP_B)),
    ] {
        cmds.push(ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(m),
            location,
        });
    }
    Switch::with_commands(SwitchSettings::default(), cmds).unwrap()
}

/// The agent's word that VM `of`'s frames go to `to` (its QEMU stopped for the switchover).
fn redirect(c: &mut Switch, of: MacAddr, to: Option<Ipv4Addr>) -> Result<(), ConfigError> {
    c.apply(ConfigCommand::RedirectMac {
        network: BLUE,
        mac: of,
        to,
    })
}

/// Where host A sends `from`'s frame to VM 2 (`from`: VM 3 at C over the uplink, or VM 4 here).
fn frame_for_vm2_goes_to(
    c: &mut Switch,
    now: Duration,
    from: u8,
) -> Vec<(PortId, Option<Ipv4Addr>)> {
    let frame = ipv4_frame(mac(2), mac(from), ip(from), ip(2), 8);
    match from {
        3 => send(c, now, UPLINK, &to_c_from_to(VTEP_C, VTEP_A, &frame)),
        _ => send(c, now, PortId(u32::from(from)), &frame),
    }
}

/// `inner` on blue as host `from`'s switch sends it to host `to`.
fn to_c_from_to(from: Ipv4Addr, to: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    vxlan(from, to, 5001, inner)
}

#[test]
fn a_stopped_migrating_vm_s_frames_go_on_to_its_destination_until_the_redirect_ends() {
    let mut c = source_host();
    let redirected = |c: &Switch| c.network_counters(BLUE).unwrap().mac_redirected;
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(1), 3),
        vec![(PortId(2), None)]
    );
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(1), 4),
        vec![(PortId(2), None)]
    );
    // Without a redirect, a frame from another host for a third host's VM goes nowhere (split
    // horizon).
    let for_vm5 = ipv4_frame(mac(5), mac(3), ip(3), ip(5), 8);
    let to_a = |inner: &[u8]| to_c_from_to(VTEP_C, VTEP_A, inner);
    assert!(send(&mut c, t(1), UPLINK, &to_a(&for_vm5)).is_empty());

    // VM 2's QEMU stops for the switchover to B: its frames go to B, from C (sent on: the one
    // exception to split horizon) and from VM 4 alike.
    redirect(&mut c, mac(2), Some(VTEP_B)).unwrap();
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(2), 3),
        vec![(UPLINK, Some(VTEP_B))]
    );
    assert_eq!(redirected(&c), 1);
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(2), 4),
        vec![(UPLINK, Some(VTEP_B))]
    );
    assert_eq!(c.lookup(BLUE, mac(2), t(2)), Some(Location::Vtep(VTEP_B)));
    // Never back to the host it came from, and still no copy for VM 5.
    let from_b = ipv4_frame(mac(2), mac(5), ip(5), ip(2), 8);
    assert!(send(&mut c, t(2), UPLINK, &to_c_from_to(VTEP_B, VTEP_A, &from_b)).is_empty());
    assert!(send(&mut c, t(2), UPLINK, &to_a(&for_vm5)).is_empty());
    assert_eq!(redirected(&c), 1);
    // The entry stays where the control plane put it, and a revert of moves keeps the redirect.
    let entry = c.mac_entries(BLUE).into_iter().find(|(m, _)| *m == mac(2));
    assert_eq!(
        entry.map(|(_, e)| (e.location, e.redirect.map(|r| r.to))),
        Some((Location::Port(PortId(2)), Some(VTEP_B)))
    );
    c.apply(ConfigCommand::RevertMacMoves).unwrap();
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(3), 3),
        vec![(UPLINK, Some(VTEP_B))]
    );

    // The migration failed and VM 2 resumed here: the redirect ends.
    redirect(&mut c, mac(2), None).unwrap();
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(4), 3),
        vec![(PortId(2), None)]
    );
    // So does a frame from VM 2 on its port (it runs here: its agent may be gone), but not one
    // within the grace (sent before it stopped, read late).
    redirect(&mut c, mac(2), Some(VTEP_B)).unwrap();
    let from_vm2 = ipv4_frame(mac(4), mac(2), ip(2), ip(4), 8);
    let late = t(4) + MAC_REDIRECT_GRACE - Duration::from_millis(1);
    assert_eq!(
        send(&mut c, late, PortId(2), &from_vm2),
        vec![(PortId(4), None)]
    );
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, late, 4),
        vec![(UPLINK, Some(VTEP_B))]
    );
    send(&mut c, t(4) + MAC_REDIRECT_GRACE, PortId(2), &from_vm2);
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(5), 4),
        vec![(PortId(2), None)]
    );
    // Setting the entry again ends it too.
    redirect(&mut c, mac(2), Some(VTEP_B)).unwrap();
    c.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(2),
        location: Location::Port(PortId(2)),
    })
    .unwrap();
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, t(5), 4),
        vec![(PortId(2), None)]
    );
    // It lapses by itself (an agent that never ended it).
    redirect(&mut c, mac(2), Some(VTEP_B)).unwrap();
    let lapse = t(5) + MAC_REDIRECT_HOLD;
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, lapse - Duration::from_millis(1), 4),
        vec![(UPLINK, Some(VTEP_B))]
    );
    assert_eq!(
        frame_for_vm2_goes_to(&mut c, lapse, 3),
        vec![(PortId(2), None)]
    );
    // The migration completed: VM 2's port goes, and its entry with it.
    redirect(&mut c, mac(2), Some(VTEP_B)).unwrap();
    c.apply(ConfigCommand::RemovePort(PortId(2))).unwrap();
    assert_eq!(c.lookup(BLUE, mac(2), lapse), None);
}

#[test]
fn only_a_local_vm_s_static_entry_is_redirected() {
    let mut c = source_host();
    let learned = ipv4_frame(mac(3), mac(7), ip(7), ip(3), 8);
    send(&mut c, t(1), PortId(4), &learned);
    assert_eq!(
        c.lookup(BLUE, mac(7), t(1)),
        Some(Location::Port(PortId(4)))
    );
    // A remote VM's entry, a learned one, an unknown address: refused (ending nothing is fine).
    for not_local in [mac(3), mac(7), mac(8)] {
        assert_eq!(
            redirect(&mut c, not_local, Some(VTEP_B)),
            Err(ConfigError::NoLocalMacEntry {
                network: BLUE,
                mac: not_local
            })
        );
        assert_eq!(redirect(&mut c, not_local, None), Ok(()));
    }
    assert_eq!(
        c.lookup(BLUE, mac(7), t(1)),
        Some(Location::Port(PortId(4)))
    );
    // No other host's VTEP to send to: refused.
    for bad in [
        VTEP_A,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::BROADCAST,
    ] {
        assert_eq!(
            redirect(&mut c, mac(2), Some(bad)),
            Err(ConfigError::BadRedirect(bad))
        );
    }
    assert_eq!(
        c.lookup(BLUE, mac(2), t(1)),
        Some(Location::Port(PortId(2)))
    );
    // The hold counts from the switch's clock as set last (a quiet switch: no frame since 1 s).
    c.set_clock(t(100));
    redirect(&mut c, mac(2), Some(VTEP_B)).unwrap();
    let held = t(100) + MAC_REDIRECT_HOLD - Duration::from_millis(1);
    assert_eq!(c.lookup(BLUE, mac(2), held), Some(Location::Vtep(VTEP_B)));
    assert_eq!(
        c.apply(ConfigCommand::RedirectMac {
            network: NetworkId(99),
            mac: mac(2),
            to: Some(VTEP_B),
        }),
        Err(ConfigError::NoSuchNetwork(NetworkId(99)))
    );
    // A VLAN network has no VTEP to send to.
    let mut v = vlan_switch();
    v.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(5),
        location: Location::Port(PortId(5)),
    })
    .unwrap();
    assert_eq!(
        v.apply(ConfigCommand::RedirectMac {
            network: BLUE,
            mac: mac(5),
            to: Some(VTEP_B),
        }),
        Err(ConfigError::NoLocalMacEntry {
            network: BLUE,
            mac: mac(5)
        })
    );
}

#[test]
fn moves_the_control_plane_did_not_confirm_are_reverted() {
    let mut c = peer_host();
    // An announcement from B that the control plane never confirms (VM 2 is on A: its
    // migration to B failed after the move was expected).
    expect_move(&mut c, mac(2), Some(VTEP_B)).unwrap();
    run(
        &mut c,
        t(1),
        UPLINK,
        &to_c_from(VTEP_B, &rarp(mac(2), mac(2))),
    );
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(1)), vec![Some(VTEP_B)]);
    c.apply(ConfigCommand::RevertMacMoves).unwrap();
    assert_eq!(ping_of_vm2_goes_to(&mut c, t(2)), vec![Some(VTEP_A)]);
    // Local ports' entries are never moved, and stay.
    let to_vm3 = ipv4_frame(mac(3), mac(2), ip(2), ip(3), 8);
    let out = run(&mut c, t(3), UPLINK, &to_c_from(VTEP_A, &to_vm3));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, PortId(3));
}

// Connections carried by a migration.

#[test]
fn connections_move_with_a_migrated_vm() {
    let rules = vec![allow_tcp_in(80)];
    // Host A: VM 1 on port 1 serves VM 3 and has a connection of its own to VM 3.
    let mut a = switch();
    set_firewall(&mut a, WEB, Some(rules.clone()));
    connect_to_web(&mut a, t(100), PLAIN, (3, 40000), 80);
    assert_eq!(
        send(&mut a, t(100), WEB, &tcp((1, 41000), (3, 5432), SYN)),
        [(PLAIN, None)]
    );
    assert_eq!(
        send(&mut a, t(100), PLAIN, &tcp((3, 5432), (1, 41000), SYN_ACK)),
        [(WEB, None)]
    );
    let exported = a.export_connections(WEB, t(110));
    assert_eq!(exported.len(), 2);

    // Host B (another switch, whose clock says 5000 s) has the VM on port 7.
    let moved = PortId(7);
    let mut b = switch_with(SwitchSettings::default(), moved);
    set_firewall(&mut b, moved, Some(rules));
    // Before the import the stream is unknown there.
    assert_eq!(
        send(&mut b, t(5000), PLAIN, &tcp((3, 40000), (1, 80), PSH_ACK)),
        []
    );
    assert_eq!(dropped(&b, moved, DropReason::ConntrackInvalid), (1, 1));
    b.apply(ConfigCommand::ImportConnections {
        port: moved,
        entries: exported,
    })
    .unwrap();
    assert_eq!(b.port_connections(moved), 2);
    // The established stream goes on, both ways; so does the VM's own connection.
    for i in 0..3 {
        assert_eq!(
            send(
                &mut b,
                t(5001 + i),
                PLAIN,
                &tcp((3, 40000), (1, 80), PSH_ACK)
            ),
            [(moved, None)]
        );
        assert_eq!(
            send(
                &mut b,
                t(5001 + i),
                moved,
                &tcp((1, 80), (3, 40000), PSH_ACK)
            ),
            [(PLAIN, None)]
        );
    }
    assert_eq!(
        send(&mut b, t(5005), moved, &tcp((1, 41000), (3, 5432), ACK)),
        [(PLAIN, None)]
    );
    // A blocked port stays blocked.
    assert_eq!(
        send(&mut b, t(5005), PLAIN, &tcp((3, 40001), (1, 22), SYN)),
        []
    );
    assert_eq!(dropped(&b, moved, DropReason::FirewallDefaultDeny), (1, 1));
    assert_eq!(b.conntrack_counters().imported, 2);
    // Imports only go to VM and host ports.
    assert_eq!(
        b.apply(ConfigCommand::ImportConnections {
            port: UPLINK,
            entries: vec![],
        }),
        Err(ConfigError::NotAccessPort(UPLINK))
    );
}

#[test]
fn export_import_across_zones_and_clocks() {
    let mut src = table(16);
    let t = secs(1_000_000);
    handshake(&mut src, 7, t);
    let dns = udp(VM, 33333, PEER, 53);
    src.commit(7, Side::FromVm, &dns, t).unwrap();
    let _ = src.track(7, Side::ToVm, &udp(PEER, 53, VM, 33333), t);
    let ping = echo(VM, PEER, 8, 1);
    src.commit(7, Side::FromVm, &ping, t).unwrap();
    // Something in another zone stays behind.
    handshake(&mut src, 8, t);

    let later = t + secs(10);
    let entries = src.export(7, later);
    assert_eq!(entries.len(), 3);
    let tcp_entry = entries
        .iter()
        .find(|e| e.original.protocol == protocol::TCP)
        .unwrap();
    assert_eq!(tcp_entry.tcp_state, Some(TcpState::Established));
    assert_eq!(
        tcp_entry.remaining,
        Timeouts::default().tcp_established - secs(10)
    );

    // The destination host's clock started much later; its port is zone 3.
    let mut dst = table(16);
    let here = secs(5);
    assert_eq!(dst.import(3, &entries, here), Ok(3));
    assert_eq!((dst.zone_len(3), dst.zone_len(7)), (3, 0));
    // The stream goes on with a plain ACK, both ways.
    assert_eq!(
        dst.track(3, Side::FromVm, &tcp_info(VM, 40000, PEER, 80, ACK), here),
        EST
    );
    assert_eq!(
        dst.track(3, Side::ToVm, &tcp_info(PEER, 80, VM, 40000, PSH_ACK), here),
        EST_REPLY
    );
    assert_eq!(
        dst.track(3, Side::ToVm, &udp(PEER, 53, VM, 33333), here),
        EST_REPLY
    );
    assert_eq!(
        dst.track(3, Side::ToVm, &echo(PEER, VM, 0, 1), here),
        EST_REPLY
    );
    // Importing again changes nothing.
    assert_eq!(dst.import(3, &entries, here), Ok(0));
    // The ping lives 30 s after its last packet; the counters add up.
    assert_eq!(
        dst.track(3, Side::ToVm, &echo(PEER, VM, 0, 1), here + secs(35)),
        Tracked::Invalid(InvalidReason::IcmpUnmatchedReply)
    );
    let c = dst.counters();
    assert_eq!(c.imported, 3);
    assert_eq!(
        c.created + c.imported - c.expired - c.evicted - c.removed,
        c.entries as u64
    );
}

#[test]
fn import_skips_inconsistent_entries_and_caps_lifetimes() {
    let tuple = ConnTuple {
        src: VM,
        dst: PEER,
        protocol: protocol::TCP,
        src_port: 1,
        dst_port: 2,
    };
    let good = ConnEntry {
        original: tuple,
        reply: tuple.reply(),
        origin: Side::FromVm,
        tcp_state: Some(TcpState::Close),
        replied: true,
        remaining: secs(1_000_000),
    };
    let bad = [
        ConnEntry {
            reply: tuple,
            ..good
        },
        ConnEntry {
            tcp_state: None,
            ..good
        },
        ConnEntry {
            remaining: Duration::ZERO,
            ..good
        },
    ];
    let mut ct = table(16);
    assert_eq!(ct.import(1, &bad, secs(0)), Ok(0));
    assert_eq!(ct.import(1, &[good], secs(0)), Ok(1));
    // At most the state's timeout here.
    assert_eq!(ct.export(1, secs(0))[0].remaining, secs(10));
    // A full table refuses the rest.
    let mut small = table(1);
    let other = ConnEntry {
        original: ConnTuple {
            src_port: 3,
            ..tuple
        },
        reply: ConnTuple {
            src_port: 3,
            ..tuple
        }
        .reply(),
        ..good
    };
    assert_eq!(
        small.import(1, &[good, other], secs(0)),
        Err(ConntrackFull::Table(1))
    );
    assert_eq!(small.len(), 1);
    // …but a live connection arriving takes the place of a closed one.
    let live = ConnEntry {
        tcp_state: Some(TcpState::Established),
        ..other
    };
    assert_eq!(small.import(1, &[live], secs(0)), Ok(1));
    assert_eq!(small.len(), 1);
    assert_eq!(
        small.export(1, secs(0))[0].tcp_state,
        Some(TcpState::Established)
    );
}
