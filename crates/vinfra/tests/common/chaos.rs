//! The HA chaos driver: random faults, one at a time, on a lab running HA VMs, with the
//! invariants checked continuously and once each fault has healed.
//!
//! The lab: 3 hosts; HA VMs `ha-a` (h1, priority highest), `ha-b` (h2) — a must-anti-affinity
//! pair — `ha-c` (h3, low), `ha-d` (h1); one VM without HA, `plain` (h2). 128-MiB guests.
//! Admission control keeps its default (`tolerate_host_failures` 1), so **at most one host is
//! faulty at a time**: every fault is healed and the cluster has settled before the next one.
//! The console is not a host: killing it while a host is down is one of the faults.
//!
//! The faults ([`Kind`]), dealt from a shuffled deck (every kind once per round; the RNG is
//! seeded, the seed printed, so a run can be replayed — the fault sequence, not the timing):
//! - `host-kill`: every process of a host's namespace killed ([`Lab::fence`]: agent, switch,
//!   guard, QEMUs); the host comes back (switch, guard, agent started again) either 1–4 s later,
//!   before its lease can expire, or 0–5 s after its HA VMs run elsewhere;
//! - `partition`: the host's underlay link down (its datastore stays) for 5–15 s, or until its
//!   HA VMs run elsewhere (then 0–5 s more), under a random isolation response (keep-running,
//!   power-off, shutdown);
//! - `agent-kill`: `kill -9` of an agent, back after 2–10 s, within its grace: nothing moves,
//!   no QEMU changes;
//! - `agent-gone`: `kill -9` of an agent, back after its grace (60 s) + 5 s, under a random
//!   isolation response: with keep-running nothing moves; with power-off or shutdown its HA
//!   VMs run elsewhere once its guard stopped them;
//! - `console-kill`: `kill -9` of the console, back after 1–5 s: nothing moves, no QEMU changes;
//! - `console-failover`: a host with HA VMs killed as in `host-kill`, the console killed 0–8 s
//!   later and back 1–4 s after that, in the middle of the failover;
//! - `qemu-kill`: `kill -9` of one VM's QEMU: an HA VM runs again on its host (crash restart);
//!   the VM without HA stays down until the driver starts it again.
//!
//! Invariants, each break a [`Violation`] (with the fault under way):
//! - continuously (a thread scanning `/proc` every 100 ms): never two QEMUs for one VM id on
//!   the machine; the VM without HA never runs on a host other than its record's; the
//!   must-anti-affinity pair never has QEMUs on one host;
//! - at each settle point, within [`SETTLE_BOUND`] of the heal and for [`STABLE`]: every host
//!   connected and HA `connected`, its agent, guard and switch running; no VM record lost
//!   (names and ids); every HA VM runs exactly once, on the host its record names, and the
//!   console says `running`; no VM's files left on another host; the VM without HA still on
//!   its record's host and running (the driver starts it again after the faults that stop it);
//!   the pair placed on two hosts;
//! - per fault: what must not move did not (agent kill within grace, console kill, keep-running
//!   isolation: same record hosts, same QEMU pids), what must move did within
//!   [`FAILOVER_BOUND`] (a killed host's HA VMs, a power-off or shutdown isolation's — the
//!   latter with its minute on top), the VM without HA kept its QEMU through faults that spare
//!   it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use vinfra_lab::Lab;
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
use vinfra_types::ha::{HaPriority, IsolationResponse};
use vinfra_types::{HostStatus, PowerState};

use crate::common::{start_lab_with, LabGuard};

/// The seed of a run when `VINFRA_CHAOS_SEED` is not set (CI runs are reproducible): its
/// fifth fault is a console kill under `power-off`, which once powered off every HA VM.
pub const DEFAULT_SEED: u64 = 20261203;
/// How long the cluster has to settle once a fault is healed.
pub const SETTLE_BOUND: Duration = Duration::from_secs(60);
/// How long HA VMs have to run elsewhere once their host is lost or stopped them.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(60);
/// How long the cluster must stay settled to count as settled (from its first settled look).
const STABLE: Duration = Duration::from_secs(1);
/// How long a `shutdown` isolation response may take on top of [`FAILOVER_BOUND`]: it waits up
/// to a minute for the guests to power off.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);
/// How often the continuous checker looks.
pub const POLL: Duration = Duration::from_millis(100);
/// The agents' grace (the cluster's default `agent_grace`).
const AGENT_GRACE: Duration = Duration::from_secs(60);
const MEMORY_MIB: u64 = 128;
const HOSTS: usize = 3;
const PAIR: (&str, &str) = ("ha-a", "ha-b");
const PLAIN: &str = "plain";

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    HostKill,
    Partition,
    AgentKill,
    AgentGone,
    ConsoleKill,
    ConsoleFailover,
    QemuKill,
}

