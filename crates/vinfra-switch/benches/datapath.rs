//! Frames per second through the forwarding core (no I/O): 64-byte frames between two local
//! ports (with and without port security on the sending port), 64-byte frames
//! encapsulated to a remote VTEP, and 64-byte packets routed between two networks of a router
//! (VM to VM on this host). Prints Mpps.
//!
//! Target: at least 10 Mpps on each path (100 ns a frame), so the core stays a small part of a
//! frame's cost in the daemon, whose I/O takes microseconds a frame (docs/benchmarks.md); prints
//! `RESULT switch_core <path> … PASS|FAIL`.
//!
//! The firewall: 64-byte UDP frames between two firewalled VM ports (the sender's egress and the
//! receiver's ingress checked, one connection table) with 0 and with 10,000 rules on each port,
//! for an established flow and for first packets (every frame a new connection, the table
//! emptied between timed rounds). Target: 10,000 rules cost at most 10 % of the throughput with
//! 0 rules; prints `RESULT switch_core_firewall established_10k_rules <ratio> PASS|FAIL` (ratio:
//! frames per second with 10,000 rules over frames per second with 0). The rules are looked up
//! once per connection only, so the first-packet ratio is printed without a target: it is the
//! bound for traffic made of nothing but new connections (two lookups a frame, one per port).
//!
//! Flow accounting (on by default, so the paths above include it): 64-byte UDP frames between
//! two local ports with accounting off and on, one flow and 4,096 flows (a distinct source port
//! per frame, cycling), and routed. The two switches (off, on) run in 100 pairs of 20-ms slices,
//! which goes first alternating; the ratio is the median of the pairs' ratios, so that a slice
//! the machine's other work slowed down moves it little. Target: accounting costs at most 5 %
//! of the throughput; prints `RESULT switch_core_flows <case> <ratio> PASS|FAIL` (ratio: frames
//! per second on over off).
//!
//! `cargo bench -p vinfra-switch --bench datapath` (`-- flows`: the flow accounting cases only)

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, PortRange, Prefix, Protocol,
};
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, FlowTableSettings, Location, NetworkId, PortConfig, PortId,
    PortKind, PortPolicy, RouterId, Segment, StormControl, Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{udp, EtherType, EthernetRepr, Ipv4Repr, MacAddr, UdpRepr, Vni};

const BATCH: usize = 32;
const NET: NetworkId = NetworkId(1);
const UPLINK: PortId = PortId(100);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Frames per second each path must reach, in millions.
const TARGET_MPPS: f64 = 10.0;
/// The share of the throughput with 0 rules that 10,000 rules must keep.
const TARGET_RULES_RATIO: f64 = 0.90;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

/// A 64-byte frame (60 without FCS): Ethernet + IPv4/UDP-sized payload, 10.0.0.1 to 10.0.0.2.
fn frame64(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    frame64_to(dst, src, Ipv4Addr::new(10, 0, 0, 2))
}

/// The gateway MAC of network 1 in the routed case.
const GATEWAY: MacAddr = MacAddr([0x02, 0x76, 0x72, 0, 0, 1]);

/// A 64-byte frame from 10.0.0.1 to `to`.
fn frame64_to(dst: MacAddr, src: MacAddr, to: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    EthernetRepr {
        dst,
        src,
        vlan: None,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut f)
    .expect("room for the header");
    let ip = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: to,
        protocol: 253,
        payload_len: 60 - 14 - 20,
        ttl: 64,
        dscp_ecn: 0,
    };
    ip.emit(&mut vinfra_switch::wire::ipv4::Packet::new_unchecked(
        &mut f[14..],
    ))
    .expect("room for the header");
    f
}

