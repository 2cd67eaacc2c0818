//! What connection tracking counts: invalid packets by [`InvalidReason`], and the table's
//! [`ConntrackCounters`].

/// Why a packet is invalid for connection tracking.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum InvalidReason {
    /// A TCP segment other than a SYN (without ACK) and no connection for it (an ACK, a
    /// SYN+ACK with no SYN seen, a RST, a FIN).
    TcpNotSyn,
    /// A TCP flag combination no stack sends (SYN+FIN, no flag, FIN without ACK, …).
    TcpBadFlags,
    /// A TCP segment the connection's state does not allow (a SYN from the responder once
    /// established, a SYN+ACK from the originator, an ACK before the SYN+ACK, …).
    TcpBadState,
    /// An ICMP query answer (echo reply, …) with no request seen.
    IcmpUnmatchedReply,
    /// An ICMP error about no known connection, or quoting too little to tell.
    IcmpUnrelatedError,
    /// A later IPv4 fragment and no connection of its protocol between its addresses; or a TCP
    /// fragment at offset 8 (RFC 1858).
    Fragment,
    /// A packet of a known connection going the wrong way through the port: from the VM with
    /// the addresses of the packets to it, or the reverse (a spoofed or looped packet).
    WrongSide,
}

impl InvalidReason {
    /// Every reason, in counter order.
    pub const ALL: [InvalidReason; 7] = [
        InvalidReason::TcpNotSyn,
        InvalidReason::TcpBadFlags,
        InvalidReason::TcpBadState,
        InvalidReason::IcmpUnmatchedReply,
        InvalidReason::IcmpUnrelatedError,
        InvalidReason::Fragment,
        InvalidReason::WrongSide,
    ];

    /// The snake_case name, as in counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            InvalidReason::TcpNotSyn => "tcp_not_syn",
            InvalidReason::TcpBadFlags => "tcp_bad_flags",
            InvalidReason::TcpBadState => "tcp_bad_state",
            InvalidReason::IcmpUnmatchedReply => "icmp_unmatched_reply",
            InvalidReason::IcmpUnrelatedError => "icmp_unrelated_error",
            InvalidReason::Fragment => "fragment",
            InvalidReason::WrongSide => "wrong_side",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Invalid packets by reason.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct InvalidCounts([u64; InvalidReason::ALL.len()]);

impl InvalidCounts {
    /// Invalid packets for `reason`.
    pub fn get(&self, reason: InvalidReason) -> u64 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    /// Invalid packets, all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each reason with its count.
    pub fn iter(&self) -> impl Iterator<Item = (InvalidReason, u64)> + '_ {
        InvalidReason::ALL.into_iter().zip(self.0.iter().copied())
    }

    pub(super) fn count(&mut self, reason: InvalidReason) {
        if let Some(n) = self.0.get_mut(reason.index()) {
            *n += 1;
        }
    }
}

/// Counters of a [`Conntrack`](super::Conntrack). Each connection freed is counted once, in `expired`,
/// `evicted` or `removed`, so `created + imported - expired - evicted - removed == entries`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ConntrackCounters {
    /// Connections in the table now.
    pub entries: usize,
    /// Connections created by [`Conntrack::commit`](super::Conntrack::commit).
    pub created: u64,
    /// Connections created by [`Conntrack::import`](super::Conntrack::import).
    pub imported: u64,
    /// Connections freed after their timeout, by [`Conntrack::expire`](super::Conntrack::expire) or a lookup.
    pub expired: u64,
    /// Connections freed to make room for a new one on a full table or zone: past their
    /// timeout, or TCP connections that had closed (`TimeWait`, `Close`).
    pub evicted: u64,
    /// Connections removed: [`Conntrack::remove_zone`](super::Conntrack::remove_zone), or ended by a SYN reopening them.
    pub removed: u64,
    /// Connections refused for a full table or zone ([`ConntrackFull`](super::ConntrackFull)).
    pub refused: u64,
    /// Invalid packets by reason.
    pub invalid: InvalidCounts,
}
