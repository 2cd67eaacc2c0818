//! End-to-end tests: a lab (console + agents in network namespaces, real QEMU guests) driven through
//! the REST API and the `vinfra` binary. Here: a guest boots, and bad CLI input without a
//! console; more in `capacity.rs`, `migration.rs`, `restart.rs` and `cli.rs`, sharing
//! `common/`. The lab tests need root and QEMU; without them they are skipped with a note. Run
//! them one at a time (`--test-threads=1`): each boots guests.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    assert_one_line_error, can_run_labs, spawn_vinfra_typing, start_lab, vinfra, BOOT_TIMEOUT,
};
use vinfra_types::{HostStatus, VmSummary};

#[test]
fn lab_comes_up_and_a_vm_boots() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("boot", 3);
    let name = lab.state().name.clone();
    let api = lab.api().expect("client");

    let hosts = api.hosts().expect("hosts");
    assert_eq!(hosts.len(), 3);
    assert!(
        hosts.iter().all(|h| h.status == HostStatus::Connected),
        "{hosts:?}"
    );

    let vm = lab.create_guest_vm("boot-1", 128, None).expect("create VM");
    let text = lab
        .wait_console("boot-1", "VINFRA-GUEST BOOTED", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("VINFRA-GUEST BOOTED"));
    assert!(
        !lab.qemu_pids_for(&vm.id.to_string()).is_empty(),
        "no QEMU found for {}",
        vm.id
    );

    // The CLI against the lab.
    let c = lab.api_access().expect("API access");
    let ca = c.ca_file.display().to_string();
    let env = [
        ("VINFRA_URL", c.url.as_str()),
        ("VINFRA_TOKEN", c.token.as_str()),
        ("VINFRA_CA", ca.as_str()),
    ];
    let out = vinfra(&["--output", "json", "vm", "list"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vms: Vec<VmSummary> = serde_json::from_slice(&out.stdout).expect("vm list JSON");
    assert!(vms.iter().any(|v| v.name == "boot-1"));
    let out = vinfra(&["vm", "console", "boot-1", "--bytes", "100000"], &env);
    assert!(String::from_utf8_lossy(&out.stdout).contains("VINFRA-GUEST BOOTED"));
    // Followed: a line typed on the CLI's input reaches the guest, whose answer comes out.
    let mut console = spawn_vinfra_typing(&["vm", "console", "boot-1", "--follow"], &env);
    let mut typed = console.stdin().expect("the CLI's input");
    let mut printed = console.stdout().expect("the CLI's output");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = printed.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    // Typed again every 15 s until answered: one POST may time out on a loaded lab host.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut retype = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("VINFRA-TYPED hello-from-cli") {
        if Instant::now() >= retype {
            writeln!(typed, "hello-from-cli").expect("type a line");
            retype = Instant::now() + Duration::from_secs(15);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(chunk) => seen.extend(chunk),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
            Err(_) => {
                drop(typed);
                let ended = console.stop();
                panic!(
                    "vinfra vm console --follow: no answer to the typed line ({:?}); printed: {}; \
                     stderr: {}",
                    ended.status,
                    String::from_utf8_lossy(&seen),
                    String::from_utf8_lossy(&ended.stderr)
                );
            }
        }
    }
    drop(typed);
    drop(console);
    let out = vinfra(&["host", "show", "h1"], &env);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ALLOCATABLE"));
    assert_one_line_error(
        &vinfra(&["vm", "show", "no-such-vm"], &env),
        2,
        "no-such-vm",
    );
    assert_one_line_error(
        &vinfra(
            &["vm", "list"],
            &[env[0], ("VINFRA_TOKEN", "wrong"), env[2]],
        ),
        2,
        "",
    );

    // Teardown leaves nothing behind.
    let root = lab.state().root.clone();
    lab.down();
    assert!(vinfra_lab::net::lab_namespaces(&name).is_empty());
    assert!(!Path::new(&root).exists());
    assert!(vinfra_lab::process::pids_mentioning(&format!("{}/", root.display())).is_empty());
}

