//! The cluster's HA settings the host's guard acts on ([`GuardSettings`]), as the console last sent
//! them (`SetHa`, after every Hello), kept in `<data_dir>/ha.json` so that an agent restarted
//! while the console is unreachable passes them to its guard still.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vinfra_guard::IsolationResponse;
use vinfra_ha::{HaTimings, TimingError};

use crate::files::write_atomic;

/// The file, in the agent's data directory.
pub const HA_FILE: &str = "ha.json";

/// What the guard needs of the cluster's HA settings; every pet carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GuardSettings {
    /// What the guard does to the host's HA VMs when the host is isolated (the default:
    /// nothing, keep running).
    pub isolation_response: IsolationResponse,
    /// The cluster's HA timings ([`HaTimings::default`] until the console sends others).
    pub timings: HaTimings,
}

/// Why new settings were not taken.
#[derive(Debug, thiserror::Error)]
pub enum GuardSettingsError {
    /// The timings fail [`HaTimings::validate`] (the guard would refuse them).
    #[error("unsafe HA timings")]
    Timings(#[source] TimingError),
    /// The settings could not be written to the data directory.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The settings in force, in memory and in `<data_dir>/ha.json`.
#[derive(Debug)]
pub struct GuardSettingsStore {
    path: PathBuf,
    current: Mutex<GuardSettings>,
}

impl GuardSettingsStore {
    /// The settings kept in `data_dir`; the defaults when there are none (never set, or a
    /// file that cannot be read, which is logged).
    pub fn open(data_dir: &Path) -> GuardSettingsStore {
        let path = data_dir.join(HA_FILE);
        let current = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<GuardSettings>(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(
                        "{}: unreadable HA settings ({e}); the defaults until the console sends them",
                        path.display()
                    );
                    GuardSettings::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => GuardSettings::default(),
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; the default HA settings until the console sends them",
                    path.display()
                );
                GuardSettings::default()
            }
        };
        GuardSettingsStore {
            path,
            current: Mutex::new(current),
        }
    }

    /// The settings in force.
    pub fn get(&self) -> GuardSettings {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `settings`: checked, written (atomically, fsynced), then in force. Unchanged
    /// settings are not written again.
    pub fn set(&self, settings: GuardSettings) -> Result<(), GuardSettingsError> {
        settings
            .timings
            .validate()
            .map_err(GuardSettingsError::Timings)?;
        if self.get() == settings && self.path.exists() {
            return Ok(());
        }
        let text = serde_json::to_vec_pretty(&settings).expect("HA settings encode as JSON");
        write_atomic(&self.path, &text).map_err(|source| GuardSettingsError::Write {
            path: self.path.clone(),
            source,
        })?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = settings;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn settings_survive_a_restart_and_unsafe_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = GuardSettingsStore::open(dir.path());
        assert_eq!(store.get(), GuardSettings::default());
        assert_eq!(
            store.get().isolation_response,
            IsolationResponse::KeepRunning
        );
        let timings = HaTimings {
            agent_grace: Duration::from_secs(30),
            ..HaTimings::default()
        };
        let set = GuardSettings {
            isolation_response: IsolationResponse::PowerOff,
            timings,
        };
        store.set(set).unwrap();
        assert_eq!(store.get(), set);
        // A restarted agent reads them back.
        assert_eq!(GuardSettingsStore::open(dir.path()).get(), set);

        let mut unsafe_timings = timings;
        unsafe_timings.self_fence_after = Duration::from_secs(10);
        let err = store
            .set(GuardSettings {
                isolation_response: IsolationResponse::Shutdown,
                timings: unsafe_timings,
            })
            .unwrap_err();
        assert!(matches!(err, GuardSettingsError::Timings(_)), "{err:?}");
        assert_eq!(store.get(), set, "refused settings change nothing");
        assert_eq!(GuardSettingsStore::open(dir.path()).get(), set);

        std::fs::write(dir.path().join(HA_FILE), b"{not json").unwrap();
        assert_eq!(
            GuardSettingsStore::open(dir.path()).get(),
            GuardSettings::default()
        );
    }
}
