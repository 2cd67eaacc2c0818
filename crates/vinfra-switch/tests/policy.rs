//! Port policy end to end: port security (allowed source MACs and IPv4 addresses, ARP and RARP
//! senders, DHCP servers, EtherTypes), the per-port MAC limit, storm control, the uplink's
//! underlay peers, and the checks of the configuration commands.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, ConfigError, DhcpConfig, DropReason, Location, NetworkId,
    PortConfig, PortId, PortKind, PortPolicy, Segment, StormControl, Switch, SwitchSettings,
    DHCP_SERVER_MAC,
};
use vinfra_switch::wire::{arp, dhcp, ipv4, udp};
use vinfra_switch::wire::{
    ArpOperation, ArpRepr, DhcpMessageType, DhcpOp, DhcpRepr, EtherType, EthernetRepr, MacAddr, Vni,
};

const BLUE: NetworkId = NetworkId(1);
/// VM 1: port security on (its NIC's address, a virtual IP, a prefix, a second MAC).
const SECURED: PortId = PortId(1);
/// VM 2: no policy; its MAC is learned, not static.
const NEIGHBOUR: PortId = PortId(2);
/// VM 3: no policy; its MAC is static.
const THIRD: PortId = PortId(3);
const HOST: PortId = PortId(4);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// An allowed address pair of VM 1: a virtual IP (keepalived).
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
/// A second MAC of VM 1 (a VRRP virtual MAC) and its address.
const VMAC: MacAddr = MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, 0x01]);
const VMAC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 111);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn allowed(mac: MacAddr, ip: Ipv4Addr, prefix_len: u8) -> AllowedAddress {
    AllowedAddress {
        mac,
        ip,
        prefix_len,
    }
}

/// VM 1's sources: its NIC (mac 1, 10.0.0.1/32), the VIP, 10.1.0.0/16, and VMAC with its own
/// address.
fn vm1_security() -> PortPolicy {
    PortPolicy {
        allowed: Some(vec![
            allowed(mac(1), ip(1), 32),
            allowed(mac(1), VIP, 32),
            allowed(mac(1), Ipv4Addr::new(10, 1, 0, 0), 16),
            allowed(VMAC, VMAC_IP, 32),
        ]),
        ..PortPolicy::default()
    }
}

fn set_policy(sw: &mut Switch, port: PortId, policy: PortPolicy) {
    sw.apply(ConfigCommand::SetPortPolicy { port, policy })
        .unwrap();
}

/// One overlay network on host A: VMs 1 to 3, a host port, the uplink (flooding to host B).
/// VM 1 has port security; VM 2's MAC is learned (it has sent a frame), VM 3's is static.
/// Every VM address is registered for ARP suppression, and the switch answers DHCP.
fn blue() -> Switch {
    let port = |id, kind, mtu| ConfigCommand::AddPort(PortConfig { id, kind, mtu });
    let mut sw = Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Overlay {
                    vni: Vni::new(5001).unwrap(),
                },
            },
            port(
                UPLINK,
                PortKind::VxlanUplink {
                    local_ip: VTEP_A,
                    local_mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
                    gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
                },
                1500,
            ),
            port(SECURED, PortKind::Vm { network: BLUE }, 1450),
            port(NEIGHBOUR, PortKind::Vm { network: BLUE }, 1450),
            port(THIRD, PortKind::Vm { network: BLUE }, 1450),
            port(HOST, PortKind::Host { network: BLUE }, 1450),
            ConfigCommand::SetFloodList {
                network: BLUE,
                vteps: vec![VTEP_B],
            },
            ConfigCommand::AddMacEntry {
                network: BLUE,
                mac: mac(1),
                location: Location::Port(SECURED),
            },
            ConfigCommand::AddMacEntry {
                network: BLUE,
                mac: mac(3),
                location: Location::Port(THIRD),
            },
            ConfigCommand::AddArpEntry {
                network: BLUE,
                ip: ip(1),
                mac: mac(1),
            },
            ConfigCommand::AddArpEntry {
                network: BLUE,
                ip: ip(2),
                mac: mac(2),
            },
            ConfigCommand::AddArpEntry {
                network: BLUE,
                ip: ip(3),
                mac: mac(3),
            },
            ConfigCommand::SetDhcp {
                network: BLUE,
                config: Some(DhcpConfig {
                    prefix_len: 24,
                    gateway: Some(GATEWAY),
                    server: None,
                    mtu: None,
                    lease_secs: 600,
                }),
            },
            ConfigCommand::SetPortPolicy {
                port: SECURED,
                policy: vm1_security(),
            },
        ],
    )
    .unwrap();
    // VM 2 speaks first: its MAC is learned at its port.
    let hello = ipv4_frame(mac(3), mac(2), ip(2), ip(3), 8);
    assert_eq!(
        reached(&run(&mut sw, t(0), NEIGHBOUR, &hello)),
        [(THIRD, None)]
    );
    assert_eq!(
        sw.lookup(BLUE, mac(2), t(0)),
        Some(Location::Port(NEIGHBOUR))
    );
    sw
}

