//! [`ManagerError`]: why an operation on a VM failed, and how the console hears of it.

use std::path::PathBuf;

use uuid::Uuid;
use vinfra_types::error::chain;
use vinfra_types::vm::SpecError;
use vinfra_types::PowerState;

use crate::disks::DiskError;
use crate::ha::GuardSettingsError;
use crate::network::SwitchLinkError;
use crate::qemu::{MigrationState, QemuError};

/// Why an operation does not fit the VM's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateConflict {
    /// A stop while the VM's outgoing migration runs.
    #[error("cancel the migration first")]
    MigrationInProgress,
    /// A start of a source paused by a completed migration: the guest runs on the destination.
    #[error("this copy was migrated to another host and stays paused")]
    MigratedAway,
    /// A start of a VM that is neither stopped, paused nor running.
    #[error("cannot start")]
    CannotStart,
    /// A start of a VM whose QEMU waits for an incoming migration.
    #[error("waits for an incoming migration")]
    AwaitsIncoming,
    /// A reboot of a VM that does not run.
    #[error("only a running VM can reboot")]
    NotRunning,
    /// An incoming migration for a VM this host already has.
    #[error("the VM is already on this host")]
    AlreadyHere,
    /// A migration of a VM that does not run here.
    #[error("only a running VM can migrate")]
    NotMigratable,
    /// A cancel of a migration that completed.
    #[error("the migration already completed")]
    MigrationCompleted,
    /// The end of a migration's source whose migration did not complete.
    #[error("migration is '{0}', not completed")]
    MigrationNotCompleted(MigrationState),
    /// An abort of an incoming migration whose guest arrived.
    #[error("the VM already runs here")]
    GuestArrived,
    /// Input for the serial console of a VM that does not run.
    #[error("its serial console takes input only while it runs")]
    ConsoleNotRunning,
    /// Input for the serial console of a QEMU an older agent started, without the socket.
    #[error("this VM's serial console takes no input until it restarts")]
    NoConsoleInput,
    /// A QEMU request for a VM whose QEMU is gone.
    #[error("QEMU is not running")]
    QemuNotRunning,
}

/// Errors of VM operations.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No VM with this id here.
    #[error("no VM {0} on this host")]
    NoSuchVm(Uuid),
    /// The VM is in a state where the operation makes no sense.
    #[error("VM {id} is {state:?}: {conflict}")]
    BadState {
        /// The VM.
        id: Uuid,
        /// Its state.
        state: PowerState,
        /// What was refused.
        conflict: StateConflict,
    },
    /// The VM specification is invalid.
    #[error("invalid VM specification")]
    Spec(#[from] SpecError),
    /// A migration URI that is not `tcp:HOST:PORT`.
    #[error("migration URI must be tcp:HOST:PORT, got '{0}'")]
    MigrationUri(String),
    /// A disk or datastore file problem.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// QEMU could not be started, commanded or ended.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// The virtual switch is missing or refused the VM's ports or the configuration.
    #[error(transparent)]
    Network(#[from] SwitchLinkError),
    /// A file in the agent's data directory could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A VM record could not be encoded.
    #[error("VM record {}", path.display())]
    Record {
        /// The record's file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// No TCP port could be bound for an incoming migration.
    #[error("no free TCP port for the incoming migration")]
    FreePort(#[source] std::io::Error),
    /// The console's HA settings were refused or could not be kept.
    #[error(transparent)]
    Ha(#[from] GuardSettingsError),
    /// The VM's QEMU could not be confined (its user, files or cgroups).
    #[error(transparent)]
    Confine(#[from] crate::confine::ConfineError),
    /// The VM's CPU model or machine type does not run on this host.
    #[error("this host cannot run the VM (CPU model '{cpu_model}', machine type '{machine_type}'): {reason}")]
    Platform {
        /// The VM's CPU model.
        cpu_model: String,
        /// The VM's machine type.
        machine_type: String,
        /// What the host lacks.
        reason: String,
    },
    /// Input for the serial console that cannot be typed (too long, the socket not QEMU's).
    #[error("serial console input: {0}")]
    ConsoleInput(String),
    /// A blocking task (switch reconcile, counters) failed.
    #[error("a blocking task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// The result of VM operations.
pub type Result<T, E = ManagerError> = std::result::Result<T, E>;

/// An [`ManagerError::Io`] maker for `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ManagerError + '_ {
    move |source| ManagerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<ManagerError> for vinfra_proto::CommandError {
    fn from(e: ManagerError) -> Self {
        use vinfra_proto::CommandError as A;
        match e {
            ManagerError::NoSuchVm(id) => A::NoSuchVm { id },
            ManagerError::BadState {
                id,
                state,
                conflict,
            } => A::BadState {
                id,
                state: format!("{state:?}").to_lowercase(),
                detail: conflict.to_string(),
            },
            ManagerError::Disk(DiskError::Missing(p)) => A::MissingFile {
                path: p.display().to_string(),
            },
            ManagerError::Network(e) => A::Network { detail: chain(&e) },
            e @ (ManagerError::Qemu(_)
            | ManagerError::Disk(
                DiskError::QemuImg { .. }
                | DiskError::QemuImgSpawn { .. }
                | DiskError::QemuImgInfo(_),
            )) => A::Qemu { detail: chain(&e) },
            e => A::Host { detail: chain(&e) },
        }
    }
}
