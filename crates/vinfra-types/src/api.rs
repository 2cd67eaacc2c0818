//! REST API bodies and the problem+json error body (RFC 9457).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AllocationRatios, VmSpec};

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
    #[serde(flatten)]
    pub spec: VmSpec,
    /// Host to place the VM on; the console picks one when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// Start the VM right away (default true).
    #[serde(default = "yes")]
    pub start: bool,
}

fn yes() -> bool {
    true
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

/// `PUT /api/v1/settings`: cluster-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Default allocation ratios for hosts without an override.
    pub ratios: AllocationRatios,
}

/// `PATCH /api/v1/hosts/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHostRequest {
    /// Host-specific ratios; `null` removes the override.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<AllocationRatios>)]
    pub ratios: Option<Option<AllocationRatios>>,
    /// Put the host in (or take it out of) maintenance: no new VMs are placed on it.
    #[serde(default)]
    pub maintenance: Option<bool>,
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
    /// The new API token; the old one stops working now. Shown once.
    pub token: String,
}

/// A VM's serial console output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleLog {
    /// The last bytes of the serial console, lossily decoded as UTF-8.
    pub text: String,
}

/// One entry of the event history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `vm`, `host`, `migration`, …
    pub kind: String,
    /// Name of the object it concerns.
    pub object: String,
    pub message: String,
}

mod double_option {
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