/// Everywhere a frame from VM 1 is flooded to.
const FLOOD_FROM_1: [(PortId, Option<Ipv4Addr>); 4] = [
    (NEIGHBOUR, None),
    (THIRD, None),
    (HOST, None),
    (UPLINK, Some(VTEP_B)),
];

#[test]
fn a_source_mac_not_allowed_is_dropped_and_the_nic_mac_passes() {
    let mut sw = blue();
    // VM 1 with VM 2's MAC and address: reaches nobody, and VM 2's entry stays at its port.
    let spoofed = ipv4_frame(mac(3), mac(2), ip(2), ip(3), 8);
    assert!(run(&mut sw, t(1), SECURED, &spoofed).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedMac), (1, 1));
    assert_eq!(
        sw.lookup(BLUE, mac(2), t(1)),
        Some(Location::Port(NEIGHBOUR))
    );
    // A MAC nobody has: not learned either, even broadcast.
    let unknown = arp_request(mac(9), ip(9), ip(3));
    assert!(run(&mut sw, t(1), SECURED, &unknown).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedMac), (2, 2));
    assert_eq!(sw.lookup(BLUE, mac(9), t(1)), None);
    // Its own MAC and address reach VM 3, and VM 2 (learned) too.
    let legit = ipv4_frame(mac(3), mac(1), ip(1), ip(3), 8);
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &legit)),
        [(THIRD, None)]
    );
    let legit = ipv4_frame(mac(2), mac(1), ip(1), ip(2), 8);
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &legit)),
        [(NEIGHBOUR, None)]
    );
    // Other ports are not checked against VM 1's policy.
    let from_3 = ipv4_frame(mac(2), mac(3), Ipv4Addr::new(198, 51, 100, 7), ip(2), 8);
    assert_eq!(
        reached(&run(&mut sw, t(1), THIRD, &from_3)),
        [(NEIGHBOUR, None)]
    );
    assert_eq!(sw.port_counters(THIRD).unwrap().drops.total(), 0);
    assert_eq!(sw.port_counters(SECURED).unwrap().drops.total(), 2);
}

#[test]
fn an_ipv4_source_not_allowed_for_its_mac_is_dropped_and_allowed_pairs_pass() {
    let mut sw = blue();
    let from_1 = |src_ip| ipv4_frame(mac(3), mac(1), src_ip, ip(3), 8);
    // VM 2's address from VM 1's own MAC: reaches nobody.
    assert!(run(&mut sw, t(1), SECURED, &from_1(ip(2))).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedIp), (1, 1));
    // The NIC's address, the VIP (a /32 pair) and an address of the /16 prefix pass.
    for src_ip in [ip(1), VIP, Ipv4Addr::new(10, 1, 200, 3)] {
        let out = run(&mut sw, t(1), SECURED, &from_1(src_ip));
        assert_eq!(reached(&out), [(THIRD, None)], "from {src_ip}");
        assert_eq!(out[0].2, from_1(src_ip));
    }
    // Just outside the prefix, and a neighbour of the /32s: dropped.
    for src_ip in [Ipv4Addr::new(10, 2, 0, 1), ip(101), Ipv4Addr::UNSPECIFIED] {
        assert!(
            run(&mut sw, t(1), SECURED, &from_1(src_ip)).is_empty(),
            "{src_ip}"
        );
    }
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedIp), (4, 4));
    // The second MAC sends from its own address only, not from the NIC's (an address belongs
    // to the MAC it is listed with).
    let vmac_from = |src_ip| ipv4_frame(mac(3), VMAC, src_ip, ip(3), 8);
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &vmac_from(VMAC_IP))),
        [(THIRD, None)]
    );
    assert!(run(&mut sw, t(1), SECURED, &vmac_from(ip(1))).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedIp), (5, 5));
    // UDP (not DHCP) from a foreign address: dropped; from its own: passes.
    let udp_from = |src_ip| udp_frame(mac(3), mac(1), src_ip, ip(3), b"data");
    assert!(run(&mut sw, t(1), SECURED, &udp_from(ip(3))).is_empty());
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &udp_from(ip(1)))),
        [(THIRD, None)]
    );
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedIp), (6, 6));
}

