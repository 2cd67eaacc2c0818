//! Automatic balancing (docs/design.md, "Balancing"): placement rules, the cluster model built
//! from the store and the agents' latest reports, and the balancer task.
//!
//! The task runs a pass every `balancing.interval_s` and on events (a host put in maintenance, a
//! host connected, a rule created or deleted, the settings changed). A pass builds a
//! [`ClusterModel`], asks [`vinfra_placement::balance`] for a plan and then, by mode: `off`
//! nothing; `manual` keeps the plan's moves as recommendations; `automatic` starts them through
//! the normal live-migration path ([`crate::migration::start`]) within the migration limits, and
//! records each in the event history (kind `drs`) with its reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vinfra_placement::{
    balance, BalanceConfig, ClusterModel, Eligibility, HostModel, ModelError, Move, Plan,
    RecentMove, Rule, RuleError, RulePlacementError, Strength, VmModel,
};
use vinfra_store::{Compare, Op, Txn};
use vinfra_types::api::MigrateVmRequest;
use vinfra_types::balancing::{
    BalancingMode, DrsStatus, ExpectedGain, PlacementRule, PlanSummary, Recommendation, RuleKind,
    RuleStrength,
};
use vinfra_types::{HostStatus, MigrationPhase, MigrationProgress};

use crate::core::{lock, Console, CoreError};
use crate::store_keys::{self as keys, now_s, Desired};

