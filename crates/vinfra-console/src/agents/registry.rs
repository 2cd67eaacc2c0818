//! Connected agents: their outgoing channel, pending requests and latest report.
//!
//! Liveness and state are kept apart: a host is connected while its connection is up and some
//! message (a heartbeat, every second) arrived within the heartbeat timeout; its latest report
//! says what it runs and may be older (a report waits on the host's QEMUs, a heartbeat on
//! nothing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use vinfra_proto::{
    AgentCommand, AnswerEffect, CommandError, CommandReply, ConsoleMessage, HostReport,
};
use vinfra_types::usage::UsageHistory;
use vinfra_types::{HostStatus, PowerState, VmObserved};

use super::history::UsageHistories;

/// A host counts as disconnected when no message arrived for this long (three heartbeats: the
/// `heartbeat_timeout` of `vinfra_ha::HaTimings`).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// Requests sent to an agent that wait for their response, by request id.
pub type Pending = Arc<Mutex<HashMap<u64, Waiting>>>;

/// A request sent to an agent whose answer has not arrived.
pub struct Waiting {
    /// What its answer changes in the host's VMs: taken into the host's report by the
    /// connection's reader ([`AgentRegistry::answered`]), in the order the agent's messages
    /// arrive, as the agent takes it into its copy of what it reported
    /// (`vinfra-agent::connection::reports`).
    effect: AnswerEffect,
    /// Who waits for the answer; `None` once it gave up (a timeout): the answer is still taken
    /// in when it comes, as the agent took it in when it sent it.
    waiter: Option<oneshot::Sender<Result<CommandReply, CommandError>>>,
    /// When the waiter gave up.
    gave_up: Option<Instant>,
}

/// An answer nobody waits for any more is forgotten this long after its waiter gave up (an
/// agent answers every request; one that does not is past helping).
const LATE_ANSWER_KEPT: Duration = Duration::from_secs(600);

/// Why a request to an agent did not get a successful reply.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// the host's agent is not connected
    #[error("host '{host}' is not connected")]
    NotConnected {
        /// The host.
        host: String,
    },
    /// the agent did not answer in time
    #[error("host '{host}' did not answer within {secs} s")]
    Timeout {
        /// The host.
        host: String,
        /// How long the console waited.
        secs: u64,
    },
    /// the connection closed before the answer arrived
    #[error("connection to host '{host}' was lost before it answered")]
    ConnectionLost {
        /// The host.
        host: String,
    },
    /// the agent answered with an error
    #[error("host '{host}'")]
    Agent {
        /// The host.
        host: String,
        /// What its agent answered.
        #[source]
        source: CommandError,
    },
}

/// The latest report of a host and when it arrived, and when the host was last heard from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The report.
    pub report: Arc<HostReport>,
    /// When it arrived (how stale the observed state is).
    pub received: Instant,
    /// When the last message of any kind (heartbeat, report, response) arrived on the host's
    /// current or last connection (its liveness).
    pub heard: Instant,
}

struct Connection {
    id: u64,
    tx: mpsc::Sender<ConsoleMessage>,
    pending: Pending,
    /// Dropping it tells the connection task to close.
    _close: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<String, Connection>,
    observed: HashMap<String, Observed>,
}

/// Every agent connection of this console, keyed by host name. Cheap to clone.
#[derive(Clone)]
pub struct AgentRegistry {
    inner: Arc<Mutex<Inner>>,
    next_id: Arc<AtomicU64>,
    /// Host names whose agent said Hello or whose connection closed (controllers listen).
    notify: Arc<Mutex<Vec<mpsc::UnboundedSender<String>>>>,
    /// Host names whose report shows a VM that changed (came, went, another power state or
    /// HA flag): the VM controller listens, so that a crash is seen at once.
    vm_notify: Arc<Mutex<Vec<mpsc::UnboundedSender<String>>>>,
    /// A host is disconnected when it was last heard from longer ago than this.
    heartbeat_timeout: Duration,
    /// The last hour of each VM's and host's use, from the reports.
    history: Arc<Mutex<UsageHistories>>,
}

impl Default for AgentRegistry {
    fn default() -> Self {
        Self::new(HEARTBEAT_TIMEOUT)
    }
}

