//! Placement throughput on the path a `POST /api/v1/vms` takes (target ≥ 10,000 placements/s),
//! at 10,000 hosts and 100,000 VMs with placement rules present.
//!
//! The console runs in-process (real store on disk, real HTTPS, bearer token). Before it starts,
//! the store is seeded directly with 100,000 running VMs (10 per host) and 8,000 placement rules
//! over them (must anti-affinity, should affinity, must run_on, should not_on, each satisfied by
//! the seeded placement), plus one must anti-affinity rule for every tenth VM to be created
//! (paired with a seeded VM), so both of the console's placement paths run: the rule-free one
//! and the rule-aware one. Seeding the store is set-up only; what is measured goes through the
//! console exactly as a user's request does. The 10,000 hosts are fake agents that join through
//! the agent endpoint (a join token each, a CSR signed by the cluster CA), connect over mutual
//! TLS, report their VMs every 2 s like `vinfra agent`, and answer `CreateVm` at once (no
//! QEMU: one machine cannot run 100,000).
//!
//! Measured: `CREATES` creates (`POST /api/v1/vms`, 2 vCPUs, 4 GiB, start) from `CONCURRENCY`
//! clients on keep-alive HTTPS connections, each until its task has ended (the API answers 202
//! with the task once the VM is placed and its record, NIC claims and event are written in one
//! store transaction; the client follows the task with long polls, `GET
//! /api/v1/tasks/{id}?wait_s=30`, as `vinfra` does, until the agent's answer is in). Per create, the
//! fake agent stamps when `CreateVm` arrived and when it answered, which splits each create into
//! the console's work before the agent, the agent round trip, and the console's work after it.
//! Then the floor: as many authenticated `GET /api/v1/settings` from the same clients (what the
//! API serves at all on this machine: HTTPS, routing, the token check, a small answer). Then,
//! with nothing in flight, each step of the create path is timed alone on the running
//! console (host inputs, rules, placement with and without rules, the cluster model, cleanup
//! markers, one store write). Console and agents run on runtimes of their own (threads
//! `console-*` and `agents-*`; the store's committer, `store-commit`, counts as the console's),
//! so the console's CPU time per placement is reported too.
//!
//! Then as many VMs again **with a count** (`--count K`, default 100, 0: none): `POST
//! /api/v1/vms` with `"count": K` creates `many{b}-1` … `many{b}-K` in one request, one task
//! followed to its end; every VM still placed under the rules (one in ten named in a must
//! anti-affinity rule), written and created on its host. Its own `RESULT` line
//! (`console-path-count{K}`), against the same target. `--count-only` skips the creates one
//! per request (for profiles).
//!
//! With `--ha-every K` (K > 0) every K-th seeded VM and every K-th new VM has HA on, so every
//! create is also checked by HA admission control (tolerate 1 host failure).
//!
//! `cargo bench -p vinfra-console --bench placement_api [-- --hosts N --vms N --rules N --creates N
//! --concurrency N --connect-limit SECONDS --ha-every K --count K --count-only]` (defaults:
//! 10,000 / 100,000 / 8,000 / 2,000 / 8 / 600, count 100). No join starts after the connect limit, and creates start once every joined host is
//! connected or the limit passed: a console that cannot take all its hosts in that time is
//! measured with those it took, and the result is a FAIL that says how many. Console and agents
//! share this process, which needs two open files per host: it raises its limit as far as it
//! may and joins no more hosts than that allows (saying so; the result is then a FAIL too).

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{median_of, ms, ok, Api, Bench, Fleet, FleetHost, SeedVm};
use vinfra_types::api::CreateVmRequest;
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
use vinfra_types::task::{Task, TaskState};
use vinfra_types::HostCapacity;

const TARGET_PER_S: f64 = 10_000.0;
const VCPUS: u32 = 2;
const MEMORY_MIB: u64 = 4096;
/// Every tenth new VM is named in a rule.
const RULE_EVERY: usize = 10;
/// How long the console's CPU is watched with no request in flight.
const IDLE_WINDOW: Duration = Duration::from_secs(6);

