//! Restart plans as properties over random clusters: every placed VM fits its host and breaks
//! no must-rule; no VM is left unplaced by room a later (lower-priority) VM took; waves respect
//! start-after; same input in any order, same plan.

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;
use vinfra_ha::restart::{order, plan};
use vinfra_ha::{HaPolicy, Priority, RestartPlan, RestartVm};
use vinfra_placement::{
    ClusterModel, Eligibility, FitTable, HostCaps, HostModel, Rule, RulePlacer, Strength, VmModel,
    VmNeeds, VmRequest,
};
use vinfra_types::{AllocationRatios, HostCapacity};

#[derive(Debug, Clone)]
struct Case {
    model: ClusterModel,
    fit: FitTable,
    vms: Vec<RestartVm>,
}

const GIB: u64 = 1024;

fn priority() -> impl Strategy<Value = Priority> {
    prop::sample::select(vec![
        Priority::Highest,
        Priority::High,
        Priority::Medium,
        Priority::Low,
    ])
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..7, 1usize..3)
        .prop_flat_map(|(nhosts, nfailed)| {
            let hosts = prop::collection::vec(
                (
                    2u32..12,
                    prop::sample::select(vec![8u64, 16, 32]),
                    any::<bool>(),
                ),
                nhosts,
            );
            let running = prop::collection::vec((0usize..nhosts, 1u32..4, 1u64..6), 0..8);
            let vms = prop::collection::vec(
                (
                    1u32..5,
                    prop::sample::select(vec![1u64, 2, 4, 8, 12]),
                    priority(),
                    prop::option::of(0usize..12),
                    prop::bool::weighted(0.2),
                ),
                1..10,
            );
            let rules = prop::collection::vec(
                (
                    prop::collection::vec(0usize..10, 2..4),
                    prop::option::of(0usize..8),
                ),
                0..3,
            );
            (Just((nhosts, nfailed)), hosts, running, vms, rules)
        })
        .prop_map(|((nhosts, nfailed), hosts, running, vms, rules)| {
            let nfailed = nfailed.min(nhosts - 1);
            let trunks: Vec<(u32, u64, bool)> = hosts.clone();
            let hosts: Vec<HostModel> = hosts
                .iter()
                .enumerate()
                .map(|(i, &(cores, gib, _))| HostModel {
                    name: format!("h{i}"),
                    capacity: HostCapacity {
                        cores,
                        memory_mib: gib * GIB,
                    },
                    ratios: AllocationRatios {
                        cpu: 1.0,
                        memory: 1.0,
                    },
                    eligible: if i < nfailed {
                        Eligibility::Disconnected
                    } else {
                        Eligibility::Ok
                    },
                })
                .collect();
            let mut fit = FitTable::default();
            // Running VMs on surviving hosts, within capacity.
            let mut used: Vec<(u64, u64)> = vec![(0, 0); nhosts];
            let mut model_vms = Vec::new();
            for (k, &(h, vcpus, gib)) in running.iter().enumerate() {
                let h = nfailed + h % (nhosts - nfailed);
                let host = &hosts[h];
                if used[h].0 + u64::from(vcpus) > u64::from(host.capacity.cores)
                    || used[h].1 + gib * GIB > host.capacity.memory_mib
                {
                    continue;
                }
                used[h].0 += u64::from(vcpus);
                used[h].1 += gib * GIB;
                model_vms.push(VmModel {
                    name: format!("run{k}"),
                    host: host.name.clone(),
                    vcpus,
                    memory_mib: gib * GIB,
                    cpu_demand: 0.0,
                    memory_demand_mib: 0,
                });
            }
            let nvms = vms.len();
            let restart: Vec<RestartVm> = vms
                .iter()
                .enumerate()
                .map(|(i, &(vcpus, gib, priority, after, vlan))| RestartVm {
                    id: Uuid::from_u128(i as u128 + 1),
                    request: VmRequest {
                        vm: format!("r{i}"),
                        vcpus,
                        memory_mib: gib * GIB,
                    },
                    needs: if vlan {
                        VmNeeds {
                            vlan_networks: vec!["v10".into()],
                            ..VmNeeds::default()
                        }
                    } else {
                        VmNeeds::default()
                    },
                    policy: HaPolicy {
                        priority,
                        start_after: after.map(|a| {
                            if a < 10 {
                                format!("r{a}")
                            } else {
                                "run0".into()
                            }
                        }),
                    },
                })
                .collect();
            // Must-anti-affinity among restarting VMs, with at most one running VM each (so the
            // running cluster breaks no rule before the failover).
            let rules: Vec<Rule> = rules
                .iter()
                .enumerate()
                .map(|(k, (members, run))| {
                    let mut names: Vec<String> =
                        members.iter().map(|m| format!("r{}", m % nvms)).collect();
                    if let Some(r) = run {
                        if let Some(v) = model_vms.get(*r) {
                            names.push(v.name.clone());
                        }
                    }
                    names.sort();
                    names.dedup();
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    Rule::anti_affinity(&format!("apart{k}"), Strength::Must, &refs)
                })
                .filter(|r| r.vms().len() >= 2)
                .collect();
            for (i, &(_, _, trunk)) in trunks.iter().enumerate() {
                if trunk {
                    fit.hosts.insert(
                        format!("h{i}"),
                        HostCaps {
                            vlan_trunk: true,
                            ..HostCaps::default()
                        },
                    );
                }
            }
            for v in &restart {
                if !v.needs.is_empty() {
                    fit.vms.insert(v.request.vm.clone(), v.needs.clone());
                }
            }
            Case {
                model: ClusterModel {
                    hosts,
                    vms: model_vms,
                    rules,
                    ..ClusterModel::default()
                },
                fit,
                vms: restart,
            }
        })
}

