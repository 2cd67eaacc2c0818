//! What one host's virtual switch needs from the console ([`switch_config`]), computed from the
//! records alone: pure, so equal records give equal configurations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use vinfra_proto::{
    HostSwitchConfig, SwitchArpEntry, SwitchDhcp, SwitchMacEntry, SwitchNetwork, SwitchNetworkKind,
};
use vinfra_types::network::{Ipv4Subnet, Network, NetworkKind};

use crate::state::records::{HostRecord, NetworkRecord, VmRecord};

struct Port<'a> {
    vm: &'a str,
    /// The host its record names first, then the destinations of its migrations in flight.
    on: Vec<&'a str>,
    mac: &'a str,
    ip: &'a str,
}

/// The switch's DHCP responder for a network (`None` if its subnet does not parse). The server
/// identifier is the gateway when there is one, else the subnet's last usable address. Address
/// allocation starts from the lowest address, so that one is the last to be handed to a NIC; if
/// a NIC does hold it, guests still get their leases, with the server identifier equal to that
/// NIC's address.
fn switch_dhcp(n: &Network) -> Option<SwitchDhcp> {
    let subnet = Ipv4Subnet::parse(&n.subnet).ok()?;
    let gateway: Option<Ipv4Addr> = n.gateway.as_deref().and_then(|g| g.parse().ok());
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

/// The underlay addresses of every host but `host`, sorted: the only sources `host`'s VXLAN
/// uplink accepts. Hosts whose address is not IPv4 are left out.
pub fn underlay_peers(host: &str, hosts: &[HostRecord]) -> Vec<Ipv4Addr> {
    let own = hosts
        .iter()
        .find(|h| h.name == host)
        .and_then(|h| h.address.parse::<Ipv4Addr>().ok());
    let mut peers: Vec<Ipv4Addr> = hosts
        .iter()
        .filter(|h| h.name != host)
        .filter_map(|h| h.address.parse::<Ipv4Addr>().ok())
        .filter(|a| Some(*a) != own)
        .collect();
    peers.sort();
    peers.dedup();
    peers
}

/// What `host`'s virtual switch needs from the console, computed from the records alone:
/// - `networks`: every network with a VM NIC on the host (or on the way to it: `incoming` lists
///   `(VM, destination host)` of migrations in flight), with its switch number, kind, MTU and,
///   for overlays, the flood list: the underlay addresses of the other hosts with ports on it;
/// - `macs`: for those overlay networks, each VM MAC on another host and that host's address
///   (VLAN networks reach other hosts through the trunk, which learns them);
/// - `arps`: for those networks, every VM address and its MAC (ARP suppression);
/// - each network's `dhcp`: the switch's DHCP responder, from the subnet, gateway and MTU
///   (server identifier: the gateway, else the subnet's last usable address).
///
/// The agent adds the ports of its own VMs' NICs and their MAC entries. A VM counts on the host
/// its record names, whatever its power state (a stopped VM's entries are harmless and ready for
/// its start). Hosts whose address is not IPv4 are left out of flood lists and MAC entries; NICs
/// without an address or MAC are skipped. The output is sorted, so equal inputs give equal
/// configurations.
pub fn switch_config(
    host: &str,
    hosts: &[HostRecord],
    networks: &[NetworkRecord],
    vms: &[VmRecord],
    incoming: &[(String, String)],
) -> HostSwitchConfig {
    let underlay: HashMap<&str, Ipv4Addr> = hosts
        .iter()
        .filter_map(|h| {
            h.address
                .parse::<Ipv4Addr>()
                .ok()
                .map(|a| (h.name.as_str(), a))
        })
        .collect();
    let own = underlay.get(host).copied();
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
    let mut config = HostSwitchConfig::default();
    let mut sorted: Vec<&NetworkRecord> = networks.iter().collect();
    sorted.sort_by(|a, b| a.network.name.cmp(&b.network.name));
    for rec in sorted {
        let n = &rec.network;
        let Some(all) = ports.get(n.name.as_str()) else {
            continue;
        };
        if !all.iter().any(|p| p.on.contains(&host)) {
            continue;
        }
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
                    let Some(vtep) = underlay.get(h).copied() else {
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
                if let Some(vtep) = underlay.get(home).copied().filter(|v| Some(*v) != own) {
                    // Where a migration in flight takes it: its announcement from there is
                    // the proof of the move the switches wait for.
                    let moving_to = on.get(1).and_then(|to| underlay.get(to).copied());
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
            dhcp: switch_dhcp(n),
        });
    }
    config.underlay_peers = underlay_peers(host, hosts);
    config
        .macs
        .sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    config
        .arps
        .sort_by(|a, b| (&a.network, a.ip).cmp(&(&b.network, b.ip)));
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use uuid::Uuid;
    use vinfra_types::{BootSource, NicSpec, VmSpec};

    use crate::state::records::DesiredPower;

    fn host(name: &str, address: &str) -> HostRecord {
        HostRecord {
            name: name.into(),
            address: address.into(),
            joined_at: 0,
            ratio_override: None,
            maintenance: false,
            capacity: None,
            accel: None,
            qemu_version: None,
            trunk: None,
            underlay_mtu: 1500,
            fence_command: None,
            fenced_at: None,
        }
    }

    fn network(name: &str, kind: NetworkKind, segment: u32, switch_id: u16) -> NetworkRecord {
        NetworkRecord {
            network: Network {
                name: name.into(),
                kind,
                vni: (kind == NetworkKind::Overlay).then_some(segment),
                vlan_id: (kind == NetworkKind::Vlan).then_some(segment),
                subnet: "10.80.1.0/24".into(),
                gateway: None,
                mtu: 1450,
                created_at: 0,
            },
            switch_id,
            ipam: BTreeMap::new(),
        }
    }

    /// A VM on `host` with one NIC per `(network, ip, mac)`.
    fn vm(name: &str, host: &str, nics: &[(&str, &str, &str)]) -> VmRecord {
        VmRecord {
            id: Uuid::new_v4(),
            spec: VmSpec {
                name: name.into(),
                vcpus: 1,
                memory_mib: 128,
                boot: BootSource::Kernel {
                    kernel: "vmlinuz".into(),
                    initrd: None,
                    cmdline: "console=ttyS0".into(),
                },
                disks: vec![],
                nics: nics
                    .iter()
                    .map(|(n, ip, mac)| NicSpec {
                        network: n.to_string(),
                        ip: Some(ip.to_string()),
                        mac: Some(mac.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                ha: Default::default(),
            },
            host: host.into(),
            desired: DesiredPower::Running,
            created_at: 0,
            started_at: None,
            failed_over: None,
            restarts: 0,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Three hosts; `blue` (overlay) has VMs on h1, h2 and h3; `red` (overlay, same subnet) on
    /// h1 and h3; `green` (VLAN) on h1 and h2; `empty` has none; `h` has no NIC.
    fn layout() -> (Vec<HostRecord>, Vec<NetworkRecord>, Vec<VmRecord>) {
        let hosts = vec![
            host("h1", "10.77.0.11"),
            host("h2", "10.77.0.12"),
            host("h3", "10.77.0.13"),
        ];
        let networks = vec![
            network("red", NetworkKind::Overlay, 10001, 2),
            network("blue", NetworkKind::Overlay, 10000, 1),
            network("green", NetworkKind::Vlan, 100, 3),
            network("empty", NetworkKind::Overlay, 10002, 4),
        ];
        let vms = vec![
            vm(
                "a",
                "h1",
                &[
                    ("blue", "10.80.1.1", "02:76:66:00:00:01"),
                    ("green", "10.80.1.1", "02:76:66:00:00:02"),
                ],
            ),
            vm("b", "h1", &[("blue", "10.80.1.2", "02:76:66:00:00:03")]),
            vm("c", "h2", &[("blue", "10.80.1.3", "02:76:66:00:00:04")]),
            vm("d", "h3", &[("blue", "10.80.1.4", "02:76:66:00:00:05")]),
            vm("e", "h3", &[("red", "10.80.1.1", "02:76:66:00:00:06")]),
            vm("f", "h1", &[("red", "10.80.1.2", "02:76:66:00:00:07")]),
            vm("g", "h2", &[("green", "10.80.1.2", "02:76:66:00:00:08")]),
            vm("h", "h3", &[]),
        ];
        (hosts, networks, vms)
    }

    fn names(c: &HostSwitchConfig) -> Vec<&str> {
        c.networks.iter().map(|n| n.name.as_str()).collect()
    }

    /// (network, MAC, VTEP) of every MAC entry.
    fn macs(c: &HostSwitchConfig) -> Vec<(&str, &str, Ipv4Addr)> {
        c.macs
            .iter()
            .map(|m| (m.network.as_str(), m.mac.as_str(), m.host_ip))
            .collect()
    }

    #[test]
    fn three_hosts() {
        let (hosts, networks, vms) = layout();

        let h1 = switch_config("h1", &hosts, &networks, &vms, &[]);
        assert_eq!(
            names(&h1),
            ["blue", "green", "red"],
            "only networks with ports on h1"
        );
        let blue = &h1.networks[0];
        assert_eq!(blue.id, 1);
        assert_eq!(blue.kind, SwitchNetworkKind::Overlay { vni: 10000 });
        assert_eq!(blue.mtu, 1450);
        assert_eq!(blue.flood, [ip("10.77.0.12"), ip("10.77.0.13")]);
        // No gateway: the responder takes the subnet's last usable address.
        assert_eq!(
            blue.dhcp,
            Some(SwitchDhcp {
                prefix_len: 24,
                gateway: None,
                server: ip("10.80.1.254"),
                mtu: 1450,
            })
        );
        // A VLAN network reaches other hosts through the trunk: no flood list, no VTEPs.
        let green = &h1.networks[1];
        assert_eq!(green.kind, SwitchNetworkKind::Vlan { vid: 100 });
        assert!(green.flood.is_empty());
        // The same subnet on another network: its own hosts only.
        assert_eq!(
            h1.networks[2].flood,
            [ip("10.77.0.13")],
            "only h3 has red ports"
        );
        assert_eq!(
            macs(&h1),
            [
                ("blue", "02:76:66:00:00:04", ip("10.77.0.12")),
                ("blue", "02:76:66:00:00:05", ip("10.77.0.13")),
                ("red", "02:76:66:00:00:06", ip("10.77.0.13")),
            ],
            "remote overlay MACs only; not a's, b's or f's (local), not g's (VLAN)"
        );
        let arps: Vec<(&str, Ipv4Addr, &str)> = h1
            .arps
            .iter()
            .map(|a| (a.network.as_str(), a.ip, a.mac.as_str()))
            .collect();
        assert_eq!(
            arps,
            [
                ("blue", ip("10.80.1.1"), "02:76:66:00:00:01"),
                ("blue", ip("10.80.1.2"), "02:76:66:00:00:03"),
                ("blue", ip("10.80.1.3"), "02:76:66:00:00:04"),
                ("blue", ip("10.80.1.4"), "02:76:66:00:00:05"),
                ("green", ip("10.80.1.1"), "02:76:66:00:00:02"),
                ("green", ip("10.80.1.2"), "02:76:66:00:00:08"),
                ("red", ip("10.80.1.1"), "02:76:66:00:00:06"),
                ("red", ip("10.80.1.2"), "02:76:66:00:00:07"),
            ]
        );

        let h2 = switch_config("h2", &hosts, &networks, &vms, &[]);
        assert_eq!(names(&h2), ["blue", "green"]);
        assert_eq!(h2.networks[0].flood, [ip("10.77.0.11"), ip("10.77.0.13")]);
        assert_eq!(
            macs(&h2),
            [
                ("blue", "02:76:66:00:00:01", ip("10.77.0.11")),
                ("blue", "02:76:66:00:00:03", ip("10.77.0.11")),
                ("blue", "02:76:66:00:00:05", ip("10.77.0.13")),
            ]
        );
        assert!(h2.arps.iter().all(|a| a.network != "red"));

        let h3 = switch_config("h3", &hosts, &networks, &vms, &[]);
        assert_eq!(names(&h3), ["blue", "red"]);
        assert_eq!(h3.networks[1].flood, [ip("10.77.0.11")]);
        assert_eq!(
            macs(&h3)
                .into_iter()
                .filter(|m| m.0 == "red")
                .collect::<Vec<_>>(),
            [("red", "02:76:66:00:00:07", ip("10.77.0.11"))]
        );

        // Every host's uplink accepts the other hosts, and only them.
        assert_eq!(h3.underlay_peers, [ip("10.77.0.11"), ip("10.77.0.12")]);
        // A host without ports gets nothing but the peers.
        let h4 = switch_config("h4", &hosts, &networks, &vms, &[]);
        assert_eq!(
            h4,
            HostSwitchConfig {
                underlay_peers: vec![ip("10.77.0.11"), ip("10.77.0.12"), ip("10.77.0.13")],
                ..Default::default()
            }
        );
        // Equal inputs, equal output (whatever the record order).
        let mut shuffled = vms.clone();
        shuffled.reverse();
        assert_eq!(switch_config("h1", &hosts, &networks, &shuffled, &[]), h1);
    }

    #[test]
    fn migrations_and_odd_hosts() {
        let (mut hosts, networks, mut vms) = layout();
        // c migrates from h2 to h3: h3 already knows the network; h2 stays the MAC's home until
        // the switchover, and h3 does not get a remote entry for a VM arriving there.
        let incoming = vec![
            ("g".to_string(), "h3".to_string()),
            ("c".to_string(), "h3".to_string()),
        ];
        let h3 = switch_config("h3", &hosts, &networks, &vms, &incoming);
        assert_eq!(names(&h3), ["blue", "green", "red"], "g brings green to h3");
        assert!(macs(&h3).iter().all(|m| m.1 != "02:76:66:00:00:04"));
        let h1 = switch_config("h1", &hosts, &networks, &vms, &incoming);
        assert!(macs(&h1).contains(&("blue", "02:76:66:00:00:04", ip("10.77.0.12"))));
        // The entry may move to h3, on c's announcement from there, and no other entry may.
        let moving: Vec<(&str, Option<Ipv4Addr>)> = h1
            .macs
            .iter()
            .map(|m| (m.mac.as_str(), m.moving_to))
            .filter(|m| m.1.is_some())
            .collect();
        assert_eq!(moving, [("02:76:66:00:00:04", Some(ip("10.77.0.13")))]);

        // After the switchover the record names h3: every host's entry follows, and h2 leaves
        // blue's flood lists.
        vms.iter_mut().find(|v| v.spec.name == "c").unwrap().host = "h3".into();
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[]);
        assert_eq!(h1.networks[0].flood, [ip("10.77.0.13")]);
        assert!(macs(&h1).contains(&("blue", "02:76:66:00:00:04", ip("10.77.0.13"))));
        assert!(h1.macs.iter().all(|m| m.moving_to.is_none()));
        let h2 = switch_config("h2", &hosts, &networks, &vms, &[]);
        assert_eq!(names(&h2), ["green"]);

        // A host with a non-IPv4 address is not a VTEP.
        hosts[2].address = "fe80::1".into();
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[]);
        assert!(h1.networks[0].flood.is_empty());
        assert!(macs(&h1).is_empty());
        assert_eq!(h1.arps.len(), 8, "ARP entries do not need a VTEP");
    }
}
