//! Tests of the host fit check.

use super::*;

fn host(name: &str, eligible: Eligibility) -> HostInput {
    HostInput {
        name: name.into(),
        capacity: HostCapacity {
            cores: 4,
            memory_mib: 8192,
        },
        ratios: AllocationRatios {
            cpu: 2.0,
            memory: 1.0,
        },
        allocated_vcpus: 6,
        allocated_memory_mib: 4096,
        eligible,
    }
}

fn vm(vcpus: u32, memory_mib: u64) -> VmRequest {
    VmRequest {
        vm: "web".into(),
        vcpus,
        memory_mib,
    }
}

fn needs() -> VmNeeds {
    VmNeeds {
        vlan_networks: vec!["v10".into()],
        overlay: Some(OverlayMtu {
            network: "ov".into(),
            mtu: 1450,
        }),
        cpu_model: None,
        host_cpu: None,
        kvm: None,
        machine_type: None,
        padded_ram: None,
    }
}

#[test]
fn tests_run_in_order_and_the_first_failure_is_the_reason() {
    let caps = HostCaps {
        vlan_trunk: true,
        underlay_mtu: 1500,
        ..HostCaps::default()
    };
    let h = host("h1", Eligibility::Ok);
    assert_eq!(check(&h, &caps, &vm(2, 4096), &needs()), Ok(()));
    // Capabilities before availability and capacity.
    let no_trunk = HostCaps::default();
    let down = host("h1", Eligibility::Disconnected);
    assert_eq!(
        check(&down, &no_trunk, &vm(64, 1 << 20), &needs())
            .unwrap_err()
            .to_string(),
        "it has no VLAN trunk for VLAN network 'v10' (its agent runs without --trunk-interface)"
    );
    let small = HostCaps {
        underlay_mtu: 1400,
        ..caps.clone()
    };
    assert_eq!(
        check(&h, &small, &vm(2, 4096), &needs()).unwrap_err(),
        Unfit::UnderlayMtu {
            have: 1400,
            need: 1500,
            network: "ov".into(),
            network_mtu: 1450
        }
    );
    assert_eq!(
        check(&down, &caps, &vm(2, 4096), &needs()),
        Err(Unfit::Disconnected)
    );
    let maint = host("h1", Eligibility::Maintenance);
    assert_eq!(
        check(&maint, &caps, &vm(2, 4096), &needs()),
        Err(Unfit::Maintenance)
    );
    // A start may use a host in maintenance; rules come before capacity.
    let view = HostView::of(&maint, &caps);
    assert_eq!(view.check(2, 4096, &needs(), true, Vec::new), Ok(()));
    assert_eq!(
        view.check(64, 4096, &needs(), true, || vec!["apart".into()])
            .unwrap_err()
            .to_string(),
        "the VM there would break must-rule 'apart'"
    );
    assert_eq!(
        check(&h, &caps, &vm(3, 8192), &needs())
            .unwrap_err()
            .to_string(),
        "memory short by 4096 MiB (allocated 4096 of 8192 MiB allocatable = 8192 MiB \
         physical × ratio 1); vCPU short by 1 (allocated 6 of 8 vCPU allocatable = 4 cores \
         × ratio 2)"
    );
}

#[test]
fn the_reserve_is_held_back_and_shown() {
    let caps = HostCaps {
        reserve: Reserve {
            vcpus: 1,
            memory_mib: 2048,
        },
        ..HostCaps::default()
    };
    let h = host("h1", Eligibility::Ok);
    assert_eq!(HostView::of(&h, &caps).free(), (2048, 1));
    assert_eq!(check(&h, &caps, &vm(1, 2048), &NO_NEEDS), Ok(()));
    assert_eq!(
        check(&h, &caps, &vm(2, 4096), &NO_NEEDS)
            .unwrap_err()
            .to_string(),
        "memory short by 2048 MiB (allocated 4096 of 8192 MiB allocatable = 8192 MiB \
         physical × ratio 1, 2048 MiB of it reserved); vCPU short by 1 (allocated 6 of 8 \
         vCPU allocatable = 4 cores × ratio 2, 1 vCPU of it reserved)"
    );
}

#[test]
fn cpu_models_are_matched_by_name() {
    let needs = VmNeeds {
        cpu_model: Some("x86-64-v3".into()),
        ..VmNeeds::default()
    };
    let h = host("h1", Eligibility::Ok);
    assert_eq!(
        check(&h, &HostCaps::default(), &vm(1, 1), &needs),
        Err(Unfit::CpuModel {
            model: "x86-64-v3".into()
        })
    );
    let caps = HostCaps {
        cpu_models: vec!["x86-64-v2".into(), "x86-64-v3".into()],
        ..HostCaps::default()
    };
    assert!(needs.met_by(&caps));
}

