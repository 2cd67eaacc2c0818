//! Two network-namespace endpoints and the paths between them that the switch daemon's
//! benchmarks share: namespaces, the vinfra switch with two tap ports and the Linux bridge with
//! two veths, and the measures (iperf3 TCP throughput, the 64-byte UDP generator, ping
//! latency, drop counters).
#![allow(dead_code)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vinfra_switch_control::{Attachment, Mac, PortSpec, Request, SwitchClient};

use crate::common::{attach_tap, name, overlay, sh, tap_port, Daemon, Netns};

/// The UDP generator's destination port.
pub const UDP_PORT: u16 = 9;
/// The UDP generator's payload: 18 bytes make 60-byte frames (64 on the wire with the FCS).
pub const UDP_PAYLOAD: usize = 18;
/// Datagrams per `sendmmsg`/`recvmmsg` call.
pub const BATCH: usize = 64;
/// Pings per latency measure.
pub const PINGS: u32 = 500;

/// A namespace named `swb-<pid><n><tag>` (deleted on drop, as every `Netns`).
pub fn netns(tag: &str) -> Netns {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let ns = Netns {
        name: format!("swb-{}{n}{tag}", std::process::id() % 10_000),
    };
    vinfra_testenv::add_netns(&ns.name);
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns
}

/// Two endpoint namespaces: a client measures toward a server.
pub struct Pair {
    /// Where the servers run.
    pub server: Netns,
    /// Where the clients run.
    pub client: Netns,
    /// The server endpoint's address.
    pub server_ip: &'static str,
}

impl Pair {
    /// Two fresh namespaces, nothing joining them yet.
    pub fn new(server_ip: &'static str) -> Pair {
        Pair {
            server: netns("b"),
            client: netns("a"),
            server_ip,
        }
    }
}

