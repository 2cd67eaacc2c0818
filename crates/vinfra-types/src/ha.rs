//! High availability as the operator sets it: a VM's restart policy ([`VmHa`]: on or off, a
//! [`HaPriority`], an optional VM to start after), the cluster's HA settings ([`HaSettings`]:
//! the host failures to tolerate, the [`IsolationResponse`], fencing isolated hosts), the change
//! of a VM's policy (`PATCH /api/v1/vms/{name}`, [`VmHaUpdate`]), a host's out-of-band fence
//! command ([`validate_fence_command`]) and what a fence did ([`FenceOutcome`]).
//!
//! Pure: the console stores and checks these, the HA library (`vinfra-ha`) decides with them.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::NameError;

/// Accepted range of [`HaSettings::tolerate_host_failures`].
pub const TOLERATE_HOST_FAILURES_RANGE: RangeInclusive<u32> = 0..=32;
/// Accepted range of [`HaSettings::isolation_fence_after_s`], seconds.
pub const ISOLATION_FENCE_AFTER_RANGE_S: RangeInclusive<u64> = 5..=3600;
/// Longest fence command accepted, bytes.
pub const MAX_FENCE_COMMAND: usize = 4096;

/// Why an HA setting, a VM's HA policy or a fence command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaError {
    /// A cluster HA setting is out of its range.
    #[error("ha.{field} must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// The field, without the `ha.` prefix.
        field: &'static str,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
        /// What was given.
        got: u64,
    },
    /// `start_after` is not a valid VM name.
    #[error("ha.start_after")]
    StartAfterName(#[source] NameError),
    /// The fence command is empty (or only white space); `null` removes it.
    #[error("fence_command is empty; use null to remove it")]
    FenceCommandEmpty,
    /// The fence command is longer than [`MAX_FENCE_COMMAND`] bytes (its length).
    #[error("fence_command is {0} bytes long; at most {MAX_FENCE_COMMAND} are accepted")]
    FenceCommandTooLong(usize),
    /// The fence command has a NUL byte.
    #[error("fence_command must not contain a NUL byte")]
    FenceCommandNul,
}

/// The order in which HA restarts a failed host's VMs. Ordered highest first:
/// `Highest < High < Medium < Low`, so sorting ascending puts the VMs to restart first first.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HaPriority {
    /// Restarted before every other VM.
    Highest,
    /// Restarted before `medium` and `low`.
    High,
    /// The default.
    #[default]
    Medium,
    /// Restarted last.
    Low,
}

impl HaPriority {
    /// Every priority, highest first.
    pub const ALL: [HaPriority; 4] = [
        HaPriority::Highest,
        HaPriority::High,
        HaPriority::Medium,
        HaPriority::Low,
    ];

    /// The priority's JSON (and command-line) name.
    pub fn as_str(self) -> &'static str {
        match self {
            HaPriority::Highest => "highest",
            HaPriority::High => "high",
            HaPriority::Medium => "medium",
            HaPriority::Low => "low",
        }
    }
}

impl std::fmt::Display for HaPriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a host's guard does with its HA VMs when the host is isolated (it lost the console,
/// its datastore lease lives on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationResponse {
    /// Nothing: the VMs run on (the default, as in vSphere).
    #[default]
    KeepRunning,
    /// Kill the QEMUs of the HA VMs, so that they can run elsewhere at once.
    PowerOff,
    /// Ask the HA VMs' guests to power off (ACPI), kill what is left after 60 s.
    Shutdown,
}

impl IsolationResponse {
    /// The response's JSON (and command-line) name.
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationResponse::KeepRunning => "keep-running",
            IsolationResponse::PowerOff => "power-off",
            IsolationResponse::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for IsolationResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM's HA policy (`ha` in its spec). Default: off, priority medium, no start-after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmHa {
    /// Restart the VM on another host when its host fails.
    #[serde(default)]
    pub enabled: bool,
    /// Restart order among the failed host's VMs.
    #[serde(default)]
    pub priority: HaPriority,
    /// Restart this VM only after the VM of this name runs (an existing VM, not the VM itself,
    /// and no circle of start-afters); `null`: no ordering.
    #[serde(default)]
    pub start_after: Option<String>,
}

impl VmHa {
    /// Checks what can be checked without the other VMs: `start_after` is a valid name.
    pub fn validate(&self) -> Result<(), HaError> {
        if let Some(after) = &self.start_after {
            crate::validate_name(after).map_err(HaError::StartAfterName)?;
        }
        Ok(())
    }

    /// One line: `off`, `on, priority medium`, `on, priority high, start after db-1` (the
    /// priority of a VM with HA off only when it is not the default).
    pub fn describe(&self) -> String {
        let mut s = if self.enabled { "on" } else { "off" }.to_string();
        if self.enabled || self.priority != HaPriority::default() {
            s.push_str(&format!(", priority {}", self.priority));
        }
        if let Some(after) = &self.start_after {
            s.push_str(&format!(", start after {after}"));
        }
        s
    }
}

