//! Finding the VMs again when the agent starts: every record under `<data_dir>/vms/`, with the
//! QEMU that kept running while the agent was away when there is one.
//!
//! A VM whose QEMU is gone stays (stopped, or crashed if it should run), except one that only
//! waited for an incoming migration: nothing of it ran here, so it is removed.

use std::path::Path;

use super::error::{io_err, Result};
use super::records;
use super::vm::Vm;
use crate::qemu::{VmFiles, VmRunner};

/// The VMs recorded under `vms_dir`, each with its QEMU adopted from `runner` when it still
/// runs. Unreadable records, and records that do not match their directory, are skipped.
pub(super) fn adopt_all(vms_dir: &Path, runner: &dyn VmRunner) -> Result<Vec<Vm>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(vms_dir).map_err(io_err(vms_dir))? {
        let dir = entry.map_err(io_err(vms_dir))?.path();
        let record = match records::load(&dir) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::warn!(
                    "{}: unreadable VM record ({e}), ignored",
                    records::path(&dir).display()
                );
                continue;
            }
            None => continue,
        };
        let id = record.instance.id;
        if dir.file_name().and_then(|n| n.to_str()) != Some(&id.to_string()) {
            tracing::warn!(
                "{}: VM record does not match its directory, ignored",
                records::path(&dir).display()
            );
            continue;
        }
        let files = VmFiles { dir: dir.clone() };
        let mut vm = Vm::new(record, files);
        vm.qemu = runner.adopt(id, &vm.files);
        match vm.pid() {
            Some(pid) => tracing::info!(
                "VM {} ({id}): adopted QEMU pid {pid}",
                vm.record.instance.spec.name
            ),
            None if vm.record.incoming => {
                tracing::info!("VM {id}: incoming QEMU is gone, removing it");
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            None => vm.process_gone(),
        }
        out.push(vm);
    }
    Ok(out)
}
