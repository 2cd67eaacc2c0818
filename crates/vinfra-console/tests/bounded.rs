//! Requests answered at once answer within 1 s, however slow the agents are (docs/design.md
//! "REST API"): a migration's cancel answers with the task that follows the migration while
//! the source takes seconds to stop it; reads through an agent that does not answer within
//! 1 s show that part without counters and with an error, or are 504 where the answer has no
//! room for it; a NIC's new settings answer while its host's switch is slow.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use vinfra_types::{HostCapacity, PowerState};

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// A request answered at once answers within this (1 s and the request's own work).
const BOUND: Duration = Duration::from_millis(1250);

/// What a host that did not answer in time is said to have done.
const SILENT: &str = "host 'h1' did not answer within 1 s";

/// Creates VM `name` on host `host` (following its task), with `nics`.
async fn create_on(c: &TestConsole, name: &str, host: &str, nics: Value) -> uuid::Uuid {
    let mut body: Value = serde_json::from_str(&vm_json(name, 1, GIB)).unwrap();
    body["host"] = json!(host);
    body["nics"] = nics;
    let r = c.call("POST", "/api/v1/vms", Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().parse().unwrap()
}

/// One request as it is answered, and how long it took.
async fn timed(c: &TestConsole, method: &str, path: &str, body: Option<&str>) -> Resp {
    let asked = Instant::now();
    let r = c.call_raw(method, path, body).await;
    let took = asked.elapsed();
    assert!(took <= BOUND, "{method} {path} answered after {took:?}");
    r
}

/// `DELETE /vms/{vm}/migration` as it is answered, with its `Location` header, within 1 s.
async fn cancel(c: &TestConsole, vm: &str) -> (u16, Option<String>, Value) {
    let asked = Instant::now();
    let resp = c
        .client
        .delete(format!("{}/api/v1/vms/{vm}/migration", c.base))
        .header("authorization", format!("Bearer {}", c.token))
        .send()
        .await
        .unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "the cancel took {took:?}");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (status, location, resp.json().await.unwrap())
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn a_migration_cancel_answers_at_once_with_the_migrations_task() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let _dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let id = create_on(&c, "slow", "src", json!([])).await;
    {
        // The migration runs until cancelled, and the source takes 2 s to stop it.
        let mut st = src.state.lock().unwrap();
        st.behaviour.active_polls = 1000;
        st.behaviour
            .slow
            .insert("CancelMigration", Duration::from_secs(2));
    }
    let r = c
        .call_raw("POST", "/api/v1/vms/slow/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let tid = r.body["id"].as_u64().unwrap();
    until("the migration copying memory", || async {
        c.call("GET", "/api/v1/vms/slow/migration", None).await.body["phase"] == "active"
    })
    .await;

    // Answered at once with the migration's own task, the cancel asked.
    let asked = Instant::now();
    let (status, location, task) = cancel(&c, "slow").await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(location.as_deref(), Some(&*format!("/api/v1/tasks/{tid}")));
    assert_eq!(task["id"], tid, "{task}");
    assert_eq!(task["kind"], "vm_migrate", "{task}");
    assert_eq!(task["state"], "running", "{task}");
    assert!(
        task["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cancel asked by")),
        "{task}"
    );

    // Its end says the cancel took: cancelled, the VM on its source.
    let done = c.wait_task(tid, None).await;
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "the source was slow to stop it: {:?}",
        asked.elapsed()
    );
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(done["error"]["status"], 409, "{done}");
    let m = c.call("GET", "/api/v1/vms/slow/migration", None).await;
    assert_eq!(m.body["phase"], "cancelled", "{:?}", m.body);
    assert_eq!(
        c.call("GET", "/api/v1/vms/slow", None).await.body["host"],
        "src"
    );
    assert_eq!(src.vm_state(id), Some(PowerState::Running));

    // No migration, or no VM: refused at once, as before.
    let r = timed(&c, "DELETE", "/api/v1/vms/slow/migration", None).await;
    assert_problem(&r, 409);
    let r = timed(&c, "DELETE", "/api/v1/vms/nobody/migration", None).await;
    assert_problem(&r, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn a_migration_no_task_follows_gets_one_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    let id = create_on(&c, "evac", "h1", json!([])).await;
    {
        let mut st = h1.state.lock().unwrap();
        st.behaviour.active_polls = 1000;
        st.behaviour
            .slow
            .insert("CancelMigration", Duration::from_secs(2));
    }
    // The balancer evacuates h1: a migration without a task.
    let body = json!({"ratios": {"cpu": 4.0, "memory": 1.0},
        "balancing": {"mode": "automatic", "interval_s": 3600, "level": 1}});
    let r = c
        .call("PUT", "/api/v1/settings", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The evacuation's own task is not followed: its migration is cancelled below.
    let r = c
        .call_raw(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance": true}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    until("the evacuation copying memory", || async {
        c.call("GET", "/api/v1/vms/evac/migration", None).await.body["phase"] == "active"
    })
    .await;
    let before = c
        .call_raw("GET", "/api/v1/tasks?kind=vm_migrate", None)
        .await;
    assert_eq!(before.body, json!([]), "{:?}", before.body);

    let (status, location, task) = cancel(&c, "evac").await;
    assert_eq!(status, 202, "{task}");
    let tid = task["id"].as_u64().unwrap();
    assert_eq!(location.as_deref(), Some(&*format!("/api/v1/tasks/{tid}")));
    assert_eq!(
        (&task["kind"], &task["target"], &task["actor"]["name"]),
        (&json!("vm_migrate"), &json!("evac"), &json!("bootstrap")),
        "{task}"
    );
    assert!(
        task["message"]
            .as_str()
            .is_some_and(|m| m.contains("cancel asked")),
        "{task}"
    );
    let r = c
        .call(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance": false}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let done = c.wait_task(tid, None).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    let m = c.call("GET", "/api/v1/vms/evac/migration", None).await;
    assert_eq!(m.body["phase"], "cancelled", "{:?}", m.body);
    assert_eq!(
        c.call("GET", "/api/v1/vms/evac", None).await.body["host"],
        "h1"
    );
    assert_eq!(h1.vm_state(id), Some(PowerState::Running));
    c.shutdown().await;
}

#[tokio::test]
async fn reads_through_a_slow_agent_answer_within_1_s() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let h1 = FakeAgent::join_and_connect_at(&c, "h1", HOST16, "10.77.0.11").await;
    let r = c
        .call(
            "POST",
            "/api/v1/networks",
            Some(r#"{"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call(
            "POST",
            "/api/v1/security-groups",
            Some(r#"{"name": "web"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    create_on(
        &c,
        "a",
        "h1",
        json!([{"network": "blue", "security_groups": ["web"]}]),
    )
    .await;
    wait_config(&h1, "a's firewall", |cfg| cfg.firewalls.len() == 1).await;

    // Answered in time, every read shows the counters.
    let r = timed(&c, "GET", "/api/v1/vms/a/counters", None).await;
    assert!(r.body["nics"][0]["counters"].is_object(), "{:?}", r.body);

    // h1 carries out every read (and switch configuration) but answers 3 s later.
    for slow in ["SwitchCounters", "ConsoleRead", "ApplySwitchConfig"] {
        h1.state
            .lock()
            .unwrap()
            .behaviour
            .slow
            .insert(slow, Duration::from_secs(3));
    }
    let silent = |v: &Value| v["error"].as_str().is_some_and(|e| e.contains(SILENT));

    let r = timed(&c, "GET", "/api/v1/vms/a/counters", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let nic = &r.body["nics"][0];
    assert!(nic["counters"].is_null() && silent(nic), "{nic}");

    let r = timed(&c, "GET", "/api/v1/networks/blue/counters", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let host = &r.body["hosts"][0];
    assert_eq!(host["host"], "h1", "{host}");
    assert!(host["counters"].is_null() && silent(host), "{host}");
    let port = &r.body["ports"][0];
    assert!(port["counters"].is_null() && silent(port), "{port}");
    assert_eq!(r.body["total"]["hosts_missing"], 1, "{:?}", r.body);

    let r = timed(&c, "GET", "/api/v1/security-groups/web/counters", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let member = &r.body["members"][0];
    assert!(
        member["connections"].is_null() && silent(member),
        "{member}"
    );

    // No room for an error in the answer: 504.
    for path in ["/api/v1/hosts/h1/switch", "/api/v1/vms/a/console"] {
        let r = timed(&c, "GET", path, None).await;
        assert_problem(&r, 504);
        assert_eq!(r.body["type"], "/problems/agent-timeout", "{:?}", r.body);
        assert!(
            r.body["detail"].as_str().unwrap().contains(SILENT),
            "{:?}",
            r.body
        );
    }

    // A NIC's new QoS: written and answered; the host gets it all the same.
    let r = timed(
        &c,
        "PATCH",
        "/api/v1/vms/a/nics/0",
        Some(r#"{"qos":{"egress":{"bits_per_sec":8000000}}}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["spec"]["nics"][0]["qos"]["egress"]["bits_per_sec"],
        8_000_000
    );
    wait_config(&h1, "a's QoS", |cfg| cfg.qos.len() == 1).await;

    // Quick again, the counters are back.
    h1.state.lock().unwrap().behaviour.slow.clear();
    let r = timed(&c, "GET", "/api/v1/vms/a/counters", None).await;
    assert!(r.body["nics"][0]["counters"].is_object(), "{:?}", r.body);
    c.shutdown().await;
}
