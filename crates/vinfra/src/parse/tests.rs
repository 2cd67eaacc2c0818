//! The command-line value parsers' tests.

use vinfra_types::qos::{NicPriority, NicQos, NicRate};
use vinfra_types::{AllowedAddressPair, DiskSpec, NicSpec, NicVlan};

use super::nic::mac;
use super::*;

#[test]
fn token_lifetimes() {
    assert_eq!(token_lifetime("30d"), Ok(30 * 86400));
    assert_eq!(token_lifetime("12h"), Ok(12 * 3600));
    assert_eq!(token_lifetime("90"), Ok(90));
    for bad in ["0", "-1d", "soon", "11y", "500ms", ""] {
        assert!(token_lifetime(bad).is_err(), "{bad}");
    }
}

#[test]
fn migration_bandwidth_and_downtime() {
    assert_eq!(migration_bandwidth("100M"), Ok(Bandwidth::MibPerS(100)));
    assert_eq!(migration_bandwidth("100MiB/s"), Ok(Bandwidth::MibPerS(100)));
    assert_eq!(migration_bandwidth("1G"), Ok(Bandwidth::MibPerS(1024)));
    assert_eq!(migration_bandwidth("64"), Ok(Bandwidth::MibPerS(64)));
    assert_eq!(migration_bandwidth("Unlimited"), Ok(Bandwidth::Unlimited));
    for bad in ["0", "-1M", "512K", "2000T", "fast", ""] {
        assert!(migration_bandwidth(bad).is_err(), "{bad}");
    }
    assert_eq!(migration_downtime("300ms"), Ok(300));
    assert_eq!(migration_downtime("1s"), Ok(1000));
    assert_eq!(migration_downtime("50"), Ok(50));
    for bad in ["5ms", "61s", "-300ms", "soon", "0"] {
        assert!(migration_downtime(bad).is_err(), "{bad}");
    }
}

#[test]
fn interface_names() {
    for ok in ["trunk0", "eth0", "enp3s0f1", "bond0.100x", "a"] {
        assert_eq!(interface(ok), Ok(ok.to_string()));
    }
    for bad in [
        "",
        "a-very-long-interface",
        "a/b",
        "eth0:1",
        "a b",
        "..",
        ".",
    ] {
        assert!(interface(bad).is_err(), "{bad}");
    }
}

#[test]
fn memory_sizes() {
    assert_eq!(memory_mib("512M"), Ok(512));
    assert_eq!(memory_mib("512MiB"), Ok(512));
    assert_eq!(memory_mib("2G"), Ok(2048));
    assert_eq!(memory_mib("2gib"), Ok(2048));
    assert_eq!(memory_mib("256"), Ok(256));
    assert_eq!(memory_mib("1T"), Ok(1024 * 1024));
    for bad in [
        "0",
        "0G",
        "-1",
        "-512M",
        "2X",
        "G",
        "",
        "1.5G",
        "8M",
        "17T",
        "99999999999999999999999999999999999G",
        "1000K",
    ] {
        assert!(memory_mib(bad).is_err(), "{bad}");
    }
    assert_eq!(
        memory_mib("0").unwrap_err().to_string(),
        "memory must be greater than 0"
    );
}

