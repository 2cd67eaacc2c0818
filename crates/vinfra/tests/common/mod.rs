//! Shared harness of the end-to-end tests: labs torn down on drop (even on panic), the `vinfra`
//! binary run with a clean environment, serial-console parsing, waiting helpers.
//!
//! Each test binary uses a part of it.
#![allow(dead_code)]

pub mod ha;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vinfra_client::Client;
use vinfra_lab::guest::GuestAddress;
use vinfra_lab::{Lab, LabConfig};
use vinfra_types::api::Event;
use vinfra_types::{BootSource, MigrationProgress, VmSummary};

/// The `vinfra` binary under test.
pub const VINFRA: &str = env!("CARGO_BIN_EXE_vinfra");

/// How long a guest may take to print `VINFRA-GUEST BOOTED`.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// When set, the directory the tests' labs take the guest image from (and build it into when it
/// is missing or was built by another version of `scripts/build-guest-image.sh`), instead of
/// the lab's default: lets a change of the guest's init be tested without disturbing the
/// image other checkouts share.
pub const GUEST_DIR_VAR: &str = "VINFRA_TEST_GUEST_DIR";

/// A lab torn down when the test ends, passed or not. On a failing test the last lines of the
/// console's and agents' logs are printed first.
pub struct LabGuard(Option<Lab>);

impl LabGuard {
    /// The lab, mutable (to restart its processes).
    pub fn lab_mut(&mut self) -> &mut Lab {
        self.0.as_mut().expect("lab present until drop")
    }

