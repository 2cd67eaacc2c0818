//! REST API bodies and the problem+json error body (RFC 9457).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::balancing::BalancingSettings;
use crate::ha::{HaSettings, VmHaUpdate};
use crate::{AllocationRatios, AllowedAddressPair, NicSpec, VmSpec};

/// Media type of [`Problem`] bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error body (RFC 9457 problem details).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem, e.g. `/problems/insufficient-capacity`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong this time, in one line.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.detail)
    }
}

/// `POST /api/v1/vms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVmRequest {
    /// The VM's name, size, boot source, disks and NICs.
    #[serde(flatten)]
    pub spec: VmSpec,
    /// Host to place the VM on; the console picks one when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// Start the VM right away (default true).
    #[serde(default = "yes")]
    pub start: bool,
    /// Create this many VMs alike (1..=1000) instead of one, named `{name}-1` …
    /// `{name}-{count}` (each name a valid VM name): each placed after those before it (seeing
    /// them), the records written, then every VM created on its host at once; one task for all,
    /// whose result is `CreatedVms`. When one cannot be placed none is kept. NICs take their
    /// addresses and MACs from the pool: a fixed `ip` or `mac` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub count: Option<u32>,
}

fn yes() -> bool {
    true
}

/// The largest `count` of one [`CreateVmRequest`].
pub const CREATE_COUNT_MAX: u32 = 1000;

impl CreateVmRequest {
    /// The names of the VMs this request creates: `name`, or with `count` N `name-1` …
    /// `name-N`.
    pub fn names(&self) -> Vec<String> {
        match self.count {
            None => vec![self.spec.name.clone()],
            Some(n) => (1..=n).map(|i| format!("{}-{i}", self.spec.name)).collect(),
        }
    }
}

/// The result of a create with `count` (`POST /api/v1/vms`): the VMs, in the order of their
/// names (each in full at `GET /api/v1/vms/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedVms {
    /// Each VM.
    pub vms: Vec<CreatedVm>,
}

/// One VM of [`CreatedVms`]: where it went and its state as its host answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedVm {
    /// The VM's name.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its power state as its host answered.
    pub state: crate::PowerState,
}

impl From<&crate::VmSummary> for CreatedVm {
    fn from(v: &crate::VmSummary) -> Self {
        CreatedVm {
            name: v.name.clone(),
            host: v.host.clone(),
            state: v.state,
        }
    }
}

/// `POST /api/v1/vms/{name}/stop`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopVmRequest {
    /// Power off at once instead of asking the guest (ACPI) first.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for the guest to power off before forcing (default 30, at most 3600).
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// `POST /api/v1/vms/{name}/migrate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateVmRequest {
    /// Destination host; the console picks one when absent.
    #[serde(default)]
    pub to: Option<String>,
}

/// Longest pause at a migration's switchover when the settings name none, milliseconds.
pub const DEFAULT_MIGRATION_DOWNTIME_LIMIT_MS: u64 = 300;
/// Accepted range of `migration_max_bandwidth_mib`, MiB/s.
pub const MIGRATION_BANDWIDTH_RANGE_MIB: std::ops::RangeInclusive<u64> = 1..=1_000_000;
/// Accepted range of `migration_downtime_limit_ms`, milliseconds.
pub const MIGRATION_DOWNTIME_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

