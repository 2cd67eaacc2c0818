//! Initial placement under rules: the same [`ClusterModel`] the balancer uses.
//!
//! A VM that no rule names takes the fast path, exactly [`crate::place::place`]'s choice (most free
//! memory after placement, then most free vCPUs, then name) from the [`Cluster`] index. A VM that
//! rules name is placed on a host that keeps every must-rule (run on / not on its hosts, with its
//! must-affinity partners, away from its must-anti-affinity partners) and, among those, on one
//! breaking the fewest should-rules, then by the same spreading order. [`RulePlacer`] keeps the
//! allocation and rule bookkeeping up to date, so placing many VMs costs O(log hosts) each when
//! rules leave most hosts open.

use std::cmp::Ordering;

use crate::host::{Eligibility, HostInput, Placement, Request};
use crate::model::{ClusterModel, ModelError};
use crate::place::{Cluster, PlacementError};
use crate::rules::Kind;
use crate::state::{State, VmData};

/// Hosts from the spreading order compared when rules are in play.
const SPREAD_CHOICES: usize = 16;
/// A should-run-on host set at most this large is tried in full.
const PREFERRED_SET: usize = 64;

/// Why a VM could not be placed under rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulePlacementError {
    /// The model is invalid or its rules contradict each other.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Plain placement refused the VM (bad request, no eligible host, no capacity).
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The VM already runs.
    #[error("VM '{vm}' already runs on host {host}")]
    AlreadyPlaced { vm: String, host: String },
    /// Must-rules leave the VM no host that is available and has room.
    #[error("no host can take VM '{vm}' ({vcpus} vCPU, {memory_mib} MiB) under must-rules {rules}: {why}")]
    RulesUnsatisfiable {
        vm: String,
        vcpus: u32,
        memory_mib: u64,
        /// The must-rules naming the VM, comma-separated and quoted.
        rules: String,
        why: String,
    },
}

