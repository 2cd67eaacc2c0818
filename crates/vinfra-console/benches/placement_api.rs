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
//! TLS, report their VMs as `vinfra agent` does (read every 2 s, sent when the state changed,
//! else every fourth time; after a create only when the host changed in more than the answer
//! said), and answer `CreateVm` at once (no QEMU: one machine cannot run 100,000).
//!
//! Measured: `CREATES` creates (`POST /api/v1/vms`, 2 vCPUs, 4 GiB, start) from `CONCURRENCY`
//! clients on keep-alive HTTPS connections, each until its task has ended (the API accepts the
//! create once the VM is placed and its record, NIC claims and event are written in one store
//! transaction; the client sends `Prefer: wait=4`, as `vinfra` does, so the answer is the task
//! once the agent's answer is in, and follows a task that had not ended with long polls, `GET
//! /api/v1/tasks/{id}?wait_s=30`; with `--long-poll` it sends no `Prefer` and always follows
//! with long polls, as clients did before the console took the preference). Per create, the
//! fake agent stamps when `CreateVm` arrived and when it answered, which splits each create into
//! the console's work before the agent, the agent round trip, and the console's work after it.
//! Then the floor: as many authenticated `GET /api/v1/settings` from the same clients (what the
//! API serves at all on this machine: HTTPS, routing, the token check, a small answer). Then,
//! with nothing in flight, each step of the create path is timed alone on the running
//! console (host inputs, rules, placement with and without rules, the cluster model, cleanup
//! markers, one store write). The console runs on a runtime of its own (threads `console-*`;
//! the store's committer, `store-commit`, counts as the console's), the clients on another
//! (`agents-*`), the fake agents in a child process (this binary again, `--fleet-child`: the
//! console's process holds one socket per host, as when its agents are other machines), so
//! the console's CPU time per placement is reported apart from theirs.
//!
//! Then as many VMs again **with a count** (`--count K`, default 100, 0: none): `POST
//! /api/v1/vms` with `"count": K` creates `many{b}-1` … `many{b}-K` in one request, one task
//! followed to its end; every VM still placed under the rules (one in ten named in a must
//! anti-affinity rule), written and created on its host. Its own `RESULT` line
//! (`console-path-count{K}`), against the same target. `--count-only` skips the creates one
//! per request (for profiles; it needs a count above 0).
//!
//! With `--ha-every K` (K > 0) every K-th seeded VM and every K-th new VM has HA on, so every
//! create is also checked by HA admission control (tolerate 1 host failure).
//!
//! `cargo bench -p vinfra-console --bench placement_api [-- --hosts N --vms N --rules N --creates N
//! --concurrency N --connect-limit SECONDS --ha-every K --count K --count-only --long-poll]` (defaults:
//! 10,000 / 100,000 / 8,000 / 2,000 / 8 / 600, count 100). No join starts after the connect limit, and creates start once every joined host is
//! connected or the limit passed: a console that cannot take all its hosts in that time is
//! measured with those it took, and the result is a FAIL that says how many. The console's
//! process and the fleet's each need an open file per host: each raises its limit as far as it
//! may, and where that is short of the hosts asked the cluster is built with as many as fit
//! (saying so; the result is then a FAIL too).

mod common;
mod placement;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{median_of, ms, ok, Api, Bench, FleetHost, FleetProcess, SeedVm};
use placement::{create_all, create_many_all, create_one, measure, print_measured};
use vinfra_types::api::CreateVmRequest;
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
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

