//! Routers (VRFs): a router's interfaces (one per attached network: that network's
//! distributed gateway), its route table (connected and static routes, looked up by longest
//! prefix) and its neighbours (MACs learned from ARP replies to its gateways, and the
//! addresses it is asking for). The routing stage (`route`) reads and updates them; the
//! configuration (`configure`) changes them.

use core::cmp::Reverse;
use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::HashMap;

use super::counters::RouterCounters;
use super::firewall::rules::Prefix;
use super::ids::{NetworkId, RouterId};
use crate::wire::MacAddr;

/// How long a neighbour learned from an ARP reply is used after that reply.
pub const NEIGHBOUR_LIFETIME: Duration = Duration::from_secs(300);
/// A neighbour in use whose last reply is this old is asked again (and still used meanwhile),
/// so a busy flow never finds it expired.
pub const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(240);
/// At most one ARP request per neighbour in this time.
pub const ARP_INTERVAL: Duration = Duration::from_secs(1);
/// A connected destination that has not answered ARP for this long gets ICMP host
/// unreachable for each further packet.
pub const UNANSWERED: Duration = Duration::from_secs(3);
/// An address asked for that has had no packet for this long is forgotten.
const PENDING_LIFETIME: Duration = Duration::from_secs(10);
/// Most neighbours (known or being asked for) per router.
pub const MAX_NEIGHBOURS: usize = 4096;

/// A router's interface on a network: the network's gateway, with the same address and MAC on
/// every host (a distributed anycast gateway). Gives the router the connected route of its
/// subnet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RouterInterface {
    /// The router.
    pub router: RouterId,
    /// The network.
    pub network: NetworkId,
    /// The gateway's address on the network.
    pub addr: Ipv4Addr,
    /// The network's prefix length (1 to 32).
    pub prefix_len: u8,
    /// The gateway's MAC (unicast).
    pub mac: MacAddr,
    /// The network's IP MTU, if the control plane gave it: routed packets larger than it are
    /// not sent on the network.
    pub mtu: Option<u16>,
}

impl RouterInterface {
    /// The netmask of the interface's subnet.
    pub fn mask(&self) -> u32 {
        mask(self.prefix_len)
    }

    /// The interface's subnet (host bits cleared).
    pub fn subnet(&self) -> Prefix {
        Prefix {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.prefix_len,
        }
    }

    /// Whether `ip` lies in the interface's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Whether `ip` is the subnet's network or broadcast address (subnets of up to /30 have
    /// them; /31 and /32 do not).
    pub fn is_subnet_edge(&self, ip: Ipv4Addr) -> bool {
        if self.prefix_len > 30 || !self.contains(ip) {
            return false;
        }
        let host = u32::from(ip) & !self.mask();
        host == 0 || host == !self.mask()
    }
}

/// The netmask of a prefix length (lengths over 32 count as 32).
pub(super) fn mask(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// An address a router never forwards to or from: 0.0.0.0/8, 127.0.0.0/8, multicast
/// (224.0.0.0/4), 240.0.0.0/4 and the limited broadcast.
pub(super) fn martian(addr: Ipv4Addr) -> bool {
    let [first, ..] = addr.octets();
    first == 0 || first == 127 || first >= 224
}

/// One route of the table the lookup scans.
#[derive(Clone, Copy, Debug)]
struct RouteEntry {
    /// The prefix's address, masked.
    net: u32,
    mask: u32,
    len: u8,
    /// The network packets leave on.
    network: NetworkId,
    /// The next hop of a static route; `None` for a connected one (the destination itself).
    via: Option<Ipv4Addr>,
}

/// Where a lookup sends a packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Hop {
    /// The egress network.
    pub(super) network: NetworkId,
    /// Whose MAC the packet goes to: the destination (connected) or the next hop (static).
    pub(super) neighbour: Ipv4Addr,
    /// A connected route.
    pub(super) connected: bool,
}

/// What the router knows of a neighbour's MAC.
#[derive(Clone, Copy, Debug)]
pub(super) struct Resolution {
    /// The MAC to send to, when known.
    pub(super) mac: Option<MacAddr>,
    /// Send an ARP request for it now (never more than one per [`ARP_INTERVAL`]).
    pub(super) ask: bool,
    /// It has not answered for [`UNANSWERED`].
    pub(super) unanswered: bool,
}

