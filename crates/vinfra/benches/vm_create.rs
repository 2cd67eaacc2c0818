//! VM creation latency: `POST /api/v1/vms` (128 MiB, the test guest) until its task has ended (the
//! API answers 202 with the task, the client follows it) — the VM is placed, stored, and its QEMU
//! runs, confined, with QMP ready — side by side with starting the very
//! same QEMU command line directly (`-daemonize`, then QMP greeting and `qmp_capabilities`) in the
//! same host namespace, the two alternating run by run. Targets: at p50 at most 1.1× the direct
//! start, and at most 50 ms more at p99.
//!
//! The overhead is split from the debug lines the console and the agent write for every create
//! (`create timed`, `launch timed`, `qemu timed`; the benchmark sets `RUST_LOG` for them unless
//! it is set): the console's steps (placement and the record's write, its disk sync, the
//! switch push, the agent's round trip) and the agent's (boot media, the VM's directory and
//! record, confinement, QEMU's start until its QMP socket answers, the QMP handshake, the first
//! observation).
//!
//! Needs root and QEMU (exits 0 with a note otherwise). Builds a 1-host lab `bench-c<pid>`.
//!
//! `cargo bench -p vinfra --bench vm_create [-- --runs N]` (default 100)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ms, percentiles, LabGuard, Qmp};
use vinfra_lab::Lab;
use vinfra_types::VmSummary;

const RUNS: usize = 100;
const MEMORY_MIB: u64 = 128;
const TARGET_OVERHEAD: Duration = Duration::from_millis(50);
const TARGET_RATIO_P50: f64 = 1.1;

/// The `*_ms` fields of the last `n` lines of `log` with `message` from `target`, by field
/// name (in the order first seen).
fn timed(log: &Path, target: &str, message: &str, n: usize) -> Vec<(String, Vec<f64>)> {
    let text = vinfra_testenv::plain_log(&std::fs::read_to_string(log).unwrap_or_default());
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(target) && l.contains(message))
        .collect();
    let mut fields: Vec<(String, Vec<f64>)> = Vec::new();
    for line in &lines[lines.len().saturating_sub(n)..] {
        for (k, v) in line.split_whitespace().filter_map(|w| w.split_once('=')) {
            let (Some(_), Ok(v)) = (k.strip_suffix("_ms"), v.parse::<f64>()) else {
                continue;
            };
            match fields.iter_mut().find(|(name, _)| name == k) {
                Some((_, vs)) => vs.push(v),
                None => fields.push((k.to_string(), vec![v])),
            }
        }
    }
    fields
}

/// The sum of every field, create by create (the whole of the steps timed).
fn total(fields: &[(String, Vec<f64>)]) -> Vec<f64> {
    let n = fields.iter().map(|f| f.1.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| fields.iter().map(|f| f.1[i]).sum())
        .collect()
}

/// The median of `v` (0 when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Prints the p50 and p99 of each field of [`timed`].
fn print_timed(what: &str, fields: &[(String, Vec<f64>)]) {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, vs)| {
            let mut vs = vs.clone();
            vs.sort_by(f64::total_cmp);
            let n = vs.len();
            format!(
                "{k} {:.1}/{:.1}",
                vs[n / 2],
                vs[(n * 99).div_ceil(100).max(1) - 1]
            )
        })
        .collect();
    println!(
        "  {what} (p50/p99 ms, {} creates): {}",
        fields.first().map_or(0, |f| f.1.len()),
        parts.join(", ")
    );
}

fn create(lab: &LabGuard, name: &str) -> (Duration, VmSummary) {
    let api = lab.api().expect("API client");
    let req = Lab::guest_vm_request(name, MEMORY_MIB, Some("h1"));
    let t = Instant::now();
    let vm: VmSummary = api
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    (t.elapsed(), vm)
}

fn delete(lab: &LabGuard, name: &str) {
    let api = lab.api().expect("API client");
    api.delete_vm(name, true)
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
}

/// The agent's command line `argv` (its VM directory `vm_dir` moved to `dir`, under the lab's
/// root so that the lab's teardown also finds it) started directly in namespace `ns`: from the
/// start until QMP is ready; then quit.
fn direct(ns: &str, argv: &[String], vm_dir: &str, dir: &Path) -> Duration {
    let (argv, vm_dir, dir) = (argv.to_vec(), vm_dir.to_string(), dir.to_path_buf());
    common::in_netns(ns, move || {
        std::fs::create_dir_all(&dir).expect("create a VM directory");
        let argv = common::relocate(&argv, &vm_dir, &dir);
        let t = Instant::now();
        common::run_daemonized(&argv);
        let qmp = Qmp::connect(&dir.join("qmp.sock"));
        let elapsed = t.elapsed();
        let pid = common::read_pid(&dir.join("qemu.pid")).expect("pidfile");
        qmp.quit();
        assert!(
            common::wait_gone(pid, Duration::from_secs(10)),
            "QEMU {pid} did not quit"
        );
        let _ = std::fs::remove_dir_all(&dir);
        elapsed
    })
    .join()
    .expect("direct QEMU start")
}

