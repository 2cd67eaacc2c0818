//! Connection tracking for the distributed firewall: which IPv4 packets at a VM port belong to
//! a connection the rules already allowed.
//!
//! The switch calls [`Conntrack::track`] for every IPv4 packet at a firewalled VM port, with the
//! port's zone (one per VM port) and its [`Side`] (from the VM or to it). The answer is
//! [`Tracked::New`] when no connection knows the packet (the caller evaluates the rules and,
//! if they allow it, calls [`Conntrack::commit`]), [`Tracked::Established`] for a packet of a
//! known connection in either direction (its state and timeout are updated),
//! [`Tracked::Related`] for an ICMP error about a known connection, or [`Tracked::Invalid`]
//! for a packet no connection may carry (a TCP segment other than a SYN without a connection,
//! a SYN+ACK from the wrong side, a flag combination no stack sends, …), counted by
//! [`InvalidReason`]. Invalid packets never create or change an entry.
//!
//! Like the kernel's `nf_conntrack` and OVS's userspace conntrack, a connection has two tuples,
//! its original one (of the packet that created it) and its reply one, both keys of one
//! hash table per zone; looking a packet up is one hash lookup. Connections are TCP (the
//! kernel's state machine, [`TcpState`]), UDP (unreplied, then replied), ICMP queries (echo,
//! timestamp, …, by identifier) and any other protocol by addresses and protocol number.
//!
//! # Differences from the kernel
//! - No TCP sequence-window tracking: a segment is judged by its flags, its direction and the
//!   state only (the kernel also checks that sequence and acknowledgment numbers lie in the
//!   window, which stops blind injection of RSTs and data into a known connection; here a peer
//!   that knows the 5-tuple can inject). Nor does it pick up connections mid-stream: a TCP
//!   connection starts with a SYN (the kernel's `nf_conntrack_tcp_loose` accepts an ACK).
//! - A SYN on a `TimeWait` or `Close` connection ends it and is [`Tracked::New`]: the rules
//!   judge the new connection (the kernel reuses the entry unless a FIN or RST closed it).
//! - In `TimeWait` and `Close`, further segments do not extend the timeout: a connection that
//!   has closed lives its closing timeout from the transition and no longer.
//! - A UDP connection that saw a reply gets `udp_replied` at once (the kernel waits 2 s of
//!   replied traffic before its stream timeout).
//! - Non-first IPv4 fragments are not reassembled (the kernel defragments before tracking; OVS
//!   reassembles too). A later fragment has no ports, so it is `Established` when the zone has
//!   a connection of its protocol between its two addresses (in either direction) and
//!   `Invalid` otherwise: a peer with one allowed connection to a VM can send it fragments of
//!   other datagrams, which the VM can only reassemble with a first fragment, and that one
//!   carries the ports and is checked. As RFC 1858 advises, a TCP fragment at offset 8 is
//!   invalid and a first fragment must hold the whole TCP header ([`PacketInfo::parse`]).
//!   Entries past their timeout but not yet freed ([`Conntrack::expire`]) still count here.
//! - The table holds at most `max_entries` connections (and at most `zone_max_entries` per
//!   zone): a commit on a full table first frees connections past their timeout, then TCP
//!   connections that have closed (`TimeWait`, `Close`; the zone's own oldest first, and for a
//!   full table any zone's), then is refused ([`ConntrackFull`]); the kernel drops a not yet
//!   assured connection to make room instead (`early_drop`). So a VM taking many short
//!   connections is not refused for the two minutes its closed ones wait in `TimeWait`.
//!
//! # Migration
//! [`Conntrack::export`] writes a zone's connections as plain [`ConnEntry`] values with their
//! remaining lifetime; [`Conntrack::import`] puts them into a zone (any number) on the
//! destination host, relative to its own clock, so an established TCP stream goes on with its
//! next plain ACK.

mod counters;
mod migrate;
mod packet;
mod tcp;
#[cfg(test)]
mod tests;
mod timeouts;

use core::net::Ipv4Addr;
use core::time::Duration;

use std::collections::VecDeque;

use foldhash::HashMap;

