//! A VM's life on this host: create, start (or resume), stop (gracefully, then by force),
//! reboot, delete, and its serial console; and the launch of a VM's QEMU, which an incoming
//! migration shares.
//!
//! A create reads top to bottom, each step one call: `admit` refuses what this host cannot run;
//! the datastore answers once what the VM boots from, its missing disks created
//! ([`crate::disks::Datastore::prepare`]); `new_vm` makes the VM's directory and record; to
//! start it, `power_on` gives its NICs their switch ports (`attach_nics` in `switch.rs`, one
//! [`crate::network::SwitchLink::plug`]) and `launch` builds the [`Launch`] description (the
//! one place it is built) and hands it to the [`crate::qemu::VmRunner`]. A start of a stopped
//! VM asks the datastore for what exists ([`crate::disks::Datastore::media`]) and goes through
//! `power_on` too; an incoming migration (`migration.rs`) uses `admit`, `new_vm` and `launch`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_proto::{StopKind, VmInstance};
use vinfra_types::{PowerState, VmObserved};

use super::error::{io_err, ManagerError, Result, StateConflict};
use super::records::LocalVm;
use super::vm::{now_s, Vm};
use super::{Manager, MAX_CONSOLE_BYTES};
use crate::disks::{BootMedia, Prepared};
use crate::network::SwitchLinkError;
use crate::qemu::{build_args, Launch, MigrationState, NicArg, VmFiles};

