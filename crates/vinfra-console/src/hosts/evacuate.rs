//! Maintenance on: the host's evacuation, run as a task (`host_evacuate`) that ends when no
//! running VM is left on the host.
//!
//! The flag is set at once (nothing new is placed on the host) and a balancing pass is woken;
//! with balancing `automatic` the passes migrate the host's running VMs away, with `manual`
//! they recommend it (an operator applies the recommendations), with `off` the operator
//! migrates them by hand. The task shows how many are left. Taking the host out of
//! maintenance (`PATCH`, an admin's change as putting it in is) cancels it: the task ends
//! `cancelled`, what has moved stays where it went; the task itself is not cancellable
//! (`DELETE /tasks/{id}` is an operator's, and would change a host). After
//! [`EVACUATION_LIMIT`] it fails with the VMs still there, the host staying in maintenance.

use std::time::{Duration, Instant};

use vinfra_types::api::UpdateHostRequest;
use vinfra_types::balancing::BalancingMode;
use vinfra_types::HostSummary;

use super::crud;
use crate::error::Error;
use crate::state::records::DesiredPower;
use crate::state::tasks;
use crate::state::Console;

/// How long an evacuation waits for its host to empty.
pub const EVACUATION_LIMIT: Duration = Duration::from_secs(3600);

/// How often it looks.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// The VMs placed on `host` that should run there.
pub fn running_on(console: &Console, host: &str) -> usize {
    console.with_vms(|vms| {
        vms.values()
            .filter(|v| v.value.host == host && v.value.desired == DesiredPower::Running)
            .count()
    })
}

/// `update` (which puts host `name` in maintenance), then, within its task, the evacuation to
/// its end: the host once no running VM is left on it.
pub async fn enter_maintenance(
    console: &Console,
    name: &str,
    update: UpdateHostRequest,
) -> Result<HostSummary, Error> {
    crud::update(console, name, update)?;
    tasks::accepted();
    let total = running_on(console, name);
    let deadline = Instant::now() + EVACUATION_LIMIT;
    let mut said = None;
    loop {
        let left = running_on(console, name);
        if left == 0 {
            tasks::say(format!("no running VM is left on host {name}"));
            return crud::show(console, name);
        }
        if !console.host(name)?.value.maintenance {
            tasks::mark_cancelled();
            return Err(Error::EvacuationCancelled {
                host: name.to_string(),
            });
        }
        let unfinished = |why: &str| Error::EvacuationUnfinished {
            host: name.to_string(),
            left,
            why: why.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(unfinished(&format!(
                "not evacuated within {} minutes; it stays in maintenance",
                EVACUATION_LIMIT.as_secs() / 60
            )));
        }
        let how = match console.settings().balancing.mode {
            BalancingMode::Automatic => "balancing migrates them",
            BalancingMode::Manual => "apply the balancer's recommendations to move them",
            BalancingMode::Off => "balancing is off: migrate them by hand",
        };
        let words = format!("{left} of {total} running VM(s) still on host {name}; {how}");
        if said.as_ref() != Some(&words) {
            let moved = total.saturating_sub(left);
            tasks::progress(u8::try_from(moved * 100 / total.max(1)).unwrap_or(100));
            tasks::say(words.clone());
            said = Some(words);
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}
