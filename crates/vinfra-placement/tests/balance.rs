//! Golden balancing scenarios.

mod common;

use std::collections::BTreeMap;

use common::*;
use vinfra_placement::greedy::{self, GreedyConfig};
use vinfra_placement::{
    balance, BalanceConfig, ClusterModel, Eligibility, LevelParams, Reason, RecentMove, Rule,
    Strength,
};

/// Two hosts carrying 12 busy VMs each, six carrying 2 quiet ones.
fn two_hot_hosts() -> ClusterModel {
    let mut vms = Vec::new();
    for h in 0..8 {
        let (n, cpu) = if h < 2 { (12, 1.2) } else { (2, 1.0) };
        for i in 0..n {
            vms.push(vm(&format!("vm-{h}-{i}"), &format!("h{h}"), 2, 4, cpu));
        }
    }
    model(hosts(8), vms)
}

#[test]
fn two_hot_hosts_converge_without_ping_pong() {
    let mut m = two_hot_hosts();
    let start = m.imbalance().unwrap();
    let minutes_per_round = 10;
    let mut cfg = BalanceConfig {
        level: 3,
        ..BalanceConfig::default()
    };
    // (vm, host it left, round)
    let mut history: Vec<(String, String, u32)> = Vec::new();
    let mut rounds = 0;
    let mut total = 0;
    loop {
        let plan = balance(&m, &cfg).unwrap();
        if plan.moves.is_empty() {
            break;
        }
        rounds += 1;
        assert!(rounds <= 8, "no convergence after 8 rounds");
        assert!(plan.imbalance_after < plan.imbalance_before);
        for mv in &plan.moves {
            assert!(
                matches!(mv.reason, Reason::ReduceImbalance { .. }),
                "{mv:?}"
            );
            assert!(mv.gain.imbalance > 0.0);
            for (v, left, when) in &history {
                let age = (rounds - when) * minutes_per_round;
                assert!(
                    !(v == &mv.vm && left == &mv.to && age < cfg.hysteresis_minutes),
                    "{} moved back to {} after {age} minutes",
                    mv.vm,
                    mv.to
                );
            }
            // Nobody ever returns, in fact.
            assert!(!history
                .iter()
                .any(|(v, left, _)| v == &mv.vm && left == &mv.to));
            history.push((mv.vm.clone(), mv.from.clone(), rounds));
        }
        total += plan.moves.len();
        plan.apply_to(&mut m).unwrap();
        for r in &mut cfg.recent_moves {
            r.minutes_ago += minutes_per_round;
        }
        cfg.recent_moves
            .extend(plan.moves.iter().map(|mv| RecentMove {
                vm: mv.vm.clone(),
                from: mv.from.clone(),
                to: mv.to.clone(),
                minutes_ago: 0,
            }));
    }
    let end = m.imbalance().unwrap();
    let target = LevelParams::for_level(3).unwrap().target_imbalance;
    assert!(rounds >= 2, "per-host limits spread the work over rounds");
    assert!(end <= target, "imbalance {start} -> {end}");
    let loads = m.host_loads().unwrap();
    let max = loads.iter().cloned().fold(0.0, f64::max);
    assert!(max < 0.6, "hot hosts relieved: {loads:?}");
    assert!(total <= 14, "{total} moves");
}

#[test]
fn steady_cluster_gets_an_empty_plan_at_every_level() {
    let vms = (0..8)
        .flat_map(|h| (0..4).map(move |i| vm(&format!("v{h}-{i}"), &format!("h{h}"), 2, 4, 1.0)))
        .collect();
    let m = model(hosts(8), vms);
    for level in 1..=5 {
        let plan = balance(
            &m,
            &BalanceConfig {
                level,
                ..BalanceConfig::default()
            },
        )
        .unwrap();
        assert!(plan.moves.is_empty(), "level {level}: {:?}", plan.moves);
    }
}

