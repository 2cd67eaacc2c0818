//! Cluster PKI over real TCP + TLS on 127.0.0.1.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use vinfra_proto::pki::{
    self, client_config, fetch_pinned_ca, fingerprint_of_pem, generate_host_key_and_csr,
    peer_host_name_of_stream, server_config, server_config_with_optional_client_auth,
    server_name_for, ClusterCa, JoinToken, PkiError,
};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn server_names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

/// A host certificate `(cert_pem, key_pem)` for `host` signed by `ca`.
fn host_cert(ca: &ClusterCa, host: &str) -> Result<(String, String), PkiError> {
    let (key_pem, csr_pem) = generate_host_key_and_csr(host)?;
    let cert_pem = ca.sign_host_csr(&csr_pem, host)?;
    Ok((cert_pem, key_pem))
}

/// Accepts one connection, completes the handshake, reports the peer's host name, then echoes
/// one byte. The handle yields the handshake result.
async fn serve_once(
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<(String, JoinHandle<std::io::Result<Option<String>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        let name = peer_host_name_of_stream(&tls);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        tls.write_all(&byte).await?;
        tls.shutdown().await?;
        Ok(name)
    });
    Ok((addr, handle))
}

/// Connects, does the handshake, sends one byte and reads it back.
async fn ping(addr: &str, config: Arc<rustls::ClientConfig>) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let name = server_name_for(addr).map_err(std::io::Error::other)?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    tls.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await?;
    assert_eq!(&byte, b"x");
    Ok(())
}

fn agent_endpoint(ca: &ClusterCa) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let server = ca.issue_server_cert(&server_names())?;
    server_config_with_optional_client_auth(&server.cert_pem, &server.key_pem, ca.cert_pem())
}

#[tokio::test]
async fn mutual_tls_server_sees_host_name() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let (addr, server) = serve_once(agent_endpoint(&ca)?).await?;
    let (cert, key) = host_cert(&ca, "host-1")?;
    ping(&addr, client_config(ca.cert_pem(), Some((&cert, &key)))?).await?;
    assert_eq!(server.await??, Some("host-1".to_owned()));
    Ok(())
}

#[tokio::test]
async fn client_without_certificate_connects_anonymously() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let (addr, server) = serve_once(agent_endpoint(&ca)?).await?;
    ping(&addr, client_config(ca.cert_pem(), None)?).await?;
    assert_eq!(server.await??, None);
    Ok(())
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let other = ClusterCa::generate("other")?;
    let (addr, server) = serve_once(agent_endpoint(&ca)?).await?;
    let (cert, key) = host_cert(&other, "intruder")?;
    // The client trusts the real CA (so the server is accepted), but presents a foreign cert.
    let client = ping(&addr, client_config(ca.cert_pem(), Some((&cert, &key)))?).await;
    assert!(client.is_err(), "client handshake should fail");
    assert!(
        server.await?.is_err(),
        "server must refuse the foreign certificate"
    );
    Ok(())
}

#[tokio::test]
async fn server_certificate_as_client_certificate_is_refused() -> TestResult {
    // A certificate from the right CA but without the client-auth EKU is not a host identity.
    let ca = ClusterCa::generate("test")?;
    let (addr, server) = serve_once(agent_endpoint(&ca)?).await?;
    let stolen = ca.issue_server_cert(&["host-1".to_owned()])?;
    let config = client_config(ca.cert_pem(), Some((&stolen.cert_pem, &stolen.key_pem)))?;
    assert!(ping(&addr, config).await.is_err());
    assert!(server.await?.is_err());
    Ok(())
}

#[tokio::test]
async fn client_refuses_server_from_another_ca() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let other = ClusterCa::generate("other")?;
    let (addr, server) = serve_once(agent_endpoint(&other)?).await?;
    assert!(ping(&addr, client_config(ca.cert_pem(), None)?)
        .await
        .is_err());
    assert!(server.await?.is_err());
    Ok(())
}

#[tokio::test]
async fn rest_server_config_serves_verified_clients() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let server = ca.issue_server_cert(&server_names())?;
    let config = server_config(&server.cert_pem, &server.key_pem, ca.cert_pem())?;
    let (addr, handle) = serve_once(config).await?;
    let addr = addr.replace("127.0.0.1", "localhost");
    ping(&addr, client_config(ca.cert_pem(), None)?).await?;
    assert_eq!(handle.await??, None);
    Ok(())
}

#[tokio::test]
async fn fetch_pinned_ca_then_verified_connection() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let config = agent_endpoint(&ca)?;
    let (addr, first) = serve_once(config.clone()).await?;
    let got = fetch_pinned_ca(&addr, "127.0.0.1", &ca.fingerprint()).await?;
    assert_eq!(fingerprint_of_pem(&got)?, ca.fingerprint());
    // The discovery connection closes without sending anything.
    assert!(first.await?.is_err());

    // The fetched CA is enough for a verified connection to the same endpoint.
    let (addr, second) = serve_once(config).await?;
    ping(&addr, client_config(&got, None)?).await?;
    assert_eq!(second.await??, None);
    Ok(())
}

