//! `vinfra drs …`: the balancer's status, settings, passes and recommendations.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use vinfra_types::balancing::{BalancingMode, DrsStatus, Recommendation};
use vinfra_types::filter::RecommendationFilter;

use crate::config::ConnectionOverrides;
use crate::follow;
use crate::output::{pairs, render, table, timestamp, Output};
use crate::parse;
use crate::rest::{name_arg, show, RestCommandError};

/// Balancing mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// No balancing.
    Off,
    /// Recommendations only.
    Manual,
    /// Moves by live migration.
    Automatic,
}

impl From<ModeArg> for BalancingMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Off => BalancingMode::Off,
            ModeArg::Manual => BalancingMode::Manual,
            ModeArg::Automatic => BalancingMode::Automatic,
        }
    }
}

/// `vinfra drs …`.
#[derive(Debug, Subcommand)]
pub enum DrsCommand {
    /// Mode, level, interval and the last pass.
    Show,
    /// Change the balancing settings.
    Set(DrsSetArgs),
    /// Run a balancing pass now.
    Run,
    /// The recommendations waiting (manual mode): all, or the moves of a VM, from or to a
    /// host.
    Recommendations {
        /// Only the moves of this VM (moved, or moving with it).
        #[arg(long, value_parser = name_arg)]
        vm: Option<String>,
        /// Only the moves from or to this host.
        #[arg(long, value_parser = name_arg)]
        host: Option<String>,
    },
    /// Carry out the migration a recommendation proposes (shows progress until it ends).
    Apply {
        /// Recommendation id (see `vinfra drs recommendations`).
        #[arg(value_parser = parse_id)]
        id: u64,
        /// Print the task's number and return once the migration has started.
        #[arg(long)]
        no_wait: bool,
    },
}

/// `vinfra drs set`.
#[derive(Debug, Args)]
pub struct DrsSetArgs {
    /// off, manual (recommendations only) or automatic (moves by live migration).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Migration threshold, 1 (only hard violations) to 5 (aggressive).
    #[arg(long, value_parser = parse_level)]
    pub level: Option<u8>,
    /// Time between passes: `60s`, `5m` (5 s to 1 h).
    #[arg(long, value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Most migrations at once to or from one host (1 to 64).
    #[arg(long, value_parser = |v: &str| parse::bounded(v, "max-moves-per-host", 1, 64))]
    pub max_moves_per_host: Option<u64>,
    /// Most migrations at once in the cluster (1 to 1000).
    #[arg(long, value_parser = |v: &str| parse::bounded(v, "max-moves-total", 1, 1000))]
    pub max_moves_total: Option<u64>,
    /// Minutes a moved VM stays put unless a hard violation requires a move (0 to 1440).
    #[arg(long, value_parser = |v: &str| parse::bounded(v, "hysteresis", 0, 1440))]
    pub hysteresis: Option<u64>,
}

fn parse_id(v: &str) -> Result<u64, parse::ParseError> {
    parse::bounded(v, "recommendation id", 1, u64::MAX)
}

fn parse_level(v: &str) -> Result<u8, parse::ParseError> {
    parse::bounded(v, "level", 1, 5).map(|n| n as u8)
}

fn parse_interval(v: &str) -> Result<Duration, parse::ParseError> {
    let d = parse::stop_timeout(v)?;
    if d < Duration::from_secs(5) {
        return Err(parse::ParseError::Range {
            what: "interval",
            min: "5s".into(),
            max: "1h".into(),
            value: v.trim().to_string(),
        });
    }
    Ok(d)
}

fn status_text(s: &DrsStatus) -> String {
    let mut rows = vec![
        ("Mode", s.mode.as_str().to_string()),
        ("Level", s.level.to_string()),
        ("Interval", format!("{} s", s.interval_s)),
        (
            "Last run",
            s.last_run_at.map_or("never".to_string(), timestamp),
        ),
        ("Recommendations", s.recommendations.to_string()),
    ];
    if let Some(p) = &s.last_plan {
        rows.push((
            "Imbalance",
            format!("{:.4} -> {:.4}", p.imbalance_before, p.imbalance_after),
        ));
        rows.push((
            "Moves",
            format!("{} planned, {} started", p.moves, p.started),
        ));
        rows.push((
            "Cross-host traffic",
            format!(
                "{} -> {} bytes/s",
                p.cross_host_traffic_before, p.cross_host_traffic_after
            ),
        ));
        rows.push((
            "Hard violations",
            format!(
                "{} -> {}",
                p.hard_violations_before, p.hard_violations_after
            ),
        ));
    }
    if let Some(e) = &s.last_error {
        rows.push(("Last error", e.clone()));
    }
    pairs(&rows)
}

fn recommendations_text(recs: &[Recommendation]) -> String {
    if recs.is_empty() {
        return "no recommendations".into();
    }
    let mut t = table(&["ID", "VM", "FROM", "TO", "GAIN", "REASON"]);
    for r in recs {
        let mut reason = r.reason.clone();
        if !r.with.is_empty() {
            reason.push_str(&format!(" (with {})", r.with.join(", ")));
        }
        t.add_row(vec![
            r.id.to_string(),
            r.vm.clone(),
            r.from.clone(),
            r.to.clone(),
            format!("{:.4}", r.expected_gain.imbalance),
            reason,
        ]);
    }
    render(t)
}

/// `vinfra drs …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &DrsCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        DrsCommand::Show => show(out, &conn.client()?.drs()?, status_text),
        DrsCommand::Run => show(out, &conn.client()?.run_drs()?, status_text),
        DrsCommand::Recommendations { vm, host } => {
            let filter = RecommendationFilter {
                vm: vm.clone(),
                host: host.clone(),
            };
            show(out, &conn.client()?.recommendations_where(&filter)?, |r| {
                recommendations_text(r)
            })
        }
        DrsCommand::Apply { id, no_wait } => {
            let api = conn.client()?;
            if *no_wait {
                return follow::accepted(out, &api.apply_recommendation_task(*id)?);
            }
            let started = api.apply_recommendation(*id)?;
            let vm = started.vm.clone();
            let last = follow::migration(&api, &vm, started)?;
            follow::migration_end(out, last)
        }
        DrsCommand::Set(a) => {
            if a.mode.is_none()
                && a.level.is_none()
                && a.interval.is_none()
                && a.max_moves_per_host.is_none()
                && a.max_moves_total.is_none()
                && a.hysteresis.is_none()
            {
                return Err(RestCommandError::NothingToChange(
                    "--mode, --level, --interval, --max-moves-per-host, --max-moves-total \
                     and/or --hysteresis",
                ));
            }
            let api = conn.client()?;
            let mut s = api.settings()?;
            let b = &mut s.balancing;
            if let Some(m) = a.mode {
                b.mode = m.into();
            }
            if let Some(l) = a.level {
                b.level = l;
            }
            if let Some(i) = a.interval {
                b.interval_s = i.as_secs();
            }
            if let Some(n) = a.max_moves_per_host {
                b.max_moves_per_host = u32::try_from(n).unwrap_or(u32::MAX);
            }
            if let Some(n) = a.max_moves_total {
                b.max_moves_total = u32::try_from(n).unwrap_or(u32::MAX);
            }
            if let Some(n) = a.hysteresis {
                b.hysteresis_minutes = u32::try_from(n).unwrap_or(u32::MAX);
            }
            api.put_settings(&s)?;
            show(out, &api.drs()?, status_text)
        }
    }
}
