//! Helpers of the HA lab tests: a checker that polls every QEMU of the machine every 100 ms and
//! keeps what it saw (a VM with two QEMUs, two VMs that must stay apart on one host, when each
//! QEMU was first and last seen and on which host), HA VMs created and waited for, the host a VM
//! runs on, the events as text, commands in a host's namespace.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vinfra_lab::Lab;
use vinfra_types::PowerState;

use super::{api, qemus_with, vm, wait_for};

/// One QEMU process of a VM as the checker saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// Its pid.
    pub pid: u32,
    /// The lab host it runs for (its command line names that host's data directory), `?` if
    /// none.
    pub host: String,
    /// The first poll that saw it.
    pub first: Instant,
    /// The last poll that saw it.
    pub last: Instant,
    /// When it started, seconds since boot (`/proc/<pid>/stat`, 10-ms ticks), read when first
    /// seen.
    pub started_s: Option<f64>,
    /// When the checker first found it gone, seconds since boot (`/proc/uptime`): between full
    /// polls the checker looks at each live QEMU it knows every 5 ms, so this is at most a few
    /// ms after it ended (later under load, never earlier).
    pub gone_s: Option<f64>,
}

#[derive(Default)]
struct Seen {
    polls: u64,
    violations: Vec<String>,
    /// Per VM name, every QEMU seen, in the order first seen.
    sightings: BTreeMap<String, Vec<Sighting>>,
    /// Per VM name, the polls that found no QEMU of it.
    empty: BTreeMap<String, Vec<Instant>>,
}

/// What a [`Checker`] saw, once finished.
#[derive(Debug)]
pub struct Report {
    /// Polls made.
    pub polls: u64,
    /// Every violation: a VM with more than one QEMU, or two VMs that must stay apart on one
    /// host, with the poll's time since the checker started.
    pub violations: Vec<String>,
    sightings: BTreeMap<String, Vec<Sighting>>,
    empty: BTreeMap<String, Vec<Instant>>,
}

impl Report {
    /// The QEMUs of VM `name` seen, in the order first seen.
    pub fn copies(&self, name: &str) -> Vec<Sighting> {
        self.sightings.get(name).cloned().unwrap_or_default()
    }

    /// Asserts that VM `name` ran with QEMU `old` first and then with one other QEMU (on a host
    /// other than `old`'s), and that the old one was gone before the new one existed: a poll
    /// between the last sight of `old` and the first of the new found no QEMU at all, or (when
    /// the two came closer than one poll) the checker saw `old` gone in an earlier 10-ms tick
    /// of the boot clock than the one the new QEMU started in. Returns the new one and the gap
    /// the polls measured.
    pub fn assert_replaced(&self, name: &str, old: u32) -> (Sighting, Duration) {
        let copies = self.copies(name);
        let before = copies
            .iter()
            .find(|s| s.pid == old)
            .unwrap_or_else(|| panic!("{name}: QEMU {old} never seen: {copies:?}"));
        let after: Vec<&Sighting> = copies.iter().filter(|s| s.pid != old).collect();
        assert_eq!(after.len(), 1, "{name}: one new QEMU expected: {copies:?}");
        let new = after[0];
        assert_ne!(new.host, before.host, "{name}: restarted on its own host");
        assert!(
            before.last < new.first,
            "{name}: the new QEMU was seen before the old one was gone: {copies:?}"
        );
        let gap = self
            .empty
            .get(name)
            .into_iter()
            .flatten()
            .filter(|t| **t > before.last && **t < new.first)
            .count();
        // Both clocks count whole 10-ms ticks: an earlier tick proves the order, the same one
        // does not.
        let ticks_apart = match (before.gone_s, new.started_s) {
            (Some(gone), Some(started)) => ((started - gone) * 100.0).round() as i64,
            _ => 0,
        };
        assert!(
            gap > 0 || ticks_apart >= 1,
            "{name}: no poll between the old QEMU's last sight and the new one's first found \
             the VM without QEMU, and the old one was not seen gone before the new one \
             started: {copies:?}"
        );
        (new.clone(), new.first.duration_since(before.last))
    }
}

