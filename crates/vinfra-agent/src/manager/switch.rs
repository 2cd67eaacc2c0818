//! The manager's side of the host's switch: ports for a VM's NICs before its QEMU starts and
//! after it is gone, the console's switch configuration, the switch's counters.

use std::sync::Arc;

use uuid::Uuid;
use vinfra_proto::{HostSwitchConfig, NicConnections};
use vinfra_types::error::Chain;
use vinfra_types::network::HostSwitchCounters;

use super::error::Result;
use super::vm::Vm;
use super::Manager;
use crate::network::{MacMoves, ReconcileOutcome, SwitchLink, SwitchLinkError};

/// [`SwitchLink::reconcile_with`] on a blocking thread.
async fn reconcile_now(link: &Arc<SwitchLink>, moves: MacMoves) -> Result<ReconcileOutcome> {
    let l = link.clone();
    Ok(tokio::task::spawn_blocking(move || l.reconcile_with(moves)).await??)
}

impl Manager {
    /// Keeps `config` as this host's switch configuration (saved in the data directory) and
    /// programs the switch with it now. The configuration stays desired (and is replayed on
    /// every reconnect) even when the switch cannot be programmed now. The console is the
    /// authority on where each VM is: MAC entries the switch moved itself on a VM's announcement
    /// go back where `config` puts them ([`MacMoves::Revert`]), so that a move the console does
    /// not confirm (a frame from a host the VM has left) lasts until its next configuration at
    /// most.
    pub async fn apply_switch_config(&self, config: HostSwitchConfig) -> Result<()> {
        let Some(link) = &self.switch else {
            if config.networks.is_empty() {
                return Ok(());
            }
            return Err(SwitchLinkError::NoSwitch.into());
        };
        link.set_config(config)?;
        reconcile_now(link, MacMoves::Revert).await?.into_result()?;
        Ok(())
    }

    /// This host's switch counters, read now (see [`SwitchLink::counters`]).
    pub async fn switch_counters(&self) -> Result<HostSwitchCounters> {
        let link = self.switch.clone().ok_or(SwitchLinkError::NoSwitch)?;
        Ok(tokio::task::spawn_blocking(move || link.counters()).await??)
    }

    /// The connections this host's switch tracks for VM `id`'s NIC ports, read now (the
    /// source of a completed migration; see [`SwitchLink::export_connections`]).
    pub async fn export_connections(&self, id: Uuid) -> Result<Vec<NicConnections>> {
        let Some(link) = self.switch.clone() else {
            return Ok(Vec::new());
        };
        Ok(tokio::task::spawn_blocking(move || link.export_connections(id)).await??)
    }

    /// Gives VM `id`'s NIC ports the connections a migration's source tracked for them (see
    /// [`SwitchLink::import_connections`]).
    pub async fn import_connections(&self, id: Uuid, nics: Vec<NicConnections>) -> Result<()> {
        let link = self.switch.clone().ok_or(SwitchLinkError::NoSwitch)?;
        let n = tokio::task::spawn_blocking(move || link.import_connections(id, &nics)).await??;
        tracing::info!("VM {id}: {n} connections imported from the migration's source");
        Ok(())
    }

    /// Gives the NICs of a VM that has some their switch ports and waits until the switch has
    /// them (before its QEMU starts): one [`SwitchLink::plug`]. On failure the VM has no ports.
    pub(super) async fn attach_nics(&self, vm: &mut Vm) -> Result<()> {
        let link = self.switch.clone().ok_or(SwitchLinkError::NoSwitch)?;
        let (id, dir) = (vm.id(), vm.files.dir.clone());
        let owner = self.qemu_user(&vm.record.instance)?;
        let specs = vm.record.instance.spec.nics.clone();
        vm.record.nics =
            tokio::task::spawn_blocking(move || link.plug_as(id, &dir, &specs, owner)).await??;
        vm.save()
    }

    /// Removes the VM's ports from the switch (its QEMU is gone). A switch that cannot be
    /// reached now loses them on the next reconcile.
    pub(super) async fn detach_nics(&self, vm: &mut Vm) {
        let id = vm.id();
        if let Some(link) = &self.switch {
            link.detach(id);
            if !vm.record.nics.is_empty() {
                if let Err(e) = reconcile_now(link, MacMoves::Keep).await {
                    tracing::warn!("VM {id}: removing its switch ports: {}", Chain(&e));
                }
            }
        }
        if !vm.record.nics.is_empty() {
            vm.record.nics.clear();
            if vm.files.dir.exists() {
                if let Err(e) = vm.save() {
                    tracing::warn!("VM {id}: {}", Chain(&e));
                }
            }
        }
    }
}
