//! Making the switch match: [`SwitchLink::reconcile`] reads the switch's configuration, plans
//! the difference ([`super::plan::plan`]) and applies it; [`SwitchLink::plug`] adds a VM's
//! ports and applies them at once (or takes them back); a background task
//! ([`spawn_reconciler`]) does so every [`RECONCILE_INTERVAL`], so a restarted (empty) switch
//! gets everything back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use vinfra_switch_control::{ClientError, CountersView, Request, SwitchClient, UPLINK_PORT};
use vinfra_types::error::Chain;
use vinfra_types::network::HostSwitchCounters;
use vinfra_types::NicSpec;

use super::counters::host_counters;
use super::desired::VmNic;
use super::error::{RefusedRequest, SwitchLinkError};
use super::link::{lock, SwitchLink};
use super::plan::plan;

/// How often the background task checks the switch (and replays after a restart).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a reconcile waits for the control socket to accept (a switch that is restarting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one control request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a reconcile does with MAC entries the switch moved itself (MAC mobility: a VM's
/// announcement from another host moves its entry there before the console says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacMoves {
    /// Leaves them: the console's word on the VM has not come yet (background reconciles, a VM's
    /// ports).
    Keep,
    /// Puts them back where the console's configuration puts them (`revert_mac_moves`): the
    /// configuration just came from the console, which is the authority on where each VM is.
    /// Where the console agrees with the move, the entry was already set there.
    Revert,
}

/// What a reconcile did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// Requests applied.
    pub applied: usize,
    /// Requests the switch refused, with its reasons.
    pub refused: Vec<RefusedRequest>,
}

impl ReconcileOutcome {
    /// The refusals as an error, if any.
    pub fn into_result(self) -> Result<ReconcileOutcome, SwitchLinkError> {
        if self.refused.is_empty() {
            Ok(self)
        } else {
            Err(SwitchLinkError::Refused(self.refused))
        }
    }
}

/// The connection in `slot`, connecting when there is none.
pub(super) fn connected<'a>(
    link: &SwitchLink,
    slot: &'a mut Option<SwitchClient>,
) -> Result<&'a mut SwitchClient, ClientError> {
    if slot.is_none() {
        let c = SwitchClient::connect_within(&link.attachment.control, CONNECT_TIMEOUT)?;
        c.set_timeout(Some(REQUEST_TIMEOUT))?;
        *slot = Some(c);
    }
    slot.as_mut().ok_or(ClientError::Closed)
}

impl SwitchLink {
    /// Makes the switch match the desired configuration now (blocking), leaving the MAC entries
    /// the switch moved itself ([`MacMoves::Keep`]). Connection problems are errors (and the next
    /// call reconnects); refused requests are reported in the [`ReconcileOutcome`] after
    /// everything else was applied.
    pub fn reconcile(&self) -> Result<ReconcileOutcome, SwitchLinkError> {
        self.reconcile_with(MacMoves::Keep)
    }

