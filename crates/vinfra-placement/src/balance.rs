//! Balancing: from a [`ClusterModel`], a [`Plan`] of live migrations, each explaining itself.
//!
//! One pass works in phases, every move checked by the fit check ([`crate::fit`]: capabilities,
//! availability, capacity with over-allocation ratios and reserve) and against must-rules (a
//! move never makes a must-rule worse), and counted against the per-host and per-plan migration
//! limits:
//!
//! 1. **Hard fixes** (every level, hysteresis ignored): VMs on hosts that lack a capability they
//!    need ([`crate::fit`]: a trunk, an underlay MTU) move to one that has it; hosts over their
//!    allocatable capacity shed VMs; broken must-rules are repaired; hosts in maintenance are
//!    evacuated, each VM to the least loaded host that takes it, so an evacuation spreads instead
//!    of piling up (must-affinity groups move together).
//! 2. **Should-rules** (level ≥ 2): a move that repairs a should-rule is made when it pays.
//! 3. **Load** (level ≥ 2): while the imbalance is above the level's target, or some host is
//!    hotter than the mean by more than the level's margin, the best move from the few most
//!    loaded hosts to the few least loaded ones (and to the hosts of each VM's traffic partners)
//!    is made. Hosts with no paying move are skipped for the rest of the pass.
//! 4. **Traffic** (level ≥ 2): the heaviest cross-host flows are considered for co-location,
//!    when that does not push the imbalance above the target.
//!
//! Optional moves (phases 2 to 4) spend imbalance on traffic or should-rules only as far as the
//! gain pays for it: every optional move pays (below), so summed over a plan's optional moves
//! `hosts × (σ_after² − σ_before²) < traffic_weight × MiB/s saved + should_penalty ×
//! should-violations removed` (σ: the imbalance). A move that raises the imbalance for traffic
//! alone is made only while it stays at or under `max(imbalance before the move, level
//! target)`. A plan whose optional moves do not lower the imbalance says so, with the numbers,
//! in [`Plan::tradeoff`].
//!
//! A move **pays** when its score exceeds the level's `min_gain` (the hysteresis margin):
//!
//! `score = spread gain + traffic_weight × MiB/s saved
//!          + should_penalty × should-violations removed − cost_per_gib × GiB copied`,
//!
//! where the spread gain is the sum of squared deviations from the mean load removed by the move
//! (`hosts × Δvariance`, see [`crate::imbalance`]), computed in O(1) from running sums.
//!
//! Every paying move lowers the potential `Σ (load − mean)² − traffic − should-penalties` by more than
//! `min_gain`, so repeated passes on a steady cluster converge instead of cycling; VMs moved within
//! the hysteresis window ([`BalanceConfig::recent_moves`]) are not moved again except to repair a
//! hard violation. Same input, same plan: ties are broken by index, never by hash order.

use std::fmt;

use crate::fit::{FitTable, Unfit};
use crate::host::Eligibility;
use crate::model::{ClusterModel, ModelError};
use crate::rules::Kind;
use crate::state::State;
use crate::violations::Violations;

/// Tuning of one migration threshold level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelParams {
    /// Imbalance (standard deviation of host loads) under which load balancing stops.
    pub target_imbalance: f64,
    /// Under the target, a host more loaded than the mean by this much is still relieved.
    pub hot_margin: f64,
    /// Score a move must exceed (hysteresis margin).
    pub min_gain: f64,
    /// Cost of a move per GiB of memory to copy, in score units.
    pub cost_per_gib: f64,
}

impl LevelParams {
    /// Level 1: only hard violations are fixed. 2 (conservative) to 5 (aggressive): lower
    /// targets, lower margins, cheaper moves.
    pub fn for_level(level: u8) -> Result<LevelParams, BalanceError> {
        let p = |target_imbalance, hot_margin, min_gain, cost_per_gib| LevelParams {
            target_imbalance,
            hot_margin,
            min_gain,
            cost_per_gib,
        };
        Ok(match level {
            1 => p(f64::INFINITY, f64::INFINITY, f64::INFINITY, 0.002),
            2 => p(0.20, 0.35, 0.02, 0.004),
            3 => p(0.12, 0.25, 0.01, 0.002),
            4 => p(0.07, 0.15, 0.004, 0.001),
            5 => p(0.03, 0.08, 0.001, 0.0003),
            _ => return Err(BalanceError::Level { level }),
        })
    }
}

/// A migration made recently (input for hysteresis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentMove {
    /// The VM.
    pub vm: String,
    /// The host it left.
    pub from: String,
    /// The host it went to.
    pub to: String,
    /// How long ago the migration started.
    pub minutes_ago: u32,
}

