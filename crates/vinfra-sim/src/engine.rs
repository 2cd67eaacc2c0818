//! The simulation loop. At each step:
//!
//! 1. the migrations planned at the previous step complete (VMs are on their new hosts);
//! 2. scheduled events apply: VMs depart, hosts enter or leave maintenance, failed hosts return
//!    (empty); HA VMs left unplaced by an earlier failure are planned again; hosts fail (the
//!    admission reserve's verdict first; their HA VMs restart where `vinfra_ha::restart::plan`
//!    puts them, their other VMs stop); VMs arrive (on their named host, or placed by the
//!    rule-aware placer), each power-on checked by admission control;
//! 3. demand and traffic take their values for the step;
//! 4. the metrics of the cluster as it is are recorded;
//! 5. the balancer plans on that cluster (the vinfra balancer is told the moves made within the
//!    hysteresis window); its moves are counted now and complete at the next step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;
use vinfra_ha::restart::{self, RestartError, RestartVm};
use vinfra_ha::AdmissionError;
use vinfra_placement::greedy::{self, GreedyConfig};
use vinfra_placement::{
    balance, ClusterModel, Eligibility, FitError, FitTable, LevelParams, Plan, Reason, RecentMove,
    RulePlacer, TrafficFlow, VmModel, VmNeeds,
};

use crate::error::SimError;
use crate::ha::{
    admission_error, power_on, request, restart_vm, FailoverRecord, HaLog, Prediction,
    RefusedRecord, ReserveTracker, RetryRecord,
};
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
    /// Hosts failed at this step.
    pub hosts_failed: usize,
    /// Hosts that failed at this step.
    pub host_failures: usize,
    /// HA VMs restarted on another host at this step.
    pub ha_restarted: usize,
    /// HA VMs waiting for a host (a failure left them unplaced).
    pub ha_down: usize,
    /// VMs without HA stopped by a host failure at this step.
    pub vms_stopped: usize,
    /// Arrivals refused at this step (admission control, or their host failed).
    pub admission_refused: usize,
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
    /// Host failures over the run.
    pub host_failures: usize,
    /// HA VMs restarted on another host (at their failure or later).
    pub ha_restarted: usize,
    /// HA VMs a failure's plan left unplaced (some may have restarted later).
    pub ha_unplaced: usize,
    /// HA VMs still waiting for a host at the end.
    pub ha_down_end: usize,
    /// VMs without HA stopped by host failures.
    pub vms_stopped: usize,
    /// Arrivals refused (admission control, or their host failed).
    pub admission_refused: usize,
    /// Whether the admission reserve holds at the end (`null`: not checked, no HA VM runs or
    /// `tolerate_host_failures = 0`).
    pub reserve_holds_end: Option<bool>,
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
    /// Host failures, restarts, the reserve's verdicts and refused arrivals.
    pub ha: HaLog,
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

/// Why a VM that should run does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// A VM without HA whose host failed.
    Stopped,
    /// Its arrival was refused.
    Refused,
    /// An HA VM whose host failed, waiting for a host.
    Down,
}

/// Counts of one step's HA events.
#[derive(Debug, Default)]
struct StepHa {
    restarted: usize,
    stopped: usize,
    refused: usize,
}

/// The state of one run.
struct Run<'a> {
    s: &'a Scenario,
    traces: Vec<Vec<(f64, f64)>>,
    index: BTreeMap<&'a str, usize>,
    /// Host of each VM; `None` while it does not run.
    at: Vec<Option<String>>,
    out: Vec<Option<Out>>,
    /// HA VMs waiting for a restart, in the order they went down.
    down: Vec<usize>,
    reserve: ReserveTracker,
    ha: HaLog,
}