    /// [`SwitchLink::reconcile`], doing `moves` with the MAC entries the switch moved itself.
    /// A switch that does not know `revert_mac_moves` (an older one) keeps them.
    pub fn reconcile_with(&self, moves: MacMoves) -> Result<ReconcileOutcome, SwitchLinkError> {
        let mut slot = lock(&self.client);
        let result = self.reconcile_on(&mut slot, moves);
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|source| SwitchLinkError::Switch {
            path: self.attachment.control.clone(),
            source,
        })
    }

    fn reconcile_on(
        &self,
        slot: &mut Option<SwitchClient>,
        moves: MacMoves,
    ) -> Result<ReconcileOutcome, ClientError> {
        let client = connected(self, slot)?;
        let current = client.config()?;
        // An uplink the switch has but its configuration does not list is the switch's own.
        let switch_uplink = if current
            .iter()
            .any(|r| matches!(r, Request::AddPort(p) if p.id == UPLINK_PORT))
        {
            None
        } else {
            client.counters()?.port(UPLINK_PORT).cloned()
        };
        *lock(&self.switch_uplink_mtu) = switch_uplink.as_ref().and_then(|p| p.mtu);
        let uplink_builtin = self.attachment.underlay_ip.is_some() && switch_uplink.is_some();
        let desired = lock(&self.desired).requests(&self.attachment, uplink_builtin);
        let steps = plan(&current, &desired);
        let mut outcome = ReconcileOutcome::default();
        for step in steps {
            match client.apply(std::slice::from_ref(&step)) {
                Ok(()) => outcome.applied += 1,
                Err(ClientError::Refused { message, .. }) => {
                    outcome.refused.push(RefusedRequest {
                        request: step,
                        message,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if moves == MacMoves::Revert {
            match client.apply(&[Request::RevertMacMoves]) {
                Ok(()) => {}
                Err(ClientError::Refused { message, .. }) => {
                    tracing::debug!("switch keeps its MAC moves: {message}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }

    /// Gives VM `id`'s NICs their ports (validated and allocated as [`SwitchLink::attach`]
    /// does, sockets in `dir`) and applies them to the switch now (blocking). Only refusals of
    /// these ports, or of their firewalls (a port must not run open when its NIC is in
    /// security groups), fail it: the rest is the configuration's business. On failure the VM has no
    /// ports, in the desired configuration or (as far as it can be reached) on the switch.
    pub fn plug(
        &self,
        id: Uuid,
        dir: &Path,
        nics: &[NicSpec],
    ) -> Result<Vec<VmNic>, SwitchLinkError> {
        self.plug_as(id, dir, nics, None)
    }

    /// [`SwitchLink::plug`] for a QEMU that runs as user `owner` (its taps and the switch's
    /// sockets are made that user's).
    pub fn plug_as(
        &self,
        id: Uuid,
        dir: &Path,
        nics: &[NicSpec],
        owner: Option<u32>,
    ) -> Result<Vec<VmNic>, SwitchLinkError> {
        let attached = self.attach_as(id, dir, nics, owner)?;
        let ports: Vec<u32> = attached.iter().map(|n| n.port).collect();
        let checked = self.reconcile().and_then(|o| {
            // A port whose firewall was refused would run open: that fails the VM's ports too.
            let refused = o
                .refused
                .into_iter()
                .filter(|r| match &r.request {
                    Request::AddPort(p) => ports.contains(&p.id),
                    Request::SetPortFirewall {
                        port,
                        rules: Some(_),
                    } => ports.contains(port),
                    _ => false,
                })
                .collect();
            ReconcileOutcome {
                applied: o.applied,
                refused,
            }
            .into_result()
        });
        if let Err(e) = checked {
            self.detach(id);
            if let Err(e) = self.reconcile() {
                tracing::warn!("VM {id}: {}", Chain(&e));
            }
            return Err(e);
        }
        Ok(attached)
    }

    /// Reads the switch's counters now (blocking) and names them in the cluster's terms:
    /// networks by name, VM ports by VM id and NIC index, the uplink, routers by name. Ports,
    /// networks and routers the agent does not know (not configured, or not yet removed) are
    /// left out.
    pub fn counters(&self) -> Result<HostSwitchCounters, SwitchLinkError> {
        self.counters_with_view().map(|(_, named)| named)
    }

    /// [`SwitchLink::counters`], with the switch's own answer (one `get_counters` request):
    /// what belongs to no port or network (the datapath's batch sizes) is read from it.
    pub fn counters_with_view(
        &self,
    ) -> Result<(CountersView, HostSwitchCounters), SwitchLinkError> {
        let mut slot = lock(&self.client);
        let view = match connected(self, &mut slot).and_then(|c| c.counters()) {
            Ok(v) => v,
            Err(source) => {
                *slot = None;
                return Err(SwitchLinkError::Switch {
                    path: self.attachment.control.clone(),
                    source,
                });
            }
        };
        drop(slot);
        let d = lock(&self.desired);
        let named = host_counters(&view, &d.config, &d.vms);
        Ok((view, named))
    }

    /// [`SwitchLink::reconcile`], logging what changed and when the switch comes and goes. A
    /// request the switch keeps refusing (retried by every reconcile) is logged when it is first
    /// refused; the end of refusals is logged once.
    pub fn reconcile_logged(&self) {
        let result = self.reconcile();
        let ok = result.is_ok();
        let was = lock(&self.healthy).replace(ok);
        let control = self.attachment.control.display();
        match result {
            Ok(o) => {
                if o.applied > 0 {
                    tracing::info!(
                        "switch {control}: applied {} configuration requests",
                        o.applied
                    );
                }
                let mut before = lock(&self.refused);
                for r in o.refused.iter().filter(|r| !before.contains(r)) {
                    tracing::warn!("switch {control}: refused {r}");
                }
                let taken = before.iter().filter(|r| !o.refused.contains(r)).count();
                if taken > 0 {
                    tracing::info!(
                        "switch {control}: {taken} requests refused before are refused no more \
                         (taken, or no longer wanted)"
                    );
                }
                *before = o.refused;
            }
            Err(e) if was != Some(false) => tracing::warn!("{}", Chain(&e)),
            Err(_) => {}
        }
    }
}

/// Reconciles `link` every [`RECONCILE_INTERVAL`] on the tokio runtime, until the link is
/// dropped.
pub fn spawn_reconciler(link: &Arc<SwitchLink>) {
    let weak = Arc::downgrade(link);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECONCILE_INTERVAL).await;
            let Some(link) = weak.upgrade() else {
                return;
            };
            if tokio::task::spawn_blocking(move || link.reconcile_logged())
                .await
                .is_err()
            {
                return;
            }
        }
    });
}
