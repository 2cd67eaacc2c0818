//! Where north-south traffic is handled: a host that is not the router's edge sends it, as the
//! VM sent it, to the edge in VXLAN with the transit VNI; the edge routes, translates and
//! sends it out, and its reply goes back to the VM's host in the VM network's VNI. ARP for the
//! uplink's addresses is answered only on the edge (from the trunk and local ports); frames to the
//! uplink's MAC and transit packets elsewhere are `not_edge`; gratuitous ARPs when a switch
//! becomes the edge or its edge gets a floating IP; every refused uplink command.

mod common;

use std::net::Ipv4Addr;

use common::nat::*;
use common::routing::*;
use common::*;
use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, DropReason, Edge, NetworkId, Segment, TxBatch, UplinkError,
};
use vinfra_switch::wire::{decapsulate, ArpOperation, EtherType, MacAddr, VlanId, Vni};

const VM22: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 22);

#[test]
fn a_host_that_is_not_the_edge_sends_north_south_packets_to_it_unchanged() {
    let mut b = host_b_remote();
    let sent = from_vm(RED, 22, &udp((VM22, 6000), (REMOTE, 53), true, b"query"));
    let out = run(&mut b, NOW, VM_B, &sent);
    assert_eq!(reached(&out), [(UPLINK, Some(VTEP_A))]);
    let d = decapsulate(&out[0].2).unwrap();
    assert_eq!(d.vni, Vni::new(TRANSIT).unwrap(), "the transit VNI");
    assert_eq!(d.inner, &sent[..], "the frame as the VM sent it");
    let c = b.router_counters(R1).unwrap();
    assert_eq!(c.nat.unwrap().to_edge_packets, 1);
    assert!(!c.nat.unwrap().edge);
    assert_eq!(c.routed_packets, 0);
    // East-west stays distributed.
    let east = from_vm(
        RED,
        22,
        &udp((VM22, 6000), (addr(BLUE, 11), 53), true, b"x"),
    );
    let out = run(&mut b, NOW, VM_B, &east);
    assert_eq!(decapsulate(&out[0].2).unwrap().vni, Vni::new(5001).unwrap());

    // The edge routes and translates it, and sends the reply to host B in red's VNI.
    let mut a = edge_a();
    a.apply(ConfigCommand::SetUnderlayPeers(Some(vec![VTEP_B])))
        .unwrap();
    let transit = vxlan(VTEP_B, VTEP_A, TRANSIT, &sent);
    let out = at_now(&mut a, UPLINK, &transit);
    let ip = to_upstream(&only(&out, TRUNK));
    assert_eq!(source(&ip), (UPLINK_IP, 6000));
    assert_eq!(ip[8], 63, "routed once, on the edge");
    let reply = udp((REMOTE, 53), (UPLINK_IP, 6000), true, b"answer");
    let out = at_now(&mut a, TRUNK, &from_outside(&reply));
    assert_eq!(reached(&out), [(UPLINK, Some(VTEP_B))]);
    let d = decapsulate(&out[0].2).unwrap();
    assert_eq!(d.vni, Vni::new(5002).unwrap());
    let ip = to_vm(d.inner, RED, 22);
    assert_eq!(destination(&ip), (VM22, 6000));
    let c = a.router_counters(R1).unwrap().nat.unwrap();
    assert_eq!(
        (c.from_transit_packets, c.snat_packets, c.dnat_packets),
        (1, 1, 1)
    );
    // Host B delivers it as any routed frame from another host.
    let out = run(&mut b, NOW, UPLINK, &out[0].2);
    assert_eq!(reached(&out), [(VM_B, None)]);

    // Transit from a host that is not an underlay peer is refused as any VXLAN packet.
    let stranger = vxlan(VTEP_C, VTEP_A, TRANSIT, &sent);
    assert!(at_now(&mut a, UPLINK, &stranger).is_empty());
    let drops = a.port_counters(UPLINK).unwrap().drops;
    assert_eq!(drops.get(DropReason::UnknownVtep), 1);
    // An ICMP error for a transit packet goes back to the VM's host: TTL 1.
    let dying = from_vm(
        RED,
        22,
        &with_ttl(udp((VM22, 1), (REMOTE, 53), true, b"x"), 1),
    );
    let out = at_now(&mut a, UPLINK, &vxlan(VTEP_B, VTEP_A, TRANSIT, &dying));
    assert_eq!(reached(&out), [(UPLINK, Some(VTEP_B))]);
    let d = decapsulate(&out[0].2).unwrap();
    icmp_from(d.inner, gw_ip(RED), VM22, 11, 0);
}

