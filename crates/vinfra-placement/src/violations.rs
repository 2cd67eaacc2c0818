//! What is wrong with a placement: broken rules, hosts allocated beyond capacity, VMs left on
//! hosts in maintenance, VMs on hosts whose capabilities no longer fit them. Computed by the
//! model's queries, reported by plans.

use crate::fit::Unfit;

/// A broken rule and how many VMs break it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// The rule.
    pub rule: String,
    /// How badly: affinity, members away from the host with the most of them; anti-affinity,
    /// members sharing a host beyond the first; host rules, members on a host they should not
    /// be on.
    pub vms: u32,
}

/// A VM on a host that lacks a capability it needs (a trunk, an underlay MTU, a CPU model).
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    /// The VM.
    pub vm: String,
    /// The host it runs on.
    pub host: String,
    /// What the host lacks.
    pub reason: Unfit,
}

/// Everything wrong with a placement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Violations {
    /// Broken must-rules, in rule order.
    pub must: Vec<RuleViolation>,
    /// Broken should-rules, in rule order.
    pub should: Vec<RuleViolation>,
    /// Hosts allocated beyond their allocatable capacity (reserve included), in model order.
    pub over_capacity: Vec<String>,
    /// vCPUs allocated beyond capacity, summed over those hosts.
    pub excess_vcpus: u64,
    /// Memory allocated beyond capacity, summed over those hosts, MiB.
    pub excess_memory_mib: u64,
    /// VMs still on hosts in maintenance.
    pub on_maintenance: usize,
    /// VMs on hosts that lack a capability they need, in model order.
    pub misfits: Vec<Misfit>,
}

impl Violations {
    /// Number of hard problems: broken must-rules, hosts over capacity, VMs on maintenance
    /// hosts, VMs on hosts that do not fit them.
    pub fn hard(&self) -> usize {
        self.must.len() + self.over_capacity.len() + self.on_maintenance + self.misfits.len()
    }

    /// VMs breaking a should-rule, summed over the rules.
    pub fn should_vms(&self) -> u64 {
        self.should.iter().map(|v| u64::from(v.vms)).sum()
    }

    /// VMs breaking a must-rule, summed over the rules.
    pub fn must_vms(&self) -> u64 {
        self.must.iter().map(|v| u64::from(v.vms)).sum()
    }

    /// The hard problems counted finely, each a number a repair lowers: must-rule VMs, excess
    /// vCPUs, excess MiB, VMs on maintenance hosts, misfit VMs.
    pub fn hard_parts(&self) -> [u64; 5] {
        [
            self.must_vms(),
            self.excess_vcpus,
            self.excess_memory_mib,
            self.on_maintenance as u64,
            self.misfits.len() as u64,
        ]
    }
}
