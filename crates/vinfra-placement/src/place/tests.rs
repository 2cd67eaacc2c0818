use proptest::prelude::*;

use super::*;
use crate::host::{Eligibility, HostInput, Placement, VmRequest};
use vinfra_types::{AllocationRatios, HostCapacity};

fn host(name: &str, cores: u32, memory_mib: u64, cpu: f64, memory: f64) -> HostInput {
    HostInput {
        name: name.into(),
        capacity: HostCapacity { cores, memory_mib },
        ratios: AllocationRatios { cpu, memory },
        allocated_vcpus: 0,
        allocated_memory_mib: 0,
        eligible: Eligibility::Ok,
    }
}

fn vm(name: &str, vcpus: u32, memory_mib: u64) -> VmRequest {
    VmRequest {
        vm: name.into(),
        vcpus,
        memory_mib,
    }
}

/// Places on `hosts` and records the allocation, like the console does.
fn commit(
    hosts: &mut [HostInput],
    req: &VmRequest,
    pinned: Option<&str>,
) -> Result<Placement, PlacementError> {
    let p = place(hosts, req, pinned)?;
    if let Some(h) = hosts.iter_mut().find(|h| h.name == p.host) {
        h.allocated_vcpus = p.allocated_vcpus;
        h.allocated_memory_mib = p.allocated_memory_mib;
    }
    Ok(p)
}

#[test]
fn memory_ratio_2_5_takes_four_10_gib_vms_and_refuses_the_fifth() {
    let mut hosts = vec![host("h1", 8, 16384, 4.0, 2.5)];
    let mut cluster = Cluster::new(hosts.clone()).unwrap();
    for i in 1..=4 {
        let req = vm(&format!("vm{i}"), 2, 10240);
        let p = commit(&mut hosts, &req, None).unwrap();
        assert_eq!(p.host, "h1");
        assert_eq!(p.allocated_memory_mib, 10240 * i);
        assert_eq!(p.allocatable_memory_mib, 40960);
        assert_eq!(cluster.place_and_commit(&req, None).unwrap(), p);
    }
    let fifth = vm("vm5", 2, 10240);
    let pinned = commit(&mut hosts, &fifth, Some("h1")).unwrap_err();
    assert_eq!(
        pinned.to_string(),
        "host h1 cannot take VM 'vm5' (2 vCPU, 10240 MiB): memory short by 10240 MiB \
         (allocated 40960 of 40960 MiB allocatable = 16384 MiB physical × ratio 2.5)"
    );
    let any = commit(&mut hosts, &fifth, None).unwrap_err();
    assert_eq!(
        any.to_string(),
        "no host can take VM 'vm5' (2 vCPU, 10240 MiB): none of 1 eligible hosts fits; closest is \
         host h1: memory short by 10240 MiB (allocated 40960 of 40960 MiB allocatable = 16384 MiB \
         physical × ratio 2.5)"
    );
    assert_eq!(cluster.place_and_commit(&fifth, None).unwrap_err(), any);
    assert_eq!(
        cluster.place_and_commit(&fifth, Some("h1")).unwrap_err(),
        pinned
    );
}

#[test]
fn memory_ratio_2_4_refuses_the_fourth() {
    let mut hosts = vec![host("h1", 8, 16384, 4.0, 2.4)];
    for i in 1..=3 {
        commit(&mut hosts, &vm(&format!("vm{i}"), 2, 10240), None).unwrap();
    }
    let err = commit(&mut hosts, &vm("vm4", 2, 10240), Some("h1")).unwrap_err();
    // 16384 × 2.4 = 39321.6, floored to 39321; 30720 + 10240 = 40960.
    assert_eq!(
        err.to_string(),
        "host h1 cannot take VM 'vm4' (2 vCPU, 10240 MiB): memory short by 1639 MiB \
         (allocated 30720 of 39321 MiB allocatable = 16384 MiB physical × ratio 2.4)"
    );
    assert!(matches!(err, PlacementError::InsufficientCapacity { ref host, .. } if host == "h1"));
}

#[test]
fn cpu_and_memory_shortfalls_are_both_named() {
    let mut h = host("h2", 2, 4096, 1.0, 1.0);
    h.allocated_vcpus = 2;
    h.allocated_memory_mib = 4000;
    let err = place(&[h], &vm("big", 1, 200), Some("h2")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "host h2 cannot take VM 'big' (1 vCPU, 200 MiB): memory short by 104 MiB (allocated 4000 \
         of 4096 MiB allocatable = 4096 MiB physical × ratio 1); vCPU short by 1 (allocated 2 of 2 \
         vCPU allocatable = 2 cores × ratio 1)"
    );
}

