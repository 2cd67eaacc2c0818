//! Flow accounting: exact packet and byte counts per IPv4 flow (a network and a 5-tuple),
//! counted once in the cluster, where the traffic enters the switches: an IPv4 frame from a VM
//! or host port of this switch, after the port's own checks (port security, its firewall).
//! Frames from the trunk or the uplink are another host's (or the physical network's) and are
//! not counted again; the edge counts what comes in from outside through a router's uplink
//! with [`FlowTable::count`] and [`FlowMark::north_south`].
//!
//! The routing stage says what it did with a packet in a [`FlowMark`]: the router that routed
//! it, and whether its route leaves through a router's uplink (north-south). The mark starts
//! east-west and unrouted; switched traffic keeps it so.
//!
//! The table is bounded ([`FlowTableSettings::max_entries`]): a packet of a new flow that finds it
//! full (after freeing flows idle for [`FlowTableSettings::idle_timeout`], at most once a second) is
//! counted in `untracked_packets` only. [`FlowTable::take`] hands out every flow's packets and
//! bytes since the previous take and resets them; a flow without packets in
//! [`IDLE_TAKES`] takes in a row, or idle for the timeout, leaves the table.
//!
//! Cost per counted packet: the IPv4 header and 4 bytes of the transport header read, a
//! comparison with the last counted flow, a few stores into its entry (one cache line); a
//! packet of another flow hashes its key and probes the index first (inserts a new flow). With
//! accounting off: one test of a flag.

use core::hash::{BuildHasher, Hash, Hasher};
use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::fast::RandomState;

use super::frame::L2;
use super::ids::{NetworkId, PortId, RouterId};
use crate::wire::ipv4::{self, protocol};
use crate::wire::EtherType;

/// Most flows a table may be told to hold.
pub const MAX_FLOW_ENTRIES: usize = 1 << 22;
/// Takes in a row without a packet after which a flow leaves the table.
pub const IDLE_TAKES: u32 = 2;
/// How often, at most, a full table is swept for idle flows before it refuses a new one.
const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// ICMP echo request and reply types: their identifier stands in for both ports.
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// The flow table's settings ([`super::ConfigCommand::SetFlowAccounting`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowTableSettings {
    /// Whether the switch counts flows at all (off: nothing is counted, the table is emptied).
    pub enabled: bool,
    /// Most flows in the table (at most [`MAX_FLOW_ENTRIES`]).
    pub max_entries: usize,
    /// A flow without a packet for this long leaves the table (taken or not).
    pub idle_timeout: Duration,
}

impl Default for FlowTableSettings {
    fn default() -> Self {
        FlowTableSettings {
            enabled: true,
            max_entries: 65_536,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Which way a flow goes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum FlowPath {
    /// Between two endpoints of the cluster's networks.
    #[default]
    EastWest,
    /// In or out through a router's uplink (or to the edge that has it).
    NorthSouth,
}

/// A flow: the network it entered on and its IPv4 5-tuple (ports 0 for protocols without
/// them and for fragments after the first; ICMP echo: the identifier as both ports).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct FlowKey {
    /// The network it entered on.
    pub network: NetworkId,
    /// Source address as sent.
    pub src: Ipv4Addr,
    /// Destination address as sent.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port, or 0.
    pub src_port: u16,
    /// Destination port, or 0.
    pub dst_port: u16,
}

impl Hash for FlowKey {
    /// Two words (the derived hash would feed the addresses as byte slices, field by field).
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let addrs = u64::from(u32::from(self.src)) << 32 | u64::from(u32::from(self.dst));
        let rest = u64::from(self.network.0) << 40
            ^ u64::from(self.protocol) << 32
            ^ u64::from(self.src_port) << 16
            ^ u64::from(self.dst_port);
        state.write_u64(addrs);
        state.write_u64(rest);
    }
}

/// One flow's traffic since the previous [`FlowTable::take`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowDelta {
    /// The flow.
    pub key: FlowKey,
    /// The port it entered through (its latest packet's).
    pub port: PortId,
    /// The router that routed it on this switch (its latest packet's), if routed here.
    pub router: Option<RouterId>,
    /// East-west or north-south (its latest packet's).
    pub path: FlowPath,
    /// Packets (a GSO frame counts as its segments).
    pub packets: u64,
    /// IP bytes: header and payload of every packet (of every segment of a GSO frame).
    pub bytes: u64,
}

