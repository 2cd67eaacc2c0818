//! The forwarding core: ports, logical networks, MAC tables, flooding, ARP suppression, a DHCP responder, MTU,
//! port policy ([`PortPolicy`]: port security, a per-port MAC limit, storm control), the VXLAN
//! uplink's underlay peers, and counters. No I/O and no clock: the daemon passes received frames and the current time in,
//! and sends the frames the [`Switch`] writes into a [`TxBatch`].
//!
//! # Threading
//! A `Switch` is owned by one datapath thread (one per worker). Configuration [`ConfigCommand`]s are
//! applied by that thread between batches, and counters are plain integers read through
//! [`Switch::snapshot`]; nothing here is shared or locked.

mod config;
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
