//! Tests of the switch configuration: whole configurations compared.

use super::*;
use std::collections::BTreeMap;

use uuid::Uuid;
use vinfra_proto::{SwitchRoute, SwitchRouter, SwitchRouterInterface};
use vinfra_types::{BootSource, NicSpec, VmSpec};

use crate::state::records::{DesiredPower, HostRecord};

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
        certificates: vec![],
        ca_bundle: None,
        platform: None,
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
        slot: None,
        platform: None,
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

    let h1 = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
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

    let h2 = switch_config(
        "h2",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
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

    let h3 = switch_config(
        "h3",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
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
    let h4 = switch_config(
        "h4",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
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
        switch_config(
            "h1",
            &UnderlayIndex::from_records(&hosts),
            &networks,
            &shuffled,
            &[],
            &[],
            &[]
        ),
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
    let h3 = switch_config(
        "h3",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &incoming,
    );
    assert_eq!(names(&h3), ["blue", "green", "red"], "g brings green to h3");
    assert!(macs(&h3).iter().all(|m| m.1 != "02:76:66:00:00:04"));
    let h1 = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &incoming,
    );
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
    let h1 = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
    assert_eq!(h1.networks[0].flood, [ip("10.77.0.13")]);
    assert!(macs(&h1).contains(&("blue", "02:76:66:00:00:04", ip("10.77.0.13"))));
    assert!(h1.macs.iter().all(|m| m.moving_to.is_none()));
    let h2 = switch_config(
        "h2",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
    assert_eq!(names(&h2), ["green"]);

    // A host with a non-IPv4 address is not a VTEP.
    hosts[2].address = "fe80::1".into();
    let h1 = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
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
    let h2 = switch_config(
        "h2",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
    assert_eq!(h2.qos, std::slice::from_ref(&entry));
    let h3 = switch_config(
        "h3",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
    assert!(h3.qos.is_empty(), "only the NIC's own host");
    // Migrating to h3: h3 has it before the switchover, h2 still has it.
    let incoming = vec![("c".to_string(), "h3".to_string())];
    let h3 = switch_config(
        "h3",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &incoming,
    );
    assert_eq!(h3.qos, std::slice::from_ref(&entry));
    let h2 = switch_config(
        "h2",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &incoming,
    );
    assert_eq!(h2.qos, std::slice::from_ref(&entry));
    // After it, h3 only.
    vms.iter_mut().find(|v| v.spec.name == "c").unwrap().host = "h3".into();
    let h2 = switch_config(
        "h2",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
    assert!(h2.qos.is_empty());
    let h3 = switch_config(
        "h3",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
    assert_eq!(h3.qos, [entry]);
    // A NIC without QoS has no entry.
    let h1 = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
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
    let config = |h: &str| {
        switch_config(
            h,
            &UnderlayIndex::from_records(&hosts),
            &networks,
            &vms,
            &[],
            &routers,
            &[],
        )
    };

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
    let arps: Vec<(&str, Ipv4Addr)> = h1.arps.iter().map(|a| (a.network.as_str(), a.ip)).collect();
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
    let plain = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &[],
        &[],
    );
    assert_eq!(names(&plain), ["front"]);
    assert!(plain.routers.is_empty());
    // Equal inputs, equal output (whatever the record order).
    let mut reversed = routers.clone();
    reversed.reverse();
    assert_eq!(
        switch_config(
            "h1",
            &UnderlayIndex::from_records(&hosts),
            &networks,
            &vms,
            &[],
            &reversed,
            &[]
        ),
        h1
    );

    // A VM migrating to h1 onto lone: h1 gets lone (a port on its way), and no router
    // comes with it.
    let incoming = vec![("d".to_string(), "h1".to_string())];
    let h1 = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &networks,
        &vms,
        &[],
        &routers,
        &incoming,
    );
    assert_eq!(names(&h1), ["back", "db", "front", "lone"]);
    assert_eq!(h1.routers.len(), 1);
    // An interface on a network the records no longer have is left out.
    let mut gone = networks.clone();
    gone.retain(|n| n.network.name != "db");
    let h1 = switch_config(
        "h1",
        &UnderlayIndex::from_records(&hosts),
        &gone,
        &vms,
        &[],
        &routers,
        &[],
    );
    assert_eq!(names(&h1), ["back", "front"]);
    let nets: Vec<&str> = h1.routers[0]
        .interfaces
        .iter()
        .map(|i| i.network.as_str())
        .collect();
    assert_eq!(nets, ["back", "front"]);
}

/// A configuration built from its scope's records alone ([`config_scope`]) equals the one built
/// from every record, on every host, with and without migrations in flight; and the scope does
/// leave records out.
#[test]
fn a_configuration_from_its_scope_equals_one_from_every_record() {
    use vinfra_types::router::{transit_vni, FloatingIpSummary, UplinkSummary};
    use vinfra_types::security_group::SgRule;

    let hosts: Vec<HostRecord> = (1..=6)
        .map(|i| host(&format!("h{i}"), &format!("10.77.0.{i}")))
        .collect();
    let net = |name, kind, seg, sw, subnet: &str| {
        let mut n = network(name, kind, seg, sw);
        n.network.subnet = subnet.into();
        n
    };
    let networks = vec![
        net("front", NetworkKind::Overlay, 10001, 1, "10.1.0.0/24"),
        net("back", NetworkKind::Overlay, 10002, 2, "10.2.0.0/24"),
        net("db", NetworkKind::Vlan, 100, 3, "10.3.0.0/24"),
        net("lone", NetworkKind::Overlay, 10004, 4, "10.4.0.0/24"),
        net("admin", NetworkKind::Overlay, 10005, 5, "10.5.0.0/24"),
        net("external", NetworkKind::Vlan, 200, 6, "10.82.0.0/24"),
        net("unused", NetworkKind::Overlay, 10007, 7, "10.7.0.0/24"),
    ];
    let grouped = |name: &str, host: &str, nics: &[(&str, &str, &str, &[&str])]| {
        let mut r = vm(
            name,
            host,
            &nics
                .iter()
                .map(|(n, i, m, _)| (*n, *i, *m))
                .collect::<Vec<_>>(),
        );
        for (nic, (_, _, _, groups)) in r.spec.nics.iter_mut().zip(nics) {
            nic.security_groups = groups.iter().map(|g| g.to_string()).collect();
        }
        r
    };
    let vms = vec![
        grouped(
            "a",
            "h1",
            &[("front", "10.1.0.10", "02:76:66:00:00:01", &["web"])],
        ),
        grouped(
            "b",
            "h2",
            &[("back", "10.2.0.10", "02:76:66:00:00:02", &["db"])],
        ),
        grouped(
            "c",
            "h3",
            &[("back", "10.2.0.11", "02:76:66:00:00:03", &[])],
        ),
        grouped(
            "d",
            "h3",
            &[("lone", "10.4.0.10", "02:76:66:00:00:04", &[])],
        ),
        // An admin member on a network no router brings to h1: its address is in h1's rules.
        grouped(
            "e",
            "h4",
            &[("admin", "10.5.0.10", "02:76:66:00:00:05", &["admin"])],
        ),
        grouped(
            "f",
            "h2",
            &[("db", "10.3.0.10", "02:76:66:00:00:06", &["web"])],
        ),
        grouped(
            "g",
            "h5",
            &[("lone", "10.4.0.11", "02:76:66:00:00:07", &["db"])],
        ),
        // A NIC without address or MAC, and a VM without NICs.
        {
            let mut r = grouped(
                "h",
                "h1",
                &[("unused", "10.7.0.9", "02:76:66:00:00:08", &[])],
            );
            r.spec.nics[0].ip = None;
            r.spec.nics[0].mac = None;
            r
        },
        grouped("i", "h6", &[]),
    ];
    let mut r1 = router(
        "r1",
        1,
        &[
            ("front", "10.1.0.0/24", "10.1.0.1", 1),
            ("back", "10.2.0.0/24", "10.2.0.1", 2),
            ("db", "10.3.0.0/24", "10.3.0.1", 3),
        ],
        &[("0.0.0.0/0", "10.82.0.254")],
    );
    r1.uplink = Some(UplinkSummary {
        network: "external".into(),
        subnet: "10.82.0.0/24".into(),
        ip: "10.82.0.10".into(),
        mac: "02:76:72:01:00:01".into(),
        edge: Some("h6".into()),
        standby: None,
        transit_vni: transit_vni(1),
        floating_ips: vec![FloatingIpSummary {
            ip: "10.82.0.20".into(),
            vm: "a".into(),
            nic: 0,
            network: "front".into(),
            internal: "10.1.0.10".into(),
            router: "r1".into(),
        }],
    });
    let routers = vec![
        r1,
        router("r2", 2, &[("lone", "10.4.0.0/24", "10.4.0.1", 4)], &[]),
    ];
    let rule = |id: u32, json: &str| {
        let mut r: SgRule = serde_json::from_str(json).unwrap();
        r.validate().unwrap();
        r.id = id;
        r
    };
    let group = |name: &str, rules: Vec<SgRule>| SecurityGroup {
        name: name.into(),
        description: None,
        rules,
    };
    let groups = vec![
        group(
            "web",
            vec![rule(1, r#"{"direction":"ingress","remote_group":"admin"}"#)],
        ),
        group(
            "db",
            vec![rule(1, r#"{"direction":"ingress","remote_group":"web"}"#)],
        ),
        group("admin", vec![]),
    ];
    let underlay = UnderlayIndex::from_records(&hosts);
    let moves: [Vec<(String, String)>; 3] = [
        vec![],
        vec![("a".into(), "h5".into()), ("e".into(), "h1".into())],
        vec![("d".into(), "h6".into())],
    ];
    let mut left_out = 0;
    for incoming in &moves {
        for h in hosts.iter().map(|h| h.name.as_str()) {
            let arriving = |name: &str| incoming.iter().any(|(v, to)| v == name && to == h);
            let here: Vec<VmRecord> = vms
                .iter()
                .filter(|r| r.host == h || arriving(&r.spec.name))
                .cloned()
                .collect();
            let scope = config_scope(h, &here, &groups, &routers);
            let in_scope: Vec<VmRecord> = vms
                .iter()
                .filter(|r| {
                    here.iter().any(|x| x.spec.name == r.spec.name)
                        || r.spec.nics.iter().any(|n| {
                            scope.networks.contains(n.network.as_str())
                                || n.security_groups
                                    .iter()
                                    .any(|g| scope.remote_groups.contains(g.as_str()))
                        })
                })
                .cloned()
                .collect();
            let scoped_networks: Vec<NetworkRecord> = networks
                .iter()
                .filter(|n| scope.networks.contains(n.network.name.as_str()))
                .cloned()
                .collect();
            left_out += vms.len() - in_scope.len() + networks.len() - scoped_networks.len();
            let every = switch_config(h, &underlay, &networks, &vms, &groups, &routers, incoming);
            let scoped = switch_config(
                h,
                &underlay,
                &scoped_networks,
                &in_scope,
                &groups,
                &routers,
                incoming,
            );
            assert_eq!(scoped, every, "host {h}, migrations {incoming:?}");
        }
    }
    assert!(left_out > 0);
    // h1: its NIC on front (group web) brings r1's networks and the uplink's, and web's
    // remote group admin; not lone, admin (the network) or unused.
    let here: Vec<VmRecord> = vms.iter().filter(|r| r.host == "h1").cloned().collect();
    let scope = config_scope("h1", &here, &groups, &routers);
    assert_eq!(
        scope.networks.into_iter().collect::<Vec<_>>(),
        ["back", "db", "external", "front"]
    );
    assert_eq!(
        scope.remote_groups.into_iter().collect::<Vec<_>>(),
        ["admin"]
    );
}