/// A neighbour: known (its MAC, from an ARP reply) or asked for.
#[derive(Clone, Copy, Debug)]
struct Neighbour {
    mac: Option<MacAddr>,
    /// When the last reply came.
    confirmed: Duration,
    /// When the last ARP request went.
    requested: Option<Duration>,
    /// Since when the router has been asking without an answer.
    asking_since: Option<Duration>,
}

impl Neighbour {
    /// Whether nothing keeps it any longer at `now`: a known neighbour past its lifetime and
    /// not being asked for, or an address asked for that had no packet for a while.
    fn expired(&self, now: Duration) -> bool {
        let asked_lately = self
            .requested
            .is_some_and(|r| now.saturating_sub(r) < PENDING_LIFETIME);
        let known = self.mac.is_some() && now.saturating_sub(self.confirmed) < NEIGHBOUR_LIFETIME;
        !known && !asked_lately
    }
}

/// A router's neighbours, by network and address: bounded ([`MAX_NEIGHBOURS`]), aged.
#[derive(Debug, Default)]
pub(super) struct Neighbours {
    entries: HashMap<(NetworkId, Ipv4Addr), Neighbour>,
    /// When a full table was last swept for expired entries.
    last_sweep: Option<Duration>,
    /// Neighbours whose MAC was learned or changed, so far (the fast path's offers depend
    /// on them: `fastpath`).
    changes: u64,
}

impl Neighbours {
    /// What is known of `ip` on `network` at `now`, starting to ask for it when it is not
    /// known: a known MAC (and whether to refresh it), or whether to send an ARP request and
    /// whether it has gone unanswered too long.
    pub(super) fn resolve(
        &mut self,
        network: NetworkId,
        ip: Ipv4Addr,
        now: Duration,
    ) -> Resolution {
        let since = |t: Duration| now.saturating_sub(t);
        if let Some(n) = self.entries.get_mut(&(network, ip)) {
            if n.mac.is_some() && since(n.confirmed) < NEIGHBOUR_LIFETIME {
                let ask = since(n.confirmed) >= NEIGHBOUR_REFRESH
                    && n.requested.is_none_or(|r| since(r) >= ARP_INTERVAL);
                if ask {
                    n.requested = Some(now);
                }
                return Resolution {
                    mac: n.mac,
                    ask,
                    unanswered: false,
                };
            }
            // Unknown, or expired: ask (again).
            if n.mac.take().is_some() {
                self.changes = self.changes.wrapping_add(1);
            }
            if n.asking_since.is_none() || n.requested.is_some_and(|r| since(r) >= PENDING_LIFETIME)
            {
                n.asking_since = Some(now);
            }
            let ask = n.requested.is_none_or(|r| since(r) >= ARP_INTERVAL);
            if ask {
                n.requested = Some(now);
            }
            return Resolution {
                mac: None,
                ask,
                unanswered: n.asking_since.is_some_and(|s| since(s) >= UNANSWERED),
            };
        }
        if self.entries.len() >= MAX_NEIGHBOURS {
            // Full: free what expired, at most once a second (a scan of the table).
            if self.last_sweep.is_none_or(|t| since(t) >= ARP_INTERVAL) {
                self.last_sweep = Some(now);
                self.expire(now);
            }
            if self.entries.len() >= MAX_NEIGHBOURS {
                return Resolution {
                    mac: None,
                    ask: false,
                    unanswered: false,
                };
            }
        }
        self.entries.insert(
            (network, ip),
            Neighbour {
                mac: None,
                confirmed: Duration::ZERO,
                requested: Some(now),
                asking_since: Some(now),
            },
        );
        Resolution {
            mac: None,
            ask: true,
            unanswered: false,
        }
    }

    /// An ARP reply from `ip` at `mac` on `network`: taken when the router knows or asked for
    /// that address (unsolicited replies are ignored). True when taken.
    pub(super) fn learn(
        &mut self,
        network: NetworkId,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: Duration,
    ) -> bool {
        match self.entries.get_mut(&(network, ip)) {
            Some(n) => {
                if n.mac != Some(mac) {
                    self.changes = self.changes.wrapping_add(1);
                }
                n.mac = Some(mac);
                n.confirmed = now;
                n.asking_since = None;
                true
            }
            None => false,
        }
    }

    /// Neighbours whose MAC was learned or changed, so far (a counter that only grows).
    pub(super) fn changes(&self) -> u64 {
        self.changes
    }

    /// Forgets the neighbours of a network (its interface went).
    pub(super) fn forget_network(&mut self, network: NetworkId) {
        self.entries.retain(|(n, _), _| *n != network);
    }

