//! `GET /metrics` (docs/design.md, "Metrics"): the gauges computed now, from the console's
//! mirrors (VMs, hosts), the agents' latest reports, the task board and the migrations in
//! flight (no store read), then the whole text of the console's recorder ([`crate::metrics`]).

use crate::hosts;
use crate::metrics::Gauges;
use crate::state::Console;
use crate::vms;

/// The text of `GET /metrics` (the Prometheus text format).
pub fn scrape(console: &Console) -> String {
    let (desired, observed) = vms::views::state_counts(console);
    let gauges = Gauges {
        vms_desired: desired.into_iter().map(|(s, n)| (s.as_str(), n)).collect(),
        vms_observed: observed.into_iter().map(|(s, n)| (s.as_str(), n)).collect(),
        hosts: hosts::crud::status_counts(console),
        tasks_running: console
            .tasks()
            .running_by_kind()
            .into_iter()
            .map(|(k, n)| (k.as_str(), n))
            .collect(),
        migrations_running: console.inflight().migrations().len() as u64,
    };
    console.metrics().render(&gauges)
}
