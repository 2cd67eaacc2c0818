//! `vinfra join-token create` (a one-time token for a new host) and `vinfra token rotate` (a new
//! API token).

use clap::Subcommand;

use crate::config::ConnectionOverrides;
use crate::output::{self, Output};
use crate::rest::{show, RestCommandError};

/// `vinfra join-token …`.
#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Create a one-time join token for a new host.
    Create,
}

/// `vinfra token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Replace the API token (the current one stops working).
    Rotate,
}

/// `vinfra join-token create`.
pub fn run_join_token(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &JoinTokenCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        JoinTokenCommand::Create => show(out, &conn.client()?.create_join_token()?, |t| {
            format!(
                "{}\n\nOne-time token, valid {}: start the new host's agent with --join-token <token>.",
                t.token,
                output::duration_s(t.expires_in_s)
            )
        }),
    }
}

/// `vinfra token rotate`.
pub fn run_token(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &TokenCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        TokenCommand::Rotate => show(out, &conn.client()?.rotate_token()?, |t| {
            format!(
                "{}\n\nThe previous token no longer works: update VINFRA_TOKEN or the config file.",
                t.token
            )
        }),
    }
}
