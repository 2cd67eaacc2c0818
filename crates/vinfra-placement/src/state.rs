//! A validated [`ClusterModel`] over indexes, with the bookkeeping that makes a move O(1) to
//! evaluate and O(log hosts) to apply: per-host allocation and demand sums, loads in an ordered
//! index, per-rule member counts per host, the running sums behind the imbalance, and the
//! cross-host traffic.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use vinfra_types::{AllocationRatios, HostCapacity};

use crate::fit::{self, FitTable, HostCaps, HostView, Unfit, VmNeeds};
use crate::host::{allocatable_memory_mib, allocatable_vcpus, Eligibility};
use crate::imbalance::{host_load, std_dev};
use crate::model::{ClusterModel, ModelError};
use crate::rules::{self, Compiled, Kind, Universe};
use crate::traffic;
use crate::violations::{Misfit, RuleViolation, Violations};

#[derive(Debug, Clone)]
pub(crate) struct HostData {
    pub capacity: HostCapacity,
    pub ratios: AllocationRatios,
    pub cores: f64,
    pub memory: f64,
    /// Allocatable vCPUs and MiB minus the reserve: what VMs may use.
    pub cap_vcpus: u64,
    pub cap_memory: u64,
    pub eligible: Eligibility,
    pub caps: HostCaps,
}

#[derive(Debug, Clone)]
pub(crate) struct VmData {
    pub vcpus: u32,
    pub memory: u64,
    pub cpu_demand: f64,
    pub memory_demand: f64,
}

/// A host's place in the load index: load, then index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadKey(pub f64, pub u32);

impl PartialEq for LoadKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for LoadKey {}
impl PartialOrd for LoadKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for LoadKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct State {
    pub host_names: Vec<String>,
    pub vm_names: Vec<String>,
    pub hosts: Vec<HostData>,
    pub vms: Vec<VmData>,
    /// What each VM needs beyond room (index: VM).
    pub needs: Vec<VmNeeds>,
    pub rules: Vec<Compiled>,
    /// Rules per VM, in rule order.
    pub vm_rules: Vec<Vec<u32>>,
    /// Rules naming VMs that do not run yet.
    pub pending: BTreeMap<String, Vec<u32>>,
    /// Traffic partners per VM: (VM, bytes/s), in partner order.
    pub adj: Vec<Vec<(u32, u64)>>,
    /// Every pair once (smaller index first), heaviest first, ties by indexes.
    pub flows: Vec<(u32, u32, u64)>,
    pub vm_by_name: HashMap<String, u32>,
    pub host_by_name: HashMap<String, u32>,
    /// Indexes of VMs taken out, by name: a VM of that name added again takes its index back,
    /// so stopping and starting VMs (or trying restarts and undoing them) does not grow the
    /// per-VM tables.
    retired: HashMap<String, u32>,

    pub at: Vec<u32>,
    pub host_vms: Vec<Vec<u32>>,
    pub used_vcpus: Vec<u64>,
    pub used_memory: Vec<u64>,
    demand_cpu: Vec<f64>,
    demand_memory: Vec<f64>,
    loads: Vec<f64>,
    /// Per rule: (host, running members there), sorted by host, no zero counts.
    counts: Vec<Vec<(u32, u32)>>,
    /// Per rule: its current violation (see [`State::rule_violation`]).
    pub violation: Vec<u32>,
    pub cross: u64,
    /// Loads of hosts that are connected and not in maintenance.
    index: BTreeSet<LoadKey>,
    sum: f64,
    sum_sq: f64,
}

