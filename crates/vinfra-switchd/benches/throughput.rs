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
//! joined by a veth underlay) over VXLAN: two `vinfra switch` daemons with the VXLAN uplink and
//! interface ports on veths to the endpoints (the kernel fast path encapsulating and
//! decapsulating the established flows' large segments; TCP carries the 0.8× target) against
//! the kernel's vxlan device + Linux bridge in each host, on the same kind of veths.
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
mod guests;
mod ovs;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{attach_tap, name, overlay, sh, Daemon, Netns};
use endpoints::{
    bridge_path, interface_path_with, iperf_gbits, median, netns, offloads, ping_percentiles,
    ready, switch_path, switch_path_with, tx_dropped, udp_mpps, udp_rcvbuf_errors, veth_to,
    BridgePath, Pair, SwitchPath, PINGS,
};
use ovs::Ovs;
use vinfra_switch_control::{Attachment, PortSpec, Request};

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
        ovs.netdev_bridge("br-bench");
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
    // Interface ports on veths to the endpoints, as the kernel's bridges have: the kernel
    // fast path encapsulates and decapsulates the established flows' large segments.
    let vx_switch = Pair::new("10.95.0.2");
    let (xa, outer_a) = veth_to(&vx_switch.client, "10.95.0.1/24", 1450, &ha);
    let (_, outer_b) = veth_to(&vx_switch.server, "10.95.0.2/24", 1450, &hb);
    for (c, dev, other) in [(&mut ca, &outer_a, vtep_b), (&mut cb, &outer_b, vtep_a)] {
        c.apply(&[
            overlay(1, 5000),
            Request::AddPort(PortSpec {
                id: 1,
                mtu: 1450,
                attach: Attachment::Interface {
                    network: 1,
                    interface: dev.clone(),
                },
            }),
            Request::SetFloodList {
                network: 1,
                vteps: vec![other],
            },
        ])
        .expect("configure a VXLAN switch");
    }
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
    let (ours, kernel) = (vxlan[0].samples.row(), vxlan[1].samples.row());
    ratios("vxlan", &ours, &kernel, "kernel", false);
    // The target holds for the path a VM's traffic takes: the kernel fast path at both hosts.
    let mut fast_frames = Vec::new();
    for (what, c) in [("A", &mut ca), ("B", &mut cb)] {
        let f = c.counters().ok().and_then(|c| c.fast_path).map(|f| *f);
        if let Some(f) = f {
            println!(
                "  vinfra VXLAN host {what}, kernel fast path: {} flows installed, {} frames, {} bytes, {} flushes",
                f.installed, f.frames, f.bytes, f.flushes
            );
        }
        fast_frames.push(f.map_or(0, |f| f.frames));
    }
    if fast_frames.iter().all(|&n| n > 0) {
        let r = ours.tcp / kernel.tcp;
        let verdict = if r >= 0.8 { "PASS" } else { "FAIL" };
        println!(
            "RESULT switch vxlan fast-path tcp vinfra/kernel {r:.2} target >= 0.80: {verdict}"
        );
    } else {
        println!("RESULT switch vxlan fast path not used (see the daemons' logs): FAIL");
    }
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
        guests::vm_paths(rounds);
    }
}
