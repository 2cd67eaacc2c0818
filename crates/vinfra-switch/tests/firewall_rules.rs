//! Security-group rules: hand-written cases of the matching semantics (deny overrides allow,
//! lowest index, ports and packets without one, ICMP and other protocols, remote prefixes,
//! directions, errors), and a differential test of the compiled classifier against a linear
//! evaluator written from the semantics, over random rule sets and packets near their edges.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, FirewallRuleError, FirewallVerdict, PortRange, Prefix,
    Protocol, RuleSet,
};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const GRE: u8 = 47;

use Direction::{Egress, Ingress};

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn pfx(addr: Ipv4Addr, len: u8) -> Prefix {
    Prefix { addr, len }
}

fn ports(first: u16, last: u16) -> PortRange {
    PortRange { first, last }
}

fn ingress(
    action: Action,
    protocol: Protocol,
    ports: PortRange,
    remote: &[Prefix],
) -> FirewallRule {
    FirewallRule {
        direction: Ingress,
        protocol,
        ports,
        remote: remote.to_vec(),
        action,
    }
}

fn allow(protocol: Protocol, ports: PortRange, remote: &[Prefix]) -> FirewallRule {
    ingress(Action::Allow, protocol, ports, remote)
}

fn deny(protocol: Protocol, ports: PortRange, remote: &[Prefix]) -> FirewallRule {
    ingress(Action::Deny, protocol, ports, remote)
}

fn compile(rules: &[FirewallRule]) -> RuleSet {
    RuleSet::compile(rules).expect("valid rules")
}

const ANYWHERE: &[Prefix] = &[Prefix::ANY];
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// The semantics, one rule after the other.
fn reference(
    rules: &[FirewallRule],
    direction: Direction,
    protocol: u8,
    remote: Ipv4Addr,
    port: Option<u16>,
) -> FirewallVerdict {
    let matches = |r: &FirewallRule| {
        let protocol_ok = match r.protocol {
            Protocol::Any => true,
            Protocol::Tcp => protocol == 6,
            Protocol::Udp => protocol == 17,
            Protocol::Icmp => protocol == 1,
            Protocol::Other(n) => protocol == n,
        };
        let whole = r.ports.first == 0 && r.ports.last == 65535;
        let port_ok = match r.protocol {
            Protocol::Tcp | Protocol::Udp if !whole => {
                port.is_some_and(|p| r.ports.first <= p && p <= r.ports.last)
            }
            _ => true,
        };
        let remote_ok = r.remote.iter().any(|p| {
            let mask = if p.len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(p.len))
            };
            (u32::from(remote) ^ u32::from(p.addr)) & mask == 0
        });
        r.direction == direction && protocol_ok && port_ok && remote_ok
    };
    let first = |action| rules.iter().position(|r| r.action == action && matches(r));
    match (first(Action::Deny), first(Action::Allow)) {
        (Some(rule), _) => FirewallVerdict::Deny { rule },
        (None, Some(rule)) => FirewallVerdict::Allow { rule },
        (None, None) => FirewallVerdict::NoMatch,
    }
}

#[test]
fn deny_overrides_allow_whatever_the_order() {
    let web = ports(80, 80);
    let allow_first = compile(&[
        allow(Protocol::Tcp, web, ANYWHERE),
        deny(Protocol::Tcp, web, ANYWHERE),
    ]);
    let deny_first = compile(&[
        deny(Protocol::Tcp, web, ANYWHERE),
        allow(Protocol::Tcp, web, ANYWHERE),
    ]);
    assert_eq!(
        allow_first.evaluate(Ingress, TCP, CLIENT, Some(80)),
        FirewallVerdict::Deny { rule: 1 }
    );
    assert_eq!(
        deny_first.evaluate(Ingress, TCP, CLIENT, Some(80)),
        FirewallVerdict::Deny { rule: 0 }
    );
    // Where only the allow rule applies, it decides.
    let narrow = compile(&[
        allow(Protocol::Tcp, ports(1, 1000), ANYWHERE),
        deny(Protocol::Tcp, web, &[pfx(ip(198, 51, 100, 0), 24)]),
    ]);
    assert_eq!(
        narrow.evaluate(Ingress, TCP, CLIENT, Some(80)),
        FirewallVerdict::Deny { rule: 1 }
    );
    assert_eq!(
        narrow.evaluate(Ingress, TCP, CLIENT, Some(81)),
        FirewallVerdict::Allow { rule: 0 }
    );
    assert_eq!(
        narrow.evaluate(Ingress, TCP, ip(203, 0, 113, 1), Some(80)),
        FirewallVerdict::Allow { rule: 0 }
    );
}