impl State {
    pub fn new(model: &ClusterModel, fit: &FitTable) -> Result<State, ModelError> {
        let mut host_index: BTreeMap<&str, u32> = BTreeMap::new();
        let mut hosts = Vec::with_capacity(model.hosts.len());
        let mut host_alloc = Vec::with_capacity(model.hosts.len());
        for (i, h) in model.hosts.iter().enumerate() {
            if host_index.insert(&h.name, i as u32).is_some() {
                return Err(ModelError::DuplicateHost {
                    host: h.name.clone(),
                });
            }
            if h.capacity.cores == 0 || h.capacity.memory_mib == 0 {
                return Err(ModelError::NoCapacity {
                    host: h.name.clone(),
                });
            }
            h.ratios
                .validate()
                .map_err(|why| ModelError::InvalidRatios {
                    host: h.name.clone(),
                    why,
                })?;
            let caps = fit.caps(&h.name).clone();
            // Rules are checked against what a host could allocate at all; the reserve is a
            // hold that changes, and a group it leaves no room for stays a violation.
            host_alloc.push((h.allocatable_vcpus(), h.allocatable_memory_mib()));
            let cv = h.allocatable_vcpus().saturating_sub(caps.reserve.vcpus);
            let cm = h
                .allocatable_memory_mib()
                .saturating_sub(caps.reserve.memory_mib);
            hosts.push(HostData {
                capacity: h.capacity,
                ratios: h.ratios,
                cores: f64::from(h.capacity.cores),
                memory: h.capacity.memory_mib as f64,
                cap_vcpus: u64::from(cv),
                cap_memory: cm,
                eligible: h.eligible,
                caps,
            });
        }
        let mut vm_index: BTreeMap<&str, u32> = BTreeMap::new();
        let mut vms = Vec::with_capacity(model.vms.len());
        let mut vm_size = Vec::with_capacity(model.vms.len());
        let mut at = Vec::with_capacity(model.vms.len());
        for (i, v) in model.vms.iter().enumerate() {
            if vm_index.insert(&v.name, i as u32).is_some() {
                return Err(ModelError::DuplicateVm { vm: v.name.clone() });
            }
            if v.vcpus == 0 || v.memory_mib == 0 {
                return Err(ModelError::NoAllocation { vm: v.name.clone() });
            }
            if !v.cpu_demand.is_finite() || v.cpu_demand < 0.0 {
                return Err(ModelError::InvalidDemand {
                    vm: v.name.clone(),
                    cpu_demand: v.cpu_demand,
                });
            }
            let host = *host_index
                .get(v.host.as_str())
                .ok_or_else(|| ModelError::UnknownHost {
                    vm: v.name.clone(),
                    host: v.host.clone(),
                })?;
            vm_size.push((v.vcpus, v.memory_mib));
            at.push(host);
            vms.push(VmData {
                vcpus: v.vcpus,
                memory: v.memory_mib,
                cpu_demand: v.cpu_demand,
                memory_demand: v.memory_demand_mib as f64,
            });
        }
        let compiled = rules::compile(
            &model.rules,
            &Universe {
                host_index: &host_index,
                host_alloc: &host_alloc,
                vm_index: &vm_index,
                vm_size: &vm_size,
            },
        )?;

        let mut pairs: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for f in &model.traffic {
            let get = |n: &str| {
                vm_index
                    .get(n)
                    .copied()
                    .ok_or_else(|| ModelError::UnknownFlowVm { vm: n.to_owned() })
            };
            let (a, b) = (get(&f.a)?, get(&f.b)?);
            if a == b {
                return Err(ModelError::SelfFlow { vm: f.a.clone() });
            }
            let e = pairs.entry((a.min(b), a.max(b))).or_default();
            *e = e.saturating_add(f.bytes_per_s);
        }
        let mut adj = vec![Vec::new(); vms.len()];
        let mut flows = Vec::with_capacity(pairs.len());
        for (&(a, b), &bytes) in &pairs {
            if bytes == 0 {
                continue;
            }
            adj[a as usize].push((b, bytes));
            adj[b as usize].push((a, bytes));
            flows.push((a, b, bytes));
        }
        flows.sort_by(|x, y| y.2.cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));

        let mut vm_rules = vec![Vec::new(); vms.len()];
        for (r, rule) in compiled.rules.iter().enumerate() {
            for &m in &rule.members {
                vm_rules[m as usize].push(r as u32);
            }
        }

