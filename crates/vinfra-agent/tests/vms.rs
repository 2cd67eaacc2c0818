//! Real QEMU guests under TCG: life cycle, adoption after an agent restart, live migration.
//!
//! The guest image comes from `scripts/build-guest-image.sh` (built into /var/cache/vinfra/guest
//! when missing). Tests skip only when qemu-system-x86_64 is not installed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_agent::{handle, Manager};
use vinfra_proto::{AgentCommand, CommandError, CommandReply, MigrationSettings};
use vinfra_types::{Accel, BootSource, DiskSpec, PowerState};

mod common;
use common::{
    datastore, guest_image, instance, last_counter, manager, qemu_present, wait_for_log,
    KillQemusUnder, QEMU,
};

const GUEST_DISK_CACHE: &str = "/var/cache/vinfra/guest-disk";

/// The bootable guest disk (`disk.qcow2`), built by `scripts/build-guest-disk.sh` from the guest
/// image when missing or out of date (the script returns at once when it is up to date).
fn guest_disk() -> PathBuf {
    let img = guest_image();
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(GUEST_DISK_CACHE);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-guest-disk.sh");
    let st = std::process::Command::new("bash")
        .arg(script)
        .arg(&dir)
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success(), "build-guest-disk.sh failed");
    dir.join("disk.qcow2")
}