#[test]
fn prefix_length_zero_allows_every_ipv4_source_of_its_mac() {
    let mut sw = blue();
    set_policy(
        &mut sw,
        THIRD,
        PortPolicy {
            allowed: Some(vec![allowed(mac(3), Ipv4Addr::new(10, 9, 9, 9), 0)]),
            ..PortPolicy::default()
        },
    );
    for src_ip in [ip(3), Ipv4Addr::new(203, 0, 113, 5), Ipv4Addr::BROADCAST] {
        let frame = ipv4_frame(mac(1), mac(3), src_ip, ip(1), 8);
        assert_eq!(
            reached(&run(&mut sw, t(1), THIRD, &frame)),
            [(SECURED, None)],
            "from {src_ip}"
        );
        let claim = arp_frame(
            MacAddr::BROADCAST,
            mac(3),
            ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: mac(3),
                source_protocol_addr: src_ip,
                target_hardware_addr: MacAddr([0; 6]),
                target_protocol_addr: src_ip,
            },
        );
        assert_eq!(
            run(&mut sw, t(1), THIRD, &claim).len(),
            4,
            "ARP from {src_ip}"
        );
    }
    // Still only from its MAC.
    let other_mac = ipv4_frame(mac(1), mac(30), ip(3), ip(1), 8);
    assert!(run(&mut sw, t(1), THIRD, &other_mac).is_empty());
    assert_eq!(dropped(&sw, THIRD, DropReason::SpoofedMac), (1, 1));
    assert_eq!(sw.port_counters(THIRD).unwrap().drops.total(), 1);
}

#[test]
fn an_empty_allowed_list_sends_nothing_and_none_turns_port_security_off() {
    let mut sw = blue();
    set_policy(
        &mut sw,
        SECURED,
        PortPolicy {
            allowed: Some(Vec::new()),
            ..PortPolicy::default()
        },
    );
    let legit = ipv4_frame(mac(3), mac(1), ip(1), ip(3), 8);
    assert!(run(&mut sw, t(1), SECURED, &legit).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedMac), (1, 1));
    set_policy(&mut sw, SECURED, PortPolicy::default());
    assert_eq!(sw.port_policy(SECURED), Some(&PortPolicy::default()));
    let anything = ipv4_frame(mac(3), mac(8), ip(8), ip(3), 8);
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &anything)),
        [(THIRD, None)]
    );
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &legit)),
        [(THIRD, None)]
    );
}

#[test]
fn dhcp_clients_without_an_address_are_answered_with_port_security_on() {
    let mut sw = blue();
    // VM 1's DISCOVER from 0.0.0.0: answered by the switch's responder with its address.
    let out = run(&mut sw, t(1), SECURED, &discover(mac(1)));
    assert_eq!(reached(&out), [(SECURED, None)]);
    let (eth, offset) = EthernetRepr::parse(&out[0].2).unwrap();
    assert_eq!((eth.dst, eth.src), (mac(1), DHCP_SERVER_MAC));
    let ip_packet = ipv4::Packet::new_checked(&out[0].2[offset..]).unwrap();
    let datagram = udp::Packet::new_checked(ip_packet.payload()).unwrap();
    let offer = DhcpRepr::parse(&dhcp::Packet::new_checked(datagram.payload()).unwrap()).unwrap();
    assert_eq!(offer.message_type, DhcpMessageType::Offer);
    assert_eq!(offer.yiaddr, ip(1));
    assert_eq!(sw.network_counters(BLUE).unwrap().dhcp_replies, 1);
    assert_eq!(sw.port_counters(SECURED).unwrap().drops.total(), 0);
    // From another MAC it is still a spoofed source.
    assert!(run(&mut sw, t(1), SECURED, &discover(mac(9))).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedMac), (1, 1));
    // 0.0.0.0 is allowed for DHCP only: to another UDP port it is spoofed.
    let not_dhcp = udp_ports(
        MacAddr::BROADCAST,
        mac(1),
        (Ipv4Addr::UNSPECIFIED, 68),
        (Ipv4Addr::BROADCAST, 5000),
        b"x",
    );
    assert!(run(&mut sw, t(1), SECURED, &not_dhcp).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedIp), (1, 1));
    // Without the responder, the DISCOVER passes port security and is flooded.
    sw.apply(ConfigCommand::SetDhcp {
        network: BLUE,
        config: None,
    })
    .unwrap();
    let out = run(&mut sw, t(2), SECURED, &discover(mac(1)));
    assert_eq!(reached(&out), FLOOD_FROM_1);
    assert_eq!(out[0].2, discover(mac(1)));
}

