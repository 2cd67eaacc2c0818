//! The embedded backend: one SQLite database in WAL mode, every write on disk before it is
//! answered (group commit: writes committed while a disk sync runs share the next one).
//!
//! Tables:
//! - `kv(key, value, create_revision, mod_revision, version, lease)`: the current key space;
//! - `events(revision, seq, key, kind, value, create_revision, version, lease)`: every change, the
//!   watch history; [`Store::compact`] drops old rows;
//! - `leases(id, ttl_s, expires_at_ms)`: live leases;
//! - `meta(name, value)`: the store revision (`revision`) and the compaction point (`compacted`).
//!
//! One connection behind one mutex. Each write runs in a savepoint of one open SQLite
//! transaction (the batch); SQLite commits the batch without syncing (`synchronous=NORMAL`: the
//! WAL is synced at checkpoints only); a write is answered only after the WAL file was synced.
//! One thread of the store's own, the committer ([`commit`]), commits the batch and syncs the
//! WAL once someone waits for a write of it (or dropped one unwaited), for every write made
//! before; writes made while a sync runs share the next one instead of one sync each. Those who
//! wait block ([`PendingWrite::wait`]), or are told by the committer
//! ([`PendingWrite::then`], [`PendingWrite::on_disk`]): one wake of the committer per batch,
//! no thread held per write. A
//! checkpoint syncs the WAL before it copies pages into the database, so a commit is on disk
//! once the WAL was synced after it, wherever its pages are later. Live watchers are fed under
//! the connection's mutex once a commit is on disk, in commit order, so a watcher sees changes
//! in exactly the order of their revisions, with no gap between its history and its live
//! events. Reads (and a new watch's history) may see a commit whose sync is still under way;
//! its writer has not been answered yet. When a sync fails, the store refuses every call after
//! it ([`StoreError::NotDurable`]): what the disk holds is then unknown.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::kv::{
    KeyValue, LeaseId, PendingWrite, Revision, Store, StoreError, Txn, TxnResponse, WatchEvent,
    Watcher, MAX_LEASE_TTL_S,
};

mod commit;
mod queries;
mod write_txn;

use commit::Committer;

use queries::{compacted_revision, current_revision, get_kv, history, lease_exists, range_kvs};
use write_txn::WriteTxn;

/// How long a call waits for a database lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The columns of `kv`, in [`SCHEMA`] and in [`migrate_rowid_tables`]'s new table.
macro_rules! kv_columns {
    () => {
        "(
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
)"
    };
}

/// The columns of `events`, in [`SCHEMA`] and in [`migrate_rowid_tables`]'s new table.
macro_rules! events_columns {
    () => {
        "(
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    PRIMARY KEY (revision, seq)
)"
    };
}

/// The tables. `kv` and `events` hold records of about 1 KiB and more (a VM's), so they are
/// rowid tables with their keys in an index of their own: a key's lookup or insert compares
/// keys in that index's small entries. (They were `WITHOUT ROWID` tables before, where the
/// records sat in the key's b-tree: SQLite advises against that for rows over a twentieth of a
/// page, and every comparison with a record that overflowed its page read the whole record;
/// [`migrate_rowid_tables`] moves such a database over when it opens.)
const SCHEMA: &str = concat!(
    "CREATE TABLE IF NOT EXISTS kv ",
    kv_columns!(),
    ";
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease <> 0;
CREATE TABLE IF NOT EXISTS events ",
    events_columns!(),
    ";
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl_s INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases(expires_at_ms);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('revision', 0), ('compacted', 0);
"
);

