//! Unit tests of what follows each VM port in the desired configuration: its policy (allowed
//! addresses, port security), its firewall and its QoS, each sent again alone when it changes;
//! firewalls and QoS the switch would refuse are refused with the configuration.

use std::net::Ipv4Addr;

use uuid::Uuid;
use vinfra_proto::HostSwitchConfig;
use vinfra_switch_control::Request;
use vinfra_types::error::chain;

use super::tests::{apply_model, config, desired, fw_rule, link, nic};
use super::*;

/// The firewall request that follows a port's policy in `d`.
fn firewall_of(d: &[Request], port: u32) -> Option<Vec<vinfra_switch_control::FirewallRuleSpec>> {
    let at = d
        .iter()
        .position(|r| matches!(r, Request::AddPort(p) if p.id == port))
        .unwrap();
    assert!(
        matches!(&d[at + 1], Request::SetPortPolicy { port: p, .. } if *p == port),
        "{d:#?}"
    );
    match &d[at + 2] {
        Request::SetPortFirewall { port: p, rules } if *p == port => rules.clone(),
        other => panic!("after port {port}'s policy: {other:?}"),
    }
}

#[test]
fn every_vm_port_gets_its_firewall_after_its_policy() {
    use vinfra_proto::{SgAction, SgDirection, SwitchNicFirewall};
    use vinfra_switch_control::{ActionSpec, DirectionSpec, FirewallRuleSpec, PrefixSpec};
    let (dir, link) = link();
    let mut c = config();
    let web = vec![
        fw_rule(
            SgDirection::Ingress,
            Some(6),
            Some((8080, 8080)),
            vec![(Ipv4Addr::new(10, 90, 0, 0), 24)],
            SgAction::Allow,
        ),
        fw_rule(
            SgDirection::Egress,
            None,
            None,
            vec![(Ipv4Addr::new(10, 90, 0, 9), 32)],
            SgAction::Deny,
        ),
    ];
    c.firewalls = vec![
        // Upper case: the MAC is compared as an address.
        SwitchNicFirewall {
            network: "blue".into(),
            mac: "52:54:00:00:00:0A".into(),
            rules: web.clone(),
        },
        // The same MAC on another network is another NIC.
        SwitchNicFirewall {
            network: "red".into(),
            mac: "52:54:00:00:00:0a".into(),
            rules: vec![],
        },
    ];
    link.set_config(c.clone()).unwrap();
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[
                nic("blue", "52:54:00:00:00:0a"),
                nic("blue", "52:54:00:00:00:0b"),
            ],
        )
        .unwrap();
    let d = desired(&link, false);
    let expected = vec![
        FirewallRuleSpec {
            direction: DirectionSpec::Ingress,
            protocol: Some(6),
            ports: Some((8080, 8080)),
            remote: vec![PrefixSpec {
                ip: Ipv4Addr::new(10, 90, 0, 0),
                prefix_len: 24,
            }],
            action: ActionSpec::Allow,
        },
        FirewallRuleSpec {
            direction: DirectionSpec::Egress,
            protocol: None,
            ports: None,
            remote: vec![PrefixSpec {
                ip: Ipv4Addr::new(10, 90, 0, 9),
                prefix_len: 32,
            }],
            action: ActionSpec::Deny,
        },
    ];
    assert_eq!(firewall_of(&d, nics[0].port), Some(expected));
    assert_eq!(firewall_of(&d, nics[1].port), None, "no entry: unfiltered");
    // An empty switch gets it all; one in sync nothing.
    let mut state = Vec::new();
    let p = plan(&state, &d);
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A changed rule set is sent again, alone: the port and its connections stay.
    c.firewalls[0].rules.truncate(1);
    link.set_config(c.clone()).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        matches!(&p[0], Request::SetPortFirewall { port, rules: Some(r) } if *port == nics[0].port && r.len() == 1)
    );
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A NIC whose groups are all detached loses its firewall (rules: null), not its port.
    c.firewalls.remove(0);
    link.set_config(c).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(
        p,
        vec![Request::SetPortFirewall {
            port: nics[0].port,
            rules: None
        }]
    );
    apply_model(&mut state, &p);
    // The firewall goes with its port.
    link.detach(Uuid::from_u128(1));
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert!(!p
        .iter()
        .any(|r| matches!(r, Request::SetPortFirewall { .. })));
    apply_model(&mut state, &p);
    assert!(!state
        .iter()
        .any(|r| matches!(r, Request::SetPortFirewall { .. })));
}