async fn state(m: &Manager, id: Uuid) -> PowerState {
    m.observe(id).await.unwrap().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_cycle_adoption_and_stop() {
    if !qemu_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    let data = tmp.path().join("agent");
    let m = manager(&data, &ds).await;

    // Bad input: a kernel that is not in the datastore leaves nothing behind.
    let mut bad = instance(
        "bad",
        vec![DiskSpec {
            name: "root".into(),
            image: None,
            size_gib: Some(1),
        }],
    );
    bad.spec.boot = BootSource::Kernel {
        kernel: "missing-kernel".into(),
        initrd: None,
        cmdline: String::new(),
    };
    let err = handle(
        &m,
        AgentCommand::CreateVm {
            vm: bad.clone(),
            start: true,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CommandError::MissingFile { .. }), "{err:?}");
    assert!(!ds.join("vms").join(bad.id.to_string()).exists());
    assert!(!data.join("vms").join(bad.id.to_string()).exists());
    let err = handle(
        &m,
        AgentCommand::StartVm {
            id: Uuid::new_v4(),
            slot: None,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CommandError::NoSuchVm { .. }));

    // Create and start with a blank disk.
    let vm = instance(
        "life",
        vec![DiskSpec {
            name: "data".into(),
            image: None,
            size_gib: Some(1),
        }],
    );
    let id = vm.id;
    let reply = handle(
        &m,
        AgentCommand::CreateVm {
            vm: vm.clone(),
            start: true,
        },
    )
    .await
    .unwrap();
    let CommandReply::Vm { vm: obs } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(obs.state, PowerState::Running);
    let pid = obs.pid.unwrap();
    assert!(ds
        .join("vms")
        .join(id.to_string())
        .join("data.qcow2")
        .is_file());
    let log = m.serial_log_path(id).await.unwrap();
    wait_for_log(&log, "VINFRA-GUEST BOOTED", Duration::from_secs(30)).await;
    let CommandReply::Console { text } = handle(
        &m,
        AgentCommand::ConsoleLog {
            id,
            max_bytes: 4096,
        },
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert!(text.len() <= 4096 && !text.is_empty());
    // Creating again is idempotent.
    let again = m.create(vm.clone(), true).await.unwrap();
    assert_eq!(again.pid, Some(pid));

    // The agent goes away; a new one adopts the same QEMU.
    drop(m);
    let m = manager(&data, &ds).await;
    let obs = m.observe(id).await.unwrap();
    assert_eq!((obs.state, obs.pid), (PowerState::Running, Some(pid)));
    let obs = m.observe_all().await;
    assert_eq!(obs.len(), 1);
    assert!(obs[0].usage.rss_mib > 0, "{obs:?}");

    // ACPI power-off through the guest's power button.
    wait_for_log(&log, "VINFRA-COUNTER 1 ", Duration::from_secs(30)).await;
    let t = Instant::now();
    let reply = handle(
        &m,
        AgentCommand::StopVm {
            id,
            force: false,
            timeout_s: 30,
        },
    )
    .await
    .unwrap();
    let CommandReply::Stopped { vm: obs, how } = reply else {
        panic!("a stop answers Stopped: {reply:?}")
    };
    assert_eq!((obs.state, obs.pid), (PowerState::Stopped, None));
    assert_eq!(how, vinfra_proto::StopKind::Graceful);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("VINFRA-GUEST POWERDOWN"),
        "after {:?}: {text}",
        t.elapsed()
    );
    assert!(
        !vinfra_agent::qemu::pid_alive(pid)
            || !vinfra_agent::qemu::is_our_qemu(pid, &log.with_file_name("qmp.sock"))
    );

    // Start again, then the QEMU dies unexpectedly: crashed.
    let obs = m.start(id).await.unwrap();
    let pid2 = obs.pid.unwrap();
    assert_ne!(pid2, pid);
    vinfra_agent::qemu::kill(pid2, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&m, id).await != PowerState::Crashed {
        assert!(Instant::now() < deadline, "never seen as crashed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Start, force stop, delete with disks.
    m.start(id).await.unwrap();
    let (obs, how) = m.stop(id, true, Duration::from_secs(1)).await.unwrap();
    assert_eq!(obs.state, PowerState::Stopped);
    assert_eq!(how, vinfra_proto::StopKind::Forced);
    handle(
        &m,
        AgentCommand::DeleteVm {
            id,
            delete_disks: true,
        },
    )
    .await
    .unwrap();
    assert!(!ds.join("vms").join(id.to_string()).exists());
    assert!(!data.join("vms").join(id.to_string()).exists());
    assert!(m.ids().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_migration_between_two_agents() {
    if !qemu_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = manager(&a_dir, &ds).await;
    let b = manager(&b_dir, &ds).await;

    let vm = instance(
        "mig",
        vec![DiskSpec {
            name: "root".into(),
            image: None,
            size_gib: Some(1),
        }],
    );
    let id = vm.id;
    a.create(vm.clone(), true).await.unwrap();
    let a_log = a.serial_log_path(id).await.unwrap();
    wait_for_log(&a_log, "VINFRA-COUNTER 3 ", Duration::from_secs(30)).await;
    let mut moving = vm.clone();
    moving.started_at = a.record(id).await.unwrap().started_at;

    // Destination waits; a second prepare returns the same URI.
    let CommandReply::Incoming { uri, .. } = handle(
        &b,
        AgentCommand::PrepareIncoming {
            vm: moving.clone(),
            tls: None,
        },
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert!(uri.starts_with("tcp:127.0.0.1:"), "{uri}");
    assert_eq!(b.prepare_incoming(moving.clone(), None).await.unwrap(), uri);
    assert_eq!(state(&b, id).await, PowerState::Incoming);

    // Refused: migrating to something that is not tcp.
    assert!(a
        .migrate_out(id, "exec:true", MigrationSettings::default(), None, None)
        .await
        .is_err());

    // The destination is asked, before the migration starts, to answer once the guest runs
    // there: QEMU's RESUME ends that wait, long before its 60 s (without the event it would
    // come back after 60 s with `incoming`).
    let arrival = async {
        let asked = Instant::now();
        let reply = handle(
            &b,
            AgentCommand::ObserveVm {
                id,
                wait_ms: 60_000,
            },
        )
        .await
        .unwrap();
        (reply, Instant::now(), asked.elapsed())
    };
    let sent = async {
        handle(
            &a,
            AgentCommand::MigrateOut {
                id,
                uri: uri.clone(),
                settings: MigrationSettings::default(),
                tls: None,
                redirect_to: None,
            },
        )
        .await
        .unwrap();
        // One request that waits for the end: QEMU's MIGRATION event ends the wait, long
        // before the 60 s (without the event it would come back after 60 s with `active`).
        let asked = Instant::now();
        let CommandReply::Migration { status } = handle(
            &a,
            AgentCommand::MigrationStatus {
                id,
                wait_ms: 60_000,
            },
        )
        .await
        .unwrap() else {
            panic!()
        };
        (status, Instant::now(), asked.elapsed())
    };
    let ((arrived, arrived_at, waited), (status, ended_at, asked)) = tokio::join!(arrival, sent);
    println!(
        "migration status after {} ms: {}",
        asked.as_millis(),
        status.qemu_status
    );
    assert!(asked < Duration::from_secs(55), "{status:?}");
    assert_eq!(status.qemu_status, "completed", "{status:?}");
    assert!(
        status.total_bytes > 0 && status.transferred_bytes > 0,
        "{status:?}"
    );
    // Read right after QEMU's event, the times are filled in (QEMU shows 0 for both a moment
    // before it has them; a downtime under 1 ms may be 0).
    assert!(status.total_time_ms > 0, "{status:?}");
    assert!(status.downtime_ms.is_some(), "{status:?}");
    assert_eq!(state(&a, id).await, PowerState::Paused);
    // The destination resumes the guest a moment after (or before) the source reports
    // completion, and answered then.
    let CommandReply::Vm { vm: seen } = arrived else {
        panic!("{arrived:?}")
    };
    println!(
        "destination answered running after {} ms ({} ms after the source's answer)",
        waited.as_millis(),
        arrived_at.saturating_duration_since(ended_at).as_millis()
    );
    assert_eq!(seen.state, PowerState::Running, "{seen:?}");
    assert!(waited < Duration::from_secs(55), "{seen:?}");
    assert_eq!(state(&b, id).await, PowerState::Running);
    assert!(!b.record(id).await.unwrap().incoming);
    assert_eq!(b.record(id).await.unwrap().started_at, moving.started_at);

    // The counter continues on the destination, from where the source left off.
    let a_text = std::fs::read_to_string(&a_log).unwrap();
    let a_last = last_counter(&a_text).unwrap();
    let b_log = b.serial_log_path(id).await.unwrap();
    let next = format!("VINFRA-COUNTER {} ", a_last + 3);
    let b_text = wait_for_log(&b_log, &next, Duration::from_secs(30)).await;
    let b_first = b_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("VINFRA-COUNTER "))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .next()
        .unwrap();
    assert!(
        b_first <= a_last + 2 && b_first >= a_last,
        "source ended at {a_last}, destination began at {b_first}"
    );
    assert!(
        !b_text.contains("VINFRA-GUEST BOOTED"),
        "the destination must not boot the guest again"
    );

    // The paused source copy refuses to run again: the guest lives on the destination.
    let refused = a.start(id).await;
    assert!(
        matches!(refused, Err(vinfra_agent::ManagerError::BadState { .. })),
        "{refused:?}"
    );
    assert_eq!(state(&a, id).await, PowerState::Paused);

    // Finish: the source QEMU is gone and forgotten; disks stay.
    let src_pid = a.observe(id).await.unwrap().pid.unwrap();
    handle(&a, AgentCommand::FinishMigrationSource { id })
        .await
        .unwrap();
    assert!(
        !vinfra_agent::qemu::pid_alive(src_pid)
            || std::fs::read(format!("/proc/{src_pid}/cmdline"))
                .unwrap_or_default()
                .is_empty()
    );
    assert!(a.ids().await.is_empty());
    assert!(!a_dir.join("vms").join(id.to_string()).exists());
    assert!(ds
        .join("vms")
        .join(id.to_string())
        .join("root.qcow2")
        .is_file());
    // An incoming VM that has received its guest cannot be aborted.
    assert!(b.abort_incoming(id).await.is_err());

    // A second incoming VM whose agent restarts after its QEMU died is cleaned up.
    let other = instance("mig2", vec![]);
    b.prepare_incoming(other.clone(), None).await.unwrap();
    let pid = b.observe(other.id).await.unwrap().pid.unwrap();
    vinfra_agent::qemu::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b);
    let b = manager(&b_dir, &ds).await;
    assert_eq!(b.ids().await, vec![id]);
    assert!(!b_dir.join("vms").join(other.id.to_string()).exists());

    b.stop(id, true, Duration::from_secs(1)).await.unwrap();
    b.delete(id, true).await.unwrap();
}

/// `boot: disk` with a root disk over a bootable base image: SeaBIOS boots the first disk (it
/// has `bootindex=1`), SYSLINUX loads the same kernel and initrd, and the guest comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_from_a_disk_image() {
    if !qemu_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    std::fs::copy(guest_disk(), ds.join("images/vinfra-guest-disk.qcow2")).unwrap();
    let m = manager(&tmp.path().join("agent"), &ds).await;

    let mut vm = instance(
        "from-disk",
        vec![
            DiskSpec {
                name: "root".into(),
                image: Some("vinfra-guest-disk.qcow2".into()),
                size_gib: None,
            },
            DiskSpec {
                name: "data".into(),
                image: None,
                size_gib: Some(1),
            },
        ],
    );
    vm.spec.boot = BootSource::Disk;
    vm.spec.validate().unwrap();
    let id = vm.id;
    let CommandReply::Vm { vm: obs } = handle(&m, AgentCommand::CreateVm { vm, start: true })
        .await
        .unwrap()
    else {
        panic!("expected a Vm reply")
    };
    assert_eq!(obs.state, PowerState::Running);
    let pid = obs.pid.unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(!args.iter().any(|a| a == "-kernel"), "{args:?}");
    let root = ds.join("vms").join(id.to_string()).join("root.qcow2");
    assert!(
        args.iter()
            .any(|a| a.contains(&format!("file={}", root.display()))),
        "{args:?}"
    );
    assert!(
        args.iter()
            .any(|a| a == "virtio-blk-pci,drive=drive0,id=disk0,bootindex=1"),
        "the root disk must carry the boot index: {args:?}"
    );
    assert!(
        args.iter()
            .any(|a| a == "virtio-blk-pci,drive=drive1,id=disk1"),
        "{args:?}"
    );
    let log = m.serial_log_path(id).await.unwrap();
    let text = wait_for_log(&log, "VINFRA-GUEST BOOTED", Duration::from_secs(60)).await;
    assert!(
        text.contains("SYSLINUX"),
        "booted by the disk's loader: {text}"
    );
    wait_for_log(&log, "VINFRA-COUNTER 1 ", Duration::from_secs(30)).await;
    m.stop(id, true, Duration::from_secs(1)).await.unwrap();
    m.delete(id, true).await.unwrap();
    assert!(!ds.join("vms").join(id.to_string()).exists());
}

#[tokio::test]
async fn accel_probe_is_cached() {
    if !qemu_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    let data = tmp.path().join("agent");
    let version = vinfra_agent::qemu::qemu_version(Path::new(QEMU)).unwrap();

    // Without the probe guest: TCG, at once.
    let empty = tmp.path().join("empty-ds");
    let t = Instant::now();
    let accel = vinfra_agent::probe::probe(Path::new(QEMU), &empty, &data, Duration::from_secs(8))
        .await
        .unwrap();
    assert_eq!(accel, Accel::Tcg);
    assert!(t.elapsed() < Duration::from_secs(2));

    let first = vinfra_agent::probe::detect_accel(
        Path::new(QEMU),
        &version,
        &ds,
        &data,
        Duration::from_secs(8),
    )
    .await
    .unwrap();
    let cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("accel.json")).unwrap()).unwrap();
    assert_eq!(cached["qemu_version"], version.as_str());
    let t = Instant::now();
    let second = vinfra_agent::probe::detect_accel(
        Path::new(QEMU),
        &version,
        &ds,
        &data,
        Duration::from_secs(8),
    )
    .await
    .unwrap();
    assert_eq!(first, second);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "cached answer expected"
    );
    if !Path::new("/dev/kvm").exists() {
        assert_eq!(first, Accel::Tcg);
    }
}

