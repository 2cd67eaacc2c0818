//! Typed helpers for the QMP commands the agent uses.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Qmp, QmpError};

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    /// True when the guest executes.
    pub running: bool,
    /// QEMU's run state: `running`, `paused`, `inmigrate`, `postmigrate`, `finish-migrate`,
    /// `shutdown`, `prelaunch`, `internal-error`, …
    pub status: String,
}

/// `query-version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// Numeric version.
    pub qemu: VersionTriple,
    /// Distribution package string.
    #[serde(default)]
    pub package: String,
}

/// QEMU's `major.minor.micro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct VersionTriple {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
}

impl std::fmt::Display for VersionTriple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// RAM statistics of `query-migrate`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RamStats {
    /// Bytes sent so far.
    #[serde(default)]
    pub transferred: u64,
    /// Bytes still to send.
    #[serde(default)]
    pub remaining: u64,
    /// Guest RAM, bytes.
    #[serde(default)]
    pub total: u64,
    /// Current throughput, megabits per second.
    #[serde(default)]
    pub mbps: f64,
    /// Pages the guest dirties per second.
    #[serde(default)]
    pub dirty_pages_rate: u64,
    /// Completed passes over guest memory.
    #[serde(default)]
    pub dirty_sync_count: u64,
}

/// `query-migrate` (on the source).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    /// `none`, `setup`, `active`, `device`, `completed`, `failed`, `cancelling`, `cancelled`, …;
    /// absent when no migration was ever started.
    #[serde(default)]
    pub status: Option<String>,
    /// RAM statistics (absent before the migration starts).
    #[serde(default)]
    pub ram: Option<RamStats>,
    /// Milliseconds since the migration started (or its total duration once ended).
    #[serde(default)]
    pub total_time: Option<u64>,
    /// Measured downtime at switchover, milliseconds (when completed).
    #[serde(default)]
    pub downtime: Option<u64>,
    /// Expected downtime, milliseconds (while active).
    #[serde(default)]
    pub expected_downtime: Option<u64>,
    /// Why it failed.
    #[serde(default)]
    pub error_desc: Option<String>,
}

impl MigrationInfo {
    /// The status, `none` when QEMU reports none.
    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("none")
    }

    /// True when the migration ended (`completed`, `failed` or `cancelled`).
    pub fn is_final(&self) -> bool {
        matches!(self.status(), "completed" | "failed" | "cancelled")
    }
}

/// `migrate-set-parameters` (only the fields set are sent).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrateParameters {
    /// Bandwidth cap, bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// Longest acceptable pause at switchover, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_limit: Option<u64>,
    /// The id of the `tls-creds-x509` object the migration stream is encrypted with; `""`:
    /// plain TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_creds: Option<String>,
    /// Source: the name the destination's certificate must carry (instead of the URI's host);
    /// `""`: the URI's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_hostname: Option<String>,
    /// Destination: the id of the `authz-*` object a source's certificate must pass; `""`: any
    /// certificate the CA signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_authz: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(command: &str, v: Value) -> Result<T, QmpError> {
    serde_json::from_value(v)
        .map_err(|e| QmpError::Protocol(format!("unexpected '{command}' reply: {e}")))
}

impl Qmp {
    /// `query-status`.
    pub async fn query_status(&self) -> Result<StatusInfo, QmpError> {
        parse(
            "query-status",
            self.execute("query-status", Value::Null).await?,
        )
    }

    /// `query-version`.
    pub async fn query_version(&self) -> Result<VersionInfo, QmpError> {
        parse(
            "query-version",
            self.execute("query-version", Value::Null).await?,
        )
    }

    /// `system_powerdown`: presses the ACPI power button.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", Value::Null)
            .await
            .map(drop)
    }

    /// `system_reset`.
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.execute("system_reset", Value::Null).await.map(drop)
    }

    /// `quit`: QEMU exits at once. A connection closed before the answer arrives counts as done.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self
            .execute_timeout("quit", Value::Null, Duration::from_secs(10))
            .await
        {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `cont`: resume the guest.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute("cont", Value::Null).await.map(drop)
    }

    /// `stop`: pause the guest.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute("stop", Value::Null).await.map(drop)
    }

    /// `migrate` to `uri` (e.g. `tcp:10.0.0.2:4444`); returns once started.
    pub async fn migrate(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate", json!({ "uri": uri }))
            .await
            .map(drop)
    }

    /// `migrate-incoming` on `uri` (QEMU started with `-incoming defer`).
    pub async fn migrate_incoming(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", json!({ "uri": uri }))
            .await
            .map(drop)
    }

    /// `migrate_cancel`.
    pub async fn migrate_cancel(&self) -> Result<(), QmpError> {
        self.execute("migrate_cancel", Value::Null).await.map(drop)
    }

    /// `query-migrate`.
    pub async fn query_migrate(&self) -> Result<MigrationInfo, QmpError> {
        parse(
            "query-migrate",
            self.execute("query-migrate", Value::Null).await?,
        )
    }

    /// `migrate-set-parameters`.
    pub async fn migrate_set_parameters(&self, params: &MigrateParameters) -> Result<(), QmpError> {
        let args = serde_json::to_value(params)
            .map_err(|e| QmpError::Protocol(format!("cannot encode parameters: {e}")))?;
        self.execute("migrate-set-parameters", args).await.map(drop)
    }

    /// `object-add` of the object `props` describes (`qom-type`, `id` and the type's
    /// properties, flat, as QEMU 6.0 and later take them).
    pub async fn object_add(&self, props: Value) -> Result<(), QmpError> {
        self.execute("object-add", props).await.map(drop)
    }

    /// `object-del` of the user-created object `id`.
    pub async fn object_del(&self, id: &str) -> Result<(), QmpError> {
        self.execute("object-del", json!({ "id": id }))
            .await
            .map(drop)
    }

    /// `migrate-set-capabilities` with `(name, state)` pairs, e.g. `("events", true)`.
    pub async fn migrate_set_capabilities(&self, caps: &[(&str, bool)]) -> Result<(), QmpError> {
        let list: Vec<Value> = caps
            .iter()
            .map(|(c, s)| json!({ "capability": c, "state": s }))
            .collect();
        self.execute("migrate-set-capabilities", json!({ "capabilities": list }))
            .await
            .map(drop)
    }
}
