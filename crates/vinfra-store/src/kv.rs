//! The store's interface: keys, revisions, transactions, leases, watches, and the [`Store`] trait
//! every backend implements.

/// A revision of the whole store.
pub type Revision = i64;
/// A lease id (never 0; 0 means "no lease").
pub type LeaseId = i64;

/// One key and its value with etcd-style metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// Its value, as written.
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the first put).
    pub version: i64,
    /// Lease the key is bound to, 0 for none.
    pub lease: LeaseId,
}

/// Which attribute of a key a [`Compare`] looks at; a missing key has version, create and mod
/// revision 0 and no value (a value compare on a missing key is false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0: absent).
    Version(i64),
    /// The revision that created the key (0: absent).
    CreateRevision(Revision),
    /// The revision of the key's last write (0: absent).
    ModRevision(Revision),
    /// The key's value, byte for byte.
    Value(Vec<u8>),
}

/// How a [`Compare`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// The key's attribute equals the target.
    Equal,
    /// It differs from the target.
    NotEqual,
    /// It is greater than the target.
    Greater,
    /// It is less than the target.
    Less,
}

/// One condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key looked at.
    pub key: String,
    /// How its attribute compares with the target.
    pub op: CompareOp,
    /// The attribute and the value it is compared with.
    pub target: CompareTarget,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::Version(0),
        }
    }
    /// The key was last written at `rev` (compare-and-swap on a value read before).
    pub fn mod_revision(key: impl Into<String>, rev: Revision) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(rev),
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// One key.
    Get {
        /// The key.
        key: String,
    },
    /// All keys starting with `prefix`, in key order.
    Range {
        /// The prefix.
        prefix: String,
    },
    /// Writes one key.
    Put {
        /// The key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
        /// The lease it is bound to; 0 for none.
        lease: LeaseId,
    },
    /// Deletes one key (absent: nothing deleted).
    Delete {
        /// The key.
        key: String,
    },
    /// Deletes every key starting with `prefix`.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
}

/// The result of one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The key, if present.
    Get(Option<KeyValue>),
    /// The keys found, in key order.
    Range(Vec<KeyValue>),
    /// Revision of the write.
    Put(Revision),
    /// Number of keys deleted.
    Delete(u64),
}

/// A transaction: `if compare { success } else { failure }`, atomic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Ops run when every compare holds.
    pub success: Vec<Op>,
    /// Ops run otherwise.
    pub failure: Vec<Op>,
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// True when all compares held (the success branch ran).
    pub succeeded: bool,
    /// Store revision after the transaction.
    pub revision: Revision,
    /// One result per op of the branch that ran.
    pub results: Vec<OpResult>,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was written; its new value and metadata.
    Put(KeyValue),
    /// A key was deleted (or its lease expired).
    Delete {
        /// The key.
        key: String,
        /// The revision of the delete.
        mod_revision: Revision,
    },
}

