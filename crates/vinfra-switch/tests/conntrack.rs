//! Connection tracking end to end: TCP handshake, data, FIN close and RST, invalid segments,
//! reply detection, timeouts, UDP, ICMP echo and errors related to a flow, fragments, zones,
//! a full table, and random operation sequences (export and import of a zone's connections
//! are in `mobility.rs`).

mod common;

use std::time::Duration;

use common::conntrack::*;
use common::*;
use proptest::prelude::*;
use vinfra_switch::datapath::firewall::conntrack::{
    Conntrack, ConntrackConfig, ConntrackFull, InvalidReason, PacketInfo, Side, TcpState, Timeouts,
    Tracked,
};
use vinfra_switch::wire::ipv4::protocol;

#[test]
fn tcp_handshake_data_and_fin_close() {
    let mut ct = table(16);
    let t0 = secs(100);
    handshake(&mut ct, ZONE, t0);
    assert_eq!(state_of(&ct, ZONE, t0), Some(TcpState::Established));
    let out = tcp(VM, 40000, PEER, 80, PSH_ACK);
    let back = tcp(PEER, 80, VM, 40000, PSH_ACK);
    for i in 0..10 {
        assert_eq!(ct.track(ZONE, Side::FromVm, &out, t0 + secs(i)), EST);
        assert_eq!(ct.track(ZONE, Side::ToVm, &back, t0 + secs(i)), EST_REPLY);
    }
    // The VM closes; the peer acknowledges, then closes; the VM acknowledges.
    let t = t0 + secs(20);
    let steps = [
        (
            Side::FromVm,
            tcp(VM, 40000, PEER, 80, FIN_ACK),
            TcpState::FinWait,
        ),
        (
            Side::ToVm,
            tcp(PEER, 80, VM, 40000, ACK),
            TcpState::CloseWait,
        ),
        (
            Side::ToVm,
            tcp(PEER, 80, VM, 40000, FIN_ACK),
            TcpState::LastAck,
        ),
        (
            Side::FromVm,
            tcp(VM, 40000, PEER, 80, ACK),
            TcpState::TimeWait,
        ),
    ];
    for (side, pkt, state) in steps {
        assert!(matches!(
            ct.track(ZONE, side, &pkt, t),
            Tracked::Established { .. }
        ));
        assert_eq!(state_of(&ct, ZONE, t), Some(state));
    }
    // TIME_WAIT lasts 120 s from the last ACK; a retransmitted ACK does not extend it.
    assert_eq!(ct.track(ZONE, Side::FromVm, &out, t + secs(60)), EST);
    assert_eq!(ct.export(ZONE, t + secs(60))[0].remaining, secs(60));
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &out, t + secs(120)),
        Tracked::Invalid(InvalidReason::TcpNotSyn)
    );
    assert_eq!(ct.len(), 0);
    assert_eq!(ct.counters().expired, 1);
}

#[test]
fn a_syn_on_time_wait_reopens_through_the_rules() {
    let mut ct = table(16);
    handshake(&mut ct, ZONE, secs(0));
    let rst = tcp(PEER, 80, VM, 40000, RST);
    assert_eq!(ct.track(ZONE, Side::ToVm, &rst, secs(1)), EST_REPLY);
    assert_eq!(state_of(&ct, ZONE, secs(1)), Some(TcpState::Close));
    let syn = tcp(VM, 40000, PEER, 80, SYN);
    assert_eq!(ct.track(ZONE, Side::FromVm, &syn, secs(2)), Tracked::New);
    assert_eq!(ct.len(), 0);
    assert_eq!(ct.counters().removed, 1);
    ct.commit(ZONE, Side::FromVm, &syn, secs(2)).unwrap();
    assert_eq!(state_of(&ct, ZONE, secs(2)), Some(TcpState::SynSent));
}

