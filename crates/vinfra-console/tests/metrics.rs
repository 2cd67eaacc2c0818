//! `GET /metrics` against a real console with fake agents (docs/design.md, "Metrics"): the
//! answer is Prometheus text (parsed as such) with every family of its kind; its counters move
//! when their events happen (a request by its route's template, a task's end, a migration, a
//! balancing pass, a store write) and its gauges count VMs, hosts and tasks as they are; it
//! needs a token (any role); and two consoles in one process count apart.

mod common;

use std::collections::BTreeSet;

use common::*;
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

/// Every family and its kind, as docs/design.md ("Metrics") lists them.
const FAMILIES: [(&str, &str); 14] = [
    ("vinfra_console_http_requests_total", "counter"),
    ("vinfra_console_http_request_duration_seconds", "histogram"),
    ("vinfra_console_vms_desired", "gauge"),
    ("vinfra_console_vms_observed", "gauge"),
    ("vinfra_console_hosts", "gauge"),
    ("vinfra_console_migrations_started_total", "counter"),
    ("vinfra_console_migrations_ended_total", "counter"),
    ("vinfra_console_migration_duration_seconds", "histogram"),
    ("vinfra_console_migrations_running", "gauge"),
    ("vinfra_console_balancer_passes_total", "counter"),
    ("vinfra_console_balancer_moves_total", "counter"),
    ("vinfra_console_store_commit_duration_seconds", "histogram"),
    ("vinfra_console_tasks_ended_total", "counter"),
    ("vinfra_console_tasks_running", "gauge"),
];

/// One scrape, parsed.
struct Metrics {
    text: String,
    scrape: Scrape,
}

impl Metrics {
    /// The value of the counter or gauge `family` with exactly `labels` (0 when absent: a
    /// counter's series appears with its first event).
    fn value(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let mut found = self.scrape.samples.iter().filter(|s| {
            s.metric == family
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.len() == labels.len()
        });
        let Some(s) = found.next() else { return 0.0 };
        assert!(found.next().is_none(), "{family} {labels:?} twice");
        match s.value {
            Value::Counter(v) | Value::Gauge(v) => v,
            ref other => panic!("{family} {labels:?}: not a counter or gauge: {other:?}"),
        }
    }

    /// How many observations histogram `family` with `labels` holds (its `+Inf` bucket, which
    /// must equal its `_count`).
    fn observations(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let s = self
            .scrape
            .samples
            .iter()
            .find(|s| s.metric == family && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {family} {labels:?} in:\n{}", self.text));
        let Value::Histogram(buckets) = &s.value else {
            panic!("{family}: not a histogram: {:?}", s.value)
        };
        let inf = buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .expect("a +Inf bucket")
            .count;
        let count = self
            .scrape
            .samples
            .iter()
            .find(|c| {
                c.metric == format!("{family}_count")
                    && labels.iter().all(|(k, v)| c.labels.get(k) == Some(*v))
            })
            .map(|c| match c.value {
                Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v) => v,
                _ => f64::NAN,
            });
        assert_eq!(
            count,
            Some(inf),
            "{family} {labels:?}: _count is the +Inf bucket"
        );
        inf
    }
}

/// `GET /metrics` with `token` (the console's own when `None`): 200, Prometheus text, parsed.
async fn scrape_with(c: &TestConsole, token: Option<&str>) -> Metrics {
    let r = c
        .call_raw_with("GET", "/metrics", None, Some(token.unwrap_or(&c.token)))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = r.body.as_str().expect("a text body").to_string();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    Metrics { text, scrape }
}

async fn scrape(c: &TestConsole) -> Metrics {
    scrape_with(c, None).await
}

const POST_VMS: [(&str, &str); 3] = [
    ("route", "/api/v1/vms"),
    ("method", "POST"),
    ("status", "202"),
];
const CREATED: [(&str, &str); 2] = [("kind", "vm_create"), ("state", "succeeded")];

