//! Per-network MAC tables: static entries from the control plane, learned entries with ageing.

use core::net::Ipv4Addr;
use core::time::Duration;

use foldhash::HashMap;

use super::ids::PortId;
use crate::wire::MacAddr;

/// How long a MAC redirect lasts unless ended sooner ([`super::ConfigCommand::RedirectMac`]):
/// a migration's switchover and its completion take well under a second; a redirect whose
/// agent is gone must not outlive a migration that failed.
pub const MAC_REDIRECT_HOLD: Duration = Duration::from_secs(30);

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
    /// For a static entry at a remote host, the VTEP it may move to on an announcement
    /// ([`super::ConfigCommand::ExpectMacMove`]): set while its VM migrates there, cleared once
    /// the entry moved there or when the control plane sets the entry again. `None` for a
    /// learned entry, and for a static one that may not move.
    pub expected_move: Option<Ipv4Addr>,
    /// For a static entry at a local port, the VTEP its frames go to instead until a deadline
    /// ([`super::ConfigCommand::RedirectMac`]): its VM is migrating to that host and has stopped
    /// here. `None` for a learned entry, and for a static one not redirected.
    pub redirect: Option<Redirect>,
}

/// How long after a redirect was set a frame from the address on its port does not end it:
/// frames the VM sent just before it stopped may still wait in its socket, or in QEMU's, when
/// the redirect arrives.
pub const MAC_REDIRECT_GRACE: Duration = Duration::from_secs(1);

/// Where a redirected entry's frames go, and until when ([`MacEntry::redirect`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Redirect {
    /// The VTEP of the host the VM is migrating to.
    pub to: Ipv4Addr,
    /// The switch's clock (the `now` of its frames) when the redirect was set.
    pub since: Duration,
    /// The switch's clock when the redirect lapses by itself.
    pub until: Duration,
}

/// Outcome of [`MacTable::learn_limited`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Learned {
    /// Nothing changed that matters (known at the same place, or static).
    Known,
    /// A new entry, or an address that moved.
    Updated,
    /// The table holds its limit of learned entries.
    Full,
    /// An announcement would have moved a static entry to a VTEP the control plane did not
    /// name (see [`MacTable::learn_limited`]); the entry stayed.
    MoveRefused,
    /// A new learned entry at the location (or a learned one moving there) would pass the
    /// location's limit; nothing changed.
    LocationFull,
}

/// Learned entries at `location`.
fn count_at(counts: &HashMap<Location, usize>, location: Location) -> usize {
    counts.get(&location).copied().unwrap_or(0)
}

#[derive(Debug)]
pub(crate) struct MacTable {
    entries: HashMap<MacAddr, MacEntry>,
    learned: usize,
    /// Learned entries per location (locations with none are not kept).
    learned_at: HashMap<Location, usize>,
    learn_limit: usize,
    /// Entries added or moved by frames ([`Learned::Updated`] from [`MacTable::learn_limited`]):
    /// what the fast path's offers depend on (`fastpath`). Expiry and the control plane's
    /// changes are not counted: the switch bumps the fast path's generation for those itself.
    changes: u64,
}

/// Counts one more learned entry at `location`.
fn count_in(counts: &mut HashMap<Location, usize>, location: Location) {
    *counts.entry(location).or_insert(0) += 1;
}

/// Counts one learned entry fewer at `location`.
fn count_out(counts: &mut HashMap<Location, usize>, location: Location) {
    if let Some(n) = counts.get_mut(&location) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&location);
        }
    }
}

impl MacTable {
    pub(crate) fn new(learn_limit: usize) -> MacTable {
        MacTable {
            entries: HashMap::default(),
            learned: 0,
            learned_at: HashMap::default(),
            learn_limit,
            changes: 0,
        }
    }

    /// Where `mac` lives, ignoring learned entries older than `ageing`; a redirected entry
    /// ([`MacEntry::redirect`]) answers its redirect's VTEP until the redirect lapses.
    #[inline]
    pub(crate) fn lookup(
        &self,
        mac: &MacAddr,
        now: Duration,
        ageing: Duration,
    ) -> Option<Location> {
        let entry = self.entries.get(mac)?;
        match (entry.last_seen, entry.redirect) {
            (Some(seen), _) if now.saturating_sub(seen) > ageing => None,
            (None, Some(r)) if now < r.until => Some(Location::Vtep(r.to)),
            _ => Some(entry.location),
        }
    }

    /// The VTEP `mac`'s frames are redirected to at `now` ([`MacEntry::redirect`]), if any.
    pub(crate) fn redirected(&self, mac: &MacAddr, now: Duration) -> Option<Ipv4Addr> {
        self.entries
            .get(mac)?
            .redirect
            .filter(|r| now < r.until)
            .map(|r| r.to)
    }

