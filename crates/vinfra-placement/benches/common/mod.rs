//! Deterministic generators shared by the benchmarks.
#![allow(dead_code)]

use vinfra_placement::{ClusterModel, Eligibility, HostModel, VmModel};
use vinfra_types::{AllocationRatios, HostCapacity};

/// A small deterministic generator (splitmix64), so every run sees the same cluster.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn host(name: String, cores: u32, memory_mib: u64) -> HostModel {
    HostModel {
        name,
        capacity: HostCapacity { cores, memory_mib },
        ratios: AllocationRatios {
            cpu: 4.0,
            memory: 1.0,
        },
        eligible: Eligibility::Ok,
    }
}

pub fn vm(name: String, host: String, vcpus: u32, memory_mib: u64, cpu: f64, mem: u64) -> VmModel {
    VmModel {
        name,
        host,
        vcpus,
        memory_mib,
        cpu_demand: cpu,
        memory_demand_mib: mem,
    }
}

/// Maximum load over hosts that are connected and not in maintenance.
pub fn max_load(m: &ClusterModel) -> f64 {
    let loads = m.host_loads().unwrap_or_default();
    m.hosts
        .iter()
        .zip(loads)
        .filter(|(h, _)| h.eligible == Eligibility::Ok)
        .map(|(_, l)| l)
        .fold(0.0, f64::max)
}
