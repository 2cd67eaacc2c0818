//! Offers of flows that a kernel fast path may forward without the switch.
//!
//! The daemon may hand the established flows between two of its local ports to the kernel
//! (a classifier on the ingress port that redirects a flow's frames to the egress port, as
//! Open vSwitch's kernel datapath keeps flows its userspace decided). The core decides, never
//! the kernel: a frame from a port marked with [`Switch::set_port_fast`] whose fate was a
//! single copy to another such port, identical to the frame or, routed, the same with other
//! MACs and one TTL less, is offered as a [`FastFlow`] ([`Switch::take_fast_offers`]). What
//! the kernel forwards is reported back with [`Switch::fast_traffic`], so that counters, flow
//! accounting and MAC ageing see it. Over VXLAN a flow may also leave a local port
//! encapsulated for another host ([`FastFlow::encap`]) or come in from the uplink to a local
//! port, keyed with its tunnel ([`FastKey::tunnel`]).
//!
//! An offer holds only while the state it was decided on holds: every change that could
//! decide another way (configuration, a MAC learned or moved, a neighbour learned, a MAC
//! entry or neighbour expired) advances [`Switch::fast_generation`], and the daemon then forgets every flow it
//! gave the kernel. Offers made before the change carry the older generation and are not to
//! be given. Only unicast IPv4 without options or fragments is offered, TCP (no SYN, FIN or
//! RST: a connection's start and end always cross the switch), UDP and ICMP echo requests and
//! replies; through a firewall only when every check of the frame found an established
//! connection (its refresh comes from the kernel's counters, every change of it takes the flows
//! back).

use core::net::Ipv4Addr;
use core::time::Duration;

use super::filter::Firewall;
use super::firewall::rules::Direction;
use super::flows::{FlowMark, FlowTable};
use super::ids::{slot, slot_mut, NetworkId, PortId, RouterId};
use super::mac_table::Location;
use super::network::NetworkState;
use super::port::{Port, PortKind};
use super::router::RouterState;
use super::tx::{TxBatch, TxFrame};
use crate::wire::encap::{self, overlay_guest_mtu};
use crate::wire::{MacAddr, Offload};

/// TCP flags that keep a segment on the switch: SYN, FIN, RST.
pub const TCP_CONTROL_FLAGS: u8 = 0x07;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const IP_TTL: usize = ETH_LEN + 8;
const IP_CHECKSUM: usize = ETH_LEN + 10;
/// What a packet's frame on the uplink has besides its IP packet: the encapsulation and the
/// inner Ethernet header, and the outer Ethernet header.
const UNDERLAY_OVERHEAD: u64 = (ETH_LEN + encap::OVERHEAD) as u64;

/// What identifies a fast flow's frames at its ingress port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FastKey {
    /// The port the frames come in on.
    pub in_port: PortId,
    /// Destination MAC (the peer's, or routed: the gateway's).
    pub dst_mac: MacAddr,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// IP protocol: 6 (TCP), 17 (UDP) or 1 (ICMP echo request or reply).
    pub protocol: u8,
    /// Source port; for ICMP, the echo's identifier.
    pub src_port: u16,
    /// Destination port; for ICMP, the type and code (big-endian, as in the header).
    pub dst_port: u16,
    /// Frames that come in encapsulated on the VXLAN uplink: the tunnel they come through
    /// (the key's other fields are the inner frame's).
    pub tunnel: Option<FastTunnel>,
}

/// The VXLAN tunnel of a flow: the network identifier and both VTEPs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FastTunnel {
    /// The network identifier.
    pub vni: u32,
    /// This host's VTEP address.
    pub local: Ipv4Addr,
    /// The other host's VTEP address.
    pub remote: Ipv4Addr,
}

/// How a flow's frames leave encapsulated on the VXLAN uplink: the tunnel, and the outer UDP
/// source port the switch chose for the flow (its ECMP entropy). The outer IPv4 header
/// copies the inner packet's DSCP, as the switch's does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FastEncap {
    /// The tunnel.
    pub tunnel: FastTunnel,
    /// The outer UDP source port of the switch's encapsulation (an I/O layer that sends
    /// through a socket of its own sends from that socket's port, and so should the kernel).
    pub src_port: u16,
}

