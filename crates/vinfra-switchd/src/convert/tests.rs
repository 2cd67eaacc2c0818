use std::net::Ipv4Addr;

use super::*;

#[test]
fn requests_become_core_commands() {
    let r: Request = serde_json::from_str(
        r#"{"op":"set_dhcp","network":1,"config":{"prefix_len":24,"gateway":"10.0.0.1","lease_secs":60}}"#,
    )
    .unwrap();
    assert!(matches!(
        config_command(&r).unwrap(),
        Some(ConfigCommand::SetDhcp {
            config: Some(DhcpConfig {
                prefix_len: 24,
                gateway: Some(_),
                server: None,
                mtu: None,
                lease_secs: 60
            }),
            ..
        })
    ));
    assert_eq!(config_command(&Request::Ping), Ok(None));
    assert_eq!(
        config_command(&Request::RevertMacMoves),
        Ok(Some(ConfigCommand::RevertMacMoves))
    );
    assert_eq!(
        config_command(&Request::AddMacEntry {
            network: 2,
            mac: Mac([0x52, 0x54, 0, 0, 0, 1]),
            location: LocationSpec::Vtep(Ipv4Addr::new(10, 0, 0, 2)),
        }),
        Ok(Some(ConfigCommand::AddMacEntry {
            network: NetworkId(2),
            mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
            location: Location::Vtep(Ipv4Addr::new(10, 0, 0, 2)),
        }))
    );
    let uplink = port_config(&PortSpec {
        id: 0,
        mtu: 1500,
        attach: Attachment::VxlanUplink {
            local_ip: Ipv4Addr::new(10, 0, 0, 1),
        },
    })
    .unwrap();
    assert!(matches!(uplink.kind, PortKind::VxlanUplink { .. }));
}

#[test]
fn firewall_rules_and_connections_become_the_cores() {
    let spec = FirewallRuleSpec {
        direction: DirectionSpec::Ingress,
        protocol: Some(6),
        ports: Some((8080, 8081)),
        remote: vec![vinfra_switch_control::PrefixSpec {
            ip: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 24,
        }],
        action: ActionSpec::Allow,
    };
    let rule = firewall_rule(&spec);
    assert_eq!(
        rule,
        FirewallRule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: PortRange {
                first: 8080,
                last: 8081
            },
            remote: vec![Prefix {
                addr: Ipv4Addr::new(10, 0, 0, 0),
                len: 24
            }],
            action: Action::Allow,
        }
    );
    for (number, protocol) in [
        (None, Protocol::Any),
        (Some(17), Protocol::Udp),
        (Some(1), Protocol::Icmp),
        (Some(47), Protocol::Other(47)),
    ] {
        let r = firewall_rule(&FirewallRuleSpec {
            protocol: number,
            ports: None,
            direction: DirectionSpec::Egress,
            action: ActionSpec::Deny,
            ..spec.clone()
        });
        assert_eq!(
            (r.protocol, r.ports, r.direction, r.action),
            (protocol, PortRange::ANY, Direction::Egress, Action::Deny)
        );
    }
    assert!(matches!(
        config_command(&Request::SetPortFirewall {
            port: 3,
            rules: Some(vec![spec])
        }),
        Ok(Some(ConfigCommand::SetPortFirewall { port: PortId(3), rules: Some(r) })) if r == vec![rule]
    ));
    assert_eq!(
        config_command(&Request::SetPortFirewall {
            port: 3,
            rules: None
        }),
        Ok(Some(ConfigCommand::SetPortFirewall {
            port: PortId(3),
            rules: None
        }))
    );
    assert_eq!(
        config_command(&Request::ExportConnections { port: 3 }),
        Ok(None)
    );
    // Every TCP state (and none) goes to the wire and back.
    let original = ConnTuple {
        src: Ipv4Addr::new(10, 0, 0, 5),
        dst: Ipv4Addr::new(10, 0, 0, 9),
        protocol: 6,
        src_port: 40000,
        dst_port: 8080,
    };
    for state in TcpState::ALL {
        let entry = ConnEntry {
            original,
            reply: original.reply(),
            origin: Side::ToVm,
            tcp_state: Some(state),
            replied: true,
            remaining: Duration::from_millis(1234),
        };
        let spec = connection_spec(&entry);
        assert_eq!(
            serde_json::to_value(spec.tcp_state).unwrap(),
            serde_json::Value::from(state.as_str())
        );
        assert_eq!(conn_entry(&spec), entry);
    }
    let udp = ConnTuple {
        protocol: 17,
        ..original
    };
    let entry = ConnEntry {
        original: udp,
        reply: udp.reply(),
        origin: Side::FromVm,
        tcp_state: None,
        replied: false,
        remaining: Duration::from_secs(30),
    };
    let spec = connection_spec(&entry);
    assert_eq!((spec.origin, spec.remaining_ms), (SideSpec::FromVm, 30_000));
    assert_eq!(conn_entry(&spec), entry);
    assert!(matches!(
        config_command(&Request::ImportConnections { port: 4, entries: vec![spec] }),
        Ok(Some(ConfigCommand::ImportConnections { port: PortId(4), entries })) if entries == vec![entry]
    ));
}

