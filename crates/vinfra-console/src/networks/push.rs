//! Sending each host its switch configuration (`ApplySwitchConfig`): [`push`] to one host and
//! waits, [`push_all`] to every connected host. Pushes to one host are serialized (computed and
//! sent under a per-host lock), so a host never gets an older configuration after a newer one.

use std::collections::BTreeSet;
use std::sync::Arc;

use vinfra_proto::{AgentCommand, HostSwitchConfig};
use vinfra_types::HostStatus;

use super::config::{config_scope, switch_config};
use crate::error::Error;
use crate::state::records::VmRecord;
use crate::state::{Console, SHORT_TIMEOUT};

/// The switch configuration of one registered host, from the console's records; a VM being
/// migrated counts on its destination too.
pub fn host_config(console: &Console, host: &str) -> Result<HostSwitchConfig, Error> {
    console.host(host)?;
    let migrating: Vec<(String, String)> = console
        .inflight()
        .migrations()
        .iter()
        .map(|m| (m.vm.clone(), m.destination.clone()))
        .collect();
    // The VMs placed here, then those arriving (each once).
    let mut here = console.vms_on(host);
    for (vm, to) in &migrating {
        if to == host && !here.iter().any(|r| &r.spec.name == vm) {
            if let Ok(rec) = console.vm(vm) {
                here.push(rec.value);
            }
        }
    }
    // Without a port of its own (a NIC of a VM placed there or arriving) nor a router's edge,
    // a host's switch carries no network: the configuration has only the underlay peers,
    // whatever the other records say.
    let has_port = |rec: &VmRecord| {
        rec.spec
            .nics
            .iter()
            .any(|n| n.ip.is_some() && n.mac.is_some())
    };
    let routers: Vec<_> = console
        .routers()?
        .into_iter()
        .map(|v| v.value.router)
        .collect();
    let edge_here = routers.iter().any(|r| {
        r.uplink
            .as_ref()
            .is_some_and(|u| u.edge.as_deref() == Some(host))
    });
    if !edge_here && !here.iter().any(has_port) {
        return Ok(HostSwitchConfig {
            underlay_peers: console.underlay_peers_of(host),
            ..HostSwitchConfig::default()
        });
    }
    let groups: Vec<_> = console
        .security_groups()?
        .into_iter()
        .map(|v| v.value.group)
        .collect();
    // Only the records the configuration reads: the VMs on its networks or in the groups its
    // firewalls name, not every VM.
    let scope = config_scope(host, &here, &groups, &routers);
    let names: BTreeSet<&str> = here.iter().map(|r| r.spec.name.as_str()).collect();
    let vms = console.vms_with(&names, &scope.networks, &scope.remote_groups);
    Ok(switch_config(
        host,
        &console.underlay(),
        &console.networks_named(&scope.networks),
        &vms,
        &groups,
        &routers,
        &migrating,
    ))
}

/// Computes `host`'s switch configuration and sends it to its agent, waiting for the answer.
/// A configuration equal to the one the host's agent last applied on the same connection is not
/// sent again (a new connection gets it whole: its agent may have restarted), so the periodic
/// resync of every host costs no message for hosts whose configuration did not change.
pub async fn push(console: &Console, host: &str) -> Result<(), Error> {
    let gate = console.inflight().switch_push_gate(host);
    let mut last = gate.lock().await;
    let config = host_config(console, host)?;
    let conn = console.agents().connection_id(host);
    if let (Some(now), Some((then, applied))) = (conn, last.as_ref()) {
        if now == *then && *applied == config {
            return Ok(());
        }
    }
    // Whatever happens below, what the agent holds is no longer known.
    *last = None;
    let cmd = AgentCommand::ApplySwitchConfig {
        config: config.clone(),
    };
    console.agents().request(host, cmd, SHORT_TIMEOUT).await?;
    // The request went to the connection that was current when it was sent; if that changed
    // since `conn` was read, the next push finds another id and sends again.
    *last = conn.map(|c| (c, config));
    Ok(())
}

/// Pushes the configuration of every connected host, concurrently; failures are logged.
pub async fn push_all(console: &Console) {
    let hosts: Vec<String> = console
        .host_names()
        .into_iter()
        .filter(|h| console.agents().status(h) == HostStatus::Connected)
        .collect();
    let pushes = hosts.iter().map(|h| async move {
        if let Err(e) = push(console, h).await {
            tracing::warn!(
                host = h.as_str(),
                "switch configuration not applied: {}",
                vinfra_types::error::Chain(&e)
            );
        }
    });
    futures::future::join_all(pushes).await;
}

/// Pushes every connected host's configuration in a background task.
pub fn push_all_later(console: &Arc<Console>) {
    let console = console.clone();
    tokio::spawn(crate::state::events::inherit(async move {
        push_all(&console).await
    }));
}
