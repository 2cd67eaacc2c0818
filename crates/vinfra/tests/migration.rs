//! Live migration in the lab, with a guest that counts on its serial console: the guest moves
//! without rebooting (its counter and uptime go on on the destination), one QEMU is left; a
//! migration whose destination QEMU or agent is killed ends failed with the VM still running on
//! the source and nothing left on the destination; a cancelled one (`vinfra task cancel` of
//! its task) too; and a console killed mid-migration follows it to its end when it comes back.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{
    api, assert_counting, boot_guest, can_run_labs, cli_env, console_text, counters, last_tick,
    migration, qemus_with, refs, serial_log, serial_text, spawn_vinfra, start_lab, vinfra, vm,
    wait_for, wait_migration_end, wait_nothing_left_on, wait_tick_above, LabGuard, Tick,
};
use nix::sys::signal::Signal;
use vinfra_lab::Lab;
use vinfra_types::api::MigrateVmRequest;
use vinfra_types::task::{Task, TaskState};
use vinfra_types::{MigrationPhase, MigrationProgress, PowerState};

/// How a migration is asked for.
enum How<'a> {
    /// The API's migrate call with this `to`.
    Api(Option<&'a str>),
    /// `vinfra vm migrate NAME --to HOST`.
    Cli(&'a str),
}

/// Parses `<number> <unit>` right after `label` in `text`.
fn number_after(text: &str, label: &str, unit: &str) -> Option<f64> {
    let rest = &text[text.find(label)? + label.len()..];
    let mut words = rest.split_whitespace();
    let value = words.next()?.parse().ok()?;
    words
        .next()?
        .trim_end_matches(',')
        .eq(unit)
        .then_some(value)
}

/// Migrates `name` (id `id`) from `from` to `to` and checks that the guest went on there without
/// a reboot and that only the destination QEMU is left. Returns the final progress.
fn migrate_and_check(
    lab: &Lab,
    name: &str,
    id: &str,
    from: &str,
    to: &str,
    how: How,
) -> MigrationProgress {
    assert_eq!(vm(lab, name).host, from, "{name} starts on {from}");
    let src_pids = lab.qemu_pids_on(from, id).expect("host");
    assert_eq!(src_pids.len(), 1, "one source QEMU on {from}: {src_pids:?}");
    let src_pid = src_pids[0];
    // Kept open: the source agent removes the file once the VM has left.
    let src_log =
        std::fs::File::open(serial_log(lab, from, id)).expect("open the source serial log");
    let before = wait_tick_above(lab, name, 0);

    let last = match how {
        How::Api(target) => {
            let request = MigrateVmRequest {
                to: target.map(str::to_string),
            };
            let started = api(lab)
                .migrate_vm(name, &request)
                .unwrap_or_else(|e| panic!("POST migrate {name}: {e}"));
            assert_eq!(started.source, from, "migration source");
            assert_eq!(started.destination, to, "migration destination");
            wait_migration_end(lab, name)
        }
        How::Cli(target) => {
            let env = cli_env(lab);
            let out = vinfra(&["vm", "migrate", name, "--to", target], &refs(&env));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "vinfra vm migrate failed: {}{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            let total = number_after(&stdout, " in ", "s");
            assert!(
                total.is_some_and(|t| t > 0.0),
                "no total time in the CLI output: {stdout}"
            );
            assert!(
                number_after(&stdout, "downtime ", "ms").is_some(),
                "no downtime in the CLI output: {stdout}"
            );
            assert!(stdout.contains(", encrypted"), "{stdout}");
            migration(lab, name)
        }
    };
    assert_eq!(
        last.phase,
        MigrationPhase::Completed,
        "migration of {name} {from} → {to}: {last:?}"
    );
    assert!(last.total_bytes > 0, "total bytes reported: {last:?}");
    // Encrypted by default (the agents' TLS path, with confined QEMUs reading their credentials).
    assert!(last.encrypted, "migration not encrypted: {last:?}");
    assert!(last.downtime_ms.is_some(), "downtime reported: {last:?}");
    assert_moved(lab, name, id, (from, src_pid), to, src_log, before);
    last
}

/// After a completed migration of `name` (id `id`) from `from` (where QEMU `src_pid` ran, whose
/// serial log is `src_log`, opened before the migration) to `to`: the VM is on `to` and nothing
/// is left on `from`; the source counted up to the switchover from at least `before`, and the
/// destination goes on counting from there without booting again; one QEMU is left, on `to`.
fn assert_moved(
    lab: &Lab,
    name: &str,
    id: &str,
    (from, src_pid): (&str, u32),
    to: &str,
    mut src_log: std::fs::File,
    before: Tick,
) {
    // The VM is on the destination now; the source QEMU and directory are gone.
    assert_eq!(vm(lab, name).host, to, "{name}'s host after the migration");
    assert!(
        vinfra_lab::process::wait_gone(src_pid, Duration::from_secs(30)),
        "the source QEMU (pid {src_pid}) is still running"
    );
    wait_nothing_left_on(lab, from, id);

    // The source counted up to the switchover.
    let mut src_text = String::new();
    src_log
        .read_to_string(&mut src_text)
        .expect("read the source serial log");
    let src_ticks = counters(&src_text);
    let src_last = *src_ticks.last().expect("counter lines on the source");
    assert!(src_last.n >= before.n, "source counter {src_last:?}");
    assert_counting(&src_ticks, "source serial log");

    // The destination goes on counting from there, without booting again.
    wait_tick_above(lab, name, src_last.n + 2);
    let dest_file = serial_log(lab, to, id);
    let dest_text = std::fs::read_to_string(&dest_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", dest_file.display()));
    assert!(
        !dest_text.contains("VINFRA-GUEST BOOTED"),
        "the guest booted again on {to}: {dest_text}"
    );
    let dest_ticks = counters(&dest_text);
    let first = *dest_ticks
        .first()
        .expect("counter lines on the destination");
    assert!(
        first.n > src_last.n,
        "destination counter {} does not follow the source's last {}",
        first.n,
        src_last.n
    );
    assert!(
        first.uptime > src_last.uptime,
        "guest uptime went from {} (source) to {} (destination)",
        src_last.uptime,
        first.uptime
    );
    assert_counting(&dest_ticks, "destination serial log");
    assert!(
        console_text(lab, name).contains(&format!("VINFRA-COUNTER {} ", first.n)),
        "the API shows the destination console"
    );

    // Exactly one QEMU on the whole machine has the VM's id, the destination's.
    let all = qemus_with(id);
    assert_eq!(all.len(), 1, "QEMUs with {id}: {all:?}");
    assert_eq!(
        lab.qemu_pids_on(to, id).expect("host"),
        all,
        "the remaining QEMU runs for {to}"
    );
}

#[test]
fn live_migration_keeps_the_guest_running() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("mig", 2);
    let created = boot_guest(&lab, "mig-1", 256, Some("h1"));
    let id = created.id.to_string();

    let p = migrate_and_check(&lab, "mig-1", &id, "h1", "h2", How::Api(Some("h2")));
    eprintln!(
        "h1 → h2: {} bytes in {} ms, downtime {:?} ms",
        p.transferred_bytes, p.total_time_ms, p.downtime_ms
    );
    // Back with no target: the console picks the only other host.
    migrate_and_check(&lab, "mig-1", &id, "h2", "h1", How::Api(None));
    // And once more through the CLI.
    migrate_and_check(&lab, "mig-1", &id, "h1", "h2", How::Cli("h2"));
    assert_eq!(vm(&lab, "mig-1").id, created.id, "same VM id");
    // Its CPU model and machine type, from the hosts' QEMU at create, are the same on every
    // host it ran on: a versioned machine type, TCG's model.
    let platform = vm(&lab, "mig-1")
        .platform
        .expect("platform recorded at create");
    assert!(platform.machine_type.starts_with("pc-q35-"), "{platform:?}");
    assert_eq!(platform.cpu_model, "qemu64", "{platform:?}");
    let pid = lab.qemu_pids_on("h2", &id).expect("host")[0];
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("QEMU's command line");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let machine = format!("{},accel=tcg", platform.machine_type);
    assert!(
        args.windows(2)
            .any(|w| w[0] == "-machine" && w[1] == machine)
            && args
                .windows(2)
                .any(|w| w[0] == "-cpu" && w[1] == "qemu64,enforce"),
        "{args:?}"
    );
    // Under TCG QEMU runs without transparent huge pages (an arriving guest's memory is
    // zeroed page by page as it is written, not 2 MiB at a time).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("QEMU's status");
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])),
        "{status}"
    );
    // A CPU baseline no host runs is refused, in one line, naming the hosts.
    let env = cli_env(&lab);
    let out = vinfra(
        &["settings", "set", "--cpu-baseline", "Skylake-Server-v4"],
        &refs(&env),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("hosts h1, h2"), "{err}");
    // The state comes with the destination's next report.
    wait_for(
        "mig-1 to be reported running on h2",
        Duration::from_secs(30),
        || (vm(&lab, "mig-1").state == PowerState::Running).then_some(()),
    );
}

