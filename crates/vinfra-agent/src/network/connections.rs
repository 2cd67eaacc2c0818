//! A migrating VM's tracked connections: [`SwitchLink::export_connections`] reads them from the
//! source's switch, [`SwitchLink::import_connections`] gives them to the destination's, each
//! NIC's to the port of the NIC with its network and MAC.

use uuid::Uuid;
use vinfra_proto::NicConnections;
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
        if requests.is_empty() {
            return Ok(0);
        }
        let (sent, refused) = self.with_client(|client| {
            let mut sent = 0;
            let mut refused = Vec::new();
            for r in requests {
                match client.apply(std::slice::from_ref(&r)) {
                    Ok(()) => {
                        if let Request::ImportConnections { entries, .. } = &r {
                            sent += entries.len();
                        }
                    }
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
}