/// Moves `kv` and `events` of a database made before they were rowid tables (see [`SCHEMA`])
/// into rowid tables, their rows as they were, in one transaction; nothing to do otherwise.
fn migrate_rowid_tables(conn: &Connection) -> Result<(), StoreError> {
    let without_rowid = |table: &str| -> Result<bool, StoreError> {
        let sql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()?;
        Ok(sql.is_some_and(|s| s.to_ascii_uppercase().contains("WITHOUT ROWID")))
    };
    let kv = without_rowid("kv")?;
    let events = without_rowid("events")?;
    if !kv && !events {
        return Ok(());
    }
    let mut sql = String::from("BEGIN IMMEDIATE;");
    if kv {
        sql.push_str(concat!(
            "DROP INDEX IF EXISTS kv_lease;
             ALTER TABLE kv RENAME TO kv_without_rowid;
             CREATE TABLE kv ",
            kv_columns!(),
            ";
             INSERT INTO kv(key, value, create_revision, mod_revision, version, lease)
                 SELECT key, value, create_revision, mod_revision, version, lease
                 FROM kv_without_rowid ORDER BY key;
             DROP TABLE kv_without_rowid;",
        ));
    }
    if events {
        sql.push_str(concat!(
            "ALTER TABLE events RENAME TO events_without_rowid;
             CREATE TABLE events ",
            events_columns!(),
            ";
             INSERT INTO events(revision, seq, key, kind, value, create_revision, version, lease)
                 SELECT revision, seq, key, kind, value, create_revision, version, lease
                 FROM events_without_rowid ORDER BY revision, seq;
             DROP TABLE events_without_rowid;",
        ));
    }
    sql.push_str("COMMIT;");
    if let Err(e) = conn.execute_batch(&sql) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e.into());
    }
    Ok(())
}

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    shared: Arc<Shared>,
    /// The committer thread, ended and joined when the store is dropped.
    committer: Option<JoinHandle<()>>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// The WAL file, synced to make commits durable (`None`: an in-memory database).
    wal: Option<File>,
    /// Commits and syncs the batch on its thread, and tells who waits.
    commit: Arc<Committer>,
}

struct Inner {
    conn: Connection,
    /// Live watches.
    watchers: Vec<Watch>,
    /// Number of the last write (1, 2, …), committed or in the open batch.
    committed: u64,
    /// A write transaction is open (`BEGIN IMMEDIATE`), holding the writes made since the
    /// last `COMMIT`, each in a savepoint of its own: the next sync commits them together.
    open: bool,
    /// Writes released into the open batch.
    in_batch: u64,
    /// Why writes already made were lost (a batch rolled back by SQLite, or its commit failed,
    /// or a write panicked inside it): the store refuses every call after it.
    lost: Option<String>,
    /// Commits not yet known to be on disk with the events they made, in commit order.
    undelivered: VecDeque<(u64, Vec<WatchEvent>)>,
    /// No lease expires before this (Unix ms; a lower bound): writes before it do not look
    /// for expired leases.
    no_expiry_before: i64,
}

