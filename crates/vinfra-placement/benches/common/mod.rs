//! Deterministic generators shared by the benchmarks.
#![allow(dead_code)]

use vinfra_placement::{
    ClusterModel, Eligibility, FitTable, HostCaps, HostModel, OverlayMtu, Rule, Strength,
    TrafficFlow, VmModel, VmNeeds,
};
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

/// Hosts of the large cluster.
pub const HOSTS: usize = 10_000;
/// VMs of the large cluster.
pub const VMS: usize = 100_000;

pub fn big_hosts(rng: &mut Rng) -> Vec<vinfra_placement::HostModel> {
    (0..HOSTS)
        .map(|i| {
            let mut h = host(
                format!("host-{i:05}"),
                rng.pick(&[32, 48, 64]),
                rng.pick(&[262_144, 393_216, 524_288]),
            );
            h.ratios.memory = 1.2;
            h.eligible = match i % 100 {
                0 | 50 => Eligibility::Maintenance,
                1 => Eligibility::Disconnected,
                _ => Eligibility::Ok,
            };
            h
        })
        .collect()
}

/// The 100,000-VM cluster: 5 % hot hosts, must-anti-affinity triples, must-affinity pairs,
/// should-affinity pairs, run-on groups, 50,000 flows.
pub fn big_cluster() -> ClusterModel {
    let mut rng = Rng(7);
    let hosts = big_hosts(&mut rng);
    let mut used = vec![(0u64, 0u64); HOSTS];
    let mut vms: Vec<vinfra_placement::VmModel> = Vec::with_capacity(VMS);
    let mut rules = Vec::new();
    let fits = |used: &[(u64, u64)], h: usize, c: u32, m: u64| {
        let host = &hosts[h];
        used[h].0 + u64::from(c) <= u64::from(host.allocatable_vcpus())
            && used[h].1 + m <= host.allocatable_memory_mib()
    };
    let mut i = 0;
    while vms.len() < VMS {
        let vcpus = rng.pick(&[1, 2, 2, 4, 4, 8]);
        let mem = rng.pick(&[2048, 4096, 4096, 8192, 16_384]);
        let mut h = rng.below(HOSTS);
        // Pairs of must-affinity: every 20th VM joins the previous one's host.
        let pair = i % 20 == 1;
        if pair {
            if let Some(last) = vms.last() {
                h = hosts.iter().position(|x| x.name == last.host).unwrap_or(h);
            }
        }
        let mut tries = 0;
        while !fits(&used, h, vcpus, mem) && tries < 50 {
            h = rng.below(HOSTS);
            tries += 1;
        }
        if !fits(&used, h, vcpus, mem) {
            i += 1;
            continue;
        }
        used[h].0 += u64::from(vcpus);
        used[h].1 += mem;
        let hot = h % 20 == 3;
        let busy = if hot { 0.9 } else { 0.1 + 0.4 * rng.unit() };
        let cpu = f64::from(vcpus) * busy;
        let mem_demand = mem * if hot { 9 } else { 5 } / 10;
        let name = format!("vm-{:06}", vms.len());
        vms.push(vm(name, hosts[h].name.clone(), vcpus, mem, cpu, mem_demand));
        if pair && vms.len() >= 2 {
            let n = vms.len();
            if vms[n - 1].host == vms[n - 2].host {
                rules.push(Rule::affinity(
                    &format!("pair-{n}"),
                    Strength::Must,
                    &[&vms[n - 2].name, &vms[n - 1].name],
                ));
            }
        }
        i += 1;
    }
    // Must-anti-affinity triples among VMs on distinct hosts (a few share a host: broken).
    for k in 0..2000 {
        let base = 40 * k + 5;
        let names = [&vms[base].name, &vms[base + 7].name, &vms[base + 13].name];
        let hs: std::collections::BTreeSet<&str> = [base, base + 7, base + 13]
            .iter()
            .map(|&v| vms[v].host.as_str())
            .collect();
        if hs.len() == 3 || k % 10 == 0 {
            let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
            rules.push(Rule::anti_affinity(
                &format!("apart-{k}"),
                Strength::Must,
                &names,
            ));
        }
    }
    // Should-affinity pairs.
    for k in 0..1000 {
        let (a, b) = (rng.below(VMS), rng.below(VMS));
        if a != b {
            rules.push(Rule::affinity(
                &format!("near-{k}"),
                Strength::Should,
                &[&vms[a].name, &vms[b].name],
            ));
        }
    }
    // Run-on groups: VMs that already run inside a 100-host group.
    for g in 0..100 {
        let group: Vec<String> = (0..100)
            .map(|j| format!("host-{:05}", g * 100 + j))
            .collect();
        let members: Vec<&str> = vms
            .iter()
            .skip(g * 997 % VMS)
            .filter(|v| group.contains(&v.host))
            .take(5)
            .map(|v| v.name.as_str())
            .collect();
        let hs: Vec<&str> = group.iter().map(String::as_str).collect();
        if !members.is_empty() {
            rules.push(Rule::run_on(
                &format!("group-{g}"),
                if g % 2 == 0 {
                    Strength::Must
                } else {
                    Strength::Should
                },
                &members,
                &hs,
            ));
        }
    }
    let mut traffic = Vec::new();
    for _ in 0..50_000 {
        let (a, b) = (rng.below(VMS), rng.below(VMS));
        if a != b {
            let heavy = rng.below(50) == 0;
            traffic.push(TrafficFlow {
                a: vms[a].name.clone(),
                b: vms[b].name.clone(),
                bytes_per_s: if heavy {
                    200 << 20
                } else {
                    (1 + rng.below(20) as u64) << 20
                },
            });
        }
    }
    ClusterModel {
        hosts,
        vms,
        rules,
        traffic,
    }
}