    /// Redirects the static entry of `mac`, at a local port, to VTEP `to` until `until`
    /// (`None`: no longer). Returns false, changing nothing, when `mac` has no static entry at
    /// a local port.
    pub(crate) fn redirect(&mut self, mac: &MacAddr, to: Option<Redirect>) -> bool {
        match self.entries.get_mut(mac) {
            Some(
                entry @ MacEntry {
                    last_seen: None,
                    location: Location::Port(_),
                    ..
                },
            ) => {
                entry.redirect = to;
                true
            }
            _ => false,
        }
    }

    /// [`MacTable::learn_limited`] without a limit.
    #[cfg(test)]
    pub(crate) fn learn(
        &mut self,
        mac: MacAddr,
        location: Location,
        now: Duration,
        announced: impl FnOnce() -> bool,
    ) -> Learned {
        self.learn_limited(mac, location, now, None, announced)
    }

    /// Records that `mac` was seen at `location`; `announced` says (when asked) whether the
    /// frame is an announcement of the address by its owner (see `Switch`'s forwarding: a RARP or
    /// a gratuitous ARP). A frame from a redirected address ([`MacEntry::redirect`]) on its own
    /// port, [`MAC_REDIRECT_GRACE`] or more after the redirect was set, ends the redirect
    /// ([`Learned::Updated`]): the VM runs here again.
    ///
    /// Static entries stay static, with one exception, MAC mobility: a static entry that points
    /// at another host (a VTEP) follows an *announcement* from that address arriving from the
    /// VTEP the control plane said it may move to ([`MacEntry::expected_move`]), and that
    /// expectation is then used up. That is how a VM that has just moved is found at once: its
    /// QEMU (RARP) and its guest (gratuitous ARP) announce it from the destination host the
    /// moment it resumes there, long before the control plane has told every switch where it
    /// is; the control plane's next update then confirms the entry. An announcement from any
    /// other VTEP, or when no move is expected, moves nothing ([`Learned::MoveRefused`]): a
    /// VM on another host cannot take over an address by announcing it. Any other frame leaves
    /// a static entry alone: the old host's switch may still deliver frames the VM sent there
    /// before it paused (queued in its socket, late under load) after every announcement and
    /// the control plane's update, and such a frame must not take the address back to a host
    /// it has left, where nothing would ever answer again. A static entry for a local port is never moved by a frame from
    /// elsewhere (a remote host cannot take over a local VM's address), nor by a frame from a
    /// local port.
    ///
    /// With a `limit`, at most that many learned entries point at `location`: a source that
    /// would add one more there (a new address, or a learned one moving there) is refused
    /// ([`Learned::LocationFull`]), changing nothing. Static entries do not count.
    #[inline]
    pub(crate) fn learn_limited(
        &mut self,
        mac: MacAddr,
        location: Location,
        now: Duration,
        limit: Option<usize>,
        announced: impl FnOnce() -> bool,
    ) -> Learned {
        let learned = self.learn_entry(mac, location, now, limit, announced);
        if matches!(learned, Learned::Updated) {
            self.changes = self.changes.wrapping_add(1);
        }
        learned
    }

    /// Refreshes the learned entry of `mac` if it is at `location` (as a frame from there
    /// would); never adds or moves one: what the kernel's fast path forwarded may be older
    /// than a move (see [`MacTable::learn_limited`]).
    pub(crate) fn refresh(&mut self, mac: &MacAddr, location: Location, now: Duration) {
        if let Some(entry) = self.entries.get_mut(mac) {
            if entry.location == location && entry.last_seen.is_some() {
                entry.last_seen = Some(now);
            }
        }
    }

