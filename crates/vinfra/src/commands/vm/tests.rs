//! Tests of `vinfra vm`: the requests its arguments become.

use super::*;

fn args(f: impl FnOnce(&mut VmCreateArgs)) -> VmCreateArgs {
    let mut a = VmCreateArgs {
        name: "web-1".into(),
        vcpus: 1,
        memory: 128,
        host: None,
        kernel: Some("vinfra-guest-vmlinuz".into()),
        initrd: None,
        cmdline: None,
        boot_disk: false,
        disk: vec![],
        nic: vec![],
        count: None,
        no_start: false,
        no_wait: false,
        ha: None,
        ha_priority: None,
        ha_start_after: None,
    };
    f(&mut a);
    a
}

#[test]
fn create_requests() {
    let r = create_request(&args(|_| {})).unwrap();
    assert!(r.start);
    assert!(matches!(r.spec.boot, BootSource::Kernel { .. }));
    assert!(matches!(
        create_request(&args(|a| a.kernel = None)),
        Err(RestCommandError::NoBoot)
    ));
    assert!(create_request(&args(|a| a.name = "Bad_Name".into()))
        .unwrap_err()
        .is_usage());
    assert!(matches!(
        create_request(&args(|a| a.kernel = Some("../etc/passwd".into()))),
        Err(RestCommandError::Spec(_))
    ));
    let disk = DiskSpec {
        name: "root".into(),
        image: None,
        size_gib: Some(1),
    };
    let r = create_request(&args(|a| {
        a.kernel = None;
        a.disk = vec![disk.clone()];
    }))
    .unwrap();
    assert_eq!(r.spec.boot, BootSource::Disk);
}

#[test]
fn create_requests_with_a_count() {
    let r = create_request(&args(|a| a.count = Some(3))).unwrap();
    assert_eq!(r.count, Some(3));
    assert_eq!(r.names(), ["web-1-1", "web-1-2", "web-1-3"]);
    assert_eq!(create_request(&args(|_| {})).unwrap().names(), ["web-1"]);
    // The longest name it gives must be a name.
    let long = |a: &mut VmCreateArgs| {
        a.name = "x".repeat(60);
        a.count = Some(100);
    };
    assert!(matches!(
        create_request(&args(long)),
        Err(RestCommandError::Name { .. })
    ));
    assert!(create_request(&args(|a| {
        a.name = "x".repeat(60);
        a.count = Some(99);
    }))
    .is_ok());
    // A fixed address or MAC would be shared: refused; a pool address is fine.
    for nic in ["lan,ip=10.0.0.5", "lan,mac=02:00:00:00:00:01"] {
        let nic = parse::nic(nic).unwrap();
        let e = create_request(&args(|a| {
            a.count = Some(2);
            a.nic = vec![parse::nic("lan").unwrap(), nic];
        }))
        .unwrap_err();
        assert!(matches!(e, RestCommandError::FixedNicWithCount(1)), "{e}");
        assert!(e.is_usage());
    }
    assert!(create_request(&args(|a| {
        a.count = Some(2);
        a.nic = vec![parse::nic("lan").unwrap()];
    }))
    .is_ok());
}

#[test]
fn create_requests_carry_the_ha_policy() {
    let r = create_request(&args(|_| {})).unwrap();
    assert_eq!(r.spec.ha, VmHa::default());
    let r = create_request(&args(|a| {
        a.ha = Some(true);
        a.ha_priority = Some(PriorityArg::Highest);
        a.ha_start_after = Some("db".into());
    }))
    .unwrap();
    assert_eq!(
        r.spec.ha,
        VmHa {
            enabled: true,
            priority: HaPriority::Highest,
            start_after: Some("db".into())
        }
    );
    let e = create_request(&args(|a| a.ha_start_after = Some("Bad_Name".into())));
    assert!(e.unwrap_err().is_usage());
}

#[test]
fn set_requests_name_only_what_changes() {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Vm {
        #[command(subcommand)]
        cmd: VmCommand,
    }
    let set = |argv: &[&str]| {
        let mut all = vec!["vm", "set"];
        all.extend_from_slice(argv);
        match Vm::try_parse_from(all).map(|v| v.cmd) {
            Ok(VmCommand::Set(a)) => set_request(&a),
            other => panic!("{other:?}"),
        }
    };
    let r = set(&["web", "--ha-priority", "low"]).unwrap();
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"ha":{"priority":"low"}}"#
    );
    let r = set(&["web", "--ha", "on", "--ha-start-after", "none"]).unwrap();
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"ha":{"enabled":true,"start_after":null}}"#
    );
    let r = set(&["web", "--ha-start-after", "db"]).unwrap();
    assert_eq!(r.ha.unwrap().start_after, Some(Some("db".to_string())));
    assert!(matches!(
        set(&["web"]),
        Err(RestCommandError::NothingToChange(_))
    ));
    assert!(set(&["Bad_Name", "--ha", "on"]).unwrap_err().is_usage());
    for bad in [
        &["web", "--ha", "maybe"][..],
        &["web", "--ha-priority", "urgent"],
        &["web", "--ha-start-after", "Bad_Name"],
    ] {
        let mut all = vec!["vm", "set"];
        all.extend_from_slice(bad);
        assert!(Vm::try_parse_from(all).is_err(), "{bad:?}");
    }
}

