//! Host fit and placement under rules: the calls a console makes (create, create on a named
//! host, start, migrate with and without a destination), by example and as properties over
//! random clusters with capabilities, needs and rules.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::random::{fitted_cluster, needs, NAMED_VMS};
use common::*;
use proptest::prelude::*;
use vinfra_placement::fit::{self, BASIC_HOST};
use vinfra_placement::{
    place_under_rules, ClusterModel, Constraint, Eligibility, FitError, FitTable, HostCaps,
    HostInput, OverlayMtu, Placement, Rule, RulePlacer, Strength, Target, Unfit, VmModel, VmNeeds,
    VmRequest,
};

fn req(name: &str, vcpus: u32, gib: u64) -> VmRequest {
    VmRequest {
        vm: name.into(),
        vcpus,
        memory_mib: gib * GIB,
    }
}

fn vlan(network: &str) -> VmNeeds {
    VmNeeds {
        vlan_networks: vec![network.into()],
        ..VmNeeds::default()
    }
}

fn overlay(mtu: u32) -> VmNeeds {
    VmNeeds {
        overlay: Some(OverlayMtu {
            network: "ov".into(),
            mtu,
        }),
        ..VmNeeds::default()
    }
}

fn caps(trunk: bool, mtu: u32) -> HostCaps {
    HostCaps {
        vlan_trunk: trunk,
        underlay_mtu: mtu,
        ..HostCaps::default()
    }
}

/// h0: trunk, MTU 1500; h1: no trunk, MTU 9000; h2: trunk, MTU 9000, in maintenance;
/// h3: no trunk, MTU 1500, disconnected.
fn four() -> (ClusterModel, FitTable) {
    let mut m = model(
        hosts(4),
        vec![vm("a", "h0", 2, 4, 0.5), vm("b", "h1", 2, 4, 0.5)],
    );
    m.hosts[2].eligible = Eligibility::Maintenance;
    m.hosts[3].eligible = Eligibility::Disconnected;
    let mut fit = FitTable::default();
    for (h, c) in [
        ("h0", caps(true, 1500)),
        ("h1", caps(false, 9000)),
        ("h2", caps(true, 9000)),
        ("h3", caps(false, 1500)),
    ] {
        fit.hosts.insert(h.into(), c);
    }
    (m, fit)
}

#[test]
fn the_host_that_fits_is_chosen_and_the_others_explained() {
    let (m, fit) = four();
    let p = RulePlacer::new(&m, &fit).unwrap();
    assert_eq!(
        p.decide(&req("web", 1, 1), &vlan("v10"), Target::Any)
            .unwrap()
            .host,
        "h0"
    );
    assert_eq!(
        p.decide(&req("web", 1, 1), &overlay(8950), Target::Any)
            .unwrap()
            .host,
        "h1"
    );
    let both = VmNeeds {
        vlan_networks: vec!["v10".into()],
        ..overlay(8950)
    };
    let e = p.decide(&req("web", 1, 1), &both, Target::Any).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no host can take VM 'web' (1 vCPU, 1024 MiB): h1, h3: it has no VLAN trunk for VLAN \
         network 'v10' (its agent runs without --trunk-interface); h0: its underlay MTU is \
         1500, and overlay network 'ov' (MTU 8950) needs at least 9000 (8950 + 50 bytes of \
         VXLAN encapsulation; its agent's --underlay-mtu); h2: it is in maintenance"
    );
    // The one-shot call gives the same answers.
    assert_eq!(
        place_under_rules(&m, &fit, &req("web", 1, 1), &both, Target::Any),
        Err(e)
    );
}