/// Caps migrations at `mib` MiB/s (`None`: no cap), so that one stays active long enough to be
/// interrupted.
fn set_bandwidth_limit(lab: &Lab, mib: Option<u64>) {
    let client = api(lab);
    let mut settings = client.settings().expect("settings");
    settings.migration_max_bandwidth_mib = mib;
    client
        .put_settings(&settings)
        .unwrap_or_else(|e| panic!("PUT migration_max_bandwidth_mib: {e}"));
}

/// Boots `name` on h1, starts its migration to h2 and waits until it is active.
/// Returns (VM id, source QEMU pid).
fn start_slow_migration(lab: &LabGuard, name: &str) -> (String, u32) {
    set_bandwidth_limit(lab, Some(1));
    let id = boot_guest(lab, name, 128, Some("h1")).id.to_string();
    wait_tick_above(lab, name, 0);
    let src = lab.qemu_pids_on("h1", &id).expect("host");
    assert_eq!(src.len(), 1, "one QEMU on h1: {src:?}");
    api(lab)
        .migrate_vm(
            name,
            &MigrateVmRequest {
                to: Some("h2".into()),
            },
        )
        .unwrap_or_else(|e| panic!("POST migrate: {e}"));
    wait_for(
        "the migration to be active",
        Duration::from_secs(60),
        || {
            let p = migration(lab, name);
            assert!(
                !p.phase.is_final(),
                "the migration ended before it could be interrupted: {p:?}"
            );
            (p.phase == MigrationPhase::Active).then_some(())
        },
    );
    (id, src[0])
}

