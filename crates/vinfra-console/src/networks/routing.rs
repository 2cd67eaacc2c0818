//! The routers of a host's switch configuration ([`routers_here`]): pure, over the routers and
//! the networks the host has ports on, so equal records give equal configurations.
//!
//! A router is on a host when one of its networks has a port there, or the host is its edge;
//! the host then carries every network of that router (routing happens on the sender's host,
//! which delivers the routed frame itself: straight to the destination's host), and its
//! uplink's external network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vinfra_proto::{
    SwitchFloatingIp, SwitchRoute, SwitchRouter, SwitchRouterInterface, SwitchRouterUplink,
};
use vinfra_types::network::Ipv4Subnet;
use vinfra_types::router::{parse_route_prefix, RouterSummary, UplinkSummary};

use crate::state::UnderlayIndex;

/// The routers on a host and what they bring with them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoutersHere<'a> {
    /// The routers with an interface on one of the host's networks, by name.
    pub routers: Vec<&'a RouterSummary>,
    /// Every network attached to one of those routers, with its gateway (its router's
    /// interface address).
    pub gateways: BTreeMap<&'a str, Ipv4Addr>,
    /// The external networks of those routers' uplinks.
    pub uplinks: BTreeSet<&'a str>,
}

/// The routers with an interface on one of `local` (the networks with a port on `host`) or
/// whose edge is `host`, in name order, the networks attached to them with their gateways, and
/// their uplinks' networks. An interface whose gateway does not parse is left out.
pub fn routers_here<'a>(
    host: &str,
    local: &BTreeSet<&str>,
    routers: &'a [RouterSummary],
) -> RoutersHere<'a> {
    let mut out = RoutersHere::default();
    let mut sorted: Vec<&RouterSummary> = routers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for r in sorted {
        let edge_here = r
            .uplink
            .as_ref()
            .is_some_and(|u| u.edge.as_deref() == Some(host));
        if !edge_here
            && !r
                .interfaces
                .iter()
                .any(|i| local.contains(i.network.as_str()))
        {
            continue;
        }
        if let Some(u) = &r.uplink {
            out.uplinks.insert(u.network.as_str());
        }
        for i in &r.interfaces {
            if let Ok(ip) = i.gateway.parse() {
                out.gateways.insert(i.network.as_str(), ip);
            }
        }
        out.routers.push(r);
    }
    out
}

/// A router's uplink as a host's switch needs it: the external network (one of `networks`),
/// the address, prefix length and MAC, the edge's underlay address (from `underlay`), the
/// transit VNI and the floating IPs (by address). None while the
/// router has no edge, its edge has no IPv4 underlay address, the network is not in the
/// configuration, or an address does not parse.
pub fn switch_uplink(
    u: &UplinkSummary,
    networks: &BTreeSet<&str>,
    underlay: &UnderlayIndex,
) -> Option<SwitchRouterUplink> {
    if !networks.contains(u.network.as_str()) {
        return None;
    }
    let edge_vtep = underlay.address(u.edge.as_deref()?)?;
    let mut floating_ips: Vec<SwitchFloatingIp> = u
        .floating_ips
        .iter()
        .filter_map(|f| {
            Some(SwitchFloatingIp {
                external: f.ip.parse().ok()?,
                internal: f.internal.parse().ok()?,
            })
        })
        .collect();
    floating_ips.sort_by_key(|f| f.external);
    Some(SwitchRouterUplink {
        network: u.network.clone(),
        ip: u.ip.parse().ok()?,
        prefix_len: Ipv4Subnet::parse(&u.subnet).ok()?.prefix(),
        mac: u.mac.to_ascii_lowercase(),
        edge_vtep,
        transit_vni: u.transit_vni,
        floating_ips,
    })
}