        let n_hosts = hosts.len();
        let mut s = State {
            host_names: model.hosts.iter().map(|h| h.name.clone()).collect(),
            vm_names: model.vms.iter().map(|v| v.name.clone()).collect(),
            vm_by_name: vm_index
                .iter()
                .map(|(k, &v)| ((*k).to_owned(), v))
                .collect(),
            host_by_name: host_index
                .iter()
                .map(|(k, &v)| ((*k).to_owned(), v))
                .collect(),
            retired: HashMap::new(),
            hosts,
            needs: model
                .vms
                .iter()
                .map(|v| fit.needs(&v.name).clone())
                .collect(),
            vms,
            counts: vec![Vec::new(); compiled.rules.len()],
            violation: vec![0; compiled.rules.len()],
            rules: compiled.rules,
            vm_rules,
            pending: compiled.pending,
            adj,
            flows,
            at,
            host_vms: vec![Vec::new(); n_hosts],
            used_vcpus: vec![0; n_hosts],
            used_memory: vec![0; n_hosts],
            demand_cpu: vec![0.0; n_hosts],
            demand_memory: vec![0.0; n_hosts],
            loads: vec![0.0; n_hosts],
            cross: 0,
            index: BTreeSet::new(),
            sum: 0.0,
            sum_sq: 0.0,
        };
        for v in 0..s.vms.len() {
            let h = s.at[v] as usize;
            let d = &s.vms[v];
            s.host_vms[h].push(v as u32);
            s.used_vcpus[h] += u64::from(d.vcpus);
            s.used_memory[h] += d.memory;
            s.demand_cpu[h] += d.cpu_demand;
            s.demand_memory[h] += d.memory_demand;
        }
        for h in 0..n_hosts {
            s.loads[h] = host_load(
                s.demand_cpu[h],
                s.demand_memory[h],
                s.hosts[h].cores,
                s.hosts[h].memory,
            );
            if s.counted(h as u32) {
                s.index.insert(LoadKey(s.loads[h], h as u32));
                s.sum += s.loads[h];
                s.sum_sq += s.loads[h] * s.loads[h];
            }
        }
        for r in 0..s.rules.len() {
            let mut c: BTreeMap<u32, u32> = BTreeMap::new();
            for &m in &s.rules[r].members {
                *c.entry(s.at[m as usize]).or_default() += 1;
            }
            s.counts[r] = c.into_iter().collect();
            s.violation[r] = s.rule_violation(r);
        }
        s.cross = traffic::cross_host(&s.flows, &s.at);
        Ok(s)
    }

    /// Connected and not in maintenance: counts in the imbalance, may receive VMs.
    pub fn counted(&self, h: u32) -> bool {
        self.hosts[h as usize].eligible == Eligibility::Ok
    }

    pub fn load(&self, h: usize) -> f64 {
        self.loads[h]
    }

    /// Load of `h` with `v` added (`sign` 1.0) or removed (`sign` -1.0).
    pub fn load_with(&self, h: u32, v: u32, sign: f64) -> f64 {
        let (h, d) = (h as usize, &self.vms[v as usize]);
        host_load(
            self.demand_cpu[h] + sign * d.cpu_demand,
            self.demand_memory[h] + sign * d.memory_demand,
            self.hosts[h].cores,
            self.hosts[h].memory,
        )
    }

    /// Number of hosts that count, and their load mean and standard deviation, from the
    /// running sums.
    pub fn stats(&self) -> (usize, f64, f64) {
        let n = self.index.len();
        if n == 0 {
            return (0, 0.0, 0.0);
        }
        let mean = self.sum / n as f64;
        let var = (self.sum_sq / n as f64 - mean * mean).max(0.0);
        (n, mean, var.sqrt())
    }

    /// The standard deviation after replacing the loads of `a` and `b` (both counted).
    pub fn sigma_if(&self, a: u32, la: f64, b: u32, lb: f64) -> f64 {
        let n = self.index.len() as f64;
        let (oa, ob) = (self.loads[a as usize], self.loads[b as usize]);
        let mut sum = self.sum;
        let mut sq = self.sum_sq;
        if self.counted(a) {
            sum += la - oa;
            sq += la * la - oa * oa;
        }
        if self.counted(b) {
            sum += lb - ob;
            sq += lb * lb - ob * ob;
        }
        let mean = sum / n;
        (sq / n - mean * mean).max(0.0).sqrt()
    }

    /// `n × (variance before − variance after)` of counted host loads when `a` and `b` take
    /// loads `la` and `lb`: the sum of squared deviations removed. O(1).
    pub fn spread_gain(&self, a: u32, la: f64, b: u32, lb: f64) -> f64 {
        let n = self.index.len() as f64;
        if n == 0.0 {
            return 0.0;
        }
        let (mut sum, mut sq) = (self.sum, self.sum_sq);
        for (h, l) in [(a, la), (b, lb)] {
            if self.counted(h) {
                let o = self.loads[h as usize];
                sum += l - o;
                sq += l * l - o * o;
            }
        }
        (self.sum_sq - self.sum * self.sum / n) - (sq - sum * sum / n)
    }

    /// Exact imbalance, recomputed from the loads.
    pub fn imbalance(&self) -> f64 {
        std_dev(
            (0..self.hosts.len())
                .filter(|&h| self.counted(h as u32))
                .map(|h| self.loads[h]),
        )
    }

    /// Counted hosts from the least loaded up.
    pub fn coldest(&self) -> impl Iterator<Item = u32> + '_ {
        self.index.iter().map(|k| k.1)
    }

    /// Counted hosts from the most loaded down.
    pub fn hottest(&self) -> impl Iterator<Item = u32> + '_ {
        self.index.iter().rev().map(|k| k.1)
    }

    /// What the fit check reads about host `h` as it is now.
    pub fn view(&self, h: u32) -> HostView<'_> {
        let d = &self.hosts[h as usize];
        HostView {
            capacity: d.capacity,
            ratios: d.ratios,
            allocated_vcpus: self.used_vcpus[h as usize],
            allocated_memory_mib: self.used_memory[h as usize],
            eligible: d.eligible,
            caps: &d.caps,
        }
    }

    /// Whether `h` can take `v` (the fit check without its must-rule test; `v` is not on `h`).
    pub fn fits(&self, v: u32, h: u32) -> bool {
        let d = &self.vms[v as usize];
        self.view(h)
            .fits(d.vcpus, d.memory, &self.needs[v as usize], false, || false)
    }

    /// What `v`'s host lacks that `v` needs, if anything.
    pub fn misfit(&self, v: u32) -> Option<Unfit> {
        let h = self.at[v as usize] as usize;
        fit::caps_unfit(&self.hosts[h].caps, &self.needs[v as usize])
    }

    pub fn over_capacity(&self, h: u32) -> bool {
        let h = h as usize;
        self.used_vcpus[h] > self.hosts[h].cap_vcpus
            || self.used_memory[h] > self.hosts[h].cap_memory
    }

    pub fn count(&self, r: usize, h: u32) -> u32 {
        let c = &self.counts[r];
        match c.binary_search_by_key(&h, |e| e.0) {
            Ok(i) => c[i].1,
            Err(_) => 0,
        }
    }

    /// How badly rule `r` is broken: affinity, members not on the host with the most of them;
    /// anti-affinity, members sharing a host beyond the first; host rules, members on a host
    /// they should not be on. 0 when satisfied.
    pub fn rule_violation(&self, r: usize) -> u32 {
        let c = &self.counts[r];
        match &self.rules[r].kind {
            Kind::Affinity => {
                let total: u32 = c.iter().map(|e| e.1).sum();
                total - c.iter().map(|e| e.1).max().unwrap_or(0)
            }
            Kind::Anti => c.iter().map(|e| e.1 - 1).sum(),
            kind => c.iter().filter(|e| !kind.allows(e.0)).map(|e| e.1).sum(),
        }
    }

    /// Change of rule `r`'s violation when one member moves from `a` to `b`.
    pub fn rule_delta(&self, r: usize, a: u32, b: u32) -> i64 {
        let kind = &self.rules[r].kind;
        match kind {
            Kind::Anti => {
                let (ca, cb) = (i64::from(self.count(r, a)), i64::from(self.count(r, b)));
                let before = (ca - 1).max(0) + (cb - 1).max(0);
                let after = (ca - 2).max(0) + cb;
                after - before
            }
            Kind::Affinity => {
                let c = &self.counts[r];
                let before = c.iter().map(|e| e.1).max().unwrap_or(0);
                let mut after = self.count(r, b) + 1;
                for &(h, n) in c {
                    let n = if h == a { n - 1 } else { n };
                    if h != b {
                        after = after.max(n);
                    }
                }
                i64::from(before) - i64::from(after)
            }
            _ => i64::from(!kind.allows(b)) - i64::from(!kind.allows(a)),
        }
    }

    /// Change of rule `r`'s violation when a new member (not running yet) starts on `h`.
    pub fn add_delta(&self, r: usize, h: u32) -> i64 {
        let kind = &self.rules[r].kind;
        match kind {
            Kind::Anti => i64::from(self.count(r, h) > 0),
            Kind::Affinity => {
                let c = &self.counts[r];
                let most = c.iter().map(|e| e.1).max().unwrap_or(0);
                let here = self.count(r, h);
                // Total grows by one; the largest share grows by one only if it is here.
                1 - i64::from((here + 1).max(most) - most)
            }
            _ => i64::from(!kind.allows(h)),
        }
    }

    /// Cross-host traffic removed (negative: added) by moving `v` to `b`.
    pub fn traffic_saved(&self, v: u32, b: u32) -> i64 {
        let a = self.at[v as usize];
        let mut saved: i64 = 0;
        for &(u, bytes) in &self.adj[v as usize] {
            let hu = self.at[u as usize];
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            if hu == b {
                saved = saved.saturating_add(bytes);
            } else if hu == a {
                saved = saved.saturating_sub(bytes);
            }
        }
        saved
    }

    fn set_load(&mut self, h: usize) {
        let new = host_load(
            self.demand_cpu[h],
            self.demand_memory[h],
            self.hosts[h].cores,
            self.hosts[h].memory,
        );
        let old = self.loads[h];
        if self.counted(h as u32) {
            self.index.remove(&LoadKey(old, h as u32));
            self.index.insert(LoadKey(new, h as u32));
            self.sum += new - old;
            self.sum_sq += new * new - old * old;
        }
        self.loads[h] = new;
    }

    fn count_add(&mut self, r: usize, h: u32, delta: i32) {
        let c = &mut self.counts[r];
        match c.binary_search_by_key(&h, |e| e.0) {
            Ok(i) => {
                let n = c[i].1 as i32 + delta;
                if n <= 0 {
                    c.remove(i);
                } else {
                    c[i].1 = n as u32;
                }
            }
            Err(i) => {
                if delta > 0 {
                    c.insert(i, (h, delta as u32));
                }
            }
        }
    }

    /// Moves `v` to `b`, updating every sum, index and count.
    pub fn apply(&mut self, v: u32, b: u32) {
        let a = self.at[v as usize];
        if a == b {
            return;
        }
        let saved = self.traffic_saved(v, b);
        self.cross = if saved >= 0 {
            self.cross.saturating_sub(saved as u64)
        } else {
            self.cross.saturating_add(saved.unsigned_abs())
        };
        let (ai, bi) = (a as usize, b as usize);
        let d = &self.vms[v as usize];
        let (vcpus, memory, cpu_demand, memory_demand) =
            (u64::from(d.vcpus), d.memory, d.cpu_demand, d.memory_demand);
        if let Some(p) = self.host_vms[ai].iter().position(|&x| x == v) {
            self.host_vms[ai].swap_remove(p);
        }
        self.host_vms[bi].push(v);
        self.used_vcpus[ai] -= vcpus;
        self.used_memory[ai] -= memory;
        self.used_vcpus[bi] += vcpus;
        self.used_memory[bi] += memory;
        self.demand_cpu[ai] -= cpu_demand;
        self.demand_memory[ai] -= memory_demand;
        self.demand_cpu[bi] += cpu_demand;
        self.demand_memory[bi] += memory_demand;
        if self.host_vms[ai].is_empty() {
            // No drift: an empty host has no demand.
            self.demand_cpu[ai] = 0.0;
            self.demand_memory[ai] = 0.0;
        }
        self.at[v as usize] = b;
        self.set_load(ai);
        self.set_load(bi);
        for i in 0..self.vm_rules[v as usize].len() {
            let r = self.vm_rules[v as usize][i] as usize;
            self.count_add(r, a, -1);
            self.count_add(r, b, 1);
            self.violation[r] = self.rule_violation(r);
        }
    }

    /// Adds a VM that starts running on `h` (placement); its rules come from `pending`.
    /// A VM of a name taken out before gets its index back.
    pub fn add_vm(&mut self, name: &str, data: VmData, needs: VmNeeds, h: u32) -> u32 {
        let rules = self.pending.remove(name).unwrap_or_default();
        let hi = h as usize;
        self.used_vcpus[hi] += u64::from(data.vcpus);
        self.used_memory[hi] += data.memory;
        self.demand_cpu[hi] += data.cpu_demand;
        self.demand_memory[hi] += data.memory_demand;
        let v = match self.retired.remove(name) {
            Some(v) => {
                // remove_vm left its flows and rules empty; the name is the same.
                let vi = v as usize;
                self.needs[vi] = needs;
                self.at[vi] = h;
                self.vms[vi] = data;
                self.vm_rules[vi] = Vec::new();
                v
            }
            None => {
                let v = self.vms.len() as u32;
                self.needs.push(needs);
                self.vm_names.push(name.to_owned());
                self.at.push(h);
                self.adj.push(Vec::new());
                self.vms.push(data);
                self.vm_rules.push(Vec::new());
                v
            }
        };
        self.vm_by_name.insert(name.to_owned(), v);
        self.host_vms[hi].push(v);
        self.set_load(hi);
        for &r in &rules {
            let r = r as usize;
            self.rules[r].members.push(v);
            self.count_add(r, h, 1);
            self.violation[r] = self.rule_violation(r);
        }
        self.vm_rules[v as usize] = rules;
        v
    }

    /// Takes VM `v` out (it stopped or was deleted): its host's allocation and demand drop, its
    /// rules wait for it again under its name, its flows are dropped. Its index is kept for a VM
    /// of the same name added again.
    pub fn remove_vm(&mut self, v: u32) {
        let vi = v as usize;
        let h = self.at[vi];
        let hi = h as usize;
        if let Some(p) = self.host_vms[hi].iter().position(|&x| x == v) {
            self.host_vms[hi].swap_remove(p);
        }
        let d = &self.vms[vi];
        self.used_vcpus[hi] -= u64::from(d.vcpus);
        self.used_memory[hi] -= d.memory;
        self.demand_cpu[hi] -= d.cpu_demand;
        self.demand_memory[hi] -= d.memory_demand;
        if self.host_vms[hi].is_empty() {
            self.demand_cpu[hi] = 0.0;
            self.demand_memory[hi] = 0.0;
        }
        self.set_load(hi);
        let rules = std::mem::take(&mut self.vm_rules[vi]);
        for &r in &rules {
            let r = r as usize;
            self.rules[r].members.retain(|&m| m != v);
            self.count_add(r, h, -1);
            self.violation[r] = self.rule_violation(r);
        }
        let name = self.vm_names[vi].clone();
        self.vm_by_name.remove(&name);
        self.retired.insert(name.clone(), v);
        if !rules.is_empty() {
            self.pending.insert(name, rules);
        }
        for (u, _) in std::mem::take(&mut self.adj[vi]) {
            self.adj[u as usize].retain(|&(x, _)| x != v);
        }
        let at = &self.at;
        let mut cross = self.cross;
        self.flows.retain(|&(a, b, bytes)| {
            let gone = a == v || b == v;
            if gone && at[a as usize] != at[b as usize] {
                cross = cross.saturating_sub(bytes);
            }
            !gone
        });
        self.cross = cross;
        self.needs[vi] = VmNeeds::default();
    }

    /// Changes whether host `h` may receive VMs; its load counts in the imbalance only when it
    /// may.
    pub fn set_eligibility(&mut self, h: u32, eligible: Eligibility) {
        let l = self.loads[h as usize];
        if self.counted(h) {
            self.index.remove(&LoadKey(l, h));
            self.sum -= l;
            self.sum_sq -= l * l;
        }
        self.hosts[h as usize].eligible = eligible;
        if self.counted(h) {
            self.index.insert(LoadKey(l, h));
            self.sum += l;
            self.sum_sq += l * l;
        }
    }

    /// Changes host `h`'s capabilities (and so what VMs may use there).
    pub fn set_caps(&mut self, h: u32, caps: HostCaps) {
        let d = &mut self.hosts[h as usize];
        d.cap_vcpus =
            u64::from(allocatable_vcpus(&d.capacity, &d.ratios).saturating_sub(caps.reserve.vcpus));
        d.cap_memory =
            allocatable_memory_mib(&d.capacity, &d.ratios).saturating_sub(caps.reserve.memory_mib);
        d.caps = caps;
    }

    /// Broken rules, hosts over their allocatable capacity, VMs on hosts in maintenance, VMs on
    /// hosts that lack a capability they need.
    pub fn violations(&self) -> Violations {
        let mut out = Violations::default();
        for (r, rule) in self.rules.iter().enumerate() {
            let vms = self.violation[r];
            if vms > 0 {
                let v = RuleViolation {
                    rule: rule.name.clone(),
                    vms,
                };
                if rule.must {
                    out.must.push(v);
                } else {
                    out.should.push(v);
                }
            }
        }
        for h in 0..self.hosts.len() {
            if self.over_capacity(h as u32) {
                out.over_capacity.push(self.host_names[h].clone());
                out.excess_vcpus += self.used_vcpus[h].saturating_sub(self.hosts[h].cap_vcpus);
                out.excess_memory_mib +=
                    self.used_memory[h].saturating_sub(self.hosts[h].cap_memory);
            }
            if self.hosts[h].eligible == Eligibility::Maintenance {
                out.on_maintenance += self.host_vms[h].len();
            }
        }
        for h in 0..self.hosts.len() {
            let mut vms = self.host_vms[h].clone();
            vms.sort_unstable();
            for v in vms {
                if let Some(reason) = self.misfit(v) {
                    out.misfits.push(Misfit {
                        vm: self.vm_names[v as usize].clone(),
                        host: self.host_names[h].clone(),
                        reason,
                    });
                }
            }
        }
        out
    }
}

