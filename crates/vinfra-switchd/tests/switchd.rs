//! Real frames through the switch daemon: namespaces with taps, two hosts over VXLAN, a VLAN
//! trunk read with a raw socket, VM ports over Unix datagram sockets, a QEMU guest, restarts.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::*;
use vinfra_switch_control::{Attachment, CountersView, PortSpec, Request, UPLINK_PORT};
use vinfra_switchd::sys::PacketSocket;

const BCAST: [u8; 6] = [0xff; 6];

fn drops(c: &CountersView, port: u32, reason: &str) -> u64 {
    c.port(port).map_or(0, |p| p.traffic.dropped(reason))
}

#[test]
fn taps_on_one_switch_ping_and_other_network_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("h");
    let (a, b, c) = (Netns::new("a"), Netns::new("b"), Netns::new("c"));
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let (ta, tb, tc) = (name("t"), name("t"), name("t"));
    client
        .apply(&[
            overlay(1, 100),
            overlay(2, 200),
            tap_port(1, 1, &ta, 1500),
            tap_port(2, 1, &tb, 1500),
            tap_port(3, 2, &tc, 1500),
        ])
        .unwrap();
    attach_tap(&host, &ta, &a, "10.77.0.1/24", 1500);
    attach_tap(&host, &tb, &b, "10.77.0.2/24", 1500);
    // Same address as B, on the other network.
    attach_tap(&host, &tc, &c, "10.77.0.2/24", 1500);

    assert!(a.ping_until("10.77.0.2", 5), "{}", daemon.log_text());
    assert!(a.ping("10.77.0.2", 3));
    // C's own traffic stays in network 2, where nobody else is.
    assert!(!c.ping("10.77.0.1", 1));

    let counters = client.counters().unwrap();
    let port_c = counters.port(3).unwrap();
    assert_eq!(port_c.traffic.tx_packets, 0, "{counters:#?}");
    assert!(port_c.traffic.rx_packets > 0, "{counters:#?}");
    assert!(counters.port(2).unwrap().traffic.tx_packets >= 3);
    assert!(counters.network(1).unwrap().traffic.tx_packets >= 6);
    // Every copy a network sent went out of its own ports: a frame of one network delivered to
    // the other's port would count in the first network and in a port outside it.
    let tx = |p: u32| counters.port(p).unwrap().traffic.tx_packets;
    let net_tx = |n: u32| counters.network(n).unwrap().traffic.tx_packets;
    assert_eq!(net_tx(1), tx(1) + tx(2), "{counters:#?}");
    assert_eq!(net_tx(2), tx(3), "{counters:#?}");

    // Malformed frames from A's side of the tap: dropped, counted, and the switch goes on.
    let raw = {
        let ta = ta.clone();
        a.run(move || PacketSocket::open(&ta)).unwrap()
    };
    let src = mac_of(&a, &ta);
    let ip_a = Ipv4Addr::new(10, 77, 0, 1);
    let ip_b = Ipv4Addr::new(10, 77, 0, 2);
    let mut bad_sum = ipv4(ip_a, ip_b, 17, &[0, 1, 0, 2, 0, 8, 0, 0]);
    bad_sum[10] ^= 0xff;
    let frames = [
        frame(BCAST, src, None, 0x0800, &bad_sum),
        frame(BCAST, src, None, 0x0800, &[0x45, 0, 0, 20, 0, 0]),
        frame(
            BCAST,
            src,
            Some(100),
            0x0806,
            &arp(1, src, ip_a, [0; 6], ip_b),
        ),
        frame(
            BCAST,
            [0x01, 0, 0x5e, 0, 0, 1],
            None,
            0x0806,
            &arp(1, src, ip_a, [0; 6], ip_b),
        ),
    ];
    for f in &frames {
        raw.send(f).unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(5), || {
            let c = client.counters().unwrap();
            drops(&c, 1, "bad_ip_checksum") >= 1
                && drops(&c, 1, "truncated_header") >= 1
                && drops(&c, 1, "unexpected_vlan_tag") >= 1
                && drops(&c, 1, "bad_source_mac") >= 1
        }),
        "{:#?}",
        client.counters().unwrap()
    );
    assert!(a.ping("10.77.0.2", 1));
}

