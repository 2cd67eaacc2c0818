//! What the router answers when it cannot route: ICMP time exceeded, net and host unreachable,
//! fragmentation needed (their contents, the cases that never get one, the switch's rate);
//! neighbours asked for with ARP, learned from replies on this host or another, refreshed and
//! aged; static routes and their next hops.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::hosts::carry;
use common::routing::*;
use common::*;
use vinfra_switch::datapath::firewall::rules::Prefix;
use vinfra_switch::datapath::{
    ConfigCommand, DropReason, IcmpError, Location, PortId, PortKind, PortPolicy, StormControl,
    TxBatch, ICMP_ERROR_RATE, NEIGHBOUR_LIFETIME, NEIGHBOUR_REFRESH,
};
use vinfra_switch::wire::{decapsulate, ArpOperation, ArpRepr, EtherType, MacAddr, Vni};

/// A frame from VM 11 (blue) to the gateway with the given packet.
fn from_blue(p: &[u8]) -> Vec<u8> {
    eth(gw_mac(BLUE), mac(11), EtherType::IPV4, p)
}

fn secs(s: u64) -> Duration {
    NOW + Duration::from_secs(s)
}

#[test]
fn ttl_1_gets_time_exceeded_from_the_ingress_gateway_quoting_the_packet() {
    let mut s = host_a();
    let big = packet(addr(BLUE, 11), addr(RED, 12), 17, 1, &udp_body(1000));
    let out = run(&mut s, NOW, VM_BLUE, &from_blue(&big));
    assert_eq!(reached(&out), vec![(VM_BLUE, None)]);
    let (dst, src, ip) = split(&out[0].2);
    assert_eq!((dst, src), (mac(11), gw_mac(BLUE)));
    // 576 bytes at most: the original header and as much of its data as fits.
    assert_eq!(ip.len(), 576);
    assert_eq!(ip[1], 0xc0, "network control");
    let icmp = icmp_from(&out[0].2, gw_ip(BLUE), addr(BLUE, 11), 11, 0);
    assert_eq!(icmp[4..8], [0; 4]);
    assert_eq!(icmp[8..], big[..548]);
    // A short packet is quoted whole; TTL 0 too.
    let small = packet(addr(BLUE, 11), addr(RED, 12), 17, 0, &udp_body(4));
    let out = run(&mut s, NOW, VM_BLUE, &from_blue(&small));
    let icmp = icmp_from(&out[0].2, gw_ip(BLUE), addr(BLUE, 11), 11, 0);
    assert_eq!(icmp[8..], small[..]);
    assert_eq!(dropped(&s, VM_BLUE, DropReason::TtlExceeded), (2, 2));
    let c = s.router_counters(R1).unwrap();
    assert_eq!(c.icmp(IcmpError::TimeExceeded), 2);
    assert_eq!(c.drops.get(DropReason::TtlExceeded), 2);
    assert_eq!(c.routed_packets, 0);
    assert_eq!(s.port_counters(VM_RED).unwrap().tx_packets, 0);
    // TTL 2 goes through, with 1 left.
    let two = packet(addr(BLUE, 11), addr(RED, 12), 17, 2, &udp_body(4));
    let out = run(&mut s, NOW, VM_BLUE, &from_blue(&two));
    assert_eq!(reached(&out), vec![(VM_RED, None)]);
    assert_eq!(split(&out[0].2).2[8], 1);
}

