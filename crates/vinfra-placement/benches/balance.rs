//! Balancing at scale and against a plain greedy balancer.
//!
//! 1. 10,000 hosts, 100,000 VMs (hot spots, 2 % of hosts in maintenance, rules, a traffic
//!    matrix): one full balancing pass, with the default limits and with wide ones.
//! 2. Initial placement of 100,000 VMs under rules on 10,000 empty hosts ([`RulePlacer`]).
//! 3. Scenarios (hot spot, maintenance, chatty pairs, rules): this balancer, run in rounds with
//!    hysteresis until its plan is empty, against the greedy one; migrations, final imbalance,
//!    rule violations, cross-host traffic.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::*;
use vinfra_placement::greedy::{self, GreedyConfig};
use vinfra_placement::{
    balance, BalanceConfig, ClusterModel, Eligibility, LevelParams, Plan, Reason, RecentMove,
    Request, Rule, RulePlacer, Strength, TrafficFlow,
};

const HOSTS: usize = 10_000;
const VMS: usize = 100_000;

fn big_hosts(rng: &mut Rng) -> Vec<vinfra_placement::HostModel> {
    (0..HOSTS)
        .map(|i| {
            let mut h = host(
                format!("host-{i:05}"),
                rng.pick(&[32, 48, 64]),
                rng.pick(&[262_144, 393_216, 524_288]),
            );
            h.ratios.memory = 1.2;
            h.eligible = match i % 100 {
                0 | 50 => Eligibility::Maintenance,
                1 => Eligibility::Disconnected,
                _ => Eligibility::Ok,
            };
            h
        })
        .collect()
}

/// The 100,000-VM cluster: 5 % hot hosts, must-anti-affinity triples, must-affinity pairs,
/// should-affinity pairs, run-on groups, 50,000 flows.
fn big_cluster() -> ClusterModel {
    let mut rng = Rng(7);
    let hosts = big_hosts(&mut rng);
    let mut used = vec![(0u64, 0u64); HOSTS];
    let mut vms: Vec<vinfra_placement::VmModel> = Vec::with_capacity(VMS);
    let mut rules = Vec::new();
    let fits = |used: &[(u64, u64)], h: usize, c: u32, m: u64| {
        let host = &hosts[h];
        used[h].0 + u64::from(c) <= u64::from(host.allocatable_vcpus())
            && used[h].1 + m <= host.allocatable_memory_mib()
    };
    let mut i = 0;
    while vms.len() < VMS {
        let vcpus = rng.pick(&[1, 2, 2, 4, 4, 8]);
        let mem = rng.pick(&[2048, 4096, 4096, 8192, 16_384]);
        let mut h = rng.below(HOSTS);
        // Pairs of must-affinity: every 20th VM joins the previous one's host.
        let pair = i % 20 == 1;
        if pair {
            if let Some(last) = vms.last() {
                h = hosts.iter().position(|x| x.name == last.host).unwrap_or(h);
            }
        }
        let mut tries = 0;
        while !fits(&used, h, vcpus, mem) && tries < 50 {
            h = rng.below(HOSTS);
            tries += 1;
        }
        if !fits(&used, h, vcpus, mem) {
            i += 1;
            continue;
        }
        used[h].0 += u64::from(vcpus);
        used[h].1 += mem;
        let hot = h % 20 == 3;
        let busy = if hot { 0.9 } else { 0.1 + 0.4 * rng.unit() };
        let cpu = f64::from(vcpus) * busy;
        let mem_demand = mem * if hot { 9 } else { 5 } / 10;
        let name = format!("vm-{:06}", vms.len());
        vms.push(vm(name, hosts[h].name.clone(), vcpus, mem, cpu, mem_demand));
        if pair && vms.len() >= 2 {
            let n = vms.len();
            if vms[n - 1].host == vms[n - 2].host {
                rules.push(Rule::affinity(
                    &format!("pair-{n}"),
                    Strength::Must,
                    &[&vms[n - 2].name, &vms[n - 1].name],
                ));
            }
        }
        i += 1;
    }
    // Must-anti-affinity triples among VMs on distinct hosts (a few share a host: broken).
    for k in 0..2000 {
        let base = 40 * k + 5;
        let names = [&vms[base].name, &vms[base + 7].name, &vms[base + 13].name];
        let hs: std::collections::BTreeSet<&str> = [base, base + 7, base + 13]
            .iter()
            .map(|&v| vms[v].host.as_str())
            .collect();
        if hs.len() == 3 || k % 10 == 0 {
            let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
            rules.push(Rule::anti_affinity(
                &format!("apart-{k}"),
                Strength::Must,
                &names,
            ));
        }
    }
    // Should-affinity pairs.
    for k in 0..1000 {
        let (a, b) = (rng.below(VMS), rng.below(VMS));
        if a != b {
            rules.push(Rule::affinity(
                &format!("near-{k}"),
                Strength::Should,
                &[&vms[a].name, &vms[b].name],
            ));
        }
    }
    // Run-on groups: VMs that already run inside a 100-host group.
    for g in 0..100 {
        let group: Vec<String> = (0..100)
            .map(|j| format!("host-{:05}", g * 100 + j))
            .collect();
        let members: Vec<&str> = vms
            .iter()
            .skip(g * 997 % VMS)
            .filter(|v| group.contains(&v.host))
            .take(5)
            .map(|v| v.name.as_str())
            .collect();
        let hs: Vec<&str> = group.iter().map(String::as_str).collect();
        if !members.is_empty() {
            rules.push(Rule::run_on(
                &format!("group-{g}"),
                if g % 2 == 0 {
                    Strength::Must
                } else {
                    Strength::Should
                },
                &members,
                &hs,
            ));
        }
    }
    let mut traffic = Vec::new();
    for _ in 0..50_000 {
        let (a, b) = (rng.below(VMS), rng.below(VMS));
        if a != b {
            let heavy = rng.below(50) == 0;
            traffic.push(TrafficFlow {
                a: vms[a].name.clone(),
                b: vms[b].name.clone(),
                bytes_per_s: if heavy {
                    200 << 20
                } else {
                    (1 + rng.below(20) as u64) << 20
                },
            });
        }
    }
    ClusterModel {
        hosts,
        vms,
        rules,
        traffic,
    }
}

