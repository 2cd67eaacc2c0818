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
//! The network case measures what a continuous ping every `PING_MS` sees of the migrating guest:
//! the longest time without replies (and the pings lost in it). Ours: the idle guest on an overlay
//! network migrates h1 -> h2 while a peer VM on h3 pings it (`vinfra.pingfast`, the guest prints
//! each gap). Plain: the same guest, QEMU to QEMU over the loopback of one private namespace, both
//! NICs taps on one Linux bridge there (QEMU's self-announce moves the bridge's FDB entry); an
//! endpoint namespace on the bridge (a veth) pings it with busybox ping. All addresses are private
//! (10.86.0.0/24, 10.87.0.0/24) inside namespaces the benchmark creates and deletes.
//!
//! Needs root and QEMU (exits 0 with a note otherwise). Builds a lab `bench-m<pid>` (2 hosts, 3
//! with the network case).
//!
//! `cargo bench -p vinfra --bench migration [-- [idle] [busy] [network] [--runs N]]`
//! (default: all cases, `RUNS` runs each).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{ms, LabGuard, Qmp, Tail};
use serde_json::json;
use vinfra_client::Client as ApiClient;
use vinfra_lab::Lab;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::{BootSource, MigrationPhase, MigrationProgress, NicSpec, VmSummary};

const RUNS: usize = 3;
const MEMORY_MIB: u64 = 256;
const BUSY_MIB: u64 = 64;
const LIGHT_MIB: u64 = 16;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const TARGET_DOWNTIME_MS: f64 = 300.0;
/// The network case's ping interval, ms.
const PING_MS: u64 = 20;
/// How long replies may take to come back after a migration's end before the run counts as
/// failed.
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// The overlay network of the network case (ours).
const NET_SUBNET: &str = "10.86.0.0/24";
/// The bridge subnet of the network case (plain): the endpoint and the guest.
const PLAIN_ENDPOINT: &str = "10.87.0.1";
const PLAIN_GUEST: &str = "10.87.0.20";
const NET_NAME: &str = "bnet";

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
    // Counter lines after the switchover.
    std::thread::sleep(Duration::from_millis(2000));
    (run.max_gap_ms, run.normal_gap_ms) = gaps(tail);
    api.delete_vm(name, false)
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    (run, argv)
}

/// Migrates `name` to `to` through the API and polls its progress every 50 ms until it ends
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
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let mut run = qmp_migrate(&mut src, &uri);
    std::thread::sleep(Duration::from_millis(2000));
    (run.max_gap_ms, run.normal_gap_ms) = gaps(tail);
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
/// every 50 ms until it ends (cancelled after `CONVERGE_TIMEOUT`).
fn qmp_migrate(src: &mut Qmp, uri: &str) -> Run {
    let t = Instant::now();
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
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run of unanswered pings: `lost` pings, `silence_ms` between the replies before and after.
#[derive(Debug, Clone, Copy, Default)]
struct PingGap {
    lost: u64,
    silence_ms: f64,
}

/// One migration of the network case.
#[derive(Debug, Clone, Default)]
struct NetRun {
    /// Completed, and the pings were answered again afterwards.
    completed: bool,
    total_ms: f64,
    downtime_ms: f64,
    /// The longest gap since the migration started (zero when no ping was lost).
    gap: PingGap,
    /// Every gap since the migration started.
    gaps: Vec<PingGap>,
    note: String,
}

impl NetRun {
    fn from_migration(run: &Run) -> NetRun {
        NetRun {
            completed: run.completed,
            total_ms: run.total_ms,
            downtime_ms: run.downtime_ms,
            note: run.note.clone(),
            ..NetRun::default()
        }
    }

    fn set_gaps(&mut self, gaps: Vec<PingGap>) {
        self.gap = gaps
            .iter()
            .copied()
            .max_by(|a, b| a.silence_ms.total_cmp(&b.silence_ms))
            .unwrap_or_default();
        self.gaps = gaps;
    }
}

/// The gap lines of the guest's fast pinger in a serial log, in order:
/// `VINFRA-PINGGAP <lost> <first_lost_seq> <interval_ms> <silence_ms>`.
fn guest_gaps(text: &str) -> Vec<PingGap> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("VINFRA-PINGGAP "))
        .filter_map(|rest| {
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            match f[..] {
                [lost, _, _, silence] => Some(PingGap {
                    lost,
                    silence_ms: silence as f64,
                }),
                _ => None,
            }
        })
        .collect()
}

