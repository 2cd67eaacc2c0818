//! A VM's life on this host: create, start (or resume), stop (gracefully, then by force),
//! reboot, delete, and its serial console.

use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;
use vinfra_proto::{StopKind, VmInstance};
use vinfra_types::{BootSource, PowerState, VmObserved};

use super::error::{io_err, ManagerError, Result, StateConflict};
use super::vm::{now_s, Vm};
use super::{Manager, MAX_CONSOLE_BYTES};
use crate::qemu::MigrationState;

impl Manager {
    /// Defines the VM (creating its disks if missing) and starts it when `start`. Idempotent for an
    /// existing id. On failure nothing new is left behind.
    pub async fn create(&self, instance: VmInstance, start: bool) -> Result<VmObserved> {
        let id = instance.id;
        if self.vms.lock().await.contains_key(&id) {
            if start {
                return self.start(id).await;
            }
            return self.observe(id).await;
        }
        instance.spec.validate()?;
        self.check_nics(&instance)?;
        if let BootSource::Kernel { kernel, initrd, .. } = &instance.spec.boot {
            self.ds.existing_image(kernel)?;
            if let Some(i) = initrd {
                self.ds.existing_image(i)?;
            }
        }
        let ds_dir_existed = self.ds.vm_dir(id).exists();
        self.ds.ensure_disks(id, &instance.spec)?;
        let undo_disks = || {
            if !ds_dir_existed {
                let _ = self.ds.delete_vm(id);
            }
        };
        let mut vm = match self.new_vm(instance, false) {
            Ok(vm) => vm,
            Err(e) => {
                undo_disks();
                return Err(e);
            }
        };
        if start {
            if let Err(e) = self.do_start(&mut vm).await {
                let _ = vm.kill_now().await;
                self.detach_nics(&mut vm).await;
                let _ = std::fs::remove_dir_all(&vm.files.dir);
                undo_disks();
                return Err(e);
            }
        }
        let obs = vm.observe(&self.sampler).await;
        self.insert(vm, Some(obs.clone())).await;
        Ok(obs)
    }

    /// Starts `vm` (resumes it when paused). A source paused by a completed migration stays
    /// paused.
    async fn do_start(&self, vm: &mut Vm) -> Result<()> {
        if vm.check_alive() {
            let state = vm.state().await;
            let id = vm.id();
            let conflict = |conflict| ManagerError::BadState {
                id,
                state,
                conflict,
            };
            match state {
                PowerState::Running => {}
                PowerState::Paused => {
                    // A source paused by a completed migration must never run again: the
                    // guest runs on the destination now.
                    if vm.outgoing_migration().await?.state == MigrationState::Completed {
                        return Err(conflict(StateConflict::MigratedAway));
                    }
                    vm.qemu().await?.cont().await?;
                }
                _ => return Err(conflict(StateConflict::CannotStart)),
            }
            return Ok(());
        }
        self.attach_nics(vm).await?;
        if let Err(e) = self.launch(vm, false).await {
            let _ = vm.kill_now().await;
            self.detach_nics(vm).await;
            return Err(e);
        }
        vm.record.want_running = true;
        vm.record.started_at = Some(now_s());
        vm.save()
    }

    /// Starts a stopped VM (resumes a paused one).
    pub async fn start(&self, id: Uuid) -> Result<VmObserved> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.record.incoming {
            let state = vm.state().await;
            return Err(ManagerError::BadState {
                id,
                state,
                conflict: StateConflict::AwaitsIncoming,
            });
        }
        self.do_start(&mut vm).await?;
        Ok(vm.observe(&self.sampler).await)
    }

    /// Stops the VM: ACPI power-off, then `quit`/kill after `timeout`; at once when `force`.
    pub async fn stop(
        &self,
        id: Uuid,
        force: bool,
        timeout: Duration,
    ) -> Result<(VmObserved, StopKind)> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.record.migrating_out && vm.state().await == PowerState::Migrating {
            return Err(ManagerError::BadState {
                id,
                state: PowerState::Migrating,
                conflict: StateConflict::MigrationInProgress,
            });
        }
        vm.record.want_running = false;
        vm.save()?;
        let mut how = StopKind::AlreadyStopped;
        if vm.check_alive() {
            how = if force {
                StopKind::Forced
            } else {
                StopKind::Graceful
            };
            let mut gone = false;
            if !force {
                let asked = match vm.qemu().await {
                    Ok(q) => q.powerdown().await.map_err(ManagerError::from),
                    Err(e) => Err(e),
                };
                match asked {
                    Ok(()) => gone = vm.wait_exit(timeout).await,
                    Err(e) => tracing::warn!(
                        "VM {id}: system_powerdown: {}",
                        vinfra_types::error::Chain(&e)
                    ),
                }
                if !gone {
                    tracing::info!("VM {id}: guest did not power off within {timeout:?}, forcing");
                    how = StopKind::ForcedAfterTimeout;
                }
            }
            if !gone {
                vm.kill_now().await?;
            }
        }
        vm.record.started_at = None;
        vm.record.migrating_out = false;
        vm.save()?;
        self.detach_nics(&mut vm).await;
        Ok((vm.observe(&self.sampler).await, how))
    }

    /// Resets the VM (`system_reset`).
    pub async fn reboot(&self, id: Uuid) -> Result<VmObserved> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let state = vm.state().await;
        if !matches!(state, PowerState::Running | PowerState::Paused) {
            return Err(ManagerError::BadState {
                id,
                state,
                conflict: StateConflict::NotRunning,
            });
        }
        vm.qemu().await?.reset().await?;
        Ok(vm.observe(&self.sampler).await)
    }

    /// Stops the VM at once if it runs, forgets it, and deletes its disks when `delete_disks`.
    pub async fn delete(&self, id: Uuid, delete_disks: bool) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        vm.record.want_running = false;
        vm.kill_now().await?;
        self.detach_nics(&mut vm).await;
        self.forget(&vm).await?;
        if delete_disks {
            self.ds.delete_vm(id)?;
        }
        Ok(())
    }

    /// The last `max_bytes` (at most [`MAX_CONSOLE_BYTES`]) of the serial console.
    pub async fn console_log(&self, id: Uuid, max_bytes: u64) -> Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.serial_log_path(id).await?;
        let max = max_bytes.min(MAX_CONSOLE_BYTES);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(err) => return Err(io_err(&path)(err)),
        };
        let len = f.metadata().map_err(io_err(&path))?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max)))
            .map_err(io_err(&path))?;
        let mut buf = Vec::new();
        f.take(max).read_to_end(&mut buf).map_err(io_err(&path))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Path of the VM's serial log.
    pub async fn serial_log_path(&self, id: Uuid) -> Result<PathBuf> {
        Ok(self.entry(id).await?.vm.lock().await.files.serial_log())
    }
}
