//! HA in the lab, with real guards, real QEMUs and real processes killed; throughout, a checker
//! polls every 100 ms and fails the test if any VM ever has two QEMUs on the machine.
//!
//! In one 3-host lab, one after the other:
//! 1. `kill -9` of h1's agent and back within its grace: its HA VM is not restarted elsewhere
//!    (same QEMU, re-adopted);
//! 2. a hard failure of h2 (everything in its namespace killed: agent, switch, guard, QEMUs):
//!    its HA VM runs on another host after the lease expiry, its VM without HA does not run
//!    anywhere; the time from the kill to the QEMU running is printed;
//! 3. h2 back (switch, guard, agent started again): nothing stale runs, its leftover copy of
//!    the restarted VM is removed there;
//! 4. a partition of h3 (its link to the others cut, the datastore still there) with the
//!    isolation response `power-off`: h3's guard stops its HA VMs, which then run elsewhere;
//!    once the link is back, its leftovers are removed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ha::{create, events_text, netns_exec, runs_elsewhere, Checker};
use common::{api, can_run_labs, cli_env, qemus_with, refs, start_lab, vinfra, vm, wait_for};
use nix::sys::signal::Signal;
use vinfra_types::PowerState;

#[test]
fn ha_restarts_a_dead_hosts_vms_elsewhere_and_never_runs_one_twice() {
    if !can_run_labs() {
        return;
    }
    let mut guard = start_lab("failover", 3);
    let lab = guard.lab_mut();
    let mut ids = BTreeMap::new();
    for (name, host, ha) in [
        ("web1", "h1", true),
        ("web2", "h2", true),
        ("batch", "h2", false),
        ("web3", "h3", true),
    ] {
        ids.insert(name.to_string(), create(lab, name, host, ha));
    }
    let checker = Checker::start(
        lab,
        ids.iter().map(|(n, i)| (n.clone(), i.clone())).collect(),
    );

    // 1. The agent killed and back within its grace: no failover.
    let qemu = qemus_with(&ids["web1"]);
    lab.kill_agent("h1", Signal::SIGKILL).expect("kill agent");
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(vm(lab, "web1").host, "h1", "{}", events_text(lab));
    assert_eq!(qemus_with(&ids["web1"]), qemu, "web1's QEMU changed");
    lab.restart_agent("h1").expect("restart agent");
    wait_for("h1's agent back", Duration::from_secs(30), || {
        (api(lab).host("h1").ok()?.status == vinfra_types::HostStatus::Connected).then_some(())
    });
    assert_eq!(qemus_with(&ids["web1"]), qemu, "web1 re-adopted");

    // 2. h2 dies: everything in its namespace is killed (the console is not told).
    let killed = Instant::now();
    lab.fence("h2").expect("kill everything of h2");
    let to = runs_elsewhere(lab, &ids["web2"], "h2", Duration::from_secs(60));
    let took = killed.elapsed();
    println!(
        "failover: web2's QEMU runs on {to} {:.1} s after h2 was killed",
        took.as_secs_f64()
    );
    assert!(
        took >= Duration::from_secs(5),
        "restarted {took:?} after the kill: before the lease could expire"
    );
    wait_for(
        "web2 running on its new host",
        Duration::from_secs(60),
        || {
            let v = vm(lab, "web2");
            (v.host == to && v.state == PowerState::Running).then_some(())
        },
    );
    assert!(qemus_with(&ids["batch"]).is_empty(), "batch has no HA");
    assert_eq!(vm(lab, "batch").host, "h2");

    // 3. h2 comes back: nothing stale runs; its copy of web2 is removed there.
    lab.restart_switch("h2").expect("switch");
    lab.restart_guard("h2").expect("guard");
    lab.restart_agent("h2").expect("agent");
    wait_for("h2 back", Duration::from_secs(30), || {
        (api(lab).host("h2").ok()?.status == vinfra_types::HostStatus::Connected).then_some(())
    });
    let stale = lab.vm_dir("h2", &ids["web2"]).expect("h2");
    wait_for(
        "h2's stale copy of web2 removed",
        Duration::from_secs(40),
        || (!stale.exists()).then_some(()),
    );
    assert!(lab.qemu_pids_on("h2", &ids["web2"]).unwrap().is_empty());
    assert_eq!(qemus_with(&ids["web2"]).len(), 1);
    assert!(qemus_with(&ids["batch"]).is_empty(), "batch stays stopped");
    let ev = events_text(lab);
    assert!(ev.contains("stale copy on h2"), "{ev}");

    // 4. h3 is cut off from the others (its datastore stays) with power-off: its guard stops
    //    its HA VMs, which then run elsewhere.
    let env = cli_env(lab);
    let out = vinfra(
        &["ha", "set", "--isolation-response", "power-off"],
        &refs(&env),
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_secs(2));
    let on_h3: Vec<String> = ["web1", "web2", "web3"]
        .into_iter()
        .filter(|n| vm(lab, n).host == "h3")
        .map(String::from)
        .collect();
    assert!(on_h3.contains(&"web3".to_string()));
    let ns = lab.state().hosts[2].namespace.clone();
    let cut = Instant::now();
    netns_exec(&ns, &["ip", "link", "set", "eth0", "down"]);
    for name in &on_h3 {
        let to = runs_elsewhere(lab, &ids[name], "h3", Duration::from_secs(60));
        println!(
            "isolation: {name} runs on {to} {:.1} s after h3 was cut off",
            cut.elapsed().as_secs_f64()
        );
    }
    let ev = events_text(lab);
    assert!(ev.contains("HA state isolated"), "{ev}");
    netns_exec(&ns, &["ip", "link", "set", "eth0", "up"]);
    wait_for("h3 back", Duration::from_secs(40), || {
        (api(lab).host("h3").ok()?.status == vinfra_types::HostStatus::Connected).then_some(())
    });
    for name in &on_h3 {
        let dir = lab.vm_dir("h3", &ids[name]).expect("h3");
        wait_for(
            &format!("h3's copy of {name} removed"),
            Duration::from_secs(40),
            || (!dir.exists()).then_some(()),
        );
        assert_eq!(qemus_with(&ids[name]).len(), 1, "{name}");
    }

    let report = checker.finish();
    println!(
        "checker: {} polls at 100 ms, {} with a VM running twice",
        report.polls,
        report.violations.len()
    );
    assert!(
        report.polls > 100,
        "the checker polled {} times",
        report.polls
    );
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}
