//! Flow accounting in the core: TCP, UDP and ICMP flows from a local port counted with exact
//! packets and IP bytes (Ethernet padding left out), fragments, a large TCP segment counted as
//! its segments, switched and routed flows (the router named), frames from another host and
//! from the trunk not counted again, deltas reset by a take, flows leaving the table after idle
//! takes and the idle timeout, a full table counting untracked packets, accounting off, and a
//! property test that the table never exceeds its bound.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::routing::*;
use common::*;
use proptest::prelude::*;
use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, FlowDelta, FlowKey, FlowPath, FlowTableSettings, FlowTake,
    NetworkId, PortId, Switch, MAX_FLOW_ENTRIES,
};
use vinfra_switch::wire::{EtherType, MacAddr, Offload};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// The flows of a report by key.
fn by_key(report: &FlowTake) -> BTreeMap<FlowKey, FlowDelta> {
    report.flows.iter().map(|f| (f.key, *f)).collect()
}

fn key(
    network: NetworkId,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ports: (u16, u16),
) -> FlowKey {
    FlowKey {
        network,
        src,
        dst,
        protocol,
        src_port: ports.0,
        dst_port: ports.1,
    }
}

/// A frame of `ip` (an IPv4 packet) from `src` to `dst`.
fn ip_frame(dst: MacAddr, src: MacAddr, ip: &[u8]) -> Vec<u8> {
    eth(dst, src, EtherType::IPV4, ip)
}

/// A TCP segment from blue VM 11 to blue tap 13 (switched) with `len` bytes of data.
fn blue_tcp(sport: u16, len: usize) -> Vec<u8> {
    let mut body = tcp_header(sport, 80, ACK);
    body.extend(data(len));
    ip_frame(
        mac(13),
        mac(11),
        &ipv4_payload(addr(BLUE, 11), addr(BLUE, 13), TCP, &body),
    )
}

fn set_flows(s: &mut Switch, settings: FlowTableSettings) {
    s.apply(ConfigCommand::SetFlowAccounting(settings)).unwrap();
}

#[test]
fn tcp_udp_and_icmp_flows_are_counted_with_their_ip_bytes() {
    let mut s = host_a();
    // TCP: two segments of one flow, 100 and 300 bytes of data (IP 140 and 340 bytes).
    assert_eq!(
        send(&mut s, NOW, VM_BLUE, &blue_tcp(40000, 100)),
        [(TAP_BLUE, None)]
    );
    assert_eq!(
        send(&mut s, NOW, VM_BLUE, &blue_tcp(40000, 300)),
        [(TAP_BLUE, None)]
    );
    // UDP with one byte of data: a 29-byte IP packet in a frame padded to 60 bytes.
    let mut udp = udp_ports(
        mac(13),
        mac(11),
        (addr(BLUE, 11), 5353),
        (addr(BLUE, 13), 53),
        &[7],
    );
    udp.resize(60, 0);
    assert_eq!(send(&mut s, NOW, VM_BLUE, &udp), [(TAP_BLUE, None)]);
    // ICMP echo request (identifier 0x1234 as both ports) and a destination unreachable (no
    // ports).
    let echo = ipv4_payload(
        addr(BLUE, 11),
        addr(BLUE, 13),
        ICMP,
        &echo_request(0x1234, &[1; 56]),
    );
    for _ in 0..3 {
        send(&mut s, NOW, VM_BLUE, &ip_frame(mac(13), mac(11), &echo));
    }
    let unreachable = ipv4_payload(
        addr(BLUE, 11),
        addr(BLUE, 13),
        ICMP,
        &[3, 3, 0, 0, 0, 0, 0, 0],
    );
    send(
        &mut s,
        NOW,
        VM_BLUE,
        &ip_frame(mac(13), mac(11), &unreachable),
    );
    // ARP is not a flow.
    send(
        &mut s,
        NOW,
        VM_BLUE,
        &arp_request(mac(11), addr(BLUE, 11), addr(BLUE, 13)),
    );

    let report = s.take_flows(NOW);
    let flows = by_key(&report);
    assert_eq!(flows.len(), 4, "{flows:#?}");
    let (a, b) = (addr(BLUE, 11), addr(BLUE, 13));
    let expect = [
        (key(BLUE, a, b, TCP, (40000, 80)), 2, 140 + 340),
        (key(BLUE, a, b, UDP, (5353, 53)), 1, 29),
        (key(BLUE, a, b, ICMP, (0x1234, 0x1234)), 3, 3 * 84),
        (key(BLUE, a, b, ICMP, (0, 0)), 1, 28),
    ];
    for (k, packets, bytes) in expect {
        let f = flows
            .get(&k)
            .unwrap_or_else(|| panic!("{k:?} in {flows:#?}"));
        assert_eq!((f.packets, f.bytes), (packets, bytes), "{k:?}");
        assert_eq!(
            (f.port, f.router, f.path),
            (VM_BLUE, None, FlowPath::EastWest)
        );
    }
    assert_eq!((report.entries, report.capacity), (4, 65_536));
    assert_eq!((report.untracked_packets, report.interval), (0, None));
}

