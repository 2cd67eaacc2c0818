//! The distributed firewall in the switch: security-group rules and connection tracking at VM
//! ports, with real frames. Ingress default deny and egress default allow, replies to outbound
//! connections, deny over allow, rule changes that keep established connections, ICMP, UDP,
//! invalid TCP, flooding checked per port, two firewalled ports on one switch, hit counters,
//! the drop log's rate, a full table, the switch's own replies, GSO frames, and ports without a
//! firewall. Connections carried to another switch are in `mobility.rs`, the checks of the
//! firewall's configuration in `refusals.rs`.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::firewall::*;
use common::*;
use vinfra_switch::datapath::firewall::conntrack::InvalidReason;
use vinfra_switch::datapath::firewall::rules::{Action, Direction, PortRange, Prefix, Protocol};
use vinfra_switch::datapath::{
    ConfigCommand, DropReason, FirewallDrop, PortId, Switch, SwitchSettings, TxBatch,
    FIREWALL_LOG_CAPACITY, FIREWALL_LOG_RATE,
};
use vinfra_switch::wire::{dhcp, ipv4, udp};
use vinfra_switch::wire::{
    ArpOperation, ArpRepr, DhcpMessageType, DhcpRepr, EtherType, EthernetRepr, MacAddr,
};

#[test]
fn an_allowed_port_is_reachable_and_another_is_not() {
    let mut sw = switch();
    set_firewall(&mut sw, WEB, Some(vec![allow_tcp_in(80)]));
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 40000), (1, 80), SYN)),
        [(WEB, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 40001), (1, 22), SYN)),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (1, 1));
    assert_eq!(dropped(&sw, PLAIN, DropReason::FirewallDefaultDeny), (0, 1));
    // The same from host B through the uplink.
    let from_remote = from_b(&tcp((REMOTE, 50000), (1, 22), SYN));
    assert_eq!(send(&mut sw, t(1), UPLINK, &from_remote), []);
    let from_remote = from_b(&tcp((REMOTE, 50000), (1, 80), SYN));
    assert_eq!(send(&mut sw, t(1), UPLINK, &from_remote), [(WEB, None)]);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (2, 2));
    let log = sw.take_firewall_log();
    assert_eq!(
        log.first(),
        Some(&FirewallDrop {
            port: WEB,
            direction: Direction::Ingress,
            protocol: ipv4::protocol::TCP,
            src: ip(3),
            dst: ip(1),
            src_port: Some(40001),
            dst_port: Some(22),
            reason: DropReason::FirewallDefaultDeny,
            rule: None,
        })
    );
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].src, ip(REMOTE));
}

#[test]
fn replies_to_outbound_connections_pass() {
    let mut sw = switch();
    // Nothing may come in but web traffic.
    set_firewall(&mut sw, WEB, Some(vec![allow_tcp_in(80)]));
    // VM 1 connects to VM 3's database port: out by the egress default, the reply back in.
    assert_eq!(
        send(&mut sw, t(1), WEB, &tcp((1, 40000), (3, 5432), SYN)),
        [(PLAIN, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 5432), (1, 40000), SYN_ACK)),
        [(WEB, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), WEB, &tcp((1, 40000), (3, 5432), ACK)),
        [(PLAIN, None)]
    );
    for i in 0..5 {
        assert_eq!(
            send(
                &mut sw,
                t(2 + i),
                PLAIN,
                &tcp((3, 5432), (1, 40000), PSH_ACK)
            ),
            [(WEB, None)]
        );
    }
    assert_eq!(sw.port_connections(WEB), 1);
    // A SYN+ACK for a connection VM 1 never opened is invalid, a SYN from that port is new
    // and refused.
    assert_eq!(
        send(&mut sw, t(8), PLAIN, &tcp((3, 5432), (1, 40001), SYN_ACK)),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::ConntrackInvalid), (1, 1));
    assert_eq!(
        send(&mut sw, t(8), PLAIN, &tcp((3, 5432), (1, 40001), SYN)),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (1, 1));
}

