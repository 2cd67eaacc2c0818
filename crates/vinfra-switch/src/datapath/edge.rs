//! The routing stage's north-south part (a second `impl Routing`, beside `route`): what a
//! router sends out through its uplink and what comes in to it.
//!
//! - On a host that is not the router's edge, a packet a local port sends that the router
//!   would send out through the uplink goes, as it was sent, to the edge's VTEP in VXLAN with
//!   the router's transit VNI ([`Routing::north_south`]).
//! - On the edge, such a packet (from a local port, or from another host on the transit VNI:
//!   [`Routing::transit`]) is routed, source-NATed (the sender's floating IP, else the uplink's
//!   address with a session) and sent on the external network from the uplink's MAC.
//! - From the trunk, frames to the uplink's MAC and ARP requests for its addresses reach the
//!   edge's [`Routing::uplink_frame`]: ARP is answered (requests) or teaches neighbours
//!   (replies); IPv4 is translated back (a session, a floating IP, an ICMP error about either),
//!   routed inside and delivered as east-west traffic is; an echo request to the uplink's
//!   address is answered.
//! - [`Routing::announce`] sends the gratuitous ARPs configuration left to send.

use core::net::Ipv4Addr;

use super::counters::{DropReason, IcmpError};
use super::frame::L2;
use super::ids::{slot, slot_mut, NetworkId, PortId, RouterId, Segment};
use super::nat::icmp_error::{quoted, translate_back};
use super::nat::rewrite::{flow, rewrite, Flow, Side};
use super::nat::table::NoSession;
use super::nat::uplink::Edge;
use super::route::{generated, At, Routing};
use super::router::{martian, Hop};
use super::sender::Sender;
use super::tx::TxBatch;
use crate::wire::ipv4::{self, protocol};
use crate::wire::{arp, ArpOperation, ArpRepr, EtherType, MacAddr, Offload};

/// What a packet from outside becomes.
enum Inbound {
    /// Its destination (and port) rewritten to an inner endpoint.
    Rewrite(Ipv4Addr, Option<u16>),
    /// An ICMP error translated back to an inner endpoint.
    Error(Ipv4Addr, Option<u16>),
    /// An echo request the edge answers.
    Echo,
}

