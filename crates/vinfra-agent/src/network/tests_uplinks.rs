//! Unit tests of router uplinks on the switch link: validation, the edge (here or at another
//! host's VTEP), the desired requests and their order, plans (replacements, what an uplink
//! takes along), a switch that refuses uplinks, NAT counters by router name.

use std::net::Ipv4Addr;

use vinfra_proto::{
    HostSwitchConfig, SwitchFloatingIp, SwitchNetworkKind, SwitchRoute, SwitchRouter,
    SwitchRouterInterface, SwitchRouterUplink,
};
use vinfra_switch_control::protocol::{NatCountersView, RouterCountersView};
use vinfra_switch_control::{CountersView, EdgeSpec, Request};
use vinfra_types::error::chain;
use vinfra_types::network::SwitchRouterNat;

use super::counters::host_counters;
use super::route::parse_prefix;
use super::tests::{
    apply_model, config, desired, link, model_switch, same, settings, vlan_network, Refusals,
};
use super::uplink::edge;
use super::*;

const BLUE_GW: &str = "02:76:72:00:00:01";
const RED_GW: &str = "02:76:72:00:00:02";
const UPLINK_MAC: &str = "02:76:72:01:00:07";
/// This host's underlay address ([`settings`]).
const HERE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Another host's.
const THERE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Router 7's transit VNI.
const TRANSIT: u32 = 0xFF_0007;

fn interface(network: &str, ip: [u8; 4], mac: &str) -> SwitchRouterInterface {
    SwitchRouterInterface {
        network: network.into(),
        ip: ip.into(),
        prefix_len: 24,
        mac: mac.into(),
    }
}

fn route(prefix: &str, via: [u8; 4]) -> SwitchRoute {
    SwitchRoute {
        prefix: prefix.into(),
        via: via.into(),
    }
}

fn floating(external: [u8; 4], internal: [u8; 4]) -> SwitchFloatingIp {
    SwitchFloatingIp {
        external: external.into(),
        internal: internal.into(),
    }
}

/// [`config`] with the VLAN networks ext (3, VLAN 82) and ext2 (4, VLAN 83) and router `edge`
/// (7): blue 10.90.0.1/24, red 10.91.0.1/24, its uplink 10.82.0.2/24 on ext with this host as
/// its edge and floating IPs 10.82.0.50 (10.90.0.5) and 10.82.0.51 (10.91.0.6); a default
/// route via 10.82.0.254 (on the uplink), 192.168.5.0/24 via 10.90.0.9.
fn uplinked() -> HostSwitchConfig {
    let mut c = config();
    c.networks.push(vlan_network("ext", 3, 82));
    c.networks.push(vlan_network("ext2", 4, 83));
    c.routers = vec![SwitchRouter {
        name: "edge".into(),
        id: 7,
        interfaces: vec![
            interface("blue", [10, 90, 0, 1], BLUE_GW),
            interface("red", [10, 91, 0, 1], RED_GW),
        ],
        routes: vec![
            route("0.0.0.0/0", [10, 82, 0, 254]),
            route("192.168.5.0/24", [10, 90, 0, 9]),
        ],
        uplink: Some(SwitchRouterUplink {
            network: "ext".into(),
            ip: Ipv4Addr::new(10, 82, 0, 2),
            prefix_len: 24,
            mac: UPLINK_MAC.into(),
            edge_vtep: HERE,
            transit_vni: TRANSIT,
            floating_ips: vec![
                floating([10, 82, 0, 50], [10, 90, 0, 5]),
                floating([10, 82, 0, 51], [10, 91, 0, 6]),
            ],
        }),
    }];
    c
}

/// The uplink of [`uplinked`]'s router, to edit.
fn uplink(c: &mut HostSwitchConfig) -> &mut SwitchRouterUplink {
    c.routers[0].uplink.as_mut().unwrap()
}

fn set_uplink(network: u32, ip: [u8; 4], prefix_len: u8, edge: EdgeSpec) -> Request {
    Request::SetRouterUplink {
        router: 7,
        network,
        ip: ip.into(),
        prefix_len,
        mac: UPLINK_MAC.parse().unwrap(),
        edge,
        transit_vni: TRANSIT,
        mtu: Some(1500),
    }
}

fn add_floating(external: [u8; 4], internal: [u8; 4]) -> Request {
    Request::AddFloatingIp {
        router: 7,
        external: external.into(),
        internal: internal.into(),
    }
}