fn switch() -> Switch {
    let vni = Vni::new(5001).expect("valid VNI");
    Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: NET,
                segment: Segment::Overlay { vni },
            },
            ConfigCommand::AddPort(PortConfig {
                id: UPLINK,
                kind: PortKind::VxlanUplink {
                    local_ip: Ipv4Addr::new(192, 0, 2, 1),
                    local_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 2])),
                },
                mtu: 1500,
            }),
            ConfigCommand::AddPort(PortConfig {
                id: PortId(1),
                kind: PortKind::Vm { network: NET },
                mtu: 1450,
            }),
            ConfigCommand::AddPort(PortConfig {
                id: PortId(2),
                kind: PortKind::Vm { network: NET },
                mtu: 1450,
            }),
            ConfigCommand::AddMacEntry {
                network: NET,
                mac: mac(2),
                location: Location::Port(PortId(2)),
            },
            ConfigCommand::AddMacEntry {
                network: NET,
                mac: mac(3),
                location: Location::Vtep(REMOTE),
            },
        ],
    )
    .expect("valid configuration")
}

/// The policy an agent gives a VM port: its NIC's MAC and address plus an allowed address pair,
/// a MAC limit and storm control (which known unicast does not touch).
fn vm_policy() -> PortPolicy {
    PortPolicy {
        allowed: Some(vec![
            AllowedAddress {
                mac: mac(1),
                ip: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 32,
            },
            AllowedAddress {
                mac: mac(1),
                ip: Ipv4Addr::new(10, 0, 0, 100),
                prefix_len: 32,
            },
        ]),
        mac_limit: Some(16),
        storm: Some(StormControl {
            frames_per_sec: 1000,
            burst: 100,
        }),
    }
}

/// [`switch`] with network 2 (VNI 5002, VM port 3 with 10.0.1.2) and router 1 on both
/// networks (gateways 10.0.0.254 and 10.0.1.254).
fn routed_switch() -> Switch {
    let mut s = switch();
    let net2 = NetworkId(2);
    let router = RouterId(1);
    let commands = [
        ConfigCommand::AddNetwork {
            id: net2,
            segment: Segment::Overlay {
                vni: Vni::new(5002).expect("valid VNI"),
            },
        },
        ConfigCommand::AddPort(PortConfig {
            id: PortId(3),
            kind: PortKind::Vm { network: net2 },
            mtu: 1450,
        }),
        ConfigCommand::AddMacEntry {
            network: net2,
            mac: mac(4),
            location: Location::Port(PortId(3)),
        },
        ConfigCommand::AddArpEntry {
            network: net2,
            ip: Ipv4Addr::new(10, 0, 1, 2),
            mac: mac(4),
        },
        ConfigCommand::AddRouter(router),
        ConfigCommand::SetRouterInterface {
            router,
            network: NET,
            addr: Ipv4Addr::new(10, 0, 0, 254),
            prefix_len: 24,
            mac: GATEWAY,
            mtu: None,
        },
        ConfigCommand::SetRouterInterface {
            router,
            network: net2,
            addr: Ipv4Addr::new(10, 0, 1, 254),
            prefix_len: 24,
            mac: MacAddr([0x02, 0x76, 0x72, 0, 0, 2]),
            mtu: None,
        },
    ];
    for c in commands {
        s.apply(c).expect("valid configuration");
    }
    s
}

fn measure(name: &str, result: &str, dst: MacAddr, policy: Option<PortPolicy>) {
    let mut s = switch();
    if let Some(policy) = policy {
        s.apply(ConfigCommand::SetPortPolicy {
            port: PortId(1),
            policy,
        })
        .expect("valid policy");
    }
    run(name, result, s, frame64(dst, mac(1)));
}

