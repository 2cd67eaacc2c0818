//! The firewall stage of the datapath: a VM or host port's security-group rules
//! ([`super::firewall::rules`]) and the switch's connection table
//! ([`super::firewall::conntrack`], one zone per port) applied to the IPv4 packets that go
//! through the port, and the rate-limited log of the packets they drop.
//!
//! The switch calls [`Firewall::egress`] for a frame from a firewalled port (after port
//! security, before learning) and [`Firewall::ingress`] for every copy it delivers to one.
//! A packet of a known connection passes; the first packet of a new connection is classified
//! by the port's rules (deny overrides allow; no match: egress allow, ingress deny) and, when
//! allowed, creates its connection.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::VecDeque;

use super::counters::DropReason;
use super::firewall::conntrack::{
    ConnEntry, Conntrack, ConntrackConfig, ConntrackCounters, ConntrackFull, Fragment, Icmp,
    PacketError, PacketInfo, Side, TcpFlags, Tracked, L4,
};
use super::firewall::rules::{
    Direction, FirewallRule, FirewallRuleError, FirewallVerdict, RuleSet,
};
use super::ids::PortId;
use super::policy::{StormBucket, StormControl};
use crate::wire::ipv4;

/// Most records the firewall drop log keeps until [`super::Switch::take_firewall_log`]; a
/// record beyond it replaces the oldest.
pub const FIREWALL_LOG_CAPACITY: usize = 256;
/// Most records the firewall drop log admits per second (and at once after a quiet second);
/// further drops are counted as suppressed.
pub const FIREWALL_LOG_RATE: u32 = 100;

/// A packet the firewall dropped, as the drop log keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FirewallDrop {
    /// The firewalled port.
    pub port: PortId,
    /// From the port's VM (egress) or to it (ingress).
    pub direction: Direction,
    /// The IP protocol number.
    pub protocol: u8,
    /// The packet's source address.
    pub src: Ipv4Addr,
    /// The packet's destination address.
    pub dst: Ipv4Addr,
    /// The TCP or UDP source port; `None` for other protocols and later fragments.
    pub src_port: Option<u16>,
    /// The TCP or UDP destination port; `None` for other protocols and later fragments.
    pub dst_port: Option<u16>,
    /// Why: `firewall_denied`, `firewall_default_deny`, `conntrack_invalid` or
    /// `conntrack_full`.
    pub reason: DropReason,
    /// The deny rule's index for `firewall_denied`; the allowing rule's for `conntrack_full`,
    /// if a rule allowed the packet.
    pub rule: Option<usize>,
}

/// Counters of the firewall drop log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FirewallLogCounters {
    /// Records admitted into the log.
    pub logged: u64,
    /// Drops not recorded: over [`FIREWALL_LOG_RATE`].
    pub suppressed: u64,
    /// Records replaced by newer ones before they were taken (the log held
    /// [`FIREWALL_LOG_CAPACITY`]).
    pub overwritten: u64,
}

/// A port's compiled rules and how many first packets each rule decided.
#[derive(Debug)]
pub(crate) struct PortFirewall {
    rules: RuleSet,
    hits: Vec<u64>,
}

impl PortFirewall {
    /// Compiles a port's rules; the hit counters start at zero.
    pub(crate) fn compile(rules: &[FirewallRule]) -> Result<PortFirewall, FirewallRuleError> {
        let rules = RuleSet::compile(rules)?;
        let hits = vec![0; rules.len()];
        Ok(PortFirewall { rules, hits })
    }

    /// The rules, as given.
    pub(crate) fn rules(&self) -> &[FirewallRule] {
        self.rules.rules()
    }

    /// Hits per rule index.
    pub(crate) fn hits(&self) -> &[u64] {
        &self.hits
    }

    /// Classifies a first packet and counts the deciding rule's hit.
    fn evaluate(&mut self, direction: Direction, info: &PacketInfo) -> FirewallVerdict {
        let remote = match direction {
            Direction::Ingress => info.src,
            Direction::Egress => info.dst,
        };
        let verdict = self.rules.evaluate(
            direction,
            info.protocol,
            remote,
            ports(info).map(|(_, d)| d),
        );
        if let Some(hits) = verdict.rule().and_then(|r| self.hits.get_mut(r)) {
            *hits += 1;
        }
        verdict
    }
}