/// `PUT /api/v1/settings`: cluster-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Default allocation ratios for hosts without an override.
    pub ratios: AllocationRatios,
    /// Bandwidth cap of a live migration, MiB/s (1 to 1,000,000); absent or `null`: unlimited.
    #[serde(default)]
    pub migration_max_bandwidth_mib: Option<u64>,
    /// Longest acceptable pause at a migration's switchover, milliseconds (10 to 60,000);
    /// absent or `null`: 300.
    #[serde(default)]
    pub migration_downtime_limit_ms: Option<u64>,
    /// QEMU's auto-converge during a live migration: a guest that dirties memory faster than
    /// the link carries it is slowed down (its vCPUs throttled, more each round that does not
    /// converge) until the migration can end, instead of copying forever; absent or `null`: on.
    #[serde(default)]
    pub migration_auto_converge: Option<bool>,
    /// Live migrations encrypted and authenticated: QEMU's TLS with certificates the console
    /// issues for each migration, so the destination accepts only that migration's source and
    /// the stream shows nothing of the guest's memory; absent or `null`: on. `false` sends in
    /// plain TCP (only for a trusted migration network, where the CPU TLS costs matters more).
    #[serde(default)]
    pub migration_encrypted: Option<bool>,
    /// The cluster's CPU baseline (like vSphere's EVC): a QEMU CPU model every VM created
    /// from then on runs with (`Nehalem-v1`, `Cascadelake-Server-v4`, …), so that it can move
    /// between hosts with different CPUs. It must be one every registered host offers with all
    /// its features (`vinfra host show`). Absent or `null`: VMs run with their host's own CPU
    /// under KVM (they move only between hosts of the same CPU) and `qemu64` under TCG.
    /// VMs keep the model they were created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_baseline: Option<String>,
    /// Automatic load balancing; absent: off with the defaults.
    #[serde(default)]
    pub balancing: BalancingSettings,
    /// High availability: host failures tolerated, isolation response, fencing isolated
    /// hosts; absent: the defaults.
    #[serde(default)]
    pub ha: HaSettings,
    /// Flow visibility: the IPFIX collector agents export to, the balancer's traffic window;
    /// absent: no export, 10 minutes.
    #[serde(default)]
    pub flows: crate::flows::FlowSettings,
}

/// What `GET /api/v1/vms` lists: every VM, or those on a host, in an observed state, with a
/// NIC on a network (all that are given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmFilter {
    /// Only the VMs placed on this host.
    pub host: Option<String>,
    /// Only the VMs in this state (as their hosts last reported them).
    pub state: Option<crate::PowerState>,
    /// Only the VMs with a NIC on this network.
    pub network: Option<String>,
}

impl VmFilter {
    /// True when it lets every VM through.
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.state.is_none() && self.network.is_none()
    }

    /// Whether a VM placed on `host` with `spec` passes the host and network tests (the state
    /// is tested on the merged view).
    pub fn placed(&self, host: &str, spec: &VmSpec) -> bool {
        self.host.as_deref().is_none_or(|h| h == host)
            && self
                .network
                .as_deref()
                .is_none_or(|n| spec.nics.iter().any(|nic| nic.network == n))
    }
}

/// Checks a CPU baseline's form: a QEMU CPU model name (letters, digits, `.`, `_`, `-`; at
/// most 64), not one that follows the host (`host`, `max`).
pub fn validate_cpu_baseline(model: &str) -> Result<(), String> {
    if model.is_empty()
        || model.len() > 64
        || !model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "cpu_baseline must be a QEMU CPU model name (letters, digits, '.', '_', '-'; at most \
             64), got {:?}",
            model.chars().take(80).collect::<String>()
        ));
    }
    if model == "base" {
        return Err(
            "cpu_baseline 'base' has no CPU features at all (no guest boots on it): name a QEMU \
             CPU model such as 'Nehalem-v1' or 'Cascadelake-Server-v4'"
                .to_string(),
        );
    }
    if model == crate::vm::HOST_CPU_MODEL || model == "max" {
        return Err(format!(
            "cpu_baseline '{model}' follows each host's CPU, so it cannot be a baseline: name a \
             QEMU CPU model such as 'Nehalem-v1' or 'Cascadelake-Server-v4'"
        ));
    }
    Ok(())
}