/// What [`FlowTable::take`] hands out.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct FlowTake {
    /// The flows with packets since the previous take, in no particular order.
    pub flows: Vec<FlowDelta>,
    /// Flows in the table after the take.
    pub entries: usize,
    /// The table's bound.
    pub capacity: usize,
    /// Packets of flows the full table could not hold since the previous take.
    pub untracked_packets: u64,
    /// Time since the previous take; `None` for the first.
    pub interval: Option<Duration>,
}

/// What the routing stage did with a packet, for its flow: set by the routing stage (and by
/// the edge), read when the packet is counted. Starts east-west, not routed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) struct FlowMark {
    pub(super) router: Option<RouterId>,
    pub(super) path: FlowPath,
}

impl FlowMark {
    /// The packet was routed by `router` on this switch.
    pub(super) fn routed_by(&mut self, router: RouterId) {
        self.router = Some(router);
    }

    /// The packet's route goes out through a router's uplink, or it goes to the router's edge
    /// on another host in transit, or it came in from outside through the uplink: the edge
    /// stage calls this (see DESIGN.md, "Flow accounting").
    pub(super) fn north_south(&mut self) {
        self.path = FlowPath::NorthSouth;
    }
}

/// A flow's key packed in two words: the addresses; a marker bit, the network, the protocol
/// and the ports. The marker makes every packed key non-zero: the zero key is the empty
/// last-flow cache.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
struct Packed {
    addrs: u64,
    rest: u64,
}

const PACKED_MARKER: u64 = 1 << 63;
const PACKED_NETWORK_SHIFT: u32 = 40;
const _: () = assert!(NetworkId::MAX < 1 << (63 - PACKED_NETWORK_SHIFT));

impl Packed {
    #[inline]
    fn new(network: NetworkId, src: u32, dst: u32, protocol: u8, ports: (u16, u16)) -> Packed {
        Packed {
            addrs: u64::from(src) << 32 | u64::from(dst),
            rest: PACKED_MARKER
                | u64::from(network.0) << PACKED_NETWORK_SHIFT
                | u64::from(protocol) << 32
                | u64::from(ports.0) << 16
                | u64::from(ports.1),
        }
    }

    fn key(self) -> FlowKey {
        // The casts keep the bits packed by `new`.
        FlowKey {
            network: NetworkId(((self.rest & !PACKED_MARKER) >> PACKED_NETWORK_SHIFT) as u32),
            src: Ipv4Addr::from((self.addrs >> 32) as u32),
            dst: Ipv4Addr::from(self.addrs as u32),
            protocol: (self.rest >> 32) as u8,
            src_port: (self.rest >> 16) as u16,
            dst_port: self.rest as u16,
        }
    }
}

/// A flow's state in the table: one cache line, so counting a packet of a flow whose entry is
/// not cached costs one miss.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Entry {
    key: Packed,
    packets: u64,
    bytes: u64,
    last_seen: Duration,
    port: PortId,
    router: Option<RouterId>,
    path: FlowPath,
    /// Takes in a row that found no packets (at most [`IDLE_TAKES`]).
    idle_takes: u8,
}

const _: () = assert!(core::mem::size_of::<Entry>() == 64);
const _: () = assert!(IDLE_TAKES <= u8::MAX as u32);

/// Slots of the smallest index (a power of two).
const MIN_INDEX_SLOTS: usize = 16;
/// The part of an index slot that holds the entry's position plus one (0: empty slot); the
/// rest holds bits of the flow's hash that do not choose the slot (its top bits).
const SLOT_POSITION: u32 = (1 << 23) - 1;
const _: () = assert!(MAX_FLOW_ENTRIES <= SLOT_POSITION as usize);

/// A flow's index slot value: the part of its hash kept as a tag and its entry's position.
#[inline]
fn slot_value(hash: u64, at: usize) -> Option<u32> {
    let at = u32::try_from(at + 1)
        .ok()
        .filter(|&at| at <= SLOT_POSITION)?;
    Some(slot_tag(hash) | at)
}