/// A router as a host's switch needs it: its interfaces on `networks` (the networks of the
/// host's configuration; by network name), its static routes (by prefix) and its uplink
/// ([`switch_uplink`]). Interfaces or routes whose addresses do not parse are left out.
pub fn switch_router(
    r: &RouterSummary,
    networks: &BTreeSet<&str>,
    underlay: &UnderlayIndex,
) -> SwitchRouter {
    let mut interfaces: Vec<SwitchRouterInterface> = r
        .interfaces
        .iter()
        .filter(|i| networks.contains(i.network.as_str()))
        .filter_map(|i| {
            Some(SwitchRouterInterface {
                network: i.network.clone(),
                ip: i.gateway.parse().ok()?,
                prefix_len: Ipv4Subnet::parse(&i.subnet).ok()?.prefix(),
                mac: i.gateway_mac.to_ascii_lowercase(),
            })
        })
        .collect();
    interfaces.sort_by(|a, b| a.network.cmp(&b.network));
    let mut routes: Vec<((Ipv4Addr, u8), SwitchRoute)> = r
        .routes
        .iter()
        .filter_map(|s| {
            let prefix = parse_route_prefix(&s.prefix).ok()?;
            let via = s.via.parse().ok()?;
            Some((
                prefix,
                SwitchRoute {
                    prefix: format!("{}/{}", prefix.0, prefix.1),
                    via,
                },
            ))
        })
        .collect();
    routes.sort_by_key(|(p, _)| *p);
    SwitchRouter {
        name: r.name.clone(),
        id: r.id,
        interfaces,
        routes: routes.into_iter().map(|(_, r)| r).collect(),
        uplink: r
            .uplink
            .as_ref()
            .and_then(|u| switch_uplink(u, networks, underlay)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use vinfra_types::network::NetworkKind;
    use vinfra_types::router::{transit_vni, FloatingIpSummary};

    use crate::networks::config::switch_config;
    use crate::networks::config::tests::{host, ip, names, network, router, vm};

    fn uplink(edge: Option<&str>) -> UplinkSummary {
        UplinkSummary {
            network: "external".into(),
            subnet: "10.82.0.0/24".into(),
            ip: "10.82.0.10".into(),
            mac: "02:76:72:01:00:01".into(),
            edge: edge.map(str::to_string),
            standby: None,
            transit_vni: transit_vni(1),
            floating_ips: vec![FloatingIpSummary {
                ip: "10.82.0.20".into(),
                vm: "a".into(),
                nic: 0,
                network: "front".into(),
                internal: "10.1.0.10".into(),
                router: "r1".into(),
            }],
        }
    }

    #[test]
    fn every_host_of_a_router_gets_its_uplink_and_the_edge_carries_it_without_a_port() {
        let hosts = vec![
            host("h1", "10.77.0.11"),
            host("h2", "10.77.0.12"),
            host("h3", "10.77.0.13"),
        ];
        let net = |name, kind, seg, sw, subnet: &str| {
            let mut n = network(name, kind, seg, sw);
            n.network.subnet = subnet.into();
            n
        };
        let mut ext = net("external", NetworkKind::Vlan, 200, 3, "10.82.0.0/24");
        ext.network.gateway = Some("10.82.0.254".into());
        let networks = vec![
            net("front", NetworkKind::Overlay, 10001, 1, "10.1.0.0/24"),
            net("back", NetworkKind::Overlay, 10002, 2, "10.2.0.0/24"),
            ext,
        ];
        let vms = vec![
            vm("a", "h1", &[("front", "10.1.0.10", "02:76:66:00:00:01")]),
            vm("b", "h2", &[("back", "10.2.0.10", "02:76:66:00:00:02")]),
        ];
        let mut r1 = router(
            "r1",
            1,
            &[
                ("front", "10.1.0.0/24", "10.1.0.1", 1),
                ("back", "10.2.0.0/24", "10.2.0.1", 2),
            ],
            &[("0.0.0.0/0", "10.82.0.254")],
        );
        r1.uplink = Some(uplink(Some("h3")));
        let routers = vec![r1];
        let config = |h: &str| {
            switch_config(
                h,
                &UnderlayIndex::from_records(&hosts),
                &networks,
                &vms,
                &[],
                &routers,
                &[],
            )
        };

        let expected = SwitchRouterUplink {
            network: "external".into(),
            ip: ip("10.82.0.10"),
            prefix_len: 24,
            mac: "02:76:72:01:00:01".into(),
            edge_vtep: ip("10.77.0.13"),
            transit_vni: 0xFF_0001,
            floating_ips: vec![SwitchFloatingIp {
                external: ip("10.82.0.20"),
                internal: ip("10.1.0.10"),
            }],
        };
        // h1 and h2 have ports on the router's networks: the router with its uplink (edge h3)
        // and the external network.
        for h in ["h1", "h2"] {
            let c = config(h);
            assert_eq!(names(&c), ["back", "external", "front"], "{h}");
            assert_eq!(c.routers.len(), 1);
            assert_eq!(c.routers[0].uplink.as_ref(), Some(&expected), "{h}");
            // The external network's DHCP gateway is its own, not the router's.
            let ext = c.networks.iter().find(|n| n.name == "external").unwrap();
            assert_eq!(ext.dhcp.and_then(|d| d.gateway), Some(ip("10.82.0.254")));
        }
        // h3, the edge, has no port at all and still carries the router, all its networks
        // (with the MAC entries of the VMs' hosts) and the external network.
        let h3 = config("h3");
        assert_eq!(names(&h3), ["back", "external", "front"]);
        assert_eq!(h3.routers[0].uplink.as_ref(), Some(&expected));
        assert_eq!(h3.routers[0].interfaces.len(), 2);
        assert!(h3
            .macs
            .iter()
            .any(|m| m.mac == "02:76:66:00:00:01" && m.host_ip == ip("10.77.0.11")));
        // A fourth host with nothing of the router gets nothing.
        hosts_without_router(&config("h4"));

        // No edge elected: the hosts of the router carry it without an uplink; no host is
        // carried for the edge's sake.
        let mut no_edge = routers.clone();
        no_edge[0].uplink = Some(uplink(None));
        let c = switch_config(
            "h1",
            &UnderlayIndex::from_records(&hosts),
            &networks,
            &vms,
            &[],
            &no_edge,
            &[],
        );
        assert_eq!(c.routers[0].uplink, None);
        assert_eq!(names(&c), ["back", "external", "front"]);
        let c = switch_config(
            "h3",
            &UnderlayIndex::from_records(&hosts),
            &networks,
            &vms,
            &[],
            &no_edge,
            &[],
        );
        assert!(c.routers.is_empty());
        // An edge without an IPv4 underlay address cannot be reached: no uplink.
        let mut v6 = hosts.clone();
        v6[2].address = "fe80::3".into();
        let c = switch_config(
            "h1",
            &UnderlayIndex::from_records(&v6),
            &networks,
            &vms,
            &[],
            &routers,
            &[],
        );
        assert_eq!(c.routers[0].uplink, None);
    }

    fn hosts_without_router(c: &vinfra_proto::HostSwitchConfig) {
        assert!(c.routers.is_empty());
        assert!(c.networks.is_empty());
    }
}
