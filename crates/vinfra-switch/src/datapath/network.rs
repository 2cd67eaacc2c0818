//! Logical networks.

use core::net::Ipv4Addr;

use foldhash::{HashMap, HashSet};

use super::config::DhcpConfig;
use super::counters::SegmentCounters;
use super::ids::{PortId, RouterId, Segment};
use super::mac_table::MacTable;
use super::router::RouterInterface;
use crate::wire::MacAddr;

/// One network's forwarding state.
#[derive(Debug)]
pub(crate) struct NetworkState {
    /// Its VNI or VLAN ID.
    pub(crate) segment: Segment,
    pub(crate) macs: MacTable,
    /// Remote VTEPs that get a copy of BUM frames (overlay only).
    pub(crate) flood: Vec<Ipv4Addr>,
    /// Access ports attached to the network.
    pub(crate) ports: Vec<PortId>,
    /// Addresses answered by ARP suppression.
    pub(crate) arp: HashMap<Ipv4Addr, MacAddr>,
    /// The DHCP responder's parameters, when the switch answers DHCP on this network.
    pub(crate) dhcp: Option<DhcpConfig>,
    /// The network's gateway: its router's interface on it, if it is attached to one.
    pub(crate) gateway: Option<RouterInterface>,
    /// The router whose uplink is on this (external) network, if one is.
    pub(crate) uplink: Option<ExternalUplink>,
    pub(crate) counters: SegmentCounters,
}

impl NetworkState {
    pub(crate) fn new(segment: Segment, learn_limit: usize) -> NetworkState {
        NetworkState {
            segment,
            macs: MacTable::new(learn_limit),
            flood: Vec::new(),
            ports: Vec::new(),
            arp: HashMap::default(),
            dhcp: None,
            gateway: None,
            uplink: None,
            counters: SegmentCounters::default(),
        }
    }
}

/// What forwarding on an external network needs of the router uplink on it.
#[derive(Debug, Clone)]
pub(crate) struct ExternalUplink {
    /// The router.
    pub(crate) router: RouterId,
    /// The uplink's MAC.
    pub(crate) mac: MacAddr,
    /// This switch is the router's edge.
    pub(crate) edge: bool,
    /// The uplink's address and the floating IPs: what the edge answers ARP for.
    pub(crate) addrs: HashSet<Ipv4Addr>,
}
