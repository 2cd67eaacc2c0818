//! One write inside the open batch: puts, deletes, lease revocations and compares, each
//! recorded as a watch event.

use rusqlite::{params, Connection};

use super::queries::{
    get_kv, get_revisions, lease_exists, range_keys, range_kvs, KIND_DELETE, KIND_PUT,
};
use crate::kv::{
    Compare, CompareOp, CompareTarget, KeyValue, LeaseId, Op, OpResult, Revision, StoreError,
    WatchEvent,
};

/// An open write transaction; every write in it gets revision `revision + 1`.
pub(super) struct WriteTxn<'c> {
    pub(super) tx: &'c Connection,
    /// Store revision before this transaction.
    pub(super) revision: Revision,
    pub(super) events: Vec<WatchEvent>,
}

impl WriteTxn<'_> {
    pub(super) fn next_revision(&self) -> Revision {
        self.revision + 1
    }

    pub(super) fn record(&mut self, event: WatchEvent) -> Result<(), StoreError> {
        let seq = self.events.len() as i64;
        let rev = self.next_revision();
        match &event {
            WatchEvent::Put(kv) => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO events(revision, seq, key, kind, value, create_revision,
                         version, lease) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        rev,
                        seq,
                        kv.key,
                        KIND_PUT,
                        kv.value,
                        kv.create_revision,
                        kv.version,
                        kv.lease
                    ])?;
            }
            WatchEvent::Delete { key, .. } => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO events(revision, seq, key, kind, value, create_revision,
                         version, lease) VALUES (?1, ?2, ?3, ?4, NULL, 0, 0, 0)",
                    )?
                    .execute(params![rev, seq, key, KIND_DELETE])?;
            }
        }
        self.events.push(event);
        Ok(())
    }

    pub(super) fn put(
        &mut self,
        key: &str,
        value: &[u8],
        lease: LeaseId,
    ) -> Result<Revision, StoreError> {
        validate_key(key)?;
        if lease != 0 && !lease_exists(self.tx, lease)? {
            return Err(StoreError::NoLease(lease));
        }
        let rev = self.next_revision();
        // One statement finds the key and writes it: a new key starts at version 1, an
        // existing one keeps its create revision and counts one more version.
        let (create_revision, version): (Revision, i64) = self
            .tx
            .prepare_cached(
                "INSERT INTO kv(key, value, create_revision, mod_revision, version, lease)
                 VALUES (?1, ?2, ?3, ?3, 1, ?4)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value,
                   mod_revision = excluded.mod_revision, version = kv.version + 1,
                   lease = excluded.lease
                 RETURNING create_revision, version",
            )?
            .query_row(params![key, value, rev, lease], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        self.record(WatchEvent::Put(KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision,
            mod_revision: rev,
            version,
            lease,
        }))?;
        Ok(rev)
    }

    pub(super) fn delete(&mut self, key: &str) -> Result<u64, StoreError> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM kv WHERE key = ?1")?
            .execute([key])?;
        if n == 0 {
            return Ok(0);
        }
        let mod_revision = self.next_revision();
        self.record(WatchEvent::Delete {
            key: key.to_owned(),
            mod_revision,
        })?;
        Ok(1)
    }

    pub(super) fn delete_keys(&mut self, keys: Vec<String>) -> Result<u64, StoreError> {
        let mut n = 0;
        for key in keys {
            n += self.delete(&key)?;
        }
        Ok(n)
    }

    pub(super) fn delete_prefix(&mut self, prefix: &str) -> Result<u64, StoreError> {
        let keys = range_keys(self.tx, prefix)?;
        self.delete_keys(keys)
    }

    pub(super) fn revoke(&mut self, lease: LeaseId) -> Result<(), StoreError> {
        let keys: Vec<String> = {
            let mut stmt = self
                .tx
                .prepare_cached("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")?;
            let rows = stmt.query_map([lease], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        self.delete_keys(keys)?;
        self.tx
            .prepare_cached("DELETE FROM leases WHERE id = ?1")?
            .execute([lease])?;
        Ok(())
    }

    pub(super) fn compare(&self, c: &Compare) -> Result<bool, StoreError> {
        // Only a compare of the value copies it out: a VM record's is a kilobyte and more.
        let revisions = || -> Result<(Revision, Revision, i64), StoreError> {
            Ok(get_revisions(self.tx, &c.key)?.unwrap_or((0, 0, 0)))
        };
        let ord = match &c.target {
            CompareTarget::Value(v) => match get_kv(self.tx, &c.key)? {
                None => return Ok(false),
                Some(kv) => kv.value.as_slice().cmp(v.as_slice()),
            },
            CompareTarget::Version(v) => revisions()?.2.cmp(v),
            CompareTarget::CreateRevision(r) => revisions()?.0.cmp(r),
            CompareTarget::ModRevision(r) => revisions()?.1.cmp(r),
        };
        Ok(match c.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Greater => ord.is_gt(),
            CompareOp::Less => ord.is_lt(),
        })
    }

    pub(super) fn op(&mut self, op: &Op) -> Result<OpResult, StoreError> {
        Ok(match op {
            Op::Get { key } => OpResult::Get(get_kv(self.tx, key)?),
            Op::Range { prefix } => OpResult::Range(range_kvs(self.tx, prefix)?),
            Op::Put { key, value, lease } => OpResult::Put(self.put(key, value, *lease)?),
            Op::Delete { key } => OpResult::Delete(self.delete(key)?),
            Op::DeletePrefix { prefix } => OpResult::Delete(self.delete_prefix(prefix)?),
        })
    }
}

/// Keys are non-empty UTF-8 without NUL.
fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.contains('\0') {
        return Err(StoreError::NulInKey(key.to_string()));
    }
    Ok(())
}
