//! The kernel fast path over VXLAN: two hosts (namespaces joined by a veth underlay), a daemon
//! in each with its VXLAN uplink and an interface port (a veth to an endpoint namespace) on
//! one overlay network. Established TCP's large segments leave encapsulated by the kernel and
//! arrive decapsulated by it, in both directions, and pings do, every byte intact; both
//! switches count what their kernel carried (fast path and uplink counters). The same with
//! VM taps (QEMU's end played by a relay, as in `fastpath.rs`). A host without a fast path (`--no-fast-path`) takes the large
//! segments another host's kernel encapsulated whole (a veth underlay cuts nothing) and cuts
//! them itself.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::relay::{open_as_qemu, relay};
use common::*;
use vinfra_switch_control::{
    Attachment, CountersView, FastPathView, PortSpec, Request, SwitchClient, UPLINK_PORT,
};

/// Both hosts' fast path counters.
fn fast_both(a: &mut SwitchClient, b: &mut SwitchClient) -> (FastPathView, FastPathView) {
    (fast(&a.counters().unwrap()), fast(&b.counters().unwrap()))
}

fn fast(c: &CountersView) -> FastPathView {
    *c.fast_path
        .clone()
        .expect("the switch has a kernel fast path")
}

/// What a host's endpoint is behind.
#[derive(Clone, Copy, PartialEq)]
enum Ends {
    /// An interface port: a veth into the endpoint's namespace.
    Interfaces,
    /// A VM tap, relayed to a veth into the endpoint's namespace (TSO and checksum offload
    /// on), as QEMU and a guest would.
    VmTaps,
}

/// Two hosts over VXLAN with their endpoints on network 1 (VNI 5074), port 1.
struct Pair {
    /// The relays (VM taps): stopped and joined on drop.
    stop: Arc<AtomicBool>,
    largest: Arc<[AtomicUsize; 2]>,
    relays: Vec<JoinHandle<()>>,
    a: SwitchClient,
    b: SwitchClient,
    da: Daemon,
    db: Daemon,
    ea: Netns,
    eb: Netns,
    _ha: Netns,
    _hb: Netns,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.relays.drain(..) {
            let _ = t.join();
        }
    }
}

/// `b_args`: host B's daemon's arguments.
fn pair(dir: &std::path::Path, ends: Ends, b_args: &[&str]) -> Pair {
    let (ha, hb) = (Netns::new("ha"), Netns::new("hb"));
    let (ea, eb) = (Netns::new("ea"), Netns::new("eb"));
    let (ua, ub) = (name("u"), name("u"));
    sh(&[
        "ip", "link", "add", &ua, "netns", &ha.name, "type", "veth", "peer", "name", &ub, "netns",
        &hb.name,
    ]);
    let (vtep_a, vtep_b) = (Ipv4Addr::new(10, 74, 0, 1), Ipv4Addr::new(10, 74, 0, 2));
    for (ns, dev, ip) in [(&ha, &ua, vtep_a), (&hb, &ub, vtep_b)] {
        ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", dev]);
        ns.exec(&["ip", "link", "set", dev, "up"]);
    }
    let da = Daemon::start(&ha, dir, Some(vtep_a));
    let db = Daemon::start_with(&hb, dir, Some(vtep_b), &[], b_args);
    let (mut a, mut b) = (da.client(), db.client());
    let stop = Arc::new(AtomicBool::new(false));
    let largest = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut relays = Vec::new();
    for (client, host, ep, cidr, other) in [
        (&mut a, &ha, &ea, "10.75.0.1/24", vtep_b),
        (&mut b, &hb, &eb, "10.75.0.2/24", vtep_a),
    ] {
        let dev = name("i");
        host.exec(&[
            "ip", "link", "add", &dev, "type", "veth", "peer", "name", "eth0", "netns", &ep.name,
        ]);
        ep.exec(&["ip", "addr", "add", cidr, "dev", "eth0"]);
        ep.exec(&["ip", "link", "set", "eth0", "mtu", "1450", "up"]);
        let attach = match ends {
            Ends::Interfaces => Attachment::Interface {
                network: 1,
                interface: dev.clone(),
            },
            Ends::VmTaps => Attachment::VmTap {
                network: 1,
                tap: name("q"),
                owner: None,
            },
        };
        client
            .apply(&[
                overlay(1, 5074),
                Request::AddPort(PortSpec {
                    id: 1,
                    mtu: 1450,
                    attach: attach.clone(),
                }),
                Request::SetFloodList {
                    network: 1,
                    vteps: vec![other],
                },
            ])
            .unwrap();
        if let Attachment::VmTap { tap, .. } = attach {
            ep.exec(&["ethtool", "-K", "eth0", "tx", "on", "tso", "on"]);
            host.exec(&["ip", "link", "set", &dev, "up"]);
            relays.extend(relay(
                host,
                dev,
                open_as_qemu(host, &tap),
                stop.clone(),
                largest.clone(),
            ));
        }
    }
    Pair {
        stop,
        largest,
        relays,
        a,
        b,
        da,
        db,
        ea,
        eb,
        _ha: ha,
        _hb: hb,
    }
}