/// Runs batches of `frame` from port 1 through `s` for about a second; prints the rate.
fn run(name: &str, result: &str, mut s: Switch, frame: Vec<u8>) {
    let batch: Vec<(PortId, &[u8])> = (0..BATCH).map(|_| (PortId(1), frame.as_slice())).collect();
    let mut tx = TxBatch::with_capacity(BATCH, BATCH * 128);
    // Warm up, then run for about a second.
    for _ in 0..10_000 {
        tx.clear();
        s.process(Duration::ZERO, batch.iter().copied(), &mut tx);
    }
    assert_eq!(tx.len(), BATCH, "{name}: every frame forwarded");
    let start = Instant::now();
    let mut frames: u64 = 0;
    let mut now = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            tx.clear();
            s.process(now, batch.iter().copied(), &mut tx);
            black_box(&tx);
            frames += BATCH as u64;
        }
        now += Duration::from_millis(1);
    }
    let secs = start.elapsed().as_secs_f64();
    let mpps = frames as f64 / secs / 1e6;
    println!(
        "{name:<24} {mpps:>7.2} Mpps  ({frames} frames of 64 bytes in {secs:.2} s, batches of {BATCH})"
    );
    println!(
        "RESULT switch_core {result} {mpps:.2} Mpps target >= {TARGET_MPPS:.2} Mpps: {}",
        if mpps >= TARGET_MPPS { "PASS" } else { "FAIL" }
    );
}

/// A 64-byte UDP frame from VM 1 (10.0.0.1, `src_port`) to VM 2 (10.0.0.2:6000).
fn udp64(src_port: u16) -> Vec<u8> {
    let mut f = frame64(mac(2), mac(1));
    let ip = &mut f[14..];
    ip[9] = 17;
    let mut header = vinfra_switch::wire::ipv4::Packet::new_unchecked(&mut ip[..]);
    header.fill_checksum();
    let mut datagram = udp::Packet::new_unchecked(&mut ip[20..]);
    UdpRepr {
        src_port,
        dst_port: 6000,
    }
    .emit(&mut datagram, 60 - 14 - 20 - 8)
    .expect("room for the header");
    f
}

/// `n` rules of the shapes ports have, on both directions: TCP and UDP to single ports from
/// `/32`s (an expanded remote group) and subnets, none matching the measured flow; then the
/// rule that lets it into VM 2.
fn rules(n: usize) -> Vec<FirewallRule> {
    let mut rules: Vec<FirewallRule> = (0..n)
        .map(|i| {
            let i = u32::try_from(i).expect("few rules");
            let remote = if i % 10 == 0 {
                Prefix {
                    addr: Ipv4Addr::from(0xac10_0000 | (i << 8)),
                    len: 24,
                }
            } else {
                Prefix::host(Ipv4Addr::from(0xac10_0000 | i))
            };
            FirewallRule {
                direction: if i % 2 == 0 {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
                protocol: if i % 3 == 0 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                ports: PortRange::single(u16::try_from(1000 + i % 5000).expect("a port")),
                remote: vec![remote],
                action: if i % 7 == 0 {
                    Action::Deny
                } else {
                    Action::Allow
                },
            }
        })
        .collect();
    rules.push(FirewallRule {
        direction: Direction::Ingress,
        protocol: Protocol::Udp,
        ports: PortRange::single(6000),
        remote: vec![Prefix {
            addr: Ipv4Addr::new(10, 0, 0, 0),
            len: 24,
        }],
        action: Action::Allow,
    });
    rules
}

fn set_firewalls(s: &mut Switch, rules: &[FirewallRule]) {
    for port in [PortId(1), PortId(2)] {
        s.apply(ConfigCommand::SetPortFirewall {
            port,
            rules: Some(rules.to_vec()),
        })
        .expect("valid rules");
    }
}

/// Frames per second (millions) of an established UDP flow between the two firewalled ports.
fn firewall_established(name: &str, rules: &[FirewallRule]) -> f64 {
    let mut s = switch();
    set_firewalls(&mut s, rules);
    let frame = udp64(5000);
    let batch: Vec<(PortId, &[u8])> = (0..BATCH).map(|_| (PortId(1), frame.as_slice())).collect();
    let mut tx = TxBatch::with_capacity(BATCH, BATCH * 128);
    for _ in 0..10_000 {
        tx.clear();
        s.process(Duration::ZERO, batch.iter().copied(), &mut tx);
    }
    assert_eq!(tx.len(), BATCH, "{name}: every frame forwarded");
    assert_eq!(
        s.conntrack_counters().entries,
        2,
        "{name}: one connection per port"
    );
    let start = Instant::now();
    let mut frames: u64 = 0;
    let mut now = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            tx.clear();
            s.process(now, batch.iter().copied(), &mut tx);
            black_box(&tx);
            frames += BATCH as u64;
        }
        now += Duration::from_millis(1);
    }
    let secs = start.elapsed().as_secs_f64();
    let mpps = frames as f64 / secs / 1e6;
    println!("{name:<40} {mpps:>7.2} Mpps  ({frames} frames of 64 bytes in {secs:.2} s)");
    mpps
}