#[test]
fn level_one_leaves_load_alone_and_higher_levels_move_more() {
    let m = two_hot_hosts();
    let moves = |level| {
        balance(
            &m,
            &BalanceConfig {
                level,
                max_moves_per_host: 100,
                max_moves_total: 100,
                ..BalanceConfig::default()
            },
        )
        .unwrap()
        .moves
        .len()
    };
    assert_eq!(moves(1), 0);
    let counts: Vec<usize> = (2..=5).map(moves).collect();
    assert!(counts[0] > 0);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}

#[test]
fn recently_moved_vms_stay_put() {
    let m = two_hot_hosts();
    let recent: Vec<RecentMove> = m
        .vms
        .iter()
        .filter(|v| v.host == "h0")
        .map(|v| RecentMove {
            vm: v.name.clone(),
            from: "h5".into(),
            to: "h0".into(),
            minutes_ago: 5,
        })
        .collect();
    let cfg = BalanceConfig {
        recent_moves: recent.clone(),
        ..BalanceConfig::default()
    };
    let plan = balance(&m, &cfg).unwrap();
    assert!(!plan.moves.is_empty());
    assert!(
        plan.moves.iter().all(|mv| mv.from != "h0"),
        "{:?}",
        plan.moves
    );
    // Outside the window they may move again.
    let old: Vec<RecentMove> = recent
        .into_iter()
        .map(|r| RecentMove {
            minutes_ago: 45,
            ..r
        })
        .collect();
    let plan = balance(
        &m,
        &BalanceConfig {
            recent_moves: old,
            ..BalanceConfig::default()
        },
    )
    .unwrap();
    assert!(plan.moves.iter().any(|mv| mv.from == "h0"));
}

#[test]
fn limits_per_host_and_per_plan_hold() {
    let m = two_hot_hosts();
    for (per_host, total) in [(1, 64), (2, 3), (4, 64)] {
        let plan = balance(
            &m,
            &BalanceConfig {
                level: 5,
                max_moves_per_host: per_host,
                max_moves_total: total,
                ..BalanceConfig::default()
            },
        )
        .unwrap();
        assert!(plan.moves.len() <= total as usize);
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        for mv in &plan.moves {
            *per.entry(&mv.from).or_default() += 1;
            *per.entry(&mv.to).or_default() += 1;
        }
        assert!(per.values().all(|&n| n <= per_host), "{per:?}");
    }
}

/// A host in maintenance with 12 VMs; five others, one of them emptier.
fn maintenance() -> ClusterModel {
    let mut hs = hosts(6);
    hs[0].eligible = Eligibility::Maintenance;
    let mut vms = Vec::new();
    for i in 0..12 {
        vms.push(vm(&format!("m{i}"), "h0", 2, 4, 0.8));
    }
    for h in 1..5 {
        for i in 0..4 {
            vms.push(vm(&format!("v{h}-{i}"), &format!("h{h}"), 2, 4, 1.0));
        }
    }
    for i in 0..2 {
        vms.push(vm(&format!("v5-{i}"), "h5", 2, 4, 1.0));
    }
    model(hs, vms)
}