impl Kind {
    /// Every kind, in the order of the reports.
    pub const ALL: [Kind; 7] = [
        Kind::HostKill,
        Kind::Partition,
        Kind::AgentKill,
        Kind::AgentGone,
        Kind::ConsoleKill,
        Kind::ConsoleFailover,
        Kind::QemuKill,
    ];

    /// Its name in the reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::HostKill => "host-kill",
            Kind::Partition => "partition",
            Kind::AgentKill => "agent-kill",
            Kind::AgentGone => "agent-gone",
            Kind::ConsoleKill => "console-kill",
            Kind::ConsoleFailover => "console-failover",
            Kind::QemuKill => "qemu-kill",
        }
    }
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// The RNG's seed.
    pub seed: u64,
    /// How many faults.
    pub faults: usize,
}

impl Config {
    /// `VINFRA_CHAOS_SEED` (default [`DEFAULT_SEED`]) and `VINFRA_CHAOS_FAULTS` (default
    /// `faults`).
    pub fn from_env(faults: usize) -> Config {
        let var = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("{name}={v}: {e}"))
            })
        };
        Config {
            seed: var("VINFRA_CHAOS_SEED").unwrap_or(DEFAULT_SEED),
            faults: var("VINFRA_CHAOS_FAULTS").map_or(faults, |n| n as usize),
        }
    }
}

/// One fault of a run, as it went.
#[derive(Debug, Clone)]
pub struct Fault {
    /// 1, 2, …
    pub n: usize,
    /// Its kind.
    pub kind: Kind,
    /// What exactly (host, VM, response, durations).
    pub what: String,
    /// When it was injected, since the run's start.
    pub at: Duration,
    /// From the injection until the HA VMs it took down ran again elsewhere (or, for a QEMU
    /// kill, on their host), when it took some down.
    pub failover: Option<Duration>,
    /// From the heal (the host, link, agent or console back; the kill itself for a QEMU kill)
    /// until the cluster settled; `None`: it did not within [`SETTLE_BOUND`].
    pub recovered: Option<Duration>,
    /// VMs whose record moved to another host.
    pub moved: Vec<String>,
}

/// An invariant found broken.
#[derive(Debug, Clone)]
pub struct Violation {
    /// When, since the run's start.
    pub at: Duration,
    /// The fault under way (its number), 0 before the first.
    pub fault: usize,
    /// What was seen.
    pub what: String,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Every fault injected.
    pub faults: Vec<Fault>,
    /// Every violation.
    pub violations: Vec<Violation>,
    /// Polls of the continuous checker.
    pub polls: u64,
    /// The console's events at the end (or at the first violation), oldest first.
    pub events: Vec<String>,
    /// `/proc/loadavg` at the start and at the end.
    pub load: (String, String),
    /// How long the run took (the lab's start included).
    pub took: Duration,
    /// True when the run stopped before its last fault (the cluster did not settle).
    pub aborted: bool,
}

/// One VM of the run.
#[derive(Debug, Clone)]
struct Vm {
    name: String,
    id: String,
    ha: bool,
    /// The host it was created on (the VM without HA never leaves it).
    home: String,
}

/// What the continuous checker and the driver share.
#[derive(Default)]
struct Shared {
    violations: Mutex<Vec<Violation>>,
    /// The fault under way.
    fault: AtomicUsize,
    polls: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn violation(&self, start: Instant, what: String) {
        let v = Violation {
            at: start.elapsed(),
            fault: self.fault.load(Ordering::Relaxed),
            what,
        };
        println!(
            "VIOLATION at {:.1} s (fault #{}): {}",
            v.at.as_secs_f64(),
            v.fault,
            v.what
        );
        self.violations.lock().unwrap().push(v);
    }
}

/// Every QEMU on the machine: pid and command line (arguments joined by spaces).
fn qemus() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_qemu = args
            .first()
            .and_then(|a0| a0.rsplit('/').next())
            .is_some_and(|b| b.starts_with("qemu"));
        if is_qemu {
            out.push((pid, args.join(" ")));
        }
    }
    out
}

/// Where the QEMUs of each VM run: `(pid, host)` (host `?` when no lab host's data directory
/// is in its command line).
fn placements(vms: &[Vm], dirs: &[(String, String)]) -> BTreeMap<String, Vec<(u32, String)>> {
    let all = qemus();
    vms.iter()
        .map(|vm| {
            let found = all
                .iter()
                .filter(|(_, cmd)| cmd.contains(&vm.id))
                .map(|(pid, cmd)| {
                    let host = dirs
                        .iter()
                        .find(|(_, d)| cmd.contains(d.as_str()))
                        .map_or("?".to_string(), |(h, _)| h.clone());
                    (*pid, host)
                })
                .collect();
            (vm.name.clone(), found)
        })
        .collect()
}

