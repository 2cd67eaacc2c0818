//! Live migration h1 -> h2 through the API, side by side with a plain QEMU-to-QEMU migration with
//! QEMU's default parameters (same command line, same guest, same two host namespaces).
//!
//! Cases: an idle 256 MiB guest and a busy one (`vinfra.dirty=<MiB>`: the guest keeps rewriting
//! that much memory). Each case runs `RUNS` times per side; every run and the medians are
//! reported. Measured: QEMU's total time and downtime (ours: `GET /api/v1/vms/{name}/migration`;
//! plain: `query-migrate`), the wall time from the request to completion (plain: from starting
//! the destination QEMU, as an operator migrating by hand must, to completion; ours: from
//! `POST …/migrate`, which has the agent start it), and the guest gap: the
//! guest prints a tick line every 10 ms (`vinfra.tick=10`: its uptime), the benchmark reads both
//! serial logs every 2 ms, and the gap is the longest time between two consecutive ticks
//! arriving (so a pause shows to within ~15 ms: the tick interval plus the read interval). The
//! guest's own clock across that gap is printed too: it stands still while QEMU has the guest
//! paused, so the gap minus it is the time the guest did not run ("stopped").
//! Targets: total time, downtime and wall time ≤ 1.0× the plain ones; downtime ≤ 300 ms. Ours
//! prints, per run, the console's account of where its time went (the migration's event).
//!
//! When the plain migration of the busy guest does not converge within `CONVERGE_TIMEOUT`, that is
//! reported and the case is repeated with a lighter dirty rate.
//!
//! The network case measures what a continuous ping every `PING_MS` sees of the migrating guest:
//! the longest time without replies (and the pings lost in it), both sides in the same topology.
//! Ours: the idle guest on an overlay network migrates h1 -> h2 through the API while a peer VM
//! on h3 pings it (`vinfra.pingfast`, the guest prints each gap). Plain: the same two guests
//! (same QEMU command lines) on the same three hosts, each NIC a `-netdev tap` on a tap of a
//! `vinfra switch` of the host (a second one per host, on a second underlay address, so the
//! agents leave it alone), VXLAN between the hosts over the same underlay; the benchmark
//! configures those switches once, as the console would, and migrates over QMP with QEMU's
//! default parameters. The only difference is vinfra's orchestration (console, agents,
//! the configuration pushed after the switchover). Then the target's baseline, "the same
//! guests on a Linux bridge": the same two QEMU command lines on a kernel bridge per host with a
//! kernel VXLAN device (flooding to the other hosts, MAC learning; third VTEPs 10.77.0.121-123,
//! UDP port 4799), where only the guest's own announce after the switchover tells h3 that it
//! moved. Target: ours' mean gap ≤ 1.0× the bridge's (`RESULT migration network gap-ratio`; most
//! runs lose no ping or one, so a median flips with one run: the case runs `NETWORK_RUNS`, 12,
//! unless `--runs` says otherwise);
//! the median gap against plain QEMU on our switches is recorded. All addresses are private
//! (10.86.0.0/24 ours, 10.89.0.0/24 plain and bridge, second VTEPs 10.77.0.111-113).
//!
//! Ours runs with the `migration_encrypted` setting off in these cases, so that both sides send
//! plain TCP (equal terms). The encryption case measures what encryption costs us: the same idle
//! guest migrated through the API with the setting on and off, alternating run by run in the same
//! lab; target: total time encrypted ≤ 1.25× plain.
//!
//! Needs root, QEMU and a guest image with `vinfra.tick` (`VINFRA_GUEST_DIR`, else
//! /var/cache/vinfra/guest; exits 0 with a note without root or QEMU). Builds a lab
//! `bench-m<pid>` (2 hosts, 3 with the network case).
//!
//! `cargo bench -p vinfra --bench migration [-- [idle] [busy] [network] [encryption] [--runs N]]`
//! (default: all cases, `RUNS` runs each).

mod common;
#[path = "migration/network.rs"]
mod network;
#[path = "migration/plain_net.rs"]
mod plain_net;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ms, LabGuard, Qmp, Tail};
use network::{report_network, run_network_case};
use serde_json::json;
use vinfra_client::Client as ApiClient;
use vinfra_lab::Lab;
use vinfra_types::{BootSource, MigrationPhase, MigrationProgress, VmSummary};

