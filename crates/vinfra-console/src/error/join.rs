//! Why a host's join was refused, why a host's fence command could not be run, why a stored
//! record could not be read or written.

use vinfra_proto::pki::PkiError;
use vinfra_store::StoreError;
use vinfra_types::NameError;

/// Why a host's join was refused; the chain of it goes back to the agent.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The join token does not parse.
    #[error("join token refused")]
    TokenMalformed(#[source] PkiError),
    /// The join token was issued by another cluster's CA.
    #[error("join token refused: it was issued by another cluster")]
    OtherCluster,
    /// The join token is unknown or was used.
    #[error("join token refused: unknown or already used")]
    TokenUnknown,
    /// The join token expired.
    #[error("join token refused: expired")]
    TokenExpired,
    /// The token was used, or the host name registered, between the check and the write.
    #[error("join token refused: already used, or the host name was registered meanwhile")]
    TokenRaced,
    /// The host name is invalid.
    #[error("host name")]
    Name(#[from] NameError),
    /// A host with this name is already registered.
    #[error("a host named '{0}' is already registered")]
    HostExists(String),
    /// The CSR could not be signed.
    #[error("certificate request")]
    Csr(#[source] PkiError),
    /// A certificate renewal for a host that is not (or no longer) registered.
    #[error(
        "host '{0}' is not registered (removed from the cluster?): its certificate is not renewed"
    )]
    NotRegistered(String),
    /// A renewal long before the host's newest certificate is due.
    #[error("host '{host}' renews too early: its newest certificate is not due for {in_s} s")]
    RenewTooEarly {
        /// The host.
        host: String,
        /// Seconds until a renewal is taken.
        in_s: u64,
    },
    /// The store failed.
    #[error("store")]
    Store(#[from] RecordError),
}

impl From<StoreError> for JoinError {
    fn from(e: StoreError) -> Self {
        JoinError::Store(RecordError::Store(e))
    }
}

/// Why a host's fence command could not be run (it did not get to exit).
#[derive(Debug, thiserror::Error)]
pub enum FenceCommandError {
    /// The pipe for its output could not be made.
    #[error("cannot make a pipe for its output")]
    Pipe(#[source] std::io::Error),
    /// `sh` could not be started.
    #[error("cannot start sh")]
    Spawn(#[source] std::io::Error),
    /// Waiting for it failed.
    #[error("cannot wait for it")]
    Wait(#[source] std::io::Error),
    /// The thread that ran it panicked or was cancelled.
    #[error("the thread that ran it ended unexpectedly")]
    Thread(#[source] tokio::task::JoinError),
}

/// Why a stored record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be decoded.
    #[error("record {key} is corrupt")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("encoding a record")]
    Encode(#[source] serde_json::Error),
    /// Every VM slot (2^32) was handed out.
    #[error("every VM slot was handed out")]
    SlotsExhausted,
    /// A task was published after it was discarded (or pruned).
    #[error("task {0} is not kept")]
    TaskGone(u64),
}
