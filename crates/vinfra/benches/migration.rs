//! Live migration h1 -> h2 through the API, side by side with a plain QEMU-to-QEMU migration with
//! QEMU's default parameters (same command line, same guest, same two host namespaces).
//!
//! Cases: an idle 256 MiB guest and a busy one (`vinfra.dirty=<MiB>`: the guest keeps rewriting
//! that much memory). Each case runs `RUNS` times per side; the medians are reported. Measured:
//! QEMU's total time and downtime (ours: `GET /api/v1/vms/{name}/migration`; plain:
//! `query-migrate`), the wall time from the request to completion, and the largest interval
//! between consecutive guest counter lines arriving in the serial logs (both logs tail-polled
//! every 10 ms; the guest prints one every 0.5 s).
//! Targets: total time ≤ 1.0× the plain one, downtime ≤ 300 ms.
//!
//! When the plain migration of the busy guest does not converge within `CONVERGE_TIMEOUT`, that is
//! reported and the case is repeated with a lighter dirty rate.
//!
//! Needs root and QEMU (exits 0 with a note otherwise). Builds a 2-host lab `bench-m<pid>`.
//!
//! `cargo bench -p vinfra --bench migration`

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ms, LabGuard, Qmp, Tail};
use reqwest::Method;
use serde_json::json;
use vinfra_lab::Lab;
use vinfra_types::{BootSource, MigrationPhase, MigrationProgress, VmSummary};

const RUNS: usize = 3;
const MEMORY_MIB: u64 = 256;
const BUSY_MIB: u64 = 64;
const LIGHT_MIB: u64 = 16;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const TARGET_DOWNTIME_MS: f64 = 300.0;

/// One migration's numbers; `None` fields when it did not complete.
#[derive(Debug, Clone, Default)]
struct Run {
    completed: bool,
    total_ms: f64,
    downtime_ms: f64,
    wall_ms: f64,
    max_gap_ms: f64,
    normal_gap_ms: f64,
    note: String,
}

fn serial_log(lab: &Lab, host: usize, id: &str) -> PathBuf {
    lab.state().hosts[host]
        .data_dir
        .join("vms")
        .join(id)
        .join("serial.log")
}

fn wait_guest(log: &Path, dirty: u64) {
    common::wait_file_contains(log, "VINFRA-COUNTER 2 ", BOOT_TIMEOUT);
    if dirty > 0 {
        common::wait_file_contains(log, "VINFRA-GUEST DIRTY", BOOT_TIMEOUT);
    }
    // A few seconds of steady state (the dirtying loop at full pace).
    common::wait_counters(log, 6, BOOT_TIMEOUT);
}

fn cmdline(dirty: u64) -> String {
    if dirty > 0 {
        format!("console=ttyS0 vinfra.dirty={dirty}")
    } else {
        "console=ttyS0".into()
    }
}

