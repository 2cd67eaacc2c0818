//! What a fake agent's switch reports: connections, port traffic, firewall and switch
//! counters, made up but well formed.

use vinfra_proto::VmInstance;
use vinfra_types::PowerState;

use super::fake_agent::FakeState;

/// The connection a fake agent's switch tracks for every NIC of its VMs: TCP from 10.99.0.1
/// to the VM's port 8080, established.
pub fn fake_connection() -> vinfra_proto::ConnectionSpec {
    vinfra_proto::ConnectionSpec {
        original: vinfra_proto::ConnTupleSpec {
            src: std::net::Ipv4Addr::new(10, 99, 0, 1),
            dst: std::net::Ipv4Addr::new(10, 99, 0, 2),
            protocol: 6,
            src_port: 40000,
            dst_port: 8080,
        },
        origin: vinfra_proto::SideSpec::ToVm,
        tcp_state: Some(vinfra_proto::TcpStateSpec::Established),
        replied: true,
        remaining_ms: 60_000,
    }
}

/// The counters a fake agent's switch reports for NIC `nic` of a running VM: rx 10 + nic
/// packets, tx 20 + nic packets, 100 bytes each, and `nic` drops of reason `runt`.
pub fn fake_port_traffic(nic: usize) -> vinfra_types::network::TrafficCounters {
    let n = nic as u64;
    vinfra_types::network::TrafficCounters {
        rx_packets: 10 + n,
        rx_bytes: (10 + n) * 100,
        tx_packets: 20 + n,
        tx_bytes: (20 + n) * 100,
        drops: if n > 0 {
            [("runt".to_string(), n)].into()
        } else {
            Default::default()
        },
    }
}

/// The firewall counters the fake agent reports for a NIC with an entry in its switch
/// configuration's firewalls: 2 connections, each rule `10 × rule id + its position` hits.
fn fake_port_firewall(
    state: &FakeState,
    network: &str,
    mac: Option<&str>,
) -> Option<vinfra_types::network::PortFirewallCounters> {
    let entry = state
        .switch_config
        .as_ref()?
        .firewalls
        .iter()
        .find(|f| f.network == network && Some(f.mac.as_str()) == mac)?;
    Some(vinfra_types::network::PortFirewallCounters {
        connections: 2,
        rules: entry
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| vinfra_types::network::PortRuleHits {
                group: r.group.clone(),
                rule_id: r.rule_id,
                hits: 10 * u64::from(r.rule_id) + i as u64,
            })
            .collect(),
    })
}

/// Switch counters derived from the fake agent's state: a port per NIC of each running VM
/// ([`fake_port_traffic`], [`fake_port_firewall`]), each configured network the sum of its ports (with, per port, 3 ARP
/// answers, 5 floods and 1 refused learning), the uplink the sum of everything.
pub fn fake_switch_counters(state: &FakeState) -> vinfra_types::network::HostSwitchCounters {
    use vinfra_types::network::{SwitchNetworkCounters, SwitchPortCounters, TrafficCounters};
    let mut ports = Vec::new();
    let mut running: Vec<&VmInstance> = state
        .vms
        .values()
        .filter(|(_, s)| *s == PowerState::Running)
        .map(|(vm, _)| vm)
        .collect();
    running.sort_by_key(|vm| vm.id);
    for vm in running {
        for (nic, n) in vm.spec.nics.iter().enumerate() {
            ports.push(SwitchPortCounters {
                vm_id: vm.id,
                nic,
                network: n.network.clone(),
                mac: n.mac.clone().unwrap_or_default(),
                port: ports.len() as u32 + 1,
                traffic: fake_port_traffic(nic),
                tx_errors: 0,
                rx_errors: 0,
                firewall: fake_port_firewall(state, &n.network, n.mac.as_deref()),
            });
        }
    }
    let networks = state
        .switch_config
        .iter()
        .flat_map(|c| &c.networks)
        .map(|n| {
            let mut traffic = TrafficCounters::default();
            let mut count = 0;
            for p in ports.iter().filter(|p| p.network == n.name) {
                traffic.add(&p.traffic);
                count += 1;
            }
            SwitchNetworkCounters {
                network: n.name.clone(),
                traffic,
                arp_suppressed: 3 * count,
                flooded: 5 * count,
                learning_refused: count,
            }
        })
        .collect();
    let mut uplink = TrafficCounters::default();
    for p in &ports {
        uplink.add(&p.traffic);
    }
    vinfra_types::network::HostSwitchCounters {
        networks,
        ports,
        uplink: Some(uplink),
        trunk: None,
        switch_drops: Default::default(),
        routers: Vec::new(),
    }
}
