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
        Attachment::Vm { network, .. } => PortKind::Vm {
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
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn requests_become_core_commands() {
        let r: Request = serde_json::from_str(
            r#"{"op":"set_dhcp","network":1,"config":{"prefix_len":24,"gateway":"10.0.0.1","lease_secs":60}}"#,
        )
        .unwrap();
        assert!(matches!(
            config_command(&r).unwrap(),
            Some(ConfigCommand::SetDhcp {
                config: Some(DhcpConfig {
                    prefix_len: 24,
                    gateway: Some(_),
                    server: None,
                    mtu: None,
                    lease_secs: 60
                }),
                ..
            })
        ));
        assert_eq!(config_command(&Request::Ping), Ok(None));
        assert_eq!(
            config_command(&Request::RevertMacMoves),
            Ok(Some(ConfigCommand::RevertMacMoves))
        );
        assert_eq!(
            config_command(&Request::AddMacEntry {
                network: 2,
                mac: Mac([0x52, 0x54, 0, 0, 0, 1]),
                location: LocationSpec::Vtep(Ipv4Addr::new(10, 0, 0, 2)),
            }),
            Ok(Some(ConfigCommand::AddMacEntry {
                network: NetworkId(2),
                mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
                location: Location::Vtep(Ipv4Addr::new(10, 0, 0, 2)),
            }))
        );
        let uplink = port_config(&PortSpec {
            id: 0,
            mtu: 1500,
            attach: Attachment::VxlanUplink {
                local_ip: Ipv4Addr::new(10, 0, 0, 1),
            },
        })
        .unwrap();
        assert!(matches!(uplink.kind, PortKind::VxlanUplink { .. }));
    }

    #[test]
    fn firewall_rules_and_connections_become_the_cores() {
        let spec = FirewallRuleSpec {
            direction: DirectionSpec::Ingress,
            protocol: Some(6),
            ports: Some((8080, 8081)),
            remote: vec![vinfra_switch_control::PrefixSpec {
                ip: Ipv4Addr::new(10, 0, 0, 0),
                prefix_len: 24,
            }],
            action: ActionSpec::Allow,
        };
        let rule = firewall_rule(&spec);
        assert_eq!(
            rule,
            FirewallRule {
                direction: Direction::Ingress,
                protocol: Protocol::Tcp,
                ports: PortRange {
                    first: 8080,
                    last: 8081
                },
                remote: vec![Prefix {
                    addr: Ipv4Addr::new(10, 0, 0, 0),
                    len: 24
                }],
                action: Action::Allow,
            }
        );
        for (number, protocol) in [
            (None, Protocol::Any),
            (Some(17), Protocol::Udp),
            (Some(1), Protocol::Icmp),
            (Some(47), Protocol::Other(47)),
        ] {
            let r = firewall_rule(&FirewallRuleSpec {
                protocol: number,
                ports: None,
                direction: DirectionSpec::Egress,
                action: ActionSpec::Deny,
                ..spec.clone()
            });
            assert_eq!(
                (r.protocol, r.ports, r.direction, r.action),
                (protocol, PortRange::ANY, Direction::Egress, Action::Deny)
            );
        }
        assert!(matches!(
            config_command(&Request::SetPortFirewall {
                port: 3,
                rules: Some(vec![spec])
            }),
            Ok(Some(ConfigCommand::SetPortFirewall { port: PortId(3), rules: Some(r) })) if r == vec![rule]
        ));
        assert_eq!(
            config_command(&Request::SetPortFirewall {
                port: 3,
                rules: None
            }),
            Ok(Some(ConfigCommand::SetPortFirewall {
                port: PortId(3),
                rules: None
            }))
        );
        assert_eq!(
            config_command(&Request::ExportConnections { port: 3 }),
            Ok(None)
        );
        // Every TCP state (and none) goes to the wire and back.
        let original = ConnTuple {
            src: Ipv4Addr::new(10, 0, 0, 5),
            dst: Ipv4Addr::new(10, 0, 0, 9),
            protocol: 6,
            src_port: 40000,
            dst_port: 8080,
        };
        for state in TcpState::ALL {
            let entry = ConnEntry {
                original,
                reply: original.reply(),
                origin: Side::ToVm,
                tcp_state: Some(state),
                replied: true,
                remaining: Duration::from_millis(1234),
            };
            let spec = connection_spec(&entry);
            assert_eq!(
                serde_json::to_value(spec.tcp_state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
            assert_eq!(conn_entry(&spec), entry);
        }
        let udp = ConnTuple {
            protocol: 17,
            ..original
        };
        let entry = ConnEntry {
            original: udp,
            reply: udp.reply(),
            origin: Side::FromVm,
            tcp_state: None,
            replied: false,
            remaining: Duration::from_secs(30),
        };
        let spec = connection_spec(&entry);
        assert_eq!((spec.origin, spec.remaining_ms), (SideSpec::FromVm, 30_000));
        assert_eq!(conn_entry(&spec), entry);
        assert!(matches!(
            config_command(&Request::ImportConnections { port: 4, entries: vec![spec] }),
            Ok(Some(ConfigCommand::ImportConnections { port: PortId(4), entries })) if entries == vec![entry]
        ));
    }

    #[test]
    fn routing_requests_become_core_commands_and_counters_go_back() {
        let gw = Mac([0x02, 0x76, 0x72, 0, 0, 1]);
        let requests: Vec<Request> = serde_json::from_str(
            r#"[{"op":"add_router","id":4},
                {"op":"set_router_interface","router":4,"network":1,"ip":"10.1.0.1","prefix_len":24,"mac":"02:76:72:00:00:01"},
                {"op":"add_route","router":4,"prefix":{"ip":"0.0.0.0","prefix_len":0},"via":"10.1.0.254"},
                {"op":"remove_route","router":4,"prefix":{"ip":"0.0.0.0","prefix_len":0}},
                {"op":"remove_router_interface","network":1},
                {"op":"remove_router","id":4}]"#,
        )
        .unwrap();
        let commands: Vec<_> = requests
            .iter()
            .map(|r| config_command(r).unwrap().unwrap())
            .collect();
        let default = Prefix {
            addr: Ipv4Addr::UNSPECIFIED,
            len: 0,
        };
        assert_eq!(
            commands,
            vec![
                ConfigCommand::AddRouter(RouterId(4)),
                ConfigCommand::SetRouterInterface {
                    router: RouterId(4),
                    network: NetworkId(1),
                    addr: Ipv4Addr::new(10, 1, 0, 1),
                    prefix_len: 24,
                    mac: MacAddr(gw.0),
                    mtu: None,
                },
                ConfigCommand::AddRoute {
                    router: RouterId(4),
                    prefix: default,
                    via: Ipv4Addr::new(10, 1, 0, 254),
                },
                ConfigCommand::RemoveRoute {
                    router: RouterId(4),
                    prefix: default,
                },
                ConfigCommand::RemoveRouterInterface(NetworkId(1)),
                ConfigCommand::RemoveRouter(RouterId(4)),
            ]
        );
        let mut counters = RouterCounters {
            routed_packets: 3,
            routed_bytes: 300,
            echo_replies: 1,
            icmp_rate_limited: 2,
            arp_requests: 5,
            routed_fragments: 1,
            ..RouterCounters::default()
        };
        counters.icmp_sent[IcmpError::TimeExceeded as usize] = 7;
        let view = router_view(RouterId(4), &counters);
        assert_eq!(view.id, 4);
        assert_eq!((view.routed_packets, view.routed_bytes), (3, 300));
        assert_eq!(
            view.icmp_sent,
            BTreeMap::from([("time_exceeded".to_owned(), 7)])
        );
        assert_eq!(
            (
                view.icmp_rate_limited,
                view.arp_requests,
                view.routed_fragments
            ),
            (2, 5, 1)
        );
        assert!(view.drops.is_empty());
    }

    #[test]
    fn uplink_requests_become_core_commands_and_nat_counters_go_back() {
        let requests: Vec<Request> = serde_json::from_str(
            r#"[{"op":"set_router_uplink","router":4,"network":9,"ip":"203.0.113.2","prefix_len":24,"mac":"02:76:72:01:00:04","edge":{"kind":"remote","vtep":"192.0.2.1"},"transit_vni":16711684},
                {"op":"add_floating_ip","router":4,"external":"203.0.113.50","internal":"10.1.0.11"},
                {"op":"remove_floating_ip","router":4,"external":"203.0.113.50"},
                {"op":"remove_router_uplink","router":4}]"#,
        )
        .unwrap();
        let commands: Vec<_> = requests
            .iter()
            .map(|r| config_command(r).unwrap().unwrap())
            .collect();
        let external = Ipv4Addr::new(203, 0, 113, 50);
        assert_eq!(
            commands,
            vec![
                ConfigCommand::SetRouterUplink {
                    router: RouterId(4),
                    network: NetworkId(9),
                    addr: Ipv4Addr::new(203, 0, 113, 2),
                    prefix_len: 24,
                    mac: MacAddr([0x02, 0x76, 0x72, 1, 0, 4]),
                    edge: Edge::Remote {
                        vtep: Ipv4Addr::new(192, 0, 2, 1)
                    },
                    transit_vni: 0xff_0004,
                    mtu: None,
                },
                ConfigCommand::AddFloatingIp {
                    router: RouterId(4),
                    external,
                    internal: Ipv4Addr::new(10, 1, 0, 11),
                },
                ConfigCommand::RemoveFloatingIp {
                    router: RouterId(4),
                    external,
                },
                ConfigCommand::RemoveRouterUplink(RouterId(4)),
            ]
        );
        let counters = RouterCounters {
            nat: Some(NatCounters {
                edge: true,
                sessions: 2,
                sessions_created: 5,
                sessions_expired: 3,
                snat_packets: 10,
                dnat_packets: 9,
                to_edge_packets: 0,
                from_transit_packets: 4,
                garps_sent: 1,
            }),
            ..RouterCounters::default()
        };
        let nat = router_view(RouterId(4), &counters).nat.unwrap();
        assert!(nat.edge);
        assert_eq!(
            (nat.sessions, nat.sessions_created, nat.sessions_expired),
            (2, 5, 3)
        );
        assert_eq!((nat.snat_packets, nat.dnat_packets), (10, 9));
        assert_eq!((nat.from_transit_packets, nat.garps_sent), (4, 1));
        assert_eq!(
            router_view(RouterId(4), &RouterCounters::default()).nat,
            None
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(
            segment(NetworkSpec::Vlan { vid: 4095 }),
            Err(BadValue::Vid(4095))
        );
        assert_eq!(segment(NetworkSpec::Vlan { vid: 0 }), Err(BadValue::Vid(0)));
        assert_eq!(
            segment(NetworkSpec::Overlay { vni: 1 << 24 }),
            Err(BadValue::Vni(1 << 24))
        );
        assert_eq!(
            config_command(&Request::AddNetwork {
                id: 1,
                kind: NetworkSpec::Overlay { vni: 1 << 24 }
            }),
            Err(BadValue::Vni(1 << 24))
        );
    }
}
