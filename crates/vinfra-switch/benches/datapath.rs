//! Frames per second through the forwarding core (no I/O): 64-byte frames between two local
//! ports (with and without port security on the sending port), and 64-byte frames
//! encapsulated to a remote VTEP. Prints Mpps.
//!
//! Target: at least 10 Mpps on each path (100 ns a frame), so the core stays a small part of a
//! frame's cost in the daemon, whose I/O takes microseconds a frame (docs/benchmarks.md); prints
//! `RESULT switch_core <path> … PASS|FAIL`.
//!
//! `cargo bench -p vinfra-switch --bench datapath`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, Location, NetworkId, PortConfig, PortId, PortKind, PortPolicy,
    Segment, StormControl, Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{EtherType, EthernetRepr, Ipv4Repr, MacAddr, Vni};

const BATCH: usize = 32;
const NET: NetworkId = NetworkId(1);
const UPLINK: PortId = PortId(100);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Frames per second each path must reach, in millions.
const TARGET_MPPS: f64 = 10.0;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

/// A 64-byte frame (60 without FCS): Ethernet + IPv4/UDP-sized payload.
fn frame64(dst: MacAddr, src: MacAddr) -> Vec<u8> {
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
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
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

fn measure(name: &str, result: &str, dst: MacAddr, policy: Option<PortPolicy>) {
    let mut s = switch();
    if let Some(policy) = policy {
        s.apply(ConfigCommand::SetPortPolicy {
            port: PortId(1),
            policy,
        })
        .expect("valid policy");
    }
    let frame = frame64(dst, mac(1));
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

fn main() {
    measure("local L2 (VM to VM)", "local_l2", mac(2), None);
    measure(
        "VM port with port security",
        "local_l2_port_security",
        mac(2),
        Some(vm_policy()),
    );
    measure("VXLAN encapsulation", "vxlan_encap", mac(3), None);
}
