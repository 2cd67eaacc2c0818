//! The web console's pages beyond the inventory and a VM's power, against a real console and
//! fake agents, as a browser drives them: a VM's migration with its host picker and its
//! progress; each page answers logged in and sends to the login form without a session; each
//! action needs this session's CSRF token and the role of its API route; a value the console
//! refuses shows the API's words.

mod common;

use common::browser::{admin, csrf, escaped, follow, viewer, Browser};
use common::{create_vm_on, put_balancing, start_console, vm_json, FakeAgent, TestConsole};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 16,
    memory_mib: 64 * 1024,
};

/// The API's `detail` of a refused request.
async fn api_detail(c: &TestConsole, method: &str, path: &str, body: Option<&str>) -> String {
    let r = c.call(method, path, body).await;
    assert!(r.status >= 400, "{method} {path}: {:?}", r.body);
    r.body["detail"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pages_without_a_session_go_to_the_login_form() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut b = Browser::new(&c);
    for path in [
        "/hosts/h1",
        "/networks",
        "/networks/blue",
        "/rules",
        "/balancer",
        "/settings",
        "/events",
        "/ui/events/stream",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 303, "{path}: {}", page.body);
        assert_eq!(page.location, "/login", "{path}");
    }
    for path in [
        "/vms/x/migrate",
        "/hosts/h1/maintenance",
        "/rules",
        "/rules/r/delete",
        "/balancer/run",
        "/balancer/recommendations/1/apply",
        "/settings",
    ] {
        let page = b.post(path, &[("csrf", "x")], &[]).await;
        assert_eq!(page.status, 303, "{path}: {}", page.body);
        assert_eq!(page.location, "/login", "{path}");
    }
    c.shutdown().await;
}