#[test]
fn rst_closes_for_ten_seconds() {
    let mut ct = table(16);
    handshake(&mut ct, ZONE, secs(0));
    let rst = tcp(VM, 40000, PEER, 80, RST | ACK);
    assert_eq!(ct.track(ZONE, Side::FromVm, &rst, secs(5)), EST);
    assert_eq!(state_of(&ct, ZONE, secs(5)), Some(TcpState::Close));
    // Segments in flight still pass, without extending the close timeout.
    let late = tcp(PEER, 80, VM, 40000, PSH_ACK);
    assert_eq!(ct.track(ZONE, Side::ToVm, &late, secs(10)), EST_REPLY);
    assert_eq!(ct.track(ZONE, Side::ToVm, &late, secs(14)), EST_REPLY);
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &late, secs(15)),
        Tracked::Invalid(InvalidReason::TcpNotSyn)
    );
}

#[test]
fn invalid_first_segments_create_nothing() {
    let mut ct = table(16);
    let now = secs(1);
    for (flags, reason) in [
        (ACK, InvalidReason::TcpNotSyn),
        (SYN_ACK, InvalidReason::TcpNotSyn),
        (RST, InvalidReason::TcpNotSyn),
        (FIN_ACK, InvalidReason::TcpNotSyn),
        (SYN | 0x01, InvalidReason::TcpBadFlags),
        (0, InvalidReason::TcpBadFlags),
        (0x01, InvalidReason::TcpBadFlags),
        (0x29, InvalidReason::TcpBadFlags),
    ] {
        let pkt = tcp(PEER, 80, VM, 40000, flags);
        assert_eq!(
            ct.track(ZONE, Side::ToVm, &pkt, now),
            Tracked::Invalid(reason),
            "{flags:#x}"
        );
        ct.commit(ZONE, Side::ToVm, &pkt, now).unwrap();
        assert_eq!(ct.len(), 0, "{flags:#x}");
    }
    let c = ct.counters();
    assert_eq!(c.invalid.get(InvalidReason::TcpNotSyn), 4);
    assert_eq!(c.invalid.get(InvalidReason::TcpBadFlags), 4);
    assert_eq!(c.invalid.total(), 8);
    assert_eq!(c.created, 0);
}

#[test]
fn bad_states_and_wrong_sides() {
    let mut ct = table(16);
    let syn = tcp(VM, 40000, PEER, 80, SYN);
    assert_eq!(ct.track(ZONE, Side::FromVm, &syn, secs(0)), Tracked::New);
    ct.commit(ZONE, Side::FromVm, &syn, secs(0)).unwrap();
    // An ACK from the originator before the SYN+ACK; a SYN+ACK from the originator.
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &tcp(VM, 40000, PEER, 80, ACK), secs(0)),
        Tracked::Invalid(InvalidReason::TcpBadState)
    );
    assert_eq!(
        ct.track(
            ZONE,
            Side::FromVm,
            &tcp(VM, 40000, PEER, 80, SYN_ACK),
            secs(0)
        ),
        Tracked::Invalid(InvalidReason::TcpBadState)
    );
    // The SYN retransmitted is fine.
    assert_eq!(ct.track(ZONE, Side::FromVm, &syn, secs(1)), EST);
    // The answer arriving from the VM's side with the peer's addresses: spoofed.
    let synack = tcp(PEER, 80, VM, 40000, SYN_ACK);
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &synack, secs(1)),
        Tracked::Invalid(InvalidReason::WrongSide)
    );
    assert_eq!(ct.track(ZONE, Side::ToVm, &synack, secs(1)), EST_REPLY);
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &tcp(VM, 40000, PEER, 80, ACK), secs(1)),
        EST
    );
    // A SYN from the responder once established.
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &tcp(PEER, 80, VM, 40000, SYN), secs(2)),
        Tracked::Invalid(InvalidReason::TcpBadState)
    );
    assert_eq!(state_of(&ct, ZONE, secs(2)), Some(TcpState::Established));
}