/// The value of `field` in `/proc/<pid>/status`.
fn proc_status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in the status of {pid}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_guard_a_confined_qemu_runs_as_its_slots_user_and_its_cgroup_goes_after_it() {
    if !qemu_present() || !vinfra_testenv::Needs::new().root().met() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use vinfra_agent::confine::{ConfineSettings, Confiner, DEFAULT_UID_BASE};
    let tmp = tempfile::tempdir().unwrap();
    // The VM's user passes through to its directories.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    let data = tmp.path().join("agent");
    let parent = format!("vinfra.slice/agent-test-{}", std::process::id());
    let confiner = Confiner::new(ConfineSettings {
        cgroup_parent: parent.into(),
        ..ConfineSettings::default()
    })
    .unwrap();
    let m = manager(&data, &ds).await.with_confinement(Some(confiner));

    // A console from before slots: refused, nothing left behind.
    let old = instance("old", vec![]);
    let err = handle(
        &m,
        AgentCommand::CreateVm {
            vm: old.clone(),
            start: true,
        },
    )
    .await
    .unwrap_err();
    assert!(format!("{err:?}").contains("no slot"), "{err:?}");
    assert!(!data.join("vms").join(old.id.to_string()).exists());
    assert!(!ds.join("vms").join(old.id.to_string()).exists());
    // Defined (not started) by such a console, it learns its slot when started by a newer.
    handle(
        &m,
        AgentCommand::CreateVm {
            vm: old.clone(),
            start: false,
        },
    )
    .await
    .unwrap();
    handle(
        &m,
        AgentCommand::StartVm {
            id: old.id,
            slot: Some(43),
        },
    )
    .await
    .unwrap();
    let pid = m.observe(old.id).await.unwrap().pid.expect("running");
    assert_eq!(
        proc_status(pid, "Uid"),
        vec![(DEFAULT_UID_BASE + 43).to_string(); 4].join("\t")
    );
    handle(
        &m,
        AgentCommand::DeleteVm {
            id: old.id,
            delete_disks: true,
        },
    )
    .await
    .unwrap();

    let mut vm = instance("confined", vec![]);
    vm.slot = Some(42);
    let id = vm.id;
    handle(&m, AgentCommand::CreateVm { vm, start: true })
        .await
        .unwrap();
    let pid = m.observe(id).await.unwrap().pid.expect("running");
    let uid = (DEFAULT_UID_BASE + 42).to_string();
    assert!(
        proc_status(pid, "Uid").split_whitespace().all(|u| u == uid),
        "{}",
        proc_status(pid, "Uid")
    );
    assert_eq!(proc_status(pid, "Seccomp"), "2");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let name = format!("vm-{id}");
    assert!(cgroups.contains(&name), "{cgroups}");
    let log = m.serial_log_path(id).await.unwrap();
    wait_for_log(&log, "VINFRA-GUEST BOOTED", Duration::from_secs(120)).await;

    // Its session is its own: it is no child of the test's process group.
    assert_ne!(
        proc_status(pid, "NSsid"),
        proc_status(std::process::id(), "NSsid")
    );
    handle(
        &m,
        AgentCommand::DeleteVm {
            id,
            delete_disks: true,
        },
    )
    .await
    .unwrap();
    let confiner = m.confiner().unwrap();
    let dirs: Vec<PathBuf> = cgroups
        .lines()
        .filter_map(|l| l.rsplit(':').next())
        .filter(|p| p.ends_with(&name))
        .flat_map(|p| {
            [
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpu",
            ]
            .map(|root| Path::new(root).join(p.trim_start_matches('/')))
        })
        .filter(|d| d.exists())
        .collect();
    assert!(!dirs.is_empty(), "{cgroups}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while dirs.iter().any(|d| d.exists()) {
        confiner.sweep(&Default::default(), Duration::ZERO);
        assert!(Instant::now() < deadline, "cgroups left: {dirs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
    ] {
        let _ = std::fs::remove_dir(Path::new(root).join(&confiner.settings().cgroup_parent));
    }
}
