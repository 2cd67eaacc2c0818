//! Routing in the core: packets between the networks of a router on the sender's host (TTL and
//! MACs rewritten, then delivered to a local port, a remote host with the egress network's VNI,
//! the trunk), large TCP segments routed whole or cut, the gateway's ARP and ping, the gateway
//! MAC and address kept from local ports, frames for the gateway from elsewhere, two routers
//! with the same subnets, fragments, options and malformed headers, the receiving port's
//! firewall and the sender's DSCP mark.

mod common;

use std::net::Ipv4Addr;

use common::hosts::carry;
use common::routing::*;
use common::*;
use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, PortRange, Prefix, Protocol,
};
use vinfra_switch::datapath::{
    ConfigCommand, DhcpConfig, DropReason, Location, NetworkId, PortId, PortKind, RouterId, Segment,
};
use vinfra_switch::wire::decapsulate;
use vinfra_switch::wire::{
    ArpOperation, ArpRepr, DhcpMessageType, DhcpOp, EtherType, MacAddr, Offload, Vni,
};

/// Checks a routed copy of `sent` (an Ethernet frame to a gateway): from `src` to `dst`, the
/// TTL one less with a valid header checksum, every other byte of the packet as sent.
fn check_routed(copy: &[u8], sent: &[u8], dst: MacAddr, src: MacAddr) {
    let (d, s, ip) = split(copy);
    assert_eq!((d, s), (dst, src));
    let before = &sent[14..];
    assert_eq!(ip.len(), before.len());
    assert_eq!(ip[8], before[8] - 1, "TTL");
    let header_len = usize::from(ip[0] & 0xf) * 4;
    assert_eq!(ones_sum(&ip[..header_len]), 0xffff, "header checksum");
    assert_eq!(ip[..8], before[..8]);
    assert_eq!(ip[9], before[9]);
    assert_eq!(ip[12..], before[12..]);
}

#[test]
fn a_packet_is_routed_to_a_vm_on_another_network_of_this_host() {
    let mut s = host_a();
    let frame = routed_udp(BLUE, 11, addr(RED, 12), 100);
    let out = run(&mut s, NOW, VM_BLUE, &frame);
    assert_eq!(reached(&out), vec![(VM_RED, None)]);
    check_routed(&out[0].2, &frame, mac(12), gw_mac(RED));
    let c = s.router_counters(R1).unwrap();
    assert_eq!((c.routed_packets, c.routed_bytes), (1, frame.len() as u64));
    assert_eq!(c.drops.total(), 0);
    assert_eq!(s.network_counters(BLUE).unwrap().traffic.rx_packets, 1);
    assert_eq!(s.network_counters(RED).unwrap().traffic.tx_packets, 1);
    assert_eq!(s.network_counters(BLUE).unwrap().traffic.tx_packets, 0);
    assert_eq!(s.port_counters(VM_RED).unwrap().tx_packets, 1);
    // The sender was learned; the gateway MAC never is.
    assert_eq!(s.lookup(BLUE, mac(11), NOW), Some(Location::Port(VM_BLUE)));
    assert!(s.mac_entries(RED).iter().all(|(m, _)| *m != gw_mac(RED)));
    // To a VM of its own network through the gateway: routed back into it.
    let hairpin = routed_udp(BLUE, 11, addr(BLUE, 13), 10);
    let out = run(&mut s, NOW, VM_BLUE, &hairpin);
    assert_eq!(reached(&out), vec![(TAP_BLUE, None)]);
    check_routed(&out[0].2, &hairpin, mac(13), gw_mac(BLUE));
}