#[test]
fn a_switch_that_is_not_the_edge_drops_what_is_for_the_edge() {
    let mut b = host_b_remote();
    let inbound = from_outside(&udp((REMOTE, 53), (UPLINK_IP, 6000), true, b"x"));
    assert!(run(&mut b, NOW, TRUNK, &inbound).is_empty());
    let transit = vxlan(
        VTEP_A,
        VTEP_B,
        TRANSIT,
        &from_vm(RED, 22, &echo(VM22, REMOTE, 8, 1)),
    );
    assert!(run(&mut b, NOW, UPLINK, &transit).is_empty());
    assert_eq!(router_drops(&b, R1, DropReason::NotEdge), 2);
    assert_eq!(
        b.port_counters(TRUNK)
            .unwrap()
            .drops
            .get(DropReason::NotEdge),
        1
    );
    assert_eq!(
        b.port_counters(UPLINK)
            .unwrap()
            .drops
            .get(DropReason::NotEdge),
        1
    );
    // ARP for the uplink's address is not answered (it floods like any broadcast).
    let who = tagged(
        MacAddr::BROADCAST,
        UPSTREAM_MAC,
        EXT_VID,
        EtherType::ARP,
        &arp_payload(
            ArpOperation::Request,
            UPSTREAM_MAC,
            UPSTREAM,
            MacAddr([0; 6]),
            UPLINK_IP,
        ),
    );
    assert!(run(&mut b, NOW, TRUNK, &who).is_empty());
    assert_eq!(b.network_counters(EXT).unwrap().arp_suppressed, 0);
}

#[test]
fn the_edge_answers_arp_for_its_addresses_from_the_trunk_only() {
    let mut a = edge_a();
    a.apply(ConfigCommand::AddFloatingIp {
        router: R1,
        external: FLOATING,
        internal: addr(BLUE, 11),
    })
    .unwrap();
    assert_eq!(a.announce(&mut TxBatch::new()), 1);
    for target in [UPLINK_IP, FLOATING] {
        let who = tagged(
            MacAddr::BROADCAST,
            UPSTREAM_MAC,
            EXT_VID,
            EtherType::ARP,
            &arp_payload(
                ArpOperation::Request,
                UPSTREAM_MAC,
                UPSTREAM,
                MacAddr([0; 6]),
                target,
            ),
        );
        let out = at_now(&mut a, TRUNK, &who);
        let reply = untag(&only(&out, TRUNK));
        assert_eq!(&reply[..6], &UPSTREAM_MAC.0);
        assert_eq!(&reply[6..12], &UPLINK_MAC.0);
        assert_eq!(
            reply[14..],
            arp_payload(
                ArpOperation::Reply,
                UPLINK_MAC,
                target,
                UPSTREAM_MAC,
                UPSTREAM
            )[..]
        );
    }
    // Another address of the subnet: not the edge's to answer.
    let other = Ipv4Addr::new(203, 0, 113, 99);
    let who = tagged(
        MacAddr::BROADCAST,
        UPSTREAM_MAC,
        EXT_VID,
        EtherType::ARP,
        &arp_payload(
            ArpOperation::Request,
            UPSTREAM_MAC,
            UPSTREAM,
            MacAddr([0; 6]),
            other,
        ),
    );
    assert!(at_now(&mut a, TRUNK, &who).is_empty());
    // From a VM of the external network on this host (the edge): answered too.
    let vm = vinfra_switch::datapath::PortId(30);
    a.apply(add_port(
        vm,
        vinfra_switch::datapath::PortKind::Vm { network: EXT },
        1500,
    ))
    .unwrap();
    let out = at_now(
        &mut a,
        vm,
        &arp_request(mac(30), Ipv4Addr::new(203, 0, 113, 30), UPLINK_IP),
    );
    assert_eq!(reached(&out), [(vm, None)]);
    // A VM may not use the uplink's MAC.
    let spoof = arp_request(UPLINK_MAC, Ipv4Addr::new(203, 0, 113, 30), UPSTREAM);
    assert!(at_now(&mut a, vm, &spoof).is_empty());
    assert_eq!(
        a.port_counters(vm)
            .unwrap()
            .drops
            .get(DropReason::SpoofedGateway),
        1
    );
}

