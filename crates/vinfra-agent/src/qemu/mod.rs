//! QEMU behind a trait: [`VmRunner`] starts a VM's QEMU (or finds one that kept running while
//! the agent was away) and [`QemuProcess`] is everything the manager does to it afterwards:
//! resume, power off, reset, migrate, ask its state, kill, check it is alive.
//!
//! Two implementations:
//! - [`qmp::QemuRunner`]: the real one. QEMU runs in the foreground (no `-daemonize`: its
//!   sandbox forbids the fork and `setsid` that needs), confined to a user and cgroups of its
//!   own ([`crate::confine`]). Without a guard the agent starts it in a session of its own, so
//!   it outlives the agent. With the host's guard (`vinfra agent --guard`) the guard starts it
//!   as its own child (it dies with the guard, never with the agent). Either way the pidfile is
//!   written for it, and the agent finds it again through the pidfile and
//!   `/proc/<pid>/cmdline`, and talks to it over the QMP socket in the VM's `run/` directory
//!   ([`VmFiles`]), checking the socket's owner.
//! - [`fake::FakeRunner`]: an in-memory state machine that answers like QEMU (running, paused,
//!   shut off, waiting for an incoming migration; migrations that complete or fail when a test
//!   says so), for unit tests of the manager without a guest.
//!
//! Below the interface: [`cmdline`] (the command line, pure) and [`process`] (pids, signals,
//! the version), used by the real implementation and the probe.

pub mod cmdline;
mod error;
pub mod fake;
pub mod process;
pub mod qmp;

use std::ffi::OsString;
use std::path::PathBuf;

use uuid::Uuid;
use vinfra_types::{Accel, PowerState};

pub use cmdline::{build_args, CacheMode, DiskArg, Launch, NicArg};
pub use error::QemuError;
pub use process::{
    is_our_qemu, kill, pid_alive, qemu_version, read_pidfile, tcg_migration_loses_writes,
};

/// A VM's files on this host. The VM's directory (`<data_dir>/vms/<id>`, root's, group the
/// VM's: its QEMU may only pass through) holds the agent's record, the pidfile, QEMU's output
/// and the switch's ends of dgram NICs; `run/` in it, the QEMU's own, what QEMU creates: its
/// QMP sockets, its serial log, its ends of dgram NICs (see [`crate::confine`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFiles {
    /// The VM's directory (`<data_dir>/vms/<id>`).
    pub dir: PathBuf,
}

impl VmFiles {
    /// The directory QEMU writes in (`run/`).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The pidfile (`qemu.pid`), written by the agent or the guard once QEMU is spawned.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }

    /// The QMP socket (`run/qmp.sock`).
    pub fn qmp_socket(&self) -> PathBuf {
        self.run_dir().join("qmp.sock")
    }

    /// The QMP socket of a QEMU started before QEMUs had `run/` (`qmp.sock`): found again
    /// after an upgrade.
    pub fn legacy_qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// The QMP socket of the host's guard (`run/guard-qmp.sock`): a monitor serves one client
    /// at a time and the agent keeps its connection to `qmp.sock`, so the guard's isolation
    /// response (`system_powerdown`) needs a monitor of its own.
    pub fn guard_qmp_socket(&self) -> PathBuf {
        self.run_dir().join("guard-qmp.sock")
    }

    /// The serial console log (`run/serial.log`).
    pub fn serial_log(&self) -> PathBuf {
        self.run_dir().join("serial.log")
    }

    /// The serial port's socket (`run/serial.sock`; QEMU listens on it): input typed on the
    /// serial console. A QEMU started by an agent before it had one has none.
    pub fn serial_socket(&self) -> PathBuf {
        self.run_dir().join("serial.sock")
    }

    /// The serial console log of a QEMU started before `run/` (`serial.log`).
    pub fn legacy_serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    /// The serial log's previous part, once it was rotated (`serial.log.1`, root's).
    pub fn serial_log_rotated(&self) -> PathBuf {
        self.dir.join("serial.log.1")
    }

