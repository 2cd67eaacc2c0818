//! Why a simulation could not run or its results could not be written.

use vinfra_placement::{BalanceError, FitError, ModelError};

/// Why a simulation could not run or its results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The scenario file is not valid TOML or does not have the expected shape.
    #[error("{path}: line {line}, column {column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A field of the scenario has a wrong value.
    #[error("{path}: {field} {why}")]
    Invalid {
        path: String,
        field: String,
        why: String,
    },
    /// The scenario's cluster is refused by the library (contradictory rules, for one).
    #[error("{path}: {source}")]
    Model {
        path: String,
        #[source]
        source: Box<ModelError>,
    },
    /// A VM could not be placed when it arrived.
    #[error("step {step}: VM '{vm}' cannot be placed: {source}")]
    Place {
        step: u32,
        vm: String,
        #[source]
        source: Box<FitError>,
    },
    /// A balancer refused to plan.
    #[error("step {step}: the {balancer} balancer failed: {source}")]
    Balance {
        balancer: &'static str,
        step: u32,
        #[source]
        source: Box<BalanceError>,
    },
    /// An output file could not be written.
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl SimError {
    /// Whether the scenario is at fault (rather than the machine).
    pub fn is_input(&self) -> bool {
        !matches!(self, SimError::Read { .. } | SimError::Write { .. })
    }
}
