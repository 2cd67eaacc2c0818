//! The wire format's tests.

use std::collections::BTreeMap;

use super::*;

#[test]
fn requests_round_trip_as_json_lines() {
    let requests = vec![
        Request::Ping,
        Request::AddNetwork {
            id: 1,
            kind: NetworkSpec::Overlay { vni: 5001 },
        },
        Request::AddPort(PortSpec {
            id: 2,
            mtu: 1450,
            attach: Attachment::Vm {
                network: 1,
                socket: "/run/x/sw.sock".into(),
                peer: "/run/x/vm.sock".into(),
                owner: None,
            },
        }),
        Request::AddMacEntry {
            network: 1,
            mac: "52:54:00:00:00:01".parse().unwrap(),
            location: LocationSpec::Vtep(Ipv4Addr::new(10, 0, 0, 2)),
        },
        Request::SetDhcp {
            network: 1,
            config: Some(DhcpSpec {
                prefix_len: 24,
                gateway: None,
                server: Some(Ipv4Addr::new(10, 0, 0, 254)),
                mtu: Some(1450),
                lease_secs: 3600,
            }),
        },
        Request::SetDhcp {
            network: 1,
            config: None,
        },
        Request::RevertMacMoves,
        Request::SetPortFirewall {
            port: 2,
            rules: Some(vec![
                FirewallRuleSpec {
                    direction: DirectionSpec::Ingress,
                    protocol: Some(6),
                    ports: Some((8080, 8080)),
                    remote: vec![PrefixSpec {
                        ip: Ipv4Addr::new(10, 0, 0, 0),
                        prefix_len: 24,
                    }],
                    action: ActionSpec::Allow,
                },
                FirewallRuleSpec {
                    direction: DirectionSpec::Egress,
                    protocol: None,
                    ports: None,
                    remote: vec![],
                    action: ActionSpec::Deny,
                },
            ]),
        },
        Request::SetPortFirewall {
            port: 2,
            rules: None,
        },
        Request::ExportConnections { port: 2 },
        Request::ImportConnections {
            port: 3,
            entries: vec![connection()],
        },
    ];
    for r in requests {
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
    }
    assert_eq!(
        serde_json::to_string(&Request::RevertMacMoves).unwrap(),
        r#"{"op":"revert_mac_moves"}"#
    );
    let r: Request = serde_json::from_str(
        r#"{"op":"set_port_qos","port":5,"qos":{"ingress":{"bits_per_sec":100000000,"burst_bytes":1000000},"priority":"high"}}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        Request::SetPortQos {
            port: 5,
            qos: Some(QosSpec {
                ingress: Some(RateSpec {
                    bits_per_sec: 100_000_000,
                    burst_bytes: 1_000_000
                }),
                priority: PrioritySpec::High,
                ..QosSpec::default()
            }),
        }
    );
    assert_eq!(
        serde_json::to_string(&Request::SetPortQos { port: 5, qos: None }).unwrap(),
        r#"{"op":"set_port_qos","port":5,"qos":null}"#
    );
    let r: Request = serde_json::from_str(
        r#"{"op":"add_port","id":3,"mtu":1450,"attach":{"kind":"host","network":1,"tap":"t"}}"#,
    )
    .unwrap();
    assert!(matches!(r, Request::AddPort(PortSpec { id: 3, .. })));
    let r: Request = serde_json::from_str(
        r#"{"op":"set_dhcp","network":1,"config":{"prefix_len":24,"gateway":"10.0.0.1","lease_secs":60}}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        Request::SetDhcp {
            network: 1,
            config: Some(DhcpSpec {
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                server: None,
                mtu: None,
                lease_secs: 60
            })
        }
    );
}

fn connection() -> ConnectionSpec {
    ConnectionSpec {
        original: ConnTupleSpec {
            src: Ipv4Addr::new(10, 0, 0, 5),
            dst: Ipv4Addr::new(10, 0, 0, 9),
            protocol: 6,
            src_port: 40000,
            dst_port: 8080,
        },
        origin: SideSpec::ToVm,
        tcp_state: Some(TcpStateSpec::Established),
        replied: true,
        remaining_ms: 431_999_000,
    }
}

