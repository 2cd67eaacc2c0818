//! Edge election (docs/design.md, "North-south: where NAT runs"): each router with an uplink
//! has one edge host, whose switch translates the router's north-south traffic, and a standby
//! (the host that would take over next; shown only).
//!
//! [`elect`] is the decision, pure: a router keeps its edge while that host is not lost (no
//! flapping: a ready edge is never moved to balance); a router without an edge, or whose edge
//! is lost, gets the ready host with the fewest edges (ties by name); a host in maintenance or
//! without a trunk gives its edges to a ready host when there is one. [`edge_hosts`] reads how
//! each host stands from the console: lost is the signal HA uses (its state failed or fenced),
//! or a disconnection longer than [`AGENT_GRACE`]. [`tick`] applies the decision: a changed edge
//! or standby is written to the router's record with an event; the edge controller
//! (`crate::controllers::edge`) runs it every [`TICK`] and pushes every connected host's switch
//! configuration after an edge moved.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vinfra_types::router::RouterSummary;
use vinfra_types::HostStatus;

use super::{concurrent, update};
use crate::state::events::event;
use crate::state::Console;

/// How often the edge controller looks at the hosts.
pub const TICK: Duration = Duration::from_secs(1);

/// How long a disconnected host keeps its edges when HA does not call it failed first: the
/// time an agent may be away (restarted, upgraded) before its guard counts the host isolated.
pub const AGENT_GRACE: Duration = Duration::from_secs(60);

/// How a host stands for being a router's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeHealth {
    /// Connected, not in maintenance, with a trunk: may become an edge.
    Ready,
    /// Disconnected for less than the grace: keeps the edges it has, gets no new one.
    Held,
    /// In maintenance or without a trunk: its edges move to a ready host when there is one.
    Draining,
    /// Lost (failed or fenced, disconnected past the grace, no longer registered): its edges
    /// move, to no host if none is ready.
    Lost,
}

/// A host as the election sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeHost {
    /// The host.
    pub name: String,
    /// How it stands.
    pub health: EdgeHealth,
    /// Why, in words (`HA state failed`, `in maintenance`), for the events.
    pub why: String,
}

/// One router's edge and standby as elected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeChoice {
    /// The router.
    pub router: String,
    /// Its edge host; none when no host can be.
    pub edge: Option<String>,
    /// Its standby; none when no other host is ready.
    pub standby: Option<String>,
}

/// Elects the edge and standby of each router of `routers` (`(router, current edge)`, the
/// routers with an uplink) over `hosts` (see the module doc); the choices in router name order.
/// A current edge that is not one of `hosts` counts as lost.
pub fn elect(routers: &[(&str, Option<&str>)], hosts: &[EdgeHost]) -> Vec<EdgeChoice> {
    let health = |h: &str| {
        hosts
            .iter()
            .find(|x| x.name == h)
            .map_or(EdgeHealth::Lost, |x| x.health)
    };
    let mut ready: Vec<&str> = hosts
        .iter()
        .filter(|h| h.health == EdgeHealth::Ready)
        .map(|h| h.name.as_str())
        .collect();
    ready.sort_unstable();
    ready.dedup();
    let mut sorted: Vec<(&str, Option<&str>)> = routers.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut edges: BTreeMap<&str, usize> = BTreeMap::new();
    let mut chosen: Vec<Option<&str>> = sorted
        .iter()
        .map(|(_, current)| {
            let keep = current.filter(|h| match health(h) {
                EdgeHealth::Ready | EdgeHealth::Held => true,
                EdgeHealth::Draining => ready.is_empty(),
                EdgeHealth::Lost => false,
            })?;
            *edges.entry(keep).or_default() += 1;
            Some(keep)
        })
        .collect();
    let fewest = |edges: &BTreeMap<&str, usize>, except: Option<&str>| {
        ready
            .iter()
            .copied()
            .filter(|h| Some(*h) != except)
            .min_by_key(|h| (edges.get(h).copied().unwrap_or(0), *h))
    };
    for slot in chosen.iter_mut().filter(|c| c.is_none()) {
        if let Some(h) = fewest(&edges, None) {
            *edges.entry(h).or_default() += 1;
            *slot = Some(h);
        }
    }
    sorted
        .iter()
        .zip(chosen)
        .map(|((router, _), edge)| EdgeChoice {
            router: router.to_string(),
            edge: edge.map(str::to_string),
            standby: edge
                .and_then(|e| fewest(&edges, Some(e)))
                .map(str::to_string),
        })
        .collect()
}

