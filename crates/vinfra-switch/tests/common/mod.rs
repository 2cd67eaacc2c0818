//! Frame and packet builders shared by the integration tests, and running a frame through a
//! switch. The test networks several files share are in the submodules: `hosts` (switches of
//! hosts joined by an overlay, a VLAN switch), `firewall` (a switch with firewalled VM ports),
//! `conntrack` (a bare connection table) and `routing` (switches with a router on several
//! networks).
#![allow(dead_code)]

pub mod conntrack;
pub mod firewall;
pub mod hosts;
pub mod nat;
pub mod routing;

use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_switch::datapath::{
    ConfigCommand, DropReason, PortConfig, PortId, PortKind, Switch, TxBatch,
};

use vinfra_switch::wire::virtio_net::{Gso, GsoKind, PartialCsum};
use vinfra_switch::wire::{arp, dhcp, gso, ipv4, udp, vlan};
use vinfra_switch::wire::{
    ArpOperation, ArpRepr, DhcpMessageType, DhcpOp, DhcpRepr, Encap, EtherType, EthernetRepr,
    Ipv4Repr, MacAddr, Offload, UdpRepr, VlanTci, Vni,
};

/// The VXLAN uplink's port number in every test switch.
pub const UPLINK: PortId = PortId(100);
/// The VLAN trunk's port number.
pub const TRUNK: PortId = PortId(101);
/// The underlay addresses of hosts A (the switch under test, mostly), B and C.
pub const VTEP_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Host B.
pub const VTEP_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Host C.
pub const VTEP_C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
/// The underlay MACs of hosts A, B and C.
pub const UNDERLAY_MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
/// Host B's.
pub const UNDERLAY_MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
/// Host C's.
pub const UNDERLAY_MAC_C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

/// TCP flags.
pub const SYN: u8 = 0x02;
/// SYN and ACK.
pub const SYN_ACK: u8 = 0x12;
/// ACK.
pub const ACK: u8 = 0x10;
/// PSH and ACK.
pub const PSH_ACK: u8 = 0x18;
/// FIN and ACK.
pub const FIN_ACK: u8 = 0x11;
/// RST.
pub const RST: u8 = 0x04;

/// Guest address 10.0.0.`last` (VM `n` has address `n` and MAC `n`).
pub fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

/// `secs` seconds on the switch's clock.
pub fn t(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Adds a port.
pub fn add_port(id: PortId, kind: PortKind, mtu: u16) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig { id, kind, mtu })
}

/// Output of one frame with offload metadata: (port, VTEP, metadata, bytes) of every copy.
pub type OffloadOut = Vec<(PortId, Option<Ipv4Addr>, Offload, Vec<u8>)>;

/// Runs one frame with its offload metadata from `port` through the switch, at 1 s.
pub fn run_offload(
    switch: &mut Switch,
    port: PortId,
    frame: &[u8],
    offload: Offload,
) -> OffloadOut {
    let mut tx = TxBatch::new();
    switch.process_offload(Duration::from_secs(1), [(port, frame, offload)], &mut tx);
    tx.iter()
        .map(|(f, b)| (f.port, f.vtep, f.offload, b.to_vec()))
        .collect()
}

/// Output of one frame: (port, VTEP, bytes) of every copy.
pub type Out = Vec<(PortId, Option<Ipv4Addr>, Vec<u8>)>;

/// Runs one frame from `port` through the switch.
pub fn run(switch: &mut Switch, now: Duration, port: PortId, frame: &[u8]) -> Out {
    let mut tx = TxBatch::new();
    switch.process(now, [(port, frame)], &mut tx);
    tx.iter()
        .map(|(f, bytes)| (f.port, f.vtep, bytes.to_vec()))
        .collect()
}

/// Where the copies went.
pub fn reached(out: &Out) -> Vec<(PortId, Option<Ipv4Addr>)> {
    out.iter().map(|(p, v, _)| (*p, *v)).collect()
}

/// Sends a frame and says where it went.
pub fn send(
    switch: &mut Switch,
    now: Duration,
    port: PortId,
    frame: &[u8],
) -> Vec<(PortId, Option<Ipv4Addr>)> {
    reached(&run(switch, now, port, frame))
}

/// Drops for `reason` counted on an access port and on its network.
pub fn dropped(switch: &Switch, port: PortId, reason: DropReason) -> (u64, u64) {
    let network = switch
        .port(port)
        .and_then(|c| c.kind.access_network())
        .expect("an access port");
    (
        switch.port_counters(port).unwrap().drops.get(reason),
        switch
            .network_counters(network)
            .unwrap()
            .traffic
            .drops
            .get(reason),
    )
}

/// `inner` encapsulated by the switch of the host at `from` for the host at `to`, in VNI `vni`
/// (outer MACs host B's to host A's: the switch does not look at them).
pub fn vxlan(from: Ipv4Addr, to: Ipv4Addr, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    Encap {
        src_mac: UNDERLAY_MAC_B,
        dst_mac: UNDERLAY_MAC_A,
        src_ip: from,
        dst_ip: to,
        src_port: 50000,
        vni: Vni::new(vni).unwrap(),
        dscp: 0,
    }
    .encapsulate_into(inner, &mut f)
    .unwrap();
    f
}

