//! Unit tests of the switch link: the desired configuration, port allocation, plans and
//! counters, without a switch (`plug` against a model of one on a control socket).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use uuid::Uuid;
use vinfra_proto::{
    HostSwitchConfig, SwitchArpEntry, SwitchDhcp, SwitchMacEntry, SwitchNetwork, SwitchNetworkKind,
};
use vinfra_switch_control::{
    Attachment, CountersView, DhcpSpec, LocationSpec, NetworkCountersView, PortCountersView,
    PortSpec, Request, TrafficView, UPLINK_PORT,
};
use vinfra_types::error::chain;
use vinfra_types::NicSpec;

use super::counters::host_counters;
use super::plan::port_network;
use super::*;

pub(crate) fn settings() -> SwitchAttachment {
    SwitchAttachment {
        control: "/run/sw.sock".into(),
        underlay_ip: Some(Ipv4Addr::new(10, 0, 0, 1)),
        underlay_mtu: 1500,
        trunk_interface: None,
        vm_nic_ports: VmNicPorts::Dgram,
    }
}

pub(crate) fn config() -> HostSwitchConfig {
    HostSwitchConfig {
        networks: vec![
            SwitchNetwork {
                name: "blue".into(),
                id: 1,
                kind: SwitchNetworkKind::Overlay { vni: 5001 },
                mtu: 1450,
                flood: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1)],
                dhcp: Some(SwitchDhcp {
                    prefix_len: 24,
                    gateway: None,
                    server: Ipv4Addr::new(10, 90, 0, 254),
                    mtu: 1450,
                }),
            },
            SwitchNetwork {
                name: "red".into(),
                id: 2,
                kind: SwitchNetworkKind::Overlay { vni: 5002 },
                mtu: 1450,
                flood: vec![],
                dhcp: None,
            },
        ],
        macs: vec![
            SwitchMacEntry {
                network: "blue".into(),
                mac: "52:54:00:00:00:02".into(),
                host_ip: Ipv4Addr::new(10, 0, 0, 2),
                moving_to: None,
            },
            // Points at this host: left out.
            SwitchMacEntry {
                network: "blue".into(),
                mac: "52:54:00:00:00:09".into(),
                host_ip: Ipv4Addr::new(10, 0, 0, 1),
                moving_to: None,
            },
        ],
        arps: vec![SwitchArpEntry {
            network: "blue".into(),
            ip: Ipv4Addr::new(10, 90, 0, 2),
            mac: "52:54:00:00:00:02".into(),
        }],
        underlay_peers: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1)],
        firewalls: vec![],
        qos: vec![],
        port_security: vec![],
        routers: vec![],
    }
}

fn nic(network: &str, mac: &str) -> NicSpec {
    NicSpec {
        network: network.into(),
        mac: Some(mac.into()),
        ip: None,
        ..Default::default()
    }
}

pub(crate) fn link() -> (tempfile::TempDir, SwitchLink) {
    let dir = tempfile::tempdir().unwrap();
    let link = SwitchLink::open(settings(), dir.path()).unwrap();
    link.set_config(config()).unwrap();
    (dir, link)
}

pub(crate) fn desired(link: &SwitchLink, builtin: bool) -> Vec<Request> {
    link.desired().requests(link.attachment(), builtin)
}

/// Applies `requests` to a model of the switch's `get_config` answer (routers:
/// [`super::tests_router_model::apply_router_model`]).
pub(crate) fn apply_model(state: &mut Vec<Request>, requests: &[Request]) {
    for r in requests {
        match r {
            Request::RemoveArpEntry { network, ip } => state.retain(|s| {
                !matches!(s, Request::AddArpEntry { network: n, ip: i, .. } if n == network && i == ip)
            }),
            Request::RemoveMacEntry { network, mac } => state.retain(|s| {
                !matches!(s, Request::AddMacEntry { network: n, mac: m, .. }
                    | Request::ExpectMacMove { network: n, mac: m, .. } if n == network && m == mac)
            }),
            Request::AddMacEntry { network, mac, .. } => {
                state.retain(|s| {
                    !matches!(s, Request::AddMacEntry { network: n, mac: m, .. }
                        | Request::ExpectMacMove { network: n, mac: m, .. } if n == network && m == mac)
                });
                state.push(r.clone());
            }
            Request::ExpectMacMove { network, mac, to } => {
                state.retain(|s| {
                    !matches!(s, Request::ExpectMacMove { network: n, mac: m, .. } if n == network && m == mac)
                });
                if to.is_some() {
                    state.push(r.clone());
                }
            }
            Request::SetPortPolicy { port, .. } => {
                state.retain(|s| !matches!(s, Request::SetPortPolicy { port: p, .. } if p == port));
                state.push(r.clone());
            }
            Request::SetPortFirewall { port, .. } => {
                state
                    .retain(|s| !matches!(s, Request::SetPortFirewall { port: p, .. } if p == port));
                state.push(r.clone());
            }
            Request::SetPortQos { port, .. } => {
                state.retain(|s| !matches!(s, Request::SetPortQos { port: p, .. } if p == port));
                state.push(r.clone());
            }
            Request::SetUnderlayPeers { .. } => {
                state.retain(|s| !matches!(s, Request::SetUnderlayPeers { .. }));
                state.push(r.clone());
            }
            Request::RemovePort { id } => state.retain(|s| match s {
                Request::AddPort(p) => p.id != *id,
                Request::SetPortPolicy { port, .. }
                | Request::SetPortFirewall { port, .. }
                | Request::SetPortQos { port, .. } => port != id,
                Request::AddMacEntry { location, .. } => *location != LocationSpec::Port(*id),
                _ => true,
            }),
            Request::AddRouter { .. }
            | Request::RemoveRouter { .. }
            | Request::SetRouterInterface { .. }
            | Request::RemoveRouterInterface { .. }
            | Request::AddRoute { .. }
            | Request::RemoveRoute { .. }
            | Request::SetRouterUplink { .. }
            | Request::RemoveRouterUplink { .. }
            | Request::AddFloatingIp { .. }
            | Request::RemoveFloatingIp { .. } => {
                super::tests_router_model::apply_router_model(state, r)
            }
            Request::RemoveNetwork { id } => state.retain(|s| match s {
                Request::AddNetwork { id: n, .. }
                | Request::SetFloodList { network: n, .. }
                | Request::AddMacEntry { network: n, .. }
                | Request::ExpectMacMove { network: n, .. }
                | Request::AddArpEntry { network: n, .. }
                | Request::SetDhcp { network: n, .. } => n != id,
                Request::AddPort(p) => {
                    assert_ne!(port_network(p), Some(*id), "network removed with ports");
                    true
                }
                Request::SetRouterInterface { network: n, .. } => {
                    assert_ne!(n, id, "network removed with its router interface");
                    true
                }
                Request::SetRouterUplink { network: n, .. } => {
                    assert_ne!(n, id, "network removed with a router's uplink");
                    true
                }
                _ => true,
            }),
            Request::SetFloodList { network, .. } => {
                state.retain(|s| !matches!(s, Request::SetFloodList { network: n, .. } if n == network));
                state.push(r.clone());
            }
            Request::SetDhcp { network, config } => {
                state.retain(|s| !matches!(s, Request::SetDhcp { network: n, .. } if n == network));
                if config.is_some() {
                    state.push(r.clone());
                }
            }
            other => {
                assert!(!state.contains(other), "{other:?} applied twice");
                state.push(other.clone());
            }
        }
    }
}