/// The part of a flow's hash an index slot keeps.
#[inline]
fn slot_tag(hash: u64) -> u32 {
    (hash >> 32) as u32 & !SLOT_POSITION
}

/// The flow table of a switch: the flows' entries in a dense array, found through an index
/// with open addressing (linear probing, a power of two slots, at most half of them used),
/// each slot four bytes (the entry's position and 9 bits of its hash, so a probe reads an entry
/// only when those agree; a small index keeps more of itself in the cache). The last counted
/// flow is remembered with its position, so the packets of a train skip the hash and the index.
/// Nothing is allocated per packet: the arrays grow by doubling, and are rebuilt in place when
/// flows leave.
#[derive(Debug)]
pub(super) struct FlowTable {
    settings: FlowTableSettings,
    entries: Vec<Entry>,
    index: Vec<u32>,
    hasher: RandomState,
    /// The last counted flow and its entry's position; the zero key when none (emptied
    /// whenever entries leave or move).
    last: (Packed, usize),
    untracked: u64,
    last_take: Option<Duration>,
    last_sweep: Option<Duration>,
}

impl FlowTable {
    pub(super) fn new(settings: FlowTableSettings) -> FlowTable {
        FlowTable {
            settings,
            entries: Vec::new(),
            index: vec![0; MIN_INDEX_SLOTS],
            hasher: RandomState::default(),
            last: (Packed::default(), 0),
            untracked: 0,
            last_take: None,
            last_sweep: None,
        }
    }

    /// Whether flows are counted.
    #[inline]
    pub(super) fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub(super) fn settings(&self) -> FlowTableSettings {
        self.settings
    }

    /// Replaces the settings. Turning counting off empties the table and its untracked count;
    /// a lower bound keeps the flows beyond it until they leave (new ones are untracked).
    pub(super) fn set_settings(&mut self, settings: FlowTableSettings) {
        if !settings.enabled {
            self.entries = Vec::new();
            self.index = vec![0; MIN_INDEX_SLOTS];
            self.last = (Packed::default(), 0);
            self.untracked = 0;
        }
        self.settings = settings;
    }

    /// Flows in the table.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Counts an IPv4 packet (or GSO frame) in `l2`, which entered on `network` through
    /// `port`, with what the routing stage said of it. Anything else (other EtherTypes, a
    /// header that does not parse) is not counted. The caller checks [`FlowTable::enabled`].
    #[inline]
    pub(super) fn count(
        &mut self,
        now: Duration,
        network: NetworkId,
        port: PortId,
        l2: &L2<'_>,
        mark: FlowMark,
    ) {
        if let Some((key, packets, bytes)) = measure(network, l2) {
            self.count_key(now, key, port, mark, packets, bytes);
        }
    }

