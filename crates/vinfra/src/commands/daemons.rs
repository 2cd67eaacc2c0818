//! `vinfra console`, `vinfra agent`, `vinfra switch` and `vinfra guard`: the long-running
//! processes (console and agent each on one tokio runtime).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::parse;

/// `vinfra console`.
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
    /// The shared datastore directory, where the console reads the hosts' leases
    /// (`<datastore>/ha/hosts/<host>.lease`, written by each host's `vinfra guard`).
    #[arg(long)]
    pub datastore: Option<PathBuf>,
    /// A REST API client's TLS handshake and each request's head must arrive within this;
    /// a connection idle this long is closed.
    #[arg(long, default_value = "15s", value_parser = parse_timeout)]
    pub api_header_timeout: Duration,
    /// A request's whole body must arrive within this (408 otherwise).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub api_body_timeout: Duration,
    /// REST API connections served at once; as many more wait for a slot (up to the header
    /// timeout), past those a new connection is closed at once.
    #[arg(long, default_value_t = vinfra_console::API_MAX_CONNECTIONS,
          value_parser = |s: &str| parse::bounded(s, "api-max-connections", 1, 65536).map(|n| n as usize))]
    pub api_max_connections: usize,
    /// Each API token's request rate: RATE per second sustained with bursts of BURST
    /// (default 5 x RATE), or `off` (429 with Retry-After past it).
    #[arg(long, default_value = "200/1000", value_parser = parse_rate_limit)]
    pub api_rate_limit: RateLimitArg,
    /// Validity of the host certificates the console signs (at join and renewal); hosts renew
    /// theirs once 2/3 of it passed. 10 s to 10 years.
    #[arg(long, default_value = "365days", value_parser = cert_validity)]
    pub host_cert_validity: Duration,
    /// Validity of the console's own server certificate (REST API and agent endpoint),
    /// renewed in place once 2/3 of it passed. 10 s to 10 years.
    #[arg(long, default_value = "365days", value_parser = cert_validity)]
    pub server_cert_validity: Duration,
}

/// A parsed `--api-rate-limit`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitArg(pub Option<vinfra_console::api::limits::RateLimit>);

fn parse_rate_limit(s: &str) -> Result<RateLimitArg, String> {
    vinfra_console::api::limits::RateLimit::parse(s)
        .map(RateLimitArg)
        .map_err(|e| e.to_string())
}

/// A timeout of at least 100 ms and at most an hour.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("{s}: between 100ms and 1h"));
    }
    Ok(d)
}

/// A certificate validity: a duration (`30s`, `90d`, `365days`) from 10 s to 10 years.
fn cert_validity(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration (e.g. 30s, 90d, 365days): {e}"))?;
    let (min, max) = (
        vinfra_console::pki::Validity::MIN,
        vinfra_console::pki::Validity::MAX,
    );
    if d < min || d > max {
        return Err(format!("'{text}' is out of range: 10 s to 10 years"));
    }
    Ok(d)
}

/// A step of `vinfra ca-rotate`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CaRotateStep {
    /// Make a new CA and trust it besides the current one (hosts renew and get both).
    Begin,
    /// Issue from the new CA; the old one stays trusted (hosts renew onto the new CA).
    Switch,
    /// Stop trusting the old CA.
    Finish,
}

/// `vinfra ca-rotate`.
#[derive(Debug, Args)]
pub struct CaRotateArgs {
    /// Which step.
    #[arg(value_enum)]
    pub step: CaRotateStep,
    /// The console's data directory.
    #[arg(long, default_value = "/var/lib/vinfra/console")]
    pub data_dir: PathBuf,
}

/// `vinfra switch`.
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
    /// Poll the ports without ever sleeping: lowest latency, one core kept busy.
    #[arg(long)]
    pub busy_poll: bool,
    /// Forward everything in the daemon: no kernel fast path for established flows between
    /// local VM taps and interface ports.
    #[arg(long)]
    pub no_fast_path: bool,
}

/// `vinfra guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// This host's name (its lease is `<datastore>/ha/hosts/<host>.lease`).
    #[arg(long)]
    pub host: String,
    /// The shared datastore directory.
    #[arg(long)]
    pub datastore: PathBuf,
    /// Control socket the agent connects to.
    #[arg(long, default_value = vinfra_guard::DEFAULT_CONTROL)]
    pub control: PathBuf,
    /// Lease renewal period until the agent's first pet brings the cluster's timings.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, hide = true)]
    pub renew: Duration,
    /// Self-fence deadline until the agent's first pet.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, hide = true)]
    pub self_fence_after: Duration,
    /// How long the agent may be absent until its first pet.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, hide = true)]
    pub agent_grace: Duration,
}