/// Every this many VMs has HA on (0: none); set from `--ha-every`.
static HA_EVERY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The console's CPU seconds between two readings: its runtime's threads (`console-*`) and
/// its store's committer (`store-commit`).
fn console_cpu_between(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> f64 {
    common::cpu_between(before, after, "console")
        + common::cpu_between(before, after, "store-commit")
}

/// Whether the `i`-th VM (seeded or new) has HA on.
fn is_ha(i: usize) -> bool {
    let every = HA_EVERY.load(Ordering::Relaxed);
    every > 0 && i.is_multiple_of(every)
}

struct Args {
    hosts: usize,
    vms: usize,
    rules: usize,
    creates: usize,
    concurrency: usize,
    connect_limit: Duration,
    count: usize,
    /// Only the creates with a count (`--count-only`, for profiles).
    count_only: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        hosts: 10_000,
        vms: 100_000,
        rules: 8_000,
        creates: 2_000,
        concurrency: 8,
        connect_limit: Duration::from_secs(600),
        count: 100,
        count_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--hosts" => &mut a.hosts,
            "--vms" => &mut a.vms,
            "--rules" => &mut a.rules,
            "--creates" => &mut a.creates,
            "--concurrency" => &mut a.concurrency,
            "--count" => &mut a.count,
            "--ha-every" => {
                let k = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                HA_EVERY.store(k, Ordering::Relaxed);
                continue;
            }
            "--connect-limit" => {
                let s = it.next().and_then(|v| v.parse().ok()).unwrap_or(600);
                a.connect_limit = Duration::from_secs(s);
                continue;
            }
            "--count-only" => {
                a.count_only = true;
                continue;
            }
            // cargo bench passes this to every benchmark binary.
            "--bench" => continue,
            other => {
                eprintln!("placement_api: unknown argument '{other}'");
                std::process::exit(2);
            }
        };
        *slot = match it.next().and_then(|v| v.parse().ok()) {
            Some(n) => n,
            None => {
                eprintln!("placement_api: {flag} needs a number");
                std::process::exit(2);
            }
        };
    }
    assert!(a.hosts >= 4 && a.vms >= a.hosts && a.creates > 0 && a.concurrency > 0);
    a
}

fn host(i: usize) -> String {
    format!("h{i:05}")
}

fn seeded(i: usize) -> String {
    format!("vm-{i:06}")
}

fn new_vm(k: usize) -> String {
    format!("new-{k:06}")
}

/// The `k`-th VM created with a count: VM `i` of request `many{b}` (`k = b * count + i - 1`).
fn many_vm(k: usize, count: usize) -> String {
    format!("{}-{}", many_base(k / count), k % count + 1)
}

/// The name given to the `b`-th create with a count.
fn many_base(b: usize) -> String {
    format!("many{b:05}")
}

/// Rules over the seeded VMs (VM i runs on host i % hosts), each satisfied by that placement,
/// and one must anti-affinity rule per `RULE_EVERY`-th new VM.
fn rules(a: &Args) -> Vec<PlacementRule> {
    let rule = |name: String, strength, kind, vms: Vec<String>, hosts: Vec<String>| PlacementRule {
        name,
        strength,
        kind,
        vms,
        hosts,
    };
    let stride = (a.vms / a.rules.max(1)).max(1);
    let mut out = Vec::new();
    for r in 0..a.rules {
        let j = (r * stride) % a.vms;
        let name = format!("rule-{r:05}");
        out.push(match r % 5 {
            // Consecutive VMs run on consecutive hosts: pairwise different.
            0 | 1 => rule(
                name,
                RuleStrength::Must,
                RuleKind::AntiAffinity,
                (0..3).map(|d| seeded((j + d) % a.vms)).collect(),
                vec![],
            ),
            // VMs `hosts` apart share a host.
            2 => rule(
                name,
                RuleStrength::Should,
                RuleKind::Affinity,
                vec![seeded(j), seeded((j + a.hosts) % a.vms)],
                vec![],
            ),
            3 => rule(
                name,
                RuleStrength::Must,
                RuleKind::RunOn,
                vec![seeded(j)],
                (0..4).map(|d| host((j + d) % a.hosts)).collect(),
            ),
            _ => rule(
                name,
                RuleStrength::Should,
                RuleKind::NotOn,
                vec![seeded(j)],
                (1..4).map(|d| host((j + d) % a.hosts)).collect(),
            ),
        });
    }
    for k in (0..a.creates).step_by(RULE_EVERY) {
        out.push(rule(
            format!("new-rule-{k:06}"),
            RuleStrength::Must,
            RuleKind::AntiAffinity,
            vec![new_vm(k), seeded((k * 7919) % a.vms)],
            vec![],
        ));
        if a.count > 0 {
            out.push(rule(
                format!("many-rule-{k:06}"),
                RuleStrength::Must,
                RuleKind::AntiAffinity,
                vec![many_vm(k, a.count), seeded((k * 7919 + 1) % a.vms)],
                vec![],
            ));
        }
    }
    out
}