/// Capabilities of host number `i` of the large cluster: 9 in 10 have a VLAN trunk, 1 in 4 an
/// underlay MTU of 9000 (the others 1500).
pub fn big_caps(i: usize) -> HostCaps {
    HostCaps {
        vlan_trunk: i % 10 != 7,
        underlay_mtu: if i.is_multiple_of(4) { 9000 } else { 1500 },
        ..HostCaps::default()
    }
}

/// Capabilities and needs for the large cluster as it runs: VM `i` has the needs of
/// [`needs_of`] where its host offers them (the cluster was placed knowing them), and then 1
/// host in 100 lost its trunk and its large MTU (an agent restarted without them): the VMs on
/// it that need them no longer fit.
pub fn big_fit(m: &ClusterModel) -> FitTable {
    let mut fit = FitTable::default();
    let caps: Vec<HostCaps> = (0..m.hosts.len()).map(big_caps).collect();
    let index: std::collections::HashMap<&str, usize> = m
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();
    for (i, v) in m.vms.iter().enumerate() {
        let needs = needs_of(i);
        let h = index.get(v.host.as_str()).copied().unwrap_or(0);
        if needs.met_by(&caps[h]) {
            fit.vms.insert(v.name.clone(), needs);
        }
    }
    for (i, h) in m.hosts.iter().enumerate() {
        let mut c = caps[i].clone();
        if i % 100 == 42 {
            c.vlan_trunk = false;
            c.underlay_mtu = 1500;
        }
        fit.hosts.insert(h.name.clone(), c);
    }
    fit
}

/// Capabilities of the large cluster's hosts, none lost (see [`big_caps`]).
pub fn big_host_caps(m: &ClusterModel) -> FitTable {
    let mut fit = FitTable::default();
    for (i, h) in m.hosts.iter().enumerate() {
        fit.hosts.insert(h.name.clone(), big_caps(i));
    }
    fit
}

/// The needs of VM number `i` (see [`big_fit`]).
pub fn needs_of(i: usize) -> VmNeeds {
    VmNeeds {
        vlan_networks: if i.is_multiple_of(5) {
            vec![format!("vlan-{}", i % 8)]
        } else {
            Vec::new()
        },
        overlay: (i % 10 == 3).then(|| OverlayMtu {
            network: "jumbo".into(),
            mtu: 8950,
        }),
        cpu_model: None,
        host_cpu: None,
        kvm: None,
        machine_type: None,
        padded_ram: None,
    }
}

/// Median, 99th percentile and maximum of `samples` (sorted in place), microseconds.
pub fn percentiles(samples: &mut [std::time::Duration]) -> (f64, f64, f64) {
    samples.sort_unstable();
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    match samples.len() {
        0 => (0.0, 0.0, 0.0),
        n => (
            us(samples[n / 2]),
            us(samples[n * 99 / 100]),
            us(samples[n - 1]),
        ),
    }
}
