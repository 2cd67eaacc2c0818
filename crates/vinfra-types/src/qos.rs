//! A NIC's QoS ([`NicQos`]): rate limits each way, a priority class, a weight and DSCP
//! marking, applied by the switch of whichever host runs the VM.
//!
//! Directions are seen from the VM: `egress` is what it sends (the switch takes its frames no
//! faster than the rate: a shaper, so the guest sees backpressure, not loss), `ingress` what
//! goes to it (queued, then sent no faster than the rate; beyond the queue, dropped and
//! counted as `qos_dropped`). A rate counts Ethernet frame bytes. Under contention a port of a
//! higher class goes first (strict priority: pair `high` with a rate limit), ports of one class
//! share in proportion to their weights. `dscp` rewrites the DSCP of every IPv4 packet the VM
//! sends; without it the guest's own is kept. A NIC without QoS has none of these limits
//! (priority normal, weight [`DEFAULT_WEIGHT`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Smallest rate accepted, bits per second (8 kbit/s).
pub const MIN_RATE_BPS: u64 = 8_000;
/// Largest rate accepted, bits per second (400 Gbit/s).
pub const MAX_RATE_BPS: u64 = 400_000_000_000;
/// Smallest burst accepted: one full Ethernet frame, bytes.
pub const MIN_BURST_BYTES: u64 = 1_514;
/// Largest burst accepted (1 GiB).
pub const MAX_BURST_BYTES: u64 = 1 << 30;
/// The smallest burst a rate without one gets (16 KiB).
pub const MIN_DEFAULT_BURST_BYTES: u64 = 16 * 1024;
/// Largest weight.
pub const MAX_WEIGHT: u16 = 100;
/// The weight of a NIC that names none.
pub const DEFAULT_WEIGHT: u16 = 10;
/// Largest DSCP value.
pub const MAX_DSCP: u8 = 63;

/// The burst a rate without one gets: 10 ms at the rate, at least 16 KiB.
pub fn default_burst(bits_per_sec: u64) -> u64 {
    (bits_per_sec / 800).max(MIN_DEFAULT_BURST_BYTES)
}

/// A NIC's QoS. Every field is optional: absent rates are unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicQos {
    /// What the VM sends: taken from it no faster than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<NicRate>,
    /// What goes to the VM: sent to it no faster than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<NicRate>,
    /// Priority class at every place frames wait behind others' (default normal).
    #[serde(default)]
    pub priority: NicPriority,
    /// Share against NICs of the same class under contention, 1 to 100 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// DSCP (0 to 63) written into every IPv4 packet the VM sends; absent: the guest's own
    /// is kept (trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<u8>,
}

/// A rate limit: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicRate {
    /// Sustained rate in bits per second (Ethernet frames, headers included), 8,000 to
    /// 400,000,000,000.
    pub bits_per_sec: u64,
    /// Bytes that may pass at once above the rate, 1,514 to 1 GiB; absent: 10 ms at the rate,
    /// at least 16 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<u64>,
}

impl NicRate {
    /// A rate with the default burst.
    pub fn new(bits_per_sec: u64) -> NicRate {
        NicRate {
            bits_per_sec,
            burst_bytes: None,
        }
    }

    /// The burst in force: the one given, or [`default_burst`].
    pub fn burst(&self) -> u64 {
        self.burst_bytes
            .unwrap_or_else(|| default_burst(self.bits_per_sec))
    }
}

/// A NIC's priority class.
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
pub enum NicPriority {
    /// After the others.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before the others (can starve lower classes: pair it with a rate limit).
    High,
}

impl NicPriority {
    /// Its name in the API: `low`, `normal`, `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            NicPriority::Low => "low",
            NicPriority::Normal => "normal",
            NicPriority::High => "high",
        }
    }
}

impl fmt::Display for NicPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a NIC's QoS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NicQosError {
    /// A rate outside [`MIN_RATE_BPS`]..=[`MAX_RATE_BPS`].
    #[error("{direction} rate {bits_per_sec} bit/s is out of range (8000 bit/s to 400 Gbit/s)")]
    Rate {
        /// `egress` or `ingress`.
        direction: &'static str,
        /// The rate given.
        bits_per_sec: u64,
    },
    /// A burst outside [`MIN_BURST_BYTES`]..=[`MAX_BURST_BYTES`].
    #[error("{direction} burst {burst_bytes} bytes is out of range (1514 bytes to 1 GiB)")]
    Burst {
        /// `egress` or `ingress`.
        direction: &'static str,
        /// The burst given.
        burst_bytes: u64,
    },
    /// A weight outside 1..=[`MAX_WEIGHT`].
    #[error("weight {0} is out of range (1 to {MAX_WEIGHT})")]
    Weight(u16),
    /// A DSCP above [`MAX_DSCP`].
    #[error("dscp {0} is out of range (0 to {MAX_DSCP})")]
    Dscp(u8),
}

