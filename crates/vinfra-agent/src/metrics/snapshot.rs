//! What one scrape shows: [`ScrapeSnapshot`], read by [`super::scrape`], rendered by
//! [`super::render`].

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;
use vinfra_switch_control::CountersView;
use vinfra_types::network::HostSwitchCounters;

use crate::manager::metrics::VmSample;

/// What one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct ScrapeSnapshot {
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
