//! The switch: classification, learning, forwarding and flooding of one batch at a time.

use core::net::Ipv4Addr;
use core::ops::Range;
use core::time::Duration;

use foldhash::{HashMap, HashSet};

use super::config::{ConfigCommand, ConfigError, DhcpConfig, SwitchSettings};
use super::counters::{Counters, DropReason, Drops, SegmentCounters, Snapshot};
use super::filter::{Firewall, FirewallDrop, FirewallLogCounters, Parsed, PortFirewall};
use super::firewall::conntrack::{ConnEntry, ConntrackCounters, PacketInfo};
use super::firewall::rules::FirewallRule;
use super::ids::{NetworkId, PortId, Segment};
use super::mac_table::{Learned, Location, MacEntry};
use super::network::NetworkState;
use super::policy::{self, PortPolicy, StormBucket};
use super::port::{PortConfig, PortKind};
use super::tx::TxBatch;
use crate::wire::dhcp::{self, DhcpMessageType, DhcpOp, DhcpRepr};
use crate::wire::encap::{self, entropy_port, Encap};
use crate::wire::gso::{self, Segmenter};
use crate::wire::ipv4::{self, protocol, Ipv4Repr};
use crate::wire::{arp, ethernet, udp, vlan};
use crate::wire::{
    ArpOperation, ArpRepr, EtherType, EthernetRepr, MacAddr, Offload, UdpRepr, VlanTci, Vni,
};

/// IPv4 minimum MTU.
pub(super) const MIN_MTU: u16 = 68;
/// Bytes an encapsulated frame's outer IP packet adds to the inner Ethernet frame.
const OUTER_IP_OVERHEAD: usize = encap::OVERHEAD - ethernet::HEADER_LEN;

#[derive(Debug)]
pub(super) struct Port {
    pub(super) config: PortConfig,
    pub(super) counters: Counters,
    /// Takes frames with offload metadata (see [`Switch::set_port_offloads`]).
    pub(super) offloads: bool,
    /// Port security, MAC limit, storm control (access ports only).
    pub(super) policy: PortPolicy,
    /// Storm control's state, when the policy has it.
    pub(super) storm: Option<StormBucket>,
    /// The port's firewall (access ports only); `None`: unfiltered.
    pub(super) firewall: Option<Box<PortFirewall>>,
}

/// A frame's L2 header and payload once classified: untagged, in its network.
#[derive(Clone, Copy)]
struct L2<'a> {
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
    payload: &'a [u8],
    /// Offload metadata, offsets from the start of the untagged frame; checked against the
    /// frame at classification.
    offload: Offload,
}

impl<'a> L2<'a> {
    /// Length as an untagged Ethernet frame.
    fn len(&self) -> usize {
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
    fn write(&self, out: &mut Vec<u8>, tag: Option<VlanTci>) {
        self.write_header(out, tag);
        out.extend_from_slice(self.payload);
    }

    /// Appends the frame as [`L2::write`] and completes its partial checksum, if it has one:
    /// a complete frame for a port without offloads (or none when the offsets do not fit).
    fn write_complete(&self, out: &mut Vec<u8>, tag: Option<VlanTci>) -> bool {
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
    fn segmenter(&self) -> Option<Result<Segmenter<'a>, crate::wire::Error>> {
        let gso = self.offload.gso?;
        Some(Segmenter::new(self.ethertype, self.payload, &gso))
    }

    /// The largest IP packet this frame puts on a port without offloads: what must fit its
    /// MTU. `None` for GSO metadata that does not match the frame.
    fn wire_payload_len(&self) -> Option<usize> {
        match self.segmenter() {
            None => Some(self.payload.len()),
            Some(Ok(s)) => Some(s.max_segment_len()),
            Some(Err(_)) => None,
        }
    }

    fn entropy(&self) -> u16 {
        let mut header = [0u8; ethernet::HEADER_LEN];
        let (addrs, ethertype) = header.split_at_mut(12);
        let (dst, src) = addrs.split_at_mut(6);
        dst.copy_from_slice(&self.dst.0);
        src.copy_from_slice(&self.src.0);
        ethertype.copy_from_slice(&self.ethertype.0.to_be_bytes());
        entropy_port(&header)
    }
}

/// A classified received frame.
struct Ingress<'a> {
    network: NetworkId,
    from: Location,
    l2: L2<'a>,
    /// The ingress port's limit of learned entries, if it has one.
    mac_limit: Option<usize>,
}

