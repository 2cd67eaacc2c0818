//! `vinfra sim`: runs the balancer on a scenario file, with its host failures handled by the HA
//! library, and writes metrics, moves, failovers and a plot (see `docs/simulator.md`). No
//! console needed.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use vinfra_sim::{BalancerKind, Report, Scenario, SimError};

use crate::output::{out, print_json, Output};

/// Which balancer(s) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BalancerChoice {
    /// vinfra's balancer.
    Vinfra,
    /// The plain greedy balancer.
    Greedy,
    /// Both, side by side.
    Both,
}

/// `vinfra sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Balancer to run.
    #[arg(long, value_enum, default_value_t = BalancerChoice::Both)]
    pub balancer: BalancerChoice,
    /// Directory for metrics.csv, metrics.json, moves.json, failover.json and plot.svg.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Seed (overrides the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of steps (overrides the scenario's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(vinfra_sim::scenario::MAX_STEPS)))]
    pub steps: Option<u32>,
}

/// Runs the simulation, writes the files and prints the summary.
pub fn run(args: &SimArgs, output: Output) -> Result<(), SimError> {
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(seed) = args.seed {
        scenario = scenario.with_seed(seed);
    }
    if let Some(steps) = args.steps {
        scenario = scenario.with_steps(steps);
    }
    let kinds: &[BalancerKind] = match args.balancer {
        BalancerChoice::Vinfra => &[BalancerKind::Vinfra],
        BalancerChoice::Greedy => &[BalancerKind::Greedy],
        BalancerChoice::Both => &[BalancerKind::Vinfra, BalancerKind::Greedy],
    };
    let report = Report::run(&scenario, kinds)?;
    report.write(&args.out)?;
    match output {
        Output::Json => {
            let summaries: Vec<_> = report
                .runs
                .iter()
                .map(|r| serde_json::json!({ "balancer": r.balancer, "summary": r.summary }))
                .collect();
            // A JSON value of strings and numbers always prints.
            let _ = print_json(&summaries);
        }
        Output::Table => {
            out!(
                "{}: {} steps of {} min, seed {}, level {}",
                report.scenario,
                report.steps,
                report.step_minutes,
                report.seed,
                report.level
            );
            out!("{}", report.summary_table().trim_end());
            out!(
                "wrote {}/{{metrics.csv,metrics.json,moves.json,failover.json,plot.svg}}",
                args.out.display()
            );
        }
    }
    Ok(())
}
