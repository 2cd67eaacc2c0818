//! HA in the lab under the faults `failover.rs` does not cover, with real guards, agents, QEMUs
//! and console; in each test a checker polls every 100 ms and fails it if any VM ever has two
//! QEMUs (or a must-anti-affinity pair shares a host):
//! - an agent killed for good while its QEMUs run: its host is isolated, and no copy of its VMs
//!   starts anywhere until they are fenced, by its guard once the agent's grace is over
//!   (`power-off`: the HA VMs' QEMUs are killed first, then they run elsewhere, the others run
//!   on) or by `vinfra host fence` (`keep-running`: nothing moves before);
//! - the `shutdown` isolation response: a host cut off from the others (its datastore still
//!   there) has its guard power its HA guests down through ACPI; they run elsewhere after that,
//!   its other VMs run on.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ha::{
    create, events_text, guard_status, ha_state, lease, messages_about, runs_elsewhere,
    set_isolation_response, set_link, started_s, uptime_s, wait_running, wait_shown_on, Checker,
};
use common::{
    api, can_run_labs, cli_env, qemus_with, refs, serial_text, start_lab, vinfra, vm, wait_for,
    BOOT_TIMEOUT,
};
use nix::sys::signal::Signal;
use vinfra_guard::ChildExit;
use vinfra_ha::LeaseState;
use vinfra_lab::process;
use vinfra_lab::Lab;
use vinfra_types::{HostStatus, PowerState};

/// `(name, id)` pairs of `ids`, for the checker.
fn pairs(ids: &BTreeMap<String, String>) -> Vec<(String, String)> {
    ids.iter().map(|(n, i)| (n.clone(), i.clone())).collect()
}

/// Waits until `host`'s HA state (`GET /ha`) is `state`.
fn wait_ha_state(lab: &Lab, host: &str, state: &str, timeout: Duration) {
    wait_for(&format!("{host} to be {state}"), timeout, || {
        (ha_state(lab, host) == state).then_some(())
    });
}

/// Asserts that `host`'s guard reaped QEMU `old` of VM `id`, ended as `exit`, before QEMU `new`
/// (which runs) started: the guard's record of the exit against `/proc`.
fn assert_reaped_before(lab: &Lab, host: &str, id: &str, old: u32, new: u32, exit: ChildExit) {
    let status = guard_status(lab, host);
    let now = uptime_s();
    let ended = status
        .exits
        .iter()
        .find(|e| e.vm.to_string() == id && e.pid == old)
        .unwrap_or_else(|| panic!("{host}'s guard has no exit of QEMU {old}: {status:?}"));
    assert_eq!(ended.exit, exit, "how QEMU {old} ended");
    let reaped = now - ended.age_ms as f64 / 1000.0;
    let started = started_s(new).unwrap_or_else(|| panic!("QEMU {new} is gone"));
    assert!(
        reaped < started,
        "QEMU {old} reaped at {reaped:.2} s, QEMU {new} started at {started:.2} s (since boot)"
    );
    println!(
        "{host}: QEMU {old} reaped {:.2} s before QEMU {new} started",
        started - reaped
    );
}

/// The HA-state events of `host`.
fn ha_state_events(lab: &Lab, host: &str) -> Vec<String> {
    messages_about(lab, host)
        .into_iter()
        .filter(|m| m.starts_with("HA state"))
        .collect()
}