#[test]
fn no_route_gets_net_unreachable_and_static_routes_take_what_they_cover() {
    let mut s = host_a();
    let away = Ipv4Addr::new(198, 51, 100, 7);
    let p = packet(addr(BLUE, 11), away, 17, 64, &udp_body(20));
    let out = run(&mut s, NOW, VM_BLUE, &from_blue(&p));
    let icmp = icmp_from(&out[0].2, gw_ip(BLUE), addr(BLUE, 11), 3, 0);
    assert_eq!(icmp[8..], p[..]);
    assert_eq!(dropped(&s, VM_BLUE, DropReason::NoRoute), (1, 1));
    assert_eq!(
        s.router_counters(R1)
            .unwrap()
            .icmp(IcmpError::NetUnreachable),
        1
    );
    // A route whose next hop is on none of the router's networks is kept but not used.
    let offnet = Prefix {
        addr: Ipv4Addr::new(198, 51, 100, 0),
        len: 24,
    };
    s.apply(ConfigCommand::AddRoute {
        router: R1,
        prefix: offnet,
        via: Ipv4Addr::new(10, 9, 0, 1),
    })
    .unwrap();
    assert_eq!(
        s.routes(R1).unwrap(),
        vec![(offnet, Ipv4Addr::new(10, 9, 0, 1))]
    );
    assert!(run(&mut s, NOW, VM_BLUE, &from_blue(&p))
        .iter()
        .all(|o| o.0 == VM_BLUE));
    assert_eq!(dropped(&s, VM_BLUE, DropReason::NoRoute), (2, 2));
    // A default route through a router on red (registered at host B) takes it.
    for c in registered(RED, 254, Location::Vtep(VTEP_B)) {
        s.apply(c).unwrap();
    }
    s.apply(ConfigCommand::AddRoute {
        router: R1,
        prefix: Prefix {
            addr: Ipv4Addr::UNSPECIFIED,
            len: 0,
        },
        via: addr(RED, 254),
    })
    .unwrap();
    let out = run(&mut s, NOW, VM_BLUE, &from_blue(&p));
    assert_eq!(reached(&out), vec![(UPLINK, Some(VTEP_B))]);
    let d = decapsulate(&out[0].2).unwrap();
    assert_eq!(d.vni, Vni::new(5002).unwrap());
    let (dst, src, ip) = split(d.inner);
    assert_eq!((dst, src), (mac(254), gw_mac(RED)));
    assert_eq!(&ip[16..20], &away.octets());
    // Connected routes are longer: red's VMs still go straight to them.
    let out = run(
        &mut s,
        NOW,
        VM_BLUE,
        &routed_udp(BLUE, 11, addr(RED, 12), 5),
    );
    assert_eq!(reached(&out), vec![(VM_RED, None)]);
    // The off-network route comes into use once an interface holds its next hop.
    s.apply(ConfigCommand::SetRouterInterface {
        router: R1,
        network: GREEN,
        addr: Ipv4Addr::new(10, 9, 0, 2),
        prefix_len: 16,
        mac: gw_mac(GREEN),
        mtu: None,
    })
    .unwrap();
    for c in registered(GREEN, 77, Location::Port(VM_GREEN)) {
        s.apply(c).unwrap();
    }
    s.apply(ConfigCommand::AddArpEntry {
        network: GREEN,
        ip: Ipv4Addr::new(10, 9, 0, 1),
        mac: mac(77),
    })
    .unwrap();
    let out = run(&mut s, NOW, VM_BLUE, &from_blue(&p));
    assert_eq!(reached(&out), vec![(VM_GREEN, None)]);
    assert_eq!(split(&out[0].2).0, mac(77));
}

#[test]
fn no_icmp_error_about_an_icmp_error_a_later_fragment_or_a_martian() {
    let mut s = host_a();
    let (src, dst) = (addr(BLUE, 11), addr(RED, 12));
    let mut unreachable = vec![3, 1, 0, 0, 0, 0, 0, 0];
    unreachable.extend_from_slice(&packet(dst, src, 17, 64, &udp_body(4)));
    let about_error = packet(src, dst, 1, 1, &unreachable);
    let mut later = packet(src, dst, 17, 1, &[0; 16]);
    later[6..8].copy_from_slice(&100u16.to_be_bytes());
    refill(&mut later);
    for p in [about_error, later] {
        assert!(run(&mut s, NOW, VM_BLUE, &from_blue(&p)).is_empty());
    }
    assert_eq!(dropped(&s, VM_BLUE, DropReason::TtlExceeded), (2, 2));
    // An echo request is no error: it gets one.
    let ping = packet(src, dst, 1, 1, &echo_request(1, b"x"));
    let out = run(&mut s, NOW, VM_BLUE, &from_blue(&ping));
    icmp_from(&out[0].2, gw_ip(BLUE), src, 11, 0);
    // Addresses a router never forwards: dropped, nothing sent back.
    for (from, to) in [
        (Ipv4Addr::UNSPECIFIED, dst),
        (src, Ipv4Addr::BROADCAST),
        (src, Ipv4Addr::new(224, 0, 0, 5)),
        (src, Ipv4Addr::new(127, 0, 0, 1)),
        (src, Ipv4Addr::new(10, 2, 0, 255)),
        (src, Ipv4Addr::new(10, 2, 0, 0)),
        // A source claiming one of the router's own addresses (a martian source).
        (gw_ip(RED), dst),
    ] {
        let p = packet(from, to, 17, 64, &udp_body(4));
        assert!(
            run(&mut s, NOW, VM_BLUE, &from_blue(&p)).is_empty(),
            "{from} {to}"
        );
    }
    assert_eq!(dropped(&s, VM_BLUE, DropReason::Martian), (7, 7));
    assert_eq!(
        s.router_counters(R1).unwrap().icmp(IcmpError::TimeExceeded),
        1
    );
}