#[test]
fn fragments_after_the_first_count_without_ports() {
    let mut s = host_a();
    let (a, b) = (addr(BLUE, 11), addr(BLUE, 13));
    let mut first = udp_body(40);
    first[4..6].copy_from_slice(&200u16.to_be_bytes());
    let head = ipv4_packet(a, b, UDP, 0x2000, &first);
    let tail = ipv4_packet(a, b, UDP, 6, &[9; 64]);
    send(&mut s, NOW, VM_BLUE, &ip_frame(mac(13), mac(11), &head));
    send(&mut s, NOW, VM_BLUE, &ip_frame(mac(13), mac(11), &tail));
    let flows = by_key(&s.take_flows(NOW));
    assert_eq!(flows[&key(BLUE, a, b, UDP, (5000, 6000))].bytes, 20 + 48);
    assert_eq!(flows[&key(BLUE, a, b, UDP, (0, 0))].bytes, 20 + 64);
}

#[test]
fn a_large_tcp_segment_counts_as_its_segments() {
    let mut s = host_a();
    let (tap, vm) = (addr(BLUE, 13), addr(BLUE, 11));
    // From tap 13 to VM 11 (no offloads): cut into 1,398 + 1,398 + 1,204 bytes of data.
    let frame = offload_tcp_frame(mac(11), mac(13), (tap, 40000), (vm, 80), ACK, &data(4000));
    let out = run_offload(&mut s, TAP_BLUE, &frame, tcp_gso(1398));
    assert_eq!(out.len(), 3);
    let sent: usize = out.iter().map(|(_, _, _, b)| b.len() - 14).sum();
    // To another offload tap it goes whole, and counts the same.
    let to_tap = offload_tcp_frame(
        mac(14),
        mac(13),
        (tap, 40001),
        (addr(RED, 14), 80),
        ACK,
        &data(4000),
    );
    let to_tap = eth(gw_mac(BLUE), mac(13), EtherType::IPV4, &to_tap[14..]);
    let routed = run_offload(&mut s, TAP_BLUE, &to_tap, tcp_gso(1398));
    assert_eq!(routed.len(), 1);
    assert!(routed[0].2.gso.is_some());

    let flows = by_key(&s.take_flows(NOW));
    let cut = flows[&key(BLUE, tap, vm, TCP, (40000, 80))];
    assert_eq!((cut.packets, cut.bytes), (3, 3 * (20 + 32) + 4000));
    assert_eq!(cut.bytes, sent as u64);
    assert_eq!((cut.port, cut.router), (TAP_BLUE, None));
    let whole = flows[&key(BLUE, tap, addr(RED, 14), TCP, (40001, 80))];
    assert_eq!((whole.packets, whole.bytes), (3, 3 * (20 + 32) + 4000));
    assert_eq!(whole.router, Some(R1));
    // A complete frame with a partial checksum only is one packet.
    let small = offload_tcp_frame(mac(11), mac(13), (tap, 40002), (vm, 80), ACK, &data(100));
    let csum_only = Offload {
        gso: None,
        ..tcp_gso(1398)
    };
    run_offload(&mut s, TAP_BLUE, &small, csum_only);
    let flows = by_key(&s.take_flows(NOW));
    let f = flows[&key(BLUE, tap, vm, TCP, (40002, 80))];
    assert_eq!((f.packets, f.bytes), (1, 20 + 32 + 100));
}

