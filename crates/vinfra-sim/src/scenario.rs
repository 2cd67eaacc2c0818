//! The scenario file (TOML): hosts with maintenance windows and failures, VMs with demand
//! traces, arrival and departure and an HA policy, rules, a traffic matrix, balancer and HA
//! settings, the number and length of steps and the seed. [`Scenario::parse`] checks everything and names the file and the field in its errors;
//! the format is documented in `docs/simulator.md`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use vinfra_ha::{HaPolicy, Priority};
use vinfra_placement::{BalanceConfig, ClusterModel, Eligibility, HostModel, Rule, Strength};
use vinfra_types::{AllocationRatios, HostCapacity};

use crate::error::SimError;
use crate::trace::Demand;

/// Most steps a scenario may ask for.
pub const MAX_STEPS: u32 = 100_000;
/// Most VMs or hosts after `count` expansion.
pub const MAX_ITEMS: usize = 100_000;

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Seed of its random streams.
    pub seed: u64,
    /// Number of steps.
    pub steps: u32,
    /// Minutes per step.
    pub step_minutes: u32,
    /// Balancer settings.
    pub balancer: BalancerSettings,
    /// Hosts, `count` expanded.
    pub hosts: Vec<ScenarioHost>,
    /// VMs, `count` expanded.
    pub vms: Vec<ScenarioVm>,
    /// Placement rules.
    pub rules: Vec<Rule>,
    /// The traffic matrix.
    pub traffic: Vec<ScenarioFlow>,
    /// HA settings.
    pub ha: ScenarioHa,
}

/// The cluster's HA settings in a scenario (`[ha]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioHa {
    /// Host failures admission control keeps room for (0 to 32, default 1; checked only while
    /// HA VMs run, as in the console).
    pub tolerate_host_failures: u32,
}

impl Default for ScenarioHa {
    fn default() -> Self {
        ScenarioHa {
            tolerate_host_failures: vinfra_types::ha::HaSettings::default().tolerate_host_failures,
        }
    }
}

/// Balancer settings of a scenario (the library's defaults where the file says nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerSettings {
    /// Migration threshold level, 1 to 5.
    pub level: u8,
    /// Most migrations a plan starts or ends on one host.
    pub max_moves_per_host: u32,
    /// Most migrations in one plan.
    pub max_moves_total: u32,
    /// A VM moved less than this many minutes ago moves only for a hard violation.
    pub hysteresis_minutes: u32,
    /// Score per MiB/s of cross-host traffic removed.
    pub traffic_weight: f64,
    /// Score per VM breaking a should-rule.
    pub should_penalty: f64,
}

impl BalancerSettings {
    /// The library configuration, without recent moves.
    pub fn config(&self) -> BalanceConfig {
        BalanceConfig {
            level: self.level,
            max_moves_per_host: self.max_moves_per_host,
            max_moves_total: self.max_moves_total,
            hysteresis_minutes: self.hysteresis_minutes,
            recent_moves: Vec::new(),
            traffic_weight: self.traffic_weight,
            should_penalty: self.should_penalty,
        }
    }
}

/// A host and its maintenance windows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioHost {
    /// Host name.
    pub name: String,
    /// Physical cores.
    pub cores: u32,
    /// Physical memory, MiB.
    pub memory_mib: u64,
    /// Allocation ratios.
    pub ratios: AllocationRatios,
    /// `(from, until)`: in maintenance from step `from` up to (not including) `until`.
    pub maintenance: Vec<(u32, Option<u32>)>,
    /// `(fail, return)`: failed from step `fail` up to (not including) `return`; in step
    /// order, never overlapping.
    pub failures: Vec<(u32, Option<u32>)>,
}

impl ScenarioHost {
    /// Whether the host is in maintenance at `step`.
    pub fn in_maintenance(&self, step: u32) -> bool {
        self.maintenance
            .iter()
            .any(|&(from, until)| step >= from && until.is_none_or(|u| step < u))
    }

    /// Whether the host is failed at `step`.
    pub fn failed_at(&self, step: u32) -> bool {
        self.failures
            .iter()
            .any(|&(fail, back)| step >= fail && back.is_none_or(|b| step < b))
    }