#[test]
fn connection_to_the_vm_replies_from_it() {
    let mut ct = table(16);
    let syn = tcp(PEER, 5555, VM, 22, SYN);
    assert_eq!(ct.track(ZONE, Side::ToVm, &syn, secs(0)), Tracked::New);
    ct.commit(ZONE, Side::ToVm, &syn, secs(0)).unwrap();
    assert_eq!(
        ct.track(
            ZONE,
            Side::FromVm,
            &tcp(VM, 22, PEER, 5555, SYN_ACK),
            secs(0)
        ),
        EST_REPLY
    );
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &tcp(PEER, 5555, VM, 22, ACK), secs(0)),
        EST
    );
    let e = ct.export(ZONE, secs(0));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].origin, Side::ToVm);
    assert_eq!(e[0].original.src, PEER);
    assert_eq!(e[0].reply, e[0].original.reply());
    assert!(e[0].replied);
}

#[test]
fn tcp_timeouts_by_state() {
    let t = Timeouts::default();
    let mut ct = table(16);
    let syn = tcp(VM, 40000, PEER, 80, SYN);
    let _ = ct.track(ZONE, Side::FromVm, &syn, secs(0));
    ct.commit(ZONE, Side::FromVm, &syn, secs(0)).unwrap();
    let synack = tcp(PEER, 80, VM, 40000, SYN_ACK);
    // SYN_SENT lasts 120 s.
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &synack, t.tcp_syn_sent - secs(1)),
        EST_REPLY
    );
    // SYN_RECV 60 s.
    let at = t.tcp_syn_sent - secs(1) + t.tcp_syn_recv;
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &tcp(VM, 40000, PEER, 80, ACK), at),
        Tracked::Invalid(InvalidReason::TcpNotSyn)
    );

    // Established lasts five days of silence.
    let mut ct = table(16);
    handshake(&mut ct, ZONE, secs(0));
    assert_eq!(t.tcp_established, secs(5 * 86400));
    let data = tcp(PEER, 80, VM, 40000, PSH_ACK);
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &data, t.tcp_established - secs(1)),
        EST_REPLY
    );
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &data, 2 * t.tcp_established - secs(2)),
        EST_REPLY
    );
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &data, 3 * t.tcp_established),
        Tracked::Invalid(InvalidReason::TcpNotSyn)
    );

    // A SYN never answered is gone after 120 s.
    let mut ct = table(16);
    let _ = ct.track(ZONE, Side::FromVm, &syn, secs(0));
    ct.commit(ZONE, Side::FromVm, &syn, secs(0)).unwrap();
    assert_eq!(ct.expire(t.tcp_syn_sent - secs(1)), 0);
    assert_eq!(ct.expire(t.tcp_syn_sent), 1);
    assert!(ct.is_empty());
}

#[test]
fn udp_unreplied_then_replied() {
    let mut ct = table(16);
    let query = udp(VM, 33333, PEER, 53);
    let answer = udp(PEER, 53, VM, 33333);
    assert_eq!(ct.track(ZONE, Side::FromVm, &query, secs(0)), Tracked::New);
    ct.commit(ZONE, Side::FromVm, &query, secs(0)).unwrap();
    // Unreplied: 30 s, refreshed by the VM's packets.
    assert_eq!(ct.track(ZONE, Side::FromVm, &query, secs(29)), EST);
    assert_eq!(ct.export(ZONE, secs(29))[0].remaining, secs(30));
    assert!(!ct.export(ZONE, secs(29))[0].replied);
    assert_eq!(ct.track(ZONE, Side::ToVm, &answer, secs(58)), EST_REPLY);
    // Replied: 120 s.
    let e = ct.export(ZONE, secs(58));
    assert!(e[0].replied);
    assert_eq!(e[0].remaining, secs(120));
    assert_eq!(ct.track(ZONE, Side::ToVm, &answer, secs(177)), EST_REPLY);
    assert_eq!(ct.track(ZONE, Side::FromVm, &query, secs(296)), EST);
    assert_eq!(ct.expire(secs(415)), 0);
    assert_eq!(ct.expire(secs(416)), 1);
    // Gone: the answer is new (the rules decide), the table empty.
    assert_eq!(ct.track(ZONE, Side::ToVm, &answer, secs(418)), Tracked::New);

    // Never answered: gone after 30 s.
    let mut ct = table(16);
    let _ = ct.track(ZONE, Side::FromVm, &query, secs(0));
    ct.commit(ZONE, Side::FromVm, &query, secs(0)).unwrap();
    assert_eq!(ct.track(ZONE, Side::ToVm, &answer, secs(30)), Tracked::New);
    assert_eq!(ct.len(), 0);
}

