//! `GET /api/v1/vms` with 10,000 VMs (target: p99 ≤ 50 ms), side by side with its floor: the same
//! store's raw range read of the 10,000 records plus their serde_json decoding and encoding.
//!
//! The console runs in-process (real store, real HTTPS with the cluster CA, bearer token) with
//! 100 fake agents connected (joined through the agent endpoint, mutual TLS), each reporting its
//! 100 VMs as running every 2 s, as `vinfra agent` does: every answer merges the records with
//! the observed state of all 10,000 VMs. The agents speak the real protocol; what stands behind
//! them is a table, not 10,000 QEMUs (which one machine cannot run). The client keeps one
//! connection alive and reads the whole body of every answer. Console and agents run on runtimes
//! of their own (threads `console-*` and `agents-*`), so the CPU time of each is reported.
//!
//! `cargo bench -p vinfra-console --bench api_list`

mod common;

use std::time::{Duration, Instant};

use common::{ms, ok, Bench, Fleet, SeedVm};
use vinfra_console::state::records::{self as keys, VmRecord};
use vinfra_store::{SqliteStore, Store};
use vinfra_types::HostCapacity;

const VMS: usize = 10_000;
const HOSTS: usize = 100;
const REQUESTS: usize = 200;
const TARGET_P99: Duration = Duration::from_millis(50);
/// A page's size (`?limit=500`) and its target at p99.
const PAGE: usize = 500;
const TARGET_PAGE_P99: Duration = Duration::from_millis(5);
/// The target of the whole list against its floor, at p99.
const TARGET_RATIO: f64 = 1.0;

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    Stats {
        p50: common::pct(&samples, 50),
        p99: common::pct(&samples, 99),
        max: samples[samples.len() - 1],
    }
}

fn seed() -> Vec<SeedVm> {
    (0..VMS)
        .map(|i| {
            let name = format!("vm-{i:05}");
            SeedVm {
                id: uuid::Uuid::new_v4(),
                spec: common::spec(&name, 1, 256),
                name,
                host: format!("h{}", i % HOSTS),
            }
        })
        .collect()
}

/// The floor's times of one request: the range alone, the whole (range + decode + encode), the
/// encoding alone; and its body's length.
struct FloorSample {
    raw: Duration,
    full: Duration,
    encode: Duration,
    body_len: usize,
}

/// The floor: range + decode every record + encode the list, as a handler without any cache would.
fn floor(store: &SqliteStore) -> FloorSample {
    let t = Instant::now();
    let (kvs, _) = ok(store.range(keys::VMS), "range");
    let raw = t.elapsed();
    let records: Vec<VmRecord> = kvs
        .iter()
        .map(|kv| ok(serde_json::from_slice(&kv.value), "decode"))
        .collect();
    let e = Instant::now();
    let body = ok(serde_json::to_vec(&records), "encode");
    let encode = e.elapsed();
    let full = t.elapsed();
    assert_eq!(records.len(), VMS);
    FloorSample {
        raw,
        full,
        encode,
        body_len: std::hint::black_box(body).len(),
    }
}

/// The path of page `k` of `PAGE` VMs: the first without a token, the others after the last
/// name of the page before (the token is that name, hex-encoded, as the API's `Link` gives it).
fn page_path(k: usize) -> String {
    if k == 0 {
        format!("/api/v1/vms?limit={PAGE}")
    } else {
        let last = format!("vm-{:05}", k * PAGE - 1);
        format!(
            "/api/v1/vms?limit={PAGE}&page_token={}",
            hex::encode(last.as_bytes())
        )
    }
}

