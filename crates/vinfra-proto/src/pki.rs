//! The cluster PKI: the cluster CA, certificates for the console and the hosts, join and API tokens,
//! and the rustls configurations both ends use.
//!
//! # Who holds what
//! - The console creates a [`ClusterCa`] on first start (ECDSA P-256, valid 10 years) and keeps its
//!   PEM in the store. It issues itself server certificates with [`ClusterCa::issue_server_cert`]
//!   (one for the REST API, one for the agent endpoint; IP addresses become IP SANs).
//! - A host's identity is a client certificate whose subject common name is its host name, signed by
//!   [`ClusterCa::sign_host_csr`]. The console never trusts a host name from anywhere else than a
//!   verified certificate: [`peer_host_name`].
//!
//! # Joining (see docs/design.md, "Joining")
//! 1. The console hands out a [`JoinToken`] (`vinfra-join.<CA fingerprint>.<secret>`) and stores
//!    only [`JoinToken::secret_hash`].
//! 2. The agent calls [`fetch_pinned_ca`] with the token's fingerprint: it reads the CA certificate
//!    from the agent endpoint's chain and accepts it only if its SHA-256 matches the pin.
//! 3. The agent makes its key and CSR with [`generate_host_key_and_csr`], connects with
//!    [`client_config`]`(ca, None)` and sends `Join`; the console signs the CSR.
//! 4. The agent reconnects with [`client_config`]`(ca, Some((cert, key)))`.
//!
//! # TLS
//! Every configuration is built with the ring crypto provider explicitly, never a process-wide
//! default. The agent endpoint speaks TLS 1.3 only; the REST API also allows TLS 1.2. Servers send
//! the chain `[leaf, CA]` so that a joining agent can find the CA to compare with its pin. Clients
//! trust only the cluster CA, never the system roots.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::pki_base::{
    ca_roots, certs_from_pem, first_cert_from_pem, is_hex_256, normalize_fingerprint,
    optional_client_verifier, parse_cert, pem_encode, private_key_from_pem, provider,
    random_hex_32, random_serial, server_chain, sha256_hex, validity,
};
pub use crate::pki_base::{
    common_name_of_der, fingerprint_of_der, fingerprint_of_pem, PkiError, Result, API_TOKEN_PREFIX,
    BACKDATE, CA_VALIDITY, FETCH_CA_TIMEOUT, HOST_CERT_VALIDITY, JOIN_TOKEN_PREFIX,
    MIN_CERT_VALIDITY, RENEW_AT, SERVER_CERT_VALIDITY,
};
pub use crate::pki_lifecycle::{
    bundle_fingerprints, ca_bundle, cert_info_of_der, cert_info_of_pem, check_host_cert, issued_by,
    peer_cert_der, peer_cert_info, server_config_resolving,
    server_config_with_optional_client_auth_resolving, subject_hash_of_pem, CertInfo,
    ServerCertSlot,
};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (leaf only, PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The cluster certificate authority. Lives in the console only.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// Validity of the host certificates it signs ([`ClusterCa::with_validity`]).
    host_validity: Duration,
    /// Validity of the server certificates it issues.
    server_validity: Duration,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Creates a new CA: ECDSA P-256, subject `vinfra cluster CA <cluster_name>`, valid
    /// [`CA_VALIDITY`], allowed to sign end-entity certificates only (path length 0).
    pub fn generate(cluster_name: &str) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Generate {
                what: "CA key",
                source,
            }
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let cn = if cluster_name.trim().is_empty() {
            "vinfra cluster CA".to_owned()
        } else {
            format!("vinfra cluster CA {}", cluster_name.trim())
        };
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "vinfra");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        validity(&mut params, CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "CA certificate",
                source,
            })?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            host_validity: HOST_CERT_VALIDITY,
            server_validity: SERVER_CERT_VALIDITY,
        })
    }

    /// Loads a CA saved with [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem). Checks
    /// that the certificate is a CA certificate and that the key is its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let cert_der = first_cert_from_pem(cert_pem, "CA certificate")?;
        let key =
            KeyPair::from_pem(key_pem).map_err(|source| PkiError::Key { what: "CA", source })?;
        {
            let cert = parse_cert(&cert_der, "CA")?;
            if !cert.is_ca() {
                return Err(PkiError::NotCa {
                    fingerprint: sha256_hex(&cert_der),
                });
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(PkiError::KeyMismatch { what: "CA" });
            }
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|source| PkiError::Key { what: "CA", source })?;
        Ok(Self {
            cert_pem: pem_encode("CERTIFICATE", &cert_der),
            cert_der,
            key_pem: key_pem.to_owned(),
            issuer,
            host_validity: HOST_CERT_VALIDITY,
            server_validity: SERVER_CERT_VALIDITY,
        })
    }

    /// The same CA, signing host certificates valid `host` and issuing server certificates valid
    /// `server` (instead of [`HOST_CERT_VALIDITY`] and [`SERVER_CERT_VALIDITY`]). Short
    /// validities are for tests of renewal; each is at least [`MIN_CERT_VALIDITY`].
    pub fn with_validity(mut self, host: Duration, server: Duration) -> Result<Self> {
        for (what, validity) in [("host", host), ("server", server)] {
            if validity < MIN_CERT_VALIDITY || validity > CA_VALIDITY {
                return Err(PkiError::Validity { what, validity });
            }
        }
        self.host_validity = host;
        self.server_validity = server;
        Ok(self)
    }

    /// How long the host certificates it signs are valid.
    pub fn host_validity(&self) -> Duration {
        self.host_validity
    }

    /// How long the server certificates it issues are valid.
    pub fn server_validity(&self) -> Duration {
        self.server_validity
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// What signs certificates in the CA's name.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA private key, PKCS#8 PEM. Secret: store it where only the console can read it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Hex SHA-256 (lower case) of the CA certificate's DER: the pin in join tokens.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// Issues a server certificate (fresh ECDSA P-256 key, server-auth EKU, valid
    /// [`SERVER_CERT_VALIDITY`] unless [`with_validity`](Self::with_validity) said otherwise) for `names`: each is an IP address (becomes an IP SAN) or a DNS
    /// name. List every name clients dial, e.g. `["localhost", "127.0.0.1", "10.0.0.1"]`.
    pub fn issue_server_cert(&self, names: &[String]) -> Result<IssuedCert> {
        let first = names.first().ok_or(PkiError::NoServerNames)?;
        for name in names {
            if name.parse::<IpAddr>().is_err() && ServerName::try_from(name.as_str()).is_err() {
                return Err(PkiError::ServerName { name: name.clone() });
            }
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Generate {
                what: "server key",
                source,
            }
        })?;
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(|_| PkiError::ServerName {
                name: first.clone(),
            })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity(&mut params, self.server_validity);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: "server certificate",
                source,
            })?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a host's client certificate from its CSR. Only the CSR's public key is used (its
    /// signature is checked, which proves the requester holds the key); the subject is exactly
    /// `CN=<host_name>` whatever the CSR asked for, the EKU is client-auth, validity
    /// [`HOST_CERT_VALIDITY`] (unless [`with_validity`](Self::with_validity) said otherwise). `host_name` must be a valid vinfra name. Returns the certificate PEM.
    pub fn sign_host_csr(&self, csr_pem: &str, host_name: &str) -> Result<String> {
        vinfra_types::name::validate_name(host_name).map_err(PkiError::HostName)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::Csr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity(&mut params, self.host_validity);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: "host certificate",
                source,
            })?;
        Ok(cert.pem())
    }
}

