//! Unit tests of the manager's logic against the fake QEMU ([`FakeRunner`]): no guest, no
//! QEMU binary, no switch.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use uuid::Uuid;
use vinfra_proto::{MigrationSettings, StopKind, VmInstance};
use vinfra_types::{Accel, BootSource, DiskSpec, NicSpec, PowerState, VmSpec};

use super::*;
use crate::disks::{cache_mode_for, DiskError};
use crate::network::SwitchLinkError;
use crate::qemu::fake::{Call, FakeRunner};
use crate::qemu::{DiskArg, RunState};
use vinfra_switch_control::Request;

mod migration;
mod serial;

const LONG: Duration = Duration::from_secs(5);

/// A host: data directory and datastore (with a kernel and an initrd) in a temporary
/// directory, a fake QEMU, and a manager over them.
struct Host {
    tmp: TempDir,
    fake: FakeRunner,
    m: Manager,
}

fn config(root: &Path, fake: &FakeRunner) -> ManagerConfig {
    ManagerConfig {
        data_dir: root.join("data"),
        datastore: root.join("ds"),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        runner: Arc::new(fake.clone()),
        switch: None,
    }
}

/// A temporary directory with a datastore holding a kernel and an initrd.
fn with_datastore() -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("ds/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(images.join("initrd.img"), b"initrd").unwrap();
    tmp
}

async fn host() -> Host {
    let tmp = with_datastore();
    let fake = FakeRunner::new(Accel::Tcg);
    let m = Manager::open(config(tmp.path(), &fake)).await.unwrap();
    Host { tmp, fake, m }
}

impl Host {
    /// The same host after an agent restart: a new manager over the same files and QEMUs.
    async fn restart(self) -> Host {
        let Host { tmp, fake, m } = self;
        drop(m);
        let m = Manager::open(config(tmp.path(), &fake)).await.unwrap();
        Host { tmp, fake, m }
    }

    fn vm_dir(&self, id: Uuid) -> PathBuf {
        self.tmp.path().join("data/vms").join(id.to_string())
    }

    async fn state(&self, id: Uuid) -> PowerState {
        self.m.observe(id).await.unwrap().state
    }

    /// A VM created and started, running.
    async fn running(&self, name: &str) -> Uuid {
        let vm = instance(name);
        let obs = self.m.create(vm.clone(), true).await.unwrap();
        assert_eq!(obs.state, PowerState::Running);
        vm.id
    }

    /// A running VM with an outgoing migration under way.
    async fn migrating(&self, name: &str) -> Uuid {
        let id = self.running(name).await;
        self.m
            .migrate_out(
                id,
                "tcp:10.0.0.2:4444",
                MigrationSettings::default(),
                None,
                None,
            )
            .await
            .unwrap();
        id
    }
}

fn instance(name: &str) -> VmInstance {
    VmInstance {
        id: Uuid::new_v4(),
        spec: VmSpec {
            name: name.into(),
            vcpus: 1,
            memory_mib: 64,
            boot: BootSource::Kernel {
                kernel: "vmlinuz".into(),
                initrd: Some("initrd.img".into()),
                cmdline: "console=ttyS0".into(),
            },
            disks: Vec::new(),
            nics: Vec::new(),
            ha: Default::default(),
        },
        started_at: None,
        slot: None,
        platform: None,
    }
}

/// The conflict of a refused operation.
fn conflict<T: std::fmt::Debug>(r: Result<T>) -> StateConflict {
    match r {
        Err(ManagerError::BadState { conflict, .. }) => conflict,
        other => panic!("not refused for the VM's state: {other:?}"),
    }
}

fn count(calls: &[Call], f: impl Fn(&Call) -> bool) -> usize {
    calls.iter().filter(|c| f(c)).count()
}

