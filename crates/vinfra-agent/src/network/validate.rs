//! Checking a switch configuration from the console before it is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vinfra_proto::{HostSwitchConfig, SwitchNetworkKind};

use super::mac::{self, MacError};
use super::route::{self, BadPrefix};
use super::uplink::{self, BadUplink};

/// Smallest IP MTU accepted for a network.
pub const MIN_MTU: u16 = 576;

/// Why a switch configuration from the console is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    /// A network name that is not a DNS label.
    #[error("network name {name:?} is not a DNS label")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: vinfra_types::NameError,
    },
    /// Two networks with one name.
    #[error("network {0} appears twice")]
    DuplicateName(String),
    /// Two networks with one number.
    #[error("network number {0} appears twice")]
    DuplicateNumber(u16),
    /// A VNI of 0 or above 24 bits.
    #[error("network {network}: VNI {vni} is out of range (1 to 16777215)")]
    VniOutOfRange {
        /// The network.
        network: String,
        /// The VNI.
        vni: u32,
    },
    /// Two networks with one VNI.
    #[error("network {network}: VNI {vni} is used by another network")]
    VniReused {
        /// The network.
        network: String,
        /// The VNI.
        vni: u32,
    },
    /// A flood list entry that is no host's address.
    #[error("network {network}: bad flood address {ip}")]
    BadFloodAddress {
        /// The network.
        network: String,
        /// The address.
        ip: Ipv4Addr,
    },
    /// A VLAN ID outside 1 to 4094.
    #[error("network {network}: VLAN {vid} is out of range (1 to 4094)")]
    VlanOutOfRange {
        /// The network.
        network: String,
        /// The VLAN ID.
        vid: u16,
    },
    /// Two networks with one VLAN ID.
    #[error("network {network}: VLAN {vid} is used by another network")]
    VlanReused {
        /// The network.
        network: String,
        /// The VLAN ID.
        vid: u16,
    },
    /// A flood list on a VLAN network.
    #[error("network {0}: a VLAN has no flood list")]
    VlanFlood(String),
    /// An MTU below [`MIN_MTU`].
    #[error("network {network}: MTU {mtu} is below {MIN_MTU}")]
    MtuTooSmall {
        /// The network.
        network: String,
        /// The MTU.
        mtu: u16,
    },
    /// A MAC entry naming a network that is not configured.
    #[error("MAC entry {mac}: no network {network}")]
    MacEntryNetwork {
        /// The MAC address as written.
        mac: String,
        /// The network named.
        network: String,
    },
    /// A MAC entry on a VLAN network (the trunk learns those).
    #[error("MAC entry {mac}: network {network} is a VLAN")]
    MacEntryOnVlan {
        /// The MAC address as written.
        mac: String,
        /// The network.
        network: String,
    },
    /// A MAC entry whose address is not a unicast MAC.
    #[error("MAC entry {mac:?}")]
    MacEntryMac {
        /// The MAC address as written.
        mac: String,
        /// Why.
        #[source]
        source: MacError,
    },
    /// Two MAC entries for one address on one network.
    #[error("MAC {mac} appears twice in {network}")]
    DuplicateMac {
        /// The MAC address as written.
        mac: String,
        /// The network.
        network: String,
    },
    /// An ARP entry naming a network that is not configured.
    #[error("ARP entry {ip}: no network {network}")]
    ArpEntryNetwork {
        /// The address.
        ip: Ipv4Addr,
        /// The network named.
        network: String,
    },
    /// An ARP entry whose owner is not a unicast MAC.
    #[error("ARP entry {ip}")]
    ArpEntryMac {
        /// The address.
        ip: Ipv4Addr,
        /// Why.
        #[source]
        source: MacError,
    },
    /// Two ARP entries for one address on one network.
    #[error("ARP entry {ip} appears twice in {network}")]
    DuplicateArp {
        /// The address.
        ip: Ipv4Addr,
        /// The network.
        network: String,
    },
    /// A NIC firewall whose MAC is not a unicast MAC.
    #[error("firewall of {mac:?}")]
    FirewallMac {
        /// The MAC address as written.
        mac: String,
        /// Why.
        #[source]
        source: MacError,
    },
    /// Two firewalls for one NIC (network and MAC).
    #[error("NIC {mac} in {network} has two firewalls")]
    DuplicateFirewall {
        /// The MAC address as written.
        mac: String,
        /// The network.
        network: String,
    },
    /// A firewall rule with a remote prefix longer than 32 bits.
    #[error("firewall of {mac}: rule {rule_id} of group {group}: prefix {ip}/{len} is longer than 32 bits")]
    FirewallPrefix {
        /// The NIC's MAC address as written.
        mac: String,
        /// The rule's group.
        group: String,
        /// The rule's id in its group.
        rule_id: u32,
        /// The prefix's address.
        ip: Ipv4Addr,
        /// Its length.
        len: u8,
    },
    /// A firewall rule whose port range ends before it starts.
    #[error("firewall of {mac}: rule {rule_id} of group {group}: ports {first}-{last} end before they start")]
    FirewallPorts {
        /// The NIC's MAC address as written.
        mac: String,
        /// The rule's group.
        group: String,
        /// The rule's id in its group.
        rule_id: u32,
        /// The first port.
        first: u16,
        /// The last port.
        last: u16,
    },
    /// A NIC QoS entry whose MAC is not a unicast MAC.
    #[error("QoS of {mac:?}")]
    QosMac {
        /// The MAC address as written.
        mac: String,
        /// Why.
        #[source]
        source: MacError,
    },
    /// Two QoS entries for one NIC (network and MAC).
    #[error("NIC {mac} in {network} has two QoS entries")]
    DuplicateQos {
        /// The MAC address as written.
        mac: String,
        /// The network.
        network: String,
    },
    /// A NIC's QoS out of bounds (the switch would refuse it).
    #[error("QoS of {mac} in {network}")]
    Qos {
        /// The MAC address as written.
        mac: String,
        /// The network.
        network: String,
        /// What is out of bounds.
        #[source]
        source: vinfra_types::qos::NicQosError,
    },
    /// A router numbered 0.
    #[error("router {0}: number 0 is out of range (1 to 65535)")]
    RouterNumber(String),
    /// Two routers with one number.
    #[error("router number {0} appears twice")]
    DuplicateRouterNumber(u16),
    /// Two routers with one name.
    #[error("router {0} appears twice")]
    DuplicateRouterName(String),
    /// A router interface on a network that is not configured.
    #[error("router {router}: interface on network {network}, which is not configured")]
    InterfaceNetwork {
        /// The router.
        router: String,
        /// The network named.
        network: String,
    },
    /// A second interface on one network (a network attaches to at most one router, once).
    #[error("router {router}: network {network} already has an interface (of router {other})")]
    NetworkRoutedTwice {
        /// The router of the second interface.
        router: String,
        /// The network.
        network: String,
        /// The router of the first.
        other: String,
    },
    /// An interface prefix length outside 1 to 32.
    #[error(
        "router {router}: interface on {network}: prefix length {prefix_len} is out of range \
         (1 to 32)"
    )]
    InterfacePrefixLen {
        /// The router.
        router: String,
        /// The network.
        network: String,
        /// The length.
        prefix_len: u8,
    },
    /// An interface address that cannot be a host's address in its subnet (the subnet's
    /// network or broadcast address, 0.0.0.0, a multicast address).
    #[error(
        "router {router}: interface on {network}: {ip}/{prefix_len} is not a host address of \
         its subnet"
    )]
    InterfaceAddress {
        /// The router.
        router: String,
        /// The network.
        network: String,
        /// The address.
        ip: Ipv4Addr,
        /// The prefix length.
        prefix_len: u8,
    },
    /// An interface MAC that is not a unicast MAC.
    #[error("router {router}: interface on {network}: MAC {mac:?}")]
    InterfaceMac {
        /// The router.
        router: String,
        /// The network.
        network: String,
        /// The MAC address as written.
        mac: String,
        /// Why.
        #[source]
        source: MacError,
    },
    /// A route whose destination is not `a.b.c.d/len` with host bits zero.
    #[error("router {router}: route to {prefix:?}")]
    RoutePrefix {
        /// The router.
        router: String,
        /// The destination as written.
        prefix: String,
        /// Why.
        #[source]
        source: BadPrefix,
    },
    /// Two routes of one router to one destination.
    #[error("router {router}: two routes to {prefix}")]
    DuplicateRoute {
        /// The router.
        router: String,
        /// The destination as written.
        prefix: String,
    },
    /// A route whose next hop is in the subnet of none of its router's interfaces.
    #[error(
        "router {router}: route to {prefix}: next hop {via} is on none of the router's networks"
    )]
    RouteVia {
        /// The router.
        router: String,
        /// The destination as written.
        prefix: String,
        /// The next hop.
        via: Ipv4Addr,
    },
    /// A router's uplink (or one of its floating IPs) that is not usable.
    #[error("router {router}: uplink")]
    Uplink {
        /// The router.
        router: String,
        /// Why.
        #[source]
        source: BadUplink,
    },
    /// Overlay networks on a host whose agent has no underlay address.
    #[error("overlay networks need the host's underlay address (--underlay-ip)")]
    NoUnderlay,
}