/// `vinfra agent`.
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
    /// Time between two reads of the host's state: a report is sent when it changed, else every
    /// fourth time.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, hide = true)]
    pub report_interval: Duration,
    /// Time between two heartbeats to the console (its liveness; the console's heartbeat
    /// timeout is 3 s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, hide = true)]
    pub heartbeat: Duration,
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
    /// How VM NICs reach the switch: `tap` (a tap the switch creates and QEMU opens, with the
    /// guest's checksum and TCP segmentation offloads) or `dgram` (Unix datagram sockets, no
    /// offloads). Every host of a cluster must use the same: a VM migrates only between hosts
    /// whose NICs offer it the same offloads.
    #[arg(long, value_enum, default_value_t = VmNicPortsArg::Tap)]
    pub vm_nic_ports: VmNicPortsArg,
    /// Control socket of this host's `vinfra guard`: QEMUs are started through it (they die
    /// with it, never with the agent) and it is told every second how the host's console
    /// contact is. Without it QEMUs run in sessions of their own and HA cannot protect this
    /// host's VMs.
    #[arg(long)]
    pub guard: Option<PathBuf>,
    /// Run QEMUs as the agent's own user (root), without a user, files and cgroups of their
    /// own: a guest that escapes QEMU then has the host. For development only.
    #[arg(long)]
    pub unconfined: bool,
    /// VM slot N's QEMU runs as user and group BASE + N (slots from the console, the same on
    /// every host; 2^28 users from BASE on must be free on every host).
    #[arg(long, default_value_t = vinfra_agent::confine::DEFAULT_UID_BASE,
          value_parser = |s: &str| parse::bounded(s, "vm-uid-base", 65_536, u64::from(u32::MAX - vinfra_agent::confine::SLOTS)).map(|n| n as u32))]
    pub vm_uid_base: u32,
    /// The cgroup, under the root of each cgroup hierarchy, that holds a cgroup `vm-<id>` per
    /// VM (default `vinfra.slice/<host name>`).
    #[arg(long)]
    pub cgroup_parent: Option<PathBuf>,
    /// Size of a VM's serial log, MiB, past which it is rotated to `serial.log.1` (one
    /// previous part kept).
    #[arg(long, default_value_t = 8,
          value_parser = |s: &str| parse::bounded(s, "serial-log-max-mib", 1, 4096))]
    pub serial_log_max_mib: u64,
    /// Serve `GET /metrics` (Prometheus text: the host's VMs, the console session, the
    /// switch's counters) over plain HTTP at this address, without authentication: give a
    /// management or loopback address (`127.0.0.1:9101`); an unspecified one (`0.0.0.0`) is
    /// refused. Default: no metrics listener.
    #[arg(long, env = "VINFRA_AGENT_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `vinfra agent --vm-nic-ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VmNicPortsArg {
    /// A tap per NIC, with offloads.
    Tap,
    /// A pair of Unix datagram sockets per NIC.
    Dgram,
}