#[test]
fn icmp_echo_by_identifier() {
    let mut ct = table(16);
    let request = echo(VM, PEER, 8, 7);
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &request, secs(0)),
        Tracked::New
    );
    ct.commit(ZONE, Side::FromVm, &request, secs(0)).unwrap();
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &echo(PEER, VM, 0, 7), secs(1)),
        EST_REPLY
    );
    // Another identifier's reply, or a reply the VM never asked for.
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &echo(PEER, VM, 0, 8), secs(1)),
        Tracked::Invalid(InvalidReason::IcmpUnmatchedReply)
    );
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &echo(ROUTER, VM, 0, 7), secs(1)),
        Tracked::Invalid(InvalidReason::IcmpUnmatchedReply)
    );
    // The peer pinging the VM with the same identifier is another connection.
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &echo(PEER, VM, 8, 7), secs(1)),
        Tracked::New
    );
    // The next request of the same ping refreshes the entry; 30 s after the last packet it
    // is gone.
    assert_eq!(ct.track(ZONE, Side::FromVm, &request, secs(2)), EST);
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &echo(PEER, VM, 0, 7), secs(32)),
        Tracked::Invalid(InvalidReason::IcmpUnmatchedReply)
    );
}

#[test]
fn icmp_errors_related_to_a_flow() {
    let mut ct = table(16);
    let query = udp_bytes(VM, 33333, PEER, 53);
    let pkt = PacketInfo::parse(&query).unwrap();
    let _ = ct.track(ZONE, Side::FromVm, &pkt, secs(0));
    ct.commit(ZONE, Side::FromVm, &pkt, secs(0)).unwrap();

    // Port unreachable from the peer, and time exceeded from a router on the way.
    let unreachable = icmp_error(PEER, VM, 3, 3, &query);
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &unreachable, secs(1)),
        Tracked::Related
    );
    let exceeded = icmp_error(ROUTER, VM, 11, 0, &query);
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &exceeded, secs(1)),
        Tracked::Related
    );
    // About another flow, or not addressed to the quoted packet's sender.
    let other = udp_bytes(VM, 33334, PEER, 53);
    assert_eq!(
        ct.track(
            ZONE,
            Side::ToVm,
            &icmp_error(PEER, VM, 3, 3, &other),
            secs(1)
        ),
        Tracked::Invalid(InvalidReason::IcmpUnrelatedError)
    );
    assert_eq!(
        ct.track(
            ZONE,
            Side::ToVm,
            &icmp_error(PEER, ROUTER, 3, 3, &query),
            secs(1)
        ),
        Tracked::Invalid(InvalidReason::IcmpUnrelatedError)
    );
    // The VM answering the peer's reply with an error is related too (it goes back to the
    // reply's sender); the same error arriving from outside is not.
    let answer = udp_bytes(PEER, 53, VM, 33333);
    let from_vm = icmp_error(VM, PEER, 3, 3, &answer);
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &from_vm, secs(1)),
        Tracked::Related
    );
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &from_vm, secs(1)),
        Tracked::Invalid(InvalidReason::WrongSide)
    );
    // An error about an echo request.
    let ping = icmp_echo_bytes(VM, PEER, 8, 99);
    let p = PacketInfo::parse(&ping).unwrap();
    let _ = ct.track(ZONE, Side::FromVm, &p, secs(1));
    ct.commit(ZONE, Side::FromVm, &p, secs(1)).unwrap();
    let mut ping28 = ping.clone();
    ping28.resize(28, 0);
    assert_eq!(
        ct.track(
            ZONE,
            Side::ToVm,
            &icmp_error(ROUTER, VM, 3, 1, &ping28),
            secs(1)
        ),
        Tracked::Related
    );
    // Errors create nothing and do not refresh the flow: 30 s after the query it is gone.
    ct.commit(ZONE, Side::ToVm, &unreachable, secs(1)).unwrap();
    assert_eq!(ct.len(), 2);
    assert_eq!(
        ct.track(ZONE, Side::ToVm, &unreachable, secs(30)),
        Tracked::Invalid(InvalidReason::IcmpUnrelatedError)
    );
}

