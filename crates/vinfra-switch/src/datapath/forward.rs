//! Forwarding a classified frame in its network: learning its source, the DHCP responder,
//! handing frames for the network's gateway to the routing stage, ARP suppression, the MAC lookup,
//! then one copy or, within storm control, a flood ([`deliver`], which the routing stage uses
//! too for what the router sends).

use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::HashMap;

use super::classify::Ingress;
use super::config::SwitchSettings;
use super::counters::DropReason;
use super::dhcp_server::{
    dhcp_answer, dhcp_client_message, write_dhcp_reply, DHCP_REPLY_MAX, DHCP_SERVER_MAC,
};
use super::frame::L2;
use super::ids::{slot, slot_mut, PortId, Segment};
use super::mac_table::{Learned, Location, MacTable};
use super::network::NetworkState;
use super::port::PortKind;
use super::router::RouterInterface;
use super::sender::{Egress, Sender};
use super::tx::TxBatch;
use crate::wire::arp;
use crate::wire::{ArpOperation, ArpRepr, EtherType, MacAddr, Offload};

/// What became of a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Forwarded {
    /// Delivered, answered or dropped.
    Done,
    /// For the network's gateway (its MAC, or an ARP request for its address from a local
    /// port): the routing stage takes it. Its source was learned.
    ToRouter,
    /// For a router's uplink (its MAC from the trunk, or on its edge an ARP request for one of
    /// its addresses): the routing stage's edge part takes it.
    ToUplink,
}

