//! The host's credentials on disk: the CA bundle, its certificate and its key in the agent's data
//! directory; a renewal staged next to them, then renamed into place, so a crash leaves the old
//! set or the new, never a mix.

use std::path::{Path, PathBuf};

use super::error::ConnectionError;

/// The host's TLS identity, PEM.
#[derive(Clone)]
pub struct Credentials {
    /// The cluster CA (during a CA rotation, a bundle of the old and the new).
    pub ca_pem: String,
    /// This host's certificate.
    pub cert_pem: String,
    /// This host's key.
    pub key_pem: String,
    /// The data directory they are stored in (renewals are written there); `None`: kept in
    /// memory only.
    pub dir: Option<PathBuf>,
}

pub(super) const CA_FILE: &str = "ca.crt";
pub(super) const CERT_FILE: &str = "host.crt";
pub(super) const KEY_FILE: &str = "host.key";
/// A renewal is staged in these before they replace the three above; the staged certificate,
/// written last, is the mark that the set is complete.
pub(super) const STAGED_CA: &str = "renew-ca.crt";
pub(super) const STAGED_CERT: &str = "renew-host.crt";
pub(super) const STAGED_KEY: &str = "renew-host.key";

/// Writes `text` to `path` with `mode` through a temporary file, an fsync, a rename and an
/// fsync of the directory.
pub(super) fn store_file(path: &Path, text: &str, mode: u32) -> Result<(), ConnectionError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    // `<name>.tmp`, its own for each file (`host.key` and `host.crt` must not share one), made
    // anew: a leftover of a crash, perhaps with a looser mode, is never written into.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConnectionError::Io { path, source }
    };
    crate::files::blocking(|| {
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(path)
    })
}

fn sync_dir(path: &Path) -> Result<(), ConnectionError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ConnectionError::Io {
            path: dir.into(),
            source,
        })
}

/// Finishes a renewal a crash interrupted: when the staged certificate (written last) is
/// there, the staged files replace the live ones; otherwise stray staged files go.
pub(super) fn finish_staged(data_dir: &Path) -> Result<(), ConnectionError> {
    let staged_cert = data_dir.join(STAGED_CERT);
    let pairs = [
        (data_dir.join(STAGED_KEY), data_dir.join(KEY_FILE)),
        (data_dir.join(STAGED_CA), data_dir.join(CA_FILE)),
        (staged_cert.clone(), data_dir.join(CERT_FILE)),
    ];
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConnectionError::Io { path, source }
    };
    if staged_cert.exists() {
        for (from, to) in &pairs {
            if from.exists() {
                std::fs::rename(from, to).map_err(io(to))?;
            }
        }
        sync_dir(&staged_cert)?;
        tracing::info!("a renewed certificate staged before a restart is now in use");
    } else {
        for (from, _) in &pairs {
            match std::fs::remove_file(from) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io(from)(source)),
            }
        }
    }
    Ok(())
}

/// Stores a renewed certificate, its key and the CA bundle in `data_dir`: each staged (fsynced)
/// first, the certificate last, then all renamed over the live files. A crash before the
/// staged certificate is complete keeps the old set; after it, the next start finishes the
/// renames ([`ensure_credentials`]).
pub fn store_renewed(data_dir: &Path, creds: &Credentials) -> Result<(), ConnectionError> {
    store_file(&data_dir.join(STAGED_KEY), &creds.key_pem, 0o600)?;
    store_file(&data_dir.join(STAGED_CA), &creds.ca_pem, 0o644)?;
    store_file(&data_dir.join(STAGED_CERT), &creds.cert_pem, 0o644)?;
    crate::files::blocking(|| finish_staged(data_dir))
}

pub(super) fn read_opt(path: &Path) -> Result<Option<String>, ConnectionError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConnectionError::Io {
            path: path.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(tag: &str) -> Credentials {
        Credentials {
            ca_pem: format!("ca {tag}"),
            cert_pem: format!("cert {tag}"),
            key_pem: format!("key {tag}"),
            dir: None,
        }
    }

    fn live(dir: &Path) -> (String, String, String) {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        (read(CA_FILE), read(CERT_FILE), read(KEY_FILE))
    }

    fn write_live(dir: &Path, c: &Credentials) {
        std::fs::write(dir.join(CA_FILE), &c.ca_pem).unwrap();
        std::fs::write(dir.join(CERT_FILE), &c.cert_pem).unwrap();
        std::fs::write(dir.join(KEY_FILE), &c.key_pem).unwrap();
    }

    #[test]
    fn a_renewal_replaces_the_whole_set_and_keeps_the_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_live(dir.path(), &creds("old"));
        store_renewed(dir.path(), &creds("new")).unwrap();
        assert_eq!(
            live(dir.path()),
            ("ca new".into(), "cert new".into(), "key new".into())
        );
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for staged in [STAGED_CA, STAGED_CERT, STAGED_KEY] {
            assert!(!dir.path().join(staged).exists(), "{staged} left behind");
        }
    }

    #[test]
    fn an_interrupted_renewal_ends_with_the_old_set_or_the_new_never_a_mix() {
        // Crash before the staged certificate was complete: the old set stays.
        let dir = tempfile::tempdir().unwrap();
        write_live(dir.path(), &creds("old"));
        std::fs::write(dir.path().join(STAGED_KEY), "key new").unwrap();
        std::fs::write(dir.path().join(STAGED_CA), "ca new").unwrap();
        finish_staged(dir.path()).unwrap();
        assert_eq!(
            live(dir.path()),
            ("ca old".into(), "cert old".into(), "key old".into())
        );
        assert!(!dir.path().join(STAGED_KEY).exists());

        // Crash after the key was renamed, before the certificate: the next start finishes.
        let dir = tempfile::tempdir().unwrap();
        write_live(dir.path(), &creds("old"));
        std::fs::write(dir.path().join(KEY_FILE), "key new").unwrap();
        std::fs::write(dir.path().join(STAGED_CA), "ca new").unwrap();
        std::fs::write(dir.path().join(STAGED_CERT), "cert new").unwrap();
        finish_staged(dir.path()).unwrap();
        assert_eq!(
            live(dir.path()),
            ("ca new".into(), "cert new".into(), "key new".into())
        );
    }
}