/// How often a started move is checked for its end (to record the outcome).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// The balancer's state: the last pass and the recommendations waiting.
#[derive(Default)]
pub struct DrsState {
    inner: Mutex<Inner>,
    /// Wakes the balancer task for an early pass.
    wake: tokio::sync::Notify,
    /// Serializes passes, and rule checks with rule writes.
    pass: tokio::sync::Mutex<()>,
    rules: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Inner {
    last_run_at: Option<u64>,
    last_plan: Option<PlanSummary>,
    last_error: Option<String>,
    recommendations: Vec<Recommendation>,
    next_id: u64,
}

impl DrsState {
    /// Asks for a pass soon (an event changed the cluster).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

// ----- rules -----

fn library_rule(r: &PlacementRule) -> Rule {
    let strength = match r.strength {
        RuleStrength::Must => Strength::Must,
        RuleStrength::Should => Strength::Should,
    };
    let vms = r.vms.clone();
    let hosts = r.hosts.clone();
    let kind = match r.kind {
        RuleKind::Affinity => vinfra_placement::RuleKind::Affinity { vms },
        RuleKind::AntiAffinity => vinfra_placement::RuleKind::AntiAffinity { vms },
        RuleKind::RunOn => vinfra_placement::RuleKind::RunOn { vms, hosts },
        RuleKind::NotOn => vinfra_placement::RuleKind::NotOn { vms, hosts },
    };
    Rule {
        name: r.name.clone(),
        strength,
        kind,
    }
}

/// Every stored rule, in name order.
pub fn rules(console: &Console) -> Result<Vec<PlacementRule>, CoreError> {
    Ok(
        keys::range::<PlacementRule>(console.store().as_ref(), keys::RULES)?
            .into_iter()
            .map(|(_, v)| v.value)
            .collect(),
    )
}

/// One stored rule.
pub fn rule(console: &Console, name: &str) -> Result<PlacementRule, CoreError> {
    keys::get::<PlacementRule>(console.store().as_ref(), &keys::rule_key(name))?
        .map(|v| v.value)
        .ok_or_else(|| CoreError::NotFound {
            kind: "rule",
            name: name.to_string(),
        })
}

fn describe(r: &PlacementRule) -> String {
    let strength = match r.strength {
        RuleStrength::Must => "must",
        RuleStrength::Should => "should",
    };
    let mut s = format!("{strength} {} of {}", r.kind.as_str(), r.vms.join(", "));
    if r.kind.names_hosts() {
        s.push_str(&format!(" on hosts {}", r.hosts.join(", ")));
    }
    s
}

/// Checks the shape of a rule (names, VMs and hosts present where they must be): 400.
fn check_rule_shape(r: &PlacementRule) -> Result<(), CoreError> {
    let invalid = |m: String| CoreError::Invalid(m);
    vinfra_types::validate_name(&r.name).map_err(|e| invalid(format!("rule name: {e}")))?;
    for v in &r.vms {
        vinfra_types::validate_name(v).map_err(|e| invalid(format!("vms: {e}")))?;
    }
    for h in &r.hosts {
        vinfra_types::validate_name(h).map_err(|e| invalid(format!("hosts: {e}")))?;
    }
    if r.kind.names_hosts() {
        if r.vms.is_empty() || r.hosts.is_empty() {
            return Err(invalid(format!(
                "a {} rule names at least one VM (vms) and one host (hosts)",
                r.kind.as_str()
            )));
        }
    } else {
        if !r.hosts.is_empty() {
            return Err(invalid(format!(
                "a {} rule names no hosts; use run_on or not_on to tie VMs to hosts",
                r.kind.as_str()
            )));
        }
        let mut distinct = r.vms.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() < 2 {
            return Err(invalid(format!(
                "a {} rule names at least two distinct VMs",
                r.kind.as_str()
            )));
        }
    }
    Ok(())
}

/// Maps the library's refusal of a rule set: contradictions are 409 `rule-conflict`, rules that
/// name nothing usable 422 `invalid-rule`, a taken name 409 `conflict`.
fn rule_refusal(e: ModelError) -> CoreError {
    match e {
        ModelError::Rule(RuleError::DuplicateRule { rule }) => {
            CoreError::Conflict(format!("a rule named '{rule}' already exists"))
        }
        ModelError::Rule(e @ (RuleError::EmptyRule { .. } | RuleError::UnknownHost { .. })) => {
            CoreError::InvalidRule(e.to_string())
        }
        ModelError::Rule(e) => CoreError::RuleConflict(e.to_string()),
        other => CoreError::Conflict(format!(
            "the cluster model cannot be built to check the rule: {other}"
        )),
    }
}

/// Creates a rule after checking it against the cluster and the other rules; nothing is stored
/// when it is refused. A rule may name VMs that do not exist yet: they follow it from their
/// creation on (placement honours it). Hosts must be registered.
pub async fn create_rule(
    console: &Arc<Console>,
    rule: PlacementRule,
) -> Result<PlacementRule, CoreError> {
    check_rule_shape(&rule)?;
    let _rules = console.drs.rules.lock().await;
    let key = keys::rule_key(&rule.name);
    if keys::get::<PlacementRule>(console.store().as_ref(), &key)?.is_some() {
        return Err(CoreError::Conflict(format!(
            "a rule named '{}' already exists",
            rule.name
        )));
    }
    for h in &rule.hosts {
        if !console.host_registered(h) {
            return Err(CoreError::InvalidRule(format!(
                "rule '{}' names host '{h}', which is not registered",
                rule.name
            )));
        }
    }
    let mut all = rules(console)?;
    all.push(rule.clone());
    let (model, _) = cluster_model(console, &all)?;
    model.validate().map_err(rule_refusal)?;
    let resp = console.store().txn(Txn {
        compare: vec![Compare::absent(key.clone())],
        success: vec![Op::Put {
            key,
            value: keys::encode(&rule)?,
            lease: 0,
        }],
        failure: vec![],
    })?;
    if !resp.succeeded {
        return Err(CoreError::Conflict(format!(
            "a rule named '{}' already exists",
            rule.name
        )));
    }
    console.event("rule", &rule.name, format!("created: {}", describe(&rule)));
    console.drs.wake();
    Ok(rule)
}

/// Deletes a rule.
pub async fn delete_rule(console: &Arc<Console>, name: &str) -> Result<(), CoreError> {
    let _rules = console.drs.rules.lock().await;
    let rule = rule(console, name)?;
    console.store().delete(&keys::rule_key(name))?;
    console.event("rule", name, format!("deleted: {}", describe(&rule)));
    console.drs.wake();
    Ok(())
}

// ----- the model -----

/// The cluster as the balancer sees it, with the rules `rules`; and the recent migrations (for
/// hysteresis).
///
/// Hosts: every registered host whose capacity is known (reported now or at its last Hello),
/// with the ratios in force; disconnected hosts and hosts in maintenance are marked so (the
/// balancer moves nothing to either, and evacuates the latter). VMs: every VM whose desired
/// state is running, with its allocation and its measured demand (CPU cores and RSS of its QEMU
/// in its host's latest report; 0 when not reported). A VM being migrated is placed at its
/// destination and counts as just moved.
pub fn cluster_model(
    console: &Console,
    rules: &[PlacementRule],
) -> Result<(ClusterModel, Vec<RecentMove>), CoreError> {
    let inputs = console.placement_inputs(None);
    let hosts: Vec<HostModel> = inputs
        .into_iter()
        .filter(|h| h.capacity.cores > 0 && h.capacity.memory_mib > 0)
        .map(|h| HostModel {
            name: h.name,
            capacity: h.capacity,
            ratios: h.ratios,
            eligible: h.eligible,
        })
        .collect();
    let known: std::collections::HashSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let snapshot = console.agents().snapshot();
    let mut usage: HashMap<uuid::Uuid, (f64, u64)> = HashMap::new();
    for (status, observed) in snapshot.values() {
        if *status != HostStatus::Connected {
            continue;
        }
        for v in &observed.report.vms {
            let e = usage.entry(v.id).or_insert((0.0, 0));
            e.0 = e.0.max(v.usage.cpu_cores);
            e.1 = e.1.max(v.usage.rss_mib);
        }
    }
    let migrating: BTreeMap<String, (String, String)> = lock(&console.migrations)
        .values()
        .map(|m| (m.vm.clone(), (m.source.clone(), m.destination.clone())))
        .collect();
    let mut vms = Vec::new();
    for rec in console.vm_records() {
        if rec.desired != Desired::Running {
            continue;
        }
        let host = match migrating.get(&rec.spec.name) {
            Some((_, to)) => to.clone(),
            None => rec.host.clone(),
        };
        if !known.contains(host.as_str()) {
            continue;
        }
        let (cpu, rss) = usage.get(&rec.id).copied().unwrap_or((0.0, 0));
        vms.push(VmModel {
            name: rec.spec.name.clone(),
            host,
            vcpus: rec.spec.vcpus,
            memory_mib: rec.spec.memory_mib,
            cpu_demand: if cpu.is_finite() { cpu.max(0.0) } else { 0.0 },
            memory_demand_mib: rss,
        });
    }
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
    let model = ClusterModel {
        hosts,
        vms,
        rules: rules.iter().map(library_rule).collect(),
        traffic: Vec::new(),
    };
    Ok((model, recent))
}

/// Name of the built-in must-rule of [`trunk_rule`] (not a valid rule name for operators, so
/// it never clashes with theirs).
pub const TRUNK_RULE: &str = "built-in: VLAN networks need a trunk";

/// The balancer's view of "a VM with NICs on VLAN networks runs only on a host with a VLAN
/// trunk": a must not-on rule keeping those VMs off the model's hosts without a trunk. `None`
/// when there is no such VM, no such host, or no host with a trunk at all (the rule would
/// leave the VMs no host).
pub fn trunk_rule(console: &Console, model: &ClusterModel) -> Option<Rule> {
    let in_model: HashSet<&str> = model.vms.iter().map(|v| v.name.as_str()).collect();
    let vms: Vec<String> = console
        .vm_records()
        .into_iter()
        .filter(|r| in_model.contains(r.spec.name.as_str()))
        .filter(|r| !console.vlan_networks_of(&r.spec).is_empty())
        .map(|r| r.spec.name)
        .collect();
    let (with, without): (Vec<&str>, Vec<&str>) = model
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .partition(|h| console.host_trunk(h).is_some());
    if vms.is_empty() || without.is_empty() || with.is_empty() {
        return None;
    }
    Some(Rule {
        name: TRUNK_RULE.to_string(),
        strength: Strength::Must,
        kind: vinfra_placement::RuleKind::NotOn {
            vms,
            hosts: without.into_iter().map(str::to_string).collect(),
        },
    })
}

/// Start of the names of the built-in must-rules of [`underlay_rules`], followed by the underlay
/// MTU needed (not a valid rule name for operators, so they never clash with theirs).
pub const UNDERLAY_RULE: &str = "built-in: overlay networks need underlay MTU";

/// The balancer's view of "a VM with NICs on overlay networks runs only on a host whose underlay
/// MTU is at least the networks' MTU + the VXLAN encapsulation": per underlay MTU needed (in
/// increasing order), a must not-on rule keeping the VMs that need it off the model's hosts
/// with a smaller underlay. A group gets no rule when no host is too small for it, or when no
/// host is large enough (the rule would leave its VMs no host).
pub fn underlay_rules(console: &Console, model: &ClusterModel) -> Vec<Rule> {
    let in_model: HashSet<&str> = model.vms.iter().map(|v| v.name.as_str()).collect();
    let mut by_need: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for r in console.vm_records() {
        if !in_model.contains(r.spec.name.as_str()) {
            continue;
        }
        if let Some(need) = console.overlay_need_of(&r.spec) {
            by_need
                .entry(need.underlay_mtu)
                .or_default()
                .push(r.spec.name);
        }
    }
    let hosts: Vec<(&str, u32)> = model
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), console.host_underlay_mtu(&h.name)))
        .collect();
    let mut out = Vec::new();
    for (need, vms) in by_need {
        let small: Vec<String> = hosts
            .iter()
            .filter(|(_, mtu)| *mtu < need)
            .map(|(h, _)| h.to_string())
            .collect();
        if small.is_empty() || small.len() == hosts.len() {
            continue;
        }
        out.push(Rule {
            name: format!("{UNDERLAY_RULE} {need}"),
            strength: Strength::Must,
            kind: vinfra_placement::RuleKind::NotOn { vms, hosts: small },
        });
    }
    out
}

