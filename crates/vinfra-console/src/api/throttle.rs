//! The limit on refused tokens, shared by the REST API's bearer-token check and the web
//! console's login form: at most [`MAX_FAILURES`] refused tokens per client within [`WINDOW`];
//! past it, the client is answered 429 with `Retry-After` (its token is not even tried) until
//! its oldest failure leaves the window. A client is its address, an IPv6 one by its /64
//! ([`client`]: one host usually has a whole /64 to pick addresses from). At most
//! [`MAX_ADDRESSES`] clients are kept (those with the oldest last failure go first).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused tokens a client may have within [`WINDOW`].
pub const MAX_FAILURES: usize = 10;

/// The window the failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most clients kept.
pub const MAX_ADDRESSES: usize = 4096;

/// The client an address belongs to: an IPv4 address itself (also written IPv4-mapped), an
/// IPv6 address its /64.
pub fn client(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The refused tokens of each client within the window.
#[derive(Default)]
pub struct RefusalThrottle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl RefusalThrottle {
    /// `Some(seconds to wait)` when the client of `addr` has used up its failures at `now`.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> Option<u64> {
        let addr = client(addr);
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

    /// Counts a refused token of the client of `addr` at `now`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let addr = client(addr);
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

    /// Clients kept.
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
        let t = RefusalThrottle::default();
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
        let t = RefusalThrottle::default();
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            t.failed(ip(n), now);
        }
        assert_eq!(t.addresses(), MAX_ADDRESSES);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(client(v6("2001:db8:1:2:aa::1")), v6("2001:db8:1:2::"));
        assert_eq!(
            client(v6("::ffff:192.0.2.7")),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client(ip(7)), ip(7));
        let t = RefusalThrottle::default();
        let now = Instant::now();
        for i in 0..MAX_FAILURES {
            t.failed(v6(&format!("2001:db8:1:2::{:x}", i + 1)), now);
        }
        // Every address of the /64 is blocked; the next /64 is not.
        assert!(t.blocked(v6("2001:db8:1:2:ffff::9"), now).is_some());
        assert_eq!(t.blocked(v6("2001:db8:1:3::1"), now), None);
        assert_eq!(t.addresses(), 1);
    }
}
