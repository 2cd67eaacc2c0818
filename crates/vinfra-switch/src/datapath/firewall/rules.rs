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

use core::cmp::Reverse;
use core::net::Ipv4Addr;
use std::collections::{BTreeMap, BinaryHeap};

use foldhash::HashMap;

/// Which way a packet goes, seen from the VM.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// To the VM; the remote end is the packet's source.
    Ingress,
    /// From the VM; the remote end is the packet's destination.
    Egress,
}

/// The IP protocol a rule applies to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Protocol {
    /// Every protocol; the port range is ignored.
    Any,
    /// TCP (6), with the rule's destination port range.
    Tcp,
    /// UDP (17), with the rule's destination port range.
    Udp,
    /// ICMP (1), every type; the port range is ignored.
    Icmp,
    /// Another IP protocol number; the port range is ignored.
    Other(u8),
}

impl Protocol {
    /// The IP protocol number, `None` for [`Protocol::Any`].
    pub fn number(self) -> Option<u8> {
        match self {
            Protocol::Any => None,
            Protocol::Tcp => Some(6),
            Protocol::Udp => Some(17),
            Protocol::Icmp => Some(1),
            Protocol::Other(n) => Some(n),
        }
    }

    /// Whether a rule of this protocol looks at the destination port (TCP and UDP).
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// A range of destination ports, both ends included.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PortRange {
    /// The first port of the range.
    pub first: u16,
    /// The last port of the range, at least `first`.
    pub last: u16,
}

impl PortRange {
    /// Every port, and packets without one.
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    /// One port.
    pub const fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Whether the range is the whole range (which also matches packets without a port).
    pub const fn is_any(self) -> bool {
        self.first == 0 && self.last == u16::MAX
    }

    /// Whether `port` lies in the range.
    pub const fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// An IPv4 prefix: an address and a length of 0 to 32 bits (bits past it are ignored).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Prefix {
    /// The prefix's address.
    pub addr: Ipv4Addr,
    /// The prefix's length in bits, 0 to 32.
    pub len: u8,
}

impl Prefix {
    /// `0.0.0.0/0`: every address.
    pub const ANY: Prefix = Prefix {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };

    /// A single address (`/32`).
    pub const fn host(addr: Ipv4Addr) -> Prefix {
        Prefix { addr, len: 32 }
    }

    /// Whether `addr` lies in the prefix (a length over 32 counts as 32).
    pub fn contains(self, addr: Ipv4Addr) -> bool {
        let mask = mask(self.len);
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }
}

/// The netmask of a prefix length (lengths over 32 count as 32).
fn mask(len: u8) -> u32 {
    let len = u32::from(len.min(32));
    u32::MAX.checked_shl(32 - len).unwrap_or(0)
}

/// What a matching rule does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// Let the packet (and its connection) through, unless a deny rule matches too.
    Allow,
    /// Drop it, whatever allow rules match.
    Deny,
}

/// A security-group rule.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct FirewallRule {
    /// The direction of the packets it applies to.
    pub direction: Direction,
    /// Their IP protocol.
    pub protocol: Protocol,
    /// Their destination ports, for [`Protocol::Tcp`] and [`Protocol::Udp`] (ignored otherwise,
    /// but still checked by [`RuleSet::compile`]).
    pub ports: PortRange,
    /// The remote end's addresses: the source for ingress, the destination for egress. Empty:
    /// the rule matches nothing.
    pub remote: Vec<Prefix>,
    /// What it does.
    pub action: Action,
}

/// The outcome of [`RuleSet::evaluate`]; `rule` is an index into [`RuleSet::rules`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FirewallVerdict {
    /// A rule allows the packet and none denies it; the lowest such rule.
    Allow {
        /// Its index.
        rule: usize,
    },
    /// A rule denies the packet; the lowest such rule.
    Deny {
        /// Its index.
        rule: usize,
    },
    /// No rule matches; the caller's default applies (ingress deny, egress allow).
    NoMatch,
}

impl FirewallVerdict {
    /// The rule that decided, if any.
    pub fn rule(self) -> Option<usize> {
        match self {
            FirewallVerdict::Allow { rule } | FirewallVerdict::Deny { rule } => Some(rule),
            FirewallVerdict::NoMatch => None,
        }
    }
}