#[test]
fn routed_flows_name_their_router_and_are_counted_once_across_hosts() {
    let mut a = host_a();
    let mut b = host_b();
    // Routed on host A to VM 12 (red, local) and to VM 22 (red, host B).
    let local = routed_udp(BLUE, 11, addr(RED, 12), 100);
    assert_eq!(send(&mut a, NOW, VM_BLUE, &local), [(VM_RED, None)]);
    let remote = routed_udp(BLUE, 11, addr(RED, 22), 200);
    let out = run(&mut a, NOW, VM_BLUE, &remote);
    assert_eq!(reached(&out), [(UPLINK, Some(VTEP_B))]);
    let delivered = common::hosts::carry(&out, &mut b, VTEP_B, NOW);
    assert_eq!(reached(&delivered), [(VM_B, None)]);
    // Switched in blue: no router.
    send(&mut a, NOW, VM_BLUE, &blue_tcp(40000, 10));

    let flows = by_key(&a.take_flows(NOW));
    let src = addr(BLUE, 11);
    let to_local = flows[&key(BLUE, src, addr(RED, 12), UDP, (5000, 6000))];
    assert_eq!(
        (to_local.router, to_local.path),
        (Some(R1), FlowPath::EastWest)
    );
    assert_eq!((to_local.packets, to_local.bytes), (1, 20 + 8 + 100));
    let to_remote = flows[&key(BLUE, src, addr(RED, 22), UDP, (5000, 6000))];
    assert_eq!(
        (to_remote.router, to_remote.bytes),
        (Some(R1), 20 + 8 + 200)
    );
    assert_eq!(
        flows[&key(BLUE, src, addr(BLUE, 13), TCP, (40000, 80))].router,
        None
    );
    // Host B received it over VXLAN: not counted again.
    let report = b.take_flows(NOW);
    assert!(report.flows.is_empty(), "{report:#?}");
    assert_eq!(report.entries, 0);
}

#[test]
fn frames_from_another_host_or_the_trunk_are_not_counted() {
    let (mut a, mut b) = common::hosts::two_hosts();
    let frame = udp_ports(mac(2), mac(1), (ip(1), 1000), (ip(2), 2000), &[1; 10]);
    let out = run(&mut a, NOW, PortId(1), &frame);
    let delivered = common::hosts::carry(&out, &mut b, VTEP_B, NOW);
    assert_eq!(reached(&delivered), [(PortId(2), None)]);
    assert_eq!(a.take_flows(NOW).flows.len(), 1);
    assert!(b.take_flows(NOW).flows.is_empty());
    // From the trunk into green, to VM 15 on host A.
    let mut s = host_a();
    let ip_packet = ipv4_payload(addr(GREEN, 99), addr(GREEN, 15), UDP, &udp_body(10));
    let tagged = tagged(mac(15), mac(99), 30, EtherType::IPV4, &ip_packet);
    assert_eq!(send(&mut s, NOW, TRUNK, &tagged), [(VM_GREEN, None)]);
    assert!(s.take_flows(NOW).flows.is_empty());
    assert_eq!(s.flow_entries(), 0);
}

