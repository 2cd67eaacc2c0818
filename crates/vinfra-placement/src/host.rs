//! A host and a VM as placement sees them: capacity, ratios, allocation, eligibility; the VM's
//! size; where it went. What a host offers beyond capacity and what a VM needs beyond its size
//! are in [`crate::fit`].

use std::fmt;

use vinfra_types::{AllocationRatios, HostCapacity};

/// Whether a host may receive new VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eligibility {
    /// Connected and not in maintenance.
    Ok,
    /// Its agent is not connected.
    Disconnected,
    /// An operator put it in maintenance.
    Maintenance,
}

impl fmt::Display for Eligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Eligibility::Ok => "available",
            Eligibility::Disconnected => "its agent is disconnected",
            Eligibility::Maintenance => "it is in maintenance",
        })
    }
}

/// `floor(cores × cpu ratio)`. `as` saturates: a NaN or negative ratio gives 0, a huge one
/// `u32::MAX`.
pub(crate) fn allocatable_vcpus(capacity: &HostCapacity, ratios: &AllocationRatios) -> u32 {
    (f64::from(capacity.cores) * ratios.cpu).floor() as u32
}

/// `floor(memory × memory ratio)`, MiB.
pub(crate) fn allocatable_memory_mib(capacity: &HostCapacity, ratios: &AllocationRatios) -> u64 {
    (capacity.memory_mib as f64 * ratios.memory).floor() as u64
}

/// A host as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInput {
    /// Host name.
    pub name: String,
    /// Physical cores and memory.
    pub capacity: HostCapacity,
    /// Ratios in force for the host.
    pub ratios: AllocationRatios,
    /// vCPUs of the VMs already placed here that count (desired state running).
    pub allocated_vcpus: u32,
    /// Memory of the VMs already placed here that count, MiB.
    pub allocated_memory_mib: u64,
    /// Whether it may receive VMs now.
    pub eligible: Eligibility,
}

impl HostInput {
    /// `floor(cores × cpu ratio)`.
    pub fn allocatable_vcpus(&self) -> u32 {
        allocatable_vcpus(&self.capacity, &self.ratios)
    }

    /// `floor(memory × memory ratio)`, MiB.
    pub fn allocatable_memory_mib(&self) -> u64 {
        allocatable_memory_mib(&self.capacity, &self.ratios)
    }

    /// vCPUs still free (0 when over-allocated), before any reserve.
    pub fn free_vcpus(&self) -> u32 {
        self.allocatable_vcpus()
            .saturating_sub(self.allocated_vcpus)
    }

    /// Memory still free, MiB (0 when over-allocated), before any reserve.
    pub fn free_memory_mib(&self) -> u64 {
        self.allocatable_memory_mib()
            .saturating_sub(self.allocated_memory_mib)
    }
}

/// A VM asking for a host: its name (for messages and rules) and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRequest {
    /// VM name.
    pub vm: String,
    /// vCPUs it is allocated.
    pub vcpus: u32,
    /// Memory it is allocated, MiB.
    pub memory_mib: u64,
}

/// Where a VM goes and what its host looks like with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The host chosen.
    pub host: String,
    /// Host vCPU allocation including the VM.
    pub allocated_vcpus: u32,
    /// Host memory allocation including the VM, MiB.
    pub allocated_memory_mib: u64,
    /// `floor(cores × cpu ratio)` of the host.
    pub allocatable_vcpus: u32,
    /// `floor(memory × memory ratio)` of the host, MiB.
    pub allocatable_memory_mib: u64,
}
