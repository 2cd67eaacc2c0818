//! The HA controller: every [`TICK`], each host's HA state from its two signals, and the
//! restart elsewhere of the HA VMs that may run elsewhere.
//!
//! Per tick:
//! 1. the connection of every host from the agent registry: connected, or lost since the last
//!    message heard from it (a host never heard since this console started counts as lost since
//!    the start);
//! 2. the lease of every lost host, read from the [`LeaseSource`] (on a blocking thread), into
//!    that host's `LeaseObserver`; a console that just started has seen no lease yet, so it waits
//!    a full expiry before it calls any host failed;
//! 3. `vinfra_ha::assess`: the host's state (connected, isolated, failed, fenced, unprotected,
//!    an event at each change) and which of its VMs may run elsewhere now;
//! 4. the VMs the console has on that host that should run, whose HA policy is on and that may
//!    run elsewhere: planned together by [`fit::plan_restarts`] (priority, start-after waves,
//!    host fit, must-rules, capacity). The first wave's records move to their new hosts (with
//!    [`FailedOver`] naming the host they left), then each gets `CreateVm{start}` on its new
//!    host (its disks are on the shared datastore and are kept). Later waves wait: a VM whose
//!    start-after VM was restarted and does not run yet is held back (up to
//!    [`START_AFTER_WAIT`]). A VM no host takes gets an event with the reason, and is tried
//!    again every tick (capacity may come back).
//!
//! Moving a record first makes the restart survive a console restart: the VM controller
//! creates a VM that its host does not have. A copy of a restarted VM that its old host still
//! reports when it comes back is stale: the VM controller removes it there (its disks stay).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_ha::{
    assess, fence_due, Fence, HaPolicy, HaTimings, HostHa, HostSignals, LeaseObserver, Link,
};
use vinfra_proto::AgentCommand;
use vinfra_types::error::Chain;
use vinfra_types::{HostStatus, PowerState};

use super::leases::LeaseSource;
use crate::fit;
use crate::networks::push;
use crate::state::ha::HostHaEntry;
use crate::state::records::{now_s, DesiredPower, FailedOver, VmRecord};
use crate::state::Console;

/// How often the controller assesses the hosts.
pub const TICK: Duration = Duration::from_millis(500);

/// How long a VM whose start-after VM was restarted waits for it to run before it is restarted
/// anyway.
pub const START_AFTER_WAIT: Duration = Duration::from_secs(120);

/// How long a restarted VM is watched for running on its new host (for the event that says
/// how long the restart took).
const WATCH: Duration = Duration::from_secs(300);

/// Whether two assessments of a host are one state, for its events and the time it has been in
/// it: an agent's absence is one state however many seconds it lasts (each second a new
/// assessment, not a new event).
fn same_state(a: &HostHa, b: &HostHa) -> bool {
    match (a, b) {
        (HostHa::Isolated { agent_absent: x }, HostHa::Isolated { agent_absent: y }) => {
            x.is_some() == y.is_some()
        }
        _ => a == b,
    }
}

/// What the controller keeps of one host between ticks.
struct Track {
    observer: LeaseObserver,
    state: Option<HostHa>,
    since: Instant,
    /// When this controller first saw the host's `fenced_at` set (an out-of-band fence).
    fenced_seen: Option<Instant>,
    /// Whether the cluster's `fence_isolated` policy fenced (or tried to) in this episode.
    fence_tried: bool,
    /// What the HA board holds for the host, to skip an unchanged entry.
    posted: Option<Posted>,
}

/// A host's HA board entry as posted: its state, since when, its lease (incarnation, counter).
type Posted = (HostHa, Instant, Option<(u64, u64)>);

/// A VM restarted on another host, watched until it runs there.
struct Restarting {
    vm: String,
    from: String,
    to: String,
    lost_at: Instant,
    restarted_at: Instant,
}