/// What the connection task holds for its registration.
pub struct Registration {
    /// The connection's id (a newer connection of the same host replaces it).
    pub conn_id: u64,
    /// Messages to send to the agent.
    pub rx: mpsc::Receiver<ConsoleMessage>,
    /// Requests waiting for their response.
    pub pending: Pending,
    /// Resolves when the registry drops the connection.
    pub closed: oneshot::Receiver<()>,
}

impl AgentRegistry {
    /// An empty registry whose hosts count as disconnected after `heartbeat_timeout` without any
    /// message.
    pub fn new(heartbeat_timeout: Duration) -> Self {
        AgentRegistry {
            inner: Arc::default(),
            next_id: Arc::default(),
            notify: Arc::default(),
            vm_notify: Arc::default(),
            heartbeat_timeout,
            history: Arc::default(),
        }
    }

    /// How long a host may stay silent before it counts as disconnected.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn history(&self) -> std::sync::MutexGuard<'_, UsageHistories> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// VM `id`'s CPU and memory over the last hour.
    pub fn vm_usage_history(&self, id: Uuid) -> UsageHistory {
        self.history().vm(id, vinfra_types::unix_now_s())
    }

    /// Host `host`'s CPU and memory over the last hour.
    pub fn host_usage_history(&self, host: &str) -> UsageHistory {
        self.history().host(host, vinfra_types::unix_now_s())
    }

