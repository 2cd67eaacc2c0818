//! North-south NAT on the edge, with real frames: source NAT of UDP, TCP and ICMP echo keeping
//! the source port when free and choosing another on a collision, replies translated back to
//! the VM, floating IPs both ways, ICMP errors from outside translated back, echo requests to
//! the uplink's address answered, packets nothing translates and protocols source NAT cannot
//! carry, session timeouts, a full table, the uplink's removal, the upstream router's MAC
//! learned from its ARP reply, large TCP segments of offload taps out through source NAT (cut
//! for the trunk) and in to a floating IP (kept whole for a tap, metadata and all). Every
//! checksum is summed again from scratch.

mod common;

use std::net::Ipv4Addr;

use common::nat::*;
use common::routing::*;
use common::*;
use vinfra_switch::datapath::{
    ConfigCommand, DropReason, Edge, PortId, PortKind, SwitchSettings, TxBatch, ICMP_TIMEOUT,
    PORT_FIRST, TCP_CLOSING_TIMEOUT, UDP_TIMEOUT,
};
use vinfra_switch::wire::{ArpOperation, EtherType, MacAddr};

const VM11: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const VM12: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 12);

fn nat(s: &vinfra_switch::datapath::Switch) -> vinfra_switch::datapath::NatCounters {
    s.router_counters(R1).unwrap().nat.expect("an uplink")
}

#[test]
fn udp_is_source_natted_with_its_port_and_the_reply_comes_back() {
    let mut s = edge_a();
    let sent = udp((VM11, 5000), (REMOTE, 53), true, b"query");
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &sent));
    let ip = to_upstream(&only(&out, TRUNK));
    assert_eq!(source(&ip), (UPLINK_IP, 5000), "the port is kept");
    assert_eq!(destination(&ip), (REMOTE, 53));
    assert_eq!(ip[8], 63, "TTL");
    assert_eq!(ip[28..], sent[28..], "the data as sent");

    let reply = udp((REMOTE, 53), (UPLINK_IP, 5000), true, b"answer");
    let out = at_now(&mut s, TRUNK, &from_outside(&reply));
    let ip = to_vm(&only(&out, VM_BLUE), BLUE, 11);
    assert_eq!(source(&ip), (REMOTE, 53));
    assert_eq!(destination(&ip), (VM11, 5000));
    assert_eq!(ip[8], 63);

    let c = nat(&s);
    assert!(c.edge);
    assert_eq!((c.sessions, c.sessions_created), (1, 1));
    assert_eq!((c.snat_packets, c.dnat_packets), (1, 1));
    assert_eq!(s.router_counters(R1).unwrap().routed_packets, 2);
}

#[test]
fn a_port_taken_by_another_vm_gets_another_and_each_reply_finds_its_vm() {
    let mut s = edge_a();
    let a = udp((VM11, 4000), (REMOTE, 53), true, b"a");
    let b = udp((VM12, 4000), (REMOTE, 53), false, b"b");
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &a));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))), (UPLINK_IP, 4000));
    let out = at_now(&mut s, VM_RED, &from_vm(RED, 12, &b));
    let ip = to_upstream(&only(&out, TRUNK));
    let (addr, port) = source(&ip);
    assert_eq!(addr, UPLINK_IP);
    assert!(port >= PORT_FIRST && port != 4000, "{port}");
    assert_eq!(&ip[26..28], &[0, 0], "no UDP checksum stays none");
    // Endpoint-independent: the same VM port to another destination keeps its mapping.
    let c = udp(
        (VM12, 4000),
        (Ipv4Addr::new(192, 0, 2, 99), 123),
        true,
        b"c",
    );
    let out = at_now(&mut s, VM_RED, &from_vm(RED, 12, &c));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))), (UPLINK_IP, port));
    assert_eq!(nat(&s).sessions, 2);

    let reply = udp((REMOTE, 53), (UPLINK_IP, port), true, b"to b");
    let out = at_now(&mut s, TRUNK, &from_outside(&reply));
    assert_eq!(
        destination(&to_vm(&only(&out, VM_RED), RED, 12)),
        (VM12, 4000)
    );
    let reply = udp((REMOTE, 53), (UPLINK_IP, 4000), true, b"to a");
    let out = at_now(&mut s, TRUNK, &from_outside(&reply));
    assert_eq!(
        destination(&to_vm(&only(&out, VM_BLUE), BLUE, 11)),
        (VM11, 4000)
    );
}