#[test]
fn fragments_follow_a_connection_of_their_addresses() {
    let mut ct = table(16);
    // A first fragment has the ports and creates the connection.
    let mut h = vec![0u8; 16];
    h[0..2].copy_from_slice(&4000u16.to_be_bytes());
    h[2..4].copy_from_slice(&4001u16.to_be_bytes());
    h[4..6].copy_from_slice(&3000u16.to_be_bytes());
    let first = PacketInfo::parse(&ipv4_packet(VM, PEER, protocol::UDP, 0x2000, &h)).unwrap();
    let later_out = PacketInfo::parse(&ipv4_packet(VM, PEER, protocol::UDP, 2, &[0; 16])).unwrap();
    let later_in = PacketInfo::parse(&ipv4_packet(PEER, VM, protocol::UDP, 2, &[0; 16])).unwrap();
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &later_out, secs(0)),
        Tracked::Invalid(InvalidReason::Fragment)
    );
    assert_eq!(ct.track(ZONE, Side::FromVm, &first, secs(0)), Tracked::New);
    ct.commit(ZONE, Side::FromVm, &first, secs(0)).unwrap();
    assert_eq!(ct.track(ZONE, Side::FromVm, &later_out, secs(0)), EST);
    assert!(matches!(
        ct.track(ZONE, Side::ToVm, &later_in, secs(0)),
        Tracked::Established { .. }
    ));
    // Later fragments create nothing.
    let other = PacketInfo::parse(&ipv4_packet(VM, ROUTER, protocol::UDP, 2, &[0; 16])).unwrap();
    ct.commit(ZONE, Side::FromVm, &other, secs(0)).unwrap();
    assert_eq!(ct.len(), 1);
    // Another protocol, zone or pair of addresses: invalid.
    let tcp_later = PacketInfo::parse(&ipv4_packet(VM, PEER, protocol::TCP, 2, &[0; 16])).unwrap();
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &tcp_later, secs(0)),
        Tracked::Invalid(InvalidReason::Fragment)
    );
    assert_eq!(
        ct.track(ZONE + 1, Side::FromVm, &later_out, secs(0)),
        Tracked::Invalid(InvalidReason::Fragment)
    );
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &other, secs(0)),
        Tracked::Invalid(InvalidReason::Fragment)
    );
    // A TCP fragment at offset 8 could rewrite the flags (RFC 1858): invalid even with a
    // connection.
    handshake(&mut ct, ZONE, secs(0));
    let tcp_at_8 = PacketInfo::parse(&ipv4_packet(VM, PEER, protocol::TCP, 1, &[0; 16])).unwrap();
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &tcp_at_8, secs(0)),
        Tracked::Invalid(InvalidReason::Fragment)
    );
    assert_eq!(ct.track(ZONE, Side::FromVm, &tcp_later, secs(0)), EST);
    // Once the connection is freed, its fragments are invalid.
    ct.remove_zone(ZONE);
    assert_eq!(
        ct.track(ZONE, Side::FromVm, &later_out, secs(0)),
        Tracked::Invalid(InvalidReason::Fragment)
    );
}

