//! A fake QEMU for unit tests: an in-memory state machine per VM that answers the manager the
//! way QEMU does, and that a test drives where a guest or the network would (the guest powers
//! off or ignores the power button, a migration completes or fails, an incoming guest arrives,
//! the process dies).
//!
//! What it models, as QEMU with the agent's command line behaves:
//! - a launched QEMU runs its guest (`running`), or waits for an incoming migration
//!   (`inmigrate`) when launched with `incoming`; `listen_incoming` is accepted once, there;
//! - `powerdown` makes a running guest power off and QEMU exit (with a `SHUTDOWN` event),
//!   unless the test made the guest ignore it; a paused guest cannot react;
//! - `migrate` starts an outgoing migration (`active`); [`FakeRunner::complete_migration`]
//!   ends it as QEMU does: `completed`, the source paused in `postmigrate`;
//!   [`FakeRunner::fail_migration`] or `cancel_migration` leave the guest running;
//! - `cont` resumes any paused guest, including a source whose migration completed (QEMU allows
//!   it: keeping that copy paused is the agent's job), but not one waiting for its migration;
//! - `kill` ends the process; a killed or crashed QEMU is not alive and answers nothing;
//! - a wedged QEMU ([`FakeRunner::wedge`], as one stopped with SIGSTOP or stuck in I/O) is alive
//!   but answers no QMP command until [`FakeRunner::unwedge`]; `kill` (SIGKILL) still ends it.
//!
//! Pids start at 2^23, above any pid Linux hands out, so no real process is ever mistaken for
//! a fake one. Every command is logged per VM ([`FakeRunner::calls`]), across relaunches.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use uuid::Uuid;
use vinfra_qmp::QmpError;
use vinfra_types::Accel;

use super::{
    Launch, MigrationEvents, MigrationParams, MigrationState, MigrationStats, QemuError,
    QemuProcess, RunState, StreamTls, VmFiles, VmRunner,
};

/// First pid handed out: above Linux's largest `pid_max` (2^22).
const FIRST_PID: u32 = 1 << 23;

/// What a fake QEMU was given to encrypt a migration with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSeen {
    /// [`StreamTls::peer`].
    pub peer: String,
    /// The files in [`StreamTls::dir`] when QEMU was asked (QEMU reads them then), sorted.
    pub files: Vec<String>,
}

impl TlsSeen {
    fn of(tls: &StreamTls) -> TlsSeen {
        let mut files: Vec<String> = std::fs::read_dir(&tls.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        TlsSeen {
            peer: tls.peer.clone(),
            files,
        }
    }
}

/// A command the manager sent to a fake QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A QEMU was started (waiting for an incoming migration when `incoming`).
    Launch {
        /// Started with `-incoming defer`.
        incoming: bool,
        /// The command line it was given.
        args: Vec<String>,
    },
    /// `cont`.
    Cont,
    /// `system_powerdown`.
    Powerdown,
    /// `system_reset`.
    Reset,
    /// `migrate-incoming` on this URI, with TLS when given.
    ListenIncoming(String, Option<TlsSeen>),
    /// `migrate` to this URI with these parameters, with TLS when given.
    Migrate(String, MigrationParams, Option<TlsSeen>),
    /// `migrate-set-parameters downtime-limit` during a migration.
    SetDowntimeLimit(u64),
    /// `migrate_cancel`.
    CancelMigration,
    /// `quit` / SIGKILL.
    Kill,
}

/// One VM's fake QEMU.
#[derive(Debug)]
struct FakeQemu {
    pid: u32,
    alive: bool,
    status: RunState,
    migration: MigrationState,
    migration_error: Option<String>,
    /// `dirty-sync-count`: the pass under way (1: the first).
    rounds: u64,
    listening: Option<String>,
    ignores_powerdown: bool,
    shutdown_seen: bool,
    launch: Launch,
    /// Its QMP events (a `MIGRATION` event at each end of an outgoing migration, `RESUME` when
    /// an incoming guest arrives).
    events: tokio::sync::broadcast::Sender<vinfra_qmp::QmpEvent>,
}

