//! The router configuration: every refused command with its error, changing nothing; an
//! interface moving to another router, going with its network or its router; routes replaced
//! and removed.

mod common;

use std::net::Ipv4Addr;

use common::routing::*;
use common::*;
use vinfra_switch::datapath::firewall::rules::Prefix;
use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, DropReason, NetworkId, RouterId, RouterInterface, Segment, Switch,
};
use vinfra_switch::wire::{MacAddr, Vni};

fn prefix(a: [u8; 4], len: u8) -> Prefix {
    Prefix {
        addr: Ipv4Addr::from(a),
        len,
    }
}

/// Everything the router configuration shows.
fn state(s: &Switch) -> String {
    let routers: Vec<_> = s
        .routers()
        .into_iter()
        .map(|r| (r, s.router_interfaces(r), s.routes(r)))
        .collect();
    let gateways: Vec<_> = (0..10).map(|n| s.gateway(NetworkId(n))).collect();
    format!("{routers:?} {gateways:?}")
}

fn set(router: RouterId, net: NetworkId, a: [u8; 4], len: u8, mac: MacAddr) -> ConfigCommand {
    ConfigCommand::SetRouterInterface {
        router,
        network: net,
        addr: Ipv4Addr::from(a),
        prefix_len: len,
        mac,
        mtu: None,
    }
}

#[test]
fn bad_router_configuration_is_refused_and_changes_nothing() {
    let mut s = host_a();
    s.apply(ConfigCommand::AddRoute {
        router: R1,
        prefix: prefix([192, 168, 0, 0], 16),
        via: addr(RED, 254),
    })
    .unwrap();
    let before = state(&s);
    let (gw, r9) = (gw_mac(BLUE), RouterId(9));
    let cases = [
        (
            ConfigCommand::AddRouter(RouterId(0)),
            ConfigError::RouterIdOutOfRange(RouterId(0)),
        ),
        (
            ConfigCommand::AddRouter(RouterId(65_536)),
            ConfigError::RouterIdOutOfRange(RouterId(65_536)),
        ),
        (ConfigCommand::AddRouter(R1), ConfigError::RouterExists(R1)),
        (
            ConfigCommand::RemoveRouter(r9),
            ConfigError::NoSuchRouter(r9),
        ),
        (
            set(r9, BLUE, [10, 1, 0, 1], 24, gw),
            ConfigError::NoSuchRouter(r9),
        ),
        (
            set(R1, NetworkId(9), [10, 9, 0, 1], 24, gw),
            ConfigError::NoSuchNetwork(NetworkId(9)),
        ),
        (
            set(R1, BLUE, [10, 1, 0, 1], 0, gw),
            ConfigError::BadRoutePrefixLength(0),
        ),
        (
            set(R1, BLUE, [10, 1, 0, 1], 33, gw),
            ConfigError::BadRoutePrefixLength(33),
        ),
        (
            set(R1, BLUE, [10, 1, 0, 1], 24, MacAddr::BROADCAST),
            ConfigError::NotUnicast(MacAddr::BROADCAST),
        ),
        (
            set(R1, BLUE, [224, 0, 0, 1], 24, gw),
            ConfigError::NotUnicastAddress(Ipv4Addr::new(224, 0, 0, 1)),
        ),
        (
            set(R1, BLUE, [10, 1, 0, 0], 24, gw),
            ConfigError::GatewayNotHostAddress {
                addr: Ipv4Addr::new(10, 1, 0, 0),
                prefix_len: 24,
            },
        ),
        (
            set(R1, BLUE, [10, 1, 0, 255], 24, gw),
            ConfigError::GatewayNotHostAddress {
                addr: Ipv4Addr::new(10, 1, 0, 255),
                prefix_len: 24,
            },
        ),
        // Blue's new subnet would hold red's.
        (
            set(R1, BLUE, [10, 0, 0, 1], 14, gw),
            ConfigError::OverlappingInterface {
                router: R1,
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 14,
                other: RED,
            },
        ),
        (
            ConfigCommand::RemoveRouterInterface(NetworkId(9)),
            ConfigError::NoSuchNetwork(NetworkId(9)),
        ),
        (
            ConfigCommand::AddRoute {
                router: R1,
                prefix: prefix([192, 168, 1, 0], 16),
                via: addr(RED, 254),
            },
            ConfigError::HostBitsSet {
                addr: Ipv4Addr::new(192, 168, 1, 0),
                len: 16,
            },
        ),
        (
            ConfigCommand::AddRoute {
                router: R1,
                prefix: prefix([192, 168, 1, 0], 33),
                via: addr(RED, 254),
            },
            ConfigError::BadRoutePrefixLength(33),
        ),
        (
            ConfigCommand::AddRoute {
                router: R1,
                prefix: prefix([192, 168, 1, 0], 24),
                via: Ipv4Addr::BROADCAST,
            },
            ConfigError::NotUnicastAddress(Ipv4Addr::BROADCAST),
        ),
        (
            ConfigCommand::AddRoute {
                router: r9,
                prefix: prefix([192, 168, 1, 0], 24),
                via: addr(RED, 254),
            },
            ConfigError::NoSuchRouter(r9),
        ),
        (
            ConfigCommand::RemoveRoute {
                router: r9,
                prefix: prefix([192, 168, 0, 0], 16),
            },
            ConfigError::NoSuchRouter(r9),
        ),
        (
            ConfigCommand::RemoveRoute {
                router: R1,
                prefix: prefix([192, 168, 0, 1], 16),
            },
            ConfigError::HostBitsSet {
                addr: Ipv4Addr::new(192, 168, 0, 1),
                len: 16,
            },
        ),
    ];
    for (command, error) in cases {
        let text = format!("{command:?}");
        let refused = s.apply(command).unwrap_err();
        assert!(!refused.to_string().is_empty());
        assert_eq!(refused, error, "{text}");
        assert_eq!(state(&s), before, "{text} changed something");
    }
    // Nothing to remove is no error.
    s.apply(ConfigCommand::RemoveRoute {
        router: R1,
        prefix: prefix([172, 16, 0, 0], 12),
    })
    .unwrap();
    s.apply(ConfigCommand::RemoveRouterInterface(GREEN))
        .unwrap();
    s.apply(ConfigCommand::RemoveRouterInterface(GREEN))
        .unwrap();
    assert_eq!(s.gateway(GREEN), None);
}

