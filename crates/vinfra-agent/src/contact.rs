//! [`ConsoleContact`]: when this host last had a round trip with the console, as the host's
//! other parts read it (the guard's self-fence decision is made from its age).
//!
//! The session's heartbeat task notes the send time of each heartbeat ([`Heartbeats::sent`]);
//! the session's reader takes the console's acknowledgement ([`Heartbeats::acknowledged`]) and
//! moves the contact to that send time. Contact is a round trip: a heartbeat that never reached
//! the console, or an acknowledgement that never came back, both leave it where it was.
//!
//! It also says whether a session is up and how many reports the session's writer sent, for
//! the agent's `/metrics`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The send time of the last heartbeat the console acknowledged. Cheap to clone (one shared
/// value) and to read (one atomic load), from any thread; it only moves forward.
#[derive(Debug, Clone)]
pub struct ConsoleContact {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The clock's origin for `last`.
    base: Instant,
    /// Nanoseconds from `base` to the send time of the last acknowledged heartbeat, plus one;
    /// zero: never.
    last: AtomicU64,
    /// A session with the console is up (from its `Hello` until it ends).
    session: AtomicBool,
    /// Reports written to the console's connection (the `Hello`'s included), since the agent
    /// started.
    reports: AtomicU64,
}

impl Default for ConsoleContact {
    fn default() -> Self {
        ConsoleContact::new()
    }
}

impl ConsoleContact {
    /// No contact yet.
    pub fn new() -> ConsoleContact {
        ConsoleContact {
            inner: Arc::new(Inner {
                base: Instant::now(),
                last: AtomicU64::new(0),
                session: AtomicBool::new(false),
                reports: AtomicU64::new(0),
            }),
        }
    }

    /// The send time of the last heartbeat the console acknowledged; `None` before the first
    /// acknowledgement.
    pub fn last(&self) -> Option<Instant> {
        match self.inner.last.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.inner.base + Duration::from_nanos(n - 1)),
        }
    }

    /// How long ago the last acknowledged heartbeat was sent: the age of the host's contact
    /// with the console (`None`: never had one).
    pub fn age(&self) -> Option<Duration> {
        self.last().map(|t| t.elapsed())
    }

    /// Contact at `sent` (the send time of an acknowledged heartbeat); an older time than the
    /// one held changes nothing.
    pub fn contact_at(&self, sent: Instant) {
        let n = sent
            .checked_duration_since(self.inner.base)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1))
            + 1;
        self.inner.last.fetch_max(n, Ordering::AcqRel);
    }

    /// Notes that a session with the console is up (`true`) or has ended.
    pub fn set_session(&self, up: bool) {
        self.inner.session.store(up, Ordering::Release);
    }

    /// A session with the console is up.
    pub fn session_up(&self) -> bool {
        self.inner.session.load(Ordering::Acquire)
    }

    /// Notes a report written to the console's connection.
    pub fn report_sent(&self) {
        self.inner.reports.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports written to the console's connection since the agent started.
    pub fn reports_sent(&self) -> u64 {
        self.inner.reports.load(Ordering::Relaxed)
    }
}

/// Heartbeats one session sent and the console has not acknowledged yet, by `seq`.
#[derive(Debug)]
pub(crate) struct Heartbeats {
    contact: ConsoleContact,
    in_flight: Mutex<VecDeque<(u64, Instant)>>,
}

/// Unacknowledged heartbeats remembered, at most (older ones are forgotten: their
/// acknowledgement, should it still come, moves the contact no more).
const IN_FLIGHT: usize = 64;

impl Heartbeats {
    /// None in flight; acknowledgements move `contact`.
    pub(crate) fn new(contact: ConsoleContact) -> Heartbeats {
        Heartbeats {
            contact,
            in_flight: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Instant)>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Heartbeat `seq` goes out now.
    pub(crate) fn sent(&self, seq: u64, at: Instant) {
        let mut q = self.lock();
        if q.len() == IN_FLIGHT {
            q.pop_front();
        }
        q.push_back((seq, at));
    }

    /// The console acknowledged heartbeat `seq`: contact at its send time. Heartbeats sent
    /// before it are no longer waited for.
    pub(crate) fn acknowledged(&self, seq: u64) {
        let mut q = self.lock();
        while let Some(&(s, at)) = q.front() {
            if s > seq {
                break;
            }
            q.pop_front();
            if s == seq {
                self.contact.contact_at(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_moves_on_acknowledged_heartbeats_only_and_never_back() {
        let contact = ConsoleContact::new();
        assert_eq!(contact.last(), None);
        assert_eq!(contact.age(), None);
        let beats = Heartbeats::new(contact.clone());
        let t0 = Instant::now();
        let (t1, t2, t3) = (
            t0 + Duration::from_millis(1000),
            t0 + Duration::from_millis(2000),
            t0 + Duration::from_millis(3000),
        );
        beats.sent(1, t1);
        beats.sent(2, t2);
        beats.sent(3, t3);
        // An acknowledgement of a heartbeat never sent moves nothing.
        beats.acknowledged(0);
        assert_eq!(contact.last(), None);
        beats.acknowledged(2);
        assert_eq!(contact.last(), Some(t2));
        // Heartbeat 1 is no longer waited for: its late acknowledgement changes nothing.
        beats.acknowledged(1);
        assert_eq!(contact.last(), Some(t2));
        beats.acknowledged(3);
        assert_eq!(contact.last(), Some(t3));
        // Never backwards, whoever writes.
        contact.contact_at(t1);
        assert_eq!(contact.last(), Some(t3));
    }

    #[test]
    fn unacknowledged_heartbeats_are_bounded() {
        let contact = ConsoleContact::new();
        let beats = Heartbeats::new(contact.clone());
        let t = Instant::now();
        for seq in 1..=(IN_FLIGHT as u64 + 10) {
            beats.sent(seq, t + Duration::from_millis(seq));
        }
        assert_eq!(beats.lock().len(), IN_FLIGHT);
        // The oldest were forgotten.
        beats.acknowledged(5);
        assert_eq!(contact.last(), None);
        beats.acknowledged(IN_FLIGHT as u64 + 10);
        assert_eq!(
            contact.last(),
            Some(t + Duration::from_millis(IN_FLIGHT as u64 + 10))
        );
        assert!(beats.lock().is_empty());
    }
}
