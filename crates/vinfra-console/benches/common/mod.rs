//! Shared by the console benchmarks: an in-process console (real store, real HTTPS, bearer
//! token), a store filled directly before the console starts (VM records, placement rules), and a
//! fleet of fake agents that join through the agent endpoint, connect over mutual TLS, say Hello
//! and report every VM they hold as `vinfra agent` reports, and answer `CreateVm` at once
//! (`fleet`).
//!
//! Everything the benchmarks know about the console's insides is in this module (store keys and
//! records, the start-up API); the benchmarks themselves speak HTTP and the agent protocol.
#![allow(dead_code)]

mod fleet;
mod fleet_process;
pub use fleet::*;
// Only `placement_api` runs its fleet in a child process.
#[allow(unused_imports)]
pub use fleet_process::*;

/// The allocator the `vinfra` binary runs the console with (its `main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use uuid::Uuid;
use vinfra_console::state::records::{self as keys, DesiredPower, VmRecord};
use vinfra_console::{ConsoleConfig, RunningConsole};
use vinfra_proto::frame::FramedJson;
use vinfra_proto::{
    pki, AgentCommand, AgentMessage, CommandError, CommandReply, ConsoleMessage, HostReport,
    PROTOCOL_VERSION, UNCHANGED_REPORT_EVERY,
};
use vinfra_store::{Op, SqliteStore, Store, Txn};
use vinfra_types::balancing::PlacementRule;
use vinfra_types::{
    Accel, BootSource, HostCapacity, HostUsage, PowerState, VmObserved, VmSpec, VmUsage,
};

/// How often a real agent reads its state (`vinfra agent`): every 2 s; it reports it when it
/// changed, else every [`vinfra_proto::UNCHANGED_REPORT_EVERY`]-th time.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// How often a real agent sends a heartbeat (`vinfra agent`): every second. The console counts
/// a host disconnected after 3 s without any message.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Panics with `what` and the error.
pub fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A small VM specification (kernel boot, no disks or NICs).
pub fn spec(name: &str, vcpus: u32, memory_mib: u64) -> VmSpec {
    VmSpec {
        name: name.to_string(),
        vcpus,
        memory_mib,
        boot: BootSource::Kernel {
            kernel: "vmlinuz".into(),
            initrd: Some("initrd.img".into()),
            cmdline: "console=ttyS0".into(),
        },
        disks: Vec::new(),
        nics: Vec::new(),
        ha: Default::default(),
    }
}

/// A VM that exists before the console starts: written straight into the store.
pub struct SeedVm {
    /// Its record's id (what its host reports).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its specification.
    pub spec: VmSpec,
}

/// Writes `vms` (desired running) and `rules` into the console's store at `dir` before the
/// console starts, in transactions of 5,000 records.
pub fn seed_store(dir: &Path, vms: &[SeedVm], rules: &[PlacementRule]) {
    let store = ok(SqliteStore::open(&dir.join("console.db")), "open the store");
    let mut ops: Vec<Op> = vms
        .iter()
        .zip(0u32..)
        .map(|(v, slot)| {
            let rec = VmRecord {
                id: v.id,
                spec: v.spec.clone(),
                host: v.host.clone(),
                desired: DesiredPower::Running,
                created_at: 1,
                started_at: Some(1),
                failed_over: None,
                restarts: 0,
                slot: Some(slot),
                platform: None,
            };
            Op::Put {
                key: keys::vm_key(&v.name),
                value: ok(keys::encode(&rec), "encode a VM record"),
                lease: 0,
            }
        })
        .collect();
    ops.extend(rules.iter().map(|r| Op::Put {
        key: keys::rule_key(&r.name),
        value: ok(keys::encode(r), "encode a rule"),
        lease: 0,
    }));
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(5_000));
        let chunk = std::mem::replace(&mut ops, rest);
        ok(
            store.txn(Txn {
                compare: vec![],
                success: chunk,
                failure: vec![],
            }),
            "seed the store",
        );
    }
}

/// A console started in-process on 127.0.0.1 (REST over HTTPS, agents over mutual TLS) and an
/// API client that trusts only the cluster CA.
pub struct Bench {
    /// The console.
    pub running: RunningConsole,
    /// The API client (keep-alive, HTTP/1.1).
    pub client: reqwest::Client,
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// The API token.
    pub token: String,
}

impl Bench {
    /// Starts the console on the store at `dir` (call from inside the console's runtime).
    pub async fn start(dir: &Path) -> Bench {
        // As `vinfra console` runs (its agents, in this process, too).
        vinfra_console::without_huge_pages();
        let mut config = ConsoleConfig::new(dir.to_path_buf());
        config.api_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.agent_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.tls = true;
        config.token_file = Some(dir.join("token"));
        // One token sends thousands of requests a second here: the per-token rate limit is off
        // (docs/design.md, "Limits"), and every client connection is served.
        config.api_limits.rate = None;
        config.api_limits.max_connections = 4096;
        let running = ok(vinfra_console::start(config).await, "start the console");
        let token = running
            .api_token
            .clone()
            .expect("a first start makes a token");
        let client = api_client(&running.ca_pem);
        let base = format!("https://127.0.0.1:{}", running.api_addr.port());
        Bench {
            running,
            client,
            base,
            token,
        }
    }

    /// What the API client needs (to use from another runtime).
    pub fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
        }
    }

    /// Where agents dial, and the CA they trust.
    pub fn agent_endpoint(&self) -> (SocketAddr, String) {
        (self.running.agent_addr, self.running.ca_pem.clone())
    }
}

