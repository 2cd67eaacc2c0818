//! Behaviour of the embedded SQLite store.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod common;

use common::{drain, summary};
use vinfra_store::{
    get_json, put_json, range_json, Compare, CompareOp, CompareTarget, Op, OpResult, SqliteStore,
    Store, StoreError, Txn, WatchEvent,
};

fn store() -> SqliteStore {
    match SqliteStore::open_in_memory() {
        Ok(s) => s,
        Err(e) => panic!("open in-memory store: {e}"),
    }
}

#[test]
fn revisions_and_versions() -> Result<(), StoreError> {
    let s = store();
    assert_eq!(s.revision()?, 0);
    assert_eq!(s.put("/k", b"1", 0)?, 1);
    assert_eq!(s.put("/other", b"x", 0)?, 2);
    assert_eq!(s.put("/k", b"2", 0)?, 3);
    let kv = s.get("/k")?.expect("the key is there");
    assert_eq!(kv.value, b"2");
    assert_eq!(kv.create_revision, 1);
    assert_eq!(kv.mod_revision, 3);
    assert_eq!(kv.version, 2);
    assert_eq!(kv.lease, 0);

    assert!(s.delete("/k")?);
    assert_eq!(s.revision()?, 4);
    // Deleting a missing key changes nothing.
    assert!(!s.delete("/k")?);
    assert_eq!(s.revision()?, 4);
    assert_eq!(s.get("/k")?, None);

    // Re-created: a new life, version 1.
    assert_eq!(s.put("/k", b"3", 0)?, 5);
    let kv = s.get("/k")?.expect("the key is there");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    Ok(())
}

#[test]
fn bad_keys_are_refused() {
    let s = store();
    assert!(matches!(s.put("", b"x", 0), Err(StoreError::EmptyKey)));
    assert!(matches!(
        s.put("/a\0b", b"x", 0),
        Err(StoreError::NulInKey(_))
    ));
    assert!(matches!(
        s.put("/a", b"x", 42),
        Err(StoreError::NoLease(42))
    ));
    assert!(matches!(s.grant_lease(0), Err(StoreError::LeaseTtl(0))));
    assert!(matches!(
        s.grant_lease(86_401),
        Err(StoreError::LeaseTtl(86_401))
    ));
    assert!(matches!(
        s.watch("/", -1),
        Err(StoreError::NegativeRevision(-1))
    ));
}

#[test]
fn cas_txn_success_and_failure() -> Result<(), StoreError> {
    let s = store();
    // Create only if absent.
    let create = |v: &[u8]| Txn {
        compare: vec![Compare::absent("/vm")],
        success: vec![Op::Put {
            key: "/vm".into(),
            value: v.to_vec(),
            lease: 0,
        }],
        failure: vec![Op::Get { key: "/vm".into() }],
    };
    let r = s.txn(create(b"a"))?;
    assert!(r.succeeded);
    assert_eq!(r.revision, 1);
    assert_eq!(r.results, vec![OpResult::Put(1)]);

    let r = s.txn(create(b"b"))?;
    assert!(!r.succeeded);
    assert_eq!(
        r.revision, 1,
        "a read-only branch does not bump the revision"
    );
    match &r.results[..] {
        [OpResult::Get(Some(kv))] => assert_eq!(kv.value, b"a"),
        other => panic!("unexpected results {other:?}"),
    }

    // Compare-and-swap on mod_revision.
    let swap = |rev, v: &[u8]| Txn {
        compare: vec![Compare::mod_revision("/vm", rev)],
        success: vec![Op::Put {
            key: "/vm".into(),
            value: v.to_vec(),
            lease: 0,
        }],
        failure: vec![],
    };
    assert!(s.txn(swap(1, b"c"))?.succeeded);
    assert!(!s.txn(swap(1, b"d"))?.succeeded, "stale revision must lose");
    assert_eq!(s.get("/vm")?.map(|kv| kv.value), Some(b"c".to_vec()));

    // Value and ordering compares.
    let cmp = |op, target| Txn {
        compare: vec![Compare {
            key: "/vm".into(),
            op,
            target,
        }],
        ..Txn::default()
    };
    assert!(
        s.txn(cmp(CompareOp::Equal, CompareTarget::Value(b"c".to_vec())))?
            .succeeded
    );
    assert!(
        !s.txn(cmp(CompareOp::Equal, CompareTarget::Value(b"x".to_vec())))?
            .succeeded
    );
    assert!(
        s.txn(cmp(CompareOp::Greater, CompareTarget::Version(1)))?
            .succeeded
    );
    assert!(
        s.txn(cmp(CompareOp::Less, CompareTarget::ModRevision(100)))?
            .succeeded
    );
    assert!(
        s.txn(cmp(CompareOp::NotEqual, CompareTarget::CreateRevision(7)))?
            .succeeded
    );
    let missing = Txn {
        compare: vec![Compare {
            key: "/nope".into(),
            op: CompareOp::NotEqual,
            target: CompareTarget::Value(b"x".to_vec()),
        }],
        ..Txn::default()
    };
    assert!(
        !s.txn(missing)?.succeeded,
        "a value compare on a missing key is false"
    );
    Ok(())
}

