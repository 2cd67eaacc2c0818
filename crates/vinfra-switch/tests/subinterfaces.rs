//! A VM's vNIC carrying several networks: 802.1Q sub-interfaces ([`PortKind::VmVlan`]). The
//! guest's tagged frames enter the sub-interface's network untagged, what goes to the
//! sub-interface leaves through the vNIC's port with the tag; port security, counters and MAC
//! entries are the sub-interface's own; a tag without a sub-interface is refused; the
//! sub-interfaces go with their vNIC.

mod common;

use common::hosts::{host_port, vid, vlan_switch, BLUE, RED};
use common::*;
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, ConfigError, DropReason, Location, PortId, PortKind, PortPolicy,
    Switch,
};
use vinfra_switch::wire::{EtherType, MacAddr};

/// The vNIC (VM 7): untagged on blue.
const NIC: PortId = PortId(7);
/// Its sub-interface with tag 20, on red.
const SUB: PortId = PortId(8);

/// The VLAN switch (blue: VLAN 100 with host port 5, red: VLAN 200 with VM 6, the trunk) and
/// VM 7's vNIC on blue with a sub-interface on red, tag 20.
fn switch() -> Switch {
    let mut s = vlan_switch();
    s.apply(add_port(NIC, PortKind::Vm { network: BLUE }, 1500))
        .unwrap();
    s.apply(add_port(
        SUB,
        PortKind::VmVlan {
            network: RED,
            parent: NIC,
            vid: vid(20),
        },
        1500,
    ))
    .unwrap();
    s
}

fn ping(src: u8, dst: u8) -> Vec<u8> {
    ipv4_payload(ip(src), ip(dst), 1, &icmp_echo(8, 1))
}

#[test]
fn tagged_frames_of_the_guest_enter_the_sub_interfaces_network_untagged() {
    let mut s = switch();
    let payload = ping(7, 6);
    // A broadcast on tag 20: red's VM 6 gets it untagged, the trunk with red's VLAN 200; blue
    // (host port 5) does not see it.
    let from_guest = tagged(MacAddr::BROADCAST, mac(7), 20, EtherType::IPV4, &payload);
    let out = run(&mut s, t(1), NIC, &from_guest);
    let mut to = reached(&out);
    to.sort();
    assert_eq!(to, vec![(PortId(6), None), (TRUNK, None)]);
    let untagged = untag(&from_guest);
    assert!(out.contains(&(PortId(6), None, untagged.clone())));
    assert!(out.contains(&(
        TRUNK,
        None,
        tagged(MacAddr::BROADCAST, mac(7), 200, EtherType::IPV4, &payload)
    )));
    // The sub-interface learnt the MAC on red; blue knows nothing of it.
    assert_eq!(
        s.lookup(RED, mac(7), t(1)),
        Some(Location::Port(SUB)),
        "red's entry for the guest's MAC points at the sub-interface"
    );
    assert_eq!(s.lookup(BLUE, mac(7), t(1)), None);
    // Counted on the vNIC (what its socket carried) and on the sub-interface.
    assert_eq!(s.port_counters(NIC).unwrap().rx_packets, 1);
    assert_eq!(s.port_counters(SUB).unwrap().rx_packets, 1);
    assert_eq!(
        s.port_counters(SUB).unwrap().rx_bytes,
        untagged.len() as u64
    );

    // Untagged frames are blue's.
    let blue = eth(MacAddr::BROADCAST, mac(7), EtherType::IPV4, &payload);
    let mut to = send(&mut s, t(1), NIC, &blue);
    to.sort();
    assert_eq!(to, vec![(PortId(5), None), (TRUNK, None)]);
    assert_eq!(s.lookup(BLUE, mac(7), t(1)), Some(Location::Port(NIC)));

    // A tag the vNIC has no sub-interface for is refused.
    let stray = tagged(MacAddr::BROADCAST, mac(7), 30, EtherType::IPV4, &payload);
    assert!(run(&mut s, t(1), NIC, &stray).is_empty());
    assert_eq!(
        s.port_counters(NIC)
            .unwrap()
            .drops
            .get(DropReason::UnexpectedVlanTag),
        1
    );
}