impl FakeQemu {
    /// Sets the outgoing migration's state and sends the `MIGRATION` event QEMU would.
    fn set_migration(&mut self, state: MigrationState) {
        let data = serde_json::json!({ "status": state.as_qmp() });
        self.migration = state;
        self.emit("MIGRATION", data);
    }

    /// A guest stopped for a switchover runs again (`RESUME`), as after a failed or cancelled
    /// migration.
    fn resume_after_switchover(&mut self) {
        if self.status == RunState::FinishMigrate {
            self.status = RunState::Running;
            self.emit("RESUME", serde_json::json!({}));
        }
    }

    /// Sends QMP event `event` with `data` to its subscribers.
    fn emit(&self, event: &str, data: serde_json::Value) {
        let event = vinfra_qmp::QmpEvent {
            event: event.into(),
            data,
            timestamp: serde_json::Value::Null,
        };
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}

#[derive(Debug, Default)]
struct FakeHost {
    next_pid: u32,
    vms: HashMap<Uuid, FakeQemu>,
    calls: HashMap<Uuid, Vec<Call>>,
    failing_launches: usize,
    busy_ports: usize,
    wedged: HashSet<Uuid>,
}

impl FakeHost {
    fn log(&mut self, id: Uuid, call: Call) {
        self.calls.entry(id).or_default().push(call);
    }
}

/// The fake [`VmRunner`]. Clones share the same fake host, so a test keeps one to drive the
/// QEMUs of the manager it gave another to.
#[derive(Debug, Clone)]
pub struct FakeRunner {
    accel: Accel,
    host: Arc<Mutex<FakeHost>>,
    /// Bumped whenever a QEMU is unwedged: wakes the commands waiting on one.
    wake: Arc<watch::Sender<u64>>,
}

fn lock(host: &Mutex<FakeHost>) -> MutexGuard<'_, FakeHost> {
    host.lock().unwrap_or_else(|p| p.into_inner())
}

/// A QMP error as QEMU answers a command it refuses.
fn refused(desc: &str) -> QemuError {
    QemuError::Qmp(QmpError::Qmp {
        class: "GenericError".into(),
        desc: desc.into(),
    })
}

impl FakeRunner {
    /// A fake host whose VMs run with `accel`.
    pub fn new(accel: Accel) -> FakeRunner {
        FakeRunner {
            accel,
            host: Arc::new(Mutex::new(FakeHost {
                next_pid: FIRST_PID,
                ..FakeHost::default()
            })),
            wake: Arc::new(watch::channel(0).0),
        }
    }

    /// VM `id`'s QEMU stops answering QMP (its commands wait) until [`FakeRunner::unwedge`].
    pub fn wedge(&self, id: Uuid) {
        lock(&self.host).wedged.insert(id);
    }

    /// VM `id`'s QEMU answers again, the commands that waited first.
    pub fn unwedge(&self, id: Uuid) {
        lock(&self.host).wedged.remove(&id);
        self.wake.send_modify(|n| *n += 1);
    }

    /// Runs `f` on VM `id`'s QEMU if it is alive; `None` otherwise.
    fn with_live<T>(&self, id: Uuid, f: impl FnOnce(&mut FakeQemu) -> T) -> Option<T> {
        lock(&self.host).vms.get_mut(&id).filter(|q| q.alive).map(f)
    }

    /// Makes the next `n` launches fail as QEMU refusing to start.
    pub fn fail_next_launches(&self, n: usize) {
        lock(&self.host).failing_launches = n;
    }

    /// Makes the next `n` `listen_incoming` calls fail as a port already in use.
    pub fn busy_ports(&self, n: usize) {
        lock(&self.host).busy_ports = n;
    }

    /// True while VM `id` has a live QEMU.
    pub fn is_alive(&self, id: Uuid) -> bool {
        self.with_live(id, |_| ()).is_some()
    }

