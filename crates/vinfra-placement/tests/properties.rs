//! Properties of balancing plans on random clusters with host capabilities and VM needs.
//!
//! The bound a plan's trade of imbalance for traffic or should-rules must stay within (the
//! balancer's exchange rate, see `vinfra_placement::balance`): with σ the imbalance and n the
//! hosts it counts, `n × (σ_after² − σ_before²) ≤ traffic_weight × MiB/s saved +
//! should_penalty × should-rule VMs fixed`. With the default weights and 6 hosts, 100 MiB/s saved
//! buys at most σ 0.10 → 0.16.

mod common;

use std::collections::BTreeMap;

use common::random::fitted_cluster;
use common::*;
use proptest::prelude::*;
use vinfra_placement::{
    balance_with_fit, fit, BalanceConfig, ClusterModel, Eligibility, FitTable, HostInput,
    HostModel, LevelParams, Reason, RecentMove, VmRequest,
};

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

fn must_violations(m: &ClusterModel, fit: &FitTable) -> BTreeMap<String, u32> {
    m.violations_with_fit(fit)
        .unwrap()
        .must
        .into_iter()
        .map(|v| (v.rule, v.vms))
        .collect()
}

/// `h` with nothing allocated, as placement sees it.
fn empty(h: &HostModel) -> HostInput {
    HostInput {
        name: h.name.clone(),
        capacity: h.capacity,
        ratios: h.ratios,
        allocated_vcpus: 0,
        allocated_memory_mib: 0,
        eligible: h.eligible,
    }
}

/// VM `vm` of `m` as a request.
fn request(m: &ClusterModel, vm: &str) -> VmRequest {
    let v = m.vms.iter().find(|v| v.name == vm).unwrap();
    VmRequest {
        vm: v.name.clone(),
        vcpus: v.vcpus,
        memory_mib: v.memory_mib,
    }
}

fn is_hard(r: &Reason) -> bool {
    matches!(
        r,
        Reason::FixMustRule { .. }
            | Reason::Evacuate { .. }
            | Reason::OverCapacity
            | Reason::HostUnfit { .. }
    )
}

