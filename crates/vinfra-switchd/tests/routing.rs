//! Routing through the daemon: a router configured over the control socket routes frames
//! between two VM datagram ports (ARP and ping for the gateway, TTL, a static route, ICMP time
//! exceeded, a neighbour learned from ARP), lists itself in `get_config` in an order that
//! rebuilds it after a crash, counts in `get_counters`; and kernel stacks in two namespaces
//! ping each other and exchange TCP through it.

mod common;

use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use vinfra_switch_control::{
    Attachment, LocationSpec, Mac, PortSpec, PrefixSpec, Request, RouterCountersView,
};

const BCAST: [u8; 6] = [0xff; 6];

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

/// The next datagram on `sock` within 5 s.
fn recv(sock: &UnixDatagram) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// True when nothing arrives on `sock` within 300 ms.
fn silent(sock: &UnixDatagram) -> bool {
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    sock.recv(&mut buf).is_err()
}

/// `packet` as a router forwards it: TTL one less, header checksum filled again.
fn forwarded(packet: &[u8]) -> Vec<u8> {
    let mut p = packet.to_vec();
    p[8] -= 1;
    p[10..12].copy_from_slice(&[0, 0]);
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p
}

/// An ICMP echo request, identifier 0x77, sequence 1, checksum filled.
fn echo_request() -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0, 0, 0x77, 0, 1, b'p', b'i', b'n', b'g'];
    let mut sum: u32 = m
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    m[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    m
}

