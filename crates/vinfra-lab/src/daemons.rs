//! A lab's processes: starting, killing and restarting its console, agents, switches and
//! guards; the console's API; where each host keeps its files and its QEMUs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vinfra_client::Client;
use vinfra_switch_control::SwitchClient;
use vinfra_types::HostStatus;

use crate::cleanup::*;
use crate::config::*;
use crate::error::*;
use crate::launch::*;
use crate::{net, process, Lab};

impl Lab {
    pub(crate) fn console_log(&self) -> PathBuf {
        self.state.root.join("console.log")
    }

    pub(crate) fn start_console(&mut self) -> Result<(), LabError> {
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

    pub(crate) fn host_index(&self, host: &str) -> Result<usize, LabError> {
        self.state
            .hosts
            .iter()
            .position(|h| h.name == host)
            .ok_or_else(|| LabError::NoHost(host.to_string()))
    }

    /// The control socket of a host's switch.
    pub(crate) fn switch_control(h: &HostState) -> PathBuf {
        h.data_dir.join("switch.sock")
    }

    /// Starts a host's virtual switch in its namespace (`vinfra switch`, detached, with its
    /// underlay address as VXLAN tunnel endpoint) and waits (up to 10 s) for its control socket.
    pub(crate) fn start_switch(&mut self, index: usize) -> Result<(), LabError> {
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
    pub(crate) fn guard_control(h: &HostState) -> PathBuf {
        h.data_dir.join("guard.sock")
    }

    /// Starts a host's guard in its namespace (`vinfra guard`, detached, its lease in the lab's
    /// datastore) and waits (up to 10 s) for its control socket, which it opens once it holds
    /// the host's lease.
    pub(crate) fn start_guard(&mut self, index: usize) -> Result<(), LabError> {
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

    pub(crate) fn start_agent(
        &mut self,
        index: usize,
        join_token: Option<&str>,
    ) -> Result<(), LabError> {
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
}