#[test]
fn a_dhcp_server_on_a_vm_port_is_dropped() {
    let mut sw = blue();
    // A rogue DHCPOFFER from VM 1's own MAC and address: reaches nobody, VM 2 included.
    let offer = udp_ports(
        MacAddr::BROADCAST,
        mac(1),
        (ip(1), 67),
        (Ipv4Addr::BROADCAST, 68),
        &dhcp_message(DhcpOp::Reply, DhcpMessageType::Offer, mac(2)),
    );
    assert!(run(&mut sw, t(1), SECURED, &offer).is_empty());
    // Unicast to VM 2 too, and from another port (source port 67) to anywhere.
    let unicast = udp_ports(
        mac(2),
        mac(1),
        (ip(1), 67),
        (ip(2), 68),
        &dhcp_message(DhcpOp::Reply, DhcpMessageType::Ack, mac(2)),
    );
    assert!(run(&mut sw, t(1), SECURED, &unicast).is_empty());
    let any_port = udp_ports(mac(2), mac(1), (ip(1), 67), (ip(2), 9999), b"x");
    assert!(run(&mut sw, t(1), SECURED, &any_port).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::DhcpServer), (3, 3));
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedIp), (0, 0));
    // The same datagram from another source port passes.
    let fine = udp_ports(mac(2), mac(1), (ip(1), 5353), (ip(2), 68), b"x");
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &fine)),
        [(NEIGHBOUR, None)]
    );
    // A port without port security may run a DHCP server (a router appliance, say).
    let server = udp_ports(mac(2), mac(3), (ip(3), 67), (ip(2), 68), b"x");
    assert_eq!(
        reached(&run(&mut sw, t(1), THIRD, &server)),
        [(NEIGHBOUR, None)]
    );
}

#[test]
fn arp_for_another_address_or_from_another_mac_is_dropped() {
    let mut sw = blue();
    let arp_from_1 = |operation, sha, spa, tpa| {
        arp_frame(
            MacAddr::BROADCAST,
            mac(1),
            ArpRepr {
                operation,
                source_hardware_addr: sha,
                source_protocol_addr: spa,
                target_hardware_addr: MacAddr([0; 6]),
                target_protocol_addr: tpa,
            },
        )
    };
    let vm2_lookup = arp_request(mac(3), ip(3), ip(2));
    let answer_of_vm2 = |sw: &mut Switch| {
        let out = run(sw, t(2), THIRD, &vm2_lookup);
        assert_eq!(reached(&out), [(THIRD, None)]);
        ArpRepr::parse(&arp::Packet::new_checked(&out[0].2[14..]).unwrap())
            .unwrap()
            .source_hardware_addr
    };
    assert_eq!(answer_of_vm2(&mut sw), mac(2));

    // A gratuitous ARP for VM 2's address, from VM 1's own MAC: reaches nobody.
    let grat = arp_from_1(ArpOperation::Request, mac(1), ip(2), ip(2));
    assert!(run(&mut sw, t(1), SECURED, &grat).is_empty());
    // An ARP reply claiming VM 2's address (cache poisoning), unicast to VM 3.
    let mut reply = arp_from_1(ArpOperation::Reply, mac(1), ip(2), ip(3));
    reply[..6].copy_from_slice(&mac(3).0);
    assert!(run(&mut sw, t(1), SECURED, &reply).is_empty());
    // A sender hardware address that is not the frame's source (VM 2's, with VM 1's address).
    let other_sha = arp_from_1(ArpOperation::Request, mac(2), ip(1), ip(3));
    assert!(run(&mut sw, t(1), SECURED, &other_sha).is_empty());
    // The second MAC's address from the NIC's MAC.
    let crossed = arp_from_1(ArpOperation::Request, mac(1), VMAC_IP, VMAC_IP);
    assert!(run(&mut sw, t(1), SECURED, &crossed).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedArp), (4, 4));
    // VM 2's ARP suppression entry and MAC entry are as they were; nothing learned.
    assert_eq!(answer_of_vm2(&mut sw), mac(2));
    assert_eq!(
        sw.lookup(BLUE, mac(2), t(2)),
        Some(Location::Port(NEIGHBOUR))
    );
    assert_eq!(sw.network_counters(BLUE).unwrap().flooded, 0);

    // VM 1's own announcements, a probe from 0.0.0.0 and a request for VM 3 pass.
    let own = arp_from_1(ArpOperation::Request, mac(1), ip(1), ip(1));
    assert_eq!(reached(&run(&mut sw, t(3), SECURED, &own)), FLOOD_FROM_1);
    let vip = arp_from_1(ArpOperation::Reply, mac(1), VIP, VIP);
    assert_eq!(reached(&run(&mut sw, t(3), SECURED, &vip)), FLOOD_FROM_1);
    let probe = arp_from_1(ArpOperation::Request, mac(1), Ipv4Addr::UNSPECIFIED, ip(7));
    assert_eq!(reached(&run(&mut sw, t(3), SECURED, &probe)), FLOOD_FROM_1);
    let request = arp_from_1(ArpOperation::Request, mac(1), ip(1), ip(3));
    let out = run(&mut sw, t(3), SECURED, &request);
    assert_eq!(
        reached(&out),
        [(SECURED, None)],
        "answered by ARP suppression"
    );
    assert_eq!(sw.network_counters(BLUE).unwrap().arp_suppressed, 3);
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedArp), (4, 4));
}