#[test]
fn deny_overrides_allow_in_either_order() {
    let deny_ssh_from_3 = rule(
        Direction::Ingress,
        Action::Deny,
        Protocol::Tcp,
        PortRange::single(22),
        &[Prefix::host(ip(3))],
    );
    let allow_all_tcp = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Tcp,
        PortRange::ANY,
        &[Prefix::ANY],
    );
    for (rules, deny_index) in [
        (vec![allow_all_tcp.clone(), deny_ssh_from_3.clone()], 1),
        (vec![deny_ssh_from_3.clone(), allow_all_tcp.clone()], 0),
    ] {
        let mut sw = switch();
        set_firewall(&mut sw, WEB, Some(rules));
        assert_eq!(
            send(&mut sw, t(1), PLAIN, &tcp((3, 40000), (1, 22), SYN)),
            []
        );
        assert_eq!(dropped(&sw, WEB, DropReason::FirewallDenied), (1, 1));
        // From another address the allow rule applies.
        assert_eq!(
            send(&mut sw, t(1), HOST, &tcp((4, 40000), (1, 22), SYN)),
            [(WEB, None)]
        );
        let log = sw.take_firewall_log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].reason, DropReason::FirewallDenied);
        assert_eq!(log[0].rule, Some(deny_index));
        let mut hits = vec![0, 0];
        hits[deny_index] = 1;
        hits[1 - deny_index] = 1;
        assert_eq!(sw.firewall_hits(WEB), Some(hits));
    }

    // Egress: a deny rule refuses the VM's own DNS queries, which the default would allow.
    let mut sw = switch();
    let deny_dns_out = rule(
        Direction::Egress,
        Action::Deny,
        Protocol::Udp,
        PortRange::single(53),
        &[Prefix::ANY],
    );
    set_firewall(&mut sw, WEB, Some(vec![deny_dns_out]));
    assert_eq!(send(&mut sw, t(1), WEB, &udp((1, 5353), (3, 53))), []);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDenied), (1, 1));
    assert_eq!(
        send(&mut sw, t(1), WEB, &udp((1, 5353), (3, 123))),
        [(PLAIN, None)]
    );
    let log = sw.take_firewall_log();
    assert_eq!(
        (log[0].direction, log[0].dst_port, log[0].rule),
        (Direction::Egress, Some(53), Some(0))
    );
}

#[test]
fn removing_a_rule_closes_new_connections_but_not_established_ones() {
    let mut sw = switch();
    set_firewall(
        &mut sw,
        WEB,
        Some(vec![allow_tcp_in(80), allow_tcp_in(443)]),
    );
    connect_to_web(&mut sw, t(1), PLAIN, (3, 40000), 80);
    assert_eq!(sw.firewall_hits(WEB), Some(vec![1, 0]));
    // Port 80 is no longer allowed.
    set_firewall(&mut sw, WEB, Some(vec![allow_tcp_in(443)]));
    assert_eq!(sw.firewall_hits(WEB), Some(vec![0]));
    assert_eq!(sw.port_connections(WEB), 1);
    for i in 0..3 {
        assert_eq!(
            send(&mut sw, t(2 + i), PLAIN, &tcp((3, 40000), (1, 80), PSH_ACK)),
            [(WEB, None)]
        );
        assert_eq!(
            send(&mut sw, t(2 + i), WEB, &tcp((1, 80), (3, 40000), PSH_ACK)),
            [(PLAIN, None)]
        );
    }
    // A new connection to port 80 is refused, from any source port or address.
    assert_eq!(
        send(&mut sw, t(6), PLAIN, &tcp((3, 40001), (1, 80), SYN)),
        []
    );
    assert_eq!(
        send(&mut sw, t(6), HOST, &tcp((4, 40000), (1, 80), SYN)),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (2, 2));
    // 443 is still open.
    connect_to_web(&mut sw, t(7), PLAIN, (3, 40002), 443);
    assert_eq!(sw.firewall_hits(WEB), Some(vec![1]));

    // No firewall at all: everything passes, the port's connections are forgotten.
    set_firewall(&mut sw, WEB, None);
    assert_eq!(sw.port_connections(WEB), 0);
    assert_eq!(sw.firewall_hits(WEB), None);
    assert_eq!(sw.firewall_rules(WEB), None);
    assert_eq!(
        send(&mut sw, t(8), PLAIN, &tcp((3, 40003), (1, 22), ACK)),
        [(WEB, None)]
    );
}

