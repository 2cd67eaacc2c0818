//! The outputs of a simulation: `metrics.csv`, `metrics.json`, `moves.json`, `failover.json`,
//! `plot.svg`, and the summary table printed by `vinfra sim`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use vinfra_placement::LevelParams;

use crate::engine::{simulate, BalancerKind, BalancerRun, MoveRecord};
use crate::error::SimError;
use crate::ha::{FailoverRecord, RefusedRecord, RetryRecord, Verdict};
use crate::plot::{self, mib};
use crate::scenario::Scenario;

/// Every run of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Scenario description.
    pub description: String,
    /// Seed of its random streams.
    pub seed: u64,
    /// Number of steps.
    pub steps: u32,
    /// Minutes per step.
    pub step_minutes: u32,
    /// Balancer level.
    pub level: u8,
    /// The level's target imbalance (`null` at level 1, which only fixes hard violations).
    pub target_imbalance: Option<f64>,
    /// Hysteresis window of the vinfra balancer, minutes.
    pub hysteresis_minutes: u32,
    /// Host failures admission control keeps room for.
    pub tolerate_host_failures: u32,
    /// One run per balancer.
    pub runs: Vec<BalancerRun>,
}

/// One line of `moves.json`.
#[derive(Serialize)]
struct MoveLine<'a> {
    balancer: &'static str,
    #[serde(flatten)]
    mv: &'a MoveRecord,
}

impl Report {
    /// Runs each balancer of `kinds` (in order, duplicates skipped) over `scenario`.
    pub fn run(scenario: &Scenario, kinds: &[BalancerKind]) -> Result<Report, SimError> {
        let mut runs: Vec<BalancerRun> = Vec::new();
        for &k in kinds {
            if runs.iter().all(|r| r.balancer != k) {
                runs.push(simulate(scenario, k)?);
            }
        }
        Ok(Report::from_runs(scenario, runs))
    }

    /// The report of `runs` (from [`simulate`]) of `scenario`.
    pub fn from_runs(scenario: &Scenario, runs: Vec<BalancerRun>) -> Report {
        let target = LevelParams::for_level(scenario.balancer.level)
            .ok()
            .map(|p| p.target_imbalance)
            .filter(|t| t.is_finite());
        Report {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed: scenario.seed,
            steps: scenario.steps,
            step_minutes: scenario.step_minutes,
            level: scenario.balancer.level,
            target_imbalance: target,
            hysteresis_minutes: scenario.balancer.hysteresis_minutes,
            tolerate_host_failures: scenario.ha.tolerate_host_failures,
            runs,
        }
    }

    /// The run of `kind`, if it ran.
    pub fn run_of(&self, kind: BalancerKind) -> Option<&BalancerRun> {
        self.runs.iter().find(|r| r.balancer == kind)
    }

