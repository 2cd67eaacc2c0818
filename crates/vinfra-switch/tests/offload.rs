//! Offload metadata through the core: large TCP segments and partial checksums from ports that
//! take virtio-net headers pass unchanged to such ports and are cut into segments (or have their
//! checksum completed) for every other port: VM ports, the trunk and remote VTEPs.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use vinfra_switch::datapath::{
    ConfigCommand, DropReason, Location, NetworkId, PortId, PortKind, Segment, Switch,
    SwitchSettings, TxBatch,
};
use vinfra_switch::wire::virtio_net::{Gso, GsoKind, PartialCsum};
use vinfra_switch::wire::{decapsulate, EtherType, MacAddr, Offload, VlanId, Vni};

const BLUE: NetworkId = NetworkId(1);
const GREEN: NetworkId = NetworkId(2);
const TAP_A: PortId = PortId(1);
const TAP_B: PortId = PortId(2);
const VM: PortId = PortId(3);
const GREEN_TAP: PortId = PortId(5);
const GREEN_PLAIN: PortId = PortId(6);
const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const NOW: Duration = Duration::from_secs(1);

/// Blue (overlay): offload taps A and B (MTU 1500), VM port 3 (MTU 1450), the uplink (underlay
/// MTU 1550) and VTEP B in the flood list; MACs 2, 3 and 4 at tap B, the VM and VTEP B.
/// Green (VLAN 7): offload tap 5, plain tap 6, the trunk.
fn switch() -> Switch {
    let mut s = Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Overlay {
                    vni: Vni::new(5001).unwrap(),
                },
            },
            ConfigCommand::AddNetwork {
                id: GREEN,
                segment: Segment::Vlan {
                    vid: VlanId::new(7).unwrap(),
                },
            },
            add_port(
                UPLINK,
                PortKind::VxlanUplink {
                    local_ip: VTEP_A,
                    local_mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
                    gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xb])),
                },
                1550,
            ),
            add_port(TRUNK, PortKind::VlanTrunk, 1500),
            add_port(TAP_A, PortKind::Host { network: BLUE }, 1500),
            add_port(TAP_B, PortKind::Host { network: BLUE }, 1500),
            add_port(VM, PortKind::Vm { network: BLUE }, 1450),
            add_port(GREEN_TAP, PortKind::Host { network: GREEN }, 1500),
            add_port(GREEN_PLAIN, PortKind::Host { network: GREEN }, 1500),
            ConfigCommand::SetFloodList {
                network: BLUE,
                vteps: vec![VTEP_B],
            },
            ConfigCommand::AddMacEntry {
                network: BLUE,
                mac: mac(2),
                location: Location::Port(TAP_B),
            },
            ConfigCommand::AddMacEntry {
                network: BLUE,
                mac: mac(3),
                location: Location::Port(VM),
            },
            ConfigCommand::AddMacEntry {
                network: BLUE,
                mac: mac(4),
                location: Location::Vtep(VTEP_B),
            },
        ],
    )
    .unwrap();
    for p in [TAP_A, TAP_B, GREEN_TAP] {
        s.set_port_offloads(p, true).unwrap();
    }
    s
}

/// A TCP/IPv4 frame from tap A (43210) to `dst` (5201) as a Linux sender hands it to a tap
/// with offloads.
fn tcp_frame(dst: MacAddr, body: &[u8]) -> Vec<u8> {
    offload_tcp_frame(dst, mac(1), (SRC, 43210), (DST, 5201), PSH_ACK, body)
}

fn csum_only() -> Offload {
    Offload {
        gso: None,
        ..tcp_gso(1)
    }
}

/// Checks that `segments` (untagged Ethernet frames) are valid TCP/IPv4 segments of `body`
/// with at most `mss` payload bytes each: IPv4 header checksum, total length, TCP checksum,
/// sequence numbers, PSH on the last only.
fn check_segments(segments: &[&[u8]], body: &[u8], mss: usize) {
    let mut got = Vec::new();
    for (i, f) in segments.iter().enumerate() {
        let ip = &f[14..];
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        assert_eq!(ones_sum(&ip[..20]), 0xffff, "IPv4 header checksum of {i}");
        let tcp = &ip[20..];
        let mut all = tcp_pseudo_header(ip, tcp.len());
        all.extend_from_slice(tcp);
        assert_eq!(ones_sum(&all), 0xffff, "TCP checksum of segment {i}");
        let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        assert_eq!(seq, 1_000_000 + (i * mss) as u32);
        assert_eq!(tcp[13] & 0x08 != 0, i + 1 == segments.len(), "PSH");
        assert!(tcp.len() - 32 <= mss);
        got.extend_from_slice(&tcp[32..]);
    }
    assert_eq!(got, body);
}

