//! What the console and the agent share about their data directory: one daemon at a time on
//! it, through an exclusive lock on `<dir>/lock` held while the daemon runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// How long a starting daemon waits for the lock: one just killed may take a moment to go
/// (a restart right after a SIGKILL).
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    /// The lock file could not be opened.
    #[error("data directory lock {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds it.
    #[error("data directory {} is in use by another {daemon}", dir.display())]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// `console` or `agent`.
        daemon: &'static str,
    },
}

/// Locks `dir` for `daemon` (`console`, `agent`), waiting up to `wait` for another holder to
/// go; the lock lasts as long as the returned value.
pub fn lock(
    dir: &Path,
    daemon: &'static str,
    wait: Duration,
) -> Result<Flock<File>, DataDirLockError> {
    let path = dir.join("lock");
    let deadline = Instant::now() + wait;
    let mut file = File::create(&path).map_err(|source| DataDirLockError::Io {
        path: path.clone(),
        source,
    })?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, _)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => {
                return Err(DataDirLockError::InUse {
                    dir: dir.to_path_buf(),
                    daemon,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_next_once_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "agent", Duration::ZERO).unwrap();
        let err = lock(dir.path(), "agent", Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, DataDirLockError::InUse { .. }), "{err}");
        // Let go while the next one waits: it gets it.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        assert!(lock(dir.path(), "agent", Duration::from_secs(5)).is_ok());
        releaser.join().unwrap();
    }
}