/// A live watch: key prefix, the channel feeding its [`Watcher`], and the revision its history
/// reached (events at or below it were in the history).
struct Watch {
    prefix: String,
    tx: UnboundedSender<WatchEvent>,
    seen: Revision,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl Drop for SqliteStore {
    /// Ends the committer once it has synced what was written (writes still waited for are on
    /// disk, or told why not).
    fn drop(&mut self) {
        self.shared.commit.close();
        if let Some(committer) = self.committer.take() {
            // A store dropped by what its committer calls (the last owner told of a sync) lets
            // the committer end on its own.
            if committer.thread().id() != std::thread::current().id() {
                let _ = committer.join();
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        Self::init(conn, Some(path))
    }

    /// A private in-memory database (tests, tools).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, path: Option<&Path>) -> Result<Self, StoreError> {
        // A 64 MiB page cache and memory-mapped reads keep a listing of every VM (10,000 keys of
        // about 1 KiB) in memory instead of going through read(2) page by page. Commits do not
        // sync: the committer syncs the WAL, once for all the commits made before it. Temporary
        // files in memory: every write is a savepoint of the open batch, and a savepoint keeps
        // the pages it changes in a sub-journal, which SQLite would otherwise write to a
        // temporary file (a `pwrite` per page: 8% of the console's CPU in a burst of creates,
        // docs/benchmarks.md); it is emptied when the savepoint is released.
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-65536;
             PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY;",
        )?;
        migrate_rowid_tables(&conn)?;
        conn.execute_batch(SCHEMA)?;
        // The schema's write made the WAL file; it lives as long as this connection.
        let wal = match path {
            Some(path) => Some(open_wal(path)?),
            None => None,
        };
        let shared = Shared {
            inner: Mutex::new(Inner {
                conn,
                watchers: Vec::new(),
                committed: 0,
                open: false,
                in_batch: 0,
                lost: None,
                undelivered: VecDeque::new(),
                no_expiry_before: i64::MIN,
            }),
            wal,
            commit: Arc::default(),
        };
        let shared = Arc::new(shared);
        let on_thread = Arc::clone(&shared);
        let committer = commit::spawn(Arc::clone(&shared.commit), move || {
            on_thread.commit_and_sync()
        })?;
        Ok(SqliteStore {
            shared,
            committer: Some(committer),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.shared.lock()
    }

    /// Revokes every lease that expired at `now`, deleting its keys (watchers see Delete events).
    /// Returns how many leases were revoked. Called before every write and by
    /// [`SqliteStore::spawn_lease_reaper`].
    pub fn expire_leases(&self, now: SystemTime) -> Result<usize, StoreError> {
        let (n, pending) = {
            let mut inner = self.lock()?;
            let n = inner.expire(unix_ms(now))?;
            (n, self.shared.commit.pending(inner.committed))
        };
        pending.wait()?;
        Ok(n)
    }

    /// Disk syncs made so far (each makes every commit before it durable).
    pub fn syncs(&self) -> u64 {
        self.shared.commit.syncs()
    }

    /// Number of live watches (dropped ones are forgotten at the next delivery).
    pub fn watcher_count(&self) -> usize {
        self.shared.inner().watchers.len()
    }

    /// Starts a tokio task that expires leases every second. The task ends when the store is
    /// dropped. Needs a tokio runtime.
    pub fn spawn_lease_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let result =
                    tokio::task::spawn_blocking(move || store.expire_leases(SystemTime::now()))
                        .await;
                match result {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::debug!(revoked = n, "expired leases"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %vinfra_types::error::Chain(&e), "lease expiry failed")
                    }
                    Err(e) => {
                        tracing::warn!(error = %vinfra_types::error::Chain(&e), "lease expiry task failed")
                    }
                }
            }
        })
    }

    /// Runs `f` inside one write transaction after expiring leases and waits until it is on
    /// disk (its events then delivered to watchers).
    fn write<R>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let (result, pending) = self.write_pending(f)?;
        pending.wait()?;
        Ok(result)
    }

    /// [`SqliteStore::write`] without the wait: the commit is made, the sync is left to the
    /// returned [`PendingWrite`].
    fn write_pending<R>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R, StoreError>,
    ) -> Result<(R, PendingWrite), StoreError> {
        let mut inner = self.lock()?;
        inner.expire(unix_ms(SystemTime::now()))?;
        let result = inner.write(f)?;
        let pending = self.shared.commit.pending(inner.committed);
        Ok((result, pending))
    }
}

/// Opens the WAL file of the database at `path` (to sync it) and syncs its directory once, so
/// the file itself survives a crash.
fn open_wal(path: &Path) -> Result<File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    let wal = PathBuf::from(name);
    let not_durable = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::NotDurable(format!("{what} {}: {e}", p.display()))
    };
    let file = File::open(&wal).map_err(|e| not_durable("opening", &wal, e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| not_durable("syncing", &dir, e))?;
    Ok(file)
}

impl Shared {
    /// The connection's lock. After a panic while it was held, an open batch may hold half of
    /// a write: it is rolled back, and since the writes before it in the batch are lost with
    /// it, the store refuses every call after that.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => {
                let mut inner = poisoned.into_inner();
                if inner.open {
                    inner.open = false;
                    let _ = inner.conn.execute_batch("ROLLBACK");
                    inner.lost = Some("a write panicked inside an open batch".into());
                }
                inner
            }
        }
    }

    /// The connection, unless a sync failed or writes were lost.
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        if let Some(e) = self.commit.failed() {
            return Err(StoreError::NotDurable(e));
        }
        let inner = self.inner();
        if let Some(e) = &inner.lost {
            return Err(StoreError::NotDurable(e.clone()));
        }
        Ok(inner)
    }

    /// Commits the open batch and syncs the WAL, then feeds the watchers (on the committer's
    /// thread); the number of the last write now on disk, or why none is.
    fn commit_and_sync(&self) -> Result<u64, String> {
        // One sync covers every write up to `upto`.
        let (upto, committed) = {
            let mut inner = self.inner();
            (inner.committed, inner.commit_batch())
        };
        match committed {
            Err(StoreError::NotDurable(e)) => return Err(e),
            Err(e) => return Err(e.to_string()),
            Ok(()) => {}
        }
        if let Some(wal) = &self.wal {
            wal.sync_data()
                .map_err(|e| format!("syncing the WAL: {e}"))?;
        }
        self.inner().deliver(upto);
        Ok(upto)
    }
}