#[test]
fn icmp_errors_are_rate_limited_for_the_whole_switch() {
    let mut s = host_a();
    let burst = u64::from(ICMP_ERROR_RATE.burst);
    let expiring = from_blue(&packet(addr(BLUE, 11), addr(RED, 12), 17, 1, &udp_body(8)));
    let from_green = eth(
        gw_mac(GREEN),
        mac(15),
        EtherType::IPV4,
        &packet(addr(GREEN, 15), addr(RED, 12), 17, 1, &udp_body(8)),
    );
    let mut tx = TxBatch::new();
    let batch = std::iter::repeat_n((VM_BLUE, expiring.as_slice()), burst as usize + 20)
        .chain(std::iter::repeat_n((VM_GREEN, from_green.as_slice()), 10));
    s.process(NOW, batch, &mut tx);
    assert_eq!(tx.len() as u64, burst);
    let c = s.router_counters(R1).unwrap();
    assert_eq!(
        (c.icmp(IcmpError::TimeExceeded), c.icmp_rate_limited),
        (burst, 30)
    );
    assert_eq!(c.drops.get(DropReason::TtlExceeded), burst + 30);
    // A tenth of a second later, a tenth of the rate again.
    let out = (0..20)
        .filter(|_| {
            !run(
                &mut s,
                NOW + Duration::from_millis(100),
                VM_GREEN,
                &from_green,
            )
            .is_empty()
        })
        .count();
    assert_eq!(out as u32, ICMP_ERROR_RATE.frames_per_sec / 10);
}

#[test]
fn too_big_for_the_egress_gets_fragmentation_needed_with_df_and_is_dropped_without() {
    let mut s = host_a();
    let small = PortId(6);
    s.apply(add_port(small, PortKind::Vm { network: RED }, 1000))
        .unwrap();
    for c in registered(RED, 16, Location::Port(small)) {
        s.apply(c).unwrap();
    }
    let sized = |total: usize, df: bool| {
        let mut p = packet(addr(BLUE, 11), addr(RED, 16), 17, 64, &udp_body(total - 28));
        if !df {
            p[6] = 0;
            refill(&mut p);
        }
        from_blue(&p)
    };
    let out = run(&mut s, NOW, VM_BLUE, &sized(1200, true));
    let icmp = icmp_from(&out[0].2, gw_ip(BLUE), addr(BLUE, 11), 3, 4);
    assert_eq!(icmp[4..8], [0, 0, 0x03, 0xe8], "next-hop MTU 1000");
    assert_eq!(
        dropped(&s, VM_BLUE, DropReason::FragmentationNeeded),
        (1, 1)
    );
    assert!(run(&mut s, NOW, VM_BLUE, &sized(1200, false)).is_empty());
    assert_eq!(dropped(&s, VM_BLUE, DropReason::Oversized), (1, 1));
    let out = run(&mut s, NOW, VM_BLUE, &sized(1000, true));
    assert_eq!(reached(&out), vec![(small, None)]);
    // To another host the overlay's MTU counts: the uplink's 1500 less 50.
    let mut green = packet(addr(GREEN, 15), addr(RED, 22), 17, 64, &udp_body(1452));
    green[1] = 0;
    let out = run(
        &mut s,
        NOW,
        VM_GREEN,
        &eth(gw_mac(GREEN), mac(15), EtherType::IPV4, &green),
    );
    let icmp = icmp_from(&out[0].2, gw_ip(GREEN), addr(GREEN, 15), 3, 4);
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1450);
    let c = s.router_counters(R1).unwrap();
    assert_eq!(c.icmp(IcmpError::FragmentationNeeded), 2);
    assert_eq!(c.routed_packets, 1);
    // A large TCP segment: its segments must fit.
    let frame = offload_tcp_frame(
        gw_mac(BLUE),
        mac(13),
        (addr(BLUE, 13), 40000),
        (addr(RED, 16), 5201),
        PSH_ACK,
        &data(10_000),
    );
    let out = run_offload(&mut s, TAP_BLUE, &frame, tcp_gso(1398));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, TAP_BLUE);
    let copy = &out[0].3;
    icmp_from(copy, gw_ip(BLUE), addr(BLUE, 13), 3, 4);
    let out = run_offload(&mut s, TAP_BLUE, &frame, tcp_gso(948));
    assert!(out.iter().all(|o| o.0 == small && o.3.len() <= 14 + 1000));
    assert_eq!(out.len(), 10_000usize.div_ceil(948));
}

