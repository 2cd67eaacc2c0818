//! The kernel fast path through the daemon: kernel stacks in two namespaces behind interface
//! ports (veths) exchange TCP on one network and UDP through a router, and behind two VM taps
//! (QEMU's end played by a relay, as in `vm_tap.rs`) exchange TCP; the established flows
//! and pings go to the kernel (its counters and the ports' show the frames), routed frames leave with
//! one TTL less, a change of configuration takes every flow back, a port with QoS stays on the
//! daemon, and `--no-fast-path` turns it off.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::relay::{open_as_qemu, relay};

use common::*;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use vinfra_switch_control::{
    ActionSpec, Attachment, CountersView, DirectionSpec, FastPathView, FirewallRuleSpec, Mac,
    PortSpec, PrefixSpec, QosSpec, Request, SwitchClient,
};

/// What the fast path tests need: root, `ip`, and a daemon built with the eBPF object (clang).
fn fast_needs() -> bool {
    common::needs().program("clang").met()
}

fn interface_port(id: u32, network: u32, interface: &str) -> Request {
    Request::AddPort(PortSpec {
        id,
        mtu: 1500,
        attach: Attachment::Interface {
            network,
            interface: interface.to_owned(),
        },
    })
}

/// A veth from `host` (`dev`, left there for an interface port) to `ep` with `cidr`.
fn veth(host: &Netns, dev: &str, ep: &Netns, cidr: &str) {
    host.exec(&[
        "ip", "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", &ep.name,
    ]);
    ep.exec(&["ip", "addr", "add", cidr, "dev", "eth0"]);
    ep.exec(&["ip", "link", "set", "eth0", "up"]);
}

fn fast(c: &CountersView) -> FastPathView {
    *c.fast_path
        .clone()
        .expect("the switch has a kernel fast path")
}

fn counters(client: &mut SwitchClient) -> CountersView {
    client.counters().unwrap()
}

#[test]
fn a_tcp_flow_between_interface_ports_goes_to_the_kernel_and_is_counted() {
    if !fast_needs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (host, a, b) = (Netns::new("h"), Netns::new("a"), Netns::new("b"));
    let (da, db) = (name("i"), name("i"));
    veth(&host, &da, &a, "10.96.0.1/24");
    veth(&host, &db, &b, "10.96.0.2/24");
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    client
        .apply(&[
            vlan(1, 96),
            interface_port(1, 1, &da),
            interface_port(2, 1, &db),
        ])
        .unwrap();
    assert!(a.ping_until("10.96.0.2", 10), "{}", daemon.log_text());
    // An echo's requests and replies go to the kernel after the first.
    let before = fast(&counters(&mut client));
    a.exec(&["ping", "-q", "-c", "20", "-i", "0.02", "10.96.0.2"]);
    let pinged = fast(&counters(&mut client));
    assert!(pinged.frames >= before.frames + 30, "{pinged:?}");
    let before = pinged;

    let server = Ipv4Addr::new(10, 96, 0, 2);
    let bytes = 64 << 20;
    transfer(&b, server, &a, bytes, &daemon);
    let c = counters(&mut client);
    let f = fast(&c);
    assert!(f.installed >= before.installed + 2, "{f:?}");
    // Nearly all of it went through the kernel; the ports count it all.
    assert!(f.bytes - before.bytes > bytes as u64 / 2, "{f:?}");
    let p1 = c.port(1).unwrap();
    assert!(p1.traffic.rx_bytes > bytes as u64, "{p1:#?}");
    assert!(c.port(2).unwrap().traffic.tx_bytes > bytes as u64, "{c:#?}");
    assert_eq!(p1.traffic.drops_total(), 0, "{p1:#?}");

    // A change of configuration takes every flow back at once (no frame need reach the
    // switch); traffic goes on.
    client
        .apply(&[Request::AddArpEntry {
            network: 1,
            ip: Ipv4Addr::new(10, 96, 0, 50),
            mac: Mac([2, 0, 0, 0, 0, 0x50]),
        }])
        .unwrap();
    let taken_back = fast(&counters(&mut client));
    assert_eq!(taken_back.flows, 0, "{taken_back:?}");
    assert!(taken_back.flushes > f.flushes, "{taken_back:?}");
    transfer(&b, server, &a, 8 << 20, &daemon);
    let after = fast(&counters(&mut client));
    assert!(after.flushes > f.flushes, "{after:?}");

    // Through a firewall (TCP to the server allowed in), the established connection goes
    // to the kernel too; a denied one never does.
    client
        .apply(&[Request::SetPortFirewall {
            port: 2,
            rules: Some(vec![FirewallRuleSpec {
                direction: DirectionSpec::Ingress,
                protocol: Some(6),
                ports: None,
                remote: vec![PrefixSpec {
                    ip: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                }],
                action: ActionSpec::Allow,
            }]),
        }])
        .unwrap();
    let walled = fast(&counters(&mut client));
    transfer(&b, server, &a, 8 << 20, &daemon);
    let through = fast(&counters(&mut client));
    assert!(through.bytes - walled.bytes > 4 << 20, "{through:?}");
    assert!(!a.ping("10.96.0.2", 1), "ICMP is not allowed in");
    let c = counters(&mut client);
    assert!(c.port(2).unwrap().connections >= 1, "{c:#?}");
    client
        .apply(&[Request::SetPortFirewall {
            port: 2,
            rules: None,
        }])
        .unwrap();
    let after = fast(&counters(&mut client));

    // With QoS on a port its flows stay on the daemon.
    client
        .apply(&[Request::SetPortQos {
            port: 1,
            qos: Some(QosSpec {
                weight: 10,
                ..QosSpec::default()
            }),
        }])
        .unwrap();
    transfer(&b, server, &a, 8 << 20, &daemon);
    let with_qos = fast(&counters(&mut client));
    assert_eq!(with_qos.frames, after.frames, "{with_qos:?}");
}