    /// Whether the host fails at `step` (it ran at the step before).
    pub fn fails_at(&self, step: u32) -> bool {
        self.failures.iter().any(|&(fail, _)| fail == step)
    }

    /// Whether the host enters or leaves maintenance, or returns from a failure, at `step` (a
    /// failure itself is not counted: it is an event of its own).
    pub fn changes_at(&self, step: u32) -> bool {
        self.maintenance
            .iter()
            .any(|&(from, until)| from == step || until == Some(step))
            || self.failures.iter().any(|&(_, back)| back == Some(step))
    }

    /// The model host at `step`: a failed host is disconnected, else one in maintenance is in
    /// maintenance.
    pub fn model(&self, step: u32) -> HostModel {
        HostModel {
            name: self.name.clone(),
            capacity: HostCapacity {
                cores: self.cores,
                memory_mib: self.memory_mib,
            },
            ratios: self.ratios,
            eligible: if self.failed_at(step) {
                Eligibility::Disconnected
            } else if self.in_maintenance(step) {
                Eligibility::Maintenance
            } else {
                Eligibility::Ok
            },
        }
    }
}

/// A VM: size, where it starts, when it runs, and its demand trace.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioVm {
    /// VM name.
    pub name: String,
    /// The host it starts on; `None`: placed by the rule-aware placer when it arrives.
    pub host: Option<String>,
    /// Allocated vCPUs.
    pub vcpus: u32,
    /// Allocated memory, MiB.
    pub memory_mib: u64,
    /// Its demand over time.
    pub demand: Demand,
    /// First step it runs.
    pub arrive: u32,
    /// Step it is gone at, if it leaves.
    pub depart: Option<u32>,
    /// Its HA policy when HA is on for it (`ha = true`).
    pub ha: Option<HaPolicy>,
}

impl ScenarioVm {
    /// Whether the VM runs at `step`.
    pub fn runs_at(&self, step: u32) -> bool {
        step >= self.arrive && self.depart.is_none_or(|d| step < d)
    }
}

/// Traffic between two VMs, bytes/s, constant or changing at given steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioFlow {
    /// One VM.
    pub a: String,
    /// The other.
    pub b: String,
    /// `(from step, bytes/s)`, sorted by step; the rate before the first point is the first.
    pub points: Vec<(u32, u64)>,
}

