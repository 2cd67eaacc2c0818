//! What the API shows of VMs: each record merged with what its host last reported; and the
//! serial console (read from an offset, typed on).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use uuid::Uuid;
use vinfra_proto::{AgentCommand, CommandError, CommandReply, HostReport, MAX_CONSOLE_INPUT};
use vinfra_types::api::{ConsoleLog, VmFilter};
use vinfra_types::usage::UsageHistory;
use vinfra_types::{HostStatus, PowerState, VmObserved, VmSummary, VmUsage};

use crate::agents::RequestError;
use crate::error::Error;
use crate::state::records::{DesiredPower, VmRecord};
use crate::state::{Console, ANSWER_WITHIN};

/// Default console log size.
pub const CONSOLE_LOG_DEFAULT: u64 = 64 * 1024;
/// Largest console log size.
pub const CONSOLE_LOG_MAX: u64 = 1024 * 1024;

/// A VM record merged with what its host last reported (`connected`: the host is; `seen`: its
/// report lists the VM).
pub fn merge(rec: &VmRecord, connected: bool, seen: Option<&VmObserved>) -> VmSummary {
    let (uptime_s, usage) = match (connected, seen) {
        (true, Some(v)) => (v.uptime_s, v.usage.clone()),
        _ => (0, VmUsage::default()),
    };
    let state = state(connected, seen);
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

/// A VM's state as the API shows it: `unknown` while its host is disconnected, `stopped` when
/// its connected host does not list it, else what the host reports.
fn state(connected: bool, seen: Option<&VmObserved>) -> PowerState {
    match (connected, seen) {
        (false, _) => PowerState::Unknown,
        (true, None) => PowerState::Stopped,
        (true, Some(v)) => v.state,
    }
}

/// Every state a VM is shown in, in the order `GET /metrics` lists them.
const STATES: [PowerState; 7] = [
    PowerState::Running,
    PowerState::Paused,
    PowerState::Stopped,
    PowerState::Incoming,
    PowerState::Migrating,
    PowerState::Crashed,
    PowerState::Unknown,
];

/// The connected hosts' latest reports (their handles: no report is copied).
fn connected_reports(console: &Console) -> HashMap<String, Arc<HostReport>> {
    console
        .agents()
        .snapshot()
        .into_iter()
        .filter(|(_, (s, _))| *s == HostStatus::Connected)
        .map(|(h, (_, o))| (h, o.report))
        .collect()
}

/// The connected hosts' reports indexed by VM id (a fast hash: ids are random), so each record
/// finds what its host reports in one lookup.
struct Seen<'a> {
    connected: &'a HashMap<String, Arc<HostReport>>,
    by_id: foldhash::HashMap<Uuid, (&'a str, &'a VmObserved)>,
    /// Right after a migration the paused source and the destination may both list the VM:
    /// the few listed twice.
    more: Vec<(&'a str, &'a VmObserved)>,
}

impl<'a> Seen<'a> {
    fn new(connected: &'a HashMap<String, Arc<HostReport>>) -> Self {
        let mut by_id: foldhash::HashMap<Uuid, (&str, &VmObserved)> = foldhash::HashMap::default();
        by_id.reserve(connected.values().map(|r| r.vms.len()).sum());
        let mut more = Vec::new();
        for (host, report) in connected {
            for v in &report.vms {
                if let Some(first) = by_id.insert(v.id, (host.as_str(), v)) {
                    more.push(first);
                }
            }
        }
        Seen {
            connected,
            by_id,
            more,
        }
    }

    /// Whether `rec`'s host is connected, and what it reports of the VM (a VM its own host
    /// does not list looks up whether that host is connected).
    fn of(&self, rec: &VmRecord) -> (bool, Option<&'a VmObserved>) {
        let seen = match self.by_id.get(&rec.id) {
            Some((h, v)) if *h == rec.host => Some(*v),
            Some(_) => self
                .more
                .iter()
                .find(|(h, v)| *h == rec.host && v.id == rec.id)
                .map(|(_, v)| *v),
            None => None,
        };
        (
            seen.is_some() || self.connected.contains_key(&rec.host),
            seen,
        )
    }
}

/// VMs per state, in a fixed order of the states.
pub type StateCounts = Vec<(PowerState, u64)>;

