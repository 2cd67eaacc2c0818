//! The routing stage: what `forward` hands over for a network's gateway. From a VM or host
//! port of this switch: IPv4 packets to route (TTL, longest-prefix lookup in the ingress
//! network's router, the neighbour's MAC, MTU and DF, then the packet rewritten and delivered
//! on the egress network as a frame from the router) or for a gateway address (echo requests
//! answered), ARP requests for the gateway (answered). From anywhere on the network: ARP
//! replies to the gateway (neighbours learned; a local port's reply is also shared with the
//! network's other hosts, whose router may have asked). ICMP errors go back out of the ingress
//! port, within the switch's ICMP rate.

use core::net::Ipv4Addr;

use super::config::SwitchSettings;
use super::counters::{DropReason, IcmpError};
use super::flows::FlowMark;
use super::forward::{deliver, flood_remote, Origin};
use super::frame::L2;
use super::ids::{slot, slot_mut, NetworkId, PortId, RouterId, Segment};
use super::mac_table::Location;
use super::nat::uplink::Nat;
use super::network::NetworkState;
use super::policy::StormBucket;
use super::router::{martian, Hop, Resolution, RouterInterface, RouterState};
use super::sender::{Egress, Sender};
use super::tx::TxBatch;
use crate::wire::encap::overlay_guest_mtu;
use crate::wire::icmp::{self, DstUnreachable, IcmpRepr, TimeExceeded};
use crate::wire::ipv4::{self, protocol, Ipv4Repr};
use crate::wire::{arp, ArpOperation, ArpRepr, EtherType, MacAddr, Offload};

/// The largest ICMP error datagram (RFC 1812 section 4.3.2.3): its headers and as much of the
/// datagram it is about as fits.
pub(super) const ICMP_ERROR_MAX: usize = 576;
/// Time to live of what the router sends.
const ROUTER_TTL: u8 = 64;
/// DSCP and ECN of ICMP errors: class selector 6, network control (as Linux sends them).
const ICMP_ERROR_TOS: u8 = 0xc0;

/// What the routing stage needs from the switch.
pub(super) struct Routing<'s> {
    pub(super) settings: &'s SwitchSettings,
    pub(super) networks: &'s mut [Option<NetworkState>],
    pub(super) routers: &'s mut [Option<RouterState>],
    pub(super) egress: Egress<'s>,
    /// The switch's ICMP error rate.
    pub(super) icmp: &'s mut StormBucket,
    /// Where the router writes an ICMP message (reused: its capacity stays).
    pub(super) scratch: &'s mut Vec<u8>,
    /// The routers' uplinks and their NAT.
    pub(super) nat: &'s mut Nat,
    /// What became of the packet, for its flow: the router that routed it, north-south.
    pub(super) flow: FlowMark,
    /// A router learned or changed a neighbour (the fast path's offers depend on them).
    pub(super) learned: bool,
}

/// Where a frame for the router came in: its port, its network and that network's gateway
/// (for a frame from outside, the uplink's interface).
#[derive(Clone, Copy, Debug)]
pub(super) struct At {
    pub(super) port: PortId,
    pub(super) network: NetworkId,
    pub(super) gw: RouterInterface,
    /// A transit frame (from another host of the router, through the VXLAN uplink): what the
    /// router sends back goes to its source's MAC in the network, wherever it is.
    pub(super) transit: bool,
}