/// A VLAN network of the console's configuration.
pub(crate) fn vlan_network(name: &str, id: u16, vid: u16) -> SwitchNetwork {
    SwitchNetwork {
        name: name.into(),
        id,
        kind: SwitchNetworkKind::Vlan { vid },
        mtu: 1500,
        flood: vec![],
        dhcp: None,
    }
}

pub(crate) fn same(a: &[Request], b: &[Request]) -> bool {
    a.len() == b.len() && a.iter().all(|r| b.contains(r))
}

#[test]
fn desired_configuration_adds_uplink_local_ports_and_entries() {
    let (dir, link) = link();
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[
                nic("blue", "52:54:00:00:00:01"),
                nic("red", "52:54:00:00:00:11"),
            ],
        )
        .unwrap();
    assert_eq!(nics.iter().map(|n| n.port).collect::<Vec<_>>(), [1, 2]);
    let d = desired(&link, false);
    assert!(
        matches!(&d[2], Request::AddPort(PortSpec { id: 0, .. })),
        "{d:#?}"
    );
    assert!(d.contains(&Request::SetFloodList {
        network: 1,
        vteps: vec![Ipv4Addr::new(10, 0, 0, 2)]
    }));
    assert!(d.contains(&Request::AddMacEntry {
        network: 1,
        mac: "52:54:00:00:00:01".parse().unwrap(),
        location: LocationSpec::Port(1)
    }));
    assert!(d.contains(&Request::AddMacEntry {
        network: 1,
        mac: "52:54:00:00:00:02".parse().unwrap(),
        location: LocationSpec::Vtep(Ipv4Addr::new(10, 0, 0, 2))
    }));
    assert!(!d.iter().any(|r| matches!(r,
        Request::AddMacEntry { mac, .. } if *mac == "52:54:00:00:00:09".parse().unwrap())));
    // A builtin uplink is not added again.
    assert!(!desired(&link, true)
        .iter()
        .any(|r| matches!(r, Request::AddPort(PortSpec { id: 0, .. }))));
    // Another VM gets the next free ports; the first keeps its own on a restart.
    let other = link
        .attach(
            Uuid::from_u128(2),
            dir.path(),
            &[nic("blue", "52:54:00:00:00:03")],
        )
        .unwrap();
    assert_eq!(other[0].port, 3);
    let again = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[
                nic("blue", "52:54:00:00:00:01"),
                nic("red", "52:54:00:00:00:11"),
            ],
        )
        .unwrap();
    assert_eq!(again, nics);
}

#[test]
fn trunk_is_a_reserved_port_of_the_desired_configuration_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut trunked = settings();
    trunked.trunk_interface = Some("trunk0".into());
    let link = SwitchLink::open(trunked, dir.path()).unwrap();
    let mut c = config();
    c.networks.push(vlan_network("v100", 3, 100));
    link.set_config(c).unwrap();
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[nic("v100", "52:54:00:00:01:00")],
        )
        .unwrap();
    assert_eq!(nics[0].port, 1);
    let d = desired(&link, false);
    let trunk = Request::AddPort(PortSpec {
        id: TRUNK_PORT,
        mtu: TRUNK_MTU,
        attach: Attachment::VlanTrunk {
            interface: "trunk0".into(),
        },
    });
    let pos = |f: &dyn Fn(&Request) -> bool| d.iter().position(f).unwrap();
    let at = pos(&|r| *r == trunk);
    assert!(pos(&|r| matches!(r, Request::AddNetwork { id: 3, .. })) < at);
    assert!(
        pos(&|r| matches!(
            r,
            Request::AddPort(PortSpec {
                id: UPLINK_PORT,
                ..
            })
        )) < at
    );
    assert!(at < pos(&|r| matches!(r, Request::AddPort(PortSpec { id: 1, .. }))));
    // A VLAN has no flood list and no MAC entries from the console: the trunk learns.
    assert!(!d
        .iter()
        .any(|r| matches!(r, Request::SetFloodList { network: 3, .. })));
    // A restarted (empty) switch gets the trunk back; one in sync gets nothing.
    let mut state = Vec::new();
    let p = plan(&state, &d);
    assert!(p.contains(&trunk), "{p:#?}");
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // The trunk's number is never given to a VM NIC, even one that had it before.
    link.restore(
        Uuid::from_u128(2),
        vec![VmNic {
            network: "blue".into(),
            mac: "52:54:00:00:02:00".into(),
            allowed: None,
            mtu: 1450,
            port: TRUNK_PORT,
            switch_socket: dir.path().join("s"),
            qemu_socket: dir.path().join("q"),
            tap: None,
            owner: None,
            vlan: None,
        }],
    );
    let moved = link
        .attach(
            Uuid::from_u128(2),
            dir.path(),
            &[nic("blue", "52:54:00:00:02:00")],
        )
        .unwrap();
    assert_ne!(moved[0].port, TRUNK_PORT);
    // Without a trunk there is no trunk port, and a NIC on a VLAN is refused clearly.
    let plain = SwitchLink::open(settings(), dir.path()).unwrap();
    assert!(!desired(&plain, false)
        .iter()
        .any(|r| matches!(r, Request::AddPort(PortSpec { id: TRUNK_PORT, .. }))));
    let e = plain
        .attach(
            Uuid::from_u128(3),
            dir.path(),
            &[nic("v100", "52:54:00:00:03:00")],
        )
        .unwrap_err();
    assert!(chain(&e).contains("no trunk"), "{e}");
}

#[test]
fn bad_nics_and_configurations_are_refused() {
    let (dir, link) = link();
    let id = Uuid::from_u128(1);
    for (spec, needle) in [
        (nic("green", "52:54:00:00:00:01"), "not configured"),
        (nic("blue", "53:54:00:00:00:01"), "unicast"),
        (
            NicSpec {
                network: "blue".into(),
                mac: None,
                ip: None,
                ..Default::default()
            },
            "no MAC",
        ),
    ] {
        let e = link.attach(id, dir.path(), &[spec]).unwrap_err();
        assert!(chain(&e).contains(needle), "{e}");
    }
    link.attach(id, dir.path(), &[nic("blue", "52:54:00:00:00:01")])
        .unwrap();
    let e = link
        .attach(
            Uuid::from_u128(2),
            dir.path(),
            &[nic("blue", "52:54:00:00:00:01")],
        )
        .unwrap_err();
    assert!(chain(&e).contains("already used"), "{e}");

    let mut c = config();
    c.networks[1].kind = SwitchNetworkKind::Overlay { vni: 5001 };
    let e = link.set_config(c).unwrap_err();
    assert!(chain(&e).contains("used by another network"), "{e}");
    for vni in [0, 1 << 24] {
        let mut c = config();
        c.networks[0].kind = SwitchNetworkKind::Overlay { vni };
        let e = link.set_config(c).unwrap_err();
        assert!(chain(&e).contains("out of range"), "{vni}: {e}");
    }
    let mut c = config();
    c.macs[0].network = "green".into();
    assert!(link.set_config(c).is_err());
    let mut c = config();
    c.networks[1].id = 1;
    assert!(link.set_config(c).is_err());
    let no_underlay = SwitchLink::open(SwitchAttachment::new("/run/sw.sock"), dir.path()).unwrap();
    let e = no_underlay.set_config(config()).unwrap_err();
    assert!(chain(&e).contains("underlay"), "{e}");
    // The refused configurations were not kept.
    assert_eq!(link.config(), config());
}

