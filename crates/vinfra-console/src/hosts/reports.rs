//! What a host may claim in its Hello and its reports (docs/threat-model.md, "Agent reports").
//!
//! A host's certificate proves its name, not what it says: a host taken over could claim
//! another host's VM (the VM controller would move the record to it, or refuse the VM's start
//! on its own host because it is "live elsewhere") or another host's address (tunnels and
//! migrations would go to it). So:
//! - a Hello is refused when its address is not an IP address, is another registered host's
//!   (loopback excepted: such an address carries nothing between machines, and single-machine
//!   setups give every agent 127.0.0.1), or its capacity is not a sane one;
//! - a report keeps the address and capacity of its connection's Hello (a change is
//!   ignored, with an event); a host that moved must connect again;
//! - a report's VM that the console places on another host is believed only when this host
//!   has to do with it: the VM's migration in flight or its last migration came from or went
//!   to this host, or HA restarted it away from this host (a stale copy). Any other is left
//!   out of the report, with an event once per host and VM. VMs the console has no record of
//!   stay (they claim nothing).

use std::net::IpAddr;

use uuid::Uuid;
use vinfra_proto::HostReport;
use vinfra_types::{HostCapacity, HostPlatform, MigrationProgress};

use crate::state::records as keys;
use crate::state::Console;

/// Most logical CPUs a host may report.
pub const MAX_CORES: u32 = 65_536;
/// Most memory a host may report, MiB (1 PiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 30;
/// Least memory a host may report, MiB.
pub const MIN_MEMORY_MIB: u64 = 64;

/// Why a Hello was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloRefused {
    /// The address is not an IP address a host can have.
    #[error("address '{0}' is not an IP address of a host (unspecified, multicast and broadcast are not)")]
    Address(String),
    /// Another registered host has the address.
    #[error("address {address} is host '{owner}''s")]
    TakenAddress {
        /// The address.
        address: IpAddr,
        /// The host that has it.
        owner: String,
    },
    /// The capacity is out of range.
    #[error("capacity of {cores} CPUs and {memory_mib} MiB is out of range (1 to {MAX_CORES} CPUs, {MIN_MEMORY_MIB} MiB to 1 PiB)")]
    Capacity {
        /// CPUs reported.
        cores: u32,
        /// Memory reported, MiB.
        memory_mib: u64,
    },
    /// The CPU models or machine types are not names QEMU gives.
    #[error("its platform lists more than {MAX_PLATFORM_NAMES} CPU models or machine types, names that are empty, longer than {MAX_PLATFORM_NAME} bytes or hold control characters, or a default machine type it does not list")]
    Platform,
}

/// The id under which a host's refused Hello has its one event (`state::refusals`).
const HELLO_REFUSED: Uuid = Uuid::from_u128(1);

/// `address` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 one it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn sane(c: &HostCapacity) -> bool {
    (1..=MAX_CORES).contains(&c.cores) && (MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&c.memory_mib)
}

/// Checks a Hello (see the module); the refusal is recorded as an event too.
pub fn check_hello(
    console: &Console,
    report: &HostReport,
    platform: Option<&HostPlatform>,
) -> Result<(), HelloRefused> {
    let refused = hello_refusal(console, report).and_then(|()| match platform {
        Some(p) => check_platform(p),
        None => Ok(()),
    });
    // Once per host and console run: a host reconnecting over and over must not flush the
    // history.
    if let Err(e) = &refused {
        if console.report_refusals().first(&report.host, HELLO_REFUSED) {
            console.event(
                "host",
                &report.host,
                format!("host {} refused at connection: {e}", report.host),
            );
        }
    }
    refused
}