#[test]
fn firewalls_the_switch_would_refuse_are_refused_with_the_configuration() {
    use vinfra_proto::{SgAction, SgDirection, SwitchNicFirewall};
    let (_dir, link) = link();
    let good = SwitchNicFirewall {
        network: "blue".into(),
        mac: "52:54:00:00:00:0a".into(),
        rules: vec![fw_rule(
            SgDirection::Ingress,
            Some(17),
            Some((53, 53)),
            vec![(Ipv4Addr::UNSPECIFIED, 0)],
            SgAction::Allow,
        )],
    };
    let with = |firewalls: Vec<SwitchNicFirewall>| HostSwitchConfig {
        firewalls,
        ..config()
    };
    link.set_config(with(vec![good.clone()])).unwrap();
    let mut long = good.clone();
    long.rules[0].remotes = vec![(Ipv4Addr::new(10, 0, 0, 0), 33)];
    let mut backwards = good.clone();
    backwards.rules[0].ports = Some((54, 53));
    let mut group = good.clone();
    group.mac = "01:00:5e:00:00:01".into();
    for (bad, what) in [
        (vec![long], "longer than 32 bits"),
        (vec![backwards], "end before they start"),
        (vec![group], "firewall of"),
        (vec![good.clone(), good.clone()], "two firewalls"),
    ] {
        let e = link.set_config(with(bad)).unwrap_err();
        assert!(chain(&e).contains(what), "{}", chain(&e));
    }
    // The last good configuration stays.
    assert_eq!(link.config().firewalls, vec![good]);
}

#[test]
fn every_vm_port_gets_its_policy_and_the_uplink_its_peers() {
    let (dir, link) = link();
    let mut secured = nic("blue", "52:54:00:00:00:01");
    secured.ip = Some("10.90.0.1".into());
    secured.allowed_addresses = vec![
        vinfra_types::AllowedAddressPair {
            ip: "10.90.0.100".into(),
            mac: None,
        },
        vinfra_types::AllowedAddressPair {
            ip: "10.90.1.0/29".into(),
            mac: Some("02:00:00:00:00:0a".into()),
        },
    ];
    let mut open = nic("red", "52:54:00:00:00:11");
    open.port_security = Some(false);
    let no_ip = nic("blue", "52:54:00:00:00:21");
    let nics = link
        .attach(Uuid::from_u128(1), dir.path(), &[secured, open, no_ip])
        .unwrap();
    let d = desired(&link, false);
    let mac = |m: &str| m.parse::<vinfra_switch_control::Mac>().unwrap();
    let policy = |port: u32| {
        let at = d
            .iter()
            .position(|r| matches!(r, Request::AddPort(p) if p.id == port))
            .unwrap();
        match &d[at + 1] {
            Request::SetPortPolicy { port: p, policy } if *p == port => policy.clone(),
            other => panic!("after port {port}: {other:?}"),
        }
    };
    let own = |m: &str, ip: [u8; 4], prefix_len| vinfra_switch_control::AllowedAddressSpec {
        mac: mac(m),
        ip: Ipv4Addr::from(ip),
        prefix_len,
    };
    let p = policy(nics[0].port);
    assert_eq!(
        p.allowed,
        Some(vec![
            own("52:54:00:00:00:01", [10, 90, 0, 1], 32),
            own("52:54:00:00:00:01", [10, 90, 0, 100], 32),
            own("02:00:00:00:00:0a", [10, 90, 1, 0], 29),
        ])
    );
    assert_eq!(p.mac_limit, Some(super::desired::PORT_MAC_LIMIT));
    assert_eq!(p.storm, Some(super::desired::PORT_STORM));
    assert_eq!(policy(nics[1].port).allowed, None, "port security off");
    assert_eq!(
        policy(nics[2].port).allowed,
        Some(vec![own("52:54:00:00:00:21", [0, 0, 0, 0], 0)]),
        "no address: any IPv4 source from its MAC"
    );
    // The other hosts only: this host's own address is left out.
    assert!(d.contains(&Request::SetUnderlayPeers {
        peers: Some(vec![Ipv4Addr::new(10, 0, 0, 2)])
    }));
}

