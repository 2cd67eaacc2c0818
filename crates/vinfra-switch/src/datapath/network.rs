//! Logical networks.

use core::net::Ipv4Addr;

use foldhash::HashMap;

use super::config::DhcpConfig;
use super::counters::NetworkCounters;
use super::mac_table::MacTable;
use super::port::PortId;
use crate::wire::{MacAddr, VlanId, Vni};

/// A logical network, numbered by the control plane. Numbers index a dense table: keep them
/// small (below [`NetworkId::MAX`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NetworkId(pub u32);

impl NetworkId {
    /// Largest accepted network number.
    pub const MAX: u32 = 65_535;
}

impl core::fmt::Display for NetworkId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "network {}", self.0)
    }
}

/// The segment that carries a network beyond this host: a VXLAN VNI through the uplink or a
/// VLAN ID on the trunk. (The cluster's network kind, overlay or VLAN, is `vinfra_types`'
/// `NetworkKind`; this is its value on the wire.)
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Segment {
    /// A VXLAN overlay: other hosts are reached through the VXLAN uplink with this VNI.
    Overlay {
        /// The network identifier on the wire.
        vni: Vni,
    },
    /// A VLAN on the trunk: the physical network is reached through the trunk with this tag.
    Vlan {
        /// The 802.1Q VLAN ID.
        vid: VlanId,
    },
}

/// One network's forwarding state.
#[derive(Debug)]
pub(crate) struct Network {
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
    pub(crate) counters: NetworkCounters,
}

impl Network {
    pub(crate) fn new(segment: Segment, learn_limit: usize) -> Network {
        Network {
            segment,
            macs: MacTable::new(learn_limit),
            flood: Vec::new(),
            ports: Vec::new(),
            arp: HashMap::default(),
            dhcp: None,
            counters: NetworkCounters::default(),
        }
    }
}
