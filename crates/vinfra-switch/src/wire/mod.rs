//! Wire formats: checked views over byte buffers and their parsed (`Repr`) forms.
//!
//! Each protocol has a `Packet<T: AsRef<[u8]>>` view (named `Frame` for Ethernet) built with
//! `new_checked`, which verifies that every field the accessors read lies inside the buffer, or
//! `new_unchecked`. Accessors never panic: on a buffer that is too short (possible only through
//! `new_unchecked`) a getter reads zeros and a setter does nothing. The `Repr` types are the
//! parsed, validated form; `Repr::parse` takes a checked view, `Repr::emit` writes into one.

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod encap;
mod error;
pub mod ether_type;
pub mod ethernet;
mod field;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod ipv4;
pub mod udp;
pub mod virtio_net;
pub mod vlan;
pub mod vxlan;

pub use arp::{ArpOperation, ArpRepr};
pub use dhcp::{DhcpMessageType, DhcpOp, DhcpRepr};
pub use encap::{decapsulate, overlay_guest_mtu, Decap, Encap};
pub use error::{Error, Layer};
pub use ether_type::EtherType;
pub use ethernet::{EthernetRepr, MacAddr};
pub(crate) use field::{get_array, set_bytes};
pub use field::{Field, Rest};
pub use icmp::IcmpRepr;
pub use ipv4::Ipv4Repr;
pub use udp::UdpRepr;
pub use virtio_net::Offload;
pub use vlan::{VlanId, VlanTci};
pub use vxlan::{Vni, VxlanRepr};