/// Why a daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The console failed.
    #[error("console")]
    Console(#[source] vinfra_console::ConsoleError),
    /// The agent failed.
    #[error("agent")]
    Agent(#[source] vinfra_agent::AgentError),
    /// The switch failed.
    #[error("switch")]
    Switch(#[source] vinfra_switchd::SwitchdError),
    /// The guard failed.
    #[error("guard")]
    Guard(#[source] vinfra_guard::GuardError),
    /// A CA rotation step failed.
    #[error("CA rotation")]
    CaRotate(#[source] vinfra_console::pki::ConsolePkiError),
}

/// Takes a step of a CA rotation on the console's data directory and says what it did.
pub fn ca_rotate(a: &CaRotateArgs) -> Result<(), DaemonError> {
    use vinfra_console::pki::RotationStep;
    let step = match a.step {
        CaRotateStep::Begin => RotationStep::Begin,
        CaRotateStep::Switch => RotationStep::Switch,
        CaRotateStep::Finish => RotationStep::Finish,
    };
    let done = vinfra_console::pki::rotate_ca(&a.data_dir, step).map_err(DaemonError::CaRotate)?;
    println!("{done}");
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, DaemonError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)
}

/// Runs the console until SIGTERM or ctrl-c.
pub fn console(a: &ConsoleArgs) -> Result<(), DaemonError> {
    vinfra_console::without_huge_pages();
    let config = vinfra_console::ConsoleConfig {
        data_dir: a.data_dir.clone(),
        api_listen: a.listen,
        agent_listen: a.agent_listen,
        agent_listen_netns: a.agent_listen_netns.clone(),
        advertise_names: a.advertise.clone(),
        token_file: a.token_file.clone(),
        tls: !a.no_tls,
        datastore: a.datastore.clone(),
        cert_validity: vinfra_console::pki::Validity {
            host: a.host_cert_validity,
            server: a.server_cert_validity,
        },
        api_limits: vinfra_console::ApiLimits {
            header_timeout: a.api_header_timeout,
            body_timeout: a.api_body_timeout,
            max_connections: a.api_max_connections,
            rate: a.api_rate_limit.0,
        },
        ..vinfra_console::ConsoleConfig::new(a.data_dir.clone())
    };
    runtime()?
        .block_on(vinfra_console::run(config))
        .map_err(DaemonError::Console)
}

/// Runs the agent until it is stopped.
pub fn agent(a: &AgentArgs) -> Result<(), DaemonError> {
    let config = vinfra_agent::AgentConfig {
        data_dir: a.data_dir.clone(),
        console: a.console.clone(),
        join_token: a.join_token.clone(),
        host_name: a.name.clone(),
        address: a.address,
        datastore: a.datastore.clone(),
        cores: a.cores,
        memory_mib: a.memory_mib,
        qemu_binary: a.qemu.clone(),
        report_interval: a.report_interval,
        heartbeat: a.heartbeat,
        switch_control: a.switch_control.clone(),
        underlay_ip: a.underlay_ip,
        underlay_mtu: a.underlay_mtu,
        trunk_interface: a.trunk_interface.clone(),
        vm_nic_ports: match a.vm_nic_ports {
            VmNicPortsArg::Tap => vinfra_agent::network::VmNicPorts::Tap,
            VmNicPortsArg::Dgram => vinfra_agent::network::VmNicPorts::Dgram,
        },
        guard: a.guard.clone(),
        confinement: (!a.unconfined).then(|| vinfra_agent::confine::ConfineSettings {
            uid_base: a.vm_uid_base,
            cgroup_parent: a.cgroup_parent.clone().unwrap_or_else(|| {
                PathBuf::from(vinfra_agent::confine::DEFAULT_CGROUP_PARENT).join(&a.name)
            }),
            serial_log_max: a.serial_log_max_mib << 20,
        }),
        metrics_listen: a.metrics_listen,
    };
    runtime()?
        .block_on(vinfra_agent::run(config))
        .map_err(DaemonError::Agent)
}

/// Runs the virtual switch (its own threads, no async runtime) until it fails.
pub fn switch(a: &SwitchArgs) -> Result<(), DaemonError> {
    let config = vinfra_switchd::SwitchdConfig {
        control: a.control.clone(),
        underlay_ip: a.underlay_ip,
        underlay_mtu: a.underlay_mtu,
        busy_poll: a.busy_poll,
        fast_path: !a.no_fast_path,
    };
    vinfra_switchd::run(config).map_err(DaemonError::Switch)
}

/// Runs the host's guard (its own threads, no async runtime) until a release ends it.
pub fn guard(a: &GuardArgs) -> Result<(), DaemonError> {
    let mut config = vinfra_guard::GuardConfig::new(a.host.clone(), a.datastore.clone());
    config.control = a.control.clone();
    config.timings.renew = a.renew;
    config.timings.self_fence_after = a.self_fence_after;
    config.timings.agent_grace = a.agent_grace;
    vinfra_guard::run(config).map_err(DaemonError::Guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vinfra agent` alone.
    #[derive(Debug, Parser)]
    struct Agent {
        #[command(flatten)]
        args: AgentArgs,
    }

    fn agent(extra: &[&str]) -> Result<AgentArgs, String> {
        let mut argv = vec![
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
        Agent::try_parse_from(argv)
            .map(|a| a.args)
            .map_err(|e| e.to_string())
    }

    fn underlay_mtu(extra: &[&str]) -> Result<u16, String> {
        agent(extra).map(|a| a.underlay_mtu)
    }

    #[test]
    fn the_agent_runs_under_a_guard_only_when_told() {
        assert_eq!(agent(&[]).unwrap().guard, None);
        assert_eq!(
            agent(&["--guard", "/run/vinfra/guard.sock"]).unwrap().guard,
            Some(PathBuf::from("/run/vinfra/guard.sock"))
        );
    }

    /// `vinfra guard` alone.
    #[derive(Debug, Parser)]
    struct Guard {
        #[command(flatten)]
        args: GuardArgs,
    }

    #[test]
    fn the_guard_starts_with_the_default_timings() {
        let g = Guard::try_parse_from(["guard", "--host", "h1", "--datastore", "/ds"])
            .unwrap()
            .args;
        assert_eq!(g.control, PathBuf::from(vinfra_guard::DEFAULT_CONTROL));
        let t = vinfra_ha::HaTimings::default();
        assert_eq!(
            (g.renew, g.self_fence_after, g.agent_grace),
            (t.renew, t.self_fence_after, t.agent_grace)
        );
        let g = Guard::try_parse_from([
            "guard",
            "--host",
            "h1",
            "--datastore",
            "/ds",
            "--renew",
            "100ms",
        ])
        .unwrap()
        .args;
        assert_eq!(g.renew, Duration::from_millis(100));
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