/// The clients follow each create's task with long polls only, without `Prefer: wait` (as a
/// client before it did); set by `--long-poll`.
static LONG_POLL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the clients follow their tasks with long polls only (`--long-poll`).
fn long_poll() -> bool {
    LONG_POLL.load(Ordering::Relaxed)
}

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
            "--long-poll" => {
                LONG_POLL.store(true, Ordering::Relaxed);
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
    if a.count_only && a.count == 0 {
        // Nothing would be measured, and no RESULT printed.
        eprintln!("placement_api: --count-only needs a count above 0 (--count K)");
        std::process::exit(2);
    }
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

fn main() {
    if std::env::args().any(|a| a == common::FLEET_CHILD_ARG) {
        common::fleet_child_main();
        return;
    }
    let mut a = parse_args();
    // The fleet runs in a child process, started before the console changes what a child
    // inherits (its huge pages).
    let mut fleet = FleetProcess::spawn();
    let asked_hosts = a.hosts;
    let files = common::raise_fd_limit(a.hosts as u64 + 1024);
    // One socket per host in each process (the console's side here, the agent's in the
    // fleet's), each with the same limit.
    let fd_hosts = files.saturating_sub(1024) as usize;
    if fd_hosts < a.hosts {
        // The cluster is built at the size that can connect, VMs and rules included: a rule
        // naming a host that never joins would make every create it touches fail. The result
        // is a FAIL (not the size asked).
        println!(
            "open-file limit {files} (the hard limit: not raised): {fd_hosts} of the {} hosts asked \
             can connect, so the cluster is built with {fd_hosts} hosts",
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
    // The API clients (the fleet is in its own process).
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
    let (agent_addr, ca_pem) = bench.agent_endpoint();
    let spec = common::FleetSpec {
        base: api.base.clone(),
        token: api.token.clone(),
        agent_addr,
        ca_pem,
        hosts,
        capacity,
        interval_ms: common::REPORT_INTERVAL.as_millis() as u64,
        parallel: 32,
        limit_ms: a.connect_limit.as_millis() as u64,
    };
    let t = Instant::now();
    let (joined_hosts, join_error) = fleet.join(&spec);
    drop(spec);
    let joined = t.elapsed();
    let join_retries = fleet.counters().join_retries;
    let left = a.connect_limit.saturating_sub(joined) + Duration::from_secs(30);
    let connected = agents_rt.block_on(common::wait_connected(&api, joined_hosts, left));
    let connect_time = t.elapsed();
    eprintln!(
        "{} of {} agents joined in {:.1} s; {connected} connected after {:.1} s",
        joined_hosts,
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
        measure(&mut fleet, || {
            agents_rt.block_on(create_all(&api, names, a.concurrency))
        })
    };
    let many = (a.count > 0).then(|| {
        measure(&mut fleet, || {
            agents_rt.block_on(create_many_all(&api, a.creates, a.count, a.concurrency))
        })
    });
    let reconnects = fleet.counters().reconnects;

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
    // `--count-only` made none of them: nothing to check.
    let single_broken = if a.count_only { 0 } else { check(&new_vm, 0) };
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

    let stamps = fleet.stamps();
    drop(fleet);
    console_rt.block_on(async { ok(bench.running.shutdown().await, "shutdown") });

    println!(
        "Placement through POST /api/v1/vms: {} hosts (fake agents over mutual TLS, reports read every {} s, sent on a change or every 4th, heartbeats every {} s), \
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
    // `--count-only` ran no creates one per request: nothing of them to print.
    let single_pass = (!a.count_only).then(|| {
        print_measured(
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
        )
    });
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
         agent): {floor:.0}/s{}",
        a.concurrency,
        if a.count_only {
            String::new()
        } else {
            format!(
                "; creates one per request / floor = {:.2}",
                single.rate() / floor
            )
        }
    );
    let connected_all = connected == asked_hosts;
    let verdict = |pass: bool| {
        if pass && connected_all {
            "PASS"
        } else {
            "FAIL"
        }
    };
    if let Some(pass) = single_pass {
        println!(
            "RESULT placement console-path {:.0}/s target >= {TARGET_PER_S:.0}/s: {}",
            single.rate(),
            verdict(pass)
        );
    }
    if let (Some(m), Some(pass)) = (&many, many_pass) {
        println!(
            "RESULT placement console-path-count{} {:.0}/s target >= {TARGET_PER_S:.0}/s: {}",
            a.count,
            m.rate(),
            verdict(pass)
        );
    }
}
