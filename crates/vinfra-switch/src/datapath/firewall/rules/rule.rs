//! A security-group rule ([`FirewallRule`]: direction, protocol, port range, remote prefixes,
//! action), what evaluating rules answers ([`FirewallVerdict`]) and why rules are refused
//! ([`FirewallRuleError`]).

use core::net::Ipv4Addr;

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
pub(super) fn mask(len: u8) -> u32 {
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