fn main() {
    if !common::can_run_labs("vm_create") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(RUNS);
    if std::env::var_os("RUST_LOG").is_none() {
        // The steps' timings, in the lab's console and agent logs (inherited by both).
        std::env::set_var(
            "RUST_LOG",
            "info,vinfra_console::vms::create=debug,vinfra_agent::manager::lifecycle=debug,\
             vinfra_agent::qemu::qmp=debug",
        );
    }
    let lab = common::start_lab("c", 1);
    let ns = lab.state().hosts[0].namespace.clone();

    // A first VM: warms up the path and gives the agent's exact QEMU command line.
    let (_, vm) = create(&lab, "warm");
    let pids = lab.qemu_pids_for(&vm.id.to_string());
    assert_eq!(pids.len(), 1, "one QEMU for the warm-up VM: {pids:?}");
    let argv = common::argv_of(pids[0]);
    let vm_dir = common::vm_dir_of(&argv);
    delete(&lab, "warm");
    eprintln!("agent's QEMU command line: {}", argv.join(" "));

    // Ours and the direct start alternate, so that both see the same moments of a shared
    // machine; one direct start first warms the page cache as the API's warm-up VM did.
    let base = lab.state().root.join("bench-direct");
    let _ = direct(&ns, &argv, &vm_dir, &base.join("warm"));
    let mut ours = Vec::with_capacity(runs);
    let mut direct_times = Vec::with_capacity(runs);
    for i in 0..runs {
        let name = format!("bc-{i}");
        let (t, _) = create(&lab, &name);
        ours.push(t);
        delete(&lab, &name);
        direct_times.push(direct(&ns, &argv, &vm_dir, &base.join(format!("d{i}"))));
    }
    let direct = direct_times;

    let (o50, o99, omax) = percentiles(&ours);
    let (d50, d99, dmax) = percentiles(&direct);
    let overhead = o99.saturating_sub(d99);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "VM create, {runs} runs each (alternating), {MEMORY_MIB} MiB, 1 host (TCG), load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "  POST /api/v1/vms, task ended: p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
        ms(o50),
        ms(o99),
        ms(omax)
    );
    println!(
        "  QEMU -daemonize + QMP ready:  p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
        ms(d50),
        ms(d99),
        ms(dmax)
    );
    println!(
        "  overhead: p50 {:+.1} ms  p99 {:+.1} ms  ratio p50 {:.2}x  p99 {:.2}x",
        ms(o50) - ms(d50),
        ms(o99) - ms(d99),
        o50.as_secs_f64() / d50.as_secs_f64(),
        o99.as_secs_f64() / d99.as_secs_f64()
    );
    let root = &lab.state().root;
    let agent_log = lab.state().hosts[0].data_dir.join("agent.log");
    let console_steps = timed(
        &root.join("console.log"),
        "vms::create",
        "create timed",
        runs,
    );
    let agent_steps = timed(&agent_log, "manager::lifecycle", "create timed", runs);
    print_timed("console", &console_steps);
    print_timed("agent", &agent_steps);
    let (in_console, in_agent) = (median(&total(&console_steps)), median(&total(&agent_steps)));
    let agent_rt = console_steps
        .iter()
        .find(|(k, _)| k == "agent_ms")
        .map_or(0.0, |(_, v)| median(v));
    println!(
        "  split at p50: client to the task's end {:.1} ms = HTTPS, routing and reply {:.1} + the console's \
         create {in_console:.1} (of which the agent's round trip {agent_rt:.1} = transport \
         {:.1} + the agent's create {in_agent:.1})",
        ms(o50),
        ms(o50) - in_console,
        agent_rt - in_agent
    );
    print_timed(
        "agent launch",
        &timed(&agent_log, "manager::lifecycle", "launch timed", runs),
    );
    print_timed(
        "agent QEMU",
        &timed(&agent_log, "qemu::qmp", "qemu timed", runs),
    );
    let ratio = o50.as_secs_f64() / d50.as_secs_f64();
    println!(
        "RESULT vm_create p50 ratio {ratio:.2} target <= {TARGET_RATIO_P50:.1}: {}",
        if ratio <= TARGET_RATIO_P50 {
            "PASS"
        } else {
            "FAIL"
        }
    );
    println!(
        "RESULT vm_create overhead at p99 {:.1} ms target <= {} ms: {}",
        ms(o99) - ms(d99),
        TARGET_OVERHEAD.as_millis(),
        if overhead <= TARGET_OVERHEAD {
            "PASS"
        } else {
            "FAIL"
        }
    );
    drop(lab);
}
