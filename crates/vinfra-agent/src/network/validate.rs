//! Checking a switch configuration from the console before it is kept.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use vinfra_proto::{HostSwitchConfig, SwitchNetworkKind};

use super::mac::{self, MacError};

/// Smallest IP MTU accepted for a network.
pub const MIN_MTU: u16 = 576;

/// Why a switch configuration from the console is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    /// A network name that is not a DNS label.
    #[error("network name {name:?} is not a DNS label")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: vinfra_types::NameError,
    },
    /// Two networks with one name.
    #[error("network {0} appears twice")]
    DuplicateName(String),
    /// Two networks with one number.
    #[error("network number {0} appears twice")]
    DuplicateNumber(u16),
    /// A VNI of 0 or above 24 bits.
    #[error("network {network}: VNI {vni} is out of range (1 to 16777215)")]
    VniOutOfRange {
        /// The network.
        network: String,
        /// The VNI.
        vni: u32,
    },
    /// Two networks with one VNI.
    #[error("network {network}: VNI {vni} is used by another network")]
    VniReused {
        /// The network.
        network: String,
        /// The VNI.
        vni: u32,
    },
    /// A flood list entry that is no host's address.
    #[error("network {network}: bad flood address {ip}")]
    BadFloodAddress {
        /// The network.
        network: String,
        /// The address.
        ip: Ipv4Addr,
    },
    /// A VLAN ID outside 1 to 4094.
    #[error("network {network}: VLAN {vid} is out of range (1 to 4094)")]
    VlanOutOfRange {
        /// The network.
        network: String,
        /// The VLAN ID.
        vid: u16,
    },
    /// Two networks with one VLAN ID.
    #[error("network {network}: VLAN {vid} is used by another network")]
    VlanReused {
        /// The network.
        network: String,
        /// The VLAN ID.
        vid: u16,
    },
    /// A flood list on a VLAN network.
    #[error("network {0}: a VLAN has no flood list")]
    VlanFlood(String),
    /// An MTU below [`MIN_MTU`].
    #[error("network {network}: MTU {mtu} is below {MIN_MTU}")]
    MtuTooSmall {
        /// The network.
        network: String,
        /// The MTU.
        mtu: u16,
    },
    /// A MAC entry naming a network that is not configured.
    #[error("MAC entry {mac}: no network {network}")]
    MacEntryNetwork {
        /// The MAC address as written.
        mac: String,
        /// The network named.
        network: String,
    },
    /// A MAC entry on a VLAN network (the trunk learns those).
    #[error("MAC entry {mac}: network {network} is a VLAN")]
    MacEntryOnVlan {
        /// The MAC address as written.
        mac: String,
        /// The network.
        network: String,
    },
    /// A MAC entry whose address is not a unicast MAC.
    #[error("MAC entry {mac:?}")]
    MacEntryMac {
        /// The MAC address as written.
        mac: String,
        /// Why.
        #[source]
        source: MacError,
    },
    /// Two MAC entries for one address on one network.
    #[error("MAC {mac} appears twice in {network}")]
    DuplicateMac {
        /// The MAC address as written.
        mac: String,
        /// The network.
        network: String,
    },
    /// An ARP entry naming a network that is not configured.
    #[error("ARP entry {ip}: no network {network}")]
    ArpEntryNetwork {
        /// The address.
        ip: Ipv4Addr,
        /// The network named.
        network: String,
    },
    /// An ARP entry whose owner is not a unicast MAC.
    #[error("ARP entry {ip}")]
    ArpEntryMac {
        /// The address.
        ip: Ipv4Addr,
        /// Why.
        #[source]
        source: MacError,
    },
    /// Two ARP entries for one address on one network.
    #[error("ARP entry {ip} appears twice in {network}")]
    DuplicateArp {
        /// The address.
        ip: Ipv4Addr,
        /// The network.
        network: String,
    },
    /// Overlay networks on a host whose agent has no underlay address.
    #[error("overlay networks need the host's underlay address (--underlay-ip)")]
    NoUnderlay,
}

/// Checks a configuration from the console: unique names, numbers, VNIs and VIDs; entries that
/// name configured networks and parse.
pub fn validate(config: &HostSwitchConfig) -> Result<(), InvalidConfig> {
    use InvalidConfig as E;
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut vnis = BTreeSet::new();
    let mut vids = BTreeSet::new();
    for n in &config.networks {
        let network = || n.name.clone();
        vinfra_types::validate_name(&n.name).map_err(|source| E::BadName {
            name: network(),
            source,
        })?;
        if !names.insert(n.name.as_str()) {
            return Err(E::DuplicateName(network()));
        }
        if !ids.insert(n.id) {
            return Err(E::DuplicateNumber(n.id));
        }
        match n.kind {
            SwitchNetworkKind::Overlay { vni } => {
                // VXLAN's VNI is 24 bits; the console never hands out 0.
                if vni == 0 || vni >= 1 << 24 {
                    return Err(E::VniOutOfRange {
                        network: network(),
                        vni,
                    });
                }
                if !vnis.insert(vni) {
                    return Err(E::VniReused {
                        network: network(),
                        vni,
                    });
                }
                if let Some(&ip) = n
                    .flood
                    .iter()
                    .find(|ip| ip.is_unspecified() || ip.is_broadcast())
                {
                    return Err(E::BadFloodAddress {
                        network: network(),
                        ip,
                    });
                }
            }
            SwitchNetworkKind::Vlan { vid } => {
                if !(1..=4094).contains(&vid) {
                    return Err(E::VlanOutOfRange {
                        network: network(),
                        vid,
                    });
                }
                if !vids.insert(vid) {
                    return Err(E::VlanReused {
                        network: network(),
                        vid,
                    });
                }
                if !n.flood.is_empty() {
                    return Err(E::VlanFlood(network()));
                }
            }
        }
        if n.mtu < MIN_MTU {
            return Err(E::MtuTooSmall {
                network: network(),
                mtu: n.mtu,
            });
        }
    }
    let network = |name: &str| config.networks.iter().find(|n| n.name == name);
    let mut macs = BTreeSet::new();
    for m in &config.macs {
        let Some(n) = network(&m.network) else {
            return Err(E::MacEntryNetwork {
                mac: m.mac.clone(),
                network: m.network.clone(),
            });
        };
        if !matches!(n.kind, SwitchNetworkKind::Overlay { .. }) {
            return Err(E::MacEntryOnVlan {
                mac: m.mac.clone(),
                network: m.network.clone(),
            });
        }
        let mac = mac::unicast(&m.mac).map_err(|source| E::MacEntryMac {
            mac: m.mac.clone(),
            source,
        })?;
        if !macs.insert((n.id, mac)) {
            return Err(E::DuplicateMac {
                mac: m.mac.clone(),
                network: m.network.clone(),
            });
        }
    }
    let mut arps = BTreeSet::new();
    for a in &config.arps {
        let Some(n) = network(&a.network) else {
            return Err(E::ArpEntryNetwork {
                ip: a.ip,
                network: a.network.clone(),
            });
        };
        mac::unicast(&a.mac).map_err(|source| E::ArpEntryMac { ip: a.ip, source })?;
        if !arps.insert((n.id, a.ip)) {
            return Err(E::DuplicateArp {
                ip: a.ip,
                network: a.network.clone(),
            });
        }
    }
    Ok(())
}
