//! HA in the lab under the faults `failover.rs` does not cover, with real guards, agents, QEMUs
//! and console; in each test a checker polls every 100 ms and fails it if any VM ever has two
//! QEMUs (or a must-anti-affinity pair shares a host):
//! - an agent killed for good while its QEMUs run: its host is isolated, and no copy of its VMs
//!   starts anywhere until they are fenced, by its guard once the agent's grace is over
//!   (`power-off`: the HA VMs' QEMUs are killed first, then they run elsewhere, the others run
//!   on) or by `vinfra host fence` (`keep-running`: nothing moves before);
//! - the console killed (`kill -9`) in the middle of a failover and started again: every HA VM
//!   of the dead host runs exactly once elsewhere;
//! - admission control refusing a power-on that breaks the reserve (API 409 `ha-reserve`, one
//!   line from the CLI, nothing left behind), then a must-anti-affinity pair kept apart through
//!   a failover that would otherwise have put them together;
//! - the `shutdown` isolation response: a host cut off from the others (its datastore still
//!   there) has its guard power its HA guests down through ACPI; they run elsewhere after that,
//!   its other VMs run on.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ha::{
    create, create_sized, events_text, guard_status, ha_state, lease, messages_about,
    runs_elsewhere, set_isolation_response, set_link, started_s, uptime_s, wait_running,
    wait_shown_on, Checker,
};
use common::{
    api, assert_one_line_error, can_run_labs, cli_env, dir_entries, qemus_with, refs, serial_text,
    start_lab, start_lab_with, vinfra, vm, wait_for, BOOT_TIMEOUT,
};
use nix::sys::signal::Signal;
use vinfra_guard::ChildExit;
use vinfra_ha::LeaseState;
use vinfra_lab::process;
use vinfra_lab::Lab;
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
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
    // What a slow start told (an agent that connected late: isolated, then connected) is not
    // this test's business: only the HA states from here on count.
    let told_before: BTreeMap<&str, usize> = ["h1", "h2"]
        .into_iter()
        .map(|h| (h, ha_state_events(lab, h).len()))
        .collect();
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
    let h1 = ha_state_events(lab, "h1").split_off(told_before["h1"]);
    assert!(
        h1.first()
            .is_some_and(|m| m.starts_with("HA state isolated")),
        "{ev}"
    );
    assert!(h1.len() <= 3, "h1's HA state told once per change: {h1:#?}");
    let h2 = ha_state_events(lab, "h2").split_off(told_before["h2"]);
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

