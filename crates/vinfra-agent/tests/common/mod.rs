//! Helpers shared by the agent's QEMU tests: the guest image, a datastore holding it, and a guard
//! that kills leftover test guests.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_agent::qemu::qmp::QemuRunner;
use vinfra_agent::{Manager, ManagerConfig};
use vinfra_proto::VmInstance;
use vinfra_types::{Accel, BootSource, DiskSpec, NicSpec, VmSpec};

pub const QEMU: &str = "qemu-system-x86_64";
pub const GUEST_CACHE: &str = "/var/cache/vinfra/guest";

/// Whether QEMU is installed; without it the test is skipped, or fails under CI
/// (`vinfra_testenv`).
pub fn qemu_present() -> bool {
    vinfra_testenv::Needs::new().program(QEMU).met()
}

/// Whether network namespaces can be made here (root, `ip`); same rule.
pub fn netns_present() -> bool {
    vinfra_testenv::Needs::new().root().program("ip").met()
}

/// Whether guests can run in network namespaces here (root, `ip`, QEMU); same rule.
pub fn netns_and_qemu() -> bool {
    vinfra_testenv::Needs::new()
        .root()
        .program("ip")
        .program(QEMU)
        .met()
}

/// The guest image directory, (re)built by `scripts/build-guest-image.sh` when missing or out of
/// date (the script returns at once when it is current). Serialized across the tests of a binary.
pub fn guest_image() -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(GUEST_CACHE);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-guest-image.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "build-guest-image.sh failed");
    dir
}

/// A datastore under `root` with the guest kernel and initrd in `images/`.
pub fn datastore(root: &Path) -> PathBuf {
    let img = guest_image();
    let ds = root.join("datastore");
    std::fs::create_dir_all(ds.join("images")).unwrap();
    std::fs::copy(img.join("vmlinuz"), ds.join("images/vinfra-guest-vmlinuz")).unwrap();
    std::fs::copy(
        img.join("initrd.img"),
        ds.join("images/vinfra-guest-initrd.img"),
    )
    .unwrap();
    ds
}

/// Kills, on drop (also when a test panics), every QEMU whose command line names the directory: test
/// guests are daemonized and would otherwise outlive a failed test.
pub struct KillQemusUnder(pub PathBuf);

impl Drop for KillQemusUnder {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.starts_with(QEMU) && cmd.contains(&needle) {
                let _ = vinfra_agent::qemu::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// A manager for an agent with its files in `data_dir`, on datastore `ds`, at 127.0.0.1, whose
/// QEMUs run under TCG without a guard.
pub async fn manager(data_dir: &Path, ds: &Path) -> Manager {
    Manager::open(ManagerConfig {
        data_dir: data_dir.to_path_buf(),
        datastore: ds.to_path_buf(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        runner: Arc::new(QemuRunner {
            binary: QEMU.into(),
            accel: Accel::Tcg,
            guard: None,
        }),
        switch: None,
    })
    .await
    .unwrap()
    .with_padded_ram(loses_writes())
}

/// Whether this machine's QEMU loses a guest's writes in a migration under TCG (before 9.0):
/// then `vinfra agent` pads guest memory ([`Manager::with_padded_ram`]), and so do the tests'
/// managers.
pub fn loses_writes() -> bool {
    vinfra_agent::qemu::qemu_version(Path::new(QEMU))
        .is_ok_and(|v| vinfra_agent::qemu::tcg_migration_loses_writes(&v))
}

/// A 1-vCPU, 128-MiB VM booting the guest kernel, with `disks` and no NIC.
pub fn instance(name: &str, disks: Vec<DiskSpec>) -> VmInstance {
    instance_with(name, "", disks, vec![])
}

/// A 1-vCPU, 128-MiB VM booting the guest kernel with `cmdline` after its console arguments
/// (the guest's `vinfra.*` settings), with `disks` and `nics`.
pub fn instance_with(
    name: &str,
    cmdline: &str,
    disks: Vec<DiskSpec>,
    nics: Vec<NicSpec>,
) -> VmInstance {
    let cmdline = match cmdline {
        "" => "console=ttyS0 quiet".to_string(),
        more => format!("console=ttyS0 quiet {more}"),
    };
    VmInstance {
        id: Uuid::new_v4(),
        spec: VmSpec {
            name: name.into(),
            vcpus: 1,
            memory_mib: 128,
            boot: BootSource::Kernel {
                kernel: "vinfra-guest-vmlinuz".into(),
                initrd: Some("vinfra-guest-initrd.img".into()),
                cmdline,
            },
            disks,
            nics,
            ha: Default::default(),
        },
        started_at: None,
        slot: None,
        platform: None,
    }
}

/// Waits until the serial log at `path` has `needle`, returns its text.
pub async fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no '{needle}' in {} within {timeout:?}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `VINFRA-COUNTER` number in a serial log.
pub fn last_counter(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("VINFRA-COUNTER "))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .next_back()
}
