//! The messages: one JSON object per line, a [`Request`] from the agent, a [`Response`] from
//! the switch, in order.
//!
//! The requests are the switch core's configuration commands (`ConfigCommand` in
//! `vinfra-switch`), with ports carrying what the daemon needs to open them (a socket path, a tap
//! name, an interface), plus `ping`, `get_config` and `get_counters`. The types here are the
//! wire's own: plain numbers and addresses, checked and converted by the daemon. Example:
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

use serde::{Deserialize, Serialize};

/// A MAC address, written `52:54:00:12:34:56`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A MAC address that does not parse: not six two-digit hex bytes separated by `:`.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("bad MAC address {0:?}")]
pub struct BadMac(pub String);

impl std::str::FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl Mac {
    /// True for a group (multicast or broadcast) address: the low bit of the first octet.
    pub fn is_group(self) -> bool {
        self.0[0] & 1 != 0
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

/// The switch's DHCP responder on a network (the core's `DhcpConfig`).
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

/// A source a port may send from (the core's `AllowedAddress`): a MAC and the IPv4 prefix it
/// may use; `prefix_len` 0 allows any IPv4 source from that MAC.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct AllowedAddressSpec {
    /// A unicast MAC address.
    pub mac: Mac,
    /// The prefix's address.
    pub ip: Ipv4Addr,
    /// The prefix's length, 0 to 32.
    pub prefix_len: u8,
}

/// Storm control (the core's `StormControl`): flooded frames a port may send.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct StormSpec {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Bucket depth, frames.
    pub burst: u32,
}

