//! The lab: a whole vinfra cluster on one machine.
//!
//! [`Lab::up`] builds, as root:
//! - an underlay network namespace `vl-<name>-ul` with a Linux bridge `br0` at 10.77.0.1/24, where
//!   the console's agent endpoint listens (port 7444);
//! - one namespace per host, `vl-<name>-h<N>`, joined to the bridge by a veth pair, with the
//!   address 10.77.0.(10+N)/24 on `eth0` and no default route;
//! - the directory `root` (default `/var/lib/vinfra-lab/<name>`): `console/` (the console's data,
//!   CA in `console/pki/ca.pem`, API token in `console/api-token`), `hosts/h<N>/` (each agent's
//!   data), `datastore/` (shared by every host; the guest kernel and initramfs in `images/`),
//!   `console.log`, `hosts/h<N>/agent.log`, pidfiles, and `lab.json` (the [`LabState`]);
//! - a console (REST API on 127.0.0.1 in the root namespace, reading the hosts' leases in the
//!   datastore) and, per host namespace, a virtual switch, a guard (`vinfra guard`: the host's
//!   lease in `datastore/ha/hosts/`, control socket `hosts/h<N>/guard.sock`, log
//!   `hosts/h<N>/guard.log`; every QEMU of the host is its child) and an agent (`--guard`),
//!   each started detached from the `vinfra` binary, the guard before the agent;
//! - a "physical network" for VLAN networks: a namespace `vl-<name>-phys` with a Linux bridge
//!   that forwards 802.1Q-tagged frames as they are, joined to every host by a veth pair whose
//!   host end, `trunk0`, is the host's trunk (each agent runs with `--trunk-interface trunk0`),
//!   see [`net`];
//! - a top-of-rack switch on that network: a `vinfra switch` in the physical-network namespace
//!   (control socket `phys/switch.sock`, log `phys/switch.log`) whose trunk is one more port of
//!   the bridge. [`Lab::add_vlan_endpoint`] gives it an access port on a VLAN, a tap with an IP
//!   address in the physical-network namespace: a "physical" machine on that VLAN whose
//!   kernel answers ARP and ping. The kernel here has no 802.1Q sub-interfaces, so a VLAN
//!   endpoint has to tag and untag in userspace; the switch does exactly that, the way a real
//!   top-of-rack switch does for a server on an access port.
//! - on request ([`Lab::add_upstream`]; `vinfra lab up` asks for one on VLAN 200), the data
//!   centre's upstream router on the physical network and an "internet" behind it, namespaces
//!   `vl-<name>-upstream` and `vl-<name>-internet`, the latter with a TCP service that tells a
//!   client the address it sees it come from: see [`upstream`].
//!
//! Each host gets a fence command, set through the API once the hosts are connected:
//! `vinfra lab fence --name <name> --root <root> <host>` ([`Lab::fence`]), which kills every
//! process in the host's namespace (its agent, its switch, its QEMUs, whatever else runs
//! there): the lab's stand-in for the IPMI power-off of a real host.
//!
//! [`Lab::down`] stops every process of the lab (including QEMUs), deletes the namespaces and
//! removes `root`. Nothing of the lab is ever reachable from outside the machine.
//!
//! The lab talks to its console through `vinfra_client`, like the CLI does.
//!
//! Modules: [`net`] (namespaces), [`process`] (detached processes), [`guest`] (the test guest
//! image and how it takes its address), [`upstream`] (the upstream router and its internet).
#![deny(unsafe_code)]

pub mod guest;
pub mod net;
pub mod process;
pub mod upstream;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use vinfra_client::{Client, RestError, CONSOLE_CA_FILE};
use vinfra_switch_control::SwitchClient;
use vinfra_types::api::{CreateVmRequest, UpdateHostRequest};
use vinfra_types::network::Ipv4Subnet;
use vinfra_types::{BootSource, HostStatus, HostSummary, NicSpec, VmSpec, VmSummary};

use guest::GuestAddress;
use upstream::{Upstream, UpstreamError};

/// Longest lab name (it becomes part of namespace names).
pub const MAX_NAME: usize = 12;
/// Most hosts in one lab.
pub const MAX_HOSTS: usize = 64;

