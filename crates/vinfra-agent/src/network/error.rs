//! [`SwitchLinkError`]: why the agent could not keep or apply its switch's configuration.

use std::path::PathBuf;

use vinfra_switch_control::{client::json, ClientError, Request};

use super::ports::NicError;
use super::validate::InvalidConfig;

/// A request the switch refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRequest {
    /// The request.
    pub request: Request,
    /// The switch's reason.
    pub message: String,
}

impl std::fmt::Display for RefusedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", json(&self.request), self.message)
    }
}

/// Errors of the switch link.
#[derive(Debug, thiserror::Error)]
pub enum SwitchLinkError {
    /// A VM has NICs, or a configuration has networks, but the agent has no switch.
    #[error("this host has no virtual switch (the agent runs without --switch-control)")]
    NoSwitch,
    /// The configuration from the console is inconsistent.
    #[error("invalid switch configuration")]
    Config(#[from] InvalidConfig),
    /// A NIC cannot be attached.
    #[error(transparent)]
    Nic(#[from] NicError),
    /// The switch could not be reached or did not answer.
    #[error("switch at {path}")]
    Switch {
        /// The control socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The switch refused part of the configuration.
    #[error("the switch refused: {}", join(.0))]
    Refused(Vec<RefusedRequest>),
    /// The saved configuration could not be read or written.
    #[error("switch configuration file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn join(refused: &[RefusedRequest]) -> String {
    refused
        .iter()
        .map(RefusedRequest::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
