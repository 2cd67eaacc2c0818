//! Routers (`/vinfra/routers/<name>`, docs/design.md "Routers"): list, show, create (its switch
//! number claimed with the record), delete (refused while a network is attached), attach a
//! network (the router's interface: the network's gateway), detach one (refused while static
//! routes go through it), add and delete static routes.
//!
//! Every change is one compare-and-swap transaction with its event, under the router lock; an
//! attachment also holds the networks lock (taken after it), since it reads the network's
//! address management and may write the network's gateway in the same transaction, so that the
//! gateway is reserved (never given to a VM) and advertised by the switches' DHCP responder.
//! The switch controller watches the routers' prefix and pushes every host's configuration on
//! each change.
//!
//! The north-south edge (docs/design.md, "North-south: where NAT runs"): [`uplink`] sets and
//! removes a router's uplink on an external network, [`floating`] adds and deletes floating
//! IPs, [`edge`] elects each uplink's edge host (a pure decision and its controller).

pub mod edge;
pub mod floating;
pub mod uplink;

use std::net::Ipv4Addr;

use vinfra_store::{Compare, Op};
use vinfra_types::api::Event;
use vinfra_types::filter::{ListFilter, RouterFilter};
use vinfra_types::network::{self as net, Ipv4Subnet, NetworkError};
use vinfra_types::router::{
    self as rt, AttachNetworkRequest, CreateRouterRequest, RouterAttachment, RouterRequestError,
    RouterStaticRoute, RouterSummary,
};

use crate::error::{Error, Object, RouterRefusal};
use crate::state::events::event;
use crate::state::records::NetworkRecord;
use crate::state::records::{self as keys, now_s, RouterRecord, SegmentClaim, Versioned};
use crate::state::{Console, Writes};

/// The kind of the routers' events.
const EVENT_KIND: &str = "router";

/// The claim space of the routers' switch numbers.
const ID_SPACE: &str = "router";

/// Every router, in name order, or those `filter` lets through.
pub fn list(console: &Console, filter: &RouterFilter) -> Result<Vec<RouterSummary>, Error> {
    Ok(console
        .routers()?
        .into_iter()
        .map(|v| v.value.router)
        .filter(|r| filter.lets(r))
        .collect())
}

/// One router.
pub fn show(console: &Console, name: &str) -> Result<RouterSummary, Error> {
    check_router_name(name)?;
    Ok(console.router(name)?.value.router)
}

/// Checks a router's name (400 otherwise).
pub fn check_router_name(name: &str) -> Result<(), Error> {
    vinfra_types::validate_name(name).map_err(|e| RouterRequestError::Name(e).into())
}

/// The router changed between its read and its write.
pub fn concurrent(name: &str) -> Error {
    Error::Concurrent {
        kind: Object::Router,
        name: name.to_string(),
    }
}

/// Writes router `name`'s changed record `rec` (nothing else) with its event, if the record is
/// still at `revision`; [`Error::Concurrent`] otherwise.
pub fn update(
    console: &Console,
    name: &str,
    revision: i64,
    rec: &RouterRecord,
    told: Event,
) -> Result<(), Error> {
    if console.write_router(
        name,
        Some(revision),
        Some(rec),
        Writes::default(),
        Some(told),
    )? {
        Ok(())
    } else {
        Err(concurrent(name))
    }
}

/// Creates a router with no interface and no route; its number is the lowest free from 1.
/// A taken name is [`Error::NameTaken`].
pub async fn create(
    console: &Console,
    request: CreateRouterRequest,
) -> Result<RouterSummary, Error> {
    request.validate()?;
    let _routers = console.inflight().routers_lock().await;
    let name = request.name;
    let taken = || Error::NameTaken {
        kind: Object::Router,
        name: name.clone(),
    };
    let all = console.routers()?;
    if all.iter().any(|r| r.value.router.name == name) {
        return Err(taken());
    }
    let id = (1..=u16::MAX)
        .find(|i| !all.iter().any(|r| r.value.router.id == *i))
        .ok_or(RouterRefusal::NoFreeId)?;
    let rec = RouterRecord {
        router: RouterSummary {
            name: name.clone(),
            id,
            interfaces: Vec::new(),
            routes: Vec::new(),
            uplink: None,
            created_at: now_s(),
        },
    };
    let claim = keys::segment_key(ID_SPACE, u32::from(id));
    let writes = Writes::other(
        vec![Compare::absent(claim.clone())],
        vec![Op::Put {
            key: claim,
            value: keys::encode(&SegmentClaim {
                network: name.clone(),
            })?,
            lease: 0,
        }],
    );
    let told = event(EVENT_KIND, &name, format!("created: router number {id}"));
    if !console.write_router(&name, None, Some(&rec), writes, Some(told))? {
        return Err(taken());
    }
    Ok(rec.router)
}

