//! What [`crate::Lab::status`] finds: the lab's processes, and its hosts and VMs as the API lists
//! them.

use serde::Serialize;
use vinfra_types::{HostSummary, VmSummary};

use crate::config::LabState;
use crate::error::LabError;

/// Whether a lab process runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessStatus {
    /// `console`, the host name (its agent), `<host> switch`, `<host> guard`, `phys switch` or
    /// `internet service`.
    pub name: String,
    /// Its pid (from its pidfile, else the one recorded).
    pub pid: u32,
    /// Whether that pid runs.
    pub alive: bool,
}

/// What [`crate::Lab::status`] finds.
#[derive(Debug)]
pub struct LabStatus {
    /// The recorded state.
    pub state: LabState,
    /// The console, then each agent, its switch and its guard (`h1`, `h1 switch`, `h1 guard`,
    /// …).
    pub processes: Vec<ProcessStatus>,
    /// Hosts and VMs as the API lists them, or why they could not be listed.
    pub listed: Result<Listed, LabError>,
}

/// The hosts and VMs of a lab, as its API lists them.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Every host.
    pub hosts: Vec<HostSummary>,
    /// Every VM.
    pub vms: Vec<VmSummary>,
}
