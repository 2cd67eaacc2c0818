//! [`Vm`]: one VM in the table: its record, its files and its QEMU while one runs, and what
//! the manager learns from that QEMU (the power state, whether it is gone, a forced end).

use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use vinfra_types::{PowerState, VmObserved, VmUsage};

use super::error::{ManagerError, Result, StateConflict};
use super::records::{self, LocalVm};
use crate::qemu::{MigrationState, MigrationStats, QemuError, QemuProcess, RunState, VmFiles};
use crate::usage::Sampler;

/// How often a wait for QEMU's exit looks.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// Seconds since the Unix epoch.
pub(super) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One VM of this host.
pub(super) struct Vm {
    /// What is kept on disk.
    pub(super) record: LocalVm,
    /// Its directory and runtime files.
    pub(super) files: VmFiles,
    /// Its QEMU while one runs (as far as the manager last looked).
    pub(super) qemu: Option<Box<dyn QemuProcess>>,
    /// The guest powered itself off before its QEMU went away: a stop, not a crash.
    pub(super) shutdown_seen: bool,
}

impl Vm {
    /// A VM with this record and files and no QEMU yet.
    pub(super) fn new(record: LocalVm, files: VmFiles) -> Vm {
        Vm {
            record,
            files,
            qemu: None,
            shutdown_seen: false,
        }
    }

    /// Its id.
    pub(super) fn id(&self) -> Uuid {
        self.record.instance.id
    }

    /// Writes its record.
    pub(super) fn save(&self) -> Result<()> {
        records::save(&self.files.dir, &self.record)
    }

    /// Forgets a QEMU that is gone (noting whether its guest powered off) and its runtime
    /// files.
    pub(super) fn process_gone(&mut self) {
        if let Some(mut q) = self.qemu.take() {
            self.shutdown_seen |= q.shutdown_seen();
        }
        self.files.remove_runtime_files();
    }

    /// True when its QEMU runs; a QEMU found gone is forgotten.
    pub(super) fn check_alive(&mut self) -> bool {
        match &self.qemu {
            Some(q) if q.alive() => true,
            _ => {
                self.process_gone();
                false
            }
        }
    }

    /// Its running QEMU, or [`StateConflict::QemuNotRunning`].
    pub(super) async fn qemu(&mut self) -> Result<&mut dyn QemuProcess> {
        if !self.check_alive() {
            let state = self.state().await;
            return Err(ManagerError::BadState {
                id: self.id(),
                state,
                conflict: StateConflict::QemuNotRunning,
            });
        }
        match self.qemu.as_deref_mut() {
            Some(q) => Ok(q),
            None => Err(ManagerError::BadState {
                id: self.record.instance.id,
                state: PowerState::Unknown,
                conflict: StateConflict::QemuNotRunning,
            }),
        }
    }

    /// The outgoing migration this agent started, as QEMU sees it; `MigrationState::None` when
    /// none was started. QEMU's `query-migrate` on a QEMU that itself arrived by migration
    /// reports that incoming migration (`completed`) until an outgoing one starts: that must
    /// never be read as "this copy was sent away".
    pub(super) async fn outgoing_migration(&mut self) -> Result<MigrationStats> {
        // (`migrating_out` alone: a record written before `sent_from_this_qemu` existed.)
        let sent = self.record.sent_from_this_qemu || self.record.migrating_out;
        let q = self.qemu().await?;
        if !sent {
            return Ok(MigrationStats::in_state(MigrationState::None));
        }
        Ok(q.migration().await?)
    }

    /// The pid of its QEMU, if one runs.
    pub(super) fn pid(&self) -> Option<u32> {
        self.qemu.as_ref().map(|q| q.pid())
    }

    /// The current power state, asking QEMU when it runs ([`PowerState::Unknown`] when it does
    /// not answer). Brings the record up to date: a guest that powered itself off is stopped,
    /// an incoming guest that arrived runs here, a failed or cancelled outgoing migration is
    /// over.
    pub(super) async fn state(&mut self) -> PowerState {
        match self.read_state().await {
            Ok(state) => state,
            Err(e) => {
                let id = self.id();
                tracing::warn!("VM {id}: query-status: {}", vinfra_types::error::Chain(&e));
                PowerState::Unknown
            }
        }
    }

    /// Like [`Vm::state`], but a QEMU that runs and does not answer `query-status` is an error.
    pub(super) async fn read_state(&mut self) -> Result<PowerState, QemuError> {
        if !self.check_alive() {
            if self.shutdown_seen && self.record.want_running {
                // The guest powered itself off: a stop, not a crash.
                self.record.want_running = false;
                self.record.started_at = None;
                self.save_logged();
            }
            return Ok(if self.record.want_running {
                PowerState::Crashed
            } else {
                PowerState::Stopped
            });
        }
        let Some(q) = self.qemu.as_deref_mut() else {
            return Ok(PowerState::Unknown);
        };
        let status = q.status().await?;
        // Only an outgoing migration this agent started counts (see `outgoing_migration`).
        let migration = if self.record.migrating_out {
            q.migration().await.ok().map(|p| p.state)
        } else {
            None
        };
        if self.record.incoming && status == RunState::Running {
            self.record.incoming = false;
            self.record.incoming_uri = None;
            self.record.want_running = true;
            self.save_logged();
        }
        match migration {
            Some(m) if m.is_active() => return Ok(PowerState::Migrating),
            Some(MigrationState::Failed | MigrationState::Cancelled) => {
                self.record.migrating_out = false;
                self.save_logged();
            }
            _ => {}
        }
        Ok(status.power_state())
    }

    pub(super) fn save_logged(&self) {
        if let Err(e) = self.save() {
            tracing::warn!("VM {}: {}", self.id(), vinfra_types::error::Chain(&e));
        }
    }

    /// What the console is told about the VM now.
    pub(super) async fn observe(&mut self, sampler: &StdMutex<Sampler>) -> VmObserved {
        let state = self.state().await;
        self.observed(state, sampler)
    }

    /// Like [`Vm::observe`], but a QEMU that runs and does not answer is an error.
    pub(super) async fn try_observe(
        &mut self,
        sampler: &StdMutex<Sampler>,
    ) -> Result<VmObserved, QemuError> {
        let state = self.read_state().await?;
        Ok(self.observed(state, sampler))
    }

    /// The VM in `state`, with its QEMU's usage and the guest's uptime.
    fn observed(&self, state: PowerState, sampler: &StdMutex<Sampler>) -> VmObserved {
        let pid = self.pid();
        let usage = match pid {
            Some(pid) => sampler
                .lock()
                .map(|mut s| s.vm_usage(pid))
                .unwrap_or_default(),
            None => VmUsage::default(),
        };
        let uptime_s = match (pid, self.record.started_at) {
            (Some(_), Some(t)) => now_s().saturating_sub(t),
            _ => 0,
        };
        VmObserved {
            id: self.id(),
            name: self.record.instance.spec.name.clone(),
            state,
            pid,
            uptime_s,
            usage,
            unresponsive: false,
            ha: self.record.instance.spec.ha.enabled,
            net: None,
        }
    }

    /// Waits until the QEMU process is gone, at most `timeout`. True when it is.
    pub(super) async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.check_alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Ends QEMU now (if one runs) and forgets it.
    pub(super) async fn kill_now(&mut self) -> Result<()> {
        if self.check_alive() {
            if let Some(q) = self.qemu.as_deref_mut() {
                q.kill().await?;
            }
        }
        self.process_gone();
        Ok(())
    }
}
