//! The console's metrics (docs/design.md, "Metrics"): the names, one Prometheus recorder per
//! console ([`Metrics`]) and what records into it. `GET /metrics` renders it
//! (`crate::scrape` sets the gauges first).
//!
//! Each [`crate::state::Console`] owns its recorder; nothing is installed as the process's
//! global recorder, so two consoles in one process (the tests run many) never count into each
//! other. The `metrics` crate's macros reach only a global (or thread-local) recorder, so the
//! console registers its counters and histograms on its own recorder through the `Recorder`
//! trait and keeps the handles ([`metrics::Counter`], [`metrics::Histogram`]): each event is one
//! call of a method here, at the place it happens.
//!
//! Counters and histograms whose label values are known in advance are registered at zero when
//! the recorder is made, so every family is in the first scrape. Histograms are Prometheus
//! histograms with fixed buckets (not summaries): they add up across consoles and over time.
//! Samples go into their buckets at each scrape and every [`UPKEEP_INTERVAL`]
//! ([`Metrics::upkeep`]), so memory stays bounded between scrapes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use vinfra_store::{
    Durability, LeaseId, PendingWrite, Revision, Store, StoreError, Txn, TxnResponse, Watcher,
};
use vinfra_types::task::{TaskKind, TaskState};
use vinfra_types::MigrationPhase;

/// API requests answered, by route template, method and status (counter).
pub const HTTP_REQUESTS: &str = "vinfra_console_http_requests_total";
/// Time to answer an API request, by route template and method (histogram, seconds).
pub const HTTP_DURATION: &str = "vinfra_console_http_request_duration_seconds";
/// VMs by the power state their records ask for (gauge).
pub const VMS_DESIRED: &str = "vinfra_console_vms_desired";
/// VMs by the state their hosts report, as the API shows it (gauge).
pub const VMS_OBSERVED: &str = "vinfra_console_vms_observed";
/// Registered hosts by status (gauge).
pub const HOSTS: &str = "vinfra_console_hosts";
/// Live migrations started (counter).
pub const MIGRATIONS_STARTED: &str = "vinfra_console_migrations_started_total";
/// Live migrations ended, by outcome (counter).
pub const MIGRATIONS_ENDED: &str = "vinfra_console_migrations_ended_total";
/// How long a migration took, by outcome (histogram, seconds).
pub const MIGRATION_DURATION: &str = "vinfra_console_migration_duration_seconds";
/// Live migrations in flight (gauge).
pub const MIGRATIONS_RUNNING: &str = "vinfra_console_migrations_running";
/// Balancing passes, by result (counter).
pub const BALANCER_PASSES: &str = "vinfra_console_balancer_passes_total";
/// Balancer moves planned and started (counter).
pub const BALANCER_MOVES: &str = "vinfra_console_balancer_moves_total";
/// Time from a store write's start until it is on disk (histogram, seconds).
pub const STORE_COMMIT: &str = "vinfra_console_store_commit_duration_seconds";
/// Tasks ended, by kind and end state (counter).
pub const TASKS_ENDED: &str = "vinfra_console_tasks_ended_total";
/// Tasks under way, by kind (gauge).
pub const TASKS_RUNNING: &str = "vinfra_console_tasks_running";

