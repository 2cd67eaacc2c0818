//! The console end to end over real sockets: REST API (TLS), store, agent endpoint (mutual TLS)
//! with fake agents: joins, VMs that fit or are refused, bad input, a restart, the VM
//! controller, the OpenAPI document.

mod common;

use std::time::Duration;

use common::*;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

#[tokio::test]
async fn join_status_and_token_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    assert!(std::fs::read_to_string(dir.path().join("token"))
        .unwrap()
        .contains(&c.token));

    let token = c.join_token().await;
    let addr = c.running.agent_addr;
    let ca = c.running.ca_pem.clone();
    join(addr, &ca, &token, "h1").await.expect("first join");
    let reused = join(addr, &ca, &token, "h2")
        .await
        .expect_err("token reuse refused");
    assert!(reused.contains("join token"), "{reused}");
    // A fresh token does not let a second host take a registered name.
    let token2 = c.join_token().await;
    let taken = join(addr, &ca, &token2, "h1")
        .await
        .expect_err("duplicate host refused");
    assert!(taken.contains("already registered"), "{taken}");
    // The refused join did not burn the token.
    join(addr, &ca, &token2, "h3")
        .await
        .expect("token still valid");
    // A token of another cluster is refused.
    let foreign = format!("vinfra-join.{}.{}", "a".repeat(64), "b".repeat(64));
    assert!(join(addr, &ca, &foreign, "h4").await.is_err());

    let mut agent = FakeAgent::join_and_connect(&c, "h5", HOST16).await;
    let r = c.call("GET", "/api/v1/hosts/h5", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "connected");
    assert_eq!(r.body["capacity"]["memory_mib"], 16 * GIB);
    assert_eq!(r.body["allocatable_vcpus"], 32);
    let hosts = c.call("GET", "/api/v1/hosts", None).await;
    assert_eq!(hosts.body.as_array().unwrap().len(), 3, "h1, h3, h5");

    agent.disconnect();
    c.wait_host_status("h5", "disconnected").await;
    // The last known capacity stays.
    let r = c.call("GET", "/api/v1/hosts/h5", None).await;
    assert_eq!(r.body["capacity"]["memory_mib"], 16 * GIB);
    c.shutdown().await;
}