#[test]
fn rarp_passes_for_the_frame_s_own_mac_only() {
    let mut sw = blue();
    // QEMU's announcement of VM 1 after a migration.
    let own = rarp(mac(1), mac(1));
    let out = run(&mut sw, t(1), SECURED, &own);
    assert_eq!(reached(&out), FLOOD_FROM_1);
    assert_eq!(out[0].2, own);
    // Announcing VM 2's MAC from VM 1's frame: dropped, VM 2 stays.
    assert!(run(&mut sw, t(1), SECURED, &rarp(mac(1), mac(2))).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedArp), (1, 1));
    // From VM 2's MAC: not an allowed MAC at all.
    assert!(run(&mut sw, t(1), SECURED, &rarp(mac(2), mac(2))).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedMac), (1, 1));
    assert_eq!(
        sw.lookup(BLUE, mac(2), t(1)),
        Some(Location::Port(NEIGHBOUR))
    );
}

#[test]
fn other_ethertypes_are_dropped_with_port_security_on() {
    let mut sw = blue();
    let ipv6 = eth(
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        mac(1),
        EtherType::IPV6,
        &[0x60, 0, 0, 0, 0, 0, 59, 64],
    );
    let lldp = eth(
        MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]),
        mac(1),
        EtherType(0x88cc),
        &[0; 20],
    );
    for frame in [&ipv6, &lldp] {
        assert!(run(&mut sw, t(1), SECURED, frame).is_empty());
    }
    assert_eq!(
        dropped(&sw, SECURED, DropReason::EthertypeNotAllowed),
        (2, 2)
    );
    // From a port without port security they are flooded.
    assert_eq!(run(&mut sw, t(1), THIRD, &ipv6).len(), 4);
    // IPv4 from VM 1 still passes.
    let legit = ipv4_frame(mac(3), mac(1), ip(1), ip(3), 8);
    assert_eq!(
        reached(&run(&mut sw, t(1), SECURED, &legit)),
        [(THIRD, None)]
    );
}

