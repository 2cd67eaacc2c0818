//! Which hosts can take a VM: the console's one adapter to `vinfra-placement`.
//!
//! Host capabilities come from the host records and the agents' latest reports (capacity,
//! allocation, connection, maintenance, VLAN trunk, underlay MTU); a VM's needs from its spec
//! and the network records (vCPUs, memory, its VLAN networks, its largest overlay MTU); and the
//! stored placement rules. [`host_for`] answers, in one call, "which host takes this VM" for a
//! new VM, a start, and a migration with or without a destination, or says why none can;
//! [`cluster_model`] and [`built_in_rules`] give the balancer the same view.
//!
//! Every path applies the same network fit (trunk for VLAN networks, underlay MTU for overlay
//! networks) and the same rules: a new VM and a migration without a destination are placed
//! under the must-rules naming them; a host named for a new VM is refused when it breaks one.
//! A start stays on the VM's host, and a migration to a named host is not checked against
//! rules (the balancer repairs a broken must-rule at its next pass).

use std::collections::{BTreeMap, HashMap, HashSet};

use vinfra_placement::{
    ClusterModel, Eligibility, HostInput, HostModel, Placement, Request, Rule, Strength, VmModel,
};
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
use vinfra_types::network::{underlay_mtu_for_overlay, NetworkKind, UNDERLAY_MTU};
use vinfra_types::{HostStatus, VmSpec};

use crate::error::{Error, Lacks, NoHost, Object};
use crate::state::records::DesiredPower;
use crate::state::Console;

