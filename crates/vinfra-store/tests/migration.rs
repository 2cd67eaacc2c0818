//! A store made before `kv` and `events` were rowid tables opens as it was.

mod common;

use common::{drain, summary};
use vinfra_store::{SqliteStore, Store, StoreError};

/// The tables as they were before `kv` and `events` became rowid tables.
const WITHOUT_ROWID_SCHEMA: &str = "
CREATE TABLE kv (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX kv_lease ON kv(lease) WHERE lease <> 0;
CREATE TABLE events (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;";

#[test]
fn a_store_with_the_tables_of_before_is_moved_to_rowid_tables_as_it_was() -> Result<(), StoreError>
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("old.db");
    {
        // A store written with today's code, then its two tables put back as they were.
        let s = SqliteStore::open(&path)?;
        s.put("/vinfra/vms/a", &vec![b'a'; 3000], 0)?;
        s.put("/vinfra/vms/b", b"b1", 0)?;
        s.put("/vinfra/vms/b", b"b2", 0)?;
        s.delete("/vinfra/vms/a")?;
        s.put("/vinfra/hosts/h1", b"h", 0)?;
    }
    {
        let conn = rusqlite::Connection::open(&path).map_err(StoreError::from)?;
        conn.execute_batch(&format!(
            "BEGIN;
             ALTER TABLE kv RENAME TO kv_now; DROP INDEX kv_lease;
             ALTER TABLE events RENAME TO events_now;
             {WITHOUT_ROWID_SCHEMA}
             INSERT INTO kv SELECT key, value, create_revision, mod_revision, version, lease FROM kv_now;
             INSERT INTO events SELECT revision, seq, key, kind, value, create_revision, version, lease FROM events_now;
             DROP TABLE kv_now; DROP TABLE events_now;
             COMMIT;"
        ))
        .map_err(StoreError::from)?;
        let sql: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'kv'", [], |r| {
                r.get(0)
            })
            .map_err(StoreError::from)?;
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    }
    let s = SqliteStore::open(&path)?;
    let (vms, rev) = s.range("/vinfra/vms/")?;
    assert_eq!(rev, 5);
    assert_eq!(vms.len(), 1);
    assert_eq!(
        (vms[0].key.as_str(), vms[0].value.as_slice(), vms[0].version),
        ("/vinfra/vms/b", &b"b2"[..], 2)
    );
    // The history is there as it was: a watch from the start replays all five changes.
    let mut w = s.watch("/vinfra/", 0)?;
    assert_eq!(
        summary(&drain(&mut w)),
        vec![
            (1, "/vinfra/vms/a".to_string(), "put"),
            (2, "/vinfra/vms/b".to_string(), "put"),
            (3, "/vinfra/vms/b".to_string(), "put"),
            (4, "/vinfra/vms/a".to_string(), "delete"),
            (5, "/vinfra/hosts/h1".to_string(), "put"),
        ]
    );
    // Writes go on where they were, and the tables are rowid tables now.
    assert_eq!(s.put("/vinfra/vms/c", b"c", 0)?, 6);
    drop(s);
    let conn = rusqlite::Connection::open(&path).map_err(StoreError::from)?;
    for table in ["kv", "events"] {
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(StoreError::from)?;
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
    }
    Ok(())
}