#[test]
fn icmp_echo_both_ways() {
    let mut sw = switch();
    let ping_from_3 = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Icmp,
        PortRange::ANY,
        &[Prefix::host(ip(3))],
    );
    set_firewall(&mut sw, WEB, Some(vec![ping_from_3]));
    // VM 3 pings VM 1: allowed, and the reply goes out.
    assert_eq!(send(&mut sw, t(1), PLAIN, &echo(3, 1, 8, 7)), [(WEB, None)]);
    assert_eq!(send(&mut sw, t(1), WEB, &echo(1, 3, 0, 7)), [(PLAIN, None)]);
    // The host port may not ping VM 1.
    assert_eq!(send(&mut sw, t(1), HOST, &echo(4, 1, 8, 7)), []);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (1, 1));
    // VM 1 pings VM 9 on host B, which answers through the uplink.
    assert_eq!(
        send(&mut sw, t(2), WEB, &echo(1, REMOTE, 8, 99)),
        [(UPLINK, Some(VTEP_B))]
    );
    assert_eq!(
        send(&mut sw, t(2), UPLINK, &from_b(&echo(REMOTE, 1, 0, 99))),
        [(WEB, None)]
    );
    // An echo reply nobody asked for is invalid; so is one with another identifier.
    assert_eq!(send(&mut sw, t(2), HOST, &echo(4, 1, 0, 5)), []);
    assert_eq!(
        send(&mut sw, t(2), UPLINK, &from_b(&echo(REMOTE, 1, 0, 100))),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::ConntrackInvalid), (2, 2));
    assert_eq!(
        sw.conntrack_counters()
            .invalid
            .get(InvalidReason::IcmpUnmatchedReply),
        2
    );
}

#[test]
fn udp_both_ways() {
    let mut sw = switch();
    let dns_in = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Udp,
        PortRange::single(53),
        &[subnet()],
    );
    set_firewall(&mut sw, WEB, Some(vec![dns_in]));
    // VM 1 serves DNS to the subnet.
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &udp((3, 5353), (1, 53))),
        [(WEB, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), WEB, &udp((1, 53), (3, 5353))),
        [(PLAIN, None)]
    );
    assert_eq!(send(&mut sw, t(1), PLAIN, &udp((3, 5353), (1, 54))), []);
    // Not from VM 9 on host B: it is in the subnet, but UDP 53 from it is allowed, 54 is not.
    assert_eq!(
        send(&mut sw, t(1), UPLINK, &from_b(&udp((REMOTE, 7), (1, 54)))),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (2, 2));
    // VM 1 asks VM 3's NTP server; the answer comes back, later ones too.
    assert_eq!(
        send(&mut sw, t(2), WEB, &udp((1, 40123), (3, 123))),
        [(PLAIN, None)]
    );
    for i in 0..3 {
        assert_eq!(
            send(&mut sw, t(2 + i), PLAIN, &udp((3, 123), (1, 40123))),
            [(WEB, None)]
        );
    }
    // Another source port of VM 3 is another connection, not allowed in.
    assert_eq!(send(&mut sw, t(3), PLAIN, &udp((3, 124), (1, 40123))), []);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (3, 3));
    // After the UDP timeout (120 s once replied) the NTP answer is a new connection.
    assert_eq!(send(&mut sw, t(200), PLAIN, &udp((3, 123), (1, 40123))), []);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (4, 4));
}

#[test]
fn tcp_without_a_connection_is_invalid() {
    let mut sw = switch();
    let all_tcp = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Tcp,
        PortRange::ANY,
        &[Prefix::ANY],
    );
    set_firewall(&mut sw, WEB, Some(vec![all_tcp]));
    // Even with every TCP port open, an ACK that belongs to no connection does not pass.
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 40000), (1, 80), ACK)),
        []
    );
    // Nor one the VM sends.
    assert_eq!(
        send(&mut sw, t(1), WEB, &tcp((1, 80), (3, 40000), PSH_ACK)),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::ConntrackInvalid), (2, 2));
    assert_eq!(
        sw.conntrack_counters()
            .invalid
            .get(InvalidReason::TcpNotSyn),
        2
    );
    assert_eq!(sw.firewall_hits(WEB), Some(vec![0]));
    assert_eq!(sw.conntrack_counters().entries, 0);
    // A truncated TCP header is refused the same way.
    let mut short = tcp((3, 40000), (1, 80), SYN);
    short.truncate(14 + 20 + 10);
    let ip_len = (20u16 + 10).to_be_bytes();
    short[16..18].copy_from_slice(&ip_len);
    ipv4::Packet::new_unchecked(&mut short[14..]).fill_checksum();
    assert_eq!(send(&mut sw, t(1), PLAIN, &short), []);
    assert_eq!(dropped(&sw, WEB, DropReason::ConntrackInvalid), (3, 3));
    // With the handshake first, the same ACK passes.
    connect_to_web(&mut sw, t(2), PLAIN, (3, 40000), 80);
    assert_eq!(
        send(&mut sw, t(2), PLAIN, &tcp((3, 40000), (1, 80), ACK)),
        [(WEB, None)]
    );
}

