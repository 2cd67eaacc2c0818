//! Properties of balancing plans on random clusters.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use vinfra_placement::{
    balance, BalanceConfig, ClusterModel, Eligibility, Reason, RecentMove, Rule, Strength,
};
use vinfra_types::{AllocationRatios, HostCapacity};

#[derive(Debug, Clone)]
struct RuleSpec {
    kind: u8,
    must: bool,
    vms: Vec<usize>,
    hosts: Vec<usize>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        0u8..4,
        any::<bool>(),
        prop::collection::vec(0usize..34, 1..5),
        prop::collection::vec(0usize..7, 1..4),
    )
        .prop_map(|(kind, must, vms, hosts)| RuleSpec {
            kind,
            must,
            vms,
            hosts,
        })
}

type HostSpec = (u32, u64, f64, f64, u8);
type VmSpec = (usize, u32, u64, f64, u64);

fn build(
    hosts: &[HostSpec],
    vms: &[VmSpec],
    rules: &[RuleSpec],
    flows: &[(usize, usize, u64)],
) -> ClusterModel {
    let hosts: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(
            |(i, &(cores, gib, cpu, mem, el))| vinfra_placement::HostModel {
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
            },
        )
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
    // Indexes past the VMs name VMs that do not run.
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
        .map(|&(a, b, bytes)| flow(&name(a), &name(b), bytes << 20))
        .collect();
    ClusterModel {
        hosts,
        vms,
        rules,
        traffic,
    }
}

fn cluster() -> impl Strategy<Value = ClusterModel> {
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

fn config() -> impl Strategy<Value = (BalanceConfig, Vec<(usize, u32)>)> {
    (
        1u8..=5,
        1u32..6,
        1u32..40,
        prop::collection::vec((0usize..30, 0u32..60), 0..6),
    )
        .prop_map(|(level, per_host, total, recent)| {
            (
                BalanceConfig {
                    level,
                    max_moves_per_host: per_host,
                    max_moves_total: total,
                    ..BalanceConfig::default()
                },
                recent,
            )
        })
}

fn must_violations(m: &ClusterModel) -> BTreeMap<String, u32> {
    m.violations()
        .unwrap()
        .must
        .into_iter()
        .map(|v| (v.rule, v.vms))
        .collect()
}

fn within_capacity(m: &ClusterModel, host: &str) -> bool {
    let Some(h) = m.hosts.iter().find(|h| h.name == host) else {
        return false;
    };
    let (c, mem) = m
        .vms
        .iter()
        .filter(|v| v.host == host)
        .fold((0u64, 0u64), |(c, mem), v| {
            (c + u64::from(v.vcpus), mem + v.memory_mib)
        });
    c <= u64::from(h.allocatable_vcpus()) && mem <= h.allocatable_memory_mib()
}

/// vCPUs and MiB allocated beyond capacity, summed over hosts.
fn excess(m: &ClusterModel) -> (u64, u64) {
    m.hosts.iter().fold((0, 0), |(c, mem), h| {
        let (uc, um) = m
            .vms
            .iter()
            .filter(|v| v.host == h.name)
            .fold((0u64, 0u64), |(c, mem), v| {
                (c + u64::from(v.vcpus), mem + v.memory_mib)
            });
        (
            c + uc.saturating_sub(u64::from(h.allocatable_vcpus())),
            mem + um.saturating_sub(h.allocatable_memory_mib()),
        )
    })
}

fn is_hard(r: &Reason) -> bool {
    matches!(
        r,
        Reason::FixMustRule { .. } | Reason::Evacuate { .. } | Reason::OverCapacity
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn plans_keep_capacity_and_must_rules_and_improve(m in cluster(), (mut cfg, recent) in config()) {
        prop_assume!(m.validate().is_ok());
        cfg.recent_moves = recent
            .iter()
            .filter(|(v, _)| *v < m.vms.len())
            .map(|&(v, minutes_ago)| RecentMove {
                vm: format!("v{v}"),
                from: "h0".into(),
                to: m.vms[v].host.clone(),
                minutes_ago,
            })
            .collect();
        let plan = balance(&m, &cfg).unwrap();

        // Determinism.
        prop_assert_eq!(&plan, &balance(&m, &cfg).unwrap());

        // Limits.
        prop_assert!(plan.moves.len() <= cfg.max_moves_total as usize);
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        for mv in &plan.moves {
            *per.entry(&mv.from).or_default() += 1;
            *per.entry(&mv.to).or_default() += 1;
        }
        prop_assert!(per.values().all(|&n| n <= cfg.max_moves_per_host));

        // Step by step: capacity at the destination, must-rules never worse, each VM once.
        let start = must_violations(&m);
        let mut cur = m.clone();
        let mut moved = std::collections::BTreeSet::new();
        for mv in &plan.moves {
            prop_assert!(moved.insert(mv.vm.clone()), "{} moved twice", mv.vm);
            prop_assert_eq!(host_of(&cur, &mv.vm), mv.from.as_str());
            let dest = cur.hosts.iter().find(|h| h.name == mv.to).unwrap();
            prop_assert_eq!(dest.eligible, Eligibility::Ok);
            cur.move_vm(&mv.vm, &mv.to).unwrap();
            prop_assert!(within_capacity(&cur, &mv.to), "{} over capacity", mv.to);
            if mv.with.is_empty() {
                for (rule, n) in must_violations(&cur) {
                    prop_assert!(n <= start.get(&rule).copied().unwrap_or(0), "{} broken by {:?}", rule, mv);
                }
            }
            // Recently moved VMs move only for hard reasons.
            let recent = cfg.recent_moves.iter().any(|r| r.vm == mv.vm && r.minutes_ago < cfg.hysteresis_minutes);
            prop_assert!(!recent || is_hard(&mv.reason), "{:?}", mv);
            if cfg.level == 1 {
                prop_assert!(is_hard(&mv.reason), "{:?}", mv);
            }
            if let Reason::ReduceImbalance { before, after } = mv.reason {
                prop_assert!(after < before, "{:?}", mv);
            }
        }
        prop_assert_eq!(cur.violations().unwrap(), plan.violations_after.clone());
        prop_assert_eq!(cur.cross_host_traffic().unwrap(), plan.cross_host_traffic_after);
        prop_assert!((cur.imbalance().unwrap() - plan.imbalance_after).abs() < 1e-9);

        // A plan fixes something or lowers something, or is empty.
        if !plan.moves.is_empty() {
            let (b, a) = (&plan.violations_before, &plan.violations_after);
            let (ec, em) = excess(&cur);
            let (sc, sm) = excess(&m);
            prop_assert!(ec <= sc && em <= sm);
            let better = a.hard() < b.hard()
                || ec < sc
                || em < sm
                || a.must_vms() < b.must_vms()
                || plan.imbalance_after < plan.imbalance_before
                || plan.cross_host_traffic_after < plan.cross_host_traffic_before
                || a.should_vms() < b.should_vms();
            prop_assert!(better, "{:?}", plan);
            prop_assert!(a.must_vms() <= b.must_vms());
        }
    }
}
