//! The simulation loop. At each step:
//!
//! 1. the migrations planned at the previous step complete (VMs are on their new hosts);
//! 2. scheduled events apply: VMs depart, hosts enter or leave maintenance, VMs arrive (on their
//!    named host, or placed by the rule-aware placer);
//! 3. demand and traffic take their values for the step;
//! 4. the metrics of the cluster as it is are recorded;
//! 5. the balancer plans on that cluster (the vinfra balancer is told the moves made within the
//!    hysteresis window); its moves are counted now and complete at the next step.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use vinfra_placement::greedy::{self, GreedyConfig};
use vinfra_placement::{
    balance, ClusterModel, FitTable, LevelParams, Plan, Reason, RecentMove, RulePlacer,
    TrafficFlow, VmModel, VmNeeds, VmRequest,
};

use crate::error::SimError;
use crate::scenario::Scenario;

/// Which balancer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BalancerKind {
    /// `vinfra_placement::balance`: rules, maintenance, traffic, cost, hysteresis.
    Vinfra,
    /// `vinfra_placement::greedy`: largest VM from the most to the least loaded host.
    Greedy,
}

impl BalancerKind {
    /// `vinfra` or `greedy`.
    pub fn name(self) -> &'static str {
        match self {
            BalancerKind::Vinfra => "vinfra",
            BalancerKind::Greedy => "greedy",
        }
    }
}

/// The cluster at one step, before that step's plan runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    /// Step number, from 0.
    pub step: u32,
    /// Minutes since the start.
    pub minute: u64,
    /// VMs running.
    pub vms: usize,
    /// Standard deviation of the loads of hosts in service.
    pub imbalance: f64,
    /// Highest normalized load of any host.
    pub max_host_load: f64,
    /// Migrations planned at this step (they complete at the next one).
    pub migrations: usize,
    /// Migrations planned so far, this step included.
    pub migrations_total: usize,
    /// VMs breaking a must-rule, summed over the rules.
    pub must_violations: u64,
    /// VMs breaking a should-rule, summed over the rules.
    pub should_violations: u64,
    /// Hosts allocated beyond their allocatable capacity.
    pub over_capacity_hosts: usize,
    /// Traffic between VMs on different hosts, bytes/s.
    pub cross_host_traffic: u64,
    /// VMs on hosts in maintenance.
    pub vms_on_maintenance: usize,
}

/// A migration with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveRecord {
    /// Step the move was planned at; the VM runs on `to` from the next step.
    pub step: u32,
    /// The VM.
    pub vm: String,
    /// The host it left.
    pub from: String,
    /// The host it went to.
    pub to: String,
    /// `fix-must-rule`, `evacuate`, `over-capacity`, `reduce-imbalance`, `reduce-traffic`,
    /// `should-rule` or `host-unfit`.
    pub reason: &'static str,
    /// The balancer's explanation.
    pub why: String,
    /// Imbalance before minus after the move.
    pub imbalance_gain: f64,
    /// Cross-host traffic removed, bytes/s (negative: added).
    pub traffic_saved_bytes_per_s: i64,
    /// Should-rule violations removed (negative: added).
    pub should_violations_removed: i64,
    /// Memory the migration copies, MiB.
    pub memory_mib: u64,
    /// The balancer's net score for the move.
    pub score: f64,
    /// Load of the source host after the move.
    pub from_load_after: f64,
    /// Load of the destination host after the move.
    pub to_load_after: f64,
    /// VMs moving with this one to keep a must-affinity rule.
    pub with: Vec<String>,
}

/// Totals of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Migrations over the run.
    pub migrations: usize,
    /// Imbalance at the first step.
    pub initial_imbalance: f64,
    /// Imbalance at the last step.
    pub final_imbalance: f64,
    /// Most must-rule violations (VMs) at any step.
    pub max_must_violations: u64,
    /// Must-rule violations (VMs) at the last step.
    pub final_must_violations: u64,
    /// Should-rule violations (VMs) at the first step.
    pub initial_should_violations: u64,
    /// Most should-rule violations (VMs) at any step.
    pub max_should_violations: u64,
    /// Should-rule violations (VMs) at the last step.
    pub final_should_violations: u64,
    /// Most hosts over capacity at any step.
    pub max_over_capacity_hosts: usize,
    /// VMs on hosts in maintenance at the last step.
    pub final_vms_on_maintenance: usize,
    /// Cross-host traffic at the first step, bytes/s.
    pub initial_cross_host_traffic: u64,
    /// Cross-host traffic at the last step, bytes/s.
    pub final_cross_host_traffic: u64,
}

