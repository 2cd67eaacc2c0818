//! The agent's side of the host's guard (`vinfra guard`, `vinfra agent --guard PATH`), besides
//! starting QEMUs through it (that is [`crate::qemu::qmp::QemuRunner`]):
//!
//! - pets: a task of the agent (not of a console session: it runs while the console is
//!   unreachable) tells the guard every heartbeat period how old the host's console contact is
//!   ([`Manager::contact`]), which VMs are HA ([`Manager::ha_vm_ids`]) and the cluster's
//!   isolation response and timings ([`Manager::ha_settings`]). A guard that cannot be reached
//!   or refuses a pet is logged once per episode; the pets go on.
//! - the guard's view for reports ([`GuardLink::view`]): asked at most [`GUARD_TIMEOUT`], so a
//!   guard that does not answer leaves the report without it, never later.
//!
//! The guard's client is blocking: every call runs on a blocking thread, each bounded by
//! [`GUARD_TIMEOUT`] on its socket.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vinfra_guard::{GuardClient, GuardClientError, Pet};
use vinfra_types::error::Chain;
use vinfra_types::GuardView;

use crate::manager::Manager;

/// How long one pet or status request may wait for the guard.
pub const GUARD_TIMEOUT: Duration = Duration::from_secs(1);

/// The host's guard, as the agent talks to it (besides QEMU launches).
#[derive(Debug)]
pub struct GuardLink {
    control: PathBuf,
    /// The connection pets go over, made again after a failure (used on blocking threads only).
    pets: Mutex<Option<GuardClient>>,
    /// Pets fail: logged when it began, not again until they succeed.
    pets_failing: AtomicBool,
    /// Status requests fail: logged when it began, not again until one succeeds.
    status_failing: AtomicBool,
}

/// One episode of failures, logged at its start and its end.
fn note(failing: &AtomicBool, result: Result<(), String>, what: &str, control: &Path) {
    match result {
        Ok(()) => {
            if failing.swap(false, Ordering::AcqRel) {
                tracing::info!("the guard at {} answers {what} again", control.display());
            }
        }
        Err(e) => {
            if !failing.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    "the guard at {} does not take {what}: {e} (logged once until it does)",
                    control.display()
                );
            }
        }
    }
}

impl GuardLink {
    /// The guard whose control socket is `control`.
    pub fn new(control: PathBuf) -> Arc<GuardLink> {
        Arc::new(GuardLink {
            control,
            pets: Mutex::new(None),
            pets_failing: AtomicBool::new(false),
            status_failing: AtomicBool::new(false),
        })
    }

    /// The guard's control socket.
    pub fn control(&self) -> &Path {
        &self.control
    }

    fn connect(&self) -> Result<GuardClient, GuardClientError> {
        let client = GuardClient::connect(&self.control)?;
        client.set_timeout(Some(GUARD_TIMEOUT))?;
        Ok(client)
    }

    /// Sends `pet` (blocking), connecting first when there is no connection; a failed
    /// connection is dropped.
    fn pet_blocking(&self, pet: &Pet) -> Result<(), GuardClientError> {
        let mut conn = self.pets.lock().unwrap_or_else(|e| e.into_inner());
        let client = match conn.as_mut() {
            Some(c) => c,
            None => conn.insert(self.connect()?),
        };
        let result = client.pet(pet);
        // A refusal is an answer; anything else leaves the connection in doubt.
        if result.as_ref().is_err_and(|e| e.refusal().is_none()) {
            *conn = None;
        }
        result
    }

    /// Sends `pet` on a blocking thread; a failure is logged once per episode.
    pub async fn pet(self: &Arc<Self>, pet: Pet) {
        let link = self.clone();
        let result = tokio::task::spawn_blocking(move || link.pet_blocking(&pet))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| Chain(&e).to_string()));
        note(&self.pets_failing, result, "pets", &self.control);
    }

    /// The guard's state for a report, asked on a blocking thread: `None` (and a warning, once
    /// per episode) when it does not answer within [`GUARD_TIMEOUT`].
    pub async fn view(self: &Arc<Self>) -> Option<GuardView> {
        let link = self.clone();
        let ask = tokio::task::spawn_blocking(move || link.connect()?.status());
        let result = match tokio::time::timeout(GUARD_TIMEOUT, ask).await {
            Ok(Ok(Ok(s))) => Ok(GuardView {
                incarnation: s.incarnation,
                lease_counter: s.counter,
                renewal_age_ms: s.renewal_age_ms,
                self_fences: s.self_fences,
                isolated: s.isolated,
            }),
            Ok(Ok(Err(e))) => Err(Chain(&e).to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {GUARD_TIMEOUT:?}")),
        };
        let (noted, view) = match result {
            Ok(v) => (Ok(()), Some(v)),
            Err(e) => (Err(e), None),
        };
        note(
            &self.status_failing,
            noted,
            "status requests",
            &self.control,
        );
        view
    }
}

/// The pet the guard gets now: the console contact's age, the HA VMs, the cluster's settings.
pub async fn pet_now(m: &Manager) -> Pet {
    let settings = m.ha_settings();
    Pet {
        console_contact_age_ms: m
            .contact()
            .age()
            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
        ha_vms: m.ha_vm_ids().await,
        isolation_response: settings.isolation_response,
        timings: settings.timings,
    }
}

/// Pets the guard every `period` for as long as the agent runs (a task of its own, whatever
/// becomes of the console sessions).
pub fn spawn_pets(
    m: Arc<Manager>,
    link: Arc<GuardLink>,
    period: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pet = pet_now(&m).await;
            link.pet(pet).await;
        }
    })
}
