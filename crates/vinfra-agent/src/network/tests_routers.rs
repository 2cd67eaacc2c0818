//! Unit tests of routers on the switch link: validation, the desired requests, plans (their
//! order, replacements, replay), a switch without routing, counters by router name.

use std::net::Ipv4Addr;

use vinfra_proto::{HostSwitchConfig, SwitchRoute, SwitchRouter, SwitchRouterInterface};
use vinfra_switch_control::protocol::RouterCountersView;
use vinfra_switch_control::{CountersView, PrefixSpec, Request};
use vinfra_types::error::chain;
use vinfra_types::network::SwitchRouterCounters;

use super::counters::host_counters;
use super::route::{contains, is_host_address, parse_prefix, BadPrefix};
use super::tests::{apply_model, config, desired, link, model_switch, same, settings, Refusals};
use super::*;

fn interface(network: &str, ip: [u8; 4], prefix_len: u8, mac: &str) -> SwitchRouterInterface {
    SwitchRouterInterface {
        network: network.into(),
        ip: ip.into(),
        prefix_len,
        mac: mac.into(),
    }
}

fn route(prefix: &str, via: [u8; 4]) -> SwitchRoute {
    SwitchRoute {
        prefix: prefix.into(),
        via: via.into(),
    }
}

const BLUE_GW: &str = "02:76:72:00:00:01";
const RED_GW: &str = "02:76:72:00:00:02";

/// [`config`] with router `edge` (number 7) on both networks: blue 10.90.0.1/24, red
/// 10.91.0.1/24; a default route via red, 192.168.5.0/24 via blue.
fn routed() -> HostSwitchConfig {
    HostSwitchConfig {
        routers: vec![SwitchRouter {
            name: "edge".into(),
            id: 7,
            interfaces: vec![
                interface("blue", [10, 90, 0, 1], 24, BLUE_GW),
                interface("red", [10, 91, 0, 1], 24, RED_GW),
            ],
            routes: vec![
                route("0.0.0.0/0", [10, 91, 0, 254]),
                route("192.168.5.0/24", [10, 90, 0, 9]),
            ],
            uplink: None,
        }],
        ..config()
    }
}

fn prefix(text: &str) -> PrefixSpec {
    parse_prefix(text).unwrap()
}

fn set_interface(router: u32, network: u32, ip: [u8; 4], mac: &str) -> Request {
    Request::SetRouterInterface {
        router,
        network,
        ip: ip.into(),
        prefix_len: 24,
        mac: mac.parse().unwrap(),
        mtu: Some(1450),
    }
}

fn add_route(router: u32, to: &str, via: [u8; 4]) -> Request {
    Request::AddRoute {
        router,
        prefix: prefix(to),
        via: via.into(),
    }
}

fn remove_route(router: u32, to: &str) -> Request {
    Request::RemoveRoute {
        router,
        prefix: prefix(to),
    }
}

/// Gives `link` configuration `c`, plans the step from `state`, applies it to the model and
/// checks that the switch then matches (nothing left to do). Returns the plan.
fn step(link: &SwitchLink, state: &mut Vec<Request>, c: HostSwitchConfig) -> Vec<Request> {
    link.set_config(c).unwrap();
    let d = desired(link, false);
    let p = plan(state, &d);
    apply_model(state, &p);
    assert!(same(state, &d), "{state:#?}\n{d:#?}");
    assert!(plan(state, &d).is_empty(), "in sync: {:?}", plan(state, &d));
    p
}

/// A link with [`routed`] and a model switch that has it all.
fn routed_switch() -> (tempfile::TempDir, SwitchLink, Vec<Request>) {
    let (dir, link) = link();
    let mut state = Vec::new();
    step(&link, &mut state, routed());
    (dir, link, state)
}

/// Where the request `r` is in plan `p` (it must be there).
fn at(p: &[Request], r: &Request) -> usize {
    p.iter()
        .position(|x| x == r)
        .unwrap_or_else(|| panic!("{r:?} not in {p:#?}"))
}

