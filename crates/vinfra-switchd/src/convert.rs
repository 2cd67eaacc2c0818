//! The control protocol's wire types ([`vinfra_switch_control`]) in the core's terms, and back:
//! a [`Request`] becomes a [`ConfigCommand`] (its numbers checked here, where the core's types
//! are), a port's [`PortSpec`] its [`PortConfig`], the core's counters a [`CountersView`].

use std::collections::BTreeMap;
use std::time::Duration;

use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, Counters, DhcpConfig, Drops, Location, NetworkId, PortConfig,
    PortId, PortKind, PortPolicy, Segment, SegmentCounters, Snapshot, StormControl, SwitchSettings,
};
use vinfra_switch::wire::{MacAddr, VlanId, Vni};
use vinfra_switch_control::{
    Attachment, CountersView, DhcpSpec, LocationSpec, Mac, NetworkCountersView, NetworkSpec,
    PortCountersView, PortPolicySpec, PortSpec, Request, TrafficView,
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

/// The core's port configuration of a port to open.
pub fn port_config(spec: &PortSpec) -> PortConfig {
    let kind = match &spec.attach {
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
    PortConfig {
        id: PortId(spec.id),
        kind,
        mtu: spec.mtu,
    }
}

/// The core command of a request that is one; `Ok(None)` for `ping`, `get_config` and
/// `get_counters`.
pub fn config_command(request: &Request) -> Result<Option<ConfigCommand>, BadValue> {
    Ok(Some(match request {
        Request::Ping | Request::GetConfig | Request::GetCounters => return Ok(None),
        Request::AddNetwork { id, kind } => ConfigCommand::AddNetwork {
            id: NetworkId(*id),
            segment: segment(*kind)?,
        },
        Request::RemoveNetwork { id } => ConfigCommand::RemoveNetwork(NetworkId(*id)),
        Request::AddPort(spec) => ConfigCommand::AddPort(port_config(spec)),
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
        Request::SetPortPolicy { port, policy } => ConfigCommand::SetPortPolicy {
            port: PortId(*port),
            policy: port_policy(policy),
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
                }
            })
            .collect(),
        networks: snapshot
            .networks
            .iter()
            .map(|(id, n)| network_view(*id, n))
            .collect(),
        switch_drops: drops(&snapshot.switch_drops),
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
        });
        assert!(matches!(uplink.kind, PortKind::VxlanUplink { .. }));
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