#[tokio::test]
async fn the_families_are_there_with_their_kinds_and_count_what_happens() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _h1 = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let before = scrape(&c).await;

    // Every family, of its kind, with its help line, once.
    for (family, kind) in FAMILIES {
        let type_line = format!("# TYPE {family} {kind}");
        assert_eq!(
            before.text.lines().filter(|l| *l == type_line).count(),
            1,
            "{type_line} in:\n{}",
            before.text
        );
        assert!(before.scrape.docs.contains_key(family), "{family}: no help");
        let samples: Vec<&Value> = before
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == family)
            .map(|s| &s.value)
            .collect();
        assert!(!samples.is_empty(), "{family}: no sample");
        for v in samples {
            let ok = match kind {
                "counter" => matches!(v, Value::Counter(_)),
                "gauge" => matches!(v, Value::Gauge(_)),
                _ => matches!(v, Value::Histogram(_)),
            };
            assert!(ok, "{family}: {v:?} is not a {kind}");
        }
    }
    for line in before.text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split(' ').nth(2).unwrap();
        assert!(
            family.starts_with("vinfra_console_"),
            "{family}: outside the namespace"
        );
    }
    assert_eq!(
        before.value("vinfra_console_hosts", &[("status", "connected")]),
        1.0
    );
    assert_eq!(
        before.value("vinfra_console_hosts", &[("status", "disconnected")]),
        0.0
    );
    assert_eq!(
        before.value("vinfra_console_hosts", &[("status", "maintenance")]),
        0.0
    );
    assert_eq!(
        before.value("vinfra_console_vms_desired", &[("state", "running")]),
        0.0
    );
    assert_eq!(
        before.value("vinfra_console_http_requests_total", &POST_VMS),
        0.0
    );

    // A VM created: its request by the route's template, its task's end, the VM in the
    // gauges, the store's writes timed.
    let r = c
        .call_raw("POST", "/api/v1/vms", Some(&vm_json("web-1", 1, GIB)))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let task = c.wait_task(r.body["id"].as_u64().unwrap(), None).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(
        c.call("GET", "/api/v1/vms/web-1", None).await.body["state"],
        "running"
    );
    let after = scrape(&c).await;
    assert_eq!(
        after.value("vinfra_console_http_requests_total", &POST_VMS),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value("vinfra_console_tasks_ended_total", &CREATED),
        before.value("vinfra_console_tasks_ended_total", &CREATED) + 1.0
    );
    assert_eq!(
        after.value("vinfra_console_vms_desired", &[("state", "running")]),
        1.0
    );
    assert_eq!(
        after.value("vinfra_console_vms_observed", &[("state", "running")]),
        1.0
    );
    assert_eq!(
        after.value("vinfra_console_vms_observed", &[("state", "unknown")]),
        0.0
    );
    assert_eq!(
        after.value("vinfra_console_tasks_running", &[("kind", "vm_create")]),
        0.0
    );
    let commits = |m: &Metrics| m.observations("vinfra_console_store_commit_duration_seconds", &[]);
    assert!(
        commits(&after) > commits(&before),
        "the create's writes are timed"
    );
    let latency = [("route", "/api/v1/vms"), ("method", "POST")];
    assert_eq!(
        after.observations("vinfra_console_http_request_duration_seconds", &latency),
        1.0
    );

    // The route label is the template, never the path asked for.
    assert_eq!(c.call("GET", "/api/v1/vms/web-1", None).await.status, 200);
    assert_eq!(c.call("GET", "/api/v1/vms/nope", None).await.status, 404);
    let m = scrape(&c).await;
    let show = |status| {
        [
            ("route", "/api/v1/vms/:name"),
            ("method", "GET"),
            ("status", status),
        ]
    };
    assert!(m.value("vinfra_console_http_requests_total", &show("200")) >= 2.0);
    assert_eq!(
        m.value("vinfra_console_http_requests_total", &show("404")),
        1.0
    );
    let routes: BTreeSet<&str> = m
        .scrape
        .samples
        .iter()
        .filter_map(|s| s.labels.get("route"))
        .collect();
    assert!(routes.contains("/metrics"), "{routes:?}");
    // Every request line was read (a sample the parser cannot read is dropped silently).
    let lines = m
        .text
        .lines()
        .filter(|l| l.starts_with("vinfra_console_http_requests_total{"))
        .count();
    let parsed = m
        .scrape
        .samples
        .iter()
        .filter(|s| s.metric == "vinfra_console_http_requests_total")
        .count();
    assert_eq!(parsed, lines, "{}", m.text);
    assert!(
        routes
            .iter()
            .all(|r| !r.contains("web-1") && !r.contains("nope")),
        "{routes:?}"
    );

    // The VM stopped: the gauges follow.
    let r = c
        .call("POST", "/api/v1/vms/web-1/stop", Some(r#"{"force":true}"#))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let m = scrape(&c).await;
    assert_eq!(
        m.value("vinfra_console_vms_desired", &[("state", "running")]),
        0.0
    );
    assert_eq!(
        m.value("vinfra_console_vms_desired", &[("state", "stopped")]),
        1.0
    );
    assert_eq!(
        m.value("vinfra_console_vms_observed", &[("state", "stopped")]),
        1.0
    );
    c.shutdown().await;
}

#[tokio::test]
async fn metrics_need_a_token_of_any_role() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let r = c.call_raw_with("GET", "/metrics", None, None).await;
    assert_problem(&r, 401);
    let r = c.call_raw_with("GET", "/metrics", None, Some("nope")).await;
    assert_problem(&r, 401);
    let body = r#"{"name":"prometheus","role":"viewer"}"#;
    let r = c.call("POST", "/api/v1/tokens", Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let viewer = r.body["token"].as_str().unwrap().to_string();
    let m = scrape_with(&c, Some(&viewer)).await;
    // The refusals count too, under the route's template.
    let refused = [("route", "/metrics"), ("method", "GET"), ("status", "401")];
    assert_eq!(m.value("vinfra_console_http_requests_total", &refused), 2.0);
    // Only GET: another method is 405, and counted as such.
    let r = c.call_raw("POST", "/metrics", None).await;
    assert_problem(&r, 405);
    c.shutdown().await;
}

#[tokio::test]
async fn migrations_and_balancing_passes_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let _dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;
    let body = vm_json("mover", 1, GIB)
        .replace("\"name\":\"mover\"", "\"name\":\"mover\",\"host\":\"src\"");
    assert_eq!(c.call("POST", "/api/v1/vms", Some(&body)).await.status, 201);
    let before = scrape(&c).await;
    assert_eq!(
        before.value("vinfra_console_migrations_started_total", &[]),
        0.0
    );

    src.state.lock().unwrap().behaviour.active_polls = 3;
    let r = c
        .call("POST", "/api/v1/vms/mover/migrate", Some(r#"{"to":"dst"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let running = scrape(&c).await;
    assert_eq!(
        running.value("vinfra_console_migrations_started_total", &[]),
        1.0
    );
    let done = wait_migration(&c, "mover").await;
    assert_eq!(done["phase"], "completed", "{done}");
    let m = scrape(&c).await;
    let completed = [("outcome", "completed")];
    assert_eq!(
        m.value("vinfra_console_migrations_ended_total", &completed),
        1.0
    );
    assert_eq!(
        m.value(
            "vinfra_console_migrations_ended_total",
            &[("outcome", "failed")]
        ),
        0.0
    );
    assert_eq!(
        m.observations("vinfra_console_migration_duration_seconds", &completed),
        1.0
    );
    assert_eq!(m.value("vinfra_console_migrations_running", &[]), 0.0);
    let migrated = [("kind", "vm_migrate"), ("state", "succeeded")];
    assert_eq!(m.value("vinfra_console_tasks_ended_total", &migrated), 1.0);

    // A pass run by hand (manual mode).
    let planned = [("result", "planned")];
    let passes = m.value("vinfra_console_balancer_passes_total", &planned);
    let settings = json!({"ratios": {"cpu": 4.0, "memory": 1.0},
        "balancing": {"mode": "manual", "interval_s": 3600}});
    let r = c
        .call("PUT", "/api/v1/settings", Some(&settings.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c.call("POST", "/api/v1/drs/run", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let m = scrape(&c).await;
    assert!(
        m.value("vinfra_console_balancer_passes_total", &planned) > passes,
        "{}",
        m.text
    );
    c.shutdown().await;
}

/// Each console has a recorder of its own: what one counts, the other does not see.
#[tokio::test]
async fn two_consoles_in_one_process_count_apart() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_console(d1.path(), None, false).await;
    let b = start_console(d2.path(), None, false).await;
    let _h = FakeAgent::join_and_connect(&a, "h1", HOST16).await;
    assert_eq!(
        a.call("POST", "/api/v1/vms", Some(&vm_json("only-a", 1, GIB)))
            .await
            .status,
        201
    );
    let (ma, mb) = (scrape(&a).await, scrape(&b).await);
    assert_eq!(
        ma.value("vinfra_console_http_requests_total", &POST_VMS),
        1.0
    );
    assert_eq!(
        mb.value("vinfra_console_http_requests_total", &POST_VMS),
        0.0
    );
    assert_eq!(ma.value("vinfra_console_tasks_ended_total", &CREATED), 1.0);
    assert_eq!(mb.value("vinfra_console_tasks_ended_total", &CREATED), 0.0);
    assert_eq!(
        mb.value("vinfra_console_hosts", &[("status", "connected")]),
        0.0
    );
    a.shutdown().await;
    b.shutdown().await;
}