    /// Entries added or moved by frames so far ([`Learned::Updated`]; a counter that only
    /// grows, wrapping). [`MacTable::expire`], [`MacTable::set_static`], [`MacTable::remove`]
    /// and the other control-plane changes do not count.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// [`MacTable::learn_limited`] without counting the change.
    #[inline]
    fn learn_entry(
        &mut self,
        mac: MacAddr,
        location: Location,
        now: Duration,
        limit: Option<usize>,
        announced: impl FnOnce() -> bool,
    ) -> Learned {
        let full = |counts: &HashMap<Location, usize>| {
            limit.is_some_and(|l| count_at(counts, location) >= l)
        };
        if let Some(entry) = self.entries.get_mut(&mac) {
            return match entry.last_seen {
                None => match (entry.location, location) {
                    // A redirected VM that sends from its port (after the grace: not a frame
                    // it sent before it stopped) runs here again (its migration failed): its
                    // frames come back to it.
                    (Location::Port(at), Location::Port(from))
                        if at == from
                            && entry.redirect.is_some_and(|r| {
                                now.saturating_sub(r.since) >= MAC_REDIRECT_GRACE
                            }) =>
                    {
                        entry.redirect = None;
                        Learned::Updated
                    }
                    (Location::Vtep(old), Location::Vtep(new)) if old != new && announced() => {
                        if entry.expected_move == Some(new) {
                            entry.location = location;
                            entry.expected_move = None;
                            Learned::Updated
                        } else {
                            Learned::MoveRefused
                        }
                    }
                    _ => Learned::Known,
                },
                Some(_) => {
                    if entry.location == location {
                        entry.last_seen = Some(now);
                        Learned::Known
                    } else if full(&self.learned_at) {
                        Learned::LocationFull
                    } else {
                        entry.last_seen = Some(now);
                        count_out(&mut self.learned_at, entry.location);
                        count_in(&mut self.learned_at, location);
                        entry.location = location;
                        Learned::Updated
                    }
                }
            };
        }
        if full(&self.learned_at) {
            return Learned::LocationFull;
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
                expected_move: None,
                redirect: None,
            },
        );
        self.learned += 1;
        count_in(&mut self.learned_at, location);
        Learned::Updated
    }

    /// Adds or replaces a static entry (withdrawing any expected move or redirect).
    pub(crate) fn set_static(&mut self, mac: MacAddr, location: Location) {
        let old = self.entries.insert(
            mac,
            MacEntry {
                location,
                last_seen: None,
                configured: Some(location),
                expected_move: None,
                redirect: None,
            },
        );
        self.forget_learned(old);
    }

    /// Removes an entry, static or learned.
    pub(crate) fn remove(&mut self, mac: &MacAddr) -> Option<MacEntry> {
        let old = self.entries.remove(mac);
        self.forget_learned(old);
        old
    }

    /// Uncounts a learned entry that was replaced or removed.
    fn forget_learned(&mut self, old: Option<MacEntry>) {
        if let Some(MacEntry {
            last_seen: Some(_),
            location,
            ..
        }) = old
        {
            self.learned = self.learned.saturating_sub(1);
            count_out(&mut self.learned_at, location);
        }
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
        self.learned_at.remove(&location);
    }

    /// Says that the static entry of `mac`, at a remote VTEP, may move to VTEP `to` on an
    /// announcement from there (`None`: may not move). Returns false, changing nothing, when
    /// `mac` has no static entry at a remote VTEP.
    pub(crate) fn expect_move(&mut self, mac: &MacAddr, to: Option<Ipv4Addr>) -> bool {
        match self.entries.get_mut(mac) {
            Some(
                entry @ MacEntry {
                    last_seen: None,
                    location: Location::Vtep(_),
                    ..
                },
            ) => {
                entry.expected_move = to;
                true
            }
            _ => false,
        }
    }

    /// Number of learned entries at `location` (aged ones included until [`MacTable::expire`]).
    #[cfg(test)]
    pub(crate) fn learned_at(&self, location: Location) -> usize {
        count_at(&self.learned_at, location)
    }

    /// Puts every static entry that MAC mobility moved back where the control plane put it;
    /// returns how many moved back. Expected moves not made yet stay expected.
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
        let learned_at = &mut self.learned_at;
        self.entries.retain(|_, e| match e.last_seen {
            Some(seen) if now.saturating_sub(seen) > ageing => {
                count_out(learned_at, e.location);
                false
            }
            _ => true,
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
        assert!(t.expect_move(&M1, Some(h2)));
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
        // The expected VTEP announces it: the entry moves and stays static (never ages); the
        // expectation is used up.
        assert_eq!(
            t.learn(M1, Location::Vtep(h2), at(2), ANNOUNCE),
            Learned::Updated
        );
        assert_eq!(t.lookup(&M1, at(100_000), AGE), Some(Location::Vtep(h2)));
        assert_eq!(t.learned(), 0);
        let entry = t.iter().find(|(m, _)| **m == M1).map(|(_, e)| *e);
        assert_eq!(entry.and_then(|e| e.expected_move), None);
        // So it does not move back on an announcement from h1.
        assert_eq!(
            t.learn(M1, Location::Vtep(h1), at(2), ANNOUNCE),
            Learned::MoveRefused
        );
        assert_eq!(t.lookup(&M1, at(2), AGE), Some(Location::Vtep(h2)));
        // A local VM's static entry is not taken over from the uplink, and expects no move.
        assert!(!t.expect_move(&M2, Some(h2)));
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
        assert!(t.expect_move(&M1, Some(h2)));
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
        assert!(t.expect_move(&M1, Some(h3)));
        t.learn(M1, Location::Vtep(h3), at(1), ANNOUNCE);
        assert_eq!(t.lookup(&M1, at(1), AGE), Some(Location::Vtep(h3)));
        assert_eq!(t.revert_moves(), 1);
        assert_eq!(t.lookup(&M1, at(1), AGE), Some(Location::Vtep(h1)));
        assert_eq!(t.lookup(&M2, at(1), AGE), Some(Location::Vtep(h2)));
        assert_eq!(t.lookup(&M3, at(1), AGE), Some(Location::Port(PortId(1))));
        // Set again by the control plane where it moved: nothing to revert.
        assert!(t.expect_move(&M1, Some(h3)));
        t.learn(M1, Location::Vtep(h3), at(2), ANNOUNCE);
        t.set_static(M1, Location::Vtep(h3));
        assert_eq!(t.revert_moves(), 0);
        assert_eq!(t.lookup(&M1, at(2), AGE), Some(Location::Vtep(h3)));
    }

    #[test]
    fn unexpected_announcements_move_nothing() {
        let (h1, h2, h3) = (
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 3),
        );
        let mut t = MacTable::new(10);
        t.set_static(M1, Location::Vtep(h1));
        // No move expected.
        assert_eq!(
            t.learn(M1, Location::Vtep(h2), at(1), ANNOUNCE),
            Learned::MoveRefused
        );
        // A move to h2 expected: h3's announcement is refused, the expectation kept.
        assert!(t.expect_move(&M1, Some(h2)));
        assert_eq!(
            t.learn(M1, Location::Vtep(h3), at(2), ANNOUNCE),
            Learned::MoveRefused
        );
        assert_eq!(t.lookup(&M1, at(2), AGE), Some(Location::Vtep(h1)));
        // Withdrawn: h2 cannot move it either.
        assert!(t.expect_move(&M1, None));
        assert_eq!(
            t.learn(M1, Location::Vtep(h2), at(3), ANNOUNCE),
            Learned::MoveRefused
        );
        // Expected again, then the entry set again by the control plane: withdrawn too.
        assert!(t.expect_move(&M1, Some(h2)));
        t.set_static(M1, Location::Vtep(h1));
        assert_eq!(
            t.learn(M1, Location::Vtep(h2), at(4), ANNOUNCE),
            Learned::MoveRefused
        );
        assert_eq!(t.lookup(&M1, at(4), AGE), Some(Location::Vtep(h1)));
        // Only static remote entries take an expectation.
        t.learn(M2, Location::Vtep(h1), at(5), DATA);
        assert!(!t.expect_move(&M2, Some(h2)));
        assert!(!t.expect_move(&M3, Some(h2)));
    }

    #[test]
    fn learned_entries_are_counted_per_location() {
        let (p1, p2) = (Location::Port(PortId(1)), Location::Port(PortId(2)));
        let mut t = MacTable::new(10);
        t.learn(M1, p1, at(0), DATA);
        t.learn(M2, p1, at(10), DATA);
        assert_eq!((t.learned_at(p1), t.learned_at(p2)), (2, 0));
        // At its limit, a location takes no new address, nor a learned one moving there, but
        // known ones are refreshed; a static entry there is no new address.
        assert_eq!(
            t.learn_limited(M3, p1, at(11), Some(2), DATA),
            Learned::LocationFull
        );
        t.learn(M3, p2, at(11), DATA);
        assert_eq!(
            t.learn_limited(M3, p1, at(12), Some(2), DATA),
            Learned::LocationFull
        );
        assert_eq!(t.lookup(&M3, at(12), AGE), Some(p2));
        assert_eq!(
            t.learn_limited(M1, p1, at(12), Some(2), DATA),
            Learned::Known
        );
        assert!(t.remove(&M3).is_some());
        // A move between locations.
        t.learn(M1, p2, at(20), DATA);
        assert_eq!((t.learned_at(p1), t.learned_at(p2)), (1, 1));
        // A static entry replaces a learned one, and does not count.
        t.set_static(M2, p1);
        assert_eq!(t.learned_at(p1), 0);
        assert_eq!(
            t.learn_limited(M2, p1, at(20), Some(0), DATA),
            Learned::Known
        );
        // Removal, expiry, removal of a location.
        t.learn(M3, p1, at(30), DATA);
        assert_eq!(t.learned_at(p1), 1);
        assert!(t.remove(&M3).is_some());
        assert_eq!(t.learned_at(p1), 0);
        t.learn(M3, p1, at(30), DATA);
        assert_eq!(t.expire(at(321), AGE), 1); // M1, last seen at 20
        assert_eq!((t.learned_at(p1), t.learned_at(p2)), (1, 0));
        t.remove_location(p1);
        assert_eq!(t.learned_at(p1), 0);
        assert_eq!(t.learned(), 0);
        assert_eq!(t.iter().count(), 0);
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
