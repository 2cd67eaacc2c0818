//! Host certificates after the join: renewal over the session, what the agent endpoint checks
//! of a certificate (revoked? of the current CA?), and the revocation of a removed host's
//! certificates.

use vinfra_proto::pki::{self, CertInfo};
use vinfra_store::Op;
use vinfra_types::filter::{ListFilter, RevokedCertificateFilter};

use crate::error::JoinError;
use crate::state::records::{self as keys, now_s, HostCertificate, HostRecord, RevokedCertRecord};
use crate::state::Console;

/// The fingerprints of a CA bundle as a host record keeps them (comma-separated).
pub fn bundle_id(bundle_pem: &str) -> String {
    pki::bundle_fingerprints(bundle_pem)
        .map(|f| f.join(","))
        .unwrap_or_default()
}

/// `certificates` without the expired ones, plus `info` unless it is there already.
fn keep(certificates: &mut Vec<HostCertificate>, info: &CertInfo) {
    let now = now_s();
    certificates.retain(|c| c.not_after > now);
    if !certificates.iter().any(|c| c.serial == info.serial) {
        certificates.push(HostCertificate {
            serial: info.serial.clone(),
            not_after: info.not_after_s(),
        });
    }
}

/// A duration in words, roughly: `364 days`, `5 h`, `40 s`.
fn roughly(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} h", s / 3600),
        s => format!("{s} s"),
    }
}

/// Notes on the host's record the certificate just signed for it at its join (`cert_pem`) and
/// the CA bundle it got.
pub fn note_issued(rec: &mut HostRecord, cert_pem: &str, bundle_pem: &str) {
    if let Ok(info) = pki::cert_info_of_pem(cert_pem) {
        keep(&mut rec.certificates, &info);
    }
    rec.ca_bundle = Some(bundle_id(bundle_pem));
}

/// Renews a registered host's certificate from `csr_pem` (for the CSR's key, the name from the
/// session's certificate, `using`): signs it, keeps it on the host's record with the CA bundle
/// handed out, and records an event. A host that is not registered (removed) is refused.
/// Returns `(cert_pem, ca_bundle_pem)`.
///
/// Unless the console asked for it (`asked`, a CA rotation), a renewal is refused while the
/// certificate the host uses is not near its renewal time (from a tenth of its validity before
/// it; without `using`, the host's newest), and within a tenth of the validity (a minute at
/// most) of the last one signed: a host cannot have certificates signed, or renewal events
/// recorded, as fast as it sends `Renew`, and a host whose last renewal's answer was lost (it
/// still uses the older certificate) can renew again before that one expires.
pub fn renew(
    console: &Console,
    host: &str,
    csr_pem: &str,
    using: Option<&CertInfo>,
    asked: bool,
) -> Result<(String, String), JoinError> {
    let Ok(rec) = console.host(host) else {
        return Err(JoinError::NotRegistered(host.to_string()));
    };
    if !asked {
        let validity = console.ca().host_validity();
        let early = validity.mul_f64(1.0 - pki::RENEW_AT) + validity / 10;
        let newest = rec.value.certificates.iter().map(|c| c.not_after).max();
        let ends = using.map(CertInfo::not_after_s).or(newest);
        // The newest other certificate's signing, from its end and the validity.
        let last = rec
            .value
            .certificates
            .iter()
            .filter(|c| using.is_none_or(|u| u.serial != c.serial))
            .map(|c| c.not_after.saturating_sub(validity.as_secs()))
            .max();
        let gap = (validity / 10)
            .min(std::time::Duration::from_secs(60))
            .as_secs();
        let window = ends.map(|e| e.saturating_sub(early.as_secs()));
        let spaced = last.map(|signed| signed + gap);
        let now = now_s();
        if let Some(opens) = window.into_iter().chain(spaced).max().filter(|&o| now < o) {
            return Err(JoinError::RenewTooEarly {
                host: host.to_string(),
                in_s: opens - now,
            });
        }
    }
    let cert_pem = console
        .ca()
        .sign_host_csr(csr_pem, host)
        .map_err(JoinError::Csr)?;
    let info = pki::cert_info_of_pem(&cert_pem).map_err(JoinError::Csr)?;
    let bundle = console.ca_bundle().to_string();
    // The record may go between the check and here (the host is being removed): then the new
    // certificate is never handed out.
    console
        .update_host(host, |h| {
            keep(&mut h.certificates, &info);
            h.ca_bundle = Some(bundle_id(&bundle));
        })
        .map_err(|_| JoinError::NotRegistered(host.to_string()))?;
    let left = info
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    console.event(
        "host",
        host,
        format!(
            "certificate renewed: serial {}, expires in {}",
            info.serial,
            roughly(left.as_secs())
        ),
    );
    Ok((cert_pem, bundle))
}