impl NicQos {
    /// Checks the bounds: rates 8 kbit/s to 400 Gbit/s, bursts 1,514 bytes to 1 GiB, weight 1
    /// to 100, DSCP 0 to 63.
    pub fn validate(&self) -> Result<(), NicQosError> {
        for (direction, rate) in [("egress", &self.egress), ("ingress", &self.ingress)] {
            let Some(r) = rate else { continue };
            if !(MIN_RATE_BPS..=MAX_RATE_BPS).contains(&r.bits_per_sec) {
                return Err(NicQosError::Rate {
                    direction,
                    bits_per_sec: r.bits_per_sec,
                });
            }
            if let Some(b) = r
                .burst_bytes
                .filter(|b| !(MIN_BURST_BYTES..=MAX_BURST_BYTES).contains(b))
            {
                return Err(NicQosError::Burst {
                    direction,
                    burst_bytes: b,
                });
            }
        }
        if let Some(w) = self.weight.filter(|w| !(1..=MAX_WEIGHT).contains(w)) {
            return Err(NicQosError::Weight(w));
        }
        if let Some(d) = self.dscp.filter(|d| *d > MAX_DSCP) {
            return Err(NicQosError::Dscp(d));
        }
        Ok(())
    }

    /// The weight in force: the one given, or [`DEFAULT_WEIGHT`].
    pub fn weight(&self) -> u16 {
        self.weight.unwrap_or(DEFAULT_WEIGHT)
    }
}

/// A rate with a decimal SI suffix, as the CLI takes it: `100M`, `1.5G`, `8k`; a plain number
/// when no suffix fits exactly.
pub fn rate_text(bits_per_sec: u64) -> String {
    for (unit, suffix) in [
        (1_000_000_000_000u64, "T"),
        (1_000_000_000, "G"),
        (1_000_000, "M"),
        (1_000, "k"),
    ] {
        if bits_per_sec < unit {
            continue;
        }
        let (whole, rest) = (bits_per_sec / unit, bits_per_sec % unit);
        if rest == 0 {
            return format!("{whole}{suffix}");
        }
        // Up to three decimals, when they are exact and the whole part is short.
        let milli = unit / 1000;
        if whole < 1000 && rest.is_multiple_of(milli) {
            let frac = format!("{:03}", rest / milli);
            return format!("{whole}.{}{suffix}", frac.trim_end_matches('0'));
        }
    }
    bits_per_sec.to_string()
}

/// A byte count with a binary suffix, as the CLI takes it: `1M` (1,048,576), `64K`; a plain
/// number when no suffix fits exactly.
pub fn burst_text(bytes: u64) -> String {
    for (shift, suffix) in [(30, "G"), (20, "M"), (10, "K")] {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

impl fmt::Display for NicRate {
    /// `100M` with its burst: `100M burst 1M` (the default burst shown as in force).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} burst {}",
            rate_text(self.bits_per_sec),
            burst_text(self.burst())
        )?;
        if self.burst_bytes.is_none() {
            f.write_str(" (default)")?;
        }
        Ok(())
    }
}