    /// Counts `packets` and `bytes` (IP bytes) of a flow the kernel's fast path carried:
    /// `network` and its 5-tuple, from `port`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn count_tuple(
        &mut self,
        now: Duration,
        network: NetworkId,
        (src, dst, protocol): (Ipv4Addr, Ipv4Addr, u8),
        ports: (u16, u16),
        port: PortId,
        mark: FlowMark,
        (packets, bytes): (u64, u64),
    ) {
        let key = Packed::new(network, u32::from(src), u32::from(dst), protocol, ports);
        self.count_key(now, key, port, mark, packets, bytes);
    }

    /// Counts `packets` and `bytes` of the flow `key`.
    #[inline]
    fn count_key(
        &mut self,
        now: Duration,
        key: Packed,
        port: PortId,
        mark: FlowMark,
        packets: u64,
        bytes: u64,
    ) {
        let at = if self.last.0 == key {
            self.last.1
        } else {
            match self.find_or_insert(now, key) {
                Some(at) => at,
                None => {
                    self.untracked += packets;
                    return;
                }
            }
        };
        // The cache and the index only hold positions of entries.
        let Some(entry) = self.entries.get_mut(at) else {
            return;
        };
        entry.port = port;
        entry.router = mark.router;
        entry.path = mark.path;
        entry.packets += packets;
        entry.bytes += bytes;
        entry.last_seen = now;
        entry.idle_takes = 0;
    }

    /// The position of `key`'s entry, a new one if it has none and there is room (see
    /// [`FlowTable::make_room`]); remembered as the last flow.
    #[inline(never)]
    fn find_or_insert(&mut self, now: Duration, key: Packed) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let at = match self.find(hash, key) {
            Ok(at) => at,
            Err(slot) => {
                let mut slot = slot?;
                if self.entries.len() >= self.settings.max_entries {
                    if !self.make_room(now) {
                        return None;
                    }
                    // The index was rebuilt if flows left.
                    slot = self.find(hash, key).err().flatten()?;
                }
                if (self.entries.len() + 1) * 2 > self.index.len() {
                    self.rebuild_index(self.index.len() * 2);
                    slot = self.find(hash, key).err().flatten()?;
                }
                let at = self.entries.len();
                let value = slot_value(hash, at)?;
                self.entries.push(Entry {
                    key,
                    packets: 0,
                    bytes: 0,
                    last_seen: now,
                    port: PortId(0),
                    router: None,
                    path: FlowPath::EastWest,
                    idle_takes: 0,
                });
                *self.index.get_mut(slot)? = value;
                at
            }
        };
        self.last = (key, at);
        Some(at)
    }

    /// The position of `key`'s entry (`Ok`), or the empty index slot where it would go (`Err`;
    /// never `None`: at most half the slots are used).
    #[inline]
    fn find(&self, hash: u64, key: Packed) -> Result<usize, Option<usize>> {
        let mask = self.index.len().wrapping_sub(1);
        let tag = slot_tag(hash);
        let mut slot = hash as usize & mask;
        for _ in 0..self.index.len() {
            let value = *self.index.get(slot).ok_or(None)?;
            if value == 0 {
                return Err(Some(slot));
            }
            if value & !SLOT_POSITION == tag {
                let at = (value & SLOT_POSITION) as usize;
                let at = at.wrapping_sub(1);
                if self.entries.get(at).is_some_and(|e| e.key == key) {
                    return Ok(at);
                }
            }
            slot = (slot + 1) & mask;
        }
        Err(None)
    }

    /// Makes the index `slots` long (a power of two, more than twice the entries) and indexes
    /// every entry again; forgets the last flow.
    fn rebuild_index(&mut self, slots: usize) {
        debug_assert!(slots.is_power_of_two() && slots >= self.entries.len() * 2);
        if self.index.len() == slots {
            self.index.fill(0);
        } else {
            self.index = vec![0; slots];
        }
        let mask = slots - 1;
        for (at, entry) in self.entries.iter().enumerate() {
            let hash = self.hasher.hash_one(entry.key);
            let mut slot = hash as usize & mask;
            // At most half the slots are used: the probe ends at an empty one.
            for _ in 0..slots {
                match self.index.get_mut(slot) {
                    Some(value) if *value == 0 => {
                        // Entries are at most `MAX_FLOW_ENTRIES`: every position has a value.
                        *value = slot_value(hash, at).unwrap_or_default();
                        break;
                    }
                    _ => slot = (slot + 1) & mask,
                }
            }
        }
        self.last = (Packed::default(), 0);
    }

    /// Keeps the entries `keep` says to keep (in order); indexes them again if any left.
    fn retain(&mut self, keep: impl FnMut(&mut Entry) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(keep);
        if self.entries.len() != before {
            self.rebuild_index(self.index.len());
        }
    }

    /// Frees idle flows for a new one, at most once every [`FULL_SWEEP_INTERVAL`]; whether
    /// there is room now.
    #[cold]
    fn make_room(&mut self, now: Duration) -> bool {
        let due = self
            .last_sweep
            .is_none_or(|at| now.saturating_sub(at) >= FULL_SWEEP_INTERVAL);
        if due {
            self.last_sweep = Some(now);
            self.expire(now);
        }
        self.entries.len() < self.settings.max_entries
    }

    /// Removes flows idle for the timeout (their untaken counts with them); returns how many.
    pub(super) fn expire(&mut self, now: Duration) -> usize {
        let before = self.entries.len();
        let timeout = self.settings.idle_timeout;
        self.retain(|e| now.saturating_sub(e.last_seen) < timeout);
        before - self.entries.len()
    }

    /// Every flow's packets and bytes since the previous take (flows with packets only), reset
    /// to zero; flows without packets in [`IDLE_TAKES`] takes in a row, or idle for the
    /// timeout, leave the table.
    pub(super) fn take(&mut self, now: Duration) -> FlowTake {
        let timeout = self.settings.idle_timeout;
        let mut flows = Vec::new();
        self.retain(|e| {
            if e.packets > 0 {
                flows.push(FlowDelta {
                    key: e.key.key(),
                    port: e.port,
                    router: e.router,
                    path: e.path,
                    packets: e.packets,
                    bytes: e.bytes,
                });
                e.packets = 0;
                e.bytes = 0;
                e.idle_takes = 0;
                return true;
            }
            e.idle_takes = e.idle_takes.saturating_add(1);
            u32::from(e.idle_takes) < IDLE_TAKES && now.saturating_sub(e.last_seen) < timeout
        });
        let interval = self.last_take.map(|at| now.saturating_sub(at));
        self.last_take = Some(now);
        FlowTake {
            flows,
            entries: self.entries.len(),
            capacity: self.settings.max_entries,
            untracked_packets: core::mem::take(&mut self.untracked),
            interval,
        }
    }
}