/// Deletes a router without interfaces nor uplink ([`RouterRefusal::InUse`] naming its
/// networks otherwise), with the claim of its number.
pub async fn delete(console: &Console, name: &str) -> Result<(), Error> {
    check_router_name(name)?;
    let _routers = console.inflight().routers_lock().await;
    let cur = console.router(name)?;
    let r = &cur.value.router;
    if !r.interfaces.is_empty() || r.uplink.is_some() {
        let mut networks: Vec<String> = r.interfaces.iter().map(|i| i.network.clone()).collect();
        if let Some(u) = &r.uplink {
            networks.push(format!("{} (uplink)", u.network));
        }
        return Err(RouterRefusal::InUse {
            router: name.to_string(),
            networks,
        }
        .into());
    }
    let writes = Writes::other(
        vec![],
        vec![Op::Delete {
            key: keys::segment_key(ID_SPACE, u32::from(r.id)),
        }],
    );
    let told = event(EVENT_KIND, name, "deleted");
    if !console.write_router(name, Some(cur.mod_revision), None, writes, Some(told))? {
        return Err(concurrent(name));
    }
    Ok(())
}

/// The router a network is attached to, if any.
pub fn router_of(routers: &[Versioned<RouterRecord>], network: &str) -> Option<String> {
    routers
        .iter()
        .find(|r| {
            r.value
                .router
                .interfaces
                .iter()
                .any(|i| i.network == network)
        })
        .map(|r| r.value.router.name.clone())
}

/// The routers whose uplink is on `network`, in name order.
pub fn uplinks_on(routers: &[Versioned<RouterRecord>], network: &str) -> Vec<String> {
    routers
        .iter()
        .filter(|r| {
            r.value
                .router
                .uplink
                .as_ref()
                .is_some_and(|u| u.network == network)
        })
        .map(|r| r.value.router.name.clone())
        .collect()
}

/// What holds `ip` on the network of `rec` (`VM 'a'`, `the network's gateway`, `the uplink of
/// router 'r1'`, a floating IP), if anything does.
pub fn address_holder(rec: &NetworkRecord, ip: Ipv4Addr) -> Option<String> {
    let text = ip.to_string();
    if rec.network.gateway.as_deref() == Some(text.as_str()) {
        return Some("the network's gateway".into());
    }
    if let Some(e) = rec.ipam.get(&text) {
        return Some(format!("VM '{}'", e.vm));
    }
    rec.reserved.get(&text).cloned()
}

/// Attaches a network to router `name`: the router's interface on it is the network's gateway
/// (settled by `settle_gateway`) with the MAC derived from the network's switch number. Refused
/// when the network is attached to a router already, or its subnet overlaps the subnet of a
/// network of this router.
pub async fn attach(
    console: &Console,
    name: &str,
    request: AttachNetworkRequest,
) -> Result<RouterAttachment, Error> {
    check_router_name(name)?;
    let given = request.validate()?;
    let network = request.network;
    let _routers = console.inflight().routers_lock().await;
    let _networks = console.inflight().networks_lock().await;
    let cur = console.router(name)?;
    let net_rec = console
        .network(&network)
        .ok_or_else(|| Error::not_found(Object::Network, &network))?;
    let all = console.routers()?;
    if let Some(router) = router_of(&all, &network) {
        return Err(RouterRefusal::NetworkAttached { network, router }.into());
    }
    let routers = uplinks_on(&all, &network);
    if !routers.is_empty() {
        return Err(RouterRefusal::NetworkIsUplink { network, routers }.into());
    }
    let corrupt = |field| Error::CorruptNetwork {
        network: network.clone(),
        field,
    };
    let subnet = Ipv4Subnet::parse(&net_rec.value.network.subnet).map_err(|_| corrupt("subnet"))?;
    check_overlap(&cur.value.router, &network, subnet)?;
    let (gateway, changed) = settle_gateway(&net_rec.value, subnet, given)?;
    let mac = net::format_mac(rt::gateway_mac(net_rec.value.switch_id));
    let iface = RouterAttachment {
        network: network.clone(),
        subnet: subnet.to_string(),
        gateway: gateway.to_string(),
        gateway_mac: mac.clone(),
    };
    let mut rec = cur.value.clone();
    rec.router.interfaces.push(iface.clone());
    rec.router
        .interfaces
        .sort_by(|a, b| a.network.cmp(&b.network));
    // The network must still be as read; with a new gateway it is rewritten in the same
    // transaction (and mirrored when it commits).
    let net_key = keys::network_key(&network);
    let mut writes = Writes::default();
    writes
        .compare
        .push(Compare::mod_revision(net_key.clone(), net_rec.mod_revision));
    if changed {
        let mut new_net = net_rec.value.clone();
        new_net.network.gateway = Some(gateway.to_string());
        writes.ops.push(Op::Put {
            key: net_key,
            value: keys::encode(&new_net)?,
            lease: 0,
        });
        writes.networks.push((network.clone(), new_net));
    }
    let told = event(
        EVENT_KIND,
        name,
        format!(
            "network {network} attached: gateway {gateway} ({mac}){}",
            if changed {
                ", now the network's gateway"
            } else {
                ""
            }
        ),
    );
    if !console.write_router(name, Some(cur.mod_revision), Some(&rec), writes, Some(told))? {
        return Err(concurrent(name));
    }
    Ok(iface)
}

