//! Frame builders shared by the integration tests and the benchmark.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use vinfra_switch::wire::{arp, ipv4, udp, vlan};
use vinfra_switch::wire::{
    ArpOperation, ArpRepr, EtherType, EthernetRepr, Ipv4Repr, MacAddr, UdpRepr, VlanTci,
};

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
