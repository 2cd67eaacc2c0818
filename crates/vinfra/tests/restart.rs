//! Restarts in the lab: a SIGKILLed agent leaves its VMs running and the restarted agent re-adopts
//! them; a restarted console keeps every VM, host and setting and disturbs no VM.

mod common;

use std::time::{Duration, Instant};

use common::{
    api, assert_counting, boot_guest, can_run_labs, counters, events_about, qemus_with, serial_log,
    start_lab, vm, vms, wait_for, wait_tick_above,
};
use nix::sys::signal::Signal;
use vinfra_lab::Lab;
use vinfra_types::api::UpdateHostRequest;
use vinfra_types::{AllocationRatios, HostStatus, HostSummary, PowerState, VmSummary};

/// The last counter in the serial log file of VM `id` on `host`.
fn file_tick(lab: &Lab, host: &str, id: &str) -> u64 {
    let text = std::fs::read_to_string(serial_log(lab, host, id)).unwrap_or_default();
    counters(&text).last().map_or(0, |t| t.n)
}

/// Asserts the guest booted once and counted without a gap.
fn assert_undisturbed(lab: &Lab, host: &str, id: &str) {
    let text = std::fs::read_to_string(serial_log(lab, host, id)).expect("serial log");
    assert_eq!(
        text.matches("VINFRA-GUEST BOOTED").count(),
        1,
        "VM {id} booted once"
    );
    assert_counting(&counters(&text), "serial log");
}

fn host(lab: &Lab, name: &str) -> HostSummary {
    api(lab)
        .host(name)
        .unwrap_or_else(|e| panic!("GET host {name}: {e}"))
}

