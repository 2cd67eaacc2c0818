//! [`DesiredSwitch`]: what the agent wants its host's switch to hold, and the requests that
//! build it.
//!
//! What the agent adds to the console's configuration:
//! - the VXLAN uplink on its underlay address (port [`UPLINK_PORT`]), unless the switch opened it
//!   itself (`vinfra switch --underlay-ip`);
//! - the 802.1Q trunk on the host's interface to the physical network (`vinfra agent
//!   --trunk-interface`), port [`TRUNK_PORT`], which carries the VLAN networks;
//! - one VM port per NIC of each VM that runs here (or waits for an incoming migration): a tap
//!   QEMU opens (`-netdev tap`, offloads), or a QEMU `-netdev dgram` pair of Unix sockets in the
//!   VM's directory (`vinfra agent --vm-nic-ports dgram`, and NICs with sub-interfaces);
//! - a static MAC entry per local NIC (MAC → its port). Console entries for MACs that are local
//!   or that point at this host's own underlay address are left out;
//! - each VM port's firewall: the rules of the console's `firewalls` entry for the NIC (its
//!   network and MAC), or none (`rules: null`, not filtered) for a NIC without one;
//! - each VM port's QoS: the console's `qos` entry for the NIC, its default burst and weight
//!   filled in, or none (`qos: null`) for a NIC without one.
//!
//! The console's routers go to the switch as they are: each router (`add_router`), its
//! interfaces by network number (`set_router_interface`), its uplink (`set_router_uplink`, the
//! edge `local` when its VTEP is this host's underlay address: [`super::uplink`]) and floating
//! IPs (`add_floating_ip`), its static routes (`add_route`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vinfra_proto::{
    HostSwitchConfig, NicQos, SgAction, SgDirection, SwitchDhcp, SwitchFirewallRule, SwitchNetwork,
    SwitchNetworkKind, SwitchNicFirewall, SwitchNicQos, SwitchNicSecurity,
};
use vinfra_switch_control::{
    ActionSpec, AllowedAddressSpec, Attachment, DhcpSpec, DirectionSpec, FirewallRuleSpec,
    LocationSpec, Mac, NetworkSpec, PortPolicySpec, PortSpec, PrefixSpec, PrioritySpec, QosSpec,
    RateSpec, Request, StormSpec, UPLINK_PORT,
};
use vinfra_types::qos::{NicPriority, NicRate};
use vinfra_types::{AllowedAddressPair, NicSpec};

use super::attachment::{SwitchAttachment, TRUNK_MTU, TRUNK_PORT};
use super::mac;
use super::route;
use super::uplink;

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
    /// The tap of a NIC on a tap port ([`super::VmNicPorts::Tap`]; for a sub-interface, its
    /// NIC's); `None`: the NIC's port is the pair of sockets above (also for records written
    /// before tap ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    /// The user the VM's QEMU runs as: its tap and the switch's socket are made that user's.
    /// `None`: QEMU runs as root (`vinfra agent --unconfined`, records from before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    /// An 802.1Q sub-interface of another NIC of the VM: no virtio device nor sockets of its
    /// own (the two paths above are its NIC's), its frames tagged on its NIC's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<NicTag>,
}

/// Where a sub-interface NIC rides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicTag {
    /// The switch port of its NIC.
    pub parent_port: u32,
    /// The tag.
    pub vid: u16,
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

/// The sources a NIC may send from with port security on (`None`: off): its MAC with its
/// address (any IPv4 address when it has none), then its allowed address pairs. A pair that
/// does not parse (the console checked them) is left out: port security fails closed.
pub(crate) fn allowed_sources(spec: &NicSpec, mac: Mac) -> Option<Vec<AllowedAddressSpec>> {
    sources(
        spec.port_security(),
        spec.ip.as_deref(),
        &spec.allowed_addresses,
        mac,
    )
}

