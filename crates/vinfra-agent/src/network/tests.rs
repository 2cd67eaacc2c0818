//! Unit tests of the switch link: the desired configuration, port allocation, plans and DHCP,
//! without a switch; and what the other `tests_*` files share: the configuration, a link, a
//! model of the switch (`apply_model`, and `model_switch` on a control socket).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use uuid::Uuid;
use vinfra_proto::{
    HostSwitchConfig, SwitchArpEntry, SwitchDhcp, SwitchMacEntry, SwitchNetwork, SwitchNetworkKind,
};
use vinfra_switch_control::{
    Attachment, CountersView, DhcpSpec, LocationSpec, PortSpec, Request, UPLINK_PORT,
};
use vinfra_types::error::chain;
use vinfra_types::NicSpec;

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

pub(crate) fn nic(network: &str, mac: &str) -> NicSpec {
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

/// An established TCP connection to the VM's port `port`.
pub(crate) fn connection(port: u16) -> vinfra_switch_control::ConnectionSpec {
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

/// How many `revert_mac_moves` the switch got.
pub(crate) fn reverts(log: &Mutex<Vec<Request>>) -> usize {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|r| **r == Request::RevertMacMoves)
        .count()
}

pub(crate) fn fw_rule(
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
