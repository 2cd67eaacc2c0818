//! A host's out-of-band fence in the lab, through the command line: each lab host has a fence
//! command (`vinfra lab fence`, set when the lab comes up); `vinfra host fence h2 --force` kills
//! h2's agent, switch and QEMU (nothing is left in its network namespace), the event log tells of
//! it, `host show` has when; once h2's switch and agent are started again, the fence is
//! forgotten with an event. Before that, a VM's HA policy through `vinfra vm set` against real
//! VMs: what it takes, and the start-afters it refuses.

mod common;

use std::time::Duration;

use common::{
    api, assert_one_line_error, can_run_labs, cli_env, events_about, refs, start_lab, vinfra,
    wait_for,
};
use vinfra_lab::{net, process, Lab};
use vinfra_types::HostStatus;

/// Runs `vinfra args`, asserts it succeeded; returns its stdout.
fn ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = vinfra(args, env);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The value of `Key:` in the key/value block of a `show` output.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .trim()
        .to_string()
}

#[test]
fn host_fence_kills_everything_of_the_host_and_is_forgotten_when_it_is_back() {
    if !can_run_labs() {
        return;
    }
    let mut lab = start_lab("fence", 2);
    let env_owned = cli_env(&lab);
    let env = refs(&env_owned);
    let client = api(&lab);
    for h in ["h1", "h2"] {
        let host = client.host(h).expect("host");
        assert!(host.fence_command_set, "{h} got its fence command");
        assert_eq!(host.fenced_at, None);
    }

    // A running VM on h2 (its QEMU lives in h2's namespace) and a stopped one on h1.
    let vm = lab
        .create_guest_vm("fence-1", 128, Some("h2"))
        .expect("create fence-1");
    let id = vm.id.to_string();
    let mut db = Lab::guest_vm_request("fence-db", 128, Some("h1"));
    db.start = false;
    client.create_vm(&db).expect("create fence-db");

    // The HA policy through the CLI: set in part, shown, bad start-afters refused.
    let set = ok(
        &[
            "vm",
            "set",
            "fence-1",
            "--ha",
            "on",
            "--ha-priority",
            "high",
            "--ha-start-after",
            "fence-db",
        ],
        &env,
    );
    assert_eq!(
        set.trim(),
        "VM fence-1: HA on, priority high, start after fence-db"
    );
    let shown = ok(&["vm", "show", "fence-1"], &env);
    assert_eq!(
        field(&shown, "HA"),
        "on, priority high, start after fence-db"
    );
    let listed = ok(&["vm", "list"], &env);
    let row = listed
        .lines()
        .find(|l| l.starts_with("fence-1 "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.trim_end().ends_with("on, high"), "{row}");
    for (args, says) in [
        (
            vec!["vm", "set", "fence-db", "--ha-start-after", "fence-1"],
            "makes a start-after cycle: fence-db -> fence-1 -> fence-db",
        ),
        (
            vec!["vm", "set", "fence-1", "--ha-start-after", "fence-1"],
            "start_after names the VM itself",
        ),
        (
            vec!["vm", "set", "fence-1", "--ha-start-after", "ghost"],
            "VM 'ghost', which does not exist",
        ),
    ] {
        assert_one_line_error(&vinfra(&args, &env), 2, says);
    }
    let after = ok(&["vm", "set", "fence-1", "--ha-priority", "low"], &env);
    assert_eq!(
        after.trim(),
        "VM fence-1: HA on, priority low, start after fence-db"
    );

    // Everything of h2 runs in its namespace: agent, switch, the VM's QEMU.
    let qemu = wait_for("the QEMU of fence-1", Duration::from_secs(60), || {
        Some(lab.qemu_pids_on("h2", &id).expect("h2")).filter(|p| !p.is_empty())
    });
    let ns = lab.state().hosts[1].namespace.clone();
    let agent = lab.agent_pid("h2").expect("agent pid");
    let switch = lab.switch_pid("h2").expect("switch pid");
    let before = net::pids(&ns).expect("ip netns pids");
    let h2_processes: Vec<u32> = [agent, switch].into_iter().chain(qemu).collect();
    for pid in &h2_processes {
        assert!(before.contains(pid), "{pid} in {ns}: {before:?}");
    }
    let h1_agent = lab.agent_pid("h1").expect("h1 agent");

    // Connected: refused without --force, nothing touched.
    assert_one_line_error(&vinfra(&["host", "fence", "h2"], &env), 2, "is connected");
    assert!(process::alive(agent), "the agent runs on");
    assert_eq!(client.host("h2").expect("h2").fenced_at, None);

    let fenced = ok(&["host", "fence", "h2", "--force"], &env);
    assert!(fenced.starts_with("host h2 fenced (exit 0, "), "{fenced}");
    assert!(
        fenced.contains("host h2 of lab it-fence fenced: "),
        "the lab's output comes back: {fenced}"
    );
    for pid in &h2_processes {
        assert!(
            process::wait_gone(*pid, Duration::from_secs(10)),
            "{pid} of h2 is gone"
        );
    }
    assert_eq!(net::pids(&ns).expect("ip netns pids"), Vec::<u32>::new());
    assert!(process::alive(h1_agent), "h1 is not touched");

    let told: Vec<String> = events_about(&lab, "h2")
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert!(
        told.contains(
            &"fencing host h2: running its fence command (asked by the operator, with force)"
                .to_string()
        ),
        "{told:?}"
    );
    assert!(
        told.iter()
            .any(|m| m.starts_with("host h2 fenced (exit 0, ")),
        "{told:?}"
    );
    let at = client.host("h2").expect("h2").fenced_at.expect("fenced_at");
    let shown = ok(&["host", "show", "h2"], &env);
    assert!(field(&shown, "Fenced").ends_with(" UTC"), "{shown}");
    assert_eq!(field(&shown, "Fence command"), "set");
    assert!(at > 0);

    // h2 comes back: its switch and agent start again; the fence is forgotten, with an event.
    wait_for("h2 to be disconnected", Duration::from_secs(30), || {
        (client.host("h2").ok()?.status == HostStatus::Disconnected).then_some(())
    });
    lab.lab_mut().restart_switch("h2").expect("restart switch");
    lab.lab_mut().restart_agent("h2").expect("restart agent");
    lab.wait_hosts_connected(Duration::from_secs(90))
        .expect("h2 connects again");
    wait_for("fenced_at to be cleared", Duration::from_secs(30), || {
        client.host("h2").ok()?.fenced_at.is_none().then_some(())
    });
    assert!(events_about(&lab, "h2")
        .iter()
        .any(|e| e.message == "host h2 is back after being fenced"));
    assert_eq!(field(&ok(&["host", "show", "h2"], &env), "Fenced"), "no");
}
