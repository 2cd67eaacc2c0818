//! A NIC's QoS on the command line: rates, bursts, priority, weight, DSCP.

use vinfra_types::qos::{
    NicPriority, NicQos, NicRate, MAX_BURST_BYTES, MAX_DSCP, MAX_RATE_BPS, MAX_WEIGHT,
    MIN_BURST_BYTES, MIN_RATE_BPS,
};

use super::error::ParseError;
use super::units::*;

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