/// `--busy-poll`: the daemon forwards as usual and never sleeps (a core busy while idle); the
/// same set-up without it sleeps.
#[test]
fn a_busy_polling_switch_forwards_and_never_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    for busy in [true, false] {
        let host = Netns::new("h");
        let (a, b) = (Netns::new("a"), Netns::new("b"));
        let args: &[&str] = if busy { &["--busy-poll"] } else { &[] };
        let daemon = Daemon::start_with(&host, dir.path(), None, &[], args);
        let mut client = daemon.client();
        let (ta, tb) = (name("t"), name("t"));
        client
            .apply(&[
                overlay(1, 100),
                tap_port(1, 1, &ta, 1500),
                tap_port(2, 1, &tb, 1500),
            ])
            .unwrap();
        attach_tap(&host, &ta, &a, "10.77.3.1/24", 1500);
        attach_tap(&host, &tb, &b, "10.77.3.2/24", 1500);
        assert!(a.ping_until("10.77.3.2", 5), "{}", daemon.log_text());
        assert!(a.ping("10.77.3.2", 3));
        let before = daemon.cpu_time();
        std::thread::sleep(Duration::from_secs(2));
        let idle = daemon.cpu_time().saturating_sub(before);
        if busy {
            assert!(
                idle >= Duration::from_millis(800),
                "busy poll: {idle:?} of CPU in 2 s"
            );
        } else {
            assert!(
                idle <= Duration::from_millis(200),
                "sleeping: {idle:?} of CPU in 2 s"
            );
        }
    }
}

#[test]
fn two_switches_carry_an_overlay_over_vxlan() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = vxlan_pair(dir.path(), 78, 1500, 5000, 1450);
    let VxlanPair {
        ca,
        cb,
        da,
        db,
        ea,
        hb,
        ..
    } = &mut pair;
    // The overlay MTU is checked against the underlay's.
    let refused = ca.apply(&[tap_port(2, 1, &name("t"), 1500)]).unwrap_err();
    assert!(refused.to_string().contains("MTU"), "{refused}");

    assert!(
        ea.ping_until("10.79.0.2", 5),
        "{}\n{}",
        da.log_text(),
        db.log_text()
    );
    assert!(ea.ping("10.79.0.2", 3));
    // A full-size packet fits the overlay.
    assert!(ea.try_exec(&[
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        "1422",
        "10.79.0.2"
    ]));

    for client in [&mut *ca, &mut *cb] {
        let c = client.counters().unwrap();
        let uplink = c.port(UPLINK_PORT).unwrap();
        assert!(uplink.traffic.tx_packets >= 4, "{c:#?}");
        assert!(uplink.traffic.rx_packets >= 4, "{c:#?}");
        assert!(uplink.traffic.tx_bytes >= 4 * (98 + 50), "{c:#?}");
        assert_eq!(uplink.traffic.drops_total(), 0, "{c:#?}");
        assert_eq!(uplink.tx_errors, 0, "{c:#?}");
    }

    // Malformed VXLAN packets sent to A's uplink from host B.
    let sock = hb.run(|| UdpSocket::bind("10.78.0.2:0")).unwrap();
    let to = "10.78.0.1:4789";
    let inner = frame(
        BCAST,
        [2, 0, 0, 0, 0, 9],
        None,
        0x0806,
        &arp(
            1,
            [2, 0, 0, 0, 0, 9],
            Ipv4Addr::new(10, 79, 0, 9),
            [0; 6],
            Ipv4Addr::new(10, 79, 0, 1),
        ),
    );
    let vxlan = |flags: u8, vni: u32, inner: &[u8]| {
        let mut p = vec![flags, 0, 0, 0];
        p.extend_from_slice(&(vni << 8).to_be_bytes());
        p.extend_from_slice(inner);
        p
    };
    sock.send_to(&[8, 0, 0], to).unwrap();
    sock.send_to(&vxlan(0, 5000, &inner), to).unwrap();
    sock.send_to(&vxlan(8, 7777, &inner), to).unwrap();
    sock.send_to(&vxlan(8, 5000, &inner[..5]), to).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || {
            let c = ca.counters().unwrap();
            drops(&c, UPLINK_PORT, "truncated_header") >= 2
                && drops(&c, UPLINK_PORT, "bad_vxlan_flags") >= 1
                && drops(&c, UPLINK_PORT, "unknown_vni") >= 1
        }),
        "{:#?}",
        ca.counters().unwrap()
    );
    assert!(ea.ping("10.79.0.2", 1));
}

