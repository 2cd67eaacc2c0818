//! North-south NAT through the daemon, with real frames: a VM's kernel stack (a tap on an
//! overlay network) behind router 1, whose uplink is on VLAN 82 of the trunk (a veth) with this
//! switch as its edge; on the other end of the trunk the test plays the upstream router
//! (203.0.113.254, answering ARP and pings to 198.51.100.7) on a packet socket. The VM's pings
//! leave from the uplink's address and MAC, tagged 82, and their replies come back to it; a
//! ping from outside to the VM's floating IP is answered from the floating IP; the uplink and
//! the floating IP are listed by `get_config` and counted by `get_counters`.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vinfra_switch_control::{
    Attachment, EdgeSpec, Mac, PortSpec, PrefixSpec, Request, RouterCountersView,
};
use vinfra_switchd::sys::PacketSocket;

const GW1: [u8; 6] = [0x02, 0x76, 0x72, 0, 0, 1];
const UPLINK_MAC: [u8; 6] = [0x02, 0x76, 0x72, 0x01, 0, 1];
const UPSTREAM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x82, 0xfe];
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn router(client: &mut vinfra_switch_control::SwitchClient) -> RouterCountersView {
    client
        .counters()
        .unwrap()
        .router(1)
        .cloned()
        .unwrap_or_default()
}

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo message of type `ty` with `ident`, `seq` and `data`.
fn echo(ty: u8, ident: [u8; 2], seq: [u8; 2], data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0, ident[0], ident[1], seq[0], seq[1]];
    m.extend_from_slice(data);
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// The upstream router on the trunk's far end: answers ARP for its address and pings to
/// [`REMOTE`], on VLAN 82; keeps every frame it saw.
fn upstream(wire: Arc<PacketSocket>, seen: Arc<Mutex<Vec<Vec<u8>>>>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok(r) = wire.recv(&mut buf) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let f = buf[r].to_vec();
        seen.lock().unwrap().push(f.clone());
        if f.len() < 18 + 28
            || f[12..14] != [0x81, 0x00]
            || u16::from_be_bytes([f[14], f[15]]) & 0xfff != 82
        {
            continue;
        }
        let src_mac: [u8; 6] = f[6..12].try_into().unwrap();
        let l3 = &f[18..];
        match [f[16], f[17]] {
            [0x08, 0x06] if l3[7] == 1 && addr(&l3[24..28]) == UPSTREAM => {
                let reply = arp(2, UPSTREAM_MAC, UPSTREAM, src_mac, addr(&l3[14..18]));
                let _ = wire.send(&frame(src_mac, UPSTREAM_MAC, Some(82), 0x0806, &reply));
            }
            [0x08, 0x00] if l3[9] == 1 && addr(&l3[16..20]) == REMOTE && l3[20] == 8 => {
                let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
                let m = &l3[20..total];
                let reply = echo(0, [m[4], m[5]], [m[6], m[7]], &m[8..]);
                let ip = ipv4(REMOTE, addr(&l3[12..16]), 1, &reply);
                let _ = wire.send(&frame(src_mac, UPSTREAM_MAC, Some(82), 0x0800, &ip));
            }
            _ => {}
        }
    }
}