/// The gratuitous ARPs in `tx`: (sender MAC, address) of each, checked to be broadcast
/// requests on VLAN 82 out of the trunk with sender and target the same address.
fn garps(tx: &TxBatch) -> Vec<Ipv4Addr> {
    tx.iter()
        .map(|(f, bytes)| {
            assert_eq!(f.port, TRUNK);
            let frame = untag(bytes);
            assert_eq!(&frame[..6], &MacAddr::BROADCAST.0);
            assert_eq!(&frame[6..12], &UPLINK_MAC.0);
            assert_eq!(&frame[12..14], &[0x08, 0x06]);
            assert_eq!(&frame[20..22], &[0, 1], "a request");
            assert_eq!(&frame[22..28], &UPLINK_MAC.0);
            assert_eq!(frame[28..32], frame[38..42], "sender and target the same");
            Ipv4Addr::from(<[u8; 4]>::try_from(&frame[28..32]).unwrap())
        })
        .collect()
}

#[test]
fn becoming_the_edge_announces_the_uplink_and_its_floating_ips() {
    let mut b = host_b_remote();
    b.apply(ConfigCommand::AddFloatingIp {
        router: R1,
        external: FLOATING,
        internal: VM22,
    })
    .unwrap();
    let mut tx = TxBatch::new();
    assert_eq!(b.announce(&mut tx), 0, "not the edge: nothing to announce");
    // The edge moves here.
    b.apply(uplink(Edge::Local)).unwrap();
    assert_eq!(b.announce(&mut tx), 2);
    let mut sent = garps(&tx);
    sent.sort();
    assert_eq!(sent, [UPLINK_IP, FLOATING]);
    // A floating IP added on the edge is announced; the same one again is not.
    let second = Ipv4Addr::new(203, 0, 113, 51);
    let add = ConfigCommand::AddFloatingIp {
        router: R1,
        external: second,
        internal: addr(RED, 23),
    };
    b.apply(add.clone()).unwrap();
    b.apply(add).unwrap();
    let mut tx = TxBatch::new();
    // A batch sends what is pending first.
    b.process(NOW, [], &mut tx);
    assert_eq!(garps(&tx), [second]);
    assert_eq!(b.router_counters(R1).unwrap().nat.unwrap().garps_sent, 3);
}

