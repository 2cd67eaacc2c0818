//! Configuring the switch: [`Switch::apply`] and what each [`ConfigCommand`] changes (networks,
//! ports and their policies, firewalls and DSCP marks, MAC and ARP entries, flood lists, the
//! underlay's peers, settings, routers with their interfaces and routes). A refused command
//! changes nothing.

use super::config::{check_policy, ConfigCommand, ConfigError};
use super::counters::Counters;
use super::filter::PortFirewall;
use super::firewall::rules::{FirewallRule, Prefix};
use super::flows::MAX_FLOW_ENTRIES;
use super::ids::{slot, slot_insert, slot_mut, NetworkId, PortId, RouterId, Segment};
use super::mac_table::{Location, Redirect, MAC_REDIRECT_HOLD};
use super::network::NetworkState;
use super::policy::{PortPolicy, StormBucket};
use super::port::{Port, PortConfig, PortKind};
use super::router::{martian, mask, RouterInterface, RouterState};
use super::switch::{Switch, MIN_MTU};
use crate::wire::encap;

/// The largest DSCP (six bits).
const MAX_DSCP: u8 = 63;

impl Switch {
    /// Applies one configuration command. A refused command changes nothing.
    pub fn apply(&mut self, command: ConfigCommand) -> Result<(), ConfigError> {
        let gateways = matches!(
            command,
            ConfigCommand::RemoveNetwork(_)
                | ConfigCommand::RemoveRouter(_)
                | ConfigCommand::SetRouterInterface { .. }
                | ConfigCommand::RemoveRouterInterface(_)
                | ConfigCommand::SetRouterUplink { .. }
                | ConfigCommand::RemoveRouterUplink(_)
        );
        let applied = self.apply_command(command);
        if applied.is_ok() {
            // Any configuration may decide a flow another way: the fast path's offers go.
            self.fast.bump();
        }
        if gateways && applied.is_ok() {
            // The uplinks' MACs are the routers' too: never learned, never a local port's.
            self.gateway_macs = self
                .networks
                .iter()
                .flatten()
                .filter_map(|n| n.gateway.map(|g| g.mac))
                .chain(self.nat.uplinks.values().map(|u| u.iface.mac))
                .collect();
        }
        applied
    }

