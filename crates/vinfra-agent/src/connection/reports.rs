//! What the agent tells the console about its host: a full report read now
//! ([`host_report`]), and when one is worth sending.
//!
//! The agent keeps the last report it sent, with every answer sent since taken in as the console
//! takes it ([`vinfra_proto::AnswerEffect`]): that is what the console holds. A report read
//! later goes out only when it differs from that copy in more than the values that move all
//! the time ([`HostReport::same_state`]), or when [`SessionTiming::unchanged_every`] report
//! intervals passed without one (the moving values: the host's and VMs' use, averaged since the
//! last report sent, uptimes, traffic, the guard's renewals). So a VM that changed state reaches
//! the console within a report interval, a create or start the console saw answered costs no
//! report, and an idle host sends one every 8 s by default.
//!
//! [`SessionTiming::unchanged_every`]: super::SessionTiming::unchanged_every

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;
use vinfra_proto::{AgentMessage, AnswerEffect, CommandError, CommandReply, HostReport};
use vinfra_types::vm::VmNetBytes;
use vinfra_types::HostCapacity;

use crate::guard::GuardLink;
use crate::manager::Manager;

/// What every report carries besides the VMs and usage.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Host name.
    pub host: String,
    /// Address migrations reach this host at.
    pub address: String,
    /// QEMU version.
    pub qemu_version: String,
    /// Capacity (with overrides applied).
    pub capacity: HostCapacity,
    /// What the host's QEMU runs (said in the Hello); `None` when QEMU could not say.
    pub platform: Option<vinfra_types::HostPlatform>,
    /// The host's guard (`vinfra agent --guard`), asked for its state in every report.
    pub guard: Option<Arc<GuardLink>>,
}

/// Longest wait for the switch's counters in a report (past it the report's VMs have no `net`).
pub const REPORT_SWITCH_BOUND: Duration = Duration::from_millis(300);

/// Each VM's traffic through its NICs' ports, summed from the switch's counters (seen from the
/// VM: what the port sent is what the VM received); empty without a switch or an answer within
/// [`REPORT_SWITCH_BOUND`].
async fn vm_traffic(m: &Manager) -> HashMap<Uuid, VmNetBytes> {
    let Some(link) = m.switch().cloned() else {
        return HashMap::new();
    };
    let read = tokio::task::spawn_blocking(move || link.counters_with_view());
    let Ok(Ok(Ok((_, named)))) = tokio::time::timeout(REPORT_SWITCH_BOUND, read).await else {
        return HashMap::new();
    };
    let mut by_vm: HashMap<Uuid, VmNetBytes> = HashMap::new();
    for p in &named.ports {
        let t = by_vm.entry(p.vm_id).or_default();
        t.rx_bytes = t.rx_bytes.saturating_add(p.traffic.tx_bytes);
        t.tx_bytes = t.tx_bytes.saturating_add(p.traffic.rx_bytes);
    }
    by_vm
}

/// A full report now: the VMs (each QEMU waited on for a bound), their NICs' traffic (the
/// switch's counters, 300 ms at most) and the guard (a second at most), asked at once.
pub async fn host_report(m: &Manager, info: &HostInfo) -> HostReport {
    let guard = async {
        match &info.guard {
            Some(link) => link.view().await,
            None => None,
        }
    };
    let (mut vms, guard, traffic) = tokio::join!(m.observe_all(), guard, vm_traffic(m));
    for vm in &mut vms {
        vm.net = traffic.get(&vm.id).copied();
    }
    let usage = m
        .sampler()
        .lock()
        .ok()
        .and_then(|mut s| s.host_usage(info.capacity.cores).ok())
        .unwrap_or_default();
    HostReport {
        host: info.host.clone(),
        address: info.address.clone(),
        accel: m.accel(),
        qemu_version: info.qemu_version.clone(),
        capacity: info.capacity,
        usage,
        vms,
        trunk: m
            .switch()
            .and_then(|l| l.attachment().trunk_interface.clone()),
        underlay_mtu: m.switch().map_or(vinfra_types::network::UNDERLAY_MTU, |l| {
            u32::from(l.underlay_mtu())
        }),
        guard,
    }
}

/// The last report sent, with the answers sent since taken in.
struct Sent {
    report: HostReport,
    /// Report intervals since it was sent whose report was left unsent.
    skipped: u32,
}