    /// Tears the lab down now.
    pub fn down(mut self) {
        if let Some(lab) = self.0.take() {
            lab.down().expect("lab down");
        }
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let Some(lab) = self.0.take() else {
            return;
        };
        if std::thread::panicking() {
            dump_logs(&lab);
        }
        if let Err(e) = lab.down() {
            eprintln!("lab teardown: {e}");
        }
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.0.as_ref().expect("lab present until drop")
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn dump_logs(lab: &Lab) {
    let root = &lab.state().root;
    eprintln!(
        "--- {}/console.log (tail) ---\n{}",
        root.display(),
        tail(&root.join("console.log"), 30)
    );
    for h in &lab.state().hosts {
        eprintln!(
            "--- {} agent.log (tail) ---\n{}",
            h.name,
            tail(&h.data_dir.join("agent.log"), 30)
        );
        eprintln!(
            "--- {} switch.log (tail) ---\n{}",
            h.name,
            tail(&h.data_dir.join("switch.log"), 15)
        );
        eprintln!(
            "--- {} guard.log (tail) ---\n{}",
            h.name,
            tail(&h.data_dir.join("guard.log"), 15)
        );
        let vms = std::fs::read_dir(h.data_dir.join("vms"))
            .into_iter()
            .flatten();
        for dir in vms.flatten() {
            let serial = dir.path().join("run/serial.log");
            if serial.exists() {
                eprintln!(
                    "--- {} {} (tail) ---\n{}",
                    h.name,
                    serial.display(),
                    tail(&serial, 8)
                );
            }
        }
    }
}

/// True when labs can run here (root, `ip`, QEMU installed). Otherwise the test is skipped (a
/// `SKIPPED:` line), or fails under CI (`CI` set): see `vinfra_testenv`.
pub fn can_run_labs() -> bool {
    vinfra_testenv::Needs::new()
        .root()
        .program("ip")
        .program("qemu-system-x86_64")
        .met()
}

/// Brings up lab `it-<tag>` with `hosts` hosts, after `adjust` has changed its configuration.
/// A leftover lab of the same name (from a killed earlier run) is torn down first.
pub fn start_lab_with(tag: &str, hosts: usize, adjust: impl FnOnce(&mut LabConfig)) -> LabGuard {
    start_named_lab(&format!("it-{tag}"), hosts, adjust)
}

/// Brings up lab `name` with `hosts` hosts, after `adjust` has changed its configuration.
/// A leftover lab of the same name (from a killed earlier run) is torn down first.
pub fn start_named_lab(name: &str, hosts: usize, adjust: impl FnOnce(&mut LabConfig)) -> LabGuard {
    let name = name.to_string();
    let mut config = LabConfig::new(&name, VINFRA.into());
    config.hosts = hosts;
    config.root = std::env::temp_dir().join(format!("vinfra-lab-{name}"));
    if let Some(dir) = std::env::var_os(GUEST_DIR_VAR) {
        config.guest_image_dir = dir.into();
    }
    adjust(&mut config);
    if config.root.exists() || !vinfra_lab::net::lab_namespaces(&name).is_empty() {
        eprintln!("tearing down a leftover lab '{name}'");
        if let Err(e) = Lab::destroy(&name, &config.root) {
            eprintln!("leftover lab '{name}': {e}");
        }
    }
    let lab = Lab::up(config)
        .unwrap_or_else(|e| panic!("lab up '{name}': {}", vinfra_types::error::Chain(&e)));
    LabGuard(Some(lab))
}

/// Brings up lab `it-<tag>` with `hosts` hosts and the default configuration.
pub fn start_lab(tag: &str, hosts: usize) -> LabGuard {
    start_lab_with(tag, hosts, |_| {})
}

/// The lab's REST client.
pub fn api(lab: &Lab) -> Client {
    lab.api()
        .unwrap_or_else(|e| panic!("API client: {}", vinfra_types::error::Chain(&e)))
}

/// The VM `name`, as the API shows it.
pub fn vm(lab: &Lab, name: &str) -> VmSummary {
    api(lab)
        .vm(name)
        .unwrap_or_else(|e| panic!("GET VM {name}: {}", vinfra_types::error::Chain(&e)))
}

/// Every VM, as the API lists them.
pub fn vms(lab: &Lab) -> Vec<VmSummary> {
    api(lab)
        .vms()
        .unwrap_or_else(|e| panic!("GET VMs: {}", vinfra_types::error::Chain(&e)))
}

/// Names of the VMs the API lists, sorted.
pub fn vm_names(lab: &Lab) -> Vec<String> {
    let mut names: Vec<String> = vms(lab).into_iter().map(|v| v.name).collect();
    names.sort();
    names
}

/// Creates a guest VM and waits until its console shows `VINFRA-GUEST BOOTED`.
pub fn boot_guest(lab: &Lab, name: &str, memory_mib: u64, host: Option<&str>) -> VmSummary {
    let vm = lab
        .create_guest_vm(name, memory_mib, host)
        .unwrap_or_else(|e| panic!("create VM {name}: {}", vinfra_types::error::Chain(&e)));
    lab.wait_console(name, "VINFRA-GUEST BOOTED", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("VM {name} did not boot: {}", vinfra_types::error::Chain(&e)));
    vm
}

/// Creates a guest VM with `options` added to its kernel command line (`vinfra.dirty=8`,
/// `vinfra.ignore_acpi=1`, …) and waits until its console shows `VINFRA-GUEST BOOTED`.
pub fn boot_guest_with(
    lab: &Lab,
    name: &str,
    memory_mib: u64,
    host: Option<&str>,
    options: &str,
) -> VmSummary {
    let mut req = Lab::guest_vm_request(name, memory_mib, host);
    if let BootSource::Kernel { cmdline, .. } = &mut req.spec.boot {
        cmdline.push(' ');
        cmdline.push_str(options);
    }
    let vm = api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create VM {name}: {}", vinfra_types::error::Chain(&e)));
    lab.wait_console(name, "VINFRA-GUEST BOOTED", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("VM {name} did not boot: {}", vinfra_types::error::Chain(&e)));
    vm
}

/// Polls `f` every 200 ms until it returns `Some`, at most `timeout`; panics naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One `VINFRA-COUNTER <n> <uptime> …` line of the guest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    pub n: u64,
    pub uptime: f64,
}

/// The complete counter lines of a serial-console text, in order. A line cut at either end
/// (the text is a tail, or a migration switched over mid-line) is skipped.
pub fn counters(text: &str) -> Vec<Tick> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        let Some(rest) = line.strip_prefix("VINFRA-COUNTER ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let n = fields.next().and_then(|f| f.parse().ok());
        let uptime = fields.next().and_then(|f| f.parse().ok());
        if let (Some(n), Some(uptime)) = (n, uptime) {
            out.push(Tick { n, uptime });
        }
    }
    out
}

