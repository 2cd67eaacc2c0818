//! Sending the copies of one frame: per egress port the MTU check, the firewall of the port a
//! copy goes to, the copy passed whole with its offload metadata or cut into segments (its
//! checksum completed), tagged for the trunk or encapsulated for a remote VTEP, and counted.

use core::net::Ipv4Addr;
use core::ops::Range;
use core::time::Duration;

use foldhash::{HashMap, HashSet};

use super::counters::{DropReason, SegmentCounters};
use super::filter::{Firewall, Parsed};
use super::firewall::conntrack::PacketInfo;
use super::frame::L2;
use super::ids::{slot_mut, PortId, Segment};
use super::port::{Port, PortKind};
use super::tx::TxBatch;
use crate::wire::encap::{self, Encap};
use crate::wire::{ethernet, vlan};
use crate::wire::{EtherType, MacAddr, Offload, VlanTci};

/// Bytes an encapsulated frame's outer IP packet adds to the inner Ethernet frame.
const OUTER_IP_OVERHEAD: usize = encap::OVERHEAD - ethernet::HEADER_LEN;

/// What forwarding needs from the switch besides the network.
pub(super) struct Egress<'s> {
    pub(super) ports: &'s mut [Option<Port>],
    pub(super) vtep_macs: &'s HashMap<Ipv4Addr, MacAddr>,
    pub(super) uplink: Option<PortId>,
    pub(super) trunk: Option<PortId>,
    pub(super) firewall: &'s mut Firewall,
    pub(super) now: Duration,
    /// The MACs of every gateway of the switch.
    pub(super) gateway_macs: &'s HashSet<MacAddr>,
}

impl Egress<'_> {
    /// The same, borrowed again for a shorter time (to build several senders in turn).
    pub(super) fn reborrow(&mut self) -> Egress<'_> {
        Egress {
            ports: &mut *self.ports,
            vtep_macs: self.vtep_macs,
            uplink: self.uplink,
            trunk: self.trunk,
            firewall: &mut *self.firewall,
            now: self.now,
            gateway_macs: self.gateway_macs,
        }
    }
}

/// Sends copies of one frame in one network.
pub(super) struct Sender<'s, 'f> {
    pub(super) egress: Egress<'s>,
    pub(super) counters: &'s mut SegmentCounters,
    segment: Segment,
    tx: &'s mut TxBatch,
    pub(super) l2: L2<'f>,
    /// Bytes of the untagged copy as received (offload metadata kept), once written.
    untagged: Option<Range<usize>>,
    /// Positions in `tx` of the untagged copy completed for ports without offloads (its
    /// segments, or the frame with its checksum filled), once written.
    completed: Option<Range<usize>>,
    /// The frame written by the switch itself (an ARP or DHCP reply): not filtered.
    generated: bool,
    /// The frame's IPv4 packet as connection tracking reads it, once a firewalled port needed
    /// it.
    parsed: Option<Parsed>,
}

impl<'s, 'f> Sender<'s, 'f> {
    /// A sender of `l2` in a network of `segment`; `generated` for a frame the switch wrote
    /// itself (not filtered).
    pub(super) fn new(
        egress: Egress<'s>,
        counters: &'s mut SegmentCounters,
        segment: Segment,
        tx: &'s mut TxBatch,
        l2: L2<'f>,
        generated: bool,
    ) -> Sender<'s, 'f> {
        Sender {
            egress,
            counters,
            segment,
            tx,
            l2,
            untagged: None,
            completed: None,
            generated,
            parsed: None,
        }
    }

    /// The network's segment.
    pub(super) fn segment(&self) -> Segment {
        self.segment
    }

    /// Counts a drop of the frame on a port and the network.
    pub(super) fn drop_at(&mut self, port: PortId, reason: DropReason) {
        if let Some(p) = slot_mut(self.egress.ports, port.0) {
            p.counters.drops.add(reason);
        }
        self.counters.traffic.drops.add(reason);
    }