/// The ARP request the router sends for `target` from red's gateway.
fn red_request(target: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::BROADCAST,
        gw_mac(RED),
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: gw_mac(RED),
            source_protocol_addr: gw_ip(RED),
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: target,
        },
    )
}

/// `who`'s ARP reply (from `mac`) to red's gateway.
fn reply_to_red(who: Ipv4Addr, from: MacAddr) -> Vec<u8> {
    arp_frame(
        gw_mac(RED),
        from,
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: from,
            source_protocol_addr: who,
            target_hardware_addr: gw_mac(RED),
            target_protocol_addr: gw_ip(RED),
        },
    )
}

#[test]
fn an_unknown_neighbour_is_asked_for_and_host_unreachable_comes_after_3_s() {
    let mut s = host_a();
    let target = addr(RED, 50);
    let p = from_blue(&packet(addr(BLUE, 11), target, 17, 64, &udp_body(8)));
    // The request goes to every port and host of red; the packet is dropped.
    let out = run(&mut s, NOW, VM_BLUE, &p);
    assert_eq!(
        reached(&out),
        vec![(VM_RED, None), (TAP_RED, None), (UPLINK, Some(VTEP_B))]
    );
    for (port, _, bytes) in &out {
        let frame = if *port == UPLINK {
            let d = decapsulate(bytes).unwrap();
            assert_eq!(d.vni, Vni::new(5002).unwrap());
            d.inner.to_vec()
        } else {
            bytes.clone()
        };
        assert_eq!(frame, red_request(target));
    }
    assert_eq!(dropped(&s, VM_BLUE, DropReason::NeighbourUnknown), (1, 1));
    // No second request within a second, no ICMP before 3 s.
    assert!(run(&mut s, secs(0) + Duration::from_millis(900), VM_BLUE, &p).is_empty());
    assert_eq!(run(&mut s, secs(1), VM_BLUE, &p).len(), 3);
    assert_eq!(run(&mut s, secs(2), VM_BLUE, &p).len(), 3);
    let out = run(&mut s, secs(3), VM_BLUE, &p);
    assert_eq!(out.len(), 4);
    let back: Vec<_> = out.iter().filter(|o| o.0 == VM_BLUE).collect();
    let icmp = icmp_from(&back[0].2, gw_ip(BLUE), addr(BLUE, 11), 3, 1);
    assert_eq!(
        icmp[8..],
        packet(addr(BLUE, 11), target, 17, 64, &udp_body(8))[..]
    );
    let c = s.router_counters(R1).unwrap();
    assert_eq!(c.arp_requests, 4);
    assert_eq!(c.icmp(IcmpError::HostUnreachable), 1);
    assert_eq!(c.drops.get(DropReason::NeighbourUnknown), 5);
    // A next hop of a static route that does not answer gets no ICMP.
    s.apply(ConfigCommand::AddRoute {
        router: R1,
        prefix: Prefix {
            addr: Ipv4Addr::new(192, 0, 2, 0),
            len: 24,
        },
        via: addr(RED, 60),
    })
    .unwrap();
    let q = from_blue(&packet(
        addr(BLUE, 11),
        Ipv4Addr::new(192, 0, 2, 9),
        17,
        64,
        &udp_body(8),
    ));
    for t in 0..5 {
        let out = run(&mut s, secs(10 + t), VM_BLUE, &q);
        assert!(out.iter().all(|o| o.0 != VM_BLUE));
        assert_eq!(out[0].2, red_request(addr(RED, 60)));
    }
}

