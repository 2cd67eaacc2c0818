//! What the commands that talk to the console share: their error ([`RestCommandError`]), the check of a
//! name given on the command line, and printing an answer as JSON or as a table.

use serde::Serialize;
use vinfra_client::RestError;
use vinfra_types::network::NetworkError;
use vinfra_types::router::RouterRequestError;
use vinfra_types::security_group::SecurityGroupError;
use vinfra_types::task::TaskState;
use vinfra_types::vm::SpecError;
use vinfra_types::NameError;

use crate::config::CliConfigError;
use crate::output::{self, out, Output};

/// Why a command that talks to the console failed.
#[derive(Debug, thiserror::Error)]
pub enum RestCommandError {
    /// The connection settings are missing or wrong.
    #[error(transparent)]
    Config(#[from] CliConfigError),
    /// A name given on the command line is not valid.
    #[error("bad {what} name")]
    Name {
        /// What the name is of (`VM`, `host`, …).
        what: &'static str,
        /// Why it is not valid.
        #[source]
        source: NameError,
    },
    /// The VM described on the command line is not valid.
    #[error("invalid VM")]
    Spec(#[source] SpecError),
    /// The network described on the command line is not valid.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A destructive command was not confirmed at the terminal.
    #[error("{0}: not confirmed (nothing changed; --yes confirms without asking)")]
    NotConfirmed(String),
    /// A `set` command got nothing to change; the options it takes.
    #[error("nothing to change: give {0}")]
    NothingToChange(&'static str),
    /// `vm create --count` with a NIC whose address or MAC is fixed.
    #[error("--nic {0}: ip= and mac= cannot go with --count (the VMs would share them)")]
    FixedNicWithCount(usize),
    /// `vm create` was not told how the VM boots.
    #[error(
        "say how the VM boots: --kernel FILE [--initrd FILE] [--cmdline S], or --boot-disk with --disk"
    )]
    NoBoot,
    /// A list option names nothing (`--vms ,`).
    #[error("--{option} names no {what}")]
    EmptyList {
        /// The option, without `--`.
        option: &'static str,
        /// What it lists (`VM`, `host`).
        what: &'static str,
    },
    /// The security group or rule described on the command line is not valid.
    #[error("invalid security group rule")]
    SgRule(#[source] SecurityGroupError),
    /// The router request described on the command line is not valid (a prefix, an address).
    #[error(transparent)]
    Router(RouterRequestError),
    /// The VM has no NIC of that index.
    #[error("VM {vm} has no nic {index} (it has {count})")]
    NoSuchNic {
        /// The VM.
        vm: String,
        /// The index given.
        index: usize,
        /// How many NICs it has.
        count: usize,
    },
    /// The QoS flags of `vm nic set` leave a QoS that cannot be (a burst without a rate, a
    /// value out of bounds).
    #[error("nic {index}: qos: {reason}")]
    NicQos {
        /// The NIC's index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A detach of a group the NIC is not in.
    #[error("VM {vm} nic {nic} is not in security group {group}")]
    NotInGroup {
        /// The VM.
        vm: String,
        /// The NIC's index.
        nic: usize,
        /// The group.
        group: String,
    },
    /// The console refused the request, failed, or could not be reached.
    #[error(transparent)]
    Api(#[from] RestError),
    /// A migration ended without switching over.
    #[error("migration of {vm} {}: {reason}", if *.cancelled { "was cancelled" } else { "failed" })]
    Migration {
        /// The VM.
        vm: String,
        /// Whether it was cancelled (else it failed).
        cancelled: bool,
        /// Why, as the console says (or that the VM still runs on the source).
        reason: String,
    },
    /// A migration's cancel came too late: it switched over first.
    #[error("the cancel came too late: migration of {vm} completed, it runs on {host}")]
    CancelTooLate {
        /// The VM.
        vm: String,
        /// Where it runs now.
        host: String,
    },
    /// A task waited for ended failed or cancelled (`vinfra task wait`); the error it ended
    /// with.
    #[error("{task} {state}")]
    Task {
        /// The task: `task 42 (vm_stop web1)`.
        task: String,
        /// How it ended.
        state: TaskState,
        /// Its error.
        #[source]
        source: RestError,
    },
    /// The answer could not be printed as JSON.
    #[error("cannot print the answer as JSON")]
    Json(#[source] serde_json::Error),
}

impl RestCommandError {
    /// True when the user's input was at fault, including a request the console refused with
    /// a 4xx answer.
    pub fn is_usage(&self) -> bool {
        match self {
            RestCommandError::Config(e) => e.is_usage(),
            RestCommandError::Api(e) => e.is_client_error(),
            RestCommandError::Name { .. }
            | RestCommandError::Spec(_)
            | RestCommandError::Network(_)
            | RestCommandError::NothingToChange(_)
            | RestCommandError::NotConfirmed(_)
            | RestCommandError::NoBoot
            | RestCommandError::FixedNicWithCount(_)
            | RestCommandError::EmptyList { .. }
            | RestCommandError::SgRule(_)
            | RestCommandError::Router(_)
            | RestCommandError::NoSuchNic { .. }
            | RestCommandError::NicQos { .. }
            | RestCommandError::NotInGroup { .. } => true,
            RestCommandError::Migration { .. }
            | RestCommandError::CancelTooLate { .. }
            | RestCommandError::Task { .. }
            | RestCommandError::Json(_) => false,
        }
    }
}

/// Asks `question` (`Delete VM x and its disks?`) on the terminal unless `yes`: only `y` or
/// `yes` goes on. Without a terminal on standard input (scripts) nothing is asked.
pub fn confirm(question: &str, yes: bool) -> Result<(), RestCommandError> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes || !std::io::stdin().is_terminal() {
        return Ok(());
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(RestCommandError::NotConfirmed(
            question.trim_end_matches('?').to_string(),
        )),
    }
}

/// Checks a name given on the command line; `what` names it in the error.
pub fn check_name(what: &'static str, name: &str) -> Result<(), RestCommandError> {
    vinfra_types::validate_name(name).map_err(|source| RestCommandError::Name { what, source })
}

/// A name given to a list's filter (`--host`, `--vm`, `--network`, …), checked as it is parsed.
pub fn name_arg(value: &str) -> Result<String, NameError> {
    vinfra_types::validate_name(value).map(|()| value.to_string())
}

/// One of the API's words for `T` (its serde name: `connected`, `anti_affinity`, …), for a
/// list's filter; `expected` lists them for the error.
pub fn word_arg<T: serde::de::DeserializeOwned>(value: &str, expected: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.trim().to_string()))
        .map_err(|_| format!("expected {expected}, got '{value}'"))
}

/// Prints the console's answer: as JSON, or as `render(answer)` (nothing when that is empty).
pub fn show<T: Serialize>(
    out: Output,
    answer: &T,
    render: impl FnOnce(&T) -> String,
) -> Result<(), RestCommandError> {
    match out {
        Output::Json => output::print_json(answer).map_err(RestCommandError::Json),
        Output::Table => {
            let text = render(answer);
            if !text.is_empty() {
                out!("{}", output::terminal_safe(&text));
            }
            Ok(())
        }
    }
}
