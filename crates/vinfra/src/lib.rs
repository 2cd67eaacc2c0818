//! The `vinfra` command: a REST client of the console, plus the `console`, `agent`, `switch`,
//! `lab` and `sim` subcommands that run things themselves.
//!
//! Top to bottom (an import only ever goes down):
//! - this file: the command line's top level ([`Cli`], [`TopCommand`]), [`run`], [`Error`] and
//!   the exit codes;
//! - [`commands`]: one file per resource (`host`, `vm`, `net`, `sg`, `router`, `rule`, `drs`, `ha`,
//!   `settings`, `token`, `events`, `flows`, `task`, `sim`, `lab`, `daemons`), each with its
//!   arguments and its `run`;
//! - [`follow`]: following a task to its end (the progress line on a terminal, `--no-wait`'s
//!   line) and a migration with its progress bar;
//! - [`rest`]: what the REST commands share (their error, name checks, printing an answer);
//! - [`config`]: where the console's URL, token and CA come from; [`output`]: tables, units,
//!   JSON; [`parse`]: parsers of sizes, durations, `--disk` and `--nic` values.
//!
//! Errors are printed as one line, `vinfra: <message>` (the error and its causes, see
//! [`vinfra_types::error::chain`]), and map to exit code 2 (bad usage or input, including
//! requests the console refuses with 4xx) or 1 (anything else).
#![deny(unsafe_code)]

pub mod commands;
pub mod config;
pub mod follow;
pub mod output;
pub mod parse;
pub mod rest;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use commands::{
    daemons, drs, events, flows, ha, host, lab, net, router, rule, settings, sg, sim, task, token,
    vm,
};
use config::ConnectionOverrides;
use output::Output;
use rest::RestCommandError;

/// Exit code for bad usage or bad input.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for every other failure.
pub const EXIT_FAILURE: i32 = 1;

const AFTER_HELP: &str = "\
Connection: --url/--token/--ca, else VINFRA_URL/VINFRA_TOKEN/VINFRA_CA, else the config file
(--config, VINFRA_CONFIG, ~/.config/vinfra/config.toml or /etc/vinfra/cli.toml: lines
url = \"...\", token = \"...\", ca = \"...\"). The URL defaults to https://127.0.0.1:7443.

Long operations (vm create/start/stop/reboot/delete/migrate, drs apply, host fence) wait for
their task to end; --no-wait prints the task's number instead (see `vinfra task`).

Exit codes: 0 success; 2 usage error or bad input (bad arguments, missing token, a request the
console refused with a 4xx problem, e.g. unknown VM or not enough capacity, or whose task ended
with one); 1 anything else (console unreachable or failing with 5xx, failed migration, a task
`vinfra task wait` waited for that did not succeed, local I/O). Errors are one line on stderr:
`vinfra: <message>`.";

/// vinfra: an open virtualization platform (console, per-host agents, QEMU VMs).
#[derive(Debug, Parser)]
#[command(name = "vinfra", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Base URL of the console's REST API.
    #[arg(long, global = true, env = "VINFRA_URL")]
    pub url: Option<String>,
    /// API bearer token.
    #[arg(long, global = true, env = "VINFRA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Cluster CA certificate (PEM) to trust.
    #[arg(long, global = true, env = "VINFRA_CA")]
    pub ca: Option<PathBuf>,
    /// Config file (default ~/.config/vinfra/config.toml, then /etc/vinfra/cli.toml).
    #[arg(long, global = true, env = "VINFRA_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: TopCommand,
}

/// The first word of a `vinfra` command line.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Run the console (REST API, agent endpoint, controllers).
    Console(daemons::ConsoleArgs),
    /// Run a host agent.
    Agent(daemons::AgentArgs),
    /// Run the host's virtual switch (programmed by the agent over its control socket).
    Switch(daemons::SwitchArgs),
    /// Run the host's guard: keeps its lease on the datastore, parent of its QEMUs, fencing.
    Guard(daemons::GuardArgs),
    /// A whole cluster on this machine, in network namespaces (root only).
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Hypervisor hosts.
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Cluster settings.
    #[command(subcommand)]
    Settings(settings::SettingsCommand),
    /// One-time tokens for joining hosts.
    #[command(subcommand, name = "join-token")]
    JoinToken(token::JoinTokenCommand),
    /// The API token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Virtual machines.
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// The event history.
    Events(events::EventsArgs),
    /// Flows: the traffic between the cluster's endpoints.
    #[command(subcommand)]
    Flows(flows::FlowsCommand),
    /// Tasks: the long operations (create, start, stop, reboot, delete, migrate, a
    /// recommendation applied, a fence), under way or ended.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Automatic balancing: status, settings, passes, recommendations.
    #[command(subcommand)]
    Drs(drs::DrsCommand),
    /// High availability: the cluster's HA settings.
    #[command(subcommand)]
    Ha(ha::HaCommand),
    /// Placement rules (affinity, anti-affinity, run on, not on).
    #[command(subcommand)]
    Rule(rule::RuleCommand),
    /// Logical networks (overlay or VLAN) and where their ports live.
    #[command(subcommand)]
    Net(net::NetCommand),
    /// Security groups: rule sets filtering VM NICs' traffic on their hosts' switches.
    #[command(subcommand)]
    Sg(sg::SgCommand),
    /// Routers (VRFs): their networks (each one's distributed gateway) and static routes.
    #[command(subcommand)]
    Router(router::RouterCommand),
    /// Run the balancer on a cluster scenario file and write metrics and a plot (no console).
    Sim(sim::SimArgs),
    /// Rotate the cluster CA, one step at a time, on the console's machine (its data directory;
    /// each step takes effect at the console's next start).
    CaRotate(daemons::CaRotateArgs),
}