/// Refuses ([`RouterRefusal::SubnetOverlap`]) `subnet` of `network` when it overlaps the
/// subnet of one of `router`'s networks, its uplink's included.
pub fn check_overlap(
    router: &RouterSummary,
    network: &str,
    subnet: Ipv4Subnet,
) -> Result<(), Error> {
    let others = router
        .interfaces
        .iter()
        .map(|i| (&i.network, &i.subnet))
        .chain(router.uplink.iter().map(|u| (&u.network, &u.subnet)));
    for (other, other_subnet) in others {
        let Ok(other_subnet) = Ipv4Subnet::parse(other_subnet) else {
            continue;
        };
        if subnet.overlaps(&other_subnet) {
            return Err(RouterRefusal::SubnetOverlap {
                router: router.name.clone(),
                network: network.to_string(),
                subnet,
                other: other.clone(),
                other_subnet,
            }
            .into());
        }
    }
    Ok(())
}

/// The gateway of a network being attached, and whether it is new to the network. A network
/// with a gateway keeps it ([`RouterRefusal::GatewayMismatch`] when another is given). A network
/// without one gets `given` (a usable address of the subnet, 400 otherwise) or the subnet's
/// first usable address, which must not be held by a VM NIC ([`RouterRefusal::GatewayTaken`]
/// naming the VM).
fn settle_gateway(
    rec: &crate::state::records::NetworkRecord,
    subnet: Ipv4Subnet,
    given: Option<Ipv4Addr>,
) -> Result<(Ipv4Addr, bool), Error> {
    let network = &rec.network.name;
    let current: Option<Ipv4Addr> = match &rec.network.gateway {
        Some(g) => Some(g.parse().map_err(|_| Error::CorruptNetwork {
            network: network.clone(),
            field: "gateway",
        })?),
        None => None,
    };
    if let Some(gateway) = current {
        return match given {
            Some(given) if given != gateway => Err(RouterRefusal::GatewayMismatch {
                network: network.clone(),
                gateway,
                given,
            }
            .into()),
            _ => Ok((gateway, false)),
        };
    }
    let ip = match given {
        Some(ip) => {
            if !subnet.is_usable(ip) {
                return Err(NetworkError::Gateway {
                    gateway: ip.to_string(),
                    subnet: subnet.to_string(),
                }
                .into());
            }
            ip
        }
        None => subnet
            .usable()
            .next()
            .ok_or_else(|| Error::CorruptNetwork {
                network: network.clone(),
                field: "subnet",
            })?,
    };
    if let Some(holder) = rec.ipam.get(&ip.to_string()) {
        return Err(RouterRefusal::GatewayTaken {
            network: network.clone(),
            ip,
            holder: holder.vm.clone(),
        }
        .into());
    }
    Ok((ip, true))
}

/// The static routes of `router` whose next hop is in `subnet`.
pub fn routes_via(router: &RouterSummary, subnet: &Ipv4Subnet) -> Vec<String> {
    router
        .routes
        .iter()
        .filter(|r| r.via.parse().is_ok_and(|via| subnet.contains(via)))
        .map(RouterStaticRoute::describe)
        .collect()
}