/// The serial console of `name` as the API shows it (last 256 KiB).
pub fn console_text(lab: &Lab, name: &str) -> String {
    api(lab)
        .console_log(name, Some(262_144))
        .unwrap_or_else(|e| panic!("console of {name}: {}", vinfra_types::error::chain(&e)))
        .text
}

/// The last counter on the console of `name` (through the API), if any.
pub fn last_tick(lab: &Lab, name: &str) -> Option<Tick> {
    counters(&console_text(lab, name)).last().copied()
}

/// Waits until the console of `name` shows a counter above `above`; returns the last one.
pub fn wait_tick_above(lab: &Lab, name: &str, above: u64) -> Tick {
    wait_for(
        &format!("a counter above {above} on the console of {name}"),
        Duration::from_secs(60),
        || last_tick(lab, name).filter(|t| t.n > above),
    )
}

/// Asserts that counters increase strictly, one by one, in `ticks`.
pub fn assert_counting(ticks: &[Tick], what: &str) {
    for w in ticks.windows(2) {
        assert_eq!(
            w[1].n,
            w[0].n + 1,
            "{what}: counter jumps from {} to {}",
            w[0].n,
            w[1].n
        );
        assert!(
            w[1].uptime >= w[0].uptime,
            "{what}: uptime goes back from {} to {}",
            w[0].uptime,
            w[1].uptime
        );
    }
}

/// The progress of the current or last migration of `name`.
pub fn migration(lab: &Lab, name: &str) -> MigrationProgress {
    api(lab).migration(name).unwrap_or_else(|e| {
        panic!(
            "GET migration of {name}: {}",
            vinfra_types::error::Chain(&e)
        )
    })
}

/// Waits until the migration of `name` has ended; returns its last progress.
pub fn wait_migration_end(lab: &Lab, name: &str) -> MigrationProgress {
    wait_for(
        &format!("the migration of {name} to end"),
        Duration::from_secs(240),
        || Some(migration(lab, name)).filter(|p| p.phase.is_final()),
    )
}

/// Migrates `name` to `host` through the API and waits until the migration has completed
/// (a migration that ends otherwise fails the test).
pub fn migrate_to(lab: &Lab, name: &str, host: &str) -> MigrationProgress {
    api(lab)
        .migrate_vm(
            name,
            &vinfra_types::api::MigrateVmRequest {
                to: Some(host.into()),
            },
        )
        .unwrap_or_else(|e| panic!("migrate {name}: {}", vinfra_types::error::Chain(&e)));
    let end = wait_migration_end(lab, name);
    assert_eq!(
        end.phase,
        vinfra_types::MigrationPhase::Completed,
        "{name}'s migration to {host}: {end:?}"
    );
    end
}

/// Every QEMU process on the machine with `id` in its command line.
pub fn qemus_with(id: &str) -> Vec<u32> {
    vinfra_lab::qemu_pids_mentioning(id)
}

/// Waits until `host` has no QEMU and no VM directory for the VM `id`.
pub fn wait_nothing_left_on(lab: &Lab, host: &str, id: &str) {
    let dir = lab.vm_dir(host, id).expect("host");
    wait_for(
        &format!("host {host} to have no QEMU and no directory for VM {id}"),
        Duration::from_secs(30),
        || {
            let pids = lab.qemu_pids_on(host, id).expect("host");
            (pids.is_empty() && !dir.exists()).then_some(())
        },
    );
}