/// A frame's flow, packets and IP bytes: `None` for what is not IPv4.
#[inline]
fn measure(network: NetworkId, l2: &L2<'_>) -> Option<(Packed, u64, u64)> {
    if l2.ethertype != EtherType::IPV4 {
        return None;
    }
    // Classification checked the header (version, lengths, checksum).
    let ip = ipv4::Packet::new_unchecked(l2.payload);
    let proto = ip.protocol();
    let (src_port, dst_port) = if ip.frag_offset() != 0 {
        (0, 0)
    } else {
        let l4 = l2
            .payload
            .get(usize::from(ip.header_len())..)
            .unwrap_or(&[]);
        transport_ports(proto, l4)
    };
    let key = Packed::new(
        network,
        u32::from(ip.src_addr()),
        u32::from(ip.dst_addr()),
        proto,
        (src_port, dst_port),
    );
    let (packets, bytes) = if l2.offload.gso.is_none() {
        (1, u64::from(ip.total_len()))
    } else {
        segments(l2)?
    };
    Some((key, packets, bytes))
}

/// The packets and IP bytes of a GSO frame's segments.
#[cold]
fn segments(l2: &L2<'_>) -> Option<(u64, u64)> {
    match l2.segmenter() {
        None => None,
        Some(Ok(segmenter)) => {
            let count = segmenter.count();
            let bytes: usize = (0..count).map(|i| segmenter.segment_len(i)).sum();
            Some((count as u64, bytes as u64))
        }
        // Checked at classification: never here.
        Some(Err(_)) => None,
    }
}

/// The ports of a transport header: TCP and UDP (and SCTP, UDP-Lite, DCCP, which start the
/// same way) their ports; ICMP echo its identifier as both; anything else, or a header too
/// short to read, 0 and 0.
#[inline]
fn transport_ports(proto: u8, l4: &[u8]) -> (u16, u16) {
    let be = |at: usize| {
        l4.get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, u16::from_be_bytes)
    };
    match proto {
        protocol::TCP | protocol::UDP | PROTO_DCCP | PROTO_SCTP | PROTO_UDPLITE
            if l4.len() >= 4 =>
        {
            (be(0), be(2))
        }
        protocol::ICMP if l4.len() >= 8 => match l4.first() {
            Some(&ICMP_ECHO_REQUEST | &ICMP_ECHO_REPLY) => {
                let ident = be(4);
                (ident, ident)
            }
            _ => (0, 0),
        },
        _ => (0, 0),
    }
}

const PROTO_DCCP: u8 = 33;
const PROTO_SCTP: u8 = 132;
const PROTO_UDPLITE: u8 = 136;

#[cfg(test)]
mod tests;
