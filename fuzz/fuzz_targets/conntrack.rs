//! Connection tracking under arbitrary operations: an input is a program of packets (arbitrary
//! bytes, or valid TCP, UDP, ICMP and other packets between two hosts on a few ports, so that
//! connections form), commits, time advancing (milliseconds to days), expiry, migration of a
//! zone (export, import into another zone of the same or a fresh table) and zone removal.
//! Nothing may panic; the table never holds more than its limits; the counters add up; the
//! answer to a packet of an established UDP flow or TCP connection is established; an import
//! keeps what was exported.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vinfra_switch::datapath::firewall::conntrack::{
    Conntrack, ConntrackConfig, PacketInfo, Side, TcpState, Timeouts, Tracked,
};
use vinfra_switch::wire::{ipv4, Ipv4Repr};

const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const MAX: usize = 8;
const ZONE_MAX: usize = 5;
const ZONES: u32 = 3;
const FLAGS: [u8; 8] = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x00];

fn table() -> Conntrack {
    Conntrack::new(ConntrackConfig {
        max_entries: MAX,
        zone_max_entries: Some(ZONE_MAX),
        timeouts: Timeouts::default(),
    })
}

fn ip(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 20 + payload.len()];
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: proto,
        payload_len: payload.len(),
        ttl: 64,
        dscp_ecn: 0,
    };
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
        .unwrap();
    buf[6..8].copy_from_slice(&frag.to_be_bytes());
    ipv4::Packet::new_unchecked(&mut buf[..]).fill_checksum();
    buf[20..].copy_from_slice(payload);
    buf
}

/// A valid packet from a few bytes: protocol, ports, flags or ICMP type, fragment position.
fn synthesized(from_vm: bool, b: [u8; 3]) -> Vec<u8> {
    let (src, dst) = if from_vm { (VM, PEER) } else { (PEER, VM) };
    let sport = u16::from(b[1] & 3);
    let dport = u16::from((b[1] >> 2) & 3);
    let frag = match b[2] >> 6 {
        0 | 1 => 0,
        2 => 0x2000,
        _ => u16::from(b[2] & 3),
    };
    match b[0] % 5 {
        0 | 1 => {
            let mut h = [0u8; 20];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = FLAGS[usize::from(b[2] & 7)];
            ip(src, dst, 6, frag, &h)
        }
        2 => {
            let mut h = [0u8; 8];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[5] = 8;
            ip(src, dst, 17, frag, &h)
        }
        3 => {
            // Echo request or reply, or an error quoting a UDP or TCP packet the other way.
            let ty = [8, 0, 3, 11][usize::from(b[2] & 3)];
            let mut h = vec![ty, 0, 0, 0, 0, sport as u8, 0, 0];
            if ty == 3 || ty == 11 {
                let mut l4 = [0u8; 8];
                l4[0..2].copy_from_slice(&dport.to_be_bytes());
                l4[2..4].copy_from_slice(&sport.to_be_bytes());
                let proto = if b[1] & 0x10 == 0 { 17 } else { 6 };
                h.extend_from_slice(&ip(dst, src, proto, 0, &l4));
            }
            ip(src, dst, 1, frag, &h)
        }
        _ => ip(src, dst, 47, frag, &[]),
    }
}

/// Checks what must always hold.
fn invariants(ct: &Conntrack) {
    assert!(ct.len() <= MAX);
    assert_eq!(ct.len(), (0..ZONES).map(|z| ct.zone_len(z)).sum::<usize>());
    assert!((0..ZONES).all(|z| ct.zone_len(z) <= ZONE_MAX));
    let c = ct.counters();
    assert_eq!(
        c.created + c.imported - c.expired - c.evicted - c.removed,
        c.entries as u64
    );
}

/// The answer to `pkt` (addresses and ports swapped; same flags), for the checks.
fn answer(pkt: &[u8]) -> Vec<u8> {
    let mut back = pkt.to_vec();
    back[12..16].copy_from_slice(&pkt[16..20]);
    back[16..20].copy_from_slice(&pkt[12..16]);
    back[20..22].copy_from_slice(&pkt[22..24]);
    back[22..24].copy_from_slice(&pkt[20..22]);
    back
}

fuzz_target!(|data: &[u8]| {
    let _ = PacketInfo::parse(data);
    let mut ct = table();
    let mut now = Duration::from_secs(1);
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let zone = u32::from(op >> 4) % ZONES;
        let side = if op & 8 == 0 {
            Side::FromVm
        } else {
            Side::ToVm
        };
        let commit = op & 0x80 == 0;
        match op & 7 {
            0 => {
                // Arbitrary bytes as a packet.
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len % 96).min(tail.len());
                let (bytes, tail) = tail.split_at(len);
                rest = tail;
                if let Ok(p) = PacketInfo::parse(bytes) {
                    if ct.track(zone, side, &p, now) == Tracked::New && commit {
                        let _ = ct.commit(zone, side, &p, now);
                    }
                }
            }
            1 | 2 | 3 => {
                let Some((b, tail)) = rest.split_first_chunk::<3>() else {
                    break;
                };
                rest = tail;
                let bytes = synthesized(side == Side::FromVm, *b);
                let p = PacketInfo::parse(&bytes).expect("a synthesized packet parses");
                let tracked = ct.track(zone, side, &p, now);
                if tracked == Tracked::New && commit {
                    let _ = ct.commit(zone, side, &p, now);
                }
                let Tracked::Established { reply } = tracked else {
                    continue;
                };
                // The answer of an established UDP flow, or a plain ACK on an established
                // TCP connection, is established the other way.
                if bytes[6..8] != [0, 0] {
                    continue;
                }
                let tuple = p.tuple().expect("a whole packet has a tuple");
                let tcp_established = bytes[9] == 6
                    && bytes[33] == 0x10
                    && ct.export(zone, now).iter().any(|e| {
                        (e.original == tuple || e.reply == tuple)
                            && e.tcp_state == Some(TcpState::Established)
                    });
                if bytes[9] == 17 || tcp_established {
                    let back = PacketInfo::parse(&answer(&bytes)).unwrap();
                    let found = ct.track(zone, side.opposite(), &back, now);
                    assert_eq!(found, Tracked::Established { reply: !reply });
                }
            }
            4 => {
                let Some((&b, tail)) = rest.split_first() else {
                    break;
                };
                rest = tail;
                // Up to about a week, in steps that cross every timeout.
                let ms = u64::from(b).pow(4).saturating_mul(150);
                now = now.saturating_add(Duration::from_millis(ms));
            }
            5 => {
                let before = ct.len();
                let freed = ct.expire(now);
                assert_eq!(ct.len(), before - freed);
            }
            6 => {
                let to = (zone + 1) % ZONES;
                let entries = ct.export(zone, now);
                assert!(entries.len() <= ct.zone_len(zone));
                assert!(entries.iter().all(|e| e.reply == e.original.reply()));
                // Into a fresh table on a host whose clock is elsewhere: everything arrives
                // and reads back the same.
                let mut other = table();
                let there = Duration::from_secs(u64::from(op));
                assert_eq!(other.import(to, &entries, there), Ok(entries.len()));
                let mut back = other.export(to, there);
                let mut sent = entries.clone();
                back.sort_by_key(|e| format!("{e:?}"));
                sent.sort_by_key(|e| format!("{e:?}"));
                assert_eq!(back, sent);
                // Into another zone of this table: as much as the limits allow.
                let _ = ct.import(to, &entries, now);
            }
            _ => {
                let n = ct.zone_len(zone);
                assert_eq!(ct.remove_zone(zone), n);
            }
        }
        invariants(&ct);
    }
});
