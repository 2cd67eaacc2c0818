//! Types shared by every vinfra process: the VM and host model, the REST API's request and response
//! bodies, and the validation rules for names and sizes. No I/O lives here.
//!
//! - [`name`]: what a valid VM, host, disk or image name is (the one place that decides it).
//! - [`vm`]: a VM's specification (what the operator asked for) and its observed state.
//! - [`host`]: a hypervisor host's capacity, allocation ratios and usage.
//! - [`migration`]: live-migration progress.
//! - [`api`]: REST request/response bodies and the problem+json error body.
//! - [`auth`]: named API tokens, their roles, the actor an event names.
//! - [`balancing`]: balancing settings, placement rules, recommendations, balancer status.
//! - [`network`]: logical networks, subnets and MACs, where each VM NIC lives.
//! - [`security_group`]: security groups (the distributed firewall's rule sets) and how a
//!   NIC's traffic is filtered by them.
//! - [`router`]: routers (VRFs): their interfaces (the networks' distributed gateways) and
//!   static routes.
//! - [`qos`]: a NIC's QoS (rate limits, priority class, weight, DSCP marking) and its
//!   bounds.
//! - [`flows`]: flow visibility: the flows query and its rows, the flow settings.
//! - [`ha`]: high availability: a VM's restart policy, the cluster's HA settings, fence
//!   commands and what a fence did.
//! - [`task`]: tasks, how the API follows an operation that takes long.
//! - [`filter`]: what each list of the API can be narrowed to (`?status=`, `?vm=`, …).
//! - [`error`]: how every process prints an error and its sources ([`error::chain`]).
#![deny(unsafe_code)]

pub mod api;
pub mod auth;
pub mod balancing;
pub mod error;
pub mod filter;
pub mod flows;
pub mod ha;
pub mod host;
pub mod migration;
pub mod name;
pub mod network;
pub mod qos;
pub mod router;
pub mod security_group;
pub mod task;
pub mod usage;
pub mod vm;

pub use api::Problem;
pub use host::{
    Accel, AllocationRatios, GuardView, HostCapacity, HostPlatform, HostStatus, HostSummary,
    HostUsage,
};
pub use migration::{MigrationPhase, MigrationProgress};
pub use name::{validate_file_name, validate_name, NameError};
pub use vm::{
    AllowedAddressPair, BootSource, DiskSpec, NicSpec, NicVlan, PowerState, VmObserved, VmPlatform,
    VmSpec, VmSummary, VmUsage,
};

/// One mebibyte in bytes.
pub const MIB: u64 = 1024 * 1024;

/// Seconds since the Unix epoch now (0 for a clock before it).
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A UTC timestamp (the CLI's and the web console's) `YYYY-MM-DD HH:MM:SS` from seconds since the epoch.
pub fn utc_timestamp(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
