//! The SQL the store reads with: the revision counters, one key, a key range, the watch
//! history, and how an event's kind is stored.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, ToSql};

use crate::kv::{KeyValue, LeaseId, Revision, StoreError, WatchEvent};

/// `events.kind` of a put.
pub(super) const KIND_PUT: i64 = 0;
/// `events.kind` of a delete.
pub(super) const KIND_DELETE: i64 = 1;

pub(super) fn current_revision(conn: &Connection) -> Result<Revision, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE name = 'revision'")?
        .query_row([], |r| r.get(0))?)
}

pub(super) fn compacted_revision(conn: &Connection) -> Result<Revision, StoreError> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
            r.get(0)
        })?,
    )
}

pub(super) fn lease_exists(conn: &Connection, lease: LeaseId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM leases WHERE id = ?1")?
        .query_row([lease], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(super) fn row_to_kv(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: r.get(0)?,
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
        version: r.get(4)?,
        lease: r.get(5)?,
    })
}

pub(super) fn get_kv(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT key, value, create_revision, mod_revision, version, lease FROM kv
             WHERE key = ?1",
        )?
        .query_row([key], row_to_kv)
        .optional()?)
}

/// Key `key`'s `(create_revision, mod_revision, version)`, without its value (a write or a
/// compare that needs only those does not copy a large record out of SQLite; a record that
/// overflows its page is still walked to the columns after it).
pub(super) fn get_revisions(
    conn: &Connection,
    key: &str,
) -> Result<Option<(i64, i64, i64)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT create_revision, mod_revision, version FROM kv WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` when
/// there is none (empty prefix or all bytes 0xFF). Compared by SQLite with memcmp, so it need
/// not be valid UTF-8.
pub(super) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Binds raw bytes as TEXT so they compare with the TEXT keys (a BLOB sorts after all text).
struct TextBytes(Vec<u8>);

impl ToSql for TextBytes {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

pub(super) fn range_kvs(conn: &Connection, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
    const COLS: &str = "SELECT key, value, create_revision, mod_revision, version, lease FROM kv";
    let rows: Vec<KeyValue> = match prefix_end(prefix) {
        Some(end) => {
            let mut stmt =
                conn.prepare_cached(&format!("{COLS} WHERE key >= ?1 AND key < ?2 ORDER BY key"))?;
            let rows = stmt.query_map(params![prefix, TextBytes(end)], row_to_kv)?;
            rows.collect::<Result<_, _>>()?
        }
        None => {
            let mut stmt = conn.prepare_cached(&format!("{COLS} ORDER BY key"))?;
            let rows = stmt.query_map([], row_to_kv)?;
            rows.collect::<Result<_, _>>()?
        }
    };
    Ok(rows)
}

pub(super) fn range_keys(conn: &Connection, prefix: &str) -> Result<Vec<String>, StoreError> {
    let keys: Vec<String> = match prefix_end(prefix) {
        Some(end) => {
            let mut stmt = conn
                .prepare_cached("SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key")?;
            let rows = stmt.query_map(params![prefix, TextBytes(end)], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        }
        None => {
            let mut stmt = conn.prepare_cached("SELECT key FROM kv ORDER BY key")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        }
    };
    Ok(keys)
}

pub(super) fn history(
    conn: &Connection,
    prefix: &str,
    after: Revision,
) -> Result<Vec<WatchEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT revision, key, kind, value, create_revision, version, lease FROM events
         WHERE revision > ?1 ORDER BY revision, seq",
    )?;
    let mut rows = stmt.query([after])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let key: String = r.get(1)?;
        if !key.starts_with(prefix) {
            continue;
        }
        let revision: Revision = r.get(0)?;
        let kind: i64 = r.get(2)?;
        out.push(if kind == KIND_DELETE {
            WatchEvent::Delete {
                key,
                mod_revision: revision,
            }
        } else {
            WatchEvent::Put(KeyValue {
                key,
                value: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                create_revision: r.get(4)?,
                mod_revision: revision,
                version: r.get(5)?,
                lease: r.get(6)?,
            })
        });
    }
    Ok(out)
}
