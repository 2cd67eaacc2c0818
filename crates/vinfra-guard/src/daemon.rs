//! The guard daemon: acquire the lease, start the children's threads, the renewer and the
//! watchdog, then answer the control socket until a `release`.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use vinfra_ha::{HaTimings, TimingError};

use crate::control;
use crate::fence::{FenceError, Watch, SHUTDOWN_WAIT};
use crate::protocol::{GuardRefusal, GuardRequest, GuardResponse, GuardStatus};
use crate::renew::{lease_path, LeaseKeeper, RenewError};
use crate::spawn::{Children, SpawnError};

/// Where the guard's control socket is unless told otherwise.
pub const DEFAULT_CONTROL: &str = "/run/vinfra/guard.sock";

/// How a guard runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// The host's name (the lease file's name: letters, digits, `-`, `_`, `.`).
    pub host: String,
    /// The shared datastore directory.
    pub datastore: PathBuf,
    /// The control socket the agent connects to.
    pub control: PathBuf,
    /// The timings until the agent's first pet brings the cluster's (the renewal period of
    /// the lease acquisition among them).
    pub timings: HaTimings,
    /// How long the `shutdown` isolation response waits for the guests to power off.
    pub shutdown_wait: Duration,
}

impl GuardConfig {
    /// The defaults: control socket [`DEFAULT_CONTROL`], default timings, a minute's shutdown.
    pub fn new(host: impl Into<String>, datastore: impl Into<PathBuf>) -> GuardConfig {
        GuardConfig {
            host: host.into(),
            datastore: datastore.into(),
            control: DEFAULT_CONTROL.into(),
            timings: HaTimings::default(),
            shutdown_wait: SHUTDOWN_WAIT,
        }
    }
}

