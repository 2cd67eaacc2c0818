//! Parsers for command-line values: sizes with units, vCPU counts, durations, `--disk` and `--nic`
//! specifications. Each returns a one-line message on bad input (clap shows it as the error).
//! Here the plain values; in `units` sizes and bounded numbers, in `nic` the `--disk` and
//! `--nic` specifications, in `qos` a NIC's rates and priorities, in `error` the refusals.

mod error;
mod nic;
mod qos;
#[cfg(test)]
mod tests;
mod units;

use std::time::Duration;

use vinfra_types::vm::{MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB};

pub use error::ParseError;
pub use nic::{allow_or_none, disk, groups_or_none, nic};
pub use qos::{burst, dscp_or_trust, qos_priority, qos_weight, rate, rate_or_none, NicQosChange};
use units::*;
pub use units::{bounded, disk_gib};

/// Guest memory: `512M`, `512MiB`, `2G`, `2GiB`, or a plain number of MiB. Returns MiB.
pub fn memory_mib(value: &str) -> Result<u64, ParseError> {
    let bytes = parse_bytes(value, "memory", MIB, "512M, 2G")?;
    if bytes == 0 {
        return Err(ParseError::Zero { what: "memory" });
    }
    let range = || ParseError::Range {
        what: "memory",
        min: format!("{MIN_MEMORY_MIB} MiB"),
        max: format!("{} TiB", MAX_MEMORY_MIB / (1024 * 1024)),
        value: value.trim().to_string(),
    };
    if bytes % MIB != 0 {
        return Err(ParseError::Number {
            what: "memory in MiB",
            value: value.trim().to_string(),
        });
    }
    let mib = u64::try_from(bytes / MIB).map_err(|_| range())?;
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(range());
    }
    Ok(mib)
}

/// A vCPU count, 1 to 256.
pub fn vcpus(value: &str) -> Result<u32, ParseError> {
    let v = value.trim();
    let n: i128 = v.parse().map_err(|_| ParseError::Number {
        what: "vcpus",
        value: v.to_string(),
    })?;
    if n < 0 {
        return Err(ParseError::Negative {
            what: "vcpus",
            value: v.to_string(),
        });
    }
    if n == 0 {
        return Err(ParseError::Zero { what: "vcpus" });
    }
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_VCPUS)
        .ok_or_else(|| ParseError::Range {
            what: "vcpus",
            min: "1".into(),
            max: MAX_VCPUS.to_string(),
            value: v.to_string(),
        })
}

/// A token's lifetime: `30d`, `12h`, `90m`, `1y`, or a plain number of seconds; 1 s to
/// ten years. In seconds.
pub fn token_lifetime(value: &str) -> Result<u64, ParseError> {
    let v = value.trim();
    if v.starts_with('-') {
        return Err(ParseError::Negative {
            what: "expiry",
            value: v.to_string(),
        });
    }
    let secs = match v.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => humantime::parse_duration(v)
            .map_err(|_| ParseError::Duration {
                value: v.to_string(),
            })?
            .as_secs(),
    };
    if !(1..=vinfra_types::auth::MAX_TOKEN_LIFETIME_S).contains(&secs) {
        return Err(ParseError::Range {
            what: "expiry",
            min: "1s".into(),
            max: "10y".into(),
            value: v.to_string(),
        });
    }
    Ok(secs)
}

/// A duration: `30s`, `2m`, `1m30s`, or a plain number of seconds; 1 s to 1 h.
pub fn stop_timeout(value: &str) -> Result<Duration, ParseError> {
    duration_within(
        "timeout",
        value,
        (Duration::from_secs(1), "1s"),
        (Duration::from_secs(3600), "1h"),
    )
}

/// A duration named `what`: `30s`, `2m`, `1m30s`, or a plain number of seconds; from `min` to
/// `max` (each with how the error names it).
pub fn duration_within(
    what: &'static str,
    value: &str,
    min: (Duration, &str),
    max: (Duration, &str),
) -> Result<Duration, ParseError> {
    let v = value.trim();
    if v.starts_with('-') {
        return Err(ParseError::Negative {
            what,
            value: v.to_string(),
        });
    }
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(v).map_err(|_| ParseError::Duration {
            value: v.to_string(),
        })?,
    };
    if d < min.0 || d > max.0 {
        return Err(ParseError::Range {
            what,
            min: min.1.into(),
            max: max.1.into(),
            value: v.to_string(),
        });
    }
    Ok(d)
}

/// An allocation ratio: a number between 0.1 and 100.
pub fn ratio(value: &str) -> Result<f64, ParseError> {
    let v = value.trim();
    let r: f64 = v.parse().map_err(|_| ParseError::Number {
        what: "ratio",
        value: v.to_string(),
    })?;
    if !r.is_finite() || !(0.1..=vinfra_types::host::MAX_RATIO).contains(&r) {
        return Err(ParseError::Range {
            what: "ratio",
            min: "0.1".into(),
            max: vinfra_types::host::MAX_RATIO.to_string(),
            value: v.to_string(),
        });
    }
    Ok(r)
}

/// A migration bandwidth cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bandwidth {
    /// No cap.
    Unlimited,
    /// MiB per second.
    MibPerS(u64),
}

