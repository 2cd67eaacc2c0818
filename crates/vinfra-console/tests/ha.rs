//! High availability as the operator sets it, end to end over real sockets with fake agents: a
//! VM's HA policy (at create, changed in part by PATCH, start-afters checked for unknown VMs,
//! the VM itself and cycles, cleared when the VM they name is deleted), the cluster's HA
//! settings, a host's fence command (never shown) and the fence itself (refusals, a command that
//! fails, one that runs out of time, one that succeeds; events and `fenced_at`, cleared when the
//! host's agent is back).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// A VM request (`vm_json`) with `ha` added.
fn vm_with_ha(name: &str, ha: Value) -> String {
    let mut v: Value = serde_json::from_str(&vm_json(name, 1, 512)).unwrap();
    v["ha"] = ha;
    v.to_string()
}

async fn events(c: &TestConsole) -> Vec<Value> {
    let r = c.call("GET", "/api/v1/events", None).await;
    assert_eq!(r.status, 200);
    r.body.as_array().unwrap().clone()
}

/// The messages of the events about `object`.
async fn messages(c: &TestConsole, object: &str) -> Vec<String> {
    events(c)
        .await
        .iter()
        .filter(|e| e["object"] == object)
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

async fn ha_of(c: &TestConsole, vm: &str) -> Value {
    let r = c.call("GET", &format!("/api/v1/vms/{vm}"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["spec"]["ha"].clone()
}

async fn patch_vm(c: &TestConsole, vm: &str, body: &str) -> Resp {
    c.call("PATCH", &format!("/api/v1/vms/{vm}"), Some(body))
        .await
}

/// A 422 `invalid-start-after` problem whose detail contains `says`.
fn assert_start_after_refused(r: &Resp, says: &str) {
    assert_problem(r, 422);
    assert_eq!(r.body["type"], "/problems/invalid-start-after");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains(says), "{detail}");
}

#[tokio::test]
async fn vm_ha_policy_is_created_changed_in_part_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    // One host: no HA reserve can hold; admission control is tests/admission.rs's.
    let mut settings = c.call("GET", "/api/v1/settings", None).await.body;
    settings["ha"]["tolerate_host_failures"] = 0.into();
    let r = c
        .call("PUT", "/api/v1/settings", Some(&settings.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Without `ha`: off, medium, no start-after.
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("db", 1, 512)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["spec"]["ha"],
        json!({"enabled": false, "priority": "medium", "start_after": null})
    );
    let web = vm_with_ha(
        "web",
        json!({"enabled": true, "priority": "high", "start_after": "db"}),
    );
    let r = c.call("POST", "/api/v1/vms", Some(&web)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        ha_of(&c, "web").await,
        json!({"enabled": true, "priority": "high", "start_after": "db"})
    );
    let listed = c.call("GET", "/api/v1/vms", None).await;
    let listed_web = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web")
        .unwrap()
        .clone();
    assert_eq!(listed_web["spec"]["ha"]["priority"], "high");

    // Refused creations leave nothing: no record, nothing on the host.
    let vms_before = agent.vm_count();
    for (name, ha, status, says) in [
        (
            "bad-1",
            json!({"enabled": true, "start_after": "ghost"}),
            422,
            "ghost",
        ),
        ("self-1", json!({"start_after": "self-1"}), 422, "itself"),
        (
            "bad-2",
            json!({"start_after": "Bad_Name"}),
            400,
            "ha.start_after",
        ),
        ("bad-3", json!({"priority": "urgent"}), 400, "urgent"),
        ("bad-4", json!({"enabled": true, "bogus": 1}), 400, "bogus"),
    ] {
        let r = c
            .call("POST", "/api/v1/vms", Some(&vm_with_ha(name, ha)))
            .await;
        assert_problem(&r, status);
        assert!(
            r.body["detail"].as_str().unwrap().contains(says),
            "{name}: {:?}",
            r.body
        );
        let gone = c.call("GET", &format!("/api/v1/vms/{name}"), None).await;
        assert_eq!(gone.status, 404, "{name}");
    }
    assert_eq!(agent.vm_count(), vms_before);

    // A PATCH changes only the fields it names.
    let r = patch_vm(&c, "web", r#"{"ha":{"priority":"low"}}"#).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["spec"]["ha"],
        json!({"enabled": true, "priority": "low", "start_after": "db"})
    );
    let r = patch_vm(&c, "web", r#"{"ha":{"start_after":null}}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ha_of(&c, "web").await,
        json!({"enabled": true, "priority": "low", "start_after": null})
    );
    let r = patch_vm(&c, "web", r#"{"ha":{"enabled":false,"start_after":"db"}}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ha_of(&c, "web").await,
        json!({"enabled": false, "priority": "low", "start_after": "db"})
    );
    // An empty change changes nothing.
    for empty in ["{}", r#"{"ha":{}}"#] {
        let r = patch_vm(&c, "web", empty).await;
        assert_eq!(r.status, 200, "{empty}");
        assert_eq!(r.body["spec"]["ha"]["start_after"], "db");
    }
    assert!(
        messages(&c, "web")
            .await
            .contains(&"HA off, priority low, start after db".to_string()),
        "{:?}",
        messages(&c, "web").await
    );

    // Every bad change is refused and changes nothing.
    let web_before = c.call("GET", "/api/v1/vms/web", None).await.body;
    let db_before = c.call("GET", "/api/v1/vms/db", None).await.body;
    let events_before = events(&c).await.len();
    let cases: [(&str, &str, u16, &str); 8] = [
        (
            "db",
            r#"{"ha":{"start_after":"web"}}"#,
            422,
            "db -> web -> db",
        ),
        ("web", r#"{"ha":{"start_after":"web"}}"#, 422, "itself"),
        ("web", r#"{"ha":{"start_after":"ghost"}}"#, 422, "'ghost'"),
        (
            "web",
            r#"{"ha":{"start_after":"Bad_Name"}}"#,
            400,
            "ha.start_after",
        ),
        ("web", r#"{"ha":{"priority":"urgent"}}"#, 400, "urgent"),
        (
            "web",
            r#"{"ha":{"enabled":true,"x":1}}"#,
            400,
            "unknown field",
        ),
        ("web", r#"{"spec":{"vcpus":4}}"#, 400, "unknown field"),
        ("ghost", r#"{"ha":{"enabled":true}}"#, 404, "ghost"),
    ];
    for (vm, body, status, says) in cases {
        let r = patch_vm(&c, vm, body).await;
        assert_problem(&r, status);
        if status == 422 {
            assert_start_after_refused(&r, says);
        }
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{vm} {body}: {detail}");
    }
    let r = c.call("PATCH", "/api/v1/vms/web", None).await;
    assert_problem(&r, 400);
    assert_eq!(
        c.call("GET", "/api/v1/vms/web", None).await.body,
        web_before
    );
    assert_eq!(c.call("GET", "/api/v1/vms/db", None).await.body, db_before);
    assert_eq!(events(&c).await.len(), events_before, "no event either");

    // A longer circle: a after b after c; c after a closes it.
    for name in ["a", "b", "c"] {
        let r = c
            .call("POST", "/api/v1/vms", Some(&vm_json(name, 1, 256)))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    assert_eq!(
        patch_vm(&c, "a", r#"{"ha":{"start_after":"b"}}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        patch_vm(&c, "b", r#"{"ha":{"start_after":"c"}}"#)
            .await
            .status,
        200
    );
    let r = patch_vm(&c, "c", r#"{"ha":{"start_after":"a"}}"#).await;
    assert_start_after_refused(
        &r,
        "VM 'c': start_after 'a' makes a start-after cycle: c -> a -> b -> c",
    );
    assert_eq!(ha_of(&c, "c").await["start_after"], Value::Null);
    // Not a circle: c after db, and web after c.
    assert_eq!(
        patch_vm(&c, "c", r#"{"ha":{"start_after":"db"}}"#)
            .await
            .status,
        200
    );

    // Deleting a VM that others start after is allowed; their start-after goes, with an event.
    let r = c.call("DELETE", "/api/v1/vms/db?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for vm in ["web", "c"] {
        let ha = ha_of(&c, vm).await;
        assert_eq!(ha["start_after"], Value::Null, "{vm}");
        assert!(
            messages(&c, vm)
                .await
                .contains(&"HA start-after cleared: VM db was deleted".to_string()),
            "{vm}"
        );
    }
    assert_eq!(ha_of(&c, "web").await["priority"], "low", "the rest stays");
    assert_eq!(ha_of(&c, "a").await["start_after"], "b", "others untouched");

    // The policy survives a console restart (it is in the VM's record).
    drop(agent);
    let token = c.token.clone();
    c.shutdown().await;
    let c = start_console(dir.path(), Some(token), true).await;
    assert_eq!(ha_of(&c, "a").await["start_after"], "b");
    c.shutdown().await;
}

#[tokio::test]
async fn cluster_ha_settings_are_validated_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let r = c.call("GET", "/api/v1/settings", None).await;
    assert_eq!(
        r.body["ha"],
        json!({
            "tolerate_host_failures": 1,
            "isolation_response": "keep-running",
            "fence_isolated": false,
            "isolation_fence_after_s": 30
        })
    );
    let with_ha = |ha: Value| json!({"ratios": {"cpu": 4.0, "memory": 1.0}, "ha": ha}).to_string();
    let before = c.call("GET", "/api/v1/settings", None).await.body;
    for (ha, says) in [
        (
            json!({"tolerate_host_failures": 33}),
            "ha.tolerate_host_failures must be between 0 and 32, got 33",
        ),
        (
            json!({"isolation_fence_after_s": 4}),
            "ha.isolation_fence_after_s must be between 5 and 3600, got 4",
        ),
        (
            json!({"isolation_fence_after_s": 3601}),
            "ha.isolation_fence_after_s must be between 5 and 3600, got 3601",
        ),
        (json!({"isolation_response": "reboot"}), "reboot"),
        (json!({"isolation_response": "power_off"}), "power_off"),
        (json!({"fence_isolated": "yes"}), "expected a boolean"),
        (json!({"bogus": 1}), "bogus"),
        (json!({"tolerate_host_failures": -1}), "invalid value"),
    ] {
        let r = c.call("PUT", "/api/v1/settings", Some(&with_ha(ha))).await;
        assert_problem(&r, 400);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail}");
        assert_eq!(c.call("GET", "/api/v1/settings", None).await.body, before);
    }
    let ha = json!({
        "tolerate_host_failures": 2,
        "isolation_response": "power-off",
        "fence_isolated": true,
        "isolation_fence_after_s": 45
    });
    let r = c
        .call("PUT", "/api/v1/settings", Some(&with_ha(ha.clone())))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ha"], ha);
    assert_eq!(c.call("GET", "/api/v1/settings", None).await.body["ha"], ha);
    assert!(messages(&c, "cluster").await.contains(
        &"HA: tolerate 2 host failures, isolation response power-off, fence isolated hosts after 45 s"
            .to_string()
    ));
    // Only some fields: the others take their defaults.
    let r = c
        .call(
            "PUT",
            "/api/v1/settings",
            Some(&with_ha(json!({"isolation_response": "shutdown"}))),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["ha"]["tolerate_host_failures"], 1);
    assert_eq!(r.body["ha"]["isolation_response"], "shutdown");
    c.shutdown().await;
}

/// Host `name` as the API shows it.
async fn host(c: &TestConsole, name: &str) -> Value {
    let r = c.call("GET", &format!("/api/v1/hosts/{name}"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

async fn set_fence(c: &TestConsole, name: &str, command: Option<&str>) -> Resp {
    let body = json!({ "fence_command": command }).to_string();
    c.call("PATCH", &format!("/api/v1/hosts/{name}"), Some(&body))
        .await
}

#[tokio::test]
async fn fence_commands_are_checked_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    assert_eq!(host(&c, "h1").await["fence_command_set"], false);
    assert_eq!(host(&c, "h1").await["fenced_at"], Value::Null);

    let secret = "ipmitool -H bmc1 -U admin -P s3cret-pw chassis power off";
    let r = set_fence(&c, "h1", Some(secret)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["fence_command_set"], true);
    assert_eq!(host(&c, "h1").await["fence_command_set"], true);
    // Nowhere in the API: not in the host, the host list, the events.
    for path in ["/api/v1/hosts/h1", "/api/v1/hosts", "/api/v1/events"] {
        let text = c.call("GET", path, None).await.body.to_string();
        assert!(!text.contains("s3cret"), "{path}: {text}");
    }
    assert!(messages(&c, "h1")
        .await
        .iter()
        .any(|m| m.ends_with("fence command set")));

    // Bad commands are refused and change nothing.
    let long = "a".repeat(4097);
    for (body, says) in [
        (json!({"fence_command": long}), "4097 bytes"),
        (json!({"fence_command": "a\u{0}b"}), "NUL"),
        (json!({"fence_command": "  "}), "empty"),
        (json!({"fence_command": 7}), "expected a string"),
        (json!({"fence_command": ["x"]}), "expected a string"),
    ] {
        let r = c
            .call("PATCH", "/api/v1/hosts/h1", Some(&body.to_string()))
            .await;
        assert_problem(&r, 400);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail}");
        assert_eq!(host(&c, "h1").await["fence_command_set"], true);
    }
    let r = set_fence(&c, "ghost", Some("true")).await;
    assert_problem(&r, 404);
    // The longest command accepted.
    assert_eq!(
        set_fence(&c, "h1", Some(&"a".repeat(4096))).await.status,
        200
    );

    // Another change leaves it; null removes it.
    let r = c
        .call("PATCH", "/api/v1/hosts/h1", Some(r#"{"maintenance":true}"#))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["fence_command_set"], true);
    let r = set_fence(&c, "h1", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["fence_command_set"], false);
    assert_eq!(r.body["maintenance"], true);
    c.shutdown().await;
}

/// `POST /hosts/{name}/fence`, with `?force=true` when `force`.
async fn fence(c: &TestConsole, name: &str, force: bool) -> Resp {
    let q = if force { "?force=true" } else { "" };
    c.call("POST", &format!("/api/v1/hosts/{name}/fence{q}"), None)
        .await
}

#[tokio::test]
async fn fence_runs_the_command_once_at_a_time_and_records_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    // Fence commands get 1 s here (60 s by default).
    let c = start_console_with(dir.path(), None, true, |config| {
        config.fence_timeout = Duration::from_secs(1)
    })
    .await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let mut h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    h2.disconnect();
    c.wait_host_status("h2", "disconnected").await;
    let marker = dir.path().join("fence-ran");

    assert_problem(&fence(&c, "ghost", false).await, 404);
    let r = fence(&c, "h2", false).await;
    assert_problem(&r, 409);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("has no fence command"),
        "{:?}",
        r.body
    );
    // A connected host is not fenced unless forced.
    let touch = format!("touch {}; echo power off", marker.display());
    assert_eq!(set_fence(&c, "h1", Some(&touch)).await.status, 200);
    let r = fence(&c, "h1", false).await;
    assert_problem(&r, 409);
    assert!(r.body["detail"].as_str().unwrap().contains("is connected"));
    assert!(!marker.exists(), "the command did not run");
    assert_eq!(host(&c, "h1").await["fenced_at"], Value::Null);
    let r = fence(&c, "h1", true).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(marker.exists());
    assert_eq!(r.body["fenced"], true);
    assert!(host(&c, "h1").await["fenced_at"].is_u64());

    // A command that exits 1: 502 with its output, in the events too; no fenced_at.
    let fails = "echo 'BMC says no' >&2; exit 1";
    assert_eq!(set_fence(&c, "h2", Some(fails)).await.status, 200);
    let r = fence(&c, "h2", false).await;
    assert_problem(&r, 502);
    assert_eq!(r.body["type"], "/problems/fence-failed");
    assert_eq!(
        r.body["detail"],
        "fencing host 'h2' failed: exit 1: BMC says no"
    );
    assert_eq!(host(&c, "h2").await["fenced_at"], Value::Null);
    let told = messages(&c, "h2").await;
    assert!(
        told.contains(
            &"fencing host h2: running its fence command (asked by the operator)".to_string()
        ),
        "{told:?}"
    );
    assert!(
        told.contains(&"fencing host 'h2' failed: exit 1: BMC says no".to_string()),
        "{told:?}"
    );

    // A command that runs longer than the timeout is killed: 502, timed out.
    let hangs = "echo started; sleep 30";
    assert_eq!(set_fence(&c, "h2", Some(hangs)).await.status, 200);
    let begun = Instant::now();
    let r = fence(&c, "h2", false).await;
    let took = begun.elapsed();
    assert_problem(&r, 502);
    assert_eq!(
        r.body["detail"],
        "fencing host 'h2' failed: timed out after 1 s: started"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(host(&c, "h2").await["fenced_at"], Value::Null);
    assert!(messages(&c, "h2")
        .await
        .contains(&"fencing host 'h2' failed: timed out after 1 s: started".to_string()));

    // One fence of a host at a time.
    let slow = "sleep 0.6; echo slow fence done";
    assert_eq!(set_fence(&c, "h2", Some(slow)).await.status, 200);
    let (first, second) = tokio::join!(fence(&c, "h2", false), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        fence(&c, "h2", false).await
    });
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_problem(&second, 409);
    assert!(second.body["detail"]
        .as_str()
        .unwrap()
        .contains("being fenced already"));

    // A caller that stops waiting stops neither the fence nor its record.
    let fenced_events = |told: Vec<String>| {
        told.iter()
            .filter(|m| m.starts_with("host h2 fenced ("))
            .count()
    };
    let before = fenced_events(messages(&c, "h2").await);
    let gave_up = tokio::time::timeout(Duration::from_millis(200), fence(&c, "h2", false)).await;
    assert!(gave_up.is_err(), "the caller gave up");
    let r = fence(&c, "h2", false).await;
    assert_problem(&r, 409);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fenced_events(messages(&c, "h2").await) == before {
        assert!(
            Instant::now() < deadline,
            "the abandoned fence was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A command that succeeds: its exit, time, output; fenced_at set; events.
    let ok = r#"test "$VINFRA_HOST" = h2 && echo "powered off $VINFRA_HOST""#;
    assert_eq!(set_fence(&c, "h2", Some(ok)).await.status, 200);
    let before = vinfra_console::state::records::now_s();
    let r = fence(&c, "h2", false).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["host"], "h2");
    assert_eq!(r.body["fenced"], true);
    assert_eq!(r.body["exit_code"], 0);
    assert_eq!(r.body["timed_out"], false);
    assert_eq!(r.body["output_tail"], "powered off h2\n");
    let ms = r.body["duration_ms"].as_u64().unwrap();
    let at = host(&c, "h2").await["fenced_at"].as_u64().unwrap();
    assert!(at >= before && at <= vinfra_console::state::records::now_s());
    assert!(messages(&c, "h2")
        .await
        .contains(&format!("host h2 fenced (exit 0, {ms} ms)")));

    // The HA controller's entry point does the same.
    let o = c
        .running
        .console
        .fence_host("h2", "host failed")
        .await
        .expect("fenced");
    assert!(o.fenced);
    assert!(messages(&c, "h2")
        .await
        .contains(&"fencing host h2: running its fence command (host failed)".to_string()));

    // When the host's agent is back, fenced_at goes, with an event.
    h2.connect(c.running.agent_addr).await;
    c.wait_host_status("h2", "connected").await;
    assert_eq!(host(&c, "h2").await["fenced_at"], Value::Null);
    assert!(messages(&c, "h2")
        .await
        .contains(&"host h2 is back after being fenced".to_string()));
    c.shutdown().await;
}
