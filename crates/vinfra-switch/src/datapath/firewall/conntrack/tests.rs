use super::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> PacketInfo {
    PacketInfo {
        src,
        dst,
        protocol: protocol::TCP,
        fragment: Fragment::Whole,
        l4: L4::Tcp {
            src_port: sport,
            dst_port: dport,
            flags: TcpFlags::SYN,
        },
    }
}

fn table(max_entries: usize) -> Conntrack {
    Conntrack::new(ConntrackConfig {
        max_entries,
        ..ConntrackConfig::default()
    })
}

#[test]
fn a_tuple_that_is_its_own_reply() {
    let mut ct = table(4);
    let land = syn(A, 7, A, 7);
    assert_eq!(
        ct.track(1, Side::FromVm, &land, Duration::ZERO),
        Tracked::New
    );
    ct.commit(1, Side::FromVm, &land, Duration::ZERO).unwrap();
    assert_eq!(ct.index.len(), 1);
    assert_eq!(
        ct.track(1, Side::FromVm, &land, Duration::ZERO),
        Tracked::Established { reply: false }
    );
    assert_eq!(ct.remove_zone(1), 1);
    assert!(ct.index.is_empty() && ct.zones.is_empty() && ct.pairs.is_empty());
}

#[test]
fn side_tables_follow_the_connections() {
    let mut ct = table(8);
    let t = Duration::from_secs(1);
    for port in 0..8 {
        ct.commit(port % 2, Side::FromVm, &syn(A, 100 + port as u16, B, 80), t)
            .unwrap();
    }
    assert_eq!(ct.index.len(), 16);
    assert_eq!(ct.pairs.len(), 2);
    assert_eq!((ct.zone_len(0), ct.zone_len(1)), (4, 4));
    assert_eq!(ct.remove_zone(0), 4);
    assert_eq!(ct.expire(t + ct.config.timeouts.tcp_syn_sent), 4);
    assert!(ct.index.is_empty() && ct.zones.is_empty() && ct.pairs.is_empty());
    assert_eq!(ct.free.len(), 8);
    // Freed slots are reused: the slot vector never outgrows the limit.
    for port in 0..8 {
        ct.commit(2, Side::FromVm, &syn(A, 200 + port, B, 80), t)
            .unwrap();
    }
    assert_eq!(ct.slots.len(), 8);
}

#[test]
fn a_full_table_sweeps_only_when_something_may_have_expired() {
    let mut ct = table(2);
    let t = Duration::from_secs(10);
    ct.commit(1, Side::FromVm, &syn(A, 1, B, 80), t).unwrap();
    ct.commit(
        1,
        Side::FromVm,
        &syn(A, 2, B, 80),
        t + Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(ct.next_expiry, t + ct.config.timeouts.tcp_syn_sent);
    // Nothing can have expired: refused without a sweep.
    let third = syn(A, 3, B, 80);
    assert!(ct.commit(1, Side::FromVm, &third, t).is_err());
    // The first SYN, retransmitted, moves its deadline: the sweep at the old one frees
    // nothing and backs off.
    let _ = ct.track(
        1,
        Side::FromVm,
        &syn(A, 1, B, 80),
        t + Duration::from_secs(100),
    );
    let at = t + ct.config.timeouts.tcp_syn_sent;
    assert!(ct.commit(1, Side::FromVm, &third, at).is_err());
    assert_eq!(
        ct.next_expiry,
        t + Duration::from_secs(5) + ct.config.timeouts.tcp_syn_sent
    );
    let c = ct.counters();
    assert_eq!((c.refused, c.evicted), (2, 0));
    // Once the second expired, it makes room.
    ct.commit(1, Side::FromVm, &third, ct.next_expiry).unwrap();
    assert_eq!(ct.counters().evicted, 1);
}

#[test]
fn reasons_have_distinct_names_in_counter_order() {
    for (i, r) in InvalidReason::ALL.into_iter().enumerate() {
        assert_eq!(r.index(), i);
    }
    let mut names: Vec<_> = InvalidReason::ALL.iter().map(|r| r.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), InvalidReason::ALL.len());
}