#[test]
fn spreads_by_free_memory_then_cpu_then_name() {
    let mut hosts = vec![
        host("c", 4, 8192, 1.0, 1.0),
        host("a", 4, 8192, 1.0, 1.0),
        host("b", 8, 8192, 1.0, 1.0),
        host("d", 4, 4096, 1.0, 1.0),
    ];
    // Same memory: b has more vCPUs.
    assert_eq!(
        commit(&mut hosts, &vm("1", 1, 1024), None).unwrap().host,
        "b"
    );
    // a and c tie on everything: name decides.
    assert_eq!(
        commit(&mut hosts, &vm("2", 1, 1024), None).unwrap().host,
        "a"
    );
    assert_eq!(
        commit(&mut hosts, &vm("3", 1, 1024), None).unwrap().host,
        "c"
    );
    // Now a, b, c have 7168 free; b still has the most vCPUs.
    assert_eq!(
        commit(&mut hosts, &vm("4", 1, 1024), None).unwrap().host,
        "b"
    );
}

#[test]
fn skips_hosts_that_lack_cpu_or_are_ineligible() {
    let mut hosts = vec![
        host("roomy", 1, 65536, 1.0, 1.0),
        host("off", 64, 65536, 1.0, 1.0),
        host("maint", 64, 65536, 1.0, 1.0),
        host("small", 8, 8192, 1.0, 1.0),
    ];
    hosts[1].eligible = Eligibility::Disconnected;
    hosts[2].eligible = Eligibility::Maintenance;
    let mut cluster = Cluster::new(hosts.clone()).unwrap();
    let req = vm("x", 4, 1024);
    assert_eq!(place(&hosts, &req, None).unwrap().host, "small");
    assert_eq!(cluster.place_and_commit(&req, None).unwrap().host, "small");

    assert_eq!(
        place(&hosts, &req, Some("off")).unwrap_err().to_string(),
        "host off cannot take VMs: its agent is disconnected"
    );
    assert_eq!(
        cluster
            .place_and_commit(&req, Some("maint"))
            .unwrap_err()
            .to_string(),
        "host maint cannot take VMs: it is in maintenance"
    );
    assert_eq!(
        place(&hosts, &req, Some("ghost")).unwrap_err(),
        PlacementError::UnknownHost {
            host: "ghost".into()
        }
    );

    cluster.set_eligibility("maint", Eligibility::Ok).unwrap();
    assert_eq!(cluster.place_and_commit(&req, None).unwrap().host, "maint");
}

#[test]
fn no_eligible_host() {
    let mut h = host("h", 4, 4096, 1.0, 1.0);
    h.eligible = Eligibility::Maintenance;
    assert_eq!(
        place(&[h.clone()], &vm("x", 1, 1), None).unwrap_err(),
        PlacementError::NoEligibleHost
    );
    assert_eq!(
        place(&[], &vm("x", 1, 1), None).unwrap_err(),
        PlacementError::NoEligibleHost
    );
    let mut c = Cluster::new(vec![h]).unwrap();
    assert_eq!(
        c.place_and_commit(&vm("x", 1, 1), None).unwrap_err(),
        PlacementError::NoEligibleHost
    );
}

#[test]
fn bad_input_is_refused() {
    let hosts = vec![host("h", 4, 4096, 1.0, 1.0)];
    assert!(matches!(
        place(&hosts, &vm("x", 0, 1), None),
        Err(PlacementError::EmptyRequest { .. })
    ));
    assert!(matches!(
        place(&hosts, &vm("x", 1, 0), None),
        Err(PlacementError::EmptyRequest { .. })
    ));
    let dup = Cluster::new(vec![host("h", 1, 1, 1.0, 1.0), host("h", 2, 2, 1.0, 1.0)]);
    assert_eq!(
        dup.unwrap_err(),
        PlacementError::DuplicateHost { host: "h".into() }
    );

    let mut c = Cluster::new(hosts).unwrap();
    c.place_and_commit(&vm("x", 2, 1024), None).unwrap();
    assert!(matches!(
        c.release("h", 3, 0),
        Err(PlacementError::ReleaseTooLarge { .. })
    ));
    assert!(matches!(
        c.release("nope", 1, 1),
        Err(PlacementError::UnknownHost { .. })
    ));
    c.release("h", 2, 1024).unwrap();
    let h = c.host("h").unwrap();
    assert_eq!((h.allocated_vcpus, h.allocated_memory_mib), (0, 0));

    // Nonsense ratios give no capacity rather than a panic.
    let weird = host("w", 4, 4096, f64::NAN, -1.0);
    assert_eq!(
        (weird.allocatable_vcpus(), weird.allocatable_memory_mib()),
        (0, 0)
    );
    assert!(matches!(
        place(&[weird], &vm("x", 1, 1), None),
        Err(PlacementError::NoCapacity { .. })
    ));
    // Over-allocated hosts (ratio lowered later) have no room and do not overflow.
    let mut over = host("o", 4, 4096, 1.0, 1.0);
    over.allocated_vcpus = u32::MAX;
    over.allocated_memory_mib = u64::MAX;
    assert!(place(&[over], &vm("x", u32::MAX, u64::MAX), Some("o")).is_err());
}

