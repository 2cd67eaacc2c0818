//! Port policy: what a VM port may send (port security), how many source addresses it may
//! bring into the network and how much it may flood (storm control).
//!
//! The switch checks a frame from an access port against its port's policy right after
//! classification, before it learns the source or forwards anything: a refused frame changes
//! no table and is counted by reason on the port and its network.

use core::net::Ipv4Addr;

use crate::wire::MacAddr;

/// A source a port may send from: a MAC address and the IPv4 addresses (a prefix) that MAC may
/// use. A NIC's own MAC with its IPAM address is one (a `/32`); an allowed address pair (a
/// virtual IP moved by keepalived, say) another. `prefix_len` 0 allows every IPv4 source from
/// that MAC (a NIC on a network without IPAM).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AllowedAddress {
    /// A unicast MAC address.
    pub mac: MacAddr,
    /// The prefix's address (bits past `prefix_len` are ignored).
    pub ip: Ipv4Addr,
    /// The prefix's length, 0 to 32.
    pub prefix_len: u8,
}

impl AllowedAddress {
    /// Whether `ip` lies in the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let bits = u32::from(self.prefix_len.min(32));
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.ip) & mask
    }
}

/// Storm control: a token bucket over the broadcast, multicast and unknown-unicast frames a
/// port sends into its network (frames the switch would flood).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StormControl {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Frames that may go at once after a quiet period (the bucket's depth), at least 1.
    pub burst: u32,
}

/// A port's policy. The default is open: no port security, no per-port MAC limit, no storm
/// control; the agent sets the policy of each VM port right after adding it (before its QEMU
/// starts), so port security is on for every VM NIC unless its owner turned it off.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PortPolicy {
    /// Port security. `Some`: the port sends only from these sources; a frame whose source MAC
    /// is not listed is dropped (`spoofed_mac`); an IPv4 packet whose source is not allowed
    /// for that MAC (`spoofed_ip`, DHCP client messages from 0.0.0.0 excepted), an ARP packet
    /// whose sender is not the frame's source MAC or not an allowed address of it (0.0.0.0 for
    /// a probe excepted: `spoofed_arp`), a DHCP server message (UDP from port 67:
    /// `dhcp_server`) and any other EtherType than IPv4, ARP and RARP (`ethertype_not_allowed`)
    /// are dropped. An empty list sends nothing. `None`: off.
    pub allowed: Option<Vec<AllowedAddress>>,
    /// Most learned MAC entries that may point at the port; a frame from a further source MAC
    /// is dropped (`port_mac_limit`). `None`: only the network's limit applies.
    pub mac_limit: Option<u32>,
    /// Storm control; flooded frames over the rate are dropped (`storm_control`). `None`: off.
    pub storm: Option<StormControl>,
}