/// An access port's policy (the core's `PortPolicy`); absent fields are off.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct PortPolicySpec {
    /// Port security: the sources the port may send from; absent or `null` is off, `[]` sends
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<AllowedAddressSpec>>,
    /// Most learned MAC entries pointing at the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit: Option<u32>,
    /// Storm control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormSpec>,
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
    /// The core's `ConfigCommand::AddNetwork`.
    AddNetwork {
        /// Network number.
        id: u32,
        /// Overlay or VLAN.
        kind: NetworkSpec,
    },
    /// The core's `ConfigCommand::RemoveNetwork`.
    RemoveNetwork {
        /// Network number.
        id: u32,
    },
    /// The core's `ConfigCommand::AddPort`, after opening the port's socket or device.
    AddPort(PortSpec),
    /// The core's `ConfigCommand::RemovePort`, then closes the port.
    RemovePort {
        /// Port number.
        id: u32,
    },
    /// The core's `ConfigCommand::SetFloodList`.
    SetFloodList {
        /// Overlay network.
        network: u32,
        /// Remote VTEPs.
        vteps: Vec<Ipv4Addr>,
    },
    /// The core's `ConfigCommand::AddMacEntry`.
    AddMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// Where it lives.
        location: LocationSpec,
    },
    /// The core's `ConfigCommand::RemoveMacEntry`.
    RemoveMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
    },
    /// The core's `ConfigCommand::RevertMacMoves`: every static MAC entry that MAC mobility moved
    /// to another host goes back where `add_mac_entry` put it. An action, not configuration:
    /// `get_config` never lists it.
    RevertMacMoves,
    /// The core's `ConfigCommand::AddArpEntry`.
    AddArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
        /// Its owner.
        mac: Mac,
    },
    /// The core's `ConfigCommand::RemoveArpEntry`.
    RemoveArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
    },
    /// The core's `ConfigCommand::SetVtepMac`. Accepted and kept for completeness: the UDP uplink lets the
    /// kernel resolve underlay MACs.
    SetVtepMac {
        /// Remote VTEP.
        vtep: Ipv4Addr,
        /// Its underlay MAC.
        mac: Mac,
    },
    /// The core's `ConfigCommand::SetSettings`.
    SetSettings {
        /// Learned MAC ageing, seconds.
        mac_ageing_secs: u64,
        /// Most learned MACs per network.
        mac_learn_limit: usize,
    },
    /// The core's `ConfigCommand::SetPortPolicy`; a port's policy goes with the port.
    SetPortPolicy {
        /// A VM or host port.
        port: u32,
        /// Its policy.
        policy: PortPolicySpec,
    },
    /// The core's `ConfigCommand::SetUnderlayPeers`: the VXLAN uplink accepts packets from
    /// these underlay addresses only; absent or `null` accepts any.
    SetUnderlayPeers {
        /// The other hosts' underlay addresses.
        #[serde(default)]
        peers: Option<Vec<Ipv4Addr>>,
    },
    /// The core's `ConfigCommand::ExpectMacMove`: a static entry for a remote host may move to
    /// VTEP `to` on an announcement from there; absent or `null` withdraws that.
    ExpectMacMove {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// The VTEP it may move to.
        #[serde(default)]
        to: Option<Ipv4Addr>,
    },
    /// The core's `ConfigCommand::SetDhcp`: enables (`config` set) or disables the DHCP responder.
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
    /// Announcements that would have moved a remote VM's MAC entry without the control plane
    /// expecting it; the entry stayed.
    #[serde(default)]
    pub mac_moves_refused: u64,
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
            Request::RevertMacMoves,
        ];
        for r in requests {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::RevertMacMoves).unwrap(),
            r#"{"op":"revert_mac_moves"}"#
        );
        let r: Request = serde_json::from_str(
            r#"{"op":"add_port","id":3,"mtu":1450,"attach":{"kind":"host","network":1,"tap":"t"}}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::AddPort(PortSpec { id: 3, .. })));
        let r: Request = serde_json::from_str(
            r#"{"op":"set_dhcp","network":1,"config":{"prefix_len":24,"gateway":"10.0.0.1","lease_secs":60}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::SetDhcp {
                network: 1,
                config: Some(DhcpSpec {
                    prefix_len: 24,
                    gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                    server: None,
                    mtu: None,
                    lease_secs: 60
                })
            }
        );
    }

    #[test]
    fn macs_parse_print_and_refuse_bad_text() {
        let mac: Mac = "52:54:00:0A:bc:01".parse().unwrap();
        assert_eq!(mac, Mac([0x52, 0x54, 0, 0x0a, 0xbc, 1]));
        assert_eq!(mac.to_string(), "52:54:00:0a:bc:01");
        assert!(!mac.is_group());
        assert!(Mac([1, 0, 0x5e, 0, 0, 1]).is_group());
        for bad in [
            "52:54:00:00:00",
            "52:54:00:00:00:0g",
            "52:54:00:00:00:01:02",
            "5254.0000.0001",
        ] {
            assert_eq!(bad.parse::<Mac>(), Err(BadMac(bad.into())), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"52:54:00:0a:bc:01\""
        );
        assert!(serde_json::from_str::<Mac>("\"52:54\"").is_err());
    }

    #[test]
    fn counters_are_found_by_number() {
        let view = CountersView {
            ports: vec![PortCountersView {
                id: 3,
                traffic: TrafficView {
                    drops: [("runt".to_string(), 2), ("mtu".to_string(), 1)].into(),
                    ..Default::default()
                },
                ..Default::default()
            }],
            networks: vec![NetworkCountersView {
                id: 7,
                flooded: 4,
                ..Default::default()
            }],
            switch_drops: BTreeMap::new(),
        };
        let port = view.port(3).unwrap();
        assert_eq!(
            (port.traffic.dropped("runt"), port.traffic.drops_total()),
            (2, 3)
        );
        assert_eq!(port.traffic.dropped("other"), 0);
        assert!(view.port(4).is_none());
        assert_eq!(view.network(7).map(|n| n.flooded), Some(4));
        // Counters from a switch without port MTUs still parse.
        let line = r#"{"status":"counters","ports":[{"id":0,"rx_packets":1,"rx_bytes":2,"tx_packets":3,"tx_bytes":4,"drops":{},"tx_errors":0,"rx_errors":0}],"networks":[],"switch_drops":{}}"#;
        let Response::Counters(c) = serde_json::from_str(line).unwrap() else {
            panic!("not counters");
        };
        assert_eq!(c.ports[0].mtu, None);
        assert_eq!(c.ports[0].traffic.tx_packets, 3);
    }
}