#[test]
fn zones_are_independent() {
    let mut ct = table(16);
    handshake(&mut ct, 1, secs(0));
    let ack = tcp(VM, 40000, PEER, 80, ACK);
    assert_eq!(
        ct.track(2, Side::FromVm, &ack, secs(0)),
        Tracked::Invalid(InvalidReason::TcpNotSyn)
    );
    handshake(&mut ct, 2, secs(0));
    assert_eq!((ct.zone_len(1), ct.zone_len(2), ct.len()), (1, 1, 2));
    // Closing one leaves the other.
    let rst = tcp(VM, 40000, PEER, 80, RST);
    assert_eq!(ct.track(1, Side::FromVm, &rst, secs(1)), EST);
    assert_eq!(state_of(&ct, 1, secs(1)), Some(TcpState::Close));
    assert_eq!(state_of(&ct, 2, secs(1)), Some(TcpState::Established));
    assert_eq!(ct.remove_zone(2), 1);
    assert_eq!(ct.remove_zone(2), 0);
    assert_eq!((ct.zone_len(1), ct.zone_len(2), ct.len()), (1, 0, 1));
    assert_eq!(
        ct.track(2, Side::FromVm, &ack, secs(1)),
        Tracked::Invalid(InvalidReason::TcpNotSyn)
    );
    assert_eq!(ct.track(1, Side::FromVm, &ack, secs(1)), EST);
}

#[test]
fn full_table_evicts_expired_then_refuses() {
    let mut ct = table(4);
    for port in 0..4 {
        let p = udp(VM, 1000 + port, PEER, 53);
        ct.commit(ZONE, Side::FromVm, &p, secs(0)).unwrap();
    }
    // One connection is kept alive by a reply.
    let _ = ct.track(ZONE, Side::ToVm, &udp(PEER, 53, VM, 1000), secs(20));
    let fifth = udp(VM, 2000, PEER, 53);
    assert_eq!(
        ct.commit(ZONE, Side::FromVm, &fifth, secs(10)),
        Err(ConntrackFull::Table(4))
    );
    assert_eq!(ct.counters().refused, 1);
    assert_eq!(ct.len(), 4);
    // At 30 s three have expired: they make room.
    ct.commit(ZONE, Side::FromVm, &fifth, secs(30)).unwrap();
    let c = ct.counters();
    assert_eq!((c.evicted, c.entries, c.created), (3, 2, 5));
    for port in 0..2 {
        let p = udp(VM, 3000 + port, PEER, 53);
        ct.commit(ZONE, Side::FromVm, &p, secs(31)).unwrap();
    }
    assert_eq!(
        ct.commit(ZONE, Side::FromVm, &udp(VM, 4000, PEER, 53), secs(31)),
        Err(ConntrackFull::Table(4))
    );
    assert_eq!(ct.len(), 4);
    let c = ct.counters();
    assert_eq!(
        c.created + c.imported - c.expired - c.evicted - c.removed,
        c.entries as u64
    );
}

#[test]
fn zone_limit() {
    let mut ct = Conntrack::new(ConntrackConfig {
        max_entries: 100,
        zone_max_entries: Some(2),
        timeouts: Timeouts::default(),
    });
    for port in 0..2 {
        ct.commit(1, Side::FromVm, &udp(VM, port, PEER, 53), secs(0))
            .unwrap();
    }
    assert_eq!(
        ct.commit(1, Side::FromVm, &udp(VM, 9, PEER, 53), secs(0)),
        Err(ConntrackFull::Zone { zone: 1, limit: 2 })
    );
    ct.commit(2, Side::FromVm, &udp(VM, 9, PEER, 53), secs(0))
        .unwrap();
    assert_eq!(ct.len(), 3);
}

/// The VM opens TCP connection `port` → PEER:80 in `zone` at `now` (handshake done).
fn open(ct: &mut Conntrack, zone: u32, port: u16, now: Duration) -> Result<(), ConntrackFull> {
    let syn = tcp(VM, port, PEER, 80, SYN);
    assert_eq!(ct.track(zone, Side::FromVm, &syn, now), Tracked::New);
    ct.commit(zone, Side::FromVm, &syn, now)?;
    assert_eq!(
        ct.track(zone, Side::ToVm, &tcp(PEER, 80, VM, port, SYN_ACK), now),
        EST_REPLY
    );
    assert_eq!(
        ct.track(zone, Side::FromVm, &tcp(VM, port, PEER, 80, ACK), now),
        EST
    );
    Ok(())
}

/// Whether connection `port` of `zone` is still known (its next ACK passes).
fn known(ct: &mut Conntrack, zone: u32, port: u16, now: Duration) -> bool {
    ct.track(zone, Side::FromVm, &tcp(VM, port, PEER, 80, ACK), now) == EST
}