/// After a failed migration: the VM runs on h1 in the same QEMU and keeps counting.
fn assert_still_on_source(lab: &Lab, name: &str, id: &str, src_pid: u32) {
    let p = wait_migration_end(lab, name);
    assert_eq!(p.phase, MigrationPhase::Failed, "migration outcome: {p:?}");
    assert!(p.error.is_some(), "a failed migration says why: {p:?}");
    assert_eq!(vm(lab, name).host, "h1", "the API reports the VM on h1");
    wait_for(
        &format!("{name} to be reported running on h1"),
        Duration::from_secs(30),
        || (vm(lab, name).state == PowerState::Running).then_some(()),
    );
    assert_eq!(
        lab.qemu_pids_on("h1", id).expect("host"),
        vec![src_pid],
        "the source QEMU keeps running"
    );
    let t = last_tick(lab, name).expect("counter on the source");
    wait_tick_above(lab, name, t.n + 2);
    let text = std::fs::read_to_string(serial_log(lab, "h1", id)).expect("source serial log");
    assert_eq!(
        text.matches("VINFRA-GUEST BOOTED").count(),
        1,
        "the guest booted once"
    );
    assert_counting(&counters(&text), "source serial log");
}

#[test]
fn killing_the_destination_qemu_fails_the_migration_cleanly() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("kq", 2);
    let (id, src_pid) = start_slow_migration(&lab, "kq-1");
    let dest = wait_for("the incoming QEMU on h2", Duration::from_secs(30), || {
        let pids = lab.qemu_pids_on("h2", &id).expect("host");
        (pids.len() == 1).then(|| pids[0])
    });
    vinfra_lab::process::signal(dest, Signal::SIGKILL).expect("kill -9 the destination QEMU");

    assert_still_on_source(&lab, "kq-1", &id, src_pid);
    wait_nothing_left_on(&lab, "h2", &id);
    assert_eq!(qemus_with(&id), vec![src_pid], "QEMUs with the VM's id");
}

