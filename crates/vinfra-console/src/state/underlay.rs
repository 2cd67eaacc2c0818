//! Every host's underlay address ([`UnderlayIndex`]): what the switch configurations need from
//! the host records, kept by the [`super::Console`] until a host record changes, so a
//! configuration costs no copy of every host record.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::records::HostRecord;

/// Every host's underlay address (IPv4 only; a host whose address is not IPv4 is left out):
/// by host, and every address sorted, each once.
#[derive(Debug, Default)]
pub struct UnderlayIndex {
    sorted: Vec<Ipv4Addr>,
    by_host: HashMap<String, Ipv4Addr>,
}

impl UnderlayIndex {
    /// From `(host name, address)` pairs.
    pub fn new<'a>(hosts: impl IntoIterator<Item = (&'a str, &'a str)>) -> UnderlayIndex {
        let by_host: HashMap<String, Ipv4Addr> = hosts
            .into_iter()
            .filter_map(|(name, address)| Some((name.to_string(), address.parse().ok()?)))
            .collect();
        let mut sorted: Vec<Ipv4Addr> = by_host.values().copied().collect();
        sorted.sort_unstable();
        sorted.dedup();
        UnderlayIndex { sorted, by_host }
    }

    /// From host records.
    pub fn from_records(hosts: &[HostRecord]) -> UnderlayIndex {
        UnderlayIndex::new(hosts.iter().map(|h| (h.name.as_str(), h.address.as_str())))
    }

    /// `host`'s address (none for an unknown host or one whose address is not IPv4).
    pub fn address(&self, host: &str) -> Option<Ipv4Addr> {
        self.by_host.get(host).copied()
    }

    /// The addresses of every host but `host`, sorted, each once (without `host`'s own address,
    /// should another host share it): the only sources `host`'s VXLAN uplink accepts.
    pub fn peers_of(&self, host: &str) -> Vec<Ipv4Addr> {
        let own = self.address(host);
        self.sorted
            .iter()
            .copied()
            .filter(|a| Some(*a) != own)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_leave_out_the_host_its_address_and_addresses_that_are_not_ipv4() {
        let u = UnderlayIndex::new([
            ("h1", "10.0.0.1"),
            ("h2", "10.0.0.3"),
            ("h3", "10.0.0.2"),
            ("h4", "10.0.0.2"),
            ("h5", "fd00::5"),
            ("h6", "10.0.0.1"),
        ]);
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(u.peers_of("h1"), [ip("10.0.0.2"), ip("10.0.0.3")]);
        assert_eq!(u.peers_of("h3"), [ip("10.0.0.1"), ip("10.0.0.3")]);
        assert_eq!(
            u.peers_of("h5"),
            [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]
        );
        assert_eq!(u.peers_of("gone"), u.peers_of("h5"));
        assert_eq!(u.address("h5"), None);
        assert_eq!(u.address("h2"), Some(ip("10.0.0.3")));
    }
}