#[test]
fn vlan_trunk_carries_tagged_frames_of_its_vlan_only() {
    let dir = tempfile::tempdir().unwrap();
    let (host, phys, ep) = (Netns::new("h"), Netns::new("p"), Netns::new("e"));
    let (trh, trp) = (name("r"), name("r"));
    sh(&[
        "ip", "link", "add", &trh, "netns", &host.name, "type", "veth", "peer", "name", &trp,
        "netns", &phys.name,
    ]);
    host.exec(&["ip", "link", "set", &trh, "up"]);
    phys.exec(&["ip", "link", "set", &trp, "up"]);
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let tap = name("t");
    client
        .apply(&[
            vlan(1, 100),
            Request::AddPort(PortSpec {
                id: 1,
                mtu: 1500,
                attach: Attachment::VlanTrunk {
                    interface: trh.clone(),
                },
            }),
            tap_port(2, 1, &tap, 1500),
        ])
        .unwrap();
    attach_tap(&host, &tap, &ep, "10.80.0.1/24", 1500);
    let ep_mac = mac_of(&ep, &tap);
    let wire = {
        let trp = trp.clone();
        phys.run(move || PacketSocket::open(&trp)).unwrap()
    };

    // The endpoint looks for 10.80.0.2: the "physical" side sees the ARP request tagged 100.
    let _ = ep.ping("10.80.0.2", 1);
    let mut buf = vec![0u8; 2048];
    let mut seen = Vec::new();
    let found = wait_for(Duration::from_secs(5), || {
        while let Ok(r) = wire.recv(&mut buf) {
            seen.push(buf[r].to_vec());
        }
        seen.iter().any(|f| {
            f.len() >= 18 + 28
                && f[12..14] == [0x81, 0x00]
                && u16::from_be_bytes([f[14], f[15]]) & 0x0fff == 100
                && f[16..18] == [0x08, 0x06]
                && f[6..12] == ep_mac
                && f[18 + 24..18 + 28] == [10, 80, 0, 2]
        })
    });
    assert!(found, "no tagged ARP request among {seen:02x?}");
    for f in &seen {
        assert_eq!(
            f[12..14],
            [0x81, 0x00],
            "untagged frame on the trunk: {f:02x?}"
        );
        assert_eq!(u16::from_be_bytes([f[14], f[15]]) & 0x0fff, 100);
    }

    // The physical host answers, tagged 100: the endpoint learns its address.
    let phys_mac = [2, 0, 0, 0, 0x50, 2];
    let reply = arp(
        2,
        phys_mac,
        Ipv4Addr::new(10, 80, 0, 2),
        ep_mac,
        Ipv4Addr::new(10, 80, 0, 1),
    );
    let _ = ep.ping("10.80.0.2", 1);
    wire.send(&frame(ep_mac, phys_mac, Some(100), 0x0806, &reply))
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || {
            ep.exec(&["ip", "neigh", "show", "10.80.0.2"])
                .contains("02:00:00:00:50:02")
        }),
        "{:#?}",
        client.counters().unwrap()
    );

    // Another VLAN, untagged, QinQ and truncated frames: dropped and counted.
    let before = client.counters().unwrap();
    let other = frame(BCAST, phys_mac, Some(200), 0x0806, &reply);
    for _ in 0..5 {
        wire.send(&other).unwrap();
    }
    wire.send(&frame(BCAST, phys_mac, None, 0x0806, &reply))
        .unwrap();
    let mut qinq = frame(BCAST, phys_mac, Some(100), 0x0806, &reply);
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    wire.send(&qinq).unwrap();
    wire.send(&frame(BCAST, phys_mac, Some(100), 0x0800, &[0x45, 0, 0]))
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || {
            let c = client.counters().unwrap();
            drops(&c, 1, "unknown_vlan") >= 5
                && drops(&c, 1, "untagged_on_trunk") >= 1
                && drops(&c, 1, "qinq_unsupported") >= 1
                && drops(&c, 1, "truncated_header") >= 1
        }),
        "{:#?}",
        client.counters().unwrap()
    );
    let after = client.counters().unwrap();
    assert_eq!(
        before.port(2).unwrap().traffic.tx_packets,
        after.port(2).unwrap().traffic.tx_packets,
        "a dropped frame reached the endpoint"
    );
}