    /// Where a migration's credentials wait for QEMU to read them (`migration-tls/`, root's;
    /// see [`crate::confine::MigrationTlsFiles`]).
    pub fn migration_tls_dir(&self) -> PathBuf {
        self.dir.join("migration-tls")
    }

    /// QEMU's standard output and error (`qemu.log`).
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }

    /// Removes the pidfile and the QMP sockets of a QEMU that is gone.
    pub fn remove_runtime_files(&self) {
        for path in [
            self.pidfile(),
            self.qmp_socket(),
            self.guard_qmp_socket(),
            self.serial_socket(),
            self.legacy_qmp_socket(),
            self.dir.join("guard-qmp.sock"),
        ] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// QEMU's run state (`query-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// The guest runs.
    Running,
    /// Paused by `stop` (or never started).
    Paused,
    /// Waiting for (or receiving) an incoming migration.
    InMigrate,
    /// Paused after its state was sent away by a migration.
    PostMigrate,
    /// Sending the last of its state at the switchover of a migration.
    FinishMigrate,
    /// The guest powered off and QEMU stays (not used with our command line, which exits).
    Shutdown,
    /// QEMU stopped the guest after an internal error.
    InternalError,
    /// The guest reported a panic.
    GuestPanicked,
    /// Any other state QEMU reports (`prelaunch`, `suspended`, `io-error`, `watchdog`, …),
    /// all of which hold the guest paused.
    Other(String),
}

impl RunState {
    /// The state from QMP's `status` string.
    pub fn from_qmp(status: &str) -> RunState {
        match status {
            "running" => RunState::Running,
            "paused" => RunState::Paused,
            "inmigrate" => RunState::InMigrate,
            "postmigrate" => RunState::PostMigrate,
            "finish-migrate" => RunState::FinishMigrate,
            "shutdown" => RunState::Shutdown,
            "internal-error" => RunState::InternalError,
            "guest-panicked" => RunState::GuestPanicked,
            other => RunState::Other(other.to_string()),
        }
    }

    /// The power state the agent reports for a QEMU in this state.
    pub fn power_state(&self) -> PowerState {
        match self {
            RunState::Running => PowerState::Running,
            RunState::InMigrate => PowerState::Incoming,
            RunState::FinishMigrate => PowerState::Migrating,
            RunState::Shutdown => PowerState::Stopped,
            RunState::InternalError | RunState::GuestPanicked => PowerState::Crashed,
            RunState::Paused | RunState::PostMigrate | RunState::Other(_) => PowerState::Paused,
        }
    }
}

/// The state of a QEMU's outgoing migration (`query-migrate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// No migration was started.
    None,
    /// Started, still sending (`setup`, `active`, `device`, `pre-switchover`,
    /// `postcopy-active`, `wait-unplug`, `cancelling`): the QMP status string.
    Active(String),
    /// Every byte was sent and the destination took over: this copy stays paused.
    Completed,
    /// Ended in an error; the guest runs here.
    Failed,
    /// Cancelled; the guest runs here.
    Cancelled,
    /// A status this agent does not know.
    Other(String),
}

impl MigrationState {
    /// The state from QMP's `status` string (`none` when QEMU reports none).
    pub fn from_qmp(status: &str) -> MigrationState {
        match status {
            "none" => MigrationState::None,
            "completed" => MigrationState::Completed,
            "failed" => MigrationState::Failed,
            "cancelled" => MigrationState::Cancelled,
            "setup" | "active" | "device" | "pre-switchover" | "cancelling" | "postcopy-active"
            | "wait-unplug" => MigrationState::Active(status.to_string()),
            other => MigrationState::Other(other.to_string()),
        }
    }

    /// QMP's status string.
    pub fn as_qmp(&self) -> &str {
        match self {
            MigrationState::None => "none",
            MigrationState::Completed => "completed",
            MigrationState::Failed => "failed",
            MigrationState::Cancelled => "cancelled",
            MigrationState::Active(s) | MigrationState::Other(s) => s,
        }
    }

