//! Hosts over time, end to end with fake agents: a lost migration source, a VM found on another
//! host, a removed host's certificate, stalled reports and a silent agent, the state shown after
//! a command; and the console's own bounds: compacted history, one console per data directory,
//! unauthenticated agent connections capped per address.

mod common;

use std::time::Duration;

use common::*;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// Polls `f` every 50 ms for up to 20 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_lost_source_does_not_kill_a_vm_that_already_runs_on_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, false, |cfg| {
        cfg.migration_source_timeout = Duration::from_secs(1);
    })
    .await;
    let mut src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let body = vm_json("ghost", 1, GIB)
        .replace("\"name\":\"ghost\"", "\"name\":\"ghost\",\"host\":\"src\"");
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    src.state.lock().unwrap().behaviour.active_polls = 100_000;

    // 1. The source vanishes and the destination's incoming QEMU never got the VM: the
    //    migration fails after the source timeout and the incoming QEMU is aborted.
    let r = c
        .call("POST", "/api/v1/vms/ghost/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    eventually("the VM is being sent", || {
        dst.vm_state(id) == Some(vinfra_types::PowerState::Incoming)
            && src.vm_state(id) == Some(vinfra_types::PowerState::Migrating)
    })
    .await;
    src.disconnect();
    let done = wait_migration(&c, "ghost").await;
    assert_eq!(done["phase"], "failed", "{done:?}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("source unreachable"),
        "{done:?}"
    );
    assert_eq!(dst.vm_state(id), None, "incoming QEMU aborted");
    assert_eq!(
        c.call("GET", "/api/v1/vms/ghost", None).await.body["host"],
        "src"
    );
    {
        let mut s = src.state.lock().unwrap();
        s.vms.get_mut(&id).unwrap().1 = vinfra_types::PowerState::Running;
        s.polls.clear();
    }
    src.connect(c.running.agent_addr).await;
    c.wait_host_status("src", "connected").await;
    // Let the previous operation settle before the next migration.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. The switchover happens, then the source vanishes before the console hears of it: the
    //    destination runs the VM, so the migration completed and the destination is left alone.
    let r = c
        .call("POST", "/api/v1/vms/ghost/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    eventually("the VM is being sent", || {
        dst.vm_state(id) == Some(vinfra_types::PowerState::Incoming)
            && src.vm_state(id) == Some(vinfra_types::PowerState::Migrating)
    })
    .await;
    {
        // What QEMU does at switchover: the destination runs, the source stays paused.
        dst.state.lock().unwrap().vms.get_mut(&id).unwrap().1 = vinfra_types::PowerState::Running;
        src.state.lock().unwrap().vms.get_mut(&id).unwrap().1 = vinfra_types::PowerState::Paused;
    }
    // The destination reports the running VM before the source goes away.
    tokio::time::sleep(Duration::from_millis(700)).await;
    src.disconnect();
    let done = wait_migration(&c, "ghost").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    assert_eq!(
        dst.vm_state(id),
        Some(vinfra_types::PowerState::Running),
        "the only running copy was not touched"
    );
    assert_eq!(
        c.call("GET", "/api/v1/vms/ghost", None).await.body["host"],
        "dst"
    );
    let events = c.call("GET", "/api/v1/events", None).await.body;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("runs the VM")),
        "{events:?}"
    );

    // 3. The source comes back with its paused copy: it is released, not resumed.
    assert_eq!(src.vm_state(id), Some(vinfra_types::PowerState::Paused));
    src.state.lock().unwrap().commands.clear();
    src.connect(c.running.agent_addr).await;
    eventually("the paused source copy is released", || {
        src.vm_state(id).is_none()
    })
    .await;
    assert!(
        !src.state
            .lock()
            .unwrap()
            .commands
            .iter()
            .any(|c| c == "StartVm" || c == "CreateVm"),
        "the source copy was never started again"
    );
    assert_eq!(dst.vm_state(id), Some(vinfra_types::PowerState::Running));
    c.shutdown().await;
}

