//! Per-network MAC tables: static entries from the control plane, learned entries with ageing.

use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::HashMap;

use super::ids::PortId;
use crate::wire::MacAddr;

/// Where a MAC address lives.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Location {
    /// Behind a port of this switch (an access port, or the trunk).
    Port(PortId),
    /// On another host, reached through the VXLAN uplink at this VTEP address.
    Vtep(Ipv4Addr),
}

/// A MAC table entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MacEntry {
    /// Where the address lives.
    pub location: Location,
    /// `None` for a static entry; for a learned one, when a frame from it was last seen.
    pub last_seen: Option<Duration>,
}

/// Outcome of [`MacTable::learn`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Learned {
    /// Nothing changed that matters (known at the same place, or static).
    Known,
    /// A new entry, or an address that moved.
    Updated,
    /// The table holds its limit of learned entries.
    Full,
}

#[derive(Debug)]
pub(crate) struct MacTable {
    entries: HashMap<MacAddr, MacEntry>,
    learned: usize,
    learn_limit: usize,
}

impl MacTable {
    pub(crate) fn new(learn_limit: usize) -> MacTable {
        MacTable {
            entries: HashMap::default(),
            learned: 0,
            learn_limit,
        }
    }

    /// Where `mac` lives, ignoring learned entries older than `ageing`.
    #[inline]
    pub(crate) fn lookup(
        &self,
        mac: &MacAddr,
        now: Duration,
        ageing: Duration,
    ) -> Option<Location> {
        let entry = self.entries.get(mac)?;
        match entry.last_seen {
            Some(seen) if now.saturating_sub(seen) > ageing => None,
            _ => Some(entry.location),
        }
    }

    /// Records that `mac` was seen at `location`.
    ///
    /// Static entries stay static, with one exception, MAC mobility: a static entry that points
    /// at another host (a VTEP) follows a frame from that address arriving from a *different*
    /// VTEP. That is how a VM that has just moved is found at once: its QEMU announces it from
    /// the destination host (RARP) the moment it resumes there, long before the control plane
    /// has told every switch; the control plane's next update then confirms the entry. A static
    /// entry for a local port is never moved by a frame from elsewhere (a remote host cannot
    /// take over a local VM's address), nor by a frame from a local port.
    #[inline]
    pub(crate) fn learn(&mut self, mac: MacAddr, location: Location, now: Duration) -> Learned {
        if let Some(entry) = self.entries.get_mut(&mac) {
            return match entry.last_seen {
                None => match (entry.location, location) {
                    (Location::Vtep(old), Location::Vtep(new)) if old != new => {
                        entry.location = location;
                        Learned::Updated
                    }
                    _ => Learned::Known,
                },
                Some(_) => {
                    entry.last_seen = Some(now);
                    if entry.location == location {
                        Learned::Known
                    } else {
                        entry.location = location;
                        Learned::Updated
                    }
                }
            };
        }
        if self.learned >= self.learn_limit {
            return Learned::Full;
        }
        self.entries.insert(
            mac,
            MacEntry {
                location,
                last_seen: Some(now),
            },
        );
        self.learned += 1;
        Learned::Updated
    }

    /// Adds or replaces a static entry.
    pub(crate) fn set_static(&mut self, mac: MacAddr, location: Location) {
        let old = self.entries.insert(
            mac,
            MacEntry {
                location,
                last_seen: None,
            },
        );
        if matches!(
            old,
            Some(MacEntry {
                last_seen: Some(_),
                ..
            })
        ) {
            self.learned = self.learned.saturating_sub(1);
        }
    }

    /// Removes an entry, static or learned.
    pub(crate) fn remove(&mut self, mac: &MacAddr) -> Option<MacEntry> {
        let old = self.entries.remove(mac);
        if matches!(
            old,
            Some(MacEntry {
                last_seen: Some(_),
                ..
            })
        ) {
            self.learned = self.learned.saturating_sub(1);
        }
        old
    }