/// Frames per second (millions) when every frame opens a new UDP connection between the two
/// firewalled ports: the rules of both ports are evaluated and two connections committed per
/// frame. Only the batches are timed; the table is emptied between rounds.
fn firewall_new_connections(name: &str, rules: &[FirewallRule]) -> f64 {
    const ROUND: usize = 16_384;
    let mut s = switch();
    set_firewalls(&mut s, rules);
    let frames: Vec<Vec<u8>> = (0..ROUND)
        .map(|i| udp64(1024 + u16::try_from(i).expect("a port")))
        .collect();
    let mut tx = TxBatch::with_capacity(BATCH, BATCH * 128);
    let mut busy = Duration::ZERO;
    let mut sent: u64 = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let round = Instant::now();
        for chunk in frames.chunks(BATCH) {
            tx.clear();
            s.process(
                Duration::ZERO,
                chunk.iter().map(|f| (PortId(1), f.as_slice())),
                &mut tx,
            );
            black_box(&tx);
        }
        busy += round.elapsed();
        sent += ROUND as u64;
        assert_eq!(tx.len(), BATCH, "{name}: every frame forwarded");
        assert_eq!(
            s.conntrack_counters().entries,
            2 * ROUND,
            "{name}: two connections a frame"
        );
        // Untimed: forget the connections.
        for port in [PortId(1), PortId(2)] {
            s.apply(ConfigCommand::SetPortFirewall { port, rules: None })
                .expect("a VM port");
        }
        set_firewalls(&mut s, rules);
    }
    let mpps = sent as f64 / busy.as_secs_f64() / 1e6;
    println!(
        "{name:<40} {mpps:>7.2} Mpps  ({sent} new connections in {:.2} s)",
        busy.as_secs_f64()
    );
    mpps
}

/// The share of the throughput without flow accounting that it must keep.
const TARGET_FLOWS_RATIO: f64 = 0.95;

