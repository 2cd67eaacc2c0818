//! What one host's virtual switch needs from the console ([`switch_config`]), computed from the
//! records alone: pure, so equal records give equal configurations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use vinfra_proto::{
    HostSwitchConfig, SwitchArpEntry, SwitchDhcp, SwitchMacEntry, SwitchNetwork, SwitchNetworkKind,
    SwitchNicQos, SwitchNicSecurity,
};
use vinfra_types::network::{Ipv4Subnet, Network, NetworkKind};
use vinfra_types::router::RouterSummary;
use vinfra_types::security_group::{SecurityGroup, SgRemote};

use super::firewall::nic_firewalls;
use super::routing::{routers_here, switch_router};
use crate::state::records::{NetworkRecord, VmRecord};
use crate::state::UnderlayIndex;

struct Port<'a> {
    vm: &'a str,
    /// The host its record names first, then the destinations of its migrations in flight.
    on: Vec<&'a str>,
    mac: &'a str,
    ip: &'a str,
}

/// The switch's DHCP responder for a network (`None` if its subnet does not parse). The gateway
/// is its router's interface address (`routed`) when the network is attached to a router, else
/// the network's own. The server identifier is the gateway when there is one, else the subnet's
/// last usable address. Address allocation starts from the lowest address, so that one is the
/// last to be handed to a NIC; if a NIC does hold it, guests still get their leases, with the
/// server identifier equal to that NIC's address.
fn switch_dhcp(n: &Network, routed: Option<Ipv4Addr>) -> Option<SwitchDhcp> {
    let subnet = Ipv4Subnet::parse(&n.subnet).ok()?;
    let gateway: Option<Ipv4Addr> =
        routed.or_else(|| n.gateway.as_deref().and_then(|g| g.parse().ok()));
    let last = u32::from(subnet.broadcast())
        .checked_sub(1)
        .map(Ipv4Addr::from)
        .filter(|a| subnet.is_usable(*a));
    let server = gateway.or(last)?;
    Some(SwitchDhcp {
        prefix_len: subnet.prefix(),
        gateway,
        server,
        mtu: u16::try_from(n.mtu).unwrap_or(u16::MAX),
    })
}

