//! The host lease on the shared datastore (`<datastore>/ha/hosts/<host>.lease`,
//! [`vinfra_ha::Lease`]): acquired at start, renewed every period by a thread of its own, written
//! `released` at a clean end.
//!
//! A write goes to `<host>.lease.tmp` in the same directory (write, fsync), is renamed over the
//! lease and the directory is fsynced: a reader sees the old content or the new, never a mix.
//! Every write attempt takes the next counter, so two different contents never share a stamp.
//! The start time of each successful write is kept in an atomic: the watchdog reads it without
//! a lock the renewer could hold while its I/O hangs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use vinfra_ha::lease::LEASE_VERSION;
use vinfra_ha::{Lease, LeaseState};

/// How often the acquisition reads the lease while it watches for another guard's renewals.
const ACQUIRE_POLL: Duration = Duration::from_millis(50);
/// Added to twice the renewal period to make the acquisition's watch.
const ACQUIRE_EXTRA: Duration = Duration::from_millis(500);
/// No successful write yet.
const NEVER: u64 = u64::MAX;

/// Why the lease could not be acquired or written.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The lease directory could not be created.
    #[error("creating the lease directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A write failed.
    #[error("writing the lease {path}")]
    Write {
        /// The lease file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another guard renews this host's lease: its stamp changed while this one watched.
    #[error(
        "another guard holds the lease {path}: it changed from {before:?} to {after:?} within {watched:?}"
    )]
    Held {
        /// The lease file.
        path: PathBuf,
        /// The `(incarnation, counter)` read first.
        before: Option<(u64, u64)>,
        /// The one read later.
        after: (u64, u64),
        /// How long this guard watched.
        watched: Duration,
    },
    /// Right after this guard's first write, the lease held another guard's.
    #[error("another guard wrote the lease {path} over this one's first write (found {found:?})")]
    Lost {
        /// The lease file.
        path: PathBuf,
        /// The `(incarnation, counter)` found.
        found: Option<(u64, u64)>,
    },
    /// The renewer thread could not be started.
    #[error("starting the renewer thread")]
    Thread(#[source] io::Error),
}

/// `<datastore>/ha/hosts/<host>.lease`.
pub fn lease_path(datastore: &Path, host: &str) -> PathBuf {
    datastore
        .join("ha")
        .join("hosts")
        .join(format!("{host}.lease"))
}

/// The temporary file a write goes through: `<host>.lease.tmp`, next to the lease.
pub fn temp_path(lease: &Path) -> PathBuf {
    let mut name = lease.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    lease.with_file_name(name)
}

/// The lease at `path`, or `None` when it is missing, unreadable or not a lease.
pub fn read_lease(path: &Path) -> Option<Lease> {
    let bytes = std::fs::read(path).ok()?;
    Lease::parse(&bytes).ok()
}