/// Why [`RuleSet::compile`] refused a list of rules.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum FirewallRuleError {
    /// A remote prefix is longer than 32 bits.
    #[error("rule {rule}: prefix {addr}/{len} is longer than 32 bits")]
    PrefixLength {
        /// The rule's index.
        rule: usize,
        /// The prefix's address.
        addr: Ipv4Addr,
        /// Its length.
        len: u8,
    },
    /// A port range ends before it starts (checked for every protocol).
    #[error("rule {rule}: port range {first}-{last} ends before it starts")]
    PortRange {
        /// The rule's index.
        rule: usize,
        /// The range's first port.
        first: u16,
        /// Its last port.
        last: u16,
    },
    /// More rules, or rule-prefix pairs, than a rule set indexes (about four billion).
    #[error("{count} rules or remote prefixes are more than a rule set holds")]
    TooLarge {
        /// How many there were.
        count: usize,
    },
}

/// No rule: the lowest index found so far when none was.
const NONE: u32 = u32::MAX;

/// The lowest deny and allow indices among some rules ([`NONE`] when there is none).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Best {
    deny: u32,
    allow: u32,
}

impl Best {
    const NONE: Best = Best {
        deny: NONE,
        allow: NONE,
    };

    fn merge(&mut self, other: Best) {
        self.deny = self.deny.min(other.deny);
        self.allow = self.allow.min(other.allow);
    }

    fn add(&mut self, index: u32, deny: bool) {
        if deny {
            self.deny = self.deny.min(index);
        } else {
            self.allow = self.allow.min(index);
        }
    }

    /// Whether rules whose lowest indices are `self` could change the verdict `found` gives.
    #[inline]
    fn may_improve(self, found: Best) -> bool {
        self.deny < found.deny || (found.deny == NONE && self.allow < found.allow)
    }

    fn verdict(self) -> FirewallVerdict {
        // Indices fit `usize` (they came from one); NONE is never a rule's index.
        if self.deny != NONE {
            FirewallVerdict::Deny {
                rule: self.deny as usize,
            }
        } else if self.allow != NONE {
            FirewallVerdict::Allow {
                rule: self.allow as usize,
            }
        } else {
            FirewallVerdict::NoMatch
        }
    }
}

/// A bucket's answer for every port: intervals `start..start + len` of the table's arena.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct PortMap {
    /// The answer for a packet without a port.
    none: Best,
    start: u32,
    len: u32,
}

/// The buckets of one prefix length, by masked remote address.
#[derive(Clone, Debug)]
enum Buckets {
    /// A single address (always so for `/0`): a comparison instead of a hash probe.
    One(u32, PortMap),
    Many(HashMap<u32, PortMap>),
}

/// The entries of one table with one prefix length.
#[derive(Clone, Debug)]
struct Group {
    mask: u32,
    /// The lowest indices in the group, to skip it when it cannot change the verdict.
    min: Best,
    buckets: Buckets,
}

/// The entries of one direction and protocol.
#[derive(Clone, Debug, Default)]
struct Table {
    groups: Vec<Group>,
    /// The first port of each interval, for every bucket (each bucket's run starts with 0).
    bounds: Vec<u16>,
    /// The answer for each interval.
    answers: Vec<Best>,
}

impl Table {
    #[inline]
    fn lookup(&self, addr: u32, port: Option<u16>, found: &mut Best) {
        for group in &self.groups {
            if !group.min.may_improve(*found) {
                continue;
            }
            let key = addr & group.mask;
            let map = match &group.buckets {
                Buckets::One(only, map) => (*only == key).then_some(map),
                Buckets::Many(maps) => maps.get(&key),
            };
            if let Some(map) = map {
                found.merge(self.answer(map, port));
            }
        }
    }

    #[inline]
    fn answer(&self, map: &PortMap, port: Option<u16>) -> Best {
        let Some(port) = port else {
            return map.none;
        };
        let start = map.start as usize;
        let end = start.saturating_add(map.len as usize);
        let Some(bounds) = self.bounds.get(start..end) else {
            return Best::NONE;
        };
        // The run starts with port 0, so at least one bound is <= port.
        let at = bounds.partition_point(|&b| b <= port);
        at.checked_sub(1)
            .and_then(|i| self.answers.get(start.saturating_add(i)))
            .copied()
            .unwrap_or(Best::NONE)
    }
}

/// One rule's one prefix, filed in a table.
#[derive(Clone, Copy, Debug)]
struct Entry {
    len: u8,
    key: u32,
    index: u32,
    deny: bool,
    first: u16,
    last: u16,
}

/// Reused buffers of [`Table::build`].
#[derive(Default)]
struct Scratch {
    starts: Vec<u32>,
    by_first: Vec<Entry>,
    deny: BinaryHeap<Reverse<(u32, u16)>>,
    allow: BinaryHeap<Reverse<(u32, u16)>>,
}