#[test]
fn a_packet_to_a_vm_on_another_host_leaves_in_the_egress_vni_and_is_delivered_there() {
    let (mut a, mut b) = (host_a(), host_b());
    let frame = routed_udp(BLUE, 11, addr(RED, 22), 200);
    let out = run(&mut a, NOW, VM_BLUE, &frame);
    assert_eq!(reached(&out), vec![(UPLINK, Some(VTEP_B))]);
    let d = decapsulate(&out[0].2).unwrap();
    assert_eq!(d.vni, Vni::new(5002).unwrap());
    check_routed(d.inner, &frame, mac(22), gw_mac(RED));
    // Host B delivers it as any frame of red: not routed again, the gateway MAC not learned.
    let delivered = carry(&out, &mut b, VTEP_B, NOW);
    assert_eq!(reached(&delivered), vec![(VM_B, None)]);
    assert_eq!(delivered[0].2, d.inner);
    assert_eq!(b.lookup(RED, gw_mac(RED), NOW), None);
    assert_eq!(b.router_counters(R1).unwrap().routed_packets, 0);
    // The answer is routed on host B and reaches host A in blue's VNI.
    let answer = routed_udp(RED, 22, addr(BLUE, 11), 50);
    let out = run(&mut b, NOW, VM_B, &answer);
    assert_eq!(reached(&out), vec![(UPLINK, Some(VTEP_A))]);
    assert_eq!(decapsulate(&out[0].2).unwrap().vni, Vni::new(5001).unwrap());
    let back = carry(&out, &mut a, VTEP_A, NOW);
    assert_eq!(reached(&back), vec![(VM_BLUE, None)]);
    check_routed(&back[0].2, &answer, mac(11), gw_mac(BLUE));
    assert_eq!(a.lookup(BLUE, gw_mac(BLUE), NOW), None);
    assert_eq!(b.router_counters(R1).unwrap().routed_packets, 1);
}

#[test]
fn a_packet_to_the_vlan_network_goes_tagged_to_the_trunk() {
    let mut s = host_a();
    let physical = [
        ConfigCommand::AddMacEntry {
            network: GREEN,
            mac: mac(99),
            location: Location::Port(TRUNK),
        },
        ConfigCommand::AddArpEntry {
            network: GREEN,
            ip: addr(GREEN, 99),
            mac: mac(99),
        },
    ];
    for c in physical {
        s.apply(c).unwrap();
    }
    let frame = routed_udp(BLUE, 11, addr(GREEN, 99), 64);
    let out = run(&mut s, NOW, VM_BLUE, &frame);
    assert_eq!(reached(&out), vec![(TRUNK, None)]);
    assert_eq!(&out[0].2[12..16], &[0x81, 0x00, 0x00, 30]);
    check_routed(&untag(&out[0].2), &frame, mac(99), gw_mac(GREEN));
    // And to the VM of the VLAN network on this host, untagged.
    let frame = routed_udp(RED, 12, addr(GREEN, 15), 64);
    let out = run(&mut s, NOW, VM_RED, &frame);
    assert_eq!(reached(&out), vec![(VM_GREEN, None)]);
    check_routed(&out[0].2, &frame, mac(15), gw_mac(GREEN));
}

/// Checks that `copies` are the valid TCP segments of a routed large segment: TTL 63, header
/// and TCP checksums, the payload in order.
fn check_routed_segments(copies: &[&[u8]], body: &[u8], src: MacAddr, dst: MacAddr) {
    let mut got = Vec::new();
    for f in copies {
        let (d, s, ip) = split(f);
        assert_eq!((d, s), (dst, src));
        assert_eq!(ip[8], 63);
        assert_eq!(ones_sum(&ip[..20]), 0xffff);
        let tcp = &ip[20..];
        let mut all = tcp_pseudo_header(ip, tcp.len());
        all.extend_from_slice(tcp);
        assert_eq!(ones_sum(&all), 0xffff, "TCP checksum");
        got.extend_from_slice(&tcp[32..]);
    }
    assert_eq!(got, body);
}