/// How long to wait for the console's API after starting it.
const API_TIMEOUT: Duration = Duration::from_secs(90);
/// How long to wait for every agent to join and report.
const HOSTS_TIMEOUT: Duration = Duration::from_secs(180);
/// Grace between SIGTERM and SIGKILL when stopping a lab process.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a fence waits for the processes of a host's namespace to be gone.
const FENCE_WAIT: Duration = Duration::from_secs(10);

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab name is not usable in namespace names.
    #[error("bad lab name '{0}': use 1 to {MAX_NAME} lower-case letters, digits or '-'")]
    Name(String),
    /// The host count is out of range.
    #[error("a lab has 1 to {MAX_HOSTS} hosts, not {0}")]
    Hosts(usize),
    /// The lab needs root (namespaces, bridges, QEMU with KVM).
    #[error("the lab must be run as root (it creates network namespaces)")]
    NotRoot,
    /// The vinfra binary to launch does not exist.
    #[error("vinfra binary not found at {0}")]
    Binary(PathBuf),
    /// No lab state at the expected place.
    #[error("no lab at {0} (no lab.json): is it up?")]
    NotFound(PathBuf),
    /// A file or directory operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was done (`cannot create`, `cannot read`, …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The lab state file is not valid (or could not be written as JSON).
    #[error("bad lab state in {path}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// No free TCP port for the API.
    #[error("cannot pick a free port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    /// The guest image could not be built or installed.
    #[error(transparent)]
    Guest(#[from] guest::GuestError),
    /// The lab network could not be set up or removed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// A lab process could not be started or stopped.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// A REST call to the console failed.
    #[error(transparent)]
    Api(#[from] RestError),
    /// A network the console answered with has a subnet that is not one.
    #[error("network {network} has no usable subnet")]
    Subnet {
        /// The network's name.
        network: String,
        /// Why its subnet does not parse.
        #[source]
        source: vinfra_types::network::NetworkError,
    },
    /// The top-of-rack switch could not be reached or refused its configuration.
    #[error("top-of-rack switch at {path}")]
    Tor {
        /// Its control socket.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: vinfra_switch_control::ClientError,
    },
    /// A host's switch could not be reached.
    #[error("switch of {host} at {path}")]
    Switch {
        /// The host.
        host: String,
        /// Its control socket.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: vinfra_switch_control::ClientError,
    },
    /// A VLAN endpoint was asked with a VLAN ID outside 1 to 4094.
    #[error("bad VLAN endpoint: VLAN ID {0} is not between 1 and 4094")]
    EndpointVlan(u16),
    /// A VLAN endpoint was asked with an address that is not `A.B.C.D/P` (P from 1 to 30).
    #[error("bad VLAN endpoint: '{0}' is not an IPv4 address/prefix")]
    EndpointAddress(String),
    /// A VLAN already has its endpoint.
    #[error("bad VLAN endpoint: VLAN {0} already has an endpoint")]
    EndpointTaken(u16),
    /// The lab was built without a physical network (an older `lab.json`).
    #[error("this lab has no physical network (it was built by an older version): rebuild it")]
    NoPhys,
    /// The upstream router or its internet could not be set up or used.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A lab process exited while the lab was waiting for it.
    #[error("the {what} exited; last log lines ({log}): {tail}")]
    Exited {
        /// Which process (`console`, `agent of h1`, `switch of h2`, …).
        what: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log, joined with ` | `.
        tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long, in seconds.
        secs: u64,
    },
    /// No host of that name in the lab.
    #[error("no host '{0}' in this lab")]
    NoHost(String),
    /// A host agent's `GET /metrics` failed.
    #[error("GET {url} in the namespace of {host}: {detail}")]
    Metrics {
        /// The host.
        host: String,
        /// The URL asked.
        url: String,
        /// What went wrong (curl's exit and message).
        detail: String,
    },
}

/// What [`Lab::up`] builds.
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

/// What [`Lab::status`] finds.
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

/// A running lab.
#[derive(Debug, Clone)]
pub struct Lab {
    state: LabState,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.to_path_buf();
    move |source| LabError::Io { what, path, source }
}

/// Checks a lab name: a DNS label of at most [`MAX_NAME`] characters.
pub fn validate_lab_name(name: &str) -> Result<(), LabError> {
    if name.len() > MAX_NAME || vinfra_types::validate_name(name).is_err() {
        return Err(LabError::Name(name.to_string()));
    }
    Ok(())
}

/// `word` quoted for `sh`: in single quotes, each `'` written `'\''`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

fn free_port() -> Result<u16, LabError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(LabError::Port)?;
    Ok(l.local_addr().map_err(LabError::Port)?.port())
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Waits (up to 10 s) until the switch `pid` has created its control socket `control`.
fn wait_control(control: &Path, pid: u32, log: &Path, what: &str) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        if !process::alive(pid) {
            return Err(LabError::Exited {
                what: what.to_string(),
                tail: log_tail(log),
                log: log.to_path_buf(),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: what.to_string(),
                secs: 10,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// True when `pid` is a process of the lab at `root`: a vinfra console, agent, switch or guard, or
/// a QEMU, whose command line mentions `root`.
fn is_lab_process(pid: u32, root: &Path) -> bool {
    let Some(cmd) = process::cmdline(pid) else {
        return false;
    };
    let needle = format!("{}/", root.display());
    if !cmd.contains(&needle) {
        return false;
    }
    let mut args = cmd.split(' ');
    let argv0 = args.next().unwrap_or_default();
    let base = argv0.rsplit('/').next().unwrap_or_default();
    base.starts_with("qemu")
        || matches!(args.next(), Some("console" | "agent" | "switch" | "guard"))
}

fn is_qemu(pid: u32) -> bool {
    process::cmdline(pid).is_some_and(|c| {
        let argv0 = c.split(' ').next().unwrap_or_default();
        argv0
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .starts_with("qemu")
    })
}

/// Pids of every QEMU process on the machine (of any lab or none) whose command line contains
/// `needle`.
pub fn qemu_pids_mentioning(needle: &str) -> Vec<u32> {
    process::pids_mentioning(needle)
        .into_iter()
        .filter(|pid| is_qemu(*pid))
        .collect()
}

/// Pidfiles of QEMUs under `root/hosts/*/vms/*/`.
fn qemu_pidfiles(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(hosts) = std::fs::read_dir(root.join("hosts")) else {
        return files;
    };
    for host in hosts.flatten() {
        let Ok(vms) = std::fs::read_dir(host.path().join("vms")) else {
            continue;
        };
        for vm in vms.flatten() {
            let Ok(entries) = std::fs::read_dir(vm.path()) else {
                continue;
            };
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "pid")),
            );
        }
    }
    files.sort();
    files
}

/// Stops every process of lab `name` at `root`, deletes its namespaces and removes `root`.
/// Works from whatever is left: pidfiles, `/proc`, `/run/netns`.
/// The cgroup under which lab `lab`'s host `host` keeps its VMs' cgroups (its agent's
/// `--cgroup-parent`): each lab its own, so that labs side by side never sweep each other's.
pub fn cgroup_parent(lab: &str, host: &str) -> PathBuf {
    Path::new("vinfra.slice")
        .join(format!("lab-{lab}"))
        .join(host)
}

/// Removes lab `lab`'s VM cgroups that no process is in any more, then its hosts' and its own
/// cgroups left empty (the lab's agents are gone before their last sweep).
fn remove_empty_vm_cgroups(lab: &str) {
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
    ] {
        let dir = Path::new(root)
            .join("vinfra.slice")
            .join(format!("lab-{lab}"));
        let Ok(hosts) = std::fs::read_dir(&dir) else {
            continue;
        };
        for host in hosts.flatten().filter(|h| h.path().is_dir()) {
            if let Ok(vms) = std::fs::read_dir(host.path()) {
                for vm in vms.flatten().filter(|v| v.path().is_dir()) {
                    let _ = std::fs::remove_dir(vm.path());
                }
            }
            let _ = std::fs::remove_dir(host.path());
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

fn cleanup(name: &str, root: &Path, remove_root: bool) -> Result<(), LabError> {
    let mut first: Option<LabError> = None;
    let mut note = |r: Result<(), LabError>| {
        if let Err(e) = r {
            tracing::warn!(error = %vinfra_types::error::Chain(&e), "lab cleanup");
            first.get_or_insert(e);
        }
    };
    // The console first (so that it orders nothing more), then the agents, their switches, their
    // guards (their QEMUs die with them), then any QEMU left.
    let mut pidfiles = vec![root.join("console.pid"), root.join("phys/switch.pid")];
    if let Ok(hosts) = std::fs::read_dir(root.join("hosts")) {
        let hosts: Vec<PathBuf> = hosts.flatten().map(|h| h.path()).collect();
        pidfiles.extend(hosts.iter().map(|h| h.join("agent.pid")));
        pidfiles.extend(hosts.iter().map(|h| h.join("switch.pid")));
        pidfiles.extend(hosts.iter().map(|h| h.join("guard.pid")));
    }
    for pidfile in &pidfiles {
        if let Some(pid) = process::read_pidfile(pidfile) {
            if process::alive(pid) && is_lab_process(pid, root) {
                note(process::terminate(pid, STOP_GRACE).map_err(LabError::from));
            }
        }
    }
    for pidfile in qemu_pidfiles(root) {
        if let Some(pid) = process::read_pidfile(&pidfile) {
            if process::alive(pid) && is_qemu(pid) {
                note(process::signal(pid, Signal::SIGKILL).map_err(LabError::from));
                process::wait_gone(pid, Duration::from_secs(5));
            }
        }
    }
    for pid in process::pids_mentioning(&format!("{}/", root.display())) {
        if is_lab_process(pid, root) {
            note(process::signal(pid, Signal::SIGKILL).map_err(LabError::from));
            process::wait_gone(pid, Duration::from_secs(5));
        }
    }
    remove_empty_vm_cgroups(name);
    // The upstream router's and the internet's namespaces hold nothing but the lab's.
    note(upstream::stop(name).map_err(LabError::from));
    note(net::destroy(name).map_err(LabError::from));
    if remove_root && root.exists() {
        note(std::fs::remove_dir_all(root).map_err(io("cannot remove", root)));
    }
    first.map_or(Ok(()), Err)
}

impl Lab {
    /// Builds and starts the lab described by `config`; tears down leftovers of a lab with the
    /// same name and root first. On failure, stops what it started and deletes the namespaces,
    /// but keeps `root` (its logs tell what went wrong).
    pub fn up(config: LabConfig) -> Result<Lab, LabError> {
        validate_lab_name(&config.name)?;
        if config.hosts == 0 || config.hosts > MAX_HOSTS {
            return Err(LabError::Hosts(config.hosts));
        }
        if !nix::unistd::geteuid().is_root() {
            return Err(LabError::NotRoot);
        }
        if !config.vinfra_binary.is_file() {
            return Err(LabError::Binary(config.vinfra_binary.clone()));
        }
        cleanup(&config.name, &config.root, true)?;
        match Self::build(&config) {
            Ok(lab) => Ok(lab),
            Err(e) => {
                if let Err(c) = cleanup(&config.name, &config.root, false) {
                    tracing::warn!(error = %c, "cleaning up after a failed lab up");
                }
                Err(e)
            }
        }
    }

    fn build(config: &LabConfig) -> Result<Lab, LabError> {
        let root = &config.root;
        // Confined QEMUs (their own users) pass through it to their directories.
        std::fs::create_dir_all(root).map_err(io("cannot create", root))?;
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io("cannot open to all", root))?;
        guest::ensure(&config.guest_image_dir)?;
        let images = root.join("datastore/images");
        for dir in [root.join("console"), images.clone()] {
            std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        }
        guest::install(&config.guest_image_dir, &images)?;
        net::create(&config.name, config.hosts)?;

        let api_port = if config.api_port == 0 {
            free_port()?
        } else {
            config.api_port
        };
        let console_dir = root.join("console");
        let mut hosts = Vec::new();
        for i in 1..=config.hosts {
            let name = format!("h{i}");
            let data_dir = root.join("hosts").join(&name);
            std::fs::create_dir_all(&data_dir).map_err(io("cannot create", &data_dir))?;
            hosts.push(HostState {
                namespace: net::host_ns(&config.name, i),
                address: net::host_addr(i),
                name,
                data_dir,
                pid: 0,
                switch_pid: 0,
                guard_pid: 0,
            });
        }
        let mut lab = Lab {
            state: LabState {
                name: config.name.clone(),
                root: root.clone(),
                url: format!("https://127.0.0.1:{api_port}"),
                api_port,
                token_file: console_dir.join("api-token"),
                ca_file: console_dir.join(CONSOLE_CA_FILE),
                console_pid: 0,
                underlay_namespace: net::underlay_ns(&config.name),
                hosts,
                vinfra_binary: config.vinfra_binary.clone(),
                host_memory_mib: config.host_memory_mib,
                host_cores: config.host_cores,
                phys_namespace: Some(net::phys_ns(&config.name)),
                tor_pid: 0,
                endpoints: Vec::new(),
                upstream: None,
            },
        };
        lab.start_tor()?;
        lab.start_console()?;
        lab.save()?;
        lab.wait_api()?;
        let client = lab.api()?;
        for i in 0..lab.state.hosts.len() {
            let token = client.create_join_token()?;
            lab.start_switch(i)?;
            lab.start_guard(i)?;
            lab.start_agent(i, Some(&token.token))?;
        }
        lab.save()?;
        lab.wait_hosts_connected(HOSTS_TIMEOUT)?;
        lab.set_fence_commands()?;
        Ok(lab)
    }

    /// The shell command that fences `host` (`vinfra lab fence`, see [`Lab::fence`]), every
    /// word quoted for `sh`.
    pub fn fence_command(&self, host: &str) -> String {
        let s = &self.state;
        [
            s.vinfra_binary.display().to_string(),
            "lab".into(),
            "fence".into(),
            "--name".into(),
            s.name.clone(),
            "--root".into(),
            s.root.display().to_string(),
            host.to_string(),
        ]
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// Gives every host its fence command ([`Lab::fence_command`]) through the API.
    pub fn set_fence_commands(&self) -> Result<(), LabError> {
        let client = self.api()?;
        for h in &self.state.hosts {
            let update = UpdateHostRequest {
                fence_command: Some(Some(self.fence_command(&h.name))),
                ..UpdateHostRequest::default()
            };
            client.update_host(&h.name, &update)?;
        }
        Ok(())
    }

    /// Fences `host`: kills every process in its network namespace (agent, switch, QEMUs and
    /// whatever else runs there) with SIGKILL, again until none is left (at most 10 s). Returns
    /// the pids killed. What `vinfra lab fence` (each host's fence command) does.
    pub fn fence(&self, host: &str) -> Result<Vec<u32>, LabError> {
        let ns = self.state.hosts[self.host_index(host)?].namespace.clone();
        let deadline = Instant::now() + FENCE_WAIT;
        let mut killed = Vec::new();
        loop {
            let pids = net::pids(&ns)?;
            if pids.is_empty() {
                killed.sort_unstable();
                killed.dedup();
                return Ok(killed);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("the processes in {ns} to end ({pids:?} are left)"),
                    secs: FENCE_WAIT.as_secs(),
                });
            }
            for pid in pids {
                // Gone meanwhile is as good as killed.
                let _ = process::signal(pid, Signal::SIGKILL);
                killed.push(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Loads the lab `name` from its default root.
    pub fn load(name: &str) -> Result<Lab, LabError> {
        validate_lab_name(name)?;
        Self::load_from(&default_root(name))
    }

    /// Loads the lab whose state directory is `root`.
    pub fn load_from(root: &Path) -> Result<Lab, LabError> {
        let path = root.join("lab.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::NotFound(root.to_path_buf()))
            }
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        let state: LabState =
            serde_json::from_str(&text).map_err(|source| LabError::State { path, source })?;
        Ok(Lab { state })
    }

    /// Stops and removes the lab `name` at `root` even without a usable `lab.json`.
    pub fn destroy(name: &str, root: &Path) -> Result<(), LabError> {
        validate_lab_name(name)?;
        cleanup(name, root, true)
    }

    /// The recorded state.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Host names, in order.
    pub fn host_names(&self) -> Vec<String> {
        self.state.hosts.iter().map(|h| h.name.clone()).collect()
    }

    fn save(&self) -> Result<(), LabError> {
        let path = self.state.root.join("lab.json");
        let tmp = self.state.root.join("lab.json.tmp");
        let text = serde_json::to_string_pretty(&self.state).map_err(|source| LabError::State {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, text + "\n").map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("cannot write", &path))
    }

    fn console_log(&self) -> PathBuf {
        self.state.root.join("console.log")
    }

    fn start_console(&mut self) -> Result<(), LabError> {
        let s = &self.state;
        let agent_listen = SocketAddr::from((net::UNDERLAY_ADDR, net::AGENT_PORT));
        let args: Vec<String> = vec![
            "console".into(),
            "--data-dir".into(),
            s.root.join("console").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", s.api_port),
            "--agent-listen".into(),
            agent_listen.to_string(),
            "--agent-listen-netns".into(),
            s.underlay_namespace.clone(),
            "--advertise".into(),
            "127.0.0.1".into(),
            "--advertise".into(),
            "localhost".into(),
            "--advertise".into(),
            net::UNDERLAY_ADDR.to_string(),
            "--token-file".into(),
            s.token_file.display().to_string(),
            "--datastore".into(),
            s.root.join("datastore").display().to_string(),
        ];
        let pid = process::spawn_detached(
            &s.vinfra_binary,
            &args,
            &self.console_log(),
            &s.root.join("console.pid"),
        )?;
        self.state.console_pid = pid;
        Ok(())
    }

    fn host_index(&self, host: &str) -> Result<usize, LabError> {
        self.state
            .hosts
            .iter()
            .position(|h| h.name == host)
            .ok_or_else(|| LabError::NoHost(host.to_string()))
    }

    /// The control socket of a host's switch.
    fn switch_control(h: &HostState) -> PathBuf {
        h.data_dir.join("switch.sock")
    }

    /// Starts a host's virtual switch in its namespace (`vinfra switch`, detached, with its
    /// underlay address as VXLAN tunnel endpoint) and waits (up to 10 s) for its control socket.
    fn start_switch(&mut self, index: usize) -> Result<(), LabError> {
        let s = &self.state;
        let h = &s.hosts[index];
        let control = Self::switch_control(h);
        let _ = std::fs::remove_file(&control);
        let args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            h.namespace.clone(),
            s.vinfra_binary.display().to_string(),
            "switch".into(),
            "--control".into(),
            control.display().to_string(),
            "--underlay-ip".into(),
            h.address.to_string(),
        ];
        let log = h.data_dir.join("switch.log");
        let pid =
            process::spawn_detached(Path::new("ip"), &args, &log, &h.data_dir.join("switch.pid"))?;
        self.state.hosts[index].switch_pid = pid;
        let what = format!("switch of {}", self.state.hosts[index].name);
        wait_control(&control, pid, &log, &what)
    }

    /// The control socket of a host's guard.
    fn guard_control(h: &HostState) -> PathBuf {
        h.data_dir.join("guard.sock")
    }

    /// Starts a host's guard in its namespace (`vinfra guard`, detached, its lease in the lab's
    /// datastore) and waits (up to 10 s) for its control socket, which it opens once it holds
    /// the host's lease.
    fn start_guard(&mut self, index: usize) -> Result<(), LabError> {
        let s = &self.state;
        let h = &s.hosts[index];
        let control = Self::guard_control(h);
        let _ = std::fs::remove_file(&control);
        let args: Vec<String> = vec![
            // Only the network namespace: `ip netns exec` would also hide the host's
            // cgroups (it mounts a sysfs of the namespace's over /sys), which QEMUs join.
            format!("--net=/run/netns/{}", h.namespace),
            "--".into(),
            s.vinfra_binary.display().to_string(),
            "guard".into(),
            "--host".into(),
            h.name.clone(),
            "--datastore".into(),
            s.root.join("datastore").display().to_string(),
            "--control".into(),
            control.display().to_string(),
        ];
        let log = h.data_dir.join("guard.log");
        let pid = process::spawn_detached(
            Path::new("nsenter"),
            &args,
            &log,
            &h.data_dir.join("guard.pid"),
        )?;
        self.state.hosts[index].guard_pid = pid;
        let what = format!("guard of {}", self.state.hosts[index].name);
        wait_control(&control, pid, &log, &what)
    }

    /// The pid of `host`'s guard.
    pub fn guard_pid(&self, host: &str) -> Result<u32, LabError> {
        let h = &self.state.hosts[self.host_index(host)?];
        Ok(process::read_pidfile(&h.data_dir.join("guard.pid")).unwrap_or(h.guard_pid))
    }

    /// Sends `signal` to `host`'s guard (SIGKILL: every QEMU of the host dies with it). Start
    /// it again with [`Lab::restart_guard`].
    pub fn kill_guard(&self, host: &str, signal: Signal) -> Result<(), LabError> {
        let pid = self.guard_pid(host)?;
        if is_lab_process(pid, &self.state.root) {
            process::signal(pid, signal)?;
        }
        Ok(())
    }

    /// Stops `host`'s guard if it runs (its QEMUs die with it) and starts it again; waits until
    /// it holds the host's lease and answers (a new incarnation).
    pub fn restart_guard(&mut self, host: &str) -> Result<(), LabError> {
        let index = self.host_index(host)?;
        let pid = self.guard_pid(host)?;
        if process::alive(pid) && is_lab_process(pid, &self.state.root) {
            process::terminate(pid, STOP_GRACE)?;
        }
        self.start_guard(index)?;
        self.save()
    }

    /// The control socket of `host`'s guard.
    pub fn guard_control_of(&self, host: &str) -> Result<PathBuf, LabError> {
        Ok(Self::guard_control(
            &self.state.hosts[self.host_index(host)?],
        ))
    }

    /// The top-of-rack switch's directory (`<root>/phys`).
    fn phys_dir(&self) -> PathBuf {
        self.state.root.join("phys")
    }

    /// The control socket of the top-of-rack switch.
    pub fn tor_control(&self) -> PathBuf {
        self.phys_dir().join("switch.sock")
    }

    /// The pid of the top-of-rack switch.
    pub fn tor_pid(&self) -> u32 {
        process::read_pidfile(&self.phys_dir().join("switch.pid")).unwrap_or(self.state.tor_pid)
    }

    /// Starts the top-of-rack switch in the physical-network namespace (`vinfra switch`,
    /// detached), waits (up to 10 s) for its control socket and adds its trunk.
    fn start_tor(&mut self) -> Result<(), LabError> {
        let phys = self.state.phys_namespace.clone().ok_or(LabError::NoPhys)?;
        let dir = self.phys_dir();
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let control = self.tor_control();
        let _ = std::fs::remove_file(&control);
        let args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            phys,
            self.state.vinfra_binary.display().to_string(),
            "switch".into(),
            "--control".into(),
            control.display().to_string(),
        ];
        let log = dir.join("switch.log");
        let pid = process::spawn_detached(Path::new("ip"), &args, &log, &dir.join("switch.pid"))?;
        self.state.tor_pid = pid;
        wait_control(&control, pid, &log, "top-of-rack switch")?;
        self.tor_apply(&[vinfra_switch_control::Request::AddPort(
            vinfra_switch_control::PortSpec {
                id: TOR_TRUNK_PORT,
                mtu: 1500,
                attach: vinfra_switch_control::Attachment::VlanTrunk {
                    interface: net::TOR_TRUNK_INTERFACE.into(),
                },
            },
        )])
    }

    fn tor_apply(&self, requests: &[vinfra_switch_control::Request]) -> Result<(), LabError> {
        let path = self.tor_control();
        let tor = |source| LabError::Tor {
            path: path.clone(),
            source,
        };
        let mut client =
            vinfra_switch_control::SwitchClient::connect_within(&path, Duration::from_secs(5))
                .map_err(tor)?;
        client
            .set_timeout(Some(Duration::from_secs(5)))
            .map_err(tor)?;
        client.apply(requests).map_err(tor)
    }

    /// Puts a "physical" endpoint on VLAN `vlan_id` (1 to 4094): an access port of the
    /// top-of-rack switch on that VLAN, a tap `ep<vlan_id>` with address `cidr`
    /// (`10.81.0.1/24`) in the physical-network namespace. Its frames leave the switch's
    /// trunk tagged `vlan_id` onto the physical bridge, which carries them to every host's
    /// trunk; frames of other VLANs never reach it.
    pub fn add_vlan_endpoint(
        &mut self,
        vlan_id: u16,
        cidr: &str,
    ) -> Result<VlanEndpoint, LabError> {
        if !(1..=4094).contains(&vlan_id) {
            return Err(LabError::EndpointVlan(vlan_id));
        }
        let bad = || LabError::EndpointAddress(cidr.to_string());
        let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        addr.parse::<Ipv4Addr>().map_err(|_| bad())?;
        if !prefix.parse::<u8>().is_ok_and(|p| (1..=30).contains(&p)) {
            return Err(bad());
        }
        if self.state.endpoints.iter().any(|e| e.vlan_id == vlan_id) {
            return Err(LabError::EndpointTaken(vlan_id));
        }
        if self.state.phys_namespace.is_none() {
            return Err(LabError::NoPhys);
        }
        let endpoint = VlanEndpoint {
            vlan_id,
            address: cidr.to_string(),
            tap: format!("ep{vlan_id}"),
            port: tor_access_port(vlan_id),
        };
        self.tor_apply(&self.tor_access_requests(vlan_id, endpoint.port, &endpoint.tap))?;
        net::set_phys_address(&self.state.name, &endpoint.tap, cidr)?;
        self.state.endpoints.push(endpoint.clone());
        self.save()?;
        Ok(endpoint)
    }

    /// True when the top-of-rack switch has VLAN `vid` (an endpoint or the upstream router is
    /// on it).
    fn tor_has_vlan(&self, vid: u16) -> bool {
        self.state.endpoints.iter().any(|e| e.vlan_id == vid)
            || self
                .state
                .upstream
                .as_ref()
                .is_some_and(|u| u.vlan_id == vid)
    }

    /// The requests that give the top-of-rack switch an access port `port` on VLAN `vid`,
    /// creating the tap `tap` (and the VLAN, when the switch does not have it yet).
    fn tor_access_requests(
        &self,
        vid: u16,
        port: u32,
        tap: &str,
    ) -> Vec<vinfra_switch_control::Request> {
        let mut requests = Vec::new();
        if !self.tor_has_vlan(vid) {
            requests.push(vinfra_switch_control::Request::AddNetwork {
                id: u32::from(vid),
                kind: vinfra_switch_control::NetworkSpec::Vlan { vid },
            });
        }
        requests.push(vinfra_switch_control::Request::AddPort(
            vinfra_switch_control::PortSpec {
                id: port,
                mtu: 1500,
                attach: vinfra_switch_control::Attachment::Host {
                    network: u32::from(vid),
                    tap: tap.to_string(),
                },
            },
        ));
        requests
    }

    /// Gives the lab its upstream router on VLAN `vlan_id` of the physical network, with
    /// address `external_cidr` (`10.82.0.254/24`) there and `internet_cidr` (`10.250.0.1/24`)
    /// towards the "internet" behind it, which takes the address beside that one
    /// (`10.250.0.2/24`) and runs the internet service (see [`upstream`]). The router's
    /// interface on the VLAN is an access port of the top-of-rack switch, moved from the
    /// physical-network namespace into the router's. On failure, removes what it made.
    pub fn add_upstream(
        &mut self,
        vlan_id: u16,
        external_cidr: &str,
        internet_cidr: &str,
    ) -> Result<Upstream, LabError> {
        let phys = self.state.phys_namespace.clone().ok_or(LabError::NoPhys)?;
        if self.state.upstream.is_some() {
            return Err(UpstreamError::Taken.into());
        }
        let mut up = Upstream::new(&self.state.name, vlan_id, external_cidr, internet_cidr)?;
        let requests = self.tor_access_requests(vlan_id, up.tor_port, upstream::EXTERNAL_INTERFACE);
        let mut on_tor = false;
        match self.build_upstream(&up, &requests, &phys, &mut on_tor) {
            Ok(pid) => up.service_pid = pid,
            Err(e) => {
                // Best effort: the access port (and the VLAN, if it came with it), then the
                // namespaces.
                if on_tor {
                    let mut undo =
                        vec![vinfra_switch_control::Request::RemovePort { id: up.tor_port }];
                    if requests.len() > 1 {
                        undo.push(vinfra_switch_control::Request::RemoveNetwork {
                            id: u32::from(vlan_id),
                        });
                    }
                    for request in undo {
                        if let Err(u) = self.tor_apply(&[request]) {
                            tracing::warn!(error = %u, "undoing the upstream router's access port");
                        }
                    }
                }
                if let Err(u) = upstream::destroy(&self.state.name) {
                    tracing::warn!(error = %u, "removing the upstream router's namespaces");
                }
                return Err(e);
            }
        }
        self.state.upstream = Some(up.clone());
        self.save()?;
        Ok(up)
    }

    /// The steps of [`Lab::add_upstream`]: the namespaces, the access port (`requests`; sets
    /// `on_tor` once the switch took them), the move of its tap, the internet service (its pid).
    fn build_upstream(
        &self,
        up: &Upstream,
        requests: &[vinfra_switch_control::Request],
        phys: &str,
        on_tor: &mut bool,
    ) -> Result<u32, LabError> {
        upstream::create(up)?;
        self.tor_apply(requests)?;
        *on_tor = true;
        upstream::attach_external(up, phys)?;
        let dir = upstream::service_dir(&self.state.root);
        Ok(upstream::start_service(up, &dir)?)
    }

    /// The lab's upstream router and internet.
    pub fn upstream(&self) -> Result<&Upstream, LabError> {
        Ok(self.state.upstream.as_ref().ok_or(UpstreamError::Missing)?)
    }

    /// Runs `args` (a program and its arguments) in the upstream router's namespace; its
    /// output.
    pub fn upstream_exec(&self, args: &[&str]) -> Result<std::process::Output, LabError> {
        Ok(upstream::exec(&self.upstream()?.namespace, args)?)
    }

    /// Runs `args` (a program and its arguments) in the internet's namespace (to ping a
    /// floating IP from the internet, say); its output.
    pub fn internet_exec(&self, args: &[&str]) -> Result<std::process::Output, LabError> {
        Ok(upstream::exec(&self.upstream()?.internet_namespace, args)?)
    }

    /// Probes the internet service from network namespace `namespace`: the address the service
    /// saw the connection come from (after a SNAT, the SNAT address).
    pub fn probe_internet_from(&self, namespace: &str) -> Result<Ipv4Addr, LabError> {
        let u = self.upstream()?;
        Ok(upstream::probe(namespace, u.internet.ip, u.service_port)?)
    }

    /// Routes `destination` (`A.B.C.D/P`, a floating-IP range outside the external subnet,
    /// say) on the upstream router via `via`, a host of the external subnet. Addresses on the
    /// external subnet need no route: the router finds them by ARP.
    pub fn add_upstream_route(&mut self, destination: &str, via: Ipv4Addr) -> Result<(), LabError> {
        let mut u = self.upstream()?.clone();
        upstream::add_route(&mut u, destination, via)?;
        self.state.upstream = Some(u);
        self.save()
    }

    /// The internet service's pid (from its pidfile, else the recorded one; 0 without an
    /// upstream router).
    pub fn internet_service_pid(&self) -> u32 {
        let recorded = self.state.upstream.as_ref().map_or(0, |u| u.service_pid);
        process::read_pidfile(&upstream::service_pidfile(&self.state.root)).unwrap_or(recorded)
    }

    /// The pid of `host`'s virtual switch.
    pub fn switch_pid(&self, host: &str) -> Result<u32, LabError> {
        let h = &self.state.hosts[self.host_index(host)?];
        Ok(process::read_pidfile(&h.data_dir.join("switch.pid")).unwrap_or(h.switch_pid))
    }

    /// The URL of `host`'s agent metrics (`vinfra agent --metrics-listen`), on the host's
    /// address: reachable from the host's namespace and the lab's underlay.
    pub fn agent_metrics_url(&self, host: &str) -> Result<String, LabError> {
        let h = &self.state.hosts[self.host_index(host)?];
        Ok(format!(
            "http://{}/metrics",
            SocketAddr::from((h.address, net::METRICS_PORT))
        ))
    }

    /// The network namespace of `host`.
    pub fn namespace_of(&self, host: &str) -> Result<String, LabError> {
        Ok(self.state.hosts[self.host_index(host)?].namespace.clone())
    }

    /// `GET /metrics` of `host`'s agent now (from the host's namespace, with `curl`): the
    /// Prometheus text.
    pub fn agent_metrics(&self, host: &str) -> Result<String, LabError> {
        let h = &self.state.hosts[self.host_index(host)?];
        let url = self.agent_metrics_url(host)?;
        let fail = |detail: String| LabError::Metrics {
            host: host.to_string(),
            url: url.clone(),
            detail,
        };
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", h.namespace))
            .args(["--", "curl", "-sS", "--fail", "--max-time", "10", &url])
            .output()
            .map_err(|e| fail(format!("cannot run nsenter curl: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        String::from_utf8(out.stdout).map_err(|e| fail(format!("not UTF-8: {e}")))
    }

    fn start_agent(&mut self, index: usize, join_token: Option<&str>) -> Result<(), LabError> {
        let s = &self.state;
        let h = &s.hosts[index];
        let mut args: Vec<String> = vec![
            // Only the network namespace: `ip netns exec` would also hide the host's
            // cgroups (it mounts a sysfs of the namespace's over /sys), which QEMUs join.
            format!("--net=/run/netns/{}", h.namespace),
            "--".into(),
            s.vinfra_binary.display().to_string(),
            "agent".into(),
            "--console".into(),
            SocketAddr::from((net::UNDERLAY_ADDR, net::AGENT_PORT)).to_string(),
            "--name".into(),
            h.name.clone(),
            "--address".into(),
            h.address.to_string(),
            "--datastore".into(),
            s.root.join("datastore").display().to_string(),
            "--data-dir".into(),
            h.data_dir.display().to_string(),
            "--switch-control".into(),
            Self::switch_control(h).display().to_string(),
            "--underlay-ip".into(),
            h.address.to_string(),
            "--guard".into(),
            Self::guard_control(h).display().to_string(),
            "--cgroup-parent".into(),
            cgroup_parent(&s.name, &h.name).display().to_string(),
            "--metrics-listen".into(),
            SocketAddr::from((h.address, net::METRICS_PORT)).to_string(),
        ];
        if s.phys_namespace.is_some() {
            args.extend(["--trunk-interface".into(), net::TRUNK_INTERFACE.to_string()]);
        }
        if let Some(token) = join_token {
            args.extend(["--join-token".into(), token.to_string()]);
        }
        if let Some(m) = s.host_memory_mib {
            args.extend(["--memory-mib".into(), m.to_string()]);
        }
        if let Some(c) = s.host_cores {
            args.extend(["--cores".into(), c.to_string()]);
        }
        let pid = process::spawn_detached(
            Path::new("nsenter"),
            &args,
            &h.data_dir.join("agent.log"),
            &h.data_dir.join("agent.pid"),
        )?;
        self.state.hosts[index].pid = pid;
        Ok(())
    }

    /// Waits until the REST API answers with the lab's token and CA.
    pub fn wait_api(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + API_TIMEOUT;
        loop {
            if !process::alive(self.console_pid()) {
                return Err(LabError::Exited {
                    what: "console".into(),
                    log: self.console_log(),
                    tail: log_tail(&self.console_log()),
                });
            }
            if let Ok(client) = self.api() {
                if client.hosts().is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("the console's API at {}", self.state.url),
                    secs: API_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every host of the lab is connected.
    pub fn wait_hosts_connected(&self, timeout: Duration) -> Result<(), LabError> {
        let client = self.api()?;
        let deadline = Instant::now() + timeout;
        loop {
            for h in &self.state.hosts {
                let pid = self.agent_pid(&h.name).unwrap_or(h.pid);
                if !process::alive(pid) {
                    let log = h.data_dir.join("agent.log");
                    return Err(LabError::Exited {
                        what: format!("agent of {}", h.name),
                        tail: log_tail(&log),
                        log,
                    });
                }
            }
            if let Ok(hosts) = client.hosts() {
                let connected = |name: &str| {
                    hosts
                        .iter()
                        .any(|x| x.name == name && x.status == HostStatus::Connected)
                };
                if self.state.hosts.iter().all(|h| connected(&h.name)) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: "every host to connect".into(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The console's pid (from its pidfile, else the recorded one).
    pub fn console_pid(&self) -> u32 {
        process::read_pidfile(&self.state.root.join("console.pid"))
            .unwrap_or(self.state.console_pid)
    }

    /// The pid of `host`'s agent.
    pub fn agent_pid(&self, host: &str) -> Result<u32, LabError> {
        let h = &self.state.hosts[self.host_index(host)?];
        Ok(process::read_pidfile(&h.data_dir.join("agent.pid")).unwrap_or(h.pid))
    }

    /// URL, token and CA of the REST API.
    pub fn api_access(&self) -> Result<ApiAccess, LabError> {
        let s = &self.state;
        let token = std::fs::read_to_string(&s.token_file)
            .map_err(io("cannot read the API token", &s.token_file))?
            .trim()
            .to_string();
        let ca_pem = std::fs::read(&s.ca_file).map_err(io("cannot read the CA", &s.ca_file))?;
        Ok(ApiAccess {
            url: s.url.clone(),
            token,
            ca_file: s.ca_file.clone(),
            ca_pem,
        })
    }

    /// A ready REST client of the lab's console.
    pub fn api(&self) -> Result<Client, LabError> {
        Ok(self.api_access()?.client()?)
    }

    /// Sends `signal` to `host`'s agent (its QEMUs keep running).
    pub fn kill_agent(&self, host: &str, signal: Signal) -> Result<(), LabError> {
        let pid = self.agent_pid(host)?;
        if is_lab_process(pid, &self.state.root) {
            process::signal(pid, signal)?;
        }
        Ok(())
    }

    /// Stops `host`'s virtual switch if it runs and starts it again (waiting for its control
    /// socket); its agent configures it again at its next reconcile.
    pub fn restart_switch(&mut self, host: &str) -> Result<(), LabError> {
        let index = self.host_index(host)?;
        let pid = self.switch_pid(host)?;
        if process::alive(pid) && is_lab_process(pid, &self.state.root) {
            process::terminate(pid, STOP_GRACE)?;
        }
        self.start_switch(index)?;
        self.save()
    }

    /// Stops `host`'s agent if it runs and starts it again (it has joined already, so without a
    /// join token). Does not wait for it to reconnect: see [`Lab::wait_hosts_connected`].
    pub fn restart_agent(&mut self, host: &str) -> Result<(), LabError> {
        let index = self.host_index(host)?;
        let pid = self.agent_pid(host)?;
        if process::alive(pid) && is_lab_process(pid, &self.state.root) {
            process::terminate(pid, STOP_GRACE)?;
        }
        self.start_agent(index, None)?;
        self.save()
    }

    /// Sends `signal` to the console (SIGKILL: it dies mid-operation, as in a crash). Start it
    /// again with [`Lab::restart_console`].
    pub fn kill_console(&self, signal: Signal) -> Result<(), LabError> {
        let pid = self.console_pid();
        if is_lab_process(pid, &self.state.root) {
            process::signal(pid, signal)?;
        }
        Ok(())
    }

    /// Stops the console (if it still runs) and starts it again on the same port; waits for its
    /// API.
    pub fn restart_console(&mut self) -> Result<(), LabError> {
        let pid = self.console_pid();
        if process::alive(pid) && is_lab_process(pid, &self.state.root) {
            process::terminate(pid, STOP_GRACE)?;
        }
        self.start_console()?;
        self.save()?;
        self.wait_api()
    }

    /// Pids of the QEMU processes of the VM with id `vm_id` (from pidfiles under the agents'
    /// `vms/<id>/` directories and from `/proc`).
    pub fn qemu_pids_for(&self, vm_id: &str) -> Vec<u32> {
        let root = &self.state.root;
        let mut pids: Vec<u32> = qemu_pidfiles(root)
            .iter()
            .filter(|p| p.to_string_lossy().contains(vm_id))
            .filter_map(|p| process::read_pidfile(p))
            .filter(|pid| process::alive(*pid) && is_qemu(*pid))
            .collect();
        for pid in process::pids_mentioning(vm_id) {
            if is_qemu(pid) && is_lab_process(pid, root) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The shared datastore directory.
    pub fn datastore(&self) -> PathBuf {
        self.state.root.join("datastore")
    }

    /// A control connection to `host`'s switch.
    pub fn switch_client(&self, host: &str) -> Result<SwitchClient, LabError> {
        let path = Self::switch_control(&self.state.hosts[self.host_index(host)?]);
        SwitchClient::connect(&path).map_err(|source| LabError::Switch {
            host: host.to_string(),
            path,
            source,
        })
    }

    /// The data directory of `host`'s agent.
    pub fn host_data_dir(&self, host: &str) -> Result<PathBuf, LabError> {
        Ok(self.state.hosts[self.host_index(host)?].data_dir.clone())
    }

    /// The directory `host`'s agent keeps for the VM with id `vm_id` (`vm.json`, `qemu.pid`,
    /// and in `run/`, its QEMU's, `qmp.sock` and `serial.log`); it exists only while the VM is
    /// defined on that host.
    pub fn vm_dir(&self, host: &str, vm_id: &str) -> Result<PathBuf, LabError> {
        Ok(self.host_data_dir(host)?.join("vms").join(vm_id))
    }

    /// Pids of the QEMU processes of the VM with id `vm_id` that run for `host` (their command
    /// line names that host's data directory).
    pub fn qemu_pids_on(&self, host: &str, vm_id: &str) -> Result<Vec<u32>, LabError> {
        let dir = format!("{}/", self.host_data_dir(host)?.display());
        Ok(self
            .qemu_pids_for(vm_id)
            .into_iter()
            .filter(|pid| process::cmdline(*pid).is_some_and(|c| c.contains(&dir)))
            .collect())
    }

    /// A request for a small VM booting the lab's guest image (1 vCPU, `memory_mib`,
    /// `console=ttyS0 no_timer_check`), started at once. `no_timer_check`: under TCG on a
    /// loaded machine the kernel's IO-APIC timer check can miss its ticks and panic ("IO-APIC +
    /// timer doesn't work!"), as virtual machines' kernels are told to skip it.
    pub fn guest_vm_request(name: &str, memory_mib: u64, host: Option<&str>) -> CreateVmRequest {
        CreateVmRequest {
            spec: VmSpec {
                name: name.to_string(),
                vcpus: 1,
                memory_mib,
                boot: BootSource::Kernel {
                    kernel: guest::KERNEL_IMAGE.into(),
                    initrd: Some(guest::INITRD_IMAGE.into()),
                    cmdline: "console=ttyS0 no_timer_check".into(),
                },
                disks: Vec::new(),
                nics: Vec::new(),
                ha: Default::default(),
            },
            host: host.map(str::to_string),
            start: true,
        }
    }

    /// A request for a VM as [`Lab::guest_vm_request`] makes it, with one NIC on `network`
    /// that the guest configures as `address` says: the address goes both into the NIC (so the
    /// console's IPAM and the switch know it) and onto the kernel command line (so the guest's
    /// init sets it), or the guest asks its host's switch by DHCP.
    pub fn guest_nic_vm_request(
        name: &str,
        memory_mib: u64,
        host: Option<&str>,
        network: &str,
        address: GuestAddress,
    ) -> CreateVmRequest {
        let mut req = Self::guest_vm_request(name, memory_mib, host);
        if let BootSource::Kernel { cmdline, .. } = &mut req.spec.boot {
            cmdline.push(' ');
            cmdline.push_str(&address.kernel_arg());
        }
        req.spec.nics = vec![NicSpec {
            network: network.to_string(),
            mac: None,
            ip: address.requested_ip().map(|ip| ip.to_string()),
            ..Default::default()
        }];
        req
    }

    /// The static address `ip` on `network`, with the prefix length of the network's subnet and
    /// its gateway as the console has them.
    pub fn static_address(&self, network: &str, ip: Ipv4Addr) -> Result<GuestAddress, LabError> {
        let net = self.api()?.network(network)?.network;
        let subnet = Ipv4Subnet::parse(&net.subnet).map_err(|source| LabError::Subnet {
            network: net.name,
            source,
        })?;
        let gateway = net.gateway.as_deref().and_then(|g| g.parse().ok());
        Ok(GuestAddress::Static {
            ip,
            prefix: subnet.prefix(),
            gateway,
        })
    }

    /// Creates (and starts) a VM booting the guest image.
    pub fn create_guest_vm(
        &self,
        name: &str,
        memory_mib: u64,
        host: Option<&str>,
    ) -> Result<VmSummary, LabError> {
        let req = Self::guest_vm_request(name, memory_mib, host);
        Ok(self.api()?.create_vm(&req)?)
    }

    /// Waits until the serial console of `vm` contains `needle`; returns the console text.
    pub fn wait_console(
        &self,
        vm: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, LabError> {
        let client = self.api()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(log) = client.console_log(vm, Some(65536)) {
                if log.text.contains(needle) {
                    return Ok(log.text);
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("'{needle}' on the console of VM {vm}"),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Processes, hosts and VMs of the lab.
    pub fn status(&self) -> LabStatus {
        let mut processes = vec![ProcessStatus {
            name: "console".into(),
            pid: self.console_pid(),
            alive: process::alive(self.console_pid()),
        }];
        for h in &self.state.hosts {
            let pid = self.agent_pid(&h.name).unwrap_or(h.pid);
            processes.push(ProcessStatus {
                name: h.name.clone(),
                pid,
                alive: process::alive(pid),
            });
            let pid = self.switch_pid(&h.name).unwrap_or(h.switch_pid);
            processes.push(ProcessStatus {
                name: format!("{} switch", h.name),
                pid,
                alive: process::alive(pid),
            });
            let pid = self.guard_pid(&h.name).unwrap_or(h.guard_pid);
            processes.push(ProcessStatus {
                name: format!("{} guard", h.name),
                pid,
                alive: process::alive(pid),
            });
        }
        if self.state.phys_namespace.is_some() {
            let pid = self.tor_pid();
            processes.push(ProcessStatus {
                name: "phys switch".into(),
                pid,
                alive: process::alive(pid),
            });
        }
        if self.state.upstream.is_some() {
            let pid = self.internet_service_pid();
            processes.push(ProcessStatus {
                name: "internet service".into(),
                pid,
                alive: process::alive(pid),
            });
        }
        let listed = self.api().and_then(|c| {
            Ok(Listed {
                hosts: c.hosts()?,
                vms: c.vms()?,
            })
        });
        LabStatus {
            state: self.state.clone(),
            processes,
            listed,
        }
    }

    /// Stops everything (console, agents, switches, guards, QEMUs, the internet service),
    /// deletes the namespaces and removes the root.
    pub fn down(self) -> Result<(), LabError> {
        cleanup(&self.state.name, &self.state.root, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names() {
        for ok in ["lab", "t1", "a-b"] {
            assert!(validate_lab_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Lab", "a/b", "../x", "much-too-long-name", "-a"] {
            assert!(validate_lab_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_round_trips() {
        let state = LabState {
            name: "lab".into(),
            root: "/var/lib/vinfra-lab/lab".into(),
            url: "https://127.0.0.1:7443".into(),
            api_port: 7443,
            token_file: "/t".into(),
            ca_file: "/c".into(),
            console_pid: 1,
            underlay_namespace: "vl-lab-ul".into(),
            hosts: vec![HostState {
                name: "h1".into(),
                namespace: "vl-lab-h1".into(),
                address: Ipv4Addr::new(10, 77, 0, 11),
                data_dir: "/d".into(),
                pid: 2,
                switch_pid: 3,
                guard_pid: 4,
            }],
            vinfra_binary: "/usr/bin/vinfra".into(),
            host_memory_mib: None,
            host_cores: Some(2),
            phys_namespace: Some("vl-lab-phys".into()),
            tor_pid: 4,
            endpoints: vec![VlanEndpoint {
                vlan_id: 100,
                address: "10.81.0.1/24".into(),
                tap: "ep100".into(),
                port: tor_access_port(100),
            }],
            upstream: Some(Upstream::new("lab", 200, "10.82.0.254/24", "10.250.0.1/24").unwrap()),
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<LabState>(&text).unwrap(), state);
        // A state written before the physical network existed still loads, without it.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in ["phys_namespace", "tor_pid", "endpoints", "upstream"] {
            old.as_object_mut().unwrap().remove(field);
        }
        let old: LabState = serde_json::from_value(old).unwrap();
        assert_eq!(
            (old.phys_namespace, old.tor_pid, old.endpoints.len()),
            (None, 0, 0)
        );
        assert_eq!(old.upstream, None);
    }

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(shell_quote("h1"), "'h1'");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote("it's $HOME `x`")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME `x`");
    }

    #[test]
    fn guest_request_is_valid() {
        Lab::guest_vm_request("vm-1", 128, None)
            .spec
            .validate()
            .unwrap();
    }

    #[test]
    fn guest_nic_requests_tell_the_guest_its_address() {
        let cmdline = |r: &CreateVmRequest| match &r.spec.boot {
            BootSource::Kernel { cmdline, .. } => cmdline.clone(),
            BootSource::Disk => panic!("a kernel boot"),
        };
        let ip = Ipv4Addr::new(10, 80, 1, 20);
        let r = Lab::guest_nic_vm_request(
            "b",
            128,
            Some("h2"),
            "blue",
            GuestAddress::Static {
                ip,
                prefix: 24,
                gateway: None,
            },
        );
        r.spec.validate().unwrap();
        assert_eq!(
            cmdline(&r),
            "console=ttyS0 no_timer_check vinfra.ip=10.80.1.20/24"
        );
        assert_eq!(r.spec.nics.len(), 1);
        assert_eq!(r.spec.nics[0].network, "blue");
        assert_eq!(r.spec.nics[0].ip.as_deref(), Some("10.80.1.20"));
        let r = Lab::guest_nic_vm_request("a", 128, None, "blue", GuestAddress::Dhcp);
        r.spec.validate().unwrap();
        assert_eq!(cmdline(&r), "console=ttyS0 no_timer_check vinfra.dhcp=1");
        assert_eq!(r.spec.nics[0].ip, None);
    }

    #[test]
    fn load_missing_lab() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Lab::load_from(dir.path()),
            Err(LabError::NotFound(_))
        ));
    }
}
