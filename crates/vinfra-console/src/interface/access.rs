//! Which role each route needs: the one place the API decides it (docs/design.md, "Roles").
//! The API's auth middleware (`api::auth`) and the web console's guard ask [`required_role`] with the request's method and
//! matched route before any handler runs; a token whose role is below it gets 403.
//!
//! - `viewer`: every read, but the API tokens and a VM's serial console;
//! - `operator`: the workloads: VMs (create, change, delete, power, migrate, NICs, serial
//!   console), networks, security groups, routers (interfaces, routes, uplinks), floating IPs,
//!   applying one of the balancer's recommendations (a migration), cancelling a task;
//! - `admin`: the cluster: hosts (change, maintenance, fence, remove, join tokens), the
//!   cluster settings (ratios, balancing, HA, flows), placement rules, running a balancing
//!   pass, API tokens.
//!
//! A route missing here needs `admin` (fail closed); a console test checks that every route of
//! the OpenAPI document is here.

use vinfra_types::auth::Role;

/// The role `method` on the route `path` (as axum matched it, `/api/v1/vms/{name}`, or
/// `/metrics`) needs; `None` for a route this table does not know (then `admin`).
pub fn required_role(method: &str, path: &str) -> Option<Role> {
    use Role::{Admin, Operator, Viewer};
    if (method, path) == ("GET", "/metrics") {
        // The metrics (outside `/api/v1`, where Prometheus looks for them) are a read.
        return Some(Viewer);
    }
    let route = path.strip_prefix("/api/v1")?;
    Some(match (method, route) {
        // Reads.
        (
            "GET",
            "/hosts"
            | "/hosts/{name}"
            | "/hosts/{name}/switch"
            | "/settings"
            | "/vms"
            | "/vms/{name}"
            | "/vms/{name}/migration"
            | "/vms/{name}/counters"
            | "/vms/{name}/usage"
            | "/hosts/{name}/usage"
            | "/events"
            | "/tasks"
            | "/tasks/{id}"
            | "/tasks/stream"
            | "/revoked-certificates"
            | "/flows"
            | "/rules"
            | "/rules/{name}"
            | "/ha"
            | "/drs"
            | "/drs/recommendations"
            | "/networks"
            | "/networks/{name}"
            | "/networks/{name}/counters"
            | "/security-groups"
            | "/security-groups/{name}"
            | "/security-groups/{name}/counters"
            | "/routers"
            | "/routers/{name}"
            | "/floating-ips",
        ) => Viewer,
        // A VM's serial console may show what its guest prints (boot secrets, logins).
        ("GET", "/vms/{name}/console") => Operator,
        // Typing on it is acting on the guest.
        ("POST", "/vms/{name}/console/input") => Operator,
        // VMs.
        ("POST", "/vms")
        | ("PATCH", "/vms/{name}")
        | ("DELETE", "/vms/{name}")
        | (
            "POST",
            "/vms/{name}/start" | "/vms/{name}/stop" | "/vms/{name}/reboot" | "/vms/{name}/migrate",
        )
        | ("DELETE", "/vms/{name}/migration")
        // Cancelling a task: the operations that can be cancelled are the operator's.
        | ("DELETE", "/tasks/{id}")
        | ("PATCH", "/vms/{name}/nics/{index}")
        | ("POST", "/vms/{name}/floating-ips")
        | ("DELETE", "/vms/{name}/floating-ips/{ip}")
        | ("POST", "/drs/recommendations/{id}/apply") => Operator,
        // Networks, security groups, routers.
        ("POST", "/networks")
        | ("DELETE", "/networks/{name}")
        | ("POST", "/security-groups" | "/security-groups/{name}/rules")
        | ("DELETE", "/security-groups/{name}" | "/security-groups/{name}/rules/{id}")
        | ("POST", "/routers" | "/routers/{name}/interfaces" | "/routers/{name}/routes")
        | (
            "DELETE",
            "/routers/{name}"
            | "/routers/{name}/interfaces/{network}"
            | "/routers/{name}/routes/{addr}/{len}"
            | "/routers/{name}/uplink",
        )
        | ("PUT", "/routers/{name}/uplink") => Operator,
        // Hosts, cluster settings, placement rules, balancing passes, tokens.
        ("PATCH" | "DELETE", "/hosts/{name}")
        | ("POST", "/hosts/{name}/fence")
        | ("PUT", "/settings")
        | ("POST", "/join-tokens")
        | ("POST", "/rules")
        | ("DELETE", "/rules/{name}")
        | ("POST", "/drs/run")
        | ("POST", "/token/rotate")
        | ("GET" | "POST", "/tokens")
        | ("DELETE", "/tokens/{name}") => Admin,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_routes_are_not_granted() {
        assert_eq!(required_role("GET", "/api/v1/nope"), None);
        assert_eq!(required_role("GET", "/vms"), None);
        assert_eq!(required_role("BREW", "/api/v1/vms"), None);
    }

    #[test]
    fn the_boundaries() {
        assert_eq!(required_role("GET", "/metrics"), Some(Role::Viewer));
        assert_eq!(required_role("POST", "/metrics"), None);
        assert_eq!(required_role("GET", "/api/v1/metrics"), None);
        assert_eq!(required_role("GET", "/api/v1/vms"), Some(Role::Viewer));
        assert_eq!(required_role("POST", "/api/v1/vms"), Some(Role::Operator));
        assert_eq!(
            required_role("GET", "/api/v1/vms/{name}/console"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role("PATCH", "/api/v1/hosts/{name}"),
            Some(Role::Admin)
        );
        assert_eq!(required_role("GET", "/api/v1/tokens"), Some(Role::Admin));
    }
}
