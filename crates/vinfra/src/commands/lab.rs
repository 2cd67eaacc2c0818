//! `vinfra lab up|status|fence|down`: a whole cluster on this machine (see the `vinfra-lab`
//! crate).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use vinfra_lab::{Lab, LabConfig, LabError};
use vinfra_types::error::Chain;

use crate::output::{self, out, Output};
use crate::parse;

/// Which lab: its name and state directory.
#[derive(Debug, Args)]
pub struct LabTarget {
    /// Lab name (prefix of its namespaces).
    #[arg(long, default_value = "lab")]
    pub name: String,
    /// State directory (default /var/lib/vinfra-lab/NAME).
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// `vinfra lab …`.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build and start the lab, then boot sample VMs.
    Up {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// Number of hosts.
        #[arg(long, default_value_t = 3, value_parser = |s: &str| parse::bounded(s, "hosts", 1, 64).map(|n| n as usize))]
        hosts: usize,
        /// Port of the REST API on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 7443, value_parser = |s: &str| parse::bounded(s, "api-port", 0, 65535).map(|n| n as u16))]
        api_port: u16,
        /// Memory each host reports, e.g. 4G.
        #[arg(long, value_parser = parse::memory_mib, allow_hyphen_values = true)]
        host_memory: Option<u64>,
        /// Cores each host reports.
        #[arg(long, value_parser = |s: &str| parse::bounded(s, "host-cores", 1, 4096).map(|n| n as u32))]
        host_cores: Option<u32>,
        /// Where the guest image is built.
        #[arg(long, default_value = "/var/cache/vinfra/guest")]
        guest_image_dir: PathBuf,
        /// Sample VMs to boot (128 MiB each).
        #[arg(long, default_value_t = 3, value_parser = |s: &str| parse::bounded(s, "vms", 0, 64).map(|n| n as usize))]
        vms: usize,
        /// Leave out the upstream router, its internet and the VLAN network `external`.
        #[arg(long)]
        no_upstream: bool,
    },
    /// Show the lab's processes, hosts and VMs.
    Status(LabTarget),
    /// Kill every process in a host's network namespace (agent, switch, QEMUs): each lab host's
    /// fence command, which the console runs to power the host off.
    Fence {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The host (h1, h2, …).
        host: String,
    },
    /// Stop everything and remove the lab.
    Down(LabTarget),
}

/// Memory of each sample VM, MiB.
const SAMPLE_VM_MIB: u64 = 128;
/// The sample VLAN network: name, VLAN ID, subnet, and the address of its physical endpoint
/// (also the network's gateway).
const SAMPLE_VLAN: (&str, u16, &str, &str) = ("vlan100", 100, "10.81.0.0/24", "10.81.0.1");

/// The upstream router and the VLAN network it is the gateway of.
struct UpstreamSample {
    /// The VLAN network's name.
    network: &'static str,
    /// Its VLAN ID.
    vlan_id: u16,
    /// Its subnet.
    subnet: &'static str,
    /// The upstream router's address on it (the network's gateway).
    gateway: &'static str,
    /// The upstream router's address towards the internet, with its prefix.
    internet: &'static str,
}

