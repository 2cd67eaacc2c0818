//! The NAT session table: one session per translated inner endpoint of source NAT (router,
//! protocol, inner address and port or ICMP identifier) and the outer port it was given,
//! endpoint-independent (RFC 4787: the same outer port whatever the destination, and replies
//! from any remote address and port come back to it). Outer ports are allocated per router and
//! protocol from a bitmap (the inner port when it is free, else the next free one in
//! [`PORT_FIRST`]..=65535); sessions expire after their protocol's timeout without traffic,
//! refreshed by packets both ways. Bounded: a full table is swept for expired sessions at most
//! once a second, then refuses.

use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::HashMap;

use crate::datapath::ids::RouterId;
use crate::wire::ipv4::protocol;

/// Lifetime of an idle TCP session (RFC 5382: at least 2 hours 4 minutes).
pub const TCP_TIMEOUT: Duration = Duration::from_secs(7440);
/// Lifetime of a TCP session after a FIN each way, or an RST.
pub const TCP_CLOSING_TIMEOUT: Duration = Duration::from_secs(120);
/// Lifetime of an idle UDP session (RFC 4787 asks for at least 2 minutes).
pub const UDP_TIMEOUT: Duration = Duration::from_secs(300);
/// Lifetime of an idle ICMP echo session.
pub const ICMP_TIMEOUT: Duration = Duration::from_secs(30);
/// The first outer port (or identifier) given when the inner one is taken.
pub const PORT_FIRST: u16 = 1024;
/// How often at most a full table (or a router's exhausted ports) is swept for expired
/// sessions before a new one is refused.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// Why no session could be made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NoSession {
    /// The table holds its maximum of live sessions.
    TableFull,
    /// Every outer port of the router and protocol is taken.
    PortsExhausted,
}

/// Which way a packet of a session goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Way {
    /// From the inside, translated on its way out.
    Out,
    /// From outside, translated back.
    In,
}

/// One translation.
#[derive(Clone, Copy, Debug)]
struct Session {
    router: RouterId,
    protocol: u8,
    inner: Ipv4Addr,
    inner_port: u16,
    outer_port: u16,
    last: Duration,
    fin_out: bool,
    fin_in: bool,
    reset: bool,
}

impl Session {
    fn timeout(&self) -> Duration {
        match self.protocol {
            protocol::TCP if self.reset || (self.fin_out && self.fin_in) => TCP_CLOSING_TIMEOUT,
            protocol::TCP => TCP_TIMEOUT,
            protocol::UDP => UDP_TIMEOUT,
            _ => ICMP_TIMEOUT,
        }
    }

    fn expired(&self, now: Duration) -> bool {
        now.saturating_sub(self.last) >= self.timeout()
    }

    fn touch(&mut self, way: Way, tcp_flags: u8, now: Duration) {
        self.last = self.last.max(now);
        if self.protocol == protocol::TCP {
            if tcp_flags & TCP_RST != 0 {
                self.reset = true;
            }
            if tcp_flags & TCP_FIN != 0 {
                match way {
                    Way::Out => self.fin_out = true,
                    Way::In => self.fin_in = true,
                }
            }
        }
    }
}

/// The outer ports of one router and protocol: a bit per port.
#[derive(Debug)]
struct PortPool {
    used: Box<[u64; 1024]>,
    /// Ports taken in `PORT_FIRST..=65535`.
    taken_high: usize,
    /// Where the search for a free port starts (word index).
    cursor: usize,
}

const HIGH_PORTS: usize = 65536 - PORT_FIRST as usize;

impl PortPool {
    fn new() -> PortPool {
        PortPool {
            used: Box::new([0; 1024]),
            taken_high: 0,
            cursor: usize::from(PORT_FIRST) / 64,
        }
    }

    fn is_used(&self, port: u16) -> bool {
        let p = usize::from(port);
        self.used
            .get(p / 64)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    fn set(&mut self, port: u16, used: bool) {
        let p = usize::from(port);
        if let Some(w) = self.used.get_mut(p / 64) {
            if used {
                *w |= 1 << (p % 64);
            } else {
                *w &= !(1 << (p % 64));
            }
        }
        if port >= PORT_FIRST {
            if used {
                self.taken_high += 1;
            } else {
                self.taken_high = self.taken_high.saturating_sub(1);
            }
        }
    }

    /// `preferred` if free, else a free port of `PORT_FIRST..=65535`; marked used.
    fn take(&mut self, preferred: u16) -> Option<u16> {
        if !self.is_used(preferred) {
            self.set(preferred, true);
            return Some(preferred);
        }
        if self.taken_high >= HIGH_PORTS {
            return None;
        }
        let first = usize::from(PORT_FIRST) / 64;
        let words = 1024 - first;
        for step in 0..=words {
            let index = first + (self.cursor - first + step) % words;
            let word = self.used.get(index).copied().unwrap_or(u64::MAX);
            if word != u64::MAX {
                let bit = (!word).trailing_zeros() as usize;
                let port = u16::try_from(index * 64 + bit).ok()?;
                if port < PORT_FIRST {
                    continue;
                }
                self.cursor = index;
                self.set(port, true);
                return Some(port);
            }
        }
        None
    }
}

/// Session counts of one router.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct SessionStats {
    /// Sessions in the table (live or expired and not yet freed).
    pub(crate) sessions: u64,
    /// Sessions made.
    pub(crate) created: u64,
    /// Sessions freed after their timeout.
    pub(crate) expired: u64,
}

