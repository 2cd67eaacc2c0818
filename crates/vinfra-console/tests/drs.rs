//! Balancing in the console, with fake agents: placement rules (checked, refused when
//! contradictory, honoured by placement), the modes off / manual / automatic, maintenance
//! evacuation, hysteresis and bad input.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST: HostCapacity = HostCapacity {
    cores: 4,
    memory_mib: 8 * GIB,
};

async fn console() -> (TestConsole, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    (c, dir)
}

async fn create(c: &TestConsole, name: &str) -> Resp {
    c.call("POST", "/api/v1/vms", Some(&vm_json(name, 1, 512)))
        .await
}

async fn host_of(c: &TestConsole, vm: &str) -> String {
    let r = c.call("GET", &format!("/api/v1/vms/{vm}"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["host"].as_str().unwrap().to_string()
}

async fn post_rule(c: &TestConsole, rule: Value) -> Resp {
    c.call("POST", "/api/v1/rules", Some(&rule.to_string()))
        .await
}

async fn events(c: &TestConsole, kind: &str) -> Vec<Value> {
    let r = c.call("GET", "/api/v1/events", None).await;
    assert_eq!(r.status, 200);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// Polls `f` every 100 ms, at most 30 s; panics naming `what`.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn wait_host(c: &TestConsole, vm: &str, host: &str) {
    until(&format!("{vm} on {host}"), || async {
        host_of(c, vm).await == host
    })
    .await;
}

/// Waits until the drs event history has an entry for `vm` containing `needle`.
async fn wait_drs_event(c: &TestConsole, vm: &str, needle: &str) -> Value {
    for _ in 0..300 {
        let found = events(c, "drs").await.into_iter().find(|e| {
            e["object"] == vm && e["message"].as_str().is_some_and(|m| m.contains(needle))
        });
        if let Some(e) = found {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no drs event for {vm} with '{needle}': {:?}",
        events(c, "drs").await
    );
}

#[tokio::test]
async fn rules_are_checked_and_contradictions_refused_with_nothing_stored() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    for vm in ["ra", "rb", "rc"] {
        assert_eq!(create(&c, vm).await.status, 201);
    }

    let r = post_rule(
        &c,
        json!({"name": "db-pair", "strength": "must", "kind": "affinity", "vms": ["ra", "rb"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["kind"], "affinity");

    // Together and apart: refused with the library's message, nothing stored.
    let r = post_rule(
        &c,
        json!({"name": "split", "strength": "must", "kind": "anti_affinity", "vms": ["rb", "ra"]}),
    )
    .await;
    assert_problem(&r, 409);
    assert_eq!(r.body["type"], "/problems/rule-conflict");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("contradict"), "{detail}");
    assert!(
        detail.contains("db-pair") && detail.contains("split"),
        "{detail}"
    );
    assert_problem(&c.call("GET", "/api/v1/rules/split", None).await, 404);

    // Three VMs kept apart on two hosts.
    let r = post_rule(
        &c,
        json!({"name": "spread3", "strength": "must", "kind": "anti_affinity", "vms": ["ra", "rc", "rx"]}),
    )
    .await;
    assert_problem(&r, 409);
    assert!(r.body["detail"].as_str().unwrap().contains("2"));

    // Run on h1 and not on h1: no host left.
    let r = post_rule(
        &c,
        json!({"name": "on-h1", "strength": "must", "kind": "run_on", "vms": ["rc"], "hosts": ["h1"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = post_rule(
        &c,
        json!({"name": "off-h1", "strength": "must", "kind": "not_on", "vms": ["rc"], "hosts": ["h1"]}),
    )
    .await;
    assert_problem(&r, 409);
    assert!(r.body["detail"].as_str().unwrap().contains("no host"));

    // A should-rule never contradicts.
    let r = post_rule(
        &c,
        json!({"name": "soft-off", "strength": "should", "kind": "not_on", "vms": ["rc"], "hosts": ["h1"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Bad input.
    let r = post_rule(
        &c,
        json!({"name": "db-pair", "strength": "should", "kind": "affinity", "vms": ["ra", "rc"]}),
    )
    .await;
    assert_problem(&r, 409);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    let r = post_rule(
        &c,
        json!({"name": "ghost", "strength": "must", "kind": "run_on", "vms": ["ra"], "hosts": ["h9"]}),
    )
    .await;
    assert_problem(&r, 422);
    assert_eq!(r.body["type"], "/problems/invalid-rule");
    for bad in [
        json!({"name": "x", "strength": "always", "kind": "affinity", "vms": ["ra", "rb"]}),
        json!({"name": "x", "strength": "must", "kind": "near", "vms": ["ra", "rb"]}),
        json!({"name": "x", "strength": "must", "kind": "affinity", "vms": ["ra"]}),
        json!({"name": "x", "strength": "must", "kind": "affinity", "vms": ["ra", "ra"]}),
        json!({"name": "x", "strength": "must", "kind": "affinity", "vms": ["ra", "rb"], "hosts": ["h1"]}),
        json!({"name": "x", "strength": "must", "kind": "run_on", "vms": ["ra"]}),
        json!({"name": "x", "strength": "must", "kind": "run_on", "vms": [], "hosts": ["h1"]}),
        json!({"name": "Bad_Name", "strength": "must", "kind": "affinity", "vms": ["ra", "rb"]}),
        json!({"name": "x", "strength": "must", "kind": "affinity", "vms": ["ra", "../rb"]}),
        json!({"name": "x", "strength": "must", "kind": "affinity", "vms": ["ra", "rb"], "extra": 1}),
    ] {
        let r = post_rule(&c, bad.clone()).await;
        assert_problem(&r, 400);
        assert!(
            c.call("GET", "/api/v1/rules/x", None).await.status == 404,
            "{bad} was stored"
        );
    }

    let r = c.call("GET", "/api/v1/rules", None).await;
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db-pair", "on-h1", "soft-off"]);
    assert_eq!(
        c.call("DELETE", "/api/v1/rules/soft-off", None)
            .await
            .status,
        204
    );
    assert_problem(&c.call("DELETE", "/api/v1/rules/soft-off", None).await, 404);
    assert_problem(&c.call("GET", "/api/v1/rules/soft-off", None).await, 404);
    assert!(events(&c, "rule").await.len() >= 4);
    c.shutdown().await;
}

#[tokio::test]
async fn placement_of_new_vms_follows_must_rules_from_the_start() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    // h2 is fuller, so plain spreading would pick h1.
    create_vm_on(&c, "filler", "h2", 512).await;

    // Rules may name VMs that do not exist yet.
    let r = post_rule(
        &c,
        json!({"name": "pin", "strength": "must", "kind": "run_on", "vms": ["pinned"], "hosts": ["h2"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(create(&c, "pinned").await.status, 201);
    assert_eq!(host_of(&c, "pinned").await, "h2");
    assert_eq!(create(&c, "free").await.status, 201);
    assert_eq!(host_of(&c, "free").await, "h1");

    // Anti-affinity: the second VM goes where the first is not.
    let r = post_rule(
        &c,
        json!({"name": "apart", "strength": "must", "kind": "anti_affinity", "vms": ["pa", "pb"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    create_vm_on(&c, "pa", "h1", 512).await;
    assert_eq!(create(&c, "pb").await.status, 201);
    assert_eq!(host_of(&c, "pb").await, "h2");

    // A host named by the operator that breaks a must-rule is refused; nothing is created.
    let r = post_rule(
        &c,
        json!({"name": "not-h1", "strength": "must", "kind": "not_on", "vms": ["nh"], "hosts": ["h1"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut body: Value = serde_json::from_str(&vm_json("nh", 1, 512)).unwrap();
    body["host"] = json!("h1");
    let r = c.call("POST", "/api/v1/vms", Some(&body.to_string())).await;
    assert_problem(&r, 409);
    assert!(r.body["detail"].as_str().unwrap().contains("not-h1"));
    assert_problem(&c.call("GET", "/api/v1/vms/nh", None).await, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn a_migration_without_a_destination_keeps_the_must_rules() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    let _h3 = FakeAgent::join_and_connect(&c, "h3", HOST).await;
    // h3 is fuller than h2, so plain spreading would send a VM leaving h1 to h2.
    create_vm_on(&c, "filler", "h3", 512).await;
    let r = post_rule(
        &c,
        json!({"name": "off-h2", "strength": "must", "kind": "not_on", "vms": ["mover"], "hosts": ["h2"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    create_vm_on(&c, "mover", "h1", 512).await;
    let r = c.call("POST", "/api/v1/vms/mover/migrate", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["destination"], "h3", "{:?}", r.body);
    assert_eq!(wait_migration(&c, "mover").await["phase"], "completed");
    assert_eq!(host_of(&c, "mover").await, "h3");

    // A VM that must stay with a partner cannot leave the partner's host without it: refused,
    // nothing moves.
    let r = post_rule(
        &c,
        json!({"name": "pair", "strength": "must", "kind": "affinity", "vms": ["ma", "mb"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    create_vm_on(&c, "ma", "h1", 512).await;
    assert_eq!(create(&c, "mb").await.status, 201);
    assert_eq!(host_of(&c, "mb").await, "h1", "placed with its partner");
    let r = c.call("POST", "/api/v1/vms/ma/migrate", None).await;
    assert_problem(&r, 409);
    assert_eq!(r.body["type"], "/problems/rule-conflict", "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("'pair'"),
        "{:?}",
        r.body
    );
    assert_eq!(host_of(&c, "ma").await, "h1");
    // A destination named by the operator is checked against the must-rules too: refused,
    // naming the rule, nothing moves.
    let r = c
        .call("POST", "/api/v1/vms/ma/migrate", Some(r#"{"to":"h2"}"#))
        .await;
    assert_problem(&r, 409);
    assert_eq!(r.body["type"], "/problems/rule-conflict", "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("host h2") && detail.contains("must-rule 'pair'"),
        "{detail}"
    );
    assert_eq!(host_of(&c, "ma").await, "h1");
    assert_problem(&c.call("GET", "/api/v1/vms/ma/migration", None).await, 404);
    // Without the rule, the same move goes.
    let r = c.call("DELETE", "/api/v1/rules/pair", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = c
        .call("POST", "/api/v1/vms/ma/migrate", Some(r#"{"to":"h2"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "ma").await["phase"], "completed");
    assert_eq!(host_of(&c, "ma").await, "h2");
    c.shutdown().await;
}

#[tokio::test]
async fn bad_balancing_settings_are_refused_and_change_nothing() {
    let (c, _dir) = console().await;
    let r = c.call("GET", "/api/v1/settings", None).await;
    assert_eq!(r.body["balancing"]["mode"], "off");
    assert_eq!(r.body["balancing"]["level"], 3);
    assert_eq!(r.body["balancing"]["interval_s"], 60);
    for (bad, needle) in [
        (json!({"level": 0}), "level"),
        (json!({"level": 6}), "level"),
        (json!({"mode": "sometimes"}), "sometimes"),
        (json!({"interval_s": 1}), "interval_s"),
        (json!({"interval_s": 3601}), "interval_s"),
        (json!({"max_moves_total": 0}), "max_moves_total"),
        (json!({"max_moves_per_host": 0}), "max_moves_per_host"),
        (json!({"hysteresis_minutes": 100000}), "hysteresis_minutes"),
        (json!({"threshold": 2}), "threshold"),
    ] {
        let body = json!({"ratios": {"cpu": 4.0, "memory": 1.0}, "balancing": bad});
        let r = c
            .call("PUT", "/api/v1/settings", Some(&body.to_string()))
            .await;
        assert_problem(&r, 400);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{bad}: {detail}");
    }
    let r = c.call("GET", "/api/v1/drs", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["mode"], "off");
    assert_eq!(r.body["level"], 3);
    // Mode off: no pass on demand either.
    assert_problem(&c.call("POST", "/api/v1/drs/run", None).await, 409);
    assert_problem(
        &c.call("POST", "/api/v1/drs/recommendations/1/apply", None)
            .await,
        404,
    );
    assert_problem(
        &c.call("POST", "/api/v1/drs/recommendations/one/apply", None)
            .await,
        400,
    );
    c.shutdown().await;
}

/// h1 carries `hot` (2 of 4 cores busy) and two idle VMs; h2 is empty.
async fn hot_host(c: &TestConsole, prefix: &str) -> (FakeAgent, FakeAgent) {
    let h1 = FakeAgent::join_and_connect(c, "h1", HOST).await;
    let h2 = FakeAgent::join_and_connect(c, "h2", HOST).await;
    set_vm_usage(&format!("{prefix}-hot"), 2.0, 400);
    set_vm_usage(&format!("{prefix}-idle1"), 0.1, 400);
    set_vm_usage(&format!("{prefix}-idle2"), 0.1, 400);
    for vm in ["hot", "idle1", "idle2"] {
        create_vm_on(c, &format!("{prefix}-{vm}"), "h1", 512).await;
    }
    // Wait until a report carries the demand.
    until("usage in the VM list", || async {
        let r = c
            .call("GET", &format!("/api/v1/vms/{prefix}-hot"), None)
            .await;
        r.body["usage"]["cpu_cores"].as_f64() == Some(2.0)
    })
    .await;
    (h1, h2)
}

#[tokio::test]
async fn mode_off_does_nothing_and_manual_mode_recommends_until_applied() {
    let (c, _dir) = console().await;
    let (_h1, _h2) = hot_host(&c, "m").await;

    // Off: no pass, no recommendation, nothing moves.
    assert_problem(&c.call("POST", "/api/v1/drs/run", None).await, 409);
    let r = c.call("GET", "/api/v1/drs/recommendations", None).await;
    assert_eq!(r.body, json!([]));
    assert_eq!(
        c.call("GET", "/api/v1/drs", None).await.body["last_plan"],
        Value::Null
    );

    put_balancing(&c, json!({"mode": "manual", "interval_s": 3600})).await;
    let r = c.call("POST", "/api/v1/drs/run", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["mode"], "manual");
    let plan = &r.body["last_plan"];
    assert!(plan["moves"].as_u64().unwrap() >= 1, "{plan}");
    assert!(
        plan["imbalance_after"].as_f64().unwrap() < plan["imbalance_before"].as_f64().unwrap(),
        "{plan}"
    );
    assert_eq!(plan["started"], 0);

    let r = c.call("GET", "/api/v1/drs/recommendations", None).await;
    let recs = r.body.as_array().unwrap().clone();
    assert!(!recs.is_empty());
    let first = &recs[0];
    assert_eq!(first["vm"], "m-hot", "{first}");
    assert_eq!(first["from"], "h1");
    assert_eq!(first["to"], "h2");
    assert!(
        first["reason"].as_str().unwrap().contains("imbalance"),
        "{first}"
    );
    assert!(first["expected_gain"]["imbalance"].as_f64().unwrap() > 0.0);
    // Manual: nothing moved by itself.
    assert_eq!(host_of(&c, "m-hot").await, "h1");
    assert_problem(
        &c.call("GET", "/api/v1/vms/m-hot/migration", None).await,
        404,
    );

    let id = first["id"].as_u64().unwrap();
    let r = c
        .call(
            "POST",
            &format!("/api/v1/drs/recommendations/{id}/apply"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["destination"], "h2");
    wait_host(&c, "m-hot", "h2").await;
    let e = wait_drs_event(&c, "m-hot", "moved m-hot from h1 to h2").await;
    assert!(e["message"].as_str().unwrap().contains("imbalance"), "{e}");
    // Applied once: the recommendation is gone.
    assert_problem(
        &c.call(
            "POST",
            &format!("/api/v1/drs/recommendations/{id}/apply"),
            None,
        )
        .await,
        404,
    );

    // Back to off: recommendations are dropped and nothing else moves.
    let r = c.call("POST", "/api/v1/drs/run", None).await;
    assert_eq!(r.status, 200);
    put_balancing(&c, json!({"mode": "off"})).await;
    until("recommendations dropped", || async {
        c.call("GET", "/api/v1/drs/recommendations", None)
            .await
            .body
            == json!([])
    })
    .await;
    assert_problem(&c.call("POST", "/api/v1/drs/run", None).await, 409);
    for vm in ["m-idle1", "m-idle2"] {
        assert_eq!(host_of(&c, vm).await, "h1");
    }
    c.shutdown().await;
}

#[tokio::test]
async fn automatic_mode_moves_a_vm_off_a_hot_host_and_never_back() {
    let (c, _dir) = console().await;
    let (_h1, _h2) = hot_host(&c, "a").await;
    put_balancing(
        &c,
        json!({"mode": "automatic", "interval_s": 5, "hysteresis_minutes": 30}),
    )
    .await;
    wait_host(&c, "a-hot", "h2").await;
    let e = wait_drs_event(&c, "a-hot", "moved a-hot from h1 to h2").await;
    assert!(e["message"].as_str().unwrap().contains("imbalance"), "{e}");
    let r = c.call("GET", "/api/v1/drs", None).await;
    assert_eq!(r.body["mode"], "automatic");
    assert!(r.body["last_run_at"].as_u64().is_some());

    // Demand moves: h2 gets hot around a-hot. Moving a-hot straight back would pay most, but it
    // moved within the hysteresis window; the balancer moves other VMs instead, and never a-hot.
    set_vm_usage("a-h2x", 1.5, 400);
    set_vm_usage("a-h2y", 1.5, 400);
    create_vm_on(&c, "a-h2x", "h2", 512).await;
    create_vm_on(&c, "a-h2y", "h2", 512).await;
    until("usage of the new VMs in the VM list", || async {
        let r = c.call("GET", "/api/v1/vms/a-h2y", None).await;
        r.body["usage"]["cpu_cores"].as_f64() == Some(1.5)
    })
    .await;
    for _ in 0..5 {
        let r = c.call("POST", "/api/v1/drs/run", None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        until("no migration in flight", || async {
            let vms = c.call("GET", "/api/v1/vms", None).await.body;
            vms.as_array()
                .unwrap()
                .iter()
                .all(|v| v["state"] == "running")
        })
        .await;
    }
    assert_eq!(host_of(&c, "a-hot").await, "h2");
    let moves_of_hot = events(&c, "drs")
        .await
        .into_iter()
        .filter(|e| e["object"] == "a-hot" && e["message"].as_str().unwrap().starts_with("moving"))
        .count();
    assert_eq!(moves_of_hot, 1);
    let moved_others = events(&c, "drs")
        .await
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("moving a-h2"))
        })
        .count();
    assert!(moved_others >= 1, "{:?}", events(&c, "drs").await);
    c.shutdown().await;
}

#[tokio::test]
async fn maintenance_in_automatic_mode_evacuates_and_spreads() {
    let (c, _dir) = console().await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST).await;
    let _h3 = FakeAgent::join_and_connect(&c, "h3", HOST).await;
    for vm in ["e1", "e2"] {
        set_vm_usage(vm, 0.5, 300);
        create_vm_on(&c, vm, "h1", 512).await;
    }
    put_balancing(
        &c,
        json!({"mode": "automatic", "interval_s": 3600, "level": 1}),
    )
    .await;
    let r = c
        .call(
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance": true}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    until("h1 evacuated", || async {
        host_of(&c, "e1").await != "h1" && host_of(&c, "e2").await != "h1"
    })
    .await;
    assert_ne!(
        host_of(&c, "e1").await,
        host_of(&c, "e2").await,
        "{:?}",
        events(&c, "drs").await
    );
    let e = wait_drs_event(&c, "e1", "moved e1").await;
    assert!(
        e["message"].as_str().unwrap().contains("maintenance"),
        "{e}"
    );
    c.shutdown().await;
}