/// 1. An agent killed for good. h1's guard has `power-off`, h2's `keep-running` (each guard
///    applies the response its agent last passed on: the cluster's setting changes between
///    the two kills, and h1's agent is not there to hear it). Both hosts are isolated, their
///    QEMUs run on and none of their VMs starts anywhere else for the agent's grace (60 s).
///    Then h1's guard kills the QEMU of its HA VM (not of the other), writes it stopped, and
///    only then it runs on h3; h2's guard does nothing, and h2's VMs stay until
///    `vinfra host fence h2`, after which its HA VM runs on h3. h1's agent, back, finds its
///    VM without HA running and the restarted one's leftovers gone.
#[test]
fn an_agent_killed_for_good_leaves_its_qemus_alone_until_they_are_fenced() {
    if !can_run_labs() {
        return;
    }
    let mut guard = start_lab("agentgone", 3);
    let lab = guard.lab_mut();
    let mut ids = BTreeMap::new();
    for (name, host, ha) in [
        ("web1", "h1", true),
        ("plain1", "h1", false),
        ("web2", "h2", true),
        ("plain2", "h2", false),
    ] {
        ids.insert(name.to_string(), create(lab, name, host, ha));
    }
    let qemu: BTreeMap<String, u32> = ids
        .iter()
        .map(|(n, id)| (n.clone(), wait_running(lab, n, id)))
        .collect();
    let checker = Checker::start(lab, pairs(&ids));

    set_isolation_response(lab, "power-off", &["h1", "h2", "h3"]);
    let h1_agent = lab.agent_pid("h1").expect("h1");
    lab.kill_agent("h1", Signal::SIGKILL)
        .expect("kill h1's agent");
    let killed1 = Instant::now();
    assert!(process::wait_gone(h1_agent, Duration::from_secs(5)));
    set_isolation_response(lab, "keep-running", &["h2", "h3"]);
    lab.kill_agent("h2", Signal::SIGKILL)
        .expect("kill h2's agent");
    let killed2 = Instant::now();

    // Within the grace: isolated, the same QEMUs, nothing elsewhere.
    wait_ha_state(lab, "h1", "isolated", Duration::from_secs(15));
    wait_ha_state(lab, "h2", "isolated", Duration::from_secs(15));
    let grace = vinfra_ha::HaTimings::default().agent_grace;
    std::thread::sleep(
        (killed1 + grace - Duration::from_secs(5)).saturating_duration_since(Instant::now()),
    );
    for (name, host) in [
        ("web1", "h1"),
        ("plain1", "h1"),
        ("web2", "h2"),
        ("plain2", "h2"),
    ] {
        assert_eq!(qemus_with(&ids[name]), vec![qemu[name]], "{name} 55 s on");
        assert_eq!(vm(lab, name).host, host, "{name}");
    }
    checker.assert_clean("within the agents' grace");
    // Isolated, agent absent, since a few seconds after the kill (not since the last second).
    let h1_ha = api(lab)
        .ha()
        .expect("GET /ha")
        .hosts
        .into_iter()
        .find(|h| h.name == "h1")
        .expect("h1");
    assert!(
        h1_ha.state == "isolated" && h1_ha.detail.contains("agent absent") && h1_ha.for_s >= 40,
        "{h1_ha:?}"
    );

    // power-off on h1: its guard kills web1's QEMU after the grace, then web1 runs on h3
    // (h2 is isolated too).
    assert!(
        process::wait_gone(qemu["web1"], Duration::from_secs(15)),
        "web1's QEMU on h1 still runs {:?} after its agent was killed",
        killed1.elapsed()
    );
    let gone = killed1.elapsed();
    println!(
        "h1's guard killed web1's QEMU {:.1} s after its agent was killed",
        gone.as_secs_f64()
    );
    // The grace counts from the agent's last pet, sent every second before it died.
    assert!(
        gone >= grace - Duration::from_secs(2),
        "web1's QEMU killed {gone:?} after the agent: before its grace ({grace:?}) was over"
    );
    let to = runs_elsewhere(lab, &ids["web1"], "h1", Duration::from_secs(30));
    assert_eq!(to, "h3", "h3 is the only host connected");
    let web1_new = wait_running(lab, "web1", &ids["web1"]);
    assert_reaped_before(
        lab,
        "h1",
        &ids["web1"],
        qemu["web1"],
        web1_new,
        ChildExit::Signal(9),
    );
    assert!(process::alive(qemu["plain1"]), "plain1 (no HA) runs on");
    let g1 = guard_status(lab, "h1");
    let iso = g1
        .isolation
        .clone()
        .expect("h1's guard applied its isolation response");
    assert_eq!(iso.response, vinfra_guard::IsolationResponse::PowerOff);
    assert_eq!(
        iso.vms.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        vec![ids["web1"].clone()]
    );
    match lease(lab, "h1").state {
        LeaseState::Stopped { vms } => assert_eq!(
            vms.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            vec![ids["web1"].clone()]
        ),
        other => panic!("h1's lease says {other:?}"),
    }
    wait_shown_on(lab, "web1", "h3");

    // keep-running on h2: past its agent's grace, its guard counts it isolated and does
    // nothing; its VMs stay until it is fenced.
    std::thread::sleep(
        (killed2 + grace + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    );
    let g2 = guard_status(lab, "h2");
    assert!(g2.isolated, "h2's guard: isolated past the grace: {g2:?}");
    assert!(
        g2.isolation.is_none(),
        "keep-running carries nothing out: {g2:?}"
    );
    assert!(
        g2.agent_absent_ms
            .is_some_and(|ms| ms >= grace.as_millis() as u64),
        "{g2:?}"
    );
    for name in ["web2", "plain2"] {
        assert_eq!(
            qemus_with(&ids[name]),
            vec![qemu[name]],
            "{name} after the grace"
        );
        assert_eq!(vm(lab, name).host, "h2", "{name}");
    }
    assert_eq!(ha_state(lab, "h2"), "isolated");
    checker.assert_clean("after the agents' grace");
    let env = cli_env(lab);
    let out = vinfra(&["host", "fence", "h2"], &refs(&env));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "host fence h2: {out:?}");
    assert!(said.starts_with("host h2 fenced (exit 0, "), "{said}");
    let fenced = Instant::now();
    let to = runs_elsewhere(lab, &ids["web2"], "h2", Duration::from_secs(30));
    println!(
        "web2 runs on {to} {:.1} s after h2 was fenced",
        fenced.elapsed().as_secs_f64()
    );
    assert_eq!(to, "h3");
    wait_shown_on(lab, "web2", "h3");
    assert!(qemus_with(&ids["plain2"]).is_empty(), "plain2 has no HA");
    assert_eq!(vm(lab, "plain2").host, "h2");

    // h1's agent back: plain1 re-adopted, web1's leftovers removed there.
    lab.restart_agent("h1").expect("restart h1's agent");
    wait_for("h1 back", Duration::from_secs(30), || {
        (api(lab).host("h1").ok()?.status == HostStatus::Connected).then_some(())
    });
    let dir = lab.vm_dir("h1", &ids["web1"]).expect("h1");
    wait_for("h1's copy of web1 removed", Duration::from_secs(30), || {
        (!dir.exists()).then_some(())
    });
    assert_eq!(wait_running(lab, "plain1", &ids["plain1"]), qemu["plain1"]);
    assert_eq!(vm(lab, "plain1").host, "h1");

    let report = checker.finish();
    println!(
        "checker: {} polls at 100 ms, {} violations",
        report.polls,
        report.violations.len()
    );
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    for name in ["web1", "web2"] {
        let (new, gap) = report.assert_replaced(name, qemu[name]);
        println!(
            "{name}: old QEMU last seen {:.1} s before the new one on {}",
            gap.as_secs_f64(),
            new.host
        );
    }
    // The events tell each step once.
    let ev = events_text(lab);
    let h1 = ha_state_events(lab, "h1");
    assert!(
        h1.first()
            .is_some_and(|m| m.starts_with("HA state isolated")),
        "{ev}"
    );
    assert!(h1.len() <= 3, "h1's HA state told once per change: {h1:#?}");
    let h2 = ha_state_events(lab, "h2");
    assert!(h2.iter().any(|m| m.starts_with("HA state fenced")), "{ev}");
    assert!(h2.len() <= 3, "h2's HA state told once per change: {h2:#?}");
    for (name, from) in [("web1", "h1"), ("web2", "h2")] {
        let restarts: Vec<String> = messages_about(lab, name)
            .into_iter()
            .filter(|m| m.contains("restarting on"))
            .collect();
        assert_eq!(restarts.len(), 1, "{name}: {restarts:?}");
        assert!(
            restarts[0].starts_with(&format!("host {from} ")),
            "{restarts:?}"
        );
    }
}