/// A routed flow's rewrite: the frame leaves with these MACs and its TTL one less (the IPv4
/// header checksum updated to match).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FastRewrite {
    /// The new source MAC (the egress network's gateway).
    pub src_mac: MacAddr,
    /// The new destination MAC (the neighbour).
    pub dst_mac: MacAddr,
}

/// A flow the kernel may forward: its frames, matched by `key`, go out of `out_port` as they
/// are (or with `rewrite`) when their IP packets (for a large TCP segment, each segment it
/// is cut into) are at most `max_ip_len` bytes and, routed, their TTL is above 1. Anything
/// else stays on the switch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FastFlow {
    /// The frames' match.
    pub key: FastKey,
    /// The port they go out on.
    pub out_port: PortId,
    /// Routed: the rewrite.
    pub rewrite: Option<FastRewrite>,
    /// Out on the VXLAN uplink: the encapsulation. Only large TCP segments and ICMP echoes
    /// of such a flow leave this way (a frame whose checksum its sender left to the device
    /// (`NEEDS_CSUM`) must not reach another host's daemon so; a large segment is cut, and
    /// its checksums filled, wherever it is cut; an ICMP checksum is always complete).
    pub encap: Option<FastEncap>,
    /// The largest IP packet (or segment) the flow may carry: the smaller of both ports' MTUs.
    pub max_ip_len: u16,
    /// The [`Switch::fast_generation`] the offer was decided at.
    pub generation: u64,
    /// For accounting: the ingress network, the router, the path.
    pub(super) network: NetworkId,
    pub(super) out_network: NetworkId,
    pub(super) mark: FlowMark,
}

impl FastFlow {
    /// The router that routes the flow on this switch, if it is routed.
    pub fn router(&self) -> Option<RouterId> {
        self.mark.router
    }
}

/// What the kernel forwarded of a flow since the previous report.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FastTraffic {
    /// Frames (a large TCP segment is one).
    pub frames: u64,
    /// Their bytes, Ethernet frames as received.
    pub bytes: u64,
    /// IP packets: a large TCP segment counts as the segments it is cut into.
    pub packets: u64,
    /// Their IP bytes, as the segments would be.
    pub ip_bytes: u64,
}

/// The fast path's state in the switch.
#[derive(Debug, Default)]
pub(super) struct FastPath {
    /// Ports whose frames the daemon can hand to the kernel, by port number.
    ports: Vec<bool>,
    generation: u64,
    offers: Vec<FastFlow>,
}

/// Offers kept between takes at most: past it, later ones are dropped (they are offered
/// again by the flow's next frames).
const MAX_OFFERS: usize = 1024;

impl FastPath {
    pub(super) fn set_port(&mut self, port: PortId, on: bool) {
        let i = port.0 as usize;
        if self.ports.len() <= i {
            if !on {
                return;
            }
            self.ports.resize(i + 1, false);
        }
        if let Some(slot) = self.ports.get_mut(i) {
            *slot = on;
        }
        self.bump();
    }

    pub(super) fn port(&self, port: PortId) -> bool {
        self.ports.get(port.0 as usize).copied().unwrap_or(false)
    }

    /// Something changed that offers may have been decided on.
    pub(super) fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn push(&mut self, flow: FastFlow) {
        if self.offers.len() < MAX_OFFERS {
            self.offers.push(flow);
        }
    }

    pub(super) fn take(&mut self, into: &mut Vec<FastFlow>) {
        into.append(&mut self.offers);
    }
}

/// A frame just forwarded and what came of it.
pub(super) struct Fate<'a> {
    pub(super) frame: &'a [u8],
    pub(super) offload: Offload,
    /// The batch it was forwarded into, and how many frames the batch held before.
    pub(super) tx: &'a TxBatch,
    pub(super) before: usize,
    /// The network it came in on, and what the routing stage said of it.
    pub(super) network: NetworkId,
    pub(super) mark: FlowMark,
    /// The switch's clock and MAC ageing, for the destination's entry.
    pub(super) now: Duration,
    pub(super) mac_ageing: Duration,
    /// Every firewall check of the frame found an established connection.
    pub(super) established: bool,
}

