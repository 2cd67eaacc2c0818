//! Launching a VM's QEMU: a new VM's directory and record, the [`Launch`] description from the
//! record and the datastore, and the launch itself through the [`crate::qemu::VmRunner`].

use vinfra_proto::VmInstance;
use vinfra_types::BootSource;

use super::error::{io_err, Result};
use super::records::LocalVm;
use super::vm::Vm;
use super::Manager;
use crate::disks::cache_mode_for;
use crate::qemu::{DiskArg, Launch, NicArg, VmFiles};

impl Manager {
    /// Creates the directory and record of a VM new to this host (its QEMU not started).
    pub(super) fn new_vm(&self, instance: VmInstance, incoming: bool) -> Result<Vm> {
        instance.spec.validate()?;
        let dir = self.cfg.data_dir.join("vms").join(instance.id.to_string());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let vm = Vm::new(LocalVm::new(instance, incoming), VmFiles { dir });
        vm.save()?;
        Ok(vm)
    }

    /// How `vm`'s QEMU is to be started: its specification, the datastore's files, its NICs'
    /// sockets.
    fn launch_for(&self, vm: &Vm, incoming: bool) -> Result<Launch> {
        let spec = &vm.record.instance.spec;
        let kernel = match &spec.boot {
            BootSource::Kernel {
                kernel,
                initrd,
                cmdline,
            } => Some((
                self.ds.existing_image(kernel)?,
                initrd
                    .as_deref()
                    .map(|i| self.ds.existing_image(i))
                    .transpose()?,
                cmdline.clone(),
            )),
            BootSource::Disk => None,
        };
        let disks = self
            .ds
            .existing_disks(vm.id(), spec)?
            .into_iter()
            .map(|path| {
                let cache = cache_mode_for(&path);
                DiskArg { path, cache }
            })
            .collect();
        Ok(Launch {
            id: vm.id(),
            name: spec.name.clone(),
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            accel: self.cfg.runner.accel(),
            kernel,
            disks,
            serial_log: vm.files.serial_log(),
            qmp_socket: vm.files.qmp_socket(),
            pidfile: vm.files.pidfile(),
            incoming,
            nics: vm
                .record
                .nics
                .iter()
                .map(|n| NicArg {
                    mac: n.mac.clone(),
                    mtu: n.mtu,
                    qemu_socket: n.qemu_socket.clone(),
                    switch_socket: n.switch_socket.clone(),
                })
                .collect(),
        })
    }

    /// Starts `vm`'s QEMU (waiting for an incoming migration when `incoming`). Its NICs have
    /// their ports already.
    pub(super) async fn launch(&self, vm: &mut Vm, incoming: bool) -> Result<()> {
        let launch = self.launch_for(vm, incoming)?;
        // QEMU binds its end of each NIC: a socket file left by an earlier run is in the way.
        for nic in &vm.record.nics {
            match std::fs::remove_file(&nic.qemu_socket) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&nic.qemu_socket)(e))
                }
                _ => {}
            }
        }
        vm.process_gone();
        vm.shutdown_seen = false;
        vm.record.sent_from_this_qemu = false;
        vm.record.migrating_out = false;
        vm.qemu = Some(self.cfg.runner.launch(&launch).await?);
        Ok(())
    }
}
