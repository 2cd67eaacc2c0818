//! Networks: create (VNI or VLAN ID and switch number claimed with the record), list, show
//! (with the ports: each VM NIC on the network), delete (refused while a VM has a NIC on it or
//! it is attached to a router).

use std::collections::{BTreeMap, BTreeSet};

use vinfra_store::{Compare, Op};
use vinfra_types::filter::{ListFilter, NetworkFilter};
use vinfra_types::network::{
    self as net, CreateNetworkRequest, Network, NetworkKind, NetworkPort, NetworkSummary,
};

use crate::error::{Error, Object, RouterRefusal};
use crate::state::records::{self as keys, now_s, NetworkRecord, SegmentClaim};
use crate::state::{Console, Writes};

/// The claim space of a network kind's numbers.
fn space(kind: NetworkKind) -> &'static str {
    match kind {
        NetworkKind::Overlay => "vni",
        NetworkKind::Vlan => "vlan",
    }
}

/// A network's VNI or VLAN ID.
fn segment_of(n: &Network) -> Option<u32> {
    match n.kind {
        NetworkKind::Overlay => n.vni,
        NetworkKind::Vlan => n.vlan_id,
    }
}

/// Creates a network: checks it, settles its VNI or VLAN ID (the lowest free one from
/// [`net::AUTO_VNI_START`] / [`net::AUTO_VLAN_START`] when not given) and its switch number,
/// and stores it with their claims in one transaction.
pub async fn create(
    console: &Console,
    request: CreateNetworkRequest,
) -> Result<NetworkSummary, Error> {
    let (subnet, gateway, mtu) = net::check_request(&request)?;
    let _lock = console.inflight().networks_lock().await;
    let name = request.name.clone();
    if console.network(&name).is_some() {
        return Err(Error::NameTaken {
            kind: Object::Network,
            name,
        });
    }
    let kind = request.kind;
    let (label, wanted, first, last) = match kind {
        NetworkKind::Overlay => (
            "vni",
            request.vni,
            net::AUTO_VNI_START,
            net::MAX_NETWORK_VNI,
        ),
        NetworkKind::Vlan => (
            "vlan_id",
            request.vlan_id,
            net::AUTO_VLAN_START,
            net::MAX_VLAN_ID,
        ),
    };
    let (used, switch_ids) = console.with_networks(|mirror| {
        let used: BTreeMap<u32, String> = mirror
            .values()
            .filter(|r| r.value.network.kind == kind)
            .filter_map(|r| segment_of(&r.value.network).map(|s| (s, r.value.network.name.clone())))
            .collect();
        let ids: BTreeSet<u16> = mirror.values().map(|r| r.value.switch_id).collect();
        (used, ids)
    });
    let switch_id = (1..=u16::MAX)
        .find(|i| !switch_ids.contains(i))
        .ok_or(Error::NoFreeSwitchId)?;
    let segment = match wanted {
        Some(s) => {
            if let Some(other) = used.get(&s) {
                return Err(Error::SegmentTaken {
                    label,
                    segment: s,
                    network: other.clone(),
                });
            }
            s
        }
        None => (first..=last)
            .find(|s| !used.contains_key(s))
            .ok_or(Error::NoFreeSegment { label, first, last })?,
    };
    let network = Network {
        name: name.clone(),
        kind,
        vni: (kind == NetworkKind::Overlay).then_some(segment),
        vlan_id: (kind == NetworkKind::Vlan).then_some(segment),
        subnet: subnet.to_string(),
        gateway: gateway.map(|g| g.to_string()),
        mtu,
        created_at: now_s(),
    };
    let rec = NetworkRecord {
        network: network.clone(),
        switch_id,
        ipam: BTreeMap::new(),
        reserved: BTreeMap::new(),
    };
    let claim = keys::encode(&SegmentClaim {
        network: name.clone(),
    })?;
    let mut claims = Writes::default();
    for k in [
        keys::segment_key(space(kind), segment),
        keys::segment_key("switch", u32::from(switch_id)),
    ] {
        claims.compare.push(Compare::absent(k.clone()));
        claims.ops.push(Op::Put {
            key: k,
            value: claim.clone(),
            lease: 0,
        });
    }
    if !console.write_network(&name, None, Some(&rec), claims)? {
        return Err(Error::NetworkRaced {
            network: name,
            label,
            segment,
        });
    }
    console.event(
        "network",
        &name,
        format!(
            "created: {} {label} {segment}, subnet {subnet}, mtu {mtu}",
            kind.as_str()
        ),
    );
    Ok(NetworkSummary {
        network,
        ports: vec![],
    })
}