#[test]
fn tcp_connections_are_translated_and_closed_ones_expire_sooner() {
    let mut s = edge_a();
    let syn = tcp((VM11, 40000), (REMOTE, 443), SYN);
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &syn));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))), (UPLINK_IP, 40000));
    let syn_ack = tcp((REMOTE, 443), (UPLINK_IP, 40000), SYN_ACK);
    let out = at_now(&mut s, TRUNK, &from_outside(&syn_ack));
    assert_eq!(
        destination(&to_vm(&only(&out, VM_BLUE), BLUE, 11)),
        (VM11, 40000)
    );
    // FIN each way: the session lives 120 s more.
    let fin = tcp((VM11, 40000), (REMOTE, 443), FIN_ACK);
    assert_eq!(
        send(&mut s, NOW, VM_BLUE, &from_vm(BLUE, 11, &fin)),
        [(TRUNK, None)]
    );
    let fin = tcp((REMOTE, 443), (UPLINK_IP, 40000), FIN_ACK);
    assert_eq!(
        send(&mut s, NOW, TRUNK, &from_outside(&fin)),
        [(VM_BLUE, None)]
    );
    // An open connection of another VM stays.
    let syn = tcp((VM12, 50000), (REMOTE, 443), SYN);
    assert_eq!(
        send(&mut s, NOW, VM_RED, &from_vm(RED, 12, &syn)),
        [(TRUNK, None)]
    );
    assert_eq!(s.expire(NOW + TCP_CLOSING_TIMEOUT), 1);
    let late = tcp((REMOTE, 443), (UPLINK_IP, 40000), ACK);
    assert!(send(
        &mut s,
        NOW + TCP_CLOSING_TIMEOUT,
        TRUNK,
        &from_outside(&late)
    )
    .is_empty());
    assert_eq!(router_drops(&s, R1, DropReason::NoNatSession), 1);
    let ack = tcp((REMOTE, 443), (UPLINK_IP, 50000), SYN_ACK);
    assert_eq!(
        send(
            &mut s,
            NOW + TCP_CLOSING_TIMEOUT,
            TRUNK,
            &from_outside(&ack)
        ),
        [(VM_RED, None)]
    );
    let c = nat(&s);
    assert_eq!((c.sessions, c.sessions_expired), (1, 1));
}

#[test]
fn echo_requests_get_an_identifier_and_their_replies_come_back() {
    let mut s = edge_a();
    let a = echo(VM11, REMOTE, 8, 77);
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &a));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))), (UPLINK_IP, 77));
    let b = echo(VM12, REMOTE, 8, 77);
    let out = at_now(&mut s, VM_RED, &from_vm(RED, 12, &b));
    let (_, id) = source(&to_upstream(&only(&out, TRUNK)));
    assert_ne!(id, 77);
    let reply = echo(REMOTE, UPLINK_IP, 0, id);
    let out = at_now(&mut s, TRUNK, &from_outside(&reply));
    let ip = to_vm(&only(&out, VM_RED), RED, 12);
    assert_eq!(destination(&ip), (VM12, 77));
    assert_eq!(ip[20], 0, "an echo reply");
    // ICMP sessions live 30 s.
    s.expire(NOW + ICMP_TIMEOUT);
    assert_eq!(nat(&s).sessions, 0);
    let out = super_run(&mut s, NOW + ICMP_TIMEOUT, &from_outside(&reply));
    assert!(out.is_empty());
}

fn super_run(s: &mut vinfra_switch::datapath::Switch, now: std::time::Duration, f: &[u8]) -> Out {
    run(s, now, TRUNK, f)
}

#[test]
fn the_edge_answers_echo_requests_to_the_uplink_address() {
    let mut s = edge_a();
    let request = echo(REMOTE, UPLINK_IP, 8, 9);
    let out = at_now(&mut s, TRUNK, &from_outside(&request));
    let ip = to_upstream(&only(&out, TRUNK));
    assert_eq!(source(&ip), (UPLINK_IP, 9));
    assert_eq!(destination(&ip), (REMOTE, 9));
    assert_eq!(ip[20], 0, "an echo reply");
    assert_eq!(s.router_counters(R1).unwrap().echo_replies, 1);
}