fn vm_port(id: u32, network: u32, socket: &Path, peer: &Path) -> Request {
    Request::AddPort(PortSpec {
        id,
        mtu: 1500,
        attach: Attachment::Vm {
            network,
            socket: socket.to_owned(),
            peer: peer.to_owned(),
            owner: None,
        },
    })
}

fn recv_within(sock: &UnixDatagram, buf: &mut [u8]) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.recv(buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn vm_sockets_survive_a_switch_crash_and_the_agent_replays_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("h");
    let d = dir.path();
    let (vm1_path, vm2_path) = (d.join("vm1.sock"), d.join("vm2.sock"));
    let (sw1, sw2) = (d.join("sw1.sock"), d.join("sw2.sock"));
    // The "QEMU" ends: bound once, kept across the switch's restart.
    let vm1 = UnixDatagram::bind(&vm1_path).unwrap();
    let vm2 = UnixDatagram::bind(&vm2_path).unwrap();
    let mut daemon = Daemon::start(&host, d, None);
    let mut client = daemon.client();
    let desired = vec![
        overlay(1, 42),
        vm_port(1, 1, &sw1, &vm1_path),
        vm_port(2, 1, &sw2, &vm2_path),
    ];
    client.apply(&desired).unwrap();
    assert_eq!(client.config().unwrap(), desired);
    // Putting moved MAC entries back is an action, not configuration.
    client.apply(&[Request::RevertMacMoves]).unwrap();
    assert_eq!(client.config().unwrap(), desired);

    let (mac1, mac2) = ([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 82, 0, 1), Ipv4Addr::new(10, 82, 0, 2));
    let request = frame(BCAST, mac1, None, 0x0806, &arp(1, mac1, ip1, [0; 6], ip2));
    let reply = frame(mac1, mac2, None, 0x0806, &arp(2, mac2, ip2, mac1, ip1));
    let mut buf = vec![0u8; 65536];
    vm1.send_to(&request, &sw1).unwrap();
    assert_eq!(recv_within(&vm2, &mut buf).as_deref(), Some(&request[..]));
    vm2.send_to(&reply, &sw2).unwrap();
    assert_eq!(recv_within(&vm1, &mut buf).as_deref(), Some(&reply[..]));

    // Malformed frames from a VM: runt, tagged, bad IPv4 checksum, oversized.
    let mut bad_sum = ipv4(ip1, ip2, 1, &[8, 0, 0, 0, 0, 0, 0, 0]);
    bad_sum[10] ^= 0xff;
    for f in [
        vec![1u8; 8],
        frame(
            BCAST,
            mac1,
            Some(7),
            0x0806,
            &arp(1, mac1, ip1, [0; 6], ip2),
        ),
        frame(mac2, mac1, None, 0x0800, &bad_sum),
        frame(
            mac2,
            mac1,
            None,
            0x0800,
            &ipv4(ip1, ip2, 17, &vec![0u8; 1600]),
        ),
    ] {
        vm1.send_to(&f, &sw1).unwrap();
    }
    assert!(wait_for(Duration::from_secs(5), || {
        let c = client.counters().unwrap();
        [
            "runt",
            "unexpected_vlan_tag",
            "bad_ip_checksum",
            "oversized",
        ]
        .iter()
        .all(|r| drops(&c, 1, r) == 1)
    }));
    assert!(daemon.alive());
    assert_eq!(
        client
            .counters()
            .unwrap()
            .port(2)
            .unwrap()
            .traffic
            .tx_packets,
        1
    );

    // Crash: the VM's socket stays; the switch comes back empty and the agent replays.
    let config = client.config().unwrap();
    daemon.restart();
    let mut client = daemon.client();
    assert!(client.config().unwrap().is_empty());
    client.apply(&config).unwrap();
    vm1.send_to(&request, &sw1).unwrap();
    assert_eq!(recv_within(&vm2, &mut buf).as_deref(), Some(&request[..]));
    vm2.send_to(&reply, &sw2).unwrap();
    assert_eq!(recv_within(&vm1, &mut buf).as_deref(), Some(&reply[..]));
}

