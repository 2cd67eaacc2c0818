//! [`plan`]: the requests that turn the switch's configuration into the desired one.

use std::collections::BTreeSet;

use vinfra_switch_control::{Attachment, LocationSpec, PortSpec, Request};

/// The network an access port is attached to.
pub(crate) fn port_network(spec: &PortSpec) -> Option<u32> {
    match &spec.attach {
        Attachment::Vm { network, .. } | Attachment::Host { network, .. } => Some(*network),
        Attachment::VxlanUplink { .. } | Attachment::VlanTrunk { .. } => None,
    }
}

/// The requests that turn the switch's configuration `current` (as `get_config` reports it)
/// into `desired`: removals first (DHCP responders no longer wanted on a network that stays,
/// ARP entries, MAC entries, ports, networks; a network that goes takes everything on it along,
/// to be re-added if still wanted), then every desired
/// request the switch does not have yet, in `desired`'s order. A port's policy goes with its
/// port; an expected MAC move no longer wanted is withdrawn (unless its entry goes). Requests
/// that the agent does not manage (`set_settings`, `set_vtep_mac`) are left alone.
pub fn plan(current: &[Request], desired: &[Request]) -> Vec<Request> {
    let wanted = |r: &Request| desired.contains(r);
    let gone_networks: BTreeSet<u32> = current
        .iter()
        .filter_map(|r| match r {
            Request::AddNetwork { id, .. } if !wanted(r) => Some(*id),
            _ => None,
        })
        .collect();
    let gone_ports: BTreeSet<u32> = current
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
    let stays = |r: &Request| {
        wanted(r)
            && match r {
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
                Request::SetPortPolicy { port, .. } => !gone_ports.contains(port),
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
    let kept: Vec<&Request> = current.iter().filter(|r| stays(r)).collect();
    let mut out = Vec::new();
    for phase in 0..4 {
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
                (2, Request::AddPort(p)) => Request::RemovePort { id: p.id },
                (3, Request::AddNetwork { id, .. }) => Request::RemoveNetwork { id: *id },
                _ => continue,
            };
            out.push(undo);
        }
    }
    out.extend(desired.iter().filter(|r| !kept.contains(r)).cloned());
    out
}