    /// The pid of VM `id`'s live QEMU.
    pub fn pid(&self, id: Uuid) -> Option<u32> {
        self.with_live(id, |q| q.pid)
    }

    /// The run state of VM `id`'s live QEMU.
    pub fn status(&self, id: Uuid) -> Option<RunState> {
        self.with_live(id, |q| q.status.clone())
    }

    /// The outgoing migration state of VM `id`'s live QEMU.
    pub fn migration(&self, id: Uuid) -> Option<MigrationState> {
        self.with_live(id, |q| q.migration.clone())
    }

    /// The URI VM `id`'s incoming QEMU listens on.
    pub fn listening(&self, id: Uuid) -> Option<String> {
        self.with_live(id, |q| q.listening.clone()).flatten()
    }

    /// What VM `id`'s last QEMU was launched with.
    pub fn last_launch(&self, id: Uuid) -> Option<Launch> {
        lock(&self.host).vms.get(&id).map(|q| q.launch.clone())
    }

    /// Every command sent to VM `id`'s QEMUs, in order.
    pub fn calls(&self, id: Uuid) -> Vec<Call> {
        lock(&self.host).calls.get(&id).cloned().unwrap_or_default()
    }

    /// The guest powers itself off: QEMU reports `SHUTDOWN` and exits.
    pub fn guest_powers_off(&self, id: Uuid) {
        self.with_live(id, |q| {
            q.shutdown_seen = true;
            q.alive = false;
        });
    }

    /// The guest ignores the power button from now on.
    pub fn ignore_powerdown(&self, id: Uuid) {
        self.with_live(id, |q| q.ignores_powerdown = true);
    }

    /// QEMU dies (killed from outside, or crashed): no `SHUTDOWN`.
    pub fn crash(&self, id: Uuid) {
        self.with_live(id, |q| q.alive = false);
    }

    /// The guest is paused (as by QMP `stop`).
    pub fn pause(&self, id: Uuid) {
        self.with_live(id, |q| q.status = RunState::Paused);
    }

    /// The outgoing migration's switchover begins: the guest stops here (`finish-migrate`, a
    /// `STOP` event) to send the last of its state. False when no migration was under way or
    /// the guest was not running.
    pub fn switchover(&self, id: Uuid) -> bool {
        self.with_live(id, |q| {
            if !q.migration.is_active() || q.status != RunState::Running {
                return false;
            }
            q.status = RunState::FinishMigrate;
            q.emit("STOP", serde_json::json!({}));
            true
        })
        .unwrap_or(false)
    }

    /// The outgoing migration sent everything: `completed`, the source paused in
    /// `postmigrate` (after the switchover's `STOP` when it had not begun yet). False when no
    /// migration was under way.
    pub fn complete_migration(&self, id: Uuid) -> bool {
        self.with_live(id, |q| {
            if !q.migration.is_active() {
                return false;
            }
            if q.status == RunState::Running {
                q.emit("STOP", serde_json::json!({}));
            }
            q.set_migration(MigrationState::Completed);
            q.status = RunState::PostMigrate;
            true
        })
        .unwrap_or(false)
    }

    /// The outgoing migration begins pass `pass` (`dirty-sync-count`); with `event`, QEMU's
    /// `MIGRATION_PASS` event is sent. False when no migration was under way.
    pub fn begin_pass(&self, id: Uuid, pass: u64, event: bool) -> bool {
        self.with_live(id, |q| {
            if !q.migration.is_active() {
                return false;
            }
            q.rounds = pass;
            if event {
                q.emit("MIGRATION_PASS", serde_json::json!({ "pass": pass }));
            }
            true
        })
        .unwrap_or(false)
    }

    /// The outgoing migration fails with `error`; the guest keeps running here. False when no
    /// migration was under way.
    pub fn fail_migration(&self, id: Uuid, error: &str) -> bool {
        self.with_live(id, |q| {
            if !q.migration.is_active() {
                return false;
            }
            q.migration_error = Some(error.into());
            q.set_migration(MigrationState::Failed);
            q.resume_after_switchover();
            true
        })
        .unwrap_or(false)
    }

