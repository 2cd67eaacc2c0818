//! Logical networks.

use core::net::Ipv4Addr;

use foldhash::HashMap;

use super::config::DhcpConfig;
use super::counters::SegmentCounters;
use super::ids::{PortId, Segment};
use super::mac_table::MacTable;
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
            counters: SegmentCounters::default(),
        }
    }
}
