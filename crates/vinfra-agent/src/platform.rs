//! What this host's QEMU runs guests as ([`HostPlatform`]): asked once at the agent's start.
//!
//! QEMU starts with no machine (`-machine none`) under the host's accelerator and answers on
//! QMP over its standard input and output: `query-cpu-definitions` (a model whose
//! `unavailable-features` is empty runs here with everything it names; only those QEMU calls
//! `migration-safe` are kept: `host` and `max` follow the host) and `query-machines` (the
//! versioned `pc-q35-*` types, and the one `q35` stands for). The CPU's name comes from
//! `/proc/cpuinfo`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use vinfra_types::host::q35_version;
use vinfra_types::{Accel, HostPlatform};

/// How long QEMU may take to answer.
pub const PLATFORM_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of asking QEMU.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// QEMU could not be started or talked to
    #[error("QEMU: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU did not answer in time
    #[error("QEMU did not answer within {0:?}")]
    Timeout(Duration),
    /// QEMU's answer was not what QMP gives
    #[error("QEMU's answer to {command}: {reason}")]
    Answer {
        /// The command.
        command: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Asks `qemu` what it runs under `accel` on this host.
pub async fn probe(qemu: &Path, accel: Accel) -> Result<HostPlatform, PlatformError> {
    let answers = tokio::time::timeout(PLATFORM_TIMEOUT, ask(qemu, accel))
        .await
        .map_err(|_| PlatformError::Timeout(PLATFORM_TIMEOUT))??;
    let cpu_name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| cpu_name(&t))
        .unwrap_or_default();
    from_answers(cpu_name, &answers[0], &answers[1])
}

/// [`probe`], tried three times (a QEMU slow at a host's boot), two seconds apart.
pub async fn probe_retrying(qemu: &Path, accel: Accel) -> Result<HostPlatform, PlatformError> {
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match probe(qemu, accel).await {
            Ok(p) => return Ok(p),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(PlatformError::Timeout(PLATFORM_TIMEOUT)))
}