impl Routing<'_> {
    /// A frame `forward` handed over: for `network`'s gateway, from `in_port` (`access`: a VM
    /// or host port of this switch, else the trunk or the uplink, which only hand over ARP
    /// replies to the gateway).
    pub(super) fn frame(
        &mut self,
        in_port: PortId,
        network: NetworkId,
        access: bool,
        l2: L2<'_>,
        tx: &mut TxBatch,
    ) {
        let Some(gw) = slot(self.networks, network.0).and_then(|n| n.gateway) else {
            return;
        };
        let at = At {
            port: in_port,
            network,
            gw,
            transit: false,
        };
        match l2.ethertype {
            EtherType::ARP => self.arp(at, access, l2, tx),
            EtherType::IPV4 if access => self.ipv4(at, l2, tx),
            _ => self.refuse(at, DropReason::ToGateway),
        }
    }

    /// Counts a packet the router did not route on the ingress port, its network and the
    /// router.
    pub(super) fn refuse(&mut self, at: At, reason: DropReason) {
        if let Some(p) = slot_mut(self.egress.ports, at.port.0) {
            p.counters.drops.add(reason);
        }
        if let Some(n) = slot_mut(self.networks, at.network.0) {
            n.counters.traffic.drops.add(reason);
        }
        if let Some(r) = slot_mut(self.routers, at.gw.router.0) {
            r.counters.drops.add(reason);
        }
    }

    /// ARP for the gateway: a request from a local port is answered; a reply to it teaches the
    /// router a neighbour it asked for, and from a local port goes on to the network's other
    /// hosts (the request may have come from any host's router), never to a local port.
    fn arp(&mut self, at: At, access: bool, l2: L2<'_>, tx: &mut TxBatch) {
        let repr = arp::Packet::new_checked(l2.payload).and_then(|p| ArpRepr::parse(&p));
        let Ok(repr) = repr else {
            return self.refuse(at, DropReason::ToGateway);
        };
        if repr.target_protocol_addr != at.gw.addr {
            return self.refuse(at, DropReason::ToGateway);
        }
        match repr.operation {
            ArpOperation::Request if access => {
                self.answer_arp(at, &l2, &repr, at.gw.addr, tx);
            }
            ArpOperation::Reply => {
                let (ip, mac) = (repr.source_protocol_addr, repr.source_hardware_addr);
                let plausible = mac.is_unicast()
                    && at.gw.contains(ip)
                    && ip != at.gw.addr
                    && !at.gw.is_subnet_edge(ip);
                if let Some(router) = slot_mut(self.routers, at.gw.router.0) {
                    let now = self.egress.now;
                    let changes = router.neighbours.changes();
                    if plausible && router.neighbours.learn(at.network, ip, mac, now) {
                        router.counters.neighbours_learned += 1;
                    }
                    self.learned |= router.neighbours.changes() != changes;
                }
                if access {
                    // Shared within the port's storm control, as a flood would be.
                    let now = self.egress.now;
                    let port = slot_mut(self.egress.ports, at.port.0);
                    if let Some(bucket) = port.and_then(|p| p.storm.as_mut()) {
                        if !bucket.take(now) {
                            if let Some(p) = slot_mut(self.egress.ports, at.port.0) {
                                p.counters.drops.add(DropReason::StormControl);
                            }
                            if let Some(n) = slot_mut(self.networks, at.network.0) {
                                n.counters.traffic.drops.add(DropReason::StormControl);
                            }
                            return;
                        }
                    }
                    let Some(net) = slot_mut(self.networks, at.network.0) else {
                        return;
                    };
                    let NetworkState {
                        segment,
                        flood,
                        counters,
                        ..
                    } = net;
                    let mut sender =
                        Sender::new(self.egress.reborrow(), counters, *segment, tx, l2, true);
                    let from = Origin {
                        port: Some(at.port),
                        vtep: None,
                        storm: None,
                    };
                    flood_remote(&mut sender, flood, from);
                }
            }
            _ => self.refuse(at, DropReason::ToGateway),
        }
    }

    /// An IPv4 packet from a local port to the gateway's MAC: for a gateway address, or routed.
    pub(super) fn ipv4(&mut self, at: At, l2: L2<'_>, tx: &mut TxBatch) {
        // Classification checked the header (lengths, checksum).
        let ip = ipv4::Packet::new_unchecked(l2.payload);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if martian(src) || martian(dst) {
            return self.refuse(at, DropReason::Martian);
        }
        let Some(router) = slot_mut(self.routers, at.gw.router.0) else {
            return self.refuse(at, DropReason::NoRoute);
        };
        // A packet from a local port claiming one of the router's own addresses as its source
        // is a martian source (as Linux has it): routed on, it would pass for the router's own.
        if router.interface_at(src).is_some() {
            return self.refuse(at, DropReason::Martian);
        }
        if let Some(own) = router.interface_at(dst) {
            let own = own.addr;
            return self.for_gateway_address(at, own, l2, tx);
        }
        // A connected subnet's network or broadcast address (a directed broadcast).
        if router.all_interfaces().any(|i| i.is_subnet_edge(dst)) {
            return self.refuse(at, DropReason::Martian);
        }
        if ip.ttl() <= 1 {
            self.icmp_error(at, &l2, IcmpError::TimeExceeded, 0, tx);
            return self.refuse(at, DropReason::TtlExceeded);
        }
        let Some(hop) = router.lookup(dst) else {
            self.icmp_error(at, &l2, IcmpError::NetUnreachable, 0, tx);
            return self.refuse(at, DropReason::NoRoute);
        };
        if router.uplink.is_some_and(|u| u.network == hop.network) {
            // North-south: to the edge, or translated here.
            return self.north_south(at, l2, hop, tx);
        }
        let Some(out_gw) = slot(self.networks, hop.network.0).and_then(|n| n.gateway) else {
            return self.refuse(at, DropReason::NoRoute);
        };
        let Some(mac) = self.neighbour(at, &l2, hop, out_gw, tx) else {
            return;
        };
        self.count_routed(at.gw.router, &l2);
        // The packet leaves as a frame of the egress network from its gateway: TTL decremented
        // as each copy is written, normal delivery from there (the receiving port's firewall,
        // MTU, offloads), flooding within the sending port's storm control.
        let routed = L2 {
            dst: mac,
            src: out_gw.mac,
            routed: true,
            ..l2
        };
        self.deliver_in(hop.network, routed, Some(at.port), tx);
    }

    /// The MAC of a route's neighbour on its egress network (`out`: the router's interface
    /// there), if the packet may go to it: the control plane's ARP entry, else a neighbour the
    /// router learned, else the router asks (`neighbour_unknown`; ICMP host unreachable once a
    /// connected destination has not answered for a while); then the egress MTU (too big:
    /// fragmentation needed with DF, else `oversized`). `None`: dropped and counted.
    pub(super) fn neighbour(
        &mut self,
        at: At,
        l2: &L2<'_>,
        hop: Hop,
        out: RouterInterface,
        tx: &mut TxBatch,
    ) -> Option<MacAddr> {
        let now = self.egress.now;
        let registered =
            slot(self.networks, hop.network.0).and_then(|n| n.arp.get(&hop.neighbour).copied());
        let resolution = match registered {
            Some(mac) => Resolution {
                mac: Some(mac),
                ask: false,
                unanswered: false,
            },
            None => {
                let router = slot_mut(self.routers, at.gw.router.0)?;
                router.neighbours.resolve(hop.network, hop.neighbour, now)
            }
        };
        if resolution.ask {
            self.ask(out, hop.neighbour, at.port, tx);
        }
        let Some(mac) = resolution.mac else {
            if hop.connected && resolution.unanswered {
                self.icmp_error(at, l2, IcmpError::HostUnreachable, 0, tx);
            }
            self.refuse(at, DropReason::NeighbourUnknown);
            return None;
        };
        // The egress MTU: where the neighbour is (for a GSO frame, its segments must fit).
        let mtu = self.path_mtu(hop.network, mac);
        if l2.wire_payload_len().is_none_or(|len| len > mtu) {
            let ip = ipv4::Packet::new_unchecked(l2.payload);
            if ip.dont_frag() {
                let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
                self.icmp_error(at, l2, IcmpError::FragmentationNeeded, mtu, tx);
                self.refuse(at, DropReason::FragmentationNeeded);
            } else {
                self.refuse(at, DropReason::Oversized);
            }
            return None;
        }
        Some(mac)
    }

    /// Answers ARP request `repr` (in frame `l2`, on `at`'s network) for `addr` with `at`'s
    /// MAC, sent back out of the port it came from; counted as suppressed on the network.
    pub(super) fn answer_arp(
        &mut self,
        at: At,
        l2: &L2<'_>,
        repr: &ArpRepr,
        addr: Ipv4Addr,
        tx: &mut TxBatch,
    ) {
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: at.gw.mac,
            source_protocol_addr: addr,
            target_hardware_addr: repr.source_hardware_addr,
            target_protocol_addr: repr.source_protocol_addr,
        };
        let mut payload = [0u8; arp::PACKET_LEN];
        if reply
            .emit(&mut arp::Packet::new_unchecked(&mut payload[..]))
            .is_err()
        {
            return;
        }
        if let Some(n) = slot_mut(self.networks, at.network.0) {
            n.counters.arp_suppressed += 1;
        }
        let reply = generated(l2.src, at.gw.mac, EtherType::ARP, &payload);
        send_back(
            self.settings,
            self.networks,
            &mut self.egress,
            at,
            reply,
            tx,
        );
    }

    /// Counts a routed packet on its router.
    pub(super) fn count_routed(&mut self, router: RouterId, l2: &L2<'_>) {
        let ip = ipv4::Packet::new_unchecked(l2.payload);
        self.flow.routed_by(router);
        if let Some(router) = slot_mut(self.routers, router.0) {
            let c = &mut router.counters;
            c.routed_packets += 1;
            c.routed_bytes += l2.len() as u64;
            if ip.is_fragment() {
                c.routed_fragments += 1;
            }
            if usize::from(ip.header_len()) > ipv4::HEADER_LEN {
                c.routed_options += 1;
            }
        }
    }

    /// Delivers what the router sends in a network: where its destination MAC lives, or
    /// flooded within the storm control of `storm` (the port whose packet it is).
    pub(super) fn deliver_in(
        &mut self,
        network: NetworkId,
        l2: L2<'_>,
        storm: Option<PortId>,
        tx: &mut TxBatch,
    ) {
        deliver_frame(
            self.settings,
            self.networks,
            &mut self.egress,
            network,
            l2,
            storm,
            tx,
        );
    }

    /// An IPv4 packet to one of the router's addresses: an echo request is answered from that
    /// address; anything else is dropped.
    pub(super) fn for_gateway_address(
        &mut self,
        at: At,
        own: Ipv4Addr,
        l2: L2<'_>,
        tx: &mut TxBatch,
    ) {
        let ip = ipv4::Packet::new_unchecked(l2.payload);
        if ip.protocol() != protocol::ICMP || !l2.offload.is_complete() {
            return self.refuse(at, DropReason::ToGateway);
        }
        if ip.is_fragment() {
            return self.refuse(at, DropReason::BadIcmp);
        }
        let request = icmp::Packet::new_checked(ip.payload()).and_then(|p| IcmpRepr::parse(&p));
        let (ident, seq_no, data) = match request {
            Ok(IcmpRepr::EchoRequest {
                ident,
                seq_no,
                data,
            }) => (ident, seq_no, data),
            Ok(_) | Err(crate::wire::Error::UnsupportedIcmp) => {
                return self.refuse(at, DropReason::ToGateway)
            }
            Err(_) => return self.refuse(at, DropReason::BadIcmp),
        };
        let reply = IcmpRepr::EchoReply {
            ident,
            seq_no,
            data,
        };
        // The guest's DSCP, not its ECN.
        let tos = ip.dscp_ecn() & 0xfc;
        if !write_icmp(self.scratch, own, ip.src_addr(), tos, &reply) {
            return self.refuse(at, DropReason::ToGateway);
        }
        if let Some(r) = slot_mut(self.routers, at.gw.router.0) {
            r.counters.echo_replies += 1;
        }
        let reply = generated(l2.src, at.gw.mac, EtherType::IPV4, self.scratch);
        send_back(
            self.settings,
            self.networks,
            &mut self.egress,
            at,
            reply,
            tx,
        );
    }

    /// Sends an ICMP error about the packet in `l2` back to its sender, from the ingress
    /// gateway (RFC 792, RFC 1812): never about an ICMP error, a fragment other than the first,
    /// a packet to or from an address that is not unicast; within the switch's rate (over it:
    /// counted, not sent). It quotes the packet's IP header and as much of its payload as
    /// fits in 576 bytes; `mtu` is the next-hop MTU of fragmentation needed.
    pub(super) fn icmp_error(
        &mut self,
        at: At,
        l2: &L2<'_>,
        kind: IcmpError,
        mtu: u16,
        tx: &mut TxBatch,
    ) {
        let ip = ipv4::Packet::new_unchecked(l2.payload);
        let about_error = ip.protocol() == protocol::ICMP
            && ip
                .payload()
                .first()
                .is_some_and(|&t| icmp::msg_type::is_error(t));
        if about_error || ip.frag_offset() != 0 || martian(ip.src_addr()) || martian(ip.dst_addr())
        {
            return;
        }
        let Some(router) = slot_mut(self.routers, at.gw.router.0) else {
            return;
        };
        if !self.icmp.take(self.egress.now) {
            router.counters.icmp_rate_limited += 1;
            return;
        }
        let total = usize::from(ip.total_len()).min(l2.payload.len());
        let room = ICMP_ERROR_MAX - ipv4::HEADER_LEN - icmp::HEADER_LEN;
        let data = l2.payload.get(..total.min(room)).unwrap_or(&[]);
        let repr = match kind {
            IcmpError::TimeExceeded => IcmpRepr::TimeExceeded {
                reason: TimeExceeded::TtlExpired,
                data,
            },
            IcmpError::NetUnreachable => IcmpRepr::DstUnreachable {
                reason: DstUnreachable::NetUnreachable,
                data,
            },
            IcmpError::HostUnreachable => IcmpRepr::DstUnreachable {
                reason: DstUnreachable::HostUnreachable,
                data,
            },
            IcmpError::FragmentationNeeded => IcmpRepr::DstUnreachable {
                reason: DstUnreachable::FragRequired { mtu },
                data,
            },
        };
        if !write_icmp(
            self.scratch,
            at.gw.addr,
            ip.src_addr(),
            ICMP_ERROR_TOS,
            &repr,
        ) {
            return;
        }
        router.counters.icmp_sent(kind);
        let error = generated(l2.src, at.gw.mac, EtherType::IPV4, self.scratch);
        send_back(
            self.settings,
            self.networks,
            &mut self.egress,
            at,
            error,
            tx,
        );
    }

    /// Sends an ARP request for `target` from the gateway `gw`, to every port and host of its
    /// network, within the storm control of `for_port` (the port whose packet needs it: the
    /// router floods on its behalf).
    pub(super) fn ask(
        &mut self,
        gw: RouterInterface,
        target: Ipv4Addr,
        for_port: PortId,
        tx: &mut TxBatch,
    ) {
        let request = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: gw.mac,
            source_protocol_addr: gw.addr,
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: target,
        };
        let mut payload = [0u8; arp::PACKET_LEN];
        if request
            .emit(&mut arp::Packet::new_unchecked(&mut payload[..]))
            .is_err()
        {
            return;
        }
        if let Some(r) = slot_mut(self.routers, gw.router.0) {
            r.counters.arp_requests += 1;
        }
        let Some(net) = slot_mut(self.networks, gw.network.0) else {
            return;
        };
        let NetworkState {
            segment,
            macs,
            flood,
            ports: members,
            counters,
            ..
        } = net;
        let l2 = generated(MacAddr::BROADCAST, gw.mac, EtherType::ARP, &payload);
        let now = self.egress.now;
        let mut sender = Sender::new(self.egress.reborrow(), counters, *segment, tx, l2, true);
        let from = Origin {
            port: None,
            vtep: None,
            storm: Some(for_port),
        };
        deliver(self.settings, now, macs, members, flood, &mut sender, from);
    }

    /// The largest IP packet that reaches `mac` on a network: the MTU of its port, of the
    /// overlay (the uplink's less the encapsulation) for a remote host; for an unknown MAC
    /// (flooded), the smallest of the network's; never more than the network's MTU as its
    /// router interface gives it (a remote host's port may be smaller than the underlay).
    fn path_mtu(&self, network: NetworkId, mac: MacAddr) -> usize {
        let Some(net) = slot(self.networks, network.0) else {
            return usize::MAX;
        };
        let limit = net
            .gateway
            .and_then(|g| g.mtu)
            .map_or(usize::MAX, usize::from);
        limit.min(self.reach_mtu(net, mac))
    }

    /// [`Self::path_mtu`] from the ports and the underlay alone.
    fn reach_mtu(&self, net: &NetworkState, mac: MacAddr) -> usize {
        let ports = &*self.egress.ports;
        let port_mtu =
            |id: PortId| slot(ports, id.0).map_or(usize::MAX, |p| usize::from(p.config.mtu));
        let overlay_mtu = || {
            self.egress
                .uplink
                .and_then(|id| slot(ports, id.0))
                .map_or(usize::MAX, |p| usize::from(overlay_guest_mtu(p.config.mtu)))
        };
        let ageing = self.settings.mac_ageing;
        match net.macs.lookup(&mac, self.egress.now, ageing) {
            Some(Location::Port(id)) => port_mtu(id),
            Some(Location::Vtep(_)) => overlay_mtu(),
            None => {
                let local = net.ports.iter().map(|&id| port_mtu(id)).min();
                let remote = match net.segment {
                    Segment::Overlay { .. } if !net.flood.is_empty() => overlay_mtu(),
                    Segment::Overlay { .. } => usize::MAX,
                    Segment::Vlan { .. } => self.egress.trunk.map_or(usize::MAX, port_mtu),
                };
                local.unwrap_or(usize::MAX).min(remote)
            }
        }
    }
}