impl Inner {
    /// Runs `f` in a savepoint of the open batch (opened if none is) and releases it: the write
    /// is in the database for every read through this connection, and is committed with the
    /// batch at the next sync. Its events wait in `undelivered` for that sync. When `f` fails,
    /// its savepoint is rolled back and the batch goes on without it.
    fn write<R>(
        &mut self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if !self.open {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.open = true;
            self.in_batch = 0;
        }
        self.conn.execute_batch("SAVEPOINT write")?;
        let done = (|| {
            let revision = current_revision(&self.conn)?;
            let mut w = WriteTxn {
                tx: &self.conn,
                revision,
                events: Vec::new(),
            };
            let result = f(&mut w)?;
            let events = w.events;
            if !events.is_empty() {
                self.conn
                    .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
                    .execute([revision + 1])?;
            }
            Ok((result, events))
        })();
        match done {
            Ok((result, events)) => {
                self.conn.execute_batch("RELEASE write")?;
                self.in_batch += 1;
                self.committed += 1;
                if !events.is_empty() {
                    self.undelivered.push_back((self.committed, events));
                }
                Ok(result)
            }
            Err(e) => {
                if self.conn.is_autocommit() {
                    return Err(self.batch_rolled_back(&e));
                }
                if self.in_batch == 0 {
                    // Nothing else in the batch, and no one to wait for it: closed at once
                    // (an open transaction would keep other connections from writing).
                    self.open = false;
                    self.conn.execute_batch("ROLLBACK")?;
                } else {
                    self.conn
                        .execute_batch("ROLLBACK TO write; RELEASE write")?;
                }
                Err(e)
            }
        }
    }

    /// After `e`, SQLite rolled the whole open batch back (it does on some errors, e.g. a full
    /// disk): the writes made in it are lost, and the store refuses every call after.
    fn batch_rolled_back(&mut self, e: &StoreError) -> StoreError {
        self.open = false;
        let lost = format!("a batch of writes was rolled back: {e}");
        self.lost = Some(lost.clone());
        StoreError::NotDurable(lost)
    }

    /// Commits the open batch, if any (no disk sync: `synchronous=NORMAL`).
    fn commit_batch(&mut self) -> Result<(), StoreError> {
        if let Some(lost) = &self.lost {
            return Err(StoreError::NotDurable(lost.clone()));
        }
        if !self.open {
            return Ok(());
        }
        self.open = false;
        self.in_batch = 0;
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            let lost = format!("committing a batch of writes: {e}");
            self.lost = Some(lost.clone());
            return Err(StoreError::NotDurable(lost));
        }
        Ok(())
    }

    /// Runs `f` atomically: in a savepoint of the open batch, else in a transaction of its own.
    fn atomic<R>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let (begin, end, undo) = if self.open {
            (
                "SAVEPOINT atomic",
                "RELEASE atomic",
                "ROLLBACK TO atomic; RELEASE atomic",
            )
        } else {
            ("BEGIN", "COMMIT", "ROLLBACK")
        };
        self.conn.execute_batch(begin)?;
        match f(&self.conn) {
            Ok(r) => {
                self.conn.execute_batch(end)?;
                Ok(r)
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch(undo);
                } else if self.open {
                    return Err(self.batch_rolled_back(&e));
                }
                Err(e)
            }
        }
    }

    /// Feeds watchers the events of every commit up to `upto` (now on disk), in commit order.
    fn deliver(&mut self, upto: u64) {
        while self
            .undelivered
            .front()
            .is_some_and(|(seq, _)| *seq <= upto)
        {
            if let Some((_, events)) = self.undelivered.pop_front() {
                notify(&mut self.watchers, &events);
            }
        }
    }

    fn expire(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        if now_ms < self.no_expiry_before {
            return Ok(0);
        }
        let n = self.revoke_expired(now_ms)?;
        let earliest: Option<i64> = self
            .conn
            .prepare_cached("SELECT MIN(expires_at_ms) FROM leases")?
            .query_row([], |r| r.get(0))?;
        self.no_expiry_before = earliest.unwrap_or(i64::MAX);
        Ok(n)
    }

    fn revoke_expired(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        let expired: Vec<LeaseId> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id FROM leases WHERE expires_at_ms <= ?1 ORDER BY id")?;
            let rows = stmt.query_map([now_ms], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if expired.is_empty() {
            return Ok(0);
        }
        self.write(|w| {
            for id in &expired {
                w.revoke(*id)?;
            }
            Ok(expired.len())
        })
    }
}

