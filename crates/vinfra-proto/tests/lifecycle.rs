//! Certificate lifecycle in the cluster PKI: configured validity, when renewal is due, the
//! server certificate replaced while serving, CA bundles (a CA rotation), and the checks an
//! agent makes of a renewed certificate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vinfra_proto::pki::{
    self, ca_bundle, cert_info_of_der, cert_info_of_pem, check_host_cert, client_config,
    generate_host_key_and_csr, server_config_resolving,
    server_config_with_optional_client_auth_resolving, server_name_for, ClusterCa, PkiError,
    ServerCertSlot, RENEW_AT,
};

fn names() -> Vec<String> {
    vec!["127.0.0.1".to_owned()]
}

fn host_cert(ca: &ClusterCa, host: &str) -> Result<(String, String), PkiError> {
    let (key_pem, csr_pem) = generate_host_key_and_csr(host)?;
    Ok((ca.sign_host_csr(&csr_pem, host)?, key_pem))
}

fn near(a: SystemTime, b: SystemTime, slack: Duration) -> bool {
    let d = a.duration_since(b).or_else(|_| b.duration_since(a));
    d.is_ok_and(|d| d <= slack)
}

#[test]
fn validity_is_configurable_within_bounds_and_renewal_is_due_at_two_thirds() -> TestResult {
    let ca = ClusterCa::generate("t")?;
    let default = cert_info_of_pem(&host_cert(&ca, "h")?.0)?;
    let year = default.not_after.duration_since(default.issued_at())?;
    assert!(near(
        SystemTime::UNIX_EPOCH + year,
        SystemTime::UNIX_EPOCH + pki::HOST_CERT_VALIDITY,
        Duration::from_secs(2)
    ));

    for (host, server) in [
        (Duration::from_secs(5), Duration::from_secs(60)),
        (
            Duration::from_secs(60),
            Duration::from_secs(11 * 365 * 86_400),
        ),
    ] {
        let err = ClusterCa::generate("t")?
            .with_validity(host, server)
            .expect_err("out of range");
        assert!(matches!(err, PkiError::Validity { .. }), "{err}");
    }

    let ca = ca.with_validity(Duration::from_secs(60), Duration::from_secs(90))?;
    let now = SystemTime::now();
    let host = cert_info_of_pem(&host_cert(&ca, "h")?.0)?;
    assert!(near(host.issued_at(), now, Duration::from_secs(2)));
    assert!(near(
        host.not_after,
        now + Duration::from_secs(60),
        Duration::from_secs(2)
    ));
    // Backdated for clock skew, but the renewal counts from the issue.
    assert!(host.not_before + pki::BACKDATE <= host.issued_at() + Duration::from_secs(1));
    assert!(near(
        host.renewal_due(RENEW_AT),
        now + Duration::from_secs(40),
        Duration::from_secs(2)
    ));
    assert!(host.until_renewal() <= Duration::from_secs(40));
    assert!(host.until_renewal() >= Duration::from_secs(37));
    assert!(host.retry_after() >= Duration::from_secs(5));
    assert_eq!(host.common_name.as_deref(), Some("h"));

    let server = cert_info_of_pem(&ca.issue_server_cert(&names())?.cert_pem)?;
    assert!(near(
        server.not_after,
        now + Duration::from_secs(90),
        Duration::from_secs(2)
    ));
    Ok(())
}

/// Serves connections with `config` forever: each completes the handshake and echoes a byte.
async fn serve(config: Arc<rustls::ServerConfig>) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut byte = [0u8; 1];
                if tls.read_exact(&mut byte).await.is_ok() {
                    let _ = tls.write_all(&byte).await;
                }
            });
        }
    });
    Ok(addr)
}

