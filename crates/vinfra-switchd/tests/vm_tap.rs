//! VM ports on taps (`Attachment::VmTap`): the switch creates the tap, QEMU's end (played here
//! by the test, opening the tap as QEMU's `-netdev tap` does, with virtio-net headers and
//! offloads) exchanges large TCP segments with the switch, and the host's own stack never
//! answers what the guest sends.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::relay::{open_as_qemu, relay};
use common::*;
use vinfra_switch_control::{Attachment, CountersView, PortSpec, Request, SwitchClient};
use vinfra_switchd::sys::VNET_HDR_LEN;

const MIB: usize = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(60);

fn vm_tap_port(id: u32, network: u32, tap: &str, mtu: u16) -> Request {
    owned_vm_tap_port(id, network, tap, mtu, None)
}

fn owned_vm_tap_port(id: u32, network: u32, tap: &str, mtu: u16, owner: Option<u32>) -> Request {
    Request::AddPort(PortSpec {
        id,
        mtu,
        attach: Attachment::VmTap {
            network,
            tap: tap.to_owned(),
            owner,
        },
    })
}

fn no_drops(client: &mut SwitchClient, ports: &[u32]) -> CountersView {
    let c = client.counters().unwrap();
    for &p in ports {
        let port = c.port(p).unwrap();
        assert_eq!(port.traffic.dropped("bad_offload"), 0, "{c:#?}");
        assert_eq!(port.traffic.dropped("oversized"), 0, "{c:#?}");
        assert_eq!(port.rx_errors, 0, "{c:#?}");
    }
    c
}

#[test]
fn tcp_between_a_vm_tap_and_an_offload_tap_goes_in_large_segments_both_ways() {
    if !common::needs().program("ethtool").met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (host, a, c) = (Netns::new("h"), Netns::new("a"), Netns::new("c"));
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let (host_tap, vm_tap) = (name("t"), name("q"));
    client
        .apply(&[
            overlay(1, 102),
            tap_port(1, 1, &host_tap, 1500),
            vm_tap_port(2, 1, &vm_tap, 1500),
        ])
        .unwrap();
    attach_tap(&host, &host_tap, &a, "10.83.0.1/24", 1500);
    // The guest: a veth into `c` with TSO and checksum offload on.
    let (veth, peer) = (name("v"), name("p"));
    host.exec(&[
        "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
    ]);
    host.exec(&["ip", "link", "set", &veth, "up"]);
    host.exec(&["ip", "link", "set", &peer, "netns", &c.name]);
    c.exec(&["ethtool", "-K", &peer, "tx", "on", "tso", "on"]);
    c.exec(&["ip", "addr", "add", "10.83.0.2/24", "dev", &peer]);
    c.exec(&["ip", "link", "set", &peer, "up"]);
    let stop = Arc::new(AtomicBool::new(false));
    let largest = Arc::new([
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    ]);
    let threads = relay(
        &host,
        veth,
        open_as_qemu(&host, &vm_tap),
        stop.clone(),
        largest.clone(),
    );
    assert!(c.ping_until("10.83.0.1", 10), "{}", daemon.log_text());

    let bytes = 32 * MIB;
    let to_vm = tcp_transfer(&c, Ipv4Addr::new(10, 83, 0, 2), &a, bytes, LIMIT);
    let from_vm = tcp_transfer(&a, Ipv4Addr::new(10, 83, 0, 1), &c, bytes, LIMIT);
    let bad_segments = c.exec(&["nstat", "-az", "TcpInCsumErrors"]);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(to_vm, bytes, "bytes to the VM intact");
    assert_eq!(from_vm, bytes, "bytes from the VM intact");
    assert!(
        bad_segments
            .lines()
            .any(|l| l.starts_with("TcpInCsumErrors") && l.split_whitespace().nth(1) == Some("0")),
        "{bad_segments}"
    );
    let counters = no_drops(&mut client, &[1, 2]);
    let vm = &counters.port(2).unwrap().traffic;
    // Large segments both ways through the VM's tap: the switch read them from it and wrote
    // them to it whole, with their metadata.
    assert!(vm.rx_bytes / vm.rx_packets.max(1) > 1514, "{counters:#?}");
    assert!(vm.tx_bytes / vm.tx_packets.max(1) > 1514, "{counters:#?}");
    let (to_guest, from_guest) = (
        largest[0].load(Ordering::Relaxed),
        largest[1].load(Ordering::Relaxed),
    );
    assert!(to_guest > 1514, "largest frame to the guest {to_guest}");
    assert!(
        from_guest > 1514,
        "largest frame from the guest {from_guest}"
    );
}

/// An ARP request for `target` from `mac`/`ip`, broadcast.
fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp(1, mac, ip, [0; 6], target)
}

