//! What this host's QEMU runs (CPU models, versioned machine types), asked of the real QEMU,
//! and a VM that runs with the CPU model and machine type the console gave it, or is refused
//! when QEMU does not offer them.

use std::time::Duration;

use vinfra_agent::handle;
use vinfra_proto::{AgentCommand, CommandReply};
use vinfra_types::{Accel, PowerState, VmPlatform};

mod common;
use common::{datastore, instance, manager, qemu_present, wait_for_log, KillQemusUnder, QEMU};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_comes_from_qemu_and_a_vm_runs_with_the_one_it_was_given() {
    if !qemu_present() {
        return;
    }
    let p = vinfra_agent::platform::probe(std::path::Path::new(QEMU), Accel::Tcg)
        .await
        .unwrap();
    assert!(p.cpu_models.iter().any(|m| m == "qemu64"), "{p:?}");
    assert!(
        !p.cpu_models.iter().any(|m| m == "host" || m == "max"),
        "models that follow the host are not migration-safe: {p:?}"
    );
    assert!(p.default_machine_type.starts_with("pc-q35-"), "{p:?}");
    assert!(p.machine_types.contains(&p.default_machine_type), "{p:?}");
    assert!(p.machine_types.len() > 1, "{p:?}");
    assert!(!p.cpu_name.is_empty(), "{p:?}");
    // Under TCG some models lack features (e.g. AVX-512 ones): not listed.
    let unlisted = [
        "Skylake-Server-v1",
        "Cascadelake-Server-v1",
        "Icelake-Server-v1",
    ]
    .into_iter()
    .find(|m| !p.cpu_models.iter().any(|x| x == m))
    .expect("a model TCG cannot run with all its features");

    let tmp = tempfile::tempdir().unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    let data = tmp.path().join("agent");
    let m = manager(&data, &ds).await.with_platform(Some(p.clone()));

    // What QEMU does not offer is refused before anything is made.
    for (cpu, machine, says) in [
        ("qemu64", "pc-q35-99.0", "machine type 'pc-q35-99.0'"),
        (unlisted, p.default_machine_type.as_str(), unlisted),
        ("host", p.default_machine_type.as_str(), "TCG"),
    ] {
        let mut vm = instance("refused", vec![]);
        vm.platform = Some(VmPlatform {
            cpu_model: cpu.into(),
            machine_type: machine.into(),
        });
        let err = handle(
            &m,
            AgentCommand::CreateVm {
                vm: vm.clone(),
                start: true,
            },
        )
        .await
        .unwrap_err();
        assert!(format!("{err}").contains(says), "{err}");
        assert!(!data.join("vms").join(vm.id.to_string()).exists());
        assert!(!ds.join("vms").join(vm.id.to_string()).exists());
    }

    // An older machine type and a named model: QEMU runs with them, and the guest boots.
    let older = p.machine_types[p.machine_types.len() - 2].clone();
    let model = if p.cpu_models.iter().any(|m| m == "Nehalem-v1") {
        "Nehalem-v1"
    } else {
        "qemu64"
    };
    let mut vm = instance("pinned", vec![]);
    vm.platform = Some(VmPlatform {
        cpu_model: model.into(),
        machine_type: older.clone(),
    });
    let id = vm.id;
    let CommandReply::Vm { vm: obs } = handle(&m, AgentCommand::CreateVm { vm, start: true })
        .await
        .unwrap()
    else {
        panic!("not a VM reply");
    };
    assert_eq!(obs.state, PowerState::Running);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", obs.pid.unwrap())).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(after("-machine"), format!("{older},accel=tcg"), "{args:?}");
    assert_eq!(after("-cpu"), format!("{model},enforce"), "{args:?}");
    let log = m.serial_log_path(id).await.unwrap();
    wait_for_log(&log, "VINFRA-GUEST BOOTED", Duration::from_secs(60)).await;
    m.stop(id, true, Duration::from_secs(1)).await.unwrap();
    m.delete(id, true).await.unwrap();
}
