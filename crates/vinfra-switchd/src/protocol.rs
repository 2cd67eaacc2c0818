//! The control protocol: one JSON object per line, a [`Request`] from the agent, a [`Response`]
//! from the switch, in order.
//!
//! The requests are the core's configuration [`Command`]s, with ports carrying what the daemon
//! needs to open them (a socket path, a tap name, an interface), plus `ping`, `get_config` and
//! `get_counters`. Example:
//!
//! ```text
//! {"op":"add_network","id":1,"kind":{"overlay":{"vni":5001}}}
//! {"status":"ok"}
//! {"op":"add_port","id":3,"mtu":1450,"attach":{"kind":"host","network":1,"tap":"sw-tap3"}}
//! {"status":"ok"}
//! {"op":"get_counters"}
//! {"status":"counters","ports":[…],"networks":[…],"switch_drops":{}}
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vinfra_switch::datapath::{
    Command, Counters, DhcpConfig, Drops, Location, NetworkCounters, NetworkId, NetworkKind,
    PortConfig, PortId, PortKind, Snapshot, SwitchSettings,
};
use vinfra_switch::wire::{MacAddr, VlanId, Vni};

/// A MAC address, written `52:54:00:12:34:56`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The core's form.
    pub fn addr(self) -> MacAddr {
        MacAddr(self.0)
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        MacAddr(self.0).fmt(f)
    }
}

impl std::str::FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Mac, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts
                .next()
                .ok_or_else(|| format!("bad MAC address {s:?}"))?;
            if part.len() != 2 {
                return Err(format!("bad MAC address {s:?}"));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| format!("bad MAC address {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("bad MAC address {s:?}"));
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A network's kind: `{"overlay":{"vni":5001}}` or `{"vlan":{"vid":100}}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum NetworkSpec {
    /// A VXLAN overlay.
    Overlay {
        /// VXLAN network identifier, 0 to 2^24 - 1.
        vni: u32,
    },
    /// A VLAN on the trunk.
    Vlan {
        /// VLAN ID, 1 to 4094.
        vid: u16,
    },
}

/// What a port is attached to and how the daemon reaches it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attachment {
    /// A VM's vNIC through QEMU's `-netdev dgram` over Unix sockets: the switch binds `socket`
    /// (QEMU's `remote.path`) and sends to `peer` (QEMU's `local.path`).
    Vm {
        /// The network.
        network: u32,
        /// The switch's socket path.
        socket: PathBuf,
        /// QEMU's socket path.
        peer: PathBuf,
    },
    /// A tap interface the switch creates (or opens) in its network namespace.
    Host {
        /// The network.
        network: u32,
        /// Interface name.
        tap: String,
    },
    /// The VXLAN uplink: a UDP socket on `local_ip`:4789.
    VxlanUplink {
        /// This host's underlay (VTEP) address.
        local_ip: Ipv4Addr,
    },
    /// The 802.1Q trunk: an AF_PACKET socket on an interface.
    VlanTrunk {
        /// Interface name.
        interface: String,
    },
}

/// A port to add.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct PortSpec {
    /// Port number (below 65536).
    pub id: u32,
    /// IP MTU.
    pub mtu: u16,
    /// Where it goes.
    pub attach: Attachment,
}

/// Where a MAC address lives: `{"port":3}` or `{"vtep":"10.1.0.2"}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LocationSpec {
    /// Behind a local port.
    Port(u32),
    /// On another host.
    Vtep(Ipv4Addr),
}

/// The switch's DHCP responder on a network: [`DhcpConfig`].
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct DhcpSpec {
    /// Prefix length of the subnet (1 to 32).
    pub prefix_len: u8,
    /// Default gateway, also the server identifier when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Server identifier when there is no gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Ipv4Addr>,
    /// Interface MTU to send; absent sends the client port's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Lease time, seconds.
    pub lease_secs: u32,
}

impl DhcpSpec {
    /// The core's form.
    pub fn config(self) -> DhcpConfig {
        DhcpConfig {
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            server: self.server,
            mtu: self.mtu,
            lease_secs: self.lease_secs,
        }
    }
}