#[test]
fn a_ports_dscp_mark_is_written_into_what_it_sends() {
    if !common::needs().met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("h");
    let d = dir.path();
    let (vm1_path, vm2_path) = (d.join("vm1.sock"), d.join("vm2.sock"));
    let (sw1, sw2) = (d.join("sw1.sock"), d.join("sw2.sock"));
    let vm1 = UnixDatagram::bind(&vm1_path).unwrap();
    let vm2 = UnixDatagram::bind(&vm2_path).unwrap();
    let daemon = Daemon::start(&host, d, None);
    let mut client = daemon.client();
    client
        .apply(&[
            overlay(1, 42),
            vm_port(1, 1, &sw1, &vm1_path),
            vm_port(2, 1, &sw2, &vm2_path),
        ])
        .unwrap();
    let (mac1, mac2) = ([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 82, 0, 1), Ipv4Addr::new(10, 82, 0, 2));
    // A UDP packet whose TOS is DSCP 10 (AF11) with ECN 1 (ECT(1)); checksum recomputed.
    let mut packet = ipv4(ip1, ip2, 17, &[0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
    packet[1] = (10 << 2) | 1;
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum = ipv4_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    let sent = frame(mac2, mac1, None, 0x0800, &packet);
    let mut buf = vec![0u8; 65536];
    let received = |buf: &mut [u8]| {
        vm1.send_to(&sent, &sw1).unwrap();
        recv_within(&vm2, buf).expect("the packet reaches vm2")
    };
    // Trusted (no QoS): as sent.
    assert_eq!(received(&mut buf), sent);
    let qos = |mark| Request::SetPortQos {
        port: 1,
        qos: Some(vinfra_switch_control::QosSpec {
            dscp_mark: mark,
            ..Default::default()
        }),
    };
    client.apply(&[qos(Some(46))]).unwrap();
    let got = received(&mut buf);
    let ip = &got[14..];
    assert_eq!(ip[1] >> 2, 46, "DSCP marked EF");
    assert_eq!(ip[1] & 3, 1, "ECN kept");
    assert_eq!(ipv4_checksum(&ip[..20]), 0, "header checksum valid");
    assert_eq!(&ip[20..], &packet[20..], "payload unchanged");
    // Refused: nothing changes.
    assert!(client.apply(&[qos(Some(64))]).is_err());
    assert_eq!(received(&mut buf)[15] >> 2, 46);
    // Trust again (QoS without a mark), then no QoS at all: as sent.
    client.apply(&[qos(None)]).unwrap();
    assert_eq!(received(&mut buf), sent);
    client.apply(&[qos(Some(0))]).unwrap();
    assert_eq!(received(&mut buf)[15] >> 2, 0);
    client
        .apply(&[Request::SetPortQos { port: 1, qos: None }])
        .unwrap();
    assert_eq!(received(&mut buf), sent);
}

/// The ones' complement sum of an IPv4 header, folded and inverted: 0 over a valid header
/// (checksum included), the checksum to write over one whose checksum field is zero.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn qemu_guest_on_a_vm_port_answers_ping_across_a_switch_restart() {
    let Some(guest) = guest_image() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (host, ep) = (Netns::new("h"), Netns::new("e"));
    let mut daemon = Daemon::start(&host, d, None);
    let mut client = daemon.client();
    let tap = name("t");
    let (sw, vm) = (d.join("sw.sock"), d.join("vm.sock"));
    let desired = vec![
        overlay(1, 300),
        tap_port(1, 1, &tap, 1500),
        vm_port(2, 1, &sw, &vm),
    ];
    client.apply(&desired).unwrap();
    attach_tap(&host, &tap, &ep, "10.81.0.1/24", 1500);

    let mut qemu = Qemu::start(
        &guest,
        "vinfra.ip=10.81.0.10/24",
        "52:54:00:81:00:10",
        &vm,
        &sw,
        &d.join("serial.log"),
    );
    let log = || qemu.log();
    assert!(
        wait_for(Duration::from_secs(60), || log()
            .contains("VINFRA-GUEST IP")),
        "guest did not configure eth0: {}",
        log()
    );
    assert!(
        ep.ping_until("10.81.0.10", 10),
        "{}\n{:#?}",
        log(),
        client.counters().unwrap()
    );
    assert!(ep.ping("10.81.0.10", 2));

    // The switch crashes: QEMU keeps running; the restarted switch takes the socket path back,
    // the agent replays the configuration (the tap comes back and is moved into place again).
    daemon.kill();
    assert!(qemu.alive(), "QEMU died with the switch");
    daemon.restart();
    let mut client = daemon.client();
    client.apply(&desired).unwrap();
    attach_tap(&host, &tap, &ep, "10.81.0.1/24", 1500);
    assert!(
        ep.ping_until("10.81.0.10", 10),
        "{:#?}",
        client.counters().unwrap()
    );
    assert!(qemu.alive());
    let c = client.counters().unwrap();
    assert!(c.port(2).unwrap().traffic.rx_packets >= 1, "{c:#?}");
}

/// A TCP header (no options, checksum left 0: the switch does not check it).
fn tcp(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&1000u32.to_be_bytes());
    h.extend_from_slice(&1u32.to_be_bytes());
    h.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h.extend_from_slice(payload);
    h
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;

/// Whether a frame arrives on `sock` within `wait` (frames already queued are read first).
fn arrives(sock: &UnixDatagram, wait: Duration, want: &[u8]) -> bool {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        if buf[..n] == *want {
            return true;
        }
    }
    false
}