#[test]
fn routers_interfaces_and_routes_follow_the_networks_in_the_desired_configuration() {
    let (_dir, link) = link();
    link.set_config(routed()).unwrap();
    let d = desired(&link, false);
    let routing = [
        Request::AddRouter { id: 7 },
        set_interface(7, 1, [10, 90, 0, 1], BLUE_GW),
        set_interface(7, 2, [10, 91, 0, 1], RED_GW),
        add_route(7, "0.0.0.0/0", [10, 91, 0, 254]),
        add_route(7, "192.168.5.0/24", [10, 90, 0, 9]),
    ];
    assert_eq!(d[d.len() - routing.len()..], routing[..], "{d:#?}");
    let last_network = d
        .iter()
        .rposition(|r| matches!(r, Request::AddNetwork { .. }))
        .unwrap();
    assert!(last_network < d.len() - routing.len());
    // A restarted (empty) switch gets everything, in that order, and takes it.
    assert_eq!(plan(&[], &d), d);
    let mut state = Vec::new();
    apply_model(&mut state, &d);
    assert!(same(&state, &d));
    assert!(plan(&state, &d).is_empty());
    // Without routers, none.
    link.set_config(config()).unwrap();
    assert!(!desired(&link, false).iter().any(|r| matches!(
        r,
        Request::AddRouter { .. } | Request::SetRouterInterface { .. } | Request::AddRoute { .. }
    )));
}

#[test]
fn bad_routers_refuse_the_whole_configuration() {
    let (_dir, link) = link();
    link.set_config(routed()).unwrap();
    type Edit = fn(&mut HostSwitchConfig);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |c| c.routers[0].id = 0,
            "router edge: number 0 is out of range (1 to 65535)",
        ),
        (
            |c| {
                let mut other = c.routers[0].clone();
                other.name = "core".into();
                other.interfaces.clear();
                other.routes.clear();
                c.routers.push(other);
            },
            "router number 7 appears twice",
        ),
        (
            |c| {
                let mut other = c.routers[0].clone();
                other.id = 8;
                other.interfaces.clear();
                other.routes.clear();
                c.routers.push(other);
            },
            "router edge appears twice",
        ),
        (
            |c| c.routers[0].interfaces[0].network = "green".into(),
            "router edge: interface on network green, which is not configured",
        ),
        (
            |c| {
                c.routers.push(SwitchRouter {
                    name: "core".into(),
                    id: 8,
                    interfaces: vec![interface("blue", [10, 90, 0, 2], 24, BLUE_GW)],
                    routes: vec![],
                    uplink: None,
                })
            },
            "router core: network blue already has an interface (of router edge)",
        ),
        (
            |c| c.routers[0].interfaces[1].network = "blue".into(),
            "router edge: network blue already has an interface (of router edge)",
        ),
        (
            |c| c.routers[0].interfaces[0].prefix_len = 0,
            "router edge: interface on blue: prefix length 0 is out of range (1 to 32)",
        ),
        (
            |c| c.routers[0].interfaces[0].prefix_len = 33,
            "prefix length 33 is out of range",
        ),
        (
            |c| c.routers[0].interfaces[0].ip = Ipv4Addr::new(10, 90, 0, 0),
            "router edge: interface on blue: 10.90.0.0/24 is not a host address of its subnet",
        ),
        (
            |c| c.routers[0].interfaces[0].ip = Ipv4Addr::new(10, 90, 0, 255),
            "10.90.0.255/24 is not a host address",
        ),
        (
            |c| c.routers[0].interfaces[0].ip = Ipv4Addr::new(224, 0, 0, 1),
            "224.0.0.1/24 is not a host address",
        ),
        (
            |c| c.routers[0].interfaces[1].mac = "01:00:5e:00:00:01".into(),
            "router edge: interface on red: MAC \"01:00:5e:00:00:01\": 01:00:5e:00:00:01 is not \
             a unicast MAC address",
        ),
        (
            |c| c.routers[0].interfaces[1].mac = "gateway".into(),
            "router edge: interface on red: MAC \"gateway\"",
        ),
        (
            |c| c.routers[0].routes[1].prefix = "192.168.5.0".into(),
            "router edge: route to \"192.168.5.0\": not a.b.c.d/len with a length of 0 to 32",
        ),
        (
            |c| c.routers[0].routes[1].prefix = "192.168.5.0/33".into(),
            "not a.b.c.d/len",
        ),
        (
            |c| c.routers[0].routes[1].prefix = "192.168.5.1/24".into(),
            "router edge: route to \"192.168.5.1/24\": host bits are set (the prefix is \
             192.168.5.0/24)",
        ),
        (
            |c| c.routers[0].routes[1].prefix = "0.0.0.0/0".into(),
            "router edge: two routes to 0.0.0.0/0",
        ),
        (
            |c| c.routers[0].routes[1].via = Ipv4Addr::new(10, 92, 0, 9),
            "router edge: route to 192.168.5.0/24: next hop 10.92.0.9 is on none of the \
             router's networks",
        ),
        (
            // The next hop of a route must be on an interface of its own router.
            |c| {
                c.routers[0].interfaces.pop();
                c.routers.push(SwitchRouter {
                    name: "core".into(),
                    id: 8,
                    interfaces: vec![interface("red", [10, 91, 0, 1], 24, RED_GW)],
                    routes: vec![],
                    uplink: None,
                });
            },
            "router edge: route to 0.0.0.0/0: next hop 10.91.0.254 is on none of the router's \
             networks",
        ),
    ];
    for (edit, message) in cases {
        let mut c = routed();
        edit(&mut c);
        let e = link.set_config(c).unwrap_err();
        assert!(
            matches!(e, SwitchLinkError::Config(_)),
            "{message}: {}",
            chain(&e)
        );
        assert!(chain(&e).contains(message), "{message}: {}", chain(&e));
        // Refused as a whole: the configuration before stays.
        assert_eq!(link.config(), routed());
    }
    // What the switch takes: a host route, /31 and /32 interfaces, a next hop anywhere in an
    // interface's subnet.
    let mut c = routed();
    c.routers[0].interfaces[0] = interface("blue", [10, 90, 0, 7], 32, BLUE_GW);
    c.routers[0].interfaces[1] = interface("red", [10, 91, 0, 0], 31, RED_GW);
    c.routers[0].routes = vec![
        route("10.200.0.7/32", [10, 91, 0, 1]),
        route("0.0.0.0/0", [10, 90, 0, 7]),
    ];
    link.set_config(c.clone()).unwrap();
    assert_eq!(link.config(), c);
}