impl ScenarioFlow {
    /// Bytes/s at `step`.
    pub fn rate(&self, step: u32) -> u64 {
        let mut rate = self.points.first().map_or(0, |p| p.1);
        for &(t, r) in &self.points {
            if t <= step {
                rate = r;
            }
        }
        rate
    }
}

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    seed: u64,
    steps: i64,
    step_minutes: i64,
    #[serde(default)]
    balancer: RawBalancer,
    hosts: Vec<RawHost>,
    vms: Vec<RawVm>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    traffic: Vec<RawFlow>,
    #[serde(default)]
    ha: RawHa,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHa {
    tolerate_host_failures: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBalancer {
    level: Option<i64>,
    max_moves_per_host: Option<i64>,
    max_moves_total: Option<i64>,
    hysteresis_minutes: Option<i64>,
    traffic_weight: Option<f64>,
    should_penalty: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    count: Option<i64>,
    cores: i64,
    memory_gib: f64,
    cpu_ratio: Option<f64>,
    memory_ratio: Option<f64>,
    #[serde(default)]
    maintenance: Vec<RawWindow>,
    #[serde(default)]
    failures: Vec<RawFailure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailure {
    fail: i64,
    #[serde(rename = "return")]
    back: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    from: i64,
    until: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: String,
    count: Option<i64>,
    host: String,
    vcpus: i64,
    memory_gib: f64,
    demand: RawDemand,
    arrive: Option<i64>,
    depart: Option<i64>,
    ha: Option<bool>,
    ha_priority: Option<String>,
    ha_start_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemand {
    kind: String,
    cpu: Option<f64>,
    mem: Option<f64>,
    points: Option<Vec<[f64; 3]>>,
    cpu_amplitude: Option<f64>,
    mem_amplitude: Option<f64>,
    period: Option<f64>,
    phase: Option<f64>,
    cpu_step: Option<f64>,
    mem_step: Option<f64>,
    jitter: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    kind: String,
    strength: String,
    vms: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    a: String,
    b: String,
    bytes_per_s: Option<f64>,
    points: Option<Vec<[f64; 2]>>,
}

/// Builds the errors of one file.
struct Ctx<'a> {
    origin: &'a str,
}

impl Ctx<'_> {
    fn bad(&self, field: impl Into<String>, why: impl Into<String>) -> SimError {
        SimError::Invalid {
            path: self.origin.to_owned(),
            field: field.into(),
            why: why.into(),
        }
    }

    fn int(&self, field: &str, v: i64, min: i64, max: i64) -> Result<i64, SimError> {
        if v < min || v > max {
            return Err(self.bad(field, format!("must be {min} to {max}, got {v}")));
        }
        Ok(v)
    }

    fn step(&self, field: &str, v: i64) -> Result<u32, SimError> {
        Ok(self.int(field, v, 0, i64::from(MAX_STEPS))? as u32)
    }

    fn non_negative(&self, field: &str, v: f64) -> Result<f64, SimError> {
        if !v.is_finite() || v < 0.0 {
            return Err(self.bad(field, format!("must be a finite number ≥ 0, got {v}")));
        }
        Ok(v)
    }

    fn positive(&self, field: &str, v: f64) -> Result<f64, SimError> {
        if !v.is_finite() || v <= 0.0 {
            return Err(self.bad(field, format!("must be a finite number > 0, got {v}")));
        }
        Ok(v)
    }

    fn gib_to_mib(&self, field: &str, v: f64) -> Result<u64, SimError> {
        let mib = (self.positive(field, v)? * 1024.0).round();
        if mib < 1.0 || mib > (1u64 << 40) as f64 {
            return Err(self.bad(field, format!("must be 1 MiB to 1 PiB, got {v} GiB")));
        }
        Ok(mib as u64)
    }

    fn name(&self, field: &str, name: &str) -> Result<(), SimError> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok {
            return Err(self.bad(
                field,
                format!("'{name}' is not a name (1 to 63 letters, digits, '-', '_', '.')"),
            ));
        }
        Ok(())
    }

    /// `name` or `name-1` … `name-N` when `count` is given.
    fn expand(&self, field: &str, name: &str, count: Option<i64>) -> Result<Vec<String>, SimError> {
        self.name(&format!("{field}.name"), name)?;
        Ok(match count {
            None => vec![name.to_owned()],
            Some(n) => {
                let n = self.int(&format!("{field}.count"), n, 1, MAX_ITEMS as i64)?;
                (1..=n).map(|i| format!("{name}-{i}")).collect()
            }
        })
    }
}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// Parses and checks scenario `text`; `origin` (the file name) prefixes every error.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, SimError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            SimError::Parse {
                path: origin.to_owned(),
                line,
                column,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        let cx = Ctx { origin };
        let steps = cx.int("steps", raw.steps, 1, i64::from(MAX_STEPS))? as u32;
        let step_minutes = cx.int("step_minutes", raw.step_minutes, 1, 24 * 60)? as u32;
        let balancer = balancer(&cx, &raw.balancer)?;

        let mut hosts = Vec::new();
        for (i, h) in raw.hosts.iter().enumerate() {
            let field = format!("hosts[{i}]");
            let names = cx.expand(&field, &h.name, h.count)?;
            let cores = cx.int(&format!("{field}.cores"), h.cores, 1, 1 << 20)? as u32;
            let memory_mib = cx.gib_to_mib(&format!("{field}.memory_gib"), h.memory_gib)?;
            let d = AllocationRatios::default();
            let ratios = AllocationRatios {
                cpu: cx.positive(&format!("{field}.cpu_ratio"), h.cpu_ratio.unwrap_or(d.cpu))?,
                memory: cx.positive(
                    &format!("{field}.memory_ratio"),
                    h.memory_ratio.unwrap_or(d.memory),
                )?,
            };
            ratios
                .validate()
                .map_err(|why| cx.bad(format!("{field} (ratios)"), why))?;
            let mut maintenance = Vec::new();
            for (j, w) in h.maintenance.iter().enumerate() {
                let wf = format!("{field}.maintenance[{j}]");
                let from = cx.step(&format!("{wf}.from"), w.from)?;
                let until = match w.until {
                    Some(u) => {
                        let u = cx.step(&format!("{wf}.until"), u)?;
                        if u <= from {
                            return Err(cx.bad(
                                format!("{wf}.until"),
                                format!("must be after from ({from}), got {u}"),
                            ));
                        }
                        Some(u)
                    }
                    None => None,
                };
                maintenance.push((from, until));
            }
            let failures = failures(&cx, &field, &h.failures, steps)?;
            for name in names {
                hosts.push(ScenarioHost {
                    name,
                    cores,
                    memory_mib,
                    ratios,
                    maintenance: maintenance.clone(),
                    failures: failures.clone(),
                });
            }
        }
        if hosts.is_empty() {
            return Err(cx.bad("hosts", "the scenario needs at least one host"));
        }
        check_unique(&cx, "hosts", hosts.iter().map(|h| h.name.as_str()))?;
        let host_names: std::collections::HashSet<&str> =
            hosts.iter().map(|h| h.name.as_str()).collect();
        let host_known = |n: &str| host_names.contains(n);

        let mut vms = Vec::new();
        for (i, v) in raw.vms.iter().enumerate() {
            let field = format!("vms[{i}]");
            let names = cx.expand(&field, &v.name, v.count)?;
            let host = match v.host.as_str() {
                "place" => None,
                h if host_known(h) => Some(h.to_owned()),
                h => {
                    return Err(cx.bad(
                        format!("{field}.host"),
                        format!("host '{h}' is not in the scenario (name a host or \"place\")"),
                    ))
                }
            };
            let vcpus = cx.int(&format!("{field}.vcpus"), v.vcpus, 1, 1 << 16)? as u32;
            let memory_mib = cx.gib_to_mib(&format!("{field}.memory_gib"), v.memory_gib)?;
            let demand = demand(&cx, &format!("{field}.demand"), &v.demand)?;
            let arrive = match v.arrive {
                Some(a) => cx.step(&format!("{field}.arrive"), a)?,
                None => 0,
            };
            let depart = match v.depart {
                Some(d) => {
                    let d = cx.step(&format!("{field}.depart"), d)?;
                    if d <= arrive {
                        return Err(cx.bad(
                            format!("{field}.depart"),
                            format!("must be after arrive ({arrive}), got {d}"),
                        ));
                    }
                    Some(d)
                }
                None => None,
            };
            let ha = vm_ha(&cx, &field, v)?;
            for name in names {
                vms.push(ScenarioVm {
                    name,
                    host: host.clone(),
                    vcpus,
                    memory_mib,
                    demand: demand.clone(),
                    arrive,
                    depart,
                    ha: ha.clone(),
                });
            }
        }
        if hosts.len() > MAX_ITEMS || vms.len() > MAX_ITEMS {
            return Err(cx.bad(
                "hosts/vms",
                format!("at most {MAX_ITEMS} hosts and {MAX_ITEMS} VMs"),
            ));
        }
        check_unique(&cx, "vms", vms.iter().map(|v| v.name.as_str()))?;
        let vm_index: HashMap<&str, usize> = vms
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.as_str(), i))
            .collect();
        let vm_known = |n: &str| vm_index.contains_key(n);
        check_start_after(&cx, &raw.vms, &vms, &vm_index)?;
        let tolerate = raw.ha.tolerate_host_failures.map_or(
            Ok(ScenarioHa::default().tolerate_host_failures),
            |n| {
                let r = vinfra_types::ha::TOLERATE_HOST_FAILURES_RANGE;
                cx.int(
                    "ha.tolerate_host_failures",
                    n,
                    i64::from(*r.start()),
                    i64::from(*r.end()),
                )
                .map(|n| n as u32)
            },
        )?;

        let mut rules = Vec::new();
        for (i, r) in raw.rules.iter().enumerate() {
            let field = format!("rules[{i}]");
            cx.name(&format!("{field}.name"), &r.name)?;
            let strength = match r.strength.as_str() {
                "must" => Strength::Must,
                "should" => Strength::Should,
                s => {
                    return Err(cx.bad(
                        format!("{field}.strength"),
                        format!("must be \"must\" or \"should\", got \"{s}\""),
                    ))
                }
            };
            for vm in &r.vms {
                if !vm_known(vm) {
                    return Err(cx.bad(
                        format!("{field}.vms"),
                        format!("VM '{vm}' is not in the scenario"),
                    ));
                }
            }
            for h in &r.hosts {
                if !host_known(h) {
                    return Err(cx.bad(
                        format!("{field}.hosts"),
                        format!("host '{h}' is not in the scenario"),
                    ));
                }
            }
            let vm_refs: Vec<&str> = r.vms.iter().map(String::as_str).collect();
            let host_refs: Vec<&str> = r.hosts.iter().map(String::as_str).collect();
            let needs_hosts = matches!(r.kind.as_str(), "run-on" | "not-on");
            if !needs_hosts && !r.hosts.is_empty() {
                return Err(cx.bad(
                    format!("{field}.hosts"),
                    format!("a {} rule names no hosts", r.kind),
                ));
            }
            let rule = match r.kind.as_str() {
                "affinity" => Rule::affinity(&r.name, strength, &vm_refs),
                "anti-affinity" => Rule::anti_affinity(&r.name, strength, &vm_refs),
                "run-on" => Rule::run_on(&r.name, strength, &vm_refs, &host_refs),
                "not-on" => Rule::not_on(&r.name, strength, &vm_refs, &host_refs),
                k => {
                    return Err(cx.bad(
                        format!("{field}.kind"),
                        format!(
                            "must be \"affinity\", \"anti-affinity\", \"run-on\" or \"not-on\", got \"{k}\""
                        ),
                    ))
                }
            };
            rules.push(rule);
        }

        let mut traffic = Vec::new();
        for (i, f) in raw.traffic.iter().enumerate() {
            let field = format!("traffic[{i}]");
            for (key, vm) in [("a", &f.a), ("b", &f.b)] {
                if !vm_known(vm) {
                    return Err(cx.bad(
                        format!("{field}.{key}"),
                        format!("VM '{vm}' is not in the scenario"),
                    ));
                }
            }
            if f.a == f.b {
                return Err(cx.bad(
                    field,
                    format!("traffic from VM '{}' to itself is meaningless", f.a),
                ));
            }
            let rate = |field: &str, v: f64| -> Result<u64, SimError> {
                let v = cx.non_negative(field, v)?;
                if v > u64::MAX as f64 / 2.0 {
                    return Err(cx.bad(field, format!("is too large: {v}")));
                }
                Ok(v.round() as u64)
            };
            let points =
                match (f.bytes_per_s, &f.points) {
                    (Some(b), None) => vec![(0, rate(&format!("{field}.bytes_per_s"), b)?)],
                    (None, Some(ps)) if !ps.is_empty() => {
                        let mut out = Vec::with_capacity(ps.len());
                        for (j, p) in ps.iter().enumerate() {
                            let pf = format!("{field}.points[{j}]");
                            let t = whole_step(&cx, &pf, p[0])?;
                            if out.last().is_some_and(|&(prev, _)| t <= prev) {
                                return Err(cx.bad(pf, "steps must increase"));
                            }
                            out.push((t, rate(&pf, p[1])?));
                        }
                        out
                    }
                    _ => return Err(cx.bad(
                        field,
                        "give either bytes_per_s or a non-empty points = [[step, bytes_per_s], …]",
                    )),
                };
            traffic.push(ScenarioFlow {
                a: f.a.clone(),
                b: f.b.clone(),
                points,
            });
        }

        let scenario = Scenario {
            name: raw.name.unwrap_or_else(|| {
                Path::new(origin)
                    .file_stem()
                    .map_or_else(|| "scenario".to_owned(), |s| s.to_string_lossy().into())
            }),
            description: raw.description.unwrap_or_default(),
            seed: raw.seed,
            steps,
            step_minutes,
            balancer,
            hosts,
            vms,
            rules,
            traffic,
            ha: ScenarioHa {
                tolerate_host_failures: tolerate,
            },
        };
        scenario.check_rules(origin)?;
        Ok(scenario)
    }

    /// Refuses contradictory rules with the library's error: every VM counts as running where
    /// it may start (or on the first host when it is placed), so that size and pairing rules
    /// are all checked.
    fn check_rules(&self, origin: &str) -> Result<(), SimError> {
        let first = self
            .hosts
            .first()
            .map(|h| h.name.clone())
            .unwrap_or_default();
        let model = ClusterModel {
            hosts: self.hosts.iter().map(|h| h.model(0)).collect(),
            vms: self
                .vms
                .iter()
                .map(|v| vinfra_placement::VmModel {
                    name: v.name.clone(),
                    host: v.host.clone().unwrap_or_else(|| first.clone()),
                    vcpus: v.vcpus,
                    memory_mib: v.memory_mib,
                    cpu_demand: 0.0,
                    memory_demand_mib: 0,
                })
                .collect(),
            rules: self.rules.clone(),
            traffic: Vec::new(),
        };
        model.validate().map_err(|source| SimError::Model {
            path: origin.to_owned(),
            source: Box::new(source),
        })
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Scenario {
        self.seed = seed;
        self
    }

    /// Sets the number of steps (at least 1).
    pub fn with_steps(mut self, steps: u32) -> Scenario {
        self.steps = steps.clamp(1, MAX_STEPS);
        self
    }
}