/// 4. The `shutdown` isolation response. h3 runs sd (HA, booted) and plain (no HA); its link
///    to the others is cut, its datastore stays. Its guard asks sd's guest to power down
///    (ACPI `system_powerdown`): the guest says so on its serial console and powers off, its
///    QEMU exits by itself well before the guard would kill it, the lease says sd stopped,
///    and only then sd runs on another host. plain runs on throughout on h3, and is still
///    there when the link is back; h3's copy of sd is removed then.
#[test]
fn the_shutdown_isolation_response_powers_the_ha_guests_down_before_they_run_elsewhere() {
    if !can_run_labs() {
        return;
    }
    let mut guard = start_lab("shutdown", 3);
    let lab = guard.lab_mut();
    let mut ids = BTreeMap::new();
    for (name, host, ha) in [
        ("sd", "h3", true),
        ("plain", "h3", false),
        ("other", "h1", true),
    ] {
        ids.insert(name.to_string(), create(lab, name, host, ha));
    }
    // The guest powers off on the power button once its init runs acpid, before its counter.
    lab.wait_console("sd", "VINFRA-COUNTER", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("sd did not boot: {e}"));
    let qemu: BTreeMap<String, u32> = ids
        .iter()
        .map(|(n, id)| (n.clone(), wait_running(lab, n, id)))
        .collect();
    set_isolation_response(lab, "shutdown", &["h1", "h2", "h3"]);
    let checker = Checker::start(lab, pairs(&ids));

    let cut = Instant::now();
    set_link(lab, "h3", false);
    assert!(
        process::wait_gone(qemu["sd"], Duration::from_secs(40)),
        "sd's QEMU still runs {:?} after h3 was cut off",
        cut.elapsed()
    );
    let down = cut.elapsed();
    println!(
        "sd's QEMU on h3 ended {:.1} s after h3 was cut off",
        down.as_secs_f64()
    );
    let serial = serial_text(lab, "h3", &ids["sd"]);
    assert!(
        serial.contains("VINFRA-GUEST POWERDOWN"),
        "sd's guest never saw the power button; its console ends: {}",
        &serial[serial.len().saturating_sub(400)..]
    );
    let to = runs_elsewhere(lab, &ids["sd"], "h3", Duration::from_secs(30));
    let sd_new = wait_running(lab, "sd", &ids["sd"]);
    println!(
        "sd runs on {to} {:.1} s after h3 was cut off",
        cut.elapsed().as_secs_f64()
    );
    assert_reaped_before(
        lab,
        "h3",
        &ids["sd"],
        qemu["sd"],
        sd_new,
        ChildExit::Code(0),
    );
    let g = guard_status(lab, "h3");
    let iso = g
        .isolation
        .clone()
        .expect("h3's guard applied its isolation response");
    assert_eq!(iso.response, vinfra_guard::IsolationResponse::Shutdown);
    assert_eq!(
        iso.vms.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        vec![ids["sd"].clone()]
    );
    match lease(lab, "h3").state {
        LeaseState::Stopped { vms } => assert_eq!(
            vms.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            vec![ids["sd"].clone()]
        ),
        other => panic!("h3's lease says {other:?}"),
    }
    assert_eq!(ha_state(lab, "h3"), "isolated", "plain still runs there");
    assert!(process::alive(qemu["plain"]), "plain (no HA) runs on");
    wait_shown_on(lab, "sd", &to);
    let ev = events_text(lab);
    assert!(
        messages_about(lab, "sd")
            .iter()
            .any(|m| m.starts_with("host h3 isolated") && m.contains("restarting on")),
        "{ev}"
    );

    // The link back: plain is still there, h3's copy of sd goes.
    set_link(lab, "h3", true);
    wait_for("h3 back", Duration::from_secs(40), || {
        (api(lab).host("h3").ok()?.status == HostStatus::Connected).then_some(())
    });
    let dir = lab.vm_dir("h3", &ids["sd"]).expect("h3");
    wait_for("h3's copy of sd removed", Duration::from_secs(40), || {
        (!dir.exists()).then_some(())
    });
    assert_eq!(wait_running(lab, "plain", &ids["plain"]), qemu["plain"]);
    assert_eq!(vm(lab, "plain").host, "h3");
    assert_eq!(vm(lab, "plain").state, PowerState::Running);
    assert_eq!(qemus_with(&ids["other"]), vec![qemu["other"]]);

    let report = checker.finish();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    report.assert_replaced("sd", qemu["sd"]);
    println!("checker: {} polls at 100 ms, no violation", report.polls);
}
