//! CPU baseline and machine types: hosts say what their QEMU runs, a VM gets its CPU model and
//! machine type at create, and placement, migrations and the baseline setting keep to them.

mod common;

use common::*;
use vinfra_types::{Accel, HostCapacity, HostPlatform};

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

fn platform(cpu: &str, models: &[&str], machines: &[&str]) -> HostPlatform {
    HostPlatform {
        cpu_name: cpu.into(),
        cpu_models: models.iter().map(|m| m.to_string()).collect(),
        machine_types: machines.iter().map(|m| m.to_string()).collect(),
        default_machine_type: machines.last().unwrap().to_string(),
    }
}

async fn join(c: &TestConsole, host: &str, p: HostPlatform, accel: Accel) -> FakeAgent {
    let state = FakeState {
        platform: Some(p),
        accel: Some(accel),
        ..FakeState::default()
    };
    FakeAgent::join_and_connect_with(c, host, HOST16, state).await
}

async fn create_on(c: &TestConsole, vm: &str, host: &str) -> serde_json::Value {
    let body = vm_json(vm, 1, GIB).replace(
        &format!("\"name\":\"{vm}\""),
        &format!("\"name\":\"{vm}\",\"host\":\"{host}\",\"start\":true"),
    );
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn set_baseline(c: &TestConsole, model: Option<&str>) -> Resp {
    let mut s = c.call("GET", "/api/v1/settings", None).await.body;
    s["cpu_baseline"] = model.map_or(serde_json::Value::Null, Into::into);
    c.call("PUT", "/api/v1/settings", Some(&s.to_string()))
        .await
}

#[tokio::test]
async fn vms_keep_their_cpu_model_and_machine_type_and_go_only_where_both_run() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let new = platform(
        "Xeon Gold",
        &["Nehalem-v1", "qemu64"],
        &["pc-q35-7.1", "pc-q35-7.2"],
    );
    let a = join(&c, "a", new.clone(), Accel::Tcg).await;
    let _b = join(&c, "b", new.clone(), Accel::Tcg).await;

    // The hosts' platforms are shown.
    let r = c.call("GET", "/api/v1/hosts/a", None).await;
    assert_eq!(r.body["platform"]["default_machine_type"], "pc-q35-7.2");
    assert_eq!(r.body["platform"]["cpu_models"][0], "Nehalem-v1");

    // A baseline no host runs, and one that is not a model name, are refused.
    let r = set_baseline(&c, Some("Skylake-Server-v4")).await;
    assert_problem(&r, 400);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("hosts a, b") && detail.contains("no host does"),
        "{detail}"
    );
    assert_problem(&set_baseline(&c, Some("host")).await, 400);
    let r = set_baseline(&c, Some("Nehalem-v1")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // A VM created now runs with the baseline and the newest machine type of every host.
    let vm = create_on(&c, "x", "a").await;
    assert_eq!(vm["platform"]["cpu_model"], "Nehalem-v1", "{vm}");
    assert_eq!(vm["platform"]["machine_type"], "pc-q35-7.2", "{vm}");
    let sent = a
        .state
        .lock()
        .unwrap()
        .vms
        .values()
        .next()
        .unwrap()
        .0
        .clone();
    let p = sent.platform.expect("the agent is told the VM's platform");
    assert_eq!(
        (p.cpu_model.as_str(), p.machine_type.as_str()),
        ("Nehalem-v1", "pc-q35-7.2")
    );

    // An older host without the baseline model, another without the machine type: neither
    // takes x, and a migration there says why.
    let _old = join(
        &c,
        "old",
        platform("Opteron", &["qemu64"], &["pc-q35-7.1"]),
        Accel::Tcg,
    )
    .await;
    let r = c
        .call("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"old"}"#))
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("CPU model 'Nehalem-v1'"), "{detail}");
    let _older = join(
        &c,
        "older",
        platform("Xeon Gold", &["Nehalem-v1", "qemu64"], &["pc-q35-7.1"]),
        Accel::Tcg,
    )
    .await;
    let r = c
        .call("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"older"}"#))
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("machine type 'pc-q35-7.2'"), "{detail}");

    // Now that "old" and "older" lack it, the baseline cannot be set again as it is, and a new
    // VM gets the newest machine type every host offers.
    let r = set_baseline(&c, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = set_baseline(&c, Some("Nehalem-v1")).await;
    assert_problem(&r, 400);
    assert!(
        r.body["detail"].as_str().unwrap().contains("host old"),
        "{:?}",
        r.body
    );
    let vm = create_on(&c, "y", "a").await;
    assert_eq!(vm["platform"]["cpu_model"], "qemu64", "{vm}");
    assert_eq!(vm["platform"]["machine_type"], "pc-q35-7.1", "{vm}");

    // A migration without a host named goes where x runs: b.
    let r = c.call("POST", "/api/v1/vms/x/migrate", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let m = wait_migration(&c, "x").await;
    assert_eq!(m["destination"], "b", "{m}");
    c.shutdown().await;
}

#[tokio::test]
async fn without_a_baseline_kvm_vms_run_with_the_host_cpu_and_move_live_only_to_the_same_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let m = ["pc-q35-7.2"];
    let _a = join(&c, "a", platform("EPYC 7B13", &["qemu64"], &m), Accel::Kvm).await;
    let _b = join(&c, "b", platform("Xeon Gold", &["qemu64"], &m), Accel::Kvm).await;
    let _t = join(&c, "t", platform("EPYC 7B13", &["qemu64"], &m), Accel::Tcg).await;
    let vm = create_on(&c, "x", "a").await;
    assert_eq!(vm["platform"]["cpu_model"], "host", "{vm}");
    let r = c
        .call("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"b"}"#))
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("its CPU is 'Xeon Gold'") && detail.contains("'EPYC 7B13'"),
        "{detail}"
    );
    // Same CPU name, but TCG: no host CPU there.
    let r = c
        .call("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"t"}"#))
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("runs guests under TCG"), "{detail}");
    // Nowhere to go live on its own either.
    let r = c.call("POST", "/api/v1/vms/x/migrate", None).await;
    assert_problem(&r, 409);
    // A host of the same CPU takes it.
    let _a2 = join(&c, "a2", platform("EPYC 7B13", &["qemu64"], &m), Accel::Kvm).await;
    let r = c.call("POST", "/api/v1/vms/x/migrate", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "x").await["destination"], "a2");
    c.shutdown().await;
}

