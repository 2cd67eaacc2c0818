//! A NIC's settings (`PATCH /api/v1/vms/{name}/nics/{index}`): its security groups, its port
//! security, its allowed address pairs and its QoS; only the fields given change.
//!
//! The NIC is checked as at create (the whole spec validates; security groups need port
//! security on, and so do allowed addresses; QoS within its bounds) and every group it names
//! must exist; then the record is written in one compare-and-swap transaction with its event.
//! The switch controller pushes the new firewall to every host at once (the NIC's addresses are
//! remotes of other NICs' rules too). A new QoS, port security or allowed address list is pushed
//! before the answer to the hosts that have the VM's ports (its host, a migration's
//! destination), whose agents set it on the running VM's port; the answer waits for them 1 s
//! at most (a slower host gets it in the background). The firewall follows the controller's
//! push.

use std::sync::Arc;

use vinfra_types::api::UpdateNicRequest;
use vinfra_types::{HostStatus, NicSpec, VmSummary};

use super::views;
use crate::error::Error;
use crate::networks::push::push;
use crate::security_groups;
use crate::state::events::event;
use crate::state::records::VmRecord;
use crate::state::{Console, Writes, ANSWER_WITHIN};

/// `none` or the list, comma-separated.
fn list_text(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// What changed between `old` and `new`, for the event.
fn describe(old: &NicSpec, new: &NicSpec) -> String {
    let mut parts = Vec::new();
    if old.security_groups != new.security_groups {
        parts.push(format!(
            "security groups {} (were {})",
            list_text(&new.security_groups),
            list_text(&old.security_groups)
        ));
    }
    if old.port_security() != new.port_security() {
        parts.push(format!(
            "port security {}",
            if new.port_security() { "on" } else { "off" }
        ));
    }
    if old.allowed_addresses != new.allowed_addresses {
        let pairs: Vec<String> = new
            .allowed_addresses
            .iter()
            .map(|a| match &a.mac {
                Some(m) => format!("{}@{m}", a.ip),
                None => a.ip.clone(),
            })
            .collect();
        parts.push(format!("allowed addresses {}", list_text(&pairs)));
    }
    if old.qos != new.qos {
        parts.push(match &new.qos {
            Some(q) => format!("qos {q}"),
            None => "qos removed".into(),
        });
    }
    parts.join("; ")
}

/// Pushes the switch configuration, now, to each connected host with VM `rec`'s ports (its
/// host and the destinations of its migrations in flight, at the same time), and waits for
/// them [`ANSWER_WITHIN`] at most: a slower host gets it in the background. A failed push is
/// logged: the switch controller pushes every change again, and a host gets its configuration
/// when it connects.
async fn push_to_vm_hosts(console: &Arc<Console>, rec: &VmRecord) {
    let mut hosts = vec![rec.host.clone()];
    hosts.extend(
        console
            .inflight()
            .migrations()
            .iter()
            .filter(|m| m.vm == rec.spec.name)
            .map(|m| m.destination.clone()),
    );
    hosts.retain(|h| console.agents().status(h) == HostStatus::Connected);
    let (c, vm) = (console.clone(), rec.spec.name.clone());
    let pushes = tokio::spawn(crate::state::events::inherit(async move {
        let c = &c;
        let vm = vm.as_str();
        futures::future::join_all(hosts.iter().map(|host| async move {
            if let Err(e) = push(c, host).await {
                tracing::warn!(
                    host = host.as_str(),
                    vm,
                    "NIC settings not applied yet: {}",
                    vinfra_types::error::Chain(&e)
                );
            }
        }))
        .await;
    }));
    if tokio::time::timeout(ANSWER_WITHIN, pushes).await.is_err() {
        tracing::debug!(
            vm = rec.spec.name.as_str(),
            "NIC settings: a host did not answer within {} s, applied in the background",
            ANSWER_WITHIN.as_secs()
        );
    }
}

/// Changes the fields of NIC `index` of VM `name` that `update` gives; returns the VM. An
/// unknown NIC is [`Error::NoSuchNic`], an unknown group [`Error::UnknownNicGroup`], a NIC
/// that does not validate [`Error::Spec`]; nothing is written then. A change that changes
/// nothing writes nothing. A changed QoS is on the switches of the VM's hosts when this returns
/// (those connected that answer within [`ANSWER_WITHIN`]; the others get it in the
/// background).
pub async fn update(
    console: &Arc<Console>,
    name: &str,
    index: usize,
    update: UpdateNicRequest,
) -> Result<VmSummary, Error> {
    // The groups named are checked, and the record written, under the security-group lock.
    let _groups = match &update.security_groups {
        Some(_) => Some(console.inflight().security_groups_lock().await),
        None => None,
    };
    let cur = console.vm(name)?;
    let count = cur.value.spec.nics.len();
    let old = cur
        .value
        .spec
        .nics
        .get(index)
        .ok_or_else(|| Error::NoSuchNic {
            vm: name.to_string(),
            index,
            count,
        })?;
    let new = update.apply(old);
    if new == *old {
        return Ok(views::summary(console, &cur.value));
    }
    let mut rec = cur.value.clone();
    rec.spec.nics[index] = new.clone();
    rec.spec.validate()?;
    security_groups::check_nics(console, [(index, &new)])?;
    let told = event("vm", name, format!("nic {index}: {}", describe(old, &new)));
    console.write_vm(
        name,
        Some(cur.mod_revision),
        Some(&rec),
        Writes::default(),
        Some(told),
    )?;
    if old.qos != new.qos
        || old.port_security() != new.port_security()
        || old.allowed_addresses != new.allowed_addresses
    {
        push_to_vm_hosts(console, &rec).await;
    }
    Ok(views::summary(console, &rec))
}
