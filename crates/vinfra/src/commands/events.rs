//! `vinfra events`: the event history.

use clap::Args;

use crate::config::ConnectionOverrides;
use crate::output::{self, Output};
use crate::rest::{show, RestCommandError};

/// `vinfra events` (no arguments).
#[derive(Debug, Args)]
pub struct EventsArgs {}

/// `vinfra events`.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    _args: &EventsArgs,
) -> Result<(), RestCommandError> {
    show(out, &conn.client()?.events()?, |e| output::events(e))
}
