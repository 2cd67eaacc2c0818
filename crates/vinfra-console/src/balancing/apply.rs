//! Carrying out a plan: its moves started through the normal live-migration path within the
//! migration limits (automatic mode), or one recommendation at a time (manual mode); each
//! move and its end recorded as `drs` events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use vinfra_placement::Plan;
use vinfra_types::balancing::BalancingSettings;
use vinfra_types::error::Chain;
use vinfra_types::{MigrationPhase, MigrationProgress};

use crate::error::{Error, Object};
use crate::migration;
use crate::state::records as keys;
use crate::state::Console;

/// How often a started move is checked for its end (to record the outcome).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Starts the plan's moves within the limits, counting migrations already running; returns how
/// many started.
pub async fn apply_plan(console: &Arc<Console>, plan: &Plan, settings: &BalancingSettings) -> u32 {
    let mut per_host: HashMap<String, u32> = HashMap::new();
    let mut total: u32 = 0;
    for m in console.inflight().migrations() {
        *per_host.entry(m.source.clone()).or_default() += 1;
        *per_host.entry(m.destination.clone()).or_default() += 1;
        total += 1;
    }
    let mut started = 0;
    for m in &plan.moves {
        if total >= settings.max_moves_total {
            break;
        }
        let busy = |h: &str| per_host.get(h).copied().unwrap_or(0) >= settings.max_moves_per_host;
        if busy(&m.from) || busy(&m.to) || console.inflight().migrating(&m.vm) {
            continue;
        }
        let reason = m.reason.to_string();
        match start_move(console, &m.vm, &m.from, &m.to, &reason).await {
            Ok(_) => {
                *per_host.entry(m.from.clone()).or_default() += 1;
                *per_host.entry(m.to.clone()).or_default() += 1;
                total += 1;
                started += 1;
            }
            Err(e) => console.event(
                "drs",
                &m.vm,
                format!(
                    "could not move {} from {} to {}: {}",
                    m.vm,
                    m.from,
                    m.to,
                    Chain(&e)
                ),
            ),
        }
    }
    started
}

/// Starts one move through the normal migration path (as a planned move: host fit checked, the
/// must-rules kept by the plan as a whole), records it, and records its outcome when it ends.
async fn start_move(
    console: &Arc<Console>,
    vm: &str,
    from: &str,
    to: &str,
    reason: &str,
) -> Result<MigrationProgress, Error> {
    let rec = console.vm(vm)?.value;
    if rec.host != from {
        return Err(Error::MovedMeanwhile {
            vm: vm.to_string(),
            host: rec.host,
            expected: from.to_string(),
        });
    }
    let progress = migration::start_planned(console, vm, to).await?;
    console.metrics().balancer_move_started();
    console.event(
        "drs",
        vm,
        format!("moving {vm} from {from} to {to}: {reason}"),
    );
    let console = console.clone();
    let (vm, from, to, reason) = (
        vm.to_string(),
        from.to_string(),
        to.to_string(),
        reason.to_string(),
    );
    tokio::spawn(crate::state::events::inherit(async move {
        while console.inflight().migrating(&vm) {
            tokio::time::sleep(FOLLOW_INTERVAL).await;
        }
        let end =
            keys::get::<MigrationProgress>(console.store().as_ref(), &keys::migration_key(&vm))
                .ok()
                .flatten()
                .map(|v| v.value);
        let message = match end {
            Some(p) if p.phase == MigrationPhase::Completed && p.destination == to => {
                format!("moved {vm} from {from} to {to}: {reason}")
            }
            Some(p) => format!(
                "move of {vm} from {from} to {to} ended {}: {}",
                serde_json::to_value(p.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                p.error.unwrap_or_else(|| "no error given".into())
            ),
            None => format!("move of {vm} from {from} to {to} left no migration record"),
        };
        console.event("drs", &vm, message);
    }));
    Ok(progress)
}

/// Applies one recommendation (`POST /api/v1/drs/recommendations/{id}/apply`).
pub async fn apply_recommendation(
    console: &Arc<Console>,
    id: u64,
) -> Result<MigrationProgress, Error> {
    let rec = console
        .inflight()
        .balancer
        .results()
        .recommendations
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(|| Error::not_found(Object::Recommendation, id.to_string()))?;
    let reason = format!("recommendation {id}, {}", rec.reason);
    let progress = start_move(console, &rec.vm, &rec.from, &rec.to, &reason).await?;
    console
        .inflight()
        .balancer
        .results()
        .recommendations
        .retain(|r| r.id != id);
    Ok(progress)
}
