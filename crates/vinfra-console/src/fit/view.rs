//! What placement is told about the cluster (see the parent module's doc): each host's fit
//! ([`HostFit`]: capacity, ratios, eligibility, capabilities with the reserve of the VMs
//! leaving it), each VM's needs (its networks' trunk and MTU, its CPU model and machine type),
//! the whole cluster read from the mirrors ([`ClusterView`]) and the stored rules in the library's
//! terms.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use vinfra_placement::{
    ClusterModel, Constraint, Eligibility, FitTable, HostCaps, HostModel, OverlayMtu, Reserve,
    Rule, Strength, Target, VmModel, VmNeeds,
};
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
use vinfra_types::network::NetworkKind;
use vinfra_types::{AllocationRatios, HostCapacity, HostStatus, VmPlatform, VmSpec};

use super::platform;
use crate::state::records::{DesiredPower, HostRecord};
use crate::state::{ActiveMigration, Console};

/// A host as the placer was last told about it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HostFit {
    pub capacity: HostCapacity,
    pub ratios: AllocationRatios,
    pub eligible: Eligibility,
    pub caps: HostCaps,
}

/// The networks of a VM's NICs, in NIC order.
pub(super) fn nic_networks(spec: &VmSpec) -> Vec<String> {
    spec.nics.iter().map(|n| n.network.clone()).collect()
}

/// What VM `vm` (`spec`, of `platform`) placed for `target` needs of its host ([`needs_of`]):
/// a new VM the CPU baseline `baseline` ([`platform::set_needs`]); a live move also what its
/// current host runs it with ([`platform::set_live_needs`]).
pub(super) fn vm_needs(
    console: &Console,
    vm: &str,
    spec: &VmSpec,
    platform: Option<&VmPlatform>,
    target: Target<'_>,
    baseline: Option<&str>,
) -> VmNeeds {
    let mut needs = needs_of(console, &nic_networks(spec), platform);
    match target {
        Target::Any | Target::Host(_) if platform.is_none() => {
            platform::set_needs(&mut needs, None, baseline);
        }
        Target::Migrate(_) | Target::Planned(_) if platform.is_some() => {
            let source = console.with_vms(|v| v.get(vm).map(|r| r.value.host.clone()));
            if let Some(source) = source {
                console.with_hosts(|hosts| {
                    if let Some(h) = hosts.get(&source) {
                        platform::set_live_needs(&mut needs, platform, &h.value);
                    }
                });
            }
        }
        _ => {}
    }
    needs
}

/// What a VM with NICs on `networks` (and of `platform`) needs of its host: a VLAN trunk for
/// its VLAN networks, an underlay MTU for the overlay network with the largest MTU (the first
/// on a tie), its CPU model and machine type ([`platform::set_needs`]). Networks that do not
/// exist need nothing (the address management refuses them).
pub(super) fn needs_of(
    console: &Console,
    networks: &[String],
    platform: Option<&VmPlatform>,
) -> VmNeeds {
    let mut needs = VmNeeds::default();
    if platform.is_some() {
        platform::set_needs(&mut needs, platform, None);
    }
    if networks.is_empty() {
        return needs;
    }
    console.with_networks(|nets| {
        for name in networks {
            let Some(n) = nets.get(name).map(|r| &r.value.network) else {
                continue;
            };
            match n.kind {
                NetworkKind::Vlan => {
                    if !needs.vlan_networks.contains(name) {
                        needs.vlan_networks.push(name.clone());
                    }
                }
                NetworkKind::Overlay => {
                    if needs.overlay.as_ref().is_none_or(|o| n.mtu > o.mtu) {
                        needs.overlay = Some(OverlayMtu {
                            network: name.clone(),
                            mtu: n.mtu,
                        });
                    }
                }
            }
        }
        needs
    })
}

/// Host `rec` as placement sees it, or `None` while its capacity is unknown: capacity
/// (reported, else from its last Hello), ratios in force, whether it may take VMs, its VLAN
/// trunk and underlay MTU (reported, else from its last Hello), and the share of the VMs
/// migrating away from it (held back until their migrations end).
pub(super) fn host_fit(
    console: &Console,
    rec: &HostRecord,
    migrations: &[Arc<ActiveMigration>],
) -> Option<HostFit> {
    let (status, observed) = console.agents().observed(&rec.name);
    let report = observed.as_ref().map(|o| &o.report);
    let capacity = report.map(|r| r.capacity).or(rec.capacity)?;
    if capacity.cores == 0 || capacity.memory_mib == 0 {
        return None;
    }
    let eligible = if status != HostStatus::Connected {
        Eligibility::Disconnected
    } else if rec.maintenance {
        Eligibility::Maintenance
    } else {
        Eligibility::Ok
    };
    let (vlan_trunk, underlay_mtu) = match report {
        Some(r) => (r.trunk.is_some(), r.underlay_mtu),
        None => (rec.trunk.is_some(), rec.underlay_mtu),
    };
    let mut reserve = Reserve::default();
    let leaving: Vec<&str> = migrations
        .iter()
        .filter(|m| m.source == rec.name)
        .map(|m| m.vm.as_str())
        .collect();
    if !leaving.is_empty() {
        console.with_vms(|vms| {
            for vm in leaving {
                if let Some(v) = vms.get(vm) {
                    reserve.vcpus = reserve.vcpus.saturating_add(v.value.spec.vcpus);
                    reserve.memory_mib = reserve.memory_mib.saturating_add(v.value.spec.memory_mib);
                }
            }
        });
    }
    let mut caps = HostCaps {
        vlan_trunk,
        underlay_mtu,
        cpu_models: Vec::new(),
        host_cpu: None,
        kvm: None,
        machine_types: Vec::new(),
        padded_ram: None,
        reserve,
    };
    platform::set_caps(&mut caps, rec, report.map(|r| r.accel).or(rec.accel));
    Some(HostFit {
        capacity,
        ratios: console.ratios_for(rec),
        eligible,
        caps,
    })
}

