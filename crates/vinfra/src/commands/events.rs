//! `vinfra events`: the event history, all of it or the events of a kind, about a VM, about a
//! host.

use clap::Args;
use vinfra_types::filter::EventFilter;

use crate::config::ConnectionOverrides;
use crate::output::{self, Output};
use crate::rest::{name_arg, show, RestCommandError};

/// `vinfra events [--kind K] [--vm V] [--host H]`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only the events of this kind (vm, host, migration, drs, network, router,
    /// security-group, rule, token, cluster, certificate: the KIND column).
    #[arg(long, value_parser = name_arg)]
    pub kind: Option<String>,
    /// Only the events about this VM (kinds vm, migration and drs).
    #[arg(long, value_parser = name_arg)]
    pub vm: Option<String>,
    /// Only the events about this host (kind host).
    #[arg(long, value_parser = name_arg)]
    pub host: Option<String>,
}

/// `vinfra events`.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    args: &EventsArgs,
) -> Result<(), RestCommandError> {
    let filter = EventFilter {
        kind: args.kind.clone(),
        vm: args.vm.clone(),
        host: args.host.clone(),
    };
    show(out, &conn.client()?.events_where(&filter)?, |e| {
        output::events(e)
    })
}
