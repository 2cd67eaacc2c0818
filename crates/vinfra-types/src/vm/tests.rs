use super::*;

fn spec() -> VmSpec {
    VmSpec {
        name: "web-1".into(),
        vcpus: 1,
        memory_mib: 128,
        boot: BootSource::Kernel {
            kernel: "vmlinuz".into(),
            initrd: Some("initrd.img".into()),
            cmdline: "console=ttyS0".into(),
        },
        disks: vec![DiskSpec {
            name: "root".into(),
            image: None,
            size_gib: Some(1),
        }],
        nics: vec![],
        ha: Default::default(),
    }
}

#[test]
fn valid_spec() {
    spec().validate().unwrap();
}

#[test]
fn invalid_specs() {
    type Mutation = Box<dyn Fn(&mut VmSpec)>;
    let cases: Vec<Mutation> = vec![
        Box::new(|s| s.vcpus = 0),
        Box::new(|s| s.vcpus = 100_000),
        Box::new(|s| s.memory_mib = 0),
        Box::new(|s| s.memory_mib = u64::MAX),
        Box::new(|s| s.name = "../x".into()),
        Box::new(|s| s.disks[0].size_gib = Some(0)),
        Box::new(|s| s.disks[0].size_gib = None),
        Box::new(|s| s.disks[0].image = Some("../../etc/shadow".into())),
        Box::new(|s| s.disks.push(s.disks[0].clone())),
        Box::new(|s| {
            s.boot = BootSource::Kernel {
                kernel: "../vmlinuz".into(),
                initrd: None,
                cmdline: String::new(),
            }
        }),
        Box::new(|s| {
            s.nics.push(NicSpec {
                network: "n".into(),
                mac: Some("zz".into()),
                ip: None,
                ..Default::default()
            })
        }),
        Box::new(|s| {
            s.nics.push(NicSpec {
                network: "n".into(),
                mac: Some("01:00:5e:00:00:01".into()),
                ip: None,
                ..Default::default()
            })
        }),
    ];
    for (i, f) in cases.iter().enumerate() {
        let mut s = spec();
        f(&mut s);
        assert!(s.validate().is_err(), "case {i} should fail");
    }
}

#[test]
fn refusals_say_which_field_and_why() {
    let nic = |mac: &str, ip: Option<&str>| NicSpec {
        network: "n".into(),
        mac: Some(mac.into()),
        ip: ip.map(str::to_string),
        ..Default::default()
    };
    type Mutation = Box<dyn Fn(&mut VmSpec)>;
    let cases: Vec<(Mutation, String)> = vec![
        (
            Box::new(|s| s.vcpus = 0),
            format!("vcpus must be between 1 and {MAX_VCPUS}, got 0"),
        ),
        (
            Box::new(|s| s.disks[0].size_gib = Some(0)),
            "disk 'root': size_gib must be at least 1".into(),
        ),
        (
            Box::new(|s| s.disks[0].size_gib = Some(MAX_DISK_GIB + 1)),
            format!("disk 'root': size_gib must be at most {MAX_DISK_GIB}"),
        ),
        (
            Box::new(|s| s.disks[0].size_gib = None),
            "disk 'root': a blank disk needs size_gib".into(),
        ),
        (
            Box::new(|s| s.disks.push(s.disks[0].clone())),
            "disk 'root': duplicate disk name".into(),
        ),
        (
            Box::new(|s| s.disks = vec![s.disks[0].clone(); MAX_DISKS + 1]),
            format!("disk '#{}': at most {MAX_DISKS} disks", MAX_DISKS + 1),
        ),
        (
            Box::new(|s| s.disks[0].image = Some("../x".into())),
            format!(
                "disk 'root': image: {}",
                crate::validate_file_name("../x").unwrap_err()
            ),
        ),
        (
            Box::new(|s| {
                s.boot = BootSource::Disk;
                s.disks.clear();
            }),
            "boot: boot from disk needs at least one disk".into(),
        ),
        (
            Box::new(|s| {
                s.boot = BootSource::Kernel {
                    kernel: "vmlinuz".into(),
                    initrd: None,
                    cmdline: "a\nb".into(),
                }
            }),
            format!("boot: cmdline must be printable and at most {MAX_CMDLINE} bytes"),
        ),
        (
            Box::new(move |s| s.nics.push(nic("zz", None))),
            "nic 0: 'zz' is not a MAC address like 02:76:66:00:00:01".into(),
        ),
        (
            Box::new(move |s| s.nics.push(nic("01:00:5e:00:00:01", None))),
            "nic 0: MAC '01:00:5e:00:00:01' is a multicast address; a NIC needs a unicast one"
                .into(),
        ),
        (
            Box::new(move |s| s.nics.push(nic("02:00:00:00:00:01", Some("10.0.0.300")))),
            "nic 0: bad IPv4 address '10.0.0.300'".into(),
        ),
        (
            Box::new(move |s| {
                let mut n = nic("02:00:00:00:00:01", None);
                n.security_groups = vec!["web".into(), "db".into(), "web".into()];
                s.nics.push(n)
            }),
            "nic 0: security group 'web' is given twice".into(),
        ),
        (
            Box::new(move |s| {
                let mut n = nic("02:00:00:00:00:01", None);
                n.security_groups = (0..9).map(|i| format!("g{i}")).collect();
                s.nics.push(n)
            }),
            "nic 0: at most 8 security groups".into(),
        ),
        (
            Box::new(move |s| {
                let mut n = nic("02:00:00:00:00:01", None);
                n.security_groups = vec!["web".into()];
                n.port_security = Some(false);
                s.nics.push(n)
            }),
            "nic 0: security groups need port security on".into(),
        ),
        (
            Box::new(move |s| {
                let mut n = nic("02:00:00:00:00:01", None);
                n.security_groups = vec!["Web".into()];
                s.nics.push(n)
            }),
            format!(
                "nic 0: security group: {}",
                crate::validate_name("Web").unwrap_err()
            ),
        ),
        (
            Box::new(move |s| {
                let mut n = nic("02:00:00:00:00:01", None);
                n.qos = Some(crate::qos::NicQos {
                    ingress: Some(crate::qos::NicRate::new(1_000)),
                    ..Default::default()
                });
                s.nics.push(n)
            }),
            "nic 0: qos: ingress rate 1000 bit/s is out of range (8000 bit/s to 400 Gbit/s)".into(),
        ),
    ];
    for (i, (f, want)) in cases.iter().enumerate() {
        let mut s = spec();
        f(&mut s);
        let err = s.validate().expect_err("refused");
        assert_eq!(err.to_string(), *want, "case {i}");
    }
}

