//! The tuple-space classifier behind [`RuleSet`](super::RuleSet): per direction and
//! protocol, a table with one group per prefix length, mapping a masked remote address to the
//! answers for every port (see the [rules module documentation](super)).

use core::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use foldhash::HashMap;

use super::rule::{mask, FirewallRuleError, FirewallVerdict};

/// No rule: the lowest index found so far when none was.
pub(super) const NONE: u32 = u32::MAX;

/// The lowest deny and allow indices among some rules ([`NONE`] when there is none).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Best {
    pub(super) deny: u32,
    pub(super) allow: u32,
}

impl Best {
    pub(super) const NONE: Best = Best {
        deny: NONE,
        allow: NONE,
    };

    pub(super) fn merge(&mut self, other: Best) {
        self.deny = self.deny.min(other.deny);
        self.allow = self.allow.min(other.allow);
    }

    pub(super) fn add(&mut self, index: u32, deny: bool) {
        if deny {
            self.deny = self.deny.min(index);
        } else {
            self.allow = self.allow.min(index);
        }
    }

    /// Whether rules whose lowest indices are `self` could change the verdict `found` gives.
    #[inline]
    pub(super) fn may_improve(self, found: Best) -> bool {
        self.deny < found.deny || (found.deny == NONE && self.allow < found.allow)
    }

    pub(super) fn verdict(self) -> FirewallVerdict {
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
pub(super) struct PortMap {
    /// The answer for a packet without a port.
    pub(super) none: Best,
    pub(super) start: u32,
    pub(super) len: u32,
}

/// The buckets of one prefix length, by masked remote address.
#[derive(Clone, Debug)]
pub(super) enum Buckets {
    /// A single address (always so for `/0`): a comparison instead of a hash probe.
    One(u32, PortMap),
    Many(HashMap<u32, PortMap>),
}

/// The entries of one table with one prefix length.
#[derive(Clone, Debug)]
pub(super) struct Group {
    pub(super) mask: u32,
    /// The lowest indices in the group, to skip it when it cannot change the verdict.
    pub(super) min: Best,
    pub(super) buckets: Buckets,
}

/// The entries of one direction and protocol.
#[derive(Clone, Debug, Default)]
pub(super) struct Table {
    pub(super) groups: Vec<Group>,
    /// The first port of each interval, for every bucket (each bucket's run starts with 0).
    pub(super) bounds: Vec<u16>,
    /// The answer for each interval.
    pub(super) answers: Vec<Best>,
}

impl Table {
    #[inline]
    pub(super) fn lookup(&self, addr: u32, port: Option<u16>, found: &mut Best) {
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
    pub(super) fn answer(&self, map: &PortMap, port: Option<u16>) -> Best {
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
pub(super) struct Entry {
    pub(super) len: u8,
    pub(super) key: u32,
    pub(super) index: u32,
    pub(super) deny: bool,
    pub(super) first: u16,
    pub(super) last: u16,
}

/// Reused buffers of [`Table::build`].
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) starts: Vec<u32>,
    pub(super) by_first: Vec<Entry>,
    pub(super) deny: BinaryHeap<Reverse<(u32, u16)>>,
    pub(super) allow: BinaryHeap<Reverse<(u32, u16)>>,
}

impl Table {
    pub(super) fn build(
        mut entries: Vec<Entry>,
        scratch: &mut Scratch,
    ) -> Result<Table, FirewallRuleError> {
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
    pub(super) fn port_map(
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
pub(super) struct Tables {
    /// Rules of [`Protocol::Any`].
    pub(super) any: Table,
    /// The others, by IP protocol number, sorted.
    pub(super) by_protocol: Vec<(u8, Table)>,
}

impl Tables {
    pub(super) fn build(
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
    pub(super) fn lookup(&self, protocol: u8, addr: u32, port: Option<u16>) -> Best {
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
