//! The certificate lifecycle ([`crate::pki`] re-exports its public items): what renewal and
//! revocation read of a certificate, CA bundles, the check of a host certificate before an agent
//! stores it, and a server certificate replaced while serving.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::pki_base::{
    ca_roots, certs_from_pem, first_cert_from_pem, optional_client_verifier, parse_cert,
    pem_encode, private_key_from_pem, provider, server_chain, sha256_hex, PkiError, Result,
    BACKDATE, RENEW_AT,
};

/// What renewal and revocation need to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lower-case hex without separators.
    pub serial: String,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Start of validity (certificates of this crate are backdated by [`BACKDATE`]).
    pub not_before: std::time::SystemTime,
    /// End of validity.
    pub not_after: std::time::SystemTime,
    /// Hex SHA-256 of the issuer's distinguished name (DER): tells which CA signed it.
    pub issuer_hash: String,
}

impl CertInfo {
    /// When the certificate was issued: its start of validity plus [`BACKDATE`] (no later than
    /// its end).
    pub fn issued_at(&self) -> std::time::SystemTime {
        (self.not_before + BACKDATE).min(self.not_after)
    }

    /// When the certificate should be renewed: `fraction` (e.g. [`RENEW_AT`], clamped to 0..=1)
    /// of the way from its issue to its end.
    pub fn renewal_due(&self, fraction: f64) -> std::time::SystemTime {
        let issued = self.issued_at();
        let life = self.not_after.duration_since(issued).unwrap_or_default();
        issued + life.mul_f64(fraction.clamp(0.0, 1.0))
    }

    /// How long from now until [`renewal_due`](Self::renewal_due) at [`RENEW_AT`] (zero when
    /// it passed).
    pub fn until_renewal(&self) -> Duration {
        self.renewal_due(RENEW_AT)
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    }

    /// How long to wait before trying again after a failed renewal: a tenth of what is left of
    /// the validity, between 1 s and 1 h.
    pub fn retry_after(&self) -> Duration {
        let left = self
            .not_after
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        (left / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }

    /// Seconds since the Unix epoch of [`not_after`](Self::not_after).
    pub fn not_after_s(&self) -> u64 {
        unix_s(self.not_after)
    }
}

fn unix_s(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn system_time(t: x509_parser::time::ASN1Time) -> std::time::SystemTime {
    let secs = t.timestamp();
    match u64::try_from(secs) {
        Ok(s) => std::time::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => std::time::UNIX_EPOCH,
    }
}

/// Serial, name, validity and issuer of a DER certificate.
pub fn cert_info_of_der(cert_der: &[u8]) -> Result<CertInfo> {
    let cert = parse_cert(cert_der, "certificate")?;
    let validity = cert.validity();
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        serial: hex::encode(cert.raw_serial()),
        common_name,
        not_before: system_time(validity.not_before),
        not_after: system_time(validity.not_after),
        issuer_hash: sha256_hex(cert.issuer().as_raw()),
    })
}

/// [`cert_info_of_der`] of the first certificate of a PEM document.
pub fn cert_info_of_pem(cert_pem: &str) -> Result<CertInfo> {
    cert_info_of_der(&first_cert_from_pem(cert_pem, "certificate")?)
}

/// Hex SHA-256 of a CA certificate's subject distinguished name (DER): equals
/// [`CertInfo::issuer_hash`] of the certificates it signs.
pub fn subject_hash_of_pem(ca_pem: &str) -> Result<String> {
    let der = first_cert_from_pem(ca_pem, "CA certificate")?;
    let cert = parse_cert(&der, "CA")?;
    Ok(sha256_hex(cert.subject().as_raw()))
}

/// True when the client certificate `cert_der` verifies now under the CA `ca_pem` alone (which
/// CA of a bundle issued it).
pub fn issued_by(cert_der: &[u8], ca_pem: &str) -> bool {
    let Ok(roots) = ca_roots(ca_pem) else {
        return false;
    };
    let Ok(verifier) =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()
    else {
        return false;
    };
    verifier
        .verify_client_cert(&CertificateDer::from(cert_der), &[], UnixTime::now())
        .is_ok()
}

/// The DER of a connected agent's client certificate, if it presented one.
pub fn peer_cert_der(conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    Some(conn.peer_certificates()?.first()?.to_vec())
}