#[test]
fn a_named_host_is_checked_the_same_way() {
    let (m, fit) = four();
    let p = RulePlacer::new(&m, &fit).unwrap();
    let e = p
        .decide(&req("web", 1, 1), &vlan("v10"), Target::Host("h1"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "host h1 cannot take VM 'web' (1 vCPU, 1024 MiB): it has no VLAN trunk for VLAN network \
         'v10' (its agent runs without --trunk-interface)"
    );
    assert!(matches!(
        p.decide(&req("web", 1, 1), &VmNeeds::default(), Target::Host("h2")),
        Err(FitError::HostUnfit {
            unfit: Unfit::Maintenance,
            ..
        })
    ));
    // A VM already placed on a host in maintenance may start there, not on a disconnected one.
    assert_eq!(
        p.decide(&req("web", 1, 1), &VmNeeds::default(), Target::Start("h2"))
            .unwrap()
            .host,
        "h2"
    );
    assert!(matches!(
        p.decide(&req("web", 1, 1), &VmNeeds::default(), Target::Start("h3")),
        Err(FitError::HostUnfit {
            unfit: Unfit::Disconnected,
            ..
        })
    ));
    assert!(matches!(
        p.decide(&req("web", 1, 1), &VmNeeds::default(), Target::Host("h9")),
        Err(FitError::UnknownHost { .. })
    ));
    assert!(matches!(
        p.decide(&req("a", 1, 1), &VmNeeds::default(), Target::Any),
        Err(FitError::AlreadyPlaced { .. })
    ));
}

#[test]
fn a_migration_respects_rules_and_fit() {
    let (mut m, mut fit) = four();
    m.hosts[2].eligible = Eligibility::Ok;
    m.vms.push(vm("c", "h2", 1, 1, 0.1));
    m.rules = vec![Rule::anti_affinity("apart", Strength::Must, &["a", "c"])];
    fit.vms.insert("a".into(), vlan("v10"));
    let p = RulePlacer::new(&m, &fit).unwrap();
    let a = req("a", 2, 4);
    // h0 is its source, h1 and h3 lack the trunk, h2 runs c.
    let e = p
        .decide(&a, &vlan("v10"), Target::Migrate(None))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no host can take VM 'a' (2 vCPU, 4096 MiB): h1, h3: it has no VLAN trunk for VLAN \
         network 'v10' (its agent runs without --trunk-interface); h0: the VM runs there \
         already; h2: the VM there would break must-rule 'apart'"
    );
    assert!(matches!(
        p.decide(&a, &vlan("v10"), Target::Migrate(Some("h2"))),
        Err(FitError::HostUnfit {
            unfit: Unfit::MustRule { .. },
            ..
        })
    ));
    assert!(matches!(
        p.decide(&req("zz", 1, 1), &VmNeeds::default(), Target::Migrate(None)),
        Err(FitError::NotRunning { .. })
    ));
    // Without the rule it goes to h2.
    m.rules.clear();
    let mut p = RulePlacer::new(&m, &fit).unwrap();
    let to = p.decide(&a, &vlan("v10"), Target::Migrate(None)).unwrap();
    assert_eq!(to.host, "h2");
    p.migrated("a", "h2").unwrap();
    assert_eq!(p.host_of("a"), Some("h2"));
    p.remove("a").unwrap();
    assert_eq!(p.host_of("a"), None);
    assert_eq!(
        p.decide(&a, &vlan("v10"), Target::Host("h0")).unwrap().host,
        "h0"
    );
}

#[test]
fn a_reserve_is_kept_free_and_capabilities_can_change() {
    let (m, mut fit) = four();
    fit.hosts.get_mut("h0").unwrap().reserve.memory_mib = 60 * GIB;
    let mut p = RulePlacer::new(&m, &fit).unwrap();
    // h0 has 64 GiB, 4 used, 60 reserved.
    let e = p
        .decide(&req("big", 1, 1), &vlan("v10"), Target::Any)
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "h0: memory short by 1024 MiB (allocated 4096 of 65536 MiB allocatable = 65536 MiB \
             physical × ratio 1, 61440 MiB of it reserved)"
        ),
        "{e}"
    );
    p.set_caps("h1", caps(true, 9000)).unwrap();
    assert_eq!(p.place(&req("big", 1, 1), &vlan("v10")).unwrap().host, "h1");
    p.set_eligibility("h1", Eligibility::Maintenance).unwrap();
    assert!(p
        .decide(&req("big2", 1, 1), &vlan("v10"), Target::Any)
        .is_err());
}

// ----- properties -----

/// What the VM asks, drawn at random.
#[derive(Debug, Clone)]
enum Ask {
    Any,
    Host(usize),
    Start(usize),
    Migrate(Option<usize>),
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![
        3 => Just(Ask::Any),
        1 => (0usize..7).prop_map(Ask::Host),
        1 => (0usize..7).prop_map(Ask::Start),
        1 => Just(Ask::Migrate(None)),
        1 => (0usize..7).prop_map(|h| Ask::Migrate(Some(h))),
    ]
}

