//! The client's migration methods against a scripted console: `migrate_vm` answered at the
//! console's 1 s limit, before the migration registered, answers the new migration's progress,
//! not the record a previous migration left; `cancel_migration` follows the cancel's task to
//! the migration's end.
//!
//! A small HTTP server on 127.0.0.1 answers each request from a script (a function of the
//! method, the path and how many times that request came).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use vinfra_client::{Client, RestError};
use vinfra_types::api::MigrateVmRequest;
use vinfra_types::MigrationPhase;

/// The answer to one request: its status and JSON body.
type Answer = (u16, Value);

/// Serves requests on a free port until the test ends, each answered by `script(method, path,
/// n)` (`n`: how many times that method and path came before); returns its URL and every
/// request seen (`METHOD path`).
fn console(
    script: impl Fn(&str, &str, usize) -> Answer + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let key = format!("{method} {path}");
            let n = counts.entry(key.clone()).or_default();
            let (status, answer) = script(&method, &path, *n);
            *n += 1;
            log.lock().expect("log").push(key);
            let text = answer.to_string();
            let kind = if status >= 400 {
                "application/problem+json"
            } else {
                "application/json"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

/// A migration task of VM `n`, created at `created_at`, in `state`.
fn task(state: &str, created_at: u64) -> Value {
    json!({"id": 9, "kind": "vm_migrate", "target": "n", "state": state, "cancellable": true,
        "created_at": created_at, "actor": {"kind": "token", "name": "ops"}})
}

/// VM `n`'s migration record to `destination`, started at `started_at`, in `phase`.
fn record(destination: &str, phase: &str, started_at: u64) -> Value {
    json!({"vm": "n", "source": "h1", "destination": destination, "phase": phase,
        "transferred_bytes": 0, "remaining_bytes": 0, "total_bytes": 0, "rate_bps": 0,
        "dirty_pages_rate": 0, "total_time_ms": 0, "started_at": started_at})
}

fn problem(status: u16, detail: &str) -> Value {
    json!({"type": "/problems/conflict", "title": "Conflict", "status": status, "detail": detail})
}

#[test]
fn a_migration_accepted_before_it_registered_answers_its_own_progress() {
    // The task was created at 1000; the VM's record is the previous migration's (to h3, which
    // completed at 900) for the first two reads, then this one's.
    let (url, seen) = console(|method, path, n| match (method, path) {
        ("POST", "/api/v1/vms/n/migrate") => (202, task("running", 1000)),
        ("GET", "/api/v1/vms/n/migration") if n < 2 => (200, record("h3", "completed", 900)),
        ("GET", "/api/v1/vms/n/migration") => (200, record("h2", "preparing", 1001)),
        ("GET", "/api/v1/tasks/9") => (200, task("running", 1000)),
        _ => (404, problem(404, "no such endpoint")),
    });
    let c = Client::new(&url, "tok", None).expect("client");
    let p = c
        .migrate_vm("n", &MigrateVmRequest::default())
        .expect("the first progress");
    assert_eq!(
        (p.destination.as_str(), p.phase),
        ("h2", MigrationPhase::Preparing)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter()
            .filter(|r| *r == "GET /api/v1/vms/n/migration")
            .count(),
        3,
        "{seen:?}"
    );
}

#[test]
fn a_migration_refused_after_its_acceptance_is_its_tasks_error() {
    // The record never changes from the previous migration's; the task fails.
    let (url, _) = console(|method, path, n| match (method, path) {
        ("POST", "/api/v1/vms/n/migrate") => (202, task("running", 1000)),
        ("GET", "/api/v1/vms/n/migration") => (200, record("h3", "completed", 900)),
        ("GET", "/api/v1/tasks/9") if n < 1 => (200, task("running", 1000)),
        ("GET", p) if p.starts_with("/api/v1/tasks/9") => {
            let mut t = task("failed", 1000);
            t["error"] = problem(409, "no host can take VM 'n'");
            (200, t)
        }
        _ => (404, problem(404, "no such endpoint")),
    });
    let c = Client::new(&url, "tok", None).expect("client");
    match c.migrate_vm("n", &MigrateVmRequest::default()) {
        Err(RestError::Problem {
            status: 409,
            problem,
        }) => {
            assert_eq!(problem.detail, "no host can take VM 'n'")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_first_migration_accepted_before_it_registered_waits_for_its_record() {
    // No migration before: the record is not found until this one registers.
    let (url, _) = console(|method, path, n| match (method, path) {
        ("POST", "/api/v1/vms/n/migrate") => (202, task("running", 1000)),
        ("GET", "/api/v1/vms/n/migration") if n < 1 => (404, problem(404, "no migration")),
        ("GET", "/api/v1/vms/n/migration") => (200, record("h2", "active", 1000)),
        ("GET", "/api/v1/tasks/9") => (200, task("running", 1000)),
        _ => (404, problem(404, "no such endpoint")),
    });
    let c = Client::new(&url, "tok", None).expect("client");
    let p = c
        .migrate_vm("n", &MigrateVmRequest::default())
        .expect("the first progress");
    assert_eq!(
        (p.destination.as_str(), p.phase),
        ("h2", MigrationPhase::Active)
    );
}

#[test]
fn a_cancel_follows_its_task_to_the_migrations_end() {
    // The cancel's task runs, then ends cancelled; the record says how the migration ended.
    let (url, seen) = console(|method, path, _| match (method, path) {
        ("DELETE", "/api/v1/vms/n/migration") => (202, task("running", 1000)),
        ("GET", p) if p.starts_with("/api/v1/tasks/9") => {
            let mut t = task("cancelled", 1000);
            t["error"] = problem(409, "migration of VM 'n' cancelled: it runs on h1");
            (200, t)
        }
        ("GET", "/api/v1/vms/n/migration") => (200, record("h2", "cancelled", 999)),
        _ => (404, problem(404, "no such endpoint")),
    });
    let c = Client::new(&url, "tok", None).expect("client");
    let t = c.cancel_migration_task("n").expect("the task");
    assert_eq!(t.id, 9);
    let p = c.cancel_migration("n").expect("the last progress");
    assert_eq!(p.phase, MigrationPhase::Cancelled);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"GET /api/v1/tasks/9?wait_s=30".to_string()),
        "{seen:?}"
    );

    // Too late: the task succeeded with the migration's last progress.
    let (url, _) = console(|method, path, _| match (method, path) {
        ("DELETE", "/api/v1/vms/n/migration") => (202, task("running", 1000)),
        ("GET", p) if p.starts_with("/api/v1/tasks/9") => {
            let mut t = task("succeeded", 1000);
            t["result"] = record("h2", "completed", 999);
            (200, t)
        }
        _ => (404, problem(404, "no such endpoint")),
    });
    let c = Client::new(&url, "tok", None).expect("client");
    let p = c.cancel_migration("n").expect("the last progress");
    assert_eq!(
        (p.phase, p.destination.as_str()),
        (MigrationPhase::Completed, "h2")
    );
}
