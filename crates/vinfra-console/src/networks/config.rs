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
use vinfra_types::security_group::SecurityGroup;

use super::firewall::nic_firewalls;
use super::routing::{routers_here, switch_router};
use crate::state::records::{HostRecord, NetworkRecord, VmRecord};

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
    hosts: &[HostRecord],
    networks: &[NetworkRecord],
    vms: &[VmRecord],
    groups: &[SecurityGroup],
    routers: &[RouterSummary],
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
            dhcp: switch_dhcp(n, here.gateways.get(name).copied()),
        });
    }
    let present: BTreeSet<&str> = config.networks.iter().map(|n| n.name.as_str()).collect();
    config.routers = here
        .routers
        .iter()
        .map(|r| switch_router(r, &present, &underlay))
        .collect();
    config.underlay_peers = underlay_peers(host, hosts);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use uuid::Uuid;
    use vinfra_proto::{SwitchRoute, SwitchRouter, SwitchRouterInterface};
    use vinfra_types::{BootSource, NicSpec, VmSpec};

    use crate::state::records::DesiredPower;

    pub(crate) fn host(name: &str, address: &str) -> HostRecord {
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

    pub(crate) fn network(
        name: &str,
        kind: NetworkKind,
        segment: u32,
        switch_id: u16,
    ) -> NetworkRecord {
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
            reserved: BTreeMap::new(),
        }
    }

    /// A VM on `host` with one NIC per `(network, ip, mac)`.
    pub(crate) fn vm(name: &str, host: &str, nics: &[(&str, &str, &str)]) -> VmRecord {
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

    pub(crate) fn ip(s: &str) -> Ipv4Addr {
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

    pub(crate) fn names(c: &HostSwitchConfig) -> Vec<&str> {
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

        let h1 = switch_config("h1", &hosts, &networks, &vms, &[], &[], &[]);
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

        let h2 = switch_config("h2", &hosts, &networks, &vms, &[], &[], &[]);
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

        let h3 = switch_config("h3", &hosts, &networks, &vms, &[], &[], &[]);
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
        let h4 = switch_config("h4", &hosts, &networks, &vms, &[], &[], &[]);
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
        assert_eq!(
            switch_config("h1", &hosts, &networks, &shuffled, &[], &[], &[]),
            h1
        );
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
        let h3 = switch_config("h3", &hosts, &networks, &vms, &[], &[], &incoming);
        assert_eq!(names(&h3), ["blue", "green", "red"], "g brings green to h3");
        assert!(macs(&h3).iter().all(|m| m.1 != "02:76:66:00:00:04"));
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[], &[], &incoming);
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
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[], &[], &[]);
        assert_eq!(h1.networks[0].flood, [ip("10.77.0.13")]);
        assert!(macs(&h1).contains(&("blue", "02:76:66:00:00:04", ip("10.77.0.13"))));
        assert!(h1.macs.iter().all(|m| m.moving_to.is_none()));
        let h2 = switch_config("h2", &hosts, &networks, &vms, &[], &[], &[]);
        assert_eq!(names(&h2), ["green"]);

        // A host with a non-IPv4 address is not a VTEP.
        hosts[2].address = "fe80::1".into();
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[], &[], &[]);
        assert!(h1.networks[0].flood.is_empty());
        assert!(macs(&h1).is_empty());
        assert_eq!(h1.arps.len(), 8, "ARP entries do not need a VTEP");
    }

    #[test]
    fn a_nics_qos_is_on_its_host_and_a_migrations_destination() {
        use vinfra_types::qos::{NicPriority, NicQos, NicRate};
        let (hosts, networks, mut vms) = layout();
        let qos = NicQos {
            egress: Some(NicRate::new(100_000_000)),
            priority: NicPriority::High,
            ..NicQos::default()
        };
        // c (h2) has a QoS on its blue NIC, written in upper case.
        let c = vms.iter_mut().find(|v| v.spec.name == "c").unwrap();
        c.spec.nics[0].qos = Some(qos.clone());
        c.spec.nics[0].mac = Some("02:76:66:00:00:0A".into());
        let entry = SwitchNicQos {
            network: "blue".into(),
            mac: "02:76:66:00:00:0a".into(),
            qos,
        };
        let h2 = switch_config("h2", &hosts, &networks, &vms, &[], &[], &[]);
        assert_eq!(h2.qos, std::slice::from_ref(&entry));
        let h3 = switch_config("h3", &hosts, &networks, &vms, &[], &[], &[]);
        assert!(h3.qos.is_empty(), "only the NIC's own host");
        // Migrating to h3: h3 has it before the switchover, h2 still has it.
        let incoming = vec![("c".to_string(), "h3".to_string())];
        let h3 = switch_config("h3", &hosts, &networks, &vms, &[], &[], &incoming);
        assert_eq!(h3.qos, std::slice::from_ref(&entry));
        let h2 = switch_config("h2", &hosts, &networks, &vms, &[], &[], &incoming);
        assert_eq!(h2.qos, std::slice::from_ref(&entry));
        // After it, h3 only.
        vms.iter_mut().find(|v| v.spec.name == "c").unwrap().host = "h3".into();
        let h2 = switch_config("h2", &hosts, &networks, &vms, &[], &[], &[]);
        assert!(h2.qos.is_empty());
        let h3 = switch_config("h3", &hosts, &networks, &vms, &[], &[], &[]);
        assert_eq!(h3.qos, [entry]);
        // A NIC without QoS has no entry.
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[], &[], &[]);
        assert!(h1.qos.is_empty());
    }

    /// A router with an interface on each `(network, subnet, gateway, switch id)` and routes
    /// `(prefix, via)`.
    pub(crate) fn router(
        name: &str,
        id: u16,
        ifaces: &[(&str, &str, &str, u16)],
        routes: &[(&str, &str)],
    ) -> RouterSummary {
        use vinfra_types::router::{gateway_mac, RouterAttachment, RouterStaticRoute};
        RouterSummary {
            name: name.into(),
            id,
            interfaces: ifaces
                .iter()
                .map(|(n, subnet, gw, sw)| RouterAttachment {
                    network: n.to_string(),
                    subnet: subnet.to_string(),
                    gateway: gw.to_string(),
                    gateway_mac: vinfra_types::network::format_mac(gateway_mac(*sw)),
                })
                .collect(),
            routes: routes
                .iter()
                .map(|(p, v)| RouterStaticRoute {
                    prefix: p.to_string(),
                    via: v.to_string(),
                })
                .collect(),
            uplink: None,
            created_at: 0,
        }
    }

    #[test]
    fn routers_bring_every_network_they_attach_to_the_hosts_of_any_of_them() {
        let hosts = vec![
            host("h1", "10.77.0.11"),
            host("h2", "10.77.0.12"),
            host("h3", "10.77.0.13"),
        ];
        let net = |name, kind, seg, sw, subnet: &str| {
            let mut n = network(name, kind, seg, sw);
            n.network.subnet = subnet.into();
            n
        };
        let networks = vec![
            net("front", NetworkKind::Overlay, 10001, 1, "10.1.0.0/24"),
            net("back", NetworkKind::Overlay, 10002, 2, "10.2.0.0/24"),
            net("lone", NetworkKind::Overlay, 10003, 3, "10.3.0.0/24"),
            net("db", NetworkKind::Vlan, 100, 4, "10.4.0.0/24"),
            // Another tenant's router, the same subnet as front.
            net("t2", NetworkKind::Overlay, 10005, 5, "10.1.0.0/24"),
        ];
        let vms = vec![
            vm("a", "h1", &[("front", "10.1.0.10", "02:76:66:00:00:01")]),
            vm("b", "h2", &[("back", "10.2.0.10", "02:76:66:00:00:02")]),
            vm("c", "h3", &[("back", "10.2.0.11", "02:76:66:00:00:03")]),
            vm("d", "h3", &[("lone", "10.3.0.10", "02:76:66:00:00:04")]),
            vm("e", "h2", &[("db", "10.4.0.10", "02:76:66:00:00:05")]),
            vm("f", "h3", &[("t2", "10.1.0.10", "02:76:66:00:00:06")]),
        ];
        let routers = vec![
            router("r2", 2, &[("t2", "10.1.0.0/24", "10.1.0.1", 5)], &[]),
            router(
                "r1",
                1,
                &[
                    ("front", "10.1.0.0/24", "10.1.0.1", 1),
                    ("back", "10.2.0.0/24", "10.2.0.1", 2),
                    ("db", "10.4.0.0/24", "10.4.0.254", 4),
                ],
                &[("10.9.0.0/16", "10.2.0.10"), ("0.0.0.0/0", "10.2.0.11")],
            ),
        ];
        let config = |h: &str| switch_config(h, &hosts, &networks, &vms, &[], &routers, &[]);

        // h1 has a port on front only: r1 brings back and db, not lone or t2.
        let h1 = config("h1");
        assert_eq!(names(&h1), ["back", "db", "front"]);
        let r1 = SwitchRouter {
            name: "r1".into(),
            id: 1,
            interfaces: vec![
                SwitchRouterInterface {
                    network: "back".into(),
                    ip: ip("10.2.0.1"),
                    prefix_len: 24,
                    mac: "02:76:72:00:00:02".into(),
                },
                SwitchRouterInterface {
                    network: "db".into(),
                    ip: ip("10.4.0.254"),
                    prefix_len: 24,
                    mac: "02:76:72:00:00:04".into(),
                },
                SwitchRouterInterface {
                    network: "front".into(),
                    ip: ip("10.1.0.1"),
                    prefix_len: 24,
                    mac: "02:76:72:00:00:01".into(),
                },
            ],
            routes: vec![
                SwitchRoute {
                    prefix: "0.0.0.0/0".into(),
                    via: ip("10.2.0.11"),
                },
                SwitchRoute {
                    prefix: "10.9.0.0/16".into(),
                    via: ip("10.2.0.10"),
                },
            ],
            uplink: None,
        };
        assert_eq!(h1.routers, std::slice::from_ref(&r1));
        // A routed network like any other: its flood list is the hosts with ports on it, its
        // MAC and ARP entries every NIC on it, so the routed frame goes straight to the
        // destination's host.
        let back = &h1.networks[0];
        assert_eq!(back.flood, [ip("10.77.0.12"), ip("10.77.0.13")]);
        assert_eq!(
            macs(&h1),
            [
                ("back", "02:76:66:00:00:02", ip("10.77.0.12")),
                ("back", "02:76:66:00:00:03", ip("10.77.0.13")),
            ],
            "db is a VLAN: its trunk learns e's MAC"
        );
        let arps: Vec<(&str, Ipv4Addr)> =
            h1.arps.iter().map(|a| (a.network.as_str(), a.ip)).collect();
        assert_eq!(
            arps,
            [
                ("back", ip("10.2.0.10")),
                ("back", ip("10.2.0.11")),
                ("db", ip("10.4.0.10")),
                ("front", ip("10.1.0.10")),
            ]
        );
        // The DHCP responder of a routed network hands out its router's gateway (front's
        // record has none of its own here).
        let front = &h1.networks[2];
        assert_eq!(
            front.dhcp.map(|d| (d.gateway, d.server)),
            Some((Some(ip("10.1.0.1")), ip("10.1.0.1")))
        );
        assert_eq!(
            h1.networks[1].dhcp.and_then(|d| d.gateway),
            Some(ip("10.4.0.254"))
        );

        // h2 (ports on back and db) gets front, whose flood list is h1 alone; h1 only routes
        // into back, so back's flood list on h2 is h3 alone.
        let h2 = config("h2");
        assert_eq!(names(&h2), ["back", "db", "front"]);
        assert_eq!(h2.networks[0].flood, [ip("10.77.0.13")]);
        assert_eq!(h2.networks[2].flood, [ip("10.77.0.11")]);
        assert!(macs(&h2).contains(&("front", "02:76:66:00:00:01", ip("10.77.0.11"))));
        assert_eq!(h2.routers, std::slice::from_ref(&r1));

        // h3 has both tenants' routers; the same subnet in each, never mixed.
        let h3 = config("h3");
        assert_eq!(names(&h3), ["back", "db", "front", "lone", "t2"]);
        let ids: Vec<(&str, u16, Vec<&str>)> = h3
            .routers
            .iter()
            .map(|r| {
                let nets = r.interfaces.iter().map(|i| i.network.as_str()).collect();
                (r.name.as_str(), r.id, nets)
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("r1", 1, vec!["back", "db", "front"]),
                ("r2", 2, vec!["t2"])
            ]
        );
        // lone has no router: its DHCP responder has no gateway.
        assert_eq!(h3.networks[3].dhcp.and_then(|d| d.gateway), None);

        // A host without ports carries no router.
        assert!(config("h4").routers.is_empty());
        // Without routers, h1 has front alone, as before.
        let plain = switch_config("h1", &hosts, &networks, &vms, &[], &[], &[]);
        assert_eq!(names(&plain), ["front"]);
        assert!(plain.routers.is_empty());
        // Equal inputs, equal output (whatever the record order).
        let mut reversed = routers.clone();
        reversed.reverse();
        assert_eq!(
            switch_config("h1", &hosts, &networks, &vms, &[], &reversed, &[]),
            h1
        );

        // A VM migrating to h1 onto lone: h1 gets lone (a port on its way), and no router
        // comes with it.
        let incoming = vec![("d".to_string(), "h1".to_string())];
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[], &routers, &incoming);
        assert_eq!(names(&h1), ["back", "db", "front", "lone"]);
        assert_eq!(h1.routers.len(), 1);
        // An interface on a network the records no longer have is left out.
        let mut gone = networks.clone();
        gone.retain(|n| n.network.name != "db");
        let h1 = switch_config("h1", &hosts, &gone, &vms, &[], &routers, &[]);
        assert_eq!(names(&h1), ["back", "front"]);
        let nets: Vec<&str> = h1.routers[0]
            .interfaces
            .iter()
            .map(|i| i.network.as_str())
            .collect();
        assert_eq!(nets, ["back", "front"]);
    }
}