#[test]
fn a_changed_route_is_set_again_and_a_route_goes_before_its_interface() {
    let (_dir, link, mut state) = routed_switch();
    // A route no longer wanted: removed, nothing else.
    let mut c = routed();
    c.routers[0].routes.pop();
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![remove_route(7, "192.168.5.0/24")]
    );
    // Another next hop: set again (the switch replaces it), not removed first.
    c.routers[0].routes[0].via = Ipv4Addr::new(10, 91, 0, 253);
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![add_route(7, "0.0.0.0/0", [10, 91, 0, 253])]
    );
    // The interface the route's next hop is on changes its address: the route goes first and
    // comes back after it; the interface is set again, not removed.
    c.routers[0].interfaces[1].ip = Ipv4Addr::new(10, 91, 0, 2);
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![
            remove_route(7, "0.0.0.0/0"),
            set_interface(7, 2, [10, 91, 0, 2], RED_GW),
            add_route(7, "0.0.0.0/0", [10, 91, 0, 253]),
        ]
    );
    // Another subnet for red, the route's next hop in it.
    c.routers[0].interfaces[1].ip = Ipv4Addr::new(10, 92, 0, 1);
    c.routers[0].routes[0].via = Ipv4Addr::new(10, 92, 0, 254);
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![
            remove_route(7, "0.0.0.0/0"),
            set_interface(7, 2, [10, 92, 0, 1], RED_GW),
            add_route(7, "0.0.0.0/0", [10, 92, 0, 254]),
        ]
    );
    // The interface goes with the route that needs it: the route first.
    c.routers[0].interfaces.pop();
    c.routers[0].routes.clear();
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![
            remove_route(7, "0.0.0.0/0"),
            Request::RemoveRouterInterface { network: 2 },
        ]
    );
}

