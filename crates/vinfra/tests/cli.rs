//! Bad input on the command line against a running lab: each is refused with one line on stderr
//! and a non-zero exit, and nothing is created or moved.
//!
//! In the same lab, networks and NICs through the CLI alone: `vinfra net create|list|show|delete`
//! and `vinfra vm create --nic`, with the bad values and conflicts of each refused the same way and
//! leaving the networks, their ports and the VMs as they were.

mod common;

use common::{
    api, assert_one_line_error, boot_guest, can_run_labs, cli_env, dir_entries, qemus_with, refs,
    start_lab, vinfra, vm,
};
use vinfra_client::{paths, Method, RawBody};
use vinfra_lab::guest::KERNEL_IMAGE;
use vinfra_types::VmSummary;

/// VM names as `vinfra --output json vm list` shows them.
fn cli_vm_names(env: &[(&str, &str)]) -> Vec<String> {
    let out = vinfra(&["--output", "json", "vm", "list"], env);
    assert!(
        out.status.success(),
        "vm list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vms: Vec<VmSummary> = serde_json::from_slice(&out.stdout).expect("vm list JSON");
    let mut names: Vec<String> = vms.into_iter().map(|v| v.name).collect();
    names.sort();
    names
}

/// Runs `vinfra args`, asserts it succeeded; returns its stdout.
fn ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = vinfra(args, env);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The value of `Key:` in the key/value block of a `show` output.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
}

/// The table row of `vinfra net list` or of the port table of `vinfra net show` whose first cell
/// is `first`, split at whitespace.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{text}"))
}

/// What `net list` and `net show` of each network print, in table and JSON form.
fn networks_snapshot(env: &[(&str, &str)], names: &[&str]) -> Vec<String> {
    let mut all = vec![
        ok(&["net", "list"], env),
        ok(&["--output", "json", "net", "list"], env),
    ];
    for n in names {
        all.push(ok(&["net", "show", n], env));
        all.push(ok(&["--output", "json", "net", "show", n], env));
    }
    all
}

