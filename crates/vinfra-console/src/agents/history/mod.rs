//! The last hour of each VM's and each host's CPU and memory use, from the agents' reports:
//! one sample per [`USAGE_INTERVAL_S`] (the mean CPU of the interval's reports, the last
//! memory, a VM's bytes per second in and out from its NICs' counts), at most
//! [`USAGE_WINDOW_S`] of them. Kept in memory only (a restarted console
//! starts again); a VM keeps its history when it moves, under its id. Pure: the caller gives
//! the time.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;
use vinfra_proto::HostReport;
use vinfra_types::usage::{UsageHistory, UsageSample, USAGE_INTERVAL_S, USAGE_WINDOW_S};
use vinfra_types::vm::VmNetBytes;
use vinfra_types::PowerState;

/// Samples one history holds.
const CAPACITY: usize = (USAGE_WINDOW_S / USAGE_INTERVAL_S) as usize;

/// Seconds between two sweeps of the histories nothing reported in the last hour.
const SWEEP_EVERY_S: u64 = 60;

/// One interval being filled, or filled.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    at: u64,
    cpu_sum: f64,
    reports: u32,
    memory_mib: u64,
    /// Bytes received and sent in the interval, over `net_s` seconds between counts.
    rx: u64,
    tx: u64,
    net_s: u64,
}

/// One VM's or host's samples, oldest first, and a VM's last traffic count (when, what).
#[derive(Debug, Default)]
struct Ring {
    buckets: VecDeque<Bucket>,
    last_net: Option<(u64, VmNetBytes)>,
}

impl Ring {
    fn add(&mut self, now_s: u64, cpu_cores: f64, memory_mib: u64, net: Option<VmNetBytes>) {
        let at = now_s - now_s % USAGE_INTERVAL_S;
        let cpu = if cpu_cores.is_finite() && cpu_cores >= 0.0 {
            cpu_cores
        } else {
            0.0
        };
        // The traffic since the last count: none across a count that went back (the VM moved,
        // or its switch restarted) or without time between them.
        let moved = match (net, self.last_net) {
            (Some(n), Some((t0, n0)))
                if now_s > t0 && n.rx_bytes >= n0.rx_bytes && n.tx_bytes >= n0.tx_bytes =>
            {
                Some((
                    n.rx_bytes - n0.rx_bytes,
                    n.tx_bytes - n0.tx_bytes,
                    now_s - t0,
                ))
            }
            _ => None,
        };
        if let Some(n) = net {
            self.last_net = Some((now_s, n));
        }
        let (rx, tx, net_s) = moved.unwrap_or((0, 0, 0));
        match self.buckets.back_mut() {
            // The interval's bucket, or (a clock that went back) the latest one.
            Some(b) if b.at >= at => {
                b.cpu_sum += cpu;
                b.reports += 1;
                b.memory_mib = memory_mib;
                b.rx = b.rx.saturating_add(rx);
                b.tx = b.tx.saturating_add(tx);
                b.net_s += net_s;
            }
            _ => {
                if self.buckets.len() == CAPACITY {
                    self.buckets.pop_front();
                }
                self.buckets.push_back(Bucket {
                    at,
                    cpu_sum: cpu,
                    reports: 1,
                    memory_mib,
                    rx,
                    tx,
                    net_s,
                });
            }
        }
    }

    /// The samples of the hour before `now_s`.
    fn view(&self, now_s: u64) -> UsageHistory {
        let from = now_s.saturating_sub(USAGE_WINDOW_S);
        UsageHistory {
            interval_s: USAGE_INTERVAL_S,
            samples: self
                .buckets
                .iter()
                .filter(|b| b.at + USAGE_INTERVAL_S > from)
                .map(|b| {
                    let rate = |bytes: u64| (b.net_s > 0).then(|| bytes as f64 / b.net_s as f64);
                    UsageSample {
                        at: b.at,
                        cpu_cores: b.cpu_sum / f64::from(b.reports.max(1)),
                        memory_mib: b.memory_mib,
                        rx_bytes_per_s: rate(b.rx),
                        tx_bytes_per_s: rate(b.tx),
                    }
                })
                .collect(),
        }
    }

    fn stale(&self, now_s: u64) -> bool {
        self.buckets
            .back()
            .is_none_or(|b| b.at + USAGE_INTERVAL_S + USAGE_WINDOW_S <= now_s)
    }
}

/// The histories of every VM and host reported.
#[derive(Debug, Default)]
pub struct UsageHistories {
    vms: HashMap<Uuid, Ring>,
    hosts: HashMap<String, Ring>,
    swept_at: u64,
}

impl UsageHistories {
    /// Takes `report`, arrived at `now_s`: the host's use and that of each VM it runs.
    pub fn record(&mut self, now_s: u64, report: &HostReport) {
        self.hosts.entry(report.host.clone()).or_default().add(
            now_s,
            report.usage.cpu_cores,
            report.usage.memory_used_mib,
            None,
        );
        for vm in &report.vms {
            if vm.state == PowerState::Running && vm.pid.is_some() {
                self.vms.entry(vm.id).or_default().add(
                    now_s,
                    vm.usage.cpu_cores,
                    vm.usage.rss_mib,
                    vm.net,
                );
            }
        }
        if now_s >= self.swept_at + SWEEP_EVERY_S {
            self.swept_at = now_s;
            self.vms.retain(|_, r| !r.stale(now_s));
            self.hosts.retain(|_, r| !r.stale(now_s));
        }
    }

    /// VM `id`'s last hour at `now_s` (no samples for one never seen running).
    pub fn vm(&self, id: Uuid, now_s: u64) -> UsageHistory {
        self.vms.get(&id).map_or_else(empty, |r| r.view(now_s))
    }

    /// Host `host`'s last hour at `now_s`.
    pub fn host(&self, host: &str, now_s: u64) -> UsageHistory {
        self.hosts.get(host).map_or_else(empty, |r| r.view(now_s))
    }

    /// How many VMs and hosts have a history.
    pub fn len(&self) -> (usize, usize) {
        (self.vms.len(), self.hosts.len())
    }
}

fn empty() -> UsageHistory {
    UsageHistory {
        interval_s: USAGE_INTERVAL_S,
        samples: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
