//! Source NAT from a tenant network to an external one: vinfra's router uplink (the switch
//! daemon as the router's edge) against Linux kernel forwarding with nftables `masquerade`,
//! between the same endpoints, in the same run.
//!
//! Paths: the vinfra switch daemon with a tap host port on an overlay network (VNI 100,
//! 10.89.1.0/24, the client .2, the router's gateway .1) and a tap host port on a VLAN network
//! (VLAN 200, 10.89.2.0/24, the server .2) where the router has its uplink at .1, this switch
//! being its edge; and a router namespace with `net.ipv4.ip_forward=1`, a veth to each
//! endpoint and an nftables `masquerade` rule on the server's side. The client has a default
//! route to its gateway; the server has no route to the client's network at all: every reply
//! goes to the translated address. Offloads: the taps offer checksum and TSO (as a VM's
//! virtio-net does), the veths the same.
//!
//! Each round, each path (alternating which goes first): iperf3 TCP (Gbit/s, retransmits) and
//! the 64-byte UDP generator (Mpps sent and received) of the `throughput` bench. Medians over
//! the rounds; the ratios vinfra/kernel, printed as `RESULT snat_tcp_vs_masquerade …` and
//! `RESULT snat_64b_vs_masquerade …` against 0.9 (the routed target of issue 12).
//!
//! Root only; needs `iperf3`, `ping` and `nft`. Namespaces are named `swb-…` and deleted at
//! the end.
//!
//!     cargo bench -p vinfra-switchd --bench snat_vs_masquerade [-- [SECONDS [ROUNDS]]]

#[path = "../tests/common/mod.rs"]
mod common;
mod endpoints;

use common::{attach_tap, name, overlay, tap_port, Daemon, Netns};
use endpoints::{netns, side_by_side, veth_to, Pair};
use vinfra_switch_control::{EdgeSpec, Mac, NetworkSpec, Request, SwitchClient};

/// Seconds of a 64-byte UDP measure.
const UDP_SECONDS: f64 = 3.0;
/// The target ratio, vinfra over the kernel.
const TARGET: f64 = 0.9;

/// vinfra's path. Fields drop in order: the daemon stops before its namespace goes.
struct Vinfra {
    _control: SwitchClient,
    _daemon: Daemon,
    pair: Pair,
    _host: Netns,
}

fn vinfra_path(dir: &std::path::Path) -> Vinfra {
    let host = netns("h");
    let daemon = Daemon::start(&host, dir, None);
    let mut control = daemon.client();
    let (ta, tb) = (name("t"), name("t"));
    control
        .apply(&[
            overlay(1, 100),
            Request::AddNetwork {
                id: 2,
                kind: NetworkSpec::Vlan { vid: 200 },
            },
            tap_port(1, 1, &ta, 1500),
            tap_port(2, 2, &tb, 1500),
            Request::AddRouter { id: 1 },
            Request::SetRouterInterface {
                router: 1,
                network: 1,
                ip: "10.89.1.1".parse().expect("ip"),
                prefix_len: 24,
                mac: Mac([0x02, 0x76, 0x72, 0x00, 0x00, 0x01]),
                mtu: None,
            },
            Request::SetRouterUplink {
                router: 1,
                network: 2,
                ip: "10.89.2.1".parse().expect("ip"),
                prefix_len: 24,
                mac: Mac([0x02, 0x76, 0x72, 0x01, 0x00, 0x01]),
                edge: EdgeSpec::Local,
                transit_vni: 0xFF_0001,
                mtu: None,
            },
        ])
        .expect("configure the switch");
    let pair = Pair::new("10.89.2.2");
    attach_tap(&host, &ta, &pair.client, "10.89.1.2/24", 1500);
    attach_tap(&host, &tb, &pair.server, "10.89.2.2/24", 1500);
    pair.client
        .exec(&["ip", "route", "add", "default", "via", "10.89.1.1"]);
    endpoints::ready(&pair, "vinfra source NAT");
    Vinfra {
        _control: control,
        _daemon: daemon,
        pair,
        _host: host,
    }
}

/// The kernel's path: a router namespace forwarding between two veths, masquerading what
/// leaves towards the server.
struct Kernel {
    pair: Pair,
    _router: Netns,
}

fn kernel_path() -> Kernel {
    let router = netns("r");
    router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let pair = Pair::new("10.89.2.2");
    let (_, client_end) = veth_to(&pair.client, "10.89.1.2/24", 1500, &router);
    let (_, server_end) = veth_to(&pair.server, "10.89.2.2/24", 1500, &router);
    router.exec(&["ip", "addr", "add", "10.89.1.1/24", "dev", &client_end]);
    router.exec(&["ip", "addr", "add", "10.89.2.1/24", "dev", &server_end]);
    router.exec(&["nft", "add", "table", "ip", "nat"]);
    router.exec(&[
        "nft",
        "add chain ip nat post { type nat hook postrouting priority srcnat ; }",
    ]);
    router.exec(&[
        "nft",
        "add",
        "rule",
        "ip",
        "nat",
        "post",
        "oifname",
        &server_end,
        "masquerade",
    ]);
    pair.client
        .exec(&["ip", "route", "add", "default", "via", "10.89.1.1"]);
    endpoints::ready(&pair, "kernel masquerade");
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
        .program("nft")
        .named("SNAT bench")
        .met()
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let vinfra = vinfra_path(dir.path());
    let kernel = kernel_path();
    side_by_side(
        [("vinfra", &vinfra.pair), ("nft", &kernel.pair)],
        seconds,
        rounds,
        UDP_SECONDS,
        ("snat_tcp_vs_masquerade", "snat_64b_vs_masquerade"),
        TARGET,
    );
}