    /// Frees expired entries; returns how many.
    pub(super) fn expire(&mut self, now: Duration) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, n| !n.expired(now));
        before - self.entries.len()
    }

    /// Known neighbours (those whose MAC is valid at `now`), sorted.
    pub(super) fn known(&self, now: Duration) -> Vec<(NetworkId, Ipv4Addr, MacAddr)> {
        let mut list: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, n)| now.saturating_sub(n.confirmed) < NEIGHBOUR_LIFETIME)
            .filter_map(|(&(network, ip), n)| Some((network, ip, n.mac?)))
            .collect();
        list.sort_unstable();
        list
    }

    /// Entries, known or asked for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A router as the switch keeps it.
#[derive(Debug, Default)]
pub(super) struct RouterState {
    /// Its interfaces, one per attached network.
    pub(super) interfaces: Vec<RouterInterface>,
    /// Its interface on its uplink's external network (not a gateway: only the edge answers
    /// for it), which gives a connected route as the others do.
    pub(super) uplink: Option<RouterInterface>,
    /// Static routes as configured: prefix (host bits zero) and next hop, sorted.
    statics: Vec<(Prefix, Ipv4Addr)>,
    /// The table the lookup scans: connected routes and the static routes whose next hop is on
    /// an interface, longest prefix first, connected before static at equal length.
    table: Vec<RouteEntry>,
    pub(super) neighbours: Neighbours,
    pub(super) counters: RouterCounters,
}

impl RouterState {
    /// Adds or replaces the interface on `iface.network`.
    pub(super) fn set_interface(&mut self, iface: RouterInterface) {
        self.interfaces.retain(|i| i.network != iface.network);
        self.interfaces.push(iface);
        self.interfaces.sort_unstable_by_key(|i| i.network);
        self.neighbours.forget_network(iface.network);
        self.rebuild();
    }

    /// Removes the interface on a network (and the neighbours learned there).
    pub(super) fn remove_interface(&mut self, network: NetworkId) {
        self.interfaces.retain(|i| i.network != network);
        self.neighbours.forget_network(network);
        self.rebuild();
    }

    /// Sets (or with `None` removes) the uplink's interface; the neighbours learned on the
    /// external network before are forgotten.
    pub(super) fn set_uplink(&mut self, iface: Option<RouterInterface>) {
        if let Some(old) = self.uplink.take() {
            self.neighbours.forget_network(old.network);
        }
        if let Some(new) = iface {
            self.neighbours.forget_network(new.network);
        }
        self.uplink = iface;
        self.rebuild();
    }

    /// The interfaces and the uplink's.
    pub(super) fn all_interfaces(&self) -> impl Iterator<Item = &RouterInterface> {
        self.interfaces.iter().chain(self.uplink.iter())
    }

    /// Adds a static route, replacing one to the same prefix.
    pub(super) fn add_route(&mut self, prefix: Prefix, via: Ipv4Addr) {
        self.statics.retain(|(p, _)| *p != prefix);
        self.statics.push((prefix, via));
        self.statics
            .sort_unstable_by_key(|(p, v)| (p.addr, p.len, *v));
        self.rebuild();
    }

    /// Removes the static route to a prefix, if there is one.
    pub(super) fn remove_route(&mut self, prefix: Prefix) {
        self.statics.retain(|(p, _)| *p != prefix);
        self.rebuild();
    }

    /// The static routes as configured (prefix, next hop), sorted.
    pub(super) fn routes(&self) -> &[(Prefix, Ipv4Addr)] {
        &self.statics
    }

    /// The interface with address `ip`, if the router has one.
    pub(super) fn interface_at(&self, ip: Ipv4Addr) -> Option<&RouterInterface> {
        self.all_interfaces().find(|i| i.addr == ip)
    }

    /// Builds the lookup table from the interfaces and the static routes. A static route whose
    /// next hop is on none of the interfaces, or is one of the router's own addresses, is
    /// left out until an interface makes it usable.
    fn rebuild(&mut self) {
        self.table.clear();
        for i in self.interfaces.iter().chain(self.uplink.iter()) {
            self.table.push(RouteEntry {
                net: u32::from(i.addr) & i.mask(),
                mask: i.mask(),
                len: i.prefix_len,
                network: i.network,
                via: None,
            });
        }
        for &(prefix, via) in &self.statics {
            if self.all_interfaces().any(|i| i.addr == via) {
                continue;
            }
            let Some(out) = self
                .all_interfaces()
                .filter(|i| i.contains(via))
                .max_by_key(|i| i.prefix_len)
            else {
                continue;
            };
            let m = mask(prefix.len);
            self.table.push(RouteEntry {
                net: u32::from(prefix.addr) & m,
                mask: m,
                len: prefix.len,
                network: out.network,
                via: Some(via),
            });
        }
        self.table
            .sort_by_key(|e| (Reverse(e.len), e.via.is_some()));
    }