    fn apply_command(&mut self, command: ConfigCommand) -> Result<(), ConfigError> {
        match command {
            ConfigCommand::AddNetwork { id, segment } => self.add_network(id, segment),
            ConfigCommand::RemoveNetwork(id) => self.remove_network(id),
            ConfigCommand::AddPort(config) => self.add_port(config),
            ConfigCommand::RemovePort(id) => self.remove_port(id),
            ConfigCommand::SetFloodList { network, vteps } => {
                let net = self.network_mut(network)?;
                if !matches!(net.segment, Segment::Overlay { .. }) {
                    return Err(ConfigError::NotOverlay(network));
                }
                let mut vteps = vteps;
                vteps.sort_unstable();
                vteps.dedup();
                net.flood = vteps;
                Ok(())
            }
            ConfigCommand::AddMacEntry {
                network,
                mac,
                location,
            } => {
                if !mac.is_unicast() {
                    return Err(ConfigError::NotUnicast(mac));
                }
                let trunk = self.trunk;
                let net =
                    slot(&self.networks, network.0).ok_or(ConfigError::NoSuchNetwork(network))?;
                match (location, net.segment) {
                    (Location::Vtep(_), Segment::Vlan { .. }) => {
                        return Err(ConfigError::NotOverlay(network));
                    }
                    (Location::Vtep(_), Segment::Overlay { .. }) => {}
                    (Location::Port(port), segment) => {
                        let attached = net.ports.contains(&port)
                            || (Some(port) == trunk && matches!(segment, Segment::Vlan { .. }));
                        if !attached {
                            return Err(ConfigError::PortNotInNetwork { port, network });
                        }
                    }
                }
                self.network_mut(network)?.macs.set_static(mac, location);
                Ok(())
            }
            ConfigCommand::RemoveMacEntry { network, mac } => {
                self.network_mut(network)?.macs.remove(&mac);
                Ok(())
            }
            ConfigCommand::RevertMacMoves => {
                for net in self.networks.iter_mut().flatten() {
                    net.macs.revert_moves();
                }
                Ok(())
            }
            ConfigCommand::AddArpEntry { network, ip, mac } => {
                if !mac.is_unicast() {
                    return Err(ConfigError::NotUnicast(mac));
                }
                self.network_mut(network)?.arp.insert(ip, mac);
                Ok(())
            }
            ConfigCommand::RemoveArpEntry { network, ip } => {
                self.network_mut(network)?.arp.remove(&ip);
                Ok(())
            }
            ConfigCommand::SetVtepMac { vtep, mac } => {
                if !mac.is_unicast() {
                    return Err(ConfigError::NotUnicast(mac));
                }
                self.vtep_macs.insert(vtep, mac);
                Ok(())
            }
            ConfigCommand::SetPortPolicy { port, policy } => self.set_port_policy(port, policy),
            ConfigCommand::SetPortFirewall { port, rules } => self.set_port_firewall(port, rules),
            ConfigCommand::SetPortDscp { port, mark } => {
                let access = self.access_port(port)?;
                if let Some(dscp) = mark.filter(|&d| d > MAX_DSCP) {
                    return Err(ConfigError::BadDscp(dscp));
                }
                access.dscp_mark = mark;
                Ok(())
            }
            ConfigCommand::ImportConnections { port, entries } => {
                self.access_port(port)?;
                self.firewall
                    .import(port, &entries, self.last_now)
                    .map(|_| ())
                    .map_err(|source| ConfigError::ConnectionsRefused { port, source })
            }
            ConfigCommand::SetUnderlayPeers(peers) => {
                self.underlay_peers = peers.map(|p| p.into_iter().collect());
                Ok(())
            }
            ConfigCommand::ExpectMacMove { network, mac, to } => {
                let net = self.network_mut(network)?;
                if !net.macs.expect_move(&mac, to) && to.is_some() {
                    return Err(ConfigError::NoRemoteMacEntry { network, mac });
                }
                Ok(())
            }
            ConfigCommand::RedirectMac { network, mac, to } => {
                let own = self
                    .uplink
                    .and_then(|u| match slot(&self.ports, u.0)?.config.kind {
                        PortKind::VxlanUplink { local_ip, .. } => Some(local_ip),
                        _ => None,
                    });
                if let Some(to) = to.filter(|to| {
                    to.is_unspecified()
                        || to.is_multicast()
                        || to.is_broadcast()
                        || Some(*to) == own
                }) {
                    return Err(ConfigError::BadRedirect(to));
                }
                let (since, until) = (
                    self.last_now,
                    self.last_now.saturating_add(MAC_REDIRECT_HOLD),
                );
                let net = self.network_mut(network)?;
                let overlay = matches!(net.segment, Segment::Overlay { .. });
                let redirected = overlay
                    && net
                        .macs
                        .redirect(&mac, to.map(|to| Redirect { to, since, until }));
                if to.is_some() && !redirected {
                    return Err(ConfigError::NoLocalMacEntry { network, mac });
                }
                Ok(())
            }
            ConfigCommand::SetDhcp { network, config } => {
                if let Some(c) = &config {
                    if c.prefix_len == 0 || c.prefix_len > 32 {
                        return Err(ConfigError::BadPrefixLength(c.prefix_len));
                    }
                    if c.server_id().is_none() {
                        return Err(ConfigError::DhcpNoServerAddress(network));
                    }
                    if let Some(mtu) = c.mtu.filter(|&m| m < MIN_MTU) {
                        return Err(ConfigError::MtuTooSmall(mtu));
                    }
                }
                self.network_mut(network)?.dhcp = config;
                Ok(())
            }
            ConfigCommand::AddRouter(id) => {
                if id.0 == 0 || id.0 > RouterId::MAX {
                    return Err(ConfigError::RouterIdOutOfRange(id));
                }
                if slot(&self.routers, id.0).is_some() {
                    return Err(ConfigError::RouterExists(id));
                }
                slot_insert(&mut self.routers, id.0, RouterState::default());
                Ok(())
            }
            ConfigCommand::RemoveRouter(id) => {
                slot(&self.routers, id.0).ok_or(ConfigError::NoSuchRouter(id))?;
                // Its uplink goes with it.
                self.remove_uplink(id);
                let router = slot(&self.routers, id.0).ok_or(ConfigError::NoSuchRouter(id))?;
                let networks: Vec<NetworkId> =
                    router.interfaces.iter().map(|i| i.network).collect();
                for network in networks {
                    if let Some(net) = slot_mut(&mut self.networks, network.0) {
                        net.gateway = None;
                    }
                }
                if let Some(s) = self.routers.get_mut(id.0 as usize) {
                    *s = None;
                }
                Ok(())
            }
            ConfigCommand::SetRouterInterface {
                router,
                network,
                addr,
                prefix_len,
                mac,
                mtu,
            } => self.set_router_interface(RouterInterface {
                router,
                network,
                addr,
                prefix_len,
                mac,
                mtu,
            }),
            ConfigCommand::RemoveRouterInterface(network) => {
                self.network_mut(network)?;
                self.remove_router_interface(network);
                Ok(())
            }
            ConfigCommand::AddRoute {
                router,
                prefix,
                via,
            } => {
                check_route_prefix(prefix)?;
                if martian(via) {
                    return Err(ConfigError::NotUnicastAddress(via));
                }
                self.router_mut(router)?.add_route(prefix, via);
                Ok(())
            }
            ConfigCommand::RemoveRoute { router, prefix } => {
                check_route_prefix(prefix)?;
                self.router_mut(router)?.remove_route(prefix);
                Ok(())
            }
            ConfigCommand::SetRouterUplink {
                router,
                network,
                addr,
                prefix_len,
                mac,
                edge,
                transit_vni,
                mtu,
            } => {
                let iface = RouterInterface {
                    router,
                    network,
                    addr,
                    prefix_len,
                    mac,
                    mtu,
                };
                self.set_router_uplink(iface, edge, transit_vni)
            }
            ConfigCommand::RemoveRouterUplink(router) => {
                self.router_mut(router)?;
                self.remove_uplink(router);
                Ok(())
            }
            ConfigCommand::AddFloatingIp {
                router,
                external,
                internal,
            } => self.add_floating_ip(router, external, internal),
            ConfigCommand::RemoveFloatingIp { router, external } => {
                self.remove_floating_ip(router, external)
            }
            ConfigCommand::SetFlowAccounting(flows) => {
                if flows.max_entries > MAX_FLOW_ENTRIES {
                    return Err(ConfigError::FlowTableTooLarge(flows.max_entries));
                }
                self.flows.set_settings(flows);
                Ok(())
            }
            ConfigCommand::SetSettings(settings) => {
                self.settings = settings;
                for net in self.networks.iter_mut().flatten() {
                    net.macs.set_learn_limit(settings.mac_learn_limit);
                }
                self.firewall.set_limits(
                    settings.conntrack_max_entries,
                    settings.conntrack_zone_max_entries,
                );
                self.nat.table.set_max(settings.nat_max_sessions);
                Ok(())
            }
        }
    }

