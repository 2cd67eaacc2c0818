//! The refusals of what hosts reported that have an event already (`hosts::reports`).

use std::collections::HashSet;
use std::sync::Mutex;

use uuid::Uuid;

/// The (host, VM) pairs whose refusal has an event already (one per console run).
#[derive(Debug, Default)]
pub struct ReportRefusals(Mutex<HashSet<(String, Uuid)>>);

impl ReportRefusals {
    /// True the first time `host` and `vm` come.
    pub fn first(&self, host: &str, vm: Uuid) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((host.to_string(), vm))
    }
}
