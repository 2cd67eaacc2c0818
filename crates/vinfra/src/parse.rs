//! Parsers for command-line values: sizes with units, vCPU counts, durations, `--disk` and `--nic`
//! specifications. Each returns a one-line message on bad input (clap shows it as the error).

use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_types::qos::{
    NicPriority, NicQos, NicRate, MAX_BURST_BYTES, MAX_DSCP, MAX_RATE_BPS, MAX_WEIGHT,
    MIN_BURST_BYTES, MIN_RATE_BPS,
};
use vinfra_types::vm::{MAX_DISK_GIB, MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB};
use vinfra_types::{AllowedAddressPair, DiskSpec, NicSpec, NicVlan};

/// Why a command-line value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The value is not a size like `512M` or `2G`.
    #[error("'{value}' is not a size: use a whole number with a unit M/MiB, G/GiB or T/TiB (e.g. {example})")]
    Size {
        /// The value given.
        value: String,
        /// Sizes that would do.
        example: &'static str,
    },
    /// The value is negative.
    #[error("{what} must be positive, got '{value}'")]
    Negative {
        /// What the value is.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The value is zero.
    #[error("{what} must be greater than 0")]
    Zero {
        /// What the value is.
        what: &'static str,
    },
    /// The value is outside the accepted range.
    #[error("{what} must be between {min} and {max}, got {value}")]
    Range {
        /// What the value is.
        what: &'static str,
        /// The smallest accepted, with its unit.
        min: String,
        /// The largest accepted, with its unit.
        max: String,
        /// The value given.
        value: String,
    },
    /// The value is not a whole number.
    #[error("{what} must be a whole number, got '{value}'")]
    Number {
        /// What the value is.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The value is not a duration.
    #[error("'{value}' is not a duration (e.g. 30s, 2m)")]
    Duration {
        /// The value given.
        value: String,
    },
    /// The value is not `on` or `off`.
    #[error("'{value}' is neither on nor off")]
    OnOff {
        /// The value given.
        value: String,
    },
    /// The fence command is not acceptable.
    #[error("{reason}")]
    Fence {
        /// Why, in the words of `vinfra_types::ha`.
        reason: String,
    },
    /// A `key=value` list (or a value in it) is malformed.
    #[error("{what} '{value}': {reason}")]
    List {
        /// What the list is (`disk`, `nic`, …).
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

const KIB: u128 = 1024;
const MIB: u128 = KIB * 1024;
const GIB: u128 = MIB * 1024;
const TIB: u128 = GIB * 1024;

/// Parses `<n><unit>` into bytes; a plain number is in `default_unit` bytes. Units are binary
/// (`M` = `MiB` = `MB` = 2^20) and case-insensitive.
fn parse_bytes(
    value: &str,
    what: &'static str,
    default_unit: u128,
    example: &'static str,
) -> Result<u128, ParseError> {
    let v = value.trim();
    if v.starts_with('-') {
        return Err(ParseError::Negative {
            what,
            value: value.to_string(),
        });
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let bad = || ParseError::Size {
        value: value.to_string(),
        example,
    };
    if num.is_empty() {
        return Err(bad());
    }
    let unit_bytes = match unit.trim().to_ascii_lowercase().as_str() {
        "" => default_unit,
        "k" | "kb" | "ki" | "kib" => KIB,
        "m" | "mb" | "mi" | "mib" => MIB,
        "g" | "gb" | "gi" | "gib" => GIB,
        "t" | "tb" | "ti" | "tib" => TIB,
        _ => return Err(bad()),
    };
    // More than 30 digits cannot be a sensible size; it would also overflow.
    let n: u128 = if num.len() > 30 {
        u128::MAX / TIB
    } else {
        num.parse().map_err(|_| bad())?
    };
    Ok(n.saturating_mul(unit_bytes))
}

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

/// A disk size: `10G`, `1T`, or a plain number of GiB. Returns GiB.
pub fn disk_gib(value: &str) -> Result<u64, ParseError> {
    let bytes = parse_bytes(value, "disk size", GIB, "10G, 1T")?;
    if bytes == 0 {
        return Err(ParseError::Zero { what: "disk size" });
    }
    if bytes % GIB != 0 {
        return Err(ParseError::Number {
            what: "disk size in GiB",
            value: value.trim().to_string(),
        });
    }
    let range = || ParseError::Range {
        what: "disk size",
        min: "1 GiB".into(),
        max: format!("{} TiB", MAX_DISK_GIB / 1024),
        value: value.trim().to_string(),
    };
    let gib = u64::try_from(bytes / GIB).map_err(|_| range())?;
    if gib > MAX_DISK_GIB {
        return Err(range());
    }
    Ok(gib)
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

/// A positive whole number between `min` and `max` (used for byte counts, ports, cores).
pub fn bounded(value: &str, what: &'static str, min: u64, max: u64) -> Result<u64, ParseError> {
    let v = value.trim();
    let n: i128 = v.parse().map_err(|_| ParseError::Number {
        what,
        value: v.to_string(),
    })?;
    if n < 0 {
        return Err(ParseError::Negative {
            what,
            value: v.to_string(),
        });
    }
    u64::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| ParseError::Range {
            what,
            min: min.to_string(),
            max: max.to_string(),
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

fn pairs<'a>(what: &'static str, value: &'a str) -> Result<Vec<(&'a str, &'a str)>, ParseError> {
    value
        .split(',')
        .map(|part| {
            part.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| ParseError::List {
                    what,
                    value: value.to_string(),
                    reason: format!("'{part}' is not key=value"),
                })
        })
        .collect()
}

/// `--disk name=root,image=debian.qcow2,size=10G` (`image` and `size` optional; a blank disk
/// needs `size`).
pub fn disk(value: &str) -> Result<DiskSpec, ParseError> {
    let err = |reason: String| ParseError::List {
        what: "disk",
        value: value.to_string(),
        reason,
    };
    let mut d = DiskSpec {
        name: String::new(),
        image: None,
        size_gib: None,
    };
    for (k, v) in pairs("disk", value)? {
        match k {
            "name" => d.name = v.to_string(),
            "image" => d.image = Some(v.to_string()),
            "size" => d.size_gib = Some(disk_gib(v).map_err(|e| err(e.to_string()))?),
            _ => return Err(err(format!("unknown key '{k}' (use name, image, size)"))),
        }
    }
    if d.name.is_empty() {
        return Err(err("name= is required".into()));
    }
    Ok(d)
}

/// `--nic NETWORK[,ip=A.B.C.D][,mac=xx:xx:xx:xx:xx:xx][,port-security=on|off]
/// [,allow=IP[/LEN][@MAC][+...]][,sg=GROUP[+...]][,rate=R][,egress-rate=R][,ingress-rate=R]
/// [,burst=B][,priority=low|normal|high][,weight=N][,dscp=N|trust][,vlan=VID[,parent=N]]`:
/// each key at most once, with a value. `vlan` makes the NIC an 802.1Q sub-interface with tag
/// VID of the VM's NIC `parent` (an earlier `--nic`, counted from 0; the first by default). `allow` lists the NIC's allowed address pairs, `+`-separated: an address or
/// prefix, sent from the NIC's MAC or the one after `@`. `sg` lists its security groups,
/// `+`-separated. The rest is its QoS ([`NicQosChange`]): `rate` limits both directions,
/// `egress-rate` (what the VM sends) and `ingress-rate` (what goes to it) one each.
pub fn nic(value: &str) -> Result<NicSpec, ParseError> {
    let err = |reason: String| ParseError::List {
        what: "nic",
        value: value.to_string(),
        reason,
    };
    let (network, rest) = match value.split_once(',') {
        Some((n, rest)) => (n.trim(), Some(rest)),
        None => (value.trim(), None),
    };
    let network = network.strip_prefix("network=").unwrap_or(network);
    if network.is_empty() || network.contains('=') {
        return Err(err("start with the network name".into()));
    }
    let mut n = NicSpec {
        network: network.to_string(),
        ..Default::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut qos = NicQosChange::default();
    let (mut vid, mut parent) = (None, None);
    if let Some(rest) = rest {
        for (k, v) in pairs("nic", rest)? {
            if seen.contains(&k) {
                return Err(err(format!("{k}= is given more than once")));
            }
            seen.push(k);
            if v.is_empty() {
                return Err(err(format!("{k}= needs a value")));
            }
            match k {
                "ip" => {
                    let ip = v
                        .parse::<Ipv4Addr>()
                        .map_err(|_| err(format!("'{v}' is not an IPv4 address")))?;
                    n.ip = Some(ip.to_string());
                }
                "mac" => n.mac = Some(mac(v).map_err(err)?),
                "port-security" => {
                    n.port_security = Some(match v {
                        "on" => true,
                        "off" => false,
                        _ => return Err(err(format!("port-security is on or off, not '{v}'"))),
                    })
                }
                "allow" => n.allowed_addresses = allowed_pairs(v).map_err(err)?,
                "sg" => n.security_groups = group_names(v, '+').map_err(err)?,
                "rate" => qos.rate = Some(Some(rate(v).map_err(|e| err(e.to_string()))?)),
                "egress-rate" => {
                    qos.egress_rate = Some(Some(rate(v).map_err(|e| err(e.to_string()))?))
                }
                "ingress-rate" => {
                    qos.ingress_rate = Some(Some(rate(v).map_err(|e| err(e.to_string()))?))
                }
                "burst" => qos.burst = Some(burst(v).map_err(|e| err(e.to_string()))?),
                "priority" => qos.priority = Some(qos_priority(v).map_err(|e| err(e.to_string()))?),
                "weight" => qos.weight = Some(qos_weight(v).map_err(|e| err(e.to_string()))?),
                "dscp" => qos.dscp = Some(dscp_or_trust(v).map_err(|e| err(e.to_string()))?),
                "vlan" => {
                    vid = Some(
                        v.parse::<u16>()
                            .ok()
                            .filter(|vid| (1..=4094).contains(vid))
                            .ok_or_else(|| {
                                err(format!("vlan: '{v}' is not a VLAN ID from 1 to 4094"))
                            })?,
                    )
                }
                "parent" => {
                    parent = Some(v.parse::<usize>().map_err(|_| {
                        err(format!(
                            "parent: '{v}' is not a NIC number (0 is the first --nic)"
                        ))
                    })?)
                }
                _ => {
                    return Err(err(format!(
                        "unknown key '{k}' (use ip, mac, port-security, allow, sg, rate, \
                         egress-rate, ingress-rate, burst, priority, weight, dscp, vlan, parent)"
                    )))
                }
            }
        }
    }
    n.vlan = match (vid, parent) {
        (Some(vid), parent) => Some(NicVlan {
            parent: parent.unwrap_or(0),
            vid,
        }),
        (None, Some(_)) => return Err(err("parent= goes with vlan=".into())),
        (None, None) => None,
    };
    n.qos = qos.apply(None).map_err(err)?;
    Ok(n)
}

/// Allowed address pairs `IP[/LEN][@MAC][+...]`, or why not.
fn allowed_pairs(value: &str) -> Result<Vec<AllowedAddressPair>, String> {
    let mut out = Vec::new();
    for item in value.split('+') {
        let (ip, pair_mac) = match item.split_once('@') {
            Some((ip, m)) => (ip.trim(), Some(mac(m.trim())?)),
            None => (item.trim(), None),
        };
        let pair = AllowedAddressPair {
            ip: ip.to_string(),
            mac: pair_mac,
        };
        if pair.prefix().is_none() {
            return Err(format!(
                "allow: '{ip}' is not an IPv4 address or prefix like 10.0.0.0/29"
            ));
        }
        out.push(pair);
    }
    Ok(out)
}

/// Security group names separated by `sep`, each a valid name, or why not.
fn group_names(value: &str, sep: char) -> Result<Vec<String>, String> {
    value
        .split(sep)
        .map(str::trim)
        .map(|g| {
            vinfra_types::validate_name(g)
                .map(|()| g.to_string())
                .map_err(|e| format!("security group '{g}': {e}"))
        })
        .collect()
}

/// Splits `1.5G` into its digits (`1`, `5`) and suffix (`G`); `None` unless it is digits, at
/// most one `.` with digits after it, then letters.
fn number_and_suffix(v: &str) -> Option<(&str, &str, &str)> {
    let end = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(end);
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| d.chars().all(|c| c.is_ascii_digit());
    let ok = !whole.is_empty()
        && digits(whole)
        && digits(frac)
        && frac.len() < 19
        && !num.ends_with('.');
    ok.then_some((whole, frac, suffix))
}

/// `whole.frac × unit` when it is a whole number that fits, else `None`.
fn scaled(whole: &str, frac: &str, unit: u128) -> Option<u128> {
    let w: u128 = if whole.len() > 30 {
        return None;
    } else {
        whole.parse().ok()?
    };
    let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let frac_part = f.checked_mul(unit)?;
    (frac_part % scale == 0).then_some(w.checked_mul(unit)?.checked_add(frac_part / scale)?)
}

/// A rate in bits per second with a decimal SI suffix: `100M` (100,000,000), `1.5G`, `500k`,
/// or a plain number of bits per second; 8k to 400G.
pub fn rate(value: &str) -> Result<u64, ParseError> {
    let v = value.trim();
    let bad = || {
        ParseError::List {
        what: "rate",
        value: v.to_string(),
        reason: "use bits per second with k, M, G or T (decimal: 100M = 100,000,000), e.g. 100M, 1.5G, 500k".into(),
    }
    };
    let (whole, frac, suffix) = number_and_suffix(v).ok_or_else(bad)?;
    let unit: u128 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bits = scaled(whole, frac, unit).ok_or_else(|| ParseError::Number {
        what: "rate in bits per second",
        value: v.to_string(),
    })?;
    u64::try_from(bits)
        .ok()
        .filter(|b| (MIN_RATE_BPS..=MAX_RATE_BPS).contains(b))
        .ok_or_else(|| ParseError::Range {
            what: "rate",
            min: "8k (8,000 bit/s)".into(),
            max: "400G".into(),
            value: v.to_string(),
        })
}

/// A burst in bytes with a binary suffix, as `tc` takes it: `1M` (1,048,576), `64K`, `1.5M`,
/// or a plain number of bytes; 1514 to 1G.
pub fn burst(value: &str) -> Result<u64, ParseError> {
    let v = value.trim();
    let bad = || ParseError::List {
        what: "burst",
        value: v.to_string(),
        reason: "use bytes with K, M or G (binary: 1M = 1,048,576), e.g. 64K, 1M".into(),
    };
    let (whole, frac, suffix) = number_and_suffix(v).ok_or_else(bad)?;
    let unit = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => return Err(bad()),
    };
    let b = scaled(whole, frac, unit).ok_or_else(|| ParseError::Number {
        what: "burst in bytes",
        value: v.to_string(),
    })?;
    u64::try_from(b)
        .ok()
        .filter(|b| (MIN_BURST_BYTES..=MAX_BURST_BYTES).contains(b))
        .ok_or_else(|| ParseError::Range {
            what: "burst",
            min: "1514 bytes".into(),
            max: "1G".into(),
            value: v.to_string(),
        })
}

/// A rate, or `none` (no limit that way).
pub fn rate_or_none(value: &str) -> Result<Option<u64>, ParseError> {
    if value.trim() == "none" {
        return Ok(None);
    }
    rate(value).map(Some)
}

/// A QoS priority class: `low`, `normal` or `high`.
pub fn qos_priority(value: &str) -> Result<NicPriority, ParseError> {
    match value.trim() {
        "low" => Ok(NicPriority::Low),
        "normal" => Ok(NicPriority::Normal),
        "high" => Ok(NicPriority::High),
        other => Err(ParseError::List {
            what: "priority",
            value: other.to_string(),
            reason: "use low, normal or high".into(),
        }),
    }
}

/// A QoS weight, 1 to 100.
pub fn qos_weight(value: &str) -> Result<u16, ParseError> {
    bounded(value, "weight", 1, u64::from(MAX_WEIGHT)).map(|w| w as u16)
}

/// A DSCP value to mark (0 to 63), or `trust` (keep the guest's).
pub fn dscp_or_trust(value: &str) -> Result<Option<u8>, ParseError> {
    if value.trim() == "trust" {
        return Ok(None);
    }
    bounded(value, "dscp", 0, u64::from(MAX_DSCP)).map(|d| Some(d as u8))
}

/// A change of a NIC's QoS from the command line; fields not given keep what the NIC has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicQosChange {
    /// Both directions' rate (`Some(None)`: unlimited).
    pub rate: Option<Option<u64>>,
    /// What the VM sends.
    pub egress_rate: Option<Option<u64>>,
    /// What goes to the VM.
    pub ingress_rate: Option<Option<u64>>,
    /// The burst of the rates set (those given now, else those the NIC has).
    pub burst: Option<u64>,
    /// The priority class.
    pub priority: Option<NicPriority>,
    /// The weight.
    pub weight: Option<u16>,
    /// DSCP marking (`Some(None)`: trust the guest).
    pub dscp: Option<Option<u8>>,
}

impl NicQosChange {
    /// True when it names nothing.
    pub fn is_empty(&self) -> bool {
        *self == NicQosChange::default()
    }

    /// `old` changed: a rate given replaces that direction's (with `burst`, or its default); a
    /// burst alone goes to the rates `old` has. A QoS left with nothing set is none. A burst
    /// without any rate is refused, with why.
    pub fn apply(&self, old: Option<&NicQos>) -> Result<Option<NicQos>, String> {
        let mut q = old.cloned().unwrap_or_default();
        let given = |dir: Option<Option<u64>>| dir.or(self.rate);
        for (slot, now) in [
            (&mut q.egress, given(self.egress_rate)),
            (&mut q.ingress, given(self.ingress_rate)),
        ] {
            match now {
                Some(Some(bits_per_sec)) => {
                    *slot = Some(NicRate {
                        bits_per_sec,
                        burst_bytes: self.burst,
                    })
                }
                Some(None) => *slot = None,
                None => {
                    if let (Some(r), Some(b)) = (slot.as_mut(), self.burst) {
                        r.burst_bytes = Some(b);
                    }
                }
            }
        }
        if self.burst.is_some() && q.egress.is_none() && q.ingress.is_none() {
            return Err("a burst needs a rate (rate, egress-rate or ingress-rate)".into());
        }
        if let Some(p) = self.priority {
            q.priority = p;
        }
        if let Some(w) = self.weight {
            q.weight = Some(w);
        }
        if let Some(d) = self.dscp {
            q.dscp = d;
        }
        q.validate().map_err(|e| e.to_string())?;
        Ok((q != NicQos::default()).then_some(q))
    }
}

/// `--allow IP[/LEN][@MAC][+...]|none` of `vinfra vm nic set`: the NIC's allowed address pairs
/// (`none`: no pair).
pub fn allow_or_none(value: &str) -> Result<Vec<AllowedAddressPair>, ParseError> {
    if value.trim() == "none" {
        return Ok(Vec::new());
    }
    allowed_pairs(value).map_err(|reason| ParseError::List {
        what: "allow",
        value: value.to_string(),
        reason,
    })
}

/// `--security-groups A,B|none` of `vinfra vm nic set`: the NIC's security groups (`none`: no
/// group).
pub fn groups_or_none(value: &str) -> Result<Vec<String>, ParseError> {
    if value.trim() == "none" {
        return Ok(Vec::new());
    }
    group_names(value, ',').map_err(|reason| ParseError::List {
        what: "security-groups",
        value: value.to_string(),
        reason,
    })
}

/// A NIC's MAC address: six octets of exactly two hex digits each, separated by `:` (either
/// case; no sign, no space), unicast and not all zeros. Returns it in lower case, or why not.
fn mac(value: &str) -> Result<String, String> {
    let octets: Vec<&str> = value.split(':').collect();
    let well_formed = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(format!(
            "'{value}' is not a MAC address like 02:76:66:00:00:01 (two hex digits per octet)"
        ));
    }
    vinfra_types::network::parse_mac(value)
        .map(vinfra_types::network::format_mac)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes() {
        assert_eq!(token_lifetime("30d"), Ok(30 * 86400));
        assert_eq!(token_lifetime("12h"), Ok(12 * 3600));
        assert_eq!(token_lifetime("90"), Ok(90));
        for bad in ["0", "-1d", "soon", "11y", "500ms", ""] {
            assert!(token_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migration_bandwidth_and_downtime() {
        assert_eq!(migration_bandwidth("100M"), Ok(Bandwidth::MibPerS(100)));
        assert_eq!(migration_bandwidth("100MiB/s"), Ok(Bandwidth::MibPerS(100)));
        assert_eq!(migration_bandwidth("1G"), Ok(Bandwidth::MibPerS(1024)));
        assert_eq!(migration_bandwidth("64"), Ok(Bandwidth::MibPerS(64)));
        assert_eq!(migration_bandwidth("Unlimited"), Ok(Bandwidth::Unlimited));
        for bad in ["0", "-1M", "512K", "2000T", "fast", ""] {
            assert!(migration_bandwidth(bad).is_err(), "{bad}");
        }
        assert_eq!(migration_downtime("300ms"), Ok(300));
        assert_eq!(migration_downtime("1s"), Ok(1000));
        assert_eq!(migration_downtime("50"), Ok(50));
        for bad in ["5ms", "61s", "-300ms", "soon", "0"] {
            assert!(migration_downtime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interface_names() {
        for ok in ["trunk0", "eth0", "enp3s0f1", "bond0.100x", "a"] {
            assert_eq!(interface(ok), Ok(ok.to_string()));
        }
        for bad in [
            "",
            "a-very-long-interface",
            "a/b",
            "eth0:1",
            "a b",
            "..",
            ".",
        ] {
            assert!(interface(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory_mib("512M"), Ok(512));
        assert_eq!(memory_mib("512MiB"), Ok(512));
        assert_eq!(memory_mib("2G"), Ok(2048));
        assert_eq!(memory_mib("2gib"), Ok(2048));
        assert_eq!(memory_mib("256"), Ok(256));
        assert_eq!(memory_mib("1T"), Ok(1024 * 1024));
        for bad in [
            "0",
            "0G",
            "-1",
            "-512M",
            "2X",
            "G",
            "",
            "1.5G",
            "8M",
            "17T",
            "99999999999999999999999999999999999G",
            "1000K",
        ] {
            assert!(memory_mib(bad).is_err(), "{bad}");
        }
        assert_eq!(
            memory_mib("0").unwrap_err().to_string(),
            "memory must be greater than 0"
        );
    }

    #[test]
    fn other_values() {
        assert_eq!(vcpus("4"), Ok(4));
        for bad in ["0", "-1", "257", "x", "99999999999999999999"] {
            assert!(vcpus(bad).is_err(), "{bad}");
        }
        assert_eq!(disk_gib("10G"), Ok(10));
        assert_eq!(disk_gib("10"), Ok(10));
        assert_eq!(disk_gib("1T"), Ok(1024));
        assert!(disk_gib("512M").is_err());
        assert_eq!(stop_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(stop_timeout("45"), Ok(Duration::from_secs(45)));
        assert!(stop_timeout("2h").is_err());
        assert!(stop_timeout("soon").is_err());
        assert_eq!(ratio("1.5"), Ok(1.5));
        assert!(ratio("0").is_err());
        assert!(ratio("NaN").is_err());
        assert_eq!(on_off("on"), Ok(true));
        assert_eq!(on_off("OFF"), Ok(false));
        assert_eq!(
            on_off("maybe").unwrap_err().to_string(),
            "'maybe' is neither on nor off"
        );
        assert_eq!(isolation_fence_after("30s"), Ok(30));
        assert_eq!(isolation_fence_after("2m"), Ok(120));
        assert_eq!(isolation_fence_after("45"), Ok(45));
        assert_eq!(isolation_fence_after("1h"), Ok(3600));
        for bad in ["4s", "2h", "-5", "soon", "5.5s", "0"] {
            assert!(isolation_fence_after(bad).is_err(), "{bad}");
        }
        assert_eq!(
            isolation_fence_after("4s").unwrap_err().to_string(),
            "isolation fence delay must be between 5s and 3600s, got 4s"
        );
        assert_eq!(vm_or_none("none"), Ok(None));
        assert_eq!(vm_or_none("db-1"), Ok(Some("db-1".into())));
        assert!(vm_or_none("Bad_Name").is_err());
        assert_eq!(fence_command("true"), Ok("true".into()));
        assert!(fence_command("").is_err());
        assert!(fence_command(&"a".repeat(4097))
            .unwrap_err()
            .to_string()
            .contains("4097 bytes"));
    }

    #[test]
    fn disks_and_nics() {
        assert_eq!(
            disk("name=root,image=debian.qcow2,size=10G"),
            Ok(DiskSpec {
                name: "root".into(),
                image: Some("debian.qcow2".into()),
                size_gib: Some(10)
            })
        );
        assert!(disk("image=x").is_err());
        assert!(disk("name=a,colour=red").is_err());
        assert!(disk("name=a,size=0").is_err());
        assert_eq!(
            nic("lan,ip=10.0.0.5,mac=52:54:00:AA:BB:CC"),
            Ok(NicSpec {
                network: "lan".into(),
                ip: Some("10.0.0.5".into()),
                mac: Some("52:54:00:aa:bb:cc".into()),
                ..Default::default()
            })
        );
        assert_eq!(
            nic("network=lan"),
            Ok(NicSpec {
                network: "lan".into(),
                ip: None,
                mac: None,
                ..Default::default()
            })
        );
        assert!(nic("ip=1.2.3.4").is_err());
        // Sub-interfaces: of the first NIC unless another is named.
        let sub = |parent, vid| NicSpec {
            network: "blue".into(),
            ip: Some("10.81.0.5".into()),
            vlan: Some(NicVlan { parent, vid }),
            ..Default::default()
        };
        assert_eq!(nic("blue,vlan=10,ip=10.81.0.5"), Ok(sub(0, 10)));
        assert_eq!(
            nic("blue,ip=10.81.0.5,vlan=4094,parent=2"),
            Ok(sub(2, 4094))
        );
        for (bad, reason) in [
            ("blue,vlan=0", "vlan: '0' is not a VLAN ID from 1 to 4094"),
            (
                "blue,vlan=4095",
                "vlan: '4095' is not a VLAN ID from 1 to 4094",
            ),
            ("blue,vlan=x", "vlan: 'x' is not a VLAN ID from 1 to 4094"),
            (
                "blue,vlan=10,parent=-1",
                "parent: '-1' is not a NIC number (0 is the first --nic)",
            ),
            ("blue,parent=1", "parent= goes with vlan="),
        ] {
            let e = nic(bad).unwrap_err().to_string();
            assert!(e.contains(reason), "{bad}: {e}");
        }
    }

    #[test]
    fn nic_keys_once_each() {
        for (bad, reason) in [
            ("lan,ip=10.0.0.5,ip=10.0.0.6", "ip= is given more than once"),
            ("lan,ip=10.0.0.5,ip=10.0.0.5", "ip= is given more than once"),
            (
                "lan,mac=02:00:00:00:00:01,mac=02:00:00:00:00:02",
                "mac= is given more than once",
            ),
            (
                "lan,mac=02:00:00:00:00:01,ip=10.0.0.5,mac=02:00:00:00:00:01",
                "mac= is given more than once",
            ),
            ("lan,ip=", "ip= needs a value"),
            ("lan,mac=", "mac= needs a value"),
            ("lan,foo=1", "unknown key 'foo'"),
            (",ip=10.0.0.5", "start with the network name"),
            ("lan,ip=10.0.0", "not an IPv4 address"),
            ("lan,ip=10.0.0.256", "not an IPv4 address"),
        ] {
            let e = nic(bad).expect_err(bad).to_string();
            assert!(e.contains(reason), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(
            nic("lan, ip = 10.0.0.5 , mac=02:AB:00:00:00:01"),
            Ok(NicSpec {
                network: "lan".into(),
                ip: Some("10.0.0.5".into()),
                mac: Some("02:ab:00:00:00:01".into()),
                ..Default::default()
            })
        );
    }

    #[test]
    fn nic_security_groups() {
        let n = nic("lan,sg=web+db").unwrap();
        assert_eq!(n.security_groups, ["web", "db"]);
        let e = nic("lan,sg=web+Bad").unwrap_err().to_string();
        assert!(e.contains("security group 'Bad'"), "{e}");
        assert!(nic("lan,sg=").is_err());
        assert_eq!(groups_or_none("none"), Ok(vec![]));
        assert_eq!(
            groups_or_none("web, db"),
            Ok(vec!["web".to_string(), "db".to_string()])
        );
        assert!(groups_or_none("web,,db").is_err());
        assert_eq!(allow_or_none("none"), Ok(vec![]));
        let pairs = allow_or_none("10.0.0.9+10.0.1.0/29@02:00:00:00:00:09").unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].mac.as_deref(), Some("02:00:00:00:00:09"));
        assert!(allow_or_none("10.0.0.9/24").is_err());
    }

    #[test]
    fn nic_port_security_and_allowed_addresses() {
        let n = nic("lan,port-security=on,allow=10.0.0.9+10.0.1.0/29@02:00:00:00:00:0A").unwrap();
        assert_eq!(n.port_security, Some(true));
        assert_eq!(
            n.allowed_addresses,
            vec![
                AllowedAddressPair {
                    ip: "10.0.0.9".into(),
                    mac: None
                },
                AllowedAddressPair {
                    ip: "10.0.1.0/29".into(),
                    mac: Some("02:00:00:00:00:0a".into())
                },
            ]
        );
        assert_eq!(
            nic("lan,port-security=off").unwrap().port_security,
            Some(false)
        );
        assert_eq!(nic("lan").unwrap().port_security, None);
        for (bad, reason) in [
            ("lan,port-security=maybe", "port-security is on or off"),
            ("lan,allow=10.0.0.1/33", "not an IPv4 address or prefix"),
            ("lan,allow=10.0.0.1/24", "not an IPv4 address or prefix"),
            (
                "lan,allow=10.0.0.1@01:00:5e:00:00:01",
                "is a multicast address",
            ),
            (
                "lan,allow=10.0.0.1,allow=10.0.0.2",
                "allow= is given more than once",
            ),
        ] {
            let e = nic(bad).expect_err(bad).to_string();
            assert!(e.contains(reason), "{bad}: {e}");
        }
    }

    #[test]
    fn nic_macs_have_two_hex_digits_per_octet() {
        assert_eq!(mac("02:76:66:aA:Bb:0f"), Ok("02:76:66:aa:bb:0f".into()));
        for bad in [
            "+2:76:66:00:00:01",
            "02:76:66:00:00:+1",
            "02:-0:66:00:00:01",
            "02:76:66:00:00:1",
            "02:76:66:00:00:001",
            "02:76:66:00:00",
            "02:76:66:00:00:01:02",
            "02:76:66:00:00:0g",
            "02:76:66:00:00: 1",
            "02-76-66-00-00-01",
            "0x:76:66:00:00:01",
            "",
        ] {
            let e = mac(bad).expect_err(bad);
            assert!(e.contains("two hex digits per octet"), "{bad}: {e}");
            assert!(nic(&format!("lan,mac={bad}")).is_err(), "{bad}");
        }
        // Well formed but not a NIC's address.
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            assert!(mac(bad).is_err(), "{bad}");
            assert!(nic(&format!("lan,mac={bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_are_decimal_bits_and_bursts_binary_bytes() {
        for (v, bits) in [
            ("100M", 100_000_000),
            ("1.5G", 1_500_000_000),
            ("500k", 500_000),
            ("500K", 500_000),
            ("8000", 8_000),
            ("400G", 400_000_000_000),
            ("2.125M", 2_125_000),
        ] {
            assert_eq!(rate(v), Ok(bits), "{v}");
            // Printed back as given (or plainer).
            assert_eq!(rate(&vinfra_types::qos::rate_text(bits)), Ok(bits), "{v}");
        }
        for (v, why) in [
            (
                "7999",
                "rate must be between 8k (8,000 bit/s) and 400G, got 7999",
            ),
            (
                "401G",
                "rate must be between 8k (8,000 bit/s) and 400G, got 401G",
            ),
            ("100Mbit", "use bits per second with k, M, G or T"),
            ("-5M", "use bits per second"),
            ("1.5", "rate in bits per second must be a whole number"),
            ("1.", "use bits per second"),
            ("", "use bits per second"),
            ("99999999999999999999999999999999T", "whole number"),
        ] {
            let e = rate(v).expect_err(v).to_string();
            assert!(e.contains(why), "{v}: {e}");
            assert!(!e.contains('\n'), "{v}: {e}");
        }
        for (v, bytes) in [
            ("1M", 1 << 20),
            ("64K", 65_536),
            ("64k", 65_536),
            ("1514", 1_514),
            ("1.5M", 1_572_864),
            ("1G", 1 << 30),
            ("16KiB", 16_384),
        ] {
            assert_eq!(burst(v), Ok(bytes), "{v}");
        }
        for (v, why) in [
            ("1000", "burst must be between 1514 bytes and 1G, got 1000"),
            ("2G", "burst must be between 1514 bytes and 1G"),
            ("1X", "use bytes with K, M or G"),
        ] {
            let e = burst(v).expect_err(v).to_string();
            assert!(e.contains(why), "{v}: {e}");
        }
        assert_eq!(rate_or_none("none"), Ok(None));
        assert_eq!(qos_priority("high"), Ok(NicPriority::High));
        assert!(qos_priority("urgent")
            .unwrap_err()
            .to_string()
            .contains("use low, normal or high"));
        assert_eq!(qos_weight("100"), Ok(100));
        assert!(qos_weight("0").is_err() && qos_weight("101").is_err());
        assert_eq!(dscp_or_trust("trust"), Ok(None));
        assert_eq!(dscp_or_trust("46"), Ok(Some(46)));
        assert!(dscp_or_trust("64").is_err());
    }

    #[test]
    fn nic_qos_keys() {
        let n = nic("lan,rate=100M,burst=1M,priority=high").unwrap();
        let both = NicRate {
            bits_per_sec: 100_000_000,
            burst_bytes: Some(1 << 20),
        };
        assert_eq!(
            n.qos,
            Some(NicQos {
                egress: Some(both),
                ingress: Some(both),
                priority: NicPriority::High,
                ..NicQos::default()
            })
        );
        // One direction overrides the rate; the burst goes to both.
        let n = nic("lan,rate=100M,ingress-rate=8M,weight=20,dscp=46").unwrap();
        let q = n.qos.unwrap();
        assert_eq!(q.egress, Some(NicRate::new(100_000_000)));
        assert_eq!(q.ingress, Some(NicRate::new(8_000_000)));
        assert_eq!((q.weight, q.dscp), (Some(20), Some(46)));
        let q = nic("lan,egress-rate=1G").unwrap().qos.unwrap();
        assert_eq!(
            (q.egress.map(|r| r.bits_per_sec), q.ingress),
            (Some(1_000_000_000), None)
        );
        // Nothing but defaults: no QoS.
        assert_eq!(nic("lan,priority=normal,dscp=trust").unwrap().qos, None);
        assert_eq!(nic("lan").unwrap().qos, None);
        for (bad, why) in [
            ("lan,burst=1M", "a burst needs a rate"),
            ("lan,rate=1", "rate must be between"),
            ("lan,priority=top", "use low, normal or high"),
            ("lan,weight=0", "weight must be between 1 and 100"),
            ("lan,dscp=64", "dscp must be between 0 and 63"),
            ("lan,rate=1M,rate=2M", "rate= is given more than once"),
        ] {
            let e = nic(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn qos_changes_keep_what_they_do_not_name() {
        let old = NicQos {
            egress: Some(NicRate {
                bits_per_sec: 100_000_000,
                burst_bytes: Some(1 << 20),
            }),
            ingress: Some(NicRate::new(50_000_000)),
            priority: NicPriority::High,
            weight: Some(30),
            dscp: Some(10),
        };
        // A new priority: everything else stays.
        let c = NicQosChange {
            priority: Some(NicPriority::Low),
            ..NicQosChange::default()
        };
        let q = c.apply(Some(&old)).unwrap().unwrap();
        assert_eq!(
            q,
            NicQos {
                priority: NicPriority::Low,
                ..old.clone()
            }
        );
        // A new ingress rate gets the default burst; a burst alone goes to the rates there are.
        let c = NicQosChange {
            ingress_rate: Some(Some(8_000_000)),
            ..NicQosChange::default()
        };
        let q = c.apply(Some(&old)).unwrap().unwrap();
        assert_eq!(q.ingress, Some(NicRate::new(8_000_000)));
        assert_eq!(q.egress, old.egress);
        let c = NicQosChange {
            burst: Some(65_536),
            ..NicQosChange::default()
        };
        let q = c.apply(Some(&old)).unwrap().unwrap();
        assert_eq!(q.egress.unwrap().burst_bytes, Some(65_536));
        assert_eq!(q.ingress.unwrap().burst_bytes, Some(65_536));
        // `none` lifts a limit; with nothing left set there is no QoS.
        let c = NicQosChange {
            rate: Some(None),
            priority: Some(NicPriority::Normal),
            weight: None,
            dscp: Some(None),
            ..NicQosChange::default()
        };
        let q = c.apply(Some(&old)).unwrap().unwrap();
        assert_eq!((q.egress, q.ingress, q.weight), (None, None, Some(30)));
        let c = NicQosChange {
            rate: Some(None),
            ..NicQosChange::default()
        };
        assert_eq!(c.apply(None), Ok(None));
        let c = NicQosChange {
            burst: Some(65_536),
            ..NicQosChange::default()
        };
        assert!(c.apply(None).unwrap_err().contains("a burst needs a rate"));
    }
}
