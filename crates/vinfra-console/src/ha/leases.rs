//! Reading host leases: the files the hosts' guards write on the shared datastore,
//! `<datastore>/ha/hosts/<host>.lease` (format: `vinfra_ha::Lease`).
//!
//! On NFS the console's mount must not cache attributes or lookups (`noac`, or
//! `lookupcache=none`): a reader that keeps seeing an old lease file would count a live lease
//! as expired.

use std::path::{Path, PathBuf};

use vinfra_ha::Lease;

/// Where host leases come from.
pub trait LeaseSource: Send + Sync {
    /// `host`'s lease as it is now, or `None` when it cannot be read (no file, an I/O error,
    /// bad content: nothing may be concluded from it). Blocking.
    fn read(&self, host: &str) -> Option<Lease>;
}

/// The lease files in a datastore directory.
#[derive(Debug, Clone)]
pub struct DatastoreLeases {
    dir: PathBuf,
}

impl DatastoreLeases {
    /// The leases under `<datastore>/ha/hosts/`.
    pub fn new(datastore: &Path) -> Self {
        DatastoreLeases {
            dir: datastore.join("ha").join("hosts"),
        }
    }

    /// The file of `host`'s lease.
    pub fn path(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.lease"))
    }
}

impl LeaseSource for DatastoreLeases {
    fn read(&self, host: &str) -> Option<Lease> {
        let path = self.path(host);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(host, "lease {}: {e}", path.display());
                }
                return None;
            }
        };
        match Lease::parse(&bytes) {
            Ok(l) if l.host == host => Some(l),
            Ok(l) => {
                tracing::warn!(host, "lease {} names host {}", path.display(), l.host);
                None
            }
            Err(e) => {
                tracing::warn!(
                    host,
                    "lease {}: {}",
                    path.display(),
                    vinfra_types::error::Chain(&e)
                );
                None
            }
        }
    }
}

/// No leases at all (a console without a datastore): every lost host is unprotected.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLeases;

impl LeaseSource for NoLeases {
    fn read(&self, _host: &str) -> Option<Lease> {
        None
    }
}