/// The continuous checker: every [`POLL`], one scan of `/proc` (see the module doc). A broken
/// invariant is reported once per episode (until it holds again).
fn spawn_checker(
    shared: Arc<Shared>,
    start: Instant,
    vms: Vec<Vm>,
    dirs: Vec<(String, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut open: BTreeMap<String, String> = BTreeMap::new();
        while !shared.stop.load(Ordering::Relaxed) {
            let at = placements(&vms, &dirs);
            let mut now: BTreeMap<String, String> = BTreeMap::new();
            for vm in &vms {
                let p = &at[&vm.name];
                if p.len() > 1 {
                    now.insert(
                        format!("twice {}", vm.name),
                        format!("{} has {} QEMUs: {p:?} (pid, host)", vm.name, p.len()),
                    );
                }
                if !vm.ha {
                    if let Some((pid, h)) = p.iter().find(|(_, h)| *h != vm.home) {
                        now.insert(
                            format!("away {}", vm.name),
                            format!(
                                "{} (no HA, its record on {}) runs on {h} (pid {pid})",
                                vm.name, vm.home
                            ),
                        );
                    }
                }
            }
            let hosts = |n: &str| -> Vec<String> { at[n].iter().map(|(_, h)| h.clone()).collect() };
            let (a, b) = (hosts(PAIR.0), hosts(PAIR.1));
            if let Some(h) = a.iter().find(|h| b.contains(h)) {
                now.insert(
                    "pair".into(),
                    format!(
                        "{} and {} (must-anti-affinity) both run on {h}",
                        PAIR.0, PAIR.1
                    ),
                );
            }
            for (key, what) in &now {
                if !open.contains_key(key) {
                    shared.violation(start, what.clone());
                }
            }
            open = now;
            shared.polls.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(POLL);
        }
    })
}

/// A snapshot of where everything is: each VM's record host and QEMU pids.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    hosts: BTreeMap<String, String>,
    pids: BTreeMap<String, Vec<u32>>,
}

/// The driver's state.
struct Driver {
    lab: LabGuard,
    rng: StdRng,
    vms: Vec<Vm>,
    dirs: Vec<(String, String)>,
    shared: Arc<Shared>,
    start: Instant,
    response: IsolationResponse,
    faults: Vec<Fault>,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn opt_secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), secs)
}

impl Driver {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn violation(&self, what: String) {
        self.shared.violation(self.start, what);
    }

    fn api(&self) -> Option<vinfra_client::Client> {
        self.lab().api().ok()
    }

    fn snapshot(&self) -> Snapshot {
        let at = placements(&self.vms, &self.dirs);
        let mut hosts = BTreeMap::new();
        if let Some(vms) = self.api().and_then(|a| a.vms().ok()) {
            for v in vms {
                hosts.insert(v.name, v.host);
            }
        }
        Snapshot {
            hosts,
            pids: at
                .into_iter()
                .map(|(n, p)| (n, p.into_iter().map(|(pid, _)| pid).collect()))
                .collect(),
        }
    }

