//! Placement rules: VM-VM affinity and anti-affinity, VM-to-host "run on" / "not on", each
//! either hard (`Must`: never broken by a plan or a placement, fixed first when found broken) or
//! soft (`Should`: a penalty the balancer weighs against load and traffic).
//!
//! A rule set is refused ([`RuleError`]) when it cannot be satisfied whatever the placement:
//! a pair kept both together and apart, a VM left no host, a must-affinity group pinned to
//! disjoint hosts or too big for any host, a must-anti-affinity group larger than the cluster.
//! Must-affinity is transitive: rules sharing a VM form one group.

use std::collections::BTreeMap;
use std::fmt;

use crate::quoted::Quoted;

/// Hard or soft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strength {
    /// Never broken by the balancer or placement.
    Must,
    /// Preferred; weighed as a penalty.
    Should,
}

impl fmt::Display for Strength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strength::Must => "must",
            Strength::Should => "should",
        })
    }
}

/// What a rule asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// The VMs run on one host.
    Affinity {
        /// The VMs.
        vms: Vec<String>,
    },
    /// The VMs run on pairwise different hosts.
    AntiAffinity {
        /// The VMs.
        vms: Vec<String>,
    },
    /// Each VM runs on one of `hosts`.
    RunOn {
        /// The VMs.
        vms: Vec<String>,
        /// The hosts they may run on.
        hosts: Vec<String>,
    },
    /// No VM runs on any of `hosts`.
    NotOn {
        /// The VMs.
        vms: Vec<String>,
        /// The hosts they may not run on.
        hosts: Vec<String>,
    },
}

/// A named rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Rule name (unique).
    pub name: String,
    /// Must or should.
    pub strength: Strength,
    /// What it asks.
    pub kind: Constraint,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Rule {
    /// `vms` run on one host.
    pub fn affinity(name: &str, strength: Strength, vms: &[&str]) -> Rule {
        Rule {
            name: name.to_owned(),
            strength,
            kind: Constraint::Affinity { vms: strings(vms) },
        }
    }

    /// `vms` run on pairwise different hosts.
    pub fn anti_affinity(name: &str, strength: Strength, vms: &[&str]) -> Rule {
        Rule {
            name: name.to_owned(),
            strength,
            kind: Constraint::AntiAffinity { vms: strings(vms) },
        }
    }

    /// `vms` run on one of `hosts`.
    pub fn run_on(name: &str, strength: Strength, vms: &[&str], hosts: &[&str]) -> Rule {
        Rule {
            name: name.to_owned(),
            strength,
            kind: Constraint::RunOn {
                vms: strings(vms),
                hosts: strings(hosts),
            },
        }
    }

    /// `vms` run on none of `hosts`.
    pub fn not_on(name: &str, strength: Strength, vms: &[&str], hosts: &[&str]) -> Rule {
        Rule {
            name: name.to_owned(),
            strength,
            kind: Constraint::NotOn {
                vms: strings(vms),
                hosts: strings(hosts),
            },
        }
    }

    /// The VMs the rule is about.
    pub fn vms(&self) -> &[String] {
        match &self.kind {
            Constraint::Affinity { vms }
            | Constraint::AntiAffinity { vms }
            | Constraint::RunOn { vms, .. }
            | Constraint::NotOn { vms, .. } => vms,
        }
    }

    fn hosts(&self) -> Option<&[String]> {
        match &self.kind {
            Constraint::RunOn { hosts, .. } | Constraint::NotOn { hosts, .. } => Some(hosts),
            _ => None,
        }
    }
}

/// Why a rule names too little to mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emptiness {
    /// A host rule names no VM.
    NoVm,
    /// A host rule names no host.
    NoHost,
    /// An affinity or anti-affinity rule names fewer than two distinct VMs.
    FewerThanTwoVms,
}

impl fmt::Display for Emptiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Emptiness::NoVm => "it names no VM",
            Emptiness::NoHost => "it names no host",
            Emptiness::FewerThanTwoVms => "it needs at least two distinct VMs",
        })
    }
}