/// Why the guard did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The host name cannot name a lease file.
    #[error("bad host name {0:?}: use letters, digits, '-', '_' and '.'")]
    HostName(String),
    /// The timings fail [`HaTimings::validate`].
    #[error("unsafe timings")]
    Timings(#[source] TimingError),
    /// The children's threads could not start.
    #[error("starting the children's threads")]
    Children(#[source] SpawnError),
    /// The lease could not be acquired (another guard holds it, or it cannot be written).
    #[error("acquiring the host lease")]
    Lease(#[source] RenewError),
    /// The watchdog could not start.
    #[error("starting the watchdog")]
    Fence(#[source] FenceError),
    /// The control socket could not be opened (or another guard answers on it).
    #[error("opening the control socket {path}")]
    Control {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host != "."
        && host != ".."
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The running guard: what the control requests act on.
struct Guard {
    host: String,
    children: Arc<Children>,
    keeper: Arc<LeaseKeeper>,
    watch: Arc<Watch>,
}

impl Guard {
    fn handle(&self, request: GuardRequest) -> GuardResponse {
        match request {
            GuardRequest::Spawn(spec) => {
                if self.watch.fencing() {
                    return GuardResponse::Refused(GuardRefusal::Fenced);
                }
                // Off the VMs the lease says stopped before its QEMU exists (the write is
                // asked at once), and again once it runs: an isolation response may have
                // listed it in between.
                self.keeper.remove_stopped(spec.vm);
                match self.children.spawn(&spec) {
                    Ok(pid) => {
                        self.keeper.remove_stopped(spec.vm);
                        GuardResponse::Spawned { pid }
                    }
                    Err(e) => {
                        tracing::warn!(vm = %spec.vm, error = %vinfra_types::error::chain(&e), "spawn refused");
                        GuardResponse::Refused(e.refusal())
                    }
                }
            }
            GuardRequest::Pet(pet) => match self.watch.pet(&pet, Instant::now()) {
                Ok(()) => {
                    self.keeper.set_period(pet.timings.renew);
                    GuardResponse::Ok
                }
                Err(e) => GuardResponse::Refused(GuardRefusal::Timings {
                    message: e.to_string(),
                }),
            },
            GuardRequest::Status => GuardResponse::Status(Box::new(self.status())),
            GuardRequest::Kill { vm } => match self.children.kill(vm) {
                Ok(exit) => GuardResponse::Killed { exit },
                Err(e) => GuardResponse::Refused(e.refusal()),
            },
            GuardRequest::Release => {
                if let Err(vms) = self.children.close_if_empty() {
                    return GuardResponse::Refused(GuardRefusal::HasChildren { vms });
                }
                match self.keeper.release() {
                    Ok(()) => GuardResponse::Released,
                    Err(e) => {
                        self.children.reopen();
                        GuardResponse::Refused(GuardRefusal::Lease {
                            message: vinfra_types::error::chain(&e),
                        })
                    }
                }
            }
        }
    }

    fn status(&self) -> GuardStatus {
        let now = Instant::now();
        let (children, exits) = self.children.views(now);
        let w = self.watch.report(now);
        GuardStatus {
            host: self.host.clone(),
            incarnation: self.keeper.incarnation(),
            counter: self.keeper.counter(),
            renewal_age_ms: self
                .keeper
                .last_renewal()
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            lease_state: self.keeper.lease_state(),
            children,
            exits,
            self_fences: w.self_fences,
            isolated: w.isolated,
            isolation: w.isolation,
            agent_absent_ms: w.agent_absent_ms,
            console_contact_age_ms: w.console_contact_age_ms,
            timings: w.timings,
        }
    }
}

/// Runs the guard: checks the configuration, starts the spawner and the reaper, acquires the
/// host's lease (refused while another guard renews it), starts the renewer and the watchdog,
/// then serves the control socket. Returns after a `release` (no child left, the lease
/// `released`); until then it runs for good. When the guard dies, the kernel kills its
/// children.
pub fn run(config: GuardConfig) -> Result<(), GuardError> {
    if !valid_host(&config.host) {
        return Err(GuardError::HostName(config.host));
    }
    config.timings.validate().map_err(GuardError::Timings)?;
    let control_error = |source| GuardError::Control {
        path: config.control.clone(),
        source,
    };
    // Refuse early when a guard answers on the socket (another host name on this machine).
    if std::os::unix::net::UnixStream::connect(&config.control).is_ok() {
        return Err(control_error(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another guard answers on this socket",
        )));
    }
    let children = Children::start().map_err(GuardError::Children)?;
    let path = lease_path(&config.datastore, &config.host);
    let keeper = LeaseKeeper::acquire(&path, &config.host, config.timings.renew)
        .map_err(GuardError::Lease)?;
    keeper.watch_console(config.datastore.join(vinfra_ha::lease::CONSOLE_HEARTBEAT));
    let watch = Watch::new(config.timings, config.shutdown_wait);
    watch
        .start(children.clone(), keeper.clone())
        .map_err(GuardError::Fence)?;
    let listener = control::bind(&config.control).map_err(control_error)?;
    tracing::info!(host = %config.host, lease = %path.display(), control = %config.control.display(), "guard running");
    let guard = Guard {
        host: config.host.clone(),
        children,
        keeper,
        watch,
    };
    let (tx, rx) = mpsc::channel::<()>();
    let tx = Mutex::new(tx);
    let served = std::thread::Builder::new()
        .name("guard-control".into())
        .spawn(move || {
            control::serve(
                listener,
                move |request| guard.handle(request),
                move || {
                    let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(());
                },
            )
        })
        .map_err(control_error)?;
    // Either a release ends the guard, or accepting connections failed.
    if rx.recv().is_err() {
        let error = match served.join() {
            Ok(Err(e)) => e,
            _ => std::io::Error::other("the control thread ended"),
        };
        return Err(control_error(error));
    }
    let _ = std::fs::remove_file(&config.control);
    tracing::info!(host = %config.host, "guard released");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_file_names() {
        for good in ["h1", "host-2.example", "a_b"] {
            assert!(valid_host(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "h\n"] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }
}