#[test]
fn killing_the_destination_agent_fails_the_migration_cleanly() {
    if !can_run_labs() {
        return;
    }
    let mut lab = start_lab("ka", 2);
    let (id, src_pid) = start_slow_migration(&lab, "ka-1");
    assert_eq!(
        lab.qemu_pids_on("h2", &id).expect("host").len(),
        1,
        "an incoming QEMU runs on h2"
    );
    let agent = lab.agent_pid("h2").expect("agent pid");
    lab.kill_agent("h2", Signal::SIGKILL)
        .expect("kill -9 the h2 agent");
    assert!(
        vinfra_lab::process::wait_gone(agent, Duration::from_secs(10)),
        "the h2 agent is gone"
    );

    assert_still_on_source(&lab, "ka-1", &id, src_pid);

    // The restarted agent keeps nothing of the aborted incoming VM.
    lab.lab_mut().restart_agent("h2").expect("restart h2 agent");
    lab.wait_hosts_connected(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_nothing_left_on(&lab, "h2", &id);
    assert_eq!(qemus_with(&id), vec![src_pid], "QEMUs with the VM's id");

    // h2 can take the VM afterwards.
    set_bandwidth_limit(&lab, None);
    migrate_and_check(&lab, "ka-1", &id, "h1", "h2", How::Api(Some("h2")));
}

/// Waits until the first migration of `name` (id `id`), to h2, is active and has sent bytes;
/// returns that progress and the pid of the incoming QEMU on h2.
fn wait_sending(lab: &Lab, name: &str, id: &str) -> (MigrationProgress, u32) {
    let progress = wait_for(
        &format!("the migration of {name} to send"),
        Duration::from_secs(60),
        || {
            // Not found until the migration has been asked for.
            let p = api(lab).migration(name).ok()?;
            assert!(
                !p.phase.is_final(),
                "the migration ended before it could be interrupted: {p:?}"
            );
            (p.phase == MigrationPhase::Active && p.transferred_bytes > 0).then_some(p)
        },
    );
    let dest = lab.qemu_pids_on("h2", id).expect("host");
    assert_eq!(dest.len(), 1, "one incoming QEMU on h2: {dest:?}");
    (progress, dest[0])
}

#[test]
fn cancelling_a_migration_leaves_the_vm_running_on_the_source() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("mcancel", 2);
    set_bandwidth_limit(&lab, Some(1));
    // At 1 MiB/s the first pass over the guest's memory (its kernel and initramfs) takes
    // half a minute: the migration still runs when it is cancelled. The guest does not keep
    // rewriting memory: under TCG, QEMU before 9.0 loses some of those writes in a migration
    // (see "Live migration" in docs/design.md), and this one moves again at the end.
    let id = boot_guest(&lab, "mc-1", 128, Some("h1")).id.to_string();
    let src = lab.qemu_pids_on("h1", &id).expect("host");
    assert_eq!(src.len(), 1, "one QEMU on h1: {src:?}");
    let src_pid = src[0];
    wait_tick_above(&lab, "mc-1", 0);

    // The CLI starts the migration and follows it; another one cancels it through its task.
    let env = cli_env(&lab);
    let follower = spawn_vinfra(&["vm", "migrate", "mc-1", "--to", "h2"], &refs(&env));
    let (sending, dest_pid) = wait_sending(&lab, "mc-1", &id);
    eprintln!("cancelling after {} bytes", sending.transferred_bytes);
    let listed = vinfra(
        &[
            "--output",
            "json",
            "task",
            "list",
            "--kind",
            "vm_migrate",
            "--target",
            "mc-1",
            "--state",
            "running",
        ],
        &refs(&env),
    );
    assert!(
        listed.status.success(),
        "vinfra task list: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let running: Vec<Task> = serde_json::from_slice(&listed.stdout).unwrap_or_else(|e| {
        panic!(
            "the task list's JSON: {e}: {}",
            String::from_utf8_lossy(&listed.stdout)
        )
    });
    assert_eq!(running.len(), 1, "one running migration task: {running:?}");
    assert!(running[0].cancellable, "before its switchover: {running:?}");
    let task_id = running[0].id.to_string();
    let out = vinfra(
        &["--output", "json", "task", "cancel", &task_id],
        &refs(&env),
    );
    assert!(
        out.status.success(),
        "vinfra task cancel {task_id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The task ends cancelled.
    let waited = vinfra(
        &[
            "--output",
            "json",
            "task",
            "wait",
            &task_id,
            "--timeout",
            "60s",
        ],
        &refs(&env),
    );
    assert_eq!(
        waited.status.code(),
        Some(1),
        "vinfra task wait of a cancelled task fails: {}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let ended: Task = serde_json::from_slice(&waited.stdout).unwrap_or_else(|e| {
        panic!(
            "the waited task's JSON: {e}: {}",
            String::from_utf8_lossy(&waited.stdout)
        )
    });
    assert_eq!(ended.state, TaskState::Cancelled, "the task: {ended:?}");
    let followed = follower.wait("vinfra vm migrate --to h2", Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&followed.stderr);
    assert_eq!(
        followed.status.code(),
        Some(1),
        "the following CLI fails: {stderr}"
    );
    assert!(
        stderr.contains("migration of mc-1 was cancelled"),
        "the following CLI says why: {stderr}"
    );

    // The record: cancelled, the VM on h1 and running.
    let p = migration(&lab, "mc-1");
    assert_eq!(
        (p.phase, p.source.as_str(), p.destination.as_str()),
        (MigrationPhase::Cancelled, "h1", "h2"),
        "the migration record: {p:?}"
    );
    assert_eq!(vm(&lab, "mc-1").host, "h1", "the API reports mc-1 on h1");
    wait_for(
        "mc-1 to be reported running on h1",
        Duration::from_secs(30),
        || (vm(&lab, "mc-1").state == PowerState::Running).then_some(()),
    );
    let events = common::events_about(&lab, "mc-1");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "migration" && e.message.contains("cancelled")),
        "an event records the cancel: {events:?}"
    );

    // The incoming QEMU is gone, h2 keeps nothing of the VM, the source QEMU runs on.
    assert!(
        vinfra_lab::process::wait_gone(dest_pid, Duration::from_secs(30)),
        "the incoming QEMU (pid {dest_pid}) is still running"
    );
    wait_nothing_left_on(&lab, "h2", &id);
    assert_eq!(qemus_with(&id), vec![src_pid], "QEMUs with the VM's id");
    wait_for(
        "h2 to stop counting mc-1's memory",
        Duration::from_secs(30),
        || {
            let h2 = api(&lab).host("h2").expect("GET host h2");
            (h2.allocated_memory_mib == 0).then_some(())
        },
    );

    // The guest never stopped: one boot, a counter without a gap, still counting.
    let t = last_tick(&lab, "mc-1").expect("counter on the source");
    wait_tick_above(&lab, "mc-1", t.n + 2);
    let text = serial_text(&lab, "h1", &id);
    assert_eq!(
        text.matches("VINFRA-GUEST BOOTED").count(),
        1,
        "the guest booted once"
    );
    assert_counting(&counters(&text), "source serial log");

    // The VM can move afterwards.
    set_bandwidth_limit(&lab, None);
    migrate_and_check(&lab, "mc-1", &id, "h1", "h2", How::Api(Some("h2")));
}