    /// The incoming guest arrived (its migration completed) and runs here. False when the
    /// QEMU was not listening for one.
    pub fn arrive(&self, id: Uuid) -> bool {
        self.with_live(id, |q| {
            if q.status != RunState::InMigrate || q.listening.is_none() {
                return false;
            }
            q.status = RunState::Running;
            // As QEMU does: `query-migrate` on the destination shows the incoming migration
            // that brought the guest, until an outgoing one starts.
            q.migration = MigrationState::Completed;
            q.emit("RESUME", serde_json::json!({}));
            true
        })
        .unwrap_or(false)
    }
}

#[async_trait::async_trait]
impl VmRunner for FakeRunner {
    fn accel(&self) -> Accel {
        self.accel
    }

    async fn launch(
        &self,
        launch: &Launch,
        args: Vec<OsString>,
    ) -> Result<Box<dyn QemuProcess>, QemuError> {
        let mut host = lock(&self.host);
        host.log(
            launch.id,
            Call::Launch {
                incoming: launch.incoming,
                args: args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            },
        );
        if host.failing_launches > 0 {
            host.failing_launches -= 1;
            return Err(QemuError::Failed {
                stderr: "fake QEMU refused to start".into(),
            });
        }
        let pid = host.next_pid;
        host.next_pid += 1;
        host.vms.insert(
            launch.id,
            FakeQemu {
                pid,
                alive: true,
                status: if launch.incoming {
                    RunState::InMigrate
                } else {
                    RunState::Running
                },
                migration: MigrationState::None,
                migration_error: None,
                rounds: 0,
                listening: None,
                ignores_powerdown: false,
                shutdown_seen: false,
                launch: launch.clone(),
                events: tokio::sync::broadcast::channel(16).0,
            },
        );
        Ok(Box::new(FakeProcess {
            id: launch.id,
            pid,
            host: self.host.clone(),
            wake: self.wake.clone(),
        }))
    }

    fn adopt(&self, id: Uuid, files: &VmFiles) -> Option<Box<dyn QemuProcess>> {
        let pid = self.with_live(id, |q| {
            (q.launch.pidfile == files.pidfile()).then_some(q.pid)
        })??;
        Some(Box::new(FakeProcess {
            id,
            pid,
            host: self.host.clone(),
            wake: self.wake.clone(),
        }))
    }
}

/// One fake QEMU as the manager holds it.
#[derive(Debug)]
pub struct FakeProcess {
    id: Uuid,
    pid: u32,
    host: Arc<Mutex<FakeHost>>,
    wake: Arc<watch::Sender<u64>>,
}

impl FakeProcess {
    /// Returns once this QEMU is not wedged (at once when it is not).
    async fn answers(&self) {
        let mut woken = self.wake.subscribe();
        while lock(&self.host).wedged.contains(&self.id) {
            if woken.changed().await.is_err() {
                return;
            }
        }
    }

    /// Logs `call` and runs `f` on this QEMU if it is still the live one; [`QemuError::Gone`]
    /// otherwise.
    fn command<T>(
        &self,
        call: Option<Call>,
        f: impl FnOnce(&mut FakeQemu, &mut usize) -> Result<T, QemuError>,
    ) -> Result<T, QemuError> {
        let mut host = lock(&self.host);
        if let Some(call) = call {
            host.log(self.id, call);
        }
        let FakeHost {
            vms, busy_ports, ..
        } = &mut *host;
        match vms.get_mut(&self.id) {
            Some(q) if q.pid == self.pid && q.alive => f(q, busy_ports),
            _ => Err(QemuError::Gone),
        }
    }
}