/// The QoS request that follows a port's firewall in `d`.
fn qos_of(d: &[Request], port: u32) -> Option<vinfra_switch_control::QosSpec> {
    let at = d
        .iter()
        .position(|r| matches!(r, Request::AddPort(p) if p.id == port))
        .unwrap();
    assert!(
        matches!(&d[at + 2], Request::SetPortFirewall { port: p, .. } if *p == port),
        "{d:#?}"
    );
    match &d[at + 3] {
        Request::SetPortQos { port: p, qos } if *p == port => qos.clone(),
        other => panic!("after port {port}'s firewall: {other:?}"),
    }
}

#[test]
fn every_vm_port_gets_its_qos_after_its_firewall_and_again_when_it_changes() {
    use vinfra_proto::SwitchNicQos;
    use vinfra_switch_control::{PrioritySpec, QosSpec, RateSpec};
    use vinfra_types::qos::{NicPriority, NicQos, NicRate};
    let (dir, link) = link();
    let mut c = config();
    c.qos = vec![
        // Upper case: the MAC is compared as an address.
        SwitchNicQos {
            network: "blue".into(),
            mac: "52:54:00:00:00:0A".into(),
            qos: NicQos {
                egress: Some(NicRate::new(100_000_000)),
                ingress: Some(NicRate {
                    bits_per_sec: 8_000_000,
                    burst_bytes: Some(1 << 20),
                }),
                priority: NicPriority::High,
                weight: None,
                dscp: Some(46),
            },
        },
        // The same MAC on another network is another NIC.
        SwitchNicQos {
            network: "red".into(),
            mac: "52:54:00:00:00:0b".into(),
            qos: NicQos::default(),
        },
    ];
    link.set_config(c.clone()).unwrap();
    let nics = link
        .attach(
            Uuid::from_u128(1),
            dir.path(),
            &[
                nic("blue", "52:54:00:00:00:0a"),
                nic("blue", "52:54:00:00:00:0b"),
            ],
        )
        .unwrap();
    let d = desired(&link, false);
    // The default burst (10 ms at the rate) and weight are filled in.
    assert_eq!(
        qos_of(&d, nics[0].port),
        Some(QosSpec {
            egress: Some(RateSpec {
                bits_per_sec: 100_000_000,
                burst_bytes: 125_000,
            }),
            ingress: Some(RateSpec {
                bits_per_sec: 8_000_000,
                burst_bytes: 1 << 20,
            }),
            priority: PrioritySpec::High,
            weight: 10,
            dscp_mark: Some(46),
        })
    );
    assert_eq!(qos_of(&d, nics[1].port), None, "no entry: no QoS");
    let mut state = Vec::new();
    let p = plan(&state, &d);
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A changed QoS is sent again, alone: the port stays.
    c.qos[0].qos.priority = NicPriority::Low;
    c.qos[0].qos.egress = Some(NicRate::new(50_000_000));
    link.set_config(c.clone()).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        matches!(&p[0], Request::SetPortQos { port, qos: Some(q) }
            if *port == nics[0].port && q.priority == PrioritySpec::Low
                && q.egress == Some(RateSpec { bits_per_sec: 50_000_000, burst_bytes: 62_500 })),
        "{p:#?}"
    );
    apply_model(&mut state, &p);
    assert!(plan(&state, &d).is_empty());
    // A NIC whose QoS is removed gets `qos: null`, not a new port.
    c.qos.remove(0);
    link.set_config(c).unwrap();
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert_eq!(
        p,
        vec![Request::SetPortQos {
            port: nics[0].port,
            qos: None
        }]
    );
    apply_model(&mut state, &p);
    // The QoS goes with its port.
    link.detach(Uuid::from_u128(1));
    let d = desired(&link, false);
    let p = plan(&state, &d);
    assert!(!p.iter().any(|r| matches!(r, Request::SetPortQos { .. })));
    apply_model(&mut state, &p);
    assert!(!state
        .iter()
        .any(|r| matches!(r, Request::SetPortQos { .. })));
}