#[test]
fn a_recreated_network_gets_its_interface_and_routes_back() {
    let (_dir, link, mut state) = routed_switch();
    // Blue gets another VNI: the switch removes and adds the network again. Its interface, and
    // the route whose next hop is on it, go before it and come back after it.
    let mut c = routed();
    c.networks[0].kind = vinfra_proto::SwitchNetworkKind::Overlay { vni: 7000 };
    c.arps.clear();
    let p = step(&link, &mut state, c);
    let order = [
        remove_route(7, "192.168.5.0/24"),
        Request::RemoveRouterInterface { network: 1 },
        Request::RemoveNetwork { id: 1 },
        p.iter()
            .find(|r| matches!(r, Request::AddNetwork { id: 1, .. }))
            .unwrap()
            .clone(),
        set_interface(7, 1, [10, 90, 0, 1], BLUE_GW),
        add_route(7, "192.168.5.0/24", [10, 90, 0, 9]),
    ];
    for pair in order.windows(2) {
        assert!(at(&p, &pair[0]) < at(&p, &pair[1]), "{pair:?} in {p:#?}");
    }
    // Red, its interface and the route via red are left alone; the router stays.
    assert!(!p.iter().any(|r| matches!(
        r,
        Request::RemoveNetwork { id: 2 }
            | Request::RemoveRouterInterface { network: 2 }
            | Request::RemoveRouter { .. }
            | Request::AddRouter { .. }
    )));
    assert!(!p.contains(&remove_route(7, "0.0.0.0/0")), "{p:#?}");
}

#[test]
fn an_interface_moves_to_another_router_and_a_router_goes_with_everything_on_it() {
    let (_dir, link, mut state) = routed_switch();
    // Blue's interface moves to a new router `core`: the route of `edge` via blue goes first;
    // the router comes before its interface, which replaces the one of `edge`.
    let mut c = routed();
    let blue = c.routers[0].interfaces.remove(0);
    c.routers[0].routes.pop();
    c.routers.push(SwitchRouter {
        name: "core".into(),
        id: 8,
        interfaces: vec![blue],
        routes: vec![route("172.16.0.0/12", [10, 90, 0, 9])],
        uplink: None,
    });
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![
            remove_route(7, "192.168.5.0/24"),
            Request::AddRouter { id: 8 },
            set_interface(8, 1, [10, 90, 0, 1], BLUE_GW),
            add_route(8, "172.16.0.0/12", [10, 90, 0, 9]),
        ]
    );
    // `edge` goes: its routes, then its interface, then the router; `core` is left alone.
    c.routers.remove(0);
    assert_eq!(
        step(&link, &mut state, c.clone()),
        vec![
            remove_route(7, "0.0.0.0/0"),
            Request::RemoveRouterInterface { network: 2 },
            Request::RemoveRouter { id: 7 },
        ]
    );
    // `core` gets another number: everything of the old one goes, then the new one comes.
    c.routers[0].id = 9;
    let p = step(&link, &mut state, c.clone());
    assert_eq!(
        p,
        vec![
            remove_route(8, "172.16.0.0/12"),
            Request::RemoveRouterInterface { network: 1 },
            Request::RemoveRouter { id: 8 },
            Request::AddRouter { id: 9 },
            set_interface(9, 1, [10, 90, 0, 1], BLUE_GW),
            add_route(9, "172.16.0.0/12", [10, 90, 0, 9]),
        ]
    );
    // No routers at all: nothing of them is left, the networks stay.
    let p = step(&link, &mut state, config());
    assert_eq!(
        p,
        vec![
            remove_route(9, "172.16.0.0/12"),
            Request::RemoveRouterInterface { network: 1 },
            Request::RemoveRouter { id: 9 },
        ]
    );
}