#[test]
fn the_host_stack_never_answers_a_guest_on_its_tap_and_the_tap_goes_with_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("h");
    // An address of the host's own that a guest could ask for.
    host.exec(&["ip", "link", "set", "lo", "up"]);
    host.exec(&["ip", "addr", "add", "10.82.0.9/32", "dev", "lo"]);
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let vm_tap = name("q");
    client
        .apply(&[overlay(1, 103), vm_tap_port(2, 1, &vm_tap, 1500)])
        .unwrap();
    let fd = open_as_qemu(&host, &vm_tap);
    let guest_mac = [0x52, 0x54, 0, 0x82, 0, 2];
    let ask = arp_request(
        guest_mac,
        Ipv4Addr::new(10, 82, 0, 2),
        Ipv4Addr::new(10, 82, 0, 9),
    );
    // Broadcast, and to link-local group addresses (a bridge passes some of those up to the
    // host's stack whatever its ports' state).
    let requests: Vec<Vec<u8>> = [
        [0xff; 6],
        [0x01, 0x80, 0xc2, 0, 0, 0x0e],
        [0x01, 0x80, 0xc2, 0, 0, 0x02],
        [0x01, 0x80, 0xc2, 0, 0, 0x00],
    ]
    .iter()
    .map(|dst| frame(*dst, guest_mac, None, 0x0806, &ask))
    .collect();
    let header = [0u8; VNET_HDR_LEN];
    let mut buf = vec![0u8; VNET_HDR_LEN + 65536];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut replies = 0;
    while Instant::now() < deadline {
        for request in &requests {
            nix::sys::uio::writev(
                &fd,
                &[
                    std::io::IoSlice::new(&header),
                    std::io::IoSlice::new(request),
                ],
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        while let Ok(n) = nix::unistd::read(&fd, &mut buf) {
            let f = &buf[VNET_HDR_LEN..n];
            if f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] {
                replies += 1;
            }
        }
    }
    assert_eq!(replies, 0, "the host answered the guest's ARP");
    // The switch received them (its packet socket sees the tap's frames).
    let c = client.counters().unwrap();
    assert!(c.port(2).unwrap().traffic.rx_packets >= 10, "{c:#?}");
    assert!(
        host.exec(&["ip", "-o", "link", "show", &vm_tap])
            .contains("master vinfra-sink"),
        "{}",
        host.exec(&["ip", "-o", "link", "show", &vm_tap])
    );
    let ruleset = host.exec(&["nft", "list", "table", "netdev", "vinfra"]);
    assert!(
        ruleset.contains(&format!("device \"{vm_tap}\"")) && ruleset.contains("policy drop"),
        "{ruleset}"
    );

    // Port removed while "QEMU" holds the tap: it stays; once QEMU let go, the switch's
    // housekeeping deletes it, and its chain too.
    client.apply(&[Request::RemovePort { id: 2 }]).unwrap();
    assert!(host.try_exec(&["ip", "link", "show", &vm_tap]));
    drop(fd);
    assert!(
        wait_for(Duration::from_secs(10), || !host
            .try_exec(&["ip", "link", "show", &vm_tap])),
        "the tap outlived its port"
    );
    // Its chain goes right after it (the switch deletes the tap, then the chain).
    let chain_gone = || {
        !host
            .exec(&["nft", "list", "table", "netdev", "vinfra"])
            .contains(&vm_tap)
    };
    assert!(
        wait_for(Duration::from_secs(10), chain_gone),
        "{}",
        host.exec(&["nft", "list", "table", "netdev", "vinfra"])
    );
}

#[test]
fn an_interface_that_is_not_a_tap_is_never_taken_for_a_vm() {
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("h");
    let (veth, peer) = (name("v"), name("p"));
    host.exec(&[
        "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
    ]);
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    client.apply(&[overlay(1, 104)]).unwrap();
    let refused = client.apply(&[vm_tap_port(2, 1, &veth, 1500)]);
    assert!(refused.is_err(), "{refused:?}");
    let link = host.exec(&["ip", "-o", "link", "show", &veth]);
    assert!(!link.contains("master"), "{link}");
}

/// Whether QEMU, run as user (and group) `uid` in `host`, opens tap `tap` (`-netdev tap`): it
/// then runs until `timeout` ends it (status 124); a refused tap ends it at once.
fn qemu_opens_tap_as(host: &Netns, uid: u32, tap: &str) -> (bool, String) {
    let uid = uid.to_string();
    let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no,vnet_hdr=on");
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &host.name, "setpriv", "--reuid", &uid, "--regid", &uid,
        ])
        .args([
            "--clear-groups",
            "timeout",
            "3",
            "qemu-system-x86_64",
            "-machine",
            "none",
        ])
        .args(["-nodefaults", "-display", "none", "-netdev", &netdev])
        .output()
        .expect("run QEMU");
    (
        out.status.code() == Some(124),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_vm_tap_opens_for_its_qemus_user_alone() {
    if !common::needs()
        .program("qemu-system-x86_64")
        .program("setpriv")
        .met()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("h");
    let daemon = Daemon::start(&host, dir.path(), None);
    let mut client = daemon.client();
    let vm_tap = name("q");
    let (owner, other) = (1_073_741_900, 1_073_741_901);
    client
        .apply(&[
            overlay(1, 104),
            owned_vm_tap_port(2, 1, &vm_tap, 1500, Some(owner)),
        ])
        .unwrap();
    let shown = host.exec(&["cat", &format!("/sys/class/net/{vm_tap}/owner")]);
    assert_eq!(shown.trim(), owner.to_string());
    // Anyone may open /dev/net/tun (the agent of a confining host makes it so).
    std::fs::set_permissions(
        "/dev/net/tun",
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let (opened, log) = qemu_opens_tap_as(&host, owner, &vm_tap);
    assert!(opened, "the tap's user opens it: {log}");
    let (opened, log) = qemu_opens_tap_as(&host, other, &vm_tap);
    assert!(!opened, "another user opens the tap: {log}");
    assert!(log.contains("not permitted"), "{log}");
}