#[test]
fn multi_key_txn_is_atomic_and_bumps_once() -> Result<(), StoreError> {
    let s = store();
    s.put("/old/1", b"x", 0)?;
    s.put("/old/2", b"x", 0)?;
    let mut w = s.watch("/", s.revision()?)?;
    let r = s.txn(Txn {
        compare: vec![],
        success: vec![
            Op::Put {
                key: "/a".into(),
                value: b"1".to_vec(),
                lease: 0,
            },
            Op::Put {
                key: "/b".into(),
                value: b"2".to_vec(),
                lease: 0,
            },
            Op::DeletePrefix {
                prefix: "/old/".into(),
            },
            Op::Range { prefix: "/".into() },
        ],
        failure: vec![],
    })?;
    assert!(r.succeeded);
    assert_eq!(r.revision, 3);
    assert_eq!(s.revision()?, 3);
    assert_eq!(
        r.results[..3],
        [OpResult::Put(3), OpResult::Put(3), OpResult::Delete(2)]
    );
    match &r.results[3] {
        OpResult::Range(kvs) => {
            let keys: Vec<_> = kvs.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["/a", "/b"], "ops see earlier ops of the same txn");
        }
        other => panic!("unexpected {other:?}"),
    }
    let evs = drain(&mut w);
    assert_eq!(
        summary(&evs),
        vec![
            (3, "/a".into(), "put"),
            (3, "/b".into(), "put"),
            (3, "/old/1".into(), "delete"),
            (3, "/old/2".into(), "delete"),
        ]
    );

    // A failing op rolls the whole transaction back.
    let err = s.txn(Txn {
        compare: vec![],
        success: vec![
            Op::Put {
                key: "/c".into(),
                value: b"3".to_vec(),
                lease: 0,
            },
            Op::Put {
                key: "/d".into(),
                value: b"4".to_vec(),
                lease: 999,
            },
        ],
        failure: vec![],
    });
    assert!(matches!(err, Err(StoreError::NoLease(999))));
    assert_eq!(s.get("/c")?, None);
    assert_eq!(s.revision()?, 3);
    assert!(drain(&mut w).is_empty(), "no events for a rolled-back txn");
    Ok(())
}

#[test]
fn range_is_prefix_exact_and_ordered() -> Result<(), StoreError> {
    let s = store();
    for k in [
        "/ab",
        "/a/z",
        "/a/b",
        "/a",
        "/a/",
        "/a0",
        "/a/é",
        "/a/\u{10FFFF}",
        "/b/1",
    ] {
        s.put(k, k.as_bytes(), 0)?;
    }
    let (kvs, rev) = s.range("/a/")?;
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/", "/a/b", "/a/z", "/a/é", "/a/\u{10FFFF}"]);
    assert_eq!(rev, 9);
    let (kvs, _) = s.range("/a/é")?;
    assert_eq!(kvs.len(), 1);
    let (all, _) = s.range("")?;
    assert_eq!(all.len(), 9);
    let (none, _) = s.range("/c")?;
    assert!(none.is_empty());
    Ok(())
}

