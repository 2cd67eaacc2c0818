//! Rule validation and placement under rules.

mod common;

use common::*;
use vinfra_placement::{
    balance, place, place_under_rules, BalanceConfig, BalanceError, ClusterModel, Eligibility,
    FitError, FitTable, HostInput, ModelError, NoHost, Placement, Rule, RuleError, RulePlacer,
    Strength, Target, Unfit, VmNeeds, VmRequest,
};

fn small() -> ClusterModel {
    model(
        hosts(3),
        vec![
            vm("a", "h0", 2, 4, 0.5),
            vm("b", "h1", 2, 4, 0.5),
            vm("c", "h2", 2, 4, 0.5),
        ],
    )
}

fn refused(rules: Vec<Rule>) -> RuleError {
    let mut m = small();
    m.rules = rules;
    match m.validate() {
        Err(ModelError::Rule(e)) => {
            // The balancer refuses the same model with the same error.
            assert_eq!(
                balance(&m, &BalanceConfig::default()).unwrap_err(),
                BalanceError::Model(ModelError::Rule(e.clone()))
            );
            e
        }
        other => panic!("expected a rule error, got {other:?}"),
    }
}

#[test]
fn contradictory_rules_are_refused_with_a_clear_error() {
    use Strength::*;
    let e = refused(vec![
        Rule::affinity("together", Must, &["a", "b"]),
        Rule::anti_affinity("apart", Must, &["b", "a"]),
    ]);
    assert_eq!(
        e.to_string(),
        "rules contradict each other: must-affinity 'together' keeps VMs 'a' and 'b' on one host, \
         must-anti-affinity 'apart' keeps them apart"
    );
    // Through a chain of affinity rules, and with a VM that does not run yet.
    let e = refused(vec![
        Rule::affinity("ab", Must, &["a", "b"]),
        Rule::affinity("b-new", Must, &["b", "new"]),
        Rule::anti_affinity("apart", Must, &["new", "a"]),
    ]);
    assert!(matches!(e, RuleError::TogetherAndApart { .. }), "{e}");
    assert!(e.to_string().contains("'ab', 'b-new'"), "{e}");

    let e = refused(vec![
        Rule::run_on("on-h0", Must, &["a"], &["h0"]),
        Rule::not_on("not-h0", Must, &["a"], &["h0", "h2"]),
    ]);
    assert_eq!(
        e.to_string(),
        "must rules 'on-h0', 'not-h0' leave VM 'a' no host to run on"
    );

    let e = refused(vec![
        Rule::affinity("pair", Must, &["a", "b"]),
        Rule::run_on("a-h0", Must, &["a"], &["h0"]),
        Rule::run_on("b-h1", Must, &["b"], &["h1", "h2"]),
    ]);
    assert_eq!(
        e.to_string(),
        "must-affinity 'pair' keeps VMs 'a', 'b' on one host, but must host rules allow them no common host"
    );

    let mut m = small();
    for v in &mut m.vms {
        v.memory_mib = 40 * GIB;
    }
    m.rules = vec![Rule::affinity("big", Must, &["a", "b"])];
    let Err(ModelError::Rule(e)) = m.validate() else {
        panic!("accepted")
    };
    assert!(matches!(e, RuleError::GroupTooLarge { memory_mib, .. } if memory_mib == 80 * GIB));

    let e = refused(vec![Rule::anti_affinity(
        "wide",
        Must,
        &["a", "b", "c", "d"],
    )]);
    assert_eq!(
        e.to_string(),
        "must-anti-affinity 'wide' needs 4 different hosts, the cluster has 3"
    );
}

#[test]
fn malformed_rules_are_refused() {
    use Strength::*;
    assert!(matches!(
        refused(vec![Rule::affinity("x", Should, &["a", "a"])]),
        RuleError::EmptyRule { .. }
    ));
    assert!(matches!(
        refused(vec![Rule::run_on("x", Must, &["a"], &[])]),
        RuleError::EmptyRule { .. }
    ));
    assert!(matches!(
        refused(vec![Rule::run_on("x", Must, &["a"], &["h9"])]),
        RuleError::UnknownHost { .. }
    ));
    assert!(matches!(
        refused(vec![
            Rule::affinity("x", Should, &["a", "b"]),
            Rule::anti_affinity("x", Should, &["a", "c"])
        ]),
        RuleError::DuplicateRule { .. }
    ));
}