#[test]
fn routing_requests_become_core_commands_and_counters_go_back() {
    let gw = Mac([0x02, 0x76, 0x72, 0, 0, 1]);
    let requests: Vec<Request> = serde_json::from_str(
        r#"[{"op":"add_router","id":4},
            {"op":"set_router_interface","router":4,"network":1,"ip":"10.1.0.1","prefix_len":24,"mac":"02:76:72:00:00:01"},
            {"op":"add_route","router":4,"prefix":{"ip":"0.0.0.0","prefix_len":0},"via":"10.1.0.254"},
            {"op":"remove_route","router":4,"prefix":{"ip":"0.0.0.0","prefix_len":0}},
            {"op":"remove_router_interface","network":1},
            {"op":"remove_router","id":4}]"#,
    )
    .unwrap();
    let commands: Vec<_> = requests
        .iter()
        .map(|r| config_command(r).unwrap().unwrap())
        .collect();
    let default = Prefix {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };
    assert_eq!(
        commands,
        vec![
            ConfigCommand::AddRouter(RouterId(4)),
            ConfigCommand::SetRouterInterface {
                router: RouterId(4),
                network: NetworkId(1),
                addr: Ipv4Addr::new(10, 1, 0, 1),
                prefix_len: 24,
                mac: MacAddr(gw.0),
                mtu: None,
            },
            ConfigCommand::AddRoute {
                router: RouterId(4),
                prefix: default,
                via: Ipv4Addr::new(10, 1, 0, 254),
            },
            ConfigCommand::RemoveRoute {
                router: RouterId(4),
                prefix: default,
            },
            ConfigCommand::RemoveRouterInterface(NetworkId(1)),
            ConfigCommand::RemoveRouter(RouterId(4)),
        ]
    );
    let mut counters = RouterCounters {
        routed_packets: 3,
        routed_bytes: 300,
        echo_replies: 1,
        icmp_rate_limited: 2,
        arp_requests: 5,
        routed_fragments: 1,
        ..RouterCounters::default()
    };
    counters.icmp_sent[IcmpError::TimeExceeded as usize] = 7;
    let view = router_view(RouterId(4), &counters);
    assert_eq!(view.id, 4);
    assert_eq!((view.routed_packets, view.routed_bytes), (3, 300));
    assert_eq!(
        view.icmp_sent,
        BTreeMap::from([("time_exceeded".to_owned(), 7)])
    );
    assert_eq!(
        (
            view.icmp_rate_limited,
            view.arp_requests,
            view.routed_fragments
        ),
        (2, 5, 1)
    );
    assert!(view.drops.is_empty());
}

#[test]
fn uplink_requests_become_core_commands_and_nat_counters_go_back() {
    let requests: Vec<Request> = serde_json::from_str(
        r#"[{"op":"set_router_uplink","router":4,"network":9,"ip":"203.0.113.2","prefix_len":24,"mac":"02:76:72:01:00:04","edge":{"kind":"remote","vtep":"192.0.2.1"},"transit_vni":16711684},
            {"op":"add_floating_ip","router":4,"external":"203.0.113.50","internal":"10.1.0.11"},
            {"op":"remove_floating_ip","router":4,"external":"203.0.113.50"},
            {"op":"remove_router_uplink","router":4}]"#,
    )
    .unwrap();
    let commands: Vec<_> = requests
        .iter()
        .map(|r| config_command(r).unwrap().unwrap())
        .collect();
    let external = Ipv4Addr::new(203, 0, 113, 50);
    assert_eq!(
        commands,
        vec![
            ConfigCommand::SetRouterUplink {
                router: RouterId(4),
                network: NetworkId(9),
                addr: Ipv4Addr::new(203, 0, 113, 2),
                prefix_len: 24,
                mac: MacAddr([0x02, 0x76, 0x72, 1, 0, 4]),
                edge: Edge::Remote {
                    vtep: Ipv4Addr::new(192, 0, 2, 1)
                },
                transit_vni: 0xff_0004,
                mtu: None,
            },
            ConfigCommand::AddFloatingIp {
                router: RouterId(4),
                external,
                internal: Ipv4Addr::new(10, 1, 0, 11),
            },
            ConfigCommand::RemoveFloatingIp {
                router: RouterId(4),
                external,
            },
            ConfigCommand::RemoveRouterUplink(RouterId(4)),
        ]
    );
    let counters = RouterCounters {
        nat: Some(NatCounters {
            edge: true,
            sessions: 2,
            sessions_created: 5,
            sessions_expired: 3,
            snat_packets: 10,
            dnat_packets: 9,
            to_edge_packets: 0,
            from_transit_packets: 4,
            garps_sent: 1,
        }),
        ..RouterCounters::default()
    };
    let nat = router_view(RouterId(4), &counters).nat.unwrap();
    assert!(nat.edge);
    assert_eq!(
        (nat.sessions, nat.sessions_created, nat.sessions_expired),
        (2, 5, 3)
    );
    assert_eq!((nat.snat_packets, nat.dnat_packets), (10, 9));
    assert_eq!((nat.from_transit_packets, nat.garps_sent), (4, 1));
    assert_eq!(
        router_view(RouterId(4), &RouterCounters::default()).nat,
        None
    );
}

#[test]
fn bad_values_are_refused() {
    assert_eq!(
        segment(NetworkSpec::Vlan { vid: 4095 }),
        Err(BadValue::Vid(4095))
    );
    assert_eq!(segment(NetworkSpec::Vlan { vid: 0 }), Err(BadValue::Vid(0)));
    assert_eq!(
        segment(NetworkSpec::Overlay { vni: 1 << 24 }),
        Err(BadValue::Vni(1 << 24))
    );
    assert_eq!(
        config_command(&Request::AddNetwork {
            id: 1,
            kind: NetworkSpec::Overlay { vni: 1 << 24 }
        }),
        Err(BadValue::Vni(1 << 24))
    );
}
