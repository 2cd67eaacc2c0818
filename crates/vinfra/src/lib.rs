//! The `vinfra` command: a REST client of the console, plus the `console`, `agent` and `lab`
//! subcommands that run the processes themselves.
//!
//! - [`cli`]: the command line (clap);
//! - [`parse`]: parsers of sizes, durations, `--disk` and `--nic` values;
//! - [`config`]: where the console's URL, token and CA come from;
//! - [`commands`]: the REST commands (`host`, `vm`, `settings`, …);
//! - [`output`]: tables and units;
//! - [`daemons`]: `vinfra console` and `vinfra agent`;
//! - [`lab`]: `vinfra lab up|status|down`;
//! - [`net`]: `vinfra net …`, logical networks;
//! - [`sim`]: `vinfra sim`, the cluster simulator.
//!
//! Errors are printed as one line, `vinfra: <message>`, and map to exit code 2 (bad usage or input,
//! including requests the console refuses with 4xx) or 1 (anything else).
#![deny(unsafe_code)]

/// Prints a line to stdout, ignoring a closed pipe (e.g. `vinfra vm list | head -1`).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod cli;
pub mod commands;
pub mod config;
pub mod daemons;
pub mod drs;
pub mod lab;
pub mod net;
pub mod output;
pub mod parse;
pub mod sim;

use cli::{Cli, Command};

/// Exit code for bad usage or bad input.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for every other failure.
pub const EXIT_FAILURE: i32 = 1;

/// Why a `vinfra` command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection settings are missing or wrong.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A REST command failed.
    #[error(transparent)]
    Command(#[from] commands::CommandError),
    /// A lab command failed.
    #[error(transparent)]
    Lab(#[from] lab::LabCommandError),
    /// The console or the agent failed.
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
            Error::Config(config::ConfigError::Client(e)) => e.is_client_error(),
            Error::Config(config::ConfigError::Ca { .. }) => true,
            Error::Config(_) => true,
            Error::Command(e) => e.is_usage(),
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

    /// The error and its causes on one line.
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// An error and its sources joined by `: `, with line breaks removed.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Skip a cause whose text the message already includes.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts
        .join(": ")
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    let settings = || -> Result<vinfra_lab::ApiClient, Error> {
        let o = config::Overrides {
            url: cli.url.clone(),
            token: cli.token.clone(),
            ca: cli.ca.clone(),
            config: cli.config.clone(),
        };
        Ok(config::resolve(&o)?.client()?)
    };
    let out = cli.output;
    match &cli.command {
        Command::Console(a) => daemons::console(a)?,
        Command::Agent(a) => daemons::agent(a)?,
        Command::Switch(a) => daemons::switch(a)?,
        Command::Lab(c) => lab::run(c, out)?,
        Command::Host(c) => commands::host(&settings()?, out, c)?,
        Command::Settings(c) => commands::settings(&settings()?, out, c)?,
        Command::JoinToken(c) => commands::join_token(&settings()?, out, c)?,
        Command::Token(c) => commands::token(&settings()?, out, c)?,
        Command::Vm(c) => commands::vm(settings, out, c)?,
        Command::Events => commands::events(&settings()?, out)?,
        Command::Drs(c) => drs::drs(&settings()?, out, c)?,
        Command::Rule(c) => drs::rule(&settings()?, out, c)?,
        Command::Net(c) => net::net(&settings()?, out, c)?,
        Command::Sim(a) => sim::run(a, out).map_err(Box::new)?,
    }
    Ok(())
}