#[test]
fn nic_set_requests_name_only_what_changes() {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Vm {
        #[command(subcommand)]
        cmd: VmCommand,
    }
    let set = |argv: &[&str]| {
        let mut all = vec!["vm", "nic", "set"];
        all.extend_from_slice(argv);
        match Vm::try_parse_from(all).map(|v| v.cmd) {
            Ok(VmCommand::Nic(VmNicCommand::Set(a))) => {
                nic_set_request(&a, None).map(|r| (a.index, r))
            }
            other => panic!("{other:?}"),
        }
    };
    let (index, r) = set(&["web", "1", "--security-groups", "a,b"]).unwrap();
    assert_eq!(index, 1);
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"security_groups":["a","b"]}"#
    );
    let (_, r) = set(&[
        "web",
        "0",
        "--security-groups",
        "none",
        "--port-security",
        "off",
        "--allow",
        "none",
    ])
    .unwrap();
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"security_groups":[],"port_security":false,"allowed_addresses":[]}"#
    );
    let (_, r) = set(&["web", "0", "--allow", "10.0.0.9+10.0.1.0/29"]).unwrap();
    assert_eq!(r.allowed_addresses.unwrap().len(), 2);
    assert!(matches!(
        set(&["web", "0"]),
        Err(RestCommandError::NothingToChange(_))
    ));
    for bad in [
        &["web", "x", "--port-security", "on"][..],
        &["web", "0", "--security-groups", "Bad_Name"],
        &["web", "0", "--allow", "10.0.0.9/8"],
        &["web", "0", "--port-security", "maybe"],
    ] {
        let mut all = vec!["vm", "nic", "set"];
        all.extend_from_slice(bad);
        assert!(Vm::try_parse_from(all).is_err(), "{bad:?}");
    }
}

#[test]
fn errors_read_as_one_line_naming_their_cause() {
    let e = create_request(&args(|a| a.name = "Bad_Name".into())).unwrap_err();
    let line = vinfra_types::error::chain(&e);
    assert!(line.starts_with("bad VM name: "), "{line}");
    assert_eq!(line.matches("Bad_Name").count(), 1, "{line}");
    let e = RestCommandError::Migration {
        vm: "a".into(),
        cancelled: true,
        reason: "cancelled by the user".into(),
    };
    assert_eq!(
        e.to_string(),
        "migration of a was cancelled: cancelled by the user"
    );
    assert!(!e.is_usage());
}

#[test]
fn nic_set_requests_change_the_qos_the_nic_has() {
    use clap::Parser;
    use vinfra_types::qos::{NicPriority, NicQos, NicRate};
    #[derive(Debug, Parser)]
    struct Vm {
        #[command(subcommand)]
        cmd: VmCommand,
    }
    let current = NicSpec {
        network: "n".into(),
        qos: Some(NicQos {
            egress: Some(NicRate::new(50_000_000)),
            dscp: Some(10),
            ..NicQos::default()
        }),
        ..NicSpec::default()
    };
    let set = |argv: &[&str]| {
        let mut all = vec!["vm", "nic", "set", "web", "0"];
        all.extend_from_slice(argv);
        match Vm::try_parse_from(all).map(|v| v.cmd) {
            Ok(VmCommand::Nic(VmNicCommand::Set(a))) => nic_set_request(&a, Some(&current)),
            other => panic!("{other:?}"),
        }
    };
    let r = set(&["--rate", "100M", "--burst", "1M", "--priority", "high"]).unwrap();
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"qos":{"egress":{"bits_per_sec":100000000,"burst_bytes":1048576},"ingress":{"bits_per_sec":100000000,"burst_bytes":1048576},"priority":"high","dscp":10}}"#
    );
    let r = set(&["--ingress-rate", "8M", "--dscp", "trust", "--weight", "50"]).unwrap();
    let q = r.qos.unwrap().unwrap();
    assert_eq!(q.egress, Some(NicRate::new(50_000_000)), "kept");
    assert_eq!(q.ingress, Some(NicRate::new(8_000_000)));
    assert_eq!(
        (q.priority, q.weight, q.dscp),
        (NicPriority::Normal, Some(50), None)
    );
    let r = set(&["--no-qos"]).unwrap();
    assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"qos":null}"#);
    let e = set(&["--egress-rate", "none", "--burst", "1M"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "nic 0: qos: a burst needs a rate (rate, egress-rate or ingress-rate)"
    );
    assert!(e.is_usage());
    for bad in [
        &["--no-qos", "--rate", "1M"][..],
        &["--rate", "1"],
        &["--rate", "10Mbps"],
        &["--burst", "10"],
        &["--priority", "urgent"],
        &["--weight", "0"],
        &["--dscp", "64"],
    ] {
        let mut all = vec!["vm", "nic", "set", "web", "0"];
        all.extend_from_slice(bad);
        assert!(Vm::try_parse_from(all).is_err(), "{bad:?}");
    }
}

#[test]
fn a_migration_cancel_waits_unless_told_not_to() {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Vm {
        #[command(subcommand)]
        cmd: VmCommand,
    }
    let parse = |argv: &[&str]| {
        let mut all = vec!["vm", "migrate"];
        all.extend_from_slice(argv);
        Vm::try_parse_from(all).map(|v| v.cmd)
    };
    for (argv, waits) in [
        (&["web", "--cancel"][..], true),
        (&["web", "--cancel", "--no-wait"], false),
    ] {
        match parse(argv) {
            Ok(VmCommand::Migrate {
                cancel: true,
                no_wait,
                to: None,
                ..
            }) => assert_eq!(no_wait, !waits, "{argv:?}"),
            other => panic!("{argv:?}: {other:?}"),
        }
    }
    assert!(parse(&["web", "--cancel", "--to", "h2"]).is_err());
    let e = RestCommandError::CancelTooLate {
        vm: "web".into(),
        host: "h2".into(),
    };
    assert_eq!(
        e.to_string(),
        "the cancel came too late: migration of web completed, it runs on h2"
    );
    assert!(!e.is_usage());
}