/// The model's queries, answered by indexing it.
impl ClusterModel {
    /// Checks names, numbers and rules (contradictory rules are refused, see [`RuleError`]).
    pub fn validate(&self) -> Result<(), ModelError> {
        State::new(self, &FitTable::default()).map(|_| ())
    }

    /// Normalized load of every host, in model order (see [`crate::imbalance`]); hosts that are not
    /// connected count too.
    pub fn host_loads(&self) -> Result<Vec<f64>, ModelError> {
        let s = State::new(self, &FitTable::default())?;
        Ok((0..self.hosts.len()).map(|h| s.load(h)).collect())
    }

    /// Imbalance: standard deviation of the loads of hosts that are connected and not in
    /// maintenance (see [`crate::imbalance`]).
    pub fn imbalance(&self) -> Result<f64, ModelError> {
        Ok(State::new(self, &FitTable::default())?.imbalance())
    }

    /// Traffic between VMs on different hosts, bytes/s (see [`crate::traffic`]).
    pub fn cross_host_traffic(&self) -> Result<u64, ModelError> {
        Ok(State::new(self, &FitTable::default())?.cross)
    }

    /// Broken rules, hosts allocated beyond capacity, VMs on hosts in maintenance (every host
    /// taken as fitting every VM: see [`ClusterModel::violations_with_fit`]).
    pub fn violations(&self) -> Result<Violations, ModelError> {
        self.violations_with_fit(&FitTable::default())
    }