/// A request to the switch.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answered with `pong`.
    Ping,
    /// Answered with `config`: requests that rebuild the current configuration.
    GetConfig,
    /// Answered with `counters`.
    GetCounters,
    /// [`Command::AddNetwork`].
    AddNetwork {
        /// Network number.
        id: u32,
        /// Overlay or VLAN.
        kind: NetworkSpec,
    },
    /// [`Command::RemoveNetwork`].
    RemoveNetwork {
        /// Network number.
        id: u32,
    },
    /// [`Command::AddPort`], after opening the port's socket or device.
    AddPort(PortSpec),
    /// [`Command::RemovePort`], then closes the port.
    RemovePort {
        /// Port number.
        id: u32,
    },
    /// [`Command::SetFloodList`].
    SetFloodList {
        /// Overlay network.
        network: u32,
        /// Remote VTEPs.
        vteps: Vec<Ipv4Addr>,
    },
    /// [`Command::AddMacEntry`].
    AddMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// Where it lives.
        location: LocationSpec,
    },
    /// [`Command::RemoveMacEntry`].
    RemoveMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
    },
    /// [`Command::AddArpEntry`].
    AddArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
        /// Its owner.
        mac: Mac,
    },
    /// [`Command::RemoveArpEntry`].
    RemoveArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
    },
    /// [`Command::SetVtepMac`]. Accepted and kept for completeness: the UDP uplink lets the
    /// kernel resolve underlay MACs.
    SetVtepMac {
        /// Remote VTEP.
        vtep: Ipv4Addr,
        /// Its underlay MAC.
        mac: Mac,
    },
    /// [`Command::SetSettings`].
    SetSettings {
        /// Learned MAC ageing, seconds.
        mac_ageing_secs: u64,
        /// Most learned MACs per network.
        mac_learn_limit: usize,
    },
    /// [`Command::SetDhcp`]: enables (`config` set) or disables the DHCP responder.
    SetDhcp {
        /// Network.
        network: u32,
        /// The responder's parameters; absent or `null` disables it.
        #[serde(default)]
        config: Option<DhcpSpec>,
    },
}

/// A response.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// The request was applied.
    Ok,
    /// The answer to `ping`.
    Pong,
    /// The answer to `get_config`.
    Config {
        /// Requests that rebuild the configuration, in order.
        requests: Vec<Request>,
    },
    /// The answer to `get_counters`.
    Counters(CountersView),
    /// The request was refused and changed nothing.
    Error {
        /// Why.
        message: String,
    },
}

/// Traffic counters of a port or network.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct TrafficView {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops by reason (snake_case names of `DropReason`).
    pub drops: BTreeMap<String, u64>,
}

impl TrafficView {
    /// Drops for one reason.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }

    /// Every drop.
    pub fn drops_total(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// One port's counters.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct PortCountersView {
    /// Port number.
    pub id: u32,
    /// Traffic seen by the core.
    #[serde(flatten)]
    pub traffic: TrafficView,
    /// Frames the daemon could not send on the port (peer gone, queue full).
    pub tx_errors: u64,
    /// Receive errors other than "nothing to read".
    pub rx_errors: u64,
    /// The port's IP MTU as configured (for the uplink: the underlay's). Absent from older
    /// switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// One network's counters.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct NetworkCountersView {
    /// Network number.
    pub id: u32,
    /// Inner frames in and out.
    #[serde(flatten)]
    pub traffic: TrafficView,
    /// ARP requests answered by the switch.
    pub arp_suppressed: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Sources not learned (table full).
    pub learning_refused: u64,
}

/// Every counter.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct CountersView {
    /// Per port.
    pub ports: Vec<PortCountersView>,
    /// Per network.
    pub networks: Vec<NetworkCountersView>,
    /// Drops that belong to no port.
    pub switch_drops: BTreeMap<String, u64>,
}

impl CountersView {
    /// A port's counters.
    pub fn port(&self, id: u32) -> Option<&PortCountersView> {
        self.ports.iter().find(|p| p.id == id)
    }

    /// A network's counters.
    pub fn network(&self, id: u32) -> Option<&NetworkCountersView> {
        self.networks.iter().find(|n| n.id == id)
    }