    fn set_port_policy(&mut self, id: PortId, policy: PortPolicy) -> Result<(), ConfigError> {
        let port = slot_mut(&mut self.ports, id.0).ok_or(ConfigError::NoSuchPort(id))?;
        if port.config.kind.access_network().is_none() {
            return Err(ConfigError::NotAccessPort(id));
        }
        check_policy(&policy)?;
        // The bucket keeps its state when its rate and depth stay.
        port.storm = match (policy.storm, port.storm) {
            (Some(limit), Some(bucket)) if bucket.limit() == limit => Some(bucket),
            (Some(limit), _) => Some(StormBucket::new(limit)),
            (None, _) => None,
        };
        port.policy = policy;
        Ok(())
    }

    /// An access (VM or host) port.
    fn access_port(&mut self, id: PortId) -> Result<&mut Port, ConfigError> {
        let port = slot_mut(&mut self.ports, id.0).ok_or(ConfigError::NoSuchPort(id))?;
        if port.config.kind.access_network().is_none() {
            return Err(ConfigError::NotAccessPort(id));
        }
        Ok(port)
    }

    fn set_port_firewall(
        &mut self,
        id: PortId,
        rules: Option<Vec<FirewallRule>>,
    ) -> Result<(), ConfigError> {
        let port = self.access_port(id)?;
        match rules {
            Some(rules) => {
                let compiled = PortFirewall::compile(&rules)
                    .map_err(|source| ConfigError::BadFirewallRules { port: id, source })?;
                port.firewall = Some(Box::new(compiled));
            }
            None => {
                port.firewall = None;
                self.firewall.remove_port(id);
            }
        }
        Ok(())
    }

