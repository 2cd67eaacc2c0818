//! A token bucket over bytes: a rate in bits per second and a depth (burst) in bytes, refilled
//! from the time the caller gives.

use core::time::Duration;

/// Nanoseconds in a second.
const NANOS: i128 = 1_000_000_000;
/// Credit units in one byte: credit is counted in bit-nanoseconds, so `d` nanoseconds at `r`
/// bits per second add `d × r` units and a byte costs `8 × 10⁹`.
const UNITS_PER_BYTE: i128 = 8 * NANOS;

/// A token bucket that shapes a byte stream: the credit grows at `bits_per_sec` up to
/// `burst_bytes`, each frame takes its length, and the credit may go below zero by one frame
/// (a frame is never cut; the next waits until the debt is repaid). Integer arithmetic
/// throughout: no rounding drift at any rate up to 400 Gbit/s and beyond (the credit is an
/// `i128` and every step saturates).
///
/// Time is a [`Duration`] from any fixed origin the caller chooses; time that goes back
/// refills nothing (the bucket keeps the latest time it saw).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TokenBucket {
    bits_per_sec: u64,
    burst_bytes: u64,
    /// Credit in bit-nanoseconds; negative is debt. At most `depth()`.
    credit: i128,
    /// When the credit was last refilled; `None` before the first use (the bucket is full).
    last: Option<Duration>,
}

impl TokenBucket {
    /// A full bucket. A rate or burst of 0 is taken as 1.
    pub fn new(bits_per_sec: u64, burst_bytes: u64) -> TokenBucket {
        let mut bucket = TokenBucket {
            bits_per_sec: bits_per_sec.max(1),
            burst_bytes: burst_bytes.max(1),
            credit: 0,
            last: None,
        };
        bucket.credit = bucket.depth();
        bucket
    }

    /// The rate, bits per second.
    pub fn bits_per_sec(&self) -> u64 {
        self.bits_per_sec
    }

    /// The depth, bytes.
    pub fn burst_bytes(&self) -> u64 {
        self.burst_bytes
    }

    fn depth(&self) -> i128 {
        i128::from(self.burst_bytes).saturating_mul(UNITS_PER_BYTE)
    }

