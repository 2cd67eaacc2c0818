//! The switch's counters in the cluster's terms.

use std::collections::BTreeMap;

use uuid::Uuid;
use vinfra_proto::HostSwitchConfig;
use vinfra_switch_control::{CountersView, TrafficView, UPLINK_PORT};
use vinfra_types::network::{
    HostSwitchCounters, SwitchNetworkCounters, SwitchPortCounters, TrafficCounters,
};

use super::attachment::TRUNK_PORT;
use super::desired::VmNic;

fn traffic(t: &TrafficView) -> TrafficCounters {
    TrafficCounters {
        rx_packets: t.rx_packets,
        rx_bytes: t.rx_bytes,
        tx_packets: t.tx_packets,
        tx_bytes: t.tx_bytes,
        drops: t.drops.clone(),
    }
}

/// The switch's counters named by the configuration: networks by name (switch number →
/// [`vinfra_proto::SwitchNetwork::name`]), VM ports by VM id and NIC index, the uplink port.
pub fn host_counters(
    view: &CountersView,
    config: &HostSwitchConfig,
    vms: &BTreeMap<Uuid, Vec<VmNic>>,
) -> HostSwitchCounters {
    let networks = config
        .networks
        .iter()
        .filter_map(|n| {
            view.network(u32::from(n.id))
                .map(|c| SwitchNetworkCounters {
                    network: n.name.clone(),
                    traffic: traffic(&c.traffic),
                    arp_suppressed: c.arp_suppressed,
                    flooded: c.flooded,
                    learning_refused: c.learning_refused,
                })
        })
        .collect();
    let ports = vms
        .iter()
        .flat_map(|(id, nics)| nics.iter().enumerate().map(move |(i, n)| (*id, i, n)))
        .filter_map(|(vm_id, nic, n)| {
            view.port(n.port).map(|c| SwitchPortCounters {
                vm_id,
                nic,
                network: n.network.clone(),
                mac: n.mac.clone(),
                port: n.port,
                traffic: traffic(&c.traffic),
                tx_errors: c.tx_errors,
                rx_errors: c.rx_errors,
            })
        })
        .collect();
    HostSwitchCounters {
        networks,
        ports,
        uplink: view.port(UPLINK_PORT).map(|c| traffic(&c.traffic)),
        trunk: view.port(TRUNK_PORT).map(|c| traffic(&c.traffic)),
        switch_drops: view.switch_drops.clone(),
    }
}