#[test]
fn a_large_tcp_segment_is_routed_whole_to_an_offload_port_and_cut_for_the_others() {
    let mut s = host_a();
    let body = data(20_000);
    let tcp = |to: u8| {
        offload_tcp_frame(
            gw_mac(BLUE),
            mac(13),
            (addr(BLUE, 13), 40000),
            (addr(RED, to), 5201),
            PSH_ACK,
            &body,
        )
    };
    // Whole, with its metadata, to the offload tap: only the TTL (and checksum) and the MACs
    // changed.
    let frame = tcp(14);
    let out = run_offload(&mut s, TAP_BLUE, &frame, tcp_gso(1398));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].2), (TAP_RED, tcp_gso(1398)));
    check_routed(&out[0].3, &frame, mac(14), gw_mac(RED));
    // Cut into segments for a VM port.
    let out = run_offload(&mut s, TAP_BLUE, &tcp(12), tcp_gso(1398));
    assert_eq!(out.len(), 20_000usize.div_ceil(1398));
    assert!(out.iter().all(|o| o.0 == VM_RED && o.2 == Offload::NONE));
    let copies: Vec<&[u8]> = out.iter().map(|o| o.3.as_slice()).collect();
    check_routed_segments(&copies, &body, gw_mac(RED), mac(12));
    // Cut, then encapsulated for the other host, each segment in red's VNI.
    let out = run_offload(&mut s, TAP_BLUE, &tcp(22), tcp_gso(1398));
    assert!(out.iter().all(|o| o.0 == UPLINK && o.1 == Some(VTEP_B)));
    let inner: Vec<Vec<u8>> = out
        .iter()
        .map(|o| {
            let d = decapsulate(&o.3).unwrap();
            assert_eq!(d.vni, Vni::new(5002).unwrap());
            d.inner.to_vec()
        })
        .collect();
    let copies: Vec<&[u8]> = inner.iter().map(Vec::as_slice).collect();
    check_routed_segments(&copies, &body, gw_mac(RED), mac(22));
    // Each large segment counts once.
    assert_eq!(s.router_counters(R1).unwrap().routed_packets, 3);
    assert_eq!(
        s.port_counters(VM_RED).unwrap().tx_packets,
        20_000u64.div_ceil(1398)
    );
}