#[test]
fn port_security_follows_the_consoles_entry_for_a_running_port() {
    use vinfra_proto::SwitchNicSecurity;
    use vinfra_switch_control::AllowedAddressSpec;
    let (dir, link) = link();
    let mut c = config();
    link.set_config(c.clone()).unwrap();
    let mut started = nic("blue", "52:54:00:00:00:0a");
    started.ip = Some("10.90.0.10".into());
    let nics = link
        .attach(Uuid::from_u128(1), dir.path(), &[started])
        .unwrap();
    let port = nics[0].port;
    let mac = "52:54:00:00:00:0a"
        .parse::<vinfra_switch_control::Mac>()
        .unwrap();
    let own = |ip: [u8; 4], prefix_len| AllowedAddressSpec {
        mac,
        ip: Ipv4Addr::from(ip),
        prefix_len,
    };
    let allowed = |d: &[Request]| {
        d.iter()
            .find_map(|r| match r {
                Request::SetPortPolicy { port: p, policy } if *p == port => {
                    Some(policy.allowed.clone())
                }
                _ => None,
            })
            .expect("the port's policy")
    };
    // No entry (an older console): as the VM was started.
    let d = desired(&link, false);
    assert_eq!(allowed(&d), Some(vec![own([10, 90, 0, 10], 32)]));
    let mut state = Vec::new();
    let p = plan(&state, &d);
    apply_model(&mut state, &p);
    // The console adds an allowed address: the running port's policy changes, alone.
    let mut entry = SwitchNicSecurity {
        network: "blue".into(),
        mac: "52:54:00:00:00:0A".into(),
        port_security: true,
        ip: Some("10.90.0.10".into()),
        allowed_addresses: vec![vinfra_types::AllowedAddressPair {
            ip: "10.90.0.200".into(),
            mac: None,
        }],
    };
    c.port_security = vec![entry.clone()];
    link.set_config(c.clone()).unwrap();
    let d = desired(&link, false);
    assert_eq!(
        allowed(&d),
        Some(vec![own([10, 90, 0, 10], 32), own([10, 90, 0, 200], 32)])
    );
    let p = plan(&state, &d);
    assert!(
        p.len() == 1 && matches!(&p[0], Request::SetPortPolicy { port: q, .. } if *q == port),
        "{p:#?}"
    );
    apply_model(&mut state, &p);
    // Port security off: the port sends from anything.
    entry.port_security = false;
    c.port_security = vec![entry];
    link.set_config(c).unwrap();
    assert_eq!(allowed(&desired(&link, false)), None);
}

#[test]
fn qos_the_switch_would_refuse_is_refused_with_the_configuration() {
    use vinfra_proto::SwitchNicQos;
    use vinfra_types::qos::{NicQos, NicRate};
    let (_dir, link) = link();
    let good = SwitchNicQos {
        network: "blue".into(),
        mac: "52:54:00:00:00:0a".into(),
        qos: NicQos {
            ingress: Some(NicRate::new(8_000_000)),
            ..NicQos::default()
        },
    };
    let with = |qos: Vec<SwitchNicQos>| HostSwitchConfig { qos, ..config() };
    link.set_config(with(vec![good.clone()])).unwrap();
    let mut slow = good.clone();
    slow.qos.ingress = Some(NicRate::new(10));
    let mut heavy = good.clone();
    heavy.qos.weight = Some(0);
    let mut group = good.clone();
    group.mac = "01:00:5e:00:00:01".into();
    for (bad, what) in [
        (vec![slow], "ingress rate 10 bit/s is out of range"),
        (vec![heavy], "weight 0 is out of range"),
        (vec![group], "QoS of"),
        (vec![good.clone(), good.clone()], "two QoS entries"),
    ] {
        let e = link.set_config(with(bad)).unwrap_err();
        assert!(chain(&e).contains(what), "{}", chain(&e));
    }
    // The last good configuration stays.
    assert_eq!(link.config().qos, vec![good]);
}
