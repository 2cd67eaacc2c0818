//! A [`ScrapeSnapshot`] read now, each part within a bound: the VM table (its lock for a copy of
//! its entries), the running QEMUs' `/proc/<pid>/io` and the switch's counters (one
//! `get_counters` request), the last two at once on blocking threads.

use std::collections::HashMap;
use std::time::Duration;

use crate::manager::Manager;
use crate::usage;

use super::render::render;
use super::snapshot::{ScrapeSnapshot, SwitchSample};

/// Longest wait for the switch's counters: past it the scrape shows `vinfra_switch_up 0`.
pub const SWITCH_BOUND: Duration = Duration::from_secs(2);
/// Longest wait for the QEMUs' `/proc` files: past it the scrape has no disk families.
pub const PROC_BOUND: Duration = Duration::from_secs(2);

/// The snapshot of the agent's metrics now.
pub async fn snapshot(m: &Manager) -> ScrapeSnapshot {
    let vms = m.vm_samples().await;
    let pids: Vec<_> = vms
        .iter()
        .filter_map(|v| Some((v.id, v.observed.as_ref()?.pid?)))
        .collect();
    let disk_io = async {
        let read = tokio::task::spawn_blocking(move || {
            pids.into_iter()
                .filter_map(|(id, pid)| Some((id, usage::process_io_bytes(pid)?)))
                .collect::<HashMap<_, _>>()
        });
        match tokio::time::timeout(PROC_BOUND, read).await {
            Ok(Ok(io)) => io,
            _ => HashMap::new(),
        }
    };
    let switch = async {
        let Some(link) = m.switch().cloned() else {
            return SwitchSample::None;
        };
        let read = tokio::task::spawn_blocking(move || link.counters_with_view());
        match tokio::time::timeout(SWITCH_BOUND, read).await {
            Ok(Ok(Ok(both))) => SwitchSample::Up(Box::new(both)),
            _ => SwitchSample::Down,
        }
    };
    let (disk_io, switch) = tokio::join!(disk_io, switch);
    let contact = m.contact();
    ScrapeSnapshot {
        vms,
        disk_io,
        console_connected: contact.session_up(),
        contact_age: contact.age(),
        reports_sent: contact.reports_sent(),
        switch,
    }
}

/// The text of `GET /metrics` now.
pub async fn scrape(m: &Manager) -> String {
    render(&snapshot(m).await)
}