#[tokio::test]
async fn a_vm_is_migrated_from_its_page_and_its_task_shows_the_progress_and_the_new_host() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let src = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    let _h3 = FakeAgent::join_and_connect(&c, "h3", HOST16).await;
    create_vm_on(&c, "mover", "h1", 1024).await;
    let r = c
        .call("PATCH", "/api/v1/hosts/h3", Some(r#"{"maintenance":true}"#))
        .await;
    assert!(r.status < 300, "{:?}", r.body);

    let mut b = admin(&c).await;
    let vm = b.get("/vms/mover").await;
    assert_eq!(vm.status, 200, "{}", vm.body);
    assert!(vm.body.contains(r#"id="vm-state""#), "{}", vm.body);
    assert!(
        vm.body.contains(r#"id="vm-host" href="/hosts/h1">h1<"#),
        "{}",
        vm.body
    );
    assert!(vm.body.contains(r#"id="migrate-form""#), "{}", vm.body);
    assert!(
        vm.body.contains(r#"<select id="migrate-to" name="to">"#),
        "{}",
        vm.body
    );
    assert!(vm.body.contains("let placement choose"), "{}", vm.body);
    // Only h2: h1 is where it runs, h3 is in maintenance.
    assert!(vm.body.contains(r#"<option value="h2">"#), "{}", vm.body);
    assert!(!vm.body.contains(r#"<option value="h1">"#), "{}", vm.body);
    assert!(!vm.body.contains(r#"<option value="h3">"#), "{}", vm.body);
    let token = csrf(&vm);

    // A host the console refuses: the API's words.
    let detail = api_detail(
        &c,
        "POST",
        "/api/v1/vms/mover/migrate",
        Some(r#"{"to":"nope"}"#),
    )
    .await;
    let r = b
        .post(
            "/vms/mover/migrate",
            &[("csrf", &token), ("to", "nope")],
            &[],
        )
        .await;
    assert!(r.status >= 400, "{}", r.body);
    assert!(
        r.body.contains(&escaped(&detail)),
        "{detail:?} in {}",
        r.body
    );
    // Without the CSRF token: nothing starts.
    let r = b.post("/vms/mover/migrate", &[("to", "h2")], &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // A viewer sees no form and is refused.
    let mut v = viewer(&c, "audit").await;
    let page = v.get("/vms/mover").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("migrate-form"), "{}", page.body);
    let r = v
        .post(
            "/vms/mover/migrate",
            &[("csrf", &csrf(&page)), ("to", "h2")],
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("needs role operator"), "{}", r.body);
    let m = c.call("GET", "/api/v1/vms/mover/migration", None).await;
    assert_eq!(m.status, 404, "no migration yet: {:?}", m.body);

    // The migration copies for a while: its task's page has the bar, then the new host.
    src.state.lock().unwrap().behaviour.active_polls = 6;
    let r = b
        .post("/vms/mover/migrate", &[("csrf", &token), ("to", "h2")], &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"), "{}", r.location);
    let page = b.get(&r.location).await;
    assert!(
        page.body
            .contains(r#"<progress id="migration-progress" max="100" value=""#),
        "{}",
        page.body
    );
    let end = follow(&mut b, &r.location).await;
    assert!(end.contains("succeeded"), "{end}");
    assert!(end.contains(r#"value="100""#), "{end}");
    assert!(
        end.contains(r#"id="migration-host" href="/hosts/h2""#),
        "{end}"
    );
    let vm = b.get("/vms/mover").await;
    assert!(
        vm.body.contains(r#"id="vm-host" href="/hosts/h2">h2<"#),
        "{}",
        vm.body
    );
    assert!(vm.body.contains(r#"<option value="h1">"#), "{}", vm.body);
    c.shutdown().await;
}

#[tokio::test]
async fn a_host_page_shows_its_use_and_vms_and_switches_its_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST16).await;
    create_vm_on(&c, "web-1", "h1", 1024).await;
    put_balancing(
        &c,
        serde_json::json!({"mode": "automatic", "interval_s": 3600, "level": 1}),
    )
    .await;
    let mut b = admin(&c).await;
    let home = b.get("/").await;
    assert!(home.body.contains(r#"href="/hosts/h1""#), "{}", home.body);

    let host = b.get("/hosts/h1").await;
    assert_eq!(host.status, 200, "{}", host.body);
    assert!(
        host.body
            .contains(r#"id="host-state" class="ok">connected"#),
        "{}",
        host.body
    );
    assert!(host.body.contains(r#"id="host-ha""#), "{}", host.body);
    for bar in [
        "host-vcpus",
        "host-cpu",
        "host-memory-allocated",
        "host-memory-used",
    ] {
        assert!(
            host.body.contains(&format!(r#"<meter id="{bar}""#)),
            "{bar}: {}",
            host.body
        );
    }
    assert!(
        host.body.contains(r#"<a href="/vms/web-1">web-1</a>"#),
        "{}",
        host.body
    );
    assert!(
        host.body.contains(r#"id="maintenance-form""#),
        "{}",
        host.body
    );
    let token = csrf(&host);

    // An unknown host: the API's words.
    let detail = api_detail(&c, "GET", "/api/v1/hosts/nope", None).await;
    let page = b.get("/hosts/nope").await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(
        page.body.contains(&escaped(&detail)),
        "{detail:?} in {}",
        page.body
    );
    let page = b.get("/hosts/Not%20A%20Name").await;
    assert_eq!(page.status, 400, "{}", page.body);

    // A viewer sees the page without the form and is refused the action.
    let mut v = viewer(&c, "audit").await;
    let page = v.get("/hosts/h1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("maintenance-form"), "{}", page.body);
    let form = [("csrf", csrf(&page)), ("maintenance", "on".to_string())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = v.post("/hosts/h1/maintenance", &form, &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("needs role admin"), "{}", r.body);
    // Without the CSRF token, or a value that is not on/off: nothing changes.
    let r = b
        .post("/hosts/h1/maintenance", &[("maintenance", "on")], &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = b
        .post(
            "/hosts/h1/maintenance",
            &[("csrf", &token), ("maintenance", "maybe")],
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let h = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(h.body["maintenance"], false, "{:?}", h.body);

    // On: the evacuation's task moves the VM away; off: the host's page again.
    let r = b
        .post(
            "/hosts/h1/maintenance",
            &[("csrf", &token), ("maintenance", "on")],
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"), "{}", r.location);
    let end = follow(&mut b, &r.location).await;
    assert!(end.contains("host_evacuate"), "{end}");
    assert!(end.contains("succeeded"), "{end}");
    assert!(end.contains(r#"href="/hosts/h1""#), "{end}");
    let host = b.get("/hosts/h1").await;
    assert!(
        host.body.contains(r#"id="host-maintenance""#),
        "{}",
        host.body
    );
    assert!(host.body.contains("End maintenance"), "{}", host.body);
    let vm = b.get("/vms/web-1").await;
    assert!(
        vm.body.contains(r#"id="vm-host" href="/hosts/h2">h2<"#),
        "{}",
        vm.body
    );
    let r = b
        .post(
            "/hosts/h1/maintenance",
            &[("csrf", &token), ("maintenance", "off")],
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location, "/hosts/h1");
    let h = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(h.body["maintenance"], false, "{:?}", h.body);
    c.shutdown().await;
}

#[tokio::test]
async fn networks_are_listed_with_their_ports_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let net = r#"{"name":"blue","kind":"overlay","subnet":"10.0.0.0/24"}"#;
    let r = c.call("POST", "/api/v1/networks", Some(net)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let body = vm_json("web-1", 1, 1024).replace(
        "\"name\":\"web-1\"",
        "\"name\":\"web-1\",\"nics\":[{\"network\":\"blue\"}]",
    );
    let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let mut v = viewer(&c, "audit").await;
    let list = v.get("/networks").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains(r#"<a href="/networks/blue">blue</a>"#),
        "{}",
        list.body
    );
    assert!(list.body.contains("10.0.0.0/24"), "{}", list.body);
    let page = v.get("/networks/blue").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(r#"<a href="/vms/web-1">web-1</a>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("pkts"), "its counters: {}", page.body);
    let detail = api_detail(&c, "GET", "/api/v1/networks/red", None).await;
    let page = v.get("/networks/red").await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(
        page.body.contains(&escaped(&detail)),
        "{detail:?} in {}",
        page.body
    );
    c.shutdown().await;
}

#[tokio::test]
async fn placement_rules_are_created_and_deleted_from_their_page() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let mut b = admin(&c).await;
    let page = b.get("/rules").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="rule-form""#), "{}", page.body);
    let token = csrf(&page);
    let rule = |name: &'static str, kind: &'static str, hosts: &'static str| {
        vec![
            ("name", name),
            ("strength", "must"),
            ("kind", kind),
            ("vms", "a, b"),
            ("hosts", hosts),
        ]
    };

    // Without the CSRF token: nothing created.
    let r = b
        .post("/rules", &rule("apart", "anti_affinity", ""), &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // A kind the API does not know, and a rule the console refuses: its words, the form kept.
    let mut bad = rule("odd", "sideways", "");
    bad.push(("csrf", &token));
    let r = b.post("/rules", &bad, &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("unknown variant"), "{}", r.body);
    assert!(r.body.contains(r#"value="odd""#), "{}", r.body);
    let api = r#"{"name":"pin","strength":"must","kind":"run_on","vms":["a","b"],"hosts":[]}"#;
    let detail = api_detail(&c, "POST", "/api/v1/rules", Some(api)).await;
    let mut refused = rule("pin", "run_on", "");
    refused.push(("csrf", &token));
    let r = b.post("/rules", &refused, &[]).await;
    assert!(r.status >= 400, "{}", r.body);
    assert!(
        r.body.contains(&escaped(&detail)),
        "{detail:?} in {}",
        r.body
    );

    let mut good = rule("apart", "affinity", "");
    good.push(("csrf", &token));
    let r = b.post("/rules", &good, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = c.call("GET", "/api/v1/rules/apart", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["vms"], serde_json::json!(["a", "b"]));

    // A viewer sees it, cannot delete it.
    let mut v = viewer(&c, "audit").await;
    let page = v.get("/rules").await;
    assert!(page.body.contains("apart"), "{}", page.body);
    assert!(!page.body.contains("rule-form"), "{}", page.body);
    assert!(
        !page.body.contains(r#"action="/rules/apart/delete""#),
        "{}",
        page.body
    );
    let r = v
        .post("/rules/apart/delete", &[("csrf", &csrf(&page))], &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = b
        .post("/rules/apart/delete", &[("csrf", &token)], &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(c.call("GET", "/api/v1/rules/apart", None).await.status, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn the_balancer_and_the_settings_pages() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let mut b = admin(&c).await;
    let page = b.get("/balancer").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(r#"id="balancer-mode">off<"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("No recommendation waiting"),
        "{}",
        page.body
    );
    let token = csrf(&page);
    // Off: the API's words.
    let detail = api_detail(&c, "POST", "/api/v1/drs/run", None).await;
    let r = b.post("/balancer/run", &[("csrf", &token)], &[]).await;
    assert!(r.status >= 400, "{}", r.body);
    assert!(
        r.body.contains(&escaped(&detail)),
        "{detail:?} in {}",
        r.body
    );
    put_balancing(
        &c,
        serde_json::json!({"mode": "manual", "interval_s": 3600, "level": 1}),
    )
    .await;
    let r = b.post("/balancer/run", &[("csrf", &token)], &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location, "/balancer");
    let detail = api_detail(&c, "POST", "/api/v1/drs/recommendations/42/apply", None).await;
    let r = b
        .post(
            "/balancer/recommendations/42/apply",
            &[("csrf", &token)],
            &[],
        )
        .await;
    assert!(r.status >= 400, "{}", r.body);
    assert!(
        r.body.contains(&escaped(&detail)),
        "{detail:?} in {}",
        r.body
    );
    let r = b
        .post(
            "/balancer/recommendations/x/apply",
            &[("csrf", &token)],
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    let page = b.get("/settings").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="settings-form""#), "{}", page.body);
    assert!(page.body.contains("ratios"), "{}", page.body);
    let mut settings = c.call("GET", "/api/v1/settings", None).await.body;
    settings["migration_max_bandwidth_mib"] = 0.into();
    let detail = api_detail(&c, "PUT", "/api/v1/settings", Some(&settings.to_string())).await;
    let text = settings.to_string();
    let r = b
        .post("/settings", &[("csrf", &token), ("settings", &text)], &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains(&escaped(&detail)),
        "{detail:?} in {}",
        r.body
    );
    let r = b
        .post(
            "/settings",
            &[("csrf", &token), ("settings", "{not json")],
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not valid"), "{}", r.body);
    settings["migration_max_bandwidth_mib"] = 321.into();
    let text = settings.to_string();
    let r = b.post("/settings", &[("settings", &text)], &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = b
        .post("/settings", &[("csrf", &token), ("settings", &text)], &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let now = c.call("GET", "/api/v1/settings", None).await.body;
    assert_eq!(now["migration_max_bandwidth_mib"], 321, "{now}");

    // A viewer reads both pages, acts on neither.
    let mut v = viewer(&c, "audit").await;
    let page = v.get("/settings").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("settings-form"), "{}", page.body);
    let vt = csrf(&page);
    let r = v
        .post("/settings", &[("csrf", &vt), ("settings", &text)], &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let page = v.get("/balancer").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let r = v.post("/balancer/run", &[("csrf", &vt)], &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = v
        .post("/balancer/recommendations/42/apply", &[("csrf", &vt)], &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    c.shutdown().await;
}

/// The ids of a page's visible form fields (`input` but hidden ones, `select`, `textarea`).
fn field_ids(body: &str) -> Vec<String> {
    let mut ids = vec![];
    for tag in ["<input ", "<select ", "<textarea "] {
        for (at, _) in body.match_indices(tag) {
            let element = &body[at..at + body[at..].find('>').unwrap()];
            if element.contains(r#"type="hidden""#) {
                continue;
            }
            let id = element
                .split(r#"id=""#)
                .nth(1)
                .unwrap_or_else(|| panic!("a field without an id: {element}"));
            ids.push(id[..id.find('"').unwrap()].to_string());
        }
    }
    ids
}

#[tokio::test]
async fn every_page_has_a_skip_link_and_every_field_its_label() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    create_vm_on(&c, "web-1", "h1", 1024).await;
    let net = r#"{"name":"blue","kind":"overlay","subnet":"10.0.0.0/24"}"#;
    assert_eq!(
        c.call("POST", "/api/v1/networks", Some(net)).await.status,
        201
    );
    let mut b = admin(&c).await;
    let mut fields = 0;
    for path in [
        "/",
        "/new-vm",
        "/vms/web-1",
        "/vms/web-1/delete",
        "/hosts/h1",
        "/networks",
        "/networks/blue",
        "/rules",
        "/balancer",
        "/settings",
        "/events",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(
            page.body.contains(r##"<a class="skip" href="#main">"##),
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains(r#"<main id="main""#), "{path}");
        for id in field_ids(&page.body) {
            assert!(
                page.body.contains(&format!(r#"<label for="{id}""#)),
                "{path}: field {id} has no label"
            );
            fields += 1;
        }
    }
    assert!(fields >= 15, "{fields} fields seen");
    let login = Browser::new(&c).get("/login").await;
    for id in field_ids(&login.body) {
        assert!(
            login.body.contains(&format!(r#"<label for="{id}""#)),
            "{id}"
        );
    }
    c.shutdown().await;
}

#[tokio::test]
async fn the_inventory_shows_the_vms_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let big = HostCapacity {
        cores: 64,
        memory_mib: 64 * 1024,
    };
    let _h1 = FakeAgent::join_and_connect(&c, "h1", big).await;
    // One more than a page (200), names in order vm-000 … vm-200.
    for i in 0..=200 {
        let r = c
            .call(
                "POST",
                "/api/v1/vms",
                Some(&vm_json(&format!("vm-{i:03}"), 1, 128)),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let mut b = admin(&c).await;
    let first = b.get("/").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.body.contains(r#"href="/vms/vm-199""#),
        "{}",
        first.body
    );
    assert!(!first.body.contains(r#"href="/vms/vm-200""#));
    assert!(
        first
            .body
            .contains(r#"<a id="vms-next" href="/?after=vm-199">"#),
        "{}",
        first.body
    );
    assert!(!first.body.contains(r#"id="vms-first""#));
    let second = b.get("/?after=vm-199").await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(
        second.body.contains(r#"href="/vms/vm-200""#),
        "{}",
        second.body
    );
    assert!(!second.body.contains(r#"href="/vms/vm-199""#));
    assert!(second.body.contains(r#"<a id="vms-first" href="/">"#));
    assert!(!second.body.contains(r#"id="vms-next""#));
    assert_eq!(b.get("/?after=Not%20a%20name").await.status, 400);
    c.shutdown().await;
}
