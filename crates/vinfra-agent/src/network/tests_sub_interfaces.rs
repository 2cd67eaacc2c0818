//! Unit tests of a VM's 802.1Q sub-interface NICs: their ports ride their NIC's (no sockets of
//! their own, added after it), and a plan that replaces the NIC's port adds them again without
//! removing them on their own (the switch removes them with their NIC).

use uuid::Uuid;
use vinfra_switch_control::{Attachment, PortSpec, Request};
use vinfra_types::{NicSpec, NicVlan};

use super::tests::{apply_model, desired, link, same};
use super::*;

fn nic(network: &str, vlan: Option<(usize, u16)>) -> NicSpec {
    NicSpec {
        network: network.into(),
        mac: Some("52:54:00:00:00:01".into()),
        vlan: vlan.map(|(parent, vid)| NicVlan { parent, vid }),
        ..Default::default()
    }
}

fn ports(requests: &[Request]) -> Vec<&PortSpec> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::AddPort(p) if p.id != vinfra_switch_control::UPLINK_PORT => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn sub_interfaces_ride_their_nics_port() {
    let (dir, link) = link();
    // NIC 0 on blue, its sub-interface on red with tag 10.
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[nic("blue", None), nic("red", Some((0, 10)))],
        )
        .unwrap();
    assert_eq!(nics.len(), 2);
    assert_eq!(
        nics[1].vlan.map(|t| (t.parent_port, t.vid)),
        Some((nics[0].port, 10))
    );
    assert_eq!(nics[1].qemu_socket, nics[0].qemu_socket);
    let d = desired(&link, false);
    let p = ports(&d);
    assert_eq!(p.len(), 2, "{d:#?}");
    assert!(
        matches!(p[0].attach, Attachment::Vm { network: 1, .. }),
        "{p:?}"
    );
    assert_eq!(
        p[1].attach,
        Attachment::VmVlan {
            network: 2,
            parent: nics[0].port,
            vid: 10
        }
    );
    // Its port security is its own: its MAC (the NIC's) on its network; its QoS its NIC's
    // (the switch takes none for it).
    assert!(d.iter().any(|r| matches!(r,
        Request::SetPortPolicy { port, .. } if *port == nics[1].port)));
    assert!(d.iter().any(|r| matches!(r,
        Request::SetPortQos { port, .. } if *port == nics[0].port)));
    assert!(!d.iter().any(|r| matches!(r,
        Request::SetPortQos { port, .. } if *port == nics[1].port)));

    // A sub-interface of a NIC that is not an earlier one is refused, nothing attached.
    let e = link
        .attach(
            Uuid::from_u128(2),
            dir.path(),
            &[
                NicSpec {
                    mac: Some("52:54:00:00:00:02".into()),
                    ..nic("red", Some((1, 10)))
                },
                NicSpec {
                    mac: Some("52:54:00:00:00:02".into()),
                    ..nic("blue", None)
                },
            ],
        )
        .unwrap_err();
    let text = vinfra_types::error::chain(&e);
    assert!(
        text.contains("NIC 0") && text.contains("a sub-interface of NIC 1"),
        "{text}"
    );
    assert_eq!(ports(&desired(&link, false)).len(), 2);
}

#[test]
fn replacing_a_nics_port_adds_its_sub_interfaces_again() {
    let (dir, link) = link();
    let id = Uuid::from_u128(1);
    link.attach(
        id,
        dir.path(),
        &[nic("blue", None), nic("red", Some((0, 10)))],
    )
    .unwrap();
    let d1 = desired(&link, false);
    let mut state = Vec::new();
    apply_model(&mut state, &plan(&[], &d1));
    assert!(same(&state, &d1));
    // The NIC's port changes (its sockets move to another directory, as on a restart from
    // another path): the NIC's port is removed (which takes its sub-interface along) and both
    // are added again; the sub-interface is not removed on its own.
    let other = tempfile::tempdir().unwrap();
    link.attach(
        id,
        other.path(),
        &[nic("blue", None), nic("red", Some((0, 10)))],
    )
    .unwrap();
    let d2 = desired(&link, false);
    let p = plan(&state, &d2);
    let (parent, sub) = {
        let p = ports(&d2);
        (p[0].id, p[1].id)
    };
    let removed: Vec<u32> = p
        .iter()
        .filter_map(|r| match r {
            Request::RemovePort { id } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(removed, vec![parent], "{p:#?}");
    let added: Vec<u32> = ports(&p).iter().map(|s| s.id).collect();
    assert_eq!(added, vec![parent, sub], "{p:#?}");
    // Its policy goes with it and is set again.
    assert!(p
        .iter()
        .any(|r| matches!(r, Request::SetPortPolicy { port, .. } if *port == sub)));
}

#[test]
fn nics_go_on_taps_but_a_nic_with_sub_interfaces_stays_on_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SwitchAttachment {
        vm_nic_ports: VmNicPorts::Tap,
        ..super::tests::settings()
    };
    let link = SwitchLink::open(settings.clone(), dir.path()).unwrap();
    link.set_config(super::tests::config()).unwrap();
    // NIC 0 plain, NIC 1 carries NIC 2 as a sub-interface.
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[
                NicSpec {
                    mac: Some("52:54:00:00:00:02".into()),
                    ..nic("blue", None)
                },
                nic("red", None),
                nic("blue", Some((1, 10))),
            ],
        )
        .unwrap();
    let tap = tap_name(&settings.control, nics[0].port);
    assert_eq!(nics[0].tap.as_deref(), Some(tap.as_str()));
    assert!(tap.len() <= 15, "{tap}");
    assert_eq!(nics[1].tap, None);
    assert_eq!(nics[2].tap, None);
    let other = tap_name(std::path::Path::new("/run/other.sock"), nics[0].port);
    assert_ne!(tap, other, "two switches' taps share a name");
    let d = super::tests::desired(&link, false);
    let p = ports(&d);
    assert_eq!(
        p[0].attach,
        Attachment::VmTap {
            network: 1,
            tap,
            owner: None
        },
        "{p:?}"
    );
    assert!(
        matches!(p[1].attach, Attachment::Vm { network: 2, .. }),
        "{p:?}"
    );
    assert!(matches!(p[2].attach, Attachment::VmVlan { .. }), "{p:?}");
}
