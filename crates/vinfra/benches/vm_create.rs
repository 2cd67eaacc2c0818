//! VM creation latency: `POST /api/v1/vms` (128 MiB, the test guest) until the API answers 201 —
//! the VM is placed, stored, and its QEMU runs with QMP ready — side by side with starting the very
//! same QEMU command line directly (`-daemonize`, then QMP greeting and `qmp_capabilities`) in the
//! same host namespace, the two alternating run by run. Target: the API adds at most 50 ms at
//! p99.
//!
//! Needs root and QEMU (exits 0 with a note otherwise). Builds a 1-host lab `bench-c<pid>`.
//!
//! `cargo bench -p vinfra --bench vm_create`

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ms, percentiles, LabGuard, Qmp};
use vinfra_lab::Lab;
use vinfra_types::VmSummary;

const RUNS: usize = 50;
const MEMORY_MIB: u64 = 128;
const TARGET_OVERHEAD: Duration = Duration::from_millis(50);

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
    let mut ours = Vec::with_capacity(RUNS);
    let mut direct_times = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
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
        "VM create, {RUNS} runs each (alternating), {MEMORY_MIB} MiB, 1 host (TCG), load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "  POST /api/v1/vms -> 201:      p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
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
