//! A router's uplink as the switch keeps it (its address and MAC on the external network, where
//! its edge is, its transit VNI, its floating IPs and counters), the checks of the uplink
//! commands ([`UplinkError`]), and [`Nat`]: every router's uplink with the session table, the
//! transit VNIs and the gratuitous ARPs waiting to go.

use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::HashMap;

use super::table::{NatTable, SessionStats};
use crate::datapath::counters::NatCounters;
use crate::datapath::ids::{NetworkId, RouterId};
use crate::datapath::router::RouterInterface;
use crate::wire::{MacAddr, Vni};

/// Where a router's north-south traffic is translated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Edge {
    /// On this switch: it translates, answers ARP for the uplink's addresses and sends and
    /// receives the uplink MAC's frames on the trunk.
    Local,
    /// On the switch of the host with this VTEP address: north-south packets of this host's
    /// ports go there, as they were sent, in VXLAN with the router's transit VNI.
    Remote {
        /// The edge host's VTEP (underlay) address.
        vtep: Ipv4Addr,
    },
}

/// A router's uplink, as [`crate::datapath::Switch::router_uplink`] reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RouterUplink {
    /// The router's interface on the external network: its address, prefix length, MAC, MTU.
    pub interface: RouterInterface,
    /// Where its north-south traffic is translated.
    pub edge: Edge,
    /// The VNI that carries its north-south packets to the edge.
    pub transit_vni: Vni,
    /// Its floating IPs: (external, internal), sorted.
    pub floating_ips: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// Why an uplink command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkError {
    /// The external network is not a VLAN network.
    #[error("{0} is not a VLAN network: an uplink is on the trunk")]
    NotVlan(NetworkId),
    /// The external network carries a router interface (a gateway).
    #[error("{network} is {router}'s gateway interface, not an external network")]
    NetworkIsGateway {
        /// The network.
        network: NetworkId,
        /// The router whose interface it carries.
        router: RouterId,
    },
    /// The external network is another router's uplink.
    #[error("{network} is the uplink of {router}")]
    NetworkIsUplink {
        /// The network.
        network: NetworkId,
        /// The router whose uplink it is.
        router: RouterId,
    },
    /// A prefix length of 0 or above 32.
    #[error("prefix length {0} is not between 1 and 32")]
    BadPrefixLength(u8),
    /// The uplink address is not a unicast address.
    #[error("{0} is not a unicast address")]
    NotUnicastAddress(Ipv4Addr),
    /// The uplink address is its subnet's network or broadcast address.
    #[error("{addr}/{prefix_len}: the uplink address may not be the subnet's network or broadcast address")]
    NotHostAddress {
        /// The address.
        addr: Ipv4Addr,
        /// The prefix length.
        prefix_len: u8,
    },
    /// A group MAC.
    #[error("{0} is not a unicast MAC address")]
    NotUnicastMac(MacAddr),
    /// An MTU below 68.
    #[error("MTU {0} is below 68")]
    MtuTooSmall(u16),
    /// The uplink's subnet overlaps one of the router's interfaces.
    #[error("{addr}/{prefix_len} overlaps the subnet of the router's interface on {other}")]
    Overlaps {
        /// The uplink address.
        addr: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
        /// The network of the interface it overlaps.
        other: NetworkId,
    },
    /// A transit VNI that does not fit 24 bits.
    #[error("transit VNI {0} does not fit in 24 bits")]
    TransitVniTooLarge(u32),
    /// A transit VNI that a network uses.
    #[error("transit VNI {vni} is the VNI of {network}")]
    TransitVniIsNetwork {
        /// The VNI.
        vni: Vni,
        /// The network.
        network: NetworkId,
    },
    /// A transit VNI that another router uses.
    #[error("transit VNI {vni} is the transit VNI of {router}")]
    TransitVniInUse {
        /// The VNI.
        vni: Vni,
        /// The router.
        router: RouterId,
    },
    /// A remote edge whose VTEP address is not unicast.
    #[error("edge VTEP {0} is not a unicast address")]
    BadEdgeVtep(Ipv4Addr),
    /// A floating IP for a router without an uplink.
    #[error("the router has no uplink")]
    NoUplink,
    /// A floating IP outside the uplink's subnet, or its network or broadcast address.
    #[error("floating IP {0} is not a host address of the uplink's subnet")]
    FloatingNotInSubnet(Ipv4Addr),
    /// A floating IP that is the uplink's own address.
    #[error("floating IP {0} is the uplink's own address")]
    FloatingIsUplink(Ipv4Addr),
    /// An internal address on none of the router's networks (or one of its gateways).
    #[error("{0} is not a host address on one of the router's networks")]
    InternalNotOnRouter(Ipv4Addr),
    /// An internal address that already has another floating IP.
    #[error("{internal} already has floating IP {external}")]
    InternalTaken {
        /// The internal address.
        internal: Ipv4Addr,
        /// Its floating IP.
        external: Ipv4Addr,
    },
}