#[test]
fn maintenance_evacuation_spreads() {
    let m = maintenance();
    let cfg = BalanceConfig {
        level: 1,
        max_moves_per_host: 12,
        max_moves_total: 64,
        ..BalanceConfig::default()
    };
    let plan = balance(&m, &cfg).unwrap();
    assert_eq!(plan.violations_before.on_maintenance, 12);
    assert_eq!(plan.violations_after.on_maintenance, 0);
    assert_eq!(plan.moves.len(), 12);
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for mv in &plan.moves {
        assert_eq!(
            mv.reason,
            Reason::Evacuate {
                maintenance: "h0".into()
            }
        );
        *per.entry(&mv.to).or_default() += 1;
    }
    // The emptiest host (h5) gets more, but every host takes some.
    assert_eq!(per.len(), 5, "{per:?}");
    assert!(per.values().all(|&n| n <= 4), "{per:?}");
    let mut after = m.clone();
    plan.apply_to(&mut after).unwrap();
    let loads = after.host_loads().unwrap();
    let max = loads[1..].iter().cloned().fold(0.0, f64::max);
    let min = loads[1..].iter().cloned().fold(f64::MAX, f64::min);
    assert!(max - min < 0.15, "{loads:?}");

    // With the default concurrency limit the evacuation takes a few rounds and still spreads.
    let mut m = maintenance();
    let mut rounds = 0;
    loop {
        let plan = balance(&m, &BalanceConfig::default()).unwrap();
        if plan.moves.is_empty() {
            break;
        }
        rounds += 1;
        plan.apply_to(&mut m).unwrap();
    }
    assert!(rounds <= 6);
    let per = per_host(&m);
    assert_eq!(per[0].1, 0);
    assert!(per[1..].iter().all(|(_, n)| (3..=8).contains(n)), "{per:?}");
    let loads = m.host_loads().unwrap();
    let max = loads[1..].iter().cloned().fold(0.0, f64::max);
    let min = loads[1..].iter().cloned().fold(f64::MAX, f64::min);
    assert!(max - min < 0.15, "{loads:?}");
}

#[test]
fn evacuation_keeps_must_affinity_groups_together_and_anti_affinity_apart() {
    let mut m = maintenance();
    m.rules = vec![
        Rule::affinity("db-pair", Strength::Must, &["m0", "m1"]),
        Rule::anti_affinity("web", Strength::Must, &["m2", "m3", "m4", "m5", "m6"]),
    ];
    // The anti-affinity group already shares h0: that is broken, and fixed first.
    let plan = balance(
        &m,
        &BalanceConfig {
            level: 1,
            max_moves_per_host: 12,
            ..BalanceConfig::default()
        },
    )
    .unwrap();
    assert_eq!(
        plan.violations_after.hard(),
        0,
        "{:?}",
        plan.violations_after
    );
    let mut after = m.clone();
    plan.apply_to(&mut after).unwrap();
    assert_eq!(host_of(&after, "m0"), host_of(&after, "m1"));
    let web: std::collections::BTreeSet<&str> = ["m2", "m3", "m4", "m5", "m6"]
        .iter()
        .map(|v| host_of(&after, v))
        .collect();
    assert_eq!(web.len(), 5);
    let pair: Vec<_> = plan
        .moves
        .iter()
        .filter(|mv| mv.vm == "m0" || mv.vm == "m1")
        .collect();
    assert_eq!(pair.len(), 2);
    assert_eq!(pair[0].with, vec![pair[1].vm.clone()]);
}

#[test]
fn broken_must_rules_and_over_capacity_are_fixed() {
    let mut m = model(
        hosts(4),
        vec![
            vm("a", "h0", 2, 4, 0.5),
            vm("b", "h0", 2, 4, 0.5),
            vm("pinned", "h1", 2, 4, 0.5),
            vm("big", "h2", 2, 40, 0.5),
            vm("big2", "h2", 2, 20, 0.5),
        ],
    );
    m.rules = vec![
        Rule::anti_affinity("ab", Strength::Must, &["a", "b"]),
        Rule::run_on("pin", Strength::Must, &["pinned"], &["h3"]),
    ];
    // h2's memory ratio was lowered under its allocation.
    m.hosts[2].ratios.memory = 0.75;
    let plan = balance(
        &m,
        &BalanceConfig {
            level: 1,
            ..BalanceConfig::default()
        },
    )
    .unwrap();
    assert_eq!(plan.violations_before.must.len(), 2);
    assert_eq!(plan.violations_before.over_capacity, vec!["h2".to_string()]);
    assert_eq!(
        plan.violations_after.hard(),
        0,
        "{:?}",
        plan.violations_after
    );
    let reasons: Vec<(&str, &Reason)> = plan
        .moves
        .iter()
        .map(|mv| (mv.vm.as_str(), &mv.reason))
        .collect();
    assert!(reasons.contains(&("pinned", &Reason::FixMustRule { rule: "pin".into() })));
    assert!(reasons
        .iter()
        .any(|(_, r)| **r == Reason::FixMustRule { rule: "ab".into() }));
    // The smallest VM that clears the excess alone leaves h2.
    assert!(
        reasons.contains(&("big2", &Reason::OverCapacity)),
        "{reasons:?}"
    );
    let mut after = m.clone();
    plan.apply_to(&mut after).unwrap();
    assert_eq!(host_of(&after, "pinned"), "h3");
}