impl ClusterSettings {
    /// Checks every field; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        self.ratios.validate()?;
        if let Some(m) = &self.cpu_baseline {
            validate_cpu_baseline(m)?;
        }
        if let Some(b) = self.migration_max_bandwidth_mib {
            if !MIGRATION_BANDWIDTH_RANGE_MIB.contains(&b) {
                return Err(format!(
                    "migration_max_bandwidth_mib must be between {} and {} MiB/s, got {b}",
                    MIGRATION_BANDWIDTH_RANGE_MIB.start(),
                    MIGRATION_BANDWIDTH_RANGE_MIB.end()
                ));
            }
        }
        if let Some(d) = self.migration_downtime_limit_ms {
            if !MIGRATION_DOWNTIME_RANGE_MS.contains(&d) {
                return Err(format!(
                    "migration_downtime_limit_ms must be between {} and {} ms, got {d}",
                    MIGRATION_DOWNTIME_RANGE_MS.start(),
                    MIGRATION_DOWNTIME_RANGE_MS.end()
                ));
            }
        }
        self.balancing.validate()?;
        self.flows.validate()?;
        self.ha.validate().map_err(|e| e.to_string())
    }

    /// Migration bandwidth cap in bytes per second; 0 means unlimited.
    pub fn migration_bandwidth_bytes_per_s(&self) -> u64 {
        self.migration_max_bandwidth_mib
            .map_or(0, |m| m.saturating_mul(1024 * 1024))
    }

    /// Whether auto-converge is on (the default when unset: on).
    pub fn effective_auto_converge(&self) -> bool {
        self.migration_auto_converge.unwrap_or(true)
    }

    /// Whether migrations are encrypted (the default when unset: yes).
    pub fn effective_migration_encrypted(&self) -> bool {
        self.migration_encrypted.unwrap_or(true)
    }

    /// Downtime limit in force, milliseconds (the default when unset).
    pub fn effective_downtime_limit_ms(&self) -> u64 {
        self.migration_downtime_limit_ms
            .unwrap_or(DEFAULT_MIGRATION_DOWNTIME_LIMIT_MS)
    }
}

/// `PATCH /api/v1/hosts/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHostRequest {
    /// Host-specific ratios; `null` removes the override.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<AllocationRatios>)]
    pub ratios: Option<Option<AllocationRatios>>,
    /// Put the host in (or take it out of) maintenance: no new VMs are placed on it.
    #[serde(default)]
    pub maintenance: Option<bool>,
    /// The host's out-of-band fence command, run by the console with `sh -c` (environment
    /// `VINFRA_HOST` = the host's name) when the host must be powered off: exit 0 means it is
    /// off. At most 4096 bytes, no NUL; `null` removes it. Never shown again: the host's view
    /// says only whether one is set (`fence_command_set`).
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub fence_command: Option<Option<String>>,
}

/// `PATCH /api/v1/vms/{name}`: what changes of a VM; only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVmRequest {
    /// The VM's HA policy: only the fields given change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<VmHaUpdate>,
}

/// `PATCH /api/v1/vms/{name}/nics/{index}`: a NIC's settings; only the fields given change,
/// and the NIC is checked as at create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNicRequest {
    /// The security groups the NIC is in, the whole list (`[]`: none, not filtered); each
    /// must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
    /// Port security on or off (off is refused while the NIC has security groups or allowed
    /// addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// The NIC's allowed address pairs, the whole list (`[]`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_addresses: Option<Vec<AllowedAddressPair>>,
    /// The NIC's QoS, the whole of it (fields it leaves out are off or default); `null`
    /// removes it. Applied at once to the port of the running VM.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::api::double_option"
    )]
    #[schema(value_type = Option<crate::qos::NicQos>)]
    pub qos: Option<Option<crate::qos::NicQos>>,
}

impl UpdateNicRequest {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.security_groups.is_none()
            && self.port_security.is_none()
            && self.allowed_addresses.is_none()
            && self.qos.is_none()
    }

    /// `nic` with the fields given changed.
    pub fn apply(&self, nic: &NicSpec) -> NicSpec {
        let mut n = nic.clone();
        if let Some(g) = &self.security_groups {
            n.security_groups = g.clone();
        }
        if let Some(p) = self.port_security {
            n.port_security = Some(p);
        }
        if let Some(a) = &self.allowed_addresses {
            n.allowed_addresses = a.clone();
        }
        if let Some(q) = &self.qos {
            n.qos = q.clone();
        }
        n
    }
}