fn request(name: &str) -> CreateVmRequest {
    let k: usize = name
        .trim_start_matches("new-")
        .parse()
        .unwrap_or(usize::MAX);
    let mut spec = common::spec(name, VCPUS, MEMORY_MIB);
    spec.ha.enabled = k != usize::MAX && is_ha(k);
    CreateVmRequest {
        spec,
        host: None,
        start: true,
        count: None,
    }
}

/// One create as the client saw it.
struct Done {
    name: String,
    start: Instant,
    end: Instant,
    status: u16,
    body: Vec<u8>,
}

/// `names` created by `concurrency` clients; returns every create and the wall time.
/// Creates network `bench-net` and VM `ported-0` with a NIC on it (started) through the API;
/// returns the VM's host.
async fn ported_vm(api: &Api) -> String {
    let net =
        serde_json::json!({"name": "bench-net", "kind": "overlay", "subnet": "10.200.0.0/16"});
    let (status, body) = api.post("/api/v1/networks", &net).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let mut spec = common::spec("ported-0", VCPUS, MEMORY_MIB);
    spec.nics = vec![vinfra_types::NicSpec {
        network: "bench-net".into(),
        ..Default::default()
    }];
    let req = CreateVmRequest {
        spec,
        host: None,
        start: true,
        count: None,
    };
    let (status, body) = create_one(api, &req).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = ok(serde_json::from_slice(&body), "the created VM");
    v["host"].as_str().unwrap_or_default().to_string()
}

/// One create as a client makes it: `POST /api/v1/vms`, then its task followed with long polls
/// (`GET /api/v1/tasks/{id}?wait_s=30`) to its end. 201 and the VM when the task succeeded;
/// otherwise the status and body of what failed (the task's problem when it failed).
async fn create_one(api: &Api, req: &CreateVmRequest) -> (u16, Vec<u8>) {
    let (status, body) = api.post("/api/v1/vms", req).await;
    if status != 202 {
        return (status, body);
    }
    let mut task: Task = ok(serde_json::from_slice(&body), "the create's task");
    while !task.state.is_final() {
        let (status, body) = api
            .get(&format!("/api/v1/tasks/{}?wait_s=30", task.id))
            .await;
        if status != 200 {
            return (status, body);
        }
        task = ok(serde_json::from_slice(&body), "the create's task");
    }
    match (task.state, task.result, task.error) {
        (TaskState::Succeeded, Some(vm), _) => (201, vm.to_string().into_bytes()),
        (_, _, Some(problem)) => (problem.status, ok(serde_json::to_vec(&problem), "problem")),
        (state, ..) => (500, format!("task ended {state:?}").into_bytes()),
    }
}

async fn create_all(api: &Api, names: Vec<String>, concurrency: usize) -> (Vec<Done>, Duration) {
    let queue = Arc::new(Mutex::new(names.into_iter().rev().collect::<Vec<_>>()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let t = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (api, queue, done) = (api.clone(), queue.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(name) = next else { break };
                let start = Instant::now();
                let (status, body) = create_one(&api, &request(&name)).await;
                let end = Instant::now();
                done.lock().unwrap_or_else(|p| p.into_inner()).push(Done {
                    name,
                    start,
                    end,
                    status,
                    body,
                });
            }
        }));
    }
    for c in clients {
        ok(c.await, "client");
    }
    let wall = t.elapsed();
    let done = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()));
    (done, wall)
}

