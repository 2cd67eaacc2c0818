//! Two network-namespace endpoints connected several ways in the same run, and measured the
//! same way: iperf3 TCP throughput, 64-byte UDP packets per second, ping latency p50/p99.
//!
//! One host: through `vinfra switch` (tap host ports), through a Linux bridge (veths) and
//! through Open vSwitch's userspace datapath (`datapath_type=netdev`, veths with tx offload
//! off); a bare veth pair gives the UDP generator's own ceiling. Two hosts (namespaces joined by
//! a veth underlay) over VXLAN: two `vinfra switch` daemons with the VXLAN uplink against the
//! kernel's vxlan device + Linux bridge in each host.
//!
//! The UDP generator is a `sendmmsg` loop (batches of 64 datagrams with 18 bytes of payload:
//! 60-byte frames, 64 on the wire with the FCS) in the client namespace; the receiver counts with
//! `recvmmsg` in the server namespace. Packets per second are what the receiver got, from its
//! first to its last datagram.
//!
//! Every measure is repeated ROUNDS times (paths interleaved) and the median is printed.
//! Root only; needs `iperf3`, `ping`, `ethtool`; Open vSwitch (`ovs-vswitchd`, `ovsdb-server`,
//! `ovs-vsctl`) is started privately in a namespace of the benchmark (own database and sockets
//! in a temporary directory) and stopped at the end; without it the OVS row is skipped.
//! Namespaces are named `swb-…` and deleted at the end; addresses are 10.90–10.97.x, only inside
//! them, with no default routes.
//!
//!     cargo bench -p vinfra-switchd --bench throughput [-- SECONDS [ROUNDS]]
//!
//! `VINFRA_SWITCHD=/path/to/vinfra-switchd` runs another build of the daemon (e.g. a baseline
//! from an earlier commit) in the vinfra rows.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{attach_tap, name, overlay, sh, tap_port, Daemon, Netns};
use vinfra_switchd::Request;

const UDP_PORT: u16 = 9;
const UDP_PAYLOAD: usize = 18;
const BATCH: usize = 64;
const PINGS: u32 = 500;

/// A namespace named `swb-<pid><n><tag>` (deleted on drop, as every `Netns`).
fn netns(tag: &str) -> Netns {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let ns = Netns {
        name: format!("swb-{}{n}{tag}", std::process::id() % 10_000),
    };
    sh(&["ip", "netns", "add", &ns.name]);
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns
}

struct Pair {
    server: Netns,
    client: Netns,
    server_ip: &'static str,
}

impl Pair {
    fn new(server_ip: &'static str) -> Pair {
        Pair {
            server: netns("b"),
            client: netns("a"),
            server_ip,
        }
    }
}

/// A veth from endpoint `ep` (address `cidr`) to namespace `other`; returns (inner, outer).
fn veth_to(ep: &Netns, cidr: &str, mtu: u16, other: &Netns) -> (String, String) {
    let (inner, outer) = (name("v"), name("v"));
    sh(&[
        "ip",
        "link",
        "add",
        &inner,
        "netns",
        &ep.name,
        "type",
        "veth",
        "peer",
        "name",
        &outer,
        "netns",
        &other.name,
    ]);
    ep.exec(&["ip", "link", "set", &inner, "mtu", &mtu.to_string()]);
    other.exec(&["ip", "link", "set", &outer, "mtu", &mtu.to_string()]);
    ep.exec(&["ip", "addr", "add", cidr, "dev", &inner]);
    ep.exec(&["ip", "link", "set", &inner, "up"]);
    other.exec(&["ip", "link", "set", &outer, "up"]);
    (inner, outer)
}

fn ready(pair: &Pair, what: &str) {
    assert!(
        pair.client.ping_until(pair.server_ip, 10),
        "{what}: no ping reply from {}",
        pair.server_ip
    );
}

/// A private Open vSwitch (ovsdb-server + ovs-vswitchd) whose datapath lives in `ns`.
struct Ovs {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Ovs {
    fn available() -> bool {
        ["ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovsdb-tool"]
            .iter()
            .all(|b| common::try_sh(&["which", b]))
    }

