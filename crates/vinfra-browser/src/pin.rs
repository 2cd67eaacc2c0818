//! The one certificate a lab's browser accepts: the console's, as the cluster CA vouches for it.
//!
//! Chromium trusts the CAs of the system and of an NSS database in the user's home; a lab's CA is
//! in neither, and adding it would mean `certutil` and a home of the browser's own. Instead the
//! browser is told to accept the public key of the console's certificate alone
//! (`--ignore-certificate-errors-spki-list=<base64 SHA-256 of its SubjectPublicKeyInfo>`, which
//! Chromium honours with `--user-data-dir`): the key is read from a TLS handshake with the
//! console that is verified against the cluster CA, so only a certificate the CA issued is
//! pinned, and any other site's certificate errors still stop the browser.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why the console's key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The URL is not `https://HOST:PORT…`.
    #[error("not an https://HOST:PORT URL: {0}")]
    Url(String),
    /// The CA does not make a TLS client.
    #[error("the CA does not make a TLS client configuration")]
    Ca(#[source] vinfra_proto::pki::PkiError),
    /// The host is not a TLS server name.
    #[error("'{0}' is not a TLS server name")]
    Name(String),
    /// The connection or the handshake failed (a certificate the CA did not issue among them).
    #[error("TLS handshake with {addr} failed")]
    Handshake {
        /// Where.
        addr: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The handshake ended without a certificate.
    #[error("{0} presented no certificate")]
    NoCertificate(String),
    /// The certificate is not X.509 DER.
    #[error("the certificate of {0} cannot be parsed")]
    Parse(String),
}

/// The base64 SHA-256 of the SubjectPublicKeyInfo of the certificate the HTTPS server at `url`
/// presents, after verifying it against `ca_pem` (the form
/// `--ignore-certificate-errors-spki-list` takes).
pub fn server_spki_sha256(url: &str, ca_pem: &str) -> Result<String, PinError> {
    let authority = url
        .strip_prefix("https://")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|a| a.contains(':'))
        .ok_or_else(|| PinError::Url(url.to_string()))?;
    let host = authority
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(authority);
    let config = vinfra_proto::pki::client_config(ca_pem, None).map_err(PinError::Ca)?;
    let name = ServerName::try_from(host.to_string()).map_err(|_| PinError::Name(host.into()))?;
    let handshake = |source| PinError::Handshake {
        addr: authority.to_string(),
        source,
    };
    let mut conn = rustls::ClientConnection::new(Arc::clone(&config), name)
        .map_err(|e| handshake(std::io::Error::other(e)))?;
    let mut sock = TcpStream::connect(authority).map_err(handshake)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(handshake)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(handshake)?;
    }
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| PinError::NoCertificate(authority.into()))?
        .clone();
    // A clean close, so that the server logs no broken handshake.
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = sock.flush();
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|_| PinError::Parse(authority.into()))?;
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}
