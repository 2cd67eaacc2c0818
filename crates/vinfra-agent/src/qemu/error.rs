//! [`QemuError`]: why starting, commanding or ending a QEMU failed.

use std::ffi::OsString;
use std::path::PathBuf;

use vinfra_guard::{ChildExit, GuardClientError, GuardRefusal};

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
    /// The host's guard could not be reached to start QEMU (`vinfra agent --guard`): VMs run
    /// only under it, so nothing was started.
    #[error("the host's guard is unreachable, so no VM can start")]
    GuardUnreachable(#[source] GuardClientError),
    /// The conversation with the guard failed while it started QEMU (the connection broke,
    /// the answer timed out or made no sense).
    #[error("starting QEMU through the host's guard at {path}")]
    Guard {
        /// The guard's control socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: GuardClientError,
    },
    /// The guard refused to start QEMU (it is self-fencing or released, the VM already has a
    /// QEMU, the program could not be executed).
    #[error("the host's guard refused to start QEMU")]
    GuardRefused(#[source] GuardRefusal),
    /// QEMU, started by the guard, exited before its QMP socket accepted a connection.
    #[error("QEMU exited before it was ready ({exit}); its log ends: {}", log_tail.join(" | "))]
    Exited {
        /// How it ended.
        exit: ChildExit,
        /// The last lines of its standard output and error.
        log_tail: Vec<String>,
    },
    /// QEMU, started by the guard, did not accept a QMP connection in time and was killed.
    #[error("QEMU was not ready within {timeout_ms} ms and was killed; its log ends: {}", log_tail.join(" | "))]
    NotReady {
        /// The ready timeout, milliseconds.
        timeout_ms: u64,
        /// The last lines of its standard output and error.
        log_tail: Vec<String>,
    },
    /// An argument of QEMU's command line is not UTF-8 (the guard's protocol carries UTF-8).
    #[error("QEMU argument {0:?} is not UTF-8")]
    Argument(OsString),
    /// QEMU did not run as the user its confinement named (it was killed).
    #[error("QEMU (pid {pid}) runs as users {found:?}, not as its VM's user {expected}: is the host's guard older than the agent? (it was killed)")]
    NotConfined {
        /// The QEMU.
        pid: u32,
        /// The VM's user.
        expected: u32,
        /// What /proc said.
        found: Vec<u32>,
    },
    /// A file of QEMU's (its log, its pidfile) could not be opened or written.
    #[error("QEMU's file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