#[test]
fn the_gateway_answers_arp_and_ping_from_local_ports() {
    let mut s = host_a();
    let answer = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: gw_mac(BLUE),
        source_protocol_addr: gw_ip(BLUE),
        target_hardware_addr: mac(11),
        target_protocol_addr: addr(BLUE, 11),
    };
    // A broadcast request: answered on the port, flooded nowhere.
    let out = run(
        &mut s,
        NOW,
        VM_BLUE,
        &arp_request(mac(11), addr(BLUE, 11), gw_ip(BLUE)),
    );
    assert_eq!(reached(&out), vec![(VM_BLUE, None)]);
    assert_eq!(out[0].2, arp_frame(mac(11), gw_mac(BLUE), answer));
    // A unicast one (a cache refresh) too.
    let refresh = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: mac(11),
        source_protocol_addr: addr(BLUE, 11),
        target_hardware_addr: gw_mac(BLUE),
        target_protocol_addr: gw_ip(BLUE),
    };
    let out = run(
        &mut s,
        NOW,
        VM_BLUE,
        &arp_frame(gw_mac(BLUE), mac(11), refresh),
    );
    assert_eq!(out[0].2, arp_frame(mac(11), gw_mac(BLUE), answer));
    assert_eq!(s.network_counters(BLUE).unwrap().arp_suppressed, 2);
    // A request for another address sent to the gateway's MAC is the router's, unanswered.
    let other = ArpRepr {
        target_protocol_addr: addr(BLUE, 13),
        ..refresh
    };
    assert!(run(
        &mut s,
        NOW,
        VM_BLUE,
        &arp_frame(gw_mac(BLUE), mac(11), other)
    )
    .is_empty());
    assert_eq!(dropped(&s, VM_BLUE, DropReason::ToGateway), (1, 1));
    // From another host the request is not answered here (each host answers its own VMs):
    // it reaches the local ports as any broadcast.
    let remote = vxlan(
        VTEP_B,
        VTEP_A,
        5001,
        &arp_request(mac(21), addr(BLUE, 21), gw_ip(BLUE)),
    );
    let out = run(&mut s, NOW, UPLINK, &remote);
    assert_eq!(reached(&out), vec![(VM_BLUE, None), (TAP_BLUE, None)]);

    // Ping: answered from the gateway with the request's identifier, sequence and data.
    let request = echo_request(7, b"are you there, gateway?");
    let ping = |to: Ipv4Addr, request: &[u8]| {
        eth(
            gw_mac(BLUE),
            mac(11),
            EtherType::IPV4,
            &packet(addr(BLUE, 11), to, 1, 64, request),
        )
    };
    let out = run(&mut s, NOW, VM_BLUE, &ping(gw_ip(BLUE), &request));
    assert_eq!(reached(&out), vec![(VM_BLUE, None)]);
    let (dst, src, _) = split(&out[0].2);
    assert_eq!((dst, src), (mac(11), gw_mac(BLUE)));
    let reply = icmp_from(&out[0].2, gw_ip(BLUE), addr(BLUE, 11), 0, 0);
    assert_eq!(reply[4..], request[4..]);
    // Another gateway of the router answers from its own address, back on the ingress port.
    let out = run(&mut s, NOW, VM_BLUE, &ping(gw_ip(RED), &request));
    assert_eq!(reached(&out), vec![(VM_BLUE, None)]);
    icmp_from(&out[0].2, gw_ip(RED), addr(BLUE, 11), 0, 0);
    assert_eq!(s.router_counters(R1).unwrap().echo_replies, 2);
    // Anything else to a gateway address is dropped: TCP, a timestamp request, a bad checksum,
    // a fragmented echo request.
    let tcp = eth(
        gw_mac(BLUE),
        mac(11),
        EtherType::IPV4,
        &packet(addr(BLUE, 11), gw_ip(BLUE), 6, 64, &tcp_header(1, 22, SYN)),
    );
    assert!(run(&mut s, NOW, VM_BLUE, &tcp).is_empty());
    let mut timestamp = vec![13, 0, 0, 0, 0, 1, 0, 1];
    let sum = !ones_sum(&timestamp);
    timestamp[2..4].copy_from_slice(&sum.to_be_bytes());
    assert!(run(&mut s, NOW, VM_BLUE, &ping(gw_ip(BLUE), &timestamp)).is_empty());
    assert_eq!(dropped(&s, VM_BLUE, DropReason::ToGateway), (3, 3));
    let mut corrupt = request.clone();
    corrupt[9] ^= 0xff;
    assert!(run(&mut s, NOW, VM_BLUE, &ping(gw_ip(BLUE), &corrupt)).is_empty());
    let mut fragment = ping(gw_ip(BLUE), &request);
    fragment[20] = 0x20; // MF
    refill(&mut fragment[14..]);
    assert!(run(&mut s, NOW, VM_BLUE, &fragment).is_empty());
    assert_eq!(dropped(&s, VM_BLUE, DropReason::BadIcmp), (2, 2));
    assert_eq!(router_drops(&s, R1, DropReason::BadIcmp), 2);
    // Other EtherTypes to the gateway's MAC.
    let ipv6 = eth(gw_mac(BLUE), mac(11), EtherType(0x86dd), &[0x60; 40]);
    assert!(run(&mut s, NOW, VM_BLUE, &ipv6).is_empty());
    assert_eq!(router_drops(&s, R1, DropReason::ToGateway), 4);
}

#[test]
fn dhcp_to_the_gateway_is_the_responders() {
    let mut s = host_a();
    s.apply(ConfigCommand::SetDhcp {
        network: BLUE,
        config: Some(DhcpConfig {
            prefix_len: 24,
            gateway: Some(gw_ip(BLUE)),
            server: None,
            mtu: None,
            lease_secs: 600,
        }),
    })
    .unwrap();
    // A renewal goes to the server identifier, the gateway, at its MAC: the responder answers
    // it (from the gateway's MAC), the router does not take it.
    let renewal = udp_ports(
        gw_mac(BLUE),
        mac(11),
        (addr(BLUE, 11), 68),
        (gw_ip(BLUE), 67),
        &dhcp_message(DhcpOp::Request, DhcpMessageType::Request, mac(11)),
    );
    let out = run(&mut s, NOW, VM_BLUE, &renewal);
    assert_eq!(reached(&out), vec![(VM_BLUE, None)]);
    let (dst, src, ip) = split(&out[0].2);
    assert_eq!((dst, src), (mac(11), gw_mac(BLUE)));
    assert_eq!(&ip[20..24], &[0, 67, 0, 68]);
    assert_eq!(s.network_counters(BLUE).unwrap().dhcp_replies, 1);
    assert_eq!(s.router_counters(R1).unwrap().drops.total(), 0);
}

