//! A plain greedy balancer, for comparison: while the imbalance is above a threshold, move the
//! largest VM of the most loaded host that fits the least loaded host there. It checks capacity
//! and stops when a move would not lower the imbalance, but knows nothing of rules, maintenance,
//! traffic, migration cost or hysteresis, like the simple balancers found in the wild.

use crate::balance::{BalanceError, Gain, Move, Plan, Reason};
use crate::fit::FitTable;
use crate::model::ClusterModel;
use crate::state::State;

/// When the greedy balancer stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GreedyConfig {
    /// Imbalance (standard deviation of host loads) at which it stops.
    pub target_imbalance: f64,
    /// Most moves in one plan.
    pub max_moves: u32,
}

/// Computes the greedy plan for `model`.
pub fn balance(model: &ClusterModel, config: &GreedyConfig) -> Result<Plan, BalanceError> {
    let mut s = State::new(model, &FitTable::default())?;
    let imbalance_before = s.imbalance();
    let cross_before = s.cross;
    let violations_before = s.violations();
    let mut moves = Vec::new();
    while (moves.len() as u64) < u64::from(config.max_moves) {
        let (_, _, sigma) = s.stats();
        if sigma <= config.target_imbalance {
            break;
        }
        let (Some(hot), Some(cold)) = (s.hottest().next(), s.coldest().next()) else {
            break;
        };
        if hot == cold {
            break;
        }
        let mut vms = s.host_vms[hot as usize].clone();
        vms.sort_by(|&x, &y| {
            let (dx, dy) = (&s.vms[x as usize], &s.vms[y as usize]);
            (dy.memory, dy.vcpus, x).cmp(&(dx.memory, dx.vcpus, y))
        });
        let Some(v) = vms.into_iter().find(|&v| s.fits(v, cold)) else {
            break;
        };
        let (na, nb) = (s.load_with(hot, v, -1.0), s.load_with(cold, v, 1.0));
        let after = s.sigma_if(hot, na, cold, nb);
        if after >= sigma {
            break;
        }
        let traffic = s.traffic_saved(v, cold);
        moves.push(Move {
            vm: s.vm_names[v as usize].clone(),
            from: s.host_names[hot as usize].clone(),
            to: s.host_names[cold as usize].clone(),
            reason: Reason::ReduceImbalance {
                before: sigma,
                after,
            },
            gain: Gain {
                imbalance: sigma - after,
                traffic_bytes_per_s: traffic,
                should_violations: 0,
                memory_mib: s.vms[v as usize].memory,
                score: sigma - after,
            },
            from_load_after: na,
            to_load_after: nb,
            with: Vec::new(),
        });
        s.apply(v, cold);
    }
    Ok(Plan {
        moves,
        tradeoff: None,
        imbalance_before,
        imbalance_after: s.imbalance(),
        cross_host_traffic_before: cross_before,
        cross_host_traffic_after: s.cross,
        violations_before,
        violations_after: s.violations(),
    })
}
