//! Placement under rules and host fit, on the same [`ClusterModel`] the balancer uses.
//!
//! [`RulePlacer`] indexes a model with its [`FitTable`] and answers, for a VM, every question a
//! console asks, each in one call ([`RulePlacer::decide`] with a [`Target`]):
//!
//! - [`Target::Any`]: which host takes this new VM;
//! - [`Target::Host`] / [`Target::Start`] / [`Target::Migrate`]`(Some(host))`: may this host
//!   take it (create on a named host, start on its host, migrate to a named host);
//! - [`Target::Migrate`]`(None)`: where does this running VM migrate to;
//! - [`Target::Planned`]: may this host take it as one move of a balancing plan (fit only:
//!   the plan keeps the must-rules as a whole).
//!
//! Every answer comes from the one fit check of [`crate::fit`] (capabilities, availability,
//! must-rules, capacity). A refusal is a [`FitError`]: for a named host, the typed reason; for
//! "any host", a [`NoHost`] explanation naming why each host cannot.
//!
//! A VM that no rule names takes the fast path: [`crate::place::place`]'s spreading choice (most
//! free memory after placement, then most free vCPUs, then name) among the hosts whose
//! capabilities meet its needs, from the [`Cluster`] index. A VM that rules name goes to a host
//! that fits and breaks no must-rule (or, migrating, makes none worse) and, among those, to one
//! breaking the fewest should-rules, then by the same spreading order. The placer keeps its
//! index up to date as VMs are placed ([`RulePlacer::commit`]), migrate
//! ([`RulePlacer::migrated`]) and stop ([`RulePlacer::remove`]), so a long-lived placer
//! answers in O(log hosts) when rules leave most hosts open.

use std::cmp::Ordering;

use crate::fit::{FitTable, HostCaps, NoHost, Unfit, VmNeeds};
use crate::host::{Eligibility, HostInput, Placement, VmRequest};
use crate::model::{ClusterModel, ModelError};
use crate::place::{check_request, placement, Cluster, PlacementError};
use crate::rules::Kind;
use crate::state::{State, VmData};

/// Hosts from the spreading order compared when rules are in play.
const SPREAD_CHOICES: usize = 16;
/// A should-run-on host set at most this large is tried in full.
const PREFERRED_SET: usize = 64;