#[test]
fn port_policies_are_checked() {
    let mut sw = blue();
    let secured = vm1_security();
    let refused = |sw: &mut Switch, port, policy| {
        let r = sw.apply(ConfigCommand::SetPortPolicy { port, policy });
        assert_eq!(sw.port_policy(SECURED), Some(&vm1_security()), "unchanged");
        r
    };
    assert_eq!(
        refused(&mut sw, PortId(77), PortPolicy::default()),
        Err(ConfigError::NoSuchPort(PortId(77)))
    );
    assert_eq!(
        refused(&mut sw, UPLINK, PortPolicy::default()),
        Err(ConfigError::NotAccessPort(UPLINK))
    );
    assert_eq!(sw.port_policy(UPLINK), Some(&PortPolicy::default()));
    let with = |extra: AllowedAddress| PortPolicy {
        allowed: Some(vec![allowed(mac(1), ip(1), 32), extra]),
        ..PortPolicy::default()
    };
    assert_eq!(
        refused(&mut sw, SECURED, with(allowed(mac(1), ip(5), 33))),
        Err(ConfigError::BadAllowedPrefix {
            ip: ip(5),
            prefix_len: 33
        })
    );
    let group = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    assert_eq!(
        refused(&mut sw, SECURED, with(allowed(group, ip(5), 32))),
        Err(ConfigError::NotUnicast(group))
    );
    for (frames_per_sec, burst) in [(0, 10), (10, 0)] {
        let policy = PortPolicy {
            storm: Some(StormControl {
                frames_per_sec,
                burst,
            }),
            ..PortPolicy::default()
        };
        assert_eq!(
            refused(&mut sw, SECURED, policy),
            Err(ConfigError::BadStormControl)
        );
    }
    // The refused commands changed nothing: VM 1's port security still holds.
    let spoofed = ipv4_frame(mac(3), mac(1), ip(5), ip(3), 8);
    assert!(run(&mut sw, t(1), SECURED, &spoofed).is_empty());
    assert_eq!(dropped(&sw, SECURED, DropReason::SpoofedIp), (1, 1));
    // A host port takes a policy too; a new port's is open.
    let host_policy = PortPolicy {
        mac_limit: Some(4),
        ..PortPolicy::default()
    };
    set_policy(&mut sw, HOST, host_policy.clone());
    assert_eq!(sw.port_policy(HOST), Some(&host_policy));
    assert_eq!(sw.port_policy(THIRD), Some(&PortPolicy::default()));
    assert_eq!(sw.port_policy(PortId(77)), None);
    assert_eq!(sw.port_policy(SECURED), Some(&secured));
}

#[test]
fn a_port_learns_at_most_its_mac_limit() {
    let mut sw = blue();
    set_policy(
        &mut sw,
        THIRD,
        PortPolicy {
            mac_limit: Some(2),
            ..PortPolicy::default()
        },
    );
    // VM 3's static entry does not count: two more MACs behind port 3 (nested VMs, say). They
    // all send to VM 1, whose entry is static (VM 2's ages out below).
    let from = |src: MacAddr| ipv4_frame(mac(1), src, ip(3), ip(1), 8);
    let to_vm1 = [(SECURED, None)];
    for (i, src) in [mac(3), mac(30), mac(31)].into_iter().enumerate() {
        let out = run(&mut sw, t(1 + i as u64), THIRD, &from(src));
        assert_eq!(reached(&out), to_vm1, "from {src:?}");
    }
    assert_eq!(sw.lookup(BLUE, mac(31), t(3)), Some(Location::Port(THIRD)));
    // A third learned one: dropped, not learned, not forwarded.
    assert!(run(&mut sw, t(4), THIRD, &from(mac(32))).is_empty());
    assert_eq!(dropped(&sw, THIRD, DropReason::PortMacLimit), (1, 1));
    assert_eq!(sw.lookup(BLUE, mac(32), t(4)), None);
    // Known sources still pass, and other ports have no such limit.
    assert_eq!(reached(&run(&mut sw, t(5), THIRD, &from(mac(30)))), to_vm1);
    assert_eq!(reached(&run(&mut sw, t(5), THIRD, &from(mac(3)))), to_vm1);
    let elsewhere = ipv4_frame(mac(1), mac(32), ip(3), ip(1), 8);
    assert_eq!(reached(&run(&mut sw, t(5), HOST, &elsewhere)), to_vm1);
    // mac 32 now lives behind the host port: it is still new to port 3.
    assert!(run(&mut sw, t(5), THIRD, &from(mac(32))).is_empty());
    assert_eq!(dropped(&sw, THIRD, DropReason::PortMacLimit), (2, 2));

    // mac 31 moves to the host port: port 3 has room for one again.
    let moved = ipv4_frame(mac(1), mac(31), ip(3), ip(1), 8);
    run(&mut sw, t(6), HOST, &moved);
    assert_eq!(sw.lookup(BLUE, mac(31), t(6)), Some(Location::Port(HOST)));
    assert_eq!(reached(&run(&mut sw, t(7), THIRD, &from(mac(33)))), to_vm1);
    assert!(run(&mut sw, t(7), THIRD, &from(mac(34))).is_empty());
    assert_eq!(dropped(&sw, THIRD, DropReason::PortMacLimit), (3, 3));

    // mac 30 falls silent and ages out: its slot is free once expired.
    let ageing = SwitchSettings::default().mac_ageing;
    let later = t(7) + ageing;
    assert_eq!(reached(&run(&mut sw, later, THIRD, &from(mac(33)))), to_vm1);
    assert!(run(&mut sw, later, THIRD, &from(mac(34))).is_empty());
    assert!(sw.expire(later) >= 1);
    assert_eq!(sw.lookup(BLUE, mac(30), later), None);
    assert_eq!(reached(&run(&mut sw, later, THIRD, &from(mac(34)))), to_vm1);
    assert!(run(&mut sw, later, THIRD, &from(mac(35))).is_empty());
    assert_eq!(dropped(&sw, THIRD, DropReason::PortMacLimit), (5, 5));

    // A static entry taking the place of a learned one frees its slot too.
    sw.apply(ConfigCommand::AddMacEntry {
        network: BLUE,
        mac: mac(34),
        location: Location::Port(THIRD),
    })
    .unwrap();
    assert_eq!(reached(&run(&mut sw, later, THIRD, &from(mac(35)))), to_vm1);
    assert_eq!(reached(&run(&mut sw, later, THIRD, &from(mac(34)))), to_vm1);
    assert!(run(&mut sw, later, THIRD, &from(mac(36))).is_empty());
    assert_eq!(dropped(&sw, THIRD, DropReason::PortMacLimit), (6, 6));
}

