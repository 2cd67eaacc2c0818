//! Admission control: "tolerate N host failures". A VM may power on only if, with it running,
//! the HA VMs of any N failed hosts would still restart elsewhere.
//!
//! **Scenarios.** With N = 1 there is one scenario per host: that host fails alone, its HA VMs
//! restart on the others. This is exact (every single failure is planned). With N > 1 there is
//! one scenario: the N hosts running the most HA memory fail together (ties by host name). That
//! is a heuristic, not every set of N hosts: the sets are too many to plan at 10,000 hosts, and
//! the hosts with the most HA memory to restart are usually the worst to lose. N = 0 plans
//! nothing and admits everything.
//!
//! **Plans.** Each scenario is planned with [`crate::restart`]'s order and the placement
//! library, on the cluster as it runs, with the failed hosts ineligible and the VMs they ran
//! (those to restart, and those named by must-rules) taken out. Should-rules are left out:
//! they never make a restart impossible, and without them each placement is the first host
//! that fits in the spreading order, which is what makes the check below exact. A scenario
//! *holds* when every HA VM of the failed hosts is placed; its *shortfall* is the vCPUs and
//! memory of those left unplaced.
//!
//! **Incremental.** [`Admission`] keeps one plan per scenario and, for each host, the
//! scenarios whose plan restarts VMs there with how much they restart there. A kept plan that
//! holds is a *witness*: a valid way to restart every HA VM of the scenario on the cluster as
//! it runs now. A VM powering on at host `h` ([`Admission::check_power_on`]):
//! - replans the scenario where `h` fails (the VM may be among its HA VMs), the scenarios that
//!   restart a VM sharing a must-rule with it, and, with N > 1, the one scenario when its set
//!   of hosts changes;
//! - for each scenario whose plan restarts VMs on `h`: keeps a plan that holds when `h` still
//!   has room for what it restarts there with the VM running (the plan stays valid: only `h`
//!   changed), and replans it otherwise, or when it does not hold;
//! - leaves every other scenario alone: its plan is still valid, and a plan that does not
//!   hold is what planning from scratch gives too (each of its placements took the first host
//!   that fit in the spreading order, `h` was not one of them, and less room on `h` only moves
//!   `h` later in that order).
//!
//! So a scenario that does not hold is always what planning from scratch gives, and one that
//! holds always has a valid plan: the check refuses only a power-on that planning every
//! scenario from scratch refuses too (naming the same scenario), and admits one only when every
//! scenario has a valid restart plan. It may admit one that planning from scratch would refuse:
//! when its greedy order fails where a kept plan shows that every VM can restart. Spreading
//! sends the first restart of nearly every scenario to the emptiest hosts, where new VMs go as
//! well: replanning every scenario that uses a host would replan thousands per check, keeping
//! valid plans replans a handful. The property test checks all of this against planning every
//! scenario again.
//!
//! A VM that stops or is deleted ([`Admission::remove`]) frees room and relaxes rules: every
//! kept plan stays valid; the scenarios that do not hold (and the scenario of the VM's host) are
//! replanned. A host whose connection, maintenance or capabilities change
//! ([`Admission::set_host`]) replans the scenarios that restart VMs on it when it takes less,
//! and those that do not hold when it offers more. A VM that moves or changes its HA policy is
//! removed and added again. [`Admission::rebuild`] plans everything again (the kept plans then
//! are the plans from scratch). Any other change of the cluster (a host added or removed, a
//! capacity, the rules) is a [`Admission::new`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use uuid::Uuid;
use vinfra_placement::{
    ClusterModel, Eligibility, FitError, FitTable, HostCaps, ModelError, RulePlacer, Strength,
    VmNeeds, VmRequest,
};

use crate::restart::{self, HaPolicy, RestartError, RestartPlan, RestartVm};

/// Why admission control cannot answer, or refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmissionError {
    /// The cluster model is invalid.
    #[error("the cluster model is invalid")]
    Model(#[source] ModelError),
    /// The host named is not in the cluster.
    #[error("host {host} is not in the cluster")]
    UnknownHost {
        /// The name.
        host: String,
    },
    /// The VM powering on already runs.
    #[error("VM '{vm}' already runs")]
    AlreadyRunning {
        /// The VM.
        vm: String,
    },
    /// The VM named does not run.
    #[error("VM '{vm}' does not run")]
    NotRunning {
        /// The VM.
        vm: String,
    },
    /// The VM asks for no vCPU or no memory.
    #[error("VM '{vm}' must ask for at least 1 vCPU and 1 MiB of memory")]
    EmptyRequest {
        /// The VM.
        vm: String,
    },
    /// An answer was computed before the last change: ask again.
    #[error("the admission answer is stale: the cluster changed since it was computed")]
    Stale,
    /// A scenario could not be planned (the placer refused a change it was built to accept).
    #[error("a failure scenario could not be planned")]
    Plan(#[source] Box<RestartError>),
    /// The placer refused a change to its cluster.
    #[error("the placer refused a change")]
    Placer(#[source] Box<FitError>),
    /// Powering the VM on would break the reserve.
    #[error("{0}")]
    Refused(Box<Refusal>),
}

/// A VM's HA settings, for admission control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaVm {
    /// The VM's id.
    pub id: Uuid,
    /// Its priority and start-after.
    pub policy: HaPolicy,
}

/// A VM asking to power on.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerOn {
    /// Its name and size.
    pub request: VmRequest,
    /// What it needs from a host.
    pub needs: VmNeeds,
    /// Its HA settings, when HA is on for it.
    pub ha: Option<HaVm>,
}

/// vCPUs and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount {
    /// vCPUs.
    pub vcpus: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} vCPU, {} MiB", self.vcpus, self.memory_mib)
    }
}