/// A change of a VM's HA policy: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmHaUpdate {
    /// HA on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The restart priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<HaPriority>,
    /// The VM to start after; `null` removes the ordering.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::api::double_option"
    )]
    #[schema(value_type = Option<String>)]
    pub start_after: Option<Option<String>>,
}

impl VmHaUpdate {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.enabled.is_none() && self.priority.is_none() && self.start_after.is_none()
    }

    /// `ha` with the fields given changed.
    pub fn apply(&self, ha: &VmHa) -> VmHa {
        VmHa {
            enabled: self.enabled.unwrap_or(ha.enabled),
            priority: self.priority.unwrap_or(ha.priority),
            start_after: self
                .start_after
                .clone()
                .unwrap_or_else(|| ha.start_after.clone()),
        }
    }
}

fn default_tolerate() -> u32 {
    1
}

fn default_fence_after() -> u64 {
    30
}

/// The cluster's HA settings (`ha` in the cluster settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaSettings {
    /// Host failures the cluster keeps room for: powering on an HA VM that would leave some
    /// failure of this many hosts with an HA VM nowhere to restart is refused (0 to 32,
    /// default 1; enforced only while HA VMs exist).
    #[serde(default = "default_tolerate")]
    pub tolerate_host_failures: u32,
    /// What an isolated host's guard does with its HA VMs.
    #[serde(default)]
    pub isolation_response: IsolationResponse,
    /// Fence an isolated host that has HA VMs with its fence command after
    /// `isolation_fence_after_s`, then restart its VMs elsewhere (default off).
    #[serde(default)]
    pub fence_isolated: bool,
    /// Seconds a host stays isolated before it is fenced when `fence_isolated` is on (5 to
    /// 3600, default 30).
    #[serde(default = "default_fence_after")]
    pub isolation_fence_after_s: u64,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            tolerate_host_failures: default_tolerate(),
            isolation_response: IsolationResponse::default(),
            fence_isolated: false,
            isolation_fence_after_s: default_fence_after(),
        }
    }
}

impl HaSettings {
    /// Checks every field; the error names the field and its range.
    pub fn validate(&self) -> Result<(), HaError> {
        if !TOLERATE_HOST_FAILURES_RANGE.contains(&self.tolerate_host_failures) {
            return Err(HaError::OutOfRange {
                field: "tolerate_host_failures",
                min: u64::from(*TOLERATE_HOST_FAILURES_RANGE.start()),
                max: u64::from(*TOLERATE_HOST_FAILURES_RANGE.end()),
                got: u64::from(self.tolerate_host_failures),
            });
        }
        if !ISOLATION_FENCE_AFTER_RANGE_S.contains(&self.isolation_fence_after_s) {
            return Err(HaError::OutOfRange {
                field: "isolation_fence_after_s",
                min: *ISOLATION_FENCE_AFTER_RANGE_S.start(),
                max: *ISOLATION_FENCE_AFTER_RANGE_S.end(),
                got: self.isolation_fence_after_s,
            });
        }
        Ok(())
    }
}

/// Checks a host's fence command: not empty, at most [`MAX_FENCE_COMMAND`] bytes, no NUL.
pub fn validate_fence_command(command: &str) -> Result<(), HaError> {
    if command.trim().is_empty() {
        return Err(HaError::FenceCommandEmpty);
    }
    if command.len() > MAX_FENCE_COMMAND {
        return Err(HaError::FenceCommandTooLong(command.len()));
    }
    if command.contains('\0') {
        return Err(HaError::FenceCommandNul);
    }
    Ok(())
}

/// What a host's fence command did (`POST /api/v1/hosts/{name}/fence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FenceOutcome {
    /// The host.
    pub host: String,
    /// True when the command exited 0: the host is off.
    pub fenced: bool,
    /// The command's exit code; `null` when it was killed (by a signal, or at its timeout).
    pub exit_code: Option<i32>,
    /// True when it ran out of time and was killed.
    #[serde(default)]
    pub timed_out: bool,
    /// How long it ran, milliseconds.
    pub duration_ms: u64,
    /// The last 2 KiB of what it wrote (standard output and error together), lossily decoded.
    pub output_tail: String,
}

impl FenceOutcome {
    /// How it ended, in a few words: `exit 0`, `exit 1`, `killed by a signal`,
    /// `timed out after 60 s` (whole seconds, rounded down; milliseconds under 1 s).
    pub fn ending(&self) -> String {
        match (self.timed_out, self.exit_code) {
            (true, _) if self.duration_ms < 1000 => {
                format!("timed out after {} ms", self.duration_ms)
            }
            (true, _) => format!("timed out after {} s", self.duration_ms / 1000),
            (false, Some(code)) => format!("exit {code}"),
            (false, None) => "killed by a signal".to_string(),
        }
    }

