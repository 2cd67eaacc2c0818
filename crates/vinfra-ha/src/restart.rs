//! The restart plan: where the HA VMs of failed hosts run again, in which order.
//!
//! [`plan`] takes the surviving cluster as a [`RulePlacer`] (the failed hosts ineligible, the
//! VMs to restart not running in it) and the VMs to restart ([`RestartVm`]). It decides each VM
//! in turn through the placement library (capabilities, availability, must-rules, capacity:
//! the one fit check; a must-anti-affinity pair stays apart), committing each placement so the
//! next decision counts it. The order is the VM's [`Priority`] (highest first), then larger
//! memory first, then name: same input (in any order), same plan.
//!
//! **What the order guarantees.** Each VM is decided before any VM after it in that order, so
//! a VM is never left unplaced by capacity that a lower-priority restart took: when it was
//! refused, no later VM had been placed (the plan restricted to the VMs up to it leaves it
//! unplaced too). It does not promise an optimal packing: a higher-priority VM placed first can
//! take room that would have let two smaller ones fit, and a VM refused stays refused even if
//! moving a running VM would make room.
//!
//! **Waves.** A VM whose start-after VM is restarting and placed starts in the wave after that
//! VM's; a start-after naming a VM that is not restarting, or is left unplaced, does not hold it
//! back. Start-after links that form a cycle are broken deterministically: the member first in
//! the plan's order starts without waiting, and the cycle is reported.
//!
//! The placer ends holding the plan's placements (committed): the caller that only asks keeps a
//! copy, or removes them again.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vinfra_placement::{FitError, NoHost, RulePlacer, Target, VmNeeds, VmRequest};

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestartError {
    /// Two VMs to restart share a name.
    #[error("VM '{vm}' is listed twice")]
    DuplicateVm {
        /// The name.
        vm: String,
    },
    /// A VM to restart still runs in the placer (the caller must take it out first).
    #[error("VM '{vm}' still counts as running on host {host}")]
    StillRunning {
        /// The VM.
        vm: String,
        /// Where the placer has it.
        host: String,
    },
    /// The placement library refused a request for another reason than "no host" (a VM that
    /// asks for no vCPU or no memory).
    #[error("the placement of VM '{vm}' failed")]
    Placement {
        /// The VM.
        vm: String,
        /// The library's error.
        #[source]
        source: Box<FitError>,
    },
}

/// A VM's restart priority: higher priorities are placed (and so started) first.
pub use vinfra_types::ha::HaPriority as Priority;

/// A VM's HA settings beyond `ha: on`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HaPolicy {
    /// Restart priority.
    #[serde(default)]
    pub priority: Priority,
    /// Name of a VM that must start before it, when both restart.
    #[serde(default)]
    pub start_after: Option<String>,
}

/// A VM to restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartVm {
    /// Its id.
    pub id: Uuid,
    /// Its name and size, as placement takes them.
    pub request: VmRequest,
    /// What it needs from a host beyond room.
    pub needs: VmNeeds,
    /// Its priority and start-after.
    pub policy: HaPolicy,
}

/// One VM placed by the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The VM's id.
    pub id: Uuid,
    /// Its name.
    pub vm: String,
    /// Where it runs again.
    pub host: String,
    /// Its priority.
    pub priority: Priority,
}

/// One VM the plan could not place.
#[derive(Debug, Clone, PartialEq)]
pub struct Unplaced {
    /// The VM's id.
    pub id: Uuid,
    /// Its priority.
    pub priority: Priority,
    /// Why no host takes it (names the VM and its size).
    pub why: NoHost,
}

/// Where and in which order the VMs run again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartPlan {
    /// The placed VMs by wave: a wave starts once the one before it runs; within a wave, in
    /// the plan's order.
    pub waves: Vec<Vec<Restart>>,
    /// The VMs no host takes, in the plan's order.
    pub unplaced: Vec<Unplaced>,
    /// Start-after cycles broken, each as its VMs in the plan's order: the first starts
    /// without waiting for its start-after VM.
    pub cycles: Vec<Vec<String>>,
}

impl RestartPlan {
    /// Every placed VM, wave after wave.
    pub fn restarts(&self) -> impl Iterator<Item = &Restart> {
        self.waves.iter().flatten()
    }

    /// Where the plan restarts `vm`, if it does.
    pub fn host_of(&self, vm: &str) -> Option<&str> {
        self.restarts()
            .find(|r| r.vm == vm)
            .map(|r| r.host.as_str())
    }

    /// The wave of `vm` (0 first), if it is placed.
    pub fn wave_of(&self, vm: &str) -> Option<usize> {
        self.waves.iter().position(|w| w.iter().any(|r| r.vm == vm))
    }

