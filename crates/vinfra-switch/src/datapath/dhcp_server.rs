//! The switch's DHCP responder: a client message's answer (OFFER, ACK or NAK) from the
//! network's [`DhcpConfig`] and the addresses registered for ARP suppression, written as the
//! IPv4 packet of the reply.

use core::net::Ipv4Addr;

use foldhash::HashMap;

use super::config::DhcpConfig;
use super::counters::DropReason;
use super::frame::L2;
use crate::wire::dhcp::{self, DhcpMessageType, DhcpOp, DhcpRepr};
use crate::wire::ipv4::{self, protocol, Ipv4Repr};
use crate::wire::udp;
use crate::wire::{EtherType, MacAddr, UdpRepr};

/// Source MAC of the switch's DHCP replies when the server identifier has no registered owner:
/// locally administered, fixed.
pub const DHCP_SERVER_MAC: MacAddr = MacAddr([0x02, 0x76, 0x69, 0x6e, 0x00, 0x67]);
/// Room for the IPv4 and UDP headers and the longest reply the responder writes.
pub(super) const DHCP_REPLY_MAX: usize =
    ipv4::HEADER_LEN + udp::HEADER_LEN + dhcp::MIN_MESSAGE_LEN + 64;
/// Time to live of the replies.
const DHCP_TTL: u8 = 64;

/// The DHCP message of a client frame (IPv4, unfragmented UDP from port 68 to 67), or `None`
/// for any other frame. The IPv4 and UDP headers were validated by classification.
pub(super) fn dhcp_client_message(l2: &L2<'_>) -> Option<Result<DhcpRepr, crate::wire::Error>> {
    if l2.ethertype != EtherType::IPV4 {
        return None;
    }
    let packet = ipv4::Packet::new_checked(l2.payload).ok()?;
    if packet.protocol() != protocol::UDP || packet.is_fragment() {
        return None;
    }
    let datagram = udp::Packet::new_checked(packet.payload()).ok()?;
    if datagram.src_port() != dhcp::CLIENT_PORT || datagram.dst_port() != dhcp::SERVER_PORT {
        return None;
    }
    Some(dhcp::Packet::new_checked(datagram.payload()).and_then(|p| DhcpRepr::parse(&p)))
}

/// The switch's answer to a client message: an OFFER to a DISCOVER; an ACK to a REQUEST for
/// the client's registered address, a NAK to a REQUEST for another one.
pub(super) fn dhcp_answer(
    config: &DhcpConfig,
    arp: &HashMap<Ipv4Addr, MacAddr>,
    port_mtu: u16,
    src: MacAddr,
    request: &DhcpRepr,
) -> Result<DhcpRepr, DropReason> {
    let server_id = config.server_id().ok_or(DropReason::DhcpIgnored)?;
    let answerable = request.op == DhcpOp::Request
        && request.giaddr.is_unspecified()
        && request.server_id.is_none_or(|id| id == server_id)
        && matches!(
            request.message_type,
            DhcpMessageType::Discover | DhcpMessageType::Request
        );
    if !answerable {
        return Err(DropReason::DhcpIgnored);
    }
    if request.client_mac != src {
        return Err(DropReason::DhcpUnknownClient);
    }
    let mask = config.subnet_mask();
    let subnet = u32::from(server_id) & u32::from(mask);
    // The client's address: registered for its MAC, in the server's subnet (the lowest, if
    // several are).
    let assigned = arp
        .iter()
        .filter(|(ip, mac)| **mac == src && u32::from(**ip) & u32::from(mask) == subnet)
        .map(|(ip, _)| *ip)
        .min()
        .ok_or(DropReason::DhcpUnknownClient)?;
    let mut reply = DhcpRepr {
        op: DhcpOp::Reply,
        xid: request.xid,
        secs: 0,
        broadcast: request.broadcast,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: assigned,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        client_mac: src,
        message_type: DhcpMessageType::Offer,
        requested_ip: None,
        server_id: Some(server_id),
        lease_secs: Some(config.lease_secs),
        subnet_mask: Some(mask),
        router: config.gateway,
        mtu: Some(config.mtu.unwrap_or(port_mtu)),
    };
    if request.message_type == DhcpMessageType::Request {
        // Selecting or rebooting clients name the address in option 50; renewing and
        // rebinding ones in ciaddr.
        let wanted = request.requested_ip.unwrap_or(request.ciaddr);
        if wanted == assigned {
            reply.message_type = DhcpMessageType::Ack;
            reply.ciaddr = request.ciaddr;
        } else {
            reply = DhcpRepr {
                message_type: DhcpMessageType::Nak,
                yiaddr: Ipv4Addr::UNSPECIFIED,
                broadcast: true,
                lease_secs: None,
                subnet_mask: None,
                router: None,
                mtu: None,
                ..reply
            };
        }
    }
    Ok(reply)
}

/// Writes the IPv4 packet of a reply into `buf`; returns its source address and length.
pub(super) fn write_dhcp_reply(
    reply: &DhcpRepr,
    buf: &mut [u8],
) -> Result<(Ipv4Addr, usize), DropReason> {
    let src_addr = reply.server_id.unwrap_or(Ipv4Addr::UNSPECIFIED);
    // A NAK, or a client that cannot receive unicast before it has its address, gets a
    // broadcast; the others a unicast to the address given.
    let dst_addr = if reply.broadcast || reply.yiaddr.is_unspecified() {
        Ipv4Addr::BROADCAST
    } else {
        reply.yiaddr
    };
    let dhcp_len = reply.buffer_len();
    let udp_len = udp::HEADER_LEN + dhcp_len;
    let ip = Ipv4Repr {
        src_addr,
        dst_addr,
        protocol: protocol::UDP,
        payload_len: udp_len,
        ttl: DHCP_TTL,
        dscp_ecn: 0,
    };
    let total = ipv4::HEADER_LEN + udp_len;
    let packet = buf.get_mut(..total).ok_or(DropReason::BadDhcp)?;
    ip.emit(&mut ipv4::Packet::new_unchecked(&mut *packet))?;
    let datagram = packet
        .get_mut(ipv4::HEADER_LEN..)
        .ok_or(DropReason::BadDhcp)?;
    let message = datagram
        .get_mut(udp::HEADER_LEN..)
        .ok_or(DropReason::BadDhcp)?;
    reply.emit(&mut dhcp::Packet::new_unchecked(message))?;
    let mut udp_packet = udp::Packet::new_unchecked(datagram);
    UdpRepr {
        src_port: dhcp::SERVER_PORT,
        dst_port: dhcp::CLIENT_PORT,
    }
    .emit(&mut udp_packet, dhcp_len)?;
    udp_packet.fill_checksum(src_addr, dst_addr);
    Ok((src_addr, total))
}
