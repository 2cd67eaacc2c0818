//! A trunk NIC end to end in a 2-host lab: VM `t` on h1 has one virtio NIC on overlay network
//! `lan` and two 802.1Q sub-interfaces of it, `blue` (tag 10) and `green` (tag 20); its guest
//! creates `eth0.10` and `eth0.20` (`vinfra.vlan=`). A VM on `blue` and a VM on `green`, both on
//! h2, ping `t`'s address on their network and get replies: each network reaches the guest
//! through its own sub-interface, with the NIC's MAC, and each sub-interface's port counts its
//! traffic. `t` then moves to h2 live and both keep answering.

mod common;

use std::time::Duration;

use common::{api, can_run_labs, create_nic_vm, start_named_lab, vm_pings, wait_for, NicAddress};
use vinfra_lab::Lab;
use vinfra_types::error::Chain;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::{BootSource, NicSpec, NicVlan};

const T_LAN: &str = "10.71.0.10";
const T_BLUE: &str = "10.71.1.10";
const T_GREEN: &str = "10.71.2.10";
const P_BLUE: &str = "10.71.1.20";
const P_GREEN: &str = "10.71.2.20";

fn create_network(lab: &Lab, name: &str, subnet: &str) {
    api(lab)
        .create_network(&CreateNetworkRequest {
            name: name.into(),
            kind: NetworkKind::Overlay,
            vni: None,
            vlan_id: None,
            subnet: subnet.into(),
            gateway: None,
            mtu: None,
        })
        .unwrap_or_else(|e| panic!("create network {name}: {}", Chain(&e)));
}

/// How many of `pings` (a guest's results, in order) after the first `after` succeeded.
fn successes_after(pings: &[bool], after: usize) -> usize {
    pings.iter().skip(after).filter(|ok| **ok).count()
}

#[test]
fn a_trunk_nic_carries_two_networks_as_sub_interfaces() {
    if !can_run_labs() {
        return;
    }
    let lab = start_named_lab("trunk-nic", 2, |_| {});
    create_network(&lab, "lan", "10.71.0.0/24");
    create_network(&lab, "blue", "10.71.1.0/24");
    create_network(&lab, "green", "10.71.2.0/24");

    // t: NIC 0 on lan, NICs 1 and 2 its sub-interfaces.
    let lan = lab
        .static_address("lan", T_LAN.parse().expect("address"))
        .unwrap_or_else(|e| panic!("t's address: {}", Chain(&e)));
    let mut req = Lab::guest_nic_vm_request("t", 128, Some("h1"), "lan", lan);
    for (network, vid, ip) in [("blue", 10, T_BLUE), ("green", 20, T_GREEN)] {
        req.spec.nics.push(NicSpec {
            network: network.into(),
            ip: Some(ip.into()),
            vlan: Some(NicVlan { parent: 0, vid }),
            ..NicSpec::default()
        });
    }
    if let BootSource::Kernel { cmdline, .. } = &mut req.spec.boot {
        cmdline.push_str(&format!(" vinfra.vlan=10:{T_BLUE}/24,20:{T_GREEN}/24"));
    }
    let t = api(&lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create t: {}", Chain(&e)));
    // The sub-interfaces use the NIC's MAC; their addresses are their own.
    let macs: Vec<_> = t.spec.nics.iter().map(|n| n.mac.clone()).collect();
    assert!(macs[0].is_some(), "{:?}", t.spec.nics);
    assert_eq!(macs[1], macs[0], "{:?}", t.spec.nics);
    assert_eq!(macs[2], macs[0], "{:?}", t.spec.nics);
    assert_eq!(t.spec.nics[1].ip.as_deref(), Some(T_BLUE));

    create_nic_vm(
        &lab,
        "pb",
        "h2",
        "blue",
        NicAddress::Static(P_BLUE),
        &format!("vinfra.ping={T_BLUE}"),
    );
    create_nic_vm(
        &lab,
        "pg",
        "h2",
        "green",
        NicAddress::Static(P_GREEN),
        &format!("vinfra.ping={T_GREEN}"),
    );
    for name in ["t", "pb", "pg"] {
        lab.wait_console(name, "VINFRA-GUEST BOOTED", common::BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("VM {name} did not boot: {e}"));
    }
    for line in [
        format!("VINFRA-GUEST VLAN 10 {T_BLUE}/24"),
        format!("VINFRA-GUEST VLAN 20 {T_GREEN}/24"),
    ] {
        lab.wait_console("t", &line, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("t's sub-interface ({line}): {e}"));
    }

    // Both networks reach t, each through its sub-interface.
    for (pinger, target) in [("pb", T_BLUE), ("pg", T_GREEN)] {
        wait_for(
            &format!("{pinger}'s pings of {target} to succeed"),
            Duration::from_secs(60),
            || vm_pings(&lab, pinger, target).contains(&true).then_some(()),
        );
    }
    let counters = api(&lab)
        .vm_counters("t")
        .unwrap_or_else(|e| panic!("t's counters: {}", Chain(&e)));
    for nic in [1, 2] {
        let c = counters
            .nics
            .iter()
            .find(|c| c.nic == nic)
            .and_then(|c| c.counters.clone())
            .unwrap_or_else(|| panic!("no counters of t's NIC {nic}: {counters:?}"));
        assert!(
            c.rx_packets > 0 && c.tx_packets > 0,
            "t's sub-interface NIC {nic} carried nothing: {c:?}"
        );
    }
    // The operator sees the sub-interfaces in `vinfra vm show`.
    let env = common::cli_env(&lab);
    let out = common::vinfra(&["vm", "show", "t"], &common::refs(&env));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "vinfra vm show t: {out:?}");
    for expected in ["blue ip=10.71.1.10", "vlan=10 on NIC 0", "vlan=20 on NIC 0"] {
        assert!(text.contains(expected), "no '{expected}' in: {text}");
    }

    // t moves to h2 live: both sub-interfaces go with it and keep answering.
    let before: Vec<usize> = [("pb", T_BLUE), ("pg", T_GREEN)]
        .iter()
        .map(|(p, target)| vm_pings(&lab, p, target).len())
        .collect();
    common::migrate_to(&lab, "t", "h2");
    for ((pinger, target), n) in [("pb", T_BLUE), ("pg", T_GREEN)].into_iter().zip(before) {
        wait_for(
            &format!("{pinger}'s pings of {target} after the migration"),
            Duration::from_secs(60),
            || (successes_after(&vm_pings(&lab, pinger, target), n) >= 3).then_some(()),
        );
    }
    let counters = api(&lab)
        .vm_counters("t")
        .unwrap_or_else(|e| panic!("t's counters: {}", Chain(&e)));
    assert_eq!(counters.host, "h2", "{counters:?}");

    // Deleting t gives back its addresses and its one MAC claim: the same spec (MAC and
    // addresses given) is taken again at once.
    api(&lab)
        .delete_vm("t", true)
        .unwrap_or_else(|e| panic!("delete t: {}", Chain(&e)));
    let mut again = req.clone();
    again.spec.name = "t2".into();
    for n in &mut again.spec.nics {
        n.mac.clone_from(&macs[0]);
    }
    again.start = false;
    let t2 = api(&lab)
        .create_vm(&again)
        .unwrap_or_else(|e| panic!("create t2 with t's MAC and addresses: {}", Chain(&e)));
    assert_eq!(t2.spec.nics[2].ip.as_deref(), Some(T_GREEN));
    lab.down();
}
