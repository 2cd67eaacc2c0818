//! What a task costs the request it answers (target: ≤ 1 ms at p99): the console's own path,
//! `TaskBoard::begin` and `TaskBoard::publish` (the task written to the real SQLite store; its
//! disk sync is waited for off the request, as in the console), then `TaskBoard::finish` as the
//! operation ends; side by side with a bare durable store write of the same record (what a
//! task would cost if the answer waited for the disk). 2,000 tasks, then 2,000 durable writes.
//!
//! `cargo bench -p vinfra-console --bench tasks`

use std::sync::Arc;
use std::time::{Duration, Instant};

use vinfra_console::state::records as keys;
use vinfra_console::state::tasks::TaskBoard;
use vinfra_store::{SqliteStore, Store};
use vinfra_types::auth::Actor;
use vinfra_types::task::TaskKind;

/// The allocator the `vinfra` binary runs the console with (its `main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TASKS: usize = 2000;
const TARGET_P99: Duration = Duration::from_millis(1);

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // As in the console: the records' disk syncs are waited for on the runtime's blocking
    // threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("console.db")).expect("the store"));
    let (board, unended) =
        TaskBoard::load(store.clone(), vinfra_console::metrics::Metrics::new()).expect("the board");
    assert!(unended.is_empty());
    let board = Arc::new(board);
    let actor = Actor::token("bench");
    let mut ours = Vec::with_capacity(TASKS);
    let mut floor = Vec::with_capacity(TASKS);
    // Ours first, then the durable writes: a write that waits for the disk holds the store
    // while it syncs, which would stall the task writes around it and measure that instead.
    let mut sample = None;
    for i in 0..TASKS {
        let t0 = Instant::now();
        let (handle, _accepted) = board
            .begin(TaskKind::VmStop, format!("vm-{i:05}"), actor.clone(), 60)
            .expect("begun");
        let task = board.publish(handle.id()).expect("published");
        ours.push(t0.elapsed());
        board.finish(task.id, Ok(None));
        sample = Some(task);
    }
    for i in 0..TASKS {
        let t0 = Instant::now();
        keys::put(
            store.as_ref(),
            &format!("/bench/floor/{i:020}"),
            &serde_json::json!({"task": sample, "follow_s": 60}),
        )
        .expect("the durable write");
        floor.push(t0.elapsed());
    }
    ours.sort_unstable();
    floor.sort_unstable();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "tasks: {TASKS} created and published (load {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  ours  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        ms(pct(&ours, 50)),
        ms(pct(&ours, 99)),
        ms(ours[ours.len() - 1])
    );
    println!(
        "  durable write p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms (the same record, waiting for the disk)",
        ms(pct(&floor, 50)),
        ms(pct(&floor, 99)),
        ms(floor[floor.len() - 1])
    );
    let p99 = pct(&ours, 99);
    println!(
        "RESULT task_create {:.2} {}",
        p99.as_secs_f64() / TARGET_P99.as_secs_f64(),
        if p99 <= TARGET_P99 { "PASS" } else { "FAIL" }
    );
}