/// How every registered host stands for being an edge, from the agent registry, the HA
/// controller's board and the host records. `started` is when the console started: a host
/// not heard from since counts as disconnected from then.
pub fn edge_hosts(console: &Console, started: Instant) -> Vec<EdgeHost> {
    console
        .host_records()
        .into_iter()
        .map(|h| {
            let (status, observed) = console.agents().observed(&h.name);
            let ha = console.ha_board().get(&h.name).map(|e| e.state);
            let (health, why) = if let Some(s @ ("failed" | "fenced")) = ha {
                (EdgeHealth::Lost, format!("HA state {s}"))
            } else if status == HostStatus::Disconnected {
                let away = observed.map_or(started, |o| o.heard).elapsed();
                let why = format!("disconnected for {} s", away.as_secs());
                if away > AGENT_GRACE {
                    (EdgeHealth::Lost, why)
                } else {
                    (EdgeHealth::Held, why)
                }
            } else if h.maintenance {
                (EdgeHealth::Draining, "in maintenance".into())
            } else if h.trunk.is_none() {
                (EdgeHealth::Draining, "no VLAN trunk".into())
            } else {
                (EdgeHealth::Ready, "ready".into())
            };
            EdgeHost {
                name: h.name,
                health,
                why,
            }
        })
        .collect()
}

/// The routers of `routers` with an uplink, with their current edges, for [`elect`].
fn wants(routers: &[RouterSummary]) -> Vec<(&str, Option<&str>)> {
    routers
        .iter()
        .filter_map(|r| {
            let u = r.uplink.as_ref()?;
            Some((r.name.as_str(), u.edge.as_deref()))
        })
        .collect()
}

/// The edge and standby [`elect`] gives router `name` among `routers` (whose uplinks are as
/// they are about to be written), with the hosts as they stand now (a host never heard from
/// is held, not lost: the controller decides that).
pub fn choose(
    console: &Console,
    routers: &[RouterSummary],
    name: &str,
) -> (Option<String>, Option<String>) {
    let hosts = edge_hosts(console, Instant::now());
    elect(&wants(routers), &hosts)
        .into_iter()
        .find(|c| c.router == name)
        .map_or((None, None), |c| (c.edge, c.standby))
}

/// The event of an edge change of a router, or none when only the standby changed.
fn edge_event(old: Option<&str>, new: Option<&str>, hosts: &[EdgeHost]) -> Option<String> {
    let why = |h: &str| {
        hosts.iter().find(|x| x.name == h).map_or_else(
            || format!("{h}: no longer registered"),
            |x| format!("{h}: {}", x.why),
        )
    };
    match (old, new) {
        (a, b) if a == b => None,
        (Some(a), Some(b)) => Some(format!("edge moved from {a} to {b} ({})", why(a))),
        (None, Some(b)) => Some(format!("edge elected: {b}")),
        (Some(a), None) => Some(format!(
            "edge {a} given up ({}); no host can be the edge now",
            why(a)
        )),
        (None, None) => None,
    }
}

