//! The configuration applied through the control socket (the daemon's own uplink aside), kept
//! to answer `get_config` with requests that rebuild it, in an order that applies: settings
//! (flow accounting among them),
//! networks, ports, what refers to them (flood lists, MAC and ARP entries, DHCP, expected
//! moves, port policies, firewalls and QoS, underlay peers), then routers, their interfaces,
//! their routes, their uplinks and floating IPs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vinfra_switch_control::{
    DhcpSpec, FirewallRuleSpec, LocationSpec, Mac, NetworkSpec, PortPolicySpec, PortSpec,
    PrefixSpec, QosSpec, Request,
};

/// A router's interface on a network as requested: router, address, prefix length, MAC, MTU.
type Interface = (u32, Ipv4Addr, u8, Mac, Option<u16>);

#[derive(Default)]
pub(super) struct AppliedConfig {
    settings: Option<(u64, usize)>,
    /// Flow accounting: enabled, the table's bound.
    flows: Option<(bool, Option<u64>)>,
    networks: BTreeMap<u32, NetworkSpec>,
    flood: BTreeMap<u32, Vec<Ipv4Addr>>,
    macs: BTreeMap<(u32, Mac), LocationSpec>,
    arps: BTreeMap<(u32, Ipv4Addr), Mac>,
    vtep_macs: BTreeMap<Ipv4Addr, Mac>,
    dhcp: BTreeMap<u32, DhcpSpec>,
    policies: BTreeMap<u32, PortPolicySpec>,
    firewalls: BTreeMap<u32, Option<Vec<FirewallRuleSpec>>>,
    qos: BTreeMap<u32, Option<QosSpec>>,
    peers: Option<Vec<Ipv4Addr>>,
    moves: BTreeMap<(u32, Mac), Ipv4Addr>,
    routers: BTreeSet<u32>,
    /// By network.
    interfaces: BTreeMap<u32, Interface>,
    /// By router and prefix: the next hop.
    routes: BTreeMap<(u32, Ipv4Addr, u8), Ipv4Addr>,
    /// By router: its `SetRouterUplink` request.
    uplinks: BTreeMap<u32, Request>,
    /// By router and external address: the internal address.
    floating: BTreeMap<(u32, Ipv4Addr), Ipv4Addr>,
}

