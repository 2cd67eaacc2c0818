//! Two network-namespace endpoints connected several ways in the same run, and measured the
//! same way: iperf3 TCP throughput, 64-byte UDP packets per second, ping latency p50/p99.
//!
//! One host: through `vinfra switch` with interface ports on veths, the same veths as the Linux
//! bridge's (read and written as a VM's tap is, so that the kernel fast path takes established
//! flows as it takes a VM's: the path a VM's traffic to another VM of the host takes; its TCP,
//! packet rate and ping p50 carry the targets against the bridge); through `vinfra switch`
//! with host taps (the daemon's own path: no fast path, recorded) and through Open vSwitch's userspace datapath
//! (`datapath_type=netdev`, `other_config:userspace-tso-enable=true`), each with two tap ports
//! that the switch process opens itself (virtio-net headers; checksum and TSO offered to the
//! endpoint's stack) and whose interfaces are moved into the endpoint namespaces; through a Linux
//! bridge, whose endpoints are veths (a kernel bridge cannot hold a tap's other end; veths offer
//! the same checksum and TSO offloads); a bare veth pair gives the UDP generator's own ceiling.
//! The offloads each endpoint interface shows (`ethtool -k`) are printed. Two hosts (namespaces
//! joined by a veth underlay) over VXLAN: two `vinfra switch` daemons with the VXLAN uplink
//! against the kernel's vxlan device + Linux bridge in each host.
//!
//! Then, after all of those, one host again with the daemon started with `--busy-poll` (its
//! thread never sleeps: one core kept busy) against a Linux bridge of its own, in the same
//! rounds; only then, so that its spinning costs nothing else its core.
//!
//! VM ports (`vm` argument, or all): what VMs use. Two test guests (TCG) per path: through
//! `vinfra switch` VM tap ports (QEMU `-netdev tap,ifname=…,vnet_hdr=on` on a tap the switch
//! created, as the agent attaches a vNIC by default: the guests get checksum and TSO offloads)
//! and VM socket ports (QEMU `-netdev dgram` over Unix datagram sockets, `vinfra agent
//! --vm-nic-ports dgram`; recorded against the taps), against the same guests with QEMU tap NICs (QEMU's defaults: virtio-net
//! headers on, so the guests get checksum and TSO offloads) on a Linux bridge and on Open
//! vSwitch netdev (the taps as system ports). The guests run busybox tools, the same on every
//! path, driven through a shell on their second serial port (`vinfra.shell=1`): TCP throughput
//! (`dd | nc` to `nc -l | wc -c`, timed by the receiving guest from its first byte to the end),
//! ping latency p50/p99 (100 pings at 20 ms), and small-packet round trips per second
//! (`ping -A -s 18`: 60-byte frames, the next sent when the reply arrives).
//!
//! The UDP generator is a `sendmmsg` loop (batches of 64 datagrams with 18 bytes of payload:
//! 60-byte frames, 64 on the wire with the FCS) in the client namespace; the receiver counts with
//! `recvmmsg` in the server namespace. Packets per second are what the receiver got, from its
//! first to its last datagram.
//!
//! Every measure is repeated ROUNDS times (paths interleaved) and the median is printed.
//! Root only; needs `iperf3`, `ping`, `ethtool`, QEMU and the guest image (VM ports); Open
//! vSwitch (`ovs-vswitchd`, `ovsdb-server`, `ovs-vsctl`) is started privately in a namespace of
//! the benchmark (own database and sockets in a temporary directory) and stopped at the end;
//! without it the OVS rows are skipped (and say so).
//! Namespaces are named `swb-…` and deleted at the end; addresses are 10.89–10.99.x, only inside
//! them, with no default routes.
//!
//!     cargo bench -p vinfra-switchd --bench throughput [-- [host] [vm] [SECONDS [ROUNDS]]]
//!
//! The guest image comes from `VINFRA_GUEST_DIR` or `/var/cache/vinfra/guest`
//! (`scripts/build-guest-image.sh`).
//!
//! `VINFRA_SWITCHD=/path/to/vinfra-switchd` runs another build of the daemon (e.g. a baseline
//! from an earlier commit) in the vinfra rows.