fn router(client: &mut vinfra_switch_control::SwitchClient) -> RouterCountersView {
    client
        .counters()
        .unwrap()
        .router(1)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn vm_ports_on_two_networks_are_routed_by_a_router_from_the_control_socket() {
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
    let mut daemon = Daemon::start(&host, d, None);
    let mut client = daemon.client();
    let (mac1, mac2) = ([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 91, 0, 11), Ipv4Addr::new(10, 92, 0, 12));
    let (gw_ip1, gw_ip2) = (Ipv4Addr::new(10, 91, 0, 1), Ipv4Addr::new(10, 92, 0, 1));
    let far = PrefixSpec {
        ip: Ipv4Addr::new(198, 51, 100, 0),
        prefix_len: 24,
    };
    // In the order `get_config` lists them: routers after networks, interfaces after routers,
    // routes last.
    let desired = vec![
        overlay(1, 91),
        overlay(2, 92),
        vm_port(1, 1, &sw1, &vm1_path),
        vm_port(2, 2, &sw2, &vm2_path),
        Request::AddMacEntry {
            network: 1,
            mac: Mac(mac1),
            location: LocationSpec::Port(1),
        },
        Request::AddMacEntry {
            network: 2,
            mac: Mac(mac2),
            location: LocationSpec::Port(2),
        },
        Request::AddArpEntry {
            network: 1,
            ip: ip1,
            mac: Mac(mac1),
        },
        Request::AddArpEntry {
            network: 2,
            ip: ip2,
            mac: Mac(mac2),
        },
        Request::AddRouter { id: 1 },
        router_interface(1, gw_ip1, GW1),
        router_interface(2, gw_ip2, GW2),
        Request::AddRoute {
            router: 1,
            prefix: far,
            via: ip2,
        },
    ];
    client.apply(&desired).unwrap();
    assert_eq!(client.config().unwrap(), desired);

    // The gateway answers ARP.
    vm1.send_to(
        &frame(
            BCAST,
            mac1,
            None,
            0x0806,
            &arp(1, mac1, ip1, [0; 6], gw_ip1),
        ),
        &sw1,
    )
    .unwrap();
    assert_eq!(
        recv(&vm1),
        Some(frame(
            mac1,
            GW1,
            None,
            0x0806,
            &arp(2, GW1, gw_ip1, mac1, ip1)
        ))
    );
    // A datagram to the other network: routed, TTL 63, from red's gateway to VM 2.
    let udp = ipv4(
        ip1,
        ip2,
        17,
        &[0x13, 0x88, 0x17, 0x70, 0, 12, 0, 0, 1, 2, 3, 4],
    );
    vm1.send_to(&frame(GW1, mac1, None, 0x0800, &udp), &sw1)
        .unwrap();
    assert_eq!(
        recv(&vm2),
        Some(frame(mac2, GW2, None, 0x0800, &forwarded(&udp)))
    );
    // Through the static route: to its next hop, VM 2.
    let far_away = ipv4(
        ip1,
        Ipv4Addr::new(198, 51, 100, 7),
        17,
        &[0, 1, 0, 2, 0, 8, 0, 0],
    );
    vm1.send_to(&frame(GW1, mac1, None, 0x0800, &far_away), &sw1)
        .unwrap();
    assert_eq!(
        recv(&vm2),
        Some(frame(mac2, GW2, None, 0x0800, &forwarded(&far_away)))
    );
    // The gateway answers ping.
    vm1.send_to(
        &frame(
            GW1,
            mac1,
            None,
            0x0800,
            &ipv4(ip1, gw_ip1, 1, &echo_request()),
        ),
        &sw1,
    )
    .unwrap();
    let reply = recv(&vm1).unwrap();
    assert_eq!((&reply[..6], &reply[6..12]), (&mac1[..], &GW1[..]));
    assert_eq!(
        (&reply[26..30], &reply[30..34]),
        (&gw_ip1.octets()[..], &ip1.octets()[..])
    );
    assert_eq!((reply[34], &reply[38..]), (0, &echo_request()[4..]));
    // TTL 1: time exceeded from the gateway, quoting the packet.
    let expiring = ipv4_ttl(&udp, 1);
    vm1.send_to(&frame(GW1, mac1, None, 0x0800, &expiring), &sw1)
        .unwrap();
    let error = recv(&vm1).unwrap();
    assert_eq!((error[34], error[35]), (11, 0));
    assert_eq!(&error[26..30], &gw_ip1.octets()[..]);
    assert_eq!(&error[42..], &expiring[..]);
    // An address without an ARP entry: the router asks on red, and learns the answer.
    let (ip99, mac99) = (Ipv4Addr::new(10, 92, 0, 99), [0x52, 0x54, 0, 0, 0, 0x99]);
    let to_99 = ipv4(ip1, ip99, 17, &[0, 1, 0, 2, 0, 8, 0, 0]);
    vm1.send_to(&frame(GW1, mac1, None, 0x0800, &to_99), &sw1)
        .unwrap();
    assert_eq!(
        recv(&vm2),
        Some(frame(
            BCAST,
            GW2,
            None,
            0x0806,
            &arp(1, GW2, gw_ip2, [0; 6], ip99)
        ))
    );
    vm2.send_to(
        &frame(GW2, mac99, None, 0x0806, &arp(2, mac99, ip99, GW2, gw_ip2)),
        &sw2,
    )
    .unwrap();
    assert!(wait_for(Duration::from_secs(5), || router(&mut client)
        .neighbours_learned
        == 1));
    vm1.send_to(&frame(GW1, mac1, None, 0x0800, &to_99), &sw1)
        .unwrap();
    assert_eq!(
        recv(&vm2),
        Some(frame(mac99, GW2, None, 0x0800, &forwarded(&to_99)))
    );

    let counters = client.counters().unwrap();
    let r = counters.router(1).unwrap();
    assert_eq!(
        (r.routed_packets, r.echo_replies, r.arp_requests),
        (3, 1, 1),
        "{r:#?}"
    );
    assert_eq!(r.icmp_sent.get("time_exceeded"), Some(&1), "{r:#?}");
    assert_eq!(r.drops.get("ttl_exceeded"), Some(&1), "{r:#?}");
    assert_eq!(r.drops.get("neighbour_unknown"), Some(&1), "{r:#?}");
    assert_eq!(counters.port(1).unwrap().traffic.dropped("ttl_exceeded"), 1);
    assert_eq!(counters.network(2).unwrap().traffic.tx_packets, 4);

    // A bad route is refused with the core's reason.
    let refused = client
        .apply(&[Request::AddRoute {
            router: 1,
            prefix: PrefixSpec {
                ip: Ipv4Addr::new(198, 51, 100, 1),
                prefix_len: 24,
            },
            via: ip2,
        }])
        .unwrap_err();
    assert!(refused.to_string().contains("host bits"), "{refused}");

    // Crash: the restarted switch gets the configuration back from `get_config`'s list and
    // routes again.
    let config = client.config().unwrap();
    assert_eq!(config, desired);
    daemon.restart();
    let mut client = daemon.client();
    assert!(client.config().unwrap().is_empty());
    client.apply(&config).unwrap();
    assert_eq!(client.config().unwrap(), desired);
    vm1.send_to(&frame(GW1, mac1, None, 0x0800, &udp), &sw1)
        .unwrap();
    assert_eq!(
        recv(&vm2),
        Some(frame(mac2, GW2, None, 0x0800, &forwarded(&udp)))
    );
    // Without its router, blue has no gateway: nothing reaches red.
    client.apply(&[Request::RemoveRouter { id: 1 }]).unwrap();
    assert_eq!(client.config().unwrap(), desired[..8].to_vec());
    assert!(client.counters().unwrap().routers.is_empty());
    vm1.send_to(&frame(GW1, mac1, None, 0x0800, &udp), &sw1)
        .unwrap();
    assert!(silent(&vm2));
}

/// `packet` with its TTL set to `ttl` and the header checksum filled again.
fn ipv4_ttl(packet: &[u8], ttl: u8) -> Vec<u8> {
    let mut p = packet.to_vec();
    p[8] = ttl + 1;
    forwarded(&p)
}

/// Standard output of a command in a namespace, whether it succeeds or not.
fn output(ns: &Netns, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(args)
        .output()
        .expect("run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kernel_stacks_on_two_networks_ping_and_exchange_tcp_through_the_router() {
    if !common::needs().program("ping").met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (host, a, b) = (Netns::new("h"), Netns::new("a"), Netns::new("b"));
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let (ta, tb) = (name("t"), name("t"));
    client
        .apply(&[
            overlay(1, 93),
            overlay(2, 94),
            tap_port(1, 1, &ta, 1500),
            tap_port(2, 2, &tb, 1500),
            Request::AddRouter { id: 1 },
            router_interface(1, Ipv4Addr::new(10, 93, 0, 1), GW1),
            router_interface(2, Ipv4Addr::new(10, 94, 0, 1), GW2),
        ])
        .unwrap();
    attach_tap(&host, &ta, &a, "10.93.0.2/24", 1500);
    attach_tap(&host, &tb, &b, "10.94.0.2/24", 1500);
    a.exec(&["ip", "route", "add", "default", "via", "10.93.0.1"]);
    b.exec(&["ip", "route", "add", "default", "via", "10.94.0.1"]);

    // No ARP entries: the router learns both ends from their answers to its requests.
    assert!(a.ping_until("10.94.0.2", 10), "{}", daemon.log_text());
    // The reply left B with TTL 64 and was routed once.
    let text = output(&a, &["ping", "-c", "1", "-W", "2", "10.94.0.2"]);
    assert!(text.contains("ttl=63"), "{text}");
    // Both gateways answer ping, from either side.
    assert!(a.ping("10.93.0.1", 1));
    assert!(a.ping("10.94.0.1", 1));
    assert!(b.ping("10.93.0.1", 1));
    // TTL 1: time exceeded from A's gateway.
    let text = output(&a, &["ping", "-c", "1", "-t", "1", "-W", "2", "10.94.0.2"]);
    assert!(
        text.contains("10.93.0.1") && text.contains("Time to live exceeded"),
        "{text}"
    );

    let bytes = 32 << 20;
    transfer(&b, Ipv4Addr::new(10, 94, 0, 2), &a, bytes, &daemon);

    let c = client.counters().unwrap();
    let r = c.router(1).unwrap();
    assert!(r.routed_bytes > bytes as u64, "{r:#?}");
    // The taps offer TSO: large segments were routed whole, not one per MSS.
    assert!(r.routed_bytes / r.routed_packets > 1514, "{r:#?}");
    assert!(r.neighbours_learned >= 2, "{r:#?}");
    assert_eq!(r.icmp_sent.get("time_exceeded"), Some(&1), "{r:#?}");
    assert!(r.echo_replies >= 3, "{r:#?}");
    for port in [1, 2] {
        let p = c.port(port).unwrap();
        assert_eq!(
            p.traffic.drops_total(),
            p.traffic.dropped("ttl_exceeded") + p.traffic.dropped("neighbour_unknown"),
            "{c:#?}"
        );
    }
}
