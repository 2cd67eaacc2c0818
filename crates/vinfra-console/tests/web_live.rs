//! The web console's live parts and its login's limit, against a real console and a fake
//! agent: the events page with its tasks, the stream of task changes for the session's
//! cookie (not without one), a VM's graphs of its last hour drawn from the reports, and
//! refused logins limited per client address.

mod common;

use std::time::Duration;

use common::browser::viewer;
use common::browser::{admin, csrf, follow, Browser};
use common::{set_vm_usage, start_console, vm_json, FakeAgent};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 16,
    memory_mib: 64 * 1024,
};

#[tokio::test]
async fn the_events_page_lists_tasks_and_its_stream_tells_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("web-1", 1, 1024)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut b = admin(&c).await;
    let page = b.get("/events").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="live-tasks""#), "{}", page.body);
    assert!(
        page.body.contains(r#"data-stream="/ui/events/stream""#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("vm_create"),
        "the create's task: {}",
        page.body
    );
    assert!(page.body.contains("web-1"), "{}", page.body);

    // The stream, with the session's cookie.
    let req = b
        .client
        .get(format!("{}/ui/events/stream", b.base))
        .header("cookie", b.cookie.clone().unwrap());
    let mut stream = req.send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let kind = stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/event-stream"), "{kind}");

    let token = csrf(&page);
    let r = b.post("/vms/web-1/stop", &[("csrf", &token)], &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = r.location.trim_start_matches("/tasks/").to_string();
    let mut heard = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(heard.contains("event: task") && heard.contains(r#""state":"succeeded""#)) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the stream tells the stop's end")
            .unwrap()
            .expect("the stream goes on");
        heard.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(heard.contains(&format!(r#""id":{id}"#)), "{heard}");
    assert!(heard.contains(r#""kind":"vm_stop""#), "{heard}");
    assert!(
        heard.contains(&format!(r#""link":"/tasks/{id}""#)),
        "{heard}"
    );
    follow(&mut b, &r.location).await;

    // Without a session: the login's redirect, no stream.
    let mut other = Browser::new(&c);
    let r = other.get("/ui/events/stream").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location, "/login");
    c.shutdown().await;
}

#[tokio::test]
async fn refused_logins_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut b = Browser::new(&c);
    for i in 0..10 {
        let r = b.login(&format!("vinfra_wrong{i}")).await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
    }
    // The eleventh within the minute is refused before the token is tried: even a good one.
    let resp = b
        .client
        .post(format!("{}/login", b.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", c.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body = resp.text().await.unwrap();
    assert!(body.contains("too many refused logins"), "{body}");
    assert!(b.cookie.is_none());
    c.shutdown().await;
}

#[tokio::test]
async fn a_vm_page_graphs_what_its_host_reports() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    set_vm_usage("graphed-1", 1.5, 300);
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("graphed-1", 2, 1024)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut b = viewer(&c, "audit").await;
    let page = b.get("/vms/graphed-1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(r#"data-refresh="/ui/vms/graphed-1/usage""#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"<svg id="graph-cpu""#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"<svg id="graph-memory""#),
        "{}",
        page.body
    );
    let mut fragment = String::new();
    for _ in 0..50 {
        let f = b.get("/ui/vms/graphed-1/usage").await;
        assert_eq!(f.status, 200, "{}", f.body);
        fragment = f.body;
        if fragment.contains("1.50 now") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        fragment.starts_with(r#"<section id="vm-usage""#),
        "{fragment}"
    );
    assert!(fragment.contains("<polyline"), "{fragment}");
    assert!(fragment.contains("1.50 now"), "{fragment}");
    assert!(fragment.contains("300 now"), "{fragment}");
    assert!(fragment.contains("scale 0 to 2.0"), "{fragment}");
    let detail = c.call("GET", "/api/v1/vms/nope", None).await.body["detail"]
        .as_str()
        .unwrap()
        .to_string();
    let r = b.get("/ui/vms/nope/usage").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.body.contains(&common::browser::escaped(&detail)),
        "{}",
        r.body
    );
    // The host's page graphs the host's use (the fake agent reports 0.5 cores), against its
    // cores.
    let host = b.get("/hosts/h1").await;
    assert_eq!(host.status, 200, "{}", host.body);
    assert!(
        host.body.contains(
            r#"<section id="host-usage" class="usage" data-refresh="/ui/hosts/h1/usage""#
        ),
        "{}",
        host.body
    );
    let f = b.get("/ui/hosts/h1/usage").await;
    assert_eq!(f.status, 200, "{}", f.body);
    assert!(f.body.contains("0.50 now"), "{}", f.body);
    assert!(f.body.contains("scale 0 to 16.0"), "{}", f.body);
    assert_eq!(b.get("/ui/hosts/nope/usage").await.status, 404);
    let mut other = Browser::new(&c);
    assert_eq!(
        other.get("/ui/vms/graphed-1/usage").await.location,
        "/login"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn a_recommendation_is_applied_from_the_balancer_page_and_followed_to_its_end() {
    const HOST4: HostCapacity = HostCapacity {
        cores: 4,
        memory_mib: 8 * 1024,
    };
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST4).await;
    let _h2 = FakeAgent::join_and_connect(&c, "h2", HOST4).await;
    // h1 carries a busy VM and two idle ones; h2 is empty.
    for (vm, cpu) in [("b-hot", 2.0), ("b-idle1", 0.1), ("b-idle2", 0.1)] {
        set_vm_usage(vm, cpu, 400);
        let body = vm_json(vm, 1, 512).replace(
            &format!("\"name\":\"{vm}\""),
            &format!("\"name\":\"{vm}\",\"host\":\"h1\""),
        );
        let r = c.call("POST", "/api/v1/vms", Some(&body)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    for _ in 0..100 {
        let r = c.call("GET", "/api/v1/vms/b-hot", None).await;
        if r.body["usage"]["cpu_cores"].as_f64() == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body =
        r#"{"ratios":{"cpu":4.0,"memory":1.0},"balancing":{"mode":"manual","interval_s":3600}}"#;
    let r = c.call("PUT", "/api/v1/settings", Some(body)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let mut b = admin(&c).await;
    let page = b.get("/balancer").await;
    let token = csrf(&page);
    let r = b.post("/balancer/run", &[("csrf", &token)], &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get("/balancer").await;
    assert!(
        page.body.contains(r#"id="balancer-mode">manual<"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("planned"),
        "the last plan: {}",
        page.body
    );
    let recs = c
        .call("GET", "/api/v1/drs/recommendations", None)
        .await
        .body;
    let first = recs
        .as_array()
        .unwrap()
        .first()
        .expect("a recommendation")
        .clone();
    let id = first["id"].as_u64().unwrap();
    let vm = first["vm"].as_str().unwrap().to_string();
    let apply = format!("/balancer/recommendations/{id}/apply");
    assert!(
        page.body.contains(&format!(r#"action="{apply}""#)),
        "{}",
        page.body
    );

    let r = b.post(&apply, &[("csrf", &token)], &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"), "{}", r.location);
    let task = b.get(&r.location).await;
    assert!(
        task.body.contains(r#"id="migration-progress""#),
        "{}",
        task.body
    );
    let end = follow(&mut b, &r.location).await;
    assert!(end.contains("succeeded"), "{end}");
    assert!(
        end.contains(r#"id="migration-host" href="/hosts/h2""#),
        "{end}"
    );
    assert!(end.contains(&format!(r#"href="/vms/{vm}""#)), "{end}");
    let r = c.call("GET", &format!("/api/v1/vms/{vm}"), None).await;
    assert_eq!(r.body["host"], "h2", "{:?}", r.body);
    c.shutdown().await;
}
