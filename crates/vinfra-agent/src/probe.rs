//! Which accelerator works on this host.
//!
//! `/dev/kvm` existing does not mean a guest boots under it, so KVM is tried for real: the
//! datastore's probe guest (`images/vinfra-guest-vmlinuz` and `images/vinfra-guest-initrd.img`)
//! boots with `vinfra.probe=1`, prints `VINFRA-PROBE-OK` and powers off. No marker within the
//! timeout means TCG. The answer is cached in `<data_dir>/accel.json` per QEMU version.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;
use vinfra_types::Accel;

/// Kernel of the probe guest, in the datastore's `images/`.
pub const PROBE_KERNEL: &str = "vinfra-guest-vmlinuz";
/// Initrd of the probe guest, in the datastore's `images/`.
pub const PROBE_INITRD: &str = "vinfra-guest-initrd.img";
/// Marker the probe guest prints.
pub const PROBE_MARKER: &str = "VINFRA-PROBE-OK";
/// How long the KVM probe guest may take by default.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors of the probe itself (a failed KVM boot is not an error: it means TCG).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// a file of the probe could not be written or read
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    qemu_version: String,
    accel: Accel,
}

/// The accelerator to use: the cached answer for this QEMU version, else a fresh probe.
pub async fn detect_accel(
    qemu: &Path,
    qemu_version: &str,
    datastore: &Path,
    data_dir: &Path,
    timeout: Duration,
) -> Result<Accel, ProbeError> {
    let cache = data_dir.join("accel.json");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Ok(c) = serde_json::from_str::<Cached>(&text) {
            if c.qemu_version == qemu_version {
                return Ok(c.accel);
            }
        }
    }
    let accel = probe(qemu, datastore, data_dir, timeout).await?;
    let text = serde_json::to_string(&Cached {
        qemu_version: qemu_version.into(),
        accel,
    })
    .unwrap_or_default();
    crate::files::write_atomic(&cache, text.as_bytes()).map_err(|source| ProbeError::Io {
        path: cache.clone(),
        source,
    })?;
    Ok(accel)
}

/// Boots the probe guest under KVM; `Kvm` only when it printed [`PROBE_MARKER`] in time.
pub async fn probe(
    qemu: &Path,
    datastore: &Path,
    data_dir: &Path,
    timeout: Duration,
) -> Result<Accel, ProbeError> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        tracing::info!("/dev/kvm is not usable: VMs run under TCG");
        return Ok(Accel::Tcg);
    }
    let kernel = datastore.join("images").join(PROBE_KERNEL);
    let initrd = datastore.join("images").join(PROBE_INITRD);
    if !kernel.is_file() || !initrd.is_file() {
        tracing::warn!(
            "probe guest missing ({} / {}): cannot check KVM, VMs run under TCG",
            kernel.display(),
            initrd.display()
        );
        return Ok(Accel::Tcg);
    }
    std::fs::create_dir_all(data_dir).map_err(|source| ProbeError::Io {
        path: data_dir.into(),
        source,
    })?;
    let log = data_dir.join("probe-serial.log");
    let _ = std::fs::remove_file(&log);
    let child = Command::new(qemu)
        .args([
            "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "128M", "-smp", "1",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 vinfra.probe=1 panic=-1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "cannot run {} for the KVM probe ({e}): VMs run under TCG",
                qemu.display()
            );
            return Ok(Accel::Tcg);
        }
    };
    let seen = async {
        loop {
            if std::fs::read_to_string(&log)
                .map(|t| t.contains(PROBE_MARKER))
                .unwrap_or(false)
            {
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return std::fs::read_to_string(&log)
                    .map(|t| t.contains(PROBE_MARKER))
                    .unwrap_or(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ok = tokio::time::timeout(timeout, seen).await.unwrap_or(false);
    let _ = child.kill().await;
    let accel = if ok { Accel::Kvm } else { Accel::Tcg };
    tracing::info!(
        "KVM probe: {}",
        if ok {
            "guest booted, using KVM"
        } else {
            "no guest boot, using TCG"
        }
    );
    Ok(accel)
}
