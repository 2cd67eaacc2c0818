//! Shared by the console benchmarks: an in-process console (real store, real HTTPS, bearer
//! token), a store filled directly before the console starts (VM records, placement rules), and a
//! fleet of fake agents that join through the agent endpoint, connect over mutual TLS, say Hello
//! and report every VM they hold on a heartbeat, and answer `CreateVm` at once (followed, as
//! `vinfra agent` does, by a fresh report).
//!
//! Everything the benchmarks know about the console's insides is in this file (store keys and
//! records, the start-up API); the benchmarks themselves speak HTTP and the agent protocol.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use uuid::Uuid;
use vinfra_console::state::records::{self as keys, DesiredPower, VmRecord};
use vinfra_console::{ConsoleConfig, RunningConsole};
use vinfra_proto::frame::FramedJson;
use vinfra_proto::{
    pki, AgentCommand, AgentMessage, CommandError, CommandReply, ConsoleMessage, HostReport,
    PROTOCOL_VERSION,
};
use vinfra_store::{Op, SqliteStore, Store, Txn};
use vinfra_types::balancing::PlacementRule;
use vinfra_types::{
    Accel, BootSource, HostCapacity, HostUsage, PowerState, VmObserved, VmSpec, VmUsage,
};

/// How often a real agent reports (`vinfra agent`): every 2 s.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// How often a real agent sends a heartbeat (`vinfra agent`): every second. The console counts
/// a host disconnected after 3 s without any message.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Panics with `what` and the error.
pub fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A small VM specification (kernel boot, no disks or NICs).
pub fn spec(name: &str, vcpus: u32, memory_mib: u64) -> VmSpec {
    VmSpec {
        name: name.to_string(),
        vcpus,
        memory_mib,
        boot: BootSource::Kernel {
            kernel: "vmlinuz".into(),
            initrd: Some("initrd.img".into()),
            cmdline: "console=ttyS0".into(),
        },
        disks: Vec::new(),
        nics: Vec::new(),
        ha: Default::default(),
    }
}

/// A VM that exists before the console starts: written straight into the store.
pub struct SeedVm {
    /// Its record's id (what its host reports).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its specification.
    pub spec: VmSpec,
}

/// Writes `vms` (desired running) and `rules` into the console's store at `dir` before the
/// console starts, in transactions of 5,000 records.
pub fn seed_store(dir: &Path, vms: &[SeedVm], rules: &[PlacementRule]) {
    let store = ok(SqliteStore::open(&dir.join("console.db")), "open the store");
    let mut ops: Vec<Op> = vms
        .iter()
        .zip(0u32..)
        .map(|(v, slot)| {
            let rec = VmRecord {
                id: v.id,
                spec: v.spec.clone(),
                host: v.host.clone(),
                desired: DesiredPower::Running,
                created_at: 1,
                started_at: Some(1),
                failed_over: None,
                restarts: 0,
                slot: Some(slot),
                platform: None,
            };
            Op::Put {
                key: keys::vm_key(&v.name),
                value: ok(keys::encode(&rec), "encode a VM record"),
                lease: 0,
            }
        })
        .collect();
    ops.extend(rules.iter().map(|r| Op::Put {
        key: keys::rule_key(&r.name),
        value: ok(keys::encode(r), "encode a rule"),
        lease: 0,
    }));
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(5_000));
        let chunk = std::mem::replace(&mut ops, rest);
        ok(
            store.txn(Txn {
                compare: vec![],
                success: chunk,
                failure: vec![],
            }),
            "seed the store",
        );
    }
}

/// A console started in-process on 127.0.0.1 (REST over HTTPS, agents over mutual TLS) and an
/// API client that trusts only the cluster CA.
pub struct Bench {
    /// The console.
    pub running: RunningConsole,
    /// The API client (keep-alive, HTTP/1.1).
    pub client: reqwest::Client,
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// The API token.
    pub token: String,
}