/// The benchmarks' API client: keep-alive HTTP/1.1, trusting only the cluster CA `ca_pem`.
pub fn api_client(ca_pem: &str) -> reqwest::Client {
    let tls = ok(pki::client_config(ca_pem, None), "client TLS");
    ok(
        reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .http1_only()
            .pool_max_idle_per_host(256)
            .build(),
        "HTTP client",
    )
}

/// A cheap handle on the REST API.
#[derive(Clone)]
pub struct Api {
    /// The client.
    pub client: reqwest::Client,
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// The API token.
    pub token: String,
}

impl Api {
    /// `GET path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let r = ok(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await,
            "GET",
        );
        let status = r.status().as_u16();
        (status, ok(r.bytes().await, "body").to_vec())
    }

    /// `POST path` with a JSON body: status and body.
    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, Vec<u8>) {
        self.post_preferring(path, body, None).await
    }

    /// [`Api::post`] with a `Prefer` header when `prefer` is given (`wait=30`).
    pub async fn post_preferring(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        prefer: Option<&str>,
    ) -> (u16, Vec<u8>) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body);
        if let Some(p) = prefer {
            req = req.header("prefer", p);
        }
        let r = ok(req.send().await, "POST");
        let status = r.status().as_u16();
        (status, ok(r.bytes().await, "body").to_vec())
    }
}

/// A multi-threaded runtime of `workers` threads named `name`.
pub fn runtime(name: &str, workers: usize) -> tokio::runtime::Runtime {
    ok(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build(),
        "runtime",
    )
}

/// Waits until the API lists `n` hosts as connected (polled every 2 s, at most `limit`).
pub async fn wait_connected(api: &Api, n: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = api.get("/api/v1/hosts").await;
        assert_eq!(status, 200, "GET /api/v1/hosts");
        let hosts: Vec<serde_json::Value> = ok(serde_json::from_slice(&body), "host list");
        let connected = hosts.iter().filter(|h| h["status"] == "connected").count();
        if connected >= n || Instant::now() >= deadline {
            return connected;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Raises this process's open-file limit towards `want` (a socket per host on each side; a fleet
/// in the console's process holds two): the soft limit up to the hard one, the hard one too
/// where that is allowed. Returns the limit in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    match sys::raise_nofile(want) {
        Ok(n) => n,
        Err(e) => panic!("open-file limit: {e}"),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads on Linux, the same in every
/// process of the machine.
pub fn monotonic_ns() -> u64 {
    sys::monotonic_ns()
}

mod sys {
    use nix::libc;

    /// `CLOCK_MONOTONIC` in nanoseconds.
    pub fn monotonic_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec the call writes into; CLOCK_MONOTONIC always exists.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Sets RLIMIT_NOFILE to `want` (soft and, when lower, hard), else the soft limit to the
    /// hard one; returns the soft limit in force.
    pub fn raise_nofile(want: u64) -> std::io::Result<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit the call writes into.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        let wanted = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        // SAFETY: `wanted` is a valid rlimit the call reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            return Ok(want);
        }
        // Not allowed to raise the hard limit: go as far as it.
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit the call reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(lim.rlim_cur)
    }
}

/// CPU seconds (user + system) spent so far by this process's threads, summed per thread name
/// (`comm`, as tokio's `thread_name` sets it).
pub fn cpu_by_thread() -> HashMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux.
    let mut out: HashMap<String, f64> = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state is field 3 of stat(5), utime 14 and stime 15.
        let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (ticks(14), ticks(15)) {
            *out.entry(name).or_default() += (u + s) / tick;
        }
    }
    out
}

/// CPU seconds spent by threads whose name starts with `prefix` between two readings of
/// [`cpu_by_thread`].
pub fn cpu_between(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
    prefix: &str,
) -> f64 {
    let sum = |m: &HashMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    sum(after) - sum(before)
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// p-th percentile (0..=100) of sorted `samples`.
pub fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = (sorted.len() * p).div_ceil(100).max(1) - 1;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median time of `runs` calls of `f`.
pub fn median_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut v: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Parts of a VM create's cost inside the console, each timed alone (median of several calls)
/// on the running console, with no request in flight.
pub struct CreateSteps {
    /// Reading the cleanup markers (each create checks them).
    pub cleanups: Duration,
    /// One store transaction writing one VM-sized record (SQLite WAL, `synchronous=FULL`: one
    /// fsync), on a store of its own in the same directory.
    pub store_write: Duration,
    /// One host's switch configuration (`networks::push::host_config`): the switch controller
    /// computes one per connected host when VM, network or host records change.
    pub switch_config: Duration,
    /// A copy of every VM record (`vm_records`).
    pub vm_records: Duration,
}

/// Times [`CreateSteps`] on the console of `bench`, with the store directory `dir`.
pub fn create_steps(bench: &Bench, dir: &Path, runs: usize) -> CreateSteps {
    let console = bench.running.console.clone();
    let cleanups = median_of(runs, || ok(console.cleanups(None), "cleanups"));
    let store = ok(SqliteStore::open(&dir.join("probe.db")), "probe store");
    let value = vec![b'x'; 600];
    let mut n = 0;
    let store_write = median_of(runs, || {
        n += 1;
        ok(
            store.txn(Txn {
                compare: vec![],
                success: vec![Op::Put {
                    key: format!("/probe/{n}"),
                    value: value.clone(),
                    lease: 0,
                }],
                failure: vec![],
            }),
            "probe write",
        )
    });
    let host = console
        .host_records()
        .into_iter()
        .next()
        .map(|h| h.name)
        .unwrap_or_default();
    let switch_config = median_of(runs, || {
        ok(
            vinfra_console::networks::push::host_config(&console, &host),
            "switch config",
        )
    });
    let vm_records = median_of(runs, || console.vm_records());
    CreateSteps {
        cleanups,
        store_write,
        switch_config,
        vm_records,
    }
}
