//! Flow visibility (docs/design.md "Flows"): the flows agents send ([`record`]), kept in the
//! console's [`FlowStore`](crate::state::flows::FlowStore); `GET /api/v1/flows` ([`top`]):
//! the window's flows grouped by VM pair, network, router or direction, endpoints named by
//! the VM NIC addresses of the address management and the floating IPs; and the balancer's
//! traffic matrix ([`traffic_matrix`]).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use vinfra_proto::HostFlow;
use vinfra_types::error::Chain;
use vinfra_types::flows::{FlowQuery, FlowReport};

use crate::error::Error;
use crate::state::flows::{pair_bytes, rows};
use crate::state::records::now_s;
use crate::state::Console;

/// Adds a host's flows (an `AgentMessage::Flows`) to the store, at the console's time.
pub fn record(console: &Console, flows: &[HostFlow], untracked_packets: u64) {
    console.flow_store().add(now_s(), flows, untracked_packets);
}

/// Who holds each address: per network (name) its VM NIC addresses and the floating IPs on it
/// (an external network), and the addresses held on one network only (for the far end of a
/// routed flow, which entered on the sender's network).
#[derive(Default)]
struct Addresses {
    by_network: HashMap<String, HashMap<Ipv4Addr, String>>,
    unique: HashMap<Ipv4Addr, Option<String>>,
}

impl Addresses {
    fn read(console: &Console) -> Addresses {
        let mut addresses = Addresses::default();
        for n in console.network_records() {
            for (addr, entry) in &n.ipam {
                if let Ok(a) = addr.parse::<Ipv4Addr>() {
                    addresses.hold(&n.network.name, a, &entry.vm);
                }
            }
        }
        // A floating IP stands for its VM on the router's external network (the edge counts
        // an inbound flow to it before translating it).
        let routers = console.routers().unwrap_or_else(|e| {
            tracing::warn!("flows: floating IPs not read: {}", Chain(&e));
            Vec::new()
        });
        for r in routers {
            let Some(uplink) = &r.value.router.uplink else {
                continue;
            };
            for f in &uplink.floating_ips {
                if let Ok(a) = f.ip.parse::<Ipv4Addr>() {
                    addresses.hold(&uplink.network, a, &f.vm);
                }
            }
        }
        addresses
    }

    /// `vm` holds `addr` on `network`.
    fn hold(&mut self, network: &str, addr: Ipv4Addr, vm: &str) {
        self.by_network
            .entry(network.to_string())
            .or_default()
            .insert(addr, vm.to_string());
        self.unique
            .entry(addr)
            .and_modify(|v| {
                if v.as_deref() != Some(vm) {
                    *v = None;
                }
            })
            .or_insert_with(|| Some(vm.to_string()));
    }

    /// The VM holding `addr`: on `network` first, else the one VM holding it on any network.
    fn resolve(&self, network: &str, addr: Ipv4Addr) -> Option<String> {
        self.by_network
            .get(network)
            .and_then(|m| m.get(&addr))
            .cloned()
            .or_else(|| self.unique.get(&addr).cloned().flatten())
    }
}

/// `GET /api/v1/flows`: the flows of the last `q.minutes` minutes grouped by `q.by`, the
/// `q.top` largest by bytes. A query out of range is refused (400).
pub fn top(console: &Console, q: FlowQuery) -> Result<FlowReport, Error> {
    q.validate().map_err(|reason| Error::FlowQuery { reason })?;
    let window = console.flow_store().window(now_s(), q.minutes);
    let addresses = Addresses::read(console);
    let rows = rows(&window, q.by, q.top as usize, |n, a| {
        addresses.resolve(n, a)
    });
    Ok(FlowReport {
        minutes: q.minutes,
        by: q.by,
        rows,
        untracked_packets: window.untracked_packets,
    })
}

/// The balancer's traffic matrix: `(a, b, bytes per second)` between two running VMs of
/// `running` (both directions together, east-west only) averaged over the last `minutes`
/// minutes (the balancer turns each into the placement library's `TrafficFlow`).
pub fn traffic_matrix(
    console: &Console,
    minutes: u32,
    running: &[&str],
) -> Vec<(String, String, u64)> {
    let window = console.flow_store().window(now_s(), minutes);
    let addresses = Addresses::read(console);
    matrix(
        pair_bytes(&window, |n, a| addresses.resolve(n, a)),
        minutes,
        running,
    )
}

/// Pairs of bytes over `minutes` into `(a, b, bytes per second)`, keeping pairs of `running`
/// VMs with traffic.
pub fn matrix(
    pairs: BTreeMap<(String, String), u64>,
    minutes: u32,
    running: &[&str],
) -> Vec<(String, String, u64)> {
    let seconds = u64::from(minutes.max(1)) * 60;
    pairs
        .into_iter()
        .filter(|((a, b), _)| running.contains(&a.as_str()) && running.contains(&b.as_str()))
        .map(|((a, b), bytes)| (a, b, bytes / seconds))
        .filter(|(_, _, rate)| *rate > 0)
        .collect()
}
