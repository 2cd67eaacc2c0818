//! The flows the hosts' switches counted, in memory: [`FlowStore`] keeps them in one-minute
//! buckets for [`FLOW_HISTORY_MINUTES`] minutes, each bucket at most [`MAX_FLOWS_PER_BUCKET`]
//! flows (what does not fit is counted as untracked), so the store never holds more than
//! 60 × 16,384 flows. Pure: the caller gives the time, and [`rows`] and [`pair_bytes`] group a
//! window's flows with an address resolver the caller builds (VM NIC addresses).
//!
//! A flow is counted once in the cluster (where it enters the switches), so flows of all hosts
//! add up. Nothing survives a console restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use vinfra_proto::HostFlow;
use vinfra_types::flows::{FlowGrouping, FlowRow, TrafficDirection, FLOW_HISTORY_MINUTES};

/// Most distinct flows a one-minute bucket keeps.
pub const MAX_FLOWS_PER_BUCKET: usize = 16_384;

/// A flow as the store keys it: network and 5-tuple, with its router and direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredFlowKey {
    /// The network it entered on.
    pub network: String,
    /// The router that routed it, if any.
    pub router: Option<String>,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub protocol: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// East-west or north-south.
    pub direction: TrafficDirection,
}

/// A flow's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCount {
    /// Packets.
    pub packets: u64,
    /// IP bytes.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Minutes since the Unix epoch.
    minute: u64,
    flows: HashMap<StoredFlowKey, FlowCount>,
    untracked_packets: u64,
}

/// The flows of one window, added up over its buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowWindow {
    /// Each flow's traffic in the window.
    pub flows: HashMap<StoredFlowKey, FlowCount>,
    /// Packets the hosts' switches or this store could not count in a flow.
    pub untracked_packets: u64,
}

/// The console's flows: one bucket per minute, the last [`FLOW_HISTORY_MINUTES`].
#[derive(Debug, Default)]
pub struct FlowStore {
    buckets: Mutex<VecDeque<Bucket>>,
}

impl FlowStore {
    /// Adds a host's flows taken at `now_s` (seconds since the Unix epoch) to the minute's
    /// bucket, dropping buckets older than the history.
    pub fn add(&self, now_s: u64, flows: &[HostFlow], untracked_packets: u64) {
        let minute = now_s / 60;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = minute.saturating_sub(u64::from(FLOW_HISTORY_MINUTES) - 1);
        while buckets.front().is_some_and(|b| b.minute < oldest) {
            buckets.pop_front();
        }
        if buckets.back().is_none_or(|b| b.minute < minute) {
            buckets.push_back(Bucket {
                minute,
                ..Bucket::default()
            });
        }
        // A take from a host whose clock lags lands in the bucket of its minute, if kept.
        let Some(bucket) = buckets.iter_mut().rev().find(|b| b.minute <= minute) else {
            return;
        };
        bucket.untracked_packets += untracked_packets;
        for f in flows {
            let key = StoredFlowKey {
                network: f.network.clone(),
                router: f.router.clone(),
                src: f.src,
                dst: f.dst,
                protocol: f.protocol,
                src_port: f.src_port,
                dst_port: f.dst_port,
                direction: f.direction,
            };
            let full = bucket.flows.len() >= MAX_FLOWS_PER_BUCKET;
            match bucket.flows.get_mut(&key) {
                Some(c) => {
                    c.packets += f.packets;
                    c.bytes += f.bytes;
                }
                None if full => bucket.untracked_packets += f.packets,
                None => {
                    bucket.flows.insert(
                        key,
                        FlowCount {
                            packets: f.packets,
                            bytes: f.bytes,
                        },
                    );
                }
            }
        }
    }