impl Bench {
    /// Starts the console on the store at `dir` (call from inside the console's runtime).
    pub async fn start(dir: &Path) -> Bench {
        let mut config = ConsoleConfig::new(dir.to_path_buf());
        config.api_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.agent_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.tls = true;
        config.token_file = Some(dir.join("token"));
        // One token sends thousands of requests a second here: the per-token rate limit is off
        // (docs/design.md, "Limits"), and every client connection is served.
        config.api_limits.rate = None;
        config.api_limits.max_connections = 4096;
        let running = ok(vinfra_console::start(config).await, "start the console");
        let token = running
            .api_token
            .clone()
            .expect("a first start makes a token");
        let tls = ok(pki::client_config(&running.ca_pem, None), "client TLS");
        let client = ok(
            reqwest::Client::builder()
                .tls_backend_preconfigured((*tls).clone())
                .http1_only()
                .pool_max_idle_per_host(256)
                .build(),
            "HTTP client",
        );
        let base = format!("https://127.0.0.1:{}", running.api_addr.port());
        Bench {
            running,
            client,
            base,
            token,
        }
    }

    /// What the API client needs (to use from another runtime).
    pub fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
        }
    }

    /// Where agents dial, and the CA they trust.
    pub fn agent_endpoint(&self) -> (SocketAddr, String) {
        (self.running.agent_addr, self.running.ca_pem.clone())
    }
}

/// A cheap handle on the REST API.
#[derive(Clone)]
pub struct Api {
    /// The client.
    pub client: reqwest::Client,
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// The API token.
    pub token: String,
}

impl Api {
    /// `GET path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let r = ok(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await,
            "GET",
        );
        let status = r.status().as_u16();
        (status, ok(r.bytes().await, "body").to_vec())
    }

    /// `POST path` with a JSON body: status and body.
    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, Vec<u8>) {
        let r = ok(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await,
            "POST",
        );
        let status = r.status().as_u16();
        (status, ok(r.bytes().await, "body").to_vec())
    }
}

/// One host of the fleet: its name and the VMs it reports from the start.
pub struct FleetHost {
    /// Host name.
    pub name: String,
    /// What it reports at Hello and in every report.
    pub vms: Vec<VmObserved>,
}

/// A running VM as an agent reports it.
pub fn running(id: Uuid, name: &str) -> VmObserved {
    VmObserved {
        id,
        name: name.to_string(),
        state: PowerState::Running,
        pid: Some(1000),
        uptime_s: 60,
        usage: VmUsage {
            cpu_time_ms: 1000,
            cpu_cores: 0.2,
            rss_mib: 200,
        },
        unresponsive: false,
        ha: false,
        net: None,
    }
}

/// When a `CreateVm` reached a fake agent and when its answer left, per VM name.
#[derive(Default)]
pub struct CreateTimes {
    times: Mutex<HashMap<String, (Instant, Instant)>>,
}

impl CreateTimes {
    /// (received, answered) for VM `name`.
    pub fn get(&self, name: &str) -> Option<(Instant, Instant)> {
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }
}

/// What the fleet did, counted across its agents.
#[derive(Default)]
pub struct FleetCounters {
    /// Reports sent (Hello excluded).
    pub reports: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// `CreateVm` requests answered.
    pub creates: AtomicU64,
    /// `ApplySwitchConfig` requests answered (the console's switch pushes).
    pub switch_pushes: AtomicU64,
    /// Sessions that were opened again after the console closed one.
    pub reconnects: AtomicU64,
    /// Join attempts that failed and were tried again.
    pub join_retries: AtomicU64,
    /// Connections that ended.
    pub ended: AtomicU64,
}

