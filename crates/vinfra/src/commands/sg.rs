//! `vinfra sg …`: security groups (list, show, create, delete), their rules (add, delete) and
//! attaching a group to a VM's NIC or detaching it (the NIC's groups read, then set with
//! `PATCH /vms/{name}/nics/{index}`).

use clap::{Args, Subcommand, ValueEnum};
use vinfra_types::api::UpdateNicRequest;
use vinfra_types::filter::SecurityGroupFilter;
use vinfra_types::security_group::{
    SecurityGroup, SecurityGroupCounters, SecurityGroupSummary, SgAction, SgDirection, SgPortRange,
    SgProtocol, SgRule,
};

use crate::config::ConnectionOverrides;
use crate::output::{pairs, render, table, timestamp, Output};
use crate::rest::{check_name, name_arg, show, RestCommandError};

/// `vinfra sg …`.
#[derive(Debug, Subcommand)]
pub enum SgCommand {
    /// Every security group, or those a NIC of a VM, a NIC on a network is in.
    List {
        /// Only the groups one of this VM's NICs is in.
        #[arg(long, value_parser = name_arg)]
        vm: Option<String>,
        /// Only the groups a NIC on this network is in.
        #[arg(long, value_parser = name_arg)]
        network: Option<String>,
    },
    /// One group: its rules with their ids, the NICs in it.
    Show {
        /// The group.
        name: String,
        /// Read each rule's hits and each NIC's connections from the switches now.
        #[arg(long)]
        counters: bool,
    },
    /// Create a group (without rules; add them with `sg rule add`).
    Create {
        /// The group's name.
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a group (refused while a NIC is in it or another group's rule names it).
    Delete {
        /// The group.
        name: String,
    },
    /// A group's rules.
    #[command(subcommand)]
    Rule(SgRuleCommand),
    /// Put a VM's NIC in a group.
    Attach(SgAttachArgs),
    /// Take a VM's NIC out of a group.
    Detach(SgAttachArgs),
}

/// `vinfra sg rule …`.
#[derive(Debug, Subcommand)]
pub enum SgRuleCommand {
    /// Add a rule; prints its id.
    Add(SgRuleAddArgs),
    /// Delete a rule by its id.
    Delete {
        /// The group.
        group: String,
        /// The rule's id (`vinfra sg show`).
        id: u32,
    },
}

/// A rule's direction on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Traffic to the NIC.
    Ingress,
    /// Traffic from the NIC.
    Egress,
}

/// A rule's action on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Let it pass.
    Allow,
    /// Drop it (wins over allow).
    Deny,
}

/// `vinfra sg rule add`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("remote").required(true).args(["remote_cidr", "remote_group"]))]
pub struct SgRuleAddArgs {
    /// The group.
    pub group: String,
    /// Ingress (to the NIC) or egress (from it).
    #[arg(long, value_enum)]
    pub direction: DirectionArg,
    /// tcp, udp, icmp, any or an IP protocol number.
    #[arg(long, default_value = "any", value_parser = str::parse::<SgProtocol>)]
    pub protocol: SgProtocol,
    /// Destination port or range (tcp, udp): 80 or 8000-8080.
    #[arg(long, value_parser = str::parse::<SgPortRange>)]
    pub ports: Option<SgPortRange>,
    /// The remote as an IPv4 prefix (0.0.0.0/0: anywhere).
    #[arg(long, value_name = "CIDR")]
    pub remote_cidr: Option<String>,
    /// The remote as a security group: every NIC in it.
    #[arg(long, value_name = "SG")]
    pub remote_group: Option<String>,
    /// Allow (default) or deny.
    #[arg(long, value_enum, default_value = "allow")]
    pub action: ActionArg,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
}

/// `vinfra sg attach` and `vinfra sg detach`.
#[derive(Debug, Args)]
pub struct SgAttachArgs {
    /// The group.
    pub group: String,
    /// The VM.
    #[arg(long)]
    pub vm: String,
    /// The NIC's index in the VM's spec.
    #[arg(long, default_value_t = 0)]
    pub nic: usize,
}

