//! `vinfra settings …`: the cluster's default allocation ratios, live-migration tuning and
//! flow settings (IPFIX collector, the balancer's traffic window).

use clap::Subcommand;

use crate::config::ConnectionOverrides;
use crate::output::{self, Output};
use crate::parse;
use crate::rest::{show, RestCommandError};

/// `vinfra settings …`.
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show the cluster settings.
    Show,
    /// Change the default allocation ratios and the live-migration tuning.
    Set {
        /// vCPUs per physical core.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        cpu_ratio: Option<f64>,
        /// Guest memory per physical memory.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        memory_ratio: Option<f64>,
        /// Bandwidth cap of a live migration per second: `100M`, `1G` (a plain number is MiB),
        /// or `unlimited`.
        #[arg(long, value_parser = parse::migration_bandwidth, allow_hyphen_values = true, value_name = "SIZE|unlimited")]
        migration_bandwidth: Option<parse::Bandwidth>,
        /// Longest pause at a migration's switchover: `300ms`, `1s` (a plain number is ms),
        /// 10ms to 60s.
        #[arg(long, value_parser = parse::migration_downtime, allow_hyphen_values = true, value_name = "DURATION")]
        migration_downtime: Option<u64>,
        /// Auto-converge during a live migration: `on` (the default) slows a guest whose
        /// memory changes faster than the link carries it until the migration can end; `off`
        /// lets such a migration run until it is cancelled.
        #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
        migration_auto_converge: Option<bool>,
        /// Encrypted, authenticated live migrations (TLS with certificates issued for each
        /// migration): `on` (the default) or `off` (plain TCP, for a trusted migration network).
        #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
        migration_encryption: Option<bool>,
        /// The cluster's CPU baseline: a QEMU CPU model every VM created from now on runs
        /// with, so it can move between hosts with different CPUs (every host must list it:
        /// `vinfra host show NAME`), or `none` (VMs run with their host's CPU under KVM).
        #[arg(long, value_parser = parse_baseline, value_name = "MODEL|none")]
        cpu_baseline: Option<Baseline>,
        /// The IPFIX collector every agent exports its host's flows to (`ADDRESS:PORT`, UDP),
        /// or `none`.
        #[arg(long, value_parser = parse_collector, value_name = "ADDRESS:PORT|none")]
        ipfix_collector: Option<Collector>,
        /// Minutes of flows the balancer's traffic matrix covers (1 to 60).
        #[arg(long, value_name = "N")]
        traffic_minutes: Option<u32>,
    },
}

/// `--ipfix-collector`: an address or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collector(pub Option<std::net::SocketAddr>);

/// A CPU baseline, or none.
#[derive(Debug, Clone)]
pub struct Baseline(Option<String>);

fn parse_baseline(s: &str) -> Result<Baseline, String> {
    if s == "none" {
        return Ok(Baseline(None));
    }
    vinfra_types::api::validate_cpu_baseline(s)?;
    Ok(Baseline(Some(s.to_string())))
}

fn parse_collector(s: &str) -> Result<Collector, String> {
    if s == "none" {
        return Ok(Collector(None));
    }
    s.parse()
        .map(|a| Collector(Some(a)))
        .map_err(|_| format!("expected ADDRESS:PORT or none, got '{s}'"))
}

/// `vinfra settings …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &SettingsCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        SettingsCommand::Show => show(out, &conn.client()?.settings()?, output::settings),
        SettingsCommand::Set {
            cpu_ratio,
            memory_ratio,
            migration_bandwidth,
            migration_downtime,
            migration_auto_converge,
            migration_encryption,
            cpu_baseline,
            ipfix_collector,
            traffic_minutes,
        } => {
            if cpu_ratio.is_none()
                && memory_ratio.is_none()
                && migration_bandwidth.is_none()
                && migration_downtime.is_none()
                && migration_auto_converge.is_none()
                && migration_encryption.is_none()
                && cpu_baseline.is_none()
                && ipfix_collector.is_none()
                && traffic_minutes.is_none()
            {
                return Err(RestCommandError::NothingToChange(
                    "--cpu-ratio, --memory-ratio, --migration-bandwidth, \
                     --migration-downtime, --migration-auto-converge, --migration-encryption, \
                     --cpu-baseline, --ipfix-collector and/or --traffic-minutes",
                ));
            }
            let api = conn.client()?;
            let mut s = api.settings()?;
            s.ratios.cpu = cpu_ratio.unwrap_or(s.ratios.cpu);
            s.ratios.memory = memory_ratio.unwrap_or(s.ratios.memory);
            if let Some(b) = migration_bandwidth {
                s.migration_max_bandwidth_mib = b.as_setting();
            }
            if let Some(d) = migration_downtime {
                s.migration_downtime_limit_ms = Some(*d);
            }
            if let Some(a) = migration_auto_converge {
                s.migration_auto_converge = Some(*a);
            }
            if let Some(e) = migration_encryption {
                s.migration_encrypted = Some(*e);
            }
            if let Some(Baseline(b)) = cpu_baseline {
                s.cpu_baseline = b.clone();
            }
            if let Some(Collector(c)) = ipfix_collector {
                s.flows.ipfix_collector = *c;
            }
            if let Some(m) = traffic_minutes {
                s.flows.traffic_minutes = *m;
            }
            show(out, &api.put_settings(&s)?, output::settings)
        }
    }
}