    /// The output's tail on one line (lines joined with ` | `), empty when there was none.
    pub fn tail_line(&self) -> String {
        self.output_tail
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// Scenarios listed one by one in [`HaReserve::scenarios`] when there are at most this many;
/// above, only the failing ones are (the holding ones are counted).
pub const RESERVE_LIST_ALL_UP_TO: usize = 64;

/// The cluster's HA status (`GET /api/v1/ha`): settings, each host's HA state, the reserve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HaStatus {
    /// The cluster's HA settings.
    pub settings: HaSettings,
    /// Each host's HA state, in name order.
    pub hosts: Vec<HostHaStatus>,
    /// The admission reserve: what each failure scenario would need, and whether it fits.
    pub reserve: HaReserve,
}

/// One host's HA state as the console's HA controller last assessed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostHaStatus {
    /// The host.
    pub name: String,
    /// `connected`, `isolated`, `failed`, `fenced` or `unprotected`; `unknown` before the HA
    /// controller's first look at it.
    pub state: String,
    /// The state with its detail (`isolated (agent absent for 12 s)`).
    pub detail: String,
    /// Seconds in this state.
    pub for_s: u64,
    /// The host's lease as last read (incarnation, counter); `null` when none was read.
    pub lease: Option<LeaseStamp>,
}

/// A host lease's incarnation and renewal counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseStamp {
    /// The guard's incarnation (new at each start).
    pub incarnation: u64,
    /// Renewals in this incarnation.
    pub counter: u64,
}

/// The admission reserve (docs/design.md, "Admission control").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HaReserve {
    /// Host failures tolerated (the setting).
    pub tolerate: u32,
    /// False when nothing is checked: no HA VM runs, or `tolerate` is 0.
    pub enforced: bool,
    /// True when every scenario holds: every HA VM of any `tolerate` failed hosts restarts
    /// elsewhere (with N > 1, for the N hosts running the most HA memory).
    pub holds: bool,
    /// Running HA VMs.
    pub ha_vms: usize,
    /// Scenarios planned (those with HA VMs to restart).
    pub scenarios_total: usize,
    /// Scenarios that hold.
    pub scenarios_holding: usize,
    /// The scenarios: all of them when there are at most [`RESERVE_LIST_ALL_UP_TO`], else only
    /// those that fail.
    pub scenarios: Vec<HaScenario>,
}

/// One failure scenario: the hosts that fail, what they ran, where it would restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HaScenario {
    /// The hosts that fail.
    pub failed: Vec<String>,
    /// True when every HA VM below restarts.
    pub holds: bool,
    /// Their HA VMs in the restart plan's order (those placed first), each with its size and
    /// where it would restart.
    pub vms: Vec<HaRestartNeed>,
    /// vCPUs of all of them.
    pub demand_vcpus: u64,
    /// Memory of all of them, MiB.
    pub demand_memory_mib: u64,
    /// vCPUs of those no host would take.
    pub shortfall_vcpus: u64,
    /// Memory of those no host would take, MiB.
    pub shortfall_memory_mib: u64,
}