/// Why a rule set is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Two rules carry the same name.
    #[error("rule '{rule}' is defined twice")]
    DuplicateRule {
        /// The name.
        rule: String,
    },
    /// An affinity or anti-affinity rule names fewer than two distinct VMs, or a host rule no
    /// VM or no host.
    #[error("rule '{rule}' is empty: {why}")]
    EmptyRule {
        /// The rule.
        rule: String,
        /// What it lacks.
        why: Emptiness,
    },
    /// A host rule names a host the model does not list.
    #[error("rule '{rule}' names host {host}, which is not in the model")]
    UnknownHost {
        /// The rule.
        rule: String,
        /// The host it names.
        host: String,
    },
    /// Must-affinity keeps two VMs together while a must-anti-affinity rule keeps them apart.
    #[error("rules contradict each other: must-affinity {affinity} keeps VMs '{vm_a}' and '{vm_b}' on one host, must-anti-affinity '{anti_affinity}' keeps them apart")]
    TogetherAndApart {
        /// One VM.
        vm_a: String,
        /// The other.
        vm_b: String,
        /// The must-affinity rule(s) joining them.
        affinity: Quoted,
        /// The must-anti-affinity rule keeping them apart.
        anti_affinity: String,
    },
    /// Must host rules leave a VM no host at all.
    #[error("must rules {rules} leave VM '{vm}' no host to run on")]
    NoFeasibleHost {
        /// The VM.
        vm: String,
        /// The host rules about the VM.
        rules: Quoted,
    },
    /// Members of a must-affinity group are pinned to hosts that have none in common.
    #[error("must-affinity {affinity} keeps VMs {vms} on one host, but must host rules allow them no common host")]
    PinnedApart {
        /// The must-affinity rule(s) of the group.
        affinity: Quoted,
        /// The group's VMs.
        vms: Quoted,
    },
    /// A must-affinity group needs more than any host it may run on can allocate.
    #[error("must-affinity {affinity} keeps VMs {vms} on one host, but together they need {vcpus} vCPU and {memory_mib} MiB, more than any host they may run on can allocate")]
    GroupTooLarge {
        /// The must-affinity rule(s) of the group.
        affinity: Quoted,
        /// The group's VMs.
        vms: Quoted,
        /// vCPUs of the group.
        vcpus: u64,
        /// Memory of the group, MiB.
        memory_mib: u64,
    },
    /// A must-anti-affinity rule names more VMs than there are hosts.
    #[error("must-anti-affinity '{rule}' needs {vms} different hosts, the cluster has {hosts}")]
    TooFewHosts {
        /// The rule.
        rule: String,
        /// VMs it keeps apart.
        vms: usize,
        /// Hosts in the cluster.
        hosts: usize,
    },
}

/// A rule over indexes, as the balancer and the placer use it.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub name: String,
    pub must: bool,
    pub kind: Kind,
    /// Running members (VM indexes), sorted, distinct.
    pub members: Vec<u32>,
}

/// A rule's kind over indexes; host sets sorted and distinct.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Affinity,
    Anti,
    RunOn(Vec<u32>),
    NotOn(Vec<u32>),
}

impl Kind {
    pub fn allows(&self, host: u32) -> bool {
        match self {
            Kind::RunOn(set) => set.binary_search(&host).is_ok(),
            Kind::NotOn(set) => set.binary_search(&host).is_err(),
            Kind::Affinity | Kind::Anti => true,
        }
    }
}

/// What the rule check needs to know about hosts and VMs.
pub(crate) struct Universe<'a> {
    pub host_index: &'a BTreeMap<&'a str, u32>,
    /// Allocatable (vCPU, MiB) per host.
    pub host_alloc: &'a [(u32, u64)],
    pub vm_index: &'a BTreeMap<&'a str, u32>,
    /// Allocated (vCPU, MiB) per VM.
    pub vm_size: &'a [(u32, u64)],
}