impl Table {
    fn build(mut entries: Vec<Entry>, scratch: &mut Scratch) -> Result<Table, FirewallRuleError> {
        entries.sort_unstable_by_key(|e| (e.len, e.key, e.index));
        let mut table = Table::default();
        for same_len in entries.chunk_by(|a, b| a.len == b.len) {
            let Some(head) = same_len.first() else {
                continue;
            };
            let mut min = Best::NONE;
            let mut maps = Vec::new();
            for bucket in same_len.chunk_by(|a, b| a.key == b.key) {
                let key = bucket.first().map_or(0, |e| e.key);
                maps.push((key, table.port_map(bucket, scratch)?));
                for e in bucket {
                    min.add(e.index, e.deny);
                }
            }
            let buckets = match maps.as_slice() {
                [(key, map)] => Buckets::One(*key, *map),
                _ => Buckets::Many(maps.into_iter().collect()),
            };
            table.groups.push(Group {
                mask: mask(head.len),
                min,
                buckets,
            });
        }
        // Groups that may hold the lowest deny first, so that later ones are skipped more often.
        table.groups.sort_by_key(|g| (g.min.deny, g.min.allow));
        Ok(table)
    }

    /// Sweeps a bucket's entries over the port line and appends its intervals to the arena.
    fn port_map(
        &mut self,
        entries: &[Entry],
        s: &mut Scratch,
    ) -> Result<PortMap, FirewallRuleError> {
        let mut none = Best::NONE;
        s.starts.clear();
        s.starts.push(0);
        for e in entries {
            if e.first == 0 && e.last == u16::MAX {
                none.add(e.index, e.deny);
            }
            s.starts.push(u32::from(e.first));
            s.starts.push(u32::from(e.last) + 1);
        }
        s.starts.sort_unstable();
        s.starts.dedup();
        s.by_first.clear();
        s.by_first.extend_from_slice(entries);
        s.by_first.sort_unstable_by_key(|e| e.first);
        s.deny.clear();
        s.allow.clear();

        let too_large = |count: usize| FirewallRuleError::TooLarge { count };
        let start = u32::try_from(self.bounds.len()).map_err(|_| too_large(self.bounds.len()))?;
        let mut next = s.by_first.iter().peekable();
        for &from in &s.starts {
            let Ok(from) = u16::try_from(from) else {
                // 65536: past the last port.
                break;
            };
            while let Some(e) = next.next_if(|e| e.first <= from) {
                let heap = if e.deny { &mut s.deny } else { &mut s.allow };
                heap.push(Reverse((e.index, e.last)));
            }
            let lowest = |heap: &mut BinaryHeap<Reverse<(u32, u16)>>| {
                // Entries that ended before this interval leave when they reach the top.
                while heap.peek().is_some_and(|Reverse((_, last))| *last < from) {
                    heap.pop();
                }
                heap.peek().map_or(NONE, |Reverse((index, _))| *index)
            };
            let answer = Best {
                deny: lowest(&mut s.deny),
                allow: lowest(&mut s.allow),
            };
            if self.bounds.len() > start as usize && self.answers.last() == Some(&answer) {
                continue;
            }
            self.bounds.push(from);
            self.answers.push(answer);
        }
        let len = self.bounds.len().saturating_sub(start as usize);
        Ok(PortMap {
            none,
            start,
            len: u32::try_from(len).map_err(|_| too_large(len))?,
        })
    }
}

/// The tables of one direction.
#[derive(Clone, Debug, Default)]
struct Tables {
    /// Rules of [`Protocol::Any`].
    any: Table,
    /// The others, by IP protocol number, sorted.
    by_protocol: Vec<(u8, Table)>,
}

impl Tables {
    fn build(
        any: Vec<Entry>,
        by_protocol: BTreeMap<u8, Vec<Entry>>,
        scratch: &mut Scratch,
    ) -> Result<Tables, FirewallRuleError> {
        Ok(Tables {
            any: Table::build(any, scratch)?,
            by_protocol: by_protocol
                .into_iter()
                .map(|(p, entries)| Ok((p, Table::build(entries, scratch)?)))
                .collect::<Result<_, FirewallRuleError>>()?,
        })
    }

    #[inline]
    fn lookup(&self, protocol: u8, addr: u32, port: Option<u16>) -> Best {
        let mut found = Best::NONE;
        if let Ok(i) = self
            .by_protocol
            .binary_search_by_key(&protocol, |(p, _)| *p)
        {
            if let Some((_, table)) = self.by_protocol.get(i) {
                table.lookup(addr, port, &mut found);
            }
        }
        self.any.lookup(addr, port, &mut found);
        found
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    fn rule(
        action: Action,
        protocol: Protocol,
        ports: PortRange,
        remote: &[Prefix],
    ) -> FirewallRule {
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
}