    /// Adds the credit earned since the last refill, up to the depth.
    #[inline]
    pub fn refill(&mut self, now: Duration) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if now <= last {
            return;
        }
        // At most ~1.8e28 ns × 2^64: saturates rather than wraps.
        let elapsed = i128::try_from(now.saturating_sub(last).as_nanos()).unwrap_or(i128::MAX);
        let earned = elapsed.saturating_mul(i128::from(self.bits_per_sec));
        self.credit = self.credit.saturating_add(earned).min(self.depth());
        self.last = Some(now);
    }

    /// True while the bucket is in debt (after [`TokenBucket::refill`]): nothing may pass.
    #[inline]
    pub fn in_debt(&self) -> bool {
        self.credit < 0
    }

    /// Refills up to `now`; true when a frame may pass (the bucket is not in debt).
    #[inline]
    pub fn ready(&mut self, now: Duration) -> bool {
        self.refill(now);
        !self.in_debt()
    }

    /// Takes `bytes` (a frame that passes); the credit may go below zero.
    #[inline]
    pub fn take(&mut self, bytes: u64) {
        let cost = i128::from(bytes).saturating_mul(UNITS_PER_BYTE);
        self.credit = self.credit.saturating_sub(cost);
    }

    /// Whole bytes of credit now (0 in debt), as of the last refill.
    pub fn available(&self) -> u64 {
        u64::try_from(self.credit.max(0) / UNITS_PER_BYTE).unwrap_or(u64::MAX)
    }

    /// How long after the last refill the debt is repaid: zero when not in debt.
    pub fn wait(&self) -> Duration {
        if self.credit >= 0 {
            return Duration::ZERO;
        }
        let rate = i128::from(self.bits_per_sec);
        let nanos = (-self.credit).saturating_add(rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When (on the caller's clock) the debt is repaid: the last refill plus [`TokenBucket::wait`].
    pub fn ready_at(&self) -> Duration {
        self.last
            .unwrap_or(Duration::ZERO)
            .saturating_add(self.wait())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Frames of `len` bytes offered as fast as the bucket takes them, checking every `step`,
    /// for `total`: bytes that passed.
    fn run(bucket: &mut TokenBucket, len: u64, step: Duration, total: Duration) -> u64 {
        let mut now = Duration::ZERO;
        let mut passed = 0;
        while now <= total {
            while bucket.ready(now) {
                bucket.take(len);
                passed += len;
            }
            now += step;
        }
        passed
    }

    #[test]
    fn a_full_bucket_passes_its_burst_then_goes_into_debt_by_one_frame() {
        let mut b = TokenBucket::new(8_000_000, 10_000); // 1 MB/s, 10 kB deep
        let mut passed = 0;
        while b.ready(Duration::ZERO) {
            b.take(1_500);
            passed += 1_500;
        }
        // 7 frames: 10,500 bytes, 500 in debt.
        assert_eq!(passed, 10_500);
        assert!(b.in_debt());
        assert_eq!(b.available(), 0);
        // 500 bytes at 1 MB/s: 500 µs.
        assert_eq!(b.wait(), us(500));
        assert_eq!(b.ready_at(), us(500));
        assert!(!b.ready(us(499)));
        assert!(b.ready(us(500)));
        // Never more than the depth, however long it waits.
        b.refill(Duration::from_secs(3600));
        assert_eq!(b.available(), 10_000);
    }

    #[test]
    fn time_going_back_refills_nothing() {
        let mut b = TokenBucket::new(8_000, 1_000); // 1 kB/s
        b.refill(Duration::from_secs(10));
        b.take(1_000);
        assert_eq!(b.available(), 0);
        b.refill(Duration::from_secs(5));
        assert_eq!(b.available(), 0);
        // The clock comes back to where it was: still nothing earned.
        b.refill(Duration::from_secs(10));
        assert_eq!(b.available(), 0);
        b.refill(Duration::from_millis(10_500));
        assert_eq!(b.available(), 500);
    }

    #[test]
    fn the_long_run_rate_is_the_configured_one() {
        for (rate, burst, len) in [
            (10_000_000u64, 12_500u64, 1_514u64),
            (100_000_000, 125_000, 1_514),
            (1_000_000_000, 1_250_000, 65_536),
            (400_000_000_000, 500_000_000, 65_536),
            (8_000, 1_514, 64),
        ] {
            let mut b = TokenBucket::new(rate, burst);
            let secs = 10;
            let passed = run(&mut b, len, us(1_000), Duration::from_secs(secs));
            // Expected: the burst plus rate × time, within one frame.
            let expected = burst + rate / 8 * secs;
            let error = passed.abs_diff(expected) as f64 / expected as f64;
            assert!(
                error < 0.01,
                "{rate} b/s: {passed} bytes, expected {expected}"
            );
            assert!(
                passed.abs_diff(expected) <= len,
                "{rate}: {passed} vs {expected}"
            );
        }
    }

    #[test]
    fn no_overflow_at_extremes() {
        let mut b = TokenBucket::new(u64::MAX, u64::MAX);
        b.refill(Duration::MAX);
        b.take(u64::MAX);
        b.take(u64::MAX);
        assert!(b.ready(Duration::MAX) || b.in_debt());
        let mut b = TokenBucket::new(0, 0);
        assert_eq!((b.bits_per_sec(), b.burst_bytes()), (1, 1));
        assert!(b.ready(Duration::ZERO));
        b.take(u64::MAX);
        assert!(b.in_debt());
        // An enormous debt at 1 bit/s: a wait that saturates rather than wraps.
        assert!(b.wait() > Duration::from_secs(1 << 33));
        b.refill(Duration::MAX);
        assert!(b.in_debt());
    }

    proptest! {
        /// Whatever the frame sizes and the times the caller looks: what passed in [0, t] is at
        /// most burst + rate × t + one frame, and the bucket is never deeper than its burst.
        #[test]
        fn never_more_than_burst_plus_rate(
            rate in 8_000u64..=400_000_000_000,
            burst in 1_514u64..=(1u64 << 30),
            steps in prop::collection::vec((0u64..5_000_000, 64u64..=65_536), 1..200),
        ) {
            let mut b = TokenBucket::new(rate, burst);
            let (mut now, mut passed) = (Duration::ZERO, 0u128);
            let mut largest = 0u64;
            for (dt, len) in steps {
                now += Duration::from_nanos(dt);
                if b.ready(now) {
                    b.take(len);
                    passed += u128::from(len);
                    largest = largest.max(len);
                }
                prop_assert!(b.available() <= burst);
                let bound = u128::from(burst)
                    + u128::from(rate) * now.as_nanos() / 8_000_000_000
                    + u128::from(largest);
                prop_assert!(passed <= bound, "{passed} > {bound}");
            }
        }
    }
}