/// Milliseconds, for the debug lines that time a create's (or an incoming QEMU's) steps.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Manager {
    /// Defines the VM (creating its disks if missing) and starts it when `start`. Idempotent for an
    /// existing id. On failure nothing new is left behind.
    pub async fn create(&self, instance: VmInstance, start: bool) -> Result<VmObserved> {
        let id = instance.id;
        if self.vms.lock().await.contains_key(&id) {
            self.learn_slot(id, instance.slot).await?;
            if start {
                return self.start(id).await;
            }
            return self.observe(id).await;
        }
        let t = Instant::now();
        self.admit(&instance)?;
        // What it boots from and its disks (the missing ones created): the datastore's one
        // answer, which the launch uses as it is.
        let spec = instance.spec.clone();
        let Prepared { media, new_dir } =
            self.on_datastore(move |ds| ds.prepare(id, &spec)).await?;
        let prepared = t.elapsed();
        // Its record is written once: here for a VM that stays stopped, by `power_on` (with
        // what it starts) for one that starts.
        let made = self.new_vm(instance, false).and_then(|vm| {
            if start {
                Ok(vm)
            } else {
                vm.save().map(|()| vm)
            }
        });
        let mut vm = match made {
            Ok(vm) => vm,
            Err(e) => {
                let dir = self.cfg.data_dir.join("vms").join(id.to_string());
                let _ = std::fs::remove_dir_all(dir);
                self.undo_disks(id, new_dir).await;
                return Err(e);
            }
        };
        let defined = t.elapsed();
        if start {
            if let Err(e) = self.power_on(&mut vm, media).await {
                let _ = vm.kill_now().await;
                self.detach_nics(&mut vm).await;
                let _ = std::fs::remove_dir_all(&vm.files.dir);
                self.undo_disks(id, new_dir).await;
                return Err(e);
            }
        }
        let started = t.elapsed();
        let obs = vm.observe(&self.sampler).await;
        self.insert(vm, Some(obs.clone())).await;
        tracing::debug!(
            vm = %id,
            prepare_ms = ms(prepared),
            define_ms = ms(defined - prepared),
            power_on_ms = ms(started - defined),
            observe_ms = ms(t.elapsed() - started),
            "create timed"
        );
        Ok(obs)
    }

    /// Deletes the datastore directory of VM `id` when its create made it (`new_dir`).
    async fn undo_disks(&self, id: Uuid, new_dir: bool) {
        if new_dir {
            let _ = self.on_datastore(move |ds| ds.delete_vm(id)).await;
        }
    }

    /// Refuses, before anything is created, a VM this host cannot run: an invalid
    /// specification, a CPU model or machine type its QEMU does not offer, NICs on a host
    /// without a switch.
    pub(super) fn admit(&self, instance: &VmInstance) -> Result<()> {
        instance.spec.validate()?;
        if let (Some(host), Some(vm)) = (&self.platform, &instance.platform) {
            host.runs(self.cfg.runner.accel(), vm)
                .map_err(|reason| ManagerError::Platform {
                    cpu_model: vm.cpu_model.clone(),
                    machine_type: vm.machine_type.clone(),
                    reason,
                })?;
        }
        if !instance.spec.nics.is_empty() && self.switch.is_none() {
            return Err(SwitchLinkError::NoSwitch.into());
        }
        Ok(())
    }

    /// Creates the directory of a VM new to this host (its QEMU not started); its record is the
    /// caller's to write, once (a start writes it with what it starts).
    pub(super) fn new_vm(&self, instance: VmInstance, incoming: bool) -> Result<Vm> {
        let dir = self.cfg.data_dir.join("vms").join(instance.id.to_string());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Root's alone until its QEMU is confined (`confine::Confiner::prepare`).
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io_err(&dir))?;
        Ok(Vm::new(LocalVm::new(instance, incoming), VmFiles { dir }))
    }

    /// Starts a VM whose QEMU does not run from `media`: its NICs' ports, then its QEMU. The
    /// record says it should run from before its QEMU starts (written with the NICs' ports when
    /// it has some): nothing is written between QEMU's start and the answer, when the booting
    /// guest competes for the disk and the CPU. On a failure it has no ports again and the
    /// record says what it said before.
    async fn power_on(&self, vm: &mut Vm, media: BootMedia) -> Result<()> {
        let before = (vm.record.want_running, vm.record.started_at);
        vm.record.want_running = true;
        vm.record.started_at = Some(now_s());
        let ready = if vm.record.instance.spec.nics.is_empty() {
            vm.save()
        } else {
            self.attach_nics(vm).await
        };
        let failed = match ready {
            Err(e) => Some(e),
            Ok(()) => match self.launch(vm, media, false).await {
                Ok(()) => None,
                Err(e) => {
                    let _ = vm.kill_now().await;
                    self.detach_nics(vm).await;
                    Some(e)
                }
            },
        };
        let Some(e) = failed else {
            return Ok(());
        };
        (vm.record.want_running, vm.record.started_at) = before;
        if vm.files.dir.exists() {
            vm.save_logged();
        }
        Err(e)
    }

    /// Starts `vm`'s QEMU from `media` (waiting for an incoming migration when `incoming`),
    /// with the [`Launch`] description built here from its record, its files and `media`. Its
    /// NICs have their ports already.
    pub(super) async fn launch(&self, vm: &mut Vm, media: BootMedia, incoming: bool) -> Result<()> {
        // QEMU binds its end of each NIC: a socket file left by an earlier run is in the way.
        for nic in vm.record.nics.iter().filter(|n| n.vlan.is_none()) {
            match std::fs::remove_file(&nic.qemu_socket) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&nic.qemu_socket)(e))
                }
                _ => {}
            }
        }
        let t = Instant::now();
        let run = vm.files.run_dir();
        match std::fs::create_dir(&run) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io_err(&run)(e)),
            _ => {}
        }
        let confinement = match &self.confiner {
            Some(c) => {
                let (c, id, files) = (c.clone(), vm.id(), vm.files.clone());
                let slot = vm.record.instance.slot;
                let ds_dir = self.ds.vm_dir(id);
                let disks: Vec<PathBuf> = media.disks.iter().map(|d| d.path.clone()).collect();
                let spec = &vm.record.instance.spec;
                let limits = crate::confine::CgroupLimits::for_vm(
                    spec.memory_mib,
                    spec.vcpus,
                    self.cfg.runner.accel(),
                );
                Some(
                    tokio::task::spawn_blocking(move || {
                        c.prepare(id, slot, &files, &ds_dir, &disks, limits)
                    })
                    .await??,
                )
            }
            None => None,
        };
        vm.process_gone();
        vm.shutdown_seen = false;
        vm.record.sent_from_this_qemu = false;
        vm.record.migrating_out = false;
        let spec = &vm.record.instance.spec;
        let launch = Launch {
            id: vm.id(),
            name: spec.name.clone(),
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            pad_ram: self.pad_ram,
            accel: self.cfg.runner.accel(),
            platform: vm.record.instance.platform.clone(),
            kernel: media.kernel,
            disks: media.disks,
            serial_log: vm.files.serial_log(),
            serial_socket: vm.files.serial_socket(),
            qmp_socket: vm.files.qmp_socket(),
            guard_qmp_socket: vm.files.guard_qmp_socket(),
            pidfile: vm.files.pidfile(),
            confinement,
            log: vm.files.qemu_log(),
            incoming,
            nics: vm
                .record
                .nics
                .iter()
                // A sub-interface rides its NIC's device.
                .filter(|n| n.vlan.is_none())
                .map(|n| NicArg {
                    mac: n.mac.clone(),
                    mtu: n.mtu,
                    qemu_socket: n.qemu_socket.clone(),
                    switch_socket: n.switch_socket.clone(),
                    tap: n.tap.clone(),
                    uso_off: n.tap.is_some() && self.nic_uso,
                    trunk: vm
                        .record
                        .nics
                        .iter()
                        .any(|s| s.vlan.is_some_and(|t| t.parent_port == n.port)),
                })
                .collect(),
        };
        // The command line, then the process that runs it.
        let args = build_args(&launch);
        let confined = t.elapsed();
        vm.qemu = Some(self.cfg.runner.launch(&launch, args).await?);
        tracing::debug!(
            vm = %vm.id(),
            confine_ms = ms(confined),
            qemu_ms = ms(t.elapsed() - confined),
            "launch timed"
        );
        Ok(())
    }

    /// Resumes a VM whose QEMU runs: nothing to do when it runs, `cont` when paused. A source
    /// paused by a completed migration stays paused.
    async fn resume(&self, vm: &mut Vm) -> Result<()> {
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
        Ok(())
    }

    /// Records `slot` for VM `id` when its record has none (a VM defined here before the
    /// console gave slots); a slot it has is never changed.
    pub async fn learn_slot(&self, id: Uuid, slot: Option<u32>) -> Result<()> {
        let Some(slot) = slot else {
            return Ok(());
        };
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.record.instance.slot.is_none() {
            vm.record.instance.slot = Some(slot);
            vm.save()?;
        }
        Ok(())
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
        if vm.check_alive() {
            self.resume(&mut vm).await?;
        } else {
            let spec = vm.record.instance.spec.clone();
            let media = self.on_datastore(move |ds| ds.media(id, &spec)).await?;
            self.power_on(&mut vm, media).await?;
        }
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
            self.on_datastore(move |ds| ds.delete_vm(id)).await?;
        }
        Ok(())
    }

    /// The last `max_bytes` (at most [`MAX_CONSOLE_BYTES`]) of the serial console.
    pub async fn console_log(&self, id: Uuid, max_bytes: u64) -> Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let files = self.entry(id).await?.vm.lock().await.files.clone();
        let max = max_bytes.min(MAX_CONSOLE_BYTES);
        // QEMU writes in `run/` (a QEMU from before `run/`, beside it): it could put a link
        // or a FIFO in place of its log, so the log is opened without following links or
        // blocking, and read only when it is a plain file.
        tokio::task::spawn_blocking(move || {
            let path = [files.serial_log(), files.legacy_serial_log()]
                .into_iter()
                .find(|p| std::fs::symlink_metadata(p).is_ok());
            let Some(path) = path else {
                return Ok(String::new());
            };
            let mut f = crate::confine::open_plain(&path, false)?;
            let len = f.metadata().map_err(io_err(&path))?.len();
            f.seek(SeekFrom::Start(len.saturating_sub(max)))
                .map_err(io_err(&path))?;
            let mut buf = Vec::new();
            f.take(max).read_to_end(&mut buf).map_err(io_err(&path))?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })
        .await?
    }

    /// Path of the VM's serial log.
    pub async fn serial_log_path(&self, id: Uuid) -> Result<PathBuf> {
        Ok(self.entry(id).await?.vm.lock().await.files.serial_log())
    }
}
