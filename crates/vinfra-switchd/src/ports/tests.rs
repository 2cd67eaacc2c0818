//! Tests of the ports: UDP GSO grouping, coalesced receive over loopback.

use super::send::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use super::*;
use crate::sys::Message;

fn packet(len: usize) -> Vec<u8> {
    vec![0u8; UDP_PAYLOAD_OFFSET + len]
}

/// A UDP GSO message sent over loopback to a socket with `UDP_GRO` arrives whole (one
/// message, with its segment size), and cutting it apart gives, packet by packet, the
/// frames the same datagrams give when read one by one.
#[test]
fn a_coalesced_message_cuts_into_the_frames_of_its_datagrams() {
    let local = Ipv4Addr::LOCALHOST;
    let rx = std::net::UdpSocket::bind((local, 0)).unwrap();
    let plain = std::net::UdpSocket::bind((local, 0)).unwrap();
    assert!(sys::enable_udp_gro(&rx), "UDP_GRO refused");
    let tx = std::net::UdpSocket::bind((local, 0)).unwrap();
    let SocketAddr::V4(from) = tx.local_addr().unwrap() else {
        unreachable!()
    };
    // Five VXLAN-sized payloads of 1,000 bytes and a last of 300, each of its own bytes.
    let payloads: Vec<Vec<u8>> = (0..6u8)
        .map(|i| vec![i + 1; if i == 5 { 300 } else { 1000 }])
        .collect();
    let whole: Vec<u8> = payloads.concat();
    let send = |to: &std::net::UdpSocket, segment: u16| {
        let SocketAddr::V4(to) = to.local_addr().unwrap() else {
            unreachable!()
        };
        let raw = RawAddr::v4(to);
        let parts = [io::IoSlice::new(&whole)];
        let sent = sys::send_batch(
            &tx,
            &[Message {
                to: &raw,
                parts: &parts,
                segment,
            }],
        );
        assert_eq!(sent.unwrap(), 1);
    };
    send(&rx, 1000);
    // The same datagrams to a socket without UDP_GRO, one by one.
    for p in &payloads {
        tx.send_to(p, plain.local_addr().unwrap()).unwrap();
    }
    let mut bufs: Vec<Box<[u8]>> = (0..8).map(|_| vec![0u8; 70_000].into()).collect();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while got.is_empty() && std::time::Instant::now() < deadline {
        match sys::recv_batch(&rx, &mut bufs, RX_HEADROOM, &mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("recvmmsg: {e}"),
        }
    }
    assert_eq!(
        got,
        [sys::Received {
            len: whole.len(),
            from: Some(from),
            segment: Some(1000),
        }]
    );
    let c = CoalescedDatagrams {
        segment: 1000,
        from,
        local_ip: local,
    };
    let mut cut: Vec<Vec<u8>> = Vec::new();
    let buf = bufs.first_mut().unwrap();
    let n = c.for_each(buf, RX_HEADROOM..RX_HEADROOM + whole.len(), |f| {
        cut.push(f.to_vec())
    });
    assert_eq!(n, 6);
    // One by one, as the uplink reads single datagrams.
    plain.set_nonblocking(false).unwrap();
    for (p, frame) in payloads.iter().zip(&cut) {
        let mut one = vec![0u8; RX_HEADROOM + 2000];
        let (len, _) = plain.recv_from(&mut one[RX_HEADROOM..]).unwrap();
        assert_eq!(len, p.len());
        rebuild_underlay(&mut one, len, *from.ip(), from.port(), local);
        one.truncate(RX_HEADROOM + len);
        assert_eq!(frame, &one);
        assert_eq!(&frame[RX_HEADROOM..], &p[..]);
    }
    assert_eq!(cut.len(), payloads.len());
}

