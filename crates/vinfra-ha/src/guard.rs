//! The guard's decision, taken every tick (100 ms) from what it knows: kill every QEMU of the
//! host (self-fence), apply the cluster's isolation response, or nothing.
//!
//! Inputs ([`GuardInputs`]): the start of the guard's last successful lease write `W`; the
//! host's last console contact `C` (the send time of the last heartbeat the console
//! acknowledged, which the agent passes on in its pets); the last pet from the agent; the
//! cluster's [`IsolationResponse`] and whether it was applied already.
//!
//! Rules ([`decide`]):
//! 1. **Self-fence** when `now ≥ max(W, C) + self_fence_after` (neither a lease write nor a
//!    console contact for that long), or when the guard has neither yet. It is a level, not an
//!    event: while the decision is [`GuardAction::SelfFence`] no QEMU may run on the host (kill
//!    every one, spawn none), whatever its VM's HA setting.
//! 2. **Isolation response** (unless `keep-running`, and once: `applied`), when the host is
//!    isolated ([`isolation`]): the agent is present and has been without console contact for
//!    `self_fence_after` (its latest pet was sent at least that long after its last contact:
//!    an agent that is gone does not count as one without contact) while the console ran (its
//!    own heartbeat on the datastore changed at least `self_fence_after` after that contact,
//!    and after [`CONSOLE_RECONNECT`] from that console's start: a console that is down or
//!    restarting cuts every host off at once, and that is no host's isolation), or the agent has been gone for `agent_grace` (an agent restarted within its
//!    grace never sets it off). The daemon clears `applied` when [`isolation`] says the host is
//!    isolated no more.
//! 3. Nothing otherwise.
//!
//! # Why a restart elsewhere never meets a running QEMU
//!
//! A reader (the console) calls the lease expired at `E` only once it has seen one value
//! `(incarnation, counter)` unchanged from some `X` to `E` with `E − X ≥ expiry` (`expiry =
//! lease_timeout + margin`), where `X` is no earlier than its first reading of that value nor
//! than `since`, the moment it lost the host ([`crate::LeaseObserver::verdict`]). Take `T = E −
//! kill_slack = E − expiry + self_fence_after ≥ X + self_fence_after`. At `T`:
//!
//! - every write the guard counts as successful by `T` returned by `T`, and its rename landed
//!   between its start and its return. Had it started after `X`, it would have landed in `(X,
//!   T]` and changed the value the reader saw unchanged through `(X, E]`. So it started at or
//!   before `X`: `W ≤ X`. (A write the guard counted as failed may still have landed; that only
//!   changes the value, which makes `X` later.)
//! - the console acknowledged the heartbeat sent at `C`, so it received it at or after `C`, and
//!   it loses the host at or after the last message it received: `C ≤ since ≤ X`.
//!
//! So `max(W, C) + self_fence_after ≤ X + self_fence_after ≤ T`: the guard's deadline, from
//! what it knew, had passed `kill_slack` before the reader could see the lease expired, and it
//! decided to self-fence at its tick then. In particular, when nothing succeeds any more after
//! the last write `W` and contact `C`, the deadline is `D = max(W, C) + self_fence_after` and
//! `E ≥ D + kill_slack`. Every QEMU has had [`HaTimings::kill_slack`] (3 s by default, at least
//! a second or a renewal period by [`HaTimings::validate`]) to die before the console may
//! restart it. Both clocks are monotonic and only their rates are compared (the margin absorbs
//! drift and scheduling). A guard killed instead takes its QEMUs with it (they die with their
//! parent).
//!
//! The property test in `tests/guard_safety.rs` checks this on random schedules of lease
//! writes (succeeding, failing, failing yet landing, landing late), heartbeats (lost either
//! way), pets and console readings.

use std::time::{Duration, Instant};

use crate::timing::HaTimings;

/// What a guard does with its host's HA VMs when the host is isolated (the cluster's HA
/// setting).
pub use vinfra_types::ha::IsolationResponse;

