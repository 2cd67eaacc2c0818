//! Flow visibility: the traffic between endpoints of the cluster's networks as the switches
//! count it (docs/design.md "Flows"): the query of `GET /api/v1/flows` and its rows, and the
//! flow settings of the cluster (IPFIX export, the balancer's traffic window).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which way a flow goes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrafficDirection {
    /// Between two endpoints of the cluster's networks.
    EastWest,
    /// In or out through a router's uplink (the physical network).
    NorthSouth,
}

impl TrafficDirection {
    /// `east-west` or `north-south`, as tables show it.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficDirection::EastWest => "east-west",
            TrafficDirection::NorthSouth => "north-south",
        }
    }
}

/// How `GET /api/v1/flows` groups the flows into rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FlowGrouping {
    /// One row per pair of endpoints (VMs by name; other addresses as they are), both
    /// directions together.
    #[default]
    VmPair,
    /// One row per network the flows entered on.
    Network,
    /// One row per router that routed them (switched traffic: no router, `-`).
    Router,
    /// One row per direction.
    Direction,
}

impl FlowGrouping {
    /// The query's spelling: `vm-pair`, `network`, `router`, `direction`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowGrouping::VmPair => "vm-pair",
            FlowGrouping::Network => "network",
            FlowGrouping::Router => "router",
            FlowGrouping::Direction => "direction",
        }
    }
}

/// Default window of `GET /api/v1/flows`, minutes.
pub const DEFAULT_FLOW_MINUTES: u32 = 5;
/// Default number of rows of `GET /api/v1/flows`.
pub const DEFAULT_FLOW_TOP: u32 = 10;
/// Minutes of flows the console keeps (the longest window a query may ask for).
pub const FLOW_HISTORY_MINUTES: u32 = 60;
/// Most rows a query may ask for.
pub const MAX_FLOW_TOP: u32 = 1000;

/// The query of `GET /api/v1/flows`, with its defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowQuery {
    /// The window: the last `minutes` minutes (1 to 60).
    pub minutes: u32,
    /// How rows are grouped.
    pub by: FlowGrouping,
    /// At most this many rows, the largest by bytes first (1 to 1000).
    pub top: u32,
}

impl Default for FlowQuery {
    fn default() -> Self {
        FlowQuery {
            minutes: DEFAULT_FLOW_MINUTES,
            by: FlowGrouping::VmPair,
            top: DEFAULT_FLOW_TOP,
        }
    }
}

impl FlowQuery {
    /// Checks the ranges; the error names the parameter and its range.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=FLOW_HISTORY_MINUTES).contains(&self.minutes) {
            return Err(format!(
                "minutes must be between 1 and {FLOW_HISTORY_MINUTES}, got {}",
                self.minutes
            ));
        }
        if !(1..=MAX_FLOW_TOP).contains(&self.top) {
            return Err(format!(
                "top must be between 1 and {MAX_FLOW_TOP}, got {}",
                self.top
            ));
        }
        Ok(())
    }
}

/// One row of `GET /api/v1/flows`: the traffic of one group and direction in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowRow {
    /// The group: `a <-> b` for a pair, a network's or router's name (`-` for switched
    /// traffic), or the direction.
    pub key: String,
    /// For `vm-pair`: one end (a VM's name, or the address when it is no VM's), the smaller of
    /// the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
    /// For `vm-pair`: the other end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
    /// East-west or north-south.
    pub direction: TrafficDirection,
    /// IP bytes (headers and payload), both directions of a pair together.
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
    /// Distinct flows (network and 5-tuple, each way counted apart).
    pub flows: u64,
}

/// The answer of `GET /api/v1/flows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowReport {
    /// The window, minutes.
    pub minutes: u32,
    /// How the rows are grouped.
    pub by: FlowGrouping,
    /// The rows, the largest by bytes first, at most `top`.
    pub rows: Vec<FlowRow>,
    /// Packets the hosts' switches could not count in a flow (their flow table was full) and
    /// packets the console kept no flow for (its store was full), in the window.
    pub untracked_packets: u64,
}

/// Default window of the balancer's traffic matrix, minutes.
pub const DEFAULT_TRAFFIC_MINUTES: u32 = 10;

fn default_traffic_minutes() -> u32 {
    DEFAULT_TRAFFIC_MINUTES
}

/// `flows` in the cluster settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowSettings {
    /// An IPFIX collector (`address:port`, UDP) every agent exports its host's flows to;
    /// absent or `null`: no export.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "192.0.2.10:4739")]
    pub ipfix_collector: Option<SocketAddr>,
    /// The balancer's traffic matrix: bytes per VM pair over the last this many minutes
    /// (1 to 60, default 10).
    #[serde(default = "default_traffic_minutes")]
    pub traffic_minutes: u32,
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings {
            ipfix_collector: None,
            traffic_minutes: DEFAULT_TRAFFIC_MINUTES,
        }
    }
}

impl FlowSettings {
    /// Checks the ranges; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=FLOW_HISTORY_MINUTES).contains(&self.traffic_minutes) {
            return Err(format!(
                "flows.traffic_minutes must be between 1 and {FLOW_HISTORY_MINUTES}, got {}",
                self.traffic_minutes
            ));
        }
        if let Some(c) = self.ipfix_collector {
            if c.port() == 0 || c.ip().is_unspecified() {
                return Err(format!(
                    "flows.ipfix_collector must be an address and a port, got {c}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_settings_are_checked() {
        assert!(FlowQuery::default().validate().is_ok());
        let q = FlowQuery {
            minutes: 61,
            ..FlowQuery::default()
        };
        assert!(q.validate().unwrap_err().contains("minutes"));
        let q = FlowQuery {
            top: 0,
            ..FlowQuery::default()
        };
        assert!(q.validate().unwrap_err().contains("top"));
        let s: FlowSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, FlowSettings::default());
        let s: FlowSettings =
            serde_json::from_str(r#"{"ipfix_collector":"192.0.2.1:4739"}"#).unwrap();
        assert!(s.validate().is_ok());
        let s: FlowSettings =
            serde_json::from_str(r#"{"ipfix_collector":"0.0.0.0:4739"}"#).unwrap();
        assert!(s.validate().unwrap_err().contains("ipfix_collector"));
        let s = FlowSettings {
            traffic_minutes: 0,
            ..FlowSettings::default()
        };
        assert!(s.validate().unwrap_err().contains("traffic_minutes"));
        assert_eq!(
            serde_json::to_string(&FlowGrouping::VmPair).unwrap(),
            "\"vm-pair\""
        );
    }
}
