//! `vinfra sim` at full size: `scenarios/ha-10k.toml` (10,000 hosts, 100,000 VMs, 30 % HA, a
//! 40-host rack failing) through the library `vinfra sim` calls, both balancers, the five files
//! written. Prints the time of each part and the HA results; the record is in
//! docs/simulator.md. `VINFRA_SIM_OUT=DIR` keeps the files (default: a temporary directory).
//!
//! Target: the whole report in well under a minute on a shared 2-core machine (the line
//! `RESULT sim ha-10k <seconds> PASS|FAIL`).

use std::path::PathBuf;
use std::time::Instant;

use vinfra_sim::{simulate, BalancerKind, Report, Scenario};

const TARGET_S: f64 = 60.0;

fn main() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/ha-10k.toml");
    let all = Instant::now();
    let t = Instant::now();
    let scenario = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    println!(
        "load: {:.2} s ({} hosts, {} VMs, {} HA)",
        t.elapsed().as_secs_f64(),
        scenario.hosts.len(),
        scenario.vms.len(),
        scenario.vms.iter().filter(|v| v.ha.is_some()).count()
    );
    let mut runs = Vec::new();
    for kind in [BalancerKind::Vinfra, BalancerKind::Greedy] {
        let t = Instant::now();
        match simulate(&scenario, kind) {
            Ok(r) => runs.push(r),
            Err(e) => panic!("{}: {e}", kind.name()),
        }
        println!("run {}: {:.2} s", kind.name(), t.elapsed().as_secs_f64());
    }
    let report = Report::from_runs(&scenario, runs);
    let keep = std::env::var_os("VINFRA_SIM_OUT").map(PathBuf::from);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = keep.unwrap_or_else(|| tmp.path().join("out"));
    let t = Instant::now();
    report.write(&dir).expect("files written");
    println!(
        "write: {:.2} s ({})",
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    print!("{}", report.summary_table());
    for r in &report.runs {
        for f in r.ha.failovers.iter().take(1) {
            println!(
                "{}: step {} host {}: {} restarted, {} unplaced, {} stopped, plan {:.2} ms",
                r.balancer.name(),
                f.step,
                f.host,
                f.restarts.len(),
                f.unplaced.len(),
                f.stopped.len(),
                f.planning_ms
            );
        }
        let plan_ms: f64 = r.ha.failovers.iter().map(|f| f.planning_ms).sum();
        let max_ms =
            r.ha.failovers
                .iter()
                .map(|f| f.planning_ms)
                .fold(0.0, f64::max);
        println!(
            "{}: {} failures, restart planning total {plan_ms:.1} ms, max {max_ms:.2} ms per host; verdicts {:?}",
            r.balancer.name(),
            r.ha.failovers.len(),
            r.ha
                .verdicts
                .iter()
                .map(|v| (v.step, v.when, v.holds, v.failing))
                .collect::<Vec<_>>()
        );
    }
    let total = all.elapsed().as_secs_f64();
    println!(
        "RESULT sim ha-10k {total:.1} s / {TARGET_S:.0} s {}",
        if total <= TARGET_S { "PASS" } else { "FAIL" }
    );
}
