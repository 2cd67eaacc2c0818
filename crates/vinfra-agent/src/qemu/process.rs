//! QEMU processes by pid: the pidfile, liveness, "is this pid still our QEMU", signals, and the
//! version of the binary.

use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::error::QemuError;

/// The pid in a QEMU pidfile, if the file exists and holds one.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<u32>().ok().filter(|p| *p > 1)
}

fn nix_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .map(Pid::from_raw)
}

/// True when a process `pid` exists (zombies included).
pub fn pid_alive(pid: u32) -> bool {
    match nix_pid(pid) {
        Some(p) => !matches!(
            nix::sys::signal::kill(p, None),
            Err(nix::errno::Errno::ESRCH)
        ),
        None => false,
    }
}

/// True when `pid` is a live QEMU started for the VM whose QMP socket is `qmp_socket`: its command
/// line names that socket. Guards against a reused pid. Zombies (empty command line) are not.
pub fn is_our_qemu(pid: u32, qmp_socket: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = format!("unix:{},", qmp_socket.to_string_lossy().replace(',', ",,"));
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == needle.as_bytes() || arg.starts_with(needle.as_bytes()))
}

/// The real, effective, saved and file-system users of process `pid` (empty when it is gone).
pub fn uids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            line.split_whitespace().map(|u| u.parse().ok()).collect()
        })
        .unwrap_or_default()
}

/// Sends `signal` to `pid`. A process already gone is not an error.
pub fn kill(pid: u32, signal: Signal) -> Result<(), QemuError> {
    let Some(p) = nix_pid(pid) else {
        return Ok(());
    };
    match nix::sys::signal::kill(p, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(source) => Err(QemuError::Signal { pid, source }),
    }
}

/// `major.minor.micro` of `binary --version`.
pub fn qemu_version(binary: &Path) -> Result<String, QemuError> {
    let out = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| QemuError::Spawn {
            binary: binary.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| QemuError::Version(text.lines().next().unwrap_or("").into()))
}

pub use vinfra_types::host::tcg_migration_loses_writes;

/// Whether QEMU `version`'s virtio-net offers the guest UDP segmentation offload (`host_uso`,
/// QEMU 8.2 and later, when the tap takes it): the host's switch takes TCP segments only, so a
/// NIC on a tap turns it off (the guest then cuts its UDP datagrams itself).
pub fn virtio_net_offers_uso(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next().flatten();
    let minor = parts.next().flatten().unwrap_or(0);
    major.is_some_and(|m| (m, minor) >= (8, 2))
}

fn parse_version(text: &str) -> Option<String> {
    let rest = text.split("version ").nth(1)?;
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uso_from_qemu_8_2() {
        assert!(!virtio_net_offers_uso("7.2.22"));
        assert!(!virtio_net_offers_uso("8.1.5"));
        assert!(virtio_net_offers_uso("8.2.0"));
        assert!(virtio_net_offers_uso("9.0"));
        assert!(!virtio_net_offers_uso("garbage"));
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n")
                .as_deref(),
            Some("7.2.22")
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn tcg_dirty_tracking_fixed_in_9_0() {
        assert!(tcg_migration_loses_writes("7.2.22"));
        assert!(tcg_migration_loses_writes("8.2.2"));
        assert!(!tcg_migration_loses_writes("9.0.0"));
        assert!(!tcg_migration_loses_writes("10.1"));
        assert!(!tcg_migration_loses_writes("garbage"));
    }

    #[test]
    fn pids() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0) && !pid_alive(u32::MAX));
        assert!(!is_our_qemu(
            std::process::id(),
            Path::new("/nonexistent/qmp.sock")
        ));
        kill(u32::MAX, Signal::SIGTERM).unwrap();
    }
}
