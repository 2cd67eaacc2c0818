//! Test harness: a console on 127.0.0.1 (real store, real TLS) and a fake agent that speaks the real
//! protocol over real mutual TLS, with an in-memory VM table instead of QEMU.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use uuid::Uuid;
use vinfra_console::{ConsoleConfig, RunningConsole};
use vinfra_proto::frame::FramedJson;
use vinfra_proto::pki;
use vinfra_proto::{
    AgentCommand, AgentMessage, CommandError, CommandReply, ConsoleMessage, HostReport,
    MigrationSettings, MigrationStatus, VmInstance, PROTOCOL_VERSION,
};
use vinfra_types::{Accel, HostCapacity, HostUsage, PowerState, VmObserved, VmUsage};

pub const GIB: u64 = 1024;

pub struct TestConsole {
    pub running: RunningConsole,
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub async fn start_console(dir: &Path, token: Option<String>, tls: bool) -> TestConsole {
    start_console_with(dir, token, tls, |_| {}).await
}

/// Like [`start_console`], with `tune` applied to the configuration first.
pub async fn start_console_with(
    dir: &Path,
    token: Option<String>,
    tls: bool,
    tune: impl FnOnce(&mut ConsoleConfig),
) -> TestConsole {
    let mut config = ConsoleConfig::new(dir.to_path_buf());
    tune(&mut config);
    config.api_listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    config.tls = tls;
    config.token_file = Some(dir.join("token"));
    let running = vinfra_console::start(config).await.expect("console starts");
    let token = running.api_token.clone().or(token).expect("a token");
    // The client trusts only the cluster CA (rustls with ring, configured by vinfra-proto).
    let client_tls = pki::client_config(&running.ca_pem, None).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*client_tls).clone())
        .build()
        .unwrap();
    let scheme = if tls { "https" } else { "http" };
    let base = format!("{scheme}://127.0.0.1:{}", running.api_addr.port());
    TestConsole {
        running,
        client,
        base,
        token,
    }
}

pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl TestConsole {
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.call_with(method, path, body, Some(&self.token)).await
    }

    /// [`Self::call_raw_with`], a task followed to its end and answered as the request was
    /// before tasks: its result with the status the operation had (201 for a create, 204 for
    /// a delete, 200 otherwise), or its error as a problem; a migration (or a recommendation
    /// applied) is not followed: 202 with its first progress, as before.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Resp {
        let r = self.call_raw_with(method, path, body, token).await;
        if r.status != 202 || r.body.get("kind").is_none() {
            return r;
        }
        let kind = r.body["kind"].as_str().unwrap_or_default().to_string();
        if kind == "vm_migrate" || kind == "recommendation_apply" {
            let vm = if kind == "vm_migrate" {
                r.body["target"].as_str().unwrap_or_default().to_string()
            } else {
                task_vm(&r.body)
            };
            let p = self
                .call_raw_with("GET", &format!("/api/v1/vms/{vm}/migration"), None, token)
                .await;
            return Resp { status: 202, ..p };
        }
        let task = self.wait_task(r.body["id"].as_u64().unwrap(), token).await;
        match task["state"].as_str() {
            Some("succeeded") => Resp {
                status: match kind.as_str() {
                    "vm_create" => 201,
                    "vm_delete" => 204,
                    _ => 200,
                },
                content_type: "application/json".into(),
                body: task.get("result").cloned().unwrap_or(Value::Null),
            },
            _ => Resp {
                status: task["error"]["status"].as_u64().unwrap_or(500) as u16,
                content_type: "application/problem+json".into(),
                body: task["error"].clone(),
            },
        }
    }

    /// Follows task `id` to its end (long polls, with `token` or the console's); its last JSON.
    pub async fn wait_task(&self, id: u64, token: Option<&str>) -> Value {
        let token = Some(token.unwrap_or(&self.token));
        for _ in 0..20 {
            let t = self
                .call_raw_with("GET", &format!("/api/v1/tasks/{id}?wait_s=10"), None, token)
                .await;
            assert_eq!(t.status, 200, "task {id}: {:?}", t.body);
            if ["succeeded", "failed", "cancelled"]
                .contains(&t.body["state"].as_str().unwrap_or(""))
            {
                return t.body;
            }
        }
        panic!("task {id} did not end within 200 s");
    }

    /// One request as it is answered (a task is not followed).
    pub async fn call_raw(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.call_raw_with(method, path, body, Some(&self.token))
            .await
    }

    /// One request with `token`, as it is answered.
    pub async fn call_raw_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            content_type,
            body,
        }
    }

    pub async fn join_token(&self) -> String {
        let r = self.call("POST", "/api/v1/join-tokens", None).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Waits until the host has the given status.
    pub async fn wait_host_status(&self, host: &str, status: &str) {
        for _ in 0..100 {
            let r = self
                .call("GET", &format!("/api/v1/hosts/{host}"), None)
                .await;
            if r.status == 200 && r.body["status"] == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("host {host} never became {status}");
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await.unwrap();
    }
}

/// The VM a recommendation's task migrates (its message: `migrating VM 'x' from a to b`).
pub fn task_vm(task: &Value) -> String {
    task["message"]
        .as_str()
        .and_then(|m| m.split('\'').nth(1))
        .unwrap_or_default()
        .to_string()
}

/// A problem+json response with this status.
pub fn assert_problem(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "body: {:?}", r.body);
    assert_eq!(
        r.content_type, "application/problem+json",
        "body: {:?}",
        r.body
    );
    assert_eq!(r.body["status"], status);
    assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

/// Waits until VM `vm`'s migration ends (completed, failed or cancelled); returns its progress.
pub async fn wait_migration(c: &TestConsole, vm: &str) -> serde_json::Value {
    for _ in 0..200 {
        let r = c
            .call("GET", &format!("/api/v1/vms/{vm}/migration"), None)
            .await;
        if r.status == 200
            && ["completed", "failed", "cancelled"]
                .contains(&r.body["phase"].as_str().unwrap_or(""))
        {
            // The record is final; wait for the task to release the VM.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("migration of {vm} never finished");
}

pub fn vm_json(name: &str, vcpus: u32, memory_mib: u64) -> String {
    serde_json::json!({
        "name": name, "vcpus": vcpus, "memory_mib": memory_mib,
        "boot": {"kind": "kernel", "kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "console=ttyS0"},
        "disks": [{"name": "root", "size_gib": 1}]
    })
    .to_string()
}

/// How a fake agent behaves.
#[derive(Default)]
pub struct Behaviour {
    pub fail_create: bool,
    /// `CreateVm` creates the VM but is never answered (the console's wait runs out).
    pub lose_create_reply: bool,
    /// `CreateVm` is neither carried out nor answered.
    pub ignore_create: bool,
    /// `CreateVm` creates the VM, then the agent closes its connection without answering.
    pub drop_after_create: bool,
    /// `DeleteVm` fails (with the VM still there).
    pub fail_delete: bool,
    pub fail_prepare: bool,
    /// MigrationStatus answers "failed" instead of completing.
    pub fail_migration: bool,
    /// Number of "active" answers before the final one.
    pub active_polls: u32,
    /// After the switchover, how many `ObserveVm` answers still show the incoming VM waiting
    /// (QEMU resumes the destination a moment after the source completes).
    pub resume_after_observes: u32,
    /// `ImportConnections` fails (a full connection table).
    pub refuse_imports: bool,
    /// An agent from before encrypted migrations: `PrepareIncoming`'s credentials are ignored
    /// and its answer does not say `encrypted`.
    pub plain_only: bool,
}

/// VMs whose migration stream completed, wherever they went: the fake "QEMU" of a destination
/// runs a VM it waits for once its id is here (ids are unique, so tests do not interfere).
static SWITCHED_OVER: Mutex<std::collections::BTreeSet<Uuid>> =
    Mutex::new(std::collections::BTreeSet::new());

/// Measured usage the fake agents report per VM name, wherever the VM runs (tests that set it
/// use VM names of their own).
static VM_USAGE: Mutex<std::collections::BTreeMap<String, VmUsage>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Makes every fake agent report `cpu_cores` and `rss_mib` for the VM `name` from now on.
pub fn set_vm_usage(name: &str, cpu_cores: f64, rss_mib: u64) {
    VM_USAGE.lock().unwrap().insert(
        name.to_string(),
        VmUsage {
            cpu_time_ms: 0,
            cpu_cores,
            rss_mib,
        },
    );
}

fn vm_usage(name: &str) -> VmUsage {
    VM_USAGE
        .lock()
        .unwrap()
        .get(name)
        .cloned()
        .unwrap_or_default()
}

/// Incoming VMs whose guest arrived run now.
fn resume_arrived(state: &mut FakeState) {
    let switched = SWITCHED_OVER.lock().unwrap();
    for (id, (_, s)) in state.vms.iter_mut() {
        if *s == PowerState::Incoming && switched.contains(id) {
            *s = PowerState::Running;
        }
    }
}

#[derive(Default)]
pub struct FakeState {
    pub vms: HashMap<Uuid, (VmInstance, PowerState)>,
    pub behaviour: Behaviour,
    pub polls: HashMap<Uuid, u32>,
    pub cancelled: std::collections::HashSet<Uuid>,
    pub commands: Vec<String>,
    /// The settings of every `MigrateOut` received.
    pub migrate_settings: Vec<MigrationSettings>,
    /// Send nothing unasked: no heartbeats, no reports (the connection stays open and requests
    /// are still answered).
    pub silent: bool,
    /// Stop sending reports while heartbeats go on (a host whose reports lag).
    pub reports_stalled: bool,
    /// Heartbeat acknowledgements received from the console.
    pub acks: u64,
    /// VMs whose outgoing migration completed (the source copy stays paused).
    pub completed: std::collections::HashSet<Uuid>,
    /// The last switch configuration received.
    pub switch_config: Option<vinfra_proto::HostSwitchConfig>,
    /// How many switch configurations were received.
    pub switch_pushes: u64,
    /// The address reported in Hello and reports (default 127.0.0.1).
    pub address: Option<String>,
    /// The VLAN trunk interface reported (default none).
    pub trunk: Option<String>,
    /// The underlay MTU reported (default 1500).
    pub underlay_mtu: Option<u32>,
    /// The firewalls of the switch configuration held when each `PrepareIncoming` came, by VM.
    pub firewalls_at_prepare: HashMap<Uuid, Vec<vinfra_proto::SwitchNicFirewall>>,
    /// Every `ImportConnections` received: the VM and its NICs' connections.
    pub imported: Vec<(Uuid, Vec<vinfra_proto::NicConnections>)>,
    /// The last IPFIX collector received (`SetFlowExport`), if any was.
    pub collector: Option<Option<std::net::SocketAddr>>,
    /// Messages to send with the next tick (e.g. `Flows`).
    pub outbox: Vec<AgentMessage>,
    /// The credentials of every `PrepareIncoming` received, in order.
    pub incoming_tls: Vec<Option<vinfra_proto::MigrationTls>>,
    /// The credentials of every `MigrateOut` received, in order.
    pub outgoing_tls: Vec<Option<vinfra_proto::MigrationTls>>,
    /// What the host's QEMU runs, said in the Hello (default: nothing said).
    pub platform: Option<vinfra_types::HostPlatform>,
    /// The accelerator reported (default TCG).
    pub accel: Option<Accel>,
}

pub struct FakeAgent {
    pub host: String,
    pub state: Arc<Mutex<FakeState>>,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub capacity: HostCapacity,
    task: Option<JoinHandle<()>>,
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = pki::server_name_for(&addr.to_string()).unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// Joins `host` with `token`: Ok((cert, key)) or Err(reason).
pub async fn join(
    agent_addr: SocketAddr,
    ca_pem: &str,
    token: &str,
    host: &str,
) -> Result<(String, String), String> {
    let (key_pem, csr_pem) = pki::generate_host_key_and_csr(host).unwrap();
    let tls = tls_connect(agent_addr, pki::client_config(ca_pem, None).unwrap()).await;
    let mut framed = FramedJson::new(tls);
    framed
        .send(&AgentMessage::Join {
            token: token.into(),
            host: host.into(),
            csr_pem,
        })
        .await
        .unwrap();
    match framed.recv::<ConsoleMessage>().await.unwrap() {
        ConsoleMessage::Joined {
            cert_pem,
            ca_pem: _,
        } => Ok((cert_pem, key_pem)),
        ConsoleMessage::JoinRefused { reason } => Err(reason),
        other => panic!("unexpected {other:?}"),
    }
}

impl FakeAgent {
    /// Joins with a fresh join token and connects.
    pub async fn join_and_connect(
        c: &TestConsole,
        host: &str,
        capacity: HostCapacity,
    ) -> FakeAgent {
        let token = c.join_token().await;
        let (cert_pem, key_pem) = join(c.running.agent_addr, &c.running.ca_pem, &token, host)
            .await
            .unwrap();
        let mut agent = FakeAgent {
            host: host.into(),
            state: Arc::default(),
            cert_pem,
            key_pem,
            ca_pem: c.running.ca_pem.clone(),
            capacity,
            task: None,
        };
        agent.connect(c.running.agent_addr).await;
        c.wait_host_status(host, "connected").await;
        agent
    }

    /// Joins with a fresh join token and connects, reporting `address` as the host's address.
    pub async fn join_and_connect_at(
        c: &TestConsole,
        host: &str,
        capacity: HostCapacity,
        address: &str,
    ) -> FakeAgent {
        let state = FakeState {
            address: Some(address.into()),
            ..FakeState::default()
        };
        Self::join_and_connect_with(c, host, capacity, state).await
    }

    /// Joins with a fresh join token and connects, starting from `state` (what it reports).
    pub async fn join_and_connect_with(
        c: &TestConsole,
        host: &str,
        capacity: HostCapacity,
        state: FakeState,
    ) -> FakeAgent {
        let agent = Self::join_and_try_connect(c, host, capacity, state).await;
        c.wait_host_status(host, "connected").await;
        agent
    }

    /// [`FakeAgent::join_and_connect_with`] without waiting for the console to take the
    /// connection (it may refuse it).
    pub async fn join_and_try_connect(
        c: &TestConsole,
        host: &str,
        capacity: HostCapacity,
        state: FakeState,
    ) -> FakeAgent {
        let token = c.join_token().await;
        let (cert_pem, key_pem) = join(c.running.agent_addr, &c.running.ca_pem, &token, host)
            .await
            .unwrap();
        let mut agent = FakeAgent {
            host: host.into(),
            state: Arc::new(Mutex::new(state)),
            cert_pem,
            key_pem,
            ca_pem: c.running.ca_pem.clone(),
            capacity,
            task: None,
        };
        agent.connect(c.running.agent_addr).await;
        agent
    }

    /// The last switch configuration received.
    pub fn switch_config(&self) -> Option<vinfra_proto::HostSwitchConfig> {
        self.state.lock().unwrap().switch_config.clone()
    }

    pub async fn connect(&mut self, addr: SocketAddr) {
        let config =
            pki::client_config(&self.ca_pem, Some((&self.cert_pem, &self.key_pem))).unwrap();
        let tls = tls_connect(addr, config).await;
        let framed = FramedJson::new(tls);
        let state = self.state.clone();
        let host = self.host.clone();
        let capacity = self.capacity;
        self.task = Some(tokio::spawn(async move {
            run_agent(framed, host, capacity, state).await
        }));
    }

    /// True once the connection task has ended (the console closed the connection).
    pub fn session_ended(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Drops the connection.
    pub fn disconnect(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub fn vm_state(&self, id: Uuid) -> Option<PowerState> {
        self.state.lock().unwrap().vms.get(&id).map(|v| v.1)
    }

    pub fn vm_count(&self) -> usize {
        self.state.lock().unwrap().vms.len()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.disconnect();
    }
}

fn report(host: &str, capacity: HostCapacity, state: &FakeState) -> HostReport {
    HostReport {
        host: host.into(),
        address: state.address.clone().unwrap_or_else(|| "127.0.0.1".into()),
        accel: state.accel.unwrap_or(Accel::Tcg),
        qemu_version: "9.2.0".into(),
        capacity,
        usage: HostUsage {
            cpu_cores: 0.5,
            memory_used_mib: 1024,
        },
        vms: state
            .vms
            .values()
            .map(|(vm, s)| VmObserved {
                id: vm.id,
                name: vm.spec.name.clone(),
                state: *s,
                pid: Some(1000),
                uptime_s: 5,
                usage: vm_usage(&vm.spec.name),
                unresponsive: false,
                ha: vm.spec.ha.enabled,
            })
            .collect(),
        trunk: state.trunk.clone(),
        underlay_mtu: state.underlay_mtu.unwrap_or(1500),
        guard: None,
    }
}

fn observed(vm: &VmInstance, state: PowerState) -> CommandReply {
    let live = matches!(state, PowerState::Running | PowerState::Paused);
    CommandReply::Vm {
        vm: VmObserved {
            id: vm.id,
            name: vm.spec.name.clone(),
            state,
            pid: live.then_some(1000),
            uptime_s: if live { 5 } else { 0 },
            usage: vm_usage(&vm.spec.name),
            unresponsive: false,
            ha: vm.spec.ha.enabled,
        },
    }
}

fn check_networks(state: &FakeState, vm: &VmInstance) -> Result<(), CommandError> {
    for nic in &vm.spec.nics {
        let known = state
            .switch_config
            .as_ref()
            .is_some_and(|c| c.networks.iter().any(|n| n.name == nic.network));
        if !known {
            return Err(CommandError::Network {
                detail: format!(
                    "network {} is not configured on this host's switch",
                    nic.network
                ),
            });
        }
    }
    Ok(())
}

fn handle(state: &mut FakeState, command: AgentCommand) -> Result<CommandReply, CommandError> {
    let name = format!("{command:?}");
    state
        .commands
        .push(name.split([' ', '{']).next().unwrap_or("").to_string());
    let missing = |id| CommandError::NoSuchVm { id };
    match &command {
        AgentCommand::CreateVm { vm, .. } | AgentCommand::PrepareIncoming { vm, .. } => {
            // Like the real agent: a NIC's network must be on the host's switch already.
            check_networks(state, vm)?;
        }
        _ => {}
    }
    match command {
        AgentCommand::CreateVm { vm, start } => {
            if state.behaviour.fail_create {
                return Err(CommandError::MissingFile {
                    path: "images/vmlinuz".into(),
                });
            }
            let s = if start {
                PowerState::Running
            } else {
                PowerState::Stopped
            };
            let reply = observed(&vm, s);
            state.vms.insert(vm.id, (vm, s));
            Ok(reply)
        }
        AgentCommand::StartVm { id, .. } | AgentCommand::RebootVm { id } => {
            let v = state.vms.get_mut(&id).ok_or(missing(id))?;
            v.1 = PowerState::Running;
            Ok(observed(&v.0, v.1))
        }
        AgentCommand::StopVm { id, force, .. } => {
            let v = state.vms.get_mut(&id).ok_or(missing(id))?;
            let how = match (v.1, force) {
                (PowerState::Stopped, _) => vinfra_proto::StopKind::AlreadyStopped,
                (_, true) => vinfra_proto::StopKind::Forced,
                (_, false) => vinfra_proto::StopKind::Graceful,
            };
            v.1 = PowerState::Stopped;
            let CommandReply::Vm { vm } = observed(&v.0, v.1) else {
                unreachable!("observed answers Vm")
            };
            Ok(CommandReply::Stopped { vm, how })
        }
        AgentCommand::DeleteVm { id, .. } => {
            if state.behaviour.fail_delete {
                return Err(CommandError::Host {
                    detail: "the datastore is busy".into(),
                });
            }
            state.vms.remove(&id).ok_or(missing(id))?;
            Ok(CommandReply::Done)
        }
        AgentCommand::PrepareIncoming { vm, tls } => {
            let encrypted = tls.is_some() && !state.behaviour.plain_only;
            state.incoming_tls.push(tls);
            if state.behaviour.fail_prepare {
                return Err(CommandError::Qemu {
                    detail: "incoming QEMU failed to start".into(),
                });
            }
            let firewalls = state
                .switch_config
                .as_ref()
                .map(|c| c.firewalls.clone())
                .unwrap_or_default();
            state.firewalls_at_prepare.insert(vm.id, firewalls);
            state.vms.insert(vm.id, (vm, PowerState::Incoming));
            Ok(CommandReply::Incoming {
                uri: "tcp:127.0.0.1:49152".into(),
                encrypted,
            })
        }
        AgentCommand::MigrateOut {
            id, settings, tls, ..
        } => {
            state.migrate_settings.push(settings);
            state.outgoing_tls.push(tls);
            state.cancelled.remove(&id);
            state.polls.remove(&id);
            let v = state.vms.get_mut(&id).ok_or(missing(id))?;
            v.1 = PowerState::Migrating;
            Ok(CommandReply::Done)
        }
        AgentCommand::MigrationStatus { id, .. } => {
            let sending = state.vms.get(&id).ok_or(missing(id))?.1 == PowerState::Migrating;
            let completed = state.completed.contains(&id);
            let polls = state.polls.entry(id).or_insert(0);
            if sending {
                *polls += 1;
            }
            let status = if state.cancelled.remove(&id) {
                "cancelled"
            } else if completed {
                "completed"
            } else if !sending {
                // Like QEMU's query-migrate when nothing was sent.
                "none"
            } else if *polls <= state.behaviour.active_polls {
                "active"
            } else if state.behaviour.fail_migration {
                "failed"
            } else {
                "completed"
            };
            if status == "completed" {
                SWITCHED_OVER.lock().unwrap().insert(id);
                state.completed.insert(id);
                if let Some(v) = state.vms.get_mut(&id) {
                    v.1 = PowerState::Paused;
                }
            }
            if status == "failed" {
                // QEMU resumes the source when the stream breaks.
                if let Some(v) = state.vms.get_mut(&id) {
                    v.1 = PowerState::Running;
                }
            }
            Ok(CommandReply::Migration {
                status: MigrationStatus {
                    qemu_status: status.into(),
                    transferred_bytes: 100 * u64::from(*polls),
                    remaining_bytes: 0,
                    total_bytes: 1000,
                    rate_bps: 1_000_000,
                    dirty_pages_rate: 0,
                    total_time_ms: 200 * u64::from(*polls),
                    downtime_ms: (status == "completed").then_some(20),
                    error: (status == "failed").then(|| "stream broke".to_string()),
                },
            })
        }
        AgentCommand::CancelMigration { id } => {
            if state.completed.contains(&id) {
                return Err(CommandError::BadState {
                    id,
                    state: "paused".into(),
                    detail: "the migration already completed".into(),
                });
            }
            let v = state.vms.get_mut(&id).ok_or(missing(id))?;
            if v.1 == PowerState::Migrating {
                state.cancelled.insert(id);
            }
            v.1 = PowerState::Running;
            Ok(CommandReply::Done)
        }
        AgentCommand::FinishMigrationSource { id } => {
            state.vms.remove(&id).ok_or(missing(id))?;
            state.completed.remove(&id);
            Ok(CommandReply::Done)
        }
        AgentCommand::AbortIncoming { id } => {
            let v = state.vms.get(&id).ok_or(missing(id))?;
            // Like the real agent: a VM whose guest arrived is not killed.
            if v.1 != PowerState::Incoming {
                return Err(CommandError::BadState {
                    id,
                    state: format!("{:?}", v.1),
                    detail: "the VM already runs here".into(),
                });
            }
            state.vms.remove(&id);
            Ok(CommandReply::Done)
        }
        AgentCommand::ObserveVm { id } => {
            if state.behaviour.resume_after_observes > 0
                && SWITCHED_OVER.lock().unwrap().contains(&id)
            {
                state.behaviour.resume_after_observes -= 1;
            } else {
                resume_arrived(state);
            }
            let v = state.vms.get(&id).ok_or(missing(id))?;
            Ok(observed(&v.0, v.1))
        }
        AgentCommand::ApplySwitchConfig { config } => {
            state.switch_config = Some(config);
            state.switch_pushes += 1;
            Ok(CommandReply::Done)
        }
        AgentCommand::SwitchCounters => Ok(CommandReply::SwitchCounters {
            counters: fake_switch_counters(state),
        }),
        AgentCommand::SetHa { .. } => Ok(CommandReply::Done),
        AgentCommand::SetFlowExport { collector } => {
            state.collector = Some(collector);
            Ok(CommandReply::Done)
        }
        // One established TCP connection to port 8080 per NIC of the VM.
        AgentCommand::ExportConnections { id } => {
            let nics = state.vms.get(&id).map_or_else(Vec::new, |(vm, _)| {
                vm.spec
                    .nics
                    .iter()
                    .map(|n| vinfra_proto::NicConnections {
                        network: n.network.clone(),
                        mac: n.mac.clone().unwrap_or_default(),
                        entries: vec![fake_connection()],
                    })
                    .collect()
            });
            Ok(CommandReply::Connections { nics })
        }
        AgentCommand::ImportConnections { id, nics } => {
            if state.behaviour.refuse_imports {
                return Err(CommandError::Network {
                    detail: "connection table full".into(),
                });
            }
            state.imported.push((id, nics));
            Ok(CommandReply::Done)
        }
        AgentCommand::SetVmHa { id, ha } => {
            let (vm, _) = state.vms.get_mut(&id).ok_or(missing(id))?;
            vm.spec.ha.enabled = ha;
            Ok(CommandReply::Done)
        }
        AgentCommand::ConsoleLog { id, max_bytes } => {
            state.vms.get(&id).ok_or(missing(id))?;
            let text = "login: ".repeat(100);
            let n = (max_bytes as usize).min(text.len());
            Ok(CommandReply::Console {
                text: text[text.len() - n..].to_string(),
            })
        }
    }
}

/// The connection a fake agent's switch tracks for every NIC of its VMs: TCP from 10.99.0.1
/// to the VM's port 8080, established.
pub fn fake_connection() -> vinfra_proto::ConnectionSpec {
    vinfra_proto::ConnectionSpec {
        original: vinfra_proto::ConnTupleSpec {
            src: std::net::Ipv4Addr::new(10, 99, 0, 1),
            dst: std::net::Ipv4Addr::new(10, 99, 0, 2),
            protocol: 6,
            src_port: 40000,
            dst_port: 8080,
        },
        origin: vinfra_proto::SideSpec::ToVm,
        tcp_state: Some(vinfra_proto::TcpStateSpec::Established),
        replied: true,
        remaining_ms: 60_000,
    }
}

/// The counters a fake agent's switch reports for NIC `nic` of a running VM: rx 10 + nic
/// packets, tx 20 + nic packets, 100 bytes each, and `nic` drops of reason `runt`.
pub fn fake_port_traffic(nic: usize) -> vinfra_types::network::TrafficCounters {
    let n = nic as u64;
    vinfra_types::network::TrafficCounters {
        rx_packets: 10 + n,
        rx_bytes: (10 + n) * 100,
        tx_packets: 20 + n,
        tx_bytes: (20 + n) * 100,
        drops: if n > 0 {
            [("runt".to_string(), n)].into()
        } else {
            Default::default()
        },
    }
}

/// The firewall counters the fake agent reports for a NIC with an entry in its switch
/// configuration's firewalls: 2 connections, each rule `10 × rule id + its position` hits.
fn fake_port_firewall(
    state: &FakeState,
    network: &str,
    mac: Option<&str>,
) -> Option<vinfra_types::network::PortFirewallCounters> {
    let entry = state
        .switch_config
        .as_ref()?
        .firewalls
        .iter()
        .find(|f| f.network == network && Some(f.mac.as_str()) == mac)?;
    Some(vinfra_types::network::PortFirewallCounters {
        connections: 2,
        rules: entry
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| vinfra_types::network::PortRuleHits {
                group: r.group.clone(),
                rule_id: r.rule_id,
                hits: 10 * u64::from(r.rule_id) + i as u64,
            })
            .collect(),
    })
}

/// Switch counters derived from the fake agent's state: a port per NIC of each running VM
/// ([`fake_port_traffic`], [`fake_port_firewall`]), each configured network the sum of its ports (with, per port, 3 ARP
/// answers, 5 floods and 1 refused learning), the uplink the sum of everything.
fn fake_switch_counters(state: &FakeState) -> vinfra_types::network::HostSwitchCounters {
    use vinfra_types::network::{SwitchNetworkCounters, SwitchPortCounters, TrafficCounters};
    let mut ports = Vec::new();
    let mut running: Vec<&VmInstance> = state
        .vms
        .values()
        .filter(|(_, s)| *s == PowerState::Running)
        .map(|(vm, _)| vm)
        .collect();
    running.sort_by_key(|vm| vm.id);
    for vm in running {
        for (nic, n) in vm.spec.nics.iter().enumerate() {
            ports.push(SwitchPortCounters {
                vm_id: vm.id,
                nic,
                network: n.network.clone(),
                mac: n.mac.clone().unwrap_or_default(),
                port: ports.len() as u32 + 1,
                traffic: fake_port_traffic(nic),
                tx_errors: 0,
                rx_errors: 0,
                firewall: fake_port_firewall(state, &n.network, n.mac.as_deref()),
            });
        }
    }
    let networks = state
        .switch_config
        .iter()
        .flat_map(|c| &c.networks)
        .map(|n| {
            let mut traffic = TrafficCounters::default();
            let mut count = 0;
            for p in ports.iter().filter(|p| p.network == n.name) {
                traffic.add(&p.traffic);
                count += 1;
            }
            SwitchNetworkCounters {
                network: n.name.clone(),
                traffic,
                arp_suppressed: 3 * count,
                flooded: 5 * count,
                learning_refused: count,
            }
        })
        .collect();
    let mut uplink = TrafficCounters::default();
    for p in &ports {
        uplink.add(&p.traffic);
    }
    vinfra_types::network::HostSwitchCounters {
        networks,
        ports,
        uplink: Some(uplink),
        trunk: None,
        switch_drops: Default::default(),
        routers: Vec::new(),
    }
}

async fn run_agent(
    framed: FramedJson<tokio_rustls::client::TlsStream<TcpStream>>,
    host: String,
    capacity: HostCapacity,
    state: Arc<Mutex<FakeState>>,
) {
    let (mut tx, mut rx) = framed.split();
    let (hello, platform) = {
        let s = state.lock().unwrap();
        (report(&host, capacity, &s), s.platform.clone())
    };
    if tx
        .send(&AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            report: hello,
            platform,
        })
        .await
        .is_err()
    {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut seq = 0;
    loop {
        tokio::select! {
            msg = rx.recv::<ConsoleMessage>() => {
                let (id, command) = match msg {
                    Ok(ConsoleMessage::Request { id, command }) => (id, command),
                    Ok(ConsoleMessage::HeartbeatAck { .. }) => {
                        state.lock().unwrap().acks += 1;
                        continue;
                    }
                    _ => return,
                };
                let (result, answer, close) = {
                    let mut st = state.lock().unwrap();
                    let create = matches!(command, AgentCommand::CreateVm { .. });
                    let b = &st.behaviour;
                    let (ignore, lose, drop_after) =
                        (b.ignore_create, b.lose_create_reply, b.drop_after_create);
                    if create && ignore {
                        continue;
                    }
                    let result = handle(&mut st, command);
                    (result, !(create && (lose || drop_after)), create && drop_after)
                };
                if close {
                    return;
                }
                if !answer {
                    continue;
                }
                if tx.send(&AgentMessage::Response { id, result }).await.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {
                let r = {
                    let mut st = state.lock().unwrap();
                    if st.silent {
                        continue;
                    }
                    if st.behaviour.resume_after_observes == 0 {
                        resume_arrived(&mut st);
                    }
                    let outbox = std::mem::take(&mut st.outbox);
                    ((!st.reports_stalled).then(|| report(&host, capacity, &st)), outbox)
                };
                let (r, outbox) = r;
                for m in outbox {
                    if tx.send(&m).await.is_err() {
                        return;
                    }
                }
                seq += 1;
                if tx.send(&AgentMessage::Heartbeat { seq }).await.is_err() {
                    return;
                }
                if let Some(r) = r {
                    if tx.send(&AgentMessage::Report { report: r }).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The incarnation of the leases [`write_lease`] writes.
pub const LEASE_INCARNATION: u64 = 7;

/// Writes `host`'s lease in `datastore` as its guard would (a temporary file renamed over it),
/// incarnation [`LEASE_INCARNATION`], counter `counter`.
#[allow(dead_code)]
pub fn write_lease(datastore: &Path, host: &str, counter: u64) {
    use vinfra_ha::{lease::LEASE_VERSION, Lease, LeaseState};
    let dir = datastore.join("ha").join("hosts");
    std::fs::create_dir_all(&dir).unwrap();
    let lease = Lease {
        version: LEASE_VERSION,
        host: host.into(),
        incarnation: LEASE_INCARNATION,
        counter,
        state: LeaseState::Live,
        agent_absent_ms: None,
        written_unix_ms: 0,
    };
    let tmp = dir.join(format!("{host}.lease.tmp"));
    std::fs::write(&tmp, lease.to_bytes()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{host}.lease"))).unwrap();
}

/// A console reading host leases from `datastore`.
#[allow(dead_code)]
pub async fn start_ha_console(dir: &Path, datastore: &Path) -> TestConsole {
    let datastore = datastore.to_path_buf();
    start_console_with(dir, None, true, move |cfg| {
        cfg.datastore = Some(datastore);
    })
    .await
}

/// Waits until `agent`'s last switch configuration satisfies `ok`.
pub async fn wait_config(
    agent: &FakeAgent,
    what: &str,
    ok: impl Fn(&vinfra_proto::HostSwitchConfig) -> bool,
) -> vinfra_proto::HostSwitchConfig {
    for _ in 0..200 {
        if let Some(cfg) = agent.switch_config() {
            if ok(&cfg) {
                return cfg;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{}: never got a switch configuration with {what}; last: {:?}",
        agent.host,
        agent.switch_config()
    );
}