    /// Broken rules, hosts allocated beyond capacity (reserves included), VMs on hosts in
    /// maintenance, VMs on hosts that lack a capability they need.
    pub fn violations_with_fit(&self, fit: &FitTable) -> Result<Violations, ModelError> {
        Ok(State::new(self, fit)?.violations())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostModel, VmModel};

    #[test]
    fn a_vm_added_again_takes_its_index_back() {
        let host = |name: &str| HostModel {
            name: name.into(),
            capacity: HostCapacity {
                cores: 8,
                memory_mib: 8192,
            },
            ratios: AllocationRatios {
                cpu: 1.0,
                memory: 1.0,
            },
            eligible: Eligibility::Ok,
        };
        let model = ClusterModel {
            hosts: vec![host("h0"), host("h1")],
            vms: vec![VmModel {
                name: "a".into(),
                host: "h0".into(),
                vcpus: 2,
                memory_mib: 1024,
                cpu_demand: 0.0,
                memory_demand_mib: 0,
            }],
            ..ClusterModel::default()
        };
        let mut s = State::new(&model, &FitTable::default()).unwrap();
        let data = s.vms[0].clone();
        for _ in 0..3 {
            s.remove_vm(0);
            assert_eq!(s.used_memory[0], 0);
            assert_eq!(s.add_vm("a", data.clone(), VmNeeds::default(), 1), 0);
        }
        assert_eq!(s.vms.len(), 1);
        assert_eq!((s.used_memory[0], s.used_memory[1]), (0, 1024));
        assert_eq!(s.add_vm("b", data, VmNeeds::default(), 0), 1);
    }
}