/// The TCP or UDP ports of a packet.
fn ports(info: &PacketInfo) -> Option<(u16, u16)> {
    match info.l4 {
        L4::Tcp {
            src_port, dst_port, ..
        }
        | L4::Udp { src_port, dst_port } => Some((src_port, dst_port)),
        L4::Icmp(_) | L4::Other => None,
    }
}

/// A parsed packet, or what the IPv4 header says of one whose transport header is malformed.
pub(crate) type Parsed = Result<PacketInfo, PacketError>;

/// The switch's firewall state: the connection table of every firewalled port and the drop
/// log.
#[derive(Debug)]
pub(crate) struct Firewall {
    conntrack: Conntrack,
    /// Since [`Firewall::begin_frame`]: a packet was checked that was not of an established
    /// connection (the first of one, an ICMP error, a drop).
    not_established: bool,
    log: VecDeque<FirewallDrop>,
    bucket: StormBucket,
    log_counters: FirewallLogCounters,
}

impl Firewall {
    /// An empty table with these limits.
    pub(crate) fn new(max_entries: usize, zone_max_entries: usize) -> Firewall {
        Firewall {
            not_established: false,
            conntrack: Conntrack::new(ConntrackConfig {
                max_entries,
                zone_max_entries: Some(zone_max_entries),
                ..ConntrackConfig::default()
            }),
            log: VecDeque::new(),
            bucket: StormBucket::new(StormControl {
                frames_per_sec: FIREWALL_LOG_RATE,
                burst: FIREWALL_LOG_RATE,
            }),
            log_counters: FirewallLogCounters::default(),
        }
    }

    /// Changes the table's limits (connections beyond them stay until they end).
    pub(crate) fn set_limits(&mut self, max_entries: usize, zone_max_entries: usize) {
        self.conntrack
            .set_limits(max_entries, Some(zone_max_entries));
    }

    /// The zone of a port.
    fn zone(port: PortId) -> u32 {
        port.0
    }

    /// Checks an IPv4 packet the VM of `port` sends (`ipv4`: from its IP header).
    pub(crate) fn egress(
        &mut self,
        port: PortId,
        pf: &mut PortFirewall,
        ipv4: &[u8],
        now: Duration,
    ) -> Result<(), DropReason> {
        let parsed = PacketInfo::parse(ipv4);
        self.check(port, pf, Direction::Egress, ipv4, &parsed, now)
    }

    /// Checks an IPv4 packet delivered to `port` (`parsed` from `ipv4`, parsed once for every
    /// copy of the frame).
    pub(crate) fn ingress(
        &mut self,
        port: PortId,
        pf: &mut PortFirewall,
        ipv4: &[u8],
        parsed: &Parsed,
        now: Duration,
    ) -> Result<(), DropReason> {
        self.check(port, pf, Direction::Ingress, ipv4, parsed, now)
    }

    fn check(
        &mut self,
        port: PortId,
        pf: &mut PortFirewall,
        direction: Direction,
        ipv4: &[u8],
        parsed: &Parsed,
        now: Duration,
    ) -> Result<(), DropReason> {
        let Ok(info) = parsed else {
            // The IPv4 header was validated at classification; the transport header is
            // malformed.
            let packet = ipv4::Packet::new_unchecked(ipv4);
            let drop = FirewallDrop {
                port,
                direction,
                protocol: packet.protocol(),
                src: packet.src_addr(),
                dst: packet.dst_addr(),
                src_port: None,
                dst_port: None,
                reason: DropReason::ConntrackInvalid,
                rule: None,
            };
            return Err(self.refuse(drop, now));
        };
        let side = match direction {
            Direction::Egress => Side::FromVm,
            Direction::Ingress => Side::ToVm,
        };
        let zone = Firewall::zone(port);
        let tracked = self.conntrack.track(zone, side, info, now);
        if !matches!(tracked, Tracked::Established { .. }) {
            self.not_established = true;
        }
        let (reason, rule) = match tracked {
            Tracked::Established { .. } | Tracked::Related => return Ok(()),
            Tracked::Invalid(_) => (DropReason::ConntrackInvalid, None),
            Tracked::New => match (pf.evaluate(direction, info), direction) {
                (FirewallVerdict::Deny { rule }, _) => (DropReason::FirewallDenied, Some(rule)),
                (FirewallVerdict::NoMatch, Direction::Ingress) => {
                    (DropReason::FirewallDefaultDeny, None)
                }
                (verdict, _) => match self.conntrack.commit(zone, side, info, now) {
                    Ok(()) => return Ok(()),
                    Err(_) => (DropReason::ConntrackFull, verdict.rule()),
                },
            },
        };
        let (src_port, dst_port) = ports(info).unzip();
        let drop = FirewallDrop {
            port,
            direction,
            protocol: info.protocol,
            src: info.src,
            dst: info.dst,
            src_port,
            dst_port,
            reason,
            rule,
        };
        Err(self.refuse(drop, now))
    }

