//! The switch: its ports, networks, routers and tables, and the path of one received frame
//! (classification, then forwarding, then for a gateway's frames the routing stage); its
//! configuration is in `configure`.

use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::{HashMap, HashSet};

use super::classify::{classify_access, classify_trunk, classify_underlay, Ingress, Underlay};
use super::config::{ConfigCommand, ConfigError, SwitchSettings};
use super::counters::{Counters, DropReason, Drops, RouterCounters, SegmentCounters, Snapshot};
use super::fastpath::{self, Accounts, FastFlow, FastKey, FastPath, FastTraffic, Fate};
use super::filter::{Firewall, FirewallDrop, FirewallLogCounters};
use super::firewall::conntrack::{ConnEntry, ConntrackCounters};
use super::firewall::rules::FirewallRule;
use super::firewall::rules::Prefix;
use super::flows::{FlowMark, FlowPath, FlowTable, FlowTableSettings, FlowTake};
use super::forward::{forward, Forwarded};
use super::ids::{slot, slot_mut, NetworkId, PortId, RouterId};
use super::mac_table::{Location, MacEntry};
use super::nat::uplink::{Nat, RouterUplink};
use super::network::NetworkState;
use super::policy::{self, PortPolicy, StormBucket, StormControl};
use super::port::{Port, PortConfig, PortKind};
use super::route::{Routing, ICMP_ERROR_MAX};
use super::router::{RouterInterface, RouterState};
use super::sender::Egress;
use super::tx::TxBatch;
use crate::wire::{vlan, EtherType, MacAddr, Offload, Vni};

/// IPv4 minimum MTU.
pub(super) const MIN_MTU: u16 = 68;