/// A router's uplink as the switch keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Uplink {
    pub(crate) iface: RouterInterface,
    pub(crate) edge: Edge,
    pub(crate) transit_vni: Vni,
    /// Floating IPs: external to internal.
    pub(crate) floating: HashMap<Ipv4Addr, Ipv4Addr>,
    /// Floating IPs: internal to external.
    pub(crate) by_internal: HashMap<Ipv4Addr, Ipv4Addr>,
    /// Packet counters (the session counts are the table's).
    pub(crate) counters: NatCounters,
}

impl Uplink {
    /// Whether this switch is the edge.
    pub(crate) fn is_edge(&self) -> bool {
        self.edge == Edge::Local
    }

    /// The addresses the edge answers ARP for: the uplink's and the floating IPs.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        core::iter::once(self.iface.addr).chain(self.floating.keys().copied())
    }

    /// The uplink as reported.
    pub(crate) fn view(&self) -> RouterUplink {
        let mut floating_ips: Vec<_> = self.floating.iter().map(|(&e, &i)| (e, i)).collect();
        floating_ips.sort_unstable();
        RouterUplink {
            interface: self.iface,
            edge: self.edge,
            transit_vni: self.transit_vni,
            floating_ips,
        }
    }
}

/// The switch's NAT: the routers' uplinks, the sessions, the transit VNIs, what is left to
/// announce, and the buffer a translated packet is written to.
#[derive(Debug)]
pub(crate) struct Nat {
    pub(crate) uplinks: HashMap<RouterId, Uplink>,
    /// Transit VNI to router.
    pub(crate) transit: HashMap<Vni, RouterId>,
    pub(crate) table: NatTable,
    /// Gratuitous ARPs to send: the router and the address.
    pub(crate) pending: Vec<(RouterId, Ipv4Addr)>,
    /// Where a translated packet is written (reused: its capacity stays).
    pub(crate) buf: Vec<u8>,
}

impl Nat {
    /// No uplinks, a table of at most `max_sessions`.
    pub(crate) fn new(max_sessions: usize) -> Nat {
        Nat {
            uplinks: HashMap::default(),
            transit: HashMap::default(),
            table: NatTable::new(max_sessions),
            pending: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// A router's NAT counters, `None` without an uplink.
    pub(crate) fn counters(&self, router: RouterId) -> Option<NatCounters> {
        let up = self.uplinks.get(&router)?;
        let SessionStats {
            sessions,
            created,
            expired,
        } = self.table.stats(router);
        Some(NatCounters {
            edge: up.is_edge(),
            sessions,
            sessions_created: created,
            sessions_expired: expired,
            ..up.counters
        })
    }

    /// Frees expired sessions; returns how many.
    pub(crate) fn expire(&mut self, now: Duration) -> usize {
        self.table.expire(now)
    }
}
