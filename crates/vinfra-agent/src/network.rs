//! The host's virtual switch as the agent sees it: the desired configuration (the console's
//! [`HostSwitchConfig`] plus the ports of this host's VM NICs), kept in memory and in
//! `<data_dir>/switch.json`, and [`SwitchLink`], which makes the switch match it.
//!
//! The switch is never trusted to remember anything: every reconcile reads the switch's
//! configuration (`get_config`), computes the requests that turn it into the desired one
//! ([`plan`]) and applies them. A restarted switch starts empty, so the first reconcile after a
//! restart replays everything. A background task reconciles every [`RECONCILE_INTERVAL`];
//! changes (a new configuration, a VM's ports) reconcile at once.
//!
//! What the agent adds to the console's configuration:
//! - the VXLAN uplink on its underlay address (port [`UPLINK_PORT`]), unless the switch opened it
//!   itself (`vinfra switch --underlay-ip`);
//! - the 802.1Q trunk on the host's interface to the physical network (`vinfra agent
//!   --trunk-interface`), port [`TRUNK_PORT`], which carries the VLAN networks;
//! - one VM port per NIC of each VM that runs here (or waits for an incoming migration), a
//!   QEMU `-netdev dgram` pair of Unix sockets in the VM's directory;
//! - a static MAC entry per local NIC (MAC → its port). Console entries for MACs that are local
//!   or that point at this host's own underlay address are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vinfra_proto::{HostSwitchConfig, SwitchDhcp, SwitchNetwork, SwitchNetworkKind};
use vinfra_switch_control::{
    Attachment, ClientError, CountersView, DhcpSpec, LocationSpec, Mac, NetworkSpec, PortSpec,
    Request, SwitchClient, TrafficView, UPLINK_PORT,
};
use vinfra_types::network::{
    HostSwitchCounters, SwitchNetworkCounters, SwitchPortCounters, TrafficCounters,
};
use vinfra_types::NicSpec;

/// How often the background task checks the switch (and replays after a restart).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a reconcile waits for the control socket to accept (a switch that is restarting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one control request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest Unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Largest port number the switch accepts.
const MAX_PORT: u32 = 65_535;
/// Smallest IP MTU accepted for a network.
const MIN_MTU: u16 = 576;
/// The switch port number of the VLAN trunk: reserved, never given to a VM NIC (VM ports are
/// allocated from 1 up, the uplink is [`UPLINK_PORT`]).
pub const TRUNK_PORT: u32 = MAX_PORT;
/// IP MTU of the trunk (the console assumes 1500 for VLAN networks).
pub const TRUNK_MTU: u16 = 1500;

/// How the agent reaches its host's switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSettings {
    /// The switch's control socket.
    pub control: PathBuf,
    /// This host's underlay (VTEP) address; needed for overlay networks.
    pub underlay_ip: Option<Ipv4Addr>,
    /// IP MTU of the underlay (the uplink port's MTU when the agent opens it).
    pub underlay_mtu: u16,
    /// The interface of the host's 802.1Q trunk to the physical network; needed for VLAN
    /// networks. The agent adds it to the switch as port [`TRUNK_PORT`].
    pub trunk_interface: Option<String>,
}

impl SwitchSettings {
    /// Settings for the switch at `control`, without an underlay address, underlay MTU 1500.
    pub fn new(control: impl Into<PathBuf>) -> SwitchSettings {
        SwitchSettings {
            control: control.into(),
            underlay_ip: None,
            underlay_mtu: 1500,
            trunk_interface: None,
        }
    }
}

/// Errors of the switch link.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A VM has NICs, or a configuration has networks, but the agent has no switch.
    #[error("this host has no virtual switch (the agent runs without --switch-control)")]
    NoSwitch,
    /// The configuration from the console is inconsistent.
    #[error("invalid switch configuration: {0}")]
    Config(String),
    /// A NIC cannot be attached.
    #[error("NIC {index}: {reason}")]
    Nic {
        /// Position of the NIC in the VM specification.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Every port number is in use.
    #[error("no free switch port number")]
    PortsExhausted,
    /// The switch could not be reached or did not answer.
    #[error("switch at {path}")]
    Switch {
        /// The control socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The switch refused part of the configuration.
    #[error("the switch refused: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// The saved configuration could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One NIC of a VM as attached on this host (kept in the VM's record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNic {
    /// Network name.
    pub network: String,
    /// MAC address.
    pub mac: String,
    /// IP MTU given to the guest (`host_mtu` of the virtio-net device).
    pub mtu: u16,
    /// The switch's port number.
    pub port: u32,
    /// The socket the switch binds (QEMU's `remote.path`).
    pub switch_socket: PathBuf,
    /// The socket QEMU binds (its `local.path`).
    pub qemu_socket: PathBuf,
}

/// What a reconcile did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Requests applied.
    pub applied: usize,
    /// Requests the switch refused, with its reasons.
    pub refused: Vec<(Request, String)>,
}

impl Outcome {
    /// The refusals as an error, if any.
    pub fn into_result(self) -> Result<Outcome, NetworkError> {
        if self.refused.is_empty() {
            Ok(self)
        } else {
            Err(NetworkError::Refused(refusal_messages(&self.refused)))
        }
    }
}

fn refusal_messages(refused: &[(Request, String)]) -> Vec<String> {
    refused
        .iter()
        .map(|(r, m)| format!("{}: {m}", serde_json::to_string(r).unwrap_or_default()))
        .collect()
}

#[derive(Default)]
struct Desired {
    config: HostSwitchConfig,
    vms: BTreeMap<Uuid, Vec<VmNic>>,
}