/// Learns the source, answers DHCP, hands frames for the gateway to the router, answers ARP
/// for registered addresses, forwards known unicast and floods the rest. A local port may not
/// send from a gateway's MAC (any of the switch's), and none is learned.
pub(super) fn forward(
    settings: &SwitchSettings,
    now: Duration,
    net: &mut NetworkState,
    egress: Egress<'_>,
    in_port: PortId,
    ingress: Ingress<'_>,
    tx: &mut TxBatch,
) -> Forwarded {
    let NetworkState {
        segment,
        macs,
        flood,
        ports: members,
        arp,
        dhcp,
        gateway,
        uplink,
        counters,
    } = net;
    let segment = *segment;
    let l2 = ingress.l2;
    let from_vtep = match ingress.from {
        Location::Vtep(vtep) => Some(vtep),
        Location::Port(_) => None,
    };

    let gateways = egress.gateway_macs;
    let from_gateway = !gateways.is_empty() && gateways.contains(&l2.src);
    // The gateways' MACs and the network's gateway address are the routers' on every host: a
    // local port may not use them.
    let claims_gateway = gateway
        .as_ref()
        .is_some_and(|gw| claims_address(&l2, gw.addr));
    if ingress.access && (from_gateway || claims_gateway) {
        if let Some(p) = slot_mut(egress.ports, in_port.0) {
            p.counters.drops.add(DropReason::SpoofedGateway);
        }
        counters.traffic.drops.add(DropReason::SpoofedGateway);
        return Forwarded::Done;
    }

    // A gateway MAC is local on every host: never learned (routed frames from other hosts
    // carry it as their source).
    let learned = if from_gateway {
        Learned::Known
    } else {
        macs.learn_limited(l2.src, ingress.from, now, ingress.mac_limit, || {
            announces_source(&l2)
        })
    };
    match learned {
        Learned::Full => counters.learning_refused += 1,
        Learned::MoveRefused => counters.mac_moves_refused += 1,
        Learned::LocationFull => {
            // A source new to a port at its MAC limit: refused before anything answers or
            // forwards it.
            if let Some(p) = slot_mut(egress.ports, in_port.0) {
                p.counters.drops.add(DropReason::PortMacLimit);
            }
            counters.traffic.drops.add(DropReason::PortMacLimit);
            return Forwarded::Done;
        }
        Learned::Known | Learned::Updated => {}
    }

    if let (Some(config), Location::Port(_)) = (dhcp.as_ref(), ingress.from) {
        let access_mtu = slot(egress.ports, in_port.0).and_then(|p| match p.config.kind {
            PortKind::Vm { .. } | PortKind::Host { .. } | PortKind::VmVlan { .. } => {
                Some(p.config.mtu)
            }
            PortKind::VlanTrunk | PortKind::VxlanUplink { .. } => None,
        });
        if let (Some(port_mtu), Some(request)) = (access_mtu, dhcp_client_message(&l2)) {
            let mut buf = [0u8; DHCP_REPLY_MAX];
            let answer = request
                .map_err(|_| DropReason::BadDhcp)
                .and_then(|request| dhcp_answer(config, arp, port_mtu, l2.src, &request))
                .and_then(|reply| write_dhcp_reply(&reply, &mut buf));
            let mut sender = Sender::new(egress, counters, segment, tx, l2, true);
            match answer {
                Ok((src_ip, len)) => {
                    sender.counters.dhcp_replies += 1;
                    sender.l2 = L2 {
                        dst: l2.src,
                        src: server_mac(gateway.as_ref(), arp, src_ip),
                        ethertype: EtherType::IPV4,
                        payload: buf.get(..len).unwrap_or(&[]),
                        offload: Offload::NONE,
                        mark: None,
                        routed: false,
                    };
                    sender.send_port(in_port);
                }
                Err(reason) => sender.drop_at(in_port, reason),
            }
            return Forwarded::Done;
        }
    }

    // For a router's uplink, from the trunk, or on the edge from a local port of the external
    // network too (a VM or host of the physical network's VLAN on this host): the edge's.
    // Elsewhere its MAC is not taken and its addresses are not answered: a local port's frame
    // goes out of the trunk to the edge like any frame to a MAC not known here.
    if let Some(up) = uplink.as_ref().filter(|u| !ingress.access || u.edge) {
        if l2.dst == up.mac {
            // Elsewhere than on the edge: dropped there (`not_edge`).
            return Forwarded::ToUplink;
        }
        if up.edge
            && l2.dst.is_multicast()
            && arp_target(&l2, ArpOperation::Request).is_some_and(|ip| up.addrs.contains(&ip))
        {
            return Forwarded::ToUplink;
        }
    }

    // For the gateway: the router's (after DHCP: a renewal goes to the server's address,
    // which may be the gateway's).
    if let Some(gw) = gateway.as_ref() {
        match for_gateway(gw, &l2, ingress.access) {
            Some(Ok(())) => return Forwarded::ToRouter,
            Some(Err(reason)) => {
                if let Some(p) = slot_mut(egress.ports, in_port.0) {
                    p.counters.drops.add(reason);
                }
                counters.traffic.drops.add(reason);
                return Forwarded::Done;
            }
            None => {}
        }
    }

    if from_vtep.is_none() && l2.ethertype == EtherType::ARP && l2.dst.is_multicast() {
        if let Some(reply) = arp_reply(arp, &l2) {
            counters.arp_suppressed += 1;
            let mut payload = [0u8; arp::PACKET_LEN];
            if reply
                .emit(&mut arp::Packet::new_unchecked(&mut payload[..]))
                .is_ok()
            {
                let l2 = L2 {
                    dst: l2.src,
                    src: reply.source_hardware_addr,
                    ethertype: EtherType::ARP,
                    payload: &payload,
                    offload: Offload::NONE,
                    mark: None,
                    routed: false,
                };
                let mut sender = Sender::new(egress, counters, segment, tx, l2, true);
                sender.send_port(in_port);
            }
            return Forwarded::Done;
        }
    }

    let mut sender = Sender::new(egress, counters, segment, tx, l2, false);
    let from = Origin {
        port: Some(in_port),
        vtep: from_vtep,
        storm: Some(in_port),
    };
    deliver(settings, now, macs, members, flood, &mut sender, from);
    Forwarded::Done
}