/// The upstream router `vinfra lab up` adds: the gateway of the VLAN network `external`.
const UPSTREAM: UpstreamSample = UpstreamSample {
    network: "external",
    vlan_id: 200,
    subnet: "10.82.0.0/24",
    gateway: "10.82.0.254",
    internet: "10.250.0.1/24",
};

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabCommandError {
    /// The lab itself failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The path of the running executable is unknown.
    #[error("cannot find the vinfra executable")]
    Exe(#[source] std::io::Error),
    /// A sample VM could not be created.
    #[error("the lab is up, but sample VM {name} could not be created")]
    SampleVm {
        /// The sample VM.
        name: String,
        /// What went wrong.
        #[source]
        source: LabError,
    },
    /// The sample VLAN network or its physical endpoint could not be created.
    #[error("the lab is up, but the sample VLAN network could not be created")]
    SampleVlan(#[source] LabError),
    /// The upstream router or its VLAN network could not be created.
    #[error(
        "the lab is up, but its upstream router or the network {} could not be created",
        UPSTREAM.network
    )]
    Upstream(#[source] LabError),
}

/// Creates the sample VLAN network and its physical endpoint on the top-of-rack switch.
fn sample_vlan(lab: &mut Lab) -> Result<(), LabError> {
    let (name, vid, subnet, endpoint) = SAMPLE_VLAN;
    lab.add_vlan_endpoint(vid, &format!("{endpoint}/24"))?;
    let req = vinfra_types::network::CreateNetworkRequest {
        name: name.into(),
        kind: vinfra_types::network::NetworkKind::Vlan,
        vni: None,
        vlan_id: Some(u32::from(vid)),
        subnet: subnet.into(),
        gateway: Some(endpoint.into()),
        mtu: None,
    };
    lab.api()?.create_network(&req)?;
    Ok(())
}

/// Gives the lab its upstream router (and its internet) and creates the VLAN network whose
/// gateway it is.
fn upstream(lab: &mut Lab) -> Result<vinfra_lab::upstream::Upstream, LabError> {
    let u = &UPSTREAM;
    let prefix = u.subnet.split_once('/').map_or("24", |(_, p)| p);
    let router = lab.add_upstream(u.vlan_id, &format!("{}/{prefix}", u.gateway), u.internet)?;
    let req = vinfra_types::network::CreateNetworkRequest {
        name: u.network.into(),
        kind: vinfra_types::network::NetworkKind::Vlan,
        vni: None,
        vlan_id: Some(u32::from(u.vlan_id)),
        subnet: u.subnet.into(),
        gateway: Some(u.gateway.into()),
        mtu: None,
    };
    lab.api()?.create_network(&req)?;
    Ok(router)
}

impl LabCommandError {
    /// True when the user's input was at fault.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            LabCommandError::Lab(
                LabError::Name(_)
                    | LabError::Hosts(_)
                    | LabError::NotRoot
                    | LabError::NotFound(_)
                    | LabError::NoHost(_)
            )
        )
    }
}

fn root_of(t: &LabTarget) -> PathBuf {
    t.root
        .clone()
        .unwrap_or_else(|| vinfra_lab::default_root(&t.name))
}

