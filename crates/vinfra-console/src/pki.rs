//! The console's own key material: the cluster CA, the server certificate of the API and the agent
//! endpoint, and the API token.
//!
//! On first start the CA is created and saved in `<data_dir>/pki` (keys mode 0600); the server
//! certificate is issued again at every start so that it lists the current listen addresses and
//! advertised names.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use vinfra_proto::pki::{self, ClusterCa, PkiError};

pub use vinfra_proto::pki::peer_host_name;

/// Errors loading or creating key material.
#[derive(Debug, thiserror::Error)]
pub enum ConsolePkiError {
    /// a PKI file could not be read or written
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// certificate work failed
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// CA, server certificate and the TLS configurations built from them.
pub struct ConsolePki {
    /// The cluster CA (signs host certificates).
    pub ca: ClusterCa,
    /// TLS for the agent endpoint (client certificate optional).
    pub agent_tls: Arc<ServerConfig>,
    /// TLS for the REST API.
    pub api_tls: Arc<ServerConfig>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ConsolePkiError + '_ {
    move |source| ConsolePkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` with `mode`, replacing it: through a temporary file, an fsync and a
/// rename, then an fsync of the directory, so a crash leaves the old file or the new one.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ConsolePkiError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Names the server certificate lists: localhost, 127.0.0.1, the listen IPs (unless unspecified)
/// and the advertised names.
pub fn server_names(listen: &[SocketAddr], advertise: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for addr in listen {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    names.extend(advertise.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

impl ConsolePki {
    /// Loads the CA from `<data_dir>/pki` or creates it, and issues the server certificate.
    pub fn load_or_create(data_dir: &Path, names: &[String]) -> Result<Self, ConsolePkiError> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(&dir))?;
        let ca_cert = dir.join("ca.pem");
        let ca_key = dir.join("ca-key.pem");
        let ca = if ca_cert.exists() {
            let cert = std::fs::read_to_string(&ca_cert).map_err(io_err(&ca_cert))?;
            let key = std::fs::read_to_string(&ca_key).map_err(io_err(&ca_key))?;
            ClusterCa::from_pem(&cert, &key)?
        } else {
            let ca = ClusterCa::generate("vinfra")?;
            write_file(&ca_key, ca.key_pem().as_bytes(), 0o600)?;
            write_file(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
            ca
        };
        let server = ca.issue_server_cert(names)?;
        write_file(
            &dir.join("server-key.pem"),
            server.key_pem.as_bytes(),
            0o600,
        )?;
        write_file(&dir.join("server.pem"), server.cert_pem.as_bytes(), 0o644)?;
        let agent_tls = pki::server_config_with_optional_client_auth(
            &server.cert_pem,
            &server.key_pem,
            ca.cert_pem(),
        )?;
        let api_tls = pki::server_config(&server.cert_pem, &server.key_pem, ca.cert_pem())?;
        Ok(ConsolePki {
            ca,
            agent_tls,
            api_tls,
        })
    }
}
