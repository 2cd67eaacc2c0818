//! Live migration on this host, as source and as destination.
//!
//! Destination: [`Manager::prepare_incoming`] starts a QEMU that waits on a TCP port (admitted,
//! made and launched as a create is, by `lifecycle.rs`, from the datastore's existing files);
//! once the guest arrived it runs here ([`Vm::state`] notices, and [`Manager::observe_arrival`]
//! waits for it); [`Manager::abort_incoming`] kills a QEMU that still waits. Source:
//! [`Manager::migrate_out`] starts sending, the console asks [`Manager::migration_status`]
//! (which waits for QEMU's end-of-migration event), then [`Manager::finish_migration_source`]
//! (completed) or [`Manager::cancel_migration`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;
use vinfra_proto::{MigrationSettings, MigrationStatus, MigrationTls, VmInstance};
use vinfra_types::error::Chain;
use vinfra_types::{PowerState, VmObserved};

use super::early_passes::EarlyPasses;
use super::error::{ManagerError, Result, StateConflict};
use super::lifecycle::ms;
use super::vm::Vm;
use super::{Entry, Manager, UNLIMITED_BANDWIDTH};
use crate::confine::{CredentialsEnd, MigrationTlsFiles};
use crate::disks::BootMedia;
use crate::network::SwitchLink;
use crate::qemu::{MigrationEvents, MigrationParams, MigrationState, StreamTls};

/// How many ports an incoming QEMU tries before giving up (another process may take a free
/// port between the check and QEMU's bind).
const INCOMING_PORT_ATTEMPTS: usize = 5;

/// How often, and how far apart, a completed migration's status is read again while QEMU has
/// not filled in its times yet (at most 100 ms in all).
const COMPLETION_STATS_TRIES: usize = 20;
const COMPLETION_STATS_PAUSE: Duration = Duration::from_millis(5);

/// Milliseconds from a QMP event's `timestamp` (`{"seconds", "microseconds"}`, the host's
/// clock) to now, for the debug line that times an answer against QEMU's event.
fn since_event_ms(timestamp: &serde_json::Value) -> f64 {
    let at = timestamp["seconds"].as_f64().unwrap_or(0.0)
        + timestamp["microseconds"].as_f64().unwrap_or(0.0) / 1e6;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (now - at) * 1000.0
}

