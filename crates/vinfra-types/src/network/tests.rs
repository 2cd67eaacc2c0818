use super::*;

fn req(kind: NetworkKind) -> CreateNetworkRequest {
    CreateNetworkRequest {
        name: "blue".into(),
        kind,
        vni: None,
        vlan_id: None,
        subnet: "10.80.1.0/24".into(),
        gateway: None,
        mtu: None,
    }
}

#[test]
fn subnets() {
    let s = Ipv4Subnet::parse("10.80.1.0/24").unwrap();
    assert_eq!(s.to_string(), "10.80.1.0/24");
    assert_eq!(s.broadcast(), Ipv4Addr::new(10, 80, 1, 255));
    assert!(s.is_usable(Ipv4Addr::new(10, 80, 1, 1)));
    assert!(!s.is_usable(Ipv4Addr::new(10, 80, 1, 0)));
    assert!(!s.is_usable(Ipv4Addr::new(10, 80, 1, 255)));
    assert!(!s.contains(Ipv4Addr::new(10, 80, 2, 1)));
    assert_eq!(s.usable().count(), 254);
    let s30 = Ipv4Subnet::parse("192.168.0.4/30").unwrap();
    assert_eq!(
        s30.usable().collect::<Vec<_>>(),
        vec![Ipv4Addr::new(192, 168, 0, 5), Ipv4Addr::new(192, 168, 0, 6)]
    );
    match Ipv4Subnet::parse("10.80.1.5/24") {
        Err(NetworkError::HostBits { network, .. }) => assert_eq!(network, "10.80.1.0/24"),
        other => panic!("{other:?}"),
    }
    for bad in [
        "",
        "10.0.0.0",
        "10.0.0.0/",
        "10.0.0.0/x",
        "10.0.0/24",
        "10.0.0.0/33",
        "garbage/8",
        "10.0.0.0/+8",
        "10.0.0.0/008",
    ] {
        assert!(
            matches!(Ipv4Subnet::parse(bad), Err(NetworkError::SubnetSyntax(_))),
            "{bad}"
        );
    }
    for bad in ["0.0.0.0/0", "10.0.0.0/7", "10.0.0.0/31", "10.0.0.1/32"] {
        assert!(
            matches!(Ipv4Subnet::parse(bad), Err(NetworkError::Prefix { .. })),
            "{bad}"
        );
    }
}

#[test]
fn macs() {
    assert_eq!(
        parse_mac("02:76:66:AA:bb:01").unwrap(),
        [2, 0x76, 0x66, 0xaa, 0xbb, 1]
    );
    assert_eq!(
        format_mac([2, 0x76, 0x66, 0xaa, 0xbb, 1]),
        "02:76:66:aa:bb:01"
    );
    for bad in [
        "",
        "02:76:66:aa:bb",
        "02:76:66:aa:bb:01:02",
        "0g:76:66:aa:bb:01",
        "2:76:66:aa:bb:01",
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
        "02:76:69:6E:00:67",
    ] {
        assert!(parse_mac(bad).is_err(), "{bad}");
    }
    assert!(parse_mac("02:76:69:6e:00:67").is_err_and(|e| e.to_string().contains("DHCP server")));
    assert_eq!(
        parse_mac("02:76:72:00:00:01").unwrap_err().to_string(),
        "MAC '02:76:72:00:00:01' has the prefix 02:76:72 reserved for the routers' gateways"
    );
    assert!(parse_mac("02:76:73:00:00:01").is_ok());
}

#[test]
fn overlapping_subnets() {
    let s = |t: &str| Ipv4Subnet::parse(t).unwrap();
    assert!(s("10.0.0.0/16").overlaps(&s("10.0.5.0/24")));
    assert!(s("10.0.5.0/24").overlaps(&s("10.0.0.0/16")));
    assert!(s("10.0.5.0/24").overlaps(&s("10.0.5.0/24")));
    assert!(!s("10.0.5.0/24").overlaps(&s("10.0.6.0/24")));
    assert!(!s("10.0.0.0/30").overlaps(&s("10.0.0.4/30")));
}