/// True when the certificate with this serial was revoked (its host was removed).
pub fn revoked(console: &Console, serial: &str) -> bool {
    match keys::get::<RevokedCertRecord>(console.store().as_ref(), &keys::revoked_cert_key(serial))
    {
        Ok(found) => found.is_some(),
        // Fail closed: a certificate the console cannot check is not let in.
        Err(e) => {
            tracing::warn!(
                serial,
                "revocation check failed: {}",
                vinfra_types::error::Chain(&e)
            );
            true
        }
    }
}

/// A registered host connected with the certificate `info` (`der`): it is kept on the host's
/// record (a host that joined before certificates were kept gets it there, so that removing
/// the host revokes it). True when the host should renew now: its certificate is not of the
/// issuing CA, or a CA rotation is under way and the host has not got the current CA bundle.
pub fn seen(console: &Console, host: &str, info: &CertInfo, der: &[u8]) -> bool {
    let Ok(rec) = console.host(host) else {
        return false;
    };
    if !rec
        .value
        .certificates
        .iter()
        .any(|c| c.serial == info.serial)
    {
        if let Err(e) = console.update_host(host, |h| keep(&mut h.certificates, info)) {
            tracing::warn!(
                host,
                "certificate not noted: {}",
                vinfra_types::error::Chain(&e)
            );
        }
    }
    supersede(console, host, &rec.value, info);
    let bundle = console.ca_bundle();
    let rotating = pki::bundle_fingerprints(bundle).is_ok_and(|f| f.len() > 1);
    // Outside a rotation a certificate of another CA does not get this far.
    rotating
        && (!pki::issued_by(der, console.ca().cert_pem())
            || rec.value.ca_bundle.as_deref() != Some(bundle_id(bundle).as_str()))
}

/// The host connected with `info`, so it holds that certificate's key: every unexpired
/// certificate issued to it before (listed before `info` on its record, which lists them in
/// the order they were issued: the join's, then each renewal's) is revoked and dropped from
/// the record, so that a copy of an older key no longer gets in. A certificate issued after
/// `info` (the host came back with an older one) is left alone, and so is everything when
/// `info` is not on the record. Failures are logged: the connection goes on, the older
/// certificates stay until they expire or the host is removed.
fn supersede(console: &Console, host: &str, rec: &HostRecord, info: &CertInfo) {
    let now = now_s();
    let Some(at) = rec
        .certificates
        .iter()
        .position(|c| c.serial == info.serial)
    else {
        return;
    };
    // One revoked already (its host removed meanwhile) keeps its record and reason.
    let older: Vec<&HostCertificate> = rec.certificates[..at]
        .iter()
        .filter(|c| c.not_after > now && !revoked(console, &c.serial))
        .collect();
    if older.is_empty() {
        return;
    }
    let reason = format!("superseded by {}", info.serial);
    let ops = older
        .iter()
        .map(|c| revocation(host, c, &reason, now))
        .collect::<Result<Vec<_>, _>>();
    let ops = match ops {
        Ok(ops) => ops,
        Err(e) => {
            tracing::warn!(
                host,
                "revocation not encoded: {}",
                vinfra_types::error::Chain(&e)
            );
            return;
        }
    };
    let written = console.store().txn(vinfra_store::Txn {
        compare: vec![],
        success: ops,
        failure: vec![],
    });
    if let Err(e) = written {
        tracing::warn!(
            host,
            "superseded certificates not revoked: {}",
            vinfra_types::error::Chain(&e)
        );
        return;
    }
    let serials: Vec<String> = older.iter().map(|c| c.serial.clone()).collect();
    // Revoked first, dropped from the record after: a crash between leaves them listed on the
    // record too, which only revokes them again when the host is removed.
    if let Err(e) = console.update_host(host, |h| {
        h.certificates.retain(|c| !serials.contains(&c.serial));
    }) {
        tracing::warn!(
            host,
            "superseded certificates kept on the record: {}",
            vinfra_types::error::Chain(&e)
        );
    }
    console.event(
        "host",
        host,
        format!(
            "certificates revoked (superseded by serial {}): serial {}",
            info.serial,
            serials.join(", ")
        ),
    );
}

