//! The forwarding core: ports, logical networks, MAC tables, flooding, ARP suppression, a DHCP responder, MTU,
//! port policy ([`PortPolicy`]: port security, a per-port MAC limit, storm control), the
//! distributed firewall, the VXLAN uplink's underlay peers, and counters. No I/O and no clock:
//! the daemon passes received frames and the current time in, and sends the frames the
//! [`Switch`] writes into a [`TxBatch`].
//!
//! # Firewall
//! [`ConfigCommand::SetPortFirewall`] gives a VM or host port security-group rules
//! ([`firewall::rules`]). The switch then tracks the port's IPv4 connections in its connection
//! table ([`firewall::conntrack`], one zone per port): a frame from the port is checked right
//! after port security, before the switch learns, answers or forwards it (egress: unmatched
//! first packets pass); every copy the switch delivers to the port, unicast or flooded, from
//! any source, is checked before it is written (ingress: unmatched first packets are dropped).
//! Packets of known connections pass without meeting the rules; the switch's own ARP and DHCP
//! replies, ARP and other EtherTypes than IPv4 are not filtered. Drops are counted by reason
//! ([`DropReason::FirewallDenied`], [`DropReason::FirewallDefaultDeny`],
//! [`DropReason::ConntrackInvalid`], [`DropReason::ConntrackFull`]), hits per rule
//! ([`Switch::firewall_hits`]), and recorded in a rate-limited log
//! ([`Switch::take_firewall_log`]). A migrating VM's connections go from
//! [`Switch::export_connections`] on its source to [`ConfigCommand::ImportConnections`] on its
//! destination. Ports without a firewall take none of this path.
//!
//! # Threading
//! A `Switch` is owned by one datapath thread (one per worker). Configuration [`ConfigCommand`]s are
//! applied by that thread between batches, and counters are plain integers read through
//! [`Switch::snapshot`]; nothing here is shared or locked.

mod config;
mod configure;
mod counters;
mod filter;
pub mod firewall;
mod ids;
mod mac_table;
mod network;
mod policy;
mod port;
mod switch;
mod tx;

pub use crate::wire::encap::overlay_guest_mtu;
pub use config::{ConfigCommand, ConfigError, DhcpConfig, SwitchSettings};
pub use counters::{Counters, DropReason, Drops, SegmentCounters, Snapshot};
pub use filter::{FirewallDrop, FirewallLogCounters, FIREWALL_LOG_CAPACITY, FIREWALL_LOG_RATE};
pub use ids::{NetworkId, PortId, Segment};
pub use mac_table::{Location, MacEntry};
pub use policy::{AllowedAddress, PortPolicy, StormControl};
pub use port::{PortConfig, PortKind};
pub use switch::{Switch, DHCP_SERVER_MAC};
pub use tx::{TxBatch, TxFrame};
