//! End-to-end tests: a lab (console + agents in network namespaces, real QEMU guests) driven through
//! the REST API and the `vinfra` binary. The lab tests need root and QEMU; without them they are
//! skipped with a note. Run them one at a time (`--test-threads=1`): each boots guests.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vinfra_lab::{Lab, LabConfig};
use vinfra_types::{HostStatus, HostSummary, VmSummary};

const VINFRA: &str = env!("CARGO_BIN_EXE_vinfra");

/// A lab torn down when the test ends, passed or not.
struct LabGuard(Option<Lab>);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            if let Err(e) = lab.down() {
                eprintln!("lab teardown: {e}");
            }
        }
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.0.as_ref().expect("lab present until drop")
    }
}

/// A lab name unique to this test process and call.
fn unique_name(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}{n}", std::process::id() % 100_000)
}

fn can_run_labs() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: the lab needs root");
        return false;
    }
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    if !qemu.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: qemu-system-x86_64 is not installed");
        return false;
    }
    true
}

fn start_lab(tag: &str, hosts: usize) -> LabGuard {
    let mut config = LabConfig::new(&unique_name(tag), VINFRA.into());
    config.hosts = hosts;
    config.root = std::env::temp_dir().join(format!("vinfra-lab-{}", config.name));
    let lab = Lab::up(config).unwrap_or_else(|e| panic!("lab up: {e}"));
    LabGuard(Some(lab))
}

/// Runs the `vinfra` binary with a clean environment (no config file, no VINFRA_* variables).
fn vinfra(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(VINFRA);
    cmd.args(args)
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME");
    for var in ["VINFRA_URL", "VINFRA_TOKEN", "VINFRA_CA", "VINFRA_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run vinfra")
}

/// Asserts a failure with exit code `code` and exactly one line on stderr starting `vinfra: `.
fn assert_one_line_error(out: &Output, code: i32, contains: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line expected, got: {stderr}"
    );
    assert!(stderr.starts_with("vinfra: "), "{stderr}");
    assert!(
        stderr.contains(contains),
        "expected '{contains}' in: {stderr}"
    );
}

#[test]
fn lab_comes_up_and_a_vm_boots() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("b", 3);
    let name = lab.state().name.clone();
    let api = lab.api().expect("client");

    let hosts: Vec<HostSummary> = api.get("/api/v1/hosts").expect("hosts");
    assert_eq!(hosts.len(), 3);
    assert!(
        hosts.iter().all(|h| h.status == HostStatus::Connected),
        "{hosts:?}"
    );

    let vm = lab.create_guest_vm("boot-1", 128, None).expect("create VM");
    let text = lab
        .wait_console("boot-1", "VINFRA-GUEST BOOTED", Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("VINFRA-GUEST BOOTED"));
    assert!(
        !lab.qemu_pids_for(&vm.id.to_string()).is_empty(),
        "no QEMU found for {}",
        vm.id
    );

    // The CLI against the lab.
    let c = lab.client().expect("client settings");
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
    let mut guard = lab;
    guard.0.take().expect("lab").down().expect("lab down");
    assert!(vinfra_lab::net::lab_namespaces(&name).is_empty());
    assert!(!Path::new(&root).exists());
    assert!(vinfra_lab::process::pids_mentioning(&format!("{}/", root.display())).is_empty());
}

#[test]
fn vms_survive_agent_and_console_restarts() {
    if !can_run_labs() {
        return;
    }
    let mut lab = start_lab("r", 2);
    let vm = lab
        .create_guest_vm("keep-1", 128, Some("h1"))
        .expect("create VM");
    lab.wait_console("keep-1", "VINFRA-GUEST BOOTED", Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}"));
    let qemu = lab.qemu_pids_for(&vm.id.to_string());
    assert!(!qemu.is_empty());

    // SIGKILL the agent: its QEMU keeps running; a restarted agent reconnects.
    lab.kill_agent("h1", nix::sys::signal::Signal::SIGKILL)
        .expect("kill agent");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.qemu_pids_for(&vm.id.to_string()), qemu);
    let inner = lab.0.as_mut().expect("lab");
    inner.restart_agent("h1").expect("restart agent");
    inner.restart_console().expect("restart console");
    lab.wait_hosts_connected(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lab.qemu_pids_for(&vm.id.to_string()), qemu);
    let after: VmSummary = lab
        .api()
        .expect("client")
        .get("/api/v1/vms/keep-1")
        .expect("VM");
    assert_eq!(after.host, "h1");
    assert_eq!(after.id, vm.id);
}

#[test]
fn cli_bad_input_is_one_line_and_nonzero() {
    let token = [("VINFRA_TOKEN", "t"), ("VINFRA_URL", "http://127.0.0.1:1")];
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
    assert_one_line_error(&vinfra(&["vm", "list"], &[]), 2, "no API token");
    // Console unreachable: not the user's input, exit 1.
    assert_one_line_error(
        &vinfra(&["vm", "list"], &token),
        1,
        "cannot reach the console",
    );
    // https without a CA.
    assert_one_line_error(
        &vinfra(
            &["vm", "list", "--url", "https://127.0.0.1:1", "--token", "t"],
            &[],
        ),
        2,
        "no CA",
    );
}