#[test]
fn gso_frame_passes_whole_to_an_offload_port() {
    let mut s = switch();
    let body = data(60_000);
    let frame = tcp_frame(mac(2), &body);
    let out = run_offload(&mut s, TAP_A, &frame, tcp_gso(1448));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, TAP_B);
    assert_eq!(out[0].2, tcp_gso(1448));
    assert_eq!(out[0].3, frame);
    let c = s.port_counters(TAP_B).unwrap();
    assert_eq!(c.tx_packets, 1);
}

#[test]
fn gso_frame_is_cut_into_segments_for_a_vm_port() {
    let mut s = switch();
    let body = data(30_000);
    let out = run_offload(&mut s, TAP_A, &tcp_frame(mac(3), &body), tcp_gso(1398));
    assert!(out.iter().all(|o| o.0 == VM && o.2 == Offload::NONE));
    assert_eq!(out.len(), 30_000usize.div_ceil(1398));
    assert!(out.iter().all(|o| o.3.len() <= 14 + 1450));
    let frames: Vec<&[u8]> = out.iter().map(|o| o.3.as_slice()).collect();
    check_segments(&frames, &body, 1398);
    assert_eq!(s.port_counters(VM).unwrap().tx_packets, out.len() as u64);
}

#[test]
fn gso_frame_is_cut_before_encapsulation_for_a_vtep() {
    let mut s = switch();
    let body = data(20_000);
    let out = run_offload(&mut s, TAP_A, &tcp_frame(mac(4), &body), tcp_gso(1448));
    assert_eq!(out.len(), 20_000usize.div_ceil(1448));
    let inner: Vec<Vec<u8>> = out
        .iter()
        .map(|o| {
            assert_eq!((o.0, o.1), (UPLINK, Some(VTEP_B)));
            assert!(
                o.3.len() - 14 <= 1550,
                "underlay packet fits the underlay MTU"
            );
            let d = decapsulate(&o.3).unwrap();
            assert_eq!(d.dst_ip, VTEP_B);
            d.inner.to_vec()
        })
        .collect();
    let frames: Vec<&[u8]> = inner.iter().map(|f| f.as_slice()).collect();
    check_segments(&frames, &body, 1448);
}

/// Forwarded with `process_gathered`, the segments for a remote VTEP are their headers
/// followed by slices of the received frame (the right one of the batch): gathered, the same
/// bytes `process_offload` writes whole; copies to ports other than the uplink stay whole.
#[test]
fn gathered_segments_for_a_vtep_end_with_slices_of_the_received_frame() {
    let body = data(20_000);
    let frame = tcp_frame(mac(9), &body);
    let small = tcp_frame(mac(2), &body[..100]);
    let whole = run_offload(&mut switch(), TAP_A, &frame, tcp_gso(1398));
    let mut s = switch();
    let mut tx = TxBatch::new();
    s.process_gathered(
        NOW,
        [
            (TAP_A, small.as_slice(), csum_only()),
            (TAP_A, frame.as_slice(), tcp_gso(1398)),
        ],
        &mut tx,
    );
    let gathered: Vec<_> = tx
        .iter()
        .skip(1) // the small frame, to tap B
        .map(|(f, head)| {
            let mut bytes = head.to_vec();
            if let Some(t) = f.tail() {
                assert_eq!(t.input, 1);
                bytes.extend_from_slice(&frame[t.range.clone()]);
            }
            (f.port, f.vtep, f.offload, bytes, f.tail().is_some())
        })
        .collect();
    assert_eq!(gathered.len(), whole.len());
    for (g, w) in gathered.iter().zip(&whole) {
        assert_eq!((g.0, g.1, g.2, &g.3), (w.0, w.1, w.2, &w.3));
        assert_eq!(
            g.4,
            g.0 == UPLINK,
            "only the uplink's segments are gathered"
        );
    }
    assert_eq!(
        gathered.iter().filter(|g| g.4).count(),
        20_000usize.div_ceil(1398)
    );
    // Counted as the whole packets they are.
    let uplink_bytes: usize = gathered.iter().filter(|g| g.4).map(|g| g.3.len()).sum();
    assert_eq!(
        s.port_counters(UPLINK).unwrap().tx_bytes,
        uplink_bytes as u64
    );
}

