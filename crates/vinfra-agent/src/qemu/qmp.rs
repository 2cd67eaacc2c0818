//! The real [`VmRunner`]: daemonized QEMU processes driven over QMP ([`vinfra_qmp`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use uuid::Uuid;
use vinfra_qmp::{MigrateParameters, Qmp};
use vinfra_types::Accel;

use super::{
    is_our_qemu, kill, read_pidfile, Launch, MigrationParams, MigrationState, MigrationStats,
    QemuError, QemuProcess, RunState, VmFiles, VmRunner,
};

/// How long connecting to a QMP socket may take.
const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `quit` may take before SIGKILL.
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a SIGKILLed QEMU may take to disappear.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemonizing parent's pidfile and QMP socket may take to appear.
const PIDFILE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `binary` with `-daemonize` for each VM.
#[derive(Debug, Clone)]
pub struct QemuRunner {
    /// `qemu-system-x86_64`, or a full path.
    pub binary: PathBuf,
    /// Accelerator for every VM (from the probe).
    pub accel: Accel,
}

impl QemuRunner {
    /// Runs QEMU with `-daemonize` and returns the pid from its pidfile once its QMP socket
    /// exists (blocking).
    fn spawn(&self, launch: &Launch, args: Vec<OsString>) -> Result<u32, QemuError> {
        let out = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| QemuError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(QemuError::Failed {
                stderr: if stderr.is_empty() {
                    format!("exit status {}", out.status)
                } else {
                    stderr
                },
            });
        }
        // With -daemonize the parent exits once the child is initialised: pidfile and QMP
        // socket exist by now; allow a moment for slow file systems.
        let deadline = Instant::now() + PIDFILE_TIMEOUT;
        loop {
            if let Some(pid) = read_pidfile(&launch.pidfile) {
                if launch.qmp_socket.exists() {
                    return Ok(pid);
                }
            }
            if Instant::now() > deadline {
                return Err(QemuError::NoPid(launch.pidfile.clone()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let pid = tokio::task::spawn_blocking(move || runner.spawn(&l, args))
            .await
            .map_err(QemuError::Launcher)??;
        let mut process = QmpProcess {
            pid,
            qmp_socket: launch.qmp_socket.clone(),
            qmp: None,
            shutdown_seen: false,
        };
        if let Err(e) = process.connect().await {
            // Nobody could command it: it must not stay.
            let _ = kill(pid, Signal::SIGKILL);
            return Err(e);
        }
        Ok(Box::new(process))
    }

    fn adopt(&self, _id: Uuid, files: &VmFiles) -> Option<Box<dyn QemuProcess>> {
        let pid = read_pidfile(&files.pidfile())?;
        let qmp_socket = files.qmp_socket();
        is_our_qemu(pid, &qmp_socket).then(|| {
            Box::new(QmpProcess {
                pid,
                qmp_socket,
                qmp: None,
                shutdown_seen: false,
            }) as Box<dyn QemuProcess>
        })
    }
}

/// One daemonized QEMU, its QMP connection made when first needed and remade after it
/// closed.
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
        let q = Arc::new(Qmp::connect(&self.qmp_socket, QMP_CONNECT_TIMEOUT).await?);
        self.qmp = Some(q.clone());
        Ok(q)
    }

    /// Waits until the process is gone, at most `timeout`. True when it is.
    async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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
            total_time_ms: info.total_time.unwrap_or(0),
            downtime_ms: info.downtime,
            error: info.error_desc.clone(),
        })
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

    async fn listen_incoming(&mut self, uri: &str) -> Result<(), QemuError> {
        Ok(self.connect().await?.migrate_incoming(uri).await?)
    }

    async fn migrate(&mut self, uri: &str, params: MigrationParams) -> Result<(), QemuError> {
        let q = self.connect().await?;
        q.migrate_set_parameters(&MigrateParameters {
            max_bandwidth: Some(params.max_bandwidth),
            downtime_limit: Some(params.downtime_limit_ms),
        })
        .await?;
        Ok(q.migrate(uri).await?)
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