#[tokio::test]
async fn a_live_migration_keeps_the_accelerator_and_a_host_that_forgets_its_platform_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let m = ["pc-q35-7.2"];
    let _t = join(&c, "t", platform("EPYC", &["qemu64"], &m), Accel::Tcg).await;
    let _k = join(&c, "k", platform("EPYC", &["qemu64"], &m), Accel::Kvm).await;
    let vm = create_on(&c, "x", "t").await;
    assert_eq!(vm["platform"]["cpu_model"], "qemu64", "{vm}");
    let r = c
        .call("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"k"}"#))
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("runs guests under KVM and the VM needs TCG"),
        "{detail}"
    );
    // An agent whose QEMU did not answer this time: the platform it said before stays.
    let mut k2 = join(&c, "k2", platform("EPYC", &["qemu64"], &m), Accel::Tcg).await;
    k2.disconnect();
    c.wait_host_status("k2", "disconnected").await;
    k2.state.lock().unwrap().platform = None;
    k2.connect(c.running.agent_addr).await;
    c.wait_host_status("k2", "connected").await;
    let r = c.call("GET", "/api/v1/hosts/k2", None).await;
    assert_eq!(r.body["platform"]["cpu_name"], "EPYC", "{:?}", r.body);
    let r = c
        .call("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"k2"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    wait_migration(&c, "x").await;
    c.shutdown().await;
}

#[tokio::test]
async fn under_tcg_a_vm_moves_live_only_between_qemus_that_pad_its_memory_alike() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let m = ["pc-q35-7.2"];
    let tcg_with = |version: &str| FakeState {
        platform: Some(platform("EPYC", &["qemu64"], &m)),
        accel: Some(Accel::Tcg),
        qemu_version: Some(version.into()),
        ..FakeState::default()
    };
    let _old = FakeAgent::join_and_connect_with(&c, "old", HOST16, tcg_with("7.2.22")).await;
    let _new = FakeAgent::join_and_connect_with(&c, "new", HOST16, tcg_with("9.2.0")).await;
    let _old2 = FakeAgent::join_and_connect_with(&c, "old2", HOST16, tcg_with("7.2.0")).await;
    create_on(&c, "x", "old").await;
    // QEMU 7.2 pads the guest's memory under TCG, 9.2 does not: the sizes differ.
    let r = c
        .call("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"new"}"#))
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("9.0 or later") && detail.contains("the VM's is before 9.0"),
        "{detail}"
    );
    // Without a destination named, placement picks the host that pads alike.
    let r = c.call("POST", "/api/v1/vms/x/migrate", Some("{}")).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["destination"], "old2", "{:?}", r.body);
    wait_migration(&c, "x").await;
    c.shutdown().await;
}

#[tokio::test]
async fn a_hello_with_an_absurd_platform_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let names: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let state = FakeState {
        platform: Some(platform("x", &names, &["pc-q35-7.2"])),
        ..FakeState::default()
    };
    let flood = FakeAgent::join_and_try_connect(&c, "flood", HOST16, state).await;
    let state = FakeState {
        platform: Some(platform("x\u{1b}[2J", &["qemu64"], &["pc-q35-7.2"])),
        ..FakeState::default()
    };
    let escape = FakeAgent::join_and_try_connect(&c, "escape", HOST16, state).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(flood.session_ended() && escape.session_ended()) {
        assert!(std::time::Instant::now() < deadline, "not refused");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ev = c.call("GET", "/api/v1/events", None).await.body.to_string();
    assert!(
        ev.contains("host flood refused at connection: its platform"),
        "{ev}"
    );
    assert!(
        ev.contains("host escape refused at connection: its platform"),
        "{ev}"
    );
    c.shutdown().await;
}
