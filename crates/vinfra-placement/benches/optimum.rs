//! Small instances: migrations the balancer needs to bring every host under a target load,
//! against the optimum of an integer program on the same instance (good_lp with the pure-Rust
//! microlp solver): minimize moves such that each host's CPU and memory load ≤ target, capacity
//! holds and must-rules (anti-affinity, run-on) hold.

mod common;

use std::time::Instant;

use common::*;
use good_lp::{constraint, variable, Expression, ProblemVariables, Solution, SolverModel};
use vinfra_placement::{balance, BalanceConfig, ClusterModel, Rule, Strength};

const HOSTS: usize = 8;
const VMS: usize = 40;

/// Hosts of 16 cores and 64 GiB; VMs crowded on the first hosts; two must-anti-affinity pairs
/// and a VM pinned to three hosts.
fn instance(seed: u64) -> ClusterModel {
    let mut rng = Rng(seed);
    let hosts: Vec<_> = (0..HOSTS)
        .map(|i| host(format!("h{i}"), 16, 64 * 1024))
        .collect();
    let mut vms = Vec::new();
    for i in 0..VMS {
        // Half the VMs on h0..h2, the rest anywhere.
        let h = if i % 2 == 0 {
            rng.below(3)
        } else {
            rng.below(HOSTS)
        };
        let vcpus = rng.pick(&[1, 2, 4]);
        let mem = rng.pick(&[1024, 2048, 4096]);
        let cpu = f64::from(vcpus) * (0.3 + 0.6 * rng.unit());
        vms.push(vm(
            format!("v{i}"),
            format!("h{h}"),
            vcpus,
            mem,
            cpu,
            mem * 3 / 4,
        ));
    }
    let mut m = ClusterModel {
        hosts,
        vms,
        rules: Vec::new(),
        traffic: Vec::new(),
    };
    // Rules the initial placement satisfies.
    let on = |m: &ClusterModel, v: usize| m.vms[v].host.clone();
    let mut pairs = Vec::new();
    for a in 0..VMS {
        for b in a + 1..VMS {
            if on(&m, a) != on(&m, b) && pairs.len() < 2 && (a + b) % 7 == 0 {
                pairs.push((a, b));
            }
        }
    }
    for (k, (a, b)) in pairs.iter().enumerate() {
        m.rules.push(Rule::anti_affinity(
            &format!("apart{k}"),
            Strength::Must,
            &[&format!("v{a}"), &format!("v{b}")],
        ));
    }
    let pinned_host = on(&m, 0);
    m.rules.push(Rule::run_on(
        "pin",
        Strength::Must,
        &["v0"],
        &[&pinned_host, "h6", "h7"],
    ));
    m
}

/// Fewest moves such that every host is at or under `target`; `None` when infeasible.
fn optimum(m: &ClusterModel, target: f64) -> Option<(usize, f64)> {
    let mut vars = ProblemVariables::new();
    let host_ix = |n: &str| m.hosts.iter().position(|h| h.name == n).unwrap_or(0);
    let pinned: Vec<Vec<bool>> = m
        .vms
        .iter()
        .map(|v| {
            m.hosts
                .iter()
                .map(|h| {
                    m.rules.iter().all(|r| match &r.kind {
                        vinfra_placement::Constraint::RunOn { vms, hosts } => {
                            !vms.contains(&v.name) || hosts.contains(&h.name)
                        }
                        _ => true,
                    })
                })
                .collect()
        })
        .collect();
    let x: Vec<Vec<_>> = m
        .vms
        .iter()
        .map(|_| {
            m.hosts
                .iter()
                .map(|_| vars.add(variable().binary()))
                .collect()
        })
        .collect();
    let mut moves = Expression::from(0.0);
    for (v, vm) in m.vms.iter().enumerate() {
        moves += 1.0 - x[v][host_ix(&vm.host)];
    }
    let mut problem = vars.minimise(moves.clone()).using(good_lp::microlp);
    for (v, row) in x.iter().enumerate() {
        let one: Expression = row.iter().copied().sum();
        problem = problem.with(constraint!(one == 1.0));
        for (h, &var) in row.iter().enumerate() {
            if !pinned[v][h] {
                problem = problem.with(constraint!(var == 0.0));
            }
        }
    }
    for (h, host) in m.hosts.iter().enumerate() {
        let mut cpu = Expression::from(0.0);
        let mut mem = Expression::from(0.0);
        let mut vc = Expression::from(0.0);
        let mut vmem = Expression::from(0.0);
        for (v, vm) in m.vms.iter().enumerate() {
            cpu += vm.cpu_demand / f64::from(host.capacity.cores) * x[v][h];
            mem += vm.memory_demand_mib as f64 / host.capacity.memory_mib as f64 * x[v][h];
            vc += f64::from(vm.vcpus) * x[v][h];
            vmem += vm.memory_mib as f64 * x[v][h];
        }
        problem = problem
            .with(constraint!(cpu <= target))
            .with(constraint!(mem <= target))
            .with(constraint!(vc <= f64::from(host.allocatable_vcpus())))
            .with(constraint!(vmem <= host.allocatable_memory_mib() as f64));
        for r in &m.rules {
            if let vinfra_placement::Constraint::AntiAffinity { vms } = &r.kind {
                let mut e = Expression::from(0.0);
                for n in vms {
                    if let Some(v) = m.vms.iter().position(|x| &x.name == n) {
                        e += x[v][h];
                    }
                }
                problem = problem.with(constraint!(e <= 1.0));
            }
        }
    }
    let sol = problem.solve().ok()?;
    let mut after = m.clone();
    for (v, row) in x.iter().enumerate() {
        for (h, &var) in row.iter().enumerate() {
            if sol.value(var) > 0.5 {
                after.vms[v].host = m.hosts[h].name.clone();
            }
        }
    }
    let n = sol.eval(&moves).round() as usize;
    Some((n, after.imbalance().unwrap_or(f64::NAN)))
}

