//! Certificate lifecycle against the real console (in process, real mutual TLS, fake QEMU):
//! certificates issued for 30 s are renewed before they expire and the hosts stay connected
//! past the original expiry, also across a reconnection that needs the renewed certificate; the
//! console's server certificate is replaced without a restart; a removed host cannot renew and
//! its certificate stays refused when a host of the same name joins again; a CA rotation
//! (`vinfra ca-rotate begin|switch|finish`, a console restart after each) moves a host to the
//! new CA without a new join.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use vinfra_agent::connection::{
    connect_loop_with, ensure_credentials, Credentials, HostInfo, Renewal, SessionTiming,
};
use vinfra_agent::qemu::fake::FakeRunner;
use vinfra_agent::{Manager, ManagerConfig};
use vinfra_console::agents::Membership;
use vinfra_console::{ConsoleConfig, RunningConsole};
use vinfra_proto::frame::FramedJson;
use vinfra_proto::pki;
use vinfra_types::api::RevokedCertificate;
use vinfra_types::{Accel, HostCapacity};

const VALIDITY: Duration = Duration::from_secs(30);

/// Where a [`relay`] forwards to (changed when the console restarts on another port).
type Target = Arc<std::sync::Mutex<SocketAddr>>;

/// Forwards TCP connections to `to`; bumping the returned generation closes every connection
/// made before (the agent then reconnects).
async fn relay(to: SocketAddr) -> (SocketAddr, Arc<AtomicU64>) {
    let (addr, generation, _) = relay_to(Arc::new(std::sync::Mutex::new(to))).await;
    (addr, generation)
}

