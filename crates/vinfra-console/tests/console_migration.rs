//! Live migrations end to end over real sockets with fake agents: one that completes, failed ones
//! that leave the VM on its source, one a restarted console finishes, the migration settings
//! validated, kept and applied.

mod common;

use std::time::Duration;

use common::*;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

#[tokio::test]
async fn migration_completes_and_moves_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(
                &vm_json("mover", 2, 4 * GIB)
                    .replace("\"name\":\"mover\"", "\"name\":\"mover\",\"host\":\"src\""),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    src.state.lock().unwrap().behaviour.active_polls = 3;

    let r = c.call("POST", "/api/v1/vms/mover/migrate", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["destination"], "dst");
    assert_eq!(r.body["phase"], "preparing");
    // One migration at a time; the VM is busy meanwhile.
    assert_problem(
        &c.call("POST", "/api/v1/vms/mover/migrate", None).await,
        409,
    );
    // The VM counts on both hosts while it moves.
    let h = c.call("GET", "/api/v1/hosts/dst", None).await;
    assert_eq!(h.body["allocated_memory_mib"], 4 * GIB);

    let done = wait_migration(&c, "mover").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    assert_eq!(done["downtime_ms"], 20);
    let r = c.call("GET", "/api/v1/vms/mover", None).await;
    assert_eq!(r.body["host"], "dst");
    assert_eq!(src.vm_state(id), None, "source released the VM");
    assert!(dst.vm_state(id).is_some());
    assert_eq!(
        c.call("GET", "/api/v1/hosts/src", None).await.body["allocated_memory_mib"],
        0
    );
    assert_eq!(
        c.call("GET", "/api/v1/hosts/dst", None).await.body["allocated_memory_mib"],
        4 * GIB
    );
    c.shutdown().await;
}