/// How long a console that (re)started gives the agents to connect to it before a host it
/// has not heard from counts as cut off from it: a console restart is no host's isolation.
pub const CONSOLE_RECONNECT: Duration = Duration::from_secs(10);

/// What the guard knows at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardInputs {
    /// Now, on the host's monotonic clock.
    pub now: Instant,
    /// When the guard started (counts as the last contact and the last pet it never had, for
    /// the isolation response only).
    pub started: Instant,
    /// Start of its last successful lease write, if any.
    pub last_write: Option<Instant>,
    /// Send time of the last heartbeat the console acknowledged, from the agent's pets.
    pub last_contact: Option<Instant>,
    /// Send time of the agent's last pet.
    pub last_pet: Option<Instant>,
    /// When the agent's pets came back after an absence (or first came): a restarted agent
    /// has `self_fence_after` from then to reach the console before its host counts as
    /// isolated.
    pub agent_back: Option<Instant>,
    /// The latest moment the console is known to have run: the guard read its datastore
    /// heartbeat ([`crate::lease::CONSOLE_HEARTBEAT`]) changed since the read before, at
    /// the time of that earlier read (a lower bound on when it was written).
    pub console_alive: Option<Instant>,
    /// When the console that wrote that heartbeat started, at the latest (the heartbeat says
    /// how long it has run); `None` when unknown.
    pub console_since: Option<Instant>,
    /// The cluster's isolation response.
    pub response: IsolationResponse,
    /// Whether the response has been applied during this isolation.
    pub applied: bool,
}

/// The guard's decision at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// Nothing to do.
    Nothing,
    /// Kill every QEMU of the host and spawn none while this holds.
    SelfFence,
    /// Apply this isolation response to the host's HA VMs (never `keep-running`).
    ApplyIsolation(IsolationResponse),
}

/// Why the host counts as isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationCause {
    /// The agent runs and has had no console contact for `self_fence_after`, while the
    /// console ran.
    ContactLost,
    /// The agent has been gone for `agent_grace`.
    AgentAbsent,
}

/// The guard's self-fence deadline: `max(last write, last contact) + self_fence_after`; `None`
/// when it has neither (then it is fenced already).
pub fn self_fence_deadline(
    last_write: Option<Instant>,
    last_contact: Option<Instant>,
    timings: &HaTimings,
) -> Option<Instant> {
    let last = match (last_write, last_contact) {
        (Some(w), Some(c)) => w.max(c),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return None,
    };
    last.checked_add(timings.self_fence_after)
}

/// Whether the host is isolated now, and why (see the module doc).
pub fn isolation(inputs: &GuardInputs, timings: &HaTimings) -> Option<IsolationCause> {
    let pet = inputs.last_pet.unwrap_or(inputs.started);
    if inputs.now.saturating_duration_since(pet) >= timings.agent_grace {
        return Some(IsolationCause::AgentAbsent);
    }
    let contact = inputs
        .last_contact
        .max(inputs.agent_back)
        .unwrap_or(inputs.started);
    // Only a pet sent at least self_fence_after after the last contact proves the agent was
    // there, without contact, for that long; only a console heartbeat that long after it
    // proves the console ran meanwhile (else the console is what is gone).
    let present = inputs.last_pet.is_some();
    let console_ran = match (inputs.console_alive, inputs.console_since) {
        (Some(alive), Some(since)) => {
            let from = contact.max(since + CONSOLE_RECONNECT);
            alive.saturating_duration_since(from) >= timings.self_fence_after
        }
        _ => false,
    };
    (present && console_ran && pet.saturating_duration_since(contact) >= timings.self_fence_after)
        .then_some(IsolationCause::ContactLost)
}

/// The guard's decision at `inputs.now` (see the module doc).
pub fn decide(inputs: &GuardInputs, timings: &HaTimings) -> GuardAction {
    match self_fence_deadline(inputs.last_write, inputs.last_contact, timings) {
        Some(deadline) if inputs.now < deadline => {}
        _ => return GuardAction::SelfFence,
    }
    if inputs.applied || inputs.response == IsolationResponse::KeepRunning {
        return GuardAction::Nothing;
    }
    match isolation(inputs, timings) {
        Some(_) => GuardAction::ApplyIsolation(inputs.response),
        None => GuardAction::Nothing,
    }
}