pub fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

pub fn eth(dst: MacAddr, src: MacAddr, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        dst,
        src,
        vlan: None,
        ethertype,
    };
    let mut f = vec![0u8; repr.header_len()];
    repr.emit(&mut f).unwrap();
    f.extend_from_slice(payload);
    f
}

pub fn tagged(
    dst: MacAddr,
    src: MacAddr,
    vid: u16,
    ethertype: EtherType,
    payload: &[u8],
) -> Vec<u8> {
    let repr = EthernetRepr {
        dst,
        src,
        vlan: Some(VlanTci {
            pcp: 0,
            dei: false,
            vid,
        }),
        ethertype,
    };
    let mut f = vec![0u8; repr.header_len()];
    repr.emit(&mut f).unwrap();
    f.extend_from_slice(payload);
    f
}

/// Removes the 802.1Q tag of a tagged frame.
pub fn untag(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&frame[12 + vlan::HEADER_LEN..]);
    f
}

pub fn arp_payload(
    op: ArpOperation,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut p = vec![0u8; arp::PACKET_LEN];
    ArpRepr {
        operation: op,
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_hardware_addr: tha,
        target_protocol_addr: tpa,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut p[..]))
    .unwrap();
    p
}

/// An ARP packet in a frame from `src`.
pub fn arp_frame(dst: MacAddr, src: MacAddr, repr: ArpRepr) -> Vec<u8> {
    let mut p = vec![0u8; arp::PACKET_LEN];
    repr.emit(&mut arp::Packet::new_unchecked(&mut p[..]))
        .unwrap();
    eth(dst, src, EtherType::ARP, &p)
}

/// A RARP request (QEMU's announcement of a migrated VM) for `sha`, broadcast from `src`.
pub fn rarp(src: MacAddr, sha: MacAddr) -> Vec<u8> {
    let mut p = arp_payload(
        ArpOperation::Request,
        sha,
        Ipv4Addr::UNSPECIFIED,
        sha,
        Ipv4Addr::UNSPECIFIED,
    );
    p[6..8].copy_from_slice(&3u16.to_be_bytes());
    eth(MacAddr::BROADCAST, src, EtherType::RARP, &p)
}

pub fn arp_request(sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    eth(
        MacAddr::BROADCAST,
        sha,
        EtherType::ARP,
        &arp_payload(ArpOperation::Request, sha, spa, MacAddr([0; 6]), tpa),
    )
}

pub fn ipv4_payload(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN + body.len()];
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: body.len(),
        ttl: 64,
        dscp_ecn: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut p[..]))
    .unwrap();
    p[ipv4::HEADER_LEN..].copy_from_slice(body);
    p
}

/// An IPv4 packet whose flags and fragment offset field is `frag` (0x2000: more fragments;
/// no DF).
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, frag: u16, body: &[u8]) -> Vec<u8> {
    let mut p = ipv4_payload(src, dst, protocol, body);
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    ipv4::Packet::new_unchecked(&mut p[..]).fill_checksum();
    p
}

/// A TCP header without options or data: sequence number 1000, window 8192.
pub fn tcp_header(src_port: u16, dst_port: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&src_port.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..8].copy_from_slice(&1000u32.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&8192u16.to_be_bytes());
    h
}

/// An ICMP echo request (type 8) or reply (type 0) with identifier `id`, sequence 1.
pub fn icmp_echo(ty: u8, id: u16) -> Vec<u8> {
    let mut h = vec![ty, 0, 0, 0, 0, 0, 0, 1, 0xaa, 0xbb];
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h
}

/// A UDP frame with the given addresses, ports and data, its checksum filled.
pub fn udp_ports(
    dst: MacAddr,
    src: MacAddr,
    (src_ip, src_port): (Ipv4Addr, u16),
    (dst_ip, dst_port): (Ipv4Addr, u16),
    data: &[u8],
) -> Vec<u8> {
    let mut d = vec![0u8; udp::HEADER_LEN + data.len()];
    let mut p = udp::Packet::new_unchecked(&mut d[..]);
    UdpRepr { src_port, dst_port }
        .emit(&mut p, data.len())
        .unwrap();
    p.payload_mut().copy_from_slice(data);
    p.fill_checksum(src_ip, dst_ip);
    eth(
        dst,
        src,
        EtherType::IPV4,
        &ipv4_payload(src_ip, dst_ip, ipv4::protocol::UDP, &d),
    )
}

