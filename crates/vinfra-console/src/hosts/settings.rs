//! The cluster settings (`/vinfra/settings`): allocation ratios, migration tuning, balancing,
//! high availability, flows.

use vinfra_types::api::ClusterSettings;

use vinfra_types::error::Chain;

use crate::error::Error;
use crate::state::{Console, SHORT_TIMEOUT};

/// The settings in force.
pub fn get(console: &Console) -> ClusterSettings {
    console.settings()
}

/// Checks and replaces the settings; records what they are now and wakes the balancer.
pub fn put(console: &Console, settings: ClusterSettings) -> Result<ClusterSettings, Error> {
    settings
        .validate()
        .map_err(|reason| Error::Settings { reason })?;
    if let Some(model) = &settings.cpu_baseline {
        if console.cpu_baseline().as_ref() != Some(model) {
            crate::fit::platform::check_baseline(console, model)?;
        }
    }
    let before = console.settings().ha.isolation_response;
    let collector_before = console.settings().flows.ipfix_collector;
    console.put_settings(&settings)?;
    if settings.flows.ipfix_collector != collector_before {
        // Every agent exports its host's flows to the collector.
        let command = super::joins::flow_export_command(console);
        for host in console.host_names() {
            let (agents, command) = (console.agents().clone(), command.clone());
            tokio::spawn(crate::state::events::inherit(async move {
                if let Err(e) = agents.request(&host, command, SHORT_TIMEOUT).await {
                    tracing::debug!(host, "IPFIX collector not sent: {}", Chain(&e));
                }
            }));
        }
    }
    if settings.ha.isolation_response != before {
        // Every agent passes the cluster's isolation response on to its guard.
        let command = super::joins::ha_command(console);
        for host in console.host_names() {
            let (agents, command) = (console.agents().clone(), command.clone());
            tokio::spawn(crate::state::events::inherit(async move {
                if let Err(e) = agents.request(&host, command, SHORT_TIMEOUT).await {
                    tracing::debug!(host, "HA settings not sent: {}", Chain(&e));
                }
            }));
        }
    }
    let bandwidth = settings
        .migration_max_bandwidth_mib
        .map_or("unlimited".to_string(), |b| format!("{b} MiB/s"));
    console.event(
        "settings",
        "cluster",
        format!(
            "ratios cpu {} memory {}, migration bandwidth {bandwidth}, downtime limit {} ms",
            settings.ratios.cpu,
            settings.ratios.memory,
            settings.effective_downtime_limit_ms()
        ),
    );
    let b = &settings.balancing;
    console.event(
        "settings",
        "cluster",
        format!(
            "balancing {} level {} every {} s, at most {} moves per host and {} in all, \
             hysteresis {} min",
            b.mode.as_str(),
            b.level,
            b.interval_s,
            b.max_moves_per_host,
            b.max_moves_total,
            b.hysteresis_minutes
        ),
    );
    let h = &settings.ha;
    console.event(
        "settings",
        "cluster",
        format!(
            "HA: tolerate {} host failures, isolation response {}, fence isolated hosts {}",
            h.tolerate_host_failures,
            h.isolation_response,
            if h.fence_isolated {
                format!("after {} s", h.isolation_fence_after_s)
            } else {
                "off".to_string()
            }
        ),
    );
    console.event(
        "settings",
        "cluster",
        match &settings.cpu_baseline {
            Some(m) => format!("CPU baseline {m} for VMs created from now on"),
            None => "no CPU baseline: VMs created from now on run with their host's CPU".into(),
        },
    );
    let f = &settings.flows;
    console.event(
        "settings",
        "cluster",
        format!(
            "flows: IPFIX collector {}, balancer traffic over {} min",
            f.ipfix_collector
                .map_or("none".to_string(), |c| c.to_string()),
            f.traffic_minutes
        ),
    );
    console.inflight().balancer.wake();
    Ok(settings)
}
