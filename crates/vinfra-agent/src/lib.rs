//! Host agent library: runs VMs as QEMU processes over QMP, re-adopts them, reports usage, talks to
//! the console.
//!
//! Modules, top to bottom (a module uses only those below it):
//! - [`metrics`]: `GET /metrics` (`--metrics-listen`): the VMs, the console session and the
//!   switch's counters, read at each scrape, in the Prometheus text format.
//! - [`connection`]: joining, the mutual-TLS session with the console (heartbeats, reports,
//!   requests), reconnects.
//! - [`handler`]: one console command → one manager call ([`handler::handle`]).
//! - [`guard`]: the host's guard: pets (console contact, HA VMs, the cluster's HA settings)
//!   every heartbeat period from a task of the agent, its state for reports.
//! - [`manager`]: the VM table (life cycle, migration, adoption after an agent restart).
//! - [`flows`]: the switch's flows every 10 s to the console and to an IPFIX collector
//!   ([`flows::ipfix`]: the encoder).
//! - [`network`]: the host's virtual switch: the desired configuration, VM NIC ports, replay
//!   after a switch restart, over [`vinfra_switch_control`].
//! - [`disks`]: what a VM boots from and its disks (qcow2 overlays, blank disks) in the shared
//!   datastore, in one answer.
//! - [`qemu`]: QEMU behind the [`qemu::VmRunner`] and [`qemu::QemuProcess`] traits, the real
//!   implementation over QMP and a fake for tests.
//! - [`probe`]: KVM or TCG, found by booting a probe guest (cached per QEMU version).
//! - [`usage`]: host and VM usage from `/proc`.
//! - [`ha`]: the cluster's HA settings for the guard, as the console sent them, kept in the
//!   data directory.
//! - [`files`]: atomic file writes.
//! - [`contact`]: the host's console contact (the last heartbeat the console acknowledged),
//!   kept by the session, read through [`Manager::contact`].
//!
//! QEMU runs daemonized (`-daemonize`), or with `--guard` as a child of the host's guard (which
//! writes its pidfile); either way its pidfile and QMP socket are in `<data_dir>/vms/<id>/` and
//! VMs keep running when the agent stops; [`manager::Manager::open`] finds them again.
#![deny(unsafe_code)]