    pub(super) fn router_mut(&mut self, id: RouterId) -> Result<&mut RouterState, ConfigError> {
        slot_mut(&mut self.routers, id.0).ok_or(ConfigError::NoSuchRouter(id))
    }

    fn set_router_interface(&mut self, iface: RouterInterface) -> Result<(), ConfigError> {
        let RouterInterface {
            router,
            network,
            addr,
            prefix_len,
            mac,
            mtu,
        } = iface;
        if let Some(mtu) = mtu.filter(|m| *m < MIN_MTU) {
            return Err(ConfigError::MtuTooSmall(mtu));
        }
        if prefix_len == 0 || prefix_len > 32 {
            return Err(ConfigError::BadRoutePrefixLength(prefix_len));
        }
        if martian(addr) {
            return Err(ConfigError::NotUnicastAddress(addr));
        }
        if iface.is_subnet_edge(addr) {
            return Err(ConfigError::GatewayNotHostAddress { addr, prefix_len });
        }
        if !mac.is_unicast() {
            return Err(ConfigError::NotUnicast(mac));
        }
        let state = slot(&self.routers, router.0).ok_or(ConfigError::NoSuchRouter(router))?;
        let net = slot(&self.networks, network.0).ok_or(ConfigError::NoSuchNetwork(network))?;
        if let Some(up) = &net.uplink {
            return Err(ConfigError::NetworkIsUplink {
                network,
                router: up.router,
            });
        }
        // Two subnets overlap when the shorter prefix holds the other's address.
        let overlap = state.all_interfaces().find(|other| {
            let shorter = mask(prefix_len.min(other.prefix_len));
            other.network != network && u32::from(other.addr) & shorter == u32::from(addr) & shorter
        });
        if let Some(other) = overlap {
            return Err(ConfigError::OverlappingInterface {
                router,
                addr,
                prefix_len,
                other: other.network,
            });
        }
        // On another router before: it goes from there.
        self.remove_router_interface(network);
        self.router_mut(router)?.set_interface(iface);
        self.network_mut(network)?.gateway = Some(iface);
        Ok(())
    }

    /// Removes a network's gateway, if it has one, from the network and its router.
    fn remove_router_interface(&mut self, network: NetworkId) {
        let Some(net) = slot_mut(&mut self.networks, network.0) else {
            return;
        };
        let Some(old) = net.gateway.take() else {
            return;
        };
        if let Some(router) = slot_mut(&mut self.routers, old.router.0) {
            router.remove_interface(network);
        }
    }