fn run(c: &Case, vms: &[RestartVm]) -> Option<(RulePlacer, RestartPlan)> {
    let mut placer = RulePlacer::new(&c.model, &c.fit).ok()?;
    let p = plan(&mut placer, vms).ok()?;
    Some((placer, p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn restart_plans_fit_keep_the_rules_and_the_order(c in case()) {
        prop_assume!(RulePlacer::new(&c.model, &c.fit).is_ok());
        let (_, p) = run(&c, &c.vms).expect("a valid case plans");

        // Every VM is placed or unplaced, once.
        let placed: BTreeMap<&str, &str> = p.restarts().map(|r| (r.vm.as_str(), r.host.as_str())).collect();
        prop_assert_eq!(placed.len() + p.unplaced.len(), c.vms.len());

        // 1. Each placed VM fits its host, and no must-rule is broken: the cluster with the
        // restarts has no hard violation, and no VM went to a failed host.
        let mut after = c.model.clone();
        for v in &c.vms {
            if let Some(h) = placed.get(v.request.vm.as_str()) {
                let host = after.hosts.iter().find(|x| x.name == *h).unwrap();
                prop_assert_eq!(host.eligible, Eligibility::Ok);
                after.vms.push(VmModel {
                    name: v.request.vm.clone(),
                    host: (*h).to_string(),
                    vcpus: v.request.vcpus,
                    memory_mib: v.request.memory_mib,
                    cpu_demand: 0.0,
                    memory_demand_mib: 0,
                });
            }
        }
        let violations = after.violations_with_fit(&c.fit).unwrap();
        prop_assert_eq!(violations.hard(), 0, "{:?}", violations);

        // 2. A VM left unplaced is left unplaced by the plan of the VMs up to it in the
        // plan's order: no later (lower-priority) VM took its room.
        let ord = order(&c.vms);
        for u in &p.unplaced {
            let k = ord.iter().position(|&i| c.vms[i].request.vm == u.why.vm).unwrap();
            let prefix: Vec<RestartVm> = ord[..=k].iter().map(|&i| c.vms[i].clone()).collect();
            let (_, q) = run(&c, &prefix).unwrap();
            prop_assert!(q.host_of(&u.why.vm).is_none(), "{} placed without the later VMs", u.why.vm);
            // And the prefix's placements are the plan's.
            for r in q.restarts() {
                prop_assert_eq!(p.host_of(&r.vm), Some(r.host.as_str()));
            }
        }

        // 3. Waves respect start-after (unless the link closes a cycle and was broken).
        let broken: Vec<&str> = p.cycles.iter().map(|cy| cy[0].as_str()).collect();
        for v in &c.vms {
            let Some(w) = p.wave_of(&v.request.vm) else { continue };
            match v.policy.start_after.as_deref() {
                Some(a) if !broken.contains(&v.request.vm.as_str()) && p.wave_of(a).is_some() => {
                    prop_assert_eq!(Some(w), p.wave_of(a).map(|x| x + 1), "{} after {}", v.request.vm, a);
                }
                _ => prop_assert_eq!(w, 0, "{} waits for nothing", v.request.vm),
            }
        }
        for cy in &p.cycles {
            for (i, m) in cy.iter().enumerate() {
                let v = c.vms.iter().find(|v| &v.request.vm == m).unwrap();
                let next = v.policy.start_after.as_deref().unwrap();
                prop_assert!(cy.contains(&next.to_string()), "{} in cycle {:?}", m, cy);
                let _ = i;
            }
        }

        // 4. Same input in another order, same plan.
        let mut reversed = c.vms.clone();
        reversed.reverse();
        let (_, again) = run(&c, &reversed).unwrap();
        prop_assert_eq!(&again, &p);
    }
}