/// Sends the session's reports, each only when it tells the console something new, in the
/// order their contents were read: a report taken before a command finished can never overtake
/// (and so overwrite at the console) one taken after it.
///
/// Two locks: `reading` is held from a report's read to its send (reads are serialized, and a
/// command whose answer is followed by a fresh report holds it from its answer on), `sent`
/// only to compare with or change what the console holds and queue the message. An answer
/// that the console takes in without a fresh report (`ObserveVm`, `SetVmHa`) takes `sent`
/// alone, so it never waits for a report being read (a QEMU that does not answer holds a read
/// up for its bound): a periodic report read before such an answer and sent after it is
/// compared with the answer taken in, so both ends hold that report, and the next read,
/// newer than the answer, is sent when it differs.
#[derive(Clone)]
pub(super) struct Reporter {
    m: Arc<Manager>,
    info: HostInfo,
    out: mpsc::Sender<AgentMessage>,
    unchanged_every: u32,
    reading: Arc<tokio::sync::Mutex<()>>,
    sent: Arc<tokio::sync::Mutex<Sent>>,
}

impl Reporter {
    /// A reporter whose console holds `hello` (the Hello's report, sent).
    pub(super) fn new(
        m: Arc<Manager>,
        info: HostInfo,
        out: mpsc::Sender<AgentMessage>,
        unchanged_every: u32,
        hello: HostReport,
    ) -> Reporter {
        Reporter {
            m,
            info,
            out,
            unchanged_every: unchanged_every.max(1),
            reading: Arc::default(),
            sent: Arc::new(tokio::sync::Mutex::new(Sent {
                report: hello,
                skipped: 0,
            })),
        }
    }

    /// Sends `report` when it differs from what the console holds, or (`due`) regardless;
    /// false when the connection is gone.
    async fn offer(&self, report: HostReport, due: bool) -> bool {
        let mut sent = self.sent.lock().await;
        if !due && report.same_state(&sent.report) {
            return true;
        }
        sent.report = report.clone();
        sent.skipped = 0;
        commit_usage(&self.m);
        self.out.send(AgentMessage::Report { report }).await.is_ok()
    }

    /// The report interval passed: reads a report and sends it if it tells something new or
    /// too many intervals passed without one; false when the connection is gone.
    pub(super) async fn tick(&self) -> bool {
        let _reading = self.reading.lock().await;
        let report = host_report(&self.m, &self.info).await;
        let due = {
            let mut sent = self.sent.lock().await;
            let due = sent.skipped + 1 >= self.unchanged_every;
            if !due && report.same_state(&sent.report) {
                sent.skipped += 1;
                return true;
            }
            due
        };
        self.offer(report, due).await
    }

    /// Before the answer to a command that may have changed a VM and whose answer does not
    /// say how: a report read now, if it tells something new; false when the connection is
    /// gone.
    pub(super) async fn before_answer(&self) -> bool {
        let _reading = self.reading.lock().await;
        let report = host_report(&self.m, &self.info).await;
        self.offer(report, false).await
    }

    /// Sends `response` (with `effect`, the command's [`AnswerEffect`]), taking it into what
    /// the console holds; then, when `fresh`, a report read after it if it tells more than the
    /// answer did. False when the connection is gone.
    pub(super) async fn answer(
        &self,
        effect: AnswerEffect,
        response: AgentMessage,
        fresh: bool,
    ) -> bool {
        let reply = match &response {
            AgentMessage::Response { result: Ok(r), .. } if effect.applies(r) => Some(r.clone()),
            _ => None,
        };
        if reply.is_none() && !fresh {
            // Nothing the console takes in: no lock to wait for.
            return self.out.send(response).await.is_ok();
        }
        let _reading = match fresh {
            true => Some(self.reading.lock().await),
            false => None,
        };
        {
            let mut sent = self.sent.lock().await;
            if self.out.send(response).await.is_err() {
                return false;
            }
            if let Some(reply) = &reply {
                effect.apply(reply, &mut sent.report.vms);
            }
        }
        if !fresh {
            return true;
        }
        let report = host_report(&self.m, &self.info).await;
        self.offer(report, false).await
    }
}

/// The use in reports read from now on is measured from here: a report was sent.
pub(super) fn commit_usage(m: &Manager) {
    if let Ok(mut s) = m.sampler().lock() {
        s.commit();
    }
}

/// True when, after `command` answered `result`, the console should get a fresh report: the
/// command may have changed a VM, or an outgoing migration was seen reaching its end.
pub(super) fn report_after(
    changes_state: bool,
    result: &Result<CommandReply, CommandError>,
) -> bool {
    changes_state || matches!(result, Ok(CommandReply::Migration { status }) if status.is_final())
}