#[track_caller]
fn refused(s: &mut vinfra_switch::datapath::Switch, command: ConfigCommand) -> UplinkError {
    match s.apply(command) {
        Err(ConfigError::Uplink { router, source }) => {
            assert_eq!(router, R1);
            source
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_uplink_commands_are_refused_and_change_nothing() {
    let mut s = edge_a();
    let before = s.router_uplink(R1);
    let set = |f: &dyn Fn(&mut ConfigCommand)| {
        let mut c = uplink(Edge::Local);
        f(&mut c);
        c
    };
    macro_rules! field {
        ($name:ident = $value:expr) => {
            set(&|c| {
                if let ConfigCommand::SetRouterUplink { $name, .. } = c {
                    *$name = $value;
                }
            })
        };
    }
    assert_eq!(
        refused(&mut s, field!(network = GREEN)),
        UplinkError::NetworkIsGateway {
            network: GREEN,
            router: R1
        }
    );
    assert_eq!(
        refused(&mut s, field!(network = BLUE)),
        UplinkError::NotVlan(BLUE)
    );
    assert_eq!(
        refused(&mut s, field!(transit_vni = 1 << 24)),
        UplinkError::TransitVniTooLarge(1 << 24)
    );
    assert_eq!(
        refused(&mut s, field!(transit_vni = 5001)),
        UplinkError::TransitVniIsNetwork {
            vni: Vni::new(5001).unwrap(),
            network: BLUE
        }
    );
    assert_eq!(
        refused(&mut s, field!(prefix_len = 0)),
        UplinkError::BadPrefixLength(0)
    );
    assert_eq!(
        refused(&mut s, field!(addr = Ipv4Addr::new(203, 0, 113, 255))),
        UplinkError::NotHostAddress {
            addr: Ipv4Addr::new(203, 0, 113, 255),
            prefix_len: 24
        }
    );
    assert_eq!(
        refused(&mut s, field!(addr = Ipv4Addr::new(224, 0, 0, 1))),
        UplinkError::NotUnicastAddress(Ipv4Addr::new(224, 0, 0, 1))
    );
    assert_eq!(
        refused(&mut s, field!(mac = MacAddr::BROADCAST)),
        UplinkError::NotUnicastMac(MacAddr::BROADCAST)
    );
    assert_eq!(
        refused(&mut s, field!(mtu = Some(67))),
        UplinkError::MtuTooSmall(67)
    );
    assert_eq!(
        refused(&mut s, field!(addr = Ipv4Addr::new(10, 1, 0, 200))),
        UplinkError::Overlaps {
            addr: Ipv4Addr::new(10, 1, 0, 200),
            prefix_len: 24,
            other: BLUE
        }
    );
    assert!(matches!(
        s.apply(field!(router = vinfra_switch::datapath::RouterId(7))),
        Err(ConfigError::NoSuchRouter(_))
    ));
    assert!(matches!(
        s.apply(field!(network = NetworkId(77))),
        Err(ConfigError::NoSuchNetwork(_))
    ));
    // Another router may not take the network or the transit VNI.
    let r2 = vinfra_switch::datapath::RouterId(2);
    s.apply(ConfigCommand::AddRouter(r2)).unwrap();
    let other = ConfigCommand::SetRouterUplink {
        router: r2,
        network: EXT,
        addr: Ipv4Addr::new(203, 0, 113, 3),
        prefix_len: 24,
        mac: MacAddr([2, 0x76, 0x72, 1, 0, 2]),
        edge: Edge::Local,
        transit_vni: 0xff_0002,
        mtu: None,
    };
    assert!(matches!(
        s.apply(other),
        Err(ConfigError::Uplink {
            source: UplinkError::NetworkIsUplink { .. },
            ..
        })
    ));
    // The external network takes no gateway, and no network the transit VNI.
    assert_eq!(
        s.apply(interface(R1, EXT)),
        Err(ConfigError::NetworkIsUplink {
            network: EXT,
            router: R1
        })
    );
    assert!(matches!(
        s.apply(ConfigCommand::AddNetwork {
            id: NetworkId(40),
            segment: Segment::Overlay {
                vni: Vni::new(TRANSIT).unwrap()
            }
        }),
        Err(ConfigError::VniIsTransit { .. })
    ));
    // Floating IPs.
    let floating = |external: Ipv4Addr, internal: Ipv4Addr| ConfigCommand::AddFloatingIp {
        router: R1,
        external,
        internal,
    };
    let vm = addr(BLUE, 11);
    assert_eq!(
        refused(&mut s, floating(UPLINK_IP, vm)),
        UplinkError::FloatingIsUplink(UPLINK_IP)
    );
    let outside = Ipv4Addr::new(198, 51, 100, 1);
    assert_eq!(
        refused(&mut s, floating(outside, vm)),
        UplinkError::FloatingNotInSubnet(outside)
    );
    assert_eq!(
        refused(&mut s, floating(FLOATING, REMOTE)),
        UplinkError::InternalNotOnRouter(REMOTE)
    );
    assert_eq!(
        refused(&mut s, floating(FLOATING, gw_ip(BLUE))),
        UplinkError::InternalNotOnRouter(gw_ip(BLUE))
    );
    s.apply(floating(FLOATING, vm)).unwrap();
    let second = Ipv4Addr::new(203, 0, 113, 51);
    assert_eq!(
        refused(&mut s, floating(second, vm)),
        UplinkError::InternalTaken {
            internal: vm,
            external: FLOATING
        }
    );
    // The same floating IP again is no change.
    s.apply(floating(FLOATING, vm)).unwrap();
    assert_ne!(s.router_uplink(R1), before);
    let after = s.router_uplink(R1).unwrap();
    assert_eq!(after.floating_ips, [(FLOATING, vm)]);
    assert_eq!(after.interface.addr, UPLINK_IP);
    // No uplink, no floating IP.
    s.apply(ConfigCommand::RemoveRouterUplink(R1)).unwrap();
    assert_eq!(
        refused(&mut s, floating(FLOATING, vm)),
        UplinkError::NoUplink
    );
    // Removing the network or the router takes the uplink along.
    s.apply(uplink(Edge::Local)).unwrap();
    s.apply(ConfigCommand::RemoveNetwork(EXT)).unwrap();
    assert!(s.router_uplink(R1).is_none());
    s.apply(ConfigCommand::AddNetwork {
        id: EXT,
        segment: Segment::Vlan {
            vid: VlanId::new(EXT_VID).unwrap(),
        },
    })
    .unwrap();
    s.apply(uplink(Edge::Local)).unwrap();
    s.apply(ConfigCommand::RemoveRouter(R1)).unwrap();
    s.apply(ConfigCommand::AddRouter(R1)).unwrap();
    assert!(s.router_uplink(R1).is_none());
    // The transit VNI is free again.
    s.apply(ConfigCommand::AddNetwork {
        id: NetworkId(40),
        segment: Segment::Overlay {
            vni: Vni::new(TRANSIT).unwrap(),
        },
    })
    .unwrap();
}
