//! Connection tracking alone at 100,000 connections: new connections (`commit`), tracking of an
//! established flow and of every connection in turn, parsing, expiry. No target: the numbers go
//! to docs/benchmarks.md next to the firewall's.
//!
//! `cargo bench -p vinfra-switch --bench conntrack`

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vinfra_switch::datapath::firewall::conntrack::{
    Conntrack, ConntrackConfig, PacketInfo, Side, Tracked,
};
use vinfra_switch::wire::ipv4::{self, protocol};
use vinfra_switch::wire::Ipv4Repr;

const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const ZONE: u32 = 1;
const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const EST: Tracked = Tracked::Established { reply: false };
const EST_REPLY: Tracked = Tracked::Established { reply: true };

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A TCP/IPv4 packet without payload.
fn tcp_bytes(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 40];
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: protocol::TCP,
        payload_len: 20,
        ttl: 64,
        dscp_ecn: 0,
    };
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
        .unwrap();
    ipv4::Packet::new_unchecked(&mut buf[..]).fill_checksum();
    buf[20..22].copy_from_slice(&sport.to_be_bytes());
    buf[22..24].copy_from_slice(&dport.to_be_bytes());
    buf[32] = 5 << 4;
    buf[33] = flags;
    buf
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> PacketInfo {
    PacketInfo::parse(&tcp_bytes(src, sport, dst, dport, flags)).unwrap()
}

fn main() {
    const N: u32 = 100_000;
    let mut ct = Conntrack::new(ConntrackConfig {
        max_entries: N as usize + 1,
        ..ConntrackConfig::default()
    });
    let now = secs(1);
    let conns: Vec<PacketInfo> = (0..N)
        .map(|i| {
            let dst = Ipv4Addr::from(0x0a01_0000 + (i >> 8));
            tcp(VM, 1024 + (i & 0xff) as u16, dst, 80, SYN)
        })
        .collect();
    let start = Instant::now();
    for p in &conns {
        ct.commit(ZONE, Side::FromVm, p, now).unwrap();
    }
    let commit = start.elapsed();
    assert_eq!(ct.len(), N as usize);
    // Complete one handshake, then track its data segments.
    let syn = tcp(VM, 40000, PEER, 80, SYN);
    ct.commit(ZONE, Side::FromVm, &syn, now).unwrap();
    let _ = ct.track(ZONE, Side::ToVm, &tcp(PEER, 80, VM, 40000, SYN_ACK), now);
    let data = tcp(VM, 40000, PEER, 80, PSH_ACK);
    let reply = tcp(PEER, 80, VM, 40000, ACK);
    const ROUNDS: u32 = 1_000_000;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        assert_eq!(
            ct.track(ZONE, Side::FromVm, std::hint::black_box(&data), now),
            EST
        );
        assert_eq!(
            ct.track(ZONE, Side::ToVm, std::hint::black_box(&reply), now),
            EST_REPLY
        );
    }
    let track = start.elapsed();
    // Every connection in turn (retransmitted SYNs: a lookup, a step, a refresh each), out of
    // the caches.
    let start = Instant::now();
    for _ in 0..10 {
        for p in &conns {
            assert_eq!(ct.track(ZONE, Side::FromVm, p, now), EST);
        }
    }
    let spread = start.elapsed();
    let bytes = tcp_bytes(VM, 40000, PEER, 80, PSH_ACK);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let p = PacketInfo::parse(std::hint::black_box(&bytes)).unwrap();
        std::hint::black_box(p);
    }
    let parse = start.elapsed();
    let start = Instant::now();
    let expired = ct.expire(secs(1000));
    let sweep = start.elapsed();
    println!(
        "commit: {:.0} ns each ({:.2} M/s) to {N}; track, one established flow: {:.1} ns, \
         all {N} in turn: {:.1} ns; parse: {:.1} ns; expire of {expired}: {:.1} ms",
        commit.as_nanos() as f64 / f64::from(N),
        f64::from(N) / commit.as_secs_f64() / 1e6,
        track.as_nanos() as f64 / f64::from(2 * ROUNDS),
        spread.as_nanos() as f64 / f64::from(10 * N),
        parse.as_nanos() as f64 / f64::from(ROUNDS),
        sweep.as_secs_f64() * 1e3,
    );
}
