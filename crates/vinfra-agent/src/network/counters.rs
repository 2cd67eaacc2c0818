//! The switch's counters in the cluster's terms: networks, VM ports, the uplink and trunk,
//! routers.

use std::collections::BTreeMap;

use uuid::Uuid;
use vinfra_proto::{HostSwitchConfig, SwitchNicFirewall};
use vinfra_switch_control::protocol::{NatCountersView, RouterCountersView};
use vinfra_switch_control::{CountersView, PortCountersView, TrafficView, UPLINK_PORT};
use vinfra_types::network::{
    HostSwitchCounters, PortFirewallCounters, PortRuleHits, SwitchNetworkCounters,
    SwitchPortCounters, SwitchRouterCounters, SwitchRouterNat, TrafficCounters,
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

/// A port's firewall counters with each hit count named by the rule of the console's
/// configuration it belongs to (the switch counts by position in the port's rule list, which
/// the agent builds in the configuration's order). `None` without a firewall on the port, or
/// while the switch's rules are not (yet) the configuration's (a different number of rules).
fn port_firewall(
    c: &PortCountersView,
    entry: Option<&SwitchNicFirewall>,
) -> Option<PortFirewallCounters> {
    let hits = c.firewall_hits.as_ref()?;
    let entry = entry?;
    if hits.len() != entry.rules.len() {
        return None;
    }
    Some(PortFirewallCounters {
        connections: c.connections,
        rules: entry
            .rules
            .iter()
            .zip(hits)
            .map(|(r, &hits)| PortRuleHits {
                group: r.group.clone(),
                rule_id: r.rule_id,
                hits,
            })
            .collect(),
    })
}

/// A router's NAT counters as the console gets them.
fn nat(c: &NatCountersView) -> SwitchRouterNat {
    SwitchRouterNat {
        edge: c.edge,
        sessions: c.sessions,
        sessions_created: c.sessions_created,
        sessions_expired: c.sessions_expired,
        snat_packets: c.snat_packets,
        dnat_packets: c.dnat_packets,
        to_edge_packets: c.to_edge_packets,
        from_transit_packets: c.from_transit_packets,
        garps_sent: c.garps_sent,
    }
}

/// A router's counters under its name, with its NAT counters when the switch has them (the
/// router has an uplink there).
fn router(name: &str, c: &RouterCountersView) -> SwitchRouterCounters {
    SwitchRouterCounters {
        router: name.to_string(),
        routed_packets: c.routed_packets,
        routed_bytes: c.routed_bytes,
        echo_replies: c.echo_replies,
        icmp_sent: c.icmp_sent.clone(),
        icmp_rate_limited: c.icmp_rate_limited,
        arp_requests: c.arp_requests,
        drops: c.drops.clone(),
        routed_fragments: c.routed_fragments,
        routed_options: c.routed_options,
        neighbours_learned: c.neighbours_learned,
        nat: c.nat.as_ref().map(nat),
    }
}

/// The switch's counters named by the configuration: networks by name (switch number →
/// [`vinfra_proto::SwitchNetwork::name`]), VM ports by VM id and NIC index, the uplink port,
/// routers by name (router number → [`vinfra_proto::SwitchRouter::name`]). A router the switch
/// does not report (not yet applied, or a switch without routing) is left out.
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
                firewall: port_firewall(
                    c,
                    config
                        .firewalls
                        .iter()
                        .find(|f| f.network == n.network && f.mac.eq_ignore_ascii_case(&n.mac)),
                ),
            })
        })
        .collect();
    HostSwitchCounters {
        networks,
        ports,
        uplink: view.port(UPLINK_PORT).map(|c| traffic(&c.traffic)),
        trunk: view.port(TRUNK_PORT).map(|c| traffic(&c.traffic)),
        switch_drops: view.switch_drops.clone(),
        routers: config
            .routers
            .iter()
            .filter_map(|r| Some(router(&r.name, view.router(u32::from(r.id))?)))
            .collect(),
    }
}