/// A BOOTP/DHCP message of `client` (a reply offers 10.0.0.50 from server 10.0.0.1).
pub fn dhcp_message(op: DhcpOp, message_type: DhcpMessageType, client: MacAddr) -> Vec<u8> {
    let message = DhcpRepr {
        op,
        xid: 0x0a0b_0c0d,
        secs: 0,
        broadcast: false,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: if op == DhcpOp::Reply {
            ip(50)
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        client_mac: client,
        message_type,
        requested_ip: None,
        server_id: (op == DhcpOp::Reply).then_some(ip(1)),
        lease_secs: None,
        subnet_mask: None,
        router: None,
        mtu: None,
    };
    let mut buf = vec![0u8; message.buffer_len()];
    message
        .emit(&mut dhcp::Packet::new_unchecked(&mut buf[..]))
        .unwrap();
    buf
}

/// A DHCPDISCOVER from `client`, which has no address yet: 0.0.0.0:68 to 255.255.255.255:67.
pub fn discover(client: MacAddr) -> Vec<u8> {
    udp_ports(
        MacAddr::BROADCAST,
        client,
        (Ipv4Addr::UNSPECIFIED, 68),
        (Ipv4Addr::BROADCAST, 67),
        &dhcp_message(DhcpOp::Request, DhcpMessageType::Discover, client),
    )
}

/// An ICMP echo-request-shaped IPv4 frame with `body_len` bytes of IP payload.
pub fn ipv4_frame(
    dst: MacAddr,
    src: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    body_len: usize,
) -> Vec<u8> {
    let body: Vec<u8> = (0..body_len).map(|i| i as u8).collect();
    eth(
        dst,
        src,
        EtherType::IPV4,
        &ipv4_payload(src_ip, dst_ip, ipv4::protocol::ICMP, &body),
    )
}

pub fn udp_frame(
    dst: MacAddr,
    src: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    data: &[u8],
) -> Vec<u8> {
    let mut d = vec![0u8; udp::HEADER_LEN + data.len()];
    let mut p = udp::Packet::new_unchecked(&mut d[..]);
    UdpRepr {
        src_port: 5000,
        dst_port: 6000,
    }
    .emit(&mut p, data.len())
    .unwrap();
    p.payload_mut().copy_from_slice(data);
    eth(
        dst,
        src,
        EtherType::IPV4,
        &ipv4_payload(src_ip, dst_ip, ipv4::protocol::UDP, &d),
    )
}

/// A straightforward Internet checksum sum (16-bit words, folded, not complemented), to check
/// the switch's checksums independently.
pub fn ones_sum(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for pair in bytes.chunks(2) {
        acc += u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The TCP pseudo-header of an IPv4 packet `ip` carrying `tcp_len` bytes of TCP.
pub fn tcp_pseudo_header(ip: &[u8], tcp_len: usize) -> Vec<u8> {
    let mut p = ip[12..20].to_vec();
    p.extend_from_slice(&[0, 6]);
    p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    p
}

/// `len` bytes of a pattern that does not repeat within a segment.
pub fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 509) as u8).collect()
}

/// A TCP/IPv4 frame as a Linux sender hands it to a tap with offloads: the IPv4 header
/// complete, the TCP checksum field holding the pseudo-header sum, a 12-byte timestamp option;
/// sequence number 1,000,000, ACK number 77, window 502.
pub fn offload_tcp_frame(
    dst: MacAddr,
    src: MacAddr,
    from: (Ipv4Addr, u16),
    to: (Ipv4Addr, u16),
    flags: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut tcp = vec![0u8; 32];
    tcp[0..2].copy_from_slice(&from.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&to.1.to_be_bytes());
    tcp[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&77u32.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&502u16.to_be_bytes());
    tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0]);
    tcp.extend_from_slice(body);
    let mut ip = ipv4_payload(from.0, to.0, ipv4::protocol::TCP, &tcp);
    let partial = ones_sum(&tcp_pseudo_header(&ip, tcp.len()));
    ip[36..38].copy_from_slice(&partial.to_be_bytes());
    eth(dst, src, EtherType::IPV4, &ip)
}

/// The offload metadata of an [`offload_tcp_frame`] to cut at `size` bytes: its partial TCP
/// checksum and TCPv4 GSO with 66 bytes of headers.
pub fn tcp_gso(size: u16) -> Offload {
    Offload {
        csum: Some(PartialCsum {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: GsoKind::Tcpv4,
            size,
            hdr_len: 66,
            ecn: false,
        }),
        data_valid: false,
    }
}

/// Cuts an [`offload_tcp_frame`] into complete segments of at most `mss` bytes of payload, as a
/// sender without TSO would.
pub fn cut(frame: &[u8], mss: u16) -> Vec<Vec<u8>> {
    let mut complete = frame.to_vec();
    gso::complete_checksum(&mut complete[14..], 20, 16).unwrap();
    let s = gso::Segmenter::new(
        EtherType::IPV4,
        &complete[14..],
        tcp_gso(mss).gso.as_ref().unwrap(),
    )
    .unwrap();
    (0..s.count())
        .map(|i| {
            let mut out = frame[..14].to_vec();
            assert!(s.write(i, &mut out));
            out
        })
        .collect()
}