/// The outcome of [`compile`]: rules over indexes and, per VM name that is not running, the
/// rules naming it (for placing it later).
pub(crate) struct CompiledRules {
    pub rules: Vec<Compiled>,
    pub pending: BTreeMap<String, Vec<u32>>,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Hosts a VM (or group) may use: `allowed` (all when `None`) minus `denied`.
#[derive(Debug, Clone, Default)]
struct HostSet {
    allowed: Option<Vec<u32>>,
    denied: Vec<u32>,
}

impl HostSet {
    fn restrict(&mut self, other: &HostSet) {
        if let Some(o) = &other.allowed {
            self.allowed = Some(match self.allowed.take() {
                None => o.clone(),
                Some(a) => a
                    .into_iter()
                    .filter(|h| o.binary_search(h).is_ok())
                    .collect(),
            });
        }
        self.denied.extend_from_slice(&other.denied);
        self.denied.sort_unstable();
        self.denied.dedup();
    }

    fn contains(&self, h: u32) -> bool {
        self.denied.binary_search(&h).is_err()
            && self
                .allowed
                .as_ref()
                .is_none_or(|a| a.binary_search(&h).is_ok())
    }

    /// The hosts in the set, in index order.
    fn iter(&self, hosts: u32) -> Box<dyn Iterator<Item = u32> + '_> {
        match &self.allowed {
            Some(a) => Box::new(a.iter().copied().filter(|h| self.contains(*h))),
            None => Box::new((0..hosts).filter(|h| self.contains(*h))),
        }
    }
}