#[tokio::test]
async fn the_controller_moves_the_record_to_where_the_vm_runs_and_never_starts_a_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    let b = FakeAgent::join_and_connect(&c, "b", HOST16).await;
    let body =
        vm_json("twin", 1, GIB).replace("\"name\":\"twin\"", "\"name\":\"twin\",\"host\":\"a\"");
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    // What a migration whose end the console missed leaves: its record (a to b), host b runs
    // the VM, host a lost it. (Without the record b's claim is not believed: tests/reports.rs.)
    let progress = vinfra_types::MigrationProgress {
        vm: "twin".into(),
        source: "a".into(),
        destination: "b".into(),
        phase: vinfra_types::MigrationPhase::Failed,
        transferred_bytes: 0,
        remaining_bytes: 0,
        total_bytes: 0,
        rate_bps: 0,
        dirty_pages_rate: 0,
        total_time_ms: 0,
        downtime_ms: None,
        error: Some("source unreachable".into()),
        encrypted: true,
        started_at: 1,
    };
    vinfra_console::state::records::put(
        c.running.console.store().as_ref(),
        &vinfra_console::state::records::migration_key("twin"),
        &progress,
    )
    .unwrap();
    let vm = a.state.lock().unwrap().vms.remove(&id).unwrap();
    b.state
        .lock()
        .unwrap()
        .vms
        .insert(id, (vm.0, vinfra_types::PowerState::Running));
    // Starting it on a would make a second copy: refused.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = c.call("POST", "/api/v1/vms/twin/start", None).await;
    assert_problem(&r, 409);
    assert!(
        r.body["detail"].as_str().unwrap().contains("on host 'b'"),
        "{:?}",
        r.body
    );
    eventually("the record follows the VM to b", || {
        b.vm_state(id) == Some(vinfra_types::PowerState::Running)
            && a.vm_state(id).is_none()
            && c.running
                .console
                .vm("twin")
                .is_ok_and(|v| v.value.host == "b")
    })
    .await;
    assert_eq!(a.vm_count(), 0, "no second copy was created on a");
    c.shutdown().await;
}

#[tokio::test]
async fn a_removed_host_cannot_connect_with_its_still_valid_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut gone = FakeAgent::join_and_connect(&c, "gone", HOST16).await;
    let r = c.call("DELETE", "/api/v1/hosts/gone", None).await;
    assert!(r.status == 204 || r.status == 200, "{:?}", r.body);
    // Removing the host closes its connection …
    eventually("the removed host's connection is closed", || {
        gone.session_ended()
    })
    .await;
    // … and its certificate (still signed by the cluster CA) no longer gets it in.
    gone.connect(c.running.agent_addr).await;
    eventually("the console refuses the certificate", || {
        gone.session_ended()
    })
    .await;
    assert_problem(&c.call("GET", "/api/v1/hosts/gone", None).await, 404);
    let hosts = c.call("GET", "/api/v1/hosts", None).await;
    assert_eq!(hosts.body.as_array().unwrap().len(), 0, "{:?}", hosts.body);
    c.shutdown().await;
}

/// Liveness is the heartbeats, not the reports: a host whose reports stall stays connected (and
/// its heartbeats are acknowledged); one that falls silent is disconnected within the heartbeat
/// timeout and may come back.
#[tokio::test]
async fn a_host_whose_reports_stall_stays_connected_and_a_silent_one_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, false, |cfg| {
        cfg.heartbeat_timeout = Duration::from_secs(1);
    })
    .await;
    let mut quiet = FakeAgent::join_and_connect(&c, "quiet", HOST16).await;
    quiet.state.lock().unwrap().reports_stalled = true;
    let acks = quiet.state.lock().unwrap().acks;
    let until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < until {
        let r = c.call("GET", "/api/v1/hosts/quiet", None).await;
        assert_eq!(r.body["status"], "connected", "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = quiet.state.lock().unwrap().acks;
    assert!(now >= acks + 5, "{} heartbeats acknowledged", now - acks);
    // The connection stays open; the agent sends nothing any more.
    quiet.state.lock().unwrap().silent = true;
    c.wait_host_status("quiet", "disconnected").await;
    eventually("the silent connection is closed", || quiet.session_ended()).await;
    quiet.state.lock().unwrap().silent = false;
    quiet.state.lock().unwrap().reports_stalled = false;
    quiet.connect(c.running.agent_addr).await;
    c.wait_host_status("quiet", "connected").await;
    c.shutdown().await;
}

#[tokio::test]
async fn history_is_compacted_and_the_event_list_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, false, |cfg| {
        cfg.compaction_interval = Duration::from_millis(100);
        cfg.history_revisions = 50;
    })
    .await;
    let console = c.running.console.clone();
    for i in 0..1010 {
        console.event("test", "history", format!("event {i}"));
    }
    let events = c.call("GET", "/api/v1/events", None).await.body;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1000);
    assert_eq!(events.last().unwrap()["message"], "event 1009");
    assert_eq!(
        events.iter().find(|e| e["kind"] == "test").unwrap()["message"],
        "event 10"
    );
    // Old revisions go: a watch from the start is refused, a recent one still works.
    let store = console.store().clone();
    let head = store.revision().unwrap();
    assert!(head > 1000);
    eventually("the history is compacted", || {
        matches!(
            store.watch("/vinfra/", 0),
            Err(vinfra_store::StoreError::Compacted { .. })
        )
    })
    .await;
    assert!(store.watch("/vinfra/", head - 10).is_ok());
    c.shutdown().await;
}