    /// Starts watching a frame's checks (see [`Firewall::all_established`]).
    pub(crate) fn begin_frame(&mut self) {
        self.not_established = false;
    }

    /// Every packet checked since [`Firewall::begin_frame`] was of an established connection.
    pub(crate) fn all_established(&self) -> bool {
        !self.not_established
    }

    /// Connections removed and TCP states changed, so far.
    pub(crate) fn changes(&self) -> u64 {
        self.conntrack.changes()
    }

    /// Keeps the connection of packets the kernel's fast path forwarded alive, as a packet
    /// of it through `port` going `direction` would (a TCP one an acknowledgement): `tuple`
    /// is the source, destination, protocol, and the ports (an ICMP echo: its identifier and
    /// its type and code).
    pub(crate) fn touch(
        &mut self,
        port: PortId,
        direction: Direction,
        (src, dst, protocol): (Ipv4Addr, Ipv4Addr, u8),
        (src_port, dst_port): (u16, u16),
        now: Duration,
    ) {
        let l4 = match protocol {
            6 => L4::Tcp {
                src_port,
                dst_port,
                flags: TcpFlags::ACK,
            },
            17 => L4::Udp { src_port, dst_port },
            1 => {
                let [ty, code] = dst_port.to_be_bytes();
                L4::Icmp(Icmp::Query {
                    ty,
                    code,
                    id: src_port,
                })
            }
            _ => return,
        };
        let info = PacketInfo {
            src,
            dst,
            protocol,
            fragment: Fragment::Whole,
            l4,
        };
        let side = match direction {
            Direction::Egress => Side::FromVm,
            Direction::Ingress => Side::ToVm,
        };
        let _ = self.conntrack.track(Firewall::zone(port), side, &info, now);
    }

    /// Records a drop in the log, within its rate; returns its reason.
    fn refuse(&mut self, drop: FirewallDrop, now: Duration) -> DropReason {
        if !self.bucket.take(now) {
            self.log_counters.suppressed += 1;
            return drop.reason;
        }
        if self.log.len() >= FIREWALL_LOG_CAPACITY {
            self.log.pop_front();
            self.log_counters.overwritten += 1;
        }
        if self.log.capacity() == 0 {
            self.log.reserve_exact(FIREWALL_LOG_CAPACITY);
        }
        self.log.push_back(drop);
        self.log_counters.logged += 1;
        drop.reason
    }

    /// Takes the log's records, oldest first.
    pub(crate) fn take_log(&mut self) -> Vec<FirewallDrop> {
        self.log.drain(..).collect()
    }

    /// The log's counters.
    pub(crate) fn log_counters(&self) -> FirewallLogCounters {
        self.log_counters
    }

    /// The connection table's counters.
    pub(crate) fn counters(&self) -> ConntrackCounters {
        self.conntrack.counters()
    }

    /// Connections of a port (expired ones not yet freed included).
    pub(crate) fn connections(&self, port: PortId) -> usize {
        self.conntrack.zone_len(Firewall::zone(port))
    }

    /// Frees expired connections; returns how many.
    pub(crate) fn expire(&mut self, now: Duration) -> usize {
        self.conntrack.expire(now)
    }

    /// Removes a port's connections.
    pub(crate) fn remove_port(&mut self, port: PortId) {
        self.conntrack.remove_zone(Firewall::zone(port));
    }

    /// A port's live connections with their lifetime left at `now`.
    pub(crate) fn export(&self, port: PortId, now: Duration) -> Vec<ConnEntry> {
        self.conntrack.export(Firewall::zone(port), now)
    }

    /// Puts connections exported elsewhere into a port's zone; see [`Conntrack::import`].
    pub(crate) fn import(
        &mut self,
        port: PortId,
        entries: &[ConnEntry],
        now: Duration,
    ) -> Result<usize, ConntrackFull> {
        self.conntrack.import(Firewall::zone(port), entries, now)
    }
}