pub use counters::{ConntrackCounters, InvalidCounts, InvalidReason};
pub use packet::{
    icmp_is_error, icmp_is_request, icmp_query_peer, icmp_type, ConnTuple, Fragment, Icmp,
    PacketError, PacketInfo, TcpFlags, L4,
};
pub use tcp::TcpState;
pub use timeouts::{ConntrackConfig, Timeouts, MAX_ENTRIES_LIMIT};

use crate::wire::ipv4::protocol;
use tcp::{SegmentKind, Step};

/// Which way a packet goes through a VM port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Side {
    /// Sent by the VM (egress from the VM's point of view).
    FromVm,
    /// Sent to the VM (ingress).
    ToVm,
}

impl Side {
    /// The other side.
    pub const fn opposite(self) -> Side {
        match self {
            Side::FromVm => Side::ToVm,
            Side::ToVm => Side::FromVm,
        }
    }
}

/// What [`Conntrack::track`] found a packet to be.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[must_use]
pub enum Tracked {
    /// No connection knows the packet, and it may start one: evaluate the rules, then
    /// [`Conntrack::commit`] it if they allow it.
    New,
    /// A packet of a known connection; `reply` when it goes the reply way (against the
    /// direction of the packet that created the connection). A later fragment, whose way is
    /// not known without its ports, is always `reply: false`.
    Established {
        /// The packet goes the reply way.
        reply: bool,
    },
    /// An ICMP error about a known connection, going back to the sender of the packet it
    /// quotes.
    Related,
    /// No connection may carry the packet.
    Invalid(InvalidReason),
}

/// The table (or the zone) holds its limit of connections, even after freeing the expired
/// ones: the packet is refused (the caller drops it and counts `conntrack_full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ConntrackFull {
    /// The whole table is full.
    #[error("connection table full ({0} connections)")]
    Table(usize),
    /// The zone holds its limit.
    #[error("zone {zone} holds its limit of {limit} connections")]
    Zone {
        /// The zone.
        zone: u32,
        /// Its limit.
        limit: usize,
    },
}

/// A connection as plain data, for migration ([`Conntrack::export`], [`Conntrack::import`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnEntry {
    /// The tuple of the packet that created the connection.
    pub original: ConnTuple,
    /// The tuple of its replies (always `original.reply()`; kept for readers).
    pub reply: ConnTuple,
    /// The side of the port the original packet went through.
    pub origin: Side,
    /// The TCP state; `None` for other protocols.
    pub tcp_state: Option<TcpState>,
    /// Whether a packet went the reply way.
    pub replied: bool,
    /// How long the connection lives without a further packet.
    pub remaining: Duration,
}

/// A connection.
#[derive(Clone, Copy, Debug)]
struct Conn {
    zone: u32,
    original: ConnTuple,
    origin: Side,
    tcp: Option<TcpState>,
    replied: bool,
    deadline: Duration,
}

/// A tuple in a zone: a key of the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    zone: u32,
    tuple: ConnTuple,
}

/// Two addresses (in order) and a protocol in a zone: what a later fragment is matched by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct PairKey {
    zone: u32,
    low: Ipv4Addr,
    high: Ipv4Addr,
    protocol: u8,
}

impl PairKey {
    fn new(zone: u32, a: Ipv4Addr, b: Ipv4Addr, protocol: u8) -> PairKey {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        PairKey {
            zone,
            low,
            high,
            protocol,
        }
    }
}

/// Whether a TCP connection has closed (`TimeWait`, `Close`): it carries nothing more and is
/// the first to go from a full table.
fn is_closed(tcp: Option<TcpState>) -> bool {
    matches!(tcp, Some(TcpState::TimeWait | TcpState::Close))
}

/// A slot number as an index.
fn place_index(slot: u32) -> usize {
    usize::try_from(slot).unwrap_or(usize::MAX)
}

/// An index value: the slot number, shifted left by one, with the low bit set for the reply
/// tuple.
type Handle = u32;

/// Least time between two sweeps of a full table that freed nothing.
const SWEEP_BACKOFF: Duration = Duration::from_millis(100);