    /// `metrics.json`: the settings, and per balancer its summary, the admission reserve's
    /// verdicts and refusals, and the per-step metrics.
    pub fn metrics_json(&self) -> String {
        #[derive(Serialize)]
        struct AdmissionLine<'a> {
            verdicts: &'a [Verdict],
            refused: &'a [RefusedRecord],
        }
        #[derive(Serialize)]
        struct RunLine<'a> {
            balancer: BalancerKind,
            summary: &'a crate::engine::Summary,
            admission: AdmissionLine<'a>,
            steps: &'a [crate::engine::StepMetrics],
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            scenario: &'a str,
            description: &'a str,
            seed: u64,
            steps: u32,
            step_minutes: u32,
            level: u8,
            target_imbalance: Option<f64>,
            hysteresis_minutes: u32,
            tolerate_host_failures: u32,
            runs: Vec<RunLine<'a>>,
        }
        let doc = Doc {
            scenario: &self.scenario,
            description: &self.description,
            seed: self.seed,
            steps: self.steps,
            step_minutes: self.step_minutes,
            level: self.level,
            target_imbalance: self.target_imbalance,
            hysteresis_minutes: self.hysteresis_minutes,
            tolerate_host_failures: self.tolerate_host_failures,
            runs: self
                .runs
                .iter()
                .map(|r| RunLine {
                    balancer: r.balancer,
                    summary: &r.summary,
                    admission: AdmissionLine {
                        verdicts: &r.ha.verdicts,
                        refused: &r.ha.refused,
                    },
                    steps: &r.steps,
                })
                .collect(),
        };
        json(&doc)
    }

    /// `moves.json`: every move of every balancer, in order, with its explanation.
    pub fn moves_json(&self) -> String {
        let lines: Vec<MoveLine> = self
            .runs
            .iter()
            .flat_map(|r| {
                r.moves.iter().map(|mv| MoveLine {
                    balancer: r.balancer.name(),
                    mv,
                })
            })
            .collect();
        json(&lines)
    }

    /// `failover.json`: per balancer, every host failure (its HA VMs' new hosts, those left
    /// unplaced with the reason, the VMs stopped, the planning time) and the later restarts of
    /// VMs left unplaced.
    pub fn failover_json(&self) -> String {
        #[derive(Serialize)]
        struct RunLine<'a> {
            balancer: BalancerKind,
            failures: &'a [FailoverRecord],
            retries: &'a [RetryRecord],
        }
        let lines: Vec<RunLine> = self
            .runs
            .iter()
            .map(|r| RunLine {
                balancer: r.balancer,
                failures: &r.ha.failovers,
                retries: &r.ha.retries,
            })
            .collect();
        json(&lines)
    }

    /// `metrics.csv`: one row per balancer and step.
    pub fn metrics_csv(&self) -> String {
        let mut out = String::from(
            "balancer,step,minute,vms,imbalance,max_host_load,migrations,migrations_total,\
             must_violations,should_violations,over_capacity_hosts,cross_host_traffic,\
             vms_on_maintenance,hosts_failed,host_failures,ha_restarted,ha_down,vms_stopped,\
             admission_refused\n",
        );
        for r in &self.runs {
            for s in &r.steps {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{:.6},{:.6},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.balancer.name(),
                    s.step,
                    s.minute,
                    s.vms,
                    s.imbalance,
                    s.max_host_load,
                    s.migrations,
                    s.migrations_total,
                    s.must_violations,
                    s.should_violations,
                    s.over_capacity_hosts,
                    s.cross_host_traffic,
                    s.vms_on_maintenance,
                    s.hosts_failed,
                    s.host_failures,
                    s.ha_restarted,
                    s.ha_down,
                    s.vms_stopped,
                    s.admission_refused
                );
            }
        }
        out
    }

    /// `plot.svg`.
    pub fn plot_svg(&self) -> String {
        plot::svg(
            &plot::PlotHeader {
                scenario: &self.scenario,
                seed: self.seed,
                steps: self.steps,
                step_minutes: self.step_minutes,
                level: self.level,
                target_imbalance: self.target_imbalance,
                failures: &self.failure_steps(),
            },
            &self.runs,
        )
    }

    /// Steps at which some host failed, in order.
    pub fn failure_steps(&self) -> Vec<u32> {
        let steps: BTreeSet<u32> = self
            .runs
            .iter()
            .flat_map(|r| r.ha.failovers.iter().map(|f| f.step))
            .collect();
        steps.into_iter().collect()
    }

    /// Writes the five files into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<(), SimError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SimError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text) in [
            ("metrics.csv", self.metrics_csv()),
            ("metrics.json", self.metrics_json()),
            ("moves.json", self.moves_json()),
            ("failover.json", self.failover_json()),
            ("plot.svg", self.plot_svg()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        Ok(())
    }

    /// True when HA had something to do: a host failed, an arrival was refused, or the
    /// reserve was checked.
    pub fn has_ha(&self) -> bool {
        self.runs.iter().any(|r| {
            let s = &r.summary;
            s.host_failures > 0 || s.admission_refused > 0 || s.reserve_holds_end.is_some()
        })
    }

    /// The summary table: per balancer, migrations, imbalance, rule violations, traffic, and
    /// when HA had something to do ([`Report::has_ha`]) host failures, HA VMs restarted and
    /// unplaced (at the failures / still at the end), VMs stopped, arrivals refused, the
    /// reserve's verdict at the end.
    pub fn summary_table(&self) -> String {
        let header = [
            "balancer",
            "migrations",
            "imbalance start→end",
            "must-rule VMs max/end",
            "should-rule VMs start→end",
            "hosts over cap. max",
            "VMs on maint. end",
            "cross-host MiB/s start→end",
            "host failures",
            "HA restarted",
            "HA unplaced/end",
            "stopped",
            "refused",
            "reserve end",
        ];
        let columns = if self.has_ha() { header.len() } else { 8 };
        let header = &header[..columns];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
        for r in &self.runs {
            let s = &r.summary;
            rows.push(vec![
                r.balancer.name().to_owned(),
                s.migrations.to_string(),
                format!("{:.4}→{:.4}", s.initial_imbalance, s.final_imbalance),
                format!("{}/{}", s.max_must_violations, s.final_must_violations),
                format!(
                    "{}→{}",
                    s.initial_should_violations, s.final_should_violations
                ),
                s.max_over_capacity_hosts.to_string(),
                s.final_vms_on_maintenance.to_string(),
                format!(
                    "{:.1}→{:.1}",
                    mib(s.initial_cross_host_traffic),
                    mib(s.final_cross_host_traffic)
                ),
                s.host_failures.to_string(),
                s.ha_restarted.to_string(),
                format!("{}/{}", s.ha_unplaced, s.ha_down_end),
                s.vms_stopped.to_string(),
                s.admission_refused.to_string(),
                match s.reserve_holds_end {
                    Some(true) => "holds",
                    Some(false) => "broken",
                    None => "-",
                }
                .to_owned(),
            ]);
            if let Some(row) = rows.last_mut() {
                row.truncate(columns);
            }
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &w))| {
                    let pad = w - cell.chars().count();
                    if c == 0 {
                        format!("{cell}{}", " ".repeat(pad))
                    } else {
                        format!("{}{cell}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            if i == 0 {
                let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        out
    }
}

fn json<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
