//! Unit tests of the switch's counters as the agent names them: by network, VM and NIC, and a
//! port's firewall hits by security group and rule.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use uuid::Uuid;
use vinfra_switch_control::{
    CountersView, NetworkCountersView, PortCountersView, TrafficView, UPLINK_PORT,
};

use super::counters::host_counters;
use super::tests::{config, fw_rule};
use super::*;

#[test]
fn counters_are_named_by_network_vm_and_nic() {
    let t = |rx: u64, tx: u64| TrafficView {
        rx_packets: rx,
        rx_bytes: rx * 100,
        tx_packets: tx,
        tx_bytes: tx * 100,
        drops: [("runt".to_string(), rx)].into(),
    };
    let view = CountersView {
        ports: vec![
            PortCountersView {
                id: UPLINK_PORT,
                traffic: t(1, 2),
                ..Default::default()
            },
            PortCountersView {
                id: 7,
                traffic: t(3, 4),
                tx_errors: 5,
                rx_errors: 0,
                mtu: Some(1450),
                ..Default::default()
            },
            // A port the agent does not know.
            PortCountersView {
                id: 8,
                traffic: t(9, 9),
                ..Default::default()
            },
        ],
        networks: vec![NetworkCountersView {
            id: 2,
            traffic: t(6, 7),
            arp_suppressed: 1,
            flooded: 2,
            learning_refused: 4,
            mac_moves_refused: 0,
            mac_redirected: 0,
        }],
        switch_drops: [("bad_vxlan_flags".to_string(), 3)].into(),
        conntrack: None,
        routers: Vec::new(),
        rx_batches: Vec::new(),
        fast_path: None,
    };
    let id = Uuid::new_v4();
    let nic = |network: &str, port| VmNic {
        network: network.into(),
        mac: format!("52:54:00:00:00:0{port}"),
        allowed: None,
        mtu: 1450,
        port,
        switch_socket: PathBuf::from("s"),
        qemu_socket: PathBuf::from("q"),
        tap: None,
        owner: None,
        vlan: None,
    };
    // NIC 0 has no port on the switch (yet); NIC 1 is port 7.
    let vms = BTreeMap::from([(id, vec![nic("blue", 6), nic("red", 7)])]);
    let c = host_counters(&view, &config(), &vms);
    assert_eq!(c.ports.len(), 1, "{c:?}");
    let p = &c.ports[0];
    assert_eq!((p.vm_id, p.nic, p.port), (id, 1, 7));
    assert_eq!(
        (p.network.as_str(), p.mac.as_str()),
        ("red", "52:54:00:00:00:07")
    );
    assert_eq!((p.traffic.rx_packets, p.traffic.tx_bytes), (3, 400));
    assert_eq!((p.tx_errors, p.traffic.drops["runt"]), (5, 3));
    assert_eq!(c.networks.len(), 1, "blue has no counters: {c:?}");
    assert_eq!(c.networks[0].network, "red");
    assert_eq!(c.networks[0].traffic.tx_packets, 7);
    assert_eq!(
        (
            c.networks[0].arp_suppressed,
            c.networks[0].flooded,
            c.networks[0].learning_refused
        ),
        (1, 2, 4)
    );
    assert_eq!(c.uplink.as_ref().map(|u| u.tx_packets), Some(2));
    assert_eq!(c.switch_drops["bad_vxlan_flags"], 3);
}

#[test]
fn firewall_hits_are_named_by_group_and_rule() {
    let rule = |id| vinfra_proto::SwitchFirewallRule {
        rule_id: id,
        ..fw_rule(
            vinfra_proto::SgDirection::Ingress,
            Some(6),
            Some((80, 80)),
            vec![(Ipv4Addr::UNSPECIFIED, 0)],
            vinfra_proto::SgAction::Allow,
        )
    };
    let mut config = config();
    config.firewalls = vec![vinfra_proto::SwitchNicFirewall {
        network: "red".into(),
        mac: "52:54:00:00:00:07".into(),
        rules: vec![rule(3), rule(5)],
    }];
    let nic = |network: &str, port| VmNic {
        network: network.into(),
        mac: format!("52:54:00:00:00:0{port}"),
        allowed: None,
        mtu: 1450,
        port,
        switch_socket: PathBuf::from("s"),
        qemu_socket: PathBuf::from("q"),
        tap: None,
        owner: None,
        vlan: None,
    };
    let id = Uuid::new_v4();
    let vms = BTreeMap::from([(id, vec![nic("blue", 6), nic("red", 7)])]);
    let view = |hits: Option<Vec<u64>>| CountersView {
        ports: vec![
            PortCountersView {
                id: 6,
                firewall_hits: Some(vec![1]),
                connections: 1,
                ..Default::default()
            },
            PortCountersView {
                id: 7,
                firewall_hits: hits,
                connections: 4,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let c = host_counters(&view(Some(vec![9, 0])), &config, &vms);
    let by_port = |c: &vinfra_types::network::HostSwitchCounters, port| {
        c.ports
            .iter()
            .find(|p| p.port == port)
            .and_then(|p| p.firewall.clone())
    };
    let f = by_port(&c, 7).expect("port 7's firewall");
    assert_eq!(f.connections, 4);
    let named: Vec<(&str, u32, u64)> = f
        .rules
        .iter()
        .map(|r| (r.group.as_str(), r.rule_id, r.hits))
        .collect();
    assert_eq!(named, vec![("web", 3, 9), ("web", 5, 0)]);
    // A port without an entry in the configuration (blue), rules the switch has not been
    // given yet (one count for two rules) and no firewall on the switch: not named.
    assert_eq!(by_port(&c, 6), None);
    let c = host_counters(&view(Some(vec![9])), &config, &vms);
    assert_eq!(by_port(&c, 7), None);
    let c = host_counters(&view(None), &config, &vms);
    assert_eq!(by_port(&c, 7), None);
}
