//! Creating a VM, one way through: checks (with its HA start-after, [`super::ha`], and its NICs'
//! security groups, [`crate::security_groups`]), a host
//! from [`crate::fit`] (admitted under the HA reserve when it starts), addresses and MACs from
//! [`crate::networks::ipam`], one store transaction (record, NIC claims, event, the task's
//! record), the host's
//! switch configuration ([`crate::networks::push`]), `CreateVm` to the host's agent, the reply.
//! [`create_many`] (a create with `count`) takes each VM through the same steps: every one
//! placed and written first (one after the other, each placement seeing those before), then
//! all created on their hosts at once.

use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_proto::AgentCommand;
use vinfra_store::PendingWrite;
use vinfra_types::api::{CreateVmRequest, CREATE_COUNT_MAX};
use vinfra_types::VmSummary;

use super::{cleanups, ha, views};
use crate::error::{Error, Object};
use crate::fit::{self, Target};
use crate::networks::{ipam, push};
use crate::security_groups;
use crate::state::events::event;
use crate::state::records::{now_s, DesiredPower, VmRecord};
use crate::state::tasks;
use crate::state::{BusyGuard, Console, Writes};

/// Creates (and with `request.start`, starts) a VM: on the host named, or on the one placement
/// picks under the rules. Nothing is left half-created: when the host does not create it, the
/// record goes again (with its claims, or behind a cleanup marker when the host may have it).
pub async fn create(console: &Console, request: CreateVmRequest) -> Result<VmSummary, Error> {
    let t = Instant::now();
    let spec = request.spec;
    spec.validate()?;
    let host = checked_host(request.host.as_deref())?;
    let name = spec.name.clone();
    let _busy = free(console, &name)?;
    let (rec, pending) = place_and_write(
        console,
        spec,
        host,
        request.start,
        TaskWrite::One,
        Slot::Take(1),
    )
    .await?;
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
    let created = on_host(console, &rec, request.start, true).await;
    if created.is_ok() {
        tracing::debug!(
            vm = name,
            place_write_ms = ms(written),
            durable_ms = ms(durable - written),
            on_host_ms = ms(t.elapsed() - durable),
            "create timed"
        );
    }
    created
}

/// Creates `request.count` VMs alike (see [`CreateVmRequest::count`]): every name checked
/// first (each free, none reserved), then each VM placed and its record written, one after the
/// other (the task's record with the last); when one cannot be placed or written, those
/// written before it go again and the request is refused with why (nothing is kept). Once all
/// are on disk the task is answered, each host gets its switch configuration once, and every
/// VM is created on its host at once. A VM its host does not create goes again as one created
/// alone does; the others stay, and the task fails naming those that did not
/// ([`Error::VmsNotCreated`]).
pub async fn create_many(
    console: &Console,
    request: CreateVmRequest,
) -> Result<Vec<VmSummary>, Error> {
    let count = request.count.unwrap_or(1);
    if !(1..=CREATE_COUNT_MAX).contains(&count) {
        return Err(Error::OutOfRange {
            field: "count",
            min: 1,
            max: CREATE_COUNT_MAX.into(),
            got: count.into(),
        });
    }
    // The name given (the task's target) is a name, and so is each VM's.
    request.spec.validate()?;
    let names = request.names();
    let mut specs = Vec::with_capacity(names.len());
    for name in &names {
        let mut spec = request.spec.clone();
        spec.name = name.clone();
        spec.validate()?;
        specs.push(spec);
    }
    if let Some((i, _)) = request
        .spec
        .nics
        .iter()
        .enumerate()
        .find(|(_, n)| n.ip.is_some() || n.mac.is_some())
    {
        return Err(Error::FixedNicInMany { nic: i });
    }
    let host = checked_host(request.host.as_deref())?;
    let mut busy: Vec<BusyGuard> = Vec::with_capacity(names.len());
    for name in &names {
        busy.push(free(console, name)?);
    }
    tasks::say(format!(
        "creating {count} VMs, {} to {}",
        names[0],
        names[names.len() - 1]
    ));
    tasks::creates(count);
    let mut recs: Vec<VmRecord> = Vec::with_capacity(names.len());
    let mut pendings: Vec<PendingWrite> = Vec::with_capacity(names.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let vm = spec.name.clone();
        // The task's record goes with the first VM's (a console that restarts meanwhile
        // follows it, and finds which of its VMs were written); published once all are on
        // disk.
        let task = if i == 0 {
            TaskWrite::Many
        } else {
            TaskWrite::No
        };
        // The first VM takes the slots of all (one write of the slot counter), the others
        // theirs from that block.
        let slot = match recs.first().and_then(|r| r.slot) {
            Some(first) => Slot::Given(first + i as u32),
            None => Slot::Take(count),
        };
        match place_and_write(console, spec, host, request.start, task, slot).await {
            Ok((rec, pending)) => {
                recs.push(rec);
                pendings.push(pending);
            }
            Err(e) => {
                drop(pendings);
                let why = vinfra_types::error::Chain(&e).to_string();
                forget_written(console, &recs, &vm, &why).await;
                if let Some(first) = recs.first().and_then(|r| r.slot) {
                    tasks::unwrite();
                    // No VM of the block reached a host: its slots may go to the next creates.
                    console.slots().give_back(first, count);
                }
                return Err(Error::OneOfMany {
                    vm,
                    count,
                    source: Box::new(e),
                });
            }
        }
    }
    let mut on_disk = Ok(());
    for pending in pendings {
        if on_disk.is_ok() {
            on_disk = pending.on_disk().await;
        }
    }
    if on_disk.is_err() {
        tasks::published();
    }
    on_disk?;
    tasks::published();
    tasks::accepted();
    let hosts: std::collections::BTreeSet<&str> = recs
        .iter()
        .filter(|r| !r.spec.nics.is_empty())
        .map(|r| r.host.as_str())
        .collect();
    for h in hosts {
        push_config(console, h, &names[0]).await;
    }
    let outcomes = futures::future::join_all(
        recs.iter()
            .map(|rec| on_host(console, rec, request.start, false)),
    )
    .await;
    drop(busy);
    let mut vms = Vec::with_capacity(outcomes.len());
    let mut failed = Vec::new();
    for (rec, outcome) in recs.iter().zip(outcomes) {
        match outcome {
            Ok(vm) => vms.push(vm),
            Err(e) => failed.push((rec.spec.name.clone(), e)),
        }
    }
    if failed.is_empty() {
        tasks::say(format!("created {count} VMs"));
        Ok(vms)
    } else {
        Err(Error::VmsNotCreated { count, failed })
    }
}