#[test]
fn a_switch_without_routing_gets_everything_else_and_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    std::fs::create_dir(&data).unwrap();
    let old = model_switch(
        dir.path(),
        Refusals {
            routing: true,
            ..Refusals::default()
        },
    );
    let attachment = |control| SwitchAttachment {
        control,
        ..settings()
    };
    let link = SwitchLink::open(attachment(old.control.clone()), &data).unwrap();
    link.set_config(routed()).unwrap();
    let d = desired(&link, false);
    let is_routing = |r: &Request| {
        matches!(
            r,
            Request::AddRouter { .. }
                | Request::SetRouterInterface { .. }
                | Request::AddRoute { .. }
        )
    };
    let routing: Vec<Request> = d.iter().filter(|r| is_routing(r)).cloned().collect();
    assert_eq!(routing.len(), 5);
    let o = link.reconcile().unwrap();
    let refused: Vec<Request> = o.refused.iter().map(|r| r.request.clone()).collect();
    assert_eq!(refused, routing);
    assert_eq!(o.applied, d.len() - routing.len());
    let rest: Vec<Request> = d.iter().filter(|r| !is_routing(r)).cloned().collect();
    assert!(same(&old.state.lock().unwrap(), &rest));
    // Each reconcile asks again (a switch that is upgraded gets them without a new
    // configuration); the refusals are the configuration's error.
    let o = link.reconcile().unwrap();
    assert_eq!(o.applied, 0);
    assert_eq!(o.refused.len(), routing.len());
    let e = o.into_result().unwrap_err();
    assert!(
        chain(&e).contains("routing is not supported by this switch"),
        "{}",
        chain(&e)
    );
    // A switch that routes (the agent restarted with the configuration it kept): everything.
    let new_dir = tempfile::tempdir().unwrap();
    let new = model_switch(new_dir.path(), Refusals::default());
    let link = SwitchLink::open(attachment(new.control.clone()), &data).unwrap();
    assert_eq!(link.config(), routed());
    let o = link.reconcile().unwrap();
    assert!(o.refused.is_empty(), "{:?}", o.refused);
    assert!(same(&new.state.lock().unwrap(), &d));
}

#[test]
fn router_counters_are_named_by_router() {
    let counters = |id: u32, n: u64| RouterCountersView {
        id,
        routed_packets: n,
        routed_bytes: n * 100,
        echo_replies: 2,
        icmp_sent: [("time_exceeded".to_string(), 3)].into(),
        icmp_rate_limited: 4,
        arp_requests: 5,
        drops: [("no_route".to_string(), 6)].into(),
        routed_fragments: 7,
        routed_options: 8,
        neighbours_learned: 9,
        nat: None,
    };
    let view = CountersView {
        // Router 99 is not in the configuration (not yet removed): left out.
        routers: vec![counters(99, 1), counters(7, 10)],
        ..CountersView::default()
    };
    let mut c = routed();
    // Router 8 is configured but the switch does not report it (not applied yet): left out.
    c.routers.push(SwitchRouter {
        name: "core".into(),
        id: 8,
        interfaces: vec![],
        routes: vec![],
        uplink: None,
    });
    let host = host_counters(&view, &c, &Default::default());
    assert_eq!(
        host.routers,
        vec![SwitchRouterCounters {
            router: "edge".into(),
            routed_packets: 10,
            routed_bytes: 1000,
            echo_replies: 2,
            icmp_sent: [("time_exceeded".to_string(), 3)].into(),
            icmp_rate_limited: 4,
            arp_requests: 5,
            drops: [("no_route".to_string(), 6)].into(),
            routed_fragments: 7,
            routed_options: 8,
            neighbours_learned: 9,
            nat: None,
        }]
    );
    // Without routers in the configuration, none.
    assert!(host_counters(&view, &config(), &Default::default())
        .routers
        .is_empty());
}