#[test]
fn tcp_and_pings_between_hosts_go_through_the_kernel_both_ways() {
    if !common::needs().program("clang").met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut p = pair(dir.path(), Ends::Interfaces, &[]);
    let logs = |p: &Pair| format!("{}\n{}", p.da.log_text(), p.db.log_text());
    assert!(p.ea.ping_until("10.75.0.2", 10), "{}", logs(&p));
    let (a0, b0) = fast_both(&mut p.a, &mut p.b);
    // Echo requests and replies: encapsulated by one host's kernel, decapsulated by the
    // other's, after the first.
    p.ea.exec(&["ping", "-q", "-c", "20", "-i", "0.02", "10.75.0.2"]);
    let (a1, b1) = fast_both(&mut p.a, &mut p.b);
    assert!(a1.frames >= a0.frames + 30, "{a1:?}");
    assert!(b1.frames >= b0.frames + 30, "{b1:?}");

    // TCP both ways: the data's large segments through both kernels, intact.
    let bytes = 64 << 20;
    let limit = Duration::from_secs(60);
    for (server, ip, client) in [
        (&p.eb, Ipv4Addr::new(10, 75, 0, 2), &p.ea),
        (&p.ea, Ipv4Addr::new(10, 75, 0, 1), &p.eb),
    ] {
        let (a, b) = fast_both(&mut p.a, &mut p.b);
        let got = tcp_transfer(server, ip, client, bytes, limit);
        assert_eq!(got, bytes, "{}", logs(&p));
        let (a2, b2) = fast_both(&mut p.a, &mut p.b);
        // Bytes as the access ports see them: the sender's kernel encapsulated most of the
        // data, the receiver's decapsulated it.
        assert!(a2.bytes - a.bytes > bytes as u64 / 2, "{a2:?}");
        assert!(b2.bytes - b.bytes > bytes as u64 / 2, "{b2:?}");
    }
    // The uplinks count what the kernels carried (each way's data, encapsulated).
    for client in [&mut p.a, &mut p.b] {
        let c = client.counters().unwrap();
        let up = c.port(UPLINK_PORT).expect("the uplink's counters");
        assert!(up.traffic.tx_bytes > bytes as u64, "{up:#?}");
        assert!(up.traffic.rx_bytes > bytes as u64, "{up:#?}");
        let port = c.port(1).unwrap();
        assert!(port.traffic.rx_bytes > bytes as u64, "{port:#?}");
        assert!(port.traffic.tx_bytes > bytes as u64, "{port:#?}");
    }
}

#[test]
fn tcp_between_vm_taps_on_two_hosts_goes_through_the_kernel() {
    if !common::needs().program("clang").program("ethtool").met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut p = pair(dir.path(), Ends::VmTaps, &[]);
    let logs = |p: &Pair| format!("{}\n{}", p.da.log_text(), p.db.log_text());
    assert!(p.ea.ping_until("10.75.0.2", 10), "{}", logs(&p));
    let (a, b) = fast_both(&mut p.a, &mut p.b);
    let bytes = 32 << 20;
    let got = tcp_transfer(
        &p.eb,
        Ipv4Addr::new(10, 75, 0, 2),
        &p.ea,
        bytes,
        Duration::from_secs(60),
    );
    assert_eq!(got, bytes, "{}", logs(&p));
    let (a2, b2) = fast_both(&mut p.a, &mut p.b);
    assert!(a2.bytes - a.bytes > bytes as u64 / 2, "{a2:?}");
    assert!(b2.bytes - b.bytes > bytes as u64 / 2, "{b2:?}");
    // The relays saw frames (the decapsulated large segments reach a tap cut by the kernel:
    // the tap does not offer the tunnel's segmentation their GSO type still names).
    assert!(p.largest[0].load(Ordering::Relaxed) > 0);
}

#[test]
fn a_host_without_a_fast_path_cuts_the_large_segments_another_sent_whole() {
    if !common::needs().program("clang").met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut p = pair(dir.path(), Ends::Interfaces, &["--no-fast-path"]);
    let logs = |p: &Pair| format!("{}\n{}", p.da.log_text(), p.db.log_text());
    assert!(p.ea.ping_until("10.75.0.2", 10), "{}", logs(&p));
    assert!(p.b.counters().unwrap().fast_path.is_none());
    let a = fast(&p.a.counters().unwrap());
    let bytes = 32 << 20;
    let got = tcp_transfer(
        &p.eb,
        Ipv4Addr::new(10, 75, 0, 2),
        &p.ea,
        bytes,
        Duration::from_secs(60),
    );
    assert_eq!(got, bytes, "{}", logs(&p));
    // Host A's kernel encapsulated the data's large segments; host B's daemon cut them and
    // dropped none as oversized.
    let a2 = fast(&p.a.counters().unwrap());
    assert!(a2.bytes - a.bytes > bytes as u64 / 2, "{a2:?}");
    let c = p.b.counters().unwrap();
    let up = c.port(UPLINK_PORT).unwrap();
    assert_eq!(up.traffic.drops_total(), 0, "{up:#?}");
    assert!(c.port(1).unwrap().traffic.tx_bytes > bytes as u64, "{c:#?}");
}