/// Balancing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceConfig {
    /// Migration threshold, 1 (only hard violations) to 5 (aggressive); see [`LevelParams`].
    pub level: u8,
    /// Most migrations a plan starts or ends on one host.
    pub max_moves_per_host: u32,
    /// Most migrations in one plan.
    pub max_moves_total: u32,
    /// A VM moved less than this many minutes ago is not moved again unless a hard violation
    /// requires it.
    pub hysteresis_minutes: u32,
    /// Migrations made recently (and those in flight), for the hysteresis.
    pub recent_moves: Vec<RecentMove>,
    /// Score per MiB/s of cross-host traffic removed (0 ignores traffic).
    pub traffic_weight: f64,
    /// Score per VM breaking a should-rule.
    pub should_penalty: f64,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            level: 3,
            max_moves_per_host: 4,
            max_moves_total: 64,
            hysteresis_minutes: 30,
            recent_moves: Vec::new(),
            traffic_weight: 0.001,
            should_penalty: 0.05,
        }
    }
}

/// Why balancing could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BalanceError {
    /// The model is invalid or its rules contradict each other.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The migration threshold level is not 1 to 5.
    #[error("migration threshold level must be 1 to 5, got {level}")]
    Level {
        /// The level given.
        level: u8,
    },
    /// A weight is negative or not a number.
    #[error("{what} must be a finite number ≥ 0, got {value}")]
    Weight {
        /// The setting (`traffic_weight`, `should_penalty`).
        what: &'static str,
        /// The value given.
        value: f64,
    },
}

/// Why a VM moves.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// It breaks the named must-rule where it is.
    FixMustRule {
        /// The rule.
        rule: String,
    },
    /// Its host (named) is in maintenance.
    Evacuate {
        /// The host in maintenance.
        maintenance: String,
    },
    /// Its host's allocation exceeds its allocatable capacity.
    OverCapacity,
    /// It spreads load: cluster imbalance before and after the move.
    ReduceImbalance {
        /// Imbalance before the move.
        before: f64,
        /// Imbalance after it.
        after: f64,
    },
    /// It joins heavy talkers: cross-host traffic saved.
    ReduceTraffic {
        /// Cross-host traffic the move removes, bytes/s.
        bytes_per_s_saved: u64,
    },
    /// It repairs the named should-rule.
    ShouldRule {
        /// The rule.
        rule: String,
    },
    /// Its host lacks a capability it needs (a VLAN trunk, an underlay MTU, a CPU model).
    HostUnfit {
        /// What the host lacks.
        unfit: Unfit,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FixMustRule { rule } => write!(f, "fixes must-rule '{rule}'"),
            Reason::Evacuate { maintenance } => {
                write!(f, "evacuates host {maintenance} (maintenance)")
            }
            Reason::OverCapacity => f.write_str("its host is allocated beyond capacity"),
            Reason::ReduceImbalance { before, after } => {
                write!(f, "lowers imbalance from {before:.4} to {after:.4}")
            }
            Reason::ReduceTraffic { bytes_per_s_saved } => {
                write!(f, "cuts cross-host traffic by {bytes_per_s_saved} bytes/s")
            }
            Reason::ShouldRule { rule } => write!(f, "satisfies should-rule '{rule}'"),
            Reason::HostUnfit { unfit } => write!(f, "its host does not fit it: {unfit}"),
        }
    }
}

/// What a move is expected to bring, all measured when it is made (after the moves before it
/// in the plan).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gain {
    /// Cluster imbalance before minus after (negative: the move adds imbalance, as an
    /// evacuation may).
    pub imbalance: f64,
    /// Cross-host traffic removed, bytes/s (negative: added).
    pub traffic_bytes_per_s: i64,
    /// Should-rule violations removed (negative: added).
    pub should_violations: i64,
    /// Memory the migration copies, MiB.
    pub memory_mib: u64,
    /// Net score (benefit − copy cost, see the module doc); hard fixes are made whatever it is.
    pub score: f64,
}

/// One recommended migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The VM.
    pub vm: String,
    /// Its host now.
    pub from: String,
    /// The host it goes to.
    pub to: String,
    /// Why it moves.
    pub reason: Reason,
    /// What the move brings.
    pub gain: Gain,
    /// Load of the source host after the move.
    pub from_load_after: f64,
    /// Load of the destination host after the move.
    pub to_load_after: f64,
    /// VMs moving to the same host with this one to keep a must-affinity rule (listed next in
    /// the plan).
    pub with: Vec<String>,
}

/// What a plan's optional moves (should-rules, load, traffic) gave for the imbalance they did not
/// lower: present when they did not lower it. Bound (see the module doc): `hosts counted ×
/// (imbalance_after² − imbalance_before²) < traffic_weight × traffic_saved (MiB/s) +
/// should_penalty × should_violations_removed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tradeoff {
    /// Imbalance when the optional moves began (after the hard fixes).
    pub imbalance_before: f64,
    /// Imbalance after them (the plan's end).
    pub imbalance_after: f64,
    /// Cross-host traffic they removed, bytes/s (negative: added).
    pub traffic_saved_bytes_per_s: i128,
    /// Should-rule violations (VMs) they removed (negative: added).
    pub should_violations_removed: i128,
}

