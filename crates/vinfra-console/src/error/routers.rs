//! Why a router operation was refused ([`RouterRefusal`], carried by `Error::Router`; its kind
//! is decided there: a bad request 400, a missing interface or route 404, the rest 409).

use std::net::Ipv4Addr;

use vinfra_types::network::Ipv4Subnet;
use vinfra_types::router::RouterRequestError;

/// `a, b, c`.
fn list(items: &[String]) -> String {
    items.join(", ")
}

/// Why a router was not created, changed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum RouterRefusal {
    // ----- invalid-request (400) -----
    /// The request is malformed (a name, a prefix, an address).
    #[error(transparent)]
    Definition(#[from] RouterRequestError),
    /// An uplink's address or a floating IP is not a usable address of the external network.
    #[error("{ip} is not a usable address of network '{network}' ({subnet})")]
    OutsideSubnet {
        /// The external network.
        network: String,
        /// The address.
        ip: Ipv4Addr,
        /// Its subnet.
        subnet: Ipv4Subnet,
    },

    // ----- not-found (404) -----
    /// The router has no interface on the network.
    #[error("router '{router}' has no interface on network '{network}'")]
    NoInterface {
        /// The router.
        router: String,
        /// The network.
        network: String,
    },
    /// The router has no static route to the prefix.
    #[error("router '{router}' has no route to {prefix}")]
    NoRoute {
        /// The router.
        router: String,
        /// The prefix, `A.B.C.D/L`.
        prefix: String,
    },

    /// The router has no uplink.
    #[error("router '{router}' has no uplink")]
    NoUplink {
        /// The router.
        router: String,
    },
    /// The VM has no such floating IP.
    #[error("VM '{vm}' has no floating IP {ip}")]
    NoFloatingIp {
        /// The VM.
        vm: String,
        /// The address.
        ip: Ipv4Addr,
    },

    // ----- conflict (409) -----
    /// The router has an uplink already.
    #[error(
        "router '{router}' has an uplink already ({ip} on network '{network}'); remove it first"
    )]
    UplinkExists {
        /// The router.
        router: String,
        /// Its uplink's network.
        network: String,
        /// Its uplink's address.
        ip: String,
    },
    /// An uplink's network must be a VLAN network.
    #[error(
        "network '{network}' is an overlay network; an uplink needs a VLAN network (an external \
         network on the hosts' trunks)"
    )]
    UplinkNotVlan {
        /// The network.
        network: String,
    },
    /// The network is the uplink network of routers: it cannot be attached as a gateway
    /// interface, nor deleted.
    #[error(
        "network '{network}' is the uplink network of router{} ({}); remove {} uplink first",
        if .routers.len() == 1 { "" } else { "s" },
        list(.routers),
        if .routers.len() == 1 { "its" } else { "their" }
    )]
    NetworkIsUplink {
        /// The network.
        network: String,
        /// The routers with an uplink on it.
        routers: Vec<String>,
    },
    /// The address is held already (a VM NIC, the network's gateway, an uplink, a floating IP).
    #[error("{ip} on network '{network}' is taken by {holder}")]
    AddressTaken {
        /// The network.
        network: String,
        /// The address.
        ip: Ipv4Addr,
        /// What holds it (`VM 'a'`, `the network's gateway`, `the uplink of router 'r1'`).
        holder: String,
    },
    /// A NIC asked for an address that a router holds on the network.
    #[error("nic {index}: {ip} on network '{network}' is reserved for {holder}")]
    NicAddressReserved {
        /// The NIC's index in the spec.
        index: usize,
        /// The address.
        ip: Ipv4Addr,
        /// The network.
        network: String,
        /// What holds it.
        holder: String,
    },
    /// An uplink with floating IPs cannot be removed.
    #[error(
        "router '{router}' has floating IP{} on its uplink ({}); delete {} first (vinfra vm \
         floating-ip del VM IP)",
        if .ips.len() == 1 { "" } else { "s" },
        list(.ips),
        if .ips.len() == 1 { "it" } else { "them" }
    )]
    UplinkFloatingIps {
        /// The router.
        router: String,
        /// Its floating IPs, `IP (VM 'a')`.
        ips: Vec<String>,
    },
    /// A network whose NICs have floating IPs cannot be detached.
    #[error(
        "NICs on network '{network}' have floating IP{} of router '{router}' ({}); delete {} \
         first",
        if .ips.len() == 1 { "" } else { "s" },
        list(.ips),
        if .ips.len() == 1 { "it" } else { "them" }
    )]
    FloatingIpsOn {
        /// The router.
        router: String,
        /// The network.
        network: String,
        /// The floating IPs, `IP (VM 'a')`.
        ips: Vec<String>,
    },
    /// A floating IP needs the NIC's address.
    #[error("nic {nic} of VM '{vm}' has no address; a floating IP translates to it")]
    NicNoAddress {
        /// The VM.
        vm: String,
        /// The NIC's index.
        nic: usize,
    },
    /// A floating IP needs the NIC's network attached to a router with an uplink.
    #[error(
        "network '{network}' of nic {nic} of VM '{vm}' is {}",
        match .router {
            Some(r) => format!("attached to router '{r}', which has no uplink; set one first"),
            None => "attached to no router; attach it to a router with an uplink first".into(),
        }
    )]
    NicNoUplink {
        /// The VM.
        vm: String,
        /// The NIC's index.
        nic: usize,
        /// The NIC's network.
        network: String,
        /// The router it is attached to, if any.
        router: Option<String>,
    },
    /// One floating IP per NIC.
    #[error("nic {nic} of VM '{vm}' has the floating IP {ip} already; delete it first")]
    NicHasFloatingIp {
        /// The VM.
        vm: String,
        /// The NIC's index.
        nic: usize,
        /// Its floating IP.
        ip: String,
    },
    /// A router with networks attached cannot be deleted.
    #[error(
        "router '{router}' has network{} attached ({}); detach {} first",
        if .networks.len() == 1 { "" } else { "s" },
        list(.networks),
        if .networks.len() == 1 { "it" } else { "them" }
    )]
    InUse {
        /// The router.
        router: String,
        /// Its networks.
        networks: Vec<String>,
    },
    /// The network is attached to a router (this one or another): it cannot be attached again,
    /// nor deleted.
    #[error("network '{network}' is attached to router '{router}'; detach it first")]
    NetworkAttached {
        /// The network.
        network: String,
        /// The router it is attached to.
        router: String,
    },
    /// The network's subnet overlaps the subnet of a network already attached to the router.
    #[error(
        "network '{network}' ({subnet}) overlaps network '{other}' ({other_subnet}) of router \
         '{router}'; one router routes between distinct subnets"
    )]
    SubnetOverlap {
        /// The router.
        router: String,
        /// The network being attached.
        network: String,
        /// Its subnet.
        subnet: Ipv4Subnet,
        /// The network of the router it overlaps.
        other: String,
        /// That network's subnet.
        other_subnet: Ipv4Subnet,
    },
    /// The network has a gateway and another one was asked for.
    #[error(
        "network '{network}' has the gateway {gateway}, not {given}; attach it with its own \
         gateway or none"
    )]
    GatewayMismatch {
        /// The network.
        network: String,
        /// Its gateway.
        gateway: Ipv4Addr,
        /// The gateway asked for.
        given: Ipv4Addr,
    },
    /// The gateway's address is held by a VM NIC.
    #[error(
        "{ip} on network '{network}' is taken by VM '{holder}'; give the router another \
         gateway"
    )]
    GatewayTaken {
        /// The network.
        network: String,
        /// The address.
        ip: Ipv4Addr,
        /// The VM holding it.
        holder: String,
    },
    /// The router has a static route to the prefix already.
    #[error("router '{router}' has a route to {prefix} already (via {via}); delete it first")]
    RouteExists {
        /// The router.
        router: String,
        /// The prefix.
        prefix: String,
        /// The existing route's next hop.
        via: String,
    },
    /// The next hop is a usable address of none of the router's subnets.
    #[error(
        "next hop {via} is not an address of the subnets of router '{router}' ({})",
        if .subnets.is_empty() { "it has no network attached".to_string() } else { list(.subnets) }
    )]
    ViaUnreachable {
        /// The router.
        router: String,
        /// The next hop.
        via: Ipv4Addr,
        /// The router's subnets.
        subnets: Vec<String>,
    },
    /// The next hop is one of the router's own gateways.
    #[error("next hop {via} is the gateway of router '{router}' on network '{network}'")]
    ViaGateway {
        /// The router.
        router: String,
        /// The next hop.
        via: Ipv4Addr,
        /// The network of that gateway.
        network: String,
    },
    /// A network whose subnet holds static routes' next hops cannot be detached.
    #[error(
        "router '{router}' has route{} via network '{network}' ({}); delete {} first",
        if .routes.len() == 1 { "" } else { "s" },
        list(.routes),
        if .routes.len() == 1 { "it" } else { "them" }
    )]
    RoutesVia {
        /// The router.
        router: String,
        /// The network.
        network: String,
        /// The routes, `prefix via next hop`.
        routes: Vec<String>,
    },
    /// Every router number is taken.
    #[error("no free router number left (1 to 65535)")]
    NoFreeId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_refusals_say_what_to_do() {
        let e = RouterRefusal::UplinkFloatingIps {
            router: "r1".into(),
            ips: vec!["10.82.0.20 (VM 'a')".into()],
        };
        assert_eq!(
            e.to_string(),
            "router 'r1' has floating IP on its uplink (10.82.0.20 (VM 'a')); delete it first \
             (vinfra vm floating-ip del VM IP)"
        );
        let e = RouterRefusal::NetworkIsUplink {
            network: "external".into(),
            routers: vec!["r1".into(), "r2".into()],
        };
        assert_eq!(
            e.to_string(),
            "network 'external' is the uplink network of routers (r1, r2); remove their uplink \
             first"
        );
        let e = RouterRefusal::NicNoUplink {
            vm: "a".into(),
            nic: 0,
            network: "blue".into(),
            router: None,
        };
        assert_eq!(
            e.to_string(),
            "network 'blue' of nic 0 of VM 'a' is attached to no router; attach it to a router \
             with an uplink first"
        );
    }

    #[test]
    fn refusals_name_what_is_in_the_way() {
        let e = RouterRefusal::InUse {
            router: "r1".into(),
            networks: vec!["blue".into()],
        };
        assert_eq!(
            e.to_string(),
            "router 'r1' has network attached (blue); detach it first"
        );
        let e = RouterRefusal::InUse {
            router: "r1".into(),
            networks: vec!["blue".into(), "red".into()],
        };
        assert_eq!(
            e.to_string(),
            "router 'r1' has networks attached (blue, red); detach them first"
        );
        let e = RouterRefusal::ViaUnreachable {
            router: "r1".into(),
            via: Ipv4Addr::new(10, 9, 0, 1),
            subnets: vec![],
        };
        assert_eq!(
            e.to_string(),
            "next hop 10.9.0.1 is not an address of the subnets of router 'r1' (it has no \
             network attached)"
        );
        let e = RouterRefusal::RoutesVia {
            router: "r1".into(),
            network: "blue".into(),
            routes: vec!["10.9.0.0/16 via 10.0.0.5".into()],
        };
        assert_eq!(
            e.to_string(),
            "router 'r1' has route via network 'blue' (10.9.0.0/16 via 10.0.0.5); delete it first"
        );
    }
}