#[tokio::test]
async fn watch_history_then_live_in_order() -> Result<(), StoreError> {
    let s = Arc::new(store());
    s.put("/vinfra/vms/a", b"1", 0)?; // 1
    s.put("/vinfra/hosts/h", b"h", 0)?; // 2
    s.put("/vinfra/vms/b", b"2", 0)?; // 3
    s.delete("/vinfra/vms/a")?; // 4

    let mut w = s.watch("/vinfra/vms/", 1)?;
    let mut all = s.watch("/vinfra/", 0)?;

    let writer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || -> Result<(), StoreError> {
            for i in 0..50 {
                s.put(&format!("/vinfra/vms/n{i:02}"), b"x", 0)?;
                s.put("/vinfra/hosts/h", b"y", 0)?;
            }
            Ok(())
        })
    };
    let mut got = Vec::new();
    while got.len() < 52 {
        match tokio::time::timeout(Duration::from_secs(5), w.recv()).await {
            Ok(Some(ev)) => got.push(ev),
            other => panic!("watch ended early: {other:?} after {}", got.len()),
        }
    }
    writer.join().expect("the writer thread ends")?;

    let s2 = summary(&got);
    assert_eq!(s2[0], (3, "/vinfra/vms/b".into(), "put"));
    assert_eq!(s2[1], (4, "/vinfra/vms/a".into(), "delete"));
    for (i, ev) in s2[2..].iter().enumerate() {
        assert_eq!(ev.0, 5 + 2 * i as i64);
        assert_eq!(ev.1, format!("/vinfra/vms/n{i:02}"));
    }
    let revs: Vec<_> = drain(&mut all).iter().map(|e| e.revision()).collect();
    assert_eq!(
        revs,
        (1..=104).collect::<Vec<_>>(),
        "every change, once, in order"
    );
    Ok(())
}

#[test]
fn dropped_watchers_are_forgotten() -> Result<(), StoreError> {
    let s = store();
    let w = s.watch("/", 0)?;
    let _other = s.watch("/other/", 0)?;
    assert_eq!(s.watcher_count(), 2);
    drop(w);
    s.put("/a", b"1", 0)?;
    assert_eq!(s.watcher_count(), 1);
    let mut w2 = s.watch("/", 1)?;
    s.put("/b", b"1", 0)?;
    assert_eq!(drain(&mut w2).len(), 1);
    assert_eq!(s.watcher_count(), 2);
    Ok(())
}

#[test]
fn watch_below_compaction_fails() -> Result<(), StoreError> {
    let s = store();
    for i in 0..10 {
        s.put(&format!("/k{i}"), b"v", 0)?;
    }
    s.compact(6)?;
    match s.watch("/", 5) {
        Err(StoreError::Compacted {
            requested: 6,
            oldest: 7,
        }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut w = s.watch("/", 6)?;
    let revs: Vec<_> = drain(&mut w).iter().map(|e| e.revision()).collect();
    assert_eq!(revs, vec![7, 8, 9, 10]);
    assert!(matches!(
        s.compact(11),
        Err(StoreError::CompactAhead { revision: 11, .. })
    ));
    // Compacting lower again is a no-op.
    s.compact(3)?;
    assert!(s.watch("/", 5).is_err());
    Ok(())
}

#[test]
fn expired_lease_deletes_keys_with_events() -> Result<(), StoreError> {
    let s = store();
    let lease = s.grant_lease(1)?;
    let other = s.grant_lease(60)?;
    s.put("/hb/h1", b"alive", lease)?;
    s.put("/hb/h2", b"alive", lease)?;
    s.put("/hb/h3", b"alive", other)?;
    s.put("/plain", b"p", 0)?;
    assert_eq!(s.get("/hb/h1")?.map(|kv| kv.lease), Some(lease));
    let mut w = s.watch("/", s.revision()?)?;

    // Not yet expired.
    assert_eq!(s.expire_leases(SystemTime::now())?, 0);
    assert_eq!(s.range("/hb/")?.0.len(), 3);

    let later = SystemTime::now() + Duration::from_secs(2);
    assert_eq!(s.expire_leases(later)?, 1);
    let keys: Vec<_> = s.range("/")?.0.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, ["/hb/h3", "/plain"]);
    assert_eq!(
        summary(&drain(&mut w)),
        vec![
            (5, "/hb/h1".into(), "delete"),
            (5, "/hb/h2".into(), "delete")
        ]
    );
    assert!(matches!(s.keep_alive(lease), Err(StoreError::NoLease(_))));
    assert!(matches!(
        s.put("/x", b"", lease),
        Err(StoreError::NoLease(_))
    ));

    // Revoke deletes the keys too.
    s.keep_alive(other)?;
    s.revoke(other)?;
    assert_eq!(s.get("/hb/h3")?, None);
    assert!(matches!(s.revoke(other), Err(StoreError::NoLease(_))));
    Ok(())
}

#[tokio::test]
async fn reaper_expires_leases_in_background() -> Result<(), StoreError> {
    let s = Arc::new(store());
    let lease = s.grant_lease(1)?;
    s.put("/hb/h1", b"alive", lease)?;
    let mut w = s.watch("/hb/", s.revision()?)?;
    let reaper = s.spawn_lease_reaper();
    match tokio::time::timeout(Duration::from_secs(5), w.recv()).await {
        Ok(Some(WatchEvent::Delete { key, .. })) => assert_eq!(key, "/hb/h1"),
        other => panic!("expected a delete, got {other:?}"),
    }
    drop(s);
    // The reaper ends once the store is gone.
    tokio::time::timeout(Duration::from_secs(5), reaper)
        .await
        .expect("the reaper ends with the store")
        .expect("the reaper task");
    Ok(())
}

#[test]
fn persists_across_reopen() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vinfra.db");
    let lease;
    {
        let s = SqliteStore::open(&path)?;
        s.put("/a", b"1", 0)?;
        s.put("/a", b"2", 0)?;
        lease = s.grant_lease(600)?;
        s.put("/b", b"3", lease)?;
        s.compact(1)?;
    }
    let s = SqliteStore::open(&path)?;
    assert_eq!(s.revision()?, 3);
    let kv = s.get("/a")?.expect("the key is there");
    assert_eq!(
        (kv.value.as_slice(), kv.version, kv.mod_revision),
        (&b"2"[..], 2, 2)
    );
    assert_eq!(s.get("/b")?.map(|kv| kv.lease), Some(lease));
    assert!(matches!(s.watch("/", 0), Err(StoreError::Compacted { .. })));
    let mut w = s.watch("/", 1)?;
    assert_eq!(drain(&mut w).len(), 2);
    s.revoke(lease)?;
    assert_eq!(s.get("/b")?, None);
    assert_eq!(s.put("/c", b"", 0)?, 5);
    let mode: String = {
        let conn = rusqlite_mode(&path);
        conn.unwrap_or_default()
    };
    assert_eq!(mode, "wal");
    Ok(())
}