/// The HA controller (see the module doc).
pub struct HaController {
    console: Arc<Console>,
    leases: Arc<dyn LeaseSource>,
    timings: HaTimings,
    started: Instant,
    hosts: HashMap<String, Track>,
    restarting: HashMap<Uuid, Restarting>,
    /// (VM, what) already told in an event, so that it is told once per episode.
    noted: HashSet<(Uuid, &'static str)>,
}

/// The restart policy of a VM as the HA library takes it.
fn policy(rec: &VmRecord) -> HaPolicy {
    HaPolicy {
        priority: rec.spec.ha.priority,
        start_after: rec.spec.ha.start_after.clone(),
    }
}

impl HaController {
    /// A controller over `console` reading host leases from `leases`, with the default
    /// timings.
    pub fn new(console: Arc<Console>, leases: Arc<dyn LeaseSource>) -> Self {
        HaController {
            console,
            leases,
            timings: HaTimings::default(),
            started: Instant::now(),
            hosts: HashMap::new(),
            restarting: HashMap::new(),
            noted: HashSet::new(),
        }
    }

    /// Uses `timings` instead of the defaults.
    pub fn with_timings(mut self, timings: HaTimings) -> Self {
        self.timings = timings;
        self
    }

    /// How long after the console starts a host it has not heard from yet is not reported: its
    /// agent reconnecting takes a heartbeat timeout, its lease a lease timeout.
    fn startup_grace(&self) -> Duration {
        self.timings.heartbeat_timeout + self.timings.lease_timeout + self.timings.margin
    }

    /// Runs forever, one [`HaController::tick`] every [`TICK`].
    pub async fn run(mut self) {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.tick().await;
        }
    }