/// Polls every 100 ms the QEMUs of the VMs it watches: a VM must never have two, two VMs of a
/// pair given to [`Checker::apart`] must never run on one host. Keeps the violations, and when
/// and where each QEMU was seen.
pub struct Checker {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `(name, id)` of the VMs to watch, `(a, b)` names of the pairs to keep apart.
type Watched = (Vec<(String, String)>, Vec<(String, String)>);

impl Checker {
    /// Watches the VMs `ids` (`(name, id)`) of `lab`.
    pub fn start(lab: &Lab, ids: Vec<(String, String)>) -> Checker {
        Self::apart(lab, ids, Vec::new())
    }

    /// Watches the VMs `ids` (`(name, id)`) of `lab`, and that the two VMs of each pair of
    /// `pairs` (names) never run on one host.
    pub fn apart(lab: &Lab, ids: Vec<(String, String)>, pairs: Vec<(String, String)>) -> Checker {
        let hosts: Vec<(String, String)> = lab
            .state()
            .hosts
            .iter()
            .map(|h| (h.name.clone(), format!("{}/", h.data_dir.display())))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s, v) = (stop.clone(), seen.clone());
        let watched: Watched = (ids, pairs);
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let (ids, pairs) = watched;
            while !s.load(Ordering::Relaxed) {
                let now = Instant::now();
                let qemus = all_qemus();
                let mut seen = v.lock().unwrap();
                let mut on: BTreeMap<&str, Vec<String>> = BTreeMap::new();
                for (name, id) in &ids {
                    let mine: Vec<&(u32, String)> =
                        qemus.iter().filter(|(_, c)| c.contains(id)).collect();
                    if mine.len() > 1 {
                        let pids: Vec<u32> = mine.iter().map(|(p, _)| *p).collect();
                        seen.violations.push(format!(
                            "{:.1} s: {name} has {} QEMUs: {pids:?}",
                            now.duration_since(started).as_secs_f64(),
                            pids.len()
                        ));
                    }
                    if mine.is_empty() {
                        seen.empty.entry(name.clone()).or_default().push(now);
                    }
                    for (pid, cmdline) in mine {
                        let host = hosts
                            .iter()
                            .find(|(_, dir)| cmdline.contains(dir.as_str()))
                            .map_or_else(|| "?".to_string(), |(h, _)| h.clone());
                        on.entry(name.as_str()).or_default().push(host.clone());
                        let list = seen.sightings.entry(name.clone()).or_default();
                        match list.iter_mut().find(|x| x.pid == *pid) {
                            Some(x) => x.last = now,
                            None => list.push(Sighting {
                                pid: *pid,
                                host,
                                first: now,
                                last: now,
                                started_s: started_s(*pid),
                                gone_s: None,
                            }),
                        }
                    }
                }
                for (a, b) in &pairs {
                    let (ha, hb) = (
                        on.get(a.as_str()).cloned().unwrap_or_default(),
                        on.get(b.as_str()).cloned().unwrap_or_default(),
                    );
                    if let Some(h) = ha.iter().find(|h| hb.contains(h)) {
                        seen.violations.push(format!(
                            "{:.1} s: {a} and {b} both run on {h}",
                            now.duration_since(started).as_secs_f64()
                        ));
                    }
                }
                seen.polls += 1;
                // Until the next full poll, every 5 ms: which of the QEMUs seen alive in this
                // one have ended, and when.
                let mut live: Vec<u32> = seen
                    .sightings
                    .values()
                    .flatten()
                    .filter(|x| x.last == now && x.gone_s.is_none())
                    .map(|x| x.pid)
                    .collect();
                drop(seen);
                let next = now + Duration::from_millis(100);
                while Instant::now() < next && !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    let ended: Vec<u32> = live
                        .iter()
                        .copied()
                        .filter(|p| !vinfra_lab::process::alive(*p))
                        .collect();
                    if ended.is_empty() {
                        continue;
                    }
                    let at = uptime_s();
                    live.retain(|p| !ended.contains(p));
                    let mut seen = v.lock().unwrap();
                    for x in seen.sightings.values_mut().flatten() {
                        if ended.contains(&x.pid) && x.gone_s.is_none() {
                            x.gone_s = Some(at);
                        }
                    }
                }
            }
        });
        // The first full poll before returning: a QEMU killed right after this returns must
        // have been seen alive (a loaded machine may start the thread late).
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().polls == 0 {
            assert!(Instant::now() < deadline, "the checker never polled");
            std::thread::sleep(Duration::from_millis(5));
        }
        Checker {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops polling; what was seen.
    pub fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        Report {
            polls: seen.polls,
            violations: seen.violations,
            sightings: seen.sightings,
            empty: seen.empty,
        }
    }

    /// Asserts, without stopping, that nothing was violated so far.
    pub fn assert_clean(&self, when: &str) {
        let seen = self.seen.lock().unwrap();
        assert!(seen.violations.is_empty(), "{when}: {:?}", seen.violations);
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every live QEMU process of the machine: `(pid, command line)`, in one pass over `/proc`.
fn all_qemus() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = vinfra_lab::process::cmdline(pid)?;
            let argv0 = cmdline.split(' ').next().unwrap_or_default();
            let base = argv0.rsplit('/').next().unwrap_or_default();
            (base.starts_with("qemu") && vinfra_lab::process::alive(pid)).then_some((pid, cmdline))
        })
        .collect()
}

