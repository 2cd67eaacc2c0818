//! How long connections live ([`Timeouts`], the kernel's defaults) and how many a table holds
//! ([`ConntrackConfig`]).

use core::time::Duration;

use super::tcp::TcpState;
use crate::wire::ipv4::protocol;

/// How long a connection lives without a packet, by protocol and state. The defaults are the
/// Linux kernel's (`nf_conntrack_*_timeout` sysctls), except `other_unreplied`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Timeouts {
    /// TCP after the SYN (and after SYNs both ways): 120 s.
    pub tcp_syn_sent: Duration,
    /// TCP after the SYN+ACK: 60 s.
    pub tcp_syn_recv: Duration,
    /// TCP established: 5 days, as the kernel (OVS uses 24 h). An idle connection without
    /// keepalives outlives most applications' own timeouts; the table's size bounds the cost.
    pub tcp_established: Duration,
    /// TCP after a FIN: 120 s.
    pub tcp_fin_wait: Duration,
    /// TCP after the first FIN was acknowledged: 60 s.
    pub tcp_close_wait: Duration,
    /// TCP after the second FIN: 30 s.
    pub tcp_last_ack: Duration,
    /// TCP after the second FIN was acknowledged: 120 s.
    pub tcp_time_wait: Duration,
    /// TCP after a RST: 10 s.
    pub tcp_close: Duration,
    /// UDP before a reply: 30 s.
    pub udp_unreplied: Duration,
    /// UDP after a reply: 120 s (the kernel's stream timeout).
    pub udp_replied: Duration,
    /// ICMP queries (echo, timestamp, …): 30 s.
    pub icmp: Duration,
    /// Other protocols (and ICMP other than queries and errors) before a reply: 30 s (the
    /// kernel's generic timeout is 600 s either way; one-way traffic should not hold entries
    /// that long).
    pub other_unreplied: Duration,
    /// Other protocols after a reply: 600 s.
    pub other_replied: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        const fn secs(s: u64) -> Duration {
            Duration::from_secs(s)
        }
        Timeouts {
            tcp_syn_sent: secs(120),
            tcp_syn_recv: secs(60),
            tcp_established: secs(5 * 24 * 3600),
            tcp_fin_wait: secs(120),
            tcp_close_wait: secs(60),
            tcp_last_ack: secs(30),
            tcp_time_wait: secs(120),
            tcp_close: secs(10),
            udp_unreplied: secs(30),
            udp_replied: secs(120),
            icmp: secs(30),
            other_unreplied: secs(30),
            other_replied: secs(600),
        }
    }
}

impl Timeouts {
    /// The timeout of a TCP connection in `state`.
    pub const fn tcp(&self, state: TcpState) -> Duration {
        match state {
            TcpState::SynSent | TcpState::SynSent2 => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }

    /// The timeout of a connection of `protocol` (`tcp` its state for TCP), replied or not.
    pub(super) fn of(&self, protocol: u8, tcp: Option<TcpState>, replied: bool) -> Duration {
        match (protocol, tcp) {
            (_, Some(state)) => self.tcp(state),
            (protocol::UDP, None) if replied => self.udp_replied,
            (protocol::UDP, None) => self.udp_unreplied,
            (protocol::ICMP, None) => self.icmp,
            (_, None) if replied => self.other_replied,
            (_, None) => self.other_unreplied,
        }
    }
}

/// Most connections a table may be configured for (slot numbers take 31 bits).
pub const MAX_ENTRIES_LIMIT: usize = 1 << 30;

/// Configuration of a [`Conntrack`](super::Conntrack).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConntrackConfig {
    /// Most connections in the table, all zones together (at most [`MAX_ENTRIES_LIMIT`]).
    pub max_entries: usize,
    /// Most connections of one zone; `None`: only `max_entries` applies. One VM cannot fill
    /// the table for the others with it.
    pub zone_max_entries: Option<usize>,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl Default for ConntrackConfig {
    /// 262 144 connections, no zone limit, the default timeouts.
    fn default() -> ConntrackConfig {
        ConntrackConfig {
            max_entries: 1 << 18,
            zone_max_entries: None,
            timeouts: Timeouts::default(),
        }
    }
}