    /// True while the migration is under way.
    pub fn is_active(&self) -> bool {
        matches!(self, MigrationState::Active(_))
    }
}

impl std::fmt::Display for MigrationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_qmp())
    }
}

/// An outgoing migration's progress (`query-migrate`).
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStats {
    /// Where it is.
    pub state: MigrationState,
    /// RAM bytes sent so far.
    pub transferred_bytes: u64,
    /// RAM bytes left to send.
    pub remaining_bytes: u64,
    /// Guest RAM in all.
    pub total_bytes: u64,
    /// Throughput, bits per second.
    pub rate_bps: u64,
    /// Pages dirtied per second.
    pub dirty_pages_rate: u64,
    /// Passes over the guest's memory begun (`dirty-sync-count`): 1 during the first, which
    /// sends all of it; 2 or more once only what the guest dirtied since is left.
    pub rounds: u64,
    /// Milliseconds since the migration started.
    pub total_time_ms: u64,
    /// The guest's pause at the switchover, once known, milliseconds.
    pub downtime_ms: Option<u64>,
    /// QEMU's error message of a failed migration.
    pub error: Option<String>,
}

impl MigrationStats {
    /// Progress with only a state (nothing sent).
    pub fn in_state(state: MigrationState) -> MigrationStats {
        MigrationStats {
            state,
            transferred_bytes: 0,
            remaining_bytes: 0,
            total_bytes: 0,
            rate_bps: 0,
            dirty_pages_rate: 0,
            rounds: 0,
            total_time_ms: 0,
            downtime_ms: None,
            error: None,
        }
    }
}

/// The events of a QEMU as [`QemuProcess::migration_events`] hands them out.
pub type MigrationEvents = tokio::sync::broadcast::Receiver<vinfra_qmp::QmpEvent>;

/// How an outgoing migration may use the network and pause the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationParams {
    /// Bandwidth cap, bytes per second.
    pub max_bandwidth: u64,
    /// Longest acceptable pause of the guest at the switchover, milliseconds.
    pub downtime_limit_ms: u64,
    /// QEMU's `auto-converge` capability: throttle the guest's vCPUs while its memory does not
    /// converge.
    pub auto_converge: bool,
}

/// How a migration stream is encrypted: where QEMU reads this end's credentials
/// (`ca-cert.pem` and `server-cert.pem`/`server-key.pem` or `client-cert.pem`/`client-key.pem`,
/// as its `tls-creds-x509` expects them; read once when the object is made) and the other end
/// ([`vinfra_proto::MigrationTls::peer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTls {
    /// The credentials' directory.
    pub dir: PathBuf,
    /// Destination: the source's subject (`CN=…`); source: the destination's name.
    pub peer: String,
}

/// Starts VMs' QEMUs and finds them again. The real implementation is [`qmp::QemuRunner`],
/// the fake one [`fake::FakeRunner`].
#[async_trait::async_trait]
pub trait VmRunner: Send + Sync {
    /// The accelerator VMs run with.
    fn accel(&self) -> Accel;

    /// Starts a QEMU with the command line `args` (built from `launch` by [`build_args`];
    /// `launch` says where its pidfile and QMP socket appear, what it runs as and whether it
    /// waits for an incoming migration) and returns it once it answers. On error no
    /// process is left.
    async fn launch(
        &self,
        launch: &Launch,
        args: Vec<OsString>,
    ) -> Result<Box<dyn QemuProcess>, QemuError>;

    /// The QEMU of VM `id` that still runs with its files in `files` (after an agent restart),
    /// if there is one.
    fn adopt(&self, id: Uuid, files: &VmFiles) -> Option<Box<dyn QemuProcess>>;
}

/// One VM's running QEMU: what the manager asks of it and does to it.
#[async_trait::async_trait]
pub trait QemuProcess: Send + Sync {
    /// Its process id.
    fn pid(&self) -> u32;

    /// True while the process runs (a zombie, or another process that got the pid, is not).
    fn alive(&self) -> bool;