/// Agent side of joining: a fresh ECDSA P-256 key and a CSR with subject `CN=<host_name>`.
/// Returns `(key_pem, csr_pem)`; the key never leaves the host.
pub fn generate_host_key_and_csr(host_name: &str) -> Result<(String, String)> {
    vinfra_types::name::validate_name(host_name).map_err(PkiError::HostName)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
        PkiError::Generate {
            what: "host key",
            source,
        }
    })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host_name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|source| PkiError::Generate {
            what: "CSR",
            source,
        })?;
    Ok((key.serialize_pem(), csr))
}

/// A one-time join token: `vinfra-join.<CA fingerprint, 64 hex>.<secret, 64 hex>`.
///
/// The fingerprint lets a new host authenticate the console; the secret authenticates the host.
/// `Debug` hides the secret; `Display` prints the whole token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA certificate (lower case).
    pub ca_fingerprint: String,
    /// 32 random bytes, hex (lower case).
    pub secret: String,
}

impl JoinToken {
    /// A new token pinning `ca_fingerprint` (see [`ClusterCa::fingerprint`]) with a fresh secret.
    pub fn generate(ca_fingerprint: &str) -> Result<Self> {
        Ok(Self {
            ca_fingerprint: normalize_fingerprint(ca_fingerprint)?,
            secret: random_hex_32(),
        })
    }

