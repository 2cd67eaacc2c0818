//! The forwarding core: ports, logical networks, MAC tables, flooding, ARP suppression, a DHCP responder, routers and their NAT, MTU,
//! port policy ([`PortPolicy`]: port security, a per-port MAC limit, storm control), the
//! distributed firewall, DSCP marking ([`ConfigCommand::SetPortDscp`]; an overlay frame's outer
//! header copies the inner DSCP), the VXLAN uplink's underlay peers, and counters. No I/O and no clock:
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
//! # Routing
//! [`ConfigCommand::AddRouter`] makes a router (a VRF); [`ConfigCommand::SetRouterInterface`]
//! gives it an interface on a network, the network's gateway ([`RouterInterface`]: the same
//! address and MAC on every host), and [`ConfigCommand::AddRoute`] static routes. A frame that
//! a VM or host port sends to its network's gateway MAC is routed by this switch: TTL,
//! longest-prefix lookup in the ingress network's router, the neighbour's MAC (ARP entries, or
//! learned from ARP replies to the gateway), MTU and DF, then delivered in the egress network
//! as a frame from its gateway with one TTL less; echo requests to a gateway are answered, and
//! ICMP errors go back within [`ICMP_ERROR_RATE`]. Counters per router in
//! [`Snapshot::routers`]; drops by reason ([`DropReason::TtlExceeded`], [`DropReason::NoRoute`],
//! …).
//!
//! # North-south
//! [`ConfigCommand::SetRouterUplink`] gives a router an uplink on an external VLAN network and
//! says where its edge is ([`Edge`]). On a host that is not the edge, what the router would
//! send through the uplink goes, as it was sent, to the edge in VXLAN with the router's transit
//! VNI. The edge source-NATs it (a floating IP from [`ConfigCommand::AddFloatingIp`], else the
//! uplink's address with an endpoint-independent session) out of the trunk from the uplink's
//! MAC, translates what comes back (and ICMP errors about it) and routes it inside, answers
//! ARP for the uplink's addresses from the trunk, and announces them with gratuitous ARP
//! ([`Switch::announce`]). Counters in [`RouterCounters::nat`]; drops
//! [`DropReason::NotEdge`], [`DropReason::NatUnsupported`], [`DropReason::NoNatSession`],
//! [`DropReason::NatTableFull`], [`DropReason::NatPortsExhausted`].
//! # Flow accounting
//! Every IPv4 packet a VM or host port sends (after port security and its firewall) is counted
//! in its flow (the network and the 5-tuple; [`FlowKey`]), with the router that routed it
//! here and whether its route leaves through a router's uplink ([`FlowPath`]);
//! [`Switch::take_flows`] hands out the counts since the previous take
//! ([`FlowTake`]). [`ConfigCommand::SetFlowAccounting`] turns it off or bounds the table.
//!
//! # Fast path
//! The daemon may give established flows between two of its local ports to the kernel
//! ([`Switch::set_port_fast`]): a frame whose fate was one unchanged copy (or, routed, the same
//! with other MACs and one TTL less) to another such port, unicast IPv4 TCP without SYN, FIN or
//! RST, UDP or ICMP echo, through a firewall only on an established connection, is offered as a [`FastFlow`]
//! ([`Switch::take_fast_offers`]); [`Switch::fast_generation`] says when offers no longer hold,
//! and [`Switch::fast_traffic`] counts what the kernel forwarded.
//!
//! # Threading
//! A `Switch` is owned by one datapath thread (one per worker). Configuration [`ConfigCommand`]s are
//! applied by that thread between batches, and counters are plain integers read through
//! [`Switch::snapshot`]; nothing here is shared or locked.

mod classify;
mod config;
mod configure;
mod configure_nat;
mod counters;
mod dhcp_server;
mod edge;
mod fastpath;
mod filter;
pub mod firewall;
mod flows;
mod forward;
mod frame;
mod ids;
mod mac_table;
mod nat;
mod network;
mod policy;
mod port;
mod route;
mod router;
mod sender;
mod switch;
mod tx;

pub use crate::wire::encap::overlay_guest_mtu;
pub use config::{ConfigCommand, ConfigError, DhcpConfig, SwitchSettings};
pub use counters::{
    Counters, DropReason, Drops, IcmpError, NatCounters, RouterCounters, SegmentCounters, Snapshot,
};
pub use dhcp_server::DHCP_SERVER_MAC;
pub use fastpath::{
    FastEncap, FastFlow, FastKey, FastRewrite, FastTraffic, FastTunnel, TCP_CONTROL_FLAGS,
};
pub use filter::{FirewallDrop, FirewallLogCounters, FIREWALL_LOG_CAPACITY, FIREWALL_LOG_RATE};
pub use flows::{
    FlowDelta, FlowKey, FlowPath, FlowTableSettings, FlowTake, IDLE_TAKES, MAX_FLOW_ENTRIES,
};
pub use ids::{NetworkId, PortId, RouterId, Segment};
pub use mac_table::{Location, MacEntry, Redirect, MAC_REDIRECT_GRACE, MAC_REDIRECT_HOLD};
pub use nat::{
    Edge, RouterUplink, UplinkError, ICMP_TIMEOUT, PORT_FIRST, TCP_CLOSING_TIMEOUT, TCP_TIMEOUT,
    UDP_TIMEOUT,
};
pub use policy::{AllowedAddress, PortPolicy, StormControl};
pub use port::{PortConfig, PortKind};
pub use router::{
    RouterInterface, ARP_INTERVAL, MAX_NEIGHBOURS, NEIGHBOUR_LIFETIME, NEIGHBOUR_REFRESH,
    UNANSWERED,
};
pub use switch::{Switch, ICMP_ERROR_RATE};
pub use tx::{Tail, TxBatch, TxFrame};
