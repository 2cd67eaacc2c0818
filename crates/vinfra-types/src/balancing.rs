//! Balancing settings, placement rules, recommendations and the balancer's status, as the REST
//! API carries them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the console does with the balancer's plans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BalancingMode {
    /// No balancing.
    #[default]
    Off,
    /// Plans are listed as recommendations; an operator applies them.
    Manual,
    /// The console applies plans through live migration.
    Automatic,
}

impl BalancingMode {
    /// The name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancingMode::Off => "off",
            BalancingMode::Manual => "manual",
            BalancingMode::Automatic => "automatic",
        }
    }
}

/// Accepted range of `balancing.level`.
pub const BALANCING_LEVEL_RANGE: std::ops::RangeInclusive<u8> = 1..=5;
/// Accepted range of `balancing.interval_s`.
pub const BALANCING_INTERVAL_RANGE_S: std::ops::RangeInclusive<u64> = 5..=3600;
/// Accepted range of `balancing.max_moves_per_host`.
pub const BALANCING_MOVES_PER_HOST_RANGE: std::ops::RangeInclusive<u32> = 1..=64;
/// Accepted range of `balancing.max_moves_total`.
pub const BALANCING_MOVES_TOTAL_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
/// Accepted range of `balancing.hysteresis_minutes`.
pub const BALANCING_HYSTERESIS_RANGE_MIN: std::ops::RangeInclusive<u32> = 0..=1440;

fn default_level() -> u8 {
    3
}
fn default_interval() -> u64 {
    60
}
fn default_moves_per_host() -> u32 {
    2
}
fn default_moves_total() -> u32 {
    8
}
fn default_hysteresis() -> u32 {
    30
}

/// `balancing` in the cluster settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BalancingSettings {
    /// `off` (default), `manual` or `automatic`.
    #[serde(default)]
    pub mode: BalancingMode,
    /// Migration threshold, 1 (only hard violations: must-rules, over-capacity, maintenance)
    /// to 5 (aggressive); default 3.
    #[serde(default = "default_level")]
    pub level: u8,
    /// Seconds between balancing passes (5 to 3600, default 60).
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// Most migrations a pass starts to or from one host, counting those still running
    /// (1 to 64, default 2).
    #[serde(default = "default_moves_per_host")]
    pub max_moves_per_host: u32,
    /// Most migrations a pass starts in the cluster, counting those still running (1 to 1000,
    /// default 8).
    #[serde(default = "default_moves_total")]
    pub max_moves_total: u32,
    /// A VM migrated less than this many minutes ago is not moved again except to repair a hard
    /// violation (0 to 1440, default 30).
    #[serde(default = "default_hysteresis")]
    pub hysteresis_minutes: u32,
}

impl Default for BalancingSettings {
    fn default() -> Self {
        BalancingSettings {
            mode: BalancingMode::Off,
            level: default_level(),
            interval_s: default_interval(),
            max_moves_per_host: default_moves_per_host(),
            max_moves_total: default_moves_total(),
            hysteresis_minutes: default_hysteresis(),
        }
    }
}

fn check<T: PartialOrd + std::fmt::Display>(
    what: &str,
    v: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "balancing.{what} must be between {} and {}, got {v}",
            range.start(),
            range.end()
        ))
    }
}

impl BalancingSettings {
    /// Checks every field; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        check("level", self.level, &BALANCING_LEVEL_RANGE)?;
        check("interval_s", self.interval_s, &BALANCING_INTERVAL_RANGE_S)?;
        check(
            "max_moves_per_host",
            self.max_moves_per_host,
            &BALANCING_MOVES_PER_HOST_RANGE,
        )?;
        check(
            "max_moves_total",
            self.max_moves_total,
            &BALANCING_MOVES_TOTAL_RANGE,
        )?;
        check(
            "hysteresis_minutes",
            self.hysteresis_minutes,
            &BALANCING_HYSTERESIS_RANGE_MIN,
        )
    }
}

/// Hard or soft rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleStrength {
    /// Never broken by placement or balancing; contradictions are refused.
    Must,
    /// Preferred; weighed against load.
    Should,
}

/// What a rule asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The VMs run on one host.
    Affinity,
    /// The VMs run on pairwise different hosts.
    AntiAffinity,
    /// Each VM runs on one of `hosts`.
    RunOn,
    /// No VM runs on any of `hosts`.
    NotOn,
}

impl RuleKind {
    /// True for the kinds that name hosts.
    pub fn names_hosts(self) -> bool {
        matches!(self, RuleKind::RunOn | RuleKind::NotOn)
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Affinity => "affinity",
            RuleKind::AntiAffinity => "anti_affinity",
            RuleKind::RunOn => "run_on",
            RuleKind::NotOn => "not_on",
        }
    }
}

