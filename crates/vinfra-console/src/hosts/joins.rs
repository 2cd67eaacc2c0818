//! A host's join (token burnt, host registered, certificate signed) and its Hello (what it
//! says about itself each time it connects): the console's side of the agent endpoint.

use std::net::IpAddr;

use vinfra_proto::pki::JoinToken;
use vinfra_proto::{AgentCommand, HaTimings, HostReport};
use vinfra_store::{Compare, Op};
use vinfra_types::network::UNDERLAY_MTU;
use vinfra_types::HostPlatform;

use crate::agents::{AgentRegistry, Membership};
use crate::error::JoinError;
use crate::state::events::acting_now;
use crate::state::records::{self as keys, now_s, HostRecord, JoinTokenRecord};
use crate::state::{Console, Writes};

/// Joins a host: burns the token, registers the host and signs its certificate, the first two
/// in one transaction. Returns `(cert_pem, ca_pem)`.
pub fn join(
    console: &Console,
    token: &str,
    host: &str,
    csr_pem: &str,
    peer: IpAddr,
) -> Result<(String, String), JoinError> {
    vinfra_types::validate_name(host)?;
    let token = JoinToken::parse(token).map_err(JoinError::TokenMalformed)?;
    if token.ca_fingerprint != console.ca().fingerprint() {
        return Err(JoinError::OtherCluster);
    }
    let key = keys::join_token_key(&token.secret_hash());
    let store = console.store().as_ref();
    let Some(stored) = keys::get::<JoinTokenRecord>(store, &key)? else {
        return Err(JoinError::TokenUnknown);
    };
    if stored.value.expires_at < now_s() {
        let _ = store.delete(&key);
        return Err(JoinError::TokenExpired);
    }
    if console.host_registered(host) {
        return Err(JoinError::HostExists(host.to_string()));
    }
    let cert_pem = console
        .ca()
        .sign_host_csr(csr_pem, host)
        .map_err(JoinError::Csr)?;
    let mut rec = HostRecord {
        name: host.to_string(),
        address: peer.to_string(),
        joined_at: now_s(),
        ratio_override: None,
        maintenance: false,
        capacity: None,
        accel: None,
        qemu_version: None,
        platform: None,
        trunk: None,
        underlay_mtu: UNDERLAY_MTU,
        fence_command: None,
        fenced_at: None,
        certificates: vec![],
        ca_bundle: None,
    };
    // The agent trusts the CA its token pinned (not the bundle): during a CA rotation it is
    // asked to renew at its first connection, and gets the bundle then.
    super::certs::note_issued(&mut rec, &cert_pem, console.ca().cert_pem());
    let burn = Writes::other(
        vec![Compare::mod_revision(key.clone(), stored.mod_revision)],
        vec![Op::Delete { key }],
    );
    if !console.insert_host(&rec, burn)? {
        return Err(JoinError::TokenRaced);
    }
    console.event("host", host, format!("joined from {peer}"));
    Ok((cert_pem, console.ca().cert_pem().to_string()))
}

/// The HA settings every agent gets after its Hello (and every agent when the cluster's
/// settings change), for its guard: the cluster's isolation response and timings.
pub fn ha_command(console: &Console) -> AgentCommand {
    AgentCommand::SetHa {
        isolation_response: console.settings().ha.isolation_response,
        timings: HaTimings::default(),
    }
}

/// The IPFIX collector every agent gets after its Hello (and every agent when it changes).
pub fn flow_export_command(console: &Console) -> AgentCommand {
    AgentCommand::SetFlowExport {
        collector: console.settings().flows.ipfix_collector,
    }
}

/// Remembers what a host said in its Hello (address, capacity, accelerator, QEMU version and
/// platform, VLAN trunk, underlay MTU); a host that was fenced is back: its `fenced_at` goes, with an
/// event.
pub fn hello(console: &Console, report: &HostReport, platform: Option<HostPlatform>) {
    let mut was_fenced = false;
    let res = console.update_host(&report.host, |h| {
        h.address = report.address.clone();
        h.capacity = Some(report.capacity);
        h.accel = Some(report.accel);
        // A Hello without a platform (QEMU did not answer the agent's questions this time)
        // keeps the one the same QEMU gave before.
        if platform.is_some() || h.qemu_version.as_deref() != Some(report.qemu_version.as_str()) {
            h.platform = platform.clone();
        }
        h.qemu_version = Some(report.qemu_version.clone());
        h.trunk = report.trunk.clone();
        h.underlay_mtu = report.underlay_mtu;
        was_fenced = h.fenced_at.take().is_some();
    });
    match res {
        Ok(_) if was_fenced => console.event(
            "host",
            &report.host,
            format!("host {} is back after being fenced", report.host),
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            host = report.host,
            "host record not updated: {}",
            vinfra_types::error::Chain(&e)
        ),
    }
}

/// The actor of what the agent endpoint changes (a host's join, its return after a fence).
fn agents() -> vinfra_types::auth::Actor {
    vinfra_types::auth::Actor::controller(AGENTS_ACTOR)
}

/// The name of the agent endpoint as the actor events name.
pub const AGENTS_ACTOR: &str = "agents";

impl Membership for Console {
    type JoinRefused = JoinError;

    fn join(
        &self,
        token: &str,
        host: &str,
        csr_pem: &str,
        peer: IpAddr,
    ) -> Result<(String, String), JoinError> {
        acting_now(agents(), || join(self, token, host, csr_pem, peer))
    }

    fn registered(&self, host: &str) -> bool {
        self.host_registered(host)
    }

    fn check_hello(
        &self,
        report: &HostReport,
        platform: Option<&HostPlatform>,
    ) -> Result<(), String> {
        acting_now(agents(), || {
            super::reports::check_hello(self, report, platform)
        })
        .map_err(|e| e.to_string())
    }

    fn screen_report(&self, hello: &HostReport, report: &mut HostReport) {
        acting_now(agents(), || super::reports::screen(self, hello, report));
    }

    fn renew(
        &self,
        host: &str,
        csr_pem: &str,
        using: Option<&vinfra_proto::pki::CertInfo>,
        asked: bool,
    ) -> Result<(String, String), JoinError> {
        acting_now(agents(), || {
            super::certs::renew(self, host, csr_pem, using, asked)
        })
    }

    fn certificate_revoked(&self, serial: &str) -> bool {
        super::certs::revoked(self, serial)
    }

    fn certificate_seen(&self, host: &str, cert: &vinfra_proto::pki::CertInfo, der: &[u8]) -> bool {
        acting_now(agents(), || super::certs::seen(self, host, cert, der))
    }

    fn hello(&self, report: &HostReport, platform: Option<HostPlatform>) {
        acting_now(agents(), || hello(self, report, platform))
    }

    fn ha_command(&self) -> AgentCommand {
        ha_command(self)
    }

    fn flow_export_command(&self) -> AgentCommand {
        flow_export_command(self)
    }

    fn flows(&self, _host: &str, flows: &[vinfra_proto::HostFlow], untracked_packets: u64) {
        crate::flows::record(self, flows, untracked_packets)
    }

    fn registry(&self) -> &AgentRegistry {
        self.agents()
    }
}
