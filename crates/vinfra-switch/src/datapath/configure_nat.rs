//! Configuring routers' uplinks and floating IPs (a third `impl Switch`, beside `configure`):
//! the checks of [`ConfigCommand::SetRouterUplink`], [`ConfigCommand::AddFloatingIp`] and their
//! removals, and what they change (the router's connected route, the external network's
//! uplink, the transit VNIs, the sessions, the gratuitous ARPs to send).
//!
//! [`ConfigCommand::SetRouterUplink`]: super::ConfigCommand::SetRouterUplink
//! [`ConfigCommand::AddFloatingIp`]: super::ConfigCommand::AddFloatingIp

use core::net::Ipv4Addr;

use super::config::ConfigError;
use super::ids::{slot, slot_mut, RouterId, Segment};
use super::nat::uplink::{Edge, Uplink, UplinkError};
use super::network::ExternalUplink;
use super::router::{martian, mask, RouterInterface};
use super::switch::{Switch, MIN_MTU};
use crate::wire::Vni;

impl Switch {
    /// Sets a router's uplink (see [`super::ConfigCommand::SetRouterUplink`]).
    pub(super) fn set_router_uplink(
        &mut self,
        iface: RouterInterface,
        edge: Edge,
        transit_vni: u32,
    ) -> Result<(), ConfigError> {
        let router = iface.router;
        let refuse = |source| ConfigError::Uplink { router, source };
        let RouterInterface {
            network,
            addr,
            prefix_len,
            mac,
            mtu,
            ..
        } = iface;
        if let Some(mtu) = mtu.filter(|m| *m < MIN_MTU) {
            return Err(refuse(UplinkError::MtuTooSmall(mtu)));
        }
        if prefix_len == 0 || prefix_len > 32 {
            return Err(refuse(UplinkError::BadPrefixLength(prefix_len)));
        }
        if martian(addr) {
            return Err(refuse(UplinkError::NotUnicastAddress(addr)));
        }
        if iface.is_subnet_edge(addr) {
            return Err(refuse(UplinkError::NotHostAddress { addr, prefix_len }));
        }
        if !mac.is_unicast() {
            return Err(refuse(UplinkError::NotUnicastMac(mac)));
        }
        if let Edge::Remote { vtep } = edge {
            if martian(vtep) {
                return Err(refuse(UplinkError::BadEdgeVtep(vtep)));
            }
        }
        let vni =
            Vni::new(transit_vni).ok_or(refuse(UplinkError::TransitVniTooLarge(transit_vni)))?;
        let state = slot(&self.routers, router.0).ok_or(ConfigError::NoSuchRouter(router))?;
        let net = slot(&self.networks, network.0).ok_or(ConfigError::NoSuchNetwork(network))?;
        if !matches!(net.segment, Segment::Vlan { .. }) {
            return Err(refuse(UplinkError::NotVlan(network)));
        }
        if let Some(gw) = net.gateway {
            return Err(refuse(UplinkError::NetworkIsGateway {
                network,
                router: gw.router,
            }));
        }
        if let Some(other) = net.uplink.as_ref().filter(|u| u.router != router) {
            return Err(refuse(UplinkError::NetworkIsUplink {
                network,
                router: other.router,
            }));
        }
        if let Some(&network) = self.vnis.get(&vni) {
            return Err(refuse(UplinkError::TransitVniIsNetwork { vni, network }));
        }
        if let Some(&other) = self.nat.transit.get(&vni).filter(|&&r| r != router) {
            return Err(refuse(UplinkError::TransitVniInUse { vni, router: other }));
        }
        let overlap = state.interfaces.iter().find(|other| {
            let shorter = mask(prefix_len.min(other.prefix_len));
            u32::from(other.addr) & shorter == u32::from(addr) & shorter
        });
        if let Some(other) = overlap {
            return Err(refuse(UplinkError::Overlaps {
                addr,
                prefix_len,
                other: other.network,
            }));
        }

        let old = self.nat.uplinks.remove(&router);
        let was_edge_here = old.as_ref().is_some_and(|o| {
            o.is_edge() && o.iface.network == network && o.iface.addr == addr && o.iface.mac == mac
        });
        // Sessions stay while they can still be answered here.
        let keep_sessions = was_edge_here && edge == Edge::Local;
        if !keep_sessions {
            self.nat.table.remove_router(router);
        }
        let mut uplink = Uplink {
            iface,
            edge,
            transit_vni: vni,
            floating: Default::default(),
            by_internal: Default::default(),
            counters: Default::default(),
        };
        if let Some(old) = old {
            self.nat.transit.remove(&old.transit_vni);
            if old.iface.network != network {
                if let Some(n) = slot_mut(&mut self.networks, old.iface.network.0) {
                    n.uplink = None;
                }
            }
            // Floating IPs that still fit the new subnet stay.
            for (external, internal) in old.floating {
                if iface.contains(external) && external != addr && !iface.is_subnet_edge(external) {
                    uplink.floating.insert(external, internal);
                    uplink.by_internal.insert(internal, external);
                }
            }
            uplink.counters = old.counters;
        }
        if edge == Edge::Local && !was_edge_here {
            self.nat
                .pending
                .extend(uplink.addresses().map(|a| (router, a)));
        }
        self.nat.transit.insert(vni, router);
        self.nat.uplinks.insert(router, uplink);
        self.router_mut(router)?.set_uplink(Some(iface));
        self.sync_external(router);
        Ok(())
    }