/// How often histogram samples are moved into their buckets when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const MIGRATION_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The outcomes a migration ends with, as labels.
const MIGRATION_OUTCOMES: [&str; 3] = ["completed", "failed", "cancelled"];
/// The ends a task has, as labels.
const TASK_ENDS: [TaskState; 3] = [
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Cancelled,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// What each family is, for the `# HELP` lines.
const HELP: [(&str, &str); 14] = [
    (HTTP_REQUESTS, "API requests answered, by route template, method and status."),
    (HTTP_DURATION, "Time to answer an API request (until the answer's head), by route template and method."),
    (VMS_DESIRED, "VMs by the power state their records ask for."),
    (VMS_OBSERVED, "VMs by the state their hosts report (unknown while the host is disconnected)."),
    (HOSTS, "Registered hosts by status (maintenance first, then the agent's connection)."),
    (MIGRATIONS_STARTED, "Live migrations started."),
    (MIGRATIONS_ENDED, "Live migrations ended, by outcome."),
    (MIGRATION_DURATION, "How long a live migration took, from its start to its recorded end, by outcome."),
    (MIGRATIONS_RUNNING, "Live migrations in flight."),
    (BALANCER_PASSES, "Balancing passes, by result (planned, or failed to plan)."),
    (BALANCER_MOVES, "Balancer moves: planned by a pass, or started (automatically or as an applied recommendation)."),
    (STORE_COMMIT, "Time from the start of a store write until it is on disk (group commit included)."),
    (TASKS_ENDED, "Tasks ended, by kind and end state."),
    (TASKS_RUNNING, "Tasks under way, by kind."),
];

/// The gauges computed at each scrape, every label value given (a zero too, so that a state
/// nothing is in any more shows 0, not its last count).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Gauges {
    /// VMs by desired state (`running`, `stopped`).
    pub vms_desired: Vec<(&'static str, u64)>,
    /// VMs by observed state (`running`, `stopped`, …, `unknown`).
    pub vms_observed: Vec<(&'static str, u64)>,
    /// Hosts by status (`connected`, `disconnected`, `maintenance`).
    pub hosts: Vec<(&'static str, u64)>,
    /// Tasks under way, by kind.
    pub tasks_running: Vec<(&'static str, u64)>,
    /// Migrations in flight.
    pub migrations_running: u64,
}

/// One console's metrics: its recorder and the handles registered in advance. Cloning it
/// shares the recorder.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<metrics_exporter_prometheus::PrometheusRecorder>,
    handle: PrometheusHandle,
    store_commit: Histogram,
    migrations_started: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A recorder of its own, every family described and the known label sets at zero.
    pub fn new() -> Self {
        let builder = [
            (HTTP_DURATION, HTTP_BUCKETS),
            (STORE_COMMIT, STORE_BUCKETS),
            (MIGRATION_DURATION, MIGRATION_BUCKETS),
        ]
        .into_iter()
        .fold(PrometheusBuilder::new(), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                .expect("buckets are not empty")
        });
        let recorder = Arc::new(builder.build_recorder());
        for (name, help) in HELP {
            let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
            // One call per name: the recorder keeps one description per name, whatever its kind.
            recorder.describe_counter(name, None, help);
        }
        let handle = recorder.handle();
        let m = Metrics {
            store_commit: recorder
                .register_histogram(&Key::from_static_name(STORE_COMMIT), &METADATA),
            migrations_started: recorder
                .register_counter(&Key::from_static_name(MIGRATIONS_STARTED), &METADATA),
            recorder,
            handle,
        };
        // Registered is enough: the registry keeps them (at zero) for the scrapes.
        for outcome in MIGRATION_OUTCOMES {
            let _ = m.counter(
                MIGRATIONS_ENDED,
                vec![Label::from_static_parts("outcome", outcome)],
            );
            let _ = m.histogram(
                MIGRATION_DURATION,
                vec![Label::from_static_parts("outcome", outcome)],
            );
        }
        for result in ["planned", "failed"] {
            let _ = m.counter(
                BALANCER_PASSES,
                vec![Label::from_static_parts("result", result)],
            );
        }
        for action in ["planned", "started"] {
            let _ = m.counter(
                BALANCER_MOVES,
                vec![Label::from_static_parts("action", action)],
            );
        }
        for kind in TaskKind::ALL {
            for state in TASK_ENDS {
                let _ = m.counter(TASKS_ENDED, task_labels(kind, state));
            }
        }
        m
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    fn gauges(&self, name: &'static str, label: &'static str, values: &[(&'static str, u64)]) {
        for (value, count) in values {
            let key = Key::from_parts(name, vec![Label::from_static_parts(label, value)]);
            self.recorder
                .register_gauge(&key, &METADATA)
                .set(*count as f64);
        }
    }

    /// An API request was answered: `route` is the matched route's template
    /// (`/api/v1/vms/{name}`), never the path asked for; its label writes each parameter
    /// `:name` ([`route_label`]).
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        let route = Label::new("route", route_label(route));
        let method = Label::from_static_parts("method", method);
        self.histogram(HTTP_DURATION, vec![route.clone(), method.clone()])
            .record(took);
        let status = Label::new("status", status.to_string());
        self.counter(HTTP_REQUESTS, vec![route, method, status])
            .increment(1);
    }

    /// A live migration started.
    pub fn migration_started(&self) {
        self.migrations_started.increment(1);
    }

    /// A live migration ended in `phase` (completed, failed or cancelled) after `took`.
    pub fn migration_ended(&self, phase: MigrationPhase, took: Duration) {
        let outcome = match phase {
            MigrationPhase::Completed => "completed",
            MigrationPhase::Cancelled => "cancelled",
            _ => "failed",
        };
        let labels = vec![Label::from_static_parts("outcome", outcome)];
        self.counter(MIGRATIONS_ENDED, labels.clone()).increment(1);
        self.histogram(MIGRATION_DURATION, labels).record(took);
    }

    /// A balancing pass planned `Some(moves)` moves, or could not plan (`None`).
    pub fn balancer_pass(&self, planned: Option<usize>) {
        let result = if planned.is_some() {
            "planned"
        } else {
            "failed"
        };
        self.counter(
            BALANCER_PASSES,
            vec![Label::from_static_parts("result", result)],
        )
        .increment(1);
        if let Some(moves) = planned {
            self.counter(
                BALANCER_MOVES,
                vec![Label::from_static_parts("action", "planned")],
            )
            .increment(moves as u64);
        }
    }

    /// The balancer started a move (automatic mode, or an applied recommendation).
    pub fn balancer_move_started(&self) {
        self.counter(
            BALANCER_MOVES,
            vec![Label::from_static_parts("action", "started")],
        )
        .increment(1);
    }

    /// A task of `kind` ended in `state`.
    pub fn task_ended(&self, kind: TaskKind, state: TaskState) {
        self.counter(TASKS_ENDED, task_labels(kind, state))
            .increment(1);
    }

    /// The store under the console, its writes timed ([`STORE_COMMIT`]).
    pub fn timed(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(TimedStore {
            inner: store,
            commit: self.store_commit.clone(),
        })
    }

    /// The text of `GET /metrics`: `gauges` set, then every family rendered.
    pub fn render(&self, gauges: &Gauges) -> String {
        self.gauges(VMS_DESIRED, "state", &gauges.vms_desired);
        self.gauges(VMS_OBSERVED, "state", &gauges.vms_observed);
        self.gauges(HOSTS, "status", &gauges.hosts);
        self.gauges(TASKS_RUNNING, "kind", &gauges.tasks_running);
        self.recorder
            .register_gauge(&Key::from_static_name(MIGRATIONS_RUNNING), &METADATA)
            .set(gauges.migrations_running as f64);
        self.handle.render()
    }

    /// Moves the histograms' samples into their buckets (also done by every render).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// [`Self::upkeep`] every `every`, for ever (a task of the console's).
    pub async fn keep_up(self, every: Duration) {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.upkeep();
        }
    }
}

/// A route template as its label shows it: each `{param}` written `:param`
/// (`/api/v1/vms/{name}` → `/api/v1/vms/:name`). Braces are valid in a label value, but some
/// readers of the text format (the `prometheus-parse` crate among them) stop a sample's labels
/// at the first `}` and drop the sample.
pub fn route_label(route: &str) -> String {
    route
        .chars()
        .filter(|c| *c != '}')
        .map(|c| if c == '{' { ':' } else { c })
        .collect()
}

fn task_labels(kind: TaskKind, state: TaskState) -> Vec<Label> {
    vec![
        Label::from_static_parts("kind", kind.as_str()),
        Label::from_static_parts("state", state.as_str()),
    ]
}

/// A store whose writes (`put`, `delete`, `txn`, and `txn_pending` until its write is on
/// disk) record their time in [`STORE_COMMIT`]; everything else goes straight through.
struct TimedStore {
    inner: Arc<dyn Store>,
    commit: Histogram,
}

impl TimedStore {
    fn timed<T>(&self, write: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let start = Instant::now();
        let done = write();
        if done.is_ok() {
            self.commit.record(start.elapsed());
        }
        done
    }
}

/// A write of [`TimedStore::txn_pending`]: its time is recorded once it is on disk.
struct Timed {
    pending: PendingWrite,
    start: Instant,
    commit: Histogram,
}

impl Durability for Timed {
    fn wait(self: Box<Self>) -> Result<(), StoreError> {
        let durable = self.pending.wait();
        if durable.is_ok() {
            self.commit.record(self.start.elapsed());
        }
        durable
    }

    fn then(self: Box<Self>, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        let Timed {
            pending,
            start,
            commit,
        } = *self;
        pending.then(move |durable| {
            if durable.is_ok() {
                commit.record(start.elapsed());
            }
            done(durable)
        });
    }
}

impl Store for TimedStore {
    fn get(&self, key: &str) -> Result<Option<vinfra_store::KeyValue>, StoreError> {
        self.inner.get(key)
    }

    fn range(&self, prefix: &str) -> Result<(Vec<vinfra_store::KeyValue>, Revision), StoreError> {
        self.inner.range(prefix)
    }

    fn put(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Revision, StoreError> {
        self.timed(|| self.inner.put(key, value, lease))
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.timed(|| self.inner.delete(key))
    }

    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.timed(|| self.inner.txn(txn))
    }

    fn txn_pending(&self, txn: Txn) -> Result<(TxnResponse, PendingWrite), StoreError> {
        let start = Instant::now();
        let (response, pending) = self.inner.txn_pending(txn)?;
        let timed = PendingWrite::new(Timed {
            pending,
            start,
            commit: self.commit.clone(),
        });
        Ok((response, timed))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision()
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        self.inner.watch(prefix, after)
    }

    fn grant_lease(&self, ttl_s: u64) -> Result<LeaseId, StoreError> {
        self.inner.grant_lease(ttl_s)
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.keep_alive(lease)
    }

    fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke(lease)
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_recorders_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.http_request("/api/v1/vms", "POST", 202, Duration::from_millis(3));
        let (ta, tb) = (a.render(&Gauges::default()), b.render(&Gauges::default()));
        let line = r#"vinfra_console_http_requests_total{route="/api/v1/vms",method="POST",status="202"} 1"#;
        assert!(ta.contains(line), "{ta}");
        assert!(!tb.contains("vinfra_console_http_requests_total{"), "{tb}");
    }

    #[test]
    fn known_families_are_there_from_the_start_with_their_types() {
        let text = Metrics::new().render(&Gauges {
            vms_desired: vec![("running", 2), ("stopped", 0)],
            ..Gauges::default()
        });
        for (family, kind) in [
            (MIGRATIONS_STARTED, "counter"),
            (MIGRATIONS_ENDED, "counter"),
            (MIGRATION_DURATION, "histogram"),
            (BALANCER_PASSES, "counter"),
            (BALANCER_MOVES, "counter"),
            (STORE_COMMIT, "histogram"),
            (TASKS_ENDED, "counter"),
            (VMS_DESIRED, "gauge"),
            (MIGRATIONS_RUNNING, "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "{family}: {text}"
            );
        }
        assert!(
            text.contains("vinfra_console_vms_desired{state=\"stopped\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP vinfra_console_store_commit_duration_seconds "),
            "{text}"
        );
    }

    #[test]
    fn a_route_label_writes_its_parameters_with_a_colon() {
        assert_eq!(route_label("/api/v1/vms"), "/api/v1/vms");
        assert_eq!(
            route_label("/api/v1/routers/{name}/routes/{addr}/{len}"),
            "/api/v1/routers/:name/routes/:addr/:len"
        );
    }

    #[test]
    fn an_unknown_method_is_one_label() {
        let m = Metrics::new();
        m.http_request("/metrics", "BREW", 405, Duration::ZERO);
        m.http_request("/metrics", "FROB", 405, Duration::ZERO);
        let text = m.render(&Gauges::default());
        assert!(
            text.contains(r#"{route="/metrics",method="other",status="405"} 2"#),
            "{text}"
        );
    }
}
