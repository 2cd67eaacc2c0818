//! Floating IPs (docs/design.md, "North-south: where NAT runs"): a 1:1 NAT on a router's edge
//! between an address of its uplink subnet and one VM NIC's address. [`add`] and [`delete`]
//! one, [`list`] them all, [`release_vm`] those of a deleted VM.
//!
//! A floating IP lives in its router's record (`uplink.floating_ips`) and is reserved in the
//! external network's record, both written in one transaction under the router and networks
//! locks (the VM's record compared as read, so that a VM deleted meanwhile gets none).

use std::net::Ipv4Addr;

use vinfra_store::{Compare, Op};
use vinfra_types::filter::{FloatingIpFilter, ListFilter};
use vinfra_types::network::Ipv4Subnet;
use vinfra_types::router::{AddFloatingIpRequest, FloatingIpSummary, RouterRequestError};

use super::uplink::uplink_holder;
use super::{address_holder, concurrent, router_of};
use crate::error::{Error, Object, RouterRefusal};
use crate::state::events::event;
use crate::state::records::{self as keys, RouterRecord, Versioned};
use crate::state::{Console, Writes};

/// The holder of a floating IP, as the external network's `reserved` names it.
fn holder(vm: &str, router: &str) -> String {
    format!("a floating IP of VM '{vm}' (router '{router}')")
}

/// Every floating IP of every router (of the router `filter` names, if it names one), by
/// address, or those `filter` lets through.
pub fn list(console: &Console, filter: &FloatingIpFilter) -> Result<Vec<FloatingIpSummary>, Error> {
    let mut all: Vec<FloatingIpSummary> = console
        .routers()?
        .into_iter()
        .filter(|r| {
            filter
                .router
                .as_ref()
                .is_none_or(|n| *n == r.value.router.name)
        })
        .filter_map(|r| r.value.router.uplink)
        .flat_map(|u| u.floating_ips)
        .filter(|f| filter.lets(f))
        .collect();
    all.sort_by_key(|f| f.ip.parse::<Ipv4Addr>().map_or(u32::MAX, u32::from));
    Ok(all)
}

fn check_vm_name(vm: &str) -> Result<(), Error> {
    vinfra_types::validate_name(vm).map_err(|e| RouterRequestError::Vm(e).into())
}

/// The external network's record with `ip` reserved by `reserve` (or released when `None`),
/// planned in `writes` (compared against the revision read).
fn plan_network(
    console: &Console,
    network: &str,
    ip: Ipv4Addr,
    reserve: Option<String>,
    writes: &mut Writes,
) -> Result<(), Error> {
    let Some(rec) = console.network(network) else {
        return if reserve.is_some() {
            Err(Error::not_found(Object::Network, network))
        } else {
            Ok(())
        };
    };
    let mut value = rec.value.clone();
    match reserve {
        Some(h) => {
            value.reserved.insert(ip.to_string(), h);
        }
        None => {
            if value.reserved.remove(&ip.to_string()).is_none() {
                return Ok(());
            }
        }
    }
    let key = keys::network_key(network);
    writes
        .compare
        .push(Compare::mod_revision(key.clone(), rec.mod_revision));
    writes.ops.push(Op::Put {
        key,
        value: keys::encode(&value)?,
        lease: 0,
    });
    writes.networks.push((network.to_string(), value));
    Ok(())
}

/// Gives NIC `request.nic` (default 0) of VM `vm` the floating IP `request.ip`. The NIC must
/// have an address and its network be attached to a router with an uplink; the address must
/// be a usable address of the uplink's subnet (400), not the uplink's address, the external
/// network's gateway nor held by a NIC or another floating IP (409). One floating IP per NIC.
pub async fn add(
    console: &Console,
    vm: &str,
    request: AddFloatingIpRequest,
) -> Result<FloatingIpSummary, Error> {
    check_vm_name(vm)?;
    let ip = request.validate()?;
    let index = request.nic.unwrap_or(0);
    let _routers = console.inflight().routers_lock().await;
    let _networks = console.inflight().networks_lock().await;
    let vm_rec = console.vm(vm)?;
    let nics = &vm_rec.value.spec.nics;
    let nic = nics.get(index).ok_or_else(|| Error::NoSuchNic {
        vm: vm.to_string(),
        index,
        count: nics.len(),
    })?;
    let internal: Ipv4Addr = nic
        .ip
        .as_deref()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| RouterRefusal::NicNoAddress {
            vm: vm.to_string(),
            nic: index,
        })?;
    let all = console.routers()?;
    let no_uplink = |router: Option<String>| RouterRefusal::NicNoUplink {
        vm: vm.to_string(),
        nic: index,
        network: nic.network.clone(),
        router,
    };
    let router = router_of(&all, &nic.network).ok_or_else(|| no_uplink(None))?;
    let cur: &Versioned<RouterRecord> = all
        .iter()
        .find(|r| r.value.router.name == router)
        .ok_or_else(|| concurrent(&router))?;
    let uplink = cur
        .value
        .router
        .uplink
        .as_ref()
        .ok_or_else(|| no_uplink(Some(router.clone())))?;
    if let Some(f) = uplink
        .floating_ips
        .iter()
        .find(|f| f.vm == vm && f.nic == index)
    {
        return Err(RouterRefusal::NicHasFloatingIp {
            vm: vm.to_string(),
            nic: index,
            ip: f.ip.clone(),
        }
        .into());
    }
    let ext = console
        .network(&uplink.network)
        .ok_or_else(|| Error::not_found(Object::Network, &uplink.network))?;
    let subnet = Ipv4Subnet::parse(&uplink.subnet).map_err(|_| Error::CorruptNetwork {
        network: uplink.network.clone(),
        field: "subnet",
    })?;
    if !subnet.is_usable(ip) {
        return Err(RouterRefusal::OutsideSubnet {
            network: uplink.network.clone(),
            ip,
            subnet,
        }
        .into());
    }
    let taken = if uplink.ip == ip.to_string() {
        Some(uplink_holder(&router))
    } else {
        address_holder(&ext.value, ip)
    };
    if let Some(holder) = taken {
        return Err(RouterRefusal::AddressTaken {
            network: uplink.network.clone(),
            ip,
            holder,
        }
        .into());
    }
    let added = FloatingIpSummary {
        ip: ip.to_string(),
        vm: vm.to_string(),
        nic: index,
        network: nic.network.clone(),
        internal: internal.to_string(),
        router: router.clone(),
    };
    let mut rec = cur.value.clone();
    let network = uplink.network.clone();
    if let Some(u) = rec.router.uplink.as_mut() {
        u.floating_ips.push(added.clone());
        u.floating_ips
            .sort_by_key(|f| f.ip.parse::<Ipv4Addr>().map_or(u32::MAX, u32::from));
    }
    let mut writes = Writes::default();
    writes
        .compare
        .push(Compare::mod_revision(keys::vm_key(vm), vm_rec.mod_revision));
    plan_network(
        console,
        &network,
        ip,
        Some(holder(vm, &router)),
        &mut writes,
    )?;
    let told = event(
        "vm",
        vm,
        format!(
            "floating IP {ip} added: nic {index} ({internal} on {}), router {router}",
            added.network
        ),
    );
    if !console.write_router(
        &router,
        Some(cur.mod_revision),
        Some(&rec),
        writes,
        Some(told),
    )? {
        return Err(concurrent(&router));
    }
    Ok(added)
}