/// 2. The console killed in the middle of a failover. h2 dies with three HA VMs that start
///    one after the other (db, then app after db, then web after app) and one without HA; the
///    console is killed with `kill -9` as soon as db's new QEMU exists (app and web still wait
///    on h2's record) and started again. Every HA VM of h2 ends up running exactly once on
///    another host, each restarted once, the VM without HA nowhere.
#[test]
fn a_console_killed_in_the_middle_of_a_failover_finishes_it_once_restarted() {
    if !can_run_labs() {
        return;
    }
    let mut guard = start_lab("conskill", 3);
    let lab = guard.lab_mut();
    let mut ids = BTreeMap::new();
    let mut qemu = BTreeMap::new();
    for (name, host, ha, after) in [
        ("other", "h1", true, None),
        ("db", "h2", true, None),
        ("app", "h2", true, Some("db")),
        ("web", "h2", true, Some("app")),
        ("batch", "h2", false, None),
    ] {
        let mut req = Lab::guest_vm_request(name, 128, Some(host));
        req.spec.ha.enabled = ha;
        req.spec.ha.start_after = after.map(str::to_string);
        let v = api(lab)
            .create_vm(&req)
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let id = v.id.to_string();
        qemu.insert(name.to_string(), wait_running(lab, name, &id));
        ids.insert(name.to_string(), id);
    }
    let checker = Checker::start(lab, pairs(&ids));

    let killed = Instant::now();
    lab.fence("h2").expect("kill everything of h2");
    // The console is killed the moment db's new QEMU exists (h2's QEMUs are gone, so any QEMU
    // of db is the new one): app waits until db runs, web until app runs, so neither can have
    // started yet. Watching /proc, not the API, keeps a loaded machine from letting the
    // failover run further before the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    while qemus_with(&ids["db"]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the console never restarted db elsewhere"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.kill_console(Signal::SIGKILL).expect("kill the console");
    let console_killed = killed.elapsed();
    let started: Vec<&str> = ["app", "web"]
        .into_iter()
        .filter(|n| !qemus_with(&ids[*n]).is_empty())
        .collect();
    println!(
        "console killed {:.1} s after h2 died, as db's new QEMU started",
        console_killed.as_secs_f64(),
    );
    assert!(
        started.is_empty(),
        "app and web must not run yet when the console dies: {started:?} do"
    );
    lab.restart_console().expect("console back");

    for name in ["db", "app", "web"] {
        let to = runs_elsewhere(lab, &ids[name], "h2", Duration::from_secs(90));
        wait_shown_on(lab, name, &to);
        println!(
            "{name} runs on {to} {:.1} s after h2 died",
            killed.elapsed().as_secs_f64()
        );
    }
    assert!(qemus_with(&ids["batch"]).is_empty(), "batch has no HA");
    assert_eq!(vm(lab, "batch").host, "h2");
    assert_eq!(qemus_with(&ids["other"]), vec![qemu["other"]]);
    // A little longer: nothing starts twice once the console settles.
    std::thread::sleep(Duration::from_secs(5));

    let report = checker.finish();
    println!(
        "checker: {} polls at 100 ms, {} violations",
        report.polls,
        report.violations.len()
    );
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    for name in ["db", "app", "web"] {
        report.assert_replaced(name, qemu[name]);
    }
    let ev = events_text(lab);
    println!("events:\n{ev}");
    for name in ["db", "app", "web"] {
        let restarts: Vec<String> = messages_about(lab, name)
            .into_iter()
            .filter(|m| m.contains("restarting on"))
            .collect();
        assert_eq!(restarts.len(), 1, "{name} restarted once: {ev}");
        assert!(restarts[0].starts_with("host h2 failed"), "{restarts:?}");
    }
    assert!(
        ha_state_events(lab, "h2")
            .iter()
            .any(|m| m.starts_with("HA state failed")),
        "{ev}"
    );
    assert!(
        messages_about(lab, "batch")
            .iter()
            .all(|m| !m.contains("restart")),
        "{ev}"
    );
}

