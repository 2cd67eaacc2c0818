//! The fleet in a process of its own: the benchmark's binary started again with
//! [`FLEET_CHILD_ARG`], told over its standard input whom to join and asked for its counters and
//! `CreateVm` stamps one line at a time. The console's process then holds one socket per host,
//! as in production (its agents are other machines), and 10,000 hosts fit an open-file limit
//! of 20,000 in each process; the fleet's CPU is the child's, apart from the console's.
//!
//! The protocol, one JSON line each way: the parent writes a [`FleetSpec`], the child answers
//! `{"joined": N, "last_join_error": "..."}` once its joins are done; then `counters` is answered
//! with a [`FleetCount`], `stamps` with [`CreateTimes::to_monotonic`]. The child stops when its
//! standard input closes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::*;

/// The argument that makes a benchmark's binary run as the fleet ([`fleet_child_main`]).
pub const FLEET_CHILD_ARG: &str = "--fleet-child";

/// Whom the child fleet joins, and how.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct FleetSpec {
    /// `https://127.0.0.1:<port>` of the API (join tokens).
    pub base: String,
    /// The API token.
    pub token: String,
    /// The agent endpoint.
    pub agent_addr: SocketAddr,
    /// The cluster CA, PEM.
    pub ca_pem: String,
    /// The hosts.
    pub hosts: Vec<FleetHost>,
    /// What every host offers.
    pub capacity: HostCapacity,
    /// Report interval, ms.
    pub interval_ms: u64,
    /// Joins at once.
    pub parallel: usize,
    /// No join starts after this many ms from when the spec is read.
    pub limit_ms: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Joined {
    joined: usize,
    last_join_error: String,
}

/// A fleet running in a child process.
pub struct FleetProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl FleetProcess {
    /// Starts this binary again as a fleet (nothing joined yet). Start it before the console
    /// changes anything its children would inherit (the console turns huge pages off for its
    /// process; the fleet stands for agents on other machines).
    pub fn spawn() -> FleetProcess {
        let this_benchmark = ok(std::env::current_exe(), "this benchmark's path");
        let mut child = ok(
            Command::new(this_benchmark)
                .arg(FLEET_CHILD_ARG)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn(),
            "start the fleet's process",
        );
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        FleetProcess {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one line, reads the answer line.
    fn ask(&mut self, line: &str) -> String {
        ok(writeln!(self.stdin, "{line}"), "write to the fleet");
        ok(self.stdin.flush(), "write to the fleet");
        let mut answer = String::new();
        let n = ok(self.stdout.read_line(&mut answer), "read from the fleet");
        assert!(n > 0, "the fleet's process ended");
        answer
    }

    /// Has the fleet join `spec`'s hosts (as [`Fleet::join`]); blocks until its joins are done:
    /// (hosts joined, why the last failed join attempt failed).
    pub fn join(&mut self, spec: &FleetSpec) -> (usize, String) {
        let line = ok(serde_json::to_string(spec), "fleet spec");
        let j: Joined = ok(
            serde_json::from_str(&self.ask(&line)),
            "fleet's join answer",
        );
        (j.joined, j.last_join_error)
    }

    /// The fleet's counters now.
    pub fn counters(&mut self) -> FleetCount {
        ok(
            serde_json::from_str(&self.ask("counters")),
            "fleet's counters",
        )
    }

    /// When each `CreateVm` reached the fleet and was answered.
    pub fn stamps(&mut self) -> CreateTimes {
        CreateTimes::from_monotonic(ok(
            serde_json::from_str(&self.ask("stamps")),
            "fleet's stamps",
        ))
    }

    /// CPU seconds (user + system) the fleet's process has spent so far.
    pub fn cpu_s(&self) -> f64 {
        let stat = ok(
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())),
            "the fleet's /proc stat",
        );
        let after_name = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // After the name: state is field 3 of stat(5), utime 14 and stime 15 (the whole
        // process's, every thread's).
        let ticks = |i: usize| {
            let f = fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
            f.unwrap_or_else(|| panic!("field {i} of the fleet's /proc stat: {stat}"))
        };
        let per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        (ticks(14) + ticks(15)) / per_s
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side: reads a [`FleetSpec`] from standard input, joins its hosts on a runtime
/// of two threads named `agents`, answers with what joined, then answers `counters` and
/// `stamps` until standard input closes.
pub fn fleet_child_main() {
    // Ends with the benchmark, however it ends (a parent killed never runs its `Drop`).
    ok(
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
        "PR_SET_PDEATHSIG",
    );
    if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
        return;
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let Some(Ok(first)) = lines.next() else {
        return;
    };
    let spec: FleetSpec = ok(serde_json::from_str(&first), "fleet spec");
    drop(first);
    raise_fd_limit(spec.hosts.len() as u64 + 1024);
    let rt = runtime("agents", 2);
    let api = Api {
        client: api_client(&spec.ca_pem),
        base: spec.base,
        token: spec.token,
    };
    let deadline = Instant::now() + Duration::from_millis(spec.limit_ms);
    let fleet = rt.block_on(Fleet::join(
        &api,
        (spec.agent_addr, spec.ca_pem),
        spec.hosts,
        spec.capacity,
        Duration::from_millis(spec.interval_ms),
        spec.parallel,
        deadline,
    ));
    // The protocol's answers are this process's only output on stdout (nothing else may print
    // there: the lock is held while stdin is read).
    let mut out = std::io::stdout().lock();
    let mut answer = |v: String| {
        ok(writeln!(out, "{v}"), "answer the benchmark");
        ok(out.flush(), "answer the benchmark");
    };
    answer(ok(
        serde_json::to_string(&Joined {
            joined: fleet.joined,
            last_join_error: fleet.last_join_error.clone(),
        }),
        "join answer",
    ));
    for line in lines {
        let Ok(line) = line else { break };
        match line.trim() {
            "counters" => answer(ok(
                serde_json::to_string(&fleet.counters.snapshot()),
                "counters",
            )),
            "stamps" => answer(ok(
                serde_json::to_string(&fleet.creates.to_monotonic()),
                "stamps",
            )),
            other => panic!("the fleet was asked {other:?}"),
        }
    }
    drop(fleet);
    drop(rt);
}