/// Moves of one unlimited level-5 pass until every host is at or under `target` (the first
/// prefix that gets there), and the imbalance then.
fn ours(m: &ClusterModel, target: f64) -> Option<(usize, f64)> {
    let cfg = BalanceConfig {
        level: 5,
        max_moves_per_host: u32::MAX / 2,
        max_moves_total: u32::MAX,
        ..BalanceConfig::default()
    };
    let plan = balance(m, &cfg).ok()?;
    let mut cur = m.clone();
    if max_load(&cur) <= target {
        return Some((0, cur.imbalance().unwrap_or(f64::NAN)));
    }
    for (i, mv) in plan.moves.iter().enumerate() {
        cur.move_vm(&mv.vm, &mv.to).ok()?;
        if max_load(&cur) <= target + 1e-9 {
            return Some((i + 1, cur.imbalance().unwrap_or(f64::NAN)));
        }
    }
    None
}

fn main() {
    println!("{HOSTS} hosts × {VMS} VMs; target: every host's load ≤ mean + slack");
    println!(
        "{:>4} {:>6} {:>7} {:>7} | {:>9} {:>9} | {:>9} {:>9} {:>8} | {:>6}",
        "seed",
        "slack",
        "max0",
        "target",
        "ours",
        "σ ours",
        "optimum",
        "σ opt",
        "ilp time",
        "ratio"
    );
    let mut ratios = Vec::new();
    for seed in 1..=8u64 {
        let m = instance(seed);
        let loads = m.host_loads().unwrap_or_default();
        let mean = loads.iter().sum::<f64>() / loads.len() as f64;
        for slack in [0.15, 0.10, 0.05] {
            let target = mean + slack;
            let t = Instant::now();
            let opt = optimum(&m, target);
            let ilp_time = t.elapsed();
            let got = ours(&m, target);
            let fmt = |r: Option<(usize, f64)>| match r {
                Some((n, s)) => (n.to_string(), format!("{s:.4}")),
                None => ("-".into(), "-".into()),
            };
            let (o, os) = fmt(got);
            let (p, ps) = fmt(opt);
            let ratio = match (got, opt) {
                (Some((a, _)), Some((b, _))) if b > 0 => {
                    let r = a as f64 / b as f64;
                    ratios.push(r);
                    format!("{r:.2}")
                }
                (Some((0, _)), Some((0, _))) => "1.00".into(),
                _ => "-".into(),
            };
            println!(
                "{seed:>4} {slack:>6.2} {:>7.3} {target:>7.3} | {o:>9} {os:>9} | {p:>9} {ps:>9} {:>7.2?} | {ratio:>6}",
                max_load(&m),
                ilp_time
            );
        }
    }
    if !ratios.is_empty() {
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let worst = ratios.iter().cloned().fold(0.0, f64::max);
        println!(
            "ratio ours/optimum: mean {mean:.2}, worst {worst:.2} over {} instances",
            ratios.len()
        );
    }
}