#[tokio::test]
async fn create_defines_starts_and_is_idempotent() {
    let h = host().await;
    let vm = instance("web");
    let obs = h.m.create(vm.clone(), false).await.unwrap();
    assert_eq!((obs.state, obs.pid), (PowerState::Stopped, None));
    assert!(h.fake.calls(vm.id).is_empty(), "defined, not started");
    let record = h.m.record(vm.id).await.unwrap();
    assert!(!record.want_running && !record.incoming);
    assert!(h.vm_dir(vm.id).join("vm.json").is_file());

    // Created again with start: the same VM starts.
    let obs = h.m.create(vm.clone(), true).await.unwrap();
    assert_eq!(obs.state, PowerState::Running);
    assert_eq!(obs.pid, h.fake.pid(vm.id));
    let launch = h.fake.last_launch(vm.id).unwrap();
    assert!(!launch.incoming);
    assert_eq!(launch.qmp_socket, h.vm_dir(vm.id).join("run/qmp.sock"));
    assert_eq!(
        launch.kernel.as_ref().map(|k| k.0.clone()),
        Some(h.tmp.path().join("ds/images/vmlinuz"))
    );
    assert!(h.m.record(vm.id).await.unwrap().want_running);
    // The runner is handed the command line built from that description.
    let args = h
        .fake
        .calls(vm.id)
        .into_iter()
        .find_map(|c| match c {
            Call::Launch { args, .. } => Some(args),
            _ => None,
        })
        .unwrap();
    let kernel = h.tmp.path().join("ds/images/vmlinuz");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "-kernel" && w[1] == kernel.display().to_string()),
        "{args:?}"
    );
    assert!(!args.iter().any(|a| a == "-incoming"), "{args:?}");
    // And again: nothing new is launched.
    h.m.create(vm.clone(), true).await.unwrap();
    assert_eq!(
        count(&h.fake.calls(vm.id), |c| matches!(c, Call::Launch { .. })),
        1
    );
    assert_eq!(h.m.ids().await, vec![vm.id]);
}

/// The `-m` a VM's QEMU was launched with (the last launch).
fn memory_arg(h: &Host, id: Uuid) -> String {
    let args = h
        .fake
        .calls(id)
        .into_iter()
        .filter_map(|c| match c {
            Call::Launch { args, .. } => Some(args),
            _ => None,
        })
        .next_back()
        .unwrap();
    let i = args.iter().position(|a| a == "-m").unwrap();
    args[i + 1].clone()
}

#[tokio::test]
async fn a_manager_that_pads_ram_launches_every_qemu_padded_incoming_ones_too() {
    let mut h = host().await;
    let plain = h.running("plain").await;
    assert_eq!(memory_arg(&h, plain), "64M");
    h.m = h.m.with_padded_ram(true);
    let padded = h.running("padded").await;
    assert_eq!(memory_arg(&h, padded), "65544k");
    // The destination of a migration is padded alike, or QEMU would refuse the stream.
    let incoming = instance("incoming");
    h.m.prepare_incoming(incoming.clone(), None).await.unwrap();
    assert_eq!(memory_arg(&h, incoming.id), "65544k");
    // A restart launches it again, padded.
    h.m.stop(padded, true, Duration::from_secs(1))
        .await
        .unwrap();
    h.m.start(padded).await.unwrap();
    assert_eq!(memory_arg(&h, padded), "65544k");
}

#[tokio::test]
async fn a_create_that_fails_leaves_nothing_behind() {
    let h = host().await;
    // The kernel is not in the datastore.
    let mut missing = instance("nokernel");
    missing.spec.boot = BootSource::Kernel {
        kernel: "absent".into(),
        initrd: None,
        cmdline: String::new(),
    };
    let e = h.m.create(missing.clone(), true).await.unwrap_err();
    assert!(
        matches!(e, ManagerError::Disk(DiskError::Missing(_))),
        "{e:?}"
    );
    assert!(!h.vm_dir(missing.id).exists());

    // QEMU refuses to start.
    h.fake.fail_next_launches(1);
    let vm = instance("refused");
    let e = h.m.create(vm.clone(), true).await.unwrap_err();
    assert!(matches!(e, ManagerError::Qemu(_)), "{e:?}");
    assert!(!h.vm_dir(vm.id).exists());
    assert!(!h.tmp.path().join("ds/vms").join(vm.id.to_string()).exists());
    assert!(matches!(
        h.m.observe(vm.id).await,
        Err(ManagerError::NoSuchVm(_))
    ));

    // An invalid specification.
    let mut bad = instance("Bad Name");
    bad.spec.vcpus = 0;
    assert!(matches!(
        h.m.create(bad, false).await,
        Err(ManagerError::Spec(_))
    ));
    assert!(h.m.ids().await.is_empty());
}

