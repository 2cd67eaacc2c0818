//! Offers to the kernel's fast path: which frames' flows are offered (one copy to another fast
//! port, unchanged or routed), which are not (control segments, other ports, a firewall, the
//! uplink, a frame that changed the switch's state), the generation that takes them back, and
//! the counting of what the kernel forwarded.

mod common;

use std::time::Duration;

use common::routing::*;
use common::*;
use vinfra_switch::datapath::firewall::rules::{Action, Direction, PortRange, Prefix, Protocol};
use vinfra_switch::datapath::{
    ConfigCommand, FastFlow, FastRewrite, FastTraffic, Location, PortId, Switch, TxBatch,
};
use vinfra_switch::wire::{EtherType, Offload};

/// Host A with every local access port fast.
fn fast_host() -> Switch {
    let mut s = host_a();
    for p in [VM_BLUE, VM_RED, TAP_BLUE, TAP_RED, VM_GREEN] {
        s.set_port_fast(p, true);
    }
    s
}

/// Sends `frame` from `port` and takes the offers it made.
fn offers(s: &mut Switch, port: PortId, frame: &[u8]) -> Vec<FastFlow> {
    let mut tx = TxBatch::new();
    s.process_offload(NOW, [(port, frame, Offload::NONE)], &mut tx);
    let mut out = Vec::new();
    s.take_fast_offers(&mut out);
    out
}

/// A UDP frame on blue from VM 11 to tap 13 (no router).
fn blue_udp() -> Vec<u8> {
    eth(
        mac(13),
        mac(11),
        EtherType::IPV4,
        &packet(addr(BLUE, 11), addr(BLUE, 13), 17, 64, &udp_body(100)),
    )
}

/// VM 11's end of the TCP connection on blue (host number, port).
const CLIENT: (u8, u16) = (11, 40000);
/// Tap 13's end of the TCP connection on blue (host number, port).
const SERVER: (u8, u16) = (13, 80);

/// A TCP segment on blue from `from` to `to` (host number for MAC and address, port) with
/// `flags`: sequence and acknowledgement 1, four bytes of data.
fn tcp_frame(from: (u8, u16), to: (u8, u16), flags: u8) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(24);
    tcp.extend_from_slice(&from.1.to_be_bytes());
    tcp.extend_from_slice(&to.1.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(b"data");
    eth(
        mac(to.0),
        mac(from.0),
        EtherType::IPV4,
        &packet(addr(BLUE, from.0), addr(BLUE, to.0), 6, 64, &tcp),
    )
}

#[test]
fn a_bridged_flow_between_two_fast_ports_is_offered_unchanged() {
    let mut s = fast_host();
    let offered = offers(&mut s, VM_BLUE, &blue_udp());
    assert_eq!(offered.len(), 1);
    let f = offered[0];
    assert_eq!(f.key.in_port, VM_BLUE);
    assert_eq!((f.key.src_mac, f.key.dst_mac), (mac(11), mac(13)));
    assert_eq!((f.key.src, f.key.dst), (addr(BLUE, 11), addr(BLUE, 13)));
    assert_eq!(
        (f.key.protocol, f.key.src_port, f.key.dst_port),
        (17, 5000, 6000)
    );
    assert_eq!(f.out_port, TAP_BLUE);
    assert_eq!(f.rewrite, None);
    assert_eq!(f.max_ip_len, 1450);
    assert_eq!(f.generation, s.fast_generation());
    assert_eq!(f.router(), None);
    // An ACK-only TCP segment is offered too.
    assert_eq!(
        offers(&mut s, VM_BLUE, &tcp_frame(CLIENT, SERVER, ACK)).len(),
        1
    );
}

#[test]
fn a_routed_flow_is_offered_with_its_rewrite() {
    let mut s = fast_host();
    let frame = routed_udp(BLUE, 11, addr(RED, 12), 100);
    let offered = offers(&mut s, VM_BLUE, &frame);
    assert_eq!(offered.len(), 1, "{offered:?}");
    let f = offered[0];
    assert_eq!(f.key.dst_mac, gw_mac(BLUE));
    assert_eq!(f.out_port, VM_RED);
    assert_eq!(
        f.rewrite,
        Some(FastRewrite {
            src_mac: gw_mac(RED),
            dst_mac: mac(12),
        })
    );
    assert_eq!(f.router(), Some(R1));
}

