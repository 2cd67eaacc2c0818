//! The guard in the lab: every host runs `vinfra guard`, and its QEMUs are the guard's children.
//! A SIGKILLed agent leaves them running (same pid, re-adopted); a SIGKILLed guard takes them
//! with it within 2 s and the VM shows crashed; a new guard (a new incarnation) runs the VM
//! again. `vinfra host show` shows the guard.

mod common;

use std::time::{Duration, Instant};

use common::{api, can_run_labs, cli_env, qemus_with, refs, start_lab, vinfra, vm, wait_for};
use nix::sys::signal::Signal;
use vinfra_lab::Lab;
use vinfra_types::{GuardView, PowerState};

/// `PPid` of `/proc/<pid>/status`.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Waits until the VM runs with one QEMU and returns that QEMU's pid.
fn running_qemu(lab: &Lab, name: &str, id: &str) -> u32 {
    wait_for(
        &format!("{name} to run with one QEMU"),
        Duration::from_secs(60),
        || {
            let v = vm(lab, name);
            let pids = qemus_with(id);
            (v.state == PowerState::Running && pids.len() == 1).then(|| pids[0])
        },
    )
}

/// The guard of `host` as the host view shows it, once it is reported.
fn reported_guard(lab: &Lab, host: &str, incarnation_not: Option<u64>) -> GuardView {
    wait_for(
        &format!("{host}'s guard in the host view"),
        Duration::from_secs(20),
        || {
            let g = api(lab).host(host).ok()?.guard?;
            (Some(g.incarnation) != incarnation_not).then_some(g)
        },
    )
}

#[test]
fn qemus_run_under_their_hosts_guard_and_die_with_it() {
    if !can_run_labs() {
        return;
    }
    let began = Instant::now();
    let mut lab = start_lab("guard", 1);
    let up = began.elapsed();
    let created = lab
        .create_guest_vm("held", 128, Some("h1"))
        .unwrap_or_else(|e| panic!("create VM: {e}"));
    let id = created.id.to_string();
    let qemu = running_qemu(&lab, "held", &id);
    let guard = lab.guard_pid("h1").expect("guard pid");
    assert_eq!(parent_of(qemu), Some(guard), "QEMU's parent is h1's guard");

    let first = reported_guard(&lab, "h1", None);
    assert!(
        first.renewal_age_ms.is_some_and(|ms| ms < 3000),
        "{first:?}"
    );
    assert!(!first.isolated && first.self_fences == 0, "{first:?}");
    let env = cli_env(&lab);
    let out = vinfra(&["host", "show", "h1"], &refs(&env));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text.lines().find(|l| l.starts_with("Guard")).unwrap_or("");
    assert!(
        line.contains(&format!("incarnation {}", first.incarnation))
            && line.contains("lease renewed")
            && line.contains("ms ago"),
        "{text}"
    );

    // The agent killed and started again: the same QEMU, re-adopted, still the guard's child.
    let agent = lab.agent_pid("h1").expect("agent pid");
    lab.kill_agent("h1", Signal::SIGKILL).expect("kill agent");
    assert!(
        vinfra_lab::process::wait_gone(agent, Duration::from_secs(10)),
        "the agent is gone"
    );
    assert!(vinfra_lab::process::alive(qemu), "QEMU outlives its agent");
    lab.lab_mut().restart_agent("h1").expect("restart agent");
    lab.wait_hosts_connected(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(running_qemu(&lab, "held", &id), qemu, "re-adopted");
    assert_eq!(parent_of(qemu), Some(guard));

    // The guard killed: its QEMU goes with it, and the VM shows crashed.
    lab.kill_guard("h1", Signal::SIGKILL).expect("kill guard");
    let killed = Instant::now();
    while vinfra_lab::process::alive(qemu) {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "QEMU {qemu} still runs 2 s after its guard was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let qemu_gone = killed.elapsed();
    assert!(qemus_with(&id).is_empty(), "no QEMU left for the VM");
    wait_for("the VM to show crashed", Duration::from_secs(20), || {
        (vm(&lab, "held").state == PowerState::Crashed).then_some(())
    });

    // A new guard, a new incarnation; the VM starts again under it.
    lab.lab_mut().restart_guard("h1").expect("restart guard");
    let guard2 = lab.guard_pid("h1").expect("guard pid");
    assert_ne!(guard2, guard);
    api(&lab)
        .start_vm("held")
        .unwrap_or_else(|e| panic!("start VM: {e}"));
    let qemu2 = running_qemu(&lab, "held", &id);
    assert_ne!(qemu2, qemu);
    assert_eq!(
        parent_of(qemu2),
        Some(guard2),
        "the new QEMU is the new guard's child"
    );
    let second = reported_guard(&lab, "h1", Some(first.incarnation));
    assert!(second.renewal_age_ms.is_some(), "{second:?}");
    eprintln!(
        "lab up in {up:?}; QEMU gone {qemu_gone:?} after its guard's SIGKILL; incarnations {} then \
         {}; {:?} in all",
        first.incarnation,
        second.incarnation,
        began.elapsed()
    );
    lab.down();
}