#[tokio::test]
async fn a_vm_with_nics_is_refused_on_a_host_without_a_switch() {
    let h = host().await;
    let mut vm = instance("nic");
    vm.spec.nics = vec![NicSpec {
        network: "blue".into(),
        mac: Some("52:54:00:00:00:01".into()),
        ip: None,
        ..Default::default()
    }];
    let e = h.m.create(vm.clone(), true).await.unwrap_err();
    assert!(
        matches!(e, ManagerError::Network(SwitchLinkError::NoSwitch)),
        "{e:?}"
    );
    assert!(h.fake.calls(vm.id).is_empty());
    assert!(!h.vm_dir(vm.id).exists());
    let e = h.m.prepare_incoming(vm.clone(), None).await.unwrap_err();
    assert!(matches!(
        e,
        ManagerError::Network(SwitchLinkError::NoSwitch)
    ));
}

#[tokio::test]
async fn stop_powers_off_gracefully() {
    let h = host().await;
    let id = h.running("web").await;
    let (obs, how) = h.m.stop(id, false, LONG).await.unwrap();
    assert_eq!((obs.state, obs.pid), (PowerState::Stopped, None));
    assert_eq!(how, StopKind::Graceful);
    let calls = h.fake.calls(id);
    assert_eq!(count(&calls, |c| *c == Call::Powerdown), 1);
    assert_eq!(count(&calls, |c| *c == Call::Kill), 0, "{calls:?}");
    assert!(!h.fake.is_alive(id));
    let record = h.m.record(id).await.unwrap();
    assert!(!record.want_running && record.started_at.is_none());
    assert!(!h.vm_dir(id).join("qemu.pid").exists());
    // Stopping a stopped VM does nothing more.
    let (_, how) = h.m.stop(id, false, LONG).await.unwrap();
    assert_eq!(how, StopKind::AlreadyStopped);
    assert_eq!(h.fake.calls(id), calls);
    // It starts again with a new QEMU.
    let obs = h.m.start(id).await.unwrap();
    assert_eq!(obs.state, PowerState::Running);
    assert_eq!(
        count(&h.fake.calls(id), |c| matches!(c, Call::Launch { .. })),
        2
    );
}

#[tokio::test]
async fn a_guest_that_ignores_the_power_button_is_stopped_by_force_after_the_timeout() {
    let h = host().await;
    let id = h.running("stubborn").await;
    h.fake.ignore_powerdown(id);
    let started = std::time::Instant::now();
    let (obs, how) =
        h.m.stop(id, false, Duration::from_millis(300))
            .await
            .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(obs.state, PowerState::Stopped);
    assert_eq!(how, StopKind::ForcedAfterTimeout);
    let calls = h.fake.calls(id);
    let at = |call: Call| calls.iter().position(|c| *c == call).unwrap();
    assert!(at(Call::Powerdown) < at(Call::Kill), "{calls:?}");
    assert!(!h.fake.is_alive(id));

    // A forced stop does not ask the guest at all.
    let other = h.running("forced").await;
    let (_, how) = h.m.stop(other, true, LONG).await.unwrap();
    assert_eq!(how, StopKind::Forced);
    let calls = h.fake.calls(other);
    assert_eq!(count(&calls, |c| *c == Call::Powerdown), 0);
    assert_eq!(count(&calls, |c| *c == Call::Kill), 1);
}

#[tokio::test]
async fn a_guest_that_powers_off_is_stopped_and_a_dead_qemu_is_a_crash() {
    let h = host().await;
    let off = h.running("off").await;
    h.fake.guest_powers_off(off);
    assert_eq!(h.state(off).await, PowerState::Stopped);
    assert!(!h.m.record(off).await.unwrap().want_running);

    let crashed = h.running("crashed").await;
    h.fake.crash(crashed);
    assert_eq!(h.state(crashed).await, PowerState::Crashed);
    assert!(h.m.record(crashed).await.unwrap().want_running);
    // A crashed VM starts again.
    assert_eq!(h.m.start(crashed).await.unwrap().state, PowerState::Running);
}

