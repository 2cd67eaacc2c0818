//! Traffic counters read now from the hosts' switches: one host's ([`host_switch_counters`]),
//! one network's across the hosts with a NIC on it ([`counters`]), one VM's NIC ports on its
//! host's ([`vm_counters`]) and one security group's rule hits across the hosts running its NICs
//! ([`security_group_counters`]).

use std::collections::{BTreeMap, BTreeSet};

use vinfra_proto::{AgentCommand, CommandError, CommandReply};
use vinfra_types::network::{
    HostSwitchCounters, NetworkCounters, NetworkHostCounters, NetworkPortCounters, NetworkTotal,
    VmCounters, VmNicCounters,
};
use vinfra_types::security_group::{SecurityGroupCounters, SgMember, SgMemberCounters, SgRuleHits};

use super::crud::show;
use crate::agents::RequestError;
use crate::error::Error;
use crate::state::{Console, ANSWER_WITHIN};

/// How long the console waits for a host's switch counters: they are read for requests
/// answered at once, within 1 s ([`ANSWER_WITHIN`]; the hosts of one request are asked at the
/// same time).
pub const COUNTERS_TIMEOUT: std::time::Duration = ANSWER_WITHIN;

/// The counters of a registered host's switch, read now through its agent
/// (`AgentCommand::SwitchCounters`, at most [`COUNTERS_TIMEOUT`]: a host slower than that is
/// [`RequestError::Timeout`], `host 'h1' did not answer within 1 s`).
pub async fn host_switch_counters(
    console: &Console,
    host: &str,
) -> Result<HostSwitchCounters, Error> {
    console.host(host)?;
    Ok(ask_counters(console, host).await?)
}

/// A host's switch counters through its agent, at most [`COUNTERS_TIMEOUT`].
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

/// VM `name`'s NIC ports on the switch of the host its record names, read now (at most
/// [`COUNTERS_TIMEOUT`]). A NIC without a port there (the VM does not run, or the NIC has no
/// address) or a host that cannot be asked has no counters and says why; an unknown VM is an
/// error.
pub async fn vm_counters(console: &Console, name: &str) -> Result<VmCounters, Error> {
    let rec = console.vm(name)?.value;
    let answer = ask_counters(console, &rec.host)
        .await
        .map_err(|e| vinfra_types::error::chain(&e));
    let nics = rec
        .spec
        .nics
        .iter()
        .enumerate()
        .map(|(nic, n)| {
            let found = match &answer {
                Err(e) => Err(e.clone()),
                Ok(c) => c
                    .ports
                    .iter()
                    .find(|p| p.vm_id == rec.id && p.nic == nic)
                    .map(|p| p.traffic.clone())
                    .ok_or_else(|| {
                        format!(
                            "no port for this NIC on host '{}' (the VM does not run there)",
                            rec.host
                        )
                    }),
            };
            let (counters, error) = match found {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e)),
            };
            VmNicCounters {
                nic,
                network: n.network.clone(),
                mac: n.mac.clone().unwrap_or_default(),
                counters,
                error,
            }
        })
        .collect();
    Ok(VmCounters {
        vm: rec.spec.name.clone(),
        host: rec.host.clone(),
        nics,
    })
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

/// A group's rule hits and its NICs' connections, read now from the switch of each host that
/// runs a VM with a NIC in the group (all asked at once, each within
/// [`COUNTERS_TIMEOUT`]). A rule's hits are summed over the NICs
/// counted; a NIC whose host does not answer, or whose switch has no port for it (a stopped
/// VM) or no firewall from this group yet, is listed with the reason and adds nothing.
pub async fn security_group_counters(
    console: &Console,
    name: &str,
) -> Result<SecurityGroupCounters, Error> {
    let summary = crate::security_groups::show(console, name)?;
    let placed: Vec<(SgMember, Option<(uuid::Uuid, String)>)> = summary
        .members
        .iter()
        .map(|m| {
            let vm = console
                .vm(&m.vm)
                .ok()
                .map(|r| (r.value.id, r.value.host.clone()));
            (m.clone(), vm)
        })
        .collect();
    let hosts: BTreeSet<String> = placed
        .iter()
        .filter_map(|(_, vm)| vm.as_ref().map(|(_, h)| h.clone()))
        .filter(|h| !h.is_empty())
        .collect();
    let answers: BTreeMap<String, Result<vinfra_types::network::HostSwitchCounters, String>> =
        futures::future::join_all(hosts.into_iter().map(|h| async move {
            let answer = ask_counters(console, &h)
                .await
                .map_err(|e| vinfra_types::error::chain(&e));
            (h, answer)
        }))
        .await
        .into_iter()
        .collect();
    let mut hits: BTreeMap<u32, u64> = summary.group.rules.iter().map(|r| (r.id, 0)).collect();
    let members = placed
        .into_iter()
        .map(|(member, vm)| {
            let host = vm.as_ref().map(|(_, h)| h.clone()).unwrap_or_default();
            let firewall = match (&vm, answers.get(&host)) {
                (None, _) | (Some(_), None) => Err("the VM is not placed on a host".to_string()),
                (Some(_), Some(Err(e))) => Err(e.clone()),
                (Some((id, _)), Some(Ok(c))) => c
                    .ports
                    .iter()
                    .find(|p| p.vm_id == *id && p.nic == member.nic)
                    .ok_or_else(|| {
                        format!("no port for this NIC on host '{host}' (the VM does not run there)")
                    })
                    .and_then(|p| {
                        p.firewall.clone().ok_or_else(|| {
                            format!("the NIC's port on host '{host}' has no firewall yet")
                        })
                    }),
            };
            let (connections, error) = match firewall {
                Ok(f) => {
                    for r in f.rules.iter().filter(|r| r.group == name) {
                        if let Some(h) = hits.get_mut(&r.rule_id) {
                            *h = h.saturating_add(r.hits);
                        }
                    }
                    (Some(f.connections), None)
                }
                Err(e) => (None, Some(e)),
            };
            SgMemberCounters {
                member,
                host,
                connections,
                error,
            }
        })
        .collect();
    Ok(SecurityGroupCounters {
        group: summary.group.name.clone(),
        rules: summary
            .group
            .rules
            .iter()
            .map(|r| SgRuleHits {
                rule_id: r.id,
                hits: hits.get(&r.id).copied().unwrap_or(0),
            })
            .collect(),
        members,
    })
}