#[test]
fn a_vm_ports_firewall_filters_logs_and_hands_its_connections_to_another_switch() {
    use vinfra_switch_control::{
        ActionSpec, DirectionSpec, FirewallRuleSpec, PrefixSpec, SideSpec, TcpStateSpec,
    };
    if !needs().met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (host, other) = (Netns::new("h"), Netns::new("g"));
    let (mac1, mac2) = ([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 83, 0, 1), Ipv4Addr::new(10, 83, 0, 2));
    let rules = vec![FirewallRuleSpec {
        direction: DirectionSpec::Ingress,
        protocol: Some(6),
        ports: Some((8080, 8080)),
        remote: vec![PrefixSpec {
            ip: Ipv4Addr::new(10, 83, 0, 0),
            prefix_len: 24,
        }],
        action: ActionSpec::Allow,
    }];
    let to2 = |sport: u16, dport: u16, flags: u8, data: &[u8]| {
        frame(
            mac2,
            mac1,
            None,
            0x0800,
            &ipv4(ip1, ip2, 6, &tcp(sport, dport, flags, data)),
        )
    };
    let to1 = |sport: u16, dport: u16, flags: u8| {
        frame(
            mac1,
            mac2,
            None,
            0x0800,
            &ipv4(ip2, ip1, 6, &tcp(sport, dport, flags, &[])),
        )
    };
    // Two "QEMU" ends per switch: vm1 talks to vm2, whose port has the firewall.
    let sockets = |tag: &str| {
        let (p1, p2) = (d.join(format!("{tag}vm1")), d.join(format!("{tag}vm2")));
        let (s1, s2) = (d.join(format!("{tag}sw1")), d.join(format!("{tag}sw2")));
        let vms = (
            UnixDatagram::bind(&p1).unwrap(),
            UnixDatagram::bind(&p2).unwrap(),
        );
        let config = vec![
            overlay(1, 43),
            vm_port(1, 1, &s1, &p1),
            vm_port(2, 1, &s2, &p2),
            Request::SetPortFirewall {
                port: 2,
                rules: Some(rules.clone()),
            },
        ];
        (vms, (s1, s2), config)
    };

    let ((vm1, vm2), (sw1, sw2), config) = sockets("a");
    let daemon = Daemon::start(&host, d, None);
    let mut client = daemon.client();
    client.apply(&config).unwrap();
    assert_eq!(
        client.config().unwrap(),
        config,
        "the firewall goes with its port"
    );
    // Port 8081 is no rule's: dropped by default, counted and logged.
    let blocked = to2(40001, 8081, SYN, &[]);
    vm1.send_to(&blocked, &sw1).unwrap();
    assert!(!arrives(&vm2, Duration::from_millis(500), &blocked));
    // Port 8080 is allowed; the reply passes without a rule, the handshake completes.
    let syn = to2(40000, 8080, SYN, &[]);
    vm1.send_to(&syn, &sw1).unwrap();
    assert!(arrives(&vm2, Duration::from_secs(5), &syn));
    let syn_ack = to1(8080, 40000, SYN_ACK);
    vm2.send_to(&syn_ack, &sw2).unwrap();
    assert!(arrives(&vm1, Duration::from_secs(5), &syn_ack));
    let ack = to2(40000, 8080, ACK, &[]);
    vm1.send_to(&ack, &sw1).unwrap();
    assert!(arrives(&vm2, Duration::from_secs(5), &ack));
    let c = client.counters().unwrap();
    assert_eq!(drops(&c, 2, "firewall_default_deny"), 1, "{c:#?}");
    let port2 = c.port(2).unwrap();
    assert_eq!(port2.firewall_hits, Some(vec![1]), "{c:#?}");
    assert_eq!(port2.connections, 1, "{c:#?}");
    assert_eq!(c.port(1).unwrap().firewall_hits, None, "{c:#?}");
    let conntrack = c
        .conntrack
        .clone()
        .expect("the connection table's counters");
    assert_eq!((conntrack.entries, conntrack.created), (1, 1), "{c:#?}");
    assert!(
        wait_for(Duration::from_secs(5), || {
            let log = vinfra_testenv::plain_log(&daemon.log_text());
            log.lines().any(|l| {
                l.contains("firewall drop")
                    && l.contains("dst_port=8081")
                    && l.contains("firewall_default_deny")
                    && l.contains("ingress")
            })
        }),
        "no drop line in the daemon's log: {}",
        daemon.log_text()
    );

    // The connection leaves with the VM: exported from port 2 …
    let exported = client.export_connections(2).unwrap();
    assert_eq!(exported.len(), 1, "{exported:?}");
    let e = exported[0];
    assert_eq!(
        (
            e.original.src,
            e.original.dst,
            e.original.dst_port,
            e.origin,
            e.tcp_state
        ),
        (
            ip1,
            ip2,
            8080,
            SideSpec::ToVm,
            Some(TcpStateSpec::Established)
        )
    );
    assert!(client.export_connections(9).is_err(), "no port 9");

    // … into another switch's port with the same rules: its data passes there only once
    // imported (before, a segment without its connection is invalid).
    let ((vm1b, vm2b), (sw1b, _), config_b) = sockets("b");
    let daemon_b = Daemon::start(&other, d, None);
    let mut client_b = daemon_b.client();
    client_b.apply(&config_b).unwrap();
    let data = to2(40000, 8080, ACK, b"hello");
    vm1b.send_to(&data, &sw1b).unwrap();
    assert!(!arrives(&vm2b, Duration::from_millis(500), &data));
    assert_eq!(
        drops(&client_b.counters().unwrap(), 2, "conntrack_invalid"),
        1
    );
    client_b
        .apply(&[Request::ImportConnections {
            port: 2,
            entries: exported,
        }])
        .unwrap();
    vm1b.send_to(&data, &sw1b).unwrap();
    assert!(arrives(&vm2b, Duration::from_secs(5), &data));
    let c = client_b.counters().unwrap();
    assert_eq!(c.conntrack.as_ref().map(|t| t.imported), Some(1), "{c:#?}");
    // Imports are no configuration.
    assert_eq!(client_b.config().unwrap(), config_b);

    // No firewall: listed as such, and anything passes; removing the port takes it along.
    client
        .apply(&[Request::SetPortFirewall {
            port: 2,
            rules: None,
        }])
        .unwrap();
    assert!(client
        .config()
        .unwrap()
        .contains(&Request::SetPortFirewall {
            port: 2,
            rules: None
        }));
    vm1.send_to(&blocked, &sw1).unwrap();
    assert!(arrives(&vm2, Duration::from_secs(5), &blocked));
    client.apply(&[Request::RemovePort { id: 2 }]).unwrap();
    assert!(!client
        .config()
        .unwrap()
        .iter()
        .any(|r| matches!(r, Request::SetPortFirewall { .. })));
}
