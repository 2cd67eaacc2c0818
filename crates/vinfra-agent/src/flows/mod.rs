//! The host's flows out of the agent: every [`FLOW_INTERVAL`] one task for the agent's life
//! ([`send_flows`]) takes the flows its switch counted
//! ([`crate::network::SwitchLink::take_flows`]), exports them to the cluster's IPFIX collector
//! when there is one ([`export`]) and sends them to the console (`AgentMessage::Flows`, at
//! most [`MAX_FLOWS_PER_MESSAGE`] a message) through the session connected then
//! ([`FlowSink`]). So the collector keeps getting the host's flows while the console is away
//! (it is the one record of them then); the console misses what was taken meanwhile. The
//! agent keeps nothing between takes, and a restarted agent exports again once the console
//! has told it the collector.
//!
//! A switch that refuses `take_flows` (one that does not count flows) is noted once (debug)
//! and nothing is sent; the agent asks again every interval, so an upgraded switch is picked
//! up without a restart.
//!
//! Files, each using only those listed after it: [`export`] (the UDP exporter), [`ipfix`]
//! (the pure encoder).

pub mod export;
pub mod ipfix;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use vinfra_proto::AgentMessage;
use vinfra_types::error::Chain;

use crate::network::{SwitchLink, TakenFlows};
pub use export::{ExportError, FlowExport};

/// Time between two takes of the switch's flows.
pub const FLOW_INTERVAL: Duration = Duration::from_secs(10);
/// Most flows in one `AgentMessage::Flows` (a larger take is sent in several).
pub const MAX_FLOWS_PER_MESSAGE: usize = 10_000;

/// The messages for the console of one take: the flows in chunks of at most
/// [`MAX_FLOWS_PER_MESSAGE`] (the untracked packets with the first); none when the take has
/// neither flows nor untracked packets.
pub fn messages(host: &str, taken: TakenFlows) -> Vec<AgentMessage> {
    if taken.flows.is_empty() && taken.untracked_packets == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut untracked = taken.untracked_packets;
    let mut flows = taken.flows;
    loop {
        let rest = flows.split_off(flows.len().min(MAX_FLOWS_PER_MESSAGE));
        out.push(AgentMessage::Flows {
            host: host.to_string(),
            interval_ms: taken.interval_ms,
            flows,
            untracked_packets: std::mem::take(&mut untracked),
        });
        if rest.is_empty() {
            return out;
        }
        flows = rest;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The console session's message queue while one is connected.
#[derive(Debug, Default)]
pub struct FlowSink {
    current: std::sync::Mutex<Option<mpsc::Sender<AgentMessage>>>,
}

/// A session's hold on the [`FlowSink`]: released when dropped (the session ended).
pub struct SinkHold<'a> {
    sink: &'a FlowSink,
    out: mpsc::Sender<AgentMessage>,
}

impl FlowSink {
    /// The session with queue `out` gets the flows until the hold is dropped.
    pub fn attach(&self, out: mpsc::Sender<AgentMessage>) -> SinkHold<'_> {
        *self.lock() = Some(out.clone());
        SinkHold { sink: self, out }
    }

    /// The queue of the session connected now.
    pub fn current(&self) -> Option<mpsc::Sender<AgentMessage>> {
        self.lock().clone().filter(|s| !s.is_closed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<AgentMessage>>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SinkHold<'_> {
    fn drop(&mut self) {
        let mut current = self.sink.lock();
        // A newer session may have attached meanwhile: only this one's queue is removed.
        if current.as_ref().is_some_and(|c| c.same_channel(&self.out)) {
            *current = None;
        }
    }
}

/// Takes the switch's flows every `period`, exports them and sends them to the session in
/// `sink` when one is connected; runs for the agent's life.
pub async fn send_flows(
    link: Arc<SwitchLink>,
    export: Arc<FlowExport>,
    host: String,
    sink: Arc<FlowSink>,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut refused_noted = false;
    let mut export_failing = false;
    loop {
        tick.tick().await;
        let (link, export, host2) = (link.clone(), export.clone(), host.clone());
        let taken = tokio::task::spawn_blocking(move || {
            let taken = link.take_flows();
            let exported = match &taken {
                Ok(Some(t)) => Some(export.export(&host2, t, now_ms())),
                _ => None,
            };
            (taken, exported)
        })
        .await;
        let Ok((taken, exported)) = taken else {
            continue;
        };
        match exported {
            Some(Err(e)) if !export_failing => {
                export_failing = true;
                tracing::warn!("IPFIX export: {}", Chain(&e));
            }
            Some(Ok(_)) if export_failing => {
                export_failing = false;
                tracing::info!("IPFIX export works again");
            }
            _ => {}
        }
        match taken {
            Ok(Some(t)) => {
                refused_noted = false;
                if let Some(out) = sink.current() {
                    for m in messages(&host, t) {
                        // A session that ends meanwhile misses the rest of this take.
                        if out.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Ok(None) if !refused_noted => {
                refused_noted = true;
                tracing::debug!("the switch does not count flows: none are sent");
            }
            Ok(None) => {}
            // The reconcile loop reports a switch that cannot be reached.
            Err(e) => tracing::debug!("taking the switch's flows: {}", Chain(&e)),
        }
    }
}
