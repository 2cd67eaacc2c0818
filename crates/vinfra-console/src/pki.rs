//! The console's own key material: the cluster CA, the server certificate of the API and the agent
//! endpoint, and the API token.
//!
//! On first start the CA is created and saved in `<data_dir>/pki` (keys mode 0600); the server
//! certificate is issued again at every start so that it lists the current listen addresses and
//! advertised names, and again while the console runs once [`pki::RENEW_AT`] of its validity
//! passed ([`ServerCert::renew`]): both TLS configurations take it from a
//! [`pki::ServerCertSlot`], so the next handshake gets the new one without a restart.
//!
//! During a CA rotation `<data_dir>/pki/ca-trusted.pem` holds the other CA certificates still
//! trusted (docs/design.md, "Certificate lifecycle"): client certificates of any CA of the
//! bundle (issuing CA, then these) are accepted, and hosts get the bundle when they renew.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use rustls::ServerConfig;
use vinfra_proto::pki::{self, CertInfo, ClusterCa, PkiError, ServerCertSlot};

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
    /// a CA rotation step cannot be taken now
    #[error("{reason}")]
    Rotation {
        /// Why.
        reason: String,
    },
}

/// File of the CA certificates trusted besides the issuing CA (a CA rotation).
pub const TRUSTED_CA_FILE: &str = "ca-trusted.pem";
/// Every CA certificate the console trusts, the issuing CA first, written at every start: what
/// REST clients should trust to follow a CA rotation.
pub const BUNDLE_FILE: &str = "ca-bundle.pem";

/// CA, server certificate and the TLS configurations built from them.
pub struct ConsolePki {
    /// The cluster CA (signs host certificates).
    pub ca: ClusterCa,
    /// The CA certificates trusted, PEM: the issuing CA, then those of `ca-trusted.pem`.
    pub ca_bundle: String,
    /// TLS for the agent endpoint (client certificate optional).
    pub agent_tls: Arc<ServerConfig>,
    /// TLS for the REST API.
    pub api_tls: Arc<ServerConfig>,
    /// The server certificate both serve, and how to renew it.
    pub server: ServerCert,
}

/// The console's server certificate: where it is written, the names it lists, and the slot
/// both TLS configurations serve it from.
pub struct ServerCert {
    dir: PathBuf,
    names: Vec<String>,
    slot: Arc<ServerCertSlot>,
}

impl ServerCert {
    /// The certificate served now.
    pub fn info(&self) -> Result<CertInfo, ConsolePkiError> {
        Ok(pki::cert_info_of_der(&self.slot.current_der())?)
    }

    /// Issues a new server certificate from `ca` for the same names, writes it (key first, both
    /// through a rename) and serves it from the next handshake on.
    pub fn renew(&self, ca: &ClusterCa) -> Result<CertInfo, ConsolePkiError> {
        let server = ca.issue_server_cert(&self.names)?;
        write_server_files(&self.dir, &server)?;
        self.slot
            .replace(&server.cert_pem, &server.key_pem, ca.cert_pem())?;
        Ok(pki::cert_info_of_pem(&server.cert_pem)?)
    }
}

fn write_server_files(dir: &Path, server: &pki::IssuedCert) -> Result<(), ConsolePkiError> {
    write_file(
        &dir.join("server-key.pem"),
        server.key_pem.as_bytes(),
        0o600,
    )?;
    write_file(&dir.join("server.pem"), server.cert_pem.as_bytes(), 0o644)
}

/// How long certificates the console issues are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Host (agent) certificates.
    pub host: Duration,
    /// The console's server certificate.
    pub server: Duration,
}

impl Validity {
    /// The shortest validity accepted.
    pub const MIN: Duration = pki::MIN_CERT_VALIDITY;
    /// The longest validity accepted (the CA's).
    pub const MAX: Duration = pki::CA_VALIDITY;
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            host: pki::HOST_CERT_VALIDITY,
            server: pki::SERVER_CERT_VALIDITY,
        }
    }
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
    /// Loads the CA from `<data_dir>/pki` or creates it, and issues the server certificate;
    /// certificates issued are valid as long as `validity` says.
    pub fn load_or_create(
        data_dir: &Path,
        names: &[String],
        validity: Validity,
    ) -> Result<Self, ConsolePkiError> {
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
        let ca = ca.with_validity(validity.host, validity.server)?;
        let trusted = dir.join(TRUSTED_CA_FILE);
        let ca_bundle = match std::fs::read_to_string(&trusted) {
            Ok(others) => {
                for fingerprint in pki::bundle_fingerprints(&others)? {
                    tracing::info!(fingerprint, "also trusting CA (rotation)");
                }
                pki::ca_bundle(&[ca.cert_pem(), &others])?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ca.cert_pem().to_string(),
            Err(source) => {
                return Err(ConsolePkiError::Io {
                    path: trusted,
                    source,
                })
            }
        };
        // For REST clients: trusting the bundle, they follow a CA rotation.
        write_file(&dir.join(BUNDLE_FILE), ca_bundle.as_bytes(), 0o644)?;
        let server = ca.issue_server_cert(names)?;
        write_server_files(&dir, &server)?;
        let slot = ServerCertSlot::new(&server.cert_pem, &server.key_pem, ca.cert_pem())?;
        let agent_tls =
            pki::server_config_with_optional_client_auth_resolving(slot.clone(), &ca_bundle)?;
        let api_tls = pki::server_config_resolving(slot.clone())?;
        Ok(ConsolePki {
            ca,
            ca_bundle,
            agent_tls,
            api_tls,
            server: ServerCert {
                dir,
                names: names.to_vec(),
                slot,
            },
        })
    }
}