/// The store writes that revoke a removed host's unexpired certificates (in the transaction
/// that removes its record), and their serials.
pub fn revocations(rec: &HostRecord) -> Result<(Vec<Op>, Vec<String>), crate::error::RecordError> {
    let now = now_s();
    let live: Vec<&HostCertificate> = rec
        .certificates
        .iter()
        .filter(|c| c.not_after > now)
        .collect();
    let ops = live
        .iter()
        .map(|c| revocation(&rec.name, c, "host removed", now))
        .collect::<Result<Vec<_>, _>>()?;
    let serials = live.iter().map(|c| c.serial.clone()).collect();
    Ok((ops, serials))
}

/// The store write that revokes `c`, one of `host`'s certificates, at `now` for `reason`.
fn revocation(
    host: &str,
    c: &HostCertificate,
    reason: &str,
    now: u64,
) -> Result<Op, crate::error::RecordError> {
    let revoked = RevokedCertRecord {
        host: host.to_string(),
        serial: c.serial.clone(),
        not_after: c.not_after,
        revoked_at: now,
        reason: reason.to_string(),
    };
    Ok(Op::Put {
        key: keys::revoked_cert_key(&c.serial),
        value: keys::encode(&revoked)?,
        lease: 0,
    })
}

/// The revoked certificates that have not expired yet; expired ones are deleted from the
/// store on the way (they no longer verify anyway, so their records are no longer needed).
pub fn revoked_certificates(
    console: &Console,
) -> Result<Vec<RevokedCertRecord>, crate::error::RecordError> {
    let store = console.store().as_ref();
    let now = now_s();
    let mut out = Vec::new();
    for (_, rec) in keys::range::<RevokedCertRecord>(store, keys::REVOKED_CERTS)? {
        if rec.value.not_after <= now {
            let _ = store.delete(&keys::revoked_cert_key(&rec.value.serial));
        } else {
            out.push(rec.value);
        }
    }
    Ok(out)
}

/// The revoked certificates that have not expired (those `filter` lets through), as the API
/// lists them (oldest revocation first).
pub fn revoked_list(
    console: &Console,
    filter: &RevokedCertificateFilter,
) -> Result<Vec<vinfra_types::api::RevokedCertificate>, crate::error::RecordError> {
    let mut list: Vec<_> = revoked_certificates(console)?
        .into_iter()
        .map(|r| vinfra_types::api::RevokedCertificate {
            host: r.host,
            serial: r.serial,
            not_after: r.not_after,
            revoked_at: r.revoked_at,
            reason: r.reason,
        })
        .filter(|r| filter.lets(r))
        .collect();
    list.sort_by(|a, b| (a.revoked_at, &a.serial).cmp(&(b.revoked_at, &b.serial)));
    Ok(list)
}
