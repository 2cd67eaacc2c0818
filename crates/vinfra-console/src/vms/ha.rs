//! A VM's HA policy (`ha` in its spec): changing it (`PATCH /api/v1/vms/{name}`), checking a
//! start-after (at create and at every change), and clearing the start-afters that name a VM
//! when it is deleted.
//!
//! A start-after names an existing VM, never the VM itself, and never closes a circle
//! (`a` after `b` after `a`); a refusal is [`Error::StartAfterUnknown`],
//! [`Error::StartAfterSelf`] or [`Error::StartAfterCycle`] (422) and writes nothing. The
//! checks and the writes that change start-afters hold the start-after lock
//! ([`crate::state::inflight::Inflight::start_after_lock`]), so two changes at once cannot make
//! a circle between them.

use vinfra_types::api::UpdateVmRequest;
use vinfra_types::ha::VmHa;
use vinfra_types::VmSummary;

use super::views;
use crate::error::Error;
use crate::fit;
use crate::state::events::event;
use crate::state::records::DesiredPower;
use crate::state::Console;

/// Checks VM `vm`'s HA policy `ha` against the other VMs: its start-after names an existing VM,
/// not `vm` itself, and following the start-afters from there never comes back to `vm`. Hold
/// the start-after lock from this check to the write.
pub fn check_start_after(console: &Console, vm: &str, ha: &VmHa) -> Result<(), Error> {
    ha.validate()?;
    let Some(first) = &ha.start_after else {
        return Ok(());
    };
    if first == vm {
        return Err(Error::StartAfterSelf { vm: vm.to_string() });
    }
    console.with_vms(|vms| {
        if !vms.contains_key(first) {
            return Err(Error::StartAfterUnknown {
                vm: vm.to_string(),
                start_after: first.clone(),
            });
        }
        let mut cycle = vec![vm.to_string(), first.clone()];
        let mut next = first.as_str();
        // Each VM is visited once at most: a circle that does not pass through `vm` (which
        // the checks never let in) ends the walk too.
        while let Some(after) = vms
            .get(next)
            .and_then(|v| v.value.spec.ha.start_after.as_deref())
        {
            if after == vm {
                cycle.push(vm.to_string());
                return Err(Error::StartAfterCycle {
                    vm: vm.to_string(),
                    start_after: first.clone(),
                    cycle,
                });
            }
            if cycle.iter().any(|c| c == after) || cycle.len() > vms.len() {
                break;
            }
            cycle.push(after.to_string());
            next = after;
        }
        Ok(())
    })
}

/// `PATCH /api/v1/vms/{name}`: changes the fields of the VM's HA policy that `update` gives
/// (checked first; nothing is written on a refusal), in one write with its event. Turning HA
/// on for a running VM passes admission control first (409 `ha-reserve`). An empty change
/// writes nothing and returns the VM.
pub async fn update(
    console: &Console,
    name: &str,
    update: UpdateVmRequest,
) -> Result<VmSummary, Error> {
    let Some(change) = update.ha.filter(|h| !h.is_empty()) else {
        return views::show(console, name);
    };
    let _order = console.inflight().start_after_lock().await;
    let cur = console.vm(name)?.value;
    let ha = change.apply(&cur.spec.ha);
    check_start_after(console, name, &ha)?;
    // HA turned on for a VM that runs is a power-on for admission control: checked, and the
    // record written, under the placement lock.
    let _admitted = if ha.enabled && !cur.spec.ha.enabled && cur.desired == DesiredPower::Running {
        let mut spec = cur.spec.clone();
        spec.ha = ha.clone();
        Some(fit::admit_ha(console, name, &spec, &cur.host).await?)
    } else {
        None
    };
    let told = event("vm", name, format!("HA {}", ha.describe()));
    let rec = console.update_vm_with(name, |r| r.spec.ha = ha, Some(told))?;
    Ok(views::summary(console, &rec))
}

/// Clears the start-after of every VM that names `deleted` (which no longer exists), with an
/// event each. Failures are logged: a start-after naming no VM is treated as none.
pub async fn forget_start_after(console: &Console, deleted: &str) {
    let _order = console.inflight().start_after_lock().await;
    let after: Vec<String> = console.with_vms(|vms| {
        vms.values()
            .filter(|v| v.value.spec.ha.start_after.as_deref() == Some(deleted))
            .map(|v| v.value.spec.name.clone())
            .collect()
    });
    for vm in after {
        let told = event(
            "vm",
            &vm,
            format!("HA start-after cleared: VM {deleted} was deleted"),
        );
        let cleared = console.update_vm_with(
            &vm,
            |r| {
                if r.spec.ha.start_after.as_deref() == Some(deleted) {
                    r.spec.ha.start_after = None;
                }
            },
            Some(told),
        );
        if let Err(e) = cleared {
            tracing::warn!(
                vm,
                deleted,
                "start-after not cleared: {}",
                vinfra_types::error::Chain(&e)
            );
        }
    }
}