#[test]
fn storm_control_limits_flooding_from_a_port() {
    let mut sw = blue();
    set_policy(
        &mut sw,
        NEIGHBOUR,
        PortPolicy {
            storm: Some(StormControl {
                frames_per_sec: 10,
                burst: 3,
            }),
            ..PortPolicy::default()
        },
    );
    let flood_from_2 = [
        (SECURED, None),
        (THIRD, None),
        (HOST, None),
        (UPLINK, Some(VTEP_B)),
    ];
    let broadcast = udp_frame(MacAddr::BROADCAST, mac(2), ip(2), ip(255), b"b");
    let multicast = udp_frame(MacAddr([1, 0, 0x5e, 0, 0, 9]), mac(2), ip(2), ip(3), b"m");
    let unknown = ipv4_frame(mac(99), mac(2), ip(2), ip(99), 8);
    // The burst: three floods at once, of each kind; the fourth is dropped, reaching nobody.
    for frame in [&broadcast, &multicast, &unknown] {
        assert_eq!(
            reached(&run(&mut sw, ms(1000), NEIGHBOUR, frame)),
            flood_from_2
        );
    }
    assert!(run(&mut sw, ms(1000), NEIGHBOUR, &broadcast).is_empty());
    assert!(run(&mut sw, ms(1000), NEIGHBOUR, &unknown).is_empty());
    assert_eq!(dropped(&sw, NEIGHBOUR, DropReason::StormControl), (2, 2));
    assert_eq!(sw.network_counters(BLUE).unwrap().flooded, 3);
    // Known unicast, ARP answered by suppression and DHCP answered by the switch take no
    // token and pass.
    let unicast = ipv4_frame(mac(3), mac(2), ip(2), ip(3), 8);
    assert_eq!(
        reached(&run(&mut sw, ms(1000), NEIGHBOUR, &unicast)),
        [(THIRD, None)]
    );
    let suppressed = arp_request(mac(2), ip(2), ip(3));
    assert_eq!(
        reached(&run(&mut sw, ms(1000), NEIGHBOUR, &suppressed)),
        [(NEIGHBOUR, None)]
    );
    assert_eq!(
        reached(&run(&mut sw, ms(1000), NEIGHBOUR, &discover(mac(2)))),
        [(NEIGHBOUR, None)]
    );
    // 10 per second: one token every 100 ms.
    assert!(run(&mut sw, ms(1099), NEIGHBOUR, &broadcast).is_empty());
    assert_eq!(
        reached(&run(&mut sw, ms(1100), NEIGHBOUR, &broadcast)),
        flood_from_2
    );
    assert!(run(&mut sw, ms(1100), NEIGHBOUR, &broadcast).is_empty());
    // A clock that goes back refills nothing (and does not panic).
    assert!(run(&mut sw, ms(500), NEIGHBOUR, &broadcast).is_empty());
    assert_eq!(
        reached(&run(&mut sw, ms(1200), NEIGHBOUR, &broadcast)),
        flood_from_2
    );
    assert_eq!(dropped(&sw, NEIGHBOUR, DropReason::StormControl), (5, 5));
    // After a quiet second the bucket holds its burst, no more.
    let sent: usize = (0..5)
        .map(|_| run(&mut sw, ms(5000), NEIGHBOUR, &broadcast).len())
        .sum();
    assert_eq!(sent, 3 * flood_from_2.len());
    assert_eq!(dropped(&sw, NEIGHBOUR, DropReason::StormControl), (7, 7));
    // Other ports are not limited.
    for _ in 0..10 {
        let from_3 = udp_frame(MacAddr::BROADCAST, mac(3), ip(3), ip(255), b"b");
        assert_eq!(run(&mut sw, ms(5000), THIRD, &from_3).len(), 4);
    }
    // Set again with the same rate: the bucket keeps its state (empty); turned off: no limit.
    set_policy(
        &mut sw,
        NEIGHBOUR,
        PortPolicy {
            storm: Some(StormControl {
                frames_per_sec: 10,
                burst: 3,
            }),
            ..PortPolicy::default()
        },
    );
    assert!(run(&mut sw, ms(5000), NEIGHBOUR, &broadcast).is_empty());
    set_policy(&mut sw, NEIGHBOUR, PortPolicy::default());
    for _ in 0..10 {
        assert_eq!(run(&mut sw, ms(5000), NEIGHBOUR, &broadcast).len(), 4);
    }
    assert_eq!(dropped(&sw, NEIGHBOUR, DropReason::StormControl), (8, 8));
}

