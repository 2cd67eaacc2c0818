//! Firewall rules and tracked connections (a migrating VM's, exported and imported).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Which way a firewall rule looks, seen from the VM.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSpec {
    /// To the VM; the remote end is the packet's source.
    Ingress,
    /// From the VM; the remote end is the packet's destination.
    Egress,
}

/// What a matching firewall rule does.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ActionSpec {
    /// The packet (and its connection) passes, unless a deny rule matches too.
    Allow,
    /// The packet is dropped, whatever allow rules match.
    Deny,
}

/// An IPv4 prefix: `{"ip":"10.0.0.0","prefix_len":24}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct PrefixSpec {
    /// The prefix's address.
    pub ip: Ipv4Addr,
    /// Its length, 0 to 32.
    pub prefix_len: u8,
}

/// A security-group rule of a port's firewall (the core's `FirewallRule`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct FirewallRuleSpec {
    /// The packets' direction.
    pub direction: DirectionSpec,
    /// Their IP protocol number; absent or `null`: every protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Their destination ports `[first, last]` (TCP and UDP only); absent or `null`: every
    /// port, and packets without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<(u16, u16)>,
    /// The remote end's prefixes; empty matches nothing.
    pub remote: Vec<PrefixSpec>,
    /// What the rule does.
    pub action: ActionSpec,
}

/// Which way the packet that created a connection went through the port.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum SideSpec {
    /// Sent by the VM.
    FromVm,
    /// Sent to the VM.
    ToVm,
}

/// A tracked TCP connection's state (the core's `TcpState`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum TcpStateSpec {
    /// A SYN from the originator seen.
    SynSent,
    /// SYNs seen both ways.
    SynSent2,
    /// The SYN+ACK seen.
    SynRecv,
    /// Data flows.
    Established,
    /// A FIN seen.
    FinWait,
    /// The first FIN acknowledged.
    CloseWait,
    /// The second FIN seen.
    LastAck,
    /// The second FIN acknowledged.
    TimeWait,
    /// A RST seen.
    Close,
}

/// The addresses, protocol and ports of a connection's first packet (for ICMP queries the
/// identifier and type in the port fields; 0 for other protocols).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnTupleSpec {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port, or the ICMP identifier.
    pub src_port: u16,
    /// Destination port, or the ICMP type.
    pub dst_port: u16,
}

/// A tracked connection of a port (the core's `ConnEntry`), exported from one switch and
/// imported into another when its VM migrates.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectionSpec {
    /// The tuple of the packet that created it (its replies go the reverse way).
    pub original: ConnTupleSpec,
    /// The side of the port that packet came from.
    pub origin: SideSpec,
    /// The TCP state; absent for other protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_state: Option<TcpStateSpec>,
    /// Whether a packet went the reply way.
    pub replied: bool,
    /// How long it lives without a further packet, milliseconds.
    pub remaining_ms: u64,
}
