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
//! image and how it takes its address), [`upstream`] (the upstream router and its internet);
//! inside, `Lab`'s methods are spread by subject: `daemons` (the console, agents, switches and
//! guards, the API), `physical` (the top-of-rack switch, VLAN endpoints, the upstream),
//! `guests` (the test guest's VMs), beside `config` (the configuration and `lab.json`), `error`,
//! `status`, `launch` and `cleanup`.
#![deny(unsafe_code)]

mod cleanup;
mod config;
mod daemons;
mod error;
pub mod guest;
mod guests;
mod launch;
pub mod net;
mod physical;
pub mod process;
mod status;
pub mod upstream;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vinfra_client::CONSOLE_CA_FILE;
use vinfra_types::api::UpdateHostRequest;

use config::{FENCE_WAIT, HOSTS_TIMEOUT};
use error::io;
use launch::{free_port, shell_quote};

pub use cleanup::{cgroup_parent, qemu_pids_mentioning};
pub use config::{
    default_root, tor_access_port, ApiAccess, HostState, LabConfig, LabState, VlanEndpoint,
    MAX_HOSTS, MAX_NAME, TOR_TRUNK_PORT,
};
pub use error::LabError;
pub use status::{LabStatus, Listed, ProcessStatus};

/// Checks a lab name: a DNS label of at most [`MAX_NAME`] characters.
pub fn validate_lab_name(name: &str) -> Result<(), LabError> {
    if name.len() > MAX_NAME || vinfra_types::validate_name(name).is_err() {
        return Err(LabError::Name(name.to_string()));
    }
    Ok(())
}

/// A running lab.
#[derive(Debug, Clone)]
pub struct Lab {
    state: LabState,
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
        cleanup::cleanup(&config.name, &config.root, true)?;
        match Self::build(&config) {
            Ok(lab) => Ok(lab),
            Err(e) => {
                if let Err(c) = cleanup::cleanup(&config.name, &config.root, false) {
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
        cleanup::cleanup(name, root, true)
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
        cleanup::cleanup(&self.state.name, &self.state.root, true)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use vinfra_types::api::CreateVmRequest;
    use vinfra_types::BootSource;

    use super::*;
    use crate::guest::GuestAddress;
    use crate::upstream::Upstream;

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
