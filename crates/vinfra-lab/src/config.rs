//! What a lab is made of: its configuration, the state it keeps in `lab.json`, its limits.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vinfra_client::{Client, RestError};

use crate::upstream::Upstream;

/// Longest lab name (it becomes part of namespace names).
pub const MAX_NAME: usize = 12;
/// Most hosts in one lab.
pub const MAX_HOSTS: usize = 64;

/// How long to wait for the console's API after starting it.
pub(crate) const API_TIMEOUT: Duration = Duration::from_secs(90);
/// How long to wait for every agent to join and report.
pub(crate) const HOSTS_TIMEOUT: Duration = Duration::from_secs(180);
/// Grace between SIGTERM and SIGKILL when stopping a lab process.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a fence waits for the processes of a host's namespace to be gone.
pub(crate) const FENCE_WAIT: Duration = Duration::from_secs(10);

/// What [`crate::Lab::up`] builds.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Short name (prefix of namespace names `vl-<name>-ul`, `vl-<name>-h1`, …).
    pub name: String,
    /// Number of hosts (default 3).
    pub hosts: usize,
    /// Directory of the lab's state (default `/var/lib/vinfra-lab/<name>`).
    pub root: PathBuf,
    /// The `vinfra` executable to launch the console and the agents with.
    pub vinfra_binary: PathBuf,
    /// Port of the REST API on 127.0.0.1 (0: pick a free one).
    pub api_port: u16,
    /// Memory each agent reports, MiB (default: the machine's).
    pub host_memory_mib: Option<u64>,
    /// Cores each agent reports (default: the machine's).
    pub host_cores: Option<u32>,
    /// Where the guest image is built (default `/var/cache/vinfra/guest`).
    pub guest_image_dir: PathBuf,
}

impl LabConfig {
    /// A configuration with the defaults for lab `name`.
    pub fn new(name: &str, vinfra_binary: PathBuf) -> Self {
        LabConfig {
            name: name.to_string(),
            hosts: 3,
            root: default_root(name),
            vinfra_binary,
            api_port: 0,
            host_memory_mib: None,
            host_cores: None,
            guest_image_dir: PathBuf::from("/var/cache/vinfra/guest"),
        }
    }
}

/// The default state directory of lab `name`.
pub fn default_root(name: &str) -> PathBuf {
    PathBuf::from("/var/lib/vinfra-lab").join(name)
}

/// One host of a running lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    /// Host name (`h1`, `h2`, …).
    pub name: String,
    /// Its network namespace.
    pub namespace: String,
    /// Its address on the lab bridge.
    pub address: Ipv4Addr,
    /// The agent's data directory.
    pub data_dir: PathBuf,
    /// The agent's pid when last started.
    pub pid: u32,
    /// The virtual switch's pid when last started.
    #[serde(default)]
    pub switch_pid: u32,
    /// The guard's pid when last started.
    #[serde(default)]
    pub guard_pid: u32,
}

/// A "physical" endpoint on a VLAN: an access port of the top-of-rack switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanEndpoint {
    /// The VLAN ID.
    pub vlan_id: u16,
    /// Its address and prefix (`10.81.0.1/24`), on `tap` in the physical-network namespace.
    pub address: String,
    /// The tap of the access port.
    pub tap: String,
    /// The access port's number on the top-of-rack switch.
    pub port: u32,
}

/// The top-of-rack switch's port number of its trunk.
pub const TOR_TRUNK_PORT: u32 = 1;
/// The top-of-rack switch's port number of the access port of VLAN `vid`: 10000 + `vid`.
pub fn tor_access_port(vid: u16) -> u32 {
    10_000 + u32::from(vid)
}

/// What `root/lab.json` records about a running lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: String,
    /// Its state directory.
    pub root: PathBuf,
    /// Base URL of the REST API.
    pub url: String,
    /// Port of the REST API on 127.0.0.1.
    pub api_port: u16,
    /// File holding the API token.
    pub token_file: PathBuf,
    /// The cluster CA certificate (PEM).
    pub ca_file: PathBuf,
    /// The console's pid when last started.
    pub console_pid: u32,
    /// The underlay namespace, where the console's agent endpoint listens.
    pub underlay_namespace: String,
    /// The hosts, in order.
    pub hosts: Vec<HostState>,
    /// The `vinfra` executable the lab's processes run.
    pub vinfra_binary: PathBuf,
    /// Memory each agent reports, MiB (`None`: the machine's).
    pub host_memory_mib: Option<u64>,
    /// Cores each agent reports (`None`: the machine's).
    pub host_cores: Option<u32>,
    /// The physical-network namespace, where the hosts' trunks meet (absent in a lab built
    /// before it existed: its hosts have no trunk).
    #[serde(default)]
    pub phys_namespace: Option<String>,
    /// The top-of-rack switch's pid when last started.
    #[serde(default)]
    pub tor_pid: u32,
    /// The VLAN endpoints on the physical network.
    #[serde(default)]
    pub endpoints: Vec<VlanEndpoint>,
    /// The upstream router and its internet, if the lab has them.
    #[serde(default)]
    pub upstream: Option<Upstream>,
}

/// How to reach a lab's REST API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiAccess {
    /// Base URL (`https://127.0.0.1:<port>`).
    pub url: String,
    /// The API token.
    pub token: String,
    /// The cluster CA certificate's file.
    pub ca_file: PathBuf,
    /// The cluster CA certificate (PEM).
    pub ca_pem: Vec<u8>,
}

impl ApiAccess {
    /// A REST client of the lab's console.
    pub fn client(&self) -> Result<Client, RestError> {
        Client::new(&self.url, &self.token, Some(&self.ca_pem))
    }
}