#[test]
fn plans_replay_diff_and_converge() {
    let (dir, link) = link();
    link.attach(
        Uuid::from_u128(1),
        dir.path(),
        &[nic("blue", "52:54:00:00:00:01")],
    )
    .unwrap();
    let d1 = desired(&link, false);
    // An empty (restarted) switch gets everything, in order.
    assert_eq!(plan(&[], &d1), d1);
    let mut state = Vec::new();
    let p = plan(&state, &d1);
    apply_model(&mut state, &p);
    assert!(same(&state, &d1));
    assert!(plan(&state, &d1).is_empty(), "nothing to do when in sync");

    // A VM leaves: its MAC entry and port go, nothing else.
    link.detach(Uuid::from_u128(1));
    let d2 = desired(&link, false);
    let p = plan(&state, &d2);
    assert_eq!(
        p,
        vec![
            Request::RemoveMacEntry {
                network: 1,
                mac: "52:54:00:00:00:01".parse().unwrap()
            },
            Request::RemovePort { id: 1 }
        ]
    );
    apply_model(&mut state, &p);
    assert!(same(&state, &d2));

    // A network changes its VNI while a VM port is on it: the port is removed before the
    // network and added again after it.
    link.attach(
        Uuid::from_u128(1),
        dir.path(),
        &[nic("blue", "52:54:00:00:00:01")],
    )
    .unwrap();
    let p = plan(&state, &desired(&link, false));
    apply_model(&mut state, &p);
    let mut c = config();
    c.networks[0].kind = SwitchNetworkKind::Overlay { vni: 7000 };
    c.networks[0].flood = vec![Ipv4Addr::new(10, 0, 0, 3)];
    c.arps.clear();
    link.set_config(c).unwrap();
    let d3 = desired(&link, false);
    let p = plan(&state, &d3);
    let pos = |f: &dyn Fn(&Request) -> bool| p.iter().position(f).unwrap();
    assert!(
        pos(&|r| matches!(r, Request::RemovePort { id: 1 }))
            < pos(&|r| matches!(r, Request::RemoveNetwork { id: 1 }))
    );
    assert!(
        pos(&|r| matches!(r, Request::RemoveNetwork { id: 1 }))
            < pos(&|r| matches!(r, Request::AddNetwork { id: 1, .. }))
    );
    assert!(
        pos(&|r| matches!(r, Request::AddNetwork { id: 1, .. }))
            < pos(&|r| matches!(r, Request::AddPort(PortSpec { id: 1, .. })))
    );
    assert!(!p
        .iter()
        .any(|r| matches!(r, Request::RemoveNetwork { id: 2 })));
    apply_model(&mut state, &p);
    assert!(same(&state, &d3), "{state:#?}\n{d3:#?}");
    assert!(plan(&state, &d3).is_empty());

    // What the agent does not manage stays.
    let foreign = Request::SetSettings {
        mac_ageing_secs: 60,
        mac_learn_limit: 10,
    };
    state.insert(0, foreign);
    assert!(plan(&state, &d3).is_empty());
}

#[test]
fn dhcp_is_set_and_resent_only_when_it_changes() {
    let (_dir, link) = link();
    let d1 = desired(&link, false);
    let blue = Request::SetDhcp {
        network: 1,
        config: Some(DhcpSpec {
            prefix_len: 24,
            gateway: None,
            server: Some(Ipv4Addr::new(10, 90, 0, 254)),
            mtu: Some(1450),
            lease_secs: 3600,
        }),
    };
    assert!(d1.contains(&blue), "{d1:#?}");
    assert!(!d1
        .iter()
        .any(|r| matches!(r, Request::SetDhcp { network: 2, .. })));
    let mut state = Vec::new();
    let p = plan(&state, &d1);
    apply_model(&mut state, &p);
    assert!(plan(&state, &d1).is_empty());

    // A new gateway: only the responder is sent again.
    let mut c = config();
    c.networks[0].dhcp.as_mut().unwrap().gateway = Some(Ipv4Addr::new(10, 90, 0, 1));
    link.set_config(c).unwrap();
    let p = plan(&state, &desired(&link, false));
    assert!(
        matches!(
            &p[..],
            [Request::SetDhcp {
                network: 1,
                config: Some(DhcpSpec {
                    gateway: Some(_),
                    ..
                })
            }]
        ),
        "{p:#?}"
    );
    apply_model(&mut state, &p);

    // No longer wanted: disabled.
    let mut c = config();
    c.networks[0].dhcp = None;
    link.set_config(c).unwrap();
    let p = plan(&state, &desired(&link, false));
    assert_eq!(
        p,
        vec![Request::SetDhcp {
            network: 1,
            config: None
        }]
    );
}

#[test]
fn configuration_survives_a_reopen() {
    let (dir, link) = link();
    drop(link);
    let again = SwitchLink::open(settings(), dir.path()).unwrap();
    assert_eq!(again.config(), config());
}

#[test]
fn counters_are_named_by_network_vm_and_nic() {
    let t = |rx: u64, tx: u64| TrafficView {
        rx_packets: rx,
        rx_bytes: rx * 100,
        tx_packets: tx,
        tx_bytes: tx * 100,
        drops: [("runt".to_string(), rx)].into(),
    };
    let view = CountersView {
        ports: vec![
            PortCountersView {
                id: UPLINK_PORT,
                traffic: t(1, 2),
                ..Default::default()
            },
            PortCountersView {
                id: 7,
                traffic: t(3, 4),
                tx_errors: 5,
                rx_errors: 0,
                mtu: Some(1450),
                ..Default::default()
            },
            // A port the agent does not know.
            PortCountersView {
                id: 8,
                traffic: t(9, 9),
                ..Default::default()
            },
        ],
        networks: vec![NetworkCountersView {
            id: 2,
            traffic: t(6, 7),
            arp_suppressed: 1,
            flooded: 2,
            learning_refused: 4,
            mac_moves_refused: 0,
            mac_redirected: 0,
        }],
        switch_drops: [("bad_vxlan_flags".to_string(), 3)].into(),
        conntrack: None,
        routers: Vec::new(),
        rx_batches: Vec::new(),
        fast_path: None,
    };
    let id = Uuid::new_v4();
    let nic = |network: &str, port| VmNic {
        network: network.into(),
        mac: format!("52:54:00:00:00:0{port}"),
        allowed: None,
        mtu: 1450,
        port,
        switch_socket: PathBuf::from("s"),
        qemu_socket: PathBuf::from("q"),
        tap: None,
        owner: None,
        vlan: None,
    };
    // NIC 0 has no port on the switch (yet); NIC 1 is port 7.
    let vms = BTreeMap::from([(id, vec![nic("blue", 6), nic("red", 7)])]);
    let c = host_counters(&view, &config(), &vms);
    assert_eq!(c.ports.len(), 1, "{c:?}");
    let p = &c.ports[0];
    assert_eq!((p.vm_id, p.nic, p.port), (id, 1, 7));
    assert_eq!(
        (p.network.as_str(), p.mac.as_str()),
        ("red", "52:54:00:00:00:07")
    );
    assert_eq!((p.traffic.rx_packets, p.traffic.tx_bytes), (3, 400));
    assert_eq!((p.tx_errors, p.traffic.drops["runt"]), (5, 3));
    assert_eq!(c.networks.len(), 1, "blue has no counters: {c:?}");
    assert_eq!(c.networks[0].network, "red");
    assert_eq!(c.networks[0].traffic.tx_packets, 7);
    assert_eq!(
        (
            c.networks[0].arp_suppressed,
            c.networks[0].flooded,
            c.networks[0].learning_refused
        ),
        (1, 2, 4)
    );
    assert_eq!(c.uplink.as_ref().map(|u| u.tx_packets), Some(2));
    assert_eq!(c.switch_drops["bad_vxlan_flags"], 3);
}