    /// Removes a router's uplink, its floating IPs and sessions, if it has one.
    pub(super) fn remove_uplink(&mut self, router: RouterId) {
        let Some(old) = self.nat.uplinks.remove(&router) else {
            return;
        };
        self.nat.transit.remove(&old.transit_vni);
        self.nat.table.remove_router(router);
        self.nat.pending.retain(|(r, _)| *r != router);
        if let Some(n) = slot_mut(&mut self.networks, old.iface.network.0) {
            n.uplink = None;
        }
        if let Some(r) = slot_mut(&mut self.routers, router.0) {
            r.set_uplink(None);
        }
    }

    /// Adds a floating IP (see [`super::ConfigCommand::AddFloatingIp`]).
    pub(super) fn add_floating_ip(
        &mut self,
        router: RouterId,
        external: Ipv4Addr,
        internal: Ipv4Addr,
    ) -> Result<(), ConfigError> {
        let refuse = |source| ConfigError::Uplink { router, source };
        let state = slot(&self.routers, router.0).ok_or(ConfigError::NoSuchRouter(router))?;
        let up = self
            .nat
            .uplinks
            .get(&router)
            .ok_or(refuse(UplinkError::NoUplink))?;
        if external == up.iface.addr {
            return Err(refuse(UplinkError::FloatingIsUplink(external)));
        }
        if !up.iface.contains(external) || up.iface.is_subnet_edge(external) || martian(external) {
            return Err(refuse(UplinkError::FloatingNotInSubnet(external)));
        }
        let on_router = state
            .interfaces
            .iter()
            .any(|i| i.contains(internal) && i.addr != internal && !i.is_subnet_edge(internal));
        if !on_router || martian(internal) {
            return Err(refuse(UplinkError::InternalNotOnRouter(internal)));
        }
        if let Some(&other) = up.by_internal.get(&internal).filter(|&&e| e != external) {
            return Err(refuse(UplinkError::InternalTaken {
                internal,
                external: other,
            }));
        }
        let edge = up.is_edge();
        let fresh = up.floating.get(&external) != Some(&internal);
        let Some(up) = self.nat.uplinks.get_mut(&router) else {
            return Ok(());
        };
        if let Some(old) = up.floating.insert(external, internal) {
            up.by_internal.remove(&old);
        }
        up.by_internal.insert(internal, external);
        if edge && fresh {
            self.nat.pending.push((router, external));
        }
        self.sync_external(router);
        Ok(())
    }

    /// Removes a floating IP, if the router has it.
    pub(super) fn remove_floating_ip(
        &mut self,
        router: RouterId,
        external: Ipv4Addr,
    ) -> Result<(), ConfigError> {
        slot(&self.routers, router.0).ok_or(ConfigError::NoSuchRouter(router))?;
        if let Some(up) = self.nat.uplinks.get_mut(&router) {
            if let Some(internal) = up.floating.remove(&external) {
                up.by_internal.remove(&internal);
            }
        }
        self.nat
            .pending
            .retain(|&(r, a)| r != router || a != external);
        self.sync_external(router);
        Ok(())
    }

    /// Writes what forwarding needs of a router's uplink into its external network.
    fn sync_external(&mut self, router: RouterId) {
        let Some(up) = self.nat.uplinks.get(&router) else {
            return;
        };
        let external = ExternalUplink {
            router,
            mac: up.iface.mac,
            edge: up.is_edge(),
            addrs: up.addresses().collect(),
        };
        if let Some(n) = slot_mut(&mut self.networks, up.iface.network.0) {
            n.uplink = Some(external);
        }
    }
}
