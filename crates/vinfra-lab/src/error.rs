//! Why a lab operation failed.

use std::path::{Path, PathBuf};

use vinfra_client::RestError;

use crate::config::{MAX_HOSTS, MAX_NAME};
use crate::upstream::UpstreamError;
use crate::{guest, net, process};

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab name is not usable in namespace names.
    #[error("bad lab name '{0}': use 1 to {MAX_NAME} lower-case letters, digits or '-'")]
    Name(String),
    /// The host count is out of range.
    #[error("a lab has 1 to {MAX_HOSTS} hosts, not {0}")]
    Hosts(usize),
    /// The lab needs root (namespaces, bridges, QEMU with KVM).
    #[error("the lab must be run as root (it creates network namespaces)")]
    NotRoot,
    /// The vinfra binary to launch does not exist.
    #[error("vinfra binary not found at {0}")]
    Binary(PathBuf),
    /// No lab state at the expected place.
    #[error("no lab at {0} (no lab.json): is it up?")]
    NotFound(PathBuf),
    /// A file or directory operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was done (`cannot create`, `cannot read`, …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The lab state file is not valid (or could not be written as JSON).
    #[error("bad lab state in {path}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// No free TCP port for the API.
    #[error("cannot pick a free port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    /// The guest image could not be built or installed.
    #[error(transparent)]
    Guest(#[from] guest::GuestError),
    /// The lab network could not be set up or removed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// A lab process could not be started or stopped.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// A REST call to the console failed.
    #[error(transparent)]
    Api(#[from] RestError),
    /// A network the console answered with has a subnet that is not one.
    #[error("network {network} has no usable subnet")]
    Subnet {
        /// The network's name.
        network: String,
        /// Why its subnet does not parse.
        #[source]
        source: vinfra_types::network::NetworkError,
    },
    /// The top-of-rack switch could not be reached or refused its configuration.
    #[error("top-of-rack switch at {path}")]
    Tor {
        /// Its control socket.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: vinfra_switch_control::ClientError,
    },
    /// A host's switch could not be reached.
    #[error("switch of {host} at {path}")]
    Switch {
        /// The host.
        host: String,
        /// Its control socket.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: vinfra_switch_control::ClientError,
    },
    /// A VLAN endpoint was asked with a VLAN ID outside 1 to 4094.
    #[error("bad VLAN endpoint: VLAN ID {0} is not between 1 and 4094")]
    EndpointVlan(u16),
    /// A VLAN endpoint was asked with an address that is not `A.B.C.D/P` (P from 1 to 30).
    #[error("bad VLAN endpoint: '{0}' is not an IPv4 address/prefix")]
    EndpointAddress(String),
    /// A VLAN already has its endpoint.
    #[error("bad VLAN endpoint: VLAN {0} already has an endpoint")]
    EndpointTaken(u16),
    /// The lab was built without a physical network (an older `lab.json`).
    #[error("this lab has no physical network (it was built by an older version): rebuild it")]
    NoPhys,
    /// The upstream router or its internet could not be set up or used.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A lab process exited while the lab was waiting for it.
    #[error("the {what} exited; last log lines ({log}): {tail}")]
    Exited {
        /// Which process (`console`, `agent of h1`, `switch of h2`, …).
        what: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log, joined with ` | `.
        tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long, in seconds.
        secs: u64,
    },
    /// No host of that name in the lab.
    #[error("no host '{0}' in this lab")]
    NoHost(String),
    /// A host agent's `GET /metrics` failed.
    #[error("GET {url} in the namespace of {host}: {detail}")]
    Metrics {
        /// The host.
        host: String,
        /// The URL asked.
        url: String,
        /// What went wrong (curl's exit and message).
        detail: String,
    },
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.to_path_buf();
    move |source| LabError::Io { what, path, source }
}