#[test]
fn firewall_hits_are_named_by_group_and_rule() {
    let rule = |id| vinfra_proto::SwitchFirewallRule {
        rule_id: id,
        ..fw_rule(
            vinfra_proto::SgDirection::Ingress,
            Some(6),
            Some((80, 80)),
            vec![(Ipv4Addr::UNSPECIFIED, 0)],
            vinfra_proto::SgAction::Allow,
        )
    };
    let mut config = config();
    config.firewalls = vec![vinfra_proto::SwitchNicFirewall {
        network: "red".into(),
        mac: "52:54:00:00:00:07".into(),
        rules: vec![rule(3), rule(5)],
    }];
    let nic = |network: &str, port| VmNic {
        network: network.into(),
        mac: format!("52:54:00:00:00:0{port}"),
        allowed: None,
        mtu: 1450,
        port,
        switch_socket: PathBuf::from("s"),
        qemu_socket: PathBuf::from("q"),
        tap: None,
        owner: None,
        vlan: None,
    };
    let id = Uuid::new_v4();
    let vms = BTreeMap::from([(id, vec![nic("blue", 6), nic("red", 7)])]);
    let view = |hits: Option<Vec<u64>>| CountersView {
        ports: vec![
            PortCountersView {
                id: 6,
                firewall_hits: Some(vec![1]),
                connections: 1,
                ..Default::default()
            },
            PortCountersView {
                id: 7,
                firewall_hits: hits,
                connections: 4,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let c = host_counters(&view(Some(vec![9, 0])), &config, &vms);
    let by_port = |c: &vinfra_types::network::HostSwitchCounters, port| {
        c.ports
            .iter()
            .find(|p| p.port == port)
            .and_then(|p| p.firewall.clone())
    };
    let f = by_port(&c, 7).expect("port 7's firewall");
    assert_eq!(f.connections, 4);
    let named: Vec<(&str, u32, u64)> = f
        .rules
        .iter()
        .map(|r| (r.group.as_str(), r.rule_id, r.hits))
        .collect();
    assert_eq!(named, vec![("web", 3, 9), ("web", 5, 0)]);
    // A port without an entry in the configuration (blue), rules the switch has not been
    // given yet (one count for two rules) and no firewall on the switch: not named.
    assert_eq!(by_port(&c, 6), None);
    let c = host_counters(&view(Some(vec![9])), &config, &vms);
    assert_eq!(by_port(&c, 7), None);
    let c = host_counters(&view(None), &config, &vms);
    assert_eq!(by_port(&c, 7), None);
}

/// What a [`model_switch`] refuses.
#[derive(Default)]
pub(crate) struct Refusals {
    /// Ports it refuses to add.
    pub ports: Vec<u32>,
    /// Whether it refuses every ARP entry.
    pub arp: bool,
    /// Whether it refuses `revert_mac_moves`, as a switch from before that request does.
    pub mac_move_reverts: bool,
    /// Ports whose imported connections it refuses (a full table).
    pub imports: Vec<u32>,
    /// Ports whose firewall it refuses (as a switch from before firewalls does).
    pub firewalls: Vec<u32>,
    /// Whether it refuses every router request (as a switch without routing does).
    pub routing: bool,
    /// Whether it refuses uplinks and floating IPs (as a switch without the edge does).
    pub uplinks: bool,
}

/// A [`model_switch`]: its control socket, its configuration and every request it got.
pub(crate) struct ModelSwitch {
    pub control: PathBuf,
    pub state: Arc<Mutex<Vec<Request>>>,
    pub log: Arc<Mutex<Vec<Request>>>,
}

/// A switch on a real control socket in `dir`, keeping its configuration as [`apply_model`]
/// does (as the daemon does) and refusing what `refuse` says.
pub(crate) fn model_switch(dir: &std::path::Path, refuse: Refusals) -> ModelSwitch {
    use vinfra_switch_control::protocol::Response;
    use vinfra_switch_control::server;
    let control = dir.join("switch.sock");
    let listener = server::bind(&control).unwrap();
    let state = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (held, seen) = (state.clone(), log.clone());
    std::thread::spawn(move || {
        server::serve(listener, move |request| {
            seen.lock().unwrap().push(request.clone());
            let mut held = held.lock().unwrap();
            match request {
                Request::Ping => Response::Pong,
                Request::GetConfig => Response::Config {
                    requests: held.clone(),
                },
                Request::GetCounters => Response::Counters(CountersView::default()),
                Request::AddPort(p) if refuse.ports.contains(&p.id) => Response::Error {
                    message: format!("port {} refused", p.id),
                },
                Request::AddArpEntry { .. } if refuse.arp => Response::Error {
                    message: "no ARP entries".into(),
                },
                Request::RevertMacMoves if refuse.mac_move_reverts => Response::Error {
                    message: "unknown variant `revert_mac_moves`".into(),
                },
                Request::RevertMacMoves => Response::Ok,
                // One connection per port, to port 8000 + the port's number.
                Request::ExportConnections { port } => Response::Connections {
                    entries: vec![connection(8000 + port as u16)],
                },
                Request::ImportConnections { port, .. } if refuse.imports.contains(&port) => {
                    Response::Error {
                        message: "connection table full".into(),
                    }
                }
                Request::ImportConnections { .. } | Request::RedirectMac { .. } => Response::Ok,
                Request::AddRouter { .. }
                | Request::RemoveRouter { .. }
                | Request::SetRouterInterface { .. }
                | Request::RemoveRouterInterface { .. }
                | Request::AddRoute { .. }
                | Request::RemoveRoute { .. }
                    if refuse.routing =>
                {
                    Response::Error {
                        message: "routing is not supported by this switch".into(),
                    }
                }
                Request::SetRouterUplink { .. }
                | Request::RemoveRouterUplink { .. }
                | Request::AddFloatingIp { .. }
                | Request::RemoveFloatingIp { .. }
                    if refuse.uplinks =>
                {
                    Response::Error {
                        message: "unsupported: router uplinks (north-south NAT)".into(),
                    }
                }
                Request::SetPortFirewall { port, .. } if refuse.firewalls.contains(&port) => {
                    Response::Error {
                        message: "unknown variant `set_port_firewall`".into(),
                    }
                }
                other => {
                    apply_model(&mut held, &[other]);
                    Response::Ok
                }
            }
        })
    });
    ModelSwitch {
        control,
        state,
        log,
    }
}

#[test]
fn a_stopped_migrating_vms_frames_are_redirected_by_network_and_mac_outside_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let switch = model_switch(dir.path(), Refusals::default());
    let link = SwitchLink::open(
        SwitchAttachment {
            control: switch.control.clone(),
            trunk_interface: Some("trunk0".into()),
            ..settings()
        },
        dir.path(),
    )
    .unwrap();
    let mut c = config();
    c.networks.push(vlan_network("vlan", 3, 30));
    link.set_config(c).unwrap();
    let a = Uuid::from_u128(1);
    link.plug(
        a,
        &dir.path().join("a"),
        &[
            nic("blue", "52:54:00:00:00:01"),
            nic("vlan", "52:54:00:00:00:21"),
            nic("red", "52:54:00:00:00:11"),
        ],
    )
    .unwrap();
    let config_before = switch.state.lock().unwrap().clone();
    let redirects = |switch: &ModelSwitch| -> Vec<Request> {
        let log = switch.log.lock().unwrap();
        log.iter()
            .filter(|r| matches!(r, Request::RedirectMac { .. }))
            .cloned()
            .collect()
    };
    let to = Some(Ipv4Addr::new(10, 0, 0, 2));
    // The NICs on overlay networks (a VLAN network has no VTEP to send to).
    assert_eq!(link.redirect(a, to).unwrap(), 2);
    let on = |to| {
        vec![
            Request::RedirectMac {
                network: 1,
                mac: "52:54:00:00:00:01".parse().unwrap(),
                to,
            },
            Request::RedirectMac {
                network: 2,
                mac: "52:54:00:00:00:11".parse().unwrap(),
                to,
            },
        ]
    };
    assert_eq!(redirects(&switch), on(to));
    // No configuration: a reconcile neither withdraws nor repeats it.
    switch.log.lock().unwrap().clear();
    link.reconcile().unwrap().into_result().unwrap();
    assert_eq!(redirects(&switch), vec![]);
    assert_eq!(*switch.state.lock().unwrap(), config_before);
    // Ended (the migration failed: the guest resumed here).
    assert_eq!(link.redirect(a, None).unwrap(), 2);
    assert_eq!(redirects(&switch), on(None));
    // A VM without ports here has nothing to redirect.
    switch.log.lock().unwrap().clear();
    assert_eq!(link.redirect(Uuid::from_u128(9), to).unwrap(), 0);
    assert!(switch.log.lock().unwrap().is_empty());
}

/// An established TCP connection to the VM's port `port`.
fn connection(port: u16) -> vinfra_switch_control::ConnectionSpec {
    vinfra_switch_control::ConnectionSpec {
        original: vinfra_switch_control::ConnTupleSpec {
            src: Ipv4Addr::new(10, 90, 0, 9),
            dst: Ipv4Addr::new(10, 90, 0, 1),
            protocol: 6,
            src_port: 40000,
            dst_port: port,
        },
        origin: vinfra_switch_control::SideSpec::ToVm,
        tcp_state: Some(vinfra_switch_control::TcpStateSpec::Established),
        replied: true,
        remaining_ms: 60_000,
    }
}

#[test]
fn a_vms_connections_leave_by_its_ports_and_arrive_at_the_ports_of_its_nics() {
    let dir = tempfile::tempdir().unwrap();
    let switch = model_switch(
        dir.path(),
        Refusals {
            imports: vec![2],
            ..Refusals::default()
        },
    );
    let link = SwitchLink::open(
        SwitchAttachment {
            control: switch.control.clone(),
            ..settings()
        },
        dir.path(),
    )
    .unwrap();
    link.set_config(config()).unwrap();
    let a = Uuid::from_u128(1);
    let nics = link
        .plug(
            a,
            &dir.path().join("a"),
            &[
                nic("blue", "52:54:00:00:00:01"),
                nic("red", "52:54:00:00:00:11"),
            ],
        )
        .unwrap();
    assert_eq!(nics.iter().map(|n| n.port).collect::<Vec<_>>(), [1, 2]);
    // Out: each NIC's port's, named by network and MAC.
    let out = link.export_connections(a).unwrap();
    assert_eq!(
        out,
        vec![
            vinfra_proto::NicConnections {
                network: "blue".into(),
                mac: "52:54:00:00:00:01".into(),
                entries: vec![connection(8001)],
            },
            vinfra_proto::NicConnections {
                network: "red".into(),
                mac: "52:54:00:00:00:11".into(),
                entries: vec![connection(8002)],
            },
        ]
    );
    // A VM without ports here has none.
    assert_eq!(link.export_connections(Uuid::from_u128(9)).unwrap(), vec![]);
    // In: to the port of the NIC with the network and MAC; a NIC the VM does not have here, or
    // has on another network, gets nothing.
    let incoming = vec![
        vinfra_proto::NicConnections {
            network: "blue".into(),
            mac: "52:54:00:00:00:01".into(),
            entries: vec![connection(80), connection(81)],
        },
        vinfra_proto::NicConnections {
            network: "red".into(),
            mac: "52:54:00:00:00:01".into(),
            entries: vec![connection(82)],
        },
        vinfra_proto::NicConnections {
            network: "blue".into(),
            mac: "52:54:00:00:00:99".into(),
            entries: vec![connection(83)],
        },
    ];
    switch.log.lock().unwrap().clear();
    assert_eq!(link.import_connections(a, &incoming).unwrap(), 2);
    let imports: Vec<Request> = switch
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r, Request::ImportConnections { .. }))
        .cloned()
        .collect();
    assert_eq!(
        imports,
        vec![Request::ImportConnections {
            port: 1,
            entries: vec![connection(80), connection(81)],
        }]
    );
    // Imports are no configuration: the switch's stays as it was.
    assert!(!switch
        .state
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(r, Request::ImportConnections { .. })));
    // A port's refusal is the error, after the other ports got theirs.
    let both = vec![
        vinfra_proto::NicConnections {
            network: "red".into(),
            mac: "52:54:00:00:00:11".into(),
            entries: vec![connection(84)],
        },
        incoming[0].clone(),
    ];
    switch.log.lock().unwrap().clear();
    let e = link.import_connections(a, &both).unwrap_err();
    assert!(chain(&e).contains("connection table full"), "{}", chain(&e));
    assert!(switch.log.lock().unwrap().iter().any(
        |r| matches!(r, Request::ImportConnections { port: 1, entries } if entries.len() == 2)
    ));
}