impl Bandwidth {
    /// The value of `ClusterSettings::migration_max_bandwidth_mib`.
    pub fn as_setting(self) -> Option<u64> {
        match self {
            Bandwidth::Unlimited => None,
            Bandwidth::MibPerS(n) => Some(n),
        }
    }
}

/// A migration bandwidth cap: `100M`, `100MiB`, `1G`, `100M/s`, a plain number of MiB, or
/// `unlimited`; 1 MiB/s to 1,000,000 MiB/s.
pub fn migration_bandwidth(value: &str) -> Result<Bandwidth, ParseError> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("unlimited") {
        return Ok(Bandwidth::Unlimited);
    }
    let what = "migration bandwidth";
    let per_s = v.strip_suffix("/s").unwrap_or(v);
    let bytes = parse_bytes(per_s, what, MIB, "100M, 1G")?;
    if bytes == 0 {
        return Err(ParseError::Zero { what });
    }
    if bytes % MIB != 0 {
        return Err(ParseError::Number {
            what: "migration bandwidth in MiB/s",
            value: v.to_string(),
        });
    }
    let range = vinfra_types::api::MIGRATION_BANDWIDTH_RANGE_MIB;
    u64::try_from(bytes / MIB)
        .ok()
        .filter(|n| range.contains(n))
        .map(Bandwidth::MibPerS)
        .ok_or_else(|| ParseError::Range {
            what,
            min: format!("{} MiB/s", range.start()),
            max: format!("{} MiB/s", range.end()),
            value: v.to_string(),
        })
}

/// A migration downtime limit: `300ms`, `1s`, or a plain number of milliseconds; 10 ms to 60 s.
/// Returns milliseconds.
pub fn migration_downtime(value: &str) -> Result<u64, ParseError> {
    let v = value.trim();
    let what = "migration downtime";
    if v.starts_with('-') {
        return Err(ParseError::Negative {
            what,
            value: v.to_string(),
        });
    }
    let ms = match v.parse::<u64>() {
        Ok(ms) => ms,
        Err(_) => {
            let d = humantime::parse_duration(v).map_err(|_| ParseError::Duration {
                value: v.to_string(),
            })?;
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        }
    };
    let range = vinfra_types::api::MIGRATION_DOWNTIME_RANGE_MS;
    if !range.contains(&ms) {
        return Err(ParseError::Range {
            what,
            min: format!("{}ms", range.start()),
            max: format!("{}s", range.end() / 1000),
            value: v.to_string(),
        });
    }
    Ok(ms)
}

/// `on`/`off` (also `true`/`false`, `yes`/`no`).
pub fn on_off(value: &str) -> Result<bool, ParseError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(ParseError::OnOff {
            value: value.to_string(),
        }),
    }
}

/// How long an isolated host waits before it is fenced (`--isolation-fence-after`): `30s`,
/// `2m`, or a plain number of seconds; 5 s to 1 h. Returns seconds.
pub fn isolation_fence_after(value: &str) -> Result<u64, ParseError> {
    let v = value.trim();
    let what = "isolation fence delay";
    if v.starts_with('-') {
        return Err(ParseError::Negative {
            what,
            value: v.to_string(),
        });
    }
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let d = humantime::parse_duration(v).map_err(|_| ParseError::Duration {
                value: v.to_string(),
            })?;
            if d.subsec_nanos() != 0 {
                return Err(ParseError::Number {
                    what: "isolation fence delay in seconds",
                    value: v.to_string(),
                });
            }
            d.as_secs()
        }
    };
    let range = vinfra_types::ha::ISOLATION_FENCE_AFTER_RANGE_S;
    if !range.contains(&secs) {
        return Err(ParseError::Range {
            what,
            min: format!("{}s", range.start()),
            max: format!("{}s", range.end()),
            value: v.to_string(),
        });
    }
    Ok(secs)
}

/// A VM name or `none` (`--ha-start-after`): `None` for `none`.
pub fn vm_or_none(value: &str) -> Result<Option<String>, ParseError> {
    let v = value.trim();
    if v == "none" {
        return Ok(None);
    }
    vinfra_types::validate_name(v).map_err(|e| ParseError::List {
        what: "VM",
        value: v.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Some(v.to_string()))
}

/// A host's fence command (`--fence-command`): not empty, at most 4096 bytes, no NUL.
pub fn fence_command(value: &str) -> Result<String, ParseError> {
    vinfra_types::ha::validate_fence_command(value).map_err(|e| ParseError::Fence {
        reason: e.to_string(),
    })?;
    Ok(value.to_string())
}

/// A network interface name (`--trunk-interface`): 1 to 15 bytes (the kernel's limit), no `/`,
/// `:`, whitespace or control character, not `.` or `..`.
pub fn interface(value: &str) -> Result<String, ParseError> {
    let bad = |reason: &str| ParseError::List {
        what: "interface",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() || value.len() > 15 {
        return Err(bad("an interface name has 1 to 15 bytes"));
    }
    if value == "." || value == ".." {
        return Err(bad("not an interface name"));
    }
    if value
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(bad(
            "an interface name has no '/', ':', whitespace or control characters",
        ));
    }
    Ok(value.to_string())
}