/// [`relay`] to a target that can change.
async fn relay_to(target: Target) -> (SocketAddr, Arc<AtomicU64>, Target) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let generation = Arc::new(AtomicU64::new(0));
    let gen = generation.clone();
    let to = target.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut a, _)) = listener.accept().await else {
                return;
            };
            let to = *to.lock().unwrap();
            let Ok(mut b) = TcpStream::connect(to).await else {
                continue;
            };
            let gen = gen.clone();
            let mine = gen.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
                tokio::pin!(copy);
                loop {
                    tokio::select! {
                        _ = &mut copy => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {
                            if gen.load(Ordering::SeqCst) != mine {
                                // Both sockets close as the task ends.
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, generation, target)
}

struct Api {
    base: String,
    token: String,
    ca_pem: String,
}

impl Api {
    /// A client that makes a new TLS connection for every request (no pooling), so each
    /// request sees the server certificate served at that moment.
    fn client(&self) -> reqwest::Client {
        let tls = pki::client_config(&self.ca_pem, None).unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the API answers over TLS");
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.call(reqwest::Method::GET, path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn join_token(&self) -> String {
        let (status, body) = self
            .call(reqwest::Method::POST, "/api/v1/join-tokens")
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// The certificates the console lists as revoked.
    async fn revoked(&self) -> Vec<RevokedCertificate> {
        serde_json::from_value(self.get("/api/v1/revoked-certificates").await)
            .expect("the revoked certificates' JSON")
    }

    /// Joins `host` through the agent endpoint `via` with a new join token; its credentials,
    /// kept in `dir` (made if missing).
    async fn join(&self, dir: &Path, via: &str, host: &str) -> Credentials {
        let token = self.join_token().await;
        std::fs::create_dir_all(dir).unwrap();
        ensure_credentials(dir, via, host, Some(&token))
            .await
            .unwrap()
    }

    async fn status(&self, host: &str) -> String {
        let (_, body) = self
            .call(reqwest::Method::GET, &format!("/api/v1/hosts/{host}"))
            .await;
        body["status"].as_str().unwrap_or("").to_string()
    }

    async fn wait_connected(&self, host: &str) {
        let t = Instant::now();
        while self.status(host).await != "connected" {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{host} never connected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn events(&self) -> Vec<String> {
        self.get("/api/v1/events")
            .await
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}: {}", e["kind"], e["object"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn start_console(dir: &Path) -> (RunningConsole, Api) {
    start_console_valid(
        dir,
        vinfra_console::pki::Validity {
            host: VALIDITY,
            server: VALIDITY,
        },
    )
    .await
}

/// A console (started before on `dir`, or new) issuing certificates valid `validity`.
async fn start_console_valid(
    dir: &Path,
    validity: vinfra_console::pki::Validity,
) -> (RunningConsole, Api) {
    let mut config = ConsoleConfig::new(dir.to_path_buf());
    config.api_listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    config.token_file = Some(dir.join("token"));
    config.cert_validity = validity;
    let console = vinfra_console::start(config).await.unwrap();
    let token = match console.api_token.clone() {
        Some(t) => t,
        None => std::fs::read_to_string(dir.join("token"))
            .unwrap()
            .trim()
            .to_string(),
    };
    let api = Api {
        base: format!("https://127.0.0.1:{}", console.api_addr.port()),
        token,
        ca_pem: console.ca_pem.clone(),
    };
    (console, api)
}

/// The serial of the certificate the server at `addr` presents now (a fresh handshake).
async fn served_serial(addr: SocketAddr, ca_pem: &str) -> String {
    let config = pki::client_config(ca_pem, None).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(pki::server_name_for("127.0.0.1:1").unwrap(), tcp)
        .await
        .expect("the server's certificate verifies");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    pki::cert_info_of_der(&leaf).unwrap().serial
}

/// A joined host with a fake QEMU, connected through `via` and renewing into `renewal`.
async fn start_agent(
    tmp: &Path,
    host: &str,
    via: &str,
    join: &str,
) -> (Arc<Renewal>, Credentials, tokio::task::JoinHandle<()>) {
    let data = tmp.join(host);
    std::fs::create_dir_all(&data).unwrap();
    let creds = ensure_credentials(&data, via, host, Some(join))
        .await
        .unwrap();
    let ds = tmp.join(format!("{host}-ds"));
    std::fs::create_dir_all(ds.join("images")).unwrap();
    let manager = Manager::open(ManagerConfig {
        data_dir: data.clone(),
        datastore: ds,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        runner: Arc::new(FakeRunner::new(Accel::Tcg)),
        switch: None,
    })
    .await
    .unwrap();
    let info = HostInfo {
        host: host.into(),
        address: "127.0.0.1".into(),
        qemu_version: "9.2.0".into(),
        platform: None,
        capacity: HostCapacity {
            cores: 2,
            memory_mib: 2048,
        },
        guard: None,
    };
    let renewal = Renewal::new(host, creds.clone());
    let (via, r) = (via.to_string(), renewal.clone());
    let task = tokio::spawn(async move {
        let _ =
            connect_loop_with(&via, r, Arc::new(manager), &info, SessionTiming::default()).await;
    });
    (renewal, creds, task)
}

/// Opens a session with `creds` (`Hello` sent) and tells whether the console keeps it: true when
/// a heartbeat is acknowledged, false when the connection is closed or refused.
async fn session_accepted(console: &str, creds: &Credentials, host: &str) -> bool {
    let Ok(config) = pki::client_config(&creds.ca_pem, Some((&creds.cert_pem, &creds.key_pem)))
    else {
        return false;
    };
    let Ok(tcp) = TcpStream::connect(console).await else {
        return false;
    };
    let Ok(tls) = tokio_rustls::TlsConnector::from(config)
        .connect(pki::server_name_for(console).unwrap(), tcp)
        .await
    else {
        return false;
    };
    let mut conn = FramedJson::new(tls);
    let hello = vinfra_proto::AgentMessage::Hello {
        protocol: vinfra_proto::PROTOCOL_VERSION,
        report: vinfra_proto::HostReport {
            host: host.into(),
            address: "127.0.0.1".into(),
            accel: Accel::Tcg,
            qemu_version: "9.2.0".into(),
            capacity: HostCapacity {
                cores: 2,
                memory_mib: 2048,
            },
            usage: Default::default(),
            vms: vec![],
            trunk: None,
            underlay_mtu: 1500,
            guard: None,
        },
        platform: None,
    };
    if conn.send(&hello).await.is_err()
        || conn
            .send(&vinfra_proto::AgentMessage::Heartbeat { seq: 1 })
            .await
            .is_err()
    {
        return false;
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.recv::<vinfra_proto::ConsoleMessage>().await {
                Ok(vinfra_proto::ConsoleMessage::HeartbeatAck { .. }) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    answer.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_and_hosts_stay_connected_past_their_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let (console, api) = start_console(&tmp.path().join("console")).await;
    let (via, cut) = relay(console.agent_addr).await;
    let via = via.to_string();

    let mut agents = Vec::new();
    for host in ["h1", "h2"] {
        let join = api.join_token().await;
        agents.push((host, start_agent(tmp.path(), host, &via, &join).await));
    }
    for (host, _) in &agents {
        api.wait_connected(host).await;
    }
    let first: Vec<pki::CertInfo> = agents
        .iter()
        .map(|(_, (_, creds, _))| pki::cert_info_of_pem(&creds.cert_pem).unwrap())
        .collect();
    let original_expiry = first.iter().map(|i| i.not_after).max().unwrap();
    let lifetime = original_expiry
        .duration_since(first[0].issued_at())
        .unwrap();
    assert!(
        lifetime <= VALIDITY + Duration::from_secs(1),
        "the host certificate is valid {lifetime:?}, not the configured {VALIDITY:?}"
    );
    let server_first = served_serial(console.api_addr, &api.ca_pem).await;
    let server_expiry = pki::cert_info_of_pem(
        &std::fs::read_to_string(tmp.path().join("console/pki/server.pem")).unwrap(),
    )
    .unwrap()
    .not_after;

    // Past the original expiry of every certificate, the hosts stay connected throughout.
    let until = original_expiry.max(server_expiry) + Duration::from_secs(3);
    while SystemTime::now() < until {
        for (host, _) in &agents {
            assert_eq!(
                api.status(host).await,
                "connected",
                "{host} lost its connection"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Each host renewed, stored the new set on disk, and holds a certificate valid past the
    // original's end.
    for ((host, (renewal, _, _)), old) in agents.iter().zip(&first) {
        assert!(renewal.renewed() >= 1, "{host} never renewed");
        let current = renewal.current();
        let info = pki::cert_info_of_pem(&current.cert_pem).unwrap();
        assert_ne!(info.serial, old.serial);
        assert!(
            info.not_after > SystemTime::now(),
            "{host}'s certificate expired"
        );
        let on_disk = std::fs::read_to_string(tmp.path().join(host).join("host.crt")).unwrap();
        assert_eq!(
            on_disk, current.cert_pem,
            "{host}'s renewed certificate is not stored"
        );
        let key = std::fs::read_to_string(tmp.path().join(host).join("host.key")).unwrap();
        pki::check_host_cert(&on_disk, &key, &current.ca_pem, host)
            .expect("the stored key and certificate belong together");
    }

    // A new connection needs the renewed certificate: the original one is refused now...
    let (_, (_, original, _)) = &agents[0];
    assert!(
        !session_accepted(&via, original, "h1").await,
        "an expired certificate was accepted"
    );
    // ...and the agents, cut off, come back with theirs (on new connections).
    let registry = console.console.agents().clone();
    let before: Vec<Option<u64>> = agents
        .iter()
        .map(|(host, _)| registry.connection_id(host))
        .collect();
    assert!(before.iter().all(Option::is_some));
    cut.fetch_add(1, Ordering::SeqCst);
    for ((host, _), old) in agents.iter().zip(&before) {
        let t = Instant::now();
        while registry.connection_id(host).is_none() || registry.connection_id(host) == *old {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{host} never reconnected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        api.wait_connected(host).await;
    }

    // The console's server certificate was replaced while it ran: new handshakes (the API
    // calls above, each on a new connection) verify past the original's end.
    let server_now = served_serial(console.api_addr, &api.ca_pem).await;
    assert_ne!(
        server_now, server_first,
        "the server certificate was not renewed"
    );
    assert_eq!(
        served_serial(console.agent_addr, &api.ca_pem).await,
        server_now,
        "the agent endpoint serves another certificate than the API"
    );
    let events = api.events().await;
    assert!(
        events.iter().any(|e| e.contains("certificate renewed")),
        "no renewal event in {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("server certificate renewed")),
        "no server renewal event in {events:?}"
    );

    for (_, (_, _, task)) in agents {
        task.abort();
    }
    console.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_host_cannot_renew_and_its_certificate_stays_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let (console, api) = start_console(&tmp.path().join("console")).await;
    let via = console.agent_addr.to_string();
    let join = api.join_token().await;
    let (renewal, creds, task) = start_agent(tmp.path(), "gone", &via, &join).await;
    api.wait_connected("gone").await;
    task.abort();
    let serial = pki::cert_info_of_pem(&creds.cert_pem).unwrap().serial;

    let (status, body) = api
        .call(reqwest::Method::DELETE, "/api/v1/hosts/gone")
        .await;
    assert_eq!(status, 204, "{body}");

    // The console refuses to renew it...
    let (_, csr) = pki::generate_host_key_and_csr("gone").unwrap();
    let refused = Membership::renew(console.console.as_ref(), "gone", &csr, None, true);
    let reason = vinfra_types::error::chain(&refused.expect_err("a removed host renewed"));
    assert!(reason.contains("not registered"), "{reason}");
    assert_eq!(renewal.renewed(), 0);
    // ...its certificate gets no session...
    assert!(!session_accepted(&via, &creds, "gone").await);
    // ...and the revocation is listed: in the events and by the API.
    let events = api.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("certificates revoked") && e.contains(&serial)),
        "no revocation event in {events:?}"
    );
    let listed: Vec<(String, String)> = api
        .revoked()
        .await
        .into_iter()
        .map(|r| (r.host, r.serial))
        .collect();
    assert_eq!(listed, vec![("gone".to_string(), serial.clone())]);

    // A new host of the same name joins; the old certificate stays refused, the new one works.
    let fresh = api.join(&tmp.path().join("gone-again"), &via, "gone").await;
    assert!(
        !session_accepted(&via, &creds, "gone").await,
        "a revoked certificate was accepted after its host name joined again"
    );
    assert!(session_accepted(&via, &fresh, "gone").await);
    // The new host cannot renew long before its certificate is due (renewals cannot be
    // made as fast as a host asks), unless the console asked it to.
    let (_, csr) = pki::generate_host_key_and_csr("gone").unwrap();
    let fresh_info = pki::cert_info_of_pem(&fresh.cert_pem).unwrap();
    let early = Membership::renew(
        console.console.as_ref(),
        "gone",
        &csr,
        Some(&fresh_info),
        false,
    );
    let reason = vinfra_types::error::chain(&early.expect_err("renewed at once"));
    assert!(reason.contains("too early"), "{reason}");
    assert!(Membership::renew(console.console.as_ref(), "gone", &csr, None, true).is_ok());

    console.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_hosts_previous_certificate_is_revoked_once_the_new_one_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let (console, api) = start_console(&tmp.path().join("console")).await;
    let via = console.agent_addr.to_string();
    let old = api.join(&tmp.path().join("h1"), &via, "h1").await;
    assert!(session_accepted(&via, &old, "h1").await);
    let old_serial = pki::cert_info_of_pem(&old.cert_pem).unwrap().serial;

    // A renewal: a certificate for a new key. Until the host uses it, the old one still works.
    let (key_pem, csr) = pki::generate_host_key_and_csr("h1").unwrap();
    let (cert_pem, ca_pem) =
        Membership::renew(console.console.as_ref(), "h1", &csr, None, true).expect("renewed");
    let new = Credentials {
        ca_pem,
        cert_pem,
        key_pem,
        dir: None,
    };
    let new_serial = pki::cert_info_of_pem(&new.cert_pem).unwrap().serial;
    assert!(
        session_accepted(&via, &old, "h1").await,
        "the old certificate was refused before the new one was used"
    );

    // The host connects with the new one: the old one, still within its validity, is revoked.
    assert!(session_accepted(&via, &new, "h1").await);
    assert!(
        !session_accepted(&via, &old, "h1").await,
        "a superseded certificate was accepted"
    );
    assert!(
        pki::cert_info_of_pem(&old.cert_pem).unwrap().not_after > SystemTime::now(),
        "the old certificate expired during the test: the refusal above proves nothing"
    );
    let listed: Vec<(String, String, String)> = api
        .revoked()
        .await
        .into_iter()
        .map(|r| (r.host, r.serial, r.reason))
        .collect();
    assert_eq!(
        listed,
        vec![(
            "h1".to_string(),
            old_serial.clone(),
            format!("superseded by {new_serial}")
        )]
    );
    let events = api.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("superseded") && e.contains(&old_serial)),
        "no revocation event in {events:?}"
    );
    // The new one goes on working, and is not revoked by a session of its own.
    assert!(session_accepted(&via, &new, "h1").await);

    console.shutdown().await.unwrap();
}

/// A renewal whose answer never reached the host (it still uses its older certificate) does
/// not lock it out: once a short gap has passed it renews again from the certificate it uses,
/// before that one expires; renewals are never signed back to back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_renewal_answer_was_lost_renews_again_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let validity = Duration::from_secs(10);
    let (console, api) = start_console_valid(
        &tmp.path().join("console"),
        vinfra_console::pki::Validity {
            host: validity,
            server: VALIDITY,
        },
    )
    .await;
    let via = console.agent_addr.to_string();
    let creds = api.join(&tmp.path().join("h1"), &via, "h1").await;
    let using = pki::cert_info_of_pem(&creds.cert_pem).unwrap();
    let renew = || {
        let (_, csr) = pki::generate_host_key_and_csr("h1").unwrap();
        Membership::renew(console.console.as_ref(), "h1", &csr, Some(&using), false)
    };
    let reason = vinfra_types::error::chain(&renew().expect_err("renewed long before due"));
    assert!(reason.contains("too early"), "{reason}");

    // Due: renewed, but the answer is "lost" (the host keeps `using`).
    let t = Instant::now();
    let first = loop {
        match renew() {
            Ok(answer) => break answer,
            Err(_) if t.elapsed() < Duration::from_secs(9) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("never renewed: {}", vinfra_types::error::chain(&e)),
        }
    };
    // Not again at once...
    let reason = vinfra_types::error::chain(&renew().expect_err("renewed twice at once"));
    assert!(reason.contains("too early"), "{reason}");
    // ...but again within the old certificate's life.
    let second = loop {
        match renew() {
            Ok(answer) => break answer,
            Err(e) => {
                assert!(
                    SystemTime::now() < using.not_after,
                    "not renewed before the used certificate expired: {}",
                    vinfra_types::error::chain(&e)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_ne!(
        pki::cert_info_of_pem(&first.0).unwrap().serial,
        pki::cert_info_of_pem(&second.0).unwrap().serial
    );
    console.shutdown().await.unwrap();
}

/// Waits until `check` holds for the host's current credentials.
async fn wait_credentials(renewal: &Renewal, what: &str, check: impl Fn(&Credentials) -> bool) {
    let t = Instant::now();
    while !check(&renewal.current()) {
        assert!(t.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn leaf_der(cert_pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_moves_a_host_to_the_new_ca_without_a_new_join() {
    use vinfra_console::pki::{rotate_ca, RotationStep};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("console");
    let validity = vinfra_console::pki::Validity::default();
    let (console, api) = start_console_valid(&dir, validity).await;
    let old_ca = console.ca_pem.clone();
    let (via, cut, target) = relay_to(Arc::new(std::sync::Mutex::new(console.agent_addr))).await;
    let via = via.to_string();
    let join = api.join_token().await;
    let (renewal, original, _task) = start_agent(tmp.path(), "h1", &via, &join).await;
    api.wait_connected("h1").await;
    assert_eq!(
        renewal.renewed(),
        0,
        "a certificate valid a year was renewed"
    );

    // Restarts the console on its data directory; the relay follows it.
    let restart = |console: RunningConsole| {
        let (dir, target, cut) = (dir.clone(), target.clone(), cut.clone());
        async move {
            console.shutdown().await.unwrap();
            let (console, api) = start_console_valid(&dir, validity).await;
            *target.lock().unwrap() = console.agent_addr;
            cut.fetch_add(1, Ordering::SeqCst);
            (console, api)
        }
    };

    // Begin: a new CA, trusted besides the old; the host renews and gets both.
    let said = rotate_ca(&dir, RotationStep::Begin).unwrap();
    assert!(said.contains("restart"), "{said}");
    assert!(rotate_ca(&dir, RotationStep::Begin).is_err(), "begun twice");
    assert!(
        rotate_ca(&dir, RotationStep::Finish).is_err(),
        "finished before the switch"
    );
    let new_ca = std::fs::read_to_string(dir.join("pki").join("ca-next.pem")).unwrap();
    let (console, api) = restart(console).await;
    assert_eq!(console.ca_pem, old_ca, "the old CA issues until the switch");
    let for_clients = std::fs::read_to_string(dir.join("pki").join("ca-bundle.pem")).unwrap();
    assert_eq!(
        pki::bundle_fingerprints(&for_clients).unwrap(),
        vec![
            pki::fingerprint_of_pem(&old_ca).unwrap(),
            pki::fingerprint_of_pem(&new_ca).unwrap()
        ]
    );
    wait_credentials(&renewal, "the host got both CAs", |c| {
        pki::bundle_fingerprints(&c.ca_pem).is_ok_and(|f| f.len() == 2)
    })
    .await;
    api.wait_connected("h1").await;

    // Switch: the new CA issues; the host, trusting both, connects and renews onto it.
    rotate_ca(&dir, RotationStep::Switch).unwrap();
    let (console, api) = restart(console).await;
    assert_eq!(
        pki::fingerprint_of_pem(&console.ca_pem).unwrap(),
        pki::fingerprint_of_pem(&new_ca).unwrap()
    );
    wait_credentials(&renewal, "a certificate of the new CA", |c| {
        pki::issued_by(&leaf_der(&c.cert_pem), &new_ca)
    })
    .await;
    api.wait_connected("h1").await;
    // Join tokens pin the new CA.
    let token = api.join_token().await;
    assert!(token.contains(&pki::fingerprint_of_pem(&new_ca).unwrap()));

    // Finish: only the new CA is trusted; the host comes back with its new certificate, and a
    // certificate of the old CA gets no session any more.
    rotate_ca(&dir, RotationStep::Finish).unwrap();
    let (console, api) = restart(console).await;
    let registry = console.console.agents().clone();
    let t = Instant::now();
    while registry.connection_id("h1").is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "h1 never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.wait_connected("h1").await;
    let stale = Credentials {
        ca_pem: renewal.current().ca_pem,
        ..original
    };
    assert!(
        !session_accepted(&console.agent_addr.to_string(), &stale, "h1").await,
        "a certificate of the retired CA was accepted"
    );
    let stored = std::fs::read_to_string(tmp.path().join("h1").join("host.crt")).unwrap();
    assert!(pki::issued_by(&leaf_der(&stored), &new_ca));
    console.shutdown().await.unwrap();
}