fn remove_floating(external: [u8; 4]) -> Request {
    Request::RemoveFloatingIp {
        router: 7,
        external: external.into(),
    }
}

fn add_route(to: &str, via: [u8; 4]) -> Request {
    Request::AddRoute {
        router: 7,
        prefix: parse_prefix(to).unwrap(),
        via: via.into(),
    }
}

fn remove_route(to: &str) -> Request {
    Request::RemoveRoute {
        router: 7,
        prefix: parse_prefix(to).unwrap(),
    }
}

/// Gives `link` configuration `c`, plans the step from `state`, applies it to the (strict)
/// model and checks that the switch then matches. Returns the plan.
fn step(link: &SwitchLink, state: &mut Vec<Request>, c: HostSwitchConfig) -> Vec<Request> {
    link.set_config(c).unwrap();
    let d = desired(link, false);
    let p = plan(state, &d);
    apply_model(state, &p);
    assert!(same(state, &d), "{state:#?}\n{d:#?}");
    assert!(plan(state, &d).is_empty(), "in sync: {:?}", plan(state, &d));
    p
}

/// A link with [`uplinked`] and a model switch that has it all.
fn uplinked_switch() -> (tempfile::TempDir, SwitchLink, Vec<Request>) {
    let (dir, link) = link();
    let mut state = Vec::new();
    step(&link, &mut state, uplinked());
    (dir, link, state)
}

/// Checks that each request of `order` is in `p`, each before the next.
fn in_order(p: &[Request], order: &[Request]) {
    let at = |r: &Request| {
        p.iter()
            .position(|x| x == r)
            .unwrap_or_else(|| panic!("{r:?} not in {p:#?}"))
    };
    for pair in order.windows(2) {
        assert!(at(&pair[0]) < at(&pair[1]), "{pair:?} in {p:#?}");
    }
}

#[test]
fn the_uplink_and_its_floating_ips_come_after_the_interfaces_and_before_the_routes() {
    let (_dir, link) = link();
    link.set_config(uplinked()).unwrap();
    let d = desired(&link, false);
    let routing = [
        Request::AddRouter { id: 7 },
        Request::SetRouterInterface {
            router: 7,
            network: 1,
            ip: [10, 90, 0, 1].into(),
            prefix_len: 24,
            mac: BLUE_GW.parse().unwrap(),
            mtu: Some(1450),
        },
        Request::SetRouterInterface {
            router: 7,
            network: 2,
            ip: [10, 91, 0, 1].into(),
            prefix_len: 24,
            mac: RED_GW.parse().unwrap(),
            mtu: Some(1450),
        },
        // The external network's number and MTU; this host is the edge.
        set_uplink(3, [10, 82, 0, 2], 24, EdgeSpec::Local),
        add_floating([10, 82, 0, 50], [10, 90, 0, 5]),
        add_floating([10, 82, 0, 51], [10, 91, 0, 6]),
        add_route("0.0.0.0/0", [10, 82, 0, 254]),
        add_route("192.168.5.0/24", [10, 90, 0, 9]),
    ];
    assert_eq!(d[d.len() - routing.len()..], routing[..], "{d:#?}");
    // A restarted (empty) switch gets everything in that order, and takes it.
    assert_eq!(plan(&[], &d), d);
    let mut state = Vec::new();
    apply_model(&mut state, &d);
    assert!(same(&state, &d));
    assert!(plan(&state, &d).is_empty());
}

#[test]
fn the_edge_is_local_only_at_this_hosts_own_underlay_address() {
    assert_eq!(edge(HERE, Some(HERE)), EdgeSpec::Local);
    assert_eq!(edge(THERE, Some(HERE)), EdgeSpec::Remote { vtep: THERE });
    // A host without an underlay address is never the edge.
    assert_eq!(edge(HERE, None), EdgeSpec::Remote { vtep: HERE });
    let uplink_of = |d: &[Request]| {
        d.iter()
            .find_map(|r| match r {
                Request::SetRouterUplink { edge, .. } => Some(*edge),
                _ => None,
            })
            .unwrap()
    };
    let (_dir, link) = link();
    let mut c = uplinked();
    uplink(&mut c).edge_vtep = THERE;
    link.set_config(c).unwrap();
    assert_eq!(
        uplink_of(&desired(&link, false)),
        EdgeSpec::Remote { vtep: THERE }
    );
    // The same configuration on the host at THERE: the edge is there.
    let there = SwitchAttachment {
        underlay_ip: Some(THERE),
        ..settings()
    };
    assert_eq!(
        uplink_of(&link.desired().requests(&there, false)),
        EdgeSpec::Local
    );
}