#[tokio::test]
async fn start_resumes_a_paused_guest() {
    let h = host().await;
    let id = h.running("web").await;
    h.fake.pause(id);
    assert_eq!(h.state(id).await, PowerState::Paused);
    assert_eq!(h.m.start(id).await.unwrap().state, PowerState::Running);
    assert_eq!(count(&h.fake.calls(id), |c| *c == Call::Cont), 1);
    // Starting a running VM changes nothing.
    h.m.start(id).await.unwrap();
    assert_eq!(count(&h.fake.calls(id), |c| *c == Call::Cont), 1);
    assert_eq!(
        count(&h.fake.calls(id), |c| matches!(c, Call::Launch { .. })),
        1
    );
}

#[tokio::test]
async fn reboot_resets_a_running_vm_only() {
    let h = host().await;
    let id = h.running("web").await;
    let pid = h.fake.pid(id);
    assert_eq!(h.m.reboot(id).await.unwrap().state, PowerState::Running);
    assert_eq!(count(&h.fake.calls(id), |c| *c == Call::Reset), 1);
    assert_eq!(h.fake.pid(id), pid, "same QEMU");
    h.m.stop(id, true, LONG).await.unwrap();
    assert_eq!(conflict(h.m.reboot(id).await), StateConflict::NotRunning);
    assert_eq!(count(&h.fake.calls(id), |c| *c == Call::Reset), 1);
}

#[tokio::test]
async fn the_launch_takes_the_datastores_answer_and_only_a_create_makes_disks() {
    let h = host().await;
    let mut vm = instance("disk");
    vm.spec.disks = vec![DiskSpec {
        name: "data".into(),
        image: None,
        size_gib: Some(1),
    }];
    h.m.create(vm.clone(), true).await.unwrap();
    let disk = h
        .tmp
        .path()
        .join("ds/vms")
        .join(vm.id.to_string())
        .join("data.qcow2");
    assert!(disk.is_file());
    let launch = h.fake.last_launch(vm.id).unwrap();
    assert_eq!(
        launch.disks,
        [DiskArg {
            path: disk.clone(),
            cache: cache_mode_for(&disk),
        }]
    );

    // A start finds the disk gone: refused before anything is launched, still stopped.
    h.m.stop(vm.id, true, LONG).await.unwrap();
    std::fs::remove_file(&disk).unwrap();
    let e = h.m.start(vm.id).await.unwrap_err();
    assert!(
        matches!(e, ManagerError::Disk(DiskError::Missing(_))),
        "{e:?}"
    );
    assert_eq!(h.state(vm.id).await, PowerState::Stopped);
    assert_eq!(
        count(&h.fake.calls(vm.id), |c| matches!(c, Call::Launch { .. })),
        1
    );
    assert!(!disk.exists(), "a start creates no disk");

    // An incoming migration needs the disks on the datastore already: nothing is left behind.
    let mut incoming = vm.clone();
    incoming.id = Uuid::new_v4();
    let e =
        h.m.prepare_incoming(incoming.clone(), None)
            .await
            .unwrap_err();
    assert!(
        matches!(e, ManagerError::Disk(DiskError::Missing(_))),
        "{e:?}"
    );
    assert!(h.fake.calls(incoming.id).is_empty());
    assert!(!h.vm_dir(incoming.id).exists());
    assert!(!h
        .tmp
        .path()
        .join("ds/vms")
        .join(incoming.id.to_string())
        .exists());
}

#[tokio::test]
async fn delete_kills_and_forgets_and_deletes_disks_when_asked() {
    let h = host().await;
    let id = h.running("web").await;
    let disks = h.tmp.path().join("ds/vms").join(id.to_string());
    assert!(disks.is_dir(), "the datastore directory of the VM");
    h.m.delete(id, false).await.unwrap();
    assert!(!h.fake.is_alive(id));
    assert!(!h.vm_dir(id).exists());
    assert!(disks.is_dir(), "disks stay");
    assert!(matches!(
        h.m.delete(id, false).await,
        Err(ManagerError::NoSuchVm(_))
    ));

    let other = h.running("other").await;
    let disks = h.tmp.path().join("ds/vms").join(other.to_string());
    h.m.delete(other, true).await.unwrap();
    assert!(!disks.exists());
    assert!(h.m.ids().await.is_empty());
}

