//! Credentials for one encrypted live migration.
//!
//! Each migration gets a certificate per end, signed by the cluster CA and valid
//! [`MIGRATION_CERT_VALIDITY`]: the source's (client-auth, subject `CN=mig-<id>-src`) and the
//! destination's (server-auth, subject and DNS name `mig-<id>-dst.vinfra`), where `<id>` is
//! random. The destination's QEMU accepts exactly the source's subject (`authz-simple`), the
//! source's QEMU exactly the destination's name (`tls-hostname`): a certificate of a host, of
//! another migration or of another VM's QEMU is refused at the handshake.
//!
//! The profile suits QEMU's checks (`crypto/tlscredsx509.c`): subject CN only (so the
//! distinguished name QEMU compares is exactly `CN=<cn>`), no key-usage extension (rcgen
//! marks one critical, and QEMU before 10.2 rejects a critical one without keyEncipherment;
//! without one QEMU assumes any usage), not a CA, extended key usage client or server auth.

use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

use crate::messages::MigrationTls;
use crate::pki::ClusterCa;
use crate::pki_base::{random_hex_32, random_serial, validity, PkiError, Result};

/// How long a migration's certificates are valid (the handshake happens within seconds of
/// issue; a migration that takes longer keeps its established session).
pub const MIGRATION_CERT_VALIDITY: Duration = Duration::from_secs(15 * 60);

/// The source's and the destination's credentials for one migration.
#[derive(Debug, Clone)]
pub struct MigrationCredentials {
    /// For the source: its certificate, and the destination's name as [`MigrationTls::peer`].
    pub source: MigrationTls,
    /// For the destination: its certificate, and the source's subject as [`MigrationTls::peer`].
    pub destination: MigrationTls,
}

impl ClusterCa {
    /// Issues the two ends' credentials of one migration (see the module).
    pub fn issue_migration_tls(&self) -> Result<MigrationCredentials> {
        let id = &random_hex_32()[..16];
        let src_cn = format!("mig-{id}-src");
        let dst_name = format!("mig-{id}-dst.vinfra");
        let (src_cert, src_key) = self.migration_cert(&src_cn, None)?;
        let (dst_cert, dst_key) = self.migration_cert(&dst_name, Some(&dst_name))?;
        Ok(MigrationCredentials {
            source: MigrationTls {
                ca_pem: self.cert_pem().to_string(),
                cert_pem: src_cert,
                key_pem: src_key,
                peer: dst_name,
            },
            destination: MigrationTls {
                ca_pem: self.cert_pem().to_string(),
                cert_pem: dst_cert,
                key_pem: dst_key,
                peer: format!("CN={src_cn}"),
            },
        })
    }

    /// One end's certificate and key: a client's without `dns_name`, a server's with it.
    fn migration_cert(&self, cn: &str, dns_name: Option<&str>) -> Result<(String, String)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Generate {
                what: "migration key",
                source,
            }
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = Vec::new();
        match dns_name {
            Some(name) => {
                let name = name.try_into().map_err(|_| PkiError::ServerName {
                    name: name.to_string(),
                })?;
                params.subject_alt_names = vec![SanType::DnsName(name)];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            None => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity(&mut params, MIGRATION_CERT_VALIDITY);
        let cert = params
            .signed_by(&key, self.issuer())
            .map_err(|source| PkiError::Generate {
                what: "migration certificate",
                source,
            })?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    /// Both ends chain to the CA, carry the names the other end checks, and are new each time.
    #[test]
    fn each_migration_gets_its_own_pair_of_names() {
        let ca = ClusterCa::generate("t").unwrap();
        let a = ca.issue_migration_tls().unwrap();
        let b = ca.issue_migration_tls().unwrap();
        assert_ne!(a.source.peer, b.source.peer);
        assert_ne!(a.destination.peer, b.destination.peer);
        let src_der =
            rustls_pki_types::CertificateDer::from_pem_slice(a.source.cert_pem.as_bytes()).unwrap();
        let dst_der =
            rustls_pki_types::CertificateDer::from_pem_slice(a.destination.cert_pem.as_bytes())
                .unwrap();
        let src_cn = crate::pki::common_name_of_der(&src_der).unwrap().unwrap();
        let dst_cn = crate::pki::common_name_of_der(&dst_der).unwrap().unwrap();
        // The destination accepts exactly the source's subject; the source expects the
        // destination's name.
        assert_eq!(a.destination.peer, format!("CN={src_cn}"));
        assert_eq!(a.source.peer, dst_cn);
        // No key-usage extension (OID 2.5.29.15): QEMU before 10.2 refuses our critical one.
        for der in [&src_der, &dst_der] {
            let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
            assert!(cert
                .extensions()
                .iter()
                .all(|e| e.oid.to_id_string() != "2.5.29.15"));
            assert!(!cert.is_ca());
        }
        assert_eq!(a.source.ca_pem, ca.cert_pem());
    }
}
