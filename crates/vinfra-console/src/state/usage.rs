//! Each VM's measured use over the last hour, from its host's reports: a bounded ring per VM,
//! kept in memory only (not in the store; a restarted console starts empty), for the web
//! console's graphs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How far back the history goes, milliseconds (an hour).
pub const HISTORY_MS: u64 = 3_600_000;

/// Most samples a VM keeps: one per report (every 2 s) for the hour.
pub const MAX_SAMPLES: usize = 1800;

/// Least time between two samples of a VM, milliseconds (a VM two hosts report while it
/// migrates counts once).
pub const MIN_GAP_MS: u64 = 1000;

/// Most VMs kept (the one heard of longest ago goes first).
pub const MAX_VMS: usize = 20_000;

/// One VM's use at one report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct UsageSample {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// CPU in use, cores.
    pub cpu_cores: f64,
    /// Resident memory of its QEMU, MiB.
    pub rss_mib: u64,
}

/// The rings, by VM name.
#[derive(Default)]
pub struct UsageHistory {
    rings: Mutex<HashMap<String, VecDeque<UsageSample>>>,
}

impl UsageHistory {
    /// Adds `sample` to `vm`'s ring: dropped when it comes less than [`MIN_GAP_MS`] after the
    /// last one; samples older than [`HISTORY_MS`] and past [`MAX_SAMPLES`] go.
    pub fn record(&self, vm: &str, sample: UsageSample) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        if !rings.contains_key(vm) && rings.len() >= MAX_VMS {
            let fresh = |r: &VecDeque<UsageSample>| {
                r.back()
                    .is_some_and(|s| s.at_ms.saturating_add(HISTORY_MS) > sample.at_ms)
            };
            rings.retain(|_, r| fresh(r));
            if rings.len() >= MAX_VMS {
                let stalest = rings
                    .iter()
                    .min_by_key(|(_, r)| r.back().map(|s| s.at_ms))
                    .map(|(name, _)| name.clone());
                if let Some(name) = stalest {
                    rings.remove(&name);
                }
            }
        }
        let ring = rings.entry(vm.to_string()).or_default();
        if ring
            .back()
            .is_some_and(|last| sample.at_ms < last.at_ms.saturating_add(MIN_GAP_MS))
        {
            return;
        }
        ring.push_back(sample);
        while ring.len() > MAX_SAMPLES
            || ring
                .front()
                .is_some_and(|s| s.at_ms.saturating_add(HISTORY_MS) < sample.at_ms)
        {
            ring.pop_front();
        }
    }

    /// `vm`'s samples of the hour before `now_ms`, oldest first.
    pub fn samples(&self, vm: &str, now_ms: u64) -> Vec<UsageSample> {
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings
            .get(vm)
            .map(|r| {
                r.iter()
                    .filter(|s| s.at_ms.saturating_add(HISTORY_MS) >= now_ms)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets `vm` (it was deleted).
    pub fn forget(&self, vm: &str) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.remove(vm);
    }

    /// VMs kept.
    pub fn vms(&self) -> usize {
        self.rings.lock().map(|r| r.len()).unwrap_or(0)
    }
}

/// Now, milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: u64) -> UsageSample {
        UsageSample {
            at_ms,
            cpu_cores: 0.5,
            rss_mib: 100,
        }
    }

    #[test]
    fn a_ring_keeps_the_last_hour_and_at_most_its_samples() {
        let h = UsageHistory::default();
        // Two hours of reports every 2 s.
        for i in 0..3600 {
            h.record("a", at(i * 2000));
        }
        let now = 3599 * 2000;
        let kept = h.samples("a", now);
        assert_eq!(kept.len(), MAX_SAMPLES);
        assert!(kept.iter().all(|s| s.at_ms + HISTORY_MS >= now));
        assert!(kept.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_eq!(kept.last().unwrap().at_ms, now);
        // Every second report: the hour still bounds it.
        for i in 0..100 {
            h.record("b", at(i * 60_000));
        }
        let kept = h.samples("b", 99 * 60_000);
        assert_eq!(kept.len(), 61, "the 61 samples of the hour");
        // Read later, the old ones are not shown.
        assert!(h.samples("b", 99 * 60_000 + HISTORY_MS + 1).is_empty());
        assert!(h.samples("nobody", now).is_empty());
    }

    #[test]
    fn samples_too_close_count_once_and_older_ones_are_dropped() {
        let h = UsageHistory::default();
        h.record("a", at(10_000));
        h.record("a", at(10_500));
        h.record("a", at(9_000));
        h.record("a", at(11_000));
        let kept: Vec<u64> = h.samples("a", 11_000).iter().map(|s| s.at_ms).collect();
        assert_eq!(kept, vec![10_000, 11_000]);
        h.forget("a");
        assert_eq!(h.vms(), 0);
    }

    #[test]
    fn the_vms_kept_are_bounded() {
        let h = UsageHistory::default();
        for i in 0..(MAX_VMS + 5) {
            h.record(&format!("vm{i}"), at(HISTORY_MS + i as u64));
        }
        assert_eq!(h.vms(), MAX_VMS);
        // The first ones went.
        assert!(h.samples("vm0", HISTORY_MS).is_empty());
        assert_eq!(
            h.samples(&format!("vm{}", MAX_VMS + 4), HISTORY_MS).len(),
            1
        );
    }
}