#[test]
fn flooded_gso_frame_goes_whole_or_cut_per_port() {
    let mut s = switch();
    let body = data(10_000);
    let out = run_offload(&mut s, TAP_A, &tcp_frame(mac(9), &body), tcp_gso(1398));
    let to = |p: PortId| out.iter().filter(|o| o.0 == p).collect::<Vec<_>>();
    assert_eq!(to(TAP_B).len(), 1, "offload tap: one large frame");
    assert_eq!(to(TAP_B)[0].2, tcp_gso(1398));
    let vm: Vec<&[u8]> = to(VM).iter().map(|o| o.3.as_slice()).collect();
    check_segments(&vm, &body, 1398);
    assert_eq!(to(UPLINK).len(), vm.len());

    // VLAN network: the trunk gets tagged segments, the plain tap untagged ones, and the
    // offload tap is the ingress.
    let out = run_offload(&mut s, GREEN_TAP, &tcp_frame(mac(9), &body), tcp_gso(1448));
    let trunk: Vec<Vec<u8>> = out
        .iter()
        .filter(|o| o.0 == TRUNK)
        .map(|o| untag(&o.3))
        .collect();
    let plain: Vec<&[u8]> = out
        .iter()
        .filter(|o| o.0 == GREEN_PLAIN)
        .map(|o| {
            assert_eq!(o.2, Offload::NONE);
            o.3.as_slice()
        })
        .collect();
    check_segments(&plain, &body, 1448);
    let trunk: Vec<&[u8]> = trunk.iter().map(|f| f.as_slice()).collect();
    check_segments(&trunk, &body, 1448);
}

#[test]
fn partial_checksum_is_kept_or_completed() {
    let mut s = switch();
    let body = data(999);
    let frame = tcp_frame(mac(9), &body);
    let out = run_offload(&mut s, TAP_A, &frame, csum_only());
    for o in &out {
        if o.0 == TAP_B {
            assert_eq!(o.2, csum_only());
            assert_eq!(o.3, frame);
        } else if o.0 == VM {
            assert_eq!(o.2, Offload::NONE);
            check_segments(&[&o.3], &body, 1398);
        } else {
            let d = decapsulate(&o.3).unwrap();
            check_segments(&[d.inner], &body, 1398);
        }
    }
    assert_eq!(out.len(), 3);
}

#[test]
fn mtu_counts_segments_not_the_large_frame() {
    let mut s = switch();
    let body = data(8000);
    // 1448 + 52 bytes of headers = 1500: fits the taps, not the VM port (1450).
    let out = run_offload(&mut s, TAP_A, &tcp_frame(mac(3), &body), tcp_gso(1448));
    assert!(out.is_empty());
    assert_eq!(
        s.port_counters(VM)
            .unwrap()
            .drops
            .get(DropReason::Oversized),
        1
    );
    // Segments over the ingress MTU: dropped at ingress.
    let out = run_offload(&mut s, TAP_A, &tcp_frame(mac(2), &body), tcp_gso(1449));
    assert!(out.is_empty());
    assert_eq!(
        s.port_counters(TAP_A)
            .unwrap()
            .drops
            .get(DropReason::Oversized),
        1
    );
    // The same large frame without GSO metadata is oversized.
    let out = run_offload(&mut s, TAP_A, &tcp_frame(mac(2), &body), csum_only());
    assert!(out.is_empty());
    assert_eq!(
        s.port_counters(TAP_A)
            .unwrap()
            .drops
            .get(DropReason::Oversized),
        2
    );
}

#[test]
fn offload_metadata_that_does_not_match_is_dropped() {
    let mut s = switch();
    let body = data(4000);
    let frame = tcp_frame(mac(2), &body);
    let bad_offload = |s: &Switch, p: PortId| {
        s.port_counters(p)
            .unwrap()
            .drops
            .get(DropReason::BadOffload)
    };
    // GSO on an ARP frame.
    let arp = arp_request(mac(1), SRC, DST);
    assert!(run_offload(&mut s, TAP_A, &arp, tcp_gso(1000)).is_empty());
    // TCPv6 GSO on an IPv4 frame.
    let mut v6 = tcp_gso(1000);
    v6.gso = Some(Gso {
        kind: GsoKind::Tcpv6,
        ..v6.gso.unwrap()
    });
    assert!(run_offload(&mut s, TAP_A, &frame, v6).is_empty());
    // A checksum outside the packet, or inside the Ethernet header.
    for start in [u16::MAX, 10, frame.len() as u16 - 1] {
        let o = Offload {
            csum: Some(PartialCsum { start, offset: 0 }),
            ..Offload::NONE
        };
        assert!(
            run_offload(&mut s, TAP_A, &frame[..200], o).is_empty(),
            "start {start}"
        );
    }
    assert_eq!(bad_offload(&s, TAP_A), 5);
    // Offloads from the trunk are refused.
    let tagged_frame = tagged(mac(2), mac(1), 7, EtherType::IPV4, &frame[14..]);
    assert!(run_offload(&mut s, TRUNK, &tagged_frame, tcp_gso(1000)).is_empty());
    assert_eq!(bad_offload(&s, TRUNK), 1);
    // Every prefix of a GSO frame with its metadata is handled without a panic.
    for cut in 0..frame.len().min(200) {
        run_offload(&mut s, TAP_A, &frame[..cut], tcp_gso(1000));
    }
}