#[test]
fn other_values() {
    assert_eq!(vcpus("4"), Ok(4));
    for bad in ["0", "-1", "257", "x", "99999999999999999999"] {
        assert!(vcpus(bad).is_err(), "{bad}");
    }
    assert_eq!(disk_gib("10G"), Ok(10));
    assert_eq!(disk_gib("10"), Ok(10));
    assert_eq!(disk_gib("1T"), Ok(1024));
    assert!(disk_gib("512M").is_err());
    assert_eq!(stop_timeout("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(stop_timeout("45"), Ok(Duration::from_secs(45)));
    assert!(stop_timeout("2h").is_err());
    assert!(stop_timeout("soon").is_err());
    assert_eq!(ratio("1.5"), Ok(1.5));
    assert!(ratio("0").is_err());
    assert!(ratio("NaN").is_err());
    assert_eq!(on_off("on"), Ok(true));
    assert_eq!(on_off("OFF"), Ok(false));
    assert_eq!(
        on_off("maybe").unwrap_err().to_string(),
        "'maybe' is neither on nor off"
    );
    assert_eq!(isolation_fence_after("30s"), Ok(30));
    assert_eq!(isolation_fence_after("2m"), Ok(120));
    assert_eq!(isolation_fence_after("45"), Ok(45));
    assert_eq!(isolation_fence_after("1h"), Ok(3600));
    for bad in ["4s", "2h", "-5", "soon", "5.5s", "0"] {
        assert!(isolation_fence_after(bad).is_err(), "{bad}");
    }
    assert_eq!(
        isolation_fence_after("4s").unwrap_err().to_string(),
        "isolation fence delay must be between 5s and 3600s, got 4s"
    );
    assert_eq!(vm_or_none("none"), Ok(None));
    assert_eq!(vm_or_none("db-1"), Ok(Some("db-1".into())));
    assert!(vm_or_none("Bad_Name").is_err());
    assert_eq!(fence_command("true"), Ok("true".into()));
    assert!(fence_command("").is_err());
    assert!(fence_command(&"a".repeat(4097))
        .unwrap_err()
        .to_string()
        .contains("4097 bytes"));
}

#[test]
fn disks_and_nics() {
    assert_eq!(
        disk("name=root,image=debian.qcow2,size=10G"),
        Ok(DiskSpec {
            name: "root".into(),
            image: Some("debian.qcow2".into()),
            size_gib: Some(10)
        })
    );
    assert!(disk("image=x").is_err());
    assert!(disk("name=a,colour=red").is_err());
    assert!(disk("name=a,size=0").is_err());
    assert_eq!(
        nic("lan,ip=10.0.0.5,mac=52:54:00:AA:BB:CC"),
        Ok(NicSpec {
            network: "lan".into(),
            ip: Some("10.0.0.5".into()),
            mac: Some("52:54:00:aa:bb:cc".into()),
            ..Default::default()
        })
    );
    assert_eq!(
        nic("network=lan"),
        Ok(NicSpec {
            network: "lan".into(),
            ip: None,
            mac: None,
            ..Default::default()
        })
    );
    assert!(nic("ip=1.2.3.4").is_err());
    // Sub-interfaces: of the first NIC unless another is named.
    let sub = |parent, vid| NicSpec {
        network: "blue".into(),
        ip: Some("10.81.0.5".into()),
        vlan: Some(NicVlan { parent, vid }),
        ..Default::default()
    };
    assert_eq!(nic("blue,vlan=10,ip=10.81.0.5"), Ok(sub(0, 10)));
    assert_eq!(
        nic("blue,ip=10.81.0.5,vlan=4094,parent=2"),
        Ok(sub(2, 4094))
    );
    for (bad, reason) in [
        ("blue,vlan=0", "vlan: '0' is not a VLAN ID from 1 to 4094"),
        (
            "blue,vlan=4095",
            "vlan: '4095' is not a VLAN ID from 1 to 4094",
        ),
        ("blue,vlan=x", "vlan: 'x' is not a VLAN ID from 1 to 4094"),
        (
            "blue,vlan=10,parent=-1",
            "parent: '-1' is not a NIC number (0 is the first --nic)",
        ),
        ("blue,parent=1", "parent= goes with vlan="),
    ] {
        let e = nic(bad).unwrap_err().to_string();
        assert!(e.contains(reason), "{bad}: {e}");
    }
}

#[test]
fn nic_keys_once_each() {
    for (bad, reason) in [
        ("lan,ip=10.0.0.5,ip=10.0.0.6", "ip= is given more than once"),
        ("lan,ip=10.0.0.5,ip=10.0.0.5", "ip= is given more than once"),
        (
            "lan,mac=02:00:00:00:00:01,mac=02:00:00:00:00:02",
            "mac= is given more than once",
        ),
        (
            "lan,mac=02:00:00:00:00:01,ip=10.0.0.5,mac=02:00:00:00:00:01",
            "mac= is given more than once",
        ),
        ("lan,ip=", "ip= needs a value"),
        ("lan,mac=", "mac= needs a value"),
        ("lan,foo=1", "unknown key 'foo'"),
        (",ip=10.0.0.5", "start with the network name"),
        ("lan,ip=10.0.0", "not an IPv4 address"),
        ("lan,ip=10.0.0.256", "not an IPv4 address"),
    ] {
        let e = nic(bad).expect_err(bad).to_string();
        assert!(e.contains(reason), "{bad}: {e}");
        assert!(!e.contains('\n'), "{bad}: {e}");
    }
    assert_eq!(
        nic("lan, ip = 10.0.0.5 , mac=02:AB:00:00:00:01"),
        Ok(NicSpec {
            network: "lan".into(),
            ip: Some("10.0.0.5".into()),
            mac: Some("02:ab:00:00:00:01".into()),
            ..Default::default()
        })
    );
}

#[test]
fn nic_security_groups() {
    let n = nic("lan,sg=web+db").unwrap();
    assert_eq!(n.security_groups, ["web", "db"]);
    let e = nic("lan,sg=web+Bad").unwrap_err().to_string();
    assert!(e.contains("security group 'Bad'"), "{e}");
    assert!(nic("lan,sg=").is_err());
    assert_eq!(groups_or_none("none"), Ok(vec![]));
    assert_eq!(
        groups_or_none("web, db"),
        Ok(vec!["web".to_string(), "db".to_string()])
    );
    assert!(groups_or_none("web,,db").is_err());
    assert_eq!(allow_or_none("none"), Ok(vec![]));
    let pairs = allow_or_none("10.0.0.9+10.0.1.0/29@02:00:00:00:00:09").unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[1].mac.as_deref(), Some("02:00:00:00:00:09"));
    assert!(allow_or_none("10.0.0.9/24").is_err());
}

#[test]
fn nic_port_security_and_allowed_addresses() {
    let n = nic("lan,port-security=on,allow=10.0.0.9+10.0.1.0/29@02:00:00:00:00:0A").unwrap();
    assert_eq!(n.port_security, Some(true));
    assert_eq!(
        n.allowed_addresses,
        vec![
            AllowedAddressPair {
                ip: "10.0.0.9".into(),
                mac: None
            },
            AllowedAddressPair {
                ip: "10.0.1.0/29".into(),
                mac: Some("02:00:00:00:00:0a".into())
            },
        ]
    );
    assert_eq!(
        nic("lan,port-security=off").unwrap().port_security,
        Some(false)
    );
    assert_eq!(nic("lan").unwrap().port_security, None);
    for (bad, reason) in [
        ("lan,port-security=maybe", "port-security is on or off"),
        ("lan,allow=10.0.0.1/33", "not an IPv4 address or prefix"),
        ("lan,allow=10.0.0.1/24", "not an IPv4 address or prefix"),
        (
            "lan,allow=10.0.0.1@01:00:5e:00:00:01",
            "is a multicast address",
        ),
        (
            "lan,allow=10.0.0.1,allow=10.0.0.2",
            "allow= is given more than once",
        ),
    ] {
        let e = nic(bad).expect_err(bad).to_string();
        assert!(e.contains(reason), "{bad}: {e}");
    }
}

#[test]
fn nic_macs_have_two_hex_digits_per_octet() {
    assert_eq!(mac("02:76:66:aA:Bb:0f"), Ok("02:76:66:aa:bb:0f".into()));
    for bad in [
        "+2:76:66:00:00:01",
        "02:76:66:00:00:+1",
        "02:-0:66:00:00:01",
        "02:76:66:00:00:1",
        "02:76:66:00:00:001",
        "02:76:66:00:00",
        "02:76:66:00:00:01:02",
        "02:76:66:00:00:0g",
        "02:76:66:00:00: 1",
        "02-76-66-00-00-01",
        "0x:76:66:00:00:01",
        "",
    ] {
        let e = mac(bad).expect_err(bad);
        assert!(e.contains("two hex digits per octet"), "{bad}: {e}");
        assert!(nic(&format!("lan,mac={bad}")).is_err(), "{bad}");
    }
    // Well formed but not a NIC's address.
    for bad in [
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
    ] {
        assert!(mac(bad).is_err(), "{bad}");
        assert!(nic(&format!("lan,mac={bad}")).is_err(), "{bad}");
    }
}

#[test]
fn rates_are_decimal_bits_and_bursts_binary_bytes() {
    for (v, bits) in [
        ("100M", 100_000_000),
        ("1.5G", 1_500_000_000),
        ("500k", 500_000),
        ("500K", 500_000),
        ("8000", 8_000),
        ("400G", 400_000_000_000),
        ("2.125M", 2_125_000),
    ] {
        assert_eq!(rate(v), Ok(bits), "{v}");
        // Printed back as given (or plainer).
        assert_eq!(rate(&vinfra_types::qos::rate_text(bits)), Ok(bits), "{v}");
    }
    for (v, why) in [
        (
            "7999",
            "rate must be between 8k (8,000 bit/s) and 400G, got 7999",
        ),
        (
            "401G",
            "rate must be between 8k (8,000 bit/s) and 400G, got 401G",
        ),
        ("100Mbit", "use bits per second with k, M, G or T"),
        ("-5M", "use bits per second"),
        ("1.5", "rate in bits per second must be a whole number"),
        ("1.", "use bits per second"),
        ("", "use bits per second"),
        ("99999999999999999999999999999999T", "whole number"),
    ] {
        let e = rate(v).expect_err(v).to_string();
        assert!(e.contains(why), "{v}: {e}");
        assert!(!e.contains('\n'), "{v}: {e}");
    }
    for (v, bytes) in [
        ("1M", 1 << 20),
        ("64K", 65_536),
        ("64k", 65_536),
        ("1514", 1_514),
        ("1.5M", 1_572_864),
        ("1G", 1 << 30),
        ("16KiB", 16_384),
    ] {
        assert_eq!(burst(v), Ok(bytes), "{v}");
    }
    for (v, why) in [
        ("1000", "burst must be between 1514 bytes and 1G, got 1000"),
        ("2G", "burst must be between 1514 bytes and 1G"),
        ("1X", "use bytes with K, M or G"),
    ] {
        let e = burst(v).expect_err(v).to_string();
        assert!(e.contains(why), "{v}: {e}");
    }
    assert_eq!(rate_or_none("none"), Ok(None));
    assert_eq!(qos_priority("high"), Ok(NicPriority::High));
    assert!(qos_priority("urgent")
        .unwrap_err()
        .to_string()
        .contains("use low, normal or high"));
    assert_eq!(qos_weight("100"), Ok(100));
    assert!(qos_weight("0").is_err() && qos_weight("101").is_err());
    assert_eq!(dscp_or_trust("trust"), Ok(None));
    assert_eq!(dscp_or_trust("46"), Ok(Some(46)));
    assert!(dscp_or_trust("64").is_err());
}

#[test]
fn nic_qos_keys() {
    let n = nic("lan,rate=100M,burst=1M,priority=high").unwrap();
    let both = NicRate {
        bits_per_sec: 100_000_000,
        burst_bytes: Some(1 << 20),
    };
    assert_eq!(
        n.qos,
        Some(NicQos {
            egress: Some(both),
            ingress: Some(both),
            priority: NicPriority::High,
            ..NicQos::default()
        })
    );
    // One direction overrides the rate; the burst goes to both.
    let n = nic("lan,rate=100M,ingress-rate=8M,weight=20,dscp=46").unwrap();
    let q = n.qos.unwrap();
    assert_eq!(q.egress, Some(NicRate::new(100_000_000)));
    assert_eq!(q.ingress, Some(NicRate::new(8_000_000)));
    assert_eq!((q.weight, q.dscp), (Some(20), Some(46)));
    let q = nic("lan,egress-rate=1G").unwrap().qos.unwrap();
    assert_eq!(
        (q.egress.map(|r| r.bits_per_sec), q.ingress),
        (Some(1_000_000_000), None)
    );
    // Nothing but defaults: no QoS.
    assert_eq!(nic("lan,priority=normal,dscp=trust").unwrap().qos, None);
    assert_eq!(nic("lan").unwrap().qos, None);
    for (bad, why) in [
        ("lan,burst=1M", "a burst needs a rate"),
        ("lan,rate=1", "rate must be between"),
        ("lan,priority=top", "use low, normal or high"),
        ("lan,weight=0", "weight must be between 1 and 100"),
        ("lan,dscp=64", "dscp must be between 0 and 63"),
        ("lan,rate=1M,rate=2M", "rate= is given more than once"),
    ] {
        let e = nic(bad).expect_err(bad).to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(!e.contains('\n'), "{bad}: {e}");
    }
}

#[test]
fn qos_changes_keep_what_they_do_not_name() {
    let old = NicQos {
        egress: Some(NicRate {
            bits_per_sec: 100_000_000,
            burst_bytes: Some(1 << 20),
        }),
        ingress: Some(NicRate::new(50_000_000)),
        priority: NicPriority::High,
        weight: Some(30),
        dscp: Some(10),
    };
    // A new priority: everything else stays.
    let c = NicQosChange {
        priority: Some(NicPriority::Low),
        ..NicQosChange::default()
    };
    let q = c.apply(Some(&old)).unwrap().unwrap();
    assert_eq!(
        q,
        NicQos {
            priority: NicPriority::Low,
            ..old.clone()
        }
    );
    // A new ingress rate gets the default burst; a burst alone goes to the rates there are.
    let c = NicQosChange {
        ingress_rate: Some(Some(8_000_000)),
        ..NicQosChange::default()
    };
    let q = c.apply(Some(&old)).unwrap().unwrap();
    assert_eq!(q.ingress, Some(NicRate::new(8_000_000)));
    assert_eq!(q.egress, old.egress);
    let c = NicQosChange {
        burst: Some(65_536),
        ..NicQosChange::default()
    };
    let q = c.apply(Some(&old)).unwrap().unwrap();
    assert_eq!(q.egress.unwrap().burst_bytes, Some(65_536));
    assert_eq!(q.ingress.unwrap().burst_bytes, Some(65_536));
    // `none` lifts a limit; with nothing left set there is no QoS.
    let c = NicQosChange {
        rate: Some(None),
        priority: Some(NicPriority::Normal),
        weight: None,
        dscp: Some(None),
        ..NicQosChange::default()
    };
    let q = c.apply(Some(&old)).unwrap().unwrap();
    assert_eq!((q.egress, q.ingress, q.weight), (None, None, Some(30)));
    let c = NicQosChange {
        rate: Some(None),
        ..NicQosChange::default()
    };
    assert_eq!(c.apply(None), Ok(None));
    let c = NicQosChange {
        burst: Some(65_536),
        ..NicQosChange::default()
    };
    assert!(c.apply(None).unwrap_err().contains("a burst needs a rate"));
}