/// Sends `events` to the watchers whose prefix they match and whose history did not hold them;
/// forgets watchers that were dropped.
fn notify(watchers: &mut Vec<Watch>, events: &[WatchEvent]) {
    if events.is_empty() {
        return;
    }
    watchers.retain(|w| {
        for ev in events
            .iter()
            .filter(|ev| ev.revision() > w.seen && ev.key().starts_with(w.prefix.as_str()))
        {
            if w.tx.send(ev.clone()).is_err() {
                return false;
            }
        }
        !w.tx.is_closed()
    });
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let inner = self.lock()?;
        get_kv(&inner.conn, key)
    }

    fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let mut inner = self.lock()?;
        inner.atomic(|conn| Ok((range_kvs(conn, prefix)?, current_revision(conn)?)))
    }

    fn put(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Revision, StoreError> {
        self.write(|w| w.put(key, value, lease))
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.write(|w| Ok(w.delete(key)? > 0))
    }

    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let (response, pending) = self.txn_pending(txn)?;
        pending.wait()?;
        Ok(response)
    }

    fn txn_pending(&self, txn: Txn) -> Result<(TxnResponse, PendingWrite), StoreError> {
        self.write_pending(|w| {
            let mut succeeded = true;
            for c in &txn.compare {
                if !w.compare(c)? {
                    succeeded = false;
                    break;
                }
            }
            let ops = if succeeded {
                &txn.success
            } else {
                &txn.failure
            };
            let results = ops
                .iter()
                .map(|op| w.op(op))
                .collect::<Result<Vec<_>, _>>()?;
            let revision = if w.events.is_empty() {
                w.revision
            } else {
                w.next_revision()
            };
            Ok(TxnResponse {
                succeeded,
                revision,
                results,
            })
        })
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let inner = self.lock()?;
        current_revision(&inner.conn)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        if after < 0 {
            return Err(StoreError::NegativeRevision(after));
        }
        let mut inner = self.lock()?;
        let compacted = compacted_revision(&inner.conn)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after + 1,
                oldest: compacted + 1,
            });
        }
        let (tx, rx) = unbounded_channel();
        // The history holds every commit, those whose sync is under way too: their events,
        // delivered later, are not sent again.
        let seen = current_revision(&inner.conn)?;
        for ev in history(&inner.conn, prefix, after)? {
            // The receiver is still in our hands: sending cannot fail.
            let _ = tx.send(ev);
        }
        inner.watchers.push(Watch {
            prefix: prefix.to_owned(),
            tx,
            seen,
        });
        Ok(rx)
    }

    fn grant_lease(&self, ttl_s: u64) -> Result<LeaseId, StoreError> {
        if !(1..=MAX_LEASE_TTL_S).contains(&ttl_s) {
            return Err(StoreError::LeaseTtl(ttl_s));
        }
        let expires = unix_ms(SystemTime::now()).saturating_add(ttl_s as i64 * 1000);
        let id = self.write(|w| {
            w.tx.execute(
                "INSERT INTO leases(ttl_s, expires_at_ms) VALUES (?1, ?2)",
                params![ttl_s as i64, expires],
            )?;
            Ok(w.tx.last_insert_rowid())
        })?;
        let mut inner = self.lock()?;
        inner.no_expiry_before = inner.no_expiry_before.min(expires);
        Ok(id)
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let now = unix_ms(SystemTime::now());
        self.write(|w| {
            let n = w.tx.execute(
                "UPDATE leases SET expires_at_ms = ?2 + ttl_s * 1000 WHERE id = ?1",
                params![lease, now],
            )?;
            if n == 0 {
                return Err(StoreError::NoLease(lease));
            }
            Ok(())
        })
    }

    fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.write(|w| {
            if !lease_exists(w.tx, lease)? {
                return Err(StoreError::NoLease(lease));
            }
            w.revoke(lease)
        })
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        inner.atomic(|conn| {
            let current = current_revision(conn)?;
            if revision > current {
                return Err(StoreError::CompactAhead { revision, current });
            }
            let compacted = compacted_revision(conn)?;
            if revision <= compacted {
                return Ok(());
            }
            conn.execute("DELETE FROM events WHERE revision <= ?1", [revision])?;
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [revision],
            )?;
            Ok(())
        })
    }
}
