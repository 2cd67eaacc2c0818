//! Usage over time: the last hour of a VM's or a host's CPU and memory (and a VM's network), as
//! the console keeps it from the agents' reports (`GET /vms/{name}/usage`, `GET /hosts/{name}/usage`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seconds each sample covers.
pub const USAGE_INTERVAL_S: u64 = 10;
/// Seconds of history kept: the last hour.
pub const USAGE_WINDOW_S: u64 = 3600;

/// One interval of usage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageSample {
    /// Start of the interval, seconds since the Unix epoch (a multiple of `interval_s`).
    pub at: u64,
    /// CPU busy, in cores, averaged over the reports of the interval (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Memory in use at the interval's last report, MiB: a VM's QEMU resident memory, a host's
    /// used memory (total minus available).
    pub memory_mib: u64,
    /// A VM's received bytes per second over the interval (its NICs, as its host's switch
    /// counts them); absent for a host, and for an interval without two counts to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes_per_s: Option<f64>,
    /// A VM's sent bytes per second over the interval; absent as `rx_bytes_per_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes_per_s: Option<f64>,
}

/// The last hour of usage, oldest first; intervals without a report (the VM did not run, the
/// host was not connected) have no sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageHistory {
    /// Seconds each sample covers.
    pub interval_s: u64,
    /// The samples, oldest first, at most one hour's.
    pub samples: Vec<UsageSample>,
}
