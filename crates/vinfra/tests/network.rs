//! Logical networks end to end in a 3-host lab: every host runs `vinfra switch`, the console
//! programs the switches through the agents, and lab guests ping each other over real QEMU NICs.
//!
//! - Two VMs on different hosts on the same overlay network ping each other; a third VM on
//!   another overlay with the same address range (and the same address as one of them) reaches
//!   nothing: no frame crosses networks (its pings fail, and its host's switch counts its frames
//!   into its network and not one copy out of it).
//! - The pinged VM migrates to a third host; the pings resume. The longest run of failed pings
//!   (the gap) is printed.

mod common;

use std::time::Duration;

use common::{api, can_run_labs, console_text, start_named_lab, vm, wait_for, wait_migration_end};
use vinfra_lab::Lab;
use vinfra_switchd::{NetworkSpec, Request, SwitchClient};
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::{BootSource, MigrationPhase, MigrationProgress, NicSpec, VmSummary};

const SUBNET: &str = "10.80.1.0/24";
const A_IP: &str = "10.80.1.10";
const B_IP: &str = "10.80.1.20";

fn create_network(lab: &Lab, name: &str) {
    let req = CreateNetworkRequest {
        name: name.into(),
        kind: NetworkKind::Overlay,
        vni: None,
        vlan_id: None,
        subnet: SUBNET.into(),
        gateway: None,
        mtu: None,
    };
    let _: serde_json::Value = api(lab)
        .post("/api/v1/networks", &req)
        .unwrap_or_else(|e| panic!("create network {name}: {e}"));
}

/// Creates a lab guest on `host` with one NIC on `network` at `ip`, pinging `ping`.
fn create_pinging_vm(
    lab: &Lab,
    name: &str,
    host: &str,
    network: &str,
    ip: &str,
    ping: &str,
) -> VmSummary {
    let mut req = Lab::guest_vm_request(name, 128, Some(host));
    if let BootSource::Kernel { cmdline, .. } = &mut req.spec.boot {
        cmdline.push_str(&format!(" vinfra.ping={ping}"));
    }
    req.spec.nics = vec![NicSpec {
        network: network.into(),
        mac: None,
        ip: Some(ip.into()),
    }];
    api(lab)
        .post("/api/v1/vms", &req)
        .unwrap_or_else(|e| panic!("create VM {name}: {e}"))
}

/// The results of the complete `VINFRA-PING <target> ok|fail` lines of a console text, in
/// order (`true`: ok).
fn pings(text: &str, target: &str) -> Vec<bool> {
    let prefix = format!("VINFRA-PING {target} ");
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| match l.strip_prefix(&prefix) {
            Some("ok") => Some(true),
            Some("fail") => Some(false),
            _ => None,
        })
        .collect()
}

fn vm_pings(lab: &Lab, name: &str, target: &str) -> Vec<bool> {
    pings(&console_text(lab, name), target)
}

/// The longest run of failed pings.
fn longest_fail_run(results: &[bool]) -> usize {
    results
        .split(|ok| *ok)
        .map(<[bool]>::len)
        .max()
        .unwrap_or(0)
}