/// A frame the router writes: no offloads, no mark, not filtered.
pub(super) fn generated<'a>(
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
    payload: &'a [u8],
) -> L2<'a> {
    L2 {
        dst,
        src,
        ethertype,
        payload,
        offload: Offload::NONE,
        mark: None,
        routed: false,
    }
}

/// Delivers a frame the router sends in a network (see [`Routing::deliver_in`]); the pieces
/// of the switch are borrowed one by one, so `l2` may borrow another part of it.
pub(super) fn deliver_frame(
    settings: &SwitchSettings,
    networks: &mut [Option<NetworkState>],
    egress: &mut Egress<'_>,
    network: NetworkId,
    l2: L2<'_>,
    storm: Option<PortId>,
    tx: &mut TxBatch,
) {
    let Some(net) = slot_mut(networks, network.0) else {
        return;
    };
    let NetworkState {
        segment,
        macs,
        flood,
        ports: members,
        counters,
        ..
    } = net;
    let now = egress.now;
    let mut sender = Sender::new(egress.reborrow(), counters, *segment, tx, l2, false);
    let from = Origin {
        port: None,
        vtep: None,
        storm,
    };
    deliver(settings, now, macs, members, flood, &mut sender, from);
}

/// Sends what the router wrote back out of the ingress port, as a frame of its network (for a
/// transit frame, to its source's MAC wherever that lives in the network).
pub(super) fn send_back(
    settings: &SwitchSettings,
    networks: &mut [Option<NetworkState>],
    egress: &mut Egress<'_>,
    at: At,
    l2: L2<'_>,
    tx: &mut TxBatch,
) {
    let Some(net) = slot_mut(networks, at.network.0) else {
        return;
    };
    if at.transit {
        let NetworkState {
            segment,
            macs,
            flood,
            ports: members,
            counters,
            ..
        } = net;
        let now = egress.now;
        let mut sender = Sender::new(egress.reborrow(), counters, *segment, tx, l2, true);
        let from = Origin {
            port: None,
            vtep: None,
            storm: None,
        };
        deliver(settings, now, macs, members, flood, &mut sender, from);
        return;
    }
    let segment = net.segment;
    let mut sender = Sender::new(egress.reborrow(), &mut net.counters, segment, tx, l2, true);
    sender.send_port(at.port);
}

/// Writes an IPv4 packet with `message` from `src` to `dst` into `buf` (replacing what it
/// held); false if it does not fit a packet.
pub(super) fn write_icmp(
    buf: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dscp_ecn: u8,
    message: &IcmpRepr<'_>,
) -> bool {
    let header = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: protocol::ICMP,
        payload_len: message.buffer_len(),
        ttl: ROUTER_TTL,
        dscp_ecn,
    };
    buf.clear();
    buf.resize(ipv4::HEADER_LEN + message.buffer_len(), 0);
    header
        .emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
        .is_ok()
        && buf
            .get_mut(ipv4::HEADER_LEN..)
            .is_some_and(|m| message.emit(&mut icmp::Packet::new_unchecked(m)).is_ok())
}
