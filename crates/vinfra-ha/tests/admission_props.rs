//! Admission control as properties over random clusters and random power-ons and stops,
//! against planning every scenario from scratch: the fast check refuses only what planning
//! from scratch refuses (naming the same scenario), every kept plan is a valid restart, a
//! scenario that does not hold is exactly the plan from scratch, and a scenario that holds from
//! scratch holds in the kept plans. Right after a rebuild, the two are equal. Hosts change too:
//! connection or maintenance, a VLAN trunk lost or gained, a reserve held back or released.

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;
use vinfra_ha::{Admission, AdmissionError, HaPolicy, HaVm, PowerOn, Priority};
use vinfra_placement::fit::BASIC_HOST;
use vinfra_placement::{
    ClusterModel, Eligibility, FitTable, HostCaps, HostModel, Reserve, Rule, RulePlacer, Strength,
    Target, VmModel, VmNeeds, VmRequest,
};
use vinfra_types::{AllocationRatios, HostCapacity};

const GIB: u64 = 1024;

#[derive(Debug, Clone)]
enum Op {
    /// A new VM (vCPUs, GiB, HA) placed where the placer puts it.
    PowerOn(u32, u64, bool),
    /// The k-th running VM stops.
    Stop(usize),
    /// The k-th host changes: eligible or not (and which way), a trunk or not, a reserve of
    /// so many GiB.
    Host(usize, u8, bool, u64),
}

#[derive(Debug, Clone)]
struct World {
    model: ClusterModel,
    fit: FitTable,
    ha: BTreeMap<String, HaVm>,
}

/// Every fourth VM is on a VLAN network: it needs a host with a trunk. Every fifth needs a
/// machine type, every seventh the host CPU "EPYC".
fn needs_of(i: usize) -> VmNeeds {
    let mut needs = VmNeeds::default();
    if i % 4 == 3 {
        needs.vlan_networks = vec!["vlan10".into()];
    }
    if i % 5 == 4 {
        needs.machine_type = Some("pc-q35-7.2".into());
    }
    if i % 7 == 6 {
        needs.host_cpu = Some("EPYC".into());
    }
    if i % 6 == 5 {
        needs.kvm = Some(true);
    }
    needs
}

/// A host with or without the machine type and the host CPU VMs may need.
fn platform_caps(caps: HostCaps, machine: bool, cpu: Option<&str>) -> HostCaps {
    HostCaps {
        machine_types: if machine {
            vec!["pc-q35-7.1".into(), "pc-q35-7.2".into()]
        } else {
            vec!["pc-q35-7.1".into()]
        },
        host_cpu: cpu.map(str::to_string),
        kvm: cpu.map(|c| c == "EPYC"),
        ..caps
    }
}