#[test]
fn flooding_is_checked_per_destination_port() {
    let mut sw = switch();
    let udp_5000 = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Udp,
        PortRange::single(5000),
        &[Prefix::ANY],
    );
    set_firewall(&mut sw, WEB, Some(vec![udp_5000]));
    set_firewall(&mut sw, DB, Some(vec![]));
    let broadcast = udp_to(
        (3, 6000),
        MacAddr::BROADCAST,
        (Ipv4Addr::new(10, 0, 0, 255), 5000),
        ip(3),
    );
    let mut got = send(&mut sw, t(1), PLAIN, &broadcast);
    got.sort();
    assert_eq!(got, [(WEB, None), (HOST, None), (UPLINK, Some(VTEP_B))]);
    assert_eq!(dropped(&sw, DB, DropReason::FirewallDefaultDeny), (1, 1));
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (0, 1));
    assert_eq!(sw.port_connections(WEB), 1);
    assert_eq!(sw.port_connections(DB), 0);
    // From host B: the same, without the uplink.
    let remote = udp_to(
        (REMOTE, 6000),
        MacAddr::BROADCAST,
        (Ipv4Addr::new(10, 0, 0, 255), 5000),
        ip(REMOTE),
    );
    let mut got = send(&mut sw, t(1), UPLINK, &from_b(&remote));
    got.sort();
    assert_eq!(got, [(WEB, None), (PLAIN, None), (HOST, None)]);
    assert_eq!(dropped(&sw, DB, DropReason::FirewallDefaultDeny), (2, 2));
    // Unknown unicast floods too: to port 5001, nobody with a firewall takes it.
    let unknown = udp_to(
        (3, 6000),
        MacAddr([0x52, 0x54, 0, 0, 0, 0x77]),
        (ip(0x77), 5001),
        ip(3),
    );
    let mut got = send(&mut sw, t(1), PLAIN, &unknown);
    got.sort();
    assert_eq!(got, [(HOST, None), (UPLINK, Some(VTEP_B))]);
    assert_eq!(dropped(&sw, DB, DropReason::FirewallDefaultDeny), (3, 4));
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (1, 4));
}

#[test]
fn two_firewalled_ports_on_one_switch() {
    let mut sw = switch();
    // The web server takes HTTP from the subnet; the database PostgreSQL from the web server
    // only, and may not reach the web server's admin port.
    let web_in = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Tcp,
        PortRange::single(80),
        &[subnet()],
    );
    let db_in = rule(
        Direction::Ingress,
        Action::Allow,
        Protocol::Tcp,
        PortRange::single(5432),
        &[Prefix::host(ip(1))],
    );
    let db_out = rule(
        Direction::Egress,
        Action::Deny,
        Protocol::Tcp,
        PortRange::single(8080),
        &[Prefix::host(ip(1))],
    );
    set_firewall(&mut sw, WEB, Some(vec![web_in]));
    set_firewall(&mut sw, DB, Some(vec![db_in, db_out]));
    // Web to database: out of VM 1 by default, into VM 2 by its rule; the answers back.
    assert_eq!(
        send(&mut sw, t(1), WEB, &tcp((1, 40000), (2, 5432), SYN)),
        [(DB, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), DB, &tcp((2, 5432), (1, 40000), SYN_ACK)),
        [(WEB, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), WEB, &tcp((1, 40000), (2, 5432), ACK)),
        [(DB, None)]
    );
    assert_eq!((sw.port_connections(WEB), sw.port_connections(DB)), (1, 1));
    assert_eq!(sw.conntrack_counters().entries, 2);
    // VM 3 may not reach the database.
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 40000), (2, 5432), SYN)),
        []
    );
    assert_eq!(dropped(&sw, DB, DropReason::FirewallDefaultDeny), (1, 1));
    // Database to web: port 22 leaves VM 2 (egress default) and is refused at VM 1.
    assert_eq!(send(&mut sw, t(2), DB, &tcp((2, 40000), (1, 22), SYN)), []);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (1, 2));
    assert_eq!(sw.port_connections(DB), 2);
    // Port 8080 never leaves VM 2.
    assert_eq!(
        send(&mut sw, t(2), DB, &tcp((2, 40001), (1, 8080), SYN)),
        []
    );
    assert_eq!(dropped(&sw, DB, DropReason::FirewallDenied), (1, 1));
    assert_eq!(sw.port_connections(DB), 2);
    // Port 80 passes both.
    assert_eq!(
        send(&mut sw, t(2), DB, &tcp((2, 40002), (1, 80), SYN)),
        [(WEB, None)]
    );
    assert_eq!(sw.firewall_hits(DB), Some(vec![1, 1]));
    assert_eq!(sw.firewall_hits(WEB), Some(vec![1]));
}