/// The flow of `key` as an offer, when the frame's fate allows: exactly one copy, to
/// another fast port, the destination MAC known there (not a flood), neither port with a
/// firewall unless the connection is established, the ingress port without a DSCP mark.
/// Between two access ports the frame goes unchanged or routed (see [`difference`]); from an
/// access port out on the VXLAN uplink it goes encapsulated and otherwise unchanged (bridged,
/// its checksum completed at most); in from the uplink to an access port, the frame it carried
/// goes unchanged or routed.
pub(super) fn offer(
    fast: &FastPath,
    ports: &[Option<Port>],
    networks: &[Option<NetworkState>],
    key: FastKey,
    fate: &Fate<'_>,
) -> Option<FastFlow> {
    if fate.tx.len() != fate.before + 1 {
        return None;
    }
    let (out, sent) = fate.tx.get(fate.before)?;
    if out.port == key.in_port || !fast.port(out.port) {
        return None;
    }
    let inp = slot(ports, key.in_port.0)?;
    let outp = slot(ports, out.port.0)?;
    // Through a firewall, only a connection established both ways: its start and end (SYN,
    // FIN, RST) always cross the switch, and every change of it takes the flows back.
    let firewalled = inp.firewall.is_some() || outp.firewall.is_some();
    if (firewalled && !fate.established) || inp.dscp_mark.is_some() {
        return None;
    }
    // What came in as an inner frame: the frame itself, or the one the uplink's carried.
    let (frame, offload, in_mtu) = match (key.tunnel, inp.config.kind) {
        (None, kind) => {
            access(kind)?;
            (fate.frame, fate.offload, inp.config.mtu)
        }
        (Some(_), PortKind::VxlanUplink { .. }) => {
            let inner = encap::decapsulate(fate.frame).ok()?.inner;
            (inner, Offload::NONE, overlay_guest_mtu(inp.config.mtu))
        }
        (Some(_), _) => return None,
    };
    let (rewrite, out_network, encap, location, out_mtu) = match outp.config.kind {
        PortKind::VxlanUplink { local_ip, .. } => {
            // To another host: from an access port, bridged, one whole frame.
            let remote = out.vtep?;
            if key.tunnel.is_some() || fate.mark.router.is_some() || out.tail().is_some() {
                return None;
            }
            let d = encap::decapsulate(sent).ok()?;
            if d.dst_ip != remote || d.src_ip != local_ip || !same_inner(frame, offload, d.inner) {
                return None;
            }
            let tunnel = FastTunnel {
                vni: d.vni.get(),
                local: local_ip,
                remote,
            };
            let encap = FastEncap {
                tunnel,
                src_port: d.src_port,
            };
            let mtu = overlay_guest_mtu(outp.config.mtu);
            (None, fate.network, Some(encap), Location::Vtep(remote), mtu)
        }
        kind => {
            let out_network = access(kind)?;
            let rewrite = difference(frame, offload, out, sent)?;
            let location = Location::Port(out.port);
            (rewrite, out_network, None, location, outp.config.mtu)
        }
    };
    // A known unicast destination there: a flood that reached one port is no flow (storm
    // control and the flood counters are the switch's).
    // Not to a redirected address either: its redirect lapses by the clock, which the
    // kernel's flow would not notice.
    let dst = rewrite.map_or(key.dst_mac, |r| r.dst_mac);
    let macs = &slot(networks, out_network.0)?.macs;
    let known = macs.lookup(&dst, fate.now, fate.mac_ageing);
    if known != Some(location) || macs.redirected(&dst, fate.now).is_some() {
        return None;
    }
    Some(FastFlow {
        key,
        out_port: out.port,
        rewrite,
        encap,
        max_ip_len: in_mtu.min(out_mtu),
        generation: fast.generation(),
        network: fate.network,
        out_network,
        mark: fate.mark,
    })
}