/// The answers (`return` values) to `query-cpu-definitions` and `query-machines`.
async fn ask(qemu: &Path, accel: Accel) -> Result<[Value; 2], PlatformError> {
    let accel = match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let mut child = Command::new(qemu)
        .args(["-machine", &format!("none,accel={accel}")])
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-S"])
        .args(["-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    stdin
        .write_all(
            b"{\"execute\":\"qmp_capabilities\"}\n\
              {\"execute\":\"query-cpu-definitions\",\"id\":\"cpus\"}\n\
              {\"execute\":\"query-machines\",\"id\":\"machines\"}\n\
              {\"execute\":\"quit\"}\n",
        )
        .await?;
    stdin.flush().await?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut cpus, mut machines) = (None, None);
    while let Some(line) = lines.next_line().await? {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let slot = match v.get("id").and_then(Value::as_str) {
            Some("cpus") => &mut cpus,
            Some("machines") => &mut machines,
            _ => continue,
        };
        *slot = Some(v);
        if cpus.is_some() && machines.is_some() {
            break;
        }
    }
    drop(stdin);
    let _ = child.wait().await;
    let ret = |v: Option<Value>, command| match v {
        Some(mut v) => match v.get_mut("return") {
            Some(r) => Ok(r.take()),
            None => Err(PlatformError::Answer {
                command,
                reason: v
                    .pointer("/error/desc")
                    .and_then(Value::as_str)
                    .unwrap_or("no return value")
                    .to_string(),
            }),
        },
        None => Err(PlatformError::Answer {
            command,
            reason: "QEMU exited without answering".into(),
        }),
    };
    Ok([
        ret(cpus, "query-cpu-definitions")?,
        ret(machines, "query-machines")?,
    ])
}

/// The platform from QEMU's answers (pure).
pub fn from_answers(
    cpu_name: String,
    cpus: &Value,
    machines: &Value,
) -> Result<HostPlatform, PlatformError> {
    let bad = |command, reason: &str| PlatformError::Answer {
        command,
        reason: reason.to_string(),
    };
    let cpus = cpus
        .as_array()
        .ok_or_else(|| bad("query-cpu-definitions", "not a list"))?;
    let mut cpu_models: Vec<String> = cpus
        .iter()
        .filter(|c| c.get("migration-safe").and_then(Value::as_bool) == Some(true))
        .filter(|c| {
            c.get("unavailable-features")
                .and_then(Value::as_array)
                .is_some_and(|f| f.is_empty())
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    cpu_models.sort();
    cpu_models.dedup();
    let machines = machines
        .as_array()
        .ok_or_else(|| bad("query-machines", "not a list"))?;
    // Every q35 type: upstream's `pc-q35-7.2`, and distributions' own (`pc-q35-rhel9.4.0`),
    // ordered by the numbers in their names.
    let mut machine_types: Vec<(Vec<u32>, String)> = machines
        .iter()
        .filter_map(|m| m.get("name").and_then(Value::as_str))
        .filter(|n| n.starts_with("pc-q35-"))
        .map(|n| (q35_version(n).unwrap_or_else(|| numbers(n)), n.to_string()))
        .collect();
    machine_types.sort();
    machine_types.dedup();
    let default_machine_type = machines
        .iter()
        .find(|m| m.get("alias").and_then(Value::as_str) == Some("q35"))
        .and_then(|m| m.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .or_else(|| machine_types.last().map(|(_, n)| n.clone()))
        .ok_or_else(|| bad("query-machines", "no q35 machine type"))?;
    let mut machine_types: Vec<String> = machine_types.into_iter().map(|(_, n)| n).collect();
    if !machine_types.contains(&default_machine_type) {
        machine_types.push(default_machine_type.clone());
    }
    Ok(HostPlatform {
        cpu_name,
        cpu_models,
        machine_types,
        default_machine_type,
    })
}

/// The numbers in a name, in order (`pc-q35-rhel9.4.0` → `[35, 9, 4, 0]`).
fn numbers(name: &str) -> Vec<u32> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The first `model name` of `/proc/cpuinfo` text, with runs of spaces made one.
pub fn cpu_name(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn models_that_run_here_and_are_migration_safe_are_kept() {
        let cpus = json!([
            {"name": "max", "migration-safe": false, "unavailable-features": []},
            {"name": "qemu64", "migration-safe": true, "unavailable-features": []},
            {"name": "Nehalem-v1", "migration-safe": true, "unavailable-features": []},
            {"name": "Skylake-Server-v1", "migration-safe": true, "unavailable-features": ["avx512f"]},
            {"name": "odd", "unavailable-features": []}
        ]);
        let machines = json!([
            {"name": "pc-q35-7.10"},
            {"name": "pc-q35-7.2", "alias": "q35"},
            {"name": "pc-q35-7.9"},
            {"name": "pc-i440fx-7.2", "alias": "pc"},
            {"name": "microvm"}
        ]);
        let p = from_answers("Xeon".into(), &cpus, &machines).unwrap();
        assert_eq!(p.cpu_models, ["Nehalem-v1", "qemu64"]);
        assert_eq!(p.machine_types, ["pc-q35-7.2", "pc-q35-7.9", "pc-q35-7.10"]);
        assert_eq!(p.default_machine_type, "pc-q35-7.2");
        assert!(from_answers("x".into(), &json!({}), &machines).is_err());
        // A distribution's own types are kept (and the default always listed).
        let rhel = json!([
            {"name": "pc-q35-rhel9.4.0", "alias": "q35"},
            {"name": "pc-q35-rhel8.6.0"},
            {"name": "pc-i440fx-rhel7.6.0"}
        ]);
        let p = from_answers("Xeon".into(), &cpus, &rhel).unwrap();
        assert_eq!(p.machine_types, ["pc-q35-rhel8.6.0", "pc-q35-rhel9.4.0"]);
        assert_eq!(p.default_machine_type, "pc-q35-rhel9.4.0");
        assert!(from_answers("x".into(), &cpus, &json!([{"name": "microvm"}])).is_err());
    }

    #[test]
    fn the_cpu_name_is_the_first_model_name() {
        let text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)   Gold 6338\nflags: x\n\
                    processor\t: 1\nmodel name\t: Other\n";
        assert_eq!(
            cpu_name(text).as_deref(),
            Some("Intel(R) Xeon(R) Gold 6338")
        );
        assert_eq!(cpu_name("processor: 0\n"), None);
    }
}