#[test]
fn should_rules_may_contradict() {
    // Soft rules are weighed, not refused.
    let mut m = small();
    m.rules = vec![
        Rule::affinity("together", Strength::Should, &["a", "b"]),
        Rule::anti_affinity("apart", Strength::Should, &["a", "b"]),
    ];
    m.validate().unwrap();
}

#[test]
fn invalid_models_are_refused() {
    let mut m = small();
    m.vms[1].host = "nowhere".into();
    assert!(matches!(m.validate(), Err(ModelError::UnknownHost { .. })));
    let mut m = small();
    m.vms[1].name = "a".into();
    assert!(matches!(m.validate(), Err(ModelError::DuplicateVm { .. })));
    let mut m = small();
    m.vms[1].cpu_demand = f64::NAN;
    assert!(matches!(
        m.validate(),
        Err(ModelError::InvalidDemand { .. })
    ));
    let mut m = small();
    m.hosts[0].capacity.cores = 0;
    assert!(matches!(m.validate(), Err(ModelError::NoCapacity { .. })));
    let mut m = small();
    m.hosts[0].ratios.cpu = -1.0;
    assert!(matches!(
        m.validate(),
        Err(ModelError::InvalidRatios { .. })
    ));
    let mut m = small();
    m.traffic = vec![flow("a", "zz", 1)];
    assert!(matches!(
        m.validate(),
        Err(ModelError::UnknownFlowVm { .. })
    ));
    m.traffic = vec![flow("a", "a", 1)];
    assert!(matches!(m.validate(), Err(ModelError::SelfFlow { .. })));
}

fn req(name: &str, vcpus: u32, gib: u64) -> VmRequest {
    VmRequest {
        vm: name.into(),
        vcpus,
        memory_mib: gib * GIB,
    }
}

#[test]
fn placement_without_rules_is_plain_placement() {
    let mut m = small();
    m.vms.push(vm("d", "h0", 8, 30, 1.0));
    m.hosts[2].eligible = Eligibility::Maintenance;
    let inputs: Vec<HostInput> = m
        .hosts
        .iter()
        .map(|h| HostInput {
            name: h.name.clone(),
            capacity: h.capacity,
            ratios: h.ratios,
            allocated_vcpus: m
                .vms
                .iter()
                .filter(|v| v.host == h.name)
                .map(|v| v.vcpus)
                .sum(),
            allocated_memory_mib: m
                .vms
                .iter()
                .filter(|v| v.host == h.name)
                .map(|v| v.memory_mib)
                .sum(),
            eligible: h.eligible,
        })
        .collect();
    for r in [
        req("x", 1, 1),
        req("y", 4, 20),
        req("z", 2, 60),
        req("w", 1, 1000),
    ] {
        assert_eq!(
            new_vm(&m, &r).ok(),
            place(&inputs, &r, None).ok(),
            "{}",
            r.vm
        );
    }
    // Refused by both: the explanation names every host.
    let e = new_vm(&m, &req("w", 1, 1000)).unwrap_err();
    let FitError::NoHost(e) = e else {
        panic!("{e}")
    };
    assert!(only_capacity_and(&e, &["h2"]), "{e}");
}

/// [`place_under_rules`] for a new VM that needs nothing beyond room.
fn new_vm(m: &ClusterModel, r: &VmRequest) -> Result<Placement, FitError> {
    place_under_rules(m, &FitTable::default(), r, &VmNeeds::default(), Target::Any)
}

/// True when every host of `e` falls short of capacity, but those of `maintenance`.
fn only_capacity_and(e: &NoHost, maintenance: &[&str]) -> bool {
    e.groups.iter().all(|g| match &g.reason {
        Unfit::Capacity(_) => true,
        Unfit::Maintenance => g.hosts.iter().all(|h| maintenance.contains(&h.as_str())),
        _ => false,
    })
}