#[test]
fn the_uplink_takes_vxlan_from_underlay_peers_only() {
    let mut sw = blue();
    assert_eq!(sw.underlay_peers(), None);
    let inner = ipv4_frame(mac(3), mac(40), ip(40), ip(3), 8);
    // Any source by default.
    assert_eq!(
        reached(&run(
            &mut sw,
            t(1),
            UPLINK,
            &vxlan(VTEP_C, VTEP_A, 5001, &inner)
        )),
        [(THIRD, None)]
    );
    sw.apply(ConfigCommand::RemoveMacEntry {
        network: BLUE,
        mac: mac(40),
    })
    .unwrap();
    sw.apply(ConfigCommand::SetUnderlayPeers(Some(vec![VTEP_B, VTEP_A])))
        .unwrap();
    assert_eq!(sw.underlay_peers(), Some(vec![VTEP_A, VTEP_B]));
    // From C, not a peer: dropped on the uplink before anything is learned.
    assert!(run(&mut sw, t(2), UPLINK, &vxlan(VTEP_C, VTEP_A, 5001, &inner)).is_empty());
    let uplink_drops = sw.port_counters(UPLINK).unwrap().drops;
    assert_eq!(uplink_drops.get(DropReason::UnknownVtep), 1);
    assert_eq!(
        sw.network_counters(BLUE).unwrap().traffic.rx_packets,
        2,
        "VM 2's hello and the frame from C before the list: nothing classified since"
    );
    assert_eq!(sw.lookup(BLUE, mac(40), t(2)), None);
    // From B, a peer: forwarded and learned.
    assert_eq!(
        reached(&run(
            &mut sw,
            t(2),
            UPLINK,
            &vxlan(VTEP_B, VTEP_A, 5001, &inner)
        )),
        [(THIRD, None)]
    );
    assert_eq!(sw.lookup(BLUE, mac(40), t(2)), Some(Location::Vtep(VTEP_B)));
    // Back to any source.
    sw.apply(ConfigCommand::SetUnderlayPeers(None)).unwrap();
    assert_eq!(
        reached(&run(
            &mut sw,
            t(3),
            UPLINK,
            &vxlan(VTEP_C, VTEP_A, 5001, &inner)
        )),
        [(THIRD, None)]
    );
    assert_eq!(
        sw.port_counters(UPLINK)
            .unwrap()
            .drops
            .get(DropReason::UnknownVtep),
        1
    );
}