#[test]
fn a_console_killed_mid_migration_follows_it_to_the_end_when_it_comes_back() {
    if !can_run_labs() {
        return;
    }
    let mut lab = start_lab("mrestart", 2);
    // Slow enough to restart the console in the middle (the first pass over the guest's 128 MiB
    // takes some 30 s), fast enough to converge (an idle guest under TCG dirties about 1 MiB/s:
    // at 1 MiB/s its migration never ends).
    set_bandwidth_limit(&lab, Some(4));
    let id = boot_guest(&lab, "mr-1", 128, Some("h1")).id.to_string();
    let src = lab.qemu_pids_on("h1", &id).expect("host");
    assert_eq!(src.len(), 1, "one QEMU on h1: {src:?}");
    let src_pid = src[0];
    // Kept open: the source agent removes the file once the VM has left.
    let src_log = std::fs::File::open(serial_log(&lab, "h1", &id)).expect("open the serial log");
    let before = wait_tick_above(&lab, "mr-1", 0);
    api(&lab)
        .migrate_vm(
            "mr-1",
            &MigrateVmRequest {
                to: Some("h2".into()),
            },
        )
        .unwrap_or_else(|e| panic!("POST migrate: {e}"));
    let (sending, dest_pid) = wait_sending(&lab, "mr-1", &id);

    // The console dies while the memory is being sent, and comes back.
    let old = lab.console_pid();
    let down = std::time::Instant::now();
    lab.kill_console(Signal::SIGKILL)
        .expect("kill -9 the console");
    assert!(
        vinfra_lab::process::wait_gone(old, Duration::from_secs(10)),
        "the console is gone"
    );
    lab.lab_mut()
        .restart_console()
        .expect("restart the console");
    assert_ne!(lab.console_pid(), old, "a new console process");
    eprintln!(
        "the console was down for {:?}, after {} bytes had been sent",
        down.elapsed(),
        sending.transferred_bytes
    );
    let stored = migration(&lab, "mr-1");
    assert_eq!(
        stored.phase,
        MigrationPhase::Active,
        "the restarted console has the migration as the old one stored it: {stored:?}"
    );
    lab.wait_hosts_connected(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));

    // The new console follows the migration the old one started: it reports the source's
    // progress, past what the old one had stored…
    let followed = wait_for(
        "the restarted console to report the migration's progress",
        Duration::from_secs(90),
        || {
            let p = migration(&lab, "mr-1");
            (p.transferred_bytes > stored.transferred_bytes || p.phase.is_final()).then_some(p)
        },
    );
    assert_eq!(
        followed.phase,
        MigrationPhase::Active,
        "the restarted console found the migration running: {followed:?}"
    );
    // …to its end: the VM runs on h2, in the QEMU that was waiting there before the restart.
    let last = wait_migration_end(&lab, "mr-1");
    assert_eq!(
        last.phase,
        MigrationPhase::Completed,
        "the resumed migration: {last:?}"
    );
    assert_moved(&lab, "mr-1", &id, ("h1", src_pid), "h2", src_log, before);
    assert_eq!(
        qemus_with(&id),
        vec![dest_pid],
        "the incoming QEMU of before the restart runs the VM"
    );
    wait_for(
        "mr-1 to be reported running on h2",
        Duration::from_secs(30),
        || {
            let v = vm(&lab, "mr-1");
            (v.state == PowerState::Running && v.host == "h2").then_some(())
        },
    );
    let events = common::events_about(&lab, "mr-1");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "migration" && e.message.starts_with("migrated from h1 to h2 in ")),
        "an event records the migration: {events:?}"
    );
}