impl Run<'_> {
    /// The model at step `t`; with `failed_now` false, the hosts failing at `t` still run.
    fn model(&self, t: u32, failed_now: bool) -> ClusterModel {
        let mut m = model(self.s, &self.at, &self.traces, t);
        if !failed_now {
            for (h, spec) in m.hosts.iter_mut().zip(&self.s.hosts) {
                if spec.fails_at(t) {
                    h.eligible = if spec.in_maintenance(t) {
                        Eligibility::Maintenance
                    } else {
                        Eligibility::Ok
                    };
                }
            }
        }
        m
    }

    fn placer(&self, t: u32) -> Result<RulePlacer, SimError> {
        RulePlacer::new(&self.model(t, true), &FitTable::default()).map_err(|source| {
            SimError::Cluster {
                step: t,
                source: Box::new(source),
            }
        })
    }

    fn ha_running(&self) -> bool {
        self.at
            .iter()
            .zip(&self.s.vms)
            .any(|(h, v)| h.is_some() && v.ha.is_some())
    }

    /// Records the reserve's verdict at step `t` (when HA VMs run and admission control is
    /// on), on the cluster with the hosts failing at `t` failed when `failed_now`.
    fn verdict(&mut self, t: u32, when: &'static str, failed_now: bool) -> Result<(), SimError> {
        if self.reserve.tolerate() == 0 || !self.ha_running() {
            return Ok(());
        }
        let model = self.model(t, failed_now);
        let report = match self.reserve.get(self.s, &self.index, || model, t)? {
            Some(a) => a.report(),
            None => return Ok(()),
        };
        self.ha.verdict(t, when, &report);
        Ok(())
    }

    /// Plans the HA VMs waiting for a host again (the console retries them every tick).
    fn retry(
        &mut self,
        t: u32,
        placer: &mut RulePlacer,
        counts: &mut StepHa,
    ) -> Result<(), SimError> {
        let vms: Vec<RestartVm> = self.down.iter().map(|&v| restart_vm(self.s, v)).collect();
        let started = Instant::now();
        let plan = restart::plan(placer, &vms).map_err(|source| SimError::Restart {
            step: t,
            host: "retry".into(),
            source: Box::new(source),
        })?;
        let planning_ms = millis(started);
        if plan.waves.is_empty() {
            return Ok(());
        }
        for r in plan.restarts() {
            if let Some(&v) = self.index.get(r.vm.as_str()) {
                self.at[v] = Some(r.host.clone());
                self.out[v] = None;
                self.reserve.added(self.s, v, &r.host);
                counts.restarted += 1;
            }
        }
        self.down.retain(|&v| self.out[v] == Some(Out::Down));
        self.ha.retries.push(RetryRecord {
            step: t,
            restarts: HaLog::restarts(&plan),
            still_unplaced: self.down.len(),
            planning_ms,
        });
        Ok(())
    }

    /// The hosts `failing` fail at step `t`: each one's HA VMs planned by the HA library on
    /// `placer` (the surviving cluster, those VMs taken out), the others stopped.
    fn fail(
        &mut self,
        t: u32,
        failing: &[usize],
        placer: &mut RulePlacer,
        counts: &mut StepHa,
    ) -> Result<(), SimError> {
        let s = self.s;
        // What the reserve expected, on the cluster before the failures.
        let mut predicted: BTreeMap<usize, Prediction> = BTreeMap::new();
        if self.reserve.tolerate() > 0 && self.ha_running() {
            let model = self.model(t, false);
            if let Some(a) = self.reserve.get(self.s, &self.index, || model, t)? {
                let report = a.report();
                for &f in failing {
                    if let Some(sc) = a.scenario_of(&self.s.hosts[f].name) {
                        predicted.insert(
                            f,
                            Prediction {
                                holds: sc.holds(),
                                unplaced: sc.unplaced,
                            },
                        );
                    }
                }
                self.ha.verdict(t, "before-failure", &report);
            }
        }
        let mut on: BTreeMap<&str, Vec<usize>> = failing
            .iter()
            .map(|&f| (self.s.hosts[f].name.as_str(), Vec::new()))
            .collect();
        for (v, h) in self.at.iter().enumerate() {
            if let Some(list) = h.as_deref().and_then(|h| on.get_mut(h)) {
                list.push(v);
            }
        }
        for &f in failing {
            let host = self.s.hosts[f].name.clone();
            let vms = on.remove(host.as_str()).unwrap_or_default();
            let (ha, others): (Vec<usize>, Vec<usize>) =
                vms.into_iter().partition(|&v| self.s.vms[v].ha.is_some());
            let place_err = |vm: &str| {
                let vm = vm.to_owned();
                let host = host.clone();
                move |source: FitError| SimError::Restart {
                    step: t,
                    host,
                    source: Box::new(RestartError::Placement {
                        vm,
                        source: Box::new(source),
                    }),
                }
            };
            // As the console: the VMs to restart no longer count on the failed host; the
            // others still do while the plan is made.
            for &v in &ha {
                let name = &s.vms[v].name;
                placer.remove(name).map_err(place_err(name))?;
            }
            let restart: Vec<RestartVm> = ha.iter().map(|&v| restart_vm(self.s, v)).collect();
            let started = Instant::now();
            let plan = restart::plan(placer, &restart).map_err(|source| SimError::Restart {
                step: t,
                host: host.clone(),
                source: Box::new(source),
            })?;
            let planning_ms = millis(started);
            for &v in &others {
                let name = &s.vms[v].name;
                placer.remove(name).map_err(place_err(name))?;
                self.at[v] = None;
                self.out[v] = Some(Out::Stopped);
                counts.stopped += 1;
            }
            for &v in &ha {
                match plan.host_of(&self.s.vms[v].name) {
                    Some(to) => {
                        self.at[v] = Some(to.to_owned());
                        counts.restarted += 1;
                    }
                    None => {
                        self.at[v] = None;
                        self.out[v] = Some(Out::Down);
                        self.down.push(v);
                    }
                }
            }
            self.ha.failovers.push(FailoverRecord {
                step: t,
                host,
                predicted: predicted.remove(&f),
                restarts: HaLog::restarts(&plan),
                unplaced: HaLog::unplaced(&plan),
                stopped: others.iter().map(|&v| self.s.vms[v].name.clone()).collect(),
                cycles: plan.cycles.clone(),
                planning_ms,
            });
        }
        self.reserve.invalidate();
        Ok(())
    }

    /// Admission control for VM `v` powering on at `host` at step `t` (the console checks
    /// every power-on while an HA VM runs, and an HA VM's always): `Err(reason)` when refused.
    fn admit(
        &mut self,
        t: u32,
        v: usize,
        host: &str,
        ha_running: bool,
    ) -> Result<Result<(), String>, SimError> {
        let checked = t > 0 && (ha_running || self.s.vms[v].ha.is_some());
        if !checked || self.reserve.tolerate() == 0 {
            self.reserve.added(self.s, v, host);
            return Ok(Ok(()));
        }
        let model = self.model(t, true);
        let Some(a) = self.reserve.get(self.s, &self.index, || model, t)? else {
            return Ok(Ok(()));
        };
        match a.check_power_on(&power_on(self.s, v), host) {
            Ok(admitted) => {
                a.commit(admitted).map_err(|e| admission_error(t, e))?;
                Ok(Ok(()))
            }
            Err(AdmissionError::Refused(r)) => Ok(Err(r.to_string())),
            Err(e) => Err(admission_error(t, e)),
        }
    }

    fn refuse(&mut self, t: u32, v: usize, host: &str, reason: String, counts: &mut StepHa) {
        self.out[v] = Some(Out::Refused);
        counts.refused += 1;
        self.ha.refused.push(RefusedRecord {
            step: t,
            vm: self.s.vms[v].name.clone(),
            host: host.to_owned(),
            reason,
        });
    }

    /// Arrivals at step `t`: VMs with a host first, then the placed ones in file order; each
    /// power-on through admission control.
    fn arrive(
        &mut self,
        t: u32,
        placer: &mut Option<RulePlacer>,
        counts: &mut StepHa,
    ) -> Result<(), SimError> {
        let s = self.s;
        let arriving: Vec<usize> = (0..s.vms.len())
            .filter(|&v| self.at[v].is_none() && self.out[v].is_none() && s.vms[v].runs_at(t))
            .collect();
        if arriving.is_empty() {
            return Ok(());
        }
        let mut ha_running = t > 0 && self.reserve.tolerate() > 0 && self.ha_running();
        let host_index: BTreeMap<&str, usize> = s
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.as_str(), i))
            .collect();
        for &v in &arriving {
            let Some(host) = s.vms[v].host.as_deref() else {
                continue;
            };
            if host_index
                .get(host)
                .is_some_and(|&h| s.hosts[h].failed_at(t))
            {
                self.refuse(t, v, host, format!("host {host} has failed"), counts);
                continue;
            }
            if let Err(reason) = self.admit(t, v, host, ha_running)? {
                self.refuse(t, v, host, reason, counts);
                continue;
            }
            ha_running |= s.vms[v].ha.is_some();
            self.at[v] = Some(host.to_owned());
            if let Some(p) = placer.as_mut() {
                p.commit(&request(&s.vms[v]), &VmNeeds::default(), host)
                    .map_err(|source| SimError::Place {
                        step: t,
                        vm: s.vms[v].name.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        for v in arriving {
            if s.vms[v].host.is_some() {
                continue;
            }
            if placer.is_none() {
                *placer = Some(self.placer(t)?);
            }
            let Some(p) = placer.as_mut() else {
                continue;
            };
            let spec = &s.vms[v];
            let req = request(spec);
            let placed = p
                .place(&req, &VmNeeds::default())
                .map_err(|source| SimError::Place {
                    step: t,
                    vm: spec.name.clone(),
                    source: Box::new(source),
                })?;
            if let Err(reason) = self.admit(t, v, &placed.host, ha_running)? {
                if let Some(p) = placer.as_mut() {
                    let _ = p.remove(&spec.name);
                }
                self.refuse(t, v, &placed.host, reason, counts);
                continue;
            }
            ha_running |= spec.ha.is_some();
            self.at[v] = Some(placed.host);
        }
        Ok(())
    }
}

/// Runs `kind` over the scenario.
pub fn simulate(s: &Scenario, kind: BalancerKind) -> Result<BalancerRun, SimError> {
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
    let mut run = Run {
        s,
        traces: traces(s),
        index,
        at: vec![None; s.vms.len()],
        out: vec![None; s.vms.len()],
        down: Vec::new(),
        reserve: ReserveTracker::new(s.ha.tolerate_host_failures),
        ha: HaLog::default(),
    };
    let mut pending: Vec<(usize, String)> = Vec::new();
    // (step planned, vm, from, to)
    let mut history: Vec<(u32, usize, String, String)> = Vec::new();
    let mut steps = Vec::with_capacity(s.steps as usize);
    let mut moves = Vec::new();
    let mut total = 0usize;
    let mut totals = HaTotals::default();

    for t in 0..s.steps {
        let mut counts = StepHa::default();
        for (v, to) in pending.drain(..) {
            if run.at[v].is_some() {
                run.reserve.moved(s, v, &to);
                run.at[v] = Some(to);
            }
        }
        for (v, spec) in s.vms.iter().enumerate() {
            if !spec.runs_at(t) {
                if run.at[v].take().is_some() {
                    run.reserve.removed(&spec.name);
                }
                if run.out[v] == Some(Out::Down) {
                    run.out[v] = None;
                }
            }
        }
        run.down.retain(|&v| run.out[v] == Some(Out::Down));
        if s.hosts.iter().any(|h| h.changes_at(t)) {
            run.reserve.invalidate();
        }
        let failing: Vec<usize> = (0..s.hosts.len())
            .filter(|&h| s.hosts[h].fails_at(t))
            .collect();
        let mut placer: Option<RulePlacer> = None;
        if !run.down.is_empty() || !failing.is_empty() {
            let mut p = run.placer(t)?;
            if !run.down.is_empty() {
                run.retry(t, &mut p, &mut counts)?;
            }
            if !failing.is_empty() {
                run.fail(t, &failing, &mut p, &mut counts)?;
            }
            placer = Some(p);
        }
        run.arrive(t, &mut placer, &mut counts)?;
        drop(placer);
        if t == 0 {
            run.verdict(t, "start", true)?;
        }
        totals.failures += failing.len();
        totals.restarted += counts.restarted;
        totals.stopped += counts.stopped;
        totals.refused += counts.refused;

        let m = run.model(t, true);
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
            hosts_failed: s.hosts.iter().filter(|h| h.failed_at(t)).count(),
            host_failures: failing.len(),
            ha_restarted: counts.restarted,
            ha_down: run.down.len(),
            vms_stopped: counts.stopped,
            admission_refused: counts.refused,
        });
        for mv in plan.moves {
            let Some(&vi) = run.index.get(mv.vm.as_str()) else {
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
    if let Some(last) = s.steps.checked_sub(1) {
        run.verdict(last, "end", true)?;
    }
    let mut summary = summarize(&steps);
    summary.host_failures = totals.failures;
    summary.ha_restarted = totals.restarted;
    summary.ha_unplaced = run.ha.failovers.iter().map(|f| f.unplaced.len()).sum();
    summary.ha_down_end = run.down.len();
    summary.vms_stopped = totals.stopped;
    summary.admission_refused = totals.refused;
    summary.reserve_holds_end = run
        .ha
        .verdicts
        .iter()
        .rev()
        .find(|v| v.when == "end")
        .map(|v| v.holds);
    Ok(BalancerRun {
        balancer: kind,
        summary,
        steps,
        moves,
        ha: run.ha,
    })
}

/// Milliseconds since `started`, to the microsecond.
fn millis(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// HA totals of a run.
#[derive(Debug, Default)]
struct HaTotals {
    failures: usize,
    restarted: usize,
    stopped: usize,
    refused: usize,
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
        host_failures: 0,
        ha_restarted: 0,
        ha_unplaced: 0,
        ha_down_end: 0,
        vms_stopped: 0,
        admission_refused: 0,
        reserve_holds_end: None,
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