/// One balancer over the whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalancerRun {
    /// Which balancer ran.
    pub balancer: BalancerKind,
    /// Totals.
    pub summary: Summary,
    /// Metrics of every step.
    pub steps: Vec<StepMetrics>,
    /// Every migration, in order.
    pub moves: Vec<MoveRecord>,
}

fn reason_kind(r: &Reason) -> &'static str {
    match r {
        Reason::FixMustRule { .. } => "fix-must-rule",
        Reason::Evacuate { .. } => "evacuate",
        Reason::OverCapacity => "over-capacity",
        Reason::ReduceImbalance { .. } => "reduce-imbalance",
        Reason::ReduceTraffic { .. } => "reduce-traffic",
        Reason::ShouldRule { .. } => "should-rule",
        Reason::HostUnfit { .. } => "host-unfit",
    }
}

/// Demand of every VM at every step: `traces[vm][step]`.
pub fn traces(s: &Scenario) -> Vec<Vec<(f64, f64)>> {
    s.vms
        .iter()
        .enumerate()
        .map(|(i, v)| v.demand.trace(v.vcpus, s.steps, s.seed, i as u64))
        .collect()
}

/// Runs `kind` over the scenario.
pub fn simulate(s: &Scenario, kind: BalancerKind) -> Result<BalancerRun, SimError> {
    let traces = traces(s);
    let index: BTreeMap<&str, usize> = s
        .vms
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    let params = LevelParams::for_level(s.balancer.level).map_err(|source| SimError::Balance {
        balancer: kind.name(),
        step: 0,
        source: Box::new(source),
    })?;
    // Host of each VM; None while it does not run.
    let mut at: Vec<Option<String>> = vec![None; s.vms.len()];
    let mut pending: Vec<(usize, String)> = Vec::new();
    // (step planned, vm, from, to)
    let mut history: Vec<(u32, usize, String, String)> = Vec::new();
    let mut steps = Vec::with_capacity(s.steps as usize);
    let mut moves = Vec::new();
    let mut total = 0usize;

    for t in 0..s.steps {
        for (v, to) in pending.drain(..) {
            if at[v].is_some() {
                at[v] = Some(to);
            }
        }
        for (v, spec) in s.vms.iter().enumerate() {
            if !spec.runs_at(t) {
                at[v] = None;
            }
        }
        // Arrivals: VMs with a host first, then the placed ones in file order.
        let arriving: Vec<usize> = (0..s.vms.len())
            .filter(|&v| at[v].is_none() && s.vms[v].runs_at(t))
            .collect();
        for &v in &arriving {
            at[v] = s.vms[v].host.clone();
        }
        let to_place: Vec<usize> = arriving.into_iter().filter(|&v| at[v].is_none()).collect();
        if !to_place.is_empty() {
            let mut placer = RulePlacer::new(&model(s, &at, &traces, t), &FitTable::default())
                .map_err(|source| SimError::Place {
                    step: t,
                    vm: s.vms[to_place[0]].name.clone(),
                    source: Box::new(source.into()),
                })?;
            for v in to_place {
                let spec = &s.vms[v];
                let placed = placer
                    .place(
                        &VmRequest {
                            vm: spec.name.clone(),
                            vcpus: spec.vcpus,
                            memory_mib: spec.memory_mib,
                        },
                        &VmNeeds::default(),
                    )
                    .map_err(|source| SimError::Place {
                        step: t,
                        vm: spec.name.clone(),
                        source: Box::new(source),
                    })?;
                at[v] = Some(placed.host);
            }
        }

        let m = model(s, &at, &traces, t);
        let plan: Plan = match kind {
            BalancerKind::Vinfra => {
                let mut cfg = s.balancer.config();
                let window = u64::from(s.balancer.hysteresis_minutes);
                for (when, v, from, to) in &history {
                    let ago = u64::from(t - when) * u64::from(s.step_minutes);
                    if ago < window {
                        cfg.recent_moves.push(RecentMove {
                            vm: s.vms[*v].name.clone(),
                            from: from.clone(),
                            to: to.clone(),
                            minutes_ago: u32::try_from(ago).unwrap_or(u32::MAX),
                        });
                    }
                }
                balance(&m, &cfg)
            }
            BalancerKind::Greedy => greedy::balance(
                &m,
                &GreedyConfig {
                    target_imbalance: params.target_imbalance,
                    max_moves: s.balancer.max_moves_total,
                },
            ),
        }
        .map_err(|source| SimError::Balance {
            balancer: kind.name(),
            step: t,
            source: Box::new(source),
        })?;
        let loads = m.host_loads().map_err(|source| SimError::Balance {
            balancer: kind.name(),
            step: t,
            source: Box::new(source.into()),
        })?;
        total += plan.moves.len();
        let v = &plan.violations_before;
        steps.push(StepMetrics {
            step: t,
            minute: u64::from(t) * u64::from(s.step_minutes),
            vms: m.vms.len(),
            imbalance: plan.imbalance_before,
            max_host_load: loads.iter().copied().fold(0.0, f64::max),
            migrations: plan.moves.len(),
            migrations_total: total,
            must_violations: v.must_vms(),
            should_violations: v.should_vms(),
            over_capacity_hosts: v.over_capacity.len(),
            cross_host_traffic: plan.cross_host_traffic_before,
            vms_on_maintenance: v.on_maintenance,
        });
        for mv in plan.moves {
            let Some(&vi) = index.get(mv.vm.as_str()) else {
                continue;
            };
            history.push((t, vi, mv.from.clone(), mv.to.clone()));
            pending.push((vi, mv.to.clone()));
            moves.push(MoveRecord {
                step: t,
                reason: reason_kind(&mv.reason),
                why: mv.reason.to_string(),
                imbalance_gain: mv.gain.imbalance,
                traffic_saved_bytes_per_s: mv.gain.traffic_bytes_per_s,
                should_violations_removed: mv.gain.should_violations,
                memory_mib: mv.gain.memory_mib,
                score: mv.gain.score,
                from_load_after: mv.from_load_after,
                to_load_after: mv.to_load_after,
                with: mv.with,
                vm: mv.vm,
                from: mv.from,
                to: mv.to,
            });
        }
        let window_steps = u64::from(s.balancer.hysteresis_minutes) / u64::from(s.step_minutes) + 1;
        history.retain(|(when, ..)| u64::from(t - when) <= window_steps);
    }
    Ok(BalancerRun {
        balancer: kind,
        summary: summarize(&steps),
        steps,
        moves,
    })
}