/// The rule the arguments describe, checked like the console will.
pub fn rule_request(a: &SgRuleAddArgs) -> Result<SgRule, RestCommandError> {
    check_name("security group", &a.group)?;
    let rule = SgRule {
        id: 0,
        direction: match a.direction {
            DirectionArg::Ingress => SgDirection::Ingress,
            DirectionArg::Egress => SgDirection::Egress,
        },
        protocol: a.protocol,
        ports: a.ports,
        remote_cidr: a.remote_cidr.clone(),
        remote_group: a.remote_group.clone(),
        action: match a.action {
            ActionArg::Allow => SgAction::Allow,
            ActionArg::Deny => SgAction::Deny,
        },
        description: a.description.clone(),
    };
    rule.validate().map_err(RestCommandError::SgRule)?;
    Ok(rule)
}

/// The NIC's groups with `group` added (`attach`) or taken out; `None` when that changes
/// nothing, an error when the VM has no such NIC or (detach) the NIC is not in the group.
pub fn attach_groups(
    vm: &vinfra_types::VmSummary,
    a: &SgAttachArgs,
    attach: bool,
) -> Result<Option<Vec<String>>, RestCommandError> {
    let nic = vm
        .spec
        .nics
        .get(a.nic)
        .ok_or_else(|| RestCommandError::NoSuchNic {
            vm: vm.name.clone(),
            index: a.nic,
            count: vm.spec.nics.len(),
        })?;
    let mut groups = nic.security_groups.clone();
    let present = groups.contains(&a.group);
    match (attach, present) {
        (true, true) => Ok(None),
        (true, false) => {
            groups.push(a.group.clone());
            Ok(Some(groups))
        }
        (false, true) => {
            groups.retain(|g| *g != a.group);
            Ok(Some(groups))
        }
        (false, false) => Err(RestCommandError::NotInGroup {
            vm: vm.name.clone(),
            nic: a.nic,
            group: a.group.clone(),
        }),
    }
}

fn groups_text(groups: &[SecurityGroupSummary]) -> String {
    let mut t = table(&["NAME", "RULES", "NICS", "DESCRIPTION"]);
    for g in groups {
        t.add_row(vec![
            g.group.name.clone(),
            g.group.rules.len().to_string(),
            g.members.len().to_string(),
            g.group.description.clone().unwrap_or_default(),
        ]);
    }
    render(t)
}