/// Names in directory `dir` (empty when it does not exist), sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Borrows `(name, value)` pairs for [`vinfra`].
pub fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Connection settings of the lab's API as `VINFRA_*` variables for the CLI.
pub fn cli_env(lab: &Lab) -> Vec<(String, String)> {
    let c = lab.api_access().expect("API access");
    vec![
        ("VINFRA_URL".into(), c.url),
        ("VINFRA_TOKEN".into(), c.token),
        ("VINFRA_CA".into(), c.ca_file.display().to_string()),
    ]
}

/// The `vinfra` binary with `args`, a clean environment (no config file, no VINFRA_*
/// variables) plus `env`, and `home` as its home directory.
fn vinfra_command(args: &[&str], env: &[(&str, &str)], home: &Path) -> Command {
    let mut cmd = Command::new(VINFRA);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME");
    for var in ["VINFRA_URL", "VINFRA_TOKEN", "VINFRA_CA", "VINFRA_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs the `vinfra` binary with a clean environment (no config file, no VINFRA_* variables)
/// plus `env`.
pub fn vinfra(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("temp dir");
    vinfra_command(args, env, home.path())
        .output()
        .expect("run vinfra")
}

/// A `vinfra` command started by [`spawn_vinfra`]; killed if dropped before it ended.
pub struct Running {
    child: Option<Child>,
    _home: tempfile::TempDir,
}

impl Running {
    /// The command's standard input (piped by [`spawn_vinfra_typing`]), once.
    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    /// The command's standard output, once: what it writes is then read from it alone.
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// Kills the command (if it still runs) and returns what it wrote (but what was taken with
    /// [`Running::stdout`]) and how it ended.
    pub fn stop(mut self) -> Output {
        let mut child = self.child.take().expect("a running command");
        let _ = child.kill();
        child.wait_with_output().expect("the command's output")
    }

    /// Waits up to `timeout` for the command to end; its output, or a panic naming `what`.
    pub fn wait(mut self, what: &str, timeout: Duration) -> Output {
        let mut child = self.child.take().expect("a running command");
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{what} still ran after {} s", timeout.as_secs());
                }
                Err(e) => panic!("{what}: {}", vinfra_types::error::Chain(&e)),
            }
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{what}: {}", vinfra_types::error::Chain(&e)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the `vinfra` binary as [`vinfra`] runs it, without waiting for it; stdout and stderr
/// are piped.
pub fn spawn_vinfra(args: &[&str], env: &[(&str, &str)]) -> Running {
    spawn_with_stdin(args, env, Stdio::null())
}

/// [`spawn_vinfra`] with its standard input piped ([`Running::stdin`]).
pub fn spawn_vinfra_typing(args: &[&str], env: &[(&str, &str)]) -> Running {
    spawn_with_stdin(args, env, Stdio::piped())
}

fn spawn_with_stdin(args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Running {
    let home = tempfile::tempdir().expect("temp dir");
    let child = vinfra_command(args, env, home.path())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vinfra");
    Running {
        child: Some(child),
        _home: home,
    }
}

/// Asserts a failure with exit code `code` and exactly one line on stderr starting `vinfra: `
/// and containing `contains`.
pub fn assert_one_line_error(out: &Output, code: i32, contains: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line expected on stderr, got: {stderr}"
    );
    assert!(stderr.starts_with("vinfra: "), "{stderr}");
    assert!(
        stderr.contains(contains),
        "expected '{contains}' in: {stderr}"
    );
}

/// The path of the serial log of VM `id` on `host`.
pub fn serial_log(lab: &Lab, host: &str, id: &str) -> PathBuf {
    lab.vm_dir(host, id).expect("host").join("run/serial.log")
}

/// The whole serial log of VM `id` on `host` ("" while there is none).
pub fn serial_text(lab: &Lab, host: &str, id: &str) -> String {
    std::fs::read_to_string(serial_log(lab, host, id)).unwrap_or_default()
}

/// The events about `object` (a VM's or host's name), oldest first.
pub fn events_about(lab: &Lab, object: &str) -> Vec<Event> {
    api(lab)
        .events()
        .unwrap_or_else(|e| panic!("GET events: {}", vinfra_types::error::Chain(&e)))
        .into_iter()
        .filter(|e| e.object == object)
        .collect()
}

/// Complete lines of a console text (a line cut at either end is skipped).
pub fn console_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| l.trim_end_matches('\r'))
}

