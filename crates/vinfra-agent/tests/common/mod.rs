//! Helpers shared by the agent's QEMU tests: the guest image, a datastore holding it, and a guard
//! that kills leftover test guests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