#[test]
fn floating_ips_translate_both_ways_without_sessions() {
    let mut s = edge_a();
    s.apply(ConfigCommand::AddFloatingIp {
        router: R1,
        external: FLOATING,
        internal: VM11,
    })
    .unwrap();
    let mut tx = TxBatch::new();
    assert_eq!(
        s.announce(&mut tx),
        1,
        "a gratuitous ARP for the floating IP"
    );
    let sent = tcp((VM11, 22), (REMOTE, 60000), SYN_ACK);
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &sent));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))), (FLOATING, 22));
    // Inbound to any port: the VM's address, the port as it is.
    for port in [22, 80, 5555] {
        let inbound = tcp((REMOTE, 60001), (FLOATING, port), SYN);
        let out = at_now(&mut s, TRUNK, &from_outside(&inbound));
        let ip = to_vm(&only(&out, VM_BLUE), BLUE, 11);
        assert_eq!(destination(&ip), (VM11, port));
        assert_eq!(source(&ip), (REMOTE, 60001));
    }
    // An echo request to the floating IP goes to the VM, and any protocol passes.
    let ping = echo(REMOTE, FLOATING, 8, 5);
    let out = at_now(&mut s, TRUNK, &from_outside(&ping));
    assert_eq!(
        destination(&to_vm(&only(&out, VM_BLUE), BLUE, 11)),
        (VM11, 5)
    );
    let gre = common::ipv4_payload(VM11, REMOTE, 47, &[0; 8]);
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &gre));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))).0, FLOATING);
    // An ICMP error about what the VM sent from the floating IP goes back to the VM.
    let left = to_upstream(&only(
        &at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &sent)),
        TRUNK,
    ));
    let error = icmp_error(REMOTE, 3, 1, &left[..28]);
    let out = at_now(&mut s, TRUNK, &from_outside(&error));
    let ip = to_vm(&only(&out, VM_BLUE), BLUE, 11);
    assert_eq!(source(&ip[28..]), (VM11, 22));
    assert_eq!(ones_sum(&ip[28..48]), 0xffff, "quoted header checksum");
    let c = nat(&s);
    assert_eq!(c.sessions, 0);
    assert_eq!((c.snat_packets, c.dnat_packets), (3, 5));

    // Removed: inbound finds nothing, outbound goes out with the uplink's address.
    s.apply(ConfigCommand::RemoveFloatingIp {
        router: R1,
        external: FLOATING,
    })
    .unwrap();
    let inbound = tcp((REMOTE, 60001), (FLOATING, 22), SYN);
    assert!(at_now(&mut s, TRUNK, &from_outside(&inbound)).is_empty());
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &sent));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))), (UPLINK_IP, 22));
}

/// An ICMP error from `from` about `quoted` (as it left the edge), to the quoted source.
fn icmp_error(from: Ipv4Addr, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quoted);
    let c = !ones_sum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let to = Ipv4Addr::from(<[u8; 4]>::try_from(&quoted[12..16]).unwrap());
    common::ipv4_payload(from, to, 1, &m)
}

#[test]
fn icmp_errors_from_outside_are_translated_back_to_the_vm() {
    let mut s = edge_a();
    // Two VMs on one port: the second is translated.
    at_now(
        &mut s,
        VM_BLUE,
        &from_vm(BLUE, 11, &udp((VM11, 7000), (REMOTE, 9), true, b"x")),
    );
    let sent = udp((VM12, 7000), (REMOTE, 9), true, b"datagram");
    let left = to_upstream(&only(
        &at_now(&mut s, VM_RED, &from_vm(RED, 12, &sent)),
        TRUNK,
    ));
    let outer_port = source(&left).1;
    assert_ne!(outer_port, 7000);
    // Port unreachable from the remote host, quoting the datagram as it left.
    let error = icmp_error(REMOTE, 3, 3, &left);
    let out = at_now(&mut s, TRUNK, &from_outside(&error));
    let ip = to_vm(&only(&out, VM_RED), RED, 12);
    assert_eq!((ip[20], ip[21]), (3, 3));
    let quoted = &ip[28..];
    check_sums(quoted);
    assert_eq!(
        source(quoted),
        (VM12, 7000),
        "the quoted packet as the VM sent it"
    );
    assert_eq!(destination(quoted), (REMOTE, 9));
    // Time exceeded from a router on the way, about an echo request: the identifier too.
    let ping = echo(VM12, REMOTE, 8, 7000);
    at_now(
        &mut s,
        VM_BLUE,
        &from_vm(BLUE, 11, &echo(VM11, REMOTE, 8, 7000)),
    );
    let left = to_upstream(&only(
        &at_now(&mut s, VM_RED, &from_vm(RED, 12, &ping)),
        TRUNK,
    ));
    let error = icmp_error(Ipv4Addr::new(192, 0, 2, 200), 11, 0, &left[..28]);
    let out = at_now(&mut s, TRUNK, &from_outside(&error));
    let ip = to_vm(&only(&out, VM_RED), RED, 12);
    assert_eq!(source(&ip[28..]), (VM12, 7000));
    assert_eq!(ones_sum(&ip[28..48]), 0xffff, "quoted header checksum");
    // An error about nothing translated is dropped.
    let stray = udp((UPLINK_IP, 999), (REMOTE, 9), true, b"?");
    let error = icmp_error(REMOTE, 3, 3, &stray);
    assert!(at_now(&mut s, TRUNK, &from_outside(&error)).is_empty());
    assert_eq!(router_drops(&s, R1, DropReason::NoNatSession), 1);
}