    /// Subscribes to host names whose connection came up or went down.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.notify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Subscribes to host names whose connection came up or went down, and to those whose
    /// report shows a VM that came, went, or changed its power state or HA flag.
    pub fn subscribe_with_vms(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.notify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx.clone());
        self.vm_notify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    fn announce(&self, host: &str) {
        let mut subs = self.notify.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| tx.send(host.to_string()).is_ok());
    }

    /// Registers a new connection for `host` with its first report; an older connection of the same
    /// host is closed.
    pub fn connect(&self, host: &str, report: HostReport) -> Registration {
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(256);
        let (close_tx, closed) = oneshot::channel();
        let pending: Pending = Arc::default();
        self.history().record(vinfra_types::unix_now_s(), &report);
        {
            let mut inner = self.lock();
            inner.conns.insert(
                host.to_string(),
                Connection {
                    id: conn_id,
                    tx,
                    pending: pending.clone(),
                    _close: close_tx,
                },
            );
            let now = Instant::now();
            inner.observed.insert(
                host.to_string(),
                Observed {
                    report: Arc::new(report),
                    received: now,
                    heard: now,
                },
            );
        }
        self.announce(host);
        Registration {
            conn_id,
            rx,
            pending,
            closed,
        }
    }

    /// Stores a report (the host was heard from too); when a VM in it came, went, or changed
    /// its power state or HA flag, the VM controller is told.
    pub fn report(&self, host: &str, conn_id: u64, report: HostReport) {
        let report = Arc::new(report);
        let changed = {
            let mut inner = self.lock();
            if inner.conns.get(host).is_none_or(|c| c.id != conn_id) {
                return;
            }
            let now = Instant::now();
            let changed = inner
                .observed
                .get(host)
                .is_none_or(|o| vms_changed(&o.report.vms, &report.vms));
            inner.observed.insert(
                host.to_string(),
                Observed {
                    report: report.clone(),
                    received: now,
                    heard: now,
                },
            );
            changed
        };
        // The usage history has its own lock: readers of the registry do not wait for it.
        self.history().record(vinfra_types::unix_now_s(), &report);
        if changed {
            let mut subs = self.vm_notify.lock().unwrap_or_else(|p| p.into_inner());
            subs.retain(|tx| tx.send(host.to_string()).is_ok());
        }
    }

    /// Notes that a message (a heartbeat, a response) arrived from `host` on connection
    /// `conn_id`: the host is alive, whatever the age of its report.
    pub fn heard(&self, host: &str, conn_id: u64) {
        let mut inner = self.lock();
        if inner.conns.get(host).is_some_and(|c| c.id == conn_id) {
            if let Some(o) = inner.observed.get_mut(host) {
                o.heard = Instant::now();
            }
        }
    }

    /// Applies what a command's answer says about the host's VMs to its latest report at once,
    /// without waiting for the next one: the observed state is then never older than a command
    /// the console saw answered. The report's arrival time is left alone (it is not a heartbeat).
    fn apply_vm(&self, host: &str, conn_id: u64, change: impl FnOnce(&mut Vec<VmObserved>)) {
        let mut inner = self.lock();
        if inner.conns.get(host).is_none_or(|c| c.id != conn_id) {
            return;
        }
        if let Some(o) = inner.observed.get_mut(host) {
            // In place unless a reader holds the report (then a copy).
            change(&mut Arc::make_mut(&mut o.report).vms);
        }
    }

    /// The answer `result` to request `id` arrived on `host`'s connection `conn_id` (whose
    /// requests are `pending`): what it changes in the host's VMs is taken into its report now,
    /// in the order of the connection's messages (a report that followed the answer is stored
    /// after it, as the agent sent them), then its waiter, if it still waits, gets it.
    pub fn answered(
        &self,
        host: &str,
        conn_id: u64,
        pending: &Pending,
        id: u64,
        result: Result<CommandReply, CommandError>,
    ) {
        let Some(waiting) = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        else {
            return;
        };
        if let Ok(reply) = &result {
            if waiting.effect.applies(reply) {
                self.apply_vm(host, conn_id, |vms| waiting.effect.apply(reply, vms));
            }
        }
        if let Some(w) = waiting.waiter {
            let _ = w.send(result);
        }
    }

    /// Removes a connection (if it is still the current one for the host).
    pub fn disconnect(&self, host: &str, conn_id: u64) {
        let removed = {
            let mut inner = self.lock();
            if inner.conns.get(host).is_some_and(|c| c.id == conn_id) {
                inner.conns.remove(host)
            } else {
                None
            }
        };
        if let Some(conn) = removed {
            // Dropping the senders wakes every waiter with ConnectionLost.
            conn.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            self.announce(host);
        }
    }

    /// Closes the connection of a host (it was removed from the cluster) and forgets its report.
    pub fn forget(&self, host: &str) {
        let mut inner = self.lock();
        inner.conns.remove(host);
        inner.observed.remove(host);
    }

    /// The id of `host`'s current connection, if it has one.
    pub fn connection_id(&self, host: &str) -> Option<u64> {
        self.lock().conns.get(host).map(|c| c.id)
    }

    /// Connected: the connection is up and a message arrived within the heartbeat timeout
    /// ([`HEARTBEAT_TIMEOUT`] unless configured). The age of the latest report does not count.
    pub fn status(&self, host: &str) -> HostStatus {
        let inner = self.lock();
        self.status_locked(&inner, host)
    }

    fn status_locked(&self, inner: &Inner, host: &str) -> HostStatus {
        let alive = inner
            .observed
            .get(host)
            .is_some_and(|o| o.heard.elapsed() < self.heartbeat_timeout);
        if inner.conns.contains_key(host) && alive {
            HostStatus::Connected
        } else {
            HostStatus::Disconnected
        }
    }

    /// Latest report of a host (also after it disconnected), with its status.
    pub fn observed(&self, host: &str) -> (HostStatus, Option<Observed>) {
        let inner = self.lock();
        (
            self.status_locked(&inner, host),
            inner.observed.get(host).cloned(),
        )
    }

    /// The status of each of `hosts`, and when it was last heard from (on its current or last
    /// connection; `None` when never): [`Self::observed`] for many hosts under one lock,
    /// without the reports.
    pub fn links(&self, hosts: &[String]) -> Vec<(HostStatus, Option<Instant>)> {
        let inner = self.lock();
        hosts
            .iter()
            .map(|h| {
                (
                    self.status_locked(&inner, h),
                    inner.observed.get(h).map(|o| o.heard),
                )
            })
            .collect()
    }

    /// Latest report and status of every host ever seen since start.
    pub fn snapshot(&self) -> HashMap<String, (HostStatus, Observed)> {
        let inner = self.lock();
        inner
            .observed
            .iter()
            .map(|(h, o)| (h.clone(), (self.status_locked(&inner, h), o.clone())))
            .collect()
    }

    /// The VM's state in `host`'s latest report, while the host is connected.
    pub fn observed_state(&self, host: &str, id: Uuid) -> Option<PowerState> {
        match self.observed(host) {
            (HostStatus::Connected, Some(o)) => {
                o.report.vms.iter().find(|v| v.id == id).map(|v| v.state)
            }
            _ => None,
        }
    }

    /// The VM's state in `host`'s latest report, also when the host is no longer connected.
    pub fn reported_state(&self, host: &str, id: Uuid) -> Option<PowerState> {
        self.observed(host)
            .1
            .and_then(|o| o.report.vms.iter().find(|v| v.id == id).map(|v| v.state))
    }

    /// The VM's HA flag in `host`'s latest report (also when the host is no longer connected),
    /// if it lists the VM.
    pub fn reported_ha(&self, host: &str, id: Uuid) -> Option<bool> {
        let inner = self.lock();
        let o = inner.observed.get(host)?;
        o.report.vms.iter().find(|v| v.id == id).map(|v| v.ha)
    }

    /// True when `host`'s latest report lists the VM.
    pub fn host_knows(&self, host: &str, id: Uuid) -> bool {
        self.observed(host)
            .1
            .is_some_and(|o| o.report.vms.iter().any(|v| v.id == id))
    }

    /// Another host than `host` (connected or not) whose latest report shows the VM live:
    /// running, paused, migrating or waiting for an incoming migration.
    pub fn live_elsewhere(&self, id: Uuid, host: &str) -> Option<(String, PowerState)> {
        let inner = self.lock();
        inner
            .observed
            .iter()
            .filter(|(h, _)| h.as_str() != host)
            .find_map(|(h, o)| {
                o.report
                    .vms
                    .iter()
                    .find(|v| {
                        v.id == id
                            && matches!(
                                v.state,
                                PowerState::Running
                                    | PowerState::Paused
                                    | PowerState::Migrating
                                    | PowerState::Incoming
                            )
                    })
                    .map(|v| (h.clone(), v.state))
            })
    }

    /// Sends a command to a host's agent and waits for its answer.
    pub async fn request(
        &self,
        host: &str,
        command: AgentCommand,
        timeout: Duration,
    ) -> Result<CommandReply, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        let (tx, pending) = {
            let inner = self.lock();
            let conn = inner
                .conns
                .get(host)
                .ok_or_else(|| RequestError::NotConnected {
                    host: host.to_string(),
                })?;
            // What the answer changes in the host's VMs (an answer about another VM than the
            // command's is not taken: a host could claim another host's VM that way;
            // `hosts::reports`).
            conn.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    id,
                    Waiting {
                        effect: command.answer_effect(),
                        waiter: Some(reply_tx),
                        gave_up: None,
                    },
                );
            (conn.tx.clone(), conn.pending.clone())
        };
        let lost = || RequestError::ConnectionLost {
            host: host.to_string(),
        };
        let msg = ConsoleMessage::Request { id, command };
        let result = tokio::time::timeout(timeout, async {
            tx.send(msg).await.map_err(|_| lost())?;
            reply_rx.await.map_err(|_| lost())
        })
        .await;
        match result {
            // Taken into the host's report by the reader (`answered`).
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(source))) => Err(RequestError::Agent {
                host: host.to_string(),
                source,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // The answer may still come: taken in then, as the agent takes it in when it
                // sends it; forgotten if it does not come for long.
                let now = Instant::now();
                let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(w) = pending.get_mut(&id) {
                    w.waiter = None;
                    w.gave_up = Some(now);
                }
                pending.retain(|_, w| {
                    w.gave_up
                        .is_none_or(|at| now.duration_since(at) < LATE_ANSWER_KEPT)
                });
                Err(RequestError::Timeout {
                    host: host.to_string(),
                    secs: timeout.as_secs(),
                })
            }
        }
    }
}

