//! Writes of mirrored records: each is one store transaction, compared against the revision
//! read, then applied to the mirror. A VM record's transaction also carries what goes with it
//! ([`Writes`]: NIC claims and releases, a cleanup marker) and, when given, the event that tells
//! of it.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use vinfra_store::{Compare, Op, PendingWrite, Txn, TxnResponse};
use vinfra_types::api::{ClusterSettings, Event};

use super::console::Console;
use super::locks::{lock, read, write};
use super::records::{
    self as keys, HostRecord, NetworkRecord, RouterRecord, SecurityGroupRecord, Versioned, VmRecord,
};
use crate::error::{Error, Object, RecordError};

/// Store writes that go into the same transaction as a record: comparisons that must hold,
/// operations, and the network records the operations put (mirrored once the transaction
/// commits). `networks::ipam` plans the claims and releases of NIC addresses and MACs as one.
#[derive(Debug, Default)]
pub struct Writes {
    /// Comparisons that must hold.
    pub compare: Vec<Compare>,
    /// Operations.
    pub ops: Vec<Op>,
    /// The network records `ops` put, by name.
    pub networks: Vec<(String, NetworkRecord)>,
}

impl Writes {
    /// Only `ops` (checked by `compare`), no network record.
    pub fn other(compare: Vec<Compare>, ops: Vec<Op>) -> Self {
        Writes {
            compare,
            ops,
            networks: Vec::new(),
        }
    }
}

impl Console {
    /// Runs one transaction of `compare` and `ops` with `writes` and `event` added, keeping the
    /// networks' mirror in step: the records of `writes` mirrored when it commits, the mirror
    /// reloaded when it does not (hold the networks lock when `writes` has network records).
    fn commit(
        &self,
        compare: Vec<Compare>,
        ops: Vec<Op>,
        writes: Writes,
        event: Option<Event>,
    ) -> Result<TxnResponse, Error> {
        let (resp, pending) = self.commit_pending(compare, ops, writes, event)?;
        pending.wait()?;
        Ok(resp)
    }

