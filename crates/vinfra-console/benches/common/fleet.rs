//! The fake agents: hosts that join through the console's agent endpoint (a join token each, a
//! CSR signed by the cluster CA), connect over mutual TLS, say Hello, send heartbeats and reports
//! as `vinfra agent` does (a report when it tells the console something new, else every
//! [`UNCHANGED_REPORT_EVERY`]-th interval), and answer `CreateVm` at once (no QEMU).

use super::*;

/// One host of the fleet: its name and the VMs it reports from the start.
#[derive(serde::Serialize, serde::Deserialize)]
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

    /// Every (VM name, received, answered), the times as `CLOCK_MONOTONIC` nanoseconds (one
    /// clock for every process of the machine).
    pub fn to_monotonic(&self) -> Vec<(String, u64, u64)> {
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        let ns = |t: Instant| now_ns.saturating_sub(now.duration_since(t).as_nanos() as u64);
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, (received, answered))| (name.clone(), ns(*received), ns(*answered)))
            .collect()
    }

    /// The times of [`CreateTimes::to_monotonic`] (read in another process) as this process's
    /// `Instant`s.
    pub fn from_monotonic(times: Vec<(String, u64, u64)>) -> CreateTimes {
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        let at = |ns: u64| {
            now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(ns)))
                .unwrap_or(now)
        };
        CreateTimes {
            times: Mutex::new(
                times
                    .into_iter()
                    .map(|(name, received, answered)| (name, (at(received), at(answered))))
                    .collect(),
            ),
        }
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

impl FleetCounters {
    /// The counters as they are now.
    pub fn snapshot(&self) -> FleetCount {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FleetCount {
            reports: get(&self.reports),
            heartbeats: get(&self.heartbeats),
            requests: get(&self.requests),
            creates: get(&self.creates),
            switch_pushes: get(&self.switch_pushes),
            reconnects: get(&self.reconnects),
            join_retries: get(&self.join_retries),
            ended: get(&self.ended),
        }
    }
}

/// [`FleetCounters`] read at one moment (what a fleet in another process answers).
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct FleetCount {
    /// Reports sent (Hello excluded).
    pub reports: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Requests answered.
    pub requests: u64,
    /// `CreateVm` requests answered.
    pub creates: u64,
    /// `ApplySwitchConfig` requests answered.
    pub switch_pushes: u64,
    /// Sessions opened again after the console closed one.
    pub reconnects: u64,
    /// Join attempts tried again.
    pub join_retries: u64,
    /// Connections that ended.
    pub ended: u64,
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

/// The host's report, its VMs in name order as `vinfra agent` lists them.
fn report(host: &str, capacity: HostCapacity, vms: &[VmObserved]) -> HostReport {
    let mut vms = vms.to_vec();
    vms.sort_by(|a, b| a.name.cmp(&b.name));
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
        vms,
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

/// One agent session: Hello, then a report every `interval` when it tells something new, else
/// every [`UNCHANGED_REPORT_EVERY`]-th (the first after `offset`), a
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
    // What the console holds: the last report sent, with the answers sent since taken in.
    let mut sent = report(host, capacity, vms);
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        report: sent.clone(),
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
    // Report intervals since the last report sent.
    let mut skipped = 0;
    // Sends the report of `vms` when it tells the console something new (or `due`), as
    // `vinfra agent` does (vinfra-agent's `connection::reports`).
    macro_rules! offer {
        ($due:expr) => {{
            let r = report(host, capacity, vms);
            if $due || !r.same_state(&sent) {
                sent = r.clone();
                skipped = 0;
                if tx.send(&AgentMessage::Report { report: r }).await.is_err() {
                    break;
                }
                counters.reports.fetch_add(1, Ordering::Relaxed);
            }
        }};
    }
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
                // A command that may change a VM is followed by a fresh report when it tells
                // something new, as `vinfra agent` sends it (vinfra-agent's
                // `connection::session`): after the answer when a create, start, stop, reboot
                // or delete succeeded (the answer carries the VM, and both ends take it into
                // the host's report), else before it.
                let changes = command.changes_vm_state();
                let first = command.answer_carries_vm();
                let effect = command.answer_effect();
                let result = answer(vms, command);
                let report_after = changes && first && result.is_ok();
                if changes && !report_after {
                    offer!(false);
                }
                if let Ok(reply) = &result {
                    effect.apply(reply, &mut sent.vms);
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
                    offer!(false);
                }
            }
            _ = tick.tick() => {
                skipped += 1;
                offer!(skipped >= UNCHANGED_REPORT_EVERY);
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