/// `creates` VMs created with `count` per request (`POST /api/v1/vms` with `count`, its task
/// followed to its end) by `concurrency` clients; every VM as one [`Done`] with its request's
/// times (201 when the task listed it), and the wall time.
async fn create_many_all(
    api: &Api,
    creates: usize,
    count: usize,
    concurrency: usize,
) -> (Vec<Done>, Duration) {
    let requests = creates.div_ceil(count);
    let queue = Arc::new(Mutex::new((0..requests).rev().collect::<Vec<_>>()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let t = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (api, queue, done) = (api.clone(), queue.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(b) = next else { break };
                let n = count.min(creates - b * count);
                let base = many_base(b);
                let mut req = request(&base);
                req.spec.ha.enabled = is_ha(b * count);
                req.count = Some(n as u32);
                let start = Instant::now();
                let (status, body) = create_one(&api, &req).await;
                let end = Instant::now();
                let listed: HashMap<String, ()> = if status == 201 {
                    let c: vinfra_types::api::CreatedVms =
                        ok(serde_json::from_slice(&body), "the created VMs");
                    c.vms.into_iter().map(|v| (v.name, ())).collect()
                } else {
                    HashMap::new()
                };
                let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
                for i in 1..=n {
                    let name = format!("{base}-{i}");
                    let created = listed.contains_key(&name);
                    d.push(Done {
                        status: if status == 201 && !created {
                            500
                        } else {
                            status
                        },
                        body: if created { Vec::new() } else { body.clone() },
                        name,
                        start,
                        end,
                    });
                }
            }
        }));
    }
    for c in clients {
        ok(c.await, "client");
    }
    let wall = t.elapsed();
    let done = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()));
    (done, wall)
}