    /// vCPUs and memory (MiB) of the VMs left unplaced.
    pub fn shortfall(&self) -> (u64, u64) {
        self.unplaced.iter().fold((0, 0), |(c, m), u| {
            (c + u64::from(u.why.vcpus), m + u.why.memory_mib)
        })
    }
}

/// The plan's order of `vms` (indexes): priority, then larger memory first, then name.
pub fn order(vms: &[RestartVm]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..vms.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (&vms[a], &vms[b]);
        x.policy
            .priority
            .cmp(&y.policy.priority)
            .then(y.request.memory_mib.cmp(&x.request.memory_mib))
            .then_with(|| x.request.vm.cmp(&y.request.vm))
    });
    idx
}

/// What [`decide_all`] found, by index into the VMs given.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Decided {
    /// The plan's order.
    pub order: Vec<usize>,
    /// Host per VM, `None` when unplaced.
    pub host: Vec<Option<String>>,
    /// The explanation per unplaced VM, when asked for.
    pub why: Vec<Option<NoHost>>,
}

/// Checks the VMs, then places each in the plan's order and commits it in `placer`.
pub(crate) fn decide_all(
    placer: &mut RulePlacer,
    vms: &[RestartVm],
    explain: bool,
) -> Result<Decided, RestartError> {
    let mut seen = HashMap::with_capacity(vms.len());
    for v in vms {
        if seen.insert(v.request.vm.as_str(), ()).is_some() {
            return Err(RestartError::DuplicateVm {
                vm: v.request.vm.clone(),
            });
        }
        if let Some(host) = placer.host_of(&v.request.vm) {
            return Err(RestartError::StillRunning {
                vm: v.request.vm.clone(),
                host: host.to_owned(),
            });
        }
    }
    let order = order(vms);
    let mut host = vec![None; vms.len()];
    let mut why = vec![None; vms.len()];
    for &i in &order {
        let v = &vms[i];
        let placed = if explain {
            match placer.decide(&v.request, &v.needs, Target::Any) {
                Ok(p) => Some(p),
                Err(FitError::NoHost(e)) => {
                    why[i] = Some(e);
                    None
                }
                Err(source) => {
                    return Err(RestartError::Placement {
                        vm: v.request.vm.clone(),
                        source: Box::new(source),
                    })
                }
            }
        } else {
            placer
                .find(&v.request, &v.needs, Target::Any)
                .map_err(|source| RestartError::Placement {
                    vm: v.request.vm.clone(),
                    source: Box::new(source),
                })?
        };
        if let Some(p) = placed {
            placer
                .commit(&v.request, &v.needs, &p.host)
                .map_err(|source| RestartError::Placement {
                    vm: v.request.vm.clone(),
                    source: Box::new(source),
                })?;
            host[i] = Some(p.host);
        }
    }
    Ok(Decided { order, host, why })
}