    /// Removes every entry (static or learned) that points at `location`.
    pub(crate) fn remove_location(&mut self, location: Location) {
        let mut removed_learned = 0;
        self.entries.retain(|_, e| {
            let keep = e.location != location;
            if !keep && e.last_seen.is_some() {
                removed_learned += 1;
            }
            keep
        });
        self.learned = self.learned.saturating_sub(removed_learned);
    }

    /// Removes learned entries older than `ageing`; returns how many.
    pub(crate) fn expire(&mut self, now: Duration, ageing: Duration) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| match e.last_seen {
            Some(seen) => now.saturating_sub(seen) <= ageing,
            None => true,
        });
        let removed = before - self.entries.len();
        self.learned = self.learned.saturating_sub(removed);
        removed
    }

    /// Changes the most learned entries kept (existing ones stay).
    pub(crate) fn set_learn_limit(&mut self, limit: usize) {
        self.learn_limit = limit;
    }

    /// All entries.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&MacAddr, &MacEntry)> {
        self.entries.iter()
    }

    /// Number of learned entries.
    #[cfg(test)]
    pub(crate) fn learned(&self) -> usize {
        self.learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const M2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const AGE: Duration = Duration::from_secs(300);

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn learn_move_and_age() {
        let mut t = MacTable::new(10);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(0)),
            Learned::Updated
        );
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(10)),
            Learned::Known
        );
        assert_eq!(t.lookup(&M1, at(310), AGE), Some(Location::Port(PortId(1))));
        assert_eq!(t.lookup(&M1, at(311), AGE), None);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(2)), at(20)),
            Learned::Updated
        );
        assert_eq!(t.lookup(&M1, at(20), AGE), Some(Location::Port(PortId(2))));
        assert_eq!(t.expire(at(320), AGE), 0);
        assert_eq!(t.expire(at(321), AGE), 1);
        assert_eq!(t.learned(), 0);
    }

    #[test]
    fn static_entries_win_and_never_age() {
        let mut t = MacTable::new(10);
        t.learn(M1, Location::Port(PortId(1)), at(0));
        t.set_static(M1, Location::Vtep(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(t.learned(), 0);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(1)),
            Learned::Known
        );
        assert_eq!(
            t.lookup(&M1, at(100_000), AGE),
            Some(Location::Vtep(Ipv4Addr::new(192, 0, 2, 2)))
        );
        assert_eq!(t.expire(at(100_000), AGE), 0);
    }

    #[test]
    fn static_remote_entries_follow_a_moved_address() {
        let (h1, h2) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut t = MacTable::new(10);
        t.set_static(M1, Location::Vtep(h1));
        t.set_static(M2, Location::Port(PortId(4)));
        // The same VTEP, or a local port: nothing moves.
        assert_eq!(t.learn(M1, Location::Vtep(h1), at(1)), Learned::Known);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(2)), at(1)),
            Learned::Known
        );
        assert_eq!(t.lookup(&M1, at(1), AGE), Some(Location::Vtep(h1)));
        // Another VTEP announces it: the entry moves and stays static (never ages).
        assert_eq!(t.learn(M1, Location::Vtep(h2), at(2)), Learned::Updated);
        assert_eq!(t.lookup(&M1, at(100_000), AGE), Some(Location::Vtep(h2)));
        assert_eq!(t.learned(), 0);
        // A local VM's static entry is not taken over from the uplink.
        assert_eq!(t.learn(M2, Location::Vtep(h2), at(3)), Learned::Known);
        assert_eq!(t.lookup(&M2, at(3), AGE), Some(Location::Port(PortId(4))));
    }

    #[test]
    fn limit_and_remove_location() {
        let mut t = MacTable::new(1);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(0)),
            Learned::Updated
        );
        assert_eq!(t.learn(M2, Location::Port(PortId(1)), at(0)), Learned::Full);
        t.set_static(M2, Location::Port(PortId(1)));
        t.remove_location(Location::Port(PortId(1)));
        assert_eq!(t.iter().count(), 0);
        assert_eq!(t.learned(), 0);
        assert_eq!(
            t.learn(M2, Location::Port(PortId(3)), at(0)),
            Learned::Updated
        );
        assert!(t.remove(&M2).is_some());
        assert_eq!(t.learned(), 0);
    }
}
