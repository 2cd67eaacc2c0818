//! A model of the routers (their interfaces, uplinks, floating IPs and routes) in the switch's
//! `get_config` answer, for the switch model of the unit tests (`apply_model` in `tests.rs`).

use vinfra_switch_control::Request;

use super::route::contains;

/// The uplink of router `id` in `state`.
fn uplink_of(state: &[Request], id: u32) -> Option<&Request> {
    state
        .iter()
        .find(|s| matches!(s, Request::SetRouterUplink { router, .. } if *router == id))
}

/// Applies one router request to a model of the switch's `get_config` answer, strictly: a
/// router exists before its interfaces, uplink, floating IPs and routes and has none left when
/// it goes, an interface's or uplink's network exists and carries no other of them (an
/// interface or another router's uplink), a floating IP is in its router's uplink's subnet (so
/// an uplink goes after its floating IPs, and changes its subnet without them), and every
/// route's next hop is always on one of its router's interfaces or its uplink (a route is
/// removed before the interface or uplink it needs).
pub(crate) fn apply_router_model(state: &mut Vec<Request>, r: &Request) {
    let has_router = |state: &[Request], id: u32| state.contains(&Request::AddRouter { id });
    let has_network = |state: &[Request], network: u32| {
        state
            .iter()
            .any(|s| matches!(s, Request::AddNetwork { id, .. } if *id == network))
    };
    match r {
        Request::AddRouter { id } => {
            assert!(!has_router(state, *id), "router {id} added twice");
            state.push(r.clone());
        }
        Request::RemoveRouter { id } => {
            assert!(has_router(state, *id), "router {id} removed but absent");
            assert!(
                !state.iter().any(|s| matches!(s,
                    Request::SetRouterInterface { router, .. } | Request::AddRoute { router, .. }
                    | Request::SetRouterUplink { router, .. }
                    | Request::AddFloatingIp { router, .. }
                        if router == id)),
                "router {id} removed with interfaces, an uplink or routes left: {state:?}"
            );
            state.retain(|s| *s != Request::AddRouter { id: *id });
        }
        Request::SetRouterInterface {
            router, network, ..
        } => {
            assert!(has_router(state, *router), "{r:?} before its router");
            assert!(has_network(state, *network), "{r:?} before its network");
            assert!(
                !state.iter().any(
                    |s| matches!(s, Request::SetRouterUplink { network: n, .. } if n == network)
                ),
                "{r:?} on a network with an uplink: {state:?}"
            );
            state.retain(
                |s| !matches!(s, Request::SetRouterInterface { network: n, .. } if n == network),
            );
            state.push(r.clone());
        }
        Request::RemoveRouterInterface { network } => {
            let before = state.len();
            state.retain(
                |s| !matches!(s, Request::SetRouterInterface { network: n, .. } if n == network),
            );
            assert_eq!(state.len() + 1, before, "{r:?}: no such interface");
        }
        Request::AddRoute { router, prefix, .. } => {
            assert!(has_router(state, *router), "{r:?} before its router");
            state.retain(|s| {
                !matches!(s, Request::AddRoute { router: x, prefix: p, .. }
                    if x == router && p == prefix)
            });
            state.push(r.clone());
        }
        Request::RemoveRoute { router, prefix } => {
            let before = state.len();
            state.retain(|s| {
                !matches!(s, Request::AddRoute { router: x, prefix: p, .. }
                    if x == router && p == prefix)
            });
            assert_eq!(state.len() + 1, before, "{r:?}: no such route");
        }
        Request::SetRouterUplink {
            router,
            network,
            ip,
            prefix_len,
            ..
        } => {
            assert!(has_router(state, *router), "{r:?} before its router");
            assert!(has_network(state, *network), "{r:?} before its network");
            assert!(
                !state.iter().any(|s| matches!(s,
                    Request::SetRouterInterface { network: n, .. } if n == network)),
                "{r:?} on a network with an interface: {state:?}"
            );
            // Floating IPs stay with a replaced uplink: they must fit its subnet.
            for s in state.iter() {
                if let Request::AddFloatingIp {
                    router: x,
                    external,
                    ..
                } = s
                {
                    assert!(
                        x != router || contains(*ip, *prefix_len, *external),
                        "{r:?} leaves {s:?} outside its subnet"
                    );
                }
            }
            state.retain(
                |s| !matches!(s, Request::SetRouterUplink { router: x, .. } if x == router),
            );
            state.push(r.clone());
        }
        Request::RemoveRouterUplink { router } => {
            assert!(uplink_of(state, *router).is_some(), "{r:?}: no uplink");
            assert!(
                !state.iter().any(|s| matches!(s,
                    Request::AddFloatingIp { router: x, .. } if x == router)),
                "{r:?} with floating IPs left: {state:?}"
            );
            state.retain(
                |s| !matches!(s, Request::SetRouterUplink { router: x, .. } if x == router),
            );
        }
        Request::AddFloatingIp {
            router, external, ..
        } => {
            match uplink_of(state, *router) {
                Some(Request::SetRouterUplink { ip, prefix_len, .. }) => assert!(
                    contains(*ip, *prefix_len, *external) && ip != external,
                    "{r:?} outside its uplink's subnet"
                ),
                _ => panic!("{r:?} before its uplink"),
            }
            state.retain(|s| {
                !matches!(s, Request::AddFloatingIp { router: x, external: e, .. }
                    if x == router && e == external)
            });
            state.push(r.clone());
        }
        Request::RemoveFloatingIp { router, external } => {
            let before = state.len();
            state.retain(|s| {
                !matches!(s, Request::AddFloatingIp { router: x, external: e, .. }
                    if x == router && e == external)
            });
            assert_eq!(state.len() + 1, before, "{r:?}: no such floating IP");
        }
        other => panic!("not a router request: {other:?}"),
    }
    // No route without the interface its next hop is on.
    for s in state.iter() {
        if let Request::AddRoute { router, via, .. } = s {
            assert!(
                state.iter().any(|i| matches!(i,
                    Request::SetRouterInterface { router: x, ip, prefix_len, .. }
                    | Request::SetRouterUplink { router: x, ip, prefix_len, .. }
                        if x == router && contains(*ip, *prefix_len, *via))),
                "after {r:?}: {s:?} has no interface or uplink for its next hop"
            );
        }
    }
}
