//! Encrypted live migration between two agents with real, confined QEMUs under TCG: a capture
//! of the stream shows the guest's memory in plain text and none of it with TLS; strangers
//! connecting first to an encrypted incoming QEMU (junk, TLS without a certificate, TLS with
//! another certificate of the cluster) are turned away without disturbing it; a plain-text
//! incoming QEMU, by contrast, dies of the same junk.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use uuid::Uuid;
use vinfra_agent::confine::{ConfineSettings, Confiner};
use vinfra_agent::Manager;
use vinfra_proto::pki::ClusterCa;
use vinfra_proto::{MigrationSettings, MigrationTls, VmInstance};
use vinfra_types::PowerState;

mod common;
use common::{datastore, instance, last_counter, manager, wait_for_log, KillQemusUnder, QEMU};

/// Guest memory the guest fills with lines of the marker, MiB.
const FILL_MIB: u64 = 16;

/// A capture of one TCP port's packets on the loopback device (`tcpdump`).
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing port `port` into `file`; returns once tcpdump listens.
    fn start(port: u16, file: &Path) -> Capture {
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-n", "-s", "0", "-U", "-B", "65536", "-w"])
            .arg(file)
            .args(["tcp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "tcpdump ended before listening"
            );
            if line.contains("listening on") {
                break;
            }
        }
        // Its later lines (the counts at the end) must not block it.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Capture {
            child,
            file: file.to_path_buf(),
        }
    }

    /// Stops the capture; returns what it holds (pcap records, payloads in the clear as sent).
    fn stop(mut self) -> Vec<u8> {
        // SIGINT: tcpdump flushes its file and exits.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        self.child.wait().unwrap();
        std::fs::read(&self.file).unwrap()
    }
}

/// How many times `needle` occurs in `hay`.
fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn port_of(uri: &str) -> u16 {
    uri.rsplit(':').next().unwrap().parse().unwrap()
}

async fn state(m: &Manager, id: Uuid) -> PowerState {
    m.observe(id).await.unwrap().state
}

/// Sends `vm` from `from` to `to` (with `creds` when given) while capturing the stream; waits
/// until the destination runs it; returns the capture.
async fn migrate_captured(
    from: &Manager,
    to: &Manager,
    vm: &VmInstance,
    creds: Option<(MigrationTls, MigrationTls)>,
    capture_file: &Path,
) -> Vec<u8> {
    let (src_tls, dst_tls) = creds.unzip();
    let uri = to.prepare_incoming(vm.clone(), dst_tls).await.unwrap();
    let capture = Capture::start(port_of(&uri), capture_file);
    sends(from, to, vm.id, &uri, src_tls).await;
    capture.stop()
}