/// Frames per second of `frames` (cycled in batches) from port 1 through `s`, for `secs`.
fn rate(s: &mut Switch, frames: &[Vec<u8>], secs: f64) -> f64 {
    let mut tx = TxBatch::with_capacity(BATCH, BATCH * 128);
    let mut next = 0;
    let mut count: u64 = 0;
    let mut now = Duration::from_secs(1);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..100 {
            tx.clear();
            let batch =
                (0..BATCH).map(|i| (PortId(1), frames[(next + i) % frames.len()].as_slice()));
            s.process(now, batch, &mut tx);
            black_box(&tx);
            next = (next + BATCH) % frames.len();
            count += BATCH as u64;
        }
        now += Duration::from_micros(100);
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// Pairs of slices, one off and one on, for each flow accounting case.
const FLOW_PAIRS: usize = 100;
/// A slice's length, in seconds.
const FLOW_SLICE_SECS: f64 = 0.02;

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Flow accounting off and on for the same traffic: [`FLOW_PAIRS`] pairs of alternating
/// slices, the median of the pairs' ratios.
fn flows_on_off(name: &str, case: &str, make: fn() -> Switch, frames: &[Vec<u8>]) {
    let mut switches = [make(), make()];
    for (on, s) in switches.iter_mut().enumerate() {
        s.apply(ConfigCommand::SetFlowAccounting(FlowTableSettings {
            enabled: on == 1,
            ..FlowTableSettings::default()
        }))
        .expect("valid settings");
        rate(s, frames, 0.1);
    }
    assert_eq!(switches[0].flow_entries(), 0);
    assert_eq!(switches[1].flow_entries(), frames.len());
    let mut rates = [Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for pair in 0..FLOW_PAIRS {
        let mut slice = [0f64; 2];
        for k in 0..2 {
            let on = (pair + k) % 2;
            slice[on] = rate(&mut switches[on], frames, FLOW_SLICE_SECS);
        }
        ratios.push(slice[1] / slice[0]);
        for (on, r) in slice.into_iter().enumerate() {
            rates[on].push(r);
        }
    }
    let best = rates
        .clone()
        .map(|r| r.into_iter().fold(0.0, f64::max) / 1e6);
    let [off, on] = rates.map(median);
    let ratio = median(ratios);
    println!(
        "{name:<40} off {:>6.2} Mpps, on {:>6.2} Mpps (medians; best {:.2}, {:.2}), on/off {ratio:.3} ({:.1} ns a frame more)",
        off / 1e6,
        on / 1e6,
        best[0],
        best[1],
        1e9 / (off * ratio) - 1e9 / off,
    );
    println!(
        "RESULT switch_core_flows {case} {ratio:.3} target >= {TARGET_FLOWS_RATIO:.2}: {}",
        if ratio >= TARGET_FLOWS_RATIO {
            "PASS"
        } else {
            "FAIL"
        }
    );
}

fn ratio_result(case: &str, with_rules: f64, without: f64) {
    let ratio = with_rules / without;
    println!(
        "RESULT switch_core_firewall {case} {ratio:.3} target >= {TARGET_RULES_RATIO:.2}: {}",
        if ratio >= TARGET_RULES_RATIO {
            "PASS"
        } else {
            "FAIL"
        }
    );
}

fn main() {
    let one_flow = [udp64(5000)];
    let many_flows: Vec<_> = (0..4096).map(|p| udp64(10_000 + p)).collect();
    flows_on_off(
        "flow accounting, local L2, 1 flow",
        "local_l2_1_flow",
        switch,
        &one_flow,
    );
    flows_on_off(
        "flow accounting, local L2, 4,096 flows",
        "local_l2_4096_flows",
        switch,
        &many_flows,
    );
    flows_on_off(
        "flow accounting, routed, 1 flow",
        "routed_1_flow",
        routed_switch,
        &[frame64_to(GATEWAY, mac(1), Ipv4Addr::new(10, 0, 1, 2))],
    );
    if std::env::args().any(|a| a == "flows") {
        return;
    }

    measure("local L2 (VM to VM)", "local_l2", mac(2), None);
    measure(
        "VM port with port security",
        "local_l2_port_security",
        mac(2),
        Some(vm_policy()),
    );
    measure("VXLAN encapsulation", "vxlan_encap", mac(3), None);
    run(
        "routed (VM to VM)",
        "routed",
        routed_switch(),
        frame64_to(GATEWAY, mac(1), Ipv4Addr::new(10, 0, 1, 2)),
    );

    let (none, many) = (rules(0), rules(10_000));
    let established_0 = firewall_established("firewall, established flow, 0 rules", &none);
    let established_10k = firewall_established("firewall, established flow, 10,000 rules", &many);
    ratio_result("established_10k_rules", established_10k, established_0);
    let new_0 = firewall_new_connections("firewall, new connections, 0 rules", &none);
    let new_10k = firewall_new_connections("firewall, new connections, 10,000 rules", &many);
    println!(
        "first packets: 10,000 rules keep {:.3} of the rate with 0 (no target)",
        new_10k / new_0
    );
}
