//! `GET /metrics` with 1,000 VMs (target: p99 ≤ 50 ms): what one Prometheus scrape costs, its
//! gauges (VMs by desired and observed state, hosts by status, tasks and migrations under way)
//! computed from the mirrors and the agents' latest reports at each scrape.
//!
//! The console runs in-process (real store, real HTTPS with the cluster CA, bearer token) with
//! 10 fake agents connected (joined through the agent endpoint, mutual TLS), each reporting its
//! 100 VMs as running every 2 s, as `vinfra agent` does. Before the scrapes, every route the
//! run reaches is asked a few times, so the request families hold the series a console that
//! has been serving for a while holds. The client keeps one connection alive and reads the
//! whole body of every answer; the first scrape is checked (parsed as Prometheus text, 1,000
//! VMs counted running), not counted.
//!
//! `cargo bench -p vinfra-console --bench metrics_scrape`

mod common;

use std::time::{Duration, Instant};

use common::{ms, ok, Bench, Fleet, SeedVm};
use vinfra_types::HostCapacity;

const VMS: usize = 1_000;
const HOSTS: usize = 10;
const SCRAPES: usize = 300;
const TARGET_P99: Duration = Duration::from_millis(50);

/// The value of the sample of `family` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == family && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map_or(f64::NAN, |s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn main() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let vms: Vec<SeedVm> = (0..VMS)
        .map(|i| {
            let name = format!("vm-{i:04}");
            SeedVm {
                id: uuid::Uuid::new_v4(),
                spec: common::spec(&name, 1, 256),
                name,
                host: format!("h{}", i % HOSTS),
            }
        })
        .collect();
    common::seed_store(dir.path(), &vms, &[]);

    let console_rt = common::runtime("console", 2);
    let agents_rt = common::runtime("agents", 1);
    let bench = console_rt.block_on(Bench::start(dir.path()));
    let api = bench.api();
    let hosts = common::fleet_hosts(&vms, HOSTS);
    let capacity = HostCapacity {
        cores: 64,
        memory_mib: 256 * 1024,
    };
    let fleet = agents_rt.block_on(Fleet::join(
        &api,
        bench.agent_endpoint(),
        hosts,
        capacity,
        common::REPORT_INTERVAL,
        8,
        Instant::now() + Duration::from_secs(600),
    ));
    let connected =
        agents_rt.block_on(common::wait_connected(&api, HOSTS, Duration::from_secs(60)));
    assert_eq!(connected, HOSTS, "hosts connected");
    std::thread::sleep(common::REPORT_INTERVAL * 2);

    // Series in the request families, as a console that has served a while has them.
    agents_rt.block_on(async {
        for path in [
            "/api/v1/vms",
            "/api/v1/hosts",
            "/api/v1/events",
            "/api/v1/tasks",
            "/api/v1/settings",
            "/api/v1/drs",
            "/api/v1/vms/vm-0001",
            "/api/v1/vms/nope",
            "/api/v1/hosts/h1",
            "/api/v1/vms/vm-0001/migration",
        ] {
            for _ in 0..3 {
                api.get(path).await;
            }
        }
    });

    let get = || {
        agents_rt.block_on(async {
            let t = Instant::now();
            let (status, body) = api.get("/metrics").await;
            let elapsed = t.elapsed();
            assert_eq!(status, 200, "GET /metrics");
            (elapsed, body)
        })
    };
    let (_, body) = get();
    let text = ok(String::from_utf8(body), "UTF-8");
    let body_len = text.len();
    let scrape = ok(
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))),
        "Prometheus text",
    );
    let running = sample(
        &scrape,
        "vinfra_console_vms_observed",
        &[("state", "running")],
    );
    let connected = sample(&scrape, "vinfra_console_hosts", &[("status", "connected")]);
    let series = scrape.samples.len();

    let cpu0 = common::cpu_by_thread();
    let mut times = Vec::with_capacity(SCRAPES);
    let t0 = Instant::now();
    for _ in 0..SCRAPES {
        times.push(get().0);
    }
    let wall = t0.elapsed();
    let cpu1 = common::cpu_by_thread();
    times.sort_unstable();
    let load = common::loadavg();
    drop(fleet);
    console_rt.block_on(async { ok(bench.running.shutdown().await, "shutdown") });

    let (p50, p99, max) = (
        common::pct(&times, 50),
        common::pct(&times, 99),
        times[times.len() - 1],
    );
    println!(
        "GET /metrics, {VMS} VMs on {HOSTS} agents (state read every {} s), {SCRAPES} scrapes \
         (HTTPS, keep-alive; load average {load})",
        common::REPORT_INTERVAL.as_secs()
    );
    println!(
        "  scrape: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  body {} KiB, {series} samples (a histogram one); \
         {running}/{VMS} VMs counted running, {connected}/{HOSTS} hosts connected",
        ms(p50),
        ms(p99),
        ms(max),
        body_len / 1024
    );
    println!(
        "  during the scrapes ({:.1} s): CPU console {:.3} s ({:.2} ms a scrape), agents + client {:.2} s",
        wall.as_secs_f64(),
        common::cpu_between(&cpu0, &cpu1, "console"),
        common::cpu_between(&cpu0, &cpu1, "console") * 1000.0 / SCRAPES as f64,
        common::cpu_between(&cpu0, &cpu1, "agents"),
    );
    assert_eq!(running, VMS as f64, "every VM counted running");
    assert_eq!(connected, HOSTS as f64, "every host counted connected");
    println!(
        "RESULT metrics_scrape {:.2} {}",
        ms(p99),
        if p99 <= TARGET_P99 { "PASS" } else { "FAIL" }
    );
}
