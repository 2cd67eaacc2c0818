//! The command line (clap). Values are checked here, by the parsers in [`crate::parse`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vinfra_types::{DiskSpec, NicSpec};

use crate::parse;

const AFTER_HELP: &str = "\
Connection: --url/--token/--ca, else VINFRA_URL/VINFRA_TOKEN/VINFRA_CA, else the config file
(--config, VINFRA_CONFIG, ~/.config/vinfra/config.toml or /etc/vinfra/cli.toml: lines
url = \"...\", token = \"...\", ca = \"...\"). The URL defaults to https://127.0.0.1:7443.

Exit codes: 0 success; 2 usage error or bad input (bad arguments, missing token, a request the
console refused with a 4xx problem, e.g. unknown VM or not enough capacity); 1 anything else
(console unreachable or failing with 5xx, failed migration, local I/O). Errors are one line on
stderr: `vinfra: <message>`.";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    Table,
    /// The API's JSON body.
    Json,
}

/// vinfra: an open virtualization platform (console, per-host agents, QEMU VMs).
#[derive(Debug, Parser)]
#[command(name = "vinfra", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Base URL of the console's REST API.
    #[arg(long, global = true, env = "VINFRA_URL")]
    pub url: Option<String>,
    /// API bearer token.
    #[arg(long, global = true, env = "VINFRA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Cluster CA certificate (PEM) to trust.
    #[arg(long, global = true, env = "VINFRA_CA")]
    pub ca: Option<PathBuf>,
    /// Config file (default ~/.config/vinfra/config.toml, then /etc/vinfra/cli.toml).
    #[arg(long, global = true, env = "VINFRA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the console (REST API, agent endpoint, controllers).
    Console(ConsoleArgs),
    /// Run a host agent.
    Agent(AgentArgs),
    /// Run the host's virtual switch (programmed by the agent over its control socket).
    Switch(SwitchArgs),
    /// A whole cluster on this machine, in network namespaces (root only).
    #[command(subcommand)]
    Lab(LabCommand),
    /// Hypervisor hosts.
    #[command(subcommand)]
    Host(HostCommand),
    /// Cluster settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// One-time tokens for joining hosts.
    #[command(subcommand, name = "join-token")]
    JoinToken(JoinTokenCommand),
    /// The API token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCommand),
    /// The event history.
    Events,
    /// Automatic balancing: status, settings, passes, recommendations.
    #[command(subcommand)]
    Drs(crate::drs::DrsCommand),
    /// Placement rules (affinity, anti-affinity, run on, not on).
    #[command(subcommand)]
    Rule(crate::drs::RuleCommand),
    /// Logical networks (overlay or VLAN) and where their ports live.
    #[command(subcommand)]
    Net(crate::net::NetCommand),
    /// Run the balancer on a cluster scenario file and write metrics and a plot (no console).
    Sim(crate::sim::SimArgs),
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Data directory (store, CA, tokens).
    #[arg(long, default_value = "/var/lib/vinfra/console")]
    pub data_dir: PathBuf,
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Address of the agent endpoint (mutual TLS).
    #[arg(long, default_value = "0.0.0.0:7444")]
    pub agent_listen: SocketAddr,
    /// Network namespace to open the agent endpoint in.
    #[arg(long)]
    pub agent_listen_netns: Option<String>,
    /// Name or address put in the console's certificate (repeatable).
    #[arg(long = "advertise")]
    pub advertise: Vec<String>,
    /// File the first API token is written to (mode 0600).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve the REST API over plain HTTP (for debugging only).
    #[arg(long)]
    pub no_tls: bool,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Control socket the agent connects to.
    #[arg(long, default_value = "/run/vinfra/switch.sock")]
    pub control: PathBuf,
    /// This host's underlay (VTEP) address: opens the VXLAN uplink (UDP 4789) as port 0.
    #[arg(long)]
    pub underlay_ip: Option<std::net::Ipv4Addr>,
    /// IP MTU of the underlay; overlay ports get at most this minus 50.
    #[arg(long, default_value_t = 1500)]
    pub underlay_mtu: u16,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address of the console's agent endpoint, HOST:PORT.
    #[arg(long)]
    pub console: String,
    /// This host's name.
    #[arg(long)]
    pub name: String,
    /// This host's address (for migrations).
    #[arg(long)]
    pub address: IpAddr,
    /// The shared datastore directory.
    #[arg(long)]
    pub datastore: PathBuf,
    /// Data directory (certificates, VM records).
    #[arg(long, default_value = "/var/lib/vinfra/agent")]
    pub data_dir: PathBuf,
    /// One-time join token (first start only).
    #[arg(long, env = "VINFRA_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Cores to report (default: all).
    #[arg(long, value_parser = |s: &str| parse::bounded(s, "cores", 1, 4096).map(|n| n as u32))]
    pub cores: Option<u32>,
    /// Memory to report, MiB (default: all).
    #[arg(long, value_parser = |s: &str| parse::bounded(s, "memory-mib", 64, 1 << 34))]
    pub memory_mib: Option<u64>,
    /// QEMU binary.
    #[arg(long = "qemu", default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// Heartbeat interval.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, hide = true)]
    pub report_interval: Duration,
    /// Control socket of this host's `vinfra switch` (VMs with NICs need it).
    #[arg(long)]
    pub switch_control: Option<PathBuf>,
    /// This host's underlay (VXLAN tunnel endpoint) address, for overlay networks.
    #[arg(long)]
    pub underlay_ip: Option<std::net::Ipv4Addr>,
    /// IP MTU of this host's underlay (the uplink the agent adds to its switch; a switch with an
    /// uplink of its own reports that one's instead): the console places a VM with a NIC on an
    /// overlay network only where this is at least the network's MTU + 50.
    #[arg(long, default_value_t = 1500,
          value_parser = |s: &str| parse::bounded(s, "underlay-mtu", 576, 65_535).map(|n| n as u16))]
    pub underlay_mtu: u16,
    /// This host's interface to the physical network, an 802.1Q trunk that carries the VLAN
    /// networks (VMs with NICs on VLAN networks run only on hosts with a trunk).
    #[arg(long, requires = "switch_control", value_parser = parse::interface)]
    pub trunk_interface: Option<String>,
}