/// Places VMs one after the other on a model, respecting its rules.
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
    /// Validates `model` and indexes it.
    pub fn new(model: &ClusterModel) -> Result<RulePlacer, ModelError> {
        let s = State::new(model)?;
        let inputs: Vec<HostInput> = model
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| HostInput {
                name: h.name.clone(),
                capacity: h.capacity,
                ratios: h.ratios,
                allocated_vcpus: u32::try_from(s.used_vcpus[i]).unwrap_or(u32::MAX),
                allocated_memory_mib: s.used_memory[i],
                eligible: h.eligible,
            })
            .collect();
        // The model's host names are unique (checked above), so indexing cannot fail.
        let cluster = Cluster::new(inputs).map_err(|e| match e {
            PlacementError::DuplicateHost { host } => ModelError::DuplicateHost { host },
            other => ModelError::InvalidHost {
                host: String::new(),
                why: other.to_string(),
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

    /// Picks a host for `req` under the rules naming it and records the VM there.
    pub fn place(&mut self, req: &Request) -> Result<Placement, RulePlacementError> {
        if let Some(host) = self.host_of(&req.vm) {
            return Err(RulePlacementError::AlreadyPlaced {
                vm: req.vm.clone(),
                host: host.to_owned(),
            });
        }
        let rules = self.s.pending.get(&req.vm).cloned().unwrap_or_default();
        let placed = if rules.is_empty() {
            self.cluster.place_and_commit(req, None)?
        } else {
            let name = self.choose(req, &rules)?;
            self.cluster.place_and_commit(req, Some(&name))?
        };
        let h = self.s.host_by_name.get(&placed.host).copied().unwrap_or(0);
        self.s.add_vm(
            &req.vm,
            VmData {
                vcpus: req.vcpus,
                memory: req.memory_mib,
                cpu_demand: 0.0,
                memory_demand: 0.0,
            },
            h,
        );
        Ok(placed)
    }

    /// Hosts (model indexes) where running members of rule `r` are.
    fn member_hosts(&self, r: usize) -> Vec<u32> {
        let mut hs: Vec<u32> = self.s.rules[r]
            .members
            .iter()
            .map(|&m| self.s.at[m as usize])
            .collect();
        hs.sort_unstable();
        hs.dedup();
        hs
    }

    fn choose(&self, req: &Request, rules: &[u32]) -> Result<String, RulePlacementError> {
        if req.vcpus == 0 || req.memory_mib == 0 {
            return Err(PlacementError::EmptyRequest {
                vm: req.vm.clone(),
                vcpus: req.vcpus,
                memory_mib: req.memory_mib,
            }
            .into());
        }
        let mut allowed: Option<Vec<u32>> = None;
        let mut denied: Vec<u32> = Vec::new();
        let mut preferred: Vec<u32> = Vec::new();
        let mut must_names: Vec<String> = Vec::new();
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
            if rule.must {
                must_names.push(format!("'{}'", rule.name));
            }
            match (&rule.kind, rule.must) {
                (Kind::Affinity, true) if !rule.members.is_empty() => {
                    restrict(&mut allowed, &self.member_hosts(r));
                }
                (Kind::Anti, true) => denied.extend(self.member_hosts(r)),
                (Kind::RunOn(set), true) => restrict(&mut allowed, set),
                (Kind::NotOn(set), true) => denied.extend_from_slice(set),
                (Kind::Affinity, false) => preferred.extend(self.member_hosts(r)),
                (Kind::RunOn(set), false) if set.len() <= PREFERRED_SET => {
                    preferred.extend_from_slice(set)
                }
                _ => {}
            }
        }
        denied.sort_unstable();
        denied.dedup();
        let fits = |h: u32| {
            let host = self.host_input(h);
            host.eligible == Eligibility::Ok
                && host.free_vcpus() >= req.vcpus
                && host.free_memory_mib() >= req.memory_mib
                && denied.binary_search(&h).is_err()
        };
        let mut candidates: Vec<u32> = match &allowed {
            Some(set) => set.iter().copied().filter(|&h| fits(h)).collect(),
            None => {
                let mut c: Vec<u32> = preferred.iter().copied().filter(|&h| fits(h)).collect();
                c.extend(
                    self.cluster
                        .spread_order()
                        .take_while(|&i| {
                            self.cluster.hosts()[i].free_memory_mib() >= req.memory_mib
                        })
                        .map(|i| self.model_host[i])
                        .filter(|&h| fits(h))
                        .take(SPREAD_CHOICES),
                );
                c
            }
        };
        candidates.sort_unstable();
        candidates.dedup();
        let best = candidates.into_iter().min_by(|&x, &y| {
            self.should_cost(rules, x)
                .cmp(&self.should_cost(rules, y))
                .then_with(|| spread_cmp(self.host_input(x), self.host_input(y)))
        });
        match best {
            Some(h) => Ok(self.s.host_names[h as usize].clone()),
            None => {
                let why = match &allowed {
                    Some(set) => format!(
                        "they allow {} host(s), none of which is available with room",
                        set.iter()
                            .filter(|h| denied.binary_search(h).is_err())
                            .count()
                    ),
                    None => format!(
                        "the {} host(s) they leave open are unavailable or full",
                        self.s.hosts.len().saturating_sub(denied.len())
                    ),
                };
                Err(RulePlacementError::RulesUnsatisfiable {
                    vm: req.vm.clone(),
                    vcpus: req.vcpus,
                    memory_mib: req.memory_mib,
                    rules: must_names.join(", "),
                    why,
                })
            }
        }
    }

    fn host_input(&self, h: u32) -> &HostInput {
        &self.cluster.hosts()[self.cluster_host[h as usize]]
    }

    /// Should-rules the VM would break on `h`, counted in VMs.
    fn should_cost(&self, rules: &[u32], h: u32) -> u64 {
        rules
            .iter()
            .map(|&r| r as usize)
            .filter(|&r| !self.s.rules[r].must)
            .map(|r| {
                let rule = &self.s.rules[r];
                let here = u64::from(self.s.count(r, h));
                match &rule.kind {
                    Kind::Affinity => rule.members.len() as u64 - here,
                    Kind::Anti => here,
                    kind => u64::from(!kind.allows(h)),
                }
            })
            .sum()
    }
}

/// Spreading order as [`crate::place::place`]: `Less` means `a` is the better choice.
fn spread_cmp(a: &HostInput, b: &HostInput) -> Ordering {
    b.free_memory_mib()
        .cmp(&a.free_memory_mib())
        .then(b.free_vcpus().cmp(&a.free_vcpus()))
        .then(a.name.cmp(&b.name))
}

/// Places one VM on `model` under its rules (see [`RulePlacer`] to place many).
pub fn place_with_rules(
    model: &ClusterModel,
    req: &Request,
) -> Result<Placement, RulePlacementError> {
    RulePlacer::new(model)?.place(req)
}
