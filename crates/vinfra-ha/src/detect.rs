//! Failure detection: a host's HA state from its two independent signals, and which of its VMs
//! may run elsewhere now.
//!
//! The signals, as the console holds them:
//! - the connection ([`Link`]): connected since, or lost since (after `heartbeat_timeout`
//!   without any message, or at EOF);
//! - the host's lease on the datastore, as this console has read it ([`LeaseObserver`]), judged
//!   with [`LeaseObserver::verdict`] counting from no earlier than the loss;
//! - an out-of-band fence ([`Fence`]): when a fence command last succeeded, and whether the
//!   host was seen again after it.
//!
//! [`host_ha`] gives the state, [`restartable`] the VMs that may be restarted elsewhere, in this
//! order of precedence:
//!
//! | signals | state | may restart |
//! |---|---|---|
//! | a fence succeeded, host not seen since | `fenced` | all |
//! | connected | `connected` | none (its agent answers for its VMs) |
//! | lost, lease expired or released | `failed` | all |
//! | lost, lease live, `stopped` lists every VM the console has there | `fenced` | the listed |
//! | lost, lease live, `stopped` lists some | `isolated` | the listed |
//! | lost, lease live | `isolated` | none |
//! | lost, lease never read or unreadable now | `unprotected` | none |
//!
//! Nothing is `failed` on the connection alone: an agent restarted (upgraded, crashed, killed
//! and back) leaves the guard and its lease running, so the host is `isolated` for a few
//! seconds, never `failed`. A lease this console cannot read is never expired. A console that
//! just started has observed no lease yet: its first reading starts the count, so it waits a
//! full [`HaTimings::expiry`] before it calls any host `failed`, whatever the store says about
//! when the host was lost.

use std::fmt;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::lease::{LeaseObserver, LeaseState, LeaseVerdict};
use crate::timing::HaTimings;

/// The console's connection to a host's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connected (this connection began at `since`).
    Connected {
        /// When the connection began.
        since: Instant,
    },
    /// Lost: no message for the heartbeat timeout, or the connection ended, at `since`. A
    /// console that starts without the host counts it lost from its own start.
    Lost {
        /// When the console lost the host.
        since: Instant,
    },
}

/// An out-of-band fence of a host that succeeded (its command exited 0: the host is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// When the fence command succeeded.
    pub at: Instant,
    /// When the host was first seen again after it (its agent connected, or its lease showed
    /// a new incarnation), if it was: from then on the fence no longer says anything.
    pub seen_again: Option<Instant>,
}

impl Fence {
    /// True while the fence still holds: the host has not been seen since.
    pub fn holds(&self) -> bool {
        self.seen_again.is_none_or(|s| s < self.at)
    }
}

/// What the console knows of one host.
#[derive(Debug, Clone, Copy)]
pub struct HostSignals<'a> {
    /// The connection to its agent.
    pub link: Link,
    /// The readings of its lease.
    pub lease: &'a LeaseObserver,
    /// The last out-of-band fence that succeeded, if any.
    pub fence: Option<Fence>,
    /// The VMs the console has on the host that count (desired running): a `stopped` lease
    /// that lists all of them makes the host `fenced`.
    pub vms: &'a [Uuid],
}

/// A host's HA state (see the module doc for how it follows from the signals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHa {
    /// The console reaches its agent.
    Connected,
    /// The console lost it, but its lease lives on: the host runs (its guard does).
    Isolated {
        /// How long the guard has been without its agent, when the lease says so.
        agent_absent: Option<Duration>,
    },
    /// Lost, and its lease expired or was released: nothing of it runs any more.
    Failed,
    /// An out-of-band fence succeeded, or its guard stopped every VM the console has there.
    Fenced,
    /// Lost, and no lease can be read (a host without guard, a datastore the console cannot
    /// read, or not read yet): never failed over automatically.
    Unprotected,
}

impl HostHa {
    /// The state's name as the API shows it (`connected`, `isolated`, …).
    pub fn name(&self) -> &'static str {
        match self {
            HostHa::Connected => "connected",
            HostHa::Isolated { .. } => "isolated",
            HostHa::Failed => "failed",
            HostHa::Fenced => "fenced",
            HostHa::Unprotected => "unprotected",
        }
    }
}

impl fmt::Display for HostHa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if let HostHa::Isolated {
            agent_absent: Some(d),
        } = self
        {
            write!(f, " (agent absent for {} s)", d.as_secs())?;
        }
        Ok(())
    }
}