fn ha_vm(i: u64, p: Priority) -> HaVm {
    HaVm {
        id: Uuid::from_u128(u128::from(i) + 1),
        policy: HaPolicy {
            priority: p,
            start_after: None,
        },
    }
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec((2u32..10, prop::sample::select(vec![8u64, 12, 16])), 3..7),
        prop::collection::vec((1u32..4, 1u64..6, prop::bool::weighted(0.5)), 2..16),
        prop::collection::vec(prop::collection::vec(0usize..16, 2..4), 0..3),
        prop::bool::ANY,
    )
        .prop_map(|(hosts, vms, rules, maint)| {
            let hosts: Vec<HostModel> = hosts
                .iter()
                .enumerate()
                .map(|(i, &(cores, gib))| HostModel {
                    name: format!("h{i}"),
                    capacity: HostCapacity {
                        cores,
                        memory_mib: gib * GIB,
                    },
                    ratios: AllocationRatios {
                        cpu: 1.0,
                        memory: 1.0,
                    },
                    eligible: if maint && i == 0 {
                        Eligibility::Maintenance
                    } else {
                        Eligibility::Ok
                    },
                })
                .collect();
            let rules: Vec<Rule> = rules
                .iter()
                .enumerate()
                .map(|(k, m)| {
                    let mut names: Vec<String> =
                        m.iter().map(|i| format!("v{}", i % vms.len())).collect();
                    names.sort();
                    names.dedup();
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    Rule::anti_affinity(&format!("apart{k}"), Strength::Must, &refs)
                })
                .filter(|r| r.vms().len() >= 2)
                .collect();
            let mut model = ClusterModel {
                hosts,
                vms: Vec::new(),
                rules,
                ..ClusterModel::default()
            };
            let mut ha = BTreeMap::new();
            let mut fit = FitTable::default();
            for h in &model.hosts {
                fit.hosts.insert(
                    h.name.clone(),
                    platform_caps(
                        HostCaps {
                            vlan_trunk: true,
                            ..BASIC_HOST.clone()
                        },
                        true,
                        Some("EPYC"),
                    ),
                );
            }
            for i in 0..vms.len() {
                let needs = needs_of(i);
                if needs != VmNeeds::default() {
                    fit.vms.insert(format!("v{i}"), needs);
                }
            }
            if let Ok(mut placer) = RulePlacer::new(&model, &fit) {
                for (i, &(vcpus, gib, is_ha)) in vms.iter().enumerate() {
                    let req = VmRequest {
                        vm: format!("v{i}"),
                        vcpus,
                        memory_mib: gib * GIB,
                    };
                    if let Ok(p) = placer.place(&req, fit.needs(&req.vm)) {
                        model.vms.push(VmModel {
                            name: req.vm.clone(),
                            host: p.host,
                            vcpus,
                            memory_mib: req.memory_mib,
                            cpu_demand: 0.0,
                            memory_demand_mib: 0,
                        });
                        if is_ha {
                            let pr = [Priority::High, Priority::Medium, Priority::Low][i % 3];
                            ha.insert(req.vm, ha_vm(i as u64, pr));
                        }
                    }
                }
            }
            World { model, fit, ha }
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..4, 1u64..8, prop::bool::ANY).prop_map(|(c, g, h)| Op::PowerOn(c, g, h)),
        1 => (0usize..32).prop_map(Op::Stop),
        1 => (0usize..8, 0u8..3, prop::bool::weighted(0.7), prop::sample::select(vec![0u64, 0, 1, 2, 3, 6]))
            .prop_map(|(k, e, t, r)| Op::Host(k, e, t, r)),
    ]
}