/// Detaches a network from router `name` ([`RouterRefusal::NoInterface`] when it is not
/// attached to it; [`RouterRefusal::RoutesVia`] while static routes' next hops are on it;
/// [`RouterRefusal::FloatingIpsOn`] while NICs on it have floating IPs). The network keeps its
/// gateway address.
pub async fn detach(console: &Console, name: &str, network: &str) -> Result<(), Error> {
    check_router_name(name)?;
    vinfra_types::validate_name(network).map_err(RouterRequestError::Network)?;
    let _routers = console.inflight().routers_lock().await;
    let cur = console.router(name)?;
    let mut rec = cur.value.clone();
    let Some(at) = rec
        .router
        .interfaces
        .iter()
        .position(|i| i.network == network)
    else {
        return Err(RouterRefusal::NoInterface {
            router: name.to_string(),
            network: network.to_string(),
        }
        .into());
    };
    let iface = rec.router.interfaces.remove(at);
    if let Ok(subnet) = Ipv4Subnet::parse(&iface.subnet) {
        let routes = routes_via(&cur.value.router, &subnet);
        if !routes.is_empty() {
            return Err(RouterRefusal::RoutesVia {
                router: name.to_string(),
                network: network.to_string(),
                routes,
            }
            .into());
        }
    }
    let floating: Vec<String> = rec
        .router
        .uplink
        .iter()
        .flat_map(|u| &u.floating_ips)
        .filter(|f| f.network == network)
        .map(|f| format!("{} (VM '{}')", f.ip, f.vm))
        .collect();
    if !floating.is_empty() {
        return Err(RouterRefusal::FloatingIpsOn {
            router: name.to_string(),
            network: network.to_string(),
            ips: floating,
        }
        .into());
    }
    let told = event(EVENT_KIND, name, format!("network {network} detached"));
    update(console, name, cur.mod_revision, &rec, told)?;
    Ok(())
}

/// `A.B.C.D/L`.
fn prefix_text((addr, len): (Ipv4Addr, u8)) -> String {
    format!("{addr}/{len}")
}

/// Adds a static route to router `name`; returns it as stored (the prefix normalised). Its
/// next hop must be a usable address of one of the router's subnets (its uplink's included)
/// other than the router's own gateways and uplink address; a route to the same prefix is refused ([`RouterRefusal::RouteExists`]), not
/// replaced.
pub async fn add_route(
    console: &Console,
    name: &str,
    route: RouterStaticRoute,
) -> Result<RouterStaticRoute, Error> {
    check_router_name(name)?;
    let (prefix, via) = route.validate()?;
    let prefix = prefix_text(prefix);
    let _routers = console.inflight().routers_lock().await;
    let cur = console.router(name)?;
    let mut rec = cur.value.clone();
    let router = &mut rec.router;
    if let Some(old) = router.routes.iter().find(|r| r.prefix == prefix) {
        return Err(RouterRefusal::RouteExists {
            router: name.to_string(),
            prefix,
            via: old.via.clone(),
        }
        .into());
    }
    if router.routes.len() >= rt::MAX_ROUTES {
        return Err(RouterRequestError::TooManyRoutes.into());
    }
    if let Some(i) = router
        .interfaces
        .iter()
        .find(|i| i.gateway == via.to_string())
    {
        return Err(RouterRefusal::ViaGateway {
            router: name.to_string(),
            via,
            network: i.network.clone(),
        }
        .into());
    }
    if let Some(u) = router.uplink.as_ref().filter(|u| u.ip == via.to_string()) {
        return Err(RouterRefusal::ViaGateway {
            router: name.to_string(),
            via,
            network: u.network.clone(),
        }
        .into());
    }
    let subnets: Vec<String> = router
        .interfaces
        .iter()
        .map(|i| i.subnet.clone())
        .chain(router.uplink.iter().map(|u| u.subnet.clone()))
        .collect();
    let on_link = subnets
        .iter()
        .any(|s| Ipv4Subnet::parse(s).is_ok_and(|s| s.is_usable(via)));
    if !on_link {
        return Err(RouterRefusal::ViaUnreachable {
            router: name.to_string(),
            via,
            subnets,
        }
        .into());
    }
    let added = RouterStaticRoute {
        prefix,
        via: via.to_string(),
    };
    router.routes.push(added.clone());
    router.routes.sort_by_key(|r| {
        rt::parse_route_prefix(&r.prefix).map_or((u32::MAX, u8::MAX), |(a, l)| (u32::from(a), l))
    });
    let told = event(
        EVENT_KIND,
        name,
        format!("route added: {}", added.describe()),
    );
    update(console, name, cur.mod_revision, &rec, told)?;
    Ok(added)
}

/// Deletes router `name`'s static route to `prefix` ([`RouterRefusal::NoRoute`] when it has
/// none).
pub async fn delete_route(console: &Console, name: &str, prefix: &str) -> Result<(), Error> {
    check_router_name(name)?;
    let prefix = prefix_text(rt::parse_route_prefix(prefix)?);
    let _routers = console.inflight().routers_lock().await;
    let cur = console.router(name)?;
    let mut rec = cur.value.clone();
    let Some(at) = rec.router.routes.iter().position(|r| r.prefix == prefix) else {
        return Err(RouterRefusal::NoRoute {
            router: name.to_string(),
            prefix,
        }
        .into());
    };
    let gone = rec.router.routes.remove(at);
    let told = event(
        EVENT_KIND,
        name,
        format!("route deleted: {}", gone.describe()),
    );
    update(console, name, cur.mod_revision, &rec, told)?;
    Ok(())
}
