//! The control protocol's wire types ([`vinfra_switch_control`]) in the core's terms, and back:
//! a [`Request`] becomes a [`ConfigCommand`] (its numbers checked here, where the core's types
//! are), a port's [`PortSpec`] its [`PortConfig`], the core's counters a [`CountersView`].

use std::collections::BTreeMap;
use std::time::Duration;

use vinfra_switch::datapath::firewall::conntrack::{
    ConnEntry, ConnTuple, ConntrackCounters, Side, TcpState,
};
use vinfra_switch::datapath::firewall::rules::{
    Action, Direction, FirewallRule, PortRange, Prefix, Protocol,
};
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, Counters, DhcpConfig, Drops, Edge, FirewallLogCounters,
    FlowPath, FlowTableSettings, FlowTake, IcmpError, Location, NatCounters, NetworkId, PortConfig,
    PortId, PortKind, PortPolicy, RouterCounters, RouterId, Segment, SegmentCounters, Snapshot,
    StormControl, SwitchSettings,
};
use vinfra_switch::wire::{MacAddr, VlanId, Vni};
use vinfra_switch_control::{
    ActionSpec, Attachment, ConnTupleSpec, ConnectionSpec, ConntrackView, CountersView, DhcpSpec,
    DirectionSpec, EdgeSpec, FirewallRuleSpec, FlowDirection, FlowView, FlowsView, LocationSpec,
    Mac, NatCountersView, NetworkCountersView, NetworkSpec, PortCountersView, PortPolicySpec,
    PortSpec, PrefixSpec, Request, RouterCountersView, SideSpec, TcpStateSpec, TrafficView,
};

use crate::ports::UNDERLAY_PLACEHOLDER_MAC;

/// A request value the core cannot represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    /// A VNI of more than 24 bits.
    #[error("VNI {0} is above 2^24 - 1")]
    Vni(u32),
    /// A VLAN ID of 0 or above 4094.
    #[error("VLAN ID {0} is not in 1..=4094")]
    Vid(u16),
}

/// The core's segment of a network.
pub fn segment(spec: NetworkSpec) -> Result<Segment, BadValue> {
    match spec {
        NetworkSpec::Overlay { vni } => Vni::new(vni)
            .map(|vni| Segment::Overlay { vni })
            .ok_or(BadValue::Vni(vni)),
        NetworkSpec::Vlan { vid } => VlanId::new(vid)
            .map(|vid| Segment::Vlan { vid })
            .ok_or(BadValue::Vid(vid)),
    }
}

fn mac(m: Mac) -> MacAddr {
    MacAddr(m.0)
}

fn location(l: LocationSpec) -> Location {
    match l {
        LocationSpec::Port(p) => Location::Port(PortId(p)),
        LocationSpec::Vtep(ip) => Location::Vtep(ip),
    }
}

fn prefix(p: PrefixSpec) -> Prefix {
    Prefix {
        addr: p.ip,
        len: p.prefix_len,
    }
}

/// The core's DHCP responder parameters.
pub fn dhcp_config(d: DhcpSpec) -> DhcpConfig {
    DhcpConfig {
        prefix_len: d.prefix_len,
        gateway: d.gateway,
        server: d.server,
        mtu: d.mtu,
        lease_secs: d.lease_secs,
    }
}

/// The core's port policy.
pub fn port_policy(p: &PortPolicySpec) -> PortPolicy {
    PortPolicy {
        allowed: p.allowed.as_ref().map(|list| {
            list.iter()
                .map(|a| AllowedAddress {
                    mac: mac(a.mac),
                    ip: a.ip,
                    prefix_len: a.prefix_len,
                })
                .collect()
        }),
        mac_limit: p.mac_limit,
        storm: p.storm.map(|s| StormControl {
            frames_per_sec: s.frames_per_sec,
            burst: s.burst,
        }),
    }
}

