//! Deciding alone: what the agent's pets say, the watchdog thread that self-fences, and the
//! isolation response.
//!
//! The watchdog checks every [`WATCH_PERIOD`] and does no datastore I/O: it reads the start of
//! the last successful lease write from an atomic, the pets from memory, and kills with signals.
//! - Self-fence: no lease renewal and no console contact for `self_fence_after` → SIGKILL
//!   every child and reap them (every tick while it lasts: a child started meanwhile goes too;
//!   `spawn` is refused meanwhile). The console restarts a VM elsewhere at the earliest
//!   `lease_timeout + margin` after the last write it saw, at least a second later
//!   ([`HaTimings::validate`]).
//! - Isolation (contact lost for `self_fence_after` while the lease renews, or the agent gone
//!   past `agent_grace`): the cluster's response, once per episode, on a thread of its own
//!   (a shutdown waits up to a minute, and stops killing if contact comes back meanwhile):
//!   `power-off` kills the HA VMs' children, `shutdown` powers them down over QMP first; then
//!   the lease says `stopped` with exactly the VMs reaped
//!   (less any started again meanwhile: such a VM runs here).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_ha::{HaTimings, TimingError};

use crate::protocol::{IsolationResponse, IsolationView, Pet};
use crate::renew::LeaseKeeper;
use crate::spawn::{Children, KILL_WAIT};

/// How often the watchdog checks.
pub const WATCH_PERIOD: Duration = Duration::from_millis(100);
/// How long a shutdown waits for the guests to power off before killing them.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);
/// How long the watchdog waits for the children it SIGKILLed to be reaped.
const FENCE_REAP_WAIT: Duration = Duration::from_secs(1);
/// How often a shutdown under way checks that its host is still isolated.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// How long a QMP connection or `system_powerdown` may take during a shutdown.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the watchdog could not start.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// A thread could not be started.
    #[error("starting the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
}

/// What the guard's decision looks at (all on the guard's monotonic clock).
#[derive(Debug, Clone, Copy)]
struct Inputs {
    now: Instant,
    started: Instant,
    timings: HaTimings,
    /// Start of the last successful lease write.
    last_renewal: Option<Instant>,
    /// The last pet.
    last_pet: Option<Instant>,
    /// When the agent's pets came back after an absence (or first came).
    agent_back: Option<Instant>,
    /// The agent's last console contact, as its pets reported it.
    contact: Option<Instant>,
    /// The latest moment the console is known to have run (its datastore heartbeat).
    console_alive: Option<Instant>,
    /// When that console started, at the latest.
    console_since: Option<Instant>,
    response: IsolationResponse,
}

/// What the condition calls for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Nothing,
    SelfFence,
    Isolated(IsolationResponse),
}

/// The guard's decision: `vinfra_ha::guard::decide` for the self-fence, and
/// `vinfra_ha::guard::isolation` for whether the host is isolated (whatever the response: the
/// guard reports `isolated` with `keep-running` too, and applies a response once per episode
/// itself).
fn decide(i: &Inputs) -> Verdict {
    let g = vinfra_ha::guard::GuardInputs {
        now: i.now,
        started: i.started,
        last_write: i.last_renewal,
        last_contact: i.contact,
        last_pet: i.last_pet,
        agent_back: i.agent_back,
        console_alive: i.console_alive,
        console_since: i.console_since,
        response: i.response,
        applied: true,
    };
    if vinfra_ha::guard::decide(&g, &i.timings) == vinfra_ha::GuardAction::SelfFence {
        return Verdict::SelfFence;
    }
    match vinfra_ha::guard::isolation(&g, &i.timings) {
        Some(_) => Verdict::Isolated(i.response),
        None => Verdict::Nothing,
    }
}

#[derive(Debug)]
struct WatchState {
    timings: HaTimings,
    last_pet: Option<Instant>,
    agent_back: Option<Instant>,
    contact: Option<Instant>,
    ha_vms: Vec<Uuid>,
    response: IsolationResponse,
    fencing: bool,
    self_fences: u32,
    isolated: bool,
    isolating: bool,
    isolation: Option<(IsolationResponse, Vec<Uuid>, Instant)>,
}

/// What [`Watch::report`] says, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchReport {
    /// The timings in force.
    pub timings: HaTimings,
    /// Self-fence episodes since start.
    pub self_fences: u32,
    /// The isolation condition held at the last check.
    pub isolated: bool,
    /// The last isolation response carried out.
    pub isolation: Option<IsolationView>,
    /// How long the agent has been absent, when it is.
    pub agent_absent_ms: Option<u64>,
    /// The age of the last known console contact.
    pub console_contact_age_ms: Option<u64>,
}