#[test]
fn a_full_zone_frees_its_closed_connections_first() {
    let mut ct = Conntrack::new(ConntrackConfig {
        max_entries: 100,
        zone_max_entries: Some(3),
        timeouts: Timeouts::default(),
    });
    for port in [1, 2, 3] {
        open(&mut ct, ZONE, port, secs(0)).unwrap();
    }
    // 1 is reset by the peer (Close, 10 s), 2 closes with FINs (TimeWait, 120 s), 3 lives.
    let _ = ct.track(ZONE, Side::ToVm, &tcp(PEER, 80, VM, 1, RST), secs(1));
    for (side, pkt) in [
        (Side::FromVm, tcp(VM, 2, PEER, 80, FIN_ACK)),
        (Side::ToVm, tcp(PEER, 80, VM, 2, FIN_ACK)),
        (Side::FromVm, tcp(VM, 2, PEER, 80, ACK)),
    ] {
        assert!(matches!(
            ct.track(ZONE, side, &pkt, secs(2)),
            Tracked::Established { .. }
        ));
    }
    // Nothing has expired; the oldest closed connection (1) makes room, then 2; 3 is never
    // freed, so the sixth is refused.
    open(&mut ct, ZONE, 4, secs(3)).unwrap();
    assert!(!known(&mut ct, ZONE, 1, secs(3)));
    assert!(known(&mut ct, ZONE, 2, secs(3)) && known(&mut ct, ZONE, 3, secs(3)));
    open(&mut ct, ZONE, 5, secs(3)).unwrap();
    assert!(!known(&mut ct, ZONE, 2, secs(3)));
    let syn = tcp(VM, 6, PEER, 80, SYN);
    assert_eq!(
        ct.commit(ZONE, Side::FromVm, &syn, secs(3)),
        Err(ConntrackFull::Zone {
            zone: ZONE,
            limit: 3
        })
    );
    assert!(known(&mut ct, ZONE, 3, secs(3)));
    let c = ct.counters();
    assert_eq!((c.evicted, c.refused, c.entries), (2, 1, 3));
    assert_eq!(
        c.created + c.imported - c.expired - c.evicted - c.removed,
        c.entries as u64
    );
}

#[test]
fn a_full_table_frees_another_zones_closed_connections() {
    let mut ct = table(3);
    for port in [1, 2] {
        open(&mut ct, 1, port, secs(0)).unwrap();
        let _ = ct.track(1, Side::ToVm, &tcp(PEER, 80, VM, port, RST), secs(0));
    }
    // A closed connection reopened by a SYN is a new one: not freed early.
    let reopen = tcp(VM, 2, PEER, 80, SYN);
    assert_eq!(ct.track(1, Side::FromVm, &reopen, secs(1)), Tracked::New);
    open(&mut ct, 1, 2, secs(1)).unwrap();
    open(&mut ct, 2, 7, secs(1)).unwrap();
    // Full: zone 2's next one takes zone 1's closed connection 1, then nothing is left.
    open(&mut ct, 2, 8, secs(2)).unwrap();
    assert!(!known(&mut ct, 1, 1, secs(2)));
    assert!(known(&mut ct, 1, 2, secs(2)));
    assert_eq!(
        ct.commit(2, Side::FromVm, &tcp(VM, 9, PEER, 80, SYN), secs(2)),
        Err(ConntrackFull::Table(3))
    );
    // A removed zone's closed connections are forgotten with it.
    let _ = ct.track(1, Side::ToVm, &tcp(PEER, 80, VM, 2, RST), secs(3));
    assert_eq!(ct.remove_zone(1), 1);
    open(&mut ct, 2, 9, secs(3)).unwrap();
    assert_eq!(
        ct.commit(2, Side::FromVm, &tcp(VM, 10, PEER, 80, SYN), secs(3)),
        Err(ConntrackFull::Table(3))
    );
}