/// Fake agents, one task per host, on the runtime that joined them.
pub struct Fleet {
    /// Hosts joined (all of them unless the deadline passed first).
    pub joined: usize,
    /// Why the last failed join attempt failed (empty when none did).
    pub last_join_error: String,
    /// Counters.
    pub counters: Arc<FleetCounters>,
    /// `CreateVm` timing.
    pub creates: Arc<CreateTimes>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = ok(
        TcpStream::connect(addr).await,
        "connect to the agent endpoint",
    );
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ok(pki::server_name_for(&addr.to_string()), "server name");
    ok(connector.connect(name, tcp).await, "TLS handshake")
}

/// Joins `host` with a fresh join token: (certificate, key), PEM; the error says which step
/// failed (a console too busy to accept, say).
async fn join(
    api: &Api,
    addr: SocketAddr,
    ca_pem: &str,
    host: &str,
) -> Result<(String, String), String> {
    let (status, body) = api
        .post("/api/v1/join-tokens", &serde_json::json!({}))
        .await;
    if status != 201 {
        return Err(format!(
            "join token: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let token = v["token"].as_str().ok_or("no token")?.to_string();
    let (key_pem, csr_pem) = ok(pki::generate_host_key_and_csr(host), "host key and CSR");
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ok(pki::server_name_for(&addr.to_string()), "server name");
    let tls = tokio_rustls::TlsConnector::from(ok(pki::client_config(ca_pem, None), "TLS"))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let mut framed = FramedJson::new(tls);
    framed
        .send(&AgentMessage::Join {
            token,
            host: host.into(),
            csr_pem,
        })
        .await
        .map_err(|e| format!("send Join: {e}"))?;
    match framed.recv::<ConsoleMessage>().await {
        Ok(ConsoleMessage::Joined { cert_pem, .. }) => Ok((cert_pem, key_pem)),
        Ok(other) => Err(format!("join refused: {other:?}")),
        Err(e) => Err(format!("join answer: {e}")),
    }
}

fn report(host: &str, capacity: HostCapacity, vms: &[VmObserved]) -> HostReport {
    HostReport {
        host: host.into(),
        address: "127.0.0.1".into(),
        accel: Accel::Kvm,
        qemu_version: "9.2.0".into(),
        capacity,
        usage: HostUsage {
            cpu_cores: 1.0,
            memory_used_mib: 4096,
        },
        vms: vms.to_vec(),
        trunk: None,
        underlay_mtu: 1500,
        guard: None,
    }
}

/// What a fake agent answers: `CreateVm` at once (the VM runs from then on and is in every
/// later report), switch and HA settings accepted, `ObserveVm`, `DeleteVm` and `SetVmHa` from
/// its table;
/// anything else is refused.
fn answer(vms: &mut Vec<VmObserved>, command: AgentCommand) -> Result<CommandReply, CommandError> {
    match command {
        AgentCommand::CreateVm { vm, start } => {
            let mut o = running(vm.id, &vm.spec.name);
            o.ha = vm.spec.ha.enabled;
            if !start {
                o.state = PowerState::Stopped;
                o.pid = None;
            }
            vms.retain(|v| v.id != vm.id);
            vms.push(o.clone());
            Ok(CommandReply::Vm { vm: o })
        }
        AgentCommand::ApplySwitchConfig { .. }
        | AgentCommand::SetHa { .. }
        | AgentCommand::SetFlowExport { .. } => Ok(CommandReply::Done),
        AgentCommand::SetVmHa { id, ha } => {
            let v = vms
                .iter_mut()
                .find(|v| v.id == id)
                .ok_or(CommandError::NoSuchVm { id })?;
            v.ha = ha;
            Ok(CommandReply::Done)
        }
        AgentCommand::ObserveVm { id, .. } => vms
            .iter()
            .find(|v| v.id == id)
            .map(|v| CommandReply::Vm { vm: v.clone() })
            .ok_or(CommandError::NoSuchVm { id }),
        AgentCommand::DeleteVm { id, .. } => {
            let before = vms.len();
            vms.retain(|v| v.id != id);
            if vms.len() == before {
                Err(CommandError::NoSuchVm { id })
            } else {
                Ok(CommandReply::Done)
            }
        }
        AgentCommand::SwitchCounters => Ok(CommandReply::SwitchCounters {
            counters: Default::default(),
        }),
        other => Err(CommandError::Host {
            detail: format!("the benchmark's agent does not do {other:?}"),
        }),
    }
}

/// One agent: a session, and a new one a second after the console closed it (as `vinfra agent`
/// reconnects).
#[allow(clippy::too_many_arguments)]
async fn agent(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    host: String,
    capacity: HostCapacity,
    mut vms: Vec<VmObserved>,
    interval: Duration,
    offset: Duration,
    counters: Arc<FleetCounters>,
    creates: Arc<CreateTimes>,
) {
    loop {
        session(
            addr,
            tls.clone(),
            &host,
            capacity,
            &mut vms,
            interval,
            offset,
            &counters,
            &creates,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// One agent session: Hello, then a report every `interval` (the first after `offset`), a
/// heartbeat every [`HEARTBEAT`] and an answer to every request, until the console closes it.
#[allow(clippy::too_many_arguments)]
async fn session(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    capacity: HostCapacity,
    vms: &mut Vec<VmObserved>,
    interval: Duration,
    offset: Duration,
    counters: &FleetCounters,
    creates: &CreateTimes,
) {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        counters.ended.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = tcp.set_nodelay(true);
    let name = ok(pki::server_name_for(&addr.to_string()), "server name");
    let Ok(stream) = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
    else {
        counters.ended.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (mut tx, mut rx) = FramedJson::new(stream).split();
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        report: report(host, capacity, vms),
        platform: None,
    };
    if tx.send(&hello).await.is_err() {
        counters.ended.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = tokio::time::interval_at(
        tokio::time::Instant::now() + offset.min(HEARTBEAT),
        HEARTBEAT,
    );
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        tokio::select! {
            msg = rx.recv::<ConsoleMessage>() => {
                let (id, command) = match msg {
                    Ok(ConsoleMessage::Request { id, command }) => (id, command),
                    Ok(ConsoleMessage::HeartbeatAck { .. }) => continue,
                    _ => break,
                };
                let received = Instant::now();
                let create = match &command {
                    AgentCommand::CreateVm { vm, .. } => Some(vm.spec.name.clone()),
                    _ => None,
                };
                let push = matches!(command, AgentCommand::ApplySwitchConfig { .. });
                // A command that may change a VM is followed by a fresh report, as `vinfra
                // agent` sends it (vinfra-agent's `connection::session`): after the answer
                // when a create, start, stop, reboot or delete succeeded (the answer carries
                // the VM), else before it.
                let changes = command.changes_vm_state();
                let first = command.answer_carries_vm();
                let result = answer(vms, command);
                let report_after = changes && first && result.is_ok();
                if changes && !report_after {
                    let r = AgentMessage::Report { report: report(host, capacity, vms) };
                    if tx.send(&r).await.is_err() {
                        break;
                    }
                    counters.reports.fetch_add(1, Ordering::Relaxed);
                }
                if tx.send(&AgentMessage::Response { id, result }).await.is_err() {
                    break;
                }
                counters.requests.fetch_add(1, Ordering::Relaxed);
                if push {
                    counters.switch_pushes.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(name) = create {
                    counters.creates.fetch_add(1, Ordering::Relaxed);
                    creates
                        .times
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, (received, Instant::now()));
                }
                if report_after {
                    let r = AgentMessage::Report { report: report(host, capacity, vms) };
                    if tx.send(&r).await.is_err() {
                        break;
                    }
                    counters.reports.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = tick.tick() => {
                let r = AgentMessage::Report { report: report(host, capacity, vms) };
                if tx.send(&r).await.is_err() {
                    break;
                }
                counters.reports.fetch_add(1, Ordering::Relaxed);
            }
            _ = beat.tick() => {
                seq += 1;
                if tx.send(&AgentMessage::Heartbeat { seq }).await.is_err() {
                    break;
                }
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    counters.ended.fetch_add(1, Ordering::Relaxed);
}

impl Fleet {
    /// Joins every host of `hosts` (a join token each, through the API), then connects it and
    /// keeps it reporting every `interval` (spread evenly over the interval). `parallel` joins run
    /// at once; no join starts after `deadline` (the hosts left over stay out). Call from the
    /// runtime the agents should run on.
    pub async fn join(
        api: &Api,
        endpoint: (SocketAddr, String),
        hosts: Vec<FleetHost>,
        capacity: HostCapacity,
        interval: Duration,
        parallel: usize,
        deadline: Instant,
    ) -> Fleet {
        let (addr, ca_pem) = endpoint;
        let counters = Arc::new(FleetCounters::default());
        let creates = Arc::new(CreateTimes::default());
        let n = hosts.len().max(1) as u32;
        let queue = Arc::new(Mutex::new(
            hosts.into_iter().enumerate().collect::<Vec<_>>(),
        ));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let last_error = Arc::new(Mutex::new(String::new()));
        let mut joiners = Vec::new();
        for _ in 0..parallel.max(1) {
            let (api, ca_pem, queue, tasks) =
                (api.clone(), ca_pem.clone(), queue.clone(), tasks.clone());
            let (counters, creates) = (counters.clone(), creates.clone());
            let last_error = last_error.clone();
            joiners.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((i, h)) = next else { break };
                    // Like an agent, try again a second later while the console cannot take it.
                    let joined = loop {
                        match join(&api, addr, &ca_pem, &h.name).await {
                            Ok(j) => break Some(j),
                            Err(e) => {
                                counters.join_retries.fetch_add(1, Ordering::Relaxed);
                                *last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
                            }
                        }
                        if Instant::now() >= deadline {
                            break None;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    };
                    let Some((cert, key)) = joined else { break };
                    let tls = ok(
                        pki::client_config(&ca_pem, Some((&cert, &key))),
                        "agent TLS",
                    );
                    let offset = interval * (i as u32 % n) / n;
                    let t = tokio::spawn(agent(
                        addr,
                        tls,
                        h.name,
                        capacity,
                        h.vms,
                        interval,
                        offset,
                        counters.clone(),
                        creates.clone(),
                    ));
                    tasks.lock().unwrap_or_else(|p| p.into_inner()).push(t);
                }
            }));
        }
        for j in joiners {
            ok(j.await, "joiner");
        }
        let tasks = std::mem::take(&mut *tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let joined = tasks.len();
        let last_join_error =
            std::mem::take(&mut *last_error.lock().unwrap_or_else(|p| p.into_inner()));
        Fleet {
            joined,
            last_join_error,
            counters,
            creates,
            tasks,
        }
    }
}

/// Hosts `h0` … `h{n-1}`, each reporting the seeded VMs placed on it as running.
pub fn fleet_hosts(vms: &[SeedVm], n: usize) -> Vec<FleetHost> {
    (0..n)
        .map(|h| {
            let name = format!("h{h}");
            FleetHost {
                vms: vms
                    .iter()
                    .filter(|v| v.host == name)
                    .map(|v| running(v.id, &v.name))
                    .collect(),
                name,
            }
        })
        .collect()
}

/// A multi-threaded runtime of `workers` threads named `name`.
pub fn runtime(name: &str, workers: usize) -> tokio::runtime::Runtime {
    ok(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build(),
        "runtime",
    )
}

/// Waits until the API lists `n` hosts as connected (polled every 2 s, at most `limit`).
pub async fn wait_connected(api: &Api, n: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = api.get("/api/v1/hosts").await;
        assert_eq!(status, 200, "GET /api/v1/hosts");
        let hosts: Vec<serde_json::Value> = ok(serde_json::from_slice(&body), "host list");
        let connected = hosts.iter().filter(|h| h["status"] == "connected").count();
        if connected >= n || Instant::now() >= deadline {
            return connected;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Raises this process's open-file limit towards `want` (the fleet holds two sockets per host:
/// the agent's and the console's): the soft limit up to the hard one, the hard one too where
/// that is allowed. Returns the limit in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    match sys::raise_nofile(want) {
        Ok(n) => n,
        Err(e) => panic!("open-file limit: {e}"),
    }
}

mod sys {
    use nix::libc;

    /// Sets RLIMIT_NOFILE to `want` (soft and, when lower, hard), else the soft limit to the
    /// hard one; returns the soft limit in force.
    pub fn raise_nofile(want: u64) -> std::io::Result<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit the call writes into.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        let wanted = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        // SAFETY: `wanted` is a valid rlimit the call reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            return Ok(want);
        }
        // Not allowed to raise the hard limit: go as far as it.
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit the call reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(lim.rlim_cur)
    }
}

/// CPU seconds (user + system) spent so far by this process's threads, summed per thread name
/// (`comm`, as tokio's `thread_name` sets it).
pub fn cpu_by_thread() -> HashMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux.
    let mut out: HashMap<String, f64> = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state is field 3 of stat(5), utime 14 and stime 15.
        let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (ticks(14), ticks(15)) {
            *out.entry(name).or_default() += (u + s) / tick;
        }
    }
    out
}

/// CPU seconds spent by threads whose name starts with `prefix` between two readings of
/// [`cpu_by_thread`].
pub fn cpu_between(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
    prefix: &str,
) -> f64 {
    let sum = |m: &HashMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    sum(after) - sum(before)
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// p-th percentile (0..=100) of sorted `samples`.
pub fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = (sorted.len() * p).div_ceil(100).max(1) - 1;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median time of `runs` calls of `f`.
pub fn median_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut v: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Parts of a VM create's cost inside the console, each timed alone (median of several calls)
/// on the running console, with no request in flight.
pub struct CreateSteps {
    /// Reading the cleanup markers (each create checks them).
    pub cleanups: Duration,
    /// One store transaction writing one VM-sized record (SQLite WAL, `synchronous=FULL`: one
    /// fsync), on a store of its own in the same directory.
    pub store_write: Duration,
    /// One host's switch configuration (`networks::push::host_config`): the switch controller
    /// computes one per connected host when VM, network or host records change.
    pub switch_config: Duration,
    /// A copy of every VM record (`vm_records`).
    pub vm_records: Duration,
}

/// Times [`CreateSteps`] on the console of `bench`, with the store directory `dir`.
pub fn create_steps(bench: &Bench, dir: &Path, runs: usize) -> CreateSteps {
    let console = bench.running.console.clone();
    let cleanups = median_of(runs, || ok(console.cleanups(None), "cleanups"));
    let store = ok(SqliteStore::open(&dir.join("probe.db")), "probe store");
    let value = vec![b'x'; 600];
    let mut n = 0;
    let store_write = median_of(runs, || {
        n += 1;
        ok(
            store.txn(Txn {
                compare: vec![],
                success: vec![Op::Put {
                    key: format!("/probe/{n}"),
                    value: value.clone(),
                    lease: 0,
                }],
                failure: vec![],
            }),
            "probe write",
        )
    });
    let host = console
        .host_records()
        .into_iter()
        .next()
        .map(|h| h.name)
        .unwrap_or_default();
    let switch_config = median_of(runs, || {
        ok(
            vinfra_console::networks::push::host_config(&console, &host),
            "switch config",
        )
    });
    let vm_records = median_of(runs, || console.vm_records());
    CreateSteps {
        cleanups,
        store_write,
        switch_config,
        vm_records,
    }
}
