//! Shared by the lab benchmarks: lab set-up and teardown, a small blocking QMP client, running
//! QEMU directly inside a host's network namespace, serial-log tailing and percentiles.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vinfra_lab::{Lab, LabConfig};

pub const VINFRA: &str = env!("CARGO_BIN_EXE_vinfra");

/// True when this machine can run a lab (root, `ip`, QEMU). Otherwise prints a `SKIPPED:` line
/// and returns false, or panics under CI (`vinfra_testenv`).
pub fn can_run_labs(bench: &str) -> bool {
    vinfra_testenv::Needs::new()
        .named(bench)
        .root()
        .program("ip")
        .program("qemu-system-x86_64")
        .met()
}

/// A lab torn down when dropped (also on panic).
pub struct LabGuard(Option<Lab>);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            if let Err(e) = lab.down() {
                eprintln!("lab teardown: {e}");
            }
        }
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.0.as_ref().expect("lab present until drop")
    }
}

impl std::ops::DerefMut for LabGuard {
    fn deref_mut(&mut self) -> &mut Lab {
        self.0.as_mut().expect("lab present until drop")
    }
}

/// Brings up lab `bench-<tag><pid>` with `hosts` hosts under the temp directory; the guest
/// image from `VINFRA_GUEST_DIR` when set.
pub fn start_lab(tag: &str, hosts: usize) -> LabGuard {
    let name = format!("bench-{tag}{}", std::process::id() % 10_000);
    let mut config = LabConfig::new(&name, VINFRA.into());
    config.hosts = hosts;
    if let Some(dir) = std::env::var_os("VINFRA_GUEST_DIR") {
        config.guest_image_dir = dir.into();
    }
    config.root = std::env::temp_dir().join(format!("vinfra-lab-{name}"));
    let t = Instant::now();
    let lab = Lab::up(config).unwrap_or_else(|e| panic!("lab up: {e}"));
    eprintln!("lab {name} up in {:.1} s", t.elapsed().as_secs_f64());
    LabGuard(Some(lab))
}

/// The argv (binary first) of a running process.
pub fn argv_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_else(|e| panic!("cmdline of {pid}: {e}"));
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The argument after `flag`.
pub fn arg_after<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let i = argv
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {argv:?}"));
    &argv[i + 1]
}

/// The VM's directory (`<data_dir>/vms/<id>`) of an agent's QEMU command line: where its
/// first QMP socket's `run/` is (the agent writes the pidfile itself; QEMU gets none).
pub fn vm_dir_of(argv: &[String]) -> String {
    let qmp = argv
        .iter()
        .find_map(|a| a.strip_prefix("unix:")?.split(',').next())
        .unwrap_or_else(|| panic!("no QMP socket in {argv:?}"));
    Path::new(qmp)
        .parent()
        .and_then(Path::parent)
        .expect("the QMP socket in the VM's run/ directory")
        .display()
        .to_string()
}

/// `argv` with every mention of `from` (the VM's directory) replaced by `to`.
pub fn relocate(argv: &[String], from: &str, to: &Path) -> Vec<String> {
    let to = to.display().to_string();
    // What the agent's QEMU keeps in the VM's `run/` goes straight into `to`.
    let run = format!("{from}/run/");
    argv.iter()
        .map(|a| a.replace(&run, &format!("{to}/")).replace(from, &to))
        .collect()
}

/// Runs `f` on a new thread that has entered the network namespace `ns` first (processes it
/// starts are born in that namespace).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
}

/// Starts `argv` as plain QEMU as its users run it: `-daemonize` (the agent's QEMUs run in
/// the foreground), with a pidfile `qemu.pid` beside its first QMP socket, without the agent's
/// seccomp sandbox (which forbids daemonizing); waits for the parent to exit.
pub fn run_daemonized(argv: &[String]) {
    let mut args: Vec<String> = Vec::with_capacity(argv.len() + 3);
    let mut rest = argv[1..].iter();
    while let Some(a) = rest.next() {
        if a == "-sandbox" {
            rest.next();
            continue;
        }
        args.push(a.clone());
    }
    if !args.iter().any(|a| a == "-pidfile") {
        let qmp = args
            .iter()
            .find_map(|a| a.strip_prefix("unix:")?.split(',').next())
            .expect("a QMP socket on the command line");
        let pidfile = Path::new(qmp).with_file_name("qemu.pid");
        args.extend(["-pidfile".to_string(), pidfile.display().to_string()]);
    }
    if !args.iter().any(|a| a == "-daemonize") {
        args.push("-daemonize".to_string());
    }
    let out = Command::new(&argv[0])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", argv[0]));
    assert!(
        out.status.success(),
        "QEMU failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads a pidfile.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until `pid` has exited (a zombie not yet reaped by init counts as exited).
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if matches!(state, Some("Z" | "X")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A minimal blocking QMP client.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects, reads the greeting and negotiates capabilities.
    pub fn connect(path: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("QMP {}: {e}", path.display()),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("socket timeout");
        let writer = stream.try_clone().expect("clone socket");
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = q.line();
        assert!(greeting.get("QMP").is_some(), "QMP greeting: {greeting}");
        q.execute("qmp_capabilities", None)
            .unwrap_or_else(|e| panic!("qmp_capabilities: {e}"));
        q
    }

    fn line(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("QMP read");
        assert!(n > 0, "QMP connection closed");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("QMP line {line:?}: {e}"))
    }

    /// Runs a command; events in between are skipped.
    pub fn execute(&mut self, cmd: &str, args: Option<Value>) -> Result<Value, String> {
        let mut msg = json!({ "execute": cmd });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let text = msg.to_string() + "\n";
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
        loop {
            let v = self.line();
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(e.to_string());
            }
        }
    }

    /// `quit`, tolerating the connection closing under us.
    pub fn quit(mut self) {
        let _ = self.writer.write_all(b"{\"execute\":\"quit\"}\n");
        let mut rest = String::new();
        let _ = self.reader.read_to_string(&mut rest);
    }
}