#[test]
fn host_cpus_and_machine_types_are_matched_by_name() {
    let h = host("h1", Eligibility::Ok);
    let needs = VmNeeds {
        host_cpu: Some("EPYC".into()),
        machine_type: Some("pc-q35-7.2".into()),
        ..VmNeeds::default()
    };
    let mut caps = HostCaps {
        host_cpu: Some("Xeon".into()),
        machine_types: vec!["pc-q35-7.2".into()],
        ..HostCaps::default()
    };
    let unfit = check(&h, &caps, &vm(1, 1), &needs).unwrap_err();
    assert_eq!(
        unfit,
        Unfit::HostCpu {
            need: "EPYC".into(),
            have: Some("Xeon".into())
        }
    );
    assert!(unfit.to_string().contains("its CPU is 'Xeon'"), "{unfit}");
    caps.host_cpu = None;
    let unfit = check(&h, &caps, &vm(1, 1), &needs).unwrap_err();
    assert!(unfit.to_string().contains("did not say its CPU"), "{unfit}");
    // KVM needed, TCG offered (or nothing said).
    let kvm = VmNeeds {
        kvm: Some(true),
        ..VmNeeds::default()
    };
    caps.kvm = Some(false);
    assert_eq!(
        check(&h, &caps, &vm(1, 1), &kvm),
        Err(Unfit::Accel {
            kvm: true,
            have: Some(false)
        })
    );
    caps.kvm = None;
    assert!(!kvm.met_by(&caps));
    caps.kvm = Some(true);
    assert!(kvm.met_by(&caps));
    // A live move under TCG between a padding QEMU and one that does not pad (or one unknown).
    let padded = VmNeeds {
        kvm: Some(false),
        padded_ram: Some(true),
        ..VmNeeds::default()
    };
    let mut tcg = HostCaps {
        kvm: Some(false),
        padded_ram: Some(false),
        ..HostCaps::default()
    };
    let unfit = check(&h, &tcg, &vm(1, 1), &padded).unwrap_err();
    assert_eq!(unfit, Unfit::PaddedRam { need: true });
    assert!(unfit.to_string().contains("VM's is before 9.0"), "{unfit}");
    tcg.padded_ram = None;
    assert!(!padded.met_by(&tcg));
    tcg.padded_ram = Some(true);
    assert!(padded.met_by(&tcg));
    // A VM that needs nothing of it (KVM, a cold start) fits either.
    tcg.padded_ram = Some(false);
    assert!(VmNeeds::default().met_by(&tcg));
    caps.host_cpu = Some("EPYC".into());
    assert!(needs.met_by(&caps));
    caps.machine_types = vec!["pc-q35-7.1".into()];
    assert_eq!(
        check(&h, &caps, &vm(1, 1), &needs),
        Err(Unfit::MachineType {
            machine: "pc-q35-7.2".into()
        })
    );
}

#[test]
fn the_explanation_groups_hosts_by_reason_in_one_line() {
    let short = |mem: u64| {
        HostView::of(&host("x", Eligibility::Ok), &BASIC_HOST)
            .shortfall(1, mem)
            .map(|s| Unfit::Capacity(Box::new(s)))
            .unwrap()
    };
    let trunk = Unfit::NoTrunk {
        networks: Quoted::of(["v10"]),
    };
    let reasons = vec![
        ("h1".to_string(), short(8192)),
        ("h2".to_string(), Unfit::Disconnected),
        ("h3".to_string(), trunk.clone()),
        ("h4".to_string(), short(5000)),
        ("h5".to_string(), trunk.clone()),
        ("h6".to_string(), Unfit::Disconnected),
    ];
    let e = NoHost::new(&vm(1, 5000), reasons);
    assert_eq!(e.hosts(), 6);
    assert_eq!(e.reason_for("h3"), Some(&trunk));
    assert_eq!(
        e.to_string(),
        "no host can take VM 'web' (1 vCPU, 5000 MiB): h3, h5: it has no VLAN trunk for VLAN \
         network 'v10' (its agent runs without --trunk-interface); h2, h6: its agent is \
         disconnected; h4, h1: short of capacity (closest, h4: memory short by 904 MiB \
         (allocated 4096 of 8192 MiB allocatable = 8192 MiB physical × ratio 1))"
    );
    let many = (0..7).map(|i| (format!("m{i}"), Unfit::Maintenance));
    assert_eq!(
        NoHost::new(&vm(1, 1), many).to_string(),
        "no host can take VM 'web' (1 vCPU, 1 MiB): m0, m1, m2, m3 and 3 more: it is in \
         maintenance"
    );
    assert_eq!(
        NoHost::new(&vm(1, 1), Vec::new()).to_string(),
        "no host can take VM 'web' (1 vCPU, 1 MiB): there is no host"
    );
}

proptest::proptest! {
    /// The quick answer of the hot loops is the check's answer.
    #[test]
    fn fits_is_the_check_without_its_reason(
        cores in 1u32..16,
        alloc_cpu in 0u32..40,
        alloc_mem in 0u64..20_000,
        eligible in proptest::sample::select(vec![Eligibility::Ok, Eligibility::Disconnected, Eligibility::Maintenance]),
        trunk in proptest::bool::ANY,
        mtu in proptest::sample::select(vec![1400u32, 1500, 9000]),
        reserve in 0u64..4096,
        vlan in proptest::bool::ANY,
        overlay in proptest::sample::select(vec![None, Some(1450u32), Some(8950)]),
        vcpus in 1u32..8,
        memory in 1u64..8192,
        maintenance_ok in proptest::bool::ANY,
        forbidden in proptest::bool::ANY,
    ) {
        let mut h = host("h", eligible);
        h.capacity.cores = cores;
        h.allocated_vcpus = alloc_cpu;
        h.allocated_memory_mib = alloc_mem;
        let caps = HostCaps {
            vlan_trunk: trunk,
            underlay_mtu: mtu,
            reserve: Reserve { vcpus: 0, memory_mib: reserve },
            ..HostCaps::default()
        };
        let needs = VmNeeds {
            vlan_networks: if vlan { vec!["v".into()] } else { Vec::new() },
            overlay: overlay.map(|mtu| OverlayMtu { network: "o".into(), mtu }),
            cpu_model: None,
            host_cpu: None,
            kvm: None,
            machine_type: None,
            padded_ram: None,
        };
        let view = HostView::of(&h, &caps);
        let rules = || if forbidden { vec!["r".to_string()] } else { Vec::new() };
        proptest::prop_assert_eq!(
            view.fits(vcpus, memory, &needs, maintenance_ok, || forbidden),
            view.check(vcpus, memory, &needs, maintenance_ok, rules).is_ok()
        );
    }
}