/// The core's firewall rule. A protocol number of TCP or UDP gets the spec's ports (absent:
/// every port); another number is that protocol, any port.
pub fn firewall_rule(r: &FirewallRuleSpec) -> FirewallRule {
    FirewallRule {
        direction: match r.direction {
            DirectionSpec::Ingress => Direction::Ingress,
            DirectionSpec::Egress => Direction::Egress,
        },
        protocol: match r.protocol {
            None => Protocol::Any,
            Some(6) => Protocol::Tcp,
            Some(17) => Protocol::Udp,
            Some(1) => Protocol::Icmp,
            Some(n) => Protocol::Other(n),
        },
        ports: r
            .ports
            .map_or(PortRange::ANY, |(first, last)| PortRange { first, last }),
        remote: r.remote.iter().copied().map(prefix).collect(),
        action: match r.action {
            ActionSpec::Allow => Action::Allow,
            ActionSpec::Deny => Action::Deny,
        },
    }
}

const TCP_STATES: [(TcpState, TcpStateSpec); 9] = [
    (TcpState::SynSent, TcpStateSpec::SynSent),
    (TcpState::SynSent2, TcpStateSpec::SynSent2),
    (TcpState::SynRecv, TcpStateSpec::SynRecv),
    (TcpState::Established, TcpStateSpec::Established),
    (TcpState::FinWait, TcpStateSpec::FinWait),
    (TcpState::CloseWait, TcpStateSpec::CloseWait),
    (TcpState::LastAck, TcpStateSpec::LastAck),
    (TcpState::TimeWait, TcpStateSpec::TimeWait),
    (TcpState::Close, TcpStateSpec::Close),
];

fn tcp_state_spec(s: TcpState) -> TcpStateSpec {
    TCP_STATES
        .iter()
        .find(|(core, _)| *core == s)
        .map_or(TcpStateSpec::Close, |(_, spec)| *spec)
}

fn tcp_state(s: TcpStateSpec) -> TcpState {
    TCP_STATES
        .iter()
        .find(|(_, spec)| *spec == s)
        .map_or(TcpState::Close, |(core, _)| *core)
}

fn tuple_spec(t: &ConnTuple) -> ConnTupleSpec {
    ConnTupleSpec {
        src: t.src,
        dst: t.dst,
        protocol: t.protocol,
        src_port: t.src_port,
        dst_port: t.dst_port,
    }
}