pub mod confine;
pub mod connection;
pub mod contact;
pub mod disks;
pub mod files;
pub mod flows;
pub mod guard;
pub mod ha;
pub mod handler;
pub mod manager;
pub mod metrics;
pub mod network;
pub mod platform;
pub mod probe;
pub mod qemu;
pub mod usage;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use handler::handle;
pub use manager::{Manager, ManagerConfig, ManagerError};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Agent state: credentials, `accel.json`, `vms/`.
    pub data_dir: PathBuf,
    /// `host:port` of the console's agent endpoint.
    pub console: String,
    /// One-time join token, needed until the host has its certificate.
    pub join_token: Option<String>,
    /// This host's name (a DNS label).
    pub host_name: String,
    /// This host's address; incoming migrations listen here.
    pub address: IpAddr,
    /// Shared datastore root.
    pub datastore: PathBuf,
    /// Override of the logical CPU count reported.
    pub cores: Option<u32>,
    /// Override of the memory reported, MiB.
    pub memory_mib: Option<u64>,
    /// QEMU system emulator binary.
    pub qemu_binary: PathBuf,
    /// Time between two reports ([`connection::REPORT_INTERVAL`] by default).
    pub report_interval: Duration,
    /// Time between two heartbeats ([`connection::HEARTBEAT`] by default).
    pub heartbeat: Duration,
    /// Control socket of the host's virtual switch (`vinfra switch --control`); `None`: the host
    /// has no switch and VMs with NICs are refused.
    pub switch_control: Option<PathBuf>,
    /// This host's underlay (VXLAN tunnel endpoint) address, for overlay networks.
    pub underlay_ip: Option<Ipv4Addr>,
    /// IP MTU of this host's underlay: the uplink port's MTU when the agent opens it, and what
    /// the agent reports (the console places a VM with a NIC on an overlay network only where
    /// the underlay carries the network's MTU plus 50 bytes of VXLAN), unless the switch opened
    /// an uplink of its own: then that uplink's MTU is reported.
    pub underlay_mtu: u16,
    /// The interface of this host's 802.1Q trunk to the physical network, for VLAN networks
    /// (needs `switch_control`).
    pub trunk_interface: Option<String>,
    /// How VM NICs reach the switch (taps by default).
    pub vm_nic_ports: network::VmNicPorts,
    /// Control socket of the host's guard (`vinfra guard --control`): QEMUs are started through
    /// it (its children, they die with it) and it is petted every heartbeat period. `None`:
    /// QEMUs run in sessions of their own and HA cannot protect the host's VMs.
    pub guard: Option<PathBuf>,
    /// How each VM's QEMU is confined (its own user, files and cgroups; see [`confine`]);
    /// `None`: QEMUs run as the agent (`vinfra agent --unconfined`).
    pub confinement: Option<confine::ConfineSettings>,
    /// Where `GET /metrics` is served (plain HTTP, no authentication: a management or
    /// loopback address); `None`: no metrics listener.
    pub metrics_listen: Option<SocketAddr>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// the host name is not a valid name
    #[error("invalid host name")]
    HostName(#[from] vinfra_types::NameError),
    /// the data directory could not be created
    #[error("data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// another agent runs on the data directory
    #[error(transparent)]
    DataDirLock(#[from] vinfra_proto::datadir::DataDirLockError),
    /// QEMU is missing or unusable
    #[error(transparent)]
    Qemu(#[from] qemu::QemuError),
    /// the accelerator probe failed
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    /// the confinement settings are unusable
    #[error(transparent)]
    Confine(#[from] confine::ConfineError),
    /// host capacity could not be read
    #[error(transparent)]
    Usage(#[from] usage::UsageError),
    /// the VM table could not be opened
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// joining or connecting to the console failed
    #[error(transparent)]
    Connection(#[from] connection::ConnectionError),
    /// the metrics listener could not start
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// Runs the agent: probes the accelerator, re-adopts VMs, joins if needed, then serves the console
/// connection forever (reconnecting as needed).
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    vinfra_types::validate_name(&config.host_name)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // One agent per data directory: a second would start the same VMs again.
    let _dir_lock =
        vinfra_proto::datadir::lock(&config.data_dir, "agent", vinfra_proto::datadir::LOCK_WAIT)?;
    // Bound first: a bad address stops the agent before it does anything else.
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let qemu_version = qemu::qemu_version(&config.qemu_binary)?;
    let accel = probe::detect_accel(
        &config.qemu_binary,
        &qemu_version,
        &config.datastore,
        &config.data_dir,
        probe::PROBE_TIMEOUT,
    )
    .await?;
    tracing::info!("QEMU {qemu_version}, accelerator {accel:?}");
    // What VMs may run as here: the console places and moves them by it.
    let platform = match platform::probe_retrying(&config.qemu_binary, accel).await {
        Ok(p) => {
            tracing::info!(
                "CPU '{}', {} CPU models, machine types up to {}",
                p.cpu_name,
                p.cpu_models.len(),
                p.default_machine_type
            );
            Some(p)
        }
        Err(e) => {
            tracing::warn!(
                "QEMU did not say its CPU models and machine types ({}): the console places here \
                 only VMs created without them",
                vinfra_types::error::Chain(&e)
            );
            None
        }
    };
    // The same answer the console's placement reads from this host's accelerator and version.
    let loses_writes =
        vinfra_types::host::pads_guest_ram(Some(accel), Some(&qemu_version)) == Some(true);
    if loses_writes {
        tracing::warn!(
            "QEMU {qemu_version} under TCG can lose memory writes of a busy guest in a live \
             migration (fixed in QEMU 9.0): guests get 8 KiB of memory more, which avoids it; \
             such a VM moves live only to hosts whose QEMU is before 9.0 too"
        );
    }
    let capacity = usage::host_capacity(config.cores, config.memory_mib)?;
    let confiner = match &config.confinement {
        Some(settings) => {
            let c = confine::Confiner::new(settings.clone())?;
            if config.switch_control.is_some() && config.vm_nic_ports == network::VmNicPorts::Tap {
                c.open_tun_to_all()?;
            }
            Some(c)
        }
        None => {
            tracing::warn!(
                "QEMUs run unconfined, as the agent's user (--unconfined): a guest that \
                 escapes QEMU has the host"
            );
            None
        }
    };
    let runner = Arc::new(qemu::qmp::QemuRunner {
        binary: config.qemu_binary.clone(),
        accel,
        guard: config.guard.clone(),
    });
    let manager = Arc::new(
        Manager::open(ManagerConfig {
            data_dir: config.data_dir.clone(),
            datastore: config.datastore.clone(),
            address: config.address,
            runner,
            switch: config
                .switch_control
                .clone()
                .map(|control| network::SwitchAttachment {
                    control,
                    underlay_ip: config.underlay_ip,
                    underlay_mtu: config.underlay_mtu,
                    trunk_interface: config.trunk_interface.clone(),
                    vm_nic_ports: config.vm_nic_ports,
                }),
        })
        .await?
        .with_fewest_migration_passes(loses_writes)
        .with_padded_ram(loses_writes)
        .with_nic_uso(qemu::process::virtio_net_offers_uso(&qemu_version))
        .with_platform(platform.clone())
        .with_confinement(confiner),
    );
    if let Some(listener) = metrics_listener {
        tracing::info!(
            "metrics on http://{}/metrics",
            config
                .metrics_listen
                .map_or(String::new(), |a| a.to_string())
        );
        tokio::spawn(metrics::serve(listener, manager.clone()));
    }
    if manager.confiner().is_some() {
        tokio::spawn(manager.clone().tend_confinement(confine::TEND_INTERVAL));
    }
    // Pets start before the console is reached (it may not be for a long time).
    let guard = config.guard.clone().map(guard::GuardLink::new);
    if let Some(link) = &guard {
        tracing::info!("QEMUs run under the guard at {}", link.control().display());
        guard::spawn_pets(manager.clone(), link.clone(), config.heartbeat);
    }
    let creds = connection::ensure_credentials_retrying(
        &config.data_dir,
        &config.console,
        &config.host_name,
        config.join_token.as_deref(),
    )
    .await?;
    let info = connection::HostInfo {
        host: config.host_name.clone(),
        address: config.address.to_string(),
        qemu_version,
        capacity,
        platform,
        guard,
    };
    // The switch's flows every 10 s, to the IPFIX collector and to the console when connected
    // (nothing from a switch that does not count them).
    if let Some(link) = manager.switch() {
        tokio::spawn(flows::send_flows(
            link.clone(),
            manager.flow_export().clone(),
            config.host_name.clone(),
            manager.flow_sink().clone(),
            flows::FLOW_INTERVAL,
        ));
    }
    connection::connect_loop(
        &config.console,
        &creds,
        manager,
        &info,
        connection::SessionTiming {
            report_interval: config.report_interval,
            heartbeat: config.heartbeat,
            unchanged_every: connection::UNCHANGED_EVERY,
        },
    )
    .await?;
    Ok(())
}