#[test]
fn an_edge_change_is_one_replace_that_keeps_floating_ips_and_routes() {
    let (_dir, link, mut state) = uplinked_switch();
    let mut c = uplinked();
    // The edge moves to another host: the uplink is set again, alone.
    uplink(&mut c).edge_vtep = THERE;
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![set_uplink(
            3,
            [10, 82, 0, 2],
            24,
            EdgeSpec::Remote { vtep: THERE }
        )]
    );
    // And back here.
    uplink(&mut c).edge_vtep = HERE;
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![set_uplink(3, [10, 82, 0, 2], 24, EdgeSpec::Local)]
    );
    // Another address in the same subnet, another MTU: set again, alone.
    uplink(&mut c).ip = Ipv4Addr::new(10, 82, 0, 3);
    c.networks[2].mtu = 1400;
    let mut again = set_uplink(3, [10, 82, 0, 3], 24, EdgeSpec::Local);
    if let Request::SetRouterUplink { mtu, .. } = &mut again {
        *mtu = Some(1400);
    }
    assert_eq!(step(&link, &mut state, c), vec![again]);
}

#[test]
fn floating_ips_are_added_replaced_and_removed_alone() {
    let (_dir, link, mut state) = uplinked_switch();
    let mut c = uplinked();
    uplink(&mut c)
        .floating_ips
        .push(floating([10, 82, 0, 52], [10, 90, 0, 7]));
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![add_floating([10, 82, 0, 52], [10, 90, 0, 7])]
    );
    // Another inner address behind the same floating IP: set again (the switch replaces it).
    uplink(&mut c).floating_ips[2].internal = Ipv4Addr::new(10, 90, 0, 8);
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![add_floating([10, 82, 0, 52], [10, 90, 0, 8])]
    );
    uplink(&mut c).floating_ips.remove(0);
    assert_eq!(
        step(&link, &mut state, c),
        vec![remove_floating([10, 82, 0, 50])]
    );
}

#[test]
fn an_uplink_that_changes_its_subnet_takes_its_floating_ips_and_routes_along() {
    let (_dir, link, mut state) = uplinked_switch();
    // A wider subnet holds the same floating IPs and next hop, but they go before it changes
    // and come back after it.
    let mut c = uplinked();
    uplink(&mut c).prefix_len = 23;
    assert_eq!(
        step(&link, &mut state, c),
        vec![
            remove_floating([10, 82, 0, 50]),
            remove_floating([10, 82, 0, 51]),
            remove_route("0.0.0.0/0"),
            set_uplink(3, [10, 82, 0, 2], 23, EdgeSpec::Local),
            add_floating([10, 82, 0, 50], [10, 90, 0, 5]),
            add_floating([10, 82, 0, 51], [10, 91, 0, 6]),
            add_route("0.0.0.0/0", [10, 82, 0, 254]),
        ]
    );
}

#[test]
fn an_uplink_on_another_network_is_removed_first_and_a_removed_uplink_takes_everything_along() {
    let (_dir, link, mut state) = uplinked_switch();
    // To ext2, in another subnet: what it had goes, then the old uplink, then the new one and
    // what it has.
    let mut c = uplinked();
    let u = uplink(&mut c);
    u.network = "ext2".into();
    u.ip = Ipv4Addr::new(10, 83, 0, 2);
    u.floating_ips = vec![floating([10, 83, 0, 50], [10, 90, 0, 5])];
    c.routers[0].routes[0].via = Ipv4Addr::new(10, 83, 0, 254);
    let p = step(&link, &mut state, c);
    assert_eq!(p.len(), 7, "{p:#?}");
    in_order(
        &p,
        &[
            remove_floating([10, 82, 0, 50]),
            Request::RemoveRouterUplink { router: 7 },
            set_uplink(4, [10, 83, 0, 2], 24, EdgeSpec::Local),
            add_floating([10, 83, 0, 50], [10, 90, 0, 5]),
        ],
    );
    in_order(
        &p,
        &[
            remove_floating([10, 82, 0, 51]),
            remove_route("0.0.0.0/0"),
            Request::RemoveRouterUplink { router: 7 },
            set_uplink(4, [10, 83, 0, 2], 24, EdgeSpec::Local),
            add_route("0.0.0.0/0", [10, 83, 0, 254]),
        ],
    );
    // No uplink any more, the default route back through red: the floating IP and the route
    // through the uplink go first.
    let mut c = uplinked();
    c.routers[0].uplink = None;
    c.routers[0].routes[0].via = Ipv4Addr::new(10, 91, 0, 254);
    let p = step(&link, &mut state, c);
    assert_eq!(
        p,
        vec![
            remove_floating([10, 83, 0, 50]),
            remove_route("0.0.0.0/0"),
            Request::RemoveRouterUplink { router: 7 },
            add_route("0.0.0.0/0", [10, 91, 0, 254]),
        ]
    );
    // The uplink comes back, then its floating IPs; the default route is set again (replaced)
    // after the uplink its next hop is on.
    let p = step(&link, &mut state, uplinked());
    assert_eq!(
        p,
        vec![
            set_uplink(3, [10, 82, 0, 2], 24, EdgeSpec::Local),
            add_floating([10, 82, 0, 50], [10, 90, 0, 5]),
            add_floating([10, 82, 0, 51], [10, 91, 0, 6]),
            add_route("0.0.0.0/0", [10, 82, 0, 254]),
        ]
    );
}

