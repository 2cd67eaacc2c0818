//! `vinfra drs …` (the balancer: status, settings, passes, recommendations) and `vinfra rule …`
//! (placement rules).

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use vinfra_lab::ApiClient;
use vinfra_types::api::ClusterSettings;
use vinfra_types::balancing::{
    BalancingMode, DrsStatus, PlacementRule, Recommendation, RuleKind, RuleStrength,
};
use vinfra_types::MigrationProgress;

use crate::cli::Output;
use crate::commands::{call, decode, CommandError};
use crate::output::{pairs, render, table, timestamp};
use crate::parse;

/// Balancing mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Off,
    Manual,
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
    /// The recommendations waiting (manual mode).
    Recommendations,
    /// Start the migration a recommendation proposes.
    Apply {
        /// Recommendation id (see `vinfra drs recommendations`).
        #[arg(value_parser = parse_id)]
        id: u64,
    },
}

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

/// `vinfra rule …`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Every placement rule.
    List,
    /// One rule.
    Show { name: String },
    /// Create a rule; contradictory rules are refused.
    Create(RuleCreateArgs),
    /// Delete a rule.
    Delete { name: String },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("strength").required(true).args(["must", "should"]))]
#[command(group = clap::ArgGroup::new("kind").required(true)
    .args(["affinity", "anti_affinity", "run_on", "not_on"]))]
pub struct RuleCreateArgs {
    /// Rule name.
    pub name: String,
    /// A hard rule: never broken.
    #[arg(long)]
    pub must: bool,
    /// A soft rule: preferred.
    #[arg(long)]
    pub should: bool,
    /// The VMs run on one host.
    #[arg(long)]
    pub affinity: bool,
    /// The VMs run on different hosts.
    #[arg(long)]
    pub anti_affinity: bool,
    /// The VMs run on one of these hosts (comma-separated).
    #[arg(long, value_name = "HOSTS")]
    pub run_on: Option<String>,
    /// The VMs run on none of these hosts (comma-separated).
    #[arg(long, value_name = "HOSTS")]
    pub not_on: Option<String>,
    /// The VMs (comma-separated).
    #[arg(long, required = true)]
    pub vms: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The rule the arguments describe, checked like the console will check its names.
pub fn rule_request(a: &RuleCreateArgs) -> Result<PlacementRule, CommandError> {
    let check = |what: &'static str, n: &str| {
        vinfra_types::validate_name(n).map_err(|source| CommandError::Name { what, source })
    };
    check("rule", &a.name)?;
    let vms = list(&a.vms);
    if vms.is_empty() {
        return Err(CommandError::Usage("--vms names no VM".into()));
    }
    for v in &vms {
        check("VM", v)?;
    }
    let (kind, hosts) = match (&a.run_on, &a.not_on) {
        (Some(h), _) => (RuleKind::RunOn, list(h)),
        (_, Some(h)) => (RuleKind::NotOn, list(h)),
        _ if a.affinity => (RuleKind::Affinity, Vec::new()),
        _ => (RuleKind::AntiAffinity, Vec::new()),
    };
    if kind.names_hosts() && hosts.is_empty() {
        return Err(CommandError::Usage(format!(
            "--{} names no host",
            kind.as_str().replace('_', "-")
        )));
    }
    for h in &hosts {
        check("host", h)?;
    }
    Ok(PlacementRule {
        name: a.name.clone(),
        strength: if a.must {
            RuleStrength::Must
        } else {
            RuleStrength::Should
        },
        kind,
        vms,
        hosts,
    })
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

fn rules_text(rules: &[PlacementRule]) -> String {
    let mut t = table(&["NAME", "STRENGTH", "KIND", "VMS", "HOSTS"]);
    for r in rules {
        t.add_row(vec![
            r.name.clone(),
            match r.strength {
                RuleStrength::Must => "must".into(),
                RuleStrength::Should => "should".into(),
            },
            r.kind.as_str().to_string(),
            r.vms.join(","),
            r.hosts.join(","),
        ]);
    }
    render(t)
}

/// `vinfra drs …`.
pub fn drs(api: &ApiClient, out: Output, cmd: &DrsCommand) -> Result<(), CommandError> {
    match cmd {
        DrsCommand::Show => call(api, out, Method::GET, "/api/v1/drs", None, |v| {
            Ok(status_text(&decode(v)?))
        }),
        DrsCommand::Run => call(api, out, Method::POST, "/api/v1/drs/run", None, |v| {
            Ok(status_text(&decode(v)?))
        }),
        DrsCommand::Recommendations => call(
            api,
            out,
            Method::GET,
            "/api/v1/drs/recommendations",
            None,
            |v| Ok(recommendations_text(&decode::<Vec<Recommendation>>(v)?)),
        ),
        DrsCommand::Apply { id } => call(
            api,
            out,
            Method::POST,
            &format!("/api/v1/drs/recommendations/{id}/apply"),
            None,
            |v| {
                let p: MigrationProgress = decode(v)?;
                Ok(format!(
                    "migrating {} from {} to {} (follow it with `vinfra vm migrate` output or \
                     `vinfra events`)",
                    p.vm, p.source, p.destination
                ))
            },
        ),
        DrsCommand::Set(a) => {
            if a.mode.is_none()
                && a.level.is_none()
                && a.interval.is_none()
                && a.max_moves_per_host.is_none()
                && a.max_moves_total.is_none()
                && a.hysteresis.is_none()
            {
                return Err(CommandError::Usage(
                    "nothing to change: give --mode, --level, --interval, --max-moves-per-host, \
                     --max-moves-total and/or --hysteresis"
                        .into(),
                ));
            }
            let mut s: ClusterSettings = api.get("/api/v1/settings")?;
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
            let body = serde_json::to_value(&s).map_err(|e| CommandError::Decode(e.to_string()))?;
            api.request(Method::PUT, "/api/v1/settings", Some(&body))?;
            call(api, out, Method::GET, "/api/v1/drs", None, |v| {
                Ok(status_text(&decode(v)?))
            })
        }
    }
}

/// `vinfra rule …`.
pub fn rule(api: &ApiClient, out: Output, cmd: &RuleCommand) -> Result<(), CommandError> {
    let check = |n: &str| {
        vinfra_types::validate_name(n).map_err(|source| CommandError::Name {
            what: "rule",
            source,
        })
    };
    match cmd {
        RuleCommand::List => call(api, out, Method::GET, "/api/v1/rules", None, |v| {
            Ok(rules_text(&decode::<Vec<PlacementRule>>(v)?))
        }),
        RuleCommand::Show { name } => {
            check(name)?;
            call(
                api,
                out,
                Method::GET,
                &format!("/api/v1/rules/{name}"),
                None,
                |v| Ok(rules_text(&[decode(v)?])),
            )
        }
        RuleCommand::Create(a) => {
            let rule = rule_request(a)?;
            let body =
                serde_json::to_value(&rule).map_err(|e| CommandError::Decode(e.to_string()))?;
            call(api, out, Method::POST, "/api/v1/rules", Some(body), |v| {
                let r: PlacementRule = decode(v)?;
                Ok(format!("rule {} created", r.name))
            })
        }
        RuleCommand::Delete { name } => {
            check(name)?;
            call(
                api,
                out,
                Method::DELETE,
                &format!("/api/v1/rules/{name}"),
                None,
                |_| Ok(format!("rule {name} deleted")),
            )
        }
    }
}
