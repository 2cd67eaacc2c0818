//! The task board's pruning.

use super::*;
use vinfra_store::SqliteStore;

fn board(store: &Arc<dyn Store>) -> Arc<TaskBoard> {
    let (board, _) = TaskBoard::load(store.clone(), Metrics::new()).expect("load");
    Arc::new(board)
}

fn stored_ids(store: &Arc<dyn Store>) -> Vec<u64> {
    keys::range::<TaskRecord>(store.as_ref(), keys::TASKS)
        .expect("range")
        .into_iter()
        .map(|(_, r)| r.value.task.id)
        .collect()
}

#[test]
fn ended_tasks_beyond_the_limit_go_oldest_first_and_the_running_stay() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let b = board(&store);
    let begin = |target: &str| {
        let (h, _) = b
            .begin(TaskKind::VmStop, target.into(), Actor::controller("t"), 0)
            .expect("begin");
        h.id()
    };
    let running = begin("still");
    b.publish(running).expect("publish");
    let extra = 5;
    let mut ended = Vec::new();
    for i in 0..MAX_ENDED_TASKS as u64 + extra {
        let id = begin(&format!("vm{i}"));
        b.publish(id).expect("publish");
        b.finish(id, Ok(None));
        ended.push(id);
    }
    let listed: Vec<u64> = b
        .list(&TaskFilter::default())
        .iter()
        .map(|t| t.id)
        .collect();
    let mut kept = vec![running];
    kept.extend(&ended[extra as usize..]);
    assert_eq!(listed, kept);
    assert_eq!(stored_ids(&store), kept);
    // Ended unpublished and published on its end: counted the same.
    let late = begin("late");
    b.finish(late, Ok(None));
    b.publish(late).expect("publish");
    let listed: Vec<u64> = b
        .list(&TaskFilter::default())
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        listed.len(),
        MAX_ENDED_TASKS + 2,
        "one over, pruned at the next end"
    );
    let next = begin("next");
    b.publish(next).expect("publish");
    b.finish(next, Ok(None));
    let listed: Vec<u64> = b
        .list(&TaskFilter::default())
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed.len(), MAX_ENDED_TASKS + 1);
    assert_eq!(listed[0], running);
    assert_eq!(listed.last(), Some(&next));
    assert!(!listed.contains(&ended[extra as usize]));
}

#[test]
fn tasks_that_ended_longer_ago_than_kept_go_when_the_console_starts() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let now = now_s();
    let task = |id: u64, ended_at: Option<u64>| TaskRecord {
        task: Task {
            id,
            kind: TaskKind::VmStop,
            target: format!("vm{id}"),
            state: if ended_at.is_some() {
                TaskState::Succeeded
            } else {
                TaskState::Running
            },
            progress: None,
            message: None,
            cancellable: false,
            created_at: now - 100_000,
            ended_at,
            actor: Actor::controller("t"),
            result: None,
            error: None,
        },
        follow_s: 0,
        count: None,
    };
    let old = now - ENDED_TASK_KEPT.as_secs() - 10;
    // Ended long ago out of id order; the newest is kept whatever its end.
    for (id, ended_at) in [
        (1, Some(now - 5)),
        (2, Some(old)),
        (3, None),
        (4, Some(old - 100)),
        (5, Some(now)),
        (6, Some(old)),
    ] {
        keys::put(store.as_ref(), &keys::task_key(id), &task(id, ended_at)).expect("put");
    }
    let b = board(&store);
    let listed: Vec<u64> = b
        .list(&TaskFilter::default())
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, vec![1, 3, 5, 6]);
    assert_eq!(stored_ids(&store), vec![1, 3, 5, 6]);
}