/// Runs per case and side. A busy guest's downtime is a few milliseconds on either side with
/// single runs from 2 to 18 (docs/benchmarks.md): a median of three moved with one run.
const RUNS: usize = 5;
/// Runs of the network case when `--runs` is not given: a run loses no ping or one, so its
/// target (the mean gaps) needs a dozen runs to say more than chance.
const NETWORK_RUNS: usize = 12;
const MEMORY_MIB: u64 = 256;
const BUSY_MIB: u64 = 64;
const LIGHT_MIB: u64 = 16;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const TARGET_DOWNTIME_MS: f64 = 300.0;
/// Longest acceptable total time of an encrypted migration, times the plain one's.
const TARGET_ENCRYPTION_RATIO: f64 = 1.25;
/// The network case's ping interval, ms.
const PING_MS: u64 = 20;
/// The guest's tick interval, ms (`vinfra.tick`).
const TICK_MS: u64 = 10;
/// How long replies may take to come back after a migration's end before the run counts as
/// failed.
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// The overlay network of the network case (ours).
const NET_SUBNET: &str = "10.86.0.0/24";
const NET_NAME: &str = "bnet";

/// How often both sides look for the migration's end (ours: `GET …/migration`; plain:
/// `query-migrate`): the wall time is late by up to this much on both.
const END_POLL: Duration = Duration::from_millis(10);

/// One migration's numbers; `None` fields when it did not complete.
#[derive(Debug, Clone, Default)]
struct Run {
    completed: bool,
    total_ms: f64,
    downtime_ms: f64,
    wall_ms: f64,
    /// The longest time between two consecutive guest ticks arriving.
    max_gap_ms: f64,
    /// The guest's own clock across that gap (it stands still while the guest is paused).
    guest_clock_ms: f64,
    /// The median time between ticks arriving.
    normal_gap_ms: f64,
    note: String,
    /// Ours: the console's account of the migration's steps (its completion event).
    steps: String,
}

fn serial_log(lab: &Lab, host: usize, id: &str) -> PathBuf {
    lab.state().hosts[host]
        .data_dir
        .join("vms")
        .join(id)
        .join("run/serial.log")
}

fn wait_guest(log: &Path, dirty: u64) {
    common::wait_file_contains(log, "VINFRA-COUNTER 2 ", BOOT_TIMEOUT);
    assert!(
        std::fs::read_to_string(log).is_ok_and(|t| t.contains("VINFRA-TICK ")),
        "the guest prints no VINFRA-TICK lines: its image predates vinfra.tick \
         (scripts/build-guest-image.sh)"
    );
    if dirty > 0 {
        common::wait_file_contains(log, "VINFRA-GUEST DIRTY", BOOT_TIMEOUT);
    }
    // A few seconds of steady state (the dirtying loop at full pace).
    common::wait_counters(log, 6, BOOT_TIMEOUT);
}

/// The guest's kernel command line: ticks every `TICK_MS` (the guest gap), no IO-APIC timer
/// check (a loaded host can fail it under TCG), and the dirtying loop when `dirty` > 0.
fn cmdline(dirty: u64) -> String {
    let base = format!("console=ttyS0 no_timer_check vinfra.tick={TICK_MS}");
    if dirty > 0 {
        format!("{base} vinfra.dirty={dirty}")
    } else {
        base
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
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    let id = vm.id.to_string();
    let pids = lab.qemu_pids_for(&id);
    assert_eq!(pids.len(), 1, "one QEMU for {name}: {pids:?}");
    let argv = common::argv_of(pids[0]);
    let src_log = serial_log(lab, 0, &id);
    wait_guest(&src_log, dirty);

    let tail = Tail::start(vec![src_log, serial_log(lab, 1, &id)]);
    let mut run = api_migrate(&api, name, "h2");
    run.steps = api
        .events()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|e| e.object == name && e.message.starts_with("migrated from"))
        .map(|e| e.message)
        .unwrap_or_default();
    // Counter lines after the switchover.
    std::thread::sleep(Duration::from_millis(2000));
    (run.max_gap_ms, run.guest_clock_ms, run.normal_gap_ms) = gaps(tail);
    api.delete_vm(name, true)
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    (run, argv)
}