    /// The core's counters with the daemon's view of each port: `io` holds its receive and
    /// send errors and its MTU.
    pub(crate) fn from_snapshot(snapshot: &Snapshot, io: &BTreeMap<u32, (u64, u64, u16)>) -> Self {
        CountersView {
            ports: snapshot
                .ports
                .iter()
                .map(|(id, c)| {
                    let (rx_errors, tx_errors, mtu) = match io.get(&id.0) {
                        Some(&(rx, tx, mtu)) => (rx, tx, Some(mtu)),
                        None => (0, 0, None),
                    };
                    PortCountersView {
                        id: id.0,
                        traffic: traffic(c),
                        tx_errors,
                        rx_errors,
                        mtu,
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

fn network_view(id: NetworkId, n: &NetworkCounters) -> NetworkCountersView {
    NetworkCountersView {
        id: id.0,
        traffic: traffic(&n.traffic),
        arp_suppressed: n.arp_suppressed,
        flooded: n.flooded,
        learning_refused: n.learning_refused,
    }
}

impl NetworkSpec {
    /// The core's form.
    pub fn kind(self) -> Result<NetworkKind, String> {
        match self {
            NetworkSpec::Overlay { vni } => Vni::new(vni)
                .map(|vni| NetworkKind::Overlay { vni })
                .ok_or_else(|| format!("VNI {vni} is above 2^24 - 1")),
            NetworkSpec::Vlan { vid } => VlanId::new(vid)
                .map(|vid| NetworkKind::Vlan { vid })
                .ok_or_else(|| format!("VLAN ID {vid} is not in 1..=4094")),
        }
    }
}

impl LocationSpec {
    fn location(self) -> Location {
        match self {
            LocationSpec::Port(p) => Location::Port(PortId(p)),
            LocationSpec::Vtep(ip) => Location::Vtep(ip),
        }
    }
}

/// MAC the switch uses as the underlay source and next hop of the UDP uplink. The kernel
/// rewrites the underlay Ethernet header: these bytes never reach the wire.
pub(crate) const UNDERLAY_PLACEHOLDER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

impl PortSpec {
    /// The core's port configuration.
    pub fn config(&self) -> PortConfig {
        let kind = match &self.attach {
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
            id: PortId(self.id),
            kind,
            mtu: self.mtu,
        }
    }
}

impl Request {
    /// The core command, for requests that are one; `Ok(None)` for the others.
    pub fn command(&self) -> Result<Option<Command>, String> {
        Ok(Some(match self {
            Request::Ping | Request::GetConfig | Request::GetCounters => return Ok(None),
            Request::AddNetwork { id, kind } => Command::AddNetwork {
                id: NetworkId(*id),
                kind: kind.kind()?,
            },
            Request::RemoveNetwork { id } => Command::RemoveNetwork(NetworkId(*id)),
            Request::AddPort(spec) => Command::AddPort(spec.config()),
            Request::RemovePort { id } => Command::RemovePort(PortId(*id)),
            Request::SetFloodList { network, vteps } => Command::SetFloodList {
                network: NetworkId(*network),
                vteps: vteps.clone(),
            },
            Request::AddMacEntry {
                network,
                mac,
                location,
            } => Command::AddMacEntry {
                network: NetworkId(*network),
                mac: mac.addr(),
                location: location.location(),
            },
            Request::RemoveMacEntry { network, mac } => Command::RemoveMacEntry {
                network: NetworkId(*network),
                mac: mac.addr(),
            },
            Request::AddArpEntry { network, ip, mac } => Command::AddArpEntry {
                network: NetworkId(*network),
                ip: *ip,
                mac: mac.addr(),
            },
            Request::RemoveArpEntry { network, ip } => Command::RemoveArpEntry {
                network: NetworkId(*network),
                ip: *ip,
            },
            Request::SetVtepMac { vtep, mac } => Command::SetVtepMac {
                vtep: *vtep,
                mac: mac.addr(),
            },
            Request::SetSettings {
                mac_ageing_secs,
                mac_learn_limit,
            } => Command::SetSettings(SwitchSettings {
                mac_ageing: Duration::from_secs(*mac_ageing_secs),
                mac_learn_limit: *mac_learn_limit,
            }),
            Request::SetDhcp { network, config } => Command::SetDhcp {
                network: NetworkId(*network),
                config: config.map(DhcpSpec::config),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        let requests = vec![
            Request::Ping,
            Request::AddNetwork {
                id: 1,
                kind: NetworkSpec::Overlay { vni: 5001 },
            },
            Request::AddPort(PortSpec {
                id: 2,
                mtu: 1450,
                attach: Attachment::Vm {
                    network: 1,
                    socket: "/run/x/sw.sock".into(),
                    peer: "/run/x/vm.sock".into(),
                },
            }),
            Request::AddMacEntry {
                network: 1,
                mac: "52:54:00:00:00:01".parse().unwrap(),
                location: LocationSpec::Vtep(Ipv4Addr::new(10, 0, 0, 2)),
            },
            Request::SetDhcp {
                network: 1,
                config: Some(DhcpSpec {
                    prefix_len: 24,
                    gateway: None,
                    server: Some(Ipv4Addr::new(10, 0, 0, 254)),
                    mtu: Some(1450),
                    lease_secs: 3600,
                }),
            },
            Request::SetDhcp {
                network: 1,
                config: None,
            },
        ];
        for r in requests {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        let r: Request = serde_json::from_str(
            r#"{"op":"add_port","id":3,"mtu":1450,"attach":{"kind":"host","network":1,"tap":"t"}}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::AddPort(PortSpec { id: 3, .. })));
        let r: Request = serde_json::from_str(
            r#"{"op":"set_dhcp","network":1,"config":{"prefix_len":24,"gateway":"10.0.0.1","lease_secs":60}}"#,
        )
        .unwrap();
        assert!(matches!(
            r.command().unwrap(),
            Some(Command::SetDhcp {
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
    }

    #[test]
    fn bad_values_are_refused() {
        assert!("52:54:00:00:00".parse::<Mac>().is_err());
        assert!("52:54:00:00:00:0g".parse::<Mac>().is_err());
        assert!(NetworkSpec::Vlan { vid: 4095 }.kind().is_err());
        assert!(NetworkSpec::Overlay { vni: 1 << 24 }.kind().is_err());
    }
}