#[test]
fn overlay_networks_need_their_mtu_plus_vxlan_on_the_underlay() {
    assert_eq!(underlay_mtu_for_overlay(DEFAULT_OVERLAY_MTU), UNDERLAY_MTU);
    assert_eq!(underlay_mtu_for_overlay(MAX_OVERLAY_MTU), 9050);
    assert_eq!(underlay_mtu_for_overlay(1400), 1450);
    assert_eq!(underlay_mtu_for_overlay(u32::MAX), u32::MAX);
    let h: crate::HostSummary = serde_json::from_value(serde_json::json!({
        "name": "h1", "address": "10.0.0.1", "status": "connected", "accel": null,
        "qemu_version": null, "capacity": {"cores": 1, "memory_mib": 1024},
        "ratios": {"cpu": 1.0, "memory": 1.0}, "ratio_override": null,
        "allocated_vcpus": 0, "allocated_memory_mib": 0, "allocatable_vcpus": 1,
        "allocatable_memory_mib": 1024, "usage": {"cpu_cores": 0.0, "memory_used_mib": 0},
        "vm_count": 0, "last_seen_s": null, "maintenance": false
    }))
    .unwrap();
    assert_eq!(h.underlay_mtu, UNDERLAY_MTU, "a console that does not say");
}

#[test]
fn requests() {
    let (s, g, mtu) = check_request(&req(NetworkKind::Overlay)).unwrap();
    assert_eq!((s.prefix(), g, mtu), (24, None, 1450));
    assert_eq!(check_request(&req(NetworkKind::Vlan)).unwrap().2, 1500);
    type Mutation = Box<dyn Fn(&mut CreateNetworkRequest)>;
    let bad: Vec<(NetworkKind, Mutation)> = vec![
        (
            NetworkKind::Overlay,
            Box::new(|r| r.name = "Bad_Name".into()),
        ),
        (NetworkKind::Overlay, Box::new(|r| r.vni = Some(0))),
        (NetworkKind::Overlay, Box::new(|r| r.vni = Some(1 << 24))),
        (NetworkKind::Overlay, Box::new(|r| r.vlan_id = Some(5))),
        (NetworkKind::Vlan, Box::new(|r| r.vlan_id = Some(0))),
        (NetworkKind::Vlan, Box::new(|r| r.vlan_id = Some(4095))),
        (NetworkKind::Vlan, Box::new(|r| r.vni = Some(5))),
        (NetworkKind::Overlay, Box::new(|r| r.mtu = Some(9001))),
        (NetworkKind::Vlan, Box::new(|r| r.mtu = Some(1501))),
        (NetworkKind::Vlan, Box::new(|r| r.mtu = Some(100))),
        (
            NetworkKind::Overlay,
            Box::new(|r| r.gateway = Some("10.80.2.1".into())),
        ),
        (
            NetworkKind::Overlay,
            Box::new(|r| r.gateway = Some("10.80.1.255".into())),
        ),
        (
            NetworkKind::Overlay,
            Box::new(|r| r.gateway = Some("x".into())),
        ),
    ];
    for (i, (kind, f)) in bad.iter().enumerate() {
        let mut r = req(*kind);
        f(&mut r);
        assert!(check_request(&r).is_err(), "case {i}");
    }
    let mut r = req(NetworkKind::Overlay);
    r.vni = Some(MAX_NETWORK_VNI);
    r.gateway = Some("10.80.1.1".into());
    r.mtu = Some(1400);
    let (_, g, mtu) = check_request(&r).unwrap();
    assert_eq!((g, mtu), (Some(Ipv4Addr::new(10, 80, 1, 1)), 1400));
}

