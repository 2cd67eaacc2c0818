//! Unit tests of a migrating VM on the switch link: a stopped VM's frames redirected by network
//! and MAC (outside the configuration), its tracked connections out by its ports and in at the
//! ports of its NICs, and the console's expected MAC move followed and withdrawn.

use std::net::Ipv4Addr;

use uuid::Uuid;
use vinfra_switch_control::{LocationSpec, Request};
use vinfra_types::error::chain;

use super::tests::{
    apply_model, config, connection, desired, link, model_switch, nic, same, settings,
    vlan_network, ModelSwitch, Refusals,
};
use super::*;

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
