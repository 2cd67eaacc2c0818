//! A router's uplink (docs/design.md, "North-south: where NAT runs"): [`set`] gives a router
//! its interface on an external network (a VLAN network), [`remove`] takes it away.
//!
//! The uplink's address is reserved in the external network's record (`reserved`), written in
//! the same transaction as the router, so that no NIC is ever given it. Its MAC is
//! `02:76:72:01:RR:LL` from the router's number; its edge host is elected at once
//! ([`super::edge::choose`]) and kept by the edge controller.

use vinfra_store::{Compare, Op};
use vinfra_types::network::{self as net, Ipv4Subnet, NetworkKind};
use vinfra_types::router::{self as rt, SetUplinkRequest, UplinkSummary};

use super::edge::choose;
use super::{address_holder, check_overlap, check_router_name, concurrent, router_of, routes_via};
use crate::error::{Error, Object, RouterRefusal};
use crate::state::events::event;
use crate::state::records as keys;
use crate::state::{Console, Writes};

/// The holder of an uplink's address, as the external network's `reserved` names it.
pub fn uplink_holder(router: &str) -> String {
    format!("the uplink of router '{router}'")
}

/// Gives router `name` an uplink on `request.network` with the address `request.ip`; returns
/// it with its elected edge and standby. Refused when the router has one already, the network
/// is unknown (404), not a VLAN network, attached to a router as a gateway interface, or its
/// subnet overlaps one of the router's; the address must be a usable address of the subnet
/// (400), and not the network's gateway nor held by a NIC, another uplink or a floating IP.
pub async fn set(
    console: &Console,
    name: &str,
    request: SetUplinkRequest,
) -> Result<UplinkSummary, Error> {
    check_router_name(name)?;
    let ip = request.validate()?;
    let network = request.network;
    let _routers = console.inflight().routers_lock().await;
    let _networks = console.inflight().networks_lock().await;
    let cur = console.router(name)?;
    if let Some(u) = &cur.value.router.uplink {
        return Err(RouterRefusal::UplinkExists {
            router: name.to_string(),
            network: u.network.clone(),
            ip: u.ip.clone(),
        }
        .into());
    }
    let net_rec = console
        .network(&network)
        .ok_or_else(|| Error::not_found(Object::Network, &network))?;
    if net_rec.value.network.kind != NetworkKind::Vlan {
        return Err(RouterRefusal::UplinkNotVlan { network }.into());
    }
    let all = console.routers()?;
    if let Some(router) = router_of(&all, &network) {
        return Err(RouterRefusal::NetworkAttached { network, router }.into());
    }
    let subnet =
        Ipv4Subnet::parse(&net_rec.value.network.subnet).map_err(|_| Error::CorruptNetwork {
            network: network.clone(),
            field: "subnet",
        })?;
    check_overlap(&cur.value.router, &network, subnet)?;
    if !subnet.is_usable(ip) {
        return Err(RouterRefusal::OutsideSubnet {
            network,
            ip,
            subnet,
        }
        .into());
    }
    if let Some(holder) = address_holder(&net_rec.value, ip) {
        return Err(RouterRefusal::AddressTaken {
            network,
            ip,
            holder,
        }
        .into());
    }
    let id = cur.value.router.id;
    let mut rec = cur.value.clone();
    let mut uplink = UplinkSummary {
        network: network.clone(),
        subnet: subnet.to_string(),
        ip: ip.to_string(),
        mac: net::format_mac(rt::uplink_mac(id)),
        edge: None,
        standby: None,
        transit_vni: rt::transit_vni(id),
        floating_ips: Vec::new(),
    };
    let mut routers: Vec<_> = all.into_iter().map(|v| v.value.router).collect();
    match routers.iter_mut().find(|r| r.name == name) {
        Some(r) => r.uplink = Some(uplink.clone()),
        None => return Err(concurrent(name)),
    }
    let (edge, standby) = choose(console, &routers, name);
    uplink.edge = edge.clone();
    uplink.standby = standby.clone();
    rec.router.uplink = Some(uplink.clone());
    let net_key = keys::network_key(&network);
    let mut new_net = net_rec.value.clone();
    new_net.reserved.insert(ip.to_string(), uplink_holder(name));
    let mut writes = Writes::default();
    writes
        .compare
        .push(Compare::mod_revision(net_key.clone(), net_rec.mod_revision));
    writes.ops.push(Op::Put {
        key: net_key,
        value: keys::encode(&new_net)?,
        lease: 0,
    });
    writes.networks.push((network.clone(), new_net));
    let mac = net::format_mac(rt::uplink_mac(id));
    let told = event(
        "router",
        name,
        format!(
            "uplink set: {ip}/{} on network {network} ({mac}), edge {}, standby {}",
            subnet.prefix(),
            edge.as_deref()
                .unwrap_or("none (no host can be the edge now)"),
            standby.as_deref().unwrap_or("none"),
        ),
    );
    if !console.write_router(name, Some(cur.mod_revision), Some(&rec), writes, Some(told))? {
        return Err(concurrent(name));
    }
    Ok(uplink)
}

/// Removes router `name`'s uplink ([`RouterRefusal::NoUplink`] when it has none), releasing its
/// address. Refused while it has floating IPs ([`RouterRefusal::UplinkFloatingIps`]) or static
/// routes' next hops are on its subnet ([`RouterRefusal::RoutesVia`]).
pub async fn remove(console: &Console, name: &str) -> Result<(), Error> {
    check_router_name(name)?;
    let _routers = console.inflight().routers_lock().await;
    let _networks = console.inflight().networks_lock().await;
    let cur = console.router(name)?;
    let Some(uplink) = cur.value.router.uplink.clone() else {
        return Err(RouterRefusal::NoUplink {
            router: name.to_string(),
        }
        .into());
    };
    if !uplink.floating_ips.is_empty() {
        return Err(RouterRefusal::UplinkFloatingIps {
            router: name.to_string(),
            ips: uplink
                .floating_ips
                .iter()
                .map(|f| format!("{} (VM '{}')", f.ip, f.vm))
                .collect(),
        }
        .into());
    }
    if let Ok(subnet) = Ipv4Subnet::parse(&uplink.subnet) {
        let routes = routes_via(&cur.value.router, &subnet);
        if !routes.is_empty() {
            return Err(RouterRefusal::RoutesVia {
                router: name.to_string(),
                network: uplink.network.clone(),
                routes,
            }
            .into());
        }
    }
    let mut rec = cur.value.clone();
    rec.router.uplink = None;
    let mut writes = Writes::default();
    if let Some(net_rec) = console.network(&uplink.network) {
        let mut new_net = net_rec.value.clone();
        if new_net.reserved.remove(&uplink.ip).is_some() {
            let key = keys::network_key(&uplink.network);
            writes
                .compare
                .push(Compare::mod_revision(key.clone(), net_rec.mod_revision));
            writes.ops.push(Op::Put {
                key,
                value: keys::encode(&new_net)?,
                lease: 0,
            });
            writes.networks.push((uplink.network.clone(), new_net));
        }
    }
    let told = event(
        "router",
        name,
        format!(
            "uplink removed ({} on network {})",
            uplink.ip, uplink.network
        ),
    );
    if !console.write_router(name, Some(cur.mod_revision), Some(&rec), writes, Some(told))? {
        return Err(concurrent(name));
    }
    Ok(())
}