    /// [`Console::commit`] that returns before the transaction is on disk: the mirrors already
    /// hold it, [`PendingWrite::wait`] returns once the store does for good. When that wait fails,
    /// the store refuses every call after it (the console must restart), so no mirror outlives
    /// a write the disk lost.
    fn commit_pending(
        &self,
        mut compare: Vec<Compare>,
        mut ops: Vec<Op>,
        writes: Writes,
        event: Option<Event>,
    ) -> Result<(TxnResponse, PendingWrite), Error> {
        compare.extend(writes.compare);
        ops.extend(writes.ops);
        let markers: Vec<(String, bool)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, .. } if key.starts_with(keys::CLEANUPS) => Some((key.clone(), true)),
                Op::Delete { key } if key.starts_with(keys::CLEANUPS) => Some((key.clone(), false)),
                _ => None,
            })
            .collect();
        let (resp, pending) = self.events.appending(event, |event_ops| {
            ops.extend(event_ops);
            let (resp, pending) = self.store.txn_pending(Txn {
                compare,
                success: ops,
                failure: vec![],
            })?;
            Ok::<_, Error>((resp.succeeded, (resp, pending)))
        })?;
        if resp.succeeded && !markers.is_empty() {
            let mut names = write(&self.markers);
            for (key, put) in markers {
                let Some(vm) = keys::cleanup_vm(&key).map(str::to_string) else {
                    continue;
                };
                if put {
                    names.entry(vm).or_default().insert(key);
                } else if let Some(keys) = names.get_mut(&vm) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        names.remove(&vm);
                    }
                }
            }
        }
        if !writes.networks.is_empty() {
            if resp.succeeded {
                let mut mirror = write(&self.networks);
                for (name, value) in writes.networks {
                    mirror.insert(
                        name,
                        Versioned {
                            value,
                            mod_revision: resp.revision,
                        },
                    );
                }
            } else {
                self.reload_networks();
            }
        }
        Ok((resp, pending))
    }

    /// Re-reads every network record (after a transaction lost a comparison).
    pub fn reload_networks(&self) {
        match keys::range::<NetworkRecord>(self.store.as_ref(), keys::NETWORKS) {
            Ok(all) => *write(&self.networks) = all.into_iter().collect(),
            Err(e) => tracing::error!("reloading the networks: {}", vinfra_types::error::Chain(&e)),
        }
    }

    /// Writes VM `name`'s record (or deletes it with `None`) if the stored one is still at
    /// revision `expected` (`None`: absent), with `writes` and `event` in the same transaction.
    /// Store first, then the mirror. [`Error::NameTaken`] or [`Error::Concurrent`] when the
    /// record is not as expected.
    pub fn write_vm(
        &self,
        name: &str,
        expected: Option<i64>,
        new: Option<&VmRecord>,
        writes: Writes,
        event: Option<Event>,
    ) -> Result<(), Error> {
        self.write_vm_pending(name, expected, new, writes, event)?
            .wait()?;
        Ok(())
    }

    /// [`Console::write_vm`] that returns before the write is on disk (the mirror holds it):
    /// a caller holding a lock of its own (placement) releases it before it waits, so that
    /// creates placed one after the other share disk syncs.
    pub fn write_vm_pending(
        &self,
        name: &str,
        expected: Option<i64>,
        new: Option<&VmRecord>,
        writes: Writes,
        event: Option<Event>,
    ) -> Result<PendingWrite, Error> {
        let writing = lock(&self.vm_writes);
        self.write_vm_serialized(&writing, name, expected, new, writes, event)
    }

    /// [`Console::write_vm`] with `vm_writes` held by the caller (`_writing`): the store's
    /// transaction first, with no lock of the mirror held (its readers go on meanwhile), then
    /// the mirror's change under its write lock; the write counted as mirrored in every case.
    fn write_vm_serialized(
        &self,
        _writing: &MutexGuard<'_, ()>,
        name: &str,
        expected: Option<i64>,
        new: Option<&VmRecord>,
        writes: Writes,
        event: Option<Event>,
    ) -> Result<PendingWrite, Error> {
        // Counted under `vm_writes`: the writes are numbered in the order they are made.
        let seq = self.vm_writes_begun.fetch_add(1, Ordering::SeqCst) + 1;
        // Counted as mirrored however the write ends (a panic too): a controller waiting
        // for it never waits for good.
        let _mirrored = Mirrored { console: self, seq };
        let key = keys::vm_key(name);
        let refused = || match expected {
            None => Error::NameTaken {
                kind: Object::Vm,
                name: name.to_string(),
            },
            Some(_) => Error::Concurrent {
                kind: Object::Vm,
                name: name.to_string(),
            },
        };
        // Only writes holding `vm_writes` change the mirror: it stays as read here until the
        // change below.
        if read(&self.vms).get(name).map(|v| v.mod_revision) != expected {
            return Err(refused());
        }
        let compare = match expected {
            None => Compare::absent(key.clone()),
            Some(rev) => Compare::mod_revision(key.clone(), rev),
        };
        let op = match new {
            Some(rec) => Op::Put {
                key: key.clone(),
                value: keys::encode(rec)?,
                lease: 0,
            },
            None => Op::Delete { key: key.clone() },
        };
        let (resp, pending) = self.commit_pending(vec![compare], vec![op], writes, event)?;
        let mirrored = if resp.succeeded {
            new.map(|rec| Versioned {
                value: rec.clone(),
                mod_revision: resp.revision,
            })
        } else {
            // Someone else wrote the store: reload this key.
            keys::get::<VmRecord>(self.store.as_ref(), &key)?
        };
        match mirrored {
            Some(v) => write(&self.vms).insert(name.to_string(), v),
            None => {
                write(&self.vms).remove(name);
            }
        }
        // Placement reads the record again at its next decision: marked once the mirror holds
        // it, so that a decision taking the mark reads what was written.
        self.inflight().placement_changed_vm(name);
        if !resp.succeeded {
            return Err(refused());
        }
        Ok(pending)
    }

    /// Returns once the mirror holds every VM write begun before the call: a controller woken
    /// by the store's watch for a VM record calls it before it reads the mirror (the store
    /// has the record before the mirror does).
    pub async fn vm_writes_mirrored(&self) {
        let begun = self.vm_writes_begun.load(Ordering::SeqCst);
        let mut mirrored = self.vm_writes_mirrored.subscribe();
        // The sender lives as long as the console: an error cannot come.
        let _ = mirrored.wait_for(|m| *m >= begun).await;
    }

    /// Reads VM `name`'s record, applies `f` and writes it back (compare-and-swap), with
    /// `event` in the same transaction. The VM writes are held from the read to the write, so
    /// no other write of the console comes in between (`f` must not write the console's VM
    /// records).
    pub fn update_vm_with(
        &self,
        name: &str,
        f: impl FnOnce(&mut VmRecord),
        event: Option<Event>,
    ) -> Result<VmRecord, Error> {
        let writing = lock(&self.vm_writes);
        let cur = read(&self.vms)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(Object::Vm, name))?;
        let mut rec = cur.value;
        f(&mut rec);
        let pending = self.write_vm_serialized(
            &writing,
            name,
            Some(cur.mod_revision),
            Some(&rec),
            Writes::default(),
            event,
        )?;
        drop(writing);
        pending.wait()?;
        Ok(rec)
    }

    /// Reads VM `name`'s record, applies `f` and writes it back (compare-and-swap; see
    /// [`Console::update_vm_with`]).
    pub fn update_vm(&self, name: &str, f: impl FnOnce(&mut VmRecord)) -> Result<VmRecord, Error> {
        self.update_vm_with(name, f, None)
    }

    /// Reads host `name`'s record, applies `f` and writes it back (compare-and-swap; nothing
    /// is written when `f` changes nothing).
    pub fn update_host(
        &self,
        name: &str,
        f: impl FnOnce(&mut HostRecord),
    ) -> Result<HostRecord, Error> {
        let key = keys::host_key(name);
        let mut hosts = write(&self.hosts);
        *write(&self.underlay) = None;
        let cur = hosts
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(Object::Host, name))?;
        let mut rec = cur.value.clone();
        f(&mut rec);
        if rec == cur.value {
            return Ok(rec);
        }
        let resp = self.store.txn(Txn {
            compare: vec![Compare::mod_revision(key.clone(), cur.mod_revision)],
            success: vec![Op::Put {
                key,
                value: keys::encode(&rec)?,
                lease: 0,
            }],
            failure: vec![],
        })?;
        if !resp.succeeded {
            return Err(Error::Concurrent {
                kind: Object::Host,
                name: name.to_string(),
            });
        }
        hosts.insert(
            name.to_string(),
            Versioned {
                value: rec.clone(),
                mod_revision: resp.revision,
            },
        );
        self.inflight().placement_changed_host(name);
        Ok(rec)
    }

    /// Registers a new host with `writes` in the same transaction (the join token it burns),
    /// if no host of that name exists. False when a comparison failed.
    pub fn insert_host(&self, rec: &HostRecord, writes: Writes) -> Result<bool, RecordError> {
        let key = keys::host_key(&rec.name);
        let mut hosts = write(&self.hosts);
        *write(&self.underlay) = None;
        let mut compare = writes.compare;
        compare.push(Compare::absent(key.clone()));
        let mut ops = writes.ops;
        ops.push(Op::Put {
            key,
            value: keys::encode(rec)?,
            lease: 0,
        });
        let resp = self.store.txn(Txn {
            compare,
            success: ops,
            failure: vec![],
        })?;
        if resp.succeeded {
            hosts.insert(
                rec.name.clone(),
                Versioned {
                    value: rec.clone(),
                    mod_revision: resp.revision,
                },
            );
            self.inflight().placement_changed_host(&rec.name);
        }
        Ok(resp.succeeded)
    }

    /// Deletes host `name`'s record if it is still at revision `expected`.
    pub fn remove_host(&self, name: &str, expected: i64) -> Result<(), Error> {
        self.remove_host_with(name, expected, vec![])
    }

    /// [`remove_host`](Self::remove_host) with `ops` in the same transaction (the revocation
    /// of its certificates).
    pub fn remove_host_with(&self, name: &str, expected: i64, ops: Vec<Op>) -> Result<(), Error> {
        let key = keys::host_key(name);
        let mut hosts = write(&self.hosts);
        *write(&self.underlay) = None;
        let mut success = vec![Op::Delete { key: key.clone() }];
        success.extend(ops);
        let resp = self.store.txn(Txn {
            compare: vec![Compare::mod_revision(key, expected)],
            success,
            failure: vec![],
        })?;
        if !resp.succeeded {
            return Err(Error::Concurrent {
                kind: Object::Host,
                name: name.to_string(),
            });
        }
        hosts.remove(name);
        self.inflight().placement_changed_host(name);
        Ok(())
    }

    /// Writes network `name`'s record (or deletes it with `None`) if the stored one is still at
    /// revision `expected` (`None`: absent), with `writes` in the same transaction (segment
    /// claims). False (and the mirror reloaded) when a comparison failed. Hold the networks
    /// lock.
    pub fn write_network(
        &self,
        name: &str,
        expected: Option<i64>,
        new: Option<&NetworkRecord>,
        writes: Writes,
    ) -> Result<bool, Error> {
        let key = keys::network_key(name);
        let compare = match expected {
            None => Compare::absent(key.clone()),
            Some(rev) => Compare::mod_revision(key.clone(), rev),
        };
        let op = match new {
            Some(rec) => Op::Put {
                key,
                value: keys::encode(rec)?,
                lease: 0,
            },
            None => Op::Delete { key },
        };
        let mut all = writes;
        all.compare.push(compare);
        all.ops.push(op);
        let resp = self.commit(vec![], vec![], all, None)?;
        if !resp.succeeded {
            self.reload_networks();
            return Ok(false);
        }
        let mut mirror = write(&self.networks);
        match new {
            Some(rec) => {
                mirror.insert(
                    name.to_string(),
                    Versioned {
                        value: rec.clone(),
                        mod_revision: resp.revision,
                    },
                );
            }
            None => {
                mirror.remove(name);
            }
        }
        Ok(true)
    }

    /// Removes the cleanup marker `key` (if it is still at revision `expected`) with `writes`
    /// (the release of the VM's addresses and MACs) in one transaction. False when the marker
    /// changed or went meanwhile. Hold the networks lock.
    pub fn remove_cleanup(&self, key: &str, expected: i64, writes: Writes) -> Result<bool, Error> {
        let compare = Compare::mod_revision(key.to_string(), expected);
        let delete = Op::Delete {
            key: key.to_string(),
        };
        Ok(self
            .commit(vec![compare], vec![delete], writes, None)?
            .succeeded)
    }

    /// Writes security group `name`'s record (or deletes it with `None`) if the stored one is
    /// still at revision `expected` (`None`: absent), with `event` in the same transaction.
    /// False when the record is not as expected.
    pub fn write_security_group(
        &self,
        name: &str,
        expected: Option<i64>,
        new: Option<&SecurityGroupRecord>,
        event: Option<Event>,
    ) -> Result<bool, Error> {
        let key = keys::security_group_key(name);
        let compare = match expected {
            None => Compare::absent(key.clone()),
            Some(rev) => Compare::mod_revision(key.clone(), rev),
        };
        let op = match new {
            Some(rec) => Op::Put {
                key,
                value: keys::encode(rec)?,
                lease: 0,
            },
            None => Op::Delete { key },
        };
        Ok(self
            .commit(vec![compare], vec![op], Writes::default(), event)?
            .succeeded)
    }

    /// Writes router `name`'s record (or deletes it with `None`) if the stored one is still at
    /// revision `expected` (`None`: absent), with `writes` (the router's number claim, the
    /// record of the network it attaches) and `event` in the same transaction. False (and the
    /// networks' mirror reloaded when `writes` has network records) when a comparison failed.
    /// Hold the router lock, and the networks lock when `writes` has network records.
    pub fn write_router(
        &self,
        name: &str,
        expected: Option<i64>,
        new: Option<&RouterRecord>,
        writes: Writes,
        event: Option<Event>,
    ) -> Result<bool, Error> {
        let key = keys::router_key(name);
        let compare = match expected {
            None => Compare::absent(key.clone()),
            Some(rev) => Compare::mod_revision(key.clone(), rev),
        };
        let op = match new {
            Some(rec) => Op::Put {
                key,
                value: keys::encode(rec)?,
                lease: 0,
            },
            None => Op::Delete { key },
        };
        Ok(self
            .commit(vec![compare], vec![op], writes, event)?
            .succeeded)
    }

    /// Stores and mirrors the cluster settings (checked by the caller).
    pub fn put_settings(&self, settings: &ClusterSettings) -> Result<(), Error> {
        let mut cur = write(&self.settings);
        keys::put(self.store.as_ref(), keys::SETTINGS, settings)?;
        if cur.ratios != settings.ratios {
            // Every host without an override of its own allocates differently now.
            self.inflight().placement_changed_all();
        }
        *cur = settings.clone();
        Ok(())
    }
}

/// Counts VM write `seq` as mirrored when dropped ([`Console::vm_writes_mirrored`]).
struct Mirrored<'a> {
    console: &'a Console,
    seq: u64,
}

impl Drop for Mirrored<'_> {
    fn drop(&mut self) {
        self.console.vm_writes_mirrored.send_replace(self.seq);
    }
}
