//! What the agent's `GET /metrics` reads of the VM table: each VM's definition and its latest
//! observation, without taking any VM's lock or asking any QEMU (see `crate::metrics`).

use uuid::Uuid;
use vinfra_types::VmObserved;

use super::Manager;

/// One VM as the metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSample {
    /// The VM's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its vCPUs as defined.
    pub vcpus: u32,
    /// Its memory as defined, MiB.
    pub memory_mib: u64,
    /// The latest observation (a report's, or an operation's), `None` before the first.
    pub observed: Option<VmObserved>,
}

impl Manager {
    /// Every VM of the table with its latest observation, sorted by name. Holds the table's
    /// lock for the copy of its entries only; reads no VM's lock, asks no QEMU.
    pub async fn vm_samples(&self) -> Vec<VmSample> {
        let entries: Vec<_> = self.vms.lock().await.values().cloned().collect();
        let mut out: Vec<VmSample> = entries
            .iter()
            .map(|e| VmSample {
                id: e.id,
                name: e.name.clone(),
                vcpus: e.vcpus,
                memory_mib: e.memory_mib,
                observed: e.last.lock().ok().and_then(|l| l.clone()),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