/// Migrates `name` to `to` through the API and polls its progress every `END_POLL` until it ends
/// (cancelled after `CONVERGE_TIMEOUT`).
fn api_migrate(api: &ApiClient, name: &str, to: &str) -> Run {
    let t = Instant::now();
    let _ = api
        .migrate_vm(
            name,
            &vinfra_types::api::MigrateVmRequest {
                to: Some(to.into()),
            },
        )
        .unwrap_or_else(|e| panic!("migrate {name}: {e}"));
    let path = format!("migration of {name}");
    let mut run = Run::default();
    loop {
        let p: MigrationProgress = api
            .migration(name)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        if p.phase.is_final() {
            run.wall_ms = ms(t.elapsed());
            run.completed = p.phase == MigrationPhase::Completed;
            run.total_ms = p.total_time_ms as f64;
            run.downtime_ms = p.downtime_ms.unwrap_or(0) as f64;
            if !run.completed {
                run.note = format!("{:?}: {}", p.phase, p.error.unwrap_or_default());
            }
            return run;
        }
        if t.elapsed() > CONVERGE_TIMEOUT {
            run.wall_ms = ms(t.elapsed());
            run.note = format!(
                "no convergence in {} s (remaining {} MiB, dirty {} pages/s)",
                CONVERGE_TIMEOUT.as_secs(),
                p.remaining_bytes >> 20,
                p.dirty_pages_rate
            );
            let _ = api.cancel_migration(name);
            std::thread::sleep(Duration::from_secs(2));
            return run;
        }
        std::thread::sleep(END_POLL);
    }
}

/// The largest gap between guest ticks: (arrival, guest clock across it, normal interval), ms.
fn gaps(tail: Tail) -> (f64, f64, f64) {
    let g = tail.finish();
    (ms(g.arrival), ms(g.guest_clock), ms(g.normal))
}

/// Plain QEMU: the destination with `-incoming tcp:<h2>:<port>` in h2's namespace, the source in
/// h1's, `migrate` over QMP with QEMU's default parameters, `query-migrate` polled every `END_POLL`.
fn plain(lab: &LabGuard, argv: &[String], dirty: u64, tag: &str, port: u16) -> Run {
    let vm_dir = common::vm_dir_of(argv);
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
    common::in_netns(&ns(0), move || common::run_daemonized(&src_argv))
        .join()
        .expect("start the source");
    let (src_log, dst_log) = (src_dir.join("serial.log"), dst_dir.join("serial.log"));
    let mut src = Qmp::connect(&src_dir.join("qmp.sock"));
    let params = src
        .execute("query-migrate-parameters", None)
        .expect("query-migrate-parameters");
    eprintln!(
        "plain QEMU defaults: max-bandwidth {} MiB/s, downtime-limit {} ms",
        params["max-bandwidth"].as_u64().unwrap_or(0) >> 20,
        params["downtime-limit"]
    );
    wait_guest(&src_log, dirty);

    // The wall time counts what an operator does by hand: start the destination QEMU (ours
    // counts the agent starting it), then `migrate`.
    let tail = Tail::start(vec![src_log, dst_log]);
    let t = Instant::now();
    common::in_netns(&ns(1), move || common::run_daemonized(&dst_argv))
        .join()
        .expect("start the destination");
    let dst = Qmp::connect(&dst_dir.join("qmp.sock"));
    let mut run = qmp_migrate(&mut src, &uri, t);
    std::thread::sleep(Duration::from_millis(2000));
    (run.max_gap_ms, run.guest_clock_ms, run.normal_gap_ms) = gaps(tail);
    quit_plain(src, dst, &src_dir, &dst_dir, &base);
    run
}

/// Quits a plain migration's two QEMUs, waits for them to exit and removes their directory `base`.
fn quit_plain(src: Qmp, dst: Qmp, src_dir: &Path, dst_dir: &Path, base: &Path) {
    for (q, dir) in [(src, src_dir), (dst, dst_dir)] {
        let pid = common::read_pid(&dir.join("qemu.pid"));
        q.quit();
        if let Some(pid) = pid {
            common::wait_gone(pid, Duration::from_secs(10));
        }
    }
    let _ = std::fs::remove_dir_all(base);
}