type Refusal = (DropReason, Option<NetworkId>);

/// The L2 switch of one host: ports, networks and their MAC tables, counters.
///
/// Owned by one datapath thread. [`Switch::process`] forwards a batch of received frames;
/// [`Switch::apply`] changes the configuration between batches; [`Switch::expire`] removes aged
/// MAC entries; [`Switch::snapshot`] copies the counters.
#[derive(Debug)]
pub struct Switch {
    pub(super) settings: SwitchSettings,
    pub(super) ports: Vec<Option<Port>>,
    pub(super) networks: Vec<Option<NetworkState>>,
    pub(super) vnis: HashMap<Vni, NetworkId>,
    /// VID (0..4096) to network.
    pub(super) vlans: Vec<Option<NetworkId>>,
    pub(super) uplink: Option<PortId>,
    pub(super) trunk: Option<PortId>,
    pub(super) vtep_macs: HashMap<Ipv4Addr, MacAddr>,
    /// The underlay sources the uplink accepts; `None`: any.
    pub(super) underlay_peers: Option<HashSet<Ipv4Addr>>,
    pub(super) switch_drops: Drops,
    /// Connection tracking of the firewalled ports, and the firewall's drop log.
    pub(super) firewall: Firewall,
    /// The latest time given to [`Switch::process`] or [`Switch::expire`].
    pub(super) last_now: Duration,
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new(SwitchSettings::default())
    }
}

pub(super) fn slot<T>(table: &[Option<T>], id: u32) -> Option<&T> {
    table.get(usize::try_from(id).ok()?)?.as_ref()
}

pub(super) fn slot_mut<T>(table: &mut [Option<T>], id: u32) -> Option<&mut T> {
    table.get_mut(usize::try_from(id).ok()?)?.as_mut()
}

pub(super) fn slot_insert<T>(table: &mut Vec<Option<T>>, id: u32, value: T) {
    let Ok(index) = usize::try_from(id) else {
        return;
    };
    if table.len() <= index {
        table.resize_with(index + 1, || None);
    }
    if let Some(s) = table.get_mut(index) {
        *s = Some(value);
    }
}

impl Switch {
    /// An empty switch.
    pub fn new(settings: SwitchSettings) -> Switch {
        Switch {
            settings,
            ports: Vec::new(),
            networks: Vec::new(),
            vnis: HashMap::default(),
            vlans: vec![None; 4096],
            uplink: None,
            trunk: None,
            vtep_macs: HashMap::default(),
            underlay_peers: None,
            switch_drops: Drops::default(),
            firewall: Firewall::new(
                settings.conntrack_max_entries,
                settings.conntrack_zone_max_entries,
            ),
            last_now: Duration::ZERO,
        }
    }

    /// A switch with the given configuration applied in order.
    pub fn with_commands(
        settings: SwitchSettings,
        commands: impl IntoIterator<Item = ConfigCommand>,
    ) -> Result<Switch, ConfigError> {
        let mut switch = Switch::new(settings);
        for command in commands {
            switch.apply(command)?;
        }
        Ok(switch)
    }

    /// Forwards a batch of received frames, appending the frames to send to `tx` (which is not
    /// cleared). `now` is the time on any monotonic clock; it drives MAC ageing.
    pub fn process<'a>(
        &mut self,
        now: Duration,
        rx: impl IntoIterator<Item = (PortId, &'a [u8])>,
        tx: &mut TxBatch,
    ) {
        for (port, frame) in rx {
            self.process_frame(now, port, frame, tx);
        }
    }