#[test]
fn control_segments_other_ports_firewalls_and_the_uplink_are_not_offered() {
    let mut s = fast_host();
    for flags in [0x02, 0x12, 0x01, 0x11, 0x04] {
        assert!(
            offers(&mut s, VM_BLUE, &tcp_frame(CLIENT, SERVER, flags)).is_empty(),
            "{flags:#x}"
        );
    }
    // To VM 22 on host B: through the uplink.
    let remote = routed_udp(BLUE, 11, addr(RED, 22), 100);
    assert!(offers(&mut s, VM_BLUE, &remote).is_empty());
    // TTL 1: an ICMP error back.
    let mut ttl1 = routed_udp(BLUE, 11, addr(RED, 12), 100);
    ttl1[22] = 1;
    refill(&mut ttl1[14..]);
    assert!(offers(&mut s, VM_BLUE, &ttl1).is_empty());
    // A port that is not fast, at either end.
    s.set_port_fast(TAP_BLUE, false);
    assert!(offers(&mut s, VM_BLUE, &blue_udp()).is_empty());
    s.set_port_fast(TAP_BLUE, true);
    assert_eq!(offers(&mut s, VM_BLUE, &blue_udp()).len(), 1);
    // A firewall on the receiving port.
    let allow_all = common::firewall::rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Any,
        PortRange::ANY,
        &[Prefix::ANY],
    );
    s.apply(ConfigCommand::SetPortFirewall {
        port: TAP_BLUE,
        rules: Some(vec![allow_all]),
    })
    .unwrap();
    // Its first packet starts a connection: not offered; the next, established, is.
    assert!(offers(&mut s, VM_BLUE, &blue_udp()).is_empty());
    assert_eq!(offers(&mut s, VM_BLUE, &blue_udp()).len(), 1);
}

#[test]
fn through_a_firewall_an_established_connection_is_offered_and_kept_alive() {
    let mut s = fast_host();
    let allow_in = common::firewall::rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Any,
        PortRange::ANY,
        &[Prefix::ANY],
    );
    s.apply(ConfigCommand::SetPortFirewall {
        port: TAP_BLUE,
        rules: Some(vec![allow_in]),
    })
    .unwrap();
    // A TCP connection: SYN and SYN-ACK cross the switch, the ACKs after are offered.
    assert!(offers(&mut s, VM_BLUE, &tcp_frame(CLIENT, SERVER, SYN)).is_empty());
    let syn_ack = tcp_frame(SERVER, CLIENT, SYN_ACK);
    assert!(offers(&mut s, TAP_BLUE, &syn_ack).is_empty());
    // The first ACK establishes it (a change of state: nothing offered), the next is.
    let g = s.fast_generation();
    assert!(offers(&mut s, VM_BLUE, &tcp_frame(CLIENT, SERVER, ACK)).is_empty());
    assert_ne!(s.fast_generation(), g);
    let offered = offers(&mut s, VM_BLUE, &tcp_frame(CLIENT, SERVER, ACK));
    assert_eq!(offered.len(), 1);
    let f = offered[0];
    assert_eq!(f.generation, s.fast_generation());
    // A UDP flow (30 s without a reply) is kept alive past its timeout by the kernel's
    // traffic alone; the TCP connection is there all along.
    assert!(offers(&mut s, VM_BLUE, &blue_udp()).is_empty());
    let u = offers(&mut s, VM_BLUE, &blue_udp())[0];
    let traffic = FastTraffic {
        frames: 1,
        bytes: 142,
        packets: 1,
        ip_bytes: 128,
    };
    for at in [20, 40, 60, 80] {
        s.fast_traffic(NOW + Duration::from_secs(at), &u, traffic);
        s.fast_traffic(NOW + Duration::from_secs(at), &f, traffic);
    }
    let later = NOW + Duration::from_secs(90);
    assert_eq!(s.export_connections(TAP_BLUE, later).len(), 2);
    // Without it, the UDP one would have gone.
    assert_eq!(
        s.export_connections(TAP_BLUE, NOW + Duration::from_secs(200))
            .len(),
        1
    );
    // Its end (RST) crosses the switch and takes the flows back.
    let g = s.fast_generation();
    let mut tx = TxBatch::new();
    let rst = tcp_frame(CLIENT, SERVER, RST);
    s.process_offload(later, [(VM_BLUE, &rst[..], Offload::NONE)], &mut tx);
    assert_ne!(s.fast_generation(), g);
}

#[test]
fn a_change_of_state_advances_the_generation_and_the_changing_frame_offers_nothing() {
    let mut s = fast_host();
    let g0 = s.fast_generation();
    assert_eq!(offers(&mut s, VM_BLUE, &blue_udp()).len(), 1);
    assert_eq!(s.fast_generation(), g0, "a forwarded frame changes nothing");
    // Configuration.
    s.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(40),
        location: Location::Port(TAP_BLUE),
    })
    .unwrap();
    let g1 = s.fast_generation();
    assert_ne!(g1, g0);
    // A MAC learned: a new source on the tap, its frame not offered.
    let from_new = eth(
        mac(11),
        mac(41),
        EtherType::IPV4,
        &packet(addr(BLUE, 41), addr(BLUE, 11), 17, 64, &udp_body(10)),
    );
    assert!(offers(&mut s, TAP_BLUE, &from_new).is_empty());
    let g2 = s.fast_generation();
    assert_ne!(g2, g1);
    // The next frame of that flow is offered at the new generation.
    let again = offers(&mut s, TAP_BLUE, &from_new);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].generation, g2);
    // Expiry of anything.
    assert!(s.expire(NOW + Duration::from_secs(3600)) > 0);
    assert_ne!(s.fast_generation(), g2);
}