#[test]
fn balancing_never_breaks_rules_the_greedy_one_does() {
    // Hot h0 whose VMs are all pinned or kept apart from VMs elsewhere.
    let mut vms = Vec::new();
    for i in 0..10 {
        vms.push(vm(&format!("x{i}"), "h0", 2, 4, 1.4));
    }
    for h in 1..4 {
        vms.push(vm(&format!("y{h}"), &format!("h{h}"), 2, 4, 0.5));
    }
    let mut m = model(hosts(4), vms);
    m.rules = vec![
        Rule::run_on(
            "stay",
            Strength::Must,
            &["x0", "x1", "x2", "x3", "x4"],
            &["h0", "h1"],
        ),
        Rule::anti_affinity("apart", Strength::Must, &["x5", "y1", "y2", "y3"]),
    ];
    let ours = balance(
        &m,
        &BalanceConfig {
            level: 5,
            max_moves_per_host: 10,
            ..BalanceConfig::default()
        },
    )
    .unwrap();
    let theirs = greedy::balance(
        &m,
        &GreedyConfig {
            target_imbalance: 0.03,
            max_moves: 64,
        },
    )
    .unwrap();
    assert_eq!(ours.violations_after.must.len(), 0);
    assert!(ours.imbalance_after < ours.imbalance_before);
    assert!(
        !theirs.violations_after.must.is_empty(),
        "{:?}",
        theirs.moves
    );
}

#[test]
fn chatty_pair_is_co_located_when_cheap() {
    let mut vms = Vec::new();
    for h in 0..4 {
        for i in 0..3 {
            vms.push(vm(&format!("v{h}-{i}"), &format!("h{h}"), 2, 4, 1.0));
        }
    }
    vms.push(vm("front", "h0", 1, 1, 0.5));
    vms.push(vm("back", "h1", 1, 1, 0.5));
    let mut m = model(hosts(4), vms);
    m.traffic = vec![
        flow("front", "back", 400 << 20),
        flow("v2-0", "v3-0", 1 << 20),
    ];
    let plan = balance(&m, &BalanceConfig::default()).unwrap();
    assert_eq!(plan.moves.len(), 1, "{:?}", plan.moves);
    let mv = &plan.moves[0];
    assert!(
        matches!(mv.reason, Reason::ReduceTraffic { bytes_per_s_saved } if bytes_per_s_saved == 400 << 20)
    );
    assert_eq!(plan.cross_host_traffic_before, (400 << 20) + (1 << 20));
    assert_eq!(plan.cross_host_traffic_after, 1 << 20);
    // The move spreads load less evenly; the plan says what it got for it.
    assert!(plan.imbalance_after > plan.imbalance_before);
    let t = plan.tradeoff.expect("the trade is declared");
    assert_eq!(t.traffic_saved_bytes_per_s, 400 << 20);
    assert_eq!(t.should_violations_removed, 0);
    assert_eq!(
        (t.imbalance_before, t.imbalance_after),
        (plan.imbalance_before, plan.imbalance_after)
    );
    // 4 hosts × (σ_after² − σ_before²) ≤ 0.001 × 400 MiB/s.
    let spent = 4.0 * (t.imbalance_after.powi(2) - t.imbalance_before.powi(2));
    assert!(spent > 0.0 && spent <= 0.4, "{spent}");

    // The same pair, but each VM has 64 GiB to copy for a trickle of traffic: not worth it.
    for v in &mut m.vms {
        if v.name == "front" || v.name == "back" {
            v.memory_mib = 12 * GIB;
        }
    }
    m.traffic = vec![flow("front", "back", 2 << 20)];
    assert!(balance(&m, &BalanceConfig::default())
        .unwrap()
        .moves
        .is_empty());

    // Nor when the weight is 0.
    m.traffic = vec![flow("front", "back", 400 << 20)];
    let cfg = BalanceConfig {
        traffic_weight: 0.0,
        ..BalanceConfig::default()
    };
    assert!(balance(&m, &cfg).unwrap().moves.is_empty());

    // Nor when a must-rule keeps them apart.
    m.rules = vec![Rule::anti_affinity(
        "split",
        Strength::Must,
        &["front", "back"],
    )];
    assert!(balance(&m, &BalanceConfig::default())
        .unwrap()
        .moves
        .is_empty());
}