#[test]
fn what_nat_cannot_translate_is_dropped_by_reason() {
    let mut s = edge_a();
    // GRE from an address without a floating IP, a fragment, an ICMP message other than echo.
    let gre = common::ipv4_payload(VM11, REMOTE, 47, &[0; 8]);
    let fragment = common::ipv4_packet(VM11, REMOTE, 17, 0x2000, &[0; 16]);
    let unreachable = common::ipv4_payload(VM11, REMOTE, 1, &[3, 3, 0xfc, 0xfc, 0, 0, 0, 0]);
    for p in [&gre, &fragment, &unreachable] {
        assert!(at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, p)).is_empty());
    }
    assert_eq!(router_drops(&s, R1, DropReason::NatUnsupported), 3);
    assert_eq!(dropped(&s, VM_BLUE, DropReason::NatUnsupported), (3, 3));
    // From outside: to the uplink with no session, to another address of the subnet.
    let stray = udp((REMOTE, 53), (UPLINK_IP, 5000), true, b"?");
    let other = udp(
        (REMOTE, 53),
        (Ipv4Addr::new(203, 0, 113, 77), 5000),
        true,
        b"?",
    );
    for p in [&stray, &other] {
        assert!(at_now(&mut s, TRUNK, &from_outside(p)).is_empty());
    }
    assert_eq!(router_drops(&s, R1, DropReason::NoNatSession), 2);
    assert_eq!(nat(&s).sessions, 0);
    // TTL 1 from outside: time exceeded back to the sender, from the uplink's address.
    let request = udp((VM11, 5000), (REMOTE, 53), true, b"q");
    at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &request));
    let dying = with_ttl(udp((REMOTE, 53), (UPLINK_IP, 5000), true, b"a"), 1);
    let out = at_now(&mut s, TRUNK, &from_outside(&dying));
    let ip = to_upstream(&only(&out, TRUNK));
    assert_eq!((ip[20], source(&ip).0), (11, UPLINK_IP));
}

#[test]
fn sessions_expire_and_a_full_table_refuses_new_ones() {
    let mut s = edge_a();
    s.apply(ConfigCommand::SetSettings(SwitchSettings {
        nat_max_sessions: 2,
        ..SwitchSettings::default()
    }))
    .unwrap();
    for port in [1, 2] {
        let p = udp((VM11, port), (REMOTE, 53), true, b"q");
        assert_eq!(
            send(&mut s, NOW, VM_BLUE, &from_vm(BLUE, 11, &p)),
            [(TRUNK, None)]
        );
    }
    let third = udp((VM11, 3), (REMOTE, 53), true, b"q");
    assert!(send(&mut s, NOW, VM_BLUE, &from_vm(BLUE, 11, &third)).is_empty());
    assert_eq!(router_drops(&s, R1, DropReason::NatTableFull), 1);
    // Traffic keeps a session alive; the idle one expires and makes room.
    let later = NOW + UDP_TIMEOUT / 2;
    let p = udp((VM11, 1), (REMOTE, 53), true, b"q");
    assert_eq!(
        send(&mut s, later, VM_BLUE, &from_vm(BLUE, 11, &p)),
        [(TRUNK, None)]
    );
    let expiry = NOW + UDP_TIMEOUT;
    assert_eq!(
        send(&mut s, expiry, VM_BLUE, &from_vm(BLUE, 11, &third)),
        [(TRUNK, None)]
    );
    let reply = udp((REMOTE, 53), (UPLINK_IP, 2), true, b"late");
    assert!(send(&mut s, expiry, TRUNK, &from_outside(&reply)).is_empty());
    let reply = udp((REMOTE, 53), (UPLINK_IP, 1), true, b"fresh");
    assert_eq!(
        send(&mut s, expiry, TRUNK, &from_outside(&reply)),
        [(VM_BLUE, None)]
    );
    let c = nat(&s);
    assert_eq!(
        (c.sessions, c.sessions_created, c.sessions_expired),
        (2, 3, 1)
    );
}

