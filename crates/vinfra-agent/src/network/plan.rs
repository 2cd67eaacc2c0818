//! [`plan`]: the requests that turn the switch's configuration into the desired one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use vinfra_switch_control::{Attachment, LocationSpec, PortSpec, PrefixSpec, Request};

use super::route::contains;

/// The network an access port is attached to.
pub(crate) fn port_network(spec: &PortSpec) -> Option<u32> {
    match &spec.attach {
        Attachment::Vm { network, .. }
        | Attachment::VmTap { network, .. }
        | Attachment::Interface { network, .. }
        | Attachment::Host { network, .. }
        | Attachment::VmVlan { network, .. } => Some(*network),
        Attachment::VxlanUplink { .. } | Attachment::VlanTrunk { .. } => None,
    }
}

/// The VM port a sub-interface belongs to.
fn parent_port(spec: &PortSpec) -> Option<u32> {
    match &spec.attach {
        Attachment::VmVlan { parent, .. } => Some(*parent),
        _ => None,
    }
}

/// The requests that turn the switch's configuration `current` (as `get_config` reports it)
/// into `desired`: removals first (DHCP responders no longer wanted on a network that stays,
/// ARP entries, static routes and floating IPs, MAC entries, router interfaces and uplinks,
/// ports, networks, routers; a network that goes takes everything on it along, to be re-added
/// if still wanted), then every desired request the switch does not have yet, in `desired`'s
/// order. A port's policy, firewall and QoS go with their port (a changed one is set again,
/// alone); an expected MAC move no longer wanted is withdrawn (unless its entry goes). A
/// router's interfaces, uplink, floating IPs and routes go with it; a route goes with the
/// interface or uplink whose subnet holds its next hop (removed before it, added again after
/// it); floating IPs go with their uplink. A changed interface (same network), uplink (same
/// network: another edge, say), floating IP (same external address) or route (same router and
/// destination) is set again, which replaces it, unless what it needs goes; an uplink that
/// changes its subnet takes its floating IPs and the routes through it along (removed before
/// it, added again after it), one that keeps it keeps them. Requests that the agent does not
/// manage (`set_settings`, `set_vtep_mac`) are left alone.
pub fn plan(current: &[Request], desired: &[Request]) -> Vec<Request> {
    let wanted = |r: &Request| desired.contains(r);
    let gone_networks: BTreeSet<u32> = current
        .iter()
        .filter_map(|r| match r {
            Request::AddNetwork { id, .. } if !wanted(r) => Some(*id),
            _ => None,
        })
        .collect();
    let mut gone_ports: BTreeSet<u32> = current
        .iter()
        .filter_map(|r| match r {
            Request::AddPort(p)
                if !wanted(r) || port_network(p).is_some_and(|n| gone_networks.contains(&n)) =>
            {
                Some(p.id)
            }
            _ => None,
        })
        .collect();
    // A VM port's sub-interfaces go with it (the switch removes them along: they are not
    // removed on their own, and are added again if still wanted).
    let with_parent: BTreeSet<u32> = current
        .iter()
        .filter_map(|r| match r {
            Request::AddPort(p) if parent_port(p).is_some_and(|q| gone_ports.contains(&q)) => {
                Some(p.id)
            }
            _ => None,
        })
        .collect();
    gone_ports.extend(&with_parent);
    let gone_routers: BTreeSet<u32> = current
        .iter()
        .filter_map(|r| match r {
            Request::AddRouter { id } if !wanted(r) => Some(*id),
            _ => None,
        })
        .collect();
    // An interface stays as it is, with its network and router.
    let interface_stays = |r: &Request| match r {
        Request::SetRouterInterface {
            router, network, ..
        } => wanted(r) && !gone_networks.contains(network) && !gone_routers.contains(router),
        _ => true,
    };
    // The router's uplink on `network` (as the switch has it) is set again if it changed, not
    // removed: its network and router stay, and it stays on that network.
    let uplink_replaced = |router: u32, network: u32| {
        !gone_networks.contains(&network)
            && !gone_routers.contains(&router)
            && desired.iter().any(|d| {
                matches!(d, Request::SetRouterUplink { router: r, network: n, .. }
                    if *r == router && *n == network)
            })
    };
    // The router's uplink (as the switch has it) stays, as it is or set again, in the same
    // subnet: its floating IPs and the routes through it stay with it.
    let uplink_keeps_subnet = |router: u32| {
        current.iter().any(|c| match c {
            Request::SetRouterUplink {
                router: r,
                network,
                ip,
                prefix_len,
                ..
            } if *r == router => {
                uplink_replaced(router, *network)
                    && desired.iter().any(|d| {
                        matches!(d, Request::SetRouterUplink {
                            router: dr, network: dn, ip: di, prefix_len: dl, ..
                        } if *dr == router && dn == network && dl == prefix_len
                            && contains(*ip, *prefix_len, *di))
                    })
            }
            _ => false,
        })
    };
    // The interfaces and the uplink a route's next hop is on (as the switch has them) all stay.
    let route_needs_stay = |router: u32, via: Ipv4Addr| {
        current.iter().all(|c| match c {
            Request::SetRouterInterface {
                router: r,
                ip,
                prefix_len,
                ..
            } if *r == router && contains(*ip, *prefix_len, via) => interface_stays(c),
            Request::SetRouterUplink {
                router: r,
                ip,
                prefix_len,
                ..
            } if *r == router && contains(*ip, *prefix_len, via) => uplink_keeps_subnet(router),
            _ => true,
        })
    };
    let stays = |r: &Request| {
        wanted(r)
            && match r {
                Request::SetRouterInterface { .. } => interface_stays(r),
                Request::SetRouterUplink {
                    router, network, ..
                } => !gone_routers.contains(router) && !gone_networks.contains(network),
                Request::AddFloatingIp { router, .. } => uplink_keeps_subnet(*router),
                Request::AddRoute { router, via, .. } => {
                    !gone_routers.contains(router) && route_needs_stay(*router, *via)
                }
                Request::AddPort(p) => !gone_ports.contains(&p.id),
                Request::AddMacEntry {
                    network, location, ..
                } => {
                    !gone_networks.contains(network)
                        && !matches!(location, LocationSpec::Port(p) if gone_ports.contains(p))
                }
                Request::AddArpEntry { network, .. }
                | Request::SetFloodList { network, .. }
                | Request::SetDhcp { network, .. } => !gone_networks.contains(network),
                Request::SetPortPolicy { port, .. }
                | Request::SetPortFirewall { port, .. }
                | Request::SetPortQos { port, .. } => !gone_ports.contains(port),
                // Setting the MAC entry again withdraws the expectation: it stays only with
                // its entry.
                Request::ExpectMacMove { network, mac, .. } => {
                    !gone_networks.contains(network)
                        && current.iter().any(|c| {
                            matches!(c, Request::AddMacEntry { network: n, mac: m, .. }
                                if n == network && m == mac)
                                && wanted(c)
                        })
                }
                _ => true,
            }
    };
    // The entry stays as it is (set again, it drops its expectation by itself).
    let entry_stays = |network: u32, mac: vinfra_switch_control::Mac| {
        current.iter().any(|r| {
            matches!(r, Request::AddMacEntry { network: n, mac: m, .. } if *n == network && *m == mac)
                && wanted(r)
        })
    };
    let move_wanted = |network: u32, mac: vinfra_switch_control::Mac| {
        desired.iter().any(|r| {
            matches!(r, Request::ExpectMacMove { network: n, mac: m, to: Some(_) } if *n == network && *m == mac)
        })
    };
    let dhcp_wanted = |network: u32| {
        desired
            .iter()
            .any(|r| matches!(r, Request::SetDhcp { network: n, config: Some(_) } if *n == network))
    };
    // Set again (replaced) rather than removed: a changed interface whose network and router
    // stay, a changed route whose router and interfaces stay.
    let interface_replaced = |router: u32, network: u32| {
        !gone_networks.contains(&network)
            && !gone_routers.contains(&router)
            && desired.iter().any(
                |d| matches!(d, Request::SetRouterInterface { network: n, .. } if *n == network),
            )
    };
    let route_replaced = |router: u32, prefix: &PrefixSpec, via: Ipv4Addr| {
        !gone_routers.contains(&router)
            && route_needs_stay(router, via)
            && desired.iter().any(
                |d| matches!(d, Request::AddRoute { router: r, prefix: p, .. } if *r == router && p == prefix),
            )
    };
    let floating_replaced = |router: u32, external: Ipv4Addr| {
        uplink_keeps_subnet(router)
            && desired.iter().any(|d| {
                matches!(d, Request::AddFloatingIp { router: r, external: e, .. }
                    if *r == router && *e == external)
            })
    };
    let kept: Vec<&Request> = current.iter().filter(|r| stays(r)).collect();
    let mut out = Vec::new();
    for phase in 0..5 {
        for r in current.iter().filter(|r| !kept.contains(r)) {
            let undo = match (phase, r) {
                (0, Request::SetDhcp { network, .. })
                    if !gone_networks.contains(network) && !dhcp_wanted(*network) =>
                {
                    Request::SetDhcp {
                        network: *network,
                        config: None,
                    }
                }
                (0, Request::AddArpEntry { network, ip, .. }) => Request::RemoveArpEntry {
                    network: *network,
                    ip: *ip,
                },
                (
                    0,
                    Request::AddRoute {
                        router,
                        prefix,
                        via,
                    },
                ) if !route_replaced(*router, prefix, *via) => Request::RemoveRoute {
                    router: *router,
                    prefix: *prefix,
                },
                (
                    0,
                    Request::AddFloatingIp {
                        router, external, ..
                    },
                ) if !floating_replaced(*router, *external) => Request::RemoveFloatingIp {
                    router: *router,
                    external: *external,
                },
                (
                    1,
                    Request::SetRouterInterface {
                        router, network, ..
                    },
                ) if !interface_replaced(*router, *network) => {
                    Request::RemoveRouterInterface { network: *network }
                }
                (
                    1,
                    Request::SetRouterUplink {
                        router, network, ..
                    },
                ) if !uplink_replaced(*router, *network) => {
                    Request::RemoveRouterUplink { router: *router }
                }
                (
                    1,
                    Request::ExpectMacMove {
                        network,
                        mac,
                        to: Some(_),
                    },
                ) if !gone_networks.contains(network)
                    && entry_stays(*network, *mac)
                    && !move_wanted(*network, *mac) =>
                {
                    Request::ExpectMacMove {
                        network: *network,
                        mac: *mac,
                        to: None,
                    }
                }
                (1, Request::AddMacEntry { network, mac, .. }) => Request::RemoveMacEntry {
                    network: *network,
                    mac: *mac,
                },
                (2, Request::AddPort(p)) if !with_parent.contains(&p.id) => {
                    Request::RemovePort { id: p.id }
                }
                (3, Request::AddNetwork { id, .. }) => Request::RemoveNetwork { id: *id },
                (4, Request::AddRouter { id }) => Request::RemoveRouter { id: *id },
                _ => continue,
            };
            out.push(undo);
        }
    }
    out.extend(desired.iter().filter(|r| !kept.contains(r)).cloned());
    out
}
