//! The connection's errors.

use std::path::PathBuf;

use vinfra_proto::frame::FrameError;
use vinfra_proto::pki::PkiError;

/// Errors of the console connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// TCP or TLS failed
    #[error("cannot reach the console at {addr}")]
    Connect {
        /// Console address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// certificates, keys or the join token were refused
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// the framed connection failed
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// the console refused to let this host join
    #[error("the console refused the join: {0}")]
    JoinRefused(String),
    /// the console answered something unexpected
    #[error("unexpected message from the console: {0}")]
    Unexpected(String),
    /// the host has no certificate yet and no join token was given
    #[error("this host has not joined a cluster yet: give it a join token")]
    NotJoined,
    /// credentials could not be stored or read
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