#[tokio::test]
async fn an_agent_restart_adopts_running_qemus_and_keeps_the_others() {
    let h = host().await;
    let running = h.running("running").await;
    let pid = h.fake.pid(running);
    let stopped = instance("stopped");
    h.m.create(stopped.clone(), false).await.unwrap();
    let crashed = h.running("crashed").await;
    let waiting = instance("waiting");
    h.m.prepare_incoming(waiting.clone(), None).await.unwrap();
    let lost = instance("lost");
    h.m.prepare_incoming(lost.clone(), None).await.unwrap();
    // While the agent is away: one QEMU dies, and so does one that waited for a migration.
    h.fake.crash(crashed);
    h.fake.crash(lost.id);
    // Files that are no VM's record.
    let vms = h.tmp.path().join("data/vms");
    std::fs::create_dir_all(vms.join("garbage")).unwrap();
    std::fs::write(vms.join("garbage/vm.json"), b"{not json").unwrap();
    let moved = vms.join(Uuid::new_v4().to_string());
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::copy(h.vm_dir(stopped.id).join("vm.json"), moved.join("vm.json")).unwrap();

    let h = h.restart().await;
    let mut ids = h.m.ids().await;
    ids.sort();
    let mut expected = vec![running, stopped.id, crashed, waiting.id];
    expected.sort();
    assert_eq!(ids, expected);
    let obs = h.m.observe(running).await.unwrap();
    assert_eq!((obs.state, obs.pid), (PowerState::Running, pid));
    assert_eq!(
        count(&h.fake.calls(running), |c| matches!(c, Call::Launch { .. })),
        1,
        "adopted, not started again"
    );
    assert_eq!(h.state(stopped.id).await, PowerState::Stopped);
    assert_eq!(h.state(crashed).await, PowerState::Crashed);
    assert_eq!(h.state(waiting.id).await, PowerState::Incoming);
    assert!(
        !h.vm_dir(lost.id).exists(),
        "an incoming VM whose QEMU is gone"
    );
    // The adopted QEMUs are commanded as before.
    h.m.stop(running, false, LONG).await.unwrap();
    assert!(!h.fake.is_alive(running));
    h.m.abort_incoming(waiting.id).await.unwrap();
    assert!(!h.fake.is_alive(waiting.id));
}

#[tokio::test]
async fn refusals_reach_the_console_typed() {
    let h = host().await;
    let id = h.running("web").await;
    h.m.stop(id, true, LONG).await.unwrap();
    let e: vinfra_proto::CommandError = h.m.reboot(id).await.unwrap_err().into();
    assert_eq!(
        e,
        vinfra_proto::CommandError::BadState {
            id,
            state: "stopped".into(),
            detail: "only a running VM can reboot".into(),
        }
    );
    let gone = Uuid::new_v4();
    let e: vinfra_proto::CommandError = h.m.start(gone).await.unwrap_err().into();
    assert_eq!(e, vinfra_proto::CommandError::NoSuchVm { id: gone });
    h.fake.fail_next_launches(1);
    let e: vinfra_proto::CommandError = h.m.start(id).await.unwrap_err().into();
    assert!(
        matches!(&e, vinfra_proto::CommandError::Qemu { detail } if detail.contains("refused to start")),
        "{e:?}"
    );
    // The record said it should run before the launch; the failed start puts back what it
    // said, in memory and on disk.
    let record = h.m.record(id).await.unwrap();
    let saved = records::load(&h.vm_dir(id)).unwrap().unwrap();
    for r in [record, saved] {
        assert!(!r.want_running && r.started_at.is_none());
    }
}

#[tokio::test]
async fn the_consoles_switch_configuration_reverts_the_switchs_mac_moves() {
    use crate::network::tests as switch;
    let tmp = tempfile::tempdir().unwrap();
    let switch::ModelSwitch { control, log, .. } =
        switch::model_switch(tmp.path(), switch::Refusals::default());
    let fake = FakeRunner::new(Accel::Tcg);
    let m = Manager::open(ManagerConfig {
        switch: Some(crate::network::SwitchAttachment {
            control,
            ..switch::settings()
        }),
        ..config(tmp.path(), &fake)
    })
    .await
    .unwrap();
    m.apply_switch_config(switch::config()).await.unwrap();
    // After the configuration is set: the console's word on where each VM is wins over a move
    // the switch made on a VM's announcement.
    assert_eq!(switch::reverts(&log), 1);
    let log = log.lock().unwrap();
    let revert = log.iter().rposition(|r| *r == Request::RevertMacMoves);
    let last_entry = log
        .iter()
        .rposition(|r| matches!(r, Request::AddMacEntry { .. }));
    assert!(revert > last_entry, "{log:?}");
}

