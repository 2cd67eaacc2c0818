//! A VM's life cycle with real QEMU in the lab, through the `vinfra` binary: a reboot resets the
//! guest inside the same QEMU (it boots again and counts from 1); a stop presses the guest's ACPI
//! power button, a guest that powers off goes at once, and a guest that ignores the button
//! (`vinfra.ignore_acpi=1`) is forced off when the stop's timeout has run out, not before and
//! not much later: its request is answered at once with a task, which ends `succeeded` saying
//! so.

mod common;

use std::time::{Duration, Instant};

use common::{
    boot_guest, boot_guest_with, can_run_labs, cli_env, counters, events_about, qemus_with, refs,
    serial_text, start_lab, vinfra, vm, wait_for, wait_tick_above, BOOT_TIMEOUT,
};
use vinfra_lab::Lab;
use vinfra_types::task::{Task, TaskKind, TaskState};
use vinfra_types::{PowerState, VmSummary};

const BOOTED: &str = "VINFRA-GUEST BOOTED";

/// The one QEMU of VM `id`, which runs for `host`.
fn one_qemu(lab: &Lab, host: &str, id: &str) -> u32 {
    let pids = qemus_with(id);
    assert_eq!(pids.len(), 1, "one QEMU for VM {id}: {pids:?}");
    assert_eq!(
        lab.qemu_pids_on(host, id).expect("host"),
        pids,
        "the QEMU of VM {id} runs for {host}"
    );
    pids[0]
}

/// `vinfra --output json vm stop NAME ARGS…`: the VM as the stop left it, and how long it took.
fn cli_stop(lab: &Lab, name: &str, args: &[&str]) -> (VmSummary, Duration) {
    let env = cli_env(lab);
    let mut argv = vec!["--output", "json", "vm", "stop", name];
    argv.extend_from_slice(args);
    let started = Instant::now();
    let out = vinfra(&argv, &refs(&env));
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "vinfra vm stop {name} {args:?} failed after {took:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: VmSummary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "vm stop's JSON: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (after, took)
}

/// Asserts that the last event about `name` is the stop, worded `message`.
fn assert_stop_event(lab: &Lab, name: &str, message: &str) {
    let events = events_about(lab, name);
    let last = events.last().expect("events about the VM");
    assert!(
        last.kind == "vm" && last.message == message,
        "the last event about {name} is {message:?}: {events:?}"
    );
}

#[test]
fn reboot_resets_the_guest_inside_the_same_qemu() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("reboot", 1);
    let id = boot_guest(&lab, "rb-1", 128, Some("h1")).id.to_string();
    let pid = one_qemu(&lab, "h1", &id);
    let before = wait_tick_above(&lab, "rb-1", 2);

    let env = cli_env(&lab);
    let out = vinfra(&["vm", "reboot", "rb-1"], &refs(&env));
    assert!(
        out.status.success(),
        "vinfra vm reboot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("VM rb-1 rebooting"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The guest boots a second time and counts again from 1.
    let text = wait_for("rb-1 to boot again and count", BOOT_TIMEOUT, || {
        let text = serial_text(&lab, "h1", &id);
        let (second, _) = text.match_indices(BOOTED).nth(1)?;
        (counters(&text[second..]).len() >= 3).then_some(text)
    });
    assert_eq!(
        text.matches(BOOTED).count(),
        2,
        "the guest booted twice: {text}"
    );
    let second = text.match_indices(BOOTED).nth(1).expect("second boot").0;
    let (first_run, second_run) = (counters(&text[..second]), counters(&text[second..]));
    let last_before = *first_run.last().expect("counters before the reboot");
    assert!(
        last_before.n >= before.n,
        "the first run counted up to {last_before:?} (the API showed {before:?})"
    );
    common::assert_counting(&first_run, "before the reboot");
    assert_eq!(
        second_run[0].n, 1,
        "the counter restarts after the reboot: {second_run:?}"
    );
    common::assert_counting(&second_run, "after the reboot");

    // A reset, not a new process: the same QEMU, and the VM runs.
    assert_eq!(
        qemus_with(&id),
        vec![pid],
        "the QEMU of rb-1 after the reboot"
    );
    let after = vm(&lab, "rb-1");
    assert_eq!(
        (after.state, after.desired, after.host.as_str()),
        (PowerState::Running, PowerState::Running, "h1"),
        "rb-1 after the reboot: {after:?}"
    );
    let events = events_about(&lab, "rb-1");
    assert!(
        events.iter().any(|e| e.message == "rebooted"),
        "an event records the reboot: {events:?}"
    );
}

