//! The kernel fast path's map entries as the eBPF program (`bpf/fastpath.bpf.c`) lays them
//! out: a flow's match ([`MapKey`]) and its action with counters ([`MapValue`]).

use vinfra_switch::datapath::FastKey;

/// `struct fp_key`: 40 bytes, no padding the program leaves undefined (it zeroes `pad`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapKey {
    /// The ingress device's interface index.
    pub ifindex: u32,
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// IPv4 source, in network order as it lies in the header.
    pub saddr: [u8; 4],
    /// IPv4 destination, likewise.
    pub daddr: [u8; 4],
    /// Source port, in network order.
    pub sport: [u8; 2],
    /// Destination port, in network order.
    pub dport: [u8; 2],
    /// IP protocol.
    pub proto: u8,
    /// Zero.
    pub pad: [u8; 3],
    /// From the VXLAN uplink: the VNI; else zero.
    pub vni: u32,
    /// From the VXLAN uplink: the sending VTEP, in network order; else zero.
    pub vtep: [u8; 4],
}

impl MapKey {
    /// The key of flow `key` from device `ifindex`.
    pub fn new(ifindex: u32, key: &FastKey) -> MapKey {
        MapKey {
            ifindex,
            dst: key.dst_mac.0,
            src: key.src_mac.0,
            saddr: key.src.octets(),
            daddr: key.dst.octets(),
            sport: key.src_port.to_be_bytes(),
            dport: key.dst_port.to_be_bytes(),
            proto: key.protocol,
            pad: [0; 3],
            vni: key.tunnel.map_or(0, |t| t.vni),
            vtep: key.tunnel.map_or([0; 4], |t| t.remote.octets()),
        }
    }
}

/// The flow is routed: MACs rewritten, TTL one less.
pub const FLOW_ROUTED: u32 = 1;

/// The flow leaves encapsulated in VXLAN (`local`, `remote`, `vni`, `sport`).
pub const FLOW_ENCAP: u32 = 2;

/// The egress device takes no large segment decapsulated by the program (a NIC, whose driver
/// would read the tunnel's offsets the decapsulation leaves): those go to the daemon.
pub const FLOW_NO_LARGE: u32 = 4;

/// `struct fp_value`: 80 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapValue {
    /// The egress device's interface index.
    pub out_ifindex: u32,
    /// [`FLOW_ROUTED`].
    pub flags: u32,
    /// Routed: the new destination MAC.
    pub new_dst: [u8; 6],
    /// Routed: the new source MAC.
    pub new_src: [u8; 6],
    /// The largest IP packet (or segment of a large one) the flow carries.
    pub max_ip_len: u16,
    /// Zero.
    pub pad: u16,
    /// The VXLAN uplink's address (network order): the outer source of an encapsulated
    /// flow, the destination a decapsulated one's packets must have.
    pub local: [u8; 4],
    /// Encapsulated: the remote VTEP (network order).
    pub remote: [u8; 4],
    /// Encapsulated: the VXLAN header's VNI and reserved byte, as they lie in it.
    pub vni: [u8; 4],
    /// Encapsulated: the outer UDP source port (network order).
    pub sport: [u8; 2],
    /// Zero.
    pub pad2: u16,
    /// Frames forwarded (counters written by the program).
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// IP packets (a large segment counts as the segments it is cut into).
    pub packets: u64,
    /// Their IP bytes.
    pub ip_bytes: u64,
    /// When the last frame went (`CLOCK_MONOTONIC`, ns).
    pub last_ns: u64,
}

// SAFETY: `MapKey` is `repr(C)`, made of byte arrays and integers laid out without implicit
// padding (4 + 6 + 6 + 4 + 4 + 2 + 2 + 1 + 3 + 4 + 4 = 40 bytes, alignment 4, `vni` at offset
// 32), so every bit pattern is a valid value and all of its bytes are initialised.
unsafe impl aya::Pod for MapKey {}
// SAFETY: `MapValue` is `repr(C)`: 40 bytes of integers and byte arrays, then five `u64`s at
// offset 40 (a multiple of 8), 80 bytes without implicit padding; every bit pattern is valid.
unsafe impl aya::Pod for MapValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entries_have_the_programs_sizes() {
        assert_eq!(core::mem::size_of::<MapKey>(), 40);
        assert_eq!(core::mem::offset_of!(MapKey, vni), 32);
        assert_eq!(core::mem::size_of::<MapValue>(), 80);
        assert_eq!(core::mem::offset_of!(MapValue, local), 24);
        assert_eq!(core::mem::offset_of!(MapValue, frames), 40);
    }
}