#[test]
fn the_lowest_matching_index_is_reported() {
    let set = compile(&[
        allow(Protocol::Udp, ports(53, 53), ANYWHERE),
        allow(Protocol::Any, PortRange::ANY, ANYWHERE),
        allow(Protocol::Tcp, ports(0, 1023), ANYWHERE),
        deny(Protocol::Tcp, ports(22, 22), ANYWHERE),
        allow(Protocol::Tcp, ports(22, 22), &[Prefix::host(CLIENT)]),
        deny(Protocol::Tcp, PortRange::ANY, &[pfx(CLIENT, 32)]),
        deny(Protocol::Tcp, ports(20, 25), ANYWHERE),
    ]);
    assert_eq!(
        set.evaluate(Ingress, UDP, CLIENT, Some(53)),
        FirewallVerdict::Allow { rule: 0 }
    );
    assert_eq!(
        set.evaluate(Ingress, UDP, CLIENT, Some(54)),
        FirewallVerdict::Allow { rule: 1 }
    );
    let other = ip(192, 0, 2, 1);
    assert_eq!(
        set.evaluate(Ingress, TCP, other, Some(80)),
        FirewallVerdict::Allow { rule: 1 }
    );
    // Rules 3, 5 and 6 deny port 22 from the client: the lowest wins over every allow.
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, Some(22)),
        FirewallVerdict::Deny { rule: 3 }
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, Some(21)),
        FirewallVerdict::Deny { rule: 5 }
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, other, Some(21)),
        FirewallVerdict::Deny { rule: 6 }
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, other, Some(22)),
        FirewallVerdict::Deny { rule: 3 }
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, other, Some(26)),
        FirewallVerdict::Allow { rule: 1 }
    );
    assert_eq!(set.evaluate(Ingress, TCP, other, Some(26)).rule(), Some(1));
}

#[test]
fn a_packet_without_a_port_matches_only_whole_port_ranges() {
    let set = compile(&[
        allow(Protocol::Tcp, ports(80, 80), ANYWHERE),
        allow(Protocol::Udp, ports(1000, 2000), ANYWHERE),
        allow(Protocol::Udp, PortRange::ANY, &[Prefix::host(CLIENT)]),
        deny(Protocol::Tcp, ports(0, 65534), &[Prefix::host(CLIENT)]),
    ]);
    // A non-first fragment of a TCP packet to port 80.
    assert_eq!(
        set.evaluate(Ingress, TCP, ip(192, 0, 2, 1), None),
        FirewallVerdict::NoMatch
    );
    // Not even the deny of every port but the last.
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, None),
        FirewallVerdict::NoMatch
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, Some(65535)),
        FirewallVerdict::NoMatch
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, Some(0)),
        FirewallVerdict::Deny { rule: 3 }
    );
    assert_eq!(
        set.evaluate(Ingress, UDP, CLIENT, None),
        FirewallVerdict::Allow { rule: 2 }
    );
    assert_eq!(
        set.evaluate(Ingress, UDP, ip(192, 0, 2, 1), None),
        FirewallVerdict::NoMatch
    );
    // Range edges.
    let udp = |port| set.evaluate(Ingress, UDP, ip(192, 0, 2, 1), Some(port));
    assert_eq!(udp(999), FirewallVerdict::NoMatch);
    assert_eq!(udp(1000), FirewallVerdict::Allow { rule: 1 });
    assert_eq!(udp(2000), FirewallVerdict::Allow { rule: 1 });
    assert_eq!(udp(2001), FirewallVerdict::NoMatch);
    assert_eq!(udp(0), FirewallVerdict::NoMatch);
    assert_eq!(udp(65535), FirewallVerdict::NoMatch);
}