/// The cluster as placement and the balancer see it (see the module doc), without rules.
pub(super) struct ClusterView {
    pub model: ClusterModel,
    pub fit: FitTable,
    pub hosts: HashMap<String, HostFit>,
}

impl ClusterView {
    /// Reads the mirrors; `demand` (a balancing pass, whose moves are live): with what each
    /// VM's host runs it with among its needs ([`platform::set_live_needs`]) and each VM's
    /// measured demand (CPU cores and RSS of its
    /// QEMU in its host's latest report while the host is connected; 0 when not reported).
    pub fn read(console: &Console, demand: bool) -> ClusterView {
        let migrations = console.inflight().migrations();
        let mut model = ClusterModel::default();
        let mut fit = FitTable::default();
        let hosts: HashMap<String, HostFit> = console.with_hosts(|recs| {
            recs.values()
                .filter_map(|r| {
                    Some((
                        r.value.name.clone(),
                        host_fit(console, &r.value, &migrations)?,
                    ))
                })
                .collect()
        });
        let mut names: Vec<&String> = hosts.keys().collect();
        names.sort();
        for name in names {
            let h = &hosts[name];
            model.hosts.push(HostModel {
                name: name.clone(),
                capacity: h.capacity,
                ratios: h.ratios,
                eligible: h.eligible,
            });
            fit.hosts.insert(name.clone(), h.caps.clone());
        }
        let mut usage: HashMap<uuid::Uuid, (f64, u64)> = HashMap::new();
        if demand {
            for (status, observed) in console.agents().snapshot().values() {
                if *status != HostStatus::Connected {
                    continue;
                }
                for v in &observed.report.vms {
                    let e = usage.entry(v.id).or_insert((0.0, 0));
                    e.0 = e.0.max(v.usage.cpu_cores);
                    e.1 = e.1.max(v.usage.rss_mib);
                }
            }
        }
        let destination: BTreeMap<&str, &str> = migrations
            .iter()
            .map(|m| (m.vm.as_str(), m.destination.as_str()))
            .collect();
        let mut nets: Vec<(String, Vec<String>, Option<VmPlatform>, String)> = Vec::new();
        console.with_vms(|vms| {
            for v in vms.values() {
                let rec = &v.value;
                if rec.desired != DesiredPower::Running {
                    continue;
                }
                let host = destination
                    .get(rec.spec.name.as_str())
                    .copied()
                    .unwrap_or(&rec.host);
                if !hosts.contains_key(host) {
                    continue;
                }
                let (cpu, rss) = usage.get(&rec.id).copied().unwrap_or((0.0, 0));
                model.vms.push(VmModel {
                    name: rec.spec.name.clone(),
                    host: host.to_string(),
                    vcpus: rec.spec.vcpus,
                    memory_mib: rec.spec.memory_mib,
                    cpu_demand: if cpu.is_finite() { cpu.max(0.0) } else { 0.0 },
                    memory_demand_mib: rss,
                });
                if !rec.spec.nics.is_empty() || rec.platform.is_some() {
                    nets.push((
                        rec.spec.name.clone(),
                        nic_networks(&rec.spec),
                        rec.platform.clone(),
                        host.to_string(),
                    ));
                }
            }
        });
        for (vm, networks, platform, host) in nets {
            let mut needs = needs_of(console, &networks, platform.as_ref());
            if demand {
                // A balancing pass moves VMs live: what their hosts run them with too.
                console.with_hosts(|recs| {
                    if let Some(h) = recs.get(&host) {
                        platform::set_live_needs(&mut needs, platform.as_ref(), &h.value);
                    }
                });
            }
            if !needs.is_empty() {
                fit.vms.insert(vm, needs);
            }
        }
        ClusterView { model, fit, hosts }
    }
}

/// A stored rule in the library's terms.
pub(super) fn library_rule(r: &PlacementRule) -> Rule {
    let strength = match r.strength {
        RuleStrength::Must => Strength::Must,
        RuleStrength::Should => Strength::Should,
    };
    let vms = r.vms.clone();
    let hosts = r.hosts.clone();
    let kind = match r.kind {
        RuleKind::Affinity => Constraint::Affinity { vms },
        RuleKind::AntiAffinity => Constraint::AntiAffinity { vms },
        RuleKind::RunOn => Constraint::RunOn { vms, hosts },
        RuleKind::NotOn => Constraint::NotOn { vms, hosts },
    };
    Rule {
        name: r.name.clone(),
        strength,
        kind,
    }
}