#[async_trait::async_trait]
impl QemuProcess for FakeProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn alive(&self) -> bool {
        self.command(None, |_, _| Ok(())).is_ok()
    }

    fn shutdown_seen(&mut self) -> bool {
        lock(&self.host)
            .vms
            .get(&self.id)
            .is_some_and(|q| q.pid == self.pid && q.shutdown_seen)
    }

    async fn status(&mut self) -> Result<RunState, QemuError> {
        self.answers().await;
        self.command(None, |q, _| Ok(q.status.clone()))
    }

    async fn migration_events(&mut self) -> Result<MigrationEvents, QemuError> {
        self.answers().await;
        self.command(None, |q, _| Ok(q.events.subscribe()))
    }

    async fn migration(&mut self) -> Result<MigrationStats, QemuError> {
        self.answers().await;
        self.command(None, |q, _| {
            let mut p = MigrationStats::in_state(q.migration.clone());
            p.total_bytes = q.launch.memory_mib << 20;
            p.transferred_bytes = match q.migration {
                MigrationState::None => 0,
                MigrationState::Completed => p.total_bytes,
                _ => p.total_bytes / 2,
            };
            p.remaining_bytes = p.total_bytes - p.transferred_bytes;
            p.rounds = q.rounds;
            // As QEMU's, once it has worked them out.
            if q.migration == MigrationState::Completed {
                p.total_time_ms = 100;
                p.downtime_ms = Some(10);
            }
            p.error = q.migration_error.clone();
            Ok(p)
        })
    }

    async fn cont(&mut self) -> Result<(), QemuError> {
        self.answers().await;
        self.command(Some(Call::Cont), |q, _| match q.status {
            RunState::InMigrate => Err(refused("guest is waiting for an incoming migration")),
            _ => {
                q.status = RunState::Running;
                Ok(())
            }
        })
    }

    async fn powerdown(&mut self) -> Result<(), QemuError> {
        self.answers().await;
        self.command(Some(Call::Powerdown), |q, _| {
            if q.status == RunState::Running && !q.ignores_powerdown {
                q.shutdown_seen = true;
                q.alive = false;
            }
            Ok(())
        })
    }

    async fn reset(&mut self) -> Result<(), QemuError> {
        self.answers().await;
        self.command(Some(Call::Reset), |_, _| Ok(()))
    }

    async fn listen_incoming(
        &mut self,
        uri: &str,
        tls: Option<&StreamTls>,
    ) -> Result<(), QemuError> {
        self.answers().await;
        let call = Call::ListenIncoming(uri.into(), tls.map(TlsSeen::of));
        self.command(Some(call), |q, busy| {
            if q.status != RunState::InMigrate || q.listening.is_some() {
                return Err(refused("the incoming migration has already been started"));
            }
            if *busy > 0 {
                *busy -= 1;
                return Err(refused("Failed to bind socket: Address already in use"));
            }
            q.listening = Some(uri.into());
            Ok(())
        })
    }

    async fn migrate(
        &mut self,
        uri: &str,
        params: MigrationParams,
        tls: Option<&StreamTls>,
    ) -> Result<(), QemuError> {
        self.answers().await;
        let call = Call::Migrate(uri.into(), params, tls.map(TlsSeen::of));
        self.command(Some(call), |q, _| {
            if q.migration.is_active() {
                return Err(refused("There's a migration process in progress"));
            }
            if q.status == RunState::InMigrate {
                return Err(refused("guest is waiting for an incoming migration"));
            }
            q.migration_error = None;
            q.rounds = 1;
            q.set_migration(MigrationState::Active("active".into()));
            Ok(())
        })
    }

    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), QemuError> {
        self.answers().await;
        self.command(Some(Call::SetDowntimeLimit(ms)), |_, _| Ok(()))
    }

    async fn cancel_migration(&mut self) -> Result<(), QemuError> {
        self.answers().await;
        self.command(Some(Call::CancelMigration), |q, _| {
            if q.migration.is_active() {
                // QEMU's order: `cancelling`, the guest resumed, `cancelled`.
                q.resume_after_switchover();
                q.set_migration(MigrationState::Cancelled);
            }
            Ok(())
        })
    }

    async fn kill(&mut self) -> Result<(), QemuError> {
        match self.command(Some(Call::Kill), |q, _| {
            q.alive = false;
            Ok(())
        }) {
            Err(QemuError::Gone) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