#[test]
fn a_local_port_may_not_use_the_gateway_mac_or_address() {
    let mut s = host_a();
    let spoofed = [
        // The gateway's MAC as the source (port security is off on this port).
        eth(
            mac(12),
            gw_mac(BLUE),
            EtherType::IPV4,
            &packet(gw_ip(BLUE), addr(BLUE, 13), 17, 64, &udp_body(8)),
        ),
        // A gratuitous ARP and a reply for the gateway's address.
        arp_request(mac(11), gw_ip(BLUE), gw_ip(BLUE)),
        arp_frame(
            mac(13),
            mac(11),
            ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: mac(11),
                source_protocol_addr: gw_ip(BLUE),
                target_hardware_addr: mac(13),
                target_protocol_addr: addr(BLUE, 13),
            },
        ),
    ];
    for f in &spoofed {
        assert!(run(&mut s, NOW, VM_BLUE, f).is_empty());
    }
    assert_eq!(dropped(&s, VM_BLUE, DropReason::SpoofedGateway), (3, 3));
    assert!(s.mac_entries(BLUE).iter().all(|(m, _)| *m != gw_mac(BLUE)));
    // Another network's gateway MAC is no better.
    let other = eth(
        mac(14),
        gw_mac(BLUE),
        EtherType::IPV4,
        &packet(addr(RED, 12), addr(RED, 14), 17, 64, &udp_body(8)),
    );
    assert!(run(&mut s, NOW, VM_RED, &other).is_empty());
    assert_eq!(dropped(&s, VM_RED, DropReason::SpoofedGateway), (1, 1));
    // A frame from the gateway's MAC from another host (a packet its router routed) is
    // delivered, and the MAC stays unlearned.
    let routed = eth(
        mac(13),
        gw_mac(BLUE),
        EtherType::IPV4,
        &packet(addr(RED, 22), addr(BLUE, 13), 17, 63, &udp_body(8)),
    );
    let out = run(&mut s, NOW, UPLINK, &vxlan(VTEP_B, VTEP_A, 5001, &routed));
    assert_eq!(reached(&out), vec![(TAP_BLUE, None)]);
    assert!(s.mac_entries(BLUE).iter().all(|(m, _)| *m != gw_mac(BLUE)));
    let elsewhere = vxlan(VTEP_B, VTEP_A, 5002, &routed);
    assert_eq!(reached(&run(&mut s, NOW, UPLINK, &elsewhere)).len(), 2);
    assert!(s.mac_entries(RED).iter().all(|(m, _)| *m != gw_mac(BLUE)));
}

#[test]
fn frames_to_the_gateway_from_another_host_or_the_trunk_are_not_routed() {
    let mut s = host_a();
    let inner = routed_udp(BLUE, 21, addr(RED, 12), 20);
    assert!(run(&mut s, NOW, UPLINK, &vxlan(VTEP_B, VTEP_A, 5001, &inner)).is_empty());
    let physical = tagged(
        gw_mac(GREEN),
        mac(99),
        30,
        EtherType::IPV4,
        &packet(addr(GREEN, 99), addr(RED, 12), 17, 64, &udp_body(20)),
    );
    assert!(run(&mut s, NOW, TRUNK, &physical).is_empty());
    for (port, net) in [(UPLINK, BLUE), (TRUNK, GREEN)] {
        assert_eq!(
            s.port_counters(port)
                .unwrap()
                .drops
                .get(DropReason::NotRoutedRemote),
            1
        );
        assert_eq!(
            s.network_counters(net)
                .unwrap()
                .traffic
                .drops
                .get(DropReason::NotRoutedRemote),
            1
        );
    }
    assert_eq!(s.router_counters(R1).unwrap().routed_packets, 0);
    assert_eq!(s.port_counters(VM_RED).unwrap().tx_packets, 0);
}

