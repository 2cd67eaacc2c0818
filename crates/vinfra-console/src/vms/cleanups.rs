//! Removing a VM's record with what it holds: its addresses and MACs released in the same
//! transaction, or, when its host may still have the VM, a cleanup marker written instead
//! (see the module doc of [`crate::vms`]).

use vinfra_proto::{AgentCommand, CommandError};
use vinfra_store::{Compare, Op};
use vinfra_types::api::Event;

use crate::agents::RequestError;
use crate::error::Error;
use crate::networks::ipam;
use crate::state::records::{self as keys, now_s, CleanupReason, CleanupRecord, VmRecord};
use crate::state::{Console, Writes, SHORT_TIMEOUT};

/// Deletes the record of VM `name` (stored at revision `expected`), with `event` in the same
/// transaction. `leave: None` releases its addresses and MACs in that transaction;
/// `Some(reason)` keeps them and writes a cleanup marker instead, so that the VM controller
/// removes the VM from its host and releases them once the host confirms it is gone.
/// Returns once the change is on disk.
pub async fn forget(
    console: &Console,
    name: &str,
    expected: i64,
    rec: &VmRecord,
    leave: Option<CleanupReason>,
    event: Option<Event>,
) -> Result<(), Error> {
    let networks = console.inflight().networks_lock().await;
    let writes = match leave {
        None => ipam::release(console, name)?,
        Some(reason) => {
            let key = keys::cleanup_key(&rec.host, name, rec.id);
            let marker = CleanupRecord {
                vm: name.to_string(),
                id: rec.id,
                host: rec.host.clone(),
                reason,
                since: now_s(),
            };
            Writes::other(
                vec![Compare::absent(key.clone())],
                vec![Op::Put {
                    key,
                    value: keys::encode(&marker)?,
                    lease: 0,
                }],
            )
        }
    };
    let pending = console.write_vm_pending(name, Some(expected), None, writes, event)?;
    // The mirror holds the change: others may go on while the disk syncs (the store keeps
    // their writes after this one), and no runtime worker waits for the sync.
    drop(networks);
    Ok(pending.on_disk().await?)
}

/// After a `CreateVm` that failed with `e`: `None` when the host certainly has nothing of the
/// VM, else why it may have (a cleanup marker is then left).
pub async fn unconfirmed_create(
    console: &Console,
    rec: &VmRecord,
    e: &RequestError,
) -> Option<CleanupReason> {
    match e {
        // The command never left the console: the host has no connection to get it from.
        RequestError::NotConnected { .. } => None,
        // A clear refusal: the agent undoes its own partial work; the removal confirms it.
        RequestError::Agent { .. } => {
            let del = AgentCommand::DeleteVm {
                id: rec.id,
                delete_disks: true,
            };
            match console
                .agents()
                .request(&rec.host, del, SHORT_TIMEOUT)
                .await
            {
                Ok(_)
                | Err(RequestError::Agent {
                    source: CommandError::NoSuchVm { .. },
                    ..
                }) => None,
                Err(de) => {
                    tracing::warn!(
                        vm = rec.spec.name,
                        host = rec.host,
                        "removal after a refused creation: {}",
                        vinfra_types::error::Chain(&de)
                    );
                    Some(CleanupReason::CreateUnconfirmed)
                }
            }
        }
        // No answer: the host may have created the VM, or may still be creating it.
        RequestError::Timeout { .. } | RequestError::ConnectionLost { .. } => {
            Some(CleanupReason::CreateUnconfirmed)
        }
    }
}