/// `host` checked as a name: the host named, else any.
fn checked_host(host: Option<&str>) -> Result<Option<&str>, Error> {
    if let Some(h) = host {
        vinfra_types::validate_name(h).map_err(|source| Error::BadName {
            field: "host",
            source,
        })?;
    }
    Ok(host)
}

/// Name `name` for a new VM: no other operation on it in flight (held while the guard
/// lives), no VM of that name, no earlier one's cleanup pending.
fn free(console: &Console, name: &str) -> Result<BusyGuard, Error> {
    let busy = console.inflight().busy(name)?;
    if console.vm_exists(name) {
        return Err(Error::NameTaken {
            kind: Object::Vm,
            name: name.to_string(),
        });
    }
    if let Some(host) = console.marker_host(name) {
        return Err(Error::NameReserved {
            vm: name.to_string(),
            host,
        });
    }
    Ok(busy)
}

/// Checks VM `spec` (start-after, security groups), places it (on `host` if given), claims
/// its NICs' addresses and writes its record with them, and with it the task's record as
/// `task` says. The record is in the mirrors when this returns; the write is
/// on disk once the [`PendingWrite`] says so.
async fn place_and_write(
    console: &Console,
    mut spec: vinfra_types::VmSpec,
    host: Option<&str>,
    start: bool,
    task: TaskWrite,
    slot: Slot,
) -> Result<(VmRecord, PendingWrite), Error> {
    let name = spec.name.clone();
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
    let target = match host {
        Some(h) => Target::Host(h),
        None => Target::Any,
    };
    // The placement lock comes with the answer: held until the record is written. A VM
    // that starts is checked by admission control too (the HA reserve).
    let placed = if start {
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
    let slot = match slot {
        Slot::Take(count) => {
            let (first, next_slot) = console.slots().take_block(count)?;
            claims.ops.push(next_slot);
            first
        }
        Slot::Given(slot) => slot,
    };
    let rec = VmRecord {
        id,
        spec,
        host: placed.host.clone(),
        desired: if start {
            DesiredPower::Running
        } else {
            DesiredPower::Stopped
        },
        created_at: now_s(),
        started_at: start.then(now_s),
        failed_over: None,
        restarts: 0,
        slot: Some(slot),
        // Its CPU model and machine type, from the host chosen: the same wherever it runs.
        platform: placed.platform.clone(),
    };
    let created = event("vm", &name, format!("created on {}", rec.host));
    if task != TaskWrite::No {
        // The task is written with the record (one write for both), published once that is
        // on disk.
        if task == TaskWrite::One {
            tasks::say(format!("creating the VM on host {}", rec.host));
        }
        claims.ops.extend(tasks::publishing());
    }
    let pending = console.write_vm_pending(&name, None, Some(&rec), claims, Some(created))?;
    Ok((rec, pending))
}

/// Where a new VM's slot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The next of the slot counter, with as many after it for the VMs that follow (the
    /// counter's new value written with the record).
    Take(u32),
    /// One of a block an earlier VM of the same create took.
    Given(u32),
}

