//! Bad input on the command line against a running lab: each is refused with one line on stderr
//! and a non-zero exit, and nothing is created or moved.

mod common;

use common::{
    api, assert_one_line_error, boot_guest, can_run_labs, cli_env, dir_entries, qemus_with, refs,
    start_lab, vinfra, vm,
};
use reqwest::Method;
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
        // An existing name is refused by the console (409).
        (create("cli-1", &[]), "cli-1"),
        (vec!["vm", "migrate", "cli-1", "--to", "h9"], "h9"),
        (vec!["vm", "migrate", "cli-1", "--to", "h1"], "h1"),
        (vec!["vm", "migrate", "cli-1", "--to", "H2"], "H2"),
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
        .request(Method::POST, "/api/v1/vms", Some(&raw))
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
}