impl AppliedConfig {
    /// Records a request the switch applied (ports and QoS have their own calls; actions and
    /// queries change nothing).
    pub(super) fn record(&mut self, request: Request) {
        match request {
            Request::AddNetwork { id, kind } => {
                self.networks.insert(id, kind);
            }
            Request::RemoveNetwork { id } => {
                self.networks.remove(&id);
                self.flood.remove(&id);
                self.macs.retain(|(n, _), _| *n != id);
                self.moves.retain(|(n, _), _| *n != id);
                self.arps.retain(|(n, _), _| *n != id);
                self.dhcp.remove(&id);
                // Its gateway, or a router's uplink on it, goes with it.
                self.interfaces.remove(&id);
                let gone: Vec<u32> = self
                    .uplinks
                    .iter()
                    .filter(|(_, r)| {
                        matches!(r, Request::SetRouterUplink { network, .. } if *network == id)
                    })
                    .map(|(&router, _)| router)
                    .collect();
                for router in gone {
                    self.remove_uplink(router);
                }
            }
            Request::SetDhcp { network, config } => match config {
                Some(c) => {
                    self.dhcp.insert(network, c);
                }
                None => {
                    self.dhcp.remove(&network);
                }
            },
            Request::SetFloodList { network, vteps } => {
                self.flood.insert(network, vteps);
            }
            Request::AddMacEntry {
                network,
                mac,
                location,
            } => {
                self.macs.insert((network, mac), location);
                self.moves.remove(&(network, mac));
            }
            Request::RemoveMacEntry { network, mac } => {
                self.macs.remove(&(network, mac));
                self.moves.remove(&(network, mac));
            }
            Request::ExpectMacMove { network, mac, to } => match to {
                Some(to) => {
                    self.moves.insert((network, mac), to);
                }
                None => {
                    self.moves.remove(&(network, mac));
                }
            },
            Request::SetPortPolicy { port, policy } => {
                self.policies.insert(port, policy);
            }
            Request::SetPortFirewall { port, rules } => {
                self.firewalls.insert(port, rules);
            }
            Request::SetUnderlayPeers { peers } => self.peers = peers,
            Request::AddArpEntry { network, ip, mac } => {
                self.arps.insert((network, ip), mac);
            }
            Request::RemoveArpEntry { network, ip } => {
                self.arps.remove(&(network, ip));
            }
            Request::SetVtepMac { vtep, mac } => {
                self.vtep_macs.insert(vtep, mac);
            }
            Request::SetSettings {
                mac_ageing_secs,
                mac_learn_limit,
            } => self.settings = Some((mac_ageing_secs, mac_learn_limit)),
            Request::SetFlowAccounting { enabled, max_flows } => {
                self.flows = Some((enabled, max_flows));
            }
            Request::AddRouter { id } => {
                self.routers.insert(id);
            }
            Request::RemoveRouter { id } => {
                self.routers.remove(&id);
                self.interfaces.retain(|_, (router, ..)| *router != id);
                self.routes.retain(|(router, ..), _| *router != id);
                self.remove_uplink(id);
            }
            Request::SetRouterInterface {
                router,
                network,
                ip,
                prefix_len,
                mac,
                mtu,
            } => {
                self.interfaces
                    .insert(network, (router, ip, prefix_len, mac, mtu));
            }
            Request::RemoveRouterInterface { network } => {
                self.interfaces.remove(&network);
            }
            Request::AddRoute {
                router,
                prefix,
                via,
            } => {
                self.routes
                    .insert((router, prefix.ip, prefix.prefix_len), via);
            }
            Request::RemoveRoute { router, prefix } => {
                self.routes.remove(&(router, prefix.ip, prefix.prefix_len));
            }
            // Connections and a migrating VM's redirect are state, not configuration (a redirect
            // lapses by itself); reverting moves puts entries back where they are recorded here.
            Request::ImportConnections { .. }
            | Request::RevertMacMoves
            | Request::RedirectMac { .. } => {}
            Request::SetRouterUplink {
                router,
                network,
                ip,
                prefix_len,
                mac,
                edge,
                transit_vni,
                mtu,
            } => {
                // The switch keeps the floating IPs that still lie in the new subnet.
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix_len.min(32)))
                    .unwrap_or(0);
                let subnet = u32::from(ip) & mask;
                self.floating.retain(|&(r, external), _| {
                    r != router
                        || (u32::from(external) & mask == subnet
                            && external != ip
                            && (prefix_len > 30
                                || (u32::from(external) & !mask != 0
                                    && u32::from(external) & !mask != !mask)))
                });
                self.uplinks.insert(
                    router,
                    Request::SetRouterUplink {
                        router,
                        network,
                        ip,
                        prefix_len,
                        mac,
                        edge,
                        transit_vni,
                        mtu,
                    },
                );
            }
            Request::RemoveRouterUplink { router } => self.remove_uplink(router),
            Request::AddFloatingIp {
                router,
                external,
                internal,
            } => {
                self.floating.insert((router, external), internal);
            }
            Request::RemoveFloatingIp { router, external } => {
                self.floating.remove(&(router, external));
            }
            Request::Ping
            | Request::GetConfig
            | Request::GetCounters
            | Request::TakeFlows
            | Request::ExportConnections { .. }
            | Request::SetPortQos { .. }
            | Request::AddPort(_)
            | Request::RemovePort { .. } => {}
        }
    }

    /// Forgets a router's uplink and its floating IPs.
    fn remove_uplink(&mut self, router: u32) {
        self.uplinks.remove(&router);
        self.floating.retain(|(r, _), _| *r != router);
    }

    /// Records a port's QoS.
    pub(super) fn set_qos(&mut self, port: u32, qos: Option<QosSpec>) {
        self.qos.insert(port, qos);
    }

    /// Forgets what goes with a removed port.
    pub(super) fn remove_port(&mut self, id: u32) {
        self.macs
            .retain(|_, location| *location != LocationSpec::Port(id));
        self.policies.remove(&id);
        self.firewalls.remove(&id);
        self.qos.remove(&id);
    }

    /// Requests that rebuild the configuration, with `ports` (in an order that applies) after
    /// the networks; `open` says whether a port is still there.
    pub(super) fn requests(&self, ports: &[PortSpec], open: impl Fn(u32) -> bool) -> Vec<Request> {
        let mut out = Vec::new();
        if let Some((mac_ageing_secs, mac_learn_limit)) = self.settings {
            out.push(Request::SetSettings {
                mac_ageing_secs,
                mac_learn_limit,
            });
        }
        if let Some((enabled, max_flows)) = self.flows {
            out.push(Request::SetFlowAccounting { enabled, max_flows });
        }
        out.extend(
            self.networks
                .iter()
                .map(|(&id, &kind)| Request::AddNetwork { id, kind }),
        );
        out.extend(ports.iter().cloned().map(Request::AddPort));
        out.extend(
            self.vtep_macs
                .iter()
                .map(|(&vtep, &mac)| Request::SetVtepMac { vtep, mac }),
        );
        out.extend(
            self.flood
                .iter()
                .map(|(&network, vteps)| Request::SetFloodList {
                    network,
                    vteps: vteps.clone(),
                }),
        );
        out.extend(
            self.macs
                .iter()
                .map(|(&(network, mac), &location)| Request::AddMacEntry {
                    network,
                    mac,
                    location,
                }),
        );
        out.extend(
            self.arps
                .iter()
                .map(|(&(network, ip), &mac)| Request::AddArpEntry { network, ip, mac }),
        );
        out.extend(self.dhcp.iter().map(|(&network, &c)| Request::SetDhcp {
            network,
            config: Some(c),
        }));
        out.extend(
            self.moves
                .iter()
                .map(|(&(network, mac), &to)| Request::ExpectMacMove {
                    network,
                    mac,
                    to: Some(to),
                }),
        );
        out.extend(
            self.policies
                .iter()
                .filter(|(id, _)| open(**id))
                .map(|(&port, policy)| Request::SetPortPolicy {
                    port,
                    policy: policy.clone(),
                }),
        );
        out.extend(
            self.firewalls
                .iter()
                .filter(|(id, _)| open(**id))
                .map(|(&port, rules)| Request::SetPortFirewall {
                    port,
                    rules: rules.clone(),
                }),
        );
        out.extend(
            self.qos
                .iter()
                .filter(|(id, _)| open(**id))
                .map(|(&port, qos)| Request::SetPortQos {
                    port,
                    qos: qos.clone(),
                }),
        );
        if let Some(peers) = &self.peers {
            out.push(Request::SetUnderlayPeers {
                peers: Some(peers.clone()),
            });
        }
        // Routers after the networks, their interfaces after the routers, routes last.
        out.extend(self.routers.iter().map(|&id| Request::AddRouter { id }));
        out.extend(self.interfaces.iter().map(
            |(&network, &(router, ip, prefix_len, mac, mtu))| Request::SetRouterInterface {
                router,
                network,
                ip,
                prefix_len,
                mac,
                mtu,
            },
        ));
        out.extend(
            self.routes
                .iter()
                .map(|(&(router, ip, prefix_len), &via)| Request::AddRoute {
                    router,
                    prefix: PrefixSpec { ip, prefix_len },
                    via,
                }),
        );
        // Uplinks after the interfaces (their subnets may not overlap), floating IPs after
        // their uplinks.
        out.extend(self.uplinks.values().cloned());
        out.extend(
            self.floating
                .iter()
                .map(|(&(router, external), &internal)| Request::AddFloatingIp {
                    router,
                    external,
                    internal,
                }),
        );
        out
    }
}