#[test]
fn hit_counters_count_first_packets_by_rule() {
    let mut sw = switch();
    let rules = vec![
        allow_tcp_in(80),
        rule(
            Direction::Ingress,
            Action::Allow,
            Protocol::Icmp,
            PortRange::ANY,
            &[Prefix::ANY],
        ),
        rule(
            Direction::Ingress,
            Action::Deny,
            Protocol::Tcp,
            PortRange::single(22),
            &[Prefix::host(ip(3))],
        ),
        rule(
            Direction::Egress,
            Action::Allow,
            Protocol::Udp,
            PortRange::single(53),
            &[Prefix::ANY],
        ),
    ];
    set_firewall(&mut sw, WEB, Some(rules.clone()));
    assert_eq!(sw.firewall_rules(WEB), Some(&rules[..]));
    assert_eq!(sw.firewall_hits(WEB), Some(vec![0, 0, 0, 0]));
    for sport in 0..3 {
        connect_to_web(&mut sw, t(1), PLAIN, (3, 40000 + sport), 80);
    }
    // Later packets of a connection are no hits.
    for _ in 0..5 {
        send(&mut sw, t(1), PLAIN, &tcp((3, 40000), (1, 80), PSH_ACK));
    }
    send(&mut sw, t(1), PLAIN, &echo(3, 1, 8, 1));
    send(&mut sw, t(1), PLAIN, &tcp((3, 50000), (1, 22), SYN));
    send(&mut sw, t(1), PLAIN, &tcp((3, 50001), (1, 22), SYN));
    send(&mut sw, t(1), WEB, &udp((1, 5353), (3, 53)));
    // Egress by the default: no hit.
    send(&mut sw, t(1), WEB, &udp((1, 5353), (3, 54)));
    assert_eq!(sw.firewall_hits(WEB), Some(vec![3, 1, 2, 1]));
    assert_eq!(sw.firewall_hits(PLAIN), None);
    assert_eq!(sw.firewall_hits(PortId(77)), None);
}

#[test]
fn the_drop_log_is_rate_limited() {
    let mut sw = switch();
    set_firewall(&mut sw, WEB, Some(vec![]));
    let attempt = |sw: &mut Switch, now: Duration, sport: u16| {
        assert_eq!(send(sw, now, PLAIN, &tcp((3, sport), (1, 22), SYN)), []);
    };
    // 150 refusals at once: the first 100 are logged.
    for i in 0..150 {
        attempt(&mut sw, t(10), 1000 + i);
    }
    let log = sw.take_firewall_log();
    assert_eq!(log.len(), FIREWALL_LOG_RATE as usize);
    assert_eq!(log.first().unwrap().src_port, Some(1000));
    assert_eq!(log.last().unwrap().src_port, Some(1099));
    assert!(log
        .iter()
        .all(|r| r.reason == DropReason::FirewallDefaultDeny && r.port == WEB));
    let c = sw.firewall_log_counters();
    assert_eq!((c.logged, c.suppressed, c.overwritten), (100, 50, 0));
    assert_eq!(
        dropped(&sw, WEB, DropReason::FirewallDefaultDeny),
        (150, 150)
    );
    assert!(sw.take_firewall_log().is_empty());
    // Half a second later, 50 more may be logged.
    for i in 0..60 {
        attempt(&mut sw, Duration::from_millis(10_500), 2000 + i);
    }
    assert_eq!(sw.take_firewall_log().len(), 50);
    assert_eq!(sw.firewall_log_counters().suppressed, 60);
    // 100 a second for three seconds, not taken: the log keeps the newest 256.
    for s in 0..3 {
        for i in 0..100 {
            attempt(&mut sw, t(12 + s), 3000 + 100 * s as u16 + i);
        }
    }
    let log = sw.take_firewall_log();
    assert_eq!(log.len(), FIREWALL_LOG_CAPACITY);
    assert_eq!(log.first().unwrap().src_port, Some(3044));
    assert_eq!(log.last().unwrap().src_port, Some(3299));
    let c = sw.firewall_log_counters();
    assert_eq!((c.logged, c.suppressed, c.overwritten), (450, 60, 44));
}