/// `vm create NAME --vcpus 1 --memory 128M --kernel <guest kernel>` plus `extra`.
fn create_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "vm",
        "create",
        name,
        "--vcpus",
        "1",
        "--memory",
        "128M",
        "--kernel",
        KERNEL_IMAGE,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_cli_input_against_a_lab_creates_nothing() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("cli", 2);
    let existing = boot_guest(&lab, "cli-1", 128, Some("h1"));
    let id = existing.id.to_string();
    let pids = qemus_with(&id);
    assert_eq!(pids.len(), 1, "one QEMU for cli-1");
    let env_owned = cli_env(&lab);
    let env = refs(&env_owned);
    let names_before = cli_vm_names(&env);
    assert_eq!(names_before, vec!["cli-1".to_string()]);
    let datastore_before = dir_entries(&lab.datastore().join("vms"));

    let long_name = "a".repeat(64);
    let create = create_args;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            create("bad-disk", &["--disk", "name=root,image=../../etc/passwd"]),
            "../../etc/passwd",
        ),
        (
            vec![
                "vm",
                "create",
                "bad-kernel",
                "--vcpus",
                "1",
                "--memory",
                "128M",
                "--kernel",
                "../x",
            ],
            "../x",
        ),
        (create("Upper", &[]), "Upper"),
        (create("under_score", &[]), "under_score"),
        (create(&long_name, &[]), "longer than 63"),
        (
            vec![
                "vm",
                "create",
                "neg-mem",
                "--vcpus",
                "1",
                "--memory",
                "-5",
                "--kernel",
                KERNEL_IMAGE,
            ],
            "-5",
        ),
        (
            vec![
                "vm",
                "create",
                "huge-mem",
                "--vcpus",
                "1",
                "--memory",
                "99999T",
                "--kernel",
                KERNEL_IMAGE,
            ],
            "memory must be between",
        ),
        // An existing name is refused by the console (409); with --count too, and then
        // cli-2 is not created either.
        (create("cli-1", &[]), "cli-1"),
        (create("cli", &["--count", "2"]), "cli-1"),
        (vec!["vm", "migrate", "cli-1", "--to", "h9"], "h9"),
        (vec!["vm", "migrate", "cli-1", "--to", "h1"], "h1"),
        (vec!["vm", "migrate", "cli-1", "--to", "H2"], "H2"),
        // A running VM is deleted only with --force (nothing asked: no terminal).
        (
            vec!["vm", "delete", "cli-1"],
            "VM 'cli-1' is set to run (on 'h1')",
        ),
        (
            vec!["vm", "migrate", "no-such-vm", "--to", "h2"],
            "no-such-vm",
        ),
    ];
    for (args, contains) in &cases {
        let out = vinfra(args, &env);
        assert_one_line_error(&out, 2, contains);
        assert!(out.stdout.is_empty(), "nothing on stdout for {args:?}");
    }

    // The console refuses a path in an image name too, whatever the client checks.
    let mut raw = serde_json::to_value(vinfra_lab::Lab::guest_vm_request("raw-1", 128, None))
        .expect("request JSON");
    raw["disks"] = serde_json::json!([{ "name": "root", "image": "../../etc/passwd" }]);
    let err = api(&lab)
        .raw(Method::POST, &paths::vms(), RawBody::Json(&raw))
        .expect_err("a disk image path must be refused");
    assert!(
        err.status().is_some_and(|s| (400..500).contains(&s)),
        "4xx for a path in an image name: {err}"
    );

    // Nothing was created, nothing moved.
    assert_eq!(cli_vm_names(&env), names_before, "vm list after bad input");
    assert_eq!(
        dir_entries(&lab.datastore().join("vms")),
        datastore_before,
        "datastore VM directories"
    );
    assert_eq!(
        dir_entries(&lab.host_data_dir("h2").expect("h2").join("vms")),
        Vec::<String>::new(),
        "h2 has no VM"
    );
    let after = vm(&lab, "cli-1");
    assert_eq!(after.host, "h1", "cli-1 stays on h1");
    assert_eq!(qemus_with(&id), pids, "cli-1 keeps its QEMU");
    for name in ["bad-disk", "bad-kernel", "neg-mem", "huge-mem", "raw-1"] {
        assert!(
            vinfra_lab::qemu_pids_mentioning(name).is_empty(),
            "a QEMU for {name}"
        );
    }

    networks_and_nics(&env);
    assert_eq!(cli_vm_names(&env), names_before, "vm list at the end");
    assert_eq!(qemus_with(&id), pids, "cli-1 keeps its QEMU");
}