#[test]
fn a_router_that_goes_takes_its_uplink_and_floating_ips_first() {
    let (_dir, link, mut state) = uplinked_switch();
    let p = step(&link, &mut state, config());
    for first in [
        remove_floating([10, 82, 0, 50]),
        remove_floating([10, 82, 0, 51]),
        remove_route("0.0.0.0/0"),
    ] {
        in_order(
            &p,
            &[
                first,
                Request::RemoveRouterUplink { router: 7 },
                Request::RemoveNetwork { id: 3 },
            ],
        );
    }
    in_order(
        &p,
        &[
            Request::RemoveRouterUplink { router: 7 },
            Request::RemoveRouter { id: 7 },
        ],
    );
}

#[test]
fn a_recreated_external_network_gets_the_uplink_back() {
    let (_dir, link, mut state) = uplinked_switch();
    let mut c = uplinked();
    c.networks[2].kind = SwitchNetworkKind::Vlan { vid: 84 };
    let p = step(&link, &mut state, c);
    in_order(
        &p,
        &[
            remove_floating([10, 82, 0, 50]),
            Request::RemoveRouterUplink { router: 7 },
            Request::RemoveNetwork { id: 3 },
            Request::AddNetwork {
                id: 3,
                kind: vinfra_switch_control::NetworkSpec::Vlan { vid: 84 },
            },
            set_uplink(3, [10, 82, 0, 2], 24, EdgeSpec::Local),
            add_floating([10, 82, 0, 50], [10, 90, 0, 5]),
            add_route("0.0.0.0/0", [10, 82, 0, 254]),
        ],
    );
    in_order(
        &p,
        &[
            remove_route("0.0.0.0/0"),
            Request::RemoveRouterUplink { router: 7 },
        ],
    );
    // The router and its interfaces stay.
    assert!(!p.iter().any(|r| matches!(
        r,
        Request::RemoveRouter { .. } | Request::RemoveRouterInterface { .. }
    )));
}

