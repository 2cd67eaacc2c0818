//! Configuration commands, applied by the datapath thread between batches.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::firewall::conntrack::{ConnEntry, ConntrackFull};
use super::firewall::rules::{FirewallRule, FirewallRuleError, Prefix};
use super::flows::{FlowTableSettings, MAX_FLOW_ENTRIES};
use super::ids::{NetworkId, PortId, RouterId, Segment};
use super::mac_table::Location;
use super::nat::{Edge, UplinkError};
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
    /// Most NAT sessions (every router's uplink together); a new session beyond it is dropped
    /// (`nat_table_full`) once the expired ones are freed.
    pub nat_max_sessions: usize,
}

impl Default for SwitchSettings {
    fn default() -> Self {
        SwitchSettings {
            mac_ageing: Duration::from_secs(300),
            mac_learn_limit: 8192,
            conntrack_max_entries: 262_144,
            conntrack_zone_max_entries: 65_536,
            nat_max_sessions: 262_144,
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
    /// Sets flow accounting ([`FlowTableSettings`]): on or off (off empties the flow table), the
    /// table's bound (at most [`MAX_FLOW_ENTRIES`], else [`ConfigError::FlowTableTooLarge`])
    /// and the idle timeout. On, with 65,536 flows and 120 s, until set.
    SetFlowAccounting(FlowTableSettings),
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
    /// Sends the frames for a local VM's address to VTEP `to` instead of its port, for at most
    /// [`super::MAC_REDIRECT_HOLD`] (`None` ends it at once): the VM has stopped here for the switchover
    /// of a live migration to that host, whose switch holds them on the VM's new port until
    /// the guest resumes there, where they would otherwise be lost in the stopped QEMU's
    /// socket. Frames from other hosts are sent on to `to` (never back to the host they came
    /// from), the one exception to split horizon, counted as `mac_redirected`; the fast path
    /// offers no flow to a redirected address. The entry stays where it is: removing its port
    /// removes it, and setting it again ([`ConfigCommand::AddMacEntry`]) ends the redirect, as
    /// does a frame from the address on its port once [`super::MAC_REDIRECT_GRACE`] has passed
    /// (the VM runs here again). The switch's clock is its last frame's or
    /// [`super::Switch::set_clock`]'s.
    /// `Some` for an address without a static entry at a local port of an overlay network is
    /// refused ([`ConfigError::NoLocalMacEntry`]), as is one to no other host's VTEP
    /// ([`ConfigError::BadRedirect`]); `None` for one is accepted (there is nothing to end). Not part of the configuration a switch reports: an action, like
    /// [`ConfigCommand::ImportConnections`].
    RedirectMac {
        /// The network.
        network: NetworkId,
        /// The entry's address.
        mac: MacAddr,
        /// The VTEP its frames go to.
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
    /// Sets (`Some`, 0 to 63) or removes (`None`, the default: the guest's DSCP is trusted) an
    /// access port's DSCP mark: every IPv4 packet from the port then leaves the switch with
    /// that DSCP (ECN bits kept, header checksum updated), set after port security and the
    /// port's firewall, on every copy (each segment of a large TCP segment too); an overlay
    /// frame's outer header copies it. A mark above 63 is refused ([`ConfigError::BadDscp`]).
    /// The mark goes away with the port.
    SetPortDscp {
        /// A VM or host port.
        port: PortId,
        /// The DSCP; `None` keeps what the guest sent.
        mark: Option<u8>,
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
    /// Adds a router (a routing domain, VRF) with no interfaces and no routes. Numbers 1 to
    /// [`RouterId::MAX`].
    AddRouter(RouterId),
    /// Removes a router with its interfaces (the networks lose their gateway), routes and
    /// neighbours.
    RemoveRouter(RouterId),
    /// Sets a router's interface on a network: the network's gateway, the same address and MAC
    /// on every host (a distributed anycast gateway), and the router's connected route to the
    /// subnet `addr/prefix_len`. A network has at most one interface: setting it again
    /// replaces it, on this router or another. The address must be a unicast host address of
    /// its subnet (not the network or broadcast address of a subnet up to /30), the prefix
    /// length 1 to 32, the MAC unicast, and the subnet may not overlap another interface's of
    /// the same router (two routers may have the same subnets: they never exchange a packet).
    SetRouterInterface {
        /// The router.
        router: RouterId,
        /// The network.
        network: NetworkId,
        /// The gateway's address.
        addr: Ipv4Addr,
        /// The subnet's prefix length.
        prefix_len: u8,
        /// The gateway's MAC.
        mac: MacAddr,
        /// The network's IP MTU, a limit on routed packets sent on it (`None`: the ports' and
        /// the uplink's only).
        mtu: Option<u16>,
    },
    /// Removes a network's gateway (its router's interface on it, with the connected route and
    /// the neighbours learned there). Nothing to remove is not an error.
    RemoveRouterInterface(NetworkId),
    /// Adds a static route to a router, replacing one to the same prefix. The prefix's host
    /// bits must be zero and the next hop a unicast address. The route is used while its next
    /// hop lies in the subnet of one of the router's interfaces (and is not one of the
    /// router's addresses); until then, or after that interface goes, it is kept but not used
    /// (a shorter prefix may match; no match is `no_route`). A connected route wins over a
    /// static one to the same prefix.
    AddRoute {
        /// The router.
        router: RouterId,
        /// The destination prefix.
        prefix: Prefix,
        /// The next hop.
        via: Ipv4Addr,
    },
    /// Removes a router's static route to a prefix. Nothing to remove is not an error.
    RemoveRoute {
        /// The router.
        router: RouterId,
        /// The destination prefix.
        prefix: Prefix,
    },
    /// Sets a router's uplink: its interface on an external network (a VLAN network of the
    /// trunk, without a gateway), which gives the router the connected route of
    /// `addr/prefix_len`. Not a distributed gateway: only the edge answers ARP for the address
    /// (and the floating IPs) and sends and receives frames with `mac`. What the router sends
    /// out through it is source-NATed (to the sender's floating IP, else to `addr` with a
    /// session); what comes in to those addresses is translated back and routed. On the edge
    /// ([`Edge::Local`]) this switch does that; on any other host a packet of a local port that
    /// the router would send through the uplink goes, as it was sent, to the edge's VTEP in
    /// VXLAN with `transit_vni`. Replaces the router's uplink (its floating IPs that still lie
    /// in the subnet stay; its sessions stay while the network, address and edge do). Becoming
    /// the edge sends a gratuitous ARP for each address ([`super::Switch::announce`]).
    SetRouterUplink {
        /// The router.
        router: RouterId,
        /// The external network.
        network: NetworkId,
        /// The router's address on it.
        addr: Ipv4Addr,
        /// The subnet's prefix length (1 to 32).
        prefix_len: u8,
        /// The uplink's MAC (unicast).
        mac: MacAddr,
        /// Where the router's north-south traffic is translated.
        edge: Edge,
        /// The VNI from the router's other hosts to its edge (24 bits, no network's).
        transit_vni: u32,
        /// The external network's IP MTU (`None`: the trunk's only).
        mtu: Option<u16>,
    },
    /// Removes a router's uplink with its floating IPs and sessions. Nothing to remove is not
    /// an error.
    RemoveRouterUplink(RouterId),
    /// Adds a floating IP: 1:1 NAT between `external` (a host address of the uplink's subnet,
    /// not the uplink's own) and `internal` (a host address on one of the router's networks,
    /// with no other floating IP). Replaces the floating IP of the same external address. On
    /// the edge, sends a gratuitous ARP for it.
    AddFloatingIp {
        /// The router (it has an uplink).
        router: RouterId,
        /// The address on the external network.
        external: Ipv4Addr,
        /// The address behind it.
        internal: Ipv4Addr,
    },
    /// Removes a floating IP. Floating IPs keep no sessions: its traffic stops at once.
    /// Nothing to remove is not an error.
    RemoveFloatingIp {
        /// The router.
        router: RouterId,
        /// The address on the external network.
        external: Ipv4Addr,
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
    /// A sub-interface's parent is not a VM port.
    #[error("{0} is not a VM port: only a VM's vNIC carries 802.1Q sub-interfaces")]
    NotAVmPort(PortId),
    /// The parent already has a sub-interface with this tag.
    #[error("{parent} already has a sub-interface with VLAN tag {vid}")]
    SubInterfaceExists {
        /// The vNIC's port.
        parent: PortId,
        /// The tag.
        vid: u16,
    },
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
    /// A port policy, a firewall, connections or a DSCP mark for a port that is not a VM or
    /// host port.
    #[error(
        "{0} is not an access port: only VM and host ports have a policy, a firewall and a \
         DSCP mark"
    )]
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
    /// A DSCP mark above 63 (DSCP has six bits).
    #[error("DSCP {0} is above 63")]
    BadDscp(u8),
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
    /// A MAC redirect to no remote VTEP: the unspecified, a multicast or the broadcast
    /// address, or this switch's own.
    #[error("{0} is no other host's VTEP to redirect to")]
    BadRedirect(Ipv4Addr),
    /// A MAC redirect for an address with no static entry at a local port of an overlay
    /// network.
    #[error("{mac} has no static entry for a local port in overlay network {network}")]
    NoLocalMacEntry {
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
    /// A router number of 0 or above [`RouterId::MAX`].
    #[error("{0} is not between 1 and {max}", max = RouterId::MAX)]
    RouterIdOutOfRange(RouterId),
    /// The router number is taken.
    #[error("{0} already exists")]
    RouterExists(RouterId),
    /// No such router.
    #[error("{0} does not exist")]
    NoSuchRouter(RouterId),
    /// A route prefix length above 32, or an interface prefix length of 0 or above 32.
    #[error("prefix length {0} is out of range")]
    BadRoutePrefixLength(u8),
    /// A route prefix with bits set past its length.
    #[error("{addr}/{len} has host bits set")]
    HostBitsSet {
        /// The prefix's address.
        addr: Ipv4Addr,
        /// Its length.
        len: u8,
    },
    /// A gateway address or next hop that is not a unicast address (0.0.0.0/8, 127.0.0.0/8,
    /// multicast, 240.0.0.0/4, broadcast).
    #[error("{0} is not a unicast address")]
    NotUnicastAddress(Ipv4Addr),
    /// A gateway address that is its subnet's network or broadcast address.
    #[error(
        "{addr}/{prefix_len}: the gateway may not be the subnet's network or broadcast address"
    )]
    GatewayNotHostAddress {
        /// The address.
        addr: Ipv4Addr,
        /// The subnet's prefix length.
        prefix_len: u8,
    },
    /// An interface whose subnet overlaps another interface's of the same router.
    #[error("{addr}/{prefix_len} overlaps the subnet of {router}'s interface on {other}")]
    OverlappingInterface {
        /// The router.
        router: RouterId,
        /// The new interface's address.
        addr: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
        /// The network of the interface it overlaps.
        other: NetworkId,
    },
    /// An MTU below the IPv4 minimum of 68.
    #[error("MTU {0} is below 68")]
    MtuTooSmall(u16),
    /// An uplink command refused.
    #[error("uplink of {router} refused")]
    Uplink {
        /// The router.
        router: RouterId,
        /// What is wrong.
        #[source]
        source: UplinkError,
    },
    /// A router interface on a network that is a router's uplink.
    #[error("{network} is the uplink of {router}: it carries no gateway")]
    NetworkIsUplink {
        /// The network.
        network: NetworkId,
        /// The router whose uplink it is.
        router: RouterId,
    },
    /// A network whose VNI is a router's transit VNI.
    #[error("VNI {vni} is the transit VNI of {router}")]
    VniIsTransit {
        /// The VNI.
        vni: Vni,
        /// The router.
        router: RouterId,
    },
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
    /// A flow table larger than [`MAX_FLOW_ENTRIES`].
    #[error("a flow table of {0} entries is larger than the limit of {MAX_FLOW_ENTRIES}")]
    FlowTableTooLarge(usize),
}
