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
pub mod error;
pub mod ha;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod trace;

pub use engine::{simulate, BalancerKind, BalancerRun, MoveRecord, StepMetrics, Summary};
pub use error::SimError;
pub use report::Report;
pub use scenario::Scenario;