/// How many VMs ask for each power state (`running`, `stopped`), and how many are in each
/// state as the API shows them (every state, zeros too), for `GET /metrics`: one pass over the
/// VM mirror with the reports indexed once, no summary built, no store read.
pub fn state_counts(console: &Console) -> (StateCounts, StateCounts) {
    let connected = connected_reports(console);
    let seen = Seen::new(&connected);
    let mut desired = [(PowerState::Running, 0), (PowerState::Stopped, 0)];
    let mut observed = STATES.map(|s| (s, 0));
    console.with_vms(|vms| {
        for v in vms.values() {
            let rec = &v.value;
            let want = rec.desired.power_state();
            if let Some(d) = desired.iter_mut().find(|(s, _)| *s == want) {
                d.1 += 1;
            }
            let (connected, seen) = seen.of(rec);
            let now = state(connected, seen);
            if let Some(o) = observed.iter_mut().find(|(s, _)| *s == now) {
                o.1 += 1;
            }
        }
    });
    (desired.to_vec(), observed.to_vec())
}

/// Every VM (that `filter` lets through), in name order.
pub fn list(console: &Console, filter: &VmFilter) -> Vec<VmSummary> {
    list_from(console, filter, None, usize::MAX)
}

/// At most `limit` VMs (that `filter` lets through) whose names sort after `after` (from the
/// first without it), in name order: a page reads only the records it shows (and those the
/// filter passes over on the way), not every record.
///
/// The connected hosts' latest reports are indexed once by VM id (a fast hash: ids are
/// random), so each record finds what its host reports in one lookup; a VM its own host does
/// not list (stopped, or right after a migration listed by the other host only) looks up
/// whether that host is connected. Only the reports' handles are copied, never a report.
pub fn list_from(
    console: &Console,
    filter: &VmFilter,
    after: Option<&str>,
    limit: usize,
) -> Vec<VmSummary> {
    let connected = connected_reports(console);
    let seen = Seen::new(&connected);
    console.with_vms(|vms| {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::with_capacity(if filter.is_empty() {
            vms.len().min(limit)
        } else {
            0
        });
        for (_, v) in vms.range::<str, _>((from, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let rec = &v.value;
            if !filter.placed(&rec.host, &rec.spec) {
                continue;
            }
            let (connected, seen) = seen.of(rec);
            let summary = merge(rec, connected, seen);
            if filter.state.is_none_or(|s| s == summary.state) {
                out.push(summary);
            }
        }
        out
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

/// A VM's CPU and memory over the last hour, from its hosts' reports.
pub fn usage(console: &Console, name: &str) -> Result<UsageHistory, Error> {
    let rec = console.vm(name)?.value;
    Ok(console.agents().vm_usage_history(rec.id))
}

/// A VM's serial console read through its host's agent within [`ANSWER_WITHIN`] (a host
/// slower than that is [`RequestError::Timeout`]): at most `bytes` (default
/// [`CONSOLE_LOG_DEFAULT`]) from the log's offset `from`, or its tail.
pub async fn console_log(
    console: &Console,
    name: &str,
    bytes: Option<u64>,
    from: Option<u64>,
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
    let command = AgentCommand::ConsoleRead {
        id: rec.id,
        from,
        max_bytes,
    };
    let reply = console
        .agents()
        .request(&rec.host, command, ANSWER_WITHIN)
        .await?;
    match reply {
        CommandReply::ConsoleChunk {
            text,
            start,
            end,
            input,
        } => Ok(ConsoleLog {
            text,
            host: rec.host,
            start,
            end,
            input,
        }),
        other => Err(unexpected(rec.host, &other)),
    }
}

/// Types `text` on a VM's serial console through its host's agent, within [`ANSWER_WITHIN`].
pub async fn console_input(console: &Console, name: &str, text: String) -> Result<(), Error> {
    if text.is_empty() || text.len() > MAX_CONSOLE_INPUT {
        return Err(Error::OutOfRange {
            field: "text (bytes)",
            min: 1,
            max: MAX_CONSOLE_INPUT as u64,
            got: text.len() as u64,
        });
    }
    let rec = console.vm(name)?.value;
    if rec.desired != DesiredPower::Running {
        return Err(Error::WrongState {
            vm: name.to_string(),
            state: rec.desired.power_state(),
            wanted: PowerState::Running,
            op: "take serial console input",
        });
    }
    let command = AgentCommand::ConsoleWrite { id: rec.id, text };
    match console
        .agents()
        .request(&rec.host, command, ANSWER_WITHIN)
        .await?
    {
        CommandReply::Done => Ok(()),
        other => Err(unexpected(rec.host, &other)),
    }
}

/// An agent's reply of the wrong kind.
fn unexpected(host: String, reply: &CommandReply) -> Error {
    Error::Agent(RequestError::Agent {
        host,
        source: CommandError::Host {
            detail: format!("unexpected reply {reply:?}"),
        },
    })
}