/// VM name → host of every VM whose record is gone but that may still exist on that host (it
/// keeps its addresses until the host confirms its removal).
fn being_removed(console: &Console) -> BTreeMap<String, String> {
    match console.cleanups(None) {
        Ok(all) => all
            .into_iter()
            .map(|(_, m)| (m.value.vm, m.value.host))
            .collect(),
        Err(e) => {
            tracing::warn!(
                "reading the cleanup markers: {}",
                vinfra_types::error::Chain(&e)
            );
            BTreeMap::new()
        }
    }
}

/// A network with its ports.
fn summary(console: &Console, rec: &NetworkRecord) -> NetworkSummary {
    let mut removing: Option<BTreeMap<String, String>> = None;
    let mut ports: Vec<NetworkPort> = rec
        .ipam
        .iter()
        .map(|(ip, e)| NetworkPort {
            vm: e.vm.clone(),
            nic: e.nic,
            host: console.vm(&e.vm).map(|v| v.value.host).unwrap_or_else(|_| {
                removing
                    .get_or_insert_with(|| being_removed(console))
                    .get(&e.vm)
                    .cloned()
                    .unwrap_or_default()
            }),
            mac: e.mac.clone(),
            ip: ip.clone(),
        })
        .collect();
    ports.sort_by(|a, b| (&a.vm, a.nic).cmp(&(&b.vm, b.nic)));
    NetworkSummary {
        network: rec.network.clone(),
        ports,
    }
}

/// Every network with its ports, in name order, or those `filter` lets through (the kind
/// tested on the records, before their ports are gathered).
pub fn list(console: &Console, filter: &NetworkFilter) -> Vec<NetworkSummary> {
    console
        .network_records()
        .iter()
        .filter(|r| filter.kind.is_none_or(|k| k == r.network.kind))
        .map(|r| summary(console, r))
        .filter(|n| filter.lets(n))
        .collect()
}

/// One network with its ports: for each VM NIC, the VM, its host, MAC and address.
pub fn show(console: &Console, name: &str) -> Result<NetworkSummary, Error> {
    let rec = console
        .network(name)
        .ok_or_else(|| Error::not_found(Object::Network, name))?;
    Ok(summary(console, &rec.value))
}

/// Deletes a network no VM has a NIC on ([`Error::NetworkInUse`] naming the VMs otherwise) and
/// no router is attached to ([`RouterRefusal::NetworkAttached`] naming it), with its claims.
/// An attachment writes its router under the networks lock, so none comes in between.
pub async fn delete(console: &Console, name: &str) -> Result<(), Error> {
    let _lock = console.inflight().networks_lock().await;
    let cur = console
        .network(name)
        .ok_or_else(|| Error::not_found(Object::Network, name))?;
    let mut users: BTreeSet<String> = cur.value.ipam.values().map(|e| e.vm.clone()).collect();
    console.with_vms(|vms| {
        users.extend(
            vms.values()
                .filter(|v| v.value.spec.nics.iter().any(|n| n.network == name))
                .map(|v| v.value.spec.name.clone()),
        )
    });
    if !users.is_empty() {
        let removing = being_removed(console);
        let shown: Vec<String> = users
            .iter()
            .take(10)
            .map(|vm| match removing.get(vm) {
                Some(host) => format!("{vm} (being removed from host {host})"),
                None => vm.clone(),
            })
            .collect();
        return Err(Error::NetworkInUse {
            network: name.to_string(),
            more: users.len().saturating_sub(shown.len()),
            users: shown,
        });
    }
    let routers = console.routers()?;
    if let Some(router) = crate::routers::router_of(&routers, name) {
        return Err(RouterRefusal::NetworkAttached {
            network: name.to_string(),
            router,
        }
        .into());
    }
    let uplinks = crate::routers::uplinks_on(&routers, name);
    if !uplinks.is_empty() {
        return Err(RouterRefusal::NetworkIsUplink {
            network: name.to_string(),
            routers: uplinks,
        }
        .into());
    }
    let mut claims = Writes::default();
    claims.ops.push(Op::Delete {
        key: keys::segment_key("switch", u32::from(cur.value.switch_id)),
    });
    if let Some(s) = segment_of(&cur.value.network) {
        claims.ops.push(Op::Delete {
            key: keys::segment_key(space(cur.value.network.kind), s),
        });
    }
    if !console.write_network(name, Some(cur.mod_revision), None, claims)? {
        return Err(Error::Concurrent {
            kind: Object::Network,
            name: name.to_string(),
        });
    }
    console.event("network", name, "deleted");
    Ok(())
}
