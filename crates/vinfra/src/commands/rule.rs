//! `vinfra rule …`: placement rules (affinity, anti-affinity, run on, not on).

use clap::{Args, Subcommand};
use vinfra_types::balancing::{PlacementRule, RuleKind, RuleStrength};
use vinfra_types::filter::RuleFilter;

use crate::config::ConnectionOverrides;
use crate::output::{render, table, Output};
use crate::rest::{check_name, name_arg, show, word_arg, RestCommandError};

/// `vinfra rule …`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Every placement rule, or those naming a VM, naming a host, of a kind, of a strength.
    List {
        /// Only the rules naming this VM.
        #[arg(long, value_parser = name_arg)]
        vm: Option<String>,
        /// Only the rules naming this host (run_on, not_on).
        #[arg(long, value_parser = name_arg)]
        host: Option<String>,
        /// Only the rules of this kind: affinity, anti_affinity, run_on or not_on (the KIND
        /// column; `-` for `_` too).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<RuleKind>,
        /// Only the rules of this strength: must or should.
        #[arg(long, value_parser = parse_strength)]
        strength: Option<RuleStrength>,
    },
    /// One rule.
    Show {
        /// The rule.
        name: String,
    },
    /// Create a rule; contradictory rules are refused.
    Create(RuleCreateArgs),
    /// Delete a rule.
    Delete {
        /// The rule.
        name: String,
    },
}

/// `vinfra rule create`.
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

/// `--kind`: a rule's kind as the API names it (`anti-affinity` as `anti_affinity`).
fn parse_kind(s: &str) -> Result<RuleKind, String> {
    word_arg(
        &s.replace('-', "_"),
        "affinity, anti_affinity, run_on or not_on",
    )
}

/// `--strength`: must or should.
fn parse_strength(s: &str) -> Result<RuleStrength, String> {
    word_arg(s, "must or should")
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The rule the arguments describe, checked like the console will check its names.
pub fn rule_request(a: &RuleCreateArgs) -> Result<PlacementRule, RestCommandError> {
    check_name("rule", &a.name)?;
    let vms = list(&a.vms);
    if vms.is_empty() {
        return Err(RestCommandError::EmptyList {
            option: "vms",
            what: "VM",
        });
    }
    for v in &vms {
        check_name("VM", v)?;
    }
    let (kind, hosts) = match (&a.run_on, &a.not_on) {
        (Some(h), _) => (RuleKind::RunOn, list(h)),
        (_, Some(h)) => (RuleKind::NotOn, list(h)),
        _ if a.affinity => (RuleKind::Affinity, Vec::new()),
        _ => (RuleKind::AntiAffinity, Vec::new()),
    };
    if hosts.is_empty() {
        let option = match kind {
            RuleKind::RunOn => Some("run-on"),
            RuleKind::NotOn => Some("not-on"),
            RuleKind::Affinity | RuleKind::AntiAffinity => None,
        };
        if let Some(option) = option {
            return Err(RestCommandError::EmptyList {
                option,
                what: "host",
            });
        }
    }
    for h in &hosts {
        check_name("host", h)?;
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

/// `vinfra rule …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &RuleCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        RuleCommand::List {
            vm,
            host,
            kind,
            strength,
        } => {
            let filter = RuleFilter {
                vm: vm.clone(),
                host: host.clone(),
                kind: *kind,
                strength: *strength,
            };
            show(out, &conn.client()?.rules_where(&filter)?, |r| {
                rules_text(r)
            })
        }
        RuleCommand::Show { name } => {
            check_name("rule", name)?;
            show(out, &conn.client()?.rule(name)?, |r| {
                rules_text(std::slice::from_ref(r))
            })
        }
        RuleCommand::Create(a) => {
            let rule = rule_request(a)?;
            show(out, &conn.client()?.create_rule(&rule)?, |r| {
                format!("rule {} created", r.name)
            })
        }
        RuleCommand::Delete { name } => {
            check_name("rule", name)?;
            conn.client()?.delete_rule(name)?;
            show(out, &(), |_| format!("rule {name} deleted"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vinfra rule` alone.
    #[derive(Debug, Parser)]
    struct Rule {
        #[command(subcommand)]
        cmd: RuleCommand,
    }

    fn request(args: &[&str]) -> Result<PlacementRule, String> {
        let mut argv = vec!["rule", "create"];
        argv.extend_from_slice(args);
        match Rule::try_parse_from(argv) {
            Ok(Rule {
                cmd: RuleCommand::Create(a),
            }) => rule_request(&a).map_err(|e| vinfra_types::error::chain(&e)),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn rule_requests() {
        let r = request(&["web", "--must", "--anti-affinity", "--vms", "a, b,"]).unwrap();
        assert_eq!(
            (r.strength, r.kind, r.vms, r.hosts),
            (
                RuleStrength::Must,
                RuleKind::AntiAffinity,
                vec!["a".to_string(), "b".to_string()],
                vec![]
            )
        );
        let r = request(&["pin", "--should", "--run-on", "h1,h2", "--vms", "a"]).unwrap();
        assert_eq!((r.kind, r.hosts.len()), (RuleKind::RunOn, 2));
        for (bad, reason) in [
            (
                &["x", "--must", "--affinity", "--vms", ","][..],
                "--vms names no VM",
            ),
            (
                &["x", "--must", "--not-on", ",", "--vms", "a"],
                "--not-on names no host",
            ),
            (
                &["x", "--must", "--run-on", " ", "--vms", "a"],
                "--run-on names no host",
            ),
            (
                &["x", "--must", "--affinity", "--vms", "a,B_"],
                "bad VM name",
            ),
            (
                &["X", "--must", "--affinity", "--vms", "a"],
                "bad rule name",
            ),
            (
                &["x", "--must", "--not-on", "h/1", "--vms", "a"],
                "bad host name",
            ),
        ] {
            let e = request(bad).expect_err(reason);
            assert!(e.starts_with(reason), "{bad:?}: {e}");
        }
    }
}
