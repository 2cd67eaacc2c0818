//! North-south NAT of a router's uplink: the uplinks and the session table (`uplink`,
//! `table`: endpoint-independent mappings, port allocation, timeouts), the packet rewrite with
//! incremental checksums (`rewrite`), and the translation of ICMP errors from outside
//! (`icmp_error`). The routing stage's edge part (`datapath::edge`) uses them.

pub(crate) mod icmp_error;
pub(crate) mod rewrite;
pub(crate) mod table;
pub(crate) mod uplink;

pub use table::{ICMP_TIMEOUT, PORT_FIRST, TCP_CLOSING_TIMEOUT, TCP_TIMEOUT, UDP_TIMEOUT};
pub use uplink::{Edge, RouterUplink, UplinkError};
