//! `GET /api/v1/vms` with 10,000 VMs (target: p99 ≤ 50 ms), side by side with its floor: the same
//! store's raw range read of the 10,000 records plus their serde_json decoding and encoding.
//!
//! The console runs in-process (real store, real HTTPS with the cluster CA, bearer token); the
//! client keeps one connection alive and reads the whole body of every answer.
//!
//! `cargo bench -p vinfra-console --bench api_list`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use vinfra_console::state::records::{self as keys, DesiredPower, VmRecord};
use vinfra_store::{Op, SqliteStore, Store, Txn};

const VMS: usize = 10_000;
const REQUESTS: usize = 200;
const TARGET_P99: Duration = Duration::from_millis(50);

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let n = samples.len();
    Stats {
        p50: samples[n / 2],
        p99: samples[(n * 99).div_ceil(100) - 1],
        max: samples[n - 1],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fill(store: &SqliteStore) {
    let ops = (0..VMS)
        .map(|i| {
            let name = format!("vm-{i:05}");
            let spec = match serde_json::from_str(&common::vm_json(&name, 1, 256)) {
                Ok(s) => s,
                Err(e) => panic!("spec: {e}"),
            };
            let rec = VmRecord {
                id: uuid::Uuid::new_v4(),
                spec,
                host: format!("h{}", i % 20),
                desired: DesiredPower::Running,
                created_at: 1,
                started_at: Some(1),
            };
            let value = match serde_json::to_vec(&rec) {
                Ok(v) => v,
                Err(e) => panic!("encode: {e}"),
            };
            Op::Put {
                key: keys::vm_key(&name),
                value,
                lease: 0,
            }
        })
        .collect();
    if let Err(e) = store.txn(Txn {
        compare: vec![],
        success: ops,
        failure: vec![],
    }) {
        panic!("fill: {e}");
    }
}

/// The floor: range + decode every record + encode the list, as a handler without any cache would.
fn floor(store: &SqliteStore) -> (Stats, Stats, Stats, usize) {
    let mut raw = Vec::with_capacity(REQUESTS);
    let mut full = Vec::with_capacity(REQUESTS);
    let mut encode = Vec::with_capacity(REQUESTS);
    let mut body_len = 0;
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let kvs = match store.range(keys::VMS) {
            Ok((kvs, _)) => kvs,
            Err(e) => panic!("range: {e}"),
        };
        raw.push(t.elapsed());
        let records: Vec<VmRecord> = kvs
            .iter()
            .map(|kv| match serde_json::from_slice(&kv.value) {
                Ok(r) => r,
                Err(e) => panic!("decode: {e}"),
            })
            .collect();
        let e = Instant::now();
        let body = match serde_json::to_vec(&records) {
            Ok(b) => b,
            Err(e) => panic!("encode: {e}"),
        };
        encode.push(e.elapsed());
        full.push(t.elapsed());
        assert_eq!(records.len(), VMS);
        body_len = std::hint::black_box(body).len();
    }
    (stats(raw), stats(full), stats(encode), body_len)
}

async fn api(dir: &std::path::Path) -> (Stats, usize) {
    let c = common::start_console(dir, None, true).await;
    let url = format!("{}/api/v1/vms", c.base);
    let mut times = Vec::with_capacity(REQUESTS);
    let mut body_len = 0;
    // One warm-up request (connection, TLS handshake), checked, not counted.
    for i in 0..=REQUESTS {
        let t = Instant::now();
        let resp = match c.client.get(&url).bearer_auth(&c.token).send().await {
            Ok(r) => r,
            Err(e) => panic!("GET {url}: {e}"),
        };
        assert_eq!(resp.status(), 200);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => panic!("body: {e}"),
        };
        let elapsed = t.elapsed();
        if i == 0 {
            let list: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
                Ok(l) => l,
                Err(e) => panic!("list: {e}"),
            };
            assert_eq!(list.len(), VMS);
            body_len = body.len();
        } else {
            times.push(elapsed);
        }
    }
    c.shutdown().await;
    (stats(times), body_len)
}

fn main() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let (raw, full, encode, floor_len) = {
        let store = match SqliteStore::open(&dir.path().join("console.db")) {
            Ok(s) => s,
            Err(e) => panic!("open: {e}"),
        };
        fill(&store);
        floor(&store)
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let (ours, api_len) = rt.block_on(api(dir.path()));

    println!("GET /api/v1/vms, {VMS} VMs, {REQUESTS} requests (HTTPS, keep-alive)");
    println!(
        "  API:   p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms  body {} KiB",
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
        "  ratio API/floor: p50 {:.2}x  p99 {:.2}x",
        ours.p50.as_secs_f64() / full.p50.as_secs_f64(),
        ours.p99.as_secs_f64() / full.p99.as_secs_f64()
    );
    let pass = ours.p99 <= TARGET_P99;
    println!(
        "RESULT api_list p99 {:.2} ms target <= {} ms: {}",
        ms(ours.p99),
        TARGET_P99.as_millis(),
        if pass { "PASS" } else { "FAIL" }
    );
}