/// How many `revert_mac_moves` the switch got.
pub(crate) fn reverts(log: &Mutex<Vec<Request>>) -> usize {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|r| **r == Request::RevertMacMoves)
        .count()
}

/// Whether the switch's configuration `state` names port `id` (the port or a MAC entry on it).
fn names_port(state: &Mutex<Vec<Request>>, id: u32) -> bool {
    state.lock().unwrap().iter().any(|r| match r {
        Request::AddPort(p) => p.id == id,
        Request::AddMacEntry { location, .. } => *location == LocationSpec::Port(id),
        _ => false,
    })
}

#[test]
fn plug_fails_when_the_switch_refuses_the_firewall_of_a_nic_in_groups() {
    let dir = tempfile::tempdir().unwrap();
    let switch = model_switch(
        dir.path(),
        Refusals {
            firewalls: vec![1, 2],
            ..Refusals::default()
        },
    );
    let link = SwitchLink::open(
        SwitchAttachment {
            control: switch.control.clone(),
            ..settings()
        },
        dir.path(),
    )
    .unwrap();
    let mut c = config();
    c.firewalls = vec![vinfra_proto::SwitchNicFirewall {
        network: "blue".into(),
        mac: "52:54:00:00:00:02".into(),
        rules: vec![],
    }];
    link.set_config(c).unwrap();
    // A NIC in no group: the switch refusing its `rules: null` leaves it as it is, unfiltered.
    let a = Uuid::from_u128(1);
    let nics = link
        .plug(
            a,
            &dir.path().join("a"),
            &[nic("blue", "52:54:00:00:00:01")],
        )
        .unwrap();
    assert_eq!(nics[0].port, 1);
    assert!(names_port(&switch.state, 1));
    // A NIC in groups must not run open: its ports are taken back.
    let b = Uuid::from_u128(2);
    let e = link
        .plug(
            b,
            &dir.path().join("b"),
            &[nic("blue", "52:54:00:00:00:02")],
        )
        .unwrap_err();
    assert!(chain(&e).contains("set_port_firewall"), "{}", chain(&e));
    assert!(!link.desired().vms.contains_key(&b));
    assert!(!names_port(&switch.state, 2));
    assert!(names_port(&switch.state, 1), "the first VM keeps its port");
}