fn reasons(plan: &Plan) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &plan.moves {
        let k = match m.reason {
            Reason::FixMustRule { .. } => "must-rule",
            Reason::Evacuate { .. } => "evacuate",
            Reason::OverCapacity => "over-capacity",
            Reason::ReduceImbalance { .. } => "imbalance",
            Reason::ReduceTraffic { .. } => "traffic",
            Reason::ShouldRule { .. } => "should-rule",
            Reason::HostUnfit { .. } => "host-unfit",
        };
        *by.entry(k).or_default() += 1;
    }
    by.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn scale() {
    let t = Instant::now();
    let m = big_cluster();
    println!(
        "cluster: {} hosts, {} VMs, {} rules, {} flows (generated in {:?})",
        m.hosts.len(),
        m.vms.len(),
        m.rules.len(),
        m.traffic.len(),
        t.elapsed()
    );
    let t = Instant::now();
    if let Err(e) = m.validate() {
        println!("invalid model: {e}");
        return;
    }
    println!("validate + index: {:?}", t.elapsed());
    for (label, cfg) in [
        ("default limits (4/host, 64/plan)", BalanceConfig::default()),
        (
            "wide limits (4/host, 5000/plan)",
            BalanceConfig {
                max_moves_total: 5000,
                ..BalanceConfig::default()
            },
        ),
        (
            "level 5, wide limits",
            BalanceConfig {
                level: 5,
                max_moves_total: 5000,
                ..BalanceConfig::default()
            },
        ),
    ] {
        let t = Instant::now();
        let plan = match balance(&m, &cfg) {
            Ok(p) => p,
            Err(e) => {
                println!("balance failed: {e}");
                return;
            }
        };
        let took = t.elapsed();
        println!(
            "balance, {label}: {:?} for {} moves ({}); imbalance {:.4} -> {:.4}; cross-host {} -> {} MiB/s; \
             hard violations {} -> {}, should {} -> {}",
            took,
            plan.moves.len(),
            reasons(&plan),
            plan.imbalance_before,
            plan.imbalance_after,
            plan.cross_host_traffic_before >> 20,
            plan.cross_host_traffic_after >> 20,
            plan.violations_before.hard(),
            plan.violations_after.hard(),
            plan.violations_before.should_vms(),
            plan.violations_after.should_vms(),
        );
    }
}