#[test]
fn a_take_hands_out_deltas_and_idle_flows_leave() {
    let mut s = host_a();
    send(&mut s, t(10), VM_BLUE, &blue_tcp(40000, 60));
    send(&mut s, t(10), VM_BLUE, &blue_tcp(40000, 60));
    let first = s.take_flows(t(10));
    assert_eq!(first.flows[0].packets, 2);
    assert_eq!(first.interval, None);
    send(&mut s, t(15), VM_BLUE, &blue_tcp(40000, 60));
    let second = s.take_flows(t(20));
    assert_eq!((second.flows[0].packets, second.flows[0].bytes), (1, 100));
    assert_eq!(second.interval, Some(t(10)));
    // No packets: no flows, the entry stays for one more take, then leaves.
    let third = s.take_flows(t(30));
    assert!(third.flows.is_empty());
    assert_eq!(third.entries, 1);
    let fourth = s.take_flows(t(40));
    assert_eq!(fourth.entries, 0);
    // A packet between two takes resets the idle count.
    send(&mut s, t(41), VM_BLUE, &blue_tcp(40000, 60));
    assert_eq!(s.take_flows(t(50)).flows.len(), 1);
    assert_eq!(s.take_flows(t(60)).entries, 1);
    send(&mut s, t(61), VM_BLUE, &blue_tcp(40000, 60));
    assert_eq!(s.take_flows(t(70)).entries, 1);
    assert_eq!(s.take_flows(t(80)).entries, 1);
}

#[test]
fn flows_idle_for_the_timeout_are_expired() {
    let mut s = host_a();
    send(&mut s, t(10), VM_BLUE, &blue_tcp(40000, 60));
    send(&mut s, t(70), VM_BLUE, &blue_tcp(40001, 60));
    s.expire(t(129));
    assert_eq!(s.flow_entries(), 2);
    s.expire(t(130));
    assert_eq!(s.flow_entries(), 1);
    // A take hands out a flow's counts, then drops it once idle for the timeout, before its
    // idle takes.
    let report = s.take_flows(t(190));
    assert_eq!((report.flows.len(), report.entries), (1, 1));
    assert_eq!(s.take_flows(t(191)).entries, 0);
    send(&mut s, t(300), VM_BLUE, &blue_tcp(40002, 60));
    let report = s.take_flows(t(300));
    assert_eq!((report.flows.len(), report.entries), (1, 1));
}

#[test]
fn a_full_table_counts_untracked_packets() {
    let mut s = host_a();
    set_flows(
        &mut s,
        FlowTableSettings {
            max_entries: 2,
            idle_timeout: t(10),
            ..FlowTableSettings::default()
        },
    );
    for sport in [1, 2, 3, 3, 1] {
        // Forwarding is never refused for a full table.
        assert_eq!(
            send(&mut s, t(100), VM_BLUE, &blue_tcp(sport, 10)),
            [(TAP_BLUE, None)]
        );
    }
    let report = s.take_flows(t(100));
    let counted: BTreeMap<u16, u64> = report
        .flows
        .iter()
        .map(|f| (f.key.src_port, f.packets))
        .collect();
    assert_eq!(counted, BTreeMap::from([(1, 2), (2, 1)]));
    assert_eq!(
        (report.entries, report.capacity, report.untracked_packets),
        (2, 2, 2)
    );
    // Reset by the take.
    assert_eq!(s.take_flows(t(101)).untracked_packets, 0);
    // Once the flows are idle for the timeout, a new flow frees them and gets in.
    send(&mut s, t(105), VM_BLUE, &blue_tcp(2, 10));
    send(&mut s, t(111), VM_BLUE, &blue_tcp(3, 10));
    let report = s.take_flows(t(111));
    let counted: Vec<u16> = report.flows.iter().map(|f| f.key.src_port).collect();
    assert_eq!(counted.len(), 2, "{report:#?}");
    assert!(counted.contains(&3) && counted.contains(&2));
    assert_eq!(report.untracked_packets, 0);
}

