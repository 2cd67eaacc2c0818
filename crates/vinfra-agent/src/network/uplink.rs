//! Router uplinks: the checks of the console's uplinks and floating IPs, and the requests that
//! carry them to the switch.
//!
//! An uplink is a router's address on an external network (a VLAN network of the trunk). Its
//! north-south traffic is translated on one host, the edge: the host whose underlay (VTEP)
//! address is the uplink's `edge_vtep`. This host's switch gets [`EdgeSpec::Local`] when that
//! address is its own underlay address, else [`EdgeSpec::Remote`] with it, so a change of edge
//! host is a change of the `SetRouterUplink` request on every host (one replace, no gap).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use vinfra_proto::{HostSwitchConfig, SwitchNetwork, SwitchNetworkKind, SwitchRouterUplink};
use vinfra_switch_control::{EdgeSpec, Request};

use super::mac::{self, MacError};
use super::route;

/// Largest transit VNI (VXLAN's VNI is 24 bits).
pub const MAX_TRANSIT_VNI: u32 = (1 << 24) - 1;

/// Why a router's uplink from the console is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUplink {
    /// The external network is not in the configuration.
    #[error("network {0} is not configured")]
    Network(String),
    /// The external network is an overlay network.
    #[error("network {0} is not a VLAN network")]
    NotVlan(String),
    /// The external network carries a router's interface (a distributed gateway).
    #[error("network {network} carries an interface of router {router}")]
    NetworkRouted {
        /// The network.
        network: String,
        /// The router whose interface it carries.
        router: String,
    },
    /// A prefix length outside 1 to 32.
    #[error("prefix length {0} is out of range (1 to 32)")]
    PrefixLen(u8),
    /// An uplink address that cannot be a host's address in its subnet.
    #[error("{ip}/{prefix_len} is not a host address of its subnet")]
    Address {
        /// The address.
        ip: Ipv4Addr,
        /// The prefix length.
        prefix_len: u8,
    },
    /// An address (the uplink's or a floating IP) that another router's uplink already has on
    /// the same external network.
    #[error("{ip} on network {network} is also an address of router {other}")]
    AddressTaken {
        /// The address.
        ip: Ipv4Addr,
        /// The external network.
        network: String,
        /// The router that has it.
        other: String,
    },
    /// An uplink MAC that is not a unicast MAC.
    #[error("MAC {mac:?}")]
    Mac {
        /// The MAC address as written.
        mac: String,
        /// Why.
        #[source]
        source: MacError,
    },
    /// An edge address that is no host's underlay address.
    #[error("edge {0} is not a host's underlay address")]
    EdgeVtep(Ipv4Addr),
    /// A transit VNI of 0 or above 24 bits.
    #[error("transit VNI {0} is out of range (1 to {MAX_TRANSIT_VNI})")]
    TransitVni(u32),
    /// A transit VNI that is a network's VNI.
    #[error("transit VNI {vni} is the VNI of network {network}")]
    TransitVniOfNetwork {
        /// The VNI.
        vni: u32,
        /// The network.
        network: String,
    },
    /// A transit VNI that is another router's.
    #[error("transit VNI {vni} is also the transit VNI of router {other}")]
    TransitVniReused {
        /// The VNI.
        vni: u32,
        /// The other router.
        other: String,
    },
    /// A floating IP outside the uplink's subnet.
    #[error("floating IP {external} is outside the uplink's subnet {ip}/{prefix_len}")]
    FloatingOutside {
        /// The floating IP.
        external: Ipv4Addr,
        /// The uplink's address.
        ip: Ipv4Addr,
        /// The uplink's prefix length.
        prefix_len: u8,
    },
    /// A floating IP that is the uplink's own address, or the subnet's network or broadcast
    /// address.
    #[error("floating IP {0} is not a free host address of the uplink's subnet")]
    FloatingAddress(Ipv4Addr),
    /// Two floating IPs with one external address.
    #[error("floating IP {0} appears twice")]
    DuplicateFloating(Ipv4Addr),
    /// A floating IP whose inner address is on none of the router's networks (or is no host's
    /// address).
    #[error("floating IP {external}: {internal} is on none of the router's networks")]
    FloatingInternal {
        /// The floating IP.
        external: Ipv4Addr,
        /// The inner address.
        internal: Ipv4Addr,
    },
    /// Two floating IPs for one inner address (1:1 NAT: its packets would leave from both).
    #[error("floating IPs {first} and {second} both translate {internal}")]
    InternalTwice {
        /// The inner address.
        internal: Ipv4Addr,
        /// The first floating IP.
        first: Ipv4Addr,
        /// The second.
        second: Ipv4Addr,
    },
}