/// `vinfra sg show`: the group, its rules, the NICs in it.
pub fn group_text(g: &SecurityGroupSummary) -> String {
    let or_none = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut out = pairs(&[
        ("Name", g.group.name.clone()),
        (
            "Description",
            g.group.description.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Referenced by", or_none(&g.referenced_by)),
        ("Created", timestamp(g.created_at)),
    ]);
    out.push_str("\n\nRules:\n");
    if g.group.rules.is_empty() {
        out.push_str("(none: the NICs in it accept no ingress, send any egress)");
    } else {
        let mut t = table(&[
            "ID",
            "DIRECTION",
            "PROTOCOL",
            "PORTS",
            "REMOTE",
            "ACTION",
            "DESCRIPTION",
        ]);
        for r in &g.group.rules {
            let remote = match (&r.remote_cidr, &r.remote_group) {
                (Some(c), _) => c.clone(),
                (_, Some(g)) => format!("sg:{g}"),
                _ => "-".into(),
            };
            t.add_row(vec![
                r.id.to_string(),
                r.direction.as_str().to_string(),
                r.protocol.to_string(),
                r.ports.map_or("all".into(), |p| p.to_string()),
                remote,
                r.action.as_str().to_string(),
                r.description.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&render(t));
    }
    out.push_str("\n\nNICs:\n");
    if g.members.is_empty() {
        out.push_str("(none)");
    } else {
        let mut t = table(&["VM", "NIC", "NETWORK", "IP"]);
        for m in &g.members {
            t.add_row(vec![
                m.vm.clone(),
                m.nic.to_string(),
                m.network.clone(),
                m.ip.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&render(t));
    }
    out
}

/// `vinfra sg show --counters`: each rule's hits (summed over the group's NICs) and each NIC's
/// host and tracked connections, or why it was not counted.
pub fn counters_text(c: &SecurityGroupCounters) -> String {
    let mut out = format!("Security group {}\n\nRule hits:\n", c.group);
    if c.rules.is_empty() {
        out.push_str("(no rules)");
    } else {
        let mut t = table(&["ID", "HITS"]);
        for r in &c.rules {
            t.add_row(vec![r.rule_id.to_string(), r.hits.to_string()]);
        }
        out.push_str(&render(t));
    }
    out.push_str("\n\nNICs:\n");
    if c.members.is_empty() {
        out.push_str("(none)");
    } else {
        let mut t = table(&["VM", "NIC", "HOST", "CONNECTIONS", "NOT COUNTED"]);
        for m in &c.members {
            t.add_row(vec![
                m.member.vm.clone(),
                m.member.nic.to_string(),
                if m.host.is_empty() {
                    "-".into()
                } else {
                    m.host.clone()
                },
                m.connections.map_or("-".into(), |n| n.to_string()),
                m.error.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&render(t));
    }
    out
}

/// `vinfra sg …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &SgCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        SgCommand::List { vm, network } => {
            let filter = SecurityGroupFilter {
                vm: vm.clone(),
                network: network.clone(),
            };
            show(out, &conn.client()?.security_groups_where(&filter)?, |g| {
                groups_text(g)
            })
        }
        SgCommand::Show {
            name,
            counters: false,
        } => {
            check_name("security group", name)?;
            show(out, &conn.client()?.security_group(name)?, group_text)
        }
        SgCommand::Show {
            name,
            counters: true,
        } => {
            check_name("security group", name)?;
            show(
                out,
                &conn.client()?.security_group_counters(name)?,
                counters_text,
            )
        }
        SgCommand::Create { name, description } => {
            check_name("security group", name)?;
            let group = SecurityGroup {
                name: name.clone(),
                description: description.clone(),
                rules: Vec::new(),
            };
            group.validate().map_err(RestCommandError::SgRule)?;
            show(out, &conn.client()?.create_security_group(&group)?, |g| {
                format!("security group {} created", g.group.name)
            })
        }
        SgCommand::Delete { name } => {
            check_name("security group", name)?;
            conn.client()?.delete_security_group(name)?;
            show(out, &(), |_| format!("security group {name} deleted"))
        }
        SgCommand::Rule(SgRuleCommand::Add(a)) => {
            let rule = rule_request(a)?;
            let added = conn.client()?.add_security_group_rule(&a.group, &rule)?;
            show(out, &added, |r| r.id.to_string())
        }
        SgCommand::Rule(SgRuleCommand::Delete { group, id }) => {
            check_name("security group", group)?;
            conn.client()?.delete_security_group_rule(group, *id)?;
            show(out, &(), |_| {
                format!("rule {id} of security group {group} deleted")
            })
        }
        SgCommand::Attach(a) | SgCommand::Detach(a) => {
            let attach = matches!(cmd, SgCommand::Attach(_));
            check_name("security group", &a.group)?;
            check_name("VM", &a.vm)?;
            let api = conn.client()?;
            let vm = api.vm(&a.vm)?;
            let vm = match attach_groups(&vm, a, attach)? {
                Some(groups) => {
                    let update = UpdateNicRequest {
                        security_groups: Some(groups),
                        ..Default::default()
                    };
                    api.update_nic(&a.vm, a.nic, &update)?
                }
                None => vm,
            };
            show(out, &vm, |_| {
                format!(
                    "VM {} nic {}: {} security group {}",
                    a.vm,
                    a.nic,
                    if attach { "in" } else { "out of" },
                    a.group
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vinfra sg` alone.
    #[derive(Debug, Parser)]
    struct Sg {
        #[command(subcommand)]
        cmd: SgCommand,
    }

    fn parse(args: &[&str]) -> Result<SgCommand, String> {
        let mut argv = vec!["sg"];
        argv.extend_from_slice(args);
        Sg::try_parse_from(argv)
            .map(|s| s.cmd)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn counters_show_hits_connections_and_why_a_nic_was_not_counted() {
        use vinfra_types::security_group::{SgMember, SgMemberCounters, SgRuleHits};
        assert!(matches!(
            parse(&["show", "web", "--counters"]),
            Ok(SgCommand::Show { counters: true, .. })
        ));
        let member = |vm: &str, host: &str, connections, error: Option<&str>| SgMemberCounters {
            member: SgMember {
                vm: vm.into(),
                nic: 0,
                network: "blue".into(),
                ip: None,
            },
            host: host.into(),
            connections,
            error: error.map(str::to_string),
        };
        let text = counters_text(&SecurityGroupCounters {
            group: "web".into(),
            rules: vec![SgRuleHits {
                rule_id: 3,
                hits: 41,
            }],
            members: vec![
                member("w1", "h1", Some(7), None),
                member("w2", "", None, Some("the VM is not placed on a host")),
            ],
        });
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let row = |first: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(first))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(row("3 "), ["3", "41"], "{text}");
        assert_eq!(row("w1 "), ["w1", "0", "h1", "7"], "{text}");
        assert_eq!(row("w2 ")[..4], ["w2", "0", "-", "-"], "{text}");
        assert!(text.contains("the VM is not placed on a host"), "{text}");
    }

    fn rule(args: &[&str]) -> Result<SgRule, String> {
        let mut argv = vec!["rule", "add"];
        argv.extend_from_slice(args);
        match parse(&argv)? {
            SgCommand::Rule(SgRuleCommand::Add(a)) => {
                rule_request(&a).map_err(|e| vinfra_types::error::chain(&e))
            }
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn rules_from_the_command_line() {
        let r = rule(&[
            "web",
            "--direction",
            "ingress",
            "--protocol",
            "tcp",
            "--ports",
            "8000-8080",
            "--remote-cidr",
            "0.0.0.0/0",
        ])
        .unwrap();
        assert_eq!(r.describe(), "allow ingress tcp 8000-8080 from 0.0.0.0/0");
        let r = rule(&[
            "web",
            "--direction",
            "egress",
            "--remote-group",
            "db",
            "--action",
            "deny",
            "--protocol",
            "47",
        ])
        .unwrap();
        assert_eq!(r.describe(), "deny egress 47 to group db");
        for (bad, why) in [
            (&["web", "--direction", "ingress"][..], "--remote-cidr"),
            (
                &[
                    "web",
                    "--direction",
                    "ingress",
                    "--remote-cidr",
                    "0.0.0.0/0",
                    "--remote-group",
                    "db",
                ],
                "cannot be used with",
            ),
            (
                &["web", "--direction", "in", "--remote-cidr", "0.0.0.0/0"],
                "invalid value 'in'",
            ),
            (
                &[
                    "web",
                    "--direction",
                    "ingress",
                    "--protocol",
                    "gre",
                    "--remote-cidr",
                    "0.0.0.0/0",
                ],
                "'gre' is not a protocol",
            ),
            (
                &[
                    "web",
                    "--direction",
                    "ingress",
                    "--ports",
                    "80",
                    "--remote-cidr",
                    "0.0.0.0/0",
                ],
                "invalid security group rule: ports are for tcp and udp rules only, not any",
            ),
            (
                &[
                    "web",
                    "--direction",
                    "ingress",
                    "--remote-cidr",
                    "10.0.0.1/8",
                ],
                "remote_cidr '10.0.0.1/8'",
            ),
            (
                &[
                    "Web",
                    "--direction",
                    "ingress",
                    "--remote-cidr",
                    "0.0.0.0/0",
                ],
                "bad security group name",
            ),
        ] {
            let e = rule(bad).expect_err(why);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn attach_and_detach_change_the_nics_groups() {
        let cmd = parse(&["attach", "db", "--vm", "a"]).unwrap();
        let SgCommand::Attach(a) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(a.nic, 0);
        let mut vm: vinfra_types::VmSummary = serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000001", "name": "a", "vcpus": 1,
            "memory_mib": 128, "host": "h1", "desired": "running", "state": "running",
            "uptime_s": 0, "usage": {"cpu_time_ms": 0, "cpu_cores": 0.0, "rss_mib": 0},
            "created_at": 0,
            "spec": {"name": "a", "vcpus": 1, "memory_mib": 128, "boot": {"kind": "disk"},
                "nics": [{"network": "blue", "security_groups": ["web"]}]}
        }))
        .unwrap();
        assert_eq!(
            attach_groups(&vm, &a, true).unwrap(),
            Some(vec!["web".to_string(), "db".to_string()])
        );
        assert_eq!(
            attach_groups(&vm, &a, false).unwrap_err().to_string(),
            "VM a nic 0 is not in security group db"
        );
        vm.spec.nics[0].security_groups.push("db".into());
        assert_eq!(attach_groups(&vm, &a, true).unwrap(), None);
        assert_eq!(
            attach_groups(&vm, &a, false).unwrap(),
            Some(vec!["web".to_string()])
        );
        let cmd = parse(&["detach", "db", "--vm", "a", "--nic", "2"]).unwrap();
        let SgCommand::Detach(a) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(
            attach_groups(&vm, &a, false).unwrap_err().to_string(),
            "VM a has no nic 2 (it has 1)"
        );
        assert!(parse(&["attach", "db"]).is_err(), "--vm is required");
    }
}