#[tokio::test]
async fn failed_migrations_leave_the_vm_on_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let body =
        vm_json("stay", 1, GIB).replace("\"name\":\"stay\"", "\"name\":\"stay\",\"host\":\"src\"");
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();

    // 1. The destination cannot start its incoming QEMU.
    dst.state.lock().unwrap().behaviour.fail_prepare = true;
    let r = c
        .call("POST", "/api/v1/vms/stay/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_migration(&c, "stay").await;
    assert_eq!(done["phase"], "failed");
    assert!(
        done["error"].as_str().unwrap().contains("incoming QEMU"),
        "{done:?}"
    );
    assert_eq!(
        c.call("GET", "/api/v1/vms/stay", None).await.body["host"],
        "src"
    );
    assert_eq!(src.vm_state(id), Some(vinfra_types::PowerState::Running));

    // 2. QEMU reports a failed stream: the destination's incoming QEMU is aborted.
    dst.state.lock().unwrap().behaviour.fail_prepare = false;
    src.state.lock().unwrap().behaviour.fail_migration = true;
    let r = c
        .call("POST", "/api/v1/vms/stay/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_migration(&c, "stay").await;
    assert_eq!(done["phase"], "failed");
    assert_eq!(done["error"], "stream broke");
    assert_eq!(
        c.call("GET", "/api/v1/vms/stay", None).await.body["host"],
        "src"
    );
    assert_eq!(dst.vm_state(id), None, "incoming QEMU aborted");
    assert_eq!(src.vm_state(id), Some(vinfra_types::PowerState::Running));

    // 3. The destination disconnects mid-migration.
    {
        let mut s = src.state.lock().unwrap();
        s.behaviour.fail_migration = false;
        s.behaviour.active_polls = 1000;
        s.polls.clear();
    }
    let mut dst = dst;
    let r = c
        .call("POST", "/api/v1/vms/stay/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    dst.disconnect();
    let done = wait_migration(&c, "stay").await;
    assert_eq!(done["phase"], "failed");
    assert!(
        done["error"].as_str().unwrap().contains("disconnected"),
        "{done:?}"
    );
    assert_eq!(
        c.call("GET", "/api/v1/vms/stay", None).await.body["host"],
        "src"
    );

    // 4. Cancel.
    dst.connect(c.running.agent_addr).await;
    c.wait_host_status("dst", "connected").await;
    let r = c
        .call("POST", "/api/v1/vms/stay/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.call("DELETE", "/api/v1/vms/stay/migration", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["phase"], "cancelled");
    assert_eq!(
        c.call("GET", "/api/v1/vms/stay", None).await.body["host"],
        "src"
    );
    assert_eq!(src.vm_state(id), Some(vinfra_types::PowerState::Running));
    c.shutdown().await;
}

#[tokio::test]
async fn a_restarted_console_finishes_a_migration_it_had_started() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let mut dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let body =
        vm_json("mid", 1, GIB).replace("\"name\":\"mid\"", "\"name\":\"mid\",\"host\":\"src\"");
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let token = c.token.clone();
    src.disconnect();
    dst.disconnect();
    c.shutdown().await;

    // The console went away while the VM was being sent: the record says active, the source is
    // migrating and the destination waits with an incoming QEMU.
    {
        let store = vinfra_store::SqliteStore::open(&dir.path().join("console.db")).unwrap();
        let progress = vinfra_types::MigrationProgress {
            vm: "mid".into(),
            source: "src".into(),
            destination: "dst".into(),
            phase: vinfra_types::MigrationPhase::Active,
            transferred_bytes: 0,
            remaining_bytes: 0,
            total_bytes: 0,
            rate_bps: 0,
            dirty_pages_rate: 0,
            total_time_ms: 0,
            downtime_ms: None,
            error: None,
            encrypted: false,
            started_at: 1,
        };
        let key = vinfra_console::state::records::migration_key("mid");
        vinfra_console::state::records::put(&store, &key, &progress).unwrap();
        let mut s = src.state.lock().unwrap();
        let vm = s.vms.get(&id).unwrap().0.clone();
        s.vms.get_mut(&id).unwrap().1 = vinfra_types::PowerState::Migrating;
        dst.state
            .lock()
            .unwrap()
            .vms
            .insert(id, (vm, vinfra_types::PowerState::Incoming));
    }

    let c = start_console(dir.path(), Some(token), false).await;
    assert_problem(&c.call("POST", "/api/v1/vms/mid/stop", None).await, 409);
    src.connect(c.running.agent_addr).await;
    dst.connect(c.running.agent_addr).await;
    let done = wait_migration(&c, "mid").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    assert_eq!(
        c.call("GET", "/api/v1/vms/mid", None).await.body["host"],
        "dst"
    );
    assert_eq!(src.vm_state(id), None, "source released the VM");
    c.shutdown().await;
}

#[tokio::test]
async fn migration_settings_are_validated_kept_and_applied() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    // Defaults: unlimited bandwidth, default downtime limit (fields absent or null).
    let r = c.call("GET", "/api/v1/settings", None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["migration_max_bandwidth_mib"].is_null(),
        "{:?}",
        r.body
    );
    assert!(
        r.body["migration_downtime_limit_ms"].is_null(),
        "{:?}",
        r.body
    );
    for bad in [
        r#"{"ratios":{"cpu":4,"memory":1},"migration_max_bandwidth_mib":0}"#,
        r#"{"ratios":{"cpu":4,"memory":1},"migration_max_bandwidth_mib":1000001}"#,
        r#"{"ratios":{"cpu":4,"memory":1},"migration_downtime_limit_ms":9}"#,
        r#"{"ratios":{"cpu":4,"memory":1},"migration_downtime_limit_ms":60001}"#,
        r#"{"ratios":{"cpu":4,"memory":1},"migration_downtime_limit_ms":-5}"#,
    ] {
        assert_problem(&c.call("PUT", "/api/v1/settings", Some(bad)).await, 400);
    }
    let r = c
        .call(
            "PUT",
            "/api/v1/settings",
            Some(r#"{"ratios":{"cpu":4,"memory":1},"migration_max_bandwidth_mib":100,"migration_downtime_limit_ms":500,"migration_auto_converge":false}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["migration_max_bandwidth_mib"], 100);

    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let _dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let body = vm_json("tuned", 1, GIB)
        .replace("\"name\":\"tuned\"", "\"name\":\"tuned\",\"host\":\"src\"");
    assert_eq!(c.call("POST", "/api/v1/vms", Some(&body)).await.status, 201);
    let r = c.call("POST", "/api/v1/vms/tuned/migrate", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "tuned").await["phase"], "completed");
    let sent = src.state.lock().unwrap().migrate_settings.clone();
    // No NIC: no frames to redirect at the switchover.
    assert_eq!(src.state.lock().unwrap().redirects, vec![None]);
    assert_eq!(
        sent,
        vec![vinfra_proto::MigrationSettings {
            max_bandwidth: 100 * 1024 * 1024,
            downtime_limit_ms: 500,
            auto_converge: false,
        }]
    );
    let token = c.token.clone();
    drop(src);
    c.shutdown().await;

    // A settings record written before these fields existed still loads, with the defaults.
    {
        let store = vinfra_store::SqliteStore::open(&dir.path().join("console.db")).unwrap();
        vinfra_store::Store::put(
            &store,
            vinfra_console::state::records::SETTINGS,
            br#"{"ratios":{"cpu":3.0,"memory":1.25}}"#,
            0,
        )
        .unwrap();
    }
    let c = start_console(dir.path(), Some(token), false).await;
    let r = c.call("GET", "/api/v1/settings", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ratios"]["memory"], 1.25);
    assert!(r.body["migration_max_bandwidth_mib"].is_null());
    assert!(r.body["migration_auto_converge"].is_null());
    let dst = FakeAgent::join_and_connect(&c, "dst2", HOST16).await;
    let mut src = FakeAgent::join_and_connect(&c, "src2", HOST16).await;
    let body = vm_json("plain", 1, GIB)
        .replace("\"name\":\"plain\"", "\"name\":\"plain\",\"host\":\"src2\"");
    assert_eq!(c.call("POST", "/api/v1/vms", Some(&body)).await.status, 201);
    let r = c
        .call(
            "POST",
            "/api/v1/vms/plain/migrate",
            Some(r#"{"to":"dst2"}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "plain").await["phase"], "completed");
    assert_eq!(
        src.state.lock().unwrap().migrate_settings,
        vec![vinfra_proto::MigrationSettings {
            max_bandwidth: 0,
            downtime_limit_ms: 300,
            auto_converge: true,
        }]
    );
    src.disconnect();
    drop(dst);
    c.shutdown().await;
}