/// How often the guest's fast pinger had to start ping again (a gap across a restart is not
/// reported).
fn guest_restarts(text: &str, target: &str) -> usize {
    let line = format!("VINFRA-PINGFAST {target} restart");
    text.lines().filter(|l| l.trim() == line).count()
}

/// The replies the guest's fast pinger counted so far (its last progress line).
fn guest_replies(text: &str, target: &str) -> u64 {
    let prefix = format!("VINFRA-PINGFAST {target} ok ");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Waits until `f` holds, at most `timeout`; false when it never did.
fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Ours: the migrating VM `n<k>` on h1 and its pinger `p<k>` on h3, both on the overlay network
/// `NET_NAME`; `n<k>` migrates to h2. Returns the run and `n<k>`'s QEMU command line.
fn ours_network(lab: &LabGuard, k: usize) -> (NetRun, Vec<String>) {
    let api = lab.api().expect("API client");
    // Fresh addresses per run: a deleted VM's address is not reused while its deletion runs.
    let (peer_ip, vm_ip) = (
        format!("10.86.0.{}", 10 + k),
        format!("10.86.0.{}", 100 + k),
    );
    let create = |name: &str, host: &str, ip: &str, memory: u64, extra: &str| -> VmSummary {
        let mut req = Lab::guest_vm_request(name, memory, Some(host));
        if let BootSource::Kernel { cmdline: c, .. } = &mut req.spec.boot {
            *c = format!("{}{extra}", cmdline(0));
        }
        req.spec.nics = vec![NicSpec {
            network: NET_NAME.into(),
            mac: None,
            ip: Some(ip.into()),
        }];
        api.create_vm(&req)
            .unwrap_or_else(|e| panic!("create {name}: {e}"))
    };
    let (peer_name, name) = (format!("p{k}"), format!("n{k}"));
    let peer = create(
        &peer_name,
        "h3",
        &peer_ip,
        128,
        &format!(" vinfra.pingfast={vm_ip},{PING_MS}"),
    );
    let vm = create(&name, "h1", &vm_ip, MEMORY_MIB, "");
    let id = vm.id.to_string();
    let pids = lab.qemu_pids_for(&id);
    assert_eq!(pids.len(), 1, "one QEMU for {name}: {pids:?}");
    let argv = common::argv_of(pids[0]);
    wait_guest(&serial_log(lab, 0, &id), 0);
    let peer_log = serial_log(lab, 2, &peer.id.to_string());
    assert!(
        wait_until(BOOT_TIMEOUT, || guest_replies(&read_log(&peer_log), &vm_ip)
            > 0),
        "{peer_name}'s pings of {name} were never answered"
    );
    // Two seconds of steady replies.
    std::thread::sleep(Duration::from_secs(2));
    let text = read_log(&peer_log);
    let (before, restarts) = (guest_gaps(&text).len(), guest_restarts(&text, &vm_ip));

    let mut run = NetRun::from_migration(&api_migrate(&api, &name, "h2"));
    if run.completed {
        let at_end = guest_replies(&read_log(&peer_log), &vm_ip);
        if wait_until(RESUME_TIMEOUT, || {
            guest_replies(&read_log(&peer_log), &vm_ip) > at_end
        }) {
            // The gap line is printed with the first reply after it; let a second pass.
            std::thread::sleep(Duration::from_secs(1));
        } else {
            run.completed = false;
            run.note = format!(
                "no reply within {} s of the migration's end",
                RESUME_TIMEOUT.as_secs()
            );
        }
    }
    let text = read_log(&peer_log);
    let all = guest_gaps(&text);
    run.set_gaps(all[before.min(all.len())..].to_vec());
    if run.completed && guest_restarts(&text, &vm_ip) != restarts {
        run.completed = false;
        run.note = "the peer's ping exited during the migration: gap unknown".into();
    }
    for n in [&name, &peer_name] {
        api.delete_vm(n, false)
            .unwrap_or_else(|e| panic!("delete {n}: {e}"));
    }
    (run, argv)
}

/// A network namespace of the benchmark's own, deleted on drop.
struct Netns(String);

impl Netns {
    /// Creates namespace `name` (after deleting a leftover one of that name).
    fn add(name: String) -> Netns {
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_ip(&["netns", "add", &name]);
        Netns(name)
    }

    /// `ip -n <ns> <args>`.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run_ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// busybox ping every `PING_MS` in a namespace; records when each reply arrives.
struct Pinger {
    child: Child,
    replies: Arc<Mutex<Vec<(Instant, u64)>>>,
    reader: JoinHandle<()>,
}

impl Pinger {
    fn start(ns: &str, target: &str) -> Pinger {
        let interval = format!("{}.{:03}", PING_MS / 1000, PING_MS % 1000);
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "busybox", "ping", "-i", &interval, target,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start busybox ping in {ns}: {e}"));
        let stdout = child.stdout.take().expect("ping's stdout");
        let replies = Arc::new(Mutex::new(Vec::new()));
        let seen = replies.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("DUP") {
                    continue;
                }
                let seq = line
                    .split_once(" seq=")
                    .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok());
                if let Some(seq) = seq {
                    seen.lock().expect("replies").push((Instant::now(), seq));
                }
            }
        });
        Pinger {
            child,
            replies,
            reader,
        }
    }

    /// Replies so far, and when the last one arrived.
    fn last(&self) -> (usize, Option<Instant>) {
        let r = self.replies.lock().expect("replies");
        (r.len(), r.last().map(|(t, _)| *t))
    }

    /// Stops ping; returns its gaps whose second reply arrived after `from`.
    fn finish(mut self, from: Instant) -> Vec<PingGap> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.reader.join();
        let replies = self.replies.lock().expect("replies");
        replies
            .windows(2)
            .filter(|w| w[1].0 >= from && w[1].1 > w[0].1 + 1)
            .map(|w| PingGap {
                lost: w[1].1 - w[0].1 - 1,
                silence_ms: ms(w[1].0 - w[0].0),
            })
            .collect()
    }
}