/// Which VMs of a host may be restarted elsewhere now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restartable {
    /// None of them.
    Nothing,
    /// All of them: nothing of the host runs.
    All,
    /// Exactly these: the host's guard stopped them and wrote so in its lease.
    Only(Vec<Uuid>),
}

impl Restartable {
    /// Whether `vm` may be restarted elsewhere.
    pub fn allows(&self, vm: &Uuid) -> bool {
        match self {
            Restartable::Nothing => false,
            Restartable::All => true,
            Restartable::Only(vms) => vms.contains(vm),
        }
    }

    /// The VMs of `vms` that may be restarted elsewhere, in their order.
    pub fn select<'a>(&'a self, vms: &'a [Uuid]) -> impl Iterator<Item = Uuid> + 'a {
        vms.iter().copied().filter(move |v| self.allows(v))
    }
}

/// A host's state and the VMs that may be restarted, from one reading of the signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The state.
    pub ha: HostHa,
    /// The VMs that may be restarted elsewhere.
    pub restartable: Restartable,
    /// The lease's verdict it rests on ([`LeaseVerdict::Unknown`] for a connected or fenced
    /// host, whose lease is not asked).
    pub lease: LeaseVerdict,
}

/// The state of a host and what may be restarted, at `now`.
pub fn assess(now: Instant, signals: &HostSignals<'_>, timings: &HaTimings) -> Assessment {
    if signals.fence.is_some_and(|f| f.holds()) {
        return Assessment {
            ha: HostHa::Fenced,
            restartable: Restartable::All,
            lease: LeaseVerdict::Unknown,
        };
    }
    let since = match signals.link {
        Link::Connected { .. } => {
            return Assessment {
                ha: HostHa::Connected,
                restartable: Restartable::Nothing,
                lease: LeaseVerdict::Unknown,
            }
        }
        Link::Lost { since } => since,
    };
    let verdict = signals.lease.verdict(now, since, timings.expiry());
    let (ha, restartable) = match &verdict {
        LeaseVerdict::Unknown => (HostHa::Unprotected, Restartable::Nothing),
        LeaseVerdict::Expired | LeaseVerdict::Released => (HostHa::Failed, Restartable::All),
        LeaseVerdict::Live { state, .. } => {
            let agent_absent = signals
                .lease
                .last()
                .and_then(|l| l.agent_absent_ms)
                .map(Duration::from_millis);
            match state {
                LeaseState::Stopped { vms } => {
                    // Every VM the console has there is stopped; once they run elsewhere
                    // the console has none there, and the host stays fenced.
                    let all = (!signals.vms.is_empty() || !vms.is_empty())
                        && signals.vms.iter().all(|v| vms.contains(v));
                    let ha = if all {
                        HostHa::Fenced
                    } else {
                        HostHa::Isolated { agent_absent }
                    };
                    (ha, Restartable::Only(vms.clone()))
                }
                // A released lease is judged Released above; Live keeps the VMs.
                LeaseState::Live | LeaseState::Released => {
                    (HostHa::Isolated { agent_absent }, Restartable::Nothing)
                }
            }
        }
    };
    Assessment {
        ha,
        restartable,
        lease: verdict,
    }
}

/// The host's HA state at `now` ([`assess`]'s state).
pub fn host_ha(now: Instant, signals: &HostSignals<'_>, timings: &HaTimings) -> HostHa {
    assess(now, signals, timings).ha
}

/// Which VMs of the host may be restarted elsewhere at `now` ([`assess`]'s answer): all of
/// them when it is failed (lease expired or released) or fenced out of band, exactly those its
/// lease lists as `stopped` while it lives, none otherwise.
pub fn restartable(now: Instant, signals: &HostSignals<'_>, timings: &HaTimings) -> Restartable {
    assess(now, signals, timings).restartable
}