/// The QoS of every NIC on `host` (its VM placed there, or arriving by one of the migrations in
/// flight, `(VM, destination)` in `incoming`) that has one, by network and MAC (lower case),
/// sorted. NICs without a MAC are skipped.
pub fn nic_qos(host: &str, vms: &[VmRecord], incoming: &[(String, String)]) -> Vec<SwitchNicQos> {
    let arriving = |vm: &str| incoming.iter().any(|(v, to)| v == vm && to == host);
    let mut out: Vec<SwitchNicQos> = vms
        .iter()
        .filter(|vm| vm.host == host || arriving(&vm.spec.name))
        .flat_map(|vm| &vm.spec.nics)
        .filter_map(|nic| {
            Some(SwitchNicQos {
                network: nic.network.clone(),
                mac: nic.mac.as_ref()?.to_ascii_lowercase(),
                qos: nic.qos.clone()?,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    out
}

/// The port security of every NIC on `host` (its VM placed there, or arriving by one of the
/// migrations in flight), by network and MAC (lower case), sorted. NICs without a MAC are
/// skipped.
pub fn nic_security(
    host: &str,
    vms: &[VmRecord],
    incoming: &[(String, String)],
) -> Vec<SwitchNicSecurity> {
    let arriving = |vm: &str| incoming.iter().any(|(v, to)| v == vm && to == host);
    let mut out: Vec<SwitchNicSecurity> = vms
        .iter()
        .filter(|vm| vm.host == host || arriving(&vm.spec.name))
        .flat_map(|vm| &vm.spec.nics)
        .filter_map(|nic| {
            Some(SwitchNicSecurity {
                network: nic.network.clone(),
                mac: nic.mac.as_ref()?.to_ascii_lowercase(),
                port_security: nic.port_security(),
                ip: nic.ip.clone(),
                allowed_addresses: nic.allowed_addresses.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    out
}

/// What `host`'s virtual switch needs from the console, computed from the records alone:
/// - `networks`: every network with a VM NIC on the host (or on the way to it: `incoming` lists
///   `(VM, destination host)` of migrations in flight), and every network attached to a router
///   of `routers` that has an interface on one of those (so a packet is routed on its sender's
///   host and sent straight to the destination's host), each with its switch number, kind, MTU
///   and, for overlays, the flood list: the underlay addresses of the other hosts with ports on
///   it;
/// - `macs`: for those overlay networks, each VM MAC on another host and that host's address
///   (VLAN networks reach other hosts through the trunk, which learns them);
/// - `arps`: for those networks, every VM address and its MAC (ARP suppression);
/// - each network's `dhcp`: the switch's DHCP responder, from the subnet, gateway (its router's
///   interface when it is attached to one) and MTU (server identifier: the gateway, else the
///   subnet's last usable address);
/// - `routers`: those routers, with their interfaces and static routes
///   ([`super::routing::switch_router`]), with their uplinks; a router's edge host carries it
///   (and its networks and external network) even without a port on its networks;
/// - `firewalls`: for each NIC there (or arriving) in a security group of `groups`, its rules
///   ([`super::firewall::nic_firewalls`]: remote groups expanded to their members' addresses);
/// - `qos`: for each NIC there (or arriving) with a QoS, that QoS ([`nic_qos`]);
/// - `port_security`: for each NIC there (or arriving), its port security ([`nic_security`]).
///
/// The agent adds the ports of its own VMs' NICs and their MAC entries. A VM counts on the host
/// its record names, whatever its power state (a stopped VM's entries are harmless and ready for
/// its start). Hosts whose address is not IPv4 are left out of flood lists and MAC entries; NICs
/// without an address or MAC are skipped. The output is sorted, so equal inputs give equal
/// configurations.
pub fn switch_config(
    host: &str,
    underlay: &UnderlayIndex,
    networks: &[NetworkRecord],
    vms: &[VmRecord],
    groups: &[SecurityGroup],
    routers: &[RouterSummary],
    incoming: &[(String, String)],
) -> HostSwitchConfig {
    let own = underlay.address(host);
    let arriving: BTreeSet<&str> = incoming
        .iter()
        .filter(|(_, to)| to == host)
        .map(|(vm, _)| vm.as_str())
        .collect();
    let extra: HashMap<&str, Vec<&str>> =
        incoming.iter().fold(HashMap::new(), |mut m, (vm, to)| {
            m.entry(vm.as_str()).or_default().push(to.as_str());
            m
        });
    let mut ports: BTreeMap<&str, Vec<Port>> = BTreeMap::new();
    for vm in vms {
        let mut on: Vec<&str> = vec![vm.host.as_str()];
        on.extend(extra.get(vm.spec.name.as_str()).into_iter().flatten());
        for nic in &vm.spec.nics {
            let (Some(ip), Some(mac)) = (&nic.ip, &nic.mac) else {
                continue;
            };
            ports.entry(nic.network.as_str()).or_default().push(Port {
                vm: vm.spec.name.as_str(),
                on: on.clone(),
                mac: mac.as_str(),
                ip: ip.as_str(),
            });
        }
    }
    let local: BTreeSet<&str> = ports
        .iter()
        .filter(|(_, all)| all.iter().any(|p| p.on.contains(&host)))
        .map(|(n, _)| *n)
        .collect();
    let here = routers_here(host, &local, routers);
    let mut config = HostSwitchConfig::default();
    let mut sorted: Vec<&NetworkRecord> = networks.iter().collect();
    sorted.sort_by(|a, b| a.network.name.cmp(&b.network.name));
    for rec in sorted {
        let n = &rec.network;
        let name = n.name.as_str();
        if !local.contains(name)
            && !here.gateways.contains_key(name)
            && !here.uplinks.contains(name)
        {
            continue;
        }
        let all: &[Port] = ports.get(name).map_or(&[], Vec::as_slice);
        let kind = match n.kind {
            NetworkKind::Overlay => SwitchNetworkKind::Overlay {
                vni: n.vni.unwrap_or(0),
            },
            NetworkKind::Vlan => SwitchNetworkKind::Vlan {
                vid: n.vlan_id.and_then(|v| u16::try_from(v).ok()).unwrap_or(0),
            },
        };
        let mut flood = vec![];
        if n.kind == NetworkKind::Overlay {
            for Port { vm, on, mac, .. } in all {
                for h in on.iter().filter(|h| **h != host) {
                    let Some(vtep) = underlay.address(h) else {
                        continue;
                    };
                    if Some(vtep) != own {
                        flood.push(vtep);
                    }
                }
                // The MAC lives where the record says until the switchover; a VM arriving here
                // gets its local entry from this host's agent.
                let home = on[0];
                if home == host || arriving.contains(vm) {
                    continue;
                }
                if let Some(vtep) = underlay.address(home).filter(|v| Some(*v) != own) {
                    // Where a migration in flight takes it: its announcement from there is
                    // the proof of the move the switches wait for.
                    let moving_to = on.get(1).and_then(|to| underlay.address(to));
                    config.macs.push(SwitchMacEntry {
                        network: n.name.clone(),
                        mac: mac.to_string(),
                        host_ip: vtep,
                        moving_to,
                    });
                }
            }
            flood.sort();
            flood.dedup();
        }
        for Port { mac, ip, .. } in all {
            if let Ok(ip) = ip.parse() {
                config.arps.push(SwitchArpEntry {
                    network: n.name.clone(),
                    ip,
                    mac: mac.to_string(),
                });
            }
        }
        config.networks.push(SwitchNetwork {
            name: n.name.clone(),
            id: rec.switch_id,
            kind,
            mtu: u16::try_from(n.mtu).unwrap_or(u16::MAX),
            flood,
            dhcp: switch_dhcp(n, here.gateways.get(name).copied()),
        });
    }
    let present: BTreeSet<&str> = config.networks.iter().map(|n| n.name.as_str()).collect();
    config.routers = here
        .routers
        .iter()
        .map(|r| switch_router(r, &present, underlay))
        .collect();
    config.underlay_peers = underlay.peers_of(host);
    config
        .macs
        .sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    config
        .arps
        .sort_by(|a, b| (&a.network, a.ip).cmp(&(&b.network, b.ip)));
    config.firewalls = nic_firewalls(host, groups, vms, incoming);
    config.qos = nic_qos(host, vms, incoming);
    config.port_security = nic_security(host, vms, incoming);
    config
}

/// What [`switch_config`] of `host` reads beyond the VMs there: the networks it carries and
/// the security groups whose members its firewalls name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigScope<'a> {
    /// The networks with a port of a VM in `here`, and those its routers bring.
    pub networks: BTreeSet<&'a str>,
    /// The groups the rules of `here`'s NICs' groups name as remotes.
    pub remote_groups: BTreeSet<&'a str>,
}

/// The scope of `host`'s configuration, from `here` (at least every VM placed on `host` or
/// arriving by a migration in flight), the security groups and the routers: [`switch_config`]
/// over `here`, the VMs with a NIC on one of its `networks` and those with a NIC in one of its
/// `remote_groups` (any order of those, each once) and over the records of its `networks` equals
/// [`switch_config`] over every VM and network record. A console with many VMs builds a host's
/// configuration from those alone.
pub fn config_scope<'a>(
    host: &str,
    here: &'a [VmRecord],
    groups: &'a [SecurityGroup],
    routers: &'a [RouterSummary],
) -> ConfigScope<'a> {
    // As switch_config's ports: a NIC with an address and a MAC.
    let local: BTreeSet<&str> = here
        .iter()
        .flat_map(|vm| &vm.spec.nics)
        .filter(|nic| nic.ip.is_some() && nic.mac.is_some())
        .map(|nic| nic.network.as_str())
        .collect();
    let routed = routers_here(host, &local, routers);
    let mut networks = local;
    networks.extend(routed.gateways.keys());
    networks.extend(routed.uplinks.iter());
    // As nic_firewalls: a NIC with a MAC in some group.
    let named: BTreeSet<&str> = here
        .iter()
        .flat_map(|vm| &vm.spec.nics)
        .filter(|nic| nic.mac.is_some())
        .flat_map(|nic| &nic.security_groups)
        .map(String::as_str)
        .collect();
    let remote_groups = groups
        .iter()
        .filter(|g| named.contains(g.name.as_str()))
        .flat_map(|g| &g.rules)
        .filter_map(|r| match r.remote() {
            Some(SgRemote::Group(other)) => Some(other),
            _ => None,
        })
        .collect();
    ConfigScope {
        networks,
        remote_groups,
    }
}

#[cfg(test)]
pub(crate) mod tests;
