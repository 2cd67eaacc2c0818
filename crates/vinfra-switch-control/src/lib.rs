//! The control protocol of `vinfra switch`: what the agent says to its host's switch daemon
//! over the daemon's Unix control socket, and both ends of that socket.
//!
//! - [`protocol`]: the messages, one JSON object per line: a [`Request`] (the switch core's
//!   configuration commands in wire form, plus `ping`, `get_config`, `get_counters`,
//!   `export_connections`), a [`Response`], the counters ([`CountersView`]).
//! - [`client`]: [`SwitchClient`], the agent's side (connect, apply, read config and counters).
//! - [`server`]: the daemon's side (bind the socket, one thread per connection, line framing);
//!   the daemon passes a handler that carries out each request.
//!
//! The crate depends on neither the switch core nor the daemon: the agent links it alone, and
//! the daemon converts these wire types into the core's (a request's numbers and addresses are
//! checked there, where the core's types are).
#![deny(unsafe_code)]

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{ClientError, SwitchClient};
pub use protocol::{
    ActionSpec, AllowedAddressSpec, Attachment, BadMac, ConnTupleSpec, ConnectionSpec,
    ConntrackView, CountersView, DhcpSpec, DirectionSpec, EdgeSpec, FastPathView, FirewallRuleSpec,
    FlowDirection, FlowView, FlowsView, LocationSpec, Mac, NatCountersView, NetworkCountersView,
    NetworkSpec, PortCountersView, PortPolicySpec, PortSpec, PrefixSpec, PrioritySpec, QosSpec,
    RateSpec, Request, Response, RouterCountersView, SideSpec, StormSpec, TcpStateSpec,
    TrafficView, DEFAULT_QOS_WEIGHT,
};

/// The port number of the VXLAN uplink: the daemon opens it itself when started with an
/// underlay address, else the agent adds it with this number.
pub const UPLINK_PORT: u32 = 0;
