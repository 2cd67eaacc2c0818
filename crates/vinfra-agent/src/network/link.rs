//! [`SwitchLink`]: the agent's side of its host's switch: the desired configuration, kept in
//! memory and in `<data_dir>/switch.json`, and the control connection.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;
use vinfra_proto::{HostSwitchConfig, SwitchNetworkKind};
use vinfra_switch_control::SwitchClient;
use vinfra_types::NicSpec;

use super::attachment::SwitchAttachment;
use super::desired::{DesiredSwitch, VmNic};
use super::error::{RefusedRequest, SwitchLinkError};
use super::validate::{validate, InvalidConfig};
use crate::files::write_atomic;

/// The agent's side of its host's switch: the desired configuration and the control
/// connection. [`SwitchLink::reconcile`] makes the switch match.
pub struct SwitchLink {
    pub(super) attachment: SwitchAttachment,
    state_file: PathBuf,
    pub(super) desired: Mutex<DesiredSwitch>,
    /// The control connection, made when first needed and dropped after an error.
    pub(super) client: Mutex<Option<SwitchClient>>,
    /// Whether the last reconcile reached the switch (`None` before the first).
    pub(super) healthy: Mutex<Option<bool>>,
    /// What the switch refused in the last logged reconcile (each refusal is logged once, not
    /// every second: a switch without routing refuses every router request it is sent).
    pub(super) refused: Mutex<Vec<RefusedRequest>>,
    /// The MTU of an uplink the switch opened itself (`vinfra switch --underlay-ip`), as it
    /// last said: what this host's underlay carries, whatever the agent was told.
    pub(super) switch_uplink_mtu: Mutex<Option<u16>>,
}

/// Locks `m`, taking the value of a poisoned lock as it is (every writer leaves it whole).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SwitchLink {
    /// Opens the link: loads the saved configuration from `<data_dir>/switch.json` (empty when
    /// absent or unreadable). Does not connect yet.
    pub fn open(
        attachment: SwitchAttachment,
        data_dir: &Path,
    ) -> Result<SwitchLink, SwitchLinkError> {
        let state_file = data_dir.join("switch.json");
        let config = match std::fs::read(&state_file) {
            Ok(bytes) => match serde_json::from_slice::<HostSwitchConfig>(&bytes) {
                Ok(c) if validate(&c).is_ok() => c,
                _ => {
                    tracing::warn!(
                        "{}: unreadable switch configuration, ignored",
                        state_file.display()
                    );
                    HostSwitchConfig::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostSwitchConfig::default(),
            Err(source) => {
                return Err(SwitchLinkError::Io {
                    path: state_file,
                    source,
                })
            }
        };
        Ok(SwitchLink {
            attachment,
            state_file,
            desired: Mutex::new(DesiredSwitch {
                config,
                ..DesiredSwitch::default()
            }),
            client: Mutex::new(None),
            healthy: Mutex::new(None),
            refused: Mutex::new(Vec::new()),
            switch_uplink_mtu: Mutex::new(None),
        })
    }

    /// How the agent reaches the switch.
    pub fn attachment(&self) -> &SwitchAttachment {
        &self.attachment
    }

    /// This host's underlay IP MTU: the switch's own uplink's when the switch opened one (as
    /// of the last reconcile), else the agent's setting (`--underlay-mtu`), which the uplink
    /// the agent adds gets.
    pub fn underlay_mtu(&self) -> u16 {
        lock(&self.switch_uplink_mtu).unwrap_or(self.attachment.underlay_mtu)
    }

    /// The configuration last received from the console.
    pub fn config(&self) -> HostSwitchConfig {
        lock(&self.desired).config.clone()
    }

    /// The desired configuration now (a copy).
    pub fn desired(&self) -> DesiredSwitch {
        lock(&self.desired).clone()
    }

    /// Validates, keeps and saves a new configuration (it is applied by the next reconcile).
    pub fn set_config(&self, config: HostSwitchConfig) -> Result<(), SwitchLinkError> {
        validate(&config)?;
        if self.attachment.underlay_ip.is_none()
            && config
                .networks
                .iter()
                .any(|n| matches!(n.kind, SwitchNetworkKind::Overlay { .. }))
        {
            return Err(InvalidConfig::NoUnderlay.into());
        }
        let io = |source| SwitchLinkError::Io {
            path: self.state_file.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(&config).map_err(|e| io(e.into()))?;
        let mut desired = lock(&self.desired);
        write_atomic(&self.state_file, &text).map_err(io)?;
        desired.config = config;
        Ok(())
    }

    /// Records the NICs of a VM found on disk (agent restart), keeping its port numbers.
    pub fn restore(&self, id: Uuid, nics: Vec<VmNic>) {
        if !nics.is_empty() {
            lock(&self.desired).vms.insert(id, nics);
        }
    }

    /// Allocates ports for VM `id`'s NICs (reusing the ones it has) and adds them to the desired
    /// configuration; the sockets live in `dir`. Applied by the next reconcile.
    pub fn attach(
        &self,
        id: Uuid,
        dir: &Path,
        nics: &[NicSpec],
    ) -> Result<Vec<VmNic>, SwitchLinkError> {
        self.attach_as(id, dir, nics, None)
    }

    /// [`SwitchLink::attach`] for a QEMU that runs as user `owner`.
    pub fn attach_as(
        &self,
        id: Uuid,
        dir: &Path,
        nics: &[NicSpec],
        owner: Option<u32>,
    ) -> Result<Vec<VmNic>, SwitchLinkError> {
        Ok(lock(&self.desired).attach_as(&self.attachment, id, dir, nics, owner)?)
    }

    /// Removes VM `id`'s ports from the desired configuration (applied by the next reconcile).
    pub fn detach(&self, id: Uuid) {
        lock(&self.desired).vms.remove(&id);
    }
}