    /// Parses a token. Surrounding whitespace is ignored and hex is accepted in either case (the
    /// result is lower case); anything else that differs from the format is refused.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PkiError::JoinToken { reason: "empty" });
        }
        let mut parts = text.split('.');
        let (Some(prefix), Some(fingerprint), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PkiError::JoinToken {
                reason: "it must have exactly three dot-separated parts",
            });
        };
        if prefix != JOIN_TOKEN_PREFIX {
            return Err(PkiError::JoinToken {
                reason: "it does not start with 'vinfra-join.'",
            });
        }
        if !is_hex_256(fingerprint) {
            return Err(PkiError::JoinToken {
                reason: "the CA fingerprint is not 64 hex characters",
            });
        }
        if !is_hex_256(secret) {
            return Err(PkiError::JoinToken {
                reason: "the secret is not 64 hex characters",
            });
        }
        Ok(Self {
            ca_fingerprint: fingerprint.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    /// Hex SHA-256 of the secret: what the console stores and looks tokens up by.
    pub fn secret_hash(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{JOIN_TOKEN_PREFIX}.{}.{}",
            self.ca_fingerprint, self.secret
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// A new REST API bearer token: `vinfra_` followed by 32 random bytes in hex.
pub fn generate_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", random_hex_32())
}

/// Hex SHA-256 of a token (API token or join secret): what is stored instead of the token.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Compares two byte strings in time that depends only on their lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Checks a presented token against a stored [`token_hash`], in constant time.
pub fn verify_token(token: &str, stored_hash: &str) -> bool {
    constant_time_eq(token_hash(token).as_bytes(), stored_hash.as_bytes())
}

/// Server configuration for the console's agent endpoint (TLS 1.3 only).
///
/// A client certificate is requested but optional: when one is presented it must be valid under
/// `ca_pem` with the client-auth EKU, or the handshake fails; a client without one connects
/// anyway (it may only `Join`). After the handshake, [`peer_host_name`] tells which host it is.
/// The server sends `[cert, CA]` so that joining agents can check the CA against their pin.
pub fn server_config_with_optional_client_auth(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(PkiError::Tls)?
        .with_client_cert_verifier(optional_client_verifier(ca_pem)?)
        .with_single_cert(
            server_chain(cert_pem, ca_pem)?,
            private_key_from_pem(key_pem, "server key")?,
        )
        .map_err(PkiError::Tls)?;
    Ok(Arc::new(config))
}

/// Server configuration for the REST API: no client certificates (clients use bearer tokens),
/// TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`. Sends `[cert, CA]`.
pub fn server_config(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?
        .with_no_client_auth()
        .with_single_cert(
            server_chain(cert_pem, ca_pem)?,
            private_key_from_pem(key_pem, "server key")?,
        )
        .map_err(PkiError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client configuration that trusts only the cluster CA (never the system roots), optionally
/// presenting a host certificate `(cert_pem, key_pem)`. Used by agents (with their certificate
/// once joined) and by REST clients (without). Server names are checked as usual: dial a name or
/// IP the server certificate lists, see [`server_name_for`].
pub fn client_config(ca_pem: &str, client_cert: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?
        .with_root_certificates(ca_roots(ca_pem)?);
    let config = match client_cert {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                certs_from_pem(cert_pem, "host certificate")?,
                private_key_from_pem(key_pem, "host key")?,
            )
            .map_err(PkiError::Tls)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The host name of a connected agent: the common name of its client certificate, which rustls
/// verified against the cluster CA during the handshake. `None` when the client presented no
/// certificate (a joining host) or the name is not a valid vinfra name. Call it after the
/// handshake has completed (e.g. after `tokio_rustls::TlsAcceptor::accept` returned).
pub fn peer_host_name(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    let name = common_name_of_der(leaf).ok()??;
    vinfra_types::name::validate_name(&name).ok()?;
    Some(name)
}

/// [`peer_host_name`] for an accepted `tokio_rustls` server stream.
pub fn peer_host_name_of_stream<IO>(
    stream: &tokio_rustls::server::TlsStream<IO>,
) -> Option<String> {
    peer_host_name(stream.get_ref().1)
}

/// The host part of `addr` (`host:port`, `[v6]:port`, `host`, `v6`), unbracketed.
fn host_part(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    if addr.parse::<IpAddr>().is_ok() {
        return addr;
    }
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

/// The TLS server name to use when dialling `addr` (`host:port`): the IP address itself when the
/// host part is an IP (the certificate then needs that IP SAN), else the DNS name.
pub fn server_name_for(addr: &str) -> Result<ServerName<'static>> {
    let host = host_part(addr.trim());
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|_| PkiError::ServerName {
        name: host.to_owned(),
    })
}

/// Accepts any server certificate chain, while still checking the handshake signatures (so the
/// server proves it holds the leaf's key).
///
/// Used only by [`fetch_pinned_ca`]. This is safe there because over that connection the client
/// sends nothing and reads nothing but the certificate chain, and the chain is trusted only after
/// the CA in it matched the pinned fingerprint from the join token (and the leaf verified under that
/// CA for the server name).
#[derive(Debug)]
struct ReadChainOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ReadChainOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Pinned CA discovery (joining, step 2): connects to `addr` (`host:port`), reads the server's
/// certificate chain without trusting it, and returns the PEM of the certificate in the chain whose
/// SHA-256 is `expected_fingerprint`, after checking that it is a CA certificate and that the
/// server's certificate is valid under it for `server_name` (a DNS name or an IP address). Nothing
/// is sent over the connection. Gives up after [`FETCH_CA_TIMEOUT`].
///
/// Fails with [`PkiError::PinMismatch`] when no certificate of the chain has the pinned fingerprint.
pub async fn fetch_pinned_ca(
    addr: &str,
    server_name: &str,
    expected_fingerprint: &str,
) -> Result<String> {
    let expected = normalize_fingerprint(expected_fingerprint)?;
    let name = match server_name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => {
            ServerName::try_from(server_name.to_owned()).map_err(|_| PkiError::ServerName {
                name: server_name.to_owned(),
            })?
        }
    };
    let provider = provider();
    let verifier = Arc::new(ReadChainOnly {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        connector.connect(name.clone(), tcp).await
    };
    let mut stream = tokio::time::timeout(FETCH_CA_TIMEOUT, connect)
        .await
        .map_err(|_| PkiError::Timeout {
            addr: addr.to_owned(),
        })?
        .map_err(|source| PkiError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let chain: Vec<CertificateDer<'static>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    // Best effort: the chain is all we wanted from this connection.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    drop(stream);

    let (leaf, intermediates) =
        chain
            .split_first()
            .ok_or_else(|| PkiError::NoServerCertificate {
                addr: addr.to_owned(),
            })?;
    let Some(ca) = chain.iter().find(|c| sha256_hex(c) == expected) else {
        let got = chain.last().map(|c| sha256_hex(c)).unwrap_or_default();
        return Err(PkiError::PinMismatch { expected, got });
    };
    if !parse_cert(ca, "CA")?.is_ca() {
        return Err(PkiError::NotCa {
            fingerprint: expected,
        });
    }

    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(PkiError::ChainNotTrusted)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(PkiError::Verifier)?;
    webpki
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map_err(PkiError::ChainNotTrusted)?;
    Ok(pem_encode("CERTIFICATE", ca))
}
