//! Offers to the kernel's fast path over VXLAN: a bridged flow from an access port out on the
//! uplink (encapsulated, its checksum completed at most), a flow in from the uplink to an
//! access port (decapsulated), what is not offered (a large segment the
//! switch cuts, a routed flow to another host, an uplink that is not fast), and the counting
//! of what the kernel forwarded.

mod common;

use std::time::Duration;

use common::routing::*;
use common::*;
use vinfra_switch::datapath::{
    ConfigCommand, FastEncap, FastFlow, FastTraffic, FastTunnel, Location, PortId, Switch, TxBatch,
};
use vinfra_switch::wire::virtio_net::{Gso, GsoKind, PartialCsum};
use vinfra_switch::wire::{EtherType, Offload};

/// Sends `frame` from `port` with `offload` and takes the offers it made.
fn offers_with(s: &mut Switch, port: PortId, frame: &[u8], offload: Offload) -> Vec<FastFlow> {
    let mut tx = TxBatch::new();
    s.process_offload(NOW, [(port, frame, offload)], &mut tx);
    let mut out = Vec::new();
    s.take_fast_offers(&mut out);
    out
}

fn offers(s: &mut Switch, port: PortId, frame: &[u8]) -> Vec<FastFlow> {
    offers_with(s, port, frame, Offload::NONE)
}

/// A TCP segment (ACK) on red from `from` to `to` with `data` bytes.
fn red_tcp(from: u8, to: u8, data: usize) -> Vec<u8> {
    let mut tcp = vec![
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ];
    tcp.extend((0..data).map(|i| i as u8));
    eth(
        mac(to),
        mac(from),
        EtherType::IPV4,
        &packet(addr(RED, from), addr(RED, to), 6, 64, &tcp),
    )
}

/// Host A with its red ports and the uplink fast.
fn fast_a() -> Switch {
    let mut s = host_a();
    for p in [VM_RED, TAP_RED, UPLINK] {
        s.set_port_fast(p, true);
    }
    s
}

#[test]
fn a_bridged_flow_to_another_host_is_offered_encapsulated() {
    let mut s = fast_a();
    let frame = red_tcp(12, 22, 100);
    let offered = offers(&mut s, VM_RED, &frame);
    assert_eq!(offered.len(), 1);
    let f = offered[0];
    assert_eq!((f.key.in_port, f.out_port), (VM_RED, UPLINK));
    assert_eq!(f.key.tunnel, None);
    assert_eq!(f.rewrite, None);
    let encap = f.encap.expect("encapsulated");
    assert_eq!(
        encap.tunnel,
        FastTunnel {
            vni: 5002,
            local: VTEP_A,
            remote: VTEP_B
        }
    );
    // The switch's own encapsulation has the same source port.
    let mut tx = TxBatch::new();
    s.process_offload(NOW, [(VM_RED, &frame[..], Offload::NONE)], &mut tx);
    s.take_fast_offers(&mut Vec::new());
    let (_, sent) = tx.get(0).unwrap();
    assert_eq!(u16::from_be_bytes([sent[34], sent[35]]), encap.src_port);
    // The overlay's MTU: the uplink's less the encapsulation.
    assert_eq!(f.max_ip_len, 1450);

    // From the tap, with a checksum to complete: the switch fills it, and offers the flow.
    let mut from_tap = red_tcp(14, 22, 100);
    from_tap[50] = 0x12;
    let csum = Offload {
        csum: Some(PartialCsum {
            start: 34,
            offset: 16,
        }),
        ..Offload::NONE
    };
    let offered = offers_with(&mut s, TAP_RED, &from_tap, csum);
    assert_eq!(offered.len(), 1, "offered with its checksum completed");
    assert!(matches!(
        offered[0].encap,
        Some(FastEncap {
            tunnel: FastTunnel { remote: VTEP_B, .. },
            ..
        })
    ));
}

#[test]
fn a_cut_segment_a_routed_flow_to_another_host_and_a_slow_uplink_are_not_offered() {
    let mut s = fast_a();
    // A large segment: cut into segments by the switch, several frames.
    let big = red_tcp(14, 22, 2800);
    let gso = Offload {
        csum: Some(PartialCsum {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: GsoKind::Tcpv4,
            size: 1400,
            hdr_len: 54,
            ecn: false,
        }),
        data_valid: false,
    };
    assert!(offers_with(&mut s, TAP_RED, &big, gso).is_empty());
    // Routed from blue to VM 22 on host B.
    s.set_port_fast(VM_BLUE, true);
    let routed = routed_udp(BLUE, 11, addr(RED, 22), 100);
    assert!(offers(&mut s, VM_BLUE, &routed).is_empty());
    // The uplink not fast.
    s.set_port_fast(UPLINK, false);
    assert!(offers(&mut s, VM_RED, &red_tcp(12, 22, 100)).is_empty());
    s.set_port_fast(UPLINK, true);
    assert_eq!(offers(&mut s, VM_RED, &red_tcp(12, 22, 100)).len(), 1);
}

