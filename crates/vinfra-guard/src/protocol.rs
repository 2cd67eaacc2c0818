//! The messages: one JSON object per line, a [`GuardRequest`] from the agent, a
//! [`GuardResponse`] from the guard, in order. Example:
//!
//! ```text
//! {"op":"spawn","vm":"…","argv":["qemu-system-x86_64","-name","a",…],"qmp_socket":"/var/lib/vinfra/agent/vms/…/guard-qmp.sock","log":"…/qemu.log","ready_timeout_ms":10000}
//! {"status":"spawned","pid":4242}
//! {"op":"pet","console_contact_age_ms":310,"ha_vms":["…"],"isolation_response":"power-off","timings":{…}}
//! {"status":"ok"}
//! {"op":"kill","vm":"…"}
//! {"status":"killed","exit":{"signal":9}}
//! {"op":"release"}
//! {"status":"refused","kind":"has_children","vms":["…"]}
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vinfra_ha::{HaTimings, LeaseState};

/// What the guard does with the host's HA VMs when the host is isolated (the cluster's HA
/// setting).
pub use vinfra_types::ha::IsolationResponse;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildExit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it (its number).
    Signal(i32),
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildExit::Code(c) => write!(f, "exit status {c}"),
            ChildExit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A QEMU to start as the guard's child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnSpec {
    /// The VM: one child per VM at a time.
    pub vm: Uuid,
    /// The program and its arguments (QEMU without `-daemonize`: it stays the guard's child).
    pub argv: Vec<String>,
    /// A QMP socket of QEMU's for the guard alone (the agent keeps its own connection to
    /// another): the child is ready once it accepts a connection, and the `shutdown`
    /// isolation response sends `system_powerdown` over it.
    pub qmp_socket: PathBuf,
    /// A file the guard writes the child's pid to once it is spawned (the agent finds its QEMUs
    /// again through it after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<PathBuf>,
    /// The child's standard output and error (appended to).
    pub log: PathBuf,
    /// How long the QMP socket may take to accept a connection; past it the child is killed.
    pub ready_timeout_ms: u64,
    /// The user, group and cgroups the child runs as and in; `None`: as the guard (root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confinement: Option<Confinement>,
    /// The child may not have transparent huge pages (`PR_SET_THP_DISABLE` before it
    /// executes: its memory, guest RAM included, is mapped in base pages whatever it asks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_huge_pages: bool,
}

/// What a VM's QEMU runs as and in: an unprivileged user and group of its own (with only the
/// supplementary groups named, no new privileges) and cgroups it joins before it executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// The user (never 0).
    pub uid: u32,
    /// The group (never 0).
    pub gid: u32,
    /// Supplementary groups (`/dev/kvm`'s); none when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
    /// Cgroup directories to join (one per hierarchy: one with cgroup v2), made beforehand.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// The agent's sign of life, sent every second: what the guard needs to decide alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pet {
    /// How long ago the agent last had contact with the console (the send time of the last
    /// acknowledged heartbeat); `None` when it has had none since it started.
    pub console_contact_age_ms: Option<u64>,
    /// The host's VMs with HA on (the isolation response stops these, not the others).
    pub ha_vms: Vec<Uuid>,
    /// The cluster's isolation response.
    pub isolation_response: IsolationResponse,
    /// The cluster's HA timings (checked with [`HaTimings::validate`]).
    pub timings: HaTimings,
}

/// A request to the guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GuardRequest {
    /// Start a child; answered with `spawned` once its QMP socket accepts a connection.
    Spawn(SpawnSpec),
    /// The agent's sign of life; answered with `ok`.
    Pet(Pet),
    /// Answered with `status`.
    Status,
    /// SIGKILL a VM's child and reap it; answered with `killed` once it is gone.
    Kill {
        /// The VM.
        vm: Uuid,
    },
    /// End the guard cleanly, writing the lease `released`: only when it has no child.
    /// Answered with `released`, after which the guard exits.
    Release,
}

/// One running child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildView {
    /// Its VM.
    pub vm: Uuid,
    /// Its process id.
    pub pid: u32,
}

/// A child that ended (the last ones are kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitView {
    /// Its VM.
    pub vm: Uuid,
    /// Its process id.
    pub pid: u32,
    /// How it ended.
    pub exit: ChildExit,
    /// How long ago it was reaped, milliseconds.
    pub age_ms: u64,
}

/// An isolation response the guard carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationView {
    /// The response.
    pub response: IsolationResponse,
    /// The VMs it stopped (written to the lease as `stopped`).
    pub vms: Vec<Uuid>,
    /// How long ago it ended, milliseconds.
    pub age_ms: u64,
}