#[test]
fn offloads_only_on_access_ports() {
    let mut s = switch();
    assert!(s.port_offloads(TAP_A));
    assert!(!s.port_offloads(VM));
    s.set_port_offloads(UPLINK, true).unwrap();
    assert!(!s.port_offloads(UPLINK));
    assert!(s.set_port_offloads(PortId(77), true).is_err());
}

fn run_batch(
    s: &mut Switch,
    port: PortId,
    frames: &[Vec<u8>],
) -> Vec<(PortId, Option<Ipv4Addr>, Offload, Vec<u8>)> {
    let mut tx = TxBatch::new();
    s.process(NOW, frames.iter().map(|f| (port, f.as_slice())), &mut tx);
    tx.iter()
        .map(|(f, b)| (f.port, f.vtep, f.offload, b.to_vec()))
        .collect()
}

#[test]
fn segments_in_a_batch_join_into_one_large_frame_for_an_offload_port() {
    let mut s = switch();
    let body = data(20_000);
    let segments = cut(&tcp_frame(mac(2), &body), 1398);
    assert_eq!(segments.len(), 15);
    // From the VM port to tap B (offloads): one large segment with GSO metadata.
    let out = run_batch(&mut s, VM, &segments);
    assert_eq!(out.len(), 1);
    let (port, _, offload, frame) = &out[0];
    assert_eq!(*port, TAP_B);
    assert_eq!(*offload, tcp_gso(1398));
    assert_eq!(frame.len(), 14 + 20 + 32 + body.len());
    assert_eq!(&frame[66..], &body[..]);
    // Cut again, it gives back the very segments that came in.
    assert_eq!(cut(frame, 1398), segments);
    // The counters still count the segments.
    assert_eq!(s.port_counters(TAP_B).unwrap().tx_packets, 15);

    // A lost segment splits the frame; a corrupted one is not joined.
    let mut lossy = segments.clone();
    lossy.remove(5);
    *lossy[9].last_mut().unwrap() ^= 1;
    let out = run_batch(&mut s, VM, &lossy);
    assert_eq!(out.len(), 4);
    assert_eq!(out[2].3, lossy[9]);
    assert_eq!(out[2].2, Offload::NONE);

    // Toward a remote VTEP (no offloads) nothing is joined.
    let to_vtep = cut(&tcp_frame(mac(4), &body), 1398);
    let out = run_batch(&mut s, VM, &to_vtep);
    assert_eq!(out.len(), 15);
    assert!(out.iter().all(|o| o.0 == UPLINK && o.2 == Offload::NONE));
}

#[test]
fn interleaved_flows_join_each_into_its_own_frame_in_order() {
    let mut s = switch();
    let body = data(8_000);
    let flow_a = cut(&tcp_frame(mac(2), &body), 1000);
    let mut other = tcp_frame(mac(2), &body);
    other[34..36].copy_from_slice(&43211u16.to_be_bytes());
    let flow_b = cut(&other, 1000);
    assert_eq!(flow_a.len(), 8);
    let interleaved: Vec<Vec<u8>> = flow_a
        .iter()
        .zip(&flow_b)
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let out = run_batch(&mut s, VM, &interleaved);
    assert_eq!(out.len(), 2, "one frame per flow");
    for (o, flow) in out.iter().zip([&flow_a, &flow_b]) {
        assert_eq!((o.0, o.2), (TAP_B, tcp_gso(1000)));
        assert_eq!(&o.3[66..], &body[..]);
        assert_eq!(&cut(&o.3, 1000), flow);
    }

    // A frame of flow A that cannot join (no payload: a bare ACK) ends A's frame; segments
    // after it start a new one, so nothing of A overtakes it. Flow B goes on joining.
    let mut ack = flow_a[3][..66].to_vec();
    ack[16..18].copy_from_slice(&52u16.to_be_bytes());
    ack[24..26].copy_from_slice(&[0, 0]);
    let sum = !ones_sum(&ack[14..34]);
    ack[24..26].copy_from_slice(&sum.to_be_bytes());
    let mut batch = interleaved.clone();
    batch.insert(8, ack.clone());
    let out = run_batch(&mut s, VM, &batch);
    let flows: Vec<(u16, usize)> = out
        .iter()
        .map(|o| (u16::from_be_bytes([o.3[34], o.3[35]]), o.3.len()))
        .collect();
    assert_eq!(
        flows,
        vec![
            (43210, 66 + 4000),
            (43211, 66 + 8000),
            (43210, 66),
            (43210, 66 + 4000)
        ]
    );
    assert_eq!(out[2].3, ack);
}