#[test]
fn firewall_requests_and_connections_on_the_wire() {
    let r: Request = serde_json::from_str(
        r#"{"op":"set_port_firewall","port":4,"rules":[{"direction":"ingress","protocol":17,"ports":[53,53],"remote":[{"ip":"0.0.0.0","prefix_len":0}],"action":"deny"}]}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        Request::SetPortFirewall {
            port: 4,
            rules: Some(vec![FirewallRuleSpec {
                direction: DirectionSpec::Ingress,
                protocol: Some(17),
                ports: Some((53, 53)),
                remote: vec![PrefixSpec {
                    ip: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0
                }],
                action: ActionSpec::Deny,
            }]),
        }
    );
    // Without rules: no firewall.
    let r: Request = serde_json::from_str(r#"{"op":"set_port_firewall","port":4}"#).unwrap();
    assert_eq!(
        r,
        Request::SetPortFirewall {
            port: 4,
            rules: None
        }
    );
    let answer = Response::Connections {
        entries: vec![connection()],
    };
    let line = serde_json::to_string(&answer).unwrap();
    assert!(line.starts_with(r#"{"status":"connections","entries":[{"original":"#));
    assert!(line.contains(r#""origin":"to_vm","tcp_state":"established""#));
    assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), answer);
    // A UDP connection has no TCP state.
    let udp = ConnectionSpec {
        tcp_state: None,
        ..connection()
    };
    let json = serde_json::to_string(&udp).unwrap();
    assert!(!json.contains("tcp_state"));
    assert_eq!(serde_json::from_str::<ConnectionSpec>(&json).unwrap(), udp);
}

#[test]
fn macs_parse_print_and_refuse_bad_text() {
    let mac: Mac = "52:54:00:0A:bc:01".parse().unwrap();
    assert_eq!(mac, Mac([0x52, 0x54, 0, 0x0a, 0xbc, 1]));
    assert_eq!(mac.to_string(), "52:54:00:0a:bc:01");
    assert!(!mac.is_group());
    assert!(Mac([1, 0, 0x5e, 0, 0, 1]).is_group());
    for bad in [
        "52:54:00:00:00",
        "52:54:00:00:00:0g",
        "52:54:00:00:00:01:02",
        "5254.0000.0001",
    ] {
        assert_eq!(bad.parse::<Mac>(), Err(BadMac(bad.into())), "{bad}");
    }
    assert_eq!(
        serde_json::to_string(&mac).unwrap(),
        "\"52:54:00:0a:bc:01\""
    );
    assert!(serde_json::from_str::<Mac>("\"52:54\"").is_err());
}

#[test]
fn counters_are_found_by_number() {
    let view = CountersView {
        ports: vec![PortCountersView {
            id: 3,
            traffic: TrafficView {
                drops: [("runt".to_string(), 2), ("mtu".to_string(), 1)].into(),
                ..Default::default()
            },
            ..Default::default()
        }],
        networks: vec![NetworkCountersView {
            id: 7,
            flooded: 4,
            ..Default::default()
        }],
        switch_drops: BTreeMap::new(),
        conntrack: None,
        routers: Vec::new(),
        rx_batches: Vec::new(),
        fast_path: None,
    };
    let port = view.port(3).unwrap();
    assert_eq!(
        (port.traffic.dropped("runt"), port.traffic.drops_total()),
        (2, 3)
    );
    assert_eq!(port.traffic.dropped("other"), 0);
    assert!(view.port(4).is_none());
    assert_eq!(view.network(7).map(|n| n.flooded), Some(4));
    // Counters from a switch without port MTUs still parse.
    let line = r#"{"status":"counters","ports":[{"id":0,"rx_packets":1,"rx_bytes":2,"tx_packets":3,"tx_bytes":4,"drops":{},"tx_errors":0,"rx_errors":0}],"networks":[],"switch_drops":{}}"#;
    let Response::Counters(c) = serde_json::from_str(line).unwrap() else {
        panic!("not counters");
    };
    assert_eq!(c.ports[0].mtu, None);
    assert!(
        c.rx_batches.is_empty(),
        "no batch sizes from an older switch"
    );
    assert_eq!(c.ports[0].traffic.tx_packets, 3);
    // … and without the firewall's counters.
    assert_eq!(c.ports[0].firewall_hits, None);
    assert_eq!(c.ports[0].connections, 0);
    assert_eq!(c.conntrack, None);
    // … and without QoS counters.
    assert_eq!((c.ports[0].qos_dropped, c.ports[0].qos_delayed), (0, 0));
    let view = CountersView {
        ports: vec![PortCountersView {
            id: 2,
            firewall_hits: Some(vec![3, 0]),
            connections: 1,
            ..Default::default()
        }],
        conntrack: Some(ConntrackView {
            entries: 1,
            created: 4,
            invalid: [("tcp_not_syn".to_string(), 2)].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let line = serde_json::to_string(&Response::Counters(view.clone())).unwrap();
    assert_eq!(
        serde_json::from_str::<Response>(&line).unwrap(),
        Response::Counters(view)
    );
}