/// Through the API. Returns the run and the source QEMU's command line.
fn ours(lab: &LabGuard, name: &str, dirty: u64) -> (Run, Vec<String>) {
    let api = lab.api().expect("API client");
    let mut req = Lab::guest_vm_request(name, MEMORY_MIB, Some("h1"));
    if let BootSource::Kernel { cmdline: c, .. } = &mut req.spec.boot {
        *c = cmdline(dirty);
    }
    let vm: VmSummary = api
        .post("/api/v1/vms", &req)
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    let id = vm.id.to_string();
    let pids = lab.qemu_pids_for(&id);
    assert_eq!(pids.len(), 1, "one QEMU for {name}: {pids:?}");
    let argv = common::argv_of(pids[0]);
    let src_log = serial_log(lab, 0, &id);
    wait_guest(&src_log, dirty);

    let tail = Tail::start(vec![src_log, serial_log(lab, 1, &id)]);
    let t = Instant::now();
    let _: serde_json::Value = api
        .post(
            &format!("/api/v1/vms/{name}/migrate"),
            &json!({ "to": "h2" }),
        )
        .unwrap_or_else(|e| panic!("migrate {name}: {e}"));
    let path = format!("/api/v1/vms/{name}/migration");
    let mut run = Run::default();
    loop {
        let p: MigrationProgress = api.get(&path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        if p.phase.is_final() {
            run.wall_ms = ms(t.elapsed());
            run.completed = p.phase == MigrationPhase::Completed;
            run.total_ms = p.total_time_ms as f64;
            run.downtime_ms = p.downtime_ms.unwrap_or(0) as f64;
            if !run.completed {
                run.note = format!("{:?}: {}", p.phase, p.error.unwrap_or_default());
            }
            break;
        }
        if t.elapsed() > CONVERGE_TIMEOUT {
            run.wall_ms = ms(t.elapsed());
            run.note = format!(
                "no convergence in {} s (remaining {} MiB, dirty {} pages/s)",
                CONVERGE_TIMEOUT.as_secs(),
                p.remaining_bytes >> 20,
                p.dirty_pages_rate
            );
            let _ = api.request(Method::DELETE, &path, None);
            std::thread::sleep(Duration::from_secs(2));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Counter lines after the switchover.
    std::thread::sleep(Duration::from_millis(2000));
    (run.max_gap_ms, run.normal_gap_ms) = gaps(tail);
    api.request(Method::DELETE, &format!("/api/v1/vms/{name}"), None)
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    (run, argv)
}

fn gaps(tail: Tail) -> (f64, f64) {
    let (max, normal) = tail.finish();
    (ms(max), ms(normal))
}

/// Plain QEMU: the destination with `-incoming tcp:<h2>:<port>` in h2's namespace, the source in
/// h1's, `migrate` over QMP with QEMU's default parameters, `query-migrate` polled every 50 ms.
fn plain(lab: &LabGuard, argv: &[String], dirty: u64, tag: &str, port: u16) -> Run {
    let vm_dir = Path::new(common::arg_after(argv, "-pidfile"))
        .parent()
        .expect("pidfile in the VM's directory")
        .display()
        .to_string();
    let base = lab.state().root.join("bench-plain").join(tag);
    let (src_dir, dst_dir) = (base.join("src"), base.join("dst"));
    for d in [&src_dir, &dst_dir] {
        std::fs::create_dir_all(d).expect("create a QEMU directory");
    }
    let mut src_argv = common::relocate(argv, &vm_dir, &src_dir);
    let i = src_argv
        .iter()
        .position(|a| a == "-append")
        .expect("-append in the command line");
    src_argv[i + 1] = cmdline(dirty);
    let mut dst_argv = common::relocate(&src_argv, &src_dir.display().to_string(), &dst_dir);
    let h2 = lab.state().hosts[1].address;
    let uri = format!("tcp:{h2}:{port}");
    dst_argv.extend(["-incoming".to_string(), uri.clone()]);

    let ns = |i: usize| lab.state().hosts[i].namespace.clone();
    common::in_netns(&ns(1), move || common::run_daemonized(&dst_argv))
        .join()
        .expect("start the destination");
    common::in_netns(&ns(0), move || common::run_daemonized(&src_argv))
        .join()
        .expect("start the source");
    let (src_log, dst_log) = (src_dir.join("serial.log"), dst_dir.join("serial.log"));
    let mut src = Qmp::connect(&src_dir.join("qmp.sock"));
    let dst = Qmp::connect(&dst_dir.join("qmp.sock"));
    let params = src
        .execute("query-migrate-parameters", None)
        .expect("query-migrate-parameters");
    eprintln!(
        "plain QEMU defaults: max-bandwidth {} MiB/s, downtime-limit {} ms",
        params["max-bandwidth"].as_u64().unwrap_or(0) >> 20,
        params["downtime-limit"]
    );
    wait_guest(&src_log, dirty);

    let tail = Tail::start(vec![src_log, dst_log]);
    let t = Instant::now();
    src.execute("migrate", Some(json!({ "uri": uri })))
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    let mut run = Run::default();
    loop {
        let info = src.execute("query-migrate", None).expect("query-migrate");
        let status = info["status"].as_str().unwrap_or_default().to_string();
        match status.as_str() {
            "completed" | "failed" | "cancelled" => {
                run.wall_ms = ms(t.elapsed());
                run.completed = status == "completed";
                run.total_ms = info["total-time"].as_f64().unwrap_or(0.0);
                run.downtime_ms = info["downtime"].as_f64().unwrap_or(0.0);
                if !run.completed {
                    run.note = format!("{status}: {}", info["error-desc"]);
                }
                break;
            }
            _ => {}
        }
        if t.elapsed() > CONVERGE_TIMEOUT {
            run.wall_ms = ms(t.elapsed());
            run.note = format!(
                "no convergence in {} s (remaining {} MiB, dirty {} pages/s)",
                CONVERGE_TIMEOUT.as_secs(),
                info["ram"]["remaining"].as_u64().unwrap_or(0) >> 20,
                info["ram"]["dirty-pages-rate"]
            );
            let _ = src.execute("migrate_cancel", None);
            std::thread::sleep(Duration::from_secs(2));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(2000));
    (run.max_gap_ms, run.normal_gap_ms) = gaps(tail);
    for (q, dir) in [(src, &src_dir), (dst, &dst_dir)] {
        let pid = common::read_pid(&dir.join("qemu.pid"));
        q.quit();
        if let Some(pid) = pid {
            common::wait_gone(pid, Duration::from_secs(10));
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    run
}

fn median(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().filter(|r| r.completed).map(f).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Case {
    label: String,
    ours: Vec<Run>,
    plain: Vec<Run>,
}

fn run_case(lab: &LabGuard, label: &str, dirty: u64, runs: usize, port: &mut u16) -> Case {
    let mut case = Case {
        label: label.to_string(),
        ours: vec![],
        plain: vec![],
    };
    for k in 0..runs {
        let (o, argv) = ours(lab, &format!("m{dirty}-{k}"), dirty);
        eprintln!("{label} #{k} ours:  {o:?}");
        *port += 1;
        let p = plain(lab, &argv, dirty, &format!("m{dirty}-{k}"), *port);
        eprintln!("{label} #{k} plain: {p:?}");
        let stop = !p.completed && !o.completed;
        case.ours.push(o);
        case.plain.push(p);
        if stop {
            break;
        }
    }
    case
}

fn report(cases: &[Case]) {
    println!(
        "Live migration h1 -> h2, {MEMORY_MIB} MiB guest, TCG, medians of completed runs (ours / plain QEMU defaults)"
    );
    println!(
        "{:<14} {:>9} {:>17} {:>7} {:>15} {:>15} {:>17}",
        "case", "completed", "total ms", "ratio", "downtime ms", "wall ms", "guest gap ms"
    );
    for c in cases {
        let done = |r: &[Run]| r.iter().filter(|x| x.completed).count();
        let (ot, pt) = (
            median(&c.ours, |r| r.total_ms),
            median(&c.plain, |r| r.total_ms),
        );
        println!(
            "{:<14} {:>4}/{:<4} {:>8.0}/{:<8.0} {:>6.2}x {:>7.0}/{:<7.0} {:>7.0}/{:<7.0} {:>8.0}/{:<8.0}",
            c.label,
            done(&c.ours),
            done(&c.plain),
            ot,
            pt,
            ot / pt,
            median(&c.ours, |r| r.downtime_ms),
            median(&c.plain, |r| r.downtime_ms),
            median(&c.ours, |r| r.wall_ms),
            median(&c.plain, |r| r.wall_ms),
            median(&c.ours, |r| r.max_gap_ms),
            median(&c.plain, |r| r.max_gap_ms),
        );
        for (side, runs) in [("ours", &c.ours), ("plain", &c.plain)] {
            for r in runs.iter().filter(|r| !r.completed) {
                println!("  {side}: {}", r.note);
            }
        }
        let ratio = ot / pt;
        let down = median(&c.ours, |r| r.downtime_ms);
        if ratio.is_nan() {
            println!(
                "RESULT migration {} total-time ratio n/a (ours {}/{} completed, plain {}/{})",
                c.label,
                done(&c.ours),
                c.ours.len(),
                done(&c.plain),
                c.plain.len()
            );
        } else {
            println!(
                "RESULT migration {} total-time ratio {ratio:.2} target <= 1.00: {}",
                c.label,
                if ratio <= 1.0 { "PASS" } else { "FAIL" }
            );
        }
        println!(
            "RESULT migration {} downtime {down:.0} ms target <= {TARGET_DOWNTIME_MS:.0} ms: {}",
            c.label,
            if down <= TARGET_DOWNTIME_MS {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
}

fn main() {
    if !common::can_run_labs("migration") {
        return;
    }
    let lab = common::start_lab("m", 2);
    let mut port = 47_000;
    let mut cases = vec![run_case(&lab, "idle", 0, RUNS, &mut port)];
    let busy = run_case(
        &lab,
        &format!("busy {BUSY_MIB} MiB"),
        BUSY_MIB,
        RUNS,
        &mut port,
    );
    let plain_converged = busy.plain.iter().any(|r| r.completed);
    cases.push(busy);
    if !plain_converged {
        println!(
            "plain QEMU with its defaults does not converge for a guest rewriting {BUSY_MIB} MiB; \
             repeating with {LIGHT_MIB} MiB"
        );
        cases.push(run_case(
            &lab,
            &format!("busy {LIGHT_MIB} MiB"),
            LIGHT_MIB,
            RUNS,
            &mut port,
        ));
    }
    report(&cases);
    drop(lab);
}