#[test]
fn a_vm_reaches_the_outside_through_the_edge_and_is_reached_at_its_floating_ip() {
    if !common::needs().program("ping").met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (host, phys, vm) = (Netns::new("h"), Netns::new("p"), Netns::new("v"));
    let (trh, trp) = (name("r"), name("r"));
    sh(&[
        "ip", "link", "add", &trh, "netns", &host.name, "type", "veth", "peer", "name", &trp,
        "netns", &phys.name,
    ]);
    host.exec(&["ip", "link", "set", &trh, "up"]);
    phys.exec(&["ip", "link", "set", &trp, "up"]);
    let wire = Arc::new({
        let trp = trp.clone();
        phys.run(move || PacketSocket::open(&trp)).unwrap()
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let (wire, seen, stop) = (wire.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || upstream(wire, seen, stop))
    };

    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let tap = name("t");
    let uplink = Request::SetRouterUplink {
        router: 1,
        network: 2,
        ip: Ipv4Addr::new(203, 0, 113, 2),
        prefix_len: 24,
        mac: Mac(UPLINK_MAC),
        edge: EdgeSpec::Local,
        transit_vni: 0xff_0001,
        mtu: None,
    };
    let floating = Request::AddFloatingIp {
        router: 1,
        external: Ipv4Addr::new(203, 0, 113, 50),
        internal: Ipv4Addr::new(10, 95, 0, 2),
    };
    let default = Request::AddRoute {
        router: 1,
        prefix: PrefixSpec {
            ip: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
        },
        via: Ipv4Addr::new(203, 0, 113, 254),
    };
    client
        .apply(&[
            overlay(1, 95),
            vlan(2, 82),
            Request::AddPort(PortSpec {
                id: 1,
                mtu: 1500,
                attach: Attachment::VlanTrunk {
                    interface: trh.clone(),
                },
            }),
            tap_port(2, 1, &tap, 1450),
            Request::AddRouter { id: 1 },
            Request::SetRouterInterface {
                router: 1,
                network: 1,
                ip: Ipv4Addr::new(10, 95, 0, 1),
                prefix_len: 24,
                mac: Mac(GW1),
                mtu: None,
            },
            uplink.clone(),
            default.clone(),
        ])
        .unwrap();
    attach_tap(&host, &tap, &vm, "10.95.0.2/24", 1450);
    vm.exec(&["ip", "route", "add", "default", "via", "10.95.0.1"]);

    // Becoming the edge announced the uplink's address: a gratuitous ARP on VLAN 82.
    assert_eq!(router(&mut client).nat.unwrap().garps_sent, 1);
    let garp = |ip: Ipv4Addr| {
        move |f: &Vec<u8>| {
            f.len() >= 46
                && f[..6] == [0xff; 6]
                && f[6..12] == UPLINK_MAC
                && f[16..18] == [0x08, 0x06]
                && addr(&f[18 + 14..18 + 18]) == ip
                && addr(&f[18 + 24..18 + 28]) == ip
        }
    };
    let uplink_ip = Ipv4Addr::new(203, 0, 113, 2);
    assert!(wait_for(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .iter()
        .any(garp(uplink_ip))));
    // The VM's pings: asked for the upstream router from the uplink, then translated.
    assert!(vm.ping_until("198.51.100.7", 10), "{}", daemon.log_text());
    let text = vm.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.51.100.7"]);
    assert!(text.contains("ttl=63"), "{text}");
    {
        let seen = seen.lock().unwrap();
        let requests: Vec<_> = seen
            .iter()
            .filter(|f| f.len() > 18 + 20 && f[16..18] == [0x08, 0x00] && f[18 + 20] == 8)
            .collect();
        assert!(requests.len() >= 3, "{seen:02x?}");
        for f in requests {
            assert_eq!(f[..6], UPSTREAM_MAC);
            assert_eq!(f[6..12], UPLINK_MAC, "from the uplink's MAC");
            assert_eq!(addr(&f[18 + 12..18 + 16]), uplink_ip, "translated");
            assert_eq!(csum(&f[18..18 + 20]), 0, "IPv4 header checksum");
            assert_eq!(csum(&f[18 + 20..]), 0, "ICMP checksum");
        }
    }

    // The floating IP: announced, then a ping from outside reaches the VM and is answered from
    // the floating IP.
    client.apply(std::slice::from_ref(&floating)).unwrap();
    let fip = Ipv4Addr::new(203, 0, 113, 50);
    assert!(wait_for(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .iter()
        .any(garp(fip))));
    let request = ipv4(
        REMOTE,
        fip,
        1,
        &echo(8, [0x12, 0x34], [0, 1], b"from outside"),
    );
    let answered = wait_for(Duration::from_secs(10), || {
        wire.send(&frame(UPLINK_MAC, UPSTREAM_MAC, Some(82), 0x0800, &request))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        seen.lock().unwrap().iter().any(|f| {
            f.len() > 18 + 20
                && f[16..18] == [0x08, 0x00]
                && addr(&f[18 + 12..18 + 16]) == fip
                && addr(&f[18 + 16..18 + 20]) == REMOTE
                && f[18 + 20] == 0
                && f[18 + 24..18 + 26] == [0x12, 0x34]
        })
    });
    assert!(answered, "{}", daemon.log_text());
    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();

    let r = router(&mut client);
    let nat = r.nat.clone().unwrap();
    assert!(nat.edge, "{r:#?}");
    assert!(nat.sessions >= 1 && nat.sessions_created >= 1, "{r:#?}");
    assert!(nat.snat_packets > 0 && nat.dnat_packets > 0, "{r:#?}");
    assert_eq!(nat.garps_sent, 2, "{r:#?}");
    assert_eq!(nat.to_edge_packets, 0);

    // get_config lists the uplink and the floating IP after the router's routes.
    let config = client.config().unwrap();
    let tail: Vec<_> = config.iter().rev().take(3).rev().cloned().collect();
    assert_eq!(tail, vec![default, uplink, floating], "{config:#?}");

    // The uplink removed: its sessions go, the counters with it.
    client
        .apply(&[Request::RemoveRouterUplink { router: 1 }])
        .unwrap();
    assert_eq!(router(&mut client).nat, None);
    assert!(!vm.ping("198.51.100.7", 1));
}
