//! Two network-namespace endpoints connected through `vinfra switch` (tap host ports) and
//! through a Linux bridge (veths), side by side: iperf3 TCP throughput and ping latency
//! p50/p99, with the switch/bridge ratio. Root only; needs `iperf3` and `ping`.
//!
//!     cargo bench -p vinfra-switchd --bench throughput [-- SECONDS]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

struct Pair {
    server: Netns,
    client: Netns,
    server_ip: &'static str,
}

fn iperf_gbits(pair: &Pair, seconds: u32) -> f64 {
    let mut server = Command::new("ip")
        .args(["netns", "exec", &pair.server.name, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    std::thread::sleep(Duration::from_millis(300));
    let out = pair.client.exec(&[
        "iperf3",
        "-c",
        pair.server_ip,
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_str(&out).expect("iperf3 JSON");
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9
}

fn ping_percentiles(pair: &Pair, count: u32) -> (f64, f64) {
    let out = pair.client.exec(&[
        "ping",
        "-c",
        &count.to_string(),
        "-i",
        "0.005",
        pair.server_ip,
    ]);
    let mut rtts: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    rtts.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let i = ((rtts.len() as f64 - 1.0) * q).round() as usize;
        rtts.get(i).copied().unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}

fn main() {
    let seconds: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");

    // Through vinfra switch.
    let host = Netns::new("h");
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let (ta, tb) = (name("t"), name("t"));
    client
        .apply(&[
            overlay(1, 100),
            tap_port(1, 1, &ta, 1500),
            tap_port(2, 1, &tb, 1500),
        ])
        .expect("configure the switch");
    let switch = Pair {
        server: Netns::new("b"),
        client: Netns::new("a"),
        server_ip: "10.90.0.2",
    };
    attach_tap(&host, &ta, &switch.client, "10.90.0.1/24", 1500);
    attach_tap(&host, &tb, &switch.server, "10.90.0.2/24", 1500);
    assert!(switch.client.ping_until("10.90.0.2", 5));

    // Through a Linux bridge.
    let brns = Netns::new("br");
    brns.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
    brns.exec(&["ip", "link", "set", "br0", "up"]);
    let bridge = Pair {
        server: Netns::new("b"),
        client: Netns::new("a"),
        server_ip: "10.91.0.2",
    };
    for (ep, ip) in [
        (&bridge.client, "10.91.0.1/24"),
        (&bridge.server, "10.91.0.2/24"),
    ] {
        let (inner, outer) = (name("v"), name("v"));
        sh(&[
            "ip", "link", "add", &inner, "netns", &ep.name, "type", "veth", "peer", "name", &outer,
            "netns", &brns.name,
        ]);
        brns.exec(&["ip", "link", "set", &outer, "master", "br0"]);
        brns.exec(&["ip", "link", "set", &outer, "up"]);
        ep.exec(&["ip", "addr", "add", ip, "dev", &inner]);
        ep.exec(&["ip", "link", "set", &inner, "up"]);
    }
    assert!(bridge.client.ping_until("10.91.0.2", 5));

    let sw_tcp = iperf_gbits(&switch, seconds);
    let br_tcp = iperf_gbits(&bridge, seconds);
    let (sw_p50, sw_p99) = ping_percentiles(&switch, 500);
    let (br_p50, br_p99) = ping_percentiles(&bridge, 500);

    println!("two namespace endpoints, {seconds} s iperf3 TCP, 500 pings");
    println!(
        "{:<16} {:>12} {:>12} {:>12}",
        "path", "TCP Gbit/s", "ping p50 ms", "ping p99 ms"
    );
    println!(
        "{:<16} {sw_tcp:>12.2} {sw_p50:>12.3} {sw_p99:>12.3}",
        "vinfra switch"
    );
    println!(
        "{:<16} {br_tcp:>12.2} {br_p50:>12.3} {br_p99:>12.3}",
        "linux bridge"
    );
    println!(
        "switch/bridge: TCP {:.2}x, p50 {:.2}x, p99 {:.2}x",
        sw_tcp / br_tcp,
        sw_p50 / br_p50,
        sw_p99 / br_p99
    );
    let c = client.counters().expect("counters");
    println!(
        "switch port 2: tx {} frames, tx errors {}",
        c.port(2).map_or(0, |p| p.traffic.tx_packets),
        c.port(2).map_or(0, |p| p.tx_errors)
    );
}