#[test]
fn interfaces_move_and_go_with_their_network_or_router_and_routes_are_replaced() {
    let mut s = host_a();
    assert_eq!(s.routers(), vec![R1]);
    assert_eq!(
        s.gateway(BLUE),
        Some(RouterInterface {
            router: R1,
            network: BLUE,
            addr: gw_ip(BLUE),
            prefix_len: 24,
            mac: gw_mac(BLUE),
            mtu: None,
        })
    );
    // Setting blue's interface on router 2 takes it from router 1.
    let r2 = RouterId(2);
    s.apply(ConfigCommand::AddRouter(r2)).unwrap();
    s.apply(interface(r2, BLUE)).unwrap();
    assert_eq!(s.gateway(BLUE).unwrap().router, r2);
    let networks = |s: &Switch, r| -> Vec<NetworkId> {
        s.router_interfaces(r)
            .unwrap()
            .iter()
            .map(|i| i.network)
            .collect()
    };
    assert_eq!(networks(&s, R1), vec![RED, GREEN]);
    assert_eq!(networks(&s, r2), vec![BLUE]);
    // Blue and red are in different routers now: nothing is routed between them.
    let out = run(
        &mut s,
        NOW,
        VM_BLUE,
        &routed_udp(BLUE, 11, addr(RED, 12), 8),
    );
    assert_eq!(reached(&out), vec![(VM_BLUE, None)]);
    icmp_from(&out[0].2, gw_ip(BLUE), addr(BLUE, 11), 3, 0);
    assert_eq!(router_drops(&s, r2, DropReason::NoRoute), 1);
    // A route to the same prefix replaces the first.
    let p = prefix([192, 168, 0, 0], 16);
    for via in [addr(RED, 250), addr(RED, 251)] {
        s.apply(ConfigCommand::AddRoute {
            router: R1,
            prefix: p,
            via,
        })
        .unwrap();
    }
    assert_eq!(s.routes(R1).unwrap(), vec![(p, addr(RED, 251))]);
    s.apply(ConfigCommand::RemoveRoute {
        router: R1,
        prefix: p,
    })
    .unwrap();
    assert_eq!(s.routes(R1).unwrap(), vec![]);
    // A network's interface goes with the network.
    let n9 = NetworkId(9);
    s.apply(ConfigCommand::AddNetwork {
        id: n9,
        segment: Segment::Overlay {
            vni: Vni::new(5009).unwrap(),
        },
    })
    .unwrap();
    s.apply(set(r2, n9, [10, 9, 0, 1], 24, gw_mac(n9))).unwrap();
    s.apply(ConfigCommand::RemoveNetwork(n9)).unwrap();
    assert_eq!(networks(&s, r2), vec![BLUE]);
    // A router's interfaces go with the router: blue has no gateway, and a frame to its old
    // MAC is a frame like any other (flooded as unknown unicast).
    s.apply(ConfigCommand::RemoveRouter(r2)).unwrap();
    assert_eq!(s.routers(), vec![R1]);
    assert_eq!(s.gateway(BLUE), None);
    assert_eq!(s.router_counters(r2), None);
    let out = run(
        &mut s,
        NOW,
        VM_BLUE,
        &routed_udp(BLUE, 11, addr(RED, 12), 8),
    );
    assert_eq!(
        reached(&out),
        vec![(TAP_BLUE, None), (UPLINK, Some(VTEP_B))]
    );
    // The same number again is a new, empty router.
    s.apply(ConfigCommand::AddRouter(r2)).unwrap();
    assert_eq!(s.router_interfaces(r2), Some(vec![]));
    assert_eq!(s.router_counters(r2).unwrap().drops.total(), 0);
    assert!(s.snapshot().routers.iter().any(|(id, _)| *id == r2));
}