/// Picks a host for a new VM under the stored rules. Without rules naming the VM this is plain
/// placement; with them, [`vinfra_placement::place_with_rules`] chooses and plain placement
/// confirms the choice against the allocations in force (migrations in flight count on both
/// hosts). A host named by the operator is refused when it breaks a must-rule.
pub fn place_new_vm(
    console: &Console,
    inputs: &[vinfra_placement::HostInput],
    req: &vinfra_placement::Request,
    pinned: Option<&str>,
) -> Result<vinfra_placement::Placement, CoreError> {
    let all = rules(console)?;
    if !all.iter().any(|r| r.vms.contains(&req.vm)) {
        return Ok(vinfra_placement::place(inputs, req, pinned)?);
    }
    let (model, _) = cluster_model(console, &all)?;
    if let Some(host) = pinned {
        let placed = vinfra_placement::place(inputs, req, Some(host))?;
        let before = model.violations().map_err(rule_refusal)?;
        let mut with = model.clone();
        with.vms.push(VmModel {
            name: req.vm.clone(),
            host: host.to_string(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            cpu_demand: 0.0,
            memory_demand_mib: 0,
        });
        let after = with.violations().map_err(rule_refusal)?;
        let broken: Vec<String> = after
            .must
            .iter()
            .filter(|a| {
                before
                    .must
                    .iter()
                    .find(|b| b.rule == a.rule)
                    .is_none_or(|b| b.vms < a.vms)
            })
            .map(|a| format!("'{}'", a.rule))
            .collect();
        if !broken.is_empty() {
            return Err(CoreError::RuleConflict(format!(
                "VM '{}' on host {host} would break must-rule(s) {}",
                req.vm,
                broken.join(", ")
            )));
        }
        return Ok(placed);
    }
    // Hosts left out of `inputs` (no VLAN trunk, or too small an underlay MTU, for the VM's
    // networks) take nothing.
    let mut model = model;
    for h in &mut model.hosts {
        if !inputs.iter().any(|i| i.name == h.name) {
            h.eligible = Eligibility::Disconnected;
        }
    }
    let chosen = match vinfra_placement::place_with_rules(&model, req) {
        Ok(p) => p.host,
        Err(RulePlacementError::Placement(e)) => return Err(e.into()),
        Err(RulePlacementError::Model(e)) => return Err(rule_refusal(e)),
        Err(e @ RulePlacementError::RulesUnsatisfiable { .. }) => {
            return Err(CoreError::RuleConflict(e.to_string()))
        }
        Err(e @ RulePlacementError::AlreadyPlaced { .. }) => {
            return Err(CoreError::Conflict(e.to_string()))
        }
    };
    Ok(vinfra_placement::place(inputs, req, Some(&chosen))?)
}

// ----- passes -----

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
    let inner = console.drs.inner();
    DrsStatus {
        mode: b.mode,
        level: b.level,
        interval_s: b.interval_s,
        last_run_at: inner.last_run_at,
        last_plan: inner.last_plan.clone(),
        last_error: inner.last_error.clone(),
        recommendations: u32::try_from(inner.recommendations.len()).unwrap_or(u32::MAX),
    }
}