/// Creates a 128-MiB guest VM on `host`, HA on or off; waits until it runs with one QEMU;
/// its id.
pub fn create(lab: &Lab, name: &str, host: &str, ha: bool) -> String {
    create_sized(lab, name, host, ha, 128)
}

/// Creates a `memory_mib` guest VM on `host`, HA on or off; waits until it runs with one
/// QEMU; its id.
pub fn create_sized(lab: &Lab, name: &str, host: &str, ha: bool, memory_mib: u64) -> String {
    let mut req = Lab::guest_vm_request(name, memory_mib, Some(host));
    req.spec.ha.enabled = ha;
    let v = api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    let id = v.id.to_string();
    wait_running(lab, name, &id);
    id
}

/// Waits until VM `name` (id `id`) runs with one QEMU; that QEMU's pid.
pub fn wait_running(lab: &Lab, name: &str, id: &str) -> u32 {
    wait_for(
        &format!("{name} to run with one QEMU"),
        Duration::from_secs(60),
        || {
            let pids = qemus_with(id);
            (vm(lab, name).state == PowerState::Running && pids.len() == 1).then(|| pids[0])
        },
    )
}

/// The host whose QEMU runs VM `id`, once it runs on a host other than `not` (within `timeout`).
pub fn runs_elsewhere(lab: &Lab, id: &str, not: &str, timeout: Duration) -> String {
    wait_for(
        &format!("VM {id} to run on a host other than {not}"),
        timeout,
        || {
            lab.host_names()
                .into_iter()
                .find(|h| h != not && !lab.qemu_pids_on(h, id).unwrap_or_default().is_empty())
        },
    )
}

/// Waits until the API shows VM `name` running on `host`.
pub fn wait_shown_on(lab: &Lab, name: &str, host: &str) {
    wait_for(
        &format!("{name} shown running on {host}"),
        Duration::from_secs(60),
        || {
            let v = vm(lab, name);
            (v.host == host && v.state == PowerState::Running).then_some(())
        },
    )
}