/// An HA VM a scenario restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HaRestartNeed {
    /// The VM.
    pub vm: String,
    /// Its vCPUs.
    pub vcpus: u32,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// The host it would restart on; `null`: none would take it.
    pub restarts_on: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        assert_eq!(
            VmHa::default(),
            VmHa {
                enabled: false,
                priority: HaPriority::Medium,
                start_after: None
            }
        );
        let s = HaSettings::default();
        assert_eq!(
            (
                s.tolerate_host_failures,
                s.isolation_response,
                s.fence_isolated,
                s.isolation_fence_after_s
            ),
            (1, IsolationResponse::KeepRunning, false, 30)
        );
        let empty: HaSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, s);
        let empty: VmHa = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, VmHa::default());
    }

    #[test]
    fn names_on_the_wire() {
        for (p, s) in [
            (HaPriority::Highest, "\"highest\""),
            (HaPriority::High, "\"high\""),
            (HaPriority::Medium, "\"medium\""),
            (HaPriority::Low, "\"low\""),
        ] {
            assert_eq!(serde_json::to_string(&p).unwrap(), s);
            assert_eq!(serde_json::from_str::<HaPriority>(s).unwrap(), p);
            assert_eq!(format!("\"{p}\""), s);
        }
        for (r, s) in [
            (IsolationResponse::KeepRunning, "\"keep-running\""),
            (IsolationResponse::PowerOff, "\"power-off\""),
            (IsolationResponse::Shutdown, "\"shutdown\""),
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), s);
            assert_eq!(serde_json::from_str::<IsolationResponse>(s).unwrap(), r);
            assert_eq!(format!("\"{r}\""), s);
        }
        assert!(serde_json::from_str::<HaPriority>("\"urgent\"").is_err());
        assert!(serde_json::from_str::<IsolationResponse>("\"power_off\"").is_err());
        assert!(serde_json::from_str::<VmHa>(r#"{"enabled":true,"bogus":1}"#).is_err());
    }

    #[test]
    fn priorities_sort_highest_first() {
        let mut v = vec![
            HaPriority::Low,
            HaPriority::Highest,
            HaPriority::Medium,
            HaPriority::High,
        ];
        v.sort();
        assert_eq!(v, HaPriority::ALL);
        assert!(HaPriority::Highest < HaPriority::Low);
    }

    #[test]
    fn settings_are_range_checked_naming_the_field() {
        let ok = HaSettings {
            tolerate_host_failures: 32,
            isolation_fence_after_s: 5,
            ..HaSettings::default()
        };
        ok.validate().unwrap();
        let e = HaSettings {
            tolerate_host_failures: 33,
            ..HaSettings::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ha.tolerate_host_failures must be between 0 and 32, got 33"
        );
        for bad in [4, 3601] {
            let e = HaSettings {
                isolation_fence_after_s: bad,
                ..HaSettings::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("ha.isolation_fence_after_s must be between 5 and 3600, got {bad}")
            );
        }
    }

    #[test]
    fn updates_change_only_what_they_name() {
        let ha = VmHa {
            enabled: true,
            priority: HaPriority::High,
            start_after: Some("db".into()),
        };
        assert!(VmHaUpdate::default().is_empty());
        assert_eq!(VmHaUpdate::default().apply(&ha), ha);
        let u: VmHaUpdate = serde_json::from_str(r#"{"priority":"low"}"#).unwrap();
        assert_eq!(
            u.apply(&ha),
            VmHa {
                priority: HaPriority::Low,
                ..ha.clone()
            }
        );
        let clear: VmHaUpdate = serde_json::from_str(r#"{"start_after":null}"#).unwrap();
        assert_eq!(clear.start_after, Some(None));
        assert_eq!(clear.apply(&ha).start_after, None);
        assert_eq!(clear.apply(&ha).priority, HaPriority::High);
        let json = serde_json::to_string(&clear).unwrap();
        assert_eq!(json, r#"{"start_after":null}"#);
        assert_eq!(serde_json::to_string(&VmHaUpdate::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<VmHaUpdate>(r#"{"enabled":"yes"}"#).is_err());
    }

    #[test]
    fn policies_in_words() {
        let mut ha = VmHa::default();
        assert_eq!(ha.describe(), "off");
        ha.enabled = true;
        assert_eq!(ha.describe(), "on, priority medium");
        ha.priority = HaPriority::High;
        ha.start_after = Some("db-1".into());
        assert_eq!(ha.describe(), "on, priority high, start after db-1");
        ha.enabled = false;
        assert_eq!(ha.describe(), "off, priority high, start after db-1");
    }

    #[test]
    fn start_after_must_be_a_name() {
        let bad = VmHa {
            start_after: Some("../x".into()),
            ..VmHa::default()
        };
        let line = crate::error::chain(&bad.validate().unwrap_err());
        assert!(line.starts_with("ha.start_after: "), "{line}");
    }

    #[test]
    fn fence_commands() {
        validate_fence_command("ipmitool -H bmc1 power off").unwrap();
        assert_eq!(
            validate_fence_command(" \n"),
            Err(HaError::FenceCommandEmpty)
        );
        assert_eq!(
            validate_fence_command("a\0b"),
            Err(HaError::FenceCommandNul)
        );
        validate_fence_command(&"a".repeat(MAX_FENCE_COMMAND)).unwrap();
        assert_eq!(
            validate_fence_command(&"a".repeat(MAX_FENCE_COMMAND + 1)),
            Err(HaError::FenceCommandTooLong(MAX_FENCE_COMMAND + 1))
        );
    }

    #[test]
    fn fence_outcomes_in_words() {
        let mut o = FenceOutcome {
            host: "h2".into(),
            fenced: false,
            exit_code: Some(1),
            timed_out: false,
            duration_ms: 1500,
            output_tail: "no route to BMC\n\n  retrying  \nfailed\n".into(),
        };
        assert_eq!(o.ending(), "exit 1");
        assert_eq!(o.tail_line(), "no route to BMC | retrying | failed");
        o.timed_out = true;
        o.exit_code = None;
        assert_eq!(o.ending(), "timed out after 1 s");
        o.duration_ms = 500;
        assert_eq!(o.ending(), "timed out after 500 ms");
        o.timed_out = false;
        assert_eq!(o.ending(), "killed by a signal");
    }
}