/// A veth from endpoint `ep` (address `cidr`) to namespace `other`; returns (inner, outer).
pub fn veth_to(ep: &Netns, cidr: &str, mtu: u16, other: &Netns) -> (String, String) {
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

/// Waits for the path to answer a ping (ARP and learning on a fresh path).
pub fn ready(pair: &Pair, what: &str) {
    assert!(
        pair.client.ping_until(pair.server_ip, 10),
        "{what}: no ping reply from {}",
        pair.server_ip
    );
}

/// iperf3 TCP: (Gbit/s received, segments the sender retransmitted).
pub fn iperf_gbits(pair: &Pair, seconds: u32) -> (f64, u64) {
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

/// Ping RTT p50, p99 in ms of `count` pings every 5 ms.
pub fn ping_percentiles(pair: &Pair, count: u32) -> (f64, f64) {
    let out = Command::new("ip")
        .args(["netns", "exec", &pair.client.name, "ping", "-c"])
        .args([&count.to_string(), "-i", "0.005", pair.server_ip])
        .output()
        .expect("ping");
    rtt_percentiles(String::from_utf8_lossy(&out.stdout).lines())
}

/// The p50 and p99 of the round trips (`time=… ms`) in `ping`'s output lines.
pub fn rtt_percentiles<'a>(lines: impl Iterator<Item = &'a str>) -> (f64, f64) {
    let mut rtts: Vec<f64> = lines
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

/// Moves the calling thread into namespace `ns` (its `/run/netns` path).
pub fn enter(ns: &Path) {
    let file = File::open(ns).expect("open netns");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Sets a socket buffer size option (`SO_RCVBUFFORCE`, `SO_SNDBUFFORCE`).
pub fn set_buf(sock: &UdpSocket, opt: libc::c_int, bytes: libc::c_int) {
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
pub fn headers(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
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
pub fn receive(stop: &AtomicBool, bound: &AtomicBool) -> (u64, f64) {
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
pub fn flood(dst: SocketAddrV4, seconds: f64) -> (u64, f64) {
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
pub fn udp_mpps(pair: &Pair, seconds: f64) -> (f64, f64) {
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
pub fn udp_rcvbuf_errors(ns: &Netns) -> u64 {
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
pub fn tx_dropped(ns: &Netns, dev: &str) -> u64 {
    let out = ns.exec(&["ip", "-s", "-j", "link", "show", "dev", dev]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    json[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or(0)
}

/// The median (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// "tx-csum on, tso on" as `ethtool -k` shows them for `dev` in namespace `ns`.
pub fn offloads(ns: &str, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-k", dev])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.split_whitespace().next().unwrap_or("?").to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "tx-csum {}, tso {}",
        get("tx-checksumming:"),
        get("tcp-segmentation-offload:")
    )
}

/// Endpoints through a vinfra switch daemon: tap host ports 1 (client) and 2 (server) of overlay
/// network 1, opened by the daemon (virtio-net headers: checksum and TSO offered to the
/// endpoints' stacks) and moved into the endpoint namespaces. Fields drop in order: the daemon
/// stops before its namespace goes.
pub struct SwitchPath {
    /// The daemon's control connection.
    pub control: SwitchClient,
    /// The daemon.
    pub daemon: Daemon,
    /// The endpoints.
    pub pair: Pair,
    /// The client's and the server's tap.
    pub taps: (String, String),
    /// The daemon's namespace.
    pub host: Netns,
}

/// The client port's number on a [`SwitchPath`].
pub const CLIENT_PORT: u32 = 1;
/// The server port's number on a [`SwitchPath`].
pub const SERVER_PORT: u32 = 2;

/// A [`SwitchPath`] with endpoints `client_ip`/24 and `server_ip`/24; the daemon keeps its
/// control socket and log in `dir`.
pub fn switch_path(dir: &Path, client_ip: &str, server_ip: &'static str) -> SwitchPath {
    switch_path_with(dir, client_ip, server_ip, &[])
}

/// As [`switch_path`], the daemon started with `args` too (e.g. `--busy-poll`).
pub fn switch_path_with(
    dir: &Path,
    client_ip: &str,
    server_ip: &'static str,
    args: &[&str],
) -> SwitchPath {
    let path = configured_path(dir, server_ip, args, |_, _| {
        let (ta, tb) = (name("t"), name("t"));
        let ports = [
            tap_port(CLIENT_PORT, 1, &ta, 1500),
            tap_port(SERVER_PORT, 1, &tb, 1500),
        ];
        (ports, (ta, tb))
    });
    let (ta, tb) = &path.taps;
    let (host, pair) = (&path.host, &path.pair);
    attach_tap(host, ta, &pair.client, &format!("{client_ip}/24"), 1500);
    attach_tap(host, tb, &pair.server, &format!("{server_ip}/24"), 1500);
    ready(pair, "vinfra switch");
    path
}

/// Endpoints through a vinfra switch daemon on interface ports: a veth from each endpoint to
/// the daemon's namespace, its outer end interface port 1 (client) or 2 (server) of overlay
/// network 1, read and written as a VM's tap is (AF_PACKET with virtio-net headers), so that the
/// kernel fast path takes their established flows as it takes a VM's. The same veths and
/// offloads as [`bridge_path`]'s. `taps` holds the veths' outer ends.
pub fn interface_path_with(
    dir: &Path,
    client_ip: &str,
    server_ip: &'static str,
    args: &[&str],
) -> SwitchPath {
    let path = configured_path(dir, server_ip, args, |host, pair| {
        let (_, ca) = veth_to(&pair.client, &format!("{client_ip}/24"), 1500, host);
        let (_, cb) = veth_to(&pair.server, &format!("{server_ip}/24"), 1500, host);
        let ports = [
            interface_port(CLIENT_PORT, 1, &ca),
            interface_port(SERVER_PORT, 1, &cb),
        ];
        (ports, (ca, cb))
    });
    ready(&path.pair, "vinfra switch interface ports");
    path
}

/// A [`SwitchPath`] before its endpoints are joined to it: a daemon started with `args` in a
/// namespace of its own, the endpoints (the server at `server_ip`), and overlay network 1
/// (VNI 100) with the client's and the server's port. `ports`, given the daemon's namespace and
/// the endpoints, returns the two ports' requests and their devices (the path's `taps`).
fn configured_path(
    dir: &Path,
    server_ip: &'static str,
    args: &[&str],
    ports: impl FnOnce(&Netns, &Pair) -> ([Request; 2], (String, String)),
) -> SwitchPath {
    let host = netns("h");
    let daemon = Daemon::start_with(&host, dir, None, &[], args);
    let mut control = daemon.client();
    let pair = Pair::new(server_ip);
    let ([client, server], taps) = ports(&host, &pair);
    control
        .apply(&[overlay(1, 100), client, server])
        .expect("configure the switch");
    SwitchPath {
        control,
        daemon,
        pair,
        taps,
        host,
    }
}

/// Interface port `id` on `network` over `interface` (MTU 1500).
pub fn interface_port(id: u32, network: u32, interface: &str) -> Request {
    Request::AddPort(PortSpec {
        id,
        mtu: 1500,
        attach: Attachment::Interface {
            network,
            interface: interface.to_owned(),
        },
    })
}

/// Endpoints through a Linux bridge (`br0` in namespace `ns`), each on a veth (a kernel bridge
/// cannot hold a tap's other end; veths offer the same checksum and TSO offloads).
pub struct BridgePath {
    /// The endpoints.
    pub pair: Pair,
    /// The client's and the server's veth (inside the endpoints).
    pub veths: (String, String),
    /// The bridge's ends of those veths (in `ns`).
    pub ports: (String, String),
    /// The bridge's namespace.
    pub ns: Netns,
}

/// A [`BridgePath`] with endpoints `client_ip`/24 and `server_ip`/24.
pub fn bridge_path(client_ip: &str, server_ip: &'static str) -> BridgePath {
    let ns = netns("br");
    ns.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
    ns.exec(&["ip", "link", "set", "br0", "up"]);
    let pair = Pair::new(server_ip);
    let mut ends = Vec::new();
    for (ep, ip) in [(&pair.client, client_ip), (&pair.server, server_ip)] {
        let (inner, outer) = veth_to(ep, &format!("{ip}/24"), 1500, &ns);
        ns.exec(&["ip", "link", "set", &outer, "master", "br0"]);
        ends.push((inner, outer));
    }
    ready(&pair, "linux bridge");
    let [(ci, co), (si, so)] = <[_; 2]>::try_from(ends).expect("two veths");
    BridgePath {
        pair,
        veths: (ci, si),
        ports: (co, so),
        ns,
    }
}

/// The load average over 1, 5 and 15 minutes, as `uptime` prints it.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs iperf3 TCP (`seconds`) and the 64-byte UDP generator (`udp_seconds`) over both `paths`
/// (label, endpoints), `rounds` times, alternating which goes first; prints each round, the
/// medians, and `RESULT <tcp_result> …` and `RESULT <udp_result> …`: the first path's medians
/// over the second's, against `target`.
pub fn side_by_side(
    paths: [(&str, &Pair); 2],
    seconds: u32,
    rounds: u32,
    udp_seconds: f64,
    (tcp_result, udp_result): (&str, &str),
    target: f64,
) {
    #[derive(Default)]
    struct Samples {
        tcp: Vec<f64>,
        retransmits: Vec<u64>,
        tx_mpps: Vec<f64>,
        mpps: Vec<f64>,
    }
    let mut samples: [Samples; 2] = Default::default();
    println!(
        "rounds {rounds}, iperf3 {seconds} s, 64-byte UDP {udp_seconds} s, load at start {}",
        load()
    );
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for p in order {
            let (label, pair) = paths[p];
            let started = Instant::now();
            let (tcp, retrans) = iperf_gbits(pair, seconds);
            let (tx, rx) = udp_mpps(pair, udp_seconds);
            eprintln!(
                "round {round} {label:<7} TCP {tcp:.2} Gbit/s ({retrans} retransmits), UDP tx \
                 {tx:.3} rx {rx:.3} Mpps ({:.1} s, load {})",
                started.elapsed().as_secs_f64(),
                load()
            );
            let s = &mut samples[p];
            s.tcp.push(tcp);
            s.retransmits.push(retrans);
            s.tx_mpps.push(tx);
            s.mpps.push(rx);
        }
    }
    println!("== medians over {rounds} rounds (load at end {})", load());
    for (p, (label, _)) in paths.iter().enumerate() {
        let s = &samples[p];
        println!(
            "{label:<7} TCP {:.2} Gbit/s (retransmits {:?}), 64-byte UDP tx {:.3} rx {:.3} Mpps",
            median(s.tcp.clone()),
            s.retransmits,
            median(s.tx_mpps.clone()),
            median(s.mpps.clone())
        );
    }
    let ratio = |f: fn(&Samples) -> Vec<f64>| {
        let (v, k) = (median(f(&samples[0])), median(f(&samples[1])));
        if k > 0.0 {
            v / k
        } else {
            0.0
        }
    };
    for (what, r) in [
        (tcp_result, ratio(|s| s.tcp.clone())),
        (udp_result, ratio(|s| s.mpps.clone())),
    ] {
        println!(
            "RESULT {what} {r:.2} {}",
            if r >= target { "PASS" } else { "FAIL" }
        );
    }
}

/// A switch daemon routing between two overlay networks of one router, and its endpoints.
/// Fields drop in order: the daemon stops before its namespace goes.
pub struct RoutedDaemon {
    control: SwitchClient,
    _daemon: Daemon,
    /// The endpoints: the client .2 on 10.88.1.0/24, the server .2 on 10.88.2.0/24.
    pub pair: Pair,
    _host: Netns,
}

impl RoutedDaemon {
    /// The daemon's kernel fast path counters (`None`: it runs without one).
    pub fn fast_path(&mut self) -> Option<vinfra_switch_control::FastPathView> {
        self.control
            .counters()
            .ok()
            .and_then(|c| c.fast_path.as_deref().copied())
    }
}

/// A switch daemon in a host namespace of its own with two interface ports on two overlay
/// networks (VNI 100, 10.88.1.0/24; VNI 101, 10.88.2.0/24) of one router whose gateways are .1:
/// a veth from each endpoint (checksum and TSO offered, as a VM's virtio-net does), read as a
/// VM's tap is, so that the kernel fast path takes established flows as it takes a VM's;
/// started with `args`, flow accounting on or off; the endpoints route through the gateways.
/// `label` names the path in a failed readiness check.
pub fn routed_daemon(dir: &Path, flows: bool, label: &str, args: &[&str]) -> RoutedDaemon {
    let host = netns("h");
    let daemon = Daemon::start_with(&host, dir, None, &[], args);
    let mut control = daemon.client();
    let pair = Pair::new("10.88.2.2");
    let (_, ta) = veth_to(&pair.client, "10.88.1.2/24", 1500, &host);
    let (_, tb) = veth_to(&pair.server, "10.88.2.2/24", 1500, &host);
    let gateway = |network: u32, ip: &str, last: u8| Request::SetRouterInterface {
        router: 1,
        network,
        ip: ip.parse().expect("ip"),
        prefix_len: 24,
        mac: Mac([0x02, 0x76, 0x72, 0x00, 0x00, last]),
        mtu: None,
    };
    control
        .apply(&[
            Request::SetFlowAccounting {
                enabled: flows,
                max_flows: None,
            },
            overlay(1, 100),
            overlay(2, 101),
            interface_port(1, 1, &ta),
            interface_port(2, 2, &tb),
            Request::AddRouter { id: 1 },
            gateway(1, "10.88.1.1", 1),
            gateway(2, "10.88.2.1", 2),
        ])
        .expect("configure the switch");
    pair.client
        .exec(&["ip", "route", "add", "default", "via", "10.88.1.1"]);
    pair.server
        .exec(&["ip", "route", "add", "default", "via", "10.88.2.1"]);
    ready(&pair, label);
    RoutedDaemon {
        control,
        _daemon: daemon,
        pair,
        _host: host,
    }
}

/// The bench's `[SECONDS [ROUNDS]]` arguments (4 and 5 by default, at least one round).
pub fn seconds_and_rounds() -> (u32, u32) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut nums = args.iter().filter_map(|a| a.parse::<u32>().ok());
    let seconds = nums.next().unwrap_or(4);
    let rounds = nums.next().unwrap_or(5).max(1);
    (seconds, rounds)
}
