//! Host records: list, show, update (ratio override, maintenance, fence command), delete.

use std::collections::HashMap;

use vinfra_types::api::{ClusterSettings, UpdateHostRequest};
use vinfra_types::filter::{HostFilter, ListFilter};
use vinfra_types::ha::validate_fence_command;
use vinfra_types::usage::UsageHistory;
use vinfra_types::{HostStatus, HostSummary, HostUsage};

use crate::error::Error;
use crate::networks::ipam;
use crate::state::records::HostRecord;
use crate::state::{Allocation, Console};

/// The API view of a host: its record merged with its latest report.
fn summary(
    console: &Console,
    rec: &HostRecord,
    alloc: &HashMap<String, Allocation>,
    settings: &ClusterSettings,
) -> HostSummary {
    let (status, observed) = console.agents().observed(&rec.name);
    let report = observed.as_ref().map(|o| o.report.clone());
    let capacity = console.capacity_of(rec);
    let ratios = rec.ratio_override.unwrap_or(settings.ratios);
    let a = alloc.get(&rec.name).copied().unwrap_or_default();
    HostSummary {
        name: rec.name.clone(),
        address: rec.address.clone(),
        status,
        accel: report.as_ref().map(|r| r.accel).or(rec.accel),
        qemu_version: report
            .as_ref()
            .map(|r| r.qemu_version.clone())
            .or(rec.qemu_version.clone()),
        platform: rec.platform.clone(),
        capacity,
        ratios,
        ratio_override: rec.ratio_override,
        allocated_vcpus: a.vcpus,
        allocated_memory_mib: a.memory_mib,
        allocatable_vcpus: (f64::from(capacity.cores) * ratios.cpu).floor() as u32,
        allocatable_memory_mib: (capacity.memory_mib as f64 * ratios.memory).floor() as u64,
        usage: report
            .as_ref()
            .map(|r| r.usage)
            .unwrap_or(HostUsage::default()),
        vm_count: a.vms,
        last_seen_s: observed.map(|o| o.heard.elapsed().as_secs()),
        maintenance: rec.maintenance,
        trunk: report
            .as_ref()
            .map_or(rec.trunk.clone(), |r| r.trunk.clone()),
        guard: report.as_ref().and_then(|r| r.guard),
        underlay_mtu: report.map_or(rec.underlay_mtu, |r| r.underlay_mtu),
        fence_command_set: rec.fence_command.is_some(),
        fenced_at: rec.fenced_at,
    }
}

/// Every registered host with capacity, allocation and status, or those `filter` lets
/// through (its connection status and maintenance as the list shows them).
pub fn list(console: &Console, filter: &HostFilter) -> Vec<HostSummary> {
    let alloc = console.allocations();
    let settings = console.settings();
    console
        .host_records()
        .iter()
        .filter(|h| filter.maintenance.is_none_or(|m| m == h.maintenance))
        .map(|h| summary(console, h, &alloc, &settings))
        .filter(|h| filter.lets(h))
        .collect()
}

/// How many registered hosts are `connected`, `disconnected` and in `maintenance` (a host in
/// maintenance counts there alone, whatever its connection), for `GET /metrics`: from the
/// host mirror and the registry, no store read.
pub fn status_counts(console: &Console) -> Vec<(&'static str, u64)> {
    let hosts: Vec<(String, bool)> = console.with_hosts(|hosts| {
        hosts
            .values()
            .map(|h| (h.value.name.clone(), h.value.maintenance))
            .collect()
    });
    let mut counts = [("connected", 0), ("disconnected", 0), ("maintenance", 0)];
    for (name, maintenance) in hosts {
        let i = match (maintenance, console.agents().status(&name)) {
            (true, _) => 2,
            (false, HostStatus::Connected) => 0,
            (false, HostStatus::Disconnected) => 1,
        };
        counts[i].1 += 1;
    }
    counts.to_vec()
}

/// One host.
pub fn show(console: &Console, name: &str) -> Result<HostSummary, Error> {
    let rec = console.host(name)?.value;
    Ok(summary(
        console,
        &rec,
        &console.allocations(),
        &console.settings(),
    ))
}

/// A host's CPU and memory over the last hour, from its agent's reports.
pub fn usage(console: &Console, name: &str) -> Result<UsageHistory, Error> {
    let rec = console.host(name)?.value;
    Ok(console.agents().host_usage_history(&rec.name))
}

/// Changes a host's ratio override, maintenance flag or fence command; a balancing pass follows
/// soon when the first two change what the host may hold. The event says whether a fence
/// command is set, never what it is.
pub fn update(
    console: &Console,
    name: &str,
    update: UpdateHostRequest,
) -> Result<HostSummary, Error> {
    if let Some(Some(r)) = &update.ratios {
        r.validate().map_err(|reason| Error::Settings { reason })?;
    }
    if let Some(Some(command)) = &update.fence_command {
        validate_fence_command(command)?;
    }
    console.host(name)?;
    let rebalance = update.maintenance == Some(true) || update.ratios.is_some();
    let rec = console.update_host(name, |h| {
        if let Some(r) = update.ratios {
            h.ratio_override = r;
        }
        if let Some(m) = update.maintenance {
            h.maintenance = m;
        }
        if let Some(command) = update.fence_command {
            h.fence_command = command;
        }
    })?;
    console.event(
        "host",
        name,
        format!(
            "updated: ratio override {:?}, maintenance {}, fence command {}",
            rec.ratio_override,
            rec.maintenance,
            if rec.fence_command.is_some() {
                "set"
            } else {
                "none"
            }
        ),
    );
    if rebalance {
        // An evacuation or a capacity change: balance soon.
        console.inflight().balancer.wake();
    }
    show(console, name)
}

/// Removes a host without VMs: its record, its connection, and the cleanup markers of VMs that
/// may still exist there (their addresses are released: the host never gets in again, so they
/// can no longer be removed through it).
pub async fn delete(console: &Console, name: &str) -> Result<(), Error> {
    let cur = console.host(name)?;
    let placed: Vec<String> = console.with_vms(|vms| {
        vms.values()
            .filter(|v| v.value.host == name)
            .map(|v| v.value.spec.name.clone())
            .take(5)
            .collect()
    });
    if !placed.is_empty() {
        return Err(Error::HostInUse {
            host: name.to_string(),
            vms: placed,
        });
    }
    // Revocations of certificates that expired since are no longer needed.
    if let Err(e) = super::certs::revoked_certificates(console) {
        tracing::warn!("revoked certificates: {}", vinfra_types::error::Chain(&e));
    }
    let (revoke, serials) = super::certs::revocations(&cur.value)?;
    console.remove_host_with(name, cur.mod_revision, revoke)?;
    console.agents().forget(name);
    console.event("host", name, "removed from the cluster");
    if !serials.is_empty() {
        console.event(
            "host",
            name,
            format!(
                "certificates revoked (host removed): serial {}",
                serials.join(", ")
            ),
        );
    }
    for (key, m) in console.cleanups(Some(name))? {
        match ipam::release_cleanup(console, &key, &m).await {
            Ok(true) => console.event(
                "vm",
                &m.value.vm,
                format!(
                    "host {name} was removed before it confirmed the VM's removal; its \
                     addresses are released"
                ),
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                host = name,
                vm = m.value.vm,
                "cleanup marker: {}",
                vinfra_types::error::Chain(&e)
            ),
        }
    }
    Ok(())
}