#[test]
fn refusals_name_the_field_and_the_limit() {
    let with = |kind, f: &dyn Fn(&mut CreateNetworkRequest)| {
        let mut r = req(kind);
        f(&mut r);
        check_request(&r).expect_err("refused").to_string()
    };
    assert_eq!(
        with(NetworkKind::Overlay, &|r| r.vlan_id = Some(5)),
        "an overlay network has a vni, not a vlan_id"
    );
    assert_eq!(
        with(NetworkKind::Vlan, &|r| r.vni = Some(5)),
        "a VLAN network has a vlan_id, not a vni"
    );
    assert_eq!(
        with(NetworkKind::Overlay, &|r| r.vni = Some(MAX_VNI + 1)),
        format!("vni must be between 1 and {MAX_VNI}, got {}", MAX_VNI + 1)
    );
    for v in [TRANSIT_VNI_BASE, TRANSIT_VNI_BASE | 7, MAX_VNI] {
        assert_eq!(
            with(NetworkKind::Overlay, &|r| r.vni = Some(v)),
            format!(
                "vni {v} is reserved for router transit (16711680 and up); a network's vni \
                 is at most 16711679"
            )
        );
    }
    assert_eq!(
        with(NetworkKind::Vlan, &|r| r.vlan_id = Some(4095)),
        format!("vlan_id must be between 1 and {MAX_VLAN_ID}, got 4095")
    );
    assert_eq!(
        with(NetworkKind::Overlay, &|r| r.mtu = Some(100)),
        format!("mtu must be at least {MIN_MTU}, got 100")
    );
    assert_eq!(
        with(NetworkKind::Overlay, &|r| r.mtu = Some(MAX_OVERLAY_MTU + 1)),
        format!(
            "mtu {} is above the largest overlay MTU, {MAX_OVERLAY_MTU} (jumbo frames; hosts \
             need an underlay MTU of the network's MTU + {VXLAN_OVERHEAD} for VXLAN)",
            MAX_OVERLAY_MTU + 1
        )
    );
    assert_eq!(
        with(NetworkKind::Vlan, &|r| r.mtu = Some(1501)),
        format!("mtu 1501 does not fit a VLAN network: the trunk MTU is {UNDERLAY_MTU}")
    );
    assert_eq!(
        parse_mac("00:00:00:00:00:00").unwrap_err().to_string(),
        "MAC 00:00:00:00:00:00 is not usable"
    );
    assert_eq!(
        parse_mac(&format_mac(DHCP_SERVER_MAC))
            .unwrap_err()
            .to_string(),
        format!(
            "MAC {} is reserved for the virtual switch's DHCP server",
            format_mac(DHCP_SERVER_MAC)
        )
    );
}

#[test]
fn host_switch_counters_carry_routers_only_when_there_are_some() {
    // From an agent without routers: no `routers`, none parsed.
    let old: HostSwitchCounters = serde_json::from_value(serde_json::json!({
        "networks": [], "ports": [], "switch_drops": {}
    }))
    .unwrap();
    assert!(old.routers.is_empty());
    let text = serde_json::to_value(&old).unwrap();
    assert!(text.get("routers").is_none(), "{text}");
    // A router's counters, each defaulting to zero when a newer or older agent leaves it
    // out.
    let c = HostSwitchCounters {
        routers: vec![SwitchRouterCounters {
            router: "edge".into(),
            routed_packets: 7,
            routed_bytes: 700,
            echo_replies: 1,
            icmp_sent: [("net_unreachable".to_string(), 2)].into(),
            icmp_rate_limited: 0,
            arp_requests: 3,
            drops: [("ttl_exceeded".to_string(), 4)].into(),
            routed_fragments: 0,
            routed_options: 0,
            neighbours_learned: 5,
            nat: Some(SwitchRouterNat {
                edge: true,
                sessions: 6,
                snat_packets: 7,
                ..SwitchRouterNat::default()
            }),
        }],
        ..HostSwitchCounters::default()
    };
    let text = serde_json::to_value(&c).unwrap();
    assert_eq!(text["routers"][0]["router"], "edge");
    assert_eq!(text["routers"][0]["drops"]["ttl_exceeded"], 4);
    assert_eq!(text["routers"][0]["nat"]["snat_packets"], 7);
    assert_eq!(
        serde_json::from_value::<HostSwitchCounters>(text).unwrap(),
        c
    );
    let sparse: SwitchRouterCounters =
        serde_json::from_value(serde_json::json!({"router": "edge", "routed_packets": 5})).unwrap();
    assert_eq!(sparse.routed_packets, 5);
    assert_eq!(sparse.arp_requests, 0);
    // NAT only with an uplink; its counters default to zero too.
    assert_eq!(sparse.nat, None);
    assert!(serde_json::to_value(&sparse).unwrap().get("nat").is_none());
    let nat: SwitchRouterCounters = serde_json::from_value(
        serde_json::json!({"router": "edge", "nat": {"edge": true, "sessions": 3}}),
    )
    .unwrap();
    assert_eq!(
        nat.nat,
        Some(SwitchRouterNat {
            edge: true,
            sessions: 3,
            ..SwitchRouterNat::default()
        })
    );
}
