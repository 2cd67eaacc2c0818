//! Switch ports for a VM's NICs: a port number per NIC (kept across restarts and
//! migrations when free) and the pair of Unix sockets QEMU and the switch bind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use uuid::Uuid;
use vinfra_proto::SwitchNetworkKind;
use vinfra_switch_control::{Mac, UPLINK_PORT};
use vinfra_types::NicSpec;

use super::attachment::{SwitchAttachment, VmNicPorts, MAX_PORT, TRUNK_PORT};
use super::desired::{allowed_sources, DesiredSwitch, NicTag, VmNic};
use super::mac::{self, MacError};

/// Longest Unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Why one NIC cannot be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NicProblem {
    /// Its network is not in the switch configuration.
    #[error("network {0} is not configured on this host's switch")]
    NotConfigured(String),
    /// Its network is a VLAN and the host has no trunk.
    #[error(
        "network {0} is a VLAN and this host has no trunk (the agent runs without \
         --trunk-interface)"
    )]
    NoTrunk(String),
    /// The console assigned it no MAC address.
    #[error("no MAC address assigned")]
    NoMac,
    /// Its MAC address is not a unicast address.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// Another NIC on the same network here has its MAC address.
    #[error("MAC {mac} is already used on network {network} here")]
    MacInUse {
        /// The address.
        mac: Mac,
        /// The network.
        network: String,
    },
    /// A sub-interface whose NIC is not an earlier NIC of the VM (or is a sub-interface).
    #[error("a sub-interface of NIC {0}, which is not an earlier NIC of the VM")]
    NoParent(usize),
    /// Every port number is in use.
    #[error("no free switch port number")]
    NoFreePort,
    /// A socket path does not fit in a Unix socket address.
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes")]
    SocketPathTooLong(PathBuf),
}

/// A NIC that cannot be attached, by its position in the VM specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NIC {index}")]
pub struct NicError {
    /// Position of the NIC in the VM specification.
    pub index: usize,
    /// Why.
    #[source]
    pub problem: NicProblem,
}

/// The name of the tap of port `port` of the switch at `control`: `vn`, four hex digits of a
/// hash of the control socket's path (two switches in one network namespace do not share
/// names), `p` and the port number; at most 12 bytes.
pub fn tap_name(control: &Path, port: u32) -> String {
    // FNV-1a, 32 bits, folded to 16.
    let hash = control
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    format!("vn{:04x}p{port}", (hash >> 16) ^ (hash & 0xffff))
}

impl DesiredSwitch {
    /// Allocates ports for VM `id`'s NICs (reusing the numbers it has when free), with their
    /// sockets in `dir`, and makes them part of the desired configuration. Nothing changes on
    /// error.
    pub fn attach(
        &mut self,
        attachment: &SwitchAttachment,
        id: Uuid,
        dir: &Path,
        nics: &[NicSpec],
    ) -> Result<Vec<VmNic>, NicError> {
        self.attach_as(attachment, id, dir, nics, None)
    }

    /// [`DesiredSwitch::attach`] for a QEMU that runs as user `owner`: its taps and the
    /// switch's sockets are made that user's.
    pub fn attach_as(
        &mut self,
        attachment: &SwitchAttachment,
        id: Uuid,
        dir: &Path,
        nics: &[NicSpec],
        owner: Option<u32>,
    ) -> Result<Vec<VmNic>, NicError> {
        let others = || self.vms.iter().filter(|(vm, _)| **vm != id);
        let mut used: BTreeSet<u32> = others()
            .flat_map(|(_, ns)| ns.iter().map(|n| n.port))
            .collect();
        used.insert(UPLINK_PORT);
        used.insert(TRUNK_PORT);
        let previous = self.vms.get(&id).cloned().unwrap_or_default();
        let mut out: Vec<VmNic> = Vec::with_capacity(nics.len());
        for (index, spec) in nics.iter().enumerate() {
            let fail = |problem: NicProblem| NicError { index, problem };
            let network = self
                .config
                .networks
                .iter()
                .find(|n| n.name == spec.network)
                .ok_or_else(|| fail(NicProblem::NotConfigured(spec.network.clone())))?;
            if matches!(network.kind, SwitchNetworkKind::Vlan { .. })
                && attachment.trunk_interface.is_none()
            {
                return Err(fail(NicProblem::NoTrunk(spec.network.clone())));
            }
            let mac_text = spec.mac.as_deref().ok_or(fail(NicProblem::NoMac))?;
            let mac = mac::unicast(mac_text).map_err(|e| fail(e.into()))?;
            let clash = others()
                .flat_map(|(_, ns)| ns)
                .chain(out.iter())
                .any(|n| n.network == spec.network && mac::unicast(&n.mac) == Ok(mac));
            if clash {
                return Err(fail(NicProblem::MacInUse {
                    mac,
                    network: spec.network.clone(),
                }));
            }
            let port = match previous.get(index) {
                Some(p) if !used.contains(&p.port) => p.port,
                _ => (1..=MAX_PORT)
                    .find(|p| !used.contains(p))
                    .ok_or(fail(NicProblem::NoFreePort))?,
            };
            used.insert(port);
            // A sub-interface rides its NIC (an earlier one: the spec was checked): its MTU at
            // most the NIC's, which is what the guest's interface has.
            if let Some(v) = spec.vlan {
                let parent = out
                    .get(v.parent)
                    .filter(|p| p.vlan.is_none())
                    .ok_or(fail(NicProblem::NoParent(v.parent)))?;
                let nic = VmNic {
                    network: spec.network.clone(),
                    mac: mac.to_string(),
                    allowed: allowed_sources(spec, mac),
                    mtu: network.mtu.min(parent.mtu),
                    port,
                    switch_socket: parent.switch_socket.clone(),
                    qemu_socket: parent.qemu_socket.clone(),
                    tap: parent.tap.clone(),
                    owner,
                    vlan: Some(NicTag {
                        parent_port: parent.port,
                        vid: v.vid,
                    }),
                };
                out.push(nic);
                continue;
            }
            // QEMU binds its end in its own directory, `run/` ([`crate::qemu::VmFiles`]).
            let qemu_socket = dir.join("run").join(format!("nic{index}.sock"));
            let switch_socket = dir.join(format!("nic{index}.switch.sock"));
            for p in [&qemu_socket, &switch_socket] {
                if p.as_os_str().len() > MAX_SOCKET_PATH {
                    return Err(fail(NicProblem::SocketPathTooLong(p.clone())));
                }
            }
            // A NIC with sub-interfaces stays on sockets: its frames are tagged, and offload
            // metadata is for untagged frames.
            let trunk = nics
                .iter()
                .any(|n| n.vlan.is_some_and(|v| v.parent == index));
            let tap = (attachment.vm_nic_ports == VmNicPorts::Tap && !trunk)
                .then(|| tap_name(&attachment.control, port));
            out.push(VmNic {
                network: spec.network.clone(),
                mac: mac.to_string(),
                allowed: allowed_sources(spec, mac),
                mtu: network.mtu,
                port,
                switch_socket,
                qemu_socket,
                tap,
                owner,
                vlan: None,
            });
        }
        if out.is_empty() {
            self.vms.remove(&id);
        } else {
            self.vms.insert(id, out.clone());
        }
        Ok(out)
    }
}
