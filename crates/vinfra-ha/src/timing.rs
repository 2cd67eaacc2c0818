//! The timings HA runs on, and the inequalities between them that make a restart elsewhere safe.
//!
//! Clocks: every duration is measured on one machine's monotonic clock (the guard's on the host,
//! the console's for its observations); no two machines' clocks are compared, only their rates
//! (the margin absorbs drift and scheduling delays).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a set of timings is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// A duration is zero, or beyond an hour.
    #[error("{name} must be between 1 ms and 1 h, got {value:?}")]
    OutOfRange {
        /// The field.
        name: &'static str,
        /// Its value.
        value: Duration,
    },
    /// An inequality the safety argument needs does not hold.
    #[error("{0}")]
    Unsafe(&'static str),
}

/// The timings of failure detection and fencing. [`HaTimings::default`] is what a cluster runs
/// with unless its HA settings say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaTimings {
    /// How often the agent sends a heartbeat to the console (and the console acknowledges it).
    pub heartbeat: Duration,
    /// The console counts a host as disconnected after this long without any message from it.
    pub heartbeat_timeout: Duration,
    /// How often a host's guard renews its lease on the datastore.
    pub renew: Duration,
    /// A reader counts a lease as expired once it has seen it unchanged this long…
    pub lease_timeout: Duration,
    /// …plus this margin (clock rates, scheduling, the kill itself).
    pub margin: Duration,
    /// A guard that has renewed neither its lease nor its contact with the console for this long
    /// kills its QEMUs (self-fencing).
    pub self_fence_after: Duration,
    /// How long a guard waits for its agent (restarted, upgraded, killed) before it treats the
    /// host as isolated.
    pub agent_grace: Duration,
}

impl Default for HaTimings {
    fn default() -> Self {
        HaTimings {
            heartbeat: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(3),
            renew: Duration::from_secs(1),
            lease_timeout: Duration::from_secs(5),
            margin: Duration::from_secs(1),
            self_fence_after: Duration::from_secs(3),
            agent_grace: Duration::from_secs(60),
        }
    }
}

impl HaTimings {
    /// How long a reader must see a lease unchanged before it counts it as expired.
    pub fn expiry(&self) -> Duration {
        self.lease_timeout + self.margin
    }

    /// How long after a guard's self-fence deadline a reader can see its lease expired at the
    /// earliest: the time its kill has to finish.
    pub fn kill_slack(&self) -> Duration {
        self.expiry().saturating_sub(self.self_fence_after)
    }

    /// Checks every field and the inequalities of the safety argument:
    /// - a heartbeat and a renewal fit several times in their timeouts (`heartbeat × 2 ≤
    ///   heartbeat_timeout`, `renew × 2 ≤ lease_timeout`), so one late write is not a failure;
    /// - a guard's self-fence deadline comes before any reader can see its lease expired, with at
    ///   least a second (or a renewal period) to kill: `self_fence_after + max(1 s, renew) ≤
    ///   lease_timeout + margin`.
    pub fn validate(&self) -> Result<(), TimingError> {
        let fields = [
            ("heartbeat", self.heartbeat),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("renew", self.renew),
            ("lease_timeout", self.lease_timeout),
            ("margin", self.margin),
            ("self_fence_after", self.self_fence_after),
            ("agent_grace", self.agent_grace),
        ];
        for (name, value) in fields {
            if value < Duration::from_millis(1) || value > Duration::from_secs(3600) {
                return Err(TimingError::OutOfRange { name, value });
            }
        }
        if self.heartbeat * 2 > self.heartbeat_timeout {
            return Err(TimingError::Unsafe(
                "heartbeat_timeout must be at least twice the heartbeat",
            ));
        }
        if self.renew * 2 > self.lease_timeout {
            return Err(TimingError::Unsafe(
                "lease_timeout must be at least twice the renewal period",
            ));
        }
        let slack = self.renew.max(Duration::from_secs(1));
        if self.self_fence_after + slack > self.expiry() {
            return Err(TimingError::Unsafe(
                "self_fence_after plus the time to kill (a renewal period, at least 1 s) must not exceed lease_timeout + margin",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_safe() {
        HaTimings::default().validate().unwrap();
        assert_eq!(HaTimings::default().kill_slack(), Duration::from_secs(3));
    }

    #[test]
    fn a_self_fence_that_could_come_after_expiry_is_refused() {
        let t = HaTimings {
            self_fence_after: Duration::from_secs(6),
            ..HaTimings::default()
        };
        assert!(matches!(t.validate(), Err(TimingError::Unsafe(_))));
        let t = HaTimings {
            renew: Duration::ZERO,
            ..HaTimings::default()
        };
        assert!(matches!(
            t.validate(),
            Err(TimingError::OutOfRange { name: "renew", .. })
        ));
    }
}