/// What a VM asks a host for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A new VM: the best host that takes it.
    Any,
    /// A new VM on this host (the operator named it).
    Host(&'a str),
    /// A stopped VM starting on its host, this one. Maintenance keeps new VMs away, not the
    /// start of one already placed there.
    Start(&'a str),
    /// A running VM migrating live: to this host, or to the best one that takes it (`None`).
    /// The must-rules are checked either way.
    Migrate(Option<&'a str>),
    /// A running VM migrating live to this host as one move of a balancing plan: fit is
    /// checked, must-rules are not. The plan keeps them as a whole, and moves a must-affinity
    /// group one VM at a time (the first to go breaks the rule until the others follow).
    Planned(&'a str),
}

/// Why a VM cannot go where it asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// The model is invalid or its rules contradict each other.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The host named is not in the model.
    #[error("host {host} is not registered")]
    UnknownHost {
        /// The name.
        host: String,
    },
    /// The request asks for no vCPU or no memory.
    #[error("VM '{vm}' must ask for at least 1 vCPU and 1 MiB of memory (asked {vcpus} vCPU, {memory_mib} MiB)")]
    EmptyRequest {
        /// The VM.
        vm: String,
        /// vCPUs asked.
        vcpus: u32,
        /// Memory asked, MiB.
        memory_mib: u64,
    },
    /// A new VM (or one starting) already runs.
    #[error("VM '{vm}' already runs on host {host}")]
    AlreadyPlaced {
        /// The VM.
        vm: String,
        /// Where it runs.
        host: String,
    },
    /// A VM asked to migrate is not running.
    #[error("VM '{vm}' is not running")]
    NotRunning {
        /// The VM.
        vm: String,
    },
    /// The host named cannot take the VM.
    #[error("host {host} cannot take VM '{vm}' ({vcpus} vCPU, {memory_mib} MiB): {unfit}")]
    HostUnfit {
        /// The host.
        host: String,
        /// The VM.
        vm: String,
        /// Its vCPUs.
        vcpus: u32,
        /// Its memory, MiB.
        memory_mib: u64,
        /// Why.
        unfit: Unfit,
    },
    /// No host can take the VM; says why for each.
    #[error("{0}")]
    NoHost(NoHost),
}

/// Who asks: a VM not running yet (new or starting) or a running one (migrating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    New,
    Start,
    Running(u32),
}

/// Places VMs on a model under its rules and host fit, and keeps up with them.
#[derive(Debug, Clone)]
pub struct RulePlacer {
    s: State,
    cluster: Cluster,
    /// Model host index per cluster index (the cluster sorts hosts by name).
    model_host: Vec<u32>,
    /// Cluster index per model host index.
    cluster_host: Vec<usize>,
}

impl RulePlacer {
    /// Validates `model` with the capabilities and needs of `fit`, and indexes it.
    pub fn new(model: &ClusterModel, fit: &FitTable) -> Result<RulePlacer, ModelError> {
        let s = State::new(model, fit)?;
        let inputs: Vec<(HostInput, HostCaps)> = model
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    HostInput {
                        name: h.name.clone(),
                        capacity: h.capacity,
                        ratios: h.ratios,
                        allocated_vcpus: u32::try_from(s.used_vcpus[i]).unwrap_or(u32::MAX),
                        allocated_memory_mib: s.used_memory[i],
                        eligible: h.eligible,
                    },
                    s.hosts[i].caps.clone(),
                )
            })
            .collect();
        // The model's host names are unique (checked above).
        let cluster = Cluster::with_caps(inputs).map_err(|e| match e {
            PlacementError::DuplicateHost { host } => ModelError::DuplicateHost { host },
            _ => ModelError::DuplicateHost {
                host: String::new(),
            },
        })?;
        let model_host: Vec<u32> = cluster
            .hosts()
            .iter()
            .map(|h| s.host_by_name.get(&h.name).copied().unwrap_or(0))
            .collect();
        let mut cluster_host = vec![0usize; model_host.len()];
        for (i, &h) in model_host.iter().enumerate() {
            cluster_host[h as usize] = i;
        }
        Ok(RulePlacer {
            s,
            cluster,
            model_host,
            cluster_host,
        })
    }

    /// The host `vm` runs on, if it runs.
    pub fn host_of(&self, vm: &str) -> Option<&str> {
        let v = *self.s.vm_by_name.get(vm)?;
        Some(&self.s.host_names[self.s.at[v as usize] as usize])
    }

    /// The hosts in name order, with their allocation.
    pub fn hosts(&self) -> &[HostInput] {
        self.cluster.hosts()
    }

    /// Where `vm` (of size `req`, needing `needs`) may go for `target`, or why not. Changes
    /// nothing: [`RulePlacer::commit`] or [`RulePlacer::migrated`] records the outcome.
    pub fn decide(
        &self,
        req: &VmRequest,
        needs: &VmNeeds,
        target: Target<'_>,
    ) -> Result<Placement, FitError> {
        self.decide_or_not(req, needs, target, true)?
            .ok_or_else(|| FitError::NoHost(NoHost::new(req, Vec::new())))
    }

    /// [`RulePlacer::decide`], except that a VM no host takes is `Ok(None)`, without the
    /// explanation (which checks every host): for callers that try many placements and
    /// explain only some refusals (HA admission control).
    pub fn find(
        &self,
        req: &VmRequest,
        needs: &VmNeeds,
        target: Target<'_>,
    ) -> Result<Option<Placement>, FitError> {
        self.decide_or_not(req, needs, target, false)
    }

    /// [`RulePlacer::decide`]; with `explain` false, no host is `Ok(None)`.
    fn decide_or_not(
        &self,
        req: &VmRequest,
        needs: &VmNeeds,
        target: Target<'_>,
        explain: bool,
    ) -> Result<Option<Placement>, FitError> {
        check_request(req).map_err(|_| FitError::EmptyRequest {
            vm: req.vm.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
        })?;
        let running = self.s.vm_by_name.get(&req.vm).copied();
        let asker = match (target, running) {
            (Target::Migrate(_) | Target::Planned(_), Some(v)) => Asker::Running(v),
            (Target::Migrate(_) | Target::Planned(_), None) => {
                return Err(FitError::NotRunning { vm: req.vm.clone() })
            }
            (_, Some(v)) => {
                return Err(FitError::AlreadyPlaced {
                    vm: req.vm.clone(),
                    host: self.s.host_names[self.s.at[v as usize] as usize].clone(),
                })
            }
            (Target::Start(_), None) => Asker::Start,
            (_, None) => Asker::New,
        };
        let named = match target {
            Target::Host(h) | Target::Start(h) | Target::Migrate(Some(h)) | Target::Planned(h) => {
                Some(h)
            }
            Target::Any | Target::Migrate(None) => None,
        };
        let rules = match target {
            Target::Planned(_) => Vec::new(),
            _ => self.rules_of(asker, &req.vm),
        };
        let i = match named {
            Some(host) => {
                let i = self
                    .cluster
                    .lookup(host)
                    .map_err(|_| FitError::UnknownHost {
                        host: host.to_owned(),
                    })?;
                self.check(i, req, needs, asker, &rules)
                    .map_err(|unfit| FitError::HostUnfit {
                        host: host.to_owned(),
                        vm: req.vm.clone(),
                        vcpus: req.vcpus,
                        memory_mib: req.memory_mib,
                        unfit,
                    })?;
                i
            }
            None => {
                let choice = if rules.is_empty() {
                    let exclude = match asker {
                        Asker::Running(v) => {
                            Some(self.cluster_host[self.s.at[v as usize] as usize])
                        }
                        _ => None,
                    };
                    self.cluster.choose(req, needs, exclude)
                } else {
                    self.choose_under_rules(req, needs, asker, &rules)
                };
                match choice {
                    Some(i) => i,
                    None if explain => {
                        return Err(FitError::NoHost(self.explain(req, needs, asker, &rules)))
                    }
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(placement(&self.cluster.hosts()[i], req)))
    }

    /// Records that `req`'s VM now runs on `host` (created or started there): its allocation
    /// counts there and its rules follow it.
    pub fn commit(&mut self, req: &VmRequest, needs: &VmNeeds, host: &str) -> Result<(), FitError> {
        if let Some(h) = self.host_of(&req.vm) {
            return Err(FitError::AlreadyPlaced {
                vm: req.vm.clone(),
                host: h.to_owned(),
            });
        }
        let i = self.lookup(host)?;
        self.cluster.commit(i, req.vcpus, req.memory_mib);
        self.s.add_vm(
            &req.vm,
            VmData {
                vcpus: req.vcpus,
                memory: req.memory_mib,
                cpu_demand: 0.0,
                memory_demand: 0.0,
            },
            needs.clone(),
            self.model_host[i],
        );
        Ok(())
    }

    /// Picks a host for a new VM ([`Target::Any`]) and records it there.
    pub fn place(&mut self, req: &VmRequest, needs: &VmNeeds) -> Result<Placement, FitError> {
        let placed = self.decide(req, needs, Target::Any)?;
        self.commit(req, needs, &placed.host)?;
        Ok(placed)
    }

    /// Records that `vm` now runs on `host` (its migration completed).
    pub fn migrated(&mut self, vm: &str, host: &str) -> Result<(), FitError> {
        let v = self.running(vm)?;
        let to = self.lookup(host)?;
        let from = self.cluster_host[self.s.at[v as usize] as usize];
        let d = &self.s.vms[v as usize];
        let (vcpus, memory) = (d.vcpus, d.memory);
        self.release(from, vcpus, memory);
        self.cluster.commit(to, vcpus, memory);
        self.s.apply(v, self.model_host[to]);
        Ok(())
    }

    /// Records that `vm` stopped or was deleted: its allocation is freed and its rules wait for
    /// it again.
    pub fn remove(&mut self, vm: &str) -> Result<(), FitError> {
        let v = self.running(vm)?;
        let from = self.cluster_host[self.s.at[v as usize] as usize];
        let d = &self.s.vms[v as usize];
        let (vcpus, memory) = (d.vcpus, d.memory);
        self.release(from, vcpus, memory);
        self.s.remove_vm(v);
        Ok(())
    }

    /// Changes whether `host` may receive VMs (connection or maintenance changed).
    pub fn set_eligibility(&mut self, host: &str, eligible: Eligibility) -> Result<(), FitError> {
        let i = self.lookup(host)?;
        let name = self.cluster.hosts()[i].name.clone();
        let _ = self.cluster.set_eligibility(&name, eligible);
        self.s.set_eligibility(self.model_host[i], eligible);
        Ok(())
    }

    /// Changes `host`'s capabilities (its agent reported a trunk or an MTU, a reserve changed).
    pub fn set_caps(&mut self, host: &str, caps: HostCaps) -> Result<(), FitError> {
        let i = self.lookup(host)?;
        let name = self.cluster.hosts()[i].name.clone();
        let _ = self.cluster.set_caps(&name, caps.clone());
        self.s.set_caps(self.model_host[i], caps);
        Ok(())
    }

    fn lookup(&self, host: &str) -> Result<usize, FitError> {
        self.cluster
            .lookup(host)
            .map_err(|_| FitError::UnknownHost {
                host: host.to_owned(),
            })
    }

    fn running(&self, vm: &str) -> Result<u32, FitError> {
        self.s
            .vm_by_name
            .get(vm)
            .copied()
            .ok_or_else(|| FitError::NotRunning { vm: vm.to_owned() })
    }

    fn release(&mut self, i: usize, vcpus: u32, memory: u64) {
        let name = self.cluster.hosts()[i].name.clone();
        // The placer counted the VM there: the release cannot be too large.
        let _ = self.cluster.release(&name, vcpus, memory);
    }

    /// Rules naming the VM: those waiting for it, or those of the running VM.
    fn rules_of(&self, asker: Asker, vm: &str) -> Vec<u32> {
        match asker {
            Asker::Running(v) => self.s.vm_rules[v as usize].clone(),
            Asker::New | Asker::Start => self.s.pending.get(vm).cloned().unwrap_or_default(),
        }
    }

    /// How much rule `r`'s violation grows with the VM on model host `h`.
    fn rule_growth(&self, asker: Asker, r: usize, h: u32) -> i64 {
        match asker {
            Asker::Running(v) => self.s.rule_delta(r, self.s.at[v as usize], h),
            Asker::New | Asker::Start => self.s.add_delta(r, h),
        }
    }

    /// The must-rules the VM would break (further) on model host `h`.
    fn forbidding(&self, asker: Asker, rules: &[u32], h: u32) -> Vec<String> {
        rules
            .iter()
            .map(|&r| r as usize)
            .filter(|&r| self.s.rules[r].must && self.rule_growth(asker, r, h) > 0)
            .map(|r| self.s.rules[r].name.clone())
            .collect()
    }

    /// Should-rule violations the VM adds on model host `h`.
    fn should_cost(&self, asker: Asker, rules: &[u32], h: u32) -> i64 {
        rules
            .iter()
            .map(|&r| r as usize)
            .filter(|&r| !self.s.rules[r].must)
            .map(|r| self.rule_growth(asker, r, h))
            .sum()
    }

    /// The one fit check for cluster host `i`.
    fn check(
        &self,
        i: usize,
        req: &VmRequest,
        needs: &VmNeeds,
        asker: Asker,
        rules: &[u32],
    ) -> Result<(), Unfit> {
        let h = self.model_host[i];
        if let Asker::Running(v) = asker {
            if self.s.at[v as usize] == h {
                return Err(Unfit::Source);
            }
        }
        self.cluster.view(i).check(
            req.vcpus,
            req.memory_mib,
            needs,
            asker == Asker::Start,
            || self.forbidding(asker, rules, h),
        )
    }

    /// [`RulePlacer::check`]`.is_ok()`, without building the reason.
    fn fits(
        &self,
        i: usize,
        req: &VmRequest,
        needs: &VmNeeds,
        asker: Asker,
        rules: &[u32],
    ) -> bool {
        let h = self.model_host[i];
        if let Asker::Running(v) = asker {
            if self.s.at[v as usize] == h {
                return false;
            }
        }
        self.cluster.view(i).fits(
            req.vcpus,
            req.memory_mib,
            needs,
            asker == Asker::Start,
            || {
                rules.iter().any(|&r| {
                    let r = r as usize;
                    self.s.rules[r].must && self.rule_growth(asker, r, h) > 0
                })
            },
        )
    }

    /// Model hosts where members of rule `r` other than the asker run.
    fn member_hosts(&self, asker: Asker, r: usize) -> Vec<u32> {
        let me = match asker {
            Asker::Running(v) => Some(v),
            _ => None,
        };
        let mut hs: Vec<u32> = self.s.rules[r]
            .members
            .iter()
            .filter(|&&m| Some(m) != me)
            .map(|&m| self.s.at[m as usize])
            .collect();
        hs.sort_unstable();
        hs.dedup();
        hs
    }

    fn choose_under_rules(
        &self,
        req: &VmRequest,
        needs: &VmNeeds,
        asker: Asker,
        rules: &[u32],
    ) -> Option<usize> {
        let mut allowed: Option<Vec<u32>> = None;
        let mut preferred: Vec<u32> = Vec::new();
        let restrict = |allowed: &mut Option<Vec<u32>>, set: &[u32]| {
            *allowed = Some(match allowed.take() {
                None => set.to_vec(),
                Some(a) => a
                    .into_iter()
                    .filter(|h| set.binary_search(h).is_ok())
                    .collect(),
            });
        };
        for &r in rules {
            let r = r as usize;
            let rule = &self.s.rules[r];
            match (&rule.kind, rule.must) {
                (Kind::Affinity, true) => {
                    let hs = self.member_hosts(asker, r);
                    if !hs.is_empty() {
                        restrict(&mut allowed, &hs);
                    }
                }
                (Kind::RunOn(set), true) => restrict(&mut allowed, set),
                (Kind::Affinity, false) => preferred.extend(self.member_hosts(asker, r)),
                (Kind::RunOn(set), false) if set.len() <= PREFERRED_SET => {
                    preferred.extend_from_slice(set)
                }
                _ => {}
            }
        }
        let ok = |h: u32| self.fits(self.cluster_host[h as usize], req, needs, asker, rules);
        // The hosts the must-rules point to. Outside them every host breaks one of those
        // rules further, unless the VM runs and breaks a must-rule already (it may go where it
        // breaks it no further): then, as without such rules, the spreading order.
        let mut candidates: Vec<u32> = allowed
            .iter()
            .flatten()
            .copied()
            .filter(|&h| ok(h))
            .collect();
        let broken = matches!(asker, Asker::Running(_))
            && rules.iter().any(|&r| {
                let r = r as usize;
                self.s.rules[r].must && self.s.violation[r] > 0
            });
        if candidates.is_empty() && (allowed.is_none() || broken) {
            candidates.extend(preferred.iter().copied().filter(|&h| ok(h)));
            candidates.extend(
                self.cluster
                    .spread_order(needs)
                    .take_while(|&i| self.cluster.view(i).free().0 >= req.memory_mib)
                    .map(|i| self.model_host[i])
                    .filter(|&h| ok(h))
                    .take(SPREAD_CHOICES),
            );
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .min_by(|&x, &y| {
                self.should_cost(asker, rules, x)
                    .cmp(&self.should_cost(asker, rules, y))
                    .then_with(|| self.spread_cmp(x, y))
            })
            .map(|h| self.cluster_host[h as usize])
    }

    /// Spreading order as [`crate::place::place`] on model hosts: `Less` means `a` is the
    /// better choice.
    fn spread_cmp(&self, a: u32, b: u32) -> Ordering {
        let (ia, ib) = (self.cluster_host[a as usize], self.cluster_host[b as usize]);
        let (fa, fb) = (self.cluster.view(ia).free(), self.cluster.view(ib).free());
        fb.cmp(&fa).then(ia.cmp(&ib))
    }

    /// Why each host cannot take the VM, in host name order.
    fn explain(&self, req: &VmRequest, needs: &VmNeeds, asker: Asker, rules: &[u32]) -> NoHost {
        let reasons = (0..self.cluster.hosts().len()).filter_map(|i| {
            self.check(i, req, needs, asker, rules)
                .err()
                .map(|u| (self.cluster.hosts()[i].name.clone(), u))
        });
        NoHost::new(req, reasons)
    }
}

/// One decision on a model built for it: [`RulePlacer::new`] then [`RulePlacer::decide`].
/// Building the index costs O(VMs); a caller placing many VMs keeps a [`RulePlacer`].
pub fn place_under_rules(
    model: &ClusterModel,
    fit: &FitTable,
    req: &VmRequest,
    needs: &VmNeeds,
    target: Target<'_>,
) -> Result<Placement, FitError> {
    RulePlacer::new(model, fit)?.decide(req, needs, target)
}
