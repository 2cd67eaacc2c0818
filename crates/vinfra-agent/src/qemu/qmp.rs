//! The real [`VmRunner`]: QEMU processes in a session of their own or children of the host's
//! guard, confined ([`crate::confine`]), driven over QMP ([`vinfra_qmp`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use uuid::Uuid;
use vinfra_guard::{ChildExit, GuardClient, GuardClientError, GuardRefusal, SpawnSpec};
use vinfra_qmp::{MigrateParameters, Qmp};
use vinfra_types::Accel;

use super::cmdline::huge_pages;
use super::{
    is_our_qemu, kill, read_pidfile, Launch, MigrationEvents, MigrationParams, MigrationState,
    MigrationStats, QemuError, QemuProcess, RunState, StreamTls, VmFiles, VmRunner,
};

/// The id of the `tls-creds-x509` object a migration stream is encrypted with.
const MIGRATION_TLS_CREDS: &str = "vinfra-migration-tls";
/// The id of the `authz-simple` object an incoming migration's source must pass.
const MIGRATION_TLS_AUTHZ: &str = "vinfra-migration-authz";

/// Which end of a migration stream a QEMU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsEnd {
    Source,
    Destination,
}

/// Readies the QEMU behind `q` to migrate with `tls` (or in plain text without it), whatever
/// an earlier migration of this QEMU left: the parameters naming credentials are cleared and
/// the objects deleted first (a QEMU that arrived encrypted keeps its server credentials, and
/// sending with them fails), then, with `tls`, the credentials are made from `tls.dir` and
/// named: a destination's with the one source subject it accepts (`authz-simple`; any other
/// certificate, the cluster CA's included, fails its handshake and leaves the listener as it
/// was), a source's with the name the destination must prove (`tls-hostname`).
async fn set_stream_tls(q: &Qmp, tls: Option<&StreamTls>, end: TlsEnd) -> Result<(), QemuError> {
    let empty = || Some(String::new());
    q.migrate_set_parameters(&MigrateParameters {
        tls_creds: empty(),
        tls_hostname: empty(),
        tls_authz: empty(),
        ..Default::default()
    })
    .await?;
    for id in [MIGRATION_TLS_CREDS, MIGRATION_TLS_AUTHZ] {
        match q.object_del(id).await {
            // Not there: nothing to delete.
            Ok(()) | Err(vinfra_qmp::QmpError::Qmp { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let Some(tls) = tls else {
        return Ok(());
    };
    let endpoint = match end {
        TlsEnd::Source => "client",
        TlsEnd::Destination => "server",
    };
    q.object_add(serde_json::json!({
        "qom-type": "tls-creds-x509",
        "id": MIGRATION_TLS_CREDS,
        "dir": tls.dir,
        "endpoint": endpoint,
        "verify-peer": true,
    }))
    .await?;
    let named = match end {
        TlsEnd::Destination => {
            q.object_add(serde_json::json!({
                "qom-type": "authz-simple",
                "id": MIGRATION_TLS_AUTHZ,
                "identity": tls.peer,
            }))
            .await?;
            MigrateParameters {
                tls_creds: Some(MIGRATION_TLS_CREDS.into()),
                tls_authz: Some(MIGRATION_TLS_AUTHZ.into()),
                ..Default::default()
            }
        }
        TlsEnd::Source => MigrateParameters {
            tls_creds: Some(MIGRATION_TLS_CREDS.into()),
            tls_hostname: Some(tls.peer.clone()),
            ..Default::default()
        },
    };
    Ok(q.migrate_set_parameters(&named).await?)
}

/// Whether process `pid` may have transparent huge pages (`THP_enabled` of its status; `None`
/// when that is not known).
fn thp_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim() == "1")
}

/// How long connecting to a QMP socket may take.
const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `quit` may take before SIGKILL.
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a SIGKILLed QEMU may take to disappear.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a QEMU started by the guard may take to accept a QMP connection (the guard kills it
/// after that).
pub const GUARD_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than [`GUARD_READY_TIMEOUT`] the agent waits for the guard's answer.
const GUARD_ANSWER_SLACK: Duration = Duration::from_secs(5);
/// How long a QEMU whose QMP failed right after its start is watched for its exit (then it
/// is reported with its exit status and log).
const EARLY_EXIT_WAIT: Duration = Duration::from_secs(2);
/// How often, at most, a QEMU started without the guard is tried for readiness (its QMP
/// socket): first after 1 ms, then every 2 ms (one `connect(2)` each; each ms waited past
/// its readiness is a ms more on its create).
const READY_POLL: Duration = Duration::from_millis(2);
/// How many lines of QEMU's log an early exit carries.
const LOG_TAIL_LINES: usize = 20;

/// The last [`LOG_TAIL_LINES`] non-empty lines written to `log` after byte `from`.
fn log_tail(log: &Path, from: u64) -> Vec<String> {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].to_vec()
}

/// How the guard's child `pid` of `vm` ended, if the guard saw it end within
/// [`EARLY_EXIT_WAIT`] (asked on blocking threads).
async fn early_exit(guard: &Path, vm: Uuid, pid: u32) -> Option<ChildExit> {
    let deadline = Instant::now() + EARLY_EXIT_WAIT;
    loop {
        let path = guard.to_path_buf();
        let asked = tokio::task::spawn_blocking(move || {
            let mut client = GuardClient::connect(&path)?;
            client.set_timeout(Some(Duration::from_secs(1)))?;
            client.status()
        })
        .await;
        if let Ok(Ok(status)) = asked {
            if let Some(x) = status.exits.iter().find(|x| x.vm == vm && x.pid == pid) {
                return Some(x.exit);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `binary` for each VM: in a session of its own, or through the host's guard.
#[derive(Debug, Clone)]
pub struct QemuRunner {
    /// `qemu-system-x86_64`, or a full path.
    pub binary: PathBuf,
    /// Accelerator for every VM (from the probe).
    pub accel: Accel,
    /// The control socket of the host's guard (`vinfra agent --guard`): QEMU is started by the
    /// guard, as its child. `None`: the agent starts it in a session of its own (it outlives
    /// the agent).
    pub guard: Option<PathBuf>,
}

impl QemuRunner {
    /// Asks the guard at `guard` to start QEMU with `args` (no `-daemonize`) and returns its pid
    /// once its QMP socket for the guard accepts a connection (blocking: the guard answers
    /// then), with the length its log had before. A QEMU that exits first, or is not ready in
    /// time, is an error with the end of its log.
    fn spawn_guarded(
        &self,
        guard: &Path,
        launch: &Launch,
        args: Vec<OsString>,
    ) -> Result<(u32, u64), QemuError> {
        let log_start = std::fs::metadata(&launch.log).map_or(0, |m| m.len());
        let mut argv = Vec::with_capacity(args.len() + 1);
        for a in std::iter::once(self.binary.clone().into_os_string()).chain(args) {
            argv.push(a.into_string().map_err(QemuError::Argument)?);
        }
        let spec = SpawnSpec {
            vm: launch.id,
            argv,
            qmp_socket: launch.guard_qmp_socket.clone(),
            pidfile: Some(launch.pidfile.clone()),
            log: launch.log.clone(),
            ready_timeout_ms: GUARD_READY_TIMEOUT.as_millis() as u64,
            confinement: launch.confinement.clone(),
            no_huge_pages: !huge_pages(launch.accel),
        };
        let failed = |source| QemuError::Guard {
            path: guard.to_path_buf(),
            source,
        };
        let mut client = GuardClient::connect(guard).map_err(QemuError::GuardUnreachable)?;
        client
            .set_timeout(Some(GUARD_READY_TIMEOUT + GUARD_ANSWER_SLACK))
            .map_err(failed)?;
        let pid = client.spawn(&spec).map_err(|e| match e {
            GuardClientError::Refused(GuardRefusal::Exited { exit, log_tail }) => {
                QemuError::Exited { exit, log_tail }
            }
            GuardClientError::Refused(GuardRefusal::NotReady {
                timeout_ms,
                log_tail,
            }) => QemuError::NotReady {
                timeout_ms,
                log_tail,
            },
            GuardClientError::Refused(r) => QemuError::GuardRefused(r),
            other => failed(other),
        })?;
        if spec.no_huge_pages && thp_enabled(pid) == Some(true) {
            // A guard from before `no_huge_pages` ignores it: the QEMU runs, with huge pages.
            tracing::warn!(
                pid,
                "QEMU started with transparent huge pages on, asked without: the host's guard \
                 predates that; restart it (`vinfra guard`) when no VM runs"
            );
        }
        Ok((pid, log_start))
    }

    /// Starts QEMU in a session of its own (it outlives the agent), confined as `launch`
    /// says, with its output appended to `launch.log`; writes the pidfile and returns the pid
    /// once the second QMP socket accepts a connection, with the length the log had before
    /// (blocking). A QEMU that exits first, or is not ready in time (then killed), is an error
    /// with the end of its log. A thread waits for the child, so it never stays a zombie.
    fn spawn(&self, launch: &Launch, args: Vec<OsString>) -> Result<(u32, u64), QemuError> {
        let log_error = |source| QemuError::Io {
            path: launch.log.clone(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .map_err(log_error)?;
        let log_start = log.metadata().map_err(log_error)?.len();
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(log_error)?)
            .stderr(log);
        let spawn_error = |source| QemuError::Spawn {
            binary: self.binary.clone(),
            source,
        };
        vinfra_guard::start_child(
            &mut command,
            launch.confinement.as_ref(),
            None,
            !huge_pages(launch.accel),
        )
        .map_err(spawn_error)?;
        let mut child = command.spawn().map_err(spawn_error)?;
        let pid = child.id();
        // At once: an agent that stops while QEMU gets ready finds it again through it.
        if let Err(source) =
            crate::files::write_atomic(&launch.pidfile, format!("{pid}\n").as_bytes())
        {
            let _ = child.kill();
            let _ = child.wait();
            return Err(QemuError::Io {
                path: launch.pidfile.clone(),
                source,
            });
        }
        let deadline = Instant::now() + GUARD_READY_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        let ready = loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    let exit = match (status.code(), status.signal()) {
                        (Some(code), _) => ChildExit::Code(code),
                        (None, Some(signal)) => ChildExit::Signal(signal),
                        (None, None) => ChildExit::Code(-1),
                    };
                    return Err(QemuError::Exited {
                        exit,
                        log_tail: log_tail(&launch.log, log_start),
                    });
                }
                Ok(None) => {}
                Err(source) => break Err(spawn_error(source)),
            }
            if std::os::unix::net::UnixStream::connect(&launch.guard_qmp_socket).is_ok() {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(QemuError::NotReady {
                    timeout_ms: GUARD_READY_TIMEOUT.as_millis() as u64,
                    log_tail: log_tail(&launch.log, log_start),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(READY_POLL);
        };
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        // Reaped when it ends, while the agent runs (after an agent restart, init reaps it).
        std::thread::Builder::new()
            .name(format!("qemu-{pid}"))
            .spawn(move || {
                let _ = child.wait();
            })
            .map_err(spawn_error)?;
        Ok((pid, log_start))
    }
}

#[async_trait::async_trait]
impl VmRunner for QemuRunner {
    fn accel(&self) -> Accel {
        self.accel
    }

    async fn launch(
        &self,
        launch: &Launch,
        args: Vec<OsString>,
    ) -> Result<Box<dyn QemuProcess>, QemuError> {
        let runner = self.clone();
        let l = launch.clone();
        let t = Instant::now();
        let (pid, log_start) = tokio::task::spawn_blocking(move || match &runner.guard {
            Some(guard) => runner.spawn_guarded(guard, &l, args),
            None => runner.spawn(&l, args),
        })
        .await
        .map_err(QemuError::Launcher)??;
        let spawned = t.elapsed();
        // Confined as asked: a spawner that ignored the confinement (a guard from before it)
        // must not leave a QEMU running as root.
        if let Some(c) = &launch.confinement {
            let uids = super::process::uids(pid);
            if uids.iter().any(|u| *u != c.uid) || uids.is_empty() {
                let _ = kill(pid, Signal::SIGKILL);
                return Err(QemuError::NotConfined {
                    pid,
                    expected: c.uid,
                    found: uids,
                });
            }
        }
        let mut process = QmpProcess {
            pid,
            qmp_socket: launch.qmp_socket.clone(),
            qmp: None,
            shutdown_seen: false,
        };
        if let Err(e) = process.connect().await {
            // A QEMU under the guard that failed after opening its QMP socket (a kernel it
            // cannot load, say): its exit and log say why.
            if let Some(guard) = &self.guard {
                if let Some(exit) = early_exit(guard, launch.id, pid).await {
                    return Err(QemuError::Exited {
                        exit,
                        log_tail: log_tail(&launch.log, log_start),
                    });
                }
            }
            // Nobody could command it: it must not stay.
            let _ = kill(pid, Signal::SIGKILL);
            return Err(e);
        }
        tracing::debug!(
            vm = %launch.id,
            spawn_ms = spawned.as_secs_f64() * 1000.0,
            qmp_ms = (t.elapsed() - spawned).as_secs_f64() * 1000.0,
            "qemu timed"
        );
        Ok(Box::new(process))
    }

    fn adopt(&self, _id: Uuid, files: &VmFiles) -> Option<Box<dyn QemuProcess>> {
        let pid = read_pidfile(&files.pidfile())?;
        // A QEMU started before QEMUs had `run/` listens in the VM's directory.
        let qmp_socket = [files.qmp_socket(), files.legacy_qmp_socket()]
            .into_iter()
            .find(|socket| is_our_qemu(pid, socket))?;
        Some(qmp_socket).map(|qmp_socket| {
            Box::new(QmpProcess {
                pid,
                qmp_socket,
                qmp: None,
                shutdown_seen: false,
            }) as Box<dyn QemuProcess>
        })
    }
}

/// One QEMU (daemonized or the guard's child), its QMP connection made when first needed and
/// remade after it closed.
pub struct QmpProcess {
    pid: u32,
    qmp_socket: PathBuf,
    qmp: Option<Arc<Qmp>>,
    shutdown_seen: bool,
}

impl QmpProcess {
    /// Notes a `SHUTDOWN` among the events QEMU sent so far.
    fn drain_events(&mut self) {
        if let Some(q) = &self.qmp {
            while let Some(e) = q.try_next_event() {
                if e.event == "SHUTDOWN" {
                    self.shutdown_seen = true;
                }
            }
        }
    }

    /// The QMP connection, (re)connecting when there is none or it closed.
    async fn connect(&mut self) -> Result<Arc<Qmp>, QemuError> {
        if let Some(q) = &self.qmp {
            if !q.is_closed() {
                return Ok(q.clone());
            }
        }
        self.drain_events();
        let q = Arc::new(Qmp::connect_to(&self.qmp_socket, self.pid, QMP_CONNECT_TIMEOUT).await?);
        self.qmp = Some(q.clone());
        Ok(q)
    }

    /// Waits until the process is gone, at most `timeout`. True when it is. Looks again after
    /// 1 ms, then twice as long each time up to 50 ms: a QEMU told to quit is usually gone within
    /// a few ms, and a migration's or a delete's end waits on this.
    async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if !self.alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

#[async_trait::async_trait]
impl QemuProcess for QmpProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn alive(&self) -> bool {
        is_our_qemu(self.pid, &self.qmp_socket)
    }

    fn shutdown_seen(&mut self) -> bool {
        self.drain_events();
        self.shutdown_seen
    }

    async fn status(&mut self) -> Result<RunState, QemuError> {
        let q = self.connect().await?;
        self.drain_events();
        Ok(RunState::from_qmp(&q.query_status().await?.status))
    }

    async fn migration(&mut self) -> Result<MigrationStats, QemuError> {
        let info = self.connect().await?.query_migrate().await?;
        let ram = info.ram.clone().unwrap_or_default();
        Ok(MigrationStats {
            state: MigrationState::from_qmp(info.status()),
            transferred_bytes: ram.transferred,
            remaining_bytes: ram.remaining,
            total_bytes: ram.total,
            rate_bps: (ram.mbps * 1_000_000.0) as u64,
            dirty_pages_rate: ram.dirty_pages_rate,
            rounds: ram.dirty_sync_count,
            total_time_ms: info.total_time.unwrap_or(0),
            downtime_ms: info.downtime,
            error: info.error_desc.clone(),
        })
    }

    async fn migration_events(&mut self) -> Result<MigrationEvents, QemuError> {
        Ok(self.connect().await?.subscribe())
    }

    async fn cont(&mut self) -> Result<(), QemuError> {
        Ok(self.connect().await?.cont().await?)
    }

    async fn powerdown(&mut self) -> Result<(), QemuError> {
        Ok(self.connect().await?.system_powerdown().await?)
    }

    async fn reset(&mut self) -> Result<(), QemuError> {
        Ok(self.connect().await?.system_reset().await?)
    }

    async fn listen_incoming(
        &mut self,
        uri: &str,
        tls: Option<&StreamTls>,
    ) -> Result<(), QemuError> {
        let q = self.connect().await?;
        set_stream_tls(&q, tls, TlsEnd::Destination).await?;
        Ok(q.migrate_incoming(uri).await?)
    }

    async fn migrate(
        &mut self,
        uri: &str,
        params: MigrationParams,
        tls: Option<&StreamTls>,
    ) -> Result<(), QemuError> {
        let q = self.connect().await?;
        set_stream_tls(&q, tls, TlsEnd::Source).await?;
        // `MIGRATION` events (a status waiter wakes at the end instead of polling) and
        // `MIGRATION_PASS` (the early passes' end). Both capabilities are set every time (a QEMU
        // that sent before keeps what it had).
        q.migrate_set_capabilities(&[("events", true), ("auto-converge", params.auto_converge)])
            .await?;
        q.migrate_set_parameters(&MigrateParameters {
            max_bandwidth: Some(params.max_bandwidth),
            downtime_limit: Some(params.downtime_limit_ms),
            ..Default::default()
        })
        .await?;
        Ok(q.migrate(uri).await?)
    }

    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), QemuError> {
        let q = self.connect().await?;
        q.migrate_set_parameters(&MigrateParameters {
            downtime_limit: Some(ms),
            ..Default::default()
        })
        .await?;
        Ok(())
    }

    async fn cancel_migration(&mut self) -> Result<(), QemuError> {
        Ok(self.connect().await?.migrate_cancel().await?)
    }

    async fn kill(&mut self) -> Result<(), QemuError> {
        if !self.alive() {
            return Ok(());
        }
        if let Ok(q) = self.connect().await {
            let _ = q.quit().await;
        }
        if self.wait_exit(QUIT_TIMEOUT).await {
            return Ok(());
        }
        kill(self.pid, Signal::SIGKILL)?;
        if self.wait_exit(EXIT_TIMEOUT).await {
            Ok(())
        } else {
            Err(QemuError::NoExit(self.pid))
        }
    }
}