/// Writes `lease` to `path`: the temporary file written and fsynced, renamed over the lease,
/// the directory fsynced.
pub fn write_lease(path: &Path, lease: &Lease) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(&lease.to_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Watches the lease at `path` for `2 × renew + 500 ms`: when its stamp changes, another guard
/// renews it and this one must not start. Returns the lease read first (if any).
pub fn watch_for_holder(path: &Path, renew: Duration) -> Result<Option<Lease>, RenewError> {
    let first = read_lease(path);
    let before = first.as_ref().map(Lease::stamp);
    let watched = renew * 2 + ACQUIRE_EXTRA;
    let start = Instant::now();
    while start.elapsed() < watched {
        std::thread::sleep(ACQUIRE_POLL.min(watched.saturating_sub(start.elapsed())));
        if let Some(now) = read_lease(path) {
            if Some(now.stamp()) != before {
                return Err(RenewError::Held {
                    path: path.to_owned(),
                    before,
                    after: now.stamp(),
                    watched,
                });
            }
        }
    }
    Ok(first)
}

/// A new incarnation: random, never 0 and never `previous`.
fn new_incarnation(previous: Option<u64>) -> u64 {
    loop {
        let n = Uuid::new_v4().as_u64_pair().0;
        if n != 0 && Some(n) != previous {
            return n;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct KeeperState {
    next_counter: u64,
    written_counter: u64,
    lease_state: LeaseState,
    agent_absent_ms: Option<u64>,
    period: Duration,
    paused: bool,
    write_now: bool,
    failures: u64,
    /// The console's datastore heartbeat, when watched: its path, what the last read found
    /// and when, and the latest moment the console is known to have run.
    console: Option<ConsoleWatch>,
}

/// The console's datastore heartbeat as the renewer reads it.
struct ConsoleWatch {
    path: PathBuf,
    last: Option<(Option<Vec<u8>>, Instant)>,
    alive: Option<Instant>,
    /// When the console that wrote the last heartbeat started, at the latest: the read's
    /// time less the `uptime_ms` it says.
    since: Option<Instant>,
}

/// The `uptime_ms` a console heartbeat says (`None` when it says none).
fn console_uptime(content: &[u8]) -> Option<Duration> {
    #[derive(serde::Deserialize)]
    struct Beat {
        uptime_ms: u64,
    }
    serde_json::from_slice::<Beat>(content)
        .ok()
        .map(|b| Duration::from_millis(b.uptime_ms))
}

/// This guard's lease: who it is, what it says, when it was last written.
pub struct LeaseKeeper {
    path: PathBuf,
    host: String,
    incarnation: u64,
    base: Instant,
    renewed_ns: AtomicU64,
    state: Mutex<KeeperState>,
    wake: Condvar,
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("path", &self.path)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// Acquires `host`'s lease at `path` and starts renewing it every `renew`: watches it for
    /// another guard ([`watch_for_holder`]), writes it with a new incarnation (`live`,
    /// counter 1), checks one period later that the write is still there, then starts the
    /// renewer thread.
    pub fn acquire(
        path: &Path,
        host: &str,
        renew: Duration,
    ) -> Result<Arc<LeaseKeeper>, RenewError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RenewError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let previous = watch_for_holder(path, renew)?;
        let keeper = Arc::new(LeaseKeeper {
            path: path.to_owned(),
            host: host.to_owned(),
            incarnation: new_incarnation(previous.as_ref().map(|l| l.incarnation)),
            base: Instant::now(),
            renewed_ns: AtomicU64::new(NEVER),
            state: Mutex::new(KeeperState {
                next_counter: 1,
                written_counter: 0,
                lease_state: LeaseState::Live,
                agent_absent_ms: None,
                period: renew,
                paused: false,
                write_now: false,
                failures: 0,
                console: None,
            }),
            wake: Condvar::new(),
            write_lock: Mutex::new(()),
        });
        keeper.write_once()?;
        std::thread::sleep(renew);
        let found = read_lease(path).map(|l| l.stamp());
        if found != Some((keeper.incarnation, 1)) {
            return Err(RenewError::Lost {
                path: path.to_owned(),
                found,
            });
        }
        tracing::info!(path = %path.display(), incarnation = keeper.incarnation, "lease acquired");
        let k = keeper.clone();
        std::thread::Builder::new()
            .name("guard-renewer".into())
            .spawn(move || k.renewer())
            .map_err(RenewError::Thread)?;
        Ok(keeper)
    }

    fn lock(&self) -> MutexGuard<'_, KeeperState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One write of the current content with the next counter (unless paused). Returns the
    /// start of the attempt.
    fn write_once(&self) -> Result<Instant, RenewError> {
        let _writing = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let lease = {
            let mut s = self.lock();
            if s.paused {
                return Ok(Instant::now());
            }
            s.write_now = false;
            let counter = s.next_counter;
            s.next_counter += 1;
            self.content(&s, counter)
        };
        let start = Instant::now();
        match write_lease(&self.path, &lease) {
            Ok(()) => {
                let ns = start.saturating_duration_since(self.base).as_nanos() as u64;
                self.renewed_ns.store(ns, Ordering::Release);
                let mut s = self.lock();
                s.written_counter = lease.counter;
                if s.failures > 0 {
                    tracing::info!(failures = s.failures, "lease writes succeed again");
                    s.failures = 0;
                }
                Ok(start)
            }
            Err(source) => {
                let mut s = self.lock();
                s.failures += 1;
                if s.failures == 1 || s.failures.is_multiple_of(20) {
                    tracing::warn!(path = %self.path.display(), failures = s.failures, error = %source, "cannot renew the lease");
                }
                Err(RenewError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    fn content(&self, s: &KeeperState, counter: u64) -> Lease {
        Lease {
            version: LEASE_VERSION,
            host: self.host.clone(),
            incarnation: self.incarnation,
            counter,
            state: s.lease_state.clone(),
            agent_absent_ms: s.agent_absent_ms,
            written_unix_ms: unix_ms(),
        }
    }

    /// Reads the console's datastore heartbeat, when watched: a content other than the last
    /// read's means the console wrote it since that read, so it ran at that read's time.
    fn read_console(&self) {
        let Some(path) = self.lock().console.as_ref().map(|c| c.path.clone()) else {
            return;
        };
        let now = Instant::now();
        let content = std::fs::read(&path).ok();
        let mut s = self.lock();
        if let Some(c) = s.console.as_mut() {
            if let Some((before, at)) = &c.last {
                if *before != content && content.is_some() {
                    c.alive = Some(*at);
                    c.since = content
                        .as_deref()
                        .and_then(console_uptime)
                        .and_then(|up| now.checked_sub(up));
                }
            }
            c.last = Some((content, now));
        }
    }

    /// Watches the console's datastore heartbeat at `path` (read at every renewal): see
    /// [`LeaseKeeper::console_alive`].
    pub fn watch_console(&self, path: PathBuf) {
        self.lock().console = Some(ConsoleWatch {
            path,
            last: None,
            alive: None,
            since: None,
        });
    }

    /// The latest moment the console is known to have run: the read before the one that
    /// found its datastore heartbeat changed (`vinfra_ha::lease::CONSOLE_HEARTBEAT`); `None`
    /// when not watched or never seen changing.
    pub fn console_alive(&self) -> Option<Instant> {
        self.lock().console.as_ref().and_then(|c| c.alive)
    }

    /// When the console that wrote the heartbeat last seen changing started, at the latest
    /// (`None` when not watched, never seen changing, or its heartbeat says no uptime).
    pub fn console_since(&self) -> Option<Instant> {
        self.lock().console.as_ref().and_then(|c| c.since)
    }

    /// The renewer thread: a write every period (counted from the start of the last one), or
    /// at once when asked; the console's heartbeat read after each.
    fn renewer(&self) {
        loop {
            let start = match self.write_once() {
                Ok(start) => start,
                Err(_) => Instant::now(),
            };
            self.read_console();
            let mut s = self.lock();
            loop {
                let next = start + s.period;
                let now = Instant::now();
                if s.write_now || now >= next {
                    break;
                }
                s = self
                    .wake
                    .wait_timeout(s, next - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This guard's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The counter of the last successful write.
    pub fn counter(&self) -> u64 {
        self.lock().written_counter
    }

    /// When the last successful write started (no lock taken).
    pub fn last_renewal(&self) -> Option<Instant> {
        match self.renewed_ns.load(Ordering::Acquire) {
            NEVER => None,
            ns => Some(self.base + Duration::from_nanos(ns)),
        }
    }

    /// What the lease says about the host's VMs.
    pub fn lease_state(&self) -> LeaseState {
        self.lock().lease_state.clone()
    }

    /// Renews every `period` from now on.
    pub fn set_period(&self, period: Duration) {
        let mut s = self.lock();
        if s.period != period {
            s.period = period;
            self.wake.notify_all();
        }
    }

    /// Sets how long the agent has been absent, written with the next renewal.
    pub fn set_agent_absent(&self, ms: Option<u64>) {
        self.lock().agent_absent_ms = ms;
    }

    /// Adds `vms` to the VMs the lease says stopped (`stopped`) and asks for a write at once.
    pub fn add_stopped(&self, vms: &[Uuid]) {
        if vms.is_empty() {
            return;
        }
        let mut s = self.lock();
        let mut all = match &s.lease_state {
            LeaseState::Stopped { vms } => vms.clone(),
            _ => Vec::new(),
        };
        for vm in vms {
            if !all.contains(vm) {
                all.push(*vm);
            }
        }
        s.lease_state = LeaseState::Stopped { vms: all };
        s.write_now = true;
        self.wake.notify_all();
    }

    /// Takes `vm` off the VMs the lease says stopped (it runs here again).
    pub fn remove_stopped(&self, vm: Uuid) {
        let mut s = self.lock();
        if let LeaseState::Stopped { vms } = &mut s.lease_state {
            if vms.contains(&vm) {
                vms.retain(|v| *v != vm);
                if vms.is_empty() {
                    s.lease_state = LeaseState::Live;
                }
                s.write_now = true;
                self.wake.notify_all();
            }
        }
    }

    /// Stops renewing and writes the lease `released` (after any write under way). On error
    /// the renewals go on as before.
    pub fn release(&self) -> Result<(), RenewError> {
        self.lock().paused = true;
        let _writing = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (lease, before) = {
            let mut s = self.lock();
            let counter = s.next_counter;
            s.next_counter += 1;
            let before = std::mem::replace(&mut s.lease_state, LeaseState::Released);
            (self.content(&s, counter), before)
        };
        match write_lease(&self.path, &lease) {
            Ok(()) => {
                self.lock().written_counter = lease.counter;
                tracing::info!(path = %self.path.display(), "lease released");
                Ok(())
            }
            Err(source) => {
                let mut s = self.lock();
                s.lease_state = before;
                s.paused = false;
                Err(RenewError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_alive_while_its_heartbeat_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_path(dir.path(), "h1");
        let renew = Duration::from_millis(50);
        let keeper = LeaseKeeper::acquire(&path, "h1", renew).unwrap();
        let beat = dir.path().join(vinfra_ha::lease::CONSOLE_HEARTBEAT);
        keeper.watch_console(beat.clone());
        std::thread::sleep(renew * 3);
        assert_eq!(keeper.console_alive(), None, "no heartbeat yet");
        std::fs::write(&beat, br#"{"counter":1,"uptime_ms":60000}"#).unwrap();
        std::thread::sleep(renew * 3);
        // Appearing is a change: the console ran at the read before, started a minute ago.
        let first = keeper.console_alive().expect("the console seen running");
        let since = keeper.console_since().expect("its start");
        assert!(first.saturating_duration_since(since) >= Duration::from_secs(59));
        std::fs::write(&beat, b"2").unwrap();
        std::thread::sleep(renew * 3);
        let second = keeper.console_alive().unwrap();
        assert!(second > first);
        // It stops changing (the console is down): the last moment stays.
        std::thread::sleep(renew * 4);
        assert_eq!(keeper.console_alive(), Some(second));
        keeper.release().unwrap();
    }

    #[test]
    fn a_lease_is_replaced_whole_and_a_renewing_holder_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_path(dir.path(), "h1");
        assert_eq!(temp_path(&path), dir.path().join("ha/hosts/h1.lease.tmp"));
        let renew = Duration::from_millis(50);
        let keeper = LeaseKeeper::acquire(&path, "h1", renew).unwrap();
        let first = read_lease(&path).unwrap();
        assert_eq!(first.incarnation, keeper.incarnation());
        assert_eq!(first.state, LeaseState::Live);
        assert!(keeper.counter() >= 1 && keeper.last_renewal().is_some());
        // A second guard watching the same lease sees it renewed.
        match LeaseKeeper::acquire(&path, "h1", renew) {
            Err(RenewError::Held { before, after, .. }) => {
                assert_eq!(before.map(|s| s.0), Some(keeper.incarnation()));
                assert_eq!(after.0, keeper.incarnation());
            }
            other => panic!("second acquisition: {other:?}"),
        }
        keeper.add_stopped(&[Uuid::from_u128(1)]);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let l = read_lease(&path).unwrap();
            if matches!(&l.state, LeaseState::Stopped { vms } if vms == &[Uuid::from_u128(1)]) {
                break;
            }
            assert!(Instant::now() < deadline, "stopped never written: {l:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        keeper.remove_stopped(Uuid::from_u128(1));
        assert_eq!(keeper.lease_state(), LeaseState::Live);
        keeper.release().unwrap();
        let released = read_lease(&path).unwrap();
        assert_eq!(released.state, LeaseState::Released);
        std::thread::sleep(renew * 3);
        assert_eq!(
            read_lease(&path).unwrap(),
            released,
            "renewed after release"
        );
    }
}
