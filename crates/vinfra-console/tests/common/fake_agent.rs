//! A fake agent: joins the console with a real join token, speaks the real protocol over
//! mutual TLS, and keeps its VMs in a table ([`FakeState`]) that [`Behaviour`] bends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use uuid::Uuid;
use vinfra_proto::frame::FramedJson;
use vinfra_proto::pki;
use vinfra_proto::{
    AgentCommand, AgentMessage, CommandError, CommandReply, ConsoleMessage, HostReport,
    MigrationSettings, MigrationStatus, VmInstance, PROTOCOL_VERSION,
};
use vinfra_types::{Accel, HostCapacity, HostUsage, PowerState, VmObserved, VmUsage};

use super::fake_counters::{fake_connection, fake_switch_counters};
use super::TestConsole;

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
    /// `ObserveVm` with `wait_ms` waits for the guest, as agents of protocol 15 do: a VM whose
    /// migration stream completed is answered running whatever `resume_after_observes` says
    /// (the answer held back by `slow["ObserveVm"]`, the time its QEMU takes to resume it).
    pub observe_waits: bool,
    /// `ImportConnections` fails (a full connection table).
    pub refuse_imports: bool,
    /// An agent from before encrypted migrations: `PrepareIncoming`'s credentials are ignored
    /// and its answer does not say `encrypted`.
    pub plain_only: bool,
    /// Commands carried out at once but answered only after this long, by name
    /// (`SwitchCounters`, `CancelMigration`, …); the agent goes on meanwhile (heartbeats,
    /// reports, other requests).
    pub slow: HashMap<&'static str, Duration>,
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
    /// Where each `MigrateOut` said to redirect the VM's frames from its switchover on.
    pub redirects: Vec<Option<std::net::Ipv4Addr>>,
    /// What the host's QEMU runs, said in the Hello (default: nothing said).
    pub platform: Option<vinfra_types::HostPlatform>,
    /// What was typed on each VM's serial console (`ConsoleWrite`): its console log is
    /// `login: ` 100 times, then this.
    pub typed: HashMap<Uuid, String>,
    /// The accelerator reported (default TCG).
    pub accel: Option<Accel>,
    /// The QEMU version reported (default 9.2.0).
    pub qemu_version: Option<String>,
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
        qemu_version: state.qemu_version.clone().unwrap_or_else(|| "9.2.0".into()),
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
                net: None,
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
            net: None,
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

/// A command's name: `CancelMigration` for `CancelMigration { id: … }`.
fn command_name(command: &AgentCommand) -> String {
    let name = format!("{command:?}");
    name.split([' ', '{']).next().unwrap_or("").to_string()
}

fn handle(state: &mut FakeState, command: AgentCommand) -> Result<CommandReply, CommandError> {
    let name = command_name(&command);
    state.commands.push(name);
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
            id,
            settings,
            tls,
            redirect_to,
            ..
        } => {
            state.migrate_settings.push(settings);
            state.outgoing_tls.push(tls);
            state.redirects.push(redirect_to);
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
        AgentCommand::ObserveVm { id, wait_ms } => {
            if wait_ms > 0 && state.behaviour.observe_waits {
                resume_arrived(state);
            } else if state.behaviour.resume_after_observes > 0
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
        AgentCommand::ConsoleRead {
            id,
            from,
            max_bytes,
        } => {
            let running = state.vms.get(&id).ok_or(missing(id))?.1 == PowerState::Running;
            let log = format!(
                "{}{}",
                "login: ".repeat(100),
                state.typed.get(&id).map_or("", String::as_str)
            );
            let len = log.len() as u64;
            let start = match from {
                Some(f) if f <= len => f,
                _ => len.saturating_sub(max_bytes),
            };
            let end = (start + max_bytes).min(len);
            Ok(CommandReply::ConsoleChunk {
                text: log[start as usize..end as usize].to_string(),
                start,
                end,
                input: running,
            })
        }
        AgentCommand::ConsoleWrite { id, text } => {
            let state_now = state.vms.get(&id).ok_or(missing(id))?.1;
            if state_now != PowerState::Running {
                return Err(CommandError::BadState {
                    id,
                    state: format!("{state_now:?}").to_lowercase(),
                    detail: "its serial console takes input only while it runs".into(),
                });
            }
            state.typed.entry(id).or_default().push_str(&text);
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
    // Answers held back (`Behaviour::slow`): when each is due.
    type Held = (
        tokio::time::Instant,
        u64,
        Result<CommandReply, CommandError>,
    );
    let mut held: Vec<Held> = Vec::new();
    loop {
        let due = held.iter().map(|h| h.0).min();
        tokio::select! {
            _ = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = tokio::time::Instant::now();
                let (ready, later): (Vec<Held>, Vec<Held>) =
                    held.into_iter().partition(|h| h.0 <= now);
                held = later;
                for (_, id, result) in ready {
                    if tx.send(&AgentMessage::Response { id, result }).await.is_err() {
                        return;
                    }
                }
            }
            msg = rx.recv::<ConsoleMessage>() => {
                let (id, command) = match msg {
                    Ok(ConsoleMessage::Request { id, command }) => (id, command),
                    Ok(ConsoleMessage::HeartbeatAck { .. }) => {
                        state.lock().unwrap().acks += 1;
                        continue;
                    }
                    _ => return,
                };
                let (result, answer, close, slow) = {
                    let mut st = state.lock().unwrap();
                    let slow = st.behaviour.slow.get(command_name(&command).as_str()).copied();
                    let create = matches!(command, AgentCommand::CreateVm { .. });
                    let b = &st.behaviour;
                    let (ignore, lose, drop_after) =
                        (b.ignore_create, b.lose_create_reply, b.drop_after_create);
                    if create && ignore {
                        continue;
                    }
                    let result = handle(&mut st, command);
                    (result, !(create && (lose || drop_after)), create && drop_after, slow)
                };
                if close {
                    return;
                }
                if !answer {
                    continue;
                }
                if let Some(after) = slow {
                    held.push((tokio::time::Instant::now() + after, id, result));
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
