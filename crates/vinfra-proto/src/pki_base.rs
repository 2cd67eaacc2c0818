//! The ground floor of the cluster PKI ([`crate::pki`] re-exports its public items): its error
//! and constants, and the PEM, DER and rustls helpers the CA, the configurations and the
//! certificate lifecycle ([`crate::pki_lifecycle`]) all use.

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use rcgen::{CertificateParams, SerialNumber};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Result type of the PKI ([`crate::pki`]).
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// Validity of the cluster CA certificate.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Validity of a host's client certificate.
pub const HOST_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Validity of a server certificate issued by
/// [`ClusterCa::issue_server_cert`](crate::pki::ClusterCa::issue_server_cert).
pub const SERVER_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far in the past certificates start to be valid, to absorb clock skew between machines.
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// Shortest validity [`ClusterCa::with_validity`](crate::pki::ClusterCa::with_validity) accepts.
pub const MIN_CERT_VALIDITY: Duration = Duration::from_secs(10);
/// A host or server certificate is renewed once this fraction of its lifetime (from its issue,
/// see [`CertInfo::issued_at`](crate::pki::CertInfo::issued_at)) has passed: 2/3, so a year's
/// certificate is renewed after eight months and a failed renewal has four months to succeed.
pub const RENEW_AT: f64 = 2.0 / 3.0;
/// How long [`fetch_pinned_ca`](crate::pki::fetch_pinned_ca) waits for the TCP connection and
/// the TLS handshake together.
pub const FETCH_CA_TIMEOUT: Duration = Duration::from_secs(10);

/// First field of a join token.
pub const JOIN_TOKEN_PREFIX: &str = "vinfra-join";
/// Prefix of a REST API bearer token.
pub const API_TOKEN_PREFIX: &str = "vinfra_";

/// Length in hex characters of a SHA-256 fingerprint and of a 32-byte secret.
const HEX_256_LEN: usize = 64;

/// Errors of the cluster PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Making a key, a certificate or a CSR failed.
    #[error("could not generate {what}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM document could not be decoded or held nothing of the expected kind.
    #[error("could not read the {what} PEM")]
    Pem {
        /// Which document.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate's DER could not be parsed.
    #[error("could not parse the {what} certificate")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// What the parser said.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// A private key could not be read.
    #[error("could not read the {what} private key")]
    Key {
        /// Which key.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// The private key does not belong to the certificate it was given with.
    #[error("the {what} private key does not match its certificate")]
    KeyMismatch {
        /// Which pair.
        what: &'static str,
    },
    /// A certificate that should be a CA certificate is not one.
    #[error("the certificate with fingerprint {fingerprint} is not a CA certificate")]
    NotCa {
        /// SHA-256 of the certificate, hex.
        fingerprint: String,
    },
    /// A certificate signing request is malformed, badly signed or asks for unsupported extensions.
    #[error("invalid certificate signing request")]
    Csr(#[source] rcgen::Error),
    /// A host name is not a valid vinfra name.
    #[error("invalid host name")]
    HostName(#[source] vinfra_types::name::NameError),
    /// A server certificate was requested without any name.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    /// A name is neither an IP address nor a valid DNS name.
    #[error("'{name}' is neither an IP address nor a valid DNS name")]
    ServerName {
        /// The name.
        name: String,
    },
    /// A fingerprint is not 64 hex characters.
    #[error("'{fingerprint}' is not a SHA-256 fingerprint (64 hex characters)")]
    Fingerprint {
        /// The text given.
        fingerprint: String,
    },
    /// A join token is malformed.
    #[error("malformed join token: {reason} (expected vinfra-join.<64 hex>.<64 hex>)")]
    JoinToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A certificate validity is out of range.
    #[error("a {what} certificate validity of {validity:?} is out of range (10 s to 10 years)")]
    Validity {
        /// Which kind of certificate.
        what: &'static str,
        /// The validity asked for.
        validity: Duration,
    },
    /// A host certificate names another host.
    #[error("the certificate is for host '{got}', not '{expected}'")]
    CertHost {
        /// The host it should name.
        expected: String,
        /// The common name it has.
        got: String,
    },
    /// A certificate was not signed by any CA of the bundle it was checked against.
    #[error("the {what} certificate was not issued by the cluster CA")]
    NotIssuedByCa {
        /// Which certificate.
        what: &'static str,
    },
    /// rustls refused a configuration (certificate, key, protocol versions).
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
    /// A certificate verifier could not be built from the CA.
    #[error("could not build a certificate verifier from the CA")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// Connecting or the TLS handshake failed.
    #[error("could not connect to {addr}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting and the TLS handshake took longer than [`FETCH_CA_TIMEOUT`].
    #[error("timed out connecting to {addr}")]
    Timeout {
        /// The address dialled.
        addr: String,
    },
    /// The server presented no certificate.
    #[error("{addr} presented no certificate")]
    NoServerCertificate {
        /// The address dialled.
        addr: String,
    },
    /// No certificate in the server's chain has the pinned fingerprint.
    #[error(
        "the server's CA does not match the pinned fingerprint: expected {expected}, got {got}"
    )]
    PinMismatch {
        /// The pinned fingerprint.
        expected: String,
        /// The fingerprint of the last certificate of the presented chain (where the CA should be).
        got: String,
    },
    /// The server's certificate is not valid under the pinned CA (or not for the server name).
    #[error("the server's certificate is not valid under the pinned CA")]
    ChainNotTrusted(#[source] rustls::Error),
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn random_hex_32() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Positive and always 16 bytes long.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

pub(crate) fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

pub(crate) fn is_hex_256(s: &str) -> bool {
    s.len() == HEX_256_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks and normalizes (lower-case) a SHA-256 fingerprint.
pub(crate) fn normalize_fingerprint(fingerprint: &str) -> Result<String> {
    if is_hex_256(fingerprint) {
        Ok(fingerprint.to_ascii_lowercase())
    } else {
        Err(PkiError::Fingerprint {
            fingerprint: fingerprint.chars().take(80).collect(),
        })
    }
}

/// All certificates of a PEM document, in order.
pub(crate) fn certs_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| PkiError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what,
            source: rustls_pki_types::pem::Error::NoItemsFound,
        });
    }
    Ok(certs)
}

