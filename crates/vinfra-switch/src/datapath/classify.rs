//! Classification of a received frame by the kind of its port: an access port's untagged frame
//! in its network, the trunk's tagged one by its VID, the uplink's VXLAN packet by its VNI
//! (from an underlay peer); what the switch relies on is checked here (the L2 header, a unicast
//! source, the MTU, the ARP and IPv4 headers, offload metadata against the frame).

use core::net::Ipv4Addr;

use foldhash::{HashMap, HashSet};

use super::counters::DropReason;
use super::frame::L2;
use super::ids::{NetworkId, RouterId};
use super::mac_table::Location;
use crate::wire::encap;
use crate::wire::gso;
use crate::wire::ipv4::{self, protocol, Ipv4Repr};
use crate::wire::{arp, ethernet, udp};
use crate::wire::{ArpRepr, EtherType, EthernetRepr, Offload, Vni};

/// A classified received frame.
pub(super) struct Ingress<'a> {
    pub(super) network: NetworkId,
    pub(super) from: Location,
    pub(super) l2: L2<'a>,
    /// The ingress port's limit of learned entries, if it has one.
    pub(super) mac_limit: Option<usize>,
    /// From a VM or host port of this switch (not the trunk or the uplink).
    pub(super) access: bool,
}

type Refusal = (DropReason, Option<NetworkId>);

/// A classified VXLAN packet: a frame of a network, or a router's transit frame (a packet its
/// other hosts send to its edge).
pub(super) enum Underlay<'a> {
    /// A frame of a network.
    Network(Ingress<'a>),
    /// A frame on a router's transit VNI.
    Transit {
        /// The router.
        router: RouterId,
        /// The inner frame.
        l2: L2<'a>,
    },
}

/// Checks what the switch relies on or will act on: a unicast source, the MTU, and for ARP and
/// IPv4 the header (IPv4 checksum included; the UDP header of unfragmented UDP); the offload
/// metadata against the frame (a GSO frame must be the TCP segment it says, and its segments
/// must fit the MTU; a partial checksum must lie in the IP packet).
fn check_l2<'a>(
    eth: &EthernetRepr,
    payload: &'a [u8],
    mtu: usize,
    offload: Offload,
) -> Result<L2<'a>, DropReason> {
    let l2 = L2 {
        dst: eth.dst,
        src: eth.src,
        ethertype: eth.ethertype,
        payload,
        offload,
        mark: None,
        routed: false,
    };
    let wire_len = l2.wire_payload_len().ok_or(DropReason::BadOffload)?;
    if wire_len > mtu {
        return Err(DropReason::Oversized);
    }
    if let Some(csum) = offload.csum {
        let start = usize::from(csum.start)
            .checked_sub(ethernet::HEADER_LEN)
            .ok_or(DropReason::BadOffload)?;
        gso::check_partial_csum(
            gso::ip_packet_len(eth.ethertype, payload),
            start,
            usize::from(csum.offset),
        )
        .map_err(|_| DropReason::BadOffload)?;
    }
    if eth.src.is_multicast() {
        return Err(DropReason::BadSourceMac);
    }
    match eth.ethertype {
        EtherType::IPV4 => {
            let packet = ipv4::Packet::new_checked(payload)?;
            let repr = Ipv4Repr::parse(&packet)?;
            if repr.protocol == protocol::UDP && !packet.is_fragment() {
                udp::Packet::new_checked(packet.payload())?;
            }
        }
        EtherType::ARP => {
            ArpRepr::parse(&arp::Packet::new_checked(payload)?)?;
        }
        _ => {}
    }
    Ok(l2)
}

pub(super) fn classify_access(
    frame: &[u8],
    mtu: usize,
    offload: Offload,
) -> Result<L2<'_>, DropReason> {
    let (eth, offset) = EthernetRepr::parse(frame)?;
    if eth.vlan.is_some() {
        return Err(DropReason::UnexpectedVlanTag);
    }
    let payload = frame.get(offset..).unwrap_or(&[]);
    check_l2(&eth, payload, mtu, offload)
}

pub(super) fn classify_trunk<'a>(
    frame: &'a [u8],
    mtu: usize,
    vlans: &[Option<NetworkId>],
) -> Result<(NetworkId, L2<'a>), Refusal> {
    let (eth, offset) = EthernetRepr::parse(frame).map_err(|e| (e.into(), None))?;
    let Some(tci) = eth.vlan else {
        return Err((DropReason::UntaggedOnTrunk, None));
    };
    let network = vlans
        .get(usize::from(tci.vid))
        .copied()
        .flatten()
        .ok_or((DropReason::UnknownVlan, None))?;
    let payload = frame.get(offset..).unwrap_or(&[]);
    let l2 = check_l2(&eth, payload, mtu, Offload::NONE).map_err(|r| (r, Some(network)))?;
    Ok((network, l2))
}

pub(super) fn classify_underlay<'a>(
    frame: &'a [u8],
    mtu: usize,
    local_ip: Ipv4Addr,
    peers: Option<&HashSet<Ipv4Addr>>,
    vnis: &HashMap<Vni, NetworkId>,
    transit: &HashMap<Vni, RouterId>,
) -> Result<Underlay<'a>, Refusal> {
    if frame.len().saturating_sub(ethernet::HEADER_LEN) > mtu {
        return Err((DropReason::Oversized, None));
    }
    let decap = encap::decapsulate(frame).map_err(|e| (e.into(), None))?;
    if decap.dst_ip != local_ip {
        return Err((DropReason::WrongVtep, None));
    }
    if peers.is_some_and(|p| !p.contains(&decap.src_ip)) {
        return Err((DropReason::UnknownVtep, None));
    }
    let network = match vnis.get(&decap.vni) {
        Some(&n) => n,
        None => {
            let router = *transit
                .get(&decap.vni)
                .ok_or((DropReason::UnknownVni, None))?;
            let (eth, offset) = EthernetRepr::parse(decap.inner).map_err(|e| match e {
                crate::wire::Error::Truncated(_) => (DropReason::TruncatedHeader, None),
                other => (other.into(), None),
            })?;
            if eth.vlan.is_some() {
                return Err((DropReason::UnexpectedVlanTag, None));
            }
            let payload = decap.inner.get(offset..).unwrap_or(&[]);
            let l2 = check_l2(&eth, payload, usize::MAX, Offload::NONE).map_err(|r| (r, None))?;
            return Ok(Underlay::Transit { router, l2 });
        }
    };
    let refuse = |r: DropReason| (r, Some(network));
    let (eth, offset) = EthernetRepr::parse(decap.inner).map_err(|e| match e {
        crate::wire::Error::Truncated(_) => refuse(DropReason::TruncatedHeader),
        other => refuse(other.into()),
    })?;
    if eth.vlan.is_some() {
        return Err(refuse(DropReason::UnexpectedVlanTag));
    }
    let payload = decap.inner.get(offset..).unwrap_or(&[]);
    // The underlay MTU already bounds the inner frame.
    let l2 = check_l2(&eth, payload, usize::MAX, Offload::NONE).map_err(refuse)?;
    Ok(Underlay::Network(Ingress {
        network,
        from: Location::Vtep(decap.src_ip),
        l2,
        mac_limit: None,
        access: false,
    }))
}
