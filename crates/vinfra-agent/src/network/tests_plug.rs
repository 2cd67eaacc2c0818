//! Unit tests of `plug` and the reconcile against a model of the switch on a control socket: a
//! VM's ports applied at once or taken back (also when the switch refuses the firewall of a NIC
//! in groups), and the switch's own MAC moves reverted only for the console's configuration.

use std::sync::Mutex;

use uuid::Uuid;
use vinfra_switch_control::{LocationSpec, Request};
use vinfra_types::error::chain;

use super::tests::{config, model_switch, nic, reverts, settings, ModelSwitch, Refusals};
use super::*;

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