impl TopCommand {
    /// True for the long-running processes (`console`, `agent`, `switch`, `guard`).
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            TopCommand::Console(_)
                | TopCommand::Agent(_)
                | TopCommand::Switch(_)
                | TopCommand::Guard(_)
        )
    }
}

/// Why a `vinfra` command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command that talks to the console failed.
    #[error(transparent)]
    Rest(#[from] RestCommandError),
    /// A lab command failed.
    #[error(transparent)]
    Lab(#[from] lab::LabCommandError),
    /// The console, the agent, the switch or the guard failed.
    #[error(transparent)]
    Daemon(#[from] daemons::DaemonError),
    /// A simulation failed (boxed: the simulator's error is large).
    #[error(transparent)]
    Sim(#[from] Box<vinfra_sim::SimError>),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        let usage = match self {
            Error::Rest(e) => e.is_usage(),
            Error::Lab(e) => e.is_usage(),
            Error::Daemon(_) => false,
            Error::Sim(e) => e.is_input(),
        };
        if usage {
            EXIT_USAGE
        } else {
            EXIT_FAILURE
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    let conn = ConnectionOverrides {
        url: cli.url,
        token: cli.token,
        ca: cli.ca,
        config: cli.config,
    };
    let out = cli.output;
    match &cli.command {
        TopCommand::Console(a) => daemons::console(a)?,
        TopCommand::Agent(a) => daemons::agent(a)?,
        TopCommand::Switch(a) => daemons::switch(a)?,
        TopCommand::Guard(a) => daemons::guard(a)?,
        TopCommand::CaRotate(a) => daemons::ca_rotate(a)?,
        TopCommand::Lab(c) => lab::run(c, out)?,
        TopCommand::Host(c) => host::run(&conn, out, c)?,
        TopCommand::Settings(c) => settings::run(&conn, out, c)?,
        TopCommand::JoinToken(c) => token::run_join_token(&conn, out, c)?,
        TopCommand::Token(c) => token::run_token(&conn, out, c)?,
        TopCommand::Vm(c) => vm::run(&conn, out, c)?,
        TopCommand::Events(a) => events::run(&conn, out, a)?,
        TopCommand::Flows(c) => flows::run(&conn, out, c)?,
        TopCommand::Task(c) => task::run(&conn, out, c)?,
        TopCommand::Drs(c) => drs::run(&conn, out, c)?,
        TopCommand::Ha(c) => ha::run(&conn, out, c)?,
        TopCommand::Rule(c) => rule::run(&conn, out, c)?,
        TopCommand::Net(c) => net::run(&conn, out, c)?,
        TopCommand::Sg(c) => sg::run(&conn, out, c)?,
        TopCommand::Router(c) => router::run(&conn, out, c)?,
        TopCommand::Sim(a) => sim::run(a, out).map_err(Box::new)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn long_operations_take_no_wait() {
        for argv in [
            &["vm", "start", "web", "--no-wait"][..],
            &["vm", "stop", "web", "--force", "--no-wait"],
            &["vm", "reboot", "web", "--no-wait"],
            &["vm", "delete", "web", "--yes", "--no-wait"],
            &["vm", "migrate", "web", "--to", "h2", "--no-wait"],
            &[
                "vm",
                "create",
                "web",
                "--vcpus",
                "1",
                "--memory",
                "128M",
                "--no-wait",
            ],
            &["drs", "apply", "3", "--no-wait"],
            &["host", "fence", "h1", "--force", "--no-wait"],
            &["task", "list", "--state", "failed"],
            &["task", "wait", "42", "--timeout", "30s"],
        ] {
            let mut all = vec!["vinfra"];
            all.extend_from_slice(argv);
            assert!(Cli::try_parse_from(&all).is_ok(), "{argv:?}");
        }
        let no_wait = |argv: &[&str]| {
            let mut all = vec!["vinfra"];
            all.extend_from_slice(argv);
            match Cli::try_parse_from(all).map(|c| c.command) {
                Ok(TopCommand::Vm(vm::VmCommand::Stop { no_wait, .. }))
                | Ok(TopCommand::Host(host::HostCommand::Fence { no_wait, .. }))
                | Ok(TopCommand::Drs(drs::DrsCommand::Apply { no_wait, .. })) => no_wait,
                other => panic!("{other:?}"),
            }
        };
        assert!(no_wait(&["vm", "stop", "web", "--no-wait"]));
        assert!(!no_wait(&["vm", "stop", "web"]));
        assert!(no_wait(&["host", "fence", "h1", "--no-wait"]));
        assert!(!no_wait(&["drs", "apply", "3"]));
        // Cancelling a migration answers with its task too.
        assert!(
            Cli::try_parse_from(["vinfra", "vm", "migrate", "web", "--cancel", "--no-wait"])
                .is_ok()
        );
    }

    /// The lists' filters: each flag lands in its field, in the API's words; a value that is
    /// not one (a state, a kind) or a name that is not one is refused as the line is parsed.
    #[test]
    fn list_filters_parse() {
        use vinfra_types::auth::{Role, TokenState};
        use vinfra_types::balancing::{RuleKind, RuleStrength};
        use vinfra_types::network::NetworkKind;
        let parse = |argv: &[&str]| {
            let mut all = vec!["vinfra"];
            all.extend_from_slice(argv);
            Cli::try_parse_from(all).map(|c| c.command)
        };
        let some = |s: &str| Some(s.to_string());
        match parse(&["token", "list", "--role", "operator", "--state", "revoked"]) {
            Ok(TopCommand::Token(token::TokenCommand::List { role, state })) => {
                assert_eq!(
                    (role, state),
                    (Some(Role::Operator), Some(TokenState::Revoked))
                )
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "events",
            "--kind",
            "migration",
            "--vm",
            "web",
            "--host",
            "h1",
        ]) {
            Ok(TopCommand::Events(a)) => {
                assert_eq!(
                    (a.kind, a.vm, a.host),
                    (some("migration"), some("web"), some("h1"))
                )
            }
            other => panic!("{other:?}"),
        }
        match parse(&["events"]) {
            Ok(TopCommand::Events(a)) => assert_eq!((a.kind, a.vm, a.host), (None, None, None)),
            other => panic!("{other:?}"),
        }
        for (argv, want) in [
            (
                &["--kind", "anti-affinity"][..],
                Some(RuleKind::AntiAffinity),
            ),
            (&["--kind", "run_on"], Some(RuleKind::RunOn)),
            (&[], None),
        ] {
            let mut all = vec!["rule", "list", "--vm", "a", "--strength", "should"];
            all.extend_from_slice(argv);
            match parse(&all) {
                Ok(TopCommand::Rule(rule::RuleCommand::List {
                    vm,
                    host,
                    kind,
                    strength,
                })) => assert_eq!(
                    (vm, host, kind, strength),
                    (some("a"), None, want, Some(RuleStrength::Should))
                ),
                other => panic!("{other:?}"),
            }
        }
        match parse(&["drs", "recommendations", "--vm", "web", "--host", "h2"]) {
            Ok(TopCommand::Drs(drs::DrsCommand::Recommendations { vm, host })) => {
                assert_eq!((vm, host), (some("web"), some("h2")))
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "net", "list", "--kind", "vlan", "--host", "h1", "--vm", "web",
        ]) {
            Ok(TopCommand::Net(net::NetCommand::List { kind, host, vm })) => assert_eq!(
                (kind, host, vm),
                (Some(NetworkKind::Vlan), some("h1"), some("web"))
            ),
            other => panic!("{other:?}"),
        }
        match parse(&["sg", "list", "--vm", "web", "--network", "blue"]) {
            Ok(TopCommand::Sg(sg::SgCommand::List { vm, network })) => {
                assert_eq!((vm, network), (some("web"), some("blue")))
            }
            other => panic!("{other:?}"),
        }
        match parse(&["router", "list", "--network", "ext", "--edge", "h3"]) {
            Ok(TopCommand::Router(router::RouterCommand::List { network, edge })) => {
                assert_eq!((network, edge), (some("ext"), some("h3")))
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &["token", "list", "--role", "root"][..],
            &["token", "list", "--state", "valid"],
            &["events", "--vm", "Web"],
            &["events", "--kind", ""],
            &["rule", "list", "--kind", "near"],
            &["rule", "list", "--strength", "hard"],
            &["rule", "list", "--host", "h_1"],
            &["drs", "recommendations", "--vm", "-x"],
            &["net", "list", "--kind", "vxlan"],
            &["net", "list", "--host", "H1"],
            &["sg", "list", "--network", "a/b"],
            &["router", "list", "--edge", "h.1"],
            &["router", "list", "--color", "red"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn daemons_are_told_apart() {
        let cli = Cli::try_parse_from(["vinfra", "switch"]).unwrap();
        assert!(cli.command.is_daemon());
        let cli = Cli::try_parse_from(["vinfra", "events"]).unwrap();
        assert!(!cli.command.is_daemon());
    }
}