#[test]
fn with_accounting_off_nothing_is_counted() {
    let mut s = host_a();
    send(&mut s, NOW, VM_BLUE, &blue_tcp(1, 10));
    assert_eq!(s.flow_entries(), 1);
    set_flows(
        &mut s,
        FlowTableSettings {
            enabled: false,
            ..FlowTableSettings::default()
        },
    );
    assert_eq!(s.flow_entries(), 0, "turning it off empties the table");
    assert_eq!(
        send(&mut s, NOW, VM_BLUE, &blue_tcp(1, 10)),
        [(TAP_BLUE, None)]
    );
    assert_eq!(
        send(
            &mut s,
            NOW,
            VM_BLUE,
            &routed_udp(BLUE, 11, addr(RED, 12), 10)
        ),
        [(VM_RED, None)]
    );
    let report = s.take_flows(NOW);
    assert!(report.flows.is_empty());
    assert_eq!((report.entries, report.untracked_packets), (0, 0));
    assert!(!s.flow_settings().enabled);
    // On again.
    set_flows(&mut s, FlowTableSettings::default());
    send(&mut s, NOW, VM_BLUE, &blue_tcp(1, 10));
    assert_eq!(s.take_flows(NOW).flows.len(), 1);
    // A table beyond the limit is refused, changing nothing.
    let too_large = FlowTableSettings {
        enabled: false,
        max_entries: MAX_FLOW_ENTRIES + 1,
        ..FlowTableSettings::default()
    };
    assert_eq!(
        s.apply(ConfigCommand::SetFlowAccounting(too_large)),
        Err(ConfigError::FlowTableTooLarge(MAX_FLOW_ENTRIES + 1))
    );
    assert_eq!(s.flow_settings(), FlowTableSettings::default());
}

#[test]
fn packets_dropped_by_the_sending_port_s_checks_are_not_counted() {
    let mut s = host_a();
    // A bad IPv4 header checksum: dropped at classification.
    let mut bad = blue_tcp(1, 10);
    bad[24] ^= 0xff;
    assert!(send(&mut s, NOW, VM_BLUE, &bad).is_empty());
    // An 802.1Q tag from an access port: refused.
    let tagged = tagged(mac(13), mac(11), 7, EtherType::IPV4, &blue_tcp(1, 10)[14..]);
    assert!(send(&mut s, NOW, VM_BLUE, &tagged).is_empty());
    assert_eq!(s.flow_entries(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the traffic, settings and takes, the table holds at most its bound, and every
    /// packet sent is either in a flow handed out or untracked.
    #[test]
    fn the_table_never_exceeds_its_bound(
        bound in 0usize..8,
        ops in prop::collection::vec((0u8..4, 0u16..16, 1u64..5), 1..120),
    ) {
        let mut s = host_a();
        set_flows(&mut s, FlowTableSettings { max_entries: bound, idle_timeout: t(3), ..FlowTableSettings::default() });
        let mut now = t(100);
        let (mut sent, mut seen) = (0u64, 0u64);
        for (op, sport, step) in ops {
            match op {
                0 | 1 => {
                    send(&mut s, now, VM_BLUE, &blue_tcp(sport, 1));
                    sent += 1;
                }
                2 => {
                    let r = s.take_flows(now);
                    prop_assert!(r.entries <= bound);
                    seen += r.flows.iter().map(|f| f.packets).sum::<u64>() + r.untracked_packets;
                }
                _ => {
                    now += Duration::from_secs(step);
                    s.expire(now);
                }
            }
            prop_assert!(s.flow_entries() <= bound);
        }
        let r = s.take_flows(now);
        seen += r.flows.iter().map(|f| f.packets).sum::<u64>() + r.untracked_packets;
        // Expiry may drop untaken counts of flows idle for the timeout.
        prop_assert!(seen <= sent);
        if bound == 0 {
            prop_assert_eq!(seen, sent);
        }
    }
}
