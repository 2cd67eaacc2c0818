//! A migration's early passes: the downtime limit they run under ([`early_downtime`]) and when
//! the operator's limit takes over ([`EarlyPasses::over`]). Pure: the manager's migration code
//! applies it.

use serde::{Deserialize, Serialize};

/// The downtime limit of a migration's first two passes, milliseconds, when the operator's is
/// higher.
pub(super) const EARLY_DOWNTIME_MS: u64 = 10;

/// The pass from which the operator's downtime limit applies: the third, or with the fewest
/// passes the second.
const OPERATORS_FROM_PASS: u64 = 3;
const OPERATORS_FROM_PASS_FEWEST: u64 = 2;

/// The downtime limit a migration's early passes run under, milliseconds: the operator's, at
/// most [`EARLY_DOWNTIME_MS`].
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
/// under the early one. With the fewest passes (a QEMU before 9.0 under TCG, which can lose a
/// busy guest's writes at each dirty-bitmap sync) the operator's limit from the second pass.
pub(super) fn early_downtime(limit_ms: u64) -> u64 {
    limit_ms.min(EARLY_DOWNTIME_MS)
}

/// An outgoing migration in its early passes: the operator's downtime limit it gives way to,
/// and at which pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyPasses {
    /// The operator's downtime limit, milliseconds.
    pub downtime_limit_ms: u64,
    /// The pass (`dirty-sync-count`) from which it applies.
    pub from_pass: u64,
}

impl EarlyPasses {
    /// The early passes of a migration under the operator's `limit_ms`, with the `fewest`
    /// passes or not, if their limit is lower than the operator's (else there is nothing to
    /// change after them).
    pub fn of(limit_ms: u64, fewest: bool) -> Option<EarlyPasses> {
        (early_downtime(limit_ms) < limit_ms).then_some(EarlyPasses {
            downtime_limit_ms: limit_ms,
            from_pass: if fewest {
                OPERATORS_FROM_PASS_FEWEST
            } else {
                OPERATORS_FROM_PASS
            },
        })
    }

    /// Whether the early passes are over at QEMU's pass `pass` (its `MIGRATION_PASS` event, or
    /// `dirty-sync-count` of `query-migrate`: 1 in the first pass, 2 in the second, …).
    pub fn over(&self, pass: u64) -> bool {
        pass >= self.from_pass
    }
}