#[test]
fn vxlan_packets_group_into_gso_messages_per_vtep_and_size() {
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let (full, short, other) = (packet(1000), packet(300), packet(1200));
    let frames: Vec<(&[u8], Option<Ipv4Addr>)> = vec![
        (&full, Some(a)),
        (&full, Some(a)),
        (&short, Some(a)),      // closes the run
        (&full, Some(a)),       // a new run
        (&full, Some(b)),       // another VTEP
        (&other, Some(b)),      // longer: a new run
        (&full[..10], Some(b)), // too short to be VXLAN: an error of its own
        (&full, None),          // no VTEP
    ];
    let frames: Vec<Outgoing<'_>> = frames.iter().map(|&(b, v)| Outgoing::whole(b, v)).collect();
    let groups = group_vxlan(&frames, true);
    let shape: Vec<(Range<usize>, u16, bool)> = groups
        .iter()
        .map(|g| (g.frames.clone(), g.segment, g.to.is_some()))
        .collect();
    assert_eq!(
        shape,
        vec![
            (0..3, 1000, true),
            (3..4, 0, true),
            (4..5, 0, true),
            (5..6, 0, true),
            (6..7, 0, false),
            (7..8, 0, false),
        ]
    );
    // Without GSO every packet is its own message.
    let groups = group_vxlan(&frames, false);
    assert_eq!(groups.len(), frames.len());
    assert!(groups.iter().all(|g| g.segment == 0 && g.frames.len() == 1));
}

#[test]
fn gso_messages_respect_the_segment_and_byte_limits() {
    let vtep = Ipv4Addr::new(10, 0, 0, 1);
    let p = packet(1400);
    let frames: Vec<Outgoing<'_>> = (0..200).map(|_| Outgoing::whole(&p, Some(vtep))).collect();
    let groups = group_vxlan(&frames, true);
    for g in &groups {
        assert!(g.frames.len() <= GSO_MAX_SEGMENTS);
        assert!(g.frames.len() * 1400 <= GSO_MAX_BYTES);
    }
    assert_eq!(groups.iter().map(|g| g.frames.len()).sum::<usize>(), 200);
    assert_eq!(groups[0].frames.len(), GSO_MAX_BYTES / 1400);
}

/// Frames whose payload stayed in a received frame (a head and a tail) go out as the same
/// datagrams as whole frames: one UDP GSO message cut by the kernel, or one datagram each.
#[test]
fn gathered_frames_go_out_as_the_datagrams_of_their_parts() {
    let local = Ipv4Addr::LOCALHOST;
    let rx = std::net::UdpSocket::bind((local, 0)).unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let SocketAddr::V4(to) = rx.local_addr().unwrap() else {
        unreachable!()
    };
    let tx = std::net::UdpSocket::bind((local, 0)).unwrap();
    let payload: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
    let heads: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let mut h = packet(60);
            h[UDP_PAYLOAD_OFFSET] = i;
            h
        })
        .collect();
    let tails = [&payload[..1000], &payload[1000..2000], &payload[2000..]];
    let frames: Vec<Outgoing<'_>> = heads
        .iter()
        .zip(tails)
        .map(|(head, tail)| Outgoing {
            head,
            tail,
            vtep: Some(*to.ip()),
        })
        .collect();
    let expected: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| [&f.head[UDP_PAYLOAD_OFFSET..], f.tail].concat())
        .collect();
    let shape: Vec<(Range<usize>, u16)> = group_vxlan(&frames, true)
        .iter()
        .map(|g| (g.frames.clone(), g.segment))
        .collect();
    assert_eq!(shape, vec![(0..3, 1060)]);
    let parts = Parts::of(&frames, UDP_PAYLOAD_OFFSET);
    let raw = RawAddr::v4(to);
    let gso = [FrameGroup {
        frames: 0..3,
        to: Some(raw),
        segment: 1060,
    }];
    let singles: Vec<FrameGroup> = (0..3)
        .map(|i| FrameGroup {
            frames: i..i + 1,
            to: Some(raw),
            segment: 0,
        })
        .collect();
    for groups in [&gso[..], &singles[..]] {
        let mut errors = 0;
        assert_eq!(send_groups(&tx, &parts, groups, &mut errors, None), 3);
        assert_eq!(errors, 0);
        for want in &expected {
            let mut buf = [0u8; 2048];
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &want[..]);
        }
    }
}
