//! The agent under a real guard (`vinfra_guard::run` on a thread of this test, so the QEMUs it
//! starts are children of this process): VMs are refused while the guard cannot be reached and
//! nothing of them is left; once it runs, QEMU is its child (not daemonized), the guard writes
//! the pidfile and a restarted manager adopts it; a QEMU that exits at once is reported with its
//! exit status and the end of its log; pets bring the guard the HA settings the console sent;
//! reports carry the guard's state, and leave it out within a second once the guard is gone.
//!
//! One test: the guard reaps every child of the process, so nothing else may run here.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_agent::connection::{host_report, HostInfo};
use vinfra_agent::guard::{spawn_pets, GuardLink};
use vinfra_agent::ha::GuardSettings;
use vinfra_agent::qemu::qmp::QemuRunner;
use vinfra_agent::qemu::{build_args, Launch, QemuError, VmRunner};
use vinfra_agent::{Manager, ManagerConfig, ManagerError};
use vinfra_guard::{
    ChildExit, GuardClient, GuardClientError, GuardConfig, GuardRefusal, IsolationResponse,
};
use vinfra_ha::HaTimings;
use vinfra_types::{Accel, HostCapacity, PowerState};

mod common;
use common::{datastore, instance, qemu_present, KillQemusUnder, QEMU};