#[test]
fn plug_applies_a_vms_ports_at_once_or_takes_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let switch = model_switch(
        dir.path(),
        Refusals {
            ports: vec![2],
            arp: true,
            ..Refusals::default()
        },
    );
    let link = SwitchLink::open(
        SwitchAttachment {
            control: switch.control.clone(),
            ..settings()
        },
        dir.path(),
    )
    .unwrap();
    link.set_config(config()).unwrap();

    // The first VM's port is on the switch when `plug` returns; the configuration's refused
    // ARP entry does not fail it.
    let a = Uuid::from_u128(1);
    let nics = link
        .plug(
            a,
            &dir.path().join("a"),
            &[nic("blue", "52:54:00:00:00:01")],
        )
        .unwrap();
    assert_eq!(nics.iter().map(|n| n.port).collect::<Vec<_>>(), [1]);
    assert!(names_port(&switch.state, 1));

    // The second VM's port (2) is refused: it has no port, neither desired nor on the switch.
    let b = Uuid::from_u128(2);
    let e = link
        .plug(
            b,
            &dir.path().join("b"),
            &[nic("blue", "52:54:00:00:00:02")],
        )
        .unwrap_err();
    assert!(
        matches!(&e, SwitchLinkError::Refused(r) if r.len() == 1),
        "{e}"
    );
    assert!(chain(&e).contains("port 2 refused"), "{e}");
    assert!(!link.desired().vms.contains_key(&b));
    assert!(!names_port(&switch.state, 2));
    assert!(names_port(&switch.state, 1), "the first VM keeps its port");

    // A NIC that cannot be attached changes nothing.
    let e = link
        .plug(
            b,
            &dir.path().join("b"),
            &[nic("green", "52:54:00:00:00:02")],
        )
        .unwrap_err();
    assert!(matches!(e, SwitchLinkError::Nic(_)), "{e}");
    assert_eq!(link.desired().vms.keys().collect::<Vec<_>>(), [&a]);
    assert_eq!(
        reverts(&switch.log),
        0,
        "a VM's ports keep the switch's MAC moves"
    );
}

#[test]
fn only_the_consoles_configuration_reverts_the_switchs_mac_moves() {
    let dir = tempfile::tempdir().unwrap();
    let ModelSwitch { control, log, .. } = model_switch(dir.path(), Refusals::default());
    let link = SwitchLink::open(
        SwitchAttachment {
            control,
            ..settings()
        },
        dir.path(),
    )
    .unwrap();
    link.set_config(config()).unwrap();
    // The background reconcile (and a VM's ports) leave what the switch moved itself.
    let first = link.reconcile().unwrap();
    assert!(first.applied > 0 && first.refused.is_empty(), "{first:?}");
    assert_eq!(link.reconcile().unwrap(), ReconcileOutcome::default());
    assert_eq!(reverts(&log), 0);
    // The console's configuration: everything it sets, then every entry back where it says.
    let before = log.lock().unwrap().len();
    let outcome = link.reconcile_with(MacMoves::Revert).unwrap();
    assert_eq!(outcome, ReconcileOutcome::default());
    let log_now = log.lock().unwrap().clone();
    assert_eq!(log_now.last(), Some(&Request::RevertMacMoves));
    assert_eq!(reverts(&log), 1, "{:?}", &log_now[before..]);
}

#[test]
fn a_switch_without_mac_move_reverts_is_still_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ModelSwitch { control, log, .. } = model_switch(
        dir.path(),
        Refusals {
            mac_move_reverts: true,
            ..Refusals::default()
        },
    );
    let link = SwitchLink::open(
        SwitchAttachment {
            control,
            ..settings()
        },
        dir.path(),
    )
    .unwrap();
    link.set_config(config()).unwrap();
    let outcome = link.reconcile_with(MacMoves::Revert).unwrap();
    assert!(
        outcome.applied > 0 && outcome.refused.is_empty(),
        "{outcome:?}"
    );
    assert_eq!(reverts(&log), 1);
    assert_eq!(link.reconcile().unwrap(), ReconcileOutcome::default());
}

fn fw_rule(
    direction: vinfra_proto::SgDirection,
    protocol: Option<u8>,
    ports: Option<(u16, u16)>,
    remotes: Vec<(Ipv4Addr, u8)>,
    action: vinfra_proto::SgAction,
) -> vinfra_proto::SwitchFirewallRule {
    vinfra_proto::SwitchFirewallRule {
        direction,
        protocol,
        ports,
        remotes,
        action,
        group: "web".into(),
        rule_id: 1,
    }
}

/// The firewall request that follows a port's policy in `d`.
fn firewall_of(d: &[Request], port: u32) -> Option<Vec<vinfra_switch_control::FirewallRuleSpec>> {
    let at = d
        .iter()
        .position(|r| matches!(r, Request::AddPort(p) if p.id == port))
        .unwrap();
    assert!(
        matches!(&d[at + 1], Request::SetPortPolicy { port: p, .. } if *p == port),
        "{d:#?}"
    );
    match &d[at + 2] {
        Request::SetPortFirewall { port: p, rules } if *p == port => rules.clone(),
        other => panic!("after port {port}'s policy: {other:?}"),
    }
}

#[test]
fn every_vm_port_gets_its_firewall_after_its_policy() {
    use vinfra_proto::{SgAction, SgDirection, SwitchNicFirewall};
    use vinfra_switch_control::{ActionSpec, DirectionSpec, FirewallRuleSpec, PrefixSpec};
    let (dir, link) = link();
    let mut c = config();
    let web = vec![
        fw_rule(
            SgDirection::Ingress,
            Some(6),
            Some((8080, 8080)),
            vec![(Ipv4Addr::new(10, 90, 0, 0), 24)],
            SgAction::Allow,
        ),
        fw_rule(
            SgDirection::Egress,
            None,
            None,
            vec![(Ipv4Addr::new(10, 90, 0, 9), 32)],
            SgAction::Deny,
        ),
    ];
    c.firewalls = vec![
        // Upper case: the MAC is compared as an address.
        SwitchNicFirewall {
            network: "blue".into(),
            mac: "52:54:00:00:00:0A".into(),
            rules: web.clone(),
        },
        // The same MAC on another network is another NIC.
        SwitchNicFirewall {
            network: "red".into(),
            mac: "52:54:00:00:00:0a".into(),
            rules: vec![],
        },
    ];
    link.set_config(c.clone()).unwrap();
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[
                nic("blue", "52:54:00:00:00:0a"),
                nic("blue", "52:54:00:00:00:0b"),
            ],
        )
        .unwrap();
    let d = desired(&link, false);
    let expected = vec![
        FirewallRuleSpec {
            direction: DirectionSpec::Ingress,
            protocol: Some(6),
            ports: Some((8080, 8080)),
            remote: vec![PrefixSpec {
                ip: Ipv4Addr::new(10, 90, 0, 0),
                prefix_len: 24,
            }],
            action: ActionSpec::Allow,
        },
        FirewallRuleSpec {
            direction: DirectionSpec::Egress,
            protocol: None,
            ports: None,
            remote: vec![PrefixSpec {
                ip: Ipv4Addr::new(10, 90, 0, 9),
                prefix_len: 32,
            }],
            action: ActionSpec::Deny,
        },
    ];
    assert_eq!(firewall_of(&d, nics[0].port), Some(expected));
    assert_eq!(firewall_of(&d, nics[1].port), None, "no entry: unfiltered");
    // An empty switch gets it all; one in sync nothing.
    let mut state = Vec::new();
    let p = plan(&state, &d);
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A changed rule set is sent again, alone: the port and its connections stay.
    c.firewalls[0].rules.truncate(1);
    link.set_config(c.clone()).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        matches!(&p[0], Request::SetPortFirewall { port, rules: Some(r) } if *port == nics[0].port && r.len() == 1)
    );
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A NIC whose groups are all detached loses its firewall (rules: null), not its port.
    c.firewalls.remove(0);
    link.set_config(c).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(
        p,
        vec![Request::SetPortFirewall {
            port: nics[0].port,
            rules: None
        }]
    );
    apply_model(&mut state, &p);
    // The firewall goes with its port.
    link.detach(Uuid::from_u128(1));
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert!(!p
        .iter()
        .any(|r| matches!(r, Request::SetPortFirewall { .. })));
    apply_model(&mut state, &p);
    assert!(!state
        .iter()
        .any(|r| matches!(r, Request::SetPortFirewall { .. })));
}