fn placement() {
    let mut big = big_cluster();
    let requests: Vec<Request> = big
        .vms
        .iter()
        .map(|v| Request {
            vm: v.name.clone(),
            vcpus: v.vcpus,
            memory_mib: v.memory_mib,
        })
        .collect();
    big.vms.clear();
    big.traffic.clear();
    let ruled = big
        .rules
        .iter()
        .flat_map(|r| r.vms())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let t = Instant::now();
    let mut placer = match RulePlacer::new(&big, &vinfra_placement::FitTable::default()) {
        Ok(p) => p,
        Err(e) => {
            println!("placer: {e}");
            return;
        }
    };
    let build = t.elapsed();
    let t = Instant::now();
    let mut refused = 0;
    for r in &requests {
        if placer
            .place(r, &vinfra_placement::VmNeeds::default())
            .is_err()
        {
            refused += 1;
        }
    }
    let took = t.elapsed();
    println!(
        "RulePlacer: {} placements on {} empty hosts, {} rules naming {ruled} VMs: {took:?} = {:.0} VMs/s \
         (index built in {build:?}); refused {refused}",
        requests.len(),
        big.hosts.len(),
        big.rules.len(),
        requests.len() as f64 / took.as_secs_f64()
    );
    let after = {
        let mut m = big.clone();
        for r in &requests {
            if let Some(h) = placer.host_of(&r.vm) {
                let data = vm(r.vm.clone(), h.to_owned(), r.vcpus, r.memory_mib, 0.0, 0);
                m.vms.push(data);
            }
        }
        m
    };
    match after.violations() {
        Ok(v) => println!(
            "  after placement: must-rule violations {}, should-rule violations {} VMs",
            v.must.len(),
            v.should_vms()
        ),
        Err(e) => println!("  after placement: {e}"),
    }
}

/// Balancer rounds (10 minutes apart, hysteresis 30 minutes) until the plan is empty.
fn rounds(mut m: ClusterModel, level: u8) -> (usize, usize, ClusterModel) {
    let mut cfg = BalanceConfig {
        level,
        ..BalanceConfig::default()
    };
    let (mut total, mut n) = (0, 0);
    while n < 30 {
        let Ok(plan) = balance(&m, &cfg) else { break };
        if plan.moves.is_empty() {
            break;
        }
        n += 1;
        total += plan.moves.len();
        let _ = plan.apply_to(&mut m);
        for r in &mut cfg.recent_moves {
            r.minutes_ago += 10;
        }
        cfg.recent_moves
            .extend(plan.moves.iter().map(|mv| RecentMove {
                vm: mv.vm.clone(),
                from: mv.from.clone(),
                to: mv.to.clone(),
                minutes_ago: 0,
            }));
    }
    (total, n, m)
}

fn scenario(name: &str, m: ClusterModel) {
    let level = 3;
    let target = LevelParams::for_level(level)
        .map(|p| p.target_imbalance)
        .unwrap_or(0.1);
    let before = (
        m.imbalance().unwrap_or(f64::NAN),
        m.violations()
            .map(|v| (v.hard(), v.should_vms()))
            .unwrap_or_default(),
        m.cross_host_traffic().unwrap_or(0),
    );
    let (ours_moves, ours_rounds, ours) = rounds(m.clone(), level);
    let g = greedy::balance(
        &m,
        &GreedyConfig {
            target_imbalance: target,
            max_moves: 10_000,
        },
    );
    let Ok(g) = g else { return };
    let mut theirs = m.clone();
    let _ = g.apply_to(&mut theirs);
    let row = |who: &str, moves: usize, note: String, after: &ClusterModel| {
        let v = after.violations().unwrap_or_default();
        println!(
            "  {who:<7} migrations {moves:>3} {note:<12} imbalance {:.4} -> {:.4}  hard violations {} -> {}  \
             should {} -> {}  cross-host {} -> {} MiB/s  max load {:.2}",
            before.0,
            after.imbalance().unwrap_or(f64::NAN),
            before.1 .0,
            v.hard(),
            before.1 .1,
            v.should_vms(),
            before.2 >> 20,
            after.cross_host_traffic().unwrap_or(0) >> 20,
            max_load(after),
        );
    };
    println!("{name}:");
    row(
        "vinfra",
        ours_moves,
        format!("({ours_rounds} rounds)"),
        &ours,
    );
    row("greedy", g.moves.len(), String::new(), &theirs);
}

