//! Power actions on a VM: start (placed again on its own host), stop (graceful, then forced
//! after a timeout, or forced at once), reboot. Each writes the desired state first and rolls
//! it back when the host refuses.

use std::time::Duration;

use vinfra_proto::{AgentCommand, CommandError, CommandReply, StopKind};
use vinfra_types::api::StopVmRequest;
use vinfra_types::{HostStatus, PowerState, VmSummary};

use super::views;
use crate::agents::RequestError;
use crate::error::Error;
use crate::fit::{self, Target};
use crate::state::records::{now_s, DesiredPower};
use crate::state::tasks;
use crate::state::{Console, CREATE_TIMEOUT, SHORT_TIMEOUT};

pub use vinfra_types::vm::STOP_TIMEOUT_DEFAULT_S;
/// Largest graceful stop timeout.
pub const STOP_TIMEOUT_MAX_S: u64 = 3600;

/// The host's agent must be connected for a power action: refused at once (503) otherwise,
/// rather than accepted as a task that fails.
fn require_connected(console: &Console, host: &str) -> Result<(), Error> {
    if console.agents().status(host) != HostStatus::Connected {
        return Err(RequestError::NotConnected {
            host: host.to_string(),
        }
        .into());
    }
    Ok(())
}

/// [`Error::Migrating`] while the VM is being migrated.
fn refuse_while_migrating(console: &Console, name: &str) -> Result<(), Error> {
    if console.inflight().migrating(name) {
        return Err(Error::Migrating {
            vm: name.to_string(),
        });
    }
    Ok(())
}

/// Starts a VM on its host (creating it there when the host does not know it), unless another
/// host reports it live. A VM whose desired state was stopped must fit its host again, and
/// pass admission control (409 `ha-reserve`).
pub async fn start(console: &Console, name: &str) -> Result<VmSummary, Error> {
    let _busy = console.inflight().busy(name)?;
    refuse_while_migrating(console, name)?;
    let cur = console.vm(name)?.value;
    let changed = cur.desired != DesiredPower::Running;
    let rec = if changed {
        // The placement lock comes with the answer: held until the record is written.
        // Admission control too: a refusal (the HA reserve) writes nothing.
        let _placed = fit::place_and_admit(
            console,
            name,
            &cur.spec,
            cur.platform.as_ref(),
            Target::Start(&cur.host),
        )
        .await?;
        console.update_vm(name, |r| {
            r.desired = DesiredPower::Running;
            r.started_at = Some(now_s());
        })?
    } else {
        if console.agents().observed_state(&cur.host, cur.id) == Some(PowerState::Running) {
            return Ok(views::summary(console, &cur));
        }
        cur
    };
    let undo = || {
        if changed {
            let _ = console.update_vm(name, |r| r.desired = DesiredPower::Stopped);
        }
    };
    if let Some((other, state)) = console.agents().live_elsewhere(rec.id, &rec.host) {
        undo();
        return Err(Error::LiveElsewhere {
            vm: name.to_string(),
            state,
            host: other,
            placed: rec.host,
        });
    }
    tasks::say(format!("starting the VM on host {}", rec.host));
    tasks::accepted();
    let cmd = if console.agents().host_knows(&rec.host, rec.id) {
        AgentCommand::StartVm {
            id: rec.id,
            slot: rec.slot,
        }
    } else {
        AgentCommand::CreateVm {
            vm: rec.instance(),
            start: true,
        }
    };
    match console
        .agents()
        .request(&rec.host, cmd, CREATE_TIMEOUT)
        .await
    {
        Ok(reply) => {
            console.event("vm", name, "started");
            Ok(views::after(console, &rec, Some(reply)))
        }
        Err(e) => {
            undo();
            Err(e.into())
        }
    }
}

/// Stops a VM: ACPI power-off and a kill after `timeout_s` (default
/// [`STOP_TIMEOUT_DEFAULT_S`]), or a kill at once with `force`. A host that no longer has the
/// VM is fine.
pub async fn stop(
    console: &Console,
    name: &str,
    request: StopVmRequest,
) -> Result<VmSummary, Error> {
    let timeout_s = request.timeout_s.unwrap_or(STOP_TIMEOUT_DEFAULT_S);
    if timeout_s > STOP_TIMEOUT_MAX_S {
        return Err(Error::OutOfRange {
            field: "timeout_s",
            min: 0,
            max: STOP_TIMEOUT_MAX_S,
            got: timeout_s,
        });
    }
    let _busy = console.inflight().busy(name)?;
    refuse_while_migrating(console, name)?;
    let cur = console.vm(name)?.value;
    require_connected(console, &cur.host)?;
    let was = cur.desired;
    let rec = if was != DesiredPower::Stopped {
        console.update_vm(name, |r| r.desired = DesiredPower::Stopped)?
    } else {
        cur
    };
    let cmd = AgentCommand::StopVm {
        id: rec.id,
        force: request.force,
        timeout_s,
    };
    tasks::say(if request.force {
        format!("powering the VM off on host {}", rec.host)
    } else {
        format!(
            "waiting up to {timeout_s} s for the guest to shut down, then powering it off \
             (host {})",
            rec.host
        )
    });
    tasks::accepted();
    let wait = Duration::from_secs(timeout_s) + SHORT_TIMEOUT;
    match console.agents().request(&rec.host, cmd, wait).await {
        Ok(reply) => {
            let what = match &reply {
                CommandReply::Stopped {
                    how: StopKind::ForcedAfterTimeout,
                    ..
                } => format!(
                    "powered off by force: the guest did not shut down within {timeout_s} s"
                ),
                CommandReply::Stopped {
                    how: StopKind::Forced,
                    ..
                } => "powered off".to_string(),
                CommandReply::Stopped { .. } => "stopped".to_string(),
                // An older agent does not say how the VM stopped.
                _ if request.force => "powered off".to_string(),
                _ => "stopped".to_string(),
            };
            tasks::say(&what);
            console.event("vm", name, what);
            Ok(views::after(console, &rec, Some(reply)))
        }
        Err(RequestError::Agent {
            source: CommandError::NoSuchVm { .. },
            ..
        }) => Ok(views::after(console, &rec, None)),
        Err(e) => {
            if was != DesiredPower::Stopped {
                let _ = console.update_vm(name, |r| r.desired = was);
            }
            Err(e.into())
        }
    }
}

/// Resets a running VM.
pub async fn reboot(console: &Console, name: &str) -> Result<VmSummary, Error> {
    let _busy = console.inflight().busy(name)?;
    refuse_while_migrating(console, name)?;
    let rec = console.vm(name)?.value;
    require_connected(console, &rec.host)?;
    if rec.desired != DesiredPower::Running {
        return Err(Error::WrongState {
            vm: name.to_string(),
            state: rec.desired.power_state(),
            wanted: PowerState::Running,
            op: "reboot",
        });
    }
    tasks::say(format!("resetting the VM on host {}", rec.host));
    tasks::accepted();
    let reply = console
        .agents()
        .request(
            &rec.host,
            AgentCommand::RebootVm { id: rec.id },
            SHORT_TIMEOUT,
        )
        .await?;
    console.event("vm", name, "rebooted");
    Ok(views::after(console, &rec, Some(reply)))
}