/// The failure windows of host entry `field`: each fails at a step of the run after the first
/// (`1 … steps - 1`), returns after it fails, and fails again only after it returned.
fn failures(
    cx: &Ctx<'_>,
    field: &str,
    raw: &[RawFailure],
    steps: u32,
) -> Result<Vec<(u32, Option<u32>)>, SimError> {
    let mut out: Vec<(u32, Option<u32>)> = Vec::with_capacity(raw.len());
    for (j, f) in raw.iter().enumerate() {
        let wf = format!("{field}.failures[{j}]");
        if f.fail < 1 || f.fail >= i64::from(steps) {
            return Err(cx.bad(
                format!("{wf}.fail"),
                format!(
                    "must be a step of the run after the first, 1 to {}, got {}",
                    steps.saturating_sub(1),
                    f.fail
                ),
            ));
        }
        let fail = f.fail as u32;
        if let Some(&(prev, back)) = out.last() {
            match back {
                None => {
                    return Err(cx.bad(
                        format!("{wf}.fail"),
                        format!("the host fails twice: it failed at step {prev} and never returns"),
                    ))
                }
                Some(b) if fail < b => {
                    return Err(cx.bad(
                        format!("{wf}.fail"),
                        format!(
                            "the host fails twice: at step {fail} it is failed since step {prev} \
                             (returns at {b})"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let back = match f.back {
            Some(b) => {
                let b = cx.step(&format!("{wf}.return"), b)?;
                if b <= fail {
                    return Err(cx.bad(
                        format!("{wf}.return"),
                        format!("must be after fail ({fail}), got {b}"),
                    ));
                }
                Some(b)
            }
            None => None,
        };
        out.push((fail, back));
    }
    Ok(out)
}

/// The HA policy of VM entry `field` (`None`: HA off); `ha_priority` and `ha_start_after`
/// need `ha = true`.
fn vm_ha(cx: &Ctx<'_>, field: &str, v: &RawVm) -> Result<Option<HaPolicy>, SimError> {
    if v.ha != Some(true) {
        for (key, set) in [
            ("ha_priority", v.ha_priority.is_some()),
            ("ha_start_after", v.ha_start_after.is_some()),
        ] {
            if set {
                return Err(cx.bad(
                    format!("{field}.{key}"),
                    "is set but HA is off for the VM (add ha = true)",
                ));
            }
        }
        return Ok(None);
    }
    let priority = match v.ha_priority.as_deref() {
        None => Priority::default(),
        Some(p) => Priority::ALL
            .into_iter()
            .find(|x| x.as_str() == p)
            .ok_or_else(|| {
                cx.bad(
                    format!("{field}.ha_priority"),
                    format!("must be \"highest\", \"high\", \"medium\" or \"low\", got \"{p}\""),
                )
            })?,
    };
    Ok(Some(HaPolicy {
        priority,
        start_after: v.ha_start_after.clone(),
    }))
}

/// Every `ha_start_after` names another VM of the scenario, and start-afters form no circle
/// (as the API refuses them).
fn check_start_after(
    cx: &Ctx<'_>,
    raw: &[RawVm],
    vms: &[ScenarioVm],
    index: &HashMap<&str, usize>,
) -> Result<(), SimError> {
    // The entry each VM came from, for the field name.
    let mut entry = Vec::with_capacity(vms.len());
    for (i, v) in raw.iter().enumerate() {
        let n = v.count.unwrap_or(1).max(1) as usize;
        entry.extend(std::iter::repeat_n(i, n));
    }
    let after = |i: usize| {
        vms[i]
            .ha
            .as_ref()
            .and_then(|p| p.start_after.as_deref())
            .and_then(|a| index.get(a).copied())
    };
    for (i, v) in vms.iter().enumerate() {
        let Some(a) = v.ha.as_ref().and_then(|p| p.start_after.as_deref()) else {
            continue;
        };
        let field = format!("vms[{}].ha_start_after", entry.get(i).copied().unwrap_or(0));
        if a == v.name {
            return Err(cx.bad(field, format!("VM '{a}' cannot start after itself")));
        }
        if !index.contains_key(a) {
            return Err(cx.bad(field, format!("VM '{a}' is not in the scenario")));
        }
    }
    // Each VM has at most one start-after: a walk of more than the VM count steps is a circle.
    let mut state = vec![0u8; vms.len()]; // 0 new, 1 on the walk, 2 done
    for start in 0..vms.len() {
        let mut path = Vec::new();
        let mut cur = Some(start);
        while let Some(i) = cur {
            match state[i] {
                0 => {
                    state[i] = 1;
                    path.push(i);
                    cur = after(i);
                }
                1 => {
                    let pos = path.iter().position(|&p| p == i).unwrap_or(0);
                    let names: Vec<&str> =
                        path[pos..].iter().map(|&p| vms[p].name.as_str()).collect();
                    return Err(cx.bad(
                        format!("vms[{}].ha_start_after", entry.get(i).copied().unwrap_or(0)),
                        format!(
                            "start-afters form a circle: {} → {}",
                            names.join(" → "),
                            names[0]
                        ),
                    ));
                }
                _ => break,
            }
        }
        for p in path {
            state[p] = 2;
        }
    }
    Ok(())
}

fn whole_step(cx: &Ctx<'_>, field: &str, t: f64) -> Result<u32, SimError> {
    if !t.is_finite() || t < 0.0 || t.fract() != 0.0 || t > f64::from(MAX_STEPS) {
        return Err(cx.bad(
            field,
            format!("the step must be a whole number 0 to {MAX_STEPS}, got {t}"),
        ));
    }
    Ok(t as u32)
}

fn check_unique<'a>(
    cx: &Ctx<'_>,
    field: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), SimError> {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(cx.bad(field, format!("'{n}' is listed twice")));
        }
    }
    Ok(())
}

fn balancer(cx: &Ctx<'_>, b: &RawBalancer) -> Result<BalancerSettings, SimError> {
    let d = BalanceConfig::default();
    let u32_or = |field: &str, v: Option<i64>, default: u32, min: i64| -> Result<u32, SimError> {
        match v {
            Some(v) => Ok(cx.int(field, v, min, i64::from(u32::MAX))? as u32),
            None => Ok(default),
        }
    };
    Ok(BalancerSettings {
        level: match b.level {
            Some(l) => cx.int("balancer.level", l, 1, 5)? as u8,
            None => d.level,
        },
        max_moves_per_host: u32_or(
            "balancer.max_moves_per_host",
            b.max_moves_per_host,
            d.max_moves_per_host,
            1,
        )?,
        max_moves_total: u32_or(
            "balancer.max_moves_total",
            b.max_moves_total,
            d.max_moves_total,
            1,
        )?,
        hysteresis_minutes: u32_or(
            "balancer.hysteresis_minutes",
            b.hysteresis_minutes,
            d.hysteresis_minutes,
            0,
        )?,
        traffic_weight: cx.non_negative(
            "balancer.traffic_weight",
            b.traffic_weight.unwrap_or(d.traffic_weight),
        )?,
        should_penalty: cx.non_negative(
            "balancer.should_penalty",
            b.should_penalty.unwrap_or(d.should_penalty),
        )?,
    })
}

fn demand(cx: &Ctx<'_>, field: &str, d: &RawDemand) -> Result<Demand, SimError> {
    let f = |name: &str| format!("{field}.{name}");
    let need = |name: &str, v: Option<f64>| -> Result<f64, SimError> {
        let v = v.ok_or_else(|| cx.bad(f(name), format!("is required for kind \"{}\"", d.kind)))?;
        cx.non_negative(&f(name), v)
    };
    let opt = |name: &str, v: Option<f64>| -> Result<f64, SimError> {
        cx.non_negative(&f(name), v.unwrap_or(0.0))
    };
    let jitter = opt("jitter", d.jitter)?;
    if jitter > 1.0 {
        return Err(cx.bad(f("jitter"), format!("must be 0 to 1, got {jitter}")));
    }
    let mem = |v: f64, name: &str| -> Result<f64, SimError> {
        if v > 1.0 {
            return Err(cx.bad(
                f(name),
                format!("is a fraction of the VM's memory, 0 to 1, got {v}"),
            ));
        }
        Ok(v)
    };
    // Fields that the kind does not use are refused, so that a typo does not pass silently.
    let allowed: &[&str] = match d.kind.as_str() {
        "constant" => &["cpu", "mem", "jitter"],
        "steps" => &["points", "jitter"],
        "sine" => &[
            "cpu",
            "mem",
            "cpu_amplitude",
            "mem_amplitude",
            "period",
            "phase",
            "jitter",
        ],
        "random-walk" => &["cpu", "mem", "cpu_step", "mem_step", "jitter"],
        k => {
            return Err(cx.bad(
                f("kind"),
                format!(
                    "must be \"constant\", \"steps\", \"sine\" or \"random-walk\", got \"{k}\""
                ),
            ))
        }
    };
    let present = [
        ("cpu", d.cpu.is_some()),
        ("mem", d.mem.is_some()),
        ("points", d.points.is_some()),
        ("cpu_amplitude", d.cpu_amplitude.is_some()),
        ("mem_amplitude", d.mem_amplitude.is_some()),
        ("period", d.period.is_some()),
        ("phase", d.phase.is_some()),
        ("cpu_step", d.cpu_step.is_some()),
        ("mem_step", d.mem_step.is_some()),
    ];
    if let Some((name, _)) = present
        .iter()
        .find(|(name, set)| *set && !allowed.contains(name))
    {
        return Err(cx.bad(f(name), format!("is not used by kind \"{}\"", d.kind)));
    }
    Ok(match d.kind.as_str() {
        "constant" => Demand::Constant {
            cpu: need("cpu", d.cpu)?,
            mem: mem(need("mem", d.mem)?, "mem")?,
            jitter,
        },
        "steps" => {
            let ps = d.points.as_ref().filter(|p| !p.is_empty()).ok_or_else(|| {
                cx.bad(
                    f("points"),
                    "kind \"steps\" needs points = [[step, cpu, mem], …]",
                )
            })?;
            let mut points = Vec::with_capacity(ps.len());
            for (j, p) in ps.iter().enumerate() {
                let pf = format!("points[{j}]");
                let t = whole_step(cx, &f(&pf), p[0])?;
                if points.last().is_some_and(|&(prev, _, _)| t <= prev) {
                    return Err(cx.bad(f(&pf), "steps must increase"));
                }
                let cpu = cx.non_negative(&f(&pf), p[1])?;
                let m = mem(cx.non_negative(&f(&pf), p[2])?, &pf)?;
                points.push((t, cpu, m));
            }
            Demand::Steps { points, jitter }
        }
        "sine" => {
            let period = need("period", d.period)?;
            if period <= 0.0 {
                return Err(cx.bad(f("period"), "must be > 0 steps"));
            }
            Demand::Sine {
                cpu: need("cpu", d.cpu)?,
                mem: mem(need("mem", d.mem)?, "mem")?,
                cpu_amplitude: opt("cpu_amplitude", d.cpu_amplitude)?,
                mem_amplitude: opt("mem_amplitude", d.mem_amplitude)?,
                period,
                phase: opt("phase", d.phase)?,
                jitter,
            }
        }
        _ => Demand::RandomWalk {
            cpu: need("cpu", d.cpu)?,
            mem: mem(need("mem", d.mem)?, "mem")?,
            cpu_step: opt("cpu_step", d.cpu_step)?,
            mem_step: opt("mem_step", d.mem_step)?,
            jitter,
        },
    })
}