/// A VM whose QEMU does not answer (wedged, as under SIGSTOP) holds up no report: the report
/// comes within the observe timeout, that VM with its last known state marked unresponsive and
/// the others as they are; later reports, while its observation still waits, come at once and
/// mark it too; once QEMU answers again the VM is reported as usual.
#[tokio::test]
async fn a_wedged_qemu_holds_up_no_report() {
    let Host { tmp: _tmp, fake, m } = host().await;
    let bound = Duration::from_millis(500);
    let m = m.with_observe_timeout(bound);
    let h = Host { tmp: _tmp, fake, m };
    let (a, b) = (h.running("a").await, h.running("b").await);
    let info = crate::connection::HostInfo {
        host: "h".into(),
        address: "127.0.0.1".into(),
        qemu_version: "9.2.0".into(),
        platform: None,
        capacity: vinfra_types::HostCapacity {
            cores: 2,
            memory_mib: 2048,
        },
        guard: None,
    };
    let report = crate::connection::host_report(&h.m, &info).await;
    assert!(report.vms.iter().all(|v| !v.unresponsive), "{report:?}");

    h.fake.wedge(a);
    let seen = |report: &vinfra_proto::HostReport, id: Uuid| {
        let v = report.vms.iter().find(|v| v.id == id).expect("listed");
        (v.state, v.unresponsive)
    };
    for round in 0..3 {
        let t = std::time::Instant::now();
        let report = crate::connection::host_report(&h.m, &info).await;
        let took = t.elapsed();
        assert!(
            took < bound + Duration::from_millis(400),
            "round {round}: {took:?}"
        );
        assert_eq!(
            seen(&report, a),
            (PowerState::Running, true),
            "round {round}"
        );
        assert_eq!(
            seen(&report, b),
            (PowerState::Running, false),
            "round {round}"
        );
        if round == 0 {
            assert!(took >= bound, "the first report waited {took:?} only");
        }
    }
    // A command on another VM is not held up either.
    h.m.stop(b, true, LONG).await.unwrap();
    let report = crate::connection::host_report(&h.m, &info).await;
    assert_eq!(seen(&report, b), (PowerState::Stopped, false));

    h.fake.unwedge(a);
    let t = std::time::Instant::now();
    loop {
        let report = crate::connection::host_report(&h.m, &info).await;
        if seen(&report, a) == (PowerState::Running, false) {
            break;
        }
        assert!(t.elapsed() < LONG, "VM a stays unresponsive: {report:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A wedged QEMU of a VM never observed yet (adopted after an agent restart) is listed all the
/// same, in state unknown and unresponsive, rather than left out of the report.
#[tokio::test]
async fn a_wedged_qemu_never_observed_is_listed_as_unknown() {
    let h = host().await;
    let a = h.running("a").await;
    h.fake.wedge(a);
    let Host { tmp, fake, m } = h.restart().await;
    let m = m.with_observe_timeout(Duration::from_millis(200));
    let vms = m.observe_all().await;
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_eq!(
        (vms[0].id, vms[0].state, vms[0].unresponsive),
        (a, PowerState::Unknown, true)
    );
    fake.unwedge(a);
    drop(tmp);
}

#[tokio::test]
async fn an_ha_policy_changed_while_the_vm_runs_reaches_the_guard_and_survives_a_restart() {
    let h = host().await;
    let web = h.running("web").await;
    assert!(h.m.ha_vm_ids().await.is_empty());
    h.m.set_vm_ha(web, true).await.unwrap();
    assert_eq!(h.m.ha_vm_ids().await, vec![web]);
    let reported = h.m.observe_all().await;
    assert!(reported.iter().any(|v| v.id == web && v.ha), "{reported:?}");
    // Kept with the VM: an agent restarted meanwhile counts it as HA still.
    let h = h.restart().await;
    assert_eq!(h.m.ha_vm_ids().await, vec![web]);
    h.m.set_vm_ha(web, false).await.unwrap();
    assert!(h.m.ha_vm_ids().await.is_empty());
    assert!(!h.m.observe(web).await.unwrap().ha);
    let missing = Uuid::new_v4();
    assert!(h.m.set_vm_ha(missing, true).await.is_err());
}