#[test]
fn removing_or_moving_the_uplink_drops_its_sessions() {
    let mut s = edge_a();
    let p = udp((VM11, 1), (REMOTE, 53), true, b"q");
    at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &p));
    // The same uplink again (a configuration push): sessions stay, no new announcement.
    s.apply(uplink(Edge::Local)).unwrap();
    assert_eq!(s.announce(&mut TxBatch::new()), 0);
    assert_eq!(s.nat_sessions(), 1);
    // The edge moves away: they go.
    s.apply(uplink(Edge::Remote { vtep: VTEP_B })).unwrap();
    assert_eq!(s.nat_sessions(), 0);
    s.apply(uplink(Edge::Local)).unwrap();
    assert_eq!(s.announce(&mut TxBatch::new()), 1);
    at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &p));
    assert_eq!(s.nat_sessions(), 1);
    s.apply(ConfigCommand::RemoveRouterUplink(R1)).unwrap();
    assert_eq!(s.nat_sessions(), 0);
    assert!(s.router_uplink(R1).is_none());
    assert_eq!(s.router_counters(R1).unwrap().nat, None);
    // Without an uplink the default route has no interface: no route (ICMP net unreachable).
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &p));
    icmp_from(&only(&out, VM_BLUE), gw_ip(BLUE), VM11, 3, 0);
    assert_eq!(router_drops(&s, R1, DropReason::NoRoute), 1);
}

#[test]
fn the_edge_asks_for_the_upstream_router_and_learns_it_from_the_trunk() {
    let mut s = host_a();
    add_uplink(&mut s, Edge::Local, false);
    let p = udp((VM11, 1), (REMOTE, 53), true, b"q");
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &p));
    // The GARP of the uplink (pending) and the ARP request, both out of the trunk.
    assert_eq!(reached(&out), [(TRUNK, None), (TRUNK, None)]);
    let request = untag(&out[1].2);
    assert_eq!(&request[..6], &MacAddr::BROADCAST.0);
    assert_eq!(&request[6..12], &UPLINK_MAC.0);
    assert_eq!(
        &request[28..32],
        &UPLINK_IP.octets(),
        "asked from the uplink's address"
    );
    assert_eq!(&request[38..42], &UPSTREAM.octets());
    assert_eq!(router_drops(&s, R1, DropReason::NeighbourUnknown), 1);
    let reply = tagged(
        UPLINK_MAC,
        UPSTREAM_MAC,
        EXT_VID,
        EtherType::ARP,
        &arp_payload(
            ArpOperation::Reply,
            UPSTREAM_MAC,
            UPSTREAM,
            UPLINK_MAC,
            UPLINK_IP,
        ),
    );
    assert!(at_now(&mut s, TRUNK, &reply).is_empty());
    assert_eq!(s.router_counters(R1).unwrap().neighbours_learned, 1);
    let out = at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &p));
    assert_eq!(source(&to_upstream(&only(&out, TRUNK))), (UPLINK_IP, 1));
}

#[test]
fn a_large_tcp_segment_from_an_offload_tap_is_translated_and_cut_for_the_trunk() {
    let mut s = edge_a();
    let tap_ip = addr(BLUE, 13);
    let body = data(4000);
    let frame = offload_tcp_frame(
        gw_mac(BLUE),
        mac(13),
        (tap_ip, 33000),
        (REMOTE, 80),
        PSH_ACK,
        &body,
    );
    let out = run_offload(&mut s, TAP_BLUE, &frame, tcp_gso(1300));
    assert_eq!(out.len(), 4, "cut into four segments");
    let mut payload = Vec::new();
    for (port, _, offload, bytes) in &out {
        assert_eq!(*port, TRUNK);
        assert_eq!(*offload, vinfra_switch::wire::Offload::NONE);
        let ip = to_upstream(bytes);
        assert_eq!(source(&ip), (UPLINK_IP, 33000));
        assert_eq!(ip[8], 63);
        payload.extend_from_slice(&ip[20 + 32..]);
    }
    assert_eq!(payload, body);
    // A partial checksum alone (no segmentation) is completed right too.
    let small = offload_tcp_frame(
        gw_mac(BLUE),
        mac(13),
        (tap_ip, 33001),
        (REMOTE, 80),
        ACK,
        b"x",
    );
    let partial = vinfra_switch::wire::Offload {
        gso: None,
        ..tcp_gso(1400)
    };
    let out = run_offload(&mut s, TAP_BLUE, &small, partial);
    assert_eq!(out.len(), 1);
    assert_eq!(source(&to_upstream(&out[0].3)), (UPLINK_IP, 33001));
}