/// One failure scenario as planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioReport {
    /// The hosts that fail, in name order.
    pub failed: Vec<String>,
    /// The HA VMs they run, with their total size.
    pub ha_vms: usize,
    /// Their vCPUs and memory.
    pub demand: Amount,
    /// Where each would restart: (VM, host), in the plan's order.
    pub restarts: Vec<(String, String)>,
    /// The HA VMs no host would take, in the plan's order.
    pub unplaced: Vec<String>,
    /// Their vCPUs and memory: what the cluster lacks for this scenario.
    pub shortfall: Amount,
    /// Why the first unplaced VM has no host, host by host (capacity, rules, networks): given
    /// with a refused power-on, `None` elsewhere (it costs a second plan).
    pub why: Option<String>,
}

impl ScenarioReport {
    /// True when every HA VM of the failed hosts would restart.
    pub fn holds(&self) -> bool {
        self.unplaced.is_empty()
    }
}

/// The reserve as a whole: every scenario and whether they all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReserveReport {
    /// Host failures tolerated (the cluster setting).
    pub tolerate: u32,
    /// The scenarios with HA VMs to restart, in order of their first host's name (with N = 1,
    /// one per host running HA VMs).
    pub scenarios: Vec<ScenarioReport>,
}

impl ReserveReport {
    /// True when every scenario holds.
    pub fn holds(&self) -> bool {
        self.scenarios.iter().all(ScenarioReport::holds)
    }

    /// The scenarios that do not hold.
    pub fn failing(&self) -> impl Iterator<Item = &ScenarioReport> {
        self.scenarios.iter().filter(|s| !s.holds())
    }
}

/// A power-on refused: it would leave the reserve broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The VM.
    pub vm: String,
    /// The host it asked for.
    pub host: String,
    /// Host failures tolerated.
    pub tolerate: u32,
    /// A scenario that would not hold.
    pub scenario: ScenarioReport,
    /// True when the scenario fails already, without this VM.
    pub already: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.tolerate == 1 { "" } else { "s" };
        write!(
            f,
            "powering on VM '{}' on host {} would break the HA reserve (tolerate {} host failure{s}): \
             if host{} {} failed, {} HA VM{} ({}) could not restart (short of {})",
            self.vm,
            self.host,
            self.tolerate,
            if self.scenario.failed.len() == 1 { "" } else { "s" },
            self.scenario.failed.join(", "),
            self.scenario.unplaced.len(),
            if self.scenario.unplaced.len() == 1 { "" } else { "s" },
            restart_names(&self.scenario.unplaced),
            self.scenario.shortfall,
        )?;
        if let Some(why) = &self.scenario.why {
            write!(f, ": {why}")?;
        }
        if self.already {
            f.write_str("; the reserve is broken already")?;
        }
        Ok(())
    }
}

fn restart_names(vms: &[String]) -> String {
    let shown: Vec<String> = vms.iter().take(4).map(|v| format!("'{v}'")).collect();
    let more = vms.len().saturating_sub(4);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// A power-on admitted by [`Admission::check_power_on`]: hand it to [`Admission::commit`] once
/// the VM is recorded.
#[derive(Debug, Clone)]
pub struct Admitted {
    generation: u64,
    vm: PowerOn,
    host: u32,
    outcomes: Vec<(u32, Outcome)>,
}

impl Admitted {
    /// The VM admitted.
    pub fn vm(&self) -> &str {
        &self.vm.request.vm
    }
}

/// A running VM as admission control keeps it.
#[derive(Debug, Clone)]
struct Vm {
    host: u32,
    request: VmRequest,
    needs: VmNeeds,
    ha: Option<HaVm>,
    /// Named by a must-rule.
    must: bool,
}

#[derive(Debug, Clone)]
struct Host {
    name: String,
    eligible: Eligibility,
    vms: Vec<String>,
    ha: Amount,
}

/// A scenario's plan, compactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Outcome {
    failed: Vec<u32>,
    ha_vms: usize,
    demand: Amount,
    /// (VM, host, its size).
    restarts: Vec<(String, u32, Amount)>,
    unplaced: Vec<String>,
    shortfall: Amount,
    /// Why the first unplaced VM has no host, when the plan was asked to explain.
    why: Option<String>,
}

impl Outcome {
    fn holds(&self) -> bool {
        self.unplaced.is_empty()
    }
}

/// Admission control's state: the running cluster, every scenario's plan, and the indexes
/// that tell which scenarios a change touches.
#[derive(Debug, Clone)]
pub struct Admission {
    tolerate: u32,
    placer: RulePlacer,
    hosts: Vec<Host>,
    host_index: HashMap<String, u32>,
    vms: HashMap<String, Vm>,
    /// VM → the VMs it shares a must-rule with.
    mates: HashMap<String, Vec<String>>,
    /// Scenario plans: with N = 1, one per host (index = host); with N > 1, one.
    outcomes: Vec<Outcome>,
    /// Per host, the scenarios whose plan restarts VMs there, and how much.
    users: Vec<HashMap<u32, Amount>>,
    /// Per host, its capabilities (the reserve in them is the capacity held back).
    caps: Vec<HostCaps>,
    failing: BTreeSet<u32>,
    /// Hosts by HA memory, most first (for N > 1).
    by_ha: BTreeSet<(Reverse<u64>, u32)>,
    generation: u64,
}