#[derive(Debug, Clone)]
enum Action {
    Place {
        vcpus: u32,
        memory_mib: u64,
        pinned: Option<usize>,
    },
    Release {
        vm: usize,
    },
    Toggle {
        host: usize,
        eligible: Eligibility,
    },
}

fn eligibility() -> impl Strategy<Value = Eligibility> {
    prop_oneof![
        6 => Just(Eligibility::Ok),
        1 => Just(Eligibility::Disconnected),
        1 => Just(Eligibility::Maintenance)
    ]
}

fn hosts_strategy() -> impl Strategy<Value = Vec<HostInput>> {
    prop::collection::vec(
        (
            1u32..16,
            prop::sample::select(vec![1024u64, 2048, 4096, 16384]),
            prop::sample::select(vec![1.0, 1.5, 2.5, 4.0]),
            prop::sample::select(vec![1.0, 1.2, 2.4, 2.5]),
            0u32..8,
            0u64..8192,
            eligibility(),
        ),
        0..8,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (cores, mem, cpu_r, mem_r, av, am, el))| HostInput {
                // Names not in index order, to check the name tie-break.
                name: format!("h{}", (i * 7) % 11),
                capacity: HostCapacity {
                    cores,
                    memory_mib: mem,
                },
                ratios: AllocationRatios {
                    cpu: cpu_r,
                    memory: mem_r,
                },
                allocated_vcpus: av,
                allocated_memory_mib: am,
                eligible: el,
            })
            .collect()
    })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (1u32..8, prop::sample::select(vec![256u64, 512, 1024, 2048, 4096]), prop::option::weighted(0.2, 0usize..12))
            .prop_map(|(vcpus, memory_mib, pinned)| Action::Place { vcpus, memory_mib, pinned }),
        2 => (0usize..64).prop_map(|vm| Action::Release { vm }),
        1 => (0usize..12, eligibility()).prop_map(|(host, eligible)| Action::Toggle { host, eligible }),
    ]
}

proptest! {
    #[test]
    fn cluster_agrees_with_linear_scan(hosts in hosts_strategy(), actions in prop::collection::vec(action(), 1..60)) {
        let mut plain = hosts.clone();
        let mut cluster = Cluster::new(hosts).unwrap();
        let mut placed: Vec<(String, u32, u64)> = Vec::new();
        for (n, a) in actions.into_iter().enumerate() {
            match a {
                Action::Place { vcpus, memory_mib, pinned } => {
                    let req = vm(&format!("vm{n}"), vcpus, memory_mib);
                    let pin = pinned.map(|i| format!("h{i}"));
                    let before = plain.clone();
                    let a = commit(&mut plain, &req, pin.as_deref());
                    let b = cluster.place_and_commit(&req, pin.as_deref());
                    prop_assert_eq!(&a, &b);
                    match a {
                        Ok(p) => {
                            prop_assert!(p.allocated_vcpus <= p.allocatable_vcpus);
                            prop_assert!(p.allocated_memory_mib <= p.allocatable_memory_mib);
                            let h = before.iter().find(|h| h.name == p.host).unwrap();
                            prop_assert_eq!(h.eligible, Eligibility::Ok);
                            if pin.is_none() {
                                // Nothing that fits is strictly better.
                                for o in before.iter().filter(|o| fit::check(o, &BASIC_HOST, &req, &NO_NEEDS).is_ok()) {
                                    prop_assert!(better((o, &BASIC_HOST), (h, &BASIC_HOST)) != Ordering::Greater, "{} beats {}", o.name, h.name);
                                }
                            }
                            placed.push((p.host, vcpus, memory_mib));
                        }
                        Err(_) if pin.is_none() => {
                            prop_assert!(!before.iter().any(|h| fit::check(h, &BASIC_HOST, &req, &NO_NEEDS).is_ok()));
                        }
                        Err(_) => {}
                    }
                }
                Action::Release { vm } => {
                    if vm < placed.len() {
                        let (host, c, m) = placed.swap_remove(vm);
                        cluster.release(&host, c, m).unwrap();
                        let h = plain.iter_mut().find(|h| h.name == host).unwrap();
                        h.allocated_vcpus -= c;
                        h.allocated_memory_mib -= m;
                    }
                }
                Action::Toggle { host, eligible } => {
                    let name = format!("h{host}");
                    let r = cluster.set_eligibility(&name, eligible);
                    match plain.iter_mut().find(|h| h.name == name) {
                        Some(h) => { prop_assert!(r.is_ok()); h.eligible = eligible; }
                        None => prop_assert!(r.is_err()),
                    }
                }
            }
        }
        let mut sorted = plain.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        prop_assert_eq!(cluster.hosts(), &sorted[..]);
    }
}
