//! The guard's children: started from one long-lived thread (the spawner) so that
//! `PR_SET_PDEATHSIG` kills them only when the guard itself goes, reaped by another (the reaper),
//! which keeps their exit statuses for the agent.
//!
//! The table of children is locked while a child is forked and registered, and the reaper only
//! reaps a pid after taking that lock: so every pid it sees exit is in the table by then (or is
//! one the standard library reaped itself, when an exec failed).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use uuid::Uuid;

use crate::protocol::{ChildExit, ChildView, ExitView, GuardRefusal, SpawnSpec};
use crate::sys;

/// How many ended children the guard remembers.
pub const EXITS_KEPT: usize = 64;
/// How many lines of a child's log an error carries.
const LOG_TAIL_LINES: usize = 20;
/// How many bytes from the end of a child's log are read for them.
const LOG_TAIL_BYTES: u64 = 8192;
/// How long a SIGKILLed child may take to be reaped.
pub const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often, at most, readiness (the QMP socket) is tried: first after 1 ms, then every 2 ms.
/// A try is one `connect(2)`; a QEMU is ready 50 to 200 ms after its start, and each ms
/// waited past that is a ms more on every VM create, start and incoming migration.
const READY_POLL: Duration = Duration::from_millis(2);

/// Why a child could not be started, or killed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The request's argument list is empty.
    #[error("no program to run")]
    EmptyArgv,
    /// The log file could not be opened.
    #[error("opening the log {path}")]
    Log {
        /// The log.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The program could not be executed.
    #[error("executing {program}")]
    Exec {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The pidfile could not be written (the child was killed).
    #[error("writing the pidfile {path}")]
    Pidfile {
        /// The pidfile.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The VM already has a running child.
    #[error("VM {vm} already runs as pid {pid}")]
    AlreadyRunning {
        /// The VM.
        vm: Uuid,
        /// Its child.
        pid: u32,
    },
    /// The child exited before its QMP socket accepted a connection.
    #[error("the child exited before it was ready ({exit})")]
    Exited {
        /// How it ended.
        exit: ChildExit,
        /// The last lines of its log.
        log_tail: Vec<String>,
    },
    /// The QMP socket accepted no connection in time; the child was killed.
    #[error("the child was not ready within {timeout:?} and was killed")]
    NotReady {
        /// The ready timeout.
        timeout: Duration,
        /// The last lines of its log.
        log_tail: Vec<String>,
    },
    /// A SIGKILLed child was not reaped within [`KILL_WAIT`].
    #[error("pid {pid} did not exit after SIGKILL")]
    NoExit {
        /// The child.
        pid: u32,
    },
    /// The guard is released: it starts nothing.
    #[error("the guard is released")]
    Closed,
    /// The spawner thread is gone (it never ends while the guard runs).
    #[error("the spawner thread is gone")]
    SpawnerGone,
    /// A thread could not be started.
    #[error("starting the {0} thread")]
    Thread(&'static str, #[source] io::Error),
}

impl SpawnError {
    /// The refusal the guard answers with.
    pub fn refusal(&self) -> GuardRefusal {
        match self {
            SpawnError::Exited { exit, log_tail } => GuardRefusal::Exited {
                exit: *exit,
                log_tail: log_tail.clone(),
            },
            SpawnError::NotReady { timeout, log_tail } => GuardRefusal::NotReady {
                timeout_ms: timeout.as_millis() as u64,
                log_tail: log_tail.clone(),
            },
            SpawnError::AlreadyRunning { vm, pid } => {
                GuardRefusal::AlreadyRunning { vm: *vm, pid: *pid }
            }
            SpawnError::NoExit { pid } => GuardRefusal::NoExit { pid: *pid },
            SpawnError::Closed => GuardRefusal::Released,
            other => GuardRefusal::Start {
                message: vinfra_types::error::chain(other),
            },
        }
    }
}

/// A child that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Its VM.
    pub vm: Uuid,
    /// Its pid.
    pub pid: u32,
    /// How it ended.
    pub exit: ChildExit,
    /// When it was reaped.
    pub at: Instant,
}

/// A running child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its VM.
    pub vm: Uuid,
    /// Its pid.
    pub pid: u32,
    /// Its QMP socket.
    pub qmp_socket: PathBuf,
}

#[derive(Default)]
struct Table {
    live: BTreeMap<Uuid, Running>,
    exits: VecDeque<Exit>,
    closed: bool,
}

struct Job {
    command: Command,
    program: String,
    vm: Uuid,
    qmp_socket: PathBuf,
    reply: mpsc::Sender<Result<u32, SpawnError>>,
}

/// The guard's children: the spawner and reaper threads and the table they share.
pub struct Children {
    guard_pid: u32,
    table: Mutex<Table>,
    changed: Condvar,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children")
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl Children {
    /// Starts the spawner and the reaper threads (they run as long as the process).
    pub fn start() -> Result<Arc<Children>, SpawnError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let children = Arc::new(Children {
            guard_pid: std::process::id(),
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
            jobs: Mutex::new(tx),
        });
        let c = children.clone();
        std::thread::Builder::new()
            .name("guard-spawner".into())
            .spawn(move || c.spawner(rx))
            .map_err(|e| SpawnError::Thread("spawner", e))?;
        let c = children.clone();
        std::thread::Builder::new()
            .name("guard-reaper".into())
            .spawn(move || c.reaper())
            .map_err(|e| SpawnError::Thread("reaper", e))?;
        Ok(children)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The spawner thread: forks every child, so that their parent thread lives as long as the
    /// guard (it returns only when the process ends).
    fn spawner(&self, jobs: mpsc::Receiver<Job>) {
        for mut job in jobs {
            let result = {
                let mut table = self.lock();
                if table.closed {
                    Err(SpawnError::Closed)
                } else if let Some(r) = table.live.get(&job.vm) {
                    Err(SpawnError::AlreadyRunning {
                        vm: job.vm,
                        pid: r.pid,
                    })
                } else {
                    match job.command.spawn() {
                        Ok(child) => {
                            let pid = child.id();
                            table.live.insert(
                                job.vm,
                                Running {
                                    vm: job.vm,
                                    pid,
                                    qmp_socket: job.qmp_socket.clone(),
                                },
                            );
                            self.changed.notify_all();
                            Ok(pid)
                        }
                        Err(source) => Err(SpawnError::Exec {
                            program: job.program.clone(),
                            source,
                        }),
                    }
                }
            };
            // The child's ends of the log are closed here, with the command.
            drop(job.command);
            let _ = job.reply.send(result);
        }
    }

    /// The reaper thread: waits for any child to end (without reaping it), then reaps it
    /// under the table's lock and records how it ended.
    fn reaper(&self) {
        loop {
            match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.reap(pid);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => {
                    let table = self.lock();
                    let wait = if table.live.is_empty() {
                        Duration::from_secs(1)
                    } else {
                        Duration::from_millis(50)
                    };
                    let _ = self.changed.wait_timeout(table, wait);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "waitid failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn reap(&self, pid: Pid) {
        let mut table = self.lock();
        let exit = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => ChildExit::Code(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => ChildExit::Signal(signal as i32),
            // Already reaped (by the standard library, after a failed exec), or not ended.
            Ok(_) | Err(_) => return,
        };
        let pid = pid.as_raw() as u32;
        let vm = table.live.values().find(|r| r.pid == pid).map(|r| r.vm);
        let Some(vm) = vm else {
            return;
        };
        table.live.remove(&vm);
        tracing::info!(%vm, pid, %exit, "child ended");
        table.exits.push_back(Exit {
            vm,
            pid,
            exit,
            at: Instant::now(),
        });
        while table.exits.len() > EXITS_KEPT {
            table.exits.pop_front();
        }
        self.changed.notify_all();
    }

    /// Starts `spec`'s child and returns its pid once its QMP socket accepts a connection; a
    /// child that exits first or is not ready in time (then killed and reaped) is an error
    /// carrying the end of its log.
    pub fn spawn(&self, spec: &SpawnSpec) -> Result<u32, SpawnError> {
        let program = spec.argv.first().ok_or(SpawnError::EmptyArgv)?.clone();
        let log_error = |source| SpawnError::Log {
            path: spec.log.clone(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(log_error)?;
        let log_start = log.metadata().map_err(log_error)?.len();
        let mut command = Command::new(&program);
        command
            .args(&spec.argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(log_error)?)
            .stderr(log);
        sys::start_child(
            &mut command,
            spec.confinement.as_ref(),
            Some(self.guard_pid),
            spec.no_huge_pages,
        )
        .map_err(|source| SpawnError::Exec {
            program: program.clone(),
            source,
        })?;
        let (reply, answer) = mpsc::channel();
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Job {
                command,
                program,
                vm: spec.vm,
                qmp_socket: spec.qmp_socket.clone(),
                reply,
            })
            .map_err(|_| SpawnError::SpawnerGone)?;
        let pid = answer.recv().map_err(|_| SpawnError::SpawnerGone)??;
        tracing::info!(vm = %spec.vm, pid, "child started");
        if let Some(path) = &spec.pidfile {
            if let Err(source) = std::fs::write(path, format!("{pid}\n")) {
                let _ = self.kill(spec.vm);
                return Err(SpawnError::Pidfile {
                    path: path.clone(),
                    source,
                });
            }
        }
        let timeout = Duration::from_millis(spec.ready_timeout_ms);
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(exit) = self.ended(spec.vm, pid) {
                return Err(SpawnError::Exited {
                    exit,
                    log_tail: log_tail(&spec.log, log_start),
                });
            }
            if UnixStream::connect(&spec.qmp_socket).is_ok() {
                return Ok(pid);
            }
            if Instant::now() >= deadline {
                self.kill(spec.vm)?;
                return Err(SpawnError::NotReady {
                    timeout,
                    log_tail: log_tail(&spec.log, log_start),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(READY_POLL);
        }
    }

    /// How child `pid` of `vm` ended, once it has.
    fn ended(&self, vm: Uuid, pid: u32) -> Option<ChildExit> {
        let table = self.lock();
        ended_in(&table, vm, pid)
    }

    /// SIGKILLs `vm`'s child and returns once it is reaped, with how it ended; `None` when the
    /// VM has no child.
    pub fn kill(&self, vm: Uuid) -> Result<Option<ChildExit>, SpawnError> {
        // Signalled under the lock: a pid in the table is not reaped yet, so not reused.
        let picked = self.kill_where(|r| r.vm == vm);
        let Some(&(_, pid)) = picked.first() else {
            return Ok(None);
        };
        let gone = self.wait_gone(&[(vm, pid)], KILL_WAIT);
        match gone.first() {
            Some((_, exit)) => Ok(Some(*exit)),
            None => Err(SpawnError::NoExit { pid }),
        }
    }

    /// SIGKILLs the children `pick` chooses, and returns them.
    pub fn kill_where(&self, pick: impl Fn(&Running) -> bool) -> Vec<(Uuid, u32)> {
        let table = self.lock();
        let picked: Vec<(Uuid, u32)> = table
            .live
            .values()
            .filter(|r| pick(r))
            .map(|r| (r.vm, r.pid))
            .collect();
        for (_, pid) in &picked {
            signal(*pid, Signal::SIGKILL);
        }
        picked
    }

    /// Waits until the given children are reaped, at most `timeout`; returns those that were,
    /// with how they ended.
    pub fn wait_gone(&self, which: &[(Uuid, u32)], timeout: Duration) -> Vec<(Uuid, ChildExit)> {
        let deadline = Instant::now() + timeout;
        let mut table = self.lock();
        loop {
            let gone: Vec<(Uuid, ChildExit)> = which
                .iter()
                .filter_map(|(vm, pid)| ended_in(&table, *vm, *pid).map(|e| (*vm, e)))
                .collect();
            let now = Instant::now();
            if gone.len() == which.len() || now >= deadline {
                return gone;
            }
            table = self
                .changed
                .wait_timeout(table, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The running children.
    pub fn live(&self) -> Vec<Running> {
        self.lock().live.values().cloned().collect()
    }

    /// The running children and the last ended ones, for `status`.
    pub fn views(&self, now: Instant) -> (Vec<ChildView>, Vec<ExitView>) {
        let table = self.lock();
        let live = table
            .live
            .values()
            .map(|r| ChildView {
                vm: r.vm,
                pid: r.pid,
            })
            .collect();
        let exits = table
            .exits
            .iter()
            .map(|e| ExitView {
                vm: e.vm,
                pid: e.pid,
                exit: e.exit,
                age_ms: now.saturating_duration_since(e.at).as_millis() as u64,
            })
            .collect();
        (live, exits)
    }

    /// Stops starting children when there is none (for a release); otherwise returns their
    /// VMs.
    pub fn close_if_empty(&self) -> Result<(), Vec<Uuid>> {
        let mut table = self.lock();
        if !table.live.is_empty() {
            return Err(table.live.keys().copied().collect());
        }
        table.closed = true;
        Ok(())
    }

    /// Starts children again after a release that failed.
    pub fn reopen(&self) {
        self.lock().closed = false;
    }
}

/// How child `pid` of `vm` ended, if it is no longer running.
fn ended_in(table: &Table, vm: Uuid, pid: u32) -> Option<ChildExit> {
    if table.live.get(&vm).is_some_and(|r| r.pid == pid) {
        return None;
    }
    table
        .exits
        .iter()
        .rev()
        .find(|e| e.vm == vm && e.pid == pid)
        .map(|e| e.exit)
}

/// Sends `signal` to `pid`; a process already gone is not an error.
fn signal(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        if raw > 1 {
            if let Err(e) = nix::sys::signal::kill(Pid::from_raw(raw), signal) {
                if e != Errno::ESRCH {
                    tracing::warn!(pid, error = %e, "cannot signal a child");
                }
            }
        }
    }
}

/// The last lines the child wrote to `log` after `start` (its size when the child started).
pub fn log_tail(log: &Path, start: u64) -> Vec<String> {
    let read = || -> io::Result<String> {
        let mut f = File::open(log)?;
        let len = f.metadata()?.len();
        let from = start.max(len.saturating_sub(LOG_TAIL_BYTES));
        f.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        f.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = read().unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_is_what_the_child_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "old run\n").unwrap();
        let start = std::fs::metadata(&log).unwrap().len();
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("line {i}\n\n"));
        }
        std::fs::write(&log, format!("old run\n{text}")).unwrap();
        let tail = log_tail(&log, start);
        assert_eq!(tail.len(), LOG_TAIL_LINES);
        assert_eq!(tail.first().unwrap(), "line 10");
        assert_eq!(tail.last().unwrap(), "line 29");
        assert!(log_tail(&dir.path().join("missing"), 0).is_empty());
    }
}
