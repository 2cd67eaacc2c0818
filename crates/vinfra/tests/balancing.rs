//! Automatic balancing in the lab: on a small, crowded host a guest is made busy (a CPU loop,
//! `vinfra.burn=1`); with balancing automatic the console moves it by live migration to the
//! idle host, the guest goes on there, and the move is in the event history (kind `drs`) with
//! its reason.

mod common;

use std::time::Duration;

use common::{
    api, assert_one_line_error, can_run_labs, cli_env, last_tick, refs, vinfra, vm, wait_for,
    wait_tick_above, BOOT_TIMEOUT, VINFRA,
};
use vinfra_lab::{Lab, LabConfig};
use vinfra_types::balancing::{BalancingMode, DrsStatus};
use vinfra_types::{MigrationPhase, PowerState};

/// A lab named `drs-…`, torn down when the test ends, passed or not.
struct DrsLab(Option<Lab>);

impl DrsLab {
    fn up(tag: &str) -> DrsLab {
        let name = format!("drs-{tag}");
        let mut config = LabConfig::new(&name, VINFRA.into());
        config.hosts = 2;
        config.root = std::env::temp_dir().join(format!("vinfra-lab-{name}"));
        // Small hosts: two cores, so one busy guest makes its host the hot one.
        config.host_cores = Some(2);
        config.host_memory_mib = Some(2048);
        if config.root.exists() || !vinfra_lab::net::lab_namespaces(&name).is_empty() {
            if let Err(e) = Lab::destroy(&name, &config.root) {
                eprintln!("leftover lab '{name}': {e}");
            }
        }
        DrsLab(Some(
            Lab::up(config).unwrap_or_else(|e| panic!("lab up '{name}': {e}")),
        ))
    }
}

impl std::ops::Deref for DrsLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.0.as_ref().expect("lab present until drop")
    }
}

impl Drop for DrsLab {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            if std::thread::panicking() {
                let log = std::fs::read_to_string(lab.state().root.join("console.log"))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!(
                    "--- console.log (tail) ---\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                );
            }
            if let Err(e) = lab.down() {
                eprintln!("lab teardown: {e}");
            }
        }
    }
}

fn boot(lab: &Lab, name: &str, cmdline: &str, host: &str) {
    let mut req = Lab::guest_vm_request(name, 128, Some(host));
    if let vinfra_types::BootSource::Kernel { cmdline: c, .. } = &mut req.spec.boot {
        *c = cmdline.to_string();
    }
    api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create VM {name}: {e}"));
    lab.wait_console(name, "VINFRA-GUEST BOOTED", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("VM {name} did not boot: {e}"));
}

#[test]
fn a_busy_vm_on_a_crowded_host_is_moved_automatically_with_its_reason_recorded() {
    if !can_run_labs() {
        return;
    }
    let lab = DrsLab::up("busy");
    for name in ["idle-1", "idle-2"] {
        boot(&lab, name, "console=ttyS0 no_timer_check", "h1");
    }
    boot(
        &lab,
        "busy",
        "console=ttyS0 no_timer_check vinfra.burn=1",
        "h1",
    );
    lab.wait_console("busy", "VINFRA-GUEST BURN", BOOT_TIMEOUT)
        .expect("the busy loop runs");
    // The agent measures the busy guest's CPU.
    wait_for("CPU demand of the busy VM", Duration::from_secs(60), || {
        (vm(&lab, "busy").usage.cpu_cores >= 0.5).then_some(())
    });
    assert_eq!(vm(&lab, "busy").host, "h1");

    // Rules and settings through the CLI: bad input is one line with exit code 2.
    let env = cli_env(&lab);
    let out = vinfra(
        &[
            "rule",
            "create",
            "x",
            "--must",
            "--affinity",
            "--vms",
            "busy",
        ],
        &refs(&env),
    );
    assert_one_line_error(&out, 2, "two distinct VMs");
    let out = vinfra(&["drs", "set", "--level", "6"], &refs(&env));
    assert_one_line_error(&out, 2, "level");

    let client = api(&lab);
    let mut settings = client.settings().expect("settings");
    settings.balancing.mode = BalancingMode::Automatic;
    settings.balancing.interval_s = 5;
    client.put_settings(&settings).expect("settings stored");
    let out = vinfra(&["drs", "show", "-o", "json"], &refs(&env));
    assert!(out.status.success(), "{out:?}");
    let status: DrsStatus = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status.mode, BalancingMode::Automatic);
    assert_eq!(status.interval_s, 5);

    // The busy VM leaves h1 by live migration, without anyone asking.
    let done = wait_for("the busy VM to move", Duration::from_secs(120), || {
        client.migration("busy").ok().filter(|p| p.phase.is_final())
    });
    assert_eq!(done.phase, MigrationPhase::Completed, "{done:?}");
    assert_eq!(
        (done.source.as_str(), done.destination.as_str()),
        ("h1", "h2")
    );
    let moved = vm(&lab, "busy");
    assert_eq!(moved.host, "h2");
    assert_eq!(moved.state, PowerState::Running);
    // The guest goes on counting where it is now: it moved live, it did not reboot.
    let before = wait_for(
        "a counter line on the destination",
        Duration::from_secs(30),
        || last_tick(&lab, "busy"),
    )
    .n;
    wait_tick_above(&lab, "busy", before);

    // The event history says what was moved, where, and why.
    let event = wait_for("the drs event", Duration::from_secs(30), || {
        let events = client.events().ok()?;
        events.into_iter().find(|e| {
            e.kind == "drs"
                && e.object == "busy"
                && e.message.starts_with("moved busy from h1 to h2")
        })
    });
    assert!(event.message.contains("imbalance"), "{event:?}");
    let status = client.drs().expect("status");
    let plan = status.last_plan.expect("a plan");
    assert!(plan.imbalance_before >= plan.imbalance_after, "{plan:?}");
}
