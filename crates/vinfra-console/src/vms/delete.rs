//! Deleting a VM with its disks. A VM that should run is refused unless `force` (stopped at once
//! then, as Proxmox and vSphere ask for a stop first); with `force` also while its host is
//! disconnected (the VM is then removed there when the host reconnects, its addresses kept
//! until then). The VMs that started after it no longer do ([`super::ha::forget_start_after`]).

use vinfra_proto::{AgentCommand, CommandError, CommandReply};
use vinfra_types::HostStatus;

use super::{cleanups, ha};
use crate::agents::RequestError;
use crate::error::Error;
use crate::state::events::event;
use crate::state::records::{self as keys, CleanupReason, DesiredPower};
use crate::state::tasks;
use crate::state::{Console, CREATE_TIMEOUT, SHORT_TIMEOUT};

/// Stops and deletes a VM and its disks on its host, then its record with its claims (see the
/// module doc for `force`).
pub async fn delete(console: &Console, name: &str, force: bool) -> Result<(), Error> {
    let _busy = console.inflight().busy(name)?;
    if console.inflight().migrating(name) {
        return Err(Error::Migrating {
            vm: name.to_string(),
        });
    }
    let cur = console.vm(name)?;
    let rec = &cur.value;
    if rec.desired == DesiredPower::Running && !force {
        return Err(Error::DeleteRunning {
            vm: name.to_string(),
            host: rec.host.clone(),
        });
    }
    let connected = console.agents().status(&rec.host) == HostStatus::Connected;
    if !connected && !force {
        return Err(Error::DisksUnreachable {
            vm: name.to_string(),
            host: rec.host.clone(),
        });
    }
    tasks::say(format!(
        "deleting the VM and its disks on host {}",
        rec.host
    ));
    tasks::accepted();
    let leave = if !connected {
        // The VM may still run there: it is removed when the host reconnects.
        Some(CleanupReason::ForcedDelete)
    } else {
        let ignore_missing = |r: Result<CommandReply, RequestError>| match r {
            Err(RequestError::Agent {
                source: CommandError::NoSuchVm { .. },
                ..
            }) => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        };
        let stop = AgentCommand::StopVm {
            id: rec.id,
            force: true,
            timeout_s: 0,
        };
        let stopped = ignore_missing(
            console
                .agents()
                .request(&rec.host, stop, SHORT_TIMEOUT)
                .await,
        );
        if let Err(e) = stopped {
            // A VM that is already stopped may refuse a stop; deletion decides.
            tracing::debug!(
                vm = name,
                "stop before delete: {}",
                vinfra_types::error::Chain(&e)
            );
        }
        let del = AgentCommand::DeleteVm {
            id: rec.id,
            delete_disks: true,
        };
        ignore_missing(
            console
                .agents()
                .request(&rec.host, del, CREATE_TIMEOUT)
                .await,
        )?;
        None
    };
    let message = if leave.is_some() {
        format!(
            "forgotten while host {} is disconnected; it is removed there when the host \
             reconnects, and its addresses stay reserved until then",
            rec.host
        )
    } else {
        format!("deleted from {}", rec.host)
    };
    let done = event("vm", name, message);
    cleanups::forget(console, name, cur.mod_revision, rec, leave, Some(done)).await?;
    let _ = console.store().delete(&keys::migration_key(name));
    ha::forget_start_after(console, name).await;
    if let Err(e) = crate::routers::floating::release_vm(console, name).await {
        tracing::warn!(
            vm = name,
            "floating IPs not released: {}",
            vinfra_types::error::Chain(&e)
        );
    }
    Ok(())
}