#[test]
fn what_goes_to_the_sub_interface_leaves_through_the_vnic_tagged() {
    let mut s = switch();
    // The guest speaks on red first (its MAC learnt there), then VM 6 answers.
    run(
        &mut s,
        t(1),
        NIC,
        &tagged(MacAddr::BROADCAST, mac(7), 20, EtherType::IPV4, &ping(7, 6)),
    );
    let reply = ipv4_payload(ip(6), ip(7), 1, &icmp_echo(0, 1));
    let out = run(
        &mut s,
        t(1),
        PortId(6),
        &eth(mac(7), mac(6), EtherType::IPV4, &reply),
    );
    assert_eq!(
        out,
        vec![(
            NIC,
            None,
            tagged(mac(7), mac(6), 20, EtherType::IPV4, &reply)
        )]
    );
    assert_eq!(s.port_counters(SUB).unwrap().tx_packets, 1);
    // From the physical network (VLAN 200 on the trunk) the same.
    let out = run(
        &mut s,
        t(1),
        TRUNK,
        &tagged(mac(7), mac(9), 200, EtherType::IPV4, &reply),
    );
    assert_eq!(
        out,
        vec![(
            NIC,
            None,
            tagged(mac(7), mac(9), 20, EtherType::IPV4, &reply)
        )]
    );
    // A red broadcast reaches the guest tagged, once.
    let out = run(
        &mut s,
        t(1),
        PortId(6),
        &eth(MacAddr::BROADCAST, mac(6), EtherType::IPV4, &reply),
    );
    let to_guest: Vec<_> = out.iter().filter(|(p, _, _)| *p == NIC).collect();
    assert_eq!(to_guest.len(), 1);
    assert_eq!(
        to_guest[0].2,
        tagged(MacAddr::BROADCAST, mac(6), 20, EtherType::IPV4, &reply)
    );
}

#[test]
fn port_security_is_the_sub_interfaces_own() {
    let mut s = switch();
    let policy = |last: u8| PortPolicy {
        allowed: Some(vec![AllowedAddress {
            mac: mac(7),
            ip: ip(last),
            prefix_len: 32,
        }]),
        ..PortPolicy::default()
    };
    // The vNIC may send from .7 on blue, the sub-interface from .17 on red.
    s.apply(ConfigCommand::SetPortPolicy {
        port: NIC,
        policy: policy(7),
    })
    .unwrap();
    s.apply(ConfigCommand::SetPortPolicy {
        port: SUB,
        policy: policy(17),
    })
    .unwrap();
    let on_red = |src: u8| {
        tagged(
            MacAddr::BROADCAST,
            mac(7),
            20,
            EtherType::IPV4,
            &ping(src, 6),
        )
    };
    assert!(!run(&mut s, t(1), NIC, &on_red(17)).is_empty());
    assert!(run(&mut s, t(1), NIC, &on_red(7)).is_empty());
    assert_eq!(dropped(&s, SUB, DropReason::SpoofedIp), (1, 1));
    assert_eq!(dropped(&s, NIC, DropReason::SpoofedIp), (0, 0));
    let on_blue = |src: u8| eth(MacAddr::BROADCAST, mac(7), EtherType::IPV4, &ping(src, 5));
    assert!(!run(&mut s, t(1), NIC, &on_blue(7)).is_empty());
    assert!(run(&mut s, t(1), NIC, &on_blue(17)).is_empty());
    assert_eq!(dropped(&s, NIC, DropReason::SpoofedIp), (1, 1));
}

#[test]
fn sub_interfaces_are_checked_and_go_with_their_vnic() {
    let mut s = switch();
    let sub = |id: u32, parent: PortId, tag: u16| {
        add_port(
            PortId(id),
            PortKind::VmVlan {
                network: BLUE,
                parent,
                vid: vid(tag),
            },
            1500,
        )
    };
    assert_eq!(
        s.apply(sub(9, PortId(5), 30)),
        Err(ConfigError::NotAVmPort(PortId(5)))
    );
    assert_eq!(
        s.apply(sub(9, PortId(42), 30)),
        Err(ConfigError::NoSuchPort(PortId(42)))
    );
    assert_eq!(
        s.apply(sub(9, NIC, 20)),
        Err(ConfigError::SubInterfaceExists {
            parent: NIC,
            vid: 20
        })
    );
    // A sub-interface of a sub-interface is not a thing either.
    assert_eq!(s.apply(sub(9, SUB, 30)), Err(ConfigError::NotAVmPort(SUB)));
    assert!(s.port(PortId(9)).is_none());
    s.apply(sub(9, NIC, 30)).unwrap();
    // Removing one sub-interface leaves the rest.
    s.apply(ConfigCommand::RemovePort(PortId(9))).unwrap();
    assert!(s.port(PortId(9)).is_none());
    run(
        &mut s,
        t(1),
        NIC,
        &tagged(MacAddr::BROADCAST, mac(7), 20, EtherType::IPV4, &ping(7, 6)),
    );
    assert_eq!(s.lookup(RED, mac(7), t(1)), Some(Location::Port(SUB)));
    // Removing the vNIC removes its sub-interfaces and their MAC entries; the port numbers
    // are free again.
    s.apply(ConfigCommand::RemovePort(NIC)).unwrap();
    assert!(s.port(SUB).is_none());
    assert_eq!(s.lookup(RED, mac(7), t(1)), None);
    s.apply(host_port(8, RED, 1500)).unwrap();
}