#[test]
fn icmp_and_other_protocols_ignore_ports() {
    let set = compile(&[
        // A port range on ICMP is ignored: every ICMP type matches.
        allow(Protocol::Icmp, ports(8, 8), ANYWHERE),
        allow(
            Protocol::Other(GRE),
            ports(1, 1),
            &[pfx(ip(10, 0, 0, 0), 8)],
        ),
        // Other(6) is TCP on any port, also without one.
        deny(
            Protocol::Other(TCP),
            ports(443, 443),
            &[Prefix::host(CLIENT)],
        ),
        allow(Protocol::Tcp, ports(443, 443), ANYWHERE),
    ]);
    assert_eq!(
        set.evaluate(Ingress, ICMP, CLIENT, None),
        FirewallVerdict::Allow { rule: 0 }
    );
    assert_eq!(
        set.evaluate(Ingress, ICMP, CLIENT, Some(0)),
        FirewallVerdict::Allow { rule: 0 }
    );
    assert_eq!(
        set.evaluate(Ingress, GRE, ip(10, 9, 9, 9), None),
        FirewallVerdict::Allow { rule: 1 }
    );
    assert_eq!(
        set.evaluate(Ingress, GRE, CLIENT, None),
        FirewallVerdict::NoMatch
    );
    assert_eq!(
        set.evaluate(Ingress, 48, ip(10, 9, 9, 9), None),
        FirewallVerdict::NoMatch
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, Some(22)),
        FirewallVerdict::Deny { rule: 2 }
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, None),
        FirewallVerdict::Deny { rule: 2 }
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, ip(192, 0, 2, 1), Some(443)),
        FirewallVerdict::Allow { rule: 3 }
    );
    assert_eq!(
        set.evaluate(Ingress, UDP, CLIENT, Some(443)),
        FirewallVerdict::NoMatch
    );
}

#[test]
fn protocol_any_matches_every_protocol_and_port() {
    let set = compile(&[allow(Protocol::Any, ports(80, 80), &[Prefix::host(CLIENT)])]);
    for protocol in [0, ICMP, TCP, UDP, GRE, 255] {
        for port in [None, Some(0), Some(80), Some(65535)] {
            assert_eq!(
                set.evaluate(Ingress, protocol, CLIENT, port),
                FirewallVerdict::Allow { rule: 0 },
                "protocol {protocol} port {port:?}"
            );
        }
    }
}

#[test]
fn an_empty_remote_list_matches_nothing_and_0_0_0_0_slash_0_everything() {
    let set = compile(&[
        deny(Protocol::Any, PortRange::ANY, &[]),
        allow(Protocol::Any, PortRange::ANY, ANYWHERE),
    ]);
    for remote in [Ipv4Addr::UNSPECIFIED, CLIENT, Ipv4Addr::BROADCAST] {
        assert_eq!(
            set.evaluate(Ingress, TCP, remote, Some(1)),
            FirewallVerdict::Allow { rule: 1 }
        );
    }
    assert_eq!(set.len(), 2);
    let nothing = compile(&[allow(Protocol::Any, PortRange::ANY, &[])]);
    assert_eq!(
        nothing.evaluate(Ingress, TCP, CLIENT, Some(1)),
        FirewallVerdict::NoMatch
    );
}

