//! What follows a migrating VM in the switch: its tracked connections
//! ([`SwitchLink::export_connections`] reads them from the source's switch,
//! [`SwitchLink::import_connections`] gives them to the destination's, each NIC's to the port of
//! the NIC with its network and MAC), and from its switchover the frames for its addresses
//! ([`SwitchLink::redirect`]: the source's switch sends them on to the destination).

use std::net::Ipv4Addr;

use uuid::Uuid;
use vinfra_proto::{NicConnections, SwitchNetworkKind};
use vinfra_switch_control::{ClientError, Request};

use super::desired::VmNic;
use super::error::{RefusedRequest, SwitchLinkError};
use super::link::{lock, SwitchLink};
use super::mac;
use super::reconcile::connected;

impl SwitchLink {
    /// VM `id`'s NICs as attached here (none when it has no ports).
    fn vm_nics(&self, id: Uuid) -> Vec<VmNic> {
        lock(&self.desired)
            .vms
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Runs `f` on the control connection (blocking), dropping the connection after an error.
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut vinfra_switch_control::SwitchClient) -> Result<T, ClientError>,
    ) -> Result<T, SwitchLinkError> {
        let mut slot = lock(&self.client);
        let result = connected(self, &mut slot).and_then(f);
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|source| SwitchLinkError::Switch {
            path: self.attachment.control.clone(),
            source,
        })
    }

    /// The connections the switch tracks for each of VM `id`'s NIC ports now (blocking).
    pub fn export_connections(&self, id: Uuid) -> Result<Vec<NicConnections>, SwitchLinkError> {
        let nics = self.vm_nics(id);
        if nics.is_empty() {
            return Ok(Vec::new());
        }
        self.with_client(|client| {
            nics.iter()
                .map(|nic| {
                    Ok(NicConnections {
                        network: nic.network.clone(),
                        mac: nic.mac.clone(),
                        entries: client.export_connections(nic.port)?,
                    })
                })
                .collect()
        })
    }

    /// Sends the frames for the addresses of VM `id`'s NICs on overlay networks to VTEP `to`
    /// instead of their ports (`None`: no longer), blocking: from the moment its QEMU stops for
    /// the switchover of a migration to the host at `to` until its ports go (or the switch's
    /// hold lapses: the switch's `RedirectMac`). The redirect is no configuration: a reconcile
    /// neither sends nor withdraws it. Returns how many NICs the switch redirected; each refusal
    /// (a switch that does not know the request) is the error, after the other NICs were sent.
    pub fn redirect(&self, id: Uuid, to: Option<Ipv4Addr>) -> Result<usize, SwitchLinkError> {
        let requests: Vec<Request> = {
            let desired = lock(&self.desired);
            let Some(nics) = desired.vms.get(&id) else {
                return Ok(0);
            };
            nics.iter()
                .filter_map(|nic| {
                    let network = desired.config.networks.iter().find(|n| {
                        n.name == nic.network && matches!(n.kind, SwitchNetworkKind::Overlay { .. })
                    })?;
                    Some(Request::RedirectMac {
                        network: u32::from(network.id),
                        mac: mac::unicast(&nic.mac).ok()?,
                        to,
                    })
                })
                .collect()
        };
        Ok(self.apply_each(requests)?.len())
    }

    /// Sends each of `requests` on its own (blocking) and returns those the switch took; a
    /// refusal does not stop the others, and the refusals are the error.
    fn apply_each(&self, requests: Vec<Request>) -> Result<Vec<Request>, SwitchLinkError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let (sent, refused) = self.with_client(|client| {
            let mut sent = Vec::new();
            let mut refused = Vec::new();
            for r in requests {
                match client.apply(std::slice::from_ref(&r)) {
                    Ok(()) => sent.push(r),
                    Err(ClientError::Refused { message, .. }) => refused.push(RefusedRequest {
                        request: r,
                        message,
                    }),
                    Err(e) => return Err(e),
                }
            }
            Ok((sent, refused))
        })?;
        if refused.is_empty() {
            Ok(sent)
        } else {
            Err(SwitchLinkError::Refused(refused))
        }
    }

    /// Gives VM `id`'s NIC ports the connections in `nics` (blocking): each NIC's go to the port
    /// of the VM's NIC with its network and MAC; NICs the VM does not have here are skipped.
    /// Returns how many connections were handed to the switch. A port's refusal (a full table)
    /// does not stop the others; the refusals are the error.
    pub fn import_connections(
        &self,
        id: Uuid,
        nics: &[NicConnections],
    ) -> Result<usize, SwitchLinkError> {
        let local = self.vm_nics(id);
        let port_of = |n: &NicConnections| {
            let want = mac::unicast(&n.mac).ok()?;
            local
                .iter()
                .find(|l| l.network == n.network && mac::unicast(&l.mac).ok() == Some(want))
                .map(|l| l.port)
        };
        let requests: Vec<Request> = nics
            .iter()
            .filter(|n| !n.entries.is_empty())
            .filter_map(|n| {
                Some(Request::ImportConnections {
                    port: port_of(n)?,
                    entries: n.entries.clone(),
                })
            })
            .collect();
        Ok(self
            .apply_each(requests)?
            .iter()
            .map(|r| match r {
                Request::ImportConnections { entries, .. } => entries.len(),
                _ => 0,
            })
            .sum())
    }
}
