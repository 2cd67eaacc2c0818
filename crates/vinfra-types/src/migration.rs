//! Live migration progress.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Destination QEMU is being started.
    Preparing,
    /// Memory is being copied.
    Active,
    /// Switched over; the VM runs on the destination.
    Completed,
    /// Failed before switchover; the VM still runs on the source.
    Failed,
    /// Cancelled by the operator; the VM still runs on the source.
    Cancelled,
}

impl MigrationPhase {
    /// True when the migration has ended, one way or another.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// Progress of one VM's live migration, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MigrationProgress {
    /// The VM.
    pub vm: String,
    /// The host it leaves.
    pub source: String,
    /// The host it goes to.
    pub destination: String,
    /// Where the migration is.
    pub phase: MigrationPhase,
    /// Bytes of guest RAM sent so far.
    pub transferred_bytes: u64,
    /// Bytes of guest RAM still to send.
    pub remaining_bytes: u64,
    /// Total guest RAM, bytes.
    pub total_bytes: u64,
    /// Current transfer rate, bits per second.
    pub rate_bps: u64,
    /// Pages dirtied per second by the guest.
    pub dirty_pages_rate: u64,
    /// Elapsed (or, once final, total) time, milliseconds.
    pub total_time_ms: u64,
    /// Downtime QEMU measured at switchover, milliseconds (final only).
    pub downtime_ms: Option<u64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The stream is encrypted and authenticated (TLS, see the `migration_encrypted` setting).
    #[serde(default)]
    pub encrypted: bool,
    /// Seconds since the Unix epoch when it started.
    pub started_at: u64,
}