/// Every scenario's plan of `fast` is a valid restart: on the cluster without the failed
/// hosts' VMs, with the restarts, no host over capacity and no must-rule broken.
fn plans_are_valid(fast: &Admission, w: &World) -> Result<(), TestCaseError> {
    for s in fast.report().scenarios {
        let mut m = w.model.clone();
        m.vms.retain(|v| !s.failed.contains(&v.host));
        for (vm, host) in &s.restarts {
            let v = w.model.vms.iter().find(|v| &v.name == vm).unwrap();
            prop_assert!(!s.failed.contains(host));
            let h = m.hosts.iter().find(|h| &h.name == host).unwrap();
            prop_assert_eq!(h.eligible, Eligibility::Ok);
            if !w.fit.needs(vm).vlan_networks.is_empty() {
                prop_assert!(
                    w.fit.caps(host).vlan_trunk,
                    "{} restarts on {} without a trunk",
                    vm,
                    host
                );
            }
            m.vms.push(VmModel {
                host: host.clone(),
                ..v.clone()
            });
        }
        // A host that takes restarts keeps its reserve free.
        for host in s.restarts.iter().map(|(_, h)| h) {
            let h = m.hosts.iter().find(|h| &h.name == host).unwrap();
            let used: u64 = m
                .vms
                .iter()
                .filter(|v| &v.host == host)
                .map(|v| v.memory_mib)
                .sum();
            let reserve = w.fit.caps(host).reserve.memory_mib;
            prop_assert!(
                used + reserve <= h.capacity.memory_mib,
                "{} over its reserve: {} + {} MiB",
                host,
                used,
                reserve
            );
        }
        let violations = m.violations().unwrap();
        prop_assert!(violations.must.is_empty(), "{:?} {:?}", s, violations);
        prop_assert!(
            violations.over_capacity.is_empty(),
            "{:?} {:?}",
            s,
            violations
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_fast_check_agrees_with_planning_every_scenario_again(
        mut w in world(),
        tolerate in prop::sample::select(vec![1u32, 1, 2]),
        ops in prop::collection::vec(op(), 1..12),
    ) {
        let fit = w.fit.clone();
        let Ok(mut fast) = Admission::new(&w.model, &fit, &w.ha, tolerate) else {
            prop_assume!(false);
            unreachable!()
        };
        prop_assert_eq!(fast.report(), Admission::new(&w.model, &fit, &w.ha, tolerate).unwrap().report());
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::PowerOn(vcpus, gib, is_ha) => {
                    let name = format!("new{n}");
                    let req = VmRequest { vm: name.clone(), vcpus, memory_mib: gib * GIB };
                    let needs = needs_of(n);
                    let placer = RulePlacer::new(&w.model, &w.fit).unwrap();
                    let Ok(p) = placer.decide(&req, &needs, Target::Any) else { continue };
                    let ha = is_ha.then(|| ha_vm(100 + n as u64, Priority::Medium));
                    let vm = PowerOn { request: req.clone(), needs: needs.clone(), ha: ha.clone() };
                    let answer = fast.check_power_on(&vm, &p.host);
                    // From scratch, with the VM running.
                    let mut with = w.clone();
                    with.model.vms.push(VmModel {
                        name: name.clone(),
                        host: p.host.clone(),
                        vcpus,
                        memory_mib: req.memory_mib,
                        cpu_demand: 0.0,
                        memory_demand_mib: 0,
                    });
                    if let Some(h) = ha {
                        with.ha.insert(name.clone(), h);
                    }
                    if needs != VmNeeds::default() {
                        with.fit.vms.insert(name.clone(), needs);
                    }
                    let scratch = Admission::new(&with.model, &with.fit, &with.ha, tolerate).unwrap();
                    match answer {
                        Ok(a) => {
                            // Admitted (even where the greedy order from scratch fails: the
                            // kept plans show a way to restart every VM, checked below).
                            fast.commit(a).unwrap();
                            w = with;
                            prop_assert!(fast.holds());
                        }
                        Err(AdmissionError::Refused(r)) => {
                            // Refused from scratch too, for the same scenario.
                            prop_assert!(!scratch.holds());
                            let again = scratch
                                .report()
                                .scenarios
                                .into_iter()
                                .find(|s| s.failed == r.scenario.failed)
                                .unwrap();
                            // A refusal may explain why; the report does not.
                            prop_assert!(r.scenario.why.is_some() || r.already);
                            let explained = vinfra_ha::ScenarioReport {
                                why: None,
                                ..r.scenario.clone()
                            };
                            prop_assert_eq!(&again, &explained);
                        }
                        Err(e) => prop_assert!(false, "{}", e),
                    }
                }
                Op::Stop(k) => {
                    if w.model.vms.is_empty() {
                        continue;
                    }
                    let v = w.model.vms.remove(k % w.model.vms.len());
                    w.ha.remove(&v.name);
                    fast.remove(&v.name).unwrap();
                }
                Op::Host(k, e, trunk, reserve_gib) => {
                    let k = k % w.model.hosts.len();
                    let eligible = [Eligibility::Ok, Eligibility::Disconnected, Eligibility::Maintenance][e as usize];
                    let name = w.model.hosts[k].name.clone();
                    w.model.hosts[k].eligible = eligible;
                    let caps = HostCaps {
                        vlan_trunk: trunk,
                        reserve: Reserve { vcpus: reserve_gib as u32, memory_mib: reserve_gib * GIB },
                        ..BASIC_HOST.clone()
                    };
                    // The machine type and the host CPU come and go too (a host's QEMU
                    // upgraded or downgraded, its CPU replaced or its KVM gone).
                    let cpu = [Some("EPYC"), Some("Xeon"), None][(reserve_gib % 3) as usize];
                    let caps = platform_caps(caps, reserve_gib % 2 == 0, cpu);
                    w.fit.hosts.insert(name.clone(), caps.clone());
                    fast.set_host(&name, eligible, caps).unwrap();
                }
            }
            let scratch = Admission::new(&w.model, &w.fit, &w.ha, tolerate).unwrap();
            let (fast_report, scratch_report) = (fast.report(), scratch.report());
            prop_assert_eq!(fast_report.scenarios.len(), scratch_report.scenarios.len());
            for (f, s) in fast_report.scenarios.iter().zip(&scratch_report.scenarios) {
                prop_assert_eq!(&f.failed, &s.failed);
                if !f.holds() {
                    prop_assert_eq!(f, s);
                }
                if s.holds() {
                    prop_assert!(f.holds(), "{:?} vs {:?}", f, s);
                }
            }
            plans_are_valid(&fast, &w)?;
        }
        // A rebuild plans from scratch.
        fast.rebuild().unwrap();
        prop_assert_eq!(fast.report(), Admission::new(&w.model, &w.fit, &w.ha, tolerate).unwrap().report());
    }
}
