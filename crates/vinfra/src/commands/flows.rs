//! `vinfra flows …`: the traffic between the cluster's endpoints as the switches count it.

use clap::{Subcommand, ValueEnum};
use vinfra_types::flows::{
    FlowGrouping, FlowQuery, FlowReport, DEFAULT_FLOW_MINUTES, DEFAULT_FLOW_TOP,
};

use crate::config::ConnectionOverrides;
use crate::output::{self, Output};
use crate::rest::{show, RestCommandError};

/// How `vinfra flows top` groups the flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// One row per pair of endpoints (VMs by name, other addresses as they are).
    VmPair,
    /// One row per network.
    Network,
    /// One row per router (`-`: switched traffic).
    Router,
    /// One row per direction.
    Direction,
}

impl From<GroupBy> for FlowGrouping {
    fn from(g: GroupBy) -> Self {
        match g {
            GroupBy::VmPair => FlowGrouping::VmPair,
            GroupBy::Network => FlowGrouping::Network,
            GroupBy::Router => FlowGrouping::Router,
            GroupBy::Direction => FlowGrouping::Direction,
        }
    }
}

/// `vinfra flows …`.
#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// The largest flows of the last minutes, grouped: bytes, packets and flows per group and
    /// direction (east-west or north-south).
    Top {
        /// The window: the last N minutes (1 to 60).
        #[arg(long, default_value_t = DEFAULT_FLOW_MINUTES, value_name = "N")]
        minutes: u32,
        /// Rows per pair of VMs, network, router or direction.
        #[arg(long, value_enum, default_value = "vm-pair")]
        by: GroupBy,
        /// At most K rows, the largest by bytes first (1 to 1000).
        #[arg(long, default_value_t = DEFAULT_FLOW_TOP, value_name = "K")]
        top: u32,
    },
}

/// The table of `vinfra flows top`.
pub fn table(r: &FlowReport) -> String {
    let first = match r.by {
        FlowGrouping::VmPair => "PAIR",
        FlowGrouping::Network => "NETWORK",
        FlowGrouping::Router => "ROUTER",
        FlowGrouping::Direction => "DIRECTION",
    };
    let mut t = output::table(&[first, "DIRECTION", "BYTES", "PACKETS", "FLOWS"]);
    for row in &r.rows {
        t.add_row(vec![
            row.key.clone(),
            row.direction.as_str().to_string(),
            output::bytes(row.bytes),
            row.packets.to_string(),
            row.flows.to_string(),
        ]);
    }
    let mut text = output::render(t);
    if r.rows.is_empty() {
        text = format!("no flows in the last {} minutes\n", r.minutes);
    }
    if r.untracked_packets > 0 {
        text.push_str(&format!(
            "{} packets not counted in a flow (flow tables full)\n",
            r.untracked_packets
        ));
    }
    text
}

/// `vinfra flows …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &FlowsCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        FlowsCommand::Top { minutes, by, top } => {
            let query = FlowQuery {
                minutes: *minutes,
                by: (*by).into(),
                top: *top,
            };
            show(out, &conn.client()?.flows(&query)?, table)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use vinfra_types::flows::{FlowRow, TrafficDirection};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: FlowsCommand,
    }

    #[test]
    fn top_takes_defaults_and_checks_its_arguments() {
        let Cli {
            cmd: FlowsCommand::Top { minutes, by, top },
        } = Cli::try_parse_from(["flows", "top"]).unwrap();
        assert_eq!((minutes, by, top), (5, GroupBy::VmPair, 10));
        let Cli {
            cmd: FlowsCommand::Top { minutes, by, top },
        } = Cli::try_parse_from([
            "flows",
            "top",
            "--minutes",
            "60",
            "--by",
            "router",
            "--top",
            "3",
        ])
        .unwrap();
        assert_eq!((minutes, by, top), (60, GroupBy::Router, 3));
        assert!(Cli::try_parse_from(["flows", "top", "--by", "host"]).is_err());
        assert!(Cli::try_parse_from(["flows", "top", "--minutes", "x"]).is_err());
    }

    #[test]
    fn the_table_shows_each_row_and_the_untracked_packets() {
        let r = FlowReport {
            minutes: 5,
            by: FlowGrouping::VmPair,
            rows: vec![FlowRow {
                key: "db <-> web".into(),
                a: Some("db".into()),
                b: Some("web".into()),
                direction: TrafficDirection::EastWest,
                bytes: 3 * 1024 * 1024,
                packets: 2100,
                flows: 2,
            }],
            untracked_packets: 7,
        };
        let t = table(&r);
        assert!(t.contains("PAIR") && t.contains("db <-> web"), "{t}");
        assert!(
            t.contains("east-west") && t.contains("3.0 MiB") && t.contains("2100"),
            "{t}"
        );
        assert!(t.contains("7 packets not counted"), "{t}");
        let empty = FlowReport {
            rows: vec![],
            untracked_packets: 0,
            ..r
        };
        assert_eq!(table(&empty), "no flows in the last 5 minutes\n");
    }
}
