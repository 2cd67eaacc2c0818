//! IPv4 prefixes of routers: a route's destination as the console writes it (`a.b.c.d/len`),
//! and the subnets of router interfaces (an address and a prefix length).

use std::net::Ipv4Addr;

use vinfra_switch_control::PrefixSpec;

/// Why a route's destination from the console is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPrefix {
    /// Not `a.b.c.d/len` with a length of 0 to 32.
    #[error("not a.b.c.d/len with a length of 0 to 32")]
    Syntax,
    /// The address has bits set beyond the length.
    #[error("host bits are set (the prefix is {network}/{prefix_len})")]
    HostBits {
        /// The network address meant.
        network: Ipv4Addr,
        /// The length.
        prefix_len: u8,
    },
}

/// The netmask of a prefix length (lengths above 32 count as 32).
pub fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

/// Whether `ip` is inside the subnet of `net`/`prefix_len` (its network and broadcast
/// addresses included).
pub fn contains(net: Ipv4Addr, prefix_len: u8, ip: Ipv4Addr) -> bool {
    let m = mask(prefix_len);
    u32::from(ip) & m == u32::from(net) & m
}

/// Whether `ip` can be a host's address in its subnet `ip`/`prefix_len`: not 0.0.0.0, the
/// limited broadcast or a multicast address, and (in a subnet of more than two addresses)
/// neither the subnet's network nor its broadcast address.
pub fn is_host_address(ip: Ipv4Addr, prefix_len: u8) -> bool {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return false;
    }
    if prefix_len >= 31 {
        return true;
    }
    let host = u32::from(ip) & !mask(prefix_len);
    host != 0 && host != !mask(prefix_len)
}

/// The route destination written `text`: `a.b.c.d/len`, length 0 to 32, host bits zero.
pub fn parse_prefix(text: &str) -> Result<PrefixSpec, BadPrefix> {
    let (ip, len) = text.split_once('/').ok_or(BadPrefix::Syntax)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| BadPrefix::Syntax)?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadPrefix::Syntax);
    }
    let prefix_len: u8 = len.parse().map_err(|_| BadPrefix::Syntax)?;
    if prefix_len > 32 {
        return Err(BadPrefix::Syntax);
    }
    let network = Ipv4Addr::from(u32::from(ip) & mask(prefix_len));
    if network != ip {
        return Err(BadPrefix::HostBits {
            network,
            prefix_len,
        });
    }
    Ok(PrefixSpec { ip, prefix_len })
}