pub(crate) fn first_cert_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<CertificateDer<'static>> {
    let mut certs = certs_from_pem(pem, what)?;
    Ok(certs.swap_remove(0))
}

pub(crate) fn private_key_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| PkiError::Pem { what, source })
}

pub(crate) fn parse_cert<'a>(
    der: &'a [u8],
    what: &'static str,
) -> Result<x509_parser::certificate::X509Certificate<'a>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|source| PkiError::Certificate { what, source })?;
    Ok(cert)
}

/// Hex SHA-256 (lower case) of the first certificate in a PEM document: the value pinned by join
/// tokens when the document is the CA certificate.
pub fn fingerprint_of_pem(cert_pem: &str) -> Result<String> {
    let der = first_cert_from_pem(cert_pem, "certificate")?;
    Ok(sha256_hex(&der))
}

/// Hex SHA-256 (lower case) of a DER certificate.
pub fn fingerprint_of_der(cert_der: &[u8]) -> String {
    sha256_hex(cert_der)
}

/// The subject common name of a DER certificate, if it has one that is valid UTF-8.
pub fn common_name_of_der(cert_der: &[u8]) -> Result<Option<String>> {
    let cert = parse_cert(cert_der, "peer")?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(name)
}

/// `cert_pem` (leaf, or a chain starting with the leaf) followed by the CA certificate, unless the
/// chain already includes it.
pub(crate) fn server_chain(cert_pem: &str, ca_pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let mut chain = certs_from_pem(cert_pem, "server certificate")?;
    let ca = first_cert_from_pem(ca_pem, "CA certificate")?;
    if !chain.contains(&ca) {
        chain.push(ca);
    }
    Ok(chain)
}

pub(crate) fn ca_roots(ca_pem: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem, "CA certificate")? {
        roots.add(cert).map_err(PkiError::Tls)?;
    }
    Ok(roots)
}

/// The verifier of the agent endpoint's optional client certificates: one presented must be
/// valid under a CA of `ca_pem` with the client-auth EKU; a client without one gets through.
pub(crate) fn optional_client_verifier(ca_pem: &str) -> Result<Arc<dyn ClientCertVerifier>> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(ca_roots(ca_pem)?), provider())
        .allow_unauthenticated()
        .build()
        .map_err(PkiError::Verifier)
}