/// Reads the journal mode straight from the file.
fn rusqlite_mode(path: &std::path::Path) -> Option<String> {
    let conn = rusqlite::Connection::open(path).ok()?;
    conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).ok()
}

#[test]
fn concurrent_writers_get_increasing_revisions() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(SqliteStore::open(&dir.path().join("db"))?);
    let mut w = s.watch("/", 0)?;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || -> Result<Vec<i64>, StoreError> {
                let mut revs = Vec::new();
                for i in 0..100 {
                    revs.push(s.put(&format!("/t{t}/{i}"), b"v", 0)?);
                }
                Ok(revs)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let revs = t.join().expect("the writer thread ends")?;
        assert!(
            revs.windows(2).all(|p| p[0] < p[1]),
            "per-thread revisions increase"
        );
        all.extend(revs);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=400).collect::<Vec<_>>(),
        "no revision given twice"
    );
    let seen: Vec<_> = drain(&mut w).iter().map(|e| e.revision()).collect();
    assert_eq!(seen, (1..=400).collect::<Vec<_>>());
    Ok(())
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Vm {
    name: String,
    vcpus: u32,
}

#[test]
fn typed_json_round_trip() -> Result<(), StoreError> {
    let s = store();
    let vm = Vm {
        name: "web-1".into(),
        vcpus: 2,
    };
    let rev = put_json(&s, "/vinfra/vms/web-1", &vm, 0)?;
    assert_eq!(get_json::<Vm>(&s, "/vinfra/vms/web-1")?, Some((vm, rev)));
    assert_eq!(get_json::<Vm>(&s, "/vinfra/vms/none")?, None);
    put_json(
        &s,
        "/vinfra/vms/web-2",
        &Vm {
            name: "web-2".into(),
            vcpus: 4,
        },
        0,
    )?;
    let (entries, at) = range_json::<Vm>(&s, "/vinfra/vms/")?;
    assert_eq!(at, 2);
    assert_eq!(
        entries.iter().map(|e| e.value.vcpus).collect::<Vec<_>>(),
        [2, 4]
    );
    assert_eq!(entries[1].mod_revision, 2);

    s.put("/vinfra/vms/bad", b"{not json", 0)?;
    match get_json::<Vm>(&s, "/vinfra/vms/bad") {
        Err(StoreError::Json { key, .. }) => assert_eq!(key, "/vinfra/vms/bad"),
        other => panic!("expected a JSON error, got {other:?}"),
    }
    assert!(matches!(
        range_json::<Vm>(&s, "/vinfra/vms/"),
        Err(StoreError::Json { .. })
    ));
    Ok(())
}

