//! Configuration commands, applied by the datapath thread between batches.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::firewall::conntrack::{ConnEntry, ConntrackFull};
use super::firewall::rules::{FirewallRule, FirewallRuleError};
use super::ids::{NetworkId, PortId, Segment};
use super::mac_table::Location;
use super::policy::PortPolicy;
use super::port::PortConfig;
use crate::wire::{MacAddr, VlanId, Vni};

/// Switch-wide settings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SwitchSettings {
    /// How long a learned MAC address stays without traffic from it.
    pub mac_ageing: Duration,
    /// Most learned addresses per network (static entries do not count); further addresses are
    /// flooded to, not learned.
    pub mac_learn_limit: usize,
    /// Most connections the firewall tracks, every port together (at most
    /// [`super::firewall::conntrack::MAX_ENTRIES_LIMIT`]); a new connection beyond it is
    /// dropped (`conntrack_full`) once the expired ones are freed.
    pub conntrack_max_entries: usize,
    /// Most connections the firewall tracks for one port, so one VM cannot fill the table for
    /// the others.
    pub conntrack_zone_max_entries: usize,
}

impl Default for SwitchSettings {
    fn default() -> Self {
        SwitchSettings {
            mac_ageing: Duration::from_secs(300),
            mac_learn_limit: 8192,
            conntrack_max_entries: 262_144,
            conntrack_zone_max_entries: 65_536,
        }
    }
}

/// The parameters of the switch's DHCP responder on one network. The address handed to a
/// client is the one registered for its MAC with [`ConfigCommand::AddArpEntry`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DhcpConfig {
    /// Prefix length of the network's subnet (1 to 32), sent as the subnet mask.
    pub prefix_len: u8,
    /// The default gateway, sent as the router; also the server identifier when set.
    pub gateway: Option<Ipv4Addr>,
    /// The server identifier (and source address of replies) when there is no gateway: an
    /// address of the subnet reserved for the switch.
    pub server: Option<Ipv4Addr>,
    /// Interface MTU to send; `None` sends the MTU of the port the client is on.
    pub mtu: Option<u16>,
    /// Lease time in seconds.
    pub lease_secs: u32,
}

impl DhcpConfig {
    /// The server identifier: the gateway if set, else the switch's address.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.gateway.or(self.server)
    }

    /// The subnet mask of the prefix length (0 above 32).
    pub fn subnet_mask(&self) -> Ipv4Addr {
        let bits = u32::from(self.prefix_len);
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32u32.saturating_sub(bits))
                .unwrap_or(0),
        )
    }
}