/// 3. Admission control, then a must-anti-affinity pair through a failover. Three hosts of
///    1 GiB each: h1 runs pa (HA, 128 MiB), h2 pb (HA, 128 MiB, kept apart from pa by a must
///    rule) and batch (256 MiB), h3 filler (768 MiB). `big` (HA, 768 MiB) on h1 fits there but
///    could not restart anywhere if h1 failed: the API refuses it with 409 `ha-reserve`
///    naming the reserve and the shortfall, the CLI with one line, and nothing of it is left;
///    the same VM without HA is admitted. Then h1 dies: pa restarts on h3, not on h2 where
///    there is the most room, because pb runs there.
#[test]
fn admission_refuses_a_power_on_that_breaks_the_reserve_and_a_must_pair_stays_apart() {
    if !can_run_labs() {
        return;
    }
    let mut guard = start_lab_with("admission", 3, |c| {
        c.host_memory_mib = Some(1024);
        c.host_cores = Some(4);
    });
    let lab = guard.lab_mut();
    let mut ids = BTreeMap::new();
    for (name, host, ha, mib) in [
        ("filler", "h3", false, 768),
        ("batch", "h2", false, 256),
        ("pa", "h1", true, 128),
        ("pb", "h2", true, 128),
    ] {
        ids.insert(name.to_string(), create_sized(lab, name, host, ha, mib));
    }
    let client = api(lab);
    client
        .create_rule(&PlacementRule {
            name: "pa-pb-apart".into(),
            strength: RuleStrength::Must,
            kind: RuleKind::AntiAffinity,
            vms: vec!["pa".into(), "pb".into()],
            hosts: Vec::new(),
        })
        .expect("create the rule");
    let checker = Checker::apart(lab, pairs(&ids), vec![("pa".into(), "pb".into())]);

    // The refusal, through the API and the CLI: nothing is left of big.
    let names_before: Vec<String> = client
        .vms()
        .expect("vms")
        .into_iter()
        .map(|v| v.name)
        .collect();
    let ds_before = dir_entries(&lab.datastore().join("vms"));
    let agent_dirs = |lab: &Lab| -> Vec<Vec<String>> {
        lab.host_names()
            .iter()
            .map(|h| dir_entries(&lab.host_data_dir(h).expect("host").join("vms")))
            .collect()
    };
    let agents_before = agent_dirs(lab);
    let mut big = Lab::guest_vm_request("big", 768, Some("h1"));
    big.spec.ha.enabled = true;
    let err = client.create_vm(&big).expect_err("big breaks the reserve");
    let problem = err
        .problem()
        .unwrap_or_else(|| panic!("a problem+json answer: {err}"));
    assert_eq!(err.status(), Some(409), "{problem:?}");
    assert_eq!(problem.kind, "/problems/ha-reserve", "{problem:?}");
    println!("refused: {}", problem.detail);
    for words in [
        "powering on VM 'big' on host h1 would break the HA reserve (tolerate 1 host failure)",
        "if host h1 failed, 1 HA VM ('big') could not restart",
        "(short of 1 vCPU, 768 MiB)",
    ] {
        assert!(
            problem.detail.contains(words),
            "{words:?} not in: {}",
            problem.detail
        );
    }
    let env = cli_env(lab);
    let out = vinfra(
        &[
            "vm",
            "create",
            "big",
            "--vcpus",
            "1",
            "--memory",
            "768M",
            "--kernel",
            vinfra_lab::guest::KERNEL_IMAGE,
            "--initrd",
            vinfra_lab::guest::INITRD_IMAGE,
            "--cmdline",
            "console=ttyS0 no_timer_check",
            "--host",
            "h1",
            "--ha",
            "on",
        ],
        &refs(&env),
    );
    assert_one_line_error(
        &out,
        2,
        "would break the HA reserve (tolerate 1 host failure)",
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    let names: Vec<String> = client
        .vms()
        .expect("vms")
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, names_before, "no record of big");
    assert_eq!(client.vm("big").expect_err("no big").status(), Some(404));
    assert_eq!(
        dir_entries(&lab.datastore().join("vms")),
        ds_before,
        "no disk of big"
    );
    assert_eq!(
        agent_dirs(lab),
        agents_before,
        "no VM directory of big on any host"
    );
    // The reserve as `GET /ha` shows it: pa would restart on h3 if h1 failed.
    let ha = client.ha().expect("GET /ha");
    assert!(ha.reserve.enforced && ha.reserve.holds, "{:?}", ha.reserve);
    let h1_fails = ha
        .reserve
        .scenarios
        .iter()
        .find(|s| s.failed == ["h1"])
        .unwrap_or_else(|| panic!("{:?}", ha.reserve));
    assert_eq!(h1_fails.vms.len(), 1, "{h1_fails:?}");
    assert_eq!(
        h1_fails.vms[0].restarts_on.as_deref(),
        Some("h3"),
        "{h1_fails:?}"
    );
    // Without HA it is no HA power-on: admitted (it fits on h1).
    big.spec.ha.enabled = false;
    let b = client.create_vm(&big).expect("big without HA is admitted");
    ids.insert("big".into(), b.id.to_string());
    let pa_qemu = wait_running(lab, "pa", &ids["pa"]);
    let pb_qemu = wait_running(lab, "pb", &ids["pb"]);
    wait_running(lab, "big", &ids["big"]);

    // h1 dies: pa restarts on h3 (h2 has 640 MiB free, h3 256 MiB, but pb runs on h2).
    let free = |h: &str| {
        let host = client.host(h).expect("host");
        host.allocatable_memory_mib - host.allocated_memory_mib
    };
    assert!(
        free("h2") > free("h3"),
        "h2 has the most room: {} vs {}",
        free("h2"),
        free("h3")
    );
    let killed = Instant::now();
    lab.fence("h1").expect("kill everything of h1");
    let to = runs_elsewhere(lab, &ids["pa"], "h1", Duration::from_secs(60));
    println!(
        "pa runs on {to} {:.1} s after h1 died",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(to, "h3", "pa kept apart from pb");
    wait_shown_on(lab, "pa", "h3");
    assert_eq!(qemus_with(&ids["pb"]), vec![pb_qemu], "pb stays on h2");
    assert!(
        qemus_with(&ids["big"]).is_empty(),
        "big (no HA) does not restart"
    );
    std::thread::sleep(Duration::from_secs(3));

    let report = checker.finish();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    report.assert_replaced("pa", pa_qemu);
    println!("checker: {} polls at 100 ms, no violation", report.polls);
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