/// The results of the complete `VINFRA-PING <target> ok ttl=<TTL>|fail` lines of a lab guest's
/// console text (`vinfra.ping=<target>`), in order (`true`: ok).
pub fn ping_results(text: &str, target: &str) -> Vec<bool> {
    ping_ttls(text, target)
        .into_iter()
        .map(|t| t.is_some())
        .collect()
}

/// Like [`ping_results`], with the reply's TTL for each ok (`Some(None)` when the guest could
/// not read it): `None` for a fail.
pub fn ping_ttls(text: &str, target: &str) -> Vec<Option<Option<u8>>> {
    let prefix = format!("VINFRA-PING {target} ");
    console_lines(text)
        .filter_map(|l| match l.strip_prefix(&prefix)? {
            "fail" => Some(None),
            "ok" => Some(Some(None)),
            ok => Some(Some(ok.strip_prefix("ok ttl=")?.parse().ok())),
        })
        .collect()
}

/// The ping results of VM `name` pinging `target` so far (see [`ping_results`]).
pub fn vm_pings(lab: &Lab, name: &str, target: &str) -> Vec<bool> {
    ping_results(&console_text(lab, name), target)
}

/// How a lab guest created by [`create_nic_vm`] takes its NIC's address.
#[derive(Debug, Clone, Copy)]
pub enum NicAddress<'a> {
    /// The NIC asks for this address, and the guest is told it on its command line
    /// (`vinfra.ip=ADDR/PREFIX`, the prefix of the network's subnet).
    Static(&'a str),
    /// The console picks the address, and the guest asks its host's switch for it by DHCP
    /// (`vinfra.dhcp=1`).
    Dhcp,
}

/// Creates (and starts) a lab guest on `host` with one NIC on `network`, taking its address as
/// `address` says, with `options` added to its kernel command line.
pub fn create_nic_vm(
    lab: &Lab,
    name: &str,
    host: &str,
    network: &str,
    address: NicAddress,
    options: &str,
) -> VmSummary {
    let address = match address {
        NicAddress::Static(ip) => {
            let ip = ip.parse().unwrap_or_else(|e| {
                panic!("{name}'s address {ip}: {}", vinfra_types::error::Chain(&e))
            });
            lab.static_address(network, ip).unwrap_or_else(|e| {
                panic!(
                    "{name}'s address on {network}: {}",
                    vinfra_types::error::Chain(&e)
                )
            })
        }
        NicAddress::Dhcp => GuestAddress::Dhcp,
    };
    let mut req = Lab::guest_nic_vm_request(name, 128, Some(host), network, address);
    if let vinfra_types::BootSource::Kernel { cmdline, .. } = &mut req.spec.boot {
        cmdline.push(' ');
        cmdline.push_str(options);
    }
    api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create VM {name}: {}", vinfra_types::error::Chain(&e)))
}

/// Runs `f` on a thread inside the network namespace `ns` (`/run/netns/<ns>`, a lab host's):
/// sockets it opens are that host's.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
}

