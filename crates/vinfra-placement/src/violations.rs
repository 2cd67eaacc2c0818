//! What is wrong with a placement: broken rules, hosts allocated beyond capacity, VMs left on
//! hosts in maintenance. Computed by the model's queries, reported by plans.

/// A broken rule and how many VMs break it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    pub rule: String,
    pub vms: u32,
}

/// Everything wrong with a placement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    /// Broken must-rules, in rule order.
    pub must: Vec<RuleViolation>,
    /// Broken should-rules, in rule order.
    pub should: Vec<RuleViolation>,
    /// Hosts allocated beyond their allocatable capacity, in model order.
    pub over_capacity: Vec<String>,
    /// VMs still on hosts in maintenance.
    pub on_maintenance: usize,
}

impl Violations {
    /// Number of hard problems: broken must-rules, hosts over capacity, VMs on maintenance hosts.
    pub fn hard(&self) -> usize {
        self.must.len() + self.over_capacity.len() + self.on_maintenance
    }

    /// VMs breaking a should-rule, summed over the rules.
    pub fn should_vms(&self) -> u64 {
        self.should.iter().map(|v| u64::from(v.vms)).sum()
    }

    /// VMs breaking a must-rule, summed over the rules.
    pub fn must_vms(&self) -> u64 {
        self.must.iter().map(|v| u64::from(v.vms)).sum()
    }
}