/// The sessions of every router of the switch.
#[derive(Debug)]
pub(crate) struct NatTable {
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    /// (router, protocol, inner address, inner port) to slot.
    by_inner: HashMap<(RouterId, u8, Ipv4Addr, u16), u32>,
    /// (router, protocol, outer port) to slot.
    by_outer: HashMap<(RouterId, u8, u16), u32>,
    pools: HashMap<(RouterId, u8), PortPool>,
    stats: HashMap<RouterId, SessionStats>,
    len: usize,
    max: usize,
    last_sweep: Option<Duration>,
}

impl NatTable {
    /// An empty table of at most `max` sessions.
    pub(crate) fn new(max: usize) -> NatTable {
        NatTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_inner: HashMap::default(),
            by_outer: HashMap::default(),
            pools: HashMap::default(),
            stats: HashMap::default(),
            len: 0,
            max,
            last_sweep: None,
        }
    }

    /// Changes the maximum (sessions beyond it stay until they expire).
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Sessions in the table.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A router's session counts.
    pub(crate) fn stats(&self, router: RouterId) -> SessionStats {
        self.stats.get(&router).copied().unwrap_or_default()
    }

    /// The outer port of the inner endpoint's session, made if there is none (or the one there
    /// expired), refreshed by this outbound packet.
    pub(crate) fn outbound(
        &mut self,
        router: RouterId,
        proto: u8,
        inner: Ipv4Addr,
        inner_port: u16,
        tcp_flags: u8,
        now: Duration,
    ) -> Result<u16, NoSession> {
        let key = (router, proto, inner, inner_port);
        if let Some(&slot) = self.by_inner.get(&key) {
            let live = self.session_mut(slot).filter(|s| !s.expired(now)).map(|s| {
                s.touch(Way::Out, tcp_flags, now);
                s.outer_port
            });
            if let Some(port) = live {
                return Ok(port);
            }
            self.free_slot(slot, true);
        }
        if self.len >= self.max {
            self.sweep(now);
            if self.len >= self.max {
                return Err(NoSession::TableFull);
            }
        }
        let port = match self.take_port(router, proto, inner_port) {
            Some(p) => p,
            None => {
                self.sweep(now);
                self.take_port(router, proto, inner_port)
                    .ok_or(NoSession::PortsExhausted)?
            }
        };
        let mut session = Session {
            router,
            protocol: proto,
            inner,
            inner_port,
            outer_port: port,
            last: now,
            fin_out: false,
            fin_in: false,
            reset: false,
        };
        session.touch(Way::Out, tcp_flags, now);
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(e) = self.slots.get_mut(s as usize) {
                    *e = Some(session);
                }
                s
            }
            None => {
                self.slots.push(Some(session));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.by_inner.insert(key, slot);
        self.by_outer.insert((router, proto, port), slot);
        self.len += 1;
        let stats = self.stats.entry(router).or_default();
        stats.sessions += 1;
        stats.created += 1;
        Ok(port)
    }

    /// The inner endpoint of the live session with this outer port, refreshed by this inbound
    /// packet (`touch`: false for a packet that only refers to the session, an ICMP error).
    pub(crate) fn inbound(
        &mut self,
        router: RouterId,
        proto: u8,
        outer_port: u16,
        tcp_flags: u8,
        now: Duration,
        touch: bool,
    ) -> Option<(Ipv4Addr, u16)> {
        let slot = *self.by_outer.get(&(router, proto, outer_port))?;
        let s = self.session_mut(slot).filter(|s| !s.expired(now))?;
        if touch {
            s.touch(Way::In, tcp_flags, now);
        }
        Some((s.inner, s.inner_port))
    }

    /// Frees expired sessions; returns how many.
    pub(crate) fn expire(&mut self, now: Duration) -> usize {
        let expired: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.expired(now)))
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        for &slot in &expired {
            self.free_slot(slot, true);
        }
        expired.len()
    }

    /// Frees every session of a router (its uplink went or changed); returns how many.
    pub(crate) fn remove_router(&mut self, router: RouterId) -> usize {
        let gone: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.router == router))
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        for &slot in &gone {
            self.free_slot(slot, false);
        }
        self.pools.retain(|(r, _), _| *r != router);
        gone.len()
    }

    /// Frees expired sessions, at most once per [`SWEEP_INTERVAL`].
    fn sweep(&mut self, now: Duration) {
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_sub(t) >= SWEEP_INTERVAL)
        {
            self.last_sweep = Some(now);
            self.expire(now);
        }
    }

    fn take_port(&mut self, router: RouterId, proto: u8, preferred: u16) -> Option<u16> {
        self.pools
            .entry((router, proto))
            .or_insert_with(PortPool::new)
            .take(preferred)
    }

    fn session_mut(&mut self, slot: u32) -> Option<&mut Session> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    fn free_slot(&mut self, slot: u32, expired: bool) {
        let Some(s) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.by_inner
            .remove(&(s.router, s.protocol, s.inner, s.inner_port));
        self.by_outer.remove(&(s.router, s.protocol, s.outer_port));
        if let Some(pool) = self.pools.get_mut(&(s.router, s.protocol)) {
            pool.set(s.outer_port, false);
        }
        self.free.push(slot);
        self.len -= 1;
        let stats = self.stats.entry(s.router).or_default();
        stats.sessions = stats.sessions.saturating_sub(1);
        if expired {
            stats.expired += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RouterId = RouterId(1);
    const T: Duration = Duration::from_secs(100);

    fn a(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 1, 0, last)
    }

    #[test]
    fn ports_are_kept_when_free_and_chosen_otherwise() {
        let mut t = NatTable::new(10);
        assert_eq!(t.outbound(R, protocol::UDP, a(5), 4000, 0, T), Ok(4000));
        // The same endpoint keeps its port, whatever the destination.
        assert_eq!(t.outbound(R, protocol::UDP, a(5), 4000, 0, T), Ok(4000));
        // Another inner endpoint with the same port gets another one, from 1024 up.
        let other = t.outbound(R, protocol::UDP, a(6), 4000, 0, T).unwrap();
        assert!(other >= PORT_FIRST && other != 4000);
        // Another protocol has its own ports.
        assert_eq!(t.outbound(R, protocol::TCP, a(6), 4000, 0, T), Ok(4000));
        assert_eq!(
            t.inbound(R, protocol::UDP, other, 0, T, true),
            Some((a(6), 4000))
        );
        assert_eq!(t.inbound(R, protocol::UDP, 9, 0, T, true), None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats(R).created, 3);
    }

    #[test]
    fn sessions_expire_by_protocol_and_tcp_state() {
        let mut t = NatTable::new(10);
        t.outbound(R, protocol::UDP, a(5), 1, 0, T).unwrap();
        t.outbound(R, protocol::ICMP, a(5), 1, 0, T).unwrap();
        t.outbound(R, protocol::TCP, a(5), 1, 0x02, T).unwrap();
        t.outbound(R, protocol::TCP, a(5), 2, 0x02, T).unwrap();
        // FIN both ways on one connection, RST on none.
        t.outbound(R, protocol::TCP, a(5), 1, 0x11, T).unwrap();
        assert!(t.inbound(R, protocol::TCP, 1, 0x11, T, true).is_some());
        // An RST from outside on a third.
        t.outbound(R, protocol::TCP, a(6), 3, 0x02, T).unwrap();
        assert!(t.inbound(R, protocol::TCP, 3, 0x14, T, true).is_some());
        assert_eq!(t.expire(T + ICMP_TIMEOUT), 1);
        assert_eq!(t.expire(T + TCP_CLOSING_TIMEOUT), 2);
        assert_eq!(t.expire(T + UDP_TIMEOUT), 1);
        assert!(t
            .inbound(
                R,
                protocol::TCP,
                2,
                0,
                T + TCP_TIMEOUT - Duration::from_secs(1),
                false
            )
            .is_some());
        assert_eq!(t.expire(T + TCP_TIMEOUT), 1);
        assert_eq!(t.len(), 0);
        assert_eq!(t.stats(R).expired, 5);
        // Ports are free again.
        assert_eq!(
            t.outbound(R, protocol::UDP, a(9), 1, 0, T + TCP_TIMEOUT),
            Ok(1)
        );
    }

    #[test]
    fn a_full_table_and_exhausted_ports_refuse() {
        let mut t = NatTable::new(2);
        t.outbound(R, protocol::UDP, a(1), 1, 0, T).unwrap();
        t.outbound(R, protocol::UDP, a(2), 1, 0, T).unwrap();
        assert_eq!(
            t.outbound(R, protocol::UDP, a(3), 1, 0, T),
            Err(NoSession::TableFull)
        );
        // Once the others expired there is room.
        assert!(t
            .outbound(R, protocol::UDP, a(3), 1, 0, T + UDP_TIMEOUT)
            .is_ok());
        let mut t = NatTable::new(100_000);
        for i in 0..=HIGH_PORTS {
            let inner = Ipv4Addr::from(0x0a00_0000 + i as u32);
            assert!(t.outbound(R, protocol::UDP, inner, 80, 0, T).is_ok(), "{i}");
        }
        // 80 and every port from 1024: all taken.
        assert_eq!(
            t.outbound(R, protocol::UDP, a(200), 80, 0, T),
            Err(NoSession::PortsExhausted)
        );
        // A free low port is still kept.
        assert_eq!(t.outbound(R, protocol::UDP, a(200), 81, 0, T), Ok(81));
        assert_eq!(t.remove_router(R), HIGH_PORTS + 2);
        assert_eq!(t.len(), 0);
        assert_eq!(t.outbound(R, protocol::UDP, a(200), 80, 0, T), Ok(80));
    }
}