async fn manager(data_dir: &Path, ds: &Path, guard: &Path) -> Manager {
    Manager::open(ManagerConfig {
        data_dir: data_dir.to_path_buf(),
        datastore: ds.to_path_buf(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        runner: Arc::new(QemuRunner {
            binary: QEMU.into(),
            accel: Accel::Tcg,
            guard: Some(guard.to_path_buf()),
        }),
        switch: None,
    })
    .await
    .unwrap()
}

/// `PPid` of `/proc/<pid>/status`.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

fn status(control: &Path) -> vinfra_guard::GuardStatus {
    GuardClient::connect(control).unwrap().status().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_run_under_the_guard_which_hears_from_the_agent() {
    if !qemu_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    let data = tmp.path().join("agent");
    let control = tmp.path().join("guard.sock");

    // No guard yet: the start is refused, typed, and nothing of the VM is left.
    let m = manager(&data, &ds, &control).await;
    let early = instance("early", vec![]);
    let err = m.create(early.clone(), true).await.unwrap_err();
    assert!(
        matches!(err, ManagerError::Qemu(QemuError::GuardUnreachable(_))),
        "{err:?}"
    );
    assert!(m.ids().await.is_empty());
    assert!(!data.join("vms").join(early.id.to_string()).exists());
    assert!(!ds.join("vms").join(early.id.to_string()).exists());

    // The guard starts.
    let mut config = GuardConfig::new("h1", &ds);
    config.control = control.clone();
    config.timings.renew = Duration::from_millis(200);
    let guard = std::thread::spawn(move || vinfra_guard::run(config));
    GuardClient::connect_within(&control, Duration::from_secs(15)).expect("the guard answers");

    // A VM now runs as the guard's child, in the foreground, its pidfile written.
    let vm = instance("guarded", vec![]);
    let obs = m.create(vm.clone(), true).await.unwrap();
    assert_eq!(obs.state, PowerState::Running, "{obs:?}");
    let pid = obs.pid.expect("a pid");
    assert_eq!(
        parent_of(pid),
        Some(std::process::id()),
        "QEMU's parent is the guard"
    );
    let dir = data.join("vms").join(vm.id.to_string());
    assert_eq!(
        std::fs::read_to_string(dir.join("qemu.pid"))
            .unwrap()
            .trim(),
        pid.to_string()
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("-daemonize"),
        "no -daemonize under the guard"
    );
    let s = status(&control);
    assert!(
        s.children.iter().any(|c| c.vm == vm.id && c.pid == pid),
        "{s:?}"
    );

    // The agent restarts: the same QEMU is adopted through the pidfile.
    drop(m);
    let m = Arc::new(manager(&data, &ds, &control).await);
    let again = m.observe(vm.id).await.unwrap();
    assert_eq!(
        (again.pid, again.state),
        (Some(pid), PowerState::Running),
        "{again:?}"
    );

    // A QEMU that exits at once: its exit status and the end of its log.
    let runner = QemuRunner {
        binary: QEMU.into(),
        accel: Accel::Tcg,
        guard: Some(control.clone()),
    };
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = Launch {
        id: Uuid::new_v4(),
        name: "bad".into(),
        vcpus: 1,
        memory_mib: 64,
        pad_ram: false,
        accel: Accel::Tcg,
        platform: None,
        kernel: Some((bad_dir.join("no-such-kernel"), None, String::new())),
        disks: vec![],
        serial_log: bad_dir.join("serial.log"),
        serial_socket: bad_dir.join("serial.sock"),
        qmp_socket: bad_dir.join("qmp.sock"),
        guard_qmp_socket: bad_dir.join("guard-qmp.sock"),
        pidfile: bad_dir.join("qemu.pid"),
        confinement: None,
        log: bad_dir.join("qemu.log"),
        incoming: false,
        nics: vec![],
    };
    let started = Instant::now();
    let err = match runner.launch(&bad, build_args(&bad)).await {
        Ok(p) => panic!("a QEMU without its kernel runs as pid {}", p.pid()),
        Err(e) => e,
    };
    match &err {
        QemuError::Exited { exit, log_tail } => {
            assert_eq!(*exit, ChildExit::Code(1), "{err}");
            assert!(
                log_tail.iter().any(|l| l.contains("no-such-kernel")),
                "{log_tail:?}"
            );
        }
        other => panic!("expected an early exit, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "reported at once"
    );

    // Pets bring the guard the settings the console sent.
    let timings = HaTimings {
        agent_grace: Duration::from_secs(20),
        ..HaTimings::default()
    };
    m.set_ha_settings(GuardSettings {
        isolation_response: IsolationResponse::PowerOff,
        timings,
    })
    .unwrap();
    let link = GuardLink::new(control.clone());
    let pets = spawn_pets(m.clone(), link.clone(), Duration::from_millis(200));
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = status(&control);
        if s.timings == timings {
            break s;
        }
        assert!(Instant::now() < deadline, "no pet arrived: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(s.console_contact_age_ms, None, "never in contact");
    assert_eq!(s.agent_absent_ms, None, "the agent pets");

    // Reports carry the guard.
    let info = HostInfo {
        host: "h1".into(),
        address: "127.0.0.1".into(),
        qemu_version: "9.2.0".into(),
        platform: None,
        capacity: HostCapacity {
            cores: 2,
            memory_mib: 2048,
        },
        guard: Some(link.clone()),
    };
    let report = host_report(&m, &info).await;
    let view = report.guard.expect("the guard in the report");
    assert_eq!(view.incarnation, s.incarnation);
    assert!(
        view.lease_counter >= 1 && view.renewal_age_ms.is_some(),
        "{view:?}"
    );
    assert!(!view.isolated && view.self_fences == 0, "{view:?}");

    // The guard goes (released once its VM is stopped): reports go on without it, at once.
    m.stop(vm.id, true, Duration::from_secs(5)).await.unwrap();
    pets.abort();
    // The guard reaps the stopped QEMU on its own time (SIGCHLD): until then it refuses to go.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match GuardClient::connect(&control).unwrap().release() {
            Ok(_) => break,
            Err(GuardClientError::Refused(GuardRefusal::HasChildren { vms }))
                if Instant::now() < deadline =>
            {
                assert_eq!(vms, vec![vm.id], "the guard's children");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("release the guard: {e:?}"),
        }
    }
    guard.join().unwrap().expect("the guard ends cleanly");
    let asked = Instant::now();
    let report = host_report(&m, &info).await;
    assert_eq!(report.guard, None);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}