/// One operation of a random sequence.
#[derive(Debug, Clone)]
enum Op {
    Packet {
        zone: u32,
        from_vm: bool,
        proto: u8,
        ports: (u16, u16),
        flags: u8,
        commit: bool,
    },
    Advance(u64),
    Expire,
    Migrate {
        from: u32,
        to: u32,
    },
    RemoveZone(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u32..3, any::<bool>(), prop_oneof![Just(6u8), Just(17), Just(1), Just(47)],
              (0u16..4, 0u16..4), prop_oneof![Just(SYN), Just(SYN_ACK), Just(ACK), Just(FIN_ACK), Just(RST), any::<u8>()],
              any::<bool>())
            .prop_map(|(zone, from_vm, proto, ports, flags, commit)| Op::Packet {
                zone, from_vm, proto, ports, flags, commit
            }),
        2 => (0u64..200_000).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => (0u32..3, 0u32..3).prop_map(|(from, to)| Op::Migrate { from, to }),
        1 => (0u32..3).prop_map(Op::RemoveZone),
    ]
}

fn packet(from_vm: bool, proto: u8, ports: (u16, u16), flags: u8) -> PacketInfo {
    let (src, dst) = if from_vm { (VM, PEER) } else { (PEER, VM) };
    match proto {
        6 => tcp(src, ports.0, dst, ports.1, flags),
        17 => udp(src, ports.0, dst, ports.1),
        1 => echo(src, dst, if flags & 1 == 0 { 8 } else { 0 }, ports.0),
        _ => PacketInfo::parse(&ipv4_packet(src, dst, proto, 0, &[])).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random traffic, time, expiry, migration and zone removal: the table never holds more
    /// than its limit, the counters add up, and a packet just tracked as established stays
    /// established for its reply.
    #[test]
    fn random_sequences_keep_the_invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let max = 6;
        let mut ct = table(max);
        let mut now = Duration::ZERO;
        for op in ops {
            match op {
                Op::Packet { zone, from_vm, proto, ports, flags, commit } => {
                    let side = if from_vm { Side::FromVm } else { Side::ToVm };
                    let p = packet(from_vm, proto, ports, flags);
                    let tracked = ct.track(zone, side, &p, now);
                    if tracked == Tracked::New && commit {
                        let _ = ct.commit(zone, side, &p, now);
                    }
                    if let (Tracked::Established { .. }, 17) = (tracked, proto) {
                        let back = packet(!from_vm, proto, (ports.1, ports.0), flags);
                        let answer = ct.track(zone, side.opposite(), &back, now);
                        prop_assert!(
                            matches!(answer, Tracked::Established { .. }),
                            "reply tracked as {:?}",
                            answer
                        );
                    }
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::Expire => {
                    let before = ct.len();
                    let freed = ct.expire(now);
                    prop_assert_eq!(ct.len(), before - freed);
                }
                Op::Migrate { from, to } => {
                    let entries = ct.export(from, now);
                    prop_assert!(entries.iter().all(|e| !e.remaining.is_zero()));
                    let mut other = table(max);
                    prop_assert_eq!(other.import(to, &entries, now + secs(3)), Ok(entries.len()));
                    prop_assert_eq!(other.export(to, now + secs(3)).len(), entries.len());
                }
                Op::RemoveZone(zone) => {
                    let n = ct.zone_len(zone);
                    prop_assert_eq!(ct.remove_zone(zone), n);
                }
            }
            prop_assert!(ct.len() <= max);
            prop_assert_eq!(ct.len(), (0..3).map(|z| ct.zone_len(z)).sum::<usize>());
            let c = ct.counters();
            prop_assert_eq!(
                c.created + c.imported - c.expired - c.evicted - c.removed,
                c.entries as u64
            );
        }
    }

    /// Any bytes: parsing and tracking never panic.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let mut ct = table(4);
        if let Ok(p) = PacketInfo::parse(&bytes) {
            let _ = ct.track(1, Side::FromVm, &p, secs(1));
            let _ = ct.commit(1, Side::FromVm, &p, secs(1));
            let _ = ct.track(1, Side::ToVm, &p, secs(2));
        }
    }
}
