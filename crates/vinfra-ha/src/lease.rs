//! The host lease: one small file per host on the shared datastore
//! (`<datastore>/ha/hosts/<host>.lease`), written only by that host's guard, read by the console.
//!
//! The guard rewrites it every renewal period with the counter one higher (a new file renamed
//! over the old one, so a reader sees the old or the new content, never a mix). A reader never
//! compares the clocks of two machines: it counts a lease as expired only once it has seen the
//! same `(incarnation, counter)` for [`HaTimings::expiry`](crate::HaTimings::expiry) on its own
//! monotonic clock, starting no earlier than the moment it lost the host. A lease it cannot read
//! is never expired: it is unknown.

use std::time::{Duration, Instant};

/// The console's own heartbeat on the shared datastore, relative to its root: the console
/// rewrites it every second (a counter), every guard reads it at each renewal. A guard whose
/// host lost its console contact while this file kept changing is cut off from a console that
/// runs (isolated); one that stopped changing too means the console is down, which isolates no
/// host ([`crate::guard::isolation`]).
pub const CONSOLE_HEARTBEAT: &str = "ha/console.heartbeat";

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the lease file's format.
pub const LEASE_VERSION: u32 = 1;

/// Why a lease file's content is refused.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Not a lease in the JSON this version writes.
    #[error("not a host lease")]
    Format(#[source] serde_json::Error),
    /// Written by a later version of the format.
    #[error("lease format version {0} is newer than this one ({LEASE_VERSION})")]
    Version(u32),
}

/// What the guard says about its host's VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseState {
    /// The guard runs and keeps the host's QEMUs.
    Live,
    /// The guard stopped these VMs (the isolation response) and none of them runs on the host
    /// any more: they may run elsewhere at once.
    Stopped {
        /// The VMs stopped.
        vms: Vec<Uuid>,
    },
    /// The guard ended cleanly with no QEMU left on the host: every VM it held may run
    /// elsewhere.
    Released,
}

/// The content of a host's lease file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Format version ([`LEASE_VERSION`]).
    pub version: u32,
    /// The host's name.
    pub host: String,
    /// Chosen at random by each guard start: two starts never share one.
    pub incarnation: u64,
    /// One higher at every renewal.
    pub counter: u64,
    /// What the guard says about the host's VMs.
    #[serde(flatten)]
    pub state: LeaseState,
    /// How long the guard has been without its agent, when it is (for display).
    #[serde(default)]
    pub agent_absent_ms: Option<u64>,
    /// The guard's wall clock at the write, milliseconds since the Unix epoch. For display only:
    /// no decision reads it.
    pub written_unix_ms: u64,
}

impl Lease {
    /// The file's bytes (one JSON line).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses a lease file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Lease, LeaseError> {
        let lease: Lease = serde_json::from_slice(bytes).map_err(LeaseError::Format)?;
        if lease.version > LEASE_VERSION {
            return Err(LeaseError::Version(lease.version));
        }
        Ok(lease)
    }

    /// What identifies one write: a change means the guard renewed.
    pub fn stamp(&self) -> (u64, u64) {
        (self.incarnation, self.counter)
    }
}

/// What a reader may conclude about a lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseVerdict {
    /// Never read, or not readable now: nothing may be concluded.
    Unknown,
    /// Renewed within the expiry, as far as this reader has seen.
    Live {
        /// How long this reader has seen the current content (zero when it just changed).
        unchanged_for: Duration,
        /// What the guard says about the host's VMs.
        state: LeaseState,
    },
    /// Seen unchanged for the expiry: the guard has killed its QEMUs or is gone with them.
    Expired,
    /// The guard ended cleanly with no QEMU left.
    Released,
}

/// One reader's observations of one host's lease.
#[derive(Debug, Clone, Default)]
pub struct LeaseObserver {
    last: Option<(Lease, Instant)>,
    readable: bool,
}

impl LeaseObserver {
    /// An observer that has seen nothing.
    pub fn new() -> Self {
        LeaseObserver::default()
    }

    /// Records a read at `now`: the lease, or `None` when it could not be read (missing file,
    /// I/O error, bad content).
    pub fn observe(&mut self, now: Instant, read: Option<Lease>) {
        match read {
            None => self.readable = false,
            Some(lease) => {
                self.readable = true;
                let same = self
                    .last
                    .as_ref()
                    .is_some_and(|(l, _)| l.stamp() == lease.stamp());
                if same {
                    if let Some((l, _)) = &mut self.last {
                        *l = lease;
                    }
                } else {
                    self.last = Some((lease, now));
                }
            }
        }
    }

