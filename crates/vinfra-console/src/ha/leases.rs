//! Reading host leases: the files the hosts' guards write on the shared datastore,
//! `<datastore>/ha/hosts/<host>.lease` (format: `vinfra_ha::Lease`); writing the console's own
//! heartbeat there ([`write_heartbeat`]), which the guards read.
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

/// How often the console rewrites its datastore heartbeat.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes the console's own heartbeat on the datastore, `<datastore>/ha/console.heartbeat`
/// (`vinfra_ha::lease::CONSOLE_HEARTBEAT`): a counter, how long this console has run
/// (`uptime_ms`: a guard tells a console that just restarted from one that ran on while its
/// host had no contact) and the time, rewritten every
/// [`HEARTBEAT_EVERY`] (a temporary file renamed over it). Every guard reads it: a host that
/// lost its console contact while it kept changing is cut off from a running console
/// (isolated, its isolation response applies); one that stopped changing too means the console
/// is down, which isolates no host. Runs until the task is dropped; a failed write is logged
/// (once, then every minute) and tried again.
pub async fn write_heartbeat(datastore: PathBuf) {
    let path = datastore.join(vinfra_ha::lease::CONSOLE_HEARTBEAT);
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counter: u64 = 0;
    let mut failures: u64 = 0;
    let started = std::time::Instant::now();
    loop {
        every.tick().await;
        counter += 1;
        let p = path.clone();
        let uptime_ms = started.elapsed().as_millis() as u64;
        let written = tokio::task::spawn_blocking(move || write_beat(&p, counter, uptime_ms)).await;
        match written {
            Ok(Ok(())) => {
                if failures > 0 {
                    tracing::info!("console heartbeat written again after {failures} failures");
                }
                failures = 0;
            }
            Ok(Err(e)) => {
                if failures.is_multiple_of(60) {
                    tracing::warn!("console heartbeat {}: {e}", path.display());
                }
                failures += 1;
            }
            Err(e) => tracing::warn!("console heartbeat task: {e}"),
        }
    }
}

fn write_beat(path: &Path, counter: u64, uptime_ms: u64) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let tmp = path.with_extension("heartbeat.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(
        f,
        "{{\"counter\":{counter},\"uptime_ms\":{uptime_ms},\"written_unix_ms\":{at}}}"
    )?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