/// Checks a configuration from the console: unique names, numbers, VNIs and VIDs; entries that
/// name configured networks and parse; one firewall per NIC, with rules the switch takes (a
/// refused firewall would leave its port open); one QoS per NIC, within its bounds; routers as
/// [`validate_routers`] checks them.
pub fn validate(config: &HostSwitchConfig) -> Result<(), InvalidConfig> {
    use InvalidConfig as E;
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut vnis = BTreeSet::new();
    let mut vids = BTreeSet::new();
    for n in &config.networks {
        let network = || n.name.clone();
        vinfra_types::validate_name(&n.name).map_err(|source| E::BadName {
            name: network(),
            source,
        })?;
        if !names.insert(n.name.as_str()) {
            return Err(E::DuplicateName(network()));
        }
        if !ids.insert(n.id) {
            return Err(E::DuplicateNumber(n.id));
        }
        match n.kind {
            SwitchNetworkKind::Overlay { vni } => {
                // VXLAN's VNI is 24 bits; the console never hands out 0.
                if vni == 0 || vni >= 1 << 24 {
                    return Err(E::VniOutOfRange {
                        network: network(),
                        vni,
                    });
                }
                if !vnis.insert(vni) {
                    return Err(E::VniReused {
                        network: network(),
                        vni,
                    });
                }
                if let Some(&ip) = n
                    .flood
                    .iter()
                    .find(|ip| ip.is_unspecified() || ip.is_broadcast())
                {
                    return Err(E::BadFloodAddress {
                        network: network(),
                        ip,
                    });
                }
            }
            SwitchNetworkKind::Vlan { vid } => {
                if !(1..=4094).contains(&vid) {
                    return Err(E::VlanOutOfRange {
                        network: network(),
                        vid,
                    });
                }
                if !vids.insert(vid) {
                    return Err(E::VlanReused {
                        network: network(),
                        vid,
                    });
                }
                if !n.flood.is_empty() {
                    return Err(E::VlanFlood(network()));
                }
            }
        }
        if n.mtu < MIN_MTU {
            return Err(E::MtuTooSmall {
                network: network(),
                mtu: n.mtu,
            });
        }
    }
    let network = |name: &str| config.networks.iter().find(|n| n.name == name);
    let mut macs = BTreeSet::new();
    for m in &config.macs {
        let Some(n) = network(&m.network) else {
            return Err(E::MacEntryNetwork {
                mac: m.mac.clone(),
                network: m.network.clone(),
            });
        };
        if !matches!(n.kind, SwitchNetworkKind::Overlay { .. }) {
            return Err(E::MacEntryOnVlan {
                mac: m.mac.clone(),
                network: m.network.clone(),
            });
        }
        let mac = mac::unicast(&m.mac).map_err(|source| E::MacEntryMac {
            mac: m.mac.clone(),
            source,
        })?;
        if !macs.insert((n.id, mac)) {
            return Err(E::DuplicateMac {
                mac: m.mac.clone(),
                network: m.network.clone(),
            });
        }
    }
    let mut arps = BTreeSet::new();
    for a in &config.arps {
        let Some(n) = network(&a.network) else {
            return Err(E::ArpEntryNetwork {
                ip: a.ip,
                network: a.network.clone(),
            });
        };
        mac::unicast(&a.mac).map_err(|source| E::ArpEntryMac { ip: a.ip, source })?;
        if !arps.insert((n.id, a.ip)) {
            return Err(E::DuplicateArp {
                ip: a.ip,
                network: a.network.clone(),
            });
        }
    }
    let mut firewalls = BTreeSet::new();
    for f in &config.firewalls {
        let mac = mac::unicast(&f.mac).map_err(|source| E::FirewallMac {
            mac: f.mac.clone(),
            source,
        })?;
        if !firewalls.insert((f.network.as_str(), mac)) {
            return Err(E::DuplicateFirewall {
                mac: f.mac.clone(),
                network: f.network.clone(),
            });
        }
        for r in &f.rules {
            if let Some(&(ip, len)) = r.remotes.iter().find(|(_, len)| *len > 32) {
                return Err(E::FirewallPrefix {
                    mac: f.mac.clone(),
                    group: r.group.clone(),
                    rule_id: r.rule_id,
                    ip,
                    len,
                });
            }
            if let Some((first, last)) = r.ports.filter(|(first, last)| first > last) {
                return Err(E::FirewallPorts {
                    mac: f.mac.clone(),
                    group: r.group.clone(),
                    rule_id: r.rule_id,
                    first,
                    last,
                });
            }
        }
    }
    let mut qos = BTreeSet::new();
    for q in &config.qos {
        let mac = mac::unicast(&q.mac).map_err(|source| E::QosMac {
            mac: q.mac.clone(),
            source,
        })?;
        if !qos.insert((q.network.as_str(), mac)) {
            return Err(E::DuplicateQos {
                mac: q.mac.clone(),
                network: q.network.clone(),
            });
        }
        q.qos.validate().map_err(|source| E::Qos {
            mac: q.mac.clone(),
            network: q.network.clone(),
            source,
        })?;
    }
    validate_routers(config)
}

