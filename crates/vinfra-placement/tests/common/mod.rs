//! Builders shared by the integration tests.
#![allow(dead_code)]

pub mod random;

use vinfra_placement::{ClusterModel, Eligibility, HostModel, TrafficFlow, VmModel};
use vinfra_types::{AllocationRatios, HostCapacity};

pub const GIB: u64 = 1024;

/// A host with `cores` cores and `gib` GiB, ratios 4.0 (CPU) and 1.0 (memory).
pub fn host(name: &str, cores: u32, gib: u64) -> HostModel {
    HostModel {
        name: name.into(),
        capacity: HostCapacity {
            cores,
            memory_mib: gib * GIB,
        },
        ratios: AllocationRatios {
            cpu: 4.0,
            memory: 1.0,
        },
        eligible: Eligibility::Ok,
    }
}

/// A VM of `vcpus` vCPU and `gib` GiB on `host`, using `cpu` cores and half its memory.
pub fn vm(name: &str, host: &str, vcpus: u32, gib: u64, cpu: f64) -> VmModel {
    VmModel {
        name: name.into(),
        host: host.into(),
        vcpus,
        memory_mib: gib * GIB,
        cpu_demand: cpu,
        memory_demand_mib: gib * GIB / 2,
    }
}

pub fn flow(a: &str, b: &str, bytes_per_s: u64) -> TrafficFlow {
    TrafficFlow {
        a: a.into(),
        b: b.into(),
        bytes_per_s,
    }
}

/// `n` hosts `h0`… of 16 cores and 64 GiB.
pub fn hosts(n: usize) -> Vec<HostModel> {
    (0..n).map(|i| host(&format!("h{i}"), 16, 64)).collect()
}

pub fn model(hosts: Vec<HostModel>, vms: Vec<VmModel>) -> ClusterModel {
    ClusterModel {
        hosts,
        vms,
        rules: Vec::new(),
        traffic: Vec::new(),
    }
}

/// Host of `vm` in `m`.
pub fn host_of<'a>(m: &'a ClusterModel, vm: &str) -> &'a str {
    m.vms
        .iter()
        .find(|v| v.name == vm)
        .map(|v| v.host.as_str())
        .unwrap_or("")
}

/// VMs per host, in host order.
pub fn per_host(m: &ClusterModel) -> Vec<(String, usize)> {
    m.hosts
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                m.vms.iter().filter(|v| v.host == h.name).count(),
            )
        })
        .collect()
}