/// [`allowed_sources`] from the parts: port security on, the NIC's address, its pairs.
pub(crate) fn sources(
    port_security: bool,
    ip: Option<&str>,
    pairs: &[AllowedAddressPair],
    mac: Mac,
) -> Option<Vec<AllowedAddressSpec>> {
    if !port_security {
        return None;
    }
    let own = match ip.map(str::parse::<Ipv4Addr>) {
        Some(Ok(ip)) => AllowedAddressSpec {
            mac,
            ip,
            prefix_len: 32,
        },
        Some(Err(_)) => return Some(vec![]),
        None => AllowedAddressSpec {
            mac,
            ip: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
        },
    };
    let pairs = pairs.iter().filter_map(|pair| {
        let (ip, prefix_len) = pair.prefix()?;
        let mac = match pair.mac.as_deref() {
            Some(m) => mac::unicast(m).ok()?,
            None => mac,
        };
        Some(AllowedAddressSpec {
            mac,
            ip,
            prefix_len,
        })
    });
    Some(std::iter::once(own).chain(pairs).collect())
}

/// The policy of a VM NIC's port: port security as the NIC says, the MAC limit and storm
/// control.
/// A VM NIC port's policy: port security from the NIC's entry in the console's `port_security`
/// (so a change reaches the running VM), else as the VM was started with; the MAC limit and
/// storm control.
fn port_policy(
    nic: &VmNic,
    security: &BTreeMap<(&str, Mac), &SwitchNicSecurity>,
) -> PortPolicySpec {
    let allowed = match mac::unicast(&nic.mac)
        .ok()
        .and_then(|m| Some((m, security.get(&(nic.network.as_str(), m))?)))
    {
        Some((m, s)) => sources(s.port_security, s.ip.as_deref(), &s.allowed_addresses, m),
        None => nic.allowed.clone(),
    };
    PortPolicySpec {
        allowed,
        mac_limit: Some(PORT_MAC_LIMIT),
        storm: Some(PORT_STORM),
    }
}

/// A security-group rule of the console's configuration as the switch takes it.
pub fn firewall_rule(r: &SwitchFirewallRule) -> FirewallRuleSpec {
    FirewallRuleSpec {
        direction: match r.direction {
            SgDirection::Ingress => DirectionSpec::Ingress,
            SgDirection::Egress => DirectionSpec::Egress,
        },
        protocol: r.protocol,
        ports: r.ports,
        remote: r
            .remotes
            .iter()
            .map(|&(ip, prefix_len)| PrefixSpec { ip, prefix_len })
            .collect(),
        action: match r.action {
            SgAction::Allow => ActionSpec::Allow,
            SgAction::Deny => ActionSpec::Deny,
        },
    }
}

/// The firewall of a VM NIC's port: the rules of its entry in `firewalls`, `None` without one.
fn port_firewall(
    nic: &VmNic,
    firewalls: &BTreeMap<(&str, Mac), &SwitchNicFirewall>,
) -> Option<Vec<FirewallRuleSpec>> {
    let mac = mac::unicast(&nic.mac).ok()?;
    firewalls
        .get(&(nic.network.as_str(), mac))
        .map(|f| f.rules.iter().map(firewall_rule).collect())
}

/// A NIC's QoS as the switch takes it: the default burst and weight filled in.
pub fn qos_spec(q: &NicQos) -> QosSpec {
    let rate = |r: &NicRate| RateSpec {
        bits_per_sec: r.bits_per_sec,
        burst_bytes: r.burst(),
    };
    QosSpec {
        egress: q.egress.as_ref().map(rate),
        ingress: q.ingress.as_ref().map(rate),
        priority: match q.priority {
            NicPriority::Low => PrioritySpec::Low,
            NicPriority::Normal => PrioritySpec::Normal,
            NicPriority::High => PrioritySpec::High,
        },
        weight: q.weight(),
        dscp_mark: q.dscp,
    }
}