    /// Waits (polling every 200 ms) until `f` holds, at most `bound`; how long it took.
    fn wait(&self, bound: Duration, mut f: impl FnMut(&Self) -> bool) -> Option<Duration> {
        let t = Instant::now();
        loop {
            if f(self) {
                return Some(t.elapsed());
            }
            if t.elapsed() >= bound {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What keeps the cluster from being settled (empty: settled). See the module doc.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(api) = self.api() else {
            return vec!["no API client".into()];
        };
        match api.hosts() {
            Ok(hosts) => {
                for h in hosts {
                    if h.status != HostStatus::Connected {
                        out.push(format!("host {} is {:?}", h.name, h.status));
                    }
                }
            }
            Err(e) => out.push(format!("GET hosts: {e}")),
        }
        match api.ha() {
            Ok(ha) => {
                for h in ha.hosts {
                    if h.state != "connected" {
                        out.push(format!("host {} is HA {}", h.name, h.detail));
                    }
                }
            }
            Err(e) => out.push(format!("GET ha: {e}")),
        }
        let lab = self.lab();
        if !vinfra_lab::process::alive(lab.console_pid()) {
            out.push("the console does not run".into());
        }
        for h in lab.host_names() {
            for (what, pid) in [
                ("agent", lab.agent_pid(&h)),
                ("guard", lab.guard_pid(&h)),
                ("switch", lab.switch_pid(&h)),
            ] {
                if !pid.is_ok_and(vinfra_lab::process::alive) {
                    out.push(format!("{h}'s {what} does not run"));
                }
            }
        }
        let listed = match api.vms() {
            Ok(v) => v,
            Err(e) => {
                out.push(format!("GET vms: {e}"));
                return out;
            }
        };
        let at = placements(&self.vms, &self.dirs);
        for vm in &self.vms {
            let Some(v) = listed.iter().find(|v| v.name == vm.name) else {
                out.push(format!("the record of {} is gone", vm.name));
                continue;
            };
            if v.id.to_string() != vm.id {
                out.push(format!("{}'s id changed: {} -> {}", vm.name, vm.id, v.id));
            }
            if v.desired != PowerState::Running {
                out.push(format!("{} is desired {:?}", vm.name, v.desired));
            }
            if !vm.ha && v.host != vm.home {
                out.push(format!(
                    "{} (no HA) moved: {} -> {}",
                    vm.name, vm.home, v.host
                ));
            }
            let q = &at[&vm.name];
            if v.state != PowerState::Running {
                out.push(format!("{} is {:?} on {}", vm.name, v.state, v.host));
            }
            if q.len() != 1 || q[0].1 != v.host {
                out.push(format!(
                    "{} (record on {}) has QEMUs {q:?} (pid, host)",
                    vm.name, v.host
                ));
            }
        }
        for vm in &self.vms {
            let Some(v) = listed.iter().find(|v| v.name == vm.name) else {
                continue;
            };
            for (h, _) in &self.dirs {
                if *h != v.host && lab.vm_dir(h, &vm.id).is_ok_and(|d| d.exists()) {
                    out.push(format!(
                        "{h} keeps files of {} (record on {})",
                        vm.name, v.host
                    ));
                }
            }
        }
        let host_of = |n: &str| listed.iter().find(|v| v.name == n).map(|v| v.host.clone());
        if let (Some(a), Some(b)) = (host_of(PAIR.0), host_of(PAIR.1)) {
            if a == b {
                out.push(format!("{} and {} both placed on {a}", PAIR.0, PAIR.1));
            }
        }
        out
    }

    /// Waits until the cluster settles (see [`Driver::problems`]) and stays so for [`STABLE`];
    /// how long until it first was (`None` when that was beyond [`SETTLE_BOUND`]). The VM
    /// without HA is started again when `restart_plain` and it is down. A violation when it does
    /// not settle within [`SETTLE_BOUND`]; then up to 2 minutes more before the run is given up
    /// (`Err`).
    fn settle(&mut self, restart_plain: bool) -> Result<Option<Duration>, ()> {
        let t = Instant::now();
        let mut started = !restart_plain;
        let mut last = Vec::new();
        let mut late = false;
        // When the problems went away (settled once they stay away for STABLE).
        let mut quiet: Option<Duration> = None;
        while t.elapsed() < SETTLE_BOUND + Duration::from_secs(120) {
            if !started {
                started = self.start_plain();
            }
            last = self.problems();
            if last.is_empty() {
                let took = t.elapsed();
                match quiet {
                    None => quiet = Some(took),
                    Some(q) if took - q >= STABLE => {
                        return Ok((q <= SETTLE_BOUND).then_some(q));
                    }
                    Some(_) => {}
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            quiet = None;
            if !late && t.elapsed() >= SETTLE_BOUND {
                late = true;
                self.violation(format!(
                    "not settled {} after the heal: {}",
                    secs(SETTLE_BOUND),
                    last.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.violation(format!(
            "still not settled {} after the heal, the run stops: {}",
            secs(t.elapsed()),
            last.join("; ")
        ));
        Err(())
    }

    /// Starts the VM without HA when its host is connected and it does not run; true once it
    /// runs or was started.
    fn start_plain(&self) -> bool {
        let Some(api) = self.api() else { return false };
        let Ok(v) = api.vm(PLAIN) else { return false };
        let q = &placements(&self.vms, &self.dirs)[PLAIN];
        if v.state == PowerState::Running && q.len() == 1 && q[0].1 == v.host {
            return true;
        }
        let connected = api
            .host(&v.host)
            .is_ok_and(|h| h.status == HostStatus::Connected);
        if !connected || !matches!(v.state, PowerState::Crashed | PowerState::Stopped) {
            return false;
        }
        match api.start_vm(PLAIN) {
            Ok(_) => true,
            Err(e) => {
                println!("  start {PLAIN}: {e} (tried again)");
                false
            }
        }
    }

    fn set_response(&mut self, r: IsolationResponse) {
        if self.response == r {
            return;
        }
        let api = self.api().expect("API");
        let mut s = api.settings().expect("GET settings");
        s.ha.isolation_response = r;
        api.put_settings(&s).expect("PUT settings");
        self.response = r;
        // Every agent gets the response at once; its guard with the next pet (every second).
        std::thread::sleep(Duration::from_secs(2));
    }

    fn random_response(&mut self) -> IsolationResponse {
        *[
            IsolationResponse::KeepRunning,
            IsolationResponse::PowerOff,
            IsolationResponse::Shutdown,
        ]
        .choose(&mut self.rng)
        .expect("three")
    }

    fn random_host(&mut self) -> String {
        format!("h{}", self.rng.random_range(1..=HOSTS))
    }

    /// HA VMs whose record is on `host`.
    fn ha_on(&self, host: &str) -> Vec<Vm> {
        let snap = self.snapshot();
        self.vms
            .iter()
            .filter(|v| v.ha && snap.hosts.get(&v.name).is_some_and(|h| h == host))
            .cloned()
            .collect()
    }

    /// True once every VM of `vms` has its record on a host other than `from`, is `running`
    /// there and has exactly one QEMU, there.
    fn run_elsewhere(&self, vms: &[Vm], from: &str) -> bool {
        let Some(api) = self.api() else { return false };
        let at = placements(&self.vms, &self.dirs);
        vms.iter().all(|vm| {
            api.vm(&vm.name).is_ok_and(|v| {
                let q = &at[&vm.name];
                v.host != from && v.state == PowerState::Running && q.len() == 1 && q[0].1 == v.host
            })
        })
    }

    fn bring_back(&mut self, host: &str) {
        let lab = self.lab.lab_mut();
        lab.restart_switch(host).expect("restart switch");
        lab.restart_guard(host).expect("restart guard");
        lab.restart_agent(host).expect("restart agent");
    }

    fn link(&self, host: &str, up: bool) {
        let ns = self
            .lab()
            .state()
            .hosts
            .iter()
            .find(|h| h.name == host)
            .expect("host")
            .namespace
            .clone();
        let st = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ip", "link", "set", "eth0"])
            .arg(if up { "up" } else { "down" })
            .status()
            .expect("ip netns exec");
        assert!(
            st.success(),
            "link of {host} {}",
            if up { "up" } else { "down" }
        );
    }

    /// Compares `before` with now: VMs whose record moved, VMs whose QEMU changed.
    fn changes(&self, before: &Snapshot) -> (Vec<String>, Vec<String>) {
        let after = self.snapshot();
        let moved = before
            .hosts
            .iter()
            .filter(|(n, h)| after.hosts.get(*n).is_some_and(|a| a != *h))
            .map(|(n, h)| format!("{n} {h}->{}", after.hosts[n]))
            .collect();
        let restarted = before
            .pids
            .iter()
            .filter(|(n, p)| after.pids.get(*n) != Some(p))
            .map(|(n, p)| format!("{n} {p:?}->{:?}", after.pids.get(n)))
            .collect();
        (moved, restarted)
    }

    /// Injects fault `n` of kind `kind`, heals it and waits for the cluster to settle.
    fn fault(&mut self, n: usize, kind: Kind) -> Result<(), ()> {
        self.shared.fault.store(n, Ordering::Relaxed);
        let before = self.snapshot();
        let plain_before = before.pids.get(PLAIN).cloned().unwrap_or_default();
        let mut f = Fault {
            n,
            kind,
            what: String::new(),
            at: self.start.elapsed(),
            failover: None,
            recovered: None,
            moved: Vec::new(),
        };
        // Whether the fault may stop the VM without HA (else its QEMU must survive it).
        let mut stops_plain = false;
        // Whether nothing may move nor restart.
        let mut still = false;
        let healed: Instant;
        match kind {
            Kind::HostKill | Kind::ConsoleFailover => {
                // The console dies in the middle of a failover: a host with HA VMs.
                let host = if kind == Kind::ConsoleFailover {
                    let snap = self.snapshot();
                    let mut with: Vec<String> = self
                        .vms
                        .iter()
                        .filter(|v| v.ha)
                        .filter_map(|v| snap.hosts.get(&v.name).cloned())
                        .collect();
                    with.sort();
                    with.dedup();
                    with.choose(&mut self.rng)
                        .cloned()
                        .unwrap_or_else(|| "h1".into())
                } else {
                    self.random_host()
                };
                let victims = self.ha_on(&host);
                stops_plain = self.vms.iter().any(|v| v.name == PLAIN && v.home == host);
                let early = kind == Kind::HostKill && self.rng.random_bool(0.4);
                let back = if early {
                    Duration::from_millis(self.rng.random_range(1000..=4000))
                } else {
                    Duration::from_millis(self.rng.random_range(0..=5000))
                };
                let console_after = Duration::from_millis(self.rng.random_range(0..=8000));
                let console_down = Duration::from_millis(self.rng.random_range(1000..=4000));
                f.what = format!(
                    "{host} killed ({} HA VMs: {})",
                    victims.len(),
                    victims
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                if kind == Kind::ConsoleFailover {
                    let _ = write!(
                        f.what,
                        ", console killed {} later, back {} after",
                        secs(console_after),
                        secs(console_down)
                    );
                }
                if early {
                    let _ = write!(f.what, ", back after {}", secs(back));
                } else {
                    let _ = write!(f.what, ", back {} after the failover", secs(back));
                }
                println!("fault #{n} {}: {}", kind.name(), f.what);
                let t0 = Instant::now();
                self.lab()
                    .fence(&host)
                    .expect("kill every process of the host");
                if kind == Kind::ConsoleFailover {
                    std::thread::sleep(console_after);
                    self.lab()
                        .kill_console(Signal::SIGKILL)
                        .expect("kill console");
                    std::thread::sleep(console_down);
                    self.lab
                        .lab_mut()
                        .restart_console()
                        .expect("restart console");
                }
                if early {
                    std::thread::sleep(back.saturating_sub(t0.elapsed()));
                } else {
                    let v = victims.clone();
                    let h = host.clone();
                    let left = FAILOVER_BOUND.saturating_sub(t0.elapsed());
                    if self.wait(left, |d| d.run_elsewhere(&v, &h)).is_some() {
                        // Nothing to fail over is no failover time.
                        f.failover = (!v.is_empty()).then(|| t0.elapsed());
                    } else {
                        self.violation(format!(
                            "{host}'s HA VMs ({}) not running elsewhere {} after the kill: {}",
                            v.iter()
                                .map(|v| v.name.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            secs(FAILOVER_BOUND),
                            self.problems().join("; ")
                        ));
                    }
                    std::thread::sleep(back);
                }
                self.bring_back(&host);
                healed = Instant::now();
            }
            Kind::Partition => {
                let host = self.random_host();
                let r = self.random_response();
                self.set_response(r);
                let victims = self.ha_on(&host);
                let moves = r != IsolationResponse::KeepRunning && !victims.is_empty();
                let hold = if moves {
                    Duration::from_millis(self.rng.random_range(0..=5000))
                } else {
                    Duration::from_millis(self.rng.random_range(5000..=15000))
                };
                f.what = format!(
                    "{host} cut off, {} ({} HA VMs), {}",
                    r.as_str(),
                    victims.len(),
                    if moves {
                        format!("healed {} after they run elsewhere", secs(hold))
                    } else {
                        format!("healed after {}", secs(hold))
                    }
                );
                println!("fault #{n} {}: {}", kind.name(), f.what);
                still = !moves;
                let t0 = Instant::now();
                self.link(&host, false);
                let bound = if r == IsolationResponse::Shutdown {
                    FAILOVER_BOUND + SHUTDOWN_WAIT
                } else {
                    FAILOVER_BOUND
                };
                if moves {
                    let h = host.clone();
                    if self
                        .wait(bound, |d| d.run_elsewhere(&victims, &h))
                        .is_some()
                    {
                        f.failover = Some(t0.elapsed());
                    } else {
                        self.violation(format!(
                            "{host} isolated with {}: its HA VMs not running elsewhere {} \
                             after the cut: {}",
                            r.as_str(),
                            secs(bound),
                            self.problems().join("; ")
                        ));
                    }
                }
                std::thread::sleep(hold);
                self.link(&host, true);
                healed = Instant::now();
            }
            Kind::AgentKill | Kind::AgentGone => {
                let host = self.random_host();
                let r = if kind == Kind::AgentGone {
                    self.random_response()
                } else {
                    self.response
                };
                self.set_response(r);
                let victims = self.ha_on(&host);
                let away = if kind == Kind::AgentKill {
                    Duration::from_millis(self.rng.random_range(2000..=10000))
                } else {
                    AGENT_GRACE + Duration::from_secs(5)
                };
                let moves = kind == Kind::AgentGone
                    && r != IsolationResponse::KeepRunning
                    && !victims.is_empty();
                let bound = if r == IsolationResponse::Shutdown {
                    FAILOVER_BOUND + SHUTDOWN_WAIT
                } else {
                    FAILOVER_BOUND
                };
                still = !moves;
                f.what = format!(
                    "{host}'s agent killed, back after {}, {} ({} HA VMs)",
                    secs(away),
                    r.as_str(),
                    victims.len()
                );
                println!("fault #{n} {}: {}", kind.name(), f.what);
                let t0 = Instant::now();
                self.lab()
                    .kill_agent(&host, Signal::SIGKILL)
                    .expect("kill agent");
                if moves {
                    let h = host.clone();
                    if self
                        .wait(away + bound, |d| d.run_elsewhere(&victims, &h))
                        .is_some()
                    {
                        f.failover = Some(t0.elapsed());
                    } else {
                        self.violation(format!(
                            "{host}'s agent gone past its grace with {}: its HA VMs not \
                             running elsewhere {} later: {}",
                            r.as_str(),
                            secs(away + bound),
                            self.problems().join("; ")
                        ));
                    }
                }
                std::thread::sleep(away.saturating_sub(t0.elapsed()));
                self.lab
                    .lab_mut()
                    .restart_agent(&host)
                    .expect("restart agent");
                healed = Instant::now();
            }
            Kind::ConsoleKill => {
                let down = Duration::from_millis(self.rng.random_range(1000..=5000));
                f.what = format!("console killed, back after {}", secs(down));
                println!("fault #{n} {}: {}", kind.name(), f.what);
                still = true;
                self.lab()
                    .kill_console(Signal::SIGKILL)
                    .expect("kill console");
                std::thread::sleep(down);
                self.lab
                    .lab_mut()
                    .restart_console()
                    .expect("restart console");
                healed = Instant::now();
            }
            Kind::QemuKill => {
                let vm = self.vms.choose(&mut self.rng).expect("VMs").clone();
                let pids = before.pids.get(&vm.name).cloned().unwrap_or_default();
                stops_plain = !vm.ha;
                f.what = format!(
                    "{}'s QEMU killed ({}, pid {pids:?})",
                    vm.name,
                    if vm.ha { "HA" } else { "no HA" }
                );
                println!("fault #{n} {}: {}", kind.name(), f.what);
                let t0 = Instant::now();
                for pid in &pids {
                    let _ = vinfra_lab::process::signal(*pid, Signal::SIGKILL);
                }
                // The signal is sent, not yet taken: until the QEMU has ended, a scan still finds
                // it, and the VM without HA would look running (and never be started again).
                for pid in &pids {
                    vinfra_lab::process::wait_gone(*pid, Duration::from_secs(10));
                }
                if vm.ha {
                    let home = before.hosts.get(&vm.name).cloned().unwrap_or_default();
                    let old = pids.clone();
                    let back = self.wait(FAILOVER_BOUND, |d| {
                        let q = &placements(&d.vms, &d.dirs)[&vm.name];
                        q.len() == 1 && q[0].1 == home && !old.contains(&q[0].0)
                    });
                    f.failover = back.map(|_| t0.elapsed());
                }
                healed = t0;
            }
        }
        let settling = Instant::now();
        let settled = self.settle(stops_plain);
        if let Ok(d) = settled {
            f.recovered = d.map(|q| settling.duration_since(healed) + q);
        }
        let (moved, restarted) = self.changes(&before);
        f.moved = moved.clone();
        if still && (!moved.is_empty() || !restarted.is_empty()) {
            self.violation(format!(
                "{} ({}) must leave every VM where it was: moved {moved:?}, QEMUs changed \
                 {restarted:?}",
                kind.name(),
                f.what
            ));
        }
        if !stops_plain {
            let now = self.snapshot().pids.get(PLAIN).cloned().unwrap_or_default();
            if now != plain_before {
                self.violation(format!(
                    "{PLAIN} (no HA) lost its QEMU to {} ({}): {plain_before:?} -> {now:?}",
                    kind.name(),
                    f.what
                ));
            }
        }
        println!(
            "  #{n} {}: failover {}, settled {} after the heal{}",
            kind.name(),
            opt_secs(f.failover),
            opt_secs(f.recovered),
            if f.moved.is_empty() {
                String::new()
            } else {
                format!(", moved {}", f.moved.join(" "))
            }
        );
        self.faults.push(f);
        settled.map(|_| ())
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates a 128-MiB guest VM on `host`; the VM's id.
fn create(lab: &Lab, name: &str, host: &str, ha: Option<HaPriority>) -> String {
    let mut req = Lab::guest_vm_request(name, MEMORY_MIB, Some(host));
    if let Some(p) = ha {
        req.spec.ha.enabled = true;
        req.spec.ha.priority = p;
    }
    let api = lab.api().expect("API");
    let v = api
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    v.id.to_string()
}

/// Brings up the lab (`it-<tag>`), creates the VMs and runs `config.faults` faults. Panics only
/// when the lab or its VMs cannot be set up; every broken invariant is in the outcome.
pub fn run(tag: &str, config: &Config) -> Outcome {
    let t = Instant::now();
    println!(
        "chaos: seed {} (VINFRA_CHAOS_SEED={} replays this fault sequence), {} faults",
        config.seed, config.seed, config.faults
    );
    let load0 = loadavg();
    let lab = start_lab_with(tag, HOSTS, |_| {});
    let api = lab.api().expect("API");
    api.create_rule(&PlacementRule {
        name: "pair-apart".into(),
        strength: RuleStrength::Must,
        kind: RuleKind::AntiAffinity,
        vms: vec![PAIR.0.into(), PAIR.1.into()],
        hosts: Vec::new(),
    })
    .expect("create the must-anti-affinity rule");
    let mut vms = Vec::new();
    for (name, host, ha) in [
        (PAIR.0, "h1", Some(HaPriority::Highest)),
        (PAIR.1, "h2", Some(HaPriority::Medium)),
        ("ha-c", "h3", Some(HaPriority::Low)),
        ("ha-d", "h1", Some(HaPriority::Medium)),
        (PLAIN, "h2", None),
    ] {
        let id = create(&lab, name, host, ha);
        vms.push(Vm {
            name: name.into(),
            id,
            ha: ha.is_some(),
            home: host.into(),
        });
    }
    let dirs: Vec<(String, String)> = lab
        .host_names()
        .into_iter()
        .map(|h| {
            let d = format!("{}/", lab.host_data_dir(&h).expect("host").display());
            (h, d)
        })
        .collect();
    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let checker = spawn_checker(shared.clone(), start, vms.clone(), dirs.clone());
    let mut d = Driver {
        lab,
        rng: StdRng::seed_from_u64(config.seed),
        vms,
        dirs,
        shared: shared.clone(),
        start,
        response: IsolationResponse::KeepRunning,
        faults: Vec::new(),
    };
    let mut aborted = false;
    match d.settle(false) {
        Ok(Some(took)) => println!("chaos: every VM runs ({} after the creates)", secs(took)),
        _ => aborted = true,
    }
    let mut deck: Vec<Kind> = Vec::new();
    for n in 1..=config.faults {
        if aborted {
            break;
        }
        if deck.is_empty() {
            deck = Kind::ALL.to_vec();
            deck.shuffle(&mut d.rng);
        }
        let kind = deck.pop().expect("a kind");
        if d.fault(n, kind).is_err() {
            aborted = true;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let _ = checker.join();
    let events = d
        .api()
        .and_then(|a| a.events().ok())
        .map(|e| {
            e.into_iter()
                .map(|e| format!("{} {} {}: {}", e.at, e.kind, e.object, e.message))
                .collect()
        })
        .unwrap_or_default();
    let violations = shared.violations.lock().unwrap().clone();
    let outcome = Outcome {
        seed: config.seed,
        faults: d.faults.clone(),
        violations,
        polls: shared.polls.load(Ordering::Relaxed) as u64,
        events,
        load: (load0, loadavg()),
        took: t.elapsed(),
        aborted,
    };
    d.lab.down();
    outcome
}

/// p50, p95 and max of `v` (not empty).
fn percentiles(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    (s[n / 2], s[(n * 95).div_ceil(100) - 1], s[n - 1])
}

impl Outcome {
    /// True when no invariant broke and every fault ran.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && !self.aborted
    }

    /// The report: seed, every fault, per kind the times, every violation, and with `events`
    /// the console's events; ends with the `RESULT ha chaos <violations>/<faults> PASS|FAIL`
    /// line.
    pub fn report(&self, events: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "chaos: seed {}, {} faults in {}, {} checker polls at 100 ms, load {} -> {}{}",
            self.seed,
            self.faults.len(),
            secs(self.took),
            self.polls,
            self.load.0,
            self.load.1,
            if self.aborted { ", STOPPED EARLY" } else { "" }
        );
        let _ = writeln!(s, "history (replay: VINFRA_CHAOS_SEED={}):", self.seed);
        for f in &self.faults {
            let _ = writeln!(
                s,
                "  #{:<3} {:>7} {:<16} {} | failover {}, settled {} after the heal{}",
                f.n,
                secs(f.at),
                f.kind.name(),
                f.what,
                opt_secs(f.failover),
                opt_secs(f.recovered),
                if f.moved.is_empty() {
                    String::new()
                } else {
                    format!(", moved {}", f.moved.join(" "))
                }
            );
        }
        let _ = writeln!(
            s,
            "per kind (n; failover p50/p95/max; settled after the heal p50/p95/max):"
        );
        for kind in Kind::ALL {
            let of: Vec<&Fault> = self.faults.iter().filter(|f| f.kind == kind).collect();
            if of.is_empty() {
                continue;
            }
            let stat = |v: Vec<Duration>| {
                if v.is_empty() {
                    return "-".to_string();
                }
                let (a, b, c) = percentiles(&v);
                format!(
                    "{:.1}/{:.1}/{:.1} s",
                    a.as_secs_f64(),
                    b.as_secs_f64(),
                    c.as_secs_f64()
                )
            };
            let _ = writeln!(
                s,
                "  {:<16} {:>3}; failover {:>16}; settled {:>16}",
                kind.name(),
                of.len(),
                stat(of.iter().filter_map(|f| f.failover).collect()),
                stat(of.iter().filter_map(|f| f.recovered).collect())
            );
        }
        if !self.violations.is_empty() {
            let _ = writeln!(s, "violations:");
            for v in &self.violations {
                let f = self
                    .faults
                    .iter()
                    .find(|f| f.n == v.fault)
                    .map_or("before the first fault".to_string(), |f| {
                        format!("#{} {} {}", f.n, f.kind.name(), f.what)
                    });
                let _ = writeln!(s, "  {} during {f}: {}", secs(v.at), v.what);
            }
        }
        if events {
            let _ = writeln!(s, "console events ({}):", self.events.len());
            for e in &self.events {
                let _ = writeln!(s, "  {e}");
            }
        }
        let _ = write!(
            s,
            "RESULT ha chaos {}/{} {}",
            self.violations.len(),
            self.faults.len(),
            if self.passed() { "PASS" } else { "FAIL" }
        );
        s
    }
}
