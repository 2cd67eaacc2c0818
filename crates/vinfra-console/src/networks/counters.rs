//! Traffic counters read now from the hosts' switches: one host's ([`host_switch_counters`]) and
//! one network's across the hosts with a NIC on it ([`counters`]).

use std::collections::{BTreeMap, BTreeSet};

use vinfra_proto::{AgentCommand, CommandError, CommandReply};
use vinfra_types::network::{
    HostSwitchCounters, NetworkCounters, NetworkHostCounters, NetworkPortCounters, NetworkTotal,
};

use super::crud::show;
use crate::agents::RequestError;
use crate::error::Error;
use crate::state::Console;

/// How long the console waits for a host's switch counters.
pub const COUNTERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The counters of a registered host's switch, read now through its agent
/// (`AgentCommand::SwitchCounters`, at most [`COUNTERS_TIMEOUT`]).
pub async fn host_switch_counters(
    console: &Console,
    host: &str,
) -> Result<HostSwitchCounters, Error> {
    console.host(host)?;
    Ok(ask_counters(console, host).await?)
}

async fn ask_counters(console: &Console, host: &str) -> Result<HostSwitchCounters, RequestError> {
    match console
        .agents()
        .request(host, AgentCommand::SwitchCounters, COUNTERS_TIMEOUT)
        .await?
    {
        CommandReply::SwitchCounters { counters } => Ok(counters),
        other => Err(RequestError::Agent {
            host: host.to_string(),
            source: CommandError::Host {
                detail: format!("unexpected reply {other:?}"),
            },
        }),
    }
}

/// A network's traffic: every host with a VM NIC on it is asked for its switch counters at the
/// same time (each within [`COUNTERS_TIMEOUT`]); the answers give each port's counters, each
/// host's counters for the network (ARP answers, floods and refused learning included) and
/// their sum over the hosts that answered. A host that is disconnected, fails or does not
/// answer in time has its ports (and itself) shown without counters, with the reason, rather
/// than failing the whole call (the total counts it as missing).
pub async fn counters(console: &Console, name: &str) -> Result<NetworkCounters, Error> {
    let summary = show(console, name)?;
    let hosts: BTreeSet<&str> = summary
        .ports
        .iter()
        .map(|p| p.host.as_str())
        .filter(|h| !h.is_empty())
        .collect();
    let answers: BTreeMap<&str, Result<HostSwitchCounters, String>> =
        futures::future::join_all(hosts.iter().map(|h| async move {
            (
                *h,
                ask_counters(console, h)
                    .await
                    .map_err(|e| vinfra_types::error::chain(&e)),
            )
        }))
        .await
        .into_iter()
        .collect();
    let ports = summary
        .ports
        .iter()
        .map(|p| {
            let found = match answers.get(p.host.as_str()) {
                None => Err("the VM is not placed on a host".to_string()),
                Some(Err(e)) => Err(e.clone()),
                Some(Ok(c)) => {
                    let id = console.vm(&p.vm).ok().map(|v| v.value.id);
                    c.ports
                        .iter()
                        .find(|c| Some(c.vm_id) == id && c.nic == p.nic)
                        .map(|c| c.traffic.clone())
                        .ok_or_else(|| {
                            format!(
                                "no port for this NIC on host '{}' (the VM does not run there)",
                                p.host
                            )
                        })
                }
            };
            let (counters, error) = match found {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e)),
            };
            NetworkPortCounters {
                port: p.clone(),
                counters,
                error,
            }
        })
        .collect();
    let mut total = NetworkTotal::default();
    let hosts = answers
        .iter()
        .map(|(host, answer)| match answer {
            Ok(c) => {
                // A switch without the network (no port of it there yet) counts nothing.
                let n = c
                    .networks
                    .iter()
                    .find(|n| n.network == name)
                    .cloned()
                    .unwrap_or_default();
                total.traffic.add(&n.traffic);
                total.arp_suppressed = total.arp_suppressed.saturating_add(n.arp_suppressed);
                total.flooded = total.flooded.saturating_add(n.flooded);
                total.learning_refused = total.learning_refused.saturating_add(n.learning_refused);
                total.hosts_counted = total.hosts_counted.saturating_add(1);
                NetworkHostCounters {
                    host: host.to_string(),
                    counters: Some(n.traffic),
                    arp_suppressed: Some(n.arp_suppressed),
                    flooded: Some(n.flooded),
                    learning_refused: Some(n.learning_refused),
                    error: None,
                }
            }
            Err(e) => {
                total.hosts_missing = total.hosts_missing.saturating_add(1);
                NetworkHostCounters {
                    host: host.to_string(),
                    counters: None,
                    arp_suppressed: None,
                    flooded: None,
                    learning_refused: None,
                    error: Some(e.clone()),
                }
            }
        })
        .collect();
    Ok(NetworkCounters {
        network: summary.network.name,
        ports,
        hosts,
        total,
    })
}