/// Frames into and copies out of the overlay network `name` on `host`'s switch (found by its
/// VNI): `(rx_packets, tx_packets)`.
fn network_counters(lab: &Lab, host: &str, name: &str) -> (u64, u64) {
    let net: serde_json::Value = api(lab)
        .get(&format!("/api/v1/networks/{name}"))
        .unwrap_or_else(|e| panic!("GET network {name}: {e}"));
    let vni = net["vni"].as_u64().expect("an overlay network has a VNI");
    let h = lab
        .state()
        .hosts
        .iter()
        .find(|h| h.name == host)
        .expect("lab host");
    let mut client = SwitchClient::connect(&h.data_dir.join("switch.sock"))
        .unwrap_or_else(|e| panic!("{host}'s switch: {e}"));
    let id = client
        .config()
        .unwrap_or_else(|e| panic!("{host}'s switch configuration: {e}"))
        .iter()
        .find_map(|r| match r {
            Request::AddNetwork {
                id,
                kind: NetworkSpec::Overlay { vni: v },
            } if u64::from(*v) == vni => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{host}'s switch has no network with VNI {vni}"));
    let counters = client
        .counters()
        .unwrap_or_else(|e| panic!("{host}'s switch counters: {e}"));
    let n = counters
        .network(id)
        .unwrap_or_else(|| panic!("{host}'s switch has no counters for network {id}"));
    (n.traffic.rx_packets, n.traffic.tx_packets)
}

#[test]
fn overlay_networks_isolate_tenants_and_follow_a_migrating_vm() {
    if !can_run_labs() {
        return;
    }
    let lab = start_named_lab("net-ovl", 3, |_| {});
    let status = lab.status();
    for p in &status.processes {
        assert!(p.alive, "lab process {} ({}) runs", p.name, p.pid);
    }
    assert!(
        status.processes.iter().any(|p| p.name == "h3 switch"),
        "lab status shows the switches: {:?}",
        status.processes
    );

    create_network(&lab, "blue");
    create_network(&lab, "red");
    let b = create_pinging_vm(&lab, "b", "h2", "blue", B_IP, A_IP);
    let a = create_pinging_vm(&lab, "a", "h1", "blue", A_IP, B_IP);
    // c has a's address on red, next to b on the same host, and pings b's address.
    let c = create_pinging_vm(&lab, "c", "h2", "red", A_IP, B_IP);
    for v in [&a, &b, &c] {
        assert_eq!(v.spec.nics.len(), 1, "{} has its NIC", v.name);
        lab.wait_console(&v.name, "VINFRA-GUEST BOOTED", common::BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("VM {} did not boot: {e}", v.name));
    }

    // a reaches b across hosts over the overlay.
    wait_for("a's pings of b to succeed", Duration::from_secs(60), || {
        vm_pings(&lab, "a", B_IP).contains(&true).then_some(())
    });
    wait_for("b's pings of a to succeed", Duration::from_secs(60), || {
        vm_pings(&lab, "b", A_IP).contains(&true).then_some(())
    });
    // c, on red, has tried as long as a and b took to reach each other, and a few times more:
    // never once an answer.
    let c_tries = wait_for("c to try 10 pings", Duration::from_secs(60), || {
        let p = vm_pings(&lab, "c", B_IP);
        (p.len() >= 10).then_some(p)
    });
    assert!(
        c_tries.iter().all(|ok| !ok),
        "c on red reached {B_IP} on blue: {c_tries:?}"
    );
    // h2's switch took c's frames into red and sent not one copy out of it (red has no other
    // port anywhere), while blue carries a's and b's traffic.
    let (red_rx, red_tx) = network_counters(&lab, "h2", "red");
    assert!(red_rx > 0, "c's frames entered red (rx {red_rx})");
    assert_eq!(red_tx, 0, "copies of frames left red (rx {red_rx})");
    let (blue_rx, blue_tx) = network_counters(&lab, "h2", "blue");
    assert!(
        blue_tx > 0,
        "blue carries a's and b's traffic (rx {blue_rx}, tx {blue_tx})"
    );

    // b moves to h3 while a pings it.
    let before = vm_pings(&lab, "a", B_IP).len();
    let started: MigrationProgress = api(&lab)
        .post("/api/v1/vms/b/migrate", &serde_json::json!({ "to": "h3" }))
        .unwrap_or_else(|e| panic!("POST migrate b: {e}"));
    assert_eq!(started.destination, "h3");
    let end = wait_migration_end(&lab, "b");
    assert_eq!(end.phase, MigrationPhase::Completed, "{end:?}");
    assert_eq!(vm(&lab, "b").host, "h3");
    // Pings answered from now on are answered by b on h3: nothing of b is left on h2.
    common::wait_nothing_left_on(&lab, "h2", &b.id.to_string());
    let at_end = vm_pings(&lab, "a", B_IP).len();
    let after = wait_for(
        "a's pings of b to succeed again within 30 s of the migration's end",
        Duration::from_secs(30),
        || {
            let p = vm_pings(&lab, "a", B_IP);
            p[at_end.min(p.len())..].contains(&true).then_some(p)
        },
    );
    let during = &after[before.min(after.len())..];
    eprintln!(
        "migration of b h2 → h3: downtime {:?} ms; a's pings since the start: {} ({} failed), \
         longest run of failures (the gap): {} pings at 1 per second",
        end.downtime_ms,
        during.len(),
        during.iter().filter(|ok| !**ok).count(),
        longest_fail_run(during)
    );
    // c still reaches nothing.
    assert!(
        vm_pings(&lab, "c", B_IP).iter().all(|ok| !ok),
        "c on red reached {B_IP} on blue"
    );
    lab.down();
}