/// Connects, exchanges a byte, and returns the serial of the server's certificate.
async fn served_serial(addr: &str, config: Arc<rustls::ClientConfig>) -> TestResult<String> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name_for(addr)?, tcp)
        .await?;
    tls.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate")?[0]
        .clone();
    Ok(cert_info_of_der(&leaf)?.serial)
}

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test]
async fn a_replaced_server_certificate_is_served_from_the_next_handshake() -> TestResult {
    let ca = ClusterCa::generate("t")?;
    let first = ca.issue_server_cert(&names())?;
    let slot = ServerCertSlot::new(&first.cert_pem, &first.key_pem, ca.cert_pem())?;
    let api = serve(server_config_resolving(slot.clone())?).await?;
    let agents = serve(server_config_with_optional_client_auth_resolving(
        slot.clone(),
        ca.cert_pem(),
    )?)
    .await?;
    // A new configuration for every connection: no session resumption (a resumed session
    // shows the certificate of the session it resumes).
    let client = || client_config(ca.cert_pem(), None);
    let first_serial = cert_info_of_pem(&first.cert_pem)?.serial;
    assert_eq!(served_serial(&api, client()?).await?, first_serial);
    assert_eq!(served_serial(&agents, client()?).await?, first_serial);

    let second = ca.issue_server_cert(&names())?;
    // A key that is not the certificate's is refused and changes nothing.
    let err = slot
        .replace(&second.cert_pem, &first.key_pem, ca.cert_pem())
        .expect_err("mismatched key");
    assert!(matches!(err, PkiError::Tls(_)), "{err}");
    assert_eq!(served_serial(&api, client()?).await?, first_serial);

    slot.replace(&second.cert_pem, &second.key_pem, ca.cert_pem())?;
    let second_serial = cert_info_of_pem(&second.cert_pem)?.serial;
    assert_ne!(second_serial, first_serial);
    assert_eq!(served_serial(&api, client()?).await?, second_serial);
    assert_eq!(served_serial(&agents, client()?).await?, second_serial);
    Ok(())
}

#[tokio::test]
async fn a_ca_bundle_lets_hosts_of_both_cas_in_during_a_rotation() -> TestResult {
    let old = ClusterCa::generate("old")?;
    let new = ClusterCa::generate("new")?;
    let bundle = ca_bundle(&[new.cert_pem(), old.cert_pem(), new.cert_pem()])?;
    assert_eq!(
        pki::bundle_fingerprints(&bundle)?,
        vec![new.fingerprint(), old.fingerprint()],
        "each CA once, in order"
    );
    assert!(ca_bundle(&["not a certificate"]).is_err());

    let server = new.issue_server_cert(&names())?;
    let slot = ServerCertSlot::new(&server.cert_pem, &server.key_pem, new.cert_pem())?;
    let only_new = serve(server_config_with_optional_client_auth_resolving(
        slot.clone(),
        new.cert_pem(),
    )?)
    .await?;
    let both = serve(server_config_with_optional_client_auth_resolving(
        slot, &bundle,
    )?)
    .await?;

    // A host of the old CA that got the bundle (trusts the new server certificate).
    let (cert, key) = host_cert(&old, "h1")?;
    let client = client_config(&bundle, Some((&cert, &key)))?;
    assert!(served_serial(&both, client.clone()).await.is_ok());
    // Without the old CA in the console's bundle its certificate is refused.
    assert!(served_serial(&only_new, client).await.is_err());
    // A host that has only the old CA does not trust the new server certificate.
    let client = client_config(old.cert_pem(), Some((&cert, &key)))?;
    assert!(served_serial(&both, client).await.is_err());

    // The certificate an agent gets back is checked before it is stored.
    let (key_pem, csr) = generate_host_key_and_csr("h1")?;
    let renewed = new.sign_host_csr(&csr, "h1")?;
    let info = check_host_cert(&renewed, &key_pem, &bundle, "h1")?;
    assert_eq!(info.issuer_hash, pki::subject_hash_of_pem(new.cert_pem())?);
    let der = rustls_pki_types::CertificateDer::from_pem_slice(renewed.as_bytes())?;
    assert!(pki::issued_by(&der, new.cert_pem()));
    assert!(!pki::issued_by(&der, old.cert_pem()));
    assert!(matches!(
        check_host_cert(&renewed, &key_pem, old.cert_pem(), "h1"),
        Err(PkiError::NotIssuedByCa { .. })
    ));
    assert!(matches!(
        check_host_cert(&renewed, &key, &bundle, "h1"),
        Err(PkiError::KeyMismatch { .. })
    ));
    assert!(matches!(
        check_host_cert(&renewed, &key_pem, &bundle, "h2"),
        Err(PkiError::CertHost { .. })
    ));
    Ok(())
}
