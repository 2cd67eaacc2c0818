//! The cluster simulator behind `vinfra sim`: runs the balancer of `vinfra-placement` (and its
//! greedy peer, for comparison) step after step on a scenario and records what happens.
//!
//! - [`scenario`]: the scenario file (TOML) and its validation;
//! - [`trace`]: demand traces (constant, steps, sine, random walk, with seeded jitter);
//! - [`engine`]: the simulation loop and its per-step [`StepMetrics`];
//! - [`report`]: `metrics.csv`, `metrics.json`, `moves.json` and the summary table;
//! - [`plot`] draws `plot.svg`.
//!
//! Same scenario and seed, same bytes out: random numbers come from seeded ChaCha8 streams and
//! nothing is ordered by hash.
#![deny(unsafe_code)]

pub mod engine;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod trace;

pub use engine::{simulate, BalancerKind, MoveRecord, Run, StepMetrics, Summary};
pub use report::Report;
pub use scenario::Scenario;

use vinfra_placement::{BalanceError, ModelError, RulePlacementError};

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
        source: Box<RulePlacementError>,
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