    /// Forwards a batch of received frames with their offload metadata (from ports that take
    /// it: see [`Switch::set_port_offloads`]), as [`Switch::process`].
    pub fn process_offload<'a>(
        &mut self,
        now: Duration,
        rx: impl IntoIterator<Item = (PortId, &'a [u8], Offload)>,
        tx: &mut TxBatch,
    ) {
        for (port, frame, offload) in rx {
            self.process_frame_offload(now, port, frame, offload, tx);
        }
    }

    /// Forwards one received frame.
    pub fn process_frame(
        &mut self,
        now: Duration,
        in_port: PortId,
        frame: &[u8],
        tx: &mut TxBatch,
    ) {
        self.process_frame_offload(now, in_port, frame, Offload::NONE, tx);
    }

    /// Forwards one received frame with its offload metadata: a partial checksum or a large TCP
    /// segment, offsets from the start of `frame`. Only access ports may hand over offloads
    /// (other ports' frames with offloads are dropped as `bad_offload`); the metadata is checked
    /// against the frame, and a GSO frame must fit the port's MTU once cut into segments.
    pub fn process_frame_offload(
        &mut self,
        now: Duration,
        in_port: PortId,
        frame: &[u8],
        offload: Offload,
        tx: &mut TxBatch,
    ) {
        self.last_now = now;
        let Some(port) = slot_mut(&mut self.ports, in_port.0) else {
            self.switch_drops.add(DropReason::NoPort);
            return;
        };
        port.counters.rx(frame.len());
        let mtu = usize::from(port.config.mtu);
        let classified = match port.config.kind {
            PortKind::Vm { network } | PortKind::Host { network } => {
                let checked = classify_access(frame, mtu, offload).and_then(|l2| {
                    // Port security, before anything learns or answers the frame.
                    match &port.policy.allowed {
                        Some(allowed) => {
                            policy::check_source(allowed, l2.src, l2.ethertype, l2.payload)
                                .map(|()| l2)
                        }
                        None => Ok(l2),
                    }
                });
                // The firewall, after port security and before anything learns or answers.
                let checked = match (checked, port.firewall.as_deref_mut()) {
                    (Ok(l2), Some(pf)) if l2.ethertype == EtherType::IPV4 => self
                        .firewall
                        .egress(in_port, pf, l2.payload, now)
                        .map(|()| l2),
                    (checked, _) => checked,
                };
                match checked {
                    Ok(l2) => Ok(Ingress {
                        network,
                        from: Location::Port(in_port),
                        l2,
                        mac_limit: port
                            .policy
                            .mac_limit
                            .map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
                    }),
                    // The port's network is known even when the frame is refused.
                    Err(reason) => Err((reason, Some(network))),
                }
            }
            PortKind::VlanTrunk | PortKind::VxlanUplink { .. } if !offload.is_complete() => {
                Err((DropReason::BadOffload, None))
            }
            PortKind::VlanTrunk => {
                classify_trunk(frame, mtu, &self.vlans).map(|(network, l2)| Ingress {
                    network,
                    from: Location::Port(in_port),
                    l2,
                    mac_limit: None,
                })
            }
            PortKind::VxlanUplink { local_ip, .. } => classify_underlay(
                frame,
                mtu,
                local_ip,
                self.underlay_peers.as_ref(),
                &self.vnis,
            ),
        };
        let ingress = match classified {
            Ok(ingress) => ingress,
            Err((reason, network)) => {
                port.counters.drops.add(reason);
                if let Some(net) = network.and_then(|id| slot_mut(&mut self.networks, id.0)) {
                    net.counters.traffic.drops.add(reason);
                }
                return;
            }
        };
        let Some(net) = slot_mut(&mut self.networks, ingress.network.0) else {
            port.counters.drops.add(DropReason::NoNetwork);
            return;
        };
        net.counters.traffic.rx(ingress.l2.len());
        let egress = Egress {
            ports: &mut self.ports,
            vtep_macs: &self.vtep_macs,
            uplink: self.uplink,
            trunk: self.trunk,
            firewall: &mut self.firewall,
            now,
        };
        forward(&self.settings, now, net, egress, in_port, ingress, tx);
    }