/// Checks the routers of a configuration: unique names and numbers (1 to 65535); interfaces on
/// configured networks, at most one per network, each with a host address of its subnet (prefix
/// length 1 to 32) and a unicast MAC; uplinks as [`uplink::check`] checks them; routes to
/// `a.b.c.d/len` (host bits zero), one per destination, each with a next hop in the subnet of
/// one of its router's interfaces or of its uplink.
pub fn validate_routers(config: &HostSwitchConfig) -> Result<(), InvalidConfig> {
    use InvalidConfig as E;
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    // Each routed network, with the router of its interface.
    let mut routed: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &config.routers {
        let router = || r.name.clone();
        if r.id == 0 {
            return Err(E::RouterNumber(router()));
        }
        if !names.insert(r.name.as_str()) {
            return Err(E::DuplicateRouterName(router()));
        }
        if !ids.insert(r.id) {
            return Err(E::DuplicateRouterNumber(r.id));
        }
        for i in &r.interfaces {
            let network = || i.network.clone();
            if !config.networks.iter().any(|n| n.name == i.network) {
                return Err(E::InterfaceNetwork {
                    router: router(),
                    network: network(),
                });
            }
            if let Some(other) = routed.insert(&i.network, &r.name) {
                return Err(E::NetworkRoutedTwice {
                    router: router(),
                    network: network(),
                    other: other.to_string(),
                });
            }
            if !(1..=32).contains(&i.prefix_len) {
                return Err(E::InterfacePrefixLen {
                    router: router(),
                    network: network(),
                    prefix_len: i.prefix_len,
                });
            }
            if !route::is_host_address(i.ip, i.prefix_len) {
                return Err(E::InterfaceAddress {
                    router: router(),
                    network: network(),
                    ip: i.ip,
                    prefix_len: i.prefix_len,
                });
            }
            mac::unicast(&i.mac).map_err(|source| E::InterfaceMac {
                router: router(),
                network: network(),
                mac: i.mac.clone(),
                source,
            })?;
        }
    }
    // Uplinks before routes: a route's next hop may be on the uplink's subnet.
    uplink::check(config).map_err(|(router, source)| E::Uplink { router, source })?;
    for r in &config.routers {
        let router = || r.name.clone();
        let mut prefixes = BTreeSet::new();
        for rt in &r.routes {
            let p = route::parse_prefix(&rt.prefix).map_err(|source| E::RoutePrefix {
                router: router(),
                prefix: rt.prefix.clone(),
                source,
            })?;
            if !prefixes.insert((p.ip, p.prefix_len)) {
                return Err(E::DuplicateRoute {
                    router: router(),
                    prefix: rt.prefix.clone(),
                });
            }
            if !r
                .interfaces
                .iter()
                .any(|i| route::contains(i.ip, i.prefix_len, rt.via))
                && !r
                    .uplink
                    .as_ref()
                    .is_some_and(|u| route::contains(u.ip, u.prefix_len, rt.via))
            {
                return Err(E::RouteVia {
                    router: router(),
                    prefix: rt.prefix.clone(),
                    via: rt.via,
                });
            }
        }
    }
    Ok(())
}
