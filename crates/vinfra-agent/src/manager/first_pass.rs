//! A migration's first-pass bandwidth cap: what it is ([`first_pass_bandwidth`]) and when it is
//! lifted ([`FirstPassCap::lift_now`]). Pure: the manager's migration code applies it.

/// The lowest bandwidth cap of a migration's first pass, bytes per second: QEMU's own default
/// cap (128 MiB/s).
const FIRST_PASS_FLOOR: u64 = 128 << 20;

/// The size of a guest page, as QEMU counts dirty pages (x86).
const PAGE_SIZE: u64 = 4096;

/// An outgoing migration's first-pass cap, and the operator's cap it gives way to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FirstPassCap {
    /// The cap now, bytes per second.
    pub cap: u64,
    /// The cap once lifted, bytes per second.
    pub after: u64,
    /// Lifted at the second pass whatever the guest dirties (fewest passes).
    pub always: bool,
}

impl FirstPassCap {
    /// Whether to lift the cap now, from QEMU's view of the migration: once the first pass is
    /// done (`rounds` ≥ 2) and the guest dirties at least half as fast as the cap lets pages go
    /// (then the cap would hold the migration back from converging). A guest that dirties
    /// less keeps the cap to the end, as plain QEMU keeps its default: lifting it makes QEMU
    /// measure a burst, judge everything left to fit the downtime limit and stop the guest
    /// with the second pass's pages unsent (idle 256-MiB guests stopped for 17–52 ms instead
    /// of 3–5 ms; docs/benchmarks.md).
    ///
    /// With `always` (a QEMU that loses writes under TCG: every pass more is a chance to lose
    /// one) it is lifted at the second pass whatever the guest dirties, so that QEMU stops the
    /// guest at once.
    pub fn lift_now(&self, rounds: u64, dirty_pages_rate: u64) -> bool {
        rounds >= 2 && (self.always || dirty_pages_rate.saturating_mul(PAGE_SIZE) >= self.cap / 2)
    }
}

/// The bandwidth cap of a migration's first pass (the one that sends all of the guest's
/// memory), bytes per second; lifted to the operator's cap after it when the guest dirties
/// fast ([`FirstPassCap::lift_now`]).
///
/// QEMU stops the guest for the switchover as soon as the memory it has still to send fits
/// `bandwidth × downtime-limit`. With the bandwidth unlimited it measures a high rate early
/// and that holds while most of a small guest's memory is still to scan: the guest stops
/// with all of that left, and the scan is the downtime (25–96 ms for an idle 256-MiB guest,
/// against 4–9 ms for plain QEMU with its 128 MiB/s default; docs/benchmarks.md). Under a cap
/// the first pass runs with the guest up, and only what the guest dirtied is left for the
/// pause. The cap is a tenth of the guest's memory per downtime limit (so the stop waits
/// until nine tenths are sent) and at least QEMU's 128 MiB/s: a large guest's first pass is
/// not held back below what the link gives, and a small one's is no slower than plain QEMU's.
pub(super) fn first_pass_bandwidth(memory: u64, downtime_limit_ms: u64, max_bandwidth: u64) -> u64 {
    let tenth_per_limit = (u128::from(memory) * 1000 / (10 * u128::from(downtime_limit_ms.max(1))))
        .min(u128::from(u64::MAX)) as u64;
    tenth_per_limit.max(FIRST_PASS_FLOOR).min(max_bandwidth)
}
