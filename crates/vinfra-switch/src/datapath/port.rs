//! Ports: where frames enter and leave the switch.

use core::net::Ipv4Addr;

use super::counters::Counters;
use super::filter::PortFirewall;
use super::ids::{NetworkId, PortId};
use super::policy::{PortPolicy, StormBucket};
use crate::wire::{MacAddr, VlanId};

/// What a port connects to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PortKind {
    /// A VM's vNIC, attached to one network. Carries untagged frames.
    Vm {
        /// The network of the vNIC.
        network: NetworkId,
    },
    /// An 802.1Q sub-interface of a VM's vNIC: the frames tagged `vid` on the vNIC's port
    /// `parent` (a [`PortKind::Vm`] port), in their own network. The switch takes the tag off
    /// what the guest sends and puts it on what goes to the guest; the frames travel through
    /// the parent's socket, but everything else (MAC entries, port security, firewall, counters)
    /// is the sub-interface's own. Removed with its parent.
    VmVlan {
        /// The sub-interface's network.
        network: NetworkId,
        /// The vNIC's port.
        parent: PortId,
        /// The tag.
        vid: VlanId,
    },
    /// A host interface (tap), attached to one network. Carries untagged frames.
    Host {
        /// The network of the interface.
        network: NetworkId,
    },
    /// The VXLAN uplink: full underlay frames (outer Ethernet/IPv4/UDP 4789/VXLAN) to and from
    /// the other hosts. At most one per switch.
    VxlanUplink {
        /// This host's VTEP (underlay) address.
        local_ip: Ipv4Addr,
        /// The uplink's underlay MAC, source of encapsulated frames.
        local_mac: MacAddr,
        /// Underlay next hop for VTEPs without their own entry ([`super::ConfigCommand::SetVtepMac`]),
        /// e.g. a router; `None` drops frames to such VTEPs.
        gateway_mac: Option<MacAddr>,
    },
    /// The 802.1Q trunk to the physical network, carrying every VLAN network tagged with its VID.
    /// At most one per switch.
    VlanTrunk,
}

impl PortKind {
    /// The network of an access (VM or host) port.
    pub const fn access_network(&self) -> Option<NetworkId> {
        match self {
            PortKind::Vm { network }
            | PortKind::Host { network }
            | PortKind::VmVlan { network, .. } => Some(*network),
            PortKind::VxlanUplink { .. } | PortKind::VlanTrunk => None,
        }
    }
}

/// A port's configuration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortConfig {
    /// Port number.
    pub id: PortId,
    /// What it connects to.
    pub kind: PortKind,
    /// The IP MTU: the largest frame is this plus the Ethernet header (and the 802.1Q tag on the
    /// trunk). Larger frames are dropped as oversized, in either direction.
    pub mtu: u16,
}

/// A port as the switch keeps it: its configuration and its state.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) config: PortConfig,
    pub(super) counters: Counters,
    /// Takes frames with offload metadata (see [`super::Switch::set_port_offloads`]).
    pub(super) offloads: bool,
    /// Port security, MAC limit, storm control (access ports only).
    pub(super) policy: PortPolicy,
    /// Storm control's state, when the policy has it.
    pub(super) storm: Option<StormBucket>,
    /// The port's firewall (access ports only); `None`: unfiltered.
    pub(super) firewall: Option<Box<PortFirewall>>,
    /// The DSCP its IPv4 packets get (access ports only); `None`: the guest's is kept.
    pub(super) dscp_mark: Option<u8>,
    /// A VM port's 802.1Q sub-interfaces ([`PortKind::VmVlan`]), by tag.
    pub(super) vlans: Vec<(VlanId, PortId)>,
}