#[test]
fn sub_interfaces_are_checked() {
    let nic = |network: &str, vlan: Option<(usize, u16)>| NicSpec {
        network: network.into(),
        vlan: vlan.map(|(parent, vid)| NicVlan { parent, vid }),
        ..NicSpec::default()
    };
    let check = |nics: Vec<NicSpec>| {
        let mut s = spec();
        s.nics = nics;
        s.validate().map_err(|e| e.to_string())
    };
    let trunk = vec![
        nic("lan", None),
        nic("blue", Some((0, 10))),
        nic("green", Some((0, 20))),
    ];
    assert_eq!(check(trunk.clone()), Ok(()));
    let with = |i: usize, n: NicSpec| {
        let mut t = trunk.clone();
        t[i] = n;
        check(t)
    };
    assert_eq!(
        with(1, nic("blue", Some((1, 10)))),
        Err("nic 1: vlan: its NIC 1 is not an earlier NIC of the VM".into())
    );
    assert_eq!(
        with(1, nic("blue", Some((5, 10)))),
        Err("nic 1: vlan: its NIC 5 is not an earlier NIC of the VM".into())
    );
    assert_eq!(
        with(2, nic("green", Some((1, 20)))),
        Err("nic 2: vlan: its NIC 1 is a sub-interface itself".into())
    );
    for vid in [0, 4095] {
        assert_eq!(
            with(2, nic("green", Some((0, vid)))),
            Err(format!(
                "nic 2: vlan: VLAN ID {vid} is not between 1 and 4094"
            ))
        );
    }
    assert_eq!(
        with(2, nic("green", Some((0, 10)))),
        Err("nic 2: vlan: NIC 0 already carries VLAN ID 10".into())
    );
    for network in ["lan", "blue"] {
        assert_eq!(
            with(2, nic(network, Some((0, 20)))),
            Err(format!(
                "nic 2: vlan: network '{network}' is already on NIC 0 or another of its \
                 sub-interfaces (they share one MAC)"
            ))
        );
    }
    // Its NIC's MAC, in any case, or none; not another.
    let mut t = trunk.clone();
    t[0].mac = Some("02:00:00:00:00:01".into());
    t[1].mac = Some("02:00:00:00:00:01".into());
    t[2].mac = Some("02:00:00:00:00:01".to_uppercase());
    assert_eq!(check(t.clone()), Ok(()));
    t[2].mac = Some("02:00:00:00:00:02".into());
    assert_eq!(
        check(t),
        Err("nic 2: vlan: a sub-interface uses its NIC's MAC 02:00:00:00:00:01".into())
    );
    let mut t = trunk.clone();
    t[1].qos = Some(crate::qos::NicQos::default());
    assert_eq!(
        check(t),
        Err("nic 1: vlan: QoS is set on its NIC (the sub-interfaces share its link)".into())
    );
    // Another NIC may carry the same tag.
    let mut t = trunk;
    t.push(nic("wan", None));
    t.push(nic("blue", Some((3, 10))));
    assert_eq!(check(t), Ok(()));
}

