//! Numbers: binary sizes (`512M`, `2G`), decimal scaling (`1.5G`), whole numbers within bounds.

use vinfra_types::vm::MAX_DISK_GIB;

use super::error::ParseError;

pub(crate) const KIB: u128 = 1024;
pub(crate) const MIB: u128 = KIB * 1024;
pub(crate) const GIB: u128 = MIB * 1024;
pub(crate) const TIB: u128 = GIB * 1024;

/// Parses `<n><unit>` into bytes; a plain number is in `default_unit` bytes. Units are binary
/// (`M` = `MiB` = `MB` = 2^20) and case-insensitive.
pub(crate) fn parse_bytes(
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

/// Splits `1.5G` into its digits (`1`, `5`) and suffix (`G`); `None` unless it is digits, at
/// most one `.` with digits after it, then letters.
pub(crate) fn number_and_suffix(v: &str) -> Option<(&str, &str, &str)> {
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
pub(crate) fn scaled(whole: &str, frac: &str, unit: u128) -> Option<u128> {
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