/// The source MAC of a DHCP reply from `server`: the gateway's if it is the gateway's
/// address, else its registered owner's, else [`DHCP_SERVER_MAC`].
fn server_mac(
    gateway: Option<&RouterInterface>,
    arp: &HashMap<Ipv4Addr, MacAddr>,
    server: Ipv4Addr,
) -> MacAddr {
    match gateway {
        Some(gw) if gw.addr == server => gw.mac,
        _ => arp.get(&server).copied().unwrap_or(DHCP_SERVER_MAC),
    }
}

/// Where a frame to deliver comes from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Origin {
    /// The port it came in on (it gets no copy back); `None` for what the router sends.
    pub(super) port: Option<PortId>,
    /// The remote VTEP it came from (split horizon: no copy to another, but for an address
    /// redirected to one: [`MacTable::redirected`]).
    pub(super) vtep: Option<Ipv4Addr>,
    /// The port whose storm control a flood of it draws from.
    pub(super) storm: Option<PortId>,
}

/// Sends the sender's frame where its destination MAC lives in the network, or floods it
/// (broadcast, multicast, unknown unicast) within the storm control of `from.storm`.
pub(super) fn deliver(
    settings: &SwitchSettings,
    now: Duration,
    macs: &MacTable,
    members: &[PortId],
    flood: &[Ipv4Addr],
    sender: &mut Sender<'_, '_>,
    from: Origin,
) {
    let l2 = sender.l2;
    if l2.dst.is_unicast() {
        match macs.lookup(&l2.dst, now, settings.mac_ageing) {
            Some(Location::Port(port)) if Some(port) == from.port => {
                sender.drop_at(port, DropReason::SamePort);
                return;
            }
            Some(Location::Port(port)) => {
                sender.send_port(port);
                return;
            }
            Some(Location::Vtep(vtep)) => {
                match from.vtep {
                    None => sender.send_vtep(vtep),
                    // A migrating VM's address, redirected to the host it is moving to: sent
                    // on there, never back to the host it came from.
                    Some(came) if came != vtep && macs.redirected(&l2.dst, now) == Some(vtep) => {
                        sender.counters.mac_redirected += 1;
                        sender.send_vtep(vtep);
                    }
                    Some(_) => {
                        if let Some(port) = from.port {
                            sender.drop_at(port, DropReason::SplitHorizon);
                        }
                    }
                }
                return;
            }
            None => {}
        }
    }

    // Broadcast, multicast or unknown unicast: every other local port of the network, then
    // the remote hosts of the network (unless the frame came from one: split horizon) or the
    // trunk. Storm control first: a port over its rate floods nothing.
    if let Some(port) = from.storm {
        let storm = slot_mut(sender.egress.ports, port.0).and_then(|p| p.storm.as_mut());
        if let Some(bucket) = storm {
            if !bucket.take(now) {
                sender.drop_at(port, DropReason::StormControl);
                return;
            }
        }
    }
    sender.counters.flooded += 1;
    for &port in members {
        if Some(port) != from.port {
            sender.send_port(port);
        }
    }
    flood_remote(sender, flood, from);
}

/// The remote part of a flood: each remote host of an overlay network (unless the frame came
/// from one), or the trunk of a VLAN network.
pub(super) fn flood_remote(sender: &mut Sender<'_, '_>, flood: &[Ipv4Addr], from: Origin) {
    match sender.segment() {
        Segment::Overlay { .. } => {
            if from.vtep.is_none() {
                for &vtep in flood {
                    sender.send_vtep(vtep);
                }
            }
        }
        Segment::Vlan { .. } => {
            if let Some(trunk) = sender.egress.trunk {
                if Some(trunk) != from.port {
                    sender.send_port(trunk);
                }
            }
        }
    }
}