#[test]
fn prefix_boundaries() {
    let set = compile(&[
        allow(Protocol::Any, PortRange::ANY, &[pfx(ip(10, 1, 2, 0), 24)]),
        allow(Protocol::Any, PortRange::ANY, &[pfx(ip(172, 16, 0, 4), 31)]),
        // Host bits are ignored: this is 192.168.0.0/16.
        allow(
            Protocol::Any,
            PortRange::ANY,
            &[pfx(ip(192, 168, 77, 1), 16)],
        ),
        allow(Protocol::Any, PortRange::ANY, &[pfx(ip(128, 0, 0, 0), 1)]),
    ]);
    let at = |remote| set.evaluate(Ingress, TCP, remote, Some(80)).rule();
    assert_eq!(at(ip(10, 1, 1, 255)), None);
    assert_eq!(at(ip(10, 1, 2, 0)), Some(0));
    assert_eq!(at(ip(10, 1, 2, 255)), Some(0));
    assert_eq!(at(ip(10, 1, 3, 0)), None);
    assert_eq!(at(ip(172, 16, 0, 3)), Some(3));
    assert_eq!(at(ip(172, 16, 0, 4)), Some(1));
    assert_eq!(at(ip(172, 16, 0, 5)), Some(1));
    assert_eq!(at(ip(172, 16, 0, 6)), Some(3));
    assert_eq!(at(ip(192, 167, 255, 255)), Some(3));
    assert_eq!(at(ip(192, 168, 0, 0)), Some(2));
    assert_eq!(at(ip(192, 168, 255, 255)), Some(2));
    assert_eq!(at(ip(192, 169, 0, 0)), Some(3));
    assert_eq!(at(ip(127, 255, 255, 255)), None);
    assert_eq!(at(ip(128, 0, 0, 0)), Some(3));
    assert_eq!(at(ip(255, 255, 255, 255)), Some(3));
    // The rules are kept as given.
    assert_eq!(set.rules()[2].remote, [pfx(ip(192, 168, 77, 1), 16)]);
}

#[test]
fn directions_are_separate() {
    let mut out = allow(Protocol::Tcp, ports(443, 443), ANYWHERE);
    out.direction = Egress;
    let set = compile(&[deny(Protocol::Tcp, ports(443, 443), ANYWHERE), out]);
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, Some(443)),
        FirewallVerdict::Deny { rule: 0 }
    );
    assert_eq!(
        set.evaluate(Egress, TCP, CLIENT, Some(443)),
        FirewallVerdict::Allow { rule: 1 }
    );
    assert_eq!(
        set.evaluate(Egress, TCP, CLIENT, Some(444)),
        FirewallVerdict::NoMatch
    );
}

#[test]
fn an_empty_set_matches_nothing() {
    let set = RuleSet::empty();
    assert!(set.is_empty());
    assert_eq!(set.len(), 0);
    assert!(set.rules().is_empty());
    assert_eq!(
        set.evaluate(Ingress, TCP, CLIENT, Some(22)),
        FirewallVerdict::NoMatch
    );
    assert_eq!(
        set.evaluate(Egress, UDP, CLIENT, None),
        FirewallVerdict::NoMatch
    );
    assert_eq!(
        compile(&[]).evaluate(Ingress, ICMP, CLIENT, None),
        FirewallVerdict::NoMatch
    );
}

#[test]
fn bad_rules_are_refused_with_their_index() {
    let good = allow(Protocol::Tcp, ports(22, 22), ANYWHERE);
    let long = allow(
        Protocol::Any,
        PortRange::ANY,
        &[Prefix::ANY, pfx(CLIENT, 33)],
    );
    assert_eq!(
        RuleSet::compile(&[good.clone(), long]).unwrap_err(),
        FirewallRuleError::PrefixLength {
            rule: 1,
            addr: CLIENT,
            len: 33
        }
    );
    let reversed = allow(Protocol::Udp, ports(2, 1), ANYWHERE);
    assert_eq!(
        RuleSet::compile(&[good, reversed]).unwrap_err(),
        FirewallRuleError::PortRange {
            rule: 1,
            first: 2,
            last: 1
        }
    );
}