/// Plain: the same guest (`argv`, its NIC now a tap) QEMU to QEMU in one namespace, both taps on
/// a Linux bridge there, pinged from an endpoint namespace on the bridge.
fn plain_network(lab: &LabGuard, argv: &[String], tag: &str, port: u16) -> NetRun {
    let id = std::process::id() % 10_000;
    let br = Netns::add(format!("vbm{id}-br"));
    let ep = Netns::add(format!("vbm{id}-ep"));
    br.ip(&["link", "set", "lo", "up"]);
    br.ip(&["link", "add", "br0", "type", "bridge"]);
    br.ip(&["link", "set", "br0", "up"]);
    br.ip(&[
        "link", "add", "veth-br", "type", "veth", "peer", "name", "veth-ep",
    ]);
    br.ip(&["link", "set", "veth-ep", "netns", &ep.0]);
    br.ip(&["link", "set", "veth-br", "master", "br0", "up"]);
    ep.ip(&[
        "addr",
        "add",
        &format!("{PLAIN_ENDPOINT}/24"),
        "dev",
        "veth-ep",
    ]);
    ep.ip(&["link", "set", "veth-ep", "up"]);
    for tap in ["tap-src", "tap-dst"] {
        br.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        br.ip(&["link", "set", tap, "master", "br0", "up"]);
    }

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
    let with_tap = |argv: &[String], tap: &str| -> Vec<String> {
        let mut a = argv.to_vec();
        let i = a
            .iter()
            .position(|x| x == "-netdev")
            .expect("-netdev in the command line");
        let netdev = &a[i + 1];
        let id = netdev
            .split(',')
            .find_map(|p| p.strip_prefix("id="))
            .expect("the netdev's id")
            .to_string();
        a[i + 1] = format!("tap,id={id},ifname={tap},script=no,downscript=no");
        let j = a.iter().position(|x| x == "-append").expect("-append");
        a[j + 1] = format!("{} vinfra.ip={PLAIN_GUEST}/24", cmdline(0));
        a
    };
    let src_argv = with_tap(&common::relocate(argv, &vm_dir, &src_dir), "tap-src");
    let mut dst_argv = with_tap(&common::relocate(argv, &vm_dir, &dst_dir), "tap-dst");
    let uri = format!("tcp:127.0.0.1:{port}");
    dst_argv.extend(["-incoming".to_string(), uri.clone()]);
    common::in_netns(&br.0, move || common::run_daemonized(&dst_argv))
        .join()
        .expect("start the destination");
    common::in_netns(&br.0, move || common::run_daemonized(&src_argv))
        .join()
        .expect("start the source");
    let mut src = Qmp::connect(&src_dir.join("qmp.sock"));
    let dst = Qmp::connect(&dst_dir.join("qmp.sock"));
    wait_guest(&src_dir.join("serial.log"), 0);

    let pinger = Pinger::start(&ep.0, PLAIN_GUEST);
    assert!(
        wait_until(BOOT_TIMEOUT, || pinger.last().0 > 0),
        "the plain guest never answered pings"
    );
    std::thread::sleep(Duration::from_secs(2));
    let from = Instant::now();
    let migration = qmp_migrate(&mut src, &uri);
    let mut run = NetRun::from_migration(&migration);
    if run.completed {
        let end = Instant::now();
        if wait_until(RESUME_TIMEOUT, || pinger.last().1.is_some_and(|t| t > end)) {
            std::thread::sleep(Duration::from_secs(1));
        } else {
            run.completed = false;
            run.note = format!(
                "no reply within {} s of the migration's end",
                RESUME_TIMEOUT.as_secs()
            );
        }
    }
    run.set_gaps(pinger.finish(from));
    quit_plain(src, dst, &src_dir, &dst_dir, &base);
    run
}