#[test]
fn firewalls_the_switch_would_refuse_are_refused_with_the_configuration() {
    use vinfra_proto::{SgAction, SgDirection, SwitchNicFirewall};
    let (_dir, link) = link();
    let good = SwitchNicFirewall {
        network: "blue".into(),
        mac: "52:54:00:00:00:0a".into(),
        rules: vec![fw_rule(
            SgDirection::Ingress,
            Some(17),
            Some((53, 53)),
            vec![(Ipv4Addr::UNSPECIFIED, 0)],
            SgAction::Allow,
        )],
    };
    let with = |firewalls: Vec<SwitchNicFirewall>| HostSwitchConfig {
        firewalls,
        ..config()
    };
    link.set_config(with(vec![good.clone()])).unwrap();
    let mut long = good.clone();
    long.rules[0].remotes = vec![(Ipv4Addr::new(10, 0, 0, 0), 33)];
    let mut backwards = good.clone();
    backwards.rules[0].ports = Some((54, 53));
    let mut group = good.clone();
    group.mac = "01:00:5e:00:00:01".into();
    for (bad, what) in [
        (vec![long], "longer than 32 bits"),
        (vec![backwards], "end before they start"),
        (vec![group], "firewall of"),
        (vec![good.clone(), good.clone()], "two firewalls"),
    ] {
        let e = link.set_config(with(bad)).unwrap_err();
        assert!(chain(&e).contains(what), "{}", chain(&e));
    }
    // The last good configuration stays.
    assert_eq!(link.config().firewalls, vec![good]);
}

#[test]
fn every_vm_port_gets_its_policy_and_the_uplink_its_peers() {
    let (dir, link) = link();
    let mut secured = nic("blue", "52:54:00:00:00:01");
    secured.ip = Some("10.90.0.1".into());
    secured.allowed_addresses = vec![
        vinfra_types::AllowedAddressPair {
            ip: "10.90.0.100".into(),
            mac: None,
        },
        vinfra_types::AllowedAddressPair {
            ip: "10.90.1.0/29".into(),
            mac: Some("02:00:00:00:00:0a".into()),
        },
    ];
    let mut open = nic("red", "52:54:00:00:00:11");
    open.port_security = Some(false);
    let no_ip = nic("blue", "52:54:00:00:00:21");
    let nics = link
        .attach(Uuid::from_u128(1), dir.path(), &[secured, open, no_ip])
        .unwrap();
    let d = desired(&link, false);
    let mac = |m: &str| m.parse::<vinfra_switch_control::Mac>().unwrap();
    let policy = |port: u32| {
        let at = d
            .iter()
            .position(|r| matches!(r, Request::AddPort(p) if p.id == port))
            .unwrap();
        match &d[at + 1] {
            Request::SetPortPolicy { port: p, policy } if *p == port => policy.clone(),
            other => panic!("after port {port}: {other:?}"),
        }
    };
    let own = |m: &str, ip: [u8; 4], prefix_len| vinfra_switch_control::AllowedAddressSpec {
        mac: mac(m),
        ip: Ipv4Addr::from(ip),
        prefix_len,
    };
    let p = policy(nics[0].port);
    assert_eq!(
        p.allowed,
        Some(vec![
            own("52:54:00:00:00:01", [10, 90, 0, 1], 32),
            own("52:54:00:00:00:01", [10, 90, 0, 100], 32),
            own("02:00:00:00:00:0a", [10, 90, 1, 0], 29),
        ])
    );
    assert_eq!(p.mac_limit, Some(super::desired::PORT_MAC_LIMIT));
    assert_eq!(p.storm, Some(super::desired::PORT_STORM));
    assert_eq!(policy(nics[1].port).allowed, None, "port security off");
    assert_eq!(
        policy(nics[2].port).allowed,
        Some(vec![own("52:54:00:00:00:21", [0, 0, 0, 0], 0)]),
        "no address: any IPv4 source from its MAC"
    );
    // The other hosts only: this host's own address is left out.
    assert!(d.contains(&Request::SetUnderlayPeers {
        peers: Some(vec![Ipv4Addr::new(10, 0, 0, 2)])
    }));
}

#[test]
fn an_expected_move_follows_the_console_and_is_withdrawn() {
    let (_dir, link) = link();
    let mut state = Vec::new();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    apply_model(&mut state, &p);
    let remote = "52:54:00:00:00:02"
        .parse::<vinfra_switch_control::Mac>()
        .unwrap();
    let expect = |to: Option<Ipv4Addr>| Request::ExpectMacMove {
        network: 1,
        mac: remote,
        to,
    };
    // The console says the remote VM migrates to 10.0.0.3.
    let mut c = config();
    c.macs[0].moving_to = Some(Ipv4Addr::new(10, 0, 0, 3));
    link.set_config(c.clone()).unwrap();
    let d = desired(&link, false);
    assert!(d.contains(&expect(Some(Ipv4Addr::new(10, 0, 0, 3)))));
    let p = plan(&state, &d);
    assert_eq!(p, vec![expect(Some(Ipv4Addr::new(10, 0, 0, 3)))]);
    apply_model(&mut state, &p);
    // The migration is cancelled: the expectation is withdrawn, the entry stays.
    link.set_config(config()).unwrap();
    let p = plan(&state, &desired(&link, false));
    assert_eq!(p, vec![expect(None)]);
    apply_model(&mut state, &p);
    // It migrates again and completes: the entry is set anew, which withdraws the expectation.
    link.set_config(c).unwrap();
    let p = plan(&state, &desired(&link, false));
    apply_model(&mut state, &p);
    let mut done = config();
    done.macs[0].host_ip = Ipv4Addr::new(10, 0, 0, 3);
    link.set_config(done).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert!(!p.contains(&expect(None)), "{p:?}");
    assert!(p.iter().any(
        |r| matches!(r, Request::AddMacEntry { mac, location: LocationSpec::Vtep(v), .. }
        if *mac == remote && *v == Ipv4Addr::new(10, 0, 0, 3))
    ));
    apply_model(&mut state, &p);
    assert!(same(&state, &d));
    assert!(plan(&state, &d).is_empty());
}