/// Starts `migrate` to `uri` over QMP with QEMU's default parameters and polls `query-migrate`
/// every `END_POLL` until it ends (cancelled after `CONVERGE_TIMEOUT`); the wall time counts from `t`.
fn qmp_migrate(src: &mut Qmp, uri: &str, t: Instant) -> Run {
    src.execute("migrate", Some(json!({ "uri": uri })))
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    let mut run = Run::default();
    loop {
        let info = src.execute("query-migrate", None).expect("query-migrate");
        let status = info["status"].as_str().unwrap_or_default().to_string();
        if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
            run.wall_ms = ms(t.elapsed());
            run.completed = status == "completed";
            run.total_ms = info["total-time"].as_f64().unwrap_or(0.0);
            run.downtime_ms = info["downtime"].as_f64().unwrap_or(0.0);
            if !run.completed {
                run.note = format!("{status}: {}", info["error-desc"]);
            }
            return run;
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
            return run;
        }
        std::thread::sleep(END_POLL);
    }
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
        "Live migration h1 -> h2, {MEMORY_MIB} MiB guest, TCG, medians of completed runs (ours / plain QEMU defaults); \
         guest gap: longest time between {TICK_MS}-ms guest ticks arriving (read every {} ms), stop: that minus the guest clock across it",
        common::TAIL_POLL.as_millis()
    );
    println!(
        "{:<14} {:>9} {:>17} {:>7} {:>15} {:>15} {:>17} {:>17}",
        "case",
        "completed",
        "total ms",
        "ratio",
        "downtime ms",
        "wall ms",
        "guest gap ms",
        "guest stop ms"
    );
    for c in cases {
        let done = |r: &[Run]| r.iter().filter(|x| x.completed).count();
        let (ot, pt) = (
            median(&c.ours, |r| r.total_ms),
            median(&c.plain, |r| r.total_ms),
        );
        println!(
            "{:<14} {:>4}/{:<4} {:>8.0}/{:<8.0} {:>6.2}x {:>7.0}/{:<7.0} {:>7.0}/{:<7.0} {:>8.0}/{:<8.0} {:>8.0}/{:<8.0}",
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
            median(&c.ours, |r| r.max_gap_ms - r.guest_clock_ms),
            median(&c.plain, |r| r.max_gap_ms - r.guest_clock_ms),
        );
        for (side, runs) in [("ours", &c.ours), ("plain", &c.plain)] {
            for (k, r) in runs.iter().enumerate() {
                if r.completed {
                    println!(
                        "  {side} #{k}: total {:.0} ms, downtime {:.0} ms, wall {:.0} ms, guest gap {:.0} ms \
                         (guest clock {:.0} ms across it, stopped {:.0} ms; normal tick interval {:.0} ms)",
                        r.total_ms,
                        r.downtime_ms,
                        r.wall_ms,
                        r.max_gap_ms,
                        r.guest_clock_ms,
                        r.max_gap_ms - r.guest_clock_ms,
                        r.normal_gap_ms
                    );
                    if !r.steps.is_empty() {
                        println!("    {}", r.steps);
                    }
                } else {
                    println!("  {side} #{k}: {}", r.note);
                }
            }
        }
        let ratio = ot / pt;
        let down = median(&c.ours, |r| r.downtime_ms);
        if ratio.is_nan() {
            println!(
                "RESULT migration {} total-time ratio n/a (ours {}/{} completed, plain {}/{}): FAIL",
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
        // Against plain QEMU: at most its downtime, and its wall time.
        let pdown = median(&c.plain, |r| r.downtime_ms);
        println!(
            "RESULT migration {} downtime-ratio {:.2} (ours {down:.0} ms, plain {pdown:.0} ms) target <= 1.00: {}",
            c.label,
            down / pdown.max(1.0),
            if down <= pdown { "PASS" } else { "FAIL" }
        );
        let (ow, pw) = (
            median(&c.ours, |r| r.wall_ms),
            median(&c.plain, |r| r.wall_ms),
        );
        println!(
            "RESULT migration {} wall-time ratio {:.2} (ours {ow:.0} ms, plain {pw:.0} ms) target <= 1.00: {}",
            c.label,
            ow / pw,
            if ow <= pw { "PASS" } else { "FAIL" }
        );
    }
}

/// Turns the cluster's `migration_encrypted` setting on or off.
fn set_encryption(lab: &LabGuard, on: bool) {
    let api = lab.api().expect("API client");
    let mut s = api.settings().expect("GET settings");
    s.migration_encrypted = Some(on);
    api.put_settings(&s).expect("PUT settings");
}

/// The encryption case: ours encrypted (`Case::ours`) and plain (`Case::plain`), alternating.
fn run_encryption_case(lab: &LabGuard, runs: usize) -> Case {
    let mut case = Case {
        label: "encryption".into(),
        ours: vec![],
        plain: vec![],
    };
    for k in 0..runs {
        set_encryption(lab, true);
        let (e, _) = ours(lab, &format!("enc-{k}"), 0);
        eprintln!("encryption #{k} encrypted: {e:?}");
        set_encryption(lab, false);
        let (p, _) = ours(lab, &format!("plain-{k}"), 0);
        eprintln!("encryption #{k} plain:     {p:?}");
        case.ours.push(e);
        case.plain.push(p);
    }
    case
}

fn report_encryption(c: &Case) {
    println!(
        "Encryption's cost: live migration h1 -> h2 through the API, {MEMORY_MIB} MiB idle guest, TCG, \
         medians of completed runs (encrypted / plain TCP), alternating run by run"
    );
    let done = |r: &[Run]| r.iter().filter(|x| x.completed).count();
    let (et, pt) = (
        median(&c.ours, |r| r.total_ms),
        median(&c.plain, |r| r.total_ms),
    );
    println!(
        "completed {}/{} encrypted, {}/{} plain; total {et:.0}/{pt:.0} ms; downtime {:.0}/{:.0} ms; wall {:.0}/{:.0} ms",
        done(&c.ours),
        c.ours.len(),
        done(&c.plain),
        c.plain.len(),
        median(&c.ours, |r| r.downtime_ms),
        median(&c.plain, |r| r.downtime_ms),
        median(&c.ours, |r| r.wall_ms),
        median(&c.plain, |r| r.wall_ms),
    );
    for (side, runs) in [("encrypted", &c.ours), ("plain", &c.plain)] {
        for (k, r) in runs.iter().enumerate() {
            if r.completed {
                println!(
                    "  {side} #{k}: total {:.0} ms, downtime {:.0} ms, wall {:.0} ms",
                    r.total_ms, r.downtime_ms, r.wall_ms
                );
            } else {
                println!("  {side} #{k}: {}", r.note);
            }
        }
    }
    let ratio = et / pt;
    if ratio.is_nan() {
        println!("RESULT migration encryption total-time ratio n/a (a side never completed): FAIL");
    } else {
        println!(
            "RESULT migration encryption total-time ratio {ratio:.2} (encrypted {et:.0} ms, plain {pt:.0} ms) target <= {TARGET_ENCRYPTION_RATIO:.2}: {}",
            if ratio <= TARGET_ENCRYPTION_RATIO { "PASS" } else { "FAIL" }
        );
    }
}

/// The cases to run and how often.
struct Args {
    idle: bool,
    busy: bool,
    network: bool,
    encryption: bool,
    runs: usize,
    /// `--runs` was given (else the network case runs [`NETWORK_RUNS`]).
    runs_given: bool,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        idle: false,
        busy: false,
        network: false,
        encryption: false,
        runs: RUNS,
        runs_given: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes this to every benchmark binary.
            "--bench" => {}
            "idle" => a.idle = true,
            "busy" => a.busy = true,
            "network" => a.network = true,
            "encryption" => a.encryption = true,
            "--runs" => {
                let v = args.next().ok_or("--runs needs a number")?;
                a.runs = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=20).contains(n))
                    .ok_or(format!("--runs: '{v}' is not a number from 1 to 20"))?;
                a.runs_given = true;
            }
            other => {
                return Err(format!(
                    "unknown argument '{other}' (cases: idle, busy, network, encryption; --runs N)"
                ))
            }
        }
    }
    if !(a.idle || a.busy || a.network || a.encryption) {
        (a.idle, a.busy, a.network, a.encryption) = (true, true, true, true);
    }
    Ok(a)
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("migration: {e}");
            std::process::exit(2);
        }
    };
    if !common::can_run_labs("migration") {
        return;
    }
    let lab = common::start_lab("m", if args.network { 3 } else { 2 });
    let mut port = 47_000;
    let mut cases = Vec::new();
    // Against plain QEMU: plain TCP on both sides.
    set_encryption(&lab, false);
    if args.idle {
        cases.push(run_case(&lab, "idle", 0, args.runs, &mut port));
    }
    if args.busy {
        let busy = run_case(
            &lab,
            &format!("busy {BUSY_MIB} MiB"),
            BUSY_MIB,
            args.runs,
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
                args.runs,
                &mut port,
            ));
        }
    }
    let network = args.network.then(|| {
        let runs = if args.runs_given {
            args.runs
        } else {
            NETWORK_RUNS
        };
        run_network_case(&lab, runs, &mut port)
    });
    let encryption = args
        .encryption
        .then(|| run_encryption_case(&lab, args.runs));
    if !cases.is_empty() {
        report(&cases);
    }
    if let Some(c) = &encryption {
        report_encryption(c);
    }
    if let Some(sides) = network {
        report_network(&sides);
    }
    drop(lab);
}
