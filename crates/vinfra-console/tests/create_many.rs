//! Creating many VMs in one request (`POST /api/v1/vms` with `count`) against a real console
//! with fake agents (docs/design.md, "Creating many VMs"): the VMs are named `{name}-1` …,
//! placed under the rules (each seeing those before), created on their hosts, one task for all;
//! a VM that cannot be placed refuses the whole request and leaves nothing; bad counts, fixed
//! addresses and taken names are refused before anything is written; a host that does not
//! create its VMs fails the task naming them, the others stay.

mod common;

use common::*;
use serde_json::{json, Value};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// The create request of `count` VMs `name-1` …, 1 vCPU and `memory_mib` each.
fn many(name: &str, count: u32, memory_mib: u64) -> Value {
    let mut body: Value = serde_json::from_str(&vm_json(name, 1, memory_mib)).unwrap();
    body["count"] = Value::from(count);
    body
}

/// The names of every VM the console lists.
async fn vm_names(c: &TestConsole) -> Vec<String> {
    let r = c.call("GET", "/api/v1/vms", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn vms_created_with_a_count_are_placed_under_the_rules_in_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    let _b = FakeAgent::join_and_connect(&c, "b", HOST16).await;
    let rule = json!({"name": "apart", "strength": "must", "kind": "anti_affinity",
        "vms": ["web-1", "web-2"]});
    let r = c
        .call("POST", "/api/v1/rules", Some(&rule.to_string()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let r = c
        .call_raw(
            "POST",
            "/api/v1/vms",
            Some(&many("web", 6, 2 * GIB).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["kind"], "vm_create_many", "{:?}", r.body);
    assert_eq!(r.body["target"], "web", "{:?}", r.body);
    let task = c.wait_task(r.body["id"].as_u64().unwrap(), None).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    let vms = task["result"]["vms"].as_array().expect("the VMs").clone();
    let names: Vec<&str> = vms.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["web-1", "web-2", "web-3", "web-4", "web-5", "web-6"]
    );
    for v in &vms {
        assert_eq!(v["state"], "running", "{v}");
    }
    // 6 × 2 GiB on two 16-GiB hosts: both take some, and the rule kept its two apart.
    let host = |name: &str| {
        vms.iter()
            .find(|v| v["name"] == name)
            .map(|v| v["host"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_ne!(host("web-1"), host("web-2"));
    for h in ["a", "b"] {
        assert!(vms.iter().any(|v| v["host"] == h), "none on {h}: {vms:?}");
    }
    // One task for the six, listed as such; every VM is what the API shows.
    let tasks = c.call("GET", "/api/v1/tasks", None).await;
    assert_eq!(tasks.body.as_array().unwrap().len(), 1, "{:?}", tasks.body);
    for v in &vms {
        let name = v["name"].as_str().unwrap();
        let shown = c.call("GET", &format!("/api/v1/vms/{name}"), None).await;
        assert_eq!(shown.status, 200, "{:?}", shown.body);
        assert_eq!(shown.body["host"], v["host"]);
    }
    c.shutdown().await;
}

#[tokio::test]
async fn a_count_that_does_not_fit_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    let _b = FakeAgent::join_and_connect(&c, "b", HOST16).await;
    // 40 × 8 GiB: the first few fit, the rest cannot.
    let r = c
        .call_raw(
            "POST",
            "/api/v1/vms",
            Some(&many("big", 40, 8 * GIB).to_string()),
        )
        .await;
    assert_problem(&r, 409);
    assert_eq!(r.body["type"], "/problems/insufficient-capacity");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("of the 40 asked for") && detail.contains("none was created"),
        "{detail}"
    );
    // Nothing left: no VM, no task (nor its record, written with the first VM's), an event
    // for each VM written and removed again; the names and the capacity are free again.
    assert!(vm_names(&c).await.is_empty());
    let tasks = c.call("GET", "/api/v1/tasks", None).await;
    assert!(
        tasks.body.as_array().unwrap().is_empty(),
        "{:?}",
        tasks.body
    );
    let (stored, _) = c
        .running
        .console
        .store()
        .range(vinfra_console::state::records::TASKS)
        .unwrap();
    assert!(stored.is_empty(), "task records: {stored:?}");
    let events = c.call("GET", "/api/v1/events?vm=big-1", None).await;
    assert!(
        events.body.to_string().contains("not created: big-5"),
        "{:?}",
        events.body
    );
    let r = c
        .call(
            "POST",
            "/api/v1/vms",
            Some(&many("big", 2, 8 * GIB).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["vms"].as_array().unwrap().len(), 2, "{:?}", r.body);
    c.shutdown().await;
}

#[tokio::test]
async fn bad_counts_fixed_addresses_and_taken_names_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    create_vm_on(&c, "app-3", "a", GIB).await;
    let net = json!({"name": "lan", "kind": "overlay", "subnet": "10.9.0.0/24"});
    let r = c
        .call("POST", "/api/v1/networks", Some(&net.to_string()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let mut fixed = many("app", 2, GIB);
    fixed["nics"] = json!([{"network": "lan", "ip": "10.9.0.10"}]);
    let mut mac = many("app", 2, GIB);
    mac["nics"] = json!([{"network": "lan", "mac": "52:54:00:00:00:10"}]);
    let long = "x".repeat(61);
    for (body, status) in [
        (many("app", 0, GIB), 400),
        (many("app", 1001, GIB), 400),
        (many(&long, 10, GIB), 400),
        (fixed, 400),
        (mac, 400),
        // app-3 exists: app-1 and app-2 are not created either.
        (many("app", 5, GIB), 409),
    ] {
        let r = c
            .call_raw("POST", "/api/v1/vms", Some(&body.to_string()))
            .await;
        assert_problem(&r, status);
    }
    assert_eq!(vm_names(&c).await, ["app-3"]);
    // Pool addresses are fine: each VM its own.
    let mut pooled = many("pool", 3, GIB);
    pooled["nics"] = json!([{"network": "lan"}]);
    let r = c
        .call("POST", "/api/v1/vms", Some(&pooled.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut ips = Vec::new();
    for v in r.body["vms"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let shown = c.call("GET", &format!("/api/v1/vms/{name}"), None).await;
        ips.push(
            shown.body["spec"]["nics"][0]["ip"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ips.sort_unstable();
    ips.dedup();
    assert_eq!(ips.len(), 3, "{:?}", r.body);
    c.shutdown().await;
}

#[tokio::test]
async fn vms_their_host_does_not_create_fail_the_task_and_go_again_the_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let _good = FakeAgent::join_and_connect(&c, "good", HOST16).await;
    let bad = FakeAgent::join_and_connect(&c, "bad", HOST16).await;
    bad.state.lock().unwrap().behaviour.fail_create = true;
    let r = c
        .call_raw("POST", "/api/v1/vms", Some(&many("db", 8, GIB).to_string()))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let task = c.wait_task(r.body["id"].as_u64().unwrap(), None).await;
    assert_eq!(task["state"], "failed", "{task}");
    let left = vm_names(&c).await;
    let on_good: Vec<String> = {
        let r = c.call("GET", "/api/v1/vms?host=good", None).await;
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Placement spreads them: some went to the host that refuses, and only those are gone.
    assert!(!on_good.is_empty() && on_good.len() < 8, "{left:?}");
    assert_eq!(left, on_good, "only the VMs on the good host stay");
    let detail = task["error"]["detail"].as_str().unwrap();
    let failed = 8 - on_good.len();
    assert!(
        detail.starts_with(&format!("{failed} of 8 VMs")),
        "{detail}"
    );
    for i in 1..=8 {
        let name = format!("db-{i}");
        assert_eq!(
            detail.contains(&format!("{name} (")),
            !on_good.contains(&name),
            "{detail}"
        );
    }
    c.shutdown().await;
}

/// Starts a create of `count` VMs `name-…` whose `CreateVm`s agent `a` holds back, then stops
/// the console (`a` cut off) and starts it again on the same store; the new console and the
/// task's id.
async fn restart_amid_a_create(
    c: TestConsole,
    dir: &std::path::Path,
    a: &mut FakeAgent,
    name: &str,
    count: u32,
) -> (TestConsole, u64) {
    a.state
        .lock()
        .unwrap()
        .behaviour
        .slow
        .insert("CreateVm", std::time::Duration::from_secs(30));
    let r = c
        .call_raw(
            "POST",
            "/api/v1/vms",
            Some(&many(name, count, GIB).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let tid = r.body["id"].as_u64().unwrap();
    let token = c.token.clone();
    a.disconnect();
    c.shutdown().await;
    (start_console(dir, Some(token), false).await, tid)
}

#[tokio::test]
async fn a_create_of_many_running_when_the_console_restarts_ends_as_the_cluster_shows() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    // The VMs are created at once, their answers held back: the console stops meanwhile.
    let (c, tid) = restart_amid_a_create(c, dir.path(), &mut a, "api", 3).await;
    let t = c
        .call_raw("GET", &format!("/api/v1/tasks/{tid}"), None)
        .await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(t.body["state"], "running", "{:?}", t.body);
    assert_eq!(t.body["kind"], "vm_create_many");
    // The host comes back reporting the three running: the task ends with them.
    a.state.lock().unwrap().behaviour.slow.clear();
    a.connect(c.running.agent_addr).await;
    let done = c.wait_task(tid, None).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let names: Vec<&str> = done["result"]["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api-1", "api-2", "api-3"]);
    assert_eq!(done["result"]["vms"][0]["host"], "a", "{done}");

    // Again, and one of them is gone when the host comes back: the task names it.
    let (c, tid) = restart_amid_a_create(c, dir.path(), &mut a, "gap", 3).await;
    let r = c.call("DELETE", "/api/v1/vms/gap-2?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    a.state.lock().unwrap().behaviour.slow.clear();
    a.connect(c.running.agent_addr).await;
    let done = c.wait_task(tid, None).await;
    assert_eq!(done["state"], "failed", "{done}");
    let detail = done["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("VMs gap-2 do not exist"), "{detail}");
    c.shutdown().await;
}

/// The slots the hosts were given, by VM name.
fn slots(agents: &[&FakeAgent]) -> std::collections::BTreeMap<String, u32> {
    agents
        .iter()
        .flat_map(|a| {
            let s = a.state.lock().unwrap();
            s.vms
                .values()
                .map(|(i, _)| (i.spec.name.clone(), i.slot.expect("a slot")))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn vms_created_with_a_count_take_a_block_of_slots_never_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let mut a = FakeAgent::join_and_connect(&c, "a", HOST16).await;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("first", 1, GIB)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call_raw("POST", "/api/v1/vms", Some(&many("db", 4, GIB).to_string()))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let task = c.wait_task(r.body["id"].as_u64().unwrap(), None).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    // The four follow the first one's, one after the other.
    let s = slots(&[&a]);
    let first = s["first"];
    for i in 1..=4 {
        assert_eq!(s[&format!("db-{i}")], first + i, "{s:?}");
    }
    // A create after them gets the slot after the block.
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("mid", 1, GIB)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(slots(&[&a])["mid"], first + 5);
    // A count refused after its first VM was written (room for one more of 8 GiB, not five)
    // leaves none and gives its block back.
    let r = c
        .call_raw(
            "POST",
            "/api/v1/vms",
            Some(&many("big", 5, 8 * GIB).to_string()),
        )
        .await;
    assert_problem(&r, 409);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(!detail.contains("big-1 "), "the first was placed: {detail}");
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("back", 1, GIB)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(slots(&[&a])["back"], first + 6);
    // The last of the block is deleted, the console restarts: the next create gets a slot
    // after the others, not a freed one.
    let r = c.call("DELETE", "/api/v1/vms/db-4?force=true", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let token = c.token.clone();
    a.disconnect();
    c.shutdown().await;
    let c = start_console(dir.path(), Some(token), false).await;
    a.connect(c.running.agent_addr).await;
    c.wait_host_status("a", "connected").await;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("after", 1, GIB)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let s = slots(&[&a]);
    assert_eq!(s["after"], first + 7, "{s:?}");
    c.shutdown().await;
}
