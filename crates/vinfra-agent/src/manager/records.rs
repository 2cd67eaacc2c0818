//! [`LocalVm`]: what the agent keeps about a VM on the host, in `<data_dir>/vms/<id>/vm.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vinfra_proto::VmInstance;

use super::early_passes::EarlyPasses;
use super::error::{io_err, ManagerError, Result};
use crate::files::write_atomic;
use crate::network::VmNic;

/// What the agent keeps about a VM on the host (`vm.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalVm {
    /// Identity and specification.
    pub instance: VmInstance,
    /// Its QEMU waits for (or is receiving) an incoming migration.
    #[serde(default)]
    pub incoming: bool,
    /// URI the incoming QEMU listens on.
    #[serde(default)]
    pub incoming_uri: Option<String>,
    /// The one source the incoming QEMU accepts (its TLS peer, `CN=…`); `None`: plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_tls_peer: Option<String>,
    /// The VM should run: a QEMU that disappears while this is set has crashed.
    #[serde(default)]
    pub want_running: bool,
    /// An outgoing migration was started and has not failed or been cancelled.
    #[serde(default)]
    pub migrating_out: bool,
    /// An outgoing migration was started from the QEMU that runs now (whatever became of it).
    /// Until then `query-migrate` may show the incoming migration that brought the guest here,
    /// which says nothing about this copy: see `Vm::outgoing_migration`.
    #[serde(default)]
    pub sent_from_this_qemu: bool,
    /// Seconds since the Unix epoch when the guest was started (kept across migration).
    #[serde(default)]
    pub started_at: Option<u64>,
    /// The NICs' switch ports while the VM has them (from before its QEMU starts until after
    /// it is gone).
    #[serde(default)]
    pub nics: Vec<VmNic>,
    /// The outgoing migration's early passes while they last (the operator's downtime limit
    /// still to be set): kept here so that an agent restarted meanwhile still sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_passes: Option<EarlyPasses>,
}

impl LocalVm {
    /// A new record of `instance`: not running, not migrating, no NICs attached yet.
    pub fn new(instance: VmInstance, incoming: bool) -> LocalVm {
        LocalVm {
            instance,
            incoming,
            incoming_uri: None,
            incoming_tls_peer: None,
            want_running: false,
            migrating_out: false,
            sent_from_this_qemu: false,
            started_at: None,
            nics: Vec::new(),
            early_passes: None,
        }
    }
}

/// The record file in a VM's directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("vm.json")
}

/// Writes `record` into `dir` (atomically).
pub fn save(dir: &Path, record: &LocalVm) -> Result<()> {
    let path = path(dir);
    let text = serde_json::to_vec_pretty(record).map_err(|source| ManagerError::Record {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, &text).map_err(io_err(&path))
}

/// The record in `dir`: `None` when there is none; an error when it does not parse.
pub fn load(dir: &Path) -> Option<std::result::Result<LocalVm, serde_json::Error>> {
    let bytes = std::fs::read(path(dir)).ok()?;
    Some(serde_json::from_slice(&bytes))
}