/// p50, p99 and max of `samples`.
pub fn percentiles(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len();
    (s[n / 2], s[(n * 99).div_ceil(100) - 1], s[n - 1])
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits until `path` contains `needle`.
pub fn wait_file_contains(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "'{needle}' never appeared in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last counter printed in a serial log.
pub fn last_counter(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("VINFRA-COUNTER "))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .next_back()
}

/// Waits until the guest printed `more` counter lines beyond the current last one.
pub fn wait_counters(path: &Path, more: u64, timeout: Duration) {
    let start = last_counter(path).unwrap_or(0);
    let deadline = Instant::now() + timeout;
    while last_counter(path).unwrap_or(0) < start + more {
        assert!(
            Instant::now() < deadline,
            "the guest stopped counting in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How often [`Tail`] reads the serial logs.
pub const TAIL_POLL: Duration = Duration::from_millis(2);

/// The largest gap in a guest's tick lines (`VINFRA-TICK <n> <uptime>`, printed every 10 ms by
/// `vinfra.tick=10`), as [`Tail`] saw them arrive.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickGap {
    /// The longest time between two consecutive ticks arriving (host clock).
    pub arrival: Duration,
    /// What the guest's own clock advanced between those two ticks: it stands still while QEMU
    /// has the guest paused, so `arrival - guest_clock` is the time the guest did not run.
    pub guest_clock: Duration,
    /// The median time between consecutive ticks arriving (the normal interval).
    pub normal: Duration,
    /// Ticks seen.
    pub ticks: usize,
}

/// Polls serial logs every [`TAIL_POLL`] and records when each new tick line arrives.
pub struct Tail {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(Instant, u64, f64)>>,
}

impl Tail {
    /// Starts tailing `paths` from their current ends (files that appear later: from 0).
    pub fn start(paths: Vec<PathBuf>) -> Tail {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut offsets: Vec<Option<u64>> = paths
                .iter()
                .map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
                .collect();
            let mut files: Vec<Option<File>> = paths.iter().map(|_| None).collect();
            let mut partial = vec![String::new(); paths.len()];
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                for (i, p) in paths.iter().enumerate() {
                    if files[i].is_none() {
                        files[i] = File::open(p).ok();
                    }
                    let Some(f) = files[i].as_mut() else { continue };
                    let off = offsets[i].unwrap_or(0);
                    if f.seek(SeekFrom::Start(off)).is_err() {
                        continue;
                    }
                    let mut buf = Vec::new();
                    let Ok(n) = f.read_to_end(&mut buf) else {
                        continue;
                    };
                    offsets[i] = Some(off + n as u64);
                    if n == 0 {
                        continue;
                    }
                    let now = Instant::now();
                    partial[i].push_str(&String::from_utf8_lossy(&buf));
                    while let Some(end) = partial[i].find('\n') {
                        let line: String = partial[i].drain(..=end).collect();
                        if let Some(rest) = line.trim().strip_prefix("VINFRA-TICK ") {
                            let mut f = rest.split_whitespace();
                            let n = f.next().and_then(|x| x.parse().ok());
                            let up = f.next().and_then(|x| x.parse().ok());
                            if let (Some(n), Some(up)) = (n, up) {
                                seen.push((now, n, up));
                            }
                        }
                    }
                }
                std::thread::sleep(TAIL_POLL);
            }
            seen
        });
        Tail { stop, handle }
    }

    /// Stops and returns the largest gap between consecutive ticks.
    pub fn finish(self) -> TickGap {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen = self.handle.join().expect("tail thread");
        seen.sort_by_key(|a| (a.1, a.0));
        seen.dedup_by_key(|(_, n, _)| *n);
        let gaps: Vec<(Duration, f64)> = seen
            .windows(2)
            .filter(|w| w[1].1 == w[0].1 + 1)
            .map(|w| (w[1].0.saturating_duration_since(w[0].0), w[1].2 - w[0].2))
            .collect();
        if gaps.is_empty() {
            return TickGap {
                ticks: seen.len(),
                ..TickGap::default()
            };
        }
        let (_, p50, _) = percentiles(&gaps.iter().map(|g| g.0).collect::<Vec<_>>());
        let (arrival, clock) = gaps.iter().copied().max_by_key(|g| g.0).unwrap_or_default();
        TickGap {
            arrival,
            guest_clock: Duration::from_secs_f64(clock.max(0.0)),
            normal: p50,
            ticks: seen.len(),
        }
    }
}
