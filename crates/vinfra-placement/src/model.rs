//! The cluster as balancing and rule-aware placement see it: hosts, running VMs, rules and the
//! VM-to-VM traffic matrix. Plain data; what hosts offer and VMs need beyond capacity travels
//! beside it in a [`crate::fit::FitTable`]. Its queries ([`ClusterModel::validate`],
//! [`ClusterModel::imbalance`], …) live with the index that answers them (`state.rs`), and every
//! entry point that takes a model ([`crate::balance::balance`], [`crate::placer::RulePlacer`])
//! validates first.

use vinfra_types::{AllocationRatios, HostCapacity};

use crate::host::{allocatable_memory_mib, allocatable_vcpus, Eligibility};
use crate::rules::{Rule, RuleError};

/// A host: capacity, ratios in force, and whether it may run and receive VMs.
///
/// [`Eligibility::Maintenance`] hosts are evacuated by the balancer; [`Eligibility::Disconnected`]
/// hosts keep their VMs (nothing can be migrated off an unreachable agent) and receive none.
#[derive(Debug, Clone, PartialEq)]
pub struct HostModel {
    /// Host name.
    pub name: String,
    /// Physical cores and memory.
    pub capacity: HostCapacity,
    /// Ratios in force.
    pub ratios: AllocationRatios,
    /// Whether it may receive VMs.
    pub eligible: Eligibility,
}

impl HostModel {
    /// `floor(cores × cpu ratio)`, as [`crate::host::HostInput::allocatable_vcpus`].
    pub fn allocatable_vcpus(&self) -> u32 {
        allocatable_vcpus(&self.capacity, &self.ratios)
    }

    /// `floor(memory × memory ratio)`, MiB, as [`crate::host::HostInput::allocatable_memory_mib`].
    pub fn allocatable_memory_mib(&self) -> u64 {
        allocatable_memory_mib(&self.capacity, &self.ratios)
    }
}

/// A running VM: where it is, what it was given (allocation) and what it uses (demand).
#[derive(Debug, Clone, PartialEq)]
pub struct VmModel {
    /// VM name.
    pub name: String,
    /// Name of the host it runs on.
    pub host: String,
    /// Allocated vCPUs (count against the host's allocatable vCPUs).
    pub vcpus: u32,
    /// Allocated memory, MiB (counts against the host's allocatable memory; the amount a live
    /// migration copies).
    pub memory_mib: u64,
    /// Measured CPU demand, in cores.
    pub cpu_demand: f64,
    /// Measured memory demand, MiB.
    pub memory_demand_mib: u64,
}

/// East-west traffic between two VMs (both directions together), bytes per second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficFlow {
    /// One VM.
    pub a: String,
    /// The other.
    pub b: String,
    /// Bytes per second, both directions.
    pub bytes_per_s: u64,
}

/// Everything the balancer and rule-aware placement know about a cluster.
///
/// Rules may name VMs that are not in `vms` (stopped or not created yet): such members are
/// ignored until they run. Flows must name running VMs; several flows for the same pair add up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterModel {
    /// The hosts.
    pub hosts: Vec<HostModel>,
    /// The running VMs.
    pub vms: Vec<VmModel>,
    /// Placement rules.
    pub rules: Vec<Rule>,
    /// The traffic matrix.
    pub traffic: Vec<TrafficFlow>,
}

/// Why a [`ClusterModel`] is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Two hosts carry the same name.
    #[error("host {host} is listed twice")]
    DuplicateHost {
        /// The name.
        host: String,
    },
    /// Two VMs carry the same name.
    #[error("VM '{vm}' is listed twice")]
    DuplicateVm {
        /// The name.
        vm: String,
    },
    /// A VM runs on a host the model does not list.
    #[error("VM '{vm}' runs on host {host}, which is not in the model")]
    UnknownHost {
        /// The VM.
        vm: String,
        /// The host it names.
        host: String,
    },
    /// A host reports no cores or no memory.
    #[error("host {host} is invalid: it reports no cores or no memory")]
    NoCapacity {
        /// The host.
        host: String,
    },
    /// A host's allocation ratios are out of range.
    #[error("host {host} is invalid: {why}")]
    InvalidRatios {
        /// The host.
        host: String,
        /// What is wrong with them.
        why: String,
    },
    /// A VM is allocated no vCPU or no memory.
    #[error("VM '{vm}' is invalid: it is allocated no vCPU or no memory")]
    NoAllocation {
        /// The VM.
        vm: String,
    },
    /// A VM's CPU demand is not a finite number of cores ≥ 0.
    #[error(
        "VM '{vm}' is invalid: its CPU demand {cpu_demand} is not a finite number of cores ≥ 0"
    )]
    InvalidDemand {
        /// The VM.
        vm: String,
        /// The demand given.
        cpu_demand: f64,
    },
    /// The named VM is not in the model.
    #[error("VM '{vm}' is not in the model")]
    UnknownVm {
        /// The name.
        vm: String,
    },
    /// A flow names a VM that is not running.
    #[error("traffic names VM '{vm}', which is not in the model")]
    UnknownFlowVm {
        /// The name.
        vm: String,
    },
    /// A flow goes from a VM to itself.
    #[error("traffic from VM '{vm}' to itself is meaningless")]
    SelfFlow {
        /// The VM.
        vm: String,
    },
    /// The rules are invalid or contradict each other.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

impl ClusterModel {
    /// Moves `vm` to `host` in the model (the record a completed migration leaves).
    pub fn move_vm(&mut self, vm: &str, host: &str) -> Result<(), ModelError> {
        if !self.hosts.iter().any(|h| h.name == host) {
            return Err(ModelError::UnknownHost {
                vm: vm.to_owned(),
                host: host.to_owned(),
            });
        }
        match self.vms.iter_mut().find(|v| v.name == vm) {
            Some(v) => {
                v.host = host.to_owned();
                Ok(())
            }
            None => Err(ModelError::UnknownVm { vm: vm.to_owned() }),
        }
    }
}