#[test]
fn two_routers_with_the_same_subnets_never_exchange_a_packet() {
    let mut s = host_a();
    // Router 2 on networks 7 and 8 with blue's and red's subnets, gateways and VM addresses.
    let (n7, n8, r2) = (NetworkId(7), NetworkId(8), RouterId(2));
    let (p7, p8) = (PortId(7), PortId(8));
    let mut commands = vec![
        ConfigCommand::AddNetwork {
            id: n7,
            segment: Segment::Overlay {
                vni: Vni::new(5007).unwrap(),
            },
        },
        ConfigCommand::AddNetwork {
            id: n8,
            segment: Segment::Overlay {
                vni: Vni::new(5008).unwrap(),
            },
        },
        add_port(p7, PortKind::Vm { network: n7 }, 1450),
        add_port(p8, PortKind::Vm { network: n8 }, 1450),
        ConfigCommand::AddRouter(r2),
    ];
    for (net, subnet) in [(n7, BLUE), (n8, RED)] {
        commands.push(ConfigCommand::SetRouterInterface {
            router: r2,
            network: net,
            addr: gw_ip(subnet),
            prefix_len: 24,
            mac: gw_mac(net),
            mtu: None,
        });
    }
    for (net, subnet, last, port) in [(n7, BLUE, 71, p7), (n8, RED, 82, p8)] {
        commands.extend([
            ConfigCommand::AddMacEntry {
                network: net,
                mac: mac(last),
                location: Location::Port(port),
            },
            ConfigCommand::AddArpEntry {
                network: net,
                ip: addr(subnet, 12),
                mac: mac(last),
            },
        ]);
    }
    for c in commands {
        s.apply(c).unwrap();
    }
    // Router 2's VM with blue's address 10.1.0.11 reaches only router 2's 10.2.0.12.
    let from_7 = eth(
        gw_mac(n7),
        mac(71),
        EtherType::IPV4,
        &packet(addr(BLUE, 11), addr(RED, 12), 17, 64, &udp_body(10)),
    );
    let out = run(&mut s, NOW, p7, &from_7);
    assert_eq!(reached(&out), vec![(p8, None)]);
    check_routed(&out[0].2, &from_7, mac(82), gw_mac(n8));
    // Router 1's VM with the same packet reaches router 1's.
    let out = run(
        &mut s,
        NOW,
        VM_BLUE,
        &routed_udp(BLUE, 11, addr(RED, 12), 10),
    );
    assert_eq!(reached(&out), vec![(VM_RED, None)]);
    // 10.2.0.22 is router 1's VM on host B; router 2 does not know it: it asks on network 8
    // (which has no other host) and nothing reaches red or its VNI.
    let to_22 = eth(
        gw_mac(n7),
        mac(71),
        EtherType::IPV4,
        &packet(addr(BLUE, 11), addr(RED, 22), 17, 64, &udp_body(10)),
    );
    let out = run(&mut s, NOW, p7, &to_22);
    assert_eq!(reached(&out), vec![(p8, None)]);
    assert_eq!(&out[0].2[..12], &[[0xff; 6], gw_mac(n8).0].concat()[..]);
    assert_eq!(s.router_counters(R1).unwrap().routed_packets, 1);
    assert_eq!(s.router_counters(r2).unwrap().routed_packets, 1);
    assert_eq!(
        s.router_counters(r2)
            .unwrap()
            .drops
            .get(DropReason::NeighbourUnknown),
        1
    );
    // The same subnet twice in one router is refused.
    let overlap = ConfigCommand::SetRouterInterface {
        router: R1,
        network: n7,
        addr: Ipv4Addr::new(10, 1, 0, 254),
        prefix_len: 25,
        mac: gw_mac(n7),
        mtu: None,
    };
    assert!(s.apply(overlap).is_err());
    assert_eq!(s.gateway(n7).unwrap().router, r2);
}