/// The QoS request that follows a port's firewall in `d`.
fn qos_of(d: &[Request], port: u32) -> Option<vinfra_switch_control::QosSpec> {
    let at = d
        .iter()
        .position(|r| matches!(r, Request::AddPort(p) if p.id == port))
        .unwrap();
    assert!(
        matches!(&d[at + 2], Request::SetPortFirewall { port: p, .. } if *p == port),
        "{d:#?}"
    );
    match &d[at + 3] {
        Request::SetPortQos { port: p, qos } if *p == port => qos.clone(),
        other => panic!("after port {port}'s firewall: {other:?}"),
    }
}

#[test]
fn every_vm_port_gets_its_qos_after_its_firewall_and_again_when_it_changes() {
    use vinfra_proto::SwitchNicQos;
    use vinfra_switch_control::{PrioritySpec, QosSpec, RateSpec};
    use vinfra_types::qos::{NicPriority, NicQos, NicRate};
    let (dir, link) = link();
    let mut c = config();
    c.qos = vec![
        // Upper case: the MAC is compared as an address.
        SwitchNicQos {
            network: "blue".into(),
            mac: "52:54:00:00:00:0A".into(),
            qos: NicQos {
                egress: Some(NicRate::new(100_000_000)),
                ingress: Some(NicRate {
                    bits_per_sec: 8_000_000,
                    burst_bytes: Some(1 << 20),
                }),
                priority: NicPriority::High,
                weight: None,
                dscp: Some(46),
            },
        },
        // The same MAC on another network is another NIC.
        SwitchNicQos {
            network: "red".into(),
            mac: "52:54:00:00:00:0b".into(),
            qos: NicQos::default(),
        },
    ];
    link.set_config(c.clone()).unwrap();
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[
                nic("blue", "52:54:00:00:00:0a"),
                nic("blue", "52:54:00:00:00:0b"),
            ],
        )
        .unwrap();
    let d = desired(&link, false);
    // The default burst (10 ms at the rate) and weight are filled in.
    assert_eq!(
        qos_of(&d, nics[0].port),
        Some(QosSpec {
            egress: Some(RateSpec {
                bits_per_sec: 100_000_000,
                burst_bytes: 125_000,
            }),
            ingress: Some(RateSpec {
                bits_per_sec: 8_000_000,
                burst_bytes: 1 << 20,
            }),
            priority: PrioritySpec::High,
            weight: 10,
            dscp_mark: Some(46),
        })
    );
    assert_eq!(qos_of(&d, nics[1].port), None, "no entry: no QoS");
    let mut state = Vec::new();
    let p = plan(&state, &d);
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A changed QoS is sent again, alone: the port stays.
    c.qos[0].qos.priority = NicPriority::Low;
    c.qos[0].qos.egress = Some(NicRate::new(50_000_000));
    link.set_config(c.clone()).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        matches!(&p[0], Request::SetPortQos { port, qos: Some(q) }
            if *port == nics[0].port && q.priority == PrioritySpec::Low
                && q.egress == Some(RateSpec { bits_per_sec: 50_000_000, burst_bytes: 62_500 })),
        "{p:#?}"
    );
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A NIC whose QoS is removed gets `qos: null`, not a new port.
    c.qos.remove(0);
    link.set_config(c).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(
        p,
        vec![Request::SetPortQos {
            port: nics[0].port,
            qos: None
        }]
    );
    apply_model(&mut state, &p);
    // The QoS goes with its port.
    link.detach(Uuid::from_u128(1));
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert!(!p.iter().any(|r| matches!(r, Request::SetPortQos { .. })));
    apply_model(&mut state, &p);
    assert!(!state
        .iter()
        .any(|r| matches!(r, Request::SetPortQos { .. })));
}

#[test]
fn port_security_follows_the_consoles_entry_for_a_running_port() {
    use vinfra_proto::SwitchNicSecurity;
    use vinfra_switch_control::AllowedAddressSpec;
    let (dir, link) = link();
    let mut c = config();
    link.set_config(c.clone()).unwrap();
    let mut started = nic("blue", "52:54:00:00:00:0a");
    started.ip = Some("10.90.0.10".into());
    let nics = link
        .attach(Uuid::from_u128(1), dir.path(), &[started])
        .unwrap();
    let port = nics[0].port;
    let mac = "52:54:00:00:00:0a"
        .parse::<vinfra_switch_control::Mac>()
        .unwrap();
    let own = |ip: [u8; 4], prefix_len| AllowedAddressSpec {
        mac,
        ip: Ipv4Addr::from(ip),
        prefix_len,
    };
    let allowed = |d: &[Request]| {
        d.iter()
            .find_map(|r| match r {
                Request::SetPortPolicy { port: p, policy } if *p == port => {
                    Some(policy.allowed.clone())
                }
                _ => None,
            })
            .expect("the port's policy")
    };
    // No entry (an older console): as the VM was started.
    let d = desired(&link, false);
    assert_eq!(allowed(&d), Some(vec![own([10, 90, 0, 10], 32)]));
    let mut state = Vec::new();
    let p = plan(&state, &d);
    apply_model(&mut state, &p);
    // The console adds an allowed address: the running port's policy changes, alone.
    let mut entry = SwitchNicSecurity {
        network: "blue".into(),
        mac: "52:54:00:00:00:0A".into(),
        port_security: true,
        ip: Some("10.90.0.10".into()),
        allowed_addresses: vec![vinfra_types::AllowedAddressPair {
            ip: "10.90.0.200".into(),
            mac: None,
        }],
    };
    c.port_security = vec![entry.clone()];
    link.set_config(c.clone()).unwrap();
    let d = desired(&link, false);
    assert_eq!(
        allowed(&d),
        Some(vec![own([10, 90, 0, 10], 32), own([10, 90, 0, 200], 32)])
    );
    let p = plan(&state, &d);
    assert!(
        p.len() == 1 && matches!(&p[0], Request::SetPortPolicy { port: q, .. } if *q == port),
        "{p:#?}"
    );
    apply_model(&mut state, &p);
    // Port security off: the port sends from anything.
    entry.port_security = false;
    c.port_security = vec![entry];
    link.set_config(c).unwrap();
    assert_eq!(allowed(&desired(&link, false)), None);
}

#[test]
fn qos_the_switch_would_refuse_is_refused_with_the_configuration() {
    use vinfra_proto::SwitchNicQos;
    use vinfra_types::qos::{NicQos, NicRate};
    let (_dir, link) = link();
    let good = SwitchNicQos {
        network: "blue".into(),
        mac: "52:54:00:00:00:0a".into(),
        qos: NicQos {
            ingress: Some(NicRate::new(8_000_000)),
            ..NicQos::default()
        },
    };
    let with = |qos: Vec<SwitchNicQos>| HostSwitchConfig { qos, ..config() };
    link.set_config(with(vec![good.clone()])).unwrap();
    let mut slow = good.clone();
    slow.qos.ingress = Some(NicRate::new(10));
    let mut heavy = good.clone();
    heavy.qos.weight = Some(0);
    let mut group = good.clone();
    group.mac = "01:00:5e:00:00:01".into();
    for (bad, what) in [
        (vec![slow], "ingress rate 10 bit/s is out of range"),
        (vec![heavy], "weight 0 is out of range"),
        (vec![group], "QoS of"),
        (vec![good.clone(), good.clone()], "two QoS entries"),
    ] {
        let e = link.set_config(with(bad)).unwrap_err();
        assert!(chain(&e).contains(what), "{}", chain(&e));
    }
    // The last good configuration stays.
    assert_eq!(link.config().qos, vec![good]);
}