/// Runs a lab command.
pub fn run(cmd: &LabCommand, out: Output) -> Result<(), LabCommandError> {
    match cmd {
        LabCommand::Up {
            target,
            hosts,
            api_port,
            host_memory,
            host_cores,
            guest_image_dir,
            vms,
            no_upstream,
        } => {
            vinfra_lab::validate_lab_name(&target.name)?;
            let exe = std::env::current_exe().map_err(LabCommandError::Exe)?;
            let mut config = LabConfig::new(&target.name, exe);
            config.root = root_of(target);
            config.hosts = *hosts;
            config.api_port = *api_port;
            config.host_memory_mib = *host_memory;
            config.host_cores = *host_cores;
            config.guest_image_dir = guest_image_dir.clone();
            eprintln!(
                "vinfra: bringing up lab {} ({} hosts) in {}",
                target.name,
                hosts,
                config.root.display()
            );
            let mut lab = Lab::up(config)?;
            sample_vlan(&mut lab).map_err(LabCommandError::SampleVlan)?;
            let router = if *no_upstream {
                None
            } else {
                Some(upstream(&mut lab).map_err(LabCommandError::Upstream)?)
            };
            let hosts = lab.host_names();
            for i in 1..=*vms {
                let name = format!("vm-{i}");
                // Spread the samples over the hosts explicitly so that each host runs one.
                let host = hosts.get((i - 1) % hosts.len().max(1)).map(String::as_str);
                lab.create_guest_vm(&name, SAMPLE_VM_MIB, host)
                    .map_err(|source| LabCommandError::SampleVm { name, source })?;
            }
            let c = lab.api_access()?;
            match out {
                Output::Json => {
                    let v = serde_json::json!({
                        "url": c.url, "token": c.token, "ca": c.ca_file, "state": lab.state(),
                    });
                    // A JSON value of strings and numbers always prints.
                    let _ = output::print_json(&v);
                }
                Output::Table => {
                    out!(
                        "lab {} is up: {} hosts, {} sample VMs",
                        lab.state().name,
                        hosts.len(),
                        vms
                    );
                    out!("API:   {}", c.url);
                    out!("token: {}", c.token);
                    out!("CA:    {}", c.ca_file.display());
                    for host in &hosts {
                        if let Ok(url) = lab.agent_metrics_url(host) {
                            out!(
                                "metrics of {host}: {url} (from its namespace: ip netns exec {} curl {url})",
                                lab.namespace_of(host).unwrap_or_default()
                            );
                        }
                    }
                    let (name, vid, subnet, endpoint) = SAMPLE_VLAN;
                    out!(
                        "VLAN network {name} (VLAN {vid}, {subnet}): a physical endpoint \
                         answers at {endpoint}"
                    );
                    if let Some(r) = &router {
                        out!(
                            "VLAN network {} (VLAN {}, {}): gateway {}, the upstream router \
                             ({}); the internet behind it is {} ({}), service on port {}",
                            UPSTREAM.network,
                            r.vlan_id,
                            UPSTREAM.subnet,
                            r.external.ip,
                            r.namespace,
                            r.internet.ip,
                            r.internet_namespace,
                            r.service_port
                        );
                    }
                    out!();
                    out!(
                        "export VINFRA_URL={} VINFRA_TOKEN={} VINFRA_CA={}",
                        c.url,
                        c.token,
                        c.ca_file.display()
                    );
                }
            }
            Ok(())
        }
        LabCommand::Status(target) => {
            let lab = Lab::load_from(&root_of(target))?;
            let status = lab.status();
            if out == Output::Json {
                let listed = status.listed.as_ref().ok();
                let v = serde_json::json!({
                    "state": status.state,
                    "processes": status.processes,
                    "hosts": listed.map(|l| &l.hosts),
                    "vms": listed.map(|l| &l.vms),
                });
                // A JSON value of strings and numbers always prints.
                let _ = output::print_json(&v);
                return Ok(());
            }
            out!(
                "lab {} in {}, API {}",
                status.state.name,
                status.state.root.display(),
                status.state.url
            );
            let mut t = output::table(&["PROCESS", "NAMESPACE", "PID", "RUNNING"]);
            for p in &status.processes {
                let ns = status
                    .state
                    .hosts
                    .iter()
                    .find(|h| p.name.split(' ').next() == Some(h.name.as_str()))
                    .map(|h| h.namespace.clone())
                    .or_else(|| {
                        (p.name == "phys switch")
                            .then(|| status.state.phys_namespace.clone())
                            .flatten()
                    })
                    .or_else(|| {
                        (p.name == "internet service")
                            .then(|| {
                                status
                                    .state
                                    .upstream
                                    .as_ref()
                                    .map(|u| u.internet_namespace.clone())
                            })
                            .flatten()
                    })
                    .unwrap_or_else(|| "(root)".into());
                t.add_row(vec![
                    p.name.clone(),
                    ns,
                    p.pid.to_string(),
                    if p.alive { "yes" } else { "no" }.into(),
                ]);
            }
            out!("\n{}", output::render(t));
            if let Some(u) = &status.state.upstream {
                let mut t = output::table(&["NAMESPACE", "ROLE", "ADDRESSES"]);
                let mut external = format!("{} (VLAN {})", u.external, u.vlan_id);
                for r in &u.routes {
                    external.push_str(&format!(", route {} via {}", r.destination, r.via));
                }
                t.add_row(vec![
                    u.namespace.clone(),
                    "upstream router".into(),
                    format!("{external}; {}", u.internet_gateway),
                ]);
                t.add_row(vec![
                    u.internet_namespace.clone(),
                    "internet".into(),
                    format!(
                        "{}, default via {}; service on port {}",
                        u.internet, u.internet_gateway.ip, u.service_port
                    ),
                ]);
                out!("\n{}", output::render(t));
            }
            match &status.listed {
                Ok(l) => {
                    out!("\n{}", output::hosts(&l.hosts));
                    out!("\n{}", output::vms(&l.vms));
                }
                Err(e) => out!("\nhosts and VMs: {}", Chain(e)),
            }
            Ok(())
        }
        LabCommand::Fence { target, host } => {
            let lab = Lab::load_from(&root_of(target))?;
            let killed = lab.fence(host)?;
            match out {
                Output::Json => {
                    let v = serde_json::json!({ "host": host, "killed": killed });
                    // A JSON value of strings and numbers always prints.
                    let _ = output::print_json(&v);
                }
                Output::Table => out!(
                    "host {host} of lab {} fenced: {} processes killed",
                    lab.state().name,
                    killed.len()
                ),
            }
            Ok(())
        }
        LabCommand::Down(target) => {
            let root = root_of(target);
            match Lab::load_from(&root) {
                Ok(lab) => lab.down()?,
                // Whatever is left of a lab that never finished coming up.
                Err(LabError::NotFound(_) | LabError::State { .. }) => {
                    Lab::destroy(&target.name, &root)?
                }
                Err(e) => return Err(e.into()),
            }
            if out == Output::Table {
                out!("lab {} is down", target.name);
            }
            Ok(())
        }
    }
}