/// A balancing plan: moves in order, and the cluster before and after all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The moves, in order.
    pub moves: Vec<Move>,
    /// Set when the optional moves traded imbalance for traffic or should-rules.
    pub tradeoff: Option<Tradeoff>,
    /// Imbalance of the cluster before the plan.
    pub imbalance_before: f64,
    /// Imbalance after all its moves.
    pub imbalance_after: f64,
    /// Cross-host traffic before the plan, bytes/s.
    pub cross_host_traffic_before: u64,
    /// Cross-host traffic after all its moves, bytes/s.
    pub cross_host_traffic_after: u64,
    /// What was wrong before the plan.
    pub violations_before: Violations,
    /// What is still wrong after all its moves.
    pub violations_after: Violations,
}

impl Plan {
    /// Records every move in `model` (VM by VM, in order), as if all migrations completed.
    pub fn apply_to(&self, model: &mut ClusterModel) -> Result<(), ModelError> {
        for m in &self.moves {
            model.move_vm(&m.vm, &m.to)?;
        }
        Ok(())
    }
}

/// Sources and destinations looked at per step of the load phase.
const SOURCES: usize = 4;
const DESTINATIONS: usize = 8;
/// Traffic partners (heaviest first) whose hosts are also tried as destinations.
const PARTNERS: usize = 4;
/// Most hosts of a must-run-on rule offered to one VM as destinations.
const RUN_ON_CANDIDATES: usize = 8;
/// Valid destinations compared for a hard fix.
const HARD_CHOICES: usize = 8;
/// Heaviest flows looked at by the traffic phase.
const TOP_FLOWS: usize = 4096;
/// Hosts tried for a must-affinity group leaving a maintenance host.
const GROUP_TRIES: usize = 64;

/// A candidate move's numbers.
#[derive(Debug, Clone, Copy)]
struct Eval {
    imbalance: f64,
    traffic: i64,
    should: i64,
    score: f64,
}

struct Pass<'a> {
    s: State,
    p: LevelParams,
    cfg: &'a BalanceConfig,
    /// Moved within the hysteresis window.
    frozen: Vec<bool>,
    /// Host each VM recently left, if any.
    left: Vec<Option<u32>>,
    moved: Vec<bool>,
    host_moves: Vec<u32>,
    moves: Vec<Move>,
}

fn check_weight(what: &'static str, value: f64) -> Result<(), BalanceError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(BalanceError::Weight { what, value })
    }
}

/// Computes a plan for `model`, every host taken as fitting every VM (see [`balance_with_fit`]).
/// Same input, same plan.
pub fn balance(model: &ClusterModel, config: &BalanceConfig) -> Result<Plan, BalanceError> {
    balance_with_fit(model, &FitTable::default(), config)
}

/// Computes a plan for `model` with the hosts' capabilities and the VMs' needs of `fit`. Same
/// input, same plan.
pub fn balance_with_fit(
    model: &ClusterModel,
    fit: &FitTable,
    config: &BalanceConfig,
) -> Result<Plan, BalanceError> {
    let p = LevelParams::for_level(config.level)?;
    check_weight("traffic_weight", config.traffic_weight)?;
    check_weight("should_penalty", config.should_penalty)?;
    let s = State::new(model, fit)?;
    let n_vms = s.vms.len();
    let n_hosts = s.hosts.len();
    let mut run = Pass {
        frozen: vec![false; n_vms],
        left: vec![None; n_vms],
        moved: vec![false; n_vms],
        host_moves: vec![0; n_hosts],
        moves: Vec::new(),
        s,
        p,
        cfg: config,
    };
    for r in &config.recent_moves {
        if r.minutes_ago >= config.hysteresis_minutes {
            continue;
        }
        if let Some(&v) = run.s.vm_by_name.get(&r.vm) {
            run.frozen[v as usize] = true;
            run.left[v as usize] = run.s.host_by_name.get(&r.from).copied();
        }
    }
    let imbalance_before = run.s.imbalance();
    let cross_before = run.s.cross;
    let violations_before = run.s.violations();

    run.fix_misfits();
    run.fix_over_capacity();
    run.fix_must_rules();
    run.evacuate();
    let mut tradeoff = None;
    if config.level >= 2 {
        let hard_moves = run.moves.len();
        let imbalance = run.s.imbalance();
        let cross = run.s.cross;
        let should = run.s.violations().should_vms();
        run.fix_should_rules();
        run.spread_load();
        run.colocate_talkers();
        let after = run.s.imbalance();
        if run.moves.len() > hard_moves && after >= imbalance {
            tradeoff = Some(Tradeoff {
                imbalance_before: imbalance,
                imbalance_after: after,
                traffic_saved_bytes_per_s: i128::from(cross) - i128::from(run.s.cross),
                should_violations_removed: i128::from(should)
                    - i128::from(run.s.violations().should_vms()),
            });
        }
    }

    Ok(Plan {
        tradeoff,
        imbalance_after: run.s.imbalance(),
        cross_host_traffic_after: run.s.cross,
        violations_after: run.s.violations(),
        moves: run.moves,
        imbalance_before,
        cross_host_traffic_before: cross_before,
        violations_before,
    })
}

