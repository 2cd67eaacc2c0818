//! A classified frame ([`L2`]): its untagged Ethernet header and its payload, borrowed from the
//! received bytes, with what every copy of it carries (offload metadata, the DSCP mark, the TTL
//! decrement of a routed packet), and how a copy is written: tagged or not, its partial
//! checksum completed, cut into segments, marked, its TTL decremented.

use crate::wire::encap::{self, entropy_port};
use crate::wire::gso::{self, Segmenter};
use crate::wire::{ethernet, ipv4};
use crate::wire::{EtherType, MacAddr, Offload, VlanTci};

/// A frame's L2 header and payload once classified: untagged, in its network.
#[derive(Clone, Copy)]
pub(super) struct L2<'a> {
    pub(super) dst: MacAddr,
    pub(super) src: MacAddr,
    pub(super) ethertype: EtherType,
    pub(super) payload: &'a [u8],
    /// Offload metadata, offsets from the start of the untagged frame; checked against the
    /// frame at classification.
    pub(super) offload: Offload,
    /// The DSCP every copy's IPv4 header gets (the ingress port's mark; IPv4 frames only).
    pub(super) mark: Option<u8>,
    /// A routed IPv4 packet: every copy's header has its TTL decremented (the received bytes
    /// stay as they are; each copy is rewritten as it is written, as for the mark).
    pub(super) routed: bool,
}

impl<'a> L2<'a> {
    /// Length as an untagged Ethernet frame.
    pub(super) fn len(&self) -> usize {
        ethernet::HEADER_LEN + self.payload.len()
    }

    /// Appends the Ethernet header, tagged with `tag` if given.
    fn write_header(&self, out: &mut Vec<u8>, tag: Option<VlanTci>) {
        out.extend_from_slice(&self.dst.0);
        out.extend_from_slice(&self.src.0);
        if let Some(tci) = tag {
            out.extend_from_slice(&EtherType::VLAN.0.to_be_bytes());
            out.extend_from_slice(&tci.to_u16().to_be_bytes());
        }
        out.extend_from_slice(&self.ethertype.0.to_be_bytes());
    }

    /// Appends the frame, tagged with `tag` if given.
    pub(super) fn write(&self, out: &mut Vec<u8>, tag: Option<VlanTci>) {
        self.write_head(out, tag, self.payload);
    }

    /// Appends the Ethernet header (tagged with `tag` if given) and `l3`, the start of the
    /// payload, rewritten as every copy is (mark, TTL).
    pub(super) fn write_head(&self, out: &mut Vec<u8>, tag: Option<VlanTci>, l3: &[u8]) {
        self.write_header(out, tag);
        let at = out.len();
        out.extend_from_slice(l3);
        self.rewrite_at(out, at);
    }

    /// The payload cut after its TCP header when the frame is TCP/IPv4 with a 20-byte IPv4
    /// header and some TCP payload (a candidate for receive coalescing): the headers, then the
    /// TCP payload. `None` for any other frame.
    pub(super) fn split_tcp(&self) -> Option<(&'a [u8], &'a [u8])> {
        const IPV4_HEADER_LEN: usize = 20;
        let p = self.payload;
        if self.ethertype != EtherType::IPV4 || p.first() != Some(&0x45) || p.get(9) != Some(&6) {
            return None;
        }
        let tcp_header_len = usize::from(p.get(IPV4_HEADER_LEN + 12)? >> 4) * 4;
        let split = IPV4_HEADER_LEN + tcp_header_len;
        if tcp_header_len < 20 || split >= p.len() {
            return None;
        }
        p.split_at_checked(split)
    }

    /// Appends segment `index` of a GSO frame with its Ethernet header (tagged with `tag` if
    /// given); false when the segmenter refuses.
    pub(super) fn write_segment(
        &self,
        segmenter: &Segmenter<'_>,
        index: usize,
        out: &mut Vec<u8>,
        tag: Option<VlanTci>,
    ) -> bool {
        self.write_header(out, tag);
        let l3 = out.len();
        let written = segmenter.write(index, out);
        self.rewrite_at(out, l3);
        written
    }

    /// Appends the Ethernet header and the IP and TCP headers of segment `index` of a GSO frame,
    /// as [`L2::write_segment`], and returns the segment's payload (a slice of the frame) that
    /// must follow them; `None` when the segmenter refuses.
    pub(super) fn write_segment_headers(
        &self,
        segmenter: &Segmenter<'a>,
        index: usize,
        out: &mut Vec<u8>,
    ) -> Option<&'a [u8]> {
        self.write_header(out, None);
        let l3 = out.len();
        let chunk = segmenter.write_headers(index, out);
        self.rewrite_at(out, l3);
        chunk
    }

    /// Sets the DSCP mark, if the frame has one, and decrements the TTL of a routed packet, in
    /// the IPv4 header written at `out[l3..]` (the checksum updated incrementally).
    #[inline]
    fn rewrite_at(&self, out: &mut [u8], l3: usize) {
        if self.mark.is_none() && !self.routed {
            return;
        }
        if let Some(ip) = out.get_mut(l3..) {
            let mut packet = ipv4::Packet::new_unchecked(ip);
            if let Some(dscp) = self.mark {
                packet.set_dscp(dscp);
            }
            if self.routed {
                packet.decrement_ttl();
            }
        }
    }

    /// The DSCP an encapsulating outer header copies: the mark, else the inner IPv4 packet's
    /// (0 for other frames).
    pub(super) fn dscp(&self) -> u8 {
        self.mark
            .unwrap_or_else(|| encap::inner_dscp(self.ethertype, self.payload))
    }

    /// Appends the frame as [`L2::write`] and completes its partial checksum, if it has one:
    /// a complete frame for a port without offloads (or none when the offsets do not fit).
    pub(super) fn write_complete(&self, out: &mut Vec<u8>, tag: Option<VlanTci>) -> bool {
        self.write(out, tag);
        let Some(csum) = self.offload.csum else {
            return true;
        };
        let Some(csum_start) = usize::from(csum.start).checked_sub(ethernet::HEADER_LEN) else {
            return false;
        };
        let l3_start = out.len() - self.payload.len();
        let l3_len = gso::ip_packet_len(self.ethertype, self.payload);
        out.get_mut(l3_start..l3_start + l3_len).is_some_and(|l3| {
            gso::complete_checksum(l3, csum_start, usize::from(csum.offset)).is_ok()
        })
    }

    /// The segmenter of a GSO frame (checked at classification).
    pub(super) fn segmenter(&self) -> Option<Result<Segmenter<'a>, crate::wire::Error>> {
        let gso = self.offload.gso?;
        Some(Segmenter::new(self.ethertype, self.payload, &gso))
    }

    /// The largest IP packet this frame puts on a port without offloads: what must fit its
    /// MTU. `None` for GSO metadata that does not match the frame.
    pub(super) fn wire_payload_len(&self) -> Option<usize> {
        match self.segmenter() {
            None => Some(self.payload.len()),
            Some(Ok(s)) => Some(s.max_segment_len()),
            Some(Err(_)) => None,
        }
    }

    pub(super) fn entropy(&self) -> u16 {
        let mut header = [0u8; ethernet::HEADER_LEN];
        let (addrs, ethertype) = header.split_at_mut(12);
        let (dst, src) = addrs.split_at_mut(6);
        dst.copy_from_slice(&self.dst.0);
        src.copy_from_slice(&self.src.0);
        ethertype.copy_from_slice(&self.ethertype.0.to_be_bytes());
        entropy_port(&header)
    }
}