/// True when a VM came or went between `before` and `after`, or changed its power state or
/// HA flag (usage and uptime change every report and do not count).
fn vms_changed(before: &[VmObserved], after: &[VmObserved]) -> bool {
    let key = |v: &VmObserved| (v.id, v.state, v.ha);
    let mut a: Vec<_> = before.iter().map(key).collect();
    let mut b: Vec<_> = after.iter().map(key).collect();
    a.sort_unstable_by_key(|k| k.0);
    b.sort_unstable_by_key(|k| k.0);
    a != b
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinfra_types::{Accel, HostCapacity, HostUsage, PowerState, VmUsage};

    fn report(host: &str) -> HostReport {
        HostReport {
            host: host.into(),
            address: "10.0.0.1".into(),
            accel: Accel::Tcg,
            qemu_version: "7.2.0".into(),
            capacity: HostCapacity {
                cores: 4,
                memory_mib: 8192,
            },
            usage: HostUsage::default(),
            vms: vec![],
            trunk: None,
            underlay_mtu: 1500,
            guard: None,
        }
    }

    fn vm(id: Uuid) -> VmObserved {
        VmObserved {
            id,
            name: "v".into(),
            state: PowerState::Running,
            pid: Some(7),
            uptime_s: 0,
            usage: VmUsage::default(),
            unresponsive: false,
            ha: false,
            net: None,
        }
    }

    fn vms_of(r: &AgentRegistry, host: &str) -> Vec<Uuid> {
        let (_, o) = r.observed(host);
        o.map(|o| o.report.vms.iter().map(|v| v.id).collect())
            .unwrap_or_default()
    }

    /// An answer is taken into the host's report by the reader when it arrives, also after its
    /// request timed out (the agent took it into what it reported when it sent it); one that
    /// arrives on a connection no longer the host's is not.
    #[tokio::test]
    async fn an_answer_is_taken_in_when_it_arrives_even_after_its_request_gave_up() {
        let r = AgentRegistry::new(HEARTBEAT_TIMEOUT);
        let mut reg = r.connect("h1", report("h1"));
        let id = Uuid::new_v4();
        let ask = |r: AgentRegistry| async move {
            r.request(
                "h1",
                AgentCommand::ObserveVm { id, wait_ms: 0 },
                Duration::from_millis(50),
            )
            .await
        };
        let asking = tokio::spawn(ask(r.clone()));
        let Some(ConsoleMessage::Request { id: req, .. }) = reg.rx.recv().await else {
            panic!("the request was not sent")
        };
        assert!(matches!(
            asking.await.unwrap(),
            Err(RequestError::Timeout { .. })
        ));
        assert!(vms_of(&r, "h1").is_empty());
        r.answered(
            "h1",
            reg.conn_id,
            &reg.pending,
            req,
            Ok(CommandReply::Vm { vm: vm(id) }),
        );
        assert_eq!(vms_of(&r, "h1"), vec![id]);
        // Answered once: a second answer with the same id is nobody's.
        assert!(reg.pending.lock().unwrap().is_empty());

        // A waiter gets the answer after it was taken in.
        let other = Uuid::new_v4();
        let asking = tokio::spawn({
            let r = r.clone();
            async move {
                r.request(
                    "h1",
                    AgentCommand::ObserveVm {
                        id: other,
                        wait_ms: 0,
                    },
                    Duration::from_secs(10),
                )
                .await
            }
        });
        let Some(ConsoleMessage::Request { id: req, .. }) = reg.rx.recv().await else {
            panic!("the request was not sent")
        };
        r.answered(
            "h1",
            reg.conn_id,
            &reg.pending,
            req,
            Ok(CommandReply::Vm { vm: vm(other) }),
        );
        assert!(asking.await.unwrap().is_ok());
        assert_eq!(vms_of(&r, "h1").len(), 2);

        // The host reconnects: an answer arriving on the old connection changes nothing.
        let old = (reg.conn_id, reg.pending.clone());
        let asking = tokio::spawn(ask(r.clone()));
        let Some(ConsoleMessage::Request { id: req, .. }) = reg.rx.recv().await else {
            panic!("the request was not sent")
        };
        let _new = r.connect("h1", report("h1"));
        let _ = asking.await;
        r.answered(
            "h1",
            old.0,
            &old.1,
            req,
            Ok(CommandReply::Vm { vm: vm(id) }),
        );
        assert!(vms_of(&r, "h1").is_empty());
    }
}