#[test]
fn stop_forces_a_guest_that_ignores_the_power_button_when_the_timeout_ends() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("stop", 1);
    let deaf = boot_guest_with(&lab, "st-deaf", 128, Some("h1"), "vinfra.ignore_acpi=1");
    let polite = boot_guest(&lab, "st-polite", 128, Some("h1"));
    let (deaf_id, polite_id) = (deaf.id.to_string(), polite.id.to_string());
    let deaf_pid = one_qemu(&lab, "h1", &deaf_id);
    let polite_pid = one_qemu(&lab, "h1", &polite_id);
    // Both count, and st-deaf's init took the option (an image built before it would not).
    wait_tick_above(&lab, "st-deaf", 1);
    wait_tick_above(&lab, "st-polite", 1);
    assert!(
        serial_text(&lab, "h1", &deaf_id).contains("VINFRA-GUEST IGNORES ACPI"),
        "st-deaf's init ignores the power button"
    );

    // The guest sees the button and ignores it; the stop waits out its 3 s, then forces. The
    // request answers at once with its task (`--no-wait` prints it), which `task wait` follows
    // to the forced stop.
    let timeout = Duration::from_secs(3);
    let env = cli_env(&lab);
    let started = Instant::now();
    let out = vinfra(
        &[
            "--output",
            "json",
            "vm",
            "stop",
            "st-deaf",
            "--timeout",
            "3s",
            "--no-wait",
        ],
        &refs(&env),
    );
    let answered = started.elapsed();
    assert!(
        out.status.success(),
        "vm stop --no-wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task: Task = serde_json::from_slice(&out.stdout).expect("the task's JSON");
    eprintln!("the stop of st-deaf was answered after {answered:?}: {task:?}");
    assert_eq!(
        (task.kind, task.state, task.target.as_str()),
        (TaskKind::VmStop, TaskState::Running, "st-deaf"),
        "{task:?}"
    );
    assert!(
        answered < timeout,
        "the stop was answered after {answered:?}, not at once"
    );
    let out = vinfra(
        &["--output", "json", "task", "wait", &task.id.to_string()],
        &refs(&env),
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "task wait {}: {}",
        task.id,
        String::from_utf8_lossy(&out.stderr)
    );
    let ended: Task = serde_json::from_slice(&out.stdout).expect("the ended task's JSON");
    assert_eq!(ended.state, TaskState::Succeeded, "{ended:?}");
    assert_eq!(
        ended.message.as_deref(),
        Some("powered off by force: the guest did not shut down within 3 s"),
        "{ended:?}"
    );
    let after: VmSummary =
        serde_json::from_value(ended.result.clone().expect("the VM")).expect("a VM");
    eprintln!("stopping st-deaf took {took:?}");
    assert!(
        took >= timeout,
        "the stop returned after {took:?}, before its timeout of {timeout:?}"
    );
    // Well under the default timeout of 30 s: the stop took the 3 s asked for.
    assert!(
        took < timeout + Duration::from_secs(15),
        "the stop returned only after {took:?} (timeout {timeout:?})"
    );
    assert_eq!(
        (after.state, after.desired),
        (PowerState::Stopped, PowerState::Stopped),
        "st-deaf as the stop answered: {after:?}"
    );
    assert!(
        !vinfra_lab::process::alive(deaf_pid),
        "st-deaf's QEMU (pid {deaf_pid}) outlived the stop"
    );
    assert!(
        qemus_with(&deaf_id).is_empty(),
        "no QEMU left for st-deaf: {:?}",
        qemus_with(&deaf_id)
    );
    let text = serial_text(&lab, "h1", &deaf_id);
    let pressed = text
        .find("VINFRA-GUEST POWER BUTTON IGNORED")
        .unwrap_or_else(|| panic!("the power button never reached st-deaf: {text}"));
    assert!(
        !text.contains("VINFRA-GUEST POWERDOWN"),
        "st-deaf powered off by itself: {text}"
    );
    // It ran on between the button and the kill.
    let ran_on = counters(&text[pressed..]);
    assert!(
        ran_on.len() >= 2,
        "st-deaf counted {} times after ignoring the button: {text}",
        ran_on.len()
    );
    assert_eq!(vm(&lab, "st-deaf").state, PowerState::Stopped);
    assert_stop_event(
        &lab,
        "st-deaf",
        "powered off by force: the guest did not shut down within 3 s",
    );

    // The guest that obeys the button powers itself off, long before the timeout.
    let (after, took) = cli_stop(&lab, "st-polite", &["--timeout", "60s"]);
    eprintln!("stopping st-polite took {took:?}");
    assert!(
        took < Duration::from_secs(30),
        "a guest that powers off took {took:?} to stop"
    );
    assert_eq!(
        (after.state, after.desired),
        (PowerState::Stopped, PowerState::Stopped),
        "st-polite as the stop answered: {after:?}"
    );
    assert!(
        !vinfra_lab::process::alive(polite_pid),
        "st-polite's QEMU (pid {polite_pid}) outlived the stop"
    );
    assert!(
        qemus_with(&polite_id).is_empty(),
        "no QEMU left for st-polite"
    );
    let text = serial_text(&lab, "h1", &polite_id);
    assert!(
        text.contains("VINFRA-GUEST POWERDOWN"),
        "st-polite powered itself off: {text}"
    );
    assert_stop_event(&lab, "st-polite", "stopped");
}
