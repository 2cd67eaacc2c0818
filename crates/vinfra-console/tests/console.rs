//! The console end to end over real sockets: REST API (TLS), store, agent endpoint (mutual TLS)
//! with fake agents.

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
