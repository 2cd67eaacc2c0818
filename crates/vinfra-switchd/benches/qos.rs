//! Rate-limiter accuracy: `vinfra switch`'s QoS against the kernel's `tc tbf`, in the same run.
//!
//! For each rate (10, 100 and 1,000 Mbit/s; burst as the CLI gives by default, max(rate/8 ×
//! 10 ms, 16 KiB)), iperf3 TCP between two network-namespace endpoints:
//! - **vinfra egress**: through `vinfra switch`, two tap host ports (offloads on) whose
//!   interfaces are moved into the endpoints; the sender's port has an egress limit (the switch
//!   reads it only while its token bucket is out of debt).
//! - **vinfra ingress**: the same, the receiver's port with an ingress limit (frames queued in
//!   the switch and sent as the bucket allows).
//! - **tc tbf**: a veth pair between the endpoints, `tc qdisc add dev VETH root tbf rate R
//!   burst B limit L` on the sender's side (L = the switch's queue for that burst, 2 ×
//!   max(B, 64 KiB) + 64 KiB).
//!
//! What differs: the vinfra paths cross a userspace switch and two taps (a tap does not push
//! back on its sender: TCP sees drops at the tap's queue when the switch holds a port), tbf is
//! a qdisc on the sender's own veth (TCP sees qdisc backpressure, TSQ). Both count Ethernet
//! frame bytes, but tbf counts a GSO packet as its segments with their headers while the switch
//! counts it whole, as it reads it: at the same rate the switch lets a few percent more TCP
//! payload through. Achieved is iperf3's received goodput (TCP payload) over the run, the first
//! second left out.
//!
//! Prints `RESULT qos-accuracy-<rate> <vinfra achieved/configured, the worse direction> (…)
//! PASS|FAIL`: PASS when both vinfra directions are within ±10 % of the configured rate.
//!
//!     cargo bench -p vinfra-switchd --bench qos [-- [10M] [100M] [1G] [SECONDS]]
//!
//! `free [ROUNDS]` measures instead what QoS costs ports that have none: TCP (Gbit/s) and
//! 64-byte UDP (iperf3 `-l 18`, received kpps) through the switch without limits, ROUNDS
//! rounds (5), medians; with `VINFRA_SWITCHD_BASELINE=/path/to/vinfra-switchd` (a build
//! without QoS) the same through it, rounds interleaved, and `RESULT qos-free-path` with the
//! ratios (PASS when neither is below 0.95).
//!
//! Root, iperf3 and tc; without them it prints a `SKIPPED:` line (and fails under CI).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use common::*;
use vinfra_switch_control::{QosSpec, RateSpec, Request, SwitchClient};

const RATES: [(u64, &str); 3] = [
    (10_000_000, "10M"),
    (100_000_000, "100M"),
    (1_000_000_000, "1G"),
];

/// The CLI's default burst for a rate: 10 ms of it, at least 16 KiB.
fn burst(rate: u64) -> u64 {
    (rate / 8 / 100).max(16 << 10)
}

/// iperf3 TCP goodput from `a` to `b` (at `ip`) over `secs` seconds, the first left out.
fn tcp(a: &Netns, b: &Netns, ip: Ipv4Addr, secs: u32) -> f64 {
    iperf(a, b, ip, 5201, &["-t", &secs.to_string(), "-O", "1"])
}

/// Two endpoints through `vinfra switch` (tap host ports 1 and 2). Fields drop in order.
struct Switched {
    client: SwitchClient,
    _daemon: Daemon,
    a: Netns,
    b: Netns,
    _host: Netns,
    _dir: tempfile::TempDir,
}

fn switched() -> Switched {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Netns::new("qh");
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let (ta, tb) = (name("t"), name("t"));
    client
        .apply(&[
            overlay(1, 400),
            tap_port(1, 1, &ta, 1500),
            tap_port(2, 1, &tb, 1500),
        ])
        .expect("configure the switch");
    let (a, b) = (Netns::new("qa"), Netns::new("qb"));
    attach_tap(&host, &ta, &a, "10.98.0.1/24", 1500);
    attach_tap(&host, &tb, &b, "10.98.0.2/24", 1500);
    assert!(a.ping_until("10.98.0.2", 10), "no ping through the switch");
    Switched {
        client,
        _daemon: daemon,
        a,
        b,
        _host: host,
        _dir: dir,
    }
}

/// Two endpoints on a veth pair; returns them and the sender's device.
fn veth_pair() -> (Netns, Netns, String) {
    let (a, b) = (Netns::new("ka"), Netns::new("kb"));
    let (va, vb) = (name("v"), name("v"));
    sh(&[
        "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns",
        &b.name,
    ]);
    a.exec(&["ip", "addr", "add", "10.99.0.1/24", "dev", &va]);
    b.exec(&["ip", "addr", "add", "10.99.0.2/24", "dev", &vb]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    b.exec(&["ip", "link", "set", &vb, "up"]);
    assert!(a.ping_until("10.99.0.2", 10), "no ping over the veth");
    (a, b, va)
}

fn set_qos(client: &mut SwitchClient, port: u32, qos: Option<QosSpec>) {
    client
        .apply(&[Request::SetPortQos { port, qos }])
        .expect("set_port_qos");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// 64-byte frames (18 bytes of UDP payload) per second received, from `a` to `b`.
fn udp64(sw: &Switched, secs: u32) -> f64 {
    let _server = IperfServer::start(&sw.b, 5201);
    let args = ["-u", "-l", "18", "-b", "0", "-t", &secs.to_string()];
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &sw.a.name,
            "iperf3",
            "-J",
            "-c",
            "10.98.0.2",
        ])
        .args(args)
        .output()
        .expect("iperf3 -c");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let r = &json["end"]["sum_received"];
    let packets = r["packets"].as_f64().unwrap_or(0.0) - r["lost_packets"].as_f64().unwrap_or(0.0);
    packets / r["seconds"].as_f64().unwrap_or(f64::NAN)
}

