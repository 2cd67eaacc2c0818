//! The flows a host's switch counted, in the cluster's terms, as an agent sends them to the
//! console ([`crate::AgentMessage::Flows`]).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
pub use vinfra_types::flows::TrafficDirection;

/// One flow's traffic on a host since the agent's previous take: the switch's
/// `vinfra_switch_control::FlowView` with the network and router named.
///
/// A flow is counted once in the cluster, where it enters the switches (the sender's host, or
/// for inbound north-south traffic the router's edge), so the console adds the hosts' flows
/// up without counting any twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFlow {
    /// The network it entered on (the sender's), by name.
    pub network: String,
    /// The router that routed it on this host, by name; `None` for switched traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Source address as sent (before any NAT).
    pub src: Ipv4Addr,
    /// Destination address as sent (before any NAT).
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (0 without one; ICMP echo: the identifier).
    pub src_port: u16,
    /// Destination port (0 without one; ICMP echo: the identifier).
    pub dst_port: u16,
    /// Packets in the interval (a GSO frame counts as the packets it carries).
    pub packets: u64,
    /// IP bytes in the interval (headers and payload of every packet).
    pub bytes: u64,
    /// East-west or north-south.
    pub direction: TrafficDirection,
}