fn summarize(steps: &[StepMetrics]) -> Summary {
    let first = steps.first();
    let last = steps.last();
    Summary {
        migrations: last.map_or(0, |s| s.migrations_total),
        initial_imbalance: first.map_or(0.0, |s| s.imbalance),
        final_imbalance: last.map_or(0.0, |s| s.imbalance),
        max_must_violations: steps.iter().map(|s| s.must_violations).max().unwrap_or(0),
        final_must_violations: last.map_or(0, |s| s.must_violations),
        initial_should_violations: first.map_or(0, |s| s.should_violations),
        max_should_violations: steps.iter().map(|s| s.should_violations).max().unwrap_or(0),
        final_should_violations: last.map_or(0, |s| s.should_violations),
        max_over_capacity_hosts: steps
            .iter()
            .map(|s| s.over_capacity_hosts)
            .max()
            .unwrap_or(0),
        final_vms_on_maintenance: last.map_or(0, |s| s.vms_on_maintenance),
        initial_cross_host_traffic: first.map_or(0, |s| s.cross_host_traffic),
        final_cross_host_traffic: last.map_or(0, |s| s.cross_host_traffic),
    }
}

/// The model at step `t`: hosts with their maintenance state, running VMs with their demand,
/// every rule, and the flows between running VMs.
fn model(s: &Scenario, at: &[Option<String>], traces: &[Vec<(f64, f64)>], t: u32) -> ClusterModel {
    let vms: Vec<VmModel> = s
        .vms
        .iter()
        .zip(at)
        .zip(traces)
        .filter_map(|((spec, host), trace)| {
            let host = host.clone()?;
            let (cpu, mem) = trace.get(t as usize).copied().unwrap_or((0.0, 0.0));
            Some(VmModel {
                name: spec.name.clone(),
                host,
                vcpus: spec.vcpus,
                memory_mib: spec.memory_mib,
                cpu_demand: cpu,
                memory_demand_mib: (mem * spec.memory_mib as f64).round() as u64,
            })
        })
        .collect();
    let running_names: BTreeSet<&str> = s
        .vms
        .iter()
        .zip(at)
        .filter(|(_, host)| host.is_some())
        .map(|(spec, _)| spec.name.as_str())
        .collect();
    let running = |name: &str| running_names.contains(name);
    let traffic = s
        .traffic
        .iter()
        .filter(|f| running(&f.a) && running(&f.b))
        .map(|f| TrafficFlow {
            a: f.a.clone(),
            b: f.b.clone(),
            bytes_per_s: f.rate(t),
        })
        .filter(|f| f.bytes_per_s > 0)
        .collect();
    ClusterModel {
        hosts: s.hosts.iter().map(|h| h.model(t)).collect(),
        vms,
        rules: s.rules.clone(),
        traffic,
    }
}
