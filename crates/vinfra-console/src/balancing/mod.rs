//! Automatic balancing (docs/design.md, "Balancing"): the balancer task, its passes, and what
//! it keeps for operators (status, recommendations).
//!
//! The task runs a pass every `balancing.interval_s` and on events (a host put in maintenance,
//! a host connected, a rule created or deleted, the settings changed). A pass builds the
//! cluster model and host fit ([`model`]), asks [`vinfra_placement::balance_with_fit`] for a plan
//! and then, by mode:
//! `off` nothing; `manual` keeps the plan's moves as recommendations; `automatic` starts them
//! through the normal live-migration path ([`apply`]) within the migration limits, and records
//! each in the event history (kind `drs`) with its reason.

pub mod apply;
pub mod model;

use std::sync::Arc;
use std::time::Duration;

use vinfra_placement::{balance_with_fit, BalanceConfig, Move, Plan};
use vinfra_types::balancing::{
    BalancingMode, DrsStatus, ExpectedGain, PlanSummary, Recommendation,
};
use vinfra_types::filter::{ListFilter, RecommendationFilter};
use vinfra_types::HostStatus;

use crate::error::Error;
use crate::state::records::now_s;
use crate::state::Console;

fn gain(m: &Move) -> ExpectedGain {
    ExpectedGain {
        imbalance: m.gain.imbalance,
        traffic_bytes_per_s: m.gain.traffic_bytes_per_s,
        should_violations: m.gain.should_violations,
        memory_mib: m.gain.memory_mib,
        score: m.gain.score,
    }
}

fn summary(plan: &Plan, started: u32) -> PlanSummary {
    PlanSummary {
        at: now_s(),
        imbalance_before: plan.imbalance_before,
        imbalance_after: plan.imbalance_after,
        moves: u32::try_from(plan.moves.len()).unwrap_or(u32::MAX),
        started,
        cross_host_traffic_before: plan.cross_host_traffic_before,
        cross_host_traffic_after: plan.cross_host_traffic_after,
        hard_violations_before: plan.violations_before.hard() as u64,
        hard_violations_after: plan.violations_after.hard() as u64,
    }
}

/// The balancer's status.
pub fn status(console: &Console) -> DrsStatus {
    let b = console.settings().balancing;
    let r = console.inflight().balancer.results();
    DrsStatus {
        mode: b.mode,
        level: b.level,
        interval_s: b.interval_s,
        last_run_at: r.last_run_at,
        last_plan: r.last_plan.clone(),
        last_error: r.last_error.clone(),
        recommendations: u32::try_from(r.recommendations.len()).unwrap_or(u32::MAX),
    }
}

/// The recommendations of the latest plan (manual mode), in plan order, or those `filter`
/// lets through.
pub fn recommendations(console: &Console, filter: &RecommendationFilter) -> Vec<Recommendation> {
    let mut all = console
        .inflight()
        .balancer
        .results()
        .recommendations
        .clone();
    all.retain(|r| filter.lets(r));
    all
}

/// Runs a pass now (`POST /api/v1/drs/run`); refused while balancing is off.
pub async fn run_now(console: &Arc<Console>) -> Result<DrsStatus, Error> {
    if console.settings().balancing.mode == BalancingMode::Off {
        return Err(Error::BalancingOff);
    }
    pass(console).await;
    Ok(status(console))
}

/// One balancing pass (see the module doc). Failures are recorded in the status.
pub async fn pass(console: &Arc<Console>) {
    let balancer = &console.inflight().balancer;
    let _pass = balancer.pass_lock().await;
    let settings = console.settings().balancing;
    if settings.mode == BalancingMode::Off {
        balancer.results().recommendations.clear();
        return;
    }
    let planned = model::for_pass(console).and_then(|(model, fit, recent_moves)| {
        let config = BalanceConfig {
            level: settings.level,
            max_moves_per_host: settings.max_moves_per_host,
            max_moves_total: settings.max_moves_total,
            hysteresis_minutes: settings.hysteresis_minutes,
            recent_moves,
            ..BalanceConfig::default()
        };
        balance_with_fit(&model, &fit, &config).map_err(|e| vinfra_types::error::chain(&e))
    });
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("balancing pass failed: {e}");
            console.metrics().balancer_pass(None);
            let mut r = balancer.results();
            r.last_run_at = Some(now_s());
            r.last_error = Some(e);
            return;
        }
    };
    console.metrics().balancer_pass(Some(plan.moves.len()));
    let started = match settings.mode {
        BalancingMode::Automatic => {
            balancer.results().recommendations.clear();
            apply::apply_plan(console, &plan, &settings).await
        }
        _ => {
            let mut r = balancer.results();
            let mut recs = Vec::with_capacity(plan.moves.len());
            for m in &plan.moves {
                r.next_id += 1;
                recs.push(Recommendation {
                    id: r.next_id,
                    vm: m.vm.clone(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    reason: m.reason.to_string(),
                    expected_gain: gain(m),
                    with: m.with.clone(),
                });
            }
            r.recommendations = recs;
            0
        }
    };
    let mut r = balancer.results();
    r.last_run_at = Some(now_s());
    r.last_error = None;
    r.last_plan = Some(summary(&plan, started));
}

/// The balancer task: a pass every `balancing.interval_s`, and one soon after an event (a host
/// connected, see `hosts`; or a wake-up of the balancer state).
pub async fn run(console: Arc<Console>, mut hosts: tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut next = tokio::time::Instant::now()
        + Duration::from_secs(console.settings().balancing.interval_s.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = console.inflight().balancer.woken() => {}
            h = hosts.recv() => match h {
                Some(h) if console.agents().status(&h) == HostStatus::Connected => {}
                Some(_) => continue,
                None => return,
            },
        }
        pass(&console).await;
        next = tokio::time::Instant::now()
            + Duration::from_secs(console.settings().balancing.interval_s.max(1));
    }
}
