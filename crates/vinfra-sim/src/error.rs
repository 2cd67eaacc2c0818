//! Why a simulation could not run or its results could not be written.

use vinfra_ha::{AdmissionError, RestartError};
use vinfra_placement::{BalanceError, FitError, ModelError};

/// Why a simulation could not run or its results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}")]
    Read {
        /// The file.
        path: String,
        #[source]
        /// Why.
        source: std::io::Error,
    },
    /// The scenario file is not valid TOML or does not have the expected shape.
    #[error("{path}: line {line}, column {column}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Line of the error, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A field of the scenario has a wrong value.
    #[error("{path}: {field} {why}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, as a path (`vms[0].vcpus`).
        field: String,
        /// What is wrong with its value.
        why: String,
    },
    /// The scenario's cluster is refused by the library (contradictory rules, for one).
    #[error("{path}: the cluster is refused")]
    Model {
        /// The file.
        path: String,
        #[source]
        /// The library's refusal.
        source: Box<ModelError>,
    },
    /// A VM could not be placed when it arrived.
    #[error("step {step}: VM '{vm}' cannot be placed")]
    Place {
        /// The step.
        step: u32,
        /// The VM.
        vm: String,
        #[source]
        /// The placer's refusal.
        source: Box<FitError>,
    },
    /// The cluster of a step could not be indexed for placement.
    #[error("step {step}: the cluster cannot be indexed for placement")]
    Cluster {
        /// The step.
        step: u32,
        #[source]
        /// The library's refusal.
        source: Box<ModelError>,
    },
    /// The HA restart plan of a host failure could not be made.
    #[error("step {step}: the HA restart plan for host {host} failed")]
    Restart {
        /// The step.
        step: u32,
        /// The failed host (or `retry` for VMs planned again).
        host: String,
        #[source]
        /// The library's refusal.
        source: Box<RestartError>,
    },
    /// Admission control could not answer (not a refusal: those are counted).
    #[error("step {step}: admission control failed")]
    Admission {
        /// The step.
        step: u32,
        #[source]
        /// The library's error.
        source: Box<AdmissionError>,
    },
    /// A balancer refused to plan.
    #[error("step {step}: the {balancer} balancer failed")]
    Balance {
        /// Which balancer.
        balancer: &'static str,
        /// The step.
        step: u32,
        #[source]
        /// The balancer's refusal.
        source: Box<BalanceError>,
    },
    /// An output file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: String,
        #[source]
        /// Why.
        source: std::io::Error,
    },
}

impl SimError {
    /// Whether the scenario is at fault (rather than the machine).
    pub fn is_input(&self) -> bool {
        !matches!(self, SimError::Read { .. } | SimError::Write { .. })
    }
}