#[derive(Debug, Args)]
pub struct LabTarget {
    /// Lab name (prefix of its namespaces).
    #[arg(long, default_value = "lab")]
    pub name: String,
    /// State directory (default /var/lib/vinfra-lab/NAME).
    #[arg(long)]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build and start the lab, then boot sample VMs.
    Up {
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
    },
    /// Show the lab's processes, hosts and VMs.
    Status(LabTarget),
    /// Stop everything and remove the lab.
    Down(LabTarget),
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts.
    List,
    /// Show a host: CPU and memory allocated, allocatable, physical and used.
    Show {
        name: String,
        /// Show the host's virtual switch instead: counters per network, per VM NIC port, of
        /// the VXLAN uplink and the VLAN trunk, and drops by reason.
        #[arg(long)]
        switch: bool,
    },
    /// Change a host's ratio override or maintenance mode.
    Set {
        name: String,
        /// vCPUs per core on this host.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        cpu_ratio: Option<f64>,
        /// Guest memory per physical memory on this host.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        memory_ratio: Option<f64>,
        /// Remove the override (use the cluster default).
        #[arg(long, conflicts_with_all = ["cpu_ratio", "memory_ratio"])]
        clear_ratios: bool,
        /// Maintenance mode: no new VMs are placed on the host.
        #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
        maintenance: Option<bool>,
    },
    /// Forget a host (it must have no VMs).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show the cluster settings.
    Show,
    /// Change the default allocation ratios and the live-migration tuning.
    Set {
        /// vCPUs per physical core.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        cpu_ratio: Option<f64>,
        /// Guest memory per physical memory.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        memory_ratio: Option<f64>,
        /// Bandwidth cap of a live migration per second: `100M`, `1G` (a plain number is MiB),
        /// or `unlimited`.
        #[arg(long, value_parser = parse::migration_bandwidth, allow_hyphen_values = true, value_name = "SIZE|unlimited")]
        migration_bandwidth: Option<parse::Bandwidth>,
        /// Longest pause at a migration's switchover: `300ms`, `1s` (a plain number is ms),
        /// 10ms to 60s.
        #[arg(long, value_parser = parse::migration_downtime, allow_hyphen_values = true, value_name = "DURATION")]
        migration_downtime: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Create a one-time join token for a new host.
    Create,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Replace the API token (the current one stops working).
    Rotate,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Virtual CPUs (1-256).
    #[arg(long, value_parser = parse::vcpus, allow_hyphen_values = true)]
    pub vcpus: u32,
    /// Memory: 512M, 2G, … (a plain number is MiB).
    #[arg(long, value_parser = parse::memory_mib, allow_hyphen_values = true)]
    pub memory: u64,
    /// Host to place the VM on (default: the console picks).
    #[arg(long)]
    pub host: Option<String>,
    /// Kernel file in the datastore's images/ (direct kernel boot).
    #[arg(long, conflicts_with = "boot_disk")]
    pub kernel: Option<String>,
    /// Initrd file in the datastore's images/.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<String>,
    /// Kernel command line.
    #[arg(long, requires = "kernel", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// Boot from the first disk.
    #[arg(long)]
    pub boot_disk: bool,
    /// A disk: name=NAME[,image=FILE][,size=10G] (repeatable).
    #[arg(long, value_parser = parse::disk)]
    pub disk: Vec<DiskSpec>,
    /// A NIC: NETWORK[,ip=A.B.C.D][,mac=xx:xx:…] (repeatable).
    #[arg(long, value_parser = parse::nic)]
    pub nic: Vec<NicSpec>,
    /// Create the VM without starting it.
    #[arg(long)]
    pub no_start: bool,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// List VMs.
    List,
    /// Show a VM.
    Show { name: String },
    /// Create a VM (and start it unless --no-start).
    Create(Box<CreateArgs>),
    /// Start a VM.
    Start { name: String },
    /// Stop a VM (ACPI power button, then forced after the timeout).
    Stop {
        name: String,
        /// Power off at once.
        #[arg(long)]
        force: bool,
        /// How long the guest may take to power off (e.g. 30s, 2m).
        #[arg(long, value_parser = parse::stop_timeout, allow_hyphen_values = true)]
        timeout: Option<Duration>,
    },
    /// Reboot a VM.
    Reboot { name: String },
    /// Delete a VM and its disks.
    Delete { name: String },
    /// Live-migrate a VM (shows progress until it ends).
    Migrate {
        name: String,
        /// Destination host (default: the console picks).
        #[arg(long, conflicts_with = "cancel")]
        to: Option<String>,
        /// Cancel the VM's running migration.
        #[arg(long)]
        cancel: bool,
        /// Return once the migration has started.
        #[arg(long)]
        no_wait: bool,
    },
    /// Print the end of a VM's serial console.
    Console {
        name: String,
        /// How many bytes from the end.
        #[arg(long, default_value_t = 16384, value_parser = |s: &str| parse::bounded(s, "bytes", 1, 16 << 20))]
        bytes: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn underlay_mtu(extra: &[&str]) -> Result<u16, String> {
        let mut argv = vec![
            "vinfra",
            "agent",
            "--console",
            "10.0.0.1:7444",
            "--name",
            "h1",
            "--address",
            "10.0.0.2",
            "--datastore",
            "/ds",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Agent(a),
                ..
            }) => Ok(a.underlay_mtu),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_agent_takes_its_underlay_mtu() {
        assert_eq!(underlay_mtu(&[]), Ok(1500));
        assert_eq!(underlay_mtu(&["--underlay-mtu", "9000"]), Ok(9000));
        for bad in ["575", "65536", "x"] {
            let e = underlay_mtu(&["--underlay-mtu", bad]).unwrap_err();
            assert!(e.contains("underlay-mtu"), "{bad}: {e}");
        }
    }
}