#[test]
fn should_rules_are_followed_when_they_pay() {
    let mut vms = Vec::new();
    for h in 0..4 {
        for i in 0..3 {
            vms.push(vm(&format!("v{h}-{i}"), &format!("h{h}"), 2, 4, 1.0));
        }
    }
    let mut m = model(hosts(4), vms);
    m.rules = vec![Rule::not_on(
        "avoid-h0",
        Strength::Should,
        &["v0-0"],
        &["h0"],
    )];
    let plan = balance(&m, &BalanceConfig::default()).unwrap();
    assert_eq!(plan.moves.len(), 1);
    assert_eq!(plan.moves[0].vm, "v0-0");
    assert_eq!(
        plan.moves[0].reason,
        Reason::ShouldRule {
            rule: "avoid-h0".into()
        }
    );
    assert!(plan.violations_after.should.is_empty());
    // Level 1 leaves should-rules alone.
    let plan = balance(
        &m,
        &BalanceConfig {
            level: 1,
            ..BalanceConfig::default()
        },
    )
    .unwrap();
    assert!(plan.moves.is_empty());
}

#[test]
fn invalid_config_is_refused() {
    let m = two_hot_hosts();
    assert_eq!(
        balance(
            &m,
            &BalanceConfig {
                level: 0,
                ..BalanceConfig::default()
            }
        )
        .unwrap_err()
        .to_string(),
        "migration threshold level must be 1 to 5, got 0"
    );
    assert!(balance(
        &m,
        &BalanceConfig {
            level: 6,
            ..BalanceConfig::default()
        }
    )
    .is_err());
    assert!(balance(
        &m,
        &BalanceConfig {
            traffic_weight: f64::NAN,
            ..BalanceConfig::default()
        }
    )
    .is_err());
    assert!(balance(
        &m,
        &BalanceConfig {
            should_penalty: -1.0,
            ..BalanceConfig::default()
        }
    )
    .is_err());
}

/// Two members of a must-affinity group are stuck on a disconnected host: gathering the others
/// elsewhere can at best tie with it, which fixes nothing, so nothing moves. With one more member
/// to gather the group outnumbers the stuck pair, and moves together.
#[test]
fn must_affinity_moves_only_when_the_group_fixes_the_rule() {
    let mut m = model(
        hosts(5),
        vec![
            vm("s0", "h4", 1, 1, 0.0),
            vm("s1", "h4", 1, 1, 0.0),
            vm("a", "h0", 1, 1, 0.0),
            vm("b", "h1", 1, 1, 0.0),
        ],
    );
    m.hosts[4].eligible = Eligibility::Disconnected;
    m.rules = vec![Rule::affinity(
        "grp",
        Strength::Must,
        &["s0", "s1", "a", "b"],
    )];
    let cfg = BalanceConfig {
        level: 1,
        ..BalanceConfig::default()
    };
    let plan = balance(&m, &cfg).unwrap();
    assert!(plan.moves.is_empty(), "{:?}", plan.moves);

    m.vms.push(vm("c", "h2", 1, 1, 0.0));
    m.rules = vec![Rule::affinity(
        "grp",
        Strength::Must,
        &["s0", "s1", "a", "b", "c"],
    )];
    let plan = balance(&m, &cfg).unwrap();
    let moved: Vec<(&str, &str, Vec<String>)> = plan
        .moves
        .iter()
        .map(|mv| (mv.vm.as_str(), mv.to.as_str(), mv.with.clone()))
        .collect();
    assert_eq!(
        moved,
        vec![("b", "h0", vec!["c".to_string()]), ("c", "h0", Vec::new())]
    );
    assert!(plan
        .moves
        .iter()
        .all(|mv| mv.reason == Reason::FixMustRule { rule: "grp".into() }));
    assert_eq!(plan.violations_before.must_vms(), 3);
    assert_eq!(plan.violations_after.must_vms(), 2);
}

