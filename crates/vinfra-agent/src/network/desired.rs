//! [`DesiredSwitch`]: what the agent wants its host's switch to hold, and the requests that
//! build it.
//!
//! What the agent adds to the console's configuration:
//! - the VXLAN uplink on its underlay address (port [`UPLINK_PORT`]), unless the switch opened it
//!   itself (`vinfra switch --underlay-ip`);
//! - the 802.1Q trunk on the host's interface to the physical network (`vinfra agent
//!   --trunk-interface`), port [`TRUNK_PORT`], which carries the VLAN networks;
//! - one VM port per NIC of each VM that runs here (or waits for an incoming migration), a
//!   QEMU `-netdev dgram` pair of Unix sockets in the VM's directory;
//! - a static MAC entry per local NIC (MAC → its port). Console entries for MACs that are local
//!   or that point at this host's own underlay address are left out.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vinfra_proto::{HostSwitchConfig, SwitchDhcp, SwitchNetwork, SwitchNetworkKind};
use vinfra_switch_control::{
    AllowedAddressSpec, Attachment, DhcpSpec, LocationSpec, Mac, NetworkSpec, PortPolicySpec,
    PortSpec, Request, StormSpec, UPLINK_PORT,
};

use super::attachment::{SwitchAttachment, TRUNK_MTU, TRUNK_PORT};
use super::mac;

/// One NIC of a VM as attached on this host (kept in the VM's record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNic {
    /// Network name.
    pub network: String,
    /// MAC address.
    pub mac: String,
    /// Port security: the sources the NIC may send from (its MAC and address, then its allowed
    /// address pairs); `None`: off (also for records written before port security).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<AllowedAddressSpec>>,
    /// IP MTU given to the guest (`host_mtu` of the virtio-net device).
    pub mtu: u16,
    /// The switch's port number.
    pub port: u32,
    /// The socket the switch binds (QEMU's `remote.path`).
    pub switch_socket: PathBuf,
    /// The socket QEMU binds (its `local.path`).
    pub qemu_socket: PathBuf,
}

/// The switch configuration the agent wants: the console's plus this host's VM NICs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DesiredSwitch {
    /// The configuration last received from the console.
    pub config: HostSwitchConfig,
    /// The NICs of the VMs on this host, by VM.
    pub vms: BTreeMap<Uuid, Vec<VmNic>>,
}

fn network_spec(kind: SwitchNetworkKind) -> NetworkSpec {
    match kind {
        SwitchNetworkKind::Overlay { vni } => NetworkSpec::Overlay { vni },
        SwitchNetworkKind::Vlan { vid } => NetworkSpec::Vlan { vid },
    }
}

/// Most learned MAC addresses behind one VM port (a VM with port security off bridging others,
/// say); frames from further addresses are dropped.
pub const PORT_MAC_LIMIT: u32 = 64;

/// Storm control of every VM port: broadcast, multicast and unknown-unicast frames it may send
/// per second, and at once.
pub const PORT_STORM: StormSpec = StormSpec {
    frames_per_sec: 5_000,
    burst: 10_000,
};

/// The policy of a VM NIC's port: port security as the NIC says, the MAC limit and storm
/// control.
fn port_policy(nic: &VmNic) -> PortPolicySpec {
    PortPolicySpec {
        allowed: nic.allowed.clone(),
        mac_limit: Some(PORT_MAC_LIMIT),
        storm: Some(PORT_STORM),
    }
}

/// Lease time the switch's DHCP responder hands out.
const DHCP_LEASE_SECS: u32 = 3600;

fn dhcp_spec(d: &SwitchDhcp) -> DhcpSpec {
    DhcpSpec {
        prefix_len: d.prefix_len,
        gateway: d.gateway,
        server: Some(d.server),
        mtu: Some(d.mtu),
        lease_secs: DHCP_LEASE_SECS,
    }
}