fn hello_refusal(console: &Console, report: &HostReport) -> Result<(), HelloRefused> {
    let address = canonical(
        report
            .address
            .parse()
            .map_err(|_| HelloRefused::Address(report.address.clone()))?,
    );
    let unusable = address.is_unspecified()
        || address.is_multicast()
        || matches!(address, IpAddr::V4(a) if a.is_broadcast());
    if unusable {
        return Err(HelloRefused::Address(report.address.clone()));
    }
    if !address.is_loopback() {
        let owner = console.with_hosts(|hosts| {
            hosts
                .iter()
                .find(|(name, h)| {
                    name.as_str() != report.host
                        && h.value.address.parse::<IpAddr>().ok().map(canonical) == Some(address)
                })
                .map(|(name, _)| name.clone())
        });
        if let Some(owner) = owner {
            return Err(HelloRefused::TakenAddress { address, owner });
        }
    }
    if !sane(&report.capacity) {
        return Err(HelloRefused::Capacity {
            cores: report.capacity.cores,
            memory_mib: report.capacity.memory_mib,
        });
    }
    Ok(())
}

/// Most CPU models or machine types a host may list, and the longest name of one.
const MAX_PLATFORM_NAMES: usize = 1024;
const MAX_PLATFORM_NAME: usize = 128;

/// A host's platform is refused when it lists absurdly many or long names, or names with
/// control characters (they reach terminals through `vinfra host show`).
fn check_platform(p: &HostPlatform) -> Result<(), HelloRefused> {
    let bad =
        |n: &String| n.is_empty() || n.len() > MAX_PLATFORM_NAME || n.chars().any(char::is_control);
    if p.cpu_models.len() > MAX_PLATFORM_NAMES
        || p.machine_types.len() > MAX_PLATFORM_NAMES
        || p.cpu_name.len() > MAX_PLATFORM_NAME
        || p.cpu_name.chars().any(char::is_control)
        || bad(&p.default_machine_type)
        || !p.machine_types.contains(&p.default_machine_type)
        || p.cpu_models.iter().chain(&p.machine_types).any(bad)
    {
        return Err(HelloRefused::Platform);
    }
    Ok(())
}

/// Makes `report` (from `host`, whose connection said `hello`) claim only what it may (see the
/// module).
pub fn screen(console: &Console, hello: &HostReport, report: &mut HostReport) {
    let host = hello.host.as_str();
    if report.address != hello.address || report.capacity != hello.capacity {
        if console.report_refusals().first(host, Uuid::nil()) {
            console.event(
                "host",
                host,
                format!(
                    "host {host} reported address {} and capacity {:?} after connecting with \
                     {} and {:?}: ignored until it connects again",
                    report.address, report.capacity, hello.address, hello.capacity
                ),
            );
        }
        report.address.clone_from(&hello.address);
        report.capacity = hello.capacity;
    }
    // The common case first: every VM reported is placed here (one read, nothing copied).
    if console.vms_placed_on(report.vms.iter().map(|v| v.id), host) {
        return;
    }
    report.vms.retain(|v| {
        // The common case first: the VM is placed here (nothing copied).
        if console.vm_placed_on(v.id, host) {
            return true;
        }
        let Some((name, placed, failed_from)) = console.vm_placement(v.id) else {
            return true;
        };
        if placed == host || failed_from.as_deref() == Some(host) || migrated(console, &name, host)
        {
            return true;
        }
        if console.report_refusals().first(host, v.id) {
            console.event(
                "vm",
                &name,
                format!(
                    "host {host} reports VM {name} ({:?}), which the console placed on {placed} \
                     and never sent to {host}: not believed",
                    v.state
                ),
            );
        }
        false
    });
}

/// True when VM `name`'s migration in flight, or its last one, came from or went to `host`.
fn migrated(console: &Console, name: &str, host: &str) -> bool {
    if let Some(active) = console.inflight().migration(name) {
        let p = active.progress();
        if p.source == host || p.destination == host {
            return true;
        }
    }
    keys::get::<MigrationProgress>(console.store().as_ref(), &keys::migration_key(name))
        .ok()
        .flatten()
        .is_some_and(|p| p.value.source == host || p.value.destination == host)
}