/// The connection table. See the [module documentation](self).
#[derive(Debug)]
pub struct Conntrack {
    config: ConntrackConfig,
    /// Both tuples of every connection.
    index: HashMap<Key, Handle>,
    /// Connections by slot; `None` slots are in `free`.
    slots: Vec<Option<Conn>>,
    free: Vec<u32>,
    len: usize,
    /// Connections per zone (zones with none are not kept).
    zones: HashMap<u32, usize>,
    /// Connections per address pair and protocol, for later fragments.
    pairs: HashMap<PairKey, u32>,
    /// Per zone, the TCP connections that closed (`TimeWait`, `Close`), oldest first, by slot
    /// and original tuple (an entry whose slot no longer holds that closed connection is
    /// stale and skipped): what a full zone or table frees before it refuses a connection.
    closing: HashMap<u32, VecDeque<(u32, ConnTuple)>>,
    /// No connection expires before this: a full table is swept only from then on.
    next_expiry: Duration,
    counters: ConntrackCounters,
    /// Connections removed and TCP states changed, so far (the fast path's offers depend on
    /// them: `datapath::fastpath`).
    changes: u64,
}

impl Conntrack {
    /// An empty table.
    pub fn new(config: ConntrackConfig) -> Conntrack {
        let config = ConntrackConfig {
            max_entries: config.max_entries.min(MAX_ENTRIES_LIMIT),
            ..config
        };
        Conntrack {
            config,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            zones: HashMap::default(),
            pairs: HashMap::default(),
            closing: HashMap::default(),
            next_expiry: Duration::MAX,
            counters: ConntrackCounters::default(),
            changes: 0,
        }
    }

    /// The configuration (`max_entries` capped at [`MAX_ENTRIES_LIMIT`]).
    pub fn config(&self) -> &ConntrackConfig {
        &self.config
    }

    /// Changes the limits (`max_entries` capped at [`MAX_ENTRIES_LIMIT`]). Connections beyond
    /// new, lower limits stay until they end; new ones are refused until there is room.
    pub fn set_limits(&mut self, max_entries: usize, zone_max_entries: Option<usize>) {
        self.config.max_entries = max_entries.min(MAX_ENTRIES_LIMIT);
        self.config.zone_max_entries = zone_max_entries;
    }

    /// Connections in the table, expired ones not yet freed included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Connections of `zone`, expired ones not yet freed included.
    pub fn zone_len(&self, zone: u32) -> usize {
        self.zones.get(&zone).copied().unwrap_or(0)
    }

    /// The counters.
    pub fn counters(&self) -> ConntrackCounters {
        ConntrackCounters {
            entries: self.len,
            ..self.counters
        }
    }

    /// Connections removed and TCP states changed, so far (a counter that only grows).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Classifies a packet going through the port of `zone` on `side`, and updates the state
    /// and timeout of its connection. Nothing is created: see [`Tracked::New`].
    pub fn track(&mut self, zone: u32, side: Side, pkt: &PacketInfo, now: Duration) -> Tracked {
        let tracked = self.classify(zone, side, pkt, now);
        if let Tracked::Invalid(reason) = tracked {
            self.counters.invalid.count(reason);
        }
        tracked
    }