/// The certificate and validity of a connected agent's client certificate (see
/// [`peer_host_name`](crate::pki::peer_host_name)); `None` without one.
pub fn peer_cert_info(conn: &rustls::ServerConnection) -> Option<CertInfo> {
    let leaf = conn.peer_certificates()?.first()?;
    cert_info_of_der(leaf).ok()
}

/// Every certificate of one or more PEM documents (CA bundles), each once, in order, as one PEM
/// document with LF line endings. Fails when one of them holds no certificate.
pub fn ca_bundle(pems: &[&str]) -> Result<String> {
    let mut seen = Vec::new();
    let mut out = String::new();
    for pem in pems {
        for cert in certs_from_pem(pem, "CA bundle")? {
            if !seen.contains(&cert) {
                out.push_str(&pem_encode("CERTIFICATE", &cert));
                seen.push(cert);
            }
        }
    }
    Ok(out)
}

/// Hex SHA-256 fingerprints of every certificate of a PEM bundle, in order.
pub fn bundle_fingerprints(bundle_pem: &str) -> Result<Vec<String>> {
    Ok(certs_from_pem(bundle_pem, "CA bundle")?
        .iter()
        .map(|c| sha256_hex(c))
        .collect())
}

/// Checks a host certificate the console sent back (join or renewal) before an agent stores it:
/// it verifies under a CA of `ca_bundle_pem` as a client certificate, now; its common name is
/// `host_name`; and it belongs to `key_pem`.
pub fn check_host_cert(
    cert_pem: &str,
    key_pem: &str,
    ca_bundle_pem: &str,
    host_name: &str,
) -> Result<CertInfo> {
    let chain = certs_from_pem(cert_pem, "host certificate")?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(ca_roots(ca_bundle_pem)?), provider())
            .build()
            .map_err(PkiError::Verifier)?;
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map_err(|_| PkiError::NotIssuedByCa { what: "host" })?;
    let key = private_key_from_pem(key_pem, "host key")?;
    rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider())
        .map_err(|_| PkiError::KeyMismatch { what: "host" })?;
    let info = cert_info_of_der(&chain[0])?;
    if info.common_name.as_deref() != Some(host_name) {
        return Err(PkiError::CertHost {
            expected: host_name.to_owned(),
            got: info.common_name.unwrap_or_default(),
        });
    }
    Ok(info)
}

/// The console's server certificate, replaceable while servers run: the TLS configurations of
/// [`server_config_resolving`] and [`server_config_with_optional_client_auth_resolving`] ask it
/// for the certificate at every handshake, so [`ServerCertSlot::replace`] takes effect for the
/// next connection without a restart (open connections keep theirs).
pub struct ServerCertSlot {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl fmt::Debug for ServerCertSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertSlot").finish_non_exhaustive()
    }
}

fn certified_key(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>> {
    let key = rustls::sign::CertifiedKey::from_der(
        server_chain(cert_pem, ca_pem)?,
        private_key_from_pem(key_pem, "server key")?,
        &provider(),
    )
    .map_err(PkiError::Tls)?;
    Ok(Arc::new(key))
}

impl ServerCertSlot {
    /// A slot holding `cert_pem` and its key; the chain sent is `[cert, first CA of ca_pem]`.
    pub fn new(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Arc<Self>> {
        Ok(Arc::new(ServerCertSlot {
            current: std::sync::RwLock::new(certified_key(cert_pem, key_pem, ca_pem)?),
        }))
    }

    /// Serves `cert_pem` from the next handshake on. The key must match the certificate.
    pub fn replace(&self, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<()> {
        let key = certified_key(cert_pem, key_pem, ca_pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }

    /// The leaf certificate served now (DER).
    pub fn current_der(&self) -> CertificateDer<'static> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).cert[0].clone()
    }
}

impl rustls::server::ResolvesServerCert for ServerCertSlot {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// [`server_config_with_optional_client_auth`](crate::pki::server_config_with_optional_client_auth)
/// serving the certificate of `slot` (replaceable while serving) and accepting client
/// certificates of any CA of the bundle `ca_bundle_pem`.
pub fn server_config_with_optional_client_auth_resolving(
    slot: Arc<ServerCertSlot>,
    ca_bundle_pem: &str,
) -> Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(PkiError::Tls)?
        .with_client_cert_verifier(optional_client_verifier(ca_bundle_pem)?)
        .with_cert_resolver(slot);
    Ok(Arc::new(config))
}

/// [`server_config`](crate::pki::server_config) serving the certificate of `slot` (replaceable
/// while serving).
pub fn server_config_resolving(slot: Arc<ServerCertSlot>) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