#[test]
fn placement_follows_must_rules_and_prefers_should_rules() {
    use Strength::*;
    let mut m = model(
        hosts(5),
        vec![vm("db1", "h0", 2, 4, 0.5), vm("app1", "h3", 2, 4, 0.5)],
    );
    m.rules = vec![
        Rule::anti_affinity("dbs", Must, &["db1", "db2", "db3"]),
        Rule::run_on(
            "db-hosts",
            Must,
            &["db1", "db2", "db3"],
            &["h0", "h1", "h2"],
        ),
        Rule::affinity("app-cache", Must, &["app1", "cache1"]),
        Rule::affinity("app-near-db", Should, &["app2", "db1"]),
        Rule::not_on("keep-off-h4", Should, &["app2"], &["h4"]),
    ];
    let none = VmNeeds::default();
    let mut p = RulePlacer::new(&m, &FitTable::default()).unwrap();
    let db2 = p.place(&req("db2", 2, 4), &none).unwrap().host;
    let db3 = p.place(&req("db3", 2, 4), &none).unwrap().host;
    let mut dbs = vec!["h0".to_string(), db2, db3];
    dbs.sort();
    assert_eq!(dbs, ["h0", "h1", "h2"]);
    assert_eq!(p.place(&req("cache1", 1, 1), &none).unwrap().host, "h3");
    assert_eq!(p.place(&req("app2", 1, 1), &none).unwrap().host, "h0");
    // No fourth database host.
    m.rules[0] = Rule::anti_affinity("dbs", Must, &["db1", "db2", "db3", "db4"]);
    m.rules[1] = Rule::run_on(
        "db-hosts",
        Must,
        &["db1", "db2", "db3", "db4"],
        &["h0", "h1", "h2"],
    );
    let mut p = RulePlacer::new(&m, &FitTable::default()).unwrap();
    for n in ["db2", "db3"] {
        p.place(&req(n, 1, 1), &none).unwrap();
    }
    let e = p.place(&req("db4", 1, 1), &none).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no host can take VM 'db4' (1 vCPU, 1024 MiB): h0, h1, h2: the VM there would break \
         must-rule 'dbs'; h3, h4: the VM there would break must-rule 'db-hosts'"
    );
    assert!(matches!(e, FitError::NoHost(_)));
    // A placer built for one decision from the same cluster answers the same.
    m.vms.extend(
        ["db2", "db3"]
            .iter()
            .map(|n| vm(n, p.host_of(n).unwrap(), 1, 1, 0.0)),
    );
    assert_eq!(new_vm(&m, &req("db4", 1, 1)), Err(e));
    assert!(matches!(
        p.place(&req("db1", 1, 1), &none),
        Err(FitError::AlreadyPlaced { .. })
    ));
    assert!(matches!(
        p.place(&req("db9", 0, 1), &none),
        Err(FitError::EmptyRequest { .. })
    ));
}

#[test]
fn placement_prefers_the_should_affinity_host_only_when_it_fits() {
    let mut m = model(hosts(3), vec![vm("a", "h0", 2, 60, 0.5)]);
    m.rules = vec![Rule::affinity("near", Strength::Should, &["a", "b"])];
    assert_eq!(new_vm(&m, &req("b", 1, 2)).unwrap().host, "h0");
    assert_ne!(new_vm(&m, &req("b", 1, 8)).unwrap().host, "h0");
}

#[test]
fn a_planned_move_checks_fit_but_not_the_must_rules() {
    let mut m = model(
        hosts(3),
        vec![vm("a", "h0", 1, 1, 0.1), vm("b", "h0", 1, 1, 0.1)],
    );
    m.rules = vec![Rule::affinity("pair", Strength::Must, &["a", "b"])];
    m.hosts[2].eligible = Eligibility::Maintenance;
    let p = RulePlacer::new(&m, &FitTable::default()).unwrap();
    let none = VmNeeds::default();
    let a = req("a", 1, 1);
    // The operator's move would leave b alone: refused, naming the rule.
    let e = p
        .decide(&a, &none, Target::Migrate(Some("h1")))
        .unwrap_err();
    assert!(
        matches!(
            &e,
            FitError::HostUnfit {
                unfit: Unfit::MustRule { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("'pair'"), "{e}");
    // As the first move of a plan that moves the pair together, it goes.
    assert_eq!(
        p.decide(&a, &none, Target::Planned("h1")).unwrap().host,
        "h1"
    );
    // Fit still holds: not to a host in maintenance, not where it runs, only a running VM.
    for (to, why) in [("h2", Unfit::Maintenance), ("h0", Unfit::Source)] {
        match p.decide(&a, &none, Target::Planned(to)) {
            Err(FitError::HostUnfit { unfit, .. }) => assert_eq!(unfit, why),
            other => panic!("{to}: {other:?}"),
        }
    }
    assert!(matches!(
        p.decide(&req("c", 1, 1), &none, Target::Planned("h1")),
        Err(FitError::NotRunning { .. })
    ));
}
