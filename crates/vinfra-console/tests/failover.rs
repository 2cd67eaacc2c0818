//! HA with fake agents and real lease files: the console restarts the HA VMs of a host it lost
//! whose lease stopped, elsewhere, and nothing of a host whose lease lives on.

mod common;

use std::time::{Duration, Instant};

use common::*;
use uuid::Uuid;
use vinfra_types::{HostCapacity, PowerState};

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// Creates VM `name` on `host`, HA on or off; its id.
async fn create(c: &TestConsole, name: &str, host: &str, ha: bool) -> Uuid {
    let mut body: serde_json::Value = serde_json::from_str(&vm_json(name, 1, 512)).unwrap();
    body["host"] = host.into();
    body["ha"] = serde_json::json!({ "enabled": ha, "priority": "high" });
    let r = c.call("POST", "/api/v1/vms", Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().parse().unwrap()
}

/// A console reading host leases from a datastore of its own (`ds`), two hosts (fake agents)
/// and the HA VM `web` on h2.
struct Pair {
    dir: tempfile::TempDir,
    ds: tempfile::TempDir,
    c: TestConsole,
    h1: FakeAgent,
    h2: FakeAgent,
    web: Uuid,
}

async fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let ds = tempfile::tempdir().unwrap();
    let c = start_ha_console(dir.path(), ds.path()).await;
    let h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    let web = create(&c, "web", "h2", true).await;
    Pair {
        dir,
        ds,
        c,
        h1,
        h2,
        web,
    }
}

async fn host_of(c: &TestConsole, vm: &str) -> String {
    let r = c.call("GET", &format!("/api/v1/vms/{vm}"), None).await;
    r.body["host"].as_str().unwrap_or_default().to_string()
}

