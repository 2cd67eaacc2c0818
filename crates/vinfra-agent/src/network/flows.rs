//! The flows the switch counted, in the cluster's terms: [`SwitchLink::take_flows`] takes them
//! (`take_flows`: deltas since the previous take) and [`host_flows`] names each flow's network
//! and router as the console's configuration does.

use vinfra_proto::{HostFlow, HostSwitchConfig};
use vinfra_switch_control::{ClientError, FlowDirection, FlowsView};
use vinfra_types::flows::TrafficDirection;

use super::error::SwitchLinkError;
use super::link::{lock, SwitchLink};
use super::reconcile::connected;

/// What one take of the switch's flows gave, named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TakenFlows {
    /// Milliseconds since the previous take (0 for the first).
    pub interval_ms: u64,
    /// The flows with traffic in the interval, named.
    pub flows: Vec<HostFlow>,
    /// Packets the switch could not count in a flow (its table was full).
    pub untracked_packets: u64,
    /// Flows the configuration could not name (a network the agent no longer knows).
    pub unnamed: u64,
}

/// The switch's flows named by the configuration: network numbers to
/// [`vinfra_proto::SwitchNetwork::name`], router numbers to [`vinfra_proto::SwitchRouter::name`].
/// A flow on a network the configuration does not have (removed meanwhile) is left out and
/// counted in [`TakenFlows::unnamed`]; a router it does not have leaves the flow without one.
pub fn host_flows(view: &FlowsView, config: &HostSwitchConfig) -> TakenFlows {
    let mut unnamed = 0;
    let flows = view
        .flows
        .iter()
        .filter_map(|f| {
            let Some(network) = config
                .networks
                .iter()
                .find(|n| u32::from(n.id) == f.network)
            else {
                unnamed += 1;
                return None;
            };
            let router = f.router.and_then(|r| {
                config
                    .routers
                    .iter()
                    .find(|x| u32::from(x.id) == r)
                    .map(|x| x.name.clone())
            });
            Some(HostFlow {
                network: network.name.clone(),
                router,
                src: f.src,
                dst: f.dst,
                protocol: f.protocol,
                src_port: f.src_port,
                dst_port: f.dst_port,
                packets: f.packets,
                bytes: f.bytes,
                direction: match f.direction {
                    FlowDirection::EastWest => TrafficDirection::EastWest,
                    FlowDirection::NorthSouth => TrafficDirection::NorthSouth,
                },
            })
        })
        .collect();
    TakenFlows {
        interval_ms: view.interval_ms,
        flows,
        untracked_packets: view.untracked_packets,
        unnamed,
    }
}

impl SwitchLink {
    /// Takes the switch's flows now (blocking) and names them ([`host_flows`]). `Ok(None)`
    /// when the switch refuses `take_flows` (a switch that does not count flows); a connection
    /// failure is an error (and the next call reconnects).
    pub fn take_flows(&self) -> Result<Option<TakenFlows>, SwitchLinkError> {
        let mut slot = lock(&self.client);
        let view = match connected(self, &mut slot).and_then(|c| c.take_flows()) {
            Ok(v) => v,
            Err(ClientError::Refused { .. }) => return Ok(None),
            Err(source) => {
                *slot = None;
                return Err(SwitchLinkError::Switch {
                    path: self.attachment.control.clone(),
                    source,
                });
            }
        };
        drop(slot);
        let d = lock(&self.desired);
        Ok(Some(host_flows(&view, &d.config)))
    }
}
