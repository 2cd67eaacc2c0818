//! HA in the lab under the faults `failover.rs` does not cover, with real guards, agents, QEMUs
//! and console; in each test a checker polls every 100 ms and fails it if any VM ever has two
//! QEMUs (or a must-anti-affinity pair shares a host):
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
use common::{api, can_run_labs, qemus_with, serial_text, start_lab, vm, wait_for, BOOT_TIMEOUT};
use vinfra_guard::ChildExit;
use vinfra_ha::LeaseState;
use vinfra_lab::process;
use vinfra_lab::Lab;
use vinfra_types::{HostStatus, PowerState};

/// `(name, id)` pairs of `ids`, for the checker.
fn pairs(ids: &BTreeMap<String, String>) -> Vec<(String, String)> {
    ids.iter().map(|(n, i)| (n.clone(), i.clone())).collect()
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
