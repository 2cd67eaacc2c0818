//! A migration's early passes: the downtime limit they run under ([`EARLY_DOWNTIME_MS`]) and
//! when the operator's limit takes over ([`EarlyPasses::over`]). Pure: the manager's migration code
//! applies it.

use serde::{Deserialize, Serialize};

/// The downtime limit of a migration's first two passes, milliseconds, when the operator's is
/// higher.
///
/// QEMU stops the guest for the switchover as soon as the memory it has still to send fits
/// `bandwidth × downtime-limit`, the bandwidth measured every 100 ms. In the first pass (the one
/// that sends all of the guest's memory) the memory still to send is the part not scanned yet,
/// mostly zero pages on a small or idle guest, and the bandwidth measured is high on a fast
/// link: with the operator's limit (300 ms by default) QEMU would stop the guest with much of it
/// unscanned, and the scan would be the downtime (25–96 ms for an idle 256-MiB guest with no
/// bandwidth cap, against 4–9 ms for plain QEMU with its 128 MiB/s cap; docs/benchmarks.md).
/// Under a small limit the first pass runs at the link's full rate with the guest up to its
/// last few milliseconds' worth, and the second sends what the guest dirtied meanwhile with the
/// guest still up (an idle guest's is small enough to stop at); from the third on, the
/// operator's limit: QEMU stops the guest as soon as what is left fits it. QEMU applies a new
/// limit at its next bandwidth measurement (every 100 ms), so a pass or two more may go by
/// under the early one.
pub(super) const EARLY_DOWNTIME_MS: u64 = 10;
/// The pass from which the operator's downtime limit applies.
const OPERATORS_FROM_PASS: u64 = 3;

/// [`EARLY_DOWNTIME_MS`] with the fewest passes (a QEMU before 9.0 under TCG): there a store
/// through a TCG TLB entry made before a dirty-bitmap sync marks nothing dirty, so what the
/// guest writes after the second pass's sync may be lost unless QEMU stops it right at that
/// sync. Under 10 ms an idle guest's pages dirtied in the first pass often did not fit, the
/// guest ran on, and a guest's TCP connection stalled for good after such a migration in a CI
/// run; under 50 ms what is left at the sync is about what plain QEMU's 128 MiB/s × 300 ms
/// leaves (tens of MB), so the guest stops there as it would under plain QEMU, and the
/// operator's limit applies from the second pass for a guest that dirtied more.
pub(super) const FEWEST_EARLY_DOWNTIME_MS: u64 = 50;
const FEWEST_OPERATORS_FROM_PASS: u64 = 2;

/// An outgoing migration in its early passes: their downtime limit, the operator's it gives
/// way to, and at which pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyPasses {
    /// The early passes' downtime limit, milliseconds.
    pub early_downtime_ms: u64,
    /// The operator's downtime limit, milliseconds.
    pub downtime_limit_ms: u64,
    /// The pass (`dirty-sync-count`) from which it applies.
    pub from_pass: u64,
}

impl EarlyPasses {
    /// The early passes of a migration under the operator's `limit_ms`, with the `fewest`
    /// passes or not; none when their limit would not be lower than the operator's (nothing to
    /// change after them).
    pub fn of(limit_ms: u64, fewest: bool) -> Option<EarlyPasses> {
        let (early, from) = if fewest {
            (FEWEST_EARLY_DOWNTIME_MS, FEWEST_OPERATORS_FROM_PASS)
        } else {
            (EARLY_DOWNTIME_MS, OPERATORS_FROM_PASS)
        };
        (early < limit_ms).then_some(EarlyPasses {
            early_downtime_ms: early,
            downtime_limit_ms: limit_ms,
            from_pass: from,
        })
    }

    /// Whether the early passes are over at QEMU's pass `pass` (its `MIGRATION_PASS` event, or
    /// `dirty-sync-count` of `query-migrate`: 1 in the first pass, 2 in the second, …).
    pub fn over(&self, pass: u64) -> bool {
        pass >= self.from_pass
    }
}