/// Ports without QoS: this build against `VINFRA_SWITCHD_BASELINE`, if given.
fn free_path(rounds: usize) {
    let mut beds = vec![("this build", switched())];
    if let Some(baseline) = std::env::var_os("VINFRA_SWITCHD_BASELINE") {
        // Daemon::start runs VINFRA_SWITCHD when set.
        std::env::set_var("VINFRA_SWITCHD", &baseline);
        beds.push(("baseline", switched()));
        std::env::remove_var("VINFRA_SWITCHD");
    }
    let mut samples = vec![(Vec::new(), Vec::new()); beds.len()];
    for round in 1..=rounds {
        for ((label, sw), (tcps, udps)) in beds.iter().zip(samples.iter_mut()) {
            let t = tcp(&sw.a, &sw.b, Ipv4Addr::new(10, 98, 0, 2), 3);
            let u = udp64(sw, 3);
            println!(
                "round {round} {label:<10} TCP {:.2} Gbit/s, UDP64 {:.0} kpps",
                t / 1e9,
                u / 1e3
            );
            tcps.push(t);
            udps.push(u);
        }
    }
    let medians: Vec<(f64, f64)> = samples
        .into_iter()
        .map(|(t, u)| (median(t), median(u)))
        .collect();
    for ((label, _), (t, u)) in beds.iter().zip(&medians) {
        println!(
            "median {label:<10} TCP {:.2} Gbit/s, UDP64 {:.0} kpps",
            t / 1e9,
            u / 1e3
        );
    }
    if let [(t, u), (bt, bu)] = medians[..] {
        let (rt, ru) = (t / bt, u / bu);
        let verdict = if rt >= 0.95 && ru >= 0.95 {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "RESULT qos-free-path {:.3} (this build/baseline, the lower of TCP {rt:.3} and UDP64 {ru:.3}) {verdict}",
            rt.min(ru)
        );
    }
}

fn main() {
    if !common::needs()
        .program("iperf3")
        .program("tc")
        .named("qos bench")
        .met()
    {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = args.iter().find_map(|a| a.parse::<u32>().ok());
    if args.iter().any(|a| a == "free") {
        free_path(number.unwrap_or(5).max(1) as usize);
        return;
    }
    let secs = number.unwrap_or(5);
    let mut sw = switched();
    let (ka, kb, veth) = veth_pair();
    let free = tcp(&sw.a, &sw.b, Ipv4Addr::new(10, 98, 0, 2), 2);
    println!("vinfra without a limit: {:.0} Mbit/s", free / 1e6);
    println!(
        "{:<6} {:>10} {:>12} {:>14} {:>12} {:>10} {:>10} {:>10}",
        "rate", "burst B", "vinfra egr", "vinfra ingr", "tc tbf", "egr/cfg", "ingr/cfg", "tbf/cfg"
    );
    let mut results = Vec::new();
    // Rates named on the command line (10M, 100M, 1G), or all.
    let named: Vec<&str> = RATES
        .iter()
        .map(|&(_, l)| l)
        .filter(|l| args.iter().any(|a| a == l))
        .collect();
    for (rate, label) in RATES {
        if !named.is_empty() && !named.contains(&label) {
            continue;
        }
        let b = burst(rate);
        let spec = RateSpec {
            bits_per_sec: rate,
            burst_bytes: b,
        };
        set_qos(
            &mut sw.client,
            1,
            Some(QosSpec {
                egress: Some(spec),
                ..QosSpec::default()
            }),
        );
        let egress = tcp(&sw.a, &sw.b, Ipv4Addr::new(10, 98, 0, 2), secs);
        set_qos(&mut sw.client, 1, None);
        set_qos(
            &mut sw.client,
            2,
            Some(QosSpec {
                ingress: Some(spec),
                ..QosSpec::default()
            }),
        );
        let ingress = tcp(&sw.a, &sw.b, Ipv4Addr::new(10, 98, 0, 2), secs);
        set_qos(&mut sw.client, 2, None);
        let limit = 2 * b.max(64 << 10) + (64 << 10);
        ka.exec(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            &veth,
            "root",
            "tbf",
            "rate",
            &format!("{rate}bit"),
            "burst",
            &b.to_string(),
            "limit",
            &limit.to_string(),
        ]);
        let tbf = tcp(&ka, &kb, Ipv4Addr::new(10, 99, 0, 2), secs);
        ka.exec(&["tc", "qdisc", "del", "dev", &veth, "root"]);
        let r = |v: f64| v / rate as f64;
        println!(
            "{label:<6} {b:>10} {:>12.2} {:>14.2} {:>12.2} {:>10.3} {:>10.3} {:>10.3}",
            egress / 1e6,
            ingress / 1e6,
            tbf / 1e6,
            r(egress),
            r(ingress),
            r(tbf)
        );
        results.push((label, r(egress), r(ingress), r(tbf)));
    }
    println!("(Mbit/s of TCP goodput received; burst in bytes)");
    for (label, egress, ingress, tbf) in results {
        let worse = if (egress - 1.0).abs() >= (ingress - 1.0).abs() {
            egress
        } else {
            ingress
        };
        let error = |v: f64| (v - 1.0).abs();
        let verdict = if error(egress) <= 0.10 && error(ingress) <= 0.10 {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "RESULT qos-accuracy-{label} {worse:.3} (vinfra achieved/configured, worse direction; tc tbf {tbf:.3}; |error| vinfra/tbf {:.2}) {verdict}",
            error(worse) / error(tbf).max(1e-3)
        );
    }
}
