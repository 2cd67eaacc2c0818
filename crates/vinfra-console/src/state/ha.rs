//! What the HA controller last concluded about each host, for the API to show.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use super::locks::lock;

/// One host's HA state as the HA controller last assessed it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostHaEntry {
    /// `connected`, `isolated`, `failed`, `fenced` or `unprotected`.
    pub state: &'static str,
    /// The state with its detail (`isolated (agent absent for 12 s)`).
    pub detail: String,
    /// When the host entered this state.
    pub since: Instant,
    /// The host's lease as last read: incarnation and counter.
    pub lease: Option<(u64, u64)>,
}

/// The HA controller's conclusions, by host.
#[derive(Debug, Default)]
pub struct HaBoard {
    hosts: Mutex<BTreeMap<String, HostHaEntry>>,
}

impl HaBoard {
    /// Records `host`'s entry.
    pub fn set(&self, host: &str, entry: HostHaEntry) {
        lock(&self.hosts).insert(host.to_string(), entry);
    }

    /// Forgets hosts not in `keep`.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        lock(&self.hosts).retain(|h, _| keep(h));
    }

    /// `host`'s entry, if the controller assessed it.
    pub fn get(&self, host: &str) -> Option<HostHaEntry> {
        lock(&self.hosts).get(host).cloned()
    }

    /// Every host's entry.
    pub fn all(&self) -> BTreeMap<String, HostHaEntry> {
        lock(&self.hosts).clone()
    }
}