/// A change to the switch's configuration. The daemon receives these from the agent over its
/// control socket and applies them with [`super::Switch::apply`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ConfigCommand {
    /// Adds a network.
    AddNetwork {
        /// Its number.
        id: NetworkId,
        /// Overlay (VNI) or VLAN (VID).
        segment: Segment,
    },
    /// Removes a network that no port uses.
    RemoveNetwork(NetworkId),
    /// Adds a port; an access port's network must exist.
    AddPort(PortConfig),
    /// Removes a port and every MAC entry pointing at it.
    RemovePort(PortId),
    /// Replaces the remote VTEPs that get a copy of broadcast, unknown-unicast and multicast
    /// frames of an overlay network: the hosts with ports on it.
    SetFloodList {
        /// The overlay network.
        network: NetworkId,
        /// Remote VTEP addresses (this host's own address is skipped if listed).
        vteps: Vec<Ipv4Addr>,
    },
    /// Adds or replaces a static MAC entry (a VM's MAC and the port or host it is on).
    AddMacEntry {
        /// The network.
        network: NetworkId,
        /// A unicast MAC address.
        mac: MacAddr,
        /// A port attached to the network, or (overlay only) a remote VTEP.
        location: Location,
    },
    /// Removes a MAC entry, static or learned.
    RemoveMacEntry {
        /// The network.
        network: NetworkId,
        /// The address.
        mac: MacAddr,
    },
    /// Puts every static MAC entry that MAC mobility moved to another host back where
    /// [`ConfigCommand::AddMacEntry`] put it, in every network: the control plane's word on where
    /// a VM is wins over an announcement it has not confirmed. Expected moves not made yet
    /// ([`ConfigCommand::ExpectMacMove`]) stay expected.
    RevertMacMoves,
    /// Registers an IPv4 address for ARP suppression: requests for it are answered locally.
    AddArpEntry {
        /// The network.
        network: NetworkId,
        /// The address.
        ip: Ipv4Addr,
        /// The unicast MAC address that owns it.
        mac: MacAddr,
    },
    /// Removes an ARP suppression entry.
    RemoveArpEntry {
        /// The network.
        network: NetworkId,
        /// The address.
        ip: Ipv4Addr,
    },
    /// Sets the underlay MAC to use for a remote VTEP (the VTEP's own, or the next hop's).
    SetVtepMac {
        /// Remote VTEP address.
        vtep: Ipv4Addr,
        /// Underlay destination MAC for it.
        mac: MacAddr,
    },
    /// Replaces the switch-wide settings.
    SetSettings(SwitchSettings),
    /// Replaces an access port's policy (port security, MAC limit, storm control). Storm
    /// control starts with a full bucket, and keeps its bucket when set again with the same
    /// rate and burst.
    SetPortPolicy {
        /// A VM or host port.
        port: PortId,
        /// The new policy.
        policy: PortPolicy,
    },
    /// Sets the underlay addresses the VXLAN uplink accepts packets from: the cluster's hosts.
    /// A VXLAN packet from any other source is dropped (`unknown_vtep`). `None` accepts any
    /// source (the default until the agent sends the list).
    SetUnderlayPeers(Option<Vec<Ipv4Addr>>),
    /// Says that a static MAC entry pointing at a remote host may move to VTEP `to` (its VM is
    /// migrating there): an announcement (RARP or gratuitous ARP) of the address from `to`
    /// moves the entry; an announcement from any other VTEP, or any announcement when no move
    /// is expected, does not (counted as `mac_moves_refused`). `None` withdraws the
    /// expectation. Setting the entry again ([`ConfigCommand::AddMacEntry`]) withdraws it too,
    /// and the move, once made, uses it up ([`super::MacEntry::expected_move`]). `Some` for an
    /// address without a static entry at a remote VTEP is refused
    /// ([`ConfigError::NoRemoteMacEntry`]); `None` for one is accepted (there is nothing to
    /// withdraw).
    ExpectMacMove {
        /// The network.
        network: NetworkId,
        /// The entry's address.
        mac: MacAddr,
        /// The VTEP it may move to.
        to: Option<Ipv4Addr>,
    },
    /// Sets (`Some`) or removes (`None`, the default: unfiltered) an access port's firewall:
    /// the rules of its security groups, concatenated (a rule's index is its position). With a
    /// firewall the port's IPv4 traffic is tracked as connections: the first packet of a
    /// connection from the VM passes unless a rule denies it, the first packet of one to the VM
    /// only if a rule allows it and none denies it, and the later packets of an allowed
    /// connection (both ways) pass. Replacing the rules keeps the port's connections: the
    /// established ones go on, only new connections meet the new rules; the rules' hit
    /// counters start again from zero. `None` also forgets the port's connections. Rules that
    /// do not compile are refused ([`ConfigError::BadFirewallRules`]) and the port keeps its
    /// firewall.
    SetPortFirewall {
        /// A VM or host port.
        port: PortId,
        /// The rules; `None` for no firewall.
        rules: Option<Vec<FirewallRule>>,
    },
    /// Gives an access port connections exported from another switch
    /// ([`super::Switch::export_connections`]), before a migrating VM switches over to this
    /// host, so its established connections go on here. Each lives the time it had left, from
    /// the last time this switch was given (by a batch or [`super::Switch::expire`]).
    /// Connections the port already has are skipped. When the table (or the port's share) is
    /// full, after freeing what expired, the entries before stay and the rest are refused
    /// ([`ConfigError::ConnectionsRefused`]).
    ImportConnections {
        /// A VM or host port.
        port: PortId,
        /// The connections.
        entries: Vec<ConnEntry>,
    },
    /// Enables (`Some`) or disables (`None`) the switch's DHCP responder on a network: DHCP
    /// client messages from its access ports are answered by the switch and not flooded.
    SetDhcp {
        /// The network.
        network: NetworkId,
        /// The responder's parameters.
        config: Option<DhcpConfig>,
    },
}