fn put_txn(key: &str) -> Txn {
    Txn {
        compare: vec![Compare::absent(key)],
        success: vec![Op::Put {
            key: key.into(),
            value: b"v".to_vec(),
            lease: 0,
        }],
        failure: vec![],
    }
}

#[test]
fn one_disk_sync_covers_every_commit_made_before_it() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStore::open(&dir.path().join("db"))?;
    let mut w = s.watch("/", 0)?;
    let before = s.syncs();
    let (first, p1) = s.txn_pending(put_txn("/a"))?;
    let (second, p2) = s.txn_pending(put_txn("/b"))?;
    let (lost, p3) = s.txn_pending(put_txn("/a"))?;
    assert!(first.succeeded && second.succeeded && !lost.succeeded);
    assert_eq!((first.revision, second.revision), (1, 2));
    // Readers see the commits at once; watchers only once they are on disk.
    assert_eq!(s.get("/b")?.map(|kv| kv.mod_revision), Some(2));
    assert!(drain(&mut w).is_empty(), "no event before the sync");
    p3.wait()?;
    assert_eq!(s.syncs(), before + 1, "one sync for the three commits");
    p1.wait()?;
    p2.wait()?;
    assert_eq!(
        s.syncs(),
        before + 1,
        "the earlier commits were covered by it"
    );
    assert_eq!(
        summary(&drain(&mut w)),
        vec![(1, "/a".into(), "put"), (2, "/b".into(), "put")]
    );
    // A watch opened while a commit waits for its sync gets it from its history, once.
    let (_, p4) = s.txn_pending(put_txn("/c"))?;
    let mut late = s.watch("/c", 0)?;
    p4.wait()?;
    assert_eq!(summary(&drain(&mut late)), vec![(3, "/c".into(), "put")]);
    assert_eq!(summary(&drain(&mut w)), vec![(3, "/c".into(), "put")]);
    Ok(())
}

