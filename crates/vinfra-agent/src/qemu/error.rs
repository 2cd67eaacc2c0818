//! [`QemuError`]: why starting, commanding or ending a QEMU failed.

use std::path::PathBuf;

/// Errors starting, commanding or signalling QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The QEMU binary could not be run at all.
    #[error("cannot run {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited with an error before it was up.
    #[error("QEMU refused to start: {stderr}")]
    Failed {
        /// QEMU's own message (or its exit status when it printed none).
        stderr: String,
    },
    /// QEMU started but wrote no usable pidfile.
    #[error("QEMU wrote no usable pidfile at {0}")]
    NoPid(PathBuf),
    /// The thread that started QEMU failed.
    #[error("the QEMU launcher thread failed")]
    Launcher(#[source] tokio::task::JoinError),
    /// A QMP command failed or QMP could not be reached.
    #[error("QMP")]
    Qmp(#[from] vinfra_qmp::QmpError),
    /// A signal could not be delivered.
    #[error("cannot signal process {pid}")]
    Signal {
        /// The process.
        pid: u32,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The process is still there after `quit` and SIGKILL.
    #[error("QEMU pid {0} does not exit after SIGKILL")]
    NoExit(u32),
    /// The QEMU process is gone (it exited or was killed).
    #[error("QEMU is not running")]
    Gone,
    /// `qemu --version` printed something unexpected.
    #[error("cannot tell the QEMU version from: {0}")]
    Version(String),
}
