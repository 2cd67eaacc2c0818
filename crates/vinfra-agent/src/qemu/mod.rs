//! Running QEMU: the [`VmRunner`] trait and its real implementation [`QemuRunner`].
//!
//! A VM's QEMU is started with `-daemonize`: it forks, detaches (new session) and writes its pid to
//! the VM's pidfile, so it outlives the agent. The agent finds it again through the pidfile and
//! `/proc/<pid>/cmdline`, and talks to it over the QMP socket in the VM's directory.

mod cmdline;
mod process;

use std::path::PathBuf;

use vinfra_types::Accel;

pub use cmdline::{build_args, CacheMode, DiskArg, Launch, NicArg};
pub use process::{is_our_qemu, kill, pid_alive, qemu_version, read_pidfile, QemuRunner};

/// Errors starting or signalling QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// the QEMU binary could not be run at all
    #[error("cannot run {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited with an error before it was up
    #[error("QEMU refused to start: {stderr}")]
    Failed {
        /// QEMU's own message.
        stderr: String,
    },
    /// QEMU started but wrote no usable pidfile
    #[error("QEMU wrote no usable pidfile at {0}")]
    NoPid(PathBuf),
    /// a signal could not be delivered
    #[error("cannot signal process {pid}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `qemu --version` printed something unexpected
    #[error("cannot tell the QEMU version from: {0}")]
    Version(String),
}

/// Starts QEMU processes and looks after their pids. The real implementation is [`QemuRunner`].
pub trait VmRunner: Send + Sync {
    /// Starts a daemonized QEMU as described by `launch` and returns its pid once it is up (its QMP
    /// socket exists).
    fn launch(&self, launch: &Launch) -> Result<u32, QemuError>;
    /// The accelerator VMs run with.
    fn accel(&self) -> Accel;
}