#[path = "../tests/common/mod.rs"]
mod common;

mod endpoints;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{attach_tap, name, overlay, sh, tap_port, Daemon, Netns};
use endpoints::{
    bridge_path, interface_path_with, iperf_gbits, median, netns, offloads, ping_percentiles,
    ready, switch_path, switch_path_with, tx_dropped, udp_mpps, udp_rcvbuf_errors, veth_to,
    BridgePath, Pair, SwitchPath, PINGS,
};
use vinfra_switch_control::Request;

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
        // Read by ovs-vswitchd at start only.
        ovs.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:userspace-tso-enable=true",
        ]);
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

/// Namespace endpoints through every switch (one host) and over VXLAN (two hosts).
fn host_paths(seconds: u32, rounds: u32) {
    let dir = tempfile::tempdir().expect("tempdir");

    // ---- One host ------------------------------------------------------------------------
    // Through vinfra switch.
    let SwitchPath {
        control: mut client,
        daemon: _daemon,
        pair: switch,
        taps: (ta, tb),
        host: _host,
    } = switch_path(dir.path(), "10.90.0.1", "10.90.0.2");

    // Through vinfra switch on interface ports: the same veths as the bridge's, read as a VM's
    // tap is, the kernel fast path taking established flows as it takes a VM's.
    let ports = interface_path_with(dir.path(), "10.89.0.1", "10.89.0.2", &[]);

    // Through a Linux bridge.
    let BridgePath {
        pair: bridge,
        veths: (bva, bvb),
        ns: _brns,
        ..
    } = bridge_path("10.91.0.1", "10.91.0.2");
    let bridge_veths = [
        (bridge.client.name.clone(), bva),
        (bridge.server.name.clone(), bvb),
    ];

    // Through Open vSwitch's userspace datapath.
    let ovsns = netns("ovs");
    let mut ovs_taps: Vec<(String, String)> = Vec::new();
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
            // A tap ovs-vswitchd opens itself (with TSO: virtio-net headers, TUNSETOFFLOAD).
            let tap = name("o");
            ovs.vsctl(&[
                "add-port",
                "br-bench",
                &tap,
                "--",
                "set",
                "interface",
                &tap,
                "type=tap",
            ]);
            assert!(
                common::wait_for(Duration::from_secs(10), || ovsns
                    .try_exec(&["ip", "link", "show", &tap])),
                "Open vSwitch did not create tap {tap}"
            );
            attach_tap(&ovsns, &tap, ep, ip, 1500);
            ovs_taps.push((ep.name.clone(), tap));
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

    // What each endpoint's stack may hand its interface: the same for every path.
    println!("endpoint interface offloads (ethtool -k: tx checksumming, TSO):");
    let vinfra_taps = [
        (switch.client.name.clone(), ta.clone()),
        (switch.server.name.clone(), tb.clone()),
    ];
    for (label, devs) in [
        ("vinfra switch taps", &vinfra_taps[..]),
        ("ovs netdev taps", &ovs_taps[..]),
        ("linux bridge veths", &bridge_veths[..]),
    ] {
        for (ns, dev) in devs {
            println!("  {label:<19} {dev:<12} {}", offloads(ns, dev));
        }
    }

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
        path("vinfra veth ports", ports.pair, false),
        path("linux bridge", bridge, false),
        path("vinfra host taps", switch, false),
    ];
    if let Some(p) = ovs_pair {
        local.push(path("ovs netdev", p, false));
    } else {
        println!(
            "RESULT switch local-host-taps tcp vinfra/ovs n/a (Open vSwitch not installed): FAIL"
        );
        println!(
            "RESULT switch local-host-taps pps vinfra/ovs n/a (Open vSwitch not installed): FAIL"
        );
    }
    local.push(path("veth (ceiling)", direct, true));
    let mut vxlan = vec![
        path("vinfra switch", vx_switch, false),
        path("kernel vxlan+br", vx_kernel, false),
    ];
    measure(&mut local, rounds, seconds);
    measure(&mut vxlan, rounds, seconds);
    // The daemon with `--busy-poll` (one core kept busy), started only now so that it spins
    // during nothing else, against a bridge of its own measured in the same rounds.
    let busy_switch = switch_path_with(dir.path(), "10.98.0.1", "10.98.0.2", &["--busy-poll"]);
    let busy_bridge = bridge_path("10.99.0.1", "10.99.0.2");
    let mut busy = vec![
        path("vinfra busy poll", busy_switch.pair, false),
        path("linux bridge", busy_bridge.pair, false),
    ];
    measure(&mut busy, rounds, seconds);
    drop(busy_switch.daemon);

    println!();
    println!(
        "== medians of {rounds} rounds: iperf3 TCP {seconds} s, 64-byte UDP for 3 s (sendmmsg -> recvmmsg), {PINGS} pings (load {})",
        endpoints::load()
    );
    print_table(
        "one host, two namespace endpoints (vinfra veth ports and the bridge: the same veths; vinfra host taps and OVS: taps the switch opens)",
        &local,
    );
    // Ours: the veth ports, the path a VM's tap takes (the kernel fast path), against the
    // bridge on the same veths; only when the fast path carried them (else a daemon without
    // one would be measured under the fast path's name).
    let ours = local[0].samples.row();
    let bridge_row = local[1].samples.row();
    let mut ports_client = ports.control;
    let fast = ports_client
        .counters()
        .expect("counters")
        .fast_path
        .as_deref()
        .copied();
    match fast {
        Some(f) if f.frames > 0 => {
            println!(
                "  vinfra veth ports, kernel fast path: {} flows installed, {} frames, {} bytes, {} flushes",
                f.installed, f.frames, f.bytes, f.flushes
            );
            ratios("local", &ours, &bridge_row, "bridge", true);
            println!(
                "RESULT switch local ping p50 vinfra/bridge {:.2} target <= 2.0: {}",
                ours.p50 / bridge_row.p50,
                if ours.p50 <= 2.0 * bridge_row.p50 {
                    "PASS"
                } else {
                    "FAIL"
                }
            );
        }
        _ => {
            println!("RESULT switch local fast path not used (see the daemon's log): FAIL");
        }
    }
    // The daemon's own path (host taps: no fast path), recorded; Open vSwitch's userspace
    // datapath on taps it opens is measured against it (the same kind of path).
    let taps = local[2].samples.row();
    ratios("local-host-taps", &taps, &bridge_row, "bridge", false);
    if let Some(o) = local.iter().find(|p| p.label == "ovs netdev") {
        ratios("local-host-taps", &taps, &o.samples.row(), "ovs", true);
    }
    print_table("two hosts over VXLAN (veth underlay)", &vxlan);
    ratios(
        "vxlan",
        &vxlan[0].samples.row(),
        &vxlan[1].samples.row(),
        "kernel",
        false,
    );
    print_table(
        "one host, the switch daemon with --busy-poll (a core kept busy) and a bridge, measured after the rest",
        &busy,
    );
    ratios(
        "local-busy-poll",
        &busy[0].samples.row(),
        &busy[1].samples.row(),
        "bridge",
        false,
    );
    let (ours, bridge) = (busy[0].samples.row(), busy[1].samples.row());
    println!(
        "RESULT switch local ping p50 busy-poll/bridge {:.2} (host taps, recorded)",
        ours.p50 / bridge.p50,
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
        tx_dropped(&local[2].pair.client, &ta),
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

// ---- VM ports: test guests under TCG ---------------------------------------------------------

/// TCP transfer size per round, MiB.
const VM_TCP_MIB: u32 = 16;
/// Pings per latency measure.
const VM_PINGS: u32 = 100;
/// Seconds of `ping -A` per round-trip-rate measure.
const VM_RR_SECONDS: u32 = 3;
const BOOT_LIMIT: Duration = Duration::from_secs(240);

/// The guest image directory: `VINFRA_GUEST_DIR` or the default.
fn guest_dir() -> PathBuf {
    std::env::var_os("VINFRA_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(common::GUEST_DIR))
}

/// A test guest (TCG, 256 MiB, one virtio-net NIC given as `netdev`), optionally started inside
/// a namespace; its serial console goes to a file and a shell waits on its second serial port.
/// Killed on drop.
struct Guest {
    child: Child,
    serial: PathBuf,
    shell: PathBuf,
}

impl Guest {
    fn start(ns: Option<&str>, dir: &Path, tag: &str, netdev: &str, mac: &str, ip: &str) -> Guest {
        let image = guest_dir();
        let serial = dir.join(format!("{tag}.serial"));
        let shell = dir.join(format!("{tag}.shell"));
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(["-nodefaults", "-display", "none", "-no-reboot", "-m", "256"])
            .args(["-machine", "q35,accel=tcg"])
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(image.join("initrd.img"))
            .args([
                "-append",
                &format!("console=ttyS0 panic=-1 no_timer_check vinfra.ip={ip}/24 vinfra.shell=1"),
            ])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args([
                "-chardev",
                &format!("socket,id=sh0,path={},server=on,wait=off", shell.display()),
            ])
            .args(["-serial", "chardev:sh0"])
            .args(["-netdev", netdev])
            .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={mac}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start qemu");
        Guest {
            child,
            serial,
            shell,
        }
    }

    fn log(&self) -> String {
        std::fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the guest booted with its shell (and its address) up.
    fn wait_ready(&mut self, what: &str) {
        let ok = common::wait_for(BOOT_LIMIT, || {
            let log = self.log();
            log.contains("VINFRA-GUEST SHELL") && log.contains("VINFRA-COUNTER 2 ")
        });
        let alive = matches!(self.child.try_wait(), Ok(None));
        assert!(
            ok,
            "{what}: the guest did not come up with a shell on ttyS1 (alive: {alive}); an image \
             without vinfra.shell needs rebuilding (scripts/build-guest-image.sh); serial: {}",
            self.log()
        );
    }

    /// A connection to the guest's shell.
    fn shell(&self) -> Shell {
        let stream = std::os::unix::net::UnixStream::connect(&self.shell).expect("guest shell");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        Shell {
            reader: std::io::BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
            n: 0,
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shell on a guest's serial port: commands in, output lines back.
struct Shell {
    reader: std::io::BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
    n: u32,
}

impl Shell {
    /// Starts `cmd`; [`Shell::wait`] collects its output.
    fn start(&mut self, cmd: &str) -> u32 {
        use std::io::Write;
        self.n += 1;
        let line = format!("{cmd}; echo VINFRA-END-{} $?\n", self.n);
        self.writer
            .write_all(line.as_bytes())
            .expect("to the guest");
        self.n
    }

    /// The output lines of command `n` (up to its end marker).
    fn wait(&mut self, n: u32) -> Vec<String> {
        use std::io::BufRead;
        let marker = format!("VINFRA-END-{n} ");
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let got = self.reader.read_line(&mut line).expect("from the guest");
            assert!(got > 0, "guest shell closed");
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if line.contains(&marker) {
                return out;
            }
            out.push(line);
        }
    }

    fn run(&mut self, cmd: &str) -> Vec<String> {
        let n = self.start(cmd);
        self.wait(n)
    }
}

/// Two guests joined by one path: `a` (10.98.0.1) serves, `b` (10.98.0.2) measures.
struct GuestPair {
    label: &'static str,
    /// The guests run as long as the pair lives.
    _guests: (Guest, Guest),
    sa: Shell,
    sb: Shell,
    tcp: Vec<f64>,
    rr: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl GuestPair {
    fn new(label: &'static str, mut a: Guest, mut b: Guest) -> GuestPair {
        a.wait_ready(label);
        b.wait_ready(label);
        let (mut sa, mut sb) = (a.shell(), b.shell());
        // ARP and learning, and the shells answering.
        for sh in [&mut sa, &mut sb] {
            sh.run("PS1=");
        }
        let ping = sb.run("ping -c 3 -W 2 10.98.0.1 >/dev/null 2>&1; echo rc=$?");
        assert!(
            ping.iter().any(|l| l.contains("rc=0")),
            "{label}: guests cannot reach each other: {ping:?}"
        );
        GuestPair {
            label,
            _guests: (a, b),
            sa,
            sb,
            tcp: vec![],
            rr: vec![],
            p50: vec![],
            p99: vec![],
        }
    }

    /// TCP from b to a: Mbit/s as the receiving guest timed it (first byte to end of stream).
    fn tcp_mbits(&mut self) -> f64 {
        let server = self.sa.start(
            "nc -l -p 5001 | { dd bs=1 count=1 of=/dev/null 2>/dev/null; read -r t0 _ </proc/uptime; \
             n=$(wc -c); read -r t1 _ </proc/uptime; echo VINFRA-TCP $n $t0 $t1; }",
        );
        std::thread::sleep(Duration::from_millis(500));
        self.sb.run(&format!(
            "dd if=/dev/zero bs=65536 count={} 2>/dev/null | nc 10.98.0.1 5001",
            VM_TCP_MIB * 16
        ));
        let out = self.sa.wait(server);
        let line = out
            .iter()
            .find_map(|l| l.split_once("VINFRA-TCP ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("{}: no TCP result: {out:?}", self.label));
        let f: Vec<f64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let (bytes, secs) = (f[0] + 1.0, f[2] - f[1]);
        if secs <= 0.0 {
            return f64::NAN;
        }
        bytes * 8.0 / secs / 1e6
    }

    /// Round trips per second of 60-byte frames, one in flight (`ping -A -s 18`).
    fn round_trips(&mut self) -> f64 {
        let out = self.sb.run(&format!(
            "ping -q -A -s 18 -w {VM_RR_SECONDS} 10.98.0.1 2>&1 | grep received"
        ));
        let received = out
            .iter()
            .find_map(|l| {
                l.split(',')
                    .find(|p| p.contains("received"))?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        received / f64::from(VM_RR_SECONDS)
    }

    /// Ping RTT p50, p99 in ms (`VM_PINGS` pings at 20 ms).
    fn ping_ms(&mut self) -> (f64, f64) {
        let out = self
            .sb
            .run(&format!("ping -c {VM_PINGS} -i 0.02 10.98.0.1 2>&1"));
        let mut rtts: Vec<f64> = out
            .iter()
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
}

/// Two guests in namespace `ns` on taps QEMU creates (`<prefix>a`, `<prefix>b`; MACs
/// 52:54:00:98:0`<n>`:01/02, 10.98.0.1/2), once both taps exist. Returns them and their taps.
fn tap_guests(ns: &Netns, dir: &Path, prefix: &str, n: u8) -> (Guest, Guest, [String; 2]) {
    let taps = [name("q"), name("q")];
    let start = |i: usize| {
        Guest::start(
            Some(&ns.name),
            dir,
            &format!("{prefix}{}", ['a', 'b'][i]),
            &format!("tap,id=n0,ifname={},script=no,downscript=no", taps[i]),
            &format!("52:54:00:98:0{n}:0{}", i + 1),
            &format!("10.98.0.{}", i + 1),
        )
    };
    let (a, b) = (start(0), start(1));
    for tap in &taps {
        assert!(
            common::wait_for(Duration::from_secs(30), || ns
                .try_exec(&["ip", "link", "show", tap])),
            "QEMU did not create tap {tap}"
        );
    }
    (a, b, taps)
}

/// Two guests per path (vinfra VM taps, vinfra VM sockets, QEMU taps on a Linux bridge, QEMU taps
/// on OVS netdev),
/// measured in `rounds` interleaved rounds.
fn vm_paths(rounds: u32) {
    if !guest_dir().join("vmlinuz").exists() {
        println!(
            "VM ports: no guest image in {} (scripts/build-guest-image.sh)",
            guest_dir().display()
        );
        println!("RESULT switch vm tcp vinfra/bridge n/a (no guest image): FAIL");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut pairs = Vec::new();

    // vinfra switch: two VM tap ports, QEMU -netdev tap, as the agent attaches a vNIC; its
    // guests run in the switch's namespace (the taps are there).
    let host = netns("vm");
    let daemon = Daemon::start(&host, d, None);
    let mut client = daemon.client();
    // Each pair on its own network (both use 10.98.0.1 and .2).
    let mut reqs = vec![overlay(1, 100), overlay(2, 101)];
    let mut tap_netdevs = Vec::new();
    for (port, tap) in [(3u32, "vtapa"), (4, "vtapb")] {
        reqs.push(Request::AddPort(vinfra_switch_control::PortSpec {
            id: port,
            mtu: 1500,
            attach: vinfra_switch_control::Attachment::VmTap {
                network: 2,
                tap: tap.to_string(),
                owner: None,
            },
        }));
        tap_netdevs.push(format!(
            "tap,id=n0,ifname={tap},script=no,downscript=no,vnet_hdr=on"
        ));
    }
    // And two VM socket ports, QEMU -netdev dgram.
    let mut netdevs = Vec::new();
    for (port, tag) in [(1u32, "va"), (2, "vb")] {
        let (socket, peer) = (
            d.join(format!("{tag}-sw.sock")),
            d.join(format!("{tag}-vm.sock")),
        );
        reqs.push(Request::AddPort(vinfra_switch_control::PortSpec {
            id: port,
            mtu: 1500,
            attach: vinfra_switch_control::Attachment::Vm {
                network: 1,
                socket: socket.clone(),
                peer: peer.clone(),
                owner: None,
            },
        }));
        netdevs.push(format!(
            "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            peer.display(),
            socket.display()
        ));
    }
    client
        .apply(&reqs)
        .expect("configure the switch's VM ports");
    let a = Guest::start(None, d, "va", &netdevs[0], "52:54:00:98:00:01", "10.98.0.1");
    let b = Guest::start(None, d, "vb", &netdevs[1], "52:54:00:98:00:02", "10.98.0.2");
    let ta = Guest::start(
        Some(&host.name),
        d,
        "ta",
        &tap_netdevs[0],
        "52:54:00:98:00:11",
        "10.98.0.1",
    );
    let tb = Guest::start(
        Some(&host.name),
        d,
        "tb",
        &tap_netdevs[1],
        "52:54:00:98:00:12",
        "10.98.0.2",
    );

    // Linux bridge: QEMU creates its taps in the bridge's namespace.
    let brns = netns("vbr");
    brns.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
    brns.exec(&["ip", "link", "set", "br0", "up"]);
    let (ba, bb, [bta, btb]) = tap_guests(&brns, d, "b", 1);
    for tap in [&bta, &btb] {
        brns.exec(&["ip", "link", "set", tap, "master", "br0", "up"]);
    }

    // Open vSwitch netdev: the same taps, as system ports of a private OVS.
    let ovsns = netns("vovs");
    let ovs = Ovs::available().then(|| {
        let ovs = Ovs::start(&ovsns);
        ovs.vsctl(&[
            "add-br",
            "br-vm",
            "--",
            "set",
            "bridge",
            "br-vm",
            "datapath_type=netdev",
        ]);
        let (oa, ob, taps) = tap_guests(&ovsns, d, "o", 2);
        for tap in &taps {
            ovsns.exec(&["ip", "link", "set", tap, "up"]);
            ovs.vsctl(&["add-port", "br-vm", tap]);
        }
        (ovs, oa, ob)
    });

    pairs.push(GuestPair::new("vinfra VM taps", ta, tb));
    pairs.push(GuestPair::new("vinfra VM sockets", a, b));
    pairs.push(GuestPair::new("bridge + taps", ba, bb));
    let ovs = ovs.map(|(ovs, oa, ob)| {
        pairs.push(GuestPair::new("ovs + taps", oa, ob));
        ovs
    });
    if ovs.is_none() {
        println!("Open vSwitch not installed: its VM row is skipped");
    }
    for (i, tap) in [&bta, &btb].iter().enumerate() {
        println!(
            "  bridge guest tap {i} {tap}: {}",
            offloads(&brns.name, tap)
        );
    }

    for round in 1..=rounds {
        for p in pairs.iter_mut() {
            let tcp = p.tcp_mbits();
            let rr = p.round_trips();
            let (p50, p99) = p.ping_ms();
            eprintln!(
                "round {round} {:<16} TCP {tcp:.1} Mbit/s, {rr:.0} round trips/s, ping {p50:.3}/{p99:.3} ms",
                p.label
            );
            p.tcp.push(tcp);
            p.rr.push(rr);
            p.p50.push(p50);
            p.p99.push(p99);
        }
    }
    println!();
    println!(
        "== VM ports, two TCG guests per path, medians of {rounds} rounds: TCP {VM_TCP_MIB} MiB (dd | nc), \
         ping -A -s 18 for {VM_RR_SECONDS} s, {VM_PINGS} pings at 20 ms (load {})",
        endpoints::load()
    );
    println!(
        "  {:<16} {:>11} {:>14} {:>11} {:>11}",
        "path", "TCP Mbit/s", "round trips/s", "ping p50 ms", "ping p99 ms"
    );
    let row = |p: &GuestPair| {
        (
            median(p.tcp.clone()),
            median(p.rr.clone()),
            median(p.p50.clone()),
            median(p.p99.clone()),
        )
    };
    for p in &pairs {
        let (t, r, a, b) = row(p);
        println!("  {:<16} {t:>11.1} {r:>14.0} {a:>11.3} {b:>11.3}", p.label);
        println!(
            "  {:<16} rounds: TCP {:?}, round trips {:?}",
            "",
            p.tcp
                .iter()
                .map(|x| (x * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            p.rr.iter().map(|x| x.round()).collect::<Vec<_>>()
        );
    }
    let ours = row(&pairs[0]);
    for p in &pairs[1..] {
        let peer = row(p);
        let name = if p.label.starts_with("ovs") {
            "ovs"
        } else if p.label.starts_with("vinfra") {
            "sockets"
        } else {
            "bridge"
        };
        println!(
            "  ratio vinfra/{name}: TCP {:.2}x, round trips {:.2}x, ping p50 {:.2}x, p99 {:.2}x",
            ours.0 / peer.0,
            ours.1 / peer.1,
            ours.2 / peer.2,
            ours.3 / peer.3
        );
        for (what, r) in [("tcp", ours.0 / peer.0), ("rr", ours.1 / peer.1)] {
            // As for host ports: Open vSwitch userspace is the bar (issue 3); the bridge is
            // recorded.
            if name == "ovs" {
                let verdict = if r >= 1.0 { "PASS" } else { "FAIL" };
                println!("RESULT switch vm {what} vinfra/{name} {r:.2} target >= 1.00: {verdict}");
            } else {
                println!("RESULT switch vm {what} vinfra/{name} {r:.2} (recorded)");
            }
        }
    }
    let c = client.counters().expect("counters");
    let errors: u64 = c.ports.iter().map(|p| p.tx_errors).sum();
    println!("switch vm: tx errors {errors}");
    drop(pairs);
    drop(ovs);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut nums = args.iter().filter_map(|a| a.parse::<u32>().ok());
    let seconds = nums.next().unwrap_or(5);
    let rounds = nums.next().unwrap_or(3).max(1);
    let host = args.iter().any(|a| a == "host");
    let vm = args.iter().any(|a| a == "vm");
    let (host, vm) = if host || vm { (host, vm) } else { (true, true) };
    if host {
        host_paths(seconds, rounds);
    }
    if vm {
        vm_paths(rounds);
    }
}
