//! `GET /api/v1/ha`: the cluster's HA settings, each host's HA state as the HA controller last
//! assessed it (`Console::ha_board`), and the admission reserve ([`crate::fit::reserve`]).

use std::collections::HashMap;
use std::time::Instant;

use vinfra_ha::ScenarioReport;
use vinfra_types::ha::{
    HaReserve, HaRestartNeed, HaScenario, HaStatus, HostHaStatus, LeaseStamp,
    RESERVE_LIST_ALL_UP_TO,
};

use crate::error::Error;
use crate::fit;
use crate::state::Console;

/// The cluster's HA status (see the module doc).
pub async fn status(console: &Console) -> Result<HaStatus, Error> {
    let settings = console.settings().ha;
    let board = console.ha_board().all();
    let now = Instant::now();
    let hosts = console
        .host_names()
        .into_iter()
        .map(|name| match board.get(&name) {
            Some(e) => HostHaStatus {
                state: e.state.to_string(),
                detail: e.detail.clone(),
                for_s: now.saturating_duration_since(e.since).as_secs(),
                lease: e.lease.map(|(incarnation, counter)| LeaseStamp {
                    incarnation,
                    counter,
                }),
                name,
            },
            None => HostHaStatus {
                name,
                state: "unknown".into(),
                detail: "not assessed yet".into(),
                for_s: 0,
                lease: None,
            },
        })
        .collect();
    let (report, ha_vms) = fit::reserve(console).await?;
    let tolerate = settings.tolerate_host_failures;
    let reserve = match report {
        None => HaReserve {
            tolerate,
            enforced: false,
            holds: true,
            ha_vms,
            scenarios_total: 0,
            scenarios_holding: 0,
            scenarios: Vec::new(),
        },
        Some(r) => {
            let total = r.scenarios.len();
            let holding = r.scenarios.iter().filter(|s| s.holds()).count();
            let all = total <= RESERVE_LIST_ALL_UP_TO;
            let listed: Vec<&ScenarioReport> =
                r.scenarios.iter().filter(|s| all || !s.holds()).collect();
            let sizes = sizes(console, &listed);
            HaReserve {
                tolerate,
                enforced: true,
                holds: holding == total,
                ha_vms,
                scenarios_total: total,
                scenarios_holding: holding,
                scenarios: listed.into_iter().map(|s| scenario(s, &sizes)).collect(),
            }
        }
    };
    Ok(HaStatus {
        settings,
        hosts,
        reserve,
    })
}

/// The size of every VM the scenarios name, from the mirrors.
fn sizes(console: &Console, listed: &[&ScenarioReport]) -> HashMap<String, (u32, u64)> {
    console.with_vms(|vms| {
        listed
            .iter()
            .flat_map(|s| s.restarts.iter().map(|(v, _)| v).chain(&s.unplaced))
            .filter_map(|v| {
                let spec = &vms.get(v)?.value.spec;
                Some((v.clone(), (spec.vcpus, spec.memory_mib)))
            })
            .collect()
    })
}

/// One scenario for the API: the VMs placed first, then those left unplaced.
fn scenario(s: &ScenarioReport, sizes: &HashMap<String, (u32, u64)>) -> HaScenario {
    let need = |vm: &String, on: Option<&String>| {
        let (vcpus, memory_mib) = sizes.get(vm).copied().unwrap_or_default();
        HaRestartNeed {
            vm: vm.clone(),
            vcpus,
            memory_mib,
            restarts_on: on.cloned(),
        }
    };
    HaScenario {
        failed: s.failed.clone(),
        holds: s.holds(),
        vms: s
            .restarts
            .iter()
            .map(|(v, h)| need(v, Some(h)))
            .chain(s.unplaced.iter().map(|v| need(v, None)))
            .collect(),
        demand_vcpus: s.demand.vcpus,
        demand_memory_mib: s.demand.memory_mib,
        shortfall_vcpus: s.shortfall.vcpus,
        shortfall_memory_mib: s.shortfall.memory_mib,
    }
}