/// `POST /api/v1/join-tokens` response: a one-time token a new host joins with (on the agent
/// endpoint, see `vinfra-proto`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenResponse {
    /// `vinfra-join.<CA fingerprint>.<secret>`; shown once.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in_s: u64,
}

/// `POST /api/v1/token/rotate` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The new secret of the token that asked (same name, role and expiry); the old secret
    /// stops working now. Shown once.
    pub token: String,
}

/// A VM's serial console output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleLog {
    /// The serial console's bytes from `start` to `end` of its log on `host` (the last ones,
    /// without `from`), lossily decoded as UTF-8.
    pub text: String,
    /// The host whose log this is: offsets are that host's (a VM that moved starts over).
    #[serde(default)]
    pub host: String,
    /// The log offset `text` starts at: the `from` asked, or where the tail starts (a `from`
    /// past the log's end, of a log rotated or another host's, reads the tail).
    #[serde(default)]
    pub start: u64,
    /// The log offset after `text`: the next read's `from`, which gets each byte once.
    #[serde(default)]
    pub end: u64,
    /// The console takes input now (`POST …/console/input`): the VM runs, with a QEMU that
    /// has the serial socket.
    #[serde(default)]
    pub input: bool,
}

/// Input for a VM's serial console (`POST /api/v1/vms/{name}/console/input`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleInput {
    /// What to type, 1 to 4096 bytes, as a terminal sends it (Enter is `\r`).
    pub text: String,
}

/// One entry of the event history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Its number in the history: each event's is higher than the one before, and never used
    /// again (`GET /api/v1/events` pages by it).
    #[serde(default)]
    pub seq: u64,
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `vm`, `host`, `migration`, …
    pub kind: String,
    /// Name of the object it concerns.
    pub object: String,
    /// What happened, in words.
    pub message: String,
    /// Who made it happen: the API token of the request, or the console's controller. Absent
    /// on events recorded before the console named actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<crate::auth::Actor>,
}

/// A revoked host certificate (its host was removed), listed until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokedCertificate {
    /// The host it was issued to.
    pub host: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// End of its validity, seconds since the Unix epoch.
    pub not_after: u64,
    /// When it was revoked, seconds since the Unix epoch.
    pub revoked_at: u64,
    /// Why: `host removed`, or `superseded by <serial>` (the host connected with a newer one).
    pub reason: String,
}