#[test]
fn routed_datagrams_through_the_kernel_leave_with_one_ttl_less() {
    if !fast_needs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (host, a, b) = (Netns::new("h"), Netns::new("a"), Netns::new("b"));
    let (da, db) = (name("i"), name("i"));
    veth(&host, &da, &a, "10.97.0.2/24");
    veth(&host, &db, &b, "10.98.0.2/24");
    a.exec(&["ip", "route", "add", "default", "via", "10.97.0.1"]);
    b.exec(&["ip", "route", "add", "default", "via", "10.98.0.1"]);
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    client
        .apply(&[
            vlan(1, 97),
            vlan(2, 98),
            interface_port(1, 1, &da),
            interface_port(2, 2, &db),
            Request::AddRouter { id: 1 },
            router_interface(1, Ipv4Addr::new(10, 97, 0, 1), GW1),
            router_interface(2, Ipv4Addr::new(10, 98, 0, 1), GW2),
        ])
        .unwrap();
    assert!(a.ping_until("10.98.0.2", 10), "{}", daemon.log_text());
    let before = counters(&mut client);

    let receiver = b.run(|| {
        let s = UdpSocket::bind((Ipv4Addr::new(10, 98, 0, 2), 7000)).unwrap();
        setsockopt(&s, sockopt::Ipv4RecvTtl, &true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    });
    // The TTL of every datagram that arrives, read while they are sent.
    let reader = std::thread::spawn(move || {
        let mut ttls = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!(libc::c_int);
            let Ok(msg) = recvmsg::<()>(
                std::os::fd::AsRawFd::as_raw_fd(&receiver),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            ) else {
                return ttls;
            };
            for cmsg in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::Ipv4Ttl(ttl) = cmsg {
                    ttls.push(ttl);
                }
            }
        }
    });
    let sent = 500;
    a.run(move || {
        let s = UdpSocket::bind((Ipv4Addr::new(10, 97, 0, 2), 7001)).unwrap();
        for i in 0..sent {
            s.send_to(&[i as u8; 200], (Ipv4Addr::new(10, 98, 0, 2), 7000))
                .unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let ttls = reader.join().unwrap();
    assert!(
        ttls.len() >= sent * 9 / 10,
        "{} of {sent} arrived",
        ttls.len()
    );
    assert!(ttls.iter().all(|&t| t == 63), "{ttls:?}");
    let c = counters(&mut client);
    let (f0, f) = (fast(&before), fast(&c));
    assert!(f.frames - f0.frames > sent as u64 / 2, "{f:?}");
    // The router counts what the kernel routed for it.
    let routed = c.router(1).unwrap().routed_packets - before.router(1).unwrap().routed_packets;
    assert!(routed >= ttls.len() as u64, "{routed}");
}

#[test]
fn without_the_fast_path_the_daemon_forwards_everything() {
    if !common::needs().met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (host, a, b) = (Netns::new("h"), Netns::new("a"), Netns::new("b"));
    let (da, db) = (name("i"), name("i"));
    veth(&host, &da, &a, "10.99.0.1/24");
    veth(&host, &db, &b, "10.99.0.2/24");
    let daemon = Daemon::start_with(&host, dir.path(), None, &[], &["--no-fast-path"]);
    let mut client = daemon.client();
    client
        .apply(&[
            vlan(1, 99),
            interface_port(1, 1, &da),
            interface_port(2, 1, &db),
        ])
        .unwrap();
    assert!(a.ping_until("10.99.0.2", 10), "{}", daemon.log_text());
    transfer(&b, Ipv4Addr::new(10, 99, 0, 2), &a, 8 << 20, &daemon);
    let c = counters(&mut client);
    assert_eq!(c.fast_path, None);
    assert!(c.port(1).unwrap().traffic.rx_bytes > 8 << 20);
    // An interface port refuses loopback, names that are not plain, an interface already
    // a port, and another device's port, which it leaves as it was.
    assert!(client.apply(&[interface_port(3, 1, "lo")]).is_err());
    assert!(client.apply(&[interface_port(4, 1, "x\"y")]).is_err());
    assert!(client.apply(&[interface_port(5, 1, &da)]).is_err());
    let (bridged, br, c) = (name("i"), name("br"), Netns::new("c"));
    host.exec(&["ip", "link", "add", &br, "type", "bridge"]);
    veth(&host, &bridged, &c, "10.99.1.2/24");
    host.exec(&["ip", "link", "set", &bridged, "master", &br]);
    let arp_ignore = format!("net.ipv4.conf.{bridged}.arp_ignore");
    let before = host.exec(&["sysctl", "-n", &arp_ignore]);
    assert!(client.apply(&[interface_port(6, 1, &bridged)]).is_err());
    assert_eq!(host.exec(&["sysctl", "-n", &arp_ignore]), before);
    // A port's removal puts its interface's settings back.
    let ipv6 = format!("net.ipv6.conf.{db}.disable_ipv6");
    host.exec(&["sysctl", "-qw", &format!("{ipv6}=1")]);
    client.apply(&[Request::RemovePort { id: 2 }]).unwrap();
    host.exec(&["sysctl", "-qw", &format!("{ipv6}=0")]);
    client.apply(&[interface_port(2, 1, &db)]).unwrap();
    assert_eq!(host.exec(&["sysctl", "-n", &ipv6]).trim(), "1");
    client.apply(&[Request::RemovePort { id: 2 }]).unwrap();
    assert_eq!(host.exec(&["sysctl", "-n", &ipv6]).trim(), "0");
}

#[test]
fn a_tcp_flow_between_two_vm_taps_goes_to_the_kernel() {
    if !fast_needs() || !common::needs().program("ethtool").met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (host, c1, c2) = (Netns::new("h"), Netns::new("c"), Netns::new("c"));
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let taps = [name("q"), name("q")];
    let mut requests = vec![vlan(1, 95)];
    for (i, tap) in taps.iter().enumerate() {
        requests.push(Request::AddPort(PortSpec {
            id: i as u32 + 1,
            mtu: 1500,
            attach: Attachment::VmTap {
                network: 1,
                tap: tap.clone(),
                owner: None,
            },
        }));
    }
    client.apply(&requests).unwrap();
    // Each guest: a veth into its namespace with TSO and checksum offload on, relayed to its tap.
    let stop = Arc::new(AtomicBool::new(false));
    let largest = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut threads = Vec::new();
    for (tap, (ns, cidr)) in taps
        .iter()
        .zip([(&c1, "10.95.0.1/24"), (&c2, "10.95.0.2/24")])
    {
        let (veth, peer) = (name("v"), name("p"));
        host.exec(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ]);
        host.exec(&["ip", "link", "set", &veth, "up"]);
        host.exec(&["ip", "link", "set", &peer, "netns", &ns.name]);
        ns.exec(&["ethtool", "-K", &peer, "tx", "on", "tso", "on"]);
        ns.exec(&["ip", "addr", "add", cidr, "dev", &peer]);
        ns.exec(&["ip", "link", "set", &peer, "up"]);
        threads.extend(relay(
            &host,
            veth,
            open_as_qemu(&host, tap),
            stop.clone(),
            largest.clone(),
        ));
    }
    assert!(c1.ping_until("10.95.0.2", 10), "{}", daemon.log_text());
    let before = fast(&counters(&mut client));
    let bytes = 32 << 20;
    let got = tcp_transfer(
        &c2,
        Ipv4Addr::new(10, 95, 0, 2),
        &c1,
        bytes,
        Duration::from_secs(60),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(got, bytes, "{}", daemon.log_text());
    let c = counters(&mut client);
    let f = fast(&c);
    // The kernel carried most of it from tap to tap (and the switch's socket did not see it
    // again: each tap's received bytes are counted once).
    assert!(f.bytes - before.bytes > bytes as u64 / 2, "{f:?}");
    let p1 = c.port(1).unwrap();
    assert!(p1.traffic.rx_bytes > bytes as u64, "{p1:#?}");
    assert!(p1.traffic.rx_bytes < 2 * bytes as u64, "{p1:#?}");
    assert_eq!(p1.traffic.drops_total(), 0, "{p1:#?}");
    // Large segments crossed whole.
    assert!(largest[0].load(Ordering::Relaxed) > 1514);
}