#[tokio::test]
async fn fetch_pinned_ca_accepts_upper_case_pin() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let (addr, _server) = serve_once(agent_endpoint(&ca)?).await?;
    let got = fetch_pinned_ca(&addr, "127.0.0.1", &ca.fingerprint().to_uppercase()).await?;
    assert_eq!(got, ca.cert_pem());
    Ok(())
}

#[tokio::test]
async fn fetch_pinned_ca_rejects_wrong_pin() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let other = ClusterCa::generate("other")?;
    let (addr, _server) = serve_once(agent_endpoint(&ca)?).await?;
    match fetch_pinned_ca(&addr, "127.0.0.1", &other.fingerprint()).await {
        Err(PkiError::PinMismatch { expected, got }) => {
            assert_eq!(expected, other.fingerprint());
            assert_eq!(got, ca.fingerprint());
        }
        other => panic!("expected PinMismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn fetch_pinned_ca_checks_server_name() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let (addr, _server) = serve_once(agent_endpoint(&ca)?).await?;
    let result = fetch_pinned_ca(&addr, "10.9.9.9", &ca.fingerprint()).await;
    assert!(
        matches!(result, Err(PkiError::ChainNotTrusted(_))),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn fetch_pinned_ca_refuses_a_pinned_leaf() -> TestResult {
    // Pinning the server's own (non-CA) certificate must not make it a trust anchor.
    let ca = ClusterCa::generate("test")?;
    let server = ca.issue_server_cert(&server_names())?;
    let config =
        server_config_with_optional_client_auth(&server.cert_pem, &server.key_pem, ca.cert_pem())?;
    let (addr, _server) = serve_once(config).await?;
    let pin = fingerprint_of_pem(&server.cert_pem)?;
    let result = fetch_pinned_ca(&addr, "127.0.0.1", &pin).await;
    assert!(matches!(result, Err(PkiError::NotCa { .. })), "{result:?}");
    Ok(())
}

#[test]
fn sign_host_csr_uses_the_given_host_name() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let (_key, csr) = generate_host_key_and_csr("evil-console")?;
    let cert_pem = ca.sign_host_csr(&csr, "host-7")?;
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
        .map(|d: rustls_pki_types::CertificateDer<'static>| d)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
    let cns: Vec<_> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .collect();
    assert_eq!(cns, vec!["host-7"]);
    assert_eq!(cert.subject().iter().count(), 1, "only the CN is kept");
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage()?.ok_or("no EKU")?.value;
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(pki::common_name_of_der(&der)?.as_deref(), Some("host-7"));
    Ok(())
}

#[test]
fn sign_host_csr_refuses_bad_input() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let (_key, csr) = generate_host_key_and_csr("host-1")?;
    assert!(matches!(
        ca.sign_host_csr(&csr, "../etc"),
        Err(PkiError::HostName(_))
    ));
    assert!(matches!(
        ca.sign_host_csr("", "host-1"),
        Err(PkiError::Csr(_))
    ));
    assert!(matches!(
        ca.sign_host_csr(ca.cert_pem(), "host-1"),
        Err(PkiError::Csr(_))
    ));
    Ok(())
}

#[test]
fn ca_round_trips_through_pem() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let loaded = ClusterCa::from_pem(ca.cert_pem(), ca.key_pem())?;
    assert_eq!(loaded.fingerprint(), ca.fingerprint());
    assert_eq!(fingerprint_of_pem(ca.cert_pem())?, ca.fingerprint());
    // A certificate signed by the reloaded CA verifies under the original.
    let (key_pem, csr) = generate_host_key_and_csr("host-2")?;
    let cert = loaded.sign_host_csr(&csr, "host-2")?;
    client_config(ca.cert_pem(), Some((&cert, &key_pem)))?;

    let other = ClusterCa::generate("other")?;
    assert!(matches!(
        ClusterCa::from_pem(ca.cert_pem(), other.key_pem()),
        Err(PkiError::KeyMismatch { .. })
    ));
    let leaf = ca.issue_server_cert(&server_names())?;
    assert!(matches!(
        ClusterCa::from_pem(&leaf.cert_pem, &leaf.key_pem),
        Err(PkiError::NotCa { .. })
    ));
    assert!(ClusterCa::from_pem("garbage", ca.key_pem()).is_err());
    Ok(())
}

#[test]
fn issue_server_cert_refuses_bad_names() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    assert!(matches!(
        ca.issue_server_cert(&[]),
        Err(PkiError::NoServerNames)
    ));
    assert!(matches!(
        ca.issue_server_cert(&["bad name!".to_owned()]),
        Err(PkiError::ServerName { .. })
    ));
    Ok(())
}

