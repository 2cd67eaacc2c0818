//! A zone's connections carried to another table ([`Conntrack::export`],
//! [`Conntrack::import`]) for a migrating VM: plain [`ConnEntry`] values with the time each
//! has left, put on the destination's clock.

use core::time::Duration;

use super::{Conn, ConnEntry, Conntrack, ConntrackFull};
use crate::wire::ipv4::protocol;

impl Conntrack {
    /// The live connections of `zone`, with their lifetime left at `now`.
    pub fn export(&self, zone: u32, now: Duration) -> Vec<ConnEntry> {
        if self.zone_len(zone) == 0 {
            return Vec::new();
        }
        self.slots
            .iter()
            .flatten()
            .filter(|c| c.zone == zone && c.deadline > now)
            .map(|c| ConnEntry {
                original: c.original,
                reply: c.original.reply(),
                origin: c.origin,
                tcp_state: c.tcp,
                replied: c.replied,
                remaining: c.deadline.saturating_sub(now),
            })
            .collect()
    }

    /// Puts connections exported from another table into `zone`, each living its `remaining`
    /// time from `now` (at most its state's timeout here). Skipped, and not counted: entries
    /// with nothing remaining, a reply tuple that is not the original's reverse, a TCP state
    /// on another protocol or none on TCP, and connections the zone already has (they are
    /// newer). Returns how many were imported; on a full table (or zone), after freeing what
    /// expired, the entries before stay imported and the rest are not.
    pub fn import(
        &mut self,
        zone: u32,
        entries: &[ConnEntry],
        now: Duration,
    ) -> Result<usize, ConntrackFull> {
        let mut imported = 0;
        for entry in entries {
            let original = entry.original;
            let is_tcp = original.protocol == protocol::TCP;
            if entry.remaining.is_zero()
                || entry.reply != original.reply()
                || is_tcp != entry.tcp_state.is_some()
            {
                continue;
            }
            if self.lookup(zone, &original, now).is_some()
                || self.lookup(zone, &original.reply(), now).is_some()
            {
                continue;
            }
            // A closed connection arriving does not push out another closed one.
            self.make_room(zone, now, !super::is_closed(entry.tcp_state))?;
            let timeout =
                self.config
                    .timeouts
                    .of(original.protocol, entry.tcp_state, entry.replied);
            self.insert(Conn {
                zone,
                original,
                origin: entry.origin,
                tcp: entry.tcp_state,
                replied: entry.replied,
                deadline: now.saturating_add(entry.remaining.min(timeout)),
            });
            self.counters.imported += 1;
            imported += 1;
        }
        Ok(imported)
    }
}