#[test]
fn neighbours_are_learned_from_replies_refreshed_and_aged() {
    let mut s = host_a();
    let target = addr(RED, 50);
    let p = from_blue(&packet(addr(BLUE, 11), target, 17, 64, &udp_body(8)));
    run(&mut s, NOW, VM_BLUE, &p);
    // The answer comes from host B (the neighbour is there): consumed and learned.
    let answer = vxlan(VTEP_B, VTEP_A, 5002, &reply_to_red(target, mac(50)));
    assert!(run(&mut s, NOW, UPLINK, &answer).is_empty());
    assert_eq!(s.router_neighbours(R1), vec![(RED, target, mac(50))]);
    assert_eq!(s.lookup(RED, mac(50), NOW), Some(Location::Vtep(VTEP_B)));
    let out = run(&mut s, NOW, VM_BLUE, &p);
    assert_eq!(reached(&out), vec![(UPLINK, Some(VTEP_B))]);
    assert_eq!(split(decapsulate(&out[0].2).unwrap().inner).0, mac(50));
    // Unsolicited replies teach nothing, also from a local port (which is shared with the
    // other hosts, not the local ports).
    let unsolicited = reply_to_red(addr(RED, 60), mac(12));
    let out = run(&mut s, NOW, VM_RED, &unsolicited);
    assert_eq!(reached(&out), vec![(UPLINK, Some(VTEP_B))]);
    assert_eq!(decapsulate(&out[0].2).unwrap().inner, unsolicited);
    assert_eq!(s.router_neighbours(R1).len(), 1);
    assert_eq!(s.router_counters(R1).unwrap().neighbours_learned, 1);
    // In use past the refresh time: still routed, and asked for again.
    let out = run(&mut s, NOW + NEIGHBOUR_REFRESH, VM_BLUE, &p);
    assert_eq!(out.len(), 4);
    assert_eq!(out.iter().filter(|o| o.0 == VM_RED).count(), 1);
    assert_eq!(out.last().unwrap().1, Some(VTEP_B));
    // Without an answer it expires: asked for, the packet dropped.
    let late = NOW + NEIGHBOUR_LIFETIME;
    assert!(s.expire(late) >= 1);
    assert_eq!(s.router_neighbours(R1), vec![]);
    let out = run(&mut s, late, VM_BLUE, &p);
    assert_eq!(out.len(), 3);
    assert_eq!(dropped(&s, VM_BLUE, DropReason::NeighbourUnknown), (2, 2));
    // Removing red's interface forgets its neighbours.
    run(&mut s, late, UPLINK, &answer);
    assert_eq!(s.router_neighbours(R1).len(), 1);
    s.apply(ConfigCommand::RemoveRouterInterface(RED)).unwrap();
    assert_eq!(s.router_neighbours(R1), vec![]);
}

#[test]
fn a_neighbour_on_another_host_is_resolved_through_its_hosts_switch() {
    let (mut a, mut b) = (host_a(), host_b());
    // 10.2.0.23 has no registered address: host A's router asks on red.
    let target = addr(RED, 23);
    let p = from_blue(&packet(addr(BLUE, 11), target, 17, 64, &udp_body(8)));
    let asked = run(&mut a, NOW, VM_BLUE, &p);
    // Host B floods the request to its VM, which answers the gateway's MAC on host B: host
    // B's switch sends the answer on to the other hosts, not to its own ports.
    let at_b = carry(&asked, &mut b, VTEP_B, NOW);
    assert_eq!(reached(&at_b), vec![(VM_B, None)]);
    let answer = run(&mut b, NOW, VM_B, &reply_to_red(target, mac(22)));
    assert_eq!(reached(&answer), vec![(UPLINK, Some(VTEP_A))]);
    assert!(carry(&answer, &mut a, VTEP_A, NOW).is_empty());
    assert_eq!(a.router_neighbours(R1), vec![(RED, target, mac(22))]);
    // Host B did not ask: it learned nothing.
    assert_eq!(b.router_neighbours(R1), vec![]);
    let out = run(&mut a, NOW, VM_BLUE, &p);
    assert_eq!(reached(&out), vec![(UPLINK, Some(VTEP_B))]);
    let delivered = carry(&out, &mut b, VTEP_B, NOW);
    assert_eq!(reached(&delivered), vec![(VM_B, None)]);
}