/// Whether an isolated host is due for an out-of-band fence at `now` (the cluster's
/// `fence_isolated` setting is on and the host has HA VMs: the caller checks those): it has
/// been lost for at least `after` and is still isolated.
pub fn fence_due(now: Instant, ha: &HostHa, link: Link, after: Duration) -> bool {
    match (ha, link) {
        (HostHa::Isolated { .. }, Link::Lost { since }) => {
            now.saturating_duration_since(since) >= after
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Lease, LEASE_VERSION};

    fn lease(incarnation: u64, counter: u64, state: LeaseState) -> Lease {
        Lease {
            version: LEASE_VERSION,
            host: "h1".into(),
            incarnation,
            counter,
            state,
            agent_absent_ms: None,
            written_unix_ms: 0,
        }
    }

    struct World {
        t0: Instant,
        t: HaTimings,
        lease: LeaseObserver,
    }

    impl World {
        fn new() -> World {
            World {
                t0: Instant::now(),
                t: HaTimings::default(),
                lease: LeaseObserver::new(),
            }
        }
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }
        fn read(&mut self, ms: u64, l: Option<Lease>) {
            let now = self.at(ms);
            self.lease.observe(now, l);
        }
        fn assess(&self, ms: u64, link: Link, fence: Option<Fence>, vms: &[Uuid]) -> Assessment {
            let signals = HostSignals {
                link,
                lease: &self.lease,
                fence,
                vms,
            };
            assess(self.at(ms), &signals, &self.t)
        }
        fn lost(&self, ms: u64) -> Link {
            Link::Lost { since: self.at(ms) }
        }
    }

    #[test]
    fn a_connected_host_is_connected_and_nothing_restarts() {
        let mut w = World::new();
        w.read(0, Some(lease(1, 1, LeaseState::Live)));
        let a = w.assess(100_000, Link::Connected { since: w.at(0) }, None, &[]);
        assert_eq!(a.ha, HostHa::Connected);
        assert_eq!(a.restartable, Restartable::Nothing);
    }

    #[test]
    fn an_agent_restart_is_isolated_never_failed() {
        let mut w = World::new();
        // The agent is gone from 10 s to 12 s; its guard renews the lease every second.
        for s in 0..=12 {
            w.read(s * 1000, Some(lease(1, s, LeaseState::Live)));
            if s >= 10 {
                let a = w.assess(s * 1000, w.lost(10_000), None, &[]);
                assert_eq!(a.ha, HostHa::Isolated { agent_absent: None }, "at {s} s");
                assert_eq!(a.restartable, Restartable::Nothing);
            }
        }
        // Back: connected.
        let a = w.assess(
            12_500,
            Link::Connected {
                since: w.at(12_400),
            },
            None,
            &[],
        );
        assert_eq!(a.ha, HostHa::Connected);
    }

    #[test]
    fn isolation_shows_how_long_the_agent_is_absent() {
        let mut w = World::new();
        let mut l = lease(1, 1, LeaseState::Live);
        l.agent_absent_ms = Some(4_500);
        w.read(0, Some(l));
        let a = w.assess(1000, w.lost(0), None, &[]);
        assert_eq!(
            a.ha,
            HostHa::Isolated {
                agent_absent: Some(Duration::from_millis(4_500))
            }
        );
        assert_eq!(a.ha.to_string(), "isolated (agent absent for 4 s)");
    }

    #[test]
    fn a_lease_unchanged_for_the_expiry_after_the_loss_is_failed() {
        let mut w = World::new();
        w.read(0, Some(lease(1, 7, LeaseState::Live)));
        // Lost at 2 s; the lease never changes again. Expiry is 6 s from the loss.
        for ms in (2_000..8_000).step_by(500) {
            w.read(ms, Some(lease(1, 7, LeaseState::Live)));
            let a = w.assess(ms, w.lost(2_000), None, &[]);
            assert!(matches!(a.ha, HostHa::Isolated { .. }), "at {ms} ms");
        }
        w.read(8_000, Some(lease(1, 7, LeaseState::Live)));
        let a = w.assess(8_000, w.lost(2_000), None, &[]);
        assert_eq!(a.ha, HostHa::Failed);
        assert_eq!(a.restartable, Restartable::All);
        assert_eq!(a.lease, LeaseVerdict::Expired);
    }

    #[test]
    fn a_released_lease_is_failed_at_once() {
        let mut w = World::new();
        w.read(0, Some(lease(1, 7, LeaseState::Released)));
        let a = w.assess(0, w.lost(0), None, &[]);
        assert_eq!(a.ha, HostHa::Failed);
        assert_eq!(a.restartable, Restartable::All);
    }

    #[test]
    fn an_unreadable_lease_is_never_failed() {
        let mut w = World::new();
        w.read(0, Some(lease(1, 7, LeaseState::Live)));
        for ms in (1_000..120_000).step_by(1_000) {
            w.read(ms, None);
            let a = w.assess(ms, w.lost(0), None, &[]);
            assert_eq!(a.ha, HostHa::Unprotected, "at {ms} ms");
            assert_eq!(a.restartable, Restartable::Nothing);
        }
        // Never read at all: unprotected too.
        let w = World::new();
        assert_eq!(
            w.assess(60_000, w.lost(0), None, &[]).ha,
            HostHa::Unprotected
        );
    }

    #[test]
    fn a_console_that_just_started_waits_a_full_expiry() {
        let mut w = World::new();
        // The store says the host was lost long ago (before this console started at 100 s);
        // the lease has not changed since either. The first reading starts the count.
        let link = w.lost(0);
        assert_eq!(w.assess(100_000, link, None, &[]).ha, HostHa::Unprotected);
        w.read(100_000, Some(lease(1, 7, LeaseState::Live)));
        for ms in (100_000..106_000).step_by(250) {
            w.read(ms, Some(lease(1, 7, LeaseState::Live)));
            assert!(
                matches!(w.assess(ms, link, None, &[]).ha, HostHa::Isolated { .. }),
                "at {ms} ms"
            );
        }
        w.read(106_000, Some(lease(1, 7, LeaseState::Live)));
        assert_eq!(w.assess(106_000, link, None, &[]).ha, HostHa::Failed);
    }

    #[test]
    fn stopped_vms_restart_at_once_and_only_they() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut w = World::new();
        w.read(0, Some(lease(1, 1, LeaseState::Live)));
        w.read(
            1_000,
            Some(lease(1, 2, LeaseState::Stopped { vms: vec![a, b] })),
        );
        let x = w.assess(1_000, w.lost(0), None, &[a, b, c]);
        assert_eq!(x.ha, HostHa::Isolated { agent_absent: None });
        assert_eq!(x.restartable, Restartable::Only(vec![a, b]));
        assert_eq!(
            x.restartable.select(&[a, b, c]).collect::<Vec<_>>(),
            vec![a, b]
        );
        // Every VM the console has there is stopped: fenced.
        let x = w.assess(1_000, w.lost(0), None, &[b, a]);
        assert_eq!(x.ha, HostHa::Fenced);
        assert!(x.restartable.allows(&a) && !x.restartable.allows(&c));
        // Restarted elsewhere, the console has none there: still fenced, not isolated again.
        assert_eq!(w.assess(1_000, w.lost(0), None, &[]).ha, HostHa::Fenced);
        // Once the stopped lease expires, everything may restart.
        w.read(
            7_000,
            Some(lease(1, 2, LeaseState::Stopped { vms: vec![a, b] })),
        );
        let x = w.assess(7_000, w.lost(0), None, &[a, b, c]);
        assert_eq!(x.ha, HostHa::Failed);
        assert!(x.restartable.allows(&c));
    }

    #[test]
    fn a_guard_that_stopped_nothing_where_the_console_has_nothing_leaves_the_host_isolated() {
        let mut w = World::new();
        w.read(0, Some(lease(1, 1, LeaseState::Live)));
        w.read(
            1_000,
            Some(lease(1, 2, LeaseState::Stopped { vms: vec![] })),
        );
        assert_eq!(
            w.assess(1_000, w.lost(0), None, &[]).ha,
            HostHa::Isolated { agent_absent: None }
        );
    }

    #[test]
    fn a_fence_holds_until_the_host_is_seen_again() {
        let mut w = World::new();
        w.read(0, Some(lease(1, 1, LeaseState::Live)));
        let fence = Fence {
            at: w.at(500),
            seen_again: None,
        };
        // Lease live, and even the connection not yet timed out: the fence says it is off.
        let x = w.assess(600, Link::Connected { since: w.at(0) }, Some(fence), &[]);
        assert_eq!(x.ha, HostHa::Fenced);
        assert_eq!(x.restartable, Restartable::All);
        assert_eq!(
            w.assess(600, w.lost(400), Some(fence), &[]).ha,
            HostHa::Fenced
        );
        // Back (a new connection): the fence says nothing more.
        let back = Fence {
            seen_again: Some(w.at(90_000)),
            ..fence
        };
        let x = w.assess(
            90_000,
            Link::Connected {
                since: w.at(90_000),
            },
            Some(back),
            &[],
        );
        assert_eq!(x.ha, HostHa::Connected);
    }

    #[test]
    fn an_isolated_host_is_due_for_a_fence_after_the_delay() {
        let w = World::new();
        let iso = HostHa::Isolated { agent_absent: None };
        let after = Duration::from_secs(30);
        assert!(!fence_due(w.at(29_999), &iso, w.lost(0), after));
        assert!(fence_due(w.at(30_000), &iso, w.lost(0), after));
        assert!(!fence_due(w.at(60_000), &HostHa::Failed, w.lost(0), after));
        assert!(!fence_due(
            w.at(60_000),
            &iso,
            Link::Connected { since: w.at(0) },
            after
        ));
    }
}