/// The pets, the decision's state and its results.
#[derive(Debug)]
pub struct Watch {
    started: Instant,
    shutdown_wait: Duration,
    state: Mutex<WatchState>,
}

impl Watch {
    /// A watch with `timings` until the first pet; a shutdown waits `shutdown_wait`.
    pub fn new(timings: HaTimings, shutdown_wait: Duration) -> Arc<Watch> {
        Arc::new(Watch {
            started: Instant::now(),
            shutdown_wait,
            state: Mutex::new(WatchState {
                timings,
                last_pet: None,
                agent_back: None,
                contact: None,
                ha_vms: Vec::new(),
                response: IsolationResponse::KeepRunning,
                fencing: false,
                self_fences: 0,
                isolated: false,
                isolating: false,
                isolation: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a pet received at `now`; its timings must be safe.
    pub fn pet(&self, pet: &Pet, now: Instant) -> Result<(), TimingError> {
        pet.timings.validate()?;
        let mut s = self.lock();
        let was_absent = s
            .last_pet
            .is_none_or(|t| now.saturating_duration_since(t) >= s.timings.heartbeat_timeout);
        if was_absent {
            s.agent_back = Some(now);
        }
        s.last_pet = Some(now);
        if let Some(at) = pet
            .console_contact_age_ms
            .and_then(|ms| now.checked_sub(Duration::from_millis(ms)))
        {
            s.contact = s.contact.max(Some(at));
        }
        s.ha_vms = pet.ha_vms.clone();
        s.response = pet.isolation_response;
        s.timings = pet.timings;
        Ok(())
    }

    /// The timings in force.
    pub fn timings(&self) -> HaTimings {
        self.lock().timings
    }

    /// True while the guard self-fences (it starts nothing).
    pub fn fencing(&self) -> bool {
        self.lock().fencing
    }

    fn agent_absent(&self, s: &WatchState, now: Instant) -> Option<u64> {
        let absent_for = now.saturating_duration_since(s.last_pet.unwrap_or(self.started));
        (s.last_pet.is_none() || absent_for >= s.timings.heartbeat_timeout)
            .then_some(absent_for.as_millis() as u64)
    }

    /// The state for `status`.
    pub fn report(&self, now: Instant) -> WatchReport {
        let s = self.lock();
        WatchReport {
            timings: s.timings,
            self_fences: s.self_fences,
            isolated: s.isolated,
            isolation: s
                .isolation
                .as_ref()
                .map(|(response, vms, at)| IsolationView {
                    response: *response,
                    vms: vms.clone(),
                    age_ms: now.saturating_duration_since(*at).as_millis() as u64,
                }),
            agent_absent_ms: self.agent_absent(&s, now),
            console_contact_age_ms: s
                .contact
                .map(|c| now.saturating_duration_since(c).as_millis() as u64),
        }
    }

    /// Starts the watchdog thread.
    pub fn start(
        self: &Arc<Watch>,
        children: Arc<Children>,
        keeper: Arc<LeaseKeeper>,
    ) -> Result<(), FenceError> {
        let watch = self.clone();
        std::thread::Builder::new()
            .name("guard-watchdog".into())
            .spawn(move || watch.watchdog(&children, &keeper))
            .map_err(|e| FenceError::Thread("watchdog", e))?;
        Ok(())
    }

    fn watchdog(self: &Arc<Watch>, children: &Arc<Children>, keeper: &Arc<LeaseKeeper>) {
        let mut next = Instant::now();
        loop {
            next += WATCH_PERIOD;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
            self.check(Instant::now(), children, keeper);
        }
    }

    /// One check of the watchdog.
    fn check(self: &Arc<Watch>, now: Instant, children: &Arc<Children>, keeper: &Arc<LeaseKeeper>) {
        let (verdict, absent) = {
            let s = self.lock();
            let inputs = Inputs {
                now,
                started: self.started,
                timings: s.timings,
                last_renewal: keeper.last_renewal(),
                last_pet: s.last_pet,
                agent_back: s.agent_back,
                contact: s.contact,
                console_alive: keeper.console_alive(),
                console_since: keeper.console_since(),
                response: s.response,
            };
            (decide(&inputs), self.agent_absent(&s, now))
        };
        keeper.set_agent_absent(absent);
        match verdict {
            Verdict::SelfFence => {
                {
                    let mut s = self.lock();
                    if !s.fencing {
                        s.fencing = true;
                        s.self_fences += 1;
                        tracing::error!(
                            renewal_age = ?keeper.last_renewal().map(|t| now.saturating_duration_since(t)),
                            "no lease renewal and no console contact: self-fencing, killing every VM"
                        );
                    }
                    s.isolated = false;
                }
                let killed = children.kill_where(|_| true);
                if !killed.is_empty() {
                    let gone = children.wait_gone(&killed, FENCE_REAP_WAIT);
                    tracing::error!(killed = killed.len(), reaped = gone.len(), "self-fenced");
                    let vms: Vec<Uuid> = gone.iter().map(|(vm, _)| *vm).collect();
                    keeper.add_stopped(&vms);
                }
            }
            Verdict::Isolated(response) => {
                let mut s = self.lock();
                if s.fencing {
                    tracing::warn!("self-fence over");
                }
                s.fencing = false;
                if !s.isolated {
                    s.isolated = true;
                    tracing::warn!(?response, "host isolated");
                    if response != IsolationResponse::KeepRunning && !s.isolating {
                        s.isolating = true;
                        let ha_vms = s.ha_vms.clone();
                        drop(s);
                        self.isolate(response, ha_vms, children, keeper);
                    }
                }
            }
            Verdict::Nothing => {
                let mut s = self.lock();
                if s.fencing || s.isolated {
                    tracing::info!("lease and contact renewed");
                }
                s.fencing = false;
                s.isolated = false;
            }
        }
    }

    /// Starts the isolation response on a thread of its own.
    fn isolate(
        self: &Arc<Watch>,
        response: IsolationResponse,
        ha_vms: Vec<Uuid>,
        children: &Arc<Children>,
        keeper: &Arc<LeaseKeeper>,
    ) {
        let (watch, children, keeper) = (self.clone(), children.clone(), keeper.clone());
        let spawned = std::thread::Builder::new()
            .name("guard-isolation".into())
            .spawn(move || {
                let still = || watch.lock().isolated;
                let vms = apply_isolation(
                    response,
                    &ha_vms,
                    &children,
                    &keeper,
                    watch.shutdown_wait,
                    &still,
                );
                let mut s = watch.lock();
                s.isolating = false;
                s.isolation = Some((response, vms, Instant::now()));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the isolation response");
            self.lock().isolating = false;
        }
    }
}

/// Carries out `response` on the children of `ha_vms` and writes the lease `stopped` with the
/// VMs reaped that have not been started again meanwhile; returns them. A shutdown whose host
/// is no longer isolated (`still` false: contact back) before its guests are all off kills
/// nothing: the console keeps a connected host's VMs where they are.
fn apply_isolation(
    response: IsolationResponse,
    ha_vms: &[Uuid],
    children: &Children,
    keeper: &LeaseKeeper,
    shutdown_wait: Duration,
    still: &dyn Fn() -> bool,
) -> Vec<Uuid> {
    let targets: Vec<(Uuid, u32)> = children
        .live()
        .into_iter()
        .filter(|r| ha_vms.contains(&r.vm))
        .map(|r| (r.vm, r.pid))
        .collect();
    let mut gone: Vec<Uuid> = Vec::new();
    if response == IsolationResponse::Shutdown && !targets.is_empty() {
        let sockets: Vec<_> = children
            .live()
            .into_iter()
            .filter(|r| targets.contains(&(r.vm, r.pid)))
            .map(|r| (r.vm, r.pid, r.qmp_socket))
            .collect();
        powerdown(&sockets);
        let deadline = Instant::now() + shutdown_wait;
        let (ended, abandoned) = loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(SHUTDOWN_POLL);
            let ended = children.wait_gone(&targets, slice);
            if ended.len() == targets.len() || Instant::now() >= deadline {
                break (ended, false);
            }
            if !still() {
                break (ended, true);
            }
        };
        gone.extend(ended.into_iter().map(|(vm, _)| vm));
        if abandoned {
            tracing::warn!(
                ?response,
                stopped = ?gone,
                "contact back before the guests were off: the isolation response stops, \
                 nothing more is killed"
            );
            keeper.add_stopped(&gone);
            return gone;
        }
    }
    let killed = children.kill_where(|r| targets.contains(&(r.vm, r.pid)));
    gone.extend(
        children
            .wait_gone(&killed, KILL_WAIT)
            .into_iter()
            .map(|(vm, _)| vm),
    );
    // A VM started again meanwhile (the shutdown waits up to a minute: contact may be back and
    // the VM restarted here after a crash) runs here: the lease must not say it stopped, or the
    // console would start it elsewhere too.
    let live: Vec<Uuid> = children.live().into_iter().map(|r| r.vm).collect();
    gone.retain(|vm| !live.contains(vm));
    tracing::warn!(?response, stopped = ?gone, "isolation response applied");
    keeper.add_stopped(&gone);
    gone
}

/// Sends `system_powerdown` to each QMP socket, when the child `pid` is the one listening on
/// it (the socket's directory is the QEMU's: it could put another VM's socket in its place);
/// errors logged: the kill follows anyway.
fn powerdown(sockets: &[(Uuid, u32, std::path::PathBuf)]) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "no runtime for QMP: the VMs will be killed");
            return;
        }
    };
    runtime.block_on(async {
        for (vm, pid, socket) in sockets {
            let asked = async {
                let qmp = vinfra_qmp::Qmp::connect_to(socket, *pid, QMP_TIMEOUT).await?;
                qmp.execute_timeout("system_powerdown", serde_json::json!({}), QMP_TIMEOUT)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = asked.await {
                tracing::warn!(%vm, error = %vinfra_types::error::chain(&e), "system_powerdown failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn inputs(t0: Instant) -> Inputs {
        Inputs {
            now: t0 + ms(10_000),
            started: t0,
            timings: HaTimings::default(),
            last_renewal: Some(t0 + ms(10_000)),
            last_pet: Some(t0 + ms(10_000)),
            agent_back: Some(t0),
            contact: Some(t0 + ms(10_000)),
            console_alive: Some(t0 + ms(10_000)),
            console_since: t0.checked_sub(Duration::from_secs(60)),
            response: IsolationResponse::PowerOff,
        }
    }

    #[test]
    fn self_fence_needs_both_the_lease_and_the_contact_lost() {
        let t0 = Instant::now();
        let ok = inputs(t0);
        assert_eq!(decide(&ok), Verdict::Nothing);
        let stale = Some(t0 + ms(7_000));
        let no_lease = Inputs {
            last_renewal: stale,
            ..ok
        };
        assert_eq!(decide(&no_lease), Verdict::Nothing);
        let neither = Inputs {
            contact: stale,
            ..no_lease
        };
        assert_eq!(decide(&neither), Verdict::SelfFence);
        // Just under the deadline: not yet.
        let almost = Inputs {
            last_renewal: Some(t0 + ms(7_001)),
            contact: Some(t0 + ms(7_001)),
            ..ok
        };
        assert_eq!(decide(&almost), Verdict::Nothing);
        // No contact ever: the lease alone decides.
        let never = Inputs {
            contact: None,
            last_pet: None,
            agent_back: None,
            ..no_lease
        };
        assert_eq!(decide(&never), Verdict::SelfFence);
    }

    #[test]
    fn isolation_is_contact_lost_with_the_agent_present_or_the_agent_gone() {
        let t0 = Instant::now();
        let ok = inputs(t0);
        let lost = Inputs {
            contact: Some(t0 + ms(6_000)),
            ..ok
        };
        assert_eq!(
            decide(&lost),
            Verdict::Isolated(IsolationResponse::PowerOff)
        );
        // The console's heartbeat stopped when the contact did: the console is down, no host
        // is isolated.
        let console_down = Inputs {
            console_alive: Some(t0 + ms(6_500)),
            ..lost
        };
        assert_eq!(decide(&console_down), Verdict::Nothing);
        // An agent back 1 s ago has self_fence_after to reach the console.
        let back = Inputs {
            agent_back: Some(t0 + ms(9_000)),
            ..lost
        };
        assert_eq!(decide(&back), Verdict::Nothing);
        // An agent away for less than its grace: nothing, whatever its last contact.
        let away = Inputs {
            last_pet: Some(t0 + ms(5_000)),
            ..lost
        };
        assert_eq!(decide(&away), Verdict::Nothing);
        let gone = Inputs {
            now: t0 + ms(65_000),
            last_renewal: Some(t0 + ms(65_000)),
            ..away
        };
        assert_eq!(
            decide(&gone),
            Verdict::Isolated(IsolationResponse::PowerOff)
        );
    }
}