/// What the guard says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// The host.
    pub host: String,
    /// This guard's lease incarnation.
    pub incarnation: u64,
    /// The counter of the last lease write that succeeded.
    pub counter: u64,
    /// How long ago the last successful lease write started, milliseconds.
    pub renewal_age_ms: Option<u64>,
    /// What the lease says about the host's VMs.
    pub lease_state: LeaseState,
    /// The running children.
    pub children: Vec<ChildView>,
    /// The children that ended, oldest first (the last 64).
    pub exits: Vec<ExitView>,
    /// How often the guard self-fenced (killed every child) since it started.
    pub self_fences: u32,
    /// The isolation condition holds now (contact lost while the lease renews, or the agent
    /// gone past its grace).
    pub isolated: bool,
    /// The last isolation response carried out, if any.
    pub isolation: Option<IsolationView>,
    /// How long the agent has not petted, milliseconds, when it is counted absent.
    pub agent_absent_ms: Option<u64>,
    /// The age of the agent's last known console contact, milliseconds.
    pub console_contact_age_ms: Option<u64>,
    /// The timings the guard runs with (the last pet's, or its command line's before any).
    pub timings: HaTimings,
}

/// Why the guard refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuardRefusal {
    /// The child exited before its QMP socket accepted a connection.
    #[error("the child exited before it was ready ({exit}); its log ends: {}", log_tail.join(" | "))]
    Exited {
        /// How it ended.
        exit: ChildExit,
        /// The last lines of its log.
        log_tail: Vec<String>,
    },
    /// The QMP socket accepted no connection within the ready timeout; the child was killed.
    #[error("the child was not ready within {timeout_ms} ms and was killed; its log ends: {}", log_tail.join(" | "))]
    NotReady {
        /// The timeout.
        timeout_ms: u64,
        /// The last lines of its log.
        log_tail: Vec<String>,
    },
    /// The program could not be started (not found, not executable, the log not writable).
    #[error("cannot start the child: {message}")]
    Start {
        /// What failed.
        message: String,
    },
    /// The VM already has a running child.
    #[error("VM {vm} already runs as pid {pid}")]
    AlreadyRunning {
        /// The VM.
        vm: Uuid,
        /// Its child.
        pid: u32,
    },
    /// A SIGKILLed child did not go (stuck in the kernel).
    #[error("pid {pid} did not exit after SIGKILL")]
    NoExit {
        /// The child.
        pid: u32,
    },
    /// The guard renews neither its lease nor has console contact: it starts nothing.
    #[error("the guard is self-fencing: it starts no VM")]
    Fenced,
    /// `release` with children left.
    #[error("the guard still has children: {vms:?}")]
    HasChildren {
        /// Their VMs.
        vms: Vec<Uuid>,
    },
    /// The guard is ending (released): it starts nothing.
    #[error("the guard is released")]
    Released,
    /// The pet's timings fail [`HaTimings::validate`].
    #[error("unsafe timings: {message}")]
    Timings {
        /// Why.
        message: String,
    },
    /// Writing the released lease failed.
    #[error("cannot write the lease: {message}")]
    Lease {
        /// What failed.
        message: String,
    },
    /// The line was not a request.
    #[error("bad request: {message}")]
    BadRequest {
        /// Why.
        message: String,
    },
}

/// The guard's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GuardResponse {
    /// A pet taken.
    Ok,
    /// The child runs and its QMP socket accepts connections.
    Spawned {
        /// Its process id.
        pid: u32,
    },
    /// The guard's state.
    Status(Box<GuardStatus>),
    /// The VM's child is gone (`exit` is how it ended; `None` when the VM had no child).
    Killed {
        /// How it ended.
        exit: Option<ChildExit>,
    },
    /// The lease says `released`; the guard exits.
    Released,
    /// The request was refused.
    Refused(GuardRefusal),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_their_wire_form() {
        let vm = Uuid::from_u128(7);
        let line = serde_json::to_string(&GuardRequest::Kill { vm }).unwrap();
        assert_eq!(
            line,
            r#"{"op":"kill","vm":"00000000-0000-0000-0000-000000000007"}"#
        );
        let r = GuardResponse::Refused(GuardRefusal::Exited {
            exit: ChildExit::Code(1),
            log_tail: vec!["boom".into()],
        });
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"status":"refused","kind":"exited","exit":{"code":1},"log_tail":["boom"]}"#
        );
        assert_eq!(serde_json::from_str::<GuardResponse>(&line).unwrap(), r);
        let pet = GuardRequest::Pet(Pet {
            console_contact_age_ms: Some(5),
            ha_vms: vec![vm],
            isolation_response: IsolationResponse::PowerOff,
            timings: HaTimings::default(),
        });
        let line = serde_json::to_string(&pet).unwrap();
        assert!(
            line.contains(r#""isolation_response":"power-off""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<GuardRequest>(&line).unwrap(), pet);
        assert_eq!(
            serde_json::to_string(&GuardResponse::Killed { exit: None }).unwrap(),
            r#"{"status":"killed","exit":null}"#
        );
    }
}
