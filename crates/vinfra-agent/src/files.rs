//! File helpers shared by the manager, the network and the probe (below all of them).

use std::path::Path;

/// Writes `data` to `path` through a temporary file, an fsync and a rename, then an fsync of
/// the directory (so the rename itself survives a crash), so a crash leaves either the old or
/// the new content. The fsync can take as long as the disk is busy: on a
/// worker of a multi-thread runtime it runs as [`blocking`], so the worker's other tasks (the
/// console heartbeat) move to another thread meanwhile.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    blocking(|| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, data)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    })
}

/// Runs `f`, which may block (disk I/O), without holding up other tasks: on a worker thread of a
/// multi-thread tokio runtime through [`tokio::task::block_in_place`] (the worker's tasks go to
/// another thread while `f` runs); anywhere else (a blocking thread, a current-thread runtime,
/// no runtime) directly.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_without_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("a"), b"one").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_on_a_current_thread_runtime() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("a"), b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"two");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_on_a_multi_thread_runtime_and_in_blocking_threads() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("a"), b"three").unwrap();
        let p = dir.path().join("b");
        tokio::task::spawn_blocking(move || write_atomic(&p, b"four"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"three");
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"four");
    }
}
