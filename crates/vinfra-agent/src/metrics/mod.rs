//! The agent's `GET /metrics` (docs/design.md, "Metrics"): the host's VMs, the agent's
//! console session and the host's switch, in the Prometheus text format.
//!
//! - [`names`]: the metric families.
//! - [`render`]: a [`Snapshot`] into the text, through a Prometheus recorder of its own.
//! - [`scrape`]: the snapshot read now from the manager, the console contact, `/proc` and the
//!   switch (one `get_counters` request), each part within a bound.
//! - [`serve`]: the HTTP listener (`vinfra agent --metrics-listen`), on a management or
//!   loopback address only.
//!
//! Every value is read at the scrape from what the agent already keeps (the VMs' latest
//! observations, the contact's counters) or asks for once (the switch's counters, each running
//! QEMU's `/proc/<pid>/io`): nothing is recorded between scrapes, so a scrape renders a
//! recorder made for it, and a VM that is gone has no series any more.

pub mod names;
pub mod render;
pub mod scrape;
pub mod serve;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;
use vinfra_switch_control::CountersView;
use vinfra_types::network::HostSwitchCounters;

use crate::manager::VmSample;

pub use render::render;
pub use scrape::scrape;
pub use serve::{bind, serve, MetricsError};

/// What one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The VMs of the table with their latest observations.
    pub vms: Vec<VmSample>,
    /// Storage bytes (read, written) of each running VM's QEMU, by VM id, where `/proc` had
    /// them.
    pub disk_io: HashMap<Uuid, (u64, u64)>,
    /// A session with the console is up.
    pub console_connected: bool,
    /// Time since the console last acknowledged a heartbeat; `None`: never.
    pub contact_age: Option<Duration>,
    /// Reports sent to the console since the agent started.
    pub reports_sent: u64,
    /// The host's switch.
    pub switch: SwitchSample,
}

/// The switch's counters as a scrape found them.
#[derive(Debug, Clone, Default)]
pub enum SwitchSample {
    /// The agent has no switch (`--switch-control` not given): no switch families.
    #[default]
    None,
    /// The switch did not answer in time: `vinfra_switch_up` 0 and nothing else.
    Down,
    /// Its answer, and the same named by the agent's configuration.
    Up(Box<(CountersView, HostSwitchCounters)>),
}