/// The core's flow report on the wire.
pub fn flows_view(report: &FlowTake) -> FlowsView {
    let to_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    FlowsView {
        flows: report
            .flows
            .iter()
            .map(|f| FlowView {
                network: f.key.network.0,
                port: f.port.0,
                router: f.router.map(|r| r.0),
                src: f.key.src,
                dst: f.key.dst,
                protocol: f.key.protocol,
                src_port: f.key.src_port,
                dst_port: f.key.dst_port,
                packets: f.packets,
                bytes: f.bytes,
                direction: match f.path {
                    FlowPath::EastWest => FlowDirection::EastWest,
                    FlowPath::NorthSouth => FlowDirection::NorthSouth,
                },
            })
            .collect(),
        entries: to_u64(report.entries),
        capacity: to_u64(report.capacity),
        untracked_packets: report.untracked_packets,
        interval_ms: report
            .interval
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// A core connection on the wire (its reply tuple is implied by the original).
pub fn connection_spec(e: &ConnEntry) -> ConnectionSpec {
    ConnectionSpec {
        original: tuple_spec(&e.original),
        origin: match e.origin {
            Side::FromVm => SideSpec::FromVm,
            Side::ToVm => SideSpec::ToVm,
        },
        tcp_state: e.tcp_state.map(tcp_state_spec),
        replied: e.replied,
        remaining_ms: u64::try_from(e.remaining.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The core's connection of a wire one.
pub fn conn_entry(c: &ConnectionSpec) -> ConnEntry {
    let o = c.original;
    let original = ConnTuple {
        src: o.src,
        dst: o.dst,
        protocol: o.protocol,
        src_port: o.src_port,
        dst_port: o.dst_port,
    };
    ConnEntry {
        original,
        reply: original.reply(),
        origin: match c.origin {
            SideSpec::FromVm => Side::FromVm,
            SideSpec::ToVm => Side::ToVm,
        },
        tcp_state: c.tcp_state.map(tcp_state),
        replied: c.replied,
        remaining: Duration::from_millis(c.remaining_ms),
    }
}

/// The counters of the firewall's connection table and drop log.
pub fn conntrack_view(c: &ConntrackCounters, log: &FirewallLogCounters) -> ConntrackView {
    ConntrackView {
        entries: c.entries as u64,
        created: c.created,
        imported: c.imported,
        expired: c.expired,
        evicted: c.evicted,
        removed: c.removed,
        refused: c.refused,
        invalid: c
            .invalid
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str().to_owned(), n))
            .collect(),
        log_recorded: log.logged,
        log_suppressed: log.suppressed,
        log_overwritten: log.overwritten,
    }
}

/// The core's port configuration of a port to open, or the value it cannot represent.
pub fn port_config(spec: &PortSpec) -> Result<PortConfig, BadValue> {
    let kind = match &spec.attach {
        Attachment::VmVlan {
            network,
            parent,
            vid,
        } => PortKind::VmVlan {
            network: NetworkId(*network),
            parent: PortId(*parent),
            vid: VlanId::new(*vid).ok_or(BadValue::Vid(*vid))?,
        },
        Attachment::Vm { network, .. }
        | Attachment::VmTap { network, .. }
        | Attachment::Interface { network, .. } => PortKind::Vm {
            network: NetworkId(*network),
        },
        Attachment::Host { network, .. } => PortKind::Host {
            network: NetworkId(*network),
        },
        Attachment::VxlanUplink { local_ip } => PortKind::VxlanUplink {
            local_ip: *local_ip,
            local_mac: UNDERLAY_PLACEHOLDER_MAC,
            gateway_mac: Some(UNDERLAY_PLACEHOLDER_MAC),
        },
        Attachment::VlanTrunk { .. } => PortKind::VlanTrunk,
    };
    Ok(PortConfig {
        id: PortId(spec.id),
        kind,
        mtu: spec.mtu,
    })
}

/// The core command of a request that is one; `Ok(None)` for `ping`, `get_config`,
/// `get_counters` and `export_connections`.
pub fn config_command(request: &Request) -> Result<Option<ConfigCommand>, BadValue> {
    Ok(Some(match request {
        Request::Ping
        | Request::GetConfig
        | Request::GetCounters
        | Request::TakeFlows
        | Request::ExportConnections { .. }
        | Request::SetPortQos { .. } => return Ok(None),
        Request::AddNetwork { id, kind } => ConfigCommand::AddNetwork {
            id: NetworkId(*id),
            segment: segment(*kind)?,
        },
        Request::RemoveNetwork { id } => ConfigCommand::RemoveNetwork(NetworkId(*id)),
        Request::AddPort(spec) => ConfigCommand::AddPort(port_config(spec)?),
        Request::RemovePort { id } => ConfigCommand::RemovePort(PortId(*id)),
        Request::SetFloodList { network, vteps } => ConfigCommand::SetFloodList {
            network: NetworkId(*network),
            vteps: vteps.clone(),
        },
        Request::AddMacEntry {
            network,
            mac: m,
            location: l,
        } => ConfigCommand::AddMacEntry {
            network: NetworkId(*network),
            mac: mac(*m),
            location: location(*l),
        },
        Request::RemoveMacEntry { network, mac: m } => ConfigCommand::RemoveMacEntry {
            network: NetworkId(*network),
            mac: mac(*m),
        },
        Request::RevertMacMoves => ConfigCommand::RevertMacMoves,
        Request::AddArpEntry {
            network,
            ip,
            mac: m,
        } => ConfigCommand::AddArpEntry {
            network: NetworkId(*network),
            ip: *ip,
            mac: mac(*m),
        },
        Request::RemoveArpEntry { network, ip } => ConfigCommand::RemoveArpEntry {
            network: NetworkId(*network),
            ip: *ip,
        },
        Request::SetVtepMac { vtep, mac: m } => ConfigCommand::SetVtepMac {
            vtep: *vtep,
            mac: mac(*m),
        },
        Request::SetSettings {
            mac_ageing_secs,
            mac_learn_limit,
        } => ConfigCommand::SetSettings(SwitchSettings {
            mac_ageing: Duration::from_secs(*mac_ageing_secs),
            mac_learn_limit: *mac_learn_limit,
            ..SwitchSettings::default()
        }),
        Request::SetFlowAccounting { enabled, max_flows } => {
            let defaults = FlowTableSettings::default();
            ConfigCommand::SetFlowAccounting(FlowTableSettings {
                enabled: *enabled,
                max_entries: max_flows.map_or(defaults.max_entries, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
                ..defaults
            })
        }
        Request::SetPortPolicy { port, policy } => ConfigCommand::SetPortPolicy {
            port: PortId(*port),
            policy: port_policy(policy),
        },
        Request::SetPortFirewall { port, rules } => ConfigCommand::SetPortFirewall {
            port: PortId(*port),
            rules: rules
                .as_ref()
                .map(|rules| rules.iter().map(firewall_rule).collect()),
        },
        Request::ImportConnections { port, entries } => ConfigCommand::ImportConnections {
            port: PortId(*port),
            entries: entries.iter().map(conn_entry).collect(),
        },
        Request::SetUnderlayPeers { peers } => ConfigCommand::SetUnderlayPeers(peers.clone()),
        Request::ExpectMacMove {
            network,
            mac: m,
            to,
        } => ConfigCommand::ExpectMacMove {
            network: NetworkId(*network),
            mac: mac(*m),
            to: *to,
        },
        Request::RedirectMac {
            network,
            mac: m,
            to,
        } => ConfigCommand::RedirectMac {
            network: NetworkId(*network),
            mac: mac(*m),
            to: *to,
        },
        Request::SetDhcp { network, config } => ConfigCommand::SetDhcp {
            network: NetworkId(*network),
            config: config.map(dhcp_config),
        },
        Request::AddRouter { id } => ConfigCommand::AddRouter(RouterId(*id)),
        Request::RemoveRouter { id } => ConfigCommand::RemoveRouter(RouterId(*id)),
        Request::SetRouterInterface {
            router,
            network,
            ip,
            prefix_len,
            mac: m,
            mtu,
        } => ConfigCommand::SetRouterInterface {
            router: RouterId(*router),
            network: NetworkId(*network),
            addr: *ip,
            prefix_len: *prefix_len,
            mac: mac(*m),
            mtu: *mtu,
        },
        Request::RemoveRouterInterface { network } => {
            ConfigCommand::RemoveRouterInterface(NetworkId(*network))
        }
        Request::AddRoute {
            router,
            prefix: p,
            via,
        } => ConfigCommand::AddRoute {
            router: RouterId(*router),
            prefix: prefix(*p),
            via: *via,
        },
        Request::RemoveRoute { router, prefix: p } => ConfigCommand::RemoveRoute {
            router: RouterId(*router),
            prefix: prefix(*p),
        },
        Request::SetRouterUplink {
            router,
            network,
            ip,
            prefix_len,
            mac: m,
            edge,
            transit_vni,
            mtu,
        } => ConfigCommand::SetRouterUplink {
            router: RouterId(*router),
            network: NetworkId(*network),
            addr: *ip,
            prefix_len: *prefix_len,
            mac: mac(*m),
            edge: match *edge {
                EdgeSpec::Local => Edge::Local,
                EdgeSpec::Remote { vtep } => Edge::Remote { vtep },
            },
            transit_vni: *transit_vni,
            mtu: *mtu,
        },
        Request::RemoveRouterUplink { router } => {
            ConfigCommand::RemoveRouterUplink(RouterId(*router))
        }
        Request::AddFloatingIp {
            router,
            external,
            internal,
        } => ConfigCommand::AddFloatingIp {
            router: RouterId(*router),
            external: *external,
            internal: *internal,
        },
        Request::RemoveFloatingIp { router, external } => ConfigCommand::RemoveFloatingIp {
            router: RouterId(*router),
            external: *external,
        },
    }))
}

/// What the daemon knows of a port beyond the core's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortIoCounters {
    /// Receive errors other than "nothing to read".
    pub rx_errors: u64,
    /// Frames that could not be sent.
    pub tx_errors: u64,
    /// The port's IP MTU.
    pub mtu: u16,
    /// Frames dropped by the port's full queue under an ingress limit.
    pub qos_dropped: u64,
    /// Frames that waited in the port's queue.
    pub qos_delayed: u64,
}

/// The core's counters with the daemon's view of each port (`io`, by port number).
pub fn counters_view(snapshot: &Snapshot, io: &BTreeMap<u32, PortIoCounters>) -> CountersView {
    CountersView {
        ports: snapshot
            .ports
            .iter()
            .map(|(id, c)| {
                let port = io.get(&id.0);
                PortCountersView {
                    id: id.0,
                    traffic: traffic(c),
                    tx_errors: port.map_or(0, |p| p.tx_errors),
                    rx_errors: port.map_or(0, |p| p.rx_errors),
                    mtu: port.map(|p| p.mtu),
                    firewall_hits: None,
                    connections: 0,
                    qos_dropped: port.map_or(0, |p| p.qos_dropped),
                    qos_delayed: port.map_or(0, |p| p.qos_delayed),
                }
            })
            .collect(),
        networks: snapshot
            .networks
            .iter()
            .map(|(id, n)| network_view(*id, n))
            .collect(),
        switch_drops: drops(&snapshot.switch_drops),
        conntrack: None,
        routers: snapshot
            .routers
            .iter()
            .map(|(id, r)| router_view(*id, r))
            .collect(),
        rx_batches: Vec::new(),
        fast_path: None,
    }
}

/// A router's counters on the wire: ICMP errors and drops by name, the non-zero ones.
pub fn router_view(id: RouterId, r: &RouterCounters) -> RouterCountersView {
    RouterCountersView {
        id: id.0,
        routed_packets: r.routed_packets,
        routed_bytes: r.routed_bytes,
        echo_replies: r.echo_replies,
        icmp_sent: IcmpError::ALL
            .iter()
            .map(|&k| (k.as_str().to_owned(), r.icmp(k)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        icmp_rate_limited: r.icmp_rate_limited,
        arp_requests: r.arp_requests,
        drops: drops(&r.drops),
        routed_fragments: r.routed_fragments,
        routed_options: r.routed_options,
        neighbours_learned: r.neighbours_learned,
        nat: r.nat.as_ref().map(nat_view),
    }
}

/// A router's NAT counters on the wire.
pub fn nat_view(n: &NatCounters) -> NatCountersView {
    NatCountersView {
        edge: n.edge,
        sessions: n.sessions,
        sessions_created: n.sessions_created,
        sessions_expired: n.sessions_expired,
        snat_packets: n.snat_packets,
        dnat_packets: n.dnat_packets,
        to_edge_packets: n.to_edge_packets,
        from_transit_packets: n.from_transit_packets,
        garps_sent: n.garps_sent,
    }
}

fn drops(d: &Drops) -> BTreeMap<String, u64> {
    d.iter().map(|(r, n)| (r.as_str().to_owned(), n)).collect()
}

fn traffic(c: &Counters) -> TrafficView {
    TrafficView {
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        drops: drops(&c.drops),
    }
}

fn network_view(id: NetworkId, n: &SegmentCounters) -> NetworkCountersView {
    NetworkCountersView {
        id: id.0,
        traffic: traffic(&n.traffic),
        arp_suppressed: n.arp_suppressed,
        flooded: n.flooded,
        learning_refused: n.learning_refused,
        mac_moves_refused: n.mac_moves_refused,
        mac_redirected: n.mac_redirected,
    }
}

#[cfg(test)]
mod tests;
