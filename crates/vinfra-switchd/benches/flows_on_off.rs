//! What flow accounting costs the switch daemon: the same routed path twice, once with the
//! switch counting flows (the default) and once without, between the same kind of endpoints,
//! in the same run.
//!
//! Paths: two switch daemons, each in a host namespace of its own, each with two interface
//! ports (a veth from each endpoint, read as a VM's tap is) on two overlay networks (VNI 100,
//! 10.88.1.0/24; VNI 101, 10.88.2.0/24) of one router whose gateways are .1 (checksum and TSO
//! offered, as a VM's virtio-net does); the client is .2 on the first network, the server .2
//! on the second; every packet crosses the router and is counted on its access port when
//! accounting is on. Both daemons run with `--no-fast-path`: on the daemon's path the switch
//! counts every packet itself (the cost measured here); flows the kernel fast path carries
//! are counted from its counters once a second, at no cost per packet. The second daemon has
//! accounting off (`set_flow_accounting`, `enabled: false`).
//!
//! Each round, each path (alternating which goes first): iperf3 TCP (Gbit/s, retransmits) and
//! the 64-byte UDP generator (Mpps sent and received) of the `throughput` bench. Medians over
//! the rounds; the ratios on/off.
//!
//! Target (issue 12): flow accounting costs at most 5 % of throughput
//! (`RESULT flows_tcp_on_vs_off … PASS|FAIL` and `RESULT flows_64b_on_vs_off …` against 0.95).
//!
//! Root only; needs `iperf3` and `ping`. Namespaces are named `swb-…` and deleted at the end.
//!
//!     cargo bench -p vinfra-switchd --bench flows_on_off [-- [SECONDS [ROUNDS]]]

#[path = "../tests/common/mod.rs"]
mod common;
mod endpoints;

use endpoints::{routed_daemon, side_by_side};

/// Seconds of a 64-byte UDP measure.
const UDP_SECONDS: f64 = 3.0;
/// The target ratio, accounting on over off.
const TARGET: f64 = 0.95;

fn main() {
    let (seconds, rounds) = endpoints::seconds_and_rounds();
    if !common::needs()
        .program("iperf3")
        .program("ping")
        .named("flow accounting bench")
        .met()
    {
        return;
    }
    let (dir_on, dir_off) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let on = routed_daemon(
        dir_on.path(),
        true,
        "flow accounting on",
        &["--no-fast-path"],
    );
    let off = routed_daemon(
        dir_off.path(),
        false,
        "flow accounting off",
        &["--no-fast-path"],
    );
    side_by_side(
        [("on", &on.pair), ("off", &off.pair)],
        seconds,
        rounds,
        UDP_SECONDS,
        ("flows_tcp_on_vs_off", "flows_64b_on_vs_off"),
        TARGET,
    );
}
