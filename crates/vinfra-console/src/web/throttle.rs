//! The login's limit: at most [`MAX_FAILURES`] refused logins per client address within
//! [`WINDOW`]; past it, the login form answers 429 with `Retry-After` (the token is not even
//! tried) until the oldest failure leaves the window. At most [`MAX_ADDRESSES`] addresses are
//! kept (those with the oldest last failure go first).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused logins an address may have within [`WINDOW`].
pub const MAX_FAILURES: usize = 10;

/// The window the failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most addresses kept.
pub const MAX_ADDRESSES: usize = 4096;

/// The refused logins of each client address within the window.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// `Some(seconds to wait)` when `addr` has used up its failures at `now`.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = map.get_mut(&addr)?;
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.is_empty() {
            map.remove(&addr);
            return None;
        }
        if times.len() < MAX_FAILURES {
            return None;
        }
        let oldest = *times.front()?;
        let left = WINDOW.saturating_sub(now.saturating_duration_since(oldest));
        Some(left.as_secs().max(1))
    }

    /// Counts a refused login of `addr` at `now`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&addr) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, t| {
                t.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < WINDOW)
            });
            if map.len() >= MAX_ADDRESSES {
                let stalest = map
                    .iter()
                    .min_by_key(|(_, t)| t.back().copied())
                    .map(|(a, _)| *a);
                if let Some(a) = stalest {
                    map.remove(&a);
                }
            }
        }
        let times = map.entry(addr).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }

    /// Addresses kept.
    pub fn addresses(&self) -> usize {
        self.failures.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn ten_failures_a_minute_then_blocked_until_the_oldest_leaves() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.blocked(ip(1), start), None, "failure {i}");
            t.failed(ip(1), start + Duration::from_secs(i as u64));
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(t.blocked(ip(1), later), Some(40));
        // Another address is not affected.
        assert_eq!(t.blocked(ip(2), later), None);
        // Once the first failure is a minute old, one more try.
        assert_eq!(t.blocked(ip(1), start + WINDOW), None);
        assert_eq!(t.blocked(ip(1), start + WINDOW + WINDOW), None);
        assert_eq!(t.addresses(), 0);
    }

    #[test]
    fn the_addresses_kept_are_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            t.failed(ip(n), now);
        }
        assert_eq!(t.addresses(), MAX_ADDRESSES);
    }
}