#[test]
fn a_full_table_refuses_new_connections() {
    let settings = SwitchSettings {
        conntrack_max_entries: 3,
        conntrack_zone_max_entries: 2,
        ..SwitchSettings::default()
    };
    let mut sw = switch_with(settings, WEB);
    set_firewall(&mut sw, WEB, Some(vec![allow_tcp_in(80)]));
    set_firewall(&mut sw, DB, Some(vec![]));
    connect_to_web(&mut sw, t(1), PLAIN, (3, 40000), 80);
    connect_to_web(&mut sw, t(1), PLAIN, (3, 40001), 80);
    // VM 1 holds its share.
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 40002), (1, 80), SYN)),
        []
    );
    assert_eq!(dropped(&sw, WEB, DropReason::ConntrackFull), (1, 1));
    let log = sw.take_firewall_log();
    assert_eq!(
        (log[0].reason, log[0].rule, log[0].src_port),
        (DropReason::ConntrackFull, Some(0), Some(40002))
    );
    // VM 2 still has room in the table, once; then the table is full.
    assert_eq!(
        send(&mut sw, t(1), DB, &udp((2, 5000), (3, 53))),
        [(PLAIN, None)]
    );
    assert_eq!(send(&mut sw, t(1), DB, &udp((2, 5001), (3, 53))), []);
    assert_eq!(dropped(&sw, DB, DropReason::ConntrackFull), (1, 2));
    assert_eq!(sw.conntrack_counters().refused, 2);
    // Established connections go on.
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 40001), (1, 80), PSH_ACK)),
        [(WEB, None)]
    );
    // A larger table takes the connection.
    sw.apply(ConfigCommand::SetSettings(SwitchSettings {
        conntrack_max_entries: 10,
        conntrack_zone_max_entries: 10,
        ..SwitchSettings::default()
    }))
    .unwrap();
    connect_to_web(&mut sw, t(2), PLAIN, (3, 40002), 80);
    // Expired connections make room: the UDP one ends after 30 s without a reply.
    assert_eq!(sw.port_connections(DB), 1);
    assert!(sw.expire(t(40)) >= 1);
    assert_eq!(sw.port_connections(DB), 0);
}

#[test]
fn the_switch_replies_are_not_filtered() {
    let mut sw = switch();
    // Nothing may come in.
    set_firewall(&mut sw, WEB, Some(vec![]));
    // The switch's own DHCP offer reaches VM 1.
    let out = run(&mut sw, t(1), WEB, &discover(mac(1)));
    assert_eq!(reached(&out), [(WEB, None)]);
    let (eth, offset) = EthernetRepr::parse(&out[0].2).unwrap();
    assert_eq!(eth.dst, mac(1));
    let ip_packet = ipv4::Packet::new_checked(&out[0].2[offset..]).unwrap();
    let datagram = udp::Packet::new_checked(ip_packet.payload()).unwrap();
    let offer = DhcpRepr::parse(&dhcp::Packet::new_checked(datagram.payload()).unwrap()).unwrap();
    assert_eq!(
        (offer.message_type, offer.yiaddr),
        (DhcpMessageType::Offer, ip(1))
    );
    // So does its ARP answer (ARP is not filtered anyway).
    let out = run(&mut sw, t(1), WEB, &arp_request(mac(1), ip(1), ip(3)));
    assert_eq!(reached(&out), [(WEB, None)]);
    let reply =
        ArpRepr::parse(&vinfra_switch::wire::arp::Packet::new_checked(&out[0].2[14..]).unwrap())
            .unwrap();
    assert_eq!(
        (reply.operation, reply.source_hardware_addr),
        (ArpOperation::Reply, mac(3))
    );
    // The same offer from a host port is not the switch's: refused.
    let rogue = udp_to((4, 67), mac(1), (ip(1), 68), ip(4));
    assert_eq!(send(&mut sw, t(1), HOST, &rogue), []);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDefaultDeny), (1, 1));
    // The egress check comes before the responder: a rule denying DHCP leaves VM 1 unanswered.
    let no_dhcp = rule(
        Direction::Egress,
        Action::Deny,
        Protocol::Udp,
        PortRange::single(67),
        &[Prefix::ANY],
    );
    // (Without first forgetting the connection of the first DISCOVER, which replacing the
    // rules keeps, the second would pass as part of it.)
    set_firewall(&mut sw, WEB, None);
    set_firewall(&mut sw, WEB, Some(vec![no_dhcp]));
    assert_eq!(send(&mut sw, t(2), WEB, &discover(mac(1))), []);
    assert_eq!(dropped(&sw, WEB, DropReason::FirewallDenied), (1, 1));
    assert_eq!(sw.network_counters(BLUE).unwrap().dhcp_replies, 1);
}

