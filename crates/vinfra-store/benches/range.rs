//! Listing 10,000 VMs: a range over 10,000 keys of about 1 KiB of JSON each, raw and decoded.
//!
//! Target: the raw range's p99 within the API list budget (`GET /api/v1/vms` of 10,000 VMs at p99
//! ≤ 50 ms, the `api_list` benchmark), so a list served from the store could still meet it;
//! prints `RESULT range raw p99 … PASS|FAIL`.

use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion};
use vinfra_store::{range_json, SqliteStore, Store};
use vinfra_types::VmSpec;

const KEYS: usize = 10_000;
/// The API list budget (p99 of `GET /api/v1/vms` with 10,000 VMs), in milliseconds.
const TARGET_P99_MS: f64 = 50.0;

/// A stored VM record, decoded the way the console lists VMs.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct VmRecord {
    id: String,
    spec: VmSpec,
    host: String,
    desired_power: String,
    started_at: Option<String>,
}

fn vm_json(i: usize) -> serde_json::Value {
    let mac = |p: u8| {
        format!(
            "52:54:{p:02x}:{:02x}:{:02x}:{:02x}",
            i >> 16 & 0xff,
            i >> 8 & 0xff,
            i & 0xff
        )
    };
    serde_json::json!({
        "id": format!("00000000-0000-4000-8000-{i:012}"),
        "spec": {
            "name": format!("vm-{i:05}"),
            "vcpus": 1 + i % 8,
            "memory_mib": 1024 * (1 + i % 16),
            "boot": {
                "kind": "kernel",
                "kernel": "vmlinuz-6.1.0-18-amd64",
                "initrd": "initrd.img-6.1.0-18-amd64",
                "cmdline": format!("console=ttyS0 root=/dev/vda1 rw quiet systemd.hostname=vm-{i:05} {}", "net.ifnames=0 ".repeat(30)),
            },
            "disks": [
                {"name": "root", "image": "debian-12-genericcloud-amd64.qcow2", "size_gib": 20},
                {"name": "data", "size_gib": 100},
                {"name": "logs", "size_gib": 10},
            ],
            "nics": [
                {"network": "default", "mac": mac(0), "ip": format!("10.{}.{}.{}", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff)},
                {"network": "storage", "mac": mac(1)},
            ],
        },
        "host": format!("host-{:03}", i % 100),
        "desired_power": "running",
        "started_at": "2025-01-01T00:00:00Z",
    })
}

fn fill(store: &SqliteStore) {
    let mut bytes = 0;
    for i in 0..KEYS {
        let v = match serde_json::to_vec(&vm_json(i)) {
            Ok(v) => v,
            Err(e) => panic!("encode: {e}"),
        };
        bytes += v.len();
        if let Err(e) = store.put(&format!("/vinfra/vms/vm-{i:05}"), &v, 0) {
            panic!("put: {e}");
        }
    }
    // Keys next to the prefix that the range must skip.
    for i in 0..1000 {
        if let Err(e) = store.put(&format!("/vinfra/hosts/host-{i:03}"), b"{}", 0) {
            panic!("put: {e}");
        }
    }
    eprintln!("filled {KEYS} keys, mean value {} bytes", bytes / KEYS);
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    (p50, p99)
}

fn bench(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let store = match SqliteStore::open(&dir.path().join("bench.db")) {
        Ok(s) => s,
        Err(e) => panic!("open: {e}"),
    };
    fill(&store);

    let mut raw_p99 = None;
    for (what, decode) in [("raw", false), ("typed json", true)] {
        let samples: Vec<Duration> = (0..200)
            .map(|_| {
                let t = Instant::now();
                let n = if decode {
                    range_json::<VmRecord>(&store, "/vinfra/vms/").map(|(v, _)| v.len())
                } else {
                    store.range("/vinfra/vms/").map(|(v, _)| v.len())
                };
                assert_eq!(n.ok(), Some(KEYS));
                t.elapsed()
            })
            .collect();
        let (p50, p99) = percentiles(samples);
        eprintln!("range {KEYS} keys ({what}): p50 {p50:?}, p99 {p99:?} over 200 runs");
        if !decode {
            raw_p99 = Some(p99);
        }
    }
    let ms = raw_p99.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1e3);
    println!(
        "RESULT range raw p99 {ms:.2} ms target <= {TARGET_P99_MS} ms: {}",
        if ms <= TARGET_P99_MS { "PASS" } else { "FAIL" }
    );

    let mut g = c.benchmark_group("range_10k_vms");
    g.sample_size(30);
    g.bench_function("raw", |b| b.iter(|| store.range("/vinfra/vms/")));
    g.bench_function("typed_json", |b| {
        b.iter(|| range_json::<VmRecord>(&store, "/vinfra/vms/"))
    });
    g.bench_function("json_value", |b| {
        b.iter(|| range_json::<serde_json::Value>(&store, "/vinfra/vms/"))
    });
    g.finish();
}

/// criterion's group function stays private here (it has no doc of its own).
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
