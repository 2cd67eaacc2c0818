//! Creating a VM, one way through: checks (with its HA start-after, [`super::ha`], and its NICs'
//! security groups, [`crate::security_groups`]), a host
//! from [`crate::fit`] (admitted under the HA reserve when it starts), addresses and MACs from
//! [`crate::networks::ipam`], one store transaction (record, NIC claims, event, the task's
//! record), the host's
//! switch configuration ([`crate::networks::push`]), `CreateVm` to the host's agent, the reply.

use uuid::Uuid;
use vinfra_proto::AgentCommand;
use vinfra_types::api::CreateVmRequest;
use vinfra_types::VmSummary;

use super::{cleanups, ha, views};
use crate::error::{Error, Object};
use crate::fit::{self, Target};
use crate::networks::{ipam, push};
use crate::security_groups;
use crate::state::events::event;
use crate::state::records::{now_s, DesiredPower, VmRecord};
use crate::state::tasks;
use crate::state::{Console, Writes};

/// Creates (and with `request.start`, starts) a VM: on the host named, or on the one placement
/// picks under the rules. Nothing is left half-created: when the host does not create it, the
/// record goes again (with its claims, or behind a cleanup marker when the host may have it).
pub async fn create(console: &Console, request: CreateVmRequest) -> Result<VmSummary, Error> {
    let t = std::time::Instant::now();
    let mut spec = request.spec;
    spec.validate()?;
    if let Some(h) = &request.host {
        vinfra_types::validate_name(h).map_err(|source| Error::BadName {
            field: "host",
            source,
        })?;
    }
    let name = spec.name.clone();
    let _busy = console.inflight().busy(&name)?;
    if console.vm_exists(&name) {
        return Err(Error::NameTaken {
            kind: Object::Vm,
            name,
        });
    }
    if let Some(host) = console.marker_host(&name) {
        return Err(Error::NameReserved { vm: name, host });
    }
    let (rec, pending) = {
        // The security groups the NICs name are checked, and the record written, under the
        // security-group lock.
        let _groups = if spec.nics.iter().any(|n| !n.security_groups.is_empty()) {
            let lock = console.inflight().security_groups_lock().await;
            security_groups::check_nics(console, spec.nics.iter().enumerate())?;
            Some(lock)
        } else {
            None
        };
        // A start-after is checked, and the record written, under the start-after lock.
        let _order = match &spec.ha.start_after {
            Some(_) => Some(console.inflight().start_after_lock().await),
            None => None,
        };
        ha::check_start_after(console, &name, &spec.ha)?;
        let target = match &request.host {
            Some(h) => Target::Host(h),
            None => Target::Any,
        };
        // The placement lock comes with the answer: held until the record is written. A VM
        // that starts is checked by admission control too (the HA reserve).
        let placed = if request.start {
            fit::place_and_admit(console, &name, &spec, None, target).await?
        } else {
            fit::place(console, &name, &spec, None, target).await?
        };
        let id = Uuid::new_v4();
        // Addresses and MACs are claimed with the record, in one transaction (a VM without
        // NICs claims none and never waits for the networks).
        let (_networks, mut claims) = if spec.nics.is_empty() {
            (None, Writes::default())
        } else {
            let lock = console.inflight().networks_lock().await;
            (
                Some(lock),
                ipam::assign(console, &name, id, &mut spec.nics)?,
            )
        };
        spec.validate()?;
        // Its slot, under the placement lock: creates write theirs in the order they took them.
        let (slot, next_slot) = console.slots().take()?;
        claims.ops.push(next_slot);
        let rec = VmRecord {
            id,
            spec,
            host: placed.host.clone(),
            desired: if request.start {
                DesiredPower::Running
            } else {
                DesiredPower::Stopped
            },
            created_at: now_s(),
            started_at: request.start.then(now_s),
            failed_over: None,
            restarts: 0,
            slot: Some(slot),
            // Its CPU model and machine type, from the host chosen: the same wherever it runs.
            platform: placed.platform.clone(),
        };
        let created = event("vm", &name, format!("created on {}", rec.host));
        // The task is written with the record (one write for both), published once that is on
        // disk.
        tasks::say(format!("creating the VM on host {}", rec.host));
        claims.ops.extend(tasks::publishing());
        let pending = console.write_vm_pending(&name, None, Some(&rec), claims, Some(created))?;
        (rec, pending)
    };
    let written = t.elapsed();
    // The next create is placed (it sees this one) while this one's record goes to disk: creates
    // placed one after the other share the store's disk syncs, and the store's committer wakes
    // this one when its sync is done (no thread waits for it).
    let on_disk = pending.on_disk().await;
    if on_disk.is_err() {
        // The task went to the store with the record (which may be on disk all the same): it
        // is listed, and ends failed with this error rather than running on unseen.
        tasks::published();
    }
    on_disk?;
    let durable = t.elapsed();
    tasks::published();
    tasks::accepted();
    if !rec.spec.nics.is_empty() {
        // The host's switch must know the VM's networks before the agent attaches its NICs.
        if let Err(e) = push::push(console, &rec.host).await {
            tracing::warn!(
                vm = name,
                host = rec.host,
                "switch configuration: {}",
                vinfra_types::error::Chain(&e)
            );
        }
    }
    let pushed = t.elapsed();
    let cmd = AgentCommand::CreateVm {
        vm: rec.instance(),
        start: request.start,
    };
    match console
        .agents()
        .request(&rec.host, cmd, console.create_timeout())
        .await
    {
        Ok(reply) => {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            tracing::debug!(
                vm = name,
                place_write_ms = ms(written),
                durable_ms = ms(durable - written),
                push_ms = ms(pushed - durable),
                agent_ms = ms(t.elapsed() - pushed),
                "create timed"
            );
            Ok(views::after(console, &rec, Some(reply)))
        }
        Err(e) => {
            // Nothing half-created: the record goes again; what the host may have made of the
            // VM is removed now, or by the VM controller when the outcome is unclear.
            let leave = cleanups::unconfirmed_create(console, &rec, &e).await;
            let after = if leave.is_some() {
                "; the VM may exist there: it is removed when the host answers, and its \
                 addresses stay reserved until then"
            } else {
                ""
            };
            let failed = event(
                "vm",
                &name,
                format!(
                    "creation on {} failed: {}{after}",
                    rec.host,
                    vinfra_types::error::Chain(&e)
                ),
            );
            match console.vm(&name) {
                Ok(cur) => {
                    match cleanups::forget(
                        console,
                        &name,
                        cur.mod_revision,
                        &rec,
                        leave,
                        Some(failed),
                    )
                    .await
                    {
                        // A VM made to start after this one meanwhile no longer does.
                        Ok(()) => ha::forget_start_after(console, &name).await,
                        Err(de) => tracing::error!(
                            vm = name,
                            "rolling back VM record: {}",
                            vinfra_types::error::Chain(&de)
                        ),
                    }
                }
                Err(_) => console.event("vm", &name, failed.message),
            }
            Err(e.into())
        }
    }
}