/// The network of an access port.
fn access(kind: PortKind) -> Option<NetworkId> {
    match kind {
        PortKind::Vm { network } | PortKind::Host { network } => Some(network),
        _ => None,
    }
}

/// Whether `inner`, the frame the switch encapsulated, is `frame` as received: the same
/// bytes but for the checksum the sender left to complete (`NEEDS_CSUM`), which the switch
/// filled. Not for a large segment (the switch cuts it).
fn same_inner(frame: &[u8], offload: Offload, inner: &[u8]) -> bool {
    if offload.gso.is_some() || frame.len() != inner.len() {
        return false;
    }
    match offload.csum {
        None => frame == inner,
        Some(c) => {
            let at = usize::from(c.start) + usize::from(c.offset);
            let same = |r: core::ops::Range<usize>| frame.get(r.clone()) == inner.get(r);
            at + 2 <= frame.len() && same(0..at) && same(at + 2..frame.len())
        }
    }
}

/// The switch's state that what the kernel forwarded is counted in.
pub(super) struct Accounts<'s> {
    pub(super) ports: &'s mut [Option<Port>],
    pub(super) networks: &'s mut [Option<NetworkState>],
    pub(super) routers: &'s mut [Option<RouterState>],
    pub(super) flows: &'s mut FlowTable,
    pub(super) firewall: &'s mut Firewall,
}

impl Accounts<'_> {
    /// Counts `traffic` of `flow` as the switch would have counted its frames, and refreshes
    /// the source's MAC entry where it still is (never learning or moving one).
    pub(super) fn count(self, now: Duration, flow: &FastFlow, traffic: FastTraffic) {
        let key = &flow.key;
        let tuple = (key.src, key.dst, key.protocol);
        let ports = (key.src_port, key.dst_port);
        // On the uplink each IP packet is a frame of its own, encapsulated.
        let underlay = (
            traffic.packets,
            traffic.ip_bytes + traffic.packets * UNDERLAY_OVERHEAD,
        );
        let (rx, tx) = (
            if key.tunnel.is_some() {
                underlay
            } else {
                (traffic.frames, traffic.bytes)
            },
            if flow.encap.is_some() {
                underlay
            } else {
                (traffic.frames, traffic.bytes)
            },
        );
        if let Some(p) = slot_mut(self.ports, key.in_port.0) {
            p.counters.rx_packets += rx.0;
            p.counters.rx_bytes += rx.1;
            if p.firewall.is_some() {
                let egress = Direction::Egress;
                self.firewall.touch(key.in_port, egress, tuple, ports, now);
            }
        }
        if let Some(p) = slot_mut(self.ports, flow.out_port.0) {
            p.counters.tx_packets += tx.0;
            p.counters.tx_bytes += tx.1;
            if p.firewall.is_some() {
                let ingress = Direction::Ingress;
                self.firewall
                    .touch(flow.out_port, ingress, tuple, ports, now);
            }
        }
        if let Some(net) = slot_mut(self.networks, flow.network.0) {
            net.counters.traffic.rx_packets += traffic.frames;
            net.counters.traffic.rx_bytes += traffic.bytes;
            let from = match key.tunnel {
                Some(t) => Location::Vtep(t.remote),
                None => Location::Port(key.in_port),
            };
            net.macs.refresh(&key.src_mac, from, now);
        }
        if let Some(net) = slot_mut(self.networks, flow.out_network.0) {
            net.counters.traffic.tx_packets += traffic.frames;
            net.counters.traffic.tx_bytes += traffic.bytes;
        }
        if let Some(router) = flow.mark.router.and_then(|r| slot_mut(self.routers, r.0)) {
            router.counters.routed_packets += traffic.frames;
            router.counters.routed_bytes += traffic.bytes;
        }
        if self.flows.enabled() {
            // Flow accounting keys an echo by its identifier alone.
            let ports = if key.protocol == 1 {
                (key.src_port, key.src_port)
            } else {
                (key.src_port, key.dst_port)
            };
            self.flows.count_tuple(
                now,
                flow.network,
                (key.src, key.dst, key.protocol),
                ports,
                key.in_port,
                flow.mark,
                (traffic.packets, traffic.ip_bytes),
            );
        }
    }
}