/// Must-rule violations per rule of `m`, counted from the rules' definitions (not by the
/// model's own check, which refuses a model whose must-affinity group no host can hold, the very
/// model a refused placement describes): affinity, members not on the host with the most of them;
/// anti-affinity, members sharing a host beyond the first; host rules, members on a host they may
/// not run on. Members that do not run are not counted.
fn must(m: &ClusterModel) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for rule in m.rules.iter().filter(|r| r.strength == Strength::Must) {
        let (Constraint::Affinity { vms }
        | Constraint::AntiAffinity { vms }
        | Constraint::RunOn { vms, .. }
        | Constraint::NotOn { vms, .. }) = &rule.kind;
        let members: BTreeSet<&String> = vms.iter().collect();
        let hosts: Vec<&str> = m
            .vms
            .iter()
            .filter(|v| members.contains(&v.name))
            .map(|v| v.host.as_str())
            .collect();
        let mut per_host: BTreeMap<&str, u32> = BTreeMap::new();
        for h in &hosts {
            *per_host.entry(h).or_default() += 1;
        }
        let n = match &rule.kind {
            Constraint::Affinity { .. } => {
                hosts.len() as u32 - per_host.values().max().copied().unwrap_or(0)
            }
            Constraint::AntiAffinity { .. } => per_host.values().map(|n| n - 1).sum(),
            Constraint::RunOn { hosts: allowed, .. } => hosts
                .iter()
                .filter(|h| !allowed.iter().any(|a| a == *h))
                .count() as u32,
            Constraint::NotOn { hosts: denied, .. } => hosts
                .iter()
                .filter(|h| denied.iter().any(|d| d == *h))
                .count() as u32,
        };
        if n > 0 {
            out.insert(rule.name.clone(), n);
        }
    }
    out
}

/// `m` with the VM on `host`: added (new or starting) or moved (migrating).
fn with_vm_on(m: &ClusterModel, r: &VmRequest, host: &str, migrating: bool) -> ClusterModel {
    let mut after = m.clone();
    if migrating {
        after.move_vm(&r.vm, host).unwrap();
    } else {
        after.vms.push(VmModel {
            name: r.vm.clone(),
            host: host.into(),
            vcpus: r.vcpus,
            memory_mib: r.memory_mib,
            cpu_demand: 0.0,
            memory_demand_mib: 0,
        });
    }
    after
}

/// Must-rules broken further with the VM on `host`.
fn broken(m: &ClusterModel, r: &VmRequest, host: &str, migrating: bool) -> Vec<String> {
    let before = must(m);
    must(&with_vm_on(m, r, host, migrating))
        .into_iter()
        .filter(|(rule, n)| *n > before.get(rule).copied().unwrap_or(0))
        .map(|(rule, _)| rule)
        .collect()
}