    fn start(ns: &Netns) -> Ovs {
        let dir = tempfile::tempdir().expect("tempdir");
        let rundir = dir.path().to_path_buf();
        let p = |f: &str| rundir.join(f).to_string_lossy().into_owned();
        sh(&[
            "ovsdb-tool",
            "create",
            &p("conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]);
        let mut ovs = Ovs {
            children: Vec::new(),
            dir,
        };
        let spawn = |args: Vec<String>, rundir: &Path| {
            Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(args)
                .env("OVS_RUNDIR", rundir)
                .env("OVS_LOGDIR", rundir)
                .env("OVS_DBDIR", rundir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start an Open vSwitch daemon")
        };
        ovs.children.push(spawn(
            vec![
                "ovsdb-server".into(),
                p("conf.db"),
                format!("--remote=punix:{}", p("db.sock")),
                format!("--unixctl={}", p("ovsdb-server.ctl")),
                format!("--log-file={}", p("ovsdb-server.log")),
                "--no-chdir".into(),
            ],
            &rundir,
        ));
        assert!(
            common::wait_for(Duration::from_secs(10), || Path::new(&p("db.sock"))
                .exists()),
            "ovsdb-server did not start"
        );
        ovs.vsctl(&["--no-wait", "init"]);
        ovs.children.push(spawn(
            vec![
                "ovs-vswitchd".into(),
                format!("unix:{}", p("db.sock")),
                format!("--unixctl={}", p("ovs-vswitchd.ctl")),
                format!("--log-file={}", p("ovs-vswitchd.log")),
                "--no-chdir".into(),
            ],
            &rundir,
        ));
        ovs
    }

    fn vsctl(&self, args: &[&str]) {
        let db = format!("--db=unix:{}", self.dir.path().join("db.sock").display());
        let mut full = vec!["ovs-vsctl", &db, "--timeout=30"];
        full.extend_from_slice(args);
        sh(&full);
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        // ovs-vswitchd first (it was started last), then ovsdb-server.
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// iperf3 TCP: (Gbit/s received, segments the sender retransmitted).
fn iperf_gbits(pair: &Pair, seconds: u32) -> (f64, u64) {
    let mut server = Command::new("ip")
        .args(["netns", "exec", &pair.server.name, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args(["netns", "exec", &pair.client.name, "iperf3", "-c"])
        .args([pair.server_ip, "-t", &seconds.to_string(), "-J"])
        .output()
        .expect("iperf3 -c");
    let _ = server.kill();
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let gbits = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9;
    let retransmits = json["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    (gbits, retransmits)
}

fn ping_percentiles(pair: &Pair, count: u32) -> (f64, f64) {
    let out = Command::new("ip")
        .args(["netns", "exec", &pair.client.name, "ping", "-c"])
        .args([&count.to_string(), "-i", "0.005", pair.server_ip])
        .output()
        .expect("ping");
    let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
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

fn enter(ns: &Path) {
    let file = File::open(ns).expect("open netns");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn set_buf(sock: &UdpSocket, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: a valid socket and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Message headers for `BATCH` datagrams, each pointing at its own `iovec`.
fn headers(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}

/// Counts datagrams until `stop`; returns (datagrams, seconds from the first to the last).
fn receive(stop: &AtomicBool, bound: &AtomicBool) -> (u64, f64) {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, UDP_PORT)).expect("bind receiver");
    set_buf(&sock, libc::SO_RCVBUFFORCE, 32 << 20);
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    bound.store(true, Ordering::SeqCst);
    let mut bufs = vec![[0u8; 64]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs = headers(&mut iov);
    let (mut count, mut first, mut last) = (0u64, None, Instant::now());
    loop {
        // SAFETY: `hdrs` points at `iov`, which points at `bufs`; all live through the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            count += n as u64;
        } else if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    let span = first.map_or(0.0, |f| (last - f).as_secs_f64());
    (count, span)
}

/// Sends 18-byte datagrams to `dst` as fast as `sendmmsg` takes them for `seconds`; returns
/// (datagrams accepted, seconds).
fn flood(dst: SocketAddrV4, seconds: f64) -> (u64, f64) {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind sender");
    sock.connect(dst).expect("connect");
    set_buf(&sock, libc::SO_SNDBUFFORCE, 4 << 20);
    let payload = [0x5au8; UDP_PAYLOAD];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        })
        .collect();
    let mut hdrs = headers(&mut iov);
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while start.elapsed() < limit {
        // SAFETY: `hdrs` points at `iov`, which points at `payload` (only read).
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
            )
        };
        if n > 0 {
            sent += n as u64;
        }
    }
    (sent, start.elapsed().as_secs_f64())
}

/// 64-byte UDP packets per second: (sent by the generator, received), in millions.
fn udp_mpps(pair: &Pair, seconds: f64) -> (f64, f64) {
    let ns_path = |ns: &Netns| PathBuf::from(format!("/run/netns/{}", ns.name));
    let (server_ns, client_ns) = (ns_path(&pair.server), ns_path(&pair.client));
    let stop = Arc::new(AtomicBool::new(false));
    let bound = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (stop, bound) = (stop.clone(), bound.clone());
        std::thread::spawn(move || {
            enter(&server_ns);
            receive(&stop, &bound)
        })
    };
    while !bound.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let dst = SocketAddrV4::new(pair.server_ip.parse().expect("ip"), UDP_PORT);
    let (sent, secs) = std::thread::spawn(move || {
        enter(&client_ns);
        flood(dst, seconds)
    })
    .join()
    .expect("sender");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (got, span) = receiver.join().expect("receiver");
    let rx = if span > 0.0 { got as f64 / span } else { 0.0 };
    (sent as f64 / secs / 1e6, rx / 1e6)
}

/// UDP datagrams dropped because a socket's receive buffer was full, in namespace `ns`.
fn udp_rcvbuf_errors(ns: &Netns) -> u64 {
    let snmp = ns.exec(&["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Frames a device dropped on transmit (for a tap: the switch did not read them in time).
fn tx_dropped(ns: &Netns, dev: &str) -> u64 {
    let out = ns.exec(&["ip", "-s", "-j", "link", "show", "dev", dev]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    json[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[derive(Default)]
struct Samples {
    tcp: Vec<f64>,
    tx_mpps: Vec<f64>,
    mpps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

struct Row {
    tcp: f64,
    tx_mpps: f64,
    mpps: f64,
    p50: f64,
    p99: f64,
}

impl Samples {
    fn row(&self) -> Row {
        Row {
            tcp: median(self.tcp.clone()),
            tx_mpps: median(self.tx_mpps.clone()),
            mpps: median(self.mpps.clone()),
            p50: median(self.p50.clone()),
            p99: median(self.p99.clone()),
        }
    }
}

struct Path3 {
    label: &'static str,
    pair: Pair,
    /// Only the UDP generator's ceiling is measured on this path.
    udp_only: bool,
    samples: Samples,
}

fn measure(paths: &mut [Path3], rounds: u32, seconds: u32) {
    for round in 1..=rounds {
        for p in paths.iter_mut() {
            let (tx, rx) = udp_mpps(&p.pair, 3.0);
            p.samples.tx_mpps.push(tx);
            p.samples.mpps.push(rx);
            if p.udp_only {
                eprintln!(
                    "round {round} {:<14} UDP tx {tx:.3} rx {rx:.3} Mpps",
                    p.label
                );
                continue;
            }
            let (tcp, retrans) = iperf_gbits(&p.pair, seconds);
            let (p50, p99) = ping_percentiles(&p.pair, PINGS);
            p.samples.tcp.push(tcp);
            p.samples.p50.push(p50);
            p.samples.p99.push(p99);
            eprintln!(
                "round {round} {:<14} TCP {tcp:.2} Gbit/s ({retrans} retransmits), UDP tx {tx:.3} rx {rx:.3} Mpps, ping {p50:.3}/{p99:.3} ms",
                p.label
            );
        }
    }
}

fn print_table(title: &str, paths: &[Path3]) {
    println!("{title}");
    println!(
        "  {:<16} {:>10} {:>12} {:>12} {:>11} {:>11}",
        "path", "TCP Gbit/s", "UDP64 Mpps", "(sent Mpps)", "ping p50 ms", "ping p99 ms"
    );
    for p in paths {
        let r = p.samples.row();
        if p.udp_only {
            println!(
                "  {:<16} {:>10} {:>12.3} {:>12.3} {:>11} {:>11}",
                p.label, "-", r.mpps, r.tx_mpps, "-", "-"
            );
        } else {
            println!(
                "  {:<16} {:>10.2} {:>12.3} {:>12.3} {:>11.3} {:>11.3}",
                p.label, r.tcp, r.mpps, r.tx_mpps, r.p50, r.p99
            );
        }
    }
}

fn ratios(scope: &str, ours: &Row, peer: &Row, peer_name: &str, target: bool) {
    println!(
        "  ratio vinfra/{peer_name}: TCP {:.2}x, UDP64 pps {:.2}x, ping p50 {:.2}x, p99 {:.2}x",
        ours.tcp / peer.tcp,
        ours.mpps / peer.mpps,
        ours.p50 / peer.p50,
        ours.p99 / peer.p99
    );
    for (what, r) in [("tcp", ours.tcp / peer.tcp), ("pps", ours.mpps / peer.mpps)] {
        if target {
            let verdict = if r >= 1.0 { "PASS" } else { "FAIL" };
            println!(
                "RESULT switch {scope} {what} vinfra/{peer_name} {r:.2} target >= 1.00: {verdict}"
            );
        } else {
            println!("RESULT switch {scope} {what} vinfra/{peer_name} {r:.2} (recorded)");
        }
    }
}

fn main() {
    let mut nums = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u32>().ok());
    let seconds = nums.next().unwrap_or(5);
    let rounds = nums.next().unwrap_or(3).max(1);
    let dir = tempfile::tempdir().expect("tempdir");

    // ---- One host ------------------------------------------------------------------------
    // Through vinfra switch.
    let host = netns("h");
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
    let switch = Pair::new("10.90.0.2");
    attach_tap(&host, &ta, &switch.client, "10.90.0.1/24", 1500);
    attach_tap(&host, &tb, &switch.server, "10.90.0.2/24", 1500);
    ready(&switch, "vinfra switch");

    // Through a Linux bridge.
    let brns = netns("br");
    brns.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
    brns.exec(&["ip", "link", "set", "br0", "up"]);
    let bridge = Pair::new("10.91.0.2");
    for (ep, ip) in [
        (&bridge.client, "10.91.0.1/24"),
        (&bridge.server, "10.91.0.2/24"),
    ] {
        let (_, outer) = veth_to(ep, ip, 1500, &brns);
        brns.exec(&["ip", "link", "set", &outer, "master", "br0"]);
    }
    ready(&bridge, "linux bridge");

    // Through Open vSwitch's userspace datapath.
    let ovsns = netns("ovs");
    let ovs_pair = Ovs::available().then(|| {
        let ovs = Ovs::start(&ovsns);
        ovs.vsctl(&[
            "add-br",
            "br-bench",
            "--",
            "set",
            "bridge",
            "br-bench",
            "datapath_type=netdev",
        ]);
        let pair = Pair::new("10.92.0.2");
        for (ep, ip) in [
            (&pair.client, "10.92.0.1/24"),
            (&pair.server, "10.92.0.2/24"),
        ] {
            let (inner, outer) = veth_to(ep, ip, 1500, &ovsns);
            ep.exec(&["ethtool", "-K", &inner, "tx", "off"]);
            ovsns.exec(&["ethtool", "-K", &outer, "tx", "off"]);
            ovs.vsctl(&["add-port", "br-bench", &outer]);
        }
        ready(&pair, "open vswitch");
        (ovs, pair)
    });
    if ovs_pair.is_none() {
        println!(
            "Open vSwitch not installed (apt-get install openvswitch-switch): OVS row skipped"
        );
    }

    // A bare veth pair: the UDP generator's ceiling.
    let direct = Pair::new("10.93.0.2");
    {
        let (x, y) = (name("v"), name("v"));
        sh(&[
            "ip",
            "link",
            "add",
            &x,
            "netns",
            &direct.client.name,
            "type",
            "veth",
            "peer",
            "name",
            &y,
            "netns",
            &direct.server.name,
        ]);
        for (ns, dev, ip) in [
            (&direct.client, &x, "10.93.0.1/24"),
            (&direct.server, &y, "10.93.0.2/24"),
        ] {
            ns.exec(&["ip", "addr", "add", ip, "dev", dev]);
            ns.exec(&["ip", "link", "set", dev, "up"]);
        }
    }
    ready(&direct, "veth pair");

    // ---- Two hosts over VXLAN --------------------------------------------------------------
    let underlay = |a: &Netns, b: &Netns, net: &str| -> (String, String) {
        let (ua, ub) = (name("u"), name("u"));
        sh(&[
            "ip", "link", "add", &ua, "netns", &a.name, "type", "veth", "peer", "name", &ub,
            "netns", &b.name,
        ]);
        a.exec(&["ip", "addr", "add", &format!("{net}.1/24"), "dev", &ua]);
        b.exec(&["ip", "addr", "add", &format!("{net}.2/24"), "dev", &ub]);
        a.exec(&["ip", "link", "set", &ua, "up"]);
        b.exec(&["ip", "link", "set", &ub, "up"]);
        (ua, ub)
    };
    // vinfra switch: one daemon per host, VXLAN uplink over the underlay.
    let (ha, hb) = (netns("ha"), netns("hb"));
    underlay(&ha, &hb, "10.94.0");
    let vtep_a = Ipv4Addr::new(10, 94, 0, 1);
    let vtep_b = Ipv4Addr::new(10, 94, 0, 2);
    let da = Daemon::start(&ha, dir.path(), Some(vtep_a));
    let db = Daemon::start(&hb, dir.path(), Some(vtep_b));
    let (mut ca, mut cb) = (da.client(), db.client());
    let (xa, xb) = (name("t"), name("t"));
    for (c, tap, other) in [(&mut ca, &xa, vtep_b), (&mut cb, &xb, vtep_a)] {
        c.apply(&[
            overlay(1, 5000),
            tap_port(1, 1, tap, 1450),
            Request::SetFloodList {
                network: 1,
                vteps: vec![other],
            },
        ])
        .expect("configure a VXLAN switch");
    }
    let vx_switch = Pair::new("10.95.0.2");
    attach_tap(&ha, &xa, &vx_switch.client, "10.95.0.1/24", 1450);
    attach_tap(&hb, &xb, &vx_switch.server, "10.95.0.2/24", 1450);
    ready(&vx_switch, "vinfra switch over VXLAN");

    // Kernel: vxlan device + Linux bridge in each host.
    let (ka, kb) = (netns("ka"), netns("kb"));
    let (ua, ub) = underlay(&ka, &kb, "10.96.0");
    let vx_kernel = Pair::new("10.97.0.2");
    for (h, dev, local, remote, ep, ip) in [
        (
            &ka,
            &ua,
            "10.96.0.1",
            "10.96.0.2",
            &vx_kernel.client,
            "10.97.0.1/24",
        ),
        (
            &kb,
            &ub,
            "10.96.0.2",
            "10.96.0.1",
            &vx_kernel.server,
            "10.97.0.2/24",
        ),
    ] {
        h.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        h.exec(&[
            "ip", "link", "add", "vx0", "type", "vxlan", "id", "5000", "local", local, "remote",
            remote, "dstport", "4789", "dev", dev,
        ]);
        h.exec(&["ip", "link", "set", "vx0", "master", "br0"]);
        h.exec(&["ip", "link", "set", "vx0", "up"]);
        let (_, outer) = veth_to(ep, ip, 1450, h);
        h.exec(&["ip", "link", "set", &outer, "master", "br0"]);
        h.exec(&["ip", "link", "set", "br0", "up"]);
    }
    ready(&vx_kernel, "kernel vxlan");

    // ---- Measure ---------------------------------------------------------------------------
    let path = |label, pair, udp_only| Path3 {
        label,
        pair,
        udp_only,
        samples: Samples::default(),
    };
    let (ovs, ovs_pair) = match ovs_pair {
        Some((o, p)) => (Some(o), Some(p)),
        None => (None, None),
    };
    let mut local = vec![
        path("vinfra switch", switch, false),
        path("linux bridge", bridge, false),
    ];
    if let Some(p) = ovs_pair {
        local.push(path("ovs netdev", p, false));
    }
    local.push(path("veth (ceiling)", direct, true));
    let mut vxlan = vec![
        path("vinfra switch", vx_switch, false),
        path("kernel vxlan+br", vx_kernel, false),
    ];
    measure(&mut local, rounds, seconds);
    measure(&mut vxlan, rounds, seconds);

    println!();
    println!(
        "== medians of {rounds} rounds: iperf3 TCP {seconds} s, 64-byte UDP for 3 s (sendmmsg -> recvmmsg), {PINGS} pings"
    );
    print_table("one host, two namespace endpoints", &local);
    let ours = local[0].samples.row();
    if let Some(o) = local.iter().find(|p| p.label == "ovs netdev") {
        ratios("local", &ours, &o.samples.row(), "ovs", true);
    }
    ratios("local", &ours, &local[1].samples.row(), "bridge", false);
    print_table("two hosts over VXLAN (veth underlay)", &vxlan);
    ratios(
        "vxlan",
        &vxlan[0].samples.row(),
        &vxlan[1].samples.row(),
        "kernel",
        false,
    );

    println!("drops after all rounds (kernel counters):");
    println!(
        "  UDP receive-buffer overflows at the receiving endpoint: {}",
        local
            .iter()
            .chain(&vxlan)
            .map(|p| format!("{} {}", p.label, udp_rcvbuf_errors(&p.pair.server)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  vinfra sender-side tap tx dropped (switch too slow to read): local {}, vxlan {}",
        tx_dropped(&local[0].pair.client, &ta),
        tx_dropped(&vxlan[0].pair.client, &xa)
    );
    println!(
        "  vinfra VXLAN uplink socket overflows (UDP RcvbufErrors in the host): A {}, B {}",
        udp_rcvbuf_errors(&ha),
        udp_rcvbuf_errors(&hb)
    );
    for (what, c) in [
        ("local", &mut client),
        ("vxlan A", &mut ca),
        ("vxlan B", &mut cb),
    ] {
        let c = c.counters().expect("counters");
        let errors: u64 = c.ports.iter().map(|p| p.tx_errors).sum();
        println!("switch {what}: tx errors {errors}");
    }
    drop(ovs);
}