/// The key of a frame the fast path could carry: unicast Ethernet, IPv4 without options or
/// fragments, TCP without SYN, FIN or RST, UDP, or an ICMP echo; `None` for anything else.
/// From the VXLAN uplink (`uplink`), the key of the frame it carries, with its tunnel.
pub(super) fn candidate(in_port: PortId, frame: &[u8], uplink: bool) -> Option<FastKey> {
    if uplink {
        let d = encap::decapsulate(frame).ok()?;
        let key = candidate(in_port, d.inner, false)?;
        let tunnel = FastTunnel {
            vni: d.vni.get(),
            local: d.dst_ip,
            remote: d.src_ip,
        };
        return Some(FastKey {
            tunnel: Some(tunnel),
            ..key
        });
    }
    let eth: [u8; ETH_LEN] = frame.get(..ETH_LEN)?.try_into().ok()?;
    if eth[12..14] != [0x08, 0x00] || eth[0] & 1 != 0 {
        return None;
    }
    let ip: [u8; IP_LEN] = frame.get(ETH_LEN..ETH_LEN + IP_LEN)?.try_into().ok()?;
    // Version 4, header length 5 words; neither MF nor an offset.
    if ip[0] != 0x45 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let protocol = ip[9];
    let l4 = frame.get(ETH_LEN + IP_LEN..)?;
    // The key's ports: TCP's and UDP's; an ICMP echo's identifier and its type and code.
    let (src_port, dst_port) = match protocol {
        6 => {
            let flags = *l4.get(13)?;
            if flags & TCP_CONTROL_FLAGS != 0 {
                return None;
            }
            (be16(l4, 0)?, be16(l4, 2)?)
        }
        17 if l4.len() >= 8 => (be16(l4, 0)?, be16(l4, 2)?),
        1 if l4.len() >= 8 && matches!(l4.get(..2)?, [ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY, 0]) => {
            (be16(l4, 4)?, be16(l4, 0)?)
        }
        _ => return None,
    };
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, ..] = eth;
    Some(FastKey {
        in_port,
        dst_mac: MacAddr([d0, d1, d2, d3, d4, d5]),
        src_mac: MacAddr([s0, s1, s2, s3, s4, s5]),
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        protocol,
        src_port,
        dst_port,
        tunnel: None,
    })
}

/// The big-endian 16 bits at `at`.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// ICMP echo request and reply types.
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;

/// How the frame `out` (sent as `sent`) differs from the received `frame`: `Some(None)` not
/// at all, `Some(Some(rewrite))` only by its MACs, one TTL less and the IPv4 checksum (routed),
/// `None` in any other way (a checksum filled, a frame cut, a NAT, a tag, a DSCP mark, …).
pub(super) fn difference(
    frame: &[u8],
    offload: Offload,
    out: &TxFrame,
    sent: &[u8],
) -> Option<Option<FastRewrite>> {
    if out.tail().is_some() || out.vtep.is_some() || out.offload != offload {
        return None;
    }
    if sent.len() != frame.len() || sent.len() < ETH_LEN + IP_LEN {
        return None;
    }
    if sent == frame {
        return Some(None);
    }
    let ttl_in = *frame.get(IP_TTL)?;
    let same = |r: core::ops::Range<usize>| sent.get(r.clone()) == frame.get(r);
    let routed = ttl_in > 1
        && *sent.get(IP_TTL)? == ttl_in - 1
        && same(12..IP_TTL)
        && same(IP_TTL + 1..IP_CHECKSUM)
        && same(IP_CHECKSUM + 2..frame.len());
    if !routed {
        return None;
    }
    let mac = |r: core::ops::Range<usize>| -> Option<MacAddr> {
        let b: [u8; 6] = sent.get(r)?.try_into().ok()?;
        Some(MacAddr(b))
    };
    Some(Some(FastRewrite {
        src_mac: mac(6..12)?,
        dst_mac: mac(0..6)?,
    }))
}

#[cfg(test)]
mod tests;
