//! The numbers and segments the control plane names things by: [`PortId`], [`NetworkId`], a
//! network's [`Segment`] and [`RouterId`], and the dense tables those numbers index (`slot`, `slot_mut`,
//! `slot_insert`). Every other datapath module uses them; they use nothing.

use crate::wire::{VlanId, Vni};

/// A port, numbered by the control plane. Numbers index a dense table: keep them small
/// (below [`PortId::MAX`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PortId(pub u32);

impl PortId {
    /// Largest accepted port number.
    pub const MAX: u32 = 65_535;
}

impl core::fmt::Display for PortId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "port {}", self.0)
    }
}

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

/// A router (a routing domain, VRF), numbered by the control plane (the same on every host).
/// Numbers index a dense table: 1 to [`RouterId::MAX`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RouterId(pub u32);

impl RouterId {
    /// Largest accepted router number.
    pub const MAX: u32 = 65_535;
}

impl core::fmt::Display for RouterId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "router {}", self.0)
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

/// The entry for number `id` of a dense table indexed by port or network numbers.
pub(super) fn slot<T>(table: &[Option<T>], id: u32) -> Option<&T> {
    table.get(usize::try_from(id).ok()?)?.as_ref()
}

/// The entry for number `id`, mutable.
pub(super) fn slot_mut<T>(table: &mut [Option<T>], id: u32) -> Option<&mut T> {
    table.get_mut(usize::try_from(id).ok()?)?.as_mut()
}

/// Puts `value` at number `id`, growing the table as needed.
pub(super) fn slot_insert<T>(table: &mut Vec<Option<T>>, id: u32, value: T) {
    let Ok(index) = usize::try_from(id) else {
        return;
    };
    if table.len() <= index {
        table.resize_with(index + 1, || None);
    }
    if let Some(s) = table.get_mut(index) {
        *s = Some(value);
    }
}