#[test]
fn expanded_remote_groups_and_many_ports() {
    // A remote group of 5,000 members allowed on 443, 3,000 ports open to a subnet, a denied
    // member.
    let members: Vec<Prefix> = (0..5000u32)
        .map(|i| Prefix::host(Ipv4Addr::from(0x0a00_0000 + i * 3)))
        .collect();
    let mut rules = vec![allow(Protocol::Tcp, ports(443, 443), &members)];
    rules.extend((0..3000u16).map(|p| {
        allow(
            Protocol::Tcp,
            ports(10_000 + p * 2, 10_000 + p * 2),
            &[pfx(ip(10, 0, 0, 0), 16)],
        )
    }));
    rules.push(deny(
        Protocol::Any,
        PortRange::ANY,
        &[Prefix::host(Ipv4Addr::from(0x0a00_0000 + 300))],
    ));
    let set = compile(&rules);
    let probes = [
        (0x0a00_0000u32, 443),
        (0x0a00_0001, 443),
        (0x0a00_0000 + 300, 443),
        (0x0a00_0000 + 3 * 4999, 443),
        (0x0a00_0000 + 3 * 5000, 443),
        (0x0a00_0000, 10_000),
        (0x0a00_0000, 10_001),
        (0x0a00_0000, 15_998),
        (0x0a00_0000, 16_000),
        (0x0a01_0000, 10_000),
    ];
    for (addr, port) in probes {
        let remote = Ipv4Addr::from(addr);
        assert_eq!(
            set.evaluate(Ingress, TCP, remote, Some(port)),
            reference(&rules, Ingress, TCP, remote, Some(port)),
            "{remote} port {port}"
        );
    }
    assert_eq!(
        set.evaluate(Ingress, TCP, Ipv4Addr::from(0x0a00_0000 + 3), Some(443)),
        FirewallVerdict::Allow { rule: 0 }
    );
    assert_eq!(
        set.evaluate(Ingress, TCP, Ipv4Addr::from(0x0a00_0000 + 300), Some(443)),
        FirewallVerdict::Deny { rule: 3001 }
    );
}

// The differential test: random rule sets drawn from small pools of addresses, lengths and
// ports so that rules overlap and share edges, and packets drawn near those edges.

const ADDRS: [u32; 6] = [
    0x0a00_0000, // 10.0.0.0
    0x0a01_0200, // 10.1.2.0
    0x0a01_0280, // 10.1.2.128
    0xc633_6407, // 198.51.100.7
    0x8000_0000,
    0xffff_fffe,
];
const PORTS: [u16; 8] = [0, 1, 22, 80, 443, 1024, 65534, 65535];

fn prefix() -> impl Strategy<Value = Prefix> {
    let addr = prop_oneof![
        3 => (prop::sample::select(&ADDRS[..]), 0u32..4).prop_map(|(a, low)| a | low),
        1 => any::<u32>(),
    ];
    let len = prop_oneof![
        prop::sample::select(&[0u8, 1, 8, 16, 24, 25, 31, 32][..]),
        0u8..=32,
    ];
    (addr, len).prop_map(|(a, len)| Prefix {
        addr: Ipv4Addr::from(a),
        len,
    })
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => prop::sample::select(&PORTS[..]), 1 => any::<u16>()]
}