/// The rate of ICMP errors the switch's routers send, all together: 100 a second, in bursts of
/// at most 100.
pub const ICMP_ERROR_RATE: StormControl = StormControl {
    frames_per_sec: 100,
    burst: 100,
};

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
    /// Routers, by number.
    pub(super) routers: Vec<Option<RouterState>>,
    /// The MACs of every network's gateway (see `configure`, which keeps it).
    pub(super) gateway_macs: HashSet<MacAddr>,
    /// The routers' ICMP error rate ([`ICMP_ERROR_RATE`]).
    pub(super) icmp_bucket: StormBucket,
    /// Where a router writes an ICMP message.
    pub(super) scratch: Vec<u8>,
    /// The routers' uplinks and their NAT.
    pub(super) nat: Nat,
    /// Flow accounting (`flows`).
    pub(super) flows: FlowTable,
    /// A frame of a vNIC's 802.1Q sub-interface with its tag taken off.
    untagged: Vec<u8>,
    /// Offers to the kernel's fast path (`fastpath`).
    pub(super) fast: FastPath,
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new(SwitchSettings::default())
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
            routers: Vec::new(),
            gateway_macs: HashSet::default(),
            icmp_bucket: StormBucket::new(ICMP_ERROR_RATE),
            scratch: Vec::with_capacity(ICMP_ERROR_MAX),
            nat: Nat::new(settings.nat_max_sessions),
            flows: FlowTable::new(FlowTableSettings::default()),
            untagged: Vec::new(),
            fast: FastPath::default(),
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
    /// cleared), after the gratuitous ARPs left to send ([`Switch::announce`]). `now` is the
    /// time on any monotonic clock; it drives MAC ageing and every timeout.
    pub fn process<'a>(
        &mut self,
        now: Duration,
        rx: impl IntoIterator<Item = (PortId, &'a [u8])>,
        tx: &mut TxBatch,
    ) {
        self.last_now = now;
        self.announce(tx);
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
        self.last_now = now;
        self.announce(tx);
        for (port, frame, offload) in rx {
            self.process_frame_offload(now, port, frame, offload, tx);
        }
    }

    /// Forwards a batch as [`Switch::process_offload`], leaving in the received frames the
    /// payloads of the segments a large TCP segment is cut into for a remote VTEP: each such
    /// frame is queued as its headers followed by a [`super::Tail`] (received frame, by its
    /// position in `rx`, and range), which the caller gathers when it sends the batch. The
    /// caller keeps the received frames unchanged until then.
    pub fn process_gathered<'a>(
        &mut self,
        now: Duration,
        rx: impl IntoIterator<Item = (PortId, &'a [u8], Offload)>,
        tx: &mut TxBatch,
    ) {
        self.last_now = now;
        self.announce(tx);
        for (index, (port, frame, offload)) in rx.into_iter().enumerate() {
            tx.set_input(index, frame);
            self.process_frame_offload(now, port, frame, offload, tx);
        }
        tx.clear_input();
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
        let candidate = if self.fast.port(in_port) {
            fastpath::candidate(in_port, frame, self.uplink == Some(in_port))
        } else {
            None
        };
        let before = tx.len();
        let generation = self.fast.generation();
        let connections = self.firewall.changes();
        self.firewall.begin_frame();
        let outcome = self.forward_frame(now, in_port, frame, offload, tx);
        if self.firewall.changes() != connections {
            // A connection ended or changed its TCP state: flows through a firewall may
            // be decided otherwise now.
            self.fast.bump();
        }
        if let (Some(key), Some((network, mark))) = (candidate, outcome) {
            if self.fast.generation() == generation {
                self.offer(key, frame, offload, tx, before, network, mark);
            }
        }
    }

    /// Offers the flow of the frame just forwarded to the fast path when its fate allows
    /// (see `fastpath`): one copy, written at `before` in `tx`, to another fast port.
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        key: FastKey,
        frame: &[u8],
        offload: Offload,
        tx: &TxBatch,
        before: usize,
        network: NetworkId,
        mark: FlowMark,
    ) {
        let fate = Fate {
            frame,
            offload,
            tx,
            before,
            network,
            mark,
            now: self.last_now,
            mac_ageing: self.settings.mac_ageing,
            established: self.firewall.all_established(),
        };
        if let Some(flow) = fastpath::offer(&self.fast, &self.ports, &self.networks, key, &fate) {
            self.fast.push(flow);
        }
    }

    /// Forwards one frame; for a frame that reached the forwarding stage, the network it
    /// came in on and what the routing stage said of it.
    fn forward_frame(
        &mut self,
        now: Duration,
        in_port: PortId,
        frame: &[u8],
        offload: Offload,
        tx: &mut TxBatch,
    ) -> Option<(NetworkId, FlowMark)> {
        self.last_now = now;
        let Some(port) = slot_mut(&mut self.ports, in_port.0) else {
            self.switch_drops.add(DropReason::NoPort);
            return None;
        };
        port.counters.rx(frame.len());
        // A frame of one of the vNIC's sub-interfaces: in again through the sub-interface's
        // port, untagged. (A tag it has no sub-interface for is dropped below.)
        if let Some((sub, macs, rest)) = sub_interface(port, frame) {
            if !offload.is_complete() {
                port.counters.drops.add(DropReason::BadOffload);
                return None;
            }
            let mut untagged = core::mem::take(&mut self.untagged);
            untagged.clear();
            untagged.extend_from_slice(macs);
            untagged.extend_from_slice(rest);
            self.process_frame_offload(now, sub, &untagged, offload, tx);
            self.untagged = untagged;
            return None;
        }
        let mtu = usize::from(port.config.mtu);
        let classified = match port.config.kind {
            PortKind::Vm { network }
            | PortKind::Host { network }
            | PortKind::VmVlan { network, .. } => {
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
                    Ok(mut l2) => {
                        // The DSCP mark, after port security and the firewall.
                        if l2.ethertype == EtherType::IPV4 {
                            l2.mark = port.dscp_mark;
                        }
                        Ok(Underlay::Network(Ingress {
                            network,
                            from: Location::Port(in_port),
                            l2,
                            mac_limit: port
                                .policy
                                .mac_limit
                                .map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
                            access: true,
                        }))
                    }
                    // The port's network is known even when the frame is refused.
                    Err(reason) => Err((reason, Some(network))),
                }
            }
            PortKind::VlanTrunk | PortKind::VxlanUplink { .. } if !offload.is_complete() => {
                Err((DropReason::BadOffload, None))
            }
            PortKind::VlanTrunk => classify_trunk(frame, mtu, &self.vlans).map(|(network, l2)| {
                Underlay::Network(Ingress {
                    network,
                    from: Location::Port(in_port),
                    l2,
                    mac_limit: None,
                    access: false,
                })
            }),
            PortKind::VxlanUplink { local_ip, .. } => classify_underlay(
                frame,
                mtu,
                local_ip,
                self.underlay_peers.as_ref(),
                &self.vnis,
                &self.nat.transit,
            ),
        };
        let ingress = match classified {
            Ok(Underlay::Transit { router, l2 }) => {
                self.routing(now).transit(in_port, router, l2, tx);
                return None;
            }
            Ok(Underlay::Network(ingress)) => ingress,
            Err((reason, network)) => {
                port.counters.drops.add(reason);
                if let Some(net) = network.and_then(|id| slot_mut(&mut self.networks, id.0)) {
                    net.counters.traffic.drops.add(reason);
                }
                return None;
            }
        };
        let Some(net) = slot_mut(&mut self.networks, ingress.network.0) else {
            port.counters.drops.add(DropReason::NoNetwork);
            return None;
        };
        net.counters.traffic.rx(ingress.l2.len());
        let (network, access, l2) = (ingress.network, ingress.access, ingress.l2);
        let egress = Egress {
            ports: &mut self.ports,
            vtep_macs: &self.vtep_macs,
            uplink: self.uplink,
            trunk: self.trunk,
            firewall: &mut self.firewall,
            now,
            gateway_macs: &self.gateway_macs,
        };
        let mut mark = FlowMark::default();
        let mac_changes = net.macs.changes();
        let forwarded = forward(&self.settings, now, net, egress, in_port, ingress, tx);
        if net.macs.changes() != mac_changes {
            self.fast.bump();
        }
        let learned = match forwarded {
            Forwarded::Done => false,
            Forwarded::ToRouter => {
                let mut routing = self.routing(now);
                routing.frame(in_port, network, access, l2, tx);
                mark = routing.flow;
                routing.learned
            }
            Forwarded::ToUplink => {
                let mut routing = self.routing(now);
                routing.uplink_frame(in_port, network, l2, tx);
                mark = routing.flow;
                routing.learned
            }
        };
        if learned {
            self.fast.bump();
        }
        // Counted where it entered the cluster: a local port, or (on a router's edge) the
        // uplink, for what comes in from the physical network.
        if (access || mark.path == FlowPath::NorthSouth) && self.flows.enabled() {
            self.flows.count(now, network, in_port, &l2, mark);
        }
        Some((network, mark))
    }

    /// The routing stage over the switch's state.
    fn routing(&mut self, now: Duration) -> Routing<'_> {
        Routing {
            settings: &self.settings,
            networks: &mut self.networks,
            routers: &mut self.routers,
            egress: Egress {
                ports: &mut self.ports,
                vtep_macs: &self.vtep_macs,
                uplink: self.uplink,
                trunk: self.trunk,
                firewall: &mut self.firewall,
                now,
                gateway_macs: &self.gateway_macs,
            },
            icmp: &mut self.icmp_bucket,
            scratch: &mut self.scratch,
            nat: &mut self.nat,
            flow: FlowMark::default(),
            learned: false,
        }
    }

    /// Writes the gratuitous ARPs that configuration left to send (this switch became a
    /// router's edge, or its edge got a floating IP: [`ConfigCommand::SetRouterUplink`],
    /// [`ConfigCommand::AddFloatingIp`]) into `tx`: one broadcast ARP request from the uplink's
    /// MAC for each address, out of the external network (the trunk and its local ports).
    /// [`Switch::process`] does it first; call it after applying commands to send them at
    /// once. Returns how many were written.
    pub fn announce(&mut self, tx: &mut TxBatch) -> usize {
        if self.nat.pending.is_empty() {
            return 0;
        }
        let now = self.last_now;
        self.routing(now).announce(tx)
    }

    /// A router's uplink ([`ConfigCommand::SetRouterUplink`]) with its floating IPs; `None`
    /// when it has none.
    pub fn router_uplink(&self, id: RouterId) -> Option<RouterUplink> {
        self.nat.uplinks.get(&id).map(|u| u.view())
    }

    /// NAT sessions in the table (every router's; expired ones not yet freed included).
    pub fn nat_sessions(&self) -> usize {
        self.nat.table.len()
    }

    /// Says whether a port takes frames with offload metadata (a tap with virtio-net headers):
    /// frames from offload ports keep their partial checksums and large TCP segments when they
    /// go to such a port ([`super::TxFrame::offload`]), and are completed or cut into segments
    /// for any other. Off for a new port. Only access ports can take offloads.
    pub fn set_port_offloads(&mut self, id: PortId, on: bool) -> Result<(), ConfigError> {
        let port = slot_mut(&mut self.ports, id.0).ok_or(ConfigError::NoSuchPort(id))?;
        port.offloads = on && port.config.kind.access_network().is_some();
        self.fast.bump();
        Ok(())
    }

    /// Whether a port takes offload metadata.
    pub fn port_offloads(&self, id: PortId) -> bool {
        slot(&self.ports, id.0).is_some_and(|p| p.offloads)
    }

    /// Says whether the daemon can hand frames from and to port `id` to the kernel's fast
    /// path (see `fastpath`): only then are its flows offered.
    pub fn set_port_fast(&mut self, id: PortId, on: bool) {
        self.fast.set_port(id, on);
    }

    /// Advances whenever the switch's state changes in a way that could decide a flow
    /// another way: flows offered at an older generation are to be taken back from the kernel.
    pub fn fast_generation(&self) -> u64 {
        self.fast.generation()
    }

    /// Moves the flows offered since the previous take into `into` (at most 1,024 are kept
    /// between takes), oldest first. Only those whose [`FastFlow::generation`] is the
    /// current [`Switch::fast_generation`] still hold.
    pub fn take_fast_offers(&mut self, into: &mut Vec<FastFlow>) {
        self.fast.take(into);
    }

    /// Counts what the kernel forwarded of `flow` as the switch would have: the ports' and
    /// networks' counters, the router's, flow accounting; and refreshes the source's MAC entry.
    pub fn fast_traffic(&mut self, now: Duration, flow: &FastFlow, traffic: FastTraffic) {
        self.last_now = now;
        let accounts = Accounts {
            ports: &mut self.ports,
            networks: &mut self.networks,
            routers: &mut self.routers,
            flows: &mut self.flows,
            firewall: &mut self.firewall,
        };
        accounts.count(now, flow, traffic);
    }

    /// Removes learned MAC entries that have aged out, the firewall's connections past their
    /// timeout, the routers' neighbours nothing keeps any longer, NAT sessions past their
    /// timeout and flows idle for the flow table's timeout; returns how many of the first
    /// four. Lookups already ignore aged entries and expired connections: this only frees
    /// their memory. Call it every few seconds between batches.
    pub fn expire(&mut self, now: Duration) -> usize {
        self.last_now = now;
        let ageing = self.settings.mac_ageing;
        let macs: usize = self
            .networks
            .iter_mut()
            .flatten()
            .map(|n| n.macs.expire(now, ageing))
            .sum();
        let neighbours: usize = self
            .routers
            .iter_mut()
            .flatten()
            .map(|r| r.neighbours.expire(now))
            .sum();
        self.flows.expire(now);
        // Offers depend on MAC entries, neighbours and connections (never on NAT sessions:
        // NAT is not offered).
        let connections = self.firewall.expire(now);
        if macs + neighbours + connections > 0 {
            self.fast.bump();
        }
        macs + connections + neighbours + self.nat.expire(now)
    }

    /// Takes the flows counted since the previous take with their packets and bytes since
    /// then, resetting them (flows idle for [`super::IDLE_TAKES`] takes or the idle timeout
    /// leave the table); `now` on the clock given to [`Switch::process`].
    pub fn take_flows(&mut self, now: Duration) -> FlowTake {
        self.flows.take(now)
    }

    /// The flow table's settings ([`ConfigCommand::SetFlowAccounting`]).
    pub fn flow_settings(&self) -> FlowTableSettings {
        self.flows.settings()
    }

    /// Flows in the flow table now.
    pub fn flow_entries(&self) -> usize {
        self.flows.len()
    }

    /// The routers, by number.
    pub fn routers(&self) -> Vec<RouterId> {
        numbered(&self.routers)
            .map(|(id, _)| RouterId(id))
            .collect()
    }

    /// A router's interfaces ([`ConfigCommand::SetRouterInterface`]), by network; `None` when
    /// there is no such router.
    pub fn router_interfaces(&self, id: RouterId) -> Option<Vec<RouterInterface>> {
        slot(&self.routers, id.0).map(|r| r.interfaces.clone())
    }

    /// A router's static routes ([`ConfigCommand::AddRoute`]) as configured, sorted, whether
    /// usable or not (a route is used while its next hop lies on one of the router's
    /// interfaces and is not one of its addresses).
    pub fn routes(&self, id: RouterId) -> Option<Vec<(Prefix, Ipv4Addr)>> {
        slot(&self.routers, id.0).map(|r| r.routes().to_vec())
    }

    /// A network's gateway: its router's interface on it.
    pub fn gateway(&self, network: NetworkId) -> Option<RouterInterface> {
        slot(&self.networks, network.0)?.gateway
    }

    /// The neighbours a router knows (learned from ARP replies to its gateways, valid at the
    /// latest time the switch was given), sorted.
    pub fn router_neighbours(&self, id: RouterId) -> Vec<(NetworkId, Ipv4Addr, MacAddr)> {
        slot(&self.routers, id.0).map_or_else(Vec::new, |r| r.neighbours.known(self.last_now))
    }

    /// A router's counters.
    pub fn router_counters(&self, id: RouterId) -> Option<RouterCounters> {
        slot(&self.routers, id.0).map(|r| RouterCounters {
            nat: self.nat.counters(id),
            ..r.counters
        })
    }

    /// A port's configuration.
    pub fn port(&self, id: PortId) -> Option<PortConfig> {
        slot(&self.ports, id.0).map(|p| p.config)
    }

    /// A port's policy (the default, open one until [`ConfigCommand::SetPortPolicy`]).
    pub fn port_policy(&self, id: PortId) -> Option<&PortPolicy> {
        slot(&self.ports, id.0).map(|p| &p.policy)
    }

    /// A port's DSCP mark ([`ConfigCommand::SetPortDscp`]); `None` when it has none.
    pub fn port_dscp(&self, id: PortId) -> Option<u8> {
        slot(&self.ports, id.0)?.dscp_mark
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

    /// Moves the switch's clock on to `now` (never back): what configuration commands that
    /// start a timer ([`ConfigCommand::RedirectMac`], [`ConfigCommand::ImportConnections`])
    /// count from. Frames and [`Switch::expire`] move it too; a daemon sets it before applying
    /// a command, so that a quiet switch does not count from its last frame.
    pub fn set_clock(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
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
            networks: numbered(&self.networks)
                .map(|(id, n)| (NetworkId(id), n.counters))
                .collect(),
            routers: numbered(&self.routers)
                .map(|(id, r)| {
                    let nat = self.nat.counters(RouterId(id));
                    (RouterId(id), RouterCounters { nat, ..r.counters })
                })
                .collect(),
            switch_drops: self.switch_drops,
        }
    }
}

/// The entries of a dense table with their numbers.
fn numbered<T>(table: &[Option<T>]) -> impl Iterator<Item = (u32, &T)> {
    table
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((u32::try_from(i).ok()?, e.as_ref()?)))
}

/// The sub-interface port of VM port `port` that `frame` is tagged for, if any, with the
/// frame's MAC addresses and what follows its tag.
fn sub_interface<'f>(port: &Port, frame: &'f [u8]) -> Option<(PortId, &'f [u8], &'f [u8])> {
    if port.vlans.is_empty() {
        return None;
    }
    let macs = frame.get(..12)?;
    let &[t0, t1, v0, v1] = frame.get(12..12 + vlan::HEADER_LEN)? else {
        return None;
    };
    let rest = frame.get(12 + vlan::HEADER_LEN..)?;
    if rest.len() < 2 || u16::from_be_bytes([t0, t1]) != EtherType::VLAN.0 {
        return None;
    }
    let vid = u16::from_be_bytes([v0, v1]) & 0x0fff;
    port.vlans
        .iter()
        .find(|(v, _)| v.get() == vid)
        .map(|&(_, sub)| (sub, macs, rest))
}