/// The floor: `n` authenticated `GET /api/v1/settings` (a small answer from memory) from
/// `concurrency` clients on the same kind of connections as the creates; requests per second.
async fn get_floor(api: &Api, n: usize, concurrency: usize) -> f64 {
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(n));
    let t = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (api, left) = (api.clone(), left.clone());
        clients.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                .is_ok()
            {
                let (status, _) = api.get("/api/v1/settings").await;
                assert_eq!(status, 200, "GET /api/v1/settings");
            }
        }));
    }
    for c in clients {
        ok(c.await, "client");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// p50 / p99 of `v`, ms.
fn p50_p99(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_unstable();
    format!(
        "p50 {:7.2} ms  p99 {:7.2} ms",
        ms(common::pct(&v, 50)),
        ms(common::pct(&v, 99))
    )
}

fn main() {
    let mut a = parse_args();
    let files = common::raise_fd_limit(2 * a.hosts as u64 + 1024);
    // Two sockets per host (agent and console side) in this one process.
    let fd_hosts = (files.saturating_sub(1024) / 2) as usize;
    if fd_hosts < a.hosts {
        // The cluster is built at the size that can connect, VMs and rules included: a rule
        // naming a host that never joins would make every create it touches fail.
        println!(
            "open-file limit {files} (the hard limit: not raised): {fd_hosts} of the {} hosts asked \
             can connect in this process, so the cluster is built with {fd_hosts} hosts",
            a.hosts
        );
        a.hosts = fd_hosts;
    }
    let dir = ok(tempfile::tempdir_in(std::env::temp_dir()), "tempdir");
    let t = Instant::now();
    let vms: Vec<SeedVm> = (0..a.vms)
        .map(|i| SeedVm {
            id: uuid::Uuid::new_v4(),
            name: seeded(i),
            host: host(i % a.hosts),
            spec: {
                let mut spec = common::spec(&seeded(i), VCPUS, MEMORY_MIB);
                spec.ha.enabled = is_ha(i);
                spec
            },
        })
        .collect();
    let rules = rules(&a);
    common::seed_store(dir.path(), &vms, &rules);
    eprintln!(
        "store seeded with {} VMs and {} rules in {:.1} s",
        vms.len(),
        rules.len(),
        t.elapsed().as_secs_f64()
    );

    let console_rt = common::runtime("console", 2);
    let agents_rt = common::runtime("agents", 2);
    let bench = console_rt.block_on(Bench::start(dir.path()));
    let api = bench.api();
    let mut per_host: HashMap<String, Vec<vinfra_types::VmObserved>> = HashMap::new();
    for v in &vms {
        per_host
            .entry(v.host.clone())
            .or_default()
            .push(vinfra_types::VmObserved {
                ha: v.spec.ha.enabled,
                net: None,
                ..common::running(v.id, &v.name)
            });
    }
    let hosts: Vec<FleetHost> = (0..a.hosts)
        .map(|i| FleetHost {
            name: host(i),
            vms: per_host.remove(&host(i)).unwrap_or_default(),
        })
        .collect();
    drop(vms);
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
        32,
        t + a.connect_limit,
    ));
    let joined = t.elapsed();
    let joined_hosts = fleet.joined;
    let join_retries = fleet.counters.join_retries.load(Ordering::Relaxed);
    let join_error = fleet.last_join_error.clone();
    let left = a.connect_limit.saturating_sub(joined) + Duration::from_secs(30);
    let connected = agents_rt.block_on(common::wait_connected(&api, fleet.joined, left));
    let connect_time = t.elapsed();
    eprintln!(
        "{} of {} agents joined in {:.1} s; {connected} connected after {:.1} s",
        fleet.joined,
        a.hosts,
        joined.as_secs_f64(),
        connect_time.as_secs_f64()
    );

    // Warm-up (connections, caches), not counted.
    let warm: Vec<String> = (0..a.concurrency * 2)
        .map(|k| format!("warm-{k}"))
        .collect();
    let (w, _) = agents_rt.block_on(create_all(&api, warm, a.concurrency));
    if let Some(f) = w.iter().find(|d| d.status != 201) {
        println!(
            "  warm-up: {} of {} creates failed, e.g. {} {}",
            w.iter().filter(|d| d.status != 201).count(),
            w.len(),
            f.status,
            String::from_utf8_lossy(&f.body)
        );
    }

    // What the console spends with no request in flight (reports, controllers' resyncs).
    let idle_cpu0 = common::cpu_by_thread();
    let idle_t = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let idle_cpu =
        console_cpu_between(&idle_cpu0, &common::cpu_by_thread()) / idle_t.elapsed().as_secs_f64();

    // One VM per request, then the same number with `count` per request.
    let single = {
        let n = if a.count_only { 0 } else { a.creates };
        let names: Vec<String> = (0..n).map(new_vm).collect();
        measure(&fleet, || {
            agents_rt.block_on(create_all(&api, names, a.concurrency))
        })
    };
    let many = (a.count > 0).then(|| {
        measure(&fleet, || {
            agents_rt.block_on(create_many_all(&api, a.creates, a.count, a.concurrency))
        })
    });
    let reconnects = fleet.counters.reconnects.load(Ordering::Relaxed);

    // Rule-bound creates landed away from their partner.
    let check = |name: &dyn Fn(usize) -> String, partner: usize| {
        agents_rt.block_on(async {
            let mut broken = 0;
            for k in (0..a.creates).step_by(RULE_EVERY * 10) {
                let (_, body) = api.get(&format!("/api/v1/vms/{}", name(k))).await;
                let (_, other) = api
                    .get(&format!(
                        "/api/v1/vms/{}",
                        seeded((k * 7919 + partner) % a.vms)
                    ))
                    .await;
                let h = |b: &[u8]| {
                    serde_json::from_slice::<serde_json::Value>(b).ok()?["host"]
                        .as_str()
                        .map(str::to_string)
                };
                if h(&body).is_none() || h(&body) == h(&other) {
                    broken += 1;
                }
            }
            broken
        })
    };
    let single_broken = check(&new_vm, 0);
    let many_broken = many.as_ref().map(|_| check(&|k| many_vm(k, a.count), 1));

    // Each step alone, nothing in flight.
    let steps_free = common::create_steps(&bench, dir.path(), 9);
    let api_rt = agents_rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let (s, _) = api.get("/api/v1/settings").await;
            assert_eq!(s, 200);
            v.push(t.elapsed());
        }
        v.sort_unstable();
        common::pct(&v, 50)
    });

    // The floor, with the same agents connected: what the API serves at all on this machine.
    let floor = agents_rt.block_on(get_floor(&api, a.creates, a.concurrency));

    // A host with a port: one network and one VM with a NIC on it, through the API; then that
    // host's switch configuration, which reads the records in its scope only.
    let ported_host = agents_rt.block_on(ported_vm(&api));
    let ported_config = median_of(9, || {
        ok(
            vinfra_console::networks::push::host_config(&bench.running.console, &ported_host),
            "switch config of a host with a port",
        )
    });
    // The same configuration from every record (as the console built it before scopes; the
    // bench has no routers or security groups).
    let every_record_config = median_of(3, || {
        let c = &bench.running.console;
        vinfra_console::networks::config::switch_config(
            &ported_host,
            &c.underlay(),
            &c.network_records(),
            &c.vm_records(),
            &[],
            &[],
            &[],
        )
    });

    let stamps = fleet.creates.clone();
    drop(fleet);
    console_rt.block_on(async { ok(bench.running.shutdown().await, "shutdown") });

    println!(
        "Placement through POST /api/v1/vms: {} hosts (fake agents over mutual TLS, reports every {} s, heartbeats every {} s), \
         {} VMs, {} rules; {} creates from {} clients, then as many with count {} per request",
        a.hosts,
        common::REPORT_INTERVAL.as_secs(),
        common::HEARTBEAT.as_secs(),
        a.vms,
        rules.len(),
        a.creates,
        a.concurrency,
        a.count
    );
    println!(
        "  set-up: {} of {} hosts joined in {:.1} s (joins stop after {} s), {connected} connected after {:.1} s; agent sessions reopened after the console closed them: {reconnects}; join attempts tried again: {join_retries}{}",
        joined_hosts,
        a.hosts,
        joined.as_secs_f64(),
        a.connect_limit.as_secs(),
        connect_time.as_secs_f64(),
        if join_error.is_empty() {
            String::new()
        } else {
            format!(" (last: {join_error})")
        }
    );
    let single_pass = print_measured(
        "one VM per request",
        &single,
        a.creates,
        single_broken,
        &stamps,
        &|name| {
            name[4..]
                .parse::<usize>()
                .is_ok_and(|k| k.is_multiple_of(RULE_EVERY))
        },
        idle_cpu,
    );
    let many_pass = many.as_ref().map(|m| {
        print_measured(
            &format!("count {} per request", a.count),
            m,
            a.creates,
            many_broken.unwrap_or(0),
            &stamps,
            &|name| {
                let k = name
                    .strip_prefix("many")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(b, i)| Some((b.parse::<usize>().ok()?, i.parse::<usize>().ok()?)))
                    .map(|(b, i)| b * a.count + i - 1);
                k.is_some_and(|k| k.is_multiple_of(RULE_EVERY))
            },
            idle_cpu,
        )
    });
    println!(
        "  steps alone (median, nothing in flight): cleanup markers {:.3} ms, one store write \
         (fsync) {:.2} ms, an authenticated GET over HTTPS {:.2} ms",
        ms(steps_free.cleanups),
        ms(steps_free.store_write),
        ms(api_rt)
    );
    println!(
        "  background work each VM write sets off: one host's switch configuration {:.3} ms (x {} \
         connected hosts = {:.0} ms per push to all), a copy of every VM record {:.2} ms (per host \
         the VM controller reconciles)",
        ms(steps_free.switch_config),
        connected,
        ms(steps_free.switch_config) * connected as f64,
        ms(steps_free.vm_records)
    );
    println!(
        "  one host's switch configuration, a host with a port (a VM with a NIC, created through \
         the API; the configuration reads the records in its scope only): {:.3} ms; from a \
         copy of every record instead: {:.2} ms",
        ms(ported_config),
        ms(every_record_config)
    );
    println!(
        "  floor: the same {} clients' authenticated GET /api/v1/settings (HTTPS, no store, no \
         agent): {floor:.0}/s; creates one per request / floor = {:.2}",
        a.concurrency,
        single.rate() / floor
    );
    let connected_all = connected == a.hosts;
    let verdict = |pass: bool| {
        if pass && connected_all {
            "PASS"
        } else {
            "FAIL"
        }
    };
    println!(
        "RESULT placement console-path {:.0}/s target >= {TARGET_PER_S:.0}/s: {}",
        single.rate(),
        verdict(single_pass)
    );
    if let (Some(m), Some(pass)) = (&many, many_pass) {
        println!(
            "RESULT placement console-path-count{} {:.0}/s target >= {TARGET_PER_S:.0}/s: {}",
            a.count,
            m.rate(),
            verdict(pass)
        );
    }
}

