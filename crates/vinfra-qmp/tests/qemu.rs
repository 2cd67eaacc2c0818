//! Drives a real QEMU (`-machine none`, TCG) over QMP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};
use vinfra_qmp::{MigrateParameters, Qmp, QmpError};

const QEMU: &str = "qemu-system-x86_64";

/// Whether QEMU is here; without it the test is skipped, or fails under CI (`vinfra_testenv`).
fn qemu_present() -> bool {
    vinfra_testenv::Needs::new().program(QEMU).met()
}

struct TestQemu {
    _child: Child,
    sock: PathBuf,
}

fn spawn(dir: &Path, name: &str, extra: &[&str]) -> TestQemu {
    let sock = dir.join(format!("{name}.sock"));
    let child = Command::new(QEMU)
        .args([
            "-machine",
            "none",
            "-accel",
            "tcg",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-m", "32"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .args(extra)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn qemu");
    TestQemu {
        _child: child,
        sock,
    }
}

async fn connect(q: &TestQemu) -> Qmp {
    for _ in 0..100 {
        if q.sock.exists() {
            if let Ok(c) = Qmp::connect(&q.sock, Duration::from_secs(5)).await {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("QMP socket {} never came up", q.sock.display());
}

#[tokio::test]
async fn status_version_errors_and_events() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let q = spawn(dir.path(), "a", &["-S"]);
    let qmp = connect(&q).await;
    assert!(qmp.greeting()["QMP"]["version"]["qemu"]["major"]
        .as_u64()
        .is_some());

    let st = qmp.query_status().await.unwrap();
    assert_eq!(st.status, "prelaunch");
    assert!(!st.running);

    let v = qmp.query_version().await.unwrap();
    let out = std::process::Command::new(QEMU)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&v.qemu.to_string()), "{text} vs {}", v.qemu);

    match qmp.execute("no-such-command", Value::Null).await {
        Err(QmpError::Qmp { class, desc }) => {
            assert_eq!(class, "CommandNotFound");
            assert!(desc.contains("no-such-command"), "{desc}");
        }
        other => panic!("expected a QMP error, got {other:?}"),
    }
    match qmp.execute("migrate", json!({ "bogus": 1 })).await {
        Err(QmpError::Qmp { class, .. }) => assert_eq!(class, "GenericError"),
        other => panic!("expected a QMP error, got {other:?}"),
    }
    assert!(matches!(
        qmp.execute("query-status", json!([1])).await,
        Err(QmpError::Protocol(_))
    ));

    qmp.cont().await.unwrap();
    let ev = qmp
        .wait_event("RESUME", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ev.event, "RESUME");
    assert!(qmp.query_status().await.unwrap().running);
    qmp.stop().await.unwrap();
    qmp.wait_event("STOP", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(qmp.query_status().await.unwrap().status, "paused");

    // Many commands in flight at once each get their own answer.
    let (a, b, c, d) = tokio::join!(
        qmp.query_status(),
        qmp.query_version(),
        qmp.execute("no-such-command", Value::Null),
        qmp.query_migrate(),
    );
    assert_eq!(a.unwrap().status, "paused");
    assert_eq!(b.unwrap().qemu, v.qemu);
    assert!(matches!(c, Err(QmpError::Qmp { .. })));
    assert_eq!(d.unwrap().status(), "none");
    let qmp = std::sync::Arc::new(qmp);
    let many = concurrent_status(qmp.clone(), 50).await;
    assert_eq!(many.len(), 50);
    assert!(many.iter().all(|s| s == "paused"));

    qmp.quit().await.unwrap();
    qmp.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert!(qmp.is_closed());
    assert!(matches!(qmp.query_status().await, Err(QmpError::Closed)));
}

async fn concurrent_status(qmp: std::sync::Arc<Qmp>, n: usize) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let qmp = qmp.clone();
        set.spawn(async move { qmp.query_status().await.map(|s| s.status) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn migration_between_two_qemus() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = spawn(dir.path(), "src", &[]);
    let dst = spawn(dir.path(), "dst", &["-incoming", "defer"]);
    let (s, d) = (connect(&src).await, connect(&dst).await);
    assert_eq!(d.query_status().await.unwrap().status, "inmigrate");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("tcp:127.0.0.1:{port}");
    d.migrate_incoming(&uri).await.unwrap();
    s.migrate_set_capabilities(&[("events", true)])
        .await
        .unwrap();
    s.migrate_set_parameters(&MigrateParameters {
        max_bandwidth: Some(1 << 40),
        downtime_limit: Some(300),
        ..Default::default()
    })
    .await
    .unwrap();
    let params = s
        .execute("query-migrate-parameters", Value::Null)
        .await
        .unwrap();
    assert_eq!(params["downtime-limit"], 300);
    assert_eq!(params["max-bandwidth"], 1u64 << 40);

    let mut subscriber = s.subscribe();
    s.migrate(&uri).await.unwrap();
    let mut info = s.query_migrate().await.unwrap();
    for _ in 0..200 {
        if info.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = s.query_migrate().await.unwrap();
    }
    assert_eq!(info.status(), "completed", "{info:?}");
    let ram = info.ram.clone().unwrap();
    assert!(ram.total > 0 && ram.remaining == 0, "{ram:?}");
    assert!(
        info.total_time.is_some() && info.downtime.is_some(),
        "{info:?}"
    );
    assert_eq!(s.query_status().await.unwrap().status, "postmigrate");
    // The source reports completion once it sent the last byte; the destination loads it and
    // starts a moment later (longer on a busy machine).
    let mut status = d.query_status().await.unwrap().status;
    for _ in 0..100 {
        if status != "inmigrate" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = d.query_status().await.unwrap().status;
    }
    assert_eq!(status, "running");
    // The MIGRATION events were buffered while we polled.
    let mut statuses = Vec::new();
    while let Some(e) = s.try_next_event() {
        if e.event == "MIGRATION" {
            statuses.push(e.data["status"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("completed"),
        "{statuses:?}"
    );
    // A subscriber saw the same events, although the queue above took them.
    let mut seen = Vec::new();
    while let Ok(e) = subscriber.try_recv() {
        if e.event == "MIGRATION" {
            seen.push(e.data["status"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(seen, statuses);
    // Its channel closes with the connection.
    // (QEMU may close the socket before it answers.)
    let _ = s.quit().await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match subscriber.recv().await {
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                _ => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the subscription did not close with QEMU");
    assert!(matches!(
        s.subscribe().recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ));
}

#[tokio::test]
async fn not_qmp_is_a_protocol_error() {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut b = b;
        b.write_all(b"SSH-2.0-OpenSSH\n").await.unwrap();
        b
    });
    assert!(matches!(
        Qmp::handshake(a).await,
        Err(QmpError::Protocol(_))
    ));
    drop(server.await.unwrap());

    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    drop(b);
    assert!(matches!(Qmp::handshake(a).await, Err(QmpError::Closed)));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.sock");
    assert!(matches!(
        Qmp::connect(&missing, Duration::from_secs(1)).await,
        Err(QmpError::Io(_))
    ));
}

/// Events QEMU flushes ahead of the greeting (left over from the connection before) are
/// skipped; anything else before it is still a protocol error.
#[tokio::test]
async fn events_before_the_greeting_are_skipped() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let (read, mut write) = b.into_split();
        write
            .write_all(
                b"{\"event\":\"RESUME\",\"timestamp\":{\"seconds\":1,\"microseconds\":2}}\n\
                  {\"QMP\":{\"version\":{},\"capabilities\":[]}}\n",
            )
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        let cmd = lines.next_line().await.unwrap().unwrap();
        let cmd: serde_json::Value = serde_json::from_str(&cmd).unwrap();
        assert_eq!(cmd["execute"], "qmp_capabilities");
        let answer = format!("{{\"return\":{{}},\"id\":{}}}\n", cmd["id"]);
        write.write_all(answer.as_bytes()).await.unwrap();
        (lines, write)
    });
    let qmp = Qmp::handshake(a).await.unwrap();
    assert!(qmp.greeting().get("QMP").is_some());
    drop(server.await.unwrap());

    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let mut b = b;
        b.write_all(b"{\"return\":{},\"id\":7}\n").await.unwrap();
        b
    });
    assert!(matches!(
        Qmp::handshake(a).await,
        Err(QmpError::Protocol(_))
    ));
    drop(server.await.unwrap());
}