/// Where a VM is to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A new VM, on the host placement picks under the rules.
    New,
    /// A new VM, on the host the operator named (refused when it breaks a must-rule).
    Named(&'a str),
    /// A start, on the host the VM is placed on (maintenance does not keep it off).
    Start(&'a str),
    /// A migration from `from` to the host the operator named (`to`).
    MoveTo {
        /// The VM's host now.
        from: &'a str,
        /// The destination.
        to: &'a str,
    },
    /// A migration from `from` to the host placement picks under the rules.
    AwayFrom(&'a str),
}

/// The host that takes VM `vm` (with `spec`) for `target`, with its allocation after it, or why
/// none does. Hold the placement lock until the record that claims the capacity is written.
pub fn host_for(
    console: &Console,
    vm: &str,
    spec: &VmSpec,
    target: Target<'_>,
) -> Result<Placement, Error> {
    let req = Request {
        vm: vm.to_string(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
    };
    let needs = Needs::of(console, spec);
    match target {
        Target::New => {
            let hosts = needs.filter(console, vm, inputs(console, None), None)?;
            under_rules(console, &hosts, &req, None, false)
        }
        Target::Named(host) => {
            if !console.host_registered(host) {
                return Err(Error::not_found(Object::Host, host));
            }
            let hosts = needs.filter(console, vm, inputs(console, None), Some(host))?;
            under_rules(console, &hosts, &req, Some(host), false)
        }
        Target::Start(host) => {
            let hosts: Vec<HostInput> = needs
                .filter(console, vm, inputs(console, None), Some(host))?
                .into_iter()
                .filter(|h| h.name == host)
                .map(|mut h| {
                    // Maintenance keeps new VMs away, not the start of one already there.
                    if h.eligible == Eligibility::Maintenance {
                        h.eligible = Eligibility::Ok;
                    }
                    h
                })
                .collect();
            Ok(vinfra_placement::place(&hosts, &req, Some(host))?)
        }
        Target::MoveTo { from, to } => {
            let hosts = needs.filter(console, vm, inputs(console, Some(from)), Some(to))?;
            Ok(vinfra_placement::place(&hosts, &req, Some(to))?)
        }
        Target::AwayFrom(from) => {
            let hosts = needs.filter(console, vm, inputs(console, Some(from)), None)?;
            under_rules(console, &hosts, &req, None, true)
        }
    }
}

/// Placement input for every registered host but `exclude`: capacity (reported, else kept
/// from the last Hello), ratios in force, allocation, and whether it may take VMs now.
fn inputs(console: &Console, exclude: Option<&str>) -> Vec<HostInput> {
    let alloc = console.allocations();
    let mut out = vec![];
    for h in console.host_records() {
        if Some(h.name.as_str()) == exclude {
            continue;
        }
        let status = console.agents().status(&h.name);
        let a = alloc.get(&h.name).copied().unwrap_or_default();
        let eligible = if status != HostStatus::Connected {
            Eligibility::Disconnected
        } else if h.maintenance {
            Eligibility::Maintenance
        } else {
            Eligibility::Ok
        };
        out.push(HostInput {
            capacity: console.capacity_of(&h),
            ratios: console.ratios_for(&h),
            allocated_vcpus: a.vcpus,
            allocated_memory_mib: a.memory_mib,
            eligible,
            name: h.name,
        });
    }
    out
}

/// The interface of `host`'s VLAN trunk: from its latest report, else from its record (what
/// it said at its last Hello).
fn host_trunk(console: &Console, host: &str) -> Option<String> {
    match console.agents().observed(host).1 {
        Some(o) => o.report.trunk.clone(),
        None => console.host(host).ok().and_then(|h| h.value.trunk),
    }
}

/// `host`'s underlay IP MTU: from its latest report, else from its record (what it said at
/// its last Hello; 1500 for a host never heard from or an agent that does not say).
fn host_underlay_mtu(console: &Console, host: &str) -> u32 {
    match console.agents().observed(host).1 {
        Some(o) => o.report.underlay_mtu,
        None => console
            .host(host)
            .map_or(UNDERLAY_MTU, |h| h.value.underlay_mtu),
    }
}

/// What a VM's overlay NICs need of a host's underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OverlayNeed {
    /// The overlay network with the largest MTU among the VM's NICs (the first in NIC order on
    /// a tie).
    network: String,
    /// Its MTU.
    mtu: u32,
    /// The underlay MTU it needs: `mtu` + the VXLAN encapsulation.
    underlay_mtu: u32,
}

/// What a VM's networks need of its host.
struct Needs {
    /// The VLAN networks among its NICs, in NIC order, each once.
    vlans: Vec<String>,
    /// What its overlay networks need of the underlay (`None` without overlay NICs).
    overlay: Option<OverlayNeed>,
}

impl Needs {
    fn of(console: &Console, spec: &VmSpec) -> Needs {
        let (vlan_nets, overlay_mtus): (HashSet<String>, HashMap<String, u32>) = console
            .with_networks(|nets| {
                let mut vlans = HashSet::new();
                let mut overlays = HashMap::new();
                for r in nets.values() {
                    let n = &r.value.network;
                    match n.kind {
                        NetworkKind::Vlan => {
                            vlans.insert(n.name.clone());
                        }
                        NetworkKind::Overlay => {
                            overlays.insert(n.name.clone(), n.mtu);
                        }
                    }
                }
                (vlans, overlays)
            });
        let mut vlans: Vec<String> = Vec::new();
        let mut overlay: Option<OverlayNeed> = None;
        for nic in &spec.nics {
            if vlan_nets.contains(&nic.network) && !vlans.contains(&nic.network) {
                vlans.push(nic.network.clone());
            }
            if let Some(&mtu) = overlay_mtus.get(&nic.network) {
                if overlay.as_ref().is_none_or(|o| mtu > o.mtu) {
                    overlay = Some(OverlayNeed {
                        network: nic.network.clone(),
                        mtu,
                        underlay_mtu: underlay_mtu_for_overlay(mtu),
                    });
                }
            }
        }
        Needs { vlans, overlay }
    }

    /// Restricts placement input to the hosts that can carry the VM's networks: a VLAN trunk
    /// for its VLAN networks, an underlay MTU for its largest overlay MTU. A `pinned` host
    /// without what is needed is refused naming the host and the network, and so is a
    /// restriction that leaves no host able to take VMs, saying why.
    fn filter(
        &self,
        console: &Console,
        vm: &str,
        inputs: Vec<HostInput>,
        pinned: Option<&str>,
    ) -> Result<Vec<HostInput>, Error> {
        let inputs = self.trunk_filter(console, vm, inputs, pinned)?;
        self.underlay_filter(console, vm, inputs, pinned)
    }

    fn trunk_filter(
        &self,
        console: &Console,
        vm: &str,
        inputs: Vec<HostInput>,
        pinned: Option<&str>,
    ) -> Result<Vec<HostInput>, Error> {
        let Some(network) = self.vlans.first() else {
            return Ok(inputs);
        };
        if let Some(host) = pinned {
            if console.host_registered(host) && host_trunk(console, host).is_none() {
                return Err(Error::NoTrunk {
                    host: host.to_string(),
                    vm: vm.to_string(),
                    network: network.clone(),
                });
            }
        }
        let (with, without): (Vec<HostInput>, Vec<HostInput>) = inputs
            .into_iter()
            .partition(|h| host_trunk(console, &h.name).is_some());
        if pinned.is_none() && !with.iter().any(|h| h.eligible == Eligibility::Ok) {
            let lacks = without
                .into_iter()
                .map(|h| Lacks::Trunk { host: h.name })
                .collect();
            return Err(Error::NoTrunkHost {
                vm: vm.to_string(),
                network: network.clone(),
                why: why_no_host(&with, lacks),
            });
        }
        Ok(with)
    }

    fn underlay_filter(
        &self,
        console: &Console,
        vm: &str,
        inputs: Vec<HostInput>,
        pinned: Option<&str>,
    ) -> Result<Vec<HostInput>, Error> {
        let Some(need) = &self.overlay else {
            return Ok(inputs);
        };
        if let Some(host) = pinned {
            let have = host_underlay_mtu(console, host);
            if console.host_registered(host) && have < need.underlay_mtu {
                return Err(Error::UnderlayMtu {
                    host: host.to_string(),
                    vm: vm.to_string(),
                    have,
                    network: need.network.clone(),
                    mtu: need.mtu,
                    need: need.underlay_mtu,
                });
            }
        }
        let (fit, small): (Vec<HostInput>, Vec<HostInput>) = inputs
            .into_iter()
            .partition(|h| host_underlay_mtu(console, &h.name) >= need.underlay_mtu);
        if pinned.is_none() && !fit.iter().any(|h| h.eligible == Eligibility::Ok) {
            let lacks = small
                .into_iter()
                .map(|h| Lacks::UnderlayMtu {
                    mtu: host_underlay_mtu(console, &h.name),
                    host: h.name,
                })
                .collect();
            return Err(Error::NoUnderlayHost {
                vm: vm.to_string(),
                network: need.network.clone(),
                mtu: need.mtu,
                need: need.underlay_mtu,
                why: why_no_host(&fit, lacks),
            });
        }
        Ok(fit)
    }
}

/// Why a restriction left no host able to take a VM: there was no candidate, none had what
/// the VM needs (`lacks`: the hosts skipped), or none of those that had it (`fit`) can take
/// VMs now.
fn why_no_host(fit: &[HostInput], lacks: Vec<Lacks>) -> NoHost {
    if fit.is_empty() && lacks.is_empty() {
        NoHost::NoCandidate
    } else if fit.is_empty() {
        NoHost::NoneHasIt(lacks)
    } else {
        NoHost::NoneAvailable(fit.iter().map(|h| (h.name.clone(), h.eligible)).collect())
    }
}

/// Picks a host among `inputs` (already restricted to those that can carry the VM's networks)
/// under the stored rules. Without rules naming the VM this is plain placement; with them,
/// [`vinfra_placement::place_with_rules`] chooses and plain placement confirms the choice
/// against the allocations in force (migrations in flight count on both hosts). A `pinned`
/// host is refused when it breaks a must-rule. `moving`: the VM is in the cluster already and
/// leaves its host (a migration): it is placed as if it were not there.
fn under_rules(
    console: &Console,
    inputs: &[HostInput],
    req: &Request,
    pinned: Option<&str>,
    moving: bool,
) -> Result<Placement, Error> {
    let all = console.rules()?;
    if !all.iter().any(|r| r.vms.contains(&req.vm)) {
        return Ok(vinfra_placement::place(inputs, req, pinned)?);
    }
    let mut model = cluster_model(console, &all)?;
    if let Some(host) = pinned {
        let placed = vinfra_placement::place(inputs, req, Some(host))?;
        let before = model.violations()?;
        model.vms.push(VmModel {
            name: req.vm.clone(),
            host: host.to_string(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            cpu_demand: 0.0,
            memory_demand_mib: 0,
        });
        let after = model.violations()?;
        let broken: Vec<String> = after
            .must
            .iter()
            .filter(|a| {
                before
                    .must
                    .iter()
                    .find(|b| b.rule == a.rule)
                    .is_none_or(|b| b.vms < a.vms)
            })
            .map(|a| a.rule.clone())
            .collect();
        if !broken.is_empty() {
            return Err(Error::BreaksRules {
                vm: req.vm.clone(),
                host: host.to_string(),
                rules: broken,
            });
        }
        return Ok(placed);
    }
    if moving {
        model.vms.retain(|v| v.name != req.vm);
    }
    // Hosts left out of `inputs` (the VM's own host when it moves; hosts without what the VM's
    // networks need) take nothing.
    for h in &mut model.hosts {
        if !inputs.iter().any(|i| i.name == h.name) {
            h.eligible = Eligibility::Disconnected;
        }
    }
    let chosen = vinfra_placement::place_with_rules(&model, req)?.host;
    Ok(vinfra_placement::place(inputs, req, Some(&chosen))?)
}

/// A stored rule in the library's terms.
pub fn library_rule(r: &PlacementRule) -> Rule {
    let strength = match r.strength {
        RuleStrength::Must => Strength::Must,
        RuleStrength::Should => Strength::Should,
    };
    let vms = r.vms.clone();
    let hosts = r.hosts.clone();
    let kind = match r.kind {
        RuleKind::Affinity => vinfra_placement::RuleKind::Affinity { vms },
        RuleKind::AntiAffinity => vinfra_placement::RuleKind::AntiAffinity { vms },
        RuleKind::RunOn => vinfra_placement::RuleKind::RunOn { vms, hosts },
        RuleKind::NotOn => vinfra_placement::RuleKind::NotOn { vms, hosts },
    };
    Rule {
        name: r.name.clone(),
        strength,
        kind,
    }
}

/// The cluster with the rules `rules`, as placement under rules and the balancer see it.
///
/// Hosts: every registered host whose capacity is known (reported now or at its last Hello),
/// with the ratios in force; disconnected hosts and hosts in maintenance are marked so (the
/// balancer moves nothing to either, and evacuates the latter). VMs: every VM whose desired
/// state is running, with its allocation and its measured demand (CPU cores and RSS of its QEMU
/// in its host's latest report; 0 when not reported). A VM being migrated is placed at its
/// destination.
pub fn cluster_model(console: &Console, rules: &[PlacementRule]) -> Result<ClusterModel, Error> {
    let hosts: Vec<HostModel> = inputs(console, None)
        .into_iter()
        .filter(|h| h.capacity.cores > 0 && h.capacity.memory_mib > 0)
        .map(|h| HostModel {
            name: h.name,
            capacity: h.capacity,
            ratios: h.ratios,
            eligible: h.eligible,
        })
        .collect();
    let known: HashSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let mut usage: HashMap<uuid::Uuid, (f64, u64)> = HashMap::new();
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
    let migrating: BTreeMap<String, String> = console
        .inflight()
        .migrations()
        .iter()
        .map(|m| (m.vm.clone(), m.destination.clone()))
        .collect();
    let mut vms = Vec::new();
    for rec in console.vm_records() {
        if rec.desired != DesiredPower::Running {
            continue;
        }
        let host = migrating
            .get(&rec.spec.name)
            .cloned()
            .unwrap_or_else(|| rec.host.clone());
        if !known.contains(host.as_str()) {
            continue;
        }
        let (cpu, rss) = usage.get(&rec.id).copied().unwrap_or((0.0, 0));
        vms.push(VmModel {
            name: rec.spec.name.clone(),
            host,
            vcpus: rec.spec.vcpus,
            memory_mib: rec.spec.memory_mib,
            cpu_demand: if cpu.is_finite() { cpu.max(0.0) } else { 0.0 },
            memory_demand_mib: rss,
        });
    }
    Ok(ClusterModel {
        hosts,
        vms,
        rules: rules.iter().map(library_rule).collect(),
        traffic: Vec::new(),
    })
}

/// Name of the built-in must-rule keeping VMs with VLAN NICs off hosts without a trunk (not a
/// valid rule name for operators, so it never clashes with theirs).
pub const TRUNK_RULE: &str = "built-in: VLAN networks need a trunk";

/// Start of the names of the built-in must-rules keeping VMs with overlay NICs off hosts whose
/// underlay is too small, followed by the underlay MTU needed.
pub const UNDERLAY_RULE: &str = "built-in: overlay networks need underlay MTU";

/// The network fit as must not-on rules over `model`, for the balancer:
/// - [`TRUNK_RULE`]: the VMs with NICs on VLAN networks off the hosts without a trunk; none
///   when there is no such VM, no such host, or no host with a trunk at all (the rule would
///   leave the VMs no host);
/// - per underlay MTU needed (increasing), `UNDERLAY_RULE <mtu>`: the VMs that need it off the
///   hosts with a smaller underlay; none when no host is too small, or when none is large
///   enough.
pub fn built_in_rules(console: &Console, model: &ClusterModel) -> Vec<Rule> {
    let in_model: HashSet<&str> = model.vms.iter().map(|v| v.name.as_str()).collect();
    let mut vlan_vms: Vec<String> = Vec::new();
    let mut by_need: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for r in console.vm_records() {
        if !in_model.contains(r.spec.name.as_str()) {
            continue;
        }
        let needs = Needs::of(console, &r.spec);
        if !needs.vlans.is_empty() {
            vlan_vms.push(r.spec.name.clone());
        }
        if let Some(need) = needs.overlay {
            by_need
                .entry(need.underlay_mtu)
                .or_default()
                .push(r.spec.name);
        }
    }
    let mut out = Vec::new();
    let (with, without): (Vec<&str>, Vec<&str>) = model
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .partition(|h| host_trunk(console, h).is_some());
    if !vlan_vms.is_empty() && !without.is_empty() && !with.is_empty() {
        out.push(Rule {
            name: TRUNK_RULE.to_string(),
            strength: Strength::Must,
            kind: vinfra_placement::RuleKind::NotOn {
                vms: vlan_vms,
                hosts: without.into_iter().map(str::to_string).collect(),
            },
        });
    }
    let hosts: Vec<(&str, u32)> = model
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), host_underlay_mtu(console, &h.name)))
        .collect();
    for (need, vms) in by_need {
        let small: Vec<String> = hosts
            .iter()
            .filter(|(_, mtu)| *mtu < need)
            .map(|(h, _)| h.to_string())
            .collect();
        if small.is_empty() || small.len() == hosts.len() {
            continue;
        }
        out.push(Rule {
            name: format!("{UNDERLAY_RULE} {need}"),
            strength: Strength::Must,
            kind: vinfra_placement::RuleKind::NotOn { vms, hosts: small },
        });
    }
    out
}