/// Sends VM `id` from `from` to the QEMU waiting on `to` at `uri`; waits until it runs there.
async fn sends(from: &Manager, to: &Manager, id: Uuid, uri: &str, tls: Option<MigrationTls>) {
    // A cap the capture keeps up with (it must see every byte for the plain-text control).
    let settings = MigrationSettings {
        max_bandwidth: 64 << 20,
        ..MigrationSettings::default()
    };
    from.migrate_out(id, uri, settings, tls, None)
        .await
        .unwrap();
    let status = from
        .migration_status(id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(status.qemu_status, "completed", "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(to, id).await != PowerState::Running {
        assert!(Instant::now() < deadline, "destination never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    from.finish_migration_source(id).await.unwrap();
}

/// The incoming QEMU of `id` on `m` is alive and still waits.
async fn still_waits(m: &Manager, id: Uuid, after: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = m.observe(id).await.unwrap().pid;
    assert!(
        pid.is_some_and(vinfra_agent::qemu::pid_alive),
        "incoming QEMU gone after {after}"
    );
    assert_eq!(state(m, id).await, PowerState::Incoming, "after {after}");
}

/// A TLS client's handshake with the incoming QEMU at `uri`, as `client` (a certificate and
/// key) or without a certificate; the connection is kept open and returned.
async fn tls_stranger(
    uri: &str,
    ca_pem: &str,
    server_name: &str,
    client: Option<(&str, &str)>,
) -> tokio::net::TcpStream {
    let config = vinfra_proto::pki::client_config(ca_pem, client).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port_of(uri)))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    // The handshake may seem to succeed on our side (TLS 1.3 reports a refused client
    // certificate afterwards) or fail: either way the stranger then tries to send.
    match connector.connect(name, tcp).await {
        Ok(mut s) => {
            let _ = s.write_all(&[0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3]).await;
            let _ = s.flush().await;
            s.into_inner().0
        }
        Err(_) => tokio::net::TcpStream::connect(("127.0.0.1", port_of(uri)))
            .await
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_migration_hides_guest_memory_and_turns_strangers_away() {
    if !vinfra_testenv::Needs::new()
        .root()
        .program(QEMU)
        .program("tcpdump")
        .met()
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());
    let parents: Vec<String> = ["a", "b"]
        .iter()
        .map(|h| format!("vinfra.slice/agent-tls-test-{}-{h}", std::process::id()))
        .collect();
    let confined = |parent: &str| {
        Some(
            Confiner::new(ConfineSettings {
                cgroup_parent: parent.into(),
                ..ConfineSettings::default()
            })
            .unwrap(),
        )
    };
    let a = manager(&tmp.path().join("a"), &ds)
        .await
        .with_confinement(confined(&parents[0]));
    let b = manager(&tmp.path().join("b"), &ds)
        .await
        .with_confinement(confined(&parents[1]));
    let ca = ClusterCa::generate("t").unwrap();

    // A marker only the guest writes: lines of it over 16 MiB of its memory.
    let marker = format!("vinfra{}", &Uuid::new_v4().simple().to_string()[..16]);
    let mut vm = instance("enc", vec![]);
    vm.slot = Some(41);
    if let vinfra_types::BootSource::Kernel { cmdline, .. } = &mut vm.spec.boot {
        cmdline.push_str(&format!(" vinfra.fill={marker}:{FILL_MIB}"));
    }
    let id = vm.id;
    a.create(vm.clone(), true).await.unwrap();
    let a_log = a.serial_log_path(id).await.unwrap();
    wait_for_log(
        &a_log,
        &format!("VINFRA-GUEST FILLED {marker}"),
        Duration::from_secs(120),
    )
    .await;
    wait_for_log(&a_log, "VINFRA-COUNTER 2 ", Duration::from_secs(60)).await;
    vm.started_at = a.record(id).await.unwrap().started_at;
    let pattern = format!("{marker}\n{marker}\n{marker}\n");

    // Control, plain text: the pattern is on the wire.
    let plain = migrate_captured(&a, &b, &vm, None, &tmp.path().join("plain.pcap")).await;
    let seen = occurrences(&plain, pattern.as_bytes());
    println!(
        "plain: {} bytes captured, pattern {seen} times",
        plain.len()
    );
    assert!(seen > 1000, "plain capture lacks the guest's pattern");

    // Encrypted, b to a: strangers first.
    let creds = ca.issue_migration_tls().unwrap();
    let uri = a
        .prepare_incoming(vm.clone(), Some(creds.destination.clone()))
        .await
        .unwrap();
    // (i) Junk over TCP.
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port_of(&uri)))
        .await
        .unwrap();
    junk.write_all(&[0x51; 4096]).await.unwrap();
    still_waits(&a, id, "a stranger's junk").await;
    // (ii) TLS without a certificate.
    let _bare = tls_stranger(&uri, &creds.source.ca_pem, &creds.source.peer, None).await;
    still_waits(&a, id, "a stranger without a certificate").await;
    // (iii) TLS with a valid certificate of the cluster, another migration's.
    let other = ca.issue_migration_tls().unwrap();
    let _other = tls_stranger(
        &uri,
        &creds.source.ca_pem,
        &creds.source.peer,
        Some((&other.source.cert_pem, &other.source.key_pem)),
    )
    .await;
    still_waits(&a, id, "a stranger with another migration's certificate").await;
    // The refusal was QEMU's authorization check.
    let a_qemu_log = tmp.path().join(format!("a/vms/{id}/qemu.log"));
    let log = std::fs::read_to_string(&a_qemu_log).unwrap_or_default();
    let other_cn = other.destination.peer.clone();
    assert!(
        log.contains(&format!("authz check for {other_cn} is denied")),
        "{log}"
    );

    let capture = Capture::start(port_of(&uri), &tmp.path().join("tls.pcap"));
    sends(&b, &a, id, &uri, Some(creds.source.clone())).await;
    let encrypted = capture.stop();
    let seen = occurrences(&encrypted, pattern.as_bytes());
    println!(
        "encrypted: {} bytes captured, pattern {seen} times",
        encrypted.len()
    );
    assert!(
        encrypted.len() as u64 > FILL_MIB << 20,
        "the capture missed the stream"
    );
    assert_eq!(seen, 0, "guest memory in the clear on an encrypted stream");
    assert!(occurrences(&encrypted, marker.as_bytes()) == 0);
    // Nothing of the credentials stays on either host.
    for host in ["a", "b"] {
        let dir = tmp.path().join(format!("{host}/vms/{id}/migration-tls"));
        assert!(!dir.exists(), "{} left", dir.display());
    }

    // Back again encrypted: a QEMU that arrived encrypted sends with fresh client credentials.
    let again = ca.issue_migration_tls().unwrap();
    migrate_captured(
        &a,
        &b,
        &vm,
        Some((again.source, again.destination)),
        &tmp.path().join("again.pcap"),
    )
    .await;
    // The guest went on counting through all three moves.
    let b_log = b.serial_log_path(id).await.unwrap();
    let text = wait_for_log(&b_log, "VINFRA-COUNTER ", Duration::from_secs(30)).await;
    let before = last_counter(&text).unwrap();
    wait_for_log(
        &b_log,
        &format!("VINFRA-COUNTER {} ", before + 2),
        Duration::from_secs(30),
    )
    .await;
    b.stop(id, true, Duration::from_secs(1)).await.unwrap();
    b.delete(id, true).await.unwrap();

    // By contrast, a plain-text incoming QEMU is at the mercy of whoever connects first: the
    // same junk ends it (QEMU 7.2 exits on a bad incoming stream).
    let mut spare = instance("spare", vec![]);
    spare.slot = Some(42);
    // Defined on a (its files on the datastore), waited for on b.
    a.create(spare.clone(), false).await.unwrap();
    let uri = b.prepare_incoming(spare.clone(), None).await.unwrap();
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port_of(&uri)))
        .await
        .unwrap();
    junk.write_all(&[0x51; 4096]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&b, spare.id).await == PowerState::Incoming {
        assert!(
            Instant::now() < deadline,
            "the plain-text control survived the junk: the stranger checks above prove nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.abort_incoming(spare.id).await.unwrap();

    drop((a, b));
    for parent in &parents {
        for root in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/cpu",
        ] {
            let dir = Path::new(root).join(parent);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}