    /// Says whether a port takes frames with offload metadata (a tap with virtio-net headers):
    /// frames from offload ports keep their partial checksums and large TCP segments when they
    /// go to such a port ([`super::TxFrame::offload`]), and are completed or cut into segments
    /// for any other. Off for a new port. Only access ports can take offloads.
    pub fn set_port_offloads(&mut self, id: PortId, on: bool) -> Result<(), ConfigError> {
        let port = slot_mut(&mut self.ports, id.0).ok_or(ConfigError::NoSuchPort(id))?;
        port.offloads = on && port.config.kind.access_network().is_some();
        Ok(())
    }

    /// Whether a port takes offload metadata.
    pub fn port_offloads(&self, id: PortId) -> bool {
        slot(&self.ports, id.0).is_some_and(|p| p.offloads)
    }

    /// Removes learned MAC entries that have aged out and the firewall's connections past their
    /// timeout; returns how many of both. Lookups already ignore aged entries and expired
    /// connections: this only frees their memory. Call it every few seconds between batches.
    pub fn expire(&mut self, now: Duration) -> usize {
        self.last_now = now;
        let ageing = self.settings.mac_ageing;
        let macs: usize = self
            .networks
            .iter_mut()
            .flatten()
            .map(|n| n.macs.expire(now, ageing))
            .sum();
        macs + self.firewall.expire(now)
    }

    /// A port's configuration.
    pub fn port(&self, id: PortId) -> Option<PortConfig> {
        slot(&self.ports, id.0).map(|p| p.config)
    }

    /// A port's policy (the default, open one until [`ConfigCommand::SetPortPolicy`]).
    pub fn port_policy(&self, id: PortId) -> Option<&PortPolicy> {
        slot(&self.ports, id.0).map(|p| &p.policy)
    }

    /// A port's firewall rules ([`ConfigCommand::SetPortFirewall`]); `None` when it has no
    /// firewall.
    pub fn firewall_rules(&self, id: PortId) -> Option<&[FirewallRule]> {
        slot(&self.ports, id.0)?
            .firewall
            .as_deref()
            .map(|f| f.rules())
    }

    /// How many first packets each rule of a port's firewall decided (by rule index: a deny
    /// rule's drops, an allow rule's connections), since the rules were last set; `None` when
    /// the port has no firewall.
    pub fn firewall_hits(&self, id: PortId) -> Option<Vec<u64>> {
        slot(&self.ports, id.0)?
            .firewall
            .as_deref()
            .map(|f| f.hits().to_vec())
    }

    /// The counters of the firewall's connection table (all ports).
    pub fn conntrack_counters(&self) -> ConntrackCounters {
        self.firewall.counters()
    }

    /// A port's tracked connections (expired ones not yet freed by [`Switch::expire`]
    /// included).
    pub fn port_connections(&self, id: PortId) -> usize {
        self.firewall.connections(id)
    }

    /// A port's live connections with the time each has left at `now`, for a migrating VM's
    /// destination ([`ConfigCommand::ImportConnections`]).
    pub fn export_connections(&self, id: PortId, now: Duration) -> Vec<ConnEntry> {
        self.firewall.export(id, now)
    }

    /// Takes the records of packets the firewall dropped since the last call, oldest first: at
    /// most [`super::FIREWALL_LOG_CAPACITY`], admitted at most [`super::FIREWALL_LOG_RATE`] a
    /// second (see [`Switch::firewall_log_counters`] for the rest).
    pub fn take_firewall_log(&mut self) -> Vec<FirewallDrop> {
        self.firewall.take_log()
    }

    /// The drop log's counters: records logged, suppressed over the rate, overwritten.
    pub fn firewall_log_counters(&self) -> FirewallLogCounters {
        self.firewall.log_counters()
    }