impl Pass<'_> {
    fn budget(&self) -> bool {
        (self.moves.len() as u64) < u64::from(self.cfg.max_moves_total)
    }

    fn room(&self, h: u32, n: u32) -> bool {
        self.host_moves[h as usize] + n <= self.cfg.max_moves_per_host
    }

    fn must_ok(&self, v: u32, b: u32) -> bool {
        let a = self.s.at[v as usize];
        self.s.vm_rules[v as usize].iter().all(|&r| {
            let r = r as usize;
            !self.s.rules[r].must || self.s.rule_delta(r, a, b) <= 0
        })
    }

    fn should_delta(&self, v: u32, b: u32) -> i64 {
        let a = self.s.at[v as usize];
        self.s.vm_rules[v as usize]
            .iter()
            .filter(|&&r| !self.s.rules[r as usize].must)
            .map(|&r| self.s.rule_delta(r as usize, a, b))
            .sum()
    }

    /// Whether `v` may go to `b` at all: a different, available host with room for one more
    /// migration and capacity, and no must-rule made worse.
    fn allowed(&self, v: u32, b: u32) -> bool {
        let a = self.s.at[v as usize];
        a != b
            && self.s.counted(b)
            && self.room(b, 1)
            && self.room(a, 1)
            && self.s.fits(v, b)
            && self.must_ok(v, b)
    }

    /// Score of moving `v` to `b`, for optional moves (phases 2 to 4); `None` when not allowed,
    /// or when the move raises the imbalance above `max(imbalance now, level target)` without
    /// repairing a should-rule.
    fn eval(&self, v: u32, b: u32) -> Option<Eval> {
        let vi = v as usize;
        let a = self.s.at[vi];
        if self.frozen[vi] || self.moved[vi] || !self.s.counted(a) || !self.allowed(v, b) {
            return None;
        }
        let (na, nb) = (self.s.load_with(a, v, -1.0), self.s.load_with(b, v, 1.0));
        let imbalance = self.s.spread_gain(a, na, b, nb);
        let should = -self.should_delta(v, b);
        if imbalance <= 0.0 && should <= 0 {
            let (_, _, sigma) = self.s.stats();
            if self.s.sigma_if(a, na, b, nb) > sigma.max(self.p.target_imbalance) {
                return None;
            }
        }
        let traffic = self.s.traffic_saved(v, b);
        let gib = self.s.vms[vi].memory as f64 / 1024.0;
        let score = imbalance
            + self.cfg.traffic_weight * traffic as f64 / (1024.0 * 1024.0)
            + self.cfg.should_penalty * should as f64
            - self.p.cost_per_gib * gib;
        Some(Eval {
            imbalance,
            traffic,
            should,
            score,
        })
    }

    fn pays(&self, e: &Eval) -> bool {
        e.score > self.p.min_gain
    }

    /// Makes the move: records it and updates the state.
    fn record(&mut self, v: u32, b: u32, reason: Reason, with: Vec<String>) {
        let vi = v as usize;
        let a = self.s.at[vi];
        let (_, _, sigma) = self.s.stats();
        let (na, nb) = (self.s.load_with(a, v, -1.0), self.s.load_with(b, v, 1.0));
        let sigma_after = self.s.sigma_if(a, na, b, nb);
        let traffic = self.s.traffic_saved(v, b);
        let should = -self.should_delta(v, b);
        let memory = self.s.vms[vi].memory;
        let score = self.s.spread_gain(a, na, b, nb)
            + self.cfg.traffic_weight * traffic as f64 / (1024.0 * 1024.0)
            + self.cfg.should_penalty * should as f64
            - self.p.cost_per_gib * memory as f64 / 1024.0;
        let reason = match reason {
            Reason::ReduceImbalance { .. } => Reason::ReduceImbalance {
                before: sigma,
                after: sigma_after,
            },
            r => r,
        };
        self.moves.push(Move {
            vm: self.s.vm_names[vi].clone(),
            from: self.s.host_names[a as usize].clone(),
            to: self.s.host_names[b as usize].clone(),
            reason,
            gain: Gain {
                imbalance: sigma - sigma_after,
                traffic_bytes_per_s: traffic,
                should_violations: should,
                memory_mib: memory,
                score,
            },
            from_load_after: na,
            to_load_after: nb,
            with,
        });
        self.s.apply(v, b);
        self.moved[vi] = true;
        self.host_moves[a as usize] += 1;
        self.host_moves[b as usize] += 1;
    }

    /// The best destination for a hard fix of `v`: among valid hosts (least loaded first, or
    /// the hosts of its must run-on rule), the one adding fewest should-violations, then not
    /// the host it recently left, then least loaded after the move.
    fn hard_destination(&self, v: u32, extra: impl Fn(u32) -> bool) -> Option<u32> {
        let vi = v as usize;
        let pinned: Option<&Vec<u32>> = self.s.vm_rules[vi]
            .iter()
            .filter_map(|&r| match &self.s.rules[r as usize] {
                rule if rule.must => match &rule.kind {
                    Kind::RunOn(set) => Some(set),
                    _ => None,
                },
                _ => None,
            })
            .min_by_key(|set| set.len());
        let candidates: Box<dyn Iterator<Item = u32> + '_> = match pinned {
            Some(set) => {
                let mut hs: Vec<u32> = set.clone();
                hs.sort_by(|&x, &y| {
                    self.s
                        .load(x as usize)
                        .total_cmp(&self.s.load(y as usize))
                        .then(x.cmp(&y))
                });
                Box::new(hs.into_iter())
            }
            None => Box::new(self.s.coldest()),
        };
        let mut best: Option<((i64, bool, f64, u32), u32)> = None;
        let mut found = 0;
        for b in candidates {
            if !self.allowed(v, b) || !extra(b) {
                continue;
            }
            let key = (
                self.should_delta(v, b),
                self.left[vi] == Some(b),
                self.s.load_with(b, v, 1.0),
                b,
            );
            let better = match &best {
                None => true,
                Some((k, _)) => {
                    (key.0, key.1)
                        .cmp(&(k.0, k.1))
                        .then(key.2.total_cmp(&k.2))
                        .then(key.3.cmp(&k.3))
                        == std::cmp::Ordering::Less
                }
            };
            if better {
                best = Some((key, b));
            }
            found += 1;
            if found >= HARD_CHOICES {
                break;
            }
        }
        best.map(|(_, b)| b)
    }

    /// Moves VMs off hosts that lack a capability they need, to hosts that have it (with their
    /// must-affinity partners on the same host, as one group).
    fn fix_misfits(&mut self) {
        for h in 0..self.s.hosts.len() as u32 {
            if self.s.hosts[h as usize].eligible == Eligibility::Disconnected {
                continue;
            }
            let mut vms = self.s.host_vms[h as usize].clone();
            vms.sort_unstable();
            for v in vms {
                if !self.budget() || !self.room(h, 1) {
                    break;
                }
                let Some(unfit) = self.s.misfit(v) else {
                    continue;
                };
                if self.moved[v as usize] {
                    continue;
                }
                let reason = Reason::HostUnfit { unfit };
                let unit = self.unit(v);
                if unit.len() > 1 {
                    self.move_group(&unit, &reason);
                } else if let Some(b) = self.hard_destination(v, |_| true) {
                    self.record(v, b, reason, Vec::new());
                }
            }
        }
    }

    fn fix_over_capacity(&mut self) {
        for h in 0..self.s.hosts.len() as u32 {
            if self.s.hosts[h as usize].eligible == Eligibility::Disconnected {
                continue;
            }
            while self.s.over_capacity(h) && self.budget() && self.room(h, 1) {
                let hi = h as usize;
                let excess_cpu = self.s.used_vcpus[hi].saturating_sub(self.s.hosts[hi].cap_vcpus);
                let excess_mem = self.s.used_memory[hi].saturating_sub(self.s.hosts[hi].cap_memory);
                let mut vms: Vec<u32> = self.s.host_vms[hi]
                    .iter()
                    .copied()
                    .filter(|&v| !self.moved[v as usize])
                    .collect();
                // Smallest VM that clears the excess alone first, then the largest ones.
                let clears = |v: u32| {
                    let d = &self.s.vms[v as usize];
                    u64::from(d.vcpus) >= excess_cpu && d.memory >= excess_mem
                };
                vms.sort_by(|&x, &y| {
                    let (dx, dy) = (&self.s.vms[x as usize], &self.s.vms[y as usize]);
                    match (clears(x), clears(y)) {
                        (true, true) => (dx.memory, dx.vcpus, x).cmp(&(dy.memory, dy.vcpus, y)),
                        (true, false) => std::cmp::Ordering::Less,
                        (false, true) => std::cmp::Ordering::Greater,
                        (false, false) => (dy.memory, dy.vcpus, x).cmp(&(dx.memory, dx.vcpus, y)),
                    }
                });
                let choice = vms
                    .iter()
                    .find_map(|&v| self.hard_destination(v, |_| true).map(|b| (v, b)));
                match choice {
                    Some((v, b)) => self.record(v, b, Reason::OverCapacity, Vec::new()),
                    None => break,
                }
            }
        }
    }

    fn fix_must_rules(&mut self) {
        for r in 0..self.s.rules.len() {
            if !self.s.rules[r].must || self.s.violation[r] == 0 {
                continue;
            }
            let name = self.s.rules[r].name.clone();
            let reason = || Reason::FixMustRule { rule: name.clone() };
            let members = self.s.rules[r].members.clone();
            let movable = |run: &Pass, v: u32| {
                let a = run.s.at[v as usize];
                !run.moved[v as usize]
                    && run.s.hosts[a as usize].eligible != Eligibility::Disconnected
            };
            match self.s.rules[r].kind.clone() {
                Kind::Anti => {
                    // On each shared host the largest member stays, the others leave.
                    let mut by_host: Vec<(u32, u64, u32)> = members
                        .iter()
                        .map(|&v| (self.s.at[v as usize], self.s.vms[v as usize].memory, v))
                        .collect();
                    by_host.sort_by(|x, y| (x.0, y.1, x.2).cmp(&(y.0, x.1, y.2)));
                    for w in 1..by_host.len() {
                        let (h, _, v) = by_host[w];
                        if by_host[w - 1].0 != h || !movable(self, v) || !self.budget() {
                            continue;
                        }
                        if let Some(b) = self.hard_destination(v, |b| self.s.count(r, b) == 0) {
                            self.record(v, b, reason(), Vec::new());
                        }
                    }
                }
                Kind::Affinity => {
                    let mut targets: Vec<(u32, u32)> = members
                        .iter()
                        .map(|&v| self.s.at[v as usize])
                        .map(|h| (self.s.count(r, h), h))
                        .collect();
                    targets.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
                    targets.dedup();
                    for (_, t) in targets {
                        if self.gather(r, t, &reason()) {
                            break;
                        }
                    }
                }
                kind => {
                    for &v in &members {
                        let a = self.s.at[v as usize];
                        if kind.allows(a) || !movable(self, v) || !self.budget() {
                            continue;
                        }
                        if let Some(b) = self.hard_destination(v, |b| kind.allows(b)) {
                            self.record(v, b, reason(), Vec::new());
                        }
                    }
                }
            }
        }
    }

    /// Moves the members of must-affinity rule `r` that may go to `t` there, as one group,
    /// when that strictly lowers the rule's violation; otherwise moves nothing. A member alone
    /// may not help (with members stuck on a disconnected host, `t` may only tie with it), so
    /// the moves are tried together first, each checked as it would be made (capacity,
    /// migration limits, no must-rule made worse), then undone, and recorded only if the group
    /// pays off, each listing the members that follow it in `with`.
    fn gather(&mut self, r: usize, t: u32, reason: &Reason) -> bool {
        let was = self.s.violation[r];
        let members = self.s.rules[r].members.clone();
        let mut group: Vec<(u32, u32)> = Vec::new();
        for &v in &members {
            let a = self.s.at[v as usize];
            if a == t
                || self.moved[v as usize]
                || self.s.hosts[a as usize].eligible == Eligibility::Disconnected
                || (self.moves.len() + group.len()) as u64 >= u64::from(self.cfg.max_moves_total)
                || !self.allowed(v, t)
            {
                continue;
            }
            self.s.apply(v, t);
            self.host_moves[a as usize] += 1;
            self.host_moves[t as usize] += 1;
            group.push((v, a));
        }
        let fixes = self.s.violation[r] < was;
        for &(v, a) in group.iter().rev() {
            self.s.apply(v, a);
            self.host_moves[a as usize] -= 1;
            self.host_moves[t as usize] -= 1;
        }
        if !fixes {
            return false;
        }
        for (i, &(v, _)) in group.iter().enumerate() {
            let with = group[i + 1..]
                .iter()
                .map(|&(u, _)| self.s.vm_names[u as usize].clone())
                .collect();
            self.record(v, t, reason.clone(), with);
        }
        true
    }

    /// Must-affinity partners of `v` on the same host, `v` first.
    fn unit(&self, v: u32) -> Vec<u32> {
        let h = self.s.at[v as usize];
        let mut unit = vec![v];
        let mut i = 0;
        while i < unit.len() {
            let u = unit[i];
            for &r in &self.s.vm_rules[u as usize] {
                let rule = &self.s.rules[r as usize];
                if rule.must && matches!(rule.kind, Kind::Affinity) {
                    for &m in &rule.members {
                        if self.s.at[m as usize] == h
                            && !unit.contains(&m)
                            && !self.moved[m as usize]
                        {
                            unit.push(m);
                        }
                    }
                }
            }
            i += 1;
        }
        unit
    }

    /// Moves a must-affinity group to one host, trying the least loaded first.
    fn move_group(&mut self, unit: &[u32], reason: &Reason) -> bool {
        let h = self.s.at[unit[0] as usize];
        let n = unit.len() as u32;
        if !self.room(h, n)
            || (self.moves.len() + unit.len()) as u64 > u64::from(self.cfg.max_moves_total)
        {
            return false;
        }
        let (cpu, mem) = unit.iter().fold((0u32, 0u64), |(c, m), &v| {
            let d = &self.s.vms[v as usize];
            (c.saturating_add(d.vcpus), m.saturating_add(d.memory))
        });
        let rules: Vec<usize> = {
            let mut rs: Vec<usize> = unit
                .iter()
                .flat_map(|&v| self.s.vm_rules[v as usize].iter().map(|&r| r as usize))
                .filter(|&r| self.s.rules[r].must)
                .collect();
            rs.sort_unstable();
            rs.dedup();
            rs
        };
        let before: Vec<u32> = rules.iter().map(|&r| self.s.violation[r]).collect();
        let candidates: Vec<u32> = self.s.coldest().take(GROUP_TRIES).collect();
        for b in candidates {
            if b == h
                || !self.room(b, n)
                || self.s.view(b).shortfall(cpu, mem).is_some()
                || unit
                    .iter()
                    .any(|&v| !self.s.needs[v as usize].met_by(&self.s.hosts[b as usize].caps))
            {
                continue;
            }
            for &v in unit {
                self.s.apply(v, b);
            }
            let ok = rules
                .iter()
                .zip(&before)
                .all(|(&r, &was)| self.s.violation[r] <= was);
            for &v in unit {
                self.s.apply(v, h);
            }
            if ok {
                for (i, &v) in unit.iter().enumerate() {
                    let with = unit
                        .iter()
                        .skip(i + 1)
                        .map(|&u| self.s.vm_names[u as usize].clone())
                        .collect();
                    self.record(v, b, reason.clone(), with);
                }
                return true;
            }
        }
        false
    }

    fn evacuate(&mut self) {
        for h in 0..self.s.hosts.len() as u32 {
            if self.s.hosts[h as usize].eligible != Eligibility::Maintenance {
                continue;
            }
            let reason = Reason::Evacuate {
                maintenance: self.s.host_names[h as usize].clone(),
            };
            let mut vms = self.s.host_vms[h as usize].clone();
            vms.sort_by(|&x, &y| {
                let (dx, dy) = (&self.s.vms[x as usize], &self.s.vms[y as usize]);
                (dy.memory, dy.vcpus, x).cmp(&(dx.memory, dx.vcpus, y))
            });
            for v in vms {
                if !self.budget() || !self.room(h, 1) {
                    break;
                }
                if self.moved[v as usize] || self.s.at[v as usize] != h {
                    continue;
                }
                let unit = self.unit(v);
                if unit.len() > 1 {
                    self.move_group(&unit, &reason);
                } else if let Some(b) = self.hard_destination(v, |_| true) {
                    self.record(v, b, reason.clone(), Vec::new());
                }
            }
        }
    }

    fn fix_should_rules(&mut self) {
        for r in 0..self.s.rules.len() {
            if self.s.rules[r].must || self.s.violation[r] == 0 {
                continue;
            }
            let name = self.s.rules[r].name.clone();
            let members = self.s.rules[r].members.clone();
            let kind = self.s.rules[r].kind.clone();
            for &v in &members {
                if !self.budget() || self.s.violation[r] == 0 {
                    break;
                }
                let a = self.s.at[v as usize];
                let targets: Vec<u32> = match &kind {
                    Kind::Affinity => {
                        let majority =
                            members
                                .iter()
                                .map(|&m| self.s.at[m as usize])
                                .max_by(|&x, &y| {
                                    self.s.count(r, x).cmp(&self.s.count(r, y)).then(y.cmp(&x))
                                });
                        match majority {
                            Some(t) if t != a => vec![t],
                            _ => continue,
                        }
                    }
                    Kind::Anti => {
                        if self.s.count(r, a) < 2 {
                            continue;
                        }
                        self.s
                            .coldest()
                            .filter(|&b| self.s.count(r, b) == 0)
                            .take(DESTINATIONS)
                            .collect()
                    }
                    Kind::RunOn(set) => {
                        if kind.allows(a) {
                            continue;
                        }
                        set.clone()
                    }
                    Kind::NotOn(_) => {
                        if kind.allows(a) {
                            continue;
                        }
                        self.s
                            .coldest()
                            .filter(|&b| kind.allows(b))
                            .take(DESTINATIONS)
                            .collect()
                    }
                };
                let best = targets
                    .iter()
                    .filter_map(|&b| self.eval(v, b).map(|e| (e, b)))
                    .filter(|(e, _)| e.should > 0 && self.pays(e))
                    .max_by(|x, y| x.0.score.total_cmp(&y.0.score).then(y.1.cmp(&x.1)));
                if let Some((_, b)) = best {
                    self.record(v, b, Reason::ShouldRule { rule: name.clone() }, Vec::new());
                }
            }
        }
    }

    /// Hosts a must-run-on rule confines `v` to. The coldest hosts of the cluster may all be
    /// outside that set, so a pinned VM is also offered every host it may run on (the set is small
    /// by nature: licensed or special hardware hosts).
    fn run_on_hosts(&self, v: u32) -> Vec<u32> {
        let a = self.s.at[v as usize];
        let mut out = Vec::new();
        for &r in &self.s.vm_rules[v as usize] {
            let rule = &self.s.rules[r as usize];
            if let (true, crate::rules::Kind::RunOn(set)) = (rule.must, &rule.kind) {
                out.extend(
                    set.iter()
                        .copied()
                        .filter(|&h| h != a)
                        .take(RUN_ON_CANDIDATES),
                );
            }
        }
        out
    }

    /// The heaviest traffic partners' hosts of `v`.
    fn partner_hosts(&self, v: u32) -> Vec<u32> {
        let mut adj = self.s.adj[v as usize].clone();
        adj.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        adj.iter()
            .take(PARTNERS)
            .map(|&(u, _)| self.s.at[u as usize])
            .collect()
    }

    fn reason_for(&self, e: &Eval) -> Reason {
        let traffic = self.cfg.traffic_weight * e.traffic as f64 / (1024.0 * 1024.0);
        if traffic > e.imbalance && e.traffic > 0 {
            Reason::ReduceTraffic {
                bytes_per_s_saved: e.traffic.unsigned_abs(),
            }
        } else {
            Reason::ReduceImbalance {
                before: 0.0,
                after: 0.0,
            }
        }
    }

    fn spread_load(&mut self) {
        let mut exhausted = vec![false; self.s.hosts.len()];
        while self.budget() {
            let (_, mean, sigma) = self.s.stats();
            let threshold = if sigma > self.p.target_imbalance {
                mean
            } else {
                mean + self.p.hot_margin
            };
            let sources: Vec<u32> = self
                .s
                .hottest()
                .take_while(|&h| self.s.load(h as usize) > threshold)
                .filter(|&h| !exhausted[h as usize] && self.room(h, 1))
                .take(SOURCES)
                .collect();
            if sources.is_empty() {
                break;
            }
            let dests: Vec<u32> = self
                .s
                .coldest()
                .take_while(|&h| self.s.load(h as usize) < mean)
                .filter(|&h| self.room(h, 1))
                .take(DESTINATIONS)
                .collect();
            let mut best: Option<(Eval, u32, u32)> = None;
            for &src in &sources {
                let mut any = false;
                for &v in &self.s.host_vms[src as usize] {
                    let mut cands = dests.clone();
                    cands.extend(self.partner_hosts(v));
                    cands.extend(self.run_on_hosts(v));
                    for b in cands {
                        let Some(e) = self.eval(v, b) else { continue };
                        if !self.pays(&e) || e.imbalance <= 0.0 && e.traffic <= 0 {
                            continue;
                        }
                        any = true;
                        let better = match &best {
                            None => true,
                            Some((be, bv, bb)) => e
                                .score
                                .total_cmp(&be.score)
                                .then((*bv, *bb).cmp(&(v, b)))
                                .is_gt(),
                        };
                        if better {
                            best = Some((e, v, b));
                        }
                    }
                }
                if !any {
                    exhausted[src as usize] = true;
                }
            }
            if let Some((e, v, b)) = best {
                let reason = self.reason_for(&e);
                self.record(v, b, reason, Vec::new());
            }
        }
    }

    fn colocate_talkers(&mut self) {
        if self.cfg.traffic_weight == 0.0 {
            return;
        }
        let flows: Vec<(u32, u32, u64)> = self.s.flows.iter().take(TOP_FLOWS).copied().collect();
        for (x, y, _) in flows {
            if !self.budget() {
                break;
            }
            let (hx, hy) = (self.s.at[x as usize], self.s.at[y as usize]);
            if hx == hy {
                continue;
            }
            let (_, _, sigma) = self.s.stats();
            let ceiling = sigma.max(self.p.target_imbalance);
            let best = [(x, hy), (y, hx)]
                .into_iter()
                .filter_map(|(v, b)| self.eval(v, b).map(|e| (e, v, b)))
                .filter(|(e, v, b)| {
                    let a = self.s.at[*v as usize];
                    let sigma_after = self.s.sigma_if(
                        a,
                        self.s.load_with(a, *v, -1.0),
                        *b,
                        self.s.load_with(*b, *v, 1.0),
                    );
                    e.traffic > 0 && self.pays(e) && sigma_after <= ceiling
                })
                .max_by(|p, q| p.0.score.total_cmp(&q.0.score).then(q.1.cmp(&p.1)));
            if let Some((e, v, b)) = best {
                let reason = Reason::ReduceTraffic {
                    bytes_per_s_saved: e.traffic.unsigned_abs(),
                };
                self.record(v, b, reason, Vec::new());
            }
        }
    }
}
