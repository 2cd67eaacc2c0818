//! Random clusters for the property tests: hosts with capabilities, running VMs with needs,
//! rules (some naming VMs that do not run), traffic.

use proptest::prelude::*;
use vinfra_placement::{
    ClusterModel, Eligibility, FitTable, HostCaps, HostModel, OverlayMtu, Reserve, Rule, Strength,
    TrafficFlow, VmNeeds,
};
use vinfra_types::{AllocationRatios, HostCapacity};

use super::{vm, GIB};

/// VM indexes rules draw from: past the running VMs they name VMs that do not run.
pub const NAMED_VMS: usize = 34;

#[derive(Debug, Clone)]
pub struct RuleSpec {
    kind: u8,
    must: bool,
    vms: Vec<usize>,
    hosts: Vec<usize>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        0u8..4,
        any::<bool>(),
        prop::collection::vec(0usize..NAMED_VMS, 1..5),
        prop::collection::vec(0usize..7, 1..4),
    )
        .prop_map(|(kind, must, vms, hosts)| RuleSpec {
            kind,
            must,
            vms,
            hosts,
        })
}

/// cores, GiB, cpu ratio, memory ratio, eligibility (0 maintenance, 1 disconnected, else ok).
pub type HostTuple = (u32, u64, f64, f64, u8);
/// host, vCPUs, GiB, CPU demand, memory demand %.
pub type VmTuple = (usize, u32, u64, f64, u64);

fn build(
    hosts: &[HostTuple],
    vms: &[VmTuple],
    rules: &[RuleSpec],
    flows: &[(usize, usize, u64)],
) -> ClusterModel {
    let hosts: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, &(cores, gib, cpu, mem, el))| HostModel {
            name: format!("h{i}"),
            capacity: HostCapacity {
                cores,
                memory_mib: gib * GIB,
            },
            ratios: AllocationRatios { cpu, memory: mem },
            eligible: match el {
                0 => Eligibility::Maintenance,
                1 => Eligibility::Disconnected,
                _ => Eligibility::Ok,
            },
        })
        .collect();
    let n = hosts.len();
    let vms: Vec<_> = vms
        .iter()
        .enumerate()
        .map(|(i, &(h, vcpus, gib, cpu, pct))| {
            let mut v = vm(&format!("v{i}"), &format!("h{}", h % n), vcpus, gib, cpu);
            v.memory_demand_mib = gib * GIB * pct / 100;
            v
        })
        .collect();
    let name = |i: usize| format!("v{i}");
    let rules = rules
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let names: Vec<String> = r.vms.iter().map(|&i| name(i)).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let hs: Vec<String> = r.hosts.iter().map(|&h| format!("h{}", h % n)).collect();
            let hs: Vec<&str> = hs.iter().map(String::as_str).collect();
            let s = if r.must {
                Strength::Must
            } else {
                Strength::Should
            };
            let rn = format!("r{k}");
            match r.kind {
                0 => Rule::affinity(&rn, s, &names),
                1 => Rule::anti_affinity(&rn, s, &names),
                2 => Rule::run_on(&rn, s, &names, &hs),
                _ => Rule::not_on(&rn, s, &names, &hs),
            }
        })
        .collect();
    let traffic = flows
        .iter()
        .filter(|(a, b, _)| a != b && *a < vms.len() && *b < vms.len())
        .map(|&(a, b, bytes)| TrafficFlow {
            a: name(a),
            b: name(b),
            bytes_per_s: bytes << 20,
        })
        .collect();
    ClusterModel {
        hosts,
        vms,
        rules,
        traffic,
    }
}

/// A cluster of 2 to 6 hosts and up to 29 running VMs.
pub fn cluster() -> impl Strategy<Value = ClusterModel> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec![4u32, 8, 16]),
                prop::sample::select(vec![16u64, 32, 64]),
                prop::sample::select(vec![1.0, 2.0, 4.0]),
                prop::sample::select(vec![1.0, 1.5]),
                prop::sample::select(vec![0u8, 1, 2, 2, 2, 2, 2, 2]),
            ),
            2..7,
        ),
        prop::collection::vec(
            (
                0usize..7,
                1u32..5,
                prop::sample::select(vec![1u64, 2, 4, 8]),
                0.0f64..4.0,
                0u64..100,
            ),
            0..30,
        ),
        prop::collection::vec(rule_spec(), 0..5),
        prop::collection::vec((0usize..30, 0usize..30, 1u64..500), 0..10),
    )
        .prop_map(|(h, v, r, f)| build(&h, &v, &r, &f))
}

/// Capabilities: a trunk or not, an underlay MTU, maybe a CPU model, maybe a reserve.
pub fn caps() -> impl Strategy<Value = HostCaps> {
    (
        any::<bool>(),
        prop::sample::select(vec![1400u32, 1500, 1500, 9000]),
        prop::sample::select(vec![false, false, true]),
        prop::sample::select(vec![(0u32, 0u64), (0, 0), (2, 2048)]),
    )
        .prop_map(
            |(vlan_trunk, underlay_mtu, cpu, (vcpus, memory_mib))| HostCaps {
                vlan_trunk,
                underlay_mtu,
                cpu_models: if cpu { vec!["v3".into()] } else { Vec::new() },
                host_cpu: None,
                kvm: None,
                machine_types: Vec::new(),
                padded_ram: None,
                reserve: Reserve { vcpus, memory_mib },
            },
        )
}

/// Needs: mostly none, sometimes a VLAN network, an overlay MTU or a CPU model.
pub fn needs() -> impl Strategy<Value = VmNeeds> {
    (
        prop::sample::select(vec![false, false, true]),
        prop::sample::select(vec![None, None, Some(1450u32), Some(1500), Some(8950)]),
        prop::sample::select(vec![false, false, false, true]),
    )
        .prop_map(|(vlan, overlay, cpu)| VmNeeds {
            vlan_networks: if vlan { vec!["v10".into()] } else { Vec::new() },
            overlay: overlay.map(|mtu| OverlayMtu {
                network: format!("ov{mtu}"),
                mtu,
            }),
            cpu_model: cpu.then(|| "v3".into()),
            host_cpu: None,
            kvm: None,
            machine_type: None,
            padded_ram: None,
        })
}

/// A fit table for `m`: capabilities for every host, needs for every VM that may run.
pub fn fit_for(m: &ClusterModel) -> impl Strategy<Value = FitTable> {
    let hosts: Vec<String> = m.hosts.iter().map(|h| h.name.clone()).collect();
    (
        prop::collection::vec(caps(), hosts.len()),
        prop::collection::vec(needs(), NAMED_VMS),
    )
        .prop_map(move |(caps, needs)| FitTable {
            hosts: hosts.iter().cloned().zip(caps).collect(),
            vms: needs
                .into_iter()
                .enumerate()
                .map(|(i, n)| (format!("v{i}"), n))
                .collect(),
        })
}

/// A cluster with its fit table.
pub fn fitted_cluster() -> impl Strategy<Value = (ClusterModel, FitTable)> {
    cluster().prop_flat_map(|m| {
        let fit = fit_for(&m);
        (Just(m), fit)
    })
}
