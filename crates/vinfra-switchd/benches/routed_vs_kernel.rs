//! Routing between two networks: vinfra's router (the switch's kernel fast path for
//! established flows, the daemon for the rest) against Linux kernel forwarding, between the
//! same endpoints, in the same run.
//!
//! Paths: the vinfra switch daemon with two interface ports on two overlay networks (VNI 100,
//! 10.88.1.0/24; VNI 101, 10.88.2.0/24) of one router whose gateways are .1: a veth from each
//! endpoint, read and written as a VM's tap is, so that the kernel fast path routes the
//! established flows as it does a VM's (checksum and TSO offered to the endpoints' stacks, as
//! a VM's virtio-net does); and a router namespace with `net.ipv4.ip_forward=1` and a veth to
//! each endpoint (the same veths and offloads), gateways .1 likewise. With `--no-fast-path`
//! among the arguments, the daemon runs without the fast path (everything through its thread). Each endpoint has a default route to its gateway: the client is .2 on
//! the first network, the server .2 on the second; every packet crosses one router.
//!
//! Each round, each path (alternating which goes first): iperf3 TCP (Gbit/s, retransmits) and
//! the 64-byte UDP generator (Mpps sent and received) of the `throughput` bench. Medians over
//! the rounds; the ratios vinfra/kernel.
//!
//! Target (issue 12): routed TCP throughput at least 0.9 times the kernel's
//! (`RESULT routed_tcp_vs_kernel … PASS|FAIL`); the 64-byte packet rate ratio is printed as
//! `RESULT routed_64b_vs_kernel …` against the same 0.9.
//!
//! Root only; needs `iperf3` and `ping`. Namespaces are named `swb-…` and deleted at the end.
//!
//!     cargo bench -p vinfra-switchd --bench routed_vs_kernel [-- [SECONDS [ROUNDS]] [--no-fast-path]]

#[path = "../tests/common/mod.rs"]
mod common;
mod endpoints;

use common::Netns;
use endpoints::{netns, routed_daemon, side_by_side, veth_to, Pair};

/// Seconds of a 64-byte UDP measure.
const UDP_SECONDS: f64 = 3.0;
/// The target ratio, vinfra over the kernel.
const TARGET: f64 = 0.9;

/// The kernel's path: a router namespace forwarding between two veths.
struct Kernel {
    pair: Pair,
    _router: Netns,
}

fn kernel_path() -> Kernel {
    let router = netns("r");
    router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let pair = Pair::new("10.88.2.2");
    let (_, client_end) = veth_to(&pair.client, "10.88.1.2/24", 1500, &router);
    let (_, server_end) = veth_to(&pair.server, "10.88.2.2/24", 1500, &router);
    router.exec(&["ip", "addr", "add", "10.88.1.1/24", "dev", &client_end]);
    router.exec(&["ip", "addr", "add", "10.88.2.1/24", "dev", &server_end]);
    pair.client
        .exec(&["ip", "route", "add", "default", "via", "10.88.1.1"]);
    pair.server
        .exec(&["ip", "route", "add", "default", "via", "10.88.2.1"]);
    endpoints::ready(&pair, "kernel forwarding");
    Kernel {
        pair,
        _router: router,
    }
}

fn main() {
    let (seconds, rounds) = endpoints::seconds_and_rounds();
    if !common::needs()
        .program("iperf3")
        .program("ping")
        .named("routed bench")
        .met()
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let args: &[&str] = if std::env::args().any(|a| a == "--no-fast-path") {
        &["--no-fast-path"]
    } else {
        &[]
    };
    let mut vinfra = routed_daemon(dir.path(), true, "vinfra router", args);
    let kernel = kernel_path();
    side_by_side(
        [("vinfra", &vinfra.pair), ("kernel", &kernel.pair)],
        seconds,
        rounds,
        UDP_SECONDS,
        ("routed_tcp_vs_kernel", "routed_64b_vs_kernel"),
        TARGET,
    );
    // Which path vinfra's numbers are: a daemon that could not start its fast path says so.
    let fast = vinfra.fast_path();
    println!("vinfra's kernel fast path: {fast:?}");
    if args.is_empty() {
        let used = fast.is_some_and(|f| f.frames > 0);
        println!(
            "RESULT routed_fast_path_used {} {}",
            u8::from(used),
            if used { "PASS" } else { "FAIL" }
        );
    }
}