#[test]
fn bad_uplinks_refuse_the_whole_configuration() {
    let (_dir, link) = link();
    link.set_config(uplinked()).unwrap();
    type Edit = fn(&mut HostSwitchConfig);
    /// A second router `core` (8) with an uplink on ext at 10.82.0.3, transit VNI 0xFF0008.
    fn core(c: &mut HostSwitchConfig) -> &mut SwitchRouterUplink {
        let mut other = c.routers[0].clone();
        other.name = "core".into();
        other.id = 8;
        other.interfaces.clear();
        other.routes.clear();
        let u = other.uplink.as_mut().unwrap();
        u.ip = Ipv4Addr::new(10, 82, 0, 3);
        u.transit_vni = 0xFF_0008;
        u.floating_ips.clear();
        c.routers.push(other);
        c.routers[1].uplink.as_mut().unwrap()
    }
    let cases: Vec<(Edit, &str)> = vec![
        (
            |c| uplink(c).network = "green".into(),
            "router edge: uplink: network green is not configured",
        ),
        (
            |c| uplink(c).network = "blue".into(),
            "router edge: uplink: network blue is not a VLAN network",
        ),
        (
            |c| {
                c.routers[0]
                    .interfaces
                    .push(interface("ext2", [10, 83, 0, 1], RED_GW));
                uplink(c).network = "ext2".into();
            },
            "router edge: uplink: network ext2 carries an interface of router edge",
        ),
        (
            |c| uplink(c).prefix_len = 0,
            "router edge: uplink: prefix length 0 is out of range (1 to 32)",
        ),
        (
            |c| uplink(c).prefix_len = 33,
            "prefix length 33 is out of range",
        ),
        (
            |c| uplink(c).ip = Ipv4Addr::new(10, 82, 0, 255),
            "router edge: uplink: 10.82.0.255/24 is not a host address of its subnet",
        ),
        (
            |c| uplink(c).mac = "ff:ff:ff:ff:ff:ff".into(),
            "router edge: uplink: MAC \"ff:ff:ff:ff:ff:ff\": ff:ff:ff:ff:ff:ff is not a unicast \
             MAC address",
        ),
        (
            |c| uplink(c).mac = "edge".into(),
            "router edge: uplink: MAC \"edge\"",
        ),
        (
            |c| uplink(c).edge_vtep = Ipv4Addr::UNSPECIFIED,
            "router edge: uplink: edge 0.0.0.0 is not a host's underlay address",
        ),
        (
            |c| uplink(c).edge_vtep = Ipv4Addr::new(239, 0, 0, 1),
            "edge 239.0.0.1 is not a host's underlay address",
        ),
        (
            |c| uplink(c).transit_vni = 0,
            "router edge: uplink: transit VNI 0 is out of range (1 to 16777215)",
        ),
        (
            |c| uplink(c).transit_vni = 1 << 24,
            "transit VNI 16777216 is out of range",
        ),
        (
            |c| uplink(c).transit_vni = 5001,
            "router edge: uplink: transit VNI 5001 is the VNI of network blue",
        ),
        (
            |c| core(c).transit_vni = TRANSIT,
            "router core: uplink: transit VNI 16711687 is also the transit VNI of router edge",
        ),
        (
            |c| core(c).ip = Ipv4Addr::new(10, 82, 0, 2),
            "router core: uplink: 10.82.0.2 on network ext is also an address of router edge",
        ),
        (
            |c| {
                core(c)
                    .floating_ips
                    .push(floating([10, 82, 0, 51], [10, 90, 0, 9]))
            },
            "router core: uplink: 10.82.0.51 on network ext is also an address of router edge",
        ),
        (
            |c| uplink(c).floating_ips[0].external = Ipv4Addr::new(10, 83, 0, 50),
            "router edge: uplink: floating IP 10.83.0.50 is outside the uplink's subnet \
             10.82.0.2/24",
        ),
        (
            |c| uplink(c).floating_ips[0].external = Ipv4Addr::new(10, 82, 0, 2),
            "router edge: uplink: floating IP 10.82.0.2 is not a free host address of the \
             uplink's subnet",
        ),
        (
            |c| uplink(c).floating_ips[0].external = Ipv4Addr::new(10, 82, 0, 0),
            "floating IP 10.82.0.0 is not a free host address",
        ),
        (
            |c| uplink(c).floating_ips[1].external = Ipv4Addr::new(10, 82, 0, 50),
            "router edge: uplink: floating IP 10.82.0.50 appears twice",
        ),
        (
            |c| uplink(c).floating_ips[0].internal = Ipv4Addr::new(10, 92, 0, 5),
            "router edge: uplink: floating IP 10.82.0.50: 10.92.0.5 is on none of the router's \
             networks",
        ),
        (
            |c| uplink(c).floating_ips[0].internal = Ipv4Addr::new(10, 90, 0, 1),
            "floating IP 10.82.0.50: 10.90.0.1 is on none of the router's networks",
        ),
        (
            |c| uplink(c).floating_ips[1].internal = Ipv4Addr::new(10, 90, 0, 5),
            "router edge: uplink: floating IPs 10.82.0.50 and 10.82.0.51 both translate \
             10.90.0.5",
        ),
        (
            // Without the uplink, its next hop is on none of the router's networks.
            |c| c.routers[0].uplink = None,
            "router edge: route to 0.0.0.0/0: next hop 10.82.0.254 is on none of the router's \
             networks",
        ),
    ];
    for (edit, message) in cases {
        let mut c = uplinked();
        edit(&mut c);
        let e = link.set_config(c).unwrap_err();
        assert!(
            matches!(e, SwitchLinkError::Config(_)),
            "{message}: {}",
            chain(&e)
        );
        assert!(chain(&e).contains(message), "{message}: {}", chain(&e));
        // Refused as a whole: the configuration before stays.
        assert_eq!(link.config(), uplinked());
    }
    // What the switch takes: two routers' uplinks on one external network, each with its own
    // addresses; an uplink with neither floating IPs nor routes through it.
    let mut c = uplinked();
    core(&mut c)
        .floating_ips
        .push(floating([10, 82, 0, 60], [10, 83, 0, 5]));
    c.routers[1]
        .interfaces
        .push(interface("ext2", [10, 83, 0, 1], RED_GW));
    uplink(&mut c).floating_ips.clear();
    link.set_config(c.clone()).unwrap();
    assert_eq!(link.config(), c);
}