/// Resolves names, then refuses contradictory rule sets.
pub(crate) fn compile(rules: &[Rule], u: &Universe<'_>) -> Result<CompiledRules, RuleError> {
    let hosts = u.host_alloc.len() as u32;
    // Name space: running VMs keep their index, other named VMs follow in name order.
    let mut extra: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rules {
        for v in r.vms() {
            if !u.vm_index.contains_key(v.as_str()) {
                extra.insert(v, 0);
            }
        }
    }
    let running = u.vm_size.len();
    for (i, slot) in extra.values_mut().enumerate() {
        *slot = running + i;
    }
    let mut names: Vec<&str> = vec![""; running + extra.len()];
    for (n, &i) in u.vm_index {
        names[i as usize] = n;
    }
    for (n, &i) in &extra {
        names[i] = n;
    }
    let id = |v: &str| -> usize {
        u.vm_index
            .get(v)
            .map(|&i| i as usize)
            .or_else(|| extra.get(v).copied())
            .unwrap_or(0)
    };

    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(rules.len());
    let mut ids_per_rule: Vec<Vec<usize>> = Vec::with_capacity(rules.len());
    for r in rules {
        if seen.insert(r.name.as_str(), ()).is_some() {
            return Err(RuleError::DuplicateRule {
                rule: r.name.clone(),
            });
        }
        let mut ids: Vec<usize> = r.vms().iter().map(|v| id(v)).collect();
        ids.sort_unstable();
        ids.dedup();
        let empty = |why: Emptiness| RuleError::EmptyRule {
            rule: r.name.clone(),
            why,
        };
        let host_set = match r.hosts() {
            Some(hs) => {
                if ids.is_empty() {
                    return Err(empty(Emptiness::NoVm));
                }
                if hs.is_empty() {
                    return Err(empty(Emptiness::NoHost));
                }
                let mut set = Vec::with_capacity(hs.len());
                for h in hs {
                    match u.host_index.get(h.as_str()) {
                        Some(&i) => set.push(i),
                        None => {
                            return Err(RuleError::UnknownHost {
                                rule: r.name.clone(),
                                host: h.clone(),
                            })
                        }
                    }
                }
                set.sort_unstable();
                set.dedup();
                set
            }
            None => {
                if ids.len() < 2 {
                    return Err(empty(Emptiness::FewerThanTwoVms));
                }
                Vec::new()
            }
        };
        let kind = match &r.kind {
            Constraint::Affinity { .. } => Kind::Affinity,
            Constraint::AntiAffinity { .. } => Kind::Anti,
            Constraint::RunOn { .. } => Kind::RunOn(host_set),
            Constraint::NotOn { .. } => Kind::NotOn(host_set),
        };
        out.push(Compiled {
            name: r.name.clone(),
            must: r.strength == Strength::Must,
            kind,
            members: ids
                .iter()
                .filter(|&&i| i < running)
                .map(|&i| i as u32)
                .collect(),
        });
        ids_per_rule.push(ids);
    }

    // Must-affinity groups.
    let mut parent: Vec<usize> = (0..names.len()).collect();
    for (r, ids) in out.iter().zip(&ids_per_rule) {
        if r.must && matches!(r.kind, Kind::Affinity) {
            let root = find(&mut parent, ids[0]);
            for &i in &ids[1..] {
                let other = find(&mut parent, i);
                parent[other] = root;
            }
        }
    }
    let mut group_rules: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (r, ids) in out.iter().zip(&ids_per_rule) {
        if r.must && matches!(r.kind, Kind::Affinity) {
            let root = find(&mut parent, ids[0]);
            group_rules.entry(root).or_default().push(&r.name);
        }
    }
    for (r, ids) in out.iter().zip(&ids_per_rule) {
        if !(r.must && matches!(r.kind, Kind::Anti)) {
            continue;
        }
        let mut by_root: BTreeMap<usize, usize> = BTreeMap::new();
        for &i in ids {
            let root = find(&mut parent, i);
            if let Some(&prev) = by_root.get(&root) {
                return Err(RuleError::TogetherAndApart {
                    vm_a: names[prev].to_owned(),
                    vm_b: names[i].to_owned(),
                    affinity: Quoted::of(group_rules.get(&root).into_iter().flatten().copied()),
                    anti_affinity: r.name.clone(),
                });
            }
            by_root.insert(root, i);
        }
        if ids.len() > hosts as usize {
            return Err(RuleError::TooFewHosts {
                rule: r.name.clone(),
                vms: ids.len(),
                hosts: hosts as usize,
            });
        }
    }

    // Hosts each VM may use under must host rules.
    let mut sets: BTreeMap<usize, (HostSet, Vec<&str>)> = BTreeMap::new();
    for (r, ids) in out.iter().zip(&ids_per_rule) {
        if !r.must {
            continue;
        }
        let set = match &r.kind {
            Kind::RunOn(s) => HostSet {
                allowed: Some(s.clone()),
                denied: Vec::new(),
            },
            Kind::NotOn(s) => HostSet {
                allowed: None,
                denied: s.clone(),
            },
            _ => continue,
        };
        for &i in ids {
            let e = sets.entry(i).or_default();
            e.0.restrict(&set);
            e.1.push(&r.name);
        }
    }
    for (&i, (set, rs)) in &sets {
        if set.iter(hosts).next().is_none() {
            return Err(RuleError::NoFeasibleHost {
                vm: names[i].to_owned(),
                rules: Quoted::of(rs.iter().copied()),
            });
        }
    }

    // Each must-affinity group needs one host all members may use, large enough for all.
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &root in group_rules.keys() {
        groups.insert(root, Vec::new());
    }
    for i in 0..names.len() {
        let root = find(&mut parent, i);
        if let Some(g) = groups.get_mut(&root) {
            g.push(i);
        }
    }
    for (root, members) in &groups {
        let mut set = HostSet::default();
        let (mut vcpus, mut mem) = (0u64, 0u64);
        for &i in members {
            if let Some((s, _)) = sets.get(&i) {
                set.restrict(s);
            }
            if let Some(&(c, m)) = u.vm_size.get(i) {
                vcpus += u64::from(c);
                mem += m;
            }
        }
        let affinity = Quoted::of(group_rules.get(root).into_iter().flatten().copied());
        let vms = Quoted::of(members.iter().map(|&i| names[i]));
        if set.iter(hosts).next().is_none() {
            return Err(RuleError::PinnedApart { affinity, vms });
        }
        let fits = set.iter(hosts).any(|h| {
            let (c, m) = u.host_alloc[h as usize];
            u64::from(c) >= vcpus && m >= mem
        });
        if !fits {
            return Err(RuleError::GroupTooLarge {
                affinity,
                vms,
                vcpus,
                memory_mib: mem,
            });
        }
    }

    let mut pending: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (r, ids) in ids_per_rule.iter().enumerate() {
        for &i in ids.iter().filter(|&&i| i >= running) {
            pending
                .entry(names[i].to_owned())
                .or_default()
                .push(r as u32);
        }
    }
    Ok(CompiledRules {
        rules: out,
        pending,
    })
}