#[test]
fn writers_waiting_together_share_syncs_and_keep_revision_order() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(SqliteStore::open(&dir.path().join("db"))?);
    let mut w = s.watch("/", 0)?;
    // Each writer commits under a lock of its own and waits for the disk after releasing it,
    // as the console's create path does.
    let order = Arc::new(std::sync::Mutex::new(()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (s, order) = (Arc::clone(&s), Arc::clone(&order));
            std::thread::spawn(move || -> Result<(), StoreError> {
                for i in 0..50 {
                    let pending = {
                        let _g = order.lock().expect("lock");
                        s.txn_pending(put_txn(&format!("/t{t}/{i}")))?.1
                    };
                    pending.wait()?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("the writer thread ends")?;
    }
    let seen: Vec<_> = drain(&mut w).iter().map(|e| e.revision()).collect();
    assert_eq!(seen, (1..=400).collect::<Vec<_>>());
    assert!(s.syncs() <= 400 + 1, "never more than one sync per commit");
    Ok(())
}

#[test]
fn a_refused_write_leaves_no_transaction_open() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let s = SqliteStore::open(&path)?;
    assert!(matches!(s.put("", b"v", 0), Err(StoreError::EmptyKey)));
    let (_, pending) = s.txn_pending(put_txn("/a"))?;
    assert!(matches!(
        s.put("/b", b"v", 99),
        Err(StoreError::NoLease(99))
    ));
    pending.wait()?;
    // Another connection can write at once: no batch holds the write lock.
    let other = rusqlite::Connection::open(&path).expect("open");
    other
        .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
        .expect("the write lock is free");
    assert_eq!(s.get("/a")?.map(|kv| kv.mod_revision), Some(1));
    assert_eq!(s.get("/b")?, None);
    Ok(())
}

#[tokio::test]
async fn the_committer_tells_when_a_write_is_on_disk_and_syncs_one_dropped_unwaited(
) -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let s = SqliteStore::open(&path)?;
    let mut w = s.watch("/", 0)?;
    let before = s.syncs();
    let (_, p1) = s.txn_pending(put_txn("/a"))?;
    let (_, p2) = s.txn_pending(put_txn("/b"))?;
    // Told on the committer's thread once the write is on disk.
    let (tx, rx) = std::sync::mpsc::channel();
    p1.then(move |durable| {
        let thread = std::thread::current().name().map(str::to_string);
        let _ = tx.send((durable.is_ok(), thread));
    });
    p2.on_disk().await?;
    let (ok, thread) = rx.recv_timeout(Duration::from_secs(5)).expect("told");
    assert!(ok);
    assert_eq!(thread.as_deref(), Some("store-commit"));
    assert!(s.syncs() > before);
    assert_eq!(
        summary(&drain(&mut w)),
        vec![(1, "/a".into(), "put"), (2, "/b".into(), "put")]
    );
    // Dropped unwaited: its sync is asked for all the same (its event comes once it is done).
    let (_, p3) = s.txn_pending(put_txn("/c"))?;
    drop(p3);
    let ev = tokio::time::timeout(Duration::from_secs(5), w.recv())
        .await
        .expect("synced with no one waiting")
        .expect("an event");
    assert_eq!((ev.key(), ev.revision()), ("/c", 3));
    // Written, not asked for, when the store goes: its end commits and syncs it.
    let (_, p4) = s.txn_pending(put_txn("/d"))?;
    drop(s);
    p4.wait()?;
    let s = SqliteStore::open(&path)?;
    assert_eq!(s.get("/d")?.map(|kv| kv.mod_revision), Some(4));
    Ok(())
}

#[test]
fn a_callback_that_panics_or_waits_for_a_write_never_stops_the_committer() -> Result<(), StoreError>
{
    let dir = tempfile::tempdir().expect("tempdir");
    let s = std::sync::Arc::new(SqliteStore::open(&dir.path().join("db"))?);
    // A callback that panics: logged, the next callbacks and writes go on.
    let (_, p1) = s.txn_pending(put_txn("/a"))?;
    p1.then(|_| panic!("a callback that panics"));
    let (tx, rx) = std::sync::mpsc::channel();
    let (_, p2) = s.txn_pending(put_txn("/b"))?;
    let told = tx.clone();
    p2.then(move |durable| {
        let _ = told.send(durable.is_ok());
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    // A callback that waits for a write: refused (it would wait for itself), nothing hangs.
    let store = std::sync::Arc::clone(&s);
    let (_, p3) = s.txn_pending(put_txn("/c"))?;
    p3.then(move |_| {
        let waited = store.put("/d", b"v", 0);
        let _ = tx.send(waited.is_ok());
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(false));
    let (sent, received) = std::sync::mpsc::channel();
    let store = std::sync::Arc::clone(&s);
    std::thread::spawn(move || {
        let _ = sent.send(store.put("/e", b"v", 0).is_ok());
    });
    assert_eq!(received.recv_timeout(Duration::from_secs(5)), Ok(true));
    Ok(())
}

#[test]
fn compares_of_revisions_and_versions_tell_them_apart_and_see_an_absent_key_as_zero(
) -> Result<(), StoreError> {
    let s = store();
    let cmp = |target| Txn {
        compare: vec![Compare {
            key: "/k".into(),
            op: CompareOp::Equal,
            target,
        }],
        success: vec![],
        failure: vec![],
    };
    for target in [
        CompareTarget::Version(0),
        CompareTarget::CreateRevision(0),
        CompareTarget::ModRevision(0),
    ] {
        assert!(
            s.txn(cmp(target.clone()))?.succeeded,
            "{target:?} of an absent key"
        );
    }
    assert!(!s.txn(cmp(CompareTarget::Value(vec![])))?.succeeded);
    s.put("/other", b"o", 0)?;
    let created = s.put("/k", b"v1", 0)?;
    s.put("/other", b"o2", 0)?;
    let modified = s.put("/k", b"v2", 0)?;
    assert!(created < modified);
    for (target, holds) in [
        (CompareTarget::CreateRevision(created), true),
        (CompareTarget::CreateRevision(modified), false),
        (CompareTarget::ModRevision(modified), true),
        (CompareTarget::ModRevision(created), false),
        (CompareTarget::Version(2), true),
        (CompareTarget::Version(1), false),
        (CompareTarget::Value(b"v2".to_vec()), true),
    ] {
        assert_eq!(s.txn(cmp(target.clone()))?.succeeded, holds, "{target:?}");
    }
    Ok(())
}