/// Ends an outgoing migration's early passes ([`EarlyPasses`]) on QEMU's `MIGRATION_PASS`
/// event for the pass they end at ([`EarlyPasses::over`]): the operator's downtime limit set
/// within milliseconds of the pass's start (QEMU applies it at its next bandwidth measurement),
/// whether or not the console is asking for the status. Returns at that, at the migration's
/// end (`MIGRATION` not active) or when the events stop; a status read ends the early passes too
/// (`Manager::migration_now`), so events missed only delay it.
async fn end_early_passes(e: Arc<Entry>, mut events: MigrationEvents) {
    loop {
        match events.recv().await {
            Ok(ev) if ev.event == "MIGRATION_PASS" => {
                let pass = ev.data["pass"].as_u64().unwrap_or(0);
                let mut vm = e.vm.lock().await;
                match vm.record.early_passes {
                    Some(early) if early.over(pass) => {
                        tracing::debug!(
                            vm = %e.id,
                            pass,
                            since_event_ms = since_event_ms(&ev.timestamp),
                            "early migration passes over"
                        );
                        vm.end_early_passes(true).await;
                        return;
                    }
                    Some(_) => {}
                    None => return,
                }
            }
            Ok(ev) if ev.event == "MIGRATION" => {
                let status = ev.data["status"].as_str().unwrap_or_default();
                if !MigrationState::from_qmp(status).is_active() {
                    return;
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// From the source QEMU's stop for the switchover (`STOP` while migrating out) the host's switch
/// sends the frames for VM `id`'s addresses to VTEP `to`, the destination's, whose switch holds
/// them on the VM's new ports until the guest resumes there: they would otherwise wait in the
/// stopped QEMU's socket, lost, until every switch has learnt where the VM went. The redirect
/// ends when the guest runs here again (`RESUME`: a migration that failed or was cancelled after
/// the stop), at a failed or cancelled end, or when QEMU's events stop; after `completed` it
/// lasts until the VM's ports go here (`finish_migration_source`) or the switch's hold
/// ([`vinfra_switch_control::Request::RedirectMac`]) lapses. Returns at the migration's end.
/// Events missed (`Lagged`) end the redirect and the task: that only loses the redirect. A
/// `STOP` for another reason while the migration runs (a guest paused on a full disk) redirects
/// too: its frames wait on the destination's port instead of the paused source's, and a
/// `RESUME` or the migration's failure ends that.
async fn redirect_at_switchover(
    id: Uuid,
    link: Arc<SwitchLink>,
    mut events: MigrationEvents,
    to: Ipv4Addr,
) {
    let mut on = false;
    loop {
        let (want, end, at) = match events.recv().await {
            Ok(ev) if ev.event == "STOP" => (true, false, ev.timestamp),
            Ok(ev) if ev.event == "RESUME" => (false, false, ev.timestamp),
            Ok(ev) if ev.event == "MIGRATION" => {
                match MigrationState::from_qmp(ev.data["status"].as_str().unwrap_or_default()) {
                    MigrationState::Completed => return,
                    MigrationState::Failed | MigrationState::Cancelled => {
                        (false, true, ev.timestamp)
                    }
                    _ => continue,
                }
            }
            Ok(_) => continue,
            // Events missed (the migration's end among them, perhaps), or no more: the
            // redirect ends here.
            Err(_) => (false, true, serde_json::Value::Null),
        };
        if want != on {
            on = want;
            set_redirect(id, &link, want.then_some(to), &at).await;
        }
        if end {
            return;
        }
    }
}

/// [`SwitchLink::redirect`] of VM `id`'s frames to `target` (`None`: back to its ports), on
/// QEMU's event at `event_at`. Ending a redirect is tried three times: one left on takes the
/// VM's frames away for the switch's whole hold.
async fn set_redirect(
    id: Uuid,
    link: &Arc<SwitchLink>,
    target: Option<Ipv4Addr>,
    event_at: &serde_json::Value,
) {
    let tries = if target.is_some() { 1 } else { 3 };
    for attempt in 1..=tries {
        let l = link.clone();
        match tokio::task::spawn_blocking(move || l.redirect(id, target)).await {
            Ok(Ok(nics)) => {
                tracing::info!(
                    vm = %id,
                    nics,
                    to = ?target,
                    since_event_ms = ?event_at.is_object().then(|| since_event_ms(event_at)),
                    "redirect of the migrating VM's frames set (to none: ended)"
                );
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(vm = %id, attempt, to = ?target, "switch redirect not set: {}", Chain(&e))
            }
            Err(e) => {
                tracing::warn!(vm = %id, attempt, to = ?target, "switch redirect not set: {e}")
            }
        }
        if attempt < tries {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A TCP port free on `addr` now.
fn free_port(addr: IpAddr) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::new(addr, 0))?;
    Ok(l.local_addr()?.port())
}

impl Manager {
    /// Starts a QEMU for `instance` waiting for an incoming migration; returns the URI to send to.
    /// With `tls` it accepts only a TLS stream from the source `tls` names. Repeating it for a
    /// VM already waiting returns the same URI (the QEMU keeps the credentials it was given).
    pub async fn prepare_incoming(
        &self,
        instance: VmInstance,
        tls: Option<MigrationTls>,
    ) -> Result<String> {
        let id = instance.id;
        if let Ok(e) = self.entry(id).await {
            let mut vm = e.vm.lock().await;
            let state = vm.state().await;
            let same_tls =
                vm.record.incoming_tls_peer.as_deref() == tls.as_ref().map(|t| t.peer.as_str());
            return match (&vm.record.incoming_uri, state) {
                // Only a listener for this very migration: one left by an earlier migration
                // (plain, or for another source) would be reported as what it is not.
                (Some(uri), PowerState::Incoming) if same_tls => Ok(uri.clone()),
                _ => Err(ManagerError::BadState {
                    id,
                    state,
                    conflict: StateConflict::AlreadyHere,
                }),
            };
        }
        let t = std::time::Instant::now();
        self.admit(&instance)?;
        // The disks are on the shared datastore already: nothing is created.
        let spec = instance.spec.clone();
        let media = self.on_datastore(move |ds| ds.media(id, &spec)).await?;
        let mut vm = self.new_vm(instance, true)?;
        vm.record.started_at = vm.record.instance.started_at;
        // Its record: written with its ports when it has NICs (`attach_nics`), else here.
        let saved = if vm.record.instance.spec.nics.is_empty() {
            vm.save()
        } else {
            Ok(())
        };
        if let Err(e) = saved {
            let _ = std::fs::remove_dir_all(&vm.files.dir);
            return Err(e);
        }
        let defined = t.elapsed();
        match self.start_incoming(&mut vm, media, tls.as_ref()).await {
            Ok(uri) => {
                tracing::debug!(
                    vm = %id,
                    defined_ms = ms(defined),
                    started_ms = ms(t.elapsed() - defined),
                    "incoming timed"
                );
                self.insert(vm, None).await;
                Ok(uri)
            }
            Err(e) => {
                let _ = vm.kill_now().await;
                self.detach_nics(&mut vm).await;
                let _ = std::fs::remove_dir_all(&vm.files.dir);
                Err(e)
            }
        }
    }

    /// The VM's state, as [`Manager::observe`] reads it, but for a VM whose guest has not
    /// arrived yet ([`PowerState::Incoming`]) once it has, or after `wait`, whichever comes
    /// first. QEMU's events wake the wait (`RESUME` when the guest runs here; the QMP
    /// connection closing when QEMU is gone), each followed by a fresh look: the answer follows
    /// the guest's resumption by no more than a `query-status`. Subscribed before the first
    /// look, so an event between the two is not missed. The VM is not held while waiting.
    pub async fn observe_arrival(&self, id: Uuid, wait: Duration) -> Result<VmObserved> {
        if wait.is_zero() {
            return self.observe(id).await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let events = {
            let e = self.entry(id).await?;
            let mut vm = e.vm.lock().await;
            match vm.qemu().await {
                Ok(q) => q.migration_events().await.ok(),
                Err(_) => None,
            }
        };
        // No QEMU, or none that answers: nothing to wait for.
        let Some(mut events) = events else {
            return self.observe(id).await;
        };
        let mut woken_by: Option<vinfra_qmp::QmpEvent> = None;
        loop {
            let seen = self.observe(id).await?;
            if seen.state != PowerState::Incoming {
                if let Some(e) = woken_by {
                    tracing::debug!(
                        vm = %id,
                        event = e.event,
                        after_event_ms = since_event_ms(&e.timestamp),
                        "incoming guest arrived"
                    );
                }
                return Ok(seen);
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Ok(seen),
                // Any event (or events missed) may be the change: look again.
                Ok(Ok(e)) => woken_by = Some(e),
                Ok(Err(RecvError::Lagged(_))) => {}
                // QEMU is gone or going: one last look says how it ended.
                Ok(Err(RecvError::Closed)) => return self.observe(id).await,
            }
        }
    }

    /// Gives the VM its ports, launches its incoming QEMU from `media` and makes it listen on a
    /// free port (for a TLS stream with `tls`).
    async fn start_incoming(
        &self,
        vm: &mut Vm,
        media: BootMedia,
        tls: Option<&MigrationTls>,
    ) -> Result<String> {
        // The ports exist on this host's switch before the guest can arrive.
        if !vm.record.instance.spec.nics.is_empty() {
            self.attach_nics(vm).await?;
        }
        let t = std::time::Instant::now();
        self.launch(vm, media, true).await?;
        let launched = t.elapsed();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port(self.cfg.address).map_err(ManagerError::FreePort)?;
            let uri = match self.cfg.address {
                IpAddr::V4(a) => format!("tcp:{a}:{port}"),
                IpAddr::V6(a) => format!("tcp:[{a}]:{port}"),
            };
            // Written for each attempt and removed right after it: QEMU reads them when it
            // makes its credentials.
            let files = self.migration_tls(vm, CredentialsEnd::Destination, tls)?;
            let stream = files.as_ref().map(|(_, s)| s);
            let listened = vm.qemu().await?.listen_incoming(&uri, stream).await;
            drop(files);
            match listened {
                Ok(()) => {
                    let listened = t.elapsed();
                    vm.record.incoming_uri = Some(uri.clone());
                    vm.record.incoming_tls_peer = tls.map(|t| t.peer.clone());
                    vm.save()?;
                    tracing::debug!(
                        vm = %vm.id(),
                        launch_ms = ms(launched),
                        listen_ms = ms(listened - launched),
                        record_ms = ms(t.elapsed() - listened),
                        "incoming started"
                    );
                    return Ok(uri);
                }
                Err(e) if attempt >= INCOMING_PORT_ATTEMPTS => return Err(e.into()),
                Err(e) => tracing::debug!(
                    "VM {}: incoming on {uri}: {}",
                    vm.id(),
                    vinfra_types::error::Chain(&e)
                ),
            }
        }
    }

    /// Starts sending the VM to `uri` (over TLS to the destination `tls` names, with `tls`)
    /// and returns at once. With `redirect_to` (the destination's VTEP) the switch sends the
    /// VM's frames there from the switchover on ([`redirect_at_switchover`]).
    pub async fn migrate_out(
        &self,
        id: Uuid,
        uri: &str,
        settings: MigrationSettings,
        tls: Option<MigrationTls>,
        redirect_to: Option<Ipv4Addr>,
    ) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let state = vm.state().await;
        let conflict = |conflict| ManagerError::BadState {
            id,
            state,
            conflict,
        };
        if !matches!(state, PowerState::Running | PowerState::Paused) || vm.record.incoming {
            return Err(conflict(StateConflict::NotMigratable));
        }
        if !uri.starts_with("tcp:") {
            return Err(ManagerError::MigrationUri(uri.to_string()));
        }
        // A copy whose outgoing migration completed is not the guest any more: sending it again
        // would make a second copy of the VM elsewhere. (A QEMU that arrived here by migration
        // reports that incoming migration as `completed`: it is the guest, and may leave.)
        if vm.outgoing_migration().await?.state == MigrationState::Completed {
            return Err(conflict(StateConflict::MigratedAway));
        }
        let max_bandwidth = match settings.max_bandwidth {
            0 => UNLIMITED_BANDWIDTH,
            b => b,
        };
        let files = self.migration_tls(&vm, CredentialsEnd::Source, tls.as_ref())?;
        let stream = files.as_ref().map(|(_, s)| s);
        let early = EarlyPasses::of(settings.downtime_limit_ms, self.fewest_migration_passes);
        let params = MigrationParams {
            max_bandwidth,
            downtime_limit_ms: early.map_or(settings.downtime_limit_ms, |e| e.early_downtime_ms),
            auto_converge: settings.auto_converge,
        };
        // Subscribed before `migrate`: a short migration's passes may begin before it returns.
        let passes = match early {
            Some(_) => Some(vm.qemu().await?.migration_events().await?),
            None => None,
        };
        let switchover = match (redirect_to, &self.switch) {
            (Some(to), Some(link)) if !vm.record.nics.is_empty() => {
                Some((to, link.clone(), vm.qemu().await?.migration_events().await?))
            }
            _ => None,
        };
        let sent = vm.qemu().await?.migrate(uri, params, stream).await;
        drop(files);
        sent?;
        vm.record.early_passes = early;
        if let Some(passes) = passes {
            tokio::spawn(end_early_passes(e.clone(), passes));
        }
        if let Some((to, link, events)) = switchover {
            tokio::spawn(redirect_at_switchover(id, link, events, to));
        }
        vm.record.migrating_out = true;
        vm.record.sent_from_this_qemu = true;
        vm.save()
    }

    /// QEMU's view of the outgoing migration, at once or, with a `wait`, once it has ended
    /// (`completed`, `failed`, `cancelled`) or `wait` has passed, whichever comes first: the
    /// end is QEMU's `MIGRATION` event, so the answer follows it by no more than the time to
    /// read `query-migrate`. The VM is not held while waiting (a cancel gets through).
    ///
    /// QEMU sends `completed` a moment before it has worked out the total time and the
    /// downtime (`query-migrate` shows 0 for both until then): a completed status is read again
    /// until it has them, every 5 ms for up to 100 ms, whichever way it was found.
    pub async fn migration_status(&self, id: Uuid, wait: Duration) -> Result<MigrationStatus> {
        let mut status = self.migration_status_once(id, wait).await?;
        for _ in 0..COMPLETION_STATS_TRIES {
            if status.qemu_status != "completed" || status.total_time_ms > 0 {
                break;
            }
            tokio::time::sleep(COMPLETION_STATS_PAUSE).await;
            status = self.migration_now(id).await?;
        }
        Ok(status)
    }

    /// [`Manager::migration_status`] without the second look at a completed one.
    async fn migration_status_once(&self, id: Uuid, wait: Duration) -> Result<MigrationStatus> {
        if !wait.is_zero() {
            let mut events = {
                let e = self.entry(id).await?;
                let mut vm = e.vm.lock().await;
                vm.qemu().await?.migration_events().await?
            };
            let now = self.migration_now(id).await?;
            if !MigrationState::from_qmp(&now.qemu_status).is_active() {
                return Ok(now);
            }
            let ended = async {
                loop {
                    match events.recv().await {
                        Ok(e) if e.event == "MIGRATION" => {
                            let status = e.data["status"].as_str().unwrap_or_default();
                            if !MigrationState::from_qmp(status).is_active() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        // Events missed: one of them may have been the end.
                        Err(RecvError::Lagged(_)) => return,
                        // The QMP connection closed: QEMU is gone or going.
                        Err(RecvError::Closed) => return,
                    }
                }
            };
            if tokio::time::timeout(wait, ended).await.is_err() {
                return Ok(now);
            }
        }
        self.migration_now(id).await
    }

    /// QEMU's view of the outgoing migration now. Ends its early passes when QEMU is past them
    /// ([`EarlyPasses::over`]).
    async fn migration_now(&self, id: Uuid) -> Result<MigrationStatus> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let p = vm.outgoing_migration().await?;
        // The early passes' end is QEMU's `MIGRATION_PASS` event ([`end_early_passes`]); a status
        // read that finds them over (the event missed) ends them too.
        let over = vm
            .record
            .early_passes
            .is_some_and(|early| !p.state.is_active() || early.over(p.rounds));
        if over {
            vm.end_early_passes(p.state.is_active()).await;
        }
        Ok(MigrationStatus {
            qemu_status: p.state.as_qmp().to_string(),
            transferred_bytes: p.transferred_bytes,
            remaining_bytes: p.remaining_bytes,
            total_bytes: p.total_bytes,
            rate_bps: p.rate_bps,
            dirty_pages_rate: p.dirty_pages_rate,
            total_time_ms: p.total_time_ms,
            downtime_ms: p.downtime_ms,
            error: p.error,
        })
    }

    /// With `tls`: writes it where `vm`'s QEMU can read it, for `end`, and returns the files
    /// (removed when dropped: keep them until QEMU has made its credentials) with the stream's
    /// TLS settings naming them. Without: nothing (a plain stream).
    fn migration_tls(
        &self,
        vm: &Vm,
        end: CredentialsEnd,
        tls: Option<&MigrationTls>,
    ) -> Result<Option<(MigrationTlsFiles, StreamTls)>> {
        let Some(tls) = tls else {
            return Ok(None);
        };
        let files = self.migration_tls_files(vm, end, tls)?;
        let stream = StreamTls {
            dir: files.dir().to_path_buf(),
            peer: tls.peer.clone(),
        };
        Ok(Some((files, stream)))
    }

    /// Writes `tls` where `vm`'s QEMU can read it, for `end`.
    fn migration_tls_files(
        &self,
        vm: &Vm,
        end: CredentialsEnd,
        tls: &MigrationTls,
    ) -> Result<MigrationTlsFiles> {
        let gid = match &self.confiner {
            Some(c) => {
                let slot = vm
                    .record
                    .instance
                    .slot
                    .ok_or(crate::confine::ConfineError::NoSlot(vm.id()))?;
                Some(c.uid(slot)?)
            }
            None => None,
        };
        let files = vm.files.clone();
        let tls = tls.clone();
        Ok(crate::files::blocking(move || {
            MigrationTlsFiles::write(&files, gid, end, &tls)
        })?)
    }

    /// Cancels the outgoing migration; the VM keeps running here.
    pub async fn cancel_migration(&self, id: Uuid) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        match vm.outgoing_migration().await?.state {
            MigrationState::Completed => {
                return Err(ManagerError::BadState {
                    id,
                    state: PowerState::Paused,
                    conflict: StateConflict::MigrationCompleted,
                })
            }
            // Nothing is being sent: nothing to cancel.
            MigrationState::None => return Ok(()),
            _ => {}
        }
        vm.qemu().await?.cancel_migration().await?;
        vm.record.migrating_out = false;
        vm.save()
    }

    /// After a completed migration: quits the paused source QEMU and forgets the VM (disks
    /// stay). A source whose migration did not complete is never quit.
    pub async fn finish_migration_source(&self, id: Uuid) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        if vm.check_alive() {
            let migration = vm.outgoing_migration().await?.state;
            if migration != MigrationState::Completed {
                let state = vm.state().await;
                return Err(ManagerError::BadState {
                    id,
                    state,
                    conflict: StateConflict::MigrationNotCompleted(migration),
                });
            }
            vm.record.want_running = false;
            vm.kill_now().await?;
        }
        self.detach_nics(&mut vm).await;
        self.forget(&vm).await
    }

    /// Kills an incoming QEMU that will not receive its VM and forgets it (disks stay).
    pub async fn abort_incoming(&self, id: Uuid) -> Result<()> {
        let e = self.entry(id).await?;
        let mut vm = e.vm.lock().await;
        let state = vm.state().await;
        // Only a QEMU that still waits (or is gone) is killed: once the guest runs here (or is
        // paused after arriving) this may be the only copy of the VM.
        if !vm.record.incoming
            || !matches!(
                state,
                PowerState::Incoming | PowerState::Stopped | PowerState::Crashed
            )
        {
            return Err(ManagerError::BadState {
                id,
                state,
                conflict: StateConflict::GuestArrived,
            });
        }
        vm.kill_now().await?;
        self.detach_nics(&mut vm).await;
        self.forget(&vm).await
    }
}

impl Vm {
    /// Ends the outgoing migration's early passes: with the migration still `active`, QEMU's
    /// downtime limit becomes the operator's. A failure is logged and the early passes kept, so
    /// that the next status read tries again.
    pub(super) async fn end_early_passes(&mut self, active: bool) {
        let Some(early) = self.record.early_passes else {
            return;
        };
        let raised = match (active, self.qemu().await) {
            (false, _) => Ok(()),
            (true, Ok(q)) => q
                .set_downtime_limit(early.downtime_limit_ms)
                .await
                .map_err(ManagerError::from),
            (true, Err(e)) => Err(e),
        };
        match raised {
            Ok(()) => {
                self.record.early_passes = None;
                // Else a restarted agent sets it once more: no harm.
                if let Err(e) = self.save() {
                    tracing::warn!(vm = %self.id(), "VM record not saved: {e}");
                }
            }
            Err(e) => tracing::warn!(vm = %self.id(), "migration downtime limit not raised: {e}"),
        }
    }
}