/// A `newc` cpio archive of `entries` (path, mode, contents), with its trailer.
fn cpio(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let pad = |out: &mut Vec<u8>| out.resize(out.len().next_multiple_of(4), 0);
    let trailer = ("TRAILER!!!", 0, &[][..]);
    for (ino, (path, mode, data)) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [
            ino + 1,
            *mode as usize,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            path.len() + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(path.as_bytes());
        out.push(0);
        pad(&mut out);
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out
}

/// The start of a role-playing guest's script (see [`install_role_initrd`]): waits until the
/// image's init has set eth0's address, sends its output to the console, sets `$role` from
/// `DIR.role=` on the kernel command line, and defines `probe HOST PORT` (prints the answer of
/// [`SERVE_SCRIPT`] to a `probe` line there, `none` when there is none within 2 s).
fn role_prelude(dir: &str) -> String {
    r#"#!/bin/sh
export PATH=/bin:/sbin
until /bin/busybox ip addr show dev eth0 2>/dev/null | /bin/busybox grep -q 'inet '; do
    /bin/busybox sleep 0.2
done
exec >/dev/console 2>&1
role=
for arg in $(cat /proc/cmdline); do
    case $arg in @DIR@.role=*) role=${arg#@DIR@.role=} ;; esac
done
probe() {
    r=$(echo probe | nc -w 2 "$1" "$2" 2>/dev/null)
    echo "${r:-none}"
}
"#
    .replace("@DIR@", dir)
}

/// Writes `file` into the lab's image directory: the guest image's initramfs with a test's
/// role-playing scripts under `/DIR/`: `init` (the kernel starts it with `rdinit=/DIR/init`:
/// `role.sh` in the background, then the image's own init, which it becomes; the shell opens
/// /dev/null for a background job and the image's init mounts /dev later, so it makes one),
/// `role.sh` (the prelude of [`role_prelude`], then `body`, which plays `$role`), `serve.sh`
/// ([`SERVE_SCRIPT`]) and the `extra` files (name, contents; executable).
pub fn install_role_initrd(lab: &Lab, file: &str, dir: &str, body: &str, extra: &[(&str, &[u8])]) {
    let init = format!(
        "#!/bin/sh\n[ -e /dev/null ] || /bin/busybox mknod -m 666 /dev/null c 1 3\n\
         /bin/sh /{dir}/role.sh &\nexec /init \"$@\"\n"
    );
    let role = role_prelude(dir) + body;
    let named = |name: &str| format!("{dir}/{name}");
    let mut files: Vec<(String, u32, &[u8])> = vec![
        (dir.to_string(), 0o040_755, b""),
        (named("init"), 0o100_755, init.as_bytes()),
        (named("role.sh"), 0o100_755, role.as_bytes()),
        (named("serve.sh"), 0o100_755, SERVE_SCRIPT.as_bytes()),
    ];
    files.extend(extra.iter().map(|(n, c)| (named(n), 0o100_755, *c)));
    let entries: Vec<(&str, u32, &[u8])> =
        files.iter().map(|(n, m, c)| (n.as_str(), *m, *c)).collect();
    install_test_initrd(lab, file, &entries);
}

/// A server script for a test's guests (`nc -ll -e`): a `probe` line is answered `pong`, a
/// `stream` line with a number every half second, for ever.
pub const SERVE_SCRIPT: &str = r#"#!/bin/sh
read line
case $line in
probe) echo pong ;;
stream)
    n=0
    while :; do
        n=$((n + 1))
        echo "$n" || exit 0
        sleep 0.5
    done
    ;;
esac
"#;

/// Runs `vinfra args` against the lab; its stdout, or a panic with its stderr.
pub fn cli(lab: &Lab, args: &[&str]) -> String {
    let env = cli_env(lab);
    let out = vinfra(args, &refs(&env));
    assert!(
        out.status.success(),
        "vinfra {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Writes `file` into the lab's image directory: the guest image's initramfs, then (at a 4-byte
/// boundary, where the kernel looks for a further archive) `entries` (path, mode, contents), so
/// a test's scripts run in its guests (`rdinit=`).
pub fn install_test_initrd(lab: &Lab, file: &str, entries: &[(&str, u32, &[u8])]) {
    let images = lab.datastore().join("images");
    let mut initrd =
        std::fs::read(images.join(vinfra_lab::guest::INITRD_IMAGE)).expect("the guest initramfs");
    initrd.resize(initrd.len().next_multiple_of(512), 0);
    initrd.extend(cpio(entries));
    std::fs::write(images.join(file), initrd).expect("write the test's initramfs");
}