    pub(super) fn network_mut(&mut self, id: NetworkId) -> Result<&mut NetworkState, ConfigError> {
        slot_mut(&mut self.networks, id.0).ok_or(ConfigError::NoSuchNetwork(id))
    }

    fn add_network(&mut self, id: NetworkId, segment: Segment) -> Result<(), ConfigError> {
        if id.0 > NetworkId::MAX {
            return Err(ConfigError::NetworkIdTooLarge(id));
        }
        if slot(&self.networks, id.0).is_some() {
            return Err(ConfigError::NetworkExists(id));
        }
        match segment {
            Segment::Overlay { vni } => {
                if let Some(&network) = self.vnis.get(&vni) {
                    return Err(ConfigError::VniInUse { vni, network });
                }
                if let Some(&router) = self.nat.transit.get(&vni) {
                    return Err(ConfigError::VniIsTransit { vni, router });
                }
                self.vnis.insert(vni, id);
            }
            Segment::Vlan { vid } => {
                let entry = self.vlans.get_mut(usize::from(vid.get()));
                if let Some(Some(network)) = entry.as_deref() {
                    return Err(ConfigError::VlanInUse {
                        vid,
                        network: *network,
                    });
                }
                if let Some(e) = entry {
                    *e = Some(id);
                }
            }
        }
        slot_insert(
            &mut self.networks,
            id.0,
            NetworkState::new(segment, self.settings.mac_learn_limit),
        );
        Ok(())
    }

    fn remove_network(&mut self, id: NetworkId) -> Result<(), ConfigError> {
        let net = slot(&self.networks, id.0).ok_or(ConfigError::NoSuchNetwork(id))?;
        if !net.ports.is_empty() {
            return Err(ConfigError::NetworkInUse(id));
        }
        let segment = net.segment;
        // Its gateway, or the uplink on it, goes with it.
        if let Some(router) = net.uplink.as_ref().map(|u| u.router) {
            self.remove_uplink(router);
        }
        self.remove_router_interface(id);
        match segment {
            Segment::Overlay { vni } => {
                self.vnis.remove(&vni);
            }
            Segment::Vlan { vid } => {
                if let Some(e) = self.vlans.get_mut(usize::from(vid.get())) {
                    *e = None;
                }
            }
        }
        if let Some(s) = self.networks.get_mut(id.0 as usize) {
            *s = None;
        }
        Ok(())
    }

    fn add_port(&mut self, config: PortConfig) -> Result<(), ConfigError> {
        let id = config.id;
        if id.0 > PortId::MAX {
            return Err(ConfigError::PortIdTooLarge(id));
        }
        if slot(&self.ports, id.0).is_some() {
            return Err(ConfigError::PortExists(id));
        }
        if config.mtu < MIN_MTU {
            return Err(ConfigError::MtuTooSmall(config.mtu));
        }
        match config.kind {
            PortKind::Vm { network } | PortKind::Host { network } => {
                self.check_access_network(&config, network)?;
                self.network_mut(network)?.ports.push(id);
            }
            PortKind::VmVlan {
                network,
                parent,
                vid,
            } => {
                let p = slot(&self.ports, parent.0).ok_or(ConfigError::NoSuchPort(parent))?;
                if !matches!(p.config.kind, PortKind::Vm { .. }) {
                    return Err(ConfigError::NotAVmPort(parent));
                }
                if p.vlans.iter().any(|&(v, _)| v == vid) {
                    return Err(ConfigError::SubInterfaceExists {
                        parent,
                        vid: vid.get(),
                    });
                }
                self.check_access_network(&config, network)?;
                self.network_mut(network)?.ports.push(id);
                if let Some(p) = slot_mut(&mut self.ports, parent.0) {
                    p.vlans.push((vid, id));
                }
            }
            PortKind::VxlanUplink { .. } => {
                if let Some(existing) = self.uplink {
                    return Err(ConfigError::UplinkExists {
                        kind: "VXLAN uplink",
                        existing,
                    });
                }
                for port in self.ports.iter().flatten() {
                    if let Some(network) = port.config.kind.access_network() {
                        if matches!(
                            slot(&self.networks, network.0).map(|n| n.segment),
                            Some(Segment::Overlay { .. })
                        ) {
                            check_overlay_mtu(&port.config, config.mtu)?;
                        }
                    }
                }
                self.uplink = Some(id);
            }
            PortKind::VlanTrunk => {
                if let Some(existing) = self.trunk {
                    return Err(ConfigError::UplinkExists {
                        kind: "VLAN trunk",
                        existing,
                    });
                }
                self.trunk = Some(id);
            }
        }
        slot_insert(
            &mut self.ports,
            id.0,
            Port {
                config,
                counters: Counters::default(),
                offloads: false,
                policy: PortPolicy::default(),
                storm: None,
                firewall: None,
                dscp_mark: None,
                vlans: Vec::new(),
            },
        );
        Ok(())
    }