/// The recommendations of the latest plan (manual mode), in plan order.
pub fn recommendations(console: &Console) -> Vec<Recommendation> {
    console.drs.inner().recommendations.clone()
}

/// Runs a pass now (`POST /api/v1/drs/run`); refused while balancing is off.
pub async fn run_now(console: &Arc<Console>) -> Result<DrsStatus, CoreError> {
    if console.settings().balancing.mode == BalancingMode::Off {
        return Err(CoreError::Conflict(
            "balancing is off; set balancing.mode to manual or automatic first".into(),
        ));
    }
    pass(console).await;
    Ok(status(console))
}

/// One balancing pass (see the module doc). Failures are recorded in the status.
pub async fn pass(console: &Arc<Console>) {
    let _pass = console.drs.pass.lock().await;
    let settings = console.settings().balancing;
    if settings.mode == BalancingMode::Off {
        console.drs.inner().recommendations.clear();
        return;
    }
    let planned = (|| -> Result<Plan, String> {
        let all = rules(console).map_err(|e| e.to_string())?;
        let (mut model, recent_moves) = cluster_model(console, &all).map_err(|e| e.to_string())?;
        let built_in: Vec<Rule> = trunk_rule(console, &model)
            .into_iter()
            .chain(underlay_rules(console, &model))
            .collect();
        for rule in built_in {
            let name = rule.name.clone();
            let mut with = model.clone();
            with.rules.push(rule);
            match with.validate() {
                Ok(()) => model = with,
                Err(e) => tracing::warn!("'{name}' left out of this pass: {e}"),
            }
        }
        let config = BalanceConfig {
            level: settings.level,
            max_moves_per_host: settings.max_moves_per_host,
            max_moves_total: settings.max_moves_total,
            hysteresis_minutes: settings.hysteresis_minutes,
            recent_moves,
            ..BalanceConfig::default()
        };
        balance(&model, &config).map_err(|e| e.to_string())
    })();
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("balancing pass failed: {e}");
            let mut inner = console.drs.inner();
            inner.last_run_at = Some(now_s());
            inner.last_error = Some(e);
            return;
        }
    };
    let started = match settings.mode {
        BalancingMode::Automatic => {
            console.drs.inner().recommendations.clear();
            apply_plan(console, &plan, &settings).await
        }
        _ => {
            let mut inner = console.drs.inner();
            let mut recs = Vec::with_capacity(plan.moves.len());
            for m in &plan.moves {
                inner.next_id += 1;
                recs.push(Recommendation {
                    id: inner.next_id,
                    vm: m.vm.clone(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    reason: m.reason.to_string(),
                    expected_gain: gain(m),
                    with: m.with.clone(),
                });
            }
            inner.recommendations = recs;
            0
        }
    };
    let mut inner = console.drs.inner();
    inner.last_run_at = Some(now_s());
    inner.last_error = None;
    inner.last_plan = Some(summary(&plan, started));
}

