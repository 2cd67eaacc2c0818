//! A lab's physical network: the top-of-rack switch and its VLAN endpoints, the upstream
//! router and the internet behind it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::*;
use crate::error::*;
use crate::launch::*;
use crate::upstream::{self, Upstream, UpstreamError};
use crate::{net, process, Lab};

impl Lab {
    /// The top-of-rack switch's directory (`<root>/phys`).
    pub(crate) fn phys_dir(&self) -> PathBuf {
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
    pub(crate) fn start_tor(&mut self) -> Result<(), LabError> {
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

    pub(crate) fn tor_apply(
        &self,
        requests: &[vinfra_switch_control::Request],
    ) -> Result<(), LabError> {
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
    pub(crate) fn tor_has_vlan(&self, vid: u16) -> bool {
        self.state.endpoints.iter().any(|e| e.vlan_id == vid)
            || self
                .state
                .upstream
                .as_ref()
                .is_some_and(|u| u.vlan_id == vid)
    }

    /// The requests that give the top-of-rack switch an access port `port` on VLAN `vid`,
    /// creating the tap `tap` (and the VLAN, when the switch does not have it yet).
    pub(crate) fn tor_access_requests(
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
    pub(crate) fn build_upstream(
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
}
