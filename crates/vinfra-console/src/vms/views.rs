//! What the API shows of VMs: each record merged with what its host last reported; and the
//! tail of a VM's serial console.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;
use vinfra_proto::{AgentCommand, CommandError, CommandReply, HostReport};
use vinfra_types::api::{ConsoleLog, VmFilter};
use vinfra_types::{HostStatus, PowerState, VmObserved, VmSummary, VmUsage};

use crate::agents::RequestError;
use crate::error::Error;
use crate::state::records::VmRecord;
use crate::state::{Console, SHORT_TIMEOUT};

/// Default console log size.
pub const CONSOLE_LOG_DEFAULT: u64 = 64 * 1024;
/// Largest console log size.
pub const CONSOLE_LOG_MAX: u64 = 1024 * 1024;

/// A VM record merged with what its host last reported (`connected`: the host is; `seen`: its
/// report lists the VM).
pub fn merge(rec: &VmRecord, connected: bool, seen: Option<&VmObserved>) -> VmSummary {
    let (state, uptime_s, usage) = match (connected, seen) {
        (false, _) => (PowerState::Unknown, 0, VmUsage::default()),
        (true, None) => (PowerState::Stopped, 0, VmUsage::default()),
        (true, Some(v)) => (v.state, v.uptime_s, v.usage.clone()),
    };
    VmSummary {
        id: rec.id,
        name: rec.spec.name.clone(),
        vcpus: rec.spec.vcpus,
        memory_mib: rec.spec.memory_mib,
        host: rec.host.clone(),
        desired: rec.desired.power_state(),
        state,
        uptime_s,
        usage,
        unresponsive: connected && seen.is_some_and(|v| v.unresponsive),
        spec: rec.spec.clone(),
        created_at: rec.created_at,
        platform: rec.platform.clone(),
    }
}

/// Every VM.
pub fn list(console: &Console, filter: &VmFilter) -> Vec<VmSummary> {
    let observed: HashMap<String, (HostStatus, Arc<HostReport>)> = console
        .agents()
        .snapshot()
        .into_iter()
        .map(|(h, (s, o))| (h, (s, o.report)))
        .collect();
    // Index reports by host and VM id once, so the merge is linear. Keyed by both: right
    // after a migration the paused source and the destination may both list the VM.
    let mut by_id: HashMap<(&str, Uuid), &VmObserved> = HashMap::new();
    for (host, (status, report)) in &observed {
        if *status == HostStatus::Connected {
            for v in &report.vms {
                by_id.insert((host.as_str(), v.id), v);
            }
        }
    }
    console.with_vms(|vms| {
        vms.values()
            .filter(|v| filter.placed(&v.value.host, &v.value.spec))
            .map(|v| {
                let rec = &v.value;
                let connected = matches!(observed.get(&rec.host), Some((HostStatus::Connected, _)));
                let seen = by_id.get(&(rec.host.as_str(), rec.id)).copied();
                merge(rec, connected, seen)
            })
            .filter(|v| filter.state.is_none_or(|s| s == v.state))
            .collect()
    })
}

/// The API view of a VM record, from its host's latest report.
pub fn summary(console: &Console, rec: &VmRecord) -> VmSummary {
    match console.agents().observed(&rec.host) {
        (HostStatus::Connected, observed) => {
            let seen = observed.and_then(|o| o.report.vms.iter().find(|v| v.id == rec.id).cloned());
            merge(rec, true, seen.as_ref())
        }
        _ => merge(rec, false, None),
    }
}

/// One VM.
pub fn show(console: &Console, name: &str) -> Result<VmSummary, Error> {
    Ok(summary(console, &console.vm(name)?.value))
}

/// The API view of a VM record after its host answered a command with `reply`: the VM as the
/// answer shows it (the latest report when the answer does not show it).
pub fn after(console: &Console, rec: &VmRecord, reply: Option<CommandReply>) -> VmSummary {
    let mut s = summary(console, rec);
    if let Some(CommandReply::Vm { vm } | CommandReply::Stopped { vm, .. }) = reply {
        s.state = vm.state;
        s.uptime_s = vm.uptime_s;
        s.usage = vm.usage;
    }
    s
}

/// The tail of a VM's serial console, at most `bytes` (default [`CONSOLE_LOG_DEFAULT`]).
pub async fn console_log(
    console: &Console,
    name: &str,
    bytes: Option<u64>,
) -> Result<ConsoleLog, Error> {
    let max_bytes = bytes.unwrap_or(CONSOLE_LOG_DEFAULT);
    if max_bytes == 0 || max_bytes > CONSOLE_LOG_MAX {
        return Err(Error::OutOfRange {
            field: "bytes",
            min: 1,
            max: CONSOLE_LOG_MAX,
            got: max_bytes,
        });
    }
    let rec = console.vm(name)?.value;
    let reply = console
        .agents()
        .request(
            &rec.host,
            AgentCommand::ConsoleLog {
                id: rec.id,
                max_bytes,
            },
            SHORT_TIMEOUT,
        )
        .await?;
    match reply {
        CommandReply::Console { text } => Ok(ConsoleLog { text }),
        other => Err(Error::Agent(RequestError::Agent {
            host: rec.host,
            source: CommandError::Host {
                detail: format!("unexpected reply {other:?}"),
            },
        })),
    }
}