    /// Sends the frame out of an access port or the trunk.
    pub(super) fn send_port(&mut self, id: PortId) {
        let Some(port) = slot_mut(self.egress.ports, id.0) else {
            return;
        };
        // A sub-interface's frames go tagged through its vNIC's port.
        let (tag, out) = match (port.config.kind, self.segment) {
            (PortKind::Vm { .. } | PortKind::Host { .. }, _) => (None, id),
            (PortKind::VmVlan { parent, vid, .. }, _) => (Some(VlanTci::for_vid(vid)), parent),
            (PortKind::VlanTrunk, Segment::Vlan { vid }) => (Some(VlanTci::for_vid(vid)), id),
            // Overlay frames never go to the trunk, nor anything to the uplink as a port.
            (PortKind::VlanTrunk, Segment::Overlay { .. }) | (PortKind::VxlanUplink { .. }, _) => {
                return
            }
        };
        let l2 = self.l2;
        let Some(wire_len) = l2.wire_payload_len() else {
            port.counters.drops.add(DropReason::BadOffload);
            self.counters.traffic.drops.add(DropReason::BadOffload);
            return;
        };
        if wire_len > usize::from(port.config.mtu) {
            port.counters.drops.add(DropReason::Oversized);
            self.counters.traffic.drops.add(DropReason::Oversized);
            return;
        }
        // The firewall of the port the copy goes to (each copy of a flooded frame is checked
        // against its own port's).
        if let Some(pf) = port.firewall.as_deref_mut() {
            if !self.generated && l2.ethertype == EtherType::IPV4 {
                let parsed = self
                    .parsed
                    .get_or_insert_with(|| PacketInfo::parse(l2.payload));
                let checked =
                    self.egress
                        .firewall
                        .ingress(id, pf, l2.payload, parsed, self.egress.now);
                if let Err(reason) = checked {
                    port.counters.drops.add(reason);
                    self.counters.traffic.drops.add(reason);
                    return;
                }
            }
        }
        let tag_len = if tag.is_some() { vlan::HEADER_LEN } else { 0 };
        if port.offloads || l2.offload.is_complete() {
            // As received: offload metadata kept for a port that takes it.
            let offload = if port.offloads {
                l2.offload
            } else {
                Offload::NONE
            };
            match (tag, &self.untagged) {
                (None, Some(range)) => self.tx.push_again(out, range.clone(), offload),
                (None, None) if port.offloads && l2.offload == Offload::NONE => {
                    // Segments of one TCP flow in a row join into one large segment.
                    self.untagged = self.tx.push_coalescing(out, &l2);
                }
                (None, None) => {
                    let range = self.tx.push_with(out, None, offload, |out| {
                        l2.write(out, None);
                        true
                    });
                    self.untagged = range;
                }
                (Some(tci), _) => {
                    self.tx.push_with(out, None, Offload::NONE, |out| {
                        l2.write(out, Some(tci));
                        true
                    });
                }
            }
            let len = l2.len() + tag_len;
            port.counters.tx(len);
            self.counters.traffic.tx(len);
            return;
        }
        // Completed in software: cut into segments, or the checksum filled.
        if tag.is_none() {
            if let Some(frames) = self.completed.clone() {
                let first = self.tx.len();
                self.tx.repeat(out, frames);
                for f in first..self.tx.len() {
                    let len = self.tx.frame_len(f);
                    port.counters.tx(len);
                    self.counters.traffic.tx(len);
                }
                return;
            }
        }
        let first = self.tx.len();
        match l2.segmenter() {
            Some(Ok(segmenter)) => {
                for i in 0..segmenter.count() {
                    let pushed = self.tx.push_with(out, None, Offload::NONE, |out| {
                        l2.write_segment(&segmenter, i, out, tag)
                    });
                    if let Some(range) = pushed {
                        port.counters.tx(range.len());
                        self.counters.traffic.tx(range.len());
                    }
                }
            }
            Some(Err(_)) => {}
            None => {
                let pushed = self
                    .tx
                    .push_with(out, None, Offload::NONE, |out| l2.write_complete(out, tag));
                if let Some(range) = pushed {
                    port.counters.tx(range.len());
                    self.counters.traffic.tx(range.len());
                }
            }
        }
        if tag.is_none() {
            self.completed = Some(first..self.tx.len());
        }
    }

    /// Sends the frame encapsulated to a remote VTEP: cut into segments first if it is a GSO
    /// frame, its checksum completed if it has a partial one.
    pub(super) fn send_vtep(&mut self, vtep: Ipv4Addr) {
        let Segment::Overlay { vni } = self.segment else {
            return;
        };
        let Some(uplink_id) = self.egress.uplink else {
            self.counters.traffic.drops.add(DropReason::NoUplink);
            return;
        };
        let Some(uplink) = slot_mut(self.egress.ports, uplink_id.0) else {
            return;
        };
        let PortKind::VxlanUplink {
            local_ip,
            local_mac,
            gateway_mac,
        } = uplink.config.kind
        else {
            return;
        };
        if vtep == local_ip {
            return;
        }
        let Some(dst_mac) = self.egress.vtep_macs.get(&vtep).copied().or(gateway_mac) else {
            self.drop_at(uplink_id, DropReason::NoVtepMac);
            return;
        };
        let l2 = self.l2;
        let Some(wire_len) = l2.wire_payload_len() else {
            self.drop_at(uplink_id, DropReason::BadOffload);
            return;
        };
        if ethernet::HEADER_LEN + wire_len + OUTER_IP_OVERHEAD > usize::from(uplink.config.mtu) {
            self.drop_at(uplink_id, DropReason::Oversized);
            return;
        }
        let header = Encap {
            src_mac: local_mac,
            dst_mac,
            src_ip: local_ip,
            dst_ip: vtep,
            src_port: l2.entropy(),
            vni,
            dscp: l2.dscp(),
        };
        let encapsulated = |out: &mut Vec<u8>, inner_len: usize| {
            let start = out.len();
            out.resize(start + encap::OVERHEAD, 0);
            out.get_mut(start..)
                .is_some_and(|h| header.emit_headers(h, inner_len).is_ok())
        };
        let sent = |uplink: &mut Port, counters: &mut SegmentCounters, inner_len: usize| {
            uplink.counters.tx(inner_len + encap::OVERHEAD);
            counters.traffic.tx(inner_len);
        };
        match l2.segmenter() {
            Some(Ok(segmenter)) => {
                // Each segment's headers, followed by its payload left in the received frame
                // when it is there (the sender gathers the two), else copied.
                for i in 0..segmenter.count() {
                    let inner_len = ethernet::HEADER_LEN + segmenter.segment_len(i);
                    let head = |out: &mut Vec<u8>| {
                        encapsulated(out, inner_len)
                            && l2.write_segment_headers(&segmenter, i, out).is_some()
                    };
                    let payload = segmenter.segment_payload(i);
                    let pushed = self.tx.push_with_tail(uplink_id, Some(vtep), head, payload);
                    if pushed.is_some() {
                        sent(uplink, self.counters, inner_len);
                    }
                }
            }
            Some(Err(_)) => {}
            None => {
                let inner_len = l2.len();
                let pushed = self
                    .tx
                    .push_with(uplink_id, Some(vtep), Offload::NONE, |out| {
                        encapsulated(out, inner_len) && l2.write_complete(out, None)
                    });
                if pushed.is_some() {
                    sent(uplink, self.counters, inner_len);
                }
            }
        }
    }
}