#[test]
fn what_the_router_floods_for_a_port_counts_against_its_storm_control() {
    let mut s = host_a();
    let storm = |burst| PortPolicy {
        allowed: None,
        mac_limit: None,
        storm: Some(StormControl {
            frames_per_sec: 1,
            burst,
        }),
    };
    for (port, burst) in [(VM_BLUE, 2), (VM_RED, 1)] {
        s.apply(ConfigCommand::SetPortPolicy {
            port,
            policy: storm(burst),
        })
        .unwrap();
    }
    // Three unknown neighbours at once: two ARP requests, then none.
    let asked: Vec<usize> = (50..53)
        .map(|last| {
            let p = from_blue(&packet(
                addr(BLUE, 11),
                addr(RED, last),
                17,
                64,
                &udp_body(8),
            ));
            run(&mut s, NOW, VM_BLUE, &p).len()
        })
        .collect();
    assert_eq!(asked, vec![3, 3, 0]);
    assert_eq!(
        s.port_counters(VM_BLUE)
            .unwrap()
            .drops
            .get(DropReason::StormControl),
        1
    );
    assert_eq!(router_drops(&s, R1, DropReason::NeighbourUnknown), 3);
    // Known destinations are not flooded: routed whatever the bucket holds.
    let out = run(
        &mut s,
        NOW,
        VM_BLUE,
        &routed_udp(BLUE, 11, addr(RED, 12), 8),
    );
    assert_eq!(reached(&out), vec![(VM_RED, None)]);
    // A local port's ARP replies to the gateway go to the other hosts within its bucket too.
    let reply = reply_to_red(addr(RED, 60), mac(12));
    assert_eq!(run(&mut s, NOW, VM_RED, &reply).len(), 1);
    assert!(run(&mut s, NOW, VM_RED, &reply).is_empty());
    // Red counts both: the request it would have carried, and the reply.
    assert_eq!(dropped(&s, VM_RED, DropReason::StormControl), (1, 2));
}

#[test]
fn the_networks_mtu_on_its_interface_bounds_what_is_routed_to_another_host() {
    let mut s = host_a();
    // Red's VMs have 1,200-byte NICs; the underlay alone would allow 1,450 to host B.
    s.apply(ConfigCommand::SetRouterInterface {
        router: R1,
        network: RED,
        addr: gw_ip(RED),
        prefix_len: 24,
        mac: gw_mac(RED),
        mtu: Some(1200),
    })
    .unwrap();
    let sized = |total: usize| {
        from_blue(&packet(
            addr(BLUE, 11),
            addr(RED, 22),
            17,
            64,
            &udp_body(total - 28),
        ))
    };
    let out = run(&mut s, NOW, VM_BLUE, &sized(1300));
    let icmp = icmp_from(&out[0].2, gw_ip(BLUE), addr(BLUE, 11), 3, 4);
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1200);
    let out = run(&mut s, NOW, VM_BLUE, &sized(1200));
    assert_eq!(out.len(), 1, "a packet of the network's MTU goes");
    assert_eq!(out[0].0, UPLINK);
    // Below the IPv4 minimum the interface is refused and the old one stays.
    let refused = s.apply(ConfigCommand::SetRouterInterface {
        router: R1,
        network: RED,
        addr: gw_ip(RED),
        prefix_len: 24,
        mac: gw_mac(RED),
        mtu: Some(67),
    });
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(s.gateway(RED).and_then(|g| g.mtu), Some(1200));
}