    /// True once the guest powered itself off (QEMU's `SHUTDOWN` event) since this QEMU was
    /// launched or adopted: its exit is a stop, not a crash.
    fn shutdown_seen(&mut self) -> bool;

    /// QEMU's run state (`query-status`).
    async fn status(&mut self) -> Result<RunState, QemuError>;

    /// The outgoing migration's state and progress (`query-migrate`).
    async fn migration(&mut self) -> Result<MigrationStats, QemuError>;

    /// Every QMP event of this QEMU from now on, `MIGRATION` (the outgoing migration's state
    /// changes, on since [`QemuProcess::migrate`]), `MIGRATION_PASS` (its passes, likewise) and
    /// `RESUME` (an incoming guest arrived and runs) among them: a waiter subscribes first, then reads [`QemuProcess::migration`] or
    /// [`QemuProcess::status`], then waits without holding the VM. The channel closes with the
    /// QMP connection.
    async fn migration_events(&mut self) -> Result<MigrationEvents, QemuError>;

    /// Resumes a paused guest (`cont`).
    async fn cont(&mut self) -> Result<(), QemuError>;

    /// Asks the guest to power off (`system_powerdown`, the ACPI power button); QEMU exits
    /// once the guest has (the graceful quit).
    async fn powerdown(&mut self) -> Result<(), QemuError>;

    /// Resets the guest (`system_reset`).
    async fn reset(&mut self) -> Result<(), QemuError>;

    /// Makes a QEMU started with `launch.incoming` listen for the migration on `uri`
    /// (`migrate-incoming`): with `tls`, for a TLS stream from the one source it names alone,
    /// else for plain TCP.
    async fn listen_incoming(
        &mut self,
        uri: &str,
        tls: Option<&StreamTls>,
    ) -> Result<(), QemuError>;

    /// Starts sending the guest to `uri` with `params` and returns at once
    /// (`migrate-set-parameters`, `migrate`): with `tls`, over TLS to the destination it names
    /// alone, else over plain TCP.
    async fn migrate(
        &mut self,
        uri: &str,
        params: MigrationParams,
        tls: Option<&StreamTls>,
    ) -> Result<(), QemuError>;

    /// Changes the running outgoing migration's downtime limit, milliseconds
    /// (`migrate-set-parameters downtime-limit`).
    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), QemuError>;

    /// Cancels the outgoing migration (`migrate_cancel`); the guest keeps running here.
    async fn cancel_migration(&mut self) -> Result<(), QemuError>;

    /// Ends QEMU now (`quit`, then SIGKILL if it lingers) and returns once the process is
    /// gone, or [`QemuError::NoExit`].
    async fn kill(&mut self) -> Result<(), QemuError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_states_map_to_power_states() {
        for (status, state) in [
            ("running", PowerState::Running),
            ("paused", PowerState::Paused),
            ("postmigrate", PowerState::Paused),
            ("prelaunch", PowerState::Paused),
            ("inmigrate", PowerState::Incoming),
            ("finish-migrate", PowerState::Migrating),
            ("shutdown", PowerState::Stopped),
            ("internal-error", PowerState::Crashed),
            ("guest-panicked", PowerState::Crashed),
        ] {
            assert_eq!(RunState::from_qmp(status).power_state(), state, "{status}");
        }
        assert_eq!(
            RunState::from_qmp("io-error"),
            RunState::Other("io-error".into())
        );
    }

    #[test]
    fn migration_states_round_trip() {
        for status in [
            "none",
            "setup",
            "active",
            "device",
            "cancelling",
            "completed",
            "failed",
            "cancelled",
            "colo",
        ] {
            assert_eq!(MigrationState::from_qmp(status).as_qmp(), status);
        }
        assert!(MigrationState::from_qmp("pre-switchover").is_active());
        assert!(!MigrationState::from_qmp("completed").is_active());
        assert_eq!(
            MigrationState::from_qmp("colo"),
            MigrationState::Other("colo".into())
        );
    }
}