/// Checks what the switch relies on in a port policy: allowed MACs are unicast, prefix lengths
/// at most 32, storm control rate and burst at least 1.
pub(crate) fn check_policy(policy: &PortPolicy) -> Result<(), ConfigError> {
    for a in policy.allowed.iter().flatten() {
        if !a.mac.is_unicast() {
            return Err(ConfigError::NotUnicast(a.mac));
        }
        if a.prefix_len > 32 {
            return Err(ConfigError::BadAllowedPrefix {
                ip: a.ip,
                prefix_len: a.prefix_len,
            });
        }
    }
    if let Some(s) = policy.storm {
        if s.frames_per_sec == 0 || s.burst == 0 {
            return Err(ConfigError::BadStormControl);
        }
    }
    Ok(())
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The port number is taken.
    #[error("{0} already exists")]
    PortExists(PortId),
    /// No such port.
    #[error("{0} does not exist")]
    NoSuchPort(PortId),
    /// The port number is above [`PortId::MAX`].
    #[error("{0} is above the largest port number")]
    PortIdTooLarge(PortId),
    /// The network number is taken.
    #[error("{0} already exists")]
    NetworkExists(NetworkId),
    /// No such network.
    #[error("{0} does not exist")]
    NoSuchNetwork(NetworkId),
    /// The network number is above [`NetworkId::MAX`].
    #[error("{0} is above the largest network number")]
    NetworkIdTooLarge(NetworkId),
    /// Another network has this VNI.
    #[error("VNI {vni} is used by {network}")]
    VniInUse {
        /// The VNI.
        vni: Vni,
        /// The network that has it.
        network: NetworkId,
    },
    /// Another network has this VLAN ID.
    #[error("VLAN {vid} is used by {network}")]
    VlanInUse {
        /// The VLAN ID.
        vid: VlanId,
        /// The network that has it.
        network: NetworkId,
    },
    /// Ports are still attached to the network.
    #[error("{0} still has ports")]
    NetworkInUse(NetworkId),
    /// The switch already has a port of this uplink kind (VXLAN uplink or VLAN trunk).
    #[error("the switch already has a {kind} ({existing})")]
    UplinkExists {
        /// "VXLAN uplink" or "VLAN trunk".
        kind: &'static str,
        /// The existing port.
        existing: PortId,
    },
    /// A MAC entry pointing at a port that is not attached to the network.
    #[error("{port} is not attached to {network}")]
    PortNotInNetwork {
        /// The port.
        port: PortId,
        /// The network.
        network: NetworkId,
    },
    /// A VTEP location or flood list for a VLAN network.
    #[error("{0} is a VLAN network: it has no remote VTEPs")]
    NotOverlay(NetworkId),
    /// A group address where a unicast MAC is required.
    #[error("{0} is not a unicast MAC address")]
    NotUnicast(MacAddr),
    /// A port policy, a firewall or connections for a port that is not a VM or host port.
    #[error("{0} is not an access port: only VM and host ports have a policy and a firewall")]
    NotAccessPort(PortId),
    /// Firewall rules that do not compile.
    #[error("firewall rules for {port} refused")]
    BadFirewallRules {
        /// The port.
        port: PortId,
        /// What is wrong with them.
        #[source]
        source: FirewallRuleError,
    },
    /// Imported connections that do not fit the connection table.
    #[error("connections for {port} refused")]
    ConnectionsRefused {
        /// The port.
        port: PortId,
        /// Which limit was reached.
        #[source]
        source: ConntrackFull,
    },
    /// An allowed address with a prefix length above 32.
    #[error("allowed address {ip}/{prefix_len}: the prefix length is above 32")]
    BadAllowedPrefix {
        /// The address.
        ip: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// Storm control with a zero rate or burst.
    #[error("storm control needs a rate and a burst of at least 1 frame")]
    BadStormControl,
    /// An expected MAC move for an address with no static entry pointing at a remote host.
    #[error("{mac} has no static entry for a remote host in {network}")]
    NoRemoteMacEntry {
        /// The network.
        network: NetworkId,
        /// The address.
        mac: MacAddr,
    },
    /// A DHCP prefix length of 0 or above 32.
    #[error("prefix length {0} is not between 1 and 32")]
    BadPrefixLength(u8),
    /// DHCP without a gateway or a switch address to use as the server identifier.
    #[error("DHCP on {0} needs a gateway or a switch address")]
    DhcpNoServerAddress(NetworkId),
    /// An MTU below the IPv4 minimum of 68.
    #[error("MTU {0} is below 68")]
    MtuTooSmall(u16),
    /// An overlay port's MTU exceeds what the VXLAN uplink can carry.
    #[error(
        "{port} has MTU {mtu} but the VXLAN uplink's MTU {underlay_mtu} carries at most \
         {max} (underlay MTU - 50)"
    )]
    MtuExceedsOverlay {
        /// The overlay access port.
        port: PortId,
        /// Its MTU.
        mtu: u16,
        /// The uplink's MTU.
        underlay_mtu: u16,
        /// The largest MTU that fits.
        max: u16,
    },
}