/// The QoS of a VM NIC's port: its entry in `qos`, `None` without one.
fn port_qos(nic: &VmNic, qos: &BTreeMap<(&str, Mac), &SwitchNicQos>) -> Option<QosSpec> {
    let mac = mac::unicast(&nic.mac).ok()?;
    qos.get(&(nic.network.as_str(), mac))
        .map(|q| qos_spec(&q.qos))
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
    /// its policy, its firewall and its QoS, flood lists, MAC entries and the moves expected of
    /// them, ARP entries, DHCP responders, routers, their interfaces, their uplinks, their
    /// floating IPs, their static routes.
    pub fn requests(&self, attachment: &SwitchAttachment, uplink_builtin: bool) -> Vec<Request> {
        let DesiredSwitch { config, vms } = self;
        let by_name: BTreeMap<&str, &SwitchNetwork> = config
            .networks
            .iter()
            .map(|n| (n.name.as_str(), n))
            .collect();
        let firewalls: BTreeMap<(&str, Mac), &SwitchNicFirewall> = config
            .firewalls
            .iter()
            .filter_map(|f| Some(((f.network.as_str(), mac::unicast(&f.mac).ok()?), f)))
            .collect();
        let qos: BTreeMap<(&str, Mac), &SwitchNicQos> = config
            .qos
            .iter()
            .filter_map(|q| Some(((q.network.as_str(), mac::unicast(&q.mac).ok()?), q)))
            .collect();
        let security: BTreeMap<(&str, Mac), &SwitchNicSecurity> = config
            .port_security
            .iter()
            .filter_map(|s| Some(((s.network.as_str(), mac::unicast(&s.mac).ok()?), s)))
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
        // Sub-interfaces after every NIC port (their NIC's port comes first).
        nics.sort_by_key(|(nic, _)| (nic.vlan.is_some(), nic.port));
        for (nic, n) in &nics {
            let attach = match nic.vlan {
                Some(tag) => Attachment::VmVlan {
                    network: u32::from(n.id),
                    parent: tag.parent_port,
                    vid: tag.vid,
                },
                None => match &nic.tap {
                    Some(tap) => Attachment::VmTap {
                        network: u32::from(n.id),
                        tap: tap.clone(),
                        owner: nic.owner,
                    },
                    None => Attachment::Vm {
                        network: u32::from(n.id),
                        socket: nic.switch_socket.clone(),
                        peer: nic.qemu_socket.clone(),
                        owner: nic.owner,
                    },
                },
            };
            out.push(Request::AddPort(PortSpec {
                id: nic.port,
                mtu: nic.mtu,
                attach,
            }));
            out.push(Request::SetPortPolicy {
                port: nic.port,
                policy: port_policy(nic, &security),
            });
            out.push(Request::SetPortFirewall {
                port: nic.port,
                rules: port_firewall(nic, &firewalls),
            });
            // A sub-interface's traffic is its NIC's: shaped there.
            if nic.vlan.is_none() {
                out.push(Request::SetPortQos {
                    port: nic.port,
                    qos: port_qos(nic, &qos),
                });
            }
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
        out.extend(router_requests(config, &by_name, attachment.underlay_ip));
        out
    }
}

/// The requests of the configuration's routers, in an order that applies (after the networks):
/// every router, then every interface (on a configured network), then every uplink and floating
/// IP ([`uplink::requests`], the edge seen from `underlay_ip`), then every static route (a next
/// hop may be on the uplink's subnet). Parts that do not parse (the configuration was
/// validated) are left out.
fn router_requests(
    config: &HostSwitchConfig,
    by_name: &BTreeMap<&str, &SwitchNetwork>,
    underlay_ip: Option<Ipv4Addr>,
) -> Vec<Request> {
    let mut out: Vec<Request> = config
        .routers
        .iter()
        .map(|r| Request::AddRouter {
            id: u32::from(r.id),
        })
        .collect();
    for r in &config.routers {
        for i in &r.interfaces {
            let (Some(n), Ok(mac)) = (by_name.get(i.network.as_str()), mac::unicast(&i.mac)) else {
                continue;
            };
            out.push(Request::SetRouterInterface {
                router: u32::from(r.id),
                network: u32::from(n.id),
                ip: i.ip,
                prefix_len: i.prefix_len,
                mac,
                mtu: Some(n.mtu),
            });
        }
    }
    out.extend(uplink::requests(config, by_name, underlay_ip));
    for r in &config.routers {
        out.extend(r.routes.iter().filter_map(|rt| {
            Some(Request::AddRoute {
                router: u32::from(r.id),
                prefix: route::parse_prefix(&rt.prefix).ok()?,
                via: rt.via,
            })
        }));
    }
    out
}