/// A VM on VLAN networks whose host lost its trunk moves to a host with one, at every level,
/// and load balancing never sends a VM to a host that lacks what it needs.
#[test]
fn a_vm_on_a_host_that_no_longer_fits_it_moves_to_one_that_does() {
    use vinfra_placement::{balance_with_fit, FitTable, HostCaps, OverlayMtu, VmNeeds};
    let mut vms = vec![vm("tagged", "h0", 2, 4, 1.0)];
    for i in 0..6 {
        vms.push(vm(&format!("jumbo{i}"), "h0", 2, 4, 1.5));
    }
    let m = model(hosts(4), vms);
    let mut fit = FitTable::default();
    let caps = |trunk: bool, mtu: u32| HostCaps {
        vlan_trunk: trunk,
        underlay_mtu: mtu,
        ..HostCaps::default()
    };
    fit.hosts.insert("h0".into(), caps(false, 9000));
    fit.hosts.insert("h1".into(), caps(false, 1500));
    fit.hosts.insert("h2".into(), caps(true, 1500));
    fit.hosts.insert("h3".into(), caps(false, 9000));
    fit.vms.insert(
        "tagged".into(),
        VmNeeds {
            vlan_networks: vec!["v10".into()],
            ..VmNeeds::default()
        },
    );
    for i in 0..6 {
        fit.vms.insert(
            format!("jumbo{i}"),
            VmNeeds {
                overlay: Some(OverlayMtu {
                    network: "big".into(),
                    mtu: 8950,
                }),
                ..VmNeeds::default()
            },
        );
    }
    let level1 = BalanceConfig {
        level: 1,
        ..BalanceConfig::default()
    };
    let plan = balance_with_fit(&m, &fit, &level1).unwrap();
    assert_eq!(plan.violations_before.misfits.len(), 1);
    assert_eq!(plan.moves.len(), 1, "{:?}", plan.moves);
    assert_eq!(
        (plan.moves[0].vm.as_str(), plan.moves[0].to.as_str()),
        ("tagged", "h2")
    );
    assert_eq!(
        plan.moves[0].reason.to_string(),
        "its host does not fit it: it has no VLAN trunk for VLAN network 'v10' (its agent runs \
         without --trunk-interface)"
    );
    assert!(plan.violations_after.misfits.is_empty());
    // h0 is hot: the jumbo VMs spread, but only to h3 (the other hosts' underlay is too small).
    let plan = balance_with_fit(
        &m,
        &fit,
        &BalanceConfig {
            level: 5,
            ..BalanceConfig::default()
        },
    )
    .unwrap();
    assert!(plan.moves.iter().any(|mv| mv.vm.starts_with("jumbo")));
    for mv in plan.moves.iter().filter(|mv| mv.vm.starts_with("jumbo")) {
        assert_eq!(mv.to, "h3", "{mv:?}");
    }
    // Without the fit table every host fits every VM: nothing is wrong, and the jumbo VMs
    // spread anywhere.
    let plan = balance(&m, &level1).unwrap();
    assert!(plan.moves.is_empty());
}