fn main() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let vms = seed();
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
    let t = Instant::now();
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
    eprintln!(
        "{HOSTS} agents joined and connected in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // A few reports, so that every host has reported more than its Hello.
    std::thread::sleep(common::REPORT_INTERVAL * 2);

    // The floor reads the same store file beside the running console (WAL: readers do not
    // block it), so both see the same moments of the machine: the whole list, the floor and a
    // page of 500 take turns, request by request.
    let store = ok(SqliteStore::open(&dir.path().join("console.db")), "open");
    let url = "/api/v1/vms";
    let cpu0 = common::cpu_by_thread();
    let reports0 = fleet
        .counters
        .reports
        .load(std::sync::atomic::Ordering::Relaxed);
    let get = |path: &str| {
        agents_rt.block_on(async {
            let t = Instant::now();
            let (status, body) = api.get(path).await;
            let elapsed = t.elapsed();
            assert_eq!(status, 200, "GET {path}");
            (elapsed, body)
        })
    };
    // One warm-up request of each, checked, not counted.
    let (_, body) = get(url);
    let list: Vec<serde_json::Value> = ok(serde_json::from_slice(&body), "list");
    assert_eq!(list.len(), VMS);
    let running = list.iter().filter(|v| v["state"] == "running").count();
    let api_len = body.len();
    for k in [0, 1, VMS / PAGE - 1] {
        let (_, body) = get(&page_path(k));
        let page: Vec<serde_json::Value> = ok(serde_json::from_slice(&body), "page");
        assert_eq!(page.len(), PAGE, "page {k}");
        let names: Vec<&str> = page.iter().filter_map(|v| v["name"].as_str()).collect();
        let want: Vec<&str> = list[k * PAGE..(k + 1) * PAGE]
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(names, want, "page {k} is the list's slice");
    }
    drop(list);
    let (mut times, mut page_times) = (Vec::new(), Vec::new());
    let (mut raw, mut full, mut encode) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor_len = 0;
    let t0 = Instant::now();
    for i in 0..REQUESTS {
        times.push(get(url).0);
        let f = floor(&store);
        raw.push(f.raw);
        full.push(f.full);
        encode.push(f.encode);
        floor_len = f.body_len;
        page_times.push(get(&page_path(i % (VMS / PAGE))).0);
    }
    let wall = t0.elapsed();
    let (ours, pages) = (stats(times), stats(page_times));
    let (raw, full, encode) = (stats(raw), stats(full), stats(encode));
    let cpu1 = common::cpu_by_thread();
    let reports = fleet
        .counters
        .reports
        .load(std::sync::atomic::Ordering::Relaxed)
        - reports0;
    let load = common::loadavg();
    drop(fleet);
    console_rt.block_on(async { ok(bench.running.shutdown().await, "shutdown") });

    println!(
        "GET /api/v1/vms, {VMS} VMs, {REQUESTS} requests (HTTPS, keep-alive), {HOSTS} agents \
         connected (state read every {} s, reported on a change or every 4th), a heartbeat every {} s (load average {load})",
        common::REPORT_INTERVAL.as_secs(),
        common::HEARTBEAT.as_secs()
    );
    println!(
        "  API:   p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms  body {} KiB, {running}/{VMS} shown running (observed state merged)",
        ms(ours.p50),
        ms(ours.p99),
        ms(ours.max),
        api_len / 1024
    );
    println!(
        "  floor: p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms  body {} KiB (store range + decode + encode)",
        ms(full.p50),
        ms(full.p99),
        ms(full.max),
        floor_len / 1024
    );
    println!(
        "         raw range alone: p50 {:.2} ms  p99 {:.2} ms; encoding alone: p50 {:.2} ms  p99 {:.2} ms",
        ms(raw.p50),
        ms(raw.p99),
        ms(encode.p50),
        ms(encode.p99)
    );
    println!(
        "  page of {PAGE} (?limit={PAGE}, the {} pages in turn): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        VMS / PAGE,
        ms(pages.p50),
        ms(pages.p99),
        ms(pages.max)
    );
    println!(
        "  during the {REQUESTS} rounds (list, floor, page; {:.1} s): {reports} agent reports; CPU console {:.2} s, agents + client {:.2} s",
        wall.as_secs_f64(),
        common::cpu_between(&cpu0, &cpu1, "console"),
        common::cpu_between(&cpu0, &cpu1, "agents"),
    );
    println!(
        "  ratio API/floor: p50 {:.2}x  p99 {:.2}x",
        ours.p50.as_secs_f64() / full.p50.as_secs_f64(),
        ours.p99.as_secs_f64() / full.p99.as_secs_f64()
    );
    assert_eq!(running, VMS, "every VM shown with its observed state");
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    println!(
        "RESULT api_list p99 {:.2} ms target <= {} ms: {}",
        ms(ours.p99),
        TARGET_P99.as_millis(),
        verdict(ours.p99 <= TARGET_P99)
    );
    let ratio = ours.p99.as_secs_f64() / full.p99.as_secs_f64();
    println!(
        "RESULT api_list p99/floor {ratio:.2} target <= {TARGET_RATIO:.1}: {}",
        verdict(ratio <= TARGET_RATIO)
    );
    println!(
        "RESULT api_list page{PAGE} p99 {:.2} ms target <= {} ms: {}",
        ms(pages.p99),
        TARGET_PAGE_P99.as_millis(),
        verdict(pages.p99 <= TARGET_PAGE_P99)
    );
}