fn run_network_case(lab: &LabGuard, runs: usize, port: &mut u16) -> (Vec<NetRun>, Vec<NetRun>) {
    let req = CreateNetworkRequest {
        name: NET_NAME.into(),
        kind: NetworkKind::Overlay,
        vni: None,
        vlan_id: None,
        subnet: NET_SUBNET.into(),
        gateway: None,
        mtu: None,
    };
    lab.api()
        .expect("API client")
        .create_network(&req)
        .unwrap_or_else(|e| panic!("create network {NET_NAME}: {e}"));
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    for k in 0..runs {
        let (o, argv) = ours_network(lab, k);
        eprintln!("network #{k} ours:  {o:?}");
        *port += 1;
        let p = plain_network(lab, &argv, &format!("net-{k}"), *port);
        eprintln!("network #{k} plain: {p:?}");
        ours.push(o);
        plain.push(p);
    }
    (ours, plain)
}

fn net_median(runs: &[NetRun], f: impl Fn(&NetRun) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().filter(|r| r.completed).map(f).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report_network(ours: &[NetRun], plain: &[NetRun]) {
    println!(
        "Network gap across a live migration, ping every {PING_MS} ms, medians of completed runs \
         (ours: overlay, peer VM on h3 / plain QEMU: taps on a Linux bridge, endpoint veth)"
    );
    println!(
        "{:<14} {:>9} {:>17} {:>7} {:>15} {:>15} {:>15}",
        "case", "completed", "gap ms", "ratio", "lost pings", "downtime ms", "total ms"
    );
    let done = |r: &[NetRun]| r.iter().filter(|x| x.completed).count();
    let (og, pg) = (
        net_median(ours, |r| r.gap.silence_ms),
        net_median(plain, |r| r.gap.silence_ms),
    );
    println!(
        "{:<14} {:>4}/{:<4} {:>8.0}/{:<8.0} {:>6.2}x {:>7.0}/{:<7.0} {:>7.0}/{:<7.0} {:>7.0}/{:<7.0}",
        "network",
        done(ours),
        done(plain),
        og,
        pg,
        og / pg,
        net_median(ours, |r| r.gap.lost as f64),
        net_median(plain, |r| r.gap.lost as f64),
        net_median(ours, |r| r.downtime_ms),
        net_median(plain, |r| r.downtime_ms),
        net_median(ours, |r| r.total_ms),
        net_median(plain, |r| r.total_ms),
    );
    for (side, runs) in [("ours", ours), ("plain", plain)] {
        for r in runs {
            if r.completed {
                let gaps: Vec<String> = r
                    .gaps
                    .iter()
                    .map(|g| format!("{} lost/{:.0} ms", g.lost, g.silence_ms))
                    .collect();
                println!("  {side}: gaps [{}]", gaps.join(", "));
            } else {
                println!("  {side}: {}", r.note);
            }
        }
    }
    println!(
        "RESULT migration network gap ours {og:.0} ms plain {pg:.0} ms ratio {:.2} (recorded, no target)",
        og / pg
    );
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

/// The cases to run and how often.
struct Args {
    idle: bool,
    busy: bool,
    network: bool,
    runs: usize,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        idle: false,
        busy: false,
        network: false,
        runs: RUNS,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes this to every benchmark binary.
            "--bench" => {}
            "idle" => a.idle = true,
            "busy" => a.busy = true,
            "network" => a.network = true,
            "--runs" => {
                let v = args.next().ok_or("--runs needs a number")?;
                a.runs = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=20).contains(n))
                    .ok_or(format!("--runs: '{v}' is not a number from 1 to 20"))?;
            }
            other => {
                return Err(format!(
                    "unknown argument '{other}' (cases: idle, busy, network; --runs N)"
                ))
            }
        }
    }
    if !(a.idle || a.busy || a.network) {
        (a.idle, a.busy, a.network) = (true, true, true);
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
    let network = args
        .network
        .then(|| run_network_case(&lab, args.runs, &mut port));
    if !cases.is_empty() {
        report(&cases);
    }
    if let Some((ours, plain)) = network {
        report_network(&ours, &plain);
    }
    drop(lab);
}
