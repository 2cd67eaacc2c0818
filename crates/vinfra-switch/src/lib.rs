//! The I/O-free core of `vinfra switch`, the userspace virtual switch that runs on every host.
//!
//! Two layers, in the style of smoltcp:
//!
//! - [`wire`]: checked views over byte buffers (`Packet<T: AsRef<[u8]>>` with `new_unchecked` /
//!   `new_checked` and named field offsets) and the high-level `Repr` forms with `parse` / `emit`,
//!   for Ethernet II, 802.1Q, ARP, IPv4, ICMPv4, UDP, VXLAN and DHCP, plus the VXLAN underlay
//!   encapsulation ([`wire::encap`]), the virtio-net header of offload taps
//!   ([`wire::virtio_net`]) and software TCP segmentation and checksum completion
//!   ([`wire::gso`]). Every parse error is a typed [`wire::Error`].
//! - [`datapath`]: ports, logical networks (VXLAN overlay or VLAN), MAC tables with static
//!   entries, learning and ageing, MAC mobility limited to the moves the control plane expects,
//!   BUM flooding by head-end replication, ARP suppression, a DHCP responder, MTU enforcement,
//!   port policy (port security: allowed source MACs and IPv4 addresses, ARP senders, no DHCP
//!   server; a per-port MAC limit; storm control), the distributed firewall (a VM or host
//!   port's security-group rules and connection tracking, IPv4, checked as frames leave the VM
//!   and as copies reach it; [`datapath::firewall`]), an underlay peer list for the VXLAN uplink,
//!   offload metadata (large TCP segments passed whole to ports that
//!   take them, cut into segments for the others), routers (VRFs with a distributed anycast
//!   gateway on each attached network: packets to a gateway routed on the sender's host, ICMP
//!   errors, ARP for the gateway and for neighbours) and counters. A [`datapath::Switch`] takes a batch of received
//!   frames and writes the frames to send into a caller-provided [`datapath::TxBatch`]. It reads
//!   no clock and does no I/O: time is a parameter and the daemon owns the sockets.
//!
//! Nothing in this crate panics on any input: accessors on views never index out of bounds and
//! every malformed frame is dropped with a counted [`datapath::DropReason`].
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod datapath;
pub mod qos;
pub mod wire;
