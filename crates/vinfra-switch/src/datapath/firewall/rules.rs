//! Security-group rules: a port's rule set compiled into a packet classifier.
//!
//! A VM port's rules are the rules of the security groups attached to it, concatenated; a rule's
//! index is its position in that list. [`RuleSet::evaluate`] classifies the first packet of a
//! connection (the connection tracker lets the rest through): **deny overrides** — if any
//! [`Action::Deny`] rule matches, the verdict is [`FirewallVerdict::Deny`] with the lowest index
//! among the matching deny rules; else if any [`Action::Allow`] rule matches,
//! [`FirewallVerdict::Allow`] with the lowest matching allow index; else
//! [`FirewallVerdict::NoMatch`], and the caller applies its default (ingress: deny, egress:
//! allow) and counts hits by the index it gets.
//!
//! # What a rule matches
//! A rule matches a packet when all of these hold:
//! - its [`Direction`] is the packet's;
//! - its [`Protocol`] is [`Protocol::Any`] or names the packet's IP protocol number
//!   (`Tcp` = 6, `Udp` = 17, `Icmp` = 1, `Other(n)` = n; `Other(6)` is TCP on any port);
//! - for `Tcp` and `Udp` only, its [`PortRange`] holds the packet's destination port; the whole
//!   range (`0-65535`, [`PortRange::ANY`]) matches any packet of the protocol, also one without a
//!   port (a non-first fragment), while a narrower range never matches a packet without a port.
//!   The range is ignored for the other protocols (an ICMP rule matches every ICMP type);
//! - one of its [`remote`](FirewallRule::remote) prefixes holds the remote address (the source
//!   of an ingress packet, the destination of an egress one). An empty list matches nothing,
//!   `0.0.0.0/0` everything. A prefix's bits past its length are ignored (`10.1.2.3/24` is
//!   `10.1.2.0/24`). A remote security group reaches this module expanded by the control plane
//!   into its members' `/32`s.
//!
//! # How the lookup works
//! Not a scan of the rules: a tuple-space search, as in Open vSwitch's classifier.
//! [`RuleSet::compile`] splits every rule into one entry per remote prefix and files the entries
//! in one table per direction and protocol (a packet consults two: its protocol's and the `Any`
//! one). A table keeps one group per distinct prefix length; a group maps the masked remote
//! address to a bucket of entries (one hash probe; a group with a single address, such as
//! `0.0.0.0/0`, compares instead). A bucket stores no entries but the answer for every port:
//! the port line cut at the entries' range boundaries into intervals, each with the lowest deny
//! index and the lowest allow index among the entries covering it (adjacent intervals with the
//! same answer merged), plus the answer for a packet without a port (the entries whose range is
//! the whole range).
//!
//! `evaluate` therefore probes each group of the two tables once and binary-searches the
//! intervals of the bucket it hits: `O(L · log B)`, where `L` ≤ 33 + 33 is the number of
//! distinct prefix lengths in the two tables (typically 1 to 3: `/0`, a subnet, `/32`s) and `B`
//! the number of intervals in a bucket, whatever the number of rules, prefixes or matches. A
//! group whose lowest indices cannot improve on what was already found (a deny with a lower
//! index, say) is skipped without a probe. It allocates nothing.
//!
//! `compile` sorts the entries (`E`, one per rule and prefix) by prefix length and masked
//! address and sweeps each bucket's ranges with a heap: `O(E log E)` time, `O(E)` space (a
//! bucket holds at most `2k + 1` intervals for its `k` entries). Overlapping ranges cost
//! nothing at lookup time; only their count matters, through `log B`.

mod classifier;
mod rule;
#[cfg(test)]
mod tests;

use core::net::Ipv4Addr;
use std::collections::BTreeMap;

pub use rule::{
    Action, Direction, FirewallRule, FirewallRuleError, FirewallVerdict, PortRange, Prefix,
    Protocol,
};

use classifier::{Entry, Scratch, Tables, NONE};
use rule::mask;

/// A port's rules compiled for lookup. Immutable: a change of the port's security groups
/// compiles a new set.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<FirewallRule>,
    ingress: Tables,
    egress: Tables,
}

impl RuleSet {
    /// No rules: every packet is [`FirewallVerdict::NoMatch`].
    pub fn empty() -> RuleSet {
        RuleSet::default()
    }

    /// Checks and compiles `rules` (in this order: a rule's index is its position). Refuses a
    /// prefix longer than 32 bits and a port range that ends before it starts, for every
    /// protocol; a prefix's host bits are ignored, not refused.
    pub fn compile(rules: &[FirewallRule]) -> Result<RuleSet, FirewallRuleError> {
        let too_large = |count: usize| FirewallRuleError::TooLarge { count };
        if u32::try_from(rules.len()).map_or(true, |n| n == NONE) {
            return Err(too_large(rules.len()));
        }
        let mut any: [Vec<Entry>; 2] = Default::default();
        let mut by_protocol: [BTreeMap<u8, Vec<Entry>>; 2] = Default::default();
        let mut count: usize = 0;
        for (i, rule) in rules.iter().enumerate() {
            let PortRange { first, last } = rule.ports;
            if first > last {
                return Err(FirewallRuleError::PortRange {
                    rule: i,
                    first,
                    last,
                });
            }
            let index = u32::try_from(i).map_err(|_| too_large(rules.len()))?;
            let (first, last) = if rule.protocol.has_ports() {
                (first, last)
            } else {
                (0, u16::MAX)
            };
            let dir = match rule.direction {
                Direction::Ingress => 0,
                Direction::Egress => 1,
            };
            let list = match rule.protocol.number() {
                None => any.get_mut(dir),
                Some(p) => by_protocol.get_mut(dir).map(|m| m.entry(p).or_default()),
            };
            let Some(list) = list else {
                continue;
            };
            for prefix in &rule.remote {
                if prefix.len > 32 {
                    return Err(FirewallRuleError::PrefixLength {
                        rule: i,
                        addr: prefix.addr,
                        len: prefix.len,
                    });
                }
                count = count.saturating_add(1);
                list.push(Entry {
                    len: prefix.len,
                    key: u32::from(prefix.addr) & mask(prefix.len),
                    index,
                    deny: rule.action == Action::Deny,
                    first,
                    last,
                });
            }
        }
        // Each entry adds at most three intervals to its table's arena, indexed by u32.
        if count > (u32::MAX / 3) as usize {
            return Err(too_large(count));
        }
        let mut scratch = Scratch::default();
        let [any_in, any_out] = any;
        let [proto_in, proto_out] = by_protocol;
        Ok(RuleSet {
            rules: rules.to_vec(),
            ingress: Tables::build(any_in, proto_in, &mut scratch)?,
            egress: Tables::build(any_out, proto_out, &mut scratch)?,
        })
    }

    /// Classifies a packet: its direction, IP protocol number, remote address (the source of
    /// an ingress packet, the destination of an egress one) and destination port (`None` for
    /// protocols other than TCP and UDP and for non-first fragments). Deny overrides allow; see
    /// the [module documentation](self). Allocates nothing.
    #[inline]
    pub fn evaluate(
        &self,
        direction: Direction,
        protocol: u8,
        remote: Ipv4Addr,
        dst_port: Option<u16>,
    ) -> FirewallVerdict {
        let tables = match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        tables
            .lookup(protocol, u32::from(remote), dst_port)
            .verdict()
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, as given to [`RuleSet::compile`] (indices of verdicts point here).
    pub fn rules(&self) -> &[FirewallRule] {
        &self.rules
    }
}