    fn classify(&mut self, zone: u32, side: Side, pkt: &PacketInfo, now: Duration) -> Tracked {
        if let Fragment::Later { offset } = pkt.fragment {
            return self.later_fragment(zone, pkt, offset);
        }
        let flags = match pkt.l4 {
            L4::Icmp(Icmp::Error { about, .. }) => {
                return self.related(zone, side, pkt, about, now)
            }
            L4::Tcp { flags, .. } => {
                if !tcp::valid_flags(flags) {
                    return Tracked::Invalid(InvalidReason::TcpBadFlags);
                }
                Some(flags)
            }
            _ => None,
        };
        let Some(tuple) = pkt.tuple() else {
            // Every other packet has a tuple.
            return Tracked::Invalid(InvalidReason::Fragment);
        };
        let Some((slot, reply)) = self.lookup(zone, &tuple, now) else {
            return match (pkt.l4, flags) {
                (_, Some(flags)) if SegmentKind::of(flags) != SegmentKind::Syn => {
                    Tracked::Invalid(InvalidReason::TcpNotSyn)
                }
                (L4::Icmp(Icmp::Query { ty, .. }), _) if !packet::icmp_is_request(ty) => {
                    Tracked::Invalid(InvalidReason::IcmpUnmatchedReply)
                }
                _ => Tracked::New,
            };
        };
        let timeouts = self.config.timeouts;
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Tracked::New;
        };
        let expected = if reply {
            conn.origin.opposite()
        } else {
            conn.origin
        };
        if side != expected {
            return Tracked::Invalid(InvalidReason::WrongSide);
        }
        match (conn.tcp, flags) {
            (Some(state), Some(flags)) => match tcp::step(state, reply, SegmentKind::of(flags)) {
                Step::Invalid => return Tracked::Invalid(InvalidReason::TcpBadState),
                Step::Ignore => {}
                Step::Reopen => {
                    self.remove_slot(slot);
                    self.counters.removed += 1;
                    return Tracked::New;
                }
                Step::To(next) => {
                    if next != state {
                        self.changes = self.changes.wrapping_add(1);
                    }
                    conn.replied |= reply;
                    // Closing timers run from the transition, not from the last segment.
                    let closing = matches!(next, TcpState::TimeWait | TcpState::Close);
                    if next != state || !closing {
                        conn.tcp = Some(next);
                        conn.deadline = now.saturating_add(timeouts.tcp(next));
                        self.next_expiry = self.next_expiry.min(conn.deadline);
                    }
                    if closing && !is_closed(Some(state)) {
                        let (zone, original) = (conn.zone, conn.original);
                        self.note_closed(slot, zone, original);
                    }
                }
            },
            _ => {
                conn.replied |= reply;
                conn.deadline =
                    now.saturating_add(timeouts.of(conn.original.protocol, None, conn.replied));
                self.next_expiry = self.next_expiry.min(conn.deadline);
            }
        }
        Tracked::Established { reply }
    }

    /// A later fragment: established when the zone has a connection of its protocol between
    /// its addresses.
    fn later_fragment(&self, zone: u32, pkt: &PacketInfo, offset: u16) -> Tracked {
        if pkt.protocol == protocol::TCP && offset == 8 {
            return Tracked::Invalid(InvalidReason::Fragment);
        }
        let key = PairKey::new(zone, pkt.src, pkt.dst, pkt.protocol);
        if self.pairs.get(&key).is_some_and(|n| *n > 0) {
            // Which way it goes is not known without the ports (telling it by the addresses
            // of one of the connections would need a scan): called the original way.
            Tracked::Established { reply: false }
        } else {
            Tracked::Invalid(InvalidReason::Fragment)
        }
    }

    /// An ICMP error: related when it quotes a packet of a known connection and goes back to
    /// that packet's sender (the way opposite to the quoted packet's, through the port).
    fn related(
        &mut self,
        zone: u32,
        side: Side,
        pkt: &PacketInfo,
        about: Option<ConnTuple>,
        now: Duration,
    ) -> Tracked {
        let unrelated = Tracked::Invalid(InvalidReason::IcmpUnrelatedError);
        let Some(quoted) = about else {
            return unrelated;
        };
        if pkt.dst != quoted.src {
            return unrelated;
        }
        let Some((slot, reply)) = self.lookup(zone, &quoted, now) else {
            return unrelated;
        };
        let Some(conn) = self.slots.get(slot).and_then(Option::as_ref) else {
            return unrelated;
        };
        let quoted_side = if reply {
            conn.origin.opposite()
        } else {
            conn.origin
        };
        if side == quoted_side.opposite() {
            Tracked::Related
        } else {
            Tracked::Invalid(InvalidReason::WrongSide)
        }
    }

    /// The slot and direction of the live connection with `tuple` in `zone`; a connection past
    /// its timeout is freed and not found.
    fn lookup(&mut self, zone: u32, tuple: &ConnTuple, now: Duration) -> Option<(usize, bool)> {
        let handle = *self.index.get(&Key {
            zone,
            tuple: *tuple,
        })?;
        let slot = usize::try_from(handle >> 1).ok()?;
        let conn = self.slots.get(slot)?.as_ref()?;
        if conn.deadline <= now {
            self.remove_slot(slot);
            self.counters.expired += 1;
            return None;
        }
        Some((slot, handle & 1 == 1))
    }

    /// Creates the connection of a packet [`Conntrack::track`] found [`Tracked::New`]: its
    /// original tuple is the packet's and `side` its origin. A TCP connection starts only with a
    /// SYN without ACK; ICMP only with a query request (echo, timestamp, …); an ICMP error or a
    /// later fragment starts nothing. For any packet that cannot start a connection, or whose
    /// connection exists, nothing changes and the answer is `Ok`.
    ///
    /// On a full table (or zone) the connections past their timeout are freed first (counted as
    /// `evicted`); if it is still full the connection is refused.
    pub fn commit(
        &mut self,
        zone: u32,
        side: Side,
        pkt: &PacketInfo,
        now: Duration,
    ) -> Result<(), ConntrackFull> {
        if matches!(pkt.fragment, Fragment::Later { .. }) {
            return Ok(());
        }
        let tcp = match pkt.l4 {
            L4::Tcp { flags, .. } => {
                if !tcp::valid_flags(flags) || SegmentKind::of(flags) != SegmentKind::Syn {
                    return Ok(());
                }
                Some(TcpState::SynSent)
            }
            L4::Icmp(Icmp::Error { .. }) => return Ok(()),
            L4::Icmp(Icmp::Query { ty, .. }) if !packet::icmp_is_request(ty) => return Ok(()),
            _ => None,
        };
        let Some(tuple) = pkt.tuple() else {
            return Ok(());
        };
        if self.lookup(zone, &tuple, now).is_some()
            || self.lookup(zone, &tuple.reply(), now).is_some()
        {
            return Ok(());
        }
        self.make_room(zone, now, true)?;
        let timeout = self.config.timeouts.of(tuple.protocol, tcp, false);
        self.insert(Conn {
            zone,
            original: tuple,
            origin: side,
            tcp,
            replied: false,
            deadline: now.saturating_add(timeout),
        });
        self.counters.created += 1;
        Ok(())
    }

    /// Makes room for one more connection in `zone`: sweeps the table if it (or the zone) is
    /// full and a connection may have expired; refuses if still full.
    fn make_room(
        &mut self,
        zone: u32,
        now: Duration,
        drop_closed: bool,
    ) -> Result<(), ConntrackFull> {
        let zone_limit = self.config.zone_max_entries;
        let full = |ct: &Conntrack| {
            if ct.len >= ct.config.max_entries {
                Some(ConntrackFull::Table(ct.config.max_entries))
            } else {
                zone_limit
                    .filter(|limit| ct.zone_len(zone) >= *limit)
                    .map(|limit| ConntrackFull::Zone { zone, limit })
            }
        };
        if full(self).is_none() {
            return Ok(());
        }
        if now >= self.next_expiry {
            let freed = self.sweep(now);
            self.counters.evicted += freed as u64;
            if freed == 0 {
                self.next_expiry = self.next_expiry.max(now.saturating_add(SWEEP_BACKOFF));
            }
        }
        // Still full: closed connections go first, the zone's own, else (a full table) any
        // zone's; the kernel's early drop frees unassured ones instead.
        while let Some(err) = full(self) {
            let freed = drop_closed
                && (self.drop_closed(zone)
                    || (matches!(err, ConntrackFull::Table(_)) && self.drop_closed_any()));
            if !freed {
                self.counters.refused += 1;
                return Err(err);
            }
            self.counters.evicted += 1;
        }
        Ok(())
    }

    /// Remembers that the connection in `slot` closed, for [`Conntrack::drop_closed`]. The
    /// zone's list keeps at most twice the zone's (or the table's) limit: beyond, its oldest
    /// entry is forgotten (that connection still expires; it is only not freed early).
    fn note_closed(&mut self, slot: usize, zone: u32, original: ConnTuple) {
        let Ok(slot) = u32::try_from(slot) else {
            return;
        };
        let cap = self
            .config
            .zone_max_entries
            .unwrap_or(self.config.max_entries)
            .saturating_mul(2)
            .max(1);
        let list = self.closing.entry(zone).or_default();
        if list.len() >= cap {
            list.pop_front();
        }
        list.push_back((slot, original));
    }

    /// Frees the oldest closed connection of `zone` still in the table; false when it has
    /// none.
    fn drop_closed(&mut self, zone: u32) -> bool {
        loop {
            let Some((slot, original)) = self.closing.get_mut(&zone).and_then(VecDeque::pop_front)
            else {
                self.closing.remove(&zone);
                return false;
            };
            let Ok(slot) = usize::try_from(slot) else {
                continue;
            };
            let live = self
                .slots
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.zone == zone && c.original == original && is_closed(c.tcp));
            if live {
                self.remove_slot(slot);
                return true;
            }
        }
    }

    /// Frees the oldest closed connection of any zone; false when there is none.
    fn drop_closed_any(&mut self) -> bool {
        let zones: Vec<u32> = self.closing.keys().copied().collect();
        zones.into_iter().any(|z| self.drop_closed(z))
    }

    /// Frees the connections past their timeout; returns how many. `len()` drops by as many.
    pub fn expire(&mut self, now: Duration) -> usize {
        let freed = self.sweep(now);
        self.counters.expired += freed as u64;
        freed
    }

    /// Frees every connection past its timeout and recomputes `next_expiry`.
    fn sweep(&mut self, now: Duration) -> usize {
        let mut freed = 0;
        let mut next = Duration::MAX;
        for slot in 0..self.slots.len() {
            let Some(Some(conn)) = self.slots.get(slot) else {
                continue;
            };
            if conn.deadline <= now {
                self.remove_slot(slot);
                freed += 1;
            } else {
                next = next.min(conn.deadline);
            }
        }
        self.next_expiry = next;
        freed
    }

    /// Removes every connection of `zone` (its port went away); returns how many.
    pub fn remove_zone(&mut self, zone: u32) -> usize {
        if self.zone_len(zone) == 0 {
            return 0;
        }
        self.closing.remove(&zone);
        let mut removed = 0;
        for slot in 0..self.slots.len() {
            if matches!(self.slots.get(slot), Some(Some(conn)) if conn.zone == zone) {
                self.remove_slot(slot);
                removed += 1;
            }
        }
        self.counters.removed += removed as u64;
        removed
    }

    /// Stores a connection whose tuples are not in the table; the caller made room.
    fn insert(&mut self, conn: Conn) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => match u32::try_from(self.slots.len()) {
                Ok(slot) if slot < u32::MAX >> 1 => {
                    self.slots.push(None);
                    slot
                }
                _ => return,
            },
        };
        let Some(place) = usize::try_from(slot)
            .ok()
            .and_then(|s| self.slots.get_mut(s))
        else {
            return;
        };
        *place = Some(conn);
        let handle = slot << 1;
        // The reply key first: a tuple that is its own reply (same address and port both
        // ways) is the original one.
        self.index.insert(
            Key {
                zone: conn.zone,
                tuple: conn.original.reply(),
            },
            handle | 1,
        );
        self.index.insert(
            Key {
                zone: conn.zone,
                tuple: conn.original,
            },
            handle,
        );
        *self.zones.entry(conn.zone).or_insert(0) += 1;
        let o = conn.original;
        *self
            .pairs
            .entry(PairKey::new(conn.zone, o.src, o.dst, o.protocol))
            .or_insert(0) += 1;
        self.len += 1;
        self.next_expiry = self.next_expiry.min(conn.deadline);
        if is_closed(conn.tcp) {
            self.note_closed(place_index(slot), conn.zone, conn.original);
        }
    }

    /// Frees a slot's connection and its keys.
    fn remove_slot(&mut self, slot: usize) {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.changes = self.changes.wrapping_add(1);
        self.index.remove(&Key {
            zone: conn.zone,
            tuple: conn.original,
        });
        self.index.remove(&Key {
            zone: conn.zone,
            tuple: conn.original.reply(),
        });
        if let Some(n) = self.zones.get_mut(&conn.zone) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.zones.remove(&conn.zone);
            }
        }
        let o = conn.original;
        let pair = PairKey::new(conn.zone, o.src, o.dst, o.protocol);
        if let Some(n) = self.pairs.get_mut(&pair) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pairs.remove(&pair);
            }
        }
        if let Ok(slot) = u32::try_from(slot) {
            self.free.push(slot);
        }
        self.len = self.len.saturating_sub(1);
    }
}