#[test]
fn a_switch_without_the_edge_gets_everything_else_and_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    std::fs::create_dir(&data).unwrap();
    let old = model_switch(
        dir.path(),
        Refusals {
            uplinks: true,
            ..Refusals::default()
        },
    );
    let link = SwitchLink::open(
        SwitchAttachment {
            control: old.control.clone(),
            ..settings()
        },
        &data,
    )
    .unwrap();
    // (The strict model takes no route without an interface or uplink for its next hop, which
    // the daemon does take: the default route goes through red here.)
    let mut c = uplinked();
    c.routers[0].routes[0].via = Ipv4Addr::new(10, 91, 0, 254);
    link.set_config(c).unwrap();
    let d = desired(&link, false);
    let is_uplink = |r: &Request| {
        matches!(
            r,
            Request::SetRouterUplink { .. } | Request::AddFloatingIp { .. }
        )
    };
    let uplinks: Vec<Request> = d.iter().filter(|r| is_uplink(r)).cloned().collect();
    assert_eq!(uplinks.len(), 3);
    let o = link.reconcile().unwrap();
    let refused: Vec<Request> = o.refused.iter().map(|r| r.request.clone()).collect();
    assert_eq!(refused, uplinks);
    assert_eq!(o.applied, d.len() - uplinks.len());
    let rest: Vec<Request> = d.iter().filter(|r| !is_uplink(r)).cloned().collect();
    assert!(same(&old.state.lock().unwrap(), &rest));
    // Every reconcile asks again, and only for them; the refusals are the configuration's
    // error.
    let o = link.reconcile().unwrap();
    assert_eq!(o.applied, 0);
    let refused: Vec<Request> = o.refused.iter().map(|r| r.request.clone()).collect();
    assert_eq!(refused, uplinks);
    let e = o.into_result().unwrap_err();
    assert!(chain(&e).contains("router uplinks"), "{}", chain(&e));
    // A switch that already has a route through the uplink's subnet (the daemon takes it
    // without the uplink) keeps it: only the uplink and its floating IPs are asked for.
    link.set_config(uplinked()).unwrap();
    let d = desired(&link, false);
    let without: Vec<Request> = d.iter().filter(|r| !is_uplink(r)).cloned().collect();
    assert_eq!(plan(&without, &d), uplinks);
}

#[test]
fn nat_counters_are_reported_with_their_router() {
    let nat = NatCountersView {
        edge: true,
        sessions: 1,
        sessions_created: 2,
        sessions_expired: 3,
        snat_packets: 4,
        dnat_packets: 5,
        to_edge_packets: 6,
        from_transit_packets: 7,
        garps_sent: 8,
    };
    let view = CountersView {
        routers: vec![RouterCountersView {
            id: 7,
            routed_packets: 10,
            nat: Some(nat),
            ..RouterCountersView::default()
        }],
        ..CountersView::default()
    };
    let host = host_counters(&view, &uplinked(), &Default::default());
    assert_eq!(host.routers.len(), 1);
    assert_eq!(host.routers[0].router, "edge");
    assert_eq!(host.routers[0].routed_packets, 10);
    assert_eq!(
        host.routers[0].nat,
        Some(SwitchRouterNat {
            edge: true,
            sessions: 1,
            sessions_created: 2,
            sessions_expired: 3,
            snat_packets: 4,
            dnat_packets: 5,
            to_edge_packets: 6,
            from_transit_packets: 7,
            garps_sent: 8,
        })
    );
    // A router without NAT on the switch (no uplink, or an older switch): none.
    let view = CountersView {
        routers: vec![RouterCountersView {
            id: 7,
            ..RouterCountersView::default()
        }],
        ..CountersView::default()
    };
    let host = host_counters(&view, &uplinked(), &Default::default());
    assert_eq!(host.routers[0].nat, None);
}