    /// The longest-prefix match for `dst` (a connected route wins over a static one of the
    /// same prefix). A linear scan of a table sorted by length: the first match is the
    /// longest. Routers have tens of routes; nothing is allocated.
    pub(super) fn lookup(&self, dst: Ipv4Addr) -> Option<Hop> {
        let d = u32::from(dst);
        self.table
            .iter()
            .find(|e| d & e.mask == e.net)
            .map(|e| Hop {
                network: e.network,
                neighbour: e.via.unwrap_or(dst),
                connected: e.via.is_none(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW_MAC: MacAddr = MacAddr([0x02, 0x76, 0x72, 0, 0, 1]);

    fn iface(network: u32, a: [u8; 4], len: u8) -> RouterInterface {
        RouterInterface {
            router: RouterId(1),
            network: NetworkId(network),
            addr: Ipv4Addr::from(a),
            prefix_len: len,
            mac: GW_MAC,
            mtu: None,
        }
    }

    fn prefix(a: [u8; 4], len: u8) -> Prefix {
        Prefix {
            addr: Ipv4Addr::from(a),
            len,
        }
    }

    fn hop(network: u32, neighbour: [u8; 4], connected: bool) -> Option<Hop> {
        Some(Hop {
            network: NetworkId(network),
            neighbour: Ipv4Addr::from(neighbour),
            connected,
        })
    }

    #[test]
    fn longest_prefix_wins_and_connected_beats_static() {
        let mut r = RouterState::default();
        r.set_interface(iface(1, [10, 1, 0, 1], 24));
        r.set_interface(iface(2, [10, 2, 0, 1], 16));
        r.add_route(prefix([0, 0, 0, 0], 0), Ipv4Addr::new(10, 2, 0, 254));
        r.add_route(prefix([192, 168, 0, 0], 16), Ipv4Addr::new(10, 1, 0, 9));
        r.add_route(prefix([192, 168, 7, 0], 24), Ipv4Addr::new(10, 2, 3, 4));
        // The same prefix as a connected route: the connected one wins.
        r.add_route(prefix([10, 1, 0, 0], 24), Ipv4Addr::new(10, 2, 0, 7));
        assert_eq!(
            r.lookup(Ipv4Addr::new(10, 1, 0, 5)),
            hop(1, [10, 1, 0, 5], true)
        );
        assert_eq!(
            r.lookup(Ipv4Addr::new(10, 2, 9, 9)),
            hop(2, [10, 2, 9, 9], true)
        );
        assert_eq!(
            r.lookup(Ipv4Addr::new(192, 168, 7, 1)),
            hop(2, [10, 2, 3, 4], false)
        );
        assert_eq!(
            r.lookup(Ipv4Addr::new(192, 168, 8, 1)),
            hop(1, [10, 1, 0, 9], false)
        );
        assert_eq!(
            r.lookup(Ipv4Addr::new(8, 8, 8, 8)),
            hop(2, [10, 2, 0, 254], false)
        );
        // Without the connected route, the static one to the same prefix takes over.
        r.remove_interface(NetworkId(1));
        assert_eq!(
            r.lookup(Ipv4Addr::new(10, 1, 0, 5)),
            hop(2, [10, 2, 0, 7], false)
        );
        // The route via 10.1.0.9 has no interface for its next hop now: the default matches.
        assert_eq!(
            r.lookup(Ipv4Addr::new(192, 168, 8, 1)),
            hop(2, [10, 2, 0, 254], false)
        );
        r.remove_route(prefix([0, 0, 0, 0], 0));
        assert_eq!(r.lookup(Ipv4Addr::new(192, 168, 8, 1)), None);
        assert_eq!(r.routes().len(), 3);
    }

    #[test]
    fn a_route_replaces_one_to_the_same_prefix_and_own_addresses_are_no_next_hop() {
        let mut r = RouterState::default();
        r.set_interface(iface(1, [10, 1, 0, 1], 24));
        r.add_route(prefix([172, 16, 0, 0], 12), Ipv4Addr::new(10, 1, 0, 2));
        r.add_route(prefix([172, 16, 0, 0], 12), Ipv4Addr::new(10, 1, 0, 3));
        assert_eq!(r.routes().len(), 1);
        assert_eq!(
            r.lookup(Ipv4Addr::new(172, 20, 0, 1)),
            hop(1, [10, 1, 0, 3], false)
        );
        r.add_route(prefix([172, 16, 0, 0], 12), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(r.lookup(Ipv4Addr::new(172, 20, 0, 1)), None);
    }

    #[test]
    fn interfaces_know_their_subnet() {
        let i = iface(1, [10, 1, 0, 1], 24);
        assert_eq!(i.subnet(), prefix([10, 1, 0, 0], 24));
        assert!(i.contains(Ipv4Addr::new(10, 1, 0, 200)));
        assert!(!i.contains(Ipv4Addr::new(10, 1, 1, 1)));
        assert!(i.is_subnet_edge(Ipv4Addr::new(10, 1, 0, 0)));
        assert!(i.is_subnet_edge(Ipv4Addr::new(10, 1, 0, 255)));
        assert!(!i.is_subnet_edge(Ipv4Addr::new(10, 1, 0, 254)));
        let p2p = iface(1, [10, 1, 0, 0], 31);
        assert!(!p2p.is_subnet_edge(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(mask(0), 0);
        assert_eq!(mask(32), u32::MAX);
        assert_eq!(mask(40), u32::MAX);
    }

    #[test]
    fn neighbours_are_asked_for_learned_refreshed_and_aged() {
        let mut n = Neighbours::default();
        let (net, ip, mac) = (
            NetworkId(1),
            Ipv4Addr::new(10, 1, 0, 5),
            MacAddr([2, 0, 0, 0, 0, 5]),
        );
        let t = Duration::from_millis;
        // Unsolicited replies are not taken.
        assert!(!n.learn(net, ip, mac, t(0)));
        let r = n.resolve(net, ip, t(0));
        assert!(r.mac.is_none() && r.ask && !r.unanswered);
        // At most one request a second; unanswered after 3 s.
        assert!(!n.resolve(net, ip, t(500)).ask);
        assert!(n.resolve(net, ip, t(1000)).ask);
        let r = n.resolve(net, ip, t(2999));
        assert!(r.ask && !r.unanswered);
        let r = n.resolve(net, ip, t(3000));
        assert!(r.unanswered && !r.ask);
        assert!(n.learn(net, ip, mac, t(3100)));
        let r = n.resolve(net, ip, t(3200));
        assert_eq!((r.mac, r.ask, r.unanswered), (Some(mac), false, false));
        // In use past the refresh time: asked again, still used.
        let r = n.resolve(net, ip, t(3100) + NEIGHBOUR_REFRESH);
        assert_eq!((r.mac, r.ask), (Some(mac), true));
        assert!(!n.resolve(net, ip, t(3200) + NEIGHBOUR_REFRESH).ask);
        // Past its lifetime without a reply: unknown again.
        let r = n.resolve(net, ip, t(3100) + NEIGHBOUR_LIFETIME);
        assert!(r.mac.is_none() && r.ask);
        assert_eq!(n.known(t(3100) + NEIGHBOUR_LIFETIME), vec![]);
        // Another network's address of the same number is another neighbour.
        assert!(!n.learn(NetworkId(2), ip, mac, t(0)));
        // Expiry frees what nothing keeps.
        let late = t(3100) + NEIGHBOUR_LIFETIME + PENDING_LIFETIME;
        assert_eq!(n.expire(late), 1);
        assert_eq!(n.len(), 0);
    }

    #[test]
    fn the_neighbour_table_is_bounded() {
        let mut n = Neighbours::default();
        let net = NetworkId(1);
        let t0 = Duration::ZERO;
        for i in 0..MAX_NEIGHBOURS as u32 {
            assert!(n.resolve(net, Ipv4Addr::from(i), t0).ask);
        }
        let extra = Ipv4Addr::from(u32::MAX);
        let r = n.resolve(net, extra, t0);
        assert!(!r.ask && r.mac.is_none());
        assert_eq!(n.len(), MAX_NEIGHBOURS);
        // Once the pending entries expire, there is room again.
        assert!(n.resolve(net, extra, PENDING_LIFETIME).ask);
        assert_eq!(n.len(), 1);
        n.forget_network(net);
        assert_eq!(n.len(), 0);
    }
}