/// What goes with a new VM's record of the task that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskWrite {
    /// Nothing (not the first of many).
    No,
    /// The task's record, saying which host the VM goes to (one VM).
    One,
    /// The task's record as it is (the first of many).
    Many,
}

/// Milliseconds, for the log.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Records written by [`create_many`] before VM `refused` was refused (`why`), gone again
/// (with their claims, each with an event): the request is refused as a whole.
async fn forget_written(console: &Console, written: &[VmRecord], refused: &str, why: &str) {
    for rec in written.iter().rev() {
        let name = &rec.spec.name;
        let Ok(cur) = console.vm(name) else { continue };
        let gone = event(
            "vm",
            name,
            format!("not created: {refused}, created with it, was refused: {why}"),
        );
        match cleanups::forget(console, name, cur.mod_revision, rec, None, Some(gone)).await {
            // A VM made to start after this one meanwhile no longer does.
            Ok(()) => ha::forget_start_after(console, name).await,
            Err(e) => tracing::error!(
                vm = name.as_str(),
                "rolling back VM record: {}",
                vinfra_types::error::Chain(&e)
            ),
        }
    }
}

/// Host `host`'s switch configuration, pushed before its agent attaches new NICs (a failure
/// is logged: the switch controller pushes it again).
async fn push_config(console: &Console, host: &str, vm: &str) {
    if let Err(e) = push::push(console, host).await {
        tracing::warn!(
            vm,
            host,
            "switch configuration: {}",
            vinfra_types::error::Chain(&e)
        );
    }
}

/// The rest of a create once VM `rec`'s record is on disk: (with `push`, for a VM with NICs)
/// its host's switch configuration, `CreateVm` to its agent, the VM as the agent left it. When
/// the host does not create it, the record goes again (see [`create`]).
async fn on_host(
    console: &Console,
    rec: &VmRecord,
    start: bool,
    push: bool,
) -> Result<VmSummary, Error> {
    let name = rec.spec.name.as_str();
    if push && !rec.spec.nics.is_empty() {
        // The host's switch must know the VM's networks before the agent attaches its NICs.
        push_config(console, &rec.host, name).await;
    }
    let cmd = AgentCommand::CreateVm {
        vm: rec.instance(),
        start,
    };
    match console
        .agents()
        .request(&rec.host, cmd, console.create_timeout())
        .await
    {
        Ok(reply) => Ok(views::after(console, rec, Some(reply))),
        Err(e) => {
            // Nothing half-created: the record goes again; what the host may have made of the
            // VM is removed now, or by the VM controller when the outcome is unclear.
            let leave = cleanups::unconfirmed_create(console, rec, &e).await;
            let after = if leave.is_some() {
                "; the VM may exist there: it is removed when the host answers, and its \
                 addresses stay reserved until then"
            } else {
                ""
            };
            let failed = event(
                "vm",
                name,
                format!(
                    "creation on {} failed: {}{after}",
                    rec.host,
                    vinfra_types::error::Chain(&e)
                ),
            );
            match console.vm(name) {
                Ok(cur) => {
                    match cleanups::forget(
                        console,
                        name,
                        cur.mod_revision,
                        rec,
                        leave,
                        Some(failed),
                    )
                    .await
                    {
                        // A VM made to start after this one meanwhile no longer does.
                        Ok(()) => ha::forget_start_after(console, name).await,
                        Err(de) => tracing::error!(
                            vm = name,
                            "rolling back VM record: {}",
                            vinfra_types::error::Chain(&de)
                        ),
                    }
                }
                Err(_) => console.event("vm", name, failed.message),
            }
            Err(e.into())
        }
    }
}