/// An IPv4 header with a 4-byte option (router alert) before `body`, TTL 64.
fn with_options(src: Ipv4Addr, dst: Ipv4Addr, body: &[u8]) -> Vec<u8> {
    let mut p = packet(src, dst, 17, 64, body);
    p.splice(20..20, [0x94, 0x04, 0, 0]);
    p[0] = 0x46;
    let total = (p.len() as u16).to_be_bytes();
    p[2..4].copy_from_slice(&total);
    refill(&mut p);
    p
}

#[test]
fn fragments_and_options_are_routed_malformed_headers_are_not() {
    let mut s = host_a();
    let (src, dst) = (addr(BLUE, 11), addr(RED, 12));
    let to_gw = |p: &[u8]| eth(gw_mac(BLUE), mac(11), EtherType::IPV4, p);
    let mut first = packet(src, dst, 17, 64, &udp_body(64));
    first[6] = 0x20; // more fragments
    refill(&mut first);
    let mut later = packet(src, dst, 17, 64, &[7; 40]);
    later[6..8].copy_from_slice(&(0x2000u16 | 9).to_be_bytes());
    refill(&mut later);
    for p in [first, later, with_options(src, dst, &udp_body(30))] {
        let frame = to_gw(&p);
        let out = run(&mut s, NOW, VM_BLUE, &frame);
        assert_eq!(reached(&out), vec![(VM_RED, None)]);
        check_routed(&out[0].2, &frame, mac(12), gw_mac(RED));
    }
    let c = s.router_counters(R1).unwrap();
    assert_eq!(
        (c.routed_packets, c.routed_fragments, c.routed_options),
        (3, 2, 1)
    );
    // Malformed headers are refused at classification, before the router.
    let good = packet(src, dst, 17, 64, &udp_body(16));
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 1;
    let mut bad_length = good.clone();
    bad_length[0] = 0x44;
    let mut long = good.clone();
    long[2..4].copy_from_slice(&500u16.to_be_bytes());
    refill(&mut long);
    for (p, reason) in [
        (bad_sum, DropReason::BadIpChecksum),
        (bad_length, DropReason::BadIpHeader),
        (long, DropReason::TruncatedHeader),
        (good[..12].to_vec(), DropReason::TruncatedHeader),
    ] {
        assert!(run(&mut s, NOW, VM_BLUE, &to_gw(&p)).is_empty());
        assert!(dropped(&s, VM_BLUE, reason).0 >= 1, "{reason}");
    }
    assert_eq!(s.router_counters(R1).unwrap().drops.total(), 0);
    assert_eq!(s.router_counters(R1).unwrap().routed_packets, 3);
}

#[test]
fn the_receiving_ports_firewall_and_the_senders_mark_apply_to_routed_packets() {
    let mut s = host_a();
    s.apply(ConfigCommand::SetPortDscp {
        port: VM_BLUE,
        mark: Some(46),
    })
    .unwrap();
    let frame = routed_udp(BLUE, 11, addr(RED, 12), 30);
    let out = run(&mut s, NOW, VM_BLUE, &frame);
    let (_, _, ip) = split(&out[0].2);
    assert_eq!((ip[1] >> 2, ip[8]), (46, 63));
    assert_eq!(ones_sum(&ip[..20]), 0xffff);
    // VM 12 takes UDP from blue's subnet only to port 7000: 6000 is refused at its port.
    let rule = FirewallRule {
        direction: Direction::Ingress,
        protocol: Protocol::Udp,
        ports: PortRange {
            first: 7000,
            last: 7000,
        },
        remote: vec![Prefix {
            addr: Ipv4Addr::new(10, 1, 0, 0),
            len: 24,
        }],
        action: Action::Allow,
    };
    s.apply(ConfigCommand::SetPortFirewall {
        port: VM_RED,
        rules: Some(vec![rule]),
    })
    .unwrap();
    assert!(run(&mut s, NOW, VM_BLUE, &frame).is_empty());
    assert_eq!(dropped(&s, VM_RED, DropReason::FirewallDefaultDeny), (1, 1));
    // Routed all the same: the drop is the receiving port's.
    assert_eq!(s.router_counters(R1).unwrap().routed_packets, 2);
}