/// A placement rule (`POST /api/v1/rules`, stored under `/vinfra/rules/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementRule {
    /// Unique rule name (lowercase letters, digits, `-`).
    pub name: String,
    /// `must` (never broken) or `should` (kept when possible).
    pub strength: RuleStrength,
    /// What the rule asks for.
    pub kind: RuleKind,
    /// The VMs the rule is about (at least two for affinity and anti-affinity).
    pub vms: Vec<String>,
    /// Hosts of a `run_on` or `not_on` rule; empty (or absent) for the others.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// What a recommended migration is expected to bring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExpectedGain {
    /// Cluster imbalance removed (negative: added, as an evacuation may).
    pub imbalance: f64,
    /// Cross-host traffic removed, bytes/s.
    pub traffic_bytes_per_s: i64,
    /// Should-rule violations removed.
    pub should_violations: i64,
    /// Memory the migration copies, MiB.
    pub memory_mib: u64,
    /// Net score (benefit minus the cost of copying the memory).
    pub score: f64,
}

/// One recommended migration of the latest plan (`GET /api/v1/drs/recommendations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    /// Identifier for `POST /api/v1/drs/recommendations/{id}/apply`; never reused.
    pub id: u64,
    /// The VM to move.
    pub vm: String,
    /// The host it is on.
    pub from: String,
    /// The host it should go to.
    pub to: String,
    /// Why, in words, e.g. `lowers imbalance from 0.3100 to 0.1200`.
    pub reason: String,
    /// What the move is expected to bring.
    pub expected_gain: ExpectedGain,
    /// VMs that move to the same host with this one to keep a must-affinity rule.
    pub with: Vec<String>,
}

/// Summary of a balancing plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlanSummary {
    /// When the plan was computed, seconds since the Unix epoch.
    pub at: u64,
    /// Standard deviation of the normalized host loads before the plan.
    pub imbalance_before: f64,
    /// The same after the plan.
    pub imbalance_after: f64,
    /// Migrations in the plan.
    pub moves: u32,
    /// Migrations started (automatic mode).
    pub started: u32,
    /// Cross-host VM-to-VM traffic before the plan, bytes/s.
    pub cross_host_traffic_before: u64,
    /// The same after the plan, bytes/s.
    pub cross_host_traffic_after: u64,
    /// Hard problems (broken must-rules, hosts over capacity, VMs on hosts in maintenance)
    /// before the plan.
    pub hard_violations_before: u64,
    /// The same after the plan.
    pub hard_violations_after: u64,
}

/// `GET /api/v1/drs`: the balancer's settings and its last pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DrsStatus {
    /// Off, manual (recommendations only) or automatic (migrates).
    pub mode: BalancingMode,
    /// How hard it balances, 1 (only hard problems) to 5 (most aggressive).
    pub level: u8,
    /// Seconds between passes.
    pub interval_s: u64,
    /// When the last pass ran, seconds since the Unix epoch.
    pub last_run_at: Option<u64>,
    /// The last pass's plan.
    pub last_plan: Option<PlanSummary>,
    /// Why the last pass could not plan, if it could not.
    pub last_error: Option<String>,
    /// Recommendations waiting (manual mode).
    pub recommendations: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClusterSettings;

    #[test]
    fn settings_without_balancing_load_with_it_off() {
        let old = r#"{"ratios":{"cpu":4.0,"memory":1.0},"migration_downtime_limit_ms":300}"#;
        let s: ClusterSettings = serde_json::from_str(old).unwrap();
        assert_eq!(s.balancing, BalancingSettings::default());
        assert_eq!(s.balancing.mode, BalancingMode::Off);
        assert!(s.validate().is_ok());
        let partial: BalancingSettings = serde_json::from_str(r#"{"mode":"manual"}"#).unwrap();
        assert_eq!(partial.level, 3);
        assert_eq!(partial.interval_s, 60);
    }

    #[test]
    fn balancing_settings_are_range_checked() {
        let ok = BalancingSettings::default();
        assert!(ok.validate().is_ok());
        for (bad, field) in [
            (
                BalancingSettings {
                    level: 0,
                    ..ok.clone()
                },
                "level",
            ),
            (
                BalancingSettings {
                    level: 6,
                    ..ok.clone()
                },
                "level",
            ),
            (
                BalancingSettings {
                    interval_s: 4,
                    ..ok.clone()
                },
                "interval_s",
            ),
            (
                BalancingSettings {
                    max_moves_total: 0,
                    ..ok.clone()
                },
                "max_moves_total",
            ),
            (
                BalancingSettings {
                    max_moves_per_host: 65,
                    ..ok.clone()
                },
                "max_moves_per_host",
            ),
            (
                BalancingSettings {
                    hysteresis_minutes: 1441,
                    ..ok.clone()
                },
                "hysteresis_minutes",
            ),
        ] {
            assert!(bad.validate().unwrap_err().contains(field), "{bad:?}");
        }
        assert!(serde_json::from_str::<BalancingSettings>(r#"{"mode":"sometimes"}"#).is_err());
    }
}
