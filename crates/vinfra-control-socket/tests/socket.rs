//! The control socket over a real Unix socket: binding (mode, a stale socket replaced, a live
//! daemon's and any other file left alone), lines answered in order, refusals, the callback
//! after an answer is written.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vinfra_control_socket::{bind, serve, BadLine, Service, MAX_LINE};

/// Doubles numbers; refusals are strings; counts the answers written.
struct Doubler(Arc<AtomicUsize>);

impl Service for Doubler {
    type Request = u64;
    type Response = serde_json::Value;

    fn handle(&self, n: u64) -> serde_json::Value {
        (n * 2).into()
    }

    fn refuse(&self, why: BadLine) -> serde_json::Value {
        match why {
            BadLine::TooLong => "too long".into(),
            BadLine::NotARequest(_) => "not a number".into(),
        }
    }

    fn answered(&self, _: &serde_json::Value) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn start(path: &Path) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let listener = bind(path).unwrap();
    let service = Doubler(count.clone());
    std::thread::spawn(move || serve(listener, service, "test-conn"));
    count
}

#[test]
fn lines_are_answered_in_order_and_refusals_keep_or_end_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let count = start(&path);
    let stream = UnixStream::connect(&path).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer.write_all(b"1\n\n  \n2\nnope\n3\n").unwrap();
    let mut answers = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        answers.push(line.trim().to_string());
    }
    assert_eq!(answers, ["2", "4", "\"not a number\"", "6"]);
    // The callback runs once an answer is written: the client may read the last answer first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(count.load(Ordering::SeqCst), 4);
    let mut long = vec![b'1'; MAX_LINE as usize + 1];
    long.push(b'\n');
    writer.write_all(&long).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "\"too long\"");
    // Closed: an end of stream, or a reset over the unread rest of the long line.
    let mut rest = String::new();
    if let Ok(n) = reader.read_line(&mut rest) {
        assert_eq!(n, 0, "{rest:?}");
    }
}

#[test]
fn bind_replaces_a_stale_socket_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/c.sock");
    let first = bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A live daemon's socket is not taken over.
    let e = bind(&path).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    drop(first);
    // The socket file of a daemon that died is replaced.
    let _second = bind(&path).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep").unwrap();
    assert!(bind(&file).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}
