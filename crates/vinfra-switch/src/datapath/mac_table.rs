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
    /// For a static entry, where the control plane put it: [`MacEntry::location`] differs after
    /// a MAC mobility move, until the control plane sets the entry again or reverts the move
    /// ([`super::ConfigCommand::RevertMacMoves`]). `None` for a learned entry.
    pub configured: Option<Location>,
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

    /// Records that `mac` was seen at `location`; `announced` says (when asked) whether the
    /// frame is an announcement of the address by its owner (see `Switch`'s forwarding: a RARP or
    /// a gratuitous ARP).
    ///
    /// Static entries stay static, with one exception, MAC mobility: a static entry that points
    /// at another host (a VTEP) follows an *announcement* from that address arriving from a
    /// *different* VTEP. That is how a VM that has just moved is found at once: its QEMU (RARP)
    /// and its guest (gratuitous ARP) announce it from the destination host the moment it
    /// resumes there, long before the control plane has told every switch; the control plane's
    /// next update then confirms the entry. Any other frame leaves a static entry alone: the
    /// old host's switch may still deliver frames the VM sent there before it paused (queued
    /// in its socket, late under load) after every announcement and the control plane's update,
    /// and such a frame must not take the address back to a host it has left, where nothing
    /// would ever answer again. A static entry for a local port is never moved by a frame from
    /// elsewhere (a remote host cannot take over a local VM's address), nor by a frame from a
    /// local port.
    #[inline]
    pub(crate) fn learn(
        &mut self,
        mac: MacAddr,
        location: Location,
        now: Duration,
        announced: impl FnOnce() -> bool,
    ) -> Learned {
        if let Some(entry) = self.entries.get_mut(&mac) {
            return match entry.last_seen {
                None => match (entry.location, location) {
                    (Location::Vtep(old), Location::Vtep(new)) if old != new && announced() => {
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
                configured: None,
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
                configured: Some(location),
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

    /// Puts every static entry that MAC mobility moved back where the control plane put it;
    /// returns how many moved back.
    pub(crate) fn revert_moves(&mut self) -> usize {
        let mut reverted = 0;
        for entry in self.entries.values_mut() {
            if let Some(configured) = entry.configured.filter(|c| *c != entry.location) {
                entry.location = configured;
                reverted += 1;
            }
        }
        reverted
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
    const M3: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);
    /// The frame is not an announcement.
    const DATA: fn() -> bool = || false;
    /// The frame is an announcement (RARP, gratuitous ARP) from the address.
    const ANNOUNCE: fn() -> bool = || true;
    const AGE: Duration = Duration::from_secs(300);

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn learn_move_and_age() {
        let mut t = MacTable::new(10);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(0), DATA),
            Learned::Updated
        );
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(10), DATA),
            Learned::Known
        );
        assert_eq!(t.lookup(&M1, at(310), AGE), Some(Location::Port(PortId(1))));
        assert_eq!(t.lookup(&M1, at(311), AGE), None);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(2)), at(20), DATA),
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
        t.learn(M1, Location::Port(PortId(1)), at(0), DATA);
        t.set_static(M1, Location::Vtep(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(t.learned(), 0);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(1), DATA),
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
        assert_eq!(
            t.learn(M1, Location::Vtep(h1), at(1), ANNOUNCE),
            Learned::Known
        );
        assert_eq!(
            t.learn(M1, Location::Port(PortId(2)), at(1), ANNOUNCE),
            Learned::Known
        );
        assert_eq!(t.lookup(&M1, at(1), AGE), Some(Location::Vtep(h1)));
        // Another VTEP announces it: the entry moves and stays static (never ages).
        assert_eq!(
            t.learn(M1, Location::Vtep(h2), at(2), ANNOUNCE),
            Learned::Updated
        );
        assert_eq!(t.lookup(&M1, at(100_000), AGE), Some(Location::Vtep(h2)));
        assert_eq!(t.learned(), 0);
        // A local VM's static entry is not taken over from the uplink.
        assert_eq!(
            t.learn(M2, Location::Vtep(h2), at(3), ANNOUNCE),
            Learned::Known
        );
        assert_eq!(t.lookup(&M2, at(3), AGE), Some(Location::Port(PortId(4))));
    }

    #[test]
    fn only_an_announcement_moves_a_static_remote_entry() {
        let (h1, h2) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut t = MacTable::new(10);
        t.set_static(M1, Location::Vtep(h1));
        // Data from another VTEP (here: the VM's announcement has not come yet): no move, and
        // the frame is not even asked about being one when nothing could move.
        assert_eq!(t.learn(M1, Location::Vtep(h2), at(1), DATA), Learned::Known);
        assert_eq!(t.lookup(&M1, at(1), AGE), Some(Location::Vtep(h1)));
        assert_eq!(
            t.learn(M1, Location::Vtep(h1), at(1), || unreachable!()),
            Learned::Known
        );
        // The VM announces itself on h2; the control plane then confirms it there.
        assert_eq!(
            t.learn(M1, Location::Vtep(h2), at(2), ANNOUNCE),
            Learned::Updated
        );
        t.set_static(M1, Location::Vtep(h2));
        // A frame it sent from h1 before it left, delivered late by h1's switch: it stays.
        assert_eq!(t.learn(M1, Location::Vtep(h1), at(3), DATA), Learned::Known);
        assert_eq!(t.lookup(&M1, at(3), AGE), Some(Location::Vtep(h2)));
    }

    #[test]
    fn moves_are_reverted_to_where_the_control_plane_put_them() {
        let (h1, h2, h3) = (
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 3),
        );
        let mut t = MacTable::new(10);
        t.set_static(M1, Location::Vtep(h1));
        t.set_static(M2, Location::Vtep(h2));
        t.learn(M3, Location::Port(PortId(1)), at(0), DATA);
        t.learn(M1, Location::Vtep(h3), at(1), ANNOUNCE);
        assert_eq!(t.lookup(&M1, at(1), AGE), Some(Location::Vtep(h3)));
        assert_eq!(t.revert_moves(), 1);
        assert_eq!(t.lookup(&M1, at(1), AGE), Some(Location::Vtep(h1)));
        assert_eq!(t.lookup(&M2, at(1), AGE), Some(Location::Vtep(h2)));
        assert_eq!(t.lookup(&M3, at(1), AGE), Some(Location::Port(PortId(1))));
        // Set again by the control plane where it moved: nothing to revert.
        t.learn(M1, Location::Vtep(h3), at(2), ANNOUNCE);
        t.set_static(M1, Location::Vtep(h3));
        assert_eq!(t.revert_moves(), 0);
        assert_eq!(t.lookup(&M1, at(2), AGE), Some(Location::Vtep(h3)));
    }

    #[test]
    fn limit_and_remove_location() {
        let mut t = MacTable::new(1);
        assert_eq!(
            t.learn(M1, Location::Port(PortId(1)), at(0), DATA),
            Learned::Updated
        );
        assert_eq!(
            t.learn(M2, Location::Port(PortId(1)), at(0), DATA),
            Learned::Full
        );
        t.set_static(M2, Location::Port(PortId(1)));
        t.remove_location(Location::Port(PortId(1)));
        assert_eq!(t.iter().count(), 0);
        assert_eq!(t.learned(), 0);
        assert_eq!(
            t.learn(M2, Location::Port(PortId(3)), at(0), DATA),
            Learned::Updated
        );
        assert!(t.remove(&M2).is_some());
        assert_eq!(t.learned(), 0);
    }
}