#[test]
fn a_large_tcp_segment_to_a_floating_ip_from_an_offload_tap_keeps_its_metadata() {
    // A local tap on the external network on the edge (offloads on), and tap 13 of blue behind
    // a floating IP: a large segment from the tap to the floating IP goes to tap 13 whole,
    // its destination translated and its partial checksum's pseudo-header sum made again.
    let mut s = edge_a();
    let ext_tap = PortId(30);
    s.apply(add_port(ext_tap, PortKind::Host { network: EXT }, 1500))
        .unwrap();
    s.set_port_offloads(ext_tap, true).unwrap();
    let tap_ip = addr(BLUE, 13);
    s.apply(ConfigCommand::AddFloatingIp {
        router: R1,
        external: FLOATING,
        internal: tap_ip,
    })
    .unwrap();
    assert_eq!(s.announce(&mut TxBatch::new()), 1, "its gratuitous ARP");
    let body = data(4000);
    let frame = offload_tcp_frame(
        UPLINK_MAC,
        UPSTREAM_MAC,
        (REMOTE, 41000),
        (FLOATING, 80),
        PSH_ACK,
        &body,
    );
    let out = run_offload(&mut s, ext_tap, &frame, tcp_gso(1300));
    assert_eq!(out.len(), 1, "one large frame");
    let (port, vtep, offload, bytes) = &out[0];
    assert_eq!((*port, *vtep), (TAP_BLUE, None));
    assert_eq!(*offload, tcp_gso(1300), "the metadata as it came");
    assert_eq!(&bytes[..6], &mac(13).0, "to tap 13");
    assert_eq!(&bytes[6..12], &gw_mac(BLUE).0, "from blue's gateway");
    let mut ip = bytes[14..].to_vec();
    assert_eq!(destination(&ip), (tap_ip, 80));
    assert_eq!(source(&ip), (REMOTE, 41000));
    assert_eq!(ip[8], 63, "routed once");
    assert_eq!(&ip[20 + 32..], &body[..]);
    // What the receiving kernel does with a partial checksum: sum from the checksum start.
    vinfra_switch::wire::gso::complete_checksum(&mut ip, 20, 16).unwrap();
    check_sums(&ip);
    assert_eq!(nat(&s).dnat_packets, 1);
}

#[test]
fn flows_through_the_edge_are_north_south_and_counted_once_where_they_enter() {
    use vinfra_switch::datapath::FlowPath;
    let mut s = edge_a();
    s.apply(ConfigCommand::AddFloatingIp {
        router: R1,
        external: FLOATING,
        internal: VM11,
    })
    .unwrap();
    // Out from the VM (counted at its port), in from outside to its floating IP (counted at
    // the trunk, on the external network): both north-south, routed by R1.
    let sent = udp((VM11, 5000), (REMOTE, 53), true, b"query");
    at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &sent));
    let inbound = udp((REMOTE, 40000), (FLOATING, 7000), true, b"hello");
    let out = at_now(&mut s, TRUNK, &from_outside(&inbound));
    to_vm(&only(&out, VM_BLUE), BLUE, 11);
    let report = s.take_flows(NOW);
    assert_eq!(report.flows.len(), 2, "{report:#?}");
    for f in &report.flows {
        assert_eq!(f.path, FlowPath::NorthSouth, "{f:?}");
        assert_eq!(f.router, Some(R1), "{f:?}");
        assert_eq!(f.packets, 1, "{f:?}");
    }
    let ports: Vec<_> = report.flows.iter().map(|f| f.port).collect();
    assert!(
        ports.contains(&VM_BLUE) && ports.contains(&TRUNK),
        "{ports:?}"
    );
    // Switched traffic of the same VM stays east-west.
    let local = udp((VM11, 5000), (Ipv4Addr::new(10, 1, 0, 13), 53), true, b"x");
    at_now(&mut s, VM_BLUE, &from_vm(BLUE, 11, &local));
    let report = s.take_flows(NOW);
    assert!(
        !report.flows.is_empty() && report.flows.iter().all(|f| f.path == FlowPath::EastWest),
        "{report:#?}"
    );
}
