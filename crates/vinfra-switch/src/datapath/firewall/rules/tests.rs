use super::classifier::{Best, Buckets, Entry, Group, Scratch, Table, NONE};
use super::rule::mask;
use super::*;

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn rule(action: Action, protocol: Protocol, ports: PortRange, remote: &[Prefix]) -> FirewallRule {
    FirewallRule {
        direction: Direction::Ingress,
        protocol,
        ports,
        remote: remote.to_vec(),
        action,
    }
}

fn pfx(addr: Ipv4Addr, len: u8) -> Prefix {
    Prefix { addr, len }
}

#[test]
fn masks() {
    assert_eq!(mask(0), 0);
    assert_eq!(mask(1), 0x8000_0000);
    assert_eq!(mask(24), 0xffff_ff00);
    assert_eq!(mask(32), u32::MAX);
    assert_eq!(mask(200), u32::MAX);
    assert!(pfx(ip(10, 1, 2, 99), 24).contains(ip(10, 1, 2, 1)));
    assert!(!pfx(ip(10, 1, 2, 0), 24).contains(ip(10, 1, 3, 0)));
    assert!(Prefix::ANY.contains(ip(255, 255, 255, 255)));
}

#[test]
fn port_map_intervals_hold_the_lowest_covering_indices() {
    let e = |index, deny, first, last| Entry {
        len: 0,
        key: 0,
        index,
        deny,
        first,
        last,
    };
    let mut table = Table::default();
    let mut scratch = Scratch::default();
    let entries = [
        e(5, false, 0, u16::MAX),
        e(3, false, 100, 200),
        e(1, true, 150, 150),
        e(0, false, 180, 300),
    ];
    let map = table.port_map(&entries, &mut scratch).unwrap();
    assert_eq!(
        map.none,
        Best {
            deny: NONE,
            allow: 5
        }
    );
    let at = |p| table.answer(&map, Some(p));
    assert_eq!(
        at(0),
        Best {
            deny: NONE,
            allow: 5
        }
    );
    assert_eq!(
        at(99),
        Best {
            deny: NONE,
            allow: 5
        }
    );
    assert_eq!(
        at(100),
        Best {
            deny: NONE,
            allow: 3
        }
    );
    assert_eq!(at(150), Best { deny: 1, allow: 3 });
    assert_eq!(
        at(151),
        Best {
            deny: NONE,
            allow: 3
        }
    );
    assert_eq!(
        at(180),
        Best {
            deny: NONE,
            allow: 0
        }
    );
    assert_eq!(
        at(300),
        Best {
            deny: NONE,
            allow: 0
        }
    );
    assert_eq!(
        at(301),
        Best {
            deny: NONE,
            allow: 5
        }
    );
    assert_eq!(
        at(u16::MAX),
        Best {
            deny: NONE,
            allow: 5
        }
    );
    // Merged: 0-99, 100-149, 150, 151-179, 180-300, 301-.
    assert_eq!(map.len, 6);
}

#[test]
fn a_single_address_group_compares_and_many_hash() {
    let hosts: Vec<Prefix> = (1..=50).map(|d| Prefix::host(ip(10, 0, 0, d))).collect();
    let set = RuleSet::compile(&[
        rule(Action::Allow, Protocol::Any, PortRange::ANY, &[Prefix::ANY]),
        rule(Action::Deny, Protocol::Tcp, PortRange::single(22), &hosts),
    ])
    .unwrap();
    assert!(matches!(
        set.ingress.any.groups.as_slice(),
        [Group {
            buckets: Buckets::One(0, _),
            ..
        }]
    ));
    let tcp = &set.ingress.by_protocol;
    assert!(matches!(
        tcp.as_slice(),
        [(6, Table { groups, .. })] if matches!(groups.as_slice(), [Group { buckets: Buckets::Many(m), .. }] if m.len() == 50)
    ));
    assert_eq!(
        set.evaluate(Direction::Ingress, 6, ip(10, 0, 0, 7), Some(22)),
        FirewallVerdict::Deny { rule: 1 }
    );
    assert_eq!(
        set.evaluate(Direction::Ingress, 6, ip(10, 0, 0, 51), Some(22)),
        FirewallVerdict::Allow { rule: 0 }
    );
}

#[test]
fn groups_that_cannot_improve_are_skipped_without_changing_the_verdict() {
    let found = Best { deny: 4, allow: 2 };
    assert!(!Best { deny: 4, allow: 0 }.may_improve(found));
    assert!(Best {
        deny: 3,
        allow: NONE
    }
    .may_improve(found));
    let no_deny = Best {
        deny: NONE,
        allow: 2,
    };
    assert!(Best {
        deny: NONE,
        allow: 1
    }
    .may_improve(no_deny));
    assert!(!Best {
        deny: NONE,
        allow: 2
    }
    .may_improve(no_deny));
}

#[test]
fn errors() {
    let bad_len = rule(
        Action::Allow,
        Protocol::Any,
        PortRange::ANY,
        &[pfx(ip(10, 0, 0, 0), 33)],
    );
    assert_eq!(
        RuleSet::compile(&[bad_len]).unwrap_err(),
        FirewallRuleError::PrefixLength {
            rule: 0,
            addr: ip(10, 0, 0, 0),
            len: 33
        }
    );
    let ok = rule(Action::Allow, Protocol::Any, PortRange::ANY, &[]);
    let bad_range = rule(
        Action::Allow,
        Protocol::Icmp,
        PortRange { first: 9, last: 8 },
        &[],
    );
    let err = RuleSet::compile(&[ok, bad_range]).unwrap_err();
    assert_eq!(
        err,
        FirewallRuleError::PortRange {
            rule: 1,
            first: 9,
            last: 8
        }
    );
    assert_eq!(
        err.to_string(),
        "rule 1: port range 9-8 ends before it starts"
    );
}