/// One pass: elects every uplink's edge and writes the routers whose edge or standby changed
/// (an event when the edge did). True when an edge changed.
pub async fn tick(console: &Console, started: Instant) -> bool {
    let _routers = console.inflight().routers_lock().await;
    let all = match console.routers() {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!("edge election: {}", vinfra_types::error::Chain(&e));
            return false;
        }
    };
    let summaries: Vec<RouterSummary> = all.iter().map(|v| v.value.router.clone()).collect();
    let wanted = wants(&summaries);
    if wanted.is_empty() {
        // No uplink to elect an edge for: the hosts are not read (every host's record and
        // link each tick).
        return false;
    }
    let hosts = edge_hosts(console, started);
    let mut moved = false;
    for choice in elect(&wanted, &hosts) {
        let Some(cur) = all.iter().find(|v| v.value.router.name == choice.router) else {
            continue;
        };
        let Some(uplink) = cur.value.router.uplink.as_ref() else {
            continue;
        };
        if uplink.edge == choice.edge && uplink.standby == choice.standby {
            continue;
        }
        let told = edge_event(uplink.edge.as_deref(), choice.edge.as_deref(), &hosts);
        let mut rec = cur.value.clone();
        if let Some(u) = rec.router.uplink.as_mut() {
            u.edge = choice.edge.clone();
            u.standby = choice.standby.clone();
        }
        let result = match told {
            Some(message) => {
                moved = true;
                update(
                    console,
                    &choice.router,
                    cur.mod_revision,
                    &rec,
                    event("router", &choice.router, message),
                )
            }
            None => console
                .write_router(
                    &choice.router,
                    Some(cur.mod_revision),
                    Some(&rec),
                    Default::default(),
                    None,
                )
                .and_then(|ok| {
                    if ok {
                        Ok(())
                    } else {
                        Err(concurrent(&choice.router))
                    }
                }),
        };
        if let Err(e) = result {
            tracing::warn!(
                router = choice.router.as_str(),
                "edge election not written: {}",
                vinfra_types::error::Chain(&e)
            );
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, health: EdgeHealth) -> EdgeHost {
        EdgeHost {
            name: name.into(),
            health,
            why: format!("{health:?}"),
        }
    }

    fn ready(names: &[&str]) -> Vec<EdgeHost> {
        names.iter().map(|n| host(n, EdgeHealth::Ready)).collect()
    }

    /// `(router, edge, standby)` of each choice.
    fn flat(choices: &[EdgeChoice]) -> Vec<(&str, Option<&str>, Option<&str>)> {
        choices
            .iter()
            .map(|c| (c.router.as_str(), c.edge.as_deref(), c.standby.as_deref()))
            .collect()
    }

    #[test]
    fn new_edges_go_to_the_ready_host_with_fewest_ties_by_name() {
        let hosts = ready(&["h3", "h1", "h2"]);
        let got = elect(&[("r2", None), ("r1", None), ("r3", None)], &hosts);
        // One edge each; each standby the first other host by name (all have one edge).
        assert_eq!(
            flat(&got),
            [
                ("r1", Some("h1"), Some("h2")),
                ("r2", Some("h2"), Some("h1")),
                ("r3", Some("h3"), Some("h1")),
            ]
        );
        // A fourth router: every host has one edge, so the first by name; its standby is the
        // next with fewest.
        let got = elect(
            &[
                ("r1", Some("h1")),
                ("r2", Some("h2")),
                ("r3", Some("h3")),
                ("r4", None),
            ],
            &hosts,
        );
        assert_eq!(got[3].edge.as_deref(), Some("h1"));
        assert_eq!(got[3].standby.as_deref(), Some("h2"));
        // No routers, no choices; no hosts, no edges.
        assert!(elect(&[], &hosts).is_empty());
        assert_eq!(flat(&elect(&[("r1", None)], &[])), [("r1", None, None)]);
        // One host: an edge and no standby.
        assert_eq!(
            flat(&elect(&[("r1", None)], &ready(&["h1"]))),
            [("r1", Some("h1"), None)]
        );
    }

    #[test]
    fn a_healthy_edge_is_kept_even_when_unbalanced() {
        let hosts = ready(&["h1", "h2"]);
        let got = elect(&[("r1", Some("h2")), ("r2", Some("h2"))], &hosts);
        assert_eq!(
            flat(&got),
            [
                ("r1", Some("h2"), Some("h1")),
                ("r2", Some("h2"), Some("h1"))
            ]
        );
        // Equal inputs, equal output, whatever the order.
        let again = elect(&[("r2", Some("h2")), ("r1", Some("h2"))], &hosts);
        assert_eq!(got, again);
        // A briefly disconnected edge is held: kept, but it gets no new router.
        let hosts = vec![host("h1", EdgeHealth::Held), host("h2", EdgeHealth::Ready)];
        let got = elect(&[("r1", Some("h1")), ("r2", None)], &hosts);
        assert_eq!(
            flat(&got),
            [("r1", Some("h1"), Some("h2")), ("r2", Some("h2"), None)]
        );
    }

    #[test]
    fn a_lost_edge_moves_to_the_ready_host_with_fewest() {
        let hosts = vec![
            host("h1", EdgeHealth::Lost),
            host("h2", EdgeHealth::Ready),
            host("h3", EdgeHealth::Ready),
        ];
        // h2 has r2 already: r1 (lost h1) goes to h3.
        let got = elect(&[("r1", Some("h1")), ("r2", Some("h2"))], &hosts);
        assert_eq!(
            flat(&got),
            [
                ("r1", Some("h3"), Some("h2")),
                ("r2", Some("h2"), Some("h3"))
            ]
        );
        // An edge that is no longer a registered host is lost too.
        let got = elect(&[("r1", Some("gone"))], &hosts);
        assert_eq!(flat(&got), [("r1", Some("h2"), Some("h3"))]);
        // No ready host left: a lost edge is given up, not kept.
        let only_lost = vec![host("h1", EdgeHealth::Lost), host("h2", EdgeHealth::Held)];
        assert_eq!(
            flat(&elect(&[("r1", Some("h1"))], &only_lost)),
            [("r1", None, None)]
        );
    }

    #[test]
    fn maintenance_drains_when_another_host_is_ready() {
        let hosts = vec![
            host("h1", EdgeHealth::Draining),
            host("h2", EdgeHealth::Ready),
        ];
        let got = elect(&[("r1", Some("h1"))], &hosts);
        assert_eq!(flat(&got), [("r1", Some("h2"), None)]);
        // A draining host never becomes an edge nor a standby.
        let got = elect(&[("r1", None)], &hosts);
        assert_eq!(flat(&got), [("r1", Some("h2"), None)]);
        // With no ready host, the draining edge stays (better than none).
        let hosts = vec![
            host("h1", EdgeHealth::Draining),
            host("h2", EdgeHealth::Held),
        ];
        assert_eq!(
            flat(&elect(&[("r1", Some("h1")), ("r2", None)], &hosts)),
            [("r1", Some("h1"), None), ("r2", None, None)]
        );
    }

    #[test]
    fn events_say_where_the_edge_went_and_why() {
        let hosts = vec![EdgeHost {
            name: "h1".into(),
            health: EdgeHealth::Lost,
            why: "HA state failed".into(),
        }];
        assert_eq!(
            edge_event(Some("h1"), Some("h2"), &hosts).as_deref(),
            Some("edge moved from h1 to h2 (h1: HA state failed)")
        );
        assert_eq!(
            edge_event(Some("h9"), Some("h2"), &hosts).as_deref(),
            Some("edge moved from h9 to h2 (h9: no longer registered)")
        );
        assert_eq!(
            edge_event(None, Some("h2"), &hosts).as_deref(),
            Some("edge elected: h2")
        );
        assert_eq!(
            edge_event(Some("h1"), None, &hosts).as_deref(),
            Some("edge h1 given up (h1: HA state failed); no host can be the edge now")
        );
        assert_eq!(edge_event(Some("h2"), Some("h2"), &hosts), None);
    }
}