impl DesiredSwitch {
    /// The requests of the whole desired configuration, in an order that applies: networks, the
    /// uplink (unless `uplink_builtin`), the trunk, the underlay peers, VM ports each followed by
    /// its policy, flood lists, MAC entries and the moves expected of them, ARP entries, DHCP
    /// responders.
    pub fn requests(&self, attachment: &SwitchAttachment, uplink_builtin: bool) -> Vec<Request> {
        let DesiredSwitch { config, vms } = self;
        let by_name: BTreeMap<&str, &SwitchNetwork> = config
            .networks
            .iter()
            .map(|n| (n.name.as_str(), n))
            .collect();
        let mut out: Vec<Request> = config
            .networks
            .iter()
            .map(|n| Request::AddNetwork {
                id: u32::from(n.id),
                kind: network_spec(n.kind),
            })
            .collect();
        if let (Some(local_ip), false) = (attachment.underlay_ip, uplink_builtin) {
            out.push(Request::AddPort(PortSpec {
                id: UPLINK_PORT,
                mtu: attachment.underlay_mtu,
                attach: Attachment::VxlanUplink { local_ip },
            }));
        }
        if let Some(interface) = &attachment.trunk_interface {
            out.push(Request::AddPort(PortSpec {
                id: TRUNK_PORT,
                mtu: TRUNK_MTU,
                attach: Attachment::VlanTrunk {
                    interface: interface.clone(),
                },
            }));
        }
        let mut peers: Vec<Ipv4Addr> = config
            .underlay_peers
            .iter()
            .copied()
            .filter(|ip| Some(*ip) != attachment.underlay_ip)
            .collect();
        peers.sort();
        peers.dedup();
        out.push(Request::SetUnderlayPeers { peers: Some(peers) });
        // Local NICs whose network is configured, by port number.
        let mut nics: Vec<(&VmNic, &SwitchNetwork)> = vms
            .values()
            .flatten()
            .filter_map(|nic| by_name.get(nic.network.as_str()).map(|n| (nic, *n)))
            .collect();
        nics.sort_by_key(|(nic, _)| nic.port);
        for (nic, n) in &nics {
            out.push(Request::AddPort(PortSpec {
                id: nic.port,
                mtu: n.mtu,
                attach: Attachment::Vm {
                    network: u32::from(n.id),
                    socket: nic.switch_socket.clone(),
                    peer: nic.qemu_socket.clone(),
                },
            }));
            out.push(Request::SetPortPolicy {
                port: nic.port,
                policy: port_policy(nic),
            });
        }
        for n in &config.networks {
            if let SwitchNetworkKind::Overlay { .. } = n.kind {
                let mut vteps: Vec<Ipv4Addr> = n
                    .flood
                    .iter()
                    .copied()
                    .filter(|ip| Some(*ip) != attachment.underlay_ip)
                    .collect();
                vteps.sort();
                vteps.dedup();
                out.push(Request::SetFloodList {
                    network: u32::from(n.id),
                    vteps,
                });
            }
        }
        let mut macs: BTreeMap<(u32, Mac), LocationSpec> = BTreeMap::new();
        let mut moves: BTreeMap<(u32, Mac), Ipv4Addr> = BTreeMap::new();
        for m in &config.macs {
            let (Some(n), Ok(mac)) = (by_name.get(m.network.as_str()), mac::unicast(&m.mac)) else {
                continue;
            };
            if Some(m.host_ip) != attachment.underlay_ip {
                macs.insert((u32::from(n.id), mac), LocationSpec::Vtep(m.host_ip));
                if let Some(to) = m.moving_to.filter(|to| Some(*to) != attachment.underlay_ip) {
                    moves.insert((u32::from(n.id), mac), to);
                }
            }
        }
        // Local NICs win over what the console believed (a VM that just arrived here).
        for (nic, n) in &nics {
            if let Ok(mac) = mac::unicast(&nic.mac) {
                macs.insert((u32::from(n.id), mac), LocationSpec::Port(nic.port));
            }
        }
        // A MAC that is local here moves by this host's own configuration, not an announcement.
        moves.retain(|key, _| matches!(macs.get(key), Some(LocationSpec::Vtep(_))));
        out.extend(
            macs.into_iter()
                .map(|((network, mac), location)| Request::AddMacEntry {
                    network,
                    mac,
                    location,
                }),
        );
        out.extend(
            moves
                .into_iter()
                .map(|((network, mac), to)| Request::ExpectMacMove {
                    network,
                    mac,
                    to: Some(to),
                }),
        );
        let mut arps: BTreeMap<(u32, Ipv4Addr), Mac> = BTreeMap::new();
        for a in &config.arps {
            if let (Some(n), Ok(mac)) = (by_name.get(a.network.as_str()), mac::unicast(&a.mac)) {
                arps.insert((u32::from(n.id), a.ip), mac);
            }
        }
        out.extend(
            arps.into_iter()
                .map(|((network, ip), mac)| Request::AddArpEntry { network, ip, mac }),
        );
        out.extend(config.networks.iter().filter_map(|n| {
            n.dhcp.as_ref().map(|d| Request::SetDhcp {
                network: u32::from(n.id),
                config: Some(dhcp_spec(d)),
            })
        }));
        out
    }
}
