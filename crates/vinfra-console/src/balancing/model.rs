//! The model a balancing pass works on: the cluster as [`crate::fit::balancing_model`] sees it
//! (under the stored rules, with each host's capabilities and each VM's needs beside it), and
//! the recent moves (for hysteresis), and the traffic matrix: bytes per second between two
//! running VMs over the last `flows.traffic_minutes` minutes of the console's flows.

use std::collections::BTreeMap;

use vinfra_placement::{ClusterModel, FitTable, RecentMove, TrafficFlow};
use vinfra_types::error::chain;
use vinfra_types::{MigrationPhase, MigrationProgress};

use crate::fit;
use crate::state::records::{self as keys, now_s};
use crate::state::Console;

/// The model, host fit and recent moves of a pass. Fails with why, in words (kept as the
/// pass's error).
pub fn for_pass(console: &Console) -> Result<(ClusterModel, FitTable, Vec<RecentMove>), String> {
    let (mut model, fit) = fit::balancing_model(console).map_err(|e| chain(&e))?;
    let running: Vec<&str> = model.vms.iter().map(|v| v.name.as_str()).collect();
    let minutes = console.settings().flows.traffic_minutes;
    model.traffic = crate::flows::traffic_matrix(console, minutes, &running)
        .into_iter()
        .map(|(a, b, bytes_per_s)| TrafficFlow { a, b, bytes_per_s })
        .collect();
    Ok((model, fit, recent_moves(console).map_err(|e| chain(&e))?))
}

/// Migrations in flight (just moved) and completed ones with how long ago they started.
fn recent_moves(console: &Console) -> Result<Vec<RecentMove>, crate::error::RecordError> {
    let migrating: BTreeMap<String, (String, String)> = console
        .inflight()
        .migrations()
        .iter()
        .map(|m| (m.vm.clone(), (m.source.clone(), m.destination.clone())))
        .collect();
    let now = now_s();
    let mut recent: Vec<RecentMove> = migrating
        .iter()
        .map(|(vm, (from, to))| RecentMove {
            vm: vm.clone(),
            from: from.clone(),
            to: to.clone(),
            minutes_ago: 0,
        })
        .collect();
    for (vm, m) in keys::range::<MigrationProgress>(console.store().as_ref(), keys::MIGRATIONS)? {
        let m = m.value;
        if m.phase != MigrationPhase::Completed || migrating.contains_key(&vm) {
            continue;
        }
        let minutes = now.saturating_sub(m.started_at) / 60;
        recent.push(RecentMove {
            vm,
            from: m.source,
            to: m.destination,
            minutes_ago: u32::try_from(minutes).unwrap_or(u32::MAX),
        });
    }
    Ok(recent)
}