impl WatchEvent {
    /// Revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
    /// Key of the change.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// A live watch: events arrive in revision order. Dropping it ends the watch.
pub type Watcher = tokio::sync::mpsc::UnboundedReceiver<WatchEvent>;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store database")]
    Db(#[from] rusqlite::Error),
    /// The database file cannot use the write-ahead log (on opening).
    #[error("{}: cannot use the WAL journal (got {mode})", path.display())]
    NoWal {
        /// The database file.
        path: std::path::PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// A key is empty.
    #[error("empty key")]
    EmptyKey,
    /// A key contains a NUL character.
    #[error("key {0:?} contains NUL")]
    NulInKey(String),
    /// A watch asked for a negative revision.
    #[error("watch from negative revision {0}")]
    NegativeRevision(Revision),
    /// Watching from a revision that was compacted away.
    #[error("revision {requested} was compacted (oldest kept: {oldest})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still kept.
        oldest: Revision,
    },
    /// Compacting at a revision the store has not reached.
    #[error("cannot compact at {revision}: store revision is {current}")]
    CompactAhead {
        /// The revision asked for.
        revision: Revision,
        /// The store's revision.
        current: Revision,
    },
    /// A lease's TTL is out of range (1 s to [`sqlite::MAX_LEASE_TTL_S`]).
    #[error("lease TTL must be between 1 and {max} s, got {0}", max = MAX_LEASE_TTL_S)]
    LeaseTtl(u64),
    /// Unknown or expired lease.
    #[error("lease {0} not found")]
    NoLease(LeaseId),
    /// A write could not be made durable (fsync failed): the store refuses every call after it,
    /// since what the disk holds is unknown. Restart the console.
    #[error("store database could not be synced to disk ({0}); restart the console")]
    NotDurable(String),
    /// A value could not be encoded or decoded as JSON.
    #[error("value of {key} is not valid JSON for its type")]
    Json {
        /// The key.
        key: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

/// A write that is in the store but maybe not yet on disk ([`Store::txn_pending`]): wait for
/// it ([`PendingWrite::wait`], [`PendingWrite::on_disk`]), be told ([`PendingWrite::then`]), or
/// drop it (it still goes to disk with the next sync, no one is told).
#[must_use = "a write is known durable only once `wait`, `on_disk` or `then` said so"]
pub struct PendingWrite(Option<Box<dyn Durability>>);

/// How a backend makes one write durable and tells when it is ([`PendingWrite`]).
pub trait Durability: Send + 'static {
    /// Blocks until the write is on disk.
    fn wait(self: Box<Self>) -> Result<(), StoreError>;
    /// Returns at once; `done` is called once the write is on disk (or cannot be), on whatever
    /// thread sees it: it must be short and must not block.
    fn then(self: Box<Self>, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>);
}

impl PendingWrite {
    /// A write already on disk.
    pub fn durable() -> Self {
        PendingWrite(None)
    }

    /// A write made durable by `durability`.
    pub fn new(durability: impl Durability) -> Self {
        PendingWrite(Some(Box::new(durability)))
    }

    /// Blocks until the write is on disk (one disk sync may cover many writes).
    pub fn wait(mut self) -> Result<(), StoreError> {
        match self.0.take() {
            Some(d) => d.wait(),
            None => Ok(()),
        }
    }

    /// Calls `done` once the write is on disk, or cannot be (at once when it already is); returns
    /// at once. `done` runs on whatever thread sees the sync end: it must be short, and must not
    /// wait for a write (on the store's committer thread that wait is refused: it would wait
    /// for itself). Callbacks of different writes run in no set order.
    pub fn then(mut self, done: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        match self.0.take() {
            Some(d) => d.then(Box::new(done)),
            None => done(Ok(())),
        }
    }

    /// Resolves once the write is on disk, without holding a thread meanwhile.
    pub async fn on_disk(self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.then(move |done| {
            let _ = tx.send(done);
        });
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::NotDurable(
                "the store ended before the write was on disk".into(),
            ))
        })
    }
}

impl Drop for PendingWrite {
    /// A write dropped unwaited still goes to disk with its batch (the sync is asked for; the
    /// drop does not wait for it).
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            d.then(Box::new(|_| {}));
        }
    }
}

impl std::fmt::Debug for PendingWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PendingWrite")
            .field(&if self.0.is_some() {
                "pending"
            } else {
                "durable"
            })
            .finish()
    }
}

/// Longest lease accepted, seconds.
pub const MAX_LEASE_TTL_S: u64 = 86_400;

/// The etcd-shaped store interface every backend implements. Methods are short and may block
/// briefly (the embedded backend does one SQLite transaction per call).
pub trait Store: Send + Sync + 'static {
    /// One key.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// All keys under `prefix`, in key order, and the store revision they were read at.
    fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;
    /// Writes a key (lease 0 = none); returns the new revision.
    fn put(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Revision, StoreError>;
    /// Deletes a key; returns whether it existed.
    fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Runs a transaction atomically; returns once it is on disk.
    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;
    /// Runs a transaction atomically like [`Store::txn`], but returns as soon as it is in the
    /// store, before it is on disk: [`PendingWrite::wait`] returns when it is. Reads through this
    /// store may see it meanwhile; watchers see it once it is on disk. A caller that serialises
    /// its writes under a lock of its own writes under the lock and waits after releasing it,
    /// so writes from many callers share one disk sync (group commit).
    fn txn_pending(&self, txn: Txn) -> Result<(TxnResponse, PendingWrite), StoreError> {
        Ok((self.txn(txn)?, PendingWrite::durable()))
    }
    /// Current store revision.
    fn revision(&self) -> Result<Revision, StoreError>;
    /// Events under `prefix` with revision > `after` (history first, then live).
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError>;
    /// Grants a lease of `ttl_s` seconds (1..=86400).
    fn grant_lease(&self, ttl_s: u64) -> Result<LeaseId, StoreError>;
    /// Renews a lease for another TTL.
    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Revokes a lease, deleting its keys.
    fn revoke(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Drops watch history at or below `revision`.
    fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
