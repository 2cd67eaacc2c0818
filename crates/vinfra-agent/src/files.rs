//! File helpers shared by the manager, the network and the probe (below all of them).

use std::path::Path;

/// Writes `data` to `path` through a temporary file, an fsync and a rename, so a crash leaves
/// either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}