#[test]
fn cli_bad_input_is_one_line_and_nonzero() {
    // An empty config file of its own: a machine's `/etc/vinfra/cli.toml` (which may hold a
    // token, a URL and a CA) is never read.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cli.toml");
    std::fs::write(&config, "").expect("write the config file");
    let config = config.to_str().expect("a UTF-8 temp path");
    let no_token = [("VINFRA_CONFIG", config)];
    let token = [
        ("VINFRA_CONFIG", config),
        ("VINFRA_TOKEN", "t"),
        ("VINFRA_URL", "http://127.0.0.1:1"),
    ];
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &[
                "vm", "create", "x", "--vcpus", "1", "--memory", "0", "--kernel", "k",
            ],
            2,
            "memory must be greater than 0",
        ),
        (
            &[
                "vm", "create", "x", "--vcpus", "-1", "--memory", "1G", "--kernel", "k",
            ],
            2,
            "vcpus must be positive",
        ),
        (
            &[
                "vm", "create", "x", "--vcpus", "1", "--memory", "2X", "--kernel", "k",
            ],
            2,
            "not a size",
        ),
        (
            &[
                "vm", "create", "x", "--vcpus", "1", "--memory", "99999T", "--kernel", "k",
            ],
            2,
            "memory must be between",
        ),
        (
            &[
                "vm", "create", "x", "--vcpus", "100000", "--memory", "1G", "--kernel", "k",
            ],
            2,
            "vcpus must be between",
        ),
        (
            &[
                "vm", "create", "Bad_Name", "--vcpus", "1", "--memory", "1G", "--kernel", "k",
            ],
            2,
            "name",
        ),
        (
            &["vm", "create", "x", "--vcpus", "1", "--memory", "1G"],
            2,
            "--kernel",
        ),
        (&["vm", "list", "--state", "asleep"], 2, "expected running"),
        (&["vm", "list", "--host", "Bad_Host"], 2, "host"),
        (
            &["settings", "set", "--cpu-baseline", "host"],
            2,
            "cannot be a baseline",
        ),
        (
            &[
                "vm", "create", "x", "--vcpus", "1", "--memory", "1G", "--disk", "size=1G",
            ],
            2,
            "name= is required",
        ),
        (
            &["vm", "stop", "x", "--timeout", "forever"],
            2,
            "not a duration",
        ),
        (&["vm", "show", "../etc"], 2, "bad VM name"),
        (&["vm", "frobnicate"], 2, "frobnicate"),
        (
            &["host", "set", "h1", "--cpu-ratio", "0"],
            2,
            "ratio must be between",
        ),
    ];
    for (args, code, contains) in cases {
        let out = vinfra(args, &token);
        assert_one_line_error(&out, *code, contains);
    }
    // No token anywhere.
    assert_one_line_error(&vinfra(&["vm", "list"], &no_token), 2, "no API token");
    // Console unreachable: not the user's input, exit 1.
    assert_one_line_error(
        &vinfra(&["vm", "list"], &token),
        1,
        "cannot reach the console",
    );
    // https with a CA named but missing.
    let missing = dir.path().join("missing-ca.pem");
    let https = ["vm", "list", "--url", "https://127.0.0.1:1", "--token", "t"];
    let with_ca = [&https[..], &["--ca", missing.to_str().expect("UTF-8")]].concat();
    assert_one_line_error(
        &vinfra(&with_ca, &no_token),
        2,
        "cannot read CA certificate",
    );
    // https without a CA. Given none, the CLI trusts the local console's CA when there is one
    // (`DEFAULT_CONSOLE_DIR`, where a console ran on this machine): only without it is there no
    // CA at all.
    let local_ca =
        Path::new(vinfra::config::DEFAULT_CONSOLE_DIR).join(vinfra_client::CONSOLE_CA_FILE);
    let out = vinfra(&https, &no_token);
    if local_ca.exists() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
        assert!(
            !stderr.contains("no CA"),
            "{} not used: {stderr}",
            local_ca.display()
        );
    } else {
        assert_one_line_error(&out, 2, "no CA");
    }
}