#[test]
fn ports_without_a_firewall_are_unaffected() {
    let mut sw = switch();
    set_firewall(&mut sw, WEB, Some(vec![]));
    // Between unfiltered ports anything passes, even a TCP segment of no connection.
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &tcp((3, 40000), (4, 80), ACK)),
        [(HOST, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), HOST, &udp((4, 9), (3, 9))),
        [(PLAIN, None)]
    );
    assert_eq!(
        send(
            &mut sw,
            t(1),
            UPLINK,
            &from_b(&tcp((REMOTE, 1), (3, 2), ACK))
        ),
        [(PLAIN, None)]
    );
    assert_eq!(sw.conntrack_counters().entries, 0);
    assert_eq!(sw.conntrack_counters().invalid.total(), 0);
    assert_eq!(sw.port_connections(PLAIN), 0);
    assert!(sw.take_firewall_log().is_empty());
    // To the firewalled VM 1, ARP and other EtherTypes than IPv4 are not filtered.
    assert_eq!(
        send(&mut sw, t(1), PLAIN, &arp_request(mac(3), ip(3), ip(77))),
        [
            (WEB, None),
            (DB, None),
            (HOST, None),
            (UPLINK, Some(VTEP_B))
        ]
    );
    let ipv6 = eth(mac(1), mac(3), EtherType(0x86dd), &[0x60; 40]);
    assert_eq!(send(&mut sw, t(1), PLAIN, &ipv6), [(WEB, None)]);
    // But IPv4 is.
    assert_eq!(send(&mut sw, t(1), PLAIN, &udp((3, 9), (1, 9))), []);
    let snapshot = sw.snapshot();
    for (id, counters) in snapshot.ports {
        if id != WEB {
            assert_eq!(counters.drops.total(), 0, "{id}");
        }
    }
}

#[test]
fn a_gso_frame_is_tracked_as_one_packet() {
    let mut sw = switch();
    sw.set_port_offloads(HOST, true).unwrap();
    set_firewall(&mut sw, WEB, Some(vec![allow_tcp_in(5201)]));
    let (frame, offload) = gso_frame();
    let send_gso = |sw: &mut Switch| {
        let mut tx = TxBatch::new();
        sw.process_offload(t(1), [(HOST, &frame[..], offload)], &mut tx);
        tx.iter().map(|(f, _)| f.port).collect::<Vec<_>>()
    };
    // Without a connection: one invalid packet, not three.
    assert_eq!(send_gso(&mut sw), []);
    assert_eq!(dropped(&sw, WEB, DropReason::ConntrackInvalid), (1, 1));
    assert_eq!(sw.conntrack_counters().invalid.total(), 1);
    // After the handshake it is cut into three segments for VM 1.
    assert_eq!(
        send(&mut sw, t(1), HOST, &tcp((4, 43210), (1, 5201), SYN)),
        [(WEB, None)]
    );
    assert_eq!(
        send(&mut sw, t(1), WEB, &tcp((1, 5201), (4, 43210), SYN_ACK)),
        [(HOST, None)]
    );
    assert_eq!(send_gso(&mut sw), [WEB, WEB, WEB]);
    assert_eq!(sw.conntrack_counters().invalid.total(), 1);
    assert_eq!(sw.firewall_hits(WEB), Some(vec![1]));
}