#[test]
fn join_token_round_trip() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let token = JoinToken::generate(&ca.fingerprint())?;
    let text = token.to_string();
    assert!(text.starts_with("vinfra-join."));
    assert_eq!(text.len(), "vinfra-join.".len() + 64 + 1 + 64);
    let parsed = JoinToken::parse(&text)?;
    assert_eq!(parsed, token);
    assert_eq!(parsed.ca_fingerprint, ca.fingerprint());
    assert_eq!(parsed.secret_hash(), pki::token_hash(&token.secret));
    assert_eq!(text.parse::<JoinToken>()?, token);
    assert_eq!(JoinToken::parse(&format!("  {text}\n"))?, token);
    assert_ne!(JoinToken::generate(&ca.fingerprint())?.secret, token.secret);
    assert!(!format!("{token:?}").contains(&token.secret));
    assert!(JoinToken::generate("nope").is_err());
    Ok(())
}

#[test]
fn join_token_parse_rejects_garbage() {
    let hex64 = "a".repeat(64);
    let bad = [
        String::new(),
        "   ".to_owned(),
        "garbage".to_owned(),
        format!("vinfra-joi.{hex64}.{hex64}"),
        format!("VINFRA-JOIN.{hex64}.{hex64}"),
        format!("vinfra-join.{hex64}"),
        format!("vinfra-join.{}.{hex64}", "a".repeat(63)),
        format!("vinfra-join.{}.{hex64}", "a".repeat(65)),
        format!("vinfra-join.{hex64}.{}", "a".repeat(63)),
        format!("vinfra-join.{hex64}.{}", "a".repeat(65)),
        format!("vinfra-join.{hex64}.{hex64}."),
        format!("vinfra-join.{hex64}.{hex64}.{hex64}"),
        format!("vinfra-join..{hex64}.{hex64}"),
        format!(".vinfra-join.{hex64}.{hex64}"),
        format!("vinfra-join.{}.{hex64}", "g".repeat(64)),
        format!("vinfra-join.{hex64}.{}z", "a".repeat(63)),
        format!("vinfra-join.{hex64}.{}", "é".repeat(32)),
        format!("vinfra-join.{hex64} .{hex64}"),
    ];
    for text in bad {
        match JoinToken::parse(&text) {
            Err(PkiError::JoinToken { .. }) => {}
            other => panic!("{text:?} should be refused, got {other:?}"),
        }
    }
}

#[test]
fn api_tokens() {
    let a = pki::generate_api_token();
    let b = pki::generate_api_token();
    assert_ne!(a, b);
    assert!(a.starts_with("vinfra_"));
    assert_eq!(a.len(), "vinfra_".len() + 64);
    let hash = pki::token_hash(&a);
    assert_eq!(hash.len(), 64);
    assert!(pki::verify_token(&a, &hash));
    assert!(!pki::verify_token(&b, &hash));
    assert!(pki::constant_time_eq(b"abc", b"abc"));
    assert!(!pki::constant_time_eq(b"abc", b"abd"));
    assert!(!pki::constant_time_eq(b"abc", b"abcd"));
}

#[test]
fn server_names_for_addresses() -> TestResult {
    use rustls_pki_types::ServerName;
    let ip = |s: &str| -> Result<ServerName<'static>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ServerName::IpAddress(s.parse::<std::net::IpAddr>()?.into()))
    };
    assert_eq!(server_name_for("127.0.0.1:7443")?, ip("127.0.0.1")?);
    assert_eq!(server_name_for("10.0.0.1")?, ip("10.0.0.1")?);
    assert_eq!(server_name_for("[::1]:7443")?, ip("::1")?);
    assert_eq!(server_name_for("::1")?, ip("::1")?);
    assert_eq!(
        server_name_for("console.example:7443")?,
        ServerName::try_from("console.example")?
    );
    assert_eq!(
        server_name_for("localhost")?,
        ServerName::try_from("localhost")?
    );
    assert!(server_name_for("bad name:1").is_err());
    Ok(())
}

#[test]
fn sign_host_csr_ignores_everything_but_the_public_key() -> TestResult {
    let ca = ClusterCa::generate("test")?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["console.example".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "console");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "evil");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let csr = params.serialize_request(&key)?.pem()?;

    let cert_pem = ca.sign_host_csr(&csr, "host-3")?;
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
        .map(|d: rustls_pki_types::CertificateDer<'static>| d)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
    assert_eq!(cert.subject().to_string(), "CN=host-3");
    assert!(!cert.is_ca());
    assert!(cert.subject_alternative_name()?.is_none());
    let eku = cert.extended_key_usage()?.ok_or("no EKU")?.value;
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    Ok(())
}