fn rule() -> impl Strategy<Value = FirewallRule> {
    let protocol = prop_oneof![
        1 => Just(Protocol::Any),
        3 => Just(Protocol::Tcp),
        2 => Just(Protocol::Udp),
        1 => Just(Protocol::Icmp),
        1 => prop::sample::select(&[1u8, 6, 17, 47, 0, 255][..]).prop_map(Protocol::Other),
    ];
    let ports = prop_oneof![
        Just(PortRange::ANY),
        port().prop_map(PortRange::single),
        (port(), port()).prop_map(|(a, b)| ports(a.min(b), a.max(b))),
        (port(), 0u16..64).prop_map(|(a, w)| ports(a, a.saturating_add(w))),
    ];
    let direction = prop_oneof![3 => Just(Ingress), 1 => Just(Egress)];
    let action = prop_oneof![2 => Just(Action::Allow), 1 => Just(Action::Deny)];
    let remote = prop_oneof![
        1 => Just(Vec::new()),
        10 => prop::collection::vec(prefix(), 1..4),
        1 => prop::collection::vec(prefix(), 4..40),
    ];
    (direction, protocol, ports, remote, action).prop_map(
        |(direction, protocol, ports, remote, action)| FirewallRule {
            direction,
            protocol,
            ports,
            remote,
            action,
        },
    )
}

/// How to draw a packet: from a rule's edges (`pick` chooses the rule, prefix and what to do
/// with them) or at random.
#[derive(Clone, Debug)]
struct Probe {
    pick: usize,
    addr_mode: u8,
    noise: u32,
    port_mode: u8,
    protocol_mode: u8,
    egress: bool,
    random_port: u16,
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        any::<usize>(),
        0u8..6,
        any::<u32>(),
        0u8..8,
        0u8..6,
        prop::bool::weighted(0.25),
        port(),
    )
        .prop_map(
            |(pick, addr_mode, noise, port_mode, protocol_mode, egress, random_port)| Probe {
                pick,
                addr_mode,
                noise,
                port_mode,
                protocol_mode,
                egress,
                random_port,
            },
        )
}

fn packet(rules: &[FirewallRule], p: &Probe) -> (Direction, u8, Ipv4Addr, Option<u16>) {
    let rule = (!rules.is_empty()).then(|| &rules[p.pick % rules.len()]);
    let prefix = rule.and_then(|r| r.remote.get(p.pick / 7 % r.remote.len().max(1)));
    let base = prefix.map_or(p.noise, |x| u32::from(x.addr));
    let len = prefix.map_or(32, |x| u32::from(x.len));
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let addr = match p.addr_mode {
        0 => base,
        1 => (base & mask).wrapping_sub(1),
        2 => (base & mask) | !mask,
        3 => ((base & mask) | !mask).wrapping_add(1),
        4 => (base & mask) | (p.noise & !mask),
        _ => p.noise,
    };
    let range = rule.map_or(PortRange::ANY, |r| r.ports);
    let port = match p.port_mode {
        0 => None,
        1 => Some(range.first),
        2 => Some(range.last),
        3 => Some(range.first.wrapping_sub(1)),
        4 => Some(range.last.wrapping_add(1)),
        _ => Some(p.random_port),
    };
    let protocol = match (p.protocol_mode, rule.and_then(|r| r.protocol.number())) {
        (0..=2, Some(n)) => n,
        (0 | 3, _) => TCP,
        (1 | 4, _) => UDP,
        (2, _) => ICMP,
        _ => (p.noise >> 24) as u8,
    };
    let direction = match (p.egress, rule) {
        (false, Some(r)) => r.direction,
        (true, _) => Egress,
        (false, None) => Ingress,
    };
    (direction, protocol, Ipv4Addr::from(addr), port)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_classifier_agrees_with_a_linear_scan(
        rules in prop_oneof![
            3 => prop::collection::vec(rule(), 0..20),
            2 => prop::collection::vec(rule(), 20..300),
        ],
        probes in prop::collection::vec(probe(), 1..120),
    ) {
        let set = RuleSet::compile(&rules).expect("valid rules");
        prop_assert_eq!(set.len(), rules.len());
        for p in &probes {
            let (direction, protocol, remote, port) = packet(&rules, p);
            prop_assert_eq!(
                set.evaluate(direction, protocol, remote, port),
                reference(&rules, direction, protocol, remote, port),
                "{:?} protocol {} from {} port {:?}", direction, protocol, remote, port
            );
        }
    }
}