/// `Option<Option<T>>` fields: absent is `None`, `null` is `Some(None)`.
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_without_migration_fields_still_load() {
        let old = r#"{"ratios":{"cpu":4.0,"memory":1.5}}"#;
        let s: ClusterSettings = serde_json::from_str(old).unwrap();
        assert_eq!(s.migration_max_bandwidth_mib, None);
        assert_eq!(s.migration_downtime_limit_ms, None);
        assert_eq!(s.migration_bandwidth_bytes_per_s(), 0);
        assert_eq!(
            s.effective_downtime_limit_ms(),
            DEFAULT_MIGRATION_DOWNTIME_LIMIT_MS
        );
        assert!(s.effective_auto_converge());
        assert!(s.effective_migration_encrypted());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn migration_settings_are_range_checked() {
        let mut s = ClusterSettings {
            ratios: AllocationRatios {
                cpu: 4.0,
                memory: 1.0,
            },
            migration_max_bandwidth_mib: Some(100),
            migration_downtime_limit_ms: Some(10),
            migration_auto_converge: Some(false),
            migration_encrypted: Some(false),
            cpu_baseline: Some("Nehalem-v1".into()),
            balancing: Default::default(),
            ha: Default::default(),
            flows: Default::default(),
        };
        assert!(s.validate().is_ok());
        for bad in [
            "",
            "host",
            "max",
            "base",
            "qemu64,+avx",
            "a\u{7}",
            &"x".repeat(65),
        ] {
            s.cpu_baseline = Some(bad.to_string());
            assert!(
                s.validate().unwrap_err().contains("cpu_baseline"),
                "{bad:?}"
            );
        }
        s.cpu_baseline = None;
        assert_eq!(s.migration_bandwidth_bytes_per_s(), 100 * 1024 * 1024);
        s.migration_max_bandwidth_mib = Some(0);
        assert!(s
            .validate()
            .unwrap_err()
            .contains("migration_max_bandwidth_mib"));
        s.migration_max_bandwidth_mib = Some(1_000_001);
        assert!(s.validate().is_err());
        s.migration_max_bandwidth_mib = None;
        s.migration_downtime_limit_ms = Some(9);
        assert!(s
            .validate()
            .unwrap_err()
            .contains("migration_downtime_limit_ms"));
        s.migration_downtime_limit_ms = Some(60_001);
        assert!(s.validate().is_err());
        s.migration_downtime_limit_ms = None;
        s.ha.isolation_fence_after_s = 1;
        assert_eq!(
            s.validate().unwrap_err(),
            "ha.isolation_fence_after_s must be between 5 and 3600, got 1"
        );
    }

    #[test]
    fn settings_without_ha_load_with_its_defaults() {
        let old = r#"{"ratios":{"cpu":4.0,"memory":1.5},"balancing":{}}"#;
        let s: ClusterSettings = serde_json::from_str(old).unwrap();
        assert_eq!(s.ha, HaSettings::default());
        let partial = r#"{"ratios":{"cpu":4.0,"memory":1.5},"ha":{"fence_isolated":true}}"#;
        let s: ClusterSettings = serde_json::from_str(partial).unwrap();
        assert!(s.ha.fence_isolated);
        assert_eq!(s.ha.tolerate_host_failures, 1);
        let bad = r#"{"ratios":{"cpu":4.0,"memory":1.5},"ha":{"bogus":1}}"#;
        assert!(serde_json::from_str::<ClusterSettings>(bad).is_err());
    }

    #[test]
    fn host_updates_set_or_clear_the_fence_command() {
        let u: UpdateHostRequest = serde_json::from_str(r#"{"maintenance":true}"#).unwrap();
        assert_eq!(u.fence_command, None);
        let u: UpdateHostRequest = serde_json::from_str(r#"{"fence_command":null}"#).unwrap();
        assert_eq!(u.fence_command, Some(None));
        let u: UpdateHostRequest = serde_json::from_str(r#"{"fence_command":"true"}"#).unwrap();
        assert_eq!(u.fence_command, Some(Some("true".into())));
        // A field not given is not sent as `null`, which would remove it.
        let back = serde_json::to_string(&UpdateHostRequest::default()).unwrap();
        assert_eq!(back, r#"{"maintenance":null}"#);
        let vm: UpdateVmRequest =
            serde_json::from_str(r#"{"ha":{"enabled":true,"start_after":null}}"#).unwrap();
        let ha = vm.ha.unwrap();
        assert_eq!((ha.enabled, ha.start_after), (Some(true), Some(None)));
        assert!(serde_json::from_str::<UpdateVmRequest>(r#"{"spec":{}}"#).is_err());
    }

    #[test]
    fn nic_updates_set_keep_or_remove_the_qos() {
        let nic = NicSpec {
            network: "n".into(),
            qos: Some(crate::qos::NicQos {
                dscp: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        };
        let u: UpdateNicRequest = serde_json::from_str(r#"{"port_security":true}"#).unwrap();
        assert_eq!(u.apply(&nic).qos, nic.qos, "not given: kept");
        let u: UpdateNicRequest = serde_json::from_str(r#"{"qos":null}"#).unwrap();
        assert!(!u.is_empty());
        assert_eq!(u.apply(&nic).qos, None, "null: removed");
        assert_eq!(serde_json::to_string(&u).unwrap(), r#"{"qos":null}"#);
        let u: UpdateNicRequest = serde_json::from_str(r#"{"qos":{"priority":"high"}}"#).unwrap();
        let q = u.apply(&nic).qos.unwrap();
        assert_eq!(
            (q.priority, q.dscp),
            (crate::qos::NicPriority::High, None),
            "given: replaced whole"
        );
        assert_eq!(
            serde_json::to_string(&UpdateNicRequest::default()).unwrap(),
            "{}"
        );
    }
}
