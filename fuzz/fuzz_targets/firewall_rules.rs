//! Security-group rules from arbitrary bytes: up to 64 rules (addresses mostly from a small pool
//! so that prefixes nest and collide, any lengths including invalid ones, any port ranges
//! including reversed ones), then packets, many of them at a rule's edges. `RuleSet::compile`
//! must refuse exactly the invalid lists (the first bad rule, by index), and every verdict of a
//! compiled set must equal a linear scan of the rules. Nothing may panic.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, FirewallRuleError, FirewallVerdict, PortRange, Prefix,
    Protocol, RuleSet,
};

/// Addresses that rules and packets share, so that prefixes overlap.
const POOL: [u32; 8] = [
    0x0000_0000,
    0x0a00_0000,
    0x0a01_0200,
    0x0a01_0280,
    0x0a01_02ff,
    0x8000_0000,
    0xc0a8_0001,
    0xffff_ffff,
];
const PORTS: [u16; 8] = [0, 1, 22, 80, 443, 1024, 65534, 65535];

/// Reads the input a few bytes at a time; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn addr(&mut self) -> u32 {
        let b = self.u8();
        match b >> 5 {
            0 => self.u32(),
            _ => POOL[usize::from(b & 7)] ^ u32::from(b >> 3 & 3),
        }
    }

    fn port(&mut self) -> u16 {
        let b = self.u8();
        if b < 128 {
            PORTS[usize::from(b & 7)]
        } else {
            self.u16()
        }
    }

    fn rule(&mut self) -> FirewallRule {
        let flags = self.u8();
        let direction = if flags & 1 == 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        let action = if flags & 2 == 0 {
            Action::Allow
        } else {
            Action::Deny
        };
        let protocol = match flags >> 2 & 7 {
            0 => Protocol::Any,
            1 | 5 => Protocol::Tcp,
            2 | 6 => Protocol::Udp,
            3 => Protocol::Icmp,
            _ => Protocol::Other(self.u8() % 20),
        };
        let ports = match flags >> 5 {
            0 | 1 => PortRange::ANY,
            2 | 3 => PortRange::single(self.port()),
            4 => {
                let first = self.port();
                PortRange {
                    first,
                    last: first.saturating_add(u16::from(self.u8())),
                }
            }
            // Reversed now and then, to be refused.
            _ => {
                let (a, b) = (self.port(), self.port());
                if self.u8() == 0xff {
                    PortRange { first: a, last: b }
                } else {
                    PortRange {
                        first: a.min(b),
                        last: a.max(b),
                    }
                }
            }
        };
        let count = self.u8() % 6;
        let remote = (0..count)
            .map(|_| {
                let len = self.u8();
                let len = if len < 250 { len % 33 } else { len };
                Prefix {
                    addr: Ipv4Addr::from(self.addr()),
                    len,
                }
            })
            .collect();
        FirewallRule {
            direction,
            protocol,
            ports,
            remote,
            action,
        }
    }
}

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
        let port_ok = match r.protocol {
            Protocol::Tcp | Protocol::Udp if (r.ports.first, r.ports.last) != (0, 65535) => {
                port.is_some_and(|p| r.ports.first <= p && p <= r.ports.last)
            }
            _ => true,
        };
        let remote_ok = r.remote.iter().any(|p| {
            let host_bits = 32 - u32::from(p.len);
            (u64::from(u32::from(remote)) >> host_bits)
                == (u64::from(u32::from(p.addr)) >> host_bits)
        });
        r.direction == direction && protocol_ok && port_ok && remote_ok
    };
    let lowest = |action| rules.iter().position(|r| r.action == action && matches(r));
    match (lowest(Action::Deny), lowest(Action::Allow)) {
        (Some(rule), _) => FirewallVerdict::Deny { rule },
        (None, Some(rule)) => FirewallVerdict::Allow { rule },
        (None, None) => FirewallVerdict::NoMatch,
    }
}

/// The error `compile` must give, if any: the first rule with a reversed range or, failing
/// that, a prefix over 32 bits.
fn expected_error(rules: &[FirewallRule]) -> Option<FirewallRuleError> {
    rules.iter().enumerate().find_map(|(rule, r)| {
        let PortRange { first, last } = r.ports;
        if first > last {
            return Some(FirewallRuleError::PortRange { rule, first, last });
        }
        r.remote
            .iter()
            .find(|p| p.len > 32)
            .map(|p| FirewallRuleError::PrefixLength {
                rule,
                addr: p.addr,
                len: p.len,
            })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let count = bytes.u8() % 65;
    let rules: Vec<FirewallRule> = (0..count).map(|_| bytes.rule()).collect();
    let set = match (RuleSet::compile(&rules), expected_error(&rules)) {
        (Ok(set), None) => set,
        (Err(got), Some(want)) => {
            assert_eq!(got, want);
            return;
        }
        (got, want) => panic!("compile gave {got:?}, expected error {want:?}"),
    };
    assert_eq!(set.len(), rules.len());
    while !bytes.0.is_empty() {
        let how = bytes.u8();
        let rule = (!rules.is_empty()).then(|| &rules[usize::from(bytes.u8()) % rules.len()]);
        let prefix = rule.and_then(|r| r.remote.first());
        let direction = match (how & 1, rule) {
            (0, Some(r)) => r.direction,
            (0, None) => Direction::Ingress,
            _ => Direction::Egress,
        };
        let protocol = match (how >> 1 & 3, rule.and_then(|r| r.protocol.number())) {
            (0 | 1, Some(n)) => n,
            (0, None) => 6,
            (1, None) => 17,
            _ => bytes.u8() % 20,
        };
        let addr = match (how >> 3 & 3, prefix) {
            (0, Some(p)) => u32::from(p.addr),
            (1, Some(p)) => {
                // Just past the prefix, either side.
                let mask = u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0);
                let base = u32::from(p.addr) & mask;
                if how & 0x80 == 0 {
                    base.wrapping_sub(1)
                } else {
                    (base | !mask).wrapping_add(1)
                }
            }
            _ => bytes.addr(),
        };
        let range = rule.map_or(PortRange::ANY, |r| r.ports);
        let port = match how >> 5 & 3 {
            0 => None,
            1 => Some(if how & 0x80 == 0 {
                range.first
            } else {
                range.last
            }),
            2 => Some(if how & 0x80 == 0 {
                range.first.wrapping_sub(1)
            } else {
                range.last.wrapping_add(1)
            }),
            _ => Some(bytes.port()),
        };
        let remote = Ipv4Addr::from(addr);
        assert_eq!(
            set.evaluate(direction, protocol, remote, port),
            reference(&rules, direction, protocol, remote, port),
            "{direction:?} protocol {protocol} from {remote} port {port:?}"
        );
    }
});