    /// The underlay sources the VXLAN uplink accepts ([`ConfigCommand::SetUnderlayPeers`]),
    /// sorted; `None` when it accepts any.
    pub fn underlay_peers(&self) -> Option<Vec<Ipv4Addr>> {
        self.underlay_peers.as_ref().map(|peers| {
            let mut list: Vec<_> = peers.iter().copied().collect();
            list.sort_unstable();
            list
        })
    }

    /// A port's counters.
    pub fn port_counters(&self, id: PortId) -> Option<Counters> {
        slot(&self.ports, id.0).map(|p| p.counters)
    }

    /// A network's counters.
    pub fn network_counters(&self, id: NetworkId) -> Option<SegmentCounters> {
        slot(&self.networks, id.0).map(|n| n.counters)
    }

    /// A network's MAC table (static and learned entries, aged ones included until
    /// [`Switch::expire`]).
    pub fn mac_entries(&self, id: NetworkId) -> Vec<(MacAddr, MacEntry)> {
        let mut entries: Vec<_> = slot(&self.networks, id.0)
            .map(|n| n.macs.iter().map(|(m, e)| (*m, *e)).collect())
            .unwrap_or_default();
        entries.sort_unstable_by_key(|(m, _)| *m);
        entries
    }

    /// Where `mac` currently lives in a network, as forwarding would see it at `now`.
    pub fn lookup(&self, id: NetworkId, mac: MacAddr, now: Duration) -> Option<Location> {
        slot(&self.networks, id.0)?
            .macs
            .lookup(&mac, now, self.settings.mac_ageing)
    }

    /// Drops that belong to no port.
    pub fn switch_drops(&self) -> Drops {
        self.switch_drops
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ports: self
                .ports
                .iter()
                .flatten()
                .map(|p| (p.config.id, p.counters))
                .collect(),
            networks: self
                .networks
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let id = NetworkId(u32::try_from(i).ok()?);
                    n.as_ref().map(|n| (id, n.counters))
                })
                .collect(),
            switch_drops: self.switch_drops,
        }
    }
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

fn classify_access(frame: &[u8], mtu: usize, offload: Offload) -> Result<L2<'_>, DropReason> {
    let (eth, offset) = EthernetRepr::parse(frame)?;
    if eth.vlan.is_some() {
        return Err(DropReason::UnexpectedVlanTag);
    }
    let payload = frame.get(offset..).unwrap_or(&[]);
    check_l2(&eth, payload, mtu, offload)
}

fn classify_trunk<'a>(
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

fn classify_underlay<'a>(
    frame: &'a [u8],
    mtu: usize,
    local_ip: Ipv4Addr,
    peers: Option<&HashSet<Ipv4Addr>>,
    vnis: &HashMap<Vni, NetworkId>,
) -> Result<Ingress<'a>, Refusal> {
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
    let network = *vnis.get(&decap.vni).ok_or((DropReason::UnknownVni, None))?;
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
    Ok(Ingress {
        network,
        from: Location::Vtep(decap.src_ip),
        l2,
        mac_limit: None,
    })
}

/// What forwarding needs from the switch besides the network.
struct Egress<'s> {
    ports: &'s mut [Option<Port>],
    vtep_macs: &'s HashMap<Ipv4Addr, MacAddr>,
    uplink: Option<PortId>,
    trunk: Option<PortId>,
    firewall: &'s mut Firewall,
    now: Duration,
}

/// Sends copies of one frame in one network.
struct Sender<'s, 'f> {
    egress: Egress<'s>,
    counters: &'s mut SegmentCounters,
    segment: Segment,
    tx: &'s mut TxBatch,
    l2: L2<'f>,
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

impl Sender<'_, '_> {
    fn drop_at(&mut self, port: PortId, reason: DropReason) {
        if let Some(p) = slot_mut(self.egress.ports, port.0) {
            p.counters.drops.add(reason);
        }
        self.counters.traffic.drops.add(reason);
    }