impl fmt::Display for NicQos {
    /// One line: `egress 100M burst 1M, ingress 50M burst 16K (default), priority high,
    /// weight 10, dscp 46` (`dscp trust` without marking).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.egress, &self.ingress) {
            (Some(e), Some(i)) if e == i => write!(f, "rate {e} each way, ")?,
            (e, i) => {
                if let Some(e) = e {
                    write!(f, "egress {e}, ")?;
                }
                if let Some(i) = i {
                    write!(f, "ingress {i}, ")?;
                }
            }
        }
        write!(
            f,
            "priority {}, weight {}, dscp ",
            self.priority,
            self.weight()
        )?;
        match self.dscp {
            Some(d) => write!(f, "{d}"),
            None => f.write_str("trust"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_with_their_reasons() {
        assert_eq!(NicQos::default().validate(), Ok(()));
        let rate = |bits_per_sec, burst_bytes| NicQos {
            egress: Some(NicRate {
                bits_per_sec,
                burst_bytes,
            }),
            ..NicQos::default()
        };
        assert_eq!(rate(MIN_RATE_BPS, Some(MIN_BURST_BYTES)).validate(), Ok(()));
        assert_eq!(rate(MAX_RATE_BPS, Some(MAX_BURST_BYTES)).validate(), Ok(()));
        let ingress = |r: NicQos| NicQos {
            ingress: r.egress,
            ..NicQos::default()
        };
        for (q, want) in [
            (
                rate(7_999, None),
                "egress rate 7999 bit/s is out of range (8000 bit/s to 400 Gbit/s)",
            ),
            (
                ingress(rate(MAX_RATE_BPS + 1, None)),
                "ingress rate 400000000001 bit/s is out of range (8000 bit/s to 400 Gbit/s)",
            ),
            (
                rate(1_000_000, Some(1_513)),
                "egress burst 1513 bytes is out of range (1514 bytes to 1 GiB)",
            ),
            (
                rate(1_000_000, Some(MAX_BURST_BYTES + 1)),
                "egress burst 1073741825 bytes is out of range (1514 bytes to 1 GiB)",
            ),
            (
                NicQos {
                    weight: Some(0),
                    ..NicQos::default()
                },
                "weight 0 is out of range (1 to 100)",
            ),
            (
                NicQos {
                    weight: Some(101),
                    ..NicQos::default()
                },
                "weight 101 is out of range (1 to 100)",
            ),
            (
                NicQos {
                    dscp: Some(64),
                    ..NicQos::default()
                },
                "dscp 64 is out of range (0 to 63)",
            ),
        ] {
            assert_eq!(q.validate().map_err(|e| e.to_string()), Err(want.into()));
        }
    }

    #[test]
    fn a_rate_without_a_burst_gets_10_ms_at_least_16_kib() {
        assert_eq!(NicRate::new(100_000_000).burst(), 125_000);
        assert_eq!(NicRate::new(8_000_000).burst(), 16_384);
        assert_eq!(NicRate::new(MAX_RATE_BPS).burst(), 500_000_000);
        let given = NicRate {
            bits_per_sec: 100_000_000,
            burst_bytes: Some(1 << 20),
        };
        assert_eq!(given.burst(), 1 << 20);
    }

    #[test]
    fn rates_and_bursts_print_with_suffixes() {
        for (bits, text) in [
            (100_000_000, "100M"),
            (1_500_000_000, "1.5G"),
            (8_000, "8k"),
            (400_000_000_000, "400G"),
            (1_234_567, "1234567"),
            (2_500, "2.5k"),
            (999, "999"),
        ] {
            assert_eq!(rate_text(bits), text);
        }
        for (bytes, text) in [
            (1 << 20, "1M"),
            (65_536, "64K"),
            (1_514, "1514"),
            (1 << 30, "1G"),
            (1_572_864, "1536K"),
        ] {
            assert_eq!(burst_text(bytes), text);
        }
        let q = NicQos {
            egress: Some(NicRate {
                bits_per_sec: 100_000_000,
                burst_bytes: Some(1 << 20),
            }),
            ingress: Some(NicRate {
                bits_per_sec: 100_000_000,
                burst_bytes: Some(1 << 20),
            }),
            priority: NicPriority::High,
            weight: None,
            dscp: Some(46),
        };
        assert_eq!(
            q.to_string(),
            "rate 100M burst 1M each way, priority high, weight 10, dscp 46"
        );
        let q = NicQos {
            ingress: Some(NicRate::new(8_000_000)),
            ..NicQos::default()
        };
        assert_eq!(
            q.to_string(),
            "ingress 8M burst 16K (default), priority normal, weight 10, dscp trust"
        );
    }

    #[test]
    fn json_is_plain_integers_and_unknown_fields_are_refused() {
        let q: NicQos = serde_json::from_str(
            r#"{"egress":{"bits_per_sec":100000000},"priority":"high","dscp":46}"#,
        )
        .unwrap();
        assert_eq!(q.egress, Some(NicRate::new(100_000_000)));
        assert_eq!(
            (q.priority, q.weight(), q.dscp),
            (NicPriority::High, 10, Some(46))
        );
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"egress":{"bits_per_sec":100000000},"priority":"high","dscp":46}"#
        );
        assert!(serde_json::from_str::<NicQos>(r#"{"rate":1}"#).is_err());
        assert!(serde_json::from_str::<NicQos>(r#"{"priority":"urgent"}"#).is_err());
    }
}