/// Checks the uplinks of a configuration's routers: each on a configured VLAN network that
/// carries no router interface, with a host address of its subnet (prefix length 1 to 32) that
/// no other router has there, a unicast MAC, an edge address that can be a host's, a transit VNI
/// of 1 to 2^24 - 1 that is no network's and no other router's; floating IPs in the uplink's
/// subnet (not its network, broadcast or own address), each once and no other router's there,
/// each translating its own address of one of the router's interface subnets. The error names
/// the router.
pub fn check(config: &HostSwitchConfig) -> Result<(), (String, BadUplink)> {
    use BadUplink as E;
    // Networks with an interface, with the router of it.
    let routed: BTreeMap<&str, &str> = config
        .routers
        .iter()
        .flat_map(|r| {
            r.interfaces
                .iter()
                .map(|i| (i.network.as_str(), r.name.as_str()))
        })
        .collect();
    // Addresses on each external network, with the router that has them.
    let mut taken: BTreeMap<(&str, Ipv4Addr), &str> = BTreeMap::new();
    let mut transit: BTreeMap<u32, &str> = BTreeMap::new();
    for r in &config.routers {
        let Some(u) = &r.uplink else { continue };
        let fail = |e| (r.name.clone(), e);
        let Some(n) = config.networks.iter().find(|n| n.name == u.network) else {
            return Err(fail(E::Network(u.network.clone())));
        };
        if !matches!(n.kind, SwitchNetworkKind::Vlan { .. }) {
            return Err(fail(E::NotVlan(u.network.clone())));
        }
        if let Some(router) = routed.get(u.network.as_str()) {
            return Err(fail(E::NetworkRouted {
                network: u.network.clone(),
                router: router.to_string(),
            }));
        }
        if !(1..=32).contains(&u.prefix_len) {
            return Err(fail(E::PrefixLen(u.prefix_len)));
        }
        if !route::is_host_address(u.ip, u.prefix_len) {
            return Err(fail(E::Address {
                ip: u.ip,
                prefix_len: u.prefix_len,
            }));
        }
        mac::unicast(&u.mac).map_err(|source| {
            fail(E::Mac {
                mac: u.mac.clone(),
                source,
            })
        })?;
        if !route::is_host_address(u.edge_vtep, 32) {
            return Err(fail(E::EdgeVtep(u.edge_vtep)));
        }
        check_transit(config, u, &r.name, &mut transit).map_err(fail)?;
        let mut claim = |ip: Ipv4Addr| match taken.insert((u.network.as_str(), ip), &r.name) {
            Some(other) if other != r.name => Err(fail(E::AddressTaken {
                ip,
                network: u.network.clone(),
                other: other.to_string(),
            })),
            Some(_) => Err(fail(E::DuplicateFloating(ip))),
            None => Ok(()),
        };
        claim(u.ip)?;
        let mut internals: BTreeMap<Ipv4Addr, Ipv4Addr> = BTreeMap::new();
        for f in &u.floating_ips {
            if !route::contains(u.ip, u.prefix_len, f.external) {
                return Err(fail(E::FloatingOutside {
                    external: f.external,
                    ip: u.ip,
                    prefix_len: u.prefix_len,
                }));
            }
            if f.external == u.ip || !route::is_host_address(f.external, u.prefix_len) {
                return Err(fail(E::FloatingAddress(f.external)));
            }
            claim(f.external)?;
            let inside = r
                .interfaces
                .iter()
                .find(|i| route::contains(i.ip, i.prefix_len, f.internal));
            if !inside.is_some_and(|i| {
                f.internal != i.ip && route::is_host_address(f.internal, i.prefix_len)
            }) {
                return Err(fail(E::FloatingInternal {
                    external: f.external,
                    internal: f.internal,
                }));
            }
            if let Some(first) = internals.insert(f.internal, f.external) {
                return Err(fail(E::InternalTwice {
                    internal: f.internal,
                    first,
                    second: f.external,
                }));
            }
        }
    }
    Ok(())
}