impl Routing<'_> {
    /// A packet routed to the uplink's network (`hop`): on a host that is not the edge, sent as
    /// it came to the edge; on the edge, source-NATed and sent out.
    pub(super) fn north_south(&mut self, at: At, l2: L2<'_>, hop: Hop, tx: &mut TxBatch) {
        let router = at.gw.router;
        self.flow.north_south();
        let Some(up) = self.nat.uplinks.get(&router) else {
            return self.refuse(at, DropReason::NoRoute);
        };
        match up.edge {
            Edge::Remote { .. } if at.transit => self.refuse(at, DropReason::NotEdge),
            Edge::Remote { vtep } => {
                let vni = up.transit_vni;
                let Some(net) = slot_mut(self.networks, at.network.0) else {
                    return;
                };
                let before = tx.len();
                let segment = Segment::Overlay { vni };
                let mut sender = Sender::new(
                    self.egress.reborrow(),
                    &mut net.counters,
                    segment,
                    tx,
                    l2,
                    false,
                );
                sender.send_vtep(vtep);
                if tx.len() > before {
                    if let Some(up) = self.nat.uplinks.get_mut(&router) {
                        up.counters.to_edge_packets += 1;
                    }
                }
            }
            Edge::Local => self.snat(at, l2, hop, tx),
        }
    }

    /// Source NAT on the edge: the sender's floating IP, else the uplink's address and the
    /// port of its session; then out on the external network from the uplink's MAC.
    fn snat(&mut self, at: At, l2: L2<'_>, hop: Hop, tx: &mut TxBatch) {
        let router = at.gw.router;
        let Some(up) = self.nat.uplinks.get(&router) else {
            return self.refuse(at, DropReason::NoRoute);
        };
        let iface = up.iface;
        let ip = ipv4::Packet::new_unchecked(l2.payload);
        let src = ip.src_addr();
        let floating = up.by_internal.get(&src).copied();
        let endpoint = match (floating, flow(l2.payload)) {
            (Some(_), _) => None,
            (None, _) if ip.is_fragment() => return self.refuse(at, DropReason::NatUnsupported),
            (
                None,
                Flow::Ports {
                    proto, src, flags, ..
                },
            ) => Some((proto, src, flags)),
            (None, Flow::EchoRequest(ident)) => Some((protocol::ICMP, ident, 0)),
            (None, _) => return self.refuse(at, DropReason::NatUnsupported),
        };
        let Some(mac) = self.neighbour(at, &l2, hop, iface, tx) else {
            return;
        };
        let (addr, port) = match (floating, endpoint) {
            (Some(external), _) => (external, None),
            (None, Some((proto, port, flags))) => {
                let now = self.egress.now;
                match self
                    .nat
                    .table
                    .outbound(router, proto, src, port, flags, now)
                {
                    Ok(outer) => (iface.addr, Some(outer)),
                    Err(NoSession::TableFull) => return self.refuse(at, DropReason::NatTableFull),
                    Err(NoSession::PortsExhausted) => {
                        return self.refuse(at, DropReason::NatPortsExhausted)
                    }
                }
            }
            (None, None) => return self.refuse(at, DropReason::NatUnsupported),
        };
        self.count_routed(router, &l2);
        if let Some(up) = self.nat.uplinks.get_mut(&router) {
            up.counters.snat_packets += 1;
        }
        let mut buf = core::mem::take(&mut self.nat.buf);
        buf.clear();
        buf.extend_from_slice(l2.payload);
        ipv4::Packet::new_unchecked(&mut buf[..]).decrement_ttl();
        rewrite(&mut buf, Side::Src, addr, port, l2.offload.csum.is_some());
        let out = L2 {
            dst: mac,
            src: iface.mac,
            payload: &buf,
            routed: false,
            ..l2
        };
        self.deliver_in(hop.network, out, Some(at.port), tx);
        self.nat.buf = buf;
    }

    /// A frame from another host on a router's transit VNI: routed here if this is the
    /// router's edge (its ingress network the router's network that holds its source), else
    /// dropped (`not_edge`).
    pub(super) fn transit(
        &mut self,
        in_port: PortId,
        router: RouterId,
        l2: L2<'_>,
        tx: &mut TxBatch,
    ) {
        let edge = self.nat.uplinks.get(&router).map(|u| u.is_edge());
        if edge != Some(true) {
            return self.refuse_port(in_port, router, DropReason::NotEdge);
        }
        if l2.ethertype != EtherType::IPV4 {
            return self.refuse_port(in_port, router, DropReason::ToGateway);
        }
        let src = ipv4::Packet::new_unchecked(l2.payload).src_addr();
        let iface = slot(self.routers, router.0)
            .and_then(|r| r.interfaces.iter().find(|i| i.contains(src)).copied());
        let Some(gw) = iface else {
            return self.refuse_port(in_port, router, DropReason::Martian);
        };
        if let Some(up) = self.nat.uplinks.get_mut(&router) {
            up.counters.from_transit_packets += 1;
        }
        if let Some(n) = slot_mut(self.networks, gw.network.0) {
            n.counters.traffic.rx(l2.len());
        }
        let at = At {
            port: in_port,
            network: gw.network,
            gw,
            transit: true,
        };
        self.ipv4(at, l2, tx);
    }

    /// Counts a drop on a port and a router (a transit frame belongs to no network).
    fn refuse_port(&mut self, port: PortId, router: RouterId, reason: DropReason) {
        if let Some(p) = slot_mut(self.egress.ports, port.0) {
            p.counters.drops.add(reason);
        }
        if let Some(r) = slot_mut(self.routers, router.0) {
            r.counters.drops.add(reason);
        }
    }

    /// A frame from the trunk for a router's uplink on its edge: ARP, or IPv4 to translate
    /// back.
    pub(super) fn uplink_frame(
        &mut self,
        in_port: PortId,
        network: NetworkId,
        l2: L2<'_>,
        tx: &mut TxBatch,
    ) {
        let router = slot(self.networks, network.0)
            .and_then(|n| n.uplink.as_ref())
            .map(|u| u.router);
        let Some(up) = router.and_then(|r| self.nat.uplinks.get(&r)) else {
            return;
        };
        let at = At {
            port: in_port,
            network,
            gw: up.iface,
            transit: false,
        };
        if !up.is_edge() {
            return self.refuse(at, DropReason::NotEdge);
        }
        match l2.ethertype {
            EtherType::ARP => self.uplink_arp(at, l2, tx),
            EtherType::IPV4 => {
                // Counted here, where it enters the cluster (see "Flow accounting").
                self.flow.north_south();
                self.flow.routed_by(at.gw.router);
                self.inbound(at, l2, tx)
            }
            _ => self.refuse(at, DropReason::ToGateway),
        }
    }

    /// ARP for the uplink: a request for its address or a floating IP is answered with its
    /// MAC; a reply to its address teaches the router a neighbour it asked for.
    fn uplink_arp(&mut self, at: At, l2: L2<'_>, tx: &mut TxBatch) {
        let repr = arp::Packet::new_checked(l2.payload).and_then(|p| ArpRepr::parse(&p));
        let Ok(repr) = repr else {
            return self.refuse(at, DropReason::ToGateway);
        };
        let Some(up) = self.nat.uplinks.get(&at.gw.router) else {
            return;
        };
        let target = repr.target_protocol_addr;
        let ours = target == up.iface.addr || up.floating.contains_key(&target);
        match repr.operation {
            ArpOperation::Request if ours && repr.source_protocol_addr != target => {
                self.answer_arp(at, &l2, &repr, target, tx);
            }
            ArpOperation::Reply if target == at.gw.addr => {
                let (ip, mac) = (repr.source_protocol_addr, repr.source_hardware_addr);
                let plausible = mac.is_unicast()
                    && at.gw.contains(ip)
                    && ip != at.gw.addr
                    && !at.gw.is_subnet_edge(ip);
                let now = self.egress.now;
                if let Some(router) = slot_mut(self.routers, at.gw.router.0) {
                    let changes = router.neighbours.changes();
                    if plausible && router.neighbours.learn(at.network, ip, mac, now) {
                        router.counters.neighbours_learned += 1;
                    }
                    self.learned |= router.neighbours.changes() != changes;
                }
            }
            _ => self.refuse(at, DropReason::ToGateway),
        }
    }

    /// An IPv4 packet from outside to the uplink's MAC: translated back to an inner endpoint
    /// (a session of the uplink's address, a floating IP, an ICMP error about either), routed
    /// inside and delivered; an echo request to the uplink's address answered; anything else
    /// `no_nat_session`.
    fn inbound(&mut self, at: At, l2: L2<'_>, tx: &mut TxBatch) {
        let ip = ipv4::Packet::new_unchecked(l2.payload);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if martian(src) || martian(dst) || at.gw.is_subnet_edge(src) {
            return self.refuse(at, DropReason::Martian);
        }
        let router = at.gw.router;
        let now = self.egress.now;
        let Some(up) = self.nat.uplinks.get(&router) else {
            return;
        };
        let floating = up.floating.get(&dst).copied();
        let packet_flow = flow(l2.payload);
        let about = || quoted(l2.payload).filter(|q| q.src == dst);
        let table = &mut self.nat.table;
        let target = if dst == at.gw.addr {
            match packet_flow {
                Flow::EchoRequest(_) => Some(Inbound::Echo),
                Flow::Ports {
                    proto,
                    dst: port,
                    flags,
                    ..
                } => table
                    .inbound(router, proto, port, flags, now, true)
                    .map(|(a, p)| Inbound::Rewrite(a, Some(p))),
                Flow::EchoReply(ident) => table
                    .inbound(router, protocol::ICMP, ident, 0, now, true)
                    .map(|(a, p)| Inbound::Rewrite(a, Some(p))),
                Flow::IcmpError => about()
                    .and_then(|q| {
                        let port = q.src_port?;
                        table.inbound(router, q.proto, port, 0, now, false)
                    })
                    .map(|(a, p)| Inbound::Error(a, Some(p))),
                Flow::Other => None,
            }
        } else {
            floating.map(|internal| match packet_flow {
                Flow::IcmpError if about().is_some() => Inbound::Error(internal, None),
                _ => Inbound::Rewrite(internal, None),
            })
        };
        let (inner, port, error) = match target {
            None => return self.refuse(at, DropReason::NoNatSession),
            Some(Inbound::Echo) => return self.for_gateway_address(at, at.gw.addr, l2, tx),
            Some(Inbound::Rewrite(a, p)) => (a, p, false),
            Some(Inbound::Error(a, p)) => (a, p, true),
        };
        if ip.ttl() <= 1 {
            self.icmp_error(at, &l2, IcmpError::TimeExceeded, 0, tx);
            return self.refuse(at, DropReason::TtlExceeded);
        }
        let route = slot(self.routers, router.0).and_then(|r| r.lookup(inner));
        let out = route.and_then(|hop| {
            let gw = slot(self.networks, hop.network.0)?.gateway?;
            Some((hop, gw))
        });
        let Some((hop, out_gw)) = out else {
            return self.refuse(at, DropReason::NoRoute);
        };
        let Some(mac) = self.neighbour(at, &l2, hop, out_gw, tx) else {
            return;
        };
        self.count_routed(router, &l2);
        if let Some(up) = self.nat.uplinks.get_mut(&router) {
            up.counters.dnat_packets += 1;
        }
        let mut buf = core::mem::take(&mut self.nat.buf);
        buf.clear();
        buf.extend_from_slice(l2.payload);
        ipv4::Packet::new_unchecked(&mut buf[..]).decrement_ttl();
        // From the trunk a frame has no offload metadata; from a local port of the external
        // network on the edge (a tap offering checksum and segmentation offloads) it may
        // carry a partial checksum or be a large TCP segment: kept, as source NAT keeps it.
        let offload = if error { Offload::NONE } else { l2.offload };
        if error {
            translate_back(&mut buf, inner, port);
        } else {
            rewrite(&mut buf, Side::Dst, inner, port, offload.csum.is_some());
        }
        let routed = L2 {
            dst: mac,
            src: out_gw.mac,
            payload: &buf,
            routed: false,
            offload,
            ..l2
        };
        self.deliver_in(hop.network, routed, None, tx);
        self.nat.buf = buf;
    }

    /// Sends the gratuitous ARPs configuration left to send: for each address still the
    /// uplink's or a floating IP of a router whose edge this is, a broadcast ARP request from
    /// the uplink's MAC (sender and target the address) on the external network. Returns how
    /// many.
    pub(super) fn announce(&mut self, tx: &mut TxBatch) -> usize {
        let pending = core::mem::take(&mut self.nat.pending);
        let mut sent = 0;
        for (router, addr) in pending {
            let Some(up) = self.nat.uplinks.get_mut(&router) else {
                continue;
            };
            if !up.is_edge() || !up.addresses().any(|a| a == addr) {
                continue;
            }
            up.counters.garps_sent += 1;
            let iface = up.iface;
            let garp = ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: iface.mac,
                source_protocol_addr: addr,
                target_hardware_addr: MacAddr([0; 6]),
                target_protocol_addr: addr,
            };
            let mut payload = [0u8; arp::PACKET_LEN];
            if garp
                .emit(&mut arp::Packet::new_unchecked(&mut payload[..]))
                .is_err()
            {
                continue;
            }
            let l2 = generated(MacAddr::BROADCAST, iface.mac, EtherType::ARP, &payload);
            self.deliver_in(iface.network, l2, None, tx);
            sent += 1;
        }
        sent
    }
}
