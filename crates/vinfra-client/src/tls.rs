//! The TLS configuration of the client: rustls with the ring provider, trusting only the cluster
//! CA.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::RestError;

/// A configuration that trusts only the certificates in `ca_pem`.
pub fn trusting(ca_pem: &[u8]) -> Result<rustls::ClientConfig, RestError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(RestError::CaPem)?;
        roots.add(cert).map_err(RestError::CaCertificate)?;
    }
    if roots.is_empty() {
        return Err(RestError::CaEmpty);
    }
    with_roots(roots)
}

/// A configuration that trusts nothing (reqwest sets up TLS even for plain HTTP).
pub fn trusting_nothing() -> Result<rustls::ClientConfig, RestError> {
    with_roots(rustls::RootCertStore::empty())
}

fn with_roots(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, RestError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(RestError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
