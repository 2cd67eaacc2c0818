//! HA failover time in the lab: a host with HA VMs is killed outright (every process in its
//! namespace: agent, switch, guard, QEMUs; the console is not told), again and again, and each
//! VM's way back is timed from the kill:
//! - *detected*: the console's HA state of the host turns `failed` (its lease seen unchanged for
//!   `lease_timeout + margin` after the host was lost);
//! - *moved*: the VM's record names another host (the restart planned);
//! - *QEMU running*: a QEMU of the VM runs on another host — the failover time, target p95 ≤ 10 s;
//! - *guest booted*: the guest printed its boot line there (reported apart: guest boot is not
//!   part of the failover).
//!
//! After each kill the host is started again (switch, guard, agent) and the next kill takes the
//! host the first HA VM runs on. Every kill is listed, failures included. Prints
//! `RESULT ha failover p95 … PASS|FAIL`.
//!
//! Needs root and QEMU. Builds a 3-host lab `bench-f<pid>`.
//!
//! `cargo bench -p vinfra --bench failover [-- --kills N]` (default 20)

mod common;

use std::time::{Duration, Instant};

use common::ms;
use vinfra_lab::Lab;
use vinfra_types::{HostStatus, PowerState};

const MEMORY_MIB: u64 = 128;
const TARGET_P95: Duration = Duration::from_secs(10);
const HA_VMS: [&str; 2] = ["ha-a", "ha-b"];

/// One VM's way back after one kill.
#[derive(Debug, Default, Clone)]
struct Way {
    vm: String,
    from: String,
    to: String,
    detected: Option<Duration>,
    moved: Option<Duration>,
    running: Option<Duration>,
    booted: Option<Duration>,
}

fn kills() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--kills")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            eprintln!("timed out: {what}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills `victim` and times the way back of each HA VM it ran.
fn kill_and_time(lab: &Lab, victim: &str, ids: &[(String, String)]) -> Vec<Way> {
    let api = lab.api().expect("API client");
    let mut ways: Vec<Way> = ids
        .iter()
        .filter(|(name, _)| api.vm(name).map(|v| v.host == victim).unwrap_or(false))
        .map(|(name, _)| Way {
            vm: name.clone(),
            from: victim.to_string(),
            ..Way::default()
        })
        .collect();
    let t0 = Instant::now();
    lab.fence(victim).expect("kill every process of the host");
    let deadline = t0 + Duration::from_secs(90);
    while Instant::now() < deadline && ways.iter().any(|w| w.booted.is_none()) {
        let now = t0.elapsed();
        let failed = api
            .ha()
            .ok()
            .and_then(|s| s.hosts.into_iter().find(|h| h.name == victim))
            .is_some_and(|h| h.state == "failed" || h.state == "fenced");
        for w in ways.iter_mut() {
            let id = &ids.iter().find(|(n, _)| *n == w.vm).expect("id").1;
            if failed && w.detected.is_none() {
                w.detected = Some(now);
            }
            if w.moved.is_none() {
                if let Ok(v) = api.vm(&w.vm) {
                    if v.host != victim {
                        w.moved = Some(now);
                        w.to = v.host;
                    }
                }
            }
            if w.running.is_none()
                && !w.to.is_empty()
                && !lab.qemu_pids_on(&w.to, id).unwrap_or_default().is_empty()
            {
                w.running = Some(now);
            }
            if w.running.is_some() && w.booted.is_none() {
                let serial = lab
                    .vm_dir(&w.to, id)
                    .map(|d| d.join("run/serial.log"))
                    .ok()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                if serial.contains("VINFRA-GUEST BOOTED") {
                    w.booted = Some(now);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ways
}

fn main() {
    if !common::can_run_labs("failover") {
        return;
    }
    let n = kills();
    let mut lab = common::start_lab("f", 3);
    let api = lab.api().expect("API client");
    let mut ids = Vec::new();
    for name in HA_VMS {
        let mut req = Lab::guest_vm_request(name, MEMORY_MIB, Some("h1"));
        req.spec.ha.enabled = true;
        let v = api
            .create_vm(&req)
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        ids.push((name.to_string(), v.id.to_string()));
    }
    for (name, _) in &ids {
        wait(&format!("{name} running"), Duration::from_secs(60), || {
            (api.vm(name).ok()?.state == PowerState::Running).then_some(())
        })
        .expect("the HA VMs run");
    }
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut all: Vec<Way> = Vec::new();
    for k in 1..=n {
        let victim = api.vm(HA_VMS[0]).expect("VM").host;
        let ways = kill_and_time(&lab, &victim, &ids);
        for w in &ways {
            println!(
                "kill {k:2} {}: {} -> {}: detected {}, moved {}, QEMU running {}, booted {}",
                w.vm,
                w.from,
                if w.to.is_empty() { "-" } else { &w.to },
                fmt(w.detected),
                fmt(w.moved),
                fmt(w.running),
                fmt(w.booted)
            );
        }
        all.extend(ways);
        // The host comes back, and everything runs again before the next kill.
        lab.restart_switch(&victim).expect("switch");
        lab.restart_guard(&victim).expect("guard");
        lab.restart_agent(&victim).expect("agent");
        wait(&format!("{victim} back"), Duration::from_secs(60), || {
            (api.host(&victim).ok()?.status == HostStatus::Connected).then_some(())
        });
        for (name, _) in &ids {
            wait(&format!("{name} running"), Duration::from_secs(90), || {
                (api.vm(name).ok()?.state == PowerState::Running).then_some(())
            });
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let load1 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let failed: Vec<&Way> = all.iter().filter(|w| w.running.is_none()).collect();
    let times =
        |f: fn(&Way) -> Option<Duration>| -> Vec<Duration> { all.iter().filter_map(f).collect() };
    println!();
    println!(
        "HA failover, {n} host kills, {} VM restarts ({} failed), 3 hosts, 128 MiB guests (TCG), \
         load {} -> {}",
        all.len(),
        failed.len(),
        load0
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load1
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (what, v) in [
        ("detected (host failed)", times(|w| w.detected)),
        ("moved (restart planned)", times(|w| w.moved)),
        ("QEMU running elsewhere", times(|w| w.running)),
        ("guest booted (apart)", times(|w| w.booted)),
    ] {
        if v.is_empty() {
            println!("  {what:<26} none");
            continue;
        }
        let (p50, p95, max) = percentiles(&v);
        println!(
            "  {what:<26} p50 {:7.0} ms  p95 {:7.0} ms  max {:7.0} ms  ({} samples)",
            ms(p50),
            ms(p95),
            ms(max),
            v.len()
        );
    }
    let running = times(|w| w.running);
    let p95 = if failed.is_empty() && !running.is_empty() {
        Some(percentiles(&running).1)
    } else {
        None
    };
    match p95 {
        Some(p) => println!(
            "RESULT ha failover p95 {:.0} ms target <= {} ms: {}",
            ms(p),
            TARGET_P95.as_millis(),
            if p <= TARGET_P95 { "PASS" } else { "FAIL" }
        ),
        None => println!(
            "RESULT ha failover: {} of {} restarts did not run within 90 s: FAIL",
            failed.len(),
            all.len()
        ),
    }
    drop(lab);
}

/// p50, p95 and max of `samples` (not empty).
fn percentiles(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len();
    (s[n / 2], s[(n * 95).div_ceil(100) - 1], s[n - 1])
}

fn fmt(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}