    /// The flows of the last `minutes` minutes at `now_s` (the current minute and the
    /// `minutes - 1` before it).
    pub fn window(&self, now_s: u64, minutes: u32) -> FlowWindow {
        let minute = now_s / 60;
        let first = minute.saturating_sub(u64::from(minutes.max(1)) - 1);
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut w = FlowWindow::default();
        for b in buckets
            .iter()
            .filter(|b| b.minute >= first && b.minute <= minute)
        {
            w.untracked_packets += b.untracked_packets;
            for (k, c) in &b.flows {
                let e = w.flows.entry(k.clone()).or_default();
                e.packets += c.packets;
                e.bytes += c.bytes;
            }
        }
        w
    }

    /// Flows held, over all buckets (for tests and bounds).
    pub fn len(&self) -> usize {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.iter().map(|b| b.flows.len()).sum()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rows of a window grouped `by`, the largest by bytes first (ties by key), at most `top`.
/// `resolve(network, address)` names an endpoint (a VM) or gives `None` (then the address is
/// shown). Rows are per group and direction.
pub fn rows(
    window: &FlowWindow,
    by: FlowGrouping,
    top: usize,
    resolve: impl Fn(&str, Ipv4Addr) -> Option<String>,
) -> Vec<FlowRow> {
    type Group = (String, Option<(String, String)>, TrafficDirection);
    let mut groups: BTreeMap<Group, FlowCount> = BTreeMap::new();
    let mut flows: BTreeMap<Group, u64> = BTreeMap::new();
    for (k, c) in &window.flows {
        let group: Group = match by {
            FlowGrouping::VmPair => {
                let a = resolve(&k.network, k.src).unwrap_or_else(|| k.src.to_string());
                let b = resolve(&k.network, k.dst).unwrap_or_else(|| k.dst.to_string());
                let (a, b) = if a <= b { (a, b) } else { (b, a) };
                (format!("{a} <-> {b}"), Some((a, b)), k.direction)
            }
            FlowGrouping::Network => (k.network.clone(), None, k.direction),
            FlowGrouping::Router => (
                k.router.clone().unwrap_or_else(|| "-".to_string()),
                None,
                k.direction,
            ),
            FlowGrouping::Direction => (k.direction.as_str().to_string(), None, k.direction),
        };
        let e = groups.entry(group.clone()).or_default();
        e.packets += c.packets;
        e.bytes += c.bytes;
        *flows.entry(group).or_default() += 1;
    }
    let mut out: Vec<FlowRow> = groups
        .into_iter()
        .map(|(g, c)| {
            let n = flows.get(&g).copied().unwrap_or(0);
            let (key, pair, direction) = g;
            let (a, b) = pair.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            FlowRow {
                key,
                a,
                b,
                direction,
                bytes: c.bytes,
                packets: c.packets,
                flows: n,
            }
        })
        .collect();
    out.sort_by(|x, y| y.bytes.cmp(&x.bytes).then_with(|| x.key.cmp(&y.key)));
    out.truncate(top);
    out
}

/// Bytes between two VMs in a window, both directions together, per pair `(a, b)` with
/// `a < b`: east-west flows whose two ends `resolve` names as two different VMs.
pub fn pair_bytes(
    window: &FlowWindow,
    resolve: impl Fn(&str, Ipv4Addr) -> Option<String>,
) -> BTreeMap<(String, String), u64> {
    let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (k, c) in &window.flows {
        if k.direction != TrafficDirection::EastWest {
            continue;
        }
        let (Some(a), Some(b)) = (resolve(&k.network, k.src), resolve(&k.network, k.dst)) else {
            continue;
        };
        if a == b {
            continue;
        }
        let pair = if a < b { (a, b) } else { (b, a) };
        *out.entry(pair).or_default() += c.bytes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: [u8; 4], dst: [u8; 4], bytes: u64, direction: TrafficDirection) -> HostFlow {
        HostFlow {
            network: "n1".into(),
            router: None,
            src: src.into(),
            dst: dst.into(),
            protocol: 6,
            src_port: 40000,
            dst_port: 5201,
            packets: bytes / 1000,
            bytes,
            direction,
        }
    }

    fn names(_: &str, a: Ipv4Addr) -> Option<String> {
        match a.octets() {
            [10, 0, 0, 2] => Some("web".into()),
            [10, 0, 0, 3] => Some("db".into()),
            _ => None,
        }
    }

    const EW: TrafficDirection = TrafficDirection::EastWest;
    const NS: TrafficDirection = TrafficDirection::NorthSouth;

    #[test]
    fn buckets_add_up_within_the_window_and_age_out() {
        let s = FlowStore::default();
        let t0 = 1_000_000 * 60;
        let f = flow([10, 0, 0, 2], [10, 0, 0, 3], 5000, EW);
        s.add(t0, std::slice::from_ref(&f), 0);
        s.add(t0 + 10, std::slice::from_ref(&f), 2);
        s.add(t0 + 60 * 3, std::slice::from_ref(&f), 0);
        let w = s.window(t0 + 60 * 3, 1);
        assert_eq!(w.flows.values().map(|c| c.bytes).sum::<u64>(), 5000);
        let w = s.window(t0 + 60 * 3, 4);
        assert_eq!(w.flows.values().map(|c| c.bytes).sum::<u64>(), 15000);
        assert_eq!(w.untracked_packets, 2);
        assert_eq!(w.flows.len(), 1);
        // An hour on, only the newest bucket is left.
        s.add(t0 + 60 * 62, &[], 0);
        assert_eq!(
            s.window(t0 + 60 * 62, 60)
                .flows
                .values()
                .map(|c| c.bytes)
                .sum::<u64>(),
            5000
        );
    }

    #[test]
    fn a_full_bucket_counts_the_rest_as_untracked() {
        let s = FlowStore::default();
        let flows: Vec<HostFlow> = (0..MAX_FLOWS_PER_BUCKET as u32 + 10)
            .map(|i| {
                let mut f = flow([10, 0, 0, 2], [10, 0, 0, 3], 2000, EW);
                f.src_port = (i % 60000) as u16;
                f.dst_port = (i / 60000) as u16;
                f
            })
            .collect();
        s.add(60, &flows, 0);
        assert_eq!(s.len(), MAX_FLOWS_PER_BUCKET);
        assert_eq!(s.window(60, 1).untracked_packets, 20);
    }

    #[test]
    fn rows_group_pairs_both_ways_and_rank_by_bytes() {
        let s = FlowStore::default();
        let mut back = flow([10, 0, 0, 3], [10, 0, 0, 2], 1000, EW);
        back.src_port = 5201;
        back.dst_port = 40000;
        let mut out = flow([10, 0, 0, 2], [198, 51, 100, 7], 300, NS);
        out.router = Some("r1".into());
        s.add(
            120,
            &[flow([10, 0, 0, 2], [10, 0, 0, 3], 9000, EW), back, out],
            0,
        );
        let w = s.window(120, 5);
        let r = rows(&w, FlowGrouping::VmPair, 10, names);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].key, "db <-> web");
        assert_eq!((r[0].bytes, r[0].flows, r[0].direction), (10_000, 2, EW));
        assert_eq!(r[1].a.as_deref(), Some("198.51.100.7"));
        assert_eq!(r[1].b.as_deref(), Some("web"));
        assert_eq!(r[1].direction, NS);
        let r = rows(&w, FlowGrouping::Router, 10, names);
        assert_eq!(
            r.iter()
                .map(|r| (r.key.as_str(), r.bytes))
                .collect::<Vec<_>>(),
            [("-", 10_000), ("r1", 300)]
        );
        let r = rows(&w, FlowGrouping::Direction, 1, names);
        assert_eq!((r.len(), r[0].key.as_str()), (1, "east-west"));
        let r = rows(&w, FlowGrouping::Network, 10, names);
        assert_eq!(r.len(), 2, "one row per network and direction");
        let m = pair_bytes(&w, names);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&("db".to_string(), "web".to_string())], 10_000);
    }
}