#[test]
fn route_prefixes_and_interface_addresses() {
    assert_eq!(
        parse_prefix("0.0.0.0/0"),
        Ok(PrefixSpec {
            ip: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0
        })
    );
    assert_eq!(prefix("10.1.2.3/32").ip, Ipv4Addr::new(10, 1, 2, 3));
    assert_eq!(prefix("172.16.0.0/12").prefix_len, 12);
    for bad in [
        "",
        "10.0.0.0",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/+8",
        "10.0.0.0/008",
        "10.0.0/8",
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "garbage/8",
    ] {
        assert_eq!(parse_prefix(bad), Err(BadPrefix::Syntax), "{bad:?}");
    }
    assert_eq!(
        parse_prefix("10.1.0.0/8"),
        Err(BadPrefix::HostBits {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 8
        })
    );
    assert!(contains(
        Ipv4Addr::new(10, 0, 0, 1),
        24,
        Ipv4Addr::new(10, 0, 0, 255)
    ));
    assert!(!contains(
        Ipv4Addr::new(10, 0, 0, 1),
        24,
        Ipv4Addr::new(10, 0, 1, 1)
    ));
    assert!(contains(
        Ipv4Addr::UNSPECIFIED,
        0,
        Ipv4Addr::new(192, 0, 2, 1)
    ));
    assert!(contains(
        Ipv4Addr::new(10, 0, 0, 1),
        32,
        Ipv4Addr::new(10, 0, 0, 1)
    ));
    assert!(!contains(
        Ipv4Addr::new(10, 0, 0, 1),
        32,
        Ipv4Addr::new(10, 0, 0, 2)
    ));
    for (ip, len, host) in [
        ([10, 0, 0, 1], 24, true),
        ([10, 0, 0, 254], 24, true),
        ([10, 0, 0, 0], 24, false),
        ([10, 0, 0, 255], 24, false),
        ([10, 0, 0, 0], 31, true),
        ([10, 0, 0, 1], 31, true),
        ([10, 0, 0, 9], 32, true),
        ([0, 0, 0, 0], 32, false),
        ([255, 255, 255, 255], 32, false),
        ([239, 1, 1, 1], 8, false),
    ] {
        assert_eq!(is_host_address(ip.into(), len), host, "{ip:?}/{len}");
    }
}

/// The switch's flows are named like its counters: network 1 is blue, router 7 edge; a flow
/// on a network the configuration lacks is left out and counted; an unknown router is none.
#[test]
fn flows_are_named_by_network_and_router() {
    use vinfra_switch_control::{FlowDirection, FlowView, FlowsView};
    use vinfra_types::flows::TrafficDirection;
    let f = |network, router, direction| FlowView {
        network,
        port: 3,
        router,
        src: Ipv4Addr::new(10, 90, 0, 5),
        dst: Ipv4Addr::new(10, 91, 0, 5),
        protocol: 6,
        src_port: 40000,
        dst_port: 80,
        packets: 10,
        bytes: 15_000,
        direction,
    };
    let view = FlowsView {
        flows: vec![
            f(1, Some(7), FlowDirection::NorthSouth),
            f(2, None, FlowDirection::EastWest),
            f(2, Some(99), FlowDirection::EastWest),
            f(42, None, FlowDirection::EastWest),
        ],
        entries: 4,
        capacity: 65_536,
        untracked_packets: 5,
        interval_ms: 10_000,
    };
    let t = super::flows::host_flows(&view, &routed());
    assert_eq!(
        (t.interval_ms, t.untracked_packets, t.unnamed),
        (10_000, 5, 1)
    );
    assert_eq!(t.flows.len(), 3);
    assert_eq!(t.flows[0].network, "blue");
    assert_eq!(t.flows[0].router.as_deref(), Some("edge"));
    assert_eq!(t.flows[0].direction, TrafficDirection::NorthSouth);
    assert_eq!((t.flows[0].bytes, t.flows[0].packets), (15_000, 10));
    assert_eq!(t.flows[1].network, "red");
    assert_eq!(t.flows[1].router, None);
    assert_eq!(t.flows[2].router, None, "a router the configuration lacks");
}