fn small_hosts(n: usize) -> Vec<vinfra_placement::HostModel> {
    (0..n).map(|i| host(format!("h{i}"), 16, 65_536)).collect()
}

fn scenarios() {
    let mut rng = Rng(3);
    // Hot spot: two hosts carry 12 busy VMs, ten carry 3 quiet ones.
    let mut vms = Vec::new();
    for h in 0..12 {
        let (n, busy) = if h < 2 { (12, 0.6) } else { (3, 0.25) };
        for i in 0..n {
            let vcpus = rng.pick(&[1, 2, 4]);
            let mem = rng.pick(&[2048, 4096]);
            vms.push(vm(
                format!("v{h}-{i}"),
                format!("h{h}"),
                vcpus,
                mem,
                f64::from(vcpus) * busy,
                mem / 2,
            ));
        }
    }
    let hot = ClusterModel {
        hosts: small_hosts(12),
        vms,
        rules: Vec::new(),
        traffic: Vec::new(),
    };
    scenario("hot spot (12 hosts, 54 VMs)", hot.clone());

    // The same hot spot with rules: hot VMs pinned or kept apart.
    let mut ruled = hot.clone();
    let names: Vec<String> = ruled
        .vms
        .iter()
        .filter(|v| v.host == "h0")
        .map(|v| v.name.clone())
        .collect();
    let n: Vec<&str> = names.iter().map(String::as_str).collect();
    ruled.rules = vec![
        Rule::run_on("db-hosts", Strength::Must, &n[..4], &["h0", "h1", "h2"]),
        Rule::anti_affinity(
            "web",
            Strength::Must,
            &[n[4], n[5], "v2-0", "v3-0", "v4-0", "v5-0"],
        ),
        Rule::affinity("cache", Strength::Must, &[n[6], n[7]]),
        Rule::not_on("no-h11", Strength::Should, &n[8..], &["h11"]),
    ];
    scenario("hot spot with rules", ruled);

    // Maintenance: one host of 16 VMs to evacuate, others evenly loaded.
    let mut hosts = small_hosts(8);
    hosts[0].eligible = Eligibility::Maintenance;
    let mut vms = Vec::new();
    for h in 0..8 {
        for i in 0..if h == 0 { 16 } else { 5 } {
            vms.push(vm(format!("v{h}-{i}"), format!("h{h}"), 2, 4096, 0.8, 2048));
        }
    }
    scenario(
        "maintenance evacuation (8 hosts, 51 VMs)",
        ClusterModel {
            hosts,
            vms,
            rules: Vec::new(),
            traffic: Vec::new(),
        },
    );

    // Chatty pairs: balanced hosts, 6 pairs talking across hosts.
    let mut vms = Vec::new();
    for h in 0..6 {
        for i in 0..6 {
            vms.push(vm(format!("v{h}-{i}"), format!("h{h}"), 2, 2048, 1.0, 1024));
        }
    }
    let traffic = (0..6)
        .map(|k| TrafficFlow {
            a: format!("v{k}-0"),
            b: format!("v{}-1", (k + 1) % 6),
            bytes_per_s: 300 << 20,
        })
        .collect();
    scenario(
        "chatty pairs (6 hosts, 36 VMs)",
        ClusterModel {
            hosts: small_hosts(6),
            vms,
            rules: Vec::new(),
            traffic,
        },
    );
}

fn main() {
    scale();
    placement();
    scenarios();
}
