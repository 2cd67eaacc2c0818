//! A host and a VM as plain placement sees them: capacity, ratios, allocation, eligibility; the
//! VM's size; where it went.

use std::fmt;

use vinfra_types::{AllocationRatios, HostCapacity};

/// Whether a host may receive new VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A host as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInput {
    pub name: String,
    pub capacity: HostCapacity,
    /// Ratios in force for the host.
    pub ratios: AllocationRatios,
    /// vCPUs of the VMs already placed here that count (desired state running).
    pub allocated_vcpus: u32,
    /// Memory of the VMs already placed here that count, MiB.
    pub allocated_memory_mib: u64,
    pub eligible: Eligibility,
}

impl HostInput {
    /// `floor(cores × cpu ratio)`.
    pub fn allocatable_vcpus(&self) -> u32 {
        // `as` saturates: a NaN or negative ratio gives 0, a huge one u32::MAX.
        (f64::from(self.capacity.cores) * self.ratios.cpu).floor() as u32
    }

    /// `floor(memory × memory ratio)`, MiB.
    pub fn allocatable_memory_mib(&self) -> u64 {
        (self.capacity.memory_mib as f64 * self.ratios.memory).floor() as u64
    }

    /// vCPUs still free (0 when over-allocated).
    pub fn free_vcpus(&self) -> u32 {
        self.allocatable_vcpus()
            .saturating_sub(self.allocated_vcpus)
    }

    /// Memory still free, MiB (0 when over-allocated).
    pub fn free_memory_mib(&self) -> u64 {
        self.allocatable_memory_mib()
            .saturating_sub(self.allocated_memory_mib)
    }

    pub(crate) fn fits(&self, req: &Request) -> bool {
        self.free_vcpus() >= req.vcpus && self.free_memory_mib() >= req.memory_mib
    }

    /// Why `req` does not fit here, in one line, or `None` when it fits.
    pub fn shortfall(&self, req: &Request) -> Option<String> {
        let mut parts = Vec::new();
        let mem_needed = u128::from(self.allocated_memory_mib) + u128::from(req.memory_mib);
        let mem_alloc = self.allocatable_memory_mib();
        if mem_needed > u128::from(mem_alloc) {
            parts.push(format!(
                "memory short by {} MiB (allocated {} of {} MiB allocatable = {} MiB physical × ratio {})",
                mem_needed - u128::from(mem_alloc),
                self.allocated_memory_mib,
                mem_alloc,
                self.capacity.memory_mib,
                self.ratios.memory
            ));
        }
        let cpu_needed = u64::from(self.allocated_vcpus) + u64::from(req.vcpus);
        let cpu_alloc = self.allocatable_vcpus();
        if cpu_needed > u64::from(cpu_alloc) {
            parts.push(format!(
                "vCPU short by {} (allocated {} of {} vCPU allocatable = {} cores × ratio {})",
                cpu_needed - u64::from(cpu_alloc),
                self.allocated_vcpus,
                cpu_alloc,
                self.capacity.cores,
                self.ratios.cpu
            ));
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }

    /// How far `req` is from fitting: (memory short, vCPU short); (0, 0) when it fits.
    pub(crate) fn deficit(&self, req: &Request) -> (u64, u32) {
        (
            req.memory_mib.saturating_sub(self.free_memory_mib()),
            req.vcpus.saturating_sub(self.free_vcpus()),
        )
    }
}

/// A VM to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// VM name (for messages).
    pub vm: String,
    pub vcpus: u32,
    pub memory_mib: u64,
}

/// Where a VM goes and what its host looks like with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub host: String,
    /// Host allocation including the VM.
    pub allocated_vcpus: u32,
    pub allocated_memory_mib: u64,
    pub allocatable_vcpus: u32,
    pub allocatable_memory_mib: u64,
}