    /// The last lease read, if any.
    pub fn last(&self) -> Option<&Lease> {
        self.last.as_ref().map(|(l, _)| l)
    }

    /// What may be concluded at `now`, counting the time unchanged from no earlier than `since`
    /// (when the reader lost the host: a value seen unchanged before that proves nothing about
    /// the time after) with `expiry` ([`HaTimings::expiry`](crate::HaTimings::expiry)).
    ///
    /// A lease unreadable at the last read is [`LeaseVerdict::Unknown`] even when it had been
    /// unchanged long enough: the next readable read decides.
    pub fn verdict(&self, now: Instant, since: Instant, expiry: Duration) -> LeaseVerdict {
        let Some((lease, first_seen)) = &self.last else {
            return LeaseVerdict::Unknown;
        };
        if !self.readable {
            return LeaseVerdict::Unknown;
        }
        if lease.state == LeaseState::Released {
            return LeaseVerdict::Released;
        }
        let from = (*first_seen).max(since);
        let unchanged_for = now.saturating_duration_since(from);
        if unchanged_for >= expiry {
            LeaseVerdict::Expired
        } else {
            LeaseVerdict::Live {
                unchanged_for,
                state: lease.state.clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(incarnation: u64, counter: u64) -> Lease {
        Lease {
            version: LEASE_VERSION,
            host: "h1".into(),
            incarnation,
            counter,
            state: LeaseState::Live,
            agent_absent_ms: None,
            written_unix_ms: 0,
        }
    }

    const EXPIRY: Duration = Duration::from_secs(6);

    #[test]
    fn the_file_round_trips() {
        let mut l = lease(7, 3);
        l.state = LeaseState::Stopped {
            vms: vec![Uuid::from_u128(1)],
        };
        assert_eq!(Lease::parse(&l.to_bytes()).unwrap(), l);
        assert!(matches!(Lease::parse(b"{}"), Err(LeaseError::Format(_))));
        let mut newer = lease(1, 1);
        newer.version = LEASE_VERSION + 1;
        assert!(matches!(
            Lease::parse(&newer.to_bytes()),
            Err(LeaseError::Version(_))
        ));
    }

    #[test]
    fn a_lease_expires_only_when_seen_unchanged_since_the_host_was_lost() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut o = LeaseObserver::new();
        assert_eq!(o.verdict(t0, t0, EXPIRY), LeaseVerdict::Unknown);
        o.observe(t0, Some(lease(1, 1)));
        // Unchanged for 10 s, but the host was lost at 5 s: 5 s count.
        o.observe(s(10), Some(lease(1, 1)));
        assert!(matches!(
            o.verdict(s(10), s(5), EXPIRY),
            LeaseVerdict::Live { unchanged_for, .. } if unchanged_for == Duration::from_secs(5)
        ));
        assert_eq!(o.verdict(s(11), s(5), EXPIRY), LeaseVerdict::Expired);
        // A renewal starts the count again.
        o.observe(s(11), Some(lease(1, 2)));
        assert!(matches!(
            o.verdict(s(12), s(5), EXPIRY),
            LeaseVerdict::Live { .. }
        ));
        // A new incarnation (the guard restarted) is a change too.
        o.observe(s(20), Some(lease(2, 2)));
        assert!(matches!(
            o.verdict(s(25), s(5), EXPIRY),
            LeaseVerdict::Live { .. }
        ));
        assert_eq!(o.verdict(s(26), s(5), EXPIRY), LeaseVerdict::Expired);
    }

    #[test]
    fn an_unreadable_lease_is_never_expired() {
        let t0 = Instant::now();
        let mut o = LeaseObserver::new();
        o.observe(t0, Some(lease(1, 1)));
        o.observe(t0 + Duration::from_secs(30), None);
        assert_eq!(
            o.verdict(t0 + Duration::from_secs(30), t0, EXPIRY),
            LeaseVerdict::Unknown
        );
        o.observe(t0 + Duration::from_secs(31), Some(lease(1, 1)));
        assert_eq!(
            o.verdict(t0 + Duration::from_secs(31), t0, EXPIRY),
            LeaseVerdict::Expired
        );
    }

    #[test]
    fn a_released_lease_frees_the_host_at_once() {
        let t0 = Instant::now();
        let mut o = LeaseObserver::new();
        let mut l = lease(1, 9);
        l.state = LeaseState::Released;
        o.observe(t0, Some(l));
        assert_eq!(o.verdict(t0, t0, EXPIRY), LeaseVerdict::Released);
    }
}