/// Every event, one a line: `kind object: message`.
pub fn events_text(lab: &Lab) -> String {
    api(lab)
        .events()
        .map(|e| {
            e.iter()
                .map(|e| format!("{} {}: {}", e.kind, e.object, e.message))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The messages of the events about `object`, oldest first.
pub fn messages_about(lab: &Lab, object: &str) -> Vec<String> {
    super::events_about(lab, object)
        .into_iter()
        .map(|e| e.message)
        .collect()
}

/// The HA state of `host` as `GET /api/v1/ha` shows it (`connected`, `isolated`, …).
pub fn ha_state(lab: &Lab, host: &str) -> String {
    api(lab)
        .ha()
        .unwrap_or_else(|e| panic!("GET /ha: {e}"))
        .hosts
        .into_iter()
        .find(|h| h.name == host)
        .map(|h| h.state)
        .unwrap_or_else(|| panic!("no host {host} in GET /ha"))
}

/// Runs `args` in the network namespace `ns`; panics when it fails.
pub fn netns_exec(ns: &str, args: &[&str]) {
    let st = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .status()
        .expect("ip netns exec");
    assert!(st.success(), "ip netns exec {ns} {args:?}");
}

/// Cuts (`up` false) or restores `host`'s link to the lab's underlay: its `eth0`, in its
/// namespace. The datastore, a directory of this machine, stays reachable.
pub fn set_link(lab: &Lab, host: &str, up: bool) {
    let ns = lab
        .state()
        .hosts
        .iter()
        .find(|h| h.name == host)
        .unwrap_or_else(|| panic!("no host {host}"))
        .namespace
        .clone();
    let state = if up { "up" } else { "down" };
    netns_exec(&ns, &["ip", "link", "set", "eth0", state]);
}

/// The status of `host`'s guard, asked on its control socket.
pub fn guard_status(lab: &Lab, host: &str) -> vinfra_guard::GuardStatus {
    let path = lab.guard_control_of(host).expect("host");
    let mut client = vinfra_guard::GuardClient::connect_within(&path, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{host}'s guard at {}: {e}", path.display()));
    client
        .set_timeout(Some(Duration::from_secs(5)))
        .expect("guard timeout");
    client
        .status()
        .unwrap_or_else(|e| panic!("{host}'s guard status: {e}"))
}

/// `host`'s lease as its guard last wrote it in the lab's datastore.
pub fn lease(lab: &Lab, host: &str) -> vinfra_ha::Lease {
    let path = vinfra_guard::lease_path(&lab.datastore(), host);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    vinfra_ha::Lease::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Seconds since boot now (`/proc/uptime`, 10 ms resolution).
pub fn uptime_s() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("/proc/uptime")
}

/// When process `pid` started, seconds since boot (field 22 of `/proc/<pid>/stat`, in ticks of
/// 1/100 s, the USER_HZ of Linux's ABI).
pub fn started_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the command: state is field 3, starttime field 22.
    let ticks: u64 = rest.split_whitespace().nth(22 - 3)?.parse().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The wish of `host`'s agent for its guard's isolation response, as its `ha.json` keeps it
/// (what the console last sent it), if it has one.
pub fn agent_isolation_response(lab: &Lab, host: &str) -> Option<String> {
    let path = lab.host_data_dir(host).expect("host").join("ha.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["isolation_response"].as_str().map(str::to_string)
}

/// Sets the cluster's isolation response to `response` with `vinfra ha set`; waits until every
/// host of `hosts` has it, and a pet more (its guard has it then).
pub fn set_isolation_response(lab: &Lab, response: &str, hosts: &[&str]) {
    let env = super::cli_env(lab);
    let out = super::vinfra(
        &["ha", "set", "--isolation-response", response],
        &super::refs(&env),
    );
    assert!(out.status.success(), "ha set: {out:?}");
    for h in hosts {
        wait_for(
            &format!("{h}'s agent to have the isolation response {response}"),
            Duration::from_secs(20),
            || (agent_isolation_response(lab, h).as_deref() == Some(response)).then_some(()),
        );
    }
    // The agent pets its guard every second with the settings it has.
    std::thread::sleep(Duration::from_millis(2500));
}
