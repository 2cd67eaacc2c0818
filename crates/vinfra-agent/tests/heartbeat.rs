//! The agent's heartbeats against the real console (in process, over real mutual TLS): a host
//! whose reports stall stays connected as long as its heartbeats arrive, and one whose
//! heartbeats stop is disconnected within the console's heartbeat timeout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vinfra_agent::connection::{connect_loop, ensure_credentials, HostInfo, SessionTiming};
use vinfra_agent::qemu::fake::FakeRunner;
use vinfra_agent::{Manager, ManagerConfig};
use vinfra_console::ConsoleConfig;
use vinfra_proto::VmInstance;
use vinfra_types::{Accel, BootSource, HostCapacity, PowerState, VmSpec};

/// Forwards TCP connections to `to` until `cut` is set; from then on it reads and drops what
/// either side sends, keeping both connections open (a partition, not a close).
async fn relay(to: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((a, _)) = listener.accept().await else {
                return;
            };
            let Ok(b) = TcpStream::connect(to).await else {
                continue;
            };
            let (ar, aw) = a.into_split();
            let (br, bw) = b.into_split();
            tokio::spawn(pipe(ar, bw, cut.clone()));
            tokio::spawn(pipe(br, aw, cut.clone()));
        }
    });
    addr
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !cut.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn host_status(client: &reqwest::Client, base: &str, token: &str) -> String {
    let r = client
        .get(format!("{base}/api/v1/hosts/h1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    body["status"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reports_keep_a_host_connected_and_lost_heartbeats_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ConsoleConfig::new(tmp.path().join("console"));
    config.api_listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    config.tls = false;
    config.token_file = Some(tmp.path().join("token"));
    let timeout = config.heartbeat_timeout;
    assert_eq!(timeout, Duration::from_secs(3));
    let console = vinfra_console::start(config).await.unwrap();
    let token = console.api_token.clone().unwrap();
    let base = format!("http://{}", console.api_addr);
    let tls = vinfra_proto::pki::client_config(&console.ca_pem, None).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .build()
        .unwrap();
    let r: serde_json::Value = client
        .post(format!("{base}/api/v1/join-tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let join = r["token"].as_str().unwrap().to_string();

    let cut = Arc::new(AtomicBool::new(false));
    let via = relay(console.agent_addr, cut.clone()).await.to_string();
    let data = tmp.path().join("agent");
    std::fs::create_dir_all(&data).unwrap();
    let creds = ensure_credentials(&data, &via, "h1", Some(&join))
        .await
        .unwrap();

    // One VM, whose QEMU will stop answering; a report then waits 12 s for it.
    let ds = tmp.path().join("ds");
    std::fs::create_dir_all(ds.join("images")).unwrap();
    std::fs::write(ds.join("images/vmlinuz"), b"kernel").unwrap();
    let fake = FakeRunner::new(Accel::Tcg);
    let manager = Manager::open(ManagerConfig {
        data_dir: data.clone(),
        datastore: ds,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        runner: Arc::new(fake.clone()),
        switch: None,
    })
    .await
    .unwrap()
    .with_observe_timeout(Duration::from_secs(12));
    let vm = VmInstance {
        id: uuid::Uuid::new_v4(),
        spec: VmSpec {
            name: "a".into(),
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
    };
    let id = vm.id;
    assert_eq!(
        manager.create(vm, true).await.unwrap().state,
        PowerState::Running
    );
    let manager = Arc::new(manager);
    let contact = manager.contact().clone();
    let info = HostInfo {
        host: "h1".into(),
        address: "127.0.0.1".into(),
        qemu_version: "9.2.0".into(),
        platform: None,
        capacity: HostCapacity {
            cores: 2,
            memory_mib: 2048,
        },
        guard: None,
    };
    let timing = SessionTiming {
        report_interval: Duration::from_secs(1),
        heartbeat: Duration::from_secs(1),
        unchanged_every: 1,
    };
    let agent =
        tokio::spawn(async move { connect_loop(&via, &creds, manager, &info, timing).await });

    // Connected, and a first heartbeat acknowledged (the console shows the host connected at
    // its Hello, up to a heartbeat before the agent has any contact to count).
    let t = Instant::now();
    while host_status(&client, &base, &token).await != "connected" || contact.age().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10), "h1 never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Reports stall for 10 s; the host stays connected throughout and in contact.
    fake.wedge(id);
    let stalled = Instant::now();
    let mut polls = 0;
    while stalled.elapsed() < Duration::from_secs(10) {
        let status = host_status(&client, &base, &token).await;
        assert_eq!(status, "connected", "after {:?}", stalled.elapsed());
        let age = contact.age().expect("console contact");
        assert!(age < Duration::from_secs(3), "contact {age:?} old");
        polls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, observed) = console.console.agents().observed("h1");
    let report_age = observed.unwrap().received.elapsed();
    assert!(
        report_age >= Duration::from_secs(8),
        "a report arrived {report_age:?} ago: the reports did not stall"
    );
    eprintln!("connected through {polls} polls; last report {report_age:?} old");

    // Heartbeats stop (the connection stays open, nothing gets through): disconnected within
    // the heartbeat timeout and a second, and the agent's contact ages.
    cut.store(true, Ordering::SeqCst);
    let lost = Instant::now();
    while host_status(&client, &base, &token).await != "disconnected" {
        assert!(
            lost.elapsed() < timeout + Duration::from_secs(1),
            "still connected {:?} after the heartbeats stopped",
            lost.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = lost.elapsed();
    assert!(took >= timeout - Duration::from_millis(1100), "{took:?}");
    let age = contact.age().unwrap();
    assert!(age >= took, "contact only {age:?} old");
    eprintln!("disconnected {took:?} after the heartbeats stopped");

    agent.abort();
    fake.unwedge(id);
    console.shutdown().await.unwrap();
}