/// Whether a frame is for the gateway, and what becomes of it: `Some(Ok)` for the router,
/// `Some(Err)` dropped, `None` not for the gateway. From a local port: anything to the
/// gateway's MAC, and ARP requests for its address (broadcast ones included). From the trunk
/// or another host: only an ARP reply to the gateway (its answer to this host's request);
/// anything else to its MAC is the router's business on the sender's host.
fn for_gateway(gw: &RouterInterface, l2: &L2<'_>, access: bool) -> Option<Result<(), DropReason>> {
    if l2.dst == gw.mac {
        if access || arp_to(l2, gw.addr) == Some(ArpOperation::Reply) {
            return Some(Ok(()));
        }
        return Some(Err(DropReason::NotRoutedRemote));
    }
    (access && l2.dst.is_multicast() && arp_to(l2, gw.addr) == Some(ArpOperation::Request))
        .then_some(Ok(()))
}

/// The operation of an ARP packet whose target address is `ip`.
fn arp_to(l2: &L2<'_>, ip: Ipv4Addr) -> Option<ArpOperation> {
    if l2.ethertype != EtherType::ARP {
        return None;
    }
    let repr = ArpRepr::parse(&arp::Packet::new_checked(l2.payload).ok()?).ok()?;
    (repr.target_protocol_addr == ip).then_some(repr.operation)
}

/// The target address of an ARP packet of operation `op`.
fn arp_target(l2: &L2<'_>, op: ArpOperation) -> Option<Ipv4Addr> {
    if l2.ethertype != EtherType::ARP {
        return None;
    }
    let repr = ArpRepr::parse(&arp::Packet::new_checked(l2.payload).ok()?).ok()?;
    (repr.operation == op).then_some(repr.target_protocol_addr)
}

/// Whether an ARP packet names `ip` as its sender's address.
fn claims_address(l2: &L2<'_>, ip: Ipv4Addr) -> bool {
    l2.ethertype == EtherType::ARP
        && arp::Packet::new_checked(l2.payload).is_ok_and(|p| p.source_protocol_addr() == ip)
}

/// True when the frame announces where its source address is: a RARP (QEMU's announcement of a
/// VM after a migration) or a gratuitous ARP (sender and target address the same: a guest's
/// announcement after a migration or an address change), request or reply, whose sender is the
/// frame's source. Only these move a static entry to another host (MAC mobility).
fn announces_source(l2: &L2<'_>) -> bool {
    let rarp = l2.ethertype == EtherType::RARP;
    if !rarp && l2.ethertype != EtherType::ARP {
        return false;
    }
    let Ok(packet) = arp::Packet::new_checked(l2.payload) else {
        return false;
    };
    if packet.hardware_type() != arp::HTYPE_ETHERNET
        || packet.hardware_len() != 6
        || packet.source_hardware_addr() != l2.src
    {
        return false;
    }
    rarp || (packet.protocol_type() == EtherType::IPV4
        && packet.protocol_len() == 4
        && !packet.source_protocol_addr().is_unspecified()
        && packet.source_protocol_addr() == packet.target_protocol_addr())
}

/// The reply to an ARP request for a registered address, unless the request is gratuitous or
/// comes from the address's owner (duplicate address detection).
fn arp_reply(table: &HashMap<Ipv4Addr, MacAddr>, l2: &L2<'_>) -> Option<ArpRepr> {
    let request = ArpRepr::parse(&arp::Packet::new_checked(l2.payload).ok()?).ok()?;
    if request.operation != ArpOperation::Request
        || request.source_protocol_addr == request.target_protocol_addr
    {
        return None;
    }
    let owner = *table.get(&request.target_protocol_addr)?;
    if owner == request.source_hardware_addr {
        return None;
    }
    Some(ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: owner,
        source_protocol_addr: request.target_protocol_addr,
        target_hardware_addr: request.source_hardware_addr,
        target_protocol_addr: request.source_protocol_addr,
    })
}