#[test]
fn what_the_kernel_forwarded_is_counted_as_the_switch_would() {
    let mut s = fast_host();
    let frame = routed_udp(BLUE, 11, addr(RED, 12), 100);
    let f = offers(&mut s, VM_BLUE, &frame)[0];
    let _ = s.take_flows(NOW);
    let before = (
        s.port_counters(VM_BLUE).unwrap(),
        s.port_counters(VM_RED).unwrap(),
        s.router_counters(R1).unwrap().routed_packets,
    );
    let traffic = FastTraffic {
        frames: 10,
        bytes: 10 * frame.len() as u64,
        packets: 12,
        ip_bytes: 12 * 128,
    };
    s.fast_traffic(NOW + Duration::from_secs(1), &f, traffic);
    assert_eq!(s.fast_generation(), f.generation);
    let (vin, vout) = (
        s.port_counters(VM_BLUE).unwrap(),
        s.port_counters(VM_RED).unwrap(),
    );
    assert_eq!(vin.rx_packets - before.0.rx_packets, 10);
    assert_eq!(vin.rx_bytes - before.0.rx_bytes, traffic.bytes);
    assert_eq!(vout.tx_packets - before.1.tx_packets, 10);
    assert_eq!(s.router_counters(R1).unwrap().routed_packets - before.2, 10);
    let take = s.take_flows(NOW + Duration::from_secs(1));
    let flow = take
        .flows
        .iter()
        .find(|d| d.key.src == addr(BLUE, 11) && d.key.dst == addr(RED, 12))
        .expect("the flow is counted");
    assert_eq!((flow.packets, flow.bytes), (12, 12 * 128));
    assert_eq!(flow.port, VM_BLUE);
}

#[test]
fn a_flood_that_reaches_one_port_and_a_marked_port_are_not_offered() {
    let mut s = fast_host();
    s.apply(ConfigCommand::SetFloodList {
        network: BLUE,
        vteps: vec![],
    })
    .unwrap();
    // To an unknown MAC on blue: flooded, and the only other local port of blue is tap 13.
    let unknown = eth(
        mac(99),
        mac(11),
        EtherType::IPV4,
        &packet(addr(BLUE, 11), addr(BLUE, 99), 17, 64, &udp_body(100)),
    );
    let mut tx = TxBatch::new();
    s.process_offload(NOW, [(VM_BLUE, &unknown[..], Offload::NONE)], &mut tx);
    assert_eq!(tx.len(), 1, "one copy, to tap 13");
    let mut offered = Vec::new();
    s.take_fast_offers(&mut offered);
    assert!(offered.is_empty(), "{offered:?}");
    // A port that marks DSCP.
    s.apply(ConfigCommand::SetPortDscp {
        port: VM_BLUE,
        mark: Some(0),
    })
    .unwrap();
    assert!(offers(&mut s, VM_BLUE, &blue_udp()).is_empty());
}

#[test]
fn late_counters_never_take_a_moved_address_back() {
    let mut s = fast_host();
    // A learned address on tap 13 (blue), whose flow is offered.
    let from_tap = eth(
        mac(11),
        mac(42),
        EtherType::IPV4,
        &packet(addr(BLUE, 42), addr(BLUE, 11), 17, 64, &udp_body(10)),
    );
    let _ = offers(&mut s, TAP_BLUE, &from_tap);
    let f = offers(&mut s, TAP_BLUE, &from_tap)[0];
    // The address moves to VM 11's port; then the kernel's last counters of the old flow.
    let moved = eth(
        mac(13),
        mac(42),
        EtherType::IPV4,
        &packet(addr(BLUE, 42), addr(BLUE, 13), 17, 64, &udp_body(10)),
    );
    let _ = offers(&mut s, VM_BLUE, &moved);
    assert_eq!(s.lookup(BLUE, mac(42), NOW), Some(Location::Port(VM_BLUE)));
    let g = s.fast_generation();
    s.fast_traffic(
        NOW,
        &f,
        FastTraffic {
            frames: 1,
            bytes: 60,
            packets: 1,
            ip_bytes: 46,
        },
    );
    assert_eq!(s.lookup(BLUE, mac(42), NOW), Some(Location::Port(VM_BLUE)));
    assert_eq!(s.fast_generation(), g);
}