/// The state shown right after a command or a migration is the one the command left, not the
/// host's last report: the agents here stop reporting (their heartbeats go on, so they stay
/// connected) before the VM exists, so everything the API shows afterwards comes from the
/// answers (and, after a migration, from the console asking the destination).
#[tokio::test]
async fn observed_state_is_never_older_than_the_last_command() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    src.state.lock().unwrap().reports_stalled = true;
    dst.state.lock().unwrap().reports_stalled = true;
    // Let a report that was already on its way arrive before the checks.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = vm_json("fresh", 1, GIB)
        .replace("\"name\":\"fresh\"", "\"name\":\"fresh\",\"host\":\"src\"");
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();

    assert_eq!(show_vm(&c, "fresh").await["state"], "running");

    let r = c.call("POST", "/api/v1/vms/fresh/stop", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "stopped");
    assert_eq!(show_vm(&c, "fresh").await["state"], "stopped");
    assert_eq!(listed_vm(&c, "fresh").await["state"], "stopped");

    let r = c.call("POST", "/api/v1/vms/fresh/start", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(show_vm(&c, "fresh").await["state"], "running");
    assert_eq!(listed_vm(&c, "fresh").await["state"], "running");

    // Migration: the destination resumes the guest only after being asked three times.
    dst.state.lock().unwrap().behaviour.resume_after_observes = 3;
    let r = c
        .call("POST", "/api/v1/vms/fresh/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_migration(&c, "fresh").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    assert_eq!(src.vm_state(id), None, "source released the VM");
    for vm in [show_vm(&c, "fresh").await, listed_vm(&c, "fresh").await] {
        assert_eq!(vm["host"], "dst", "{vm:?}");
        assert_eq!(vm["state"], "running", "{vm:?}");
        assert!(vm["uptime_s"].as_u64().unwrap() > 0, "{vm:?}");
    }
    let asked = dst
        .state
        .lock()
        .unwrap()
        .commands
        .iter()
        .filter(|c| *c == "ObserveVm")
        .count();
    assert!(asked >= 4, "the destination was asked {asked} times");

    let r = c.call("DELETE", "/api/v1/vms/fresh?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    c.shutdown().await;
}

async fn show_vm(c: &TestConsole, name: &str) -> serde_json::Value {
    c.call("GET", &format!("/api/v1/vms/{name}"), None)
        .await
        .body
}

async fn listed_vm(c: &TestConsole, name: &str) -> serde_json::Value {
    let body = c.call("GET", "/api/v1/vms", None).await.body;
    body.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_second_console_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_console(dir.path(), None, true).await;
    let mut config = vinfra_console::ConsoleConfig::new(dir.path().to_path_buf());
    config.api_listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    config.token_file = Some(dir.path().join("token"));
    let err = match vinfra_console::start(config).await {
        Ok(_) => panic!("two consoles run on one data directory"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            vinfra_console::ConsoleError::DataDirLock(
                vinfra_proto::datadir::DataDirLockError::InUse { .. }
            )
        ),
        "{err}"
    );
    drop(first);
}

#[tokio::test]
async fn connections_that_never_authenticate_are_capped_per_address() {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;
    use vinfra_console::agents::listener::MAX_UNAUTHENTICATED_PER_ADDRESS;
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let addr = c.running.agent_addr;
    // Connections that never start their TLS handshake.
    let mut stalled = Vec::new();
    for _ in 0..MAX_UNAUTHENTICATED_PER_ADDRESS {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buf = [0u8; 1];
    // One more from the same address: closed at once.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf))
        .await
        .expect("the connection past the cap is closed at once");
    assert_eq!(closed.unwrap_or(0), 0, "closed, nothing sent");
    // Those counted stay open until their handshake times out.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stalled[0].read(&mut buf))
            .await
            .is_err(),
        "a counted connection stays open"
    );
    // Gone, they count no more: a new connection is taken again.
    drop(stalled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(addr).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), again.read(&mut buf))
            .await
            .is_err(),
        "a connection under the cap is taken"
    );
}