/// One set of creates as measured.
struct Measured {
    done: Vec<Done>,
    wall: Duration,
    /// The console's CPU seconds over them, and the agents' and clients'.
    console_cpu: f64,
    agents_cpu: f64,
    reports: u64,
    pushes: u64,
    load: (String, String),
}

impl Measured {
    fn created(&self) -> usize {
        self.done.iter().filter(|d| d.status == 201).count()
    }

    fn rate(&self) -> f64 {
        self.created() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `creates` and measures them.
fn measure(fleet: &Fleet, creates: impl FnOnce() -> (Vec<Done>, Duration)) -> Measured {
    let load0 = common::loadavg();
    let cpu0 = common::cpu_by_thread();
    let reports0 = fleet.counters.reports.load(Ordering::Relaxed);
    let pushes0 = fleet.counters.switch_pushes.load(Ordering::Relaxed);
    let (done, wall) = creates();
    let cpu1 = common::cpu_by_thread();
    Measured {
        done,
        wall,
        console_cpu: console_cpu_between(&cpu0, &cpu1),
        agents_cpu: common::cpu_between(&cpu0, &cpu1, "agents"),
        reports: fleet.counters.reports.load(Ordering::Relaxed) - reports0,
        pushes: fleet.counters.switch_pushes.load(Ordering::Relaxed) - pushes0,
        load: (load0, common::loadavg()),
    }
}

/// Prints one set of creates (`label`); whether it met the target with every create done.
fn print_measured(
    label: &str,
    m: &Measured,
    creates: usize,
    broken: usize,
    stamps: &common::CreateTimes,
    ruled: &dyn Fn(&str) -> bool,
    idle_cpu: f64,
) -> bool {
    let created = m.created();
    let rate = m.rate();
    let failed: Vec<&Done> = m.done.iter().filter(|d| d.status != 201).collect();
    // Where each create's time went, from the agent's stamps.
    let (mut before, mut agent, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lat_rules, mut lat_free) = (Vec::new(), Vec::new());
    for d in m.done.iter().filter(|d| d.status == 201) {
        let lat = d.end - d.start;
        if ruled(&d.name) {
            lat_rules.push(lat);
        } else {
            lat_free.push(lat);
        }
        if let Some((recv, answered)) = stamps.get(&d.name) {
            before.push(recv.saturating_duration_since(d.start));
            agent.push(answered.saturating_duration_since(recv));
            after.push(d.end.saturating_duration_since(answered));
        }
    }
    let all: Vec<Duration> = m.done.iter().map(|d| d.end - d.start).collect();
    println!(
        "  {label}: created {created}/{creates} in {:.2} s: {rate:.0} placements/s (load average \
         {} -> {}); every {RULE_EVERY}th named in a must rule (of those sampled, {broken} failed \
         or broke it)",
        m.wall.as_secs_f64(),
        m.load.0,
        m.load.1
    );
    for f in failed.iter().take(3) {
        println!(
            "  failed: {} {} {}",
            f.name,
            f.status,
            String::from_utf8_lossy(&f.body)
        );
    }
    println!("  latency (of its request), all creates: {}", p50_p99(all));
    println!("  latency, named in no rule:   {}", p50_p99(lat_free));
    println!("  latency, named in a rule:    {}", p50_p99(lat_rules));
    println!(
        "  split by the agent's stamps: console before CreateVm {}; agent round trip {}; console after the answer {}",
        p50_p99(before),
        p50_p99(agent),
        p50_p99(after)
    );
    println!(
        "  console CPU with no request in flight (reports, resyncs): {idle_cpu:.2} s per s; \
         during the creates {:.2} s per s",
        m.console_cpu / m.wall.as_secs_f64()
    );
    println!(
        "  CPU during the creates: console {:.2} s ({:.3} ms per placement), agents + clients {:.2} s; {} agent reports; {} switch configurations pushed ({:.1} per create)",
        m.console_cpu,
        m.console_cpu * 1000.0 / created.max(1) as f64,
        m.agents_cpu,
        m.reports,
        m.pushes,
        m.pushes as f64 / created.max(1) as f64
    );
    rate >= TARGET_PER_S && failed.is_empty()
}