/// How long until the decision can change by time alone (for a guard that sleeps until then
/// or its next tick, whichever comes first): until the self-fence deadline.
pub fn until_deadline(inputs: &GuardInputs, timings: &HaTimings) -> Duration {
    self_fence_deadline(inputs.last_write, inputs.last_contact, timings)
        .map_or(Duration::ZERO, |d| d.saturating_duration_since(inputs.now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(t0: Instant) -> GuardInputs {
        GuardInputs {
            now: t0,
            started: t0,
            last_write: Some(t0),
            last_contact: Some(t0),
            last_pet: Some(t0),
            agent_back: None,
            console_alive: None,
            console_since: t0.checked_sub(Duration::from_secs(60)),
            response: IsolationResponse::PowerOff,
            applied: false,
        }
    }

    #[test]
    fn contact_lost_while_the_console_is_down_is_no_isolation() {
        let t = HaTimings::default();
        let t0 = Instant::now();
        // Contact at 0, lease renewing, the agent petting without contact until 10 s.
        let mut i = inputs(t0);
        i.now = ms(t0, 10_000);
        i.last_write = Some(ms(t0, 9_500));
        i.last_pet = Some(ms(t0, 10_000));
        // The console's heartbeat stopped with the contact: the console is down.
        i.console_alive = Some(ms(t0, 1_000));
        assert_eq!(isolation(&i, &t), None);
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
        i.console_alive = None;
        assert_eq!(isolation(&i, &t), None);
        // It ran on for self_fence_after without reaching this host: this host is cut off.
        i.console_alive = Some(ms(t0, 3_000));
        assert_eq!(isolation(&i, &t), Some(IsolationCause::ContactLost));
        assert_eq!(
            decide(&i, &t),
            GuardAction::ApplyIsolation(IsolationResponse::PowerOff)
        );
        // A console that restarted at 2 s: its heartbeat is no proof until the agents had
        // CONSOLE_RECONNECT to reach it.
        i.console_since = Some(ms(t0, 2_000));
        i.console_alive = Some(ms(t0, 9_000));
        assert_eq!(isolation(&i, &t), None);
        i.now = ms(t0, 15_000);
        i.last_write = Some(ms(t0, 15_000));
        i.last_pet = Some(ms(t0, 15_000));
        i.console_alive = Some(ms(t0, 15_000));
        assert_eq!(isolation(&i, &t), Some(IsolationCause::ContactLost));
        // Its start unknown: no isolation.
        i.console_since = None;
        assert_eq!(isolation(&i, &t), None);
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn the_response_names_are_kebab_case() {
        for (r, s) in [
            (IsolationResponse::KeepRunning, "\"keep-running\""),
            (IsolationResponse::PowerOff, "\"power-off\""),
            (IsolationResponse::Shutdown, "\"shutdown\""),
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), s);
            assert_eq!(serde_json::from_str::<IsolationResponse>(s).unwrap(), r);
        }
        assert_eq!(IsolationResponse::default(), IsolationResponse::KeepRunning);
    }

    #[test]
    fn a_restarted_agent_has_self_fence_after_to_reach_the_console() {
        let t = HaTimings::default();
        let t0 = Instant::now();
        // Contact at 0; the agent died and came back at 20 s, petting without contact yet.
        let mut i = inputs(t0);
        i.last_write = Some(ms(t0, 22_000));
        i.agent_back = Some(ms(t0, 20_000));
        i.last_pet = Some(ms(t0, 22_000));
        i.now = ms(t0, 22_100);
        assert_eq!(isolation(&i, &t), None);
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
        // Still without contact 3 s after its return, the console running: isolated.
        i.last_write = Some(ms(t0, 23_000));
        i.last_pet = Some(ms(t0, 23_000));
        i.console_alive = Some(ms(t0, 23_000));
        i.now = ms(t0, 23_100);
        assert_eq!(isolation(&i, &t), Some(IsolationCause::ContactLost));
    }

    #[test]
    fn either_signal_alone_keeps_the_qemus() {
        let t = HaTimings::default();
        let t0 = Instant::now();
        // Lease renewed, no contact for a minute: no self-fence.
        let mut i = inputs(t0);
        i.response = IsolationResponse::KeepRunning;
        i.last_write = Some(ms(t0, 59_000));
        i.last_pet = Some(ms(t0, 59_900));
        i.now = ms(t0, 60_000);
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
        // Contact, no lease write for a minute: no self-fence.
        let mut i = inputs(t0);
        i.last_contact = Some(ms(t0, 59_500));
        i.last_pet = Some(ms(t0, 59_900));
        i.now = ms(t0, 60_000);
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
    }

    #[test]
    fn neither_for_self_fence_after_fences() {
        let t = HaTimings::default();
        let t0 = Instant::now();
        let mut i = inputs(t0);
        i.last_write = Some(ms(t0, 1_000));
        i.last_contact = Some(ms(t0, 500));
        i.now = ms(t0, 3_999);
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
        assert_eq!(until_deadline(&i, &t), Duration::from_millis(1));
        i.now = ms(t0, 4_000);
        assert_eq!(decide(&i, &t), GuardAction::SelfFence);
        // A level: it holds later too, applied or not.
        i.now = ms(t0, 90_000);
        i.applied = true;
        assert_eq!(decide(&i, &t), GuardAction::SelfFence);
        // A guard with neither yet runs no QEMU.
        let mut i = inputs(t0);
        i.last_write = None;
        i.last_contact = None;
        assert_eq!(decide(&i, &t), GuardAction::SelfFence);
    }

    #[test]
    fn an_isolated_host_applies_its_response_once() {
        let t = HaTimings::default();
        let t0 = Instant::now();
        let mut i = inputs(t0);
        // The agent pets every second, without contact since 0; the lease renews.
        i.last_write = Some(ms(t0, 2_900));
        i.last_pet = Some(ms(t0, 2_900));
        i.now = ms(t0, 3_000);
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
        i.last_write = Some(ms(t0, 3_000));
        i.last_pet = Some(ms(t0, 3_000));
        i.console_alive = Some(ms(t0, 3_000));
        assert_eq!(isolation(&i, &t), Some(IsolationCause::ContactLost));
        assert_eq!(
            decide(&i, &t),
            GuardAction::ApplyIsolation(IsolationResponse::PowerOff)
        );
        i.applied = true;
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
        // keep-running does nothing.
        i.applied = false;
        i.response = IsolationResponse::KeepRunning;
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
    }

    #[test]
    fn an_agent_restart_within_its_grace_is_no_isolation() {
        let t = HaTimings::default();
        let t0 = Instant::now();
        let mut i = inputs(t0);
        // The agent's last pet at 0 (contact 0); it is gone for 59 s, the lease renews.
        i.now = ms(t0, 59_000);
        i.last_write = Some(ms(t0, 58_500));
        assert_eq!(isolation(&i, &t), None);
        assert_eq!(decide(&i, &t), GuardAction::Nothing);
        i.now = ms(t0, 60_000);
        i.last_write = Some(ms(t0, 59_500));
        assert_eq!(isolation(&i, &t), Some(IsolationCause::AgentAbsent));
        assert_eq!(
            decide(&i, &t),
            GuardAction::ApplyIsolation(IsolationResponse::PowerOff)
        );
        // An agent never seen counts from the guard's start.
        let mut i = inputs(t0);
        i.last_pet = None;
        i.last_contact = None;
        i.last_write = Some(ms(t0, 59_500));
        i.now = ms(t0, 59_999);
        assert_eq!(isolation(&i, &t), None);
        i.now = ms(t0, 60_000);
        assert_eq!(isolation(&i, &t), Some(IsolationCause::AgentAbsent));
    }
}