#[test]
fn killed_agent_leaves_vms_running_and_readopts_them() {
    if !can_run_labs() {
        return;
    }
    let mut lab = start_lab("agent", 2);
    let guests: Vec<VmSummary> = ["keep-1", "keep-2"]
        .iter()
        .map(|n| boot_guest(&lab, n, 128, Some("h1")))
        .collect();
    let pids: Vec<Vec<u32>> = guests
        .iter()
        .map(|g| qemus_with(&g.id.to_string()))
        .collect();
    for (g, p) in guests.iter().zip(&pids) {
        assert_eq!(p.len(), 1, "one QEMU for {}: {p:?}", g.name);
    }

    let agent = lab.agent_pid("h1").expect("agent pid");
    lab.kill_agent("h1", Signal::SIGKILL).expect("kill agent");
    assert!(
        vinfra_lab::process::wait_gone(agent, Duration::from_secs(10)),
        "the agent is gone"
    );
    wait_for("h1 to be disconnected", Duration::from_secs(30), || {
        (host(&lab, "h1").status == HostStatus::Disconnected).then_some(())
    });
    // Without their agent the guests run on: same QEMU, counters advance.
    for (g, p) in guests.iter().zip(&pids) {
        let id = g.id.to_string();
        assert_eq!(
            &qemus_with(&id),
            p,
            "QEMU of {} while the agent is down",
            g.name
        );
        let n = file_tick(&lab, "h1", &id);
        wait_for(
            &format!("{} to count on without its agent", g.name),
            Duration::from_secs(30),
            || (file_tick(&lab, "h1", &id) > n + 2).then_some(()),
        );
    }

    lab.lab_mut().restart_agent("h1").expect("restart agent");
    lab.wait_hosts_connected(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    for (g, p) in guests.iter().zip(&pids) {
        let id = g.id.to_string();
        assert_eq!(&qemus_with(&id), p, "QEMU of {} after re-adoption", g.name);
        let after = wait_for(
            &format!("{} to be reported running with its usage", g.name),
            Duration::from_secs(30),
            || {
                let v = vm(&lab, &g.name);
                (v.state == PowerState::Running && v.usage.rss_mib > 0 && v.uptime_s > 0)
                    .then_some(v)
            },
        );
        assert_eq!(after.host, "h1");
        assert_eq!(after.id, g.id);
        let t = common::last_tick(&lab, &g.name).expect("counter through the API");
        wait_tick_above(&lab, &g.name, t.n + 1);
        assert_undisturbed(&lab, "h1", &id);
    }
    let h1 = host(&lab, "h1");
    assert_eq!(h1.vm_count, 2, "VMs on h1: {h1:?}");
}

#[test]
fn restarted_console_keeps_vms_hosts_and_settings() {
    if !can_run_labs() {
        return;
    }
    let mut lab = start_lab("cons", 2);
    let client = api(&lab);

    // Settings and host overrides that differ from the defaults.
    let cluster_ratios = AllocationRatios {
        cpu: 3.0,
        memory: 1.7,
    };
    let mut settings = client.settings().expect("settings");
    settings.ratios = cluster_ratios;
    client.put_settings(&settings).expect("PUT settings");
    let override_h2 = AllocationRatios {
        cpu: 2.0,
        memory: 1.3,
    };
    client
        .update_host(
            "h2",
            &UpdateHostRequest {
                ratios: Some(Some(override_h2)),
                maintenance: None,
                fence_command: None,
            },
        )
        .expect("PATCH h2");

    let run1 = boot_guest(&lab, "run-1", 128, Some("h1"));
    let run2 = boot_guest(&lab, "run-2", 128, Some("h2"));
    let mut off = Lab::guest_vm_request("off-1", 128, Some("h2"));
    off.start = false;
    client.create_vm(&off).expect("create off-1");
    // Maintenance on: its evacuation's task waits (balancing is off), not followed here.
    client
        .update_host_task(
            "h1",
            &UpdateHostRequest {
                ratios: None,
                maintenance: Some(true),
                fence_command: None,
            },
        )
        .expect("PATCH h1 maintenance");

    let settings_before = client.settings().expect("settings");
    let hosts_before = client.hosts().expect("hosts");
    let mut vms_before = vms(&lab);
    vms_before.sort_by(|a, b| a.name.cmp(&b.name));
    let pids_before: Vec<Vec<u32>> = vms_before
        .iter()
        .map(|v| qemus_with(&v.id.to_string()))
        .collect();
    assert_eq!(
        pids_before.iter().map(Vec::len).sum::<usize>(),
        2,
        "two QEMUs"
    );

    let ha_events = |lab: &Lab| -> Vec<String> {
        ["h1", "h2"]
            .iter()
            .flat_map(|h| events_about(lab, h))
            .filter(|e| e.message.starts_with("HA state"))
            .map(|e| format!("{}: {}", e.object, e.message))
            .collect()
    };
    let ha_before = ha_events(&lab);
    let old = lab.console_pid();
    let restarted = Instant::now();
    lab.lab_mut().restart_console().expect("restart console");
    assert_ne!(lab.console_pid(), old, "a new console process");
    lab.wait_hosts_connected(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let client = api(&lab);

    // Settings, explicitly and as a whole.
    let settings_after = client.settings().expect("settings");
    assert_eq!(
        settings_after.ratios, cluster_ratios,
        "cluster ratios after the restart"
    );
    assert_eq!(
        settings_after, settings_before,
        "settings after the restart"
    );

    // Hosts: overrides and maintenance.
    let hosts_after = client.hosts().expect("hosts");
    let names = |hs: &[HostSummary]| hs.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&hosts_after), names(&hosts_before), "hosts");
    let h1 = host(&lab, "h1");
    let h2 = host(&lab, "h2");
    assert_eq!(h2.ratio_override, Some(override_h2), "h2 ratio override");
    assert_eq!(h2.ratios, override_h2, "h2 ratios in force");
    assert_eq!(h1.ratio_override, None, "h1 has no override");
    assert_eq!(h1.ratios, cluster_ratios, "h1 uses the cluster ratios");
    assert!(h1.maintenance, "h1 is still in maintenance");
    assert!(!h2.maintenance, "h2 is not in maintenance");
    for (a, b) in hosts_after.iter().zip(&hosts_before) {
        assert_eq!(a.address, b.address, "address of {}", a.name);
        assert_eq!(a.capacity, b.capacity, "capacity of {}", a.name);
        assert_eq!(
            a.allocated_memory_mib, b.allocated_memory_mib,
            "allocation of {}",
            a.name
        );
    }

    // VMs: same records, same QEMUs, undisturbed guests.
    let mut vms_after = vms(&lab);
    vms_after.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(vms_after.len(), vms_before.len(), "VM count");
    for (a, b) in vms_after.iter().zip(&vms_before) {
        assert_eq!(
            (&a.name, a.id, &a.host, a.desired, &a.spec, a.created_at),
            (&b.name, b.id, &b.host, b.desired, &b.spec, b.created_at),
            "VM {} after the restart",
            b.name
        );
    }
    for (v, p) in vms_before.iter().zip(&pids_before) {
        assert_eq!(
            &qemus_with(&v.id.to_string()),
            p,
            "QEMU of {} after the restart",
            v.name
        );
    }
    for (g, host) in [(&run1, "h1"), (&run2, "h2")] {
        wait_for(
            &format!("{} to be reported running", g.name),
            Duration::from_secs(30),
            || (vm(&lab, &g.name).state == PowerState::Running).then_some(()),
        );
        let t = common::last_tick(&lab, &g.name).expect("counter");
        wait_tick_above(&lab, &g.name, t.n + 1);
        assert_undisturbed(&lab, host, &g.id.to_string());
    }
    let off_after = vm(&lab, "off-1");
    assert_eq!(off_after.state, PowerState::Stopped, "off-1 stays stopped");

    // Hosts that reconnect to a restarted console were never lost: no HA state change is
    // reported for them, also once the console's start-up grace (9 s) is over.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(restarted.elapsed()));
    let ha_after = ha_events(&lab);
    let new_events: Vec<&String> = ha_after.iter().filter(|e| !ha_before.contains(e)).collect();
    assert!(
        new_events.is_empty(),
        "HA state events after a console restart: {new_events:?}"
    );
}