/// Waves and broken cycles for placed VMs (`placed[i]`), in the plan's `order`.
pub(crate) fn waves(
    vms: &[RestartVm],
    order: &[usize],
    placed: &[bool],
) -> (Vec<Vec<usize>>, Vec<Vec<String>>) {
    let n = vms.len();
    let by_name: HashMap<&str, usize> = vms
        .iter()
        .enumerate()
        .map(|(i, v)| (v.request.vm.as_str(), i))
        .collect();
    let mut rank = vec![0usize; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    // Edges to a start-after VM that restarts.
    let mut after: Vec<Option<usize>> = vms
        .iter()
        .map(|v| {
            v.policy
                .start_after
                .as_deref()
                .and_then(|a| by_name.get(a).copied())
        })
        .collect();
    // Cycles: each VM has at most one edge, so each component holds at most one cycle.
    let mut cycles = Vec::new();
    let mut state = vec![0u8; n]; // 0 new, 1 on the current path, 2 done
    for &start in order {
        let mut path = Vec::new();
        let mut cur = Some(start);
        while let Some(i) = cur {
            match state[i] {
                0 => {
                    state[i] = 1;
                    path.push(i);
                    cur = after[i];
                }
                1 => {
                    // A cycle: from i's place in the path to its end.
                    let pos = path.iter().position(|&p| p == i).unwrap_or(0);
                    let mut members: Vec<usize> = path[pos..].to_vec();
                    members.sort_by_key(|&m| rank[m]);
                    after[members[0]] = None;
                    cycles.push(members.iter().map(|&m| vms[m].request.vm.clone()).collect());
                    break;
                }
                _ => break,
            }
        }
        for p in path {
            state[p] = 2;
        }
    }
    cycles.sort_by_key(|c: &Vec<String>| rank[by_name[c[0].as_str()]]);
    // Wave of a placed VM: one after its start-after VM's when that one is placed.
    let mut wave: Vec<Option<usize>> = vec![None; n];
    fn wave_of(
        i: usize,
        after: &[Option<usize>],
        placed: &[bool],
        wave: &mut [Option<usize>],
    ) -> usize {
        // Walk the chain (acyclic now) iteratively.
        let mut chain = vec![i];
        let mut cur = i;
        let base = loop {
            if let Some(w) = wave[cur] {
                chain.pop();
                break w + 1;
            }
            match after[cur] {
                Some(j) if placed[j] => {
                    chain.push(j);
                    cur = j;
                }
                _ => break 0,
            }
        };
        for (w, &c) in (base..).zip(chain.iter().rev()) {
            wave[c] = Some(w);
        }
        wave[i].unwrap_or(0)
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in order {
        if !placed[i] {
            continue;
        }
        let w = wave_of(i, &after, placed, &mut wave);
        if out.len() <= w {
            out.resize(w + 1, Vec::new());
        }
        out[w].push(i);
    }
    (out, cycles)
}

/// The restart plan for `vms` on the surviving cluster `placer` (see the module doc); the
/// placer ends holding the placements.
pub fn plan(placer: &mut RulePlacer, vms: &[RestartVm]) -> Result<RestartPlan, RestartError> {
    let d = decide_all(placer, vms, true)?;
    let placed: Vec<bool> = d.host.iter().map(Option::is_some).collect();
    let (wave_idx, cycles) = waves(vms, &d.order, &placed);
    let waves = wave_idx
        .into_iter()
        .map(|w| {
            w.into_iter()
                .map(|i| Restart {
                    id: vms[i].id,
                    vm: vms[i].request.vm.clone(),
                    host: d.host[i].clone().unwrap_or_default(),
                    priority: vms[i].policy.priority,
                })
                .collect()
        })
        .collect();
    let mut why = d.why;
    let unplaced = d
        .order
        .iter()
        .filter(|&&i| !placed[i])
        .filter_map(|&i| {
            why[i].take().map(|why| Unplaced {
                id: vms[i].id,
                priority: vms[i].policy.priority,
                why,
            })
        })
        .collect();
    Ok(RestartPlan {
        waves,
        unplaced,
        cycles,
    })
}

/// The VMs of a plan's restarts per host, for display: host name → VM names.
pub fn by_host(plan: &RestartPlan) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in plan.restarts() {
        out.entry(r.host.as_str()).or_default().push(r.vm.as_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinfra_placement::{
        ClusterModel, Eligibility, FitTable, HostModel, Rule, Strength, VmModel,
    };
    use vinfra_types::{AllocationRatios, HostCapacity};

    fn host(name: &str, gib: u64, eligible: Eligibility) -> HostModel {
        HostModel {
            name: name.into(),
            capacity: HostCapacity {
                cores: 16,
                memory_mib: gib * 1024,
            },
            ratios: AllocationRatios {
                cpu: 1.0,
                memory: 1.0,
            },
            eligible,
        }
    }

    fn rvm(name: &str, gib: u64, priority: Priority, after: Option<&str>) -> RestartVm {
        RestartVm {
            id: Uuid::from_u128(name.bytes().map(u128::from).sum()),
            request: VmRequest {
                vm: name.into(),
                vcpus: 1,
                memory_mib: gib * 1024,
            },
            needs: VmNeeds::default(),
            policy: HaPolicy {
                priority,
                start_after: after.map(str::to_owned),
            },
        }
    }

    fn placer(hosts: Vec<HostModel>, vms: Vec<VmModel>, rules: Vec<Rule>) -> RulePlacer {
        let m = ClusterModel {
            hosts,
            vms,
            rules,
            ..ClusterModel::default()
        };
        RulePlacer::new(&m, &FitTable::default()).unwrap()
    }

    #[test]
    fn the_priority_and_the_size_order_the_plan() {
        // h0 failed; h1 has room for 8 GiB, h2 for 4 GiB.
        let mut p = placer(
            vec![
                host("h0", 64, Eligibility::Disconnected),
                host("h1", 8, Eligibility::Ok),
                host("h2", 4, Eligibility::Ok),
            ],
            vec![],
            vec![],
        );
        let vms = vec![
            rvm("small-low", 4, Priority::Low, None),
            rvm("big", 8, Priority::Medium, None),
            rvm("db", 4, Priority::Highest, None),
        ];
        let plan = plan(&mut p, &vms).unwrap();
        // db first (highest) takes the host with the most room; big no longer fits anywhere;
        // small-low takes what is left.
        assert_eq!(plan.host_of("db"), Some("h1"));
        assert_eq!(plan.host_of("small-low"), Some("h2"));
        assert_eq!(plan.unplaced.len(), 1);
        assert_eq!(plan.unplaced[0].why.vm, "big");
        let why = &plan.unplaced[0].why;
        assert_eq!(
            why.reason_for("h0"),
            Some(&vinfra_placement::Unfit::Disconnected)
        );
        assert!(matches!(
            why.reason_for("h1"),
            Some(vinfra_placement::Unfit::Capacity(_))
        ));
        assert_eq!(plan.shortfall(), (1, 8192));
        // The placer holds the placements.
        assert_eq!(p.host_of("db"), Some("h1"));
    }

    #[test]
    fn must_anti_affinity_holds_through_a_failover() {
        // a and b must be apart; c runs on h1. h0 failed.
        let mut p = placer(
            vec![
                host("h0", 64, Eligibility::Disconnected),
                host("h1", 64, Eligibility::Ok),
                host("h2", 8, Eligibility::Ok),
            ],
            vec![],
            vec![Rule::anti_affinity("apart", Strength::Must, &["a", "b"])],
        );
        let plan = plan(
            &mut p,
            &[
                rvm("a", 4, Priority::Medium, None),
                rvm("b", 4, Priority::Medium, None),
                rvm("x", 6, Priority::Medium, None),
            ],
        )
        .unwrap();
        assert_ne!(plan.host_of("a"), plan.host_of("b"));
        assert!(plan.unplaced.is_empty());
    }

    #[test]
    fn start_after_makes_waves_and_cycles_are_broken() {
        let mut p = placer(
            vec![
                host("h0", 64, Eligibility::Disconnected),
                host("h1", 64, Eligibility::Ok),
            ],
            vec![],
            vec![],
        );
        let vms = vec![
            rvm("app", 2, Priority::High, Some("db")),
            rvm("db", 2, Priority::Medium, None),
            rvm("web", 2, Priority::Medium, Some("app")),
            rvm("lonely", 2, Priority::Medium, Some("not-restarting")),
            rvm("p", 1, Priority::Low, Some("q")),
            rvm("q", 1, Priority::Low, Some("p")),
            rvm("huge", 512, Priority::Highest, None),
            rvm("after-huge", 1, Priority::Low, Some("huge")),
        ];
        let plan = plan(&mut p, &vms).unwrap();
        assert_eq!(plan.wave_of("db"), Some(0));
        assert_eq!(plan.wave_of("app"), Some(1));
        assert_eq!(plan.wave_of("web"), Some(2));
        assert_eq!(plan.wave_of("lonely"), Some(0));
        // The start-after VM is unplaced: no wait.
        assert_eq!(plan.wave_of("after-huge"), Some(0));
        assert_eq!(plan.unplaced[0].why.vm, "huge");
        // p and q wait on each other: p (first by name at equal priority and size) goes.
        assert_eq!(plan.cycles, vec![vec!["p".to_string(), "q".to_string()]]);
        assert_eq!(plan.wave_of("p"), Some(0));
        assert_eq!(plan.wave_of("q"), Some(1));
        // Within the first wave, the plan's order.
        let first: Vec<&str> = plan.waves[0].iter().map(|r| r.vm.as_str()).collect();
        assert_eq!(first, vec!["db", "lonely", "after-huge", "p"]);
        // A VM waiting for itself is a cycle of one.
        let mut p2 = placer(vec![host("h1", 64, Eligibility::Ok)], vec![], vec![]);
        let plan = super::plan(&mut p2, &[rvm("me", 1, Priority::Low, Some("me"))]).unwrap();
        assert_eq!(plan.cycles, vec![vec!["me".to_string()]]);
        assert_eq!(plan.wave_of("me"), Some(0));
    }

    #[test]
    fn bad_input_is_refused_without_a_panic() {
        let run = VmModel {
            name: "a".into(),
            host: "h1".into(),
            vcpus: 1,
            memory_mib: 1024,
            cpu_demand: 0.0,
            memory_demand_mib: 0,
        };
        let mut p = placer(vec![host("h1", 64, Eligibility::Ok)], vec![run], vec![]);
        let a = rvm("a", 1, Priority::Low, None);
        assert!(matches!(
            plan(&mut p, std::slice::from_ref(&a)),
            Err(RestartError::StillRunning { .. })
        ));
        let b = rvm("b", 1, Priority::Low, None);
        assert!(matches!(
            plan(&mut p, &[b.clone(), b.clone()]),
            Err(RestartError::DuplicateVm { .. })
        ));
        let mut empty = b;
        empty.request.memory_mib = 0;
        assert!(matches!(
            plan(&mut p, &[empty]),
            Err(RestartError::Placement { .. })
        ));
    }

    #[test]
    fn priority_names_are_snake_case_and_default_to_medium() {
        let p: HaPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p.priority, Priority::Medium);
        let p: HaPolicy =
            serde_json::from_str(r#"{"priority":"highest","start_after":"db"}"#).unwrap();
        assert_eq!(p.priority, Priority::Highest);
        assert_eq!(serde_json::to_string(&Priority::Low).unwrap(), "\"low\"");
    }
}