/// The agent's side of its host's switch: the desired configuration and the control connection.
pub struct SwitchLink {
    settings: SwitchSettings,
    state_file: PathBuf,
    desired: Mutex<Desired>,
    client: Mutex<Option<SwitchClient>>,
    healthy: Mutex<Option<bool>>,
    /// The MTU of an uplink the switch opened itself (`vinfra switch --underlay-ip`), as it
    /// last said: what this host's underlay carries, whatever the agent was told.
    switch_uplink_mtu: Mutex<Option<u16>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse_mac(s: &str) -> Result<Mac, String> {
    let mac: Mac = s
        .parse()
        .map_err(|e: vinfra_switch_control::BadMac| e.to_string())?;
    if mac.0[0] & 1 != 0 {
        return Err(format!("{s} is not a unicast MAC address"));
    }
    Ok(mac)
}

/// Checks a configuration from the console: unique names, numbers, VNIs and VIDs; entries that
/// name configured networks and parse.
pub fn validate(config: &HostSwitchConfig) -> Result<(), NetworkError> {
    let err = |m: String| Err(NetworkError::Config(m));
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut vnis = BTreeSet::new();
    let mut vids = BTreeSet::new();
    for n in &config.networks {
        if vinfra_types::validate_name(&n.name).is_err() {
            return err(format!("network name {:?} is not a DNS label", n.name));
        }
        if !names.insert(n.name.as_str()) {
            return err(format!("network {} appears twice", n.name));
        }
        if !ids.insert(n.id) {
            return err(format!("network number {} appears twice", n.id));
        }
        match n.kind {
            SwitchNetworkKind::Overlay { vni } => {
                // VXLAN's VNI is 24 bits; the console never hands out 0.
                if vni == 0 || vni >= 1 << 24 {
                    return err(format!(
                        "network {}: VNI {vni} is out of range (1 to 16777215)",
                        n.name
                    ));
                }
                if !vnis.insert(vni) {
                    return err(format!(
                        "network {}: VNI {vni} is used by another network",
                        n.name
                    ));
                }
                if n.flood
                    .iter()
                    .any(|ip| ip.is_unspecified() || ip.is_broadcast())
                {
                    return err(format!("network {}: bad flood address", n.name));
                }
            }
            SwitchNetworkKind::Vlan { vid } => {
                if !(1..=4094).contains(&vid) || !vids.insert(vid) {
                    return err(format!(
                        "network {}: VLAN {vid} is invalid or reused",
                        n.name
                    ));
                }
                if !n.flood.is_empty() {
                    return err(format!("network {}: a VLAN has no flood list", n.name));
                }
            }
        }
        if n.mtu < MIN_MTU {
            return err(format!(
                "network {}: MTU {} is below {MIN_MTU}",
                n.name, n.mtu
            ));
        }
    }
    let network = |name: &str| config.networks.iter().find(|n| n.name == name);
    let mut macs = BTreeSet::new();
    for m in &config.macs {
        let Some(n) = network(&m.network) else {
            return err(format!("MAC entry {}: no network {}", m.mac, m.network));
        };
        if !matches!(n.kind, SwitchNetworkKind::Overlay { .. }) {
            return err(format!(
                "MAC entry {}: network {} is a VLAN",
                m.mac, m.network
            ));
        }
        let mac = parse_mac(&m.mac).map_err(NetworkError::Config)?;
        if !macs.insert((n.id, mac)) {
            return err(format!("MAC {} appears twice in {}", m.mac, m.network));
        }
    }
    let mut arps = BTreeSet::new();
    for a in &config.arps {
        let Some(n) = network(&a.network) else {
            return err(format!("ARP entry {}: no network {}", a.ip, a.network));
        };
        parse_mac(&a.mac).map_err(NetworkError::Config)?;
        if !arps.insert((n.id, a.ip)) {
            return err(format!("ARP entry {} appears twice in {}", a.ip, a.network));
        }
    }
    Ok(())
}

fn network_spec(kind: SwitchNetworkKind) -> NetworkSpec {
    match kind {
        SwitchNetworkKind::Overlay { vni } => NetworkSpec::Overlay { vni },
        SwitchNetworkKind::Vlan { vid } => NetworkSpec::Vlan { vid },
    }
}

/// Lease time the switch's DHCP responder hands out.
const DHCP_LEASE_SECS: u32 = 3600;

fn dhcp_spec(d: &SwitchDhcp) -> DhcpSpec {
    DhcpSpec {
        prefix_len: d.prefix_len,
        gateway: d.gateway,
        server: Some(d.server),
        mtu: Some(d.mtu),
        lease_secs: DHCP_LEASE_SECS,
    }
}

/// The requests of the whole desired configuration, in an order that applies: networks, the
/// uplink (unless `uplink_builtin`), the trunk, VM ports, flood lists, MAC entries, ARP entries, DHCP
/// responders.
fn desired_requests(
    config: &HostSwitchConfig,
    vms: &BTreeMap<Uuid, Vec<VmNic>>,
    settings: &SwitchSettings,
    uplink_builtin: bool,
) -> Vec<Request> {
    let by_name: BTreeMap<&str, &SwitchNetwork> = config
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    let mut out: Vec<Request> = config
        .networks
        .iter()
        .map(|n| Request::AddNetwork {
            id: u32::from(n.id),
            kind: network_spec(n.kind),
        })
        .collect();
    if let (Some(local_ip), false) = (settings.underlay_ip, uplink_builtin) {
        out.push(Request::AddPort(PortSpec {
            id: UPLINK_PORT,
            mtu: settings.underlay_mtu,
            attach: Attachment::VxlanUplink { local_ip },
        }));
    }
    if let Some(interface) = &settings.trunk_interface {
        out.push(Request::AddPort(PortSpec {
            id: TRUNK_PORT,
            mtu: TRUNK_MTU,
            attach: Attachment::VlanTrunk {
                interface: interface.clone(),
            },
        }));
    }
    // Local NICs whose network is configured, by port number.
    let mut nics: Vec<(&VmNic, &SwitchNetwork)> = vms
        .values()
        .flatten()
        .filter_map(|nic| by_name.get(nic.network.as_str()).map(|n| (nic, *n)))
        .collect();
    nics.sort_by_key(|(nic, _)| nic.port);
    out.extend(nics.iter().map(|(nic, n)| {
        Request::AddPort(PortSpec {
            id: nic.port,
            mtu: n.mtu,
            attach: Attachment::Vm {
                network: u32::from(n.id),
                socket: nic.switch_socket.clone(),
                peer: nic.qemu_socket.clone(),
            },
        })
    }));
    for n in &config.networks {
        if let SwitchNetworkKind::Overlay { .. } = n.kind {
            let mut vteps: Vec<Ipv4Addr> = n
                .flood
                .iter()
                .copied()
                .filter(|ip| Some(*ip) != settings.underlay_ip)
                .collect();
            vteps.sort();
            vteps.dedup();
            out.push(Request::SetFloodList {
                network: u32::from(n.id),
                vteps,
            });
        }
    }
    let mut macs: BTreeMap<(u32, Mac), LocationSpec> = BTreeMap::new();
    for m in &config.macs {
        let (Some(n), Ok(mac)) = (by_name.get(m.network.as_str()), parse_mac(&m.mac)) else {
            continue;
        };
        if Some(m.host_ip) != settings.underlay_ip {
            macs.insert((u32::from(n.id), mac), LocationSpec::Vtep(m.host_ip));
        }
    }
    // Local NICs win over what the console believed (a VM that just arrived here).
    for (nic, n) in &nics {
        if let Ok(mac) = parse_mac(&nic.mac) {
            macs.insert((u32::from(n.id), mac), LocationSpec::Port(nic.port));
        }
    }
    out.extend(
        macs.into_iter()
            .map(|((network, mac), location)| Request::AddMacEntry {
                network,
                mac,
                location,
            }),
    );
    let mut arps: BTreeMap<(u32, Ipv4Addr), Mac> = BTreeMap::new();
    for a in &config.arps {
        if let (Some(n), Ok(mac)) = (by_name.get(a.network.as_str()), parse_mac(&a.mac)) {
            arps.insert((u32::from(n.id), a.ip), mac);
        }
    }
    out.extend(
        arps.into_iter()
            .map(|((network, ip), mac)| Request::AddArpEntry { network, ip, mac }),
    );
    out.extend(config.networks.iter().filter_map(|n| {
        n.dhcp.as_ref().map(|d| Request::SetDhcp {
            network: u32::from(n.id),
            config: Some(dhcp_spec(d)),
        })
    }));
    out
}

fn port_network(spec: &PortSpec) -> Option<u32> {
    match &spec.attach {
        Attachment::Vm { network, .. } | Attachment::Host { network, .. } => Some(*network),
        Attachment::VxlanUplink { .. } | Attachment::VlanTrunk { .. } => None,
    }
}

/// The requests that turn the switch's configuration `current` (as `get_config` reports it)
/// into `desired`: removals first (DHCP responders no longer wanted on a network that stays,
/// ARP entries, MAC entries, ports, networks; a network that goes takes everything on it along,
/// to be re-added if still wanted), then every desired
/// request the switch does not have yet, in `desired`'s order. Requests that the agent does not
/// manage (`set_settings`, `set_vtep_mac`) are left alone.
pub fn plan(current: &[Request], desired: &[Request]) -> Vec<Request> {
    let wanted = |r: &Request| desired.contains(r);
    let gone_networks: BTreeSet<u32> = current
        .iter()
        .filter_map(|r| match r {
            Request::AddNetwork { id, .. } if !wanted(r) => Some(*id),
            _ => None,
        })
        .collect();
    let gone_ports: BTreeSet<u32> = current
        .iter()
        .filter_map(|r| match r {
            Request::AddPort(p)
                if !wanted(r) || port_network(p).is_some_and(|n| gone_networks.contains(&n)) =>
            {
                Some(p.id)
            }
            _ => None,
        })
        .collect();
    let stays = |r: &Request| {
        wanted(r)
            && match r {
                Request::AddPort(p) => !gone_ports.contains(&p.id),
                Request::AddMacEntry {
                    network, location, ..
                } => {
                    !gone_networks.contains(network)
                        && !matches!(location, LocationSpec::Port(p) if gone_ports.contains(p))
                }
                Request::AddArpEntry { network, .. }
                | Request::SetFloodList { network, .. }
                | Request::SetDhcp { network, .. } => !gone_networks.contains(network),
                _ => true,
            }
    };
    let dhcp_wanted = |network: u32| {
        desired
            .iter()
            .any(|r| matches!(r, Request::SetDhcp { network: n, config: Some(_) } if *n == network))
    };
    let kept: Vec<&Request> = current.iter().filter(|r| stays(r)).collect();
    let mut out = Vec::new();
    for phase in 0..4 {
        for r in current.iter().filter(|r| !kept.contains(r)) {
            let undo = match (phase, r) {
                (0, Request::SetDhcp { network, .. })
                    if !gone_networks.contains(network) && !dhcp_wanted(*network) =>
                {
                    Request::SetDhcp {
                        network: *network,
                        config: None,
                    }
                }
                (0, Request::AddArpEntry { network, ip, .. }) => Request::RemoveArpEntry {
                    network: *network,
                    ip: *ip,
                },
                (1, Request::AddMacEntry { network, mac, .. }) => Request::RemoveMacEntry {
                    network: *network,
                    mac: *mac,
                },
                (2, Request::AddPort(p)) => Request::RemovePort { id: p.id },
                (3, Request::AddNetwork { id, .. }) => Request::RemoveNetwork { id: *id },
                _ => continue,
            };
            out.push(undo);
        }
    }
    out.extend(desired.iter().filter(|r| !kept.contains(r)).cloned());
    out
}

impl SwitchLink {
    /// Opens the link: loads the saved configuration from `<data_dir>/switch.json` (empty when
    /// absent). Does not connect yet.
    pub fn open(settings: SwitchSettings, data_dir: &Path) -> Result<SwitchLink, NetworkError> {
        let state_file = data_dir.join("switch.json");
        let config = match std::fs::read(&state_file) {
            Ok(bytes) => match serde_json::from_slice::<HostSwitchConfig>(&bytes) {
                Ok(c) if validate(&c).is_ok() => c,
                _ => {
                    tracing::warn!(
                        "{}: unreadable switch configuration, ignored",
                        state_file.display()
                    );
                    HostSwitchConfig::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostSwitchConfig::default(),
            Err(source) => {
                return Err(NetworkError::Io {
                    path: state_file,
                    source,
                })
            }
        };
        Ok(SwitchLink {
            settings,
            state_file,
            desired: Mutex::new(Desired {
                config,
                vms: BTreeMap::new(),
            }),
            client: Mutex::new(None),
            healthy: Mutex::new(None),
            switch_uplink_mtu: Mutex::new(None),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &SwitchSettings {
        &self.settings
    }

    /// This host's underlay IP MTU: the switch's own uplink's when the switch opened one (as
    /// of the last reconcile), else the agent's setting (`--underlay-mtu`), which the uplink
    /// the agent adds gets.
    pub fn underlay_mtu(&self) -> u16 {
        lock(&self.switch_uplink_mtu).unwrap_or(self.settings.underlay_mtu)
    }

    /// The configuration last received from the console.
    pub fn config(&self) -> HostSwitchConfig {
        lock(&self.desired).config.clone()
    }

    /// Validates, keeps and saves a new configuration (it is applied by the next reconcile).
    pub fn set_config(&self, config: HostSwitchConfig) -> Result<(), NetworkError> {
        validate(&config)?;
        if self.settings.underlay_ip.is_none()
            && config
                .networks
                .iter()
                .any(|n| matches!(n.kind, SwitchNetworkKind::Overlay { .. }))
        {
            return Err(NetworkError::Config(
                "overlay networks need the host's underlay address (--underlay-ip)".into(),
            ));
        }
        let text = serde_json::to_vec_pretty(&config).map_err(|e| NetworkError::Io {
            path: self.state_file.clone(),
            source: e.into(),
        })?;
        let mut desired = lock(&self.desired);
        crate::manager::write_atomic(&self.state_file, &text).map_err(|source| {
            NetworkError::Io {
                path: self.state_file.clone(),
                source,
            }
        })?;
        desired.config = config;
        Ok(())
    }

    /// Records the NICs of a VM found on disk (agent restart), keeping its port numbers.
    pub fn restore(&self, id: Uuid, nics: Vec<VmNic>) {
        if !nics.is_empty() {
            lock(&self.desired).vms.insert(id, nics);
        }
    }

    /// Allocates ports for VM `id`'s NICs (reusing the ones it has) and adds them to the desired
    /// configuration; the sockets live in `dir`. Applied by the next reconcile.
    pub fn attach(
        &self,
        id: Uuid,
        dir: &Path,
        nics: &[NicSpec],
    ) -> Result<Vec<VmNic>, NetworkError> {
        let mut desired = lock(&self.desired);
        let mut used: BTreeSet<u32> = desired
            .vms
            .iter()
            .filter(|(vm, _)| **vm != id)
            .flat_map(|(_, ns)| ns.iter().map(|n| n.port))
            .collect();
        used.insert(UPLINK_PORT);
        used.insert(TRUNK_PORT);
        let previous = desired.vms.get(&id).cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(nics.len());
        for (index, spec) in nics.iter().enumerate() {
            let nic_err = |reason: String| NetworkError::Nic { index, reason };
            let network = desired
                .config
                .networks
                .iter()
                .find(|n| n.name == spec.network)
                .ok_or_else(|| {
                    nic_err(format!(
                        "network {} is not configured on this host's switch",
                        spec.network
                    ))
                })?;
            if matches!(network.kind, SwitchNetworkKind::Vlan { .. })
                && self.settings.trunk_interface.is_none()
            {
                return Err(nic_err(format!(
                    "network {} is a VLAN and this host has no trunk (the agent runs without \
                     --trunk-interface)",
                    spec.network
                )));
            }
            let mac_text = spec
                .mac
                .as_deref()
                .ok_or_else(|| nic_err("no MAC address assigned".into()))?;
            let mac = parse_mac(mac_text).map_err(nic_err)?;
            let clash = desired
                .vms
                .iter()
                .filter(|(vm, _)| **vm != id)
                .flat_map(|(_, ns)| ns)
                .chain(out.iter())
                .any(|n| n.network == spec.network && parse_mac(&n.mac) == Ok(mac));
            if clash {
                return Err(nic_err(format!(
                    "MAC {mac} is already used on network {} here",
                    spec.network
                )));
            }
            let port = match previous.get(index) {
                Some(p) if !used.contains(&p.port) => p.port,
                _ => (1..=MAX_PORT)
                    .find(|p| !used.contains(p))
                    .ok_or(NetworkError::PortsExhausted)?,
            };
            used.insert(port);
            let qemu_socket = dir.join(format!("nic{index}.sock"));
            let switch_socket = dir.join(format!("nic{index}.switch.sock"));
            for p in [&qemu_socket, &switch_socket] {
                if p.as_os_str().len() > MAX_SOCKET_PATH {
                    return Err(nic_err(format!(
                        "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                        p.display()
                    )));
                }
            }
            out.push(VmNic {
                network: spec.network.clone(),
                mac: mac.to_string(),
                mtu: network.mtu,
                port,
                switch_socket,
                qemu_socket,
            });
        }
        if out.is_empty() {
            desired.vms.remove(&id);
        } else {
            desired.vms.insert(id, out.clone());
        }
        Ok(out)
    }

    /// Removes VM `id`'s ports from the desired configuration (applied by the next reconcile).
    pub fn detach(&self, id: Uuid) {
        lock(&self.desired).vms.remove(&id);
    }

    /// Makes the switch match the desired configuration now (blocking). Connection problems are
    /// errors (and the next call reconnects); refused requests are reported in the [`Outcome`]
    /// after everything else was applied.
    pub fn reconcile(&self) -> Result<Outcome, NetworkError> {
        let mut slot = lock(&self.client);
        let result = self.reconcile_on(&mut slot);
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|source| NetworkError::Switch {
            path: self.settings.control.clone(),
            source,
        })
    }

    fn reconcile_on(&self, slot: &mut Option<SwitchClient>) -> Result<Outcome, ClientError> {
        let client = match slot {
            Some(c) => c,
            None => {
                let c = SwitchClient::connect_within(&self.settings.control, CONNECT_TIMEOUT)?;
                c.set_timeout(Some(REQUEST_TIMEOUT))?;
                slot.insert(c)
            }
        };
        let current = client.config()?;
        // An uplink the switch has but its configuration does not list is the switch's own.
        let switch_uplink = if current
            .iter()
            .any(|r| matches!(r, Request::AddPort(p) if p.id == UPLINK_PORT))
        {
            None
        } else {
            client.counters()?.port(UPLINK_PORT).cloned()
        };
        *lock(&self.switch_uplink_mtu) = switch_uplink.as_ref().and_then(|p| p.mtu);
        let uplink_builtin = self.settings.underlay_ip.is_some() && switch_uplink.is_some();
        let desired = {
            let d = lock(&self.desired);
            desired_requests(&d.config, &d.vms, &self.settings, uplink_builtin)
        };
        let steps = plan(&current, &desired);
        let mut outcome = Outcome::default();
        for step in steps {
            match client.apply(std::slice::from_ref(&step)) {
                Ok(()) => outcome.applied += 1,
                Err(ClientError::Refused { message, .. }) => {
                    outcome.refused.push((step, message));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }

    /// Reads the switch's counters now (blocking) and names them in the cluster's terms:
    /// networks by name, VM ports by VM id and NIC index, and the uplink. Ports and networks the
    /// agent does not know (not configured, or not yet removed) are left out.
    pub fn counters(&self) -> Result<HostSwitchCounters, NetworkError> {
        let mut slot = lock(&self.client);
        let result = (|| {
            let client = match &mut *slot {
                Some(c) => c,
                None => {
                    let c = SwitchClient::connect_within(&self.settings.control, CONNECT_TIMEOUT)?;
                    c.set_timeout(Some(REQUEST_TIMEOUT))?;
                    slot.insert(c)
                }
            };
            client.counters()
        })();
        let view = match result {
            Ok(v) => v,
            Err(source) => {
                *slot = None;
                return Err(NetworkError::Switch {
                    path: self.settings.control.clone(),
                    source,
                });
            }
        };
        drop(slot);
        let d = lock(&self.desired);
        Ok(host_counters(&view, &d.config, &d.vms))
    }

    /// [`SwitchLink::reconcile`], logging what changed and when the switch comes and goes.
    pub fn reconcile_logged(&self) {
        let result = self.reconcile();
        let ok = result.is_ok();
        let was = lock(&self.healthy).replace(ok);
        match result {
            Ok(o) => {
                if o.applied > 0 {
                    tracing::info!(
                        "switch {}: applied {} configuration requests",
                        self.settings.control.display(),
                        o.applied
                    );
                }
                for m in refusal_messages(&o.refused) {
                    tracing::warn!("switch {}: refused {m}", self.settings.control.display());
                }
            }
            Err(e) if was != Some(false) => {
                tracing::warn!("{}", crate::manager::error_chain(&e));
            }
            Err(_) => {}
        }
    }
}

fn traffic(t: &TrafficView) -> TrafficCounters {
    TrafficCounters {
        rx_packets: t.rx_packets,
        rx_bytes: t.rx_bytes,
        tx_packets: t.tx_packets,
        tx_bytes: t.tx_bytes,
        drops: t.drops.clone(),
    }
}

/// The switch's counters named by the configuration: networks by name (switch number →
/// [`SwitchNetwork::name`]), VM ports by VM id and NIC index, the uplink port.
fn host_counters(
    view: &CountersView,
    config: &HostSwitchConfig,
    vms: &BTreeMap<Uuid, Vec<VmNic>>,
) -> HostSwitchCounters {
    let networks = config
        .networks
        .iter()
        .filter_map(|n| {
            view.network(u32::from(n.id))
                .map(|c| SwitchNetworkCounters {
                    network: n.name.clone(),
                    traffic: traffic(&c.traffic),
                    arp_suppressed: c.arp_suppressed,
                    flooded: c.flooded,
                    learning_refused: c.learning_refused,
                })
        })
        .collect();
    let ports = vms
        .iter()
        .flat_map(|(id, nics)| nics.iter().enumerate().map(move |(i, n)| (*id, i, n)))
        .filter_map(|(vm_id, nic, n)| {
            view.port(n.port).map(|c| SwitchPortCounters {
                vm_id,
                nic,
                network: n.network.clone(),
                mac: n.mac.clone(),
                port: n.port,
                traffic: traffic(&c.traffic),
                tx_errors: c.tx_errors,
                rx_errors: c.rx_errors,
            })
        })
        .collect();
    HostSwitchCounters {
        networks,
        ports,
        uplink: view.port(UPLINK_PORT).map(|c| traffic(&c.traffic)),
        trunk: view.port(TRUNK_PORT).map(|c| traffic(&c.traffic)),
        switch_drops: view.switch_drops.clone(),
    }
}

/// Reconciles `link` every [`RECONCILE_INTERVAL`] on the tokio runtime, until the link is
/// dropped.
pub fn spawn_reconciler(link: &Arc<SwitchLink>) {
    let weak = Arc::downgrade(link);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECONCILE_INTERVAL).await;
            let Some(link) = weak.upgrade() else {
                return;
            };
            if tokio::task::spawn_blocking(move || link.reconcile_logged())
                .await
                .is_err()
            {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinfra_proto::{SwitchArpEntry, SwitchMacEntry};

    fn settings() -> SwitchSettings {
        SwitchSettings {
            control: "/run/sw.sock".into(),
            underlay_ip: Some(Ipv4Addr::new(10, 0, 0, 1)),
            underlay_mtu: 1500,
            trunk_interface: None,
        }
    }

    fn config() -> HostSwitchConfig {
        HostSwitchConfig {
            networks: vec![
                SwitchNetwork {
                    name: "blue".into(),
                    id: 1,
                    kind: SwitchNetworkKind::Overlay { vni: 5001 },
                    mtu: 1450,
                    flood: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1)],
                    dhcp: Some(SwitchDhcp {
                        prefix_len: 24,
                        gateway: None,
                        server: Ipv4Addr::new(10, 90, 0, 254),
                        mtu: 1450,
                    }),
                },
                SwitchNetwork {
                    name: "red".into(),
                    id: 2,
                    kind: SwitchNetworkKind::Overlay { vni: 5002 },
                    mtu: 1450,
                    flood: vec![],
                    dhcp: None,
                },
            ],
            macs: vec![
                SwitchMacEntry {
                    network: "blue".into(),
                    mac: "52:54:00:00:00:02".into(),
                    host_ip: Ipv4Addr::new(10, 0, 0, 2),
                },
                // Points at this host: left out.
                SwitchMacEntry {
                    network: "blue".into(),
                    mac: "52:54:00:00:00:09".into(),
                    host_ip: Ipv4Addr::new(10, 0, 0, 1),
                },
            ],
            arps: vec![SwitchArpEntry {
                network: "blue".into(),
                ip: Ipv4Addr::new(10, 90, 0, 2),
                mac: "52:54:00:00:00:02".into(),
            }],
        }
    }

    fn nic(network: &str, mac: &str) -> NicSpec {
        NicSpec {
            network: network.into(),
            mac: Some(mac.into()),
            ip: None,
        }
    }

    fn link() -> (tempfile::TempDir, SwitchLink) {
        let dir = tempfile::tempdir().unwrap();
        let link = SwitchLink::open(settings(), dir.path()).unwrap();
        link.set_config(config()).unwrap();
        (dir, link)
    }

    fn desired(link: &SwitchLink, builtin: bool) -> Vec<Request> {
        let d = lock(&link.desired);
        desired_requests(&d.config, &d.vms, &link.settings, builtin)
    }

    /// Applies `requests` to a model of the switch's `get_config` answer.
    fn apply_model(state: &mut Vec<Request>, requests: &[Request]) {
        for r in requests {
            match r {
                Request::RemoveArpEntry { network, ip } => state.retain(|s| {
                    !matches!(s, Request::AddArpEntry { network: n, ip: i, .. } if n == network && i == ip)
                }),
                Request::RemoveMacEntry { network, mac } => state.retain(|s| {
                    !matches!(s, Request::AddMacEntry { network: n, mac: m, .. } if n == network && m == mac)
                }),
                Request::RemovePort { id } => state.retain(|s| match s {
                    Request::AddPort(p) => p.id != *id,
                    Request::AddMacEntry { location, .. } => *location != LocationSpec::Port(*id),
                    _ => true,
                }),
                Request::RemoveNetwork { id } => state.retain(|s| match s {
                    Request::AddNetwork { id: n, .. }
                    | Request::SetFloodList { network: n, .. }
                    | Request::AddMacEntry { network: n, .. }
                    | Request::AddArpEntry { network: n, .. }
                    | Request::SetDhcp { network: n, .. } => n != id,
                    Request::AddPort(p) => {
                        assert_ne!(port_network(p), Some(*id), "network removed with ports");
                        true
                    }
                    _ => true,
                }),
                Request::SetFloodList { network, .. } => {
                    state.retain(|s| !matches!(s, Request::SetFloodList { network: n, .. } if n == network));
                    state.push(r.clone());
                }
                Request::SetDhcp { network, config } => {
                    state.retain(|s| !matches!(s, Request::SetDhcp { network: n, .. } if n == network));
                    if config.is_some() {
                        state.push(r.clone());
                    }
                }
                other => {
                    assert!(!state.contains(other), "{other:?} applied twice");
                    state.push(other.clone());
                }
            }
        }
    }

    fn same(a: &[Request], b: &[Request]) -> bool {
        a.len() == b.len() && a.iter().all(|r| b.contains(r))
    }

    #[test]
    fn desired_configuration_adds_uplink_local_ports_and_entries() {
        let (dir, link) = link();
        let nics = link
            .attach(
                Uuid::from_u128(1),
                dir.path(),
                &[
                    nic("blue", "52:54:00:00:00:01"),
                    nic("red", "52:54:00:00:00:11"),
                ],
            )
            .unwrap();
        assert_eq!(nics.iter().map(|n| n.port).collect::<Vec<_>>(), [1, 2]);
        let d = desired(&link, false);
        assert!(
            matches!(&d[2], Request::AddPort(PortSpec { id: 0, .. })),
            "{d:#?}"
        );
        assert!(d.contains(&Request::SetFloodList {
            network: 1,
            vteps: vec![Ipv4Addr::new(10, 0, 0, 2)]
        }));
        assert!(d.contains(&Request::AddMacEntry {
            network: 1,
            mac: "52:54:00:00:00:01".parse().unwrap(),
            location: LocationSpec::Port(1)
        }));
        assert!(d.contains(&Request::AddMacEntry {
            network: 1,
            mac: "52:54:00:00:00:02".parse().unwrap(),
            location: LocationSpec::Vtep(Ipv4Addr::new(10, 0, 0, 2))
        }));
        assert!(!d.iter().any(|r| matches!(r,
            Request::AddMacEntry { mac, .. } if *mac == "52:54:00:00:00:09".parse().unwrap())));
        // A builtin uplink is not added again.
        assert!(!desired(&link, true)
            .iter()
            .any(|r| matches!(r, Request::AddPort(PortSpec { id: 0, .. }))));
        // Another VM gets the next free ports; the first keeps its own on a restart.
        let other = link
            .attach(
                Uuid::from_u128(2),
                dir.path(),
                &[nic("blue", "52:54:00:00:00:03")],
            )
            .unwrap();
        assert_eq!(other[0].port, 3);
        let again = link
            .attach(
                Uuid::from_u128(1),
                dir.path(),
                &[
                    nic("blue", "52:54:00:00:00:01"),
                    nic("red", "52:54:00:00:00:11"),
                ],
            )
            .unwrap();
        assert_eq!(again, nics);
    }

    #[test]
    fn trunk_is_a_reserved_port_of_the_desired_configuration_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut trunked = settings();
        trunked.trunk_interface = Some("trunk0".into());
        let link = SwitchLink::open(trunked, dir.path()).unwrap();
        let mut c = config();
        c.networks.push(SwitchNetwork {
            name: "v100".into(),
            id: 3,
            kind: SwitchNetworkKind::Vlan { vid: 100 },
            mtu: 1500,
            flood: vec![],
            dhcp: None,
        });
        link.set_config(c).unwrap();
        let nics = link
            .attach(
                Uuid::from_u128(1),
                dir.path(),
                &[nic("v100", "52:54:00:00:01:00")],
            )
            .unwrap();
        assert_eq!(nics[0].port, 1);
        let d = desired(&link, false);
        let trunk = Request::AddPort(PortSpec {
            id: TRUNK_PORT,
            mtu: TRUNK_MTU,
            attach: Attachment::VlanTrunk {
                interface: "trunk0".into(),
            },
        });
        let pos = |f: &dyn Fn(&Request) -> bool| d.iter().position(f).unwrap();
        let at = pos(&|r| *r == trunk);
        assert!(pos(&|r| matches!(r, Request::AddNetwork { id: 3, .. })) < at);
        assert!(
            pos(&|r| matches!(
                r,
                Request::AddPort(PortSpec {
                    id: UPLINK_PORT,
                    ..
                })
            )) < at
        );
        assert!(at < pos(&|r| matches!(r, Request::AddPort(PortSpec { id: 1, .. }))));
        // A VLAN has no flood list and no MAC entries from the console: the trunk learns.
        assert!(!d
            .iter()
            .any(|r| matches!(r, Request::SetFloodList { network: 3, .. })));
        // A restarted (empty) switch gets the trunk back; one in sync gets nothing.
        let mut state = Vec::new();
        let p = plan(&state, &d);
        assert!(p.contains(&trunk), "{p:#?}");
        apply_model(&mut state, &p);
        assert!(plan(&state, &d).is_empty());
        // The trunk's number is never given to a VM NIC, even one that had it before.
        link.restore(
            Uuid::from_u128(2),
            vec![VmNic {
                network: "blue".into(),
                mac: "52:54:00:00:02:00".into(),
                mtu: 1450,
                port: TRUNK_PORT,
                switch_socket: dir.path().join("s"),
                qemu_socket: dir.path().join("q"),
            }],
        );
        let moved = link
            .attach(
                Uuid::from_u128(2),
                dir.path(),
                &[nic("blue", "52:54:00:00:02:00")],
            )
            .unwrap();
        assert_ne!(moved[0].port, TRUNK_PORT);
        // Without a trunk there is no trunk port, and a NIC on a VLAN is refused clearly.
        let plain = SwitchLink::open(settings(), dir.path()).unwrap();
        assert!(!desired(&plain, false)
            .iter()
            .any(|r| matches!(r, Request::AddPort(PortSpec { id: TRUNK_PORT, .. }))));
        let e = plain
            .attach(
                Uuid::from_u128(3),
                dir.path(),
                &[nic("v100", "52:54:00:00:03:00")],
            )
            .unwrap_err();
        assert!(e.to_string().contains("no trunk"), "{e}");
    }

    #[test]
    fn bad_nics_and_configurations_are_refused() {
        let (dir, link) = link();
        let id = Uuid::from_u128(1);
        for (spec, needle) in [
            (nic("green", "52:54:00:00:00:01"), "not configured"),
            (nic("blue", "53:54:00:00:00:01"), "unicast"),
            (
                NicSpec {
                    network: "blue".into(),
                    mac: None,
                    ip: None,
                },
                "no MAC",
            ),
        ] {
            let e = link.attach(id, dir.path(), &[spec]).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        link.attach(id, dir.path(), &[nic("blue", "52:54:00:00:00:01")])
            .unwrap();
        let e = link
            .attach(
                Uuid::from_u128(2),
                dir.path(),
                &[nic("blue", "52:54:00:00:00:01")],
            )
            .unwrap_err();
        assert!(e.to_string().contains("already used"), "{e}");

        let mut c = config();
        c.networks[1].kind = SwitchNetworkKind::Overlay { vni: 5001 };
        let e = link.set_config(c).unwrap_err();
        assert!(e.to_string().contains("used by another network"), "{e}");
        for vni in [0, 1 << 24] {
            let mut c = config();
            c.networks[0].kind = SwitchNetworkKind::Overlay { vni };
            let e = link.set_config(c).unwrap_err();
            assert!(e.to_string().contains("out of range"), "{vni}: {e}");
        }
        let mut c = config();
        c.macs[0].network = "green".into();
        assert!(link.set_config(c).is_err());
        let mut c = config();
        c.networks[1].id = 1;
        assert!(link.set_config(c).is_err());
        let no_underlay =
            SwitchLink::open(SwitchSettings::new("/run/sw.sock"), dir.path()).unwrap();
        let e = no_underlay.set_config(config()).unwrap_err();
        assert!(e.to_string().contains("underlay"), "{e}");
        // The refused configurations were not kept.
        assert_eq!(link.config(), config());
    }

    #[test]
    fn plans_replay_diff_and_converge() {
        let (dir, link) = link();
        link.attach(
            Uuid::from_u128(1),
            dir.path(),
            &[nic("blue", "52:54:00:00:00:01")],
        )
        .unwrap();
        let d1 = desired(&link, false);
        // An empty (restarted) switch gets everything, in order.
        assert_eq!(plan(&[], &d1), d1);
        let mut state = Vec::new();
        let p = plan(&state, &d1);
        apply_model(&mut state, &p);
        assert!(same(&state, &d1));
        assert!(plan(&state, &d1).is_empty(), "nothing to do when in sync");

        // A VM leaves: its MAC entry and port go, nothing else.
        link.detach(Uuid::from_u128(1));
        let d2 = desired(&link, false);
        let p = plan(&state, &d2);
        assert_eq!(
            p,
            vec![
                Request::RemoveMacEntry {
                    network: 1,
                    mac: "52:54:00:00:00:01".parse().unwrap()
                },
                Request::RemovePort { id: 1 }
            ]
        );
        apply_model(&mut state, &p);
        assert!(same(&state, &d2));

        // A network changes its VNI while a VM port is on it: the port is removed before the
        // network and added again after it.
        link.attach(
            Uuid::from_u128(1),
            dir.path(),
            &[nic("blue", "52:54:00:00:00:01")],
        )
        .unwrap();
        let p = plan(&state, &desired(&link, false));
        apply_model(&mut state, &p);
        let mut c = config();
        c.networks[0].kind = SwitchNetworkKind::Overlay { vni: 7000 };
        c.networks[0].flood = vec![Ipv4Addr::new(10, 0, 0, 3)];
        c.arps.clear();
        link.set_config(c).unwrap();
        let d3 = desired(&link, false);
        let p = plan(&state, &d3);
        let pos = |f: &dyn Fn(&Request) -> bool| p.iter().position(f).unwrap();
        assert!(
            pos(&|r| matches!(r, Request::RemovePort { id: 1 }))
                < pos(&|r| matches!(r, Request::RemoveNetwork { id: 1 }))
        );
        assert!(
            pos(&|r| matches!(r, Request::RemoveNetwork { id: 1 }))
                < pos(&|r| matches!(r, Request::AddNetwork { id: 1, .. }))
        );
        assert!(
            pos(&|r| matches!(r, Request::AddNetwork { id: 1, .. }))
                < pos(&|r| matches!(r, Request::AddPort(PortSpec { id: 1, .. })))
        );
        assert!(!p
            .iter()
            .any(|r| matches!(r, Request::RemoveNetwork { id: 2 })));
        apply_model(&mut state, &p);
        assert!(same(&state, &d3), "{state:#?}\n{d3:#?}");
        assert!(plan(&state, &d3).is_empty());

        // What the agent does not manage stays.
        let foreign = Request::SetSettings {
            mac_ageing_secs: 60,
            mac_learn_limit: 10,
        };
        state.insert(0, foreign);
        assert!(plan(&state, &d3).is_empty());
    }

    #[test]
    fn dhcp_is_set_and_resent_only_when_it_changes() {
        let (_dir, link) = link();
        let d1 = desired(&link, false);
        let blue = Request::SetDhcp {
            network: 1,
            config: Some(DhcpSpec {
                prefix_len: 24,
                gateway: None,
                server: Some(Ipv4Addr::new(10, 90, 0, 254)),
                mtu: Some(1450),
                lease_secs: DHCP_LEASE_SECS,
            }),
        };
        assert!(d1.contains(&blue), "{d1:#?}");
        assert!(!d1
            .iter()
            .any(|r| matches!(r, Request::SetDhcp { network: 2, .. })));
        let mut state = Vec::new();
        let p = plan(&state, &d1);
        apply_model(&mut state, &p);
        assert!(plan(&state, &d1).is_empty());

        // A new gateway: only the responder is sent again.
        let mut c = config();
        c.networks[0].dhcp.as_mut().unwrap().gateway = Some(Ipv4Addr::new(10, 90, 0, 1));
        link.set_config(c).unwrap();
        let p = plan(&state, &desired(&link, false));
        assert!(
            matches!(
                &p[..],
                [Request::SetDhcp {
                    network: 1,
                    config: Some(DhcpSpec {
                        gateway: Some(_),
                        ..
                    })
                }]
            ),
            "{p:#?}"
        );
        apply_model(&mut state, &p);

        // No longer wanted: disabled.
        let mut c = config();
        c.networks[0].dhcp = None;
        link.set_config(c).unwrap();
        let p = plan(&state, &desired(&link, false));
        assert_eq!(
            p,
            vec![Request::SetDhcp {
                network: 1,
                config: None
            }]
        );
    }

    #[test]
    fn configuration_survives_a_reopen() {
        let (dir, link) = link();
        drop(link);
        let again = SwitchLink::open(settings(), dir.path()).unwrap();
        assert_eq!(again.config(), config());
    }

    #[test]
    fn counters_are_named_by_network_vm_and_nic() {
        use vinfra_switch_control::{NetworkCountersView, PortCountersView};
        let t = |rx: u64, tx: u64| TrafficView {
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: tx,
            tx_bytes: tx * 100,
            drops: [("runt".to_string(), rx)].into(),
        };
        let view = CountersView {
            ports: vec![
                PortCountersView {
                    id: UPLINK_PORT,
                    traffic: t(1, 2),
                    ..Default::default()
                },
                PortCountersView {
                    id: 7,
                    traffic: t(3, 4),
                    tx_errors: 5,
                    rx_errors: 0,
                    mtu: Some(1450),
                },
                // A port the agent does not know.
                PortCountersView {
                    id: 8,
                    traffic: t(9, 9),
                    ..Default::default()
                },
            ],
            networks: vec![NetworkCountersView {
                id: 2,
                traffic: t(6, 7),
                arp_suppressed: 1,
                flooded: 2,
                learning_refused: 4,
            }],
            switch_drops: [("bad_vxlan_flags".to_string(), 3)].into(),
        };
        let id = Uuid::new_v4();
        let nic = |network: &str, port| VmNic {
            network: network.into(),
            mac: format!("52:54:00:00:00:0{port}"),
            mtu: 1450,
            port,
            switch_socket: PathBuf::from("s"),
            qemu_socket: PathBuf::from("q"),
        };
        // NIC 0 has no port on the switch (yet); NIC 1 is port 7.
        let vms = BTreeMap::from([(id, vec![nic("blue", 6), nic("red", 7)])]);
        let c = host_counters(&view, &config(), &vms);
        assert_eq!(c.ports.len(), 1, "{c:?}");
        let p = &c.ports[0];
        assert_eq!((p.vm_id, p.nic, p.port), (id, 1, 7));
        assert_eq!(
            (p.network.as_str(), p.mac.as_str()),
            ("red", "52:54:00:00:00:07")
        );
        assert_eq!((p.traffic.rx_packets, p.traffic.tx_bytes), (3, 400));
        assert_eq!((p.tx_errors, p.traffic.drops["runt"]), (5, 3));
        assert_eq!(c.networks.len(), 1, "blue has no counters: {c:?}");
        assert_eq!(c.networks[0].network, "red");
        assert_eq!(c.networks[0].traffic.tx_packets, 7);
        assert_eq!(
            (
                c.networks[0].arp_suppressed,
                c.networks[0].flooded,
                c.networks[0].learning_refused
            ),
            (1, 2, 4)
        );
        assert_eq!(c.uplink.as_ref().map(|u| u.tx_packets), Some(2));
        assert_eq!(c.switch_drops["bad_vxlan_flags"], 3);
    }
}
