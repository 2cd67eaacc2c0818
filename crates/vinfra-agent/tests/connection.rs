//! The agent joins a real TLS console stub (cluster CA from vinfra-proto), then speaks the protocol.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vinfra_agent::connection::{
    connect_loop, ensure_credentials, ConnectionError, HostInfo, SessionTiming,
};
use vinfra_agent::qemu::qmp::QemuRunner;
use vinfra_agent::{Manager, ManagerConfig};
use vinfra_proto::frame::FramedJson;
use vinfra_proto::pki::{self, ClusterCa, JoinToken};
use vinfra_proto::{AgentCommand, AgentMessage, CommandError, ConsoleMessage, HostReport};
use vinfra_types::{Accel, HostCapacity};

enum Seen {
    Hello(String, HostReport),
    Report,
    Heartbeat,
    Response(u64, Result<vinfra_proto::CommandReply, CommandError>),
}

#[tokio::test]
async fn join_then_hello_reports_and_requests() {
    let ca = Arc::new(ClusterCa::generate("test").unwrap());
    let server = ca.issue_server_cert(&["127.0.0.1".to_string()]).unwrap();
    let config = pki::server_config_with_optional_client_auth(
        &server.cert_pem,
        &server.key_pem,
        ca.cert_pem(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let token = JoinToken::generate(&ca.fingerprint()).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();

    let ca2 = ca.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, ca, seen_tx) = (acceptor.clone(), ca2.clone(), seen_tx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let host = pki::peer_host_name_of_stream(&tls);
                let mut conn = FramedJson::new(tls);
                match host {
                    None => {
                        if let Ok(AgentMessage::Join { host, csr_pem, .. }) = conn.recv().await {
                            let cert_pem = ca.sign_host_csr(&csr_pem, &host).unwrap();
                            let reply = ConsoleMessage::Joined {
                                cert_pem,
                                ca_pem: ca.cert_pem().into(),
                            };
                            conn.send(&reply).await.unwrap();
                        }
                    }
                    Some(host) => {
                        let AgentMessage::Hello { report, .. } = conn.recv().await.unwrap() else {
                            panic!("expected Hello")
                        };
                        seen_tx.send(Seen::Hello(host, report)).unwrap();
                        let cmd = AgentCommand::StartVm {
                            id: uuid::Uuid::nil(),
                            slot: None,
                        };
                        conn.send(&ConsoleMessage::Request {
                            id: 42,
                            command: cmd,
                        })
                        .await
                        .unwrap();
                        while let Ok(msg) = conn.recv::<AgentMessage>().await {
                            let s = match msg {
                                AgentMessage::Report { .. } => Seen::Report,
                                AgentMessage::Heartbeat { seq } => {
                                    let ack = ConsoleMessage::HeartbeatAck { seq };
                                    if conn.send(&ack).await.is_err() {
                                        break;
                                    }
                                    Seen::Heartbeat
                                }
                                AgentMessage::Response { id, result } => Seen::Response(id, result),
                                other => panic!("unexpected {other:?}"),
                            };
                            if seen_tx.send(s).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    // No certificate and no token: a clear error.
    assert!(matches!(
        ensure_credentials(tmp.path(), &addr, "host-1", None).await,
        Err(ConnectionError::NotJoined)
    ));
    // A token pinning another CA is refused.
    let other = JoinToken::generate(&ClusterCa::generate("x").unwrap().fingerprint()).unwrap();
    assert!(
        ensure_credentials(tmp.path(), &addr, "host-1", Some(&other.to_string()))
            .await
            .is_err()
    );
    assert!(!tmp.path().join("host.key").exists());

    let creds = ensure_credentials(tmp.path(), &addr, "host-1", Some(&token.to_string()))
        .await
        .unwrap();
    assert_eq!(creds.ca_pem.trim(), ca.cert_pem().trim());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(tmp.path().join("host.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Stored: no token needed the second time.
    ensure_credentials(tmp.path(), &addr, "host-1", None)
        .await
        .unwrap();

    let manager = Arc::new(
        Manager::open(ManagerConfig {
            data_dir: tmp.path().join("data"),
            datastore: tmp.path().join("ds"),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            runner: Arc::new(QemuRunner {
                binary: "qemu-system-x86_64".into(),
                accel: Accel::Tcg,
                guard: None,
            }),
            switch: None,
        })
        .await
        .unwrap(),
    );
    let info = HostInfo {
        host: "host-1".into(),
        address: "127.0.0.1".into(),
        qemu_version: "7.2.0".into(),
        platform: None,
        capacity: HostCapacity {
            cores: 8,
            memory_mib: 4096,
        },
        guard: None,
    };
    let contact = manager.contact().clone();
    assert_eq!(contact.last(), None);
    let agent =
        tokio::spawn(
            async move { connect_loop(&addr, &creds, manager, &info, every_100_ms()).await },
        );

    let Seen::Hello(host, report) = next(&mut seen).await else {
        panic!("expected Hello first")
    };
    assert_eq!(host, "host-1");
    assert_eq!(report.host, "host-1");
    assert_eq!(
        report.capacity,
        HostCapacity {
            cores: 8,
            memory_mib: 4096
        }
    );
    assert!(report.vms.is_empty());
    let (mut reports, mut heartbeats, mut response) = (0, 0, None);
    while reports < 2 || heartbeats < 2 || response.is_none() {
        match next(&mut seen).await {
            Seen::Report => reports += 1,
            Seen::Heartbeat => heartbeats += 1,
            Seen::Response(id, result) => response = Some((id, result)),
            Seen::Hello(..) => panic!("second Hello"),
        }
    }
    // The acknowledged heartbeats are the host's console contact.
    let t = std::time::Instant::now();
    while contact.age().is_none_or(|a| a > Duration::from_secs(1)) {
        assert!(t.elapsed() < Duration::from_secs(10), "no console contact");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (id, result) = response.unwrap();
    assert_eq!(id, 42);
    assert_eq!(
        result,
        Err(CommandError::NoSuchVm {
            id: uuid::Uuid::nil()
        })
    );
    agent.abort();
}

/// Reports and heartbeats every 100 ms.
fn every_100_ms() -> SessionTiming {
    SessionTiming {
        report_interval: Duration::from_millis(100),
        heartbeat: Duration::from_millis(100),
        unchanged_every: 1,
    }
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap()
}

/// An agent started before the console keeps trying (backoff capped at 5 s), joins once the
/// console listens, and reconnects after the console drops it.
#[tokio::test]
async fn an_agent_started_before_the_console_joins_when_it_appears() {
    use vinfra_agent::connection::{
        ensure_credentials_retrying, next_backoff, BACKOFF_MAX, BACKOFF_START,
    };
    let mut b = BACKOFF_START;
    for _ in 0..20 {
        b = next_backoff(b);
        assert!(b <= Duration::from_secs(5));
    }
    assert_eq!(b, BACKOFF_MAX);

    let ca = Arc::new(ClusterCa::generate("test").unwrap());
    let server = ca.issue_server_cert(&["127.0.0.1".to_string()]).unwrap();
    let config = pki::server_config_with_optional_client_auth(
        &server.cert_pem,
        &server.key_pem,
        ca.cert_pem(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    // Reserve a port, then leave it closed: nothing listens there yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let token = JoinToken::generate(&ca.fingerprint()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let manager = Arc::new(
        Manager::open(ManagerConfig {
            data_dir: tmp.path().join("data"),
            datastore: tmp.path().join("ds"),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            runner: Arc::new(QemuRunner {
                binary: "qemu-system-x86_64".into(),
                accel: Accel::Tcg,
                guard: None,
            }),
            switch: None,
        })
        .await
        .unwrap(),
    );
    let info = HostInfo {
        host: "early".into(),
        address: "127.0.0.1".into(),
        qemu_version: "7.2.0".into(),
        platform: None,
        capacity: HostCapacity {
            cores: 2,
            memory_mib: 2048,
        },
        guard: None,
    };
    let console = addr.to_string();
    let dir = tmp.path().to_path_buf();
    let token_s = token.to_string();
    let agent = tokio::spawn(async move {
        let creds = ensure_credentials_retrying(&dir, &console, "early", Some(&token_s)).await?;
        connect_loop(&console, &creds, manager, &info, every_100_ms()).await
    });
    // The agent finds no console for a while and keeps trying.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!agent.is_finished(), "the agent gave up: {:?}", agent.await);

    let listener = TcpListener::bind(addr).await.unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let mut sessions = 0;
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let host = pki::peer_host_name_of_stream(&tls);
            let mut conn = FramedJson::new(tls);
            match host {
                None => {
                    if let Ok(AgentMessage::Join { host, csr_pem, .. }) = conn.recv().await {
                        let cert_pem = ca.sign_host_csr(&csr_pem, &host).unwrap();
                        let reply = ConsoleMessage::Joined {
                            cert_pem,
                            ca_pem: ca.cert_pem().into(),
                        };
                        conn.send(&reply).await.unwrap();
                    }
                }
                Some(host) => {
                    if let Ok(AgentMessage::Hello { report, .. }) = conn.recv().await {
                        sessions += 1;
                        let _ = seen_tx.send(Seen::Hello(host, report));
                        // The first session is dropped at once: the agent must come back.
                        if sessions == 1 {
                            continue;
                        }
                        loop {
                            match conn.recv().await {
                                Ok(AgentMessage::Report { .. }) => {
                                    if seen_tx.send(Seen::Report).is_err() {
                                        return;
                                    }
                                }
                                Ok(AgentMessage::Heartbeat { .. }) => {}
                                _ => break,
                            }
                        }
                    }
                }
            }
        }
    });
    for _ in 0..2 {
        let Seen::Hello(host, _) = next(&mut seen).await else {
            panic!("expected Hello")
        };
        assert_eq!(host, "early");
    }
    assert!(matches!(next(&mut seen).await, Seen::Report));
    assert!(tmp.path().join("host.crt").exists(), "credentials stored");
    agent.abort();
    server.abort();
}

/// A session of a fresh agent (no VM, no switch, no guard) with `timing`, on a connection this
/// test accepts: the agent's manager, the session's task and the console's end (after the
/// Hello, whose report is checked empty).
async fn fresh_session(
    tmp: &tempfile::TempDir,
    timing: SessionTiming,
) -> (
    Arc<Manager>,
    tokio::task::JoinHandle<Result<(), vinfra_agent::connection::ConnectionError>>,
    FramedJson<tokio::net::TcpStream>,
) {
    use vinfra_agent::connection::session;
    let ds = tmp.path().join("ds");
    std::fs::create_dir_all(ds.join("images")).unwrap();
    std::fs::write(ds.join("images/vmlinuz"), b"not a kernel").unwrap();
    let manager = Arc::new(
        Manager::open(ManagerConfig {
            data_dir: tmp.path().join("data"),
            datastore: ds,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            runner: Arc::new(QemuRunner {
                binary: "qemu-system-x86_64".into(),
                accel: Accel::Tcg,
                guard: None,
            }),
            switch: None,
        })
        .await
        .unwrap(),
    );
    let info = HostInfo {
        host: "fresh".into(),
        address: "127.0.0.1".into(),
        qemu_version: "7.2.0".into(),
        platform: None,
        capacity: HostCapacity {
            cores: 2,
            memory_mib: 2048,
        },
        guard: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let m = manager.clone();
    let agent = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        session(tcp, m, &info, timing).await
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut conn = FramedJson::new(tcp);
    let AgentMessage::Hello { report, .. } = recv(&mut conn).await else {
        panic!("expected Hello")
    };
    assert!(report.vms.is_empty());
    (manager, agent, conn)
}

/// A stopped VM named `name` that boots nothing (it is never started here).
fn defined_vm(name: &str) -> vinfra_proto::VmInstance {
    use vinfra_types::{BootSource, VmSpec};
    vinfra_proto::VmInstance {
        id: uuid::Uuid::new_v4(),
        spec: VmSpec {
            name: name.into(),
            vcpus: 1,
            memory_mib: 64,
            boot: BootSource::Kernel {
                kernel: "vmlinuz".into(),
                initrd: None,
                cmdline: String::new(),
            },
            disks: vec![],
            nics: vec![],
            ha: Default::default(),
        },
        started_at: None,
        slot: None,
        platform: None,
    }
}

/// After a create (a command whose answer carries the VM) the agent sends the `Response` at
/// once, and no report: the console takes the answer into the host's report, and the host did
/// not change in more than that. A command that may have changed something without saying
/// how (a failed one) is preceded by a fresh report when the host changed (here: a VM defined
/// behind the console's back), and by none when it did not. The periodic reports are an hour
/// apart here: every report seen is one of those.
#[tokio::test]
async fn a_report_follows_a_command_only_when_it_tells_more_than_the_answer() {
    use vinfra_proto::CommandReply;
    use vinfra_types::PowerState;

    let tmp = tempfile::tempdir().unwrap();
    let timing = SessionTiming {
        report_interval: Duration::from_secs(3600),
        heartbeat: Duration::from_secs(3600),
        unchanged_every: 1,
    };
    let (manager, agent, mut conn) = fresh_session(&tmp, timing).await;
    let vm = defined_vm("defined");
    let id = vm.id;
    conn.send(&ConsoleMessage::Request {
        id: 1,
        command: AgentCommand::CreateVm { vm, start: false },
    })
    .await
    .unwrap();
    let AgentMessage::Response { id: 1, result } = recv(&mut conn).await else {
        panic!("expected the answer to request 1 first")
    };
    assert!(
        matches!(&result, Ok(CommandReply::Vm { vm }) if vm.state == PowerState::Stopped),
        "{result:?}"
    );
    // Read-only: the answer comes alone, and is the next message (no report came after the
    // create's answer).
    conn.send(&ConsoleMessage::Request {
        id: 2,
        command: AgentCommand::ObserveVm { id, wait_ms: 0 },
    })
    .await
    .unwrap();
    let msg = recv(&mut conn).await;
    assert!(
        matches!(
            &msg,
            AgentMessage::Response { id: 2, result: Ok(CommandReply::Vm { vm }) }
                if vm.id == id && vm.state == PowerState::Stopped
        ),
        "{msg:?}"
    );

    // A delete: answered, and nothing more.
    conn.send(&ConsoleMessage::Request {
        id: 3,
        command: AgentCommand::DeleteVm {
            id,
            delete_disks: true,
        },
    })
    .await
    .unwrap();
    let msg = recv(&mut conn).await;
    assert!(
        matches!(
            msg,
            AgentMessage::Response {
                id: 3,
                result: Ok(CommandReply::Done)
            }
        ),
        "{msg:?}"
    );
    // Nothing came after the delete's answer: the next message answers the next request.
    conn.send(&ConsoleMessage::Request {
        id: 30,
        command: AgentCommand::ObserveVm { id, wait_ms: 0 },
    })
    .await
    .unwrap();
    let msg = recv(&mut conn).await;
    assert!(
        matches!(
            msg,
            AgentMessage::Response {
                id: 30,
                result: Err(CommandError::NoSuchVm { .. })
            }
        ),
        "{msg:?}"
    );
    // A VM the console did not ask for appears; a failed command may have changed something:
    // the fresh report comes before the answer.
    let behind = manager.create(defined_vm("behind"), false).await.unwrap();
    let stop = |n: u64| ConsoleMessage::Request {
        id: n,
        command: AgentCommand::StopVm {
            id,
            force: true,
            timeout_s: 1,
        },
    };
    conn.send(&stop(4)).await.unwrap();
    let msg = recv(&mut conn).await;
    let AgentMessage::Report { report } = msg else {
        panic!("expected the fresh report before the answer, got {msg:?}")
    };
    let seen: Vec<_> = report.vms.iter().map(|v| (v.id, v.state)).collect();
    assert_eq!(seen, vec![(behind.id, PowerState::Stopped)]);
    let failed = |msg: &AgentMessage, n: u64| {
        matches!(
            msg,
            AgentMessage::Response { id, result: Err(CommandError::NoSuchVm { .. }) } if *id == n
        )
    };
    let msg = recv(&mut conn).await;
    assert!(failed(&msg, 4), "{msg:?}");
    // The same failure again: nothing changed since, so no report.
    conn.send(&stop(5)).await.unwrap();
    let msg = recv(&mut conn).await;
    assert!(failed(&msg, 5), "{msg:?}");
    agent.abort();
}

/// Every report interval the agent reads a report, and sends it when the host changed; else
/// only every `unchanged_every`-th interval (the moving values: use, uptimes, traffic).
#[tokio::test]
async fn an_unchanged_host_reports_every_nth_interval_a_changed_one_at_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let interval = Duration::from_millis(300);
    let timing = SessionTiming {
        report_interval: interval,
        heartbeat: Duration::from_secs(3600),
        unchanged_every: 10,
    };
    let (manager, agent, mut conn) = fresh_session(&tmp, timing).await;
    let start = std::time::Instant::now();
    // Nothing changes: the first periodic report comes after ten intervals, not one.
    let AgentMessage::Report { report } = recv(&mut conn).await else {
        panic!("expected a report")
    };
    assert!(report.vms.is_empty());
    let quiet = start.elapsed();
    assert!(quiet >= interval * 6, "an unchanged report after {quiet:?}");
    // A VM appears behind the console's back: reported at the next interval (well before the
    // next ten passed).
    let at = std::time::Instant::now();
    let behind = manager.create(defined_vm("behind"), false).await.unwrap();
    let AgentMessage::Report { report } = recv(&mut conn).await else {
        panic!("expected a report")
    };
    let took = at.elapsed();
    assert_eq!(report.vms.len(), 1);
    assert_eq!(report.vms[0].id, behind.id);
    assert!(took < interval * 7, "the change reported after {took:?}");
    agent.abort();
}

/// The next message other than a heartbeat.
async fn recv(conn: &mut FramedJson<tokio::net::TcpStream>) -> AgentMessage {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), conn.recv::<AgentMessage>())
            .await
            .expect("the agent answers")
            .expect("a message");
        if !matches!(msg, AgentMessage::Heartbeat { .. }) {
            return msg;
        }
    }
}