/// Deletes VM `vm`'s floating IP `ip` ([`RouterRefusal::NoFloatingIp`] when it has none such).
pub async fn delete(console: &Console, vm: &str, ip: &str) -> Result<(), Error> {
    check_vm_name(vm)?;
    let ip = vinfra_types::router::parse_ip(ip)?;
    let _routers = console.inflight().routers_lock().await;
    let _networks = console.inflight().networks_lock().await;
    let all = console.routers()?;
    let found = all.iter().find(|r| {
        r.value.router.uplink.as_ref().is_some_and(|u| {
            u.floating_ips
                .iter()
                .any(|f| f.vm == vm && f.ip == ip.to_string())
        })
    });
    let Some(cur) = found else {
        return Err(RouterRefusal::NoFloatingIp {
            vm: vm.to_string(),
            ip,
        }
        .into());
    };
    let router = cur.value.router.name.clone();
    let mut rec = cur.value.clone();
    let mut network = None;
    if let Some(u) = rec.router.uplink.as_mut() {
        u.floating_ips.retain(|f| f.ip != ip.to_string());
        network = Some(u.network.clone());
    }
    let mut writes = Writes::default();
    if let Some(n) = network {
        plan_network(console, &n, ip, None, &mut writes)?;
    }
    let told = event(
        "vm",
        vm,
        format!("floating IP {ip} deleted (router {router})"),
    );
    if !console.write_router(
        &router,
        Some(cur.mod_revision),
        Some(&rec),
        writes,
        Some(told),
    )? {
        return Err(concurrent(&router));
    }
    Ok(())
}

/// Releases every floating IP of VM `vm` (deleted), one router at a time, with an event each.
pub async fn release_vm(console: &Console, vm: &str) -> Result<(), Error> {
    let _routers = console.inflight().routers_lock().await;
    let _networks = console.inflight().networks_lock().await;
    for cur in console.routers()? {
        let Some(u) = cur.value.router.uplink.as_ref() else {
            continue;
        };
        let gone: Vec<String> = u
            .floating_ips
            .iter()
            .filter(|f| f.vm == vm)
            .map(|f| f.ip.clone())
            .collect();
        if gone.is_empty() {
            continue;
        }
        let router = cur.value.router.name.clone();
        let mut rec = cur.value.clone();
        let network = u.network.clone();
        if let Some(u) = rec.router.uplink.as_mut() {
            u.floating_ips.retain(|f| f.vm != vm);
        }
        let mut writes = Writes::default();
        if let Some(ext) = console.network(&network) {
            let mut value = ext.value.clone();
            for ip in &gone {
                value.reserved.remove(ip);
            }
            let key = keys::network_key(&network);
            writes
                .compare
                .push(Compare::mod_revision(key.clone(), ext.mod_revision));
            writes.ops.push(Op::Put {
                key,
                value: keys::encode(&value)?,
                lease: 0,
            });
            writes.networks.push((network.clone(), value));
        }
        let told = event(
            "vm",
            vm,
            format!(
                "floating IP{} {} released with the VM (router {router})",
                if gone.len() == 1 { "" } else { "s" },
                gone.join(", ")
            ),
        );
        if !console.write_router(
            &router,
            Some(cur.mod_revision),
            Some(&rec),
            writes,
            Some(told),
        )? {
            return Err(concurrent(&router));
        }
    }
    Ok(())
}
