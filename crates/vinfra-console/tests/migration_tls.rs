//! Encrypted migrations through the console: each migration gets credentials of its own, the
//! two ends' matching each other and signed by the cluster CA; an agent that cannot encrypt is
//! refused rather than sent plain text; the setting turns it off.

mod common;

use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * GIB,
};

fn common_name(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    vinfra_proto::pki::common_name_of_der(&der)
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn each_migration_gets_credentials_of_its_own_and_plain_text_is_never_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let src = FakeAgent::join_and_connect(&c, "src", HOST16).await;
    let dst = FakeAgent::join_and_connect(&c, "dst", HOST16).await;

    // Encrypted by default: the destination gets a server certificate and the one source
    // subject it accepts; the source gets a client certificate and the name the destination
    // must prove. Both chain to the cluster CA.
    create_vm_on(&c, "a", "src", GIB).await;
    let r = c.call("POST", "/api/v1/vms/a/migrate", None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_migration(&c, "a").await;
    assert_eq!(done["phase"], "completed", "{done:?}");
    assert_eq!(done["encrypted"], true, "{done:?}");
    let incoming = dst.state.lock().unwrap().incoming_tls.clone();
    let outgoing = src.state.lock().unwrap().outgoing_tls.clone();
    let (Some(d), Some(s)) = (&incoming[0], &outgoing[0]) else {
        panic!("no credentials: {incoming:?} {outgoing:?}");
    };
    assert_eq!(d.ca_pem, c.running.ca_pem);
    assert_eq!(s.ca_pem, c.running.ca_pem);
    assert_eq!(d.peer, format!("CN={}", common_name(&s.cert_pem)));
    assert_eq!(s.peer, common_name(&d.cert_pem));
    assert_ne!(d.key_pem, s.key_pem);
    // Keys never appear in what the agents log of a command.
    let shown = format!("{d:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");

    // The way back: new credentials, nothing shared with the first migration's.
    let r = c
        .call("POST", "/api/v1/vms/a/migrate", Some(r#"{"to":"src"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(wait_migration(&c, "a").await["phase"], "completed");
    let back_in = src.state.lock().unwrap().incoming_tls[0].clone().unwrap();
    assert_ne!(back_in.peer, d.peer);
    assert_ne!(back_in.cert_pem, d.cert_pem);

    // A destination that cannot receive encrypted: refused, the VM stays where it runs, the
    // source never sends.
    let old = FakeAgent::join_and_connect(&c, "old", HOST16).await;
    old.state.lock().unwrap().behaviour.plain_only = true;
    let sent_before =
        dst.state.lock().unwrap().outgoing_tls.len() + src.state.lock().unwrap().outgoing_tls.len();
    let r = c
        .call("POST", "/api/v1/vms/a/migrate", Some(r#"{"to":"old"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let failed = wait_migration(&c, "a").await;
    assert_eq!(failed["phase"], "failed", "{failed:?}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot receive an encrypted migration"),
        "{failed:?}"
    );
    let sent_after =
        dst.state.lock().unwrap().outgoing_tls.len() + src.state.lock().unwrap().outgoing_tls.len();
    assert_eq!(sent_before, sent_after, "the source must not have sent");
    assert_eq!(
        c.call("GET", "/api/v1/vms/a", None).await.body["host"],
        "src"
    );

    // Turned off: plain TCP, said so.
    let r = c
        .call(
            "PUT",
            "/api/v1/settings",
            Some(r#"{"ratios":{"cpu":4,"memory":1},"migration_encrypted":false}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["migration_encrypted"], false);
    let r = c
        .call("POST", "/api/v1/vms/a/migrate", Some(r#"{"to":"old"}"#))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let plain = wait_migration(&c, "a").await;
    assert_eq!(plain["phase"], "completed", "{plain:?}");
    assert_eq!(plain["encrypted"], false, "{plain:?}");
    assert_eq!(old.state.lock().unwrap().incoming_tls.last(), Some(&None));
    assert_eq!(src.state.lock().unwrap().outgoing_tls.last(), Some(&None));
    c.shutdown().await;
}