/// The placement input of `host` as the placer sees it, maintenance lifted for a start.
fn input(p: &RulePlacer, host: &str, start: bool) -> HostInput {
    let mut h = p.hosts().iter().find(|h| h.name == host).cloned().unwrap();
    if start && h.eligible == Eligibility::Maintenance {
        h.eligible = Eligibility::Ok;
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn placement_only_on_a_host_that_fits_and_refusals_explain_every_host(
        (m, fit) in fitted_cluster(),
        ask in ask(),
        pick in 0usize..NAMED_VMS,
        vcpus in 1u32..9,
        gib in prop::sample::select(vec![1u64, 2, 8, 24]),
        new_needs in needs(),
    ) {
        let Ok(placer) = RulePlacer::new(&m, &fit) else {
            prop_assume!(false);
            unreachable!()
        };
        let hostname = |i: usize| format!("h{}", i % m.hosts.len());
        // Migrations move a running VM (with its size and needs); the others place a VM
        // that does not run (maybe named by rules).
        let migrating = matches!(ask, Ask::Migrate(_));
        let (r, needs) = if migrating {
            prop_assume!(!m.vms.is_empty());
            let v = &m.vms[pick % m.vms.len()];
            (VmRequest { vm: v.name.clone(), vcpus: v.vcpus, memory_mib: v.memory_mib }, fit.needs(&v.name).clone())
        } else {
            let name = if pick >= m.vms.len() { format!("v{pick}") } else { "fresh".to_string() };
            (VmRequest { vm: name, vcpus, memory_mib: gib * GIB }, new_needs)
        };
        let named = match &ask {
            Ask::Host(h) | Ask::Start(h) | Ask::Migrate(Some(h)) => Some(hostname(*h)),
            _ => None,
        };
        let target = match &ask {
            Ask::Any => Target::Any,
            Ask::Host(_) => Target::Host(named.as_deref().unwrap()),
            Ask::Start(_) => Target::Start(named.as_deref().unwrap()),
            Ask::Migrate(None) => Target::Migrate(None),
            Ask::Migrate(Some(_)) => Target::Migrate(named.as_deref()),
        };
        let start = matches!(ask, Ask::Start(_));
        let source = migrating.then(|| placer.host_of(&r.vm).unwrap().to_string());
        let answer = placer.decide(&r, &needs, target);

        // Same input, same answer, from this placer and from a new one.
        prop_assert_eq!(&answer, &placer.decide(&r, &needs, target));
        prop_assert_eq!(&answer, &place_under_rules(&m, &fit, &r, &needs, target));
        // The quiet call answers the same, "no host" without the explanation.
        match (&answer, placer.find(&r, &needs, target)) {
            (Err(FitError::NoHost(_)), Ok(None)) => {}
            (a, f) => prop_assert_eq!(a.clone().map(Some), f),
        }
        // Every VM of a host taken out and committed back (its index taken back): the same
        // answer.
        let mut again = placer.clone();
        let on = &m.hosts[pick % m.hosts.len()].name;
        for v in m.vms.iter().filter(|v| &v.host == on) {
            again.remove(&v.name).unwrap();
        }
        for v in m.vms.iter().filter(|v| &v.host == on) {
            let req = VmRequest { vm: v.name.clone(), vcpus: v.vcpus, memory_mib: v.memory_mib };
            again.commit(&req, fit.needs(&v.name), on).unwrap();
        }
        prop_assert_eq!(&answer, &again.decide(&r, &needs, target));

        // A reason given for a host is true of it.
        let genuine = |host: &str, reason: &Unfit| -> Result<(), TestCaseError> {
            match reason {
                Unfit::Source => prop_assert_eq!(Some(host), source.as_deref()),
                Unfit::MustRule { rules } => {
                    prop_assert_eq!(&rules.0, &broken(&m, &r, host, migrating), "on {}: {:?}", host, answer);
                }
                other => {
                    let h = input(&placer, host, start);
                    prop_assert_eq!(fit::check(&h, fit.caps(host), &r, &needs), Err(other.clone()));
                }
            }
            Ok(())
        };
        match &answer {
            Ok(Placement { host, .. }) => {
                if let Some(n) = &named {
                    prop_assert_eq!(host, n);
                }
                prop_assert_ne!(Some(host.as_str()), source.as_deref());
                // Capabilities, availability, capacity (reserve included).
                let h = input(&placer, host, start);
                prop_assert_eq!(fit::check(&h, fit.caps(host), &r, &needs), Ok(()), "{:?}", h);
                // No must-rule broken further.
                prop_assert!(broken(&m, &r, host, migrating).is_empty());
            }
            Err(FitError::NoHost(e)) => {
                prop_assert!(named.is_none());
                // Every host named once, each with a true reason.
                prop_assert_eq!(e.hosts(), m.hosts.len());
                for h in &m.hosts {
                    let n = e.groups.iter().map(|g| g.hosts.iter().filter(|x| **x == h.name).count()).sum::<usize>();
                    prop_assert_eq!(n, 1, "{} in {}", h.name, e);
                }
                for g in &e.groups {
                    match &g.reason {
                        // The capacity group gives the closest host's numbers; the others
                        // lack capacity too.
                        Unfit::Capacity(_) => {
                            genuine(&g.hosts[0], &g.reason)?;
                            for host in &g.hosts {
                                let h = input(&placer, host, start);
                                let c = fit::check(&h, fit.caps(host), &r, &needs);
                                prop_assert!(matches!(c, Err(Unfit::Capacity(_))), "{}: {:?}", host, c);
                            }
                        }
                        reason => {
                            for host in &g.hosts {
                                genuine(host, reason)?;
                            }
                        }
                    }
                }
                let start_of = format!("no host can take VM '{}'", r.vm);
                prop_assert!(e.to_string().starts_with(&start_of));
            }
            Err(FitError::HostUnfit { host, unfit, .. }) => {
                prop_assert_eq!(Some(host), named.as_ref());
                genuine(host, unfit)?;
            }
            Err(FitError::UnknownHost { .. }) => prop_assert!(false, "hosts are known"),
            Err(e @ (FitError::AlreadyPlaced { .. } | FitError::NotRunning { .. } | FitError::EmptyRequest { .. } | FitError::Model(_))) => {
                prop_assert!(false, "{}", e);
            }
        }
    }

    #[test]
    fn without_needs_and_rules_the_placer_agrees_with_plain_placement(
        (mut m, _) in fitted_cluster(),
        vcpus in 1u32..9,
        gib in prop::sample::select(vec![1u64, 2, 8, 24]),
    ) {
        m.rules.clear();
        prop_assume!(m.validate().is_ok());
        let placer = RulePlacer::new(&m, &FitTable::default()).unwrap();
        let r = VmRequest { vm: "fresh".into(), vcpus, memory_mib: gib * GIB };
        let ours = placer.decide(&r, &VmNeeds::default(), Target::Any).map(|p| p.host).ok();
        let plain = vinfra_placement::place(placer.hosts(), &r, None).map(|p| p.host).ok();
        prop_assert_eq!(ours, plain);
        // And the one check agrees with plain placement's hosts.
        for h in placer.hosts() {
            let fits = fit::check(h, &BASIC_HOST, &r, &VmNeeds::default()).is_ok();
            prop_assert_eq!(fits, vinfra_placement::place(placer.hosts(), &r, Some(&h.name)).is_ok());
        }
    }
}
