//! The kinds of failure (one problem type and HTTP status each), what object a message names,
//! and the kind of a placement refusal.

use std::fmt;

use vinfra_placement::{FitError, Unfit};

/// What kind of object a message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A VM.
    Vm,
    /// A host.
    Host,
    /// A logical network.
    Network,
    /// A placement rule.
    Rule,
    /// A balancer recommendation.
    Recommendation,
    /// The migration of a VM.
    Migration,
    /// A security group.
    SecurityGroup,
    /// A router.
    Router,
    /// An API token.
    Token,
    /// A task.
    Task,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Object::Vm => "VM",
            Object::Host => "host",
            Object::Network => "network",
            Object::Rule => "rule",
            Object::Recommendation => "recommendation",
            Object::Migration => "migration of VM",
            Object::SecurityGroup => "security group",
            Object::Router => "router",
            Object::Token => "token",
            Object::Task => "task",
        })
    }
}

/// The kind of a failure: one problem type of the REST API each (`/problems/<kind>`), and with
/// it one HTTP status (docs/design.md, "REST API").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range (400).
    InvalidRequest,
    /// The named object does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// No host has room for the VM (409).
    InsufficientCapacity,
    /// The host (or every host) cannot take the VM: disconnected, in maintenance, or without
    /// what the VM's networks need (409).
    HostUnavailable,
    /// Rules contradict each other, or must-rules leave a VM no host (409).
    RuleConflict,
    /// A rule names something that does not exist (422).
    InvalidRule,
    /// A VM's start-after names a VM that does not exist, the VM itself, or closes a circle of
    /// start-afters (422).
    InvalidStartAfter,
    /// The host's agent refused the command (502).
    AgentError,
    /// The connection to the host's agent broke before it answered (502).
    AgentConnectionLost,
    /// The host's agent is not connected (503).
    HostDisconnected,
    /// The host's agent did not answer in time (504).
    AgentTimeout,
    /// A host's fence command failed, timed out or could not be run (502).
    FenceFailed,
    /// Powering the VM on would break the HA admission reserve: some failure of the tolerated
    /// number of hosts would leave an HA VM nowhere to restart (409).
    HaReserve,
    /// The store or the PKI failed (500).
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::InvalidRequest,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::InsufficientCapacity,
        ErrorKind::HostUnavailable,
        ErrorKind::RuleConflict,
        ErrorKind::InvalidRule,
        ErrorKind::InvalidStartAfter,
        ErrorKind::AgentError,
        ErrorKind::AgentConnectionLost,
        ErrorKind::HostDisconnected,
        ErrorKind::AgentTimeout,
        ErrorKind::FenceFailed,
        ErrorKind::HaReserve,
        ErrorKind::Internal,
    ];

    /// The problem type's last path segment (`/problems/<this>`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid-request",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InsufficientCapacity => "insufficient-capacity",
            ErrorKind::HostUnavailable => "host-unavailable",
            ErrorKind::RuleConflict => "rule-conflict",
            ErrorKind::InvalidRule => "invalid-rule",
            ErrorKind::InvalidStartAfter => "invalid-start-after",
            ErrorKind::AgentError => "agent-error",
            ErrorKind::AgentConnectionLost => "agent-connection-lost",
            ErrorKind::HostDisconnected => "host-disconnected",
            ErrorKind::AgentTimeout => "agent-timeout",
            ErrorKind::FenceFailed => "fence-failed",
            ErrorKind::HaReserve => "ha-reserve",
            ErrorKind::Internal => "internal",
        }
    }

    /// Its HTTP status (docs/design.md, "REST API").
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict
            | ErrorKind::InsufficientCapacity
            | ErrorKind::HostUnavailable
            | ErrorKind::RuleConflict
            | ErrorKind::HaReserve => 409,
            ErrorKind::InvalidRule | ErrorKind::InvalidStartAfter => 422,
            ErrorKind::AgentError | ErrorKind::AgentConnectionLost | ErrorKind::FenceFailed => 502,
            ErrorKind::HostDisconnected => 503,
            ErrorKind::AgentTimeout => 504,
            ErrorKind::Internal => 500,
        }
    }

    /// Its status's reason phrase (a problem's `title`).
    pub fn title(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            404 => "Not Found",
            409 => "Conflict",
            422 => "Unprocessable Entity",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Internal Server Error",
        }
    }
}

/// The kind of a placement refusal, by its reason: a host that is not registered is
/// not-found, a request for nothing invalid-request, a VM placed already or not running a
/// conflict. A host named that cannot take the VM: by why (capacity: insufficient-capacity; a
/// must-rule: rule-conflict; anything else, such as no trunk, too small an underlay MTU,
/// disconnected, maintenance: host-unavailable). No host at all: rule-conflict when a
/// must-rule keeps the VM off a host, else insufficient-capacity when a host short of
/// capacity would otherwise take it, else host-unavailable.
pub fn fit_kind(e: &FitError) -> ErrorKind {
    let by_reason = |u: &Unfit| match u {
        Unfit::Capacity(_) => ErrorKind::InsufficientCapacity,
        Unfit::MustRule { .. } => ErrorKind::RuleConflict,
        _ => ErrorKind::HostUnavailable,
    };
    match e {
        FitError::UnknownHost { .. } => ErrorKind::NotFound,
        FitError::EmptyRequest { .. } => ErrorKind::InvalidRequest,
        FitError::AlreadyPlaced { .. } | FitError::NotRunning { .. } | FitError::Model(_) => {
            ErrorKind::Conflict
        }
        FitError::HostUnfit { unfit, .. } => by_reason(unfit),
        FitError::NoHost(n) => {
            let has = |f: fn(&Unfit) -> bool| n.groups.iter().any(|g| f(&g.reason));
            if has(|u| matches!(u, Unfit::MustRule { .. })) {
                ErrorKind::RuleConflict
            } else if has(|u| matches!(u, Unfit::Capacity(_))) {
                ErrorKind::InsufficientCapacity
            } else {
                ErrorKind::HostUnavailable
            }
        }
    }
}
