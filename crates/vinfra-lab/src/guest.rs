//! The lab's test guest (a Debian cloud kernel and a busybox initramfs), built by
//! `scripts/build-guest-image.sh`, which is embedded here so that the `vinfra` binary can build it
//! from anywhere.
//!
//! The guest's init reads its kernel command line (the script's header lists every
//! `vinfra.*` option). Its NIC gets an address only from there: [`GuestAddress`] says which
//! option a VM with a NIC needs, `vinfra.ip=ADDR/PREFIX` or `vinfra.dhcp=1`. The console never
//! adds one.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The guest image build script.
pub const BUILD_SCRIPT: &str = include_str!("../../../scripts/build-guest-image.sh");

/// File name of the guest kernel in a datastore's `images/` directory.
pub const KERNEL_IMAGE: &str = "vinfra-guest-vmlinuz";
/// File name of the guest initramfs in a datastore's `images/` directory.
pub const INITRD_IMAGE: &str = "vinfra-guest-initrd.img";

/// How a lab guest configures its first NIC (`eth0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestAddress {
    /// The NIC asks the console for `ip`, and the guest sets `ip/prefix` itself
    /// (`vinfra.ip=ADDR/PREFIX`), and its default route when the network has a gateway.
    Static {
        /// The address.
        ip: Ipv4Addr,
        /// The prefix length of the network's subnet.
        prefix: u8,
        /// The network's gateway, the guest's default route (`vinfra.gw=IP`), if it has one.
        gateway: Option<Ipv4Addr>,
    },
    /// The console's IPAM picks the address, and the guest asks its host's switch for it by
    /// DHCP, with the network's prefix, gateway and MTU (`vinfra.dhcp=1`).
    Dhcp,
}

impl GuestAddress {
    /// The kernel command line option that tells the guest.
    pub fn kernel_arg(&self) -> String {
        match self {
            GuestAddress::Static {
                ip,
                prefix,
                gateway: None,
            } => format!("vinfra.ip={ip}/{prefix}"),
            GuestAddress::Static {
                ip,
                prefix,
                gateway: Some(gw),
            } => format!("vinfra.ip={ip}/{prefix} vinfra.gw={gw}"),
            GuestAddress::Dhcp => "vinfra.dhcp=1".into(),
        }
    }

    /// The address the NIC asks the console for, if any.
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        match self {
            GuestAddress::Static { ip, .. } => Some(*ip),
            GuestAddress::Dhcp => None,
        }
    }
}

/// Why the guest image could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The build script could not be written to a temporary file.
    #[error("cannot write the guest build script")]
    Script(#[source] std::io::Error),
    /// The build script could not be run.
    #[error("cannot run the guest build script")]
    Spawn(#[source] std::io::Error),
    /// The build script failed.
    #[error("building the guest image into {dir} failed ({status}): {output}")]
    Build {
        /// Where the image was to be built.
        dir: PathBuf,
        /// How the script exited.
        status: std::process::ExitStatus,
        /// Its last three lines of output, joined with `; `.
        output: String,
    },
    /// An image could not be copied into the datastore.
    #[error("cannot copy {from} to {to}")]
    Copy {
        /// The built image.
        from: PathBuf,
        /// Its place in the datastore.
        to: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// True when `dir` holds an image built by this very script.
pub fn is_current(dir: &Path) -> bool {
    let sum = hex::encode(Sha256::digest(BUILD_SCRIPT.as_bytes()));
    dir.join("vmlinuz").is_file()
        && dir.join("initrd.img").is_file()
        && std::fs::read_to_string(dir.join(".build-id"))
            .is_ok_and(|id| id.split_whitespace().last() == Some(sum.as_str()))
}

/// Builds the guest image into `dir` unless it is already there and current.
pub fn ensure(dir: &Path) -> Result<(), GuestError> {
    if is_current(dir) {
        return Ok(());
    }
    let mut script = tempfile::Builder::new()
        .prefix("vinfra-build-guest-image.")
        .suffix(".sh")
        .tempfile()
        .map_err(GuestError::Script)?;
    script
        .write_all(BUILD_SCRIPT.as_bytes())
        .map_err(GuestError::Script)?;
    script.flush().map_err(GuestError::Script)?;
    tracing::info!(dir = %dir.display(), "building the guest image");
    let out = Command::new("bash")
        .arg(script.path())
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(GuestError::Spawn)?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let output = last[last.len().saturating_sub(3)..].join("; ");
        return Err(GuestError::Build {
            dir: dir.to_path_buf(),
            status: out.status,
            output,
        });
    }
    Ok(())
}

/// Copies the guest kernel and initramfs from `dir` into `images` under their datastore names.
pub fn install(dir: &Path, images: &Path) -> Result<(), GuestError> {
    for (from, to) in [("vmlinuz", KERNEL_IMAGE), ("initrd.img", INITRD_IMAGE)] {
        let (from, to) = (dir.join(from), images.join(to));
        std::fs::copy(&from, &to).map_err(|source| GuestError::Copy { from, to, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_is_told_its_address_on_its_command_line() {
        let ip = Ipv4Addr::new(10, 80, 1, 20);
        let a = GuestAddress::Static {
            ip,
            prefix: 24,
            gateway: None,
        };
        assert_eq!(a.kernel_arg(), "vinfra.ip=10.80.1.20/24");
        assert_eq!(a.requested_ip(), Some(ip));
        let routed = GuestAddress::Static {
            ip,
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 80, 1, 1)),
        };
        assert_eq!(
            routed.kernel_arg(),
            "vinfra.ip=10.80.1.20/24 vinfra.gw=10.80.1.1"
        );
        assert_eq!(GuestAddress::Dhcp.kernel_arg(), "vinfra.dhcp=1");
        assert_eq!(GuestAddress::Dhcp.requested_ip(), None);
        // The options the guest's init understands, as the build script spells them.
        for option in [
            "vinfra.ip=*)",
            "vinfra.gw=*)",
            "vinfra.dhcp=1)",
            "vinfra.ignore_acpi=1)",
        ] {
            assert!(BUILD_SCRIPT.contains(option), "{option}");
        }
    }

    /// An image built by an older script (another init) is rebuilt; `is_current` reads the
    /// `.build-id` the script writes: the kernel release, then the script's SHA-256.
    #[test]
    fn only_an_image_of_this_very_script_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("vmlinuz"), b"kernel").unwrap();
        std::fs::write(d.join("initrd.img"), b"initrd").unwrap();
        assert!(!is_current(d), "no .build-id");
        let sum = hex::encode(Sha256::digest(BUILD_SCRIPT.as_bytes()));
        let mut older = BUILD_SCRIPT.to_string();
        older.push_str("# an older init\n");
        let old_sum = hex::encode(Sha256::digest(older.as_bytes()));
        std::fs::write(
            d.join(".build-id"),
            format!("6.1.0-56-cloud-amd64 {old_sum}\n"),
        )
        .unwrap();
        assert!(!is_current(d), "an image of another script");
        std::fs::write(d.join(".build-id"), format!("6.1.0-56-cloud-amd64 {sum}\n")).unwrap();
        assert!(is_current(d), "an image of this script");
        std::fs::remove_file(d.join("initrd.img")).unwrap();
        assert!(!is_current(d), "an image without its initramfs");
    }
}