    /// One assessment of every host, and the restarts it allows.
    pub async fn tick(&mut self) {
        let console = self.console.clone();
        // Every host's name and out-of-band fence mark in one pass over the records (no copy
        // of a record, no lookup per host), then every host's link under one lock of the
        // registry (agents report meanwhile).
        let (names, fenced): (Vec<String>, Vec<bool>) = console.with_hosts(|m| {
            m.iter()
                .map(|(h, r)| (h.clone(), r.value.fenced_at.is_some()))
                .unzip()
        });
        let mut lost = Vec::new();
        let links: Vec<Link> = names
            .iter()
            .zip(console.agents().links(&names))
            .map(|(h, (status, heard))| match status {
                HostStatus::Connected => Link::Connected {
                    since: Instant::now(),
                },
                HostStatus::Disconnected => {
                    lost.push(h.clone());
                    Link::Lost {
                        since: heard.unwrap_or(self.started),
                    }
                }
            })
            .collect();
        let leases = self.leases.clone();
        let reads = tokio::task::spawn_blocking(move || {
            lost.into_iter()
                .map(|h| {
                    let l = leases.read(&h);
                    (h, l)
                })
                .collect::<HashMap<_, _>>()
        })
        .await
        .unwrap_or_default();
        let now = Instant::now();
        let grace = self.startup_grace();
        for ((h, link), fenced) in names.iter().zip(links).zip(fenced) {
            let track = self.hosts.entry(h.clone()).or_insert_with(|| Track {
                observer: LeaseObserver::new(),
                state: None,
                since: now,
                fenced_seen: None,
                fence_tried: false,
                posted: None,
            });
            // The fence holds until the host is back (its agent's Hello clears fenced_at).
            track.fenced_seen = fenced.then(|| track.fenced_seen.unwrap_or(now));
            let fence = track.fenced_seen.map(|at| Fence {
                at,
                seen_again: None,
            });
            if let Some(read) = reads.get(h) {
                track.observer.observe(now, read.clone());
            }
            // The VMs count only for a host that is lost or fenced (a connected one is judged
            // on its link alone); then ids and HA flags only.
            let running = if fence.is_some() || matches!(link, Link::Lost { .. }) {
                console.running_on(h)
            } else {
                Vec::new()
            };
            let ids: Vec<Uuid> = running.iter().map(|(id, _)| *id).collect();
            let signals = HostSignals {
                link,
                lease: &track.observer,
                fence,
                vms: &ids,
            };
            let a = assess(now, &signals, &self.timings);
            // Right after the console starts no agent has reconnected yet: a host not heard
            // since gets no state (and no event) until it comes back or the grace runs out, so
            // a console restart does not report every host isolated and then connected again.
            let unheard_at_start = track.state.is_none()
                && matches!(link, Link::Lost { since } if since == self.started)
                && now.duration_since(self.started) < grace;
            if unheard_at_start {
                // Decisions below still see the host as lost; only the reporting waits.
            } else if !track.state.as_ref().is_some_and(|s| same_state(s, &a.ha)) {
                if let Some(prev) = &track.state {
                    console.event(
                        "host",
                        h,
                        format!("HA state {} (was {})", a.ha, prev.name()),
                    );
                } else if a.ha != HostHa::Connected {
                    console.event("host", h, format!("HA state {}", a.ha));
                }
                if a.ha == HostHa::Connected {
                    track.fence_tried = false;
                    // A new episode: what was told about its VMs may be told again.
                    let ids: HashSet<Uuid> =
                        console.running_on(h).iter().map(|(id, _)| *id).collect();
                    self.noted.retain(|(v, _)| !ids.contains(v));
                }
                track.since = now;
            }
            if !unheard_at_start {
                track.state = Some(a.ha.clone());
            }
            // Most hosts stay connected tick after tick: their entry is left as it is.
            let lease = track.observer.last().map(|l| l.stamp());
            let unchanged = track
                .posted
                .as_ref()
                .is_some_and(|(ha, since, l)| *ha == a.ha && *since == track.since && *l == lease);
            if !unchanged {
                let posted = (a.ha.clone(), track.since, lease);
                console.ha_board().set(
                    h,
                    HostHaEntry {
                        state: a.ha.name(),
                        detail: a.ha.to_string(),
                        since: track.since,
                        lease,
                    },
                );
                track.posted = Some(posted);
            }
            let lost_at = match link {
                Link::Lost { since } => since,
                Link::Connected { .. } => continue,
            };
            let ha = self.console.settings().ha;
            let has_ha_vms = running.iter().any(|(_, ha)| *ha);
            if ha.fence_isolated
                && has_ha_vms
                && !track.fence_tried
                && console.with_hosts(|m| {
                    m.get(h.as_str())
                        .is_some_and(|r| r.value.fence_command.is_some())
                })
                && fence_due(
                    now,
                    &a.ha,
                    link,
                    Duration::from_secs(ha.isolation_fence_after_s),
                )
            {
                track.fence_tried = true;
                let (console, host) = (console.clone(), h.clone());
                let reason = format!(
                    "isolated for {} s with HA VMs (fence_isolated is on)",
                    now.duration_since(lost_at).as_secs()
                );
                tokio::spawn(crate::state::events::inherit(async move {
                    if let Err(e) = console.fence_host(&host, &reason).await {
                        tracing::warn!(host, "fence: {}", Chain(&e));
                    }
                }));
            }
            let wanted: HashSet<Uuid> = running
                .iter()
                .filter(|(id, ha)| *ha && a.restartable.allows(id))
                .map(|(id, _)| *id)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let records: Vec<VmRecord> = console
                .vms_on(h)
                .into_iter()
                .filter(|r| r.desired == DesiredPower::Running && wanted.contains(&r.id))
                .collect();
            let candidates: Vec<&VmRecord> = records.iter().collect();
            if !candidates.is_empty() {
                let state = a.ha.to_string();
                self.restart(h, &state, lost_at, candidates).await;
            }
        }
        // Every host of the records is tracked now: a host tracked beyond them was removed
        // (its board entry goes with it; the board holds tracked hosts only).
        if self.hosts.len() > names.len() {
            let keep: HashSet<&str> = names.iter().map(String::as_str).collect();
            self.hosts.retain(|h, _| keep.contains(h.as_str()));
            console.ha_board().retain(&|h| keep.contains(h));
        }
        self.watch(now);
    }

