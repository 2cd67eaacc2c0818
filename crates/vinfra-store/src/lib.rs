//! The console's desired-state store.
//!
//! The interface is shaped like etcd's v3 KV API so that an etcd backend (for a highly-available
//! console) can replace the embedded one without touching the controllers:
//!
//! - a flat, ordered key space of byte values, keys are UTF-8 paths like `/vinfra/vms/web-1`;
//! - one cluster-wide **revision** counter, incremented by every write (a transaction that writes
//!   several keys increments it once); every key carries `create_revision`, `mod_revision`, `version`;
//! - **transactions**: if all compares hold, run the success ops, else the failure ops — atomically;
//!   this is how controllers do compare-and-swap;
//! - **leases**: a key may be bound to a lease; when the lease expires (not kept alive) or is
//!   revoked, its keys are deleted;
//! - **watch** a prefix from a revision: every change after it, in order, then live changes.
//!
//! [`sqlite::SqliteStore`] is the embedded backend (WAL journal, every write synced to disk
//! before it is answered, concurrent writes sharing one sync);
//! [`typed`] reads and writes serde values as JSON over any backend.
#![deny(unsafe_code)]

pub mod kv;
pub mod sqlite;
pub mod typed;

pub use kv::{
    Compare, CompareOp, CompareTarget, Durability, KeyValue, LeaseId, Op, OpResult, PendingWrite,
    Revision, Store, StoreError, Txn, TxnResponse, WatchEvent, Watcher,
};
pub use sqlite::SqliteStore;
pub use typed::{get_json, put_json, range_json, JsonEntry};