#[test]
fn a_flow_in_from_the_uplink_is_offered_decapsulated() {
    let mut s = host_b();
    s.set_port_fast(VM_B, true);
    s.set_port_fast(UPLINK, true);
    let frame = vxlan(VTEP_A, VTEP_B, 5002, &red_tcp(12, 22, 100));
    // The first frame learns VM 12 behind host A: that changes the switch, no offer.
    assert!(offers(&mut s, UPLINK, &frame).is_empty());
    let offered = offers(&mut s, UPLINK, &frame);
    assert_eq!(offered.len(), 1);
    let f = offered[0];
    assert_eq!((f.key.in_port, f.out_port), (UPLINK, VM_B));
    assert_eq!(
        f.key.tunnel,
        Some(FastTunnel {
            vni: 5002,
            local: VTEP_B,
            remote: VTEP_A
        })
    );
    assert_eq!((f.key.src_mac, f.key.dst_mac), (mac(12), mac(22)));
    assert_eq!((f.key.src, f.key.dst), (addr(RED, 12), addr(RED, 22)));
    assert_eq!((f.encap, f.rewrite, f.max_ip_len), (None, None, 1450));

    // Another VTEP's frame is another flow (another key): VM 12 moved behind it.
    let other = vxlan(VTEP_C, VTEP_B, 5002, &red_tcp(12, 22, 100));
    let _ = offers(&mut s, UPLINK, &other);
    let again = offers(&mut s, UPLINK, &other);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key.tunnel.map(|t| t.remote), Some(VTEP_C));
    assert_ne!(again[0].key, f.key);

    // Routed by host A's router (each host routes what its own VMs send): from red's
    // gateway, bridged here.
    let mut routed = red_tcp(12, 22, 100);
    routed[6..12].copy_from_slice(&gw_mac(RED).0);
    let routed = vxlan(VTEP_A, VTEP_B, 5002, &routed);
    let r = offers(&mut s, UPLINK, &routed);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].key.src_mac, r[0].rewrite), (gw_mac(RED), None));
}

#[test]
fn no_flow_is_offered_to_a_redirected_address() {
    let mut s = fast_a();
    // VM 12 to tap 14, both on host A.
    let frame = red_tcp(12, 14, 100);
    let _ = offers(&mut s, VM_RED, &frame);
    let local = offers(&mut s, VM_RED, &frame);
    assert_eq!(local.len(), 1);
    assert_eq!(local[0].out_port, TAP_RED);
    // Tap 14 (a VM's) stopped for its switchover to host B: VM 12's frames go there, by the
    // switch alone (the redirect lapses by the clock, which a kernel flow would not see).
    s.apply(ConfigCommand::RedirectMac {
        network: RED,
        mac: mac(14),
        to: Some(VTEP_B),
    })
    .unwrap();
    for _ in 0..2 {
        let mut tx = TxBatch::new();
        s.process_offload(NOW, [(VM_RED, &frame[..], Offload::NONE)], &mut tx);
        let sent: Vec<_> = tx.iter().map(|(f, _)| (f.port, f.vtep)).collect();
        assert_eq!(sent, [(UPLINK, Some(VTEP_B))]);
        let mut offered = Vec::new();
        s.take_fast_offers(&mut offered);
        assert!(offered.is_empty(), "{offered:?}");
    }
    // Ended: offered again, to the tap.
    s.apply(ConfigCommand::RedirectMac {
        network: RED,
        mac: mac(14),
        to: None,
    })
    .unwrap();
    let again = offers(&mut s, VM_RED, &frame);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].out_port, TAP_RED);
}

#[test]
fn what_the_kernel_carried_over_the_tunnel_is_counted_on_the_uplink() {
    let mut s = host_b();
    s.set_port_fast(VM_B, true);
    s.set_port_fast(UPLINK, true);
    let frame = vxlan(VTEP_A, VTEP_B, 5002, &red_tcp(12, 22, 100));
    let _ = offers(&mut s, UPLINK, &frame);
    let f = offers(&mut s, UPLINK, &frame)[0];
    let before = (
        s.port_counters(UPLINK).unwrap(),
        s.port_counters(VM_B).unwrap(),
    );
    // Two large segments of 30 packets each, 1,400 bytes of data.
    let traffic = FastTraffic {
        frames: 2,
        bytes: 2 * (14 + 40 + 30 * 1400),
        packets: 60,
        ip_bytes: 60 * 1440,
    };
    let later = NOW + Duration::from_secs(200);
    s.fast_traffic(later, &f, traffic);
    let (up, vm) = (
        s.port_counters(UPLINK).unwrap(),
        s.port_counters(VM_B).unwrap(),
    );
    // On the uplink, 60 encapsulated packets; to the VM, the two frames.
    assert_eq!(up.rx_packets - before.0.rx_packets, 60);
    assert_eq!(up.rx_bytes - before.0.rx_bytes, 60 * (1440 + 64));
    assert_eq!(vm.tx_packets - before.1.tx_packets, 2);
    assert_eq!(vm.tx_bytes - before.1.tx_bytes, traffic.bytes);
    // VM 12's entry, behind host A, was refreshed.
    let (_, entry) = s
        .mac_entries(RED)
        .into_iter()
        .find(|(m, _)| *m == mac(12))
        .expect("still known");
    assert_eq!(entry.location, Location::Vtep(VTEP_A));
    assert_eq!(entry.last_seen, Some(later));
}
