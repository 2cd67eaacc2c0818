//! A real guest takes its address from the switch's DHCP responder, then answers ping.
//!
//! The switch core runs in the test, between the guest's QEMU `-netdev dgram` socket and a veth
//! read with a raw socket (the daemon's control protocol does not carry DHCP parameters yet):
//! the guest's udhcpc gets the address the control plane registered for its MAC, the prefix
//! length, router and MTU, and an endpoint on the veth then pings it.

mod common;

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use vinfra_switch::datapath::{
    ConfigCommand, DhcpConfig, NetworkId, PortConfig, PortId, PortKind, Segment, SegmentCounters,
    Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::wire::{MacAddr, Vni};
use vinfra_switchd::sys::PacketSocket;

const NET: NetworkId = NetworkId(1);
const HOST: PortId = PortId(1);
const VM: PortId = PortId(2);
const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x83, 0, 0x10]);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 83, 0, 10);

/// The switch core forwarding between a raw socket on `veth` (in namespace `netns`) and the
/// guest's datagram socket, on its own thread until `stop`; returns the network's counters.
fn run_switch(
    netns: String,
    veth: String,
    sw_path: PathBuf,
    vm_path: PathBuf,
    stop: Arc<AtomicBool>,
) -> JoinHandle<SegmentCounters> {
    let vm_socket = UnixDatagram::bind(&sw_path).unwrap();
    vm_socket.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let file = File::open(format!("/run/netns/{netns}")).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let packet = PacketSocket::open(&veth).unwrap();
        let port = |id, kind| {
            ConfigCommand::AddPort(PortConfig {
                id,
                kind,
                mtu: 1500,
            })
        };
        let mut switch = Switch::with_commands(
            SwitchSettings::default(),
            [
                ConfigCommand::AddNetwork {
                    id: NET,
                    segment: Segment::Overlay {
                        vni: Vni::new(830).unwrap(),
                    },
                },
                port(HOST, PortKind::Host { network: NET }),
                port(VM, PortKind::Vm { network: NET }),
                ConfigCommand::AddArpEntry {
                    network: NET,
                    ip: GUEST_IP,
                    mac: GUEST_MAC,
                },
                ConfigCommand::SetDhcp {
                    network: NET,
                    config: Some(DhcpConfig {
                        prefix_len: 24,
                        gateway: Some(Ipv4Addr::new(10, 83, 0, 1)),
                        server: None,
                        mtu: Some(1400),
                        lease_secs: 600,
                    }),
                },
            ],
        )
        .unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 65536];
        let mut tx = TxBatch::new();
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            if let Ok(n) = vm_socket.recv(&mut buf) {
                idle = false;
                switch.process(start.elapsed(), [(VM, &buf[..n])], &mut tx);
            }
            if let Ok(range) = packet.recv(&mut buf) {
                idle = false;
                switch.process(start.elapsed(), [(HOST, &buf[range])], &mut tx);
            }
            for (frame, bytes) in tx.iter() {
                if frame.port == VM {
                    let _ = vm_socket.send_to(bytes, &vm_path);
                } else if frame.port == HOST {
                    let _ = packet.send(bytes);
                }
            }
            tx.clear();
            if idle {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        switch.network_counters(NET).unwrap()
    })
}

#[test]
fn qemu_guest_takes_its_address_from_the_switch_and_answers_ping() {
    let Some(guest) = guest_image() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host = Netns::named(prefixed_name("dh-", "h"));
    let ep = Netns::named(prefixed_name("dh-", "e"));
    let (veth, peer) = (prefixed_name("dh-", "v"), prefixed_name("dh-", "p"));
    host.exec(&[
        "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
    ]);
    host.exec(&["ip", "link", "set", &veth, "up"]);
    host.exec(&["ip", "link", "set", &peer, "netns", &ep.name]);
    ep.exec(&["ip", "addr", "add", "10.83.0.1/24", "dev", &peer]);
    ep.exec(&["ip", "link", "set", &peer, "up"]);

    let (sw, vm) = (d.join("sw.sock"), d.join("vm.sock"));
    let stop = Arc::new(AtomicBool::new(false));
    let switch = run_switch(
        host.name.clone(),
        veth.clone(),
        sw.clone(),
        vm.clone(),
        stop.clone(),
    );

    let qemu = Qemu::start(
        &guest,
        "vinfra.dhcp=1",
        "52:54:00:83:00:10",
        &vm,
        &sw,
        &d.join("serial.log"),
    );
    let log = || qemu.log();
    assert!(
        wait_for(Duration::from_secs(90), || log().contains("VINFRA-DHCP")),
        "guest printed no DHCP result: {}",
        log()
    );
    assert!(
        log().contains("VINFRA-DHCP 10.83.0.10/24 mtu=1400"),
        "guest did not get the registered address, prefix and MTU: {}",
        log()
    );
    let pinged = ep.ping_until("10.83.0.10", 10) && ep.ping("10.83.0.10", 2);

    let console = log();
    drop(qemu);
    stop.store(true, Ordering::Relaxed);
    let counters = switch.join().unwrap();
    assert!(pinged, "{console}\n{counters:#?}");
    // An OFFER and an ACK at least.
    assert!(counters.dhcp_replies >= 2, "{counters:#?}");
}