async fn events(c: &TestConsole) -> String {
    c.call("GET", "/api/v1/events", None).await.body.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_hosts_ha_vms_restart_elsewhere_and_the_others_stay() {
    let Pair {
        dir: _dir,
        ds,
        c,
        h1,
        mut h2,
        web,
    } = pair().await;
    let batch = create(&c, "batch", "h2", false).await;
    write_lease(ds.path(), "h2", 1);

    // h2 is lost and its lease stays as it was: failed after the expiry (6 s), not before.
    let lost = Instant::now();
    h2.disconnect();
    let deadline = lost + Duration::from_secs(20);
    while h1.vm_state(web) != Some(PowerState::Running) {
        assert!(
            Instant::now() < deadline,
            "web not restarted on h1 within 20 s: {}",
            events(&c).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = lost.elapsed();
    assert!(
        took >= Duration::from_secs(6),
        "restarted after {took:?}, before the lease could be expired"
    );
    assert_eq!(host_of(&c, "web").await, "h1");
    // The VM without HA stays where it was, and is not created on h1.
    assert_eq!(host_of(&c, "batch").await, "h2");
    assert_eq!(h1.vm_state(batch), None);
    let ev = events(&c).await;
    assert!(ev.contains("HA state failed"), "{ev}");
    assert!(ev.contains("restarting on h1"), "{ev}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ev = events(&c).await;
    assert!(ev.contains("restarted by HA: runs on h1"), "{ev}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_host_whose_lease_renews_keeps_its_vms() {
    let Pair {
        dir: _dir,
        ds,
        c,
        h1,
        mut h2,
        web,
    } = pair().await;
    write_lease(ds.path(), "h2", 1);
    h2.disconnect();
    // The guard renews on: 12 s (twice the expiry) of a lost host, nothing moves.
    let until = Instant::now() + Duration::from_secs(12);
    let mut counter = 2;
    while Instant::now() < until {
        write_lease(ds.path(), "h2", counter);
        counter += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h1.vm_state(web), None, "web restarted on h1 while h2 lives");
    }
    assert_eq!(host_of(&c, "web").await, "h2");
    let ev = events(&c).await;
    assert!(ev.contains("HA state isolated"), "{ev}");
    assert!(!ev.contains("HA state failed"), "{ev}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_host_without_a_readable_lease_is_never_failed_over() {
    let Pair {
        dir: _dir,
        ds: _ds,
        c,
        h1,
        mut h2,
        web,
    } = pair().await;
    // No lease file for h2 (no guard there, or the console cannot read the datastore).
    h2.disconnect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h1.vm_state(web), None);
    assert_eq!(host_of(&c, "web").await, "h2");
    let ev = events(&c).await;
    assert!(ev.contains("HA state unprotected"), "{ev}");
    c.shutdown().await;
}

/// Marks VM `id` crashed on `agent` (its QEMU died without a stop request).
fn crash(agent: &FakeAgent, id: Uuid) {
    if let Some(v) = agent.state.lock().unwrap().vms.get_mut(&id) {
        v.1 = PowerState::Crashed;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_ha_vm_is_restarted_on_its_host_and_a_crashed_plain_vm_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    // A second host keeps the HA reserve (tolerate 1 host failure) for web.
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    let web = create(&c, "web", "h1", true).await;
    let batch = create(&c, "batch", "h1", false).await;
    // Past the settling time after the creates (the controller leaves a VM alone for 3 s
    // after an operation).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    crash(&h1, web);
    crash(&h1, batch);
    // The host's next report (every 300 ms here) shows the crash, and the VM controller acts
    // on it at once, not at its next resync (10 s).
    let crashed = Instant::now();
    let deadline = crashed + Duration::from_secs(2);
    while h1.vm_state(web) != Some(PowerState::Running) {
        assert!(
            Instant::now() < deadline,
            "web not restarted within 2 s of its crash: {}",
            events(&c).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("crash restart {:?} after the crash", crashed.elapsed());
    assert_eq!(h1.vm_state(batch), Some(PowerState::Crashed));
    let ev = events(&c).await;
    assert!(
        ev.contains("restarted after a crash (HA, attempt 1)"),
        "{ev}"
    );
    assert!(ev.contains("not restarted automatically"), "{ev}");
    c.shutdown().await;
}

/// Whether `agent` counts VM `id` as HA (what its guard is told).
fn agent_ha(agent: &FakeAgent, id: Uuid) -> Option<bool> {
    agent
        .state
        .lock()
        .unwrap()
        .vms
        .get(&id)
        .map(|v| v.0.spec.ha.enabled)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ha_policy_changed_on_a_running_vm_reaches_its_host_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    let web = create(&c, "web", "h1", false).await;
    assert_eq!(agent_ha(&h1, web), Some(false));
    for on in [true, false] {
        let body = serde_json::json!({ "ha": { "enabled": on } }).to_string();
        let r = c.call("PATCH", "/api/v1/vms/web", Some(&body)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let changed = Instant::now();
        while agent_ha(&h1, web) != Some(on) {
            assert!(
                changed.elapsed() < Duration::from_secs(2),
                "HA {on} not passed to h1 within 2 s: {}",
                events(&c).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let says = if on {
            "HA on passed to h1's guard"
        } else {
            "HA off passed to h1's guard"
        };
        // The event is written once the agent's answer is in, a moment after the agent took it.
        let mut ev = events(&c).await;
        while !ev.contains(says) && changed.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ev = events(&c).await;
        }
        assert!(ev.contains(says), "{ev}");
    }
    // Passed once each: the host's report agrees afterwards, so nothing is sent again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = h1
        .state
        .lock()
        .unwrap()
        .commands
        .iter()
        .filter(|c| c.as_str() == "SetVmHa")
        .count();
    assert_eq!(sent, 2);
    c.shutdown().await;
}

#[test]
fn crash_restarts_back_off_up_to_a_minute() {
    use vinfra_console::controllers::vm::crash_backoff;
    let waits: Vec<u64> = (1..=9).map(|n| crash_backoff(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_fenced_out_of_band_has_its_ha_vms_restarted_at_once() {
    let Pair {
        dir: _dir,
        ds: _ds,
        c,
        h1,
        mut h2,
        web,
    } = pair().await;
    let r = c
        .call(
            "PATCH",
            "/api/v1/hosts/h2",
            Some(r#"{"fence_command": "true"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // No lease at all: unprotected, nothing moves on its own.
    h2.disconnect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h1.vm_state(web), None);
    let r = c.call("POST", "/api/v1/hosts/h2/fence", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let fenced = Instant::now();
    while h1.vm_state(web) != Some(PowerState::Running) {
        assert!(
            fenced.elapsed() < Duration::from_secs(5),
            "web not restarted after the fence: {}",
            events(&c).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(events(&c).await.contains("HA state fenced"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_host_is_fenced_when_the_policy_says_so() {
    let Pair {
        dir,
        ds,
        c,
        h1,
        mut h2,
        web,
    } = pair().await;
    let marker = dir.path().join("fenced-h2");
    let cmd = format!("touch {}/fenced-$VINFRA_HOST", dir.path().display());
    let r = c
        .call(
            "PATCH",
            "/api/v1/hosts/h2",
            Some(&serde_json::json!({ "fence_command": cmd }).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut settings = c.call("GET", "/api/v1/settings", None).await.body;
    settings["ha"]["fence_isolated"] = true.into();
    settings["ha"]["isolation_fence_after_s"] = 5.into();
    let r = c
        .call("PUT", "/api/v1/settings", Some(&settings.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    write_lease(ds.path(), "h2", 1);
    h2.disconnect();
    let lost = Instant::now();
    let mut counter = 2;
    while h1.vm_state(web) != Some(PowerState::Running) {
        // h2's guard renews on: isolated, not failed.
        write_lease(ds.path(), "h2", counter);
        counter += 1;
        assert!(
            lost.elapsed() < Duration::from_secs(15),
            "web not restarted: {}",
            events(&c).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(lost.elapsed() >= Duration::from_secs(5), "fenced too early");
    assert!(marker.exists(), "the fence command did not run");
    let ev = events(&c).await;
    assert!(ev.contains("isolated for"), "{ev}");
    assert!(ev.contains("HA state fenced"), "{ev}");
    c.shutdown().await;
}