    /// Sends the frame out of an access port or the trunk.
    fn send_port(&mut self, id: PortId) {
        let Some(port) = slot_mut(self.egress.ports, id.0) else {
            return;
        };
        let tag = match (port.config.kind, self.segment) {
            (PortKind::Vm { .. } | PortKind::Host { .. }, _) => None,
            (PortKind::VlanTrunk, Segment::Vlan { vid }) => Some(VlanTci::for_vid(vid)),
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
                (None, Some(range)) => self.tx.push_again(id, range.clone(), offload),
                (None, None) if port.offloads && l2.offload == Offload::NONE => {
                    // Segments of one TCP flow in a row join into one large segment.
                    self.untagged = self.tx.push_coalescing(id, |out| {
                        l2.write(out, None);
                        true
                    });
                }
                (None, None) => {
                    let range = self.tx.push_with(id, None, offload, |out| {
                        l2.write(out, None);
                        true
                    });
                    self.untagged = range;
                }
                (Some(tci), _) => {
                    self.tx.push_with(id, None, Offload::NONE, |out| {
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
                self.tx.repeat(id, frames);
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
                    let pushed = self.tx.push_with(id, None, Offload::NONE, |out| {
                        l2.write_header(out, tag);
                        segmenter.write(i, out)
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
                    .push_with(id, None, Offload::NONE, |out| l2.write_complete(out, tag));
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
    fn send_vtep(&mut self, vtep: Ipv4Addr) {
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
                for i in 0..segmenter.count() {
                    let inner_len = ethernet::HEADER_LEN + segmenter.segment_len(i);
                    let pushed = self
                        .tx
                        .push_with(uplink_id, Some(vtep), Offload::NONE, |out| {
                            if !encapsulated(out, inner_len) {
                                return false;
                            }
                            l2.write_header(out, None);
                            segmenter.write(i, out)
                        });
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

/// Learns the source, answers ARP for registered addresses, forwards known unicast and floods
/// the rest.
fn forward(
    settings: &SwitchSettings,
    now: Duration,
    net: &mut NetworkState,
    egress: Egress<'_>,
    in_port: PortId,
    ingress: Ingress<'_>,
    tx: &mut TxBatch,
) {
    let NetworkState {
        segment,
        macs,
        flood,
        ports: members,
        arp,
        dhcp,
        counters,
    } = net;
    let segment = *segment;
    let l2 = ingress.l2;
    let from_vtep = matches!(ingress.from, Location::Vtep(_));

    let learned = macs.learn_limited(l2.src, ingress.from, now, ingress.mac_limit, || {
        announces_source(&l2)
    });
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
            return;
        }
        Learned::Known | Learned::Updated => {}
    }

    if let (Some(config), Location::Port(_)) = (dhcp.as_ref(), ingress.from) {
        let access_mtu = slot(egress.ports, in_port.0).and_then(|p| match p.config.kind {
            PortKind::Vm { .. } | PortKind::Host { .. } => Some(p.config.mtu),
            PortKind::VlanTrunk | PortKind::VxlanUplink { .. } => None,
        });
        if let (Some(port_mtu), Some(request)) = (access_mtu, dhcp_client_message(&l2)) {
            let mut buf = [0u8; DHCP_REPLY_MAX];
            let answer = request
                .map_err(|_| DropReason::BadDhcp)
                .and_then(|request| dhcp_answer(config, arp, port_mtu, l2.src, &request))
                .and_then(|reply| write_dhcp_reply(&reply, &mut buf));
            let mut sender = Sender {
                egress,
                counters,
                segment,
                tx,
                l2,
                untagged: None,
                completed: None,
                generated: true,
                parsed: None,
            };
            match answer {
                Ok((src_ip, len)) => {
                    sender.counters.dhcp_replies += 1;
                    sender.l2 = L2 {
                        dst: l2.src,
                        src: arp.get(&src_ip).copied().unwrap_or(DHCP_SERVER_MAC),
                        ethertype: EtherType::IPV4,
                        payload: buf.get(..len).unwrap_or(&[]),
                        offload: Offload::NONE,
                    };
                    sender.send_port(in_port);
                }
                Err(reason) => sender.drop_at(in_port, reason),
            }
            return;
        }
    }

    if !from_vtep && l2.ethertype == EtherType::ARP && l2.dst.is_multicast() {
        if let Some(reply) = arp_reply(arp, &l2) {
            counters.arp_suppressed += 1;
            let reply_l2 = L2 {
                dst: l2.src,
                src: reply.source_hardware_addr,
                ethertype: EtherType::ARP,
                payload: &[],
                offload: Offload::NONE,
            };
            let mut payload = [0u8; arp::PACKET_LEN];
            if reply
                .emit(&mut arp::Packet::new_unchecked(&mut payload[..]))
                .is_ok()
            {
                let mut sender = Sender {
                    egress,
                    counters,
                    segment,
                    tx,
                    l2: L2 {
                        payload: &payload,
                        ..reply_l2
                    },
                    untagged: None,
                    completed: None,
                    generated: true,
                    parsed: None,
                };
                sender.send_port(in_port);
            }
            return;
        }
    }

    let mut sender = Sender {
        egress,
        counters,
        segment,
        tx,
        l2,
        untagged: None,
        completed: None,
        generated: false,
        parsed: None,
    };

    if l2.dst.is_unicast() {
        match macs.lookup(&l2.dst, now, settings.mac_ageing) {
            Some(Location::Port(port)) if port == in_port => {
                sender.drop_at(in_port, DropReason::SamePort);
                return;
            }
            Some(Location::Port(port)) => {
                sender.send_port(port);
                return;
            }
            Some(Location::Vtep(_)) if from_vtep => {
                sender.drop_at(in_port, DropReason::SplitHorizon);
                return;
            }
            Some(Location::Vtep(vtep)) => {
                sender.send_vtep(vtep);
                return;
            }
            None => {}
        }
    }

    // Broadcast, multicast or unknown unicast: every other local port of the network, then
    // the remote hosts of the network (unless the frame came from one: split horizon) or the
    // trunk. Storm control first: a port over its rate floods nothing.
    let storm = slot_mut(sender.egress.ports, in_port.0).and_then(|p| p.storm.as_mut());
    if let Some(bucket) = storm {
        if !bucket.take(now) {
            sender.drop_at(in_port, DropReason::StormControl);
            return;
        }
    }
    sender.counters.flooded += 1;
    for &port in members.iter() {
        if port != in_port {
            sender.send_port(port);
        }
    }
    match segment {
        Segment::Overlay { .. } => {
            if !from_vtep {
                for &vtep in flood.iter() {
                    sender.send_vtep(vtep);
                }
            }
        }
        Segment::Vlan { .. } => {
            if let Some(trunk) = sender.egress.trunk {
                if trunk != in_port {
                    sender.send_port(trunk);
                }
            }
        }
    }
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

/// Source MAC of the switch's DHCP replies when the server identifier has no registered owner:
/// locally administered, fixed.
pub const DHCP_SERVER_MAC: MacAddr = MacAddr([0x02, 0x76, 0x69, 0x6e, 0x00, 0x67]);
/// Room for the IPv4 and UDP headers and the longest reply the responder writes.
const DHCP_REPLY_MAX: usize = ipv4::HEADER_LEN + udp::HEADER_LEN + dhcp::MIN_MESSAGE_LEN + 64;
/// Time to live of the replies.
const DHCP_TTL: u8 = 64;

/// The DHCP message of a client frame (IPv4, unfragmented UDP from port 68 to 67), or `None`
/// for any other frame. The IPv4 and UDP headers were validated by classification.
fn dhcp_client_message(l2: &L2<'_>) -> Option<Result<DhcpRepr, crate::wire::Error>> {
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
fn dhcp_answer(
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
fn write_dhcp_reply(reply: &DhcpRepr, buf: &mut [u8]) -> Result<(Ipv4Addr, usize), DropReason> {
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