    /// Restarts `candidates` (VMs of `host`, lost at `lost_at`, that may run elsewhere) on
    /// other hosts: the first wave of their plan now.
    async fn restart(&mut self, host: &str, state: &str, lost_at: Instant, vms: Vec<&VmRecord>) {
        let console = self.console.clone();
        let now = Instant::now();
        // A VM whose start-after VM was restarted and does not run yet waits for it.
        let waiting = |r: &VmRecord| {
            r.spec.ha.start_after.as_ref().is_some_and(|after| {
                self.restarting.values().any(|s| {
                    &s.vm == after && now.duration_since(s.restarted_at) < START_AFTER_WAIT
                })
            })
        };
        let list: Vec<(&VmRecord, HaPolicy)> = vms
            .iter()
            .copied()
            .filter(|r| !waiting(r) && !console.inflight().recently_busy(&r.spec.name, TICK))
            .map(|r| (r, policy(r)))
            .collect();
        if list.is_empty() {
            return;
        }
        let mut started = Vec::new();
        {
            let planned = match fit::plan_restarts(&console, &list).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(host, "HA restart plan: {}", Chain(&e));
                    return;
                }
            };
            for u in &planned.plan.unplaced {
                if self.noted.insert((u.id, "unplaced")) {
                    let name = list
                        .iter()
                        .find(|(r, _)| r.id == u.id)
                        .map_or_else(|| u.id.to_string(), |(r, _)| r.spec.name.clone());
                    console.event(
                        "vm",
                        &name,
                        format!("cannot be restarted (host {host} {state}): {}", u.why),
                    );
                }
            }
            for cycle in &planned.plan.cycles {
                tracing::warn!(host, "start-after cycle broken: {}", cycle.join(" → "));
            }
            let Some(wave) = planned.plan.waves.first() else {
                return;
            };
            for r in wave {
                let Ok(busy) = console.inflight().busy(&r.vm) else {
                    continue;
                };
                let to = r.host.clone();
                let from = host.to_string();
                let moved = console.update_vm(&r.vm, |rec| {
                    if rec.host == from {
                        rec.host = to.clone();
                        rec.failed_over = Some(FailedOver {
                            from: from.clone(),
                            at: now_s(),
                        });
                    }
                });
                match moved {
                    Ok(rec) if rec.host == to => {
                        console.event(
                            "vm",
                            &r.vm,
                            format!(
                                "host {host} {state}: restarting on {to} (priority {:?})",
                                r.priority
                            ),
                        );
                        self.noted.remove(&(rec.id, "unplaced"));
                        self.restarting.insert(
                            rec.id,
                            Restarting {
                                vm: r.vm.clone(),
                                from: host.to_string(),
                                to: to.clone(),
                                lost_at,
                                restarted_at: now,
                            },
                        );
                        started.push((rec, busy));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(vm = r.vm, "HA restart: {}", Chain(&e)),
                }
            }
            // The placement lock goes here: the records name their new hosts.
        }
        for (rec, busy) in started {
            let console = console.clone();
            tokio::spawn(crate::state::events::inherit(async move {
                let _busy = busy;
                if !rec.spec.nics.is_empty() {
                    if let Err(e) = push::push(&console, &rec.host).await {
                        tracing::warn!(vm = rec.spec.name, "switch configuration: {}", Chain(&e));
                    }
                }
                let cmd = AgentCommand::CreateVm {
                    vm: rec.instance(),
                    start: true,
                };
                if let Err(e) = console
                    .agents()
                    .request(&rec.host, cmd, console.create_timeout())
                    .await
                {
                    // The record stays on its new host: the VM controller tries again.
                    console.event(
                        "vm",
                        &rec.spec.name,
                        format!("restart on {} failed: {}", rec.host, Chain(&e)),
                    );
                }
            }));
        }
    }

    /// Tells, once each restarted VM runs on its new host, how long after its host was lost.
    fn watch(&mut self, now: Instant) {
        let console = &self.console;
        self.restarting.retain(|id, r| {
            let state = console.agents().observed_state(&r.to, *id);
            if state == Some(PowerState::Running) {
                console.event(
                    "vm",
                    &r.vm,
                    format!(
                        "restarted by HA: runs on {} {:.1} s after {} was lost",
                        r.to,
                        now.duration_since(r.lost_at).as_secs_f64(),
                        r.from
                    ),
                );
                return false;
            }
            now.duration_since(r.restarted_at) < WATCH
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_absence_is_one_state_however_long_it_lasts() {
        let absent = |s| HostHa::Isolated {
            agent_absent: Some(Duration::from_secs(s)),
        };
        let isolated = HostHa::Isolated { agent_absent: None };
        assert!(same_state(&absent(3), &absent(4)));
        assert!(same_state(&isolated, &isolated));
        assert!(!same_state(&isolated, &absent(3)));
        assert!(!same_state(&absent(3), &HostHa::Failed));
        assert!(!same_state(&HostHa::Connected, &HostHa::Failed));
        assert!(same_state(&HostHa::Fenced, &HostHa::Fenced));
    }
}