/// The new CA of a rotation between its `begin` and `switch` steps (certificate, key).
pub const NEXT_CA_FILE: &str = "ca-next.pem";
/// The new CA's key between `begin` and `switch` (mode 0600).
pub const NEXT_CA_KEY_FILE: &str = "ca-next-key.pem";

/// A step of a CA rotation ([`rotate_ca`]; docs/design.md, "Certificate lifecycle"). Each takes
/// effect at the console's next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// A new CA is made (`ca-next.pem`) and trusted besides the current one: hosts are asked to
    /// renew and get both CAs.
    Begin,
    /// The new CA becomes the issuing CA (server certificate, host certificates, join token
    /// pin); the old one stays trusted: hosts are asked to renew and get certificates of the
    /// new CA. The old CA's key is deleted.
    Switch,
    /// The old CA is no longer trusted.
    Finish,
}

/// Why a rotation step cannot be taken.
fn rotation_refused(reason: &str) -> ConsolePkiError {
    ConsolePkiError::Rotation {
        reason: reason.to_string(),
    }
}

/// Takes a step of a CA rotation on the files of `<data_dir>/pki` (safe while the console runs:
/// it reads them at start only). Returns what was done, for the operator.
pub fn rotate_ca(data_dir: &Path, step: RotationStep) -> Result<String, ConsolePkiError> {
    let dir = data_dir.join("pki");
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (next_cert, next_key) = (dir.join(NEXT_CA_FILE), dir.join(NEXT_CA_KEY_FILE));
    let trusted = dir.join(TRUSTED_CA_FILE);
    let read = |p: &Path| std::fs::read_to_string(p).map_err(io_err(p));
    if !ca_cert.exists() {
        return Err(rotation_refused(
            "the console has no CA yet (start it once first)",
        ));
    }
    let current = read(&ca_cert)?;
    match step {
        RotationStep::Begin => {
            if next_cert.exists() {
                return Err(rotation_refused(
                    "a rotation was begun already: switch to its CA, or remove ca-next*.pem to \
                     start over",
                ));
            }
            if trusted.exists() {
                return Err(rotation_refused(
                    "the previous rotation is not finished (ca-trusted.pem exists): finish it \
                     first",
                ));
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let name = format!("vinfra {now}");
            let next = ClusterCa::generate(&name)?;
            write_file(&next_key, next.key_pem().as_bytes(), 0o600)?;
            write_file(&next_cert, next.cert_pem().as_bytes(), 0o644)?;
            write_file(&trusted, next.cert_pem().as_bytes(), 0o644)?;
            Ok(format!(
                "new CA {} made and trusted besides the current one; restart the console: \
                 every host renews and gets both CAs; then run the switch step",
                next.fingerprint()
            ))
        }
        RotationStep::Switch => {
            if !next_cert.exists() {
                return Err(rotation_refused("no rotation was begun (no ca-next.pem)"));
            }
            let next_pem = read(&next_cert)?;
            let next_fingerprint = pki::fingerprint_of_pem(&next_pem)?;
            // A switch interrupted after ca.pem was replaced only has the leftovers to remove.
            if pki::fingerprint_of_pem(&current)? != next_fingerprint {
                // Checks that the key is the certificate's before anything is replaced.
                let next = ClusterCa::from_pem(&next_pem, &read(&next_key)?)?;
                write_file(&trusted, current.as_bytes(), 0o644)?;
                write_file(&ca_key, next.key_pem().as_bytes(), 0o600)?;
                write_file(&ca_cert, next.cert_pem().as_bytes(), 0o644)?;
            }
            for p in [&next_key, &next_cert] {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(io_err(p)(source)),
                }
            }
            Ok(format!(
                "CA {next_fingerprint} issues from now on, the old one stays trusted; restart \
                 the console: every host renews and gets a certificate of the new CA. Join \
                 tokens pin the new CA. Then run the finish step"
            ))
        }
        RotationStep::Finish => {
            if next_cert.exists() {
                return Err(rotation_refused(
                    "the rotation's CA does not issue yet: run the switch step first",
                ));
            }
            match std::fs::remove_file(&trusted) {
                Ok(()) => Ok(format!(
                    "only CA {} is trusted from the console's next start; a host whose \
                     certificate is still of the old CA can no longer connect",
                    pki::fingerprint_of_pem(&current)?
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(rotation_refused(
                    "no rotation is under way (no ca-trusted.pem)",
                )),
                Err(source) => Err(io_err(&trusted)(source)),
            }
        }
    }
}