impl Admission {
    /// Plans every scenario for the cluster `model` (running VMs, rules; hosts as they are:
    /// disconnected or in maintenance hosts take no restart) with `fit`, the HA VMs `ha` (by
    /// name; VMs not listed are not HA) and `tolerate` host failures.
    pub fn new(
        model: &ClusterModel,
        fit: &FitTable,
        ha: &BTreeMap<String, HaVm>,
        tolerate: u32,
    ) -> Result<Admission, AdmissionError> {
        let mut must_model = model.clone();
        must_model.rules.retain(|r| r.strength == Strength::Must);
        must_model.traffic.clear();
        let placer = RulePlacer::new(&must_model, fit).map_err(AdmissionError::Model)?;
        let mut hosts: Vec<Host> = model
            .hosts
            .iter()
            .map(|h| Host {
                name: h.name.clone(),
                eligible: h.eligible,
                vms: Vec::new(),
                ha: Amount::default(),
            })
            .collect();
        let host_index: HashMap<String, u32> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i as u32))
            .collect();
        let mut mates: HashMap<String, Vec<String>> = HashMap::new();
        for r in &must_model.rules {
            for a in r.vms() {
                let e = mates.entry(a.clone()).or_default();
                e.extend(r.vms().iter().filter(|b| *b != a).cloned());
            }
        }
        for m in mates.values_mut() {
            m.sort();
            m.dedup();
        }
        let mut vms = HashMap::with_capacity(model.vms.len());
        for v in &model.vms {
            let host = *host_index
                .get(&v.host)
                .ok_or_else(|| AdmissionError::UnknownHost {
                    host: v.host.clone(),
                })?;
            let ha = ha.get(&v.name).cloned();
            let h = &mut hosts[host as usize];
            h.vms.push(v.name.clone());
            if ha.is_some() {
                h.ha.vcpus += u64::from(v.vcpus);
                h.ha.memory_mib += v.memory_mib;
            }
            vms.insert(
                v.name.clone(),
                Vm {
                    host,
                    request: VmRequest {
                        vm: v.name.clone(),
                        vcpus: v.vcpus,
                        memory_mib: v.memory_mib,
                    },
                    needs: fit.needs(&v.name).clone(),
                    ha,
                    must: mates.contains_key(&v.name),
                },
            );
        }
        for h in &mut hosts {
            h.vms.sort();
        }
        let by_ha = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (Reverse(h.ha.memory_mib), i as u32))
            .collect();
        let n = hosts.len();
        let caps = hosts.iter().map(|h| fit.caps(&h.name).clone()).collect();
        let mut a = Admission {
            tolerate,
            placer,
            hosts,
            host_index,
            vms,
            mates,
            outcomes: Vec::new(),
            users: vec![HashMap::new(); n],
            caps,
            failing: BTreeSet::new(),
            by_ha,
            generation: 0,
        };
        a.rebuild()?;
        Ok(a)
    }

    /// Plans every scenario again, from scratch.
    pub fn rebuild(&mut self) -> Result<(), AdmissionError> {
        let count = match self.tolerate {
            0 => 0,
            1 => self.hosts.len(),
            _ => 1,
        };
        self.outcomes = vec![Outcome::default(); count];
        for u in &mut self.users {
            u.clear();
        }
        self.failing.clear();
        for s in 0..count as u32 {
            let failed = self.failed_set(s);
            let o = self.plan_scenario(&failed)?;
            self.install(s, o);
        }
        self.generation += 1;
        Ok(())
    }

    /// Host failures tolerated.
    pub fn tolerate(&self) -> u32 {
        self.tolerate
    }

    /// The hosts that fail in scenario `s`.
    fn failed_set(&self, s: u32) -> Vec<u32> {
        match self.tolerate {
            0 => Vec::new(),
            1 => vec![s],
            n => {
                let mut f: Vec<u32> = self
                    .by_ha
                    .iter()
                    .take(n as usize)
                    .map(|&(_, h)| h)
                    .collect();
                f.sort_unstable();
                f
            }
        }
    }

    fn install(&mut self, s: u32, o: Outcome) {
        let old = std::mem::replace(&mut self.outcomes[s as usize], o);
        for (_, h, _) in &old.restarts {
            self.users[*h as usize].remove(&s);
        }
        for (_, h, size) in &self.outcomes[s as usize].restarts {
            let e = self.users[*h as usize].entry(s).or_default();
            e.vcpus += size.vcpus;
            e.memory_mib += size.memory_mib;
        }
        if self.outcomes[s as usize].holds() {
            self.failing.remove(&s);
        } else {
            self.failing.insert(s);
        }
    }

    /// The HA VMs of the `failed` hosts, as the restart plan takes them.
    fn to_restart(&self, failed: &[u32]) -> Vec<RestartVm> {
        failed
            .iter()
            .flat_map(|&h| self.hosts[h as usize].vms.iter())
            .filter_map(|name| {
                let v = self.vms.get(name)?;
                let ha = v.ha.as_ref()?;
                Some(RestartVm {
                    id: ha.id,
                    request: v.request.clone(),
                    needs: v.needs.clone(),
                    policy: ha.policy.clone(),
                })
            })
            .collect()
    }

    /// Takes the failed hosts out of the placer (ineligible, their HA and rule-named VMs
    /// removed), runs `f`, and puts everything back.
    fn with_failed<T>(
        &mut self,
        failed: &[u32],
        vms: &[RestartVm],
        f: impl FnOnce(&mut RulePlacer, &[RestartVm]) -> Result<T, RestartError>,
    ) -> Result<T, AdmissionError> {
        let placer_err = |e| AdmissionError::Placer(Box::new(e));
        let taken: Vec<String> = failed
            .iter()
            .flat_map(|&h| self.hosts[h as usize].vms.iter())
            .filter(|n| self.vms.get(*n).is_some_and(|v| v.ha.is_some() || v.must))
            .cloned()
            .collect();
        for &h in failed {
            let name = &self.hosts[h as usize].name;
            self.placer
                .set_eligibility(name, Eligibility::Disconnected)
                .map_err(placer_err)?;
        }
        for n in &taken {
            self.placer.remove(n).map_err(placer_err)?;
        }
        let out = f(&mut self.placer, vms);
        // Undo: the restarts placed, then the VMs taken out, then the hosts.
        for v in vms {
            if self.placer.host_of(&v.request.vm).is_some() {
                self.placer.remove(&v.request.vm).map_err(placer_err)?;
            }
        }
        for n in &taken {
            if let Some(v) = self.vms.get(n) {
                let host = &self.hosts[v.host as usize].name;
                self.placer
                    .commit(&v.request, &v.needs, host)
                    .map_err(placer_err)?;
            }
        }
        for &h in failed {
            let host = &self.hosts[h as usize];
            self.placer
                .set_eligibility(&host.name, host.eligible)
                .map_err(placer_err)?;
        }
        out.map_err(|e| AdmissionError::Plan(Box::new(e)))
    }

    fn plan_scenario(&mut self, failed: &[u32]) -> Result<Outcome, AdmissionError> {
        self.plan_scenario_with(failed, false)
    }

    /// [`Admission::plan_scenario`], with the reason the first unplaced VM has no host when
    /// `explain` (slower: every host is checked, not only until one fits).
    fn plan_scenario_with(
        &mut self,
        failed: &[u32],
        explain: bool,
    ) -> Result<Outcome, AdmissionError> {
        let vms = self.to_restart(failed);
        let mut o = Outcome {
            failed: failed.to_vec(),
            ha_vms: vms.len(),
            ..Outcome::default()
        };
        for v in &vms {
            o.demand.vcpus += u64::from(v.request.vcpus);
            o.demand.memory_mib += v.request.memory_mib;
        }
        if vms.is_empty() {
            return Ok(o);
        }
        let d = self.with_failed(failed, &vms, |p, vms| restart::decide_all(p, vms, explain))?;
        // The scenario's failed hosts go without saying.
        let gone: Vec<&str> = failed
            .iter()
            .map(|&h| self.hosts[h as usize].name.as_str())
            .collect();
        o.why = d
            .order
            .iter()
            .find_map(|&i| d.why.get(i).cloned().flatten())
            .map(|mut w| {
                for g in &mut w.groups {
                    g.hosts.retain(|h| !gone.contains(&h.as_str()));
                }
                w.groups.retain(|g| !g.hosts.is_empty());
                w.to_string()
            });
        for &i in &d.order {
            let v = &vms[i];
            match &d.host[i] {
                Some(h) => {
                    let hi = self.host_index.get(h).copied().unwrap_or(0);
                    let size = Amount {
                        vcpus: u64::from(v.request.vcpus),
                        memory_mib: v.request.memory_mib,
                    };
                    o.restarts.push((v.request.vm.clone(), hi, size));
                }
                None => {
                    o.unplaced.push(v.request.vm.clone());
                    o.shortfall.vcpus += u64::from(v.request.vcpus);
                    o.shortfall.memory_mib += v.request.memory_mib;
                }
            }
        }
        Ok(o)
    }

    fn report_of(&self, o: &Outcome) -> ScenarioReport {
        let name = |h: u32| self.hosts[h as usize].name.clone();
        ScenarioReport {
            failed: o.failed.iter().map(|&h| name(h)).collect(),
            ha_vms: o.ha_vms,
            demand: o.demand,
            restarts: o
                .restarts
                .iter()
                .map(|(v, h, _)| (v.clone(), name(*h)))
                .collect(),
            unplaced: o.unplaced.clone(),
            shortfall: o.shortfall,
            why: o.why.clone(),
        }
    }

    /// The reserve: every scenario with HA VMs to restart.
    pub fn report(&self) -> ReserveReport {
        ReserveReport {
            tolerate: self.tolerate,
            scenarios: self
                .outcomes
                .iter()
                .filter(|o| o.ha_vms > 0)
                .map(|o| self.report_of(o))
                .collect(),
        }
    }

    /// True when every scenario holds.
    pub fn holds(&self) -> bool {
        self.failing.is_empty()
    }

    /// The scenario where `host` fails (with N > 1, the one scenario whatever the host), if
    /// any.
    pub fn scenario_of(&self, host: &str) -> Option<ScenarioReport> {
        let h = *self.host_index.get(host)?;
        let s = match self.tolerate {
            0 => return None,
            1 => h,
            _ => 0,
        };
        self.outcomes.get(s as usize).map(|o| self.report_of(o))
    }

    /// The full restart plan of the scenario where `host` fails (with N > 1, the one
    /// scenario), each unplaced VM with the placement library's explanation.
    pub fn explain(&mut self, host: &str) -> Result<RestartPlan, AdmissionError> {
        let h = self.lookup(host)?;
        let failed = match self.tolerate {
            0 => return Ok(RestartPlan::default()),
            1 => vec![h],
            _ => self.failed_set(0),
        };
        let vms = self.to_restart(&failed);
        self.with_failed(&failed, &vms, restart::plan)
    }

    fn lookup(&self, host: &str) -> Result<u32, AdmissionError> {
        self.host_index
            .get(host)
            .copied()
            .ok_or_else(|| AdmissionError::UnknownHost {
                host: host.to_owned(),
            })
    }

    /// Adds `vm` on host `h` to the indexes (not the placer).
    fn add_entry(&mut self, vm: &PowerOn, h: u32) {
        let name = vm.request.vm.clone();
        let host = &mut self.hosts[h as usize];
        if let Err(p) = host.vms.binary_search(&name) {
            host.vms.insert(p, name.clone());
        }
        if vm.ha.is_some() {
            self.by_ha.remove(&(Reverse(host.ha.memory_mib), h));
            host.ha.vcpus += u64::from(vm.request.vcpus);
            host.ha.memory_mib += vm.request.memory_mib;
            self.by_ha.insert((Reverse(host.ha.memory_mib), h));
        }
        let must = self.mates.contains_key(&name);
        self.vms.insert(
            name,
            Vm {
                host: h,
                request: vm.request.clone(),
                needs: vm.needs.clone(),
                ha: vm.ha.clone(),
                must,
            },
        );
    }

    /// Takes `vm` out of the indexes (not the placer); returns what it was.
    fn remove_entry(&mut self, vm: &str) -> Option<Vm> {
        let v = self.vms.remove(vm)?;
        let h = v.host;
        let host = &mut self.hosts[h as usize];
        if let Ok(p) = host.vms.binary_search_by(|n| n.as_str().cmp(vm)) {
            host.vms.remove(p);
        }
        if v.ha.is_some() {
            self.by_ha.remove(&(Reverse(host.ha.memory_mib), h));
            host.ha.vcpus -= u64::from(v.request.vcpus);
            host.ha.memory_mib -= v.request.memory_mib;
            self.by_ha.insert((Reverse(host.ha.memory_mib), h));
        }
        Some(v)
    }

    /// The scenarios a power-on of `vm` on host `h` replans (see the module doc), the VM
    /// counted already.
    fn to_replan(&self, h: u32, vm: &str) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        match self.tolerate {
            0 => {}
            1 => {
                out.insert(h);
                for m in self.mates.get(vm).into_iter().flatten() {
                    if let Some(v) = self.vms.get(m) {
                        if v.ha.is_some() {
                            out.insert(v.host);
                        }
                    }
                }
            }
            _ => {
                let failed = self.failed_set(0);
                let mates_failed = self
                    .mates
                    .get(vm)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| self.vms.get(m))
                    .any(|v| failed.binary_search(&v.host).is_ok());
                if failed != self.outcomes[0].failed
                    || failed.binary_search(&h).is_ok()
                    || mates_failed
                {
                    out.insert(0);
                }
            }
        }
        // Plans on `h` that no longer fit there, or that do not hold.
        if let Some(free) = self.room(h) {
            for (&s, used) in &self.users[h as usize] {
                let o = &self.outcomes[s as usize];
                if !o.holds() || used.vcpus > free.vcpus || used.memory_mib > free.memory_mib {
                    out.insert(s);
                }
            }
        }
        out
    }

    /// Room for VMs on host `h` now: allocatable minus allocated minus its reserve.
    fn room(&self, h: u32) -> Option<Amount> {
        let name = &self.hosts[h as usize].name;
        let hosts = self.placer.hosts();
        let i = hosts.binary_search_by(|x| x.name.as_str().cmp(name)).ok()?;
        let x = &hosts[i];
        let r = self.caps[h as usize].reserve;
        Some(Amount {
            vcpus: u64::from(x.allocatable_vcpus())
                .saturating_sub(u64::from(x.allocated_vcpus))
                .saturating_sub(u64::from(r.vcpus)),
            memory_mib: x
                .allocatable_memory_mib()
                .saturating_sub(x.allocated_memory_mib)
                .saturating_sub(r.memory_mib),
        })
    }

    /// Whether `vm` may power on at `host` under the reserve. Changes nothing: on success,
    /// hand the answer to [`Admission::commit`] once the VM is recorded (or use
    /// [`Admission::power_on`] for both). Refused with [`AdmissionError::Refused`] when some
    /// scenario would not hold with the VM running, naming it.
    pub fn check_power_on(&mut self, vm: &PowerOn, host: &str) -> Result<Admitted, AdmissionError> {
        let h = self.lookup(host)?;
        let name = &vm.request.vm;
        if vm.request.vcpus == 0 || vm.request.memory_mib == 0 {
            return Err(AdmissionError::EmptyRequest { vm: name.clone() });
        }
        if self.vms.contains_key(name) || self.placer.host_of(name).is_some() {
            return Err(AdmissionError::AlreadyRunning { vm: name.clone() });
        }
        self.placer
            .commit(&vm.request, &vm.needs, host)
            .map_err(|e| AdmissionError::Placer(Box::new(e)))?;
        self.add_entry(vm, h);
        let touched = self.to_replan(h, name);
        let mut outcomes = Vec::with_capacity(touched.len());
        let mut result = Ok(());
        for &s in &touched {
            let failed = self.failed_set(s);
            match self.plan_scenario(&failed) {
                // A refusal says why: plan the failing scenario again, explaining.
                Ok(o) if !o.holds() => match self.plan_scenario_with(&failed, true) {
                    Ok(explained) => outcomes.push((s, explained)),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                },
                Ok(o) => outcomes.push((s, o)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Back to the state before the check.
        self.remove_entry(name);
        self.placer
            .remove(name)
            .map_err(|e| AdmissionError::Placer(Box::new(e)))?;
        result?;
        let newly = outcomes.iter().find(|(_, o)| !o.holds());
        let already = self
            .failing
            .iter()
            .find(|s| !touched.contains(s))
            .map(|&s| &self.outcomes[s as usize]);
        let refusal = |o: &Outcome, already: bool| {
            AdmissionError::Refused(Box::new(Refusal {
                vm: name.clone(),
                host: host.to_owned(),
                tolerate: self.tolerate,
                scenario: self.report_of(o),
                already,
            }))
        };
        if let Some((s, o)) = newly {
            return Err(refusal(o, self.failing.contains(s)));
        }
        if let Some(o) = already {
            return Err(refusal(o, true));
        }
        Ok(Admitted {
            generation: self.generation,
            vm: vm.clone(),
            host: h,
            outcomes,
        })
    }

    /// Records a power-on admitted by [`Admission::check_power_on`]; [`AdmissionError::Stale`]
    /// when anything changed since (ask again).
    pub fn commit(&mut self, admitted: Admitted) -> Result<(), AdmissionError> {
        if admitted.generation != self.generation {
            return Err(AdmissionError::Stale);
        }
        let host = self.hosts[admitted.host as usize].name.clone();
        self.placer
            .commit(&admitted.vm.request, &admitted.vm.needs, &host)
            .map_err(|e| AdmissionError::Placer(Box::new(e)))?;
        self.add_entry(&admitted.vm, admitted.host);
        for (s, o) in admitted.outcomes {
            self.install(s, o);
        }
        self.generation += 1;
        Ok(())
    }

    /// [`Admission::check_power_on`] then [`Admission::commit`].
    pub fn power_on(&mut self, vm: &PowerOn, host: &str) -> Result<(), AdmissionError> {
        let a = self.check_power_on(vm, host)?;
        self.commit(a)
    }

    /// Records that `vm` runs on `host` whatever the reserve says: a VM that runs already
    /// (restarted by HA, which is the reserve being used; migrated; counted late). The
    /// scenarios it touches are planned again, as for a power-on.
    pub fn add(&mut self, vm: &PowerOn, host: &str) -> Result<(), AdmissionError> {
        match self.check_power_on(vm, host) {
            Ok(a) => self.commit(a),
            Err(AdmissionError::Refused(_)) => {
                let h = self.lookup(host)?;
                self.placer
                    .commit(&vm.request, &vm.needs, host)
                    .map_err(|e| AdmissionError::Placer(Box::new(e)))?;
                self.add_entry(vm, h);
                self.generation += 1;
                let again = self.to_replan(h, &vm.request.vm);
                self.replan(again)
            }
            Err(e) => Err(e),
        }
    }

    /// Records that host `host` may now receive VMs or not (`eligible`: its connection or
    /// maintenance changed) and offers `caps` (a trunk, an MTU, CPU models or a reserve
    /// changed), without planning every scenario again:
    /// - where the host takes less (it may no longer receive VMs, or lost a capability), every
    ///   scenario whose plan restarts VMs there is planned again; where only its room shrank
    ///   (a larger reserve), those whose restarts there no longer fit in it (and those that do
    ///   not hold);
    /// - where it offers more (it may receive VMs again, gained a capability, a smaller
    ///   reserve), every scenario that does not hold is planned again (it may hold now);
    /// - every other plan stays: a plan that holds and does not use the host is still valid,
    ///   and one that does not hold is still the plan from scratch (none of its placements
    ///   chose the host, and a host that takes less only drops out of the spreading order or
    ///   moves later in it).
    ///
    /// A change both ways does both. The host's own scenario is not touched: a failed host
    /// takes no restart whatever it offers.
    pub fn set_host(
        &mut self,
        host: &str,
        eligible: Eligibility,
        caps: HostCaps,
    ) -> Result<(), AdmissionError> {
        let h = self.lookup(host)?;
        let placer_err = |e| AdmissionError::Placer(Box::new(e));
        let was_ok = self.hosts[h as usize].eligible == Eligibility::Ok;
        let is_ok = eligible == Eligibility::Ok;
        let old = &self.caps[h as usize];
        let lost = |old: &[String], new: &[String]| old.iter().any(|m| !new.contains(m));
        // A host CPU that changed name is lost (VMs of the old one no longer fit) and gained.
        let cpu_changed = old.host_cpu != caps.host_cpu || old.kvm != caps.kvm;
        let models_lost = lost(&old.cpu_models, &caps.cpu_models)
            || lost(&old.machine_types, &caps.machine_types)
            || ((old.host_cpu.is_some() || old.kvm.is_some()) && cpu_changed);
        let models_gained = lost(&caps.cpu_models, &old.cpu_models)
            || lost(&caps.machine_types, &old.machine_types)
            || ((caps.host_cpu.is_some() || caps.kvm.is_some()) && cpu_changed);
        let fit_lost = (was_ok && !is_ok)
            || (old.vlan_trunk && !caps.vlan_trunk)
            || caps.underlay_mtu < old.underlay_mtu
            || models_lost;
        let fit_gained = (!was_ok && is_ok)
            || (!old.vlan_trunk && caps.vlan_trunk)
            || caps.underlay_mtu > old.underlay_mtu
            || models_gained;
        let room_lost = caps.reserve.vcpus > old.reserve.vcpus
            || caps.reserve.memory_mib > old.reserve.memory_mib;
        let room_gained = caps.reserve.vcpus < old.reserve.vcpus
            || caps.reserve.memory_mib < old.reserve.memory_mib;
        if self.hosts[h as usize].eligible != eligible {
            self.placer
                .set_eligibility(host, eligible)
                .map_err(placer_err)?;
            self.hosts[h as usize].eligible = eligible;
        }
        if self.caps[h as usize] != caps {
            self.placer
                .set_caps(host, caps.clone())
                .map_err(placer_err)?;
            self.caps[h as usize] = caps;
        }
        let mut again = BTreeSet::new();
        if fit_lost {
            again.extend(self.users[h as usize].keys().copied());
        } else if room_lost {
            let free = self.room(h).unwrap_or_default();
            for (&s, used) in &self.users[h as usize] {
                let o = &self.outcomes[s as usize];
                if !o.holds() || used.vcpus > free.vcpus || used.memory_mib > free.memory_mib {
                    again.insert(s);
                }
            }
        }
        if fit_gained || room_gained {
            again.extend(self.failing.iter().copied());
        }
        self.generation += 1;
        self.replan(again)
    }

    /// Plans the scenarios `again` again and keeps their plans.
    fn replan(&mut self, again: BTreeSet<u32>) -> Result<(), AdmissionError> {
        for s in again {
            let failed = self.failed_set(s);
            let o = self.plan_scenario(&failed)?;
            self.install(s, o);
        }
        Ok(())
    }

    /// True when `vm` is counted as running.
    pub fn runs(&self, vm: &str) -> bool {
        self.vms.contains_key(vm)
    }

    /// Records that `vm` stopped or was deleted (or a power-on admitted was not recorded after
    /// all): its host's scenario and every failing scenario are planned again.
    pub fn remove(&mut self, vm: &str) -> Result<(), AdmissionError> {
        let h = self
            .vms
            .get(vm)
            .map(|v| v.host)
            .ok_or_else(|| AdmissionError::NotRunning { vm: vm.to_owned() })?;
        self.placer
            .remove(vm)
            .map_err(|e| AdmissionError::Placer(Box::new(e)))?;
        self.remove_entry(vm);
        let mut again: BTreeSet<u32> = self.failing.clone();
        match self.tolerate {
            0 => {}
            1 => {
                again.insert(h);
            }
            _ => {
                if self.failed_set(0) != self.outcomes[0].failed
                    || self.outcomes[0].failed.contains(&h)
                {
                    again.insert(0);
                }
            }
        }
        self.generation += 1;
        self.replan(again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinfra_placement::{HostModel, Rule, VmModel};
    use vinfra_types::{AllocationRatios, HostCapacity};

    const GIB: u64 = 1024;

    fn host(name: &str, gib: u64) -> HostModel {
        HostModel {
            name: name.into(),
            capacity: HostCapacity {
                cores: 32,
                memory_mib: gib * GIB,
            },
            ratios: AllocationRatios {
                cpu: 1.0,
                memory: 1.0,
            },
            eligible: Eligibility::Ok,
        }
    }

    fn vm(name: &str, host: &str, gib: u64) -> VmModel {
        VmModel {
            name: name.into(),
            host: host.into(),
            vcpus: 1,
            memory_mib: gib * GIB,
            cpu_demand: 0.0,
            memory_demand_mib: 0,
        }
    }

    fn ha(names: &[&str]) -> BTreeMap<String, HaVm> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    (*n).to_string(),
                    HaVm {
                        id: Uuid::from_u128(i as u128 + 1),
                        policy: HaPolicy::default(),
                    },
                )
            })
            .collect()
    }

    fn power_on(name: &str, gib: u64, is_ha: bool) -> PowerOn {
        PowerOn {
            request: VmRequest {
                vm: name.into(),
                vcpus: 1,
                memory_mib: gib * GIB,
            },
            needs: VmNeeds::default(),
            ha: is_ha.then(|| HaVm {
                id: Uuid::from_u128(99),
                policy: HaPolicy::default(),
            }),
        }
    }

    /// Three 16-GiB hosts: a (8 GiB, HA) on h0, b (4 GiB, HA) on h1, c (4 GiB, not HA) on h2.
    fn three() -> ClusterModel {
        ClusterModel {
            hosts: vec![host("h0", 16), host("h1", 16), host("h2", 16)],
            vms: vec![vm("a", "h0", 8), vm("b", "h1", 4), vm("c", "h2", 4)],
            ..ClusterModel::default()
        }
    }

    #[test]
    fn each_host_failure_is_planned_and_reported() {
        let adm = Admission::new(&three(), &FitTable::default(), &ha(&["a", "b"]), 1).unwrap();
        assert!(adm.holds());
        let r = adm.report();
        assert!(r.holds());
        // h2 runs no HA VM: no scenario shown for it.
        let failed: Vec<&str> = r.scenarios.iter().map(|s| s.failed[0].as_str()).collect();
        assert_eq!(failed, vec!["h0", "h1"]);
        // a restarts where most memory is free: h1 (12 GiB) ties h2 (12 GiB), by name.
        assert_eq!(r.scenarios[0].restarts, vec![("a".into(), "h1".into())]);
        assert_eq!(
            r.scenarios[0].demand,
            Amount {
                vcpus: 1,
                memory_mib: 8 * GIB
            }
        );
    }

    #[test]
    fn a_power_on_that_breaks_the_reserve_is_refused_and_names_it() {
        let mut adm = Admission::new(&three(), &FitTable::default(), &ha(&["a", "b"]), 1).unwrap();
        // 10 GiB on h2 leaves h1 (12 free) and h2 (2 free): a (8) still restarts on h1 if h0
        // fails; but if h1 fails, b (4) goes to h0 (8 free). It holds.
        adm.power_on(&power_on("d", 10, false), "h2").unwrap();
        assert!(adm.holds());
        // 6 GiB more on h1 leaves h1 6 free, h2 2 free: a (8) cannot restart if h0 fails.
        let e = adm
            .check_power_on(&power_on("e", 6, false), "h1")
            .unwrap_err();
        let AdmissionError::Refused(r) = &e else {
            panic!("{e}")
        };
        assert_eq!(r.scenario.failed, vec!["h0".to_string()]);
        assert_eq!(r.scenario.unplaced, vec!["a".to_string()]);
        assert_eq!(
            r.scenario.shortfall,
            Amount {
                vcpus: 1,
                memory_mib: 8 * GIB
            }
        );
        assert!(!r.already);
        assert_eq!(
            e.to_string(),
            "powering on VM 'e' on host h1 would break the HA reserve (tolerate 1 host failure): \
             if host h0 failed, 1 HA VM ('a') could not restart (short of 1 vCPU, 8192 MiB): \
             no host can take VM 'a' (1 vCPU, 8192 MiB): h1, h2: short of capacity (closest, h1: \
             memory short by 2048 MiB (allocated 10240 of 16384 MiB allocatable = 16384 MiB \
             physical × ratio 1))"
        );
        // Nothing changed: the same check again gives the same answer, the reserve holds.
        assert!(adm.holds());
        assert_eq!(
            adm.check_power_on(&power_on("e", 6, false), "h1").err(),
            Some(e)
        );
        // An HA VM of 2 GiB on h1 fits (its own host's failure included).
        adm.power_on(&power_on("f", 2, true), "h1").unwrap();
        let s = adm.scenario_of("h1").unwrap();
        assert_eq!(s.ha_vms, 2);
        assert!(s.holds());
    }

    #[test]
    fn a_vm_added_whatever_the_reserve_is_counted() {
        let mut a = Admission::new(&three(), &FitTable::default(), &ha(&["a", "b"]), 1).unwrap();
        a.power_on(&power_on("d", 10, false), "h2").unwrap();
        let e = power_on("e", 6, false);
        assert!(matches!(
            a.check_power_on(&e, "h1"),
            Err(AdmissionError::Refused(_))
        ));
        a.add(&e, "h1").unwrap();
        assert!(a.runs("e"));
        assert!(!a.holds());
        assert_eq!(a.report().failing().next().unwrap().failed, vec!["h0"]);
        a.remove("e").unwrap();
        assert!(!a.runs("e"));
        assert!(a.holds());
    }

    #[test]
    fn an_answer_computed_before_a_change_is_stale() {
        let mut adm = Admission::new(&three(), &FitTable::default(), &ha(&["a", "b"]), 1).unwrap();
        let first = adm.check_power_on(&power_on("x", 1, true), "h2").unwrap();
        let second = adm.check_power_on(&power_on("y", 1, true), "h2").unwrap();
        assert_eq!(first.vm(), "x");
        adm.commit(first).unwrap();
        assert_eq!(adm.commit(second), Err(AdmissionError::Stale));
        assert_eq!(
            adm.check_power_on(&power_on("x", 1, true), "h0")
                .unwrap_err(),
            AdmissionError::AlreadyRunning { vm: "x".into() }
        );
        assert!(matches!(
            adm.check_power_on(&power_on("z", 1, true), "nowhere"),
            Err(AdmissionError::UnknownHost { .. })
        ));
        assert!(matches!(
            adm.check_power_on(&power_on("z", 0, true), "h0"),
            Err(AdmissionError::EmptyRequest { .. })
        ));
    }

    #[test]
    fn a_stop_that_makes_room_repairs_a_broken_reserve() {
        let mut m = three();
        m.vms.push(vm("big", "h1", 8));
        m.vms.push(vm("big2", "h2", 10));
        let mut adm = Admission::new(&m, &FitTable::default(), &ha(&["a", "b"]), 1).unwrap();
        // h0 failing: a (8) finds h1 with 4 free, h2 with 2 free: broken.
        assert!(!adm.holds());
        let e = adm
            .check_power_on(&power_on("tiny", 1, false), "h0")
            .unwrap_err();
        assert!(matches!(&e, AdmissionError::Refused(r) if r.already), "{e}");
        adm.remove("big").unwrap();
        assert!(adm.holds());
        adm.power_on(&power_on("tiny", 1, false), "h0").unwrap();
        assert_eq!(
            adm.remove("ghost"),
            Err(AdmissionError::NotRunning { vm: "ghost".into() })
        );
    }

    #[test]
    fn must_anti_affinity_counts_in_the_reserve() {
        // a and b must be apart. If h0 fails, a can only go to h2 (b is on h1).
        let mut m = three();
        m.rules
            .push(Rule::anti_affinity("apart", Strength::Must, &["a", "b"]));
        let mut adm = Admission::new(&m, &FitTable::default(), &ha(&["a", "b"]), 1).unwrap();
        assert_eq!(
            adm.scenario_of("h0").unwrap().restarts,
            vec![("a".to_string(), "h2".to_string())]
        );
        // 6 GiB on h2 leaves it 6 free: a (8) has no host apart from b.
        let e = adm
            .check_power_on(&power_on("e", 6, false), "h2")
            .unwrap_err();
        assert!(matches!(e, AdmissionError::Refused(_)), "{e}");
        // The refusal says that the rule, not only capacity, keeps a from h1.
        let text = e.to_string();
        assert!(text.contains("h1: ") && text.contains("'apart'"), "{text}");
        let plan = adm.explain("h0").unwrap();
        assert!(plan.unplaced.is_empty());
        assert!(adm.holds());
    }

    #[test]
    fn with_two_failures_the_hosts_with_the_most_ha_memory_fail_together() {
        let mut m = three();
        m.hosts.push(host("h3", 32));
        let mut adm = Admission::new(&m, &FitTable::default(), &ha(&["a", "b"]), 2).unwrap();
        let r = adm.report();
        assert_eq!(r.scenarios.len(), 1);
        assert_eq!(
            r.scenarios[0].failed,
            vec!["h0".to_string(), "h1".to_string()]
        );
        assert!(r.holds());
        // A 10-GiB HA VM on h3 makes h3 one of the two: losing h0 and h3, g (10) restarts on
        // h1 (12 free), then a (8) on h2 (12 free).
        adm.power_on(&power_on("g", 10, true), "h3").unwrap();
        let s = &adm.report().scenarios[0];
        assert_eq!(s.failed, vec!["h0".to_string(), "h3".to_string()]);
        assert!(s.holds());
        // Nothing tolerated: nothing planned, everything admitted.
        let mut none = Admission::new(&m, &FitTable::default(), &ha(&["a", "b"]), 0).unwrap();
        assert!(none.report().scenarios.is_empty());
        none.power_on(&power_on("h", 30, true), "h3").unwrap();
    }
}