    /// An access port's network exists, and its MTU fits the overlay if the network is one.
    fn check_access_network(
        &self,
        config: &PortConfig,
        network: NetworkId,
    ) -> Result<(), ConfigError> {
        let net = slot(&self.networks, network.0).ok_or(ConfigError::NoSuchNetwork(network))?;
        if let (Segment::Overlay { .. }, Some(uplink)) = (net.segment, self.uplink_config()) {
            check_overlay_mtu(config, uplink.mtu)?;
        }
        Ok(())
    }

    fn uplink_config(&self) -> Option<&PortConfig> {
        self.uplink
            .and_then(|id| slot(&self.ports, id.0))
            .map(|p| &p.config)
    }

    fn remove_port(&mut self, id: PortId) -> Result<(), ConfigError> {
        let port = slot(&self.ports, id.0).ok_or(ConfigError::NoSuchPort(id))?;
        // A vNIC's sub-interfaces go with it.
        let subs: Vec<PortId> = port.vlans.iter().map(|&(_, sub)| sub).collect();
        if let PortKind::VmVlan { parent, .. } = port.config.kind {
            if let Some(p) = slot_mut(&mut self.ports, parent.0) {
                p.vlans.retain(|&(_, sub)| sub != id);
            }
        }
        for sub in subs {
            self.remove_port(sub)?;
        }
        let port = slot(&self.ports, id.0).ok_or(ConfigError::NoSuchPort(id))?;
        if let Some(network) = port.config.kind.access_network() {
            if let Some(net) = slot_mut(&mut self.networks, network.0) {
                net.ports.retain(|&p| p != id);
            }
        }
        for net in self.networks.iter_mut().flatten() {
            net.macs.remove_location(Location::Port(id));
        }
        if self.uplink == Some(id) {
            self.uplink = None;
        }
        if self.trunk == Some(id) {
            self.trunk = None;
        }
        if let Some(s) = self.ports.get_mut(id.0 as usize) {
            *s = None;
        }
        self.firewall.remove_port(id);
        Ok(())
    }
}

/// A route prefix: a length of at most 32 and no host bits.
fn check_route_prefix(prefix: Prefix) -> Result<(), ConfigError> {
    if prefix.len > 32 {
        return Err(ConfigError::BadRoutePrefixLength(prefix.len));
    }
    if u32::from(prefix.addr) & !mask(prefix.len) != 0 {
        return Err(ConfigError::HostBitsSet {
            addr: prefix.addr,
            len: prefix.len,
        });
    }
    Ok(())
}

fn check_overlay_mtu(port: &PortConfig, underlay_mtu: u16) -> Result<(), ConfigError> {
    let max = encap::overlay_guest_mtu(underlay_mtu);
    if port.mtu > max {
        return Err(ConfigError::MtuExceedsOverlay {
            port: port.id,
            mtu: port.mtu,
            underlay_mtu,
            max,
        });
    }
    Ok(())
}