#[test]
fn allowed_address_pairs_are_checked() {
    let pair = |ip: &str, mac: Option<&str>| AllowedAddressPair {
        ip: ip.into(),
        mac: mac.map(str::to_string),
    };
    let with = |port_security, pairs: Vec<AllowedAddressPair>| {
        let mut s = spec();
        s.nics.push(NicSpec {
            network: "n".into(),
            mac: Some("02:00:00:00:00:01".into()),
            ip: Some("10.0.0.5".into()),
            port_security,
            allowed_addresses: pairs,
            security_groups: vec![],
            qos: None,
            vlan: None,
        });
        s.validate().map_err(|e| e.to_string())
    };
    assert_eq!(
        with(
            None,
            vec![
                pair("10.0.0.9", None),
                pair("10.0.1.0/29", Some("02:00:00:00:00:0a"))
            ]
        ),
        Ok(())
    );
    for (pairs, port_security, want) in [
        (vec![pair("10.0.0.1/24", None)], None, "nic 0: allowed address '10.0.0.1/24' is not an IPv4 address or prefix like 10.0.0.0/29"),
        (vec![pair("10.0.0.0/33", None)], None, "nic 0: allowed address '10.0.0.0/33' is not an IPv4 address or prefix like 10.0.0.0/29"),
        (vec![pair("nope", None)], None, "nic 0: allowed address 'nope' is not an IPv4 address or prefix like 10.0.0.0/29"),
        (vec![pair("10.0.0.9", Some("01:00:5e:00:00:01"))], None, "nic 0: allowed address MAC: MAC '01:00:5e:00:00:01' is a multicast address; a NIC needs a unicast one"),
        (vec![pair("10.0.0.9", None)], Some(false), "nic 0: allowed addresses need port security on"),
        (vec![pair("10.0.0.9", None); MAX_ALLOWED_ADDRESSES + 1], None, "nic 0: at most 16 allowed addresses"),
    ] {
        assert_eq!(with(port_security, pairs), Err(want.to_string()));
    }
    assert_eq!(with(Some(false), vec![]), Ok(()));
}

#[test]
fn specs_without_ha_are_off() {
    let old: VmSpec = serde_json::from_str(
        r#"{"name":"a","vcpus":1,"memory_mib":64,"boot":{"kind":"disk"},"disks":[]}"#,
    )
    .unwrap();
    assert_eq!(old.ha, crate::ha::VmHa::default());
    assert!(!old.ha.enabled);
    let mut s = spec();
    s.ha.start_after = Some("Bad_Name".into());
    let line = crate::error::chain(&s.validate().unwrap_err());
    assert!(line.starts_with("ha.start_after: "), "{line}");
}

#[test]
fn unknown_fields_refused() {
    let r: Result<VmSpec, _> = serde_json::from_str(
        r#"{"name":"a","vcpus":1,"memory_mib":64,"boot":{"kind":"disk"},"bogus":1}"#,
    );
    assert!(r.is_err());
}

#[test]
fn power_state_names_are_the_serialized_ones() {
    for s in [
        PowerState::Running,
        PowerState::Paused,
        PowerState::Stopped,
        PowerState::Incoming,
        PowerState::Migrating,
        PowerState::Crashed,
        PowerState::Unknown,
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
}

#[test]
fn a_boot_source_reads_as_its_parts() {
    let k = BootSource::Kernel {
        kernel: "vmlinuz".into(),
        initrd: Some("initrd.img".into()),
        cmdline: "console=ttyS0".into(),
    };
    assert_eq!(
        k.to_string(),
        "kernel vmlinuz, initrd initrd.img, cmdline \"console=ttyS0\""
    );
    let bare = BootSource::Kernel {
        kernel: "vmlinuz".into(),
        initrd: None,
        cmdline: String::new(),
    };
    assert_eq!(bare.to_string(), "kernel vmlinuz");
    assert_eq!(BootSource::Disk.to_string(), "first disk");
}