/// `vinfra net …` and `vinfra vm create --nic …` through the binary: three networks and a
/// (stopped) VM with a NIC are created; every bad value or conflict is refused with one line and
/// exit code 2 and changes nothing; then all of it is deleted again.
fn networks_and_nics(env: &[(&str, &str)]) {
    let nets = ["ovl-a", "ovl-b", "vl-a"];
    assert_eq!(ok(&["net", "list"], env).trim(), "no networks");

    // An overlay with an explicit VNI, one with the first free VNI, a VLAN with the first free ID.
    let created = [
        (
            vec![
                "net",
                "create",
                "ovl-a",
                "--overlay",
                "--vni",
                "5000",
                "--subnet",
                "10.81.0.0/24",
                "--gateway",
                "10.81.0.1",
            ],
            ("overlay", "vni 5000", "10.81.0.0/24", "10.81.0.1", "1450"),
        ),
        (
            vec![
                "net",
                "create",
                "ovl-b",
                "--overlay",
                "--subnet",
                "10.82.0.0/24",
            ],
            ("overlay", "vni 10000", "10.82.0.0/24", "-", "1450"),
        ),
        (
            vec![
                "net",
                "create",
                "vl-a",
                "--vlan",
                "--subnet",
                "10.83.0.0/24",
            ],
            ("vlan", "vlan 100", "10.83.0.0/24", "-", "1500"),
        ),
    ];
    for (args, spec) in &created {
        let (kind, id, subnet, _, mtu) = *spec;
        let out = ok(args, env);
        let name = args[2];
        assert_eq!(
            out.trim(),
            format!("network {name} created: {kind}, {id}, subnet {subnet}, mtu {mtu}")
        );
    }
    let list = ok(&["net", "list"], env);
    assert_eq!(list.lines().count(), 1 + nets.len(), "{list}");
    for (args, spec) in &created {
        let (kind, id, subnet, gateway, mtu) = *spec;
        let name = args[2];
        let (seg, number) = id.split_once(' ').expect("segment");
        assert_eq!(
            row(&list, name),
            [name, kind, seg, number, subnet, gateway, mtu, "0"],
            "net list"
        );
        let show = ok(&["net", "show", name], env);
        for (key, value) in [
            ("Name", name),
            ("Kind", kind),
            ("Id", id),
            ("Subnet", subnet),
            ("Gateway", gateway),
            ("MTU", mtu),
            ("Ports", "0"),
        ] {
            assert_eq!(field(&show, key), Some(value), "{key} in:\n{show}");
        }
    }

    // A VM with a NIC on ovl-a, created stopped: its address and MAC are claimed all the same.
    let nic = "ovl-a,ip=10.81.0.10,mac=02:00:00:00:00:10";
    let out = ok(
        &create_args("cli-nic", &["--host", "h2", "--no-start", "--nic", nic]),
        env,
    );
    assert_eq!(out.trim(), "VM cli-nic created on h2 (stopped)");
    let show = ok(&["net", "show", "ovl-a"], env);
    assert_eq!(field(&show, "Ports"), Some("1"), "{show}");
    assert_eq!(
        row(&show, "cli-nic"),
        ["cli-nic", "0", "h2", "02:00:00:00:00:10", "10.81.0.10"],
        "port of cli-nic"
    );
    assert_eq!(row(&ok(&["net", "list"], env), "ovl-a")[7], "1", "ports");

    // Three VMs alike with --count, stopped: cli-many-1 … 3, each with its own address and
    // MAC from the pool; then deleted again.
    let out = ok(
        &create_args(
            "cli-many",
            &["--count", "3", "--no-start", "--nic", "ovl-a"],
        ),
        env,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"3 VMs created (stopped)"), "{out}");
    for (i, line) in lines[1..].iter().enumerate() {
        assert!(
            line.trim_start()
                .starts_with(&format!("cli-many-{} on h", i + 1)),
            "{out}"
        );
    }
    assert_eq!(lines.len(), 4, "{out}");
    let show = ok(&["net", "show", "ovl-a"], env);
    assert_eq!(field(&show, "Ports"), Some("4"), "{show}");
    let mut ports: Vec<(String, String)> = (1..=3)
        .map(|i| {
            let r = row(&show, &format!("cli-many-{i}"));
            (r[3].to_string(), r[4].to_string())
        })
        .collect();
    ports.sort();
    ports.dedup_by(|a, b| a.0 == b.0 || a.1 == b.1);
    assert_eq!(ports.len(), 3, "a MAC or address twice: {show}");
    for i in 1..=3 {
        ok(&["vm", "delete", &format!("cli-many-{i}")], env);
    }

    let snapshot = networks_snapshot(env, &nets);
    let vms_before = cli_vm_names(env);
    assert_eq!(vms_before, ["cli-1", "cli-nic"]);
    let net_create = |name: &'static str, extra: &[&'static str]| {
        let mut args = vec!["net", "create", name];
        args.extend_from_slice(extra);
        args
    };
    let nic_vm =
        |name: &'static str, nic: &'static str| create_args(name, &["--no-start", "--nic", nic]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            net_create("bad-cidr", &["--overlay", "--subnet", "10.84.0.0/33"]),
            "10.84.0.0/33",
        ),
        (
            net_create("bad-cidr", &["--overlay", "--subnet", "10.84.0.5/24"]),
            "host bits",
        ),
        (
            net_create("bad-cidr", &["--overlay", "--subnet", "10.84.0"]),
            "10.84.0",
        ),
        (
            net_create(
                "clash",
                &["--overlay", "--vni", "5000", "--subnet", "10.84.0.0/24"],
            ),
            "vni 5000 is already used by network 'ovl-a'",
        ),
        (
            net_create(
                "vl0",
                &["--vlan", "--vlan-id", "0", "--subnet", "10.84.0.0/24"],
            ),
            "between 1 and 4094",
        ),
        (
            net_create(
                "vl4095",
                &["--vlan", "--vlan-id", "4095", "--subnet", "10.84.0.0/24"],
            ),
            "between 1 and 4094",
        ),
        (
            net_create(
                "vl4096",
                &["--vlan", "--vlan-id", "4096", "--subnet", "10.84.0.0/24"],
            ),
            "between 1 and 4094",
        ),
        (
            net_create(
                "vni0",
                &["--overlay", "--vni", "0", "--subnet", "10.84.0.0/24"],
            ),
            "between 1 and 16711679",
        ),
        (
            net_create(
                "vnibig",
                &["--overlay", "--vni", "16777216", "--subnet", "10.84.0.0/24"],
            ),
            "between 1 and 16711679",
        ),
        (
            net_create("ovl-b", &["--overlay", "--subnet", "10.84.0.0/24"]),
            "a network named 'ovl-b' already exists",
        ),
        (vec!["net", "delete", "no-such-net"], "no-such-net"),
        (
            vec!["net", "delete", "ovl-a"],
            "network 'ovl-a' is in use by VM cli-nic",
        ),
        (nic_vm("nic-unknown", "no-such-net"), "no-such-net"),
        (
            create_args(
                "many-fixed",
                &["--count", "2", "--no-start", "--nic", "ovl-a,ip=10.81.0.30"],
            ),
            "ip= and mac= cannot go with --count",
        ),
        (create_args("many-zero", &["--count", "0"]), "0"),
        (create_args("many-big", &["--count", "1001"]), "1001"),
        (
            nic_vm("nic-outside", "ovl-a,ip=10.99.0.5"),
            "outside the subnet",
        ),
        (
            nic_vm("nic-gateway", "ovl-a,ip=10.81.0.1"),
            "reserved for the gateway",
        ),
        (
            nic_vm("nic-ip-used", "ovl-a,ip=10.81.0.10"),
            "taken by VM 'cli-nic'",
        ),
        (
            nic_vm("nic-multicast", "ovl-a,mac=03:00:00:00:00:01"),
            "multicast",
        ),
        // MACs are unique across networks.
        (
            nic_vm("nic-mac-used", "ovl-b,mac=02:00:00:00:00:10"),
            "MAC 02:00:00:00:00:10 is taken by VM 'cli-nic'",
        ),
        (
            nic_vm("nic-signed-mac", "ovl-a,mac=+2:00:00:00:00:20"),
            "two hex digits per octet",
        ),
        (
            nic_vm("nic-two-ips", "ovl-a,ip=10.81.0.20,ip=10.81.0.21"),
            "ip= is given more than once",
        ),
        (nic_vm("nic-no-ip", "lan,ip="), "ip= needs a value"),
        (nic_vm("nic-foo", "lan,foo=1"), "unknown key 'foo'"),
        (
            nic_vm("nic-no-net", ",ip=10.0.0.5"),
            "start with the network name",
        ),
    ];
    for (args, contains) in &cases {
        let out = vinfra(args, env);
        assert_one_line_error(&out, 2, contains);
        assert!(out.stdout.is_empty(), "nothing on stdout for {args:?}");
    }
    assert_eq!(
        networks_snapshot(env, &nets),
        snapshot,
        "networks after bad input"
    );
    assert_eq!(cli_vm_names(env), vms_before, "vm list after bad NICs");
    for (args, _) in &cases {
        if args[..2] == ["vm", "create"] {
            assert!(
                vinfra_lab::qemu_pids_mentioning(args[2]).is_empty(),
                "a QEMU for {}",
                args[2]
            );
        }
    }

    // Deleted again: the VM first (the network is in use until then), then the networks.
    assert_eq!(
        ok(&["vm", "delete", "cli-nic"], env).trim(),
        "VM cli-nic deleted"
    );
    assert_eq!(
        field(&ok(&["net", "show", "ovl-a"], env), "Ports"),
        Some("0")
    );
    for name in nets {
        assert_eq!(
            ok(&["net", "delete", name], env).trim(),
            format!("network {name} deleted")
        );
        assert_one_line_error(&vinfra(&["net", "show", name], env), 2, name);
    }
    assert_eq!(ok(&["net", "list"], env).trim(), "no networks");
    assert_eq!(ok(&["--output", "json", "net", "list"], env).trim(), "[]");
}
