//! Tasks against a real console with fake agents (docs/design.md, "Tasks"): long operations
//! answer 202 with a task at once; a refusal is still the request's answer and leaves no task;
//! a migration's task cancelled leaves the VM on its source; a task the console was running
//! when it stopped is listed after the restart and ends as the cluster shows; bad task
//! requests are problems; a create's task is written with its VM's record; `Prefer: wait=N`
//! answers with the task once it has ended or N s have passed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vinfra_console::state::records;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// The id of a VM's record.
fn vm_id(vm: &Value) -> uuid::Uuid {
    vm["id"].as_str().unwrap().parse().unwrap()
}

fn ended(task: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&task["state"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn a_migration_task_cancelled_leaves_the_vm_on_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let _dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let id = vm_id(&create_vm_on(&c, "mover", "src", GIB).await);
    // The migration stays active (~200 s) until it is cancelled.
    src.state.lock().unwrap().behaviour.active_polls = 1000;

    let asked = Instant::now();
    let r = c
        .call_raw("POST", "/api/v1/vms/mover/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    let answered = asked.elapsed();
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert!(
        answered < Duration::from_secs(1),
        "answered after {answered:?}"
    );
    let task = r.body;
    assert_eq!(task["kind"], "vm_migrate");
    assert_eq!(task["target"], "mover");
    assert_eq!(task["state"], "running", "{task}");
    assert_eq!(task["cancellable"], true, "{task}");
    assert_eq!(task["actor"]["name"], "bootstrap", "{task}");
    let tid = task["id"].as_u64().unwrap();

    // Listed, and found by its filters.
    let l = c
        .call_raw("GET", "/api/v1/tasks?kind=vm_migrate&state=running", None)
        .await;
    assert_eq!(l.status, 200, "{:?}", l.body);
    assert!(
        l.body.as_array().unwrap().iter().any(|t| t["id"] == tid),
        "{:?}",
        l.body
    );
    let none = c.call_raw("GET", "/api/v1/tasks?target=nobody", None).await;
    assert_eq!(none.body, serde_json::json!([]));

    // Its progress moves while the memory is copied.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let now = c
        .call_raw("GET", &format!("/api/v1/tasks/{tid}"), None)
        .await;
    assert_eq!(now.body["state"], "running", "{:?}", now.body);
    assert!(
        now.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("migrating VM 'mover' from src to dst")),
        "{:?}",
        now.body
    );

    // Cancelled through its task.
    let r = c
        .call_raw("DELETE", &format!("/api/v1/tasks/{tid}"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let done = c.wait_task(tid, None).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(done["error"]["status"], 409, "{done}");
    assert!(
        done["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("it runs on src"),
        "{done}"
    );
    assert!(done["ended_at"].as_u64().is_some(), "{done}");
    assert_eq!(
        c.call("GET", "/api/v1/vms/mover", None).await.body["host"],
        "src"
    );
    assert_eq!(src.vm_state(id), Some(vinfra_types::PowerState::Running));
    let m = c.call("GET", "/api/v1/vms/mover/migration", None).await;
    assert_eq!(m.body["phase"], "cancelled", "{:?}", m.body);

    // A migration cancelled through the VM's migration ends its task cancelled too.
    let r = c
        .call_raw("POST", "/api/v1/vms/mover/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let other = r.body["id"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.call("DELETE", "/api/v1/vms/mover/migration", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let done = c.wait_task(other, None).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(
        c.call("GET", "/api/v1/vms/mover", None).await.body["host"],
        "src"
    );

    // An ended task cannot be cancelled again; nor can a task whose operation does not allow
    // it.
    assert_problem(
        &c.call_raw("DELETE", &format!("/api/v1/tasks/{tid}"), None)
            .await,
        409,
    );
    let stop = c
        .call_raw("POST", "/api/v1/vms/mover/stop", Some(r#"{"force":true}"#))
        .await;
    assert_eq!(stop.status, 202, "{:?}", stop.body);
    let sid = stop.body["id"].as_u64().unwrap();
    let stopped = c.wait_task(sid, None).await;
    assert_eq!(stopped["state"], "succeeded", "{stopped}");
    assert_eq!(stopped["result"]["desired"], "stopped", "{stopped}");
    assert_eq!(stopped["message"], "powered off", "{stopped}");
    assert_problem(
        &c.call_raw("DELETE", &format!("/api/v1/tasks/{sid}"), None)
            .await,
        409,
    );
    c.shutdown().await;
}

#[tokio::test]
async fn refusals_leave_no_task_and_bad_task_requests_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    create_vm_on(&c, "x", "a", GIB).await;
    let before = c.call_raw("GET", "/api/v1/tasks", None).await;
    let count = before.body.as_array().unwrap().len();
    assert_eq!(count, 1, "the create's task: {:?}", before.body);
    assert_eq!(before.body[0]["kind"], "vm_create");
    assert_eq!(before.body[0]["state"], "succeeded");
    assert_eq!(before.body[0]["result"]["name"], "x");

    // Refused by their checks: the problem at once, no task.
    assert_problem(
        &c.call_raw("POST", "/api/v1/vms/ghost/stop", None).await,
        404,
    );
    assert_problem(&c.call_raw("DELETE", "/api/v1/vms/x", None).await, 409);
    assert_problem(
        &c.call_raw("POST", "/api/v1/vms/x/migrate", Some(r#"{"to":"a"}"#))
            .await,
        409,
    );
    assert_problem(
        &c.call_raw("POST", "/api/v1/hosts/a/fence?force=true", None)
            .await,
        409,
    );
    // A host that is not connected: a stop or a reboot is refused at once (503).
    let mut b = FakeAgent::join_and_connect(&c, "b", HOST16).await;
    create_vm_on(&c, "y", "b", GIB).await;
    b.disconnect();
    c.wait_host_status("b", "disconnected").await;
    for action in ["stop", "reboot"] {
        assert_problem(
            &c.call_raw("POST", &format!("/api/v1/vms/y/{action}"), None)
                .await,
            503,
        );
    }
    let after = c.call_raw("GET", "/api/v1/tasks", None).await;
    assert_eq!(
        after.body.as_array().unwrap().len(),
        count + 1,
        "only y's create added a task: {:?}",
        after.body
    );

    for (path, status) in [
        ("/api/v1/tasks/999", 404),
        ("/api/v1/tasks/abc", 400),
        ("/api/v1/tasks/1?wait_s=61", 400),
        ("/api/v1/tasks/1?wait=1", 400),
        ("/api/v1/tasks?state=done", 400),
        ("/api/v1/tasks?kind=vm_explode", 400),
        ("/api/v1/tasks?limit=0", 400),
    ] {
        assert_problem(&c.call_raw("GET", path, None).await, status);
    }
    assert_problem(&c.call_raw("DELETE", "/api/v1/tasks/999", None).await, 404);

    // A long poll of an ended task answers at once.
    let t0 = Instant::now();
    let r = c.call_raw("GET", "/api/v1/tasks/1?wait_s=30", None).await;
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // Pages of tasks link on, oldest first.
    for _ in 0..3 {
        let r = c.call_raw("POST", "/api/v1/vms/x/reboot", None).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        c.wait_task(r.body["id"].as_u64().unwrap(), None).await;
    }
    let p = c.call_raw("GET", "/api/v1/tasks?limit=2", None).await;
    let ids: Vec<u64> = p
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    // Refused requests used numbers too (never reused): the ids increase, with gaps.
    assert_eq!(ids.len(), 2, "{:?}", p.body);
    assert!(ids[0] == 1 && ids[1] > ids[0], "{ids:?}");
    c.shutdown().await;
}

#[tokio::test]
async fn a_task_running_when_the_console_restarts_is_listed_and_ends_as_the_cluster_shows() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let mut dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    create_vm_on(&c, "mid", "src", GIB).await;
    src.state.lock().unwrap().behaviour.active_polls = 1000;
    let r = c
        .call_raw("POST", "/api/v1/vms/mid/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let tid = r.body["id"].as_u64().unwrap();
    // The memory is being copied when the console goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = c.call("GET", "/api/v1/vms/mid/migration", None).await;
        if m.body["phase"] == "active" {
            break;
        }
        assert!(Instant::now() < deadline, "never active: {:?}", m.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = c.token.clone();
    src.disconnect();
    dst.disconnect();
    c.shutdown().await;

    let c = start_console(dir.path(), Some(token), false).await;
    // Listed after the restart, not ended.
    let t = c
        .call_raw("GET", &format!("/api/v1/tasks/{tid}"), None)
        .await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(t.body["state"], "running", "{:?}", t.body);
    assert_eq!(t.body["kind"], "vm_migrate");
    // The hosts come back and the migration gets to its end: so does the task.
    src.state.lock().unwrap().behaviour.active_polls = 0;
    src.connect(c.running.agent_addr).await;
    dst.connect(c.running.agent_addr).await;
    let done = c.wait_task(tid, None).await;
    assert!(ended(&done));
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["phase"], "completed", "{done}");
    assert_eq!(
        c.call("GET", "/api/v1/vms/mid", None).await.body["host"],
        "dst"
    );
    // New tasks number on after it.
    let r = c.call_raw("POST", "/api/v1/vms/mid/reboot", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert!(r.body["id"].as_u64().unwrap() > tid, "{:?}", r.body);
    c.shutdown().await;
}

#[tokio::test]
async fn a_creates_task_is_written_with_the_vms_record_and_its_end_once_after() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    let mut body: Value = serde_json::from_str(&vm_json("w", 1, GIB)).unwrap();
    body["host"] = Value::from("a");
    let r = c
        .call_raw("POST", "/api/v1/vms", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["id"].as_u64().unwrap();
    let done = c.wait_task(id, None).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let store = c.running.console.store();
    let vm = store
        .get(&records::vm_key("w"))
        .unwrap()
        .expect("the VM's record");
    let task = store
        .get(&records::task_key(id))
        .unwrap()
        .expect("the task's record");
    // One transaction made both; the task's end was written once, after.
    assert_eq!(task.create_revision, vm.create_revision);
    assert_eq!(task.version, 2);
    let stored: Value = serde_json::from_slice(&task.value).unwrap();
    assert_eq!(stored["state"], "succeeded", "{stored}");
    assert_eq!(stored["id"], id);
    c.shutdown().await;
}

/// One request with a `Prefer` header: its status, `Preference-Applied`, body, and how long
/// it took.
async fn call_preferring(
    c: &TestConsole,
    method: &str,
    path: &str,
    body: &str,
    prefer: &str,
) -> (u16, Option<String>, Value, Duration) {
    let asked = Instant::now();
    let resp = c
        .client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", c.base),
        )
        .header("authorization", format!("Bearer {}", c.token))
        .header("content-type", "application/json")
        .header("prefer", prefer)
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let applied = resp
        .headers()
        .get("preference-applied")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap();
    (status, applied, body, asked.elapsed())
}

#[tokio::test]
async fn a_wait_preference_answers_with_the_task_once_it_has_ended_or_the_wait_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let _dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;

    // A create that ends within the wait: its answer is the ended task, result and all.
    let mut body: Value = serde_json::from_str(&vm_json("quick", 1, GIB)).unwrap();
    body["host"] = Value::from("src");
    let (status, applied, task, took) = call_preferring(
        &c,
        "POST",
        "/api/v1/vms",
        &body.to_string(),
        "respond-async, wait=20",
    )
    .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(applied.as_deref(), Some("wait=20"));
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["result"]["name"], "quick", "{task}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // A migration that goes on: answered, still running, once the wait has passed.
    src.state.lock().unwrap().behaviour.active_polls = 1000;
    let (status, applied, task, took) = call_preferring(
        &c,
        "POST",
        "/api/v1/vms/quick/migrate",
        r#"{"to":"dst"}"#,
        "wait=2",
    )
    .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(applied.as_deref(), Some("wait=2"));
    assert_eq!(task["state"], "running", "{task}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "took {took:?}"
    );

    // A wait that is no number is ignored: the cancel is answered at once, nothing applied.
    let (status, applied, task, took) = call_preferring(
        &c,
        "DELETE",
        "/api/v1/vms/quick/migration",
        "",
        "wait=later",
    )
    .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(applied, None);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let done = c.wait_task(task["id"].as_u64().unwrap(), None).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    c.shutdown().await;
}

#[tokio::test]
async fn the_stream_sends_each_change_of_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    create_vm_on(&c, "x", "a", GIB).await;
    let mut stream = c
        .client
        .get(format!("{}/api/v1/tasks/stream", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let r = c.call_raw("POST", "/api/v1/vms/x/reboot", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["id"].as_u64().unwrap();
    // The task's acceptance and its end, each as a `task` event with its JSON.
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut states = Vec::new();
    while Instant::now() < deadline && !states.contains(&"succeeded".to_string()) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("a change within 5 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if !event.contains("event: task") {
                continue;
            }
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data");
            let task: Value = serde_json::from_str(data).unwrap();
            if task["id"] == id {
                states.push(task["state"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(
        states.last().map(String::as_str),
        Some("succeeded"),
        "{states:?}"
    );
    drop(stream);
    c.shutdown().await;
}