/// Checks the transit VNI of `router`'s uplink `u` and records it in `transit`.
fn check_transit<'a>(
    config: &HostSwitchConfig,
    u: &SwitchRouterUplink,
    router: &'a str,
    transit: &mut BTreeMap<u32, &'a str>,
) -> Result<(), BadUplink> {
    let vni = u.transit_vni;
    if vni == 0 || vni > MAX_TRANSIT_VNI {
        return Err(BadUplink::TransitVni(vni));
    }
    if let Some(n) = config
        .networks
        .iter()
        .find(|n| n.kind == SwitchNetworkKind::Overlay { vni })
    {
        return Err(BadUplink::TransitVniOfNetwork {
            vni,
            network: n.name.clone(),
        });
    }
    if let Some(other) = transit.insert(vni, router) {
        return Err(BadUplink::TransitVniReused {
            vni,
            other: other.to_string(),
        });
    }
    Ok(())
}

/// Where the router's north-south traffic is translated, as this host's switch takes it: here
/// when `edge_vtep` is this host's underlay address, else at that address.
pub fn edge(edge_vtep: Ipv4Addr, underlay_ip: Option<Ipv4Addr>) -> EdgeSpec {
    if Some(edge_vtep) == underlay_ip {
        EdgeSpec::Local
    } else {
        EdgeSpec::Remote { vtep: edge_vtep }
    }
}

/// The requests of the configuration's uplinks, in an order that applies (after the routers
/// and their interfaces): every uplink (`SetRouterUplink`, the external network's MTU), then
/// every floating IP. An uplink that does not parse (the configuration was validated) is left
/// out with its floating IPs.
pub fn requests(
    config: &HostSwitchConfig,
    by_name: &BTreeMap<&str, &SwitchNetwork>,
    underlay_ip: Option<Ipv4Addr>,
) -> Vec<Request> {
    let uplinks: Vec<(u32, &SwitchRouterUplink, Request)> = config
        .routers
        .iter()
        .filter_map(|r| {
            let u = r.uplink.as_ref()?;
            let n = by_name.get(u.network.as_str())?;
            let mac = mac::unicast(&u.mac).ok()?;
            let router = u32::from(r.id);
            Some((
                router,
                u,
                Request::SetRouterUplink {
                    router,
                    network: u32::from(n.id),
                    ip: u.ip,
                    prefix_len: u.prefix_len,
                    mac,
                    edge: edge(u.edge_vtep, underlay_ip),
                    transit_vni: u.transit_vni,
                    mtu: Some(n.mtu),
                },
            ))
        })
        .collect();
    let floating: Vec<Request> = uplinks
        .iter()
        .flat_map(|(router, u, _)| {
            u.floating_ips.iter().map(|f| Request::AddFloatingIp {
                router: *router,
                external: f.external,
                internal: f.internal,
            })
        })
        .collect();
    uplinks
        .into_iter()
        .map(|(_, _, set)| set)
        .chain(floating)
        .collect()
}