/// Checks every property of the plan for `m` under `fit` and `cfg`.
fn check_plan(m: &ClusterModel, fit: &FitTable, cfg: &BalanceConfig) -> Result<(), TestCaseError> {
    let plan = balance_with_fit(m, fit, cfg).unwrap();

    // Determinism.
    prop_assert_eq!(&plan, &balance_with_fit(m, fit, cfg).unwrap());

    // Limits.
    prop_assert!(plan.moves.len() <= cfg.max_moves_total as usize);
    let mut per: BTreeMap<&str, u32> = BTreeMap::new();
    for mv in &plan.moves {
        *per.entry(&mv.from).or_default() += 1;
        *per.entry(&mv.to).or_default() += 1;
    }
    prop_assert!(per.values().all(|&n| n <= cfg.max_moves_per_host));

    // Step by step: the destination fits the VM (capabilities, availability, capacity with
    // its reserve), must-rules never worse, each VM once.
    let start = must_violations(m, fit);
    let mut cur = m.clone();
    let mut moved = std::collections::BTreeSet::new();
    for mv in &plan.moves {
        prop_assert!(moved.insert(mv.vm.clone()), "{} moved twice", mv.vm);
        prop_assert_eq!(host_of(&cur, &mv.vm), mv.from.as_str());
        let dest = cur.hosts.iter().find(|h| h.name == mv.to).unwrap();
        prop_assert_eq!(dest.eligible, Eligibility::Ok);
        cur.move_vm(&mv.vm, &mv.to).unwrap();
        let v = cur.violations_with_fit(fit).unwrap();
        prop_assert!(!v.over_capacity.contains(&mv.to), "{} over capacity", mv.to);
        prop_assert!(
            !v.misfits.iter().any(|x| x.vm == mv.vm),
            "{} does not fit {}",
            mv.vm,
            mv.to
        );
        if mv.with.is_empty() {
            for (rule, n) in must_violations(&cur, fit) {
                prop_assert!(
                    n <= start.get(&rule).copied().unwrap_or(0),
                    "{} broken by {:?}",
                    rule,
                    mv
                );
            }
        }
        // Recently moved VMs move only for hard reasons.
        let recent = cfg
            .recent_moves
            .iter()
            .any(|r| r.vm == mv.vm && r.minutes_ago < cfg.hysteresis_minutes);
        prop_assert!(!recent || is_hard(&mv.reason), "{:?}", mv);
        if cfg.level == 1 {
            prop_assert!(is_hard(&mv.reason), "{:?}", mv);
        }
        if let Reason::ReduceImbalance { before, after } = mv.reason {
            prop_assert!(after < before, "{:?}", mv);
        }
    }
    prop_assert_eq!(
        cur.violations_with_fit(fit).unwrap(),
        plan.violations_after.clone()
    );
    prop_assert_eq!(
        cur.cross_host_traffic().unwrap(),
        plan.cross_host_traffic_after
    );
    prop_assert!((cur.imbalance().unwrap() - plan.imbalance_after).abs() < 1e-9);

    // No hard problem grows; a plan lowers one, or lowers the imbalance, or is empty, or
    // declares the imbalance it traded for traffic or should-rules.
    let (b, a) = (
        plan.violations_before.hard_parts(),
        plan.violations_after.hard_parts(),
    );
    prop_assert!(a.iter().zip(&b).all(|(x, y)| x <= y), "{:?} -> {:?}", b, a);
    let hard_lower = a != b;
    let imbalance_lower = plan.imbalance_after < plan.imbalance_before;
    let hard_moves = plan.moves.iter().filter(|mv| is_hard(&mv.reason)).count();
    if !plan.moves.is_empty() && !hard_lower && !imbalance_lower {
        prop_assert!(plan.tradeoff.is_some(), "{:?}", plan);
    }
    // Every hard repair lowers a hard problem (optional moves may lower one too).
    prop_assert!(hard_moves == 0 || hard_lower, "{:?}", plan);
    if let Some(t) = plan.tradeoff {
        prop_assert!(cfg.level >= 2);
        prop_assert!(t.imbalance_after >= t.imbalance_before);
        prop_assert!((t.imbalance_after - plan.imbalance_after).abs() < 1e-12);
        prop_assert!(
            t.traffic_saved_bytes_per_s > 0 || t.should_violations_removed > 0,
            "{:?}",
            t
        );
        // The bound: n × (σ_after² − σ_before²) ≤ traffic_weight × MiB/s + should_penalty × VMs.
        let n = cur
            .hosts
            .iter()
            .filter(|h| h.eligible == Eligibility::Ok)
            .count() as f64;
        let spent = n * (t.imbalance_after.powi(2) - t.imbalance_before.powi(2));
        let paid = cfg.traffic_weight * t.traffic_saved_bytes_per_s as f64 / (1024.0 * 1024.0)
            + cfg.should_penalty * t.should_violations_removed as f64;
        prop_assert!(
            spent <= paid + 1e-9,
            "spent {} > paid {}: {:?}",
            spent,
            paid,
            t
        );
        // When the plan has only optional moves, the trade is the whole plan's.
        if hard_moves == 0 {
            prop_assert!((t.imbalance_before - plan.imbalance_before).abs() < 1e-12);
            prop_assert_eq!(
                t.traffic_saved_bytes_per_s,
                i128::from(plan.cross_host_traffic_before)
                    - i128::from(plan.cross_host_traffic_after)
            );
            prop_assert_eq!(
                t.should_violations_removed,
                i128::from(plan.violations_before.should_vms())
                    - i128::from(plan.violations_after.should_vms())
            );
        }
        let target = LevelParams::for_level(cfg.level).unwrap().target_imbalance;
        prop_assert!(target.is_finite());
    }
    // Misfits that some host could take are moved (when limits allow).
    if plan.moves.len() < cfg.max_moves_total as usize && cfg.max_moves_per_host >= 2 {
        for x in &plan.violations_after.misfits {
            let on = cur.hosts.iter().find(|h| h.name == x.host).unwrap();
            if on.eligible == Eligibility::Disconnected
                || cfg.recent_moves.iter().any(|r| r.vm == x.vm)
            {
                continue;
            }
            prop_assert!(
                !m.hosts.iter().any(|h| h.eligible == Eligibility::Ok
                    && h.name != x.host
                    && cur.vms.iter().all(|v| v.host != h.name)
                    && fit::check(
                        &empty(h),
                        fit.caps(&h.name),
                        &request(&cur, &x.vm),
                        fit.needs(&x.vm)
                    )
                    .is_ok()
                    && per.get(h.name.as_str()).copied().unwrap_or(0) == 0
                    && per.get(x.host.as_str()).copied().unwrap_or(0) == 0
                    && !m.rules.iter().any(|r| r.vms().contains(&x.vm))),
                "{} stays on {} although an empty host fits it",
                x.vm,
                x.host
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, max_global_rejects: 4096, ..ProptestConfig::default() })]

    #[test]
    fn plans_keep_fit_and_must_rules_and_improve_or_declare_the_trade(
        (m, fit) in fitted_cluster(),
        (mut cfg, recent) in config(),
    ) {
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
        check_plan(&m, &fit, &cfg)?;
    }

    /// Heavy traffic and no rules: plans that trade imbalance for traffic are common here.
    #[test]
    fn traffic_trades_stay_within_the_bound(
        (mut m, _) in fitted_cluster(),
        flows in prop::collection::vec((0usize..30, 0usize..30, 50u64..2000), 5..40),
        level in 2u8..=5,
        weight in prop::sample::select(vec![0.0005, 0.001, 0.01]),
    ) {
        m.rules.clear();
        let n = m.vms.len();
        prop_assume!(n >= 2);
        m.traffic = flows
            .into_iter()
            .map(|(a, b, mib)| (a % n, b % n, mib))
            .filter(|(a, b, _)| a != b)
            .map(|(a, b, mib)| flow(&format!("v{a}"), &format!("v{b}"), mib << 20))
            .collect();
        prop_assume!(m.validate().is_ok());
        let cfg = BalanceConfig {
            level,
            traffic_weight: weight,
            max_moves_per_host: 8,
            max_moves_total: 64,
            ..BalanceConfig::default()
        };
        check_plan(&m, &FitTable::default(), &cfg)?;
    }
}