#[tokio::test]
async fn fills_a_host_and_refuses_the_fifth_vm_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = c
        .call(
            "PUT",
            "/api/v1/settings",
            Some(r#"{"ratios":{"cpu":4.0,"memory":2.5}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for i in 1..=4 {
        let r = c
            .call(
                "POST",
                "/api/v1/vms",
                Some(&vm_json(&format!("vm-{i}"), 2, 10 * GIB)),
            )
            .await;
        assert_eq!(r.status, 201, "vm-{i}: {:?}", r.body);
        assert_eq!(r.body["host"], "h1");
        assert_eq!(r.body["state"], "running");
    }
    assert_eq!(agent.vm_count(), 4);
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("vm-5", 2, 10 * GIB)))
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("h1") && detail.contains("short by"),
        "{detail}"
    );
    assert!(detail.contains("vm-5"), "{detail}");
    let list = c.call("GET", "/api/v1/vms", None).await;
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vm-1", "vm-2", "vm-3", "vm-4"]);
    assert_eq!(agent.vm_count(), 4, "nothing reached the agent");
    let h = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(h.body["allocated_memory_mib"], 40 * GIB);
    assert_eq!(h.body["allocatable_memory_mib"], 40 * GIB);

    // Stopping a VM frees its share; a host override can also make room.
    let r = c
        .call("POST", "/api/v1/vms/vm-4/stop", Some(r#"{"force":true}"#))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["desired"], "stopped");
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("vm-5", 2, 10 * GIB)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/vms/vm-4/start", None).await;
    assert_problem(&r, 409);
    let r = c
        .call(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"ratios":{"cpu":4.0,"memory":3.5}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["allocatable_memory_mib"], 56 * GIB);
    let r = c.call("POST", "/api/v1/vms/vm-4/start", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "running");

    // Delete removes it from the agent and the store.
    let r = c.call("DELETE", "/api/v1/vms/vm-5?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(agent.vm_count(), 4);
    assert_problem(&c.call("GET", "/api/v1/vms/vm-5", None).await, 404);
    // Hosts with VMs cannot be deleted.
    assert_problem(&c.call("DELETE", "/api/v1/hosts/h1", None).await, 409);
    let events = c.call("GET", "/api/v1/events", None).await;
    assert!(events.body.as_array().unwrap().len() >= 6);
    c.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_cannot_share_the_last_slot() {
    let dir = tempfile::tempdir().unwrap();
    let c = std::sync::Arc::new(start_console(dir.path(), None, false).await);
    let _agent = FakeAgent::join_and_connect(
        &c,
        "h1",
        HostCapacity {
            cores: 4,
            memory_mib: 4 * GIB,
        },
    )
    .await;
    let mut tasks = vec![];
    for i in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.call(
                "POST",
                "/api/v1/vms",
                Some(&vm_json(&format!("c-{i}"), 1, GIB)),
            )
            .await
            .status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => ok += 1,
            409 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 4, "exactly 4 GiB fit");
    let list = c.call("GET", "/api/v1/vms", None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn agent_failure_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    agent.state.lock().unwrap().behaviour.fail_create = true;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("web", 1, 512)))
        .await;
    assert_problem(&r, 502);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("images/vmlinuz"),
        "{:?}",
        r.body
    );
    assert_eq!(
        c.call("GET", "/api/v1/vms", None).await.body,
        serde_json::json!([])
    );
    assert_eq!(
        c.call("GET", "/api/v1/hosts/h1", None).await.body["allocated_memory_mib"],
        0
    );
    agent.state.lock().unwrap().behaviour.fail_create = false;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("web", 1, 512)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    c.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_clear_problem() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    assert_eq!(
        c.call("POST", "/api/v1/vms", Some(&vm_json("taken", 1, 256)))
            .await
            .status,
        201
    );

    // Authentication.
    for token in [None, Some("wrong"), Some("")] {
        let r = c.call_with("GET", "/api/v1/vms", None, token).await;
        assert_problem(&r, 401);
    }
    let r = c
        .call_with(
            "POST",
            "/api/v1/vms",
            Some(&vm_json("x", 1, 256)),
            Some("vinfra_00"),
        )
        .await;
    assert_problem(&r, 401);

    let bodies: Vec<(String, u16)> = vec![
        (vm_json("Bad_Name", 1, 256), 400),
        (vm_json("../etc", 1, 256), 400),
        (vm_json("ok", 0, 256), 400),
        (vm_json("ok", 100_000, 256), 400),
        (vm_json("ok", 1, 0), 400),
        (vm_json("ok", 1, u64::MAX), 400),
        (
            vm_json("ok", 1, 256).replace("\"vcpus\":1", "\"vcpus\":-1"),
            400,
        ),
        (
            vm_json("ok", 1, 256).replace("\"vcpus\":1", "\"vcpus\":\"one\""),
            400,
        ),
        (vm_json("ok", 1, 256).replace("vmlinuz", "../vmlinuz"), 400),
        (
            vm_json("ok", 1, 256).replace("\"size_gib\":1", "\"image\":\"../../etc/shadow\""),
            400,
        ),
        (
            vm_json("ok", 1, 256).replace("\"name\":\"ok\"", "\"name\":\"ok\",\"bogus\":1"),
            400,
        ),
        ("{\"name\": ".to_string(), 400),
        ("".to_string(), 400),
        ("[]".to_string(), 400),
        (vm_json("taken", 1, 256), 409),
        (
            vm_json("ok", 1, 256).replace("\"name\":\"ok\"", "\"name\":\"ok\",\"host\":\"nohost\""),
            404,
        ),
        (
            vm_json("ok", 1, 256).replace("\"name\":\"ok\"", "\"name\":\"ok\",\"host\":\"../h\""),
            400,
        ),
        (vm_json("huge", 1, 1024 * 1024), 409),
    ];
    for (body, status) in &bodies {
        let r = c.call("POST", "/api/v1/vms", Some(body)).await;
        assert_problem(&r, *status);
    }
    assert_eq!(
        c.call("GET", "/api/v1/vms", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("GET", "/api/v1/vms/nope", None, 404),
        ("GET", "/api/v1/vms/No_Pe", None, 400),
        ("GET", "/api/v1/vms/..%2Fx", None, 400),
        ("DELETE", "/api/v1/vms/nope", None, 404),
        ("POST", "/api/v1/vms/nope/start", None, 404),
        ("POST", "/api/v1/vms/nope/stop", None, 404),
        (
            "POST",
            "/api/v1/vms/taken/stop",
            Some("{\"force\":\"yes\"}"),
            400,
        ),
        (
            "POST",
            "/api/v1/vms/taken/stop",
            Some("{\"timeout_s\":-1}"),
            400,
        ),
        (
            "POST",
            "/api/v1/vms/taken/stop",
            Some("{\"timeout_s\":99999}"),
            400,
        ),
        ("POST", "/api/v1/vms/nope/reboot", None, 404),
        ("POST", "/api/v1/vms/nope/migrate", None, 404),
        (
            "POST",
            "/api/v1/vms/taken/migrate",
            Some("{\"to\":\"nohost\"}"),
            404,
        ),
        (
            "POST",
            "/api/v1/vms/taken/migrate",
            Some("{\"to\":\"h1\"}"),
            409,
        ),
        (
            "POST",
            "/api/v1/vms/taken/migrate",
            Some("{\"to\":\"Bad/\"}"),
            400,
        ),
        ("POST", "/api/v1/vms/taken/migrate", None, 409),
        ("GET", "/api/v1/vms/taken/migration", None, 404),
        ("DELETE", "/api/v1/vms/taken/migration", None, 409),
        ("GET", "/api/v1/vms/nope/console", None, 404),
        ("GET", "/api/v1/vms/taken/console?bytes=0", None, 400),
        ("GET", "/api/v1/vms/taken/console?bytes=-1", None, 400),
        (
            "GET",
            "/api/v1/vms/taken/console?bytes=999999999",
            None,
            400,
        ),
        ("GET", "/api/v1/vms/taken/console?bogus=1", None, 400),
        ("GET", "/api/v1/hosts/nohost", None, 404),
        ("GET", "/api/v1/hosts/NoHost", None, 400),
        (
            "PATCH",
            "/api/v1/hosts/nohost",
            Some("{\"maintenance\":true}"),
            404,
        ),
        (
            "PATCH",
            "/api/v1/hosts/h1",
            Some("{\"ratios\":{\"cpu\":0,\"memory\":1}}"),
            400,
        ),
        (
            "PATCH",
            "/api/v1/hosts/h1",
            Some("{\"ratios\":{\"cpu\":-1,\"memory\":1}}"),
            400,
        ),
        (
            "PATCH",
            "/api/v1/hosts/h1",
            Some("{\"maintenance\":1}"),
            400,
        ),
        ("PATCH", "/api/v1/hosts/h1", Some("not json"), 400),
        ("DELETE", "/api/v1/hosts/nohost", None, 404),
        (
            "PUT",
            "/api/v1/settings",
            Some("{\"ratios\":{\"cpu\":1000,\"memory\":1}}"),
            400,
        ),
        (
            "PUT",
            "/api/v1/settings",
            Some("{\"ratios\":{\"cpu\":1}}"),
            400,
        ),
        ("PUT", "/api/v1/settings", Some("{}"), 400),
        ("PUT", "/api/v1/vms", None, 405),
        ("GET", "/api/v1/nothing", None, 404),
    ];
    for (method, path, body, status) in cases {
        let r = c.call(method, path, body).await;
        assert_eq!(r.status, status, "{method} {path} {body:?}: {:?}", r.body);
        assert_eq!(
            r.content_type, "application/problem+json",
            "{method} {path}"
        );
    }
    // The VM is untouched by all of that.
    let r = c.call("GET", "/api/v1/vms/taken", None).await;
    assert_eq!(r.body["desired"], "running");
    let r = c
        .call("GET", "/api/v1/vms/taken/console?bytes=14", None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["text"], "login: login: ");
    c.shutdown().await;
}

#[tokio::test]
async fn restart_keeps_vms_hosts_settings_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = c
        .call(
            "PUT",
            "/api/v1/settings",
            Some(r#"{"ratios":{"cpu":2.0,"memory":1.5}}"#),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        c.call("POST", "/api/v1/vms", Some(&vm_json("keep", 2, 2048)))
            .await
            .status,
        201
    );
    // Maintenance on: its evacuation's task runs on (the VM has nowhere to go).
    let r = c
        .call_raw("PATCH", "/api/v1/hosts/h1", Some(r#"{"maintenance":true}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(r.body["maintenance"], true);
    let token = c.token.clone();
    let ca = c.running.ca_pem.clone();
    agent.disconnect();
    c.shutdown().await;

    let c = start_console(dir.path(), Some(token), true).await;
    assert!(c.running.api_token.is_none(), "the token is created once");
    assert_eq!(c.running.ca_pem, ca, "same CA");
    let r = c.call("GET", "/api/v1/vms/keep", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["host"], "h1");
    assert_eq!(r.body["state"], "unknown");
    let r = c.call("GET", "/api/v1/settings", None).await;
    assert_eq!(r.body["ratios"]["memory"], 1.5);
    let r = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(r.body["maintenance"], true);
    assert_eq!(
        r.body["capacity"]["memory_mib"],
        16 * GIB,
        "last known capacity kept"
    );
    assert_eq!(r.body["status"], "disconnected");
    // Deleting a VM of a disconnected host needs force.
    assert_problem(&c.call("DELETE", "/api/v1/vms/keep", None).await, 409);

    // The agent reconnects with its certificate; the VM it still runs shows up.
    agent.connect(c.running.agent_addr).await;
    c.wait_host_status("h1", "connected").await;
    let r = c.call("GET", "/api/v1/vms/keep", None).await;
    assert_eq!(r.body["state"], "running");
    // The rotated token replaces the old one.
    let r = c.call("POST", "/api/v1/token/rotate", None).await;
    let new = r.body["token"].as_str().unwrap().to_string();
    assert_problem(&c.call("GET", "/api/v1/vms", None).await, 401);
    assert_eq!(
        c.call_with("GET", "/api/v1/vms", None, Some(&new))
            .await
            .status,
        200
    );
    c.shutdown().await;
}

#[tokio::test]
async fn controller_recreates_and_stops_to_match_desired_state() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let a = c
        .call("POST", "/api/v1/vms", Some(&vm_json("a", 1, 512)))
        .await;
    let b = c
        .call("POST", "/api/v1/vms", Some(&vm_json("b", 1, 512)))
        .await;
    let a_id: uuid::Uuid = a.body["id"].as_str().unwrap().parse().unwrap();
    let b_id: uuid::Uuid = b.body["id"].as_str().unwrap().parse().unwrap();
    // While disconnected, the host "loses" VM a and starts VM b against its desired state.
    agent.disconnect();
    c.wait_host_status("h1", "disconnected").await;
    let r = c.call("POST", "/api/v1/vms/b/stop", None).await;
    assert_problem(&r, 503);
    {
        let mut s = agent.state.lock().unwrap();
        s.vms.remove(&a_id);
        s.vms.get_mut(&b_id).unwrap().1 = vinfra_types::PowerState::Stopped;
        let stray = vinfra_proto::VmInstance {
            id: uuid::Uuid::new_v4(),
            spec: serde_json::from_str(&vm_json("stray", 1, 128)).unwrap(),
            started_at: None,
            slot: None,
            platform: None,
        };
        s.vms
            .insert(stray.id, (stray, vinfra_types::PowerState::Running));
    }
    agent.connect(c.running.agent_addr).await;
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if agent.vm_state(a_id) == Some(vinfra_types::PowerState::Running)
            && agent.vm_state(b_id) == Some(vinfra_types::PowerState::Running)
        {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "controller brought a and b back: {:?}",
        agent.state.lock().unwrap().commands
    );
    assert_eq!(agent.vm_count(), 3, "the stray VM is left alone");
    let events = c.call("GET", "/api/v1/events", None).await;
    let text = events.body.to_string();
    assert!(
        text.contains("stray") && text.contains("does not know"),
        "{text}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn openapi_document_lists_the_paths() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let r = c.call_with("GET", "/api/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/hosts",
        "/api/v1/hosts/{name}",
        "/api/v1/settings",
        "/api/v1/join-tokens",
        "/api/v1/token/rotate",
        "/api/v1/vms",
        "/api/v1/vms/{name}",
        "/api/v1/vms/{name}/start",
        "/api/v1/vms/{name}/stop",
        "/api/v1/vms/{name}/reboot",
        "/api/v1/vms/{name}/migrate",
        "/api/v1/vms/{name}/migration",
        "/api/v1/vms/{name}/console",
        "/api/v1/events",
        "/api/v1/networks",
        "/api/v1/networks/{name}",
        "/api/v1/vms/{name}/nics/{index}",
        "/api/v1/vms/{name}/counters",
        "/api/v1/security-groups",
        "/api/v1/security-groups/{name}",
        "/api/v1/security-groups/{name}/rules",
        "/api/v1/security-groups/{name}/rules/{id}",
        "/api/v1/routers",
        "/api/v1/routers/{name}",
        "/api/v1/routers/{name}/interfaces",
        "/api/v1/routers/{name}/interfaces/{network}",
        "/api/v1/routers/{name}/routes",
        "/api/v1/routers/{name}/routes/{addr}/{len}",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(r.body["components"]["schemas"]["VmSpec"].is_object());
    assert!(r.body["components"]["schemas"]["RouterSummary"].is_object());
    assert!(r.body["components"]["schemas"]["Problem"].is_object());
    c.shutdown().await;
}

/// `docs/openapi.json` is the document the code generates (rewrite it with
/// `VINFRA_UPDATE_OPENAPI=1 cargo test -p vinfra-console --test console openapi`), the console
/// serves that same document, and every operation documents its problem+json errors.
#[tokio::test]
async fn openapi_document_in_the_repository_is_current_and_complete() {
    use utoipa::OpenApi;
    let generated = vinfra_console::api::openapi::ApiDoc::openapi()
        .to_pretty_json()
        .unwrap()
        + "\n";
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("VINFRA_UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&file, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&file).unwrap_or_default();
    if stored != generated {
        let line = stored
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(stored.lines().count().min(generated.lines().count()), |i| i)
            + 1;
        panic!(
            "docs/openapi.json is not the document the code generates (first difference at line \
             {line}); regenerate it with:\n  VINFRA_UPDATE_OPENAPI=1 cargo test -p vinfra-console \
             --test console openapi_document_in_the_repository"
        );
    }

    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let served = c.call_with("GET", "/api/openapi.json", None, None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.body, doc, "the console serves another document");
    c.shutdown().await;

    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{what}: no success response"
            );
            for (status, r) in responses {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{what} {status}: no description"
                );
                if status.as_str() >= "400" {
                    assert_eq!(
                        r["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{what} {status}"
                    );
                }
            }
            if path == "/api/openapi.json" {
                continue;
            }
            operations += 1;
            // Every route has its role in the one table the auth middleware asks.
            let role =
                vinfra_console::interface::access::required_role(&method.to_uppercase(), path);
            assert!(role.is_some(), "{what}: not in the roles table");
            let mut want = vec!["401", "429", "500"];
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{what}: 429 without its Retry-After"
            );
            if role != Some(vinfra_types::auth::Role::Viewer) {
                want.push("403");
            }
            if path.contains("{name}") {
                want.extend(["400", "404"]);
            }
            if op.get("requestBody").is_some() {
                want.extend(["400", "408", "413"]);
            }
            for status in want {
                assert!(responses.contains_key(status), "{what}: {status} missing");
            }
        }
    }
    assert_eq!(operations, 71, "every endpoint is documented");
    let post_vms = &doc["paths"]["/api/v1/vms"]["post"]["responses"];
    for status in ["202", "400", "404", "409", "413", "502", "503", "504"] {
        assert!(post_vms.get(status).is_some(), "POST /api/v1/vms: {status}");
    }
}