/// Starts the plan's moves within the limits, counting migrations already running; returns how
/// many started.
async fn apply_plan(
    console: &Arc<Console>,
    plan: &Plan,
    settings: &vinfra_types::balancing::BalancingSettings,
) -> u32 {
    let mut per_host: HashMap<String, u32> = HashMap::new();
    let mut total: u32 = 0;
    for m in lock(&console.migrations).values() {
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
        if busy(&m.from) || busy(&m.to) || lock(&console.migrations).contains_key(&m.vm) {
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
                format!("could not move {} from {} to {}: {e}", m.vm, m.from, m.to),
            ),
        }
    }
    started
}

/// Starts one move through the normal migration path, records it, and records its outcome when
/// it ends.
async fn start_move(
    console: &Arc<Console>,
    vm: &str,
    from: &str,
    to: &str,
    reason: &str,
) -> Result<MigrationProgress, CoreError> {
    let rec = console.vm(vm)?.value;
    if rec.host != from {
        return Err(CoreError::Conflict(format!(
            "VM '{vm}' is on host {} now, not {from}; run the balancer again",
            rec.host
        )));
    }
    let progress = crate::migration::start(
        console,
        vm,
        MigrateVmRequest {
            to: Some(to.to_string()),
        },
    )
    .await?;
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
    tokio::spawn(async move {
        while lock(&console.migrations).contains_key(&vm) {
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
    });
    Ok(progress)
}

/// Applies one recommendation (`POST /api/v1/drs/recommendations/{id}/apply`).
pub async fn apply_recommendation(
    console: &Arc<Console>,
    id: u64,
) -> Result<MigrationProgress, CoreError> {
    let rec = console
        .drs
        .inner()
        .recommendations
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(|| CoreError::NotFound {
            kind: "recommendation",
            name: id.to_string(),
        })?;
    let reason = format!("recommendation {id}, {}", rec.reason);
    let progress = start_move(console, &rec.vm, &rec.from, &rec.to, &reason).await?;
    console.drs.inner().recommendations.retain(|r| r.id != id);
    Ok(progress)
}

/// The balancer task: a pass every `balancing.interval_s`, and one soon after an event (a host
/// connected, see `hosts`; or [`DrsState::wake`]).
pub async fn run(console: Arc<Console>, mut hosts: tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut next = tokio::time::Instant::now()
        + Duration::from_secs(console.settings().balancing.interval_s.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = console.drs.wake.notified() => {}
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
